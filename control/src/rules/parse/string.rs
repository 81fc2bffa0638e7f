//! Options of `-m string` (libxt_string revision 1), read into a [`StringMatch`]
//! ([`dataplane::classify::string`]).

use super::super::ast::*;
use super::super::matches;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::string::{Algo, StringMatch};
use dataplane::classify::Check;
use std::sync::Arc;

/// `XT_STRING_MAX_PATTERN_SIZE`.
pub const MAX_PATTERN: usize = 128;

/// What the parser holds for this module until the rule is read.
#[derive(Default)]
pub(super) struct State {
    pending: Vec<Pending>,
}

/// A `-m string` being read: where its check goes, its column, and its options.
struct Pending {
    at: usize,
    col: u32,
    algo: Option<Algo>,
    from: Option<(u16, u32)>,
    to: Option<u16>,
    /// The pattern and whether `!` came before it.
    pattern: Option<(Vec<u8>, bool)>,
    icase: bool,
}

/// The canonical name of `opt` if `module` is `-m string` and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    if module != Module::String {
        return None;
    }
    Some(match opt {
        "--string" => "--string",
        "--hex-string" => "--hex-string",
        "--algo" => "--algo",
        "--from" => "--from",
        "--to" => "--to",
        "--icase" => "--icase",
        _ => return None,
    })
}

/// Whether `canonical` is an option of `-m string`.
pub(super) fn takes(canonical: &str) -> bool {
    module_option(Module::String, canonical).is_some()
}

/// `--string`: the bytes as given, at most 128 (libxt_string's `parse_string`).
fn plain(s: &str) -> Result<Vec<u8>, String> {
    if s.len() > MAX_PATTERN {
        return Err(format!(
            "STRING too long {s:?} (at most {MAX_PATTERN} bytes)"
        ));
    }
    Ok(s.as_bytes().to_vec())
}

/// `--hex-string` as libxt_string's `parse_hex_string` reads it: text copied as it is, `|`
/// opening and closing a block of two-digit hex bytes (spaces after the opening `|` and one
/// after each byte allowed), `\` outside a block taking the next character literally; at most
/// 128 bytes. Its quirks are kept: the character after a closing `|` is taken as text even
/// when it is a `|`.
pub fn hex(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let n = b.len();
    if n == 0 {
        return Err("STRING must contain at least one char".into());
    }
    let too_long = || format!("STRING too long {s:?} (at most {MAX_PATTERN} bytes)");
    let mut out = Vec::new();
    let (mut i, mut in_hex) = (0usize, false);
    while i < n {
        if out.len() >= MAX_PATTERN {
            return Err(too_long());
        }
        let mut literal = false;
        if b[i] == b'\\' && !in_hex {
            literal = true;
        } else if b[i] == b'\\' {
            return Err("Cannot include literals in hex data".into());
        } else if b[i] == b'|' {
            if in_hex {
                in_hex = false;
            } else {
                in_hex = true;
                while b.get(i + 1) == Some(&b' ') {
                    i += 1;
                }
            }
            if i + 1 >= n {
                break;
            }
            i += 1;
        }
        if literal {
            if i + 1 >= n {
                return Err("Bad literal placement at end of string".into());
            }
            out.push(b[i + 1]);
            i += 2;
        } else if in_hex {
            if i + 1 >= n {
                return Err("Odd number of hex digits".into());
            }
            if i + 2 >= n {
                return Err("Invalid hex block (it must end with |)".into());
            }
            for &c in &b[i..i + 2] {
                if !c.is_ascii_hexdigit() {
                    return Err(format!("Invalid hex char '{}'", char::from(c)));
                }
            }
            let v = u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string())?;
            out.push(v);
            i += if b[i + 2] == b' ' { 3 } else { 2 };
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

impl<'a> RuleParser<'a> {
    /// `-m string` was read (at `col`).
    pub(super) fn string_load(&mut self, module: Module, col: u32) {
        if module == Module::String {
            self.string.pending.push(Pending {
                at: self.matches.len(),
                col,
                algo: None,
                from: None,
                to: None,
                pattern: None,
                icase: false,
            });
        }
    }

    /// An option of `-m string` (`canonical`, already checked to be given once).
    pub(super) fn string_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        let is_pattern = matches!(canonical, "--string" | "--hex-string");
        if !is_pattern {
            self.no_negation(tok, negated)?;
        }
        if canonical == "--icase" {
            self.string
                .pending
                .last_mut()
                .expect("-m string loaded")
                .icase = true;
            return Ok(());
        }
        let v = self.value(tok)?;
        let bad = |m: String| self.err(v.col, m);
        let p = self.string.pending.last().expect("-m string loaded");
        match canonical {
            "--algo" => {
                let algo = match v.text.as_ref() {
                    "bm" => Algo::Bm,
                    "kmp" => Algo::Kmp,
                    "fsm" => {
                        return Err(bad(
                            "--algo fsm is not supported (use bm or kmp)".to_string()
                        ))
                    }
                    other => {
                        return Err(bad(format!(
                            "unknown --algo {other:?} (the kernel's textsearch has bm and kmp)"
                        )))
                    }
                };
                self.string.pending.last_mut().expect("loaded").algo = Some(algo);
            }
            "--from" | "--to" => {
                let n = matches::number(&v.text, 65535, "offset").map_err(bad)? as u16;
                let p = self.string.pending.last_mut().expect("loaded");
                if canonical == "--from" {
                    p.from = Some((n, v.col));
                } else {
                    p.to = Some(n);
                }
            }
            _ => {
                if p.pattern.is_some() {
                    return Err(self.err(
                        tok.col,
                        "--string and --hex-string cannot be combined in one -m string",
                    ));
                }
                let bytes = if canonical == "--string" {
                    plain(&v.text)
                } else {
                    hex(&v.text)
                }
                .map_err(bad)?;
                if bytes.is_empty() {
                    // textsearch_prepare refuses an empty pattern (EINVAL).
                    return Err(bad("the pattern is empty (the kernel refuses it)".into()));
                }
                self.string.pending.last_mut().expect("loaded").pattern = Some((bytes, negated));
            }
        }
        Ok(())
    }

    /// After the rule is read: each `-m string` needs `--algo` and a pattern, and `--from`
    /// not past `--to` (xt_string's check refuses it); its check goes where the module was
    /// loaded.
    pub(super) fn string_finish(&mut self) -> Result<(), RuleError> {
        let pending = std::mem::take(&mut self.string.pending);
        // Later checks first, so the earlier positions stay right.
        for p in pending.into_iter().rev() {
            let Some(algo) = p.algo else {
                return Err(self.err(p.col, "-m string needs --algo bm or --algo kmp"));
            };
            let Some((pattern, invert)) = p.pattern else {
                return Err(self.err(p.col, "-m string needs --string or --hex-string"));
            };
            let to = p.to.unwrap_or(u16::MAX);
            let from = match p.from {
                Some((f, col)) if f > to => {
                    return Err(self.err(
                        col,
                        format!("--from {f} is past --to {to} (the kernel refuses it)"),
                    ))
                }
                Some((f, _)) => f,
                None => 0,
            };
            let m = StringMatch::new(algo, &pattern, from, to, p.icase, invert);
            self.place_check(p.at, p.col, Check::String(Arc::new(m)));
        }
        Ok(())
    }
}
