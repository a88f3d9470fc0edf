//! Small neural networks on flat parameter slices, with exact second-order oracles: no tensor
//! framework, no finite differences.
//!
//! A network's forward pass and gradient (backward, vector–Jacobian) are written once,
//! generically over the scalar type [`Real`]. On `f64` they are the production code (matrix
//! products through faer's cache-blocked GEMM); on num-dual's [`Dual64`] with
//! the dual parts of the parameters set to a direction v, the dual part of the gradient is the
//! exact Hessian-vector product H·v, the independent check of the hand-written R-op
//! (Pearlmutter's forward pass over the backward pass), which gives H·v at about twice a
//! gradient's cost in `f64` ([`Mlp::hvp`]).
//!
//! - [`Activation`]: tanh, relu, sigmoid, softplus, with first and second derivatives;
//! - [`Loss`]: ½ squared error and softmax cross-entropy;
//! - [`Mlp`]: a multilayer perceptron, its [`Workspace`] (buffers reused across calls: a step
//!   allocates nothing), loss and gradient, and the R-op;
//! - [`ConvNet`]: 3×3 convolutions (stride, padding), 2×2 max-pool and a softmax head, conv-4
//!   among them, with its [`ConvWorkspace`];
//! - [`Network`]: either, behind one set of `f64` calls (what the network problems hold).

pub mod conv;
pub mod mlp;

pub use conv::{ConvBlock, ConvNet, ConvWorkspace, ImageShape};
pub use mlp::{Mlp, Workspace};

use faer::{Accum, MatMut, MatRef, Par};
use num_dual::{Dual64, DualNum};

/// The scalar type of network code: `f64`, or a dual number for exact derivative checks.
pub trait Real: DualNum<Primitive = f64> + Copy + Send + Sync {
    /// C = op(A) · op(B), or C += op(A) · op(B) with `accumulate`, all row-major: op(A) is
    /// m × k (A is stored k × m when `ta`), op(B) is k × n (B is stored n × k when `tb`), C is
    /// m × n.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        c: &mut [Self],
        a: &[Self],
        b: &[Self],
        m: usize,
        k: usize,
        n: usize,
        ta: bool,
        tb: bool,
        accumulate: bool,
    );

    /// eˣ for the activations: in f64 the crate's branch-free polynomial (a few ulps from the
    /// correctly rounded value, inlined, so activation loops need no libm call), for dual
    /// numbers their own exp.
    fn exp_fast(self) -> Self;
}

impl Real for f64 {
    #[inline(always)]
    fn exp_fast(self) -> f64 {
        crate::problems::kernels::exp(self)
    }

    fn gemm(
        c: &mut [f64],
        a: &[f64],
        b: &[f64],
        m: usize,
        k: usize,
        n: usize,
        ta: bool,
        tb: bool,
        accumulate: bool,
    ) {
        let a = if ta {
            MatRef::from_row_major_slice(a, k, m).transpose()
        } else {
            MatRef::from_row_major_slice(a, m, k)
        };
        let b = if tb {
            MatRef::from_row_major_slice(b, n, k).transpose()
        } else {
            MatRef::from_row_major_slice(b, k, n)
        };
        let c = MatMut::from_row_major_slice_mut(c, m, n);
        let accum = if accumulate {
            Accum::Add
        } else {
            Accum::Replace
        };
        faer::linalg::matmul::matmul(c, accum, a, b, 1.0, Par::Seq);
    }
}

impl Real for Dual64 {
    fn exp_fast(self) -> Dual64 {
        self.exp()
    }

    fn gemm(
        c: &mut [Dual64],
        a: &[Dual64],
        b: &[Dual64],
        m: usize,
        k: usize,
        n: usize,
        ta: bool,
        tb: bool,
        accumulate: bool,
    ) {
        naive_gemm(c, a, b, m, k, n, ta, tb, accumulate);
    }
}

/// The plain triple loop (the reference for dual numbers and for tests).
#[allow(clippy::too_many_arguments)]
pub fn naive_gemm<T: Real>(
    c: &mut [T],
    a: &[T],
    b: &[T],
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    accumulate: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let mut sum = if accumulate { c[i * n + j] } else { T::zero() };
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                sum += av * bv;
            }
            c[i * n + j] = sum;
        }
    }
}

/// A hidden layer's activation function σ, applied elementwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// tanh z.
    Tanh,
    /// max(z, 0) (derivative 0 at 0).
    Relu,
    /// 1 / (1 + e⁻ᶻ).
    Sigmoid,
    /// ln(1 + eᶻ), computed without overflow.
    Softplus,
}

impl Activation {
    /// σ(z).
    pub fn value<T: Real>(self, z: T) -> T {
        match self {
            Activation::Tanh => tanh(z),
            Activation::Relu => {
                if z.re() > 0.0 {
                    z
                } else {
                    T::zero()
                }
            }
            Activation::Sigmoid => sigmoid(z),
            Activation::Softplus => {
                // ln(1 + eᶻ) = max(z, 0) + ln(1 + e^−|z|).
                if z.re() > 0.0 {
                    z + (-z).exp().ln_1p()
                } else {
                    z.exp().ln_1p()
                }
            }
        }
    }

    /// σ'(z), given z and a = σ(z).
    pub fn derivative<T: Real>(self, z: T, a: T) -> T {
        match self {
            Activation::Tanh => T::one() - a * a,
            Activation::Relu => {
                if z.re() > 0.0 {
                    T::one()
                } else {
                    T::zero()
                }
            }
            Activation::Sigmoid => a * (T::one() - a),
            Activation::Softplus => sigmoid(z),
        }
    }

    /// σ''(z), given z and a = σ(z) (f64 only: the R-op's term).
    pub fn second_derivative(self, z: f64, a: f64) -> f64 {
        match self {
            Activation::Tanh => -2.0 * a * (1.0 - a * a),
            Activation::Relu => 0.0,
            Activation::Sigmoid => a * (1.0 - a) * (1.0 - 2.0 * a),
            Activation::Softplus => {
                let s = sigmoid(z);
                s * (1.0 - s)
            }
        }
    }
}

/// tanh z = −expm1(−2|z|) / (2 + expm1(−2|z|)) with the sign of z: accurate near 0 and finite
/// far out for dual numbers too (num-dual's tanh is sinh/cosh, NaN beyond |z| ≈ 710).
fn tanh<T: Real>(z: T) -> T {
    let negative = z.re() < 0.0;
    let m = if negative { z * 2.0 } else { z * -2.0 }.exp_m1();
    let t = -m / (m + 2.0);
    if negative { -t } else { t }
}

/// 1 / (1 + e⁻ᶻ), without overflow for large |z|.
fn sigmoid<T: Real>(z: T) -> T {
    // e^{−|z|} ∈ (0, 1]: neither side overflows, and the two cases differ only in a final
    // select (σ(z) = 1/(1 + e^{−z}) for z ≥ 0, e^{z}/(1 + e^{z}) below).
    let negative = z.re() < 0.0;
    let e = if negative { z } else { -z }.exp_fast();
    let r = (T::one() + e).recip();
    if negative { e * r } else { r }
}

/// The loss on the network's output, averaged over the rows of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// ½ ‖o − t‖² per row (regression targets, one per output).
    Mse,
    /// −log softmax(o)_c per row (class labels; as many outputs as classes).
    SoftmaxCrossEntropy,
}

/// A network of either kind, with the `f64` calls the problems need.
#[derive(Clone, Debug, PartialEq)]
pub enum Network {
    /// A multilayer perceptron.
    Mlp(Mlp),
    /// A convolutional network.
    Conv(ConvNet),
}

/// The workspace of a [`Network`] (only the one of its kind is used).
#[derive(Clone, Debug, Default)]
pub struct NetworkWorkspace {
    mlp: Workspace<f64>,
    conv: ConvWorkspace<f64>,
}

impl NetworkWorkspace {
    /// An empty workspace.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Network {
    /// The number of parameters.
    pub fn num_params(&self) -> usize {
        match self {
            Network::Mlp(n) => n.num_params(),
            Network::Conv(n) => n.num_params(),
        }
    }
    /// Numbers per input row.
    pub fn inputs(&self) -> usize {
        match self {
            Network::Mlp(n) => n.inputs(),
            Network::Conv(n) => n.inputs(),
        }
    }
    /// Output width.
    pub fn outputs(&self) -> usize {
        match self {
            Network::Mlp(n) => n.outputs(),
            Network::Conv(n) => n.outputs(),
        }
    }
    /// LeCun-normal weights, zero biases.
    pub fn init(&self, rng: &mut crate::core::Rng) -> Vec<f64> {
        match self {
            Network::Mlp(n) => n.init(rng),
            Network::Conv(n) => n.init(rng),
        }
    }
    /// The number of parameters of the output layer (its weights and biases, last in the
    /// parameter slice).
    pub fn head_params(&self) -> usize {
        match self {
            Network::Mlp(n) => {
                let sizes = n.sizes();
                (sizes[sizes.len() - 2] + 1) * n.outputs()
            }
            Network::Conv(n) => (n.features() + 1) * n.outputs(),
        }
    }
    /// The mean loss over `batch` and its gradient into `grad` when given.
    pub fn loss_grad(
        &self,
        params: &[f64],
        inputs: &[f64],
        targets: Targets<'_>,
        batch: Option<&[usize]>,
        grad: Option<&mut [f64]>,
        ws: &mut NetworkWorkspace,
    ) -> f64 {
        match self {
            Network::Mlp(n) => n.loss_grad(params, inputs, targets, batch, grad, &mut ws.mlp),
            Network::Conv(n) => n.loss_grad(params, inputs, targets, batch, grad, &mut ws.conv),
        }
    }
    /// The loss, its gradient when asked, and H·v into `out` (the R-op).
    #[allow(clippy::too_many_arguments)]
    pub fn hvp(
        &self,
        params: &[f64],
        v: &[f64],
        inputs: &[f64],
        targets: Targets<'_>,
        batch: Option<&[usize]>,
        grad: Option<&mut [f64]>,
        out: &mut [f64],
        ws: &mut NetworkWorkspace,
    ) -> f64 {
        match self {
            Network::Mlp(n) => n.hvp(params, v, inputs, targets, batch, grad, out, &mut ws.mlp),
            Network::Conv(n) => n.hvp(params, v, inputs, targets, batch, grad, out, &mut ws.conv),
        }
    }
    /// The hidden activation.
    pub fn activation(&self) -> Activation {
        match self {
            Network::Mlp(n) => n.activation(),
            Network::Conv(n) => n.activation(),
        }
    }
    /// The outputs of `batch` and J·u along the parameter direction `u` (the R-forward pass).
    pub fn outputs_and_jvp<'w>(
        &self,
        params: &[f64],
        u: &[f64],
        inputs: &[f64],
        batch: Option<&[usize]>,
        ws: &'w mut NetworkWorkspace,
    ) -> (&'w [f64], &'w [f64]) {
        match self {
            Network::Mlp(n) => n.outputs_and_jvp(params, u, inputs, batch, &mut ws.mlp),
            Network::Conv(n) => n.outputs_and_jvp(params, u, inputs, batch, &mut ws.conv),
        }
    }
    /// Jᵀ·upstream into `grad`, for the outputs of the last forward pass on `ws`.
    pub fn backward_from(
        &self,
        params: &[f64],
        upstream: &[f64],
        grad: &mut [f64],
        ws: &mut NetworkWorkspace,
    ) {
        match self {
            Network::Mlp(n) => n.backward_from(params, upstream, grad, &mut ws.mlp),
            Network::Conv(n) => n.backward_from(params, upstream, grad, &mut ws.conv),
        }
    }
    /// The outputs of `batch` (rows × outputs).
    pub fn outputs_of<'w>(
        &self,
        params: &[f64],
        inputs: &[f64],
        batch: Option<&[usize]>,
        ws: &'w mut NetworkWorkspace,
    ) -> &'w [f64] {
        match self {
            Network::Mlp(n) => n.outputs_of(params, inputs, batch, &mut ws.mlp),
            Network::Conv(n) => n.outputs_of(params, inputs, batch, &mut ws.conv),
        }
    }
}

/// The targets of a dataset, one row per sample.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Regression targets, n × outputs, row-major ([`Loss::Mse`]).
    Regression(&'a [f64]),
    /// Class labels in 0..outputs, one per dataset row ([`Loss::SoftmaxCrossEntropy`]).
    Classes(&'a [usize]),
    /// Class labels in 0..outputs, one per *batch* row, in batch order: labels that belong to
    /// the batch rather than to the dataset (a few-shot task relabels its classes 0..N).
    ClassesOfBatch(&'a [usize]),
}

impl Targets<'_> {
    /// Panics unless the targets fit a dataset of `n` rows, `outputs` outputs and the loss.
    fn check(&self, loss: Loss, n: usize, outputs: usize) {
        match (loss, self) {
            (Loss::Mse, Targets::Regression(t)) => {
                assert_eq!(t.len(), n * outputs, "nn: targets not n × outputs")
            }
            (Loss::SoftmaxCrossEntropy, Targets::Classes(c)) => {
                assert_eq!(c.len(), n, "nn: class labels do not match the inputs")
            }
            (Loss::SoftmaxCrossEntropy, Targets::ClassesOfBatch(_)) => {}
            _ => panic!("nn: targets of the wrong kind for the loss"),
        }
    }
}

/// The mean loss of the network's `output` (rows × k, row-major) on the batch's targets;
/// writes δ = ∂loss/∂output into `delta`, for cross-entropy the softmax probabilities into
/// `probs` (the R-op needs them), and each row's own loss into `row_losses` when given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn output_loss<T: Real>(
    loss: Loss,
    output: &[T],
    k: usize,
    targets: Targets<'_>,
    batch: Option<&[usize]>,
    probs: &mut [T],
    delta: &mut [T],
    mut row_losses: Option<&mut [T]>,
) -> T {
    let rows = output.len() / k;
    let scale = 1.0 / rows as f64;
    let row_of = |r: usize| batch.map_or(r, |b| b[r]);
    let mut total = T::zero();
    match (loss, targets) {
        (Loss::Mse, Targets::Regression(t)) => {
            for r in 0..rows {
                let i = row_of(r);
                let mut row = T::zero();
                for j in 0..k {
                    let residual = output[r * k + j] - t[i * k + j];
                    row += residual * residual * 0.5;
                    delta[r * k + j] = residual * scale;
                }
                total += row;
                if let Some(l) = row_losses.as_deref_mut() {
                    l[r] = row;
                }
            }
        }
        (Loss::SoftmaxCrossEntropy, Targets::Classes(_) | Targets::ClassesOfBatch(_)) => {
            if let Targets::ClassesOfBatch(c) = targets {
                assert_eq!(c.len(), rows, "nn: one class label per batch row");
            }
            for r in 0..rows {
                let class = match targets {
                    Targets::ClassesOfBatch(c) => c[r],
                    Targets::Classes(c) => c[row_of(r)],
                    Targets::Regression(_) => unreachable!(),
                };
                assert!(class < k, "nn: class {class} out of range (outputs = {k})");
                let o = &output[r * k..(r + 1) * k];
                let mut max = o[0];
                for &v in &o[1..] {
                    if v.re() > max.re() {
                        max = v;
                    }
                }
                let mut sum = T::zero();
                let p = &mut probs[r * k..(r + 1) * k];
                for (pj, &oj) in p.iter_mut().zip(o) {
                    *pj = (oj - max).exp();
                    sum += *pj;
                }
                let row = max + sum.ln() - o[class];
                total += row;
                if let Some(l) = row_losses.as_deref_mut() {
                    l[r] = row;
                }
                let inv = sum.recip();
                for (j, pj) in p.iter_mut().enumerate() {
                    *pj *= inv;
                    let indicator = if j == class { 1.0 } else { 0.0 };
                    delta[r * k + j] = (*pj - indicator) * scale;
                }
            }
        }
        _ => panic!("nn: targets of the wrong kind for the loss"),
    }
    total * scale
}

/// R{δ} of [`output_loss`] from R{output}: R{o}/B for squared error, p ⊙ (R{o} − ⟨p, R{o}⟩)/B
/// per row for softmax cross-entropy.
pub(crate) fn output_loss_r(
    loss: Loss,
    probs: &[f64],
    r_output: &[f64],
    k: usize,
    r_delta: &mut [f64],
) {
    let rows = r_output.len() / k;
    let scale = 1.0 / rows as f64;
    match loss {
        Loss::Mse => {
            for (rd, &r) in r_delta.iter_mut().zip(r_output) {
                *rd = r * scale;
            }
        }
        Loss::SoftmaxCrossEntropy => {
            for r in 0..rows {
                let p = &probs[r * k..(r + 1) * k];
                let ro = &r_output[r * k..(r + 1) * k];
                let mean: f64 = p.iter().zip(ro).map(|(a, b)| a * b).sum();
                for j in 0..k {
                    r_delta[r * k + j] = p[j] * (ro[j] - mean) * scale;
                }
            }
        }
    }
}

/// The three products of a layer with fan-in × fan-out weights W on a batch of `rows` (for a
/// convolution, the rows are the output positions and the fan-in the 3×3 patch).
#[derive(Clone, Copy)]
pub(crate) enum Product {
    /// out (rows × fan-out) = a (rows × fan-in) · W: z = a W, R{z} terms.
    Forward,
    /// out (fan-in × fan-out) = aᵀ · d (d: rows × fan-out): ∇W = aᵀ δ, (H v)_W terms.
    WeightGradient,
    /// out (rows × fan-in) = d · Wᵀ (d: rows × fan-out): δ W ᵀ, R{δ} terms.
    Backward,
}

/// One of a layer's [`Product`]s of `left` and `right` into `out` (added to it with
/// `accumulate`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_product<T: Real>(
    out: &mut [T],
    left: &[T],
    right: &[T],
    rows: usize,
    fan_in: usize,
    fan_out: usize,
    product: Product,
    accumulate: bool,
) {
    match product {
        Product::Forward => T::gemm(
            out, left, right, rows, fan_in, fan_out, false, false, accumulate,
        ),
        Product::WeightGradient => T::gemm(
            out, left, right, fan_in, rows, fan_out, true, false, accumulate,
        ),
        Product::Backward => T::gemm(
            out, left, right, rows, fan_out, fan_in, false, true, accumulate,
        ),
    }
}

/// Adds `row` to every row of the row-major matrix `m` (a bias).
pub(crate) fn add_to_rows<T: Real>(m: &mut [T], row: &[T]) {
    for r in m.chunks_exact_mut(row.len()) {
        for (mi, &bi) in r.iter_mut().zip(row) {
            *mi += bi;
        }
    }
}

/// out[j] = Σ_r m[r, j] for a row-major matrix with `cols` columns.
pub(crate) fn column_sums<T: Real>(m: &[T], cols: usize, out: &mut [T]) {
    out.iter_mut().for_each(|o| *o = T::zero());
    for row in m.chunks_exact(cols) {
        for (o, &x) in out.iter_mut().zip(row) {
            *o += x;
        }
    }
}

/// How many rows of `scores` (rows × k, row-major) have their largest entry (the first, on a
/// tie) at the row's class.
pub fn correct_predictions(scores: &[f64], k: usize, classes: &[usize]) -> usize {
    scores
        .chunks_exact(k)
        .zip(classes)
        .filter(|&(row, &class)| {
            let best = (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            best == class
        })
        .count()
}

/// LeCun-normal values (N(0, 1/fan-in)) into `out`.
pub(crate) fn lecun_normal(out: &mut [f64], fan_in: usize, rng: &mut crate::core::Rng) {
    let scale = 1.0 / (fan_in as f64).sqrt();
    for p in out {
        *p = scale * crate::core::linalg::standard_normal(rng);
    }
}

/// Helpers of the network tests: seeded normal draws and relative errors.
#[cfg(test)]
pub(crate) mod test_support {
    use rand::SeedableRng;

    pub(crate) fn rng(seed: u64) -> crate::core::Rng {
        crate::core::Rng::seed_from_u64(seed)
    }

    pub(crate) fn normals(rng: &mut crate::core::Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| crate::core::linalg::standard_normal(rng))
            .collect()
    }

    /// The gradient `grad` and H·v `hv` at θ against central differences along v of the loss
    /// and gradient `at(s)` = (loss, gradient) at θ + s v, step h: error O(h²) ≈ 1e-10 at
    /// h = 1e-5 plus rounding 1e-16/h; 1e-6 relative leaves a wide margin and fails on any
    /// wrong term.
    pub(crate) fn assert_matches_differences(
        grad: &[f64],
        hv: &[f64],
        v: &[f64],
        at: impl Fn(f64) -> (f64, Vec<f64>),
        what: &str,
    ) {
        let h = 1e-5;
        let ((fp, gp), (fm, gm)) = (at(h), at(-h));
        let directional: f64 = grad.iter().zip(v).map(|(a, b)| a * b).sum();
        let fd = (fp - fm) / (2.0 * h);
        assert!(
            (fd - directional).abs() < 1e-6 * directional.abs().max(1.0),
            "{what}: {fd} vs {directional}"
        );
        let fd_hv: Vec<f64> = gp
            .iter()
            .zip(&gm)
            .map(|(a, b)| (a - b) / (2.0 * h))
            .collect();
        let err = rel_err(hv, &fd_hv);
        assert!(err < 1e-6, "{what}: {err:e}");
    }

    /// ‖a − b‖ / ‖b‖.
    pub(crate) fn rel_err(a: &[f64], b: &[f64]) -> f64 {
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        let scale = b.iter().map(|y| y * y).sum::<f64>().sqrt().max(1e-300);
        diff / scale
    }
}
