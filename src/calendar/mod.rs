//! The posting calendar (issue 13): each account's slots in its own zone, and which of them is free.
//!
//! This first piece is the pure core, with no Redis, CLI or HTTP: [`slots`] turns a zone and
//! crontab expressions into UTC instants under stated DST rules, [`free`] picks the first instant no
//! post or daily budget stands in the way of, and [`duration`] reads `--min-spacing`. Keeping it pure
//! lets the DST and budget rules be tested row by row and run unchanged inside the atomic
//! assignment that comes next. [`week`] lays one week of slots and posts out by local day (the
//! calendar page and `calendar week --json`), and [`feed`] writes posts as an RFC 5545 feed.

pub mod duration;
pub mod feed;
pub mod free;
pub mod settings;
pub mod slots;
pub mod week;

pub use duration::{DurationError, parse_duration};
pub use free::{first_free, first_spaced, is_free};
pub use settings::CalendarSettings;
pub use slots::{Schedule, ScheduleError};
pub use week::{Week, build_week, week_range, week_start};
