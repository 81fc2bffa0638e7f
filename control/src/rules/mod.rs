//! The iptables-save / ip6tables-save front end and its compiler into a flat [`RuleSet`].
//!
//! A file is parsed into [`ParsedRules`] (tables -> chains -> rules, each rule with its
//! position, matches and target), every table it holds (filter, nat, raw) is validated as
//! iptables-restore and the kernel would, and the filter table's `FORWARD` (bridge mode) or
//! `INPUT` (router mode) chain is compiled into the dataplane's flat, first-match rule set;
//! [`compile_nat`] compiles the nat table's PREROUTING and POSTROUTING chains the same way. The
//! raw table is parsed and validated but not compiled yet.
//!
//! Invariants:
//! - Linux netfilter is the reference: a file loads only if iptables-restore would load it,
//!   and then means what it means there, within the supported subset. Anything outside the
//!   subset is an error at its line and column; nothing is silently ignored.
//! - All errors of a file are reported together, sorted by position; a file with an error
//!   compiles to nothing.
//! - The compiled set gives, for every packet, the verdict and the log records netfilter's
//!   traversal of the chain would (see [`compile`] for how chains are flattened).

mod ast;
pub(crate) mod compile;
pub mod ipset_live;
pub mod ipsets;
pub(crate) mod lex;
mod mangle;
mod marks;
pub mod matches;
mod names;
mod nat;
pub(crate) mod parse;
mod recent;
pub(crate) mod validate;

#[cfg(test)]
mod connlimit_tests;
#[cfg(test)]
mod connmark_tests;
#[cfg(test)]
mod ctmatch_tests;
#[cfg(test)]
mod ctzone_tests;
#[cfg(test)]
mod ext_tests;
#[cfg(test)]
mod hashlimit_tests;
#[cfg(test)]
mod ipset_live_tests;
#[cfg(test)]
mod ipset_tests;
#[cfg(test)]
mod mangle_tests;
#[cfg(test)]
mod match_tests;
#[cfg(test)]
mod natmap_tests;
#[cfg(test)]
mod nfacct_tests;
#[cfg(test)]
mod nflog_tests;
#[cfg(test)]
mod physdev_tests;
#[cfg(test)]
mod recent_tests;
#[cfg(test)]
mod rpfilter_tests;
#[cfg(test)]
mod string_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod time_tests;
#[cfg(test)]
mod u32_tests;

pub use ast::*;
pub use compile::{MAX_FLAT_RULES, MAX_JUMP_DEPTH, MAX_RULE_ALTERNATIVES};
pub use dataplane::classify::RuleSet;
pub use mangle::compile_mangle;
pub use matches::HostAddrs;

use dataplane::wire::Family;

/// One error at a position in a rule file; Display is exactly "FILE:LINE:COL: message".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct RuleError {
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters) of the offending word.
    pub col: u32,
    pub message: String,
}

/// Which built-in chain the rule set is for: Forward (bridge mode, filter FORWARD) or Input
/// (router mode, traffic to Rampart's own addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Forward,
    Input,
}

fn sorted(mut errors: Vec<RuleError>) -> Vec<RuleError> {
    errors.sort_by_key(|e| (e.line, e.col));
    errors
}

/// Parses and validates iptables-save (`V4`) or ip6tables-save (`V6`) text. `ports` are the
/// configured port names, which `-i`/`-o` refer to (a `+` suffix is a wildcard).
pub fn parse_iptables(
    file: &str,
    text: &str,
    family: Family,
    ports: &[String],
) -> Result<ParsedRules, Vec<RuleError>> {
    parse_iptables_with(file, text, family, ports, &parse::NO_HOST)
}

/// [`parse_iptables`] for a router whose ports have the addresses `host` (what `-m addrtype`
/// takes for LOCAL and directed BROADCAST).
pub fn parse_iptables_with(
    file: &str,
    text: &str,
    family: Family,
    ports: &[String],
    host: &HostAddrs,
) -> Result<ParsedRules, Vec<RuleError>> {
    parse_iptables_sets(file, text, family, ports, host, None)
}

/// [`parse_iptables_with`] with the ipset sets `-m set` names (`None`: no sets file).
pub fn parse_iptables_sets(
    file: &str,
    text: &str,
    family: Family,
    ports: &[String],
    host: &HostAddrs,
    sets: Option<&std::sync::Arc<dataplane::classify::ipset::SetsCell>>,
) -> Result<ParsedRules, Vec<RuleError>> {
    let ctx = parse::Ctx {
        file,
        family,
        ports,
        host,
        sets,
    };
    let (parsed, errors) = parse::parse(&ctx, text);
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(sorted(errors))
    }
}

/// Compiles filter/`hook` of already parsed rules into a flat rule set.
pub fn compile_parsed(parsed: &ParsedRules, hook: Hook) -> Result<RuleSet, Vec<RuleError>> {
    let flat = flatten_filter(parsed, hook)?;
    Ok(rule_set(parsed, TableKind::Filter, flat))
}

/// Compiles the raw table's PREROUTING chain (DROP, NOTRACK before connection tracking) of
/// already parsed rules; `None` when the file has no raw table or its PREROUTING chain accepts
/// everything without a rule.
pub fn compile_raw(parsed: &ParsedRules) -> Result<Option<RuleSet>, Vec<RuleError>> {
    Ok(flatten_raw(parsed)?.map(|flat| rule_set(parsed, TableKind::Raw, flat)))
}

fn ctx(parsed: &ParsedRules) -> parse::Ctx<'_> {
    parse::Ctx {
        file: &parsed.file,
        family: parsed.family,
        ports: &[],
        host: &parse::NO_HOST,
        sets: None,
    }
}

fn rule_set(parsed: &ParsedRules, kind: TableKind, flat: compile::FlatKeys) -> RuleSet {
    let origins = compile::origins(&ctx(parsed), parsed.table(kind), &flat.origin_keys);
    RuleSet::new(parsed.family, flat.rules, origins, flat.logs)
}

/// [`compile_parsed`] before the rule set is made: the flat rules, with origins as keys.
pub(crate) fn flatten_filter(
    parsed: &ParsedRules,
    hook: Hook,
) -> Result<compile::FlatKeys, Vec<RuleError>> {
    let hook_point = match hook {
        Hook::Forward => HookPoint::Forward,
        Hook::Input => HookPoint::Input,
    };
    compile::flatten_keys(
        &ctx(parsed),
        parsed.table(TableKind::Filter),
        hook_point,
        compile::FlattenFor::Filter,
    )
    .map_err(|e| vec![e])
}

/// Whether [`flatten_raw`] makes a rule set: the file has a raw table whose PREROUTING chain has
/// rules or drops.
pub(crate) fn raw_present(parsed: &ParsedRules) -> bool {
    let Some(table) = parsed.table(TableKind::Raw) else {
        return false;
    };
    let chain = table
        .chain_index(HookPoint::Prerouting.chain_name())
        .and_then(|c| table.chains.get(c));
    !chain
        .is_none_or(|c| c.rules.is_empty() && c.policy.unwrap_or(Policy::Accept) == Policy::Accept)
}

/// [`compile::patch`] on table `kind` of `parsed`.
pub(crate) fn patch_flat(
    parsed: &ParsedRules,
    kind: TableKind,
    prev: &compile::FlatKeys,
    (chain, at, removed, inserted): (usize, usize, &[Rule], usize),
    shift: (u32, i64),
) -> Option<compile::FlatKeys> {
    let table = parsed.table(kind)?;
    compile::patch(
        &ctx(parsed),
        table,
        prev,
        chain,
        at,
        removed,
        inserted,
        shift,
    )
}

/// [`compile_raw`] before the rule set is made.
pub(crate) fn flatten_raw(
    parsed: &ParsedRules,
) -> Result<Option<compile::FlatKeys>, Vec<RuleError>> {
    if !raw_present(parsed) {
        return Ok(None);
    }
    compile::flatten_keys(
        &ctx(parsed),
        parsed.table(TableKind::Raw),
        HookPoint::Prerouting,
        compile::FlattenFor::Filter,
    )
    .map(Some)
    .map_err(|e| vec![e])
}

/// The origins of flat rules of table `kind` flattened by [`flatten_filter`] or [`flatten_raw`].
pub(crate) fn origins(
    parsed: &ParsedRules,
    kind: TableKind,
    keys: &[compile::OriginKey],
) -> Vec<dataplane::classify::Origin> {
    compile::origins(&ctx(parsed), parsed.table(kind), keys)
}

/// Compiles the nat table of already parsed rules: PREROUTING (DNAT) and POSTROUTING (SNAT,
/// MASQUERADE) as first-match chains with the filter compiler's flattening. A file without a nat
/// table translates nothing; rules in the nat INPUT or OUTPUT chains that translate are errors.
pub fn compile_nat(parsed: &ParsedRules) -> Result<dataplane::nat::NatRules, Vec<RuleError>> {
    let ctx = parse::Ctx {
        file: &parsed.file,
        family: parsed.family,
        ports: &[],
        host: &parse::NO_HOST,
        sets: None,
    };
    nat::compile(&ctx, parsed).map_err(sorted)
}

/// Parses iptables-save (family V4) or ip6tables-save (V6) text, validates every table it
/// contains (filter, nat, raw — nat and raw are parsed and validated now, compiled later), and
/// compiles filter/<hook> into a flat RuleSet. `ports` are the configured port names (for
/// -i/-o; `+` wildcard suffix supported). All errors are collected (not just the first).
pub fn compile_iptables(
    file: &str,
    text: &str,
    family: Family,
    ports: &[String],
    hook: Hook,
) -> Result<RuleSet, Vec<RuleError>> {
    let parsed = parse_iptables(file, text, family, ports)?;
    compile_parsed(&parsed, hook)
}

/// Guesses the family of a rules file from its content: IPv6 addresses, icmpv6/ipv6-icmp,
/// --icmpv6-type or icmp6-* reject types mean V6.
pub fn infer_family(text: &str) -> Family {
    for line in text.lines() {
        let Ok(toks) = lex::tokenize(line) else {
            continue;
        };
        if toks.first().is_some_and(|t| t.text.starts_with('#')) {
            continue;
        }
        let mut skip_next = false;
        for t in &toks {
            if std::mem::take(&mut skip_next) {
                continue;
            }
            let w: &str = &t.text;
            if matches!(w, "--comment" | "--log-prefix") {
                skip_next = true;
                continue;
            }
            let lower = w.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "icmpv6" | "ipv6-icmp" | "icmp6" | "--icmpv6-type"
            ) || lower.starts_with("icmp6-")
                || looks_v6(w)
            {
                return Family::V6;
            }
        }
    }
    Family::V4
}

/// Whether a word holds an IPv6 address (alone, as a prefix, a range or a NAT mapping).
fn looks_v6(w: &str) -> bool {
    if !w.contains(':') {
        return false;
    }
    w.split([',', '-', '/', '[', ']'])
        .any(|part| part.contains(':') && part.parse::<std::net::Ipv6Addr>().is_ok())
}
