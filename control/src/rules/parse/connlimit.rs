//! Options of `-m connlimit` (libxt_connlimit revision 1), read into a [`ConnLimitMatch`] with
//! a count table of its own ([`dataplane::classify::connlimit`]): each rule counts apart, and
//! a reload starts every count at zero, as each Linux match instance has its own
//! `nf_conncount_data`.

use super::super::ast::*;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::connlimit::{prefix_mask, ConnLimitMatch, CountTable};
use dataplane::classify::Check;
use dataplane::wire::Family;
use std::sync::Arc;

/// What the parser holds for this module until the rule is read.
#[derive(Default)]
pub(super) struct State {
    pending: Vec<Pending>,
}

/// A `-m connlimit` being read: where its check goes, its column, and its options.
struct Pending {
    at: usize,
    col: u32,
    /// `(limit, above)`.
    limit: Option<(u32, bool)>,
    mask: Option<u8>,
    daddr: bool,
}

/// The canonical name of `opt` if `module` is `-m connlimit` and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    if module != Module::ConnLimit {
        return None;
    }
    Some(match opt {
        "--connlimit-upto" => "--connlimit-upto",
        "--connlimit-above" => "--connlimit-above",
        "--connlimit-mask" => "--connlimit-mask",
        "--connlimit-saddr" => "--connlimit-saddr",
        "--connlimit-daddr" => "--connlimit-daddr",
        _ => return None,
    })
}

/// Whether `canonical` is an option of `-m connlimit`.
pub(super) fn takes(canonical: &str) -> bool {
    module_option(Module::ConnLimit, canonical).is_some()
}

impl<'a> RuleParser<'a> {
    /// `-m connlimit` was read (at `col`).
    pub(super) fn connlimit_load(&mut self, module: Module, col: u32) {
        if module == Module::ConnLimit {
            self.connlimit.pending.push(Pending {
                at: self.matches.len(),
                col,
                limit: None,
                mask: None,
                daddr: false,
            });
        }
    }

    /// An option of `-m connlimit` (`canonical`, already checked to be given once).
    pub(super) fn connlimit_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        let is_limit = matches!(canonical, "--connlimit-upto" | "--connlimit-above");
        if !is_limit {
            self.no_negation(tok, negated)?;
        }
        // libxt_connlimit's exclusions: one of upto and above, one of saddr and daddr.
        let other = match canonical {
            "--connlimit-upto" => Some("--connlimit-above"),
            "--connlimit-above" => Some("--connlimit-upto"),
            "--connlimit-saddr" => Some("--connlimit-daddr"),
            "--connlimit-daddr" => Some("--connlimit-saddr"),
            _ => None,
        };
        if let Some(other) = other {
            let inst = self
                .instances
                .iter()
                .rev()
                .find(|i| i.module == Module::ConnLimit);
            if inst.is_some_and(|i| i.used.contains(&other)) {
                return Err(self.err(
                    tok.col,
                    format!("{canonical} cannot be combined with {other} in one -m connlimit"),
                ));
            }
        }
        let bits: u32 = if self.ctx.family == Family::V4 {
            32
        } else {
            128
        };
        let set: Box<dyn FnOnce(&mut Pending)> = match canonical {
            "--connlimit-upto" | "--connlimit-above" => {
                let v = self.value(tok)?;
                let n = super::super::matches::number(&v.text, u32::MAX, "connection count")
                    .map_err(|m| self.err(v.col, m))?;
                let above = (canonical == "--connlimit-above") != negated;
                Box::new(move |c| c.limit = Some((n, above)))
            }
            "--connlimit-mask" => {
                let v = self.value(tok)?;
                let n = super::super::matches::number(&v.text, u32::MAX, "prefix length")
                    .map_err(|m| self.err(v.col, m))?;
                if n > bits {
                    return Err(self.err(
                        v.col,
                        format!("--connlimit-mask {n} is longer than an address ({bits} bits)"),
                    ));
                }
                Box::new(move |c| c.mask = Some(n as u8))
            }
            "--connlimit-daddr" => Box::new(|c| c.daddr = true),
            _ => Box::new(|c| c.daddr = false),
        };
        if let Some(c) = self.connlimit.pending.last_mut() {
            set(c);
        }
        Ok(())
    }

    /// The rule's `-m connlimit` checks, each at its place among the matches, each with a new
    /// count table; what iptables and the kernel refuse.
    pub(super) fn connlimit_finish(&mut self) -> Result<(), RuleError> {
        let pending = std::mem::take(&mut self.connlimit.pending);
        for c in pending.into_iter().rev() {
            let Some((limit, above)) = c.limit else {
                return Err(self.err(
                    c.col,
                    "-m connlimit needs --connlimit-above or --connlimit-upto",
                ));
            };
            if self.table != TableKind::Filter {
                return Err(self.err(
                    c.col,
                    format!(
                        "-m connlimit is not supported in the {} table (filter only: the \
                         counts are kept where the filter judges a connection)",
                        self.table.name()
                    ),
                ));
            }
            let family = self.ctx.family;
            let plen = c
                .mask
                .unwrap_or(if family == Family::V4 { 32 } else { 128 });
            let m = ConnLimitMatch {
                table: Arc::new(CountTable::new()),
                family,
                above,
                limit,
                mask: prefix_mask(family, plen),
                daddr: c.daddr,
            };
            self.place_check(c.at, c.col, Check::ConnLimit(Arc::new(m)));
        }
        Ok(())
    }
}
