//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The packet an ICMP or ICMPv6 error quotes (RFC 792, RFC 4443 §2.4 c): its flow key, read
//! from however much of it the error carries.
//!
//! Invariant: [`quoted_key`] reads only within `quote` and returns `None` (INVALID) for
//! anything Linux's `nf_ct_get_tuplepr` refuses: a wrong IP version, a header longer than the
//! quote, a non-first fragment, or fewer than 4 bytes of TCP/UDP ports or 8 bytes of ICMP.

use crate::wire::flow::icmp_ports;
use crate::wire::{ip_proto, ipv4, ipv6, Family, FlowKey};

/// The flow key of the packet quoted by an error of family `family`.
#[inline]
pub fn quoted_key(family: Family, quote: &[u8]) -> Option<FlowKey> {
    match family {
        Family::V4 => quoted_v4(quote),
        Family::V6 => quoted_v6(quote),
    }
}

fn quoted_v4(q: &[u8]) -> Option<FlowKey> {
    if q.len() < ipv4::HEADER_LEN || q[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(q[0] & 0x0f) * 4;
    if ihl < ipv4::HEADER_LEN || ihl > q.len() {
        return None;
    }
    let frag_offset = u16::from_be_bytes([q[6], q[7]]) & 0x1fff;
    if frag_offset != 0 {
        return None;
    }
    let proto = q[9];
    let src = [q[12], q[13], q[14], q[15]];
    let dst = [q[16], q[17], q[18], q[19]];
    let (sp, dp) = ports(Family::V4, proto, &q[ihl..])?;
    Some(FlowKey::new_v4(src.into(), dst.into(), proto, sp, dp))
}

fn quoted_v6(q: &[u8]) -> Option<FlowKey> {
    if q.len() < ipv6::HEADER_LEN || q[0] >> 4 != 6 {
        return None;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&q[8..24]);
    dst.copy_from_slice(&q[24..40]);
    let mut walk = ipv6::ExtHeaderWalk::new(&q[ipv6::HEADER_LEN..], q[6]);
    for hdr in &mut walk {
        let hdr = hdr.ok()?;
        if let Some(f) = hdr.fragment() {
            if f.frag_offset() != 0 {
                return None;
            }
        }
    }
    let proto = walk.next_header();
    let l4 = q.get(ipv6::HEADER_LEN + walk.offset()..)?;
    let (sp, dp) = ports(Family::V6, proto, l4)?;
    Some(FlowKey::new_v6(src.into(), dst.into(), proto, sp, dp))
}

fn ports(family: Family, proto: u8, l4: &[u8]) -> Option<(u16, u16)> {
    match (family, proto) {
        (_, ip_proto::TCP | ip_proto::UDP) => {
            let p = l4.get(..4)?;
            Some((
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            ))
        }
        (Family::V4, ip_proto::ICMP) | (Family::V6, ip_proto::ICMPV6) => {
            let h = l4.get(..8)?;
            Some(icmp_ports(
                family,
                h[0],
                h[1],
                u16::from_be_bytes([h[4], h[5]]),
            ))
        }
        _ => Some((0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use crate::wire::ethernet;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    #[test]
    fn truncated_quotes() {
        let spec = FrameSpec::new(
            IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)),
            L4Spec::udp(1000, 53, b"query"),
        );
        let frame = spec.build();
        let ip = &frame[ethernet::HEADER_LEN..];
        assert_eq!(quoted_key(Family::V4, &ip[..24]), Some(spec.flow_key()));
        assert_eq!(quoted_key(Family::V4, &ip[..23]), None);
        assert_eq!(quoted_key(Family::V6, &ip[..24]), None);
    }

    proptest! {
        #[test]
        fn never_panics(q in proptest::collection::vec(any::<u8>(), 0..120), v6 in any::<bool>()) {
            let _ = quoted_key(if v6 { Family::V6 } else { Family::V4 }, &q);
        }
    }
}
