//! Table-wide checks, run at `COMMIT`: every jump names a user chain of the table, user chains
//! form no loop (Linux refuses such a table with ELOOP), and each user chain uses only the
//! matches and targets that every hook reaching it allows (the kernel checks targets and
//! matches such as `-m mac` against the hooks a chain is reached from). `-i`/`-o` are not
//! checked here: iptables refuses them in the built-in chains only (`-i` in OUTPUT and
//! POSTROUTING, `-o` in PREROUTING and INPUT, by the chain's name, as the parser does), and a
//! user chain reached from a hook without that interface sees the empty name there
//! ([`super::compile`] flattens it so).

use super::ast::*;
use super::parse::Ctx;
use super::RuleError;
use std::collections::{HashMap, VecDeque};

/// The jumps (`-j`/`-g` to user chains) of a table: `edges[c]` lists `(rule index, target chain)`.
pub(crate) struct JumpGraph {
    pub edges: Vec<Vec<(usize, usize)>>,
}

/// Resolves every jump; errors for the ones that name no chain.
pub(crate) fn jump_graph(ctx: &Ctx<'_>, table: &Table) -> (JumpGraph, Vec<RuleError>) {
    let index: HashMap<&str, usize> = table
        .chains
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let mut errors = Vec::new();
    let mut edges = vec![Vec::new(); table.chains.len()];
    for (ci, chain) in table.chains.iter().enumerate() {
        for (ri, rule) in chain.rules.iter().enumerate() {
            if let Some(TargetSpec {
                target: Target::Jump(name),
                col,
                ..
            }) = &rule.target
            {
                match index.get(name.as_str()) {
                    Some(&t) => edges[ci].push((ri, t)),
                    None => errors.push(ctx.err(
                        rule.line,
                        *col,
                        format!("unknown target or chain {name} (a user chain must be declared with :{name} - [0:0])"),
                    )),
                }
            }
        }
    }
    (JumpGraph { edges }, errors)
}

/// For each chain, the hooks ([`HookPoint::bit`]) it is reached from.
pub(crate) fn reaching_hooks(table: &Table, g: &JumpGraph) -> Vec<u8> {
    let mut hooks = vec![0u8; table.chains.len()];
    for (i, c) in table.chains.iter().enumerate() {
        let Some(h) = c.hook else { continue };
        let mut queue = VecDeque::from([i]);
        let mut seen = vec![false; table.chains.len()];
        seen[i] = true;
        while let Some(n) = queue.pop_front() {
            hooks[n] |= h.bit();
            for &(_, t) in &g.edges[n] {
                if !seen[t] {
                    seen[t] = true;
                    queue.push_back(t);
                }
            }
        }
    }
    hooks
}

/// Chains that lie on a jump loop, each with the first rule whose jump closes its loop.
fn loops(g: &JumpGraph) -> Vec<(usize, usize, usize)> {
    let n = g.edges.len();
    // Kahn's algorithm: what remains lies on a loop or downstream of one.
    let mut indeg = vec![0usize; n];
    for e in &g.edges {
        for &(_, t) in e {
            indeg[t] += 1;
        }
    }
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut removed = vec![false; n];
    while let Some(c) = queue.pop_front() {
        removed[c] = true;
        for &(_, t) in &g.edges[c] {
            indeg[t] -= 1;
            if indeg[t] == 0 {
                queue.push_back(t);
            }
        }
    }
    let mut out = Vec::new();
    for start in (0..n).filter(|&i| !removed[i]) {
        // Does `start` reach itself? Find the first of its jumps that leads back.
        for &(ri, first) in &g.edges[start] {
            if removed[first] {
                continue;
            }
            let mut seen = vec![false; n];
            let mut queue = VecDeque::from([first]);
            seen[first] = true;
            let mut back = false;
            while let Some(c) = queue.pop_front() {
                if c == start {
                    back = true;
                    break;
                }
                for &(_, t) in &g.edges[c] {
                    if !removed[t] && !seen[t] {
                        seen[t] = true;
                        queue.push_back(t);
                    }
                }
            }
            if back {
                out.push((start, ri, first));
                break;
            }
        }
    }
    out
}

/// All table-wide checks; see the module docs.
pub(crate) fn validate_table(ctx: &Ctx<'_>, table: &Table) -> Vec<RuleError> {
    let (g, mut errors) = jump_graph(ctx, table);
    for (c, ri, t) in loops(&g) {
        let chain = &table.chains[c];
        let rule = &chain.rules[ri];
        let col = rule.target.as_ref().map_or(rule.col, |t| t.col);
        errors.push(ctx.err(
            rule.line,
            col,
            format!(
                "jump loop: chain {} reaches itself through {}",
                chain.name, table.chains[t].name
            ),
        ));
    }
    let hooks = reaching_hooks(table, &g);
    for (ci, chain) in table.chains.iter().enumerate() {
        if chain.hook.is_some() || hooks[ci] == 0 {
            // Built-in chains were checked as their rules were parsed; unreachable chains are
            // checked by nothing in Linux either.
            continue;
        }
        let reached: Vec<HookPoint> = HookPoint::ALL
            .into_iter()
            .filter(|h| hooks[ci] & h.bit() != 0)
            .collect();
        let via = |bad: &dyn Fn(HookPoint) -> bool| reached.iter().copied().find(|&h| bad(h));
        for rule in &chain.rules {
            for m in &rule.matches {
                let (opt, bad): (&str, &dyn Fn(HookPoint) -> bool) = match m.cond {
                    Cond::Check(dataplane::classify::Check::MacSource { .. }) => {
                        ("-m mac", &|h: HookPoint| !super::parse::mac_hook(h))
                    }
                    Cond::Check(dataplane::classify::Check::RpFilter(_)) => {
                        ("-m rpfilter", &|h: HookPoint| h != HookPoint::Prerouting)
                    }
                    // physdev_mt_check: an output port where a packet may be locally made.
                    Cond::PhysDev(ref p) if p.refused_in_output() => (
                        "--physdev-out or --physdev-is-out without --physdev-is-bridged",
                        &|h: HookPoint| h == HookPoint::Output,
                    ),
                    _ => continue,
                };
                if let Some(h) = via(bad) {
                    errors.push(ctx.err(
                        rule.line,
                        m.col,
                        format!(
                            "can't use {opt} in chain {}: it is reached from {}",
                            chain.name,
                            h.chain_name()
                        ),
                    ));
                }
            }
            let Some(spec) = &rule.target else { continue };
            let (name, ok): (&str, &[HookPoint]) = match spec.target {
                Target::Snat(_) => ("SNAT", &[HookPoint::Postrouting, HookPoint::Input]),
                Target::Dnat(_) => ("DNAT", &[HookPoint::Prerouting, HookPoint::Output]),
                Target::Masquerade { .. } => ("MASQUERADE", &[HookPoint::Postrouting]),
                Target::Netmap(_) => (
                    "NETMAP",
                    &[
                        HookPoint::Prerouting,
                        HookPoint::Input,
                        HookPoint::Output,
                        HookPoint::Postrouting,
                    ],
                ),
                Target::Redirect { .. } => {
                    ("REDIRECT", &[HookPoint::Prerouting, HookPoint::Output])
                }
                // xt_TCPMSS's hook check, on the hooks that reach the rule.
                Target::Edit(dataplane::mangle::Edit::Mss(None)) => (
                    "TCPMSS --clamp-mss-to-pmtu",
                    &[
                        HookPoint::Forward,
                        HookPoint::Output,
                        HookPoint::Postrouting,
                    ],
                ),
                _ => continue,
            };
            if let Some(h) = via(&|h| !ok.contains(&h)) {
                errors.push(ctx.err(
                    rule.line,
                    spec.col,
                    format!(
                        "target {name} is not valid in chain {}: it is reached from {}",
                        chain.name,
                        h.chain_name()
                    ),
                ));
            }
        }
    }
    errors
}

/// The file-wide check of `--ctstate SNAT`: Rampart keeps no source-translation status beside
/// a connection's state (DNAT it does: [`dataplane::classify::ct::DNAT`]), so SNAT is admitted
/// only where Linux would never set it either: when the nat table has no translating rule at
/// all (Linux also sets SNAT when it moves a source port to keep two connections' replies
/// apart, which a DNAT can cause). Every such match is an error otherwise, naming the first
/// such rule.
pub(crate) fn nat_states(ctx: &Ctx<'_>, tables: &[Table]) -> Vec<RuleError> {
    use super::names::CT_SNAT;
    let snat = tables
        .iter()
        .filter(|t| t.kind == TableKind::Nat)
        .flat_map(|t| t.chains.iter().flat_map(|c| c.rules.iter()))
        .find(|r| r.target.as_ref().is_some_and(|s| s.target.translates()))
        .map(|r| r.line);
    let Some(line) = snat else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    for rule in tables
        .iter()
        .flat_map(|t| t.chains.iter().flat_map(|c| c.rules.iter()))
    {
        for m in &rule.matches {
            if matches!(m.cond, Cond::ConnState(bits) if bits & CT_SNAT != 0) {
                errors.push(ctx.err(
                    rule.line,
                    m.col,
                    format!(
                        "--ctstate SNAT is not supported when the nat table translates (line \
                         {line}); without such rules it never matches, as in Linux"
                    ),
                ));
            }
        }
    }
    errors
}
