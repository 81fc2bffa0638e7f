//! FAST PATH: no allocation, lock, syscall or log.
//!
//! Flow affinity: which worker owns a packet's connection. Each worker tracks its own
//! connections, so every packet of a connection, in both directions, must be judged by the same
//! worker. The owner is chosen by a hash of the packet's address pair that is the same both
//! ways (symmetric), over:
//!
//! - the packet's own source and destination for IP packets, fragments included (a non-first
//!   fragment has no ports, so ports cannot take part, or a datagram's fragments would part);
//! - the quoted packet's source and destination for ICMP and ICMPv6 errors, whose connection is
//!   the one they quote (RELATED); a fragmented error's fragments go by their own pair, and the
//!   worker that holds them until the datagram is whole hands it to the quote's owner
//!   ([`owner_of_whole`]; with a nat table every fragmented datagram is placed that way,
//!   [`owner_nat`]).
//!
//! A packet that reaches a worker other than its owner (no symmetric RSS on the NIC, or a
//! device without RSS) is handed to the owner through a single-producer ring. Frames without
//! an IP flow (ARP, malformed) have no owner: whoever received them judges them.
//!
//! Hashing by address pair keeps all connections between two hosts on one worker; spreading
//! them by ports would need fragment reassembly before steering.

use crate::wire::{self, icmpv4, icmpv6, ip_proto, Family, IpAddr128, PacketInfo};

/// The owner among `workers` of the frame's connection, if it has one.
#[inline]
pub fn owner(frame: &[u8], workers: u16) -> Option<u16> {
    let info = match wire::parse::parse_common(frame) {
        Some(i) => i,
        None => wire::parse_frame(frame).ok()?,
    };
    owner_of(frame, &info, workers)
}

/// [`owner`] for an already parsed frame. A fragment goes by its own address pair, an ICMP
/// error's first fragment included (its later fragments have no quote to go by).
#[inline]
pub fn owner_of(frame: &[u8], info: &PacketInfo, workers: u16) -> Option<u16> {
    owner_by::<false>(frame, info, workers)
}

/// [`owner_of`] for the first fragment of a whole datagram, which stands for the datagram: an
/// ICMP error by its quote. The worker holding the fragments ([`owner_of`]'s address pair)
/// hands the whole datagram to this owner when it is another.
pub fn owner_of_whole(frame: &[u8], info: &PacketInfo, workers: u16) -> Option<u16> {
    owner_by::<true>(frame, info, workers)
}

#[inline(always)]
fn owner_by<const WHOLE: bool>(frame: &[u8], info: &PacketInfo, workers: u16) -> Option<u16> {
    let key = info.flow?;
    let (a, b) = match quoted_addresses(frame, info) {
        Some(q) if WHOLE || matches!(info.frag, wire::Fragment::None) => q,
        _ => (key.src, key.dst),
    };
    Some(pick(a, b, workers))
}

/// [`owner_of`] when a nat table is loaded: a packet whose tuple the NAT steering tables know
/// (a published endpoint, a pool address, a private server: [`crate::nat::steer`]) goes to the
/// worker owning its port, an ICMP error where replies to the packet it quotes go; anything
/// else by the address pair as without NAT. Every fragment, the first included, goes by its
/// address pair (a non-first fragment has no ports, and all of a datagram's fragments must meet
/// the worker that holds them until it is whole); the whole datagram then goes where its first
/// fragment's tuple steers ([`owner_nat_whole`]), handed over by the worker that held it.
#[inline]
pub fn owner_nat(frame: &[u8], info: &PacketInfo, steering: &crate::nat::Steering) -> Option<u16> {
    let key = info.flow?;
    if !matches!(info.frag, wire::Fragment::None) {
        return Some(pick(key.src, key.dst, steering.workers()));
    }
    owner_nat_whole(frame, info, steering)
}

/// [`owner_nat`] for an unfragmented packet or the first fragment of a whole datagram.
#[inline]
pub fn owner_nat_whole(
    frame: &[u8],
    info: &PacketInfo,
    steering: &crate::nat::Steering,
) -> Option<u16> {
    use crate::nat::steer::Steer;
    let key = info.flow?;
    let workers = steering.workers();
    let (steer, (a, b)) = match quoted_addresses(frame, info) {
        Some(pair) => {
            let quote = frame.get(usize::from(info.l4_offset) + 8..info.l3_end())?;
            match crate::conntrack::icmp::quoted_key(key.family, quote) {
                Some(q) => (steering.steer_error(&q), pair),
                None => return Some(pick(pair.0, pair.1, workers)),
            }
        }
        None => (steering.steer(&key), (key.src, key.dst)),
    };
    Some(match steer {
        Steer::Worker(w) => w,
        Steer::Flow(_) => pick(a, b, workers),
    })
}

/// A symmetric hash of an address pair, scaled to `0..workers`.
#[inline]
pub fn pick(a: IpAddr128, b: IpAddr128, workers: u16) -> u16 {
    let (lo, hi) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let (lo_lo, lo_hi) = crate::conntrack::halves(&lo);
    let (hi_lo, hi_hi) = crate::conntrack::halves(&hi);
    let h = crate::conntrack::mix(
        lo_lo ^ hi_hi ^ 0x243f_6a88_85a3_08d3,
        lo_hi ^ hi_lo ^ 0x1319_8a2e_0370_7344,
    );
    let h32 = (h ^ (h >> 32)) as u32;
    ((u64::from(h32) * u64::from(workers.max(1))) >> 32) as u16
}

/// For an ICMP or ICMPv6 error: the source and destination of the packet it quotes.
#[inline]
fn quoted_addresses(frame: &[u8], info: &PacketInfo) -> Option<(IpAddr128, IpAddr128)> {
    let key = info.flow?;
    let error = match (key.family, key.proto) {
        (Family::V4, ip_proto::ICMP) => {
            let ty = *frame.get(usize::from(info.l4_offset))?;
            matches!(
                ty,
                icmpv4::msg_type::DEST_UNREACHABLE
                    | icmpv4::msg_type::SOURCE_QUENCH
                    | icmpv4::msg_type::REDIRECT
                    | icmpv4::msg_type::TIME_EXCEEDED
                    | icmpv4::msg_type::PARAM_PROBLEM
            )
        }
        (Family::V6, ip_proto::ICMPV6) => {
            let ty = *frame.get(usize::from(info.l4_offset))?;
            ty < 128 && ty != 0 && ty <= icmpv6::msg_type::PARAM_PROBLEM
        }
        _ => false,
    };
    if !error || info.l4_offset == 0 {
        return None;
    }
    let inner = frame.get(usize::from(info.l4_offset) + 8..info.l3_end())?;
    match key.family {
        Family::V4 => {
            let src: [u8; 4] = inner.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = inner.get(16..20)?.try_into().ok()?;
            (inner.first()? >> 4 == 4).then(|| {
                (
                    IpAddr128::from_v4_octets(src),
                    IpAddr128::from_v4_octets(dst),
                )
            })
        }
        Family::V6 => {
            let src: [u8; 16] = inner.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = inner.get(24..40)?.try_into().ok()?;
            (inner.first()? >> 4 == 6).then_some((IpAddr128(src), IpAddr128(dst)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use crate::wire::tcp::Flags;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(o: u32) -> Ipv4Addr {
        Ipv4Addr::from(o)
    }

    fn icmp4_error(from: Ipv4Addr, to: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
        FrameSpec::new(
            IpSpec::v4(from, to),
            L4Spec::Icmp {
                ty: icmpv4::msg_type::TIME_EXCEEDED,
                code: 0,
                ident: 0,
                seq: 0,
                payload: quoted[14..].to_vec(),
            },
        )
        .build()
    }

    proptest! {
        #[test]
        fn both_directions_fragments_and_errors_share_an_owner(
            a in any::<u32>(), b in any::<u32>(), router in any::<u32>(),
            sport in 1u16.., dport in 1u16.., workers in 1u16..64,
        ) {
            let (a, b, router) = (v4(a), v4(b), v4(router));
            let fwd = FrameSpec::new(IpSpec::v4(a, b), L4Spec::tcp(sport, dport, Flags::SYN)).build();
            let rev = FrameSpec::new(IpSpec::v4(b, a), L4Spec::tcp(dport, sport, Flags::SYN | Flags::ACK)).build();
            let o = owner(&fwd, workers).unwrap();
            prop_assert!(o < workers);
            prop_assert_eq!(owner(&rev, workers), Some(o));
            // An error about the forward packet, from a router, to its sender.
            prop_assert_eq!(owner(&icmp4_error(router, a, &fwd), workers), Some(o));
            // Every fragment of a datagram of the pair.
            let big = FrameSpec::new(IpSpec::v4(a, b), L4Spec::udp(sport, dport, &[7u8; 2000])).fragments(600);
            for f in &big {
                prop_assert_eq!(owner(f, workers), Some(o));
            }
        }

        #[test]
        fn ipv6_directions_and_errors_share_an_owner(
            a in any::<u128>(), b in any::<u128>(), workers in 1u16..64,
        ) {
            let (a, b) = (Ipv6Addr::from(a), Ipv6Addr::from(b));
            let fwd = FrameSpec::new(IpSpec::v6(a, b), L4Spec::udp(1000, 53, b"q")).build();
            let rev = FrameSpec::new(IpSpec::v6(b, a), L4Spec::udp(53, 1000, b"a")).build();
            let o = owner(&fwd, workers).unwrap();
            prop_assert_eq!(owner(&rev, workers), Some(o));
            let err = FrameSpec::new(
                IpSpec::v6("2001:db8::1".parse().unwrap(), a),
                L4Spec::Icmpv6 { ty: icmpv6::msg_type::DEST_UNREACHABLE, code: 4, ident: 0, seq: 0, payload: fwd[14..].to_vec() },
            ).build();
            prop_assert_eq!(owner(&err, workers), Some(o));
        }
    }

    /// A fragmented ICMP error: every fragment by the outer address pair (the later ones have
    /// no quote), and the whole datagram then by its quote. Before, the first fragment went by
    /// the quote and the rest by the pair: held on two workers, the datagram never completed.
    #[test]
    fn a_fragmented_errors_fragments_share_an_owner_and_the_whole_goes_by_its_quote() {
        let (a, b) = (v4(0xc633_6407), v4(0x0a00_0005));
        let big = FrameSpec::new(IpSpec::v4(a, b), L4Spec::udp(4000, 53, &[7u8; 1400])).build();
        let mut apart = 0;
        for r in 0..64u32 {
            let router = v4(0xcb00_7100 + r);
            let err = icmp4_error(router, a, &big);
            let whole = owner(&err, 4).unwrap();
            let frags = FrameSpec::new(
                IpSpec::v4(router, a),
                L4Spec::Icmp {
                    ty: icmpv4::msg_type::TIME_EXCEEDED,
                    code: 0,
                    ident: 0,
                    seq: 0,
                    payload: big[14..].to_vec(),
                },
            )
            .fragments(600);
            assert!(frags.len() > 1);
            let pair = pick(IpAddr128::from_v4(router), IpAddr128::from_v4(a), 4);
            for f in &frags {
                assert_eq!(owner(f, 4), Some(pair));
            }
            let info = wire::parse_frame(&frags[0]).unwrap();
            assert_eq!(owner_of_whole(&frags[0], &info, 4), Some(whole));
            apart += usize::from(whole != pair);
        }
        assert!(apart > 0);
    }

    #[test]
    fn owners_spread_over_workers() {
        let mut seen = [0u32; 4];
        for i in 0..4000u32 {
            let f = FrameSpec::new(
                IpSpec::v4(v4(0x0a00_0000 + i), v4(0xc000_0201)),
                L4Spec::udp(1, 2, b""),
            )
            .build();
            seen[usize::from(owner(&f, 4).unwrap())] += 1;
        }
        for n in seen {
            assert!((800..1200).contains(&n), "{seen:?}");
        }
    }

    #[test]
    fn arp_and_garbage_have_no_owner() {
        let arp = crate::wire::builder::arp_request(
            crate::wire::MacAddr([2, 0, 0, 0, 0, 1]),
            v4(0x0a00_0001),
            v4(0x0a00_0002),
        );
        assert_eq!(owner(&arp, 2), None);
        assert_eq!(owner(&[0u8; 10], 2), None);
    }
}
