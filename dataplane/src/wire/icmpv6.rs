//! FAST PATH: no allocation, lock, syscall or log.
//!
//! ICMP for IPv6 (RFC 4443; neighbour discovery types RFC 4861).
//!
//! The header, its view and its value are [`super::icmp`]'s, shared with ICMPv4; this module
//! names ICMPv6's types and its checksum.
//! The checksum includes the IPv6 pseudo-header (RFC 4443 §2.3).

use super::{checksum::PseudoHeader, icmp, ip_proto, ParseError};

pub use super::icmp::HEADER_LEN;

/// Message types (RFC 4443 §2.1, RFC 4861 §4, RFC 2710, RFC 3810).
pub mod msg_type {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const MLD_QUERY: u8 = 130;
    pub const MLD_REPORT: u8 = 131;
    pub const MLD_DONE: u8 = 132;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
    pub const MLDV2_REPORT: u8 = 143;
}

/// Whether `ty` is a query/response type whose rest-of-header starts with an identifier.
#[inline]
pub const fn is_query(ty: u8) -> bool {
    matches!(ty, 128 | 129)
}

/// Whether `ty` is an error message (it quotes the offending packet).
#[inline]
pub const fn is_error(ty: u8) -> bool {
    matches!(ty, 1..=127)
}

/// The type answering query `ty`, or the query answered by reply `ty`; `ty` itself otherwise.
#[inline]
pub const fn reply_type(ty: u8) -> u8 {
    match ty {
        msg_type::ECHO_REQUEST => msg_type::ECHO_REPLY,
        msg_type::ECHO_REPLY => msg_type::ECHO_REQUEST,
        // Node information query and response (RFC 4620), paired as Linux's conntrack pairs
        // them.
        139 => 140,
        140 => 139,
        other => other,
    }
}

/// A view over an ICMPv6 message.
pub type Packet<T> = icmp::Packet<T, icmp::V6>;

/// An ICMPv6 message as a value (slow path).
pub type Repr<'a> = icmp::Repr<'a, icmp::V6>;

impl<T: AsRef<[u8]>> Packet<T> {
    /// Whether the checksum over the whole buffer and the pseudo-header verifies.
    #[inline]
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        pseudo.verify(ip_proto::ICMPV6, self.bytes())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes and stores the checksum over the whole buffer and the pseudo-header.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.fill_checksum_with(|b| pseudo.checksum(ip_proto::ICMPV6, b));
    }
}

impl<'a> Repr<'a> {
    /// Parses a message, verifying its checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
        pseudo: &PseudoHeader,
    ) -> Result<Repr<'a>, ParseError> {
        Repr::parse_with(p, |p| p.verify_checksum(pseudo))
    }

    /// Writes the message and its checksum.
    ///
    /// # Panics
    /// If the buffer is not exactly `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>, pseudo: &PseudoHeader) {
        self.emit_with(p, |p| p.fill_checksum(pseudo));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    fn pseudo() -> PseudoHeader {
        PseudoHeader::V6 {
            src: "fe80::1".parse().unwrap(),
            dst: Ipv6Addr::LOCALHOST,
        }
    }

    fn echo() -> Vec<u8> {
        let mut m = vec![128, 0, 0, 0, 0x12, 0x34, 0x00, 0x01, b'p', b'i', b'n', b'g'];
        let c = pseudo().checksum(ip_proto::ICMPV6, &m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    #[test]
    fn deconstruct() {
        let m = echo();
        let p = Packet::new_checked(&m[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.msg_code(), p.ident(), p.seq_no()),
            (128, 0, 0x1234, 1)
        );
        assert!(p.verify_checksum(&pseudo()));
        assert_eq!(
            Repr::parse(&p, &pseudo()).unwrap(),
            Repr::echo_request(0x1234, 1, b"ping")
        );
    }

    #[test]
    fn construct() {
        let repr = Repr::echo_request(0x1234, 1, b"ping");
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &pseudo());
        assert_eq!(buf, echo());
    }

    #[test]
    fn truncated_and_bad_checksum() {
        let m = echo();
        assert_eq!(
            Packet::new_checked(&m[..7]),
            Err(ParseError::Icmpv6Truncated)
        );
        let other = PseudoHeader::V6 {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::LOCALHOST,
        };
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&m[..]), &other),
            Err(ParseError::Icmpv6BadChecksum)
        );
    }

    #[test]
    fn classes() {
        assert!(is_query(msg_type::ECHO_REPLY) && !is_error(msg_type::ECHO_REPLY));
        assert!(is_error(msg_type::PACKET_TOO_BIG));
        assert!(!is_error(msg_type::NEIGHBOR_SOLICIT) && !is_query(msg_type::NEIGHBOR_SOLICIT));
        for ty in 0..=255u8 {
            assert_eq!(reply_type(reply_type(ty)), ty);
        }
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            msg_type in any::<u8>(), code in any::<u8>(), rest_of_header in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let repr = Repr::new(msg_type, code, rest_of_header, &payload);
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &pseudo());
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p, &pseudo()).unwrap(), repr);
        }
    }
}
