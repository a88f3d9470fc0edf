//! # Deep hyper-representation on images (ESJ's MNIST experiment, algorithms.md §4.5–4.6)
//!
//! The outer variable x is a representation network φₓ (an MLP of [`crate::nn`], or with
//! `model = "conv"` convolution blocks and a dense layer, LeNet-like as in ESJ's script; its
//! outputs go through its activation: d features); the inner variable y = W is a linear softmax head on
//! those features plus a bias row, (d + 1) × C, fitted with a ridge penalty:
//!
//! ```text
//! g(x, W) = (1/n) Σᵢ CE([φₓ(aᵢ), 1] W, cᵢ) + (ρ/2) ‖W‖²     (inner images)
//! f(x, W) = (1/n') Σᵢ CE([φₓ(a'ᵢ), 1] W, c'ᵢ)               (outer, validation images)
//! ```
//!
//! g is strongly convex in W (ρ > 0), so the Newton-CG reference gives the exact F(x) and ∇F(x).
//! As in ESJ's script, the inner data is the MNIST test set and the outer data another MNIST
//! sample (here the shipped 5,000-image subset, split into validation and test rows).
//!
//! Oracles are exact, batched over the batch's rows with faer's GEMM. With F = [σ(Z), 1] the
//! features (Z the network's outputs), O = F W, P = softmax(O), δ = (P − T)/B and
//! R{δ} = P ⊙ (R{O} − ⟨P, R{O}⟩)/B:
//! - ∇_W g = Fᵀ δ + ρ W, ∇²_WW g · V = Fᵀ R{δ} + ρ V with R{O} = F V;
//! - ∇ₓ g = Jᵀ[(δ W̄ᵀ) ⊙ σ'(Z)] (W̄: W without its bias row; Jᵀ by backpropagation);
//! - ∇²ₓW g · V = Jᵀ[(R{δ} W̄ᵀ + δ V̄ᵀ) ⊙ σ'(Z)] with R{O} = F V;
//! - ∇²_Wx g · u = R{F}ᵀ δ + Fᵀ R{δ}, R{F} = [σ'(Z) ⊙ J u, 0] (J u by the R-forward pass),
//!   R{O} = R{F} W.
//!
//! The network's forward pass is kept between calls at the same x and batch: a reference
//! solve (hundreds of calls at one x) and a stochastic step (several oracles on one batch) run
//! it once.
//!
//! Task metrics: `test_loss` and `test_accuracy` of (x, W) on the test rows.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::common::{NewtonReference, ReferenceConfig};
use crate::core::error::{Error, Result, check_at_least};
use crate::core::linalg::{rng_from_seed, shuffle};
use crate::core::{Batch, Objective, Problem, TaskMetrics, Vector, VectorExt};
use crate::data::{Dataset, DatasetSpec};
use crate::nn::{
    Activation, ConvBlock, ConvNet, ImageShape, Loss, Mlp, Network, NetworkWorkspace, Real,
    Targets, correct_predictions, output_loss, output_loss_r,
};

/// The representation network of [`HyperRepresentationDeepConfig`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepresentationModel {
    /// A multilayer perceptron (`hidden`).
    #[default]
    Mlp,
    /// Convolution blocks (`filters`) and a dense layer: the LeNet-like features of ESJ's
    /// script, with 3×3 convolutions.
    Conv,
}

/// Parameters of the deep hyper-representation problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HyperRepresentationDeepConfig {
    /// Images of the inner problem (the head is fitted on them).
    pub inner: DatasetSpec,
    /// Images of the outer problem: validation rows, then test rows.
    pub outer: DatasetSpec,
    /// Inner rows kept (a seeded choice).
    pub inner_rows: usize,
    /// Validation rows (the outer objective).
    pub validation_rows: usize,
    /// Test rows (the metrics), disjoint from the validation rows.
    pub test_rows: usize,
    /// The representation network: `mlp` (default) or `conv`.
    pub model: RepresentationModel,
    /// Hidden widths of the representation network (`mlp`).
    pub hidden: Vec<usize>,
    /// Filters of each convolution block (`conv`: 3×3, padding 1, activation, 2×2 max-pool;
    /// a LeNet-like pair by default), then a dense layer to the features.
    pub filters: Vec<usize>,
    /// [height, width, channels] of one image (`conv`); default: square, one channel.
    pub image: Option<[usize; 3]>,
    /// d: features (the network's output width).
    pub features: usize,
    /// The network's activation, also applied to its outputs.
    pub activation: Activation,
    /// ρ: ridge on the head.
    pub ridge: f64,
    /// The Newton-CG reference.
    pub reference: ReferenceConfig,
    /// Seed of the row choice and of the start.
    pub seed: u64,
}

impl Default for HyperRepresentationDeepConfig {
    fn default() -> Self {
        Self {
            inner: DatasetSpec::shared("mnist_test"),
            outer: DatasetSpec::shared("mnist_5k"),
            inner_rows: 2000,
            validation_rows: 2000,
            test_rows: 1000,
            model: RepresentationModel::Mlp,
            hidden: vec![128],
            filters: vec![6, 16],
            image: None,
            features: 32,
            activation: Activation::Sigmoid,
            ridge: 0.01,
            reference: ReferenceConfig::default(),
            seed: 0,
        }
    }
}

/// Images with their classes.
struct Images {
    pixels: Arc<[f64]>,
    classes: Vec<usize>,
}

/// Buffers of one objective for batches of one size.
#[derive(Default)]
struct Scratch {
    ws: NetworkWorkspace,
    /// σ'(Z) (rows × d), for the products that go back through the features.
    slopes: Vec<f64>,
    /// F = [σ(Z), 1] (rows × (d + 1)) and its R-version.
    features: Vec<f64>,
    r_features: Vec<f64>,
    /// O, P, δ, R{O}, R{δ} (rows × C).
    outputs: Vec<f64>,
    probs: Vec<f64>,
    delta: Vec<f64>,
    r_outputs: Vec<f64>,
    r_delta: Vec<f64>,
    /// The upstream gradient of the network's outputs (rows × d).
    upstream: Vec<f64>,
    /// The key of the network forward pass whose features are in the buffers (the workspace
    /// holds its activations): its parameters and its batch. A reference solve calls g hundreds
    /// of times at one x on the full batch, and a stochastic solver calls several oracles at
    /// one (x, batch) per step; the network runs once for each.
    forward_key: ForwardKey,
}

/// See [`Scratch::forward_key`]; reused buffers, so a new key allocates nothing.
#[derive(Default)]
struct ForwardKey {
    valid: bool,
    x: Vec<f64>,
    full: bool,
    rows: Vec<usize>,
}

impl ForwardKey {
    fn matches(&self, x: &[f64], rows: Option<&[usize]>) -> bool {
        self.valid
            && self.x.as_slice() == x
            && match rows {
                None => self.full,
                Some(r) => !self.full && self.rows.as_slice() == r,
            }
    }

    fn set(&mut self, x: &[f64], rows: Option<&[usize]>) {
        self.valid = true;
        self.x.clear();
        self.x.extend_from_slice(x);
        self.full = rows.is_none();
        self.rows.clear();
        self.rows.extend_from_slice(rows.unwrap_or(&[]));
    }
}

/// g (with ρ) or f (ρ = 0) on one set of images.
pub struct DeepRepresentationObjective {
    net: Arc<Network>,
    images: Images,
    classes: usize,
    ridge: f64,
    scratch: Mutex<Scratch>,
}

impl DeepRepresentationObjective {
    fn n(&self) -> usize {
        self.images.classes.len()
    }
    fn d(&self) -> usize {
        self.net.outputs()
    }
    fn head(&self) -> usize {
        (self.d() + 1) * self.classes
    }

    fn rows(batch: Batch<'_>) -> Option<&[usize]> {
        match batch {
            Batch::Full => None,
            Batch::Indices(idx) => Some(idx),
        }
    }

    /// The forward pass: features, outputs, probabilities and δ (and the loss, without ρ).
    fn forward(&self, x: &[f64], w: &[f64], batch: Batch<'_>, s: &mut Scratch) -> f64 {
        let rows = Self::rows(batch);
        if let Some(idx) = rows {
            assert!(!idx.is_empty(), "hyper_representation_deep: empty batch");
            assert!(
                idx.iter().all(|&i| i < self.n()),
                "hyper_representation_deep: batch index out of range"
            );
        }
        let (d, c) = (self.d(), self.classes);
        if !s.forward_key.matches(x, rows) {
            let z = self.net.outputs_of(x, &self.images.pixels, rows, &mut s.ws);
            let count = z.len() / d;
            let activation = self.net.activation();
            s.slopes.resize(count * d, 0.0);
            s.features.resize(count * (d + 1), 0.0);
            for r in 0..count {
                for k in 0..d {
                    let zk = z[r * d + k];
                    let a = activation.value(zk);
                    s.slopes[r * d + k] = activation.derivative(zk, a);
                    s.features[r * (d + 1) + k] = a;
                }
                s.features[r * (d + 1) + d] = 1.0;
            }
            s.forward_key.set(x, rows);
        }
        let count = s.slopes.len() / d;
        for buffer in [
            &mut s.outputs,
            &mut s.probs,
            &mut s.delta,
            &mut s.r_outputs,
            &mut s.r_delta,
        ] {
            buffer.resize(count * c, 0.0);
        }
        s.upstream.resize(count * d, 0.0);
        s.r_features.resize(count * (d + 1), 0.0);
        f64::gemm(
            &mut s.outputs,
            &s.features,
            w,
            count,
            d + 1,
            c,
            false,
            false,
            false,
        );
        output_loss(
            Loss::SoftmaxCrossEntropy,
            &s.outputs,
            c,
            Targets::Classes(&self.images.classes),
            rows,
            &mut s.probs,
            &mut s.delta,
            None,
        )
    }

    /// R{O} = (features) · V into `r_outputs`, then R{δ}.
    fn r_delta(&self, features_are_r: bool, head: &[f64], s: &mut Scratch) {
        let (d, c) = (self.d(), self.classes);
        let count = s.outputs.len() / c;
        let features = if features_are_r {
            &s.r_features
        } else {
            &s.features
        };
        f64::gemm(
            &mut s.r_outputs,
            features,
            head,
            count,
            d + 1,
            c,
            false,
            false,
            false,
        );
        output_loss_r(
            Loss::SoftmaxCrossEntropy,
            &s.probs,
            &s.r_outputs,
            c,
            &mut s.r_delta,
        );
    }

    /// Backpropagates `upstream` ⊙ σ'(Z) through the network into `out`.
    fn backpropagate(&self, x: &[f64], s: &mut Scratch, out: &mut [f64]) {
        for (u, &slope) in s.upstream.iter_mut().zip(&s.slopes) {
            *u *= slope;
        }
        self.net.backward_from(x, &s.upstream, out, &mut s.ws);
    }

    fn scratch(&self) -> std::sync::MutexGuard<'_, Scratch> {
        self.scratch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The mean loss and accuracy of (x, W) on every row (for the metrics).
    fn loss_and_accuracy(&self, x: &Vector, y: &Vector) -> (f64, f64) {
        let mut s = self.scratch();
        let loss = self.forward(x.as_slice(), y.as_slice(), Batch::Full, &mut s);
        let correct = correct_predictions(&s.outputs, self.classes, &self.images.classes);
        (loss, correct as f64 / self.n() as f64)
    }
}

/// Which output-side gradient a product uses: δ or R{δ}.
#[derive(Clone, Copy)]
enum Signal {
    Delta,
    RDelta,
}

impl DeepRepresentationObjective {
    /// out = Fᵀ D + ρ r (D = δ: the head's gradient, r = W; D = R{δ}: its Hessian product,
    /// r = V).
    fn head_product(&self, s: &Scratch, which: Signal, ridge_term: &[f64], out: &mut [f64]) {
        let (d, c) = (self.d(), self.classes);
        let count = s.delta.len() / c;
        let signal = match which {
            Signal::Delta => &s.delta,
            Signal::RDelta => &s.r_delta,
        };
        f64::gemm(
            out,
            &s.features,
            signal,
            d + 1,
            count,
            c,
            true,
            false,
            false,
        );
        for (o, &r) in out.iter_mut().zip(ridge_term) {
            *o += self.ridge * r;
        }
    }

    /// upstream (+)= D H̄ᵀ, with H̄ the first d rows (no bias row) of a head-shaped `head`.
    fn upstream_product(&self, s: &mut Scratch, which: Signal, head: &[f64], accumulate: bool) {
        let (d, c) = (self.d(), self.classes);
        let count = s.delta.len() / c;
        let s = &mut *s;
        let signal = match which {
            Signal::Delta => &s.delta,
            Signal::RDelta => &s.r_delta,
        };
        f64::gemm(
            &mut s.upstream,
            signal,
            &head[..d * c],
            count,
            c,
            d,
            false,
            true,
            accumulate,
        );
    }
}

impl Objective for DeepRepresentationObjective {
    fn dims(&self) -> (usize, usize) {
        (self.net.num_params(), self.head())
    }
    fn n_samples(&self) -> usize {
        self.n()
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        let mut s = self.scratch();
        self.forward(x.as_slice(), y.as_slice(), batch, &mut s) + 0.5 * self.ridge * y.norm_sq()
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let mut s = self.scratch();
        let (xs, w) = (x.as_slice(), y.as_slice());
        self.forward(xs, w, batch, &mut s);
        // upstream = δ W̄ᵀ.
        self.upstream_product(&mut s, Signal::Delta, w, false);
        self.backpropagate(xs, &mut s, out.as_mut_slice());
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let mut s = self.scratch();
        self.forward(x.as_slice(), y.as_slice(), batch, &mut s);
        // Fᵀ δ + ρ W.
        self.head_product(&s, Signal::Delta, y.as_slice(), out.as_mut_slice());
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let mut s = self.scratch();
        self.forward(x.as_slice(), y.as_slice(), batch, &mut s);
        self.r_delta(false, v.as_slice(), &mut s);
        // Fᵀ R{δ} + ρ V.
        self.head_product(&s, Signal::RDelta, v.as_slice(), out.as_mut_slice());
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let mut s = self.scratch();
        let (xs, w, vs) = (x.as_slice(), y.as_slice(), v.as_slice());
        self.forward(xs, w, batch, &mut s);
        self.r_delta(false, vs, &mut s);
        // upstream = R{δ} W̄ᵀ + δ V̄ᵀ.
        self.upstream_product(&mut s, Signal::RDelta, w, false);
        self.upstream_product(&mut s, Signal::Delta, vs, true);
        self.backpropagate(xs, &mut s, out.as_mut_slice());
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let mut s = self.scratch();
        let (xs, w) = (x.as_slice(), y.as_slice());
        self.forward(xs, w, batch, &mut s);
        let (d, c) = (self.d(), self.classes);
        let count = s.delta.len() / c;
        let s = &mut *s;
        let (_, jvp) = self.net.outputs_and_jvp(
            xs,
            u.as_slice(),
            &self.images.pixels,
            Self::rows(batch),
            &mut s.ws,
        );
        for r in 0..count {
            for k in 0..d {
                s.r_features[r * (d + 1) + k] = s.slopes[r * d + k] * jvp[r * d + k];
            }
            s.r_features[r * (d + 1) + d] = 0.0;
        }
        self.r_delta(true, w, s);
        let o = out.as_mut_slice();
        f64::gemm(
            o,
            &s.r_features,
            &s.delta,
            d + 1,
            count,
            c,
            true,
            false,
            false,
        );
        f64::gemm(
            o,
            &s.features,
            &s.r_delta,
            d + 1,
            count,
            c,
            true,
            false,
            true,
        );
    }
}

/// `test_loss` and `test_accuracy` on the test rows.
struct TestScores(DeepRepresentationObjective);

impl TaskMetrics for TestScores {
    fn evaluate(&self, x: &Vector, y: &Vector) -> Vec<(String, f64)> {
        let (loss, accuracy) = self.0.loss_and_accuracy(x, y);
        vec![
            ("test_loss".into(), loss),
            ("test_accuracy".into(), accuracy),
        ]
    }
}

impl HyperRepresentationDeepConfig {
    /// Checks the parameters (the data is checked when loaded).
    pub fn validate(&self) -> Result<()> {
        check_at_least("inner_rows", self.inner_rows, 1)?;
        check_at_least("validation_rows", self.validation_rows, 1)?;
        check_at_least("test_rows", self.test_rows, 1)?;
        check_at_least("features", self.features, 1)?;
        if self.hidden.contains(&0) {
            return Err(Error::config("hidden", "every hidden width must be >= 1"));
        }
        if self.filters.contains(&0) {
            return Err(Error::config("filters", "every block needs >= 1 filter"));
        }
        if self.model == RepresentationModel::Conv && self.features < 2 {
            return Err(Error::config(
                "features",
                "must be >= 2 with model = \"conv\" (its output layer is at least 2 wide)",
            ));
        }
        if !(self.ridge.is_finite() && self.ridge > 0.0) {
            return Err(Error::config(
                "ridge",
                "must be > 0 (the inner problem must be strongly convex)",
            ));
        }
        self.inner.validate("inner")?;
        self.outer.validate("outer")?;
        self.reference.validate()
    }

    /// `count` rows of `spec`'s file chosen by the seed (`skip` rows of the same order skipped
    /// first), pixels scaled so that the largest is 1.
    fn rows(
        &self,
        spec: &DatasetSpec,
        field: &str,
        skip: usize,
        count: usize,
        stream: u64,
    ) -> Result<(Dataset, Images)> {
        let data = spec.load(self.seed)?.train;
        let available = data.len().saturating_sub(skip);
        if available < count {
            return Err(Error::config(
                field,
                format!(
                    "{} has {} rows; {count} are asked for (after {skip} used elsewhere)",
                    spec.source(),
                    data.len()
                ),
            ));
        }
        let mut order: Vec<usize> = (0..data.len()).collect();
        shuffle(&mut rng_from_seed(self.seed, stream), &mut order);
        let subset = data.subset(&order[skip..skip + count]);
        let scale = subset.design.max_abs();
        let scale = if scale > 0.0 { 1.0 / scale } else { 1.0 };
        let mut pixels = Vec::with_capacity(count * subset.n_features());
        for i in 0..count {
            pixels.extend(subset.design.dense_row(i).iter().map(|v| v * scale));
        }
        let mut classes = Vec::with_capacity(count);
        for (i, &label) in subset.labels.iter().enumerate() {
            if !(label >= 0.0 && label.fract() == 0.0 && label < 1e6) {
                return Err(Error::config(
                    field,
                    format!(
                        "row {i} of {}: label {label} is not a class number 0, 1, 2, …",
                        spec.source()
                    ),
                ));
            }
            classes.push(label as usize);
        }
        Ok((
            subset,
            Images {
                pixels: pixels.into(),
                classes,
            },
        ))
    }

    /// Loads the data and builds the problem.
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let (inner_data, inner) = self.rows(&self.inner, "inner_rows", 0, self.inner_rows, 70)?;
        let (outer_data, validation) =
            self.rows(&self.outer, "validation_rows", 0, self.validation_rows, 71)?;
        let (_, test) = self.rows(
            &self.outer,
            "test_rows",
            self.validation_rows,
            self.test_rows,
            71,
        )?;
        let width = inner_data.n_features();
        if outer_data.n_features() != width {
            return Err(Error::config(
                "outer",
                format!(
                    "{} has {} numbers per row, {} has {width}",
                    self.outer.source(),
                    outer_data.n_features(),
                    self.inner.source()
                ),
            ));
        }
        let classes = [&inner, &validation, &test]
            .iter()
            .flat_map(|set| set.classes.iter())
            .max()
            .map_or(0, |&c| c + 1)
            .max(2);
        let mut sizes = vec![width];
        sizes.extend(&self.hidden);
        sizes.push(self.features);
        let net = Arc::new(match self.model {
            RepresentationModel::Mlp => Network::Mlp(Mlp::new(&sizes, self.activation, Loss::Mse)?),
            RepresentationModel::Conv => {
                let shape = ImageShape::of_rows(self.image, width, &self.inner.source())?;
                let blocks: Vec<ConvBlock> =
                    self.filters.iter().map(|&f| ConvBlock::conv4(f)).collect();
                Network::Conv(ConvNet::new(
                    shape,
                    &blocks,
                    self.activation,
                    self.features,
                )?)
            }
        });
        let make = |images: Images, ridge: f64| DeepRepresentationObjective {
            net: net.clone(),
            images,
            classes,
            ridge,
            scratch: Mutex::new(Scratch::default()),
        };
        let g = Arc::new(make(inner, self.ridge));
        let f = Arc::new(make(validation, 0.0));
        let metrics = TestScores(make(test, 0.0));
        let init = net.init(&mut rng_from_seed(self.seed, 72));
        let x0 = Vector::from_fn(init.len(), |i| init[i]);
        let y0 = Vector::zeros(g.head());
        let f_dyn: Arc<dyn Objective> = f.clone();
        let g_dyn: Arc<dyn Objective> = g.clone();
        let mut problem = Problem::from_arcs("hyper_representation_deep", f_dyn, g_dyn)?
            .with_start(x0, y0.clone())?
            .with_task_metrics(metrics);
        if self.reference.enabled {
            problem = problem.with_reference(NewtonReference::new(f, g, y0, self.reference));
        }
        Ok(problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::linalg::normal_vector;

    fn small(activation: Activation) -> HyperRepresentationDeepConfig {
        HyperRepresentationDeepConfig {
            inner: DatasetSpec::shared("digits"),
            outer: DatasetSpec::shared("digits"),
            inner_rows: 40,
            validation_rows: 30,
            test_rows: 20,
            hidden: vec![7],
            features: 5,
            activation,
            ..Default::default()
        }
    }

    /// Every oracle of f and g against central differences, at a point with a non-zero head.
    #[test]
    fn oracles_match_finite_differences() {
        let conv = HyperRepresentationDeepConfig {
            model: RepresentationModel::Conv,
            filters: vec![3, 2],
            ..small(Activation::Tanh)
        };
        let mut configs: Vec<_> = [Activation::Sigmoid, Activation::Tanh, Activation::Softplus]
            .into_iter()
            .map(|a| (format!("mlp {a:?}"), small(a)))
            .collect();
        configs.push(("conv tanh".into(), conv));
        for (activation, config) in configs {
            let problem = config.build().unwrap();
            let (f, g) = problem.uncounted_objectives();
            let (x, _) = problem.start();
            let mut rng = rng_from_seed(9, 0);
            let y = normal_vector(&mut rng, g.dims().1);
            let u = normal_vector(&mut rng, x.nrows());
            let v = normal_vector(&mut rng, y.nrows());
            let h = 1e-5;
            let shift = |p: &Vector, d: &Vector, s: f64| p + d * faer::Scale(s);
            // Central differences: O(h²) truncation plus rounding/h ≈ 1e-11; 1e-6 relative
            // leaves a wide margin and any wrong term is O(1).
            let close = |a: &Vector, b: &Vector, what: &str| {
                let err = (a - b).norm() / b.norm().max(1e-12);
                assert!(err < 1e-6, "{activation:?} {what}: {err:e}");
            };
            for (name, objective) in [("f", &f), ("g", &g)] {
                for batch in [Batch::Full, Batch::Indices(&[3, 0, 3, 17])] {
                    let grads = |x: &Vector, y: &Vector| {
                        let (mut gx, mut gy) = (Vector::zeros(x.nrows()), Vector::zeros(y.nrows()));
                        objective.grad_x(x, y, batch, &mut gx);
                        objective.grad_y(x, y, batch, &mut gy);
                        (gx, gy)
                    };
                    let (gx, gy) = grads(&x, &y);
                    let fd_x = (objective.value(&shift(&x, &u, h), &y, batch)
                        - objective.value(&shift(&x, &u, -h), &y, batch))
                        / (2.0 * h);
                    let fd_y = (objective.value(&x, &shift(&y, &v, h), batch)
                        - objective.value(&x, &shift(&y, &v, -h), batch))
                        / (2.0 * h);
                    assert!(
                        (fd_x - gx.dot(&u)).abs() < 1e-6 * fd_x.abs().max(1.0),
                        "{name} ∇x"
                    );
                    assert!(
                        (fd_y - gy.dot(&v)).abs() < 1e-6 * fd_y.abs().max(1.0),
                        "{name} ∇y"
                    );
                    let (gxp, gyp) = grads(&x, &shift(&y, &v, h));
                    let (gxm, gym) = grads(&x, &shift(&y, &v, -h));
                    let mut hv = Vector::zeros(y.nrows());
                    objective.hvp_yy(&x, &y, &v, batch, &mut hv);
                    close(&hv, &((&gyp - &gym) * faer::Scale(0.5 / h)), "hvp_yy");
                    let mut cxy = Vector::zeros(x.nrows());
                    objective.cross_xy(&x, &y, &v, batch, &mut cxy);
                    close(&cxy, &((&gxp - &gxm) * faer::Scale(0.5 / h)), "cross_xy");
                    let (_, gyp) = grads(&shift(&x, &u, h), &y);
                    let (_, gym) = grads(&shift(&x, &u, -h), &y);
                    let mut cyx = Vector::zeros(y.nrows());
                    objective.cross_yx(&x, &y, &u, batch, &mut cyx);
                    close(&cyx, &((&gyp - &gym) * faer::Scale(0.5 / h)), "cross_yx");
                }
            }
        }
    }

    #[test]
    fn the_kept_forward_pass_never_serves_another_batch_or_point() {
        let problem = small(Activation::Tanh).build().unwrap();
        let (_, g) = problem.uncounted_objectives();
        let (x, _) = problem.start();
        let y = normal_vector(&mut rng_from_seed(2, 0), g.dims().1);
        let mut x2 = x.clone();
        x2[3] += 0.5;
        let (a, b): (&[usize], &[usize]) = (&[1, 2, 3], &[4, 2, 9]);
        let fresh = |x: &Vector, batch: Batch<'_>| {
            // A new problem: no kept pass.
            let (_, g) = small(Activation::Tanh)
                .build()
                .unwrap()
                .uncounted_objectives();
            let mut out = Vector::zeros(x.nrows());
            g.grad_x(x, &y, batch, &mut out);
            out
        };
        for (point, batch) in [
            (&x, Batch::Indices(a)),
            (&x, Batch::Indices(b)),
            (&x, Batch::Full),
            (&x2, Batch::Full),
            (&x2, Batch::Indices(a)),
            (&x, Batch::Indices(a)),
        ] {
            let mut out = Vector::zeros(x.nrows());
            g.grad_x(point, &y, batch, &mut out);
            assert_eq!(out, fresh(point, batch));
        }
    }

    #[test]
    fn the_reference_and_metrics_are_consistent() {
        let problem = small(Activation::Sigmoid).build().unwrap();
        let (x, y) = problem.start();
        let metrics = problem.metrics(&x, &y, None).unwrap();
        // A zero head predicts uniformly: CE = ln C on every set (C = 10 digits).
        assert!((metrics["test_loss"] - 10f64.ln()).abs() < 1e-12);
        assert!((metrics["outer_value"] - 10f64.ln()).abs() < 1e-12);
        // The reference: W*(x) is inner-stationary, F(x) = f(x, W*(x)), and ∇F(x) (from the
        // cross products and Newton-CG) matches central differences of F along a direction.
        let reference = problem.reference().unwrap();
        let point = reference.evaluate(&x).unwrap();
        let w_star = point.y_star.unwrap();
        let (f, g) = problem.uncounted_objectives();
        let mut gy = Vector::zeros(w_star.nrows());
        g.grad_y(&x, &w_star, Batch::Full, &mut gy);
        assert!(gy.norm() < 1e-7, "{:e}", gy.norm());
        assert_eq!(point.value, f.value(&x, &w_star, Batch::Full));
        assert_eq!(metrics["value"], point.value);
        let u = normal_vector(&mut rng_from_seed(4, 0), x.nrows());
        let h = 1e-4;
        let value = |s: f64| {
            reference
                .evaluate(&(&x + &u * faer::Scale(s)))
                .unwrap()
                .value
        };
        let fd = (value(h) - value(-h)) / (2.0 * h);
        let exact = point.hypergradient.dot(&u);
        // O(h²) truncation ≈ 1e-8 relative, inner solves to ‖∇g‖ ≤ 1e-12: 1e-5 is ample, and
        // a wrong cross term is O(1).
        assert!(
            (fd - exact).abs() < 1e-5 * exact.abs().max(1e-3),
            "{fd} vs {exact}"
        );
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        let too_many = HyperRepresentationDeepConfig {
            validation_rows: 1700,
            test_rows: 200,
            ..small(Activation::Sigmoid)
        };
        let err = too_many.build().unwrap_err().to_string();
        assert!(err.contains("1797 rows"), "{err}");
        let mismatch = HyperRepresentationDeepConfig {
            outer: DatasetSpec::shared("breast_cancer"),
            ..small(Activation::Sigmoid)
        };
        let err = mismatch.build().unwrap_err().to_string();
        assert!(err.contains("numbers per row"), "{err}");
        for bad in [
            HyperRepresentationDeepConfig {
                ridge: 0.0,
                ..small(Activation::Sigmoid)
            },
            HyperRepresentationDeepConfig {
                hidden: vec![0],
                ..small(Activation::Sigmoid)
            },
            HyperRepresentationDeepConfig {
                model: RepresentationModel::Conv,
                filters: vec![0],
                ..small(Activation::Sigmoid)
            },
        ] {
            assert!(bad.build().is_err());
        }
        let narrow = HyperRepresentationDeepConfig {
            model: RepresentationModel::Conv,
            features: 1,
            ..small(Activation::Sigmoid)
        };
        let err = narrow.build().unwrap_err().to_string();
        assert!(err.contains("features"), "{err}");
        let not_an_image = HyperRepresentationDeepConfig {
            model: RepresentationModel::Conv,
            image: Some([4, 4, 1]),
            ..small(Activation::Sigmoid)
        };
        let err = not_an_image.build().unwrap_err().to_string();
        assert!(err.contains("not a 4×4×1 image"), "{err}");
    }
}
