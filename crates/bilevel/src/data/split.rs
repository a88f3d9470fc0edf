//! Seeded splits, standardisation fitted on the training rows only, and label corruption.
//!
//! Everything here is a pure function of its inputs and a seed (the crate's value-stable RNG
//! helpers), so a problem built twice from the same config holds the same rows.

use super::{Dataset, Design};
use crate::core::error::{Error, Result};
use crate::core::linalg::{rng_from_seed, shuffle, uniform_below};

/// Row indices of a train / validation / test split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows.
    pub validation: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
}

/// Shuffles `0..n` with `seed` and cuts it into `n_train`, `n_validation` and `n_test` rows
/// (in that order of the permutation). Fails when they add up to more than `n`.
pub fn split_counts(
    n: usize,
    n_train: usize,
    n_validation: usize,
    n_test: usize,
    seed: u64,
) -> Result<Split> {
    let total = n_train
        .checked_add(n_validation)
        .and_then(|s| s.checked_add(n_test));
    if total.is_none_or(|t| t > n) {
        return Err(Error::config(
            "split",
            format!(
                "{n_train} train + {n_validation} validation + {n_test} test rows exceed the \
                 {n} available"
            ),
        ));
    }
    let mut perm: Vec<usize> = (0..n).collect();
    shuffle(&mut rng_from_seed(seed, 11), &mut perm);
    let test = perm[n_train + n_validation..n_train + n_validation + n_test].to_vec();
    let validation = perm[n_train..n_train + n_validation].to_vec();
    perm.truncate(n_train);
    Ok(Split {
        train: perm,
        validation,
        test,
    })
}

/// Splits `0..n` by fractions: ⌊n·validation⌋ validation rows, ⌊n·test⌋ test rows, the rest
/// train. Fractions must be in [0, 1) with a sum below 1.
pub fn split_fractions(n: usize, validation: f64, test: f64, seed: u64) -> Result<Split> {
    let ok = |f: f64| f.is_finite() && (0.0..1.0).contains(&f);
    if !ok(validation) || !ok(test) || validation + test >= 1.0 {
        return Err(Error::config(
            "split",
            format!("fractions must be in [0, 1) with a sum below 1, got {validation} and {test}"),
        ));
    }
    let n_val = (n as f64 * validation).floor() as usize;
    let n_test = (n as f64 * test).floor() as usize;
    for (part, fraction, count) in [
        ("validation_fraction", validation, n_val),
        ("test_fraction", test, n_test),
    ] {
        if fraction > 0.0 && count == 0 {
            return Err(Error::config(
                part,
                format!(
                    "{fraction} of the {n} sample(s) leaves no {} samples; use more data",
                    part.trim_end_matches("_fraction")
                ),
            ));
        }
    }
    if n - n_val - n_test == 0 {
        return Err(Error::config(
            "split",
            format!("the {n} sample(s) leave no training samples after the split"),
        ));
    }
    split_counts(n, n - n_val - n_test, n_val, n_test, seed)
}

/// Per-feature affine map x ↦ (x − mean) / scale, fitted on training rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// Subtracted per feature (all zero when not centering).
    pub mean: Vec<f64>,
    /// Divided per feature (1 where the feature is constant on the training rows).
    pub scale: Vec<f64>,
}

impl Standardizer {
    /// Fits on `design`. Dense designs are centred and scaled to unit variance; sparse designs are
    /// only scaled (by the root mean square, so zeros stay zeros and the sparsity is kept)
    /// unless `center_sparse` is set, which is refused (it would densify; densify first).
    pub fn fit(design: &Design) -> Self {
        let (n, d) = (design.rows(), design.cols());
        let mut sum = vec![0.0; d];
        let mut sum_sq = vec![0.0; d];
        let center = !design.is_sparse();
        match design {
            Design::Dense(m) => {
                for i in 0..n {
                    for (j, &v) in m.row(i).iter().enumerate() {
                        sum[j] += v;
                    }
                }
            }
            Design::Sparse(_) => {}
        }
        let nf = n.max(1) as f64;
        let mean: Vec<f64> = if center {
            sum.iter().map(|s| s / nf).collect()
        } else {
            vec![0.0; d]
        };
        match design {
            Design::Dense(m) => {
                for i in 0..n {
                    for (j, &v) in m.row(i).iter().enumerate() {
                        sum_sq[j] += (v - mean[j]).powi(2);
                    }
                }
            }
            Design::Sparse(m) => {
                for (&j, &v) in m.indices().iter().zip(m.values()) {
                    sum_sq[j as usize] += v * v;
                }
            }
        }
        let scale = sum_sq
            .iter()
            .map(|s| {
                let sd = (s / nf).sqrt();
                if sd > 1e-12 { sd } else { 1.0 }
            })
            .collect();
        Self { mean, scale }
    }

    /// Applies the map to `design` in place. Fails on a feature-count mismatch.
    pub fn apply(&self, design: &mut Design) -> Result<()> {
        if design.cols() != self.scale.len() {
            return Err(Error::DimensionMismatch {
                what: "standardizer features".into(),
                expected: self.scale.len(),
                found: design.cols(),
            });
        }
        match design {
            Design::Dense(m) => {
                let d = m.cols();
                for row in m.values_mut().chunks_exact_mut(d.max(1)) {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (*v - self.mean[j]) / self.scale[j];
                    }
                }
            }
            Design::Sparse(m) => {
                let scales: Vec<f64> = m
                    .indices()
                    .iter()
                    .map(|&j| self.scale[j as usize])
                    .collect();
                for (v, s) in m.values_mut().iter_mut().zip(scales) {
                    *v /= s;
                }
            }
        }
        Ok(())
    }
}

/// Which labels [`corrupt_labels`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// Indices of the corrupted samples, increasing.
    pub corrupted: Vec<usize>,
    /// `is_corrupted[i]` for every sample.
    pub is_corrupted: Vec<bool>,
    /// The original (clean) class of every sample.
    pub clean: Vec<u32>,
}

/// Corrupts a fraction `rate` of the class labels `class` (values in `0..n_classes`) in place:
/// exactly round(rate · n) samples, chosen uniformly without replacement with `seed`, get
/// `(label + U{1, …, K−1}) mod K`, so a corrupted label is always wrong. This is the
/// corruption of the MRBO/stocBiO and LancBiO hyper-cleaning code (algorithms.md §3.7.2, §6.6.1:
/// "(label + U{1..9}) mod 10"). Returns which samples were corrupted.
pub fn corrupt_labels(
    class: &mut [u32],
    n_classes: usize,
    rate: f64,
    seed: u64,
) -> Result<Corruption> {
    if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
        return Err(Error::config(
            "corruption",
            format!("must be in [0, 1], got {rate}"),
        ));
    }
    if n_classes < 2 && rate > 0.0 {
        return Err(Error::config(
            "corruption",
            "needs at least two classes to make a label wrong",
        ));
    }
    if let Some(&bad) = class.iter().find(|&&c| c as usize >= n_classes) {
        return Err(Error::config(
            "corruption",
            format!("label {bad} is not below the class count {n_classes}"),
        ));
    }
    let n = class.len();
    let clean = class.to_vec();
    let count = (rate * n as f64).round() as usize;
    let mut rng = rng_from_seed(seed, 12);
    let mut perm: Vec<usize> = (0..n).collect();
    shuffle(&mut rng, &mut perm);
    let mut corrupted = perm[..count.min(n)].to_vec();
    corrupted.sort_unstable();
    let mut is_corrupted = vec![false; n];
    for &i in &corrupted {
        let shift = 1 + uniform_below(&mut rng, n_classes - 1) as u32;
        class[i] = (class[i] + shift) % n_classes as u32;
        is_corrupted[i] = true;
    }
    Ok(Corruption {
        corrupted,
        is_corrupted,
        clean,
    })
}

impl Dataset {
    /// Seeded train / validation / test datasets by counts (see [`split_counts`]).
    pub fn split_counts(
        &self,
        n_train: usize,
        n_validation: usize,
        n_test: usize,
        seed: u64,
    ) -> Result<(Dataset, Dataset, Dataset)> {
        let s = split_counts(self.len(), n_train, n_validation, n_test, seed)?;
        Ok((
            self.subset(&s.train),
            self.subset(&s.validation),
            self.subset(&s.test),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DenseMatrix;

    #[test]
    fn splits_are_disjoint_seeded_and_complete() {
        let s = split_counts(100, 60, 25, 15, 4).unwrap();
        let mut all: Vec<usize> = [s.train.clone(), s.validation.clone(), s.test.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(s, split_counts(100, 60, 25, 15, 4).unwrap());
        assert_ne!(s, split_counts(100, 60, 25, 15, 5).unwrap());
        assert!(split_counts(10, 6, 3, 2, 0).is_err());
        let f = split_fractions(10, 0.2, 0.3, 1).unwrap();
        assert_eq!((f.train.len(), f.validation.len(), f.test.len()), (5, 2, 3));
        assert!(split_fractions(10, 0.5, 0.5, 1).is_err());
    }

    #[test]
    fn standardizer_uses_training_statistics_only() {
        let train = Design::Dense(DenseMatrix::new(2, 2, vec![1.0, 5.0, 3.0, 5.0]).unwrap());
        let st = Standardizer::fit(&train);
        assert_eq!(st.mean, vec![2.0, 5.0]);
        assert_eq!(st.scale, vec![1.0, 1.0]); // sd 1, and a constant feature keeps scale 1
        let mut test = Design::Dense(DenseMatrix::new(1, 2, vec![4.0, 7.0]).unwrap());
        st.apply(&mut test).unwrap();
        assert_eq!(test.dense_row(0), vec![2.0, 2.0]);
    }

    #[test]
    fn corruption_is_exact_in_count_and_always_wrong() {
        let mut class: Vec<u32> = (0..1000).map(|i| (i % 10) as u32).collect();
        let c = corrupt_labels(&mut class, 10, 0.5, 3).unwrap();
        assert_eq!(c.corrupted.len(), 500);
        for i in 0..1000 {
            assert_eq!(class[i] != c.clean[i], c.is_corrupted[i], "sample {i}");
        }
        // The shifts 1..9 are uniform: each wrong class receives about 1/9 of the flips.
        let mut shifts = [0usize; 10];
        for &i in &c.corrupted {
            shifts[((class[i] + 10 - c.clean[i]) % 10) as usize] += 1;
        }
        assert_eq!(shifts[0], 0);
        // 500/9 ≈ 56 per shift; 5 sigma of a binomial(500, 1/9) is about 35.
        assert!(
            shifts[1..].iter().all(|&s| (21..=91).contains(&s)),
            "{shifts:?}"
        );
        assert!(corrupt_labels(&mut class, 10, 1.5, 0).is_err());
    }
}
