//! FAST PATH: no allocation, lock, syscall or log.
//!
//! ICMP for IPv4 (RFC 792; address mask RFC 950).
//!
//! Invariant: a [`Packet`] from `new_checked` holds at least the 8-byte header (type, code,
//! checksum, 4 bytes of rest-of-header), so every accessor is in bounds. The view is over the
//! whole message: the checksum covers the whole buffer.
//! ICMPv4 has no pseudo-header: the checksum covers the message alone.

use super::{checksum, Field, ParseError};

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
            return Err(ParseError::IcmpTruncated);
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
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref()) == 0xffff
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
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// An ICMPv4 message as a value (slow path). `rest_of_header` holds the four bytes after
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
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>, ParseError> {
        let buf: &'a [u8] = T::as_ref(p.buffer);
        let p = Packet::new_checked(buf)?;
        if !p.verify_checksum() {
            return Err(ParseError::IcmpBadChecksum);
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
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_msg_type(self.msg_type);
        p.set_msg_code(self.code);
        p.set_rest_of_header(self.rest_of_header);
        p.payload_mut().copy_from_slice(self.payload);
        p.fill_checksum();
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
            let repr = Repr { msg_type, code, rest_of_header, payload: &payload };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        }
    }
}
