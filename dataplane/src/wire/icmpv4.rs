//! FAST PATH: no allocation, lock, syscall or log.
//!
//! ICMP for IPv4 (RFC 792; address mask RFC 950).
//!
//! The header, its view and its value are [`super::icmp`]'s, shared with ICMPv6; this module
//! names ICMPv4's types and its checksum.
//! ICMPv4 has no pseudo-header: the checksum covers the message alone.

use super::{checksum, icmp, ParseError};

pub use super::icmp::HEADER_LEN;

/// Message types (RFC 792, RFC 950, RFC 1256).
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const ROUTER_ADVERT: u8 = 9;
    pub const ROUTER_SOLICIT: u8 = 10;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
    pub const TIMESTAMP: u8 = 13;
    pub const TIMESTAMP_REPLY: u8 = 14;
    pub const INFO_REQUEST: u8 = 15;
    pub const INFO_REPLY: u8 = 16;
    pub const ADDR_MASK_REQUEST: u8 = 17;
    pub const ADDR_MASK_REPLY: u8 = 18;
}

/// Whether `ty` is a query/response type whose rest-of-header starts with an identifier.
#[inline]
pub const fn is_query(ty: u8) -> bool {
    matches!(ty, 0 | 8 | 13..=18)
}

/// Whether `ty` is an error message (it quotes the offending packet).
#[inline]
pub const fn is_error(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// The type answering query `ty`, or the query answered by reply `ty`; `ty` itself otherwise.
#[inline]
pub const fn reply_type(ty: u8) -> u8 {
    match ty {
        msg_type::ECHO_REQUEST => msg_type::ECHO_REPLY,
        msg_type::ECHO_REPLY => msg_type::ECHO_REQUEST,
        msg_type::TIMESTAMP => msg_type::TIMESTAMP_REPLY,
        msg_type::TIMESTAMP_REPLY => msg_type::TIMESTAMP,
        msg_type::INFO_REQUEST => msg_type::INFO_REPLY,
        msg_type::INFO_REPLY => msg_type::INFO_REQUEST,
        msg_type::ADDR_MASK_REQUEST => msg_type::ADDR_MASK_REPLY,
        msg_type::ADDR_MASK_REPLY => msg_type::ADDR_MASK_REQUEST,
        other => other,
    }
}

/// A view over an ICMPv4 message.
pub type Packet<T> = icmp::Packet<T, icmp::V4>;

/// An ICMPv4 message as a value (slow path).
pub type Repr<'a> = icmp::Repr<'a, icmp::V4>;

impl<T: AsRef<[u8]>> Packet<T> {
    /// Whether the checksum over the whole buffer verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.bytes()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.fill_checksum_with(checksum::checksum);
    }
}

impl<'a> Repr<'a> {
    /// Parses a message, verifying its checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>, ParseError> {
        Repr::parse_with(p, |p| p.verify_checksum())
    }

    /// Writes the message and its checksum.
    ///
    /// # Panics
    /// If the buffer is not exactly `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        self.emit_with(p, |p| p.fill_checksum());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Echo request, ident 0x1234, seq 1, payload "ping".
    static ECHO: [u8; 12] = [
        8, 0, 0x06, 0xfa, 0x12, 0x34, 0x00, 0x01, b'p', b'i', b'n', b'g',
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.msg_code(), p.ident(), p.seq_no()),
            (8, 0, 0x1234, 1)
        );
        assert_eq!(p.payload(), b"ping");
        assert!(p.verify_checksum());
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr::echo_request(0x1234, 1, b"ping")
        );
    }

    #[test]
    fn construct() {
        let repr = Repr::echo_request(0x1234, 1, b"ping");
        let mut buf = [0u8; 12];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ECHO);
    }

    #[test]
    fn truncated_and_bad_checksum() {
        assert_eq!(
            Packet::new_checked(&ECHO[..7]),
            Err(ParseError::IcmpTruncated)
        );
        let mut b = ECHO;
        b[11] ^= 0xff;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])),
            Err(ParseError::IcmpBadChecksum)
        );
    }

    #[test]
    fn classes() {
        assert!(is_query(msg_type::ECHO_REQUEST) && !is_error(msg_type::ECHO_REQUEST));
        assert!(is_error(msg_type::DEST_UNREACHABLE) && !is_query(msg_type::DEST_UNREACHABLE));
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
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        }
    }
}
