//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The ICMP header both versions share (RFC 792, RFC 4443): type, code, checksum and four
//! bytes of rest-of-header, which a query type starts with an identifier and a sequence
//! number. [`super::icmpv4`] and [`super::icmpv6`] name the view and the value for their
//! version and add what differs: the message types and the checksum (ICMPv6's covers the
//! IPv6 pseudo-header, ICMPv4's the message alone).
//!
//! Invariant: a [`Packet`] from `new_checked` holds at least the 8-byte header, so every
//! accessor is in bounds. The view is over the whole message: the checksum covers the whole
//! buffer.

use core::marker::PhantomData;

use super::{Field, ParseError};

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

/// What one ICMP version names differently.
pub trait Version: Copy + core::fmt::Debug + PartialEq + Eq {
    /// A buffer shorter than the header.
    const TRUNCATED: ParseError;
    /// A checksum that does not verify.
    const BAD_CHECKSUM: ParseError;
    const ECHO_REQUEST: u8;
    const ECHO_REPLY: u8;
}

/// ICMP for IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V4;

/// ICMP for IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6;

impl Version for V4 {
    const TRUNCATED: ParseError = ParseError::IcmpTruncated;
    const BAD_CHECKSUM: ParseError = ParseError::IcmpBadChecksum;
    const ECHO_REQUEST: u8 = super::icmpv4::msg_type::ECHO_REQUEST;
    const ECHO_REPLY: u8 = super::icmpv4::msg_type::ECHO_REPLY;
}

impl Version for V6 {
    const TRUNCATED: ParseError = ParseError::Icmpv6Truncated;
    const BAD_CHECKSUM: ParseError = ParseError::Icmpv6BadChecksum;
    const ECHO_REQUEST: u8 = super::icmpv6::msg_type::ECHO_REQUEST;
    const ECHO_REPLY: u8 = super::icmpv6::msg_type::ECHO_REPLY;
}

/// A view over an ICMP message of version `V`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>, V: Version> {
    buffer: T,
    version: PhantomData<V>,
}

impl<T: AsRef<[u8]>, V: Version> Packet<T, V> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T, V> {
        Packet {
            buffer,
            version: PhantomData,
        }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T, V>, ParseError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<(), ParseError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(V::TRUNCATED);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message, as the checksum covers it.
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
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
}

impl<T: AsRef<[u8]> + AsMut<[u8]>, V: Version> Packet<T, V> {
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

    /// Stores the checksum `sum` computes over the whole buffer (its checksum field zero).
    #[inline]
    pub(super) fn fill_checksum_with(&mut self, sum: impl FnOnce(&[u8]) -> u16) {
        self.set_checksum(0);
        let c = sum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// An ICMP message of version `V` as a value (slow path). `rest_of_header` holds the four
/// bytes after the checksum, e.g. `(ident << 16) | seq` for echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a, V: Version> {
    pub msg_type: u8,
    pub code: u8,
    pub rest_of_header: u32,
    pub payload: &'a [u8],
    pub version: PhantomData<V>,
}

impl<'a, V: Version> Repr<'a, V> {
    #[inline]
    pub const fn new(msg_type: u8, code: u8, rest_of_header: u32, payload: &'a [u8]) -> Self {
        Repr {
            msg_type,
            code,
            rest_of_header,
            payload,
            version: PhantomData,
        }
    }

    /// An echo request.
    #[inline]
    pub const fn echo_request(ident: u16, seq_no: u16, payload: &'a [u8]) -> Self {
        Repr::echo(V::ECHO_REQUEST, ident, seq_no, payload)
    }

    /// An echo reply.
    #[inline]
    pub const fn echo_reply(ident: u16, seq_no: u16, payload: &'a [u8]) -> Self {
        Repr::echo(V::ECHO_REPLY, ident, seq_no, payload)
    }

    #[inline]
    const fn echo(msg_type: u8, ident: u16, seq_no: u16, payload: &'a [u8]) -> Self {
        Repr::new(msg_type, 0, ((ident as u32) << 16) | seq_no as u32, payload)
    }

    /// Parses a message whose checksum `verifies` accepts.
    pub(super) fn parse_with<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T, V>,
        verifies: impl FnOnce(&Packet<&'a [u8], V>) -> bool,
    ) -> Result<Self, ParseError> {
        let buf: &'a [u8] = T::as_ref(p.buffer);
        let p = Packet::new_checked(buf)?;
        if !verifies(&p) {
            return Err(V::BAD_CHECKSUM);
        }
        Ok(Repr::new(
            p.msg_type(),
            p.msg_code(),
            p.rest_of_header(),
            &buf[HEADER_LEN..],
        ))
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes the message, then its checksum by `fill`.
    ///
    /// # Panics
    /// If the buffer is not exactly `buffer_len()` bytes.
    pub(super) fn emit_with<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut Packet<T, V>,
        fill: impl FnOnce(&mut Packet<T, V>),
    ) {
        p.set_msg_type(self.msg_type);
        p.set_msg_code(self.code);
        p.set_rest_of_header(self.rest_of_header);
        p.payload_mut().copy_from_slice(self.payload);
        fill(p);
    }
}
