//! Parsing and checking a submission: the flat `XADD` field form, or one `json` field.
//!
//! Every problem is one line that names the field and the fix; nothing here panics on any input.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::limits::fields_from_bytes;
use super::{echo, strict_json};
use crate::tiktok::{PostInfo, PrivacyLevel, utf16_len};

/// Fields a submission may carry.
pub const FIELDS: &[&str] = &[
    "id",
    "account",
    "video",
    "video_url",
    "title",
    "privacy_level",
    "draft",
    "disable_duet",
    "disable_stitch",
    "disable_comment",
    "video_cover_timestamp_ms",
    "is_aigc",
    "brand_content_toggle",
    "brand_organic_toggle",
    "publish_at",
    "slot",
];

/// Largest value of one field, in bytes (a 2200-unit title is at most 8800 bytes).
const MAX_FIELD_BYTES: usize = 16 * 1024;

/// Largest `json` field (or `enqueue --file`), in bytes: a whole submission, with room for a title
/// whose every character is written as a `\uXXXX` escape (Python's `json.dumps` does that).
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// A checked submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// The producer's idempotency key, if given.
    pub id: Option<String>,
    /// The account name.
    pub account: String,
    /// A local file (FILE_UPLOAD).
    pub video: Option<PathBuf>,
    /// A URL TikTok downloads (PULL_FROM_URL).
    pub video_url: Option<String>,
    /// Upload to the creator's inbox instead of publishing.
    pub draft: bool,
    /// What TikTok gets as `post_info`.
    pub post: PostInfo,
    /// When to publish; `None` = now (or the calendar slot, with `slot_next`).
    pub publish_at: Option<DateTime<FixedOffset>>,
    /// `slot` = `next`: the account's next free calendar slot instead of `publish_at`.
    #[serde(default)]
    pub slot_next: bool,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn as_text(field: &str, v: &Value) -> Result<String, String> {
    let kind = match v {
        Value::String(s) => return Ok(s.clone()),
        Value::Number(n) => return Ok(n.to_string()),
        Value::Bool(b) => return Ok(b.to_string()),
        Value::Null => return Ok(String::new()),
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    // The value itself is not repeated: it can be as large as the whole field.
    Err(format!(
        "field `{}` must be a string, number or boolean, not {kind}",
        echo::name(field)
    ))
}

/// The first control character of `value` that `field` may not hold, with its character index. A
/// title may hold line feeds (TikTok captions have line breaks); nothing else may hold any C0
/// control (U+0000 to U+001F: tab and carriage return included), DEL or C1 control (U+007F to
/// U+009F).
fn forbidden_control(field: &str, value: &str) -> Option<(usize, char)> {
    value
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !(field == "title" && *c == '\n'))
}

/// Parses the fields of a stream entry (flat, or a single `json` field).
pub fn parse_fields(fields: &[(String, String)]) -> Result<Submission, String> {
    if fields.iter().any(|(k, _)| k == "json") {
        if fields.len() != 1 {
            return Err("use either the single field `json` or flat fields, not both".into());
        }
        return parse_json(&fields[0].1);
    }
    from_pairs(fields.to_vec())
}

/// Parses a JSON object submission (the `json` field, or `enqueue --file`). An object with the same
/// key twice, at any depth, is refused, as the flat form refuses a repeated field.
pub fn parse_json(text: &str) -> Result<Submission, String> {
    if text.len() > MAX_JSON_BYTES {
        return Err(format!(
            "field `json` is {} bytes; at most {MAX_JSON_BYTES} are allowed",
            text.len()
        ));
    }
    let v: Value = strict_json::from_str(text).map_err(|e| {
        let e = echo::cut(&e.to_string(), 300).into_owned();
        format!("field `json` is not valid JSON ({e}); give one JSON object such as {{\"account\":\"main\",…}}")
    })?;
    let Value::Object(obj) = v else {
        return Err("field `json` must hold a JSON object, e.g. {\"account\":\"main\",\"video\":\"/srv/v.mp4\",\"privacy_level\":\"SELF_ONLY\"}".into());
    };
    let mut pairs = Vec::new();
    for (k, v) in &obj {
        pairs.push((k.clone(), as_text(k, v)?));
    }
    from_pairs(pairs)
}

fn from_pairs(pairs: Vec<(String, String)>) -> Result<Submission, String> {
    if pairs.len() > FIELDS.len() {
        return Err(format!(
            "too many fields ({}); the known fields are: {}",
            pairs.len(),
            FIELDS.join(", ")
        ));
    }
    let mut seen = std::collections::HashMap::new();
    for (k, v) in pairs {
        if !FIELDS.contains(&k.as_str()) {
            let shown = echo::name(&k);
            return Err(format!(
                "unknown field `{shown}`; the known fields are: {}",
                FIELDS.join(", ")
            ));
        }
        if v.len() > MAX_FIELD_BYTES {
            return Err(format!(
                "field `{k}` is {} bytes; at most {MAX_FIELD_BYTES} are allowed",
                v.len()
            ));
        }
        if let Some((at, c)) = forbidden_control(&k, &v) {
            let allowed = if k == "title" {
                "a title may hold line breaks (\\n) but no other control character"
            } else {
                "remove it"
            };
            return Err(format!(
                "field `{k}` holds the control character U+{:04X} at character {at}; {allowed}",
                c as u32
            ));
        }
        if seen.insert(k.clone(), v).is_some() {
            return Err(format!("field `{k}` is given twice; give it once"));
        }
    }
    let get = |k: &str| {
        seen.get(k)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let boolean = |k: &str| -> Result<bool, String> {
        match get(k).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(format!(
                "field `{k}` is {}; write true or false",
                echo::shown(other)
            )),
        }
    };
    let id = get("id");
    if let Some(id) = &id
        && !valid_id(id)
    {
        return Err(format!(
            "field `id` {} is not a valid id; use 1 to 128 characters from letters, digits and - _ . :",
            echo::shown(id)
        ));
    }
    let account = get("account")
        .ok_or("field `account` is missing; name the account given at `accounts connect`")?;
    // The rule is the token store's (`accounts::valid_name`); the message is the submission's own,
    // naming the field and echoing the value safely.
    if !crate::accounts::valid_name(&account) {
        return Err(format!(
            "field `account` {} is not a valid account name; use letters, digits and - _ .",
            echo::shown(&account)
        ));
    }
    let video = get("video").map(PathBuf::from);
    let video_url = get("video_url");
    match (&video, &video_url) {
        (None, None) => return Err("field `video` is missing; give the absolute path of a video file (or `video_url` for a URL TikTok downloads)".into()),
        (Some(_), Some(_)) => return Err("give either `video` or `video_url`, not both".into()),
        (Some(p), None) if !p.is_absolute() => {
            return Err(format!("field `video` {} must be an absolute path (the daemon runs in another directory)", echo::shown(&p.display().to_string())));
        }
        (None, Some(u)) if !u.starts_with("https://") => {
            return Err(format!("field `video_url` {} must be an https:// URL on a domain verified with TikTok", echo::shown(u)));
        }
        _ => {}
    }
    let privacy = get("privacy_level").ok_or_else(|| {
        format!(
            "field `privacy_level` is missing; it is never defaulted: give {}",
            PrivacyLevel::listed(" or ")
        )
    })?;
    let privacy_level: PrivacyLevel = privacy.parse().map_err(|_: String| {
        format!(
            "field `privacy_level` {} is not one of {}",
            echo::shown(&privacy),
            PrivacyLevel::listed(", ")
        )
    })?;
    let mut post = PostInfo::new(privacy_level);
    post.title = seen.get("title").cloned().filter(|t| !t.is_empty());
    if let Some(t) = &post.title {
        let n = utf16_len(t);
        if n > crate::tiktok::publish::MAX_TITLE_UTF16 {
            return Err(format!(
                "field `title` is {n} UTF-16 code units long; TikTok allows at most 2200 (emoji count as 2)"
            ));
        }
    }
    post.disable_duet = boolean("disable_duet")?;
    post.disable_stitch = boolean("disable_stitch")?;
    post.disable_comment = boolean("disable_comment")?;
    post.is_aigc = boolean("is_aigc")?;
    post.brand_content_toggle = boolean("brand_content_toggle")?;
    post.brand_organic_toggle = boolean("brand_organic_toggle")?;
    if let Some(ts) = get("video_cover_timestamp_ms") {
        let n: u32 = ts
            .parse()
            .ok()
            .filter(|n| *n <= i32::MAX as u32)
            .ok_or_else(|| {
                format!(
                    "field `video_cover_timestamp_ms` {} must be a whole number of milliseconds",
                    echo::shown(&ts)
                )
            })?;
        post.video_cover_timestamp_ms = Some(n);
    }
    post.check().map_err(|e| format!("field {e}"))?;
    let draft = boolean("draft")?;
    let publish_at = match get("publish_at") {
        None => None,
        Some(s) => Some(DateTime::parse_from_rfc3339(&s).map_err(|e| {
            format!("field `publish_at` {} is not an RFC 3339 time with an offset ({e}); write e.g. 2026-12-01T18:00:00+01:00", echo::shown(&s))
        })?),
    };
    let slot_next = match get("slot").as_deref() {
        None => false,
        Some("next") => true,
        Some(other) => {
            return Err(format!(
                "field `slot` is {}; the only value is `next` (the account's next free calendar slot)",
                echo::shown(other)
            ));
        }
    };
    if slot_next && publish_at.is_some() {
        return Err("give either `slot` or `publish_at`, not both: `slot` = `next` takes the account's next free calendar slot, `publish_at` a time of your own".into());
    }
    Ok(Submission {
        id,
        account,
        video,
        video_url,
        draft,
        post,
        publish_at,
        slot_next,
    })
}

impl Submission {
    /// The flat fields of this submission (for the `submit` stream and the ledger).
    pub fn to_fields(&self) -> Vec<(String, String)> {
        let mut f = Vec::new();
        let mut push = |k: &str, v: String| f.push((k.to_string(), v));
        if let Some(id) = &self.id {
            push("id", id.clone());
        }
        push("account", self.account.clone());
        if let Some(v) = &self.video {
            push("video", v.display().to_string());
        }
        if let Some(u) = &self.video_url {
            push("video_url", u.clone());
        }
        if let Some(t) = &self.post.title {
            push("title", t.clone());
        }
        push("privacy_level", self.post.privacy_level.to_string());
        for (k, v) in [
            ("draft", self.draft),
            ("disable_duet", self.post.disable_duet),
            ("disable_stitch", self.post.disable_stitch),
            ("disable_comment", self.post.disable_comment),
            ("is_aigc", self.post.is_aigc),
            ("brand_content_toggle", self.post.brand_content_toggle),
            ("brand_organic_toggle", self.post.brand_organic_toggle),
        ] {
            push(k, v.to_string());
        }
        if let Some(ts) = self.post.video_cover_timestamp_ms {
            push("video_cover_timestamp_ms", ts.to_string());
        }
        if let Some(at) = &self.publish_at {
            push("publish_at", at.to_rfc3339());
        }
        if self.slot_next {
            push("slot", "next".to_string());
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const OK: &[(&str, &str)] = &[
        ("account", "main"),
        ("video", "/srv/videos/cat.mp4"),
        ("title", "my cat #cat"),
        ("privacy_level", "SELF_ONLY"),
        ("publish_at", "2026-12-01T18:00:00+01:00"),
    ];

    #[test]
    fn the_readme_example_parses() {
        let s = parse_fields(&f(OK)).unwrap();
        assert_eq!(s.account, "main");
        assert_eq!(s.post.privacy_level, PrivacyLevel::SelfOnly);
        assert_eq!(
            s.publish_at.unwrap().to_rfc3339(),
            "2026-12-01T18:00:00+01:00"
        );
        let again = parse_fields(&s.to_fields()).unwrap();
        assert_eq!(again, s, "round trip through the flat form");
    }

    #[test]
    fn the_json_form_parses_with_real_booleans() {
        let s = parse_fields(&f(&[(
            "json",
            r#"{"id":"cal-1","account":"main","video":"/v.mp4","privacy_level":"PUBLIC_TO_EVERYONE","draft":false,"disable_comment":true,"video_cover_timestamp_ms":1500}"#,
        )]))
        .unwrap();
        assert_eq!(s.id.as_deref(), Some("cal-1"));
        assert!(s.post.disable_comment);
        assert_eq!(s.post.video_cover_timestamp_ms, Some(1500));
    }

    #[test]
    fn every_problem_names_the_field_and_the_fix() {
        let cases: Vec<(Vec<(String, String)>, &str)> = vec![
            (f(&[("json", "{not json")]), "not valid JSON"),
            (f(&[("json", "[1,2]")]), "JSON object"),
            (
                f(&[("account", "main"), ("video", "/v.mp4")]),
                "`privacy_level` is missing",
            ),
            (
                f(&[
                    ("account", "main"),
                    ("video", "/v.mp4"),
                    ("privacy_level", "PUBLIC"),
                ]),
                "PUBLIC_TO_EVERYONE",
            ),
            (
                f(&[("video", "/v.mp4"), ("privacy_level", "SELF_ONLY")]),
                "`account` is missing",
            ),
            (
                f(&[("account", "main"), ("privacy_level", "SELF_ONLY")]),
                "`video` is missing",
            ),
            (
                f(&[
                    ("account", "main"),
                    ("video", "v.mp4"),
                    ("privacy_level", "SELF_ONLY"),
                ]),
                "absolute path",
            ),
            (
                f(&[
                    ("account", "main"),
                    ("video", "/v.mp4"),
                    ("privacy_level", "SELF_ONLY"),
                    ("publish_at", "tomorrow"),
                ]),
                "RFC 3339",
            ),
            (
                f(&[
                    ("account", "main"),
                    ("video", "/v.mp4"),
                    ("privacy_level", "SELF_ONLY"),
                    ("publish_at", "2026-12-01T18:00:00"),
                ]),
                "RFC 3339",
            ),
            (
                f(&[
                    ("account", "main"),
                    ("video", "/v.mp4"),
                    ("privacy_level", "SELF_ONLY"),
                    ("draft", "yes"),
                ]),
                "true or false",
            ),
            (
                f(&[
                    ("account", "main"),
                    ("video", "/v.mp4"),
                    ("privacy_level", "SELF_ONLY"),
                    ("colour", "red"),
                ]),
                "unknown field `colour`",
            ),
            (
                f(&[
                    ("account", "main"),
                    ("video", "/v.mp4"),
                    ("privacy_level", "SELF_ONLY"),
                    ("id", "a b"),
                ]),
                "not a valid id",
            ),
            (
                f(&[
                    ("account", "main"),
                    ("video", "/v.mp4"),
                    ("privacy_level", "SELF_ONLY"),
                    ("brand_content_toggle", "true"),
                ]),
                "SELF_ONLY",
            ),
            (
                f(&[
                    ("account", "main"),
                    ("video", "/v.mp4"),
                    ("video_url", "https://x/v.mp4"),
                    ("privacy_level", "SELF_ONLY"),
                ]),
                "not both",
            ),
            (f(&[("account", "main"), ("json", "{}")]), "not both"),
        ];
        for (fields, want) in cases {
            let e = parse_fields(&fields).unwrap_err();
            assert!(e.contains(want), "{fields:?}: {e}");
        }
        let long = "é".repeat(2201);
        let mut fields = f(OK);
        fields.push(("title".into(), long));
        fields.retain(|(k, v)| k != "title" || v.len() > 100);
        assert!(parse_fields(&fields).unwrap_err().contains("2201 UTF-16"));
        let huge = "x".repeat(1 << 20);
        let e = parse_fields(&[("title".into(), huge)]).unwrap_err();
        assert!(e.contains("bytes"), "{e}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// Every example in jobs/examples parses, and uses only fields the schema lists.
    #[test]
    fn the_shipped_examples_parse_and_match_the_schema_fields() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("post.schema.json")).unwrap())
                .unwrap();
        let props: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want: Vec<&str> = FIELDS.to_vec();
        want.sort();
        let mut got = props.clone();
        got.sort();
        assert_eq!(got, want, "the schema lists exactly the accepted fields");
        let mut n = 0;
        for entry in std::fs::read_dir(dir.join("examples")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    parse_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                Some("redis") => {
                    // XADD key * f v f v ... with double-quoted values.
                    let mut words = Vec::new();
                    let mut cur = String::new();
                    let mut quoted = false;
                    for c in text.trim().chars() {
                        match c {
                            '"' => quoted = !quoted,
                            ' ' if !quoted => words.push(std::mem::take(&mut cur)),
                            c => cur.push(c),
                        }
                    }
                    words.push(cur);
                    let pairs: Vec<(String, String)> = words[3..]
                        .chunks(2)
                        .map(|c| (c[0].clone(), c[1].clone()))
                        .collect();
                    parse_fields(&pairs).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                _ => continue,
            }
            n += 1;
        }
        assert!(n >= 4, "examples found: {n}");
    }
}
