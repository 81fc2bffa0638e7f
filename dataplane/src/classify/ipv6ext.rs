//! ip6tables' extension header matches (`frag`, `hbh`, `dst`, `ipv6header`, `ah`) and
//! `-m esp` / iptables' `-m ah` on the SPI, with the kernel's meaning (ip6t_frag.c,
//! ip6t_hbh.c, ip6t_ipv6header.c, ip6t_ah.c, xt_esp.c, ipt_ah.c): headers found as
//! `ipv6_find_hdr` finds them (not past a non-first fragment's Fragment header), over the
//! IPv6 packet as its payload length gives it.
//!
//! With connection tracking a fragmented datagram is judged whole, from its first fragment,
//! and Linux's nf_defrag_ipv6 has taken the Fragment header out of the reassembled datagram
//! (`nf_ct_frag6_reasm`: the header before it takes its next header value, the payload length
//! loses its 8 bytes) before any table sees it: there the walks step over the first
//! fragment's Fragment header as if it were not there ([`Wire::whole_len`] set), so `-m frag`
//! never matches and `ipv6header` never sees `frag`. Without tracking (no reassembly, in Linux
//! either) they see it.
//!
//! Where the kernel drops a packet it cannot read (`hotdrop`: an extension header cut short)
//! the packet is dropped too ([`ExtMatch::held`]): Rampart's parser drops truncated extension
//! headers before they are judged, so this is an AH or ESP header shorter than the match
//! reads (12 or 8 bytes), which the parser does not read.

use super::{PacketMeta, Wire};
use crate::wire::Family;

const HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const ESP: u8 = 50;
const AUTH: u8 = 51;
const NONE: u8 = 59;
const DEST: u8 = 60;

/// `ipv6header`'s bits (`MASK_*` in ip6t_ipv6header.h).
pub mod bits {
    pub const HOPOPTS: u8 = 128;
    pub const DSTOPTS: u8 = 64;
    pub const ROUTING: u8 = 32;
    pub const FRAGMENT: u8 = 16;
    pub const AH: u8 = 8;
    pub const ESP: u8 = 4;
    pub const NONE: u8 = 2;
    pub const PROTO: u8 = 1;
}

/// One extension header match.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ExtMatch {
    /// `-m frag`: `--fragid` (range, `!`), `--fragres`, `--fragfirst`, `--fragmore`,
    /// `--fraglast` (`--fraglen` is taken and, as in the kernel, not compared).
    Frag {
        ids: (u32, u32, bool),
        res: bool,
        first: bool,
        more: bool,
        last: bool,
    },
    /// `-m hbh` (`dst` false) / `-m dst`: `--hbh-len`/`--dst-len` in bytes (`!`), and the
    /// leading options in order (`type << 8 | len`, len 0xff any).
    Opts {
        dst: bool,
        len: Option<(u32, bool)>,
        opts: Option<Vec<u16>>,
    },
    /// `-m ipv6header --header` (bits), `!` (`inv` 0xff), `--soft`.
    Header { flags: u8, inv: u8, soft: bool },
    /// ip6tables' `-m ah`: `--ahspi` (range, `!`), `--ahlen` in bytes (0: any; `!`),
    /// `--ahres`.
    Ah6 {
        spis: (u32, u32, bool),
        len: (u32, bool),
        res: bool,
    },
    /// iptables' `-m ah --ahspi` and `-m esp --espspi` of either family: the SPI of the AH
    /// (bytes 4..8) or ESP (bytes 0..4) header at the L4 offset; never in a non-first
    /// fragment.
    Spi { ah: bool, spis: (u32, u32, bool) },
}

fn is_ext(h: u8) -> bool {
    matches!(h, HOP | ROUTING | FRAGMENT | AUTH | NONE | DEST)
}

/// `ipv6_find_hdr(skb, &ptr, target, NULL, NULL)` over the IPv6 packet `ip`: `Ok(Some(at))`
/// for the header's offset, `Ok(None)` for `-ENOENT`, `Err(())` for a header cut short.
/// `defragged`: the first fragment of a datagram judged whole, whose first Fragment header
/// Linux's reassembly removed (stepped over, never found).
pub(super) fn find_hdr(ip: &[u8], target: u8, defragged: bool) -> Result<Option<usize>, ()> {
    let mut start = 40;
    let mut next = *ip.get(6).ok_or(())?;
    let mut skip = defragged;
    loop {
        if next == FRAGMENT && skip {
            skip = false;
            next = *ip.get(start).ok_or(())?;
            start += 8;
            continue;
        }
        let found = next == target;
        if !is_ext(next) || next == NONE {
            return Ok(found.then_some(start));
        }
        let hp = ip.get(start..start + 2).ok_or(())?;
        let len = if next == FRAGMENT {
            let off = ip.get(start + 2..start + 4).ok_or(())?;
            if u16::from_be_bytes([off[0], off[1]]) & !7 != 0 {
                return Ok(found.then_some(start));
            }
            8
        } else if next == AUTH {
            (usize::from(hp[1]) + 2) << 2
        } else {
            (usize::from(hp[1]) + 1) << 3
        };
        if found {
            return Ok(Some(start));
        }
        next = hp[0];
        start += len;
    }
}

/// The IPv6 packet of `w` (from its fixed header, as long as its payload length says, or
/// what the frame holds).
pub(super) fn ipv6_packet<'a>(w: &Wire<'a>) -> Option<&'a [u8]> {
    let ip = w.frame.get(usize::from(w.l3)..)?;
    let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    Some(&ip[..ip.len().min(40 + plen)])
}

/// Where the IP datagram of `w` ends in the frame (its length field, not Ethernet padding).
fn datagram_end(p: &PacketMeta, w: &Wire<'_>) -> Option<usize> {
    let l3 = usize::from(w.l3);
    let f = w.frame;
    let len = match p.key.family {
        Family::V4 => usize::from(u16::from_be_bytes([*f.get(l3 + 2)?, *f.get(l3 + 3)?])),
        Family::V6 => 40 + usize::from(u16::from_be_bytes([*f.get(l3 + 4)?, *f.get(l3 + 5)?])),
    };
    Some((l3 + len).min(f.len()))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn in_range((lo, hi, inv): (u32, u32, bool), v: u32) -> bool {
    (lo <= v && v <= hi) != inv
}

impl ExtMatch {
    /// [`ExtMatch::holds`], or `None` where the kernel drops the packet (`hotdrop`): an AH or
    /// ESP header after the IP header shorter than the match reads (ipt_ah, xt_esp:
    /// `skb_header_pointer` fails), which [`RuleSet`](super::RuleSet) drops whatever the
    /// later rules say.
    pub fn held(&self, p: &PacketMeta, w: &Wire<'_>) -> Option<bool> {
        match *self {
            ExtMatch::Spi { ah, .. } if !p.later_fragment && w.l4 != 0 => {
                let need = if ah { 12 } else { 8 };
                let end = datagram_end(p, w)?;
                if usize::from(w.l4) + need > end {
                    return None;
                }
                Some(self.holds(p, w))
            }
            // ip6t_ah: an AH header found but shorter than 12 bytes within the packet.
            ExtMatch::Ah6 { .. } if p.key.family == Family::V6 => {
                let ip = ipv6_packet(w)?;
                if let Ok(Some(at)) = find_hdr(ip, AUTH, w.whole_len != 0) {
                    ip.get(at..at + 12)?;
                }
                Some(self.holds(p, w))
            }
            _ => Some(self.holds(p, w)),
        }
    }

    /// Whether the match holds for `p` with bytes `w`.
    pub fn holds(&self, p: &PacketMeta, w: &Wire<'_>) -> bool {
        if let ExtMatch::Spi { ah, spis } = *self {
            if p.later_fragment || w.l4 == 0 {
                return false;
            }
            // The whole header (AH 12 bytes, ESP 8) within the datagram, as the kernel reads
            // it; a shorter one it drops ([`ExtMatch::held`]), and here it does not match.
            let l4 = usize::from(w.l4);
            let need = if ah { 12 } else { 8 };
            let Some(end) = datagram_end(p, w) else {
                return false;
            };
            if l4 + need > end {
                return false;
            }
            let at = l4 + if ah { 4 } else { 0 };
            return w
                .frame
                .get(at..at + 4)
                .is_some_and(|s| in_range(spis, be32(s)));
        }
        if p.key.family != Family::V6 {
            return false;
        }
        let Some(ip) = ipv6_packet(w) else {
            return false;
        };
        let defragged = w.whole_len != 0;
        match self {
            ExtMatch::Frag {
                ids,
                res,
                first,
                more,
                last,
            } => {
                let Ok(Some(at)) = find_hdr(ip, FRAGMENT, defragged) else {
                    return false;
                };
                let Some(fh) = ip.get(at..at + 8) else {
                    return false;
                };
                let off = u16::from_be_bytes([fh[2], fh[3]]);
                let mf = off & 1 != 0;
                in_range(*ids, be32(&fh[4..8]))
                    && !(*res && (fh[1] != 0 || off & 6 != 0))
                    && !(*first && off & !7 != 0)
                    && (!*more || mf)
                    && !(*last && mf)
            }
            ExtMatch::Opts { dst, len, opts } => {
                let Ok(Some(at)) = find_hdr(ip, if *dst { DEST } else { HOP }, defragged) else {
                    return false;
                };
                let Some(oh) = ip.get(at..at + 2) else {
                    return false;
                };
                let hdrlen = (usize::from(oh[1]) + 1) << 3;
                if ip.len() - at < hdrlen {
                    return false;
                }
                let ret = len.is_none_or(|(l, inv)| (l as usize == hdrlen) != inv);
                let Some(opts) = opts else {
                    return ret;
                };
                options_hold(ip, at + 2, hdrlen - 2, opts) && ret
            }
            ExtMatch::Header { flags, inv, soft } => {
                let whole = defragged.then_some(usize::from(w.whole_len));
                let Some(seen) = header_bits(ip, whole) else {
                    return false;
                };
                if *soft {
                    (seen ^ flags ^ inv) & flags == 0
                } else if *inv != 0 {
                    seen != *flags
                } else {
                    seen == *flags
                }
            }
            ExtMatch::Ah6 { spis, len, res } => {
                let Ok(Some(at)) = find_hdr(ip, AUTH, defragged) else {
                    return false;
                };
                let Some(ah) = ip.get(at..at + 12) else {
                    return false;
                };
                let hdrlen = (u32::from(ah[1]) + 2) << 2;
                in_range(*spis, be32(&ah[4..8]))
                    && (len.0 == 0 || (len.0 == hdrlen) != len.1)
                    && !(*res && (ah[2] != 0 || ah[3] != 0))
            }
            ExtMatch::Spi { .. } => false,
        }
    }
}

/// ip6t_hbh's strict option list: the header's options from `ptr` (`left` bytes of the
/// header) begin with `opts` in order, each of the listed type and, unless 0xff, length.
fn options_hold(ip: &[u8], mut ptr: usize, mut left: usize, opts: &[u16]) -> bool {
    for (i, &o) in opts.iter().enumerate() {
        if left < 1 {
            return false;
        }
        let Some(&ty) = ip.get(ptr) else {
            return false;
        };
        if ty != (o >> 8) as u8 {
            return false;
        }
        let optlen = if ty != 0 {
            if left < 2 {
                return false;
            }
            let Some(&l) = ip.get(ptr + 1) else {
                return false;
            };
            let spec = o & 0xff;
            if spec != 0xff && spec != u16::from(l) {
                return false;
            }
            usize::from(l) + 2
        } else {
            1
        };
        if (ptr + optlen > ip.len() || left < optlen) && i + 1 < opts.len() {
            return false;
        }
        ptr += optlen;
        left = left.saturating_sub(optlen);
    }
    true
}

/// ip6t_ipv6header's walk: the bits of the headers the packet has, or `None` where the
/// kernel answers no match at once. `whole`: the reassembled datagram's IPv6 length when `ip`
/// is the first fragment of a datagram judged whole (its first Fragment header stepped over,
/// as Linux's reassembly removed it; lengths are the reassembled skb's).
fn header_bits(ip: &[u8], whole: Option<usize>) -> Option<u8> {
    let mut next = *ip.get(6)?;
    let mut ptr = 40usize;
    // Bytes of the frame not in the datagram Linux walks (the removed Fragment header).
    let mut gone = 0usize;
    let total = whole.unwrap_or(ip.len());
    let mut len = total as isize - 40;
    let mut seen = 0u8;
    while matches!(next, HOP | ROUTING | FRAGMENT | ESP | AUTH | NONE | DEST) {
        if next == FRAGMENT && whole.is_some() && gone == 0 {
            next = *ip.get(ptr)?;
            ptr += 8;
            gone = 8;
            continue;
        }
        if next == NONE {
            seen |= bits::NONE;
            break;
        }
        if len < 2 {
            return None;
        }
        if next == ESP {
            seen |= bits::ESP;
            break;
        }
        let hp = ip.get(ptr..ptr + 2)?;
        let hdrlen = match next {
            FRAGMENT => 8,
            AUTH => (usize::from(hp[1]) + 2) << 2,
            _ => (usize::from(hp[1]) + 1) << 3,
        };
        seen |= match next {
            HOP => bits::HOPOPTS,
            ROUTING => bits::ROUTING,
            FRAGMENT => bits::FRAGMENT,
            AUTH => bits::AH,
            _ => bits::DSTOPTS,
        };
        next = hp[0];
        len -= hdrlen as isize;
        ptr += hdrlen;
        if ptr - gone > total {
            break;
        }
    }
    if next != NONE && next != ESP {
        seen |= bits::PROTO;
    }
    Some(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv6 packet (no Ethernet) with `chain`'s headers (type, bytes) then 8 bytes of
    /// `last`.
    fn packet(chain: &[(u8, Vec<u8>)], last: u8) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (_, h)) in chain.iter().enumerate() {
            let mut h = h.clone();
            h[0] = chain.get(i + 1).map_or(last, |n| n.0);
            body.extend(h);
        }
        body.extend([0u8; 8]);
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend((body.len() as u16).to_be_bytes());
        ip.push(chain.first().map_or(last, |c| c.0));
        ip.push(64);
        ip.extend([0u8; 32]);
        ip.extend(body);
        ip
    }

    #[test]
    fn find_hdr_stops_at_a_later_fragment() {
        let frag = |off: u16| {
            let mut f = vec![0, 0];
            f.extend((off << 3).to_be_bytes());
            f.extend([0, 0, 0, 7]);
            f
        };
        let hbh = vec![0, 0, 1, 4, 0, 0, 0, 0];
        let p = packet(
            &[(HOP, hbh.clone()), (FRAGMENT, frag(0)), (DEST, hbh.clone())],
            6,
        );
        assert_eq!(find_hdr(&p, DEST, false), Ok(Some(56)));
        assert_eq!(find_hdr(&p, FRAGMENT, false), Ok(Some(48)));
        assert_eq!(find_hdr(&p, AUTH, false), Ok(None));
        let p = packet(&[(FRAGMENT, frag(5)), (DEST, hbh.clone())], 6);
        assert_eq!(find_hdr(&p, DEST, false), Ok(None));
        assert_eq!(find_hdr(&p, FRAGMENT, false), Ok(Some(40)));
        assert_eq!(
            header_bits(&p, None),
            Some(bits::FRAGMENT | bits::DSTOPTS | bits::PROTO)
        );
        // The first fragment of a datagram judged whole: the Fragment header is gone from
        // the chain Linux's reassembly leaves (hop-by-hop, destination options, TCP).
        let p = packet(
            &[(HOP, hbh.clone()), (FRAGMENT, frag(0)), (DEST, hbh.clone())],
            6,
        );
        assert_eq!(find_hdr(&p, FRAGMENT, true), Ok(None));
        assert_eq!(find_hdr(&p, DEST, true), Ok(Some(56)));
        let whole = Some(p.len() - 8 + 400);
        assert_eq!(
            header_bits(&p, whole),
            Some(bits::HOPOPTS | bits::DSTOPTS | bits::PROTO)
        );
        assert_eq!(
            header_bits(&p, None),
            Some(bits::HOPOPTS | bits::FRAGMENT | bits::DSTOPTS | bits::PROTO)
        );
        // Only the first Fragment header is removed.
        let p = packet(&[(FRAGMENT, frag(0)), (FRAGMENT, frag(0))], 17);
        assert_eq!(find_hdr(&p, FRAGMENT, true), Ok(Some(48)));
        assert_eq!(
            header_bits(&p, Some(p.len() - 8)),
            Some(bits::FRAGMENT | bits::PROTO)
        );
        let mut cut = packet(&[(HOP, hbh)], 6);
        cut[6] = HOP;
        cut.truncate(41);
        assert_eq!(find_hdr(&cut, DEST, false), Err(()));
    }

    #[test]
    fn strict_options() {
        // Hop-by-hop: router alert (5, len 2), PadN (1, len 0); 8 bytes.
        let h = [0u8, 0, 5, 2, 0, 0, 1, 0];
        let ip: Vec<u8> = h.to_vec();
        assert!(options_hold(&ip, 2, 6, &[0x0502, 0x0100]));
        assert!(options_hold(&ip, 2, 6, &[0x05ff]));
        assert!(!options_hold(&ip, 2, 6, &[0x0503]));
        assert!(!options_hold(&ip, 2, 6, &[0x0100]));
    }
}
