//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The cutting engine behind [`super::Tree`]: decision trees over one address family, generic over
//! the address word (`u32` for IPv4, `u128` for IPv6). Building allocates; lookup does not.
//!
//! A key is five words, in dimension order [`DIM_SRC`], [`DIM_DST`], [`DIM_SPORT`],
//! [`DIM_DPORT`], [`DIM_PROTO`]. A tree is built per rule partition; all partitions share two flat
//! arenas: child references (`Link`: an internal node's cut packed into 8 bytes, or a leaf's span
//! of entries) and leaf entries. There is no per-node allocation and no separate node array, so a
//! walk does one load per level.
//!
//! Invariants:
//! - An internal node cuts one dimension into `2^k` equal, aligned blocks: the child of a key is
//!   `children[base + ((key[dim] >> shift) & mask)]`. The node's block in that dimension is the
//!   smallest aligned block holding every rule of the node (clipped to the node's region), so a key
//!   outside it may land in any child: no rule of the node matches it, and leaves check every range.
//! - For every key, the leaf a walk reaches holds every rule of the partition that matches the key
//!   (on the five ranges). Leaves hold copies of their rules' ranges ([`Entry`]) sorted by rule
//!   index, so a scan stops at the first match, or at the best index found in an earlier partition.
//! - Two sibling children share one subtree only when their rule lists are equal and every rule of
//!   both covers both children whole in the cut dimension (then the dimension no longer matters).
//!   Leaves with equal rule lists are shared across the partition's tree.
//! - Entries flagged `full` have conditions beyond the five ranges (interfaces, conntrack state
//!   other than any, TCP flags, fragments) and are confirmed with [`FlatRule::matches`]; the others only need
//!   the packet's conntrack state to be one of the [`ct`] bits.

use super::{ct, FlatRule, PacketMeta};
use std::collections::HashMap;

pub(crate) const DIM_SRC: usize = 0;
pub(crate) const DIM_DST: usize = 1;
pub(crate) const DIM_SPORT: usize = 2;
pub(crate) const DIM_DPORT: usize = 3;
pub(crate) const DIM_PROTO: usize = 4;
pub(crate) const DIMS: usize = 5;

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
}

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

/// A leaf entry: one rule's ranges, copied into the leaf so a scan reads memory in order
/// (32 bytes for IPv4, 80 for IPv6).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry<A> {
    src: [A; 2],
    dst: [A; 2],
    sport: [u16; 2],
    dport: [u16; 2],
    proto: [u8; 2],
    full: bool,
    idx: u32,
}

const _: () = assert!(core::mem::size_of::<Entry<u32>>() == 32);

impl<A: Word> Entry<A> {
    #[inline(always)]
    fn covers(&self, key: &[A; DIMS]) -> bool {
        let sport = key[DIM_SPORT].low_u32() as u16;
        let dport = key[DIM_DPORT].low_u32() as u16;
        let proto = key[DIM_PROTO].low_u32() as u8;
        // Non-short-circuit `&`: independent compares, no branch per field.
        (self.src[0] <= key[DIM_SRC])
            & (key[DIM_SRC] <= self.src[1])
            & (self.dst[0] <= key[DIM_DST])
            & (key[DIM_DST] <= self.dst[1])
            & (self.sport[0] <= sport)
            & (sport <= self.sport[1])
            & (self.dport[0] <= dport)
            & (dport <= self.dport[1])
            & (self.proto[0] <= proto)
            & (proto <= self.proto[1])
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

#[inline(always)]
fn leaf_link(start: u32, len: usize) -> Link {
    LEAF | u64::from(start) | (len as u64) << 32
}

/// A leaf's `[start, end)` in `entries`.
#[inline(always)]
fn leaf_span(l: Link) -> (usize, usize) {
    let start = l as u32 as usize;
    (start, start + ((l >> 32) as usize & MAX_LEAF_LEN))
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
}

/// The decision trees over one family's rules.
#[derive(Clone, Debug, Default)]
pub(crate) struct FamilyTree<A> {
    roots: Vec<Root>,
    children: Vec<Link>,
    entries: Vec<Entry<A>>,
    stats: TreeStats,
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
        out.stats.partitions = out.roots.len();
        out.stats.child_refs = out.children.len();
        out.stats.leaf_entries = out.entries.len();
        out.stats.bytes = out.bytes();
        out.children.shrink_to_fit();
        out.entries.shrink_to_fit();
        out
    }

    fn bytes(&self) -> usize {
        self.children.len() * core::mem::size_of::<Link>()
            + self.entries.len() * core::mem::size_of::<Entry<A>>()
    }

    pub fn stats(&self) -> TreeStats {
        self.stats
    }

    /// The first rule index in `[from, best)` whose ranges hold `key` and whose remaining
    /// conditions hold for `p`, or `best`.
    #[inline]
    pub fn lookup(
        &self,
        key: &[A; DIMS],
        p: &PacketMeta,
        rules: &[FlatRule],
        from: u32,
        best: u32,
    ) -> u32 {
        self.lookup_skipping(key, p, rules, from, best, |_| false)
    }

    /// As [`Self::lookup`], passing over rule indexes for which `skip` is true (deleted rules of
    /// the update tier). With a constant-false `skip` this compiles to the plain lookup.
    #[inline(always)]
    pub fn lookup_skipping(
        &self,
        key: &[A; DIMS],
        p: &PacketMeta,
        rules: &[FlatRule],
        from: u32,
        mut best: u32,
        skip: impl Fn(u32) -> bool + Copy,
    ) -> u32 {
        let ct_any = p.ct_state & ct::ANY != 0;
        for root in &self.roots {
            if root.min_idx >= best {
                break;
            }
            if root.max_idx < from {
                continue;
            }
            let leaf = self.walk(root.link, key);
            best = self.scan_leaf(leaf, key, p, rules, from, best, ct_any, skip);
        }
        best
    }

    /// Follows the tree from `l` to a leaf.
    #[inline(always)]
    fn walk(&self, mut l: Link, key: &[A; DIMS]) -> Link {
        while l & LEAF == 0 {
            l = self.child(l, key);
        }
        l
    }

    /// The child of internal node `l` that `key` falls in.
    #[inline(always)]
    fn child(&self, l: Link, key: &[A; DIMS]) -> Link {
        self.children[self.child_slot(l, key)]
    }

    /// Where in `children` the child of internal node `l` for `key` is.
    #[inline(always)]
    fn child_slot(&self, l: Link, key: &[A; DIMS]) -> usize {
        let base = l as u32 as usize;
        let mask = (l >> 32) as u16 as usize;
        let shift = (l >> 48) as u8 & (A::BITS - 1);
        let dim = (l >> 56) as usize & 7;
        base + key[dim].bits_at(shift, mask)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn scan_leaf(
        &self,
        leaf: Link,
        key: &[A; DIMS],
        p: &PacketMeta,
        rules: &[FlatRule],
        from: u32,
        best: u32,
        ct_any: bool,
        skip: impl Fn(u32) -> bool,
    ) -> u32 {
        let (s, e) = leaf_span(leaf);
        for en in &self.entries[s..e] {
            if en.idx >= best {
                break;
            }
            if en.idx < from || !en.covers(key) || skip(en.idx) {
                continue;
            }
            let ok = if en.full {
                rules.get(en.idx as usize).is_some_and(|r| r.matches(p))
            } else {
                ct_any
            };
            if ok {
                return en.idx;
            }
        }
        best
    }

    /// How much work [`Self::lookup`] does for one key: `(trees walked, nodes visited, leaf
    /// entries read)`. For tuning and benchmarks.
    pub fn cost(
        &self,
        key: &[A; DIMS],
        p: &PacketMeta,
        rules: &[FlatRule],
        from: u32,
    ) -> [usize; 3] {
        let ct_any = p.ct_state & ct::ANY != 0;
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
            let (s, e) = leaf_span(l);
            let found = self.scan_leaf(l, key, p, rules, from, best, ct_any, |_| false);
            cost[2] += self.entries[s..e]
                .iter()
                .take_while(|en| en.idx < best && en.idx <= found)
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

struct Builder<'a, A> {
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
            return self.leaf(rules, list);
        }
        if self.build_bytes() > self.p.max_bytes {
            self.out.stats.budget_stops += 1;
            return self.leaf(rules, list);
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
            return self.leaf(rules, list);
        }
        let Some(cut) = self.choose_cut(rules, list, &eff) else {
            return self.leaf(rules, list);
        };
        if cut.max_child >= n {
            return self.leaf(rules, list);
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

    fn leaf(&mut self, rules: &[BuildRule], list: &[u32]) -> Link {
        if let Some(&l) = self.leaf_links.get(list) {
            return l;
        }
        let s = self.out.entries.len() as u32;
        for &i in list {
            let r = &rules[i as usize];
            self.out.entries.push(Entry {
                src: [A::from_u128(r.lo[DIM_SRC]), A::from_u128(r.hi[DIM_SRC])],
                dst: [A::from_u128(r.lo[DIM_DST]), A::from_u128(r.hi[DIM_DST])],
                sport: [r.lo[DIM_SPORT] as u16, r.hi[DIM_SPORT] as u16],
                dport: [r.lo[DIM_DPORT] as u16, r.hi[DIM_DPORT] as u16],
                proto: [r.lo[DIM_PROTO] as u8, r.hi[DIM_PROTO] as u8],
                idx: r.idx,
                full: r.full,
            });
        }
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
