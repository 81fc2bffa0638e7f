//! Options of `-m time` (libxt_time), read into a [`TimeMatch`]
//! ([`dataplane::classify::time`]).

use super::super::ast::*;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::time::{
    days_from_civil, local_offset, TimeMatch, ALL_MONTHDAYS, ALL_WEEKDAYS, MAX_DAYTIME,
};
use dataplane::classify::Check;
use std::sync::Arc;

/// What the parser holds for this module until the rule is read.
#[derive(Default)]
pub(super) struct State {
    pending: Vec<Pending>,
}

/// A `-m time` being read: where its check is among the rule's matches, and which options
/// that are checked together were given (with their columns).
struct Pending {
    at: usize,
    contiguous: Option<u32>,
    utc: Option<u32>,
    kerneltz: Option<u32>,
}

/// The canonical name of `opt` if `module` is `-m time` and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    if module != Module::Time {
        return None;
    }
    Some(match opt {
        "--datestart" => "--datestart",
        "--datestop" => "--datestop",
        "--timestart" => "--timestart",
        "--timestop" => "--timestop",
        "--weekdays" => "--weekdays",
        "--monthdays" => "--monthdays",
        "--kerneltz" => "--kerneltz",
        "--localtz" => "--localtz",
        "--utc" => "--utc",
        "--contiguous" => "--contiguous",
        _ => return None,
    })
}

/// Whether `canonical` is an option of `-m time`.
pub(super) fn takes(canonical: &str) -> bool {
    module_option(Module::Time, canonical).is_some()
}

/// A number of decimal digits (at least one), at most `max`.
fn field(s: &str, max: u32) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n <= max)
}

/// `--datestart`/`--datestop` as libxt_time reads them: `YYYY[-MM[-DD[Thh[:mm[:ss]]]]]` in
/// UTC, the year 1970 to 2038, a month 0 or a day 0 taken as `mktime` normalizes them (the
/// month or day before); seconds since the epoch.
fn date(s: &str) -> Result<u32, String> {
    let bad = || format!("invalid date {s:?} (YYYY[-MM[-DD[Thh[:mm[:ss]]]]])");
    let (day_part, clock) = match s.split_once('T') {
        Some((d, c)) => (d, Some(c)),
        None => (s, None),
    };
    let mut d = day_part.split('-');
    let year = d.next().and_then(|y| field(y, 9999)).ok_or_else(bad)?;
    if !(1970..=2038).contains(&year) {
        return Err(bad());
    }
    let month = d.next().map_or(Some(1), |m| field(m, 12)).ok_or_else(bad)?;
    let day = d.next().map_or(Some(1), |m| field(m, 31)).ok_or_else(bad)?;
    if d.next().is_some() || (clock.is_some() && day_part.matches('-').count() != 2) {
        return Err(bad());
    }
    let (mut h, mut mi, mut sec) = (0, 0, 0);
    if let Some(c) = clock {
        let mut f = c.split(':');
        h = f.next().and_then(|x| field(x, 23)).ok_or_else(bad)?;
        mi = f.next().map_or(Some(0), |x| field(x, 59)).ok_or_else(bad)?;
        sec = f.next().map_or(Some(0), |x| field(x, 59)).ok_or_else(bad)?;
        if f.next().is_some() {
            return Err(bad());
        }
    }
    // mktime's normalization of month 0 (December before) and day 0 (the day before).
    let months = i64::from(year) * 12 + i64::from(month) - 1;
    let days = days_from_civil(months.div_euclid(12), (months.rem_euclid(12) + 1) as u32)
        + i64::from(day)
        - 1;
    let t = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec);
    u32::try_from(t).map_err(|_| bad())
}

/// `--timestart`/`--timestop`: `hh:mm[:ss]` within 00:00:00 and 23:59:59, in seconds.
fn daytime(s: &str) -> Result<u32, String> {
    let bad = || format!("invalid time {s:?} (hh:mm[:ss], 00:00:00 to 23:59:59)");
    let mut f = s.split(':');
    let h = f.next().and_then(|x| field(x, 23)).ok_or_else(bad)?;
    let m = f.next().and_then(|x| field(x, 59)).ok_or_else(bad)?;
    let sec = f.next().map_or(Some(0), |x| field(x, 59)).ok_or_else(bad)?;
    if f.next().is_some() {
        return Err(bad());
    }
    let t = h * 3600 + m * 60 + sec;
    debug_assert!(t <= MAX_DAYTIME);
    Ok(t)
}

/// `--weekdays`: days 1 (Monday) to 7, or names as libxt_time compares them (the first two
/// letters of Mon, Tue, Wed, Thu, Fri, Sat, Sun: `Monday` and `Mo` are Monday).
fn weekdays(s: &str) -> Result<u8, String> {
    const NAMES: [&str; 7] = ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"];
    let mut mask = 0u8;
    for day in s.split(',') {
        let d = match field(day, 7) {
            Some(0) => return Err("0 is not a week day (Monday is 1, Sunday 7)".into()),
            Some(n) => n as usize,
            None => match NAMES.iter().position(|n| day.starts_with(n)) {
                Some(i) => i + 1,
                None => {
                    return Err(format!(
                        "{day:?} is not a valid day (Mon, Tue, Wed, Thu, Fri, Sat, Sun or 1-7)"
                    ))
                }
            },
        };
        mask |= 1 << d;
    }
    Ok(mask)
}

/// `--monthdays`: days 1 to 31 (0 is taken, as libxt_time takes it, and never matches).
fn monthdays(s: &str) -> Result<u32, String> {
    let mut mask = 0u32;
    for day in s.split(',') {
        let d = field(day, 31)
            .ok_or_else(|| format!("{day:?} is not a valid day for --monthdays (1-31)"))?;
        mask |= 1 << d;
    }
    Ok(mask)
}

impl<'a> RuleParser<'a> {
    /// `-m time` was read (at `col`).
    pub(super) fn time_load(&mut self, module: Module, col: u32) {
        if module == Module::Time {
            self.time.pending.push(Pending {
                at: self.matches.len(),
                contiguous: None,
                utc: None,
                kerneltz: None,
            });
            self.push(
                col,
                false,
                Cond::Check(Check::Time(Arc::new(TimeMatch::default()))),
            );
        }
    }

    /// An option of `-m time` (`canonical`, already checked to be given once).
    pub(super) fn time_option(
        &mut self,
        canonical: &'static str,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        if !matches!(canonical, "--weekdays" | "--monthdays") {
            self.no_negation(tok, negated)?;
        }
        let flag = matches!(
            canonical,
            "--kerneltz" | "--localtz" | "--utc" | "--contiguous"
        );
        let value = if flag { None } else { Some(self.value(tok)?) };
        let p = self.time.pending.last_mut().expect("-m time loaded");
        let at = p.at;
        match canonical {
            "--utc" => p.utc = Some(tok.col),
            "--kerneltz" | "--localtz" => {
                if p.kerneltz.is_some() {
                    return Err(self.err(
                        tok.col,
                        "only one --kerneltz (or --localtz) is allowed per -m time",
                    ));
                }
                p.kerneltz = Some(tok.col);
            }
            "--contiguous" => p.contiguous = Some(tok.col),
            _ => {}
        }
        if let (Some(_), Some(_)) = (p.utc, p.kerneltz) {
            return Err(self.err(
                tok.col,
                "--utc cannot be combined with --kerneltz or --localtz in one -m time",
            ));
        }
        // The value, read before the match is changed.
        enum Set {
            DateStart(u32),
            DateStop(u32),
            TimeStart(u32),
            TimeStop(u32),
            Weekdays(u8),
            Monthdays(u32),
            KernelTz,
            Contiguous,
            Nothing,
        }
        let set = match value {
            Some(v) => {
                let bad = |e: String| self.err(v.col, e);
                match canonical {
                    "--datestart" => Set::DateStart(date(&v.text).map_err(bad)?),
                    "--datestop" => Set::DateStop(date(&v.text).map_err(bad)?),
                    "--timestart" => Set::TimeStart(daytime(&v.text).map_err(bad)?),
                    "--timestop" => Set::TimeStop(daytime(&v.text).map_err(bad)?),
                    "--weekdays" => {
                        let d = weekdays(&v.text).map_err(bad)?;
                        Set::Weekdays(if negated { d ^ ALL_WEEKDAYS } else { d })
                    }
                    _ => {
                        let d = monthdays(&v.text).map_err(bad)?;
                        Set::Monthdays(if negated { d ^ ALL_MONTHDAYS } else { d })
                    }
                }
            }
            None => match canonical {
                "--kerneltz" | "--localtz" => Set::KernelTz,
                "--contiguous" => Set::Contiguous,
                _ => Set::Nothing,
            },
        };
        let Cond::Check(Check::Time(m)) = &mut self.matches[at].cond else {
            unreachable!("the pending -m time's check")
        };
        let m = Arc::make_mut(m);
        match set {
            Set::DateStart(t) => m.date_start = t,
            Set::DateStop(t) => m.date_stop = t,
            Set::TimeStart(t) => m.daytime_start = t,
            Set::TimeStop(t) => m.daytime_stop = t,
            Set::Weekdays(d) => m.weekdays = d,
            Set::Monthdays(d) => m.monthdays = d,
            Set::KernelTz => m.offset_s = local_offset(),
            Set::Contiguous => m.contiguous = true,
            Set::Nothing => {}
        }
        Ok(())
    }

    /// After the rule is read: `--contiguous` needs a range over midnight (libxt_time and
    /// the kernel refuse it otherwise).
    pub(super) fn time_finish(&mut self) -> Result<(), RuleError> {
        // The rule's time checks in order, one per pending match (other modules' finishing
        // may have inserted matches before them).
        let pending = std::mem::take(&mut self.time.pending);
        let checks = self.matches.iter().filter_map(|m| match &m.cond {
            Cond::Check(Check::Time(t)) => Some(t),
            _ => None,
        });
        for (p, m) in pending.iter().zip(checks) {
            if let Some(col) = p.contiguous {
                if m.daytime_start < m.daytime_stop {
                    return Err(self.err(
                        col,
                        "--contiguous only makes sense when --timestop is smaller than \
                         --timestart (a range over midnight)",
                    ));
                }
            }
        }
        Ok(())
    }
}
