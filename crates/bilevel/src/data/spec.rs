//! [`DatasetSpec`]: how an experiment file names its data, and the registry of shipped files.
//!
//! Three ways, exactly one per spec:
//!
//! ```toml
//! dataset = { shared = "ijcnn1" }                        # a shipped file, by name
//! dataset = { path = "data/a9a.bz2", format = "libsvm", test_path = "data/a9a.t" }
//! dataset = { twin = "covtype", scale = 0.01 }           # a seeded synthetic twin
//! ```
//!
//! Shipped files are looked up under the data directory ([`data_dir`]): the environment variable
//! `BILEVEL_DATA_DIR` when set, else `shared/data` in the nearest ancestor of the repository root
//! that has one (by default `../shared/data` relative to the repository root). Relative `path`s
//! are relative to the working directory.
//!
//! | `shared =` | files (under the data directory) | rows × features | labels |
//! |------------|------|------|------|
//! | `ijcnn1` | `libsvm/ijcnn1.gz` + test `libsvm/ijcnn1.t.gz` | 49,990 (+ 91,701) × 22 | ±1 |
//! | `a9a` | `libsvm/a9a.gz` + test `libsvm/a9a.t.gz` | 32,561 (+ 16,281) × 123 | ±1 |
//! | `w8a` | `libsvm/w8a.gz` | 49,749 × 300 | ±1 |
//! | `reuters` | `libsvm/reuters.gz` + test `libsvm/reuters.t.gz` | 7,770 (+ 3,299) × 8,315 sparse | ±1 |
//! | `heart_scale` | `libsvm/heart_scale.gz` | 270 × 13 | ±1 |
//! | `diabetes_scale` | `libsvm/diabetes_scale.gz` | 768 × 8 | ±1 |
//! | `mnist_5k` | `mnist/mnist_5k.csv.gz` (label last) | 5,000 × 784 | 0–9 |
//! | `mnist_test` | `mnist/t10k-images-idx3-ubyte.gz` + `mnist/t10k-labels-idx1-ubyte.gz` | 10,000 × 784 | 0–9 |
//! | `digits` | `sklearn/digits.csv.gz` (label last) | 1,797 × 64 | 0–9 |
//! | `breast_cancer` | `sklearn/breast_cancer.csv.gz` (metadata header, label last) | 569 × 30 | 0/1 |

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::csv::CsvOptions;
use super::libsvm::{IndexBase, LibsvmOptions};
use super::synthetic::Twin;
use super::{Dataset, csv, idx, libsvm, npy};
use crate::core::error::{Error, Result};

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// LIBSVM / svmlight text.
    Libsvm,
    /// Delimited text.
    Csv,
    /// MNIST IDX (images file in `path`, labels file in `labels_path`).
    Idx,
    /// NumPy `.npy` (features in `path`, labels in `labels_path`).
    Npy,
}

impl Format {
    /// Guesses the format from a file name (compression suffixes ignored): `.csv` and `.tsv` →
    /// CSV, `.npy` → npy, `-ubyte` or `.idx` → IDX, anything else → LIBSVM.
    pub fn guess(path: &Path) -> Format {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let base = name
            .trim_end_matches(".gz")
            .trim_end_matches(".bz2")
            .to_owned();
        if base.ends_with(".csv") || base.ends_with(".tsv") {
            Format::Csv
        } else if base.ends_with(".npy") {
            Format::Npy
        } else if base.ends_with("-ubyte") || base.ends_with(".idx") {
            Format::Idx
        } else {
            Format::Libsvm
        }
    }
}

/// Where a problem's data comes from (see the module docs). All fields are optional in TOML;
/// exactly one of `shared`, `path`, `twin` must be given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetSpec {
    /// A shipped file by name (`ijcnn1`, `a9a`, `mnist_5k`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
    /// A data file (features file for `idx` and `npy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The labels file for `idx` and `npy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels_path: Option<String>,
    /// An optional test file in the same format (and its labels file for `idx`/`npy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_path: Option<String>,
    /// Labels of `test_path` for `idx`/`npy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_labels_path: Option<String>,
    /// The format; guessed from the file name when absent ([`Format::guess`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// CSV: the label column (0-based, negative from the end; default −1 = last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_column: Option<i64>,
    /// CSV: skip a header line (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
    /// CSV: the delimiter, one ASCII character (default `,`; `\t` for tabs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// LIBSVM: force the feature count. `news20` twin: the vocabulary size (default 130,107).
    /// `ijcnn1` twin: the width (default 22).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_features: Option<usize>,
    /// LIBSVM: index numbering (`auto`, `zero`, `one`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_base: Option<IndexBase>,
    /// A synthetic twin (`covtype`, `news20`, `mnist`, `ijcnn1`), drawn from the problem's seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twin: Option<Twin>,
    /// Twin: fraction of the full row count, in (0, 1] (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
}

/// Loaded data: the main file and the optional test file, with a name for reports.
#[derive(Clone, Debug)]
pub struct LoadedData {
    /// A short name (`ijcnn1`, the file stem, `twin:covtype`).
    pub name: String,
    /// The main (training) file.
    pub train: Dataset,
    /// The test file, when the spec has one.
    pub test: Option<Dataset>,
}

struct SharedEntry {
    name: &'static str,
    format: Format,
    train: (&'static str, Option<&'static str>),
    test: Option<&'static str>,
    header: bool,
}

const SHARED: &[SharedEntry] = &[
    SharedEntry {
        name: "ijcnn1",
        format: Format::Libsvm,
        train: ("libsvm/ijcnn1.gz", None),
        test: Some("libsvm/ijcnn1.t.gz"),
        header: false,
    },
    SharedEntry {
        name: "a9a",
        format: Format::Libsvm,
        train: ("libsvm/a9a.gz", None),
        test: Some("libsvm/a9a.t.gz"),
        header: false,
    },
    SharedEntry {
        name: "w8a",
        format: Format::Libsvm,
        train: ("libsvm/w8a.gz", None),
        test: None,
        header: false,
    },
    SharedEntry {
        name: "reuters",
        format: Format::Libsvm,
        train: ("libsvm/reuters.gz", None),
        test: Some("libsvm/reuters.t.gz"),
        header: false,
    },
    SharedEntry {
        name: "heart_scale",
        format: Format::Libsvm,
        train: ("libsvm/heart_scale.gz", None),
        test: None,
        header: false,
    },
    SharedEntry {
        name: "diabetes_scale",
        format: Format::Libsvm,
        train: ("libsvm/diabetes_scale.gz", None),
        test: None,
        header: false,
    },
    SharedEntry {
        name: "mnist_5k",
        format: Format::Csv,
        train: ("mnist/mnist_5k.csv.gz", None),
        test: None,
        header: false,
    },
    SharedEntry {
        name: "mnist_test",
        format: Format::Idx,
        train: (
            "mnist/t10k-images-idx3-ubyte.gz",
            Some("mnist/t10k-labels-idx1-ubyte.gz"),
        ),
        test: None,
        header: false,
    },
    SharedEntry {
        name: "digits",
        format: Format::Csv,
        train: ("sklearn/digits.csv.gz", None),
        test: None,
        header: false,
    },
    SharedEntry {
        name: "breast_cancer",
        format: Format::Csv,
        train: ("sklearn/breast_cancer.csv.gz", None),
        test: None,
        header: true,
    },
];

/// Names accepted by `shared = "…"`.
pub fn shared_names() -> Vec<&'static str> {
    SHARED.iter().map(|e| e.name).collect()
}

/// The data directory: `$BILEVEL_DATA_DIR`, else `shared/data` in the nearest ancestor of the
/// repository root that has it (`../shared/data` first), else `../shared/data` (which does not
/// exist; loading from it fails with that path in the message).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BILEVEL_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo_root = repo_root.canonicalize().unwrap_or(repo_root);
    let default = repo_root.join("../shared/data");
    repo_root
        .ancestors()
        .skip(1)
        .map(|a| a.join("shared/data"))
        .find(|p| p.is_dir())
        .unwrap_or(default)
}

impl DatasetSpec {
    /// A spec naming a shipped file.
    pub fn shared(name: &str) -> Self {
        Self {
            shared: Some(name.to_owned()),
            ..Default::default()
        }
    }
    /// A spec naming a twin at `scale`.
    pub fn twin(twin: Twin, scale: f64) -> Self {
        Self {
            twin: Some(twin),
            scale: Some(scale),
            ..Default::default()
        }
    }

    /// Checks the spec without reading files; `field` prefixes error fields (`dataset`).
    pub fn validate(&self, field: &str) -> Result<()> {
        let given = [
            self.shared.is_some(),
            self.path.is_some(),
            self.twin.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() != 1 {
            return Err(Error::config(
                field,
                "give exactly one of `shared`, `path` or `twin`",
            ));
        }
        if let Some(name) = &self.shared
            && !SHARED.iter().any(|e| e.name == name)
        {
            return Err(Error::config(
                format!("{field}.shared"),
                format!(
                    "unknown shared dataset `{name}`; known: {}",
                    shared_names().join(", ")
                ),
            ));
        }
        if let Some(scale) = self.scale {
            if self.twin.is_none() {
                return Err(Error::config(
                    format!("{field}.scale"),
                    "only applies to a `twin`",
                ));
            }
            if !(scale.is_finite() && scale > 0.0 && scale <= 1.0) {
                return Err(Error::config(
                    format!("{field}.scale"),
                    format!("must be in (0, 1], got {scale}"),
                ));
            }
        }
        if let Some(n) = self.n_features
            && !(1..=MAX_FEATURES).contains(&n)
        {
            return Err(Error::config(
                format!("{field}.n_features"),
                format!("must be in 1..={MAX_FEATURES}, got {n}"),
            ));
        }
        if self.n_features.is_some()
            && self
                .twin
                .is_some_and(|t| !matches!(t, Twin::News20 | Twin::Ijcnn1))
        {
            return Err(Error::config(
                format!("{field}.n_features"),
                "applies to LIBSVM files and the news20 and ijcnn1 twins only",
            ));
        }
        if let Some(d) = &self.delimiter
            && self.delimiter_byte(d).is_none()
        {
            return Err(Error::config(
                format!("{field}.delimiter"),
                format!("must be one ASCII character (or `\\t`), got {d:?}"),
            ));
        }
        if self.path.is_none()
            && (self.labels_path.is_some()
                || self.test_path.is_some()
                || self.test_labels_path.is_some()
                || self.format.is_some())
        {
            return Err(Error::config(
                field,
                "`format`, `labels_path`, `test_path` and `test_labels_path` go with `path`",
            ));
        }
        if let Some(path) = &self.path {
            let format = self.format.unwrap_or(Format::guess(Path::new(path)));
            let needs_labels = matches!(format, Format::Idx | Format::Npy);
            if needs_labels && self.labels_path.is_none() {
                return Err(Error::config(
                    format!("{field}.labels_path"),
                    format!("required for format {format:?}"),
                ));
            }
            if needs_labels && self.test_path.is_some() && self.test_labels_path.is_none() {
                return Err(Error::config(
                    format!("{field}.test_labels_path"),
                    format!("required with `test_path` for format {format:?}"),
                ));
            }
        }
        Ok(())
    }

    fn delimiter_byte(&self, d: &str) -> Option<u8> {
        match d {
            "\\t" | "\t" => Some(b'\t'),
            _ if d.len() == 1 && d.is_ascii() => Some(d.as_bytes()[0]),
            _ => None,
        }
    }

    fn load_one(&self, format: Format, path: &Path, labels: Option<&Path>) -> Result<Dataset> {
        match format {
            Format::Libsvm => libsvm::load(
                path,
                &LibsvmOptions {
                    n_features: self.n_features,
                    index_base: self.index_base.unwrap_or_default(),
                },
            ),
            Format::Csv => csv::load(
                path,
                &CsvOptions {
                    delimiter: self
                        .delimiter
                        .as_deref()
                        .and_then(|d| self.delimiter_byte(d))
                        .unwrap_or(b','),
                    header: self.header.unwrap_or(false),
                    label_column: self.label_column.unwrap_or(-1),
                },
            ),
            Format::Idx | Format::Npy => {
                let labels = labels.ok_or_else(|| {
                    Error::config("dataset.labels_path", "required for idx and npy")
                })?;
                if format == Format::Idx {
                    idx::load(path, labels)
                } else {
                    npy::load(path, labels)
                }
            }
        }
    }

    /// Where the data comes from, for messages: the file, the shared name or the twin.
    pub fn source(&self) -> String {
        if let Some(path) = &self.path {
            path.clone()
        } else if let Some(name) = &self.shared {
            format!("shared dataset `{name}`")
        } else if let Some(twin) = self.twin {
            format!("twin:{twin:?}").to_lowercase()
        } else {
            "dataset".into()
        }
    }

    /// Loads the data (a twin is drawn from `seed`). More than [`MAX_FEATURES`] features is an
    /// error. Train and test designs are widened to the
    /// same feature count (a test file whose highest index is below the training file's).
    pub fn load(&self, seed: u64) -> Result<LoadedData> {
        self.validate("dataset")?;
        let (name, train, test) = if let Some(twin) = self.twin {
            let data = match (twin, self.n_features) {
                (Twin::News20, Some(cols)) => {
                    let scale = self.scale.unwrap_or(1.0);
                    let rows = ((twin.full_rows() as f64 * scale).round() as usize).max(1);
                    super::synthetic::news20(rows, cols, seed)
                }
                (Twin::Ijcnn1, Some(cols)) => {
                    let scale = self.scale.unwrap_or(1.0);
                    let rows = ((twin.full_rows() as f64 * scale).round() as usize).max(1);
                    super::synthetic::dense_binary(rows, cols, seed)
                }
                _ => twin.generate(self.scale.unwrap_or(1.0), seed)?,
            };
            (format!("twin:{twin:?}").to_lowercase(), data, None)
        } else if let Some(name) = &self.shared {
            let entry = SHARED
                .iter()
                .find(|e| e.name == name)
                .expect("invariant: validated shared name");
            let dir = data_dir();
            let spec = DatasetSpec {
                header: Some(entry.header),
                ..self.clone()
            };
            let labels = entry.train.1.map(|l| dir.join(l));
            let train = spec.load_one(entry.format, &dir.join(entry.train.0), labels.as_deref())?;
            let test = entry
                .test
                .map(|t| spec.load_one(entry.format, &dir.join(t), None))
                .transpose()?;
            (name.clone(), train, test)
        } else {
            let path = PathBuf::from(self.path.as_deref().expect("invariant: validated path"));
            let format = self.format.unwrap_or(Format::guess(&path));
            let labels = self.labels_path.as_deref().map(Path::new);
            let train = self.load_one(format, &path, labels)?;
            let test = self
                .test_path
                .as_deref()
                .map(|t| {
                    self.load_one(
                        format,
                        Path::new(t),
                        self.test_labels_path.as_deref().map(Path::new),
                    )
                })
                .transpose()?;
            let stem = path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "data".into());
            (stem, train, test)
        };
        if train.is_empty() {
            return Err(Error::Data {
                path: self.source(),
                location: "training data".into(),
                reason: match self.scale {
                    Some(scale) if scale < 1.0 => {
                        format!("no samples left at scale = {scale}")
                    }
                    _ => "the file holds no samples".into(),
                },
            });
        }
        // A feature index such as 4294967294 in a LIBSVM file makes every model that wide:
        // refuse it here, with the file named, rather than fail to allocate later.
        for (part, d) in [("training", Some(&train)), ("test", test.as_ref())] {
            if let Some(d) = d
                && d.n_features() > MAX_FEATURES
            {
                return Err(Error::Data {
                    path: name.clone(),
                    location: format!("{part} data"),
                    reason: format!(
                        "{} features (highest feature index), more than the {MAX_FEATURES} a \
                         model here may have",
                        d.n_features()
                    ),
                });
            }
        }
        let (train, test) = match test {
            None => (train, None),
            Some(test) => {
                let cols = train.n_features().max(test.n_features());
                let widen = |d: Dataset| -> Result<Dataset> {
                    Ok(Dataset {
                        design: d.design.with_cols(cols)?,
                        labels: d.labels,
                    })
                };
                (widen(train)?, Some(widen(test)?))
            }
        };
        Ok(LoadedData { name, train, test })
    }
}

/// The most features a dataset may have (2²⁷ ≈ 134 million, above the widest public LIBSVM
/// sets): a wider one cannot give a model that fits in memory.
pub const MAX_FEATURES: usize = 1 << 27;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_requires_exactly_one_source() {
        assert!(DatasetSpec::default().validate("dataset").is_err());
        assert!(DatasetSpec::shared("ijcnn1").validate("dataset").is_ok());
        let err = DatasetSpec::shared("nope").validate("dataset").unwrap_err();
        assert!(err.to_string().contains("dataset.shared"), "{err}");
        let both = DatasetSpec {
            path: Some("x".into()),
            ..DatasetSpec::shared("a9a")
        };
        assert!(both.validate("dataset").is_err());
        let idx = DatasetSpec {
            path: Some("t10k-images-idx3-ubyte.gz".into()),
            ..Default::default()
        };
        assert!(
            idx.validate("dataset")
                .unwrap_err()
                .to_string()
                .contains("labels_path")
        );
        let bad = DatasetSpec {
            scale: Some(2.0),
            ..DatasetSpec::twin(Twin::Covtype, 1.0)
        };
        assert!(bad.validate("dataset").is_err());
    }

    #[test]
    fn formats_are_guessed_from_names() {
        assert_eq!(Format::guess(Path::new("a/b.csv.gz")), Format::Csv);
        assert_eq!(Format::guess(Path::new("x.npy")), Format::Npy);
        assert_eq!(
            Format::guess(Path::new("t10k-images-idx3-ubyte.gz")),
            Format::Idx
        );
        assert_eq!(Format::guess(Path::new("a9a.t.bz2")), Format::Libsvm);
    }
}
