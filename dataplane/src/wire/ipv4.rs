//! FAST PATH: no allocation, lock, syscall or log.
//!
//! IPv4 header (RFC 791 §3.1) and its options.
//!
//! Invariants of a [`Packet`] from `new_checked`: version is 4, `20 <= header_len() <=
//! total_len() <= buffer.len()`. Accessors then never panic; `payload()` is exactly
//! `header_len()..total_len()`, so Ethernet padding after the datagram is ignored. The header
//! checksum and option structure are *not* part of `new_checked`; check them with
//! [`Packet::verify_checksum`] and [`Packet::check_options`] (the whole-frame parser does both).

use super::{checksum, Field, ParseError};
use std::net::Ipv4Addr;

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Minimum header length (IHL 5).
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Maximum options length (IHL 15).
pub const MAX_OPTIONS_LEN: usize = 40;
/// Flags (RFC 791 §3.1): don't fragment.
const FLAG_DF: u16 = 0x4000;
/// Flags (RFC 791 §3.1): more fragments.
const FLAG_MF: u16 = 0x2000;
/// Fragment offset mask, in 8-byte units.
const OFFSET_MASK: u16 = 0x1fff;

/// Option kinds (RFC 791 §3.1).
pub mod option_kind {
    /// End of Option List.
    pub const EOL: u8 = 0;
    /// No Operation.
    pub const NOP: u8 = 1;
}

/// A view over an IPv4 header and its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Checks length, version, IHL and total length (see the module invariants).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ParseError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Ipv4Truncated);
        }
        if self.version() != 4 {
            return Err(ParseError::Ipv4BadVersion);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(ParseError::Ipv4BadHeaderLen);
        }
        if len < hl {
            return Err(ParseError::Ipv4Truncated);
        }
        let total = usize::from(self.total_len());
        if total < hl {
            return Err(ParseError::Ipv4BadTotalLen);
        }
        if len < total {
            return Err(ParseError::Ipv4Truncated);
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
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// The whole type-of-service byte (DSCP and ECN).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total datagram length in bytes, header included.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the wire field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Whether this datagram is a fragment (MF set or non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The raw options bytes (padding included).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }

    /// Walks the options for structural validity (RFC 791 §3.1): EOL ends the list, NOP is one
    /// byte, every other option has a length octet `>= 2` that stays within the header.
    #[inline]
    pub fn check_options(&self) -> Result<(), ParseError> {
        self.options_iter().try_for_each(|o| o.map(drop))
    }

    /// Whether the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        match <&[u8; HEADER_LEN]>::try_from(header) {
            Ok(h) => checksum::verify_20(h),
            Err(_) => checksum::sum(header) == 0xffff,
        }
    }

    /// The datagram payload, `header_len()..total_len()`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        self.set_u16_at(field::LENGTH, v);
    }

    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        self.set_u16_at(field::IDENT, v);
    }

    /// Sets DF, MF and the fragment offset in bytes (must be a multiple of 8).
    #[inline]
    pub fn set_flags_and_frag_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        self.set_u16_at(field::FLG_OFF, v);
    }

    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    /// Recomputes and stores the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(c);
    }

    /// Decrements TTL and patches the checksum incrementally (RFC 1624). Returns the new TTL.
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let b = self.buffer.as_ref();
        let old = u16::from_be_bytes([b[field::TTL], b[field::PROTOCOL]]);
        let ttl = b[field::TTL].wrapping_sub(1);
        let new = u16::from_be_bytes([ttl, b[field::PROTOCOL]]);
        let c = checksum::update_u16(self.checksum(), old, new);
        self.set_ttl(ttl);
        self.set_checksum(c);
        ttl
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// One IPv4 option: its kind and the bytes after the kind and length octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Option<'a> {
    pub kind: u8,
    pub data: &'a [u8],
}

/// Iterator over IPv4 options. Stops after End of Option List (not yielded) or the end of
/// the options; on a malformed option yields `Err(Ipv4BadOptions)` once, then stops.
#[derive(Clone, Debug)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    #[inline]
    pub const fn new(options: &'a [u8]) -> OptionsIter<'a> {
        OptionsIter { rest: options }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<Ipv4Option<'a>, ParseError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after) = self.rest.split_first()?;
        match kind {
            option_kind::EOL => {
                self.rest = &[];
                None
            }
            option_kind::NOP => {
                self.rest = after;
                Some(Ok(Ipv4Option { kind, data: &[] }))
            }
            _ => {
                let len = after.first().map_or(0, |&l| usize::from(l));
                if len < 2 || len > self.rest.len() {
                    self.rest = &[];
                    return Some(Err(ParseError::Ipv4BadOptions));
                }
                let data = &self.rest[2..len];
                self.rest = &self.rest[len..];
                Some(Ok(Ipv4Option { kind, data }))
            }
        }
    }
}

/// Up to 40 bytes of options, stored padded with EOL to a multiple of 4.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Options {
    bytes: [u8; MAX_OPTIONS_LEN],
    len: u8,
}

impl Options {
    pub const EMPTY: Options = Options {
        bytes: [0; MAX_OPTIONS_LEN],
        len: 0,
    };

    /// Copies `raw` and pads it with zeros (EOL) to a multiple of 4; `None` if over 40 bytes.
    pub fn new(raw: &[u8]) -> Option<Options> {
        if raw.len() > MAX_OPTIONS_LEN {
            return None;
        }
        let mut o = Options::EMPTY;
        o.bytes[..raw.len()].copy_from_slice(raw);
        o.len = raw.len().next_multiple_of(4) as u8;
        Some(o)
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Default for Options {
    fn default() -> Options {
        Options::EMPTY
    }
}

impl core::fmt::Debug for Options {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Options").field(&self.as_slice()).finish()
    }
}

/// The IPv4 header as a value (slow path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes (multiple of 8).
    pub frag_offset: u16,
    pub options: Options,
    pub payload_len: usize,
}

impl Repr {
    /// Parses a checked packet, verifying the header checksum and the option structure.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, ParseError> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(ParseError::Ipv4BadChecksum);
        }
        p.check_options()?;
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            ttl: p.ttl(),
            dscp_ecn: p.dscp_ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
            // new_checked guarantees header_len <= 60.
            options: Options::new(p.options()).unwrap_or_default(),
            payload_len: p.payload().len(),
        })
    }

    /// Header length in bytes.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.as_slice().len()
    }

    /// Writes the header (checksum included) into the front of the packet buffer.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let hl = self.buffer_len();
        p.set_version_and_header_len(hl);
        p.set_dscp_ecn(self.dscp_ecn);
        p.set_total_len((hl + self.payload_len) as u16);
        p.set_ident(self.ident);
        p.set_flags_and_frag_offset(self.dont_frag, self.more_frags, self.frag_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.options_mut().copy_from_slice(self.options.as_slice());
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // UDP, 10.0.0.1 -> 10.0.0.2, ident 0x1234, DF, TTL 64, 4 payload bytes.
    static PACKET: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x14, 0x9f, 10, 0, 0, 1, 10, 0,
        0, 2, 0xaa, 0xbb, 0xcc, 0xdd,
    ];

    fn repr() -> Repr {
        Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: 17,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0x1234,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: Options::EMPTY,
            payload_len: 4,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 24];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr().emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn overlong_ignores_padding() {
        let mut long = [0u8; 60];
        long[..24].copy_from_slice(&PACKET);
        let p = Packet::new_checked(&long[..]).unwrap();
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn bad_fields() {
        assert_eq!(
            Packet::new_checked(&PACKET[..19]),
            Err(ParseError::Ipv4Truncated)
        );
        assert_eq!(
            Packet::new_checked(&PACKET[..23]),
            Err(ParseError::Ipv4Truncated)
        );
        let with = |at: usize, v: u8| {
            let mut b = PACKET;
            b[at] = v;
            Packet::new_checked(b).map(drop)
        };
        assert_eq!(with(0, 0x65), Err(ParseError::Ipv4BadVersion));
        assert_eq!(with(0, 0x44), Err(ParseError::Ipv4BadHeaderLen));
        assert_eq!(with(0, 0x47), Err(ParseError::Ipv4Truncated));
        assert_eq!(with(3, 19), Err(ParseError::Ipv4BadTotalLen));
        let mut b = PACKET;
        b[8] = 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Repr::parse(&p), Err(ParseError::Ipv4BadChecksum));
    }

    #[test]
    fn options_walk() {
        fn walk(o: &[u8]) -> Vec<Result<Ipv4Option<'_>, ParseError>> {
            OptionsIter::new(o).collect()
        }
        assert_eq!(
            walk(&[1, 1, 0, 0xff]),
            vec![
                Ok(Ipv4Option { kind: 1, data: &[] }),
                Ok(Ipv4Option { kind: 1, data: &[] })
            ]
        );
        // Router alert (RFC 2113), 4 bytes.
        assert_eq!(
            walk(&[0x94, 4, 0, 0]),
            vec![Ok(Ipv4Option {
                kind: 0x94,
                data: &[0, 0]
            })]
        );
        assert_eq!(
            walk(&[0x94, 1, 0, 0]),
            vec![Err(ParseError::Ipv4BadOptions)]
        );
        assert_eq!(
            walk(&[1, 0x94, 5, 0]),
            vec![
                Ok(Ipv4Option { kind: 1, data: &[] }),
                Err(ParseError::Ipv4BadOptions)
            ]
        );
        assert_eq!(
            walk(&[1, 1, 1, 0x07]),
            vec![Ok(Ipv4Option { kind: 1, data: &[] }); 3]
                .into_iter()
                .chain([Err(ParseError::Ipv4BadOptions)])
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn decrement_ttl_keeps_checksum_valid() {
        let mut b = PACKET;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.decrement_ttl(), 63);
        assert!(p.verify_checksum());
    }

    prop_compose! {
        fn arb_repr()(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), protocol in any::<u8>(),
            ttl in any::<u8>(), dscp_ecn in any::<u8>(), ident in any::<u16>(),
            dont_frag in any::<bool>(), more_frags in any::<bool>(), frag in 0u16..0x2000,
            nops in 0usize..=40, payload_len in 0usize..64,
        ) -> Repr {
            Repr {
                src_addr: src.into(), dst_addr: dst.into(), protocol, ttl, dscp_ecn, ident,
                dont_frag, more_frags, frag_offset: frag << 3,
                options: Options::new(&vec![option_kind::NOP; nops]).unwrap(),
                payload_len,
            }
        }
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in arb_repr(), pad in 0usize..8) {
            let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len + pad];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p).unwrap(), repr);
        }
    }
}
