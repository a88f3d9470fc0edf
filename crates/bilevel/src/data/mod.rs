//! Datasets: loaders for the formats bilevel experiments use, design matrices, splits,
//! preprocessing, label corruption and seeded synthetic twins of datasets that are not at hand.
//!
//! | module | format | what it reads |
//! |--------|--------|---------------|
//! | [`libsvm`] | LIBSVM / svmlight text | sparse rows `label idx:val …` (plain, `.gz`, `.bz2`) |
//! | [`idx`] | MNIST IDX | big-endian typed n-d arrays (images and labels, raw or `.gz`) |
//! | [`csv`] | delimited text | one sample per line, a configurable label column (raw or `.gz`) |
//! | [`npy`] | NumPy `.npy` | little-endian `f8`, `f4`, `u1`, `i4`, `i8`, C order |
//! | [`omniglot`] | PNG tree | `ROOT/<alphabet>/<character>/<image>.png`, one class per character |
//!
//! Compression is detected from the first bytes (gzip `1f 8b`, bzip2 `BZh`), not from the file
//! name. Every loader returns [`Error::Data`] with the file, the location (`line N` or
//! `byte offset N`) and the reason on malformed input; none panics (a proptest feeds arbitrary
//! bytes to each parser).
//!
//! A [`Dataset`] is a [`Design`] (dense row-major [`DenseMatrix`] or sparse [`CsrMatrix`] with
//! `u32` column indices) plus one label per row, kept as read (`f64`). [`Dataset::binary_labels`]
//! and [`Dataset::class_labels`] map them to ±1 or to classes `0..K`.
//!
//! [`split`] has seeded splits, standardisation fitted on the training rows only, and label
//! corruption; [`synthetic`] the twins (covtype, 20 Newsgroups, full MNIST); [`spec`] the
//! [`DatasetSpec`] of experiment files (`{ shared = "ijcnn1" }`, `{ path = "…", format = "…" }`,
//! `{ twin = "covtype" }`) and the registry of the shipped files.

pub mod csv;
pub mod idx;
pub mod libsvm;
pub mod npy;
pub mod omniglot;
pub mod spec;
pub mod split;
pub mod synthetic;

use std::io::Read;
use std::path::Path;

pub use spec::{DatasetSpec, Format, LoadedData, data_dir};

use crate::core::error::{Error, Result};

/// A dense row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseMatrix {
    rows: usize,
    cols: usize,
    values: Vec<f64>,
}

impl DenseMatrix {
    /// A `rows × cols` matrix from row-major values. Fails when the length is not `rows · cols`.
    pub fn new(rows: usize, cols: usize, values: Vec<f64>) -> Result<Self> {
        if rows.checked_mul(cols) != Some(values.len()) {
            return Err(Error::DimensionMismatch {
                what: format!("dense {rows} x {cols} matrix values"),
                expected: rows.saturating_mul(cols),
                found: values.len(),
            });
        }
        Ok(Self { rows, cols, values })
    }
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Row `i` as a slice.
    #[inline]
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.cols..(i + 1) * self.cols]
    }
    /// All values, row-major.
    pub fn values(&self) -> &[f64] {
        &self.values
    }
    /// All values, row-major, mutable.
    pub fn values_mut(&mut self) -> &mut [f64] {
        &mut self.values
    }
}

/// A compressed-sparse-row matrix with `u32` column indices (strictly increasing within a row;
/// explicit zeros from the file are kept).
#[derive(Clone, Debug, PartialEq)]
pub struct CsrMatrix {
    rows: usize,
    cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f64>,
}

impl CsrMatrix {
    /// A CSR matrix from its arrays. Checks `indptr` (length rows + 1, starts at 0, non-decreasing,
    /// ends at nnz), and that every row's indices are strictly increasing and below `cols`.
    pub fn new(
        rows: usize,
        cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        values: Vec<f64>,
    ) -> Result<Self> {
        let bad = |reason: String| Error::DimensionMismatch {
            what: format!("CSR matrix ({reason})"),
            expected: 0,
            found: 0,
        };
        if indptr.len() != rows + 1 || indptr[0] != 0 || indptr[rows] != indices.len() {
            return Err(bad("indptr must have rows + 1 entries from 0 to nnz".into()));
        }
        if indices.len() != values.len() {
            return Err(bad("indices and values differ in length".into()));
        }
        for r in 0..rows {
            let (a, b) = (indptr[r], indptr[r + 1]);
            if a > b || b > indices.len() {
                return Err(bad(format!("indptr decreases at row {r}")));
            }
            let row = &indices[a..b];
            if row.windows(2).any(|w| w[0] >= w[1]) {
                return Err(bad(format!("row {r} indices not strictly increasing")));
            }
            if row.last().is_some_and(|&c| c as usize >= cols) {
                return Err(bad(format!("row {r} has a column index >= {cols}")));
            }
        }
        Ok(Self {
            rows,
            cols,
            indptr,
            indices,
            values,
        })
    }
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }
    /// Row `i`: (column indices, values).
    #[inline]
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }
    /// Row pointers (length rows + 1).
    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }
    /// Column indices of all stored entries.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }
    /// Values of all stored entries.
    pub fn values(&self) -> &[f64] {
        &self.values
    }
    /// Values of all stored entries, mutable (the pattern stays fixed).
    pub fn values_mut(&mut self) -> &mut [f64] {
        &mut self.values
    }
    /// The arrays (row pointers, column indices, values), without a copy.
    pub fn into_parts(self) -> (Vec<usize>, Vec<u32>, Vec<f64>) {
        (self.indptr, self.indices, self.values)
    }
    /// The dense row-major equivalent.
    pub fn to_dense(&self) -> DenseMatrix {
        let mut values = vec![0.0; self.rows * self.cols];
        for i in 0..self.rows {
            let (idx, val) = self.row(i);
            let out = &mut values[i * self.cols..(i + 1) * self.cols];
            for (&j, &v) in idx.iter().zip(val) {
                out[j as usize] = v;
            }
        }
        DenseMatrix {
            rows: self.rows,
            cols: self.cols,
            values,
        }
    }
    /// The same rows with `cols` columns (≥ the current count): lines up a test file whose
    /// highest index is below the training file's.
    pub fn with_cols(mut self, cols: usize) -> Result<Self> {
        if cols < self.cols {
            return Err(Error::DimensionMismatch {
                what: "CSR widening (new column count below the current)".into(),
                expected: self.cols,
                found: cols,
            });
        }
        self.cols = cols;
        Ok(self)
    }
}

/// The design matrix of a dataset: dense or sparse.
#[derive(Clone, Debug, PartialEq)]
pub enum Design {
    /// Dense, row-major.
    Dense(DenseMatrix),
    /// Sparse CSR.
    Sparse(CsrMatrix),
}

impl Design {
    /// Number of rows (samples).
    pub fn rows(&self) -> usize {
        match self {
            Design::Dense(m) => m.rows(),
            Design::Sparse(m) => m.rows(),
        }
    }
    /// Number of columns (features).
    pub fn cols(&self) -> usize {
        match self {
            Design::Dense(m) => m.cols(),
            Design::Sparse(m) => m.cols(),
        }
    }
    /// Stored entries (rows · cols when dense).
    pub fn nnz(&self) -> usize {
        match self {
            Design::Dense(m) => m.values().len(),
            Design::Sparse(m) => m.nnz(),
        }
    }
    /// True for the sparse variant.
    pub fn is_sparse(&self) -> bool {
        matches!(self, Design::Sparse(_))
    }
    /// The dense equivalent (a copy when sparse).
    pub fn to_dense(&self) -> DenseMatrix {
        match self {
            Design::Dense(m) => m.clone(),
            Design::Sparse(m) => m.to_dense(),
        }
    }
    /// Converts to the dense variant in place.
    pub fn densify(&mut self) {
        if let Design::Sparse(m) = self {
            *self = Design::Dense(m.to_dense());
        }
    }
    /// Fraction of stored non-zero values among rows · cols.
    pub fn density(&self) -> f64 {
        let total = (self.rows() * self.cols()).max(1) as f64;
        match self {
            Design::Dense(m) => m.values.iter().filter(|&&v| v != 0.0).count() as f64 / total,
            Design::Sparse(m) => m.nnz() as f64 / total,
        }
    }
    /// Converts a dense design to CSR in place (zeros dropped).
    pub fn sparsify(&mut self) {
        if let Design::Dense(m) = self {
            let mut indptr = Vec::with_capacity(m.rows + 1);
            indptr.push(0);
            let mut indices = Vec::new();
            let mut values = Vec::new();
            for i in 0..m.rows {
                for (j, &v) in m.row(i).iter().enumerate() {
                    if v != 0.0 {
                        indices.push(j as u32);
                        values.push(v);
                    }
                }
                indptr.push(indices.len());
            }
            *self = Design::Sparse(CsrMatrix {
                rows: m.rows,
                cols: m.cols,
                indptr,
                indices,
                values,
            });
        }
    }
    /// Sets the column count (≥ the current). Dense designs are padded with zero columns.
    pub fn with_cols(self, cols: usize) -> Result<Self> {
        match self {
            Design::Sparse(m) => Ok(Design::Sparse(m.with_cols(cols)?)),
            Design::Dense(m) => {
                if cols < m.cols {
                    return Err(Error::DimensionMismatch {
                        what: "dense widening (new column count below the current)".into(),
                        expected: m.cols,
                        found: cols,
                    });
                }
                let mut values = vec![0.0; m.rows * cols];
                for i in 0..m.rows {
                    values[i * cols..i * cols + m.cols].copy_from_slice(m.row(i));
                }
                Ok(Design::Dense(DenseMatrix {
                    rows: m.rows,
                    cols,
                    values,
                }))
            }
        }
    }
    /// The rows `rows` (repeats allowed), in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Design {
        match self {
            Design::Dense(m) => {
                let mut values = Vec::with_capacity(rows.len() * m.cols);
                for &r in rows {
                    values.extend_from_slice(m.row(r));
                }
                Design::Dense(DenseMatrix {
                    rows: rows.len(),
                    cols: m.cols,
                    values,
                })
            }
            Design::Sparse(m) => {
                let mut indptr = Vec::with_capacity(rows.len() + 1);
                indptr.push(0);
                let mut indices = Vec::new();
                let mut values = Vec::new();
                for &r in rows {
                    let (idx, val) = m.row(r);
                    indices.extend_from_slice(idx);
                    values.extend_from_slice(val);
                    indptr.push(indices.len());
                }
                Design::Sparse(CsrMatrix {
                    rows: rows.len(),
                    cols: m.cols,
                    indptr,
                    indices,
                    values,
                })
            }
        }
    }
    /// Row `i` as a dense vector of length `cols` (for tests and small tools).
    pub fn dense_row(&self, i: usize) -> Vec<f64> {
        match self {
            Design::Dense(m) => m.row(i).to_vec(),
            Design::Sparse(m) => {
                let mut out = vec![0.0; m.cols];
                let (idx, val) = m.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    out[j as usize] = v;
                }
                out
            }
        }
    }
    /// Multiplies every stored value by `factor`.
    pub fn scale(&mut self, factor: f64) {
        let values = match self {
            Design::Dense(m) => &mut m.values,
            Design::Sparse(m) => &mut m.values,
        };
        for v in values {
            *v *= factor;
        }
    }
    /// Largest absolute stored value (0 when empty).
    pub fn max_abs(&self) -> f64 {
        let values = match self {
            Design::Dense(m) => &m.values,
            Design::Sparse(m) => &m.values,
        };
        values.iter().fold(0.0_f64, |a, v| a.max(v.abs()))
    }
}

/// A design matrix with one label per row. Labels are kept as read (`+1` → 1.0, `1.0` → 1.0,
/// class `7` → 7.0).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The features.
    pub design: Design,
    /// One label per row.
    pub labels: Vec<f64>,
}

/// Labels mapped to classes `0..K`, with the original value of each class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassLabels {
    /// Class of each row, in `0..classes.len()`.
    pub class: Vec<u32>,
    /// The original label of each class, increasing.
    pub classes: Vec<f64>,
}

impl Dataset {
    /// A dataset; fails when the label count differs from the row count.
    pub fn new(design: Design, labels: Vec<f64>) -> Result<Self> {
        if design.rows() != labels.len() {
            return Err(Error::DimensionMismatch {
                what: "labels (one per row)".into(),
                expected: design.rows(),
                found: labels.len(),
            });
        }
        Ok(Self { design, labels })
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.design.cols()
    }
    /// The rows `rows`, in that order.
    pub fn subset(&self, rows: &[usize]) -> Dataset {
        Dataset {
            design: self.design.select_rows(rows),
            labels: rows.iter().map(|&r| self.labels[r]).collect(),
        }
    }
    /// Labels as ±1 for binary classification. Accepts exactly two distinct values: {−1, +1},
    /// {0, 1}, or any other pair (the smaller becomes −1, the larger +1, e.g. covtype's 1/2). A
    /// single value present maps to +1 if it is positive, else −1.
    pub fn binary_labels(&self) -> Result<Vec<f64>> {
        let ClassLabels { class, classes } = self.class_labels()?;
        match classes.len() {
            0 => Ok(Vec::new()),
            1 => {
                let s = if classes[0] > 0.0 { 1.0 } else { -1.0 };
                Ok(vec![s; class.len()])
            }
            2 => Ok(class
                .iter()
                .map(|&c| if c == 1 { 1.0 } else { -1.0 })
                .collect()),
            k => Err(Error::Data {
                path: "<labels>".into(),
                location: "labels".into(),
                reason: format!(
                    "binary classification needs two label values, found {k}: {:?}…",
                    &classes[..k.min(5)]
                ),
            }),
        }
    }
    /// Labels as classes `0..K` (sorted distinct values). Fails on a non-integer label.
    pub fn class_labels(&self) -> Result<ClassLabels> {
        if let Some((i, l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, l)| !l.is_finite() || l.fract() != 0.0)
        {
            return Err(Error::Data {
                path: "<labels>".into(),
                location: format!("sample {i}"),
                reason: format!("label {l} is not an integer class"),
            });
        }
        let mut classes: Vec<f64> = self.labels.clone();
        classes.sort_by(f64::total_cmp);
        classes.dedup();
        let class = self
            .labels
            .iter()
            .map(|l| {
                classes
                    .binary_search_by(|c| c.total_cmp(l))
                    .expect("invariant: every label is among the sorted distinct labels")
                    as u32
            })
            .collect();
        Ok(ClassLabels { class, classes })
    }
}

/// A `Error::Data` for `path`.
/// Names `source` (a data file or dataset) in a label error that could not name it (the
/// checks on labels run on datasets, which do not know their file).
pub fn name_the_source(e: Error, source: &str) -> Error {
    match e {
        Error::Data {
            path,
            location,
            reason,
        } if path == "<labels>" => Error::Data {
            path: source.to_owned(),
            location,
            reason,
        },
        other => other,
    }
}

pub(crate) fn data_error(
    path: &str,
    location: impl Into<String>,
    reason: impl Into<String>,
) -> Error {
    Error::Data {
        path: path.to_owned(),
        location: location.into(),
        reason: reason.into(),
    }
}

/// The compression of a byte stream, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// bzip2 (`BZh`).
    Bzip2,
}

impl Compression {
    /// Detects the compression from the magic bytes.
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }
}

/// Decompresses `bytes` when they start with a gzip or bzip2 magic; returns them unchanged
/// otherwise. `path` names the source in errors.
pub fn decompress(bytes: Vec<u8>, path: &str) -> Result<Vec<u8>> {
    let compression = Compression::detect(&bytes);
    let mut out = Vec::new();
    let result = match compression {
        Compression::None => return Ok(bytes),
        Compression::Gzip => flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out),
        Compression::Bzip2 => bzip2::read::MultiBzDecoder::new(&bytes[..]).read_to_end(&mut out),
    };
    match result {
        Ok(_) => Ok(out),
        Err(e) => Err(data_error(
            path,
            format!("byte offset {} of the decompressed stream", out.len()),
            format!(
                "corrupt or truncated {} stream: {e}",
                match compression {
                    Compression::Gzip => "gzip",
                    _ => "bzip2",
                }
            ),
        )),
    }
}

/// Reads a whole file, decompressing it when it is gzip or bzip2 (detected by magic bytes).
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decompress(bytes, &path.display().to_string())
}

/// Writes `bytes` to `path`, gzip-compressed when `gzip` is true (for round-trip tests and for
/// exporting datasets).
pub fn write_file(path: &Path, bytes: &[u8], gzip: bool) -> Result<()> {
    use std::io::Write;
    let data = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).map_err(|e| Error::io(path, e))?;
        enc.finish().map_err(|e| Error::io(path, e))?
    } else {
        bytes.to_vec()
    };
    std::fs::write(path, data).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_checks_its_arrays() {
        assert!(CsrMatrix::new(2, 3, vec![0, 1, 2], vec![0, 2], vec![1.0, 2.0]).is_ok());
        assert!(CsrMatrix::new(2, 3, vec![0, 1], vec![0], vec![1.0]).is_err());
        assert!(CsrMatrix::new(1, 3, vec![0, 2], vec![2, 1], vec![1.0, 2.0]).is_err());
        assert!(CsrMatrix::new(1, 2, vec![0, 1], vec![2], vec![1.0]).is_err());
    }

    #[test]
    fn labels_map_to_binary_and_classes() {
        let d = Design::Dense(DenseMatrix::new(4, 1, vec![0.0; 4]).unwrap());
        let ds = Dataset::new(d.clone(), vec![0.0, 1.0, 1.0, 0.0]).unwrap();
        assert_eq!(ds.binary_labels().unwrap(), vec![-1.0, 1.0, 1.0, -1.0]);
        let ds = Dataset::new(d.clone(), vec![7.0, 2.0, 3.0, 2.0]).unwrap();
        let cl = ds.class_labels().unwrap();
        assert_eq!(cl.class, vec![2, 0, 1, 0]);
        assert_eq!(cl.classes, vec![2.0, 3.0, 7.0]);
        assert!(ds.binary_labels().is_err());
        let ds = Dataset::new(d, vec![0.5, 1.0, 1.0, 0.0]).unwrap();
        assert!(ds.class_labels().is_err());
    }

    #[test]
    fn compression_is_detected_by_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(Compression::detect(b"+1 1:0"), Compression::None);
        let err = decompress(vec![0x1f, 0x8b, 8, 0, 0], "x.gz").unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");
    }
}
