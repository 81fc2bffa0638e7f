//! FAST PATH: no allocation, lock, syscall or log.
//!
//! ICMP for IPv6 (RFC 4443; neighbour discovery types RFC 4861).
//!
//! Invariant: a [`Packet`] from `new_checked` holds at least the 8-byte header (type, code,
//! checksum, 4 bytes of rest-of-header), so every accessor is in bounds. The view is over the
//! whole message: the checksum covers the whole buffer.
//! The checksum includes the IPv6 pseudo-header (RFC 4443 §2.3).

use super::{checksum::PseudoHeader, ip_proto, Field, ParseError};

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const SEQ_NO: Field = 6..8;
    pub const REST: Field = 4..8;
}

/// Header length: type, code, checksum, rest-of-header.
pub const HEADER_LEN: usize = field::REST.end;

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
        other => other,
    }
}

/// A view over an ICMPv6 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ParseError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<(), ParseError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Icmpv6Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn u16_at(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Identifier (meaningful for query types only).
    #[inline]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    /// Sequence number (meaningful for query types only).
    #[inline]
    pub fn seq_no(&self) -> u16 {
        self.u16_at(field::SEQ_NO)
    }

    /// The four rest-of-header bytes as one word (e.g. MTU, pointer, gateway, ident+seq).
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::REST];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Everything after the 8-byte header (echo data, or the quoted packet of an error).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum over the whole buffer verifies.
    #[inline]
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        pseudo.verify(ip_proto::ICMPV6, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    #[inline]
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_seq_no(&mut self, v: u16) {
        self.buffer.as_mut()[field::SEQ_NO].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let c = pseudo.checksum(ip_proto::ICMPV6, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// An ICMPv6 message as a value (slow path). `rest_of_header` holds the four bytes after
/// the checksum, e.g. `(ident << 16) | seq` for echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub msg_type: u8,
    pub code: u8,
    pub rest_of_header: u32,
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// An echo request.
    #[inline]
    pub const fn echo_request(ident: u16, seq_no: u16, payload: &'a [u8]) -> Repr<'a> {
        Repr::echo(msg_type::ECHO_REQUEST, ident, seq_no, payload)
    }

    /// An echo reply.
    #[inline]
    pub const fn echo_reply(ident: u16, seq_no: u16, payload: &'a [u8]) -> Repr<'a> {
        Repr::echo(msg_type::ECHO_REPLY, ident, seq_no, payload)
    }

    #[inline]
    const fn echo(msg_type: u8, ident: u16, seq_no: u16, payload: &'a [u8]) -> Repr<'a> {
        Repr {
            msg_type,
            code: 0,
            rest_of_header: ((ident as u32) << 16) | seq_no as u32,
            payload,
        }
    }

    /// Parses a message, verifying its checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
        pseudo: &PseudoHeader,
    ) -> Result<Repr<'a>, ParseError> {
        let buf: &'a [u8] = T::as_ref(p.buffer);
        let p = Packet::new_checked(buf)?;
        if !p.verify_checksum(pseudo) {
            return Err(ParseError::Icmpv6BadChecksum);
        }
        Ok(Repr {
            msg_type: p.msg_type(),
            code: p.msg_code(),
            rest_of_header: p.rest_of_header(),
            payload: &buf[HEADER_LEN..],
        })
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes the message and its checksum.
    ///
    /// # Panics
    /// If the buffer is not exactly `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>, pseudo: &PseudoHeader) {
        p.set_msg_type(self.msg_type);
        p.set_msg_code(self.code);
        p.set_rest_of_header(self.rest_of_header);
        p.payload_mut().copy_from_slice(self.payload);
        p.fill_checksum(pseudo);
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
            let repr = Repr { msg_type, code, rest_of_header, payload: &payload };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &pseudo());
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p, &pseudo()).unwrap(), repr);
        }
    }
}
