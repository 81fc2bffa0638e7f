//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The filter stage: an IP packet that the bridge would forward is judged by the rule set of its
//! family. A family without a rule set is not filtered (Linux's empty ACCEPT policy).
//!
//! Without connection tracking ([`crate::track`]) every packet is judged as conntrack state NEW.

use crate::classify::{ct, Action, PacketMeta, RejectWith, RuleSet, Wire};
use crate::wire::{ip_proto, Family, FlowKey, Fragment, PacketInfo};

/// The filter's answer for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterVerdict {
    /// The family has no rule set.
    Unfiltered,
    Accept {
        rule: u32,
    },
    Drop {
        rule: u32,
    },
    Reject {
        rule: u32,
        with: RejectWith,
    },
}

/// The rule sets in force, one per family: the filter chain, and the raw table's PREROUTING
/// chain (DROP and NOTRACK before connection tracking).
#[derive(Debug, Default)]
pub struct Filter {
    pub v4: Option<RuleSet>,
    pub v6: Option<RuleSet>,
    pub raw_v4: Option<RuleSet>,
    pub raw_v6: Option<RuleSet>,
    /// Router mode: the filter INPUT chain, judging packets to Rampart's own addresses
    /// (`None`: bridge mode, security groups, or no rules for the family).
    pub input_v4: Option<RuleSet>,
    pub input_v6: Option<RuleSet>,
    /// The nat table (translation needs connection tracking).
    pub nat: Option<Box<crate::nat::NatTables>>,
    /// The mangle table's chains with effect (applied with connection tracking; `None`: the
    /// family's mangle table changes nothing). A family with one has a filter rule set that
    /// is not cacheable, so every packet takes the general path, where the chains are walked.
    pub mangle_v4: Option<Box<crate::mangle::Mangle>>,
    pub mangle_v6: Option<Box<crate::mangle::Mangle>>,
    /// Some table reads or changes connection marks (`-m connmark`, CONNMARK): the tracked
    /// path loads a connection's mark for the walk and stores it back. Set by
    /// [`Filter::note_conn_marks`] once the rule sets are in place.
    pub conn_marks: bool,
}

/// Builds what classification looks at from a parsed frame; `None` for non-IP frames.
#[inline]
pub fn packet_meta(
    frame: &[u8],
    info: &PacketInfo,
    in_port: u16,
    out_port: u16,
) -> Option<PacketMeta> {
    let key = info.flow?;
    Some(ip_packet_meta(
        frame,
        key,
        info.frag,
        info.l4_offset,
        in_port,
        out_port,
    ))
}

/// [`packet_meta`] from the parts of an IP packet's [`PacketInfo`] it uses.
#[inline]
pub fn ip_packet_meta(
    frame: &[u8],
    key: FlowKey,
    frag: Fragment,
    l4_offset: u16,
    in_port: u16,
    out_port: u16,
) -> PacketMeta {
    let later_fragment = matches!(frag, Fragment::Later { .. });
    let tcp_flags = if key.proto == ip_proto::TCP && !later_fragment && l4_offset != 0 {
        frame.get(usize::from(l4_offset) + 13).copied().unwrap_or(0)
    } else {
        0
    };
    PacketMeta {
        key,
        in_port: in_port as u8,
        out_port: out_port as u8,
        ct_state: ct::NEW,
        tcp_flags,
        later_fragment,
    }
}

impl FilterVerdict {
    /// The rule that decided, if a rule set judged the packet.
    #[inline]
    pub fn rule(self) -> Option<u32> {
        match self {
            FilterVerdict::Unfiltered => None,
            FilterVerdict::Accept { rule }
            | FilterVerdict::Drop { rule }
            | FilterVerdict::Reject { rule, .. } => Some(rule),
        }
    }
}

impl Filter {
    /// Sets [`Filter::conn_marks`] from the rule sets (every table's, both families).
    pub fn note_conn_marks(&mut self) {
        let mut sets: Vec<&RuleSet> = Vec::new();
        sets.extend(self.v4.iter().chain(&self.v6));
        sets.extend(self.raw_v4.iter().chain(&self.raw_v6));
        sets.extend(self.input_v4.iter().chain(&self.input_v6));
        for m in self.mangle_v4.iter().chain(&self.mangle_v6) {
            sets.extend(m.chains().map(|c| &c.rules));
        }
        if let Some(n) = &self.nat {
            for r in n.v4.iter().chain(&n.v6) {
                sets.push(r.prerouting.rule_set());
                sets.push(r.postrouting.rule_set());
            }
        }
        self.conn_marks = sets.iter().any(|rs| rs.conn_marks);
    }

    /// Whether a table reads the packets' payload (`-m string`): a datagram that came in
    /// fragments is then gathered whole before it is judged
    /// ([`crate::classify::payload`]). The nat table has no such rules.
    pub fn reads_payload(&self) -> bool {
        let sets = [
            &self.v4,
            &self.v6,
            &self.raw_v4,
            &self.raw_v6,
            &self.input_v4,
            &self.input_v6,
        ];
        sets.into_iter().flatten().any(|rs| rs.reads_payload)
            || self
                .mangle_v4
                .iter()
                .chain(&self.mangle_v6)
                .any(|m| m.chains().any(|c| c.rules.reads_payload))
    }

    /// The rule set for `family`, if any.
    #[inline]
    pub fn rules(&self, family: Family) -> Option<&RuleSet> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    /// The raw PREROUTING rule set for `family`, if any.
    #[inline]
    pub fn raw(&self, family: Family) -> Option<&RuleSet> {
        match family {
            Family::V4 => self.raw_v4.as_ref(),
            Family::V6 => self.raw_v6.as_ref(),
        }
    }

    /// The mangle chains with effect for `family`, if any.
    #[inline(always)]
    pub fn mangle(&self, family: Family) -> Option<&crate::mangle::Mangle> {
        match family {
            Family::V4 => self.mangle_v4.as_deref(),
            Family::V6 => self.mangle_v6.as_deref(),
        }
    }

    /// The filter INPUT rule set for `family`, if any (router mode).
    #[inline]
    pub fn input(&self, family: Family) -> Option<&RuleSet> {
        match family {
            Family::V4 => self.input_v4.as_ref(),
            Family::V6 => self.input_v6.as_ref(),
        }
    }

    /// Judges one packet whose bytes are `w`; `on_log` is called for each LOG rule it passes
    /// (a cold path).
    #[inline]
    pub fn judge(
        &self,
        meta: &PacketMeta,
        w: &Wire<'_>,
        on_log: impl FnMut(u32, &crate::classify::LogSpec, &crate::classify::PacketMeta),
    ) -> FilterVerdict {
        match self.rules(meta.key.family) {
            Some(rs) => judge_rules(rs, meta, w, on_log),
            None => FilterVerdict::Unfiltered,
        }
    }
}

/// Judges one packet (whose bytes are `w`) by the rule set of its family; `on_log` as in
/// [`Filter::judge`].
#[inline]
pub fn judge_rules(
    rules: &RuleSet,
    meta: &PacketMeta,
    w: &Wire<'_>,
    on_log: impl FnMut(u32, &crate::classify::LogSpec, &crate::classify::PacketMeta),
) -> FilterVerdict {
    let mut mark = crate::classify::walk::Marks::default();
    judge_rules_marked(rules, meta, w, &mut mark, on_log)
}

/// [`judge_rules`] for a packet whose mark is `mark` when the walk reaches the filter (a new
/// connection's nat PREROUTING may have set it); `mark` is what it is after. Always inlined:
/// left to the inliner beside `-m connlimit`'s walk, it cost a new connection 23 instructions
/// more (36,336,906 against 35,876,872 for 20,000 connections).
#[inline(always)]
pub fn judge_rules_marked(
    rules: &RuleSet,
    meta: &PacketMeta,
    w: &Wire<'_>,
    mark: &mut crate::classify::walk::Marks,
    on_log: impl FnMut(u32, &crate::classify::LogSpec, &crate::classify::PacketMeta),
) -> FilterVerdict {
    let j = rules.judge_marked(meta, w, mark, on_log);
    match j.action {
        Action::Accept => FilterVerdict::Accept { rule: j.rule },
        Action::Reject(with) => FilterVerdict::Reject { rule: j.rule, with },
        _ => FilterVerdict::Drop { rule: j.rule },
    }
}

/// Per-rule packet and byte counters of one worker, for one rule set.
#[derive(Debug)]
#[repr(align(64))]
pub struct RuleCounters {
    /// `[packets, bytes]` per flat rule.
    counts: Box<[[std::sync::atomic::AtomicU64; 2]]>,
}

impl RuleCounters {
    fn new(rules: usize) -> RuleCounters {
        RuleCounters {
            counts: (0..rules).map(|_| Default::default()).collect(),
        }
    }

    /// Counts one packet of `bytes` against `rule` (single writer: the owning worker).
    #[inline]
    pub fn hit(&self, rule: u32, bytes: u64) {
        if let Some([p, b]) = self.counts.get(rule as usize) {
            crate::stats::bump(p, 1);
            crate::stats::bump(b, bytes);
        }
    }

    /// `(packets, bytes)` of `rule`.
    pub fn get(&self, rule: usize) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.counts
            .get(rule)
            .map_or((0, 0), |[p, b]| (p.load(Relaxed), b.load(Relaxed)))
    }
}

/// What workers run on: the rule sets plus their per-worker counters. Published as one immutable
/// snapshot (only the counters, each with a single writer, change).
#[derive(Debug)]
pub struct FilterSnapshot {
    pub filter: Filter,
    /// Where the snapshot came from (file names), for `rules show`.
    pub source: String,
    /// `[worker]` counters for the IPv4 and IPv6 rule sets.
    pub counters_v4: Vec<RuleCounters>,
    pub counters_v6: Vec<RuleCounters>,
}

impl FilterSnapshot {
    /// A snapshot of `filter` with zeroed counters for `workers` workers.
    pub fn new(filter: Filter, source: String, workers: usize) -> FilterSnapshot {
        let n4 = filter.v4.as_ref().map_or(0, |r| r.rules.len());
        let n6 = filter.v6.as_ref().map_or(0, |r| r.rules.len());
        FilterSnapshot {
            filter,
            source,
            counters_v4: (0..workers).map(|_| RuleCounters::new(n4)).collect(),
            counters_v6: (0..workers).map(|_| RuleCounters::new(n6)).collect(),
        }
    }

    /// The counters of `worker` for `family`.
    #[inline]
    pub fn counters(&self, family: Family, worker: usize) -> Option<&RuleCounters> {
        match family {
            Family::V4 => self.counters_v4.get(worker),
            Family::V6 => self.counters_v6.get(worker),
        }
    }

    /// `(packets, bytes)` of flat rule `rule` of `family`, summed over workers.
    pub fn rule_totals(&self, family: Family, rule: usize) -> (u64, u64) {
        let list = match family {
            Family::V4 => &self.counters_v4,
            Family::V6 => &self.counters_v6,
        };
        list.iter()
            .map(|c| c.get(rule))
            .fold((0, 0), |(p, b), (q, c)| (p + q, b + c))
    }
}
