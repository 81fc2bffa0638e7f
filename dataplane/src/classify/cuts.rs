//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The cutting engine behind [`super::Tree`]: decision trees over one address family, generic over
//! the address word (`u32` for IPv4, `u128` for IPv6). Building allocates; lookup does not.
//!
//! A key is five words, in dimension order [`DIM_SRC`], [`DIM_DST`], [`DIM_SPORT`],
//! [`DIM_DPORT`], [`DIM_PROTO`]. A tree is built per rule partition; all partitions share two flat
//! arenas: child references (`Link`: an internal node's cut packed into 8 bytes, or a leaf's first
//! row and entry count) and leaf rows (see [`FamilyTree`] for the two leaf layouts). There is no
//! per-node allocation and no separate node array, so a walk does one load per level.
//!
//! Lookups are generic over the leaf-scan kernel (`crate::dpdk::simd::RangeMask`: AVX-512, AVX2
//! or portable), which `super::Tree` picks once per call; every kernel gives the same answers.
//!
//! Invariants:
//! - An internal node cuts one dimension into `2^k` equal, aligned blocks: the child of a key is
//!   `children[base + ((key[dim] >> shift) & mask)]`. The node's block in that dimension is the
//!   smallest aligned block holding every rule of the node (clipped to the node's region), so a key
//!   outside it may land in any child: no rule of the node matches it, and leaves check every range.
//! - For every key, the leaf a walk reaches holds every rule of the partition that matches the key
//!   (on the five ranges). Leaves hold copies of their rules' ranges (by row when short, by column
//!   otherwise) sorted by rule index, so a scan stops at the first match, or at the best index
//!   found in an earlier partition.
//! - Two sibling children share one subtree only when their rule lists are equal and every rule of
//!   both covers both children whole in the cut dimension (then the dimension no longer matters).
//!   Leaves with equal rule lists are shared across the partition's tree.
//! - Entries flagged `full` have conditions beyond the five ranges (interfaces, TCP flags,
//!   fragments) and are confirmed with [`FlatRule::matches`]; the others match on the ranges
//!   alone (the conntrack state chose the tree: see `super::tree`).

use super::{FlatRule, PacketMeta};
use crate::dpdk::simd::{Lanes, Portable, RangeMask};
use std::collections::HashMap;

pub(crate) const DIM_SRC: usize = 0;
pub(crate) const DIM_DST: usize = 1;
pub(crate) const DIM_SPORT: usize = 2;
pub(crate) const DIM_DPORT: usize = 3;
pub(crate) const DIM_PROTO: usize = 4;
pub(crate) const DIMS: usize = 5;
/// Words in a key array: the five dimensions and padding, so a dimension read from a link
/// (`& 7`) needs no bounds check.
pub(crate) const KEY_WORDS: usize = 8;

/// An address word: `u32` (IPv4) or `u128` (IPv6). Ports and protocol widen to it.
pub(crate) trait Word:
    Copy + Ord + Default + Send + Sync + std::fmt::Debug + 'static
{
    /// Truncating conversion (build time).
    fn from_u128(v: u128) -> Self;
    /// Width in bits.
    const BITS: u8;
    /// `(self >> shift) as usize & mask`, with `shift` below the word's width.
    fn bits_at(self, shift: u8, mask: usize) -> usize;
    /// The low 32 bits (ports and protocol in a key).
    fn low_u32(self) -> u32;
    /// The word as leaf columns store it: ordered like the word, in a type the leaf kernel
    /// compares (`u32` becomes a sign-flipped `i32`: SSE2 and AVX2 only compare signed lanes).
    type Lane: Copy + PartialOrd + Default + Send + Sync + std::fmt::Debug + 'static;
    fn lane(self) -> Self::Lane;
    /// The smallest and largest lanes: a padding entry's bounds (low above high never holds).
    const LANE_MIN: Self::Lane;
    const LANE_MAX: Self::Lane;
    /// A value below `2^31` (port, protocol, tagged rule index) as a lane, and back.
    fn small(v: u32) -> Self::Lane;
    fn unsmall(l: Self::Lane) -> u32;
    /// A row of the leaf arena: [`LANES`] lanes, aligned to 32 bytes.
    type Row: Copy + Default + Send + Sync + std::fmt::Debug + 'static;
    fn row(lanes: [Self::Lane; LANES]) -> Self::Row;
    fn lanes(r: &Self::Row) -> &[Self::Lane; LANES];
    /// Bit `j` set when lane `j` of `bounds[2 d]` and `bounds[2 d + 1]` hold `key[d]` for each
    /// dimension `d`: the kernel `k` for `u32` lanes, a scalar loop for `u128` ones.
    fn block_mask<K: RangeMask>(k: K, bounds: &[Self::Row; 10], key: &[Self::Lane; DIMS]) -> u32;
}

impl Word for u32 {
    const BITS: u8 = 32;
    #[inline(always)]
    fn from_u128(v: u128) -> u32 {
        v as u32
    }
    #[inline(always)]
    fn bits_at(self, shift: u8, mask: usize) -> usize {
        (self >> shift) as usize & mask
    }
    #[inline(always)]
    fn low_u32(self) -> u32 {
        self
    }
    type Lane = i32;
    const LANE_MIN: i32 = i32::MIN;
    const LANE_MAX: i32 = i32::MAX;
    #[inline(always)]
    fn lane(self) -> i32 {
        (self ^ 0x8000_0000) as i32
    }
    #[inline(always)]
    fn small(v: u32) -> i32 {
        v as i32
    }
    #[inline(always)]
    fn unsmall(l: i32) -> u32 {
        l as u32
    }
    type Row = Lanes;
    #[inline(always)]
    fn row(lanes: [i32; LANES]) -> Lanes {
        Lanes(lanes)
    }
    #[inline(always)]
    fn lanes(r: &Lanes) -> &[i32; LANES] {
        &r.0
    }
    #[inline(always)]
    fn block_mask<K: RangeMask>(k: K, bounds: &[Lanes; 10], key: &[i32; DIMS]) -> u32 {
        k.range_mask(bounds, key)
    }
}

impl Word for u128 {
    const BITS: u8 = 128;
    #[inline(always)]
    fn from_u128(v: u128) -> u128 {
        v
    }
    #[inline(always)]
    fn bits_at(self, shift: u8, mask: usize) -> usize {
        (self >> shift) as usize & mask
    }
    #[inline(always)]
    fn low_u32(self) -> u32 {
        self as u32
    }
    type Lane = u128;
    const LANE_MIN: u128 = 0;
    const LANE_MAX: u128 = u128::MAX;
    #[inline(always)]
    fn lane(self) -> u128 {
        self
    }
    #[inline(always)]
    fn small(v: u32) -> u128 {
        u128::from(v)
    }
    #[inline(always)]
    fn unsmall(l: u128) -> u32 {
        l as u32
    }
    type Row = Row128;
    #[inline(always)]
    fn row(lanes: [u128; LANES]) -> Row128 {
        Row128(lanes)
    }
    #[inline(always)]
    fn lanes(r: &Row128) -> &[u128; LANES] {
        &r.0
    }
    #[inline(always)]
    fn block_mask<K: RangeMask>(_: K, bounds: &[Row128; 10], key: &[u128; DIMS]) -> u32 {
        let mut m = 0u32;
        for j in 0..LANES {
            let hit =
                (0..DIMS).all(|d| bounds[2 * d].0[j] <= key[d] && key[d] <= bounds[2 * d + 1].0[j]);
            m |= u32::from(hit) << j;
        }
        m
    }
}

/// A row of IPv6 leaf lanes.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
pub(crate) struct Row128([u128; LANES]);

/// A rule as the builder sees it: five inclusive ranges (already in the family's key space).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BuildRule {
    pub lo: [u128; DIMS],
    pub hi: [u128; DIMS],
    /// Index in the rule set.
    pub idx: u32,
    /// Needs [`FlatRule::matches`] after the ranges match.
    pub full: bool,
}

/// Entries one leaf block holds and the kernel compares at once (one 256-bit vector of `i32`).
pub(crate) const LANES: usize = crate::dpdk::simd::LANES;

/// Leaves up to this long are stored by row and scanned entry by entry (most leaves of large
/// sets: one or two cache lines, and a scan that stops at the first match); longer ones by
/// column and scanned [`LANES`] entries at a time.
const SHORT_LEAF: usize = 2;
/// Lane of a short leaf's row holding the tagged index (source low and high, destination low
/// and high, then source port, destination port and protocol as `lo << 16 | hi`, then the tag).
const ROW_TAG: usize = 7;
const _: () = assert!(ROW_TAG < LANES);

/// Columns per leaf entry: five ranges (ten bounds) and the tagged rule index. A long leaf is a
/// run of blocks of `COLS` rows, one row per column, [`LANES`] entries per block.
const COLS: usize = 11;
/// The tagged index column holds `idx << 1 | full`: `full` marks an entry with conditions beyond
/// the five ranges.
const FULL: u32 = 1;
/// Rule indexes must stay below this (the tag must fit a lane's 31 value bits).
const MAX_IDX: u32 = 1 << 30;

/// A key as the leaf columns compare it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScanKey<L> {
    /// Source, destination, source port, destination port, protocol.
    lanes: [L; DIMS],
    /// Source port, destination port and protocol, for short leaves' packed rows.
    raw_ports: [u32; 3],
}

impl<L> ScanKey<L> {
    #[inline(always)]
    pub fn of<A: Word<Lane = L>>(key: &[A; KEY_WORDS]) -> ScanKey<L> {
        ScanKey {
            lanes: [
                key[DIM_SRC].lane(),
                key[DIM_DST].lane(),
                A::small(key[DIM_SPORT].low_u32()),
                A::small(key[DIM_DPORT].low_u32()),
                A::small(key[DIM_PROTO].low_u32()),
            ],
            raw_ports: [
                key[DIM_SPORT].low_u32(),
                key[DIM_DPORT].low_u32(),
                key[DIM_PROTO].low_u32(),
            ],
        }
    }
}

/// A reference to a node or a leaf, packed so one load per level walks the tree.
///
/// Leaf: bit 63 set, entries `[start, start + len)` with `start` in bits 0..32 and `len` in bits
/// 32..62. Internal node: bit 63 clear, its first child in `children` in bits 0..32, the child
/// mask in bits 32..48, the shift in bits 48..56 and the dimension in bits 56..59.
type Link = u64;

const LEAF: Link = 1 << 63;
const MAX_LEAF_LEN: usize = (1 << 30) - 1;

#[inline(always)]
fn node_link(base: u32, mask: u16, shift: u8, dim: u8) -> Link {
    u64::from(base) | u64::from(mask) << 32 | u64::from(shift) << 48 | u64::from(dim) << 56
}

/// An internal node's first child, child mask, shift and dimension.
#[inline(always)]
fn node_parts<A: Word>(l: Link) -> (usize, usize, u8, usize) {
    (
        l as u32 as usize,
        (l >> 32) as u16 as usize,
        (l >> 48) as u8 & (A::BITS - 1),
        (l >> 56) as usize & (KEY_WORDS - 1),
    )
}

#[inline(always)]
fn leaf_link(start: u32, len: usize) -> Link {
    LEAF | u64::from(start) | (len as u64) << 32
}

/// A leaf's first row in `rows` and its entry count.
#[inline(always)]
fn leaf_len(l: Link) -> (usize, usize) {
    (l as u32 as usize, (l >> 32) as usize & MAX_LEAF_LEN)
}

/// One partition's tree.
#[derive(Clone, Copy, Debug)]
struct Root {
    link: Link,
    /// Smallest and largest rule index in the partition.
    min_idx: u32,
    max_idx: u32,
}

/// Build limits, see [`super::TreeConfig`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub binth: usize,
    pub spfac: usize,
    pub max_cut_bits: u32,
    pub max_depth: u32,
    pub max_bytes: usize,
}

/// Shape figures of a built tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Partition trees.
    pub partitions: usize,
    /// Internal nodes.
    pub nodes: usize,
    /// Child references (8 bytes each).
    pub child_refs: usize,
    /// Distinct leaves.
    pub leaves: usize,
    /// Leaf entries (rule copies) over all leaves.
    pub leaf_entries: usize,
    /// Longest leaf.
    pub max_leaf: usize,
    /// Deepest leaf.
    pub max_depth: u32,
    /// Size of the lookup arenas.
    pub bytes: usize,
    /// Peak memory the build accounted for (arenas plus its own tables).
    pub build_bytes: usize,
    /// Subtrees cut short because the memory bound was reached (they became larger leaves).
    pub budget_stops: usize,
    /// Mean depth of the leaf references, in hundredths.
    pub mean_leaf_depth_x100: u64,
    /// Whether bursts walk the trees in lock step (see `FamilyTree::lookup_burst`).
    pub lockstep: bool,
}

/// The decision trees over one family's rules.
///
/// All leaves live in one arena of 32-byte aligned rows of [`LANES`] lanes (`Word::Row`), `rows`;
/// a leaf's link holds its first row
/// `o` and its entry count `n`, and `n` says which layout it has:
/// - `n <= SHORT_LEAF`: by row, one row per entry from `o`: source low and high, destination
///   low and high, source port, destination port and protocol packed as `lo << 16 | hi`, and
///   the tagged rule index (`idx << 1 | full`);
/// - longer: by column, `ceil(n / LANES)` blocks of [`COLS`] rows from `o`, block `b` holding
///   entries `b * LANES ..`: source lows, source highs, destination lows and highs, source port
///   lows and highs, destination port lows and highs, protocol lows and highs, tagged rule
///   indexes. A scan compares a block's [`LANES`] entries at once; the lanes past the leaf's
///   last entry are padding whose ranges are empty (low `LANE_MAX`, high `LANE_MIN`), so they
///   never match and need no mask.
#[derive(Clone, Debug, Default)]
pub(crate) struct FamilyTree<A: Word> {
    roots: Vec<Root>,
    children: Vec<Link>,
    rows: Vec<A::Row>,
    /// Entries (rule copies) in all leaves.
    entries: usize,
    /// Leaf references made by the build and the sum of their depths.
    leaf_refs: u64,
    leaf_depths: u64,
    /// Whether [`Self::lookup_burst`] walks keys level by level (deep trees) or one after the
    /// other (shallow ones).
    lockstep: bool,
    stats: TreeStats,
}

/// Mean leaf depth (over the build's leaf references) from which bursts walk in lock step.
const LOCKSTEP_DEPTH: u64 = 2;

/// Keys a burst walk takes at once.
pub(crate) const BURST: usize = 32;

/// A burst's keys for one family's tree, as [`FamilyTree::lookup_burst`] takes them.
pub(crate) struct Keys<A: Word> {
    /// Keys in use.
    pub n: usize,
    /// Each key's words, as the walk reads them.
    walk: [[A; KEY_WORDS]; BURST],
    /// Each key as leaves compare it.
    scan: [ScanKey<A::Lane>; BURST],
    /// Each key's first rule index to consider.
    from: [u32; BURST],
    /// Each key's answer so far.
    pub best: [u32; BURST],
    /// Each key's packet, as an index into the burst.
    pub pkt: [u8; BURST],
    /// The largest `from`.
    max_from: u32,
}

impl<A: Word> Keys<A> {
    #[inline(always)]
    pub fn new() -> Keys<A> {
        Keys {
            n: 0,
            walk: [[A::default(); KEY_WORDS]; BURST],
            scan: [ScanKey::default(); BURST],
            from: [0; BURST],
            best: [u32::MAX; BURST],
            pkt: [0; BURST],
            max_from: 0,
        }
    }

    /// Adds the key of packet `pkt` of the burst (at most [`BURST`] keys).
    #[inline(always)]
    pub fn push(&mut self, key: [A; KEY_WORDS], from: u32, pkt: usize) {
        debug_assert!(self.n < BURST, "at most BURST keys");
        let t = self.n & (BURST - 1);
        self.walk[t] = key;
        self.scan[t] = ScanKey::of(&key);
        self.from[t] = from;
        self.best[t] = u32::MAX;
        self.pkt[t] = pkt as u8;
        self.max_from = self.max_from.max(from);
        self.n = (t + 1).min(BURST);
    }
}

impl<A: Word> FamilyTree<A> {
    /// Builds one tree per partition; `parts` are lists of rules sorted by index, `widths` the bit
    /// width of each dimension.
    pub fn build(parts: Vec<Vec<BuildRule>>, widths: [u32; DIMS], p: &Params) -> FamilyTree<A> {
        let mut b = Builder::<A> {
            p,
            out: FamilyTree::default(),
            leaf_links: HashMap::new(),
            dedup_bytes: 0,
            transient_bytes: 0,
        };
        for rules in parts.into_iter().filter(|r| !r.is_empty()) {
            assert!(rules.len() <= MAX_LEAF_LEN, "at most 2^30 - 1 rules");
            assert!(
                rules.iter().all(|r| r.idx < MAX_IDX),
                "rule indexes below 2^30"
            );
            debug_assert!(rules.windows(2).all(|w| w[0].idx < w[1].idx));
            let list: Vec<u32> = (0..rules.len() as u32).collect();
            let region = widths.map(|w| Block { base: 0, width: w });
            let link = b.node(&rules, &list, region, 0);
            b.out.roots.push(Root {
                link,
                min_idx: rules[0].idx,
                max_idx: rules[rules.len() - 1].idx,
            });
            // Leaf sharing is per partition: lists are positions in this partition's rules.
            b.leaf_links.clear();
            b.dedup_bytes = 0;
        }
        b.out.roots.sort_by_key(|r| r.min_idx);
        b.build_bytes();
        let mut out = b.out;
        out.lockstep = out.leaf_depths >= LOCKSTEP_DEPTH * out.leaf_refs;
        out.stats.lockstep = out.lockstep;
        out.stats.mean_leaf_depth_x100 = 100 * out.leaf_depths / out.leaf_refs.max(1);
        out.stats.partitions = out.roots.len();
        out.stats.child_refs = out.children.len();
        out.stats.leaf_entries = out.entries;
        out.stats.bytes = out.bytes();
        out.children.shrink_to_fit();
        out.rows.shrink_to_fit();
        out
    }

    fn bytes(&self) -> usize {
        self.children.len() * core::mem::size_of::<Link>()
            + self.rows.len() * core::mem::size_of::<A::Row>()
    }

    pub fn stats(&self) -> TreeStats {
        self.stats
    }

    /// The first rule index in `[from, best)` whose ranges hold `key` and whose remaining
    /// conditions hold for `p`, passing over rule indexes for which `skip` is true (deleted rules
    /// of the update tier), or `best`. With a constant-false `skip` this compiles to the plain
    /// lookup.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn lookup_skipping<K: RangeMask>(
        &self,
        k: K,
        key: &[A; KEY_WORDS],
        p: &PacketMeta,
        rules: &[FlatRule],
        from: u32,
        best: u32,
        skip: impl Fn(u32) -> bool + Copy,
    ) -> u32 {
        self.lookup_scan(k, key, &ScanKey::of(key), p, rules, from, best, skip)
    }

    /// [`Self::lookup_skipping`] with the key's [`ScanKey`] at hand.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn lookup_scan<K: RangeMask>(
        &self,
        k: K,
        key: &[A; KEY_WORDS],
        sk: &ScanKey<A::Lane>,
        p: &PacketMeta,
        rules: &[FlatRule],
        from: u32,
        mut best: u32,
        skip: impl Fn(u32) -> bool + Copy,
    ) -> u32 {
        for root in &self.roots {
            if root.min_idx >= best {
                break;
            }
            if root.max_idx < from {
                continue;
            }
            let leaf = self.walk(root.link, key);
            best = self.scan_leaf(k, leaf, sk, p, rules, from, best, skip);
        }
        best
    }

    /// [`Self::lookup_skipping`] for a burst: key `t` of `keys` is packet `keys.pkt[t]` of
    /// `pkts`; `keys.best[t]` is its answer so far, updated in place.
    ///
    /// In deep trees (mean leaf depth at least [`LOCKSTEP_DEPTH`]) the walks of all keys go
    /// level by level, so their loads overlap and no key's depth is a branch; the scans follow,
    /// one key after another. In shallow trees (most walks one level, then a leaf read that
    /// misses the cache in large sets) keys go one after the other: measured on the ClassBench
    /// 10K and 100K sets, the out-of-order core overlaps one key's leaf miss with the next key's
    /// walk better than the lock-step loop lets it.
    #[inline(always)]
    pub fn lookup_burst<K: RangeMask>(
        &self,
        k: K,
        keys: &mut Keys<A>,
        pkts: &[PacketMeta],
        rules: &[FlatRule],
        skip: impl Fn(u32) -> bool + Copy,
    ) {
        let n = keys.n.min(BURST);
        if !self.lockstep {
            for t in 0..n {
                keys.best[t] = self.lookup_scan(
                    k,
                    &keys.walk[t],
                    &keys.scan[t],
                    &pkts[usize::from(keys.pkt[t])],
                    rules,
                    keys.from[t],
                    keys.best[t],
                    skip,
                );
            }
            return;
        }
        // Indexes below are masked with `BURST - 1`: they are below `BURST` anyway, and the
        // mask lets the compiler drop the bounds checks.
        const M: usize = BURST - 1;
        const ALL: [u8; BURST] = {
            let mut a = [0u8; BURST];
            let mut t = 0;
            while t < BURST {
                a[t] = t as u8;
                t += 1;
            }
            a
        };
        let mut link = [LEAF; BURST];
        let mut some = [0u8; BURST];
        let mut active = [0u8; BURST];
        // The smallest answer so far: a partition whose rules all come at or after it cannot
        // improve any key's.
        let mut min_best = u32::MAX;
        for root in &self.roots {
            // The keys for which this partition can still improve the answer: all of them in the
            // common case (no answer yet, `from` at or below the partition's last rule).
            let todo: &[u8] = if root.min_idx < min_best && root.max_idx >= keys.max_from {
                &ALL[..n]
            } else {
                let mut nt = 0;
                for t in 0..n {
                    some[nt & M] = t as u8;
                    nt += usize::from(root.min_idx < keys.best[t] && root.max_idx >= keys.from[t]);
                }
                &some[..nt]
            };
            if todo.is_empty() {
                continue;
            }
            // The first level: one node for every key.
            let mut na = 0;
            if root.link & LEAF == 0 {
                let (base, mask, shift, dim) = node_parts::<A>(root.link);
                for &t in todo {
                    let t = usize::from(t) & M;
                    let c = self.children[base + keys.walk[t][dim].bits_at(shift, mask)];
                    link[t] = c;
                    active[na & M] = t as u8;
                    na += usize::from(c & LEAF == 0);
                }
            } else {
                for &t in todo {
                    link[usize::from(t) & M] = root.link;
                }
            }
            // Level by level; `active` keeps the keys not yet at a leaf (compacted branch-free).
            while na > 0 {
                let mut next = 0;
                for a in 0..na.min(BURST) {
                    let t = usize::from(active[a]) & M;
                    let c = self.child(link[t], &keys.walk[t]);
                    link[t] = c;
                    active[next & M] = t as u8;
                    next += usize::from(c & LEAF == 0);
                }
                na = next;
            }
            for &t in todo {
                let t = usize::from(t) & M;
                let b = self.scan_leaf(
                    k,
                    link[t],
                    &keys.scan[t],
                    &pkts[usize::from(keys.pkt[t])],
                    rules,
                    keys.from[t],
                    keys.best[t],
                    skip,
                );
                keys.best[t] = b;
                min_best = min_best.min(b);
            }
            if todo.len() < n {
                // `min_best` only saw the keys scanned.
                min_best = keys.best[..n].iter().copied().min().unwrap_or(u32::MAX);
            }
        }
    }

    /// Follows the tree from `l` to a leaf.
    #[inline(always)]
    fn walk(&self, mut l: Link, key: &[A; KEY_WORDS]) -> Link {
        while l & LEAF == 0 {
            l = self.child(l, key);
        }
        l
    }

    /// The child of internal node `l` that `key` falls in.
    #[inline(always)]
    fn child(&self, l: Link, key: &[A; KEY_WORDS]) -> Link {
        self.children[self.child_slot(l, key)]
    }

    /// Where in `children` the child of internal node `l` for `key` is.
    #[inline(always)]
    fn child_slot(&self, l: Link, key: &[A; KEY_WORDS]) -> usize {
        let (base, mask, shift, dim) = node_parts::<A>(l);
        base + key[dim].bits_at(shift, mask)
    }

    /// Bit `j` set when entry `j` of the block of [`COLS`] rows at `at` holds the key on its five
    /// ranges.
    #[inline(always)]
    fn block_mask<K: RangeMask>(&self, k: K, at: usize, key: &ScanKey<A::Lane>) -> u32 {
        let b: &[A::Row; COLS - 1] = self.rows[at..at + COLS - 1].try_into().expect("a block");
        A::block_mask(k, b, &key.lanes)
    }

    /// Entry `i` of the leaf at `o` with `n` entries: `(rule index, full)`.
    #[inline(always)]
    fn tagged(&self, o: usize, n: usize, i: usize) -> (u32, bool) {
        let v = if n <= SHORT_LEAF {
            A::lanes(&self.rows[o + i])[ROW_TAG]
        } else {
            A::lanes(&self.rows[o + (i / LANES) * COLS + COLS - 1])[i % LANES]
        };
        let v = A::unsmall(v);
        (v >> 1, v & FULL != 0)
    }

    /// The first entry of the leaf in `[from, best)` that matches, or `best`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn scan_leaf<K: RangeMask>(
        &self,
        k: K,
        leaf: Link,
        key: &ScanKey<A::Lane>,
        p: &PacketMeta,
        rules: &[FlatRule],
        from: u32,
        best: u32,
        skip: impl Fn(u32) -> bool,
    ) -> u32 {
        let (o, n) = leaf_len(leaf);
        if n <= SHORT_LEAF {
            // Short leaves (most of them in large sets): entry by entry, stopping early, is
            // cheaper than a block compare (and a row is one aligned 32-byte line).
            for i in 0..n {
                let r = A::lanes(&self.rows[o + i]);
                let v = A::unsmall(r[ROW_TAG]);
                let (idx, full) = (v >> 1, v & FULL != 0);
                if idx >= best {
                    break;
                }
                let within = |packed: A::Lane, k: u32| {
                    let packed = A::unsmall(packed);
                    (packed >> 16 <= k) & (k <= packed & 0xffff)
                };
                let [src, dst, ..] = key.lanes;
                let covers = (r[0] <= src)
                    & (src <= r[1])
                    & (r[2] <= dst)
                    & (dst <= r[3])
                    & within(r[4], key.raw_ports[0])
                    & within(r[5], key.raw_ports[1])
                    & within(r[6], key.raw_ports[2]);
                if idx < from || !covers || skip(idx) {
                    continue;
                }
                // The tree is the packet's state's: only a `full` entry has more to check.
                if !full || rules.get(idx as usize).is_some_and(|r| r.matches(p)) {
                    return idx;
                }
            }
            return best;
        }
        let mut c = 0;
        let mut at = o;
        while c < n {
            let mut cand = self.block_mask(k, at, key);
            // Candidates in index order; usually the first is the answer.
            while cand != 0 {
                let j = cand.trailing_zeros() as usize;
                cand &= cand - 1;
                let v = A::unsmall(A::lanes(&self.rows[at + COLS - 1])[j]);
                let (i, full) = (v >> 1, v & FULL != 0);
                if i >= best {
                    return best;
                }
                if i < from || skip(i) {
                    continue;
                }
                if !full || rules.get(i as usize).is_some_and(|r| r.matches(p)) {
                    return i;
                }
            }
            c += LANES;
            at += COLS;
        }
        best
    }

    /// How much work [`Self::lookup`] does for one key: `(trees walked, nodes visited, leaf
    /// entries read)`. For tuning and benchmarks.
    pub fn cost(
        &self,
        key: &[A; KEY_WORDS],
        p: &PacketMeta,
        rules: &[FlatRule],
        from: u32,
    ) -> [usize; 3] {
        let sk = ScanKey::of(key);
        let mut best = u32::MAX;
        let mut cost = [0; 3];
        for root in &self.roots {
            if root.min_idx >= best {
                break;
            }
            if root.max_idx < from {
                continue;
            }
            cost[0] += 1;
            let mut l = root.link;
            while l & LEAF == 0 {
                cost[1] += 1;
                l = self.child(l, key);
            }
            let (o, n) = leaf_len(l);
            let found = self.scan_leaf(Portable, l, &sk, p, rules, from, best, |_| false);
            cost[2] += (0..n)
                .map(|i| self.tagged(o, n, i).0)
                .take_while(|&i| i < best && i <= found)
                .count();
            best = found;
        }
        cost
    }
}

/// An aligned block `[base, base + 2^width)` of one dimension.
#[derive(Clone, Copy, Debug)]
struct Block {
    base: u128,
    width: u32,
}

/// `2^w - 1`, for `w` up to 128.
#[inline]
fn ones(w: u32) -> u128 {
    if w >= 128 {
        u128::MAX
    } else {
        (1u128 << w) - 1
    }
}

impl Block {
    fn last(&self) -> u128 {
        self.base | ones(self.width)
    }
}

struct Builder<'a, A: Word> {
    p: &'a Params,
    out: FamilyTree<A>,
    /// Leaves by rule list, to share equal leaves.
    leaf_links: HashMap<Vec<u32>, Link>,
    /// What `leaf_links` holds, roughly.
    dedup_bytes: usize,
    /// Child lists of the nodes on the current path.
    transient_bytes: usize,
}

/// A candidate cut of one node.
#[derive(Clone, Copy, Debug)]
struct Cut {
    dim: usize,
    bits: u32,
    /// Sum of the children's list lengths.
    total: usize,
    /// Longest child list.
    max_child: usize,
}

impl<A: Word> Builder<'_, A> {
    /// Builds the subtree for `list` (positions into `rules`, ascending) within `region`.
    fn node(
        &mut self,
        rules: &[BuildRule],
        list: &[u32],
        region: [Block; DIMS],
        depth: u32,
    ) -> Link {
        self.out.stats.max_depth = self.out.stats.max_depth.max(depth);
        let n = list.len();
        if n <= self.p.binth || depth >= self.p.max_depth {
            return self.leaf(rules, list, depth);
        }
        if self.build_bytes() > self.p.max_bytes {
            self.out.stats.budget_stops += 1;
            return self.leaf(rules, list, depth);
        }
        // The bounding block of the node's rules in each dimension.
        let mut eff = [Block { base: 0, width: 0 }; DIMS];
        for d in 0..DIMS {
            let (rb, rl) = (region[d].base, region[d].last());
            let (mut lo, mut hi) = (u128::MAX, 0u128);
            for &i in list {
                let r = &rules[i as usize];
                lo = lo.min(r.lo[d].max(rb));
                hi = hi.max(r.hi[d].min(rl));
            }
            let w = 128 - (lo ^ hi).leading_zeros();
            eff[d] = Block {
                base: lo & !ones(w),
                width: w,
            };
        }
        // A rule covering the whole bounding box ends every scan that reaches it (from 0): only
        // the rules up to it count toward the leaf threshold.
        let covering = list.iter().position(|&i| {
            let r = &rules[i as usize];
            !r.full && (0..DIMS).all(|d| r.lo[d] <= eff[d].base && r.hi[d] >= eff[d].last())
        });
        if covering.is_some_and(|c| c < self.p.binth) {
            return self.leaf(rules, list, depth);
        }
        let Some(cut) = self.choose_cut(rules, list, &eff) else {
            return self.leaf(rules, list, depth);
        };
        if cut.max_child >= n {
            return self.leaf(rules, list, depth);
        }
        self.split(rules, list, eff, cut, depth)
    }

    /// HiCuts' rule: per dimension, the most cuts whose replication stays within `spfac`; then
    /// the dimension whose largest child is smallest.
    fn choose_cut(&self, rules: &[BuildRule], list: &[u32], eff: &[Block; DIMS]) -> Option<Cut> {
        let n = list.len();
        let budget = self.p.spfac * n;
        let mut best: Option<Cut> = None;
        for (d, b) in eff.iter().enumerate() {
            let max_bits = b.width.min(self.p.max_cut_bits);
            if max_bits == 0 {
                continue;
            }
            let mut chosen = None;
            for bits in 1..=max_bits {
                let shift = b.width - bits;
                let mut total = 0usize;
                for &i in list {
                    let (lo, hi) = child_span(&rules[i as usize], d, b, shift);
                    total += hi - lo + 1;
                }
                if bits > 1 && total + (1usize << bits) > budget {
                    break;
                }
                chosen = Some((bits, total));
            }
            let Some((bits, total)) = chosen else {
                continue;
            };
            let max_child = max_child(rules, list, d, b, b.width - bits);
            let cand = Cut {
                dim: d,
                bits,
                total,
                max_child,
            };
            let better = match best {
                None => true,
                Some(o) => (cand.max_child, cand.total) < (o.max_child, o.total),
            };
            if better {
                best = Some(cand);
            }
        }
        best
    }

    fn split(
        &mut self,
        rules: &[BuildRule],
        list: &[u32],
        eff: [Block; DIMS],
        cut: Cut,
        depth: u32,
    ) -> Link {
        let d = cut.dim;
        let b = eff[d];
        let shift = b.width - cut.bits;
        let fanout = 1usize << cut.bits;
        // Children's lists as one CSR array; `dirty[c]`: some rule starts or ends inside child c.
        let mut diff = vec![0i64; fanout + 1];
        let mut dirty = vec![false; fanout];
        let low = ones(shift);
        for &i in list {
            let r = &rules[i as usize];
            let (lo, hi) = child_span(r, d, &b, shift);
            diff[lo] += 1;
            diff[hi + 1] -= 1;
            let (clo, chi) = (r.lo[d].max(b.base) - b.base, r.hi[d].min(b.last()) - b.base);
            dirty[lo] |= clo & low != 0;
            dirty[hi] |= chi & low != low;
        }
        // Difference array to counts to offsets.
        let mut run = 0i64;
        let mut off = vec![0u32; fanout + 1];
        for c in 0..fanout {
            run += diff[c];
            off[c + 1] = off[c] + run as u32;
        }
        let mut fill = off.clone();
        let mut flat = vec![0u32; off[fanout] as usize];
        for &i in list {
            let (lo, hi) = child_span(&rules[i as usize], d, &b, shift);
            for c in lo..=hi {
                flat[fill[c] as usize] = i;
                fill[c] += 1;
            }
        }
        drop((diff, fill));
        let transient = flat.len() * 4 + off.len() * 4 + dirty.len();
        self.transient_bytes += transient;

        let base = self.out.children.len() as u32;
        self.out.stats.nodes += 1;
        self.out
            .children
            .resize(self.out.children.len() + fanout, LEAF);
        let mut prev = LEAF;
        for c in 0..fanout {
            let child = &flat[off[c] as usize..off[c + 1] as usize];
            let same_as_prev = c > 0
                && !dirty[c]
                && !dirty[c - 1]
                && child == &flat[off[c - 1] as usize..off[c] as usize];
            let r = if same_as_prev {
                prev
            } else {
                let mut region = eff;
                region[d] = Block {
                    base: b.base + ((c as u128) << shift),
                    width: shift,
                };
                self.node(rules, child, region, depth + 1)
            };
            self.out.children[base as usize + c] = r;
            prev = r;
        }
        self.transient_bytes -= transient;
        node_link(base, (fanout - 1) as u16, shift as u8, d as u8)
    }

    /// What the build holds now: the arenas, the leaf-sharing table and the child lists of the
    /// nodes being built.
    fn build_bytes(&mut self) -> usize {
        let b = self.out.bytes() + self.dedup_bytes + self.transient_bytes;
        self.out.stats.build_bytes = self.out.stats.build_bytes.max(b);
        b
    }

    fn leaf(&mut self, rules: &[BuildRule], list: &[u32], depth: u32) -> Link {
        self.out.leaf_refs += 1;
        self.out.leaf_depths += u64::from(depth);
        if let Some(&l) = self.leaf_links.get(list) {
            return l;
        }
        let rs = || list.iter().map(|&i| &rules[i as usize]);
        let rows = &mut self.out.rows;
        let tag = |r: &BuildRule| A::small(r.idx << 1 | u32::from(r.full));
        let s = rows.len() as u32;
        if list.len() <= SHORT_LEAF {
            for r in rs() {
                let packed = |d: usize| A::small((r.lo[d] as u32) << 16 | r.hi[d] as u32);
                let mut row = [A::Lane::default(); LANES];
                row[..=ROW_TAG].copy_from_slice(&[
                    A::from_u128(r.lo[DIM_SRC]).lane(),
                    A::from_u128(r.hi[DIM_SRC]).lane(),
                    A::from_u128(r.lo[DIM_DST]).lane(),
                    A::from_u128(r.hi[DIM_DST]).lane(),
                    packed(DIM_SPORT),
                    packed(DIM_DPORT),
                    packed(DIM_PROTO),
                    tag(r),
                ]);
                rows.push(A::row(row));
            }
        } else {
            let entries: Vec<&BuildRule> = rs().collect();
            for block in entries.chunks(LANES) {
                // Padding lanes: empty ranges, which no key is in.
                let col = |f: &dyn Fn(&BuildRule) -> A::Lane, pad: A::Lane| {
                    let mut row = [pad; LANES];
                    for (lane, r) in row.iter_mut().zip(block) {
                        *lane = f(r);
                    }
                    A::row(row)
                };
                for d in [DIM_SRC, DIM_DST] {
                    rows.push(col(&|r| A::from_u128(r.lo[d]).lane(), A::LANE_MAX));
                    rows.push(col(&|r| A::from_u128(r.hi[d]).lane(), A::LANE_MIN));
                }
                for d in [DIM_SPORT, DIM_DPORT, DIM_PROTO] {
                    rows.push(col(&|r| A::small(r.lo[d] as u32), A::LANE_MAX));
                    rows.push(col(&|r| A::small(r.hi[d] as u32), A::LANE_MIN));
                }
                rows.push(col(&|r| tag(r), A::Lane::default()));
            }
        }
        self.out.entries += list.len();
        let l = leaf_link(s, list.len());
        self.out.stats.leaves += 1;
        self.out.stats.max_leaf = self.out.stats.max_leaf.max(list.len());
        self.leaf_links.insert(list.to_vec(), l);
        self.dedup_bytes += list.len() * 4 + 64;
        self.build_bytes();
        l
    }
}

/// The children `[lo, hi]` a rule falls in when block `b` of dimension `d` is cut at `shift`.
#[inline]
fn child_span(r: &BuildRule, d: usize, b: &Block, shift: u32) -> (usize, usize) {
    let lo = r.lo[d].max(b.base) - b.base;
    let hi = r.hi[d].min(b.last()) - b.base;
    ((lo >> shift) as usize, (hi >> shift) as usize)
}

fn max_child(rules: &[BuildRule], list: &[u32], d: usize, b: &Block, shift: u32) -> usize {
    let fanout = 1usize << (b.width - shift);
    let mut diff = vec![0i64; fanout + 1];
    for &i in list {
        let (lo, hi) = child_span(&rules[i as usize], d, b, shift);
        diff[lo] += 1;
        diff[hi + 1] -= 1;
    }
    let mut run = 0i64;
    let mut max = 0i64;
    for v in &diff[..fanout] {
        run += v;
        max = max.max(run);
    }
    max as usize
}
