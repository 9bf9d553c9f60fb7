//! An account's calendar as an RFC 5545 feed (`/calendar/NAME.ics`), for Google Calendar,
//! Outlook and Apple Calendar to subscribe to: one event per post.
//!
//! Written here rather than with the `icalendar` crate (0.17), which is maintained but does not
//! fit hostile text: its TEXT escaping leaves a bare CR and other control characters in the value
//! (a title holding `\r` ends the content line early in a strict reader), it escapes only
//! properties it recognises by name, and it decides where to fold by mixing a character index with
//! a byte index. The format needs about eighty lines, and these are tested against Python's
//! `icalendar` parser (`feed_tests.rs`).
//!
//! The rules kept: CRLF line ends; content lines folded before 75 octets (a continuation line's
//! leading space counts) and never inside a UTF-8 character; TEXT values escape `\`, `;`, `,` and
//! line breaks (CR, LF and CRLF each become `\n`), and every other control character, the C1
//! controls and the Unicode line and paragraph separators become a space, so nothing a title holds
//! can end a line, start a property or split one. Instants are written in UTC (`…Z`).

use chrono::{DateTime, Duration, Utc};

/// One post as the feed shows it.
#[derive(Debug, Clone)]
pub struct FeedItem {
    /// The post id (the event's UID is built from it).
    pub id: String,
    /// The instant the post holds, in epoch milliseconds.
    pub at_ms: i64,
    /// Its title, when it has one.
    pub title: Option<String>,
    /// Its state's name.
    pub state: String,
    /// Raised on every move of the post, so subscribers replace their copy.
    pub sequence: u32,
    /// The live post's address, once known.
    pub url: Option<String>,
}

/// How many characters of a title the SUMMARY keeps.
const SUMMARY_CHARS: usize = 60;
/// How long each event lasts in the feed.
const EVENT_MINUTES: i64 = 15;
/// Octets per content line, the line break excluded (RFC 5545 §3.1).
const LINE_OCTETS: usize = 75;

/// The feed of `account` holding `items`, stamped `now`. Items whose instant cannot be written are
/// left out.
pub fn render(account: &str, items: &[FeedItem], now: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(256 + items.len() * 400);
    let stamp = utc_stamp(now);
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//tiktok-poster//posting calendar//EN");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "METHOD:PUBLISH");
    line(
        &mut out,
        &format!("X-WR-CALNAME:{}", text(&format!("TikTok: {account}"))),
    );
    for item in items {
        let Some(start) = DateTime::from_timestamp_millis(item.at_ms) else {
            continue;
        };
        let url = item.url.as_deref().filter(|u| is_plain_url(u));
        let mut description = format!("State: {}", item.state);
        if let Some(u) = &item.url {
            description.push('\n');
            description.push_str(u);
        }
        line(&mut out, "BEGIN:VEVENT");
        line(
            &mut out,
            &format!("UID:{}", text(&format!("{}@tiktok-poster", item.id))),
        );
        line(&mut out, &format!("DTSTAMP:{stamp}"));
        line(&mut out, &format!("DTSTART:{}", utc_stamp(start)));
        line(
            &mut out,
            &format!(
                "DTEND:{}",
                utc_stamp(start + Duration::minutes(EVENT_MINUTES))
            ),
        );
        line(
            &mut out,
            &format!("SUMMARY:{}", text(&summary(account, item.title.as_deref()))),
        );
        line(&mut out, &format!("DESCRIPTION:{}", text(&description)));
        if let Some(u) = url {
            line(&mut out, &format!("URL:{u}"));
        }
        line(&mut out, &format!("STATUS:{}", status(&item.state)));
        line(&mut out, &format!("SEQUENCE:{}", item.sequence));
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

/// `{account}: {title}`, the title cut to [`SUMMARY_CHARS`] characters with `…` when cut.
fn summary(account: &str, title: Option<&str>) -> String {
    let title = title.map(str::trim).filter(|t| !t.is_empty());
    match title {
        None => format!("{account}: (no title)"),
        Some(t) => {
            let mut cut: String = t.chars().take(SUMMARY_CHARS).collect();
            if t.chars().nth(SUMMARY_CHARS).is_some() {
                cut.push('…');
            }
            format!("{account}: {cut}")
        }
    }
}

fn status(state: &str) -> &'static str {
    match state {
        "cancelled" => "CANCELLED",
        "published" | "inbox" => "CONFIRMED",
        _ => "TENTATIVE",
    }
}

fn utc_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A URL fit for the URI-valued `URL` property: http(s), with no space, control character or
/// quote that a reader could take for the end of the value. Any other URL still appears, escaped,
/// in the DESCRIPTION.
fn is_plain_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && u.chars().all(|c| c.is_ascii_graphic() && c != '"')
}

/// A TEXT value (RFC 5545 §3.3.11) escaped, with line breaks as `\n` and other controls as spaces.
pub(crate) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Appends one content line, folded: at most [`LINE_OCTETS`] octets before each CRLF, the
/// continuation lines starting with a space, and no cut inside a character.
pub(crate) fn line(out: &mut String, content: &str) {
    let mut rest = content;
    let mut room = LINE_OCTETS;
    loop {
        if rest.len() <= room {
            out.push_str(rest);
            out.push_str("\r\n");
            return;
        }
        let mut cut = room;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        room = LINE_OCTETS - 1;
    }
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
