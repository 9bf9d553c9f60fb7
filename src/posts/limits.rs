//! Checks on a submission beyond its field syntax: the bytes of a stream entry must be UTF-8, and
//! what only the clock and the probe know (how far ahead `publish_at` is, where the video ends).

use chrono::{DateTime, Utc};

use super::Submission;
use super::echo;

/// The fields of a stream entry as text, refusing any name or value that is not valid UTF-8 (a lossy
/// decoding would post replacement characters instead of what the producer sent).
pub fn fields_from_bytes(raw: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<(String, String)>, String> {
    let why = |e: std::str::Utf8Error, bytes: &[u8]| {
        let at = e.valid_up_to();
        format!(
            "byte {at} (0x{:02x}) does not continue a UTF-8 character",
            bytes[at]
        )
    };
    let mut out = Vec::with_capacity(raw.len());
    for (k, v) in raw {
        let name = match std::str::from_utf8(k) {
            Ok(name) => name.to_string(),
            Err(e) => {
                return Err(format!(
                    "a field name is not valid UTF-8 ({}): {}; name fields in UTF-8",
                    why(e, k),
                    echo::shown(&String::from_utf8_lossy(k))
                ));
            }
        };
        let value = match std::str::from_utf8(v) {
            Ok(value) => value.to_string(),
            Err(e) => {
                return Err(format!(
                    "field `{}` is not valid UTF-8 ({}); send its text in UTF-8",
                    echo::name(&name),
                    why(e, v)
                ));
            }
        };
        out.push((name, value));
    }
    Ok(out)
}

/// How far ahead a post may be scheduled: twelve calendar months from the time it is submitted.
pub const MAX_MONTHS_AHEAD: u32 = 12;

impl Submission {
    /// Refuses a `publish_at` more than `MAX_MONTHS_AHEAD` months after `now` (a typo in the year
    /// would otherwise park the post, and its daily budget, for years).
    pub fn check_schedule(&self, now: DateTime<Utc>) -> Result<(), String> {
        let Some(at) = self.publish_at else {
            return Ok(());
        };
        let latest = now
            .checked_add_months(chrono::Months::new(MAX_MONTHS_AHEAD))
            .unwrap_or(now);
        if at > latest {
            return Err(format!(
                "field `publish_at` {} is more than a year ahead (the latest allowed now is {}); schedule it within {MAX_MONTHS_AHEAD} months",
                at.to_rfc3339(),
                latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        Ok(())
    }

    /// Refuses a `video_cover_timestamp_ms` at or past the end of a video `duration_ms` long (TikTok
    /// would pick a frame that does not exist).
    pub fn check_cover(&self, duration_ms: u64) -> Result<(), String> {
        match self.post.video_cover_timestamp_ms {
            Some(ts) if u64::from(ts) >= duration_ms => Err(format!(
                "field `video_cover_timestamp_ms` is {ts} ms but the video is only {duration_ms} ms long; pick a cover frame between 0 and {}",
                duration_ms.saturating_sub(1)
            )),
            _ => Ok(()),
        }
    }

    /// True when both ask for the same post: every field but the id (which may be the entry id on
    /// one side and absent on the other) is equal. Times compare as instants, paths by component.
    pub fn same_content(&self, other: &Submission) -> bool {
        let strip = |s: &Submission| Submission {
            id: None,
            ..s.clone()
        };
        strip(self) == strip(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posts::parse_fields;

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sub(extra: &[(&str, &str)]) -> Result<Submission, String> {
        let mut fields = f(&[
            ("account", "main"),
            ("video", "/srv/videos/v.mp4"),
            ("privacy_level", "SELF_ONLY"),
        ]);
        fields.extend(f(extra));
        parse_fields(&fields)
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_naming_the_field() {
        let raw = vec![
            (b"account".to_vec(), b"main".to_vec()),
            (b"title".to_vec(), b"caf\xe9".to_vec()),
        ];
        let e = fields_from_bytes(&raw).unwrap_err();
        assert!(e.contains("field `title` is not valid UTF-8"), "{e}");
        assert!(e.contains("byte 3 (0xe9)"), "{e}");
        let e = fields_from_bytes(&[(b"\xff".to_vec(), b"x".to_vec())]).unwrap_err();
        assert!(e.contains("a field name is not valid UTF-8"), "{e}");
        let ok = fields_from_bytes(&[(b"title".to_vec(), "café 😀".as_bytes().to_vec())]).unwrap();
        assert_eq!(ok[0].1, "café 😀");
    }

    #[test]
    fn control_characters_are_refused_except_line_feeds_in_a_title() {
        assert_eq!(
            sub(&[("title", "line one\nline two")])
                .unwrap()
                .post
                .title
                .as_deref(),
            Some("line one\nline two")
        );
        for (field, value, code) in [
            ("title", "a\u{7}b", "U+0007"),
            ("title", "a\r\nb", "U+000D"),
            ("title", "a\tb", "U+0009"),
            ("title", "a\u{85}b", "U+0085"),
            ("title", "a\u{7f}b", "U+007F"),
            ("publish_at", "2026-12-01T18:00:00+01:00\n", "U+000A"),
        ] {
            let e = sub(&[(field, value)]).unwrap_err();
            assert!(e.contains(&format!("field `{field}`")), "{e}");
            assert!(e.contains(code), "{value:?}: {e}");
        }
        let e = parse_fields(&f(&[
            ("account", "main"),
            ("video", "/srv/videos/a\u{1b}[2Jb.mp4"),
            ("privacy_level", "SELF_ONLY"),
        ]))
        .unwrap_err();
        assert!(e.contains("field `video`") && e.contains("U+001B"), "{e}");
    }

    #[test]
    fn a_json_field_with_a_repeated_key_is_refused() {
        let e = parse_fields(&f(&[(
            "json",
            r#"{"account":"main","video":"/v.mp4","privacy_level":"SELF_ONLY","privacy_level":"PUBLIC_TO_EVERYONE"}"#,
        )]))
        .unwrap_err();
        assert!(e.contains("`privacy_level` is given twice"), "{e}");
        let huge = format!(
            r#"{{"account":"main","title":{{"a":"{}"}}}}"#,
            "x".repeat(60_000)
        );
        let e = parse_fields(&f(&[("json", &huge)])).unwrap_err();
        assert!(
            e.contains("not an object") && e.len() < 200,
            "the value is not echoed: {e}"
        );
        let e = parse_fields(&f(&[("json", &"x".repeat(10 << 20))])).unwrap_err();
        assert!(e.contains("at most 65536") && e.len() < 200, "{e}");
    }

    #[test]
    fn publish_at_more_than_a_year_ahead_is_refused() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ok = sub(&[("publish_at", "2027-12-01T10:00:00Z")]).unwrap();
        assert!(
            ok.check_schedule(now).is_ok(),
            "twelve months to the second"
        );
        let late = sub(&[("publish_at", "2027-12-01T11:00:01+01:00")]).unwrap();
        let e = late.check_schedule(now).unwrap_err();
        assert!(e.contains("more than a year ahead"), "{e}");
        assert!(sub(&[]).unwrap().check_schedule(now).is_ok());
    }

    #[test]
    fn a_cover_frame_at_or_past_the_end_is_refused() {
        let s = sub(&[("video_cover_timestamp_ms", "1200")]).unwrap();
        assert!(s.check_cover(1201).is_ok());
        let e = s.check_cover(1200).unwrap_err();
        assert!(e.contains("only 1200 ms long"), "{e}");
        assert!(sub(&[]).unwrap().check_cover(1).is_ok());
    }

    #[test]
    fn same_content_ignores_the_id_and_the_form() {
        let a = sub(&[("id", "x1"), ("publish_at", "2026-12-01T18:00:00+01:00")]).unwrap();
        let b = sub(&[("publish_at", "2026-12-01T17:00:00Z")]).unwrap();
        assert!(a.same_content(&b));
        let c = sub(&[("title", "other")]).unwrap();
        assert!(!a.same_content(&c));
    }
}
