//! The compiled `nat` table: PREROUTING (DNAT) and POSTROUTING (SNAT, MASQUERADE) chains as
//! first-match flat rule sets, and 1:1 (floating) address mappings.
//!
//! A [`NatChain`] reuses the filter table's machinery: a [`RuleSet`] whose rules are flattened
//! the same way (user chains inlined, `RETURN` as [`Action::ContinueAt`], LOG non-terminal), in
//! which every terminal rule is an [`Action::Accept`] and `target_of[rule]` says what it does:
//! [`NO_NAT`] for ACCEPT and the policy (no translation), or an index into `targets`. So any
//! classifier of the filter path judges the nat table too.
//!
//! As in Linux, a chain is consulted once per connection, for its first packet (conntrack state
//! NEW); the binding then holds for every packet of both directions. The nat table never drops.
//!
//! 1:1 mappings ([`OneToOne`]) are rules placed before the file's: PREROUTING `-d PUBLIC -j
//! DNAT --to-destination PRIVATE` and POSTROUTING `-s PRIVATE -j SNAT --to-source PUBLIC`, so
//! ports are kept whenever free, as a cloud NAT gateway's floating address does. Hairpin
//! traffic (an inside client reaching an inside server through a public address) is translated
//! exactly as the rules say, as in Linux: the DNAT applies, and the server's replies come back
//! through the gateway only if a POSTROUTING rule also translates the source (a 1:1 mapping of
//! the client, or a MASQUERADE/SNAT rule covering inside-to-inside traffic).

use super::alloc::{Manip, NatRange, Prepared};
use super::steer::{Published, Steering};
use crate::classify::{Action, FlatRule, Judgement, LogSpec, Origin, PacketMeta, RuleSet};
use crate::wire::{Family, IpAddr128};

/// `target_of` value of a rule that translates nothing (ACCEPT, the policy, LOG, RETURN).
pub const NO_NAT: u32 = u32::MAX;

/// The kind of a NAT target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    Snat,
    Dnat,
    Masquerade,
    /// `NETMAP --to PREFIX`: the destination (PREROUTING) or the source (POSTROUTING) mapped
    /// address for address onto the prefix `range.addrs` spans, its host bits kept
    /// ([`super::Prepared::netmap`]); ports kept as by SNAT/DNAT to one address.
    Netmap,
    /// `REDIRECT [--to-ports P[-Q]] [--random]`: a DNAT to the ingress port's primary address
    /// (`range.addrs` is `None`), the ports from `range.ports` or kept.
    Redirect,
}

impl NatKind {
    pub fn name(self) -> &'static str {
        match self {
            NatKind::Snat => "SNAT",
            NatKind::Dnat => "DNAT",
            NatKind::Masquerade => "MASQUERADE",
            NatKind::Netmap => "NETMAP",
            NatKind::Redirect => "REDIRECT",
        }
    }
}

/// One NAT target with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatTarget {
    pub kind: NatKind,
    /// For MASQUERADE `addrs` is `None`: the out port's address is used.
    pub range: NatRange,
    /// Index into the chain's rule set's origins.
    pub origin: u32,
}

impl NatTarget {
    /// Which side the target changes in the chain that usually holds it (NETMAP: PREROUTING's
    /// destination; in POSTROUTING the stateful stage maps the source).
    pub fn manip(&self) -> Manip {
        match self.kind {
            NatKind::Dnat | NatKind::Redirect | NatKind::Netmap => Manip::Dst,
            NatKind::Snat | NatKind::Masquerade => Manip::Src,
        }
    }

    /// The range to translate to. MASQUERADE needs `port_addr`, the out port's address of the
    /// connection's family (REDIRECT the in port's); without one the connection cannot be
    /// translated (`None`; Linux drops it too). NETMAP's is the prefix, mapped per address.
    pub fn resolve(&self, port_addr: Option<IpAddr128>) -> Option<NatRange> {
        match self.kind {
            NatKind::Masquerade | NatKind::Redirect => port_addr.map(|a| NatRange {
                addrs: Some((a, a)),
                ..self.range
            }),
            _ => Some(self.range),
        }
    }
}

/// What a chain decided for a connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatDecision<'a> {
    /// No translation at this hook.
    Keep,
    Translate(&'a NatTarget),
    /// Evaluation did not end (a rule set that loops): drop rather than guess.
    Drop,
}

/// [`NatDecision`] with the target's range prepared for the chain's family
/// ([`NatChain::choose`]), as the stateful stage takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatChoice<'a> {
    Keep,
    Translate(&'a NatTarget, &'a Prepared),
    Drop,
}

impl<'a> From<NatChoice<'a>> for NatDecision<'a> {
    #[inline]
    fn from(c: NatChoice<'a>) -> NatDecision<'a> {
        match c {
            NatChoice::Keep => NatDecision::Keep,
            NatChoice::Translate(t, _) => NatDecision::Translate(t),
            NatChoice::Drop => NatDecision::Drop,
        }
    }
}

/// Why a chain's parts do not fit together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NatChainError {
    #[error("target_of has {got} entries for {rules} rules")]
    Length { rules: usize, got: usize },
    #[error("rule {rule} names target {target}, but there are {targets}")]
    Target {
        rule: usize,
        target: u32,
        targets: usize,
    },
    #[error("rule {rule} translates but is not a terminal ACCEPT")]
    NotTerminal { rule: usize },
    #[error("the rule set does not end with a catch-all")]
    NoCatchAll,
}

/// One hook's compiled chain.
#[derive(Debug)]
pub struct NatChain {
    rules: RuleSet,
    target_of: Vec<u32>,
    /// The targets `target_of` names, each with its range prepared for the chain's family: a
    /// chosen target is one bounds check and one load away.
    targets: Box<[(NatTarget, Prepared)]>,
    /// The chain's rules as [`QuickRule`]s, when it is short and has only the actions they
    /// take (ACCEPT, DROP, RETURN): [`NatChain::decide_first`] scans them instead of asking
    /// the classifier.
    quick: Option<Box<[QuickRule]>>,
    /// The chain is its policy alone, ACCEPT: it translates nothing (PREROUTING on a gateway
    /// without DNAT rules).
    keeps_all: bool,
}

/// Chains longer than this go through their classifier (a decision tree answers a long chain
/// in fewer steps than a scan).
const QUICK_MAX_RULES: usize = 16;

/// One flat rule of a short nat chain, as [`NatChain::decide_first`] tests it: the fields the
/// rule leaves open are not tested at all, and its action and target are one word.
#[derive(Clone, Copy, Debug)]
struct QuickRule {
    /// Which fields the rule tests (`T_*` bits).
    tests: u16,
    src: (u128, u128),
    dst: (u128, u128),
    /// For an IPv4 rule, the ranges as 32-bit numbers (a key of the family holds its
    /// addresses v4-mapped, so its last four bytes order it as the whole does).
    src4: (u32, u32),
    dst4: (u32, u32),
    proto: (u8, u8),
    sport: (u16, u16),
    dport: (u16, u16),
    in_ports: crate::classify::PortMask,
    out_ports: crate::classify::PortMask,
    ct_states: u8,
    tcp_flags: (u8, u8),
    frag: crate::classify::FragMatch,
    /// What a match does: [`Q_DROP`], [`Q_CONTINUE`] (then `next`), else the target index
    /// (or [`NO_NAT`]).
    then: u32,
    /// For [`Q_CONTINUE`]: the rule evaluation continues at (`RETURN`).
    next: u32,
}

const T_SRC: u16 = 1 << 0;
const T_DST: u16 = 1 << 1;
const T_PROTO: u16 = 1 << 2;
const T_SPORT: u16 = 1 << 3;
const T_DPORT: u16 = 1 << 4;
const T_IN: u16 = 1 << 5;
const T_OUT: u16 = 1 << 6;
const T_FLAGS: u16 = 1 << 8;
const T_FRAG: u16 = 1 << 9;
/// [`T_SRC`] and [`T_DST`] of an IPv4 rule, tested on 32-bit numbers.
const T_SRC4: u16 = 1 << 10;
const T_DST4: u16 = 1 << 11;
/// The tests [`QuickRule::matches`] leaves to [`QuickRule::matches_rest`].
const T_REST: u16 = T_SRC | T_DST | T_PROTO | T_SPORT | T_DPORT | T_FLAGS | T_FRAG;

/// [`QuickRule::then`] of a DROP.
const Q_DROP: u32 = u32::MAX - 1;
/// [`QuickRule::then`] of a `RETURN` ([`Action::ContinueAt`]).
const Q_CONTINUE: u32 = u32::MAX - 2;

impl QuickRule {
    /// The rule's quick form, or `None` for an action a quick scan does not take (LOG,
    /// NOTRACK, REJECT: the nat table compiles none of them, but the chain is checked, not
    /// trusted).
    fn of(r: &FlatRule, target: u32) -> Option<QuickRule> {
        use crate::classify::{FragMatch, ANY_PORT};
        let any = FlatRule::any(r.family, r.action, r.origin);
        if r.checks.is_some() {
            // A mark or statistic condition, or a MARK: the rule set's walk takes those.
            return None;
        }
        let (then, next) = match r.action {
            Action::Accept => (target, 0),
            Action::Drop => (Q_DROP, 0),
            Action::ContinueAt(n) => (Q_CONTINUE, n),
            _ => return None,
        };
        let mut tests = 0;
        let mut test = |open: bool, bit: u16| {
            if !open {
                tests |= bit;
            }
        };
        // An address range covering the whole family never fails: a key's addresses are of
        // its family (IPv4 ones v4-mapped, `FlowKey`'s invariant), and the family is tested
        // on its own.
        test(r.src == any.src, T_SRC);
        test(r.dst == any.dst, T_DST);
        test(r.proto == any.proto, T_PROTO);
        test(r.sport == any.sport, T_SPORT);
        test(r.dport == any.dport, T_DPORT);
        test(r.in_ports == ANY_PORT, T_IN);
        test(r.out_ports == ANY_PORT, T_OUT);
        // The state has no bit: it is tested always (a packet without one matches no rule).
        test(r.tcp_flags.is_none(), T_FLAGS);
        test(r.frag == FragMatch::Any, T_FRAG);
        let wide = |(lo, hi): (IpAddr128, IpAddr128)| {
            (u128::from_be_bytes(lo.0), u128::from_be_bytes(hi.0))
        };
        // An IPv4 rule's bounds are v4-mapped: its address tests take the last four bytes.
        let v4 = |(lo, hi): (IpAddr128, IpAddr128)| {
            (r.family == Family::V4 && lo.is_v4() && hi.is_v4())
                .then(|| (low_word(&lo), low_word(&hi)))
        };
        let (src4, dst4) = (v4(r.src), v4(r.dst));
        if src4.is_some() && tests & T_SRC != 0 {
            tests = tests & !T_SRC | T_SRC4;
        }
        if dst4.is_some() && tests & T_DST != 0 {
            tests = tests & !T_DST | T_DST4;
        }
        Some(QuickRule {
            tests,
            src: wide(r.src),
            dst: wide(r.dst),
            src4: src4.unwrap_or((0, 0)),
            dst4: dst4.unwrap_or((0, 0)),
            proto: r.proto,
            sport: r.sport,
            dport: r.dport,
            in_ports: r.in_ports,
            out_ports: r.out_ports,
            ct_states: r.ct_states,
            tcp_flags: r.tcp_flags.unwrap_or((0, 0)),
            frag: r.frag,
            then,
            next,
        })
    }

    /// [`FlatRule::matches`] for a packet of the chain's family, testing only what the rule
    /// tests. The state first (always tested), then the interfaces and IPv4 addresses (what
    /// SNAT and MASQUERADE rules narrow), then one test of whether the rule narrows anything
    /// else: a rule of the first kind pays nothing for the fields it leaves open after it.
    #[inline(never)]
    fn matches(&self, p: &PacketMeta) -> bool {
        let k = &p.key;
        let t = self.tests;
        if self.ct_states & p.ct_state == 0
            || (t & T_OUT != 0 && self.out_ports & (1 << (p.out_port & 31)) == 0)
            || (t & T_IN != 0 && self.in_ports & (1 << (p.in_port & 31)) == 0)
            || (t & T_SRC4 != 0
                && !(self.src4.0 <= low_word(&k.src) && low_word(&k.src) <= self.src4.1))
            || (t & T_DST4 != 0
                && !(self.dst4.0 <= low_word(&k.dst) && low_word(&k.dst) <= self.dst4.1))
        {
            return false;
        }
        t & T_REST == 0 || self.matches_rest(p)
    }

    /// The tests of [`QuickRule::matches`] after the first group ([`T_REST`]).
    #[inline(always)]
    fn matches_rest(&self, p: &PacketMeta) -> bool {
        use crate::classify::FragMatch;
        let k = &p.key;
        let t = self.tests;
        let within = |v, (lo, hi)| lo <= v && v <= hi;
        (t & T_PROTO == 0 || (self.proto.0 <= k.proto && k.proto <= self.proto.1))
            && (t & T_DPORT == 0 || (self.dport.0 <= k.dst_port && k.dst_port <= self.dport.1))
            && (t & T_SPORT == 0 || (self.sport.0 <= k.src_port && k.src_port <= self.sport.1))
            && (t & T_SRC == 0 || within(u128::from_be_bytes(k.src.0), self.src))
            && (t & T_DST == 0 || within(u128::from_be_bytes(k.dst.0), self.dst))
            && (t & T_FLAGS == 0
                || (k.proto == crate::wire::ip_proto::TCP
                    && !p.later_fragment
                    && p.tcp_flags & self.tcp_flags.0 == self.tcp_flags.1))
            && (t & T_FRAG == 0
                || match self.frag {
                    FragMatch::Any => true,
                    FragMatch::LaterOnly => p.later_fragment,
                    FragMatch::NotLater => !p.later_fragment,
                })
    }
}

/// An address's last four bytes as a big-endian number (an IPv4 address, when v4-mapped).
#[inline(always)]
fn low_word(a: &IpAddr128) -> u32 {
    let [.., a0, a1, a2, a3] = a.0;
    u32::from_be_bytes([a0, a1, a2, a3])
}

/// Whether a chain is a lone catch-all ACCEPT that translates nothing.
fn keeps_all(rules: &RuleSet, target_of: &[u32]) -> bool {
    rules.rules.len() == 1 && rules.rules[0].action == Action::Accept && target_of[0] == NO_NAT
}

/// Each target with its range prepared for `family`.
fn prepare(targets: &[NatTarget], family: Family) -> Box<[(NatTarget, Prepared)]> {
    targets
        .iter()
        .map(|t| (*t, t.range.prepare(family)))
        .collect()
}

/// The quick form of a chain's rules, when every rule has one and the chain is short.
fn quick_rules(rules: &RuleSet, target_of: &[u32]) -> Option<Box<[QuickRule]>> {
    if rules.rules.len() > QUICK_MAX_RULES || rules.rules.iter().any(|r| r.family != rules.family) {
        return None;
    }
    rules
        .rules
        .iter()
        .zip(target_of)
        .map(|(r, &t)| QuickRule::of(r, t))
        .collect()
}

impl NatChain {
    /// Checks that the parts fit: one `target_of` per rule, translating rules are terminal
    /// ACCEPTs naming an existing target, and the set ends with a terminal catch-all.
    pub fn new(
        rules: RuleSet,
        target_of: Vec<u32>,
        targets: Vec<NatTarget>,
    ) -> Result<NatChain, NatChainError> {
        if target_of.len() != rules.rules.len() {
            return Err(NatChainError::Length {
                rules: rules.rules.len(),
                got: target_of.len(),
            });
        }
        for (i, (&t, r)) in target_of.iter().zip(&rules.rules).enumerate() {
            if t == NO_NAT {
                continue;
            }
            if t as usize >= targets.len() {
                return Err(NatChainError::Target {
                    rule: i,
                    target: t,
                    targets: targets.len(),
                });
            }
            if r.action != Action::Accept {
                return Err(NatChainError::NotTerminal { rule: i });
            }
        }
        let last_ok = rules.rules.last().is_some_and(|r| {
            let any = FlatRule::any(rules.family, r.action, r.origin);
            matches!(r.action, Action::Accept | Action::Drop) && *r == any
        });
        if !last_ok {
            return Err(NatChainError::NoCatchAll);
        }
        let quick = quick_rules(&rules, &target_of);
        let keeps_all = keeps_all(&rules, &target_of);
        let targets = prepare(&targets, rules.family);
        Ok(NatChain {
            rules,
            target_of,
            targets,
            quick,
            keeps_all,
        })
    }

    /// A chain that translates nothing (an empty chain with policy ACCEPT).
    pub fn accept_all(family: Family, file: &str, label: &str) -> NatChain {
        let rules = RuleSet::new(
            family,
            vec![FlatRule::any(family, Action::Accept, 0)],
            vec![Origin {
                file: file.to_string(),
                line: 0,
                label: label.to_string(),
            }],
            Vec::new(),
        );
        let target_of = vec![NO_NAT];
        let quick = quick_rules(&rules, &target_of);
        let keeps_all = keeps_all(&rules, &target_of);
        NatChain {
            rules,
            target_of,
            targets: Box::new([]),
            quick,
            keeps_all,
        }
    }

    /// Replaces the classifier (after any [`NatRules::with_one_to_one`], which rebuilds the
    /// rule set with the linear one).
    pub fn with_classifier(mut self, c: Box<dyn crate::classify::Classifier>) -> NatChain {
        self.rules = self.rules.with_classifier(c);
        self
    }

    pub fn rule_set(&self) -> &RuleSet {
        &self.rules
    }

    /// Whether the chain is its policy alone, ACCEPT (it translates nothing and need not be
    /// evaluated).
    #[inline]
    pub fn keeps_all(&self) -> bool {
        self.keeps_all
    }

    /// The target (or [`NO_NAT`]) of flat rule `i`.
    pub fn target_of(&self, i: usize) -> u32 {
        self.target_of.get(i).copied().unwrap_or(NO_NAT)
    }

    /// Judges a connection's first packet; `on_log` sees every LOG rule passed.
    pub fn decide(
        &self,
        meta: &PacketMeta,
        on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    ) -> (NatDecision<'_>, Judgement) {
        let j = self.rules.evaluate(meta, on_log);
        let d = match j.action {
            Action::Accept => match self.target_of(j.rule as usize) {
                NO_NAT => NatDecision::Keep,
                t => NatDecision::Translate(&self.targets[t as usize].0),
            },
            _ => NatDecision::Drop,
        };
        (d, j)
    }

    /// [`NatChain::decide`]'s decision for a connection's first packet (`meta` of the chain's
    /// family), without its judgement ([`NatChain::choose`]).
    #[inline]
    pub fn decide_first(&self, meta: &PacketMeta) -> NatDecision<'_> {
        self.choose(meta).into()
    }

    /// The target chosen for a connection's first packet (`meta` of the chain's family), with
    /// its range prepared: a short chain is scanned in its quick form, with `RETURN`s
    /// followed as [`RuleSet::evaluate`] follows them (a bounded number of steps, then DROP);
    /// any other through its classifier.
    #[inline]
    pub fn choose(&self, meta: &PacketMeta) -> NatChoice<'_> {
        let mut mark = crate::classify::walk::Marks::default();
        self.choose_marked(meta, &mut mark)
    }

    /// [`NatChain::choose`] for a packet whose mark is `mark` when it reaches the chain;
    /// `mark` is what it is after (a chain with MARK or `-m mark` rules has no quick form, and
    /// its walk is the rule set's: [`crate::classify::walk`]).
    #[inline]
    pub fn choose_marked(
        &self,
        meta: &PacketMeta,
        mark: &mut crate::classify::walk::Marks,
    ) -> NatChoice<'_> {
        let Some(quick) = &self.quick else {
            return self.choose_walked(meta, mark);
        };
        if meta.key.family != self.rules.family {
            return NatChoice::Drop;
        }
        let mut i = 0;
        let mut steps = 0;
        while let Some(r) = quick.get(i) {
            if r.matches(meta) {
                // A translating rule's `then` is its target's index: asked first.
                if let Some((t, p)) = self.targets.get(r.then as usize) {
                    return NatChoice::Translate(t, p);
                }
                match r.then {
                    NO_NAT => return NatChoice::Keep,
                    Q_CONTINUE => {
                        steps += 1;
                        if steps >= crate::classify::MAX_STEPS {
                            return NatChoice::Drop;
                        }
                        i = (r.next as usize).max(i + 1);
                        continue;
                    }
                    // DROP (or a target that does not exist, which `NatChain::new` refuses).
                    _ => return NatChoice::Drop,
                }
            }
            i += 1;
        }
        NatChoice::Drop
    }

    /// [`NatChain::choose_marked`] through the rule set.
    #[inline]
    fn choose_walked(
        &self,
        meta: &PacketMeta,
        mark: &mut crate::classify::walk::Marks,
    ) -> NatChoice<'_> {
        let j = self
            .rules
            .judge_marked(meta, &crate::classify::Wire::NONE, mark, |_, _, _| {});
        match j.action {
            Action::Accept => self.target(self.target_of(j.rule as usize)),
            _ => NatChoice::Drop,
        }
    }

    /// What `target_of` value `t` does.
    #[inline]
    fn target(&self, t: u32) -> NatChoice<'_> {
        match self.targets.get(t as usize) {
            Some((t, p)) => NatChoice::Translate(t, p),
            None if t == NO_NAT => NatChoice::Keep,
            None => NatChoice::Drop,
        }
    }

    /// This chain with `extra` (match, target) rules placed before its own.
    fn prepend(self, extra: Vec<(FlatRule, NatTarget, Origin)>) -> NatChain {
        if extra.is_empty() {
            return self;
        }
        let k = extra.len() as u32;
        let RuleSet {
            family,
            rules,
            mut origins,
            logs,
            ..
        } = self.rules;
        let mut targets: Vec<NatTarget> = self.targets.iter().map(|(t, _)| *t).collect();
        let mut out = Vec::with_capacity(rules.len() + extra.len());
        let mut target_of = Vec::with_capacity(out.capacity());
        for (mut r, mut t, o) in extra {
            r.origin = origins.len() as u32;
            t.origin = r.origin;
            std::sync::Arc::make_mut(&mut origins).push(o);
            target_of.push(targets.len() as u32);
            targets.push(t);
            out.push(r);
        }
        for (mut r, t) in rules.into_iter().zip(self.target_of) {
            if let Action::ContinueAt(i) = r.action {
                r.action = Action::ContinueAt(i + k);
            }
            out.push(r);
            target_of.push(t);
        }
        let rules = RuleSet::with_shared_origins(family, out, origins, logs);
        let quick = quick_rules(&rules, &target_of);
        let keeps_all = keeps_all(&rules, &target_of);
        let targets = prepare(&targets, rules.family);
        NatChain {
            rules,
            target_of,
            targets,
            quick,
            keeps_all,
        }
    }
}

/// A floating address: `public` maps one-to-one onto `private`, both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OneToOne {
    pub public: IpAddr128,
    pub private: IpAddr128,
}

/// The whole nat table of one family.
#[derive(Debug)]
pub struct NatRules {
    pub family: Family,
    /// DNAT, judged when a connection's first packet arrives.
    pub prerouting: NatChain,
    /// SNAT and MASQUERADE, judged once the first packet is routed.
    pub postrouting: NatChain,
}

impl NatRules {
    /// A table that translates nothing.
    pub fn accept_all(family: Family) -> NatRules {
        NatRules {
            family,
            prerouting: NatChain::accept_all(family, "", "policy PREROUTING ACCEPT"),
            postrouting: NatChain::accept_all(family, "", "policy POSTROUTING ACCEPT"),
        }
    }

    /// Adds 1:1 mappings of this family before the table's own rules (others are ignored).
    pub fn with_one_to_one(self, maps: &[OneToOne]) -> NatRules {
        let family = self.family;
        let mine = |m: &&OneToOne| {
            m.public.is_v4() == (family == Family::V4) && m.private.is_v4() == m.public.is_v4()
        };
        let mut pre = Vec::new();
        let mut post = Vec::new();
        for m in maps.iter().filter(mine) {
            let label = format!("1:1 {} <-> {}", m.public, m.private);
            let origin = Origin {
                file: String::new(),
                line: 0,
                label,
            };
            let mut d = FlatRule::any(family, Action::Accept, 0);
            d.dst = (m.public, m.public);
            let dnat = NatTarget {
                kind: NatKind::Dnat,
                range: NatRange::to_addr(m.private),
                origin: 0,
            };
            pre.push((d, dnat, origin.clone()));
            let mut s = FlatRule::any(family, Action::Accept, 0);
            s.src = (m.private, m.private);
            let snat = NatTarget {
                kind: NatKind::Snat,
                range: NatRange::to_addr(m.public),
                origin: 0,
            };
            post.push((s, snat, origin));
        }
        NatRules {
            family,
            prerouting: self.prerouting.prepend(pre),
            postrouting: self.postrouting.prepend(post),
        }
    }

    /// The steering tables for `workers` workers: DNAT rules publish the endpoints they match
    /// (destination addresses, protocols, destination ports) and make their targets private
    /// servers; SNAT ranges and `masquerade` (the port addresses) are pools.
    pub fn steering(&self, workers: u16, masquerade: &[IpAddr128]) -> Steering {
        let mut s = Steering::new(workers);
        let pre = &self.prerouting;
        for (i, r) in pre.rules.rules.iter().enumerate() {
            let t = pre.target_of(i);
            let Some((t, _)) = pre.targets.get(t as usize) else {
                continue;
            };
            s.add_published(Published {
                addrs: r.dst,
                protos: r.proto,
                ports: r.dport,
            });
            if t.kind == NatKind::Redirect {
                // The servers are the ports' own addresses (the ingress port's, per packet).
                for a in masquerade
                    .iter()
                    .filter(|a| a.is_v4() == (self.family == Family::V4))
                {
                    s.add_target((*a, *a));
                }
                continue;
            }
            // A ports-only DNAT keeps the address: the server is the published address.
            // NETMAP's targets are its prefix.
            s.add_target(t.range.addrs.unwrap_or(r.dst));
        }
        let post = &self.postrouting;
        for (i, r) in post.rules.rules.iter().enumerate() {
            let t = post.target_of(i);
            if let Some((t, _)) = post.targets.get(t as usize) {
                if matches!(t.kind, NatKind::Snat | NatKind::Netmap) {
                    s.add_pool(t.range.addrs.unwrap_or(r.src));
                }
            }
        }
        for a in masquerade {
            if a.is_v4() == (self.family == Family::V4) {
                s.add_pool((*a, *a));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ct;
    use crate::wire::{ip_proto, FlowKey};
    use std::net::Ipv4Addr;

    fn a(x: [u8; 4]) -> IpAddr128 {
        IpAddr128::from_v4(Ipv4Addr::from(x))
    }

    fn meta(k: FlowKey) -> PacketMeta {
        PacketMeta {
            key: k,
            in_port: 0,
            out_port: 1,
            ct_state: ct::NEW,
            tcp_flags: 0x02,
            later_fragment: false,
        }
    }

    fn origin(label: &str) -> Origin {
        Origin {
            file: "t".into(),
            line: 1,
            label: label.into(),
        }
    }

    /// POSTROUTING: -p udp -j RETURN; -s 10.0.0.0/8 -j MASQUERADE; policy ACCEPT.
    fn post_chain() -> NatChain {
        let f = Family::V4;
        let mut ret = FlatRule::any(f, Action::ContinueAt(2), 0);
        ret.proto = (ip_proto::UDP, ip_proto::UDP);
        let mut masq = FlatRule::any(f, Action::Accept, 1);
        masq.src = (a([10, 0, 0, 0]), a([10, 255, 255, 255]));
        let policy = FlatRule::any(f, Action::Accept, 2);
        let rules = RuleSet::new(
            f,
            vec![ret, masq, policy],
            vec![origin("r"), origin("m"), origin("p")],
            Vec::new(),
        );
        let target = NatTarget {
            kind: NatKind::Masquerade,
            range: NatRange {
                addrs: None,
                ports: Some((1024, 2047)),
                random: false,
                random_fully: true,
                persistent: false,
            },
            origin: 1,
        };
        NatChain::new(rules, vec![NO_NAT, 0, NO_NAT], vec![target]).unwrap()
    }

    #[test]
    fn first_match_with_return_and_policy() {
        let c = post_chain();
        let tcp = FlowKey::new_v4([10, 1, 2, 3].into(), [8, 8, 8, 8].into(), 6, 1000, 443);
        let (d, j) = c.decide(&meta(tcp), |_, _, _| {});
        let NatDecision::Translate(t) = d else {
            panic!("{d:?}")
        };
        assert_eq!((t.kind, j.rule), (NatKind::Masquerade, 1));
        let r = t.resolve(Some(a([203, 0, 113, 1]))).unwrap();
        assert_eq!(r.addrs, Some((a([203, 0, 113, 1]), a([203, 0, 113, 1]))));
        assert!(r.random_fully && r.ports == Some((1024, 2047)));
        assert_eq!(t.resolve(None), None, "no port address: no masquerade");
        let udp = FlowKey {
            proto: ip_proto::UDP,
            ..tcp
        };
        // RETURN from the built-in chain reaches the policy: the MASQUERADE is skipped.
        assert_eq!(c.decide(&meta(udp), |_, _, _| {}).0, NatDecision::Keep);
        let outside = FlowKey::new_v4([192, 0, 2, 1].into(), [8, 8, 8, 8].into(), 6, 1, 2);
        assert_eq!(c.decide(&meta(outside), |_, _, _| {}).0, NatDecision::Keep);
    }

    #[test]
    fn bad_chains_are_refused() {
        let f = Family::V4;
        let mk = |rules: Vec<FlatRule>| {
            let n = rules.len();
            RuleSet::new(f, rules, vec![origin("x"); n], Vec::new())
        };
        let any = FlatRule::any(f, Action::Accept, 0);
        assert_eq!(
            NatChain::new(mk(vec![any.clone()]), vec![], vec![]).unwrap_err(),
            NatChainError::Length { rules: 1, got: 0 }
        );
        assert!(matches!(
            NatChain::new(mk(vec![any.clone()]), vec![3], vec![]),
            Err(NatChainError::Target { .. })
        ));
        let mut partial = any.clone();
        partial.proto = (6, 6);
        assert_eq!(
            NatChain::new(mk(vec![partial]), vec![NO_NAT], vec![]).unwrap_err(),
            NatChainError::NoCatchAll
        );
        let log = FlatRule::any(f, Action::Log(0), 0);
        let t = NatTarget {
            kind: NatKind::Snat,
            range: NatRange::to_addr(a([1, 2, 3, 4])),
            origin: 0,
        };
        assert_eq!(
            NatChain::new(mk(vec![log, any]), vec![0, NO_NAT], vec![t]).unwrap_err(),
            NatChainError::NotTerminal { rule: 0 }
        );
    }

    #[test]
    fn one_to_one_goes_first_and_shifts_returns() {
        let rules = NatRules {
            family: Family::V4,
            prerouting: NatChain::accept_all(Family::V4, "t", "policy"),
            postrouting: post_chain(),
        }
        .with_one_to_one(&[
            OneToOne {
                public: a([203, 0, 113, 50]),
                private: a([10, 0, 0, 50]),
            },
            OneToOne {
                public: IpAddr128::from_v6("2001:db8::50".parse().unwrap()),
                private: IpAddr128::from_v6("fd00::50".parse().unwrap()),
            },
        ]);
        let inbound = FlowKey::new_v4(
            [198, 51, 100, 7].into(),
            [203, 0, 113, 50].into(),
            6,
            999,
            22,
        );
        let NatDecision::Translate(t) = rules.prerouting.decide(&meta(inbound), |_, _, _| {}).0
        else {
            panic!()
        };
        assert_eq!(
            (t.kind, t.range.addrs),
            (NatKind::Dnat, Some((a([10, 0, 0, 50]), a([10, 0, 0, 50]))))
        );
        let outbound = FlowKey::new_v4([10, 0, 0, 50].into(), [8, 8, 8, 8].into(), 17, 5, 53);
        let NatDecision::Translate(t) = rules.postrouting.decide(&meta(outbound), |_, _, _| {}).0
        else {
            panic!()
        };
        assert_eq!(
            t.kind,
            NatKind::Snat,
            "the 1:1 rule precedes the file's RETURN"
        );
        // The file's RETURN still lands on the policy after the shift.
        let other = FlowKey::new_v4([10, 0, 0, 51].into(), [8, 8, 8, 8].into(), 17, 5, 53);
        assert_eq!(
            rules.postrouting.decide(&meta(other), |_, _, _| {}).0,
            NatDecision::Keep
        );
        assert_eq!(
            rules.postrouting.rule_set().rules.len(),
            4,
            "v6 mapping skipped"
        );

        let s = rules.steering(2, &[a([203, 0, 113, 1])]);
        assert!(s.is_fully_published(&a([203, 0, 113, 50]), 6));
        let reply = FlowKey::new_v4([8, 8, 8, 8].into(), [203, 0, 113, 1].into(), 6, 443, 1500);
        assert_eq!(
            s.steer(&reply),
            crate::nat::steer::Steer::Worker(s.owner_of(&a([203, 0, 113, 1]), 1500))
        );
    }

    mod quick {
        use super::*;
        use crate::classify::FragMatch;
        use proptest::prelude::*;

        /// A narrow value space, so that ranges and packets meet often.
        fn addr(v6: bool, x: u8) -> IpAddr128 {
            if v6 {
                let mut b = [0u8; 16];
                b[0] = 0xfd;
                b[15] = x;
                IpAddr128(b)
            } else {
                IpAddr128::from_v4_octets([10, 0, 0, x])
            }
        }

        fn range<T: Ord + Copy>(a: T, b: T) -> (T, T) {
            (a.min(b), a.max(b))
        }

        prop_compose! {
            /// A rule whose fields are each left open or narrowed, with any of the actions
            /// (and targets) a nat chain holds.
            fn rule(v6: bool, len: usize)(
                open in any::<u16>(),
                a in any::<[u8; 4]>(),
                p in any::<[u16; 4]>(),
                ports in any::<[u32; 2]>(),
                ct in 0u8..32,
                flags in any::<(u8, u8)>(),
                frag in 0u8..3,
                act in 0u8..4,
                next in 0usize..20,
                target in 0u32..3,
            ) -> (FlatRule, u32) {
                let f = if v6 { Family::V6 } else { Family::V4 };
                let action = match act {
                    0 => Action::Drop,
                    1 => Action::ContinueAt(next.min(len) as u32),
                    _ => Action::Accept,
                };
                let mut r = FlatRule::any(f, action, 0);
                let pr = [0u8, 6, 17, 255];
                if open & 1 != 0 { r.src = range(addr(v6, a[0] % 8), addr(v6, a[1] % 8)); }
                if open & 2 != 0 { r.dst = range(addr(v6, a[2] % 8), addr(v6, a[3] % 8)); }
                if open & 4 != 0 { r.proto = range(pr[p[0] as usize % 4], pr[p[1] as usize % 4]); }
                if open & 8 != 0 { r.sport = range(p[0] % 8, p[1] % 8); }
                if open & 16 != 0 { r.dport = range(p[2] % 8, p[3] % 8); }
                if open & 32 != 0 { r.in_ports = ports[0] & 0xf; }
                if open & 64 != 0 { r.out_ports = ports[1] & 0xf; }
                if open & 128 != 0 { r.ct_states = ct; }
                if open & 256 != 0 { r.tcp_flags = Some((flags.0 & 0x3f, flags.1 & 0x3f)); }
                if open & 512 != 0 {
                    r.frag = [FragMatch::Any, FragMatch::LaterOnly, FragMatch::NotLater]
                        [frag as usize];
                }
                let t = if act == 3 { target } else { NO_NAT };
                let t = if matches!(r.action, Action::Accept) { t } else { NO_NAT };
                (r, t)
            }
        }

        prop_compose! {
            fn packet(v6: bool)(
                a in any::<[u8; 2]>(),
                p in any::<[u16; 2]>(),
                pr in 0usize..4,
                ports in any::<(u8, u8)>(),
                ct in 0u8..6,
                flags in any::<u8>(),
                later in any::<bool>(),
            ) -> PacketMeta {
                let f = if v6 { Family::V6 } else { Family::V4 };
                PacketMeta {
                    key: FlowKey {
                        family: f,
                        src: addr(v6, a[0] % 8),
                        dst: addr(v6, a[1] % 8),
                        proto: [0u8, 6, 17, 255][pr],
                        src_port: p[0] % 8,
                        dst_port: p[1] % 8,
                    },
                    in_port: ports.0 % 5,
                    out_port: ports.1 % 5,
                    ct_state: if ct == 5 { 0 } else { 1 << ct },
                    tcp_flags: flags & 0x3f,
                    later_fragment: later,
                }
            }
        }

        fn chain(v6: bool, mut rules: Vec<(FlatRule, u32)>, policy_drop: bool) -> NatChain {
            let f = if v6 { Family::V6 } else { Family::V4 };
            let n = rules.len();
            for (i, (r, _)) in rules.iter_mut().enumerate() {
                // A RETURN goes forward, or to the end (the policy).
                if let Action::ContinueAt(next) = r.action {
                    r.action = Action::ContinueAt((next as usize).clamp(i + 1, n) as u32);
                }
            }
            let action = if policy_drop {
                Action::Drop
            } else {
                Action::Accept
            };
            rules.push((FlatRule::any(f, action, 0), NO_NAT));
            let origins = (0..rules.len()).map(|i| origin(&i.to_string())).collect();
            let (flat, target_of): (Vec<_>, Vec<_>) = rules.into_iter().unzip();
            let target = |kind| NatTarget {
                kind,
                range: NatRange::to_addr(addr(v6, 99)),
                origin: 0,
            };
            let targets = vec![
                target(NatKind::Snat),
                target(NatKind::Masquerade),
                target(NatKind::Dnat),
            ];
            NatChain::new(
                RuleSet::new(f, flat, origins, Vec::new()),
                target_of,
                targets,
            )
            .unwrap()
        }

        proptest! {
            /// The quick scan decides as the rule set's evaluation does, for any short chain
            /// of any rules, and for packets of the other family too.
            #[test]
            fn decides_as_the_classifier(
                v6 in any::<bool>(),
                rules in (0usize..8).prop_flat_map(|n| {
                    proptest::collection::vec(rule(false, n), n)
                }),
                rules6 in (0usize..8).prop_flat_map(|n| {
                    proptest::collection::vec(rule(true, n), n)
                }),
                policy_drop in any::<bool>(),
                pkts in proptest::collection::vec(packet(false), 16),
                pkts6 in proptest::collection::vec(packet(true), 16),
            ) {
                let c = if v6 { chain(true, rules6, policy_drop) } else { chain(false, rules, policy_drop) };
                prop_assert!(c.quick.is_some());
                for m in pkts.iter().chain(&pkts6) {
                    prop_assert_eq!(c.decide_first(m), c.decide(m, |_, _, _| {}).0, "{:?}", m);
                }
            }
        }

        #[test]
        fn long_chains_use_the_classifier() {
            let any = FlatRule::any(Family::V4, Action::Accept, 0);
            let n = QUICK_MAX_RULES + 1;
            let rules = RuleSet::new(
                Family::V4,
                vec![any; n],
                (0..n).map(|i| origin(&i.to_string())).collect(),
                Vec::new(),
            );
            let c = NatChain::new(rules, vec![NO_NAT; n], Vec::new()).unwrap();
            assert!(c.quick.is_none());
            let k = FlowKey::new_v4([10, 0, 0, 1].into(), [8, 8, 8, 8].into(), 6, 1, 2);
            assert_eq!(c.decide_first(&meta(k)), NatDecision::Keep);
            assert!(post_chain().quick.is_some());
        }
    }
}
