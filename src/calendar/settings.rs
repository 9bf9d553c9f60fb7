//! An account's calendar settings as `calendar set` takes them and Redis keeps them (a flat hash of
//! text fields), with the bounds that keep one calendar from costing the daemon much.

use std::collections::HashMap;
use std::time::Duration;

use super::duration::parse_duration;
use super::slots::{Schedule, ScheduleError};

/// The hash field every write of a calendar raises by one.
pub const VERSION_FIELD: &str = "version";
/// The hash field saying since when (ms) the account is paused; empty when it is not.
pub const PAUSED_FIELD: &str = "paused_ms";
/// Years a week may be asked for (`calendar week --week`, the page's `week=`): date arithmetic far
/// outside them overflows.
pub const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;
/// Slot expressions one calendar may have.
pub const MAX_SLOTS: usize = 32;
/// Longest slot expression, in bytes.
pub const MAX_SLOT_BYTES: usize = 200;
/// Longest horizon: submissions may be scheduled at most a year ahead.
pub const MAX_HORIZON_DAYS: u32 = 366;
/// Largest minimum spacing.
pub const MAX_SPACING: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest daily budget.
pub const MAX_DAILY_BUDGET: u32 = 1000;
/// Defaults of `calendar set`.
pub const DEFAULT_SPACING: Duration = Duration::from_secs(15 * 60);
/// The default horizon, in days.
pub const DEFAULT_HORIZON_DAYS: u32 = 60;

/// One account's calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarSettings {
    /// IANA zone name.
    pub zone: String,
    /// Crontab expressions read in the zone.
    pub slots: Vec<String>,
    /// No two posts of the account closer than this.
    pub min_spacing: Duration,
    /// How far ahead `slot` = `next` may look, in days.
    pub horizon_days: u32,
    /// Posts allowed in any rolling 24 hours.
    pub daily_budget: u32,
    /// Since when the account is paused (ms), if it is.
    pub paused_ms: Option<i64>,
    /// When the settings were last written (ms).
    pub updated_ms: i64,
    /// Raised by every write of the calendar (the `version` field, never written from here): what a
    /// cached copy is checked against.
    pub version: i64,
}

impl CalendarSettings {
    /// Checks the bounds and parses the slots.
    pub fn schedule(&self) -> Result<Schedule, String> {
        if self.slots.len() > MAX_SLOTS {
            return Err(format!(
                "{} slot expressions given; a calendar holds at most {MAX_SLOTS} (merge some with lists such as `0 9,13,18 * * *`)",
                self.slots.len()
            ));
        }
        if let Some(long) = self.slots.iter().find(|s| s.len() > MAX_SLOT_BYTES) {
            return Err(format!(
                "a slot expression is {} bytes long; at most {MAX_SLOT_BYTES} are allowed",
                long.len()
            ));
        }
        if !(1..=MAX_HORIZON_DAYS).contains(&self.horizon_days) {
            return Err(format!(
                "--horizon-days {} is out of range; give 1 to {MAX_HORIZON_DAYS}",
                self.horizon_days
            ));
        }
        if self.min_spacing > MAX_SPACING {
            return Err(format!(
                "--min-spacing {}s is more than 7 days; give at most 7d",
                self.min_spacing.as_secs()
            ));
        }
        if !(1..=MAX_DAILY_BUDGET).contains(&self.daily_budget) {
            return Err(format!(
                "--daily-budget {} is out of range; give 1 to {MAX_DAILY_BUDGET}",
                self.daily_budget
            ));
        }
        Schedule::parse(&self.zone, &self.slots).map_err(|e: ScheduleError| e.to_string())
    }

    /// The minimum spacing in ms.
    pub fn spacing_ms(&self) -> i64 {
        i64::try_from(self.min_spacing.as_millis()).unwrap_or(i64::MAX)
    }

    /// The hash fields Redis keeps (the feed token is kept beside them, sealed, by the caller).
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("tz", self.zone.clone()),
            ("slots", self.slots.join("\n")),
            ("min_spacing_ms", self.spacing_ms().to_string()),
            ("horizon_days", self.horizon_days.to_string()),
            ("daily_budget", self.daily_budget.to_string()),
            (
                PAUSED_FIELD,
                self.paused_ms.map(|p| p.to_string()).unwrap_or_default(),
            ),
            ("updated_ms", self.updated_ms.to_string()),
        ]
    }

    /// The settings from the stored hash; `Err` names what is damaged.
    pub fn from_fields(f: &HashMap<String, String>) -> Result<Self, String> {
        let text = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
        let number = |k: &str| -> Result<i64, String> {
            text(k).parse::<i64>().map_err(|_| {
                format!(
                    "the stored calendar's `{k}` is {:?}, not a number; set the calendar again",
                    text(k)
                )
            })
        };
        let spacing = number("min_spacing_ms")?;
        Ok(Self {
            zone: text("tz").to_string(),
            slots: text("slots")
                .split('\n')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            min_spacing: Duration::from_millis(u64::try_from(spacing).unwrap_or(0)),
            horizon_days: u32::try_from(number("horizon_days")?).unwrap_or(0),
            daily_budget: u32::try_from(number("daily_budget")?).unwrap_or(0),
            paused_ms: text(PAUSED_FIELD).parse().ok(),
            updated_ms: text("updated_ms").parse().unwrap_or(0),
            version: text(VERSION_FIELD).parse().unwrap_or(0),
        })
    }
}

/// Reads `--min-spacing` (a duration such as `15m`), as a message for the command line.
pub fn spacing_from_text(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| format!("--min-spacing: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CalendarSettings {
        CalendarSettings {
            zone: "Europe/Berlin".into(),
            slots: vec!["30 9 * * MON-FRI".into(), "0 18 * * *".into()],
            min_spacing: DEFAULT_SPACING,
            horizon_days: DEFAULT_HORIZON_DAYS,
            daily_budget: 15,
            paused_ms: Some(1_700_000_000_000),
            updated_ms: 5,
            version: 0,
        }
    }

    #[test]
    fn settings_round_trip_through_the_hash() {
        let s = sample();
        let map: HashMap<String, String> = s
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(CalendarSettings::from_fields(&map).unwrap(), s);
        assert!(s.schedule().is_ok());
    }

    #[test]
    fn bounds_are_refused_with_the_fix() {
        let mut s = sample();
        s.horizon_days = 0;
        assert!(s.schedule().unwrap_err().contains("1 to 366"));
        let mut s = sample();
        s.daily_budget = 0;
        assert!(s.schedule().unwrap_err().contains("--daily-budget"));
        let mut s = sample();
        s.min_spacing = Duration::from_secs(8 * 24 * 3600);
        assert!(s.schedule().unwrap_err().contains("at most 7d"));
        let mut s = sample();
        s.slots = vec!["0 9 30 2 *".into()];
        assert!(s.schedule().unwrap_err().contains("matches no day"));
        let mut s = sample();
        s.slots = (0..33).map(|i| format!("{i} 9 * * *")).collect();
        assert!(s.schedule().unwrap_err().contains("at most 32"));
    }
}
