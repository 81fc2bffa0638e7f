//! Zero-copy views over packet bytes, and the whole-frame parser the worker runs per packet.
//!
//! Every protocol module follows one shape:
//!
//! - a view (`Packet<T: AsRef<[u8]>>`, `Frame<T>` for Ethernet) over a borrowed or owned buffer,
//!   with field offsets in a private `mod field`;
//! - `new_unchecked` wraps any buffer; `new_checked` validates the buffer once against the header's
//!   own length fields, and after it succeeds **no accessor of the view panics**;
//! - getters live in `impl<T: AsRef<[u8]>>`, setters in `impl<T: AsRef<[u8]> + AsMut<[u8]>>`;
//! - fields are read by byte offset with `from_be_bytes`; no struct is ever cast over a buffer;
//! - a `Repr` value type parses from a checked view and emits into a buffer of `buffer_len()`
//!   bytes (slow path: tests, the builder, the control plane).
//!
//! Every failure is one [`ParseError`] variant, a named drop reason with a stable
//! [`ParseError::index`] into the per-worker drop counters.
//!
//! [`parse_frame`] is the per-packet entry point; [`builder`] synthesises valid frames for tests,
//! demos and the packet generator.

pub mod arp;
pub mod builder;
pub mod checksum;
mod error;
pub mod ethernet;
pub mod flow;
pub mod icmp;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod parse;
pub mod tcp;
pub mod udp;

pub use error::ParseError;
pub use ethernet::{EtherType, MacAddr, VlanTag};
pub use flow::{Family, FlowKey, IpAddr128};
pub use parse::{parse_frame, parse_frame_fast, Fragment, PacketInfo, RxCsum, L3};

/// A header field: a byte range relative to the start of its header.
pub type Field = core::ops::Range<usize>;
/// The rest of a header (options or payload) from a byte offset.
pub type Rest = core::ops::RangeFrom<usize>;

/// IP protocol numbers (IPv4 `protocol`, IPv6 `next_header`), from the IANA
/// "Assigned Internet Protocol Numbers" registry.
pub mod ip_proto {
    /// IPv6 Hop-by-Hop Options (RFC 8200 §4.3).
    pub const HOPOPT: u8 = 0;
    /// ICMP for IPv4 (RFC 792).
    pub const ICMP: u8 = 1;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// IPv6 Routing header (RFC 8200 §4.4).
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment header (RFC 8200 §4.5).
    pub const IPV6_FRAG: u8 = 44;
    /// Encapsulating Security Payload (RFC 4303).
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302).
    pub const AH: u8 = 51;
    /// ICMP for IPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header (RFC 8200 §4.7).
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 Destination Options (RFC 8200 §4.6).
    pub const IPV6_OPTS: u8 = 60;
}
