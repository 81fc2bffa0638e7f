//! Options of `-m recent` (xt_recent's named lists), kept apart from the other matches' so
//! that each is one hook in the parser.

use super::super::ast::*;
use super::super::matches;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::recent::{self, RecentMatch, RecentOp, MAX_HITCOUNT};
use dataplane::classify::Check;
use dataplane::wire::Family;

/// xt_recent's longest list name (`XT_RECENT_NAME_LEN` less its NUL).
const MAX_NAME: usize = 199;

/// What the parser holds for the matches of this module until the rule is read.
#[derive(Default)]
pub(super) struct State {
    recents: Vec<PendingRecent>,
}

/// A `-m recent` being read: where its check goes among the rule's matches, and its options.
struct PendingRecent {
    at: usize,
    col: u32,
    op: Option<(RecentOp, bool, u32)>,
    seconds: u32,
    hitcount: u32,
    reap: Option<u32>,
    rttl: Option<u32>,
    dest: bool,
    name: String,
    mask: Option<[u8; 16]>,
}

/// The canonical name of `opt` if `module` is one of this file's and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    Some(match (module, opt) {
        (Module::Recent, "--set") => "--set",
        (Module::Recent, "--rcheck") => "--rcheck",
        (Module::Recent, "--update") => "--update",
        (Module::Recent, "--remove") => "--remove",
        (Module::Recent, "--seconds") => "--seconds",
        (Module::Recent, "--reap") => "--reap",
        (Module::Recent, "--hitcount") => "--hitcount",
        (Module::Recent, "--rttl") => "--rttl",
        (Module::Recent, "--name") => "--name",
        (Module::Recent, "--rsource") => "--rsource",
        (Module::Recent, "--rdest") => "--rdest",
        (Module::Recent, "--mask") => "--mask",
        _ => return None,
    })
}

/// Whether `canonical` is an option of this file's modules.
pub(super) fn takes(canonical: &str) -> bool {
    module_option(Module::Recent, canonical).is_some()
}

impl<'a> RuleParser<'a> {
    /// `-m MODULE` was read (at `col`).
    pub(super) fn ext_load(&mut self, module: Module, col: u32) {
        if module == Module::Recent {
            self.ext.recents.push(PendingRecent {
                at: self.matches.len(),
                col,
                op: None,
                seconds: 0,
                hitcount: 0,
                reap: None,
                rttl: None,
                dest: false,
                name: "DEFAULT".to_string(),
                mask: None,
            });
        }
    }

    /// An option of this file's modules (`canonical`, already checked to be given once).
    pub(super) fn ext_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        let family = self.ctx.family;
        let op = match canonical {
            "--set" => Some(RecentOp::Set),
            "--rcheck" => Some(RecentOp::Check),
            "--update" => Some(RecentOp::Update),
            "--remove" => Some(RecentOp::Remove),
            _ => None,
        };
        if op.is_none() {
            self.no_negation(tok, negated)?;
        }
        let value = match canonical {
            "--seconds" | "--hitcount" | "--name" | "--mask" => Some(self.value(tok)?),
            _ => None,
        };
        let err = |p: &Self, col: u32, m: String| p.err(col, m);
        let mut parsed_mask = None;
        let mut number = None;
        if let Some(v) = value {
            match canonical {
                "--seconds" => {
                    number = Some(
                        matches::number(&v.text, u32::MAX, "seconds")
                            .map_err(|m| err(self, v.col, m))?,
                    );
                }
                "--hitcount" => {
                    let n = matches::number(&v.text, u32::MAX, "hit count")
                        .map_err(|m| err(self, v.col, m))?;
                    if n > MAX_HITCOUNT {
                        return Err(self.err(
                            v.col,
                            format!(
                                "--hitcount {n} is larger than the kernel allows \
                                 ({MAX_HITCOUNT}: the stamps an entry can keep)"
                            ),
                        ));
                    }
                    number = Some(n);
                }
                "--name" => {
                    if v.text.is_empty() || v.text.len() > MAX_NAME {
                        return Err(self.err(
                            v.col,
                            format!("--name must be 1 to {MAX_NAME} characters long"),
                        ));
                    }
                }
                _ => {
                    // An IPv4 mask fills the first word and leaves the others zero, which is
                    // what IPv6 addresses meet in a list an IPv4 rule made (libxt_recent
                    // starts from all ones only when there is no --mask).
                    let mut m = [0u8; 16];
                    let ok = match family {
                        Family::V4 => v
                            .text
                            .parse::<std::net::Ipv4Addr>()
                            .map(|a| m[..4].copy_from_slice(&a.octets()))
                            .is_ok(),
                        Family::V6 => v
                            .text
                            .parse::<std::net::Ipv6Addr>()
                            .map(|a| m = a.octets())
                            .is_ok(),
                    };
                    if !ok {
                        return Err(self.err(
                            v.col,
                            format!("invalid --mask {:?} (an address mask)", v.text),
                        ));
                    }
                    parsed_mask = Some(m);
                }
            }
        }
        let col = tok.col;
        let Some(r) = self.ext.recents.last_mut() else {
            return Ok(());
        };
        if let Some(op) = op {
            if let Some((_, _, c)) = r.op {
                let _ = c;
                return Err(self.err(
                    col,
                    "-m recent takes only one of --set, --rcheck, --update and --remove",
                ));
            }
            r.op = Some((op, negated, col));
            return Ok(());
        }
        match canonical {
            "--seconds" => r.seconds = number.unwrap_or(0),
            "--hitcount" => r.hitcount = number.unwrap_or(0),
            "--reap" => r.reap = Some(col),
            "--rttl" => r.rttl = Some(col),
            "--rsource" | "--rdest" => {
                let other = if canonical == "--rsource" {
                    "--rdest"
                } else {
                    "--rsource"
                };
                let inst = self
                    .instances
                    .iter()
                    .rev()
                    .find(|i| i.module == Module::Recent);
                if inst.is_some_and(|i| i.used.contains(&other)) {
                    return Err(self.err(
                        col,
                        format!("{canonical} cannot be combined with {other} in one -m recent"),
                    ));
                }
                let Some(r) = self.ext.recents.last_mut() else {
                    return Ok(());
                };
                r.dest = canonical == "--rdest";
            }
            "--name" => r.name = value.map(|v| v.text.to_string()).unwrap_or_default(),
            "--mask" => r.mask = parsed_mask,
            _ => {}
        }
        Ok(())
    }

    /// The rule's `-m recent` checks, each at its place among the matches, bound to its list;
    /// the kernel's refusals (`recent_mt_check`).
    pub(super) fn ext_finish(&mut self) -> Result<(), RuleError> {
        let recents = std::mem::take(&mut self.ext.recents);
        for r in recents.into_iter().rev() {
            let Some((op, invert, op_col)) = r.op else {
                return Err(self.err(
                    r.col,
                    "-m recent needs one of --set, --rcheck, --update or --remove",
                ));
            };
            if matches!(op, RecentOp::Set | RecentOp::Remove) {
                let bad = [
                    (r.seconds != 0, "--seconds"),
                    (r.hitcount != 0, "--hitcount"),
                    (r.reap.is_some(), "--reap"),
                    (r.rttl.is_some(), "--rttl"),
                ];
                if let Some((_, what)) = bad.iter().find(|b| b.0) {
                    return Err(self.err(
                        op_col,
                        format!(
                            "{what} goes with --rcheck or --update only (the kernel refuses it \
                             with --set and --remove)"
                        ),
                    ));
                }
            }
            if let (Some(c), 0) = (r.reap, r.seconds) {
                return Err(self.err(c, "--reap needs --seconds"));
            }
            if !self.table.applied() && (op != RecentOp::Check || r.reap.is_some()) {
                return Err(self.err(
                    op_col,
                    format!(
                        "-m recent that changes its list is not supported in the {} table \
                         (Rampart does not apply it, and other rules would see the list \
                         unchanged)",
                        self.table.name()
                    ),
                ));
            }
            let mask = r.mask.unwrap_or([0xff; 16]);
            let list = recent::list(&r.name, mask, recent::history_for(r.hitcount));
            let m = RecentMatch {
                list,
                op,
                invert,
                seconds: r.seconds,
                hitcount: r.hitcount,
                reap: r.reap.is_some(),
                rttl: r.rttl.is_some(),
                dest: r.dest,
                mask,
                forward: false,
            };
            self.matches.insert(
                r.at.min(self.matches.len()),
                Match {
                    col: r.col,
                    negated: false,
                    cond: Cond::Check(Check::Recent(std::sync::Arc::new(m))),
                },
            );
        }
        Ok(())
    }
}
