//! Options of the connection matches: `-m conntrack`'s besides `--ctstate` (libxt_conntrack
//! revision 3) and `-m connbytes`, read into [`CtMatch`] and [`ConnBytes`] checks
//! ([`dataplane::classify::ctmatch`]); and `-m quota` (a counter per rule, `Check::Quota`).

use super::super::ast::*;
use super::{parse_net, parse_port_range, RuleParser, Token};
use crate::rules::names;
use crate::rules::RuleError;
use dataplane::classify::ctmatch::{status, AddrTest, BytesDir, BytesMode, ConnBytes, CtMatch};
use dataplane::classify::Check;
use std::sync::Arc;

/// What the parser holds for the matches of this module until the rule is read.
#[derive(Default)]
pub(super) struct State {
    /// Per `-m conntrack` with options of this file: its instance's column and the match.
    cts: Vec<(u32, CtMatch)>,
    /// Per `-m connbytes`: its instance's column, `(from, to)`, direction, mode.
    bytes: Vec<PendingBytes>,
}

struct PendingBytes {
    col: u32,
    range: Option<(u64, u64)>,
    dir: Option<BytesDir>,
    mode: Option<BytesMode>,
}

/// The canonical name of `opt` if `module` is one of this file's and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    Some(match (module, opt) {
        (Module::Conntrack, "--ctproto") => "--ctproto",
        (Module::Conntrack, "--ctorigsrc") => "--ctorigsrc",
        (Module::Conntrack, "--ctorigdst") => "--ctorigdst",
        (Module::Conntrack, "--ctreplsrc") => "--ctreplsrc",
        (Module::Conntrack, "--ctrepldst") => "--ctrepldst",
        (Module::Conntrack, "--ctorigsrcport") => "--ctorigsrcport",
        (Module::Conntrack, "--ctorigdstport") => "--ctorigdstport",
        (Module::Conntrack, "--ctreplsrcport") => "--ctreplsrcport",
        (Module::Conntrack, "--ctrepldstport") => "--ctrepldstport",
        (Module::Conntrack, "--ctstatus") => "--ctstatus",
        (Module::Conntrack, "--ctexpire") => "--ctexpire",
        (Module::Conntrack, "--ctdir") => "--ctdir",
        (Module::ConnBytes, "--connbytes") => "--connbytes",
        (Module::ConnBytes, "--connbytes-dir") => "--connbytes-dir",
        (Module::ConnBytes, "--connbytes-mode") => "--connbytes-mode",
        (Module::Quota, "--quota") => "--quota",
        _ => return None,
    })
}

/// Whether `canonical` is an option of this file's modules.
pub(super) fn takes(canonical: &str) -> bool {
    [Module::Conntrack, Module::ConnBytes, Module::Quota]
        .into_iter()
        .any(|m| module_option(m, canonical).is_some())
}

/// An unsigned 64-bit number, as xtables reads one (decimal, `0x` hex, leading-`0` octal).
fn number64(s: &str, what: &str) -> Result<u64, String> {
    super::super::matches::number64(s)
        .ok_or_else(|| format!("invalid {what} {s:?} (a number 0-{})", u64::MAX))
}

/// libxt_conntrack's status names (compared as `strncasecmp` over the given word's length,
/// so a leading part of a name is that name, the first in this order).
fn status_bits(s: &str) -> Result<u8, String> {
    const NAMES: [(&str, u8); 5] = [
        ("NONE", 0),
        ("EXPECTED", status::EXPECTED),
        ("SEEN_REPLY", status::SEEN_REPLY),
        ("ASSURED", status::ASSURED),
        ("CONFIRMED", status::CONFIRMED),
    ];
    let mut bits = 0;
    for word in s.split(',') {
        let up = word.to_ascii_uppercase();
        let hit = NAMES
            .iter()
            .find(|(n, _)| !up.is_empty() && n.starts_with(up.as_str()));
        match hit {
            Some((_, b)) => bits |= b,
            None => {
                return Err(format!(
                    "bad --ctstatus {word:?} (NONE, EXPECTED, SEEN_REPLY, ASSURED or CONFIRMED)"
                ))
            }
        }
    }
    Ok(bits)
}

impl<'a> RuleParser<'a> {
    /// An option of this file's modules (`canonical`, already checked to be given once).
    pub(super) fn ct_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        if matches!(
            canonical,
            "--ctdir" | "--connbytes-dir" | "--connbytes-mode"
        ) {
            self.no_negation(tok, negated)?;
        }
        let v = self.value(tok)?;
        let err = |p: &Self, m: String| p.err(v.col, m);
        if canonical == "--quota" {
            // xt_quota: one counter per rule (its slot given by the flattener), in bytes.
            let bytes = number64(&v.text, "quota").map_err(|m| err(self, m))?;
            self.push(
                tok.col,
                false,
                Cond::Check(Check::Quota {
                    slot: 0,
                    bytes,
                    invert: negated,
                }),
            );
            return Ok(());
        }
        let module = if canonical.starts_with("--connbytes") {
            Module::ConnBytes
        } else {
            Module::Conntrack
        };
        let Some(col) = self
            .instances
            .iter()
            .rev()
            .find(|i| i.module == module)
            .map(|i| i.col)
        else {
            return Ok(());
        };
        if module == Module::ConnBytes {
            let text = v.text.as_ref();
            let mut pb = PendingBytes {
                col,
                range: None,
                dir: None,
                mode: None,
            };
            match canonical {
                "--connbytes" => {
                    let (from, to) = match text.split_once(':') {
                        None => (number64(text, "count").map_err(|m| err(self, m))?, u64::MAX),
                        Some((a, b)) => (
                            number64(a, "count").map_err(|m| err(self, m))?,
                            if b.is_empty() {
                                u64::MAX
                            } else {
                                number64(b, "count").map_err(|m| err(self, m))?
                            },
                        ),
                    };
                    if to < from {
                        return Err(err(
                            self,
                            format!("--connbytes {from}:{to}: the first count is above the second"),
                        ));
                    }
                    // libxt_connbytes stores `!` as the ends swapped.
                    pb.range = Some(if negated { (to, from) } else { (from, to) });
                }
                "--connbytes-dir" => {
                    pb.dir = Some(match text {
                        "original" => BytesDir::Original,
                        "reply" => BytesDir::Reply,
                        "both" => BytesDir::Both,
                        _ => {
                            return Err(err(
                                self,
                                format!("bad --connbytes-dir {text:?} (original, reply or both)"),
                            ))
                        }
                    })
                }
                _ => {
                    pb.mode = Some(match text {
                        "packets" => BytesMode::Packets,
                        "bytes" => BytesMode::Bytes,
                        "avgpkt" => BytesMode::AvgPkt,
                        _ => {
                            return Err(err(
                                self,
                                format!("bad --connbytes-mode {text:?} (packets, bytes or avgpkt)"),
                            ))
                        }
                    })
                }
            }
            match self.ct.bytes.iter_mut().find(|b| b.col == col) {
                Some(b) => {
                    b.range = pb.range.or(b.range);
                    b.dir = pb.dir.or(b.dir);
                    b.mode = pb.mode.or(b.mode);
                }
                None => self.ct.bytes.push(pb),
            }
            return Ok(());
        }

        let family = self.ctx.family;
        let text = v.text.as_ref();
        let mut m = self
            .ct
            .cts
            .iter()
            .find(|(c, _)| *c == col)
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        let slot = |o: &str| match o {
            "--ctorigsrc" | "--ctorigsrcport" => 0,
            "--ctorigdst" | "--ctorigdstport" => 1,
            "--ctreplsrc" | "--ctreplsrcport" => 2,
            _ => 3,
        };
        match canonical {
            "--ctdir" => {
                m.dir = Some(if text.eq_ignore_ascii_case("ORIGINAL") {
                    false
                } else if text.eq_ignore_ascii_case("REPLY") {
                    true
                } else {
                    return Err(err(
                        self,
                        format!("bad --ctdir {text:?} (ORIGINAL or REPLY)"),
                    ));
                })
            }
            "--ctproto" => {
                let p = names::protocol(text)
                    .map_err(|e| err(self, e))?
                    .unwrap_or(0);
                if p == 0 && negated {
                    return Err(err(
                        self,
                        "! --ctproto all would never match (iptables refuses it)".to_string(),
                    ));
                }
                m.proto = Some((p, negated));
            }
            "--ctorigsrc" | "--ctorigdst" | "--ctreplsrc" | "--ctrepldst" => {
                let r = parse_net(family, text).map_err(|e| err(self, e))?;
                let mut mask = r.lo;
                for (b, (l, h)) in mask.0.iter_mut().zip(r.lo.0.iter().zip(r.hi.0.iter())) {
                    *b = !(l ^ h);
                }
                m.addrs[slot(canonical)] = Some(AddrTest {
                    addr: r.lo,
                    mask,
                    invert: negated,
                });
            }
            "--ctstatus" => {
                m.status = Some((status_bits(text).map_err(|e| err(self, e))?, negated))
            }
            "--ctexpire" => {
                let (lo, hi) = crate::rules::matches::range(text, u32::MAX, "seconds")
                    .map_err(|e| err(self, e))?;
                if lo > hi {
                    return Err(err(
                        self,
                        format!("--ctexpire {text}: the minimum is above the maximum"),
                    ));
                }
                m.expire = Some((lo, hi, negated));
            }
            _ => {
                let (lo, hi) = parse_port_range(text).map_err(|e| err(self, e))?;
                m.ports[slot(canonical)] = Some((lo, hi, negated));
            }
        }
        match self.ct.cts.iter_mut().find(|(c, _)| *c == col) {
            Some((_, old)) => *old = m,
            None => self.ct.cts.push((col, m)),
        }
        Ok(())
    }

    /// The rule's connection checks: one per `-m conntrack` with options besides `--ctstate`
    /// (which stays the classifier's field), one per `-m connbytes`.
    pub(super) fn ct_finish(&mut self) -> Result<(), RuleError> {
        for (col, mut m) in std::mem::take(&mut self.ct.cts) {
            m.has_state = self
                .instances
                .iter()
                .any(|i| i.col == col && i.used.contains(&"--ctstate"));
            self.push(col, false, Cond::Check(Check::Ct(Arc::new(m))));
        }
        for b in std::mem::take(&mut self.ct.bytes) {
            let missing = [
                (b.range.is_none(), "--connbytes"),
                (b.dir.is_none(), "--connbytes-dir"),
                (b.mode.is_none(), "--connbytes-mode"),
            ];
            if let Some((_, what)) = missing.iter().find(|m| m.0) {
                return Err(self.err(b.col, format!("-m connbytes needs {what}")));
            }
            let (from, to) = b.range.expect("checked");
            let cb = ConnBytes {
                from,
                to,
                dir: b.dir.expect("checked"),
                mode: b.mode.expect("checked"),
            };
            self.push(b.col, false, Cond::Check(Check::ConnBytes(cb)));
        }
        Ok(())
    }
}
