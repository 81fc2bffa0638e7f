//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The mangle table: its chains, walked for every packet of a family whose mangle table has
//! a rule with effect (Linux does not cache mangle either), and the targets that change the
//! packet, with the kernel's meaning:
//!
//! - TCPMSS (`xt_TCPMSS`): `--set-mss N` or `--clamp-mss-to-pmtu` (the smaller of the out
//!   port's MTU and the reverse route's, less 40 for IPv4 and 60 for IPv6, the kernel's
//!   `minlen`) lowers an MSS option
//!   that is larger, never raises one; a SYN without the option and without data gets one
//!   (at most 536 for IPv4, 1220 for IPv6) when the frame has room for it after the
//!   datagram (Ethernet padding); a segment too short for its header is dropped.
//! - TOS and DSCP (`xt_DSCP`'s two targets): the traffic class becomes
//!   `(tos & !mask) ^ xor`; DSCP is the mask `0xfc` and the value shifted left by 2.
//! - TTL and HL (`xt_HL`): set, or moved up (to 255 at most) or down (to 0 at least).
//!
//! Every edit keeps the IPv4 header and the TCP checksums valid (updated incrementally, as the
//! kernel does). MARK changes the walk's mark ([`crate::classify::walk`]), which the nat and
//! filter tables then read.

use crate::classify::{PacketMeta, RuleSet, Wire};
use crate::wire::{checksum::Delta, Family};

/// One edit a mangle rule makes ([`crate::classify::Action::Edit`] indexes a chain's list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Edit {
    /// TCPMSS: `Some(n)` for `--set-mss n`, `None` for `--clamp-mss-to-pmtu`.
    Mss(Option<u16>),
    /// TOS / DSCP: the IPv4 TOS byte (IPv6 traffic class) becomes `(tos & !mask) ^ xor`.
    Tos { mask: u8, xor: u8 },
    /// TTL / HL.
    Hops(HopOp),
}

impl Edit {
    /// The edit as [`crate::classify::Action::Edit`] carries it (so the action stays eight
    /// bytes and a chain needs no table of edits): the kind in the top byte.
    pub fn encode(self) -> u32 {
        match self {
            Edit::Mss(m) => u32::from(m.unwrap_or(u16::MAX)),
            Edit::Tos { mask, xor } => 1 << 24 | u32::from(mask) << 8 | u32::from(xor),
            Edit::Hops(op) => {
                let (k, v) = match op {
                    HopOp::Set(v) => (0, v),
                    HopOp::Inc(v) => (1, v),
                    HopOp::Dec(v) => (2, v),
                };
                2 << 24 | k << 16 | u32::from(v)
            }
        }
    }

    /// [`Edit::encode`]'s inverse.
    #[inline]
    pub fn decode(x: u32) -> Option<Edit> {
        let v = x as u8;
        Some(match (x >> 24, x >> 16 & 0xff) {
            (0, 0) => Edit::Mss((x as u16 != u16::MAX).then_some(x as u16)),
            (1, 0) => Edit::Tos {
                mask: (x >> 8) as u8,
                xor: v,
            },
            (2, 0) => Edit::Hops(HopOp::Set(v)),
            (2, 1) => Edit::Hops(HopOp::Inc(v)),
            (2, 2) => Edit::Hops(HopOp::Dec(v)),
            _ => return None,
        })
    }
}

/// `--ttl-set/--ttl-inc/--ttl-dec` (`--hl-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HopOp {
    Set(u8),
    Inc(u8),
    Dec(u8),
}

impl HopOp {
    /// The TTL after the operation on `ttl` (xt_HL's saturation).
    #[inline]
    pub fn apply(self, ttl: u8) -> u8 {
        match self {
            HopOp::Set(v) => v,
            HopOp::Inc(v) => ttl.saturating_add(v),
            HopOp::Dec(v) => ttl.saturating_sub(v),
        }
    }
}

/// One mangle chain flattened: its rules (edits as [`crate::classify::Action::Edit`], MARK as
/// in the filter, ACCEPT ends the chain, DROP drops).
#[derive(Debug)]
pub struct MangleChain {
    pub rules: RuleSet,
    /// A rule clamps the MSS to the path MTU (`--clamp-mss-to-pmtu`): only then is the MTU
    /// worked out for a walk ([`EditCtx::mtu`], a route lookup in router mode).
    pub clamps: bool,
}

/// The mangle chains of one family that have an effect (`None`: the chain changes nothing).
#[derive(Debug, Default)]
pub struct Mangle {
    pub prerouting: Option<MangleChain>,
    pub input: Option<MangleChain>,
    pub forward: Option<MangleChain>,
    pub postrouting: Option<MangleChain>,
}

impl Mangle {
    /// The chains with effect.
    pub fn chains(&self) -> impl Iterator<Item = &MangleChain> {
        [
            &self.prerouting,
            &self.input,
            &self.forward,
            &self.postrouting,
        ]
        .into_iter()
        .flatten()
    }
}

/// What an edit needs besides the frame.
#[derive(Clone, Copy, Debug)]
pub struct EditCtx {
    pub family: Family,
    pub l3: u16,
    pub l4: u16,
    pub later_fragment: bool,
    /// What forwarding has taken off the TTL and will write later ([`Wire::hops_taken`]):
    /// an edit of the TTL works on the value the chain sees and leaves that much more.
    pub hops_taken: u8,
    /// The whole datagram's length when this is its first fragment, for `-m length`
    /// ([`Wire::whole_len`]); 0: the packet's own.
    pub whole_len: u16,
    /// The MTU `--clamp-mss-to-pmtu` uses: xt_TCPMSS's smaller of the route's (the out
    /// port's) and the reverse route's (the port toward the packet's source; none when the
    /// source has no route); 0 when the chain has no such rule.
    pub mtu: u32,
}

impl MangleChain {
    /// The chain of `rules`, noting whether one clamps to the path MTU.
    pub fn new(rules: RuleSet) -> MangleChain {
        let clamps = rules.rules.iter().any(|r| {
            matches!(r.action, crate::classify::Action::Edit(k)
                if Edit::decode(k) == Some(Edit::Mss(None)))
        });
        MangleChain { rules, clamps }
    }

    /// Walks the chain for one packet whose view is `p`, editing `frame` in place and
    /// changing `mark`. `Ok` when the packet goes on (an ACCEPT or the end of the chain),
    /// `Err(rule)` when a rule dropped it (DROP, or a TCPMSS on a segment too short for its
    /// header, as the kernel's target drops it).
    #[inline(never)]
    pub fn walk(
        &self,
        p: &PacketMeta,
        frame: &mut [u8],
        cx: &EditCtx,
        now_ns: u64,
        mark: &mut crate::classify::walk::Marks,
    ) -> Result<(), u32> {
        let wire = Wire {
            frame: &[],
            l3: cx.l3,
            l4: cx.l4,
            now_ns,
            hops_taken: cx.hops_taken,
            whole_len: cx.whole_len,
            // The loader refuses connection matches in mangle.
            conn: None,
            count: None,
        };
        self.rules.walk_edits(p, frame, wire, mark, |k, frame| {
            Edit::decode(k).is_none_or(|e| apply(&e, frame, cx))
        })
    }
}

/// Applies one edit to `frame`; `false` when the packet is to be dropped.
pub fn apply(edit: &Edit, frame: &mut [u8], cx: &EditCtx) -> bool {
    match *edit {
        Edit::Tos { mask, xor } => {
            set_tos(frame, cx, mask, xor);
            true
        }
        Edit::Hops(op) => {
            set_hops(frame, cx, op);
            true
        }
        Edit::Mss(mss) => tcp_mss(frame, cx, mss),
    }
}

fn word_at(frame: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
}

fn put_word(frame: &mut [u8], at: usize, v: u16) {
    if let Some(w) = frame.get_mut(at..at + 2) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}

/// Replaces the 16-bit word at `at` with `new`, updating the checksum at `sum_at` by the
/// difference (RFC 1624).
fn replace_word(frame: &mut [u8], at: usize, new: u16, sum_at: usize) {
    let (Some(old), Some(sum)) = (word_at(frame, at), word_at(frame, sum_at)) else {
        return;
    };
    if old == new {
        return;
    }
    let mut d = Delta::ZERO;
    d.word(old, new);
    put_word(frame, at, new);
    put_word(frame, sum_at, d.apply(sum));
}

fn set_tos(frame: &mut [u8], cx: &EditCtx, mask: u8, xor: u8) {
    let l3 = usize::from(cx.l3);
    match cx.family {
        Family::V4 => {
            let Some(w) = word_at(frame, l3) else { return };
            let tos = (w as u8 & !mask) ^ xor;
            replace_word(frame, l3, (w & 0xff00) | u16::from(tos), l3 + 10);
        }
        Family::V6 => {
            let Some(w) = word_at(frame, l3) else { return };
            let tc = (w >> 4) as u8;
            let tc = (tc & !mask) ^ xor;
            put_word(frame, l3, (w & 0xf00f) | u16::from(tc) << 4);
        }
    }
}

fn set_hops(frame: &mut [u8], cx: &EditCtx, op: HopOp) {
    let l3 = usize::from(cx.l3);
    let at = match cx.family {
        Family::V4 => l3 + 8,
        Family::V6 => l3 + 7,
    };
    let Some(&stored) = frame.get(at) else { return };
    // The chain sees the TTL less what forwarding takes; the frame keeps that much more.
    let seen = stored.saturating_sub(cx.hops_taken);
    let new = op.apply(seen).saturating_add(cx.hops_taken);
    match cx.family {
        Family::V4 => {
            let Some(w) = word_at(frame, at) else { return };
            replace_word(frame, at, (w & 0x00ff) | u16::from(new) << 8, l3 + 10);
        }
        Family::V6 => frame[at] = new,
    }
}

/// The end of the IP datagram in the frame (Ethernet padding may follow it).
fn datagram_end(frame: &[u8], cx: &EditCtx) -> Option<usize> {
    let l3 = usize::from(cx.l3);
    let end = match cx.family {
        Family::V4 => l3 + usize::from(word_at(frame, l3 + 2)?),
        Family::V6 => l3 + 40 + usize::from(word_at(frame, l3 + 4)?),
    };
    (end <= frame.len()).then_some(end)
}

/// xt_TCPMSS's `tcpmss_mangle_packet` (and its IPv4 caller's length update); `false` drops.
fn tcp_mss(frame: &mut [u8], cx: &EditCtx, mss: Option<u16>) -> bool {
    // A non-first fragment has no TCP header (the rule's `-p tcp` keeps other protocols out).
    if cx.later_fragment || cx.l4 == 0 {
        return true;
    }
    let Some(end) = datagram_end(frame, cx) else {
        return false;
    };
    let l4 = usize::from(cx.l4);
    let len = end.saturating_sub(l4);
    if len < 20 {
        return false;
    }
    let hdr = usize::from(frame[l4 + 12] >> 4) * 4;
    if len < hdr || hdr < 20 {
        return false;
    }
    let minlen: u32 = match cx.family {
        Family::V4 => 40,
        Family::V6 => 60,
    };
    let newmss = match mss {
        Some(m) => m,
        None => {
            if cx.mtu <= minlen {
                return false;
            }
            (cx.mtu - minlen).min(u32::from(u16::MAX)) as u16
        }
    };
    let sum_at = l4 + 16;
    let mut i = 20;
    while i + 4 <= hdr {
        let kind = frame[l4 + i];
        let olen = frame[l4 + i + 1];
        if kind == 2 && olen == 4 {
            let old = word_at(frame, l4 + i + 2).unwrap_or(0);
            if old > newmss {
                replace_word(frame, l4 + i + 2, newmss, sum_at);
            }
            return true;
        }
        i += if kind <= 1 || olen == 0 {
            1
        } else {
            usize::from(olen)
        };
    }
    // No option: one is added only to a segment without data, with room in the header
    // (`doff` has four bits) and, here, in the frame after the datagram.
    if len > hdr || hdr >= 60 || frame.len() < end + 4 {
        return true;
    }
    let newmss = newmss.min(match cx.family {
        Family::V4 => 536,
        Family::V6 => 1220,
    });
    frame.copy_within(l4 + 20..end, l4 + 24);
    let mut d = Delta::ZERO;
    // The pseudo-header's length, the option's two words (zeros before), and `doff`.
    d.word(len as u16, len as u16 + 4);
    frame[l4 + 20..l4 + 24].copy_from_slice(&[2, 4, (newmss >> 8) as u8, newmss as u8]);
    d.word(0, 0x0204);
    d.word(0, newmss);
    let flags_word = word_at(frame, l4 + 12).unwrap_or(0);
    let new_flags_word = flags_word + (1 << 12);
    put_word(frame, l4 + 12, new_flags_word);
    d.word(flags_word, new_flags_word);
    let sum = word_at(frame, sum_at).unwrap_or(0);
    put_word(frame, sum_at, d.apply(sum));
    let l3 = usize::from(cx.l3);
    match cx.family {
        Family::V4 => {
            let tot = word_at(frame, l3 + 2).unwrap_or(0);
            replace_word(frame, l3 + 2, tot + 4, l3 + 10);
        }
        Family::V6 => {
            let pl = word_at(frame, l3 + 4).unwrap_or(0);
            put_word(frame, l3 + 4, pl + 4);
        }
    }
    true
}

#[cfg(test)]
mod tests;
