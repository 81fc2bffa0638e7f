//! The packet's bytes from its network header as Linux's matches on the payload see them
//! (`-m string`, [`super::string`]; `-m u32`, [`super::u32_match`]): the IP datagram, and for a
//! datagram that came in fragments the datagram as conntrack's reassembly leaves it.
//!
//! Linux reassembles before any table (nf_defrag_ipv4, nf_defrag_ipv6), so a match on the
//! payload reads the whole datagram: the first fragment's headers (IPv4: total length the
//! whole's, no fragment offset or MF, DF only where the largest fragment had it, the header
//! checksum made again; IPv6: the Fragment header taken out, the header before it given its
//! next header, the payload length the whole's) and every fragment's data in order. The
//! defrag queues of conntrack never coalesce (`inet_frag_reasm_finish` with `try_coalesce`
//! false), so the reassembled skb is the first fragment's buffer followed by one buffer per
//! later fragment: the textsearch reads it block by block ([`View::blocks`]), which `bm` sees
//! (it searches each block alone) and `kmp` does not.
//!
//! Rampart judges a whole datagram from its first fragment, its fragments re-entered in order
//! ([`crate::conntrack::frag::Reassembly`]). Only when the rule set has a match on the payload
//! ([`super::RuleSet::reads_payload`]) does the path that re-enters a whole datagram
//! [`gather`] it, into one buffer per thread, before its fragments are judged, and
//! [`clear`] it after; the checks read it while [`super::Wire::whole_len`] says the packet
//! judged is a whole datagram's first fragment. Unfragmented packets are read in place.

use super::Wire;
use crate::wire::{parse_frame, Family, Fragment};
use std::cell::RefCell;

/// A whole datagram gathered from its fragments.
#[derive(Debug, Default)]
struct Gathered {
    /// Set between [`gather`] and [`clear`].
    set: bool,
    /// From the IP header on, as reassembled.
    bytes: Vec<u8>,
    /// Where each fragment's block ends in `bytes` (the first block holds the headers).
    ends: Vec<u32>,
}

thread_local! {
    static WHOLE: RefCell<Gathered> = RefCell::new(Gathered::default());
}

/// The bytes a payload match reads: from the network header to the end of the datagram, and
/// where the blocks of Linux's skb end.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub bytes: &'a [u8],
    /// Block ends in `bytes`, in order; the last is `bytes.len()`.
    pub ends: &'a [u32],
}

impl<'a> View<'a> {
    /// The blocks from `from` on, each as a slice with its offset from `from`, those starting
    /// before `to` (Linux's `skb_seq_read` stops at its upper offset, but gives each block
    /// whole).
    pub fn blocks(&self, from: usize, to: usize) -> impl Iterator<Item = (usize, &'a [u8])> {
        let bytes = self.bytes;
        let mut start = 0usize;
        self.ends.iter().filter_map(move |&e| {
            let (s, e) = (start, (e as usize).min(bytes.len()));
            start = e;
            let s = s.max(from);
            (s < e && s < to).then(|| (s - from, &bytes[s..e]))
        })
    }
}

/// Calls `f` with the bytes payload matches read for the packet of `w`: a whole datagram's
/// as gathered when `w` is its first fragment, else the packet's own IP datagram (Ethernet
/// padding left out); nothing when the frame holds no IP header.
pub fn with_view<R>(w: &Wire<'_>, f: impl FnOnce(View<'_>) -> R) -> R {
    if w.whole_len != 0 {
        let r = WHOLE.with(|g| {
            let g = g.borrow();
            if g.set {
                Ok(f(View {
                    bytes: &g.bytes,
                    ends: &g.ends,
                }))
            } else {
                Err(f)
            }
        });
        match r {
            Ok(r) => return r,
            Err(f) => return f(own(w)),
        }
    }
    f(own(w))
}

/// The packet's own datagram: the IP header's length, within the frame.
fn own<'a>(w: &Wire<'a>) -> View<'a> {
    static ONE: [u32; 1] = [u32::MAX];
    let l3 = usize::from(w.l3);
    let Some(ip) = w.frame.get(l3..) else {
        return View {
            bytes: &[],
            ends: &ONE,
        };
    };
    let len = match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 4 => usize::from(u16::from_be_bytes([ip[2], ip[3]])),
        Some(6) if ip.len() >= 6 => usize::from(u16::from_be_bytes([ip[4], ip[5]])) + 40,
        _ => 0,
    };
    View {
        bytes: &ip[..len.min(ip.len())],
        ends: &ONE,
    }
}

/// Gathers the whole datagram whose fragments' frames `frames` gives in offset order (the
/// first fragment first), for the checks to read until [`clear`]. Anything else (a first
/// frame that is not a first fragment, a frame that does not parse) gathers nothing, and the
/// checks read the first fragment alone.
pub fn gather<'f>(frames: impl IntoIterator<Item = &'f [u8]>) {
    WHOLE.with(|g| {
        let mut g = g.borrow_mut();
        g.set = false;
        g.bytes.clear();
        g.ends.clear();
        g.set = build(&mut g, frames).is_some();
    })
}

/// Forgets the gathered datagram.
pub fn clear() {
    WHOLE.with(|g| g.borrow_mut().set = false)
}

fn build<'f>(g: &mut Gathered, frames: impl IntoIterator<Item = &'f [u8]>) -> Option<()> {
    let mut frames = frames.into_iter();
    let first = frames.next()?;
    let info = parse_frame(first).ok()?;
    if !matches!(info.frag, Fragment::First { .. }) {
        return None;
    }
    let family = info.flow?.family;
    let ip = first.get(usize::from(info.l3_offset)..info.l3_end())?;
    let (_, _, _, data_start) = crate::conntrack::frag::piece(first, &info)?;
    // The largest fragment (IPv4 total length) and the largest with DF set.
    let mut v4 = crate::conntrack::frag::WholeV4::default();
    v4.see(ip);
    match family {
        Family::V4 => g.bytes.extend_from_slice(ip),
        Family::V6 => {
            // Take the Fragment header out; the header before it names what followed it.
            let (nh_at, frag_at) = crate::conntrack::frag::v6_fragment_header(ip)?;
            if frag_at + 8 != data_start {
                return None;
            }
            let next = ip[frag_at];
            g.bytes.extend_from_slice(&ip[..frag_at]);
            g.bytes.extend_from_slice(&ip[data_start..]);
            g.bytes[nh_at] = next;
        }
    }
    g.ends.push(g.bytes.len() as u32);
    for f in frames {
        let info = parse_frame(f).ok()?;
        let (_, _, _, start) = crate::conntrack::frag::piece(f, &info)?;
        let ip = f.get(usize::from(info.l3_offset)..info.l3_end())?;
        v4.see(ip);
        g.bytes.extend_from_slice(ip.get(start..)?);
        g.ends.push(g.bytes.len() as u32);
    }
    let total = u16::try_from(g.bytes.len()).ok()?;
    match family {
        Family::V4 => {
            let ihl = usize::from(g.bytes[0] & 0x0f) * 4;
            v4.finish(g.bytes.get_mut(..ihl)?, total);
        }
        Family::V6 => {
            g.bytes[4..6].copy_from_slice(&(total.checked_sub(40)?).to_be_bytes());
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_start_at_from_and_stop_at_to() {
        let bytes: Vec<u8> = (0..30).collect();
        let v = View {
            bytes: &bytes,
            ends: &[10, 20, 30],
        };
        let b: Vec<_> = v.blocks(5, 25).collect();
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], (0, &bytes[5..10]));
        assert_eq!(b[1], (5, &bytes[10..20]));
        assert_eq!(b[2], (15, &bytes[20..30]));
        // A block starting at `to` or after is not read; one starting before is read whole.
        assert_eq!(v.blocks(0, 20).count(), 2);
        assert_eq!(v.blocks(0, 21).count(), 3);
        assert_eq!(v.blocks(12, 65535).next(), Some((0, &bytes[12..20])));
        assert_eq!(v.blocks(30, 65535).count(), 0);
    }
}
