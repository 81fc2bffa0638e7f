//! `-m rpfilter [--loose] [--validmark] [--accept-local] [--invert]` (libxt_rpfilter), read
//! into [`Check::RpFilter`] ([`dataplane::classify::rpfilter`]).
//!
//! What iptables and the kernel refuse is refused: an option twice, `!` before an option
//! (none may be inverted: `--invert` is the match's own negation), the match outside the raw
//! and mangle tables (rpfilter_check) or in a built-in chain other than PREROUTING (the
//! match's hooks; a user chain reached from another hook is refused at COMMIT,
//! [`super::super::validate`]). Bridge mode has no routes to look a source up in, so the
//! match is refused there, naming router mode.

use super::super::ast::*;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::rpfilter::{self, RpFilterMatch};
use dataplane::classify::Check;
use std::sync::Arc;

/// What the parser holds for the matches of this module until the rule is read: each
/// `-m rpfilter`'s position among the rule's matches and its column.
#[derive(Default)]
pub(super) struct State {
    pending: Vec<(usize, u32)>,
}

/// The canonical name of `opt` if `module` is `-m rpfilter` and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    if module != Module::RpFilter {
        return None;
    }
    ["--loose", "--validmark", "--accept-local", "--invert"]
        .into_iter()
        .find(|o| *o == opt)
}

/// Whether `canonical` is an option of `-m rpfilter`.
pub(super) fn takes(canonical: &str) -> bool {
    module_option(Module::RpFilter, canonical).is_some()
}

impl<'a> RuleParser<'a> {
    /// `-m rpfilter` was read (at `col`): a strict check until its options say otherwise.
    pub(super) fn rpfilter_load(&mut self, module: Module, col: u32) {
        if module != Module::RpFilter {
            return;
        }
        let Some(fib) = self.ctx.host.rpf.clone() else {
            // Bridge mode: refused by `rpfilter_finish`.
            self.rpfilter.pending.push((usize::MAX, col));
            return;
        };
        self.rpfilter.pending.push((self.matches.len(), col));
        self.push(
            col,
            false,
            Cond::Check(Check::RpFilter(Arc::new(RpFilterMatch { flags: 0, fib }))),
        );
    }

    /// An option of `-m rpfilter` (`canonical`, already checked to be given once).
    pub(super) fn rpfilter_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        self.no_negation(tok, negated)?;
        let bit = match canonical {
            "--loose" => rpfilter::LOOSE,
            "--validmark" => rpfilter::VALID_MARK,
            "--accept-local" => rpfilter::ACCEPT_LOCAL,
            _ => rpfilter::INVERT,
        };
        let (at, _) = *self.rpfilter.pending.last().expect("-m rpfilter loaded");
        if let Some(Match {
            cond: Cond::Check(Check::RpFilter(m)),
            ..
        }) = self.matches.get_mut(at)
        {
            Arc::make_mut(m).flags |= bit;
        }
        Ok(())
    }

    /// The rule read: the mode, table and chain allow the match.
    pub(super) fn rpfilter_finish(&mut self) -> Result<(), RuleError> {
        let Some(&(at, col)) = self.rpfilter.pending.first() else {
            return Ok(());
        };
        if at == usize::MAX && self.ctx.host.routed {
            return Err(self.err(col, "-m rpfilter: the router's routes are not known here"));
        }
        if at == usize::MAX {
            return Err(self.err(
                col,
                "-m rpfilter needs router mode (mode = \"router\"): it looks the source up in \
                 the router's routes, which a bridge has none of",
            ));
        }
        if !matches!(self.table, TableKind::Raw | TableKind::Mangle) {
            return Err(self.err(
                col,
                format!(
                    "-m rpfilter is only valid in the raw and mangle tables, not {}",
                    self.table.name()
                ),
            ));
        }
        if let Some(h) = self.hook.filter(|h| *h != HookPoint::Prerouting) {
            return Err(self.err(
                col,
                format!(
                    "-m rpfilter is only valid in PREROUTING, not {}",
                    h.chain_name()
                ),
            ));
        }
        Ok(())
    }
}
