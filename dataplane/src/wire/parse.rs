//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The whole-frame parser: Ethernet, up to two VLAN tags, ARP/IPv4/IPv6, and the L4 ports.
//!
//! [`parse_frame`] either rejects a frame with one [`ParseError`] or returns a [`PacketInfo`]
//! whose invariants the later stages rely on:
//!
//! - `l3_offset + l3_len <= frame.len()`; bytes after `l3_offset + l3_len` are Ethernet padding
//!   and were ignored. IPv4 header checksum and option structure have been verified.
//! - `l4_offset == 0` means "no L4 header here" (non-IP, non-first fragment, No Next Header).
//!   Otherwise `l3_offset < l4_offset <= l3_offset + l3_len`, and for TCP, UDP, ICMP over
//!   IPv4 and ICMPv6 over IPv6:
//!   - unfragmented: `frame[l4_offset..l3_offset + l3_len]` passes the protocol's
//!     `Packet::new_checked` (TCP: data offset within the segment; UDP: `8 <= length <=` IP
//!     payload);
//!   - first fragment: the whole L4 header (TCP options included; 8 bytes for UDP and ICMP)
//!     is present, else `Ipv4TinyFragment`/`Ipv6TinyFragment`; the UDP length is only checked
//!     to be at least 8.
//! - IPv6: the extension-header chain was walked (see [`ipv6`](super::ipv6)); `flow.proto` is
//!   the upper-layer protocol after it (ESP, 59 for No Next Header, or for a non-first
//!   fragment the Fragment header's next header). A first fragment must carry the whole chain
//!   (RFC 7112). An atomic fragment (offset 0, M clear; RFC 6946) is `Fragment::None`.
//! - Fragments: non-final fragments carry a multiple of 8 bytes and no fragment reaches past
//!   65535 bytes (else `*BadFragment`); IPv4 TCP at fragment offset 8 is refused (RFC 1858 §3.2).
//! - Ports follow [`flow`](super::flow): TCP/UDP ports; ICMP `(ident or 0, type << 8 | code)`;
//!   0 for anything else and for non-first fragments.
//! - L4 checksums are *not* verified here.

use super::ethernet::{self, EtherType, VlanHeader, VlanTag};
use super::flow::{icmp_ports, Family, FlowKey, IpAddr128};
use super::{arp, checksum, icmpv4, icmpv6, ip_proto, ipv4, ipv6, tcp, udp, ParseError};

/// Most VLAN tags accepted (802.1ad outer + 802.1Q inner).
pub const MAX_VLAN_TAGS: usize = 2;

/// What sits at `l3_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum L3 {
    Arp,
    Ipv4,
    Ipv6,
    /// Any other ethertype; accepted untouched.
    Other,
}

/// Fragmentation state of an IP packet. IPv4 identifiers are widened to `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fragment {
    /// Not a fragment (including IPv6 atomic fragments).
    None,
    /// Offset 0 with more to follow: carries the L4 header.
    First { id: u32, more: bool },
    /// Non-zero offset: fragment data only, no L4 header.
    Later {
        id: u32,
        offset_bytes: u16,
        more: bool,
    },
}

/// The result of [`parse_frame`]; see the module docs for its invariants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// VLAN tags, outermost first.
    pub vlans: [Option<VlanTag>; MAX_VLAN_TAGS],
    /// Innermost ethertype.
    pub ethertype: u16,
    /// Offset of the L3 header in the frame.
    pub l3_offset: u16,
    pub l3: L3,
    /// IP datagram length per its header (IPv4 total length; IPv6 40 + payload length);
    /// 0 for non-IP.
    pub l3_len: u16,
    /// Offset of the L4 header in the frame, 0 when there is none.
    pub l4_offset: u16,
    pub frag: Fragment,
    /// `Some` for IPv4 and IPv6.
    pub flow: Option<FlowKey>,
    /// What the receiving device said of the L4 checksum (the parser never checks it; the
    /// worker copies the device's verdict here when it has one).
    pub l4_csum: RxCsum,
}

/// A receiving device's verdict on a packet's L4 (TCP, UDP) checksum: DPDK's
/// `RTE_MBUF_F_RX_L4_CKSUM_*` flags, set by devices with RX checksum offload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RxCsum {
    /// Not checked by the device (or no device: a capture, a generated frame).
    #[default]
    Unchecked,
    /// The device verified it.
    Good,
    /// The device found it wrong.
    Bad,
}

impl PacketInfo {
    /// What both parsers start from for an untagged frame of `ethertype` (a tagged one
    /// overrides `vlans` and `l3_offset`).
    #[inline(always)]
    fn untagged(ethertype: u16) -> PacketInfo {
        PacketInfo {
            vlans: [None; MAX_VLAN_TAGS],
            ethertype,
            l3_offset: ethernet::HEADER_LEN as u16,
            l3: L3::Other,
            l3_len: 0,
            l4_offset: 0,
            frag: Fragment::None,
            flow: None,
            l4_csum: RxCsum::Unchecked,
        }
    }

    /// End of the IP datagram in the frame (start of any padding); `l3_offset` for non-IP.
    #[inline]
    pub const fn l3_end(&self) -> usize {
        self.l3_offset as usize + self.l3_len as usize
    }

    /// Bytes of L4 header and payload, 0 when there is no L4 header.
    #[inline]
    pub const fn l4_len(&self) -> usize {
        if self.l4_offset == 0 {
            0
        } else {
            self.l3_end() - self.l4_offset as usize
        }
    }

    /// The L4 bytes of `frame` (the frame this info was parsed from), if any.
    #[inline]
    pub fn l4_bytes<'a>(&self, frame: &'a [u8]) -> Option<&'a [u8]> {
        if self.l4_offset == 0 {
            return None;
        }
        frame.get(usize::from(self.l4_offset)..self.l3_end())
    }

    /// The IP protocol / upper-layer next header, for IP packets.
    #[inline]
    pub fn proto(&self) -> Option<u8> {
        self.flow.map(|f| f.proto)
    }

    #[inline]
    pub const fn is_fragment(&self) -> bool {
        !matches!(self.frag, Fragment::None)
    }
}

/// Parses one Ethernet frame (no FCS) into a [`PacketInfo`], or names why it must be dropped.
#[inline]
pub fn parse_frame(frame: &[u8]) -> Result<PacketInfo, ParseError> {
    let eth = ethernet::Frame::new_checked(frame)?;
    let mut ethertype = eth.ethertype();
    let mut offset = ethernet::HEADER_LEN;
    let mut vlans = [None; MAX_VLAN_TAGS];
    let mut tags = 0;
    while EtherType::is_vlan_tpid(ethertype) {
        if tags == MAX_VLAN_TAGS {
            return Err(ParseError::VlanTooManyTags);
        }
        // offset <= frame.len(): the Ethernet header or the previous tag was checked.
        let tag = VlanHeader::new_checked(&frame[offset..])?;
        vlans[tags] = Some(VlanTag {
            tpid: ethertype,
            tci: tag.tci(),
        });
        ethertype = tag.ethertype();
        offset += ethernet::VLAN_HEADER_LEN;
        tags += 1;
    }

    let mut info = PacketInfo {
        vlans,
        // At most 14 + 2 * 4.
        l3_offset: offset as u16,
        ..PacketInfo::untagged(ethertype)
    };
    let l3 = &frame[offset..];
    match ethertype {
        EtherType::IPV4 => parse_ipv4(l3, &mut info)?,
        EtherType::IPV6 => parse_ipv6(l3, &mut info)?,
        EtherType::ARP => {
            arp::Packet::new_checked(l3)?;
            info.l3 = L3::Arp;
        }
        _ => {}
    }
    Ok(info)
}

/// [`parse_frame`] with a straight-line path for the frames a firewall mostly sees; the same
/// result for every input.
///
/// [`parse_common`] answers for untagged or single-802.1Q frames carrying IPv4 without options
/// or fragmentation and with a good header checksum (TCP, UDP and ICMP with a valid header, any
/// other protocol), IPv6 with TCP, UDP or ICMPv6 directly after the fixed header, or any
/// ethertype the parser does not look into; everything else, errors included, goes to
/// [`parse_frame`].
#[inline(always)]
pub fn parse_frame_fast(frame: &[u8]) -> Result<PacketInfo, ParseError> {
    match parse_common(frame) {
        Some(info) => Ok(info),
        None => parse_uncommon(frame),
    }
}

/// The fallback of [`parse_frame_fast`], out of line so the common path stays small.
#[inline(never)]
fn parse_uncommon(frame: &[u8]) -> Result<PacketInfo, ParseError> {
    parse_frame(frame)
}

/// The common frames in one straight line: `Some(info)` exactly when [`parse_frame`] would
/// return `Ok(info)` by its simplest route (see [`parse_frame_fast`]); `None` means "ask
/// [`parse_frame`]", which may accept or reject the frame.
#[inline(always)]
pub fn parse_common(frame: &[u8]) -> Option<PacketInfo> {
    parse_common_with(frame, |info| info)
}

/// [`parse_common`] storing its answer in `out` (`None` for a frame it leaves to
/// [`parse_frame`]). Each kind of frame stores its own result where it was made: returned, the
/// results of the IPv4 and IPv6 paths met in registers first (an IPv4 address's zero half
/// and an IPv6 one's loaded half), which the compiler spilled to the stack and copied back
/// for every frame.
#[inline(always)]
pub fn parse_common_into(frame: &[u8], out: &mut Option<PacketInfo>) {
    if parse_common_with(frame, |info| *out = Some(info)).is_none() {
        *out = None;
    }
}

/// [`parse_common`] handing its result to `done`, once per kind of frame.
#[inline(always)]
fn parse_common_with<R>(frame: &[u8], done: impl FnOnce(PacketInfo) -> R) -> Option<R> {
    let eth: &[u8; ethernet::HEADER_LEN] = frame.get(..ethernet::HEADER_LEN)?.try_into().ok()?;
    // One load: the kind is looked up by the bytes as they are.
    let raw: [u8; 2] = eth[12..14].try_into().ok()?;
    common_after_ethernet(frame, raw, ether_kind(raw), done)
}

/// [`parse_common`] once the Ethernet header (ethertype bytes `raw`, of kind `kind`) was read.
#[inline(always)]
fn common_after_ethernet<R>(
    frame: &[u8],
    raw: [u8; 2],
    mut kind: u8,
    done: impl FnOnce(PacketInfo) -> R,
) -> Option<R> {
    let mut ethertype = u16::from_be_bytes(raw);
    let mut vlans = [None; MAX_VLAN_TAGS];
    let mut l3_offset = ethernet::HEADER_LEN;
    if kind == ETHER_VLAN {
        let end = ethernet::HEADER_LEN + ethernet::VLAN_HEADER_LEN;
        let tag: &[u8; ethernet::VLAN_HEADER_LEN] =
            frame.get(ethernet::HEADER_LEN..end)?.try_into().ok()?;
        vlans[0] = Some(VlanTag {
            tpid: EtherType::VLAN,
            tci: u16::from_be_bytes([tag[0], tag[1]]),
        });
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        kind = ether_kind([tag[2], tag[3]]);
        l3_offset = end;
    }
    let mut info = PacketInfo {
        vlans,
        l3_offset: l3_offset as u16,
        ..PacketInfo::untagged(ethertype)
    };
    // l3_offset <= frame.len(): the headers before it were taken with `get`.
    match kind {
        ETHER_OTHER => Some(done(info)),
        ETHER_IPV4 => {
            common_ipv4(&frame[l3_offset..], &mut info)?;
            Some(done(info))
        }
        ETHER_IPV6 => {
            common_ipv6(&frame[l3_offset..], &mut info)?;
            Some(done(info))
        }
        // ARP is checked by the full parser; a second tag (or a first S-tag) likewise.
        _ => None,
    }
}

/// What the straight-line parser does with an ethertype ([`ETHER_KINDS`]): an ethertype it
/// does not look into (the frame is accepted as [`L3::Other`]).
pub const ETHER_OTHER: u8 = 0;
const ETHER_IPV4: u8 = 1;
const ETHER_IPV6: u8 = 2;
/// An 802.1Q tag (the one tag [`parse_common`] reads itself).
const ETHER_VLAN: u8 = 3;
/// ARP, an S-tag or a legacy QinQ tag: left to [`parse_frame`].
const ETHER_FULL: u8 = 4;

/// What [`parse_common`] does with each ethertype, indexed by the ethertype's two bytes as
/// they sit in the frame read as one native-endian `u16` ([`ether_kind`]): one load decides,
/// with no byte swap and no chain of compares, so the frames it accepts untouched cost no
/// more than IP ones. 64 KiB, of which a frame touches the one cache line of its ethertype,
/// and 7 bytes of padding (kind [`ETHER_OTHER`]) so that an 8-byte load at any ethertype's
/// entry stays inside the table (the burst screen's gather, [`ether_kinds`]).
static ETHER_KINDS: [u8; ETHER_KINDS_LEN] = {
    let mut t = [ETHER_OTHER; ETHER_KINDS_LEN];
    let mut i = 0;
    while i < ETHER_SPECIAL.len() {
        let (ethertype, kind) = ETHER_SPECIAL[i];
        t[u16::from_ne_bytes(ethertype.to_be_bytes()) as usize] = kind;
        i += 1;
    }
    t
};

/// The ethertypes [`parse_common`] looks into, with what it does with each; every other
/// ethertype is [`ETHER_OTHER`].
const ETHER_SPECIAL: [(u16, u8); 6] = [
    (EtherType::IPV4, ETHER_IPV4),
    (EtherType::IPV6, ETHER_IPV6),
    (EtherType::VLAN, ETHER_VLAN),
    (EtherType::ARP, ETHER_FULL),
    (EtherType::QINQ, ETHER_FULL),
    (EtherType::QINQ_LEGACY, ETHER_FULL),
];

/// The ethertypes whose entry in [`ETHER_KINDS`] is not [`ETHER_OTHER`], each as its two
/// bytes in frame order read as one native-endian `u16` (as the table is indexed): a frame
/// whose ethertype is none of these is accepted untouched. The AVX-512 burst screen compares
/// with these instead of loading the table's entry.
pub const ETHER_LOOKED_INTO: [u16; ETHER_SPECIAL.len()] = {
    let mut t = [0; ETHER_SPECIAL.len()];
    let mut i = 0;
    while i < t.len() {
        t[i] = u16::from_ne_bytes(ETHER_SPECIAL[i].0.to_be_bytes());
        i += 1;
    }
    t
};

/// Entries of [`ETHER_KINDS`]: one per ethertype and the padding after them.
pub const ETHER_KINDS_LEN: usize = (1 << 16) + 7;

/// The straight-line parser's table of ethertypes, indexed by the ethertype's two bytes as they
/// sit in the frame read as one native-endian `u16`; entry [`ETHER_OTHER`] means
/// [`classify_common`] accepts any frame of that ethertype with a whole Ethernet header as
/// [`L3::Other`]. For the burst screen (`dpdk::simd`), which looks it up for several frames at
/// once.
#[inline(always)]
pub fn ether_kinds() -> &'static [u8; ETHER_KINDS_LEN] {
    &ETHER_KINDS
}

/// How [`parse_common`] treats the ethertype whose bytes (in frame order) are `bytes`.
#[inline(always)]
fn ether_kind(bytes: [u8; 2]) -> u8 {
    ETHER_KINDS[usize::from(u16::from_ne_bytes(bytes))]
}

/// What [`parse_common`] finds at L3, without the rest of its result: the same frames are
/// accepted (the same checks run), only nothing else is kept. An ethertype the parser does
/// not look into is answered before anything else.
#[inline(always)]
pub fn classify_common(frame: &[u8]) -> Option<L3> {
    let eth: &[u8; ethernet::HEADER_LEN] = frame.get(..ethernet::HEADER_LEN)?.try_into().ok()?;
    let raw: [u8; 2] = eth[12..14].try_into().ok()?;
    let kind = ether_kind(raw);
    if kind == ETHER_OTHER {
        return Some(L3::Other);
    }
    if kind == ETHER_IPV4 {
        // Untagged IPv4: the header at a fixed offset, the same checks as below.
        let mut info = PacketInfo::untagged(u16::from_be_bytes(raw));
        common_ipv4(&frame[ethernet::HEADER_LEN..], &mut info)?;
        return Some(L3::Ipv4);
    }
    common_after_ethernet(frame, raw, kind, |info| info.l3)
}

/// IPv4, IHL 5, not a fragment, checksum good; see [`parse_common`].
///
/// The header is read as three little-endian words and its fields taken out of them: the
/// checksum needs those loads anyway, and reading the fields byte by byte led the compiler to
/// rebuild the words from the bytes.
#[inline(always)]
fn common_ipv4(l3: &[u8], info: &mut PacketInfo) -> Option<()> {
    let h: &[u8; ipv4::HEADER_LEN] = l3.get(..ipv4::HEADER_LEN)?.try_into().ok()?;
    let (a, b, c) = le_words_20(h)?;
    // Version 4 and IHL 5 (no options) in byte 0; MF and the fragment offset (DF may be set)
    // in the low 6 bits of byte 6 and all of byte 7: one masked compare.
    if a & 0xff3f_0000_0000_00ff != 0x45 {
        return None;
    }
    // Bytes 2..4, big-endian: 20 <= total <= l3.len(), checked by taking the payload.
    let total = usize::from(((a >> 16) as u16).swap_bytes());
    let l4 = l3.get(ipv4::HEADER_LEN..total)?;
    if !checksum::verify_20_words(a, b, c) {
        return None;
    }
    // Byte 9.
    let proto = (b >> 8) as u8;
    let (src_port, dst_port) = match proto {
        ip_proto::TCP | ip_proto::UDP => common_ports(proto, l4)?,
        ip_proto::ICMP => {
            let m: &[u8; icmpv4::HEADER_LEN] = l4.get(..icmpv4::HEADER_LEN)?.try_into().ok()?;
            icmp_ports(Family::V4, m[0], m[1], u16::from_be_bytes([m[4], m[5]]))
        }
        // No L4 header the parser checks: ports 0, as `l4_ports` gives.
        _ => (0, 0),
    };
    info.l3 = L3::Ipv4;
    info.l3_len = total as u16;
    info.l4_offset = info.l3_offset + ipv4::HEADER_LEN as u16;
    info.flow = Some(FlowKey {
        // Bytes 12..16 and 16..20, from the words already loaded.
        src: IpAddr128::from_v4_le_word((b >> 32) as u32),
        dst: IpAddr128::from_v4_le_word(c),
        src_port,
        dst_port,
        proto,
        family: Family::V4,
    });
    Some(())
}

/// Bytes 0..8, 8..16 and 16..20 of a 20-byte header as little-endian words, each one load
/// (copies of sub-slices, which the compiler keeps whole; destructuring the array into bytes
/// let it load the bytes one by one and shift them back together).
#[inline(always)]
fn le_words_20(h: &[u8; 20]) -> Option<(u64, u64, u32)> {
    Some((
        u64::from_le_bytes(h[0..8].try_into().ok()?),
        u64::from_le_bytes(h[8..16].try_into().ok()?),
        u32::from_le_bytes(h[16..20].try_into().ok()?),
    ))
}

/// IPv6 with TCP, UDP or ICMPv6 right after the fixed header; see [`parse_common`].
#[inline(always)]
fn common_ipv6(l3: &[u8], info: &mut PacketInfo) -> Option<()> {
    let h: &[u8; ipv6::HEADER_LEN] = l3.get(..ipv6::HEADER_LEN)?.try_into().ok()?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let end = ipv6::HEADER_LEN + usize::from(u16::from_be_bytes([h[4], h[5]]));
    // The datagram length must fit `l3_len` (no jumbograms).
    if end > l3.len() || end > usize::from(u16::MAX) {
        return None;
    }
    let proto = h[6];
    let l4 = &l3[ipv6::HEADER_LEN..end];
    let (src_port, dst_port) = match proto {
        ip_proto::TCP | ip_proto::UDP => common_ports(proto, l4)?,
        ip_proto::ICMPV6 => {
            let m: &[u8; icmpv6::HEADER_LEN] = l4.get(..icmpv6::HEADER_LEN)?.try_into().ok()?;
            icmp_ports(Family::V6, m[0], m[1], u16::from_be_bytes([m[4], m[5]]))
        }
        _ => return None,
    };
    let mut src = [0; 16];
    src.copy_from_slice(&h[8..24]);
    let mut dst = [0; 16];
    dst.copy_from_slice(&h[24..40]);
    info.l3 = L3::Ipv6;
    info.l3_len = end as u16;
    info.l4_offset = info.l3_offset + ipv6::HEADER_LEN as u16;
    info.flow = Some(FlowKey {
        src: IpAddr128(src),
        dst: IpAddr128(dst),
        src_port,
        dst_port,
        proto,
        family: Family::V6,
    });
    Some(())
}

/// TCP or UDP ports of an unfragmented datagram whose header `l4_ports` would accept.
#[inline(always)]
fn common_ports(proto: u8, l4: &[u8]) -> Option<(u16, u16)> {
    let h: &[u8; udp::HEADER_LEN] = l4.get(..udp::HEADER_LEN)?.try_into().ok()?;
    let ok = if proto == ip_proto::TCP {
        // Data offset within 20..=segment length (also implies the 20-byte header is there).
        let header_len = usize::from(*l4.get(12)? >> 4) * 4;
        header_len >= tcp::HEADER_LEN && header_len <= l4.len()
    } else {
        // 8 <= length <= l4.len() (which is at least 8), one compare.
        let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        len.wrapping_sub(udp::HEADER_LEN) <= l4.len() - udp::HEADER_LEN
    };
    ok.then(|| {
        (
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[2], h[3]]),
        )
    })
}

#[inline]
fn parse_ipv4(l3: &[u8], info: &mut PacketInfo) -> Result<(), ParseError> {
    let ip = ipv4::Packet::new_checked(l3)?;
    if !ip.verify_checksum() {
        return Err(ParseError::Ipv4BadChecksum);
    }
    let header_len = ip.header_len();
    if header_len > ipv4::HEADER_LEN {
        ip.check_options()?;
    }
    let proto = ip.protocol();
    let payload = ip.payload();
    let mut flow = FlowKey::new_v4(ip.src_addr(), ip.dst_addr(), proto, 0, 0);
    info.l3 = L3::Ipv4;
    info.l3_len = ip.total_len();

    let offset = ip.frag_offset();
    let more = ip.more_frags();
    if offset != 0 || more {
        let len = payload.len();
        if (more && len % 8 != 0)
            || usize::from(offset) + len > usize::from(u16::MAX)
            || (proto == ip_proto::TCP && offset == 8)
        {
            return Err(ParseError::Ipv4BadFragment);
        }
        let id = u32::from(ip.ident());
        if offset != 0 {
            info.frag = Fragment::Later {
                id,
                offset_bytes: offset,
                more,
            };
            info.flow = Some(flow);
            return Ok(());
        }
        info.frag = Fragment::First { id, more };
    }

    let first = info.is_fragment();
    (flow.src_port, flow.dst_port) = l4_ports(Family::V4, proto, payload, first)?;
    info.l4_offset = info.l3_offset + header_len as u16;
    info.flow = Some(flow);
    Ok(())
}

#[inline]
fn parse_ipv6(l3: &[u8], info: &mut PacketInfo) -> Result<(), ParseError> {
    let ip = ipv6::Packet::new_checked(l3)?;
    let payload_len = usize::from(ip.payload_len());
    // Jumbograms (RFC 2675) are unsupported; the datagram length must fit `l3_len`.
    if (payload_len == 0 && ip.next_header() == ip_proto::HOPOPT)
        || ipv6::HEADER_LEN + payload_len > usize::from(u16::MAX)
    {
        return Err(ParseError::Ipv6BadPayloadLen);
    }
    info.l3 = L3::Ipv6;
    info.l3_len = (ipv6::HEADER_LEN + payload_len) as u16;

    let payload = ip.payload();
    let mut walk = ip.ext_headers();
    let mut frag = None;
    for hdr in &mut walk {
        let hdr = hdr?;
        if let Some(f) = hdr.fragment() {
            let data_at = hdr.offset + ipv6::FRAGMENT_HEADER_LEN;
            frag = Some((f.frag_offset(), f.more_frags(), f.ident(), data_at));
        }
    }
    let proto = walk.next_header();
    let l4_at = walk.offset();
    let mut flow = FlowKey::new_v6(ip.src_addr(), ip.dst_addr(), proto, 0, 0);

    if let Some((offset, more, id, data_at)) = frag {
        if offset != 0 || more {
            // data_at <= payload.len(): the walk checked the Fragment header fits.
            let len = payload.len() - data_at;
            if (more && len % 8 != 0) || usize::from(offset) + len > usize::from(u16::MAX) {
                return Err(ParseError::Ipv6BadFragment);
            }
            if offset != 0 {
                info.frag = Fragment::Later {
                    id,
                    offset_bytes: offset,
                    more,
                };
                info.flow = Some(flow);
                return Ok(());
            }
            info.frag = Fragment::First { id, more };
        }
    }

    if proto != ip_proto::IPV6_NONXT {
        let first = info.is_fragment();
        (flow.src_port, flow.dst_port) = l4_ports(Family::V6, proto, &payload[l4_at..], first)?;
        // The walk visits at most 8 headers of at most 2048 bytes each, so this fits.
        info.l4_offset = (usize::from(info.l3_offset) + ipv6::HEADER_LEN + l4_at) as u16;
    }
    info.flow = Some(flow);
    Ok(())
}

/// Ports for the flow key, checking the L4 header is present and self-consistent.
/// `first_frag`: the datagram continues in later fragments, so a short header is a tiny
/// fragment and the UDP length cannot be compared with what is here.
#[inline]
fn l4_ports(
    family: Family,
    proto: u8,
    l4: &[u8],
    first_frag: bool,
) -> Result<(u16, u16), ParseError> {
    let short = |own: ParseError| -> ParseError {
        match (first_frag, family) {
            (false, _) => own,
            (true, Family::V4) => ParseError::Ipv4TinyFragment,
            (true, Family::V6) => ParseError::Ipv6TinyFragment,
        }
    };
    match (family, proto) {
        (_, ip_proto::TCP) => {
            if l4.len() < tcp::HEADER_LEN {
                return Err(short(ParseError::TcpTruncated));
            }
            let tcp = tcp::Packet::new_unchecked(l4);
            let header_len = tcp.header_len();
            if header_len < tcp::HEADER_LEN {
                return Err(ParseError::TcpBadDataOffset);
            }
            if header_len > l4.len() {
                return Err(short(ParseError::TcpBadDataOffset));
            }
            Ok((tcp.src_port(), tcp.dst_port()))
        }
        (_, ip_proto::UDP) => {
            if l4.len() < udp::HEADER_LEN {
                return Err(short(ParseError::UdpTruncated));
            }
            let udp = udp::Packet::new_unchecked(l4);
            let len = usize::from(udp.len());
            if len < udp::HEADER_LEN || (!first_frag && len > l4.len()) {
                return Err(ParseError::UdpBadLength);
            }
            Ok((udp.src_port(), udp.dst_port()))
        }
        (Family::V4, ip_proto::ICMP) => {
            let icmp = icmpv4::Packet::new_checked(l4).map_err(short)?;
            Ok(icmp_ports(
                family,
                icmp.msg_type(),
                icmp.msg_code(),
                icmp.ident(),
            ))
        }
        (Family::V6, ip_proto::ICMPV6) => {
            let icmp = icmpv6::Packet::new_checked(l4).map_err(short)?;
            Ok(icmp_ports(
                family,
                icmp.msg_type(),
                icmp.msg_code(),
                icmp.ident(),
            ))
        }
        _ => Ok((0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{tests::arb_frame_spec, ExtSpec, FrameSpec, IpSpec, L4Spec};
    use crate::wire::checksum::{self, PseudoHeader};
    use crate::wire::tcp::{Flags, OptionsIter};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// VLAN 42 (PCP 3), IPv4 192.168.1.10:51000 -> 93.184.216.34:443 TCP SYN, MSS 1460.
    static TCP_SYN_VLAN: [u8; 62] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0x60,
        0x2a, 0x08, 0x00, 0x45, 0x00, 0x00, 0x2c, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x43, 0x3e,
        0xc0, 0xa8, 0x01, 0x0a, 0x5d, 0xb8, 0xd8, 0x22, 0xc7, 0x38, 0x01, 0xbb, 0x01, 0x02, 0x03,
        0x04, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa, 0xf0, 0xd8, 0xae, 0x00, 0x00, 0x02, 0x04,
        0x05, 0xb4,
    ];

    /// IPv6 2001:db8::1:5353 -> 2001:db8::2:53 UDP "hello".
    static UDP6: [u8; 67] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x0d, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0d,
        0x4b, 0x6f, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    fn syn_spec() -> FrameSpec {
        let mut spec = FrameSpec::new(
            IpSpec::V4 {
                src: Ipv4Addr::new(192, 168, 1, 10),
                dst: Ipv4Addr::new(93, 184, 216, 34),
                ttl: 64,
                ident: 1,
                dont_frag: true,
                options: vec![],
            },
            L4Spec::Tcp {
                sport: 51000,
                dport: 443,
                seq: 0x01020304,
                ack: 0,
                flags: Flags::SYN,
                window: 64240,
                options: vec![2, 4, 0x05, 0xb4],
                payload: vec![],
            },
        );
        spec.vlans[0] = Some(VlanTag::new(EtherType::VLAN, 3, false, 42));
        spec
    }

    fn v4(a: [u8; 4]) -> Ipv4Addr {
        a.into()
    }

    fn tcp_v4() -> Vec<u8> {
        FrameSpec::new(
            IpSpec::v4(v4([10, 0, 0, 1]), v4([10, 0, 0, 2])),
            L4Spec::tcp(1234, 80, Flags::SYN),
        )
        .build()
    }

    fn v6_spec(l4: L4Spec, ext: Vec<ExtSpec>) -> FrameSpec {
        let mut ip = IpSpec::v6(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        if let IpSpec::V6 { ext: e, .. } = &mut ip {
            *e = ext;
        }
        FrameSpec::new(ip, l4)
    }

    fn ext(header_type: u8, body_len: usize) -> ExtSpec {
        ExtSpec {
            header_type,
            body: vec![0; body_len],
        }
    }

    /// Rewrites the IPv4 header checksum of a frame without VLAN tags.
    fn refill_v4(frame: &mut [u8]) {
        ipv4::Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..]).fill_checksum();
    }

    #[test]
    fn ether_kind_sorts_every_ethertype() {
        for t in 0..=u16::MAX {
            let want = match t {
                EtherType::IPV4 => ETHER_IPV4,
                EtherType::IPV6 => ETHER_IPV6,
                EtherType::VLAN => ETHER_VLAN,
                EtherType::ARP => ETHER_FULL,
                t if EtherType::is_vlan_tpid(t) => ETHER_FULL,
                _ => ETHER_OTHER,
            };
            assert_eq!(ether_kind(t.to_be_bytes()), want, "ethertype {t:#06x}");
        }
    }

    #[test]
    fn ipv4_tcp_fixture() {
        let info = parse_frame(&TCP_SYN_VLAN).unwrap();
        let tag = info.vlans[0].unwrap();
        assert_eq!(
            (tag.tpid, tag.pcp(), tag.dei(), tag.vid()),
            (EtherType::VLAN, 3, false, 42)
        );
        assert_eq!(
            info,
            PacketInfo {
                vlans: [Some(tag), None],
                ethertype: EtherType::IPV4,
                l3_offset: 18,
                l3: L3::Ipv4,
                l3_len: 44,
                l4_offset: 38,
                frag: Fragment::None,
                flow: Some(FlowKey::new_v4(
                    v4([192, 168, 1, 10]),
                    v4([93, 184, 216, 34]),
                    6,
                    51000,
                    443
                )),
                l4_csum: RxCsum::Unchecked,
            }
        );
        assert_eq!(info.l4_len(), 24);
        let l4 = info.l4_bytes(&TCP_SYN_VLAN).unwrap();
        let tcp = tcp::Packet::new_checked(l4).unwrap();
        let ph = PseudoHeader::V4 {
            src: v4([192, 168, 1, 10]),
            dst: v4([93, 184, 216, 34]),
        };
        assert!(tcp.verify_checksum(&ph));
        let opts: Vec<_> = OptionsIter::new(tcp.options()).collect();
        assert_eq!(opts, vec![Ok(tcp::TcpOption::MaxSegmentSize(1460))]);
        assert_eq!(syn_spec().build(), TCP_SYN_VLAN);
    }

    #[test]
    fn ipv6_udp_fixture() {
        let info = parse_frame(&UDP6).unwrap();
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        assert_eq!(
            info,
            PacketInfo {
                vlans: [None, None],
                ethertype: EtherType::IPV6,
                l3_offset: 14,
                l3: L3::Ipv6,
                l3_len: 53,
                l4_offset: 54,
                frag: Fragment::None,
                flow: Some(FlowKey::new_v6(src, dst, 17, 5353, 53)),
                l4_csum: RxCsum::Unchecked,
            }
        );
        let udp = udp::Packet::new_checked(info.l4_bytes(&UDP6).unwrap()).unwrap();
        assert!(udp.verify_checksum(&PseudoHeader::V6 { src, dst }));
        assert_eq!(
            v6_spec(L4Spec::udp(5353, 53, b"hello"), vec![]).build(),
            UDP6
        );
    }

    #[test]
    fn ethernet_and_vlans() {
        assert_eq!(
            parse_frame(&TCP_SYN_VLAN[..13]),
            Err(ParseError::EthernetTruncated)
        );
        assert_eq!(
            parse_frame(&TCP_SYN_VLAN[..17]),
            Err(ParseError::VlanTruncated)
        );
        let other = parse_frame(&[0u8; 14]).unwrap();
        assert_eq!(
            (other.l3, other.ethertype, other.flow, other.l3_len),
            (L3::Other, 0, None, 0)
        );

        let mut spec = syn_spec();
        spec.vlans = [
            Some(VlanTag::new(EtherType::QINQ, 1, true, 100)),
            Some(VlanTag::new(EtherType::VLAN, 0, false, 7)),
        ];
        let frame = spec.build();
        let info = parse_frame(&frame).unwrap();
        assert_eq!(info.vlans, spec.vlans);
        assert_eq!((info.l3_offset, info.flow), (22, Some(spec.flow_key())));

        // A third tag.
        let mut three = frame[..12].to_vec();
        three.extend_from_slice(&[
            0x91, 0x00, 0, 1, 0x88, 0xa8, 0, 2, 0x81, 0x00, 0, 3, 0x08, 0x00,
        ]);
        three.extend_from_slice(&frame[22..]);
        assert_eq!(parse_frame(&three), Err(ParseError::VlanTooManyTags));
    }

    #[test]
    fn arp() {
        let req = crate::wire::builder::arp_request(MAC, v4([10, 0, 0, 1]), v4([10, 0, 0, 2]));
        assert_eq!(parse_frame(&req).unwrap().l3, L3::Arp);
        assert_eq!(parse_frame(&req[..14 + 27]), Err(ParseError::ArpTruncated));
        assert_eq!(parse_frame(&req[..14 + 7]), Err(ParseError::ArpTruncated));
        let mut bad = req.clone();
        bad[14 + 4] = 8;
        assert_eq!(parse_frame(&bad), Err(ParseError::ArpBadFormat));
        let mut padded = req;
        padded.resize(60, 0);
        assert_eq!(parse_frame(&padded).unwrap().l3_len, 0);
    }

    const MAC: ethernet::MacAddr = ethernet::MacAddr([2, 0, 0, 0, 0, 1]);

    #[test]
    fn ipv4_header_errors() {
        let good = tcp_v4();
        let with = |at: usize, v: u8, refill: bool| {
            let mut f = good.clone();
            f[14 + at] = v;
            if refill {
                refill_v4(&mut f);
            }
            parse_frame(&f)
        };
        assert_eq!(
            with(10, good[24] ^ 1, false),
            Err(ParseError::Ipv4BadChecksum)
        );
        assert_eq!(with(0, 0x55, false), Err(ParseError::Ipv4BadVersion));
        assert_eq!(with(0, 0x44, false), Err(ParseError::Ipv4BadHeaderLen));
        assert_eq!(with(3, 19, false), Err(ParseError::Ipv4BadTotalLen));
        assert_eq!(with(3, 41, true), Err(ParseError::Ipv4Truncated));
        assert_eq!(parse_frame(&good[..33]), Err(ParseError::Ipv4Truncated));
        assert_eq!(
            parse_frame(&good[..good.len() - 1]),
            Err(ParseError::Ipv4Truncated)
        );
        // Ethernet padding is ignored.
        let mut padded = good.clone();
        padded.resize(80, 0xee);
        assert_eq!(parse_frame(&padded).unwrap(), parse_frame(&good).unwrap());
        // Shorter total length: the tail becomes padding and the TCP header no longer fits.
        assert_eq!(with(3, 36, true), Err(ParseError::TcpTruncated));
    }

    #[test]
    fn ipv4_options() {
        let spec = |options: Vec<u8>| {
            FrameSpec::new(
                IpSpec::V4 {
                    src: v4([1, 1, 1, 1]),
                    dst: v4([2, 2, 2, 2]),
                    ttl: 1,
                    ident: 0,
                    dont_frag: false,
                    options,
                },
                L4Spec::udp(1, 2, b"x"),
            )
        };
        // Router alert (RFC 2113) then NOP.
        let info = parse_frame(&spec(vec![0x94, 4, 0, 0, 1]).build()).unwrap();
        assert_eq!(usize::from(info.l4_offset), 14 + 28);
        assert_eq!(
            parse_frame(&spec(vec![0x94, 1, 0, 0]).build()),
            Err(ParseError::Ipv4BadOptions)
        );
        assert_eq!(
            parse_frame(&spec(vec![1, 1, 0x83, 9]).build()),
            Err(ParseError::Ipv4BadOptions)
        );
        assert!(parse_frame(&spec(vec![0, 0x83, 9, 9]).build()).is_ok());
    }

    #[test]
    fn ipv4_fragments() {
        let spec = FrameSpec::new(
            IpSpec::v4(v4([10, 0, 0, 1]), v4([10, 0, 0, 2])),
            L4Spec::udp(7, 9, &[1; 64]),
        );
        let frags = spec.fragments(32);
        // A first fragment that only carries 8 bytes of a TCP header is tiny.
        let mut tcp = FrameSpec::new(spec.ip.clone(), L4Spec::tcp(1, 2, Flags::ACK)).build();
        let mut ip = ipv4::Packet::new_unchecked(&mut tcp[14..]);
        ip.set_total_len(28);
        ip.set_flags_and_frag_offset(false, true, 0);
        ip.fill_checksum();
        assert_eq!(parse_frame(&tcp[..42]), Err(ParseError::Ipv4TinyFragment));
        // Offset 8 with TCP: RFC 1858 overlap.
        let mut ip = ipv4::Packet::new_unchecked(&mut tcp[14..]);
        ip.set_flags_and_frag_offset(false, false, 8);
        ip.fill_checksum();
        assert_eq!(parse_frame(&tcp[..42]), Err(ParseError::Ipv4BadFragment));
        // Non-final fragment not a multiple of 8.
        let mut f = frags[0].clone();
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.set_total_len(20 + 31);
        ip.fill_checksum();
        assert_eq!(parse_frame(&f), Err(ParseError::Ipv4BadFragment));
        // Past 65535.
        let mut f = frags[1].clone();
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.set_flags_and_frag_offset(false, false, 65528);
        ip.fill_checksum();
        assert_eq!(parse_frame(&f), Err(ParseError::Ipv4BadFragment));
        // First fragment of UDP: the UDP length exceeds what is here, which is fine.
        let first = parse_frame(&frags[0]).unwrap();
        assert_eq!(first.frag, Fragment::First { id: 0, more: true });
        assert_eq!(first.flow, Some(spec.flow_key()));
    }

    #[test]
    fn ipv6_ext_headers() {
        let l4 = L4Spec::tcp(1000, 22, Flags::SYN);
        let chain = vec![ext(0, 6), ext(60, 14), ext(43, 22), ext(51, 10)];
        let frame = v6_spec(l4.clone(), chain.clone()).build();
        let info = parse_frame(&frame).unwrap();
        assert_eq!(info.flow.unwrap().proto, 6);
        assert_eq!(
            (info.flow.unwrap().src_port, info.flow.unwrap().dst_port),
            (1000, 22)
        );
        assert_eq!(usize::from(info.l4_offset), 14 + 40 + 8 + 16 + 24 + 12);

        let hbh_late = v6_spec(l4.clone(), vec![ext(60, 6), ext(0, 6)]).build();
        assert_eq!(parse_frame(&hbh_late), Err(ParseError::Ipv6ExtHeaderOrder));
        let many = v6_spec(l4.clone(), vec![ext(60, 6); 9]).build();
        assert_eq!(parse_frame(&many), Err(ParseError::Ipv6TooManyExtHeaders));
        let eight = v6_spec(l4.clone(), vec![ext(60, 6); 8]).build();
        assert!(parse_frame(&eight).is_ok());

        // Claim a longer Destination Options header than the payload holds.
        let mut cut = v6_spec(
            L4Spec::Raw {
                proto: 59,
                payload: vec![],
            },
            vec![ext(60, 6)],
        )
        .build();
        cut[14 + 40 + 1] = 1;
        assert_eq!(parse_frame(&cut), Err(ParseError::Ipv6ExtHeaderTruncated));

        // ESP is opaque: proto 50, L4 offset at the ESP header, no ports.
        let esp = v6_spec(
            L4Spec::Raw {
                proto: 50,
                payload: vec![0xab; 16],
            },
            vec![ext(60, 6)],
        )
        .build();
        let info = parse_frame(&esp).unwrap();
        assert_eq!(
            (
                info.flow.unwrap().proto,
                info.flow.unwrap().src_port,
                info.l4_offset
            ),
            (50, 0, 14 + 48)
        );

        // No Next Header: nothing after, l4_offset 0.
        let none = v6_spec(
            L4Spec::Raw {
                proto: 59,
                payload: vec![1, 2, 3],
            },
            vec![],
        )
        .build();
        let info = parse_frame(&none).unwrap();
        assert_eq!((info.flow.unwrap().proto, info.l4_offset), (59, 0));

        // Jumbogram: payload length 0 with Hop-by-Hop.
        let mut jumbo = v6_spec(l4, chain).build();
        jumbo[18] = 0;
        jumbo[19] = 0;
        assert_eq!(parse_frame(&jumbo), Err(ParseError::Ipv6BadPayloadLen));
    }

    #[test]
    fn ipv6_header_errors() {
        assert_eq!(parse_frame(&UDP6[..53]), Err(ParseError::Ipv6Truncated));
        assert_eq!(parse_frame(&UDP6[..66]), Err(ParseError::Ipv6Truncated));
        let mut b = UDP6;
        b[14] = 0x40;
        assert_eq!(parse_frame(&b), Err(ParseError::Ipv6BadVersion));
        let mut padded = UDP6.to_vec();
        padded.resize(90, 0);
        assert_eq!(parse_frame(&padded).unwrap(), parse_frame(&UDP6).unwrap());
    }

    #[test]
    fn ipv6_fragments() {
        let spec = v6_spec(L4Spec::udp(53, 5353, &[9; 40]), vec![ext(0, 6)]);
        let frags = spec.fragments(16);
        let first = parse_frame(&frags[0]).unwrap();
        assert!(matches!(first.frag, Fragment::First { more: true, .. }));
        // First fragment whose UDP header is cut: tiny (RFC 7112).
        let mut tiny = frags[0].clone();
        let pl = u16::from_be_bytes([tiny[18], tiny[19]]);
        tiny[19] = (pl - 16) as u8;
        tiny.truncate(tiny.len() - 16);
        let ip = ipv6::Packet::new_checked(&tiny[14..]).unwrap();
        assert_eq!(ip.payload().len(), 8 + 8);
        assert_eq!(parse_frame(&tiny), Err(ParseError::Ipv6TinyFragment));
        // Non-final fragment not a multiple of 8.
        let mut odd = frags[1].clone();
        odd[19] -= 1;
        odd.pop();
        assert_eq!(parse_frame(&odd), Err(ParseError::Ipv6BadFragment));
        // Atomic fragment (offset 0, M clear) is processed as a whole packet (RFC 6946).
        let mut atomic =
            v6_spec(L4Spec::udp(53, 5353, &[9; 4]), vec![ext(0, 6)]).fragments(1500)[0].clone();
        let mut frame = atomic[..14 + 48].to_vec();
        frame[14 + 40] = ip_proto::IPV6_FRAG;
        frame.extend_from_slice(&[ip_proto::UDP, 0, 0, 0, 0, 0, 0, 1]);
        frame.extend_from_slice(&atomic[14 + 48..]);
        let pl = u16::from_be_bytes([frame[18], frame[19]]) + 8;
        frame[18..20].copy_from_slice(&pl.to_be_bytes());
        atomic = frame;
        let info = parse_frame(&atomic).unwrap();
        assert_eq!(info.frag, Fragment::None);
        assert_eq!(info.flow.unwrap().dst_port, 5353);
    }

    #[test]
    fn l4_errors() {
        let good = tcp_v4();
        // Data offset 4 and data offset past the segment.
        let mut f = good.clone();
        f[34 + 12] = 0x40;
        assert_eq!(parse_frame(&f), Err(ParseError::TcpBadDataOffset));
        f[34 + 12] = 0x60;
        assert_eq!(parse_frame(&f), Err(ParseError::TcpBadDataOffset));

        let udp = FrameSpec::new(
            IpSpec::v4(v4([1, 2, 3, 4]), v4([5, 6, 7, 8])),
            L4Spec::udp(1, 2, b"abcd"),
        )
        .build();
        let mut f = udp.clone();
        f[34 + 5] = 7;
        assert_eq!(parse_frame(&f), Err(ParseError::UdpBadLength));
        f[34 + 5] = 13;
        assert_eq!(parse_frame(&f), Err(ParseError::UdpBadLength));
        f[34 + 5] = 8; // shorter than the IP payload: fine
        assert!(parse_frame(&f).is_ok());
        let mut f = udp[..34 + 6].to_vec();
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.set_total_len(26);
        ip.fill_checksum();
        assert_eq!(parse_frame(&f), Err(ParseError::UdpTruncated));

        let icmp = FrameSpec::new(
            IpSpec::v4(v4([1, 2, 3, 4]), v4([5, 6, 7, 8])),
            L4Spec::icmp_echo(0x77, 1),
        )
        .build();
        let info = parse_frame(&icmp).unwrap().flow.unwrap();
        assert_eq!((info.src_port, info.dst_port), (0x77, 0x0800));
        let mut f = icmp[..34 + 4].to_vec();
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.set_total_len(24);
        ip.fill_checksum();
        assert_eq!(parse_frame(&f), Err(ParseError::IcmpTruncated));

        let icmp6 = v6_spec(L4Spec::icmpv6_echo(5, 6), vec![]).build();
        let info = parse_frame(&icmp6).unwrap().flow.unwrap();
        assert_eq!((info.src_port, info.dst_port), (5, 128 << 8));
        let mut f = icmp6[..54 + 7].to_vec();
        f[19] = 7;
        assert_eq!(parse_frame(&f), Err(ParseError::Icmpv6Truncated));
    }

    /// The invariants the module docs promise, for any accepted frame.
    fn check_invariants(frame: &[u8], info: &PacketInfo) {
        assert!(info.l3_end() <= frame.len());
        if info.l4_offset != 0 {
            assert!(
                info.l4_offset > info.l3_offset && usize::from(info.l4_offset) <= info.l3_end()
            );
        }
        let Some(flow) = info.flow else {
            assert_eq!(info.l4_offset, 0);
            return;
        };
        let Some(l4) = info.l4_bytes(frame) else {
            return;
        };
        match (info.frag, flow.family, flow.proto) {
            (Fragment::None, _, ip_proto::TCP) => {
                let t = tcp::Packet::new_checked(l4).unwrap();
                t.options_iter().for_each(drop);
                let _ = t.payload();
            }
            (Fragment::None, _, ip_proto::UDP) => {
                let _ = udp::Packet::new_checked(l4).unwrap().payload();
            }
            (_, Family::V4, ip_proto::ICMP) => {
                icmpv4::Packet::new_checked(l4).unwrap();
            }
            (_, Family::V6, ip_proto::ICMPV6) => {
                icmpv6::Packet::new_checked(l4).unwrap();
            }
            (Fragment::First { .. }, _, ip_proto::TCP) => {
                let t = tcp::Packet::new_unchecked(l4);
                assert!(l4.len() >= t.header_len());
            }
            _ => {}
        }
        if flow.family == Family::V6 {
            let ip = ipv6::Packet::new_checked(&frame[usize::from(info.l3_offset)..]).unwrap();
            ip.ext_headers().for_each(drop);
        }
    }

    fn check(frame: &[u8]) {
        if let Ok(info) = parse_frame(frame) {
            check_invariants(frame, &info);
        }
    }

    #[test]
    fn every_truncation_of_fixtures() {
        for f in [&TCP_SYN_VLAN[..], &UDP6[..]] {
            for n in 0..f.len() {
                assert!(parse_frame(&f[..n]).is_err(), "prefix {n} accepted");
            }
        }
    }

    #[test]
    fn checksum_helpers_on_parsed_frames() {
        let info = parse_frame(&TCP_SYN_VLAN).unwrap();
        let ip = ipv4::Packet::new_checked(&TCP_SYN_VLAN[18..]).unwrap();
        let old = ip.src_addr().octets();
        let new = [10, 9, 8, 7];
        let tcp = tcp::Packet::new_checked(info.l4_bytes(&TCP_SYN_VLAN).unwrap()).unwrap();
        let patched = checksum::update_addr(tcp.checksum(), &old, &new);
        let mut copy = TCP_SYN_VLAN;
        copy[30..34].copy_from_slice(&new);
        let mut t = tcp::Packet::new_unchecked(&mut copy[38..]);
        t.fill_checksum(&PseudoHeader::V4 {
            src: new.into(),
            dst: ip.dst_addr(),
        });
        assert_eq!(patched, t.checksum());
    }

    fn ethertype_frame() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![
                Just(0x0800u16),
                Just(0x86dd),
                Just(0x0806),
                Just(0x8100),
                Just(0x88a8),
                any::<u16>()
            ],
            proptest::collection::vec(any::<u8>(), 0..160),
        )
            .prop_map(|(et, body)| {
                let mut f = vec![0u8; 12];
                f.extend_from_slice(&et.to_be_bytes());
                if et == 0x0800 && !body.is_empty() {
                    // Mostly plausible IPv4 so the parser gets past the version check.
                    let mut b = body;
                    b[0] = 0x45;
                    f.extend_from_slice(&b);
                } else {
                    f.extend_from_slice(&body);
                }
                f
            })
    }

    /// The fast parser agrees with the full one, and whatever the straight line accepts the
    /// full parser accepts identically.
    fn same(frame: &[u8]) {
        let full = parse_frame(frame);
        assert_eq!(parse_frame_fast(frame), full, "frame {frame:02x?}");
        if let Some(info) = parse_common(frame) {
            assert_eq!(Ok(info), full, "frame {frame:02x?}");
        }
        assert_eq!(
            classify_common(frame),
            parse_common(frame).map(|i| i.l3),
            "frame {frame:02x?}"
        );
        // The prefetch pass's form, over a slot that held another frame's result.
        let mut slot = parse_common(&tcp_v4());
        parse_common_into(frame, &mut slot);
        assert_eq!(slot, parse_common(frame), "frame {frame:02x?}");
    }

    /// Recomputes the IPv4 header checksum wherever an untagged or 802.1Q-tagged frame has a
    /// plausible IPv4 header, so mutations get past the checksum into the later checks.
    fn refill_any_v4(frame: &mut [u8]) {
        let at = match frame.get(12..14) {
            Some([0x81, 0x00]) => 18,
            Some(_) => 14,
            None => return,
        };
        let Some(&first) = frame.get(at) else {
            return;
        };
        let hl = usize::from(first & 0x0f) * 4;
        if first >> 4 == 4 && frame.len() >= at + hl.max(ipv4::HEADER_LEN) {
            ipv4::Packet::new_unchecked(&mut frame[at..]).fill_checksum();
        }
    }

    /// Untagged IPv4 against the full parser: the total length, the UDP length and the TCP
    /// data offset over and around their bounds, the fragment bits, version, IHL and
    /// protocol, with the checksum refilled and not, with and without bytes past the
    /// datagram, and every truncation.
    #[test]
    fn untagged_ipv4_around_the_bounds() {
        let v4_spec = |l4| FrameSpec::new(IpSpec::v4(v4([10, 0, 0, 1]), v4([10, 0, 0, 2])), l4);
        let frames = [
            v4_spec(L4Spec::udp(1, 2, b"abcdefgh")).build(),
            v4_spec(L4Spec::udp(1, 2, b"")).build(),
            tcp_v4(),
            v4_spec(L4Spec::icmp_echo(7, 1)).build(),
        ];
        let check = |f: &mut Vec<u8>| {
            same(f);
            refill_any_v4(f);
            same(f);
        };
        for base in frames {
            for pad in [0usize, 1, 7] {
                let mut f = base.clone();
                f.resize(base.len() + pad, 0);
                let l3 = f.len() - ethernet::HEADER_LEN;
                for total in 0..=l3 + 2 {
                    let mut g = f.clone();
                    g[16..18].copy_from_slice(&(total as u16).to_be_bytes());
                    check(&mut g);
                    for l4 in 0..=l3 + 2 {
                        if let Some(b) = g.get_mut(38..40) {
                            b.copy_from_slice(&(l4 as u16).to_be_bytes());
                        }
                        check(&mut g.clone());
                    }
                    for off in 0..16u8 {
                        if let Some(b) = g.get_mut(46) {
                            *b = off << 4;
                        }
                        check(&mut g.clone());
                    }
                }
                for (at, values) in [
                    (14usize, &[0x45u8, 0x44, 0x46, 0x55, 0x65][..]),
                    (20, &[0x00, 0x40, 0x20, 0x01, 0x80, 0x60]),
                    (21, &[0x00, 0x01, 0x08]),
                    (23, &[1, 6, 17, 47, 0]),
                ] {
                    for &v in values {
                        let mut g = f.clone();
                        g[at] = v;
                        check(&mut g);
                    }
                }
                for cut in 0..f.len() {
                    check(&mut f[..cut].to_vec());
                }
            }
        }
    }

    #[test]
    fn fast_path_takes_the_common_frames() {
        let udp = FrameSpec::new(
            IpSpec::v4(v4([10, 0, 0, 1]), v4([10, 0, 0, 2])),
            L4Spec::udp(1, 2, b"abcd"),
        )
        .build();
        let icmp = FrameSpec::new(
            IpSpec::v4(v4([1, 2, 3, 4]), v4([5, 6, 7, 8])),
            L4Spec::icmp_echo(0x77, 1),
        )
        .build();
        let gre = FrameSpec::new(
            IpSpec::v4(v4([1, 2, 3, 4]), v4([5, 6, 7, 8])),
            L4Spec::Raw {
                proto: 47,
                payload: vec![1, 2, 3, 4],
            },
        )
        .build();
        let tcp6 = v6_spec(L4Spec::tcp(1000, 22, Flags::ACK), vec![]).build();
        let icmp6 = v6_spec(L4Spec::icmpv6_echo(5, 6), vec![]).build();
        let mut other = vec![0u8; 60];
        other[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
        let zero = [0u8; 64];
        let mut padded = tcp_v4();
        padded.resize(80, 0);
        for f in [
            &TCP_SYN_VLAN[..],
            &UDP6[..],
            &tcp_v4(),
            &padded,
            &udp,
            &icmp,
            &gre,
            &tcp6,
            &icmp6,
            &other,
            &zero,
        ] {
            let info = parse_common(f).expect("common frame takes the fast path");
            assert_eq!(Ok(info), parse_frame(f));
        }
        // What the straight line leaves to the full parser.
        let ext6 = v6_spec(L4Spec::udp(1, 2, b"x"), vec![ext(60, 6)]).build();
        let frag = FrameSpec::new(
            IpSpec::v4(v4([10, 0, 0, 1]), v4([10, 0, 0, 2])),
            L4Spec::udp(1, 2, &[7; 40]),
        )
        .fragments(16);
        let mut bad_sum = tcp_v4();
        bad_sum[24] ^= 1;
        let mut qinq = syn_spec();
        qinq.vlans[1] = Some(VlanTag::new(EtherType::VLAN, 0, false, 7));
        qinq.vlans[0] = Some(VlanTag::new(EtherType::QINQ, 0, false, 8));
        let arp = crate::wire::builder::arp_request(
            crate::wire::MacAddr([2, 0, 0, 0, 0, 9]),
            v4([10, 0, 0, 9]),
            v4([10, 0, 0, 1]),
        );
        for f in [&ext6, &frag[0], &frag[1], &bad_sum, &qinq.build(), &arp] {
            assert_eq!(parse_common(f), None);
            same(f);
        }
        assert_eq!(parse_frame_fast(&bad_sum), Err(ParseError::Ipv4BadChecksum));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(f in proptest::collection::vec(any::<u8>(), 0..200)) {
            check(&f);
        }

        #[test]
        fn arbitrary_l3_never_panics(f in ethertype_frame()) {
            check(&f);
        }

        #[test]
        fn truncations_and_flips_never_panic(
            spec in arb_frame_spec(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let frame = spec.build();
            for n in 0..=frame.len() {
                check(&frame[..n]);
            }
            let mut m = frame.clone();
            for (at, x) in flips {
                let i = at.index(m.len());
                m[i] ^= x;
            }
            check(&m);
            for f in spec.fragments(24) {
                check(&f);
            }
        }

        #[test]
        fn fast_matches_full_on_arbitrary_bytes(f in proptest::collection::vec(any::<u8>(), 0..200)) {
            same(&f);
        }

        #[test]
        fn fast_matches_full_on_arbitrary_l3(f in ethertype_frame()) {
            same(&f);
            let mut g = f.clone();
            refill_any_v4(&mut g);
            same(&g);
        }

        #[test]
        fn fast_matches_full_on_builder_frames(
            spec in arb_frame_spec(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            header_flips in proptest::collection::vec((0usize..80, any::<u8>()), 1..3),
            pad in 0usize..24,
        ) {
            let frame = spec.build();
            same(&frame);
            let mut padded = frame.clone();
            padded.resize(frame.len() + pad, 0);
            same(&padded);
            for n in 0..=frame.len() {
                same(&frame[..n]);
            }
            let mut m = frame.clone();
            for (at, x) in flips {
                let i = at.index(m.len());
                m[i] ^= x;
            }
            same(&m);
            // Header bytes changed and the IPv4 checksum made good again: the length, version,
            // fragment and L4 checks decide.
            let mut h = frame.clone();
            for (at, x) in header_flips {
                if let Some(b) = h.get_mut(at) {
                    *b ^= x;
                }
            }
            same(&h);
            refill_any_v4(&mut h);
            same(&h);
            for f in spec.fragments(24) {
                same(&f);
            }
        }

        #[test]
        fn incremental_nat_rewrite_matches_recompute(
            spec in arb_frame_spec().prop_filter("IPv4 TCP", |s| {
                matches!(s.ip, IpSpec::V4 { .. }) && matches!(s.l4, L4Spec::Tcp { .. })
            }),
            new_src in any::<[u8; 4]>(), new_port in any::<u16>(),
        ) {
            let mut frame = spec.build();
            let info = parse_frame(&frame).unwrap();
            let l3 = usize::from(info.l3_offset);
            let l4 = usize::from(info.l4_offset);
            let ip = ipv4::Packet::new_checked(&frame[l3..]).unwrap();
            let old_src = ip.src_addr();
            let ip_ck = checksum::update_addr(ip.checksum(), &old_src.octets(), &new_src);
            let tcp = tcp::Packet::new_checked(&frame[l4..info.l3_end()]).unwrap();
            let mut l4_ck = checksum::update_addr(tcp.checksum(), &old_src.octets(), &new_src);
            l4_ck = checksum::update_u16(l4_ck, tcp.src_port(), new_port);

            let mut ip = ipv4::Packet::new_unchecked(&mut frame[l3..]);
            ip.set_src_addr(new_src.into());
            ip.set_checksum(ip_ck);
            prop_assert!(ip.verify_checksum());
            let dst = ip.dst_addr();
            let end = info.l3_end();
            let mut tcp = tcp::Packet::new_unchecked(&mut frame[l4..end]);
            tcp.set_src_port(new_port);
            tcp.set_checksum(l4_ck);
            let ph = PseudoHeader::V4 { src: new_src.into(), dst };
            prop_assert!(tcp.verify_checksum(&ph));
            tcp.fill_checksum(&ph);
            prop_assert_eq!(tcp.checksum(), l4_ck);
        }
    }
}
