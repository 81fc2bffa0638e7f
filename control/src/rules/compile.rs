//! Flattening one built-in chain of the filter table into a [`RuleSet`].
//!
//! A rule's match is turned into a union of *cubes*: conjunctions with one interval per field
//! (addresses, protocol, ports), port and state masks, at most one TCP flag test and a
//! fragment condition, each the shape of one [`FlatRule`]. Negation is a complement (so `!`
//! over a prefix gives up to two intervals, `! --syn` one cube per flag bit), conjunction is
//! the pairwise intersection of cubes, with empty ones dropped. Each cube of a rule becomes one
//! flat rule with the rule's action; they are consecutive and share the rule's origin, and since
//! a packet matching any of them is exactly a packet matching the rule, first-match order is
//! kept. Every condition's cubes are pairwise disjoint (a complement is a set of disjoint
//! intervals; `--ports` is "source port in the list, else destination port in it"; `! --tcp-flags`
//! splits on the first differing flag), so a rule's cubes, as products of disjoint unions, are
//! disjoint too: a packet matches at most one of them, and a LOG rule logs it once.
//!
//! Chains are inlined at each jump under the jump's own match (the context): `RETURN` becomes
//! `ContinueAt(end of the inlined section)`, falling off the end of a chain simply reaches the
//! rule after its section, `-g` inlines with the caller's return point and adds one rule that
//! sends whatever falls off the goto'd chain there, and `RETURN` in the built-in chain goes to
//! the policy, which ends the set as a catch-all.
//!
//! Invariants of the output: every `ContinueAt` points forward (past its own rule), the last
//! rule is a terminal catch-all, and no `ContinueAt` points at the rule right after it (those
//! are no-ops and are removed, so a packet takes as few continue steps as possible).

use super::ast::*;
use super::parse::Ctx;
use super::RuleError;
use dataplane::classify::{ct, Action, Check, FlatRule, FragMatch, LogSpec, Origin, ANY_PORT};
use dataplane::nat::rules::NO_NAT;
use dataplane::nat::{NatKind, NatRange, NatTarget};
use dataplane::wire::{Family, IpAddr128};
use std::collections::HashMap;

/// Most flat rules a rule set may have after inlining.
pub const MAX_FLAT_RULES: usize = 1_000_000;
/// Most cubes one rule's match may expand to (under the context of the jumps leading to it).
pub const MAX_RULE_ALTERNATIVES: usize = 65_536;
/// Deepest nesting of jumps (user chains calling user chains).
pub const MAX_JUMP_DEPTH: usize = 128;

type Iv = (u128, u128);

/// One conjunction of per-field conditions: the shape of a [`FlatRule`]'s match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cube {
    src: Iv,
    dst: Iv,
    proto: Iv,
    sport: Iv,
    dport: Iv,
    inp: u32,
    outp: u32,
    ct: u8,
    flags: Option<(u8, u8)>,
    frag: FragMatch,
}

const PORTS: Iv = (0, u16::MAX as u128);
const PROTOS: Iv = (0, u8::MAX as u128);
const TCP: u128 = 6;

fn addr_universe(family: Family) -> Iv {
    let a = FlatRule::any(family, Action::Accept, 0);
    (
        u128::from_be_bytes(a.src.0 .0),
        u128::from_be_bytes(a.src.1 .0),
    )
}

fn iv_meet(a: Iv, b: Iv) -> Option<Iv> {
    let lo = a.0.max(b.0);
    let hi = a.1.min(b.1);
    (lo <= hi).then_some((lo, hi))
}

/// Sorted, merged intervals.
fn normalize(mut set: Vec<Iv>) -> Vec<Iv> {
    set.sort_unstable();
    let mut out: Vec<Iv> = Vec::with_capacity(set.len());
    for iv in set {
        match out.last_mut() {
            Some(last) if iv.0 <= last.1.saturating_add(1) => last.1 = last.1.max(iv.1),
            _ => out.push(iv),
        }
    }
    out
}

/// The parts of `universe` not covered by `set`.
fn complement(set: Vec<Iv>, universe: Iv) -> Vec<Iv> {
    let mut out = Vec::new();
    let mut next = Some(universe.0);
    for (lo, hi) in normalize(set) {
        let Some((lo, hi)) = iv_meet((lo, hi), universe) else {
            continue;
        };
        if let Some(n) = next {
            if lo > n {
                out.push((n, lo - 1));
            }
        }
        next = if hi >= universe.1 { None } else { Some(hi + 1) };
    }
    if let Some(n) = next {
        out.push((n, universe.1));
    }
    out
}

fn frag_meet(a: FragMatch, b: FragMatch) -> Option<FragMatch> {
    match (a, b) {
        (FragMatch::Any, x) | (x, FragMatch::Any) => Some(x),
        (x, y) if x == y => Some(x),
        _ => None,
    }
}

fn flags_meet(a: Option<(u8, u8)>, b: Option<(u8, u8)>) -> Option<Option<(u8, u8)>> {
    match (a, b) {
        (None, x) | (x, None) => Some(x),
        (Some((m1, v1)), Some((m2, v2))) => {
            ((v1 ^ v2) & m1 & m2 == 0).then_some(Some((m1 | m2, v1 | v2)))
        }
    }
}

impl Cube {
    pub(crate) fn full(family: Family) -> Cube {
        let addrs = addr_universe(family);
        Cube {
            src: addrs,
            dst: addrs,
            proto: PROTOS,
            sport: PORTS,
            dport: PORTS,
            inp: ANY_PORT,
            outp: ANY_PORT,
            ct: ct::ANY,
            flags: None,
            frag: FragMatch::Any,
        }
    }

    fn meet(&self, o: &Cube) -> Option<Cube> {
        let c = Cube {
            src: iv_meet(self.src, o.src)?,
            dst: iv_meet(self.dst, o.dst)?,
            proto: iv_meet(self.proto, o.proto)?,
            sport: iv_meet(self.sport, o.sport)?,
            dport: iv_meet(self.dport, o.dport)?,
            inp: self.inp & o.inp,
            outp: self.outp & o.outp,
            ct: self.ct & o.ct,
            flags: flags_meet(self.flags, o.flags)?,
            frag: frag_meet(self.frag, o.frag)?,
        };
        let tcp_possible = c.proto.0 <= TCP && TCP <= c.proto.1;
        let flags_possible = c.flags.is_none() || (tcp_possible && c.frag != FragMatch::LaterOnly);
        (c.inp != 0 && c.outp != 0 && c.ct != 0 && flags_possible).then_some(c)
    }

    fn to_flat(self, family: Family, action: Action, origin: u32) -> FlatRule {
        let a = |v: u128| IpAddr128(v.to_be_bytes());
        // Ranges were intersected with their universes, so the narrowing casts are exact.
        FlatRule {
            family,
            src: (a(self.src.0), a(self.src.1)),
            dst: (a(self.dst.0), a(self.dst.1)),
            proto: (self.proto.0 as u8, self.proto.1 as u8),
            sport: (self.sport.0 as u16, self.sport.1 as u16),
            dport: (self.dport.0 as u16, self.dport.1 as u16),
            in_ports: self.inp,
            out_ports: self.outp,
            ct_states: self.ct,
            tcp_flags: self.flags,
            frag: self.frag,
            action,
            origin,
            checks: None,
        }
    }
}

/// The intervals of `a` outside `b` (sorted, merged).
pub(crate) fn subtract(a: Vec<Iv>, b: &[Iv]) -> Vec<Iv> {
    intersect(&normalize(a), &complement(b.to_vec(), (0, u128::MAX)))
}

/// The intervals in both `a` and `b` (sorted, merged).
pub(crate) fn intersect(a: &[Iv], b: &[Iv]) -> Vec<Iv> {
    normalize(
        a.iter()
            .flat_map(|&x| b.iter().filter_map(move |&y| iv_meet(x, y)))
            .collect(),
    )
}

/// The cube of a check: TCP option checks, like Linux's TCP matches, never match a non-first
/// fragment; the others look at headers every fragment has.
fn check_cube(full: Cube, c: &Check) -> Cube {
    match c {
        Check::TcpMss { .. } | Check::TcpOption { .. } => Cube {
            frag: FragMatch::NotLater,
            ..full
        },
        _ => full,
    }
}

/// The checks of a rule's own matches (a limit's slot left 0: the flattener gives it).
pub(crate) fn rule_checks(rule: &Rule) -> Vec<Check> {
    let mut out = Vec::new();
    for m in &rule.matches {
        match &m.cond {
            Cond::Check(c) => out.push(c.clone()),
            Cond::Limit { avg, burst } => {
                if let Some((cost, cap)) = dataplane::classify::checks::limit_credits(*avg, *burst)
                {
                    out.push(Check::Limit {
                        slot: 0,
                        cost,
                        cap,
                        invert: false,
                    });
                }
            }
            Cond::Statistic(st) => out.extend(statistic_check(st)),
            _ => {}
        }
    }
    out
}

/// `-m statistic` as a check (its nth slot given by the flattener).
fn statistic_check(st: &Statistic) -> Option<Check> {
    match st.random? {
        true => Some(Check::Random {
            probability: st.probability?,
            invert: st.invert,
        }),
        false => {
            let every = st.every?.checked_sub(1)?;
            Some(Check::Nth {
                slot: 0,
                every,
                start: every.checked_sub(st.packet.unwrap_or(0))?,
                invert: st.invert,
            })
        }
    }
}

/// The checks drawn once per packet where they are asked (a limit's bucket, a statistic
/// draw): on a jump they are asked once, by a gate before the inlined chain.
fn is_draw(c: &Check) -> bool {
    matches!(
        c,
        Check::Limit { .. }
            | Check::Random { .. }
            | Check::Nth { .. }
            | Check::Quota { .. }
            | Check::HashLimit(_)
            | Check::ConnLimit(_)
            | Check::NfAcct { .. }
    )
}

/// A draw check negated (what a gate asks).
fn inverted(c: Check) -> Check {
    match c {
        Check::Limit {
            slot,
            cost,
            cap,
            invert,
        } => Check::Limit {
            slot,
            cost,
            cap,
            invert: !invert,
        },
        Check::Random {
            probability,
            invert,
        } => Check::Random {
            probability,
            invert: !invert,
        },
        Check::Nth {
            slot,
            every,
            start,
            invert,
        } => Check::Nth {
            slot,
            every,
            start,
            invert: !invert,
        },
        Check::Quota {
            slot,
            bytes,
            invert,
        } => Check::Quota {
            slot,
            bytes,
            invert: !invert,
        },
        Check::HashLimit(m) => Check::HashLimit(std::sync::Arc::new(
            dataplane::classify::hashlimit::HashLimitMatch {
                table: m.table.clone(),
                above: !m.above,
            },
        )),
        Check::NfAcct { acct, invert } => Check::NfAcct {
            acct,
            invert: !invert,
        },
        Check::ConnLimit(m) => Check::ConnLimit(std::sync::Arc::new(
            dataplane::classify::connlimit::ConnLimitMatch {
                above: !m.above,
                ..(*m).clone()
            },
        )),
        c => c,
    }
}

fn addr_iv(r: &AddrRange) -> Iv {
    (u128::from_be_bytes(r.lo.0), u128::from_be_bytes(r.hi.0))
}

fn port_ivs(r: &[PortRange]) -> Vec<Iv> {
    r.iter()
        .map(|&(lo, hi)| (u128::from(lo), u128::from(hi)))
        .collect()
}

/// The cubes whose union is exactly the packets `m` matches (as Linux evaluates it).
pub(crate) fn match_cubes(family: Family, m: &Match) -> Vec<Cube> {
    let full = Cube::full(family);
    let neg = m.negated;
    let pick = |ivs: Vec<Iv>, universe: Iv| {
        if neg {
            complement(ivs, universe)
        } else {
            normalize(ivs)
        }
    };
    let field = |ivs: Vec<Iv>, frag: FragMatch, set: fn(&mut Cube, Iv)| -> Vec<Cube> {
        ivs.into_iter()
            .map(|iv| {
                let mut c = full;
                set(&mut c, iv);
                c.frag = frag;
                c
            })
            .collect()
    };
    let one = |f: &dyn Fn(&mut Cube)| {
        let mut c = full;
        f(&mut c);
        vec![c]
    };
    let l4 = FragMatch::NotLater;
    let addrs = addr_universe(family);
    match &m.cond {
        Cond::Source(nets) => field(
            pick(nets.iter().map(addr_iv).collect(), addrs),
            FragMatch::Any,
            |c, v| c.src = v,
        ),
        Cond::Destination(nets) => field(
            pick(nets.iter().map(addr_iv).collect(), addrs),
            FragMatch::Any,
            |c, v| c.dst = v,
        ),
        Cond::SourceRange(r) => field(pick(vec![addr_iv(r)], addrs), FragMatch::Any, |c, v| {
            c.src = v
        }),
        Cond::DestinationRange(r) => {
            field(pick(vec![addr_iv(r)], addrs), FragMatch::Any, |c, v| {
                c.dst = v
            })
        }
        Cond::Protocol(p) => {
            let ivs = match p {
                None => vec![PROTOS],
                Some(p) => vec![(u128::from(*p), u128::from(*p))],
            };
            field(pick(ivs, PROTOS), FragMatch::Any, |c, v| c.proto = v)
        }
        Cond::InInterface(i) => one(&|c| c.inp = if neg { !i.mask } else { i.mask }),
        Cond::OutInterface(i) => one(&|c| c.outp = if neg { !i.mask } else { i.mask }),
        Cond::Fragment => one(&|c| {
            c.frag = if neg {
                FragMatch::NotLater
            } else {
                FragMatch::LaterOnly
            }
        }),
        Cond::Module(module) => one(&|c| {
            if module.is_l4() {
                c.frag = l4;
            }
        }),
        Cond::SourcePorts(r) => field(pick(port_ivs(r), PORTS), l4, |c, v| c.sport = v),
        Cond::DestinationPorts(r) => field(pick(port_ivs(r), PORTS), l4, |c, v| c.dport = v),
        Cond::Ports(r) => {
            if neg {
                // Neither port is in the list.
                let outside = complement(port_ivs(r), PORTS);
                let mut out = Vec::new();
                for &s in &outside {
                    for &d in &outside {
                        out.push(Cube {
                            sport: s,
                            dport: d,
                            frag: l4,
                            ..full
                        });
                    }
                }
                out
            } else {
                // The source port is in the list, or else the destination port is (disjoint).
                let ivs = normalize(port_ivs(r));
                let mut out = field(ivs.clone(), l4, |c, v| c.sport = v);
                for s in complement(ivs.clone(), PORTS) {
                    for &d in &ivs {
                        out.push(Cube {
                            sport: s,
                            dport: d,
                            frag: l4,
                            ..full
                        });
                    }
                }
                out
            }
        }
        // SNAT (the bit above `ct::ANY`) is never set: the parser admits it only when nothing
        // can set it.
        Cond::ConnState(bits) => {
            let mask = (*bits & u16::from(ct::ANY)) as u8;
            one(&|c| c.ct = if neg { ct::ANY & !mask } else { mask })
        }
        Cond::TcpFlags { mask, comp } => {
            let (mask, comp) = (*mask, *comp);
            let satisfiable = comp & !mask == 0;
            match (neg, satisfiable) {
                (false, false) => Vec::new(),
                (false, true) => vec![Cube {
                    flags: Some((mask, comp)),
                    frag: l4,
                    ..full
                }],
                (true, false) => vec![Cube {
                    flags: Some((0, 0)),
                    frag: l4,
                    ..full
                }],
                // Some flag of the mask differs from the comparison value: the first such flag
                // is bit b (one disjoint cube per bit of the mask).
                (true, true) => {
                    let mut out = Vec::new();
                    let mut below = 0u8;
                    for bit in (0..8).map(|b| 1u8 << b).filter(|bit| mask & bit != 0) {
                        out.push(Cube {
                            flags: Some((below | bit, (comp & below) | (!comp & bit))),
                            frag: l4,
                            ..full
                        });
                        below |= bit;
                    }
                    out
                }
            }
        }
        Cond::Icmp(IcmpMatch::Any) => {
            if neg {
                Vec::new()
            } else {
                vec![Cube { frag: l4, ..full }]
            }
        }
        Cond::Icmp(IcmpMatch::Type {
            ty,
            code_lo,
            code_hi,
        }) => {
            let t = u128::from(*ty) << 8;
            field(
                pick(
                    vec![(t | u128::from(*code_lo), t | u128::from(*code_hi))],
                    PORTS,
                ),
                l4,
                |c, v| c.dport = v,
            )
        }
        Cond::Comment(_) | Cond::Limit { .. } | Cond::Statistic(_) => vec![full],
        Cond::Check(c) => vec![check_cube(full, c)],
        Cond::AddrType { dst, out, alts } => {
            let mut cubes = Vec::new();
            for (mask, set) in alts {
                for iv in pick(set.iter().map(addr_iv).collect(), addrs) {
                    let mut c = full;
                    if *out {
                        c.outp = *mask;
                    } else {
                        c.inp = *mask;
                    }
                    if *dst {
                        c.dst = iv;
                    } else {
                        c.src = iv;
                    }
                    cubes.push(c);
                }
            }
            cubes
        }
        // At FORWARD, the filter's hook in both modes; other hooks in `cubes_at_hook`.
        Cond::PhysDev(p) => physdev_cubes(full, p, HookPoint::Forward),
    }
}

/// `-m physdev` at `hook`: one cube with its port sets, or none when it never holds there.
fn physdev_cubes(full: Cube, p: &PhysDev, hook: HookPoint) -> Vec<Cube> {
    match p.at(hook) {
        None => Vec::new(),
        Some((inp, out)) => {
            let mut c = full;
            if let Some(m) = inp {
                c.inp &= m;
            }
            if let Some(m) = out {
                c.outp &= m;
            }
            vec![c]
        }
    }
}

/// Pairwise intersections of two unions of cubes; `None` when there would be more than `limit`.
/// Disjoint inputs give disjoint outputs (so no duplicates either).
pub(crate) fn meet_all(a: &[Cube], b: &[Cube], limit: usize) -> Option<Vec<Cube>> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            if let Some(c) = x.meet(y) {
                if out.len() >= limit {
                    return None;
                }
                out.push(c);
            }
        }
    }
    Some(out)
}

/// The cubes of a whole rule (the conjunction of its matches).
pub(crate) fn rule_cubes(family: Family, matches: &[Match]) -> Option<Vec<Cube>> {
    // While the conjunction is one cube and each match is one cube, no list is needed: this is
    // `meet_all` of one cube with one cube.
    let mut one = Cube::full(family);
    let mut at = 0;
    while let Some(m) = matches.get(at) {
        let Some(c) = single_cube(family, m) else {
            break;
        };
        match one.meet(&c) {
            Some(x) => one = x,
            None => return Some(Vec::new()),
        }
        at += 1;
    }
    let mut acc = vec![one];
    for m in &matches[at..] {
        acc = meet_all(&acc, &match_cubes(family, m), MAX_RULE_ALTERNATIVES)?;
        if acc.is_empty() {
            break;
        }
    }
    Some(acc)
}

/// [`match_cubes`] for the matches that are always exactly one cube, without allocating;
/// `None` for the others.
fn single_cube(family: Family, m: &Match) -> Option<Cube> {
    let full = Cube::full(family);
    let neg = m.negated;
    let l4 = FragMatch::NotLater;
    let one = |f: &dyn Fn(&mut Cube)| {
        let mut c = full;
        f(&mut c);
        Some(c)
    };
    match &m.cond {
        Cond::Source(nets) if !neg && nets.len() == 1 => one(&|c| c.src = addr_iv(&nets[0])),
        Cond::Destination(nets) if !neg && nets.len() == 1 => one(&|c| c.dst = addr_iv(&nets[0])),
        Cond::SourceRange(r) if !neg => one(&|c| c.src = addr_iv(r)),
        Cond::DestinationRange(r) if !neg => one(&|c| c.dst = addr_iv(r)),
        Cond::Protocol(p) if !neg => one(&|c| {
            c.proto = p.map_or(PROTOS, |p| (u128::from(p), u128::from(p)));
        }),
        Cond::SourcePorts(r) if !neg && r.len() == 1 => one(&|c| {
            c.sport = (u128::from(r[0].0), u128::from(r[0].1));
            c.frag = l4;
        }),
        Cond::DestinationPorts(r) if !neg && r.len() == 1 => one(&|c| {
            c.dport = (u128::from(r[0].0), u128::from(r[0].1));
            c.frag = l4;
        }),
        // As in `match_cubes`.
        Cond::InInterface(i) => one(&|c| c.inp = if neg { !i.mask } else { i.mask }),
        Cond::OutInterface(i) => one(&|c| c.outp = if neg { !i.mask } else { i.mask }),
        Cond::Fragment => one(&|c| {
            c.frag = if neg {
                FragMatch::NotLater
            } else {
                FragMatch::LaterOnly
            }
        }),
        Cond::Module(module) => one(&|c| {
            if module.is_l4() {
                c.frag = l4;
            }
        }),
        // SNAT (the bit above `ct::ANY`) is never set: the parser admits it only when nothing
        // can set it.
        Cond::ConnState(bits) => {
            let mask = (*bits & u16::from(ct::ANY)) as u8;
            one(&|c| c.ct = if neg { ct::ANY & !mask } else { mask })
        }
        Cond::Comment(_) | Cond::Limit { .. } | Cond::Statistic(_) => Some(full),
        Cond::Check(c) => Some(check_cube(full, c)),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Pending {
    Act(Action),
    /// Continue at a label's position, known once its section has been emitted.
    Continue(usize),
}

/// Which table a chain is flattened for: the filter table's targets, or the nat table's, whose
/// SNAT/DNAT/MASQUERADE rules become terminal `Accept`s tagged with their [`NatTarget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlattenFor {
    Filter,
    Nat,
}

/// A flattened chain: the rule set's parts, and for each flat rule its NAT target index
/// ([`NO_NAT`] for all but the nat table's translating rules).
pub(crate) struct Flat {
    pub rules: Vec<FlatRule>,
    pub origins: Vec<Origin>,
    pub logs: Vec<LogSpec>,
    pub nat_of: Vec<u32>,
    pub nat_targets: Vec<NatTarget>,
}

/// What an [`Origin`] is made of, without its strings: equal keys of one table (same chains)
/// give equal origins, so a reload can keep the origins it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OriginKey {
    Rule {
        chain: u32,
        line: u32,
        number: u32,
    },
    Policy {
        hook: HookPoint,
        line: u32,
        policy: Policy,
    },
}

/// [`Flat`] with its origins as keys ([`origins`] makes them).
pub(crate) struct FlatKeys {
    pub rules: Vec<FlatRule>,
    pub origin_keys: Vec<OriginKey>,
    pub logs: Vec<LogSpec>,
    pub nat_of: Vec<u32>,
    pub nat_targets: Vec<NatTarget>,
    /// Where each rule of the built-in chain starts, when [`patch`] can change them.
    pub roots: Option<Roots>,
}

/// For each rule of the built-in chain (and one past the last: the policy), the number of flat
/// rules, origins and logs made before it. Kept for a filter-mode chain with no `RETURN` and no
/// `-g` among its own rules: then every continue lies inside one rule's inlined section and
/// targets its end, so a rule's flat rules depend on nothing after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Roots {
    chain: usize,
    starts: Vec<u32>,
    origins: Vec<u32>,
    logs: Vec<u32>,
}

/// `prev` (of a table no rule of which changed) with the line numbers of its origins from
/// `from` on moved by `delta`.
pub(crate) fn moved_lines(prev: &FlatKeys, (from, delta): (u32, i64)) -> FlatKeys {
    let moved = |v: u32| {
        if v >= from {
            (i64::from(v) + delta) as u32
        } else {
            v
        }
    };
    FlatKeys {
        rules: prev.rules.clone(),
        origin_keys: prev
            .origin_keys
            .iter()
            .map(|k| match *k {
                OriginKey::Rule {
                    chain,
                    line,
                    number,
                } => OriginKey::Rule {
                    chain,
                    line: moved(line),
                    number,
                },
                OriginKey::Policy { hook, line, policy } => OriginKey::Policy {
                    hook,
                    line: moved(line),
                    policy,
                },
            })
            .collect(),
        logs: prev.logs.clone(),
        nat_of: prev.nat_of.clone(),
        nat_targets: prev.nat_targets.clone(),
        roots: prev.roots.clone(),
    }
}

/// Whether the flat rules of `rule`, in the built-in chain of a table of `kind`, are its own
/// cubes with its own action and origin: an accepted target other than a jump or a return.
pub(crate) fn simple(rule: &Rule, kind: TableKind) -> bool {
    if rule.matches.iter().any(|m| {
        matches!(
            m.cond,
            Cond::Limit { .. } | Cond::Statistic(_) | Cond::Check(Check::Quota { .. })
        )
    }) || super::recent::names_a_list(rule)
    {
        // Its bucket's slot is given by a full flattening.
        return false;
    }
    if rule
        .matches
        .iter()
        .any(|m| matches!(m.cond, Cond::PhysDev(_)))
    {
        // What it is depends on the hook, which `cubes_at_hook` knows.
        return false;
    }
    match &rule.target {
        None => true,
        Some(spec) => match spec.target {
            Target::Accept | Target::Drop | Target::Reject(_) => true,
            Target::Log(_) => kind != TableKind::Raw,
            Target::NoTrack | Target::CtZone(_) => kind == TableKind::Raw,
            _ => false,
        },
    }
}

/// What a built-in chain's flattening ([`flatten_keys`], filter mode) becomes when its rules
/// `at..at + removed` (the `removed` rules, of the old table) are replaced by rules
/// `at..at + inserted` of `table`, all of them simple (no jump, goto or return), and line
/// numbers from `from` on moved by `delta`: the old flat rules with the new rules' section
/// replaced and the later rules' origin, log and continue indexes moved. `None` when that does
/// not apply; then the chain must be flattened again.
#[allow(clippy::too_many_arguments)]
pub(crate) fn patch(
    ctx: &Ctx<'_>,
    table: &Table,
    prev: &FlatKeys,
    chain: usize,
    at: usize,
    removed: &[Rule],
    inserted: usize,
    (from, delta): (u32, i64),
) -> Option<FlatKeys> {
    let roots = prev.roots.as_ref()?;
    if chain != roots.chain {
        return None;
    }
    let new_rules = table.chains.get(chain)?.rules.get(at..at + inserted)?;
    if at + removed.len() >= roots.starts.len()
        || !removed.iter().all(|r| simple(r, table.kind))
        || !new_rules.iter().all(|r| simple(r, table.kind))
    {
        return None;
    }
    let end = at + removed.len();
    let (s0, s1) = (roots.starts[at], roots.starts[end]);
    let (o0, o1) = (roots.origins[at], roots.origins[end]);
    let (l0, l1) = (roots.logs[at], roots.logs[end]);
    // The new rules' section, as `Flattener::chain` makes it under the full context.
    let mut section = Vec::new();
    let mut keys = Vec::new();
    let mut logs = Vec::new();
    let (mut starts, mut origins, mut log_at) = (Vec::new(), Vec::new(), Vec::new());
    for rule in new_rules {
        starts.push(s0 + section.len() as u32);
        origins.push(o0 + keys.len() as u32);
        log_at.push(l0 + logs.len() as u32);
        let Some(spec) = &rule.target else { continue };
        let cubes = rule.cubes.as_deref()?;
        if cubes.is_empty() {
            continue;
        }
        let origin = o0 + keys.len() as u32;
        keys.push(OriginKey::Rule {
            chain: roots.chain as u32,
            line: rule.line,
            number: rule.number,
        });
        let action = match &spec.target {
            Target::Accept => Action::Accept,
            Target::Drop => Action::Drop,
            Target::Reject(w) => Action::Reject(*w),
            Target::NoTrack => Action::NoTrack,
            Target::CtZone(t) => Action::Ct(*t),
            Target::Log(l) => {
                logs.push(l.clone());
                Action::Log(l0 + logs.len() as u32 - 1)
            }
            _ => return None,
        };
        let checks = rule_checks(rule);
        let checks = (!checks.is_empty()).then(|| std::sync::Arc::new(checks));
        section.extend(cubes.iter().map(|c| FlatRule {
            checks: checks.clone(),
            ..c.to_flat(ctx.family, action, origin)
        }));
    }
    let d_flat = i64::from(section.len() as u32) - i64::from(s1 - s0);
    let d_origin = i64::from(keys.len() as u32) - i64::from(o1 - o0);
    let d_log = i64::from(logs.len() as u32) - i64::from(l1 - l0);
    let len = prev.rules.len() as i64 + d_flat;
    // Far below the limit (which counts flat rules before no-op continues are dropped), so
    // the full flattening would not fail on it either.
    if len > (MAX_FLAT_RULES / 2) as i64 {
        return None;
    }
    let moved = |v: u32, from: u32, by: i64| {
        if v >= from {
            (i64::from(v) + by) as u32
        } else {
            v
        }
    };
    let mut rules = Vec::with_capacity(len as usize);
    rules.extend_from_slice(&prev.rules[..s0 as usize]);
    rules.extend(section);
    let tail = &prev.rules[s1 as usize..];
    if d_flat == 0 && d_origin == 0 && d_log == 0 {
        rules.extend_from_slice(tail);
    } else {
        rules.extend(tail.iter().map(|r| {
            let mut r = r.clone();
            r.origin = moved(r.origin, o1, d_origin);
            r.action = match r.action {
                Action::ContinueAt(t) => Action::ContinueAt(moved(t, s1, d_flat)),
                Action::Log(l) => Action::Log(moved(l, l1, d_log)),
                a => a,
            };
            r
        }));
    }
    // Keys: lines from `from` on move by `delta`; this chain's rules after the change by the
    // change in their count.
    let d_number = inserted as i64 - removed.len() as i64;
    let fix = |k: &OriginKey| match *k {
        OriginKey::Rule {
            chain: c,
            line,
            number,
        } => OriginKey::Rule {
            chain: c,
            line: moved(line, from, delta),
            number: if c as usize == roots.chain {
                moved(number, end as u32 + 1, d_number)
            } else {
                number
            },
        },
        OriginKey::Policy { hook, line, policy } => OriginKey::Policy {
            hook,
            line: moved(line, from, delta),
            policy,
        },
    };
    let mut origin_keys: Vec<OriginKey> = prev.origin_keys[..o0 as usize].iter().map(fix).collect();
    origin_keys.extend(keys);
    origin_keys.extend(prev.origin_keys[o1 as usize..].iter().map(fix));
    let mut all_logs = prev.logs[..l0 as usize].to_vec();
    all_logs.extend(logs);
    all_logs.extend_from_slice(&prev.logs[l1 as usize..]);
    let splice = |old: &[u32], new: Vec<u32>, d: i64, from: u32| {
        let mut v = old[..at].to_vec();
        v.extend(new);
        v.extend(old[end..].iter().map(|&x| moved(x, from, d)));
        v
    };
    let roots = Roots {
        chain: roots.chain,
        starts: splice(&roots.starts, starts, d_flat, s1),
        origins: splice(&roots.origins, origins, d_origin, o1),
        logs: splice(&roots.logs, log_at, d_log, l1),
    };
    Some(FlatKeys {
        nat_of: vec![NO_NAT; rules.len()],
        rules,
        origin_keys,
        logs: all_logs,
        nat_targets: Vec::new(),
        roots: Some(roots),
    })
}

/// The origins named by `keys` (of rules of `table`, in `ctx.file`).
pub(crate) fn origins(ctx: &Ctx<'_>, table: Option<&Table>, keys: &[OriginKey]) -> Vec<Origin> {
    keys.iter()
        .map(|k| match *k {
            OriginKey::Rule {
                chain,
                line,
                number,
            } => {
                let name = table.map_or("", |t| t.chains[chain as usize].name.as_str());
                Origin {
                    file: ctx.file.to_string(),
                    line,
                    label: rule_label(name, number),
                }
            }
            OriginKey::Policy { hook, line, policy } => Origin {
                file: ctx.file.to_string(),
                line,
                label: format!("policy {} {}", hook.chain_name(), policy.name()),
            },
        })
        .collect()
}

/// `CHAIN:NUMBER`, as `format!` writes it but without its machinery (a reload may make one per
/// rule).
pub(crate) fn rule_label(chain: &str, number: u32) -> String {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut n = number;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut s = String::with_capacity(chain.len() + 1 + digits.len() - at);
    s.push_str(chain);
    s.push(':');
    s.extend(digits[at..].iter().map(|&d| char::from(d)));
    s
}

/// No entry yet in one of the flattener's per-rule maps.
const NONE: u32 = u32::MAX;

/// A flat rule's checks, shared by the flat rules of one rule under one context.
type Checks = Option<std::sync::Arc<Vec<Check>>>;

struct Flattener<'a> {
    ctx: &'a Ctx<'a>,
    table: &'a Table,
    mode: FlattenFor,
    /// The hook flattened: what `-i`/`-o` see there ([`cubes_at_hook`]), and `-m recent`'s
    /// TTL.
    hook: HookPoint,
    index: HashMap<&'a str, usize>,
    /// Where each chain's rules start in the per-rule maps below.
    first: Vec<usize>,
    /// The flat rules so far (a continue's target is set once labels are known), and each
    /// one's NAT target or [`NO_NAT`].
    out: Vec<FlatRule>,
    nat: Vec<u32>,
    /// The continues: flat rule index and label.
    continues: Vec<(usize, usize)>,
    labels: Vec<usize>,
    origin_keys: Vec<OriginKey>,
    /// Per rule (`first[chain] + rule`): its origin, log and NAT target indexes, or [`NONE`].
    origin_of: Vec<u32>,
    logs: Vec<LogSpec>,
    log_of: Vec<u32>,
    nat_targets: Vec<NatTarget>,
    nat_of: Vec<u32>,
    /// Per rule: its `-m limit` bucket's slot, or [`NONE`]; and how many slots are given.
    limit_of: Vec<u32>,
    /// Per rule: its `-m statistic --mode nth` counter's slot (in the limits' numbering).
    nth_of: Vec<u32>,
    /// Per rule: its `-m quota` counter's slot (in the limits' numbering).
    quota_of: Vec<u32>,
    limits: u32,
    /// The context of the built-in chain: everything.
    full: Cube,
    /// Flat rules, origins and logs before each rule of the built-in chain.
    roots: Vec<(usize, u32, u32)>,
}

impl Flattener<'_> {
    fn err(&self, rule: &Rule, col: u32, msg: String) -> RuleError {
        self.ctx.err(rule.line, col, msg)
    }

    fn origin(&mut self, ci: usize, ri: usize) -> u32 {
        let slot = self.first[ci] + ri;
        if self.origin_of[slot] != NONE {
            return self.origin_of[slot];
        }
        let rule = &self.table.chains[ci].rules[ri];
        let o = self.origin_keys.len() as u32;
        self.origin_keys.push(OriginKey::Rule {
            chain: ci as u32,
            line: rule.line,
            number: rule.number,
        });
        self.origin_of[slot] = o;
        o
    }

    fn emit(
        &mut self,
        cubes: &[Cube],
        action: Pending,
        origin: u32,
        rule: &Rule,
        checks: &Checks,
    ) -> Result<(), RuleError> {
        self.emit_tagged(cubes, action, origin, NO_NAT, rule, checks)
    }

    fn emit_tagged(
        &mut self,
        cubes: &[Cube],
        action: Pending,
        origin: u32,
        nat: u32,
        rule: &Rule,
        checks: &Checks,
    ) -> Result<(), RuleError> {
        if self.out.len() + cubes.len() > MAX_FLAT_RULES {
            return Err(self.err(
                rule,
                rule.col,
                format!("rule set too large: more than {MAX_FLAT_RULES} flat rules after inlining chains"),
            ));
        }
        let family = self.ctx.family;
        let flat = |c: &Cube, a: Action| FlatRule {
            checks: checks.clone(),
            ..c.to_flat(family, a, origin)
        };
        match action {
            Pending::Act(a) => self.out.extend(cubes.iter().map(|c| flat(c, a))),
            Pending::Continue(label) => {
                for c in cubes {
                    self.continues.push((self.out.len(), label));
                    self.out.push(flat(c, Action::ContinueAt(u32::MAX)));
                }
            }
        }
        self.nat.resize(self.nat.len() + cubes.len(), nat);
        Ok(())
    }

    /// A translating rule of the nat table: a terminal `Accept` tagged with its target.
    fn nat_rule(
        &mut self,
        ci: usize,
        ri: usize,
        cubes: &[Cube],
        kind: NatKind,
        range: NatRange,
        checks: &Checks,
    ) -> Result<(), RuleError> {
        let o = self.origin(ci, ri);
        let slot = self.first[ci] + ri;
        let n = match self.nat_of[slot] {
            NONE => {
                let n = self.nat_targets.len() as u32;
                self.nat_targets.push(NatTarget {
                    kind,
                    range,
                    origin: o,
                });
                self.nat_of[slot] = n;
                n
            }
            n => n,
        };
        let rule = &self.table.chains[ci].rules[ri];
        self.emit_tagged(cubes, Pending::Act(Action::Accept), o, n, rule, checks)
    }

    fn label(&mut self) -> usize {
        self.labels.push(usize::MAX);
        self.labels.len() - 1
    }

    /// The checks of rule `ri` of chain `ci` under the context's, its limit given its slot.
    fn checks(&mut self, ci: usize, ri: usize, rule: &Rule, context: &[Check]) -> Vec<Check> {
        let mut all = context.to_vec();
        for mut c in rule_checks(rule) {
            // A limit's bucket and an nth counter: one slot each per iptables rule.
            let (of, slot) = match &mut c {
                Check::Limit { slot, .. } => (&mut self.limit_of, slot),
                Check::Nth { slot, .. } => (&mut self.nth_of, slot),
                Check::Quota { slot, .. } => (&mut self.quota_of, slot),
                _ => {
                    all.push(super::recent::at_hook(c, self.hook));
                    continue;
                }
            };
            let at = self.first[ci] + ri;
            if of[at] == NONE {
                of[at] = self.limits;
                self.limits += 1;
            }
            *slot = of[at];
            all.push(c);
        }
        all
    }

    fn chain(
        &mut self,
        ci: usize,
        context: &[Cube],
        context_checks: &[Check],
        ret: usize,
        depth: usize,
    ) -> Result<(), RuleError> {
        let table = self.table;
        // Under the built-in chain's own context a rule's cubes are its own: each of them lies
        // in the full cube and passed `Cube::meet` already, and meeting it with the full cube
        // gives it back.
        let whole = context.len() == 1 && context[0] == self.full;
        for (ri, rule) in table.chains[ci].rules.iter().enumerate() {
            if depth == 0 {
                self.roots.push((
                    self.out.len(),
                    self.origin_keys.len() as u32,
                    self.logs.len() as u32,
                ));
            }
            // A rule without a target does nothing, unless a match of it changes a list
            // (`-m recent --set`): then it is walked, and goes on to the next rule.
            let spec = match &rule.target {
                Some(spec) => Some(spec),
                None if super::recent::changes_lists(rule) => None,
                None => continue,
            };
            let Some(mut own) = rule.cubes.as_deref() else {
                return Err(self.err(
                    rule,
                    rule.col,
                    format!("rule expands to more than {MAX_RULE_ALTERNATIVES} alternatives"),
                ));
            };
            let at_hook;
            if let Some(c) = cubes_at_hook(self.ctx.family, self.hook, rule) {
                let Some(c) = c else {
                    return Err(self.err(
                        rule,
                        rule.col,
                        format!("rule expands to more than {MAX_RULE_ALTERNATIVES} alternatives"),
                    ));
                };
                at_hook = c;
                own = &at_hook;
            }
            let met;
            let cubes: &[Cube] = if whole {
                own
            } else {
                match meet_all(context, own, MAX_RULE_ALTERNATIVES) {
                    Some(c) => {
                        met = c;
                        &met
                    }
                    None => {
                        return Err(self.err(
                            rule,
                            rule.col,
                            format!("rule expands to more than {MAX_RULE_ALTERNATIVES} alternatives under the jumps leading to it"),
                        ));
                    }
                }
            };
            if cubes.is_empty() {
                continue;
            }
            let all_checks = self.checks(ci, ri, rule, context_checks);
            let checks: Checks =
                (!all_checks.is_empty()).then(|| std::sync::Arc::new(all_checks.clone()));
            let checks = &checks;
            let act = |a| Pending::Act(a);
            let Some(spec) = spec else {
                let next = self.label();
                let o = self.origin(ci, ri);
                self.emit(cubes, Pending::Continue(next), o, rule, checks)?;
                self.labels[next] = self.out.len();
                continue;
            };
            match &spec.target {
                Target::Accept => {
                    let o = self.origin(ci, ri);
                    self.emit(cubes, act(Action::Accept), o, rule, checks)?;
                }
                Target::Drop if self.mode == FlattenFor::Filter => {
                    let o = self.origin(ci, ri);
                    self.emit(cubes, act(Action::Drop), o, rule, checks)?;
                }
                Target::Reject(w) if self.mode == FlattenFor::Filter => {
                    let o = self.origin(ci, ri);
                    self.emit(cubes, act(Action::Reject(*w)), o, rule, checks)?;
                }
                Target::Log(_) if matches!(self.table.kind, TableKind::Raw | TableKind::Nat) => {
                    return Err(self.err(
                        rule,
                        spec.col,
                        format!(
                            "LOG in the {} table is not supported: log in the filter table instead",
                            self.table.kind.name()
                        ),
                    ));
                }
                Target::NoTrack if self.table.kind == TableKind::Raw => {
                    let o = self.origin(ci, ri);
                    self.emit(cubes, act(Action::NoTrack), o, rule, checks)?;
                }
                Target::CtZone(t) if self.table.kind == TableKind::Raw => {
                    let o = self.origin(ci, ri);
                    self.emit(cubes, act(Action::Ct(*t)), o, rule, checks)?;
                }
                Target::Log(spec) => {
                    let o = self.origin(ci, ri);
                    let slot = self.first[ci] + ri;
                    let l = match self.log_of[slot] {
                        NONE => {
                            let l = self.logs.len() as u32;
                            self.logs.push(spec.clone());
                            self.log_of[slot] = l;
                            l
                        }
                        l => l,
                    };
                    self.emit(cubes, act(Action::Log(l)), o, rule, checks)?;
                }
                Target::Return => {
                    let o = self.origin(ci, ri);
                    self.emit(cubes, Pending::Continue(ret), o, rule, checks)?;
                }
                Target::Jump(name) => {
                    let Some(&t) = self.index.get(name.as_str()) else {
                        return Err(self.err(
                            rule,
                            spec.col,
                            format!("unknown target or chain {name}"),
                        ));
                    };
                    if depth + 1 > MAX_JUMP_DEPTH {
                        return Err(self.err(
                            rule,
                            spec.col,
                            format!("jumps nest deeper than {MAX_JUMP_DEPTH} chains"),
                        ));
                    }
                    // A limit on the jump is asked once, by a gate before the inlined chain
                    // that skips it when the bucket has nothing to give; the chain's rules
                    // carry the jump's other conditions (a context never holds a limit: each
                    // was gated at its own jump).
                    let (gated, inner): (Vec<Check>, Vec<Check>) =
                        all_checks.iter().cloned().partition(is_draw);
                    let skip = self.label();
                    let inner_checks: Checks =
                        (!inner.is_empty()).then(|| std::sync::Arc::new(inner.clone()));
                    if !gated.is_empty() {
                        let mut gate = inner.clone();
                        gate.extend(gated.into_iter().map(inverted));
                        let o = self.origin(ci, ri);
                        let gate = Some(std::sync::Arc::new(gate));
                        self.emit(cubes, Pending::Continue(skip), o, rule, &gate)?;
                    }
                    if spec.goto {
                        // Returns (and falling off the end) go where this chain returns to.
                        self.chain(t, cubes, &inner, ret, depth + 1)?;
                        let o = self.origin(ci, ri);
                        self.emit(cubes, Pending::Continue(ret), o, rule, &inner_checks)?;
                    } else {
                        self.chain(t, cubes, &inner, skip, depth + 1)?;
                    }
                    self.labels[skip] = self.out.len();
                }
                Target::Mark { mask, xor } => {
                    // The operation rides in the rule's checks ([`Check::SetMark`]).
                    let o = self.origin(ci, ri);
                    let mut with = all_checks.clone();
                    with.push(Check::SetMark {
                        mask: *mask,
                        xor: *xor,
                    });
                    let with = Some(std::sync::Arc::new(with));
                    self.emit(cubes, act(Action::Mark), o, rule, &with)?;
                }
                Target::ConnMark(op) => {
                    // As MARK: the operation rides in the rule's checks
                    // ([`Check::SetConnMark`]), applied by the walk's `Action::Mark`.
                    let o = self.origin(ci, ri);
                    let mut with = all_checks.clone();
                    with.push(Check::SetConnMark(*op));
                    let with = Some(std::sync::Arc::new(with));
                    self.emit(cubes, act(Action::Mark), o, rule, &with)?;
                }
                Target::Edit(e) if self.table.kind == TableKind::Mangle => {
                    let o = self.origin(ci, ri);
                    self.emit(cubes, act(Action::Edit(e.encode())), o, rule, checks)?;
                }
                Target::Snat(to) | Target::Dnat(to) if self.mode == FlattenFor::Nat => {
                    let kind = match spec.target {
                        Target::Snat(_) => NatKind::Snat,
                        _ => NatKind::Dnat,
                    };
                    self.nat_rule(ci, ri, cubes, kind, nat_range(to), checks)?;
                }
                Target::Masquerade {
                    ports,
                    random,
                    random_fully,
                } if self.mode == FlattenFor::Nat => {
                    let range = NatRange {
                        addrs: None,
                        ports: *ports,
                        random: *random,
                        random_fully: *random_fully,
                        persistent: false,
                    };
                    self.nat_rule(ci, ri, cubes, NatKind::Masquerade, range, checks)?;
                }
                Target::Netmap(to) if self.mode == FlattenFor::Nat => {
                    // The prefix as its first and last address (the mask is what they
                    // share); the address is made per connection from the packet's.
                    let range = NatRange::to_addr(to.lo);
                    let range = NatRange {
                        addrs: Some((to.lo, to.hi)),
                        ..range
                    };
                    self.nat_rule(ci, ri, cubes, NatKind::Netmap, range, checks)?;
                }
                Target::Redirect { ports, random } if self.mode == FlattenFor::Nat => {
                    let range = NatRange {
                        addrs: None,
                        ports: *ports,
                        random: *random,
                        random_fully: false,
                        persistent: false,
                    };
                    self.nat_rule(ci, ri, cubes, NatKind::Redirect, range, checks)?;
                }
                Target::Snat(_)
                | Target::Dnat(_)
                | Target::Masquerade { .. }
                | Target::Netmap(_)
                | Target::Redirect { .. }
                | Target::NoTrack
                | Target::CtZone(_)
                | Target::Edit(_)
                | Target::Reject(_)
                | Target::Drop => {
                    return Err(self.err(
                        rule,
                        spec.col,
                        format!(
                            "target is not valid in the {} table",
                            self.table.kind.name()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A rule's cubes at `hook` when its `-i` or `-o` names an interface the packets there do not
/// have (`None`: its own cubes). Linux's `ipt_do_table` compares such an interface as the empty
/// name (`nulldevname`): `-i` in a user chain reached from OUTPUT, `-o` in one reached from
/// PREROUTING or INPUT. Only `+` (any name) matches it, so the test is a constant there:
/// true drops the match from the rule, false leaves the rule no cube (inner `None`: the rule
/// without the match has too many alternatives). POSTROUTING has the
/// input interface for forwarded packets (`ip_output` passes `skb->dev` as the hook's input
/// device), the only ones Rampart's nat POSTROUTING sees, so `-i` keeps its meaning there.
pub(crate) fn cubes_at_hook(
    family: Family,
    hook: HookPoint,
    rule: &Rule,
) -> Option<Option<Vec<Cube>>> {
    // Whether `m` tests an interface the hook has not, and whether that name is `+`.
    let empty = |m: &Match| match &m.cond {
        Cond::InInterface(i) if hook == HookPoint::Output => Some(i.name == "+"),
        Cond::OutInterface(i) if matches!(hook, HookPoint::Prerouting | HookPoint::Input) => {
            Some(i.name == "+")
        }
        _ => None,
    };
    // `-m physdev`'s cubes are made for FORWARD (`match_cubes`); elsewhere they differ.
    let physdev = |m: &Match| matches!(&m.cond, Cond::PhysDev(_)) && hook != HookPoint::Forward;
    if !rule
        .matches
        .iter()
        .any(|m| empty(m).is_some() || physdev(m))
    {
        return None;
    }
    let mut kept = Vec::with_capacity(rule.matches.len());
    for m in &rule.matches {
        if let (Cond::PhysDev(p), true) = (&m.cond, physdev(m)) {
            let Some((inp, out)) = p.at(hook) else {
                return Some(Some(Vec::new()));
            };
            // The port sets it leaves, as `-i`/`-o` would test them.
            let ports = |mask| Iface {
                name: "physdev".into(),
                mask,
            };
            kept.extend(inp.map(|mask| Match {
                cond: Cond::InInterface(ports(mask)),
                ..m.clone()
            }));
            kept.extend(out.map(|mask| Match {
                cond: Cond::OutInterface(ports(mask)),
                ..m.clone()
            }));
            continue;
        }
        match empty(m) {
            Some(any) if any == m.negated => return Some(Some(Vec::new())),
            Some(_) => {}
            None => kept.push(m.clone()),
        }
    }
    Some(rule_cubes(family, &kept))
}

/// The range of `--to-source`/`--to-destination`.
fn nat_range(to: &NatTo) -> NatRange {
    NatRange {
        addrs: to.addrs.map(|r| (r.lo, r.hi)),
        ports: to.ports,
        random: to.random,
        random_fully: to.random_fully,
        persistent: to.persistent,
    }
}

/// The whole chain `hook_point` of `table` flattened: user chains inlined under their jumps,
/// labels resolved, the policy as the final catch-all. No table or no such chain is Linux's
/// empty chain with policy ACCEPT.
pub(crate) fn flatten(
    ctx: &Ctx<'_>,
    table: Option<&Table>,
    hook_point: HookPoint,
    mode: FlattenFor,
) -> Result<Flat, RuleError> {
    let f = flatten_keys(ctx, table, hook_point, mode)?;
    Ok(Flat {
        origins: origins(ctx, table, &f.origin_keys),
        rules: f.rules,
        logs: f.logs,
        nat_of: f.nat_of,
        nat_targets: f.nat_targets,
    })
}

/// [`flatten`] with the origins as keys.
pub(crate) fn flatten_keys(
    ctx: &Ctx<'_>,
    table: Option<&Table>,
    hook_point: HookPoint,
    mode: FlattenFor,
) -> Result<FlatKeys, RuleError> {
    let family = ctx.family;
    let chain_name = hook_point.chain_name();
    let empty = || FlatKeys {
        rules: vec![FlatRule::any(family, Action::Accept, 0)],
        origin_keys: vec![OriginKey::Policy {
            hook: hook_point,
            line: 0,
            policy: Policy::Accept,
        }],
        logs: Vec::new(),
        nat_of: vec![NO_NAT],
        nat_targets: Vec::new(),
        roots: None,
    };
    let Some(table) = table else {
        return Ok(empty());
    };
    let root = table.chain_index(chain_name).unwrap_or(usize::MAX);
    let Some(root_chain) = table.chains.get(root) else {
        return Ok(empty());
    };
    let mut first = Vec::with_capacity(table.chains.len());
    let mut total = 0;
    for c in &table.chains {
        first.push(total);
        total += c.rules.len();
    }
    let mut f = Flattener {
        ctx,
        table,
        mode,
        hook: hook_point,
        index: table
            .chains
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect(),
        first,
        out: Vec::with_capacity(root_chain.rules.len() + 1),
        nat: Vec::with_capacity(root_chain.rules.len() + 1),
        continues: Vec::new(),
        labels: Vec::new(),
        origin_keys: Vec::with_capacity(root_chain.rules.len() + 1),
        origin_of: vec![NONE; total],
        logs: Vec::new(),
        log_of: vec![NONE; total],
        nat_targets: Vec::new(),
        nat_of: vec![NONE; total],
        limit_of: vec![NONE; total],
        nth_of: vec![NONE; total],
        quota_of: vec![NONE; total],
        limits: 0,
        full: Cube::full(family),
        roots: Vec::with_capacity(root_chain.rules.len() + 1),
    };
    let policy_label = f.label();
    f.chain(root, &[Cube::full(family)], &[], policy_label, 0)?;
    f.labels[policy_label] = f.out.len();
    f.roots
        .push((f.out.len(), f.origin_keys.len() as u32, f.logs.len() as u32));
    let policy = root_chain.policy.unwrap_or(Policy::Accept);
    if mode == FlattenFor::Nat && policy == Policy::Drop {
        return Err(ctx.err(
            root_chain.line,
            1,
            format!(
                "policy DROP is not allowed in the nat table ({chain_name} is not for filtering)"
            ),
        ));
    }
    let policy_origin = f.origin_keys.len() as u32;
    f.origin_keys.push(OriginKey::Policy {
        hook: hook_point,
        line: root_chain.line,
        policy,
    });
    let policy_action = match policy {
        Policy::Accept => Action::Accept,
        Policy::Drop => Action::Drop,
    };
    f.out
        .push(Cube::full(family).to_flat(family, policy_action, policy_origin));
    f.nat.push(NO_NAT);

    let (mut rules, mut nat_of) = (f.out, f.nat);
    let mut starts: Vec<u32> = f.roots.iter().map(|r| r.0 as u32).collect();
    if !f.continues.is_empty() {
        // Resolve labels, dropping continues that land on the very next kept rule (no-ops).
        let n = rules.len();
        let mut target = vec![usize::MAX; n];
        for &(i, label) in &f.continues {
            target[i] = f.labels[label];
        }
        let mut kept_from = vec![0usize; n + 1];
        let mut keep = vec![true; n];
        for i in (0..n).rev() {
            if target[i] != usize::MAX {
                let t = target[i].clamp(i + 1, n);
                if kept_from[i + 1] - kept_from[t] == 0
                    && !super::recent::changes_any(rules[i].checks.as_deref())
                {
                    keep[i] = false;
                }
            }
            kept_from[i] = kept_from[i + 1] + usize::from(keep[i]);
        }
        // New index of old position p: the number of kept rules before p.
        let new_index = |p: usize| (kept_from[0] - kept_from[p.min(n)]) as u32;
        for &(i, _) in &f.continues {
            rules[i].action = Action::ContinueAt(new_index(target[i]));
        }
        for s in &mut starts {
            *s = new_index(*s as usize);
        }
        let mut i = 0;
        rules.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut i = 0;
        nat_of.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
    let patchable = mode == FlattenFor::Filter
        && root_chain.rules.iter().all(|r| {
            !matches!(
                &r.target,
                Some(TargetSpec {
                    target: Target::Return,
                    ..
                }) | Some(TargetSpec { goto: true, .. })
            )
        });
    let roots = patchable.then(|| Roots {
        chain: root,
        starts,
        origins: f.roots.iter().map(|r| r.1).collect(),
        logs: f.roots.iter().map(|r| r.2).collect(),
    });
    Ok(FlatKeys {
        roots,
        rules,
        origin_keys: f.origin_keys,
        logs: f.logs,
        nat_of,
        nat_targets: f.nat_targets,
    })
}
