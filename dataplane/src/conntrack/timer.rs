//! FAST PATH: no allocation, lock, syscall or log.
//!
//! A timer wheel over entry indexes, for expiry without scanning the table.
//!
//! Invariants:
//! - Time is cut into ticks of 2^[`TICK_SHIFT`] ns (about 134 ms); slot `t % SLOTS` holds the
//!   entries armed for tick `t`, as an intrusive doubly linked list through `links`.
//! - An armed entry's tick is in `[cursor, cursor + SLOTS)`, where `cursor` is the next tick to
//!   visit. Deadlines further out are armed at the horizon and re-armed when visited. So the
//!   slot alone gives the tick, and the caller keeps an entry's slot in the entry itself
//!   ([`UNARMED`] when it is not armed): a packet that refreshes a deadline reads no link.
//! - Arming is lazy: a packet that extends a deadline writes only the entry's deadline; the
//!   wheel finds it when its old tick comes and re-arms it. A deadline moved *earlier* than its
//!   armed tick must be re-armed at once ([`Wheel::rearm_if_late`]).

use crate::dpdk::{HugePages, PageUse, TableMemory};

/// Nanoseconds per tick, as a shift.
pub const TICK_SHIFT: u32 = 27;
/// Slots in the wheel: a horizon of 4096 ticks, about 9 minutes.
pub const SLOTS: u64 = 4096;

/// The slot of an entry that is not armed (13 bits, as an entry stores its slot).
pub const UNARMED: u16 = 0x1fff;

const _: () = assert!(SLOTS <= UNARMED as u64);

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Link {
    next: u32,
    prev: u32,
}

const _: () = assert!(core::mem::size_of::<Link>() == 8);

const UNLINKED: Link = Link {
    next: NIL,
    prev: NIL,
};

#[inline]
const fn tick_of(ns: u64) -> u64 {
    ns >> TICK_SHIFT
}

/// The wheel; see the module docs.
#[derive(Debug)]
pub struct Wheel {
    heads: Box<[u32]>,
    /// By entry: large, so on huge pages as the table's are.
    links: TableMemory<Link>,
    cursor: u64,
    started: bool,
}

impl Wheel {
    pub fn new(entries: u32, pages: HugePages) -> Wheel {
        Wheel {
            heads: vec![NIL; SLOTS as usize].into_boxed_slice(),
            links: TableMemory::filled(entries as usize, UNLINKED, pages),
            cursor: 0,
            started: false,
        }
    }

    /// Counts the pages the links got.
    pub fn add_pages(&self, u: &mut PageUse) {
        u.add(&self.links);
    }

    pub fn bytes(&self) -> usize {
        self.heads.len() * 4 + self.links.len() * core::mem::size_of::<Link>()
    }

    #[inline]
    fn start(&mut self, now_ns: u64) {
        if !self.started {
            self.cursor = tick_of(now_ns);
            self.started = true;
        }
    }

    /// Arms entry `e` (not armed) for `deadline_ns`; returns its slot, for the caller to keep.
    #[inline]
    pub fn arm(&mut self, e: u32, deadline_ns: u64, now_ns: u64) -> u16 {
        self.start(now_ns);
        // Never the tick being visited (a re-armed entry would be met again at once), never
        // past the horizon.
        let t = tick_of(deadline_ns).clamp(self.cursor + 1, self.cursor + SLOTS - 1);
        let slot = (t % SLOTS) as usize;
        let head = self.heads[slot];
        self.links[e as usize] = Link {
            next: head,
            prev: NIL,
        };
        if head != NIL {
            self.links[head as usize].prev = e;
        }
        self.heads[slot] = e;
        slot as u16
    }

    /// Starts loading entry `e`'s link (which arming writes).
    #[inline(always)]
    pub fn prefetch_link(&self, e: u32) {
        if let Some(l) = self.links.get(e as usize) {
            crate::dpdk::prefetch(l);
        }
    }

    /// Unlinks entry `e`, armed in `slot` (nothing when `slot` is [`UNARMED`]).
    #[inline]
    pub fn disarm(&mut self, e: u32, slot: u16) {
        if slot == UNARMED {
            return;
        }
        let l = self.links[e as usize];
        if l.prev == NIL {
            self.heads[usize::from(slot)] = l.next;
        } else {
            self.links[l.prev as usize].next = l.next;
        }
        if l.next != NIL {
            self.links[l.next as usize].prev = l.prev;
        }
        self.links[e as usize] = UNLINKED;
    }

    /// The tick an entry armed in `slot` waits for.
    #[inline(always)]
    fn tick_of_slot(&self, slot: u16) -> u64 {
        self.cursor + (u64::from(slot) + SLOTS - self.cursor % SLOTS) % SLOTS
    }

    /// Re-arms `e` (armed in `slot`) when its new deadline comes before the tick it is armed
    /// for; returns its slot. Reads nothing of the wheel otherwise (the test is inline, the
    /// re-arming, rare, out of line).
    #[inline(always)]
    pub fn rearm_if_late(&mut self, e: u32, slot: u16, deadline_ns: u64, now_ns: u64) -> u16 {
        if slot != UNARMED && tick_of(deadline_ns) < self.tick_of_slot(slot) {
            self.rearm(e, slot, deadline_ns, now_ns)
        } else {
            slot
        }
    }

    #[inline(never)]
    fn rearm(&mut self, e: u32, slot: u16, deadline_ns: u64, now_ns: u64) -> u16 {
        self.disarm(e, slot);
        self.arm(e, deadline_ns, now_ns)
    }

    /// The next entry armed for a tick at or before `now_ns`'s, unlinked (no longer armed:
    /// the caller forgets its slot); `None` when the wheel has caught up. The caller expires
    /// it or arms it again.
    #[inline]
    pub fn pop_due(&mut self, now_ns: u64) -> Option<u32> {
        self.start(now_ns);
        let now = tick_of(now_ns);
        if now >= self.cursor + SLOTS {
            // Idle for a whole turn: every slot is due once.
            self.cursor = now + 1 - SLOTS;
        }
        while self.cursor <= now {
            let slot = (self.cursor % SLOTS) as u16;
            let e = self.heads[usize::from(slot)];
            if e != NIL {
                self.disarm(e, slot);
                return Some(e);
            }
            self.cursor += 1;
        }
        None
    }

    /// Disarms everything (the caller forgets every slot).
    pub fn clear(&mut self) {
        self.heads.fill(NIL);
        self.links.fill(UNLINKED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TICK: u64 = 1 << TICK_SHIFT;

    #[test]
    fn far_deadlines_come_back_until_due() {
        let mut w = Wheel::new(4, HugePages::Off);
        let deadline = 3 * SLOTS * TICK;
        w.arm(0, deadline, 0);
        let mut seen = 0;
        let mut now = 0;
        while now <= deadline + TICK {
            while let Some(e) = w.pop_due(now) {
                assert_eq!(e, 0);
                seen += 1;
                if now < deadline {
                    w.arm(0, deadline, now);
                } else {
                    return;
                }
            }
            now += TICK;
        }
        panic!("never due (visited {seen} times)");
    }

    #[test]
    fn earlier_deadlines_are_rearmed() {
        let mut w = Wheel::new(2, HugePages::Off);
        let slot = w.arm(0, 100 * TICK, 0);
        // Later: nothing moves.
        assert_eq!(w.rearm_if_late(0, slot, 200 * TICK, TICK), slot);
        // Earlier: armed again, in another slot.
        let early = w.rearm_if_late(0, slot, 10 * TICK, TICK);
        assert_ne!(early, slot);
        let mut now = 0;
        while w.pop_due(now).is_none() {
            now += TICK;
        }
        assert_eq!(now, 10 * TICK);
    }

    proptest! {
        /// Entries come back no earlier than their tick and, when polled every tick, within one
        /// tick after it; disarmed entries never come back; deadlines moved earlier come back
        /// by their new time.
        #[test]
        fn due_within_a_tick(deadlines in proptest::collection::vec(0u64..(2 * SLOTS * TICK), 1..40),
                             drop_some in proptest::collection::vec(any::<bool>(), 40),
                             sooner in proptest::collection::vec(proptest::option::of(0u64..(2 * SLOTS * TICK)), 40)) {
            let n = deadlines.len() as u32;
            let mut w = Wheel::new(n, HugePages::Off);
            let mut deadlines = deadlines;
            let mut slots: Vec<u16> = deadlines.iter().enumerate().map(|(e, &d)| w.arm(e as u32, d, 0)).collect();
            for e in 0..n as usize {
                if drop_some[e] {
                    w.disarm(e as u32, slots[e]);
                    slots[e] = UNARMED;
                } else if let Some(d) = sooner[e].filter(|&d| d < deadlines[e]) {
                    deadlines[e] = d;
                    slots[e] = w.rearm_if_late(e as u32, slots[e], d, 0);
                }
            }
            let mut done = vec![false; n as usize];
            let mut now = 0;
            while now < 3 * SLOTS * TICK {
                while let Some(e) = w.pop_due(now) {
                    let d = deadlines[e as usize];
                    prop_assert!(!drop_some[e as usize]);
                    if d <= now {
                        prop_assert!(now < d + 2 * TICK, "late: {} vs {}", now, d);
                        done[e as usize] = true;
                        slots[e as usize] = UNARMED;
                    } else {
                        slots[e as usize] = w.arm(e, d, now);
                    }
                }
                now += TICK;
            }
            for e in 0..n as usize {
                prop_assert_eq!(done[e], !drop_some[e]);
            }
        }
    }
}
