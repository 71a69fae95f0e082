//! Query strings: `a=1&b=two%20words`, percent-decoded.

/// The decoded `(name, value)` pairs of a query string, in order. Pairs that
/// are not valid UTF-8 after decoding are returned as an error.
///
/// # Errors
/// `Err(name_or_raw_pair)` for a pair that does not decode to UTF-8.
pub fn parse_query(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (percent_decode(name), percent_decode(value)) {
                (Some(name), Some(value)) => Ok((name, value)),
                _ => Err(pair.to_string()),
            }
        })
        .collect()
}

/// Decode `%XX` escapes and `+` (as a space). `None` if the result is not
/// UTF-8 or an escape is malformed.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes.get(index + 1..index + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let pairs = parse_query(Some("vad_mode=1&language=en%2DUS&words&x=a+b")).expect("valid");
        assert_eq!(
            pairs,
            vec![
                ("vad_mode".to_string(), "1".to_string()),
                ("language".to_string(), "en-US".to_string()),
                ("words".to_string(), String::new()),
                ("x".to_string(), "a b".to_string()),
            ]
        );
    }

    #[test]
    fn refuses_bad_escapes() {
        assert!(parse_query(Some("a=%zz")).is_err());
        assert!(parse_query(Some("a=%e2%28")).is_err());
        assert!(parse_query(Some("a=%4")).is_err());
    }
}
