//! `-j CONNMARK` (libxt_CONNMARK revision 2) and `-m connmark [!] --mark value[/mask]`
//! (libxt_connmark revision 1), read into [`Op`] and [`Check::ConnMark`]
//! ([`dataplane::classify::connmark`]).
//!
//! The target's options are taken in order as libxt_CONNMARK's parser takes them: each
//! operation sets the mode and its `ctmark`/`ctmask`, `--ctmask`/`--nfmask`/`--mask` set the
//! masks whatever the operation (a later option overrides an earlier one), and the shift
//! options set the shift. What it refuses is refused: two operations, none, `--mask` with
//! `--ctmask` or `--nfmask`, an option twice, a shift beyond 32, `!`.

use super::super::ast::*;
use super::super::marks::value_mask;
use super::super::matches::number;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::connmark::{Mode, Op};
use dataplane::classify::Check;

/// The options of the target.
const OPS: [&str; 7] = [
    "--set-xmark",
    "--set-mark",
    "--and-mark",
    "--or-mark",
    "--xor-mark",
    "--save-mark",
    "--restore-mark",
];

/// A CONNMARK target being read.
pub(super) struct Pending {
    op: Op,
    /// The options given (each once).
    used: Vec<&'static str>,
}

impl Default for Pending {
    fn default() -> Pending {
        // libxt_CONNMARK's init: both masks all ones, a left shift by 0.
        Pending {
            op: Op {
                mode: Mode::Set,
                ctmark: 0,
                ctmask: u32::MAX,
                nfmask: u32::MAX,
                shift_right: false,
                shift_bits: 0,
            },
            used: Vec::new(),
        }
    }
}

/// The target's option `opt`, canonical.
fn target_option(opt: &str) -> Option<&'static str> {
    OPS.iter()
        .chain(&[
            "--ctmask",
            "--nfmask",
            "--mask",
            "--left-shift-mark",
            "--right-shift-mark",
        ])
        .find(|o| **o == opt)
        .copied()
}

/// The canonical name of `opt` if `module` is `-m connmark` and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    (module == Module::ConnMark && opt == "--mark").then_some("--mark")
}

impl<'a> RuleParser<'a> {
    /// A CONNMARK option; `Ok(false)` when `tok` is not one.
    pub(super) fn connmark_target_option(
        &mut self,
        p: &mut Pending,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<bool, RuleError> {
        let Some(opt) = target_option(tok.text.as_ref()) else {
            return Ok(false);
        };
        self.no_negation(tok, negated)?;
        if p.used.contains(&opt) {
            return Err(self.err(tok.col, format!("only one {opt} is allowed")));
        }
        let is_op = OPS.contains(&opt);
        if is_op {
            if let Some(o) = p.used.iter().find(|o| OPS.contains(o)) {
                return Err(self.err(
                    tok.col,
                    format!("CONNMARK: {opt} cannot be combined with {o} (one operation a rule)"),
                ));
            }
        }
        let masks = ["--ctmask", "--nfmask"];
        let clash = match opt {
            "--mask" => p.used.iter().find(|o| masks.contains(o)),
            o if masks.contains(&o) => p.used.iter().find(|o| **o == "--mask"),
            _ => None,
        };
        if let Some(c) = clash {
            return Err(self.err(
                tok.col,
                format!("CONNMARK: {opt} cannot be combined with {c}"),
            ));
        }
        p.used.push(opt);
        let op = &mut p.op;
        if matches!(opt, "--save-mark" | "--restore-mark") {
            op.mode = if opt == "--save-mark" {
                Mode::Save
            } else {
                Mode::Restore
            };
            return Ok(true);
        }
        let v = self.value(tok)?;
        let bad = |m: String| self.err(v.col, m);
        let bits = || number(&v.text, u32::MAX, "mark").map_err(bad);
        match opt {
            "--set-xmark" | "--set-mark" => {
                let (value, mask) = value_mask(&v.text).map_err(bad)?;
                op.mode = Mode::Set;
                op.ctmark = value;
                op.ctmask = if opt == "--set-mark" {
                    value | mask
                } else {
                    mask
                };
            }
            "--and-mark" => {
                let b = bits()?;
                (op.mode, op.ctmark, op.ctmask) = (Mode::Set, 0, !b);
            }
            "--or-mark" => {
                let b = bits()?;
                (op.mode, op.ctmark, op.ctmask) = (Mode::Set, b, b);
            }
            "--xor-mark" => {
                let b = bits()?;
                (op.mode, op.ctmark, op.ctmask) = (Mode::Set, b, 0);
            }
            "--ctmask" => op.ctmask = number(&v.text, u32::MAX, "mask").map_err(bad)?,
            "--nfmask" => op.nfmask = number(&v.text, u32::MAX, "mask").map_err(bad)?,
            "--mask" => {
                let m = number(&v.text, u32::MAX, "mask").map_err(bad)?;
                (op.ctmask, op.nfmask) = (m, m);
            }
            _ => {
                // The shifts: 0 to 32 bits.
                let n = number(&v.text, 32, "shift").map_err(bad)?;
                op.shift_right = opt == "--right-shift-mark";
                op.shift_bits = n as u8;
            }
        }
        Ok(true)
    }

    /// The CONNMARK target read: refused without an operation, as libxt_CONNMARK refuses it.
    pub(super) fn finish_connmark(&self, p: &Pending, col: u32) -> Result<Op, RuleError> {
        if !p.used.iter().any(|o| OPS.contains(o)) {
            return Err(self.err(
                col,
                "CONNMARK needs one of --set-xmark, --set-mark, --and-mark, --or-mark, \
                 --xor-mark, --save-mark, --restore-mark",
            ));
        }
        Ok(p.op)
    }

    /// `-m connmark [!] --mark value[/mask]`.
    pub(super) fn connmark_option(
        &mut self,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        let v = self.value(tok)?;
        let (value, mask) = value_mask(&v.text).map_err(|m| self.err(v.col, m))?;
        self.push(
            tok.col,
            false,
            Cond::Check(Check::ConnMark {
                value,
                mask,
                invert: negated,
            }),
        );
        Ok(())
    }
}
