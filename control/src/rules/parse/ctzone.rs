//! `-j CT` (libxt_CT revision 2, xt_CT in the kernel): `--notrack`, and the conntrack zone
//! options `--zone`, `--zone-orig` and `--zone-reply`, each `ID` (0-65535, as xtables reads
//! numbers) or `mark` (any case: the zone's id is the packet's mark's low 16 bits), read
//! into the template [`dataplane::conntrack::zones::template`] makes.
//!
//! As libxt_CT's parser: each option at most once; `--zone-orig` and `--zone-reply` add
//! their direction, and the zone applies to the original direction alone, to the reply
//! direction alone, or (none of them, or both) to both; the id is the last option's (0 when
//! it said `mark`), and `mark` once said stays (`--zone mark --zone-orig 5` is
//! `--zone-orig mark`, as iptables-save prints it). `--notrack` with a zone loads, and the
//! kernel leaves the packet untracked. `--helper`, `--ctevents`, `--expevents` and
//! `--timeout` are refused (no helpers, events or timeout policies here). The target is only
//! valid in the raw table, as xt_CT registers it.

use super::super::ast::*;
use super::super::matches::number64;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::conntrack::zones::{self, DIR_ORIG, DIR_REPLY};

/// A CT target being read.
#[derive(Default)]
pub(super) struct Pending {
    notrack: bool,
    id: u16,
    /// [`DIR_ORIG`] for `--zone-orig`, [`DIR_REPLY`] for `--zone-reply`.
    dirs: u32,
    mark: bool,
    /// The options given (each once).
    used: Vec<&'static str>,
}

/// The target's option `opt`, canonical.
fn target_option(opt: &str) -> Option<&'static str> {
    ["--notrack", "--zone", "--zone-orig", "--zone-reply"]
        .into_iter()
        .find(|o| *o == opt)
}

/// A zone option's value: `mark` (`None`) or an id.
fn zone_value(s: &str) -> Result<Option<u16>, String> {
    if s.eq_ignore_ascii_case("mark") {
        return Ok(None);
    }
    // strtoul takes a leading `+`.
    let digits = s.strip_prefix('+').unwrap_or(s);
    match number64(digits) {
        Some(n) if n <= u64::from(u16::MAX) => Ok(Some(n as u16)),
        _ => Err(format!(
            "invalid zone ID {s:?} (a number 0-65535, or mark for the packet's mark)"
        )),
    }
}

impl<'a> RuleParser<'a> {
    /// A CT option; `Ok(false)` when `tok` is not one.
    pub(super) fn ct_target_option(
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
            return Err(self.err(tok.col, format!("CT: option {opt} can only be used once")));
        }
        p.used.push(opt);
        if opt == "--notrack" {
            p.notrack = true;
            return Ok(true);
        }
        let v = self.value(tok)?;
        match opt {
            "--zone-orig" => p.dirs |= DIR_ORIG,
            "--zone-reply" => p.dirs |= DIR_REPLY,
            _ => {}
        }
        match zone_value(&v.text).map_err(|m| self.err(v.col, m))? {
            None => {
                p.mark = true;
                p.id = 0;
            }
            Some(id) => p.id = id,
        }
        Ok(true)
    }

    /// The CT target read: NOTRACK with `--notrack` (whatever zone was given: the kernel
    /// does not track the packet), else the zone template (a plain `-j CT` is the default
    /// zone's, which still keeps a later NOTRACK or CT rule from applying, as in Linux).
    pub(super) fn finish_ct(&self, p: &Pending) -> Target {
        if p.notrack {
            return Target::NoTrack;
        }
        let dirs = match p.dirs {
            DIR_ORIG => DIR_ORIG,
            DIR_REPLY => DIR_REPLY,
            _ => zones::DIR_BOTH,
        };
        // With `mark` the id is the packet's (whatever number an option gave).
        let id = if p.mark { 0 } else { p.id };
        Target::CtZone(zones::template(id, dirs, p.mark))
    }
}

#[cfg(test)]
mod tests {
    use super::zone_value;

    #[test]
    fn zone_values_as_libxt_ct_reads_them() {
        assert_eq!(zone_value("0"), Ok(Some(0)));
        assert_eq!(zone_value("65535"), Ok(Some(65535)));
        assert_eq!(zone_value("0x10"), Ok(Some(16)));
        assert_eq!(zone_value("010"), Ok(Some(8)));
        assert_eq!(zone_value("+5"), Ok(Some(5)));
        assert_eq!(zone_value("mark"), Ok(None));
        assert_eq!(zone_value("MaRk"), Ok(None));
        for bad in ["65536", "-1", "abc", "", "08", "1.5", "5,6", "++5", "0x"] {
            assert!(zone_value(bad).is_err(), "{bad}");
        }
    }
}
