//! `-m recent` (xt_recent): named lists of recently seen addresses, shared by every rule that
//! names them, by both families' rule sets and by all workers.
//!
//! A list holds at most [`LIST_TOT`] entries (the module's `ip_list_tot`); each entry is a
//! family, an address under the list's mask, the TTL of its last set or update, and a ring of
//! the times it was set or updated, as many as the list's history (a power of two: 32 for rules
//! without `--hitcount`, else `--hitcount` rounded up; the largest any rule of the list asks
//! for). Adding an entry to a full list first removes the one set or updated longest ago.
//!
//! Time is Rampart's packet time in milliseconds, which plays the kernel's jiffies at
//! `HZ` = 1000: `--seconds N` holds the stamps of the last `N * 1000` ms; Linux compares
//! whole jiffies (4 ms at the common `HZ` 250), so the two agree up to one tick at the edge of
//! a window.
//!
//! Lists live in a process-wide registry by name while a rule set names them: a reload whose
//! rules name a list keeps its entries (the new rule set is parsed while the old one still
//! holds the list), as Linux keeps `/proc/net/xt_recent/NAME` across `iptables-restore`; a
//! list no rule names any more is forgotten. The list's mask is the one of the rule that
//! created it, and a rule asking for a longer history than the list keeps empties it and
//! lengthens it, as the kernel's `recent_mt_check` does.

use super::{PacketMeta, Wire};
use crate::wire::Family;
use std::sync::{Arc, Mutex, Weak};

/// `ip_list_tot`: entries per list.
pub const LIST_TOT: usize = 100;
/// The largest `--hitcount` the kernel takes (`XT_RECENT_MAX_NSTAMPS - 1`).
pub const MAX_HITCOUNT: u32 = 255;
/// Milliseconds per emulated jiffy: `HZ` = 1000.
const NS_PER_JIFFY: u64 = 1_000_000;
const HZ: u64 = 1000;

/// What a rule does with the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecentOp {
    /// `--set`: add the address (or stamp it again); always matches.
    Set,
    /// `--rcheck`: the address is in the list (within `--seconds`, `--hitcount` times).
    Check,
    /// `--update`: `--rcheck`, and when it matches, stamp the address again.
    Update,
    /// `--remove`: the address is in the list, which it then leaves.
    Remove,
}

/// One `-m recent` match.
#[derive(Clone, Debug)]
pub struct RecentMatch {
    pub list: Arc<RecentList>,
    pub op: RecentOp,
    /// `!` before the operation.
    pub invert: bool,
    /// `--seconds` (0: any time).
    pub seconds: u32,
    /// `--hitcount` (0: once).
    pub hitcount: u32,
    /// `--reap`: after the check, the list's least recently stamped entry goes if its last
    /// stamp is older than the window.
    pub reap: bool,
    /// `--rttl`: the entry's TTL must be the packet's too.
    pub rttl: bool,
    /// `--rdest` (else `--rsource`).
    pub dest: bool,
    /// The rule's `--mask` (the list's is that of the rule that created it).
    pub mask: [u8; 16],
    /// The rule is at the FORWARD hook, where xt_recent adds one to the TTL it reads (to undo
    /// the router's decrement; a bridge, which did not decrement, reads one more than the
    /// header's).
    pub forward: bool,
}

impl PartialEq for RecentMatch {
    fn eq(&self, o: &Self) -> bool {
        self.list.name == o.list.name
            && (
                self.op,
                self.invert,
                self.seconds,
                self.hitcount,
                self.reap,
                self.rttl,
                self.dest,
                self.mask,
                self.forward,
            ) == (
                o.op, o.invert, o.seconds, o.hitcount, o.reap, o.rttl, o.dest, o.mask, o.forward,
            )
    }
}

impl Eq for RecentMatch {}

impl std::hash::Hash for RecentMatch {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.list.name.hash(h);
        (self.op, self.invert, self.seconds, self.hitcount).hash(h);
        (self.reap, self.rttl, self.dest, self.mask, self.forward).hash(h);
    }
}

/// A named list.
#[derive(Debug)]
pub struct RecentList {
    pub name: Box<str>,
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    mask: [u8; 16],
    /// Stamps per entry (a power of two).
    history: usize,
    /// In the order they were added (what Linux's hash chains keep for one address); room for
    /// [`LIST_TOT`] from the start.
    entries: Vec<Entry>,
    /// Stamp rings of `history` not in use: with the entries' own, [`LIST_TOT`] of them, made
    /// when the list is (or its history lengthens), so no packet allocates.
    spare: Vec<Box<[u64]>>,
    /// The next `Entry::used` (a larger value is a later set or update).
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    family: Family,
    addr: [u8; 16],
    ttl: u8,
    /// Where the next stamp goes (the ring's last written slot is `next - 1`).
    next: usize,
    /// Stamps written so far, at most the history.
    count: usize,
    stamps: Box<[u64]>,
    /// The list's clock at the last set or update: the least is the list's oldest entry.
    used: u64,
}

/// `time_after(a, b)`: `a` is later than `b`, on a wrapping clock.
#[inline]
fn after(a: u64, b: u64) -> bool {
    (b.wrapping_sub(a) as i64) < 0
}

impl Table {
    fn find(&self, family: Family, addr: &[u8; 16], ttl: u8) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.family == family && e.addr == *addr && (ttl == e.ttl || ttl == 0 || e.ttl == 0)
        })
    }

    /// The least recently set or updated entry.
    fn oldest(&self) -> Option<usize> {
        (0..self.entries.len()).min_by_key(|&i| self.entries[i].used)
    }

    fn stamp(&mut self, i: usize, now: u64) {
        let history = self.history;
        self.clock += 1;
        let e = &mut self.entries[i];
        e.next &= history - 1;
        e.stamps[e.next] = now;
        e.next += 1;
        e.count = e.count.max(e.next);
        e.used = self.clock;
    }

    /// An empty list keeping `history` stamps an entry, with all its memory.
    fn new(mask: [u8; 16], history: usize) -> Table {
        Table {
            mask,
            history,
            entries: Vec::with_capacity(LIST_TOT),
            spare: Self::rings(history),
            clock: 0,
        }
    }

    fn rings(history: usize) -> Vec<Box<[u64]>> {
        (0..LIST_TOT)
            .map(|_| vec![0u64; history].into_boxed_slice())
            .collect()
    }

    /// Takes entry `i` out, its stamp ring back to the spares.
    fn remove(&mut self, i: usize) {
        let e = self.entries.remove(i);
        self.spare.push(e.stamps);
    }

    fn add(&mut self, family: Family, addr: [u8; 16], ttl: u8, now: u64) {
        if self.entries.len() >= LIST_TOT {
            if let Some(i) = self.oldest() {
                self.remove(i);
            }
        }
        let history = self.history;
        let mut stamps = self
            .spare
            .pop()
            .unwrap_or_else(|| vec![0u64; history].into_boxed_slice());
        stamps[0] = now;
        self.clock += 1;
        self.entries.push(Entry {
            family,
            addr,
            ttl,
            next: 1,
            count: 1,
            stamps,
            used: self.clock,
        });
    }

    /// xt_recent's `recent_mt` on the locked list.
    fn apply(
        &mut self,
        m: &RecentMatch,
        family: Family,
        addr: [u8; 16],
        ttl: u8,
        now: u64,
    ) -> bool {
        let mut key = addr;
        for (k, mask) in key.iter_mut().zip(self.mask) {
            *k &= mask;
        }
        let mut ret = m.invert;
        let Some(mut at) = self.find(family, &key, if m.rttl { ttl } else { 0 }) else {
            if m.op == RecentOp::Set {
                self.add(family, key, ttl, now);
                ret = !ret;
            }
            return ret;
        };
        match m.op {
            RecentOp::Set => ret = !ret,
            RecentOp::Remove => {
                self.remove(at);
                return !ret;
            }
            RecentOp::Check | RecentOp::Update => {
                let time = now.wrapping_sub(u64::from(m.seconds) * HZ);
                let e = &self.entries[at];
                let mut hits = 0;
                for &s in &e.stamps[..e.count] {
                    if m.seconds != 0 && after(time, s) {
                        continue;
                    }
                    hits += 1;
                    if m.hitcount == 0 || hits >= m.hitcount {
                        ret = !ret;
                        break;
                    }
                }
                if m.reap {
                    // Only the list's oldest entry, if its last stamp left the window.
                    if let Some(o) = self.oldest() {
                        let e = &self.entries[o];
                        let last = e.stamps[(e.next + self.history - 1) & (self.history - 1)];
                        if after(time, last) {
                            self.remove(o);
                            if o == at {
                                return ret;
                            }
                            if o < at {
                                at -= 1;
                            }
                        }
                    }
                }
            }
        }
        if m.op == RecentOp::Set || (m.op == RecentOp::Update && ret) {
            self.stamp(at, now);
            self.entries[at].ttl = ttl;
        }
        ret
    }
}

impl RecentMatch {
    /// The match for packet `p` with bytes `w`: the address and TTL come from its IP header
    /// (no bytes, no match).
    pub fn holds(&self, p: &PacketMeta, w: &Wire<'_>) -> bool {
        let l3 = usize::from(w.l3);
        let (at, ttl_at, len) = match (p.key.family, self.dest) {
            (Family::V4, false) => (l3 + 12, l3 + 8, 4),
            (Family::V4, true) => (l3 + 16, l3 + 8, 4),
            (Family::V6, false) => (l3 + 8, l3 + 7, 16),
            (Family::V6, true) => (l3 + 24, l3 + 7, 16),
        };
        let (Some(a), Some(&ttl)) = (w.frame.get(at..at + len), w.frame.get(ttl_at)) else {
            return false;
        };
        let mut addr = [0u8; 16];
        addr[..len].copy_from_slice(a);
        // The TTL the hook sees (a router's FORWARD: one less than the header's, not yet
        // rewritten), then xt_recent's own step back at FORWARD.
        let ttl = ttl.wrapping_sub(w.hops_taken);
        let ttl = if self.forward {
            ttl.wrapping_add(1)
        } else {
            ttl
        };
        let now = w.now_ns / NS_PER_JIFFY;
        let mut t = self.list.table.lock().unwrap_or_else(|e| e.into_inner());
        t.apply(self, p.key.family, addr, ttl, now)
    }

    /// Whether the match changes its list (so a rule holding it is walked even when it does
    /// nothing else): every operation but a plain `--rcheck`.
    pub fn changes_list(&self) -> bool {
        self.op != RecentOp::Check || self.reap
    }
}

/// The stamps a rule with `hitcount` needs an entry to keep.
pub fn history_for(hitcount: u32) -> usize {
    if hitcount == 0 {
        32
    } else {
        (hitcount as usize).next_power_of_two()
    }
}

/// The registry: every list some rule set (or a rule file being loaded) names.
static LISTS: Mutex<Vec<Weak<RecentList>>> = Mutex::new(Vec::new());

/// The list `name`: the live one, lengthened (and emptied) if `history` is longer than it
/// keeps, or a new one with `mask` (IPv4 masks in the first four bytes, the rest all ones).
pub fn list(name: &str, mask: [u8; 16], history: usize) -> Arc<RecentList> {
    let mut lists = LISTS.lock().unwrap_or_else(|e| e.into_inner());
    lists.retain(|w| w.strong_count() > 0);
    if let Some(l) = lists
        .iter()
        .filter_map(Weak::upgrade)
        .find(|l| &*l.name == name)
    {
        let mut t = l.table.lock().unwrap_or_else(|e| e.into_inner());
        if history > t.history {
            *t = Table::new(t.mask, history);
        }
        drop(t);
        return l;
    }
    let l = Arc::new(RecentList {
        name: name.into(),
        table: Mutex::new(Table::new(mask, history)),
    });
    lists.push(Arc::downgrade(&l));
    l
}

impl RecentList {
    /// How many entries the list holds.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(list: &Arc<RecentList>, op: RecentOp) -> RecentMatch {
        RecentMatch {
            list: list.clone(),
            op,
            invert: false,
            seconds: 0,
            hitcount: 0,
            reap: false,
            rttl: false,
            dest: false,
            mask: [0xff; 16],
            forward: false,
        }
    }

    fn at(l: &Arc<RecentList>, m: &RecentMatch, a: u8, ttl: u8, ms: u64) -> bool {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, a]);
        let mut t = l.table.lock().unwrap();
        t.apply(m, Family::V4, addr, ttl, ms)
    }

    #[test]
    fn hitcount_window_reap_and_eviction() {
        let l = list("recent-unit-1", [0xff; 16], history_for(0));
        let set = m(&l, RecentOp::Set);
        let upd = RecentMatch {
            seconds: 30,
            hitcount: 3,
            ..m(&l, RecentOp::Update)
        };
        // Two stamps: no hit of three; the update then does not stamp.
        assert!(at(&l, &set, 1, 64, 1000) && at(&l, &set, 1, 64, 2000));
        assert!(!at(&l, &upd, 1, 64, 3000));
        assert!(at(&l, &set, 1, 64, 4000));
        assert!(at(&l, &upd, 1, 64, 5000), "three stamps in 30 s");
        // 30 s after the second stamp only the third, fourth (the update's) are left.
        assert!(!at(&l, &upd, 1, 64, 32_001));
        // Another address is not in the list.
        assert!(!at(&l, &upd, 2, 64, 5000));
        // --reap takes the oldest entry once its last stamp left the window.
        let reap = RecentMatch {
            reap: true,
            ..upd.clone()
        };
        assert!(at(&l, &set, 2, 64, 40_000));
        assert_eq!(l.len(), 2);
        assert!(!at(&l, &reap, 2, 64, 40_000));
        assert_eq!(l.len(), 1, "address 1 (last stamp at 5 s) reaped at 40 s");
        // A full list drops its least recently stamped entry.
        for a in 0..LIST_TOT as u8 {
            assert!(at(&l, &set, 100 + a, 64, 50_000 + u64::from(a)));
        }
        assert_eq!(l.len(), LIST_TOT);
        let check = m(&l, RecentOp::Check);
        assert!(!at(&l, &check, 2, 64, 60_000), "2 was the oldest");
        assert!(at(&l, &check, 100, 64, 60_000));
        // --remove matches and empties the entry; ! inverts.
        let remove = m(&l, RecentOp::Remove);
        assert!(at(&l, &remove, 100, 64, 60_000));
        assert!(!at(&l, &remove, 100, 64, 60_000));
        let not_check = RecentMatch {
            invert: true,
            ..check
        };
        assert!(at(&l, &not_check, 100, 64, 60_000));
    }

    #[test]
    fn ttl_history_and_the_registry() {
        let l = list("recent-unit-2", [0xff; 16], history_for(2));
        assert_eq!(l.table.lock().unwrap().history, 2);
        let set = m(&l, RecentOp::Set);
        let rttl = RecentMatch {
            rttl: true,
            ..m(&l, RecentOp::Check)
        };
        assert!(at(&l, &set, 1, 64, 0));
        assert!(at(&l, &rttl, 1, 64, 0) && !at(&l, &rttl, 1, 63, 0));
        // The ring keeps two stamps: a hit count of two within 10 s needs the last two.
        let upd2 = RecentMatch {
            seconds: 10,
            hitcount: 2,
            ..m(&l, RecentOp::Check)
        };
        assert!(at(&l, &set, 1, 64, 5000) && at(&l, &upd2, 1, 64, 5000));
        assert!(at(&l, &set, 1, 64, 20_000) && !at(&l, &upd2, 1, 64, 20_000));
        // The same name is the same list while it lives; a longer history empties it.
        let again = list("recent-unit-2", [0; 16], history_for(2));
        assert!(Arc::ptr_eq(&l, &again) && l.len() == 1);
        let longer = list("recent-unit-2", [0; 16], history_for(0));
        assert!(Arc::ptr_eq(&l, &longer) && l.is_empty());
        drop((l, again, longer, set, rttl, upd2));
        let fresh = list("recent-unit-2", [0; 16], 1);
        assert_eq!(fresh.table.lock().unwrap().mask, [0; 16], "a new list");
    }
}
