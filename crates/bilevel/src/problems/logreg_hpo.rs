//! # L2 hyperparameter selection for logistic regression (algorithms.md §9.6, §9.9, §6.6.2)
//!
//! Inner: the training logistic loss plus a weighted ridge penalty, outer: the validation loss,
//!
//! $$ g(x, y) = \frac1{n}\sum_{i \le n} \ell(y; a_i, b_i) + \frac12 \sum_m \lambda_{\pi(m)}(x)\thinspace y_m^2,
//!    \qquad f(x, y) = \frac1{n'}\sum_{i \le n'} \ell(y; a'_i, b'_i), $$
//!
//! with λ_k(x) = exp(x_k) (`parametrization = "exp"`, the default) or x_k (`"linear"`, which
//! needs x > 0 for a strongly convex inner problem). The penalty `per_feature` gives one x_k per
//! feature (dim x = d), `per_class` one per class (multiclass only, dim x = K), `scalar` one
//! for all (dim x = 1). ℓ is the binary logistic loss (labels ±1, y = w ∈ ℝ^d) or the
//! multiclass cross-entropy (y = W ∈ ℝ^{d×K}, feature-major). No intercept: the benchmark's
//! ijcnn1 problem has none, and an unpenalised intercept would break strong convexity.
//!
//! - **ijcnn1** (§9.9, the defaults): `dataset = { shared = "ijcnn1" }`, train on the 49,990
//!   rows of the train file, validate on the 91,701 rows of the test file, `per_feature`, `exp`,
//!   start y₀ ~ N(0, I), x₀,ⱼ = log uⱼ with uⱼ ~ U(0, 1).
//! - **20 Newsgroups** (§6.6.2): `per_feature` on a multiclass sparse design. The code's
//!   ½·mean_{jc}(exp(λ_j) W²_jc) equals this file's ½Σ exp(x_j) W²_jc at x_j = λ_j − log(dK), so
//!   the two parametrisations differ by a constant shift of x only.
//! - **covtype** (multiclass, 7 classes): `penalty = "per_class"`, e.g. on
//!   `dataset = { twin = "covtype", scale = 0.01 }`.
//!
//! Oracles are exact and stream over the rows of the batch (dense or sparse CSR); minibatch calls
//! do not allocate. ∇ₓf = 0 (the outer loss does not depend on x). Mixed products:
//! ∇²ₓᵧg·v has entries λ'_k Σ_{m: π(m)=k} y_m v_m, and ∇²ᵧₓg·u has entries λ'_{π(m)} y_m u_{π(m)}.
//! The [`Reference`](crate::core::Reference) is a warm-started Newton-CG solve
//! ([`NewtonReference`]). Task metrics: `validation_accuracy`, and `test_loss`, `test_accuracy`
//! when a test set exists.
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::common::{NewtonReference, Preprocess, ReferenceConfig, check_batch};
use super::kernels;
use super::logistic::{LogisticData, Precision, Targets, ValidationLoss, Weights};
use crate::core::error::{Error, Result, check_in_range};
use crate::core::linalg::{normal_vector, rng_from_seed, uniform01};
use crate::core::{
    Batch, Fused, HessianOperator, Objective, Problem, TaskMetrics, Vector, VectorExt,
};
use crate::data::split::split_fractions;
use crate::data::{Dataset, DatasetSpec};

/// Which model entries share a hyperparameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Penalty {
    /// One per feature (dim x = d).
    #[default]
    PerFeature,
    /// One per class (multiclass only, dim x = K).
    PerClass,
    /// One for all (dim x = 1).
    Scalar,
}

/// How x maps to the penalty strength λ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parametrization {
    /// λ = exp(x).
    #[default]
    Exp,
    /// λ = x (keep x > 0).
    Linear,
}

/// Binary or multiclass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Binary when the training labels take two values, multiclass otherwise.
    #[default]
    Auto,
    /// ±1 labels (two distinct values required).
    Binary,
    /// Cross-entropy over the distinct label values.
    Multiclass,
}

/// Configuration of [`logreg_hpo`](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogregHpoConfig {
    /// The data (default: the shipped ijcnn1).
    pub dataset: DatasetSpec,
    /// Fraction of the main file held out for validation; 0 validates on the dataset's test
    /// file (the ijcnn1 benchmark's choice).
    pub validation_fraction: f64,
    /// Fraction of the main file held out for test metrics (0: the dataset's test file serves as
    /// test set when it is not the validation set).
    pub test_fraction: f64,
    /// Keep at most this many training rows (0: all), a seeded random subset.
    pub max_train: usize,
    /// Keep at most this many validation rows (0: all).
    pub max_validation: usize,
    /// Binary or multiclass.
    pub task: Task,
    /// Which entries share a hyperparameter.
    pub penalty: Penalty,
    /// λ = exp(x) or λ = x.
    pub parametrization: Parametrization,
    /// Feature preprocessing, fitted on the training rows.
    pub preprocess: Preprocess,
    /// Convert a sparse design to dense.
    pub dense: bool,
    /// The stored type of the design values: `f64` (default) or `f32` (half the bytes per
    /// pass; values rounded to f32 once, arithmetic still f64).
    pub precision: Precision,
    /// Start every coordinate of x at this value; absent: the benchmark's x₀,ⱼ = log uⱼ
    /// (uⱼ for `linear`), uⱼ ~ U(0, 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x0: Option<f64>,
    /// Start y at N(0, I) (the benchmark) instead of 0.
    pub y0_random: bool,
    /// Seed of splits, subsets, twins and the start.
    pub seed: u64,
    /// The exact reference.
    pub reference: ReferenceConfig,
}

impl Default for LogregHpoConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetSpec::shared("ijcnn1"),
            validation_fraction: 0.0,
            test_fraction: 0.0,
            max_train: 0,
            max_validation: 0,
            task: Task::Auto,
            penalty: Penalty::PerFeature,
            parametrization: Parametrization::Exp,
            preprocess: Preprocess::None,
            dense: false,
            precision: Precision::F64,
            x0: None,
            y0_random: true,
            seed: 0,
            reference: ReferenceConfig::default(),
        }
    }
}

/// The penalty map x → λ and its group structure over the model entries.
#[derive(Clone, Copy, Debug)]
pub struct PenaltyMap {
    kind: Penalty,
    param: Parametrization,
    /// Outputs per model row (1 binary, K multiclass).
    k: usize,
}

impl PenaltyMap {
    /// The map for `kind` and `param` over a model with `k` outputs per row.
    pub(crate) fn new(kind: Penalty, param: Parametrization, k: usize) -> Self {
        Self { kind, param, k }
    }
    /// (λ, λ') with one exponential.
    #[inline]
    fn both(&self, xk: f64) -> (f64, f64) {
        match self.param {
            Parametrization::Exp => {
                let e = kernels::exp(xk);
                (e, e)
            }
            Parametrization::Linear => (xk, 1.0),
        }
    }
    /// λ and λ' of a chunk of groups (vectorisable; `x.len()` ≤ the buffers' length).
    #[inline(always)]
    fn lambdas(&self, x: &[f64], lam: &mut [f64], dlam: &mut [f64]) {
        match self.param {
            Parametrization::Exp => {
                for ((l, dl), &xg) in lam.iter_mut().zip(dlam.iter_mut()).zip(x) {
                    let e = kernels::exp(xg);
                    *l = e;
                    *dl = e;
                }
            }
            Parametrization::Linear => {
                for ((l, dl), &xg) in lam.iter_mut().zip(dlam.iter_mut()).zip(x) {
                    *l = xg;
                    *dl = 1.0;
                }
            }
        }
    }
    /// The penalty ½ Σ_m λ_{π(m)} y_m² in one sweep over the model: adds λy to `out.gy` and
    /// λv to `out.hv`, overwrites `out.gx` with ½ Σ_{π(m)=g} λ'_g y_m² and `out.cross` with
    /// Σ_{π(m)=g} λ'_g y_m v_m, and returns ½ Σ λ y² (the sums run over m in increasing order).
    /// One exponential per group.
    #[inline(always)]
    pub(crate) fn apply(
        &self,
        x: &[f64],
        y: &[f64],
        v: Option<&[f64]>,
        mut out: PenaltyOut<'_>,
    ) -> f64 {
        const CH: usize = 64;
        let (mut lam, mut dlam) = ([0.0; CH], [0.0; CH]);
        for o in [out.gx.as_deref_mut(), out.cross.as_deref_mut()]
            .into_iter()
            .flatten()
        {
            o.fill(0.0);
        }
        let vv = |m: usize| v.map_or(0.0, |v| v[m]);
        let mut value = 0.0;
        // Returns λ y_m² (summed by the caller).
        let visit = |m: usize, g: usize, l: f64, dl: f64, out: &mut PenaltyOut<'_>| {
            let ym = y[m];
            if let Some(o) = out.gy.as_deref_mut() {
                o[m] += l * ym;
            }
            if let Some(o) = out.hv.as_deref_mut() {
                o[m] += l * vv(m);
            }
            if let Some(o) = out.gx.as_deref_mut() {
                o[g] += 0.5 * dl * ym * ym;
            }
            if let Some(o) = out.cross.as_deref_mut() {
                o[g] += dl * ym * vv(m);
            }
            l * ym * ym
        };
        match self.kind {
            Penalty::PerFeature if self.k == 1 => {
                // One entry per group: plain vectorisable loops over chunks of groups.
                for (c, xs) in x.chunks(CH).enumerate() {
                    let n = xs.len();
                    let g0 = c * CH;
                    self.lambdas(xs, &mut lam[..n], &mut dlam[..n]);
                    let ys = &y[g0..g0 + n];
                    for (&l, &yy) in lam[..n].iter().zip(ys) {
                        value += l * yy * yy;
                    }
                    if let Some(o) = out.gy.as_deref_mut() {
                        for ((o, &l), &yy) in o[g0..g0 + n].iter_mut().zip(&lam[..n]).zip(ys) {
                            *o += l * yy;
                        }
                    }
                    if let (Some(o), Some(v)) = (out.hv.as_deref_mut(), v) {
                        let vs = &v[g0..g0 + n];
                        for ((o, &l), &vm) in o[g0..g0 + n].iter_mut().zip(&lam[..n]).zip(vs) {
                            *o += l * vm;
                        }
                    }
                    if let Some(o) = out.gx.as_deref_mut() {
                        for ((o, &dl), &yy) in o[g0..g0 + n].iter_mut().zip(&dlam[..n]).zip(ys) {
                            *o += 0.5 * dl * yy * yy;
                        }
                    }
                    if let (Some(o), Some(v)) = (out.cross.as_deref_mut(), v) {
                        let vs = &v[g0..g0 + n];
                        for (((o, &dl), &yy), &vm) in
                            o[g0..g0 + n].iter_mut().zip(&dlam[..n]).zip(ys).zip(vs)
                        {
                            *o += dl * yy * vm;
                        }
                    }
                }
            }
            Penalty::PerFeature => {
                for (c, xs) in x.chunks(CH).enumerate() {
                    let n = xs.len();
                    self.lambdas(xs, &mut lam[..n], &mut dlam[..n]);
                    for (i, (&l, &dl)) in lam[..n].iter().zip(&dlam[..n]).enumerate() {
                        let g = c * CH + i;
                        for m in g * self.k..(g + 1) * self.k {
                            value += visit(m, g, l, dl, &mut out);
                        }
                    }
                }
            }
            Penalty::PerClass => {
                // Groups are classes (entry m in class m mod K).
                // On the stack up to 64 classes (no allocation per oracle call).
                let (mut heap_l, mut heap_dl) = (Vec::new(), Vec::new());
                let (l_all, dl_all): (&mut [f64], &mut [f64]) = if self.k <= CH {
                    (&mut lam[..self.k], &mut dlam[..self.k])
                } else {
                    heap_l.resize(self.k, 0.0);
                    heap_dl.resize(self.k, 0.0);
                    (&mut heap_l, &mut heap_dl)
                };
                self.lambdas(x, l_all, dl_all);
                for m in 0..y.len() {
                    let g = m % self.k;
                    value += visit(m, g, l_all[g], dl_all[g], &mut out);
                }
            }
            Penalty::Scalar => {
                self.lambdas(&x[..1], &mut lam[..1], &mut dlam[..1]);
                for m in 0..y.len() {
                    value += visit(m, 0, lam[0], dlam[0], &mut out);
                }
            }
        }
        0.5 * value
    }
    /// dim x for a model with `rows` rows.
    pub(crate) fn dim_x(&self, rows: usize) -> usize {
        match self.kind {
            Penalty::PerFeature => rows,
            Penalty::PerClass => self.k,
            Penalty::Scalar => 1,
        }
    }
    /// Calls f(m, group) over the model entries, computing λ once per group change.
    #[inline]
    pub(crate) fn for_each(
        &self,
        x: &[f64],
        dim: usize,
        mut f: impl FnMut(usize, usize, f64, f64),
    ) {
        match self.kind {
            Penalty::Scalar => {
                let (l, dl) = self.both(x[0]);
                for m in 0..dim {
                    f(m, 0, l, dl);
                }
            }
            Penalty::PerFeature => {
                for (j, &xj) in x.iter().enumerate() {
                    let (l, dl) = self.both(xj);
                    for m in j * self.k..(j + 1) * self.k {
                        f(m, j, l, dl);
                    }
                }
            }
            Penalty::PerClass => {
                for m in 0..dim {
                    let c = m % self.k;
                    let (l, dl) = self.both(x[c]);
                    f(m, c, l, dl);
                }
            }
        }
    }
}

/// Outputs of [`PenaltyMap::apply`].
#[derive(Default)]
pub(crate) struct PenaltyOut<'a> {
    /// ∇ᵧ (added to).
    pub gy: Option<&'a mut [f64]>,
    /// ∇²ᵧᵧ · v (added to).
    pub hv: Option<&'a mut [f64]>,
    /// ∇ₓ (overwritten).
    pub gx: Option<&'a mut [f64]>,
    /// ∇²ₓᵧ · v (overwritten).
    pub cross: Option<&'a mut [f64]>,
}

/// The inner objective: training loss + ½Σ λ y².
pub struct LogregInner {
    data: LogisticData,
    penalty: PenaltyMap,
    dim_x: usize,
}

/// The outer objective: validation loss (independent of x).
pub type LogregOuter = ValidationLoss;

impl LogregInner {
    /// The inner objective on `data` with `penalty` and `parametrization`.
    pub fn new(data: LogisticData, penalty: Penalty, parametrization: Parametrization) -> Self {
        let map = PenaltyMap {
            kind: penalty,
            param: parametrization,
            k: data.k(),
        };
        let dim_x = map.dim_x(data.model_rows());
        Self {
            data,
            penalty: map,
            dim_x,
        }
    }
}

impl Objective for LogregInner {
    fn dims(&self) -> (usize, usize) {
        (self.dim_x, self.data.dim())
    }
    fn n_samples(&self) -> usize {
        self.data.n()
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        check_batch(batch, self.data.n(), "logreg_hpo g");
        let ys = y.as_slice();
        let loss = self.data.value(ys, batch, Weights::Uniform);
        let pen = kernels::dispatch(
            #[inline(always)]
            || {
                self.penalty
                    .apply(x.as_slice(), ys, None, PenaltyOut::default())
            },
        );
        loss + pen
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
        check_batch(batch, self.data.n(), "logreg_hpo g");
        let ys = y.as_slice();
        let vs = v.map(|v| v.as_slice());
        assert!(
            vs.is_some() || !out.needs_direction(),
            "logreg_hpo g: a product along v needs v"
        );
        let Fused {
            value,
            grad_x,
            grad_y,
            hvp_yy,
            cross_xy,
        } = out;
        let mut gy = grad_y.map(|o| o.as_mut_slice());
        let mut hv = hvp_yy.map(|o| o.as_mut_slice());
        // The data term (the loss does not depend on x): one pass for the loss, ∇ᵧ and ∇²ᵧᵧ·v.
        let loss = if gy.is_some() || hv.is_some() {
            self.data.pass(
                ys,
                if hv.is_some() { vs } else { None },
                batch,
                Weights::Uniform,
                value.is_some(),
                gy.as_deref_mut(),
                hv.as_deref_mut(),
                None,
            )
        } else if value.is_some() {
            self.data.value(ys, batch, Weights::Uniform)
        } else {
            0.0
        };
        // The penalty, one exponential per hyperparameter, for all five outputs.
        let penalty = kernels::dispatch(
            #[inline(always)]
            || {
                self.penalty.apply(
                    x.as_slice(),
                    ys,
                    vs,
                    PenaltyOut {
                        gy,
                        hv,
                        gx: grad_x.map(|o| o.as_mut_slice()),
                        cross: cross_xy.map(|o| o.as_mut_slice()),
                    },
                )
            },
        );
        if let Some(value) = value {
            *value = loss + penalty;
        }
    }
    fn hessian_yy_at<'a>(&'a self, x: &'a Vector, y: &'a Vector) -> Option<HessianOperator<'a>> {
        let held = self.data.hold(y.as_slice())?;
        Some(Box::new(move |v: &Vector, out: &mut Vector| {
            let (ys, vs) = (y.as_slice(), v.as_slice());
            self.data
                .hvp_held(&held, vs, Weights::Uniform, out.as_mut_slice());
            kernels::dispatch(
                #[inline(always)]
                || {
                    self.penalty.apply(
                        x.as_slice(),
                        ys,
                        Some(vs),
                        PenaltyOut {
                            gy: None,
                            hv: Some(out.as_mut_slice()),
                            gx: None,
                            cross: None,
                        },
                    )
                },
            );
        }))
    }
    fn hess_yy_diag(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) -> bool {
        if !matches!(batch, Batch::Full) {
            return false;
        }
        let ys = y.as_slice();
        self.data
            .hess_diag(ys, Weights::Uniform, out.as_mut_slice());
        // The penalty's diagonal: λ of each entry's group (its Hessian along v = 1).
        let ones = vec![1.0; ys.len()];
        self.penalty.apply(
            x.as_slice(),
            ys,
            Some(&ones),
            PenaltyOut {
                gy: None,
                hv: Some(out.as_mut_slice()),
                gx: None,
                cross: None,
            },
        );
        true
    }
    fn value_grad_hess_yy(
        &self,
        x: &Vector,
        y: &Vector,
        batch: Batch<'_>,
        grad: &mut Vector,
        hess: &mut [f64],
    ) -> Option<f64> {
        if !matches!(batch, Batch::Full) {
            return None;
        }
        let ys = y.as_slice();
        let dim = ys.len();
        let loss = self
            .data
            .value_grad_hess(ys, Weights::Uniform, grad.as_mut_slice(), hess)?;
        let gy = grad.as_mut_slice();
        let pen = kernels::dispatch(
            #[inline(always)]
            || {
                self.penalty.apply(
                    x.as_slice(),
                    ys,
                    None,
                    PenaltyOut {
                        gy: Some(gy),
                        ..PenaltyOut::default()
                    },
                )
            },
        );
        // The Hessian of the penalty is diag(λ_{π(m)}).
        let mut m = 0;
        self.penalty.for_each(x.as_slice(), dim, |mm, _, l, _| {
            debug_assert_eq!(m, mm);
            hess[mm * dim + mm] += l;
            m += 1;
        });
        Some(loss + pen)
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
        check_batch(batch, self.data.n(), "logreg_hpo g");
        let (ys, us) = (y.as_slice(), u.as_slice());
        let o = out.as_mut_slice();
        self.penalty
            .for_each(x.as_slice(), ys.len(), |m, k, _, dl| {
                o[m] = dl * ys[m] * us[k]
            });
    }
}

/// Validation and test metrics of the current model.
struct LogregMetrics {
    validation: Arc<LogregOuter>,
    test: Option<LogisticData>,
}

impl TaskMetrics for LogregMetrics {
    fn evaluate(&self, _x: &Vector, y: &Vector) -> Vec<(String, f64)> {
        let (_, acc) = self.validation.data().evaluate(y.as_slice());
        let mut out = vec![("validation_accuracy".to_owned(), acc)];
        if let Some(test) = &self.test {
            let (loss, acc) = test.evaluate(y.as_slice());
            out.push(("test_loss".into(), loss));
            out.push(("test_accuracy".into(), acc));
        }
        out
    }
}

fn targets_of(ds: &Dataset, multiclass: bool, classes: Option<&[f64]>) -> Result<Targets> {
    if multiclass {
        let cl = ds.class_labels()?;
        let Some(classes) = classes else {
            return Ok(Targets::Multiclass {
                k: cl.classes.len(),
                class: cl.class,
            });
        };
        let class = ds
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                classes
                    .iter()
                    .position(|c| c == l)
                    .map(|c| c as u32)
                    .ok_or_else(|| Error::Data {
                        path: "<validation/test labels>".into(),
                        location: format!("sample {i}"),
                        reason: format!("label {l} does not occur in the training labels"),
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Targets::Multiclass {
            class,
            k: classes.len(),
        })
    } else {
        Ok(Targets::Binary(ds.binary_labels()?))
    }
}

fn subsample(ds: Dataset, max: usize, seed: u64, stream: u64) -> Dataset {
    if max == 0 || max >= ds.len() {
        return ds;
    }
    let mut rows: Vec<usize> = (0..ds.len()).collect();
    crate::core::linalg::shuffle(&mut rng_from_seed(seed, stream), &mut rows);
    rows.truncate(max);
    rows.sort_unstable();
    ds.subset(&rows)
}

impl LogregHpoConfig {
    /// Checks the parameters (without reading data).
    pub fn validate(&self) -> Result<()> {
        self.dataset.validate("dataset")?;
        check_in_range("validation_fraction", self.validation_fraction, 0.0, 0.95)?;
        check_in_range("test_fraction", self.test_fraction, 0.0, 0.95)?;
        if self.validation_fraction + self.test_fraction >= 1.0 {
            return Err(Error::config(
                "test_fraction",
                "validation_fraction + test_fraction must be below 1",
            ));
        }
        if self.penalty == Penalty::PerClass && self.task == Task::Binary {
            return Err(Error::config(
                "penalty",
                "`per_class` needs a multiclass task",
            ));
        }
        if let Some(x0) = self.x0 {
            if !x0.is_finite() {
                return Err(Error::config("x0", "must be finite"));
            }
            if self.parametrization == Parametrization::Linear && x0 <= 0.0 {
                return Err(Error::config(
                    "x0",
                    "must be > 0 with the linear parametrization",
                ));
            }
        }
        self.reference.validate()
    }

    /// Loads the data and builds the problem.
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let loaded = self.dataset.load(self.seed)?;
        let name = loaded.name.clone();
        self.build_from(loaded)
            .map_err(|e| crate::data::name_the_source(e, &name))
    }

    fn build_from(&self, loaded: crate::data::LoadedData) -> Result<Problem> {
        let split = split_fractions(
            loaded.train.len(),
            self.validation_fraction,
            self.test_fraction,
            self.seed,
        )?;
        let train = loaded.train.subset(&split.train);
        let validation = if self.validation_fraction > 0.0 {
            loaded.train.subset(&split.validation)
        } else {
            loaded.test.clone().ok_or_else(|| {
                Error::config(
                    "validation_fraction",
                    format!(
                        "dataset `{}` has no test file to validate on: set \
                         validation_fraction > 0",
                        loaded.name
                    ),
                )
            })?
        };
        let test = if self.test_fraction > 0.0 {
            Some(loaded.train.subset(&split.test))
        } else if self.validation_fraction > 0.0 {
            loaded.test
        } else {
            None
        };
        self.build_from_splits(train, validation, test)
    }

    /// Builds the problem on given training, validation and (optional) test sets, which is what
    /// [`build`](Self::build) does after loading and splitting `dataset` (`dataset`,
    /// `validation_fraction` and `test_fraction` are not used here; `max_train`,
    /// `max_validation`, `dense`, `preprocess` and the rest are). For data from memory: the
    /// Python package's `LogRegHPO(X_train, y_train, X_val, y_val)`.
    pub fn build_from_splits(
        &self,
        train: Dataset,
        validation: Dataset,
        test: Option<Dataset>,
    ) -> Result<Problem> {
        let (mut train, mut validation, mut test) = (train, validation, test);
        for (what, set) in [
            ("validation", &validation),
            ("test", test.as_ref().unwrap_or(&validation)),
        ] {
            if set.n_features() != train.n_features() {
                return Err(Error::DimensionMismatch {
                    what: format!("features of the {what} set (those of the training set)"),
                    expected: train.n_features(),
                    found: set.n_features(),
                });
            }
        }
        if train.is_empty() || validation.is_empty() {
            return Err(Error::config(
                "dataset",
                "the training and validation sets need at least one row each",
            ));
        }
        train = subsample(train, self.max_train, self.seed, 31);
        validation = subsample(validation, self.max_validation, self.seed, 32);
        if self.dense {
            train.design.densify();
            validation.design.densify();
            if let Some(t) = &mut test {
                t.design.densify();
            }
        }
        {
            let train_design = train.design.clone();
            let mut all: Vec<&mut crate::data::Design> =
                vec![&mut train.design, &mut validation.design];
            if let Some(t) = &mut test {
                all.push(&mut t.design);
            }
            self.preprocess.apply(&train_design, &mut all)?;
        }
        // Classes: every label value of the training, validation and test rows (a class absent
        // from the training rows keeps an untrained column).
        let mut classes = train.class_labels()?.classes;
        classes.extend(validation.class_labels()?.classes);
        if let Some(t) = &test {
            classes.extend(t.class_labels()?.classes);
        }
        classes.sort_by(f64::total_cmp);
        classes.dedup();
        let multiclass = match self.task {
            Task::Auto => classes.len() > 2,
            Task::Binary => false,
            Task::Multiclass => true,
        };
        if self.penalty == Penalty::PerClass && !multiclass {
            return Err(Error::config(
                "penalty",
                "`per_class` needs a multiclass task",
            ));
        }
        let class_map = multiclass.then_some(classes.as_slice());
        let train_data = LogisticData::new(
            train.design.clone(),
            targets_of(&train, multiclass, class_map)?,
            false,
        )
        .with_precision(self.precision);
        let val_data = LogisticData::new(
            validation.design.clone(),
            targets_of(&validation, multiclass, class_map)?,
            false,
        )
        .with_precision(self.precision);
        let test_data = test
            .as_ref()
            .map(|t| {
                Ok::<_, Error>(
                    LogisticData::new(
                        t.design.clone(),
                        targets_of(t, multiclass, class_map)?,
                        false,
                    )
                    .with_precision(self.precision),
                )
            })
            .transpose()?;
        let g = Arc::new(LogregInner::new(
            train_data,
            self.penalty,
            self.parametrization,
        ));
        let (dx, dy) = g.dims();
        let f = Arc::new(ValidationLoss::new(val_data, dx, "logreg_hpo f"));
        let mut rng = rng_from_seed(self.seed, 33);
        let y0 = if self.y0_random {
            normal_vector(&mut rng, dy)
        } else {
            Vector::zeros(dy)
        };
        let x0 = match self.x0 {
            Some(v) => Vector::from_fn(dx, |_| v),
            None => Vector::from_fn(dx, |_| {
                let u = uniform01(&mut rng).max(1e-12);
                match self.parametrization {
                    Parametrization::Exp => u.ln(),
                    Parametrization::Linear => u,
                }
            }),
        };
        let metrics = LogregMetrics {
            validation: f.clone(),
            test: test_data,
        };
        let mut problem = Problem::from_arcs("logreg_hpo", f.clone(), g.clone())?
            .with_task_metrics(metrics)
            .with_start(x0, y0.clone())?;
        if self.reference.enabled {
            problem = problem.with_reference(NewtonReference::new(
                f,
                g,
                Vector::zeros(dy),
                self.reference,
            ));
        }
        Ok(problem)
    }
}
