//! `-m time` (xt_time): the packet's wall-clock time against a date range, a daytime range,
//! week days and month days, as `time_mt` tests them.
//!
//! The time is the packet's ([`Wire::now_ns`](super::Wire::now_ns)) plus the process's wall
//! offset ([`set_wall_offset`]): 0 where the packet clock is already Unix time (replay, whose
//! clock is the capture's timestamps, so verdicts follow the capture), the wall clock minus the
//! workers' TSC clock in the daemon.

use std::sync::atomic::{AtomicU64, Ordering};

/// `XT_TIME_ALL_MONTHDAYS`: bits 1 to 31.
pub const ALL_MONTHDAYS: u32 = 0xFFFF_FFFE;
/// `XT_TIME_ALL_WEEKDAYS`: bits 1 (Monday) to 7 (Sunday).
pub const ALL_WEEKDAYS: u8 = 0xFE;
/// `XT_TIME_MAX_DAYTIME`: 23:59:59.
pub const MAX_DAYTIME: u32 = 24 * 60 * 60 - 1;
/// libxt_time's default `--datestop`: `INT_MAX` (2038-01-19T03:14:07).
pub const DEFAULT_DATE_STOP: u32 = i32::MAX as u32;

const DAY: i64 = 24 * 60 * 60;

/// Nanoseconds to add (wrapping) to a packet's time to make it Unix time.
static WALL_OFFSET_NS: AtomicU64 = AtomicU64::new(0);

/// Sets what the packet clock lacks to be Unix time (`wall - clock`, wrapping), for every
/// `-m time` match of the process.
pub fn set_wall_offset(ns: u64) {
    WALL_OFFSET_NS.store(ns, Ordering::Relaxed);
}

/// What `--kerneltz` takes when the rules are loaded: the host's offset east of UTC.
pub use crate::dpdk::utc_offset_s as local_offset;

/// One `-m time` match (`xt_time_info`), with the kernel timezone's offset resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeMatch {
    /// `--datestart`/`--datestop`, seconds since the epoch (inclusive).
    pub date_start: u32,
    pub date_stop: u32,
    /// `--timestart`/`--timestop`, seconds into the day (inclusive); a start after the stop
    /// is a range over midnight.
    pub daytime_start: u32,
    pub daytime_stop: u32,
    /// Bit d for month day d (1-31).
    pub monthdays: u32,
    /// Bit d for week day d (1 Monday to 7 Sunday).
    pub weekdays: u8,
    /// `--contiguous`: the part of a range over midnight after midnight counts as the day
    /// before (its week day and month day).
    pub contiguous: bool,
    /// Seconds east of UTC (`--kerneltz`: the host's offset when the rules were loaded; 0 for
    /// UTC), what `time_mt` subtracts as `60 * sys_tz.tz_minuteswest`.
    pub offset_s: i32,
}

impl Default for TimeMatch {
    /// libxt_time's `time_init`: every day, all day, no date bounds but `INT_MAX`.
    fn default() -> TimeMatch {
        TimeMatch {
            date_start: 0,
            date_stop: DEFAULT_DATE_STOP,
            daytime_start: 0,
            daytime_stop: MAX_DAYTIME,
            monthdays: ALL_MONTHDAYS,
            weekdays: ALL_WEEKDAYS,
            contiguous: false,
            offset_s: 0,
        }
    }
}

impl TimeMatch {
    /// Whether the match holds for a packet of time `now_ns` (the packet clock).
    #[inline]
    pub fn holds(&self, now_ns: u64) -> bool {
        let unix_ns = now_ns.wrapping_add(WALL_OFFSET_NS.load(Ordering::Relaxed));
        self.holds_at((unix_ns / 1_000_000_000) as i64)
    }

    /// Whether the match holds at `unix_s` seconds since the epoch (UTC), as `time_mt`
    /// answers.
    pub fn holds_at(&self, unix_s: i64) -> bool {
        let mut stamp = unix_s + i64::from(self.offset_s);
        if stamp < i64::from(self.date_start) || stamp > i64::from(self.date_stop) {
            return false;
        }
        let daytime = stamp.rem_euclid(DAY) as u32;
        let (start, stop) = (self.daytime_start, self.daytime_stop);
        if start < stop {
            if daytime < start || daytime > stop {
                return false;
            }
        } else {
            // Over midnight (or all day when start == stop).
            if daytime < start && daytime > stop {
                return false;
            }
            if self.contiguous && daytime <= stop {
                stamp -= DAY;
            }
        }
        let days = stamp.div_euclid(DAY);
        // 1970-01-01 was a Thursday (4); Sunday is 7.
        let weekday = (4 + days - 1).rem_euclid(7) + 1;
        if self.weekdays & (1 << weekday) == 0 {
            return false;
        }
        self.monthdays == ALL_MONTHDAYS || self.monthdays & (1 << month_day(days)) != 0
    }
}

/// The day of the month (1-31) of the day `days` after 1970-01-01 (proleptic Gregorian).
pub fn month_day(days: i64) -> u32 {
    civil(days).2
}

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01.
pub fn civil(days: i64) -> (i64, u32, u32) {
    // Days since 0000-03-01, in 400-year eras of 146097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to `year`-`month`-01 (month 1-12).
pub fn days_from_civil(year: i64, month: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time.
    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        (days_from_civil(y, mo) + i64::from(d) - 1) * DAY + h * 3600 + mi * 60 + s
    }

    #[test]
    fn calendar_round_trips() {
        for days in -1000..80_000 {
            let (y, m, d) = civil(days);
            assert_eq!(
                days_from_civil(y, m) + i64::from(d) - 1,
                days,
                "{y}-{m}-{d}"
            );
        }
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(at(2026, 11, 28, 0, 0, 0), 1_795_824_000);
        assert_eq!(civil(at(2024, 2, 29, 12, 0, 0) / DAY), (2024, 2, 29));
    }

    #[test]
    fn daytime_ranges_and_midnight() {
        let office = TimeMatch {
            daytime_start: 8 * 3600,
            daytime_stop: 17 * 3600,
            ..TimeMatch::default()
        };
        let day = at(2026, 11, 27, 0, 0, 0); // a Friday
        assert!(!office.holds_at(day + 8 * 3600 - 1));
        assert!(office.holds_at(day + 8 * 3600));
        assert!(office.holds_at(day + 17 * 3600)); // the stop second is in
        assert!(!office.holds_at(day + 17 * 3600 + 1));
        // 22:00 to 02:00 on Fridays: Friday's late part and Friday's early part (without
        // --contiguous the early hours belong to the day they fall on).
        let night = TimeMatch {
            daytime_start: 22 * 3600,
            daytime_stop: 2 * 3600,
            weekdays: 1 << 5,
            ..TimeMatch::default()
        };
        assert!(night.holds_at(day + 23 * 3600));
        assert!(night.holds_at(day + 3600)); // Friday 01:00
        assert!(!night.holds_at(day + DAY + 3600)); // Saturday 01:00
        assert!(!night.holds_at(day + 12 * 3600));
        assert!(night.holds_at(day + 2 * 3600) && !night.holds_at(day + 2 * 3600 + 1));
        // --contiguous: Saturday 01:00 is Friday night's.
        let cont = TimeMatch {
            contiguous: true,
            ..night
        };
        assert!(cont.holds_at(day + DAY + 3600));
        assert!(!cont.holds_at(day + 3600)); // Friday 01:00 is Thursday night's
        assert!(cont.holds_at(day + 23 * 3600));
        // start == stop: every second of the day.
        let all = TimeMatch {
            daytime_start: 5,
            daytime_stop: 5,
            ..TimeMatch::default()
        };
        assert!(all.holds_at(day) && all.holds_at(day + DAY - 1));
    }

    #[test]
    fn month_days_week_days_and_dates() {
        // The 31st: in months that have it only; the last day of February is the 28th.
        let last = TimeMatch {
            monthdays: 1 << 31,
            ..TimeMatch::default()
        };
        assert!(last.holds_at(at(2026, 1, 31, 23, 59, 59)));
        assert!(!last.holds_at(at(2026, 2, 1, 0, 0, 0)));
        assert!(!last.holds_at(at(2026, 2, 28, 12, 0, 0)));
        assert!(last.holds_at(at(2026, 12, 31, 0, 0, 0)));
        // Month days and week days both hold: Friday the 13th.
        let f13 = TimeMatch {
            monthdays: 1 << 13,
            weekdays: 1 << 5,
            ..TimeMatch::default()
        };
        assert!(f13.holds_at(at(2026, 11, 13, 10, 0, 0)));
        assert!(!f13.holds_at(at(2026, 10, 13, 10, 0, 0))); // a Tuesday
                                                            // --contiguous moves the month day too: 00:30 on the 1st is the 31st's night.
        let cont = TimeMatch {
            daytime_start: 23 * 3600,
            daytime_stop: 3600,
            contiguous: true,
            ..last
        };
        assert!(cont.holds_at(at(2026, 2, 1, 0, 30, 0)));
        assert!(!cont.holds_at(at(2026, 1, 31, 0, 30, 0)));
        // Dates are inclusive, to the second.
        let d = TimeMatch {
            date_start: at(2026, 11, 1, 0, 0, 0) as u32,
            date_stop: at(2026, 11, 30, 23, 59, 59) as u32,
            ..TimeMatch::default()
        };
        assert!(!d.holds_at(at(2026, 10, 31, 23, 59, 59)));
        assert!(d.holds_at(at(2026, 11, 1, 0, 0, 0)));
        assert!(d.holds_at(at(2026, 11, 30, 23, 59, 59)));
        assert!(!d.holds_at(at(2026, 12, 1, 0, 0, 0)));
        // The kernel timezone: an hour east moves 23:30 UTC into the next day.
        let tz = TimeMatch {
            monthdays: 1 << 1,
            offset_s: 3600,
            ..TimeMatch::default()
        };
        assert!(tz.holds_at(at(2026, 11, 30, 23, 30, 0)));
        assert!(!tz.holds_at(at(2026, 12, 1, 23, 30, 0)));
        // The default stop: INT_MAX.
        assert!(!TimeMatch::default().holds_at(i64::from(i32::MAX) + 1));
    }
}
