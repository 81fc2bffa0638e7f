//! FAST PATH: no allocation, lock, syscall or log.
//!
//! IPv6 fixed header (RFC 8200 §3) and the extension-header walk (RFC 8200 §4).
//!
//! Invariants of a [`Packet`] from `new_checked`: version is 6 and
//! `40 + payload_len() <= buffer.len()`; `payload()` is exactly that many bytes, so trailing
//! Ethernet padding is ignored.
//!
//! The [`ExtHeaderWalk`] runs over a payload and its first next-header value. It recognises
//! exactly the headers Linux's `ipv6_ext_hdr()` does: Hop-by-Hop (only directly after the fixed
//! header), Routing, Fragment (at most once), Destination Options, AH (whose length counts
//! 4-byte units minus 2, RFC 4302 §2.2) and No Next Header. ESP (RFC 4303) is opaque and ends
//! the walk, as does any other value (the upper-layer protocol). It visits at most
//! [`MAX_EXT_HEADERS`] headers and never reads past the payload. A Fragment header with a
//! non-zero offset ends the walk: what follows is fragment data, not a header.

use super::{ip_proto, Field, ParseError};
use std::net::Ipv6Addr;

mod field {
    use super::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;

    // Fragment header (RFC 8200 §4.5), relative to its start.
    pub const FRAG_NXT_HDR: usize = 0;
    pub const FRAG_OFF_M: Field = 2..4;
    pub const FRAG_IDENT: Field = 4..8;
}

/// Fixed header length.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Fragment header length.
pub const FRAGMENT_HEADER_LEN: usize = field::FRAG_IDENT.end;
/// Upper bound on extension headers visited in one walk. A legitimate chain (HBH, DestOpts,
/// Routing, Fragment, AH, DestOpts) has at most six.
pub const MAX_EXT_HEADERS: usize = 8;

/// A view over an IPv6 fixed header and its payload.
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
            return Err(ParseError::Ipv6Truncated);
        }
        if self.version() != 6 {
            return Err(ParseError::Ipv6BadVersion);
        }
        if len < HEADER_LEN + usize::from(self.payload_len()) {
            return Err(ParseError::Ipv6Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Payload length in bytes (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// The `payload_len()` bytes after the fixed header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension headers of this packet.
    #[inline]
    pub fn ext_headers(&self) -> ExtHeaderWalk<'_> {
        ExtHeaderWalk::new(self.payload(), self.next_header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, traffic class and flow label (masked to 20 bits).
    #[inline]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = v;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The IPv6 fixed header as a value (slow path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    pub payload_len: usize,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, ParseError> {
        p.check_len()?;
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
            payload_len: usize::from(p.payload_len()),
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version_tc_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(self.payload_len as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
    }
}

/// A view over a Fragment header (RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> FragmentHeader<T> {
        FragmentHeader { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<FragmentHeader<T>, ParseError> {
        if buffer.as_ref().len() < FRAGMENT_HEADER_LEN {
            return Err(ParseError::Ipv6ExtHeaderTruncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::FRAG_NXT_HDR]
    }

    #[inline]
    fn off_m(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FRAG_OFF_M];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.off_m() & !0x7
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.off_m() & 0x1 != 0
    }

    #[inline]
    pub fn ident(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::FRAG_IDENT];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragmentHeader<T> {
    /// Writes the whole header; `offset` in bytes, a multiple of 8.
    #[inline]
    pub fn emit(&mut self, next_header: u8, offset: u16, more_frags: bool, ident: u32) {
        let b = self.buffer.as_mut();
        b[field::FRAG_NXT_HDR] = next_header;
        b[1] = 0;
        let off_m = (offset & !0x7) | u16::from(more_frags);
        b[field::FRAG_OFF_M].copy_from_slice(&off_m.to_be_bytes());
        b[field::FRAG_IDENT].copy_from_slice(&ident.to_be_bytes());
    }
}

/// Whether `next_header` names an extension header the walk steps over.
#[inline]
pub const fn is_ext_header(next_header: u8) -> bool {
    matches!(
        next_header,
        ip_proto::HOPOPT
            | ip_proto::IPV6_ROUTE
            | ip_proto::IPV6_FRAG
            | ip_proto::AH
            | ip_proto::IPV6_OPTS
    )
}

/// One extension header met by the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtHeader<'a> {
    /// This header's type (the next-header value that announced it).
    pub header_type: u8,
    /// Offset of this header from the start of the IPv6 payload.
    pub offset: usize,
    /// The whole header, its next-header and length octets included.
    pub data: &'a [u8],
}

impl<'a> ExtHeader<'a> {
    /// The next-header octet of this header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.data[0]
    }

    /// This header as a Fragment header, if it is one.
    #[inline]
    pub fn fragment(&self) -> Option<FragmentHeader<&'a [u8]>> {
        (self.header_type == ip_proto::IPV6_FRAG).then(|| FragmentHeader::new_unchecked(self.data))
    }

    /// Bytes after the next-header and length octets (options, routing data, AH fields).
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        &self.data[2..]
    }
}

/// Iterator over the extension headers of an IPv6 payload (see the module docs).
///
/// Yields `Ok(ExtHeader)` per header; on a violation yields one `Err` and then stops. After it
/// ends, [`next_header`](Self::next_header) and [`offset`](Self::offset) give the protocol and
/// offset of what follows the chain (the upper layer, ESP, No Next Header, or fragment data
/// when a non-first Fragment header ended the walk).
#[derive(Clone, Debug)]
pub struct ExtHeaderWalk<'a> {
    payload: &'a [u8],
    next_header: u8,
    offset: usize,
    count: usize,
    seen_fragment: bool,
    /// Inside a first fragment: a short chain is a tiny fragment (RFC 7112).
    first_fragment: bool,
    done: bool,
}

impl<'a> ExtHeaderWalk<'a> {
    /// `payload`: the IPv6 payload (exactly `payload_len` bytes); `next_header`: the fixed
    /// header's next-header field.
    #[inline]
    pub const fn new(payload: &'a [u8], next_header: u8) -> ExtHeaderWalk<'a> {
        ExtHeaderWalk {
            payload,
            next_header,
            offset: 0,
            count: 0,
            seen_fragment: false,
            first_fragment: false,
            done: false,
        }
    }

    /// The next-header value after the headers visited so far.
    #[inline]
    pub const fn next_header(&self) -> u8 {
        self.next_header
    }

    /// Offset, from the start of the payload, of what follows the headers visited so far.
    #[inline]
    pub const fn offset(&self) -> usize {
        self.offset
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self, e: ParseError) -> Option<Result<ExtHeader<'a>, ParseError>> {
        self.done = true;
        Some(Err(e))
    }

    #[inline]
    fn truncated(&self) -> ParseError {
        if self.first_fragment {
            ParseError::Ipv6TinyFragment
        } else {
            ParseError::Ipv6ExtHeaderTruncated
        }
    }
}

impl<'a> Iterator for ExtHeaderWalk<'a> {
    type Item = Result<ExtHeader<'a>, ParseError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let header_type = self.next_header;
        if !is_ext_header(header_type) {
            self.done = true;
            return None;
        }
        if header_type == ip_proto::HOPOPT && self.count != 0 {
            return self.fail(ParseError::Ipv6ExtHeaderOrder);
        }
        if header_type == ip_proto::IPV6_FRAG && self.seen_fragment {
            return self.fail(ParseError::Ipv6ExtHeaderOrder);
        }
        if self.count == MAX_EXT_HEADERS {
            return self.fail(ParseError::Ipv6TooManyExtHeaders);
        }
        let rest = self.payload.get(self.offset..).unwrap_or_default();
        let Some(&len_octet) = rest.get(1) else {
            return self.fail(self.truncated());
        };
        let len = match header_type {
            ip_proto::IPV6_FRAG => FRAGMENT_HEADER_LEN,
            // RFC 4302 §2.2: payload length in 32-bit words, minus 2.
            ip_proto::AH => (usize::from(len_octet) + 2) * 4,
            // RFC 8200 §4.3-4.6: Hdr Ext Len in 8-octet units, not counting the first 8.
            _ => (usize::from(len_octet) + 1) * 8,
        };
        let Some(data) = rest.get(..len) else {
            return self.fail(self.truncated());
        };
        let hdr = ExtHeader {
            header_type,
            offset: self.offset,
            data,
        };
        self.next_header = data[0];
        self.offset += len;
        self.count += 1;
        if let Some(frag) = hdr.fragment() {
            self.seen_fragment = true;
            if frag.frag_offset() != 0 {
                self.done = true;
            } else if frag.more_frags() {
                self.first_fragment = true;
            }
        }
        Some(Ok(hdr))
    }
}

impl core::iter::FusedIterator for ExtHeaderWalk<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(next_header: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8::2".parse().unwrap(),
            next_header,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            payload_len: payload.len(),
        }
        .emit(&mut Packet::new_unchecked(&mut b[..]));
        b.extend_from_slice(payload);
        b
    }

    static FIXED: [u8; 44] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x04, 0x11, 0x40, // v6, len 4, UDP, hop 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // 2001:db8::1
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // 2001:db8::2
        0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn deconstruct_construct() {
        let p = Packet::new_checked(&FIXED[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(header(17, &[0xde, 0xad, 0xbe, 0xef]), FIXED);
    }

    #[test]
    fn truncated_bad_version_overlong() {
        assert_eq!(
            Packet::new_checked(&FIXED[..39]),
            Err(ParseError::Ipv6Truncated)
        );
        assert_eq!(
            Packet::new_checked(&FIXED[..43]),
            Err(ParseError::Ipv6Truncated)
        );
        let mut b = FIXED;
        b[0] = 0x40;
        assert_eq!(Packet::new_checked(&b[..]), Err(ParseError::Ipv6BadVersion));
        let mut long = FIXED.to_vec();
        long.extend_from_slice(&[0; 10]);
        assert_eq!(Packet::new_checked(&long[..]).unwrap().payload().len(), 4);
    }

    fn walk(next: u8, payload: &[u8]) -> (Vec<Result<u8, ParseError>>, u8, usize) {
        let mut w = ExtHeaderWalk::new(payload, next);
        let v = w.by_ref().map(|h| h.map(|h| h.header_type)).collect();
        (v, w.next_header(), w.offset())
    }

    #[test]
    fn walk_chain() {
        // HBH (8) -> Routing (16) -> DestOpts (8) -> AH (12) -> TCP
        let mut p = vec![ip_proto::IPV6_ROUTE, 0, 1, 4, 0, 0, 0, 0];
        p.extend_from_slice(&[ip_proto::IPV6_OPTS, 1]);
        p.extend_from_slice(&[0; 14]);
        p.extend_from_slice(&[ip_proto::AH, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[ip_proto::TCP, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xaa; 20]);
        let (v, next, off) = walk(ip_proto::HOPOPT, &p);
        assert_eq!(v, vec![Ok(0), Ok(43), Ok(60), Ok(51)]);
        assert_eq!((next, off), (ip_proto::TCP, 44));
    }

    #[test]
    fn walk_stops_at_esp_and_no_next() {
        assert_eq!(walk(ip_proto::ESP, &[1, 2, 3]), (vec![], ip_proto::ESP, 0));
        let p = [ip_proto::IPV6_NONXT, 0, 0, 0, 0, 0, 0, 0, 0xff];
        assert_eq!(
            walk(ip_proto::IPV6_OPTS, &p),
            (vec![Ok(60)], ip_proto::IPV6_NONXT, 8)
        );
    }

    #[test]
    fn walk_errors() {
        let dst_then_hbh = [0u8, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            walk(ip_proto::IPV6_OPTS, &dst_then_hbh).0,
            vec![Ok(60), Err(ParseError::Ipv6ExtHeaderOrder)]
        );
        assert_eq!(
            walk(ip_proto::IPV6_OPTS, &[6, 1, 0, 0, 0, 0, 0, 0]).0,
            vec![Err(ParseError::Ipv6ExtHeaderTruncated)]
        );
        assert_eq!(
            walk(ip_proto::IPV6_ROUTE, &[6]).0,
            vec![Err(ParseError::Ipv6ExtHeaderTruncated)]
        );
        let many = [ip_proto::IPV6_OPTS, 0, 0, 0, 0, 0, 0, 0].repeat(MAX_EXT_HEADERS + 1);
        let (v, _, _) = walk(ip_proto::IPV6_OPTS, &many);
        assert_eq!(v.len(), MAX_EXT_HEADERS + 1);
        assert_eq!(v.last(), Some(&Err(ParseError::Ipv6TooManyExtHeaders)));
        let two_frags = [44u8, 0, 0, 1, 0, 0, 0, 1, 6, 0, 0, 1, 0, 0, 0, 1];
        assert_eq!(
            walk(ip_proto::IPV6_FRAG, &two_frags).0,
            vec![Ok(44), Err(ParseError::Ipv6ExtHeaderOrder)]
        );
    }

    #[test]
    fn walk_fragments() {
        // First fragment, then a DestOpts header cut short: tiny fragment.
        let p = [60u8, 0, 0, 1, 0, 0, 0, 9, 6, 1, 0, 0];
        let (v, _, _) = walk(ip_proto::IPV6_FRAG, &p);
        assert_eq!(v, vec![Ok(44), Err(ParseError::Ipv6TinyFragment)]);
        // Later fragment (offset 8): the walk stops, the rest is data.
        let p = [60u8, 0, 0, 8, 0, 0, 0, 9, 0xff, 0xff];
        assert_eq!(walk(ip_proto::IPV6_FRAG, &p), (vec![Ok(44)], 60, 8));
        let f = FragmentHeader::new_checked(&p[..]).unwrap();
        assert_eq!(
            (f.frag_offset(), f.more_frags(), f.ident(), f.next_header()),
            (8, false, 9, 60)
        );
    }

    prop_compose! {
        fn arb_repr()(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), next_header in any::<u8>(),
            hop_limit in any::<u8>(), traffic_class in any::<u8>(), flow_label in 0u32..(1 << 20),
            payload_len in 0usize..64,
        ) -> Repr {
            Repr { src_addr: src.into(), dst_addr: dst.into(), next_header, hop_limit, traffic_class, flow_label, payload_len }
        }
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in arb_repr(), pad in 0usize..8) {
            let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len + pad];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        }

        #[test]
        fn walk_never_panics_and_stays_in_bounds(next in any::<u8>(), p in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut w = ExtHeaderWalk::new(&p, next);
            let mut n = 0;
            for h in w.by_ref() {
                n += 1;
                if let Ok(h) = h {
                    prop_assert!(h.offset + h.data.len() <= p.len());
                }
            }
            prop_assert!(n <= MAX_EXT_HEADERS + 1);
            prop_assert!(w.offset() <= p.len());
        }
    }
}
