//! `-m nfacct --nfacct-name NAME` (libxt_nfacct), read into [`Check::NfAcct`] with the named
//! object ([`dataplane::classify::nfacct`]). libxt_nfacct's option is mandatory, taken once,
//! not negated, and at most 31 characters (`NFACCT_NAME_MAX`); so here.
//!
//! The object is the registry's one of that name, made when no object has it (xt_nfacct
//! refuses the rule then: the object must exist); one a refused rule set made is forgotten
//! ([`dataplane::classify::nfacct::settle`]).

use super::super::ast::*;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::nfacct;
use dataplane::classify::Check;

/// What the parser holds for this module until the rule is read: each `-m nfacct`'s position
/// among the rule's matches, column and name.
#[derive(Default)]
pub(super) struct State {
    pending: Vec<(usize, u32, Option<String>)>,
}

/// The canonical name of `opt` if `module` is `-m nfacct` and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    (module == Module::NfAcct && opt == "--nfacct-name").then_some("--nfacct-name")
}

/// Whether `canonical` is an option of `-m nfacct`.
pub(super) fn takes(canonical: &str) -> bool {
    module_option(Module::NfAcct, canonical).is_some()
}

impl<'a> RuleParser<'a> {
    /// `-m nfacct` was read (at `col`).
    pub(super) fn nfacct_load(&mut self, module: Module, col: u32) {
        if module == Module::NfAcct {
            self.nfacct.pending.push((self.matches.len(), col, None));
        }
    }

    /// `--nfacct-name NAME` (already checked to be given once).
    pub(super) fn nfacct_option(
        &mut self,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        self.no_negation(tok, negated)?;
        let v = self.value(tok)?;
        if !nfacct::valid_name(&v.text) {
            return Err(self.err(
                v.col,
                format!(
                    "invalid accounting object name {:?} (1 to {} characters)",
                    v.text,
                    nfacct::MAX_NAME
                ),
            ));
        }
        let p = self.nfacct.pending.last_mut().expect("-m nfacct loaded");
        p.2 = Some(v.text.to_string());
        Ok(())
    }

    /// The rule read: each `-m nfacct` has its name; its check goes where `-m` stood.
    pub(super) fn nfacct_finish(&mut self) -> Result<(), RuleError> {
        let pending = std::mem::take(&mut self.nfacct.pending);
        for (at, col, name) in pending.into_iter().rev() {
            let Some(name) = name else {
                return Err(self.err(col, "-m nfacct needs --nfacct-name"));
            };
            self.place_check(
                at,
                col,
                Check::NfAcct {
                    acct: nfacct::for_rule(&name),
                    invert: false,
                },
            );
        }
        Ok(())
    }
}
