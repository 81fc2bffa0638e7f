//! FAST PATH: no allocation, lock, syscall or log.
//!
//! Ethernet II frames (IEEE 802.3 §3.2.6) and 802.1Q / 802.1ad VLAN tags.
//!
//! Invariants: a [`Frame`] from `new_checked` holds at least [`HEADER_LEN`] bytes; a
//! [`VlanHeader`] from `new_checked` holds at least [`VLAN_HEADER_LEN`] bytes. A VLAN header view
//! starts at the TCI, i.e. right after the TPID that announced it (the TPID is the previous
//! header's ethertype field).

use super::{Field, ParseError, Rest};
use core::fmt;

mod field {
    use super::{Field, Rest};
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;

    pub const VLAN_TCI: Field = 0..2;
    pub const VLAN_ETHERTYPE: Field = 2..4;
    pub const VLAN_PAYLOAD: Rest = 4..;
}

/// Ethernet II header length: destination, source, ethertype.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// A VLAN tag after its TPID: TCI and the encapsulated ethertype.
pub const VLAN_HEADER_LEN: usize = field::VLAN_PAYLOAD.start;

/// Ethertype values (IEEE "EtherType" registry).
pub struct EtherType;

impl EtherType {
    /// IPv4 (RFC 894).
    pub const IPV4: u16 = 0x0800;
    /// ARP (RFC 826).
    pub const ARP: u16 = 0x0806;
    /// IPv6 (RFC 2464).
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer VLAN tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (S-tag, QinQ outer).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag still emitted by some switches.
    pub const QINQ_LEGACY: u16 = 0x9100;

    /// Whether `ethertype` is a TPID announcing a VLAN tag.
    #[inline]
    pub const fn is_vlan_tpid(ethertype: u16) -> bool {
        matches!(ethertype, Self::VLAN | Self::QINQ | Self::QINQ_LEGACY)
    }
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Reads a MAC from a 6-byte slice.
    ///
    /// # Panics
    /// If `bytes` is not 6 bytes long.
    #[inline]
    pub fn from_bytes(bytes: &[u8]) -> MacAddr {
        let mut mac = [0; 6];
        mac.copy_from_slice(bytes);
        MacAddr(mac)
    }

    #[inline]
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    #[inline]
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// Group bit (I/G) set; includes broadcast.
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// One VLAN tag as seen on the wire: the TPID that announced it and its TCI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VlanTag {
    pub tpid: u16,
    pub tci: u16,
}

impl VlanTag {
    /// Builds a tag; `pcp` is masked to 3 bits and `vid` to 12 bits.
    #[inline]
    pub const fn new(tpid: u16, pcp: u8, dei: bool, vid: u16) -> VlanTag {
        let tci = ((pcp as u16 & 0x7) << 13) | ((dei as u16) << 12) | (vid & 0x0fff);
        VlanTag { tpid, tci }
    }

    /// Priority code point (802.1p), 3 bits.
    #[inline]
    pub const fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub const fn dei(&self) -> bool {
        self.tci & 0x1000 != 0
    }

    /// VLAN identifier, 12 bits.
    #[inline]
    pub const fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }
}

/// A view over an Ethernet II frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps without checking; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps after checking the buffer holds the whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>, ParseError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    #[inline]
    pub fn check_len(&self) -> Result<(), ParseError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::EthernetTruncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the 14-byte header (VLAN tags included, if any).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// A view over the 4 bytes that follow a VLAN TPID: TCI, then the next ethertype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> VlanHeader<T> {
        VlanHeader { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<VlanHeader<T>, ParseError> {
        let hdr = Self::new_unchecked(buffer);
        if hdr.buffer.as_ref().len() < VLAN_HEADER_LEN {
            return Err(ParseError::VlanTruncated);
        }
        Ok(hdr)
    }

    #[inline]
    pub fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::VLAN_TCI];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The encapsulated ethertype (or the next TPID).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::VLAN_ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::VLAN_PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[field::VLAN_TCI].copy_from_slice(&tci.to_be_bytes());
    }

    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::VLAN_ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }
}

/// The Ethernet II header as a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    pub ethertype: u16,
}

impl Repr {
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr, ParseError> {
        frame.check_len()?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// # Panics
    /// If the frame buffer is shorter than [`HEADER_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

/// A VLAN tag's TCI and encapsulated ethertype as a value (the TPID belongs to the header
/// before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VlanRepr {
    pub tci: u16,
    pub ethertype: u16,
}

impl VlanRepr {
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(hdr: &VlanHeader<T>) -> Result<VlanRepr, ParseError> {
        if hdr.buffer.as_ref().len() < VLAN_HEADER_LEN {
            return Err(ParseError::VlanTruncated);
        }
        Ok(VlanRepr {
            tci: hdr.tci(),
            ethertype: hdr.ethertype(),
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        VLAN_HEADER_LEN
    }

    /// # Panics
    /// If the buffer is shorter than [`VLAN_HEADER_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, hdr: &mut VlanHeader<T>) {
        hdr.set_tci(self.tci);
        hdr.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static FRAME: [u8; 18] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, // dst
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, // src
        0x81, 0x00, // TPID
        0xa0, 0x64, // PCP 5, DEI 0, VID 100
        0x08, 0x00, // IPv4
    ];

    #[test]
    fn deconstruct() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(f.src_addr(), MacAddr([0x11, 0x12, 0x13, 0x14, 0x15, 0x16]));
        assert_eq!(f.ethertype(), EtherType::VLAN);
        let v = VlanHeader::new_checked(f.payload()).unwrap();
        let tag = VlanTag {
            tpid: f.ethertype(),
            tci: v.tci(),
        };
        assert_eq!((tag.pcp(), tag.dei(), tag.vid()), (5, false, 100));
        assert_eq!(tag, VlanTag::new(EtherType::VLAN, 5, false, 100));
        assert_eq!(v.ethertype(), EtherType::IPV4);
        assert!(v.payload().is_empty());
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 18];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        Repr {
            dst_addr: MacAddr([1, 2, 3, 4, 5, 6]),
            src_addr: MacAddr([0x11, 0x12, 0x13, 0x14, 0x15, 0x16]),
            ethertype: EtherType::VLAN,
        }
        .emit(&mut f);
        let mut v = VlanHeader::new_unchecked(f.payload_mut());
        VlanRepr {
            tci: VlanTag::new(0, 5, false, 100).tci,
            ethertype: EtherType::IPV4,
        }
        .emit(&mut v);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::new_checked(&FRAME[..13]),
            Err(ParseError::EthernetTruncated)
        );
        assert!(Frame::new_checked(&FRAME[..14]).is_ok());
        assert_eq!(
            VlanHeader::new_checked(&FRAME[14..17]),
            Err(ParseError::VlanTruncated)
        );
    }

    #[test]
    fn mac_kinds() {
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x02, 0, 0, 0, 0, 1]).is_unicast());
        assert_eq!(
            MacAddr([0xa, 0xb, 0xc, 0xd, 0xe, 0xf]).to_string(),
            "0a:0b:0c:0d:0e:0f"
        );
    }

    proptest! {
        #[test]
        fn repr_round_trip(src in any::<[u8; 6]>(), dst in any::<[u8; 6]>(), et in any::<u16>(), extra in 0usize..8) {
            let repr = Repr { src_addr: MacAddr(src), dst_addr: MacAddr(dst), ethertype: et };
            let mut buf = vec![0u8; repr.buffer_len() + extra];
            repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
            let f = Frame::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&f).unwrap(), repr);
            prop_assert_eq!(f.payload().len(), extra);
        }

        #[test]
        fn vlan_tag_fields(pcp in 0u8..8, dei in any::<bool>(), vid in 0u16..4096) {
            let t = VlanTag::new(EtherType::QINQ, pcp, dei, vid);
            prop_assert_eq!((t.pcp(), t.dei(), t.vid()), (pcp, dei, vid));
        }
    }
}
