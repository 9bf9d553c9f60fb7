//! Bounds on what a submission can make the daemon repeat: a value quoted in a reason, a reason, and
//! the copy of a rejected entry. A producer controls these bytes, so none of them may grow with the
//! input; every cut is marked so a reader knows something was left out and how much.
//!
//! Sizes (the README's submission section gives the same figures):
//! - a value quoted inside a reason: [`SHOWN_CHARS`] characters;
//! - a whole reason (and so the `reason` log field): [`MAX_REASON_BYTES`] bytes;
//! - a rejected entry: each field name [`MAX_ECHO_NAME_BYTES`] bytes, each value
//!   [`MAX_ECHO_VALUE_BYTES`] bytes (every value small enough to be accepted is kept whole), at most
//!   [`MAX_ECHO_FIELDS`] fields and [`MAX_ECHO_ENTRY_BYTES`] bytes in all.

use std::borrow::Cow;

/// Characters of a producer's value quoted inside a reason.
pub const SHOWN_CHARS: usize = 120;
/// Bytes of a whole reason.
pub const MAX_REASON_BYTES: usize = 2048;
/// Bytes of one field name copied into a rejected entry.
pub const MAX_ECHO_NAME_BYTES: usize = 128;
/// Bytes of one value copied into a rejected entry: the largest flat value that can be accepted
/// (a larger `json` field is cut too; the producer has its own copy).
pub const MAX_ECHO_VALUE_BYTES: usize = 16 * 1024;
/// Fields of the original entry copied into a rejected entry (a valid one has at most 15).
pub const MAX_ECHO_FIELDS: usize = 32;
/// Bytes of the copied fields of a rejected entry, names and values together.
/// The rejected stream keeps about 100,000 entries, so this also bounds it (about 3.2 GB at worst).
pub const MAX_ECHO_ENTRY_BYTES: usize = 32 * 1024;

/// The marker put after a cut: how many bytes the whole value had.
fn marker(total: usize) -> String {
    format!("…[cut: {total} bytes in all]")
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` cut to at most `max` bytes, marker included, when it is longer.
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let m = marker(s.len());
    let keep = prefix(s, max.saturating_sub(m.len()));
    Cow::Owned(format!("{keep}{m}"))
}

/// Raw bytes (possibly not UTF-8) cut to at most `max` bytes, marker included, when longer. A cut
/// inside a UTF-8 sequence of a valid text backs off to the character boundary.
pub fn cut_bytes(b: &[u8], max: usize) -> Cow<'_, [u8]> {
    if b.len() <= max {
        return Cow::Borrowed(b);
    }
    let m = marker(b.len());
    let mut end = max.saturating_sub(m.len());
    if let Ok(s) = std::str::from_utf8(b) {
        end = prefix(s, end).len();
    }
    let mut out = b[..end].to_vec();
    out.extend_from_slice(m.as_bytes());
    Cow::Owned(out)
}

/// A producer's value as quoted inside a reason: Debug-quoted (control characters escaped), at most
/// [`SHOWN_CHARS`] characters of it.
pub fn shown(s: &str) -> String {
    let n = s.chars().count();
    if n <= SHOWN_CHARS {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(SHOWN_CHARS).collect();
    format!("{head:?}…[{} bytes in all]", s.len())
}

/// A reason as stored and logged: one line (any control character that reached it, say from a
/// probed file's metadata, is escaped), at most [`MAX_REASON_BYTES`].
pub fn reason(s: &str) -> String {
    let one_line: String = if s.chars().any(char::is_control) {
        s.chars()
            .flat_map(|c| {
                let esc: Vec<char> = if c.is_control() {
                    c.escape_debug().collect()
                } else {
                    vec![c]
                };
                esc
            })
            .collect()
    } else {
        s.to_string()
    };
    cut(&one_line, MAX_REASON_BYTES).into_owned()
}

/// A producer's field name (or JSON key) as named inside a reason: its first 40 characters, with
/// control characters escaped so a reason stays one line.
pub fn name(s: &str) -> String {
    s.chars().take(40).flat_map(char::escape_debug).collect()
}

/// The fields of a rejected entry, bounded as the module says. Fields past [`MAX_ECHO_FIELDS`] or
/// past the byte budget are dropped and counted in a last `fields_dropped` field.
pub fn bounded_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut used = 0usize;
    let mut dropped = 0usize;
    for (k, v) in fields {
        let k = cut_bytes(k, MAX_ECHO_NAME_BYTES);
        let v = cut_bytes(v, MAX_ECHO_VALUE_BYTES);
        if out.len() >= MAX_ECHO_FIELDS || used + k.len() + v.len() > MAX_ECHO_ENTRY_BYTES {
            dropped += 1;
            continue;
        }
        used += k.len() + v.len();
        out.push((k.into_owned(), v.into_owned()));
    }
    if dropped > 0 {
        out.push((b"fields_dropped".to_vec(), dropped.to_string().into_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_with_a_marker_and_short_ones_kept() {
        assert_eq!(cut("short", 100), "short");
        let long = "é".repeat(10_000);
        let c = cut(&long, 1000);
        assert!(c.len() <= 1000, "{}", c.len());
        assert!(c.ends_with("…[cut: 20000 bytes in all]"), "{c}");
        let raw = [0xffu8; 5000];
        let b = cut_bytes(&raw, 100);
        assert!(b.len() <= 100);
        assert!(b.ends_with("[cut: 5000 bytes in all]".as_bytes()));
        let s = shown(&"x\n".repeat(1000));
        assert!(
            s.starts_with("\"x\\nx\\n"),
            "control characters are escaped: {s}"
        );
        assert!(s.len() < 300, "{}", s.len());
        assert_eq!(shown("a"), "\"a\"");
        assert_eq!(name("a\nb"), "a\\nb");
        assert_eq!(reason("bad\ncodec é"), "bad\\ncodec é");
        assert!(reason(&"r".repeat(1 << 20)).len() <= MAX_REASON_BYTES);
        assert_eq!(name(&"k".repeat(100)).len(), 40);
    }

    #[test]
    fn a_rejected_entry_is_bounded_in_fields_and_bytes() {
        let big = vec![b'x'; 10 << 20];
        let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..100)
            .map(|i| (format!("f{i}").into_bytes(), big.clone()))
            .collect();
        let out = bounded_fields(&fields);
        let total: usize = out.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total <= MAX_ECHO_ENTRY_BYTES + 64, "{total}");
        assert_eq!(out.last().unwrap().0, b"fields_dropped");
        assert!(out[0].1.len() <= MAX_ECHO_VALUE_BYTES);
        let small = vec![(b"account".to_vec(), b"main".to_vec())];
        assert_eq!(
            bounded_fields(&small),
            small,
            "small entries are copied whole"
        );
    }
}
