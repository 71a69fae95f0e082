//! TEMPORARY STUB: replaced by the real multipart parser.
#![allow(dead_code, unused_variables)]
pub struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub data: &'a [u8],
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartError(pub &'static str);
pub fn boundary(content_type: &str) -> Option<&str> {
    content_type.split("boundary=").nth(1)
}
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, MultipartError> {
    Err(MultipartError("stub"))
}
