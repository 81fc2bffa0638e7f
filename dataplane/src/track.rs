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
//! 4. the filter chain, which sees that state (`-m conntrack --ctstate`, `-m state`);
//! 5. if the packet leaves: the first fragment's verdict is remembered for the later ones, and
//!    a NEW connection is confirmed into the table (a full table drops the packet, `ct_full`).
//!
//! One [`Tables`] per worker, sized at start-up; nothing here allocates.

use crate::classify::{ct, Action, LogSpec, PacketMeta};
use crate::conntrack::frag::Fragments;
use crate::conntrack::{self, Conntrack, CtState};
use crate::filter::{ip_packet_meta, judge_rules, Filter, FilterVerdict};
use crate::verdict::{DropReason, Verdict};
use crate::wire::{FlowKey, Fragment, PacketInfo};

const SEC: u64 = 1_000_000_000;

/// Sizes and timeouts of one worker's state tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackConfig {
    pub conntrack: conntrack::Config,
    /// Datagrams the fragment table follows at once.
    pub frag_datagrams: u32,
    /// How long a datagram's fragments are awaited after its first (Linux's `ipfrag_time`).
    pub frag_timeout_ns: u64,
}

impl TrackConfig {
    /// Linux's defaults for a table of `capacity` connections.
    pub fn new(capacity: u32) -> TrackConfig {
        TrackConfig {
            conntrack: conntrack::Config::new(capacity),
            frag_datagrams: (capacity / 64).clamp(256, 65_536),
            frag_timeout_ns: 30 * SEC,
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
}

impl Default for FirstFragment {
    fn default() -> Self {
        FirstFragment {
            filter: FilterVerdict::Unfiltered,
            accepted: false,
            state: CtState::Invalid,
        }
    }
}

/// One worker's state: its connections and the datagrams being reassembled.
#[derive(Debug)]
pub struct Tables {
    pub ct: Conntrack,
    pub frags: Fragments<FirstFragment>,
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
/// finds them in cache (a large table misses twice per packet otherwise). Frames that are
/// not IP, or that the straight-line parser leaves to the full one, are skipped. What the
/// parser found is left in `parsed` (by frame position), for judging without parsing again.
#[inline]
pub fn prefetch_burst<'a>(
    tables: &Tables,
    frames: impl Iterator<Item = &'a [u8]>,
    parsed: &mut [Option<PacketInfo>; crate::dpdk::MAX_BURST],
) {
    let mut tags = [0u32; crate::dpdk::MAX_BURST];
    let mut ok = [false; crate::dpdk::MAX_BURST];
    for (((f, t), o), p) in frames
        .take(crate::dpdk::MAX_BURST)
        .zip(&mut tags)
        .zip(&mut ok)
        .zip(parsed.iter_mut())
    {
        *p = crate::wire::parse::parse_common(f);
        if let Some(key) = p.as_ref().and_then(|i| i.flow) {
            *t = tables.ct.prefetch_index(&key);
            *o = true;
        }
    }
    for (&t, &o) in tags.iter().zip(&ok) {
        if o {
            tables.ct.prefetch_entry(t);
        }
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
}

/// Cached verdict tags: the rule index, and the ingress port above it.
const TAG_PORT_SHIFT: u32 = 24;
const TAG_RULE_MASK: u32 = (1 << TAG_PORT_SHIFT) - 1;

/// The filter's verdict for an ESTABLISHED packet of a cacheable rule set: the one cached in
/// its entry for its direction and ingress port under this rule set, else the rule set's
/// (cached unless a LOG rule fired: every packet must be logged).
#[inline]
fn judge_established(
    rs: &crate::classify::RuleSet,
    tables: &mut Tables,
    t: &conntrack::Tracked,
    meta: &PacketMeta,
    ingress: u16,
    mut on_log: impl FnMut(u32, &LogSpec),
) -> FilterVerdict {
    let Some(id) = t.entry() else {
        return judge_rules(rs, meta, on_log);
    };
    if let Some(tag) = tables.ct.verdict(id, t.dir, rs.epoch) {
        let rule = tag & TAG_RULE_MASK;
        if tag >> TAG_PORT_SHIFT == u32::from(ingress) {
            if let Some(r) = rs.rules.get(rule as usize) {
                return match r.action {
                    Action::Accept => FilterVerdict::Accept { rule },
                    Action::Reject(with) => FilterVerdict::Reject { rule, with },
                    _ => FilterVerdict::Drop { rule },
                };
            }
        }
    }
    let mut logged = false;
    let fv = judge_rules(rs, meta, |i, l| {
        logged = true;
        on_log(i, l)
    });
    if let Some(rule) = fv.rule() {
        if !logged && rule <= TAG_RULE_MASK && ingress < 64 {
            let tag = rule | u32::from(ingress) << TAG_PORT_SHIFT;
            tables.ct.set_verdict(id, t.dir, rs.epoch, tag);
        }
    }
    fv
}

/// Judges one IP packet (`key` is `info.flow`) that the bridge forwards from `ingress` to
/// `egress`, through the stages of the module docs. `on_log` as in [`Filter::judge`].
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn judge_tracked(
    filter: &Filter,
    tables: &mut Tables,
    frame: &[u8],
    info: &PacketInfo,
    key: FlowKey,
    ingress: u16,
    egress: u16,
    now_ns: u64,
    on_log: impl FnMut(u32, &LogSpec),
) -> IpJudgement {
    let mut meta = ip_packet_meta(frame, key, info.frag, info.l4_offset, ingress, egress);
    let forward = Verdict::Forward(egress);

    // 1. A later fragment: its datagram decided.
    if meta.later_fragment {
        return match tables.frags.later(frame, info, now_ns) {
            Ok(first) => {
                meta.ct_state = first.state.bit();
                IpJudgement {
                    verdict: if first.accepted {
                        forward
                    } else {
                        Verdict::Drop(DropReason::RuleDrop)
                    },
                    filter: first.filter,
                    state: Some(first.state),
                    meta,
                    judged: false,
                    raw: false,
                }
            }
            Err(e) => IpJudgement {
                verdict: Verdict::Drop(DropReason::Fragment(e)),
                filter: FilterVerdict::Unfiltered,
                state: None,
                meta,
                judged: false,
                raw: false,
            },
        };
    }

    // 2. raw PREROUTING (before conntrack: the packet has no state yet, which
    //    `--ctstate` sees as INVALID, as in Linux).
    let mut notrack = false;
    if let Some(raw) = filter.raw(key.family) {
        let raw_meta = PacketMeta {
            ct_state: ct::INVALID,
            out_port: 0,
            ..meta
        };
        let j = raw.evaluate(&raw_meta, |_, _| {});
        if !matches!(j.action, Action::Accept) {
            return IpJudgement {
                verdict: Verdict::Drop(DropReason::RuleDrop),
                filter: FilterVerdict::Drop { rule: j.rule },
                state: None,
                meta,
                judged: false,
                raw: true,
            };
        }
        notrack = j.notrack;
    }

    // 3. Conntrack.
    let mut tracked = (!notrack).then(|| tables.ct.track(frame, info, now_ns));
    let state = tracked.map_or(CtState::Untracked, |t| t.state);
    meta.ct_state = state.bit();

    // 4. The filter: an established connection's verdict comes from its entry while the rule
    //    set is the one that gave it.
    let fv = match (filter.rules(key.family), tracked) {
        (Some(rs), Some(t)) if rs.cacheable && t.state == CtState::Established => {
            judge_established(rs, tables, &t, &meta, ingress, on_log)
        }
        (Some(rs), _) => judge_rules(rs, &meta, on_log),
        (None, _) => FilterVerdict::Unfiltered,
    };
    let accepted = matches!(fv, FilterVerdict::Unfiltered | FilterVerdict::Accept { .. });
    let mut verdict = match fv {
        FilterVerdict::Unfiltered | FilterVerdict::Accept { .. } => forward,
        FilterVerdict::Drop { .. } => Verdict::Drop(DropReason::RuleDrop),
        FilterVerdict::Reject { .. } => Verdict::Drop(DropReason::RuleReject),
    };

    // 5. Remember a first fragment's verdict; confirm a new connection.
    if matches!(info.frag, Fragment::First { .. }) {
        let first = FirstFragment {
            filter: fv,
            accepted,
            state,
        };
        if let Err(e) = tables.frags.first(frame, info, first, now_ns) {
            if accepted {
                verdict = Verdict::Drop(DropReason::Fragment(e));
            }
        }
    }
    if let (Some(t), Verdict::Forward(_)) = (tracked.as_mut(), verdict) {
        if tables.ct.confirm(t, now_ns).is_err() {
            verdict = Verdict::Drop(DropReason::CtFull);
        }
    }
    IpJudgement {
        verdict,
        filter: fv,
        state: Some(state),
        meta,
        judged: true,
        raw: false,
    }
}
