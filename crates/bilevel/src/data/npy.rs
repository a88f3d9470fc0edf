//! NumPy `.npy` arrays (format versions 1.0, 2.0 and 3.0).
//!
//! Layout: the magic `\x93NUMPY`, the version (major, minor), the header length (`u16` LE in
//! version 1, `u32` LE in 2 and 3), then an ASCII (UTF-8 in 3) Python dict literal such as
//! `{'descr': '<f8', 'fortran_order': False, 'shape': (100, 784), }`, then the raw data.
//!
//! Supported dtypes, little-endian: `<f8` (f64), `<f4` (f32), `|u1` (u8), `<i4`, `<i8`; the
//! byte-order character may be `<`, `|` or `=` (native, little-endian here). C order only:
//! Fortran-order arrays and big-endian or other dtypes (`>f8`, `<c16`, `O`, structured) are
//! rejected with a message that says what to do. Shapes: `()` (one value), `(n,)`, `(n, m, …)`
//! (trailing dimensions are flattened into features by [`load`]). The data must be complete
//! and nothing may follow it.

use std::path::Path;

use super::{Dataset, DenseMatrix, Design, data_error, read_file};
use crate::core::error::Result;

/// A decoded `.npy` array.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements as `f64`, C order.
    pub data: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
enum PyValue {
    Str(String),
    Bool(bool),
    Tuple(Vec<PyValue>),
    Int(u64),
}

/// A tiny parser for the header dict literal.
struct HeaderParser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl HeaderParser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.get(self.pos).copied()
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected `{}` at header position {}",
                c as char, self.pos
            ))
        }
    }
    fn value(&mut self) -> std::result::Result<PyValue, String> {
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                self.pos += 1;
                let start = self.pos;
                while self.pos < self.text.len() && self.text[self.pos] != q {
                    self.pos += 1;
                }
                if self.pos >= self.text.len() {
                    return Err("unterminated string in the header".into());
                }
                let s = String::from_utf8_lossy(&self.text[start..self.pos]).into_owned();
                self.pos += 1;
                Ok(PyValue::Str(s))
            }
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b')') {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b')') => {}
                        _ => return Err("malformed tuple in the header".into()),
                    }
                }
                Ok(PyValue::Tuple(items))
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.pos < self.text.len() && self.text[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                // Python 2 wrote shapes like `(3L, 4L)`.
                if self.text.get(self.pos) == Some(&b'L') {
                    self.pos += 1;
                }
                let digits = std::str::from_utf8(&self.text[start..self.pos])
                    .unwrap_or("")
                    .trim_end_matches('L');
                digits
                    .parse()
                    .map(PyValue::Int)
                    .map_err(|_| format!("integer `{digits}` out of range in the header"))
            }
            Some(_) => {
                let rest = &self.text[self.pos..];
                if rest.starts_with(b"True") {
                    self.pos += 4;
                    Ok(PyValue::Bool(true))
                } else if rest.starts_with(b"False") {
                    self.pos += 5;
                    Ok(PyValue::Bool(false))
                } else {
                    Err(format!("unexpected text at header position {}", self.pos))
                }
            }
            None => Err("the header ends early".into()),
        }
    }
    fn dict(&mut self) -> std::result::Result<Vec<(String, PyValue)>, String> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let PyValue::Str(key) = self.value()? else {
                return Err("header dict keys must be strings".into());
            };
            self.expect(b':')?;
            let value = self.value()?;
            entries.push((key, value));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err("malformed header dict".into()),
            }
        }
        Ok(entries)
    }
}

#[derive(Clone, Copy)]
enum Dtype {
    F8,
    F4,
    U1,
    I4,
    I8,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::U1 => 1,
            Dtype::F4 | Dtype::I4 => 4,
            Dtype::F8 | Dtype::I8 => 8,
        }
    }
}

/// Parses `.npy` bytes; `name` labels errors.
pub fn parse(bytes: &[u8], name: &str) -> Result<NpyArray> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err(data_error(
            name,
            "byte offset 0",
            "not a .npy file (missing the \\x93NUMPY magic or too short)",
        ));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(data_error(name, "byte offset 8", "truncated header length"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => {
            return Err(data_error(
                name,
                "byte offset 6",
                format!("unsupported .npy format version {v}.{}", bytes[7]),
            ));
        }
    };
    let data_start = start + header_len;
    if bytes.len() < data_start {
        return Err(data_error(
            name,
            format!("byte offset {}", bytes.len()),
            format!("truncated header: {header_len} header bytes announced"),
        ));
    }
    let header_err = |reason: String| data_error(name, format!("byte offset {start}"), reason);
    let mut parser = HeaderParser {
        text: &bytes[start..data_start],
        pos: 0,
    };
    let entries = parser.dict().map_err(header_err)?;
    let get = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(PyValue::Str(s)) => s.clone(),
        Some(_) => return Err(header_err("`descr` must be a dtype string".into())),
        None => return Err(header_err("the header has no `descr`".into())),
    };
    let dtype = match descr.as_str() {
        "<f8" | "=f8" => Dtype::F8,
        "<f4" | "=f4" => Dtype::F4,
        "|u1" | "<u1" | "=u1" | "u1" => Dtype::U1,
        "<i4" | "=i4" => Dtype::I4,
        "<i8" | "=i8" => Dtype::I8,
        other if other.starts_with('>') => {
            return Err(header_err(format!(
                "big-endian dtype '{other}' is not supported; convert with \
                 arr.astype(arr.dtype.newbyteorder('<'))"
            )));
        }
        other => {
            return Err(header_err(format!(
                "unsupported dtype '{other}' (supported: <f8, <f4, |u1, <i4, <i8)"
            )));
        }
    };
    match get("fortran_order") {
        Some(PyValue::Bool(false)) => {}
        Some(PyValue::Bool(true)) => {
            return Err(header_err(
                "Fortran-order arrays are not supported; save a C-order copy with \
                 np.save(path, np.ascontiguousarray(arr))"
                    .into(),
            ));
        }
        _ => return Err(header_err("`fortran_order` must be True or False".into())),
    }
    let shape: Vec<usize> = match get("shape") {
        Some(PyValue::Tuple(items)) => items
            .iter()
            .map(|v| match v {
                PyValue::Int(n) => usize::try_from(*n)
                    .map_err(|_| header_err(format!("dimension {n} is too large"))),
                _ => Err(header_err("`shape` must be a tuple of integers".into())),
            })
            .collect::<Result<_>>()?,
        _ => return Err(header_err("`shape` must be a tuple of integers".into())),
    };
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|c| c.checked_mul(dtype.size()).map(|b| (c, b)));
    let Some((count, data_bytes)) = count else {
        return Err(header_err(format!("shape {shape:?} overflows")));
    };
    let available = bytes.len() - data_start;
    if available < data_bytes {
        return Err(data_error(
            name,
            format!("byte offset {}", bytes.len()),
            format!(
                "truncated: shape {shape:?} of '{descr}' needs {data_bytes} data bytes, found \
                 {available}"
            ),
        ));
    }
    if available > data_bytes {
        return Err(data_error(
            name,
            format!("byte offset {}", data_start + data_bytes),
            format!("{} unexpected bytes after the data", available - data_bytes),
        ));
    }
    let raw = &bytes[data_start..];
    let data: Vec<f64> = match dtype {
        Dtype::U1 => raw.iter().map(|&b| f64::from(b)).collect(),
        Dtype::F4 => raw
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Dtype::I4 => raw
            .chunks_exact(4)
            .map(|c| f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Dtype::F8 => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        Dtype::I8 => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64)
            .collect(),
    };
    debug_assert_eq!(data.len(), count);
    // NaN or ±∞ in a float file would surface much later as a numerical failure far from its
    // cause (CSV and LIBSVM refuse them too).
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
        let width: usize = match dtype {
            Dtype::U1 => 1,
            Dtype::F4 | Dtype::I4 => 4,
            Dtype::F8 | Dtype::I8 => 8,
        };
        return Err(data_error(
            name,
            format!("byte offset {}", data_start + k * width),
            format!("element {k} is not finite ({})", data[k]),
        ));
    }
    Ok(NpyArray { shape, data })
}

/// Reads one `.npy` file (raw or compressed).
pub fn load_array(path: &Path) -> Result<NpyArray> {
    let bytes = read_file(path)?;
    parse(&bytes, &path.display().to_string())
}

/// Reads a features array (n × …, trailing dimensions flattened) and a labels array (n) into a
/// dense dataset.
pub fn load(features: &Path, labels: &Path) -> Result<Dataset> {
    let x = load_array(features)?;
    let y = load_array(labels)?;
    let (xn, yn) = (features.display().to_string(), labels.display().to_string());
    if x.shape.is_empty() {
        return Err(data_error(
            &xn,
            "header",
            "a features array needs at least 1 dimension",
        ));
    }
    if y.shape.len() != 1 {
        return Err(data_error(
            &yn,
            "header",
            format!("a labels array has shape (n,), found {:?}", y.shape),
        ));
    }
    if y.shape[0] != x.shape[0] {
        return Err(data_error(
            &yn,
            "header",
            format!("{} labels for {} rows in {xn}", y.shape[0], x.shape[0]),
        ));
    }
    let rows = x.shape[0];
    let cols: usize = x.shape[1..].iter().product();
    Dataset::new(Design::Dense(DenseMatrix::new(rows, cols, x.data)?), y.data)
}

/// Encodes an f64 array as `.npy` (version 1.0, `<f8`, C order).
pub fn encode_f64(shape: &[usize], data: &[f64]) -> Vec<u8> {
    let shape_text = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that the data starts at a multiple of 64 bytes; the header ends with '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a dataset as two `.npy` files: features (n × d, `<f8`) and labels (n, `<f8`).
pub fn save(dataset: &Dataset, features: &Path, labels: &Path) -> Result<()> {
    let dense = dataset.design.to_dense();
    super::write_file(
        features,
        &encode_f64(&[dense.rows(), dense.cols()], dense.values()),
        false,
    )?;
    super::write_file(
        labels,
        &encode_f64(&[dataset.len()], &dataset.labels),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Error;

    fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn refuses_non_finite_elements() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let r = reason(&encode_f64(&[3], &[1.0, bad, 2.0]));
            assert!(r.contains("element 1 is not finite"), "{r}");
        }
        let mut f32s = Vec::new();
        for v in [0.5f32, 1.0, f32::NAN] {
            f32s.extend_from_slice(&v.to_le_bytes());
        }
        let r = reason(&with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
            &f32s,
        ));
        assert!(r.contains("element 2 is not finite"), "{r}");
    }

    fn reason(bytes: &[u8]) -> String {
        match parse(bytes, "t.npy").unwrap_err() {
            Error::Data { reason, .. } => reason,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn reads_supported_dtypes() {
        let a = parse(&encode_f64(&[2, 2], &[1.0, 2.0, 3.0, -4.5]), "t").unwrap();
        assert_eq!(a.shape, vec![2, 2]);
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, -4.5]);
        let u8s = with_header(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }\n",
            &[0, 7, 255],
        );
        assert_eq!(parse(&u8s, "t").unwrap().data, vec![0.0, 7.0, 255.0]);
        let f4 = with_header(
            "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (1L, 1L)}",
            &0.5f32.to_le_bytes(),
        );
        assert_eq!(parse(&f4, "t").unwrap().data, vec![0.5]);
        let i8s = with_header(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
            &(-3i64).to_le_bytes(),
        );
        let s = parse(&i8s, "t").unwrap();
        assert_eq!((s.shape.len(), s.data), (0, vec![-3.0]));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        let h = |d: &str, f: &str, s: &str| {
            with_header(
                &format!("{{'descr': '{d}', 'fortran_order': {f}, 'shape': {s}, }}"),
                &[0; 8],
            )
        };
        assert!(reason(&h("<f8", "True", "(1,)")).contains("Fortran-order"));
        assert!(reason(&h(">f8", "False", "(1,)")).contains("big-endian"));
        assert!(reason(&h("<c16", "False", "(1,)")).contains("unsupported dtype '<c16'"));
        assert!(reason(&h("<f8", "False", "(2,)")).contains("truncated"));
        assert!(reason(&h("<f4", "False", "(1,)")).contains("unexpected bytes"));
        assert!(reason(&h("<f8", "Maybe", "(1,)")).contains("unexpected text"));
        assert!(reason(b"\x93NUMPX\x01\x00\x00\x00").contains("magic"));
        assert!(reason(b"\x93NUMPY\x09\x00\x00\x00").contains("version 9"));
        let mut short = encode_f64(&[1], &[1.0]);
        short[8] = 255;
        assert!(reason(&short).contains("truncated header"));
        assert!(reason(&with_header("{'descr': '<f8'", &[])).contains("malformed"));
        assert!(reason(&with_header("{'descr': ", &[])).contains("ends early"));
    }
}
