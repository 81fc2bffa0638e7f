//! FAST PATH: no allocation, lock, syscall or log.
//!
//! Rewriting a packet of a translated connection: IPv4/IPv6 addresses, TCP/UDP ports and ICMP
//! query identifiers, with every checksum updated incrementally (RFC 1624), and for ICMP errors
//! the quoted packet too, as Linux's `nf_nat_icmp_reply_translation` does.
//!
//! Invariants:
//! - Only bytes inside the IP datagram (`info.l3_offset..info.l3_end()`) are read or written, and
//!   a field is written only when the whole field is present; nothing panics on any input.
//! - A checksum that was correct before is correct after, and equals a full recomputation; a
//!   wrong one stays wrong by the same amount (the rewrite never launders a corrupt packet).
//!   An IPv4 UDP checksum of zero ("none", RFC 768) stays zero; a UDP checksum that comes out
//!   zero is stored as `0xffff`.
//! - Rewriting a `dir` packet with a binding and then the result with [`Binding::inverse`]
//!   restores the original bytes.
//! - Non-first fragments carry no L4 header: only the addresses of the sides the binding
//!   translates (and the IPv4 header checksum) change; the first fragment's L4 checksum absorbs
//!   the whole datagram's change. A fragmented ICMP error thus comes out as the fragments of the
//!   translated error.
//!
//! ICMP errors: `dir` is the error's own direction, so the packet it quotes travelled the other
//! way and carries the translated tuple of `dir.other()`, which is turned back into the
//! untranslated one (ports and identifiers included, inner IPv4 header checksum, inner L4
//! checksum when the quote holds it). The outer header's source is rewritten when the binding
//! rewrites sources in `dir`, its destination likewise (so an error from a router behind the
//! gateway appears to come from the gateway's translated address, as in Linux), and the outer
//! ICMP checksum absorbs every change of the message and, for ICMPv6, of the pseudo-header.
//! Protocols other than TCP, UDP, ICMP and ICMPv6 get their addresses rewritten only (their own
//! checksums, if any, are not updated).

use super::Binding;
use crate::conntrack::Dir;
use crate::wire::checksum::Delta;
use crate::wire::{icmpv4, icmpv6, ip_proto, ipv6, FlowKey, PacketInfo, L3};

/// Why a packet could not be rewritten; the caller drops it and counts the reason
/// ([`RewriteError::index`] into a counter array).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RewriteError {
    /// Not an IPv4 or IPv6 packet.
    NotIp = 0,
    /// A header field to rewrite lies outside the datagram.
    Truncated = 1,
    /// An ICMP error whose quoted packet is not an IP header of the error's family.
    BadQuote = 2,
}

impl RewriteError {
    /// How many variants (the size of a counter array).
    pub const COUNT: usize = 3;

    /// Every variant, in index order.
    pub const ALL: [RewriteError; RewriteError::COUNT] = [
        RewriteError::NotIp,
        RewriteError::Truncated,
        RewriteError::BadQuote,
    ];

    /// A stable counter index.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The counter's name.
    pub const fn name(self) -> &'static str {
        match self {
            RewriteError::NotIp => "nat_rewrite_not_ip",
            RewriteError::Truncated => "nat_rewrite_truncated",
            RewriteError::BadQuote => "nat_rewrite_bad_quote",
        }
    }
}

/// Rewrites `frame` (parsed as `info`), a `dir` packet of a connection translated by `b`.
///
/// The commonest packet, IPv4 TCP or UDP with its whole header, is rewritten in straight-line
/// code inlined into the caller ([`V4Fields`]); everything else goes to [`rewrite_other`],
/// out of line. Both give the same bytes (a property test compares them).
#[inline(always)]
pub fn rewrite(
    frame: &mut [u8],
    info: &PacketInfo,
    dir: Dir,
    b: &Binding,
) -> Result<(), RewriteError> {
    // The tuple after translation is the reverse of the other direction's wire tuple
    // (`binding.translation(dir).1`): the fields are read where they lie.
    let other = match dir {
        Dir::Orig => &b.reply,
        Dir::Reply => &b.orig,
    };
    if let Some(f) = V4Fields::find(frame, info) {
        f.rewrite(other);
        return Ok(());
    }
    rewrite_other(frame, info, dir, b)
}

/// [`rewrite`] for everything but the straight-line case: IPv6, ICMP, fragments, other
/// protocols, truncated headers.
#[inline(never)]
fn rewrite_other(
    frame: &mut [u8],
    info: &PacketInfo,
    dir: Dir,
    b: &Binding,
) -> Result<(), RewriteError> {
    let v6 = match info.l3 {
        L3::Ipv4 => false,
        L3::Ipv6 => true,
        _ => return Err(RewriteError::NotIp),
    };
    let l3 = usize::from(info.l3_offset);
    let ip = frame
        .get_mut(l3..info.l3_end())
        .ok_or(RewriteError::Truncated)?;
    let l4 = (info.l4_offset != 0).then(|| usize::from(info.l4_offset) - l3);
    let proto = info.proto().unwrap_or(ip_proto::IPV6_NONXT);
    if let Some(off) = l4 {
        if let Some(&ty) = ip.get(off) {
            if is_icmp_error(v6, proto, ty) {
                return icmp_error(ip, v6, off, dir, b);
            }
        }
    }
    let to = b.translation(dir).1;
    // Only the sides the binding translates: the same bytes for a packet of the connection,
    // and for a non-first fragment of an ICMP error (no L4 header to tell) the outer rewrite
    // its first fragment gets.
    let mut ignored = Delta::ZERO;
    translate(
        ip,
        v6,
        l4,
        proto,
        &to,
        b.rewrites_src(dir),
        b.rewrites_dst(dir),
        &mut ignored,
    )
}

/// The fields the straight-line rewrite changes in an IPv4 TCP or UDP packet with its whole
/// header ([`V4Fields::find`]), each a fixed-size view.
pub struct V4Fields<'a> {
    /// The fixed IPv4 header (checksum at 10, addresses at 12 and 16).
    hdr: &'a mut [u8; 20],
    /// The source and destination ports.
    ports: &'a mut [u8; 4],
    /// The L4 checksum.
    ck: &'a mut [u8; 2],
    udp: bool,
}

impl<'a> V4Fields<'a> {
    /// The fields of `frame` (parsed as `info`) when it is the straight-line case, an IPv4
    /// TCP or UDP packet with its whole header; `None` (nothing changed) for anything else,
    /// which [`rewrite_other`] handles.
    #[inline(always)]
    pub fn find(frame: &'a mut [u8], info: &PacketInfo) -> Option<V4Fields<'a>> {
        let (L3::Ipv4, Some(flow)) = (info.l3, &info.flow) else {
            return None;
        };
        let (ck_at, udp) = match flow.proto {
            ip_proto::TCP => (16, false),
            ip_proto::UDP => (6, true),
            _ => return None,
        };
        let l3 = usize::from(info.l3_offset);
        let l4 = usize::from(info.l4_offset);
        // The datagram inside the frame, the whole fixed IPv4 header before the L4 header, the
        // L4 checksum inside the datagram: one test each, after which the views below cannot
        // fail (each is still checked, and the compiler drops the checks these tests imply:
        // they are written against the datagram's own length for that).
        let ip = frame.get_mut(..info.l3_end())?;
        if l4 < l3 + 20 || ip.len() < l4 + ck_at + 2 {
            return None;
        }
        let (front, seg) = ip.split_at_mut_checked(l4)?;
        let (ports, rest) = seg.split_at_mut_checked(4)?;
        Some(V4Fields {
            hdr: front.get_mut(l3..)?.first_chunk_mut::<20>()?,
            ports: ports.first_chunk_mut::<4>()?,
            ck: rest.get_mut(ck_at - 4..)?.first_chunk_mut::<2>()?,
            udp,
        })
    }

    /// Rewrites the fields so that the packet's tuple becomes the reverse of `other` (the
    /// wire tuple of the connection's other direction).
    ///
    /// The four 16-bit words of the addresses are taken as two 32-bit words, and the two
    /// ports as one, summed with end-around carry in 32 bits: a one's-complement sum is the
    /// same over 16- or 32-bit words once folded (2^16 is 1 modulo 0xffff), and the same in
    /// either byte order (RFC 1071 §2(B)), so the words are loaded in the machine's order and
    /// never swapped. The folded results are bit for bit [`Delta`]'s 16-bit computation (both
    /// are zero only when every word's change is zero; a property test compares the two
    /// paths).
    #[inline(always)]
    pub fn rewrite(self, other: &FlowKey) {
        let V4Fields {
            hdr,
            ports: ports_at,
            ck,
            udp,
        } = self;
        let new_src = word::<12, 16>(&other.dst.0);
        let new_dst = word::<12, 16>(&other.src.0);
        let [s0, s1] = other.dst_port.to_be_bytes();
        let [d0, d1] = other.src_port.to_be_bytes();
        let new_ports = u32::from_ne_bytes([s0, s1, d0, d1]);
        let addr = add1c(
            add1c(!word::<12, 20>(hdr), new_src),
            add1c(!word::<16, 20>(hdr), new_dst),
        );
        let ports = add1c(!u32::from_ne_bytes(*ports_at), new_ports);
        hdr[12..16].copy_from_slice(&new_src.to_ne_bytes());
        hdr[16..20].copy_from_slice(&new_dst.to_ne_bytes());
        *ports_at = new_ports.to_ne_bytes();
        let ipck = u16::from_ne_bytes([hdr[10], hdr[11]]);
        let [c0, c1] = (!fold16(add1c(u32::from(!ipck), addr))).to_ne_bytes();
        hdr[10] = c0;
        hdr[11] = c1;
        let l4ck = u16::from_ne_bytes(*ck);
        // Zero and 0xffff read the same in either byte order.
        if !(udp && l4ck == 0) {
            let mut c = !fold16(add1c(add1c(u32::from(!l4ck), addr), ports));
            if udp && c == 0 {
                c = 0xffff;
            }
            *ck = c.to_ne_bytes();
        }
    }
}

/// The 32-bit word at byte `AT` of `b`, in the machine's byte order.
#[inline(always)]
fn word<const AT: usize, const N: usize>(b: &[u8; N]) -> u32 {
    // One load (built byte by byte, the word is assembled byte by byte).
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[AT..AT + 4]);
    u32::from_ne_bytes(w)
}

/// One's-complement addition of two 32-bit words (the carry out added back in). Zero only
/// when both are zero.
#[inline(always)]
fn add1c(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    // No overflow: with a carry, `s` is at most 2^32 - 2.
    s + u32::from(carry)
}

/// A 32-bit one's-complement sum folded to 16 bits (zero only when it is zero).
#[inline(always)]
fn fold16(x: u32) -> u16 {
    let (s, carry) = ((x >> 16) as u16).overflowing_add(x as u16);
    s + u16::from(carry)
}

#[inline]
fn is_icmp_error(v6: bool, proto: u8, ty: u8) -> bool {
    if v6 {
        proto == ip_proto::ICMPV6 && icmpv6::is_error(ty)
    } else {
        proto == ip_proto::ICMP && icmpv4::is_error(ty)
    }
}

/// Writes `new` over `buf[at..]`, returning the checksum delta; `None` when out of bounds.
#[inline]
fn swap(buf: &mut [u8], at: usize, new: &[u8]) -> Option<Delta> {
    let field = buf.get_mut(at..at + new.len())?;
    let mut d = Delta::ZERO;
    if field != new {
        d.bytes(field, new);
        field.copy_from_slice(new);
    }
    Some(d)
}

#[inline]
fn read16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Rewrites a checksum field by `delta`; adds its own change to `all`. `udp_v4` keeps a zero
/// checksum zero; `udp` stores a computed zero as `0xffff`.
#[inline]
fn fix_checksum(
    buf: &mut [u8],
    at: usize,
    delta: Delta,
    udp: bool,
    v6: bool,
    all: &mut Delta,
) -> Option<()> {
    let old = read16(buf, at)?;
    if udp && !v6 && old == 0 {
        return Some(());
    }
    let mut new = delta.apply(old);
    if udp && new == 0 {
        new = 0xffff;
    }
    *all = all.plus(swap(buf, at, &new.to_be_bytes())?);
    Some(())
}

#[inline]
fn addr_bytes(a: &crate::wire::IpAddr128, v6: bool) -> &[u8] {
    if v6 {
        &a.0
    } else {
        &a.0[12..]
    }
}

/// Rewrites one IP datagram (or quoted datagram) `ip` so its tuple becomes `to`; `l4` is the L4
/// header's offset in `ip` when there is one. `src`/`dst` say which addresses to touch
/// (ports follow them). Every byte change is added to `all` (for an enclosing ICMP checksum).
#[allow(clippy::too_many_arguments)]
#[inline]
fn translate(
    ip: &mut [u8],
    v6: bool,
    l4: Option<usize>,
    proto: u8,
    to: &FlowKey,
    src: bool,
    dst: bool,
    all: &mut Delta,
) -> Result<(), RewriteError> {
    const T: RewriteError = RewriteError::Truncated;
    let (sa, da) = if v6 { (8, 24) } else { (12, 16) };
    let mut addr = Delta::ZERO;
    if src {
        addr = addr.plus(swap(ip, sa, addr_bytes(&to.src, v6)).ok_or(T)?);
    }
    if dst {
        addr = addr.plus(swap(ip, da, addr_bytes(&to.dst, v6)).ok_or(T)?);
    }
    *all = all.plus(addr);
    if !v6 {
        fix_checksum(ip, 10, addr, false, false, all).ok_or(T)?;
    }
    let Some(o) = l4 else {
        return Ok(());
    };
    match proto {
        ip_proto::TCP | ip_proto::UDP => {
            let mut ports = Delta::ZERO;
            if src {
                ports = ports.plus(swap(ip, o, &to.src_port.to_be_bytes()).ok_or(T)?);
            }
            if dst {
                ports = ports.plus(swap(ip, o + 2, &to.dst_port.to_be_bytes()).ok_or(T)?);
            }
            *all = all.plus(ports);
            let (at, udp) = if proto == ip_proto::TCP {
                (o + 16, false)
            } else {
                (o + 6, true)
            };
            // A quote may end before the checksum (RFC 792 guarantees 8 bytes of L4 only);
            // then there is nothing to update.
            if ip.len() >= at + 2 {
                fix_checksum(ip, at, addr.plus(ports), udp, v6, all).ok_or(T)?;
            }
        }
        ip_proto::ICMP if !v6 => {
            let ty = *ip.get(o).ok_or(T)?;
            if icmpv4::is_query(ty) {
                let id = swap(ip, o + 4, &to.src_port.to_be_bytes()).ok_or(T)?;
                *all = all.plus(id);
                fix_checksum(ip, o + 2, id, false, false, all).ok_or(T)?;
            }
        }
        ip_proto::ICMPV6 if v6 => {
            let ty = *ip.get(o).ok_or(T)?;
            let mut d = addr;
            if icmpv6::is_query(ty) {
                let id = swap(ip, o + 4, &to.src_port.to_be_bytes()).ok_or(T)?;
                *all = all.plus(id);
                d = d.plus(id);
            }
            fix_checksum(ip, o + 2, d, false, true, all).ok_or(T)?;
        }
        _ => {}
    }
    Ok(())
}

/// Where the quoted datagram's L4 header starts (`None` for a non-first fragment) and its
/// protocol; `Err` when the quote is not an IP header of the expected version.
fn locate_quote(q: &[u8], v6: bool) -> Result<(Option<usize>, u8), RewriteError> {
    const BAD: RewriteError = RewriteError::BadQuote;
    if !v6 {
        if q.len() < 20 || q[0] >> 4 != 4 {
            return Err(BAD);
        }
        let ihl = usize::from(q[0] & 0x0f) * 4;
        if ihl < 20 || ihl > q.len() {
            return Err(BAD);
        }
        let later = u16::from_be_bytes([q[6], q[7]]) & 0x1fff != 0;
        return Ok(((!later).then_some(ihl), q[9]));
    }
    if q.len() < ipv6::HEADER_LEN || q[0] >> 4 != 6 {
        return Err(BAD);
    }
    let mut walk = ipv6::ExtHeaderWalk::new(&q[ipv6::HEADER_LEN..], q[6]);
    let mut later = false;
    for hdr in &mut walk {
        let hdr = hdr.map_err(|_| BAD)?;
        if let Some(f) = hdr.fragment() {
            later |= f.frag_offset() != 0;
        }
    }
    let l4 = ipv6::HEADER_LEN + walk.offset();
    Ok(((!later).then_some(l4), walk.next_header()))
}

#[cold]
#[inline(never)]
fn icmp_error(
    ip: &mut [u8],
    v6: bool,
    off: usize,
    dir: Dir,
    b: &Binding,
) -> Result<(), RewriteError> {
    let inner_at = off + 8;
    let mut msg = Delta::ZERO;
    {
        let q = ip.get_mut(inner_at..).ok_or(RewriteError::Truncated)?;
        let (l4, proto) = locate_quote(q, v6)?;
        // The quoted packet went the other way, already translated: turn it back.
        let (untranslated, _) = b.translation(dir.other());
        translate(q, v6, l4, proto, &untranslated, true, true, &mut msg)?;
    }
    let (_, to) = b.translation(dir);
    let mut addr = Delta::ZERO;
    translate(
        ip,
        v6,
        None,
        ip_proto::IPV6_NONXT,
        &to,
        b.rewrites_src(dir),
        b.rewrites_dst(dir),
        &mut addr,
    )?;
    // ICMPv6 covers the outer addresses through its pseudo-header; for IPv6 `addr` holds
    // exactly their change (there is no header checksum).
    let delta = if v6 { msg.plus(addr) } else { msg };
    let mut ignored = Delta::ZERO;
    fix_checksum(ip, off + 2, delta, false, v6, &mut ignored).ok_or(RewriteError::Truncated)
}

/// Prepares a packet for transmit checksum offload instead of software checksums: the IPv4
/// header checksum field is zeroed (for `PKT_TX_IP_CKSUM`) and the TCP or UDP checksum field
/// holds the folded pseudo-header sum, length included, not complemented (for
/// `PKT_TX_TCP_CKSUM`/`PKT_TX_UDP_CKSUM`), as the device expects. Returns whether an L4 field
/// was prepared (not for fragments, other protocols or a zero IPv4 UDP checksum, which must
/// stay "none").
pub fn prepare_tx_offload(frame: &mut [u8], info: &PacketInfo) -> Result<bool, RewriteError> {
    use crate::wire::checksum::PseudoHeader;
    let l3 = usize::from(info.l3_offset);
    let ip = frame
        .get_mut(l3..info.l3_end())
        .ok_or(RewriteError::Truncated)?;
    let v6 = match info.l3 {
        L3::Ipv4 => false,
        L3::Ipv6 => true,
        _ => return Err(RewriteError::NotIp),
    };
    if !v6 {
        ip.get_mut(10..12).ok_or(RewriteError::Truncated)?.fill(0);
    }
    let proto = info.proto().unwrap_or(ip_proto::IPV6_NONXT);
    if info.l4_offset == 0 || info.is_fragment() {
        return Ok(false);
    }
    let at = match proto {
        ip_proto::TCP => 16,
        ip_proto::UDP => 6,
        _ => return Ok(false),
    };
    let o = usize::from(info.l4_offset) - l3;
    let len = (ip.len() - o) as u32;
    if !v6 && proto == ip_proto::UDP && read16(ip, o + at) == Some(0) {
        return Ok(false);
    }
    let a = |r: core::ops::Range<usize>| ip.get(r).ok_or(RewriteError::Truncated);
    let ph = if v6 {
        let s: [u8; 16] = a(8..24)?.try_into().map_err(|_| RewriteError::Truncated)?;
        let d: [u8; 16] = a(24..40)?.try_into().map_err(|_| RewriteError::Truncated)?;
        PseudoHeader::V6 {
            src: s.into(),
            dst: d.into(),
        }
    } else {
        let s: [u8; 4] = a(12..16)?.try_into().map_err(|_| RewriteError::Truncated)?;
        let d: [u8; 4] = a(16..20)?.try_into().map_err(|_| RewriteError::Truncated)?;
        PseudoHeader::V4 {
            src: s.into(),
            dst: d.into(),
        }
    };
    let sum = ph.sum(proto, len);
    ip.get_mut(o + at..o + at + 2)
        .ok_or(RewriteError::Truncated)?
        .copy_from_slice(&sum.to_be_bytes());
    Ok(true)
}

#[cfg(test)]
mod tests;
