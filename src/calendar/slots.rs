//! An account's posting slots: an IANA zone and crontab expressions, turned into UTC instants.
//!
//! Users write the five fields of crontab (`30 9 * * MON-FRI`) with crontab's meaning, which differs
//! from the `cron` crate's in two places, so this module sits between them:
//! - **Day of week**: crontab numbers Sunday 0 *and* 7 (`5-7` is Friday to Sunday); `cron` numbers
//!   Sunday 1 and Saturday 7. [`translate_dow`] expands the crontab field (numbers, names, ranges,
//!   lists, steps) to the set of days and writes it out as `cron`'s numbers, so the crate never sees a
//!   crontab number it would read differently.
//! - **Day of month and day of week**: when both are restricted, crontab fires on a day matching
//!   *either*; `cron` wants both. As in Vixie cron, a field is unrestricted when it starts with `*`
//!   (so `*/2` counts as unrestricted), and then only the other field decides.
//!
//! `cron` (0.17) parses and validates the expression (its error names the bad field); the instants
//! are computed here from its parsed fields, day by day in the account's zone, because its own
//! iterator gets all three rules wrong for us, as observed (and pinned in a test,
//! `cron_crate_own_iterator_differs`): in a spring-forward gap it *skips the day* (New York 02:30 on
//! 2026-03-08 never fires), in the autumn repeat it *fires twice* (01:30 EDT and 01:30 EST), and
//! with both day fields restricted it wants *both* (`0 12 13 * FRI` is Friday the 13th only).
//! Doing it here puts the DST rules in one visible place:
//! - a local time that does not exist that day (02:30 on a spring-forward night) moves forward by
//!   the gap, i.e. it is read with the offset in force just before the change (02:30 → 03:30; Lord
//!   Howe's 30-minute gap moves it 30 minutes; Santiago's change at midnight makes 00:00 → 01:00);
//! - a local time that occurs twice (the autumn repeat) gives its first occurrence only.
//!
//! Zone data is `chrono-tz`'s, compiled in, so a host with old or missing tzdata cannot shift a
//! calendar.

use std::collections::VecDeque;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;
use cron::TimeUnitSpec;

/// Why a calendar's zone or slot expressions were refused; each message says how to fix it, since
/// it reaches the person typing `calendar set`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("`{name}` is not an IANA zone name{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_else(|| " (write one like `Europe/Berlin` or `America/New_York`)".to_owned()))]
    UnknownZone {
        name: String,
        suggestion: Option<String>,
    },
    #[error("slot `{expr}`: {reason}")]
    Expression { expr: String, reason: String },
    #[error("a calendar needs at least one slot expression, e.g. `30 9 * * MON-FRI`")]
    NoExpressions,
}

/// One parsed crontab expression: `cron`'s fields plus the two flags of the either-rule.
#[derive(Debug, Clone)]
struct Expr {
    parsed: cron::Schedule,
    dom_star: bool,
    dow_star: bool,
}

impl Expr {
    fn parse(text: &str) -> Result<Self, ScheduleError> {
        let err = |reason: String| ScheduleError::Expression {
            expr: text.to_owned(),
            reason,
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!(
                "has {} fields; a slot has the 5 of crontab: minute hour day-of-month month day-of-week, e.g. `30 9 * * MON-FRI`",
                fields.len()
            )));
        }
        let dow = translate_dow(fields[4]).map_err(err)?;
        let six = format!(
            "0 {} {} {} {} {}",
            fields[0], fields[1], fields[2], fields[3], dow
        );
        let parsed = cron::Schedule::from_str(&six).map_err(|e| {
            err(format!(
                "{e} (fields: minute hour day-of-month month day-of-week)"
            ))
        })?;
        let expr = Expr {
            parsed,
            dom_star: fields[2].starts_with('*'),
            dow_star: fields[4].starts_with('*'),
        };
        // An expression that matches no day at all (`0 9 31 2 *`) would make the iterator search
        // forever; nine years from a leap year hold every date a crontab can name.
        let start = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
        if !start.iter_days().take(366 * 9).any(|d| expr.matches_day(d)) {
            return Err(err(
                "matches no day of any year (check the day of month against the month)".to_owned(),
            ));
        }
        Ok(expr)
    }

    /// Crontab's day rule: both fields when either is `*`…, else either.
    fn matches_day(&self, d: NaiveDate) -> bool {
        let s = &self.parsed;
        if !s.months().includes(d.month()) {
            return false;
        }
        let dom = s.days_of_month().includes(d.day());
        let dow = s.days_of_week().includes(d.weekday().number_from_sunday());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn dow_value(tok: &str) -> Result<u32, String> {
    if let Some(i) = DAY_NAMES.iter().position(|n| n.eq_ignore_ascii_case(tok)) {
        return Ok(i as u32);
    }
    match tok.parse::<u32>() {
        Ok(n) if n <= 7 => Ok(n),
        _ => Err(format!(
            "day of week `{tok}` is not 0-7 (0 and 7 are Sunday) or a name SUN-SAT"
        )),
    }
}

/// Rewrites a crontab day-of-week field (0–7, Sunday 0 and 7, names, ranges, lists, steps) as the
/// `cron` crate's (Sunday 1 … Saturday 7): a sorted list of its numbers, or `*` for `*`.
pub fn translate_dow(field: &str) -> Result<String, String> {
    if field == "*" {
        return Ok("*".to_owned());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step = s.parse::<u32>().ok().filter(|&s| s > 0).ok_or_else(|| {
                    format!("step `/{s}` in day of week is not a positive number")
                })?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 7)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, mut b) = (dow_value(a)?, dow_value(b)?);
            // `FRI-SUN` ends on Sunday as 7, not as 0.
            if b == 0 && a > 0 {
                b = 7;
            }
            if a > b {
                return Err(format!(
                    "day-of-week range `{range}` runs backwards; write it low to high (`FRI-SUN` as `5-7`)"
                ));
            }
            (a, b)
        } else if item.contains('/') {
            // `5/2` in crontab means from 5 to the end in steps of 2.
            (dow_value(range)?, 7)
        } else {
            let v = dow_value(range)?;
            (v, v)
        };
        if range.is_empty() {
            return Err("empty item in day-of-week list".to_owned());
        }
        for v in (lo..=hi).step_by(step as usize) {
            days[(v % 7) as usize] = true;
        }
    }
    let list: Vec<String> = (0..7)
        .filter(|&i| days[i])
        .map(|i| (i + 1).to_string())
        .collect();
    Ok(list.join(","))
}

/// Reads an IANA zone name, suggesting the nearest known name when it is misspelt.
pub fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    let suggestion = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| {
            (
                edit_distance(&name.to_ascii_lowercase(), &tz.name().to_ascii_lowercase()),
                tz.name(),
            )
        })
        .min()
        .filter(|(d, _)| *d <= 3)
        .map(|(_, n)| n.to_owned());
    Err(ScheduleError::UnknownZone {
        name: name.to_owned(),
        suggestion,
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// An account's slots: a zone and one or more crontab expressions read in it.
#[derive(Debug, Clone)]
pub struct Schedule {
    zone: Tz,
    exprs: Vec<Expr>,
}

impl Schedule {
    pub fn parse<S: AsRef<str>>(zone: &str, exprs: &[S]) -> Result<Self, ScheduleError> {
        let zone = parse_zone(zone)?;
        if exprs.is_empty() {
            return Err(ScheduleError::NoExpressions);
        }
        let exprs = exprs
            .iter()
            .map(|e| Expr::parse(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Schedule { zone, exprs })
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Every slot instant at or after `from`, ascending and distinct, without end (the caller bounds
    /// it). The expressions are merged: two naming the same instant give it once.
    pub fn instants_from(&self, from: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        // Start a day early: a local time moved forward by a gap can land after `from` even though
        // its day began before it.
        let day = from
            .with_timezone(&self.zone)
            .date_naive()
            .pred_opt()
            .unwrap_or(NaiveDate::MIN);
        Instants {
            schedule: self,
            day: Some(day),
            from,
            buf: VecDeque::new(),
        }
    }

    /// The instants of one local day, sorted and distinct (a gap shift can reorder them).
    fn day_instants(&self, day: NaiveDate) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        for e in self.exprs.iter().filter(|e| e.matches_day(day)) {
            for h in e.parsed.hours().iter() {
                for m in e.parsed.minutes().iter() {
                    if let Some(t) = day.and_hms_opt(h, m, 0).and_then(|n| resolve(self.zone, n)) {
                        out.push(t);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// A local wall time as a UTC instant under the DST rules of the module doc.
pub fn resolve(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => {
            // In a gap: read it with the offset in force before the change. A day before is before
            // the change, as no zone changes its offset twice within two days.
            let before = zone
                .offset_from_utc_datetime(&(local - Duration::days(1)))
                .fix();
            let utc = local - Duration::seconds(i64::from(before.local_minus_utc()));
            Some(utc.and_utc())
        }
    }
}

struct Instants<'a> {
    schedule: &'a Schedule,
    day: Option<NaiveDate>,
    from: DateTime<Utc>,
    buf: VecDeque<DateTime<Utc>>,
}

impl Iterator for Instants<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            if let Some(t) = self.buf.pop_front() {
                self.from = t + Duration::seconds(1);
                return Some(t);
            }
            let day = self.day?;
            self.day = day.succ_opt();
            let from = self.from;
            self.buf.extend(
                self.schedule
                    .day_instants(day)
                    .into_iter()
                    .filter(|t| *t >= from),
            );
        }
    }
}

#[cfg(test)]
#[path = "slots_tests.rs"]
mod tests;
