//! Stream replies parsed by hand from raw Redis values, as bytes, so no entry (binary field names,
//! huge values, deleted entries) can make the reply unreadable and stall the group.

use redis::Value;

/// One stream entry: its id and its fields as the producer's raw bytes.
pub type Entry = (String, Vec<(Vec<u8>, Vec<u8>)>);

fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        Value::VerbatimString { text, .. } => text.clone().into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

/// An entry id (Redis makes them ASCII, so lossy decoding changes nothing).
pub(super) fn text(v: &Value) -> String {
    String::from_utf8_lossy(&bytes(v)).into_owned()
}

pub(super) fn items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a.iter().collect(),
        Value::Map(m) => m.iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// Parses a list of `[id, [field, value, ...]]` entries.
pub(super) fn parse_entries(v: &Value) -> Vec<Entry> {
    items(v)
        .into_iter()
        .filter_map(|e| {
            let parts = items(e);
            let id = text(parts.first()?);
            if id.is_empty() {
                return None;
            }
            let fields = parts
                .get(1)
                .map(|f| {
                    items(f)
                        .chunks(2)
                        .filter(|c| c.len() == 2)
                        .map(|c| (bytes(c[0]), bytes(c[1])))
                        .collect()
                })
                .unwrap_or_default();
            Some((id, fields))
        })
        .collect()
}

/// Parses an XREADGROUP reply (RESP2 array or RESP3 map) for one stream.
pub(super) fn parse_read(v: &Value) -> Vec<Entry> {
    match v {
        Value::Nil => Vec::new(),
        Value::Map(m) => m
            .iter()
            .flat_map(|(_, entries)| parse_entries(entries))
            .collect(),
        _ => items(v)
            .into_iter()
            .flat_map(|stream| {
                items(stream)
                    .get(1)
                    .map(|e| parse_entries(e))
                    .unwrap_or_default()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_as_bytes_in_both_protocols() {
        let b = |s: &[u8]| Value::BulkString(s.to_vec());
        let entry = Value::Array(vec![
            b(b"1-0"),
            Value::Array(vec![b(b"account"), b(b"main"), b(&[0xff, 0xfe]), b(b"x")]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            b(b"ns:submit"),
            Value::Array(vec![entry.clone()]),
        ])]);
        let got = parse_read(&resp2);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "1-0");
        assert_eq!(got[0].1[0], (b"account".to_vec(), b"main".to_vec()));
        assert_eq!(got[0].1[1].0, vec![0xff, 0xfe], "bytes are kept as sent");
        let resp3 = Value::Map(vec![(b(b"ns:submit"), Value::Array(vec![entry]))]);
        assert_eq!(parse_read(&resp3).len(), 1);
        assert!(parse_read(&Value::Nil).is_empty());
        let deleted = Value::Array(vec![Value::Array(vec![
            b(b"ns:submit"),
            Value::Array(vec![Value::Array(vec![b(b"2-0"), Value::Nil])]),
        ])]);
        assert_eq!(parse_read(&deleted), vec![("2-0".to_string(), vec![])]);
    }
}
