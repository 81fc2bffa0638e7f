//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The stateful stage of the pipeline: for an IP packet the bridge forwards, in netfilter's
//! order,
//!
//! 1. virtual reassembly: a non-first fragment gets the verdict its datagram's first fragment
//!    got, or is dropped with the fragment table's reason (Linux defragments before anything
//!    else, so the raw table, conntrack and the filter all see the whole datagram once);
//! 2. the raw table's PREROUTING chain: DROP drops, NOTRACK leaves the packet UNTRACKED;
//! 3. connection tracking: the packet's state (NEW, ESTABLISHED, RELATED, INVALID,
//!    UNTRACKED) and its entry;
//! 4. nat PREROUTING: a connection's binding translates the destination side (DNAT, or the
//!    return of a SNAT); a NEW connection's first packet is judged by the chain (DNAT);
//! 5. the routing decision on the translated destination ([`Forwarding`]): out of a port
//!    (the filter FORWARD chain), to Rampart itself (router mode: the INPUT chain) or nowhere
//!    (`no_route`); a bridge forwards to the ingress port's peer;
//! 6. the filter chain, which sees that state (`-m conntrack --ctstate`, `-m state`) and the
//!    destination as translated, the source not yet (as in Linux's FORWARD);
//! 7. nat POSTROUTING for an accepted NEW connection (SNAT, MASQUERADE with the out port's
//!    address); the binding is chosen from this worker's ports ([`crate::nat::Allocator`]);
//! 8. if the packet leaves: the first fragment's verdict is remembered for the later ones, and
//!    a NEW connection is confirmed into the table with its binding (a full table drops the
//!    packet, `ct_full`; a binding that cannot be made drops it with the NAT reason).
//!
//! The caller applies the translation the judgement names ([`IpJudgement::nat`], with
//! [`crate::nat::rewrite`]) before the packet leaves. Like Linux, the nat table is judged once
//! per connection; INVALID and UNTRACKED packets are never translated.
//!
//! One [`Tables`] per worker, sized at start-up; nothing here allocates.

use crate::classify::walk::Marks;
use crate::classify::{ct, Action, LogSpec, PacketMeta, Wire};
use crate::conntrack::frag::{FragError, Fragments, HoldLimits, Whole};
use crate::conntrack::{self, zones, Conntrack, CtState, Dir, Handle};
use crate::filter::{ip_packet_meta, judge_rules_marked, Filter, FilterVerdict};
use crate::nat::rules::NatChoice;
use crate::nat::{Allocator, Binding, Manip, NatChain, NatError};
use crate::route::NextHop;
use crate::verdict::{DropReason, Verdict};
use crate::wire::{ip_proto, Family, FlowKey, Fragment, IpAddr128, PacketInfo};

#[cfg(test)]
mod connlimit_tests;
#[cfg(test)]
mod delete_tests;
#[cfg(test)]
mod tests;

const SEC: u64 = 1_000_000_000;

#[cfg(test)]
thread_local! {
    /// Packets [`established`] judged (tests check the fast path ran).
    static FAST_HITS: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
    /// Packets [`judge_lean`] answered alone.
    static LEAN_HITS: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
    /// Packets of translated connections [`judge_lean`] answered alone.
    static LEAN_NAT_HITS: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// Sizes and timeouts of one worker's state tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackConfig {
    pub conntrack: conntrack::Config,
    /// Datagrams the fragment table follows at once.
    pub frag_datagrams: u32,
    /// How long a datagram's fragments are awaited after its first (Linux's `ipfrag_time`).
    pub frag_timeout_ns: u64,
    /// Fragments held at most while their datagrams are incomplete.
    pub frag_held_fragments: u32,
    /// Bytes of fragments held at most (Linux's `ipfrag_high_thresh`).
    pub frag_held_bytes: u64,
    /// This worker's index (NAT allocates from the ports it owns).
    pub worker: u16,
    /// Seed of NAT's address hash and port offsets (the same on every worker).
    pub nat_seed: u64,
}

impl TrackConfig {
    /// The bounds of the fragments held for reassembly.
    pub fn hold_limits(&self) -> HoldLimits {
        HoldLimits {
            fragments: self.frag_held_fragments,
            bytes: self.frag_held_bytes,
            timeout_ns: self.frag_timeout_ns,
        }
    }

    /// Linux's defaults for a table of `capacity` connections.
    pub fn new(capacity: u32) -> TrackConfig {
        TrackConfig {
            conntrack: conntrack::Config::new(capacity),
            frag_datagrams: (capacity / 64).clamp(256, 65_536),
            frag_timeout_ns: 30 * SEC,
            frag_held_fragments: crate::conntrack::frag::HELD_FRAGMENTS,
            frag_held_bytes: crate::conntrack::frag::HELD_BYTES,
            worker: 0,
            nat_seed: 0x6e61_7420_7365_6564,
        }
    }
}

/// What virtual reassembly remembers of a datagram's first fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstFragment {
    /// The filter's verdict for the first fragment.
    pub filter: FilterVerdict,
    pub accepted: bool,
    pub state: CtState,
    /// Where the first fragment went, and the translation it got.
    pub route: Route,
    pub nat: Option<(Binding, Dir)>,
}

impl Default for FirstFragment {
    fn default() -> Self {
        FirstFragment {
            filter: FilterVerdict::Unfiltered,
            accepted: false,
            state: CtState::Invalid,
            route: Route::Unreachable,
            nat: None,
        }
    }
}

/// The routing decision for a packet after nat PREROUTING.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Out of `hop.port` (filter FORWARD).
    Forward(NextHop),
    /// To Rampart itself (router mode; filter INPUT).
    Local,
    /// No route: dropped, `no_route` (a router answers with an ICMP unreachable).
    Unreachable,
}

/// Where packets go: the bridge's port pairs or the router's tables.
pub trait Forwarding {
    /// The decision for a packet that arrived on `ingress` whose tuple, after nat
    /// PREROUTING, is `key`.
    fn route(&mut self, ingress: u16, key: &FlowKey) -> Route;
    /// The source address MASQUERADE gives a connection leaving by `port` with tuple `key`
    /// (Linux: the out interface's address); `None` when the port has none of its family.
    fn masquerade_source(&mut self, port: u16, key: &FlowKey) -> Option<IpAddr128>;
    /// The destination REDIRECT gives a connection that came in by `ingress` with tuple `key`
    /// (Linux's `nf_nat_redirect`: the in interface's primary address of the family); `None`
    /// when the port has none, and the packet is dropped, as Linux drops it (a bridge has no
    /// addresses).
    #[inline(always)]
    fn redirect_destination(&self, _ingress: u16, _key: &FlowKey) -> Option<IpAddr128> {
        None
    }
    /// What forwarding takes off the TTL (hop limit) before the FORWARD chain sees the packet
    /// (a router: 1, as Linux's `ip_forward` decrements before the hook; a bridge: 0). The
    /// frame is rewritten later; the FORWARD chain's `-m ttl`/`-m hl` see the value less this.
    const HOPS_TAKEN: u8 = 0;
    /// The IP MTU of `port`, for the mangle table's `TCPMSS --clamp-mss-to-pmtu` (a bridge's
    /// ports: Ethernet's 1500).
    #[inline(always)]
    fn port_mtu(&self, _port: u16) -> u32 {
        crate::router::DEFAULT_MTU
    }
    /// The MTU of the route back to `src` (a packet's source, as the chain sees it), which
    /// xt_TCPMSS's `tcpmss_reverse_mtu` looks up; `u32::MAX` when there is none. A bridge has
    /// no routes of its own (Linux's bridging host looks in its own table, which for a bridge
    /// without addresses holds none); br_netfilter's route is the bridge device, whose MTU is
    /// the smallest of its ports': the ingress port's MTU stands for it here.
    #[inline(always)]
    fn reverse_mtu(&self, _family: Family, _src: &IpAddr128, ingress: u16) -> u32 {
        self.port_mtu(ingress)
    }
    /// The checks a router makes before the FORWARD chain (TTL, MTU: Linux's `ip_forward`),
    /// on the packet as it arrived; an error drops it before the filter and conntrack's
    /// confirmation (the router sends its ICMP error itself).
    #[inline(always)]
    fn check(
        &mut self,
        _frame: &[u8],
        _info: &PacketInfo,
        _hop: &NextHop,
    ) -> Result<(), DropReason> {
        Ok(())
    }
}

/// A bridge: every packet leaves by the ingress port's peer; no port has an address.
#[derive(Clone, Copy, Debug)]
pub struct Bridged(pub u16);

impl Forwarding for Bridged {
    #[inline(always)]
    fn route(&mut self, _ingress: u16, _key: &FlowKey) -> Route {
        Route::Forward(NextHop {
            port: self.0 as u8,
            gateway: None,
        })
    }

    #[inline(always)]
    fn masquerade_source(&mut self, _port: u16, _key: &FlowKey) -> Option<IpAddr128> {
        None
    }
}

/// One worker's state: its connections and the datagrams being reassembled.
#[derive(Debug)]
pub struct Tables {
    pub ct: Conntrack,
    pub frags: Fragments<FirstFragment>,
    /// While the fragments of a whole datagram ([`crate::conntrack::frag::Reassembly`]) are
    /// judged: its length and checksum verdict. `None` otherwise: a fragment is then held.
    pub whole: Option<Whole>,
    /// The bounds of the fragments the worker holds for reassembly.
    pub hold: HoldLimits,
    /// NAT's tuple selection over this worker's ports.
    pub nat: Allocator,
}

impl Tables {
    /// Takes all the memory the tables will ever use.
    pub fn new(cfg: &TrackConfig) -> Tables {
        Tables {
            ct: Conntrack::new(cfg.conntrack),
            frags: Fragments::new(
                cfg.frag_datagrams,
                cfg.frag_timeout_ns,
                cfg.conntrack.hash_seed ^ 0x0f0f_1234_5678_9abc,
            ),
            whole: None,
            hold: cfg.hold_limits(),
            nat: Allocator::new(cfg.worker, cfg.nat_seed),
        }
    }

    /// Between bursts: retires at most `budget` expired connections.
    #[inline]
    pub fn expire(&mut self, now_ns: u64, budget: u32) -> u32 {
        self.ct.expire(now_ns, budget)
    }
}

/// Starts loading what conntrack will read for a burst of frames: every frame's index bucket,
/// then every entry those buckets point at, so that judging the burst one packet at a time
/// finds them in cache (a large table misses twice per packet otherwise); for the frames of no
/// connection, the free entries (and wheel links) their insertions would write. Frames that are
/// not IP, or that the straight-line parser leaves to the full one, are skipped. What the
/// parser found is left in `parsed` (by frame position), for judging without parsing again,
/// and what the pass learnt of each IP frame's tuple in `hints` (its index tag and the entry
/// the pass prefetched, [`conntrack::Hint`]: the judgement takes them instead of hashing the
/// tuple and probing the index again).
#[inline]
pub fn prefetch_burst<'a>(
    tables: &Tables,
    frames: impl Iterator<Item = &'a [u8]>,
    parsed: &mut [Option<PacketInfo>; crate::dpdk::MAX_BURST],
    hints: &mut [conntrack::Hint; crate::dpdk::MAX_BURST],
) {
    let mut tags = [0u32; crate::dpdk::MAX_BURST];
    let mut ok = [false; crate::dpdk::MAX_BURST];
    let mut n = 0;
    for (f, p) in frames.take(crate::dpdk::MAX_BURST).zip(parsed.iter_mut()) {
        crate::wire::parse::parse_common_into(f, p);
        n += 1;
    }
    // A separate pass: the parser stores each key field by field, and reading a key back whole
    // right after would wait for those stores (the store buffer cannot forward them).
    for ((p, t), o) in parsed[..n].iter().zip(&mut tags).zip(&mut ok) {
        if let Some(key) = p.as_ref().and_then(|i| i.flow.as_ref()) {
            *t = tables.ct.prefetch_index(key);
            *o = true;
        }
    }
    let mut misses = 0;
    for ((&t, &o), h) in tags.iter().zip(&ok).zip(hints.iter_mut()) {
        if o {
            let (hint, found) = tables.ct.prefetch_entry(t);
            *h = hint;
            if !found {
                misses += 1;
            }
        }
    }
    // Packets of no connection may be NEW ones: what their insertions will write.
    if misses != 0 {
        tables.ct.prefetch_free(misses);
    }
}

/// The stateful stage's answer for one IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpJudgement {
    pub verdict: Verdict,
    /// The filter's verdict (for a later fragment: its first fragment's).
    pub filter: FilterVerdict,
    /// The conntrack state the filter saw; `None` when the packet never reached conntrack (a
    /// fragment virtual reassembly refused, a raw-table DROP).
    pub state: Option<CtState>,
    /// What the filter looked at.
    pub meta: PacketMeta,
    /// Whether `filter` was decided for this packet (not inherited by a later fragment), so its
    /// rule is counted.
    pub judged: bool,
    /// `filter` is the raw table's verdict (a raw-table DROP): its rule indexes the raw rule set.
    pub raw: bool,
    /// `filter` is the INPUT chain's verdict (router mode, `route` is `Local`).
    pub input: bool,
    /// The routing decision (`Unreachable` when the packet never got that far).
    pub route: Route,
    /// The translation to apply before the packet leaves: `binding.translation(dir)`.
    pub nat: Option<(Binding, Dir)>,
}

impl IpJudgement {
    /// The filter verdict whose rule counts this packet in the filter's rule counters:
    /// `filter` when it was decided for this packet by the filter's own chains (not inherited
    /// by a later fragment, not the raw table's, not INPUT's), else `Unfiltered`.
    #[inline]
    pub fn counted(&self) -> FilterVerdict {
        if self.judged && !self.raw && !self.input {
            self.filter
        } else {
            FilterVerdict::Unfiltered
        }
    }

    /// A packet dropped before the filter (its verdict is the drop's).
    #[inline]
    fn early(verdict: Verdict, filter: FilterVerdict, meta: PacketMeta, raw: bool) -> Self {
        IpJudgement {
            verdict,
            filter,
            state: None,
            meta,
            judged: false,
            raw,
            input: false,
            route: Route::Unreachable,
            nat: None,
        }
    }
}

/// Cached verdict tags: the rule index, the ingress port above it (below 64), and above
/// that a bit saying the rule accepts, so that the commonest verdict is answered from the tag
/// without reading the rule (at 10K rules, a line of the rule array that is rarely in cache).
/// The tag is trusted only under the epoch of the rule set that made it, whose rules do not
/// change.
const TAG_PORT_SHIFT: u32 = 24;
const TAG_RULE_MASK: u32 = (1 << TAG_PORT_SHIFT) - 1;
const TAG_ACCEPT: u32 = 1 << 30;
const _: () = assert!(TAG_ACCEPT & (0x3f << TAG_PORT_SHIFT | conntrack::VERDICT_VALID) == 0);

/// The verdict cached in entry `id` for its packets travelling `dir` that arrive on
/// `ingress`, if it was given by rule set `rs` (its epoch).
#[inline(always)]
fn cached_verdict(
    rs: &crate::classify::RuleSet,
    tables: &Tables,
    id: conntrack::EntryId,
    dir: Dir,
    ingress: u16,
) -> Option<FilterVerdict> {
    verdict_of_tag(rs, tables.ct.verdict(id, dir, rs.epoch), ingress)
}

/// The top byte of a cached tag word (the tag with [`conntrack::VERDICT_VALID`]) that
/// accepts packets arriving on `ingress`: valid, accepting, and `ingress` in the port bits.
/// A port from 64 on gives a value above any byte, so no tag matches it (as
/// [`verdict_of_tag`] finds, and [`judge_established`] stores no tag for such a port).
#[inline(always)]
fn accepting_port(ingress: u16) -> u32 {
    const TOP: u32 = (conntrack::VERDICT_VALID | TAG_ACCEPT) >> TAG_PORT_SHIFT;
    // The flags are the byte's top two bits, the port its low six.
    const _: () = assert!(TOP == 0xc0 && TAG_PORT_SHIFT == 24);
    TOP + u32::from(ingress)
}

/// The verdict a cached tag (`tag`, when the entry has one under rule set `rs`) gives a
/// packet arriving on `ingress`.
#[inline(always)]
fn verdict_of_tag(
    rs: &crate::classify::RuleSet,
    tag: Option<u32>,
    ingress: u16,
) -> Option<FilterVerdict> {
    let tag = tag?;
    if (tag & !TAG_ACCEPT) >> TAG_PORT_SHIFT != u32::from(ingress) {
        return None;
    }
    let rule = tag & TAG_RULE_MASK;
    if tag & TAG_ACCEPT != 0 {
        return Some(FilterVerdict::Accept { rule });
    }
    let r = rs.rules.get(rule as usize)?;
    Some(match r.action {
        Action::Accept => FilterVerdict::Accept { rule },
        Action::Reject(with) => FilterVerdict::Reject { rule, with },
        _ => FilterVerdict::Drop { rule },
    })
}

/// The filter's verdict for an ESTABLISHED packet of a cacheable rule set: the one cached in
/// its entry for its direction and ingress port under this rule set, else the rule set's
/// (cached unless a LOG rule fired: every packet must be logged).
#[allow(clippy::too_many_arguments)]
#[inline]
fn judge_established(
    rs: &crate::classify::RuleSet,
    tables: &mut Tables,
    t: &conntrack::Tracked,
    meta: &PacketMeta,
    w: &Wire<'_>,
    ingress: u16,
    mark: &mut Marks,
    mut on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
) -> FilterVerdict {
    let Some(id) = t.entry() else {
        return judge_rules_marked(rs, meta, w, mark, on_log);
    };
    if let Some(fv) = cached_verdict(rs, tables, id, t.dir, ingress) {
        return fv;
    }
    let mut logged = false;
    let fv = judge_rules_marked(rs, meta, w, mark, |i, l, m| {
        logged = true;
        on_log(i, l, m)
    });
    if let Some(rule) = fv.rule() {
        if !logged && rule <= TAG_RULE_MASK && ingress < 64 {
            // The bit says what decoding the rule would say (`verdict_of_tag`).
            let accepts = rs.rules.get(rule as usize).map(|r| r.action) == Some(Action::Accept);
            let accept = if accepts { TAG_ACCEPT } else { 0 };
            let tag = rule | u32::from(ingress) << TAG_PORT_SHIFT | accept;
            tables.ct.set_verdict(id, t.dir, rs.epoch, tag);
        }
    }
    fv
}

/// The filter's verdict for a tracked packet under a rule set with connection matches
/// ([`crate::classify::ctmatch`]): the same as the general path's, with the connection's view
/// in the wire (out of line: other rule sets never come here).
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
fn judge_with_conn(
    rs: &crate::classify::RuleSet,
    tables: &mut Tables,
    t: &conntrack::Tracked,
    reply: Option<FlowKey>,
    meta: &PacketMeta,
    w: &Wire<'_>,
    ingress: u16,
    route: Route,
    mark: &mut Marks,
    on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
) -> FilterVerdict {
    let view = tables.ct.view(t, reply, w.now_ns);
    // `-m connlimit`: what the connection holds, and what the walk reserves (kept by the
    // table: tagged on the connection, or released after the packet's last stage).
    let counting = rs.counts_conns.then(|| tables.ct.counting(t));
    let w = Wire {
        conn: view.as_ref(),
        count: counting.as_ref(),
        ..*w
    };
    let fv = if rs.cacheable && t.state == CtState::Established && route != Route::Local {
        judge_established(rs, tables, t, meta, &w, ingress, mark, on_log)
    } else {
        judge_rules_marked(rs, meta, &w, mark, on_log)
    };
    if let Some(c) = &counting {
        tables.ct.keep_counts(t, c);
    }
    fv
}

/// A nat chain's decision for a connection's first packet. A chain without rules (its policy
/// alone: a catch-all ACCEPT that translates nothing, as PREROUTING is on a gateway without
/// DNAT) keeps the tuple without being evaluated.
/// `mark` is the packet's mark in its walk ([`crate::classify::walk`]), changed by the chain's
/// MARK rules.
#[inline]
fn decide<'a>(chain: &'a NatChain, meta: &PacketMeta, mark: &mut Marks) -> NatChoice<'a> {
    if chain.keeps_all() {
        return NatChoice::Keep;
    }
    chain.choose_marked(meta, mark)
}

/// The tuple nat PREROUTING gives a packet travelling `dir` in a connection with binding `b`:
/// the destination side translated, the source side as on the wire (Linux's FORWARD view).
/// An ICMP error (`related`) gets its address only; an ICMP query keeps its identifier.
#[inline]
fn prerouted(key: FlowKey, b: &Binding, dir: Dir, related: bool) -> FlowKey {
    // The translated tuple (`b.translation(dir).1`) is the reverse of the other direction's
    // wire tuple: its destination is that tuple's source, read where it lies.
    let other = match dir {
        Dir::Orig => &b.reply,
        Dir::Reply => &b.orig,
    };
    prerouted_by(key, other, related)
}

/// [`prerouted`] given the wire tuple of the connection's other direction (`other`): the
/// packet's destination side becomes that tuple's source side.
#[inline(always)]
fn prerouted_by(key: FlowKey, other: &FlowKey, related: bool) -> FlowKey {
    let mut k = key;
    k.dst = other.src;
    if !related && matches!(key.proto, ip_proto::TCP | ip_proto::UDP) {
        k.dst_port = other.src_port;
    }
    k
}

/// Judges one IP packet (`key` is `info.flow`) that arrived on `ingress`, through the stages
/// of the module docs; `fwd` routes it. `on_log` as in [`Filter::judge`].
///
/// The commonest packet, an ESTABLISHED one whose connection has a verdict cached for its
/// direction under the rule set in force, takes a shorter path ([`established`]) that gives
/// the same judgement: a property test compares the two.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn judge_tracked<F: Forwarding>(
    filter: &Filter,
    tables: &mut Tables,
    frame: &mut [u8],
    info: &PacketInfo,
    key: FlowKey,
    ingress: u16,
    fwd: &mut F,
    now_ns: u64,
    on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
) -> IpJudgement {
    judge_tracked_by::<F, true>(
        filter, tables, frame, info, key, None, ingress, fwd, now_ns, on_log,
    )
}

/// [`judge_tracked`], with the fast path for established packets (`FAST`) or without it;
/// `tag`, when known, is `key`'s index tag ([`Conntrack::track_tagged`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn judge_tracked_by<F: Forwarding, const FAST: bool>(
    filter: &Filter,
    tables: &mut Tables,
    frame: &mut [u8],
    info: &PacketInfo,
    key: FlowKey,
    tag: Option<u32>,
    ingress: u16,
    fwd: &mut F,
    now_ns: u64,
    on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
) -> IpJudgement {
    // Neither a fragment nor a raw table: conntrack comes first (stages 1 and 2 have nothing
    // to do), and an ESTABLISHED packet with a cached verdict is done without the rest.
    if FAST && matches!(info.frag, Fragment::None) && filter.raw(key.family).is_none() {
        let t = tables.ct.track_tagged(frame, info, tag, now_ns);
        return judge_tracked_first(
            filter, tables, frame, info, key, ingress, fwd, now_ns, on_log, t, None,
        );
    }

    let mut meta = ip_packet_meta(frame, key, info.frag, info.l4_offset, ingress, 0);

    // 1. Reassembly: a fragment is held until its datagram is whole, then the datagram is
    //    judged from its first fragment and the others take that verdict.
    if !matches!(info.frag, Fragment::None) && tables.whole.is_none() {
        return IpJudgement::early(
            Verdict::Drop(DropReason::Fragment(FragError::Incomplete)),
            FilterVerdict::Unfiltered,
            meta,
            false,
        );
    }
    if meta.later_fragment {
        return match tables.frags.later(frame, info, now_ns) {
            Ok(first) => {
                meta.ct_state = first.state.bit();
                if first
                    .nat
                    .as_ref()
                    .is_some_and(|(b, _)| b.translates_destination())
                {
                    meta.ct_state = ct::dnat(meta.ct_state);
                }
                if let Route::Forward(h) = first.route {
                    meta.out_port = h.port;
                }
                IpJudgement {
                    verdict: match (first.accepted, first.route) {
                        (true, Route::Forward(h)) => Verdict::Forward(u16::from(h.port)),
                        (true, Route::Local) => Verdict::Local,
                        (true, Route::Unreachable) => Verdict::Drop(DropReason::NoRoute),
                        (false, _) => Verdict::Drop(DropReason::RuleDrop),
                    },
                    filter: first.filter,
                    state: Some(first.state),
                    meta,
                    judged: false,
                    raw: false,
                    input: first.route == Route::Local,
                    route: first.route,
                    nat: first.nat.filter(|_| first.accepted),
                }
            }
            Err(e) => IpJudgement::early(
                Verdict::Drop(DropReason::Fragment(e)),
                FilterVerdict::Unfiltered,
                meta,
                false,
            ),
        };
    }

    // 2. raw PREROUTING (before conntrack: the packet has no state yet, which
    //    `--ctstate` sees as INVALID, as in Linux).
    //    The first NOTRACK or CT rule passed leaves the packet's conntrack template: untracked,
    //    or the zone it is tracked in (`CT --zone`; `--zone mark` takes the packet's mark as
    //    conntrack sees it, after the raw table).
    let mut template = 0;
    let mut raw_mark = Marks::default();
    if let Some(raw) = filter.raw(key.family) {
        let raw_meta = PacketMeta {
            ct_state: ct::INVALID,
            ..meta
        };
        let wire = Wire {
            whole_len: whole_len(tables, frame, info),
            ..Wire::of(frame, info, now_ns)
        };
        let j = raw.judge_marked(&raw_meta, &wire, &mut raw_mark, |_, _, _| {});
        if !matches!(j.action, Action::Accept) {
            return IpJudgement::early(
                Verdict::Drop(DropReason::RuleDrop),
                FilterVerdict::Drop { rule: j.rule },
                meta,
                true,
            );
        }
        template = j.ct;
    }
    let notrack = zones::template_notrack(template);
    let zone = zones::template_zone(template, raw_mark.packet);

    // 3. Conntrack. A whole datagram whose L4 checksum (over every fragment) is wrong is
    //    INVALID, as nf_conntrack_checksum has it. In the packet's zone until its judgement
    //    is done (its lookup, a RELATED error's, its confirmation, NAT's port choice).
    if zone.is_set() {
        tables.ct.set_zone(zone);
    }
    let tracked = (!notrack).then(|| {
        if !matches!(info.frag, Fragment::None) {
            track_whole(tables, frame, info, tag, now_ns)
        } else {
            tables.ct.track_tagged(frame, info, tag, now_ns)
        }
    });
    let j = judge_after_track::<F, _, false>(
        filter, tables, frame, info, key, ingress, fwd, now_ns, on_log, meta, tracked, None,
    );
    if zone.is_set() {
        tables.ct.set_zone(zones::Zone::DEFAULT);
    }
    j
}

/// The length `-m length` sees: a whole datagram's when its first fragment is judged (0:
/// the packet's own). Non-zero also makes the walks step over an IPv6 Fragment header, as
/// nf_defrag_ipv6 took it out ([`Wire::whole_len`]).
#[inline(always)]
fn whole_len(tables: &Tables, frame: &[u8], info: &PacketInfo) -> u16 {
    if matches!(info.frag, Fragment::None) {
        // Only an IPv6 packet with extension headers can be an atomic fragment.
        if usize::from(info.l4_offset) > usize::from(info.l3_offset) + 40 {
            return atomic_len(frame, info);
        }
        return 0;
    }
    tables.whole.map_or(0, |w| w.len as u16)
}

/// An IPv6 atomic fragment (a Fragment header of offset 0 with M clear, RFC 6946): Linux's
/// nf_defrag_ipv6 queues it like any fragment (`nf_ct_frag6_gather` has no case for it) and
/// makes a datagram of it alone, without the Fragment header, before the raw table: its
/// length without the header's 8 bytes. 0 for any other packet.
#[cold]
#[inline(never)]
fn atomic_len(frame: &[u8], info: &PacketInfo) -> u16 {
    if info.flow.map(|k| k.family) != Some(Family::V6) {
        return 0;
    }
    let Some(ip) = frame.get(usize::from(info.l3_offset)..info.l3_end()) else {
        return 0;
    };
    let Some((_, at)) = crate::conntrack::frag::v6_fragment_header(ip) else {
        return 0;
    };
    match ip.get(at + 2..at + 4) {
        Some(&[hi, lo]) if u16::from_be_bytes([hi, lo]) & 0xfff9 == 0 => {
            info.l3_len.saturating_sub(8)
        }
        _ => 0,
    }
}

/// Tracks the first fragment of a whole datagram: INVALID for a bad checksum over all its
/// fragments, else with the whole L4 length (`tables.whole`: the datagram's length, from which
/// the IP and extension headers go, and for IPv6 not the Fragment header, which it leaves
/// out).
#[cold]
#[inline(never)]
fn track_whole(
    tables: &mut Tables,
    frame: &[u8],
    info: &PacketInfo,
    tag: Option<u32>,
    now_ns: u64,
) -> conntrack::Tracked {
    if whole_bad_checksum(tables) {
        return tables.ct.bad_checksum();
    }
    let Some(w) = tables.whole else {
        return tables.ct.track_tagged(frame, info, tag, now_ns);
    };
    let headers = u32::from(info.l4_offset.saturating_sub(info.l3_offset));
    let headers = match info.flow.map(|k| k.family) {
        Some(Family::V6) => headers.saturating_sub(8),
        _ => headers,
    };
    let l4_len = if info.l4_offset == 0 {
        0
    } else {
        w.len.saturating_sub(headers)
    };
    tables.ct.track_whole(frame, info, tag, l4_len, now_ns)
}

/// Whether the whole datagram being judged has a bad L4 checksum that conntrack checks.
#[cold]
#[inline(never)]
fn whole_bad_checksum(tables: &Tables) -> bool {
    tables
        .whole
        .is_some_and(|w| !w.csum_ok && tables.ct.config().checksum)
}

/// The fast path's judgement of an ESTABLISHED packet of entry `id` travelling `dir` (already
/// tracked): the verdict cached in the entry for its direction and ingress port under the
/// rule set in force, the connection's binding, the route. The same judgement as the general
/// path's (stages 4 to 8 have nothing else to do for such a packet: no nat chain, no
/// confirmation, no fragment). `Err` when the verdict is not cached or the packet does not
/// leave by a port, with the routing decision when it was taken (the general path then
/// continues from there and does not route again).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn established<F: Forwarding>(
    filter: &Filter,
    tables: &Tables,
    frame: &[u8],
    info: &PacketInfo,
    key: FlowKey,
    ingress: u16,
    fwd: &mut F,
    id: conntrack::EntryId,
    dir: Dir,
) -> Result<IpJudgement, Option<Route>> {
    let Some(rs) = filter.rules(key.family).filter(|rs| rs.cacheable) else {
        return Err(None);
    };
    let Some(fv) = cached_verdict(rs, tables, id, dir, ingress) else {
        return Err(None);
    };
    // 4. The connection's binding translates the destination side (most have none: the
    //    binding is only read for those that do).
    let mut binding = None;
    let mut k = key;
    if tables.ct.has_binding(id) {
        let b = tables.ct.binding(id).map(|b| (b, dir));
        if let Some((b, d)) = &b {
            k = prerouted(key, b, *d, false);
        }
        binding = b;
    }
    // 5. The route (the cache holds for packets that leave by a port: FORWARD).
    let route = fwd.route(ingress, &k);
    let Route::Forward(h) = route else {
        return Err(Some(route));
    };
    let mut meta = ip_packet_meta(
        frame,
        key,
        info.frag,
        info.l4_offset,
        ingress,
        u16::from(h.port),
    );
    meta.key = k;
    meta.ct_state = match &binding {
        Some((b, _)) if b.translates_destination() => ct::ESTABLISHED_DNAT,
        _ => ct::ESTABLISHED,
    };
    if let Err(why) = fwd.check(frame, info, &h) {
        let mut j = IpJudgement::early(Verdict::Drop(why), FilterVerdict::Unfiltered, meta, false);
        j.state = Some(CtState::Established);
        j.route = route;
        return Ok(j);
    }
    // 6. The cached verdict.
    let verdict = match fv {
        FilterVerdict::Drop { .. } => Verdict::Drop(DropReason::RuleDrop),
        FilterVerdict::Reject { .. } => Verdict::Drop(DropReason::RuleReject),
        _ => Verdict::Forward(u16::from(h.port)),
    };
    let leaves = !matches!(verdict, Verdict::Drop(_));
    // An entry keeps a binding only when it translates something (the table stores a reply
    // tuple only when it is not the inverse of the original), so none read here is the
    // identity, and the packet takes it as it is.
    debug_assert!(!matches!(binding, Some((b, _)) if b.is_identity()));
    let nat = if leaves { binding } else { None };
    Ok(IpJudgement {
        verdict,
        filter: fv,
        state: Some(CtState::Established),
        meta,
        judged: true,
        raw: false,
        input: false,
        route,
        nat,
    })
}

/// The worker's answer for an ESTABLISHED packet whose verdict is cached ([`judge_lean`]):
/// what [`judge_tracked`]'s judgement says of it, without the rest of the judgement (the
/// filter's view of the packet, the route, the state, the 80-byte binding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lean {
    pub verdict: Verdict,
    /// The filter's verdict whose rule counts the packet: the cached one, or `Unfiltered`
    /// when the packet was dropped before the filter (a router's checks).
    pub filter: FilterVerdict,
    /// For a packet of a translated connection that leaves: its entry and direction, whose
    /// translation the caller applies ([`crate::pipeline::lean_translate`], which reads the
    /// translated tuple from the table); `None` when nothing is rewritten.
    pub nat: Option<(conntrack::EntryId, Dir)>,
}

/// Where [`judge_lean`] stopped, for [`judge_resumed`] to go on from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume(Resumed);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resumed {
    /// Nothing done: the whole judgement (with the tuple's index tag, when the hint knew it).
    Untouched(Option<u32>),
    /// Tracked as ESTABLISHED in entry `id` travelling `dir`, nothing else done.
    Established(conntrack::EntryId, Dir),
    /// Tracked, and routed to `route`, which is not out of a port.
    Routed(conntrack::EntryId, Dir, Route),
}

/// The worker's lean path: for the commonest packet, an ESTABLISHED one whose verdict is
/// cached for its direction and ingress port under the rule set in force (of a translated
/// connection or not: a binding is named by the entry and direction, not read whole),
/// tracked on [`Conntrack::track_established`]'s lean path, its answer as [`Lean`] (no
/// judgement is built). `hint` is what the prefetch pass learnt of `key`
/// ([`conntrack::Hint`]; [`Conntrack::hint_of`] without one). Any other packet gets `Err`, with what was done, and
/// [`judge_resumed`] gives its judgement. Together they decide as [`judge_tracked`] does (a
/// property test holds them to it): same verdict, counted rule, translation and tables.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn judge_lean<F: Forwarding>(
    filter: &Filter,
    tables: &mut Tables,
    frame: &[u8],
    info: &PacketInfo,
    key: &FlowKey,
    hint: conntrack::Hint,
    ingress: u16,
    fwd: &mut F,
    now_ns: u64,
) -> Result<Lean, Resume> {
    // Stages 1 and 2 have nothing to do for a packet that is not a fragment when there is no
    // raw table (`track_established` takes no fragment).
    if filter.raw(key.family).is_some() {
        return Err(Resume(Resumed::Untouched(hint.known_tag())));
    }
    let Some(found) = tables.ct.track_established(frame, info, key, hint, now_ns) else {
        return Err(Resume(Resumed::Untouched(hint.known_tag())));
    };
    let (id, dir) = (found.id, found.dir);
    let resume = Err(Resume(Resumed::Established(id, dir)));
    let Some(rs) = filter.rules(key.family).filter(|rs| rs.cacheable) else {
        return resume;
    };
    // An accepting tag for this port, under this rule set, is told by its top byte alone
    // (valid, accept, the port: `accepting_port`); any other goes through `verdict_of_tag`.
    let word = found.verdict_word(rs.epoch);
    let fv = if word >> TAG_PORT_SHIFT == accepting_port(ingress) {
        FilterVerdict::Accept {
            rule: word & TAG_RULE_MASK,
        }
    } else {
        let Some(fv) = verdict_of_tag(rs, found.verdict(rs.epoch), ingress) else {
            return resume;
        };
        fv
    };
    // 4 and 5. The route: on the tuple as on the wire without a binding, else with the
    // destination side translated (as `established` reads it from the whole binding).
    let route = if found.nat {
        let other = tables.ct.nat_other(id, dir);
        fwd.route(ingress, &prerouted_by(*key, &other, false))
    } else {
        fwd.route(ingress, key)
    };
    let Route::Forward(h) = route else {
        return Err(Resume(Resumed::Routed(id, dir, route)));
    };
    if let Err(why) = fwd.check(frame, info, &h) {
        return Ok(Lean {
            verdict: Verdict::Drop(why),
            filter: FilterVerdict::Unfiltered,
            nat: None,
        });
    }
    #[cfg(test)]
    LEAN_HITS.with(|h| h.set(h.get() + 1));
    #[cfg(test)]
    if found.nat {
        LEAN_NAT_HITS.with(|h| h.set(h.get() + 1));
    }
    // 6. The cached verdict; a packet that leaves takes its connection's translation. (An
    // accepting tag's verdict is known from the tag: tested first, its answer needs no match.)
    let (verdict, leaves) = match fv {
        FilterVerdict::Accept { .. } => (Verdict::Forward(u16::from(h.port)), true),
        FilterVerdict::Drop { .. } => (Verdict::Drop(DropReason::RuleDrop), false),
        FilterVerdict::Reject { .. } => (Verdict::Drop(DropReason::RuleReject), false),
        FilterVerdict::Unfiltered => (Verdict::Forward(u16::from(h.port)), true),
    };
    Ok(Lean {
        verdict,
        filter: fv,
        nat: (leaves && found.nat).then_some((id, dir)),
    })
}

/// The judgement of a packet [`judge_lean`] left, from where it stopped. Out of line: the
/// lean path's caller then keeps few values live.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub fn judge_resumed<F: Forwarding>(
    filter: &Filter,
    tables: &mut Tables,
    frame: &mut [u8],
    info: &PacketInfo,
    key: FlowKey,
    ingress: u16,
    fwd: &mut F,
    now_ns: u64,
    on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    resume: Resume,
) -> IpJudgement {
    let (id, dir, route) = match resume.0 {
        Resumed::Untouched(tag) => {
            return judge_tracked_by::<F, true>(
                filter, tables, frame, info, key, tag, ingress, fwd, now_ns, on_log,
            )
        }
        Resumed::Established(id, dir) => (id, dir, None),
        Resumed::Routed(id, dir, r) => (id, dir, Some(r)),
    };
    let t = conntrack::Tracked {
        state: CtState::Established,
        dir,
        handle: Handle::Entry(id),
        invalid: None,
    };
    judge_tracked_first(
        filter, tables, frame, info, key, ingress, fwd, now_ns, on_log, t, route,
    )
}

/// The judgement of a packet conntrack has tracked (`t`) before anything else (neither a
/// fragment nor a raw table): an ESTABLISHED one on [`established`]'s fast path unless it was
/// already routed (`route`, which that path would have answered), the rest of the stages
/// otherwise.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn judge_tracked_first<F: Forwarding>(
    filter: &Filter,
    tables: &mut Tables,
    frame: &mut [u8],
    info: &PacketInfo,
    key: FlowKey,
    ingress: u16,
    fwd: &mut F,
    now_ns: u64,
    on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    t: conntrack::Tracked,
    mut route: Option<Route>,
) -> IpJudgement {
    if let (None, CtState::Established, Handle::Entry(id)) = (route, t.state, t.handle) {
        match established(filter, tables, frame, info, key, ingress, fwd, id, t.dir) {
            Ok(j) => {
                #[cfg(test)]
                FAST_HITS.with(|h| h.set(h.get() + 1));
                return j;
            }
            Err(r) => route = r,
        }
    }
    let meta = ip_packet_meta(frame, key, info.frag, info.l4_offset, ingress, 0);
    judge_after_track::<F, _, false>(
        filter,
        tables,
        frame,
        info,
        key,
        ingress,
        fwd,
        now_ns,
        on_log,
        meta,
        Some(t),
        route,
    )
}

/// Stage 7 for an accepted new connection that leaves by `h`: nat POSTROUTING (SNAT,
/// MASQUERADE) on top of binding `b` (changed in place: it is 80 bytes, and moved around by
/// value it costs more than the rest), then the check that the finished binding's replies
/// steer here. `identity`: `b` is known to be the identity (PREROUTING kept the tuple).
/// `Ok((tag, translates))`: `tag` when the source translation's uniqueness probe
/// computed the index tag of the binding's reply tuple (its insertion reuses it), and whether
/// the finished binding translates anything (`!b.is_identity()`, worked out once here).
/// `Err(None)`: the chain did not end (drop); `Err(Some(e))`: no binding could be made. Out
/// of line: it runs once per connection, and inlined it lengthens the path every packet
/// takes.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn postrouting<F: Forwarding>(
    nat: &crate::nat::NatTables,
    tables: &mut Tables,
    fwd: &mut F,
    b: &mut Binding,
    identity: bool,
    meta: &PacketMeta,
    h: NextHop,
    now_ns: u64,
    mut mark: Marks,
) -> Result<(Option<u32>, bool), Option<NatError>> {
    let rules = nat
        .rules(meta.key.family)
        .expect("fresh bindings come from it");
    // Whether the source translation saw its reply tuple steer here already.
    let mut here = false;
    let mut dropped = false;
    let mut reply_tag = None;
    // Whether `b` translates, when known without comparing its tuples.
    let mut translates = identity.then_some(false);
    match decide(&rules.postrouting, meta, &mut mark) {
        NatChoice::Keep => {}
        NatChoice::Translate(target, range) => {
            // Only MASQUERADE asks for the out port's address, and NETMAP maps the source
            // (as it arrived: only a DNAT precedes); the others' range is as prepared with
            // the chain (borrowed, not copied).
            let masquerade;
            let range = match target.kind {
                crate::nat::NatKind::Masquerade => {
                    let src = fwd.masquerade_source(u16::from(h.port), &meta.key);
                    let a = src.ok_or(Some(NatError::NoAddress))?;
                    masquerade = range.to_addr(a, meta.key.family);
                    &masquerade
                }
                crate::nat::NatKind::Netmap => {
                    masquerade = range.netmap(&meta.key.src);
                    &masquerade
                }
                _ => range,
            };
            let ct = &tables.ct;
            // The last tuple probed is the binding's reply tuple (`apply_prepared`'s promise).
            let mut tag = 0;
            let changed;
            (here, changed) = tables
                .nat
                .apply_prepared(b, Manip::Src, range, &nat.steering, &mut |k| {
                    tag = ct.tag_of(k);
                    ct.tuple_in_use_tagged(k, tag, now_ns)
                })
                .map_err(Some)?;
            reply_tag = Some(tag);
            if changed {
                translates = Some(true);
            }
        }
        NatChoice::Drop => dropped = true,
    }
    let translates = translates.unwrap_or_else(|| !b.is_identity());
    debug_assert_eq!(translates, !b.is_identity());
    // A binding PREROUTING made must steer here even when the chain drops (the drop is then
    // counted as the binding's).
    // The 80-byte binding is copied for the check only when the choice did not see it steer
    // here already.
    if translates && !here {
        tables.nat.steerable(*b, &nat.steering).map_err(Some)?;
    }
    debug_assert!(!translates || tables.nat.steerable(*b, &nat.steering).is_ok());
    if dropped {
        return Err(None);
    }
    Ok((reply_tag, translates))
}

/// Walks mangle chain `c` for a packet whose view is `meta` (`out`: the port it leaves by,
/// once routed; `hops`: what forwarding has taken off its TTL), editing `frame` and changing
/// `mark`; `false` when the chain drops it. Out of line: a set without mangle never calls it.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn mangle_chain<F: Forwarding>(
    c: &crate::mangle::MangleChain,
    meta: &PacketMeta,
    frame: &mut [u8],
    info: &PacketInfo,
    whole_len: u16,
    fwd: &F,
    ingress: u16,
    out: Option<u16>,
    hops: u8,
    now_ns: u64,
    mark: &mut Marks,
) -> bool {
    let mtu = if c.clamps {
        let back = fwd.reverse_mtu(meta.key.family, &meta.key.src, ingress);
        out.map_or(back, |o| fwd.port_mtu(o).min(back))
    } else {
        0
    };
    let cx = crate::mangle::EditCtx {
        family: meta.key.family,
        l3: info.l3_offset,
        l4: info.l4_offset,
        later_fragment: meta.later_fragment,
        hops_taken: hops,
        whole_len,
        mtu,
    };
    c.walk(meta, frame, &cx, now_ns, mark).is_ok()
}

/// [`judge_after_track`] for a filter whose tables read or change connection marks: out of
/// line and cold, so that the instance every other filter runs carries none of it.
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
fn judge_after_track_marked<F: Forwarding, L: FnMut(u32, &LogSpec, &PacketMeta)>(
    filter: &Filter,
    tables: &mut Tables,
    frame: &mut [u8],
    info: &PacketInfo,
    key: FlowKey,
    ingress: u16,
    fwd: &mut F,
    now_ns: u64,
    on_log: L,
    meta: PacketMeta,
    tracked: Option<conntrack::Tracked>,
    route: Option<Route>,
) -> IpJudgement {
    judge_after_track::<F, L, true>(
        filter, tables, frame, info, key, ingress, fwd, now_ns, on_log, meta, tracked, route,
    )
}

/// The connection's mark as a packet's walk starts with it: its entry's, 0 for a NEW
/// connection, the killed entry's for the RST that killed it (Linux's packet keeps its
/// connection), none for a packet without a connection (INVALID, UNTRACKED). Out of line:
/// only filters whose tables have `-m connmark` or CONNMARK call it.
#[cold]
#[inline(never)]
fn conn_mark_of(tables: &mut Tables, tracked: &Option<conntrack::Tracked>) -> Marks {
    let Some(t) = tracked else {
        return Marks::default();
    };
    let conn = match t.handle {
        Handle::Entry(id) => tables.ct.mark(id),
        Handle::New(_) => 0,
        Handle::None if t.state != CtState::Invalid => tables.ct.take_killed_mark().unwrap_or(0),
        Handle::None => return Marks::default(),
    };
    Marks {
        packet: 0,
        conn,
        has_conn: true,
    }
}

/// Stores the mark an existing connection's walk changed (a NEW one's is taken at its
/// confirmation).
#[cold]
#[inline(never)]
fn store_conn_mark(tables: &mut Tables, tracked: &Option<conntrack::Tracked>, conn: u32) {
    if let Some(t) = tracked {
        if let (Handle::Entry(id), false) = (t.handle, t.state == CtState::New) {
            tables.ct.set_mark(id, conn);
        }
    }
}

/// The judgement of a packet dropped for `why` after conntrack gave it `state` (and, when
/// known, its route), before the filter: a mangle chain's DROP, a NAT choice or failure, no
/// route, the forwarding check.
#[cold]
#[inline(never)]
fn dropped_after_track(
    why: DropReason,
    meta: PacketMeta,
    state: CtState,
    route: Option<Route>,
) -> IpJudgement {
    let mut j = IpJudgement::early(Verdict::Drop(why), FilterVerdict::Unfiltered, meta, false);
    j.state = Some(state);
    if let Some(r) = route {
        j.route = r;
    }
    j
}

/// Stages 3 (the state) to 8 of [`judge_tracked`] for a packet conntrack has seen (`tracked`;
/// `None` when the raw table said NOTRACK). `route`: the routing decision, when the fast path
/// took it already.
/// `MARKS`: the filter's tables read or change connection marks ([`Filter::conn_marks`]),
/// and this is the instance that loads and stores them ([`judge_after_track_marked`], out of
/// line; the other instance sends such filters there).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn judge_after_track<F: Forwarding, L: FnMut(u32, &LogSpec, &PacketMeta), const MARKS: bool>(
    filter: &Filter,
    tables: &mut Tables,
    frame: &mut [u8],
    info: &PacketInfo,
    key: FlowKey,
    ingress: u16,
    fwd: &mut F,
    now_ns: u64,
    on_log: L,
    mut meta: PacketMeta,
    mut tracked: Option<conntrack::Tracked>,
    route: Option<Route>,
) -> IpJudgement {
    if !MARKS && filter.conn_marks {
        return judge_after_track_marked(
            filter, tables, frame, info, key, ingress, fwd, now_ns, on_log, meta, tracked, route,
        );
    }
    let state = tracked.map_or(CtState::Untracked, |t| t.state);
    meta.ct_state = state.bit();
    // The packet's mark in its walk: 0 on arrival; mangle PREROUTING and a new connection's
    // nat PREROUTING may change it for the filter and POSTROUTING. The connection's mark
    // beside it only for a filter whose tables read or change it.
    let mut mark = Marks::default();
    if MARKS {
        mark = conn_mark_of(tables, &tracked);
    }
    let conn_mark = mark.conn;
    // An existing connection keeps a mark its walk changed even when the packet is dropped
    // after (Linux writes `ct->mark` in place).
    macro_rules! keep_conn_mark {
        () => {
            if MARKS && mark.conn != conn_mark {
                store_conn_mark(tables, &tracked, mark.conn);
            }
        };
    }
    let mangle = filter.mangle(key.family);
    // The whole datagram's length for a first fragment (`-m length`, `-m quota`), read by
    // every table's walk.
    let whole = whole_len(tables, frame, info);

    // mangle PREROUTING (after conntrack, before nat PREROUTING).
    if let Some(c) = mangle.and_then(|m| m.prerouting.as_ref()) {
        if !mangle_chain(
            c, &meta, frame, info, whole, &*fwd, ingress, None, 0, now_ns, &mut mark,
        ) {
            keep_conn_mark!();
            return dropped_after_track(DropReason::RuleDrop, meta, state, None);
        }
    }

    // 4. nat PREROUTING: a known connection's binding, or a NEW one's DNAT.
    let nat = filter.nat.as_deref();
    let mut binding: Option<(Binding, Dir)> = None;
    let mut fresh = false;
    // A fresh binding PREROUTING kept as it was: the identity, which changes no tuple.
    let mut kept = false;
    if let Some(t) = &tracked {
        match t.handle {
            Handle::Entry(id) => binding = tables.ct.binding(id).map(|b| (b, t.dir)),
            Handle::New(_) => {
                if let Some(rules) = nat.and_then(|n| n.rules(key.family)) {
                    fresh = true;
                    let d = decide(&rules.prerouting, &meta, &mut mark);
                    // Made where it stays (80 bytes: each move of it costs).
                    let b = Binding::identity_in(&mut binding, key);
                    match d {
                        NatChoice::Keep => kept = true,
                        NatChoice::Translate(target, range) => {
                            let ct = &tables.ct;
                            let steering = &nat.expect("rules come from it").steering;
                            // MASQUERADE has no address without a port (never in
                            // PREROUTING: the compiler refuses it there). NETMAP and
                            // REDIRECT make their one address from the packet.
                            let mapped;
                            let range = match target.kind {
                                crate::nat::NatKind::Netmap => {
                                    mapped = range.netmap(&key.dst);
                                    Some(&mapped)
                                }
                                crate::nat::NatKind::Redirect => {
                                    match fwd.redirect_destination(ingress, &key) {
                                        Some(a) => {
                                            mapped = range.to_addr(a, key.family);
                                            Some(&mapped)
                                        }
                                        None => None,
                                    }
                                }
                                crate::nat::NatKind::Masquerade => None,
                                _ => Some(range),
                            };
                            let applied = match range {
                                None => Err(NatError::NoAddress),
                                Some(range) => tables.nat.apply_prepared(
                                    b,
                                    Manip::Dst,
                                    range,
                                    steering,
                                    &mut |k| ct.tuple_in_use(k, now_ns),
                                ),
                            };
                            if let Err(e) = applied {
                                return dropped_after_track(DropReason::Nat(e), meta, state, None);
                            }
                        }
                        NatChoice::Drop => {
                            return dropped_after_track(DropReason::RuleDrop, meta, state, None);
                        }
                    }
                }
            }
            // A RST that killed its entry is still translated by the entry's binding.
            Handle::None if t.state != CtState::Invalid => {
                binding = tables.ct.take_killed(&key).map(|b| (b, t.dir));
            }
            Handle::None => {}
        }
    }
    if let (Some((b, dir)), false) = (&binding, kept) {
        meta.key = prerouted(key, b, *dir, state == CtState::Related);
        // `--ctstate DNAT`: the state's twin for a connection whose destination is translated.
        if b.translates_destination() {
            meta.ct_state = ct::dnat(meta.ct_state);
        }
    }

    // 5. The routing decision on the translated destination.
    let route = match route {
        Some(r) => r,
        None => fwd.route(ingress, &meta.key),
    };
    let rules = match route {
        Route::Forward(h) => {
            meta.out_port = h.port;
            if let Err(why) = fwd.check(frame, info, &h) {
                keep_conn_mark!();
                return dropped_after_track(why, meta, state, Some(route));
            }
            filter.rules(key.family)
        }
        Route::Local => filter.input(key.family),
        Route::Unreachable => {
            keep_conn_mark!();
            return dropped_after_track(DropReason::NoRoute, meta, state, None);
        }
    };

    // mangle FORWARD (before the filter's FORWARD) or INPUT.
    if let Some(m) = mangle {
        let (chain, out, hops) = match route {
            Route::Forward(h) => (m.forward.as_ref(), Some(u16::from(h.port)), F::HOPS_TAKEN),
            _ => (m.input.as_ref(), None, 0),
        };
        if let Some(c) = chain {
            if !mangle_chain(
                c, &meta, frame, info, whole, &*fwd, ingress, out, hops, now_ns, &mut mark,
            ) {
                keep_conn_mark!();
                return dropped_after_track(DropReason::RuleDrop, meta, state, Some(route));
            }
        }
    }

    // 6. The filter: an established connection's verdict comes from its entry while the rule
    //    set is the one that gave it.
    let wire = Wire {
        hops_taken: if route == Route::Local {
            0
        } else {
            F::HOPS_TAKEN
        },
        whole_len: whole,
        ..Wire::of(frame, info, now_ns)
    };
    let fv = match (rules, tracked) {
        // A rule set with connection matches: judged with the connection's view.
        (Some(rs), Some(t)) if rs.reads_conn => {
            let reply = binding.as_ref().map(|(b, _)| b.reply);
            judge_with_conn(
                rs, tables, &t, reply, &meta, &wire, ingress, route, &mut mark, on_log,
            )
        }
        (Some(rs), Some(t))
            if rs.cacheable && t.state == CtState::Established && route != Route::Local =>
        {
            judge_established(rs, tables, &t, &meta, &wire, ingress, &mut mark, on_log)
        }
        (Some(rs), _) => judge_rules_marked(rs, &meta, &wire, &mut mark, on_log),
        (None, _) => FilterVerdict::Unfiltered,
    };
    let accepted = matches!(fv, FilterVerdict::Unfiltered | FilterVerdict::Accept { .. });
    let mut verdict = match (fv, route) {
        (FilterVerdict::Drop { .. }, _) => Verdict::Drop(DropReason::RuleDrop),
        (FilterVerdict::Reject { .. }, _) => Verdict::Drop(DropReason::RuleReject),
        (_, Route::Forward(h)) => Verdict::Forward(u16::from(h.port)),
        (_, _) => Verdict::Local,
    };

    // mangle POSTROUTING for a packet that leaves (before nat POSTROUTING).
    let mut accepted = accepted;
    if let (true, Route::Forward(h), Some(c)) =
        (accepted, route, mangle.and_then(|m| m.postrouting.as_ref()))
    {
        let out = Some(u16::from(h.port));
        if !mangle_chain(
            c,
            &meta,
            frame,
            info,
            whole,
            &*fwd,
            ingress,
            out,
            F::HOPS_TAKEN,
            now_ns,
            &mut mark,
        ) {
            accepted = false;
            verdict = Verdict::Drop(DropReason::RuleDrop);
        }
    }

    // 7. nat POSTROUTING for an accepted new connection that leaves. The binding is changed
    //    in place (it is 80 bytes: moved around by value, it costs more than the rest).
    let mut reply_tag = None;
    // Whether the binding is the identity, when POSTROUTING worked it out.
    let mut identity = None;
    if let (true, true, Route::Forward(h), Some((b, _))) = (fresh, accepted, route, &mut binding) {
        let nat = nat.expect("fresh bindings come from it");
        match postrouting(nat, tables, fwd, b, kept, &meta, h, now_ns, mark) {
            Ok((t, translates)) => {
                reply_tag = t;
                identity = Some(!translates);
            }
            Err(None) => verdict = Verdict::Drop(DropReason::RuleDrop),
            Err(Some(e)) => verdict = Verdict::Drop(DropReason::Nat(e)),
        }
    } else if fresh && matches!(route, Route::Local) {
        // DNAT to Rampart itself: the replies come back here only if they steer here.
        if let Some((b, _)) = binding.as_ref().filter(|(b, _)| !b.is_identity()) {
            let nat = nat.expect("fresh bindings come from it");
            if let Err(e) = tables.nat.steerable(*b, &nat.steering) {
                verdict = Verdict::Drop(DropReason::Nat(e));
            }
        }
    }
    // From here `binding` is the translation to apply (none when the packet does not leave).
    let leaves = !matches!(verdict, Verdict::Drop(_));
    if !leaves
        || binding
            .as_ref()
            .is_some_and(|(b, _)| identity.unwrap_or_else(|| b.is_identity()))
    {
        binding = None;
    }

    // 8. Remember a first fragment's verdict; confirm a new connection.
    if matches!(info.frag, Fragment::First { .. }) {
        let first = FirstFragment {
            filter: fv,
            accepted: leaves,
            state,
            route,
            nat: binding,
        };
        if let Err(e) = tables.frags.first(frame, info, first, now_ns) {
            if leaves {
                verdict = Verdict::Drop(DropReason::Fragment(e));
            }
        }
    }
    if let (Some(t), false) = (tracked.as_mut(), matches!(verdict, Verdict::Drop(_))) {
        // A binding left here translates (identities were dropped above).
        let reply = binding.as_ref().map(|(b, _)| (b.reply, reply_tag));
        // A NEW connection's mark is the one its walk left, taken by its creation only (not
        // by a clash, where Linux drops the new entry and its mark with it).
        let staged = MARKS && mark.conn != 0 && matches!(t.handle, Handle::New(_));
        if staged {
            tables.ct.stage_mark(mark.conn);
        }
        if tables.ct.confirm_translating(t, reply, now_ns).is_err() {
            verdict = Verdict::Drop(DropReason::CtFull);
        }
        if staged {
            tables.ct.unstage_mark();
        }
    }
    keep_conn_mark!();
    if matches!(verdict, Verdict::Drop(_)) {
        binding = None;
        // `-m connlimit`: a NEW connection not confirmed releases what it reserved.
        tables.ct.settle_counts();
    }
    IpJudgement {
        verdict,
        filter: fv,
        state: Some(state),
        meta,
        judged: true,
        raw: false,
        input: route == Route::Local,
        route,
        nat: binding,
    }
}
