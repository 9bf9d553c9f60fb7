//! The calendar's two routes: `/calendar?account=NAME[&week=YYYY-MM-DD]` (the page, on the main
//! listener only) and `/calendar/NAME.ics?token=TOKEN` (the feed). Both read only. A feed asked for
//! with a wrong or missing token, for an account without a calendar, or for a name that is not an
//! account name gets the same 404, so the answer tells nothing about which accounts exist.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;

use super::{AppState, calendar_page, esc, page};
use crate::planner::PlanError;

/// Longest feed token accepted (ours are 32 characters).
const MAX_TOKEN: usize = 128;

/// The page's query.
#[derive(Debug, Deserialize)]
pub(super) struct WeekQuery {
    account: Option<String>,
    week: Option<String>,
}

fn problem(status: StatusCode, text: &str) -> Response {
    (
        status,
        page(
            "Posting calendar",
            &format!("<p class=bad>{}</p>", esc(text)),
        ),
    )
        .into_response()
}

/// `/calendar?account=NAME&week=DATE`.
pub(super) async fn week_page(State(st): State<AppState>, Query(q): Query<WeekQuery>) -> Response {
    let Some(account) = q.account.filter(|a| crate::accounts::valid_name(a)) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Give an account name: /calendar?account=NAME (letters, digits and - _ .); the accounts page links to each calendar.",
        );
    };
    let date = match q.week.as_deref().filter(|w| !w.is_empty()) {
        None => None,
        Some(w) => match NaiveDate::parse_from_str(w, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "week must be a date written YYYY-MM-DD, e.g. week=2026-12-01",
                );
            }
        },
    };
    match st.calendars.week(&account, date).await {
        Ok(week) => {
            let title = format!("Calendar of {account}");
            page(&title, &calendar_page::render(&week)).into_response()
        }
        Err(e @ PlanError::NoCalendar(_)) => problem(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ PlanError::Invalid(_)) => problem(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(PlanError::Redis(e)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "Cannot read the calendar now ({}); try again shortly.",
                crate::db::explain(&e)
            ),
        ),
    }
}

/// The feed's query.
#[derive(Debug, Deserialize)]
pub(super) struct FeedQuery {
    token: Option<String>,
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// `/calendar/NAME.ics?token=TOKEN`.
pub(super) async fn feed(
    State(st): State<AppState>,
    Path(file): Path<String>,
    Query(q): Query<FeedQuery>,
) -> Response {
    let Some(account) = file
        .strip_suffix(".ics")
        .filter(|a| crate::accounts::valid_name(a))
    else {
        return not_found();
    };
    let Some(token) = q.token.filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN) else {
        return not_found();
    };
    match st.calendars.feed(account, &token).await {
        Ok(Some(body)) => (
            [
                (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            body,
        )
            .into_response(),
        Ok(None) | Err(PlanError::NoCalendar(_) | PlanError::Invalid(_)) => not_found(),
        Err(PlanError::Redis(e)) => {
            tracing::warn!(error = %crate::db::explain(&e), "The calendar feed cannot read Redis.");
            (StatusCode::SERVICE_UNAVAILABLE, "try again shortly\n").into_response()
        }
    }
}
