//! DPDK's `rte_acl` packet classifier over Rampart's flat rules: the baseline the native
//! classifier is measured against, and the plain `classifier = "rte_acl"` choice.
//!
//! Layouts are those of DPDK's `l3fwd-acl` and `test-acl` (keys in network byte order, rule
//! values in host order):
//!
//! | family | proto | source | destination | ports | key bytes |
//! |---|---|---|---|---|---|
//! | IPv4 | byte 0, bitmask | 4..8, one 32-bit mask field | 8..12, one | 12..14, 14..16, ranges | 16 |
//! | IPv6 | byte 0, bitmask | 4..20, four 32-bit mask fields | 20..36, four | 36..38, 38..40 | 40 |
//!
//! Invariants:
//! - [`AclClassifier`] answers exactly as [`Linear`] does over the rules it was built from. For
//!   `from == 0` it asks `rte_acl` for the first rule whose 5-tuple holds (priority
//!   `RTE_ACL_MAX_PRIORITY - index`, userdata `index + 1`) and confirms it with
//!   [`FlatRule::matches`]; when that fails (a rule with interface, conntrack-state, TCP-flag or
//!   fragment conditions the packet does not meet), when `from > 0`, and for an IPv4 packet whose
//!   addresses are not v4-mapped, it scans linearly. Those fallbacks are the slow path.
//! - A rule range that is not a prefix (addresses, protocol) is split into prefixes: one
//!   `rte_acl` rule per element of the product, all with the rule's priority and userdata.
//! - Contexts are freed on drop; a context is read-only after its build, so lookups from many
//!   lcores at once are safe.

use super::{strerror, DpdkError, Eal};
use crate::classify::{Classifier, FlatRule, Linear, PacketMeta};
use crate::wire::Family;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// An `rte_acl` classify implementation (`enum rte_acl_classify_alg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AclAlgorithm {
    Scalar,
    Sse,
    Avx2,
    Neon,
    Altivec,
    Avx512x16,
    Avx512x32,
}

impl AclAlgorithm {
    /// Best first: the order in which [`AclClassifier`] tries them when none is forced.
    pub const BEST_FIRST: [AclAlgorithm; 7] = [
        AclAlgorithm::Avx512x32,
        AclAlgorithm::Avx512x16,
        AclAlgorithm::Avx2,
        AclAlgorithm::Sse,
        AclAlgorithm::Neon,
        AclAlgorithm::Altivec,
        AclAlgorithm::Scalar,
    ];

    fn raw(self) -> dpdk_sys::rte_acl_classify_alg {
        match self {
            AclAlgorithm::Scalar => dpdk_sys::RTE_ACL_CLASSIFY_SCALAR,
            AclAlgorithm::Sse => dpdk_sys::RTE_ACL_CLASSIFY_SSE,
            AclAlgorithm::Avx2 => dpdk_sys::RTE_ACL_CLASSIFY_AVX2,
            AclAlgorithm::Neon => dpdk_sys::RTE_ACL_CLASSIFY_NEON,
            AclAlgorithm::Altivec => dpdk_sys::RTE_ACL_CLASSIFY_ALTIVEC,
            AclAlgorithm::Avx512x16 => dpdk_sys::RTE_ACL_CLASSIFY_AVX512X16,
            AclAlgorithm::Avx512x32 => dpdk_sys::RTE_ACL_CLASSIFY_AVX512X32,
        }
    }
}

/// How to build an [`AclClassifier`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AclConfig {
    /// `rte_acl_config.max_size`: bound on each context's run-time structures (0: none). When
    /// the trie would be larger, `rte_acl` splits the rules over more tries (slower lookups) and
    /// fails the build when even its most tries do not fit.
    pub max_size_bytes: usize,
    /// Force a classify implementation; `None` takes the best one this CPU and the EAL's
    /// `--force-max-simd-bitwidth` allow.
    pub algorithm: Option<AclAlgorithm>,
}

/// What a build produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AclStats {
    /// Wall-clock time of create, add and build, both families.
    pub build_time: Duration,
    /// DPDK heap bytes the contexts hold after the build (rules and run-time tries).
    pub heap_bytes: usize,
    /// `rte_acl` rules after splitting ranges into prefixes.
    pub acl_rules: usize,
    /// The classify implementation in use (`None` when no family has rules).
    pub algorithm: Option<AclAlgorithm>,
}

/// Most keys classified in one `rte_acl_classify` call.
const CHUNK: usize = 64;
const V4_KEY: usize = 16;
const V6_KEY: usize = 40;
/// Fields: proto, src, dst, sport, dport (IPv4); proto, 4 x src, 4 x dst, sport, dport (IPv6).
const V4_FIELDS: usize = 5;
const V6_FIELDS: usize = 11;

/// One `rte_acl` rule of `N` fields (`RTE_ACL_RULE_DEF`).
#[repr(C)]
#[derive(Clone, Copy)]
struct AclRule<const N: usize> {
    data: dpdk_sys::rte_acl_rule_data,
    field: [dpdk_sys::rte_acl_field; N],
}

/// One family's `rte_acl` context, freed on drop.
#[derive(Debug)]
struct Context {
    raw: NonNull<dpdk_sys::rte_acl_ctx>,
    key_len: usize,
}

// SAFETY: after `rte_acl_build`, a context is only read (rte_acl_classify takes a const pointer
// and is documented as safe from many lcores at once); the handle is freed only through `&mut`.
unsafe impl Send for Context {}
// SAFETY: as above: shared access only calls rte_acl_classify on a built, read-only context.
unsafe impl Sync for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: raw came from rte_acl_create, is freed once (here), and no lookup can be running
        // (we hold the only handle, mutably).
        unsafe { dpdk_sys::rte_acl_free(self.raw.as_ptr()) }
    }
}

static CONTEXT_SEQ: AtomicU32 = AtomicU32::new(0);

impl Context {
    /// Creates a context, adds `rules` and builds it with `defs`.
    fn build<const N: usize>(
        rules: &[AclRule<N>],
        defs: &[dpdk_sys::rte_acl_field_def; N],
        key_len: usize,
        cfg: &AclConfig,
    ) -> Result<(Context, AclAlgorithm), DpdkError> {
        let name = format!(
            "rampart_acl_{}_{}",
            std::process::id() % 100_000,
            CONTEXT_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let cname = CString::new(name).map_err(|_| DpdkError::BadArgument("acl name".into()))?;
        let max = u32::try_from(rules.len().max(1)).map_err(|_| DpdkError::AclTooManyRules)?;
        let param = dpdk_sys::rte_acl_param {
            name: cname.as_ptr(),
            socket_id: dpdk_sys::SOCKET_ID_ANY,
            rule_size: core::mem::size_of::<AclRule<N>>() as u32,
            max_rule_num: max,
        };
        // SAFETY: param and the name it points to are valid for the call (rte_acl_create copies
        // the name); EAL is initialised (the caller holds `&Eal`).
        let raw = unsafe { dpdk_sys::rte_acl_create(&param) };
        let Some(raw) = NonNull::new(raw) else {
            return Err(acl_error("rte_acl_create", super::rte_errno()));
        };
        let ctx = Context { raw, key_len };
        let alg = ctx.set_algorithm(cfg.algorithm)?;
        for part in rules.chunks(1 << 16) {
            // SAFETY: ctx is live; `part` holds `part.len()` rules of exactly the rule_size given
            // at create (AclRule<N> is repr(C), laid out as RTE_ACL_RULE_DEF(_, N)); rte_acl
            // copies them.
            let rc = unsafe {
                dpdk_sys::rte_acl_add_rules(
                    ctx.raw.as_ptr(),
                    part.as_ptr().cast::<dpdk_sys::rte_acl_rule>(),
                    part.len() as u32,
                )
            };
            if rc != 0 {
                return Err(acl_error("rte_acl_add_rules", rc));
            }
        }
        let mut acfg = dpdk_sys::rte_acl_config {
            num_categories: 1,
            num_fields: N as u32,
            max_size: cfg.max_size_bytes,
            ..Default::default()
        };
        acfg.defs[..N].copy_from_slice(defs);
        // SAFETY: ctx is live and not yet shared; acfg is a valid configuration whose field
        // definitions match the rules added above.
        let rc = unsafe { dpdk_sys::rte_acl_build(ctx.raw.as_ptr(), &acfg) };
        if rc != 0 {
            return Err(acl_error("rte_acl_build", rc));
        }
        Ok((ctx, alg))
    }

    /// Sets the classify implementation: the forced one, or the best the context accepts.
    fn set_algorithm(&self, forced: Option<AclAlgorithm>) -> Result<AclAlgorithm, DpdkError> {
        let try_set = |a: AclAlgorithm| {
            // SAFETY: ctx is live and not shared yet; an unsupported algorithm is refused with
            // an error code and changes nothing.
            unsafe { dpdk_sys::rte_acl_set_ctx_classify(self.raw.as_ptr(), a.raw()) }
        };
        if let Some(a) = forced {
            let rc = try_set(a);
            return if rc == 0 {
                Ok(a)
            } else {
                Err(acl_error("rte_acl_set_ctx_classify", rc))
            };
        }
        AclAlgorithm::BEST_FIRST
            .into_iter()
            .find(|&a| try_set(a) == 0)
            .ok_or_else(|| acl_error("rte_acl_set_ctx_classify", -ENOTSUP))
    }

    /// Classifies `keys` (each of this context's key length) into `results` (userdata, 0 for no
    /// match).
    #[inline]
    fn classify<const K: usize>(&self, keys: &[[u8; K]], results: &mut [u32]) {
        assert!(K == self.key_len && keys.len() <= CHUNK && results.len() >= keys.len());
        let mut ptrs = [core::ptr::null::<u8>(); CHUNK];
        for (p, k) in ptrs.iter_mut().zip(keys) {
            *p = k.as_ptr();
        }
        // SAFETY: the context is built; `ptrs[..n]` point to `n` live keys of the length the
        // field definitions read (checked above); `results` has room for n results of one
        // category. rte_acl_classify only reads the keys and the context.
        let rc = unsafe {
            dpdk_sys::rte_acl_classify(
                self.raw.as_ptr(),
                ptrs.as_mut_ptr(),
                results.as_mut_ptr(),
                keys.len() as u32,
                1,
            )
        };
        debug_assert_eq!(rc, 0, "rte_acl_classify with valid arguments");
    }
}

/// Linux `ENOTSUP`, for "no classify implementation accepted".
const ENOTSUP: i32 = 95;

fn acl_error(op: &'static str, rc: i32) -> DpdkError {
    DpdkError::Acl {
        op,
        code: rc,
        msg: strerror(rc),
    }
}

/// DPDK heap bytes allocated on every socket (`rte_malloc_get_socket_stats`).
pub fn heap_allocated_bytes(_eal: &Eal) -> usize {
    let mut total = 0;
    for socket in 0..dpdk_sys::RTE_MAX_NUMA_NODES as i32 {
        let mut s = dpdk_sys::rte_malloc_socket_stats::default();
        // SAFETY: EAL is initialised; `s` is a valid out-parameter; an unknown socket is refused
        // with -1 and writes nothing we use.
        if unsafe { dpdk_sys::rte_malloc_get_socket_stats(socket, &mut s) } == 0 {
            total += s.heap_allocsz_bytes;
        }
    }
    total
}

/// `rte_acl` over a rule set's flat rules: one context per family that has rules.
#[derive(Debug)]
pub struct AclClassifier {
    v4: Option<Context>,
    v6: Option<Context>,
    rules: usize,
    stats: AclStats,
}

/// Start of the v4-mapped block `::ffff:0.0.0.0`.
const V4_MAPPED: u128 = 0xffff_0000_0000;

impl AclClassifier {
    /// Builds the contexts for `rules` (at most `RTE_ACL_MAX_PRIORITY - 1` of them).
    pub fn new(eal: &Eal, rules: &[FlatRule], cfg: &AclConfig) -> Result<AclClassifier, DpdkError> {
        if rules.len() >= dpdk_sys::RTE_ACL_MAX_PRIORITY as usize {
            return Err(DpdkError::AclTooManyRules);
        }
        let start = Instant::now();
        let heap_before = heap_allocated_bytes(eal);
        let (r4, r6) = acl_rules(rules);
        let mut stats = AclStats {
            acl_rules: r4.len() + r6.len(),
            ..AclStats::default()
        };
        let v4 = if r4.is_empty() {
            None
        } else {
            let (c, a) = Context::build(&r4, &v4_defs(), V4_KEY, cfg)?;
            stats.algorithm = Some(a);
            Some(c)
        };
        drop(r4);
        let v6 = if r6.is_empty() {
            None
        } else {
            let (c, a) = Context::build(&r6, &v6_defs(), V6_KEY, cfg)?;
            stats.algorithm = Some(a);
            Some(c)
        };
        stats.build_time = start.elapsed();
        stats.heap_bytes = heap_allocated_bytes(eal).saturating_sub(heap_before);
        Ok(AclClassifier {
            v4,
            v6,
            rules: rules.len(),
            stats,
        })
    }

    pub fn stats(&self) -> AclStats {
        self.stats
    }

    /// How many flat rules the classifier was built from.
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// Classifies one chunk of at most [`CHUNK`] packets.
    #[inline]
    fn classify_chunk(
        &self,
        rules: &[FlatRule],
        pkts: &[PacketMeta],
        from: &[u32],
        out: &mut [u32],
    ) {
        let mut k4 = [[0u8; V4_KEY]; CHUNK];
        let mut i4 = [0u8; CHUNK];
        let mut n4 = 0;
        let mut k6 = [[0u8; V6_KEY]; CHUNK];
        let mut i6 = [0u8; CHUNK];
        let mut n6 = 0;
        for (i, ((p, &f), o)) in pkts.iter().zip(from).zip(out.iter_mut()).enumerate() {
            let k = &p.key;
            if f != 0 {
                *o = slow_scan(rules, p, f);
                continue;
            }
            match k.family {
                Family::V4 if k.src.is_v4() && k.dst.is_v4() => {
                    let key = &mut k4[n4];
                    key[0] = k.proto;
                    key[4..8].copy_from_slice(&k.src.0[12..16]);
                    key[8..12].copy_from_slice(&k.dst.0[12..16]);
                    key[12..14].copy_from_slice(&k.src_port.to_be_bytes());
                    key[14..16].copy_from_slice(&k.dst_port.to_be_bytes());
                    i4[n4] = i as u8;
                    n4 += 1;
                }
                Family::V4 => *o = slow_scan(rules, p, 0),
                Family::V6 => {
                    let key = &mut k6[n6];
                    key[0] = k.proto;
                    key[4..20].copy_from_slice(&k.src.0);
                    key[20..36].copy_from_slice(&k.dst.0);
                    key[36..38].copy_from_slice(&k.src_port.to_be_bytes());
                    key[38..40].copy_from_slice(&k.dst_port.to_be_bytes());
                    i6[n6] = i as u8;
                    n6 += 1;
                }
            }
        }
        let mut res = [0u32; CHUNK];
        if n4 > 0 {
            match &self.v4 {
                Some(c) => c.classify(&k4[..n4], &mut res[..n4]),
                None => res[..n4].fill(0),
            }
            confirm(rules, pkts, &i4[..n4], &res[..n4], out);
        }
        if n6 > 0 {
            match &self.v6 {
                Some(c) => c.classify(&k6[..n6], &mut res[..n6]),
                None => res[..n6].fill(0),
            }
            confirm(rules, pkts, &i6[..n6], &res[..n6], out);
        }
    }
}

/// Turns `rte_acl` results (userdata, 0 for none) for packets `idx` into answers: the candidate
/// if it passes [`FlatRule::matches`], else a scan from the rule after it.
#[inline(always)]
fn confirm(rules: &[FlatRule], pkts: &[PacketMeta], idx: &[u8], res: &[u32], out: &mut [u32]) {
    for (&pi, &r) in idx.iter().zip(res) {
        let pi = usize::from(pi);
        let p = &pkts[pi];
        out[pi] = match r.checked_sub(1) {
            None => u32::MAX,
            Some(c) if rules.get(c as usize).is_some_and(|r| r.matches(p)) => c,
            Some(c) => slow_scan(rules, p, c + 1),
        };
    }
}

/// The slow path: `from > 0`, a candidate failing its extra conditions, an unmapped IPv4 packet.
#[cold]
#[inline(never)]
fn slow_scan(rules: &[FlatRule], p: &PacketMeta, from: u32) -> u32 {
    let mut out = [u32::MAX];
    Linear.classify(rules, std::slice::from_ref(p), &[from], &mut out);
    out[0]
}

impl Classifier for AclClassifier {
    fn classify(&self, rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32], out: &mut [u32]) {
        debug_assert_eq!(
            rules.len(),
            self.rules,
            "classify with the rules the contexts were built from"
        );
        let n = pkts.len().min(from.len()).min(out.len());
        let mut s = 0;
        while s < n {
            let e = (s + CHUNK).min(n);
            self.classify_chunk(rules, &pkts[s..e], &from[s..e], &mut out[s..e]);
            s = e;
        }
    }
}

fn field_def(ty: u32, size: u8, field: u8, input: u8, offset: u32) -> dpdk_sys::rte_acl_field_def {
    dpdk_sys::rte_acl_field_def {
        type_: ty as u8,
        size,
        field_index: field,
        input_index: input,
        offset,
    }
}

fn v4_defs() -> [dpdk_sys::rte_acl_field_def; V4_FIELDS] {
    use dpdk_sys::RTE_ACL_FIELD_TYPE_RANGE as RANGE;
    use dpdk_sys::{RTE_ACL_FIELD_TYPE_BITMASK as BITMASK, RTE_ACL_FIELD_TYPE_MASK as MASK};
    [
        field_def(BITMASK, 1, 0, 0, 0),
        field_def(MASK, 4, 1, 1, 4),
        field_def(MASK, 4, 2, 2, 8),
        field_def(RANGE, 2, 3, 3, 12),
        field_def(RANGE, 2, 4, 3, 14),
    ]
}

fn v6_defs() -> [dpdk_sys::rte_acl_field_def; V6_FIELDS] {
    use dpdk_sys::RTE_ACL_FIELD_TYPE_RANGE as RANGE;
    use dpdk_sys::{RTE_ACL_FIELD_TYPE_BITMASK as BITMASK, RTE_ACL_FIELD_TYPE_MASK as MASK};
    let mut d = [field_def(BITMASK, 1, 0, 0, 0); V6_FIELDS];
    for w in 0..4u8 {
        d[1 + usize::from(w)] = field_def(MASK, 4, 1 + w, 1 + w, 4 + 4 * u32::from(w));
        d[5 + usize::from(w)] = field_def(MASK, 4, 5 + w, 5 + w, 20 + 4 * u32::from(w));
    }
    d[9] = field_def(RANGE, 2, 9, 9, 36);
    d[10] = field_def(RANGE, 2, 10, 9, 38);
    d
}

/// `2^w - 1`, for `w` up to 128.
fn ones(w: u32) -> u128 {
    if w >= 128 {
        u128::MAX
    } else {
        (1u128 << w) - 1
    }
}

/// `[lo, hi]` in a `width`-bit space as the fewest aligned prefixes `(base, length)`.
fn prefixes(lo: u128, hi: u128, width: u32) -> Vec<(u128, u32)> {
    let mut out = Vec::new();
    let mut lo = lo;
    while lo <= hi {
        let mut bits = if lo == 0 {
            width
        } else {
            lo.trailing_zeros().min(width)
        };
        while bits > 0 && (lo | ones(bits)) > hi {
            bits -= 1;
        }
        out.push((lo, width - bits));
        let end = lo | ones(bits);
        if end >= hi {
            break;
        }
        lo = end + 1;
    }
    out
}

fn field(value: u64, mask_range: u64) -> dpdk_sys::rte_acl_field {
    dpdk_sys::rte_acl_field {
        value: dpdk_sys::rte_acl_field_types { u64_: value },
        mask_range: dpdk_sys::rte_acl_field_types { u64_: mask_range },
    }
}

/// A rule's ranges in its family's key space, or `None` when some range is empty (after
/// clipping IPv4 ranges to the v4-mapped block): no packet of the context can match it.
#[allow(clippy::type_complexity)]
fn key_ranges(r: &FlatRule) -> Option<[(u128, u128); 2]> {
    let addr = |(lo, hi): (crate::wire::IpAddr128, crate::wire::IpAddr128)| {
        let (lo, hi) = (u128::from_be_bytes(lo.0), u128::from_be_bytes(hi.0));
        match r.family {
            Family::V6 => (lo <= hi).then_some((lo, hi)),
            Family::V4 => {
                let (lo, hi) = (lo.max(V4_MAPPED), hi.min(V4_MAPPED | 0xffff_ffff));
                (lo <= hi).then(|| (lo - V4_MAPPED, hi - V4_MAPPED))
            }
        }
    };
    if r.proto.0 > r.proto.1 || r.sport.0 > r.sport.1 || r.dport.0 > r.dport.1 {
        return None;
    }
    Some([addr(r.src)?, addr(r.dst)?])
}

/// The `rte_acl` rules of both families.
fn acl_rules(rules: &[FlatRule]) -> (Vec<AclRule<V4_FIELDS>>, Vec<AclRule<V6_FIELDS>>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (idx, r) in rules.iter().enumerate() {
        let Some([src, dst]) = key_ranges(r) else {
            continue;
        };
        let data = dpdk_sys::rte_acl_rule_data {
            category_mask: 1,
            priority: (dpdk_sys::RTE_ACL_MAX_PRIORITY - idx as u32) as i32,
            userdata: idx as u32 + 1,
        };
        let width = if r.family == Family::V4 { 32 } else { 128 };
        let protos = prefixes(u128::from(r.proto.0), u128::from(r.proto.1), 8);
        let srcs = prefixes(src.0, src.1, width);
        let dsts = prefixes(dst.0, dst.1, width);
        let sport = field(u64::from(r.sport.0), u64::from(r.sport.1));
        let dport = field(u64::from(r.dport.0), u64::from(r.dport.1));
        for &(pv, plen) in &protos {
            let proto = field(
                pv as u64,
                u64::from(0xffu8.checked_shl(8 - plen).unwrap_or(0)),
            );
            for &(sv, slen) in &srcs {
                for &(dv, dlen) in &dsts {
                    match r.family {
                        Family::V4 => v4.push(AclRule {
                            data,
                            field: [
                                proto,
                                field(sv as u64, u64::from(slen)),
                                field(dv as u64, u64::from(dlen)),
                                sport,
                                dport,
                            ],
                        }),
                        Family::V6 => {
                            let mut f = [proto; V6_FIELDS];
                            for w in 0..4u32 {
                                let word = |v: u128| u64::from((v >> (96 - 32 * w)) as u32);
                                let len = |l: u32| u64::from(l.saturating_sub(32 * w).min(32));
                                f[1 + w as usize] = field(word(sv), len(slen));
                                f[5 + w as usize] = field(word(dv), len(dlen));
                            }
                            f[9] = sport;
                            f[10] = dport;
                            v6.push(AclRule { data, field: f });
                        }
                    }
                }
            }
        }
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_into_prefixes() {
        assert_eq!(prefixes(0, u128::from(u32::MAX), 32), vec![(0, 0)]);
        assert_eq!(prefixes(0, u128::MAX, 128), vec![(0, 0)]);
        assert_eq!(prefixes(10, 10, 32), vec![(10, 32)]);
        assert_eq!(prefixes(1, 6, 8), vec![(1, 8), (2, 7), (4, 7), (6, 8)]);
        assert_eq!(prefixes(0, 255, 8), vec![(0, 0)]);
        assert_eq!(prefixes(255, 255, 8), vec![(255, 8)]);
        // Every split covers its range exactly, in order, without overlap.
        for (lo, hi) in [(3u128, 1000u128), (0, 77), (128, 255), (17, 17), (1, 254)] {
            let p = prefixes(lo, hi, 16);
            let mut next = lo;
            for (base, len) in p {
                assert_eq!(base, next);
                next = base + (1 << (16 - len));
            }
            assert_eq!(next, hi + 1);
        }
    }

    #[test]
    fn rule_layout_matches_rte_acl_rule_def() {
        assert_eq!(
            core::mem::size_of::<AclRule<V4_FIELDS>>(),
            core::mem::size_of::<dpdk_sys::rte_acl_rule>()
                + V4_FIELDS * core::mem::size_of::<dpdk_sys::rte_acl_field>()
        );
        assert_eq!(
            core::mem::size_of::<AclRule<V6_FIELDS>>(),
            core::mem::size_of::<dpdk_sys::rte_acl_rule>()
                + V6_FIELDS * core::mem::size_of::<dpdk_sys::rte_acl_field>()
        );
    }
}
