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

use super::alloc::{Manip, NatRange};
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
}

impl NatKind {
    pub fn name(self) -> &'static str {
        match self {
            NatKind::Snat => "SNAT",
            NatKind::Dnat => "DNAT",
            NatKind::Masquerade => "MASQUERADE",
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
    pub fn manip(&self) -> Manip {
        match self.kind {
            NatKind::Dnat => Manip::Dst,
            NatKind::Snat | NatKind::Masquerade => Manip::Src,
        }
    }

    /// The range to translate to. MASQUERADE needs `port_addr`, the out port's address of the
    /// connection's family; without one the connection cannot be translated (`None`; Linux
    /// drops it too).
    pub fn resolve(&self, port_addr: Option<IpAddr128>) -> Option<NatRange> {
        match self.kind {
            NatKind::Masquerade => port_addr.map(|a| NatRange {
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
    targets: Vec<NatTarget>,
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
        Ok(NatChain {
            rules,
            target_of,
            targets,
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
        NatChain {
            rules,
            target_of: vec![NO_NAT],
            targets: Vec::new(),
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

    pub fn targets(&self) -> &[NatTarget] {
        &self.targets
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
                t => NatDecision::Translate(&self.targets[t as usize]),
            },
            _ => NatDecision::Drop,
        };
        (d, j)
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
        let mut targets = self.targets;
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
        NatChain {
            rules: RuleSet::with_shared_origins(family, out, origins, logs),
            target_of,
            targets,
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
            let Some(t) = pre.targets.get(t as usize) else {
                continue;
            };
            s.add_published(Published {
                addrs: r.dst,
                protos: r.proto,
                ports: r.dport,
            });
            // A ports-only DNAT keeps the address: the server is the published address.
            s.add_target(t.range.addrs.unwrap_or(r.dst));
        }
        let post = &self.postrouting;
        for (i, r) in post.rules.rules.iter().enumerate() {
            let t = post.target_of(i);
            if let Some(t) = post.targets.get(t as usize) {
                if t.kind == NatKind::Snat {
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
}
