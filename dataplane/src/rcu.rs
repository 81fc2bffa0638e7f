//! RCU-style publication of immutable snapshots (rule sets) from the control thread to workers.
//!
//! The control thread [`Publisher::publish`]es a new `Arc<T>` and bumps an epoch. Each worker
//! holds a [`Reader`]; between two bursts it calls [`Reader::quiesce`], which picks up the newest
//! snapshot when the epoch moved (one atomic load when it did not) and then reports the epoch it
//! now runs. An old snapshot is freed by the control thread, in [`Publisher::reclaim`], only once
//! every reader has reported an epoch at least as new as its successor's: a worker never frees a
//! snapshot (its reference is never the last) and never takes a lock.

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long [`Publisher::wait`] spins before it yields the CPU between checks.
pub const SPIN: Duration = Duration::from_micros(200);

/// One reader's quiescent-state report, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    epoch: AtomicU64,
}

struct Shared<T> {
    current: ArcSwap<T>,
    epoch: AtomicU64,
    slots: Vec<Slot>,
}

/// The control side: publishes snapshots and frees retired ones.
pub struct Publisher<T> {
    shared: Arc<Shared<T>>,
    /// Snapshots replaced but possibly still in use, with the epoch that replaced them.
    retired: Vec<(u64, Arc<T>)>,
    readers_taken: usize,
}

/// A worker's view: the snapshot it runs on and its quiescent-state slot.
pub struct Reader<T> {
    shared: Arc<Shared<T>>,
    local: Arc<T>,
    seen: u64,
    slot: usize,
}

impl<T> Publisher<T> {
    /// A publisher for `readers` workers, starting with `initial` at epoch 1.
    pub fn new(initial: T, readers: usize) -> Publisher<T> {
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(initial),
            epoch: AtomicU64::new(1),
            slots: (0..readers)
                .map(|_| Slot {
                    epoch: AtomicU64::new(1),
                })
                .collect(),
        });
        Publisher {
            shared,
            retired: Vec::new(),
            readers_taken: 0,
        }
    }

    /// The next reader handle (one per worker, `readers` in all).
    pub fn reader(&mut self) -> Option<Reader<T>> {
        if self.readers_taken == self.shared.slots.len() {
            return None;
        }
        let slot = self.readers_taken;
        self.readers_taken += 1;
        let seen = self.shared.epoch.load(Ordering::Acquire);
        let local = self.shared.current.load_full();
        self.shared.slots[slot].epoch.store(seen, Ordering::Release);
        Some(Reader {
            local,
            seen,
            shared: self.shared.clone(),
            slot,
        })
    }

    /// The snapshot now published.
    pub fn current(&self) -> Arc<T> {
        self.shared.current.load_full()
    }

    /// The epoch now published.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// Publishes `next`; returns its epoch. Readers switch at their next quiescent point.
    pub fn publish(&mut self, next: T) -> u64 {
        let old = self.shared.current.swap(Arc::new(next));
        let epoch = self.shared.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.retired.push((epoch, old));
        epoch
    }

    /// The oldest epoch any reader still runs.
    pub fn min_reader_epoch(&self) -> u64 {
        self.shared
            .slots
            .iter()
            .map(|s| s.epoch.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Frees the snapshots no reader can still use; returns how many were freed.
    pub fn reclaim(&mut self) -> usize {
        let min = self.min_reader_epoch();
        let before = self.retired.len();
        // A snapshot replaced at epoch e is unused once every reader runs epoch >= e.
        self.retired.retain(|(e, _)| *e > min);
        before - self.retired.len()
    }

    /// Waits until every reader runs `epoch` or newer (or `timeout` passes); reclaims what it can.
    /// Returns whether all readers got there.
    pub fn synchronize(&mut self, epoch: u64, timeout: Duration) -> bool {
        let done = self.wait(epoch, timeout);
        if done {
            self.reclaim();
        }
        done
    }

    /// Waits until every reader runs `epoch` or newer (or `timeout` passes), freeing nothing.
    /// Returns whether all readers got there.
    ///
    /// It spins for [`SPIN`] first: a running worker reaches its quiescent point within a burst,
    /// and a yield could hand the CPU to another process for a whole time slice first.
    pub fn wait(&self, epoch: u64, timeout: Duration) -> bool {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            if self.min_reader_epoch() >= epoch {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if now - start < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Snapshots retired but not yet freed.
    pub fn retired(&self) -> usize {
        self.retired.len()
    }
}

impl<T> Reader<T> {
    /// The snapshot this reader runs on until its next quiescent point.
    #[inline]
    pub fn get(&self) -> &T {
        &self.local
    }

    /// A quiescent point: nothing from the current snapshot is held across it. Picks up a newer
    /// snapshot if one was published, then reports the epoch this reader now runs.
    #[inline]
    pub fn quiesce(&mut self) {
        let e = self.shared.epoch.load(Ordering::Acquire);
        if e != self.seen {
            self.switch(e);
        }
    }

    #[cold]
    #[inline(never)]
    fn switch(&mut self, e: u64) {
        // Load the snapshot after reading the epoch: it is at least as new as `e`. The old Arc is
        // dropped here but the publisher still holds it (retired), so this is never the last
        // reference and nothing is freed on the worker.
        self.local = self.shared.current.load_full();
        self.seen = e;
        self.shared.slots[self.slot]
            .epoch
            .store(e, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn readers_switch_and_old_snapshots_are_freed_only_after_all_quiesce() {
        let mut p = Publisher::new(vec![1u32], 2);
        let mut a = p.reader().unwrap();
        let mut b = p.reader().unwrap();
        assert!(p.reader().is_none());
        let e = p.publish(vec![2]);
        assert_eq!(*a.get(), vec![1]);
        a.quiesce();
        assert_eq!(*a.get(), vec![2]);
        assert_eq!(p.reclaim(), 0, "b still runs the old snapshot");
        assert_eq!(*b.get(), vec![1]);
        b.quiesce();
        assert!(p.synchronize(e, Duration::from_secs(1)));
        assert_eq!(p.retired(), 0);
    }

    #[test]
    fn concurrent_readers_only_ever_see_whole_snapshots() {
        // Each snapshot is (n, n * 7); a reader seeing a mix would catch a torn publication.
        let mut p = Publisher::new((0u64, 0u64), 2);
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let mut r = p.reader().unwrap();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut last = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let &(n, m) = r.get();
                        assert_eq!(m, n * 7);
                        assert!(n >= last, "snapshots never go back in time");
                        last = n;
                        r.quiesce();
                    }
                })
            })
            .collect();
        for n in 1..=500u64 {
            let e = p.publish((n, n * 7));
            assert!(p.synchronize(e, Duration::from_secs(10)), "readers quiesce");
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(p.retired(), 0);
    }
}
