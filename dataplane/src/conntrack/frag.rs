//! FAST PATH: no allocation, lock, syscall or log.
//!
//! Virtual reassembly: a non-first IP fragment carries no ports, so it gets the verdict its
//! datagram's first fragment got. Fragments are forwarded as they come; only those that come
//! before their first fragment are held, by the caller, in an [`Orphans`] store.
//!
//! Invariants:
//! - The table has a fixed number of slots; a datagram is keyed by (source, destination,
//!   protocol, identification, family) and lives at most `timeout_ns` (Linux's
//!   `ipfrag_time`, 30 s) after its first fragment.
//! - A datagram remembers the byte ranges seen so far as at most [`MAX_RUNS`] disjoint runs.
//!   A fragment that partly overlaps a run, reaches past the end a final fragment announced,
//!   announces a different end, or would need more runs poisons the datagram: it and every
//!   later fragment of it are dropped (RFC 5722; Linux drops the whole queue too). A fragment
//!   entirely inside a run is a duplicate and is dropped alone.
//! - A non-first fragment with no first fragment recorded gets [`FragError::NoFirst`]: never a
//!   free pass. The caller holds it ([`Orphans`]) and asks again once the first is recorded,
//!   or drops it.
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
}

impl FragError {
    pub const COUNT: usize = 8;

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
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    src: IpAddr128,
    dst: IpAddr128,
    id: u32,
    proto: u8,
    family: Family,
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
    /// First fragments recorded: what [`Orphans::release`] looks at before looking for the
    /// held fragments' datagrams.
    firsts: u64,
}

/// Where a fragment's data sits in its datagram: `(offset, length, more fragments)`.
fn placement(frame: &[u8], info: &PacketInfo) -> Option<(u32, u32, bool)> {
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
    Some((offset, len, more))
}

impl<V: Copy + Default> Fragments<V> {
    /// A table of at least `datagrams` slots (rounded up to a power of two).
    pub fn new(datagrams: u32, timeout_ns: u64, seed: u64) -> Fragments<V> {
        let n = (datagrams.max(PROBE as u32) as usize).next_power_of_two();
        let empty = Slot {
            key: Key {
                src: IpAddr128::UNSPECIFIED,
                dst: IpAddr128::UNSPECIFIED,
                id: 0,
                proto: 0,
                family: Family::V4,
            },
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
            firsts: 0,
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
            proto: flow.proto,
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
        self.firsts = self.firsts.wrapping_add(1);
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

/// Fragments a worker (and a replay, to judge as the worker does) holds at most while their
/// datagram's first fragment is awaited ([`Orphans`]).
pub const ORPHANS_HELD: usize = 256;

/// What [`Orphans::release`] gives back.
#[derive(Debug)]
pub enum Released<T> {
    /// Its datagram's first fragment has been recorded: judge it again, as any later fragment.
    Ready(T),
    /// Held until its time ran out (or pushed out by a newer one) without its first fragment:
    /// drop it as [`FragError::NoFirst`].
    Expired(T),
}

/// Non-first fragments that came before their datagram's first fragment, held until it comes.
/// Linux reassembles before the raw table and so holds every fragment until its datagram is
/// whole; virtual reassembly forwards fragments as they come and needs only those that come
/// before the first: held here (in arrival order, at most `capacity`, each at most the
/// fragment table's timeout), then judged again once the first is recorded. When full, the
/// oldest is given up for the newest.
///
/// FAST PATH: no allocation after [`Orphans::new`]; the worker looks only at
/// [`Orphans::is_empty`] while nothing is held.
#[derive(Debug)]
pub struct Orphans<T> {
    /// `(fragment, its parse's datagram key, when it is given up)`, oldest first (so the
    /// first is also the first to be given up: every one waits the same time).
    held: std::collections::VecDeque<(T, Key, u64)>,
    capacity: usize,
    timeout_ns: u64,
    /// The fragment table's count of first fragments when every held fragment was last
    /// looked for: while it stands and none is due, [`Orphans::release`] looks for none (so a
    /// flood of fragments without their first costs a test a poll, not a lookup each).
    firsts_seen: u64,
    /// Fragments held so far.
    pub held_total: u64,
}

impl<T> Orphans<T> {
    pub fn new(capacity: usize, timeout_ns: u64) -> Orphans<T> {
        Orphans {
            held: std::collections::VecDeque::with_capacity(capacity),
            capacity,
            timeout_ns,
            firsts_seen: 0,
            held_total: 0,
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Holds `item`, a non-first fragment whose parse is `info`. Gives back what must be
    /// dropped now: `item` itself when nothing can be held (no room at all, or `info` is not a
    /// fragment's), else the oldest held when the store was full.
    pub fn hold(&mut self, item: T, info: &PacketInfo, now_ns: u64) -> Option<T> {
        let Some(key) = Fragments::<()>::key(info) else {
            return Some(item);
        };
        if self.capacity == 0 {
            return Some(item);
        }
        let out = if self.held.len() == self.capacity {
            self.held.pop_front().map(|(t, _, _)| t)
        } else {
            None
        };
        self.held
            .push_back((item, key, now_ns.saturating_add(self.timeout_ns)));
        self.held_total += 1;
        out
    }

    /// Takes out, oldest first, every held fragment whose first fragment `frags` now knows
    /// ([`Released::Ready`], at most `ready` of them) or whose time is up
    /// ([`Released::Expired`]); the rest stay, in their order.
    pub fn release<V: Copy>(
        &mut self,
        frags: &Fragments<V>,
        now_ns: u64,
        mut ready: usize,
        mut f: impl FnMut(Released<T>),
    ) {
        let due = self.held.front().is_some_and(|&(_, _, e)| e <= now_ns);
        if !due && frags.firsts == self.firsts_seen {
            return;
        }
        let firsts = frags.firsts;
        let mut all = true;
        for _ in 0..self.held.len() {
            let Some((item, key, expires_ns)) = self.held.pop_front() else {
                break;
            };
            let found = frags.find(&key, now_ns).is_some();
            if found && ready > 0 {
                ready -= 1;
                f(Released::Ready(item));
            } else if expires_ns <= now_ns {
                f(Released::Expired(item));
            } else {
                all &= !found;
                self.held.push_back((item, key, expires_ns));
            }
        }
        // Ready ones left for the next call (over `ready`) are looked for again then.
        if all {
            self.firsts_seen = firsts;
        }
    }

    /// Takes out everything held (shutdown, end of a replay), oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.held.drain(..).map(|(t, _, _)| t)
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

    /// Fragments held before their first are given back once it is recorded, in arrival
    /// order; others stay; the time limit and the room give up the oldest.
    #[test]
    fn orphans_wait_for_their_first_fragment() {
        let a = frags(7);
        let b = frags(8);
        let mut t: Fragments<u8> = Fragments::new(16, 30 * SEC, 1);
        let mut o: Orphans<&str> = Orphans::new(3, 10 * SEC);
        let p = |f: &Vec<u8>| parse_frame(f).unwrap();
        let last = a.len() - 1;
        assert!(o.hold("a-last", &p(&a[last]), 0).is_none());
        assert!(o.hold("b-1", &p(&b[1]), SEC).is_none());
        assert!(o.hold("a-1", &p(&a[1]), 2 * SEC).is_none());
        let mut got = Vec::new();
        let mut take = |o: &mut Orphans<&str>, t: &Fragments<u8>, now| {
            got.clear();
            o.release(t, now, usize::MAX, |r| got.push(format!("{r:?}")));
            got.clone()
        };
        assert!(
            take(&mut o, &t, 3 * SEC).is_empty(),
            "no first fragment yet"
        );
        t.first(&a[0], &p(&a[0]), 5, 3 * SEC).unwrap();
        assert_eq!(
            take(&mut o, &t, 3 * SEC),
            ["Ready(\"a-last\")", "Ready(\"a-1\")"]
        );
        assert_eq!(o.len(), 1);
        // The held ones, judged now, take the first's verdict.
        assert_eq!(t.later(&a[last], &p(&a[last]), 3 * SEC), Ok(5));
        // b's first never comes: given up after the timeout from when it was held.
        assert!(take(&mut o, &t, 10 * SEC).is_empty());
        assert_eq!(take(&mut o, &t, 11 * SEC), ["Expired(\"b-1\")"]);
        assert!(o.is_empty());
        // Full: the oldest is given up for the newest.
        for (i, name) in ["x", "y", "z"].into_iter().enumerate() {
            assert!(o.hold(name, &p(&b[i + 1]), 12 * SEC).is_none());
        }
        assert_eq!(o.hold("w", &p(&b[4]), 12 * SEC), Some("x"));
        assert_eq!(o.drain().collect::<Vec<_>>(), ["y", "z", "w"]);
        // Ready ones over the limit wait for the next call, though no first came since.
        let c = frags(9);
        t.first(&c[0], &p(&c[0]), 6, 13 * SEC).unwrap();
        let mut q: Orphans<usize> = Orphans::new(8, 10 * SEC);
        for (i, f) in c.iter().enumerate().skip(1) {
            assert!(q.hold(i, &p(f), 13 * SEC).is_none());
        }
        let mut first_call = Vec::new();
        q.release(&t, 13 * SEC, 2, |r| first_call.push(format!("{r:?}")));
        assert_eq!(first_call, ["Ready(1)", "Ready(2)"]);
        let mut second = 0;
        q.release(&t, 13 * SEC, usize::MAX, |_| second += 1);
        assert_eq!(second, c.len() - 3);
        assert!(q.is_empty());
        // Nothing is held without room, nor a packet that is not a fragment.
        let mut none: Orphans<&str> = Orphans::new(0, SEC);
        assert_eq!(none.hold("n", &p(&b[1]), 0), Some("n"));
        let whole = crate::wire::builder::FrameSpec::new(
            IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)),
            L4Spec::udp(1, 2, b"x"),
        )
        .build();
        assert_eq!(o.hold("u", &p(&whole), 0), Some("u"));
    }
}
