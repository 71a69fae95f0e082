//! Reading Redis stream replies (`XREAD`, `XREADGROUP`, `XAUTOCLAIM`) out of
//! `redis::Value`s, in RESP2 (arrays) or RESP3 (maps) form. Anything of
//! another shape is skipped, never a panic.

use std::collections::HashMap;

use redis::Value;

/// One stream entry: its id and its fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entry {
    pub id: String,
    pub fields: HashMap<String, Vec<u8>>,
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(text) => Some(text.clone().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        Value::Int(number) => Some(number.to_string().into_bytes()),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    bytes(value).and_then(|bytes| String::from_utf8(bytes).ok())
}

/// `[id, [field, value, …]]`; `None` for a deleted entry (`[id, nil]`).
fn entry(value: &Value) -> Option<Entry> {
    let Value::Array(parts) = value else {
        return None;
    };
    let id = text(parts.first()?)?;
    let mut fields = HashMap::new();
    match parts.get(1)? {
        Value::Array(flat) => {
            for pair in flat.chunks_exact(2) {
                fields.insert(text(&pair[0])?, bytes(&pair[1])?);
            }
        }
        Value::Map(pairs) => {
            for (name, value) in pairs {
                fields.insert(text(name)?, bytes(value)?);
            }
        }
        _ => return None,
    }
    Some(Entry { id, fields })
}

/// The entries of an entry list (skipping deleted ones).
pub fn entries(value: &Value) -> Vec<Entry> {
    match value {
        Value::Array(items) => items.iter().filter_map(entry).collect(),
        _ => Vec::new(),
    }
}

/// An `XREAD`/`XREADGROUP` reply: stream name → its entries. `Nil` (the
/// block timed out) is empty.
pub fn read_reply(value: &Value) -> Vec<(String, Vec<Entry>)> {
    match value {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|stream| match stream {
                Value::Array(parts) if parts.len() == 2 => {
                    Some((text(&parts[0])?, entries(&parts[1])))
                }
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(name, list)| Some((text(name)?, entries(list))))
            .collect(),
        _ => Vec::new(),
    }
}

/// An `XAUTOCLAIM` reply: `[next cursor, [entries], [deleted ids]]` → the
/// claimed entries.
pub fn autoclaim_reply(value: &Value) -> Vec<Entry> {
    match value {
        Value::Array(parts) => parts.get(1).map(entries).unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn reads_resp2_and_resp3_shapes_and_skips_garbage() {
        let one = Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("id"), bulk("a/1")]),
        ]);
        let deleted = Value::Array(vec![bulk("2-0"), Value::Nil]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("jobs"),
            Value::Array(vec![one.clone(), deleted.clone()]),
        ])]);
        let read = read_reply(&resp2);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].0, "jobs");
        assert_eq!(read[0].1.len(), 1);
        assert_eq!(read[0].1[0].id, "1-0");
        assert_eq!(read[0].1[0].fields["id"], b"a/1");
        let resp3 = Value::Map(vec![(bulk("jobs"), Value::Array(vec![one.clone()]))]);
        assert_eq!(read_reply(&resp3), read);
        assert!(read_reply(&Value::Nil).is_empty());
        assert!(read_reply(&Value::Int(3)).is_empty());
        let claim = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![one, deleted]),
            Value::Array(vec![]),
        ]);
        assert_eq!(autoclaim_reply(&claim).len(), 1);
        assert!(autoclaim_reply(&Value::Okay).is_empty());
    }
}
