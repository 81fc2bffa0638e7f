//! FAST PATH: no allocation, lock, syscall or log.
//!
//! Fragments are held until their datagram is whole ([`Reassembly`], by the worker), as
//! Linux's conntrack reassembles before any table; the whole datagram is then judged from its
//! first fragment, and the fragment table ([`Fragments`]) carries that verdict to the other
//! fragments, which follow it in offset order.
//!
//! Invariants of the table:
//! - It has a fixed number of slots; a datagram is keyed by (source, destination, protocol,
//!   identification, family), the protocol for IPv4 only (an IPv6 fragment's Fragment header
//!   names the first header of the fragmentable part, which a later fragment cannot know
//!   past: Linux's `ip6frag` key has no protocol either), and lives at most `timeout_ns` (Linux's `ipfrag_time`, 30 s)
//!   after its first fragment.
//! - A datagram remembers the byte ranges seen so far as at most [`MAX_RUNS`] disjoint runs.
//!   A fragment that partly overlaps a run, reaches past the end a final fragment announced,
//!   announces a different end, or would need more runs poisons the datagram: it and every
//!   later fragment of it are dropped (RFC 5722; Linux drops the whole queue too). A fragment
//!   entirely inside a run is a duplicate and is dropped alone.
//! - A non-first fragment with no first fragment recorded gets [`FragError::NoFirst`]: never a
//!   free pass.
//! - A datagram is forgotten once its runs cover `[0, end)`.

use crate::wire::{ip_proto, ipv4, ipv6, Family, Fragment, IpAddr128, PacketInfo};

/// Most disjoint byte runs remembered per datagram.
pub const MAX_RUNS: usize = 8;
/// Slots probed from a key's home slot.
const PROBE: usize = 8;

/// Why a fragment must be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FragError {
    /// A non-first fragment whose first fragment was not seen (or its record expired).
    NoFirst,
    /// It partly overlaps a fragment already seen; the datagram is poisoned.
    Overlap,
    /// It reaches past the datagram's end, or announces a second, different end.
    Oversized,
    /// More than [`MAX_RUNS`] holes; the datagram is poisoned.
    TooFragmented,
    /// An earlier fragment poisoned the datagram.
    Poisoned,
    /// Exactly covers bytes already seen; dropped alone.
    Duplicate,
    /// No slot free for a new datagram (its first fragment is dropped).
    TableFull,
    /// Not a fragment of the expected kind, or its header cannot be read.
    NotAFragment,
    /// Its datagram is not whole yet: hold it ([`Reassembly`]). Never counted as a drop.
    Incomplete,
    /// Its datagram was not whole within the fragment timeout (`ipfrag_time`).
    Timeout,
    /// Given up for room: the held fragments or bytes reached their bound.
    Overflow,
}

impl FragError {
    pub const COUNT: usize = 11;

    /// Every error, in index order.
    pub const ALL: [FragError; FragError::COUNT] = [
        FragError::NoFirst,
        FragError::Overlap,
        FragError::Oversized,
        FragError::TooFragmented,
        FragError::Poisoned,
        FragError::Duplicate,
        FragError::TableFull,
        FragError::NotAFragment,
        FragError::Incomplete,
        FragError::Timeout,
        FragError::Overflow,
    ];

    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            FragError::NoFirst => "frag_no_first",
            FragError::Overlap => "frag_overlap",
            FragError::Oversized => "frag_oversized",
            FragError::TooFragmented => "frag_too_fragmented",
            FragError::Poisoned => "frag_poisoned",
            FragError::Duplicate => "frag_duplicate",
            FragError::TableFull => "frag_table_full",
            FragError::NotAFragment => "frag_not_a_fragment",
            FragError::Incomplete => "frag_incomplete",
            FragError::Timeout => "frag_timeout",
            FragError::Overflow => "frag_overflow",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr128,
    dst: IpAddr128,
    id: u32,
    proto: u8,
    family: Family,
}

impl Key {
    /// The key of an unused slot.
    const NONE: Key = Key {
        src: IpAddr128::UNSPECIFIED,
        dst: IpAddr128::UNSPECIFIED,
        id: 0,
        proto: 0,
        family: Family::V4,
    };
}

#[derive(Clone, Copy, Debug)]
struct Slot<V> {
    key: Key,
    used: bool,
    poisoned: bool,
    nruns: u8,
    /// End of the datagram's fragmentable part, once the final fragment was seen.
    end: Option<u32>,
    expires_ns: u64,
    runs: [(u32, u32); MAX_RUNS],
    verdict: V,
}

/// The fragment table; `V` is whatever the caller decided for the first fragment.
#[derive(Debug)]
pub struct Fragments<V: Copy> {
    slots: Box<[Slot<V>]>,
    mask: usize,
    timeout_ns: u64,
    seed: u64,
    /// Drops by [`FragError::index`].
    pub drops: [u64; FragError::COUNT],
    /// Datagrams whose every byte was seen.
    pub completed: u64,
}

/// Where a fragment's data sits in its datagram: `(offset, length, more fragments)`.
fn placement(frame: &[u8], info: &PacketInfo) -> Option<(u32, u32, bool)> {
    piece(frame, info).map(|(o, l, m, _)| (o, l, m))
}

/// The header fields Linux's IPv4 reassembly (`ip_frag_reasm`) leaves on the datagram it
/// makes: fed each fragment's IP datagram ([`WholeV4::see`]), then [`WholeV4::finish`] writes
/// the whole's total length, no fragment offset or MF, DF only when the largest fragment
/// had it (`max_df_size == max_size`), and the header checksum made again.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WholeV4 {
    max_size: usize,
    max_df: usize,
}

impl WholeV4 {
    pub(crate) fn see(&mut self, ip: &[u8]) {
        self.max_size = self.max_size.max(ip.len());
        if ip.get(6).is_some_and(|b| b & 0x40 != 0) {
            self.max_df = self.max_df.max(ip.len());
        }
    }

    /// `header`: the first fragment's IPv4 header, at least its IHL long.
    pub(crate) fn finish(self, header: &mut [u8], total: u16) {
        let ihl = usize::from(header[0] & 0x0f) * 4;
        header[2..4].copy_from_slice(&total.to_be_bytes());
        header[6] = if self.max_df == self.max_size {
            0x40
        } else {
            0
        };
        header[7] = 0;
        header[10..12].fill(0);
        let c = crate::wire::checksum::checksum(&header[..ihl]);
        header[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

/// Where an IPv6 packet's Fragment header is (`ip` from the fixed header on), walked as
/// nf_defrag_ipv6's `find_prev_fhdr` walks: over hop-by-hop, routing, destination options and
/// AH headers. Answers the offset of the byte that names it (6 in the fixed header, else the
/// first byte of the header before it) and its own offset, with its 8 bytes present; `None`
/// when another header comes first or the chain runs past `ip`.
pub(crate) fn v6_fragment_header(ip: &[u8]) -> Option<(usize, usize)> {
    let (mut at, mut nh, mut next) = (40usize, 6usize, *ip.get(6)?);
    while next != ip_proto::IPV6_FRAG {
        let len = usize::from(*ip.get(at + 1)?);
        let len = match next {
            ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => (len + 1) * 8,
            ip_proto::AH => (len + 2) * 4,
            _ => return None,
        };
        (nh, next) = (at, *ip.get(at)?);
        at += len;
    }
    ip.get(at..at + 8)?;
    Some((nh, at))
}

/// [`placement`], and where the fragment's data starts in its IP packet.
pub(crate) fn piece(frame: &[u8], info: &PacketInfo) -> Option<(u32, u32, bool, usize)> {
    let (offset, more) = match info.frag {
        Fragment::None => return None,
        Fragment::First { more, .. } => (0u32, more),
        Fragment::Later {
            offset_bytes, more, ..
        } => (u32::from(offset_bytes), more),
    };
    let l3 = frame.get(usize::from(info.l3_offset)..info.l3_end())?;
    let data_start = match info.flow?.family {
        Family::V4 => usize::from(l3.first()? & 0x0f) * 4,
        Family::V6 => {
            let ip = ipv6::Packet::new_checked(l3).ok()?;
            let mut at = None;
            for hdr in ip.ext_headers() {
                let hdr = hdr.ok()?;
                if hdr.header_type == ip_proto::IPV6_FRAG {
                    at = Some(ipv6::HEADER_LEN + hdr.offset + ipv6::FRAGMENT_HEADER_LEN);
                }
            }
            at?
        }
    };
    let len = l3.len().checked_sub(data_start)? as u32;
    debug_assert!(data_start >= ipv4::HEADER_LEN);
    Some((offset, len, more, data_start))
}

impl<V: Copy + Default> Fragments<V> {
    /// A table of at least `datagrams` slots (rounded up to a power of two).
    pub fn new(datagrams: u32, timeout_ns: u64, seed: u64) -> Fragments<V> {
        let n = (datagrams.max(PROBE as u32) as usize).next_power_of_two();
        let empty = Slot {
            key: Key::NONE,
            used: false,
            poisoned: false,
            nruns: 0,
            end: None,
            expires_ns: 0,
            runs: [(0, 0); MAX_RUNS],
            verdict: V::default(),
        };
        Fragments {
            slots: vec![empty; n].into_boxed_slice(),
            mask: n - 1,
            timeout_ns,
            seed,
            drops: [0; FragError::COUNT],
            completed: 0,
        }
    }
}

impl<V: Copy> Fragments<V> {
    fn key(info: &PacketInfo) -> Option<Key> {
        let flow = info.flow?;
        let id = match info.frag {
            Fragment::First { id, .. } | Fragment::Later { id, .. } => id,
            Fragment::None => return None,
        };
        Some(Key {
            src: flow.src,
            dst: flow.dst,
            id,
            proto: match flow.family {
                Family::V4 => flow.proto,
                Family::V6 => 0,
            },
            family: flow.family,
        })
    }

    fn home(&self, k: &Key) -> usize {
        let a = super::halves(&k.src).1;
        let b = super::halves(&k.dst).1;
        let c = u64::from(k.id) << 8 | u64::from(k.proto);
        let h = super::mix(a ^ self.seed, b ^ c ^ super::SEED_MIX);
        (h as usize) & self.mask
    }

    fn find(&self, k: &Key, now_ns: u64) -> Option<usize> {
        let home = self.home(k);
        (0..PROBE).map(|i| (home + i) & self.mask).find(|&s| {
            let slot = &self.slots[s];
            slot.used && slot.expires_ns > now_ns && slot.key == *k
        })
    }

    /// How long a datagram's fragments are awaited after its first.
    pub fn timeout_ns(&self) -> u64 {
        self.timeout_ns
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self, e: FragError) -> FragError {
        self.drops[e.index()] += 1;
        e
    }

    /// Records the first fragment of a datagram and the verdict it got. An `Err` means the
    /// first fragment must be dropped too.
    pub fn first(
        &mut self,
        frame: &[u8],
        info: &PacketInfo,
        verdict: V,
        now_ns: u64,
    ) -> Result<(), FragError> {
        let (Some(k), Some((0, len, true))) = (Self::key(info), placement(frame, info)) else {
            return Err(self.fail(FragError::NotAFragment));
        };
        if let Some(s) = self.find(&k, now_ns) {
            // A second first fragment: a duplicate if it covers what the first covered.
            let slot = &self.slots[s];
            if slot.poisoned {
                return Err(self.fail(FragError::Poisoned));
            }
            return Err(self.place(s, 0, len, true));
        }
        let home = self.home(&k);
        let Some(s) = (0..PROBE)
            .map(|i| (home + i) & self.mask)
            .find(|&s| !self.slots[s].used || self.slots[s].expires_ns <= now_ns)
        else {
            return Err(self.fail(FragError::TableFull));
        };
        let slot = &mut self.slots[s];
        slot.key = k;
        slot.used = true;
        slot.poisoned = false;
        slot.nruns = 1;
        slot.runs[0] = (0, len);
        slot.end = None;
        slot.expires_ns = now_ns.saturating_add(self.timeout_ns);
        slot.verdict = verdict;
        Ok(())
    }

    /// The verdict for a non-first fragment: its first fragment's, or why it must be dropped.
    pub fn later(&mut self, frame: &[u8], info: &PacketInfo, now_ns: u64) -> Result<V, FragError> {
        let (Some(k), Some((offset, len, more))) = (Self::key(info), placement(frame, info)) else {
            return Err(self.fail(FragError::NotAFragment));
        };
        if offset == 0 {
            return Err(self.fail(FragError::NotAFragment));
        }
        let Some(s) = self.find(&k, now_ns) else {
            return Err(self.fail(FragError::NoFirst));
        };
        if self.slots[s].poisoned {
            return Err(self.fail(FragError::Poisoned));
        }
        let verdict = self.slots[s].verdict;
        match self.place(s, offset, len, more) {
            FragError::NotAFragment => Ok(verdict),
            e => Err(e),
        }
    }

    /// Adds `[offset, offset + len)` to slot `s`; `NotAFragment` stands for "placed".
    fn place(&mut self, s: usize, offset: u32, len: u32, more: bool) -> FragError {
        let end = offset + len;
        let slot = &mut self.slots[s];
        let runs = &slot.runs[..usize::from(slot.nruns)];
        let mut err = None;
        if let Some(total) = slot.end {
            if end > total || (!more && end != total) {
                err = Some(FragError::Oversized);
            }
        } else if !more && runs.iter().any(|&(_, e)| e > end) {
            err = Some(FragError::Oversized);
        }
        if err.is_none() {
            if runs.iter().any(|&(a, b)| a <= offset && end <= b) {
                return self.fail(FragError::Duplicate);
            }
            if runs.iter().any(|&(a, b)| offset < b && a < end) {
                err = Some(FragError::Overlap);
            }
        }
        if err.is_none() {
            // Merge with the runs it touches.
            let (mut lo, mut hi) = (offset, end);
            let mut kept = [(0u32, 0u32); MAX_RUNS];
            let mut n = 0;
            for &(a, b) in runs {
                if b == lo || a == hi {
                    lo = lo.min(a);
                    hi = hi.max(b);
                } else {
                    kept[n] = (a, b);
                    n += 1;
                }
            }
            if n == MAX_RUNS {
                err = Some(FragError::TooFragmented);
            } else {
                kept[n] = (lo, hi);
                n += 1;
                slot.runs = kept;
                slot.nruns = n as u8;
                if !more {
                    slot.end = Some(end);
                }
                if let Some(total) = slot.end {
                    if n == 1 && kept[0] == (0, total) {
                        slot.used = false;
                        self.completed += 1;
                    }
                }
                return FragError::NotAFragment;
            }
        }
        let e = err.unwrap_or(FragError::Overlap);
        self.slots[s].poisoned = true;
        self.fail(e)
    }
}

/// Fragments a worker holds at most by default (each is an mbuf of the shared pool).
pub const HELD_FRAGMENTS: u32 = 1024;
/// Bytes of held fragments a worker keeps at most by default: Linux's `ipfrag_high_thresh`
/// (4 MiB, per namespace there).
pub const HELD_BYTES: u64 = 4 << 20;

/// What a whole datagram's judgement needs that its first fragment does not carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Whole {
    /// Its length as reassembled: IPv4's header and data; IPv6's 40-byte header, the headers
    /// before the Fragment header and the fragmentable part (nf_defrag_ipv6 removes the
    /// Fragment header).
    pub len: u32,
    /// Whether its TCP, UDP, ICMP or ICMPv6 checksum verifies over every fragment's bytes
    /// (other protocols have none here; an IPv4 UDP datagram without a sum verifies).
    pub csum_ok: bool,
}

/// No piece.
const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Piece<T> {
    item: Option<T>,
    offset: u32,
    len: u32,
    /// What it counts against the byte bound (its frame's length).
    bytes: u32,
    /// The next piece of its datagram, by offset.
    next: u32,
}

/// What the first fragment tells of the datagram's headers.
#[derive(Clone, Copy, Debug)]
struct Head {
    /// Where the fragmentable part starts in the IP packet.
    data_start: u32,
    /// Where the L4 header starts in the fragmentable part ([`NIL`]: not in the first
    /// fragment, nothing to check).
    l4_skip: u32,
    /// An IPv4 UDP datagram with no checksum.
    udp_zero: bool,
    /// The L4 protocol, after the extension headers of the first fragment (IPv6 keys have
    /// none).
    proto: u8,
}

#[derive(Clone, Copy, Debug)]
struct Datagram {
    key: Key,
    used: bool,
    /// Its pieces in offset order.
    head: u32,
    pieces: u32,
    bytes: u64,
    /// Bytes of data its pieces hold (they never overlap).
    covered: u32,
    /// End of the fragmentable part, once the final fragment came.
    end: Option<u32>,
    /// Begun as the `serial`-th datagram: the oldest is given up first for room.
    serial: u64,
    expires_ns: u64,
    /// A fragment overlapped or overran: its pieces were dropped, and every later fragment
    /// is too until it expires.
    poisoned: bool,
    /// Whole, waiting in the ready queue.
    whole: Option<Whole>,
    first: Option<Head>,
    /// One's-complement sums (folded, big-endian) of its pieces' L4 bytes, added up.
    sum: u64,
}

/// The limits of one worker's held fragments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldLimits {
    pub fragments: u32,
    pub bytes: u64,
    pub timeout_ns: u64,
}

/// Counts of a [`Reassembly`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HoldStats {
    /// Fragments held so far.
    pub held_total: u64,
    /// Datagrams made whole so far.
    pub whole_total: u64,
    /// Datagrams given up after the timeout (with at least one fragment held).
    pub timeouts: u64,
    /// Datagrams given up for room.
    pub overflows: u64,
    /// Whole datagrams whose L4 checksum did not verify.
    pub bad_checksum: u64,
    /// Fragments and datagrams held now.
    pub fragments_now: u32,
    pub datagrams_now: u32,
}

/// Every fragment of a datagram, held until the datagram is whole, as Linux's conntrack
/// reassembles (nf_defrag_ipv4, nf_defrag_ipv6) before any table sees a packet. A whole
/// datagram is given back (its fragments in offset order, with its [`Whole`]) to be judged
/// once, from its first fragment, and sent on or dropped as one; one whose fragments do not
/// all come within the timeout (`ipfrag_time`) is given up. A fragment that partly overlaps
/// one held, reaches past the end a final fragment announced, or announces a different end
/// drops the whole datagram (RFC 5722; Linux since 4.19); one entirely inside what is held is
/// a duplicate, dropped alone. Bounded by fragments and by bytes: at a bound the oldest
/// datagram is given up first. Every item taken in is given back exactly once, by
/// [`Reassembly::take_whole`] or to the `drop` callback (or [`Reassembly::drain`]).
///
/// FAST PATH: no allocation after [`Reassembly::new`]; the worker looks only at
/// [`Reassembly::is_empty`] while nothing is held.
#[derive(Debug)]
pub struct Reassembly<T> {
    pieces: Vec<Piece<T>>,
    free_pieces: Vec<u32>,
    dgrams: Vec<Datagram>,
    free_dgrams: Vec<u32>,
    index: std::collections::HashMap<Key, u32>,
    /// Whole datagrams, in the order they became whole.
    ready: std::collections::VecDeque<u32>,
    limits: HoldLimits,
    bytes: u64,
    serial: u64,
    /// The earliest expiry of a held datagram (`u64::MAX`: none).
    next_due_ns: u64,
    pub stats: HoldStats,
}

impl<T> Reassembly<T> {
    pub fn new(limits: HoldLimits) -> Reassembly<T> {
        let n = limits.fragments as usize;
        let empty = Datagram {
            key: Key::NONE,
            used: false,
            head: NIL,
            pieces: 0,
            bytes: 0,
            covered: 0,
            end: None,
            serial: 0,
            expires_ns: 0,
            poisoned: false,
            whole: None,
            first: None,
            sum: 0,
        };
        Reassembly {
            pieces: (0..n)
                .map(|_| Piece {
                    item: None,
                    offset: 0,
                    len: 0,
                    bytes: 0,
                    next: NIL,
                })
                .collect(),
            free_pieces: (0..n as u32).rev().collect(),
            dgrams: vec![empty; n],
            free_dgrams: (0..n as u32).rev().collect(),
            index: std::collections::HashMap::with_capacity(n),
            ready: std::collections::VecDeque::with_capacity(n),
            limits,
            bytes: 0,
            serial: 0,
            next_due_ns: u64::MAX,
            stats: HoldStats::default(),
        }
    }

    /// Nothing held, nothing whole to give back.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn limits(&self) -> HoldLimits {
        self.limits
    }

    /// Takes in `item`, a fragment (`frame`, parsed as `info`) seen at `now_ns`. What must
    /// be dropped now (the fragment itself, or fragments held before) goes to `drop`, with
    /// why; a datagram it makes whole waits for [`Reassembly::take_whole`].
    pub fn hold(
        &mut self,
        item: T,
        bytes_of: impl FnOnce(&T) -> &[u8],
        info: &PacketInfo,
        now_ns: u64,
        mut drop: impl FnMut(T, FragError),
    ) {
        self.expire(now_ns, &mut drop);
        let frame = bytes_of(&item);
        let (Some(key), Some((offset, len, more, data_start))) =
            (Fragments::<()>::key(info), piece(frame, info))
        else {
            return drop(item, FragError::NotAFragment);
        };
        let bytes = frame.len() as u32;
        // What the datagram's checksum and length need of it.
        let start = usize::from(info.l3_offset) + data_start;
        let data = &frame[start..info.l3_end()];
        let mut head = None;
        let mut from = 0usize;
        if offset == 0 {
            let l4 = usize::from(info.l4_offset);
            let l4_skip = if l4 >= start && l4 < info.l3_end() {
                (l4 - start) as u32
            } else {
                NIL
            };
            let udp_zero = key.family == Family::V4
                && key.proto == ip_proto::UDP
                && l4_skip != NIL
                && data.get(l4_skip as usize + 6..l4_skip as usize + 8) == Some(&[0, 0][..]);
            head = Some(Head {
                data_start: data_start as u32,
                l4_skip,
                udp_zero,
                proto: info.flow.map_or(0, |f| f.proto),
            });
            from = if l4_skip == NIL {
                data.len()
            } else {
                l4_skip as usize
            };
        }
        let sum = u64::from(crate::wire::checksum::sum(&data[from..]));
        if self.limits.fragments == 0 || u64::from(bytes) > self.limits.bytes {
            self.stats.overflows += 1;
            return drop(item, FragError::Overflow);
        }
        if len == 0 {
            // Nothing to place (Linux discards such a fragment too).
            return drop(item, FragError::NotAFragment);
        }
        let mut at = self.index.get(&key).copied();
        let mut prev = NIL;
        if let Some(d) = at {
            if self.dgrams[d as usize].poisoned {
                return drop(item, FragError::Poisoned);
            }
            if self.dgrams[d as usize].whole.is_some() {
                // Whole already, waiting to be judged: anything more is a repeat.
                return drop(item, FragError::Duplicate);
            }
            match self.fit(d, offset, len, more) {
                Ok(p) => prev = p,
                Err(FragError::Duplicate) => return drop(item, FragError::Duplicate),
                Err(e) => {
                    self.give_up(d, FragError::Poisoned, &mut drop);
                    self.poison(key, now_ns);
                    return drop(item, e);
                }
            }
        }
        // Room: the oldest datagram (not yet whole) is given up first, this one included.
        while self.free_pieces.is_empty()
            || self.bytes + u64::from(bytes) > self.limits.bytes
            || (at.is_none() && self.free_dgrams.is_empty())
        {
            let oldest = self
                .index
                .values()
                .copied()
                .filter(|&d| self.dgrams[d as usize].whole.is_none())
                .min_by_key(|&d| self.dgrams[d as usize].serial);
            let Some(o) = oldest else {
                self.stats.overflows += 1;
                return drop(item, FragError::Overflow);
            };
            if self.dgrams[o as usize].pieces > 0 {
                self.stats.overflows += 1;
            }
            self.give_up(o, FragError::Overflow, &mut drop);
            if at == Some(o) {
                at = None;
                prev = NIL;
            }
        }
        let d = match at {
            Some(d) => d,
            None => self.begin(key, now_ns),
        };
        let p = self.free_pieces.pop().expect("room was made");
        let dg = &mut self.dgrams[d as usize];
        if head.is_some() {
            dg.first = head;
        }
        dg.sum += sum;
        let next = if prev == NIL {
            std::mem::replace(&mut dg.head, p)
        } else {
            std::mem::replace(&mut self.pieces[prev as usize].next, p)
        };
        self.pieces[p as usize] = Piece {
            item: Some(item),
            offset,
            len,
            bytes,
            next,
        };
        dg.pieces += 1;
        dg.bytes += u64::from(bytes);
        dg.covered += len;
        if !more {
            dg.end = Some(offset + len);
        }
        self.bytes += u64::from(bytes);
        self.stats.held_total += 1;
        self.stats.fragments_now += 1;
        if dg.end == Some(dg.covered) {
            let w = whole_of(dg);
            dg.whole = Some(w);
            self.stats.whole_total += 1;
            if !w.csum_ok {
                self.stats.bad_checksum += 1;
            }
            self.ready.push_back(d);
        }
    }

    /// Where `[offset, offset + len)` goes among datagram `d`'s pieces: after the piece it
    /// gives (or first, [`NIL`]); or why it cannot.
    fn fit(&self, d: u32, offset: u32, len: u32, more: bool) -> Result<u32, FragError> {
        let dg = &self.dgrams[d as usize];
        let end = offset + len;
        let mut last_end = 0;
        let mut p = dg.head;
        while p != NIL {
            let pc = &self.pieces[p as usize];
            last_end = pc.offset + pc.len;
            p = pc.next;
        }
        match dg.end {
            Some(total) if end > total || (!more && end != total) => {
                return Err(FragError::Oversized)
            }
            None if !more && last_end > end => return Err(FragError::Oversized),
            _ => {}
        }
        // Covered entirely by held pieces (they are disjoint and in order): a duplicate.
        let mut pos = offset;
        let mut overlaps = false;
        let mut prev = NIL;
        let mut p = dg.head;
        while p != NIL {
            let pc = &self.pieces[p as usize];
            let pe = pc.offset + pc.len;
            if pc.offset < offset {
                prev = p;
            }
            if pc.offset < end && offset < pe {
                overlaps = true;
            }
            if pc.offset <= pos && pos < pe {
                pos = pe;
            }
            p = pc.next;
        }
        if overlaps && pos >= end {
            return Err(FragError::Duplicate);
        }
        if overlaps {
            return Err(FragError::Overlap);
        }
        Ok(prev)
    }

    fn begin(&mut self, key: Key, now_ns: u64) -> u32 {
        let d = self.free_dgrams.pop().expect("room was made");
        self.serial += 1;
        let expires_ns = now_ns.saturating_add(self.limits.timeout_ns);
        self.dgrams[d as usize] = Datagram {
            key,
            used: true,
            head: NIL,
            pieces: 0,
            bytes: 0,
            covered: 0,
            end: None,
            serial: self.serial,
            expires_ns,
            poisoned: false,
            whole: None,
            first: None,
            sum: 0,
        };
        self.index.insert(key, d);
        self.stats.datagrams_now += 1;
        self.next_due_ns = self.next_due_ns.min(expires_ns);
        d
    }

    /// A poisoned datagram's record, without pieces, until its time is up.
    fn poison(&mut self, key: Key, now_ns: u64) {
        if !self.free_dgrams.is_empty() {
            let d = self.begin(key, now_ns);
            self.dgrams[d as usize].poisoned = true;
        }
    }

    /// Drops every piece of datagram `d` with `why` and forgets it.
    fn give_up(&mut self, d: u32, why: FragError, drop: &mut impl FnMut(T, FragError)) {
        let dg = &mut self.dgrams[d as usize];
        let mut p = std::mem::replace(&mut dg.head, NIL);
        let key = dg.key;
        dg.used = false;
        self.bytes -= dg.bytes;
        self.stats.fragments_now -= dg.pieces;
        while p != NIL {
            let pc = &mut self.pieces[p as usize];
            let item = pc.item.take().expect("a held piece has its item");
            let next = std::mem::replace(&mut pc.next, NIL);
            self.free_pieces.push(p);
            drop(item, why);
            p = next;
        }
        self.index.remove(&key);
        self.free_dgrams.push(d);
        self.stats.datagrams_now -= 1;
    }

    /// Gives up the datagrams whose time is up at `now_ns` (not those already whole).
    pub fn expire(&mut self, now_ns: u64, mut drop: impl FnMut(T, FragError)) {
        if now_ns < self.next_due_ns {
            return;
        }
        let mut next = u64::MAX;
        for d in 0..self.dgrams.len() {
            let dg = &self.dgrams[d];
            if !dg.used || dg.whole.is_some() {
                continue;
            }
            if dg.expires_ns <= now_ns {
                if dg.pieces > 0 {
                    self.stats.timeouts += 1;
                }
                self.give_up(d as u32, FragError::Timeout, &mut drop);
            } else {
                next = next.min(dg.expires_ns);
            }
        }
        self.next_due_ns = next;
    }

    /// The items of the datagram [`Reassembly::take_whole`] gives next that it has not given
    /// yet, in offset order (for [`crate::classify::payload::gather`]).
    pub fn next_whole(&self) -> impl Iterator<Item = &T> {
        let mut p = self
            .ready
            .front()
            .map_or(NIL, |&d| self.dgrams[d as usize].head);
        std::iter::from_fn(move || {
            let pc = self.pieces.get(p as usize)?;
            p = pc.next;
            pc.item.as_ref()
        })
    }

    /// Gives the next whole datagram's fragments, at most `max` of them, in offset order (the
    /// rest on the next call), and its [`Whole`]; `None` when no datagram is whole.
    pub fn take_whole(&mut self, max: usize, mut f: impl FnMut(T)) -> Option<Whole> {
        let d = *self.ready.front()?;
        let dg = &mut self.dgrams[d as usize];
        let w = dg.whole.expect("ready datagrams are whole");
        let mut n = 0;
        while dg.head != NIL && n < max {
            let p = dg.head;
            let pc = &mut self.pieces[p as usize];
            let item = pc.item.take().expect("a held piece has its item");
            dg.head = std::mem::replace(&mut pc.next, NIL);
            dg.pieces -= 1;
            dg.bytes -= u64::from(pc.bytes);
            self.bytes -= u64::from(pc.bytes);
            self.stats.fragments_now -= 1;
            self.free_pieces.push(p);
            f(item);
            n += 1;
        }
        if dg.head == NIL {
            dg.used = false;
            let key = dg.key;
            self.index.remove(&key);
            self.free_dgrams.push(d);
            self.stats.datagrams_now -= 1;
            self.ready.pop_front();
        }
        Some(w)
    }

    /// Gives up everything held (shutdown, end of a replay) to `drop`, with
    /// [`FragError::Timeout`] (it never became whole).
    pub fn drain(&mut self, mut drop: impl FnMut(T, FragError)) {
        while self
            .take_whole(usize::MAX, |t| drop(t, FragError::Timeout))
            .is_some()
        {}
        for d in 0..self.dgrams.len() {
            if self.dgrams[d].used {
                self.give_up(d as u32, FragError::Timeout, &mut drop);
            }
        }
        self.next_due_ns = u64::MAX;
    }
}

/// The length and checksum verdict of a datagram whose pieces cover `[0, end)`.
fn whole_of(dg: &Datagram) -> Whole {
    let first = dg.first.expect("a whole datagram has its first fragment");
    let end = dg.end.expect("a whole datagram has its end");
    let k = &dg.key;
    let len = match k.family {
        Family::V4 => first.data_start + end,
        Family::V6 => first.data_start - ipv6::FRAGMENT_HEADER_LEN as u32 + end,
    };
    let proto = first.proto;
    let checked = matches!(
        (k.family, proto),
        (_, ip_proto::TCP | ip_proto::UDP)
            | (Family::V4, ip_proto::ICMP)
            | (Family::V6, ip_proto::ICMPV6)
    );
    let csum_ok = if !checked || first.l4_skip == NIL || first.udp_zero || first.l4_skip > end {
        true
    } else {
        let l4_len = end - first.l4_skip;
        let pseudo = match (k.src.to_std(), k.dst.to_std()) {
            _ if proto == ip_proto::ICMP => 0,
            (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                crate::wire::checksum::pseudo_header_v4(&s, &d, proto, l4_len)
            }
            (s, d) => crate::wire::checksum::pseudo_header_v6(&to_v6(s), &to_v6(d), proto, l4_len),
        };
        crate::wire::checksum::folds_to_ones(u64::from(pseudo) + dg.sum)
    };
    Whole { len, csum_ok }
}

fn to_v6(a: std::net::IpAddr) -> std::net::Ipv6Addr {
    match a {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use crate::wire::parse_frame;
    use std::net::Ipv4Addr;

    const SEC: u64 = 1_000_000_000;

    fn spec(ident: u16, len: usize) -> FrameSpec {
        let mut s = FrameSpec::new(
            IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)),
            L4Spec::udp(1000, 2000, &vec![7; len]),
        );
        if let IpSpec::V4 { ident: i, .. } = &mut s.ip {
            *i = ident;
        }
        s
    }

    fn frags(ident: u16) -> Vec<Vec<u8>> {
        spec(ident, 100).fragments(24)
    }

    #[test]
    fn later_fragments_get_the_first_verdict() {
        let f = frags(1);
        let mut t: Fragments<u8> = Fragments::new(16, 30 * SEC, 1);
        let first = parse_frame(&f[0]).unwrap();
        t.first(&f[0], &first, 42, 0).unwrap();
        for later in &f[1..] {
            let info = parse_frame(later).unwrap();
            assert_eq!(t.later(later, &info, 1), Ok(42));
        }
        assert_eq!(t.completed, 1);
        // Complete: a late duplicate has nothing to join.
        let info = parse_frame(&f[1]).unwrap();
        assert_eq!(t.later(&f[1], &info, 2), Err(FragError::NoFirst));
    }

    #[test]
    fn no_first_no_pass_and_expiry() {
        let f = frags(2);
        let mut t: Fragments<u8> = Fragments::new(16, 30 * SEC, 1);
        let info = parse_frame(&f[2]).unwrap();
        assert_eq!(t.later(&f[2], &info, 0), Err(FragError::NoFirst));
        let first = parse_frame(&f[0]).unwrap();
        t.first(&f[0], &first, 1, 0).unwrap();
        assert_eq!(t.later(&f[2], &info, 30 * SEC), Err(FragError::NoFirst));
        assert_eq!(t.drops[FragError::NoFirst.index()], 2);
    }

    #[test]
    fn duplicate_drops_alone_overlap_poisons() {
        let f = frags(3);
        let mut t: Fragments<u8> = Fragments::new(16, 30 * SEC, 1);
        let info: Vec<_> = f.iter().map(|x| parse_frame(x).unwrap()).collect();
        t.first(&f[0], &info[0], 9, 0).unwrap();
        assert_eq!(t.later(&f[1], &info[1], 0), Ok(9));
        assert_eq!(t.later(&f[1], &info[1], 0), Err(FragError::Duplicate));
        assert_eq!(t.later(&f[3], &info[3], 0), Ok(9));
        // A fragment at offset 40 overlapping [24, 48) and [72, 96) partly: from another
        // datagram split at 32 bytes.
        let g = spec(3, 100).fragments(32);
        let gi = parse_frame(&g[1]).unwrap(); // [32, 64)
        assert_eq!(t.later(&g[1], &gi, 0), Err(FragError::Overlap));
        assert_eq!(t.later(&f[2], &info[2], 0), Err(FragError::Poisoned));
    }

    #[test]
    fn past_the_end_and_full_table() {
        let f = frags(4);
        let mut t: Fragments<u8> = Fragments::new(8, 30 * SEC, 1);
        let info: Vec<_> = f.iter().map(|x| parse_frame(x).unwrap()).collect();
        t.first(&f[0], &info[0], 1, 0).unwrap();
        let last = f.len() - 1;
        assert_eq!(t.later(&f[last], &info[last], 0), Ok(1));
        // A longer datagram with the same id: its later pieces reach past the end.
        let g = spec(4, 200).fragments(24);
        let gi = parse_frame(&g[6]).unwrap();
        assert_eq!(t.later(&g[6], &gi, 0), Err(FragError::Oversized));

        let mut small: Fragments<u8> = Fragments::new(8, 30 * SEC, 1);
        let mut full = 0;
        for id in 100..140 {
            let f = frags(id);
            let info = parse_frame(&f[0]).unwrap();
            if small.first(&f[0], &info, 0, 0) == Err(FragError::TableFull) {
                full += 1;
            }
        }
        assert!(full > 0);
        assert_eq!(small.drops[FragError::TableFull.index()], full);
    }

    fn limits(fragments: u32, bytes: u64) -> HoldLimits {
        HoldLimits {
            fragments,
            bytes,
            timeout_ns: 30 * SEC,
        }
    }

    /// Holds `frames` (by index) in the given order; gives what was dropped, with why.
    type R = Reassembly<(usize, Vec<u8>)>;

    fn hold_all(
        r: &mut R,
        frames: &[Vec<u8>],
        order: &[usize],
        now_ns: u64,
    ) -> Vec<(usize, FragError)> {
        let mut dropped = Vec::new();
        for &i in order {
            let info = parse_frame(&frames[i]).unwrap();
            let item = (i, frames[i].clone());
            r.hold(item, |t| &t.1, &info, now_ns, |t, e| dropped.push((t.0, e)));
        }
        dropped
    }

    fn take(r: &mut R) -> Option<(Whole, Vec<usize>)> {
        let mut got = Vec::new();
        let w = r.take_whole(usize::MAX, |t| got.push(t.0))?;
        Some((w, got))
    }

    #[test]
    fn whole_in_order_and_out_of_order() {
        let f = frags(10);
        assert!(f.len() >= 4);
        let n = f.len();
        for order in [
            (0..n).collect::<Vec<_>>(),
            (0..n).rev().collect(),
            [vec![2, 0], (3..n).collect(), vec![1]].concat(),
        ] {
            let mut r: R = Reassembly::new(limits(64, 1 << 20));
            for (k, &i) in order.iter().enumerate() {
                assert!(take(&mut r).is_none(), "not whole before {k}");
                assert!(hold_all(&mut r, &f, &[i], 0).is_empty());
            }
            let (w, got) = take(&mut r).expect("whole");
            assert_eq!(got, (0..n).collect::<Vec<_>>(), "offset order");
            // 20 bytes of IPv4 header, 8 of UDP, 100 of payload.
            assert_eq!(
                w,
                Whole {
                    len: 128,
                    csum_ok: true
                }
            );
            assert!(r.is_empty());
            assert_eq!(r.stats.fragments_now, 0);
            assert_eq!(r.stats.whole_total, 1);
        }
    }

    #[test]
    fn ipv6_length_leaves_out_the_fragment_header() {
        let s = FrameSpec::new(
            IpSpec::v6("fd00::1".parse().unwrap(), "2001:db8::2".parse().unwrap()),
            L4Spec::udp(1000, 2000, &[9; 300]),
        );
        let f = s.fragments(64);
        let mut r: R = Reassembly::new(limits(64, 1 << 20));
        let order: Vec<usize> = (0..f.len()).rev().collect();
        assert!(hold_all(&mut r, &f, &order, 0).is_empty());
        let (w, got) = take(&mut r).unwrap();
        assert_eq!(got.len(), f.len());
        assert_eq!(
            w,
            Whole {
                len: 40 + 8 + 300,
                csum_ok: true
            }
        );
    }

    #[test]
    fn ipv6_headers_after_the_fragment_header() {
        // A destination options header in the fragmentable part: the later fragments'
        // Fragment headers name it (60), the first fragment's parse ends at UDP (17); the
        // datagram is one all the same, as Linux keys it (no protocol in an IPv6 key).
        let s = FrameSpec::new(
            IpSpec::v6("fd00::1".parse().unwrap(), "2001:db8::2".parse().unwrap()),
            L4Spec::udp(1000, 2000, &[9; 300]),
        );
        let mut f = s.fragments(64);
        let fh = 14 + 40;
        for (i, x) in f.iter_mut().enumerate() {
            x[fh] = 60;
            let plen = u16::from_be_bytes([x[18], x[19]]);
            if i == 0 {
                x.splice(fh + 8..fh + 8, [17, 0, 1, 4, 0, 0, 0, 0]);
                x[18..20].copy_from_slice(&(plen + 8).to_be_bytes());
            } else {
                let off = u16::from_be_bytes([x[fh + 2], x[fh + 3]]) + 8;
                x[fh + 2..fh + 4].copy_from_slice(&off.to_be_bytes());
            }
        }
        let first = parse_frame(&f[0]).unwrap();
        assert_eq!(first.flow.unwrap().proto, 17);
        assert_eq!(parse_frame(&f[1]).unwrap().flow.unwrap().proto, 60);
        for order in [
            (0..f.len()).collect::<Vec<_>>(),
            (0..f.len()).rev().collect(),
        ] {
            let mut r: R = Reassembly::new(limits(64, 1 << 20));
            assert!(hold_all(&mut r, &f, &order, 0).is_empty());
            let (w, got) = take(&mut r).expect("whole");
            assert_eq!(got.len(), f.len());
            assert_eq!(
                w,
                Whole {
                    len: 40 + 8 + 8 + 300,
                    csum_ok: true
                }
            );
        }
        let mut t: Fragments<u8> = Fragments::new(16, 30 * SEC, 1);
        t.first(&f[0], &first, 5, 0).unwrap();
        for later in &f[1..] {
            assert_eq!(t.later(later, &parse_frame(later).unwrap(), 0), Ok(5));
        }
    }

    #[test]
    fn a_bad_checksum_across_the_fragments_is_found() {
        for v6 in [false, true] {
            let ip = if v6 {
                IpSpec::v6("fd00::1".parse().unwrap(), "2001:db8::2".parse().unwrap())
            } else {
                IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
            };
            for l4 in [
                L4Spec::udp(1, 2, &[5; 200]),
                L4Spec::tcp_segment(1, 2, crate::wire::tcp::Flags::SYN, 1, 0, &[5; 200]),
            ] {
                let mut f = FrameSpec::new(ip.clone(), l4).fragments(64);
                let mut r: R = Reassembly::new(limits(64, 1 << 20));
                let all: Vec<usize> = (0..f.len()).collect();
                hold_all(&mut r, &f, &all, 0);
                assert!(take(&mut r).unwrap().0.csum_ok);
                // One payload byte changed in the last fragment (no header covers it).
                let last = f.len() - 1;
                let at = f[last].len() - 1;
                f[last][at] ^= 0x40;
                hold_all(&mut r, &f, &all, 0);
                assert!(!take(&mut r).unwrap().0.csum_ok, "v6 {v6}");
                assert_eq!(r.stats.bad_checksum, 1);
            }
        }
    }

    #[test]
    fn duplicate_drops_alone_overlap_drops_all() {
        let f = frags(11);
        let n = f.len();
        let mut r: R = Reassembly::new(limits(64, 1 << 20));
        assert!(hold_all(&mut r, &f, &[0, 1], 0).is_empty());
        assert_eq!(hold_all(&mut r, &f, &[1], 0), [(1, FragError::Duplicate)]);
        let rest: Vec<usize> = (2..n).collect();
        assert!(hold_all(&mut r, &f, &rest, 0).is_empty());
        assert_eq!(take(&mut r).unwrap().1, (0..n).collect::<Vec<_>>());

        // [0, 24) and [24, 48) held; [32, 64) of a datagram split at 32 overlaps.
        let g = spec(11, 100).fragments(32);
        assert!(hold_all(&mut r, &f, &[0, 1], SEC).is_empty());
        let info = parse_frame(&g[1]).unwrap();
        let mut dropped = Vec::new();
        r.hold(
            (100, g[1].clone()),
            |t| &t.1,
            &info,
            SEC,
            |t, e| dropped.push((t.0, e)),
        );
        dropped.sort_by_key(|d| d.0);
        assert_eq!(
            dropped,
            [
                (0, FragError::Poisoned),
                (1, FragError::Poisoned),
                (100, FragError::Overlap)
            ]
        );
        assert_eq!(r.stats.fragments_now, 0);
        // Later fragments of it are dropped at once until its time is up; none is held.
        assert_eq!(hold_all(&mut r, &f, &[2], SEC), [(2, FragError::Poisoned)]);
        assert!(take(&mut r).is_none());
        r.expire(31 * SEC, |_, _| panic!("nothing held"));
        assert!(r.is_empty());
        // A last fragment announcing another end overruns.
        let longer = spec(12, 200).fragments(24);
        let f12 = frags(12);
        assert!(hold_all(&mut r, &f12, &[0, f12.len() - 1], 40 * SEC).is_empty());
        let d = hold_all(&mut r, &longer, &[longer.len() - 1], 40 * SEC);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.contains(&(longer.len() - 1, FragError::Oversized)));
    }

    #[test]
    fn missing_last_fragment_expires_and_gives_every_fragment_back() {
        let f = frags(13);
        let n = f.len();
        let mut r: R = Reassembly::new(limits(64, 1 << 20));
        let all_but_last: Vec<usize> = (0..n - 1).collect();
        assert!(hold_all(&mut r, &f, &all_but_last, 0).is_empty());
        let mut dropped = Vec::new();
        r.expire(30 * SEC - 1, |t, e| dropped.push((t.0, e)));
        assert!(dropped.is_empty());
        r.expire(30 * SEC, |t, e| dropped.push((t.0, e)));
        assert_eq!(
            dropped,
            all_but_last
                .iter()
                .map(|&i| (i, FragError::Timeout))
                .collect::<Vec<_>>()
        );
        assert!(r.is_empty());
        assert_eq!(r.stats.timeouts, 1);
        assert_eq!(r.stats.fragments_now, 0);
        // The last fragment alone, later: a new datagram, never whole.
        assert!(hold_all(&mut r, &f, &[n - 1], 31 * SEC).is_empty());
        let mut rest = Vec::new();
        r.drain(|t, e| rest.push((t.0, e)));
        assert_eq!(rest, [(n - 1, FragError::Timeout)]);
        assert!(r.is_empty());
    }

    #[test]
    fn bounds_give_up_the_oldest_datagram() {
        let a = frags(20);
        let b = frags(21);
        // Room for three fragments: the oldest datagram goes for the newest fragment.
        let mut r: R = Reassembly::new(limits(3, 1 << 20));
        assert!(hold_all(&mut r, &a, &[0, 1], 0).is_empty());
        assert!(hold_all(&mut r, &b, &[0], SEC).is_empty());
        let d = hold_all(&mut r, &b, &[1], SEC);
        assert_eq!(d, [(0, FragError::Overflow), (1, FragError::Overflow)]);
        assert_eq!(r.stats.overflows, 1);
        assert_eq!(r.stats.fragments_now, 2);
        // By bytes: two frames' worth.
        let bytes = a[0].len() as u64 * 2;
        let mut r: R = Reassembly::new(limits(64, bytes));
        assert!(hold_all(&mut r, &a, &[0, 1], 0).is_empty());
        let d = hold_all(&mut r, &b, &[0], 0);
        assert_eq!(d, [(0, FragError::Overflow), (1, FragError::Overflow)]);
        // Nothing is held without room at all.
        let mut none: R = Reassembly::new(limits(0, 0));
        assert_eq!(hold_all(&mut none, &a, &[0], 0), [(0, FragError::Overflow)]);
        // Nor a packet that is not a fragment.
        let whole = FrameSpec::new(
            IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)),
            L4Spec::udp(1, 2, b"x"),
        )
        .build();
        assert_eq!(
            hold_all(&mut r, &[whole], &[0], 0),
            [(0, FragError::NotAFragment)]
        );
    }

    /// A fragment of a datagram already whole (not yet taken) is a repeat, dropped alone; the
    /// datagram comes out once.
    #[test]
    fn a_fragment_after_the_datagram_is_whole_is_a_repeat() {
        let f = frags(31);
        let n = f.len();
        let mut r: R = Reassembly::new(limits(64, 1 << 20));
        let all: Vec<usize> = (0..n).collect();
        assert!(hold_all(&mut r, &f, &all, 0).is_empty());
        assert_eq!(hold_all(&mut r, &f, &[1], 0), [(1, FragError::Duplicate)]);
        // A fragment without data (at the datagram's end, more to come) places nothing.
        let mut empty = f[n - 1].clone();
        empty.truncate(14 + 20);
        empty[14 + 2..14 + 4].copy_from_slice(&20u16.to_be_bytes());
        empty[14 + 6] |= 0x20;
        empty[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let sum = crate::wire::checksum::checksum(&empty[14..34]);
        empty[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
        if parse_frame(&empty).is_ok() {
            let got = hold_all(&mut r, &[empty], &[0], 0);
            assert_eq!(got.len(), 1, "{got:?}");
        }
        assert_eq!(take(&mut r).unwrap().1, all);
        assert!(take(&mut r).is_none());
        assert!(r.is_empty());
        assert_eq!(r.stats.fragments_now, 0);
    }

    /// A datagram of more fragments than one call takes comes out over several calls, each
    /// with its `Whole`.
    #[test]
    fn a_long_datagram_comes_out_in_parts() {
        let f = spec(30, 400).fragments(24);
        let n = f.len();
        assert!(n > 10);
        let mut r: R = Reassembly::new(limits(64, 1 << 20));
        let all: Vec<usize> = (0..n).rev().collect();
        assert!(hold_all(&mut r, &f, &all, 0).is_empty());
        let mut got = Vec::new();
        while let Some(w) = r.take_whole(4, |t| got.push(t.0)) {
            assert_eq!(w.len, 20 + 8 + 400);
        }
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        assert!(r.is_empty());
    }
}
