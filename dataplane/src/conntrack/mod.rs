//! FAST PATH: no allocation, lock, syscall or log.
//!
//! Connection tracking with netfilter's meaning: one [`Conntrack`] table per worker, sized at
//! start-up, answering for each IP packet its state (NEW, ESTABLISHED, RELATED, INVALID;
//! UNTRACKED for ICMPv6 neighbour discovery, and for NOTRACK as the caller decides), its
//! direction, and the entry it belongs to.
//!
//! # Use
//!
//! Per packet, in order: [`Conntrack::track`]; judge the packet by the rule set with
//! [`Tracked::state`]; if the rule set accepts it, [`Conntrack::confirm`]. A NEW packet's would-be
//! entry waits in one of the table's [`PENDING`] scratch slots, named by its [`Handle::New`],
//! and nothing is in the table until `confirm` (Linux creates the entry with the first packet
//! and confirms it when the packet leaves; a dropped NEW packet leaves no entry; its scratch
//! slot is reused). Between bursts the worker calls [`Conntrack::expire`]. Fragments wait in
//! [`frag::Reassembly`] until their datagram is whole; then the first is tracked and the
//! others take its verdict from [`frag::Fragments`].
//!
//! A worker first tries [`Conntrack::track_established`] with what its burst's prefetch pass
//! learnt of the packet ([`Hint`]): the commonest packet (a TCP ACK or a UDP datagram of an
//! ESTABLISHED connection) tracked on a short path that makes the same updates `track` makes,
//! or nothing done and `None`, for `track`.
//!
//! Packets of one flow must be tracked and confirmed in arrival order: a second packet of a
//! new flow tracked before the first is confirmed is judged as another first packet (and its
//! `confirm` then finds the entry the first created and joins it, counted as a `clash`).
//!
//! # Invariants
//!
//! - No allocation after [`Conntrack::new`]: entries live in a slab of `capacity` slots, the
//!   hash index ([`index`]) is sized for one reference per slot at half load (two with
//!   [`Config::nat`]), the timer wheel ([`timer`]) links entries intrusively.
//! - The index tag of a tuple is the tag of its reply tuple ([`Conntrack::tag`] hashes the
//!   two endpoints in a canonical order), so a live entry is in the index once, under its
//!   original tuple, and a lookup finds both directions there, telling them apart by
//!   comparing the tuple. An entry with a NAT binding, whose reply tuple is not the inverse of
//!   its original one, is in the index a second time under the reply tuple.
//! - A live entry is armed in the wheel exactly once, and keeps its wheel slot. A free slot is
//!   in neither.
//! - An entry whose deadline has passed is dead even before the wheel reaps it: lookups treat
//!   it as absent and remove it.
//! - The table never holds more than `capacity` entries. A confirm that finds it full evicts an
//!   unassured (or expired) entry among the few next to the new one's hash position, as Linux's
//!   `early_drop` does, or fails with [`TableFull`] (counted as `ct_full`).
//! - Handles ([`EntryId`]) are valid for the packet at hand: any later `track`, `confirm`,
//!   `expire` or `flush` may free the entry. A [`Pending`] handle can be confirmed until
//!   [`PENDING`] more NEW connections have been tracked (then `confirm` refuses it).
//!
//! # Differences from Linux (deliberate)
//!
//! - Early drop happens when a NEW packet is confirmed (after the rule set accepted it), not
//!   when it is first seen, so packets the rules drop never evict anything.
//! - No helpers and no expectations: RELATED comes from ICMP errors only.
//! - SCTP, DCCP, GRE and UDP-Lite are tracked by the generic tracker (address pair and
//!   protocol, 600 s), not by their own state machines.
//! - ICMPv6 node information queries (139) start entries, but their replies (140) are not
//!   mapped back to them (Linux maps them).
//! - Checksums of first fragments are not verified here (they cover the whole datagram): the
//!   reassembly ([`frag::Reassembly`]) sums every fragment, and a whole datagram whose sum is
//!   wrong is INVALID ([`Conntrack::bad_checksum`]) before it reaches the tracker. A TCP
//!   segment's sequence space is the whole datagram's ([`Conntrack::track_whole`]); a first
//!   fragment tracked without it (outside a reassembly) makes its sender liberal.

mod counted;
pub mod filter;
pub mod frag;
pub(crate) mod icmp;
mod index;
mod marks;
pub mod tcp;
mod timer;
mod view;
pub mod zones;

#[cfg(test)]
mod tests;

use crate::classify::ct;
use crate::dpdk::{HugePages, PageUse, TableMemory};
use crate::wire::checksum;
use crate::wire::{
    icmpv4, icmpv6, ip_proto, udp, Family, FlowKey, Fragment, IpAddr128, PacketInfo, RxCsum,
};
use index::Index;
use tcp::{Segment, Status, TcpConfig, TcpInvalid, TcpState, TcpTrack};
use timer::{Wheel, UNARMED};

const SEC: u64 = 1_000_000_000;

/// Direction of a packet relative to its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Dir {
    /// The direction of the packet that created the entry.
    Orig = 0,
    Reply = 1,
}

impl Dir {
    #[inline]
    pub const fn other(self) -> Dir {
        match self {
            Dir::Orig => Dir::Reply,
            Dir::Reply => Dir::Orig,
        }
    }
}

/// The conntrack state of a packet, as `-m conntrack --ctstate` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
}

impl CtState {
    /// The bit [`crate::classify::FlatRule::ct_states`] tests.
    #[inline]
    pub const fn bit(self) -> u8 {
        match self {
            CtState::New => ct::NEW,
            CtState::Established => ct::ESTABLISHED,
            CtState::Related => ct::RELATED,
            CtState::Invalid => ct::INVALID,
            CtState::Untracked => ct::UNTRACKED,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            CtState::New => "NEW",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
            CtState::Invalid => "INVALID",
            CtState::Untracked => "UNTRACKED",
        }
    }
}

/// Why a packet is INVALID; indexes [`Stats::invalid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invalid {
    /// Not IPv4/IPv6.
    NotIp,
    /// A non-first fragment: ask [`frag::Fragments`].
    LaterFragment,
    /// The L4 header is missing or inconsistent.
    Truncated,
    /// Bad L4 checksum (with the checksum policy on).
    BadChecksum,
    /// A TCP flag combination Linux refuses.
    TcpFlags,
    /// A TCP segment that cannot start a connection.
    TcpNotNew,
    TcpState,
    TcpSeqOverWindow,
    TcpAckOverUpperBound,
    TcpRst,
    /// ICMPv4 type above 18.
    IcmpType,
    /// An ICMP message that cannot start a connection (not a request).
    IcmpNotNew,
    /// An ICMP error whose quoted packet cannot be read.
    IcmpQuote,
    /// An ICMP error quoting no known connection.
    IcmpNoMatch,
    /// An ICMP error sent to someone other than the quoted packet's sender.
    IcmpWrongDestination,
}

impl Invalid {
    pub const COUNT: usize = 15;

    /// Every reason, in index order.
    pub const ALL: [Invalid; Invalid::COUNT] = [
        Invalid::NotIp,
        Invalid::LaterFragment,
        Invalid::Truncated,
        Invalid::BadChecksum,
        Invalid::TcpFlags,
        Invalid::TcpNotNew,
        Invalid::TcpState,
        Invalid::TcpSeqOverWindow,
        Invalid::TcpAckOverUpperBound,
        Invalid::TcpRst,
        Invalid::IcmpType,
        Invalid::IcmpNotNew,
        Invalid::IcmpQuote,
        Invalid::IcmpNoMatch,
        Invalid::IcmpWrongDestination,
    ];

    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            Invalid::NotIp => "not_ip",
            Invalid::LaterFragment => "later_fragment",
            Invalid::Truncated => "truncated",
            Invalid::BadChecksum => "bad_checksum",
            Invalid::TcpFlags => "tcp_flags",
            Invalid::TcpNotNew => "tcp_not_new",
            Invalid::TcpState => "tcp_state",
            Invalid::TcpSeqOverWindow => "tcp_seq_over_window",
            Invalid::TcpAckOverUpperBound => "tcp_ack_over_upper_bound",
            Invalid::TcpRst => "tcp_rst",
            Invalid::IcmpType => "icmp_type",
            Invalid::IcmpNotNew => "icmp_not_new",
            Invalid::IcmpQuote => "icmp_quote",
            Invalid::IcmpNoMatch => "icmp_no_match",
            Invalid::IcmpWrongDestination => "icmp_wrong_destination",
        }
    }

    const fn from_tcp(t: TcpInvalid) -> Invalid {
        match t {
            TcpInvalid::State => Invalid::TcpState,
            TcpInvalid::SeqOverWindow => Invalid::TcpSeqOverWindow,
            TcpInvalid::AckOverUpperBound => Invalid::TcpAckOverUpperBound,
            TcpInvalid::Rst => Invalid::TcpRst,
        }
    }
}

/// Marks a cached verdict tag as present (the tag itself is below it).
pub const VERDICT_VALID: u32 = 1 << 31;

/// A live entry, by slab index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId(u32);

impl EntryId {
    #[inline]
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// What a burst's prefetch pass learnt of a packet's tuple, for
/// [`Conntrack::track_established`]: its index tag, and the first reference the index held
/// under that tag when the pass looked. The reference is a guess tried before probing: the
/// lookup takes it only if its entry is live and holds the tuple (a live entry is in the
/// index, and no two live entries hold one tuple), and probes the index otherwise, so a
/// stale guess (an entry freed, moved or reused since) costs a probe, never a wrong answer.
/// The tag does not go stale (it depends on the tuple and the table's seeds alone) and is
/// trusted as the tuple's ([`Hint::known_tag`]): a hint belongs to its own packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hint {
    tag: u32,
    first: u32,
}

/// [`Hint::first`] when the prefetch pass found nothing under the tag: the tuple was in no
/// connection then (a NEW packet, or INVALID), and the lean path leaves it at once (an
/// insertion since, by an earlier packet of the burst, is the general path's to find).
const ABSENT: u32 = u32::MAX;
/// [`Hint::first`] without a guess. Even, as an original tuple's reference is, but beyond
/// any table (capacities stop at 2^29 slots), so its entry is never found and the lookup
/// probes.
const NO_GUESS: u32 = u32::MAX - 1;
/// [`Hint::first`] of a hint made without the tuple ([`Hint::default`]): its tag is not the
/// tuple's. Odd, so the lookup never takes it as a guess, and its tag is never trusted
/// ([`Hint::known_tag`]).
const NO_TAG: u32 = u32::MAX - 2;

/// An index reference is an entry's slot shifted left by two, with these flags: the
/// reference is the entry's NAT reply tuple's ([`REF_REPLY`], always with [`REF_NAT`]), or
/// the entry has a NAT binding ([`REF_NAT`]). The prefetch pass reads the flag to load the
/// reply-tuple slot only for a translated connection: a table with NAT room would otherwise
/// fetch an unused slot (two lines, most of them) for every packet of an untranslated one.
/// Capacities stop at 2^29 slots, so a reference stays below 2^31, under the markers above.
const REF_REPLY: u32 = 1;
/// See [`REF_REPLY`].
const REF_NAT: u32 = 2;
/// How far a reference's slot is shifted.
const REF_SHIFT: u32 = 2;

impl Hint {
    /// No guess: the lookup probes the index under `tag`.
    #[inline(always)]
    const fn probe(tag: u32) -> Hint {
        Hint {
            tag,
            first: NO_GUESS,
        }
    }
}

impl Hint {
    /// The tuple's index tag, when the hint was made from the tuple (by the prefetch pass or
    /// [`Conntrack::hint_of`]): [`Conntrack::track_tagged`] then does not hash it again.
    #[inline(always)]
    pub fn known_tag(&self) -> Option<u32> {
        (self.first != NO_TAG).then_some(self.tag)
    }
}

impl Default for Hint {
    /// A placeholder for a frame the prefetch pass did not see: no guess, no tag.
    fn default() -> Hint {
        Hint {
            tag: 0,
            first: NO_TAG,
        }
    }
}

/// A connection not yet in the table: what [`Conntrack::confirm`] inserts. Its would-be entry
/// waits in the table's scratch slots ([`PENDING`] of them, reused in turn), so a handle is a
/// number, not a copy of the entry: [`Tracked`] stays a few bytes wherever it is passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending(u32);

/// NEW connections whose would-be entries the table keeps at once: a NEW handle can be
/// confirmed until this many other NEW connections have been tracked after it (a caller
/// judges each packet before it tracks the next; the oldest handle beyond that is refused as
/// a full table would refuse it).
pub const PENDING: usize = 4;

/// The entry a packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handle {
    /// INVALID, UNTRACKED, or the entry died with this packet (a RST answering the first one).
    None,
    Entry(EntryId),
    /// A NEW connection: stored by [`Conntrack::confirm`] if the packet is accepted.
    New(Pending),
}

/// What [`Conntrack::track`] says about one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub state: CtState,
    pub dir: Dir,
    pub handle: Handle,
    /// Set when `state` is INVALID.
    pub invalid: Option<Invalid>,
}

impl Tracked {
    #[inline]
    const fn invalid(why: Invalid) -> Tracked {
        Tracked {
            state: CtState::Invalid,
            dir: Dir::Orig,
            handle: Handle::None,
            invalid: Some(why),
        }
    }

    #[inline]
    const fn untracked() -> Tracked {
        Tracked {
            state: CtState::Untracked,
            dir: Dir::Orig,
            handle: Handle::None,
            invalid: None,
        }
    }

    /// The entry, when it is in the table.
    #[inline]
    pub fn entry(&self) -> Option<EntryId> {
        match self.handle {
            Handle::Entry(id) => Some(id),
            _ => None,
        }
    }
}

/// The table is full and no entry could be evicted: drop the packet (`ct_full`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("conntrack table full")]
pub struct TableFull;

/// Settings, with Linux's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most entries (one per connection, both directions).
    pub capacity: u32,
    /// Seed of the index hash (choose it at random per run).
    pub hash_seed: u64,
    /// Bad L4 checksums are INVALID (`nf_conntrack_checksum`, default on).
    pub checksum: bool,
    pub tcp: TcpConfig,
    /// UDP before a reply is seen, and in the first 2 s after (`nf_conntrack_udp_timeout`).
    pub udp_ns: u64,
    /// UDP with traffic both ways that lived past `udp_stream_after_ns`
    /// (`nf_conntrack_udp_timeout_stream`).
    pub udp_stream_ns: u64,
    pub udp_stream_after_ns: u64,
    /// `nf_conntrack_icmp_timeout`.
    pub icmp_ns: u64,
    /// `nf_conntrack_icmpv6_timeout`.
    pub icmpv6_ns: u64,
    /// `nf_conntrack_generic_timeout`.
    pub generic_ns: u64,
    /// Index buckets early drop looks at from the new entry's position.
    pub early_drop_scan: u32,
    /// Entries may carry a reply tuple other than the inverse of their original one (NAT
    /// bindings): reserves a side table of one tuple per entry (38 bytes each) and room in
    /// the index for a second reference per entry (16 bytes each).
    pub nat: bool,
    /// Which pages the table's large arrays may take ([`TableMemory`]).
    pub hugepages: HugePages,
}

impl Config {
    /// Linux's defaults for a table of `capacity` entries.
    pub fn new(capacity: u32) -> Config {
        Config {
            capacity,
            hash_seed: 0x5eed_cafe_f00d_d00d,
            checksum: true,
            tcp: TcpConfig::default(),
            udp_ns: 30 * SEC,
            udp_stream_ns: 120 * SEC,
            udp_stream_after_ns: 2 * SEC,
            icmp_ns: 30 * SEC,
            icmpv6_ns: 30 * SEC,
            generic_ns: 600 * SEC,
            early_drop_scan: 16,
            nat: false,
            hugepages: HugePages::Transparent,
        }
    }
}

/// Counters of one table (single writer: the owning worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries inserted by `confirm`.
    pub created: u64,
    /// Live entries with a NAT binding (a gauge: NAT's port use).
    pub nat_live: u64,
    /// `confirm` found the flow already inserted (a second first packet).
    pub clash: u64,
    /// Unassured entries evicted to make room.
    pub early_drop: u64,
    /// `confirm` failed: table full, nothing to evict.
    pub ct_full: u64,
    /// Entries removed at the end of their timeout.
    pub expired: u64,
    /// INVALID packets by [`Invalid::index`].
    pub invalid: [u64; Invalid::COUNT],
}

mod status {
    pub const LIVE: u8 = 0x01;
    pub const SEEN_REPLY: u8 = 0x02;
    pub const ASSURED: u8 = 0x04;
    pub const VERDICT: u8 = 0x08;
    /// The reply tuple is not `key.reply()` (a NAT binding): it is in the `replies` side table.
    pub const NAT: u8 = 0x10;
    /// A counter carried into the `wide` side table (its high parts are not all zero).
    pub const WIDE: u8 = 0x20;
    /// The entry's zone is not the default one: it is in the `zones` side array
    /// ([`super::zones`]). The lean path's guess wants it clear.
    pub const ZONED: u8 = 0x40;
}

/// Where an entry keeps its status bits and its wheel slot: in the last word of its tuple,
/// above the bits a tuple uses (ports, protocol, family: 44 bits), which [`Words::matches`]
/// masks off.
const KEY_BITS: u64 = (1 << 44) - 1;
const STATUS_SHIFT: u32 = 44;
const STATUS_BITS: u64 = 0x7f << STATUS_SHIFT;
const SLOT_SHIFT: u32 = 51;
const SLOT_BITS: u64 = 0x1fff << SLOT_SHIFT;
const _: () = assert!(UNARMED as u64 <= SLOT_BITS >> SLOT_SHIFT);
const _: () = assert!((Family::V6 as u64) < 1 << (STATUS_SHIFT - 40));

/// Protocol state of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum L4 {
    Tcp(TcpTrack),
    /// UDP: the time after which traffic both ways makes it a stream.
    Udp {
        stream_after_ns: u64,
    },
    Other,
}

/// One connection, in two cache lines. The first holds what a lookup reads (the tuple, the
/// status, the deadline) and what every packet of an established connection reads or writes
/// besides its protocol state: the wheel slot, the cached verdicts, the low parts of the
/// packet counters; the second the low parts of the byte counters and the protocol state.
/// The counters' high parts are in a side table ([`Wide`]), written when a low part carries
/// (every 65536 packets, every 4 GiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
struct Entry {
    /// The original tuple, as the words a lookup compares; the reply tuple is its reverse
    /// (or, with [`status::NAT`], the one in the `replies` side table). Its last word also
    /// holds the [`status`] bits and the wheel slot (see [`KEY_BITS`]).
    key: Words,
    deadline_ns: u64,
    /// Cached rule set verdicts: the rule set's epoch, and per direction a caller's tag
    /// (with [`VERDICT_VALID`] set when present).
    verdict_epoch: u32,
    verdict: [u32; 2],
    /// Packets and bytes per direction, low parts.
    packets_lo: [u16; 2],
    bytes_lo: [u32; 2],
    l4: L4,
}

// Two cache lines; the index adds 16 bytes per slot (32 with NAT), the wheel 8, the counters'
// high parts 16.
const _: () = assert!(core::mem::size_of::<L4>() == 56);
const _: () = assert!(core::mem::size_of::<Entry>() == 128);
const _: () = assert!(core::mem::offset_of!(Entry, bytes_lo) == 64);

/// The high parts of an entry's counters: packets above the low 16 bits, bytes above the low
/// 32 (so 48-bit packet and 64-bit byte counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Wide {
    packets: [u32; 2],
    bytes: [u32; 2],
}

const NO_KEY: FlowKey = FlowKey {
    src: IpAddr128::UNSPECIFIED,
    dst: IpAddr128::UNSPECIFIED,
    src_port: 0,
    dst_port: 0,
    proto: 0,
    family: Family::V4,
};

const FREE: Entry = Entry {
    key: Words {
        src: (0, 0),
        dst: (0, 0),
        rest: (UNARMED as u64) << SLOT_SHIFT,
    },
    deadline_ns: 0,
    verdict_epoch: 0,
    verdict: [0; 2],
    packets_lo: [0; 2],
    bytes_lo: [0; 2],
    l4: L4::Other,
};

impl Entry {
    /// A live entry, not armed, its first packet (of `bytes`) counted.
    #[inline]
    fn new(key: FlowKey, deadline_ns: u64, bytes: u64, l4: L4) -> Entry {
        let mut k = Words::of(&key);
        k.rest |= u64::from(status::LIVE) << STATUS_SHIFT | FREE.key.rest;
        Entry {
            key: k,
            deadline_ns,
            packets_lo: [1, 0],
            bytes_lo: [bytes as u32, 0],
            l4,
            ..FREE
        }
    }

    #[inline(always)]
    fn has(&self, s: u8) -> bool {
        self.key.rest & u64::from(s) << STATUS_SHIFT != 0
    }

    #[inline(always)]
    fn set(&mut self, s: u8) {
        self.key.rest |= u64::from(s) << STATUS_SHIFT;
    }

    /// Clears every status bit (the slot is free).
    #[inline(always)]
    fn clear_status(&mut self) {
        self.key.rest &= !STATUS_BITS;
    }

    /// Where the entry is armed in the wheel ([`UNARMED`] when it is not).
    #[inline(always)]
    fn wheel_slot(&self) -> u16 {
        (self.key.rest >> SLOT_SHIFT) as u16
    }

    #[inline(always)]
    fn set_wheel_slot(&mut self, slot: u16) {
        self.key.rest = self.key.rest & !SLOT_BITS | u64::from(slot) << SLOT_SHIFT;
    }

    #[inline]
    fn tcp_status(&self) -> Status {
        Status {
            seen_reply: self.has(status::SEEN_REPLY),
            assured: self.has(status::ASSURED),
        }
    }

    /// The state a packet of this entry travelling `dir` has (Linux's ctinfo).
    #[inline]
    fn state_for(&self, dir: Dir) -> CtState {
        if dir == Dir::Reply || self.has(status::SEEN_REPLY) {
            CtState::Established
        } else {
            CtState::New
        }
    }

    /// Counts a packet of `bytes` travelling `dir` in the low parts; answers what carries
    /// into the high parts (`0` almost always: see [`Conntrack::carry`]).
    #[inline(always)]
    fn account(&mut self, dir: Dir, bytes: u64) -> Carry {
        let d = dir as usize;
        let (p, cp) = self.packets_lo[d].overflowing_add(1);
        let (b, cb) = self.bytes_lo[d].overflowing_add(bytes as u32);
        self.packets_lo[d] = p;
        self.bytes_lo[d] = b;
        Carry {
            packets: u32::from(cp),
            bytes: u32::from(cb) + (bytes >> 32) as u32,
        }
    }
}

/// What a packet's count carries into an entry's high parts ([`Wide`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
struct Carry {
    packets: u32,
    bytes: u32,
}

impl Carry {
    #[inline(always)]
    fn any(self) -> bool {
        self.packets | self.bytes != 0
    }
}

/// Whether `k` is `orig`'s reply tuple (`orig.reply() == *k`).
#[cfg(test)]
fn is_reply_of(orig: &FlowKey, k: &FlowKey) -> bool {
    Words::of(orig).is(&Words::of(k).reversed(k))
}

/// A tuple as five 64-bit words (addresses by halves, then ports, protocol and family), so
/// that tuples compare with a few XORs and one test instead of a chain of early exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Words {
    src: (u64, u64),
    dst: (u64, u64),
    rest: u64,
}

impl Words {
    #[inline(always)]
    fn of(k: &FlowKey) -> Words {
        Words {
            src: halves(&k.src),
            dst: halves(&k.dst),
            rest: Self::rest(k.src_port, k.dst_port, k),
        }
    }

    #[inline(always)]
    fn rest(src_port: u16, dst_port: u16, k: &FlowKey) -> u64 {
        u64::from(src_port)
            | u64::from(dst_port) << 16
            | u64::from(k.proto) << 32
            | (k.family as u64) << 40
    }

    /// The tuple these are the words of.
    #[inline]
    fn key(&self) -> FlowKey {
        let addr =
            |(lo, hi): (u64, u64)| IpAddr128((u128::from(lo) | u128::from(hi) << 64).to_le_bytes());
        let r = self.rest & KEY_BITS;
        FlowKey {
            src: addr(self.src),
            dst: addr(self.dst),
            src_port: r as u16,
            dst_port: (r >> 16) as u16,
            proto: (r >> 32) as u8,
            family: if (r >> 40) as u8 == Family::V4 as u8 {
                Family::V4
            } else {
                Family::V6
            },
        }
    }

    /// The words of `k`'s reply tuple, `k` being the tuple these are the words of.
    #[cfg(test)]
    fn reversed(&self, k: &FlowKey) -> Words {
        Words {
            src: self.dst,
            dst: self.src,
            rest: Self::reversed_rest(self.rest, k),
        }
    }

    /// The last word of `k`'s reply tuple, `rest` being `k`'s.
    #[inline(always)]
    fn reversed_rest(rest: u64, k: &FlowKey) -> u64 {
        if k.is_icmp() {
            Self::icmp_reply_rest(k)
        } else {
            // The ports swapped: the low two 16-bit fields of the tuple's bits exchanged.
            let r = rest & KEY_BITS;
            r & !0xffff_ffff | u64::from((r as u32).rotate_left(16))
        }
    }

    #[cold]
    #[inline(never)]
    fn icmp_reply_rest(k: &FlowKey) -> u64 {
        Self::of(&k.reply()).rest
    }

    /// Equality, without branches.
    #[inline(always)]
    fn is(&self, o: &Words) -> bool {
        ((self.src.0 ^ o.src.0)
            | (self.src.1 ^ o.src.1)
            | (self.dst.0 ^ o.dst.0)
            | (self.dst.1 ^ o.dst.1)
            | (self.rest ^ o.rest))
            == 0
    }

    /// Whether these words of an entry (whose last word carries status bits and a wheel
    /// slot) are the tuple whose words are `packet`: [`Words::is`] on the tuple's bits.
    #[inline(always)]
    fn matches(&self, packet: &Words) -> bool {
        ((self.src.0 ^ packet.src.0)
            | (self.src.1 ^ packet.src.1)
            | (self.dst.0 ^ packet.dst.0)
            | (self.dst.1 ^ packet.dst.1)
            | ((self.rest & KEY_BITS) ^ packet.rest))
            == 0
    }

    /// Whether these words of an entry (whose last word carries status bits and a wheel
    /// slot) are `k`'s tuple, and whether they are its reply tuple (`rest` and `rev_rest`:
    /// the last word of `k` and of its reply, as [`Words::of`] and [`Words::reversed_rest`]
    /// make them). The
    /// addresses are compared as 16-byte arrays, each against both of `k`'s: the compiler
    /// makes them vector compares (four, in registers of their own), where the same test on
    /// 64-bit halves took twenty general-purpose instructions and the registers the rest of
    /// the lookup needed.
    #[inline(always)]
    fn matches_both(&self, k: &FlowKey, rest: u64, rev_rest: u64) -> (bool, bool) {
        let bytes = |(lo, hi): (u64, u64)| (u128::from(lo) | u128::from(hi) << 64).to_le_bytes();
        let (src, dst) = (bytes(self.src), bytes(self.dst));
        let r = self.rest & KEY_BITS;
        let orig = (src == k.src.0) & (dst == k.dst.0) & (r == rest);
        let reply = (src == k.dst.0) & (dst == k.src.0) & (r == rev_rest);
        (orig, reply)
    }

    /// [`Words::matches_both`] for an entry in the default zone only (the lean path's
    /// probe): [`status::ZONED`] is compared with the tuple, in the same word.
    #[inline(always)]
    fn matches_both_unzoned(&self, k: &FlowKey, rest: u64, rev_rest: u64) -> (bool, bool) {
        const ZONED: u64 = (status::ZONED as u64) << STATUS_SHIFT;
        let bytes = |(lo, hi): (u64, u64)| (u128::from(lo) | u128::from(hi) << 64).to_le_bytes();
        let (src, dst) = (bytes(self.src), bytes(self.dst));
        let r = self.rest & (KEY_BITS | ZONED);
        let orig = (src == k.src.0) & (dst == k.dst.0) & (r == rest);
        let reply = (src == k.dst.0) & (dst == k.src.0) & (r == rev_rest);
        (orig, reply)
    }

    /// [`Words::matches_both`] for the prefetch pass's guess, whose entry may be free or
    /// translated: the entry must be live, and a packet is its reply only without a binding
    /// (a translated entry's reply tuple is in the side table). The status bits are compared
    /// with the tuple's, in the same word (a test of each took eleven instructions).
    #[inline(always)]
    fn matches_both_live(&self, k: &FlowKey, rest: u64, rev_rest: u64) -> (bool, bool) {
        const LIVE: u64 = (status::LIVE as u64) << STATUS_SHIFT;
        const NAT: u64 = (status::NAT as u64) << STATUS_SHIFT;
        let bytes = |(lo, hi): (u64, u64)| (u128::from(lo) | u128::from(hi) << 64).to_le_bytes();
        let (src, dst) = (bytes(self.src), bytes(self.dst));
        // An entry outside the default zone is left to the probe, which compares zones.
        const ZONED: u64 = (status::ZONED as u64) << STATUS_SHIFT;
        let orig = (src == k.src.0)
            & (dst == k.dst.0)
            & (self.rest & (KEY_BITS | LIVE | ZONED) == rest | LIVE);
        let reply = (src == k.dst.0)
            & (dst == k.src.0)
            & (self.rest & (KEY_BITS | LIVE | NAT | ZONED) == rev_rest | LIVE);
        (orig, reply)
    }
}

/// An address as its two little-endian 64-bit halves (bytes 0..8 and 8..16), without slice
/// conversions.
#[inline(always)]
pub(crate) fn halves(a: &IpAddr128) -> (u64, u64) {
    let x = u128::from_le_bytes(a.0);
    (x as u64, (x >> 64) as u64)
}

/// 64x64 -> 128-bit multiply, folded.
#[inline]
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

pub(crate) const SEED_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// One connection as `conntrack list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub id: EntryId,
    pub orig: FlowKey,
    pub reply: FlowKey,
    /// TCP state, for TCP.
    pub tcp_state: Option<TcpState>,
    pub seen_reply: bool,
    pub assured: bool,
    /// The connection mark (CONNMARK's).
    pub mark: u32,
    /// The conntrack zone (`CT --zone`).
    pub zone: zones::Zone,
    pub timeout_left_ns: u64,
    /// `[original, reply]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

/// What a table's memory is made of ([`Conntrack::memory`]), in bytes; all of it is taken when
/// the table is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// The entries (128 bytes each).
    pub entries: usize,
    /// The high parts of the counters (16 bytes a slot).
    pub counters_high: usize,
    /// The index buckets (8 bytes each, twice as many as references; a slot has two
    /// references with NAT room, one without).
    pub index: usize,
    /// The timer wheel's links and slot heads.
    pub wheel: usize,
    /// The stack of free slots (4 bytes a slot).
    pub free_stack: usize,
    /// The translated reply tuples (38 bytes a slot; none without NAT room).
    pub nat_replies: usize,
}

impl Memory {
    pub fn total(&self) -> usize {
        self.entries
            + self.counters_high
            + self.index
            + self.wheel
            + self.free_stack
            + self.nat_replies
    }
}

/// What the lean path ([`Conntrack::track_established`]) tracked: the entry and the
/// packet's direction, with what the judgement reads of the entry next (read while the entry
/// is at hand): whether it has a NAT binding, and its cached verdict for the direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub id: EntryId,
    pub dir: Dir,
    /// [`Conntrack::has_binding`].
    pub nat: bool,
    verdict_epoch: u32,
    /// The direction's cached tag, with [`VERDICT_VALID`]; 0 without a cached verdict.
    verdict: u32,
}

/// Entry `i` of `entries` if it is live at `now_ns` and its packets travelling `dir` are
/// ESTABLISHED: the lean paths' condition, on top of their protocol's own.
#[inline(always)]
fn established_entry(entries: &mut [Entry], i: u32, dir: Dir, now_ns: u64) -> Option<&mut Entry> {
    let e = entries.get_mut(i as usize)?;
    (e.deadline_ns > now_ns && e.state_for(dir) == CtState::Established).then_some(e)
}

impl Found {
    #[inline(always)]
    fn of(e: &Entry, i: u32, dir: Dir) -> Found {
        Found {
            id: EntryId(i),
            dir,
            nat: e.has(status::NAT),
            verdict_epoch: e.verdict_epoch,
            verdict: if e.has(status::VERDICT) {
                e.verdict[dir as usize]
            } else {
                0
            },
        }
    }

    /// The direction's cached tag with [`VERDICT_VALID`] as the entry keeps it, if it was
    /// given under rule set `epoch`; `0` otherwise (no tag, or another rule set's): one word
    /// for the caller to test its own bits of at once.
    #[inline(always)]
    pub fn verdict_word(&self, epoch: u32) -> u32 {
        if self.verdict_epoch == epoch {
            self.verdict
        } else {
            0
        }
    }

    /// [`Conntrack::verdict`] for the entry and direction, as they were after the packet.
    #[inline(always)]
    pub fn verdict(&self, epoch: u32) -> Option<u32> {
        (self.verdict_epoch == epoch && self.verdict & VERDICT_VALID != 0)
            .then_some(self.verdict & !VERDICT_VALID)
    }
}

/// Sets entry `e`'s (slot `i`) deadline, later or earlier, and re-arms it in `wheel` when
/// the new deadline comes before its armed tick.
#[inline(always)]
fn refresh_entry(e: &mut Entry, wheel: &mut Wheel, i: u32, deadline_ns: u64, now_ns: u64) {
    e.deadline_ns = deadline_ns;
    let old = e.wheel_slot();
    let slot = wheel.rearm_if_late(i, old, deadline_ns, now_ns);
    if slot != old {
        e.set_wheel_slot(slot);
    }
}

/// What a TCP segment the tracker accepted does to entry `e` (slot `i`; both paths share
/// it): its count, the status bits, the deadline. Returns what the count carries into the
/// high parts, for [`Conntrack::carry`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tcp_accepted_entry(
    e: &mut Entry,
    wheel: &mut Wheel,
    i: u32,
    dir: Dir,
    bytes: u64,
    timeout_ns: Option<u64>,
    set_assured: bool,
    now_ns: u64,
) -> Carry {
    let carry = e.account(dir, bytes);
    if set_assured {
        e.set(status::ASSURED);
    }
    if dir == Dir::Reply {
        e.set(status::SEEN_REPLY);
    }
    if let Some(t) = timeout_ns {
        refresh_entry(e, wheel, i, now_ns + t, now_ns);
    }
    carry
}

/// What a UDP datagram does to its entry `e` (slot `i`; both paths share it;
/// `stream_after_ns` from the entry's UDP state): its count, the stream's assured bit, the
/// deadline. Returns what the count carries, for [`Conntrack::carry`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn udp_seen_entry(
    e: &mut Entry,
    wheel: &mut Wheel,
    cfg: &Config,
    i: u32,
    dir: Dir,
    bytes: u64,
    stream_after_ns: u64,
    now_ns: u64,
) -> Carry {
    let carry = e.account(dir, bytes);
    let timeout = if e.has(status::SEEN_REPLY) && now_ns > stream_after_ns {
        // Traffic both ways and still alive after 2 s: a stream.
        e.set(status::ASSURED);
        cfg.udp_stream_ns
    } else {
        cfg.udp_ns
    };
    if dir == Dir::Reply {
        e.set(status::SEEN_REPLY);
    }
    refresh_entry(e, wheel, i, now_ns + timeout, now_ns);
    carry
}

/// A per-worker connection table; see the module docs.
#[derive(Debug)]
pub struct Conntrack {
    cfg: Config,
    entries: TableMemory<Entry>,
    /// Stack of free slab slots.
    free: TableMemory<u32>,
    free_len: u32,
    index: Index,
    wheel: Wheel,
    /// Reply tuples of NAT'd entries, by slot (empty when `cfg.nat` is off).
    replies: TableMemory<FlowKey>,
    /// The high parts of each slot's counters (zero for a free slot, and for every entry
    /// without [`status::WIDE`]).
    wide: TableMemory<Wide>,
    /// Would-be entries of NEW connections, and the handle number each belongs to
    /// ([`Pending`]): handle `n` is in scratch slot `n % PENDING` while its number is there.
    pending: Box<[Entry; PENDING]>,
    pending_of: [u32; PENDING],
    /// Each scratch slot's index tag (computed by the lookup that missed), and the count of
    /// insertions when it was filled: while no insertion happened since, the lookup's miss
    /// still holds and confirmation needs no second probe.
    pending_tag: [u32; PENDING],
    pending_inserts: [u32; PENDING],
    /// Insertions so far (wrapping; a handle lives through at most [`PENDING`] of them).
    inserts: u32,
    /// The next handle number.
    pending_next: u32,
    seeds: [u64; 3],
    stats: Stats,
    /// The binding of an entry a RST killed (a RST answering the first packet), with that
    /// packet's tuple: Linux deletes the entry (`nf_ct_kill_acct`) but the packet keeps its
    /// reference and is still translated, so the caller takes the binding for it
    /// ([`Conntrack::take_killed`]).
    /// Boxed, made with the table: the fields the fast path reads keep their places.
    killed: Box<Option<(FlowKey, crate::nat::Binding)>>,
    /// Connection marks, by slot ([`marks`]). Boxed, as `killed`: the fields the fast path
    /// reads keep their places.
    marks: Box<marks::Marks>,
    /// The L4 length of the whole datagram whose first fragment is tracked next
    /// ([`Conntrack::track_whole`]); 0 outside that call.
    whole_l4: u32,
    /// The zone of the packet being judged ([`Conntrack::set_zone`]): lookups, insertions and
    /// NAT's uniqueness probes are in it. The default zone outside that packet's judgement.
    zone: zones::Zone,
    /// The zones of the entries with [`status::ZONED`], by slot ([`zones`]). Boxed, as
    /// `marks`.
    zones: Box<zones::Zones>,
    /// `-m connlimit`'s counts held by the connections ([`counted`]): boxed, made empty with
    /// the table.
    counted: Box<counted::Side>,
    /// A NEW connection's reservations wait for its confirmation.
    count_pending: bool,
    /// Some entry may hold counts (its end releases them).
    counting: bool,
}

impl Conntrack {
    /// A table holding at most `cfg.capacity` connections; all memory is taken here.
    pub fn new(cfg: Config) -> Conntrack {
        let cap = cfg.capacity.clamp(1, 1 << 29);
        let s = cfg.hash_seed;
        let pages = cfg.hugepages;
        Conntrack {
            cfg: Config {
                capacity: cap,
                ..cfg
            },
            entries: TableMemory::filled(cap as usize, FREE, pages),
            free: TableMemory::from_fn(cap as usize, pages, |i| cap - 1 - i as u32),
            free_len: cap,
            index: Index::with_capacity(if cfg.nat { cap * 2 } else { cap }, pages),
            wheel: Wheel::new(cap, pages),
            replies: TableMemory::filled(if cfg.nat { cap as usize } else { 0 }, NO_KEY, pages),
            wide: TableMemory::filled(cap as usize, Wide::default(), pages),
            pending: Box::new([FREE; PENDING]),
            pending_of: [u32::MAX; PENDING],
            pending_tag: [0; PENDING],
            pending_inserts: [0; PENDING],
            inserts: 0,
            pending_next: 0,
            seeds: [
                mix(s ^ SEED_MIX, 0x243f_6a88_85a3_08d3) | 1,
                mix(s.rotate_left(21) ^ SEED_MIX, 0x1319_8a2e_0370_7344) | 1,
                mix(s.rotate_left(42) ^ SEED_MIX, 0xa409_3822_299f_31d0) | 1,
            ],
            stats: Stats::default(),
            killed: Box::new(None),
            marks: Box::new(marks::Marks::new(cap)),
            whole_l4: 0,
            zone: zones::Zone::DEFAULT,
            zones: Box::new(zones::Zones::new(cap)),
            counted: Box::default(),
            count_pending: false,
            counting: false,
        }
    }

    #[inline]
    /// INVALID for a bad L4 checksum, counted: a whole datagram's, which the fragments'
    /// reassembly checked.
    pub fn bad_checksum(&mut self) -> Tracked {
        self.invalid(Invalid::BadChecksum)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    #[inline]
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Live entries (some may have expired and not yet been reaped).
    #[inline]
    pub fn len(&self) -> u32 {
        let len = self.cfg.capacity - self.free_len;
        debug_assert!(self.index.len() <= 2 * len);
        len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn capacity(&self) -> u32 {
        self.cfg.capacity
    }

    /// Bytes of memory the table holds.
    pub fn memory_bytes(&self) -> usize {
        self.memory().total()
    }

    /// Bytes of memory the table holds, part by part.
    pub fn memory(&self) -> Memory {
        Memory {
            entries: self.entries.len() * core::mem::size_of::<Entry>(),
            counters_high: self.wide.len() * core::mem::size_of::<Wide>(),
            index: self.index.bytes(),
            wheel: self.wheel.bytes(),
            free_stack: self.free.len() * 4,
            nat_replies: self.replies.len() * core::mem::size_of::<FlowKey>(),
        }
    }

    /// The pages the table's arrays got (mapped bytes by kind: a little more than
    /// [`Conntrack::memory`], rounded up to whole pages).
    pub fn pages(&self) -> PageUse {
        let mut u = PageUse::default();
        u.add(&self.entries);
        u.add(&self.free);
        u.add(&self.replies);
        u.add(&self.wide);
        self.index.add_pages(&mut u);
        self.wheel.add_pages(&mut u);
        u
    }

    /// The reply tuple of the entry in slot `i`.
    #[inline(always)]
    fn reply_of(&self, i: u32) -> FlowKey {
        let e = &self.entries[i as usize];
        if e.has(status::NAT) {
            self.replies[i as usize]
        } else {
            e.key.key().reply()
        }
    }

    /// The entry (live or not) that tuple `k` belongs to, and the direction `k` travels in it.
    /// A candidate is compared with both directions at once, and the direction chosen without
    /// a branch (packets of both directions interleave: a branch on it would mispredict).
    #[inline(always)]
    fn find(&self, k: &FlowKey) -> Option<(u32, Dir)> {
        self.find_tagged(k, self.tag(k))
    }

    /// [`Conntrack::find`] with `k`'s tag already known.
    #[inline(always)]
    fn find_tagged(&self, k: &FlowKey, tag: u32) -> Option<(u32, Dir)> {
        let entries = &self.entries;
        let replies = &self.replies;
        let w = Words::of(k);
        let rev_rest = Words::reversed_rest(w.rest, k);
        for r in self.index.candidates(tag) {
            let i = r >> REF_SHIFT;
            if r & REF_REPLY != 0 {
                // The reply tuple of a NAT binding.
                if Words::of(&replies[i as usize]).is(&w) {
                    // Zones: see below (a translated entry's zone is its own, as any).
                    if self.zone.is_set() | entries[i as usize].has(status::ZONED) {
                        return self.find_zoned(k, tag);
                    }
                    return Some((i, Dir::Reply));
                }
                continue;
            }
            let e = &entries[i as usize];
            let (orig, reply) = e.key.matches_both(k, w.rest, rev_rest);
            let reply = reply & !e.has(status::NAT);
            if orig | reply {
                // Zones: the same tuple may be in several, on one index chain. When the
                // entry or the packet is outside the default zone, the chain is searched
                // again comparing zones, out of line (a call here, with values live across
                // it, cost the lean path's fallback registers).
                if e.has(status::ZONED) | self.zone.is_set() {
                    return self.find_zoned(k, tag);
                }
                let dir = if orig { Dir::Orig } else { Dir::Reply };
                return Some((i, dir));
            }
        }
        None
    }

    /// [`Conntrack::find_tagged`] comparing zones: the entry holding `k` as its tuple of a
    /// direction whose id ([`zones::Zone::id_for`]) is the packet's zone's for that
    /// direction (`nf_ct_key_equal`'s zone test).
    #[cold]
    #[inline(never)]
    fn find_zoned(&self, k: &FlowKey, tag: u32) -> Option<(u32, Dir)> {
        let w = Words::of(k);
        let rev_rest = Words::reversed_rest(w.rest, k);
        let fits = |i: u32, dir: Dir| self.zone_of(i).id_for(dir) == self.zone.id_for(dir);
        for r in self.index.candidates(tag) {
            let i = r >> REF_SHIFT;
            if r & REF_REPLY != 0 {
                if Words::of(&self.replies[i as usize]).is(&w) && fits(i, Dir::Reply) {
                    return Some((i, Dir::Reply));
                }
                continue;
            }
            let e = &self.entries[i as usize];
            let (orig, reply) = e.key.matches_both(k, w.rest, rev_rest);
            let reply = reply & !e.has(status::NAT);
            if orig && fits(i, Dir::Orig) {
                return Some((i, Dir::Orig));
            }
            if reply && fits(i, Dir::Reply) {
                return Some((i, Dir::Reply));
            }
        }
        None
    }

    /// The zone the packet being judged is tracked in (the raw table's `CT --zone`): its
    /// lookups, its connection's creation and NAT's uniqueness probes for it are in that
    /// zone. The caller sets the default zone again when the packet's judgement is done.
    #[inline]
    pub fn set_zone(&mut self, z: zones::Zone) {
        self.zone = z;
    }

    /// The zone of entry `id`.
    #[inline]
    pub fn zone(&self, id: EntryId) -> zones::Zone {
        self.zone_of(id.0)
    }

    fn zone_of(&self, i: u32) -> zones::Zone {
        match self.entries.get(i as usize) {
            Some(e) if e.has(status::ZONED) => self.zones.get(i),
            _ => zones::Zone::DEFAULT,
        }
    }

    /// Whether a live connection already uses tuple `k` in either direction (NAT's
    /// uniqueness probe, as `nf_nat_used_tuple`: two connections never share a reply tuple).
    pub fn tuple_in_use(&self, k: &FlowKey, now_ns: u64) -> bool {
        self.find(k)
            .is_some_and(|(i, _)| self.entries[i as usize].deadline_ns > now_ns)
    }

    /// [`Conntrack::tuple_in_use`] with `k`'s tag known ([`Conntrack::tag_of`]); the same tag
    /// then serves the insertion of a binding with reply tuple `k`
    /// ([`Conntrack::confirm_translating`]).
    #[inline]
    pub fn tuple_in_use_tagged(&self, k: &FlowKey, tag: u32, now_ns: u64) -> bool {
        // The common answer (a candidate tuple nobody uses) is most often told by the tag
        // alone, before the tuple is made into the lookup's words.
        if self.index.first(tag).is_none() {
            return false;
        }
        self.find_tagged(k, tag)
            .is_some_and(|(i, _)| self.entries[i as usize].deadline_ns > now_ns)
    }

    /// The index tag of tuple `k` (the same for its reply tuple).
    #[inline]
    pub fn tag_of(&self, k: &FlowKey) -> u32 {
        self.tag(k)
    }

    /// Whether an entry has a NAT binding ([`Conntrack::binding`] is `Some`).
    #[inline(always)]
    pub fn has_binding(&self, id: EntryId) -> bool {
        self.entries
            .get(id.0 as usize)
            .is_some_and(|e| e.has(status::NAT))
    }

    /// The NAT binding of an entry: its original tuple and the tuple its replies carry;
    /// `None` when the entry translates nothing.
    #[inline]
    pub fn binding(&self, id: EntryId) -> Option<crate::nat::Binding> {
        let e = self.entries.get(id.0 as usize)?;
        if e.has(status::NAT) {
            Some(self.binding_of(id.0))
        } else {
            None
        }
    }

    /// For a packet travelling `dir` in entry `id`, which has a NAT binding
    /// ([`Found::nat`], [`Conntrack::has_binding`]): the wire tuple of the other direction
    /// (the binding's reply tuple for an `Orig` packet, its original tuple for a `Reply` one),
    /// whose reverse is the packet's translated tuple. Read where it lies, without the rest of
    /// the binding.
    #[inline(always)]
    pub fn nat_other(&self, id: EntryId, dir: Dir) -> FlowKey {
        let i = id.0 as usize;
        match dir {
            Dir::Orig => self.replies[i],
            Dir::Reply => self.entries[i].key.key(),
        }
    }

    /// The binding of the entry the last packet killed ([`Handle::None`] with a state: a RST
    /// answering the first packet), if `key` is that packet's tuple and the entry translated;
    /// taken once.
    #[inline(never)]
    pub fn take_killed(&mut self, key: &FlowKey) -> Option<crate::nat::Binding> {
        self.killed.take().filter(|(k, _)| k == key).map(|(_, b)| b)
    }

    /// The binding of entry `id`, which has one ([`Conntrack::has_binding`]).
    #[inline]
    pub fn nat_binding(&self, id: EntryId) -> crate::nat::Binding {
        self.binding_of(id.0)
    }

    /// The binding of the NAT'd entry in slot `i`.
    #[inline(always)]
    fn binding_of(&self, i: u32) -> crate::nat::Binding {
        crate::nat::Binding {
            orig: self.entries[i as usize].key.key(),
            reply: self.replies[i as usize],
        }
    }

    /// First half of a batched lookup: starts loading the index bucket of `key` (a packet's
    /// flow key) and returns its tag for [`Conntrack::prefetch_entry`].
    #[inline(always)]
    pub fn prefetch_index(&self, key: &FlowKey) -> u32 {
        let tag = self.tag(key);
        self.index.prefetch(tag);
        tag
    }

    /// Second half: starts loading the entry the bucket points at. Call once the bucket had
    /// time to arrive. Returns the hint for the packet's lookup and whether the index had a
    /// candidate under the tag (`false`: the tuple is in no connection, so the packet is NEW,
    /// or INVALID).
    #[inline(always)]
    pub fn prefetch_entry(&self, tag: u32) -> (Hint, bool) {
        let Some(r) = self.index.first(tag) else {
            return (Hint { tag, first: ABSENT }, false);
        };
        let i = (r >> REF_SHIFT) as usize;
        if let Some(e) = self.entries.get(i) {
            crate::dpdk::prefetch_all(e);
        }
        // A NAT binding's reply tuple: compared for replies, read for the rewrite (38 bytes:
        // most cross a line boundary, and both lines are prefetched). Only a translated
        // connection's reference says it has one.
        // (A table without NAT room has no slots: that test comes first, the same for every
        // packet.)
        if !self.replies.is_empty() && r & REF_NAT != 0 {
            if let Some(t) = self.replies.get(i) {
                crate::dpdk::prefetch_all(t);
            }
        }
        (Hint { tag, first: r }, true)
    }

    /// Starts loading what the next `n` insertions will write besides the index bucket (which
    /// their lookups loaded): the entries on top of the free stack, both their lines, their
    /// wheel links, and (in a table with NAT room) their slots for a reply tuple. For a burst
    /// in which `n` packets found no candidate in the index.
    #[inline]
    pub fn prefetch_free(&self, n: u32) {
        let top = self.free_len as usize;
        let n = (n as usize).min(top);
        for &i in &self.free[top - n..top] {
            if let Some(e) = self.entries.get(i as usize) {
                crate::dpdk::prefetch_all(e);
            }
            self.wheel.prefetch_link(i);
            // A translated connection's reply tuple goes into its slot of the side table
            // (a table without NAT room has none).
            if let Some(t) = self.replies.get(i as usize) {
                crate::dpdk::prefetch_all(t);
            }
        }
    }

    /// The index tag of a tuple: the same for the tuple and its reply tuple. Each endpoint
    /// (address and port; for ICMP, address and identifier) is hashed alone with the seeds,
    /// and the two are added, which does not depend on their order; an ICMP type is replaced
    /// by the lesser of it and its answer. The port goes through its own keyed multiply before
    /// it meets the address, so no choice of addresses and ports collides whatever the seeds.
    #[inline(always)]
    fn tag(&self, k: &FlowKey) -> u32 {
        let [s0, s1, s2] = self.seeds;
        let (a_lo, a_hi) = halves(&k.src);
        let (b_lo, b_hi) = halves(&k.dst);
        let (a_port, b_port, kind) = if k.is_icmp() {
            Self::icmp_ends(k)
        } else {
            (k.src_port, k.dst_port, 0)
        };
        let end =
            |lo: u64, hi: u64, port: u16| mix(lo ^ u64::from(port).wrapping_mul(s2) ^ s0, hi ^ s1);
        let ends = end(a_lo, a_hi, a_port).wrapping_add(end(b_lo, b_hi, b_port));
        let rest = u64::from(k.proto) | (k.family as u64) << 8 | u64::from(kind) << 16;
        let h = mix(ends, rest ^ SEED_MIX);
        (h ^ (h >> 32)) as u32
    }

    /// An ICMP tuple's endpoints for [`Conntrack::tag`]: the identifier on both sides, and
    /// the type (the lesser of it and its answer) and code.
    #[cold]
    #[inline(never)]
    fn icmp_ends(k: &FlowKey) -> (u16, u16, u16) {
        let [ty, code] = k.dst_port.to_be_bytes();
        let answer = match k.family {
            Family::V4 => icmpv4::reply_type(ty),
            Family::V6 => icmpv6::reply_type(ty),
        };
        (
            k.src_port,
            k.src_port,
            u16::from_be_bytes([ty.min(answer), code]),
        )
    }

    /// The live entry `k` belongs to, and the direction `k` travels in it.
    #[inline]
    fn lookup(&mut self, k: &FlowKey, now_ns: u64) -> Option<(u32, Dir)> {
        self.lookup_tagged(k, self.tag(k), now_ns)
    }

    /// [`Conntrack::lookup`] with `k`'s tag already known.
    #[inline(always)]
    fn lookup_tagged(&mut self, k: &FlowKey, tag: u32, now_ns: u64) -> Option<(u32, Dir)> {
        let found = self.find_tagged(k, tag)?;
        let i = found.0;
        if self.entries[i as usize].deadline_ns <= now_ns {
            self.expire_one(i);
            return None;
        }
        Some(found)
    }

    #[cold]
    #[inline(never)]
    fn expire_one(&mut self, i: u32) {
        self.remove(i);
        self.stats.expired += 1;
    }

    /// Frees slot `i`: out of the index and the wheel.
    fn remove(&mut self, i: u32) {
        if self.counting {
            self.counts_end(i);
        }
        let e = self.entries[i as usize];
        let key = e.key.key();
        let nat = if e.has(status::NAT) { REF_NAT } else { 0 };
        let found = self.index.remove(self.tag(&key), i << REF_SHIFT | nat);
        debug_assert!(found, "a live entry's reference is in the index");
        if e.has(status::NAT) {
            let reply = self.replies[i as usize];
            if reply != key {
                let found = self
                    .index
                    .remove(self.tag(&reply), i << REF_SHIFT | REF_NAT | REF_REPLY);
                debug_assert!(found, "a binding's reply reference is in the index");
            }
            self.stats.nat_live -= 1;
        }
        self.wheel.disarm(i, e.wheel_slot());
        if e.has(status::WIDE) {
            self.wide[i as usize] = Wide::default();
        }
        let e = &mut self.entries[i as usize];
        e.clear_status();
        e.set_wheel_slot(UNARMED);
        self.free[self.free_len as usize] = i;
        self.free_len += 1;
    }

    /// Sets entry `i`'s deadline (later or earlier).
    #[inline(always)]
    fn refresh(&mut self, i: u32, deadline_ns: u64, now_ns: u64) {
        refresh_entry(
            &mut self.entries[i as usize],
            &mut self.wheel,
            i,
            deadline_ns,
            now_ns,
        );
    }

    /// Adds what entry `i`'s low counters carried to its high parts (once every 65536
    /// packets or 4 GiB of a direction).
    #[cold]
    #[inline(never)]
    fn carry(&mut self, i: u32, dir: Dir, c: Carry) {
        let w = &mut self.wide[i as usize];
        let d = dir as usize;
        w.packets[d] = w.packets[d].wrapping_add(c.packets);
        w.bytes[d] = w.bytes[d].wrapping_add(c.bytes);
        self.entries[i as usize].set(status::WIDE);
    }

    /// A NEW packet's answer: its would-be entry `e` (whose tuple's index tag is `tag`, and
    /// which the lookup just missed) kept in the next scratch slot.
    #[inline]
    fn new_pending(&mut self, e: Entry, tag: u32) -> Tracked {
        let n = self.pending_next;
        // `u32::MAX` marks a scratch slot no handle owns.
        self.pending_next = if n == u32::MAX - 1 { 0 } else { n + 1 };
        let at = n as usize % PENDING;
        self.pending[at] = e;
        self.pending_of[at] = n;
        self.pending_tag[at] = tag;
        self.pending_inserts[at] = self.inserts;
        Tracked {
            state: CtState::New,
            dir: Dir::Orig,
            handle: Handle::New(Pending(n)),
            invalid: None,
        }
    }

    /// The would-be entry of a NEW handle, while the table keeps it.
    #[inline]
    fn pending_entry(&self, p: Pending) -> Option<&Entry> {
        let at = p.0 as usize % PENDING;
        (self.pending_of[at] == p.0).then(|| &self.pending[at])
    }

    /// The original tuple of a NEW connection not yet confirmed (`None` once its handle is
    /// too old, see [`PENDING`]).
    pub fn pending_key(&self, p: Pending) -> Option<FlowKey> {
        self.pending_entry(p).map(|e| e.key.key())
    }

    #[cold]
    #[inline(never)]
    fn invalid(&mut self, why: Invalid) -> Tracked {
        self.stats.invalid[why.index()] += 1;
        Tracked::invalid(why)
    }

    /// The state of one parsed packet (`info` from `parse_frame(frame)`) at time `now_ns`.
    /// Updates the packet's entry; never inserts one (see [`Conntrack::confirm`]).
    #[inline]
    pub fn track(&mut self, frame: &[u8], info: &PacketInfo, now_ns: u64) -> Tracked {
        self.track_tagged(frame, info, None, now_ns)
    }

    /// [`Conntrack::track_tagged`] for the first fragment of a datagram judged whole, whose
    /// L4 part (header and data, over every fragment) is `l4_len` bytes: a TCP segment's
    /// sequence space is the whole one, as `tcp_in_window` sees the reassembled skb.
    #[cold]
    #[inline(never)]
    pub fn track_whole(
        &mut self,
        frame: &[u8],
        info: &PacketInfo,
        tag: Option<u32>,
        l4_len: u32,
        now_ns: u64,
    ) -> Tracked {
        self.whole_l4 = l4_len;
        let t = self.track_tagged(frame, info, tag, now_ns);
        self.whole_l4 = 0;
        t
    }

    /// [`Conntrack::track`] with the tuple's index tag when the caller has it (the prefetch
    /// pass computed it: [`Hint::known_tag`]); TCP and UDP then do not hash the tuple again.
    /// The tag must be `info.flow`'s (a debug assertion holds it): a wrong one would miss the
    /// packet's connection.
    #[inline]
    pub fn track_tagged(
        &mut self,
        frame: &[u8],
        info: &PacketInfo,
        tag: Option<u32>,
        now_ns: u64,
    ) -> Tracked {
        // By reference: the key stays where the parser (or the caller's copy) left it, and is
        // read field by field; a copy here would load it whole right after the caller stored
        // it piecewise, which the store buffer cannot forward.
        let Some(key) = info.flow.as_ref() else {
            return self.invalid(Invalid::NotIp);
        };
        let fragmented = match info.frag {
            Fragment::None => false,
            Fragment::First { .. } => true,
            Fragment::Later { .. } => return self.invalid(Invalid::LaterFragment),
        };
        debug_assert!(tag.is_none_or(|t| t == self.tag(key)));
        let bytes = u64::from(info.l3_len);
        // A device with RX checksum offload has checked TCP and UDP checksums already (never a
        // fragment's: it sees only a piece): a sum it found good is not summed again. One it
        // found bad is (rare, and the software decides, e.g. a UDP datagram without a sum).
        let verify = self.cfg.checksum && !fragmented && info.l4_csum != RxCsum::Good;
        match (key.family, key.proto) {
            (_, ip_proto::TCP) => match info.l4_bytes(frame) {
                Some(l4) => self.track_tcp(key, tag, l4, fragmented, verify, bytes, now_ns),
                None => self.invalid(Invalid::Truncated),
            },
            (_, ip_proto::UDP) => match info.l4_bytes(frame) {
                Some(l4) => self.track_udp(key, tag, l4, fragmented, verify, bytes, now_ns),
                None => self.invalid(Invalid::Truncated),
            },
            (Family::V4, ip_proto::ICMP) | (Family::V6, ip_proto::ICMPV6) => {
                match info.l4_bytes(frame) {
                    Some(l4) => self.track_icmp(key, l4, fragmented, bytes, now_ns),
                    None => self.invalid(Invalid::Truncated),
                }
            }
            _ => self.track_simple(key, bytes, self.cfg.generic_ns, now_ns, true),
        }
    }

    /// Whether an upper-layer message `data` (checksum field included) of the packet with
    /// tuple `key` verifies against its pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1), which is
    /// summed from the tuple's address halves: the same answer as [`PseudoHeader::verify`],
    /// with little-endian words ([`checksum::accumulate_le`]).
    #[inline(always)]
    fn l4_checksum_ok(key: &FlowKey, data: &[u8]) -> bool {
        let addresses = match key.family {
            // An IPv4 address is bytes 12..16 of its mapped form, read as one word (through
            // the 16-byte halves it took four instructions an address).
            Family::V4 => {
                let v4 = |a: &IpAddr128| {
                    let [.., w, x, y, z] = a.0;
                    u64::from(u32::from_le_bytes([w, x, y, z]))
                };
                v4(&key.src) + v4(&key.dst)
            }
            Family::V6 => {
                let (s_lo, s_hi) = halves(&key.src);
                let (d_lo, d_hi) = halves(&key.dst);
                let words = |x: u64| (x & 0xffff_ffff) + (x >> 32);
                words(s_lo) + words(s_hi) + words(d_lo) + words(d_hi)
            }
        };
        let len = data.len() as u32;
        // The protocol (after a zero byte) and the length, big-endian words read
        // little-endian; IPv4's 16-bit length is the low word of IPv6's 32-bit one.
        let pseudo = addresses
            + (u64::from(key.proto) << 8)
            + u64::from(((len >> 16) as u16).swap_bytes())
            + u64::from((len as u16).swap_bytes());
        checksum::folds_to_ones(checksum::accumulate_le(pseudo, data))
    }

    #[allow(clippy::too_many_arguments)]
    fn track_tcp(
        &mut self,
        key: &FlowKey,
        tag: Option<u32>,
        l4: &[u8],
        fragmented: bool,
        verify: bool,
        bytes: u64,
        now_ns: u64,
    ) -> Tracked {
        let Ok(p) = crate::wire::tcp::Packet::new_checked(l4) else {
            return self.invalid(Invalid::Truncated);
        };
        if verify && !Self::l4_checksum_ok(key, l4) {
            return self.invalid(Invalid::BadChecksum);
        }
        if !tcp::valid_flags(p.flags()) {
            return self.invalid(Invalid::TcpFlags);
        }
        let mut seg = Segment::from_packet(&p);
        // A first fragment: the segment ends where the whole datagram's data does; without
        // that length (tracked outside a reassembly) the connection is tracked liberally.
        let fragmented = fragmented && !Self::whole_segment(&mut seg, &p, self.whole_l4);
        let tag = match tag {
            Some(t) => t,
            None => self.tag(key),
        };
        if let Some((i, dir)) = self.lookup_tagged(key, tag, now_ns) {
            // The settings by reference (a copy is a hundred bytes a packet).
            let cfg = &self.cfg.tcp;
            let e = &mut self.entries[i as usize];
            let st = e.tcp_status();
            let state = e.state_for(dir);
            let remaining = e.deadline_ns.saturating_sub(now_ns);
            let L4::Tcp(t) = &mut e.l4 else {
                return self.invalid(Invalid::TcpState);
            };
            if fragmented {
                t.seen[dir as usize].flags |= tcp::seen_flags::BE_LIBERAL;
            }
            let handle = Handle::Entry(EntryId(i));
            let tracked = Tracked {
                state,
                dir,
                handle,
                invalid: None,
            };
            let outcome = match t.established_ack(dir, &seg, cfg, st) {
                Some(o) => o,
                None => t.packet(dir, &seg, cfg, st, remaining),
            };
            match outcome {
                tcp::Outcome::Accept {
                    timeout_ns,
                    set_assured,
                } => {
                    self.tcp_accepted(i, dir, bytes, timeout_ns, set_assured, now_ns);
                    if self.counting {
                        self.tcp_closing(i);
                    }
                    tracked
                }
                tcp::Outcome::Ignore => {
                    if dir == Dir::Reply {
                        e.set(status::SEEN_REPLY);
                    }
                    tracked
                }
                tcp::Outcome::Kill => {
                    *self.killed = self.binding(EntryId(i)).map(|b| (*key, b));
                    self.marks.killed(i);
                    self.remove(i);
                    Tracked {
                        handle: Handle::None,
                        ..tracked
                    }
                }
                tcp::Outcome::Invalid { why, shrink_to_ns } => {
                    if let Some(t) = shrink_to_ns {
                        self.refresh(i, now_ns + t, now_ns);
                    }
                    self.invalid(Invalid::from_tcp(why))
                }
                tcp::Outcome::Reopen => {
                    self.remove(i);
                    self.new_tcp(key, tag, &seg, fragmented, bytes, now_ns)
                }
            }
        } else {
            self.new_tcp(key, tag, &seg, fragmented, bytes, now_ns)
        }
    }

    /// Gives `seg` the end of a segment of `whole_l4` bytes (header and data) when known;
    /// `false` when not (0).
    #[cold]
    #[inline(never)]
    fn whole_segment(
        seg: &mut Segment<'_>,
        p: &crate::wire::tcp::Packet<&[u8]>,
        whole_l4: u32,
    ) -> bool {
        if whole_l4 == 0 {
            return false;
        }
        let flags = p.flags();
        let len = whole_l4.saturating_sub(p.header_len() as u32)
            + u32::from(flags.contains(crate::wire::tcp::Flags::SYN))
            + u32::from(flags.contains(crate::wire::tcp::Flags::FIN));
        seg.end = seg.seq.wrapping_add(len);
        true
    }

    fn new_tcp(
        &mut self,
        key: &FlowKey,
        tag: u32,
        seg: &Segment<'_>,
        fragmented: bool,
        bytes: u64,
        now_ns: u64,
    ) -> Tracked {
        let cfg = &self.cfg.tcp;
        // The commonest first segment, a SYN, without the general state machine.
        if let Some((mut t, timeout)) = TcpTrack::first_syn(seg, cfg) {
            if fragmented {
                t.seen[0].flags |= tcp::seen_flags::BE_LIBERAL;
            }
            let e = Entry::new(*key, now_ns + timeout, bytes, L4::Tcp(t));
            return self.new_pending(e, tag);
        }
        let Some(mut t) = TcpTrack::new(seg, cfg) else {
            return self.invalid(Invalid::TcpNotNew);
        };
        if fragmented {
            t.seen[0].flags |= tcp::seen_flags::BE_LIBERAL;
        }
        match t.packet(Dir::Orig, seg, cfg, Status::default(), 0) {
            tcp::Outcome::Accept { timeout_ns, .. } => {
                let timeout = timeout_ns.unwrap_or(cfg.timeouts.of(t.state));
                let e = Entry::new(*key, now_ns + timeout, bytes, L4::Tcp(t));
                self.new_pending(e, tag)
            }
            tcp::Outcome::Invalid { why, .. } => self.invalid(Invalid::from_tcp(why)),
            _ => self.invalid(Invalid::TcpState),
        }
    }

    /// What a TCP segment the tracker accepted does to entry `i` (both paths share it): its
    /// count, the status bits, the deadline.
    #[inline(always)]
    fn tcp_accepted(
        &mut self,
        i: u32,
        dir: Dir,
        bytes: u64,
        timeout_ns: Option<u64>,
        set_assured: bool,
        now_ns: u64,
    ) {
        let e = &mut self.entries[i as usize];
        let carry = tcp_accepted_entry(
            e,
            &mut self.wheel,
            i,
            dir,
            bytes,
            timeout_ns,
            set_assured,
            now_ns,
        );
        if carry.any() {
            self.carry(i, dir, carry);
        }
    }

    /// What a UDP datagram does to its entry `i` (both paths share it; `stream_after_ns`
    /// from the entry's UDP state): its count, the stream's assured bit, the deadline.
    #[inline(always)]
    fn udp_seen(&mut self, i: u32, dir: Dir, bytes: u64, stream_after_ns: u64, now_ns: u64) {
        let carry = udp_seen_entry(
            &mut self.entries[i as usize],
            &mut self.wheel,
            &self.cfg,
            i,
            dir,
            bytes,
            stream_after_ns,
            now_ns,
        );
        if carry.any() {
            self.carry(i, dir, carry);
        }
    }

    /// The hint for a packet's tuple without a prefetch pass ([`Hint`]: its tag, no guess).
    /// Out of line: a worker's packets come with the prefetch pass's hint, and the hash
    /// inlined into the stateful stage lengthened its path by its register pressure.
    #[inline(never)]
    pub fn hint_of(&self, key: &FlowKey) -> Hint {
        Hint::probe(self.tag(key))
    }

    /// Checks every index reference against its entry: the entry is live, under the tag of
    /// the tuple the reference stands for, and the reference says [`REF_NAT`] exactly when the
    /// entry has a binding ([`REF_REPLY`] only then); every live entry has its references.
    #[cfg(test)]
    pub(crate) fn assert_references(&self) {
        let mut seen = 0u32;
        for (tag, r) in self.index.references() {
            let i = (r >> REF_SHIFT) as usize;
            let e = &self.entries[i];
            assert!(e.has(status::LIVE), "reference {r:#x} to a free slot");
            let nat = e.has(status::NAT);
            assert_eq!(r & REF_NAT != 0, nat, "reference {r:#x}: NAT flag");
            let key = if r & REF_REPLY != 0 {
                assert!(nat, "a reply reference {r:#x} without a binding");
                self.replies[i]
            } else {
                seen += 1;
                e.key.key()
            };
            assert_eq!(tag, self.tag(&key), "reference {r:#x} under another tag");
        }
        let live = self.entries.iter().filter(|e| e.has(status::LIVE)).count();
        assert_eq!(seen as usize, live, "live entries without their reference");
    }

    /// [`Conntrack::find_tagged`], trying the hint's guess first.
    #[inline(always)]
    fn find_hinted(&self, k: &FlowKey, hint: Hint) -> Option<(u32, Dir)> {
        let r = hint.first;
        // An original tuple's reference (a NAT reply's, [`REF_REPLY`], is left to the probe).
        if r & REF_REPLY == 0 {
            if let Some(e) = self.entries.get((r >> REF_SHIFT) as usize) {
                let rest = Words::rest(k.src_port, k.dst_port, k);
                let (orig, reply) = e
                    .key
                    .matches_both_live(k, rest, Words::reversed_rest(rest, k));
                if orig | reply {
                    let dir = if orig { Dir::Orig } else { Dir::Reply };
                    return Some((r >> REF_SHIFT, dir));
                }
            }
        }
        self.find_unzoned(k, hint.tag)
    }

    /// [`Conntrack::find_tagged`] for the lean path, which takes no entry outside the
    /// default zone: the first entry in the default zone holding the tuple (an entry with
    /// [`status::ZONED`] is passed over by its mask; the general path then finds it,
    /// comparing zones).
    #[inline(always)]
    fn find_unzoned(&self, k: &FlowKey, tag: u32) -> Option<(u32, Dir)> {
        let entries = &self.entries;
        let replies = &self.replies;
        let w = Words::of(k);
        let rev_rest = Words::reversed_rest(w.rest, k);
        for r in self.index.candidates(tag) {
            let i = r >> REF_SHIFT;
            if r & REF_REPLY != 0 {
                // The reply tuple of a NAT binding, of an entry in the default zone.
                if Words::of(&replies[i as usize]).is(&w) && !entries[i as usize].has(status::ZONED)
                {
                    return Some((i, Dir::Reply));
                }
                continue;
            }
            let e = &entries[i as usize];
            let (orig, reply) = e.key.matches_both_unzoned(k, w.rest, rev_rest);
            let reply = reply & !e.has(status::NAT);
            if orig | reply {
                let dir = if orig { Dir::Orig } else { Dir::Reply };
                return Some((i, dir));
            }
        }
        None
    }

    /// The lean path for the commonest packet: a TCP ACK segment (no SYN, FIN or RST) or a
    /// UDP datagram, not a fragment, of a live connection in which it is ESTABLISHED, and (for
    /// TCP) in the tracker's ESTABLISHED state with its window checks passed. `key` is
    /// `info.flow`, `hint` what the prefetch pass learnt of it ([`Hint`]). Tracks such a packet exactly
    /// as [`Conntrack::track`] does (the same shared updates: the window's, the counters', the
    /// deadline's) and answers its entry and direction, its state being ESTABLISHED; any
    /// other packet (a bad checksum, other flags, a miss, an expired entry, the first packet
    /// of a direction, a segment the window checks refuse...) gets `None` with nothing
    /// changed, for `track` to judge.
    #[inline(always)]
    pub fn track_established(
        &mut self,
        frame: &[u8],
        info: &PacketInfo,
        key: &FlowKey,
        hint: Hint,
        now_ns: u64,
    ) -> Option<Found> {
        if hint.first == ABSENT || !matches!(info.frag, Fragment::None) {
            return None;
        }
        let l4 = info.l4_bytes(frame)?;
        let verify = self.cfg.checksum && info.l4_csum != RxCsum::Good;
        let bytes = u64::from(info.l3_len);
        match key.proto {
            ip_proto::TCP => self.established_tcp(key, l4, verify, bytes, hint, now_ns),
            ip_proto::UDP => self.established_udp(key, l4, verify, bytes, hint, now_ns),
            _ => None,
        }
    }

    /// The lean paths' last step: a counter's carry taken into the wide counters.
    #[inline(always)]
    fn counted(&mut self, found: Found, carry: Carry) -> Found {
        if carry.any() {
            self.carry(found.id.0, found.dir, carry);
        }
        found
    }

    /// [`Conntrack::track_established`] for TCP: the checks `track_tcp` makes, in its order,
    /// each falling back where `track_tcp` would do anything but the ESTABLISHED ACK.
    #[inline(always)]
    fn established_tcp(
        &mut self,
        key: &FlowKey,
        l4: &[u8],
        verify: bool,
        bytes: u64,
        hint: Hint,
        now_ns: u64,
    ) -> Option<Found> {
        let p = crate::wire::tcp::Packet::new_checked(l4).ok()?;
        // ACK without SYN, FIN or RST: the flag class ACK, and a combination Linux accepts
        // (`tcp::valid_flags`: URG, PSH, ECE and CWR may come with it).
        const CLASS: u8 = 0x17;
        if p.flags().0 & CLASS != 0x10 {
            return None;
        }
        if verify && !Self::l4_checksum_ok(key, l4) {
            return None;
        }
        let (i, dir) = self.find_hinted(key, hint)?;
        // The entry borrowed once (beside the wheel and the settings): every read and write
        // of the packet's update goes through it.
        let Conntrack {
            cfg,
            entries,
            wheel,
            ..
        } = self;
        let e = established_entry(entries, i, dir, now_ns)?;
        let st = e.tcp_status();
        let L4::Tcp(t) = &mut e.l4 else {
            return None;
        };
        let seg = Segment::from_packet(&p);
        let (timeout, set_assured) = t.established_ack_effect(dir, &seg, &cfg.tcp, st)?;
        let carry = tcp_accepted_entry(e, wheel, i, dir, bytes, Some(timeout), set_assured, now_ns);
        let found = Found::of(e, i, dir);
        Some(self.counted(found, carry))
    }

    /// [`Conntrack::track_established`] for UDP: `track_udp`'s checks, then its update of a
    /// found entry.
    #[inline(always)]
    fn established_udp(
        &mut self,
        key: &FlowKey,
        l4: &[u8],
        verify: bool,
        bytes: u64,
        hint: Hint,
        now_ns: u64,
    ) -> Option<Found> {
        let p = udp::Packet::new_checked(l4).ok()?;
        if verify && p.checksum() != 0 && !Self::l4_checksum_ok(key, &l4[..usize::from(p.len())]) {
            return None;
        }
        let (i, dir) = self.find_hinted(key, hint)?;
        let Conntrack {
            cfg,
            entries,
            wheel,
            ..
        } = self;
        let e = established_entry(entries, i, dir, now_ns)?;
        let L4::Udp { stream_after_ns } = e.l4 else {
            return None;
        };
        let carry = udp_seen_entry(e, wheel, cfg, i, dir, bytes, stream_after_ns, now_ns);
        let found = Found::of(e, i, dir);
        Some(self.counted(found, carry))
    }

    #[allow(clippy::too_many_arguments)]
    fn track_udp(
        &mut self,
        key: &FlowKey,
        tag: Option<u32>,
        l4: &[u8],
        fragmented: bool,
        verify: bool,
        bytes: u64,
        now_ns: u64,
    ) -> Tracked {
        if !fragmented {
            let Ok(p) = udp::Packet::new_checked(l4) else {
                return self.invalid(Invalid::Truncated);
            };
            // A zero checksum means none (conntrack accepts it for IPv6 too). The sum covers
            // the datagram as its length field says (`new_checked` saw it fits).
            if verify
                && p.checksum() != 0
                && !Self::l4_checksum_ok(key, &l4[..usize::from(p.len())])
            {
                return self.invalid(Invalid::BadChecksum);
            }
        }
        let tag = match tag {
            Some(t) => t,
            None => self.tag(key),
        };
        let Some((i, dir)) = self.lookup_tagged(key, tag, now_ns) else {
            let e = Entry::new(
                *key,
                now_ns + self.cfg.udp_ns,
                bytes,
                L4::Udp {
                    stream_after_ns: now_ns + self.cfg.udp_stream_after_ns,
                },
            );
            return self.new_pending(e, tag);
        };
        let state = self.entries[i as usize].state_for(dir);
        let stream_after = match self.entries[i as usize].l4 {
            L4::Udp { stream_after_ns } => stream_after_ns,
            _ => 0,
        };
        self.udp_seen(i, dir, bytes, stream_after, now_ns);
        Tracked {
            state,
            dir,
            handle: Handle::Entry(EntryId(i)),
            invalid: None,
        }
    }

    /// Trackers with one timeout and no state: ICMP queries and the generic tracker.
    /// `may_start`: whether a miss starts a connection.
    #[inline]
    fn track_simple(
        &mut self,
        key: &FlowKey,
        bytes: u64,
        timeout_ns: u64,
        now_ns: u64,
        may_start: bool,
    ) -> Tracked {
        let tag = self.tag(key);
        let Some((i, dir)) = self.lookup_tagged(key, tag, now_ns) else {
            if !may_start {
                return self.invalid(Invalid::IcmpNotNew);
            }
            let e = Entry::new(*key, now_ns + timeout_ns, bytes, L4::Other);
            return self.new_pending(e, tag);
        };
        let e = &mut self.entries[i as usize];
        let state = e.state_for(dir);
        let carry = e.account(dir, bytes);
        if dir == Dir::Reply {
            e.set(status::SEEN_REPLY);
        }
        if carry.any() {
            self.carry(i, dir, carry);
        }
        self.refresh(i, now_ns + timeout_ns, now_ns);
        Tracked {
            state,
            dir,
            handle: Handle::Entry(EntryId(i)),
            invalid: None,
        }
    }

    fn track_icmp(
        &mut self,
        key: &FlowKey,
        l4: &[u8],
        fragmented: bool,
        bytes: u64,
        now_ns: u64,
    ) -> Tracked {
        // Both views need only the 8-byte header; `parse_frame` checked it is there.
        if l4.len() < icmpv4::HEADER_LEN {
            return self.invalid(Invalid::Truncated);
        }
        let (ty, quote) = (l4[0], &l4[icmpv4::HEADER_LEN..]);
        match key.family {
            Family::V4 => {
                let p = icmpv4::Packet::new_unchecked(l4);
                if self.cfg.checksum && !fragmented && !p.verify_checksum() {
                    return self.invalid(Invalid::BadChecksum);
                }
                if ty > icmpv4::msg_type::ADDR_MASK_REPLY {
                    return self.invalid(Invalid::IcmpType);
                }
                if icmpv4::is_error(ty) {
                    return self.related(key, quote, now_ns);
                }
                let may_start = matches!(
                    ty,
                    icmpv4::msg_type::ECHO_REQUEST
                        | icmpv4::msg_type::TIMESTAMP
                        | icmpv4::msg_type::INFO_REQUEST
                        | icmpv4::msg_type::ADDR_MASK_REQUEST
                );
                self.track_simple(key, bytes, self.cfg.icmp_ns, now_ns, may_start)
            }
            Family::V6 => {
                if self.cfg.checksum && !fragmented && !Self::l4_checksum_ok(key, l4) {
                    return self.invalid(Invalid::BadChecksum);
                }
                // Neighbour discovery and MLD are never tracked (Linux's `noct_valid_new`).
                if matches!(ty, 130..=136 | 143) {
                    return Tracked::untracked();
                }
                if ty < 128 {
                    return self.related(key, quote, now_ns);
                }
                // Echo request and node information query.
                let may_start = matches!(ty, icmpv6::msg_type::ECHO_REQUEST | 139);
                self.track_simple(key, bytes, self.cfg.icmpv6_ns, now_ns, may_start)
            }
        }
    }

    /// An ICMP error: RELATED to the connection of the packet it quotes, in the direction
    /// that makes the quoted packet's sender its destination.
    fn related(&mut self, outer: &FlowKey, quote: &[u8], now_ns: u64) -> Tracked {
        let Some(inner) = icmp::quoted_key(outer.family, quote) else {
            return self.invalid(Invalid::IcmpQuote);
        };
        if inner.is_icmp() {
            let ty = inner.dst_port.to_be_bytes()[0];
            let query = match inner.family {
                Family::V4 => icmpv4::is_query(ty),
                Family::V6 => icmpv6::is_query(ty),
            };
            if !query {
                // Only queries have an inverse (an error about an error relates to nothing).
                return self.invalid(Invalid::IcmpQuote);
            }
        }
        // The quoted packet went from its sender towards where the error comes from; the
        // error travels the other way, as a packet with the inverted tuple would.
        let inverted = inner.reply();
        let Some((i, dir)) = self.lookup(&inverted, now_ns) else {
            return self.invalid(Invalid::IcmpNoMatch);
        };
        // The error must go to the quoted packet's sender (else an outsider could make any
        // packet RELATED by quoting someone else's connection).
        if outer.dst != inner.src {
            return self.invalid(Invalid::IcmpWrongDestination);
        }
        Tracked {
            state: CtState::Related,
            dir,
            handle: Handle::Entry(EntryId(i)),
            invalid: None,
        }
    }

    /// Stores the NEW connection of an accepted packet; the handle becomes
    /// [`Handle::Entry`]. Does nothing for other handles. Fails (count `ct_full`) when the
    /// table is full and no unassured entry near the new one can be evicted.
    #[inline]
    pub fn confirm(&mut self, tracked: &mut Tracked, now_ns: u64) -> Result<(), TableFull> {
        self.confirm_with(tracked, None, now_ns)
    }

    /// [`Conntrack::confirm`] of a connection whose replies carry `reply` rather than the
    /// inverse of its original tuple (a NAT binding; the caller checked with
    /// [`Conntrack::tuple_in_use`] that no other connection uses it). Needs a table made
    /// with [`Config::nat`]; without it the binding is refused as [`TableFull`] would be.
    #[inline(always)]
    pub fn confirm_with(
        &mut self,
        tracked: &mut Tracked,
        reply: Option<FlowKey>,
        now_ns: u64,
    ) -> Result<(), TableFull> {
        self.confirm_new(tracked, reply.map(|r| (r, None)), false, now_ns)
    }

    /// [`Conntrack::confirm_with`] for a caller that has the reply tuple's index tag (from
    /// [`Conntrack::tag_of`], as NAT's uniqueness probe computes it: it is not computed
    /// again) and whose reply tuple, when it gives one, is known not to be the inverse of the
    /// original tuple (a binding that translates something: the stateful stage drops
    /// identity bindings before it confirms), so that the insertion does not compare them
    /// again.
    #[inline(always)]
    pub fn confirm_translating(
        &mut self,
        tracked: &mut Tracked,
        reply: Option<(FlowKey, Option<u32>)>,
        now_ns: u64,
    ) -> Result<(), TableFull> {
        self.confirm_new(tracked, reply, true, now_ns)
    }

    /// Most packets have nothing to confirm: a test here, the insertion out of line.
    #[inline(always)]
    fn confirm_new(
        &mut self,
        tracked: &mut Tracked,
        reply: Option<(FlowKey, Option<u32>)>,
        translating: bool,
        now_ns: u64,
    ) -> Result<(), TableFull> {
        match tracked.handle {
            Handle::New(_) => self.insert(tracked, reply, translating, now_ns),
            _ => Ok(()),
        }
    }

    /// [`Conntrack::confirm_with`] for a [`Handle::New`]; `translating`: the reply tuple
    /// (if any) is known to differ from the inverse of the original.
    #[inline(never)]
    fn insert(
        &mut self,
        tracked: &mut Tracked,
        reply: Option<(FlowKey, Option<u32>)>,
        translating: bool,
        now_ns: u64,
    ) -> Result<(), TableFull> {
        let Handle::New(p) = tracked.handle else {
            return Ok(());
        };
        let Some(pending) = self.pending_entry(p) else {
            // Tracked too long ago: its would-be entry is gone (see `PENDING`).
            self.stats.ct_full += 1;
            return Err(TableFull);
        };
        // The tuple as a key only when something compares it (a probe, a binding): most
        // insertions need neither.
        let words = pending.key;
        let bytes = u64::from(pending.bytes_lo[0]);
        let at = p.0 as usize % PENDING;
        let tag = self.pending_tag[at];
        // The lookup that tracked the packet missed; only an insertion since can have put its
        // tuple in the table (a second first packet of the flow, or a binding's reply tuple).
        let probe = self.pending_inserts[at] != self.inserts;
        if let Some((i, dir)) = probe
            .then(|| {
                let k = words.key();
                self.lookup_tagged(&k, tag, now_ns)
            })
            .flatten()
        {
            // Another first packet of this flow was confirmed meanwhile: join it (what this
            // one reserved is released; the joined entry holds its own counts).
            self.pending_of[at] = u32::MAX;
            self.settle_counts();
            self.stats.clash += 1;
            let carry = self.entries[i as usize].account(dir, bytes);
            if carry.any() {
                self.carry(i, dir, carry);
            }
            tracked.handle = Handle::Entry(EntryId(i));
            tracked.dir = dir;
            return Ok(());
        }
        if self.free_len == 0 {
            // Entries whose time is up may still wait for the wheel: retire them first.
            self.reap_for_room(now_ns);
        }
        if self.free_len == 0 && !self.early_drop(tag, now_ns) {
            self.stats.ct_full += 1;
            return Err(TableFull);
        }
        // A binding whose reply tuple is not the inverse of the original one.
        let nat = match reply {
            Some((r, t)) => {
                debug_assert!(
                    !translating || r != words.key().reply(),
                    "an identity binding confirmed as translating"
                );
                if !translating && r == words.key().reply() {
                    None
                } else if self.replies.is_empty() {
                    self.stats.ct_full += 1;
                    return Err(TableFull);
                } else {
                    Some((r, t))
                }
            }
            None => None,
        };
        self.free_len -= 1;
        let i = self.free[self.free_len as usize];
        // The scratch slot is copied once, into the entry's slot, and is free again.
        self.pending_of[at] = u32::MAX;
        let e = &mut self.entries[i as usize];
        *e = self.pending[at];
        let slot = self.wheel.arm(i, e.deadline_ns, now_ns);
        e.set_wheel_slot(slot);
        let flag = if nat.is_some() { REF_NAT } else { 0 };
        self.index.insert(tag, i << REF_SHIFT | flag);
        if let Some((reply, reply_tag)) = nat {
            self.entries[i as usize].set(status::NAT);
            self.replies[i as usize] = reply;
            self.stats.nat_live += 1;
            // A reply tuple equal to the original one is found by the entry's own reference.
            // Compared as the lookup's words (the entry's are at hand), not as tuples.
            if !words.matches(&Words::of(&reply)) {
                let t = reply_tag.unwrap_or_else(|| self.tag(&reply));
                debug_assert_eq!(t, self.tag(&reply));
                self.index.insert(t, i << REF_SHIFT | REF_NAT | REF_REPLY);
            }
        }
        self.marks.created(i);
        if self.zone.is_set() {
            self.entries[i as usize].set(status::ZONED);
            self.zones.set(i, self.zone);
        }
        self.stats.created += 1;
        self.inserts = self.inserts.wrapping_add(1);
        tracked.handle = Handle::Entry(EntryId(i));
        if self.count_pending {
            self.counts_confirmed(p.0, i);
        }
        Ok(())
    }

    /// A full table: retires the entries already due (up to a bound), so that a connection
    /// whose timeout has passed never costs a new one its place.
    #[cold]
    #[inline(never)]
    fn reap_for_room(&mut self, now_ns: u64) {
        self.expire(now_ns, 256);
    }

    /// Evicts one expired or unassured entry among the index buckets from `tag`'s home
    /// position (Linux's `early_drop`, which scans a few hash chains).
    #[cold]
    #[inline(never)]
    fn early_drop(&mut self, tag: u32, now_ns: u64) -> bool {
        let entries = &self.entries;
        let victim = self
            .index
            .near(tag, self.cfg.early_drop_scan)
            .map(|r| r >> REF_SHIFT)
            .find(|&i| {
                let e = &entries[i as usize];
                e.deadline_ns <= now_ns || !e.has(status::ASSURED)
            });
        match victim {
            Some(i) if self.entries[i as usize].deadline_ns <= now_ns => {
                self.expire_one(i);
                true
            }
            Some(i) => {
                self.remove(i);
                self.stats.early_drop += 1;
                true
            }
            None => false,
        }
    }

    /// Removes entries whose timeout has passed, visiting at most `budget` entries; returns how
    /// many it removed. Call between bursts.
    pub fn expire(&mut self, now_ns: u64, budget: u32) -> u32 {
        let mut removed = 0;
        for _ in 0..budget {
            let Some(i) = self.wheel.pop_due(now_ns) else {
                break;
            };
            let e = &mut self.entries[i as usize];
            e.set_wheel_slot(UNARMED);
            let deadline = e.deadline_ns;
            if deadline <= now_ns {
                self.remove(i);
                self.stats.expired += 1;
                removed += 1;
            } else {
                let slot = self.wheel.arm(i, deadline, now_ns);
                e.set_wheel_slot(slot);
            }
        }
        removed
    }

    /// Remembers the rule set's verdict for the packets of an entry travelling `dir`: `tag`
    /// (below [`VERDICT_VALID`]) under rule set `epoch`. A new epoch forgets the other
    /// direction's.
    #[inline]
    pub fn set_verdict(&mut self, id: EntryId, dir: Dir, epoch: u32, tag: u32) {
        if let Some(e) = self.entries.get_mut(id.0 as usize) {
            if e.has(status::LIVE) {
                if e.verdict_epoch != epoch || !e.has(status::VERDICT) {
                    e.verdict = [0; 2];
                    e.verdict_epoch = epoch;
                    e.set(status::VERDICT);
                }
                e.verdict[dir as usize] = (tag & !VERDICT_VALID) | VERDICT_VALID;
            }
        }
    }

    /// The cached verdict tag for an entry's packets travelling `dir`, if it was given under
    /// rule set `epoch`.
    #[inline]
    pub fn verdict(&self, id: EntryId, dir: Dir, epoch: u32) -> Option<u32> {
        let e = self.entries.get(id.0 as usize)?;
        let v = e.verdict[dir as usize];
        (e.has(status::LIVE)
            && e.has(status::VERDICT)
            && e.verdict_epoch == epoch
            && v & VERDICT_VALID != 0)
            .then_some(v & !VERDICT_VALID)
    }

    fn info(&self, i: u32, now_ns: u64) -> Option<ConnInfo> {
        let e = self.entries.get(i as usize)?;
        if !e.has(status::LIVE) || e.deadline_ns <= now_ns {
            return None;
        }
        Some(ConnInfo {
            id: EntryId(i),
            orig: e.key.key(),
            reply: self.reply_of(i),
            tcp_state: match e.l4 {
                L4::Tcp(t) => Some(t.state),
                _ => None,
            },
            seen_reply: e.has(status::SEEN_REPLY),
            assured: e.has(status::ASSURED),
            mark: self.marks.get(i),
            zone: self.zone_of(i),
            timeout_left_ns: e.deadline_ns - now_ns,
            packets: [0, 1].map(|d| {
                u64::from(self.wide[i as usize].packets[d]) << 16 | u64::from(e.packets_lo[d])
            }),
            bytes: [0, 1].map(|d| {
                u64::from(self.wide[i as usize].bytes[d]) << 32 | u64::from(e.bytes_lo[d])
            }),
        })
    }

    /// One live entry.
    pub fn get(&self, id: EntryId, now_ns: u64) -> Option<ConnInfo> {
        self.info(id.0, now_ns)
    }

    /// Every live entry, in slab order (slow path: `conntrack list`).
    pub fn list(&self, now_ns: u64) -> impl Iterator<Item = ConnInfo> + '_ {
        (0..self.cfg.capacity).filter_map(move |i| self.info(i, now_ns))
    }

    /// Live entries of slots `from..from + slots` that `filter` selects, appended to `out`
    /// until it holds `out.capacity()` (slow path: `conntrack list` a chunk at a time, so a
    /// worker never stalls long: at most `slots` slots looked at, however few are live).
    /// Returns the slot to continue from, `None` when the table is done. Never grows `out`.
    pub fn list_from(
        &self,
        from: u32,
        slots: u32,
        filter: &filter::CtFilter,
        out: &mut Vec<ConnInfo>,
        now_ns: u64,
    ) -> Option<u32> {
        let end = from.saturating_add(slots).min(self.cfg.capacity);
        let mut i = from;
        while i < end {
            if out.len() == out.capacity() {
                return Some(i);
            }
            if let Some(c) = self.info(i, now_ns) {
                if filter.matches(&c) {
                    out.push(c);
                }
            }
            i += 1;
        }
        (end < self.cfg.capacity).then_some(end)
    }

    /// Removes the live entries of slots `from..from + count`, at most `max_removed` of them
    /// (slow path: `conntrack flush` a chunk at a time). Returns how many it removed and the
    /// slot to continue from, `None` when the table is done.
    pub fn flush_from(&mut self, from: u32, count: u32, max_removed: u32) -> (u32, Option<u32>) {
        let end = from.saturating_add(count).min(self.cfg.capacity);
        let mut removed = 0;
        for i in from..end {
            if self.entries[i as usize].has(status::LIVE) {
                self.remove(i);
                removed += 1;
                if removed >= max_removed && i + 1 < self.cfg.capacity {
                    return (removed, Some(i + 1));
                }
            }
        }
        (removed, (end < self.cfg.capacity).then_some(end))
    }

    /// The live entries of slots `from..from + count` that `filter` selects, removed when
    /// `delete` (slow path: `conntrack delete` and `count` a chunk at a time; a removed entry
    /// goes as an expired one does: index, NAT reply reference, wheel, connlimit counts).
    /// Returns how many it selected and the slot to continue from, `None` when the table is
    /// done. An entry whose time is up but not yet reaped is not selected (`list` does not
    /// show it either).
    ///
    /// A delete stops early once it removed `max_removed` (a removal touches the index and
    /// the wheel out of cache, some ten times a slot's test), to continue from the next slot.
    pub fn select_from(
        &mut self,
        from: u32,
        count: u32,
        filter: &filter::CtFilter,
        delete: bool,
        max_removed: u32,
        now_ns: u64,
    ) -> (u32, Option<u32>) {
        let end = from.saturating_add(count).min(self.cfg.capacity);
        let mut selected = 0;
        for i in from..end {
            if !self.entries[i as usize].has(status::LIVE) {
                continue;
            }
            if let Some(c) = self.info(i, now_ns) {
                if filter.matches(&c) {
                    selected += 1;
                    if delete {
                        self.remove(i);
                        if selected >= max_removed && i + 1 < self.cfg.capacity {
                            return (selected, Some(i + 1));
                        }
                    }
                }
            }
        }
        (selected, (end < self.cfg.capacity).then_some(end))
    }

    /// Removes every entry (slow path: `conntrack flush`; touches the whole table).
    pub fn flush(&mut self) {
        if self.counting {
            for i in 0..self.cfg.capacity {
                self.counts_end(i);
            }
        }
        for e in self.entries.iter_mut() {
            e.clear_status();
            e.set_wheel_slot(UNARMED);
        }
        self.wide.fill(Wide::default());
        self.index.clear();
        self.wheel.clear();
        self.stats.nat_live = 0;
        for (slot, i) in self.free.iter_mut().zip((0..self.cfg.capacity).rev()) {
            *slot = i;
        }
        self.free_len = self.cfg.capacity;
    }
}
