//! `-m connlimit` (xt_connlimit revision 1 over nf_conncount): the connections of a key (the
//! packet's source, or with `--connlimit-daddr` its destination, under `--connlimit-mask`),
//! counted per rule.
//!
//! Linux keeps, per rule, a list of connection tuples per key: a packet reaching the match adds
//! its connection (once), prunes the connections that are gone or closing (TCP TIME_WAIT or
//! CLOSE), and compares the list's length, its own connection included, with the limit. A
//! reload makes new lists (each match instance has its own `nf_conncount_data`).
//!
//! Rampart's connection tables are per worker, and one key's connections live on several of
//! them, so the counts are shared: a [`CountTable`] per rule, preallocated, each slot a key
//! and a count changed with atomics only. The worker that owns a connection *reserves* a count
//! when its packet reaches the match (the count after the add is the answer, so two workers
//! cannot both admit the limit's last connection); the reservation is kept in a [`Counting`]
//! scratch while the packet is judged, then tagged on the connection's entry when it is
//! confirmed (`conntrack::counted`), or released when it is not. The entry's end (expiry,
//! TCP close to TIME_WAIT or CLOSE, RST, flush, eviction) releases its tags. A connection is
//! counted once per table and key; its later packets read the count and add nothing.
//!
//! A slot's state word holds a count (low 32 bits), a writing bit and a generation (high 24
//! bits). A slot with count 0 is free and may be taken for another key: the taker moves it to
//! writing with a new generation, writes the key, and publishes it with count 1. A reserve on
//! a found key is a compare-and-swap of the state word it read before comparing the key, so
//! it fails if the slot was freed and taken meanwhile. Two workers taking slots for one new key
//! at once may leave it in two slots: a key's count is the sum over the slots holding it, each
//! worker adds before it sums, so the later of two adding the limit's last connection sees
//! both. A key finds its slot within [`WINDOW`] slots of its hash; when all of them
//! hold other keys the table is full, and the match answers as Linux's does when it cannot
//! allocate (the packet is dropped): the limit holds rather than opening.

use super::{PacketMeta, Wire};
use crate::wire::{Family, IpAddr128};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Slots per table (each 24 bytes: a rule's table is 1.5 MiB).
pub const SLOTS: usize = 1 << 16;
/// How far from its hash a key may sit.
pub const WINDOW: usize = 32;
/// How many `-m connlimit` tables may count one connection.
pub const PER_CONN: usize = 4;

const COUNT: u64 = 0xffff_ffff;
const WRITING: u64 = 1 << 32;
const GEN: u64 = 1 << 40;

struct Slot {
    state: AtomicU64,
    key: [AtomicU64; 2],
}

/// One `-m connlimit` rule's counts (shared by its flat rules and by all workers).
pub struct CountTable {
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for CountTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountTable").finish_non_exhaustive()
    }
}

impl Default for CountTable {
    fn default() -> Self {
        CountTable::new()
    }
}

fn words(k: &IpAddr128) -> [u64; 2] {
    let (a, b) = k.0.split_at(8);
    [
        u64::from_be_bytes(a.try_into().expect("8 bytes")),
        u64::from_be_bytes(b.try_into().expect("8 bytes")),
    ]
}

impl CountTable {
    /// An empty table (all its memory taken here).
    pub fn new() -> CountTable {
        CountTable::with_slots(SLOTS)
    }

    /// An empty table of `n` slots (a power of two, at least [`WINDOW`]).
    pub fn with_slots(n: usize) -> CountTable {
        let n = n.next_power_of_two().max(WINDOW);
        CountTable {
            slots: (0..n)
                .map(|_| Slot {
                    state: AtomicU64::new(0),
                    key: [AtomicU64::new(0), AtomicU64::new(0)],
                })
                .collect(),
        }
    }

    fn home(&self, k: [u64; 2]) -> usize {
        let h = (k[0] ^ k[1].rotate_left(29))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(31)
            .wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (h >> 32) as usize & (self.slots.len() - 1)
    }

    fn at(&self, home: usize, j: usize) -> usize {
        (home + j) & (self.slots.len() - 1)
    }

    /// The state of slot `i` once no worker is writing its key.
    fn settled(&self, i: usize) -> u64 {
        loop {
            let s = self.slots[i].state.load(Ordering::SeqCst);
            if s & WRITING == 0 {
                return s;
            }
            std::hint::spin_loop();
        }
    }

    fn holds(&self, i: usize, k: [u64; 2]) -> bool {
        let s = &self.slots[i];
        s.key[0].load(Ordering::Relaxed) == k[0] && s.key[1].load(Ordering::Relaxed) == k[1]
    }

    /// Adds one to slot `i` if it still holds `k` with a count.
    fn bump(&self, i: usize, k: [u64; 2]) -> bool {
        loop {
            let s = self.settled(i);
            if s & COUNT == 0 || !self.holds(i, k) {
                return false;
            }
            if self.slots[i]
                .state
                .compare_exchange(s, s + 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// The sum of the counts of the slots holding `k` within its window, and the first of
    /// them (two workers taking slots for one new key at once leave it in two; later
    /// reservations go to the first, and the other drains as its connections end).
    fn sum(&self, home: usize, k: [u64; 2]) -> (u32, Option<usize>) {
        let mut n = 0u32;
        let mut first = None;
        for j in 0..WINDOW {
            let i = self.at(home, j);
            let s = self.settled(i);
            if s & COUNT != 0 && self.holds(i, k) {
                n = n.saturating_add((s & COUNT) as u32);
                first.get_or_insert(i);
            }
        }
        (n, first)
    }

    /// The first slot holding `key` with a count, and the key's count.
    pub fn find(&self, key: &IpAddr128) -> Option<(u32, u32)> {
        let k = words(key);
        match self.sum(self.home(k), k) {
            (n, Some(i)) => Some((i as u32, n)),
            _ => None,
        }
    }

    /// The count of `key` (0 when it has none).
    pub fn count(&self, key: &IpAddr128) -> u32 {
        let k = words(key);
        self.sum(self.home(k), k).0
    }

    /// Whether slot `slot` holds `key` (with a count).
    pub fn slot_holds(&self, slot: u32, key: &IpAddr128) -> bool {
        let i = slot as usize;
        i < self.slots.len() && self.settled(i) & COUNT != 0 && self.holds(i, words(key))
    }

    /// Counts one more connection of `key`: the slot that holds it and the key's count after,
    /// or `None` when the table has no room for a new key.
    pub fn reserve(&self, key: &IpAddr128) -> Option<(u32, u32)> {
        let k = words(key);
        let home = self.home(k);
        let slot = 'taken: loop {
            let mut free = None;
            for j in 0..WINDOW {
                let i = self.at(home, j);
                if self.bump(i, k) {
                    break 'taken i;
                }
                if free.is_none()
                    && self.slots[i].state.load(Ordering::Relaxed) & (COUNT | WRITING) == 0
                {
                    free = Some(i);
                }
            }
            let i = free?;
            let slot = &self.slots[i];
            let s = slot.state.load(Ordering::Relaxed);
            if s & (COUNT | WRITING) != 0 {
                continue;
            }
            let gen = (s & !(COUNT | WRITING)).wrapping_add(GEN);
            if slot
                .state
                .compare_exchange(s, gen | WRITING, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            slot.key[0].store(k[0], Ordering::Relaxed);
            slot.key[1].store(k[1], Ordering::Relaxed);
            slot.state.store(gen | 1, Ordering::SeqCst);
            break i;
        };
        // Counted after the add: of two workers adding the limit's last connection at once,
        // the later sees both.
        let (n, _) = self.sum(home, k);
        Some((slot as u32, n.max(1)))
    }

    /// Takes back one count of slot `slot` (a reservation or a connection that ended).
    pub fn release(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            let prev = s.state.fetch_sub(1, Ordering::SeqCst);
            debug_assert!(prev & COUNT != 0, "a count released twice");
        }
    }

    /// The sum of all counts (tests).
    pub fn total(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.state.load(Ordering::Relaxed) & COUNT)
            .sum()
    }
}

/// One `-m connlimit` match.
#[derive(Clone, Debug)]
pub struct ConnLimitMatch {
    pub table: Arc<CountTable>,
    pub family: Family,
    /// `--connlimit-above` (or `! --connlimit-upto`): holds when the count exceeds `limit`;
    /// else (`--connlimit-upto`) when it does not.
    pub above: bool,
    pub limit: u32,
    /// `--connlimit-mask` as a mask over the 16-byte address (IPv4's v4-mapped).
    pub mask: IpAddr128,
    /// `--connlimit-daddr`: the key is the destination.
    pub daddr: bool,
}

impl PartialEq for ConnLimitMatch {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.table, &o.table)
            && self.above == o.above
            && self.limit == o.limit
            && self.mask == o.mask
            && self.daddr == o.daddr
    }
}

impl Eq for ConnLimitMatch {}

impl std::hash::Hash for ConnLimitMatch {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (
            Arc::as_ptr(&self.table) as usize,
            self.above,
            self.limit,
            self.mask,
            self.daddr,
        )
            .hash(h);
    }
}

/// The mask of a prefix of `plen` bits of a `family` address, as the 16-byte address holds it.
pub fn prefix_mask(family: Family, plen: u8) -> IpAddr128 {
    let (skip, bits) = match family {
        Family::V4 => (96u32, u32::from(plen).min(32)),
        Family::V6 => (0, u32::from(plen).min(128)),
    };
    let ones = skip + bits;
    let m = if ones == 0 {
        0
    } else {
        u128::MAX << (128 - ones)
    };
    IpAddr128(m.to_be_bytes())
}

/// What the packet's connection is to the counts, for the length of one judgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conn {
    /// No connection (INVALID, UNTRACKED): counted as one more, added nowhere (Linux adds its
    /// tuple and prunes it at the next walk, as conntrack does not know it).
    None,
    /// A NEW connection, not yet confirmed: its reservations wait for the confirmation.
    New,
    /// A confirmed connection: what it was counted by is in `have`.
    Confirmed,
}

/// A count a connection holds: the table (kept alive by the rule set during a judgement, and
/// by the worker's registry after) and the slot.
pub type Held = (*const CountTable, u32);

/// A judgement's view of its connection's counts: those it holds (`have`, for a confirmed
/// connection) and those its packet reserved (`added`, with a reference to each table for the
/// worker to keep). Worker-local, changed through cells while the rule set is walked.
pub struct Counting {
    pub conn: Conn,
    have: [Cell<Held>; PER_CONN],
    have_len: Cell<u8>,
    added: [Cell<Held>; PER_CONN],
    added_tables: [Cell<Option<Arc<CountTable>>>; PER_CONN],
    added_len: Cell<u8>,
}

impl std::fmt::Debug for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counting")
            .field("conn", &self.conn)
            .field("have", &self.have_len.get())
            .field("added", &self.added_len.get())
            .finish()
    }
}

impl Counting {
    pub fn new(conn: Conn) -> Counting {
        const NONE: Held = (std::ptr::null(), 0);
        Counting {
            conn,
            have: std::array::from_fn(|_| Cell::new(NONE)),
            have_len: Cell::new(0),
            added: std::array::from_fn(|_| Cell::new(NONE)),
            added_tables: std::array::from_fn(|_| Cell::new(None)),
            added_len: Cell::new(0),
        }
    }

    /// Records a count the connection holds already.
    pub fn hold(&self, h: Held) {
        let n = self.have_len.get() as usize;
        if n < PER_CONN {
            self.have[n].set(h);
            self.have_len.set(n as u8 + 1);
        }
    }

    /// Whether the packet reserved anything.
    pub fn reserved(&self) -> bool {
        self.added_len.get() != 0
    }

    /// Takes the counts the packet reserved: each table and slot.
    pub fn take_added(&self) -> impl Iterator<Item = (Arc<CountTable>, u32)> + '_ {
        let n = self.added_len.replace(0) as usize;
        (0..n).filter_map(move |k| {
            let t = self.added_tables[k].take()?;
            Some((t, self.added[k].get().1))
        })
    }

    fn all(&self) -> impl Iterator<Item = Held> + '_ {
        self.have[..self.have_len.get() as usize]
            .iter()
            .chain(&self.added[..self.added_len.get() as usize])
            .map(Cell::get)
    }
}

impl ConnLimitMatch {
    /// The key of packet `p`.
    pub fn key(&self, p: &PacketMeta) -> IpAddr128 {
        let a = if self.daddr { p.key.dst } else { p.key.src };
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = a.0[i] & self.mask.0[i];
        }
        IpAddr128(k)
    }

    /// xt_connlimit's answer for `p`: `Some(holds)`, or `None` where Linux drops the packet
    /// (no room for a new key).
    pub fn held(&self, p: &PacketMeta, w: &Wire<'_>) -> Option<bool> {
        let key = self.key(p);
        let t: *const CountTable = Arc::as_ptr(&self.table);
        let n = match w.count {
            None => self.table.count(&key) + 1,
            Some(c) if c.conn == Conn::None => self.table.count(&key) + 1,
            Some(c) => {
                // Counted by this table under this key already: the count as it is.
                if c.all()
                    .any(|(ht, slot)| ht == t && self.table.slot_holds(slot, &key))
                {
                    self.table.count(&key)
                } else {
                    let used = c.have_len.get() as usize + c.added_len.get() as usize;
                    if used >= PER_CONN {
                        return None;
                    }
                    let (slot, n) = self.table.reserve(&key)?;
                    let a = c.added_len.get() as usize;
                    c.added[a].set((t, slot));
                    c.added_tables[a].set(Some(self.table.clone()));
                    c.added_len.set(a as u8 + 1);
                    n
                }
            }
        };
        Some((n > self.limit) == self.above)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(x: u8) -> IpAddr128 {
        let mut k = [0u8; 16];
        k[15] = x;
        IpAddr128(k)
    }

    #[test]
    fn reserve_release_and_reuse() {
        let t = CountTable::with_slots(64);
        assert_eq!(t.reserve(&a(1)).map(|r| r.1), Some(1));
        let (s, n) = t.reserve(&a(1)).unwrap();
        assert_eq!(n, 2);
        assert_eq!(t.count(&a(1)), 2);
        assert_eq!(t.count(&a(2)), 0);
        t.release(s);
        t.release(s);
        assert_eq!(t.count(&a(1)), 0);
        assert_eq!(t.total(), 0);
        // The freed slot is taken by other keys; a full window refuses a new key, and a
        // released slot takes one again.
        let t = CountTable::with_slots(WINDOW);
        let held: Vec<u32> = (0..WINDOW as u8)
            .map(|x| t.reserve(&a(x + 10)).unwrap().0)
            .collect();
        assert_eq!(t.reserve(&a(200)), None);
        assert_eq!(t.reserve(&a(10)).map(|r| r.1), Some(2));
        t.release(held[5]);
        assert_eq!(t.reserve(&a(200)).map(|r| r.1), Some(1));
        assert_eq!(t.count(&a(15)), 0);
        assert_eq!(t.count(&a(10)), 2);
    }

    #[test]
    fn workers_share_counts_exactly() {
        let t = Arc::new(CountTable::with_slots(256));
        let hs: Vec<_> = (0..4)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for r in 0..2000u32 {
                        let k = a(((r + w) % 7) as u8);
                        let (s, _) = t.reserve(&k).unwrap();
                        held.push(s);
                        if r % 3 == 0 {
                            t.release(held.swap_remove((r as usize * 7) % held.len()));
                        }
                    }
                    held.len() as u64
                })
            })
            .collect();
        let kept: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(t.total(), kept);
        // One slot per key: the counts of the seven keys add up.
        let sum: u64 = (0..7).map(|x| u64::from(t.count(&a(x)))).sum();
        assert_eq!(sum, kept);
    }
}
