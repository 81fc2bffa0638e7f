//! FAST PATH: no allocation, lock, syscall or log.
//!
//! TCP header (RFC 9293 §3.1) and options.
//!
//! Invariants of a [`Packet`] from `new_checked`: at least 20 bytes, and
//! `20 <= header_len() <= buffer.len()`. The view is over exactly one segment (header and
//! payload, e.g. `frame[l4_offset..l3_offset + l3_len]`), because the checksum and
//! `payload()` take its length from the buffer. [`OptionsIter`] never reads past the options.
//! Sequence numbers compare with `wrapping_sub` ([`SeqNumber`]).

use super::{checksum::PseudoHeader, ip_proto, Field, ParseError};
use core::{cmp::Ordering, fmt, ops};

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Header length without options.
pub const HEADER_LEN: usize = field::URGENT.end;
/// Maximum options length (data offset 15).
pub const MAX_OPTIONS_LEN: usize = 40;

/// A TCP sequence number: arithmetic and ordering modulo 2^32 (RFC 9293 §3.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Signed distance `self - other`, valid while the two are within 2^31 of each other.
    #[inline]
    pub const fn diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
}

impl PartialOrd for SeqNumber {
    #[inline]
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl ops::Add<u32> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn add(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs))
    }
}

impl ops::Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn sub(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs))
    }
}

/// The eight TCP control bits (RFC 9293 §3.1, RFC 3168 §6.1 for ECE/CWR).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: Flags = Flags(0x01);
    pub const SYN: Flags = Flags(0x02);
    pub const RST: Flags = Flags(0x04);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(0x10);
    pub const URG: Flags = Flags(0x20);
    pub const ECE: Flags = Flags(0x40);
    pub const CWR: Flags = Flags(0x80);
    pub const EMPTY: Flags = Flags(0);

    /// Whether every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    #[inline]
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl ops::BitOr for Flags {
    type Output = Flags;
    #[inline]
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl ops::BitAnd for Flags {
    type Output = Flags;
    #[inline]
    fn bitand(self, rhs: Flags) -> Flags {
        Flags(self.0 & rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (i, n) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(n)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// A view over a TCP segment.
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
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::TcpTruncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || hl > len {
            return Err(ParseError::TcpBadDataOffset);
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
    fn u32_at(&self, f: Field) -> u32 {
        let b = &self.buffer.as_ref()[f];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(self.u32_at(field::SEQ_NUM))
    }

    #[inline]
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(self.u32_at(field::ACK_NUM))
    }

    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    #[inline]
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WIN_SIZE)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        self.u16_at(field::URGENT)
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Sequence space the segment occupies: payload bytes plus one each for SYN and FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        let f = self.flags();
        self.payload().len()
            + usize::from(f.contains(Flags::SYN))
            + usize::from(f.contains(Flags::FIN))
    }

    /// Whether the checksum over the whole buffer verifies against `pseudo`.
    #[inline]
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        pseudo.verify(ip_proto::TCP, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16_at(field::SRC_PORT, v);
    }

    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16_at(field::DST_PORT, v);
    }

    #[inline]
    pub fn set_seq_number(&mut self, v: SeqNumber) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&v.0.to_be_bytes());
    }

    #[inline]
    pub fn set_ack_number(&mut self, v: SeqNumber) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&v.0.to_be_bytes());
    }

    /// Sets the data offset from a header length in bytes (multiple of 4, 20..=60); clears the
    /// reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    #[inline]
    pub fn set_flags(&mut self, f: Flags) {
        self.buffer.as_mut()[field::FLAGS] = f.0;
    }

    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        self.set_u16_at(field::WIN_SIZE, v);
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        self.set_u16_at(field::URGENT, v);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }

    /// Computes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let c = pseudo.checksum(ip_proto::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// Option kinds (IANA "TCP Option Kind Numbers").
pub mod option_kind {
    /// End of Option List (RFC 9293 §3.2).
    pub const EOL: u8 = 0;
    /// No-Operation (RFC 9293 §3.2).
    pub const NOP: u8 = 1;
    /// Maximum Segment Size (RFC 9293 §3.7.1).
    pub const MSS: u8 = 2;
    /// Window Scale (RFC 7323 §2.2).
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK-Permitted (RFC 2018 §2).
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK (RFC 2018 §3).
    pub const SACK: u8 = 5;
    /// Timestamps (RFC 7323 §3.2).
    pub const TIMESTAMPS: u8 = 8;
}

/// SACK blocks as they sit on the wire: 1 to 4 (left, right) edge pairs of 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SackBlocks<'a>(&'a [u8]);

impl<'a> SackBlocks<'a> {
    /// `None` unless `raw` is 8..=32 bytes in whole 8-byte blocks.
    #[inline]
    pub fn new(raw: &'a [u8]) -> Option<SackBlocks<'a>> {
        matches!(raw.len(), 8 | 16 | 24 | 32).then_some(SackBlocks(raw))
    }

    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(left edge, right edge)` per block.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + 'a {
        self.0.chunks_exact(8).map(|c| {
            (
                SeqNumber(u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
                SeqNumber(u32::from_be_bytes([c[4], c[5], c[6], c[7]])),
            )
        })
    }
}

/// One TCP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    EndOfList,
    NoOperation,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    Sack(SackBlocks<'a>),
    Timestamps {
        tsval: u32,
        tsecr: u32,
    },
    /// Any other kind; `data` excludes the kind and length octets.
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl TcpOption<'_> {
    /// Bytes this option takes on the wire.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack(b) => 2 + b.as_bytes().len(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the front of `buf`, returning its length.
    ///
    /// # Panics
    /// If `buf` is shorter than `buffer_len()`, or an `Unknown` option's data exceeds 253 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let (kind, body): (u8, &[u8]) = match self {
            TcpOption::EndOfList => {
                buf[0] = option_kind::EOL;
                return 1;
            }
            TcpOption::NoOperation => {
                buf[0] = option_kind::NOP;
                return 1;
            }
            TcpOption::MaxSegmentSize(m) => {
                buf[2..4].copy_from_slice(&m.to_be_bytes());
                (option_kind::MSS, &[])
            }
            TcpOption::WindowScale(s) => {
                buf[2] = *s;
                (option_kind::WINDOW_SCALE, &[])
            }
            TcpOption::SackPermitted => (option_kind::SACK_PERMITTED, &[]),
            TcpOption::Sack(b) => (option_kind::SACK, b.as_bytes()),
            TcpOption::Timestamps { tsval, tsecr } => {
                buf[2..6].copy_from_slice(&tsval.to_be_bytes());
                buf[6..10].copy_from_slice(&tsecr.to_be_bytes());
                (option_kind::TIMESTAMPS, &[])
            }
            TcpOption::Unknown { kind, data } => (*kind, *data),
        };
        buf[0] = kind;
        buf[1] = u8::try_from(len).expect("TCP option longer than 255 bytes");
        if !body.is_empty() {
            buf[2..len].copy_from_slice(body);
        }
        len
    }
}

/// Iterator over TCP options. Yields `EndOfList` once and stops there; on a malformed option
/// (length < 2, past the end, or wrong for its kind) yields `Err(TcpBadOptions)` once, then
/// stops.
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
    type Item = Result<TcpOption<'a>, ParseError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after) = self.rest.split_first()?;
        match kind {
            option_kind::EOL => {
                self.rest = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            option_kind::NOP => {
                self.rest = after;
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let len = after.first().map_or(0, |&l| usize::from(l));
        if len < 2 || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(ParseError::TcpBadOptions));
        }
        let data = &self.rest[2..len];
        self.rest = &self.rest[len..];
        let opt = match (kind, data.len()) {
            (option_kind::MSS, 2) => {
                TcpOption::MaxSegmentSize(u16::from_be_bytes([data[0], data[1]]))
            }
            (option_kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
            (option_kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (option_kind::TIMESTAMPS, 8) => TcpOption::Timestamps {
                tsval: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                tsecr: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            },
            (option_kind::SACK, _) => match SackBlocks::new(data) {
                Some(b) => TcpOption::Sack(b),
                None => return self.malformed(),
            },
            (
                option_kind::MSS
                | option_kind::WINDOW_SCALE
                | option_kind::SACK_PERMITTED
                | option_kind::TIMESTAMPS,
                _,
            ) => return self.malformed(),
            _ => TcpOption::Unknown { kind, data },
        };
        Some(Ok(opt))
    }
}

impl<'a> OptionsIter<'a> {
    #[cold]
    #[inline(never)]
    fn malformed(&mut self) -> Option<Result<TcpOption<'a>, ParseError>> {
        self.rest = &[];
        Some(Err(ParseError::TcpBadOptions))
    }
}

impl core::iter::FusedIterator for OptionsIter<'_> {}

/// A TCP segment as a value (slow path). `options` is the raw option bytes; `emit` pads them
/// with EOL to a multiple of 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: SeqNumber,
    pub ack_number: SeqNumber,
    pub flags: Flags,
    pub window_len: u16,
    pub urgent_at: u16,
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a segment, verifying its checksum against `pseudo` and walking its options.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
        pseudo: &PseudoHeader,
    ) -> Result<Repr<'a>, ParseError> {
        let p = Packet::new_checked(T::as_ref(p.buffer))?;
        if !p.verify_checksum(pseudo) {
            return Err(ParseError::TcpBadChecksum);
        }
        p.options_iter().try_for_each(|o| o.map(drop))?;
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            urgent_at: p.urgent_at(),
            options: &p.buffer[HEADER_LEN..p.header_len()],
            payload: &p.buffer[p.header_len()..],
        })
    }

    /// Header length in bytes, options padded.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len().next_multiple_of(4)
    }

    /// Header plus payload.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the whole segment and its checksum.
    ///
    /// # Panics
    /// If the buffer is not exactly `buffer_len()` bytes, or options exceed 40 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>, pseudo: &PseudoHeader) {
        assert!(
            self.options.len() <= MAX_OPTIONS_LEN,
            "TCP options over 40 bytes"
        );
        assert_eq!(
            p.buffer.as_ref().len(),
            self.buffer_len(),
            "TCP buffer length"
        );
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.set_header_len(self.header_len());
        p.set_flags(self.flags);
        p.set_window_len(self.window_len);
        p.set_urgent_at(self.urgent_at);
        let opts = p.options_mut();
        opts.fill(option_kind::EOL);
        opts[..self.options.len()].copy_from_slice(self.options);
        p.payload_mut().copy_from_slice(self.payload);
        p.fill_checksum(pseudo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn pseudo() -> PseudoHeader {
        PseudoHeader::V4 {
            src: Ipv4Addr::new(192, 168, 1, 1),
            dst: Ipv4Addr::new(192, 168, 1, 2),
        }
    }

    // SYN 40000 -> 80, seq 1, MSS 1460, NOP, WS 7, SACK-permitted, 2 bytes EOL padding.
    fn segment() -> Vec<u8> {
        let mut s = vec![
            0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x80, 0x02, 0xff, 0xff, 0, 0, 0,
            0, //
            2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0,
        ];
        let c = pseudo().checksum(ip_proto::TCP, &s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        s
    }

    #[test]
    fn deconstruct() {
        let s = segment();
        let p = Packet::new_checked(&s[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 80));
        assert_eq!(p.seq_number(), SeqNumber(1));
        assert_eq!(p.header_len(), 32);
        assert_eq!(p.flags(), Flags::SYN);
        assert_eq!(p.segment_len(), 1);
        assert!(p.verify_checksum(&pseudo()));
        let opts: Vec<_> = p.options_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            opts,
            vec![
                TcpOption::MaxSegmentSize(1460),
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
                TcpOption::SackPermitted,
                TcpOption::EndOfList,
            ]
        );
    }

    #[test]
    fn construct() {
        let s = segment();
        let repr = Repr {
            src_port: 40000,
            dst_port: 80,
            seq_number: SeqNumber(1),
            ack_number: SeqNumber(0),
            flags: Flags::SYN,
            window_len: 0xffff,
            urgent_at: 0,
            options: &[2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2],
            payload: &[],
        };
        let mut buf = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &pseudo());
        assert_eq!(buf, s);
    }

    #[test]
    fn bad_lengths() {
        let s = segment();
        assert_eq!(Packet::new_checked(&s[..19]), Err(ParseError::TcpTruncated));
        assert_eq!(
            Packet::new_checked(&s[..31]),
            Err(ParseError::TcpBadDataOffset)
        );
        let mut b = s.clone();
        b[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&b[..]),
            Err(ParseError::TcpBadDataOffset)
        );
        b[16] ^= 1;
        assert!(
            !Packet::new_unchecked(&s[..]).verify_checksum(&PseudoHeader::V4 {
                src: Ipv4Addr::new(192, 168, 1, 1),
                dst: Ipv4Addr::new(192, 168, 1, 3)
            })
        );
    }

    #[test]
    fn options_walk() {
        fn all(o: &[u8]) -> Vec<Result<TcpOption<'_>, ParseError>> {
            OptionsIter::new(o).collect()
        }
        let sack = [5u8, 10, 0, 0, 0, 1, 0, 0, 0, 9];
        let v = all(&sack);
        let Ok(TcpOption::Sack(b)) = v[0] else {
            panic!("{v:?}")
        };
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![(SeqNumber(1), SeqNumber(9))]
        );
        assert_eq!(
            all(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
            vec![Ok(TcpOption::Timestamps { tsval: 1, tsecr: 2 })]
        );
        assert_eq!(
            all(&[30, 3, 7]),
            vec![Ok(TcpOption::Unknown {
                kind: 30,
                data: &[7]
            })]
        );
        assert_eq!(all(&[2, 3, 0]), vec![Err(ParseError::TcpBadOptions)]);
        assert_eq!(
            all(&[5, 6, 0, 0, 0, 0]),
            vec![Err(ParseError::TcpBadOptions)]
        );
        assert_eq!(
            all(&[1, 9, 1]),
            vec![Ok(TcpOption::NoOperation), Err(ParseError::TcpBadOptions)]
        );
        assert_eq!(
            all(&[1, 9]),
            vec![Ok(TcpOption::NoOperation), Err(ParseError::TcpBadOptions)]
        );
        assert_eq!(all(&[0, 9, 9]), vec![Ok(TcpOption::EndOfList)]);
    }

    #[test]
    fn seq_number_wraps() {
        assert!(SeqNumber(u32::MAX) < SeqNumber(1));
        assert_eq!(SeqNumber(u32::MAX) + 2, SeqNumber(1));
        assert_eq!(SeqNumber(1).diff(SeqNumber(u32::MAX)), 2);
        assert_eq!(format!("{:?}", Flags::SYN | Flags::ACK), "SYN|ACK");
    }

    fn arb_option() -> impl Strategy<Value = (u8, Vec<u8>)> {
        prop_oneof![
            any::<u16>().prop_map(|m| (2, m.to_be_bytes().to_vec())),
            any::<u8>().prop_map(|s| (3, vec![s])),
            Just((4, vec![])),
            proptest::collection::vec(any::<u8>(), 8..=8).prop_map(|v| (8, v)),
            (1usize..=3)
                .prop_flat_map(|n| proptest::collection::vec(any::<u8>(), 8 * n))
                .prop_map(|v| (5, v)),
            (9u8..=255, proptest::collection::vec(any::<u8>(), 0..6)),
            Just((1, vec![])),
        ]
    }

    fn encode(opts: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, data) in opts {
            let mut buf = [0u8; 40];
            let n = match (kind, data) {
                (1, _) => TcpOption::NoOperation.emit(&mut buf),
                (5, d) => TcpOption::Sack(SackBlocks::new(d).unwrap()).emit(&mut buf),
                (k, d) => TcpOption::Unknown { kind: *k, data: d }.emit(&mut buf),
            };
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            src_port in any::<u16>(), dst_port in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(),
            flags in any::<u8>(), window_len in any::<u16>(), urgent_at in any::<u16>(),
            opts in proptest::collection::vec(arb_option(), 0..4),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let options = encode(&opts);
            prop_assume!(options.len() <= MAX_OPTIONS_LEN);
            let mut padded = options.clone();
            padded.resize(options.len().next_multiple_of(4), 0);
            let repr = Repr {
                src_port, dst_port, seq_number: SeqNumber(seq), ack_number: SeqNumber(ack),
                flags: Flags(flags), window_len, urgent_at, options: &padded, payload: &payload,
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &pseudo());
            let p = Packet::new_checked(&buf[..]).unwrap();
            let parsed = Repr::parse(&p, &pseudo()).unwrap();
            prop_assert_eq!(parsed, repr);
            let walked: Vec<_> = p.options_iter().collect::<Result<_, _>>().unwrap();
            prop_assert!(walked.len() >= opts.len());
        }

        #[test]
        fn options_iter_never_panics(o in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut n = 0;
            for _ in OptionsIter::new(&o) { n += 1; }
            prop_assert!(n <= o.len());
        }
    }
}
