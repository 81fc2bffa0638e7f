//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The per-packet stages, written over plain byte slices so the same code runs in a worker on
//! mbufs, in `rampart replay` over a pcap, and in unit tests.
//!
//! The pipeline is a filtering bridge: parse (malformed frames dropped with their reason), apply
//! the non-IP policies, judge IP packets by the rule set of their family ([`Bridge::judge`]),
//! with connection tracking when the caller gives its state tables ([`crate::track`]), and
//! forward to the ingress port's peer.

use crate::classify::{LogSpec, PacketMeta, RuleSet, Wire};
use crate::conntrack::{CtState, Dir, EntryId, Hint};
use crate::filter::{ip_packet_meta, judge_rules, packet_meta, Filter, FilterVerdict};
use crate::nat::Binding;
use crate::track::{
    judge_lean, judge_resumed, judge_tracked, Bridged, Forwarding, IpJudgement, Lean, Tables,
};
use crate::verdict::{DropReason, Verdict};
use crate::wire::{self, Family, FlowKey, PacketInfo, L3};

/// What every stage of [`Bridge::judge_verdict`] reads.
struct Judge<'a> {
    filter: &'a Filter,
    ingress: u16,
    now_ns: u64,
}

/// Everything known about one judged packet.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub verdict: Verdict,
    pub info: Option<PacketInfo>,
    /// What the filter looked at (IP packets the bridge would forward).
    pub meta: Option<PacketMeta>,
    pub filter: FilterVerdict,
    /// The conntrack state the filter saw (IP packets the bridge would forward, with tracking).
    pub state: Option<CtState>,
    /// `filter` came from the raw table (a raw-table DROP).
    pub raw: bool,
    /// The translation applied to the frame (NAT), with the packet's direction.
    pub nat: Option<(Binding, Dir)>,
}

/// What to do with a class of frames the bridge does not filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Forward,
    Drop,
}

/// The most ports a pipeline handles (DPDK's default RTE_MAX_ETHPORTS).
pub const MAX_PORTS: usize = 32;

/// Bridge mode: port pairs; IP frames that parse are forwarded to the peer port.
#[derive(Clone, Debug)]
pub struct Bridge {
    peer: [Option<u16>; MAX_PORTS],
    arp: Policy,
    non_ip: Policy,
}

impl Bridge {
    /// A bridge over `pairs` of port indexes. Each port may appear in one pair only; the caller
    /// (configuration) checks that and the indexes' range.
    pub fn new(pairs: &[(u16, u16)], arp: Policy, non_ip: Policy) -> Bridge {
        let mut peer = [None; MAX_PORTS];
        for &(a, b) in pairs {
            peer[usize::from(a)] = Some(b);
            peer[usize::from(b)] = Some(a);
        }
        Bridge { peer, arp, non_ip }
    }

    /// The peer of `port`, if it is paired.
    pub fn peer(&self, port: u16) -> Option<u16> {
        self.peer.get(usize::from(port)).copied().flatten()
    }

    /// The verdict alone for one frame that arrived on port index `ingress` (the same decision
    /// as [`Bridge::process`]).
    #[inline(always)]
    pub fn verdict(&self, ingress: u16, frame: &[u8]) -> Verdict {
        self.process(ingress, frame).0
    }

    /// Judges one frame by the bridge and then by `filter`, with connection tracking when
    /// `tables` are given ([`crate::track`]); `now_ns` is the packet's time. `on_log` is called
    /// for each LOG rule the packet passes (rule index and its spec). The slow path's full report
    /// (replay, tests); a worker uses [`Bridge::judge_verdict`], which decides the same.
    #[inline]
    pub fn judge(
        &self,
        filter: &Filter,
        tables: Option<&mut Tables>,
        ingress: u16,
        frame: &mut [u8],
        now_ns: u64,
        on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    ) -> Outcome {
        let (verdict, info) = self.process(ingress, frame);
        let mut out = Outcome {
            verdict,
            info,
            meta: None,
            filter: FilterVerdict::Unfiltered,
            state: None,
            raw: false,
            nat: None,
        };
        let (Verdict::Forward(egress), Some(info)) = (verdict, info) else {
            return out;
        };
        let Some(key) = info.flow else {
            return out;
        };
        if let Some(t) = tables {
            let j = judge_tracked(
                filter,
                t,
                frame,
                &info,
                key,
                ingress,
                &mut Bridged(egress),
                now_ns,
                on_log,
            );
            out.meta = Some(j.meta);
            out.filter = j.filter;
            out.state = j.state;
            out.raw = j.raw;
            out.verdict = translate(frame, &info, &j);
            out.nat = j.nat.filter(|_| out.verdict == j.verdict);
            return out;
        }
        let Some(meta) = packet_meta(frame, &info, ingress, egress) else {
            return out;
        };
        out.meta = Some(meta);
        out.filter = filter.judge(&meta, &Wire::of(frame, &info, now_ns), on_log);
        out.verdict = filtered(verdict, out.filter);
        out
    }

    /// What [`Bridge::judge`] decides, without building its report: the per-packet path of a
    /// worker. `on_rule(family, verdict)` is called with the filter's verdict when a rule set
    /// judged the packet. A family without a rule set and without tracking costs one branch;
    /// the parser's common frames take its straight-line path ([`wire::parse::parse_common`]).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn judge_verdict(
        &self,
        filter: &Filter,
        tables: Option<&mut Tables>,
        ingress: u16,
        frame: &mut [u8],
        now_ns: u64,
        on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
        on_rule: impl FnOnce(Family, FilterVerdict),
    ) -> Verdict {
        let p = Judge {
            filter,
            ingress,
            now_ns,
        };
        match wire::parse::parse_common(frame) {
            Some(info) => self.judge_parsed(&p, tables, frame, &info, None, on_log, on_rule),
            None => self.judge_uncommon(&p, tables, frame, on_log, on_rule),
        }
    }

    /// [`Bridge::judge_verdict`] for a frame the straight-line parser already read: `info` is
    /// its result (by reference: the prefetch pass left it in memory, and a copy is a hundred
    /// bytes), and `hint` what the prefetch pass learnt of its tuple in `tables` (as
    /// [`crate::track::prefetch_burst`] leaves them: this frame's; a stale guess of an entry
    /// costs the lean path's lookup a probe, never a wrong answer, since the lookup compares
    /// tuples, but the hint's tag is taken as the tuple's, so a hint must not be another
    /// frame's; [`Hint::default`] knows no tag and is safe for any frame). A separate entry,
    /// so the pass-through path never carries a parsed result it did not make in registers.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn judge_verdict_parsed(
        &self,
        filter: &Filter,
        tables: Option<&mut Tables>,
        ingress: u16,
        frame: &mut [u8],
        info: &PacketInfo,
        hint: Hint,
        now_ns: u64,
        on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
        on_rule: impl FnOnce(Family, FilterVerdict),
    ) -> Verdict {
        let p = Judge {
            filter,
            ingress,
            now_ns,
        };
        self.judge_parsed(&p, tables, frame, info, Some(hint), on_log, on_rule)
    }

    /// [`Bridge::judge_verdict`] for a frame the straight-line parser left to the full one.
    #[inline(never)]
    fn judge_uncommon(
        &self,
        p: &Judge<'_>,
        tables: Option<&mut Tables>,
        frame: &mut [u8],
        on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
        on_rule: impl FnOnce(Family, FilterVerdict),
    ) -> Verdict {
        match wire::parse_frame(frame) {
            Ok(info) => self.judge_parsed(p, tables, frame, &info, None, on_log, on_rule),
            Err(e) => Verdict::Drop(DropReason::Parse(e)),
        }
    }

    /// `hint`: what the prefetch pass learnt of the tuple, when it ran.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn judge_parsed(
        &self,
        p: &Judge<'_>,
        tables: Option<&mut Tables>,
        frame: &mut [u8],
        info: &PacketInfo,
        hint: Option<Hint>,
        on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
        on_rule: impl FnOnce(Family, FilterVerdict),
    ) -> Verdict {
        let verdict = self.bridge_verdict(p.ingress, info.l3);
        if let Some(t) = tables {
            // Only IP packets carry a flow key; only forwarded ones meet the filter.
            let (Verdict::Forward(egress), Some(key)) = (verdict, info.flow.as_ref()) else {
                return verdict;
            };
            // The info and its key by reference: a frame the prefetch pass parsed has them in
            // memory already (a copy here was some twenty instructions a packet).
            return tracked_one(
                p,
                t,
                frame,
                info,
                key,
                hint,
                &mut Bridged(egress),
                on_log,
                on_rule,
            );
        }
        let (Verdict::Forward(egress), Some(key)) = (verdict, info.flow) else {
            return verdict;
        };
        let Some(rules) = p.filter.rules(key.family) else {
            return verdict;
        };
        // The parts by value, not `info` by reference: the info then never needs a home in
        // memory on the unfiltered path.
        let (frag, l4_offset) = (info.frag, info.l4_offset);
        let meta = ip_packet_meta(frame, key, frag, l4_offset, p.ingress, egress);
        let w = Wire {
            frame,
            l3: info.l3_offset,
            l4: l4_offset,
            now_ns: p.now_ns,
            hops_taken: 0,
            whole_len: 0,
            conn: None,
            count: None,
        };
        filter_one(rules, meta, &w, verdict, on_log, on_rule)
    }

    /// The pass-through judge for frames arriving on `ingress` when `filter` has no rule set
    /// for either family and no connection tracking runs: `None` otherwise. It decides what
    /// [`Bridge::judge_verdict`] decides for such a filter (an IP frame the bridge forwards
    /// then meets no rule), with the bridge's answer for each kind of frame worked out once
    /// instead of per packet.
    #[inline]
    pub fn pass_through(&self, filter: &Filter, ingress: u16) -> Option<PassThrough> {
        passes_through(filter).then(|| self.pass_judge(ingress))
    }

    /// [`Bridge::pass_through`] without the filter's check: the judge to use for `ingress`
    /// whenever [`passes_through`] holds for the filter (workers build one per port at start).
    pub fn pass_judge(&self, ingress: u16) -> PassThrough {
        let v = |l3| self.bridge_verdict(ingress, l3);
        let by_l3 = [v(L3::Arp), v(L3::Ipv4), v(L3::Ipv6), v(L3::Other)];
        let peer = self.peer(ingress);
        let mut forwarded = 0;
        for (k, v) in by_l3.iter().enumerate() {
            if matches!((v, peer), (Verdict::Forward(p), Some(q)) if *p == q) {
                forwarded |= 1 << k;
            }
        }
        PassThrough {
            by_l3,
            forwarded,
            peer: peer.unwrap_or(u16::MAX),
        }
    }

    /// Judges one frame that arrived on port index `ingress` by the bridge alone.
    #[inline]
    pub fn process(&self, ingress: u16, frame: &[u8]) -> (Verdict, Option<PacketInfo>) {
        match wire::parse_frame_fast(frame) {
            Ok(info) => (self.bridge_verdict(ingress, info.l3), Some(info)),
            Err(e) => (Verdict::Drop(DropReason::Parse(e)), None),
        }
    }

    /// The bridge's decision for a frame that parsed as `l3`.
    #[inline(always)]
    fn bridge_verdict(&self, ingress: u16, l3: L3) -> Verdict {
        let policy = match l3 {
            L3::Ipv4 | L3::Ipv6 => Policy::Forward,
            L3::Arp => self.arp,
            L3::Other => self.non_ip,
        };
        match (policy, self.peer(ingress)) {
            (Policy::Drop, _) if l3 == L3::Arp => Verdict::Drop(DropReason::ArpPolicy),
            (Policy::Drop, _) => Verdict::Drop(DropReason::NonIpPolicy),
            (Policy::Forward, Some(out)) => Verdict::Forward(out),
            (Policy::Forward, None) => Verdict::Drop(DropReason::NoPeer),
        }
    }
}

/// Whether the bridge's pass-through judges ([`Bridge::pass_through`]) apply under `filter`:
/// it has no rule set for either family.
#[inline(always)]
pub fn passes_through(filter: &Filter) -> bool {
    filter.rules(Family::V4).is_none() && filter.rules(Family::V6).is_none()
}

/// The bridge's verdict for every kind of well-formed frame arriving on one port, when neither
/// rules nor tracking judge IP packets ([`Bridge::pass_through`]). Every frame is still parsed:
/// malformed ones are dropped with the parser's reason.
///
/// A burst is judged in two steps: [`PassThrough::kind`] for each frame (its validation and
/// nothing else), then, when the kinds seen all leave by the peer port
/// ([`PassThrough::all_forwarded`]), the whole burst goes there; otherwise each frame's
/// [`PassThrough::verdict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassThrough {
    /// Indexed by `L3 as usize`.
    by_l3: [Verdict; 4],
    /// Bit `L3 as usize` set when frames of that kind are forwarded to `peer`.
    forwarded: u32,
    /// The ingress port's peer (`u16::MAX` when it has none; `forwarded` is then 0).
    peer: u16,
}

/// The [`PassThrough::kind`] of a frame the straight-line parser leaves to the full one (and of
/// a multi-segment packet, for the worker).
pub const UNCOMMON: u8 = 4;

const _: () = assert!(
    L3::Arp as usize == 0
        && L3::Ipv4 as usize == 1
        && L3::Ipv6 as usize == 2
        && L3::Other as usize == 3
        && UNCOMMON as usize == 4
);

impl PassThrough {
    /// The verdict for one frame. The straight-line parser's common frames cost their
    /// validation and one table read; the others go to the full parser.
    #[inline(always)]
    pub fn verdict(&self, frame: &[u8]) -> Verdict {
        self.verdict_of(Self::kind(frame), frame)
    }

    /// What the straight-line parser makes of `frame`: `L3 as u8` when it accepts the frame,
    /// [`UNCOMMON`] when the full parser must decide.
    #[inline(always)]
    pub fn kind(frame: &[u8]) -> u8 {
        match wire::parse::classify_common(frame) {
            Some(l3) => l3 as u8,
            None => UNCOMMON,
        }
    }

    /// The verdict for `frame`, whose [`PassThrough::kind`] is `kind`.
    #[inline(always)]
    fn verdict_of(&self, kind: u8, frame: &[u8]) -> Verdict {
        match self.by_l3.get(usize::from(kind)) {
            Some(&v) => v,
            None => self.uncommon(frame),
        }
    }

    /// The peer port, when frames of every kind in `seen` (bit `k` for kind `k`) are
    /// forwarded there; `None` when some may be dropped (or [`UNCOMMON`] is in `seen`).
    #[inline(always)]
    pub fn all_forwarded(&self, seen: u32) -> Option<u16> {
        (seen & !self.forwarded == 0).then_some(self.peer)
    }

    /// [`PassThrough::verdict`] for a frame the straight-line parser left to the full one.
    #[inline(never)]
    fn uncommon(&self, frame: &[u8]) -> Verdict {
        match wire::parse_frame(frame) {
            Ok(info) => self.by_l3[info.l3 as usize],
            Err(e) => Verdict::Drop(DropReason::Parse(e)),
        }
    }
}

/// The bridge's forward `verdict` after the filter said `filter`.
#[inline(always)]
fn filtered(verdict: Verdict, filter: FilterVerdict) -> Verdict {
    match filter {
        FilterVerdict::Unfiltered | FilterVerdict::Accept { .. } => verdict,
        FilterVerdict::Drop { .. } => Verdict::Drop(DropReason::RuleDrop),
        FilterVerdict::Reject { .. } => Verdict::Drop(DropReason::RuleReject),
    }
}

/// An IP packet the bridge forwards, judged by its family's rule set (out of line: the
/// classifier dominates its cost, and the unfiltered path stays small).
#[inline(never)]
fn filter_one(
    rules: &RuleSet,
    meta: PacketMeta,
    w: &Wire<'_>,
    verdict: Verdict,
    on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    on_rule: impl FnOnce(Family, FilterVerdict),
) -> Verdict {
    let fv = judge_rules(rules, &meta, w, on_log);
    if fv.rule().is_some() {
        on_rule(meta.key.family, fv);
    }
    filtered(verdict, fv)
}

/// An IP packet through the stateful stage (out of line, as [`filter_one`]), its translation
/// applied.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn tracked_one<F: Forwarding>(
    p: &Judge<'_>,
    tables: &mut Tables,
    frame: &mut [u8],
    info: &PacketInfo,
    key: &FlowKey,
    hint: Option<Hint>,
    fwd: &mut F,
    on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    on_rule: impl FnOnce(Family, FilterVerdict),
) -> Verdict {
    let hint = match hint {
        Some(h) => h,
        None => tables.ct.hint_of(key),
    };
    let resume = match judge_lean(
        p.filter, tables, frame, info, key, hint, p.ingress, fwd, p.now_ns,
    ) {
        Ok(l) => {
            if l.filter.rule().is_some() {
                on_rule(key.family, l.filter);
            }
            return lean_translate(tables, frame, info, &l);
        }
        Err(r) => r,
    };
    let j = judge_resumed(
        p.filter, tables, frame, info, *key, p.ingress, fwd, p.now_ns, on_log, resume,
    );
    let counted = j.counted();
    if counted.rule().is_some() {
        on_rule(key.family, counted);
    }
    translate(frame, info, &j)
}

/// Applies the translation a lean answer names ([`Lean::nat`]) to its frame, reading the
/// translated tuple from the connection's entry: the same bytes and verdict as [`translate`]
/// with the judgement the general path gives the packet. A packet without a translation costs
/// one test; the rewrite is out of line (inlined, it lengthened the untranslated packet's
/// path by its register pressure).
#[inline(always)]
pub fn lean_translate(tables: &Tables, frame: &mut [u8], info: &PacketInfo, l: &Lean) -> Verdict {
    match l.nat {
        None => l.verdict,
        Some((id, dir)) => lean_rewrite(tables, frame, info, id, dir, l.verdict),
    }
}

/// [`lean_translate`]'s rewrite of a `dir` packet of entry `id` whose verdict is `verdict`:
/// the straight-line IPv4 TCP or UDP case here, from the four fields of the other direction's
/// tuple it needs, and `verdict` handed back as it came; anything else in
/// [`lean_rewrite_other`], a tail call (so the verdict is never rebuilt on the common path,
/// and the failure's verdict is made out of the way).
#[inline(never)]
fn lean_rewrite(
    tables: &Tables,
    frame: &mut [u8],
    info: &PacketInfo,
    id: EntryId,
    dir: Dir,
    verdict: Verdict,
) -> Verdict {
    // The packet's fields first: a packet that is not the straight-line case leaves at once,
    // and the table is read only for one that is.
    let Some(fields) = crate::nat::V4Fields::find(frame, info) else {
        return lean_rewrite_other(tables, frame, info, id, dir, verdict);
    };
    fields.rewrite(&tables.ct.nat_other(id, dir));
    verdict
}

/// [`lean_rewrite`] for the packets the straight-line case leaves (IPv6, ICMP, fragments,
/// truncated headers): the whole binding, as [`translate`] rewrites them.
#[cold]
#[inline(never)]
fn lean_rewrite_other(
    tables: &Tables,
    frame: &mut [u8],
    info: &PacketInfo,
    id: EntryId,
    dir: Dir,
    verdict: Verdict,
) -> Verdict {
    match crate::nat::rewrite(frame, info, dir, &tables.ct.nat_binding(id)) {
        Ok(()) => verdict,
        Err(e) => Verdict::Drop(DropReason::Rewrite(e)),
    }
}

/// Applies the translation a judgement names to its frame; a frame that cannot be rewritten
/// is dropped with the reason. Inlined always: a packet without a translation (most of them)
/// then costs one test, not a call.
#[inline(always)]
pub fn translate(frame: &mut [u8], info: &PacketInfo, j: &IpJudgement) -> Verdict {
    match &j.nat {
        Some((b, dir)) if !matches!(j.verdict, Verdict::Drop(_)) => {
            match crate::nat::rewrite(frame, info, *dir, b) {
                Ok(()) => j.verdict,
                Err(e) => Verdict::Drop(DropReason::Rewrite(e)),
            }
        }
        _ => j.verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{arp_request, FrameSpec, IpSpec, L4Spec};
    use crate::wire::tcp::Flags;
    use crate::wire::MacAddr;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Bridges over ports 0..3 with 0 and 1 paired (2 has no peer), under every policy.
    fn bridges() -> Vec<Bridge> {
        let mut v = Vec::new();
        for arp in [Policy::Forward, Policy::Drop] {
            for non_ip in [Policy::Forward, Policy::Drop] {
                v.push(Bridge::new(&[(0, 1)], arp, non_ip));
            }
        }
        v
    }

    /// The pass-through judge decides as the worker's general path does without rules.
    fn same_as_general(frame: &[u8]) -> Result<(), TestCaseError> {
        let filter = Filter::default();
        for bridge in bridges() {
            for ingress in 0..3 {
                let pass = bridge.pass_through(&filter, ingress).expect("no rules");
                let mut f = frame.to_vec();
                let general = bridge.judge_verdict(
                    &filter,
                    None,
                    ingress,
                    &mut f,
                    0,
                    |_, _, _| {},
                    |_, _| {},
                );
                prop_assert_eq!(pass.verdict(frame), general, "frame {:02x?}", frame);
                prop_assert_eq!(pass.verdict(frame), bridge.verdict(ingress, frame));
            }
        }
        Ok(())
    }

    fn frames() -> Vec<Vec<u8>> {
        let v4 = IpSpec::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let v6 = IpSpec::v6(
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
        );
        let mut out = vec![
            FrameSpec::new(v4.clone(), L4Spec::udp(1, 53, &[7; 22])).build(),
            FrameSpec::new(v4.clone(), L4Spec::tcp(1000, 80, Flags::SYN)).build(),
            FrameSpec::new(v4.clone(), L4Spec::icmp_echo(1, 2)).build(),
            FrameSpec::new(v6.clone(), L4Spec::udp(1, 53, &[7; 10])).build(),
            FrameSpec::new(v6, L4Spec::icmpv6_echo(1, 2)).build(),
            arp_request(
                MacAddr([2, 0, 0, 0, 0, 9]),
                Ipv4Addr::new(10, 0, 0, 9),
                Ipv4Addr::new(10, 0, 0, 1),
            ),
            vec![0; 64],
        ];
        out.extend(FrameSpec::new(v4, L4Spec::udp(1, 2, &[7; 40])).fragments(16));
        out
    }

    #[test]
    fn pass_through_needs_an_empty_filter() {
        let bridge = Bridge::new(&[(0, 1)], Policy::Forward, Policy::Drop);
        assert!(bridge.pass_through(&Filter::default(), 0).is_some());
    }

    #[test]
    fn pass_through_decides_as_the_general_path() {
        for f in frames() {
            same_as_general(&f).unwrap();
            for n in 0..f.len() {
                same_as_general(&f[..n]).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn pass_through_matches_on_arbitrary_bytes(f in proptest::collection::vec(any::<u8>(), 0..120)) {
            same_as_general(&f)?;
        }

        #[test]
        fn pass_through_matches_on_damaged_frames(
            which in 0usize..9,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let all = frames();
            let mut f = all[which % all.len()].clone();
            for (at, x) in flips {
                let i = at.index(f.len());
                f[i] ^= x;
            }
            same_as_general(&f)?;
        }
    }
}
