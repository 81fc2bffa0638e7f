//! FAST PATH: no allocation, lock, syscall or log.
//!
//! Rampart's fast classifier: decision trees that cut the 5-tuple space (HiCuts-style equal-size
//! cuts on aligned blocks) over rule partitions grouped by address "smallness" (as CutSplit and
//! EffiCuts do), with leaves of at most about `binth` rules scanned in index order. See
//! `docs/design/classifier.md` for the choice and the alternatives.
//!
//! Invariants:
//! - [`Tree`] answers exactly as [`super::Linear`] does over the rules it was built from: the first
//!   rule at or after `from` that matches per [`FlatRule::matches`], or `u32::MAX`.
//! - `classify` must be given the same rule slice the tree was built from (rules with conditions
//!   beyond the 5-tuple are confirmed against it).
//! - IPv4 rules live in a tree over 32-bit addresses (their ranges clipped to the v4-mapped block);
//!   IPv6 rules in one over 128-bit addresses. An IPv4 packet whose addresses are not v4-mapped
//!   (no parser produces one) takes a cold linear scan.
//! - Conntrack state splits the rules before the cuts do: a packet has exactly one state, so
//!   each state gets the trees of the rules that accept it, in which `--ctstate` is no longer
//!   a condition to confirm. A rule with a state condition then prunes and covers like any
//!   other (`-m conntrack --ctstate NEW` on every rule is common, and would otherwise keep
//!   every rule in every leaf). States whose rule subsets are the same share their trees; a
//!   set without state conditions builds one pair. A packet whose state is not exactly one
//!   of the five bits takes the cold linear scan.
//! - Lookup allocates nothing: it reads flat arrays of links and leaf rows.
//! - Leaves are compared eight entries at a time by the kernel `crate::dpdk::simd` finds this
//!   CPU runs (AVX-512, AVX2, or portable SSE2), capped by [`TreeConfig::simd`]; each call
//!   picks it once, and the whole lookup is compiled for it. Every kernel answers the same (the
//!   tests run each one the CPU has).

use super::cuts::{
    BuildRule, FamilyTree, Keys, Params, BURST, DIMS, DIM_DPORT, DIM_DST, DIM_PROTO,
};
use super::cuts::{DIM_SPORT, DIM_SRC, KEY_WORDS};
use super::{ct, Classifier, FlatRule, FragMatch, PacketMeta, ANY_PORT};
use crate::dpdk::simd::{RangeMask, Simd, SimdLevel, SimdTask};
use crate::wire::{Family, IpAddr128};

pub use super::cuts::TreeStats;

/// Build parameters of a [`Tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeConfig {
    /// A node with at most this many rules (counted up to the first one covering the node) is a
    /// leaf.
    pub binth: usize,
    /// Space factor: a node's children together hold at most `spfac` times its rules (plus one
    /// reference per child).
    pub spfac: usize,
    /// Most bits one node cuts (at most 16: `2^16` children).
    pub max_cut_bits: u32,
    /// Deepest node; deeper subtrees become leaves.
    pub max_depth: u32,
    /// Bound on the arenas' size; once reached, the remaining subtrees become leaves (slower
    /// lookups, never more memory than the lists already built). The bound is per family.
    pub max_memory_bytes: usize,
    /// Widest leaf-scan kernel to use; the tree takes the widest the CPU has up to this
    /// (`crate::dpdk::simd`). Lower it to measure or test the narrower kernels.
    pub simd: SimdLevel,
}

impl Default for TreeConfig {
    fn default() -> TreeConfig {
        TreeConfig {
            binth: 16,
            spfac: 8,
            max_cut_bits: 16,
            max_depth: 48,
            max_memory_bytes: 2 << 30,
            simd: SimdLevel::Avx512,
        }
    }
}

/// Shape figures of both families' trees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub v4: TreeStats,
    pub v6: TreeStats,
}

/// The decision-tree classifier.
#[derive(Clone, Debug)]
pub struct Tree {
    /// Distinct per-state trees.
    v4: Vec<FamilyTree<u32>>,
    v6: Vec<FamilyTree<u128>>,
    /// The trees of each conntrack state, by the state's bit position.
    v4_of: [u8; STATES],
    v6_of: [u8; STATES],
    rules: usize,
    /// The leaf-scan kernel.
    simd: Simd,
}

/// Conntrack states (the bits of [`ct::ANY`]).
const STATES: usize = 8;
const _: () = assert!(ct::ANY as u32 == (1u32 << STATES) - 1);

/// The index of a packet's state, when it is exactly one state bit.
#[inline(always)]
fn state_of(p: &PacketMeta) -> Option<usize> {
    p.ct_state
        .is_power_of_two()
        .then(|| p.ct_state.trailing_zeros() as usize)
}

/// Builds the trees of one family: one per distinct subset of rules accepting a state.
fn build_states<A: super::cuts::Word>(
    rules: &[FlatRule],
    family: Family,
    widths: [u32; DIMS],
    p: &Params,
) -> (Vec<FamilyTree<A>>, [u8; STATES]) {
    let mut subsets: Vec<Vec<bool>> = Vec::new();
    let mut of = [0u8; STATES];
    for (s, slot) in of.iter_mut().enumerate() {
        let bit = 1u8 << s;
        let subset: Vec<bool> = rules
            .iter()
            .map(|r| r.family == family && r.ct_states & bit != 0)
            .collect();
        let at = match subsets.iter().position(|x| *x == subset) {
            Some(i) => i,
            None => {
                subsets.push(subset);
                subsets.len() - 1
            }
        };
        *slot = at as u8;
    }
    let trees = subsets
        .iter()
        .map(|subset| FamilyTree::build(partition(rules, family, subset), widths, p))
        .collect();
    (trees, of)
}

/// Start of the v4-mapped block `::ffff:0.0.0.0`.
const V4_MAPPED: u128 = 0xffff_0000_0000;

impl Tree {
    /// Builds the trees for `rules` with the default [`TreeConfig`].
    pub fn new(rules: &[FlatRule]) -> Tree {
        Tree::with_config(rules, &TreeConfig::default())
    }

    pub fn with_config(rules: &[FlatRule], cfg: &TreeConfig) -> Tree {
        let p = Params {
            binth: cfg.binth.max(1),
            spfac: cfg.spfac.max(1),
            max_cut_bits: cfg.max_cut_bits.clamp(1, 16),
            max_depth: cfg.max_depth,
            max_bytes: cfg.max_memory_bytes,
        };
        let (v4, v4_of) = build_states(rules, Family::V4, [32, 32, 16, 16, 8], &p);
        let (v6, v6_of) = build_states(rules, Family::V6, [128, 128, 16, 16, 8], &p);
        Tree {
            v4,
            v6,
            v4_of,
            v6_of,
            rules: rules.len(),
            simd: Simd::detect_up_to(cfg.simd),
        }
    }

    /// Shape figures, summed over the per-state trees (depth and leaf length: the largest).
    pub fn stats(&self) -> Stats {
        fn sum(trees: impl Iterator<Item = TreeStats>) -> TreeStats {
            let mut t = TreeStats::default();
            let mut n = 0u64;
            for s in trees {
                n += 1;
                t.partitions += s.partitions;
                t.nodes += s.nodes;
                t.child_refs += s.child_refs;
                t.leaves += s.leaves;
                t.leaf_entries += s.leaf_entries;
                t.max_leaf = t.max_leaf.max(s.max_leaf);
                t.max_depth = t.max_depth.max(s.max_depth);
                t.bytes += s.bytes;
                t.build_bytes = t.build_bytes.max(s.build_bytes);
                t.budget_stops += s.budget_stops;
                t.mean_leaf_depth_x100 += s.mean_leaf_depth_x100;
                t.lockstep |= s.lockstep;
            }
            t.mean_leaf_depth_x100 /= n.max(1);
            t
        }
        Stats {
            v4: sum(self.v4.iter().map(|t| t.stats())),
            v6: sum(self.v6.iter().map(|t| t.stats())),
        }
    }

    /// The IPv4 tree for a packet's state.
    #[inline(always)]
    fn v4_tree(&self, s: usize) -> &FamilyTree<u32> {
        &self.v4[usize::from(self.v4_of[s])]
    }

    /// The IPv6 tree for a packet's state.
    #[inline(always)]
    fn v6_tree(&self, s: usize) -> &FamilyTree<u128> {
        &self.v6[usize::from(self.v6_of[s])]
    }

    /// The leaf-scan kernel lookups use.
    pub fn simd_level(&self) -> SimdLevel {
        self.simd.level()
    }

    /// How many rules the tree was built from.
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// The first matching rule at or after `from` and before `best`, or `best`.
    #[inline]
    pub fn first_match(&self, rules: &[FlatRule], p: &PacketMeta, from: u32, best: u32) -> u32 {
        self.first_match_skipping(rules, p, from, best, |_| false)
    }

    /// As [`Tree::first_match`], passing over rules for which `skip` is true (the update tier's
    /// deleted rules).
    #[inline]
    pub fn first_match_skipping(
        &self,
        rules: &[FlatRule],
        p: &PacketMeta,
        from: u32,
        best: u32,
        skip: impl Fn(u32) -> bool + Copy,
    ) -> u32 {
        self.simd.run(One {
            tree: self,
            rules,
            p,
            from,
            best,
            skip,
        })
    }

    /// [`Tree::first_match_skipping`] with leaf-scan kernel `k`.
    #[inline(always)]
    fn first_match_with<K: RangeMask>(
        &self,
        k: K,
        rules: &[FlatRule],
        p: &PacketMeta,
        from: u32,
        best: u32,
        skip: impl Fn(u32) -> bool + Copy,
    ) -> u32 {
        let Some(s) = state_of(p) else {
            return cold_linear(rules, p, from, best, skip);
        };
        match p.key.family {
            Family::V4 => match v4_key(p) {
                Some(key) => self
                    .v4_tree(s)
                    .lookup_skipping(k, &key, p, rules, from, best, skip),
                None => cold_linear(rules, p, from, best, skip),
            },
            Family::V6 => {
                self.v6_tree(s)
                    .lookup_skipping(k, &v6_key(p), p, rules, from, best, skip)
            }
        }
    }
}

/// One packet's lookup, as a [`SimdTask`].
struct One<'a, S> {
    tree: &'a Tree,
    rules: &'a [FlatRule],
    p: &'a PacketMeta,
    from: u32,
    best: u32,
    skip: S,
}

impl<S: Fn(u32) -> bool + Copy> SimdTask for One<'_, S> {
    type Output = u32;
    #[inline(always)]
    fn run<K: RangeMask>(self, k: K) -> u32 {
        self.tree
            .first_match_with(k, self.rules, self.p, self.from, self.best, self.skip)
    }
}

/// A batch's lookups, burst by burst, as a [`SimdTask`].
struct Batch<'a, S> {
    tree: &'a Tree,
    rules: &'a [FlatRule],
    pkts: &'a [PacketMeta],
    from: &'a [u32],
    out: &'a mut [u32],
    skip: S,
}

impl<S: Fn(u32) -> bool + Copy> SimdTask for Batch<'_, S> {
    type Output = ();
    #[inline(always)]
    fn run<K: RangeMask>(self, k: K) {
        let n = self.pkts.len().min(self.from.len()).min(self.out.len());
        let mut s = 0;
        while s < n {
            let e = (s + BURST).min(n);
            self.tree.classify_burst(
                k,
                self.rules,
                &self.pkts[s..e],
                &self.from[s..e],
                &mut self.out[s..e],
                self.skip,
            );
            s = e;
        }
    }
}

/// The work one lookup does, from [`Tree::lookup_cost`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupCost {
    /// Partition trees walked.
    pub trees: usize,
    /// Internal nodes visited.
    pub nodes: usize,
    /// Leaf entries read.
    pub entries: usize,
}

impl Tree {
    /// The work [`Classifier::classify`] does for `p` from `from` (for tuning and benchmarks).
    pub fn lookup_cost(&self, rules: &[FlatRule], p: &PacketMeta, from: u32) -> LookupCost {
        let [trees, nodes, entries] = match (p.key.family, state_of(p)) {
            (_, None) => [0, 0, rules.len()],
            (Family::V4, Some(s)) => match v4_key(p) {
                Some(key) => self.v4_tree(s).cost(&key, p, rules, from),
                None => [0, 0, rules.len()],
            },
            (Family::V6, Some(s)) => self.v6_tree(s).cost(&v6_key(p), p, rules, from),
        };
        LookupCost {
            trees,
            nodes,
            entries,
        }
    }
}

impl Classifier for Tree {
    fn classify(&self, rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32], out: &mut [u32]) {
        debug_assert_eq!(
            rules.len(),
            self.rules,
            "classify with the rules the tree was built from"
        );
        self.simd.run(Batch {
            tree: self,
            rules,
            pkts,
            from,
            out,
            skip: |_| false,
        });
    }

    #[inline]
    fn first_match(&self, rules: &[FlatRule], p: &PacketMeta, from: u32) -> u32 {
        Tree::first_match(self, rules, p, from, u32::MAX)
    }
}

impl Tree {
    /// Classifies at most [`BURST`] packets: the keys of each tree (family and conntrack state)
    /// walk it together ([`FamilyTree::lookup_burst`]); other packets (unmapped IPv4, a state
    /// that is not one bit) scan linearly.
    #[inline(always)]
    fn classify_burst<K: RangeMask>(
        &self,
        k: K,
        rules: &[FlatRule],
        pkts: &[PacketMeta],
        from: &[u32],
        out: &mut [u32],
        skip: impl Fn(u32) -> bool + Copy,
    ) {
        let n = pkts.len().min(from.len()).min(out.len()).min(BURST);
        // Each packet's tree: IPv4 tree `g` as `g`, IPv6 tree `g` as `0x80 | g`, none as `NONE`.
        // The packets of the first IPv4 tree seen (most bursts: all of them) are gathered on
        // the way; the others wait for the general loop below.
        const NONE: u8 = u8::MAX;
        let mut group = [NONE; BURST];
        let mut first = NONE;
        let mut keys = Keys::<u32>::new();
        let mut rest = false;
        for i in 0..n {
            let p = &pkts[i];
            let g = match (p.key.family, state_of(p)) {
                (Family::V4, Some(s)) => match v4_addrs(p) {
                    Some((src, dst)) => {
                        let g = self.v4_of[s];
                        if first == NONE {
                            first = g;
                        }
                        if g == first {
                            keys.push(v4_key_of(p, src, dst), from[i], i);
                            continue;
                        }
                        g
                    }
                    None => NONE,
                },
                (Family::V6, Some(s)) => 0x80 | self.v6_of[s],
                _ => NONE,
            };
            if g == NONE {
                out[i] = cold_linear(rules, p, from[i], u32::MAX, skip);
            }
            group[i] = g;
            rest |= g != NONE;
        }
        if keys.n > 0 {
            self.v4[usize::from(first)].lookup_burst(k, &mut keys, pkts, rules, skip);
            for t in 0..keys.n {
                out[usize::from(keys.pkt[t]) & (BURST - 1)] = keys.best[t];
            }
        }
        if rest {
            self.classify_rest(k, rules, pkts, from, out, skip, &mut group[..n]);
        }
    }

    /// The packets of [`Tree::classify_burst`] that were not in its first IPv4 tree: one pass
    /// per distinct tree in `group`, in order of first appearance. (Inlined so that it is
    /// compiled for the kernel's instruction set, as the rest of the lookup is.)
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn classify_rest<K: RangeMask>(
        &self,
        k: K,
        rules: &[FlatRule],
        pkts: &[PacketMeta],
        from: &[u32],
        out: &mut [u32],
        skip: impl Fn(u32) -> bool + Copy,
        group: &mut [u8],
    ) {
        const NONE: u8 = u8::MAX;
        let n = group.len();
        for at in 0..n {
            let g = group[at];
            if g == NONE {
                continue;
            }
            if g & 0x80 == 0 {
                let mut keys = Keys::<u32>::new();
                for i in at..n {
                    if group[i] == g {
                        group[i] = NONE;
                        let (src, dst) = v4_addrs(&pkts[i]).unwrap_or_default();
                        keys.push(v4_key_of(&pkts[i], src, dst), from[i], i);
                    }
                }
                self.v4[usize::from(g)].lookup_burst(k, &mut keys, pkts, rules, skip);
                for t in 0..keys.n {
                    out[usize::from(keys.pkt[t])] = keys.best[t];
                }
            } else {
                let mut keys = Keys::<u128>::new();
                for i in at..n {
                    if group[i] == g {
                        group[i] = NONE;
                        keys.push(v6_key(&pkts[i]), from[i], i);
                    }
                }
                self.v6[usize::from(g & 0x7f)].lookup_burst(k, &mut keys, pkts, rules, skip);
                for t in 0..keys.n {
                    out[usize::from(keys.pkt[t])] = keys.best[t];
                }
            }
        }
    }
}

/// A packet's IPv4 addresses, when both are v4-mapped (`::ffff:a.b.c.d`).
#[inline(always)]
fn v4_addrs(p: &PacketMeta) -> Option<(u32, u32)> {
    let parts = |a: &[u8; 16]| {
        let head = u64::from_ne_bytes(a[..8].try_into().expect("8 bytes"));
        let mid = u32::from_ne_bytes(a[8..12].try_into().expect("4 bytes"));
        let v4 = u32::from_be_bytes(a[12..].try_into().expect("4 bytes"));
        (head, mid, v4)
    };
    let (sh, sm, src) = parts(&p.key.src.0);
    let (dh, dm, dst) = parts(&p.key.dst.0);
    const MID: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
    (sh | dh == 0 && sm == MID && dm == MID).then_some((src, dst))
}

/// The IPv4 key of a packet with addresses `src` and `dst`.
#[inline(always)]
fn v4_key_of(p: &PacketMeta, src: u32, dst: u32) -> [u32; KEY_WORDS] {
    let k = &p.key;
    [
        src,
        dst,
        u32::from(k.src_port),
        u32::from(k.dst_port),
        u32::from(k.proto),
        0,
        0,
        0,
    ]
}

#[inline(always)]
fn v4_key(p: &PacketMeta) -> Option<[u32; KEY_WORDS]> {
    v4_addrs(p).map(|(src, dst)| v4_key_of(p, src, dst))
}

#[inline(always)]
fn v6_key(p: &PacketMeta) -> [u128; KEY_WORDS] {
    let k = &p.key;
    [
        u128::from_be_bytes(k.src.0),
        u128::from_be_bytes(k.dst.0),
        u128::from(k.src_port),
        u128::from(k.dst_port),
        u128::from(k.proto),
        0,
        0,
        0,
    ]
}

#[cold]
#[inline(never)]
fn cold_linear(
    rules: &[FlatRule],
    p: &PacketMeta,
    from: u32,
    best: u32,
    skip: impl Fn(u32) -> bool,
) -> u32 {
    let end = (best as usize).min(rules.len());
    (from as usize..end)
        .find(|&i| !skip(i as u32) && rules[i].matches(p))
        .map_or(best, |i| i as u32)
}

/// Whether a rule has conditions beyond the 5-tuple (its state condition holds in every tree
/// it is in).
fn needs_full_check(r: &FlatRule) -> bool {
    r.in_ports != ANY_PORT
        || r.out_ports != ANY_PORT
        || r.tcp_flags.is_some()
        || r.frag != FragMatch::Any
}

/// One family's rules as build rules, split into partitions: small source range; small
/// destination range (source large); both large. A range is small when it spans at most the square
/// root of its dimension (a /16 or longer IPv4 prefix, /64 or longer IPv6).
/// Only the rules marked in `subset` take part.
fn partition(rules: &[FlatRule], family: Family, subset: &[bool]) -> Vec<Vec<BuildRule>> {
    let mut parts = vec![Vec::new(), Vec::new(), Vec::new()];
    let half = match family {
        Family::V4 => 16,
        Family::V6 => 64,
    };
    for (idx, r) in rules.iter().enumerate() {
        if r.family != family || !subset[idx] {
            continue;
        }
        let addr = |(lo, hi): (IpAddr128, IpAddr128)| -> Option<(u128, u128)> {
            let (lo, hi) = (u128::from_be_bytes(lo.0), u128::from_be_bytes(hi.0));
            match family {
                Family::V6 => (lo <= hi).then_some((lo, hi)),
                Family::V4 => {
                    let (lo, hi) = (lo.max(V4_MAPPED), hi.min(V4_MAPPED | 0xffff_ffff));
                    (lo <= hi).then(|| (lo - V4_MAPPED, hi - V4_MAPPED))
                }
            }
        };
        // A rule no packet of the family's tree can match (empty range) is left out; an IPv4
        // rule outside the v4-mapped block only matches unmapped packets, which scan linearly.
        let (Some(src), Some(dst)) = (addr(r.src), addr(r.dst)) else {
            continue;
        };
        if r.proto.0 > r.proto.1 || r.sport.0 > r.sport.1 || r.dport.0 > r.dport.1 {
            continue;
        }
        let mut b = BuildRule {
            lo: [0; DIMS],
            hi: [0; DIMS],
            idx: idx as u32,
            full: needs_full_check(r),
        };
        b.lo[DIM_SRC] = src.0;
        b.hi[DIM_SRC] = src.1;
        b.lo[DIM_DST] = dst.0;
        b.hi[DIM_DST] = dst.1;
        b.lo[DIM_SPORT] = u128::from(r.sport.0);
        b.hi[DIM_SPORT] = u128::from(r.sport.1);
        b.lo[DIM_DPORT] = u128::from(r.dport.0);
        b.hi[DIM_DPORT] = u128::from(r.dport.1);
        b.lo[DIM_PROTO] = u128::from(r.proto.0);
        b.hi[DIM_PROTO] = u128::from(r.proto.1);
        let small = |d: usize| (b.hi[d] - b.lo[d]) >> half == 0;
        let part = if small(DIM_SRC) {
            0
        } else if small(DIM_DST) {
            1
        } else {
            2
        };
        parts[part].push(b);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{classbench, Action, Linear};
    use crate::wire::FlowKey;
    use proptest::prelude::*;

    fn linear(rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32]) -> Vec<u32> {
        let mut out = vec![0; pkts.len()];
        Linear.classify(rules, pkts, from, &mut out);
        out
    }

    /// The tree's answers, checked to be the same with every leaf-scan kernel this CPU has and
    /// through the single-packet path (`first_match`) as through bursts.
    fn tree(t: &Tree, rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32]) -> Vec<u32> {
        let mut first: Option<Vec<u32>> = None;
        for level in [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512] {
            let mut t = t.clone();
            t.simd = Simd::detect_up_to(level);
            let mut out = vec![0; pkts.len()];
            t.classify(rules, pkts, from, &mut out);
            for i in 0..pkts.len() {
                assert_eq!(
                    t.first_match(rules, &pkts[i], from[i], u32::MAX),
                    out[i],
                    "{:?}: packet {i} alone and in a burst",
                    t.simd_level()
                );
            }
            match &first {
                None => first = Some(out),
                Some(f) => assert_eq!(f, &out, "{:?} against the portable kernel", t.simd_level()),
            }
        }
        first.unwrap_or_default()
    }

    fn meta(key: FlowKey) -> PacketMeta {
        PacketMeta {
            key,
            in_port: 0,
            out_port: 0,
            ct_state: ct::NEW,
            tcp_flags: 0,
            later_fragment: false,
        }
    }

    #[test]
    fn empty_and_catch_all() {
        let p = meta(FlowKey::new_v4(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            6,
            1,
            2,
        ));
        let t = Tree::new(&[]);
        assert_eq!(tree(&t, &[], &[p], &[0]), vec![u32::MAX]);
        let rules = vec![FlatRule::any(Family::V4, Action::Accept, 0)];
        let t = Tree::new(&rules);
        assert_eq!(tree(&t, &rules, &[p, p], &[0, 1]), vec![0, u32::MAX]);
        let rules6 = vec![FlatRule::any(Family::V6, Action::Accept, 0)];
        let t = Tree::new(&rules6);
        assert_eq!(tree(&t, &rules6, &[p], &[0]), vec![u32::MAX]);
    }

    #[test]
    fn unmapped_v4_packet_scans_linearly() {
        let mut r = FlatRule::any(Family::V4, Action::Accept, 0);
        r.src = (IpAddr128::UNSPECIFIED, IpAddr128([0xff; 16]));
        let rules = vec![FlatRule::any(Family::V4, Action::Drop, 0), r];
        let mut p = meta(FlowKey::new_v4(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            6,
            1,
            2,
        ));
        p.key.src = IpAddr128::from_v6("2001:db8::1".parse().unwrap());
        let t = Tree::new(&rules);
        assert_eq!(tree(&t, &rules, &[p], &[0]), linear(&rules, &[p], &[0]));
        assert_eq!(tree(&t, &rules, &[p], &[0]), vec![1]);
    }

    // ---- proptest: random overlapping rule sets, IPv4 and IPv6 ----

    /// Addresses drawn near a few bases so prefixes nest and overlap.
    fn addr_range(v6: bool) -> impl Strategy<Value = (IpAddr128, IpAddr128)> {
        let bases: [u128; 4] = if v6 {
            [
                0x2001_0db8 << 96,
                (0x2001_0db8 << 96) | (0xab << 64),
                0xfe80 << 112,
                0,
            ]
        } else {
            [0x0a00_0000, 0x0a00_0100, 0xc0a8_0000, 0]
        };
        let width = if v6 { 128u32 } else { 32 };
        (0..4usize, 0..=width, any::<u128>(), any::<u128>(), 0..4u8).prop_map(
            move |(b, plen, x, y, kind)| {
                let map = |v: u128| {
                    if v6 {
                        IpAddr128(v.to_be_bytes())
                    } else {
                        IpAddr128::from_v4_octets((v as u32).to_be_bytes())
                    }
                };
                let top = if width == 128 {
                    u128::MAX
                } else {
                    (1 << width) - 1
                };
                let base = bases[b] ^ (x & 0xff);
                match kind {
                    // Prefix.
                    0 | 1 => {
                        let host = if plen >= width { 0 } else { top >> plen };
                        let lo = base & !host & top;
                        (map(lo), map(lo | host))
                    }
                    // Arbitrary range near the base.
                    2 => {
                        let a = base.wrapping_add(y % 600) & top;
                        let c = a.saturating_add(x % 700).min(top);
                        (map(a), map(c))
                    }
                    _ => (map(0), map(top)),
                }
            },
        )
    }

    fn port_range() -> impl Strategy<Value = (u16, u16)> {
        prop_oneof![
            Just((0u16, u16::MAX)),
            prop_oneof![Just(22u16), Just(80), Just(443), 0..2000u16, any::<u16>()]
                .prop_map(|p| (p, p)),
            (0..3000u16, 0..70000u32).prop_map(|(a, w)| (a, (u32::from(a) + w).min(65535) as u16)),
            Just((1024, u16::MAX)),
        ]
    }

    fn proto_range() -> impl Strategy<Value = (u8, u8)> {
        prop_oneof![
            Just((0u8, 255u8)),
            Just((6, 6)),
            Just((17, 17)),
            Just((1, 17)),
            any::<u8>().prop_map(|p| (p, p))
        ]
    }

    fn rule(v6: bool) -> impl Strategy<Value = FlatRule> {
        let fam = if v6 { Family::V6 } else { Family::V4 };
        (
            addr_range(v6),
            addr_range(v6),
            port_range(),
            port_range(),
            proto_range(),
            (0..10u8, any::<u32>(), any::<u8>(), any::<u8>()),
            (prop_oneof![8 => Just(false), 1 => Just(true)]),
        )
            .prop_map(
                move |(src, dst, sport, dport, proto, (extra, bits, m, v), other)| {
                    let mut r = FlatRule::any(
                        if other {
                            if v6 {
                                Family::V4
                            } else {
                                Family::V6
                            }
                        } else {
                            fam
                        },
                        Action::Accept,
                        0,
                    );
                    if !other {
                        r.src = src;
                        r.dst = dst;
                    }
                    r.sport = sport;
                    r.dport = dport;
                    r.proto = proto;
                    match extra {
                        0 => r.in_ports = bits & 0b11,
                        1 => r.ct_states = ct::ESTABLISHED | ct::RELATED,
                        2 => r.tcp_flags = Some((m, v & m)),
                        3 => r.frag = FragMatch::LaterOnly,
                        4 => r.frag = FragMatch::NotLater,
                        _ => {}
                    }
                    r
                },
            )
    }

    /// Packets near rule boundaries: a rule's low or high corner, nudged.
    fn packets(rules: &[FlatRule], v6: bool, seeds: &[(usize, u8, u64)]) -> Vec<PacketMeta> {
        seeds
            .iter()
            .map(|&(ri, mode, x)| {
                let pick = |lo: u128, hi: u128, m: u8| -> u128 {
                    match m % 4 {
                        0 => lo,
                        1 => hi,
                        2 => lo.wrapping_sub(1),
                        _ => lo.wrapping_add(u128::from(x) % (hi - lo).saturating_add(1).max(1)),
                    }
                };
                let a = |r: (IpAddr128, IpAddr128), m: u8| {
                    let v = pick(u128::from_be_bytes(r.0 .0), u128::from_be_bytes(r.1 .0), m);
                    if v6 {
                        IpAddr128(v.to_be_bytes())
                    } else {
                        IpAddr128::from_v4_octets((v as u32).to_be_bytes())
                    }
                };
                let r = if rules.is_empty() {
                    FlatRule::any(Family::V4, Action::Accept, 0)
                } else {
                    rules[ri % rules.len()].clone()
                };
                let p16 = |r: (u16, u16), m: u8| pick(u128::from(r.0), u128::from(r.1), m) as u16;
                let m = |s: u32| (mode.wrapping_add((x >> s) as u8)) & 7;
                PacketMeta {
                    key: FlowKey {
                        src: a(r.src, m(0)),
                        dst: a(r.dst, m(3)),
                        src_port: p16(r.sport, m(6)),
                        dst_port: p16(r.dport, m(9)),
                        proto: pick(u128::from(r.proto.0), u128::from(r.proto.1), m(12)) as u8,
                        family: if v6 { Family::V6 } else { Family::V4 },
                    },
                    in_port: (x >> 20) as u8 & 3,
                    out_port: 0,
                    ct_state: 1 << ((x >> 24) % 8),
                    tcp_flags: (x >> 32) as u8,
                    later_fragment: (x >> 40) & 7 == 0,
                }
            })
            .collect()
    }

    fn check(rules: Vec<FlatRule>, v6: bool, seeds: Vec<(usize, u8, u64)>, cfg: TreeConfig) {
        let pkts = packets(&rules, v6, &seeds);
        let from: Vec<u32> = seeds
            .iter()
            .map(|&(_, _, x)| {
                if x % 3 == 0 {
                    0
                } else {
                    (x >> 48) as u32 % (rules.len() as u32 + 2)
                }
            })
            .collect();
        let t = Tree::with_config(&rules, &cfg);
        let want = linear(&rules, &pkts, &from);
        let got = tree(&t, &rules, &pkts, &from);
        for i in 0..pkts.len() {
            assert_eq!(got[i], want[i], "packet {i} {:?} from {}", pkts[i], from[i]);
        }
    }

    fn small_cfg() -> TreeConfig {
        TreeConfig {
            binth: 2,
            spfac: 4,
            max_cut_bits: 4,
            ..TreeConfig::default()
        }
    }

    /// Small arbitrary ranges in a tiny space, cut one or two bits at a time: every shape of
    /// partial overlap between rules and blocks, and many sibling lists that look alike.
    fn dense_rule() -> impl Strategy<Value = FlatRule> {
        let r = |n: u32| (0..n, 0..n).prop_map(|(a, b)| (a.min(b), a.max(b)));
        (r(64), r(64), r(40), r(40), r(8), any::<bool>()).prop_map(|(s, d, sp, dp, pr, v6)| {
            let fam = if v6 { Family::V6 } else { Family::V4 };
            let a = |v: u32| {
                if v6 {
                    IpAddr128(u128::from(v).to_be_bytes())
                } else {
                    IpAddr128::from_v4_octets(v.to_be_bytes())
                }
            };
            let mut x = FlatRule::any(fam, Action::Accept, 0);
            x.src = (a(s.0), a(s.1));
            x.dst = (a(d.0), a(d.1));
            x.sport = (sp.0 as u16, sp.1 as u16);
            x.dport = (dp.0 as u16, dp.1 as u16);
            x.proto = (pr.0 as u8, pr.1 as u8);
            x
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn agrees_with_linear_dense(rules in proptest::collection::vec(dense_rule(), 0..48),
                                    pkts in proptest::collection::vec((0..66u32, 0..66u32, 0..42u16, 0..42u16, 0..9u8, any::<bool>(), 0..50u32), 1..200),
                                    binth in 1..4usize, bits in 1..3u32) {
            let pkts: Vec<(PacketMeta, u32)> = pkts.into_iter().map(|(s, d, sp, dp, pr, v6, from)| {
                let key = if v6 {
                    FlowKey::new_v6(u128::from(s).into(), u128::from(d).into(), pr, sp, dp)
                } else {
                    FlowKey::new_v4(s.into(), d.into(), pr, sp, dp)
                };
                (meta(key), from.saturating_sub(25))
            }).collect();
            let (p, from): (Vec<PacketMeta>, Vec<u32>) = pkts.into_iter().unzip();
            let cfg = TreeConfig { binth, spfac: 8, max_cut_bits: bits, ..TreeConfig::default() };
            let t = Tree::with_config(&rules, &cfg);
            prop_assert_eq!(tree(&t, &rules, &p, &from), linear(&rules, &p, &from));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn agrees_with_linear_v4(rules in proptest::collection::vec(rule(false), 0..60),
                                 seeds in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u64>()), 1..120),
                                 tiny in any::<bool>()) {
            check(rules, false, seeds, if tiny { small_cfg() } else { TreeConfig::default() });
        }

        #[test]
        fn agrees_with_linear_v6(rules in proptest::collection::vec(rule(true), 0..60),
                                 seeds in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u64>()), 1..120),
                                 tiny in any::<bool>()) {
            check(rules, true, seeds, if tiny { small_cfg() } else { TreeConfig::default() });
        }
    }

    #[test]
    fn agrees_on_synthetic_classbench_sets() {
        for (seed, family) in [(1u64, Family::V4), (2, Family::V4), (3, Family::V6)] {
            let rules = classbench::synth_rules(&classbench::SynthConfig {
                rules: 1000,
                family,
                seed,
                default_rule: seed != 2,
            });
            let pkts = classbench::synth_trace(&rules, seed ^ 0x55, 10_000);
            let mut from = vec![0u32; pkts.len()];
            for (i, f) in from.iter_mut().enumerate() {
                if i % 4 == 3 {
                    *f = (i as u32 * 7919) % 1001;
                }
            }
            let t = Tree::new(&rules);
            let want = linear(&rules, &pkts, &from);
            let got = tree(&t, &rules, &pkts, &from);
            let bad = (0..pkts.len()).find(|&i| got[i] != want[i]);
            assert_eq!(
                bad,
                None,
                "seed {seed}: {:?}",
                bad.map(|i| (pkts[i], from[i], got[i], want[i]))
            );
            let st = if family == Family::V4 {
                t.stats().v4
            } else {
                t.stats().v6
            };
            assert!(
                st.nodes > 10 && st.leaves > 10,
                "{family:?}: the set was cut: {st:?}"
            );
        }
    }

    /// `--ctstate NEW` on every rule (as stateful rule sets are written) must not cost the
    /// tree its pruning: the NEW trees are the trees of the same rules without the condition,
    /// and states no rule accepts get trees without those rules.
    #[test]
    fn state_conditions_split_the_rules_instead_of_blocking_pruning() {
        let plain = classbench::synth_rules(&classbench::SynthConfig {
            rules: 2000,
            family: Family::V4,
            seed: 4,
            default_rule: false,
        });
        let mut stateful = vec![{
            let mut r = FlatRule::any(Family::V4, Action::Accept, 0);
            r.ct_states = ct::ESTABLISHED | ct::RELATED;
            r
        }];
        stateful.extend(plain.iter().map(|r| FlatRule {
            ct_states: ct::NEW,
            ..r.clone()
        }));
        let t_plain = Tree::new(&plain);
        let t_state = Tree::new(&stateful);
        // NEW: the plain set (shifted by one index); ESTABLISHED and RELATED share the
        // one-rule tree; INVALID and UNTRACKED match nothing.
        assert_eq!(t_state.v4.len(), 3, "distinct subsets: NEW, EST+REL, none");
        let new_tree = t_state.v4_tree(0).stats();
        assert_eq!(new_tree.leaf_entries, t_plain.stats().v4.leaf_entries);
        assert_eq!(new_tree.nodes, t_plain.stats().v4.nodes);
        let mut pkts = classbench::synth_trace(&plain, 5, 4000);
        for (i, p) in pkts.iter_mut().enumerate() {
            p.ct_state = 1 << (i % 8);
        }
        let from = vec![0u32; pkts.len()];
        assert_eq!(
            tree(&t_state, &stateful, &pkts, &from),
            linear(&stateful, &pkts, &from)
        );
        // A state that is not exactly one bit takes the linear scan, and agrees with it.
        pkts[0].ct_state = ct::NEW | ct::INVALID;
        pkts[1].ct_state = 0;
        assert_eq!(
            tree(&t_state, &stateful, &pkts[..2], &from[..2]),
            linear(&stateful, &pkts[..2], &from[..2])
        );
    }

    #[test]
    fn memory_bound_degrades_to_larger_leaves() {
        let rules = classbench::synth_rules(&classbench::SynthConfig {
            rules: 500,
            family: Family::V4,
            seed: 9,
            default_rule: true,
        });
        let pkts = classbench::synth_trace(&rules, 10, 3000);
        let from = vec![0u32; pkts.len()];
        let cfg = TreeConfig {
            max_memory_bytes: 4096,
            ..TreeConfig::default()
        };
        let t = Tree::with_config(&rules, &cfg);
        assert!(t.stats().v4.budget_stops > 0);
        assert_eq!(tree(&t, &rules, &pkts, &from), linear(&rules, &pkts, &from));
    }

    /// The WUSTL ClassBench sets at 1K rules: the tree must agree with the linear scan, and the
    /// trace's expected column (1-based first match) with both.
    #[test]
    fn agrees_on_classbench_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus/classbench/wustl-original");
        if !dir.is_dir() {
            println!(
                "SKIPPED agrees_on_classbench_corpus: corpus not found at {}",
                dir.display()
            );
            return;
        }
        for set in ["acl1_1K", "fw1_1K", "ipc1_1K"] {
            let rules_text = std::fs::read_to_string(dir.join("rules").join(set)).unwrap();
            let trace_text =
                std::fs::read_to_string(dir.join("traces").join(format!("{set}_trace"))).unwrap();
            let rules = classbench::parse_rules(&rules_text).unwrap();
            let trace = classbench::parse_trace(&trace_text).unwrap();
            let pkts: Vec<PacketMeta> = trace.iter().map(|t| t.meta).collect();
            let from = vec![0u32; pkts.len()];
            let t = Tree::new(&rules);
            let want = linear(&rules, &pkts, &from);
            let got = tree(&t, &rules, &pkts, &from);
            let mut expected_mismatch = 0;
            for i in 0..pkts.len() {
                assert_eq!(got[i], want[i], "{set} packet {i}: {:?}", pkts[i]);
                if let Some(e) = trace[i].expected {
                    let lin = if want[i] == u32::MAX { 0 } else { want[i] + 1 };
                    if e != lin {
                        expected_mismatch += 1;
                        if expected_mismatch <= 3 {
                            println!("{set} packet {i}: trace expects {e}, linear gives {lin}");
                        }
                    }
                }
            }
            println!(
                "{set}: {} rules, {} packets, {} trace answers differ from linear; {:?}",
                rules.len(),
                pkts.len(),
                expected_mismatch,
                t.stats().v4
            );
            assert_eq!(
                expected_mismatch, 0,
                "{set}: trace column disagrees with linear"
            );
        }
    }
}
