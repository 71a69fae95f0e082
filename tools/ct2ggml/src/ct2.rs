//! The CTranslate2 `model.bin` parser. It receives the whole file as bytes
//! and hands on a [`Model`]: the variables by name, each borrowing its data
//! from those bytes (nothing is copied), plus the aliases.
//!
//! Layout (version ≥ 5, little-endian): `u32 version`, `string spec`,
//! `u32 revision`, `u32 n_vars`, then per variable `string name`, `u8 rank`,
//! `rank × u32 dims`, `u8 dtype`, `u32 n_bytes`, the bytes; then optionally
//! `u32 n_aliases` and pairs `string alias, string target`. A string is a
//! `u16` length and that many bytes, usually ending in a NUL.
//!
//! Every length is checked against [`crate::limits`] and against the bytes
//! left before it is used, so a truncated or corrupt file is an error and
//! never a panic or a huge allocation.

use crate::error::Error;
use crate::limits;

/// The element type of a variable, as CTranslate2 numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
    /// A number this parser does not know; its bytes are kept but cannot be
    /// converted.
    Unknown(u8),
}

impl Dtype {
    fn from_code(code: u8) -> Dtype {
        match code {
            0 => Dtype::F32,
            1 => Dtype::I8,
            2 => Dtype::I16,
            3 => Dtype::I32,
            4 => Dtype::F16,
            5 => Dtype::Bf16,
            other => Dtype::Unknown(other),
        }
    }

    /// Bytes per element, when known.
    pub fn size_bytes(self) -> Option<usize> {
        match self {
            Dtype::I8 => Some(1),
            Dtype::I16 | Dtype::F16 | Dtype::Bf16 => Some(2),
            Dtype::F32 | Dtype::I32 => Some(4),
            Dtype::Unknown(_) => None,
        }
    }
}

/// One variable of `model.bin`.
#[derive(Debug, Clone)]
pub struct Variable<'a> {
    pub name: String,
    /// Shape in CTranslate2 (row-major, PyTorch) order; empty for a scalar.
    pub dims: Vec<usize>,
    pub dtype: Dtype,
    /// The raw little-endian data, `elements × dtype size` bytes for known
    /// element types.
    pub bytes: &'a [u8],
}

impl Variable<'_> {
    /// Number of elements (1 for a scalar).
    pub fn elements(&self) -> usize {
        // Cannot overflow: checked when parsed.
        self.dims.iter().product()
    }

    /// The value of an integer scalar such as `encoder/num_heads`.
    pub fn as_integer(&self) -> Option<i64> {
        if self.elements() != 1 {
            return None;
        }
        match self.dtype {
            Dtype::I8 => Some(i64::from(i8::from_le_bytes(self.bytes.try_into().ok()?))),
            Dtype::I16 => Some(i64::from(i16::from_le_bytes(self.bytes.try_into().ok()?))),
            Dtype::I32 => Some(i64::from(i32::from_le_bytes(self.bytes.try_into().ok()?))),
            _ => None,
        }
    }
}

/// A parsed `model.bin`.
#[derive(Debug)]
pub struct Model<'a> {
    pub version: u32,
    pub spec: String,
    pub revision: u32,
    pub variables: Vec<Variable<'a>>,
    /// `(alias, target)` pairs, in file order.
    pub aliases: Vec<(String, String)>,
}

impl<'a> Model<'a> {
    /// Parses a whole `model.bin`.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a truncated or corrupt file,
    /// [`Error::Unsupported`] for a format version or spec this converter
    /// does not read.
    pub fn parse(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let mut cursor = Cursor { bytes, offset: 0 };
        let version = cursor.u32("format version")?;
        if !(limits::VERSION_MIN..=limits::VERSION_MAX).contains(&version) {
            return Err(Error::Unsupported(format!(
                "model.bin format version {version}; this converter reads versions {} to {}",
                limits::VERSION_MIN,
                limits::VERSION_MAX
            )));
        }
        let spec = cursor.string("spec name")?;
        if spec != "WhisperSpec" {
            return Err(Error::Unsupported(format!(
                "spec {spec:?}; only WhisperSpec models convert to whisper.cpp"
            )));
        }
        let revision = cursor.u32("spec revision")?;
        let variables_count = cursor.count("variable count", limits::VARIABLES_MAX)?;
        // A variable takes at least 8 bytes (name length, rank, dtype, size),
        // so the count cannot claim more than the bytes left allow.
        let mut variables = Vec::with_capacity(variables_count.min(cursor.remaining() / 8));
        for _ in 0..variables_count {
            variables.push(cursor.variable()?);
        }
        let mut aliases = Vec::new();
        if cursor.remaining() > 0 {
            let aliases_count = cursor.count("alias count", limits::ALIASES_MAX)?;
            aliases.reserve(aliases_count.min(cursor.remaining() / 4));
            for _ in 0..aliases_count {
                let alias = cursor.string("alias name")?;
                let target = cursor.string("alias target")?;
                aliases.push((alias, target));
            }
        }
        if cursor.remaining() > 0 {
            return Err(cursor.malformed(format!(
                "{} unexpected bytes after the aliases",
                cursor.remaining()
            )));
        }
        Ok(Model {
            version,
            spec,
            revision,
            variables,
            aliases,
        })
    }

    /// The variable called `name`, following one alias if `name` is one.
    pub fn get(&self, name: &str) -> Option<&Variable<'a>> {
        let find = |wanted: &str| {
            self.variables
                .iter()
                .find(|variable| variable.name == wanted)
        };
        find(name).or_else(|| {
            let (_, target) = self.aliases.iter().find(|(alias, _)| alias == name)?;
            find(target)
        })
    }
}

/// A read position in `model.bin`; every read checks the bytes left.
struct Cursor<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    fn malformed(&self, what: String) -> Error {
        Error::Malformed {
            offset: self.offset,
            what,
        }
    }

    fn take(&mut self, length: usize, what: &str) -> Result<&'a [u8], Error> {
        if length > self.remaining() {
            return Err(self.malformed(format!(
                "{what} needs {length} bytes, only {} left (truncated file?)",
                self.remaining()
            )));
        }
        let taken = &self.bytes[self.offset..self.offset + length];
        self.offset += length;
        Ok(taken)
    }

    fn u8(&mut self, what: &str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, Error> {
        let bytes = self.take(2, what)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, Error> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A `u32` count, checked against `limit`.
    fn count(&mut self, what: &str, limit: u32) -> Result<usize, Error> {
        let count = self.u32(what)?;
        if count > limit {
            return Err(Error::Malformed {
                offset: self.offset - 4,
                what: format!("{what} {count} is above the limit of {limit}"),
            });
        }
        Ok(count as usize)
    }

    /// A `u16`-length string; one trailing NUL is dropped.
    fn string(&mut self, what: &str) -> Result<String, Error> {
        let length = usize::from(self.u16(what)?);
        let start = self.offset;
        let bytes = self.take(length, what)?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::Malformed {
            offset: start,
            what: format!("{what} is not UTF-8"),
        })
    }

    fn variable(&mut self) -> Result<Variable<'a>, Error> {
        let name = self.string("variable name")?;
        let rank = self.u8("rank")?;
        if rank > limits::RANK_MAX {
            return Err(self.malformed(format!(
                "variable {name:?} has rank {rank}, above the limit of {}",
                limits::RANK_MAX
            )));
        }
        let mut dims = Vec::with_capacity(usize::from(rank));
        let mut elements: usize = 1;
        for _ in 0..rank {
            let dim = self.u32("dimension")? as usize;
            elements = elements.checked_mul(dim).ok_or_else(|| {
                self.malformed(format!("variable {name:?}: element count overflows"))
            })?;
            dims.push(dim);
        }
        let dtype = Dtype::from_code(self.u8("dtype")?);
        let size_bytes = self.u32("data size")? as usize;
        if let Some(element_bytes) = dtype.size_bytes() {
            let expected = elements.checked_mul(element_bytes);
            if expected != Some(size_bytes) {
                return Err(self.malformed(format!(
                    "variable {name:?} of shape {dims:?} and type {dtype:?} declares {size_bytes} bytes"
                )));
            }
        }
        let bytes = self.take(size_bytes, &format!("data of {name:?}"))?;
        Ok(Variable {
            name,
            dims,
            dtype,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{self, push_string, ModelBuilder};

    fn header(variables: u32) -> Vec<u8> {
        let mut out = 6u32.to_le_bytes().to_vec();
        push_string(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&variables.to_le_bytes());
        out
    }

    fn malformed(bytes: &[u8]) -> String {
        match Model::parse(bytes) {
            Err(Error::Malformed { what, .. }) => what,
            other => panic!("expected a malformed-input error, got {other:?}"),
        }
    }

    #[test]
    fn parses_variables_scalars_and_aliases() {
        let builder = synthetic::whisper();
        let bytes = builder.bytes();
        let model = Model::parse(&bytes).expect("valid model");
        assert_eq!(
            (model.version, model.spec.as_str(), model.revision),
            (6, "WhisperSpec", 3)
        );
        assert_eq!(model.variables.len(), builder.variables.len());
        assert_eq!(model.aliases.len(), 2);
        let heads = model.get("encoder/num_heads").expect("scalar");
        assert_eq!(
            (heads.dims.len(), heads.dtype, heads.as_integer()),
            (0, Dtype::I16, Some(2))
        );
        let qkv = model
            .get("encoder/layer_0/self_attention/linear_0/weight")
            .expect("qkv");
        assert_eq!(
            (qkv.dims.as_slice(), qkv.dtype, qkv.bytes.len()),
            (&[12, 4][..], Dtype::F32, 12 * 4 * 4)
        );
        let projection = model.get("decoder/projection/weight").expect("alias");
        assert_eq!(projection.name, "decoder/embeddings/weight");
        assert!(model.get("decoder/nothing").is_none());
    }

    #[test]
    fn strings_without_a_nul_parse_too() {
        let mut bytes = header(1);
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.push(b'x');
        bytes.extend_from_slice(&[0, 1, 1, 0, 0, 0, 7]); // rank 0, i8, 1 byte: 7
        let model = Model::parse(&bytes).expect("valid");
        assert_eq!(model.variables[0].name, "x");
        assert_eq!(model.variables[0].as_integer(), Some(7));
    }

    #[test]
    fn absurd_counts_fail_before_allocating() {
        assert!(malformed(&header(u32::MAX)).contains("above the limit"));
        assert!(malformed(&header(limits::VARIABLES_MAX)).contains("truncated"));
        let mut aliases = header(0);
        aliases.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(malformed(&aliases).contains("above the limit"));
        let mut aliases = header(0);
        aliases.extend_from_slice(&limits::ALIASES_MAX.to_le_bytes());
        assert!(malformed(&aliases).contains("truncated"));
    }

    #[test]
    fn absurd_shapes_and_sizes_are_errors() {
        let mut model = ModelBuilder::new();
        model.raw("huge", &[u32::MAX, u32::MAX, u32::MAX], 0, Vec::new());
        assert!(malformed(&model.bytes()).contains("overflows"));

        let mut model = ModelBuilder::new();
        model.raw("wrong size", &[u32::MAX], 0, vec![0; 16]);
        assert!(malformed(&model.bytes()).contains("declares 16 bytes"));

        let mut model = ModelBuilder::new();
        model.raw("rank", &[1; 9], 0, vec![0; 4]);
        assert!(malformed(&model.bytes()).contains("rank 9"));

        // An unknown type's size cannot be checked, but its bytes must exist.
        let mut bytes = header(1);
        push_string(&mut bytes, "unknown");
        bytes.extend_from_slice(&[1, 4, 0, 0, 0, 77]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(malformed(&bytes).contains("truncated"));
    }

    #[test]
    fn foreign_files_are_errors() {
        let mut model = ModelBuilder::new();
        model.version = 4;
        assert!(matches!(
            Model::parse(&model.bytes()),
            Err(Error::Unsupported(_))
        ));
        let mut model = ModelBuilder::new();
        model.spec = "TransformerSpec".to_string();
        assert!(matches!(
            Model::parse(&model.bytes()),
            Err(Error::Unsupported(_))
        ));

        let mut trailing = ModelBuilder::new().bytes();
        trailing.extend_from_slice(&[0, 0, 0, 0, 1]);
        assert!(malformed(&trailing).contains("unexpected bytes"));

        let mut bytes = header(1);
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&[0xff, 0xfe]);
        assert!(malformed(&bytes).contains("UTF-8"));
    }
}
