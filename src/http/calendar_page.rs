//! The calendar page's body (`/calendar?account=NAME&week=YYYY-MM-DD`): one account's week,
//! Monday to Sunday in its zone, as seven columns of a CSS grid, without JavaScript. Each day lists
//! its slots and posts by local time; free slots say so; a post shows its title (escaped, cut), a
//! state badge and a link to the live post when it has an `https://` address.
//!
//! Pure: it renders a [`Week`] that [`crate::calendar::build_week`] built; the handler reads
//! Redis and wraps the body in the common page. One pass over the entries, appending to one
//! string, so a week of hundreds of posts costs what its text does.

use std::fmt::Write;

use chrono::DateTime;

use super::esc;
use crate::calendar::week::{Entry, Week};

/// How many characters of a title the page shows.
const TITLE_CHARS: usize = 80;

/// The page's CSS: the wrapper's width widened for seven columns, which stack on a narrow screen.
const STYLE: &str = "<style>body{max-width:96rem}\
.cal-head{display:flex;flex-wrap:wrap;gap:1rem;align-items:baseline}\
.week{display:grid;grid-template-columns:repeat(7,minmax(0,1fr));gap:.4rem;margin-top:1rem}\
@media (max-width:48rem){.week{grid-template-columns:1fr}}\
.day{border:1px solid #ddd;border-radius:.3rem;padding:.3rem;min-width:0}\
.day h2{font-size:1rem;margin:.2rem 0 .4rem}.day ol{list-style:none;margin:0;padding:0}\
.entry{border-top:1px solid #eee;padding:.25rem 0;overflow-wrap:anywhere}\
.entry time{font-variant-numeric:tabular-nums;font-weight:600;margin-right:.3rem}\
.slot::before{content:\"\\25CF \";color:#888}.free{color:#070;font-weight:600}.taken{color:#888}\
.badge{display:inline-block;font-size:.75rem;padding:0 .3rem;border-radius:.6rem;background:#eee;margin-right:.3rem}\
.state-published,.state-inbox{background:#d7f5d7}.state-failed{background:#f8d4d4}\
.state-cancelled{background:#eee;text-decoration:line-through}\
.paused{background:#fff3cd;padding:.2rem .5rem;border-radius:.3rem}</style>";

/// The body of the calendar page of `week`, for the common page wrapper.
pub(crate) fn render(week: &Week) -> String {
    let entries: usize = week.days.iter().map(|d| d.entries.len()).sum();
    let mut out = String::with_capacity(4096 + entries * 320);
    out.push_str(STYLE);
    let account = esc(&week.account);
    let last = week.days.last().map(|d| d.date).unwrap_or(week.week);
    let _ = write!(
        out,
        "<div class=cal-head><p><strong>{account}</strong> · {zone} · week of {from} to {to}</p>",
        zone = esc(&week.zone),
        from = week.week,
        to = last,
    );
    if week.paused {
        out.push_str(
            "<p class=paused><strong>paused</strong>: nothing of this account starts until \
             <code>calendar resume</code></p>",
        );
    }
    let link = |date: chrono::NaiveDate| {
        format!(
            "/calendar?account={}&amp;week={date}",
            esc(&url::form_urlencoded::byte_serialize(week.account.as_bytes()).collect::<String>())
        )
    };
    let _ = write!(
        out,
        "<nav><a rel=prev href=\"{}\">← previous week</a> · <a rel=next href=\"{}\">next week →</a></nav></div>",
        link(week.prev),
        link(week.next),
    );
    out.push_str("<div class=week>");
    for day in &week.days {
        let _ = write!(
            out,
            "<section class=day><h2>{} {}</h2><ol>",
            esc(&day.weekday),
            day.date
        );
        if day.entries.is_empty() {
            out.push_str("<li class=entry>no slot</li>");
        }
        for e in &day.entries {
            entry(&mut out, e);
        }
        out.push_str("</ol></section>");
    }
    out.push_str("</div>");
    out
}

fn entry(out: &mut String, e: &Entry) {
    let time = DateTime::parse_from_rfc3339(&e.at)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default();
    let class = if e.slot { "entry slot" } else { "entry" };
    let _ = write!(
        out,
        "<li class=\"{class}\"><time datetime=\"{}\">{time}</time>",
        esc(&e.at)
    );
    match &e.post {
        None if e.free => out.push_str("<span class=free>free</span>"),
        None => out.push_str("<span class=taken>not free</span>"),
        Some(p) => {
            let _ = write!(
                out,
                "<span class=\"badge state-{}\">{}</span>",
                css_word(&p.state),
                esc(&p.state)
            );
            let title = p
                .title
                .as_deref()
                .map(clean_title)
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "(no title)".to_owned());
            match p.url.as_deref().filter(|u| is_https(u)) {
                Some(u) => {
                    let _ = write!(
                        out,
                        "<a href=\"{}\" rel=\"noopener noreferrer\">{}</a>",
                        esc(u),
                        esc(&title)
                    );
                }
                None => out.push_str(&esc(&title)),
            }
            if let Some(st) = &p.stats {
                let when = chrono::DateTime::from_timestamp_millis(st.read_ms)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    " <small class=stats title=\"read {} ({} after publishing)\">{} views · {} likes · {} comments · {} shares</small>",
                    esc(&when),
                    esc(&st.read),
                    st.views,
                    st.likes,
                    st.comments,
                    st.shares
                );
            }
        }
    }
    if e.slot && e.post.is_some() {
        out.push_str(" <small class=taken>(slot)</small>");
    }
    out.push_str("</li>");
}

/// The title with controls as spaces, trimmed, cut to [`TITLE_CHARS`] characters (`…` when cut);
/// cut before escaping, so no entity is ever split.
fn clean_title(t: &str) -> String {
    let cleaned: String = t
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    let mut cut: String = cleaned.chars().take(TITLE_CHARS).collect();
    if cleaned.chars().nth(TITLE_CHARS).is_some() {
        cut.push('…');
    }
    cut
}

/// A state name as a CSS class word: letters, digits and `-`/`_` only.
fn css_word(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect()
}

/// Only an absolute `https://` URL with a host becomes a link.
fn is_https(u: &str) -> bool {
    url::Url::parse(u).is_ok_and(|p| p.scheme() == "https" && p.host().is_some())
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::calendar::Schedule;
    use crate::calendar::week::{WeekPost, build_week};

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn post(id: &str, title: &str, state: &str, url: Option<&str>) -> WeekPost {
        WeekPost {
            id: id.to_owned(),
            title: Some(title.to_owned()),
            state: state.to_owned(),
            url: url.map(str::to_owned),
            stats: None,
        }
    }

    #[test]
    fn renders_a_week_with_hostile_titles_escaped() {
        let s = Schedule::parse("Europe/Berlin", &["0 9 * * *"]).unwrap();
        let monday = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let hostile = "<script>alert(\"x\")</script>&amp; 'q' \u{0}\r\n</section></div>";
        let long = "é".repeat(2200);
        let posts = vec![
            // Monday 09:00 local (07:00 UTC), in the slot, published with a live link.
            (
                ms("2026-06-01T07:00:00Z"),
                post(
                    "p1",
                    hostile,
                    "published",
                    Some("https://www.tiktok.com/@u/video/1"),
                ),
            ),
            // Tuesday 10:15 local, off any slot; its URL is not https, so no link.
            (
                ms("2026-06-02T08:15:00Z"),
                post("p2", &long, "queued", Some("javascript:alert(1)")),
            ),
            (
                ms("2026-06-03T07:00:00Z"),
                post("p3", "x", "st\"ate<", Some("http://plain.example/")),
            ),
        ];
        let week = build_week(
            "my acct&co",
            &s,
            monday,
            true,
            ms("2026-06-04T00:00:00Z"),
            posts,
            |t| t != ms("2026-06-06T07:00:00Z"),
        );
        let html = render(&week);

        // Escaping: nothing of a title becomes markup.
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp; &#39;q&#39;")
        );
        assert!(html.contains("&lt;/section&gt;&lt;/div&gt;"));
        assert!(!html.contains('\u{0}') && !html.contains('\r'));
        assert_eq!(html.matches("<section").count(), 7);
        assert_eq!(html.matches("</section>").count(), 7);
        assert_eq!(html.matches("<div").count(), html.matches("</div>").count());
        // The long title is cut to 80 characters.
        assert!(html.contains(&format!("{}…", "é".repeat(80))));
        assert!(!html.contains(&"é".repeat(81)));
        // Links: the https post only; the state is a safe class word and escaped text.
        assert_eq!(html.matches("<a href=").count(), 1);
        assert!(html.contains(
            "<a href=\"https://www.tiktok.com/@u/video/1\" rel=\"noopener noreferrer\">"
        ));
        assert!(!html.contains("javascript:"));
        assert!(html.contains("<span class=\"badge state-state\">st&quot;ate&lt;</span>"));
        // Header: account (escaped), zone, dates, paused, previous and next week links with the
        // name URL-encoded.
        assert!(html.contains(
            "<strong>my acct&amp;co</strong> · Europe/Berlin · week of 2026-06-01 to 2026-06-07"
        ));
        assert!(html.contains("<strong>paused</strong>"));
        assert!(html.contains("href=\"/calendar?account=my+acct%26co&amp;week=2026-05-25\""));
        assert!(html.contains("href=\"/calendar?account=my+acct%26co&amp;week=2026-06-08\""));
        // Days and times: local HH:MM; free slots only ahead of now and not refused.
        assert!(html.contains("<h2>Mon 2026-06-01</h2>"));
        assert!(html.contains("<h2>Sun 2026-06-07</h2>"));
        assert!(html.contains("<time datetime=\"2026-06-02T10:15:00+02:00\">10:15</time>"));
        // Thursday, Friday and Sunday 09:00 are free; Saturday's is refused; Monday to Wednesday
        // are past or held.
        assert_eq!(html.matches("<span class=free>free</span>").count(), 3);
        assert_eq!(html.matches("class=\"entry slot\"").count(), 7);
        assert_eq!(html.matches("<li class=\"entry\">").count(), 1);
    }

    #[test]
    fn a_posts_stats_show_when_read() {
        let s = Schedule::parse("UTC", &["0 9 * * MON"]).unwrap();
        let monday = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let mut read = post(
            "p1",
            "t",
            "published",
            Some("https://www.tiktok.com/@u/video/1"),
        );
        read.stats = Some(crate::calendar::week::PostStats {
            views: 1234,
            likes: 56,
            comments: 7,
            shares: 8,
            read: "1d<".into(),
            read_ms: ms("2026-06-02T09:00:00Z"),
        });
        let unread = post("p2", "u", "published", None);
        let posts = vec![
            (ms("2026-06-01T09:00:00Z"), read),
            (ms("2026-06-01T10:00:00Z"), unread),
        ];
        let html = render(&build_week("a", &s, monday, false, 0, posts, |_| true));
        assert!(
            html.contains("1234 views · 56 likes · 7 comments · 8 shares</small>"),
            "{html}"
        );
        assert!(
            html.contains("title=\"read 2026-06-02T09:00:00+00:00 (1d&lt; after publishing)\"")
        );
        assert_eq!(
            html.matches("class=stats").count(),
            1,
            "only the post that was read"
        );
    }

    #[test]
    fn an_unpaused_week_does_not_say_paused() {
        let s = Schedule::parse("UTC", &["0 9 * * MON"]).unwrap();
        let monday = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let html = render(&build_week("a", &s, monday, false, 0, vec![], |_| true));
        assert!(!html.contains("<strong>paused</strong>"));
        assert_eq!(html.matches("<li class=entry>no slot</li>").count(), 6);
        assert_eq!(html.matches("free</span>").count(), 1);
    }
}
