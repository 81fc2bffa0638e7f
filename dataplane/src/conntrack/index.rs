//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The hash index of the conntrack table: open addressing with linear probing over an array of
//! 8-byte buckets, sized once and never grown.
//!
//! Invariants:
//! - A bucket is empty (`reference == EMPTY`) or holds `(tag, reference)`; its home position is
//!   [`Index::home`]`(tag)` (the tag scaled to the array's length, which need not be a power of
//!   two), and every bucket between its home and itself, cyclically, is occupied (linear
//!   probing without tombstones: removal shifts later buckets back).
//! - The caller never inserts more than `max_items` references, so the load stays at or under
//!   one half and every probe ends at an empty bucket.
//! - The index stores no keys: the caller checks a candidate reference against its own entry.

use crate::dpdk::{HugePages, PageUse, TableMemory};

/// A bucket: the hash tag and the caller's reference (entry index and direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    tag: u32,
    reference: u32,
}

const _: () = assert!(core::mem::size_of::<Bucket>() == 8);

const EMPTY: u32 = u32::MAX;

/// The references stored under one tag, from [`Index::candidates`].
#[derive(Debug)]
pub struct Candidates<'a> {
    index: &'a Index,
    at: u32,
    tag: u32,
}

impl Iterator for Candidates<'_> {
    type Item = u32;

    #[inline(always)]
    fn next(&mut self) -> Option<u32> {
        loop {
            let b = self.index.buckets[self.at as usize];
            if b.reference == EMPTY {
                return None;
            }
            self.at = self.index.next(self.at);
            if b.tag == self.tag {
                return Some(b.reference);
            }
        }
    }
}

/// An open-addressing index of `u32` references by 32-bit hash tag.
#[derive(Debug)]
pub struct Index {
    buckets: TableMemory<Bucket>,
    len: u32,
}

impl Index {
    /// An index for at most `max_items` references, at a load of at most one half: exactly
    /// twice as many buckets (at least 16), so memory follows the capacity without rounding up
    /// to a power of two; on huge pages as `pages` allows.
    pub fn with_capacity(max_items: u32, pages: HugePages) -> Index {
        let size = (u64::from(max_items) * 2).clamp(16, 1 << 31);
        let empty = Bucket {
            tag: 0,
            reference: EMPTY,
        };
        Index {
            buckets: TableMemory::filled(size as usize, empty, pages),
            len: 0,
        }
    }

    /// Every reference stored, with its tag.
    #[cfg(test)]
    pub fn references(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..self.buckets.len())
            .map(|i| self.buckets[i])
            .filter(|b| b.reference != EMPTY)
            .map(|b| (b.tag, b.reference))
    }

    /// Counts the pages the buckets got.
    pub fn add_pages(&self, u: &mut PageUse) {
        u.add(&self.buckets);
    }

    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Bytes of memory held.
    pub fn bytes(&self) -> usize {
        self.buckets.len() * core::mem::size_of::<Bucket>()
    }

    /// The home position of `tag`: the tag as a fraction of 2^32, scaled to the array (one
    /// multiply; every position equally likely for uniform tags).
    #[inline(always)]
    fn home(&self, tag: u32) -> u32 {
        ((u64::from(tag) * self.buckets.len() as u64) >> 32) as u32
    }

    /// The position after `at`, cyclically.
    #[inline(always)]
    fn next(&self, at: u32) -> u32 {
        let n = at + 1;
        if n as usize == self.buckets.len() {
            0
        } else {
            n
        }
    }

    /// Calls `found` with each reference stored under `tag`, in probe order, until it returns
    /// `Some`; returns that answer.
    #[inline(always)]
    pub fn find<T>(&self, tag: u32, found: impl FnMut(u32) -> Option<T>) -> Option<T> {
        self.candidates(tag).find_map(found)
    }

    /// The references stored under `tag`, in probe order (the caller checks each against its
    /// own entry; a loop over these inlines where a closure may not).
    #[inline(always)]
    pub fn candidates(&self, tag: u32) -> Candidates<'_> {
        Candidates {
            index: self,
            at: self.home(tag),
            tag,
        }
    }

    /// Starts loading `tag`'s home bucket.
    #[inline(always)]
    pub fn prefetch(&self, tag: u32) {
        crate::dpdk::prefetch(&self.buckets[self.home(tag) as usize]);
    }

    /// The first reference stored under `tag` (without checking it), to prefetch what it
    /// refers to.
    #[inline(always)]
    pub fn first(&self, tag: u32) -> Option<u32> {
        self.find(tag, Some)
    }

    /// References in the `n` buckets from `tag`'s home position (for early drop).
    #[inline]
    pub fn near(&self, tag: u32, n: u32) -> impl Iterator<Item = u32> + '_ {
        let len = self.buckets.len() as u32;
        let start = self.home(tag);
        (0..n.min(len)).filter_map(move |i| {
            let b = self.buckets[((u64::from(start) + u64::from(i)) % u64::from(len)) as usize];
            (b.reference != EMPTY).then_some(b.reference)
        })
    }

    /// Stores `reference` under `tag`. The caller keeps within `max_items`.
    #[inline]
    pub fn insert(&mut self, tag: u32, reference: u32) {
        debug_assert!(reference != EMPTY);
        debug_assert!((self.len as usize) < self.buckets.len() / 2 + 1);
        let mut at = self.home(tag);
        while self.buckets[at as usize].reference != EMPTY {
            at = self.next(at);
        }
        self.buckets[at as usize] = Bucket { tag, reference };
        self.len += 1;
    }

    /// Removes `reference` stored under `tag`; returns whether it was there.
    #[inline]
    pub fn remove(&mut self, tag: u32, reference: u32) -> bool {
        let mut at = self.home(tag);
        loop {
            let b = self.buckets[at as usize];
            if b.reference == EMPTY {
                return false;
            }
            if b.reference == reference && b.tag == tag {
                break;
            }
            at = self.next(at);
        }
        // Backward shift: pull each later bucket of the run into the hole when its home
        // position does not lie cyclically in (hole, it].
        let mut hole = at;
        let mut j = at;
        loop {
            j = self.next(j);
            let b = self.buckets[j as usize];
            if b.reference == EMPTY {
                break;
            }
            let home = self.home(b.tag);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.buckets[hole as usize] = b;
                hole = j;
            }
        }
        self.buckets[hole as usize] = Bucket {
            tag: 0,
            reference: EMPTY,
        };
        self.len -= 1;
        true
    }

    /// Empties the index.
    pub fn clear(&mut self) {
        for b in self.buckets.iter_mut() {
            b.reference = EMPTY;
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32),
        Remove(usize),
    }

    proptest! {
        /// Against a model: every stored reference is found under its tag, removed ones are not,
        /// with many tags colliding on few home positions.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec(
            prop_oneof![
                (0u32..64).prop_map(Op::Insert),
                any::<usize>().prop_map(Op::Remove),
            ], 1..300)) {
            let mut idx = Index::with_capacity(200, HugePages::Off);
            let mut model: HashMap<u32, u32> = HashMap::new(); // reference -> tag
            let mut next_ref = 0u32;
            for op in ops {
                match op {
                    Op::Insert(t) if model.len() < 200 => {
                        // Tags differ in low bits but share homes (a home is set by the high
                        // bits).
                        let tag = (t << 26) | ((next_ref % 7) << 3);
                        idx.insert(tag, next_ref);
                        model.insert(next_ref, tag);
                        next_ref += 1;
                    }
                    Op::Insert(_) => {}
                    Op::Remove(i) if !model.is_empty() => {
                        let mut keys: Vec<u32> = model.keys().copied().collect();
                        keys.sort_unstable();
                        let r = keys[i % keys.len()];
                        let tag = model.remove(&r).unwrap();
                        prop_assert!(idx.remove(tag, r));
                        prop_assert!(!idx.remove(tag, r));
                    }
                    Op::Remove(_) => {}
                }
                prop_assert_eq!(idx.len() as usize, model.len());
                for (&r, &tag) in &model {
                    prop_assert_eq!(idx.find(tag, |x| (x == r).then_some(x)), Some(r));
                }
            }
        }
    }

    #[test]
    fn wraps_around_the_end() {
        // 24 buckets: not a power of two.
        let mut idx = Index::with_capacity(12, HugePages::Off);
        let last = u32::MAX;
        assert_eq!(idx.home(last), 23);
        for r in 0..5 {
            idx.insert(last, r);
        }
        idx.insert(0, 99);
        assert!(idx.remove(last, 0));
        for r in 1..5 {
            assert_eq!(idx.find(last, |x| (x == r).then_some(x)), Some(r));
        }
        assert_eq!(idx.find(0, |x| (x == 99).then_some(x)), Some(99));
        assert_eq!(idx.near(last, 3).count(), 3);
    }
}
