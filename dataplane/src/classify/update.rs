//! FAST PATH: no allocation, lock, syscall or log (lookups; `insert`, `delete` and `rebuild` are
//! control-plane calls).
//!
//! The update tier: a compiled [`Tree`] over the rule list of its last build (the *base* list,
//! "old" indexes) plus what changed since, so one rule change is visible in microseconds while a
//! fresh tree is built off the fast path. See `docs/design/classifier.md`.
//!
//! Invariants:
//! - [`Updatable`] answers exactly as [`super::Linear`] does over its *current* list (the base
//!   list with [`Updatable::insert`]s and [`Updatable::delete`]s applied in order).
//! - Surviving base rules keep their relative order, so their new index is
//!   `old + delta(old)`, with `delta` piecewise constant over a sorted list of breakpoints
//!   (`shifts`); the resulting map is non-decreasing over all old indexes, deleted ones included.
//! - Deleted base rules are set in the `tombstones` bitmap; the tree's leaf scan passes over them.
//! - Rules added since the build live in TupleMerge-style tables: one per tuple (family, source
//!   and destination common-prefix length rounded down to a multiple of 8, exact protocol or
//!   not), hashing the packet's masked addresses to a list of added rules sorted by new index, each
//!   confirmed with [`FlatRule::matches`]. A hash collision only lengthens a list.
//! - The base (tree and base rules) is shared behind an `Arc`, so cloning an `Updatable` copies
//!   only the delta: publish a change by cloning, changing and swapping the clone in (RCU), and
//!   lookups never wait.

use super::{Classifier, FlatRule, PacketMeta, Tree, TreeConfig};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A rule change that cannot apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("rule index {index} out of range (the list has {len} rules)")]
    IndexOutOfRange { index: usize, len: usize },
    #[error("rule lists are limited to 2^31 rules")]
    TooManyRules,
}

/// The compiled part, shared by every clone.
#[derive(Debug)]
struct Base {
    tree: Tree,
    rules: Vec<FlatRule>,
}

/// A rule added since the build.
#[derive(Clone, Debug)]
struct Added {
    rule: FlatRule,
    /// Index in the current list.
    idx: u32,
    /// Which table holds it.
    table: u32,
}

/// The tuple of a TupleMerge table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Tuple {
    v6: bool,
    /// Bits of the 128-bit (v4-mapped for IPv4) source and destination that are hashed.
    src_bits: u8,
    dst_bits: u8,
    /// Whether the protocol is exact, and hashed.
    proto: bool,
}

/// The 64-bit hash is the key; this hasher passes it through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[derive(Clone, Debug)]
struct Table {
    tuple: Tuple,
    /// Hash of the masked key to slots in `Updatable::added`, sorted by current index.
    buckets: HashMap<u64, Vec<u32>, BuildHasherDefault<PassThrough>>,
    /// Smallest and largest current index in the table (`u32::MAX`, 0 when empty).
    min_idx: u32,
    max_idx: u32,
}

/// The decision tree plus an update tier; see the module docs.
#[derive(Clone, Debug)]
pub struct Updatable {
    base: Arc<Base>,
    cfg: TreeConfig,
    /// `(first old index, delta)`, sorted, starting with `(0, 0)`: old indexes from a breakpoint
    /// to the next map to `old + delta`.
    shifts: Vec<(u32, i64)>,
    /// One bit per old index: deleted since the build.
    tombstones: Vec<u64>,
    deleted: usize,
    /// Added rules by slot; `None` once deleted again.
    added: Vec<Option<Added>>,
    /// Slots of live added rules, sorted by current index.
    order: Vec<u32>,
    tables: Vec<Table>,
    len: usize,
}

/// Rounds a common-prefix length down to a table class.
fn class(bits: u32) -> u8 {
    (bits & !7) as u8
}

fn common_bits(r: (super::IpAddr128, super::IpAddr128)) -> u32 {
    (u128::from_be_bytes(r.0 .0) ^ u128::from_be_bytes(r.1 .0)).leading_zeros()
}

fn masked(a: &super::IpAddr128, bits: u8) -> u128 {
    let v = u128::from_be_bytes(a.0);
    if bits == 0 {
        0
    } else {
        v & (u128::MAX << (128 - u32::from(bits)))
    }
}

/// Mixes the masked key into 64 bits (a multiply-xorshift finaliser).
#[inline(always)]
fn hash(src: u128, dst: u128, proto: u8) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (src as u64) ^ ((src >> 64) as u64).rotate_left(23);
    h = (h ^ (dst as u64).rotate_left(7)).wrapping_mul(K);
    h ^= ((dst >> 64) as u64).rotate_left(41) ^ u64::from(proto);
    h = (h ^ (h >> 32)).wrapping_mul(K);
    h ^ (h >> 29)
}

impl Tuple {
    fn of(r: &FlatRule) -> Tuple {
        Tuple {
            v6: r.family == super::Family::V6,
            src_bits: class(common_bits(r.src)),
            dst_bits: class(common_bits(r.dst)),
            proto: r.proto.0 == r.proto.1,
        }
    }

    #[inline(always)]
    fn key_of(&self, src: &super::IpAddr128, dst: &super::IpAddr128, proto: u8) -> u64 {
        hash(
            masked(src, self.src_bits),
            masked(dst, self.dst_bits),
            if self.proto { proto } else { 0 },
        )
    }
}

impl Updatable {
    /// Builds the tree for `rules` with the default [`TreeConfig`].
    pub fn new(rules: Vec<FlatRule>) -> Updatable {
        Updatable::with_config(rules, TreeConfig::default())
    }

    pub fn with_config(rules: Vec<FlatRule>, cfg: TreeConfig) -> Updatable {
        let tree = Tree::with_config(&rules, &cfg);
        let len = rules.len();
        Updatable {
            base: Arc::new(Base { tree, rules }),
            cfg,
            shifts: vec![(0, 0)],
            tombstones: vec![0; len.div_ceil(64)],
            deleted: 0,
            added: Vec::new(),
            order: Vec::new(),
            tables: Vec::new(),
            len,
        }
    }

    /// Rules in the current list.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The base tree (for its statistics).
    pub fn tree(&self) -> &Tree {
        &self.base.tree
    }

    /// Rules added and base rules deleted since the last build.
    pub fn pending(&self) -> (usize, usize) {
        (self.order.len(), self.deleted)
    }

    /// Whether a rebuild is due: more than 1 % of the base (at least 256) added, or more than
    /// 10 % deleted. Lookups stay exact either way, only slower.
    pub fn needs_rebuild(&self) -> bool {
        let n = self.base.rules.len();
        self.order.len() > (n / 100).max(256) || self.deleted > n / 10
    }

    /// The current rule list.
    pub fn rules(&self) -> Vec<FlatRule> {
        let mut out = Vec::with_capacity(self.len);
        let mut added = self.order.iter().map(|&s| self.slot(s)).peekable();
        for (old, r) in self.base.rules.iter().enumerate() {
            if self.is_tombstone(old as u32) {
                continue;
            }
            while let Some(a) = added.next_if(|a| a.idx as usize == out.len()) {
                out.push(a.rule.clone());
            }
            out.push(r.clone());
        }
        out.extend(added.map(|a| a.rule.clone()));
        out
    }

    /// A fresh tree over the current list, with an empty update tier: the slow, off-fast-path
    /// step (about 100-150 ms for 100K rules). Changes made to `self` meanwhile must be replayed
    /// on the result before it replaces `self`.
    pub fn rebuild(&self) -> Updatable {
        Updatable::with_config(self.rules(), self.cfg)
    }

    /// Inserts `rule` at `index` (`0..=len`): it becomes rule `index` and later rules move up one.
    pub fn insert(&mut self, index: usize, rule: FlatRule) -> Result<(), UpdateError> {
        if index > self.len {
            return Err(UpdateError::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        if self.len >= i32::MAX as usize {
            return Err(UpdateError::TooManyRules);
        }
        let k = index as u32;
        self.shift_from(k, 1);
        let tuple = Tuple::of(&rule);
        let table = match self.tables.iter().position(|t| t.tuple == tuple) {
            Some(t) => t,
            None => {
                self.tables.push(Table {
                    tuple,
                    buckets: HashMap::default(),
                    min_idx: u32::MAX,
                    max_idx: 0,
                });
                self.tables.len() - 1
            }
        };
        let key = tuple.key_of(&rule.src.0, &rule.dst.0, rule.proto.0);
        let slot = self.added.len() as u32;
        self.added.push(Some(Added {
            rule,
            idx: k,
            table: table as u32,
        }));
        let pos = self.order.partition_point(|&s| self.slot(s).idx < k);
        self.order.insert(pos, slot);
        let added = &self.added;
        let t = &mut self.tables[table];
        let list = t.buckets.entry(key).or_default();
        let at = list.partition_point(|&s| added[s as usize].as_ref().is_some_and(|a| a.idx < k));
        list.insert(at, slot);
        t.min_idx = t.min_idx.min(k);
        t.max_idx = t.max_idx.max(k);
        self.len += 1;
        Ok(())
    }

    /// Deletes rule `index`; later rules move down one. Returns the rule.
    pub fn delete(&mut self, index: usize) -> Result<FlatRule, UpdateError> {
        if index >= self.len {
            return Err(UpdateError::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        let k = index as u32;
        let pos = self.order.partition_point(|&s| self.slot(s).idx < k);
        let removed = match self.order.get(pos) {
            Some(&s) if self.slot(s).idx == k => {
                self.order.remove(pos);
                let a = self.added[s as usize].take().expect("live slot");
                let t = &mut self.tables[a.table as usize];
                let key = t.tuple.key_of(&a.rule.src.0, &a.rule.dst.0, a.rule.proto.0);
                if let Some(list) = t.buckets.get_mut(&key) {
                    list.retain(|&x| x != s);
                    if list.is_empty() {
                        t.buckets.remove(&key);
                    }
                }
                a.rule
            }
            _ => {
                let mut old = self.old_at_or_after(k);
                while self.is_tombstone(old) {
                    old += 1;
                }
                debug_assert_eq!(self.new_of(old), k);
                self.tombstones[old as usize / 64] |= 1 << (old % 64);
                self.deleted += 1;
                self.base.rules[old as usize].clone()
            }
        };
        self.shift_from(k + 1, -1);
        self.len -= 1;
        Ok(removed)
    }

    fn slot(&self, s: u32) -> &Added {
        self.added[s as usize]
            .as_ref()
            .expect("order holds live slots")
    }

    #[inline(always)]
    fn is_tombstone(&self, old: u32) -> bool {
        self.tombstones
            .get(old as usize / 64)
            .is_some_and(|w| w & (1 << (old % 64)) != 0)
    }

    /// Moves every rule at current index `>= k` by `by`.
    fn shift_from(&mut self, k: u32, by: i64) {
        let old = self.old_at_or_after(k);
        if (old as usize) < self.base.rules.len() {
            let j = self.shifts.partition_point(|&(s, _)| s <= old) - 1;
            let j = if self.shifts[j].0 == old {
                j
            } else {
                self.shifts.insert(j + 1, (old, self.shifts[j].1));
                j + 1
            };
            for s in &mut self.shifts[j..] {
                s.1 += by;
            }
        }
        let start = self.order.partition_point(|&s| self.slot(s).idx < k);
        for &s in &self.order[start..] {
            let a = self.added[s as usize].as_mut().expect("live slot");
            a.idx = (i64::from(a.idx) + by) as u32;
        }
        for t in &mut self.tables {
            t.min_idx = u32::MAX;
            t.max_idx = 0;
        }
        for &s in &self.order {
            let a = self.added[s as usize].as_ref().expect("live slot");
            let t = &mut self.tables[a.table as usize];
            t.min_idx = t.min_idx.min(a.idx);
            t.max_idx = t.max_idx.max(a.idx);
        }
    }

    /// The current index of old index `old` (for a deleted one: that of the next survivor).
    #[inline(always)]
    fn new_of(&self, old: u32) -> u32 {
        let j = self.shifts.partition_point(|&(s, _)| s <= old) - 1;
        (i64::from(old) + self.shifts[j].1) as u32
    }

    /// The smallest old index whose current index is `>= k` (the base length when none).
    #[inline(always)]
    fn old_at_or_after(&self, k: u32) -> u32 {
        let n = self.base.rules.len() as i64;
        let k = i64::from(k);
        let sh = &self.shifts;
        // Binary search for the first segment whose last old index maps to `>= k` (the map is
        // non-decreasing, so segments' last values are too).
        let (mut lo, mut hi) = (0, sh.len());
        while lo < hi {
            let j = (lo + hi) / 2;
            let end = sh.get(j + 1).map_or(n, |&(x, _)| i64::from(x));
            if end - 1 + sh[j].1 < k {
                lo = j + 1;
            } else {
                hi = j;
            }
        }
        match sh.get(lo) {
            None => n as u32,
            Some(&(s, d)) => (k - d).max(i64::from(s)).min(n) as u32,
        }
    }

    /// Whether the current list is the base list: nothing deleted and no added rule alive (every
    /// index then maps to itself, so the tree answers alone).
    #[inline(always)]
    fn is_pristine(&self) -> bool {
        self.deleted == 0 && self.order.is_empty()
    }

    /// The first rule of the current list at or after `from` that matches `p`.
    #[inline]
    pub fn first_match(&self, p: &PacketMeta, from: u32) -> u32 {
        let base = &*self.base;
        if self.is_pristine() {
            return base.tree.first_match(&base.rules, p, from, u32::MAX);
        }
        let old = self.old_at_or_after(from);
        let mut best = if (old as usize) < base.rules.len() {
            let ob = if self.deleted == 0 {
                base.tree.first_match(&base.rules, p, old, u32::MAX)
            } else {
                base.tree
                    .first_match_skipping(&base.rules, p, old, u32::MAX, |i| self.is_tombstone(i))
            };
            if ob == u32::MAX {
                u32::MAX
            } else {
                self.new_of(ob)
            }
        } else {
            u32::MAX
        };
        if !self.tables.is_empty() {
            best = self.added_match(p, from, best);
        }
        best
    }

    #[inline]
    fn added_match(&self, p: &PacketMeta, from: u32, mut best: u32) -> u32 {
        let k = &p.key;
        let v6 = k.family == super::Family::V6;
        for t in &self.tables {
            if t.min_idx >= best || t.max_idx < from || t.tuple.v6 != v6 {
                continue;
            }
            let key = t.tuple.key_of(&k.src, &k.dst, k.proto);
            let Some(list) = t.buckets.get(&key) else {
                continue;
            };
            for &s in list {
                let Some(a) = &self.added[s as usize] else {
                    continue;
                };
                if a.idx >= best {
                    break;
                }
                if a.idx >= from && a.rule.matches(p) {
                    best = a.idx;
                    break;
                }
            }
        }
        best
    }
}

impl Classifier for Updatable {
    /// `rules` must be the current list ([`Updatable::rules`]), or one whose rules match the same
    /// packets (actions and origins are not read); the classifier reads its own copy.
    fn classify(&self, rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32], out: &mut [u32]) {
        debug_assert_eq!(rules.len(), self.len, "classify with the current rule list");
        if self.is_pristine() {
            self.base.tree.classify(&self.base.rules, pkts, from, out);
            return;
        }
        for ((p, &f), o) in pkts.iter().zip(from).zip(out.iter_mut()) {
            *o = self.first_match(p, f);
        }
    }

    #[inline]
    fn first_match(&self, _rules: &[FlatRule], p: &PacketMeta, from: u32) -> u32 {
        Updatable::first_match(self, p, from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{classbench, ct, Action, FragMatch, Linear};
    use crate::wire::{Family, FlowKey, IpAddr128};
    use proptest::prelude::*;

    fn linear(rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32]) -> Vec<u32> {
        let mut out = vec![0; pkts.len()];
        Linear.classify(rules, pkts, from, &mut out);
        out
    }

    fn upd(u: &Updatable, rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32]) -> Vec<u32> {
        let mut out = vec![0; pkts.len()];
        u.classify(rules, pkts, from, &mut out);
        out
    }

    /// Small ranges in a tiny space, so inserted and deleted rules overlap the packets often.
    fn rule() -> impl Strategy<Value = FlatRule> {
        let r = |n: u32| (0..n, 0..n).prop_map(|(a, b)| (a.min(b), a.max(b)));
        (
            r(300),
            r(300),
            r(40),
            r(8),
            any::<bool>(),
            0..8u8,
            prop_oneof![Just(0u32), Just(255), Just(65535), 0..300u32],
        )
            .prop_map(|(s, d, dp, pr, v6, extra, wide)| {
                let fam = if v6 { Family::V6 } else { Family::V4 };
                let a = |v: u32| {
                    if v6 {
                        IpAddr128(u128::from(v).to_be_bytes())
                    } else {
                        IpAddr128::from_v4_octets(v.to_be_bytes())
                    }
                };
                let mut x = FlatRule::any(fam, Action::Accept, 0);
                x.src = (a(s.0), a(s.1 + wide));
                x.dst = (a(d.0), a(d.1));
                x.dport = (dp.0 as u16, dp.1 as u16);
                x.proto = (pr.0 as u8, pr.1 as u8);
                match extra {
                    0 => x.ct_states = ct::ESTABLISHED,
                    1 => x.frag = FragMatch::LaterOnly,
                    2 => x.src = (a(0), a(u32::MAX)),
                    _ => {}
                }
                x
            })
    }

    fn packet(s: u32, d: u32, dp: u16, pr: u8, v6: bool, bits: u8) -> PacketMeta {
        let key = if v6 {
            FlowKey::new_v6(u128::from(s).into(), u128::from(d).into(), pr, 0, dp)
        } else {
            FlowKey::new_v4(s.into(), d.into(), pr, 0, dp)
        };
        PacketMeta {
            key,
            in_port: 0,
            out_port: 0,
            ct_state: if bits & 1 == 0 {
                ct::NEW
            } else {
                ct::ESTABLISHED
            },
            tcp_flags: 0,
            later_fragment: bits & 6 == 0,
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(usize, FlatRule),
        Delete(usize),
        Rebuild,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (any::<usize>(), rule()).prop_map(|(i, r)| Op::Insert(i, r)),
            4 => any::<usize>().prop_map(Op::Delete),
            1 => Just(Op::Rebuild),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn agrees_with_linear_after_changes(
            initial in proptest::collection::vec(rule(), 0..40),
            ops in proptest::collection::vec(op(), 1..40),
            pkts in proptest::collection::vec((0..330u32, 0..310u32, 0..42u16, 0..9u8, any::<bool>(), any::<u8>(), 0..60u32), 1..80),
        ) {
            let pkts: Vec<(PacketMeta, u32)> = pkts.into_iter()
                .map(|(s, d, dp, pr, v6, bits, f)| (packet(s, d, dp, pr, v6, bits), f.saturating_sub(20)))
                .collect();
            let (p, from): (Vec<PacketMeta>, Vec<u32>) = pkts.into_iter().unzip();
            let cfg = TreeConfig { binth: 2, spfac: 4, max_cut_bits: 3, ..TreeConfig::default() };
            let mut list = initial.clone();
            let mut u = Updatable::with_config(initial, cfg);
            for op in ops {
                match op {
                    Op::Insert(i, r) => {
                        let i = i % (list.len() + 1);
                        list.insert(i, r.clone());
                        u.insert(i, r).unwrap();
                    }
                    Op::Delete(i) => {
                        if list.is_empty() {
                            prop_assert!(u.delete(i).is_err());
                            continue;
                        }
                        let i = i % list.len();
                        let want = list.remove(i);
                        prop_assert_eq!(u.delete(i).unwrap(), want);
                    }
                    Op::Rebuild => u = u.rebuild(),
                }
                prop_assert_eq!(u.len(), list.len());
                prop_assert_eq!(upd(&u, &list, &p, &from), linear(&list, &p, &from));
            }
            prop_assert_eq!(u.rules(), list);
        }
    }

    #[test]
    fn many_changes_on_a_classbench_set() {
        let mut list = classbench::synth_rules(&classbench::SynthConfig {
            rules: 3000,
            family: Family::V4,
            seed: 21,
            default_rule: true,
        });
        let extra = classbench::synth_rules(&classbench::SynthConfig {
            rules: 400,
            family: Family::V4,
            seed: 22,
            default_rule: false,
        });
        let pkts = classbench::synth_trace(&list, 23, 4000);
        let from: Vec<u32> = (0..pkts.len() as u32)
            .map(|i| if i % 5 == 4 { i % 3000 } else { 0 })
            .collect();
        let mut u = Updatable::new(list.clone());
        let mut rng = classbench::SplitMix64(24);
        for (n, r) in extra.into_iter().enumerate() {
            let i = rng.below(list.len() as u64 + 1) as usize;
            list.insert(i, r.clone());
            u.insert(i, r).unwrap();
            let d = rng.below(list.len() as u64) as usize;
            assert_eq!(u.delete(d).unwrap(), list.remove(d));
            if n % 50 == 0 {
                assert_eq!(
                    upd(&u, &list, &pkts, &from),
                    linear(&list, &pkts, &from),
                    "after {n}"
                );
            }
        }
        assert!(u.needs_rebuild());
        assert_eq!(upd(&u, &list, &pkts, &from), linear(&list, &pkts, &from));
        let fresh = u.rebuild();
        assert_eq!(fresh.pending(), (0, 0));
        assert_eq!(
            upd(&fresh, &list, &pkts, &from),
            linear(&list, &pkts, &from)
        );
    }
}
