//! `multipart/form-data` (RFC 7578 over RFC 2046) parsing of a complete request body.
//!
//! It receives the body the connection has already read in full (bounded by the
//! body size limit) and the boundary from the `Content-Type` ([`boundary`]), and hands
//! on borrowed [`Part`]s: names, file names, content types and data are slices of the
//! body, nothing is copied. The upload handlers pick the `file` part and pass its
//! bytes to the audio decoder. Limits: [`PARTS_MAX`] parts, [`PART_HEADER_BYTES_MAX`]
//! of headers per part; errors are [`MultipartError`]s, answered 400 `bad_request`.
//! No input may panic: every index is checked.

/// Most parts in one body; an OpenAI-style upload has about six.
pub const PARTS_MAX: usize = crate::limits::MULTIPART_PARTS_MAX;
/// Most bytes of headers in one part, blank line included.
pub const PART_HEADER_BYTES_MAX: usize = 8 * 1024;
/// Most headers in one part (they usually have two).
const PART_HEADERS_MAX: usize = 16;
/// Longest boundary RFC 2046 allows.
const BOUNDARY_BYTES_MAX: usize = 70;

/// One part of the form, borrowed from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part<'a> {
    /// The `name` parameter of `Content-Disposition`.
    pub name: &'a str,
    /// The `filename` parameter, if any (as sent: not percent-decoded).
    pub filename: Option<&'a str>,
    /// The part's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// The part body.
    pub data: &'a [u8],
}

/// Why a body is not valid multipart; the message is shown to clients as
/// 400 `bad_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartError(pub &'static str);

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for MultipartError {}

/// Extract the boundary from a Content-Type header value like
/// `multipart/form-data; boundary="abc"` (quoted or not, case-insensitive parameter
/// name). Returns `None` if the type is not `multipart/*` or the boundary is missing,
/// empty, longer than 70 bytes or contains CR/LF.
pub fn boundary(content_type: &str) -> Option<&str> {
    let mut parameters = content_type.split(';');
    let media_type = parameters.next()?.trim();
    if !media_type
        .get(..10)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("multipart/"))
    {
        return None;
    }
    for parameter in parameters {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"')?,
            None => value,
        };
        let valid = !value.is_empty()
            && value.len() <= BOUNDARY_BYTES_MAX
            && !value.bytes().any(|b| b == b'\r' || b == b'\n');
        return valid.then_some(value);
    }
    None
}

/// Parse all parts of a complete body.
///
/// # Errors
/// A [`MultipartError`] when the boundary is unusable, the body has no opening or
/// closing delimiter, a part's headers are malformed, too large, not UTF-8 or lack a
/// `Content-Disposition: form-data` with a `name`, or there are more than
/// [`PARTS_MAX`] parts.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, MultipartError> {
    if boundary.is_empty()
        || boundary.len() > BOUNDARY_BYTES_MAX
        || boundary.bytes().any(|b| b == b'\r' || b == b'\n')
    {
        return Err(MultipartError("invalid multipart boundary"));
    }
    // "\r\n--boundary": the delimiter between parts. The first one may sit at the very
    // start of the body, without the line break.
    let mut delimiter = Vec::with_capacity(4 + boundary.len());
    delimiter.extend_from_slice(b"\r\n--");
    delimiter.extend_from_slice(boundary.as_bytes());

    let mut position = if body.starts_with(&delimiter[2..]) {
        delimiter.len() - 2
    } else {
        find(body, &delimiter, 0).ok_or(MultipartError("multipart body has no opening boundary"))?
            + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        // After a delimiter: "--" closes the body, otherwise optional transport
        // padding and a line break open the next part.
        let after = body.get(position..).unwrap_or_default();
        if after.starts_with(b"--") {
            return Ok(parts);
        }
        let padding = after
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if !after[padding..].starts_with(b"\r\n") {
            return Err(MultipartError("malformed multipart boundary line"));
        }
        let part_start = position + padding + 2;
        let part_end = find(body, &delimiter, part_start)
            .ok_or(MultipartError("multipart body has no closing boundary"))?;
        if parts.len() == PARTS_MAX {
            return Err(MultipartError("too many multipart parts"));
        }
        parts.push(parse_part(&body[part_start..part_end])?);
        position = part_end + delimiter.len();
    }
}

/// First position at or after `from` where `needle` (which starts with its only CR)
/// occurs. Because the needle has no other CR, a comparison started at one CR stops at
/// the next one at the latest, so the search is linear in the body length.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut position = from;
    while position < haystack.len() {
        let offset = haystack[position..].iter().position(|&b| b == first)?;
        position += offset;
        if haystack[position..].starts_with(needle) {
            return Some(position);
        }
        position += 1;
    }
    None
}

/// Headers and data of one part (the bytes between two delimiters).
fn parse_part(part: &[u8]) -> Result<Part<'_>, MultipartError> {
    let head = &part[..part.len().min(PART_HEADER_BYTES_MAX)];
    let mut headers = [httparse::EMPTY_HEADER; PART_HEADERS_MAX];
    let (header_len, headers) = match httparse::parse_headers(head, &mut headers) {
        Ok(httparse::Status::Complete((len, headers))) => (len, headers),
        Ok(httparse::Status::Partial) if head.len() < part.len() => {
            return Err(MultipartError("multipart part headers are too large"))
        }
        Ok(httparse::Status::Partial) => {
            return Err(MultipartError("multipart part headers are incomplete"))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(MultipartError("too many multipart part headers"))
        }
        Err(_) => return Err(MultipartError("malformed multipart part headers")),
    };
    let mut disposition = None;
    let mut content_type = None;
    for header in headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| MultipartError("multipart part header is not UTF-8"))?
            .trim();
        if header.name.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value);
        } else if header.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value);
        }
    }
    let disposition =
        disposition.ok_or(MultipartError("multipart part has no Content-Disposition"))?;
    let (name, filename) = parse_disposition(disposition)?;
    Ok(Part {
        name,
        filename,
        content_type,
        data: &part[header_len..],
    })
}

/// `form-data; name="file"; filename="a.wav"` → (`file`, `Some("a.wav")`).
fn parse_disposition(value: &str) -> Result<(&str, Option<&str>), MultipartError> {
    let (kind, mut rest) = value.split_once(';').unwrap_or((value, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(MultipartError("multipart part is not form-data"));
    }
    let mut name = None;
    let mut filename = None;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ';' || c.is_ascii_whitespace());
        if rest.is_empty() {
            break;
        }
        let (parameter, value, remainder) = parse_disposition_parameter(rest)?;
        if parameter.eq_ignore_ascii_case("name") {
            name = Some(value);
        } else if parameter.eq_ignore_ascii_case("filename") {
            filename = Some(value);
        }
        rest = remainder;
    }
    let name = name.ok_or(MultipartError("multipart part has no name"))?;
    Ok((name, filename))
}

/// One `key=value` or `key="quoted value"` off the front of `rest`. A quoted
/// value ends at the first `"` not preceded by a backslash; escapes are left in
/// place (browsers percent-encode quotes in file names instead).
fn parse_disposition_parameter(rest: &str) -> Result<(&str, &str, &str), MultipartError> {
    const MALFORMED: MultipartError = MultipartError("malformed Content-Disposition parameter");
    let (key, after_key) = rest.split_once('=').ok_or(MALFORMED)?;
    let after_key = after_key.trim_start();
    if let Some(quoted) = after_key.strip_prefix('"') {
        let bytes = quoted.as_bytes();
        let mut end = 0;
        while end < bytes.len() && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\')) {
            end += 1;
        }
        if end == bytes.len() {
            return Err(MALFORMED);
        }
        let remainder = quoted[end + 1..].trim_start();
        if !(remainder.is_empty() || remainder.starts_with(';')) {
            return Err(MALFORMED);
        }
        Ok((key.trim(), &quoted[..end], remainder))
    } else {
        let (value, remainder) = match after_key.find(';') {
            Some(index) => after_key.split_at(index),
            None => (after_key, ""),
        };
        Ok((key.trim(), value.trim(), remainder))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The body `curl -F file=@a.wav -F model=whisper-1` sends (curl's boundary style),
    /// with binary data holding CR, LF and dashes.
    fn curl_body() -> (Vec<u8>, &'static str) {
        let boundary = "------------------------d74496d66958873e";
        let mut body = Vec::new();
        body.extend_from_slice(b"--------------------------d74496d66958873e\r\n");
        body.extend_from_slice(
            b"Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n",
        );
        body.extend_from_slice(b"Content-Type: audio/wav\r\n\r\n");
        body.extend_from_slice(
            b"RIFF\r\n--\r\n-\x00\xff\r\n--------------------------d74496d6695887",
        );
        body.extend_from_slice(b"\r\n--------------------------d74496d66958873e\r\n");
        body.extend_from_slice(b"Content-Disposition: form-data; name=\"model\"\r\n\r\n");
        body.extend_from_slice(b"whisper-1");
        body.extend_from_slice(b"\r\n--------------------------d74496d66958873e--\r\n");
        (body, boundary)
    }

    #[test]
    fn curl_body_parses() {
        let (body, boundary) = curl_body();
        let parts = parse(&body, boundary).expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "file");
        assert_eq!(parts[0].filename, Some("a.wav"));
        assert_eq!(parts[0].content_type, Some("audio/wav"));
        assert_eq!(
            parts[0].data,
            b"RIFF\r\n--\r\n-\x00\xff\r\n--------------------------d74496d6695887"
        );
        assert_eq!(parts[1].name, "model");
        assert_eq!(parts[1].filename, None);
        assert_eq!(parts[1].content_type, None);
        assert_eq!(parts[1].data, b"whisper-1");
    }

    #[test]
    fn openai_python_client_body_parses() {
        // httpx (used by the openai package): hex boundary, fields then the file,
        // header names in lower case, no trailing CRLF after the close delimiter.
        let body = b"--7c3e6f0a\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\n\
whisper-1\r\n--7c3e6f0a\r\ncontent-disposition: form-data; name=\"response_format\"\r\n\r\n\
verbose_json\r\n--7c3e6f0a\r\ncontent-disposition: form-data; name=\"file\"; \
filename=\"speech.mp3\"\r\ncontent-type: audio/mpeg\r\n\r\nID3\x03\x00\r\n--7c3e6f0a--";
        let content_type = "multipart/form-data; boundary=7c3e6f0a";
        let parts = parse(body, boundary(content_type).expect("boundary")).expect("parses");
        let names: Vec<&str> = parts.iter().map(|part| part.name).collect();
        assert_eq!(names, ["model", "response_format", "file"]);
        assert_eq!(parts[2].filename, Some("speech.mp3"));
        assert_eq!(parts[2].content_type, Some("audio/mpeg"));
        assert_eq!(parts[2].data, b"ID3\x03\x00");
    }

    #[test]
    fn boundary_is_extracted_quoted_or_not() {
        assert_eq!(boundary("multipart/form-data; boundary=abc"), Some("abc"));
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b:c\""),
            Some("a b:c")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;BOUNDARY=abc ; charset=utf-8"),
            Some("abc")
        );
        assert_eq!(
            boundary("multipart/form-data; charset=utf-8; Boundary=x"),
            Some("x")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
        assert_eq!(boundary("multipart/form-data; boundary=\"abc"), None);
        assert_eq!(boundary("multipart/form-data; boundary=\"\""), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
        assert_eq!(boundary("application/json; boundary=abc"), None);
        assert_eq!(boundary(""), None);
        assert_eq!(boundary("multipart/ü; boundary=é"), Some("é"));
    }

    #[test]
    fn quoted_boundary_parses_the_body() {
        let content_type = "multipart/form-data; boundary=\"simple boundary\"";
        let body = b"preamble to ignore\r\n--simple boundary \t\r\n\
Content-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--simple boundary--\r\nepilogue";
        let parts = parse(body, boundary(content_type).expect("boundary")).expect("parses");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].data, b"abc");
    }

    #[test]
    fn broken_framing_is_an_error() {
        let (body, boundary) = curl_body();
        let no_end = &body[..body.len() - 48];
        assert_eq!(
            parse(no_end, boundary),
            Err(MultipartError("multipart body has no closing boundary"))
        );
        assert_eq!(
            parse(b"no boundary here", boundary),
            Err(MultipartError("multipart body has no opening boundary"))
        );
        assert!(parse(
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--bz",
            "b"
        )
        .is_err());
        assert!(parse(b"--bxyz\r\n", "b").is_err());
        assert!(parse(b"--b\r\n\r\nno headers\r\n--b--", "b").is_err());
        assert!(parse(
            b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--b--",
            "b"
        )
        .is_err());
        assert!(parse(
            b"--b\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--b--",
            "b"
        )
        .is_err());
        assert!(parse(
            b"--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b--",
            "b"
        )
        .is_err());
        assert!(parse(
            b"--b\r\nContent-Disposition: form-data; name=\"\xff\"\r\n\r\nx\r\n--b--",
            "b"
        )
        .is_err());
        assert!(parse(b"--b--", "").is_err());
        // Only a closing delimiter: a valid, empty form.
        assert_eq!(parse(b"--b--\r\n", "b"), Ok(Vec::new()));
    }

    fn form(parts: usize, header_padding: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for index in 0..parts {
            body.extend_from_slice(b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n");
            body.extend_from_slice(format!("X-Pad: {}\r\n", "p".repeat(header_padding)).as_bytes());
            body.extend_from_slice(format!("\r\n{index}\r\n").as_bytes());
        }
        body.extend_from_slice(b"--b--\r\n");
        body
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(
            parse(&form(PARTS_MAX, 1), "b").map(|parts| parts.len()),
            Ok(PARTS_MAX)
        );
        assert_eq!(
            parse(&form(PARTS_MAX + 1, 1), "b"),
            Err(MultipartError("too many multipart parts"))
        );
        assert!(parse(&form(1, PART_HEADER_BYTES_MAX - 100), "b").is_ok());
        assert_eq!(
            parse(&form(1, PART_HEADER_BYTES_MAX), "b"),
            Err(MultipartError("multipart part headers are too large"))
        );
        let mut many_headers = b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n".to_vec();
        many_headers.extend_from_slice(&b"X: y\r\n".repeat(PART_HEADERS_MAX));
        many_headers.extend_from_slice(b"\r\nx\r\n--b--");
        assert_eq!(
            parse(&many_headers, "b"),
            Err(MultipartError("too many multipart part headers"))
        );
    }

    #[test]
    fn disposition_parameters() {
        assert_eq!(parse_disposition("form-data; name=a"), Ok(("a", None)));
        assert_eq!(
            parse_disposition("form-data;name=\"a;b\";  filename=\"x \\\"y\\\".wav\";"),
            Ok(("a;b", Some("x \\\"y\\\".wav")))
        );
        assert_eq!(parse_disposition("FORM-DATA; NAME=\"\""), Ok(("", None)));
        assert!(parse_disposition("form-data; name=\"a\"junk").is_err());
        assert!(parse_disposition("form-data; name").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn arbitrary_bytes_never_panic(
            body in prop::collection::vec(any::<u8>(), 0..512),
            boundary in "[a-z-]{0,8}",
        ) {
            let _ = parse(&body, &boundary);
        }

        #[test]
        fn arbitrary_bytes_in_framing_never_panic(
            pieces in prop::collection::vec(
                prop_oneof![
                    Just(b"--b".to_vec()),
                    Just(b"\r\n".to_vec()),
                    Just(b"--".to_vec()),
                    Just(b"Content-Disposition: form-data; name=\"".to_vec()),
                    Just(b"\"; filename=".to_vec()),
                    Just(b"Content-Type: ".to_vec()),
                    prop::collection::vec(any::<u8>(), 0..8),
                ],
                0..40,
            ),
        ) {
            let body = pieces.concat();
            if let Ok(parts) = parse(&body, "b") {
                prop_assert!(parts.len() <= PARTS_MAX);
                for part in parts {
                    prop_assert!(part.data.len() <= body.len());
                }
            }
        }

        #[test]
        fn any_content_type_never_panics(content_type in ".{0,64}") {
            if let Some(found) = boundary(&content_type) {
                prop_assert!(!found.is_empty() && found.len() <= 70);
            }
        }

        #[test]
        fn data_round_trips(data in prop::collection::vec(any::<u8>(), 0..256)) {
            // Data that does not contain the delimiter comes back unchanged.
            let delimiter = b"\r\n--0123456789abcdef";
            prop_assume!(!data.windows(delimiter.len()).any(|window| window == delimiter));
            let mut body = b"--0123456789abcdef\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n".to_vec();
            body.extend_from_slice(&data);
            body.extend_from_slice(b"\r\n--0123456789abcdef--");
            let parts = parse(&body, "0123456789abcdef");
            prop_assert_eq!(parts.map(|parts| parts[0].data.to_vec()), Ok(data));
        }
    }
}
