//! Seeded synthetic twins of datasets that are not at hand: same shape, same kind of sparsity,
//! same number of classes, labels that a linear model can partly learn. They stand in for the
//! real files in timing and scaling experiments; they are not the real data, and accuracies
//! measured on them say nothing about the real datasets. Use the real file by path
//! (`dataset = { path = "…" }`, or `bilevel data fetch`) when you have it.
//!
//! | twin | rows at scale 1 | features | classes | design |
//! |------|-----------------|----------|---------|--------|
//! | [`Twin::Covtype`] | 581,012 (the benchmark trains on 371,847 = 64 %) | 54 | 7 | sparse: 10 continuous (standard normal, unlike the raw UCI units) + one of 4 wilderness + one of 40 soil indicators per row; class priors of the real data |
//! | [`Twin::News20`] | 18,846 | 130,107 | 20 | sparse tf-idf-like rows: 40–190 distinct words, Zipf-distributed word ids plus class topic words, rows L2-normalised (≈ 2.2 M nonzeros) |
//! | [`Twin::Mnist`] | 60,000 (the full training split) | 784 | 10 | dense 0–255 "images": a smooth random stroke prototype per class, shifted by up to 2 px, with noise; about 20 % nonzero pixels |
//! | [`Twin::Ijcnn1`] | 141,691 (ijcnn1 train + test) | 22 (any width with `n_features`) | 2 (±1, 10 % positive like ijcnn1) | dense, values in [−1, 1]; labels from a random linear model with 5 % flipped |
//!
//! The real ijcnn1 is shipped (`{ shared = "ijcnn1" }`); its twin exists for the same kind of
//! data at other widths (`n_features`, the d = 22 … 2,000 scaling benchmark).

use serde::{Deserialize, Serialize};

use super::{CsrMatrix, Dataset, DenseMatrix, Design};
use crate::core::error::{Error, Result};
use crate::core::linalg::{Rng, rng_from_seed, standard_normal, uniform_below, uniform01};

/// Which twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Twin {
    /// UCI covertype, 581,012 × 54, 7 classes.
    Covtype,
    /// 20 Newsgroups (scikit-learn's vectorised form), 18,846 × 130,107 sparse, 20 classes.
    News20,
    /// MNIST training split, 60,000 × 784, 10 classes.
    Mnist,
    /// ijcnn1-shaped dense binary data, 141,691 × 22 (other widths with `n_features`).
    Ijcnn1,
}

impl Twin {
    /// Rows at scale 1.
    pub fn full_rows(self) -> usize {
        match self {
            Twin::Covtype => 581_012,
            Twin::News20 => 18_846,
            Twin::Mnist => 60_000,
            Twin::Ijcnn1 => 141_691,
        }
    }
    /// Features (at the default width).
    pub fn features(self) -> usize {
        match self {
            Twin::Covtype => 54,
            Twin::News20 => 130_107,
            Twin::Mnist => 784,
            Twin::Ijcnn1 => 22,
        }
    }
    /// Classes.
    pub fn classes(self) -> usize {
        match self {
            Twin::Covtype => 7,
            Twin::News20 => 20,
            Twin::Mnist => 10,
            Twin::Ijcnn1 => 2,
        }
    }
    /// Draws the twin with round(scale · full rows) rows (at least 1); `scale` in (0, 1].
    pub fn generate(self, scale: f64, seed: u64) -> Result<Dataset> {
        if !(scale.is_finite() && scale > 0.0 && scale <= 1.0) {
            return Err(Error::config(
                "dataset.scale",
                format!("must be in (0, 1], got {scale}"),
            ));
        }
        let rows = ((self.full_rows() as f64 * scale).round() as usize).max(1);
        Ok(match self {
            Twin::Covtype => covtype(rows, seed),
            Twin::News20 => news20(rows, self.features(), seed),
            Twin::Mnist => mnist(rows, seed),
            Twin::Ijcnn1 => dense_binary(rows, self.features(), seed),
        })
    }
}

/// Samples a class from logits with the Gumbel-max trick.
fn sample_softmax(rng: &mut Rng, logits: &[f64]) -> usize {
    let mut best = (f64::NEG_INFINITY, 0);
    for (k, &z) in logits.iter().enumerate() {
        let u = uniform01(rng).max(1e-300);
        let g = z - (-u.ln()).ln();
        if g > best.0 {
            best = (g, k);
        }
    }
    best.1
}

/// The covtype twin with `rows` rows.
pub fn covtype(rows: usize, seed: u64) -> Dataset {
    const CLASS_COUNTS: [f64; 7] = [
        211_840.0, 283_301.0, 35_754.0, 2_747.0, 9_493.0, 17_367.0, 20_510.0,
    ];
    let total: f64 = CLASS_COUNTS.iter().sum();
    let mut rng = rng_from_seed(seed, 21);
    let (d, k) = (54, 7);
    let weights: Vec<f64> = (0..d * k).map(|_| standard_normal(&mut rng)).collect();
    let bias: Vec<f64> = CLASS_COUNTS.iter().map(|c| (c / total).ln()).collect();
    let mut indptr = Vec::with_capacity(rows + 1);
    indptr.push(0);
    let mut indices = Vec::with_capacity(rows * 12);
    let mut values = Vec::with_capacity(rows * 12);
    let mut labels = Vec::with_capacity(rows);
    let mut logits = [0.0; 7];
    for _ in 0..rows {
        logits.copy_from_slice(&bias);
        for j in 0..10u32 {
            let v = standard_normal(&mut rng);
            indices.push(j);
            values.push(v);
        }
        let wilderness = 10 + uniform_below(&mut rng, 4) as u32;
        let soil = 14 + uniform_below(&mut rng, 40) as u32;
        indices.extend_from_slice(&[wilderness, soil]);
        values.extend_from_slice(&[1.0, 1.0]);
        let start = *indptr.last().expect("invariant: indptr starts with 0");
        for (&j, &v) in indices[start..].iter().zip(&values[start..]) {
            for c in 0..k {
                logits[c] += 0.5 * v * weights[j as usize * k + c];
            }
        }
        labels.push((sample_softmax(&mut rng, &logits) + 1) as f64);
        indptr.push(indices.len());
    }
    let csr = CsrMatrix::new(rows, d, indptr, indices, values)
        .expect("invariant: rows are built sorted and in range");
    Dataset {
        design: Design::Sparse(csr),
        labels,
    }
}

/// The ijcnn1-shaped twin with `rows` rows and `cols` dense features: xᵢⱼ = tanh(zᵢⱼ) with
/// zᵢⱼ standard normal, label +1 when w·xᵢ + b > 0 for a random w (‖w‖ = 3) and b set so that
/// about 10 % of the rows are positive, then 5 % of the labels flipped.
pub fn dense_binary(rows: usize, cols: usize, seed: u64) -> Dataset {
    let cols = cols.max(1);
    let mut rng = rng_from_seed(seed, 24);
    let mut weights: Vec<f64> = (0..cols).map(|_| standard_normal(&mut rng)).collect();
    let norm = weights
        .iter()
        .map(|w| w * w)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    weights.iter_mut().for_each(|w| *w *= 3.0 / norm);
    // w·x has standard deviation ≈ 3 · E[tanh(z)²]^½ ≈ 3 · 0.63; 10 % above b ⇒ b ≈ 1.28 σ.
    let bias = -1.28 * 3.0 * 0.627;
    let mut values = Vec::with_capacity(rows * cols);
    let mut labels = Vec::with_capacity(rows);
    for _ in 0..rows {
        let mut margin = bias;
        for w in &weights {
            let v = standard_normal(&mut rng).tanh();
            margin += w * v;
            values.push(v);
        }
        let mut label = if margin > 0.0 { 1.0 } else { -1.0 };
        if uniform01(&mut rng) < 0.05 {
            label = -label;
        }
        labels.push(label);
    }
    Dataset {
        design: Design::Dense(
            DenseMatrix::new(rows, cols, values).expect("invariant: rows · cols values"),
        ),
        labels,
    }
}

/// The 20 Newsgroups twin with `rows` rows and `cols` features.
pub fn news20(rows: usize, cols: usize, seed: u64) -> Dataset {
    let cols = cols.max(1);
    let mut rng = rng_from_seed(seed, 22);
    let classes = 20;
    let topic_words = 2_000.min(cols);
    let mut indptr = Vec::with_capacity(rows + 1);
    indptr.push(0);
    let mut indices: Vec<u32> = Vec::with_capacity(rows * 115);
    let mut values = Vec::with_capacity(rows * 115);
    let mut labels = Vec::with_capacity(rows);
    let mut row: Vec<u32> = Vec::with_capacity(256);
    let ln_cols = (cols as f64).ln();
    for _ in 0..rows {
        let class = uniform_below(&mut rng, classes);
        let length = 40 + uniform_below(&mut rng, 151);
        row.clear();
        for _ in 0..length {
            let word = if uniform01(&mut rng) < 0.25 {
                // A topic word of this class: a fixed pseudo-random set per class.
                let k = uniform_below(&mut rng, topic_words) as u64;
                ((k * 7_919 + class as u64 * 104_729 + 17) % cols as u64) as u32
            } else {
                // Zipf-like: log-uniform rank.
                ((uniform01(&mut rng) * ln_cols).exp() as usize - 1).min(cols - 1) as u32
            };
            row.push(word);
        }
        row.sort_unstable();
        let start = values.len();
        let mut i = 0;
        while i < row.len() {
            let mut count = 1;
            while i + count < row.len() && row[i + count] == row[i] {
                count += 1;
            }
            let idf = 1.0 + (1.0 + f64::from(row[i])).ln();
            indices.push(row[i]);
            values.push((1.0 + (count as f64).ln()) * idf);
            i += count;
        }
        let norm = values[start..].iter().map(|v| v * v).sum::<f64>().sqrt();
        for v in &mut values[start..] {
            *v /= norm;
        }
        labels.push(class as f64);
        indptr.push(indices.len());
    }
    let csr = CsrMatrix::new(rows, cols, indptr, indices, values)
        .expect("invariant: rows are built sorted, deduplicated and in range");
    Dataset {
        design: Design::Sparse(csr),
        labels,
    }
}

/// The MNIST-train twin with `rows` rows.
pub fn mnist(rows: usize, seed: u64) -> Dataset {
    let mut rng = rng_from_seed(seed, 23);
    let side = 28usize;
    // One prototype per class: ink along a random smooth walk of 3 strokes.
    let mut prototypes = vec![0.0f64; 10 * side * side];
    for c in 0..10 {
        let proto = &mut prototypes[c * side * side..(c + 1) * side * side];
        for _ in 0..3 {
            let (mut px, mut py) = (
                8.0 + 12.0 * uniform01(&mut rng),
                8.0 + 12.0 * uniform01(&mut rng),
            );
            let mut angle = 2.0 * std::f64::consts::PI * uniform01(&mut rng);
            for _ in 0..14 {
                angle += 0.6 * standard_normal(&mut rng);
                px = (px + angle.cos()).clamp(4.0, 23.0);
                py = (py + angle.sin()).clamp(4.0, 23.0);
                for yy in 0..side {
                    for xx in 0..side {
                        let d2 = (xx as f64 - px).powi(2) + (yy as f64 - py).powi(2);
                        proto[yy * side + xx] += (-d2 / 1.2).exp();
                    }
                }
            }
        }
        let max = proto.iter().fold(0.0f64, |a, &b| a.max(b));
        for v in proto.iter_mut() {
            *v = (*v / max).min(1.0);
        }
    }
    let mut values = vec![0.0; rows * side * side];
    let mut labels = Vec::with_capacity(rows);
    for i in 0..rows {
        let c = uniform_below(&mut rng, 10);
        let dx = uniform_below(&mut rng, 5) as isize - 2;
        let dy = uniform_below(&mut rng, 5) as isize - 2;
        let gain = 0.7 + 0.6 * uniform01(&mut rng);
        let proto = &prototypes[c * side * side..(c + 1) * side * side];
        let out = &mut values[i * side * side..(i + 1) * side * side];
        for yy in 0..side as isize {
            for xx in 0..side as isize {
                let (sx, sy) = (xx - dx, yy - dy);
                let base = if (0..side as isize).contains(&sx) && (0..side as isize).contains(&sy) {
                    proto[sy as usize * side + sx as usize]
                } else {
                    0.0
                };
                let ink = gain * base + 0.15 * standard_normal(&mut rng) * base;
                out[yy as usize * side + xx as usize] = (255.0 * ink).round().clamp(0.0, 255.0);
            }
        }
        labels.push(c as f64);
    }
    Dataset {
        design: Design::Dense(
            DenseMatrix::new(rows, side * side, values).expect("invariant: rows × 784 values"),
        ),
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_have_the_documented_shapes() {
        let c = Twin::Covtype.generate(0.002, 1).unwrap();
        assert_eq!((c.len(), c.n_features()), (1162, 54));
        assert_eq!(c.design.nnz(), 12 * 1162);
        let cl = c.class_labels().unwrap();
        assert!(cl.classes.len() >= 5 && cl.classes.iter().all(|&l| (1.0..=7.0).contains(&l)));
        let n = Twin::News20.generate(0.01, 1).unwrap();
        assert_eq!((n.len(), n.n_features()), (188, 130_107));
        let per_row = n.design.nnz() as f64 / n.len() as f64;
        assert!((80.0..150.0).contains(&per_row), "{per_row}");
        let m = Twin::Mnist.generate(0.005, 1).unwrap();
        assert_eq!((m.len(), m.n_features()), (300, 784));
        let dense = m.design.to_dense();
        let nonzero = dense.values().iter().filter(|&&v| v > 0.0).count() as f64;
        let frac = nonzero / dense.values().len() as f64;
        assert!((0.08..0.4).contains(&frac), "{frac}");
        assert_eq!(Twin::Mnist.generate(0.005, 1).unwrap(), m);
        assert!(Twin::Mnist.generate(0.0, 1).is_err());
        let j = Twin::Ijcnn1.generate(0.02, 1).unwrap();
        assert_eq!((j.len(), j.n_features()), (2834, 22));
        let positive = j.labels.iter().filter(|&&l| l == 1.0).count() as f64 / j.len() as f64;
        // ≈ 10 % by the bias, ± the 5 % flips and the sampling noise of 2,834 rows.
        assert!((0.06..0.2).contains(&positive), "{positive}");
        assert!(j.labels.iter().all(|&l| l == 1.0 || l == -1.0));
        let wide = dense_binary(50, 2000, 3);
        assert_eq!((wide.len(), wide.n_features()), (50, 2000));
        let values = wide.design.to_dense();
        assert!(values.values().iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
