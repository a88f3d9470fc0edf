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
//!   allocates nothing), loss and gradient, and the R-op.

pub mod mlp;

pub use mlp::{Mlp, Targets, Workspace};

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
}

impl Real for f64 {
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
    if z.re() >= 0.0 {
        (T::one() + (-z).exp()).recip()
    } else {
        let e = z.exp();
        e / (T::one() + e)
    }
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
