//! LIBSVM / svmlight text format: one sample per line,
//!
//! ```text
//! <label> [qid:<n>] <index>:<value> <index>:<value> ... [# comment]
//! ```
//!
//! What the reader accepts (the quirks of the shipped files included):
//! - plain text, gzip or bzip2 (detected by magic bytes, see [`read_file`](super::read_file()));
//! - `\n` or `\r\n` line ends; empty lines and `#` comments are skipped;
//! - labels as integers or floats (`+1`, `-1`, `1.0`, `7`); multi-label `1,2` is rejected;
//! - a `qid:` token after the label is accepted and ignored;
//! - rows with a label and no features (an all-zero row);
//! - values in any form Rust's `f64` parser reads (`9.86899159742946E-02`); explicit zeros
//!   (`13:0.0`) are kept as stored entries;
//! - indices strictly increasing within a line; zero- or one-based ([`IndexBase::Auto`] picks
//!   zero-based iff some index is 0, as scikit-learn's `load_svmlight_file` does);
//! - a forced feature count ([`LibsvmOptions::n_features`]) for a test file whose highest index is
//!   below the training file's (a9a.t stops at 122 of 123).

use std::fmt::Write as _;
use std::path::Path;

use super::{CsrMatrix, Dataset, Design, data_error, read_file};
use crate::core::error::Result;

/// How indices are numbered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexBase {
    /// Zero-based iff some index is 0; one-based otherwise.
    #[default]
    Auto,
    /// Indices start at 0.
    Zero,
    /// Indices start at 1 (the LIBSVM convention).
    One,
}

/// Options of the LIBSVM reader.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LibsvmOptions {
    /// Force the number of features (an index at or above it is an error). `None`: the highest
    /// index present (+1 when zero-based).
    pub n_features: Option<usize>,
    /// Index numbering.
    pub index_base: IndexBase,
}

/// Reads a LIBSVM file (plain, gzip or bzip2) into a sparse dataset.
pub fn load(path: &Path, options: &LibsvmOptions) -> Result<Dataset> {
    let bytes = read_file(path)?;
    parse(&bytes, &path.display().to_string(), options)
}

fn utf8<'a>(token: &'a [u8], name: &str, line: usize, what: &str) -> Result<&'a str> {
    std::str::from_utf8(token)
        .map_err(|_| data_error(name, format!("line {line}"), format!("{what} is not UTF-8")))
}

/// Parses LIBSVM text; `name` labels errors.
pub fn parse(bytes: &[u8], name: &str, options: &LibsvmOptions) -> Result<Dataset> {
    let mut labels = Vec::new();
    let mut indptr = vec![0usize];
    let mut raw_indices: Vec<u64> = Vec::new();
    let mut values = Vec::new();
    let mut min_index = u64::MAX;
    let mut max_index = 0u64;
    for (line_no, mut line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = line_no + 1;
        if let Some(hash) = line.iter().position(|&b| b == b'#') {
            line = &line[..hash];
        }
        let mut tokens = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|t| !t.is_empty());
        let Some(label_token) = tokens.next() else {
            continue;
        };
        let label_text = utf8(label_token, name, line_no, "the label")?;
        if label_text.contains(',') {
            return Err(data_error(
                name,
                format!("line {line_no}"),
                format!("multi-label `{label_text}` is not supported"),
            ));
        }
        let label: f64 = label_text.parse().map_err(|_| {
            data_error(
                name,
                format!("line {line_no}"),
                format!("cannot parse label `{label_text}` as a number"),
            )
        })?;
        if !label.is_finite() {
            return Err(data_error(
                name,
                format!("line {line_no}"),
                format!("label `{label_text}` is not finite"),
            ));
        }
        let mut previous: Option<u64> = None;
        for token in tokens {
            let text = utf8(token, name, line_no, "a feature")?;
            let Some((idx_text, val_text)) = text.split_once(':') else {
                return Err(data_error(
                    name,
                    format!("line {line_no}"),
                    format!("feature `{text}` is not of the form index:value"),
                ));
            };
            if idx_text == "qid" {
                if previous.is_some() {
                    return Err(data_error(
                        name,
                        format!("line {line_no}"),
                        "`qid:` must come before the features",
                    ));
                }
                continue;
            }
            let index: u64 = idx_text.parse().map_err(|_| {
                data_error(
                    name,
                    format!("line {line_no}"),
                    format!("feature index `{idx_text}` is not a non-negative integer"),
                )
            })?;
            if index >= u64::from(u32::MAX) {
                return Err(data_error(
                    name,
                    format!("line {line_no}"),
                    format!(
                        "feature index {index} is too large (limit {})",
                        u32::MAX - 1
                    ),
                ));
            }
            let value: f64 = val_text.parse().map_err(|_| {
                data_error(
                    name,
                    format!("line {line_no}"),
                    format!("value `{val_text}` of feature {index} is not a number"),
                )
            })?;
            if !value.is_finite() {
                return Err(data_error(
                    name,
                    format!("line {line_no}"),
                    format!("value `{val_text}` of feature {index} is not finite"),
                ));
            }
            if let Some(p) = previous
                && index <= p
            {
                return Err(data_error(
                    name,
                    format!("line {line_no}"),
                    format!("feature indices not strictly increasing ({index} after {p})"),
                ));
            }
            previous = Some(index);
            min_index = min_index.min(index);
            max_index = max_index.max(index);
            raw_indices.push(index);
            values.push(value);
        }
        labels.push(label);
        indptr.push(raw_indices.len());
    }
    let any = !raw_indices.is_empty();
    let zero_based = match options.index_base {
        IndexBase::Zero => true,
        IndexBase::One => false,
        IndexBase::Auto => any && min_index == 0,
    };
    if !zero_based && any && min_index == 0 {
        return Err(data_error(
            name,
            format!("line {}", line_of_index(bytes, 0)),
            "feature index 0 in a one-based file",
        ));
    }
    let shift = u64::from(!zero_based);
    let present = if any {
        (max_index - shift + 1) as usize
    } else {
        0
    };
    let cols = match options.n_features {
        Some(n) if n < present => {
            return Err(data_error(
                name,
                format!("line {}", line_of_index(bytes, max_index)),
                format!("feature index {max_index} is out of range for the requested {n} features"),
            ));
        }
        Some(n) => n,
        None => present,
    };
    let indices: Vec<u32> = raw_indices.iter().map(|&i| (i - shift) as u32).collect();
    let rows = labels.len();
    let csr = CsrMatrix {
        rows,
        cols,
        indptr,
        indices,
        values,
    };
    Ok(Dataset {
        design: Design::Sparse(csr),
        labels,
    })
}

/// The first line holding feature index `index` (error reporting only).
fn line_of_index(bytes: &[u8], index: u64) -> usize {
    let needle = format!("{index}:");
    for (no, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let text = String::from_utf8_lossy(line);
        let body = text.split('#').next().unwrap_or("");
        if body
            .split_ascii_whitespace()
            .skip(1)
            .any(|t| t.starts_with(&needle))
        {
            return no + 1;
        }
    }
    1
}

/// Writes a dataset as LIBSVM text (one-based indices unless `zero_based`; zero values of dense
/// designs omitted, stored entries of sparse designs kept). Floats are written in Rust's
/// shortest round-trip form, so [`parse`] reads back the same bits.
pub fn to_string(dataset: &Dataset, zero_based: bool) -> String {
    let mut out = String::new();
    let shift = usize::from(!zero_based);
    for i in 0..dataset.len() {
        let _ = write!(out, "{}", dataset.labels[i]);
        match &dataset.design {
            Design::Dense(m) => {
                for (j, &v) in m.row(i).iter().enumerate() {
                    if v != 0.0 {
                        let _ = write!(out, " {}:{}", j + shift, v);
                    }
                }
            }
            Design::Sparse(m) => {
                let (idx, val) = m.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    let _ = write!(out, " {}:{}", j as usize + shift, v);
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Writes a dataset to a LIBSVM file (gzip-compressed when `gzip`).
pub fn save(dataset: &Dataset, path: &Path, gzip: bool) -> Result<()> {
    super::write_file(path, to_string(dataset, false).as_bytes(), gzip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Error;

    fn parse_str(text: &str) -> Result<Dataset> {
        parse(text.as_bytes(), "t.svm", &LibsvmOptions::default())
    }

    fn location(e: Error) -> (String, String) {
        match e {
            Error::Data {
                location, reason, ..
            } => (location, reason),
            other => panic!("expected a data error, got {other}"),
        }
    }

    #[test]
    fn reads_the_quirks() {
        let ds = parse_str(
            "+1 1:0.5 3:-2 \n-1 \n\n1.0 2:9.86899159742946E-02 3:0.0 # comment\r\n7 qid:3 1:1\n",
        )
        .unwrap();
        assert_eq!(ds.labels, vec![1.0, -1.0, 1.0, 7.0]);
        assert_eq!(ds.n_features(), 3);
        assert_eq!(ds.design.nnz(), 5);
        assert_eq!(ds.design.dense_row(0), vec![0.5, 0.0, -2.0]);
        assert_eq!(ds.design.dense_row(1), vec![0.0; 3]);
        assert_eq!(ds.design.dense_row(2), vec![0.0, 9.86899159742946E-02, 0.0]);
    }

    #[test]
    fn detects_zero_based_indices_and_forces_feature_counts() {
        let ds = parse_str("1 0:1 4:2\n").unwrap();
        assert_eq!(ds.n_features(), 5);
        assert_eq!(ds.design.dense_row(0), vec![1.0, 0.0, 0.0, 0.0, 2.0]);
        let opts = LibsvmOptions {
            n_features: Some(10),
            ..Default::default()
        };
        let ds = parse(b"1 3:1\n", "t", &opts).unwrap();
        assert_eq!(ds.n_features(), 10);
        let opts = LibsvmOptions {
            n_features: Some(2),
            ..Default::default()
        };
        let (loc, reason) = location(parse(b"1 1:1\n-1 3:1\n", "t", &opts).unwrap_err());
        assert_eq!(loc, "line 2");
        assert!(reason.contains("out of range"), "{reason}");
        let opts = LibsvmOptions {
            index_base: IndexBase::One,
            ..Default::default()
        };
        let (_, reason) = location(parse(b"1 0:1\n", "t", &opts).unwrap_err());
        assert!(reason.contains("index 0"), "{reason}");
    }

    #[test]
    fn every_malformed_line_names_its_line_and_reason() {
        let cases = [
            ("1 1:1\nabc 1:1\n", "line 2", "cannot parse label"),
            ("1 1:1\n1 1:x\n", "line 2", "not a number"),
            ("1 1:1 2\n", "line 1", "index:value"),
            ("1 3:1 2:1\n", "line 1", "strictly increasing"),
            ("1 2:1 2:1\n", "line 1", "strictly increasing"),
            ("1 -1:1\n", "line 1", "non-negative integer"),
            ("1,2 1:1\n", "line 1", "multi-label"),
            ("nan 1:1\n", "line 1", "not finite"),
            ("1 1:inf\n", "line 1", "not finite"),
            ("1 99999999999:1\n", "line 1", "too large"),
            ("1 1:1 qid:2\n", "line 1", "qid"),
            ("1 1:1\n1 \u{ff}:1\n", "line 2", "not a non-negative"),
        ];
        for (text, want_loc, want_reason) in cases {
            let (loc, reason) = location(parse_str(text).unwrap_err());
            assert_eq!(loc, want_loc, "{text:?}");
            assert!(reason.contains(want_reason), "{text:?}: {reason}");
        }
        let (loc, reason) = location(parse(b"1 \xff:1\n", "t", &Default::default()).unwrap_err());
        assert_eq!(loc, "line 1");
        assert!(reason.contains("UTF-8"), "{reason}");
    }

    #[test]
    fn round_trips_through_text() {
        let ds = parse_str("1 1:0.1 4:-3.25e-7\n-1 \n1 2:1\n").unwrap();
        let text = to_string(&ds, false);
        let back = parse_str(&text).unwrap();
        assert_eq!(back, ds);
    }
}
