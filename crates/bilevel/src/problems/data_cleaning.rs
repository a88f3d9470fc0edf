//! # Data hyper-cleaning (algorithms.md §9.5, §3.7.2, §6.6.1)
//!
//! A training set with corrupted labels; one outer weight per training sample decides how much
//! the sample counts:
//!
//! $$ g(x, W) = \frac1n \sum_{i \le n} \sigma(x_i)\thinspace \mathrm{CE}(W; a_i, \tilde b_i) + C \lVert W \rVert_F^2,
//!    \qquad f(x, W) = \frac1{n'} \sum_{i \le n'} \mathrm{CE}(W; a'_i, b'_i), $$
//!
//! with σ the logistic sigmoid, CE the multinomial cross-entropy of the linear classifier
//! W ∈ ℝ^{(d+1)×K} (a bias row, as the papers' 10 × 785; stored feature-major), and C the
//! regularisation: 1e-2 in the LancBiO code (the default), 1e-3 in the MRBO/stocBiO code. The
//! penalty is C‖W‖²_F with no ½, as in both codes, and covers the bias row. A minibatch averages
//! σ(xᵢ)CEᵢ over its samples and adds the full penalty, so only the batch's entries of ∇ₓg are
//! non-zero.
//!
//! Corruption: a fraction p of the training labels (exactly round(p·n), chosen uniformly) is
//! replaced by (label + U{1, …, K−1}) mod K, so a corrupted label is always wrong (the papers'
//! "(label + U{1..9}) mod 10"); the problem records which samples were corrupted.
//!
//! Default data (the shipped MNIST files): train on the 5,000 images of `mnist_5k`, split the
//! 10,000 MNIST test images 5,000 / 5,000 into validation and test, pixels scaled to [0, 1],
//! p = 0.5. The papers take validation samples from the training split; the shipped files have
//! no other training images, so validation comes from the test images here (disjoint from test).
//!
//! Task metrics: `test_accuracy`, `test_loss`, `validation_accuracy`, `flagged_corrupted` (the
//! fraction of corrupted samples with σ(xᵢ) < ½), `flagged_clean` (the same fraction among clean
//! samples) and `mean_weight`. The reference is a warm-started Newton-CG solve.
//!
//! `model = "mlp"` replaces the linear classifier by an MLP of [`crate::nn`] (`hidden`,
//! `activation`; θ starts at LeCun-normal weights drawn from `seed`), with the same weighting,
//! penalty C‖θ‖², data and metrics, and exact oracles ([`super::cleaning_network`]). Its inner
//! problem is not convex: no reference, and solvers that solve the inner linear system by CG
//! on the full batch can meet negative curvature (AID-CG diverged on MNIST; SOBA and stocBiO
//! did not, see `experiments/hyperclean_mlp.toml`).
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cleaning_network::CleaningNetwork;
use super::common::{NewtonReference, Preprocess, ReferenceConfig, check_batch, sigmoid};
use super::logistic::{LogisticData, OnSample, Precision, Targets, ValidationLoss, Weights};
use crate::core::error::{Error, Result, check_in_range, check_non_negative};
use crate::core::linalg::rng_from_seed;
use crate::core::{
    Batch, Fused, HessianOperator, Objective, Problem, Reference, TaskMetrics, Vector, VectorExt,
};
use crate::data::split::{Corruption, corrupt_labels};
use crate::data::{Dataset, DatasetSpec};
use crate::nn::{Activation, Loss, Mlp};

/// Storage of a design matrix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// CSR when the training design has at most 30 % non-zeros, dense otherwise.
    #[default]
    Auto,
    /// Dense row-major.
    Dense,
    /// CSR.
    Sparse,
}

/// The classifier whose training samples are weighted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleaningModel {
    /// The linear softmax classifier W (the papers' model; exact Newton-CG reference).
    #[default]
    Linear,
    /// An MLP of [`crate::nn`] (`hidden`, `activation`); no exact reference (the inner problem
    /// is not convex). See [`super::cleaning_network`].
    Mlp,
}

/// Configuration of [`data_cleaning`](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataCleaningConfig {
    /// The training pool (default: the shipped `mnist_5k`).
    pub train: DatasetSpec,
    /// The pool of validation and test rows (default: the shipped `mnist_test`). Ignored when
    /// `heldout_from_train` is set.
    pub heldout: DatasetSpec,
    /// Draw validation and test rows from the training pool instead (disjoint from training).
    pub heldout_from_train: bool,
    /// Training samples (0: the whole pool, less the held-out rows when they come from it).
    pub n_train: usize,
    /// Validation samples.
    pub n_validation: usize,
    /// Test samples.
    pub n_test: usize,
    /// p, the fraction of training labels corrupted.
    pub corruption: f64,
    /// C in C‖W‖²_F.
    pub regularization: f64,
    /// Feature preprocessing (default: divide by the largest training value, pixels → [0, 1]).
    pub preprocess: Preprocess,
    /// Add a bias row to W.
    pub intercept: bool,
    /// Storage of the designs: `auto` (CSR when at most 30 % of the training values are
    /// non-zero, e.g. MNIST's 19 %), `dense` or `sparse`. Results agree to rounding.
    pub storage: Storage,
    /// The stored type of the design values (linear model): `f64` (default) or `f32` (half
    /// the bytes per pass; values rounded to f32 once, arithmetic still f64).
    pub precision: Precision,
    /// Starting weight logit: x₀ᵢ = this value for every sample (0: σ = ½).
    pub x0: f64,
    /// The classifier: `linear` (default) or `mlp`.
    pub model: CleaningModel,
    /// Hidden widths of the MLP (`model = "mlp"`; a list, written `hidden = [[64]]` in an
    /// experiment grid).
    pub hidden: Vec<usize>,
    /// Activation of the MLP's hidden layers.
    pub activation: Activation,
    /// Seed of the splits, the corruption and the MLP's starting weights.
    pub seed: u64,
    /// The exact reference (linear model only).
    pub reference: ReferenceConfig,
}

impl Default for DataCleaningConfig {
    fn default() -> Self {
        Self {
            train: DatasetSpec::shared("mnist_5k"),
            heldout: DatasetSpec::shared("mnist_test"),
            heldout_from_train: false,
            n_train: 5_000,
            n_validation: 5_000,
            n_test: 5_000,
            corruption: 0.5,
            regularization: 1e-2,
            preprocess: Preprocess::UnitMax,
            intercept: true,
            storage: Storage::Auto,
            precision: Precision::F64,
            x0: 0.0,
            model: CleaningModel::Linear,
            hidden: vec![64],
            activation: Activation::Tanh,
            seed: 0,
            reference: ReferenceConfig::default(),
        }
    }
}

/// The inner objective: σ-weighted training cross-entropy + C‖W‖².
pub struct CleaningInner {
    data: LogisticData,
    regularization: f64,
}

/// The outer objective: validation cross-entropy (independent of x).
pub type CleaningOuter = ValidationLoss;

impl CleaningInner {
    /// The inner objective on noisy `data` (multiclass targets) with regularisation C.
    pub fn new(data: LogisticData, regularization: f64) -> Self {
        Self {
            data,
            regularization,
        }
    }
}

#[inline]
fn dsigmoid(t: f64) -> f64 {
    let s = sigmoid(t);
    s * (1.0 - s)
}

impl Objective for CleaningInner {
    fn dims(&self) -> (usize, usize) {
        (self.data.n(), self.data.dim())
    }
    fn n_samples(&self) -> usize {
        self.data.n()
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        check_batch(batch, self.data.n(), "data_cleaning g");
        let xs = x.as_slice();
        self.data.value(y.as_slice(), batch, Weights::Sigmoid(xs))
            + self.regularization * y.norm_sq()
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.fused(
            x,
            y,
            None,
            batch,
            Fused {
                grad_x: Some(out),
                ..Fused::default()
            },
        );
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.fused(
            x,
            y,
            None,
            batch,
            Fused {
                grad_y: Some(out),
                ..Fused::default()
            },
        );
    }
    fn grad_xy(
        &self,
        x: &Vector,
        y: &Vector,
        batch: Batch<'_>,
        out_x: &mut Vector,
        out_y: &mut Vector,
    ) {
        self.fused(
            x,
            y,
            None,
            batch,
            Fused {
                grad_x: Some(out_x),
                grad_y: Some(out_y),
                ..Fused::default()
            },
        );
    }
    fn fused(&self, x: &Vector, y: &Vector, v: Option<&Vector>, batch: Batch<'_>, out: Fused<'_>) {
        check_batch(batch, self.data.n(), "data_cleaning g");
        assert!(
            v.is_some() || !out.needs_direction(),
            "data_cleaning g: a product along v needs v"
        );
        let xs = x.as_slice();
        let Fused {
            value,
            grad_x,
            grad_y,
            hvp_yy,
            cross_xy,
        } = out;
        let mut gx = grad_x.map(|o| o.as_mut_slice());
        let mut cr = cross_xy.map(|o| o.as_mut_slice());
        for o in [gx.as_deref_mut(), cr.as_deref_mut()].into_iter().flatten() {
            o.fill(0.0);
        }
        // Losses for ∂g/∂x, and for the value, in the same pass.
        let want_grad_x = gx.is_some();
        let want_loss = want_grad_x || value.is_some();
        let want_cross = cr.is_some();
        let vs = if hvp_yy.is_some() || want_cross {
            v.map(|v| v.as_slice())
        } else {
            None
        };
        let mut gy = grad_y.map(|o| o.as_mut_slice());
        let mut hv = hvp_yy.map(|o| o.as_mut_slice());
        if want_loss || vs.is_some() || gy.is_some() {
            // Per sample (each occurrence in the batch): ∂g/∂xᵢ = σ'(xᵢ) CEᵢ / |B| and
            // (∇²ₓᵧg v)ᵢ = σ'(xᵢ) ∇CEᵢ·v / |B|.
            let mut per_sample = |i: usize, loss: f64, dd: f64, inv: f64| {
                let ds = dsigmoid(xs[i]) * inv;
                if let Some(o) = gx.as_deref_mut() {
                    o[i] += ds * loss;
                }
                if let Some(o) = cr.as_deref_mut() {
                    o[i] += ds * dd;
                }
            };
            let on_sample: Option<OnSample<'_>> = if want_grad_x || want_cross {
                Some(&mut per_sample)
            } else {
                None
            };
            let loss = self.data.pass(
                y.as_slice(),
                vs,
                batch,
                Weights::Sigmoid(xs),
                want_loss,
                gy.as_deref_mut(),
                hv.as_deref_mut(),
                on_sample,
            );
            if let Some(value) = value {
                *value = loss + self.regularization * y.norm_sq();
            }
        }
        // The regulariser C‖W‖².
        let two_c = 2.0 * self.regularization;
        if let Some(o) = gy {
            crate::core::linalg::axpy(two_c, y.as_slice(), o);
        }
        if let (Some(o), Some(vs)) = (hv, vs) {
            crate::core::linalg::axpy(two_c, vs, o);
        }
    }
    // No `hess_yy_diag`: on data cleaning (digits, 10 classes, dim y = 650) Jacobi-preconditioned
    // Newton-CG took 382 Hessian-vector products over a cold and two warm evaluations against
    // 292 without (`tests/it/exact_evaluation.rs`): one uniform 2C and image features leave the
    // diagonal uninformative, while the coupling between classes it ignores is strong.
    fn hessian_yy_at<'a>(&'a self, x: &'a Vector, y: &'a Vector) -> Option<HessianOperator<'a>> {
        let held = self.data.hold(y.as_slice())?;
        Some(Box::new(move |v: &Vector, out: &mut Vector| {
            let vs = v.as_slice();
            let weights = Weights::Sigmoid(x.as_slice());
            self.data.hvp_held(&held, vs, weights, out.as_mut_slice());
            // The regulariser C‖W‖².
            crate::core::linalg::axpy(2.0 * self.regularization, vs, out.as_mut_slice());
        }))
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.fused(
            x,
            y,
            Some(v),
            batch,
            Fused {
                hvp_yy: Some(out),
                ..Fused::default()
            },
        );
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.fused(
            x,
            y,
            Some(v),
            batch,
            Fused {
                cross_xy: Some(out),
                ..Fused::default()
            },
        );
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.data.n(), "data_cleaning g");
        let (xs, us) = (x.as_slice(), u.as_slice());
        // ∇²ᵧₓg u = Σ_B uᵢ σ'(xᵢ) ∇CEᵢ / |B|.
        self.data.grad(
            y.as_slice(),
            batch,
            Weights::SigmoidSlope { x: xs, u: us },
            out.as_mut_slice(),
        );
    }
}

/// Everything a built hyper-cleaning problem knows besides its objectives.
pub struct CleaningParts {
    /// The inner objective.
    pub g: Arc<CleaningInner>,
    /// The outer objective.
    pub f: Arc<CleaningOuter>,
    /// The test set.
    pub test: LogisticData,
    /// Which training samples were corrupted.
    pub corruption: Corruption,
}

/// The three sets after preprocessing, storage choice and corruption.
struct Prepared {
    train: Dataset,
    validation: Dataset,
    test: Dataset,
    sparse: bool,
    k: usize,
    noisy: Vec<u32>,
    val_class: Vec<u32>,
    test_class: Vec<u32>,
    corruption: Corruption,
}

struct CleaningMetrics {
    validation: Arc<CleaningOuter>,
    test: LogisticData,
    is_corrupted: Vec<bool>,
}

impl TaskMetrics for CleaningMetrics {
    fn evaluate(&self, x: &Vector, y: &Vector) -> Vec<(String, f64)> {
        let (test_loss, test_acc) = self.test.evaluate(y.as_slice());
        let (_, val_acc) = self.validation.data().evaluate(y.as_slice());
        cleaning_metrics(x, &self.is_corrupted, test_loss, test_acc, val_acc)
    }
}

/// The metrics of [`CleaningMetrics`] for the MLP classifier.
struct NetworkCleaningMetrics {
    validation: Arc<CleaningNetwork>,
    test: CleaningNetwork,
    is_corrupted: Vec<bool>,
}

impl TaskMetrics for NetworkCleaningMetrics {
    fn evaluate(&self, x: &Vector, y: &Vector) -> Vec<(String, f64)> {
        let (test_loss, test_acc) = self.test.loss_and_accuracy(y);
        let (_, val_acc) = self.validation.loss_and_accuracy(y);
        cleaning_metrics(x, &self.is_corrupted, test_loss, test_acc, val_acc)
    }
}

fn cleaning_metrics(
    x: &Vector,
    is_corrupted: &[bool],
    test_loss: f64,
    test_acc: f64,
    val_acc: f64,
) -> Vec<(String, f64)> {
    {
        let (mut flag_bad, mut bad, mut flag_good, mut good) = (0usize, 0usize, 0usize, 0usize);
        let mut weight_sum = 0.0;
        for (&xi, &c) in x.as_slice().iter().zip(is_corrupted) {
            let flagged = sigmoid(xi) < 0.5;
            weight_sum += sigmoid(xi);
            if c {
                bad += 1;
                flag_bad += usize::from(flagged);
            } else {
                good += 1;
                flag_good += usize::from(flagged);
            }
        }
        let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        vec![
            ("test_accuracy".into(), test_acc),
            ("test_loss".into(), test_loss),
            ("validation_accuracy".into(), val_acc),
            ("flagged_corrupted".into(), frac(flag_bad, bad)),
            ("flagged_clean".into(), frac(flag_good, good)),
            (
                "mean_weight".into(),
                weight_sum / is_corrupted.len().max(1) as f64,
            ),
        ]
    }
}

fn multiclass(ds: &Dataset, classes: &[f64], what: &str) -> Result<Vec<u32>> {
    ds.labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            classes
                .iter()
                .position(|c| c == l)
                .map(|c| c as u32)
                .ok_or_else(|| Error::Data {
                    path: what.into(),
                    location: format!("sample {i}"),
                    reason: format!("label {l} does not occur in the training pool"),
                })
        })
        .collect()
}

impl DataCleaningConfig {
    /// Checks the parameters (without reading data).
    pub fn validate(&self) -> Result<()> {
        self.train.validate("train")?;
        if !self.heldout_from_train {
            self.heldout.validate("heldout")?;
        }
        check_in_range("corruption", self.corruption, 0.0, 1.0)?;
        check_non_negative("regularization", self.regularization)?;
        crate::core::error::check_at_least("n_validation", self.n_validation, 1)?;
        crate::core::error::check_at_least("n_test", self.n_test, 1)?;
        if !self.x0.is_finite() {
            return Err(Error::config("x0", "must be finite"));
        }
        if self.regularization == 0.0 {
            return Err(Error::config(
                "regularization",
                "must be > 0 (the inner problem must be strongly convex)",
            ));
        }
        if self.hidden.contains(&0) {
            return Err(Error::config("hidden", "every hidden width must be >= 1"));
        }
        self.check_precision()?;
        self.reference.validate()
    }

    /// f32 storage is a property of the linear model's design kernels.
    fn check_precision(&self) -> Result<()> {
        if self.model == CleaningModel::Mlp && self.precision == Precision::F32 {
            return Err(Error::config(
                "precision",
                "`f32` applies to the linear model's design; the MLP stores its data in f64",
            ));
        }
        Ok(())
    }

    /// Loads, splits, corrupts and preprocesses the data.
    pub fn parts(&self) -> Result<CleaningParts> {
        self.validate()?;
        let name = self.train.source();
        self.parts_unnamed()
            .map_err(|e| crate::data::name_the_source(e, &name))
    }

    fn parts_unnamed(&self) -> Result<CleaningParts> {
        let (train, validation, test) = self.splits()?;
        self.parts_from_splits(train, validation, test, None)
    }

    /// Loads the pools and draws the training, validation and test sets.
    fn splits(&self) -> Result<(Dataset, Dataset, Dataset)> {
        let pool = self.train.load(self.seed)?.train;
        if self.heldout_from_train {
            let held = self.n_validation + self.n_test;
            let n_train = if self.n_train == 0 {
                pool.len().saturating_sub(held)
            } else {
                self.n_train
            };
            pool.split_counts(n_train, self.n_validation, self.n_test, self.seed)
        } else {
            let n_train = if self.n_train == 0 {
                pool.len()
            } else {
                self.n_train
            };
            let (train, _, _) = pool.split_counts(n_train, 0, 0, self.seed)?;
            let heldout = self.heldout.load(self.seed)?.train;
            let (_, val, test) =
                heldout.split_counts(0, self.n_validation, self.n_test, self.seed + 1)?;
            Ok((train, val, test))
        }
    }

    /// The parts of the problem on given training, validation and test sets (what
    /// [`parts`](Self::parts) does after loading and splitting). The training labels are
    /// corrupted at rate `corruption` as in [`parts`](Self::parts); with labels that are noisy
    /// already, set `corruption = 0` and pass which samples are corrupted in `known_corrupted`
    /// (for the `flagged_*` metrics) when that is known.
    fn parts_from_splits(
        &self,
        train: Dataset,
        validation: Dataset,
        test: Dataset,
        known_corrupted: Option<Vec<bool>>,
    ) -> Result<CleaningParts> {
        let prepared = self.prepare(train, validation, test, known_corrupted)?;
        Ok(self.linear_parts(prepared))
    }

    /// Checks, preprocesses, stores and labels the three sets, and corrupts the training labels.
    fn prepare(
        &self,
        train: Dataset,
        validation: Dataset,
        test: Dataset,
        known_corrupted: Option<Vec<bool>>,
    ) -> Result<Prepared> {
        let (mut train, mut validation, mut test) = (train, validation, test);
        for (what, set) in [("validation", &validation), ("test", &test)] {
            if set.n_features() != train.n_features() {
                return Err(Error::DimensionMismatch {
                    what: format!("features of the {what} set (those of the training set)"),
                    expected: train.n_features(),
                    found: set.n_features(),
                });
            }
        }
        if let Some(mask) = &known_corrupted {
            if self.corruption > 0.0 {
                return Err(Error::config(
                    "corruption",
                    "must be 0 when the corrupted samples are given (the labels are noisy \
                     already)",
                ));
            }
            if mask.len() != train.len() {
                return Err(Error::DimensionMismatch {
                    what: "corrupted-sample mask (one per training sample)".into(),
                    expected: train.len(),
                    found: mask.len(),
                });
            }
        }
        {
            let train_design = train.design.clone();
            self.preprocess.apply(
                &train_design,
                &mut [&mut train.design, &mut validation.design, &mut test.design],
            )?;
        }
        let sparse = self.model == CleaningModel::Linear
            && match self.storage {
                Storage::Auto => train.design.density() <= 0.3,
                Storage::Dense => false,
                Storage::Sparse => true,
            };
        for d in [&mut train.design, &mut validation.design, &mut test.design] {
            if sparse {
                d.sparsify();
            } else {
                d.densify();
            }
        }
        let cl = train.class_labels()?;
        let mut classes = cl.classes.clone();
        classes.extend(validation.class_labels()?.classes);
        classes.extend(test.class_labels()?.classes);
        classes.sort_by(f64::total_cmp);
        classes.dedup();
        let k = classes.len();
        if k < 2 {
            return Err(Error::config("train", "needs at least two classes"));
        }
        let mut noisy = multiclass(&train, &classes, "training labels")?;
        let mut corruption = corrupt_labels(&mut noisy, k, self.corruption, self.seed)?;
        if let Some(mask) = known_corrupted {
            corruption.corrupted = (0..mask.len()).filter(|&i| mask[i]).collect();
            corruption.is_corrupted = mask;
        }
        let val_class = multiclass(&validation, &classes, "validation labels")?;
        let test_class = multiclass(&test, &classes, "test labels")?;
        Ok(Prepared {
            train,
            validation,
            test,
            sparse,
            k,
            noisy,
            val_class,
            test_class,
            corruption,
        })
    }

    /// The linear model's objectives on prepared sets.
    fn linear_parts(&self, prepared: Prepared) -> CleaningParts {
        let Prepared {
            train,
            validation,
            test,
            sparse,
            k,
            noisy,
            val_class,
            test_class,
            corruption,
        } = prepared;
        let g = Arc::new(CleaningInner::new(
            LogisticData::with_storage(
                train.design,
                Targets::Multiclass { class: noisy, k },
                self.intercept,
                !sparse,
            )
            .with_precision(self.precision),
            self.regularization,
        ));
        let dim_x = g.data.n();
        let f = Arc::new(ValidationLoss::new(
            LogisticData::with_storage(
                validation.design,
                Targets::Multiclass {
                    class: val_class,
                    k,
                },
                self.intercept,
                !sparse,
            )
            .with_precision(self.precision),
            dim_x,
            "data_cleaning f",
        ));
        let test = LogisticData::with_storage(
            test.design,
            Targets::Multiclass {
                class: test_class,
                k,
            },
            self.intercept,
            !sparse,
        )
        .with_precision(self.precision);
        CleaningParts {
            g,
            f,
            test,
            corruption,
        }
    }

    /// Builds the problem.
    pub fn build(&self) -> Result<Problem> {
        if self.model == CleaningModel::Mlp {
            self.validate()?;
            let name = self.train.source();
            return self
                .splits()
                .and_then(|(train, validation, test)| self.prepare(train, validation, test, None))
                .and_then(|prepared| self.build_network(prepared))
                .map_err(|e| crate::data::name_the_source(e, &name));
        }
        let parts = self.parts()?;
        self.build_from_parts(parts)
    }

    /// The problem with an MLP classifier ([`super::cleaning_network`]) on prepared sets.
    fn build_network(&self, prepared: Prepared) -> Result<Problem> {
        let Prepared {
            train,
            validation,
            test,
            k,
            noisy,
            val_class,
            test_class,
            corruption,
            ..
        } = prepared;
        let mut sizes = vec![train.n_features()];
        sizes.extend(&self.hidden);
        sizes.push(k);
        let net = Arc::new(Mlp::new(
            &sizes,
            self.activation,
            Loss::SoftmaxCrossEntropy,
        )?);
        let rows = |d: &Dataset| -> Arc<[f64]> {
            (0..d.len())
                .flat_map(|i| d.design.dense_row(i))
                .collect::<Vec<f64>>()
                .into()
        };
        let classes = |c: Vec<u32>| -> Vec<usize> { c.into_iter().map(|c| c as usize).collect() };
        let g = Arc::new(CleaningNetwork::training(
            net.clone(),
            rows(&train),
            classes(noisy),
            self.regularization,
        ));
        let dim_x = train.len();
        let f = Arc::new(CleaningNetwork::plain(
            net.clone(),
            rows(&validation),
            classes(val_class),
            dim_x,
        ));
        let test = CleaningNetwork::plain(net.clone(), rows(&test), classes(test_class), dim_x);
        let metrics = NetworkCleaningMetrics {
            validation: f.clone(),
            test,
            is_corrupted: corruption.is_corrupted,
        };
        let theta0 = net.init(&mut rng_from_seed(self.seed, 91));
        Problem::from_arcs("data_cleaning", f, g)?
            .with_task_metrics(metrics)
            .with_start(
                Vector::from_fn(dim_x, |_| self.x0),
                crate::core::linalg::from_slice(&theta0),
            )
    }

    /// Builds the problem on given training (labels as given, corrupted further at rate
    /// `corruption`), validation and test sets; `train`, `heldout`, `heldout_from_train` and
    /// the sample counts are not used. `known_corrupted` marks the training samples whose
    /// labels are wrong, when known (it needs `corruption = 0`); without it the `flagged_*`
    /// metrics count the samples corrupted here. For data from memory: the Python package's
    /// `DataCleaning(X, y_noisy, X_val, y_val)`.
    pub fn build_from_splits(
        &self,
        train: Dataset,
        validation: Dataset,
        test: Dataset,
        known_corrupted: Option<Vec<bool>>,
    ) -> Result<Problem> {
        check_in_range("corruption", self.corruption, 0.0, 1.0)?;
        check_non_negative("regularization", self.regularization)?;
        if self.regularization == 0.0 || !self.x0.is_finite() {
            return Err(Error::config(
                if self.x0.is_finite() {
                    "regularization"
                } else {
                    "x0"
                },
                "regularization must be > 0 and x0 finite",
            ));
        }
        self.reference.validate()?;
        if self.hidden.contains(&0) {
            return Err(Error::config("hidden", "every hidden width must be >= 1"));
        }
        self.check_precision()?;
        if self.model == CleaningModel::Mlp {
            let prepared = self.prepare(train, validation, test, known_corrupted)?;
            return self.build_network(prepared);
        }
        let parts = self.parts_from_splits(train, validation, test, known_corrupted)?;
        self.build_from_parts(parts)
    }

    fn build_from_parts(&self, parts: CleaningParts) -> Result<Problem> {
        let (dx, dy) = parts.g.dims();
        let metrics = CleaningMetrics {
            validation: parts.f.clone(),
            test: parts.test,
            is_corrupted: parts.corruption.is_corrupted,
        };
        let mut problem = Problem::from_arcs("data_cleaning", parts.f.clone(), parts.g.clone())?
            .with_task_metrics(metrics)
            .with_start(Vector::from_fn(dx, |_| self.x0), Vector::zeros(dy))?;
        if self.reference.enabled {
            problem = problem.with_reference(NewtonReference::new(
                parts.f,
                parts.g,
                Vector::zeros(dy),
                self.reference,
            ));
        }
        Ok(problem)
    }
}

/// Test accuracy and test loss of the *unweighted* model trained on the noisy labels (every
/// σ(xᵢ) = 1, i.e. plain regularised multinomial logistic regression): the baseline hyper-cleaning
/// must beat. Solved by Newton-CG to ‖∇ᵧg‖ ≤ 1e-8 (ample for an accuracy).
pub fn unweighted_baseline(parts: &CleaningParts) -> Result<(f64, f64)> {
    let (dx, dy) = parts.g.dims();
    // σ(40) = 1 − 4e-18: weight 1 to double precision.
    let x = Vector::from_fn(dx, |_| 40.0);
    let reference = NewtonReference::new(
        parts.f.clone(),
        parts.g.clone(),
        Vector::zeros(dy),
        ReferenceConfig {
            tol: 1e-8,
            accept: 1e-6,
            ..ReferenceConfig::default()
        },
    );
    let point = reference.evaluate(&x)?;
    let y = point.y_star.expect("invariant: Newton reference sets y*");
    let (loss, acc) = parts.test.evaluate(y.as_slice());
    Ok((acc, loss))
}
