//! FAST PATH: no allocation, lock, syscall or log.
//!
//! [`ParseError`]: why a frame was not accepted, one flat `Copy` variant per drop reason.
//!
//! Invariants: variants are numbered densely from 0 in declaration order, so
//! `ParseError::ALL[e.index()] == e`, and `index()` can index a `[u64; ParseError::COUNT]`
//! counter array. `name()` is a unique snake_case label for metrics. New variants go at the end
//! so existing indices keep their meaning.

macro_rules! parse_errors {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// A named reason for rejecting a frame; see the module docs for the numbering invariant.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum ParseError {
            $($(#[$doc])* $variant,)+
        }

        impl ParseError {
            /// Every variant, in `index()` order.
            pub const ALL: [ParseError; Self::COUNT] = [$(ParseError::$variant,)+];
            /// Number of variants.
            pub const COUNT: usize = [$(ParseError::$variant,)+].len();

            /// Dense index in `0..COUNT`, for counter arrays.
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }

            /// Stable snake_case name, for metrics and logs.
            #[inline]
            pub const fn name(self) -> &'static str {
                match self {
                    $(ParseError::$variant => $name,)+
                }
            }
        }
    };
}

parse_errors! {
    /// Frame shorter than the 14-byte Ethernet header.
    EthernetTruncated => "ethernet_truncated",
    /// A VLAN TPID not followed by its 4-byte tag.
    VlanTruncated => "vlan_truncated",
    /// More than two stacked VLAN tags.
    VlanTooManyTags => "vlan_too_many_tags",
    /// ARP shorter than its fixed header or than 28 bytes for Ethernet/IPv4.
    ArpTruncated => "arp_truncated",
    /// ARP that is not Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4).
    ArpBadFormat => "arp_bad_format",
    /// Fewer bytes than the IPv4 header or its total length claims.
    Ipv4Truncated => "ipv4_truncated",
    /// IPv4 ethertype but version field not 4.
    Ipv4BadVersion => "ipv4_bad_version",
    /// IHL below 5.
    Ipv4BadHeaderLen => "ipv4_bad_header_len",
    /// Total length below the header length.
    Ipv4BadTotalLen => "ipv4_bad_total_len",
    /// Header checksum does not verify.
    Ipv4BadChecksum => "ipv4_bad_checksum",
    /// Options not structurally valid (TLV length < 2 or past the header).
    Ipv4BadOptions => "ipv4_bad_options",
    /// First fragment too short to carry the whole L4 header.
    Ipv4TinyFragment => "ipv4_tiny_fragment",
    /// Fragment past 65535 bytes, non-final fragment not a multiple of 8, or TCP at offset 8
    /// (RFC 1858 §3.2 overlap attack).
    Ipv4BadFragment => "ipv4_bad_fragment",
    /// Fewer bytes than the IPv6 header or 40 + payload length.
    Ipv6Truncated => "ipv6_truncated",
    /// IPv6 ethertype but version field not 6.
    Ipv6BadVersion => "ipv6_bad_version",
    /// Zero payload length with Hop-by-Hop (jumbogram, unsupported), or 40 + payload length
    /// beyond 65535 bytes.
    Ipv6BadPayloadLen => "ipv6_bad_payload_len",
    /// An extension header runs past the IPv6 payload.
    Ipv6ExtHeaderTruncated => "ipv6_ext_header_truncated",
    /// Hop-by-Hop not directly after the fixed header, or a second Fragment header.
    Ipv6ExtHeaderOrder => "ipv6_ext_header_order",
    /// More extension headers than the walk bound.
    Ipv6TooManyExtHeaders => "ipv6_too_many_ext_headers",
    /// First fragment without the whole header chain and L4 header (RFC 7112).
    Ipv6TinyFragment => "ipv6_tiny_fragment",
    /// Fragment past 65535 bytes, or non-final fragment not a multiple of 8 (RFC 8200 §4.5).
    Ipv6BadFragment => "ipv6_bad_fragment",
    /// Fewer than 20 bytes of TCP header.
    TcpTruncated => "tcp_truncated",
    /// Data offset below 5 or past the segment.
    TcpBadDataOffset => "tcp_bad_data_offset",
    /// TCP option with a bad length (reported by the options iterator only).
    TcpBadOptions => "tcp_bad_options",
    /// Fewer than 8 bytes of UDP header.
    UdpTruncated => "udp_truncated",
    /// UDP length below 8 or past the IP payload.
    UdpBadLength => "udp_bad_length",
    /// Fewer than 8 bytes of ICMP header.
    IcmpTruncated => "icmp_truncated",
    /// Fewer than 8 bytes of ICMPv6 header.
    Icmpv6Truncated => "icmpv6_truncated",
    /// TCP checksum does not verify (checked by `tcp::Repr::parse`, not by `parse_frame`).
    TcpBadChecksum => "tcp_bad_checksum",
    /// UDP checksum does not verify, or is zero over IPv6 (RFC 8200 §8.1).
    UdpBadChecksum => "udp_bad_checksum",
    /// ICMPv4 checksum does not verify.
    IcmpBadChecksum => "icmp_bad_checksum",
    /// ICMPv6 checksum does not verify.
    Icmpv6BadChecksum => "icmpv6_bad_checksum",
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn indices_are_dense_and_names_unique_snake_case() {
        let mut names = HashSet::new();
        for (i, e) in ParseError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert!(names.insert(e.name()), "duplicate name {}", e.name());
            assert!(e
                .name()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert_eq!(e.to_string(), e.name());
        }
        assert_eq!(ParseError::COUNT, names.len());
        assert_eq!(ParseError::Ipv4BadChecksum.name(), "ipv4_bad_checksum");
        assert_eq!(ParseError::EthernetTruncated.index(), 0);
    }
}
