//! FAST PATH: no allocation, lock, syscall or log.
//!
//! UDP header (RFC 768).
//!
//! Invariants of a [`Packet`] from `new_checked`: at least 8 bytes and
//! `8 <= len() <= buffer.len()`; `payload()` is exactly `8..len()`, so bytes past the UDP length
//! (allowed: the IP payload may be longer) are ignored. The checksum covers `..len()`.
//! A zero checksum means "none" over IPv4 and is invalid over IPv6 (RFC 8200 §8.1).

use super::{checksum::PseudoHeader, ip_proto, Field, ParseError};

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// Header length.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view over a UDP datagram.
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
            return Err(ParseError::UdpTruncated);
        }
        let l = usize::from(self.len());
        if l < HEADER_LEN || l > len {
            return Err(ParseError::UdpBadLength);
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
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// The length field: header plus payload, in bytes.
    #[inline]
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum verifies; a zero checksum passes over IPv4 only.
    #[inline]
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        if self.checksum() == 0 {
            return !pseudo.is_v6();
        }
        pseudo.verify(
            ip_proto::UDP,
            &self.buffer.as_ref()[..usize::from(self.len())],
        )
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
    pub fn set_len(&mut self, v: u16) {
        self.set_u16_at(field::LENGTH, v);
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes and stores the checksum over `..len()`; a computed 0 is stored as `0xffff`
    /// (RFC 768).
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let end = usize::from(self.len());
        let c = pseudo.checksum(ip_proto::UDP, &self.buffer.as_ref()[..end]);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

/// A UDP datagram as a value (slow path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a datagram, verifying its checksum against `pseudo`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
        pseudo: &PseudoHeader,
    ) -> Result<Repr<'a>, ParseError> {
        let buf: &'a [u8] = T::as_ref(p.buffer);
        let p = Packet::new_checked(buf)?;
        if !p.verify_checksum(pseudo) {
            return Err(ParseError::UdpBadChecksum);
        }
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload: &buf[HEADER_LEN..usize::from(p.len())],
        })
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes the datagram and its checksum.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()` or `buffer_len()` exceeds 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>, pseudo: &PseudoHeader) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(u16::try_from(self.buffer_len()).expect("UDP datagram over 65535 bytes"));
        p.payload_mut().copy_from_slice(self.payload);
        p.fill_checksum(pseudo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4() -> PseudoHeader {
        PseudoHeader::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    fn v6() -> PseudoHeader {
        PseudoHeader::V6 {
            src: Ipv6Addr::LOCALHOST,
            dst: "2001:db8::1".parse().unwrap(),
        }
    }

    // 53 -> 1024, length 12, payload "abcd", checksum filled below.
    fn datagram(ph: &PseudoHeader) -> Vec<u8> {
        let mut d = vec![
            0x00, 0x35, 0x04, 0x00, 0x00, 0x0c, 0, 0, b'a', b'b', b'c', b'd',
        ];
        let c = ph.checksum(ip_proto::UDP, &d);
        d[6..8].copy_from_slice(&c.to_be_bytes());
        d
    }

    #[test]
    fn deconstruct() {
        let d = datagram(&v4());
        let p = Packet::new_checked(&d[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (53, 1024, 12));
        assert_eq!(p.payload(), b"abcd");
        assert!(p.verify_checksum(&v4()));
        assert!(!p.verify_checksum(&v6()));
    }

    #[test]
    fn construct() {
        let repr = Repr {
            src_port: 53,
            dst_port: 1024,
            payload: b"abcd",
        };
        let mut buf = vec![0xff; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &v6());
        assert_eq!(buf, datagram(&v6()));
    }

    #[test]
    fn lengths() {
        let d = datagram(&v4());
        assert_eq!(Packet::new_checked(&d[..7]), Err(ParseError::UdpTruncated));
        assert_eq!(Packet::new_checked(&d[..11]), Err(ParseError::UdpBadLength));
        let mut b = d.clone();
        b[5] = 7;
        assert_eq!(Packet::new_checked(&b[..]), Err(ParseError::UdpBadLength));
        // IP payload longer than the UDP length: fine, the tail is ignored.
        let mut long = d.clone();
        long.extend_from_slice(&[0xee; 6]);
        let p = Packet::new_checked(&long[..]).unwrap();
        assert_eq!(p.payload(), b"abcd");
        assert!(p.verify_checksum(&v4()));
    }

    #[test]
    fn zero_checksum() {
        let mut d = datagram(&v4());
        d[6] = 0;
        d[7] = 0;
        let p = Packet::new_checked(&d[..]).unwrap();
        assert!(p.verify_checksum(&v4()));
        assert!(!p.verify_checksum(&v6()));
        assert_eq!(Repr::parse(&p, &v6()), Err(ParseError::UdpBadChecksum));
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            src_port in any::<u16>(), dst_port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            is_v6 in any::<bool>(), tail in 0usize..8,
        ) {
            let ph = if is_v6 { v6() } else { v4() };
            let repr = Repr { src_port, dst_port, payload: &payload };
            let mut buf = vec![0u8; repr.buffer_len() + tail];
            let n = repr.buffer_len();
            repr.emit(&mut Packet::new_unchecked(&mut buf[..n]), &ph);
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p, &ph).unwrap(), repr);
        }
    }
}
