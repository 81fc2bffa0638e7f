//! Options of `-m set` (libxt_set revision 4), read into a [`SetMatch`] on the sets given with
//! the rule file ([`super::Ctx::sets`]).

use super::super::ast::*;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::ipset::SetMatch;
use dataplane::classify::Check;
use dataplane::wire::Family;
use std::sync::Arc;

/// `IPSET_DIM_MAX`.
const DIM_MAX: usize = 6;

/// What the parser holds for this module until the rule is read.
#[derive(Default)]
pub(super) struct State {
    pending: Vec<Pending>,
}

/// A `-m set` being read.
struct Pending {
    at: usize,
    col: u32,
    /// The set's index, the flags (bit d: source), their count, `!`.
    set: Option<(usize, u8, u8, bool)>,
    return_nomatch: bool,
}

/// The canonical name of `opt` if `module` is `-m set` and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    if module != Module::Set {
        return None;
    }
    Some(match opt {
        "--match-set" | "--set" => "--match-set",
        "--return-nomatch" => "--return-nomatch",
        "--update-counters" => "--update-counters",
        "--update-subcounters" => "--update-subcounters",
        "--packets-eq" | "--packets-lt" | "--packets-gt" => "--packets",
        "--bytes-eq" | "--bytes-lt" | "--bytes-gt" => "--bytes",
        _ => return None,
    })
}

/// Whether `canonical` is an option of `-m set`.
pub(super) fn takes(canonical: &str) -> bool {
    matches!(
        canonical,
        "--match-set"
            | "--return-nomatch"
            | "--update-counters"
            | "--update-subcounters"
            | "--packets"
            | "--bytes"
    )
}

impl<'a> RuleParser<'a> {
    /// `-m set` was read (at `col`).
    pub(super) fn set_load(&mut self, module: Module, col: u32) {
        if module == Module::Set {
            self.set.pending.push(Pending {
                at: self.matches.len(),
                col,
                set: None,
                return_nomatch: false,
            });
        }
    }

    /// An option of `-m set`.
    pub(super) fn set_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        match canonical {
            "--match-set" => {
                let name = self.value(tok)?;
                let flags = match self.next() {
                    Some(f) if f.quoted || !f.text.starts_with(['-', '!']) => f,
                    _ => {
                        return Err(
                            self.err(tok.col, "--match-set requires two args (NAME and FLAGS)")
                        )
                    }
                };
                if name.text.len() > crate::rules::ipsets::MAX_NAME {
                    return Err(self.err(
                        name.col,
                        format!(
                            "setname `{}' too long, max {} characters",
                            name.text,
                            crate::rules::ipsets::MAX_NAME
                        ),
                    ));
                }
                let sets = self.ctx.sets.map(|c| c.snapshot());
                let found = sets
                    .as_ref()
                    .and_then(|s| s.find(&name.text).map(|i| (s, i)));
                let Some((sets, index)) = found else {
                    return Err(self.err(
                        name.col,
                        format!(
                            "Set {} doesn't exist ({})",
                            name.text,
                            if sets.is_some() {
                                "not in the sets file"
                            } else {
                                "no sets file was given: name one with --ipsets or ipsets = \
                                 in the configuration"
                            }
                        ),
                    ));
                };
                let set = &sets.sets[index];
                if set.family.is_some_and(|f| f != self.ctx.family) {
                    return Err(self.err(
                        name.col,
                        format!(
                            "The protocol family of set {} is {}, which is not applicable",
                            name.text,
                            if self.ctx.family == Family::V4 {
                                "IPv6"
                            } else {
                                "IPv4"
                            }
                        ),
                    ));
                }
                let (mut dirs, mut dim) = (0u8, 0u8);
                let words: Vec<&str> = flags.text.split(',').collect();
                if words.len() > DIM_MAX {
                    return Err(self.err(
                        flags.col,
                        format!("Can't be more src/dst options than {DIM_MAX}"),
                    ));
                }
                for w in words {
                    if w.starts_with("src") {
                        dirs |= 1 << dim;
                    } else if !w.starts_with("dst") {
                        return Err(self.err(
                            flags.col,
                            "You must specify (the comma separated list of) 'src' or 'dst'",
                        ));
                    }
                    dim += 1;
                }
                if let Some(p) = self.set.pending.last_mut() {
                    p.set = Some((index, dirs, dim, negated));
                }
            }
            "--return-nomatch" => {
                self.no_negation(tok, negated)?;
                if let Some(p) = self.set.pending.last_mut() {
                    p.return_nomatch = true;
                }
            }
            // Rampart keeps no counters of set entries: with or without `!`, these change
            // no match.
            "--update-counters" | "--update-subcounters" => {}
            _ => {
                return Err(self.err(
                    tok.col,
                    format!(
                        "{} is not supported: Rampart keeps no packet or byte counters of set \
                         entries",
                        tok.text
                    ),
                ))
            }
        }
        Ok(())
    }

    /// The rule's `-m set` checks, each at its place among the matches.
    pub(super) fn set_finish(&mut self) -> Result<(), RuleError> {
        let pending = std::mem::take(&mut self.set.pending);
        for p in pending.into_iter().rev() {
            let Some((index, dirs, dim, invert)) = p.set else {
                return Err(self.err(p.col, "-m set needs --match-set NAME src|dst[,src|dst...]"));
            };
            if !matches!(self.table, TableKind::Filter | TableKind::Raw) {
                return Err(self.err(
                    p.col,
                    format!(
                        "-m set is not supported in the {} table (filter and raw only)",
                        self.table.name()
                    ),
                ));
            }
            let Some(sets) = self.ctx.sets else {
                continue;
            };
            let m = SetMatch {
                sets: Arc::clone(sets),
                index,
                dirs,
                dim,
                invert,
                return_nomatch: p.return_nomatch,
            };
            self.place_check(p.at, p.col, Check::Set(Arc::new(m)));
        }
        Ok(())
    }
}
