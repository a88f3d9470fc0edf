//! Delimited text (CSV): one sample per line, numeric fields, one of them the label.
//!
//! Options: the delimiter (`,` by default; any single ASCII byte, e.g. `;` or a tab), whether
//! the first line is a header to skip (the scikit-learn breast-cancer file's first line is a
//! metadata header), and the label column (0-based; negative counts from the end, −1 = last,
//! the default). Fields are trimmed of spaces and of one pair of surrounding double quotes; empty
//! lines are skipped; `\r\n` line ends are accepted. Every line must have the same number of
//! fields. Files may be raw or gzip/bzip2-compressed.

use std::fmt::Write as _;
use std::path::Path;

use super::{Dataset, DenseMatrix, Design, data_error, read_file};
use crate::core::error::Result;

/// Options of the CSV reader.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CsvOptions {
    /// Field separator.
    pub delimiter: u8,
    /// Skip the first non-empty line.
    pub header: bool,
    /// The label column, 0-based; negative counts from the end (−1 = last).
    pub label_column: i64,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            header: false,
            label_column: -1,
        }
    }
}

/// Reads a CSV file (raw or compressed) into a dense dataset.
pub fn load(path: &Path, options: &CsvOptions) -> Result<Dataset> {
    let bytes = read_file(path)?;
    parse(&bytes, &path.display().to_string(), options)
}

/// Parses CSV text; `name` labels errors.
pub fn parse(bytes: &[u8], name: &str, options: &CsvOptions) -> Result<Dataset> {
    if options.delimiter == b'"' || options.delimiter == b'\n' || options.delimiter == b'\r' {
        return Err(data_error(
            name,
            "options",
            "the delimiter cannot be a quote or a line end",
        ));
    }
    let mut fields_per_line: Option<usize> = None;
    let mut label_index = 0usize;
    let mut values = Vec::new();
    let mut labels = Vec::new();
    let mut header_pending = options.header;
    for (line_no, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = line_no + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        if header_pending {
            header_pending = false;
            continue;
        }
        let text = std::str::from_utf8(line)
            .map_err(|_| data_error(name, format!("line {line_no}"), "line is not UTF-8"))?;
        let fields: Vec<&str> = text.split(options.delimiter as char).collect();
        let n = fields.len();
        match fields_per_line {
            None => {
                if n < 2 {
                    return Err(data_error(
                        name,
                        format!("line {line_no}"),
                        format!(
                            "need a label and at least one feature, found {n} field (delimiter \
                             {:?})",
                            options.delimiter as char
                        ),
                    ));
                }
                let col = options.label_column;
                let resolved = if col < 0 { n as i64 + col } else { col };
                if resolved < 0 || resolved >= n as i64 {
                    return Err(data_error(
                        name,
                        format!("line {line_no}"),
                        format!("label column {col} is outside the {n} fields"),
                    ));
                }
                label_index = resolved as usize;
                fields_per_line = Some(n);
            }
            Some(expected) if expected != n => {
                return Err(data_error(
                    name,
                    format!("line {line_no}"),
                    format!("expected {expected} fields, found {n}"),
                ));
            }
            Some(_) => {}
        }
        for (k, field) in fields.iter().enumerate() {
            let trimmed = field.trim();
            let unquoted = trimmed
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(trimmed);
            let v: f64 = unquoted.parse().map_err(|_| {
                data_error(
                    name,
                    format!("line {line_no}"),
                    format!("field {} `{trimmed}` is not a number", k + 1),
                )
            })?;
            if !v.is_finite() {
                return Err(data_error(
                    name,
                    format!("line {line_no}"),
                    format!("field {} `{trimmed}` is not finite", k + 1),
                ));
            }
            if k == label_index {
                labels.push(v);
            } else {
                values.push(v);
            }
        }
    }
    let cols = fields_per_line.map_or(0, |n| n - 1);
    let design = DenseMatrix::new(labels.len(), cols, values)?;
    Dataset::new(Design::Dense(design), labels)
}

/// Writes a dataset as CSV text, the label last, no header.
pub fn to_string(dataset: &Dataset, delimiter: u8) -> String {
    let mut out = String::new();
    let d = delimiter as char;
    for i in 0..dataset.len() {
        for v in dataset.design.dense_row(i) {
            let _ = write!(out, "{v}{d}");
        }
        let _ = writeln!(out, "{}", dataset.labels[i]);
    }
    out
}

/// Writes a dataset to a CSV file (label last; gzip-compressed when `gzip`).
pub fn save(dataset: &Dataset, path: &Path, gzip: bool) -> Result<()> {
    super::write_file(path, to_string(dataset, b',').as_bytes(), gzip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Error;

    fn err(text: &str, options: &CsvOptions) -> (String, String) {
        match parse(text.as_bytes(), "t.csv", options).unwrap_err() {
            Error::Data {
                location, reason, ..
            } => (location, reason),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn reads_headers_label_columns_and_delimiters() {
        let opts = CsvOptions {
            header: true,
            ..Default::default()
        };
        let ds = parse(b"3,2,a,b\n1,2,0\r\n\n3,4,1\n", "t", &opts).unwrap();
        assert_eq!(ds.labels, vec![0.0, 1.0]);
        assert_eq!(ds.design.dense_row(1), vec![3.0, 4.0]);
        let opts = CsvOptions {
            delimiter: b';',
            label_column: 0,
            ..Default::default()
        };
        let ds = parse(b"5; 1.5;\"2\"\n", "t", &opts).unwrap();
        assert_eq!(ds.labels, vec![5.0]);
        assert_eq!(ds.design.dense_row(0), vec![1.5, 2.0]);
    }

    #[test]
    fn malformed_lines_are_named() {
        let d = CsvOptions::default();
        assert_eq!(
            err("1,2,3\n1,2\n", &d),
            ("line 2".into(), "expected 3 fields, found 2".into())
        );
        let (loc, reason) = err("1,2\n1,x\n", &d);
        assert_eq!(loc, "line 2");
        assert!(reason.contains("field 2 `x` is not a number"), "{reason}");
        assert!(err("1\n", &d).1.contains("at least one feature"));
        let opts = CsvOptions {
            label_column: 5,
            ..d
        };
        assert!(err("1,2\n", &opts).1.contains("label column 5"));
        assert!(err("1,NaN\n", &d).1.contains("not finite"));
        assert!(err("1,\u{0}\u{ff}\n", &d).1.contains("not a number"));
        match parse(b"1,\xff\n", "t", &d).unwrap_err() {
            Error::Data { reason, .. } => assert!(reason.contains("UTF-8")),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn round_trips() {
        let ds = parse(b"0.1,-2e-9,3\n4,5,6\n", "t", &CsvOptions::default()).unwrap();
        let back = parse(to_string(&ds, b',').as_bytes(), "t", &CsvOptions::default()).unwrap();
        assert_eq!(back, ds);
    }
}
