//! A multilayer perceptron on a flat parameter slice: loss and gradient (generic over
//! [`Real`]), and the Hessian-vector product by the R-op (Pearlmutter, `f64`).
//!
//! Layout of the parameters, layer after layer: the weights W_l (fan-in × fan-out, row-major),
//! then the biases b_l (fan-out). With a_0 = the batch's inputs (B × d_0),
//!
//! ```text
//! z_l = a_l W_l + 1 b_lᵀ,   a_{l+1} = σ(z_l)   (l < L − 1),   o = z_{L−1}
//! loss = (1/B) Σ_i ℓ(o_i, t_i)
//! δ_{L−1} = ∂loss/∂o,   ∇W_l = a_lᵀ δ_l,   ∇b_l = 1ᵀ δ_l,   δ_{l−1} = (δ_l W_lᵀ) ⊙ σ'(z_{l−1})
//! ```
//!
//! The R-op R{·} = d/dt (·)(θ + t v) at t = 0, with v = (V_l, c_l):
//!
//! ```text
//! R{z_l} = R{a_l} W_l + a_l V_l + 1 c_lᵀ,   R{a_{l+1}} = σ'(z_l) ⊙ R{z_l},   R{a_0} = 0
//! R{δ_{L−1}} = R{o}/B (squared error),   p ⊙ (R{o} − ⟨p, R{o}⟩)/B per row (softmax)
//! (H v)_{W_l} = R{a_l}ᵀ δ_l + a_lᵀ R{δ_l},   (H v)_{b_l} = 1ᵀ R{δ_l}
//! R{δ_{l−1}} = (R{δ_l} W_lᵀ + δ_l V_lᵀ) ⊙ σ'(z_{l−1}) + (δ_l W_lᵀ) ⊙ σ''(z_{l−1}) ⊙ R{z_{l−1}}
//! ```

use super::{
    Activation, Loss, Product, Real, Targets, add_to_rows, column_sums, layer_product,
    lecun_normal, output_loss, output_loss_r,
};
use crate::core::{Error, Result};

/// A multilayer perceptron: `sizes[0]` inputs, hidden layers with [`Activation`] σ, a linear
/// output layer of `sizes[L]` units, and a [`Loss`].
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    sizes: Vec<usize>,
    activation: Activation,
    loss: Loss,
    /// Offsets of (W_l, b_l) in the parameter slice.
    offsets: Vec<(usize, usize)>,
    params: usize,
}

/// Buffers of one network on batches of one size, reused across calls (a call on a batch of
/// the same size allocates nothing).
#[derive(Clone, Debug, Default)]
pub struct Workspace<T> {
    rows: usize,
    /// a_l, l = 0..L (a_0: the inputs).
    a: Vec<Vec<T>>,
    /// z_l.
    z: Vec<Vec<T>>,
    /// δ_l.
    delta: Vec<Vec<T>>,
    /// δ_{l+1} W_{l+1}ᵀ, before the product with σ'(z_l).
    back: Vec<Vec<T>>,
    /// Softmax probabilities of the output (cross-entropy).
    probs: Vec<T>,
    /// Each batch row's own loss ℓ_r (unweighted), from the last pass with targets.
    row_loss: Vec<T>,
    /// ∇ℓ_r · v of each batch row ([`Mlp::row_loss_slopes`]).
    row_slope: Vec<T>,
    /// R{a_l}, R{z_l}, R{δ_l} (the R-op, f64 only).
    ra: Vec<Vec<T>>,
    rz: Vec<Vec<T>>,
    rdelta: Vec<Vec<T>>,
    /// Scratch of the size of the largest layer product.
    scratch: Vec<T>,
}

impl<T: Real> Workspace<T> {
    /// An empty workspace (buffers grow on first use).
    pub fn new() -> Self {
        Self {
            rows: 0,
            a: Vec::new(),
            z: Vec::new(),
            delta: Vec::new(),
            back: Vec::new(),
            probs: Vec::new(),
            row_loss: Vec::new(),
            row_slope: Vec::new(),
            ra: Vec::new(),
            rz: Vec::new(),
            rdelta: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn ensure(&mut self, mlp: &Mlp, rows: usize) {
        let layers = mlp.layers();
        if self.rows == rows && self.a.len() == layers + 1 && self.a[0].len() == rows * mlp.sizes[0]
        {
            return;
        }
        self.rows = rows;
        let sized = |dims: &mut Vec<Vec<T>>, sizes: &[usize]| {
            dims.resize(sizes.len(), Vec::new());
            for (buffer, &d) in dims.iter_mut().zip(sizes) {
                buffer.clear();
                buffer.resize(rows * d, T::zero());
            }
        };
        sized(&mut self.a, &mlp.sizes);
        sized(&mut self.ra, &mlp.sizes);
        sized(&mut self.z, &mlp.sizes[1..]);
        sized(&mut self.rz, &mlp.sizes[1..]);
        sized(&mut self.delta, &mlp.sizes[1..]);
        sized(&mut self.rdelta, &mlp.sizes[1..]);
        sized(&mut self.back, &mlp.sizes[..layers]);
        self.probs.clear();
        self.probs.resize(rows * mlp.outputs(), T::zero());
        self.row_loss.clear();
        self.row_loss.resize(rows, T::zero());
        self.row_slope.clear();
        self.row_slope.resize(rows, T::zero());
        let widest = mlp.sizes.iter().copied().max().unwrap_or(0);
        self.scratch.clear();
        self.scratch.resize(rows * widest, T::zero());
    }
}

impl Mlp {
    /// A network with layer widths `sizes` (inputs, hidden…, outputs).
    pub fn new(sizes: &[usize], activation: Activation, loss: Loss) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::InvalidConfig {
                field: "sizes".into(),
                reason: format!(
                    "a network needs at least an input and an output width, all >= 1; got \
                     {sizes:?}"
                ),
            });
        }
        if loss == Loss::SoftmaxCrossEntropy && sizes[sizes.len() - 1] < 2 {
            return Err(Error::InvalidConfig {
                field: "sizes".into(),
                reason: "softmax cross-entropy needs at least 2 outputs (one per class)".into(),
            });
        }
        let mut offsets = Vec::with_capacity(sizes.len() - 1);
        let mut at = 0;
        for pair in sizes.windows(2) {
            let w = at;
            at += pair[0] * pair[1];
            offsets.push((w, at));
            at += pair[1];
        }
        Ok(Self {
            sizes: sizes.to_vec(),
            activation,
            loss,
            offsets,
            params: at,
        })
    }

    /// The layer widths.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }
    /// The number of parameters.
    pub fn num_params(&self) -> usize {
        self.params
    }
    /// Input width.
    pub fn inputs(&self) -> usize {
        self.sizes[0]
    }
    /// Output width.
    pub fn outputs(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }
    /// Number of affine layers.
    pub fn layers(&self) -> usize {
        self.sizes.len() - 1
    }
    /// The hidden activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// The loss.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// Parameters drawn as LeCun-normal weights (N(0, 1/fan-in)) and zero biases.
    pub fn init(&self, rng: &mut crate::core::Rng) -> Vec<f64> {
        let mut params = vec![0.0; self.params];
        for (l, &(w, b)) in self.offsets.iter().enumerate() {
            lecun_normal(&mut params[w..b], self.sizes[l], rng);
        }
        params
    }

    fn check(&self, params: usize, inputs: &[f64], targets: Option<&Targets<'_>>) {
        assert_eq!(
            params, self.params,
            "Mlp: parameter slice of the wrong length"
        );
        let n = inputs.len() / self.inputs();
        assert_eq!(
            inputs.len(),
            n * self.inputs(),
            "Mlp: inputs not n × inputs"
        );
        if let Some(targets) = targets {
            targets.check(self.loss, n, self.outputs());
        }
    }

    /// The mean loss over `batch` (row indices, repeats counted; `None`: every row) of the
    /// dataset (`inputs`: n × inputs, row-major), and its gradient into `grad` when given.
    pub fn loss_grad<T: Real>(
        &self,
        params: &[T],
        inputs: &[f64],
        targets: Targets<'_>,
        batch: Option<&[usize]>,
        grad: Option<&mut [T]>,
        ws: &mut Workspace<T>,
    ) -> T {
        self.loss_grad_with(params, inputs, targets, batch, None, grad, ws)
    }

    /// [`loss_grad`](Self::loss_grad) and [`weighted_loss_grad`](Self::weighted_loss_grad):
    /// the forward pass (rows weighted when `weights` are given) and, with `grad`, the
    /// backward pass.
    #[allow(clippy::too_many_arguments)]
    fn loss_grad_with<T: Real>(
        &self,
        params: &[T],
        inputs: &[f64],
        targets: Targets<'_>,
        batch: Option<&[usize]>,
        weights: Option<&[f64]>,
        grad: Option<&mut [T]>,
        ws: &mut Workspace<T>,
    ) -> T {
        self.check(params.len(), inputs, Some(&targets));
        let loss = self.forward(params, inputs, Some(targets), batch, weights, ws);
        if let Some(grad) = grad {
            assert_eq!(
                grad.len(),
                self.params,
                "Mlp: gradient slice of the wrong length"
            );
            self.backward(params, Some(grad), ws);
        }
        loss
    }

    /// The outputs of `batch` (rows × outputs): the forward pass alone, for predictions.
    pub fn outputs_of<'w, T: Real>(
        &self,
        params: &[T],
        inputs: &[f64],
        batch: Option<&[usize]>,
        ws: &'w mut Workspace<T>,
    ) -> &'w [T] {
        self.check(params.len(), inputs, None);
        self.forward(params, inputs, None, batch, None, ws);
        &ws.z[self.layers() - 1]
    }

    /// The forward pass and the loss (none without targets): the mean of the rows' losses, each
    /// times its weight when `weights` (one per batch row) are given. Leaves δ_{L−1} (weighted
    /// likewise) and each row's unweighted loss in the workspace.
    fn forward<T: Real>(
        &self,
        params: &[T],
        inputs: &[f64],
        targets: Option<Targets<'_>>,
        batch: Option<&[usize]>,
        weights: Option<&[f64]>,
        ws: &mut Workspace<T>,
    ) -> T {
        let n = inputs.len() / self.inputs();
        let rows = batch.map_or(n, <[usize]>::len);
        assert!(rows > 0, "Mlp: an empty batch");
        ws.ensure(self, rows);
        let d0 = self.inputs();
        for r in 0..rows {
            let i = batch.map_or(r, |b| b[r]);
            assert!(i < n, "Mlp: batch index {i} out of range (n = {n})");
            for (dst, &src) in ws.a[0][r * d0..(r + 1) * d0]
                .iter_mut()
                .zip(&inputs[i * d0..(i + 1) * d0])
            {
                *dst = T::from(src);
            }
        }
        let layers = self.layers();
        for l in 0..layers {
            let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
            let (w, b) = self.offsets[l];
            let z = &mut ws.z[l];
            layer_product(
                z,
                &ws.a[l],
                &params[w..b],
                rows,
                fan_in,
                fan_out,
                Product::Forward,
                false,
            );
            add_to_rows(z, &params[b..b + fan_out]);
            if l + 1 < layers {
                let (z, a) = (&ws.z[l], &mut ws.a[l + 1]);
                for (ai, &zi) in a.iter_mut().zip(z) {
                    *ai = self.activation.value(zi);
                }
            }
        }
        // The loss and δ_{L−1} = ∂loss/∂o.
        let Some(targets) = targets else {
            return T::zero();
        };
        let mean = output_loss(
            self.loss,
            &ws.z[layers - 1],
            self.outputs(),
            targets,
            batch,
            &mut ws.probs,
            &mut ws.delta[layers - 1],
            Some(&mut ws.row_loss),
        );
        let Some(weights) = weights else {
            return mean;
        };
        assert_eq!(weights.len(), rows, "Mlp: one weight per batch row");
        let k = self.outputs();
        let mut total = T::zero();
        for ((delta, &loss), &w) in ws.delta[layers - 1]
            .chunks_exact_mut(k)
            .zip(&ws.row_loss)
            .zip(weights)
        {
            total += loss * w;
            delta.iter_mut().for_each(|d| *d *= w);
        }
        total * (1.0 / rows as f64)
    }

    /// The backward pass from δ_{L−1}: every δ_l (and the gradient into `grad` when given).
    fn backward<T: Real>(&self, params: &[T], mut grad: Option<&mut [T]>, ws: &mut Workspace<T>) {
        let rows = ws.rows;
        for l in (0..self.layers()).rev() {
            let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
            let (w, b) = self.offsets[l];
            if let Some(grad) = grad.as_deref_mut() {
                layer_product(
                    &mut grad[w..b],
                    &ws.a[l],
                    &ws.delta[l],
                    rows,
                    fan_in,
                    fan_out,
                    Product::WeightGradient,
                    false,
                );
                column_sums(&ws.delta[l], fan_out, &mut grad[b..b + fan_out]);
            }
            if l > 0 {
                let back = &mut ws.back[l];
                layer_product(
                    back,
                    &ws.delta[l],
                    &params[w..b],
                    rows,
                    fan_in,
                    fan_out,
                    Product::Backward,
                    false,
                );
                let (z, a) = (&ws.z[l - 1], &ws.a[l]);
                let delta = &mut ws.delta[l - 1];
                for (((d, &g), &zi), &ai) in delta.iter_mut().zip(back.iter()).zip(z).zip(a) {
                    *d = g * self.activation.derivative(zi, ai);
                }
            }
        }
    }

    /// The R-forward pass along v after a forward pass: R{a_l} and R{z_l} of every layer.
    fn r_forward(&self, params: &[f64], v: &[f64], ws: &mut Workspace<f64>) {
        let rows = ws.rows;
        let layers = self.layers();
        let activation = self.activation;
        for l in 0..layers {
            let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
            let (w, b) = self.offsets[l];
            let rz = &mut ws.rz[l];
            layer_product(
                rz,
                &ws.a[l],
                &v[w..b],
                rows,
                fan_in,
                fan_out,
                Product::Forward,
                false,
            );
            if l > 0 {
                layer_product(
                    rz,
                    &ws.ra[l],
                    &params[w..b],
                    rows,
                    fan_in,
                    fan_out,
                    Product::Forward,
                    true,
                );
            }
            add_to_rows(rz, &v[b..b + fan_out]);
            if l + 1 < layers {
                let (z, a, rz) = (&ws.z[l], &ws.a[l + 1], &ws.rz[l]);
                for (((ra, &zi), &ai), &rzi) in ws.ra[l + 1].iter_mut().zip(z).zip(a).zip(rz) {
                    *ra = activation.derivative(zi, ai) * rzi;
                }
            }
        }
    }

    /// The outputs of `batch` (rows × outputs) and their directional derivative along the
    /// parameter direction `u` (the Jacobian-vector product J·u, by the R-forward pass), for a
    /// network used as a feature map inside a larger objective.
    pub fn outputs_and_jvp<'w>(
        &self,
        params: &[f64],
        u: &[f64],
        inputs: &[f64],
        batch: Option<&[usize]>,
        ws: &'w mut Workspace<f64>,
    ) -> (&'w [f64], &'w [f64]) {
        self.check(params.len(), inputs, None);
        assert_eq!(u.len(), self.params, "Mlp: direction of the wrong length");
        self.forward(params, inputs, None, batch, None, ws);
        self.r_forward(params, u, ws);
        let last = self.layers() - 1;
        (&ws.z[last], &ws.rz[last])
    }

    /// The gradient of ⟨upstream, outputs⟩ with respect to the parameters (the vector–Jacobian
    /// product Jᵀ·upstream) into `grad`, where `upstream` (rows × outputs) is the gradient of
    /// an outer loss with respect to the outputs of the last forward pass on this workspace
    /// ([`Mlp::outputs_of`] or [`Mlp::outputs_and_jvp`]).
    pub fn backward_from(
        &self,
        params: &[f64],
        upstream: &[f64],
        grad: &mut [f64],
        ws: &mut Workspace<f64>,
    ) {
        let last = self.layers() - 1;
        assert_eq!(
            upstream.len(),
            ws.delta[last].len(),
            "Mlp: upstream gradient not rows × outputs of the last forward pass"
        );
        assert_eq!(
            grad.len(),
            self.params,
            "Mlp: gradient slice of the wrong length"
        );
        ws.delta[last].copy_from_slice(upstream);
        self.backward(params, Some(grad), ws);
    }

    /// The loss, its gradient into `grad` when given, and the Hessian-vector product H·v into
    /// `out`, by the R-op: about 2.5 gradients' work (one forward and one backward pass, then
    /// their R-passes; the first layer's input is data, so R{a_0} = 0 saves two products).
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
        ws: &mut Workspace<f64>,
    ) -> f64 {
        self.hvp_with(params, v, inputs, targets, batch, None, grad, out, ws)
    }

    /// As [`loss_grad`](Self::loss_grad) for the weighted mean loss (1/B) Σ_r w_r ℓ_r, one
    /// weight per batch row (a per-sample weighting of the training loss, as data
    /// hyper-cleaning's σ(xᵢ)). Afterwards [`row_losses`](Self::row_losses) holds each ℓ_r.
    #[allow(clippy::too_many_arguments)]
    pub fn weighted_loss_grad(
        &self,
        params: &[f64],
        inputs: &[f64],
        targets: Targets<'_>,
        batch: Option<&[usize]>,
        weights: &[f64],
        grad: Option<&mut [f64]>,
        ws: &mut Workspace<f64>,
    ) -> f64 {
        self.loss_grad_with(params, inputs, targets, batch, Some(weights), grad, ws)
    }

    /// As [`hvp`](Self::hvp) for the weighted mean loss of
    /// [`weighted_loss_grad`](Self::weighted_loss_grad).
    #[allow(clippy::too_many_arguments)]
    pub fn weighted_hvp(
        &self,
        params: &[f64],
        v: &[f64],
        inputs: &[f64],
        targets: Targets<'_>,
        batch: Option<&[usize]>,
        weights: &[f64],
        grad: Option<&mut [f64]>,
        out: &mut [f64],
        ws: &mut Workspace<f64>,
    ) -> f64 {
        self.hvp_with(
            params,
            v,
            inputs,
            targets,
            batch,
            Some(weights),
            grad,
            out,
            ws,
        )
    }

    /// The outputs (rows × outputs) of the last forward pass on this workspace.
    pub fn last_outputs<'w>(&self, ws: &'w Workspace<f64>) -> &'w [f64] {
        &ws.z[self.layers() - 1]
    }

    /// Each batch row's own loss ℓ_r (unweighted) from the last pass with targets on this
    /// workspace.
    pub fn row_losses<'w>(&self, ws: &'w Workspace<f64>) -> &'w [f64] {
        &ws.row_loss
    }

    /// Each batch row's loss ℓ_r and its directional derivative ∇ℓ_r · v along the parameter
    /// direction `v`: the forward pass, then the R-forward pass for J_r·v, contracted with the
    /// row's ∂ℓ_r/∂output (the derivative of a per-sample weighted gradient with respect to the
    /// weights, read the other way).
    pub fn row_loss_slopes<'w>(
        &self,
        params: &[f64],
        v: &[f64],
        inputs: &[f64],
        targets: Targets<'_>,
        batch: Option<&[usize]>,
        ws: &'w mut Workspace<f64>,
    ) -> (&'w [f64], &'w [f64]) {
        self.check(params.len(), inputs, Some(&targets));
        assert_eq!(v.len(), self.params, "Mlp: direction of the wrong length");
        self.forward(params, inputs, Some(targets), batch, None, ws);
        self.r_forward(params, v, ws);
        let (k, rows) = (self.outputs(), ws.rows);
        let last = self.layers() - 1;
        // δ_{L−1} = (∂ℓ_r/∂o_r)/B row by row: undo the 1/B.
        let per_row = rows as f64;
        for ((slope, delta), ro) in ws
            .row_slope
            .iter_mut()
            .zip(ws.delta[last].chunks_exact(k))
            .zip(ws.rz[last].chunks_exact(k))
        {
            *slope = per_row * delta.iter().zip(ro).map(|(d, r)| d * r).sum::<f64>();
        }
        (&ws.row_loss, &ws.row_slope)
    }

    #[allow(clippy::too_many_arguments)]
    fn hvp_with(
        &self,
        params: &[f64],
        v: &[f64],
        inputs: &[f64],
        targets: Targets<'_>,
        batch: Option<&[usize]>,
        weights: Option<&[f64]>,
        grad: Option<&mut [f64]>,
        out: &mut [f64],
        ws: &mut Workspace<f64>,
    ) -> f64 {
        self.check(params.len(), inputs, Some(&targets));
        assert_eq!(v.len(), self.params, "Mlp: direction of the wrong length");
        assert_eq!(
            out.len(),
            self.params,
            "Mlp: output slice of the wrong length"
        );
        let loss = self.forward(params, inputs, Some(targets), batch, weights, ws);
        self.backward(params, grad, ws);
        let rows = ws.rows;
        let layers = self.layers();
        let activation = self.activation;
        self.r_forward(params, v, ws);
        // R{δ_{L−1}}.
        output_loss_r(
            self.loss,
            &ws.probs,
            &ws.rz[layers - 1],
            self.outputs(),
            &mut ws.rdelta[layers - 1],
        );
        if let Some(weights) = weights {
            for (rd, &w) in ws.rdelta[layers - 1]
                .chunks_exact_mut(self.outputs())
                .zip(weights)
            {
                rd.iter_mut().for_each(|d| *d *= w);
            }
        }
        // R-backward.
        for l in (0..layers).rev() {
            let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
            let (w, b) = self.offsets[l];
            layer_product(
                &mut out[w..b],
                &ws.a[l],
                &ws.rdelta[l],
                rows,
                fan_in,
                fan_out,
                Product::WeightGradient,
                false,
            );
            if l > 0 {
                layer_product(
                    &mut out[w..b],
                    &ws.ra[l],
                    &ws.delta[l],
                    rows,
                    fan_in,
                    fan_out,
                    Product::WeightGradient,
                    true,
                );
            }
            column_sums(&ws.rdelta[l], fan_out, &mut out[b..b + fan_out]);
            if l > 0 {
                // scratch = R{δ_l} W_lᵀ + δ_l V_lᵀ.
                let scratch = &mut ws.scratch[..rows * fan_in];
                layer_product(
                    scratch,
                    &ws.rdelta[l],
                    &params[w..b],
                    rows,
                    fan_in,
                    fan_out,
                    Product::Backward,
                    false,
                );
                layer_product(
                    scratch,
                    &ws.delta[l],
                    &v[w..b],
                    rows,
                    fan_in,
                    fan_out,
                    Product::Backward,
                    true,
                );
                let (z, a, back, rz) = (&ws.z[l - 1], &ws.a[l], &ws.back[l], &ws.rz[l - 1]);
                let rdelta = &mut ws.rdelta[l - 1];
                for i in 0..rdelta.len() {
                    rdelta[i] = scratch[i] * activation.derivative(z[i], a[i])
                        + back[i] * activation.second_derivative(z[i], a[i]) * rz[i];
                }
            }
        }
        loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::naive_gemm;
    use crate::nn::test_support::{assert_matches_differences, normals, rel_err, rng};
    use num_dual::Dual64;

    /// A small dataset: n rows of `inputs` features, regression targets or classes.
    fn data(mlp: &Mlp, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
        let mut r = rng(seed);
        let x = normals(&mut r, n * mlp.inputs());
        let t = normals(&mut r, n * mlp.outputs());
        let c = (0..n).map(|i| (i * 7 + 3) % mlp.outputs()).collect();
        (x, t, c)
    }

    fn targets<'a>(mlp: &Mlp, t: &'a [f64], c: &'a [usize]) -> Targets<'a> {
        match mlp.loss() {
            Loss::Mse => Targets::Regression(t),
            Loss::SoftmaxCrossEntropy => Targets::Classes(c),
        }
    }

    /// H·v from the generic gradient run on dual numbers whose dual parts are v.
    fn dual_hvp(
        mlp: &Mlp,
        params: &[f64],
        v: &[f64],
        x: &[f64],
        t: Targets<'_>,
        batch: Option<&[usize]>,
    ) -> Vec<f64> {
        let dual: Vec<Dual64> = params
            .iter()
            .zip(v)
            .map(|(&p, &d)| Dual64::new(p, d))
            .collect();
        let mut grad = vec![Dual64::from(0.0); mlp.num_params()];
        let mut ws = Workspace::new();
        mlp.loss_grad(&dual, x, t, batch, Some(&mut grad), &mut ws);
        grad.iter().map(|g| g.eps).collect()
    }

    const ACTIVATIONS: [Activation; 4] = [
        Activation::Tanh,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Softplus,
    ];

    #[test]
    fn the_r_op_equals_the_dual_number_hessian_vector_product() {
        for (k, &activation) in ACTIVATIONS.iter().enumerate() {
            for loss in [Loss::Mse, Loss::SoftmaxCrossEntropy] {
                let mlp = Mlp::new(&[5, 7, 6, 3], activation, loss).unwrap();
                let (x, t, c) = data(&mlp, 11, k as u64);
                let mut r = rng(100 + k as u64);
                let params = mlp.init(&mut r);
                let v = normals(&mut r, mlp.num_params());
                // A minibatch with a repeated row, and the full batch.
                for batch in [Some(&[3usize, 0, 3, 9, 10][..]), None] {
                    let targets = targets(&mlp, &t, &c);
                    let exact = dual_hvp(&mlp, &params, &v, &x, targets, batch);
                    let mut ws = Workspace::new();
                    let mut out = vec![0.0; mlp.num_params()];
                    let mut grad = vec![0.0; mlp.num_params()];
                    let loss = mlp.hvp(
                        &params,
                        &v,
                        &x,
                        targets,
                        batch,
                        Some(&mut grad),
                        &mut out,
                        &mut ws,
                    );
                    // Dual numbers give H·v to rounding (about 1e-16 relative); the R-op sums
                    // in another order (GEMM blocking), so 1e-10 relative is ample and still
                    // catches any missing term (those are O(1) relative).
                    let err = rel_err(&out, &exact);
                    assert!(err < 1e-10, "{activation:?} {loss:?} {batch:?}: {err:e}");
                    // The gradient and loss of the R-op pass are those of loss_grad.
                    let mut ws2 = Workspace::new();
                    let mut grad2 = vec![0.0; mlp.num_params()];
                    let loss2 =
                        mlp.loss_grad(&params, &x, targets, batch, Some(&mut grad2), &mut ws2);
                    assert_eq!(loss, loss2);
                    assert!(rel_err(&grad, &grad2) < 1e-14);
                }
            }
        }
    }

    #[test]
    fn gradients_and_hessian_products_match_central_differences() {
        for (k, &activation) in ACTIVATIONS.iter().enumerate() {
            for loss in [Loss::Mse, Loss::SoftmaxCrossEntropy] {
                let mlp = Mlp::new(&[4, 6, 3], activation, loss).unwrap();
                let (x, t, c) = data(&mlp, 9, 10 + k as u64);
                let targets = targets(&mlp, &t, &c);
                let mut r = rng(200 + k as u64);
                let mut params = mlp.init(&mut r);
                // Move the biases off zero so that no relu input sits at its kink.
                for p in params.iter_mut() {
                    *p += 0.05;
                }
                let v = normals(&mut r, mlp.num_params());
                let mut ws = Workspace::new();
                let mut grad = vec![0.0; mlp.num_params()];
                mlp.loss_grad(&params, &x, targets, None, Some(&mut grad), &mut ws);
                let mut hv = vec![0.0; mlp.num_params()];
                mlp.hvp(&params, &v, &x, targets, None, None, &mut hv, &mut ws);
                // Central differences along v (tolerances in `assert_matches_differences`).
                let shifted = |s: f64| -> (f64, Vec<f64>) {
                    let p: Vec<f64> = params.iter().zip(&v).map(|(a, b)| a + s * b).collect();
                    let mut g = vec![0.0; mlp.num_params()];
                    let mut ws = Workspace::new();
                    let f = mlp.loss_grad(&p, &x, targets, None, Some(&mut g), &mut ws);
                    (f, g)
                };
                assert_matches_differences(
                    &grad,
                    &hv,
                    &v,
                    shifted,
                    &format!("{activation:?} {loss:?}"),
                );
            }
        }
    }

    #[test]
    fn weighted_losses_are_the_weighted_sums_of_the_rows_own_losses() {
        for (k, &activation) in ACTIVATIONS.iter().enumerate() {
            for loss in [Loss::Mse, Loss::SoftmaxCrossEntropy] {
                let mlp = Mlp::new(&[5, 6, 3], activation, loss).unwrap();
                let (x, t, c) = data(&mlp, 8, 30 + k as u64);
                let targets = targets(&mlp, &t, &c);
                let mut r = rng(300 + k as u64);
                let params = mlp.init(&mut r);
                let v = normals(&mut r, mlp.num_params());
                let p = mlp.num_params();
                // A batch with a repeated row, weights of both signs and a zero.
                let batch = [2usize, 7, 2, 0, 5];
                let weights = [0.3, 1.7, -0.4, 0.0, 0.9];
                // Reference: each row on its own through the unweighted calls.
                let (mut loss_ref, mut grad_ref, mut hv_ref) = (0.0, vec![0.0; p], vec![0.0; p]);
                let mut own = Vec::new();
                for (&i, &w) in batch.iter().zip(&weights) {
                    let mut ws = Workspace::new();
                    let (mut g, mut hv) = (vec![0.0; p], vec![0.0; p]);
                    let l = mlp.hvp(
                        &params,
                        &v,
                        &x,
                        targets,
                        Some(&[i]),
                        Some(&mut g),
                        &mut hv,
                        &mut ws,
                    );
                    let scale = w / batch.len() as f64;
                    loss_ref += scale * l;
                    grad_ref
                        .iter_mut()
                        .zip(&g)
                        .for_each(|(a, b)| *a += scale * b);
                    hv_ref
                        .iter_mut()
                        .zip(&hv)
                        .for_each(|(a, b)| *a += scale * b);
                    let slope: f64 = g.iter().zip(&v).map(|(a, b)| a * b).sum();
                    own.push((l, slope));
                }
                let mut ws = Workspace::new();
                let (mut grad, mut hv) = (vec![0.0; p], vec![0.0; p]);
                let loss = mlp.weighted_loss_grad(
                    &params,
                    &x,
                    targets,
                    Some(&batch),
                    &weights,
                    Some(&mut grad),
                    &mut ws,
                );
                let rows: Vec<f64> = mlp.row_losses(&ws).to_vec();
                let loss_hv = mlp.weighted_hvp(
                    &params,
                    &v,
                    &x,
                    targets,
                    Some(&batch),
                    &weights,
                    None,
                    &mut hv,
                    &mut ws,
                );
                let what = format!("{activation:?} {loss:?}");
                // Sums in another order and through GEMMs of another shape: 1e-12 relative.
                assert!(
                    (loss - loss_ref).abs() < 1e-12 * loss_ref.abs().max(1.0),
                    "{what}"
                );
                assert_eq!(loss, loss_hv, "{what}");
                assert!(rel_err(&grad, &grad_ref) < 1e-12, "{what}");
                assert!(rel_err(&hv, &hv_ref) < 1e-12, "{what}");
                let (losses, slopes) =
                    mlp.row_loss_slopes(&params, &v, &x, targets, Some(&batch), &mut ws);
                for (r, &(l, slope)) in own.iter().enumerate() {
                    assert!(
                        (rows[r] - l).abs() < 1e-12 * l.abs().max(1.0),
                        "{what} row {r}"
                    );
                    assert!(
                        (losses[r] - l).abs() < 1e-12 * l.abs().max(1.0),
                        "{what} row {r}"
                    );
                    assert!(
                        (slopes[r] - slope).abs() < 1e-10 * slope.abs().max(1.0),
                        "{what} row {r}: {} vs {slope}",
                        slopes[r]
                    );
                }
            }
        }
    }

    #[test]
    fn the_jacobian_products_are_adjoint_and_match_central_differences() {
        for (k, &activation) in ACTIVATIONS.iter().enumerate() {
            if activation == Activation::Relu {
                continue; // a difference step may cross a kink
            }
            let mlp = Mlp::new(&[4, 6, 5, 3], activation, Loss::Mse).unwrap();
            let (x, _, _) = data(&mlp, 9, 30 + k as u64);
            let mut r = rng(300 + k as u64);
            let params = mlp.init(&mut r);
            let u = normals(&mut r, mlp.num_params());
            let batch = [2usize, 7, 2, 0];
            let mut ws = Workspace::new();
            let (outputs, jvp) = mlp.outputs_and_jvp(&params, &u, &x, Some(&batch), &mut ws);
            let (outputs, jvp) = (outputs.to_vec(), jvp.to_vec());
            // J·u against central differences of the outputs (error O(h²) + rounding/h ≪ 1e-6).
            let h = 1e-5;
            let at = |s: f64| -> Vec<f64> {
                let p: Vec<f64> = params.iter().zip(&u).map(|(a, b)| a + s * b).collect();
                mlp.outputs_of(&p, &x, Some(&batch), &mut Workspace::new())
                    .to_vec()
            };
            let (plus, minus) = (at(h), at(-h));
            let fd: Vec<f64> = plus
                .iter()
                .zip(&minus)
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect();
            assert!(rel_err(&jvp, &fd) < 1e-6, "{activation:?}");
            assert_eq!(outputs, at(0.0));
            // ⟨U, J u⟩ = ⟨Jᵀ U, u⟩ for a random upstream U.
            let upstream = normals(&mut r, outputs.len());
            let mut vjp = vec![0.0; mlp.num_params()];
            mlp.backward_from(&params, &upstream, &mut vjp, &mut ws);
            let lhs: f64 = upstream.iter().zip(&jvp).map(|(a, b)| a * b).sum();
            let rhs: f64 = vjp.iter().zip(&u).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn the_faer_products_equal_the_plain_loops() {
        let mut r = rng(7);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (m, k, n) = (5, 7, 3);
            let a = normals(&mut r, m * k);
            let b = normals(&mut r, k * n);
            let c0 = normals(&mut r, m * n);
            for accumulate in [false, true] {
                let (mut fast, mut slow) = (c0.clone(), c0.clone());
                f64::gemm(&mut fast, &a, &b, m, k, n, ta, tb, accumulate);
                naive_gemm(&mut slow, &a, &b, m, k, n, ta, tb, accumulate);
                assert!(rel_err(&fast, &slow) < 1e-14, "{ta} {tb} {accumulate}");
            }
        }
    }

    #[test]
    fn activations_are_stable_far_out_and_have_the_right_derivatives() {
        for &activation in &ACTIVATIONS {
            for z in [-800.0, -30.0, -1.3, -0.2, 0.4, 2.0, 30.0, 800.0] {
                let a = activation.value(z);
                assert!(a.is_finite(), "{activation:?}({z}) = {a}");
                let reference = match activation {
                    Activation::Tanh => z.tanh(),
                    Activation::Relu => z.max(0.0),
                    Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
                    Activation::Softplus => z.max(0.0) + (-z.abs()).exp().ln_1p(),
                };
                assert!(
                    (a - reference).abs() <= 4.0 * f64::EPSILON * reference.abs(),
                    "{activation:?}({z}) = {a}, expected {reference}"
                );
                if activation == Activation::Relu && z.abs() < 1e-9 {
                    continue;
                }
                let d = activation.derivative(z, a);
                let dual = activation.value(Dual64::new(z, 1.0));
                assert!((dual.eps - d).abs() < 1e-12, "{activation:?}'({z})");
                // σ'' from the dual derivative of σ'.
                let dd = activation
                    .derivative(Dual64::new(z, 1.0), activation.value(Dual64::new(z, 1.0)));
                let second = activation.second_derivative(z, a);
                assert!((dd.eps - second).abs() < 1e-12, "{activation:?}''({z})");
            }
        }
    }

    #[test]
    fn a_step_on_a_batch_of_the_same_size_reuses_the_buffers() {
        let mlp = Mlp::new(&[6, 8, 4], Activation::Tanh, Loss::SoftmaxCrossEntropy).unwrap();
        let (x, t, c) = data(&mlp, 20, 3);
        let params = mlp.init(&mut rng(1));
        let mut ws = Workspace::new();
        let mut grad = vec![0.0; mlp.num_params()];
        let mut out = vec![0.0; mlp.num_params()];
        let targets = targets(&mlp, &t, &c);
        mlp.hvp(
            &params,
            &params,
            &x,
            targets,
            Some(&[1, 2, 3]),
            Some(&mut grad),
            &mut out,
            &mut ws,
        );
        let pointers: Vec<*const f64> = ws.a.iter().chain(&ws.rdelta).map(|b| b.as_ptr()).collect();
        mlp.hvp(
            &params,
            &params,
            &x,
            targets,
            Some(&[4, 5, 6]),
            Some(&mut grad),
            &mut out,
            &mut ws,
        );
        let again: Vec<*const f64> = ws.a.iter().chain(&ws.rdelta).map(|b| b.as_ptr()).collect();
        assert_eq!(pointers, again);
    }

    #[test]
    fn bad_shapes_are_refused_at_construction() {
        assert!(Mlp::new(&[3], Activation::Tanh, Loss::Mse).is_err());
        assert!(Mlp::new(&[3, 0, 2], Activation::Tanh, Loss::Mse).is_err());
        assert!(Mlp::new(&[3, 4, 1], Activation::Tanh, Loss::SoftmaxCrossEntropy).is_err());
        let mlp = Mlp::new(&[3, 4, 2], Activation::Tanh, Loss::Mse).unwrap();
        assert_eq!(mlp.num_params(), 3 * 4 + 4 + 4 * 2 + 2);
    }
}
