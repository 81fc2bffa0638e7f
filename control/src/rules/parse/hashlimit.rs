//! Options of `-m hashlimit` (libxt_hashlimit revision 3, packet rates), read into a
//! [`HashLimitMatch`] bound to its named table ([`dataplane::classify::hashlimit`]).

use super::super::ast::*;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::hashlimit::{self, mode, Config, HashLimitMatch, MAX_ENTRIES, SCALE};
use dataplane::classify::Check;
use dataplane::wire::Family;
use std::sync::Arc;

/// libxt_hashlimit's largest `--hashlimit-burst` (revisions 2 and 3).
const BURST_MAX: u64 = 1_000_000;
/// The longest table name (revision 3's `NAME_MAX` less its NUL).
const MAX_NAME: usize = 254;

/// What the parser holds for this module until the rule is read.
#[derive(Default)]
pub(super) struct State {
    pending: Vec<Pending>,
}

/// A `-m hashlimit` being read: where its check goes, its column, and its options.
struct Pending {
    at: usize,
    col: u32,
    /// `(avg, above, unit in seconds, column)`.
    rate: Option<(u64, bool, u64, u32)>,
    burst: u64,
    mode: u8,
    srcmask: Option<u32>,
    dstmask: Option<u32>,
    name: Option<String>,
    size: u32,
    max: Option<(u32, u32)>,
    expire: Option<u32>,
    gc_interval: u32,
}

/// The canonical name of `opt` if `module` is `-m hashlimit` and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    if module != Module::HashLimit {
        return None;
    }
    Some(match opt {
        "--hashlimit-upto" | "--hashlimit" => "--hashlimit-upto",
        "--hashlimit-above" => "--hashlimit-above",
        "--hashlimit-burst" => "--hashlimit-burst",
        "--hashlimit-mode" => "--hashlimit-mode",
        "--hashlimit-srcmask" => "--hashlimit-srcmask",
        "--hashlimit-dstmask" => "--hashlimit-dstmask",
        "--hashlimit-name" => "--hashlimit-name",
        "--hashlimit-htable-size" => "--hashlimit-htable-size",
        "--hashlimit-htable-max" => "--hashlimit-htable-max",
        "--hashlimit-htable-expire" => "--hashlimit-htable-expire",
        "--hashlimit-htable-gcinterval" => "--hashlimit-htable-gcinterval",
        "--hashlimit-rate-match" => "--hashlimit-rate-match",
        "--hashlimit-rate-interval" => "--hashlimit-rate-interval",
        _ => return None,
    })
}

/// Whether `canonical` is an option of `-m hashlimit`.
pub(super) fn takes(canonical: &str) -> bool {
    module_option(Module::HashLimit, canonical).is_some()
}

/// A rate as libxt_hashlimit reads it: `N` or `N/UNIT` (a leading part of `second`, `minute`,
/// `hour` or `day`, any case) as `(average interval in millionths of a second, unit in
/// seconds)`.
fn rate(s: &str) -> Result<(u64, u64), String> {
    let (n, unit) = match s.split_once('/') {
        Some((n, u)) => (n, Some(u)),
        None => (s, None),
    };
    let mult = match unit {
        None => 1,
        Some(u) => {
            let u = u.to_ascii_lowercase();
            let is = |w: &str| !u.is_empty() && w.starts_with(u.as_str());
            if is("second") {
                1
            } else if is("minute") {
                60
            } else if is("hour") {
                3600
            } else if is("day") {
                86_400
            } else {
                return Err(format!(
                    "invalid rate {s:?} (a number per second, minute, hour or day)"
                ));
            }
        }
    };
    let digits = n.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if digits.len() != n.len() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "byte rates ({s}) are not supported: Rampart's -m hashlimit counts packets"
        ));
    }
    let r: u64 = match n.parse() {
        Ok(r) if r > 0 && n.bytes().all(|b| b.is_ascii_digit()) => r,
        _ => {
            return Err(format!(
                "invalid rate {s:?} (a number per second, minute, hour or day)"
            ))
        }
    };
    let per = SCALE * mult;
    if r > per {
        return Err(format!("rate {s} is too fast (at most 1000000/sec)"));
    }
    Ok((per / r, mult))
}

fn number(s: &str, what: &str) -> Result<u32, String> {
    super::super::matches::number(s, u32::MAX, what)
}

impl<'a> RuleParser<'a> {
    /// `-m hashlimit` was read (at `col`).
    pub(super) fn hashlimit_load(&mut self, module: Module, col: u32) {
        if module == Module::HashLimit {
            self.hashlimit.pending.push(Pending {
                at: self.matches.len(),
                col,
                rate: None,
                burst: 5,
                mode: 0,
                srcmask: None,
                dstmask: None,
                name: None,
                size: 0,
                max: None,
                expire: None,
                gc_interval: 1000,
            });
        }
    }

    /// An option of `-m hashlimit` (`canonical`, already checked to be given once).
    pub(super) fn hashlimit_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        let is_rate = matches!(canonical, "--hashlimit-upto" | "--hashlimit-above");
        if !is_rate {
            self.no_negation(tok, negated)?;
        }
        if canonical == "--hashlimit-rate-match" {
            return Err(self.err(
                tok.col,
                "--hashlimit-rate-match is not supported (Rampart's -m hashlimit is the token \
                 bucket)",
            ));
        }
        let v = self.value(tok)?;
        let (col, text) = (v.col, v.text.as_ref());
        let err = |p: &Self, m: String| p.err(col, m);
        if is_rate {
            let other = if canonical == "--hashlimit-upto" {
                "--hashlimit-above"
            } else {
                "--hashlimit-upto"
            };
            let inst = self
                .instances
                .iter()
                .rev()
                .find(|i| i.module == Module::HashLimit);
            if inst.is_some_and(|i| i.used.contains(&other)) {
                return Err(self.err(
                    tok.col,
                    format!("{canonical} cannot be combined with {other} in one -m hashlimit"),
                ));
            }
        }
        let bits = if self.ctx.family == Family::V4 {
            32
        } else {
            128
        };
        let set: Box<dyn FnOnce(&mut Pending)> = match canonical {
            "--hashlimit-upto" | "--hashlimit-above" => {
                let (avg, mult) = rate(text).map_err(|m| err(self, m))?;
                let above = (canonical == "--hashlimit-above") != negated;
                Box::new(move |h| h.rate = Some((avg, above, mult, col)))
            }
            "--hashlimit-burst" => {
                let b = number(text, "burst").map_err(|m| err(self, m))?;
                if b == 0 || u64::from(b) > BURST_MAX {
                    return Err(err(
                        self,
                        format!("--hashlimit-burst {b} is out of range (1-{BURST_MAX})"),
                    ));
                }
                Box::new(move |h| h.burst = u64::from(b))
            }
            "--hashlimit-mode" => {
                let mut m = 0;
                for word in text.split(',').filter(|w| !w.is_empty()) {
                    m |= match word {
                        "srcip" => mode::SRCIP,
                        "srcport" => mode::SRCPORT,
                        "dstip" => mode::DSTIP,
                        "dstport" => mode::DSTPORT,
                        _ => {
                            return Err(err(
                                self,
                                format!(
                                    "bad --hashlimit-mode {word:?} (a list of srcip, srcport, \
                                     dstip, dstport)"
                                ),
                            ))
                        }
                    };
                }
                Box::new(move |h| h.mode = m)
            }
            "--hashlimit-srcmask" | "--hashlimit-dstmask" => {
                let n = number(text, "prefix length").map_err(|m| err(self, m))?;
                if n > bits {
                    return Err(err(
                        self,
                        format!("{canonical} {n} is longer than an address ({bits} bits)"),
                    ));
                }
                if canonical == "--hashlimit-srcmask" {
                    Box::new(move |h| h.srcmask = Some(n))
                } else {
                    Box::new(move |h| h.dstmask = Some(n))
                }
            }
            "--hashlimit-name" => {
                if text.is_empty()
                    || text.len() > MAX_NAME
                    || text.contains('/')
                    || text == "."
                    || text == ".."
                {
                    return Err(err(
                        self,
                        format!(
                            "invalid --hashlimit-name {text:?} (1 to {MAX_NAME} characters, no \
                             '/', not . or ..)"
                        ),
                    ));
                }
                let name = text.to_string();
                Box::new(move |h| h.name = Some(name))
            }
            _ => {
                let n = number(text, "number").map_err(|m| err(self, m))?;
                let timer = matches!(
                    canonical,
                    "--hashlimit-htable-expire" | "--hashlimit-htable-gcinterval"
                );
                if timer && n == 0 {
                    return Err(err(
                        self,
                        format!("{canonical} must be at least 1 (milliseconds)"),
                    ));
                }
                match canonical {
                    "--hashlimit-htable-size" => Box::new(move |h| h.size = n),
                    "--hashlimit-htable-max" => Box::new(move |h| h.max = Some((n, col))),
                    "--hashlimit-htable-expire" => Box::new(move |h| h.expire = Some(n)),
                    "--hashlimit-htable-gcinterval" => Box::new(move |h| h.gc_interval = n),
                    // --hashlimit-rate-interval: kept and not read without --hashlimit-rate-match.
                    _ => Box::new(|_| {}),
                }
            }
        };
        if let Some(h) = self.hashlimit.pending.last_mut() {
            set(h);
        }
        Ok(())
    }

    /// The rule's `-m hashlimit` checks, each at its place among the matches, bound to its
    /// table; what iptables and the kernel refuse.
    pub(super) fn hashlimit_finish(&mut self) -> Result<(), RuleError> {
        let pending = std::mem::take(&mut self.hashlimit.pending);
        for h in pending.into_iter().rev() {
            let Some((avg, above, mult, rate_col)) = h.rate else {
                return Err(self.err(
                    h.col,
                    "-m hashlimit needs --hashlimit-upto or --hashlimit-above",
                ));
            };
            let Some(name) = h.name else {
                return Err(self.err(h.col, "-m hashlimit needs --hashlimit-name"));
            };
            if !matches!(self.table, TableKind::Filter | TableKind::Raw) {
                return Err(self.err(
                    h.col,
                    format!(
                        "-m hashlimit is not supported in the {} table (filter and raw only)",
                        self.table.name()
                    ),
                ));
            }
            let bits = if self.ctx.family == Family::V4 {
                32
            } else {
                128
            };
            let cfg = Config {
                mode: h.mode,
                avg,
                burst: h.burst,
                size: h.size,
                max: h.max.map_or(0, |m| m.0),
                gc_interval: h.gc_interval,
                // libxt_hashlimit: idle entries last one unit of the rate by default.
                expire: h.expire.unwrap_or((mult * 1000) as u32),
                srcmask: h.srcmask.unwrap_or(bits) as u8,
                dstmask: h.dstmask.unwrap_or(bits) as u8,
            };
            if hashlimit::credits(avg, h.burst).is_none() {
                return Err(self.err(
                    rate_col,
                    "the rate times --hashlimit-burst overflows the kernel's credits (it \
                     refuses the rule: Numerical result out of range); lower the burst",
                ));
            }
            if cfg.bound() > u64::from(MAX_ENTRIES) {
                return Err(self.err(
                    h.max.map_or(h.col, |m| m.1),
                    format!(
                        "the table would hold up to {} keys (--hashlimit-htable-max, or 8 times \
                         --hashlimit-htable-size when it is 0); Rampart makes a table's memory \
                         when it loads it and takes at most {MAX_ENTRIES}",
                        cfg.bound()
                    ),
                ));
            }
            let table = hashlimit::table(&name, self.ctx.family, cfg);
            let m = HashLimitMatch { table, above };
            self.place_check(h.at, h.col, Check::HashLimit(Arc::new(m)));
        }
        Ok(())
    }
}
