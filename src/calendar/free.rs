//! Which slot is free: the pure rule behind "add to queue", kept apart from Redis so it can be
//! tested row by row and run inside the atomic assignment later.
//!
//! A slot instant `t` is free when no post of the account holds `t`, no post lies closer than
//! `min_spacing` to it (exactly `min_spacing` apart is fine), and every rolling 24-hour window
//! `[s, s + 24h)` that contains `t` holds at most `daily_budget` posts counting the new one. So posts
//! exactly 24 hours apart never share a window. Only windows starting at `t` or at a post in the 24
//! hours before `t` need checking: any other window can slide right to its first post (or to `t`)
//! without losing a post.
//!
//! `taken` is the account's posts as epoch milliseconds, sorted ascending; every check is a binary
//! search, so the cost per candidate grows with the budget, not with the number of posts.

use std::time::Duration;

use chrono::{DateTime, Utc};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The first instant of `instants` (ascending, starting where the caller wants) that is free under
/// the rules above, or `None` once the instants pass `horizon_end` (an instant equal to it may
/// still be taken). `taken` must be sorted ascending. `daily_budget` gives the budget at each
/// instant (the calendar's, or a warming-up account's lower cap of that day).
pub fn first_free(
    instants: impl IntoIterator<Item = DateTime<Utc>>,
    taken: &[i64],
    min_spacing: Duration,
    daily_budget: impl Fn(i64) -> u32,
    horizon_end: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    debug_assert!(taken.is_sorted(), "taken must be sorted");
    let spacing = i64::try_from(min_spacing.as_millis()).unwrap_or(i64::MAX);
    instants
        .into_iter()
        .take_while(|t| *t <= horizon_end)
        .find(|t| {
            let ms = t.timestamp_millis();
            is_free(ms, taken, spacing, daily_budget(ms))
        })
}

/// Whether the instant `t` (ms) is free; see the module doc.
pub fn is_free(t: i64, taken: &[i64], spacing_ms: i64, daily_budget: u32) -> bool {
    let idx = taken.partition_point(|&p| p < t);
    if taken
        .get(idx)
        .is_some_and(|&next| next == t || next - t < spacing_ms)
    {
        return false;
    }
    if idx > 0 && t - taken[idx - 1] < spacing_ms {
        return false;
    }
    let budget = usize::try_from(daily_budget).unwrap_or(usize::MAX);
    let count_in = |s: i64| {
        let lo = taken.partition_point(|&p| p < s);
        let hi = taken.partition_point(|&p| p < s.saturating_add(DAY_MS));
        hi - lo + 1 // the new post at t
    };
    // Windows starting at each post in (t - 24h, t), and the one starting at t.
    let first = taken.partition_point(|&p| p <= t - DAY_MS);
    taken[first..idx]
        .iter()
        .chain(std::iter::once(&t))
        .all(|&s| count_in(s) <= budget)
}

/// The earliest instant at or after `from` (ms) with no post of `taken` (sorted) closer than
/// `spacing_ms`: where a fixed-time post whose time passed during a pause goes, so that the posts
/// that waited leave one by one instead of in a burst.
pub fn first_spaced(from: i64, taken: &[i64], spacing_ms: i64) -> i64 {
    debug_assert!(taken.is_sorted(), "taken must be sorted");
    // With no spacing, only the same instant is too close: the same as a spacing of 1 ms.
    let sp = spacing_ms.max(1);
    let mut t = from;
    loop {
        // The first post that is not at least `sp` before t.
        let idx = taken.partition_point(|&p| p <= t.saturating_sub(sp));
        match taken.get(idx) {
            Some(&p) if p < t.saturating_add(sp) => t = p.saturating_add(sp),
            _ => return t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 60 * 60 * 1000;
    const M: i64 = 60 * 1000;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    /// Candidates every hour from 0 to 99 h.
    fn hourly() -> impl Iterator<Item = DateTime<Utc>> {
        (0..100).map(|h| at(h * H))
    }

    const MIN15: Duration = Duration::from_secs(15 * 60);

    #[test]
    fn empty_ledger_takes_the_first_instant() {
        assert_eq!(
            first_free(hourly(), &[], MIN15, |_| 10, at(99 * H)),
            Some(at(0))
        );
    }

    #[test]
    fn a_held_instant_is_skipped_even_with_zero_spacing() {
        assert_eq!(
            first_free(hourly(), &[0], Duration::ZERO, |_| 10, at(99 * H)),
            Some(at(H))
        );
    }

    #[test]
    fn exactly_min_spacing_apart_is_free() {
        // Post at 45 min; the slot at 1 h is exactly 15 min after it.
        assert_eq!(
            first_free(hourly(), &[45 * M], MIN15, |_| 10, at(99 * H)),
            Some(at(0))
        );
        assert_eq!(
            first_free(hourly().skip(1), &[45 * M], MIN15, |_| 10, at(99 * H)),
            Some(at(H))
        );
        // And exactly 15 min before a post.
        assert_eq!(
            first_free(hourly().skip(1), &[H + 15 * M], MIN15, |_| 10, at(99 * H)),
            Some(at(H))
        );
    }

    #[test]
    fn below_min_spacing_is_not_free() {
        // 14:59 after a post, and 14:59 before one.
        assert_eq!(
            first_free(
                hourly().skip(1),
                &[H - 14 * M - 59_000],
                MIN15,
                |_| 10,
                at(99 * H)
            ),
            Some(at(2 * H))
        );
        assert_eq!(
            first_free(
                hourly().skip(1),
                &[H + 14 * M + 59_000],
                MIN15,
                |_| 10,
                at(99 * H)
            ),
            Some(at(2 * H))
        );
    }

    #[test]
    fn budget_window_before_the_instant() {
        // Budget 2; posts at 0 h and 10 h. Any slot before 24 h shares a window with both: the first
        // free one is 24 h (the post at 0 h is then exactly 24 h back, outside [s, s + 24h)).
        let taken = [0, 10 * H];
        assert_eq!(
            first_free(hourly().skip(11), &taken, MIN15, |_| 2, at(99 * H)),
            Some(at(24 * H))
        );
        // Budget 3 lets 11 h through.
        assert_eq!(
            first_free(hourly().skip(11), &taken, MIN15, |_| 3, at(99 * H)),
            Some(at(11 * H))
        );
    }

    #[test]
    fn budget_window_after_the_instant() {
        // Budget 2; posts at 30 h and 40 h. A slot at t shares [t, t + 24h) with both when
        // t > 40 h - 24 h = 16 h; at 16 h exactly the post at 40 h is just outside.
        let taken = [30 * H, 40 * H];
        assert_eq!(
            first_free(hourly(), &taken, MIN15, |_| 2, at(99 * H)),
            Some(at(0))
        );
        assert_eq!(
            first_free(hourly().skip(16), &taken, MIN15, |_| 2, at(99 * H)),
            Some(at(16 * H))
        );
        // From 17 h until 30 h + 24 h, some window holds both posts and the slot; at 54 h the post
        // at 30 h is exactly 24 h back, so no window holds all three.
        assert_eq!(
            first_free(hourly().skip(17), &taken, MIN15, |_| 2, at(99 * H)),
            Some(at(54 * H))
        );
    }

    #[test]
    fn budget_window_straddling_the_instant() {
        // Budget 2; posts at 0 h and 30 h. Slot 20 h: window starting at 0 h holds 0 h and 20 h (2),
        // window starting at 20 h holds 20 h and 30 h (2); no 24 h window holds all three.
        let taken = [0, 30 * H];
        assert_eq!(
            first_free(hourly().skip(20), &taken, MIN15, |_| 2, at(99 * H)),
            Some(at(20 * H))
        );
        // Budget 1: nothing within 24 h of either post; 54 h is the first.
        assert_eq!(
            first_free(hourly().skip(1), &taken, MIN15, |_| 1, at(99 * H)),
            Some(at(54 * H))
        );
    }

    #[test]
    fn horizon_is_inclusive_and_then_none() {
        let taken: Vec<i64> = (0..5).map(|h| h * H).collect();
        assert_eq!(
            first_free(hourly(), &taken, MIN15, |_| 10, at(5 * H)),
            Some(at(5 * H))
        );
        assert_eq!(
            first_free(hourly(), &taken, MIN15, |_| 10, at(4 * H + 59 * M)),
            None
        );
        assert_eq!(first_free(hourly(), &[], MIN15, |_| 0, at(99 * H)), None);
    }

    #[test]
    fn first_spaced_steps_past_every_post_too_close() {
        // Posts at 0, 10 and 20 minutes; spacing 15 minutes; from 5 minutes.
        let taken = [0, 10 * M, 20 * M];
        assert_eq!(first_spaced(5 * M, &taken, 15 * M), 35 * M);
        // Exactly the spacing away is fine.
        assert_eq!(first_spaced(35 * M, &taken, 15 * M), 35 * M);
        assert_eq!(first_spaced(-20 * M, &taken, 15 * M), -20 * M);
        // Zero spacing: only the same instant is refused.
        assert_eq!(first_spaced(10 * M, &taken, 0), 10 * M + 1);
        assert_eq!(first_spaced(11 * M, &taken, 0), 11 * M);
    }

    #[test]
    fn the_budget_can_differ_by_instant() {
        // Posts at 0 and 12 h. With a budget of 2 everywhere, no slot before 24 h is free (the
        // window from 0 would hold 3); with 3 allowed from 13 h on, 13 h is.
        let budget = |ms: i64| if ms < 13 * H { 2 } else { 3 };
        assert_eq!(
            first_free(hourly(), &[0, 12 * H], Duration::ZERO, budget, at(99 * H)),
            Some(at(13 * H))
        );
        assert_eq!(
            first_free(hourly(), &[0, 12 * H], Duration::ZERO, |_| 2, at(99 * H)),
            Some(at(24 * H))
        );
    }
}
