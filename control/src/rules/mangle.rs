//! The mangle table's targets that edit packets (TCPMSS, DSCP, TOS, TTL, HL), read as
//! iptables and the kernel take them, and the mangle chains compiled for the dataplane
//! ([`dataplane::mangle`]).

use super::ast::{HookPoint, ParsedRules, TableKind};
use super::matches::number;
use super::RuleError;
use dataplane::classify::{Action, RuleSet};
use dataplane::mangle::{Edit, HopOp, Mangle, MangleChain};
use dataplane::wire::Family;

/// The targets read here.
pub(crate) const EDIT_TARGETS: [&str; 5] = ["TCPMSS", "DSCP", "TOS", "TTL", "HL"];

/// One option of such a target as given: its name, column and value (`None` for a flag).
pub(crate) struct EditOpt {
    pub name: String,
    pub col: u32,
    pub value: Option<(String, u32)>,
}

/// What the target's checks need of its rule.
pub(crate) struct RuleView {
    pub table: TableKind,
    /// The built-in chain the rule is in (`None`: a user chain).
    pub hook: Option<HookPoint>,
    pub family: Family,
    /// `-p tcp`, not negated.
    pub tcp: bool,
}

/// Whether `target` takes option `opt`: `Some(true)` with a value, `Some(false)` as a flag.
pub(crate) fn takes_value(target: &str, opt: &str) -> Option<bool> {
    Some(match (target, opt) {
        ("TCPMSS", "--set-mss") => true,
        ("TCPMSS", "--clamp-mss-to-pmtu") => false,
        ("DSCP", "--set-dscp" | "--set-dscp-class") => true,
        ("TOS", "--set-tos" | "--and-tos" | "--or-tos" | "--xor-tos") => true,
        ("TTL", "--ttl-set" | "--ttl-inc" | "--ttl-dec") => true,
        ("HL", "--hl-set" | "--hl-inc" | "--hl-dec") => true,
        _ => return None,
    })
}

/// The edit target `name` (at `col`) with `opts` makes in `rule`; `Err((col, message))` as
/// iptables or the kernel refuses it, or where Rampart does not apply it.
pub(crate) fn edit(
    name: &str,
    col: u32,
    opts: &[EditOpt],
    rule: &RuleView,
) -> Result<Edit, (u32, String)> {
    if rule.table != TableKind::Mangle {
        let why = if name == "TCPMSS" {
            "Rampart applies TCPMSS in the mangle table only: move the rule to *mangle"
        } else {
            "the kernel takes it in the mangle table only"
        };
        return Err((
            col,
            format!(
                "target {name} is not valid in the {} table ({why})",
                rule.table.name()
            ),
        ));
    }
    match (name, rule.family) {
        ("TTL", Family::V6) => return Err((col, "TTL is for IPv4: ip6tables has HL".into())),
        ("HL", Family::V4) => return Err((col, "HL is for IPv6: iptables has TTL".into())),
        _ => {}
    }
    let [opt] = opts else {
        let want = match name {
            "TCPMSS" => "--set-mss or --clamp-mss-to-pmtu",
            "DSCP" => "--set-dscp or --set-dscp-class",
            "TOS" => "--set-tos, --and-tos, --or-tos or --xor-tos",
            "TTL" => "--ttl-set, --ttl-inc or --ttl-dec",
            _ => "--hl-set, --hl-inc or --hl-dec",
        };
        let at = opts.get(1).map_or(col, |o| o.col);
        return Err((at, format!("{name} needs exactly one of {want}")));
    };
    let (text, vcol) = match &opt.value {
        Some((t, c)) => (t.as_str(), *c),
        None => ("", opt.col),
    };
    let num = |max: u32, what: &str| number(text, max, what).map_err(|m| (vcol, m));
    let edit = match opt.name.as_str() {
        // libxt_TCPMSS: up to 65535 less the IP header (20, or 40 for IPv6).
        "--set-mss" => {
            let max = match rule.family {
                Family::V4 => 65515,
                Family::V6 => 65495,
            };
            Edit::Mss(Some(num(max, "MSS")? as u16))
        }
        "--clamp-mss-to-pmtu" => {
            if let Some(h) = rule.hook {
                if !matches!(
                    h,
                    HookPoint::Forward | HookPoint::Output | HookPoint::Postrouting
                ) {
                    return Err((
                        opt.col,
                        format!(
                            "--clamp-mss-to-pmtu is not valid in chain {} (the kernel takes it \
                             in FORWARD, OUTPUT and POSTROUTING only)",
                            h.chain_name()
                        ),
                    ));
                }
            }
            Edit::Mss(None)
        }
        "--set-dscp" => Edit::Tos {
            mask: 0xfc,
            xor: (num(0x3f, "DSCP")? as u8) << 2,
        },
        "--set-dscp-class" => Edit::Tos {
            mask: 0xfc,
            xor: super::matches::dscp_class(text).map_err(|m| (vcol, m))? << 2,
        },
        "--set-tos" => {
            let (value, mask) = super::matches::tos(text).map_err(|m| (vcol, m))?;
            Edit::Tos { mask, xor: value }
        }
        "--and-tos" => Edit::Tos {
            mask: !(num(0xff, "TOS")? as u8),
            xor: 0,
        },
        "--or-tos" => {
            let b = num(0xff, "TOS")? as u8;
            Edit::Tos { mask: b, xor: b }
        }
        "--xor-tos" => Edit::Tos {
            mask: 0,
            xor: num(0xff, "TOS")? as u8,
        },
        o => {
            let what = if o.starts_with("--ttl") {
                "TTL"
            } else {
                "hop limit"
            };
            let v = num(0xff, what)? as u8;
            let op = match o.rsplit('-').next() {
                Some("set") => HopOp::Set(v),
                Some("inc") => HopOp::Inc(v),
                _ => HopOp::Dec(v),
            };
            if v == 0 && !matches!(op, HopOp::Set(_)) {
                return Err((
                    vcol,
                    format!("{o} 0 changes nothing (the kernel refuses it)"),
                ));
            }
            Edit::Hops(op)
        }
    };
    // xt_TCPMSS is for TCP only (`.proto`). Its check also wants a SYN flags test in the
    // rule (`find_syn_match`), but not under nf_tables' compatibility layer, which
    // iptables 1.8's default backend is: there any TCP rule takes it, and the kernel's target
    // edits whatever segment the rule matches (iptables-legacy refuses such a rule).
    if name == "TCPMSS" && !rule.tcp {
        return Err((col, "TCPMSS needs -p tcp".into()));
    }
    Ok(edit)
}

/// Whether flat rules do anything a mangle chain applies (an edit, a mark, a drop); a chain
/// of ACCEPTs, RETURNs and jumps alone changes nothing and is not walked.
fn has_effect(rs: &RuleSet) -> bool {
    rs.rules.iter().any(|r| {
        matches!(
            r.action,
            Action::Edit(_) | Action::Mark | Action::Drop | Action::Reject(_)
        )
    })
}

/// The mangle chains of `parsed` that have an effect, compiled (`None`: none has, so the
/// mangle table costs no packet anything). `with` gives each rule set its classifier.
pub fn compile_mangle<E>(
    parsed: &ParsedRules,
    mut with: impl FnMut(RuleSet) -> Result<RuleSet, E>,
) -> Result<Result<Option<Mangle>, E>, Vec<RuleError>> {
    let Some(table) = parsed.table(TableKind::Mangle) else {
        return Ok(Ok(None));
    };
    let mut m = Mangle::default();
    let mut any = false;
    for hook in [
        HookPoint::Prerouting,
        HookPoint::Input,
        HookPoint::Forward,
        HookPoint::Postrouting,
    ] {
        let flat = super::compile::flatten_keys(
            &super::ctx(parsed),
            Some(table),
            hook,
            super::compile::FlattenFor::Filter,
        )
        .map_err(|e| vec![e])?;
        let rs = super::rule_set(parsed, TableKind::Mangle, flat);
        if !has_effect(&rs) {
            continue;
        }
        any = true;
        let rules = match with(rs) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let chain = Some(MangleChain::new(rules));
        match hook {
            HookPoint::Prerouting => m.prerouting = chain,
            HookPoint::Input => m.input = chain,
            HookPoint::Forward => m.forward = chain,
            _ => m.postrouting = chain,
        }
    }
    Ok(Ok(any.then_some(m)))
}
