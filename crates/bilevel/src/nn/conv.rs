//! A convolutional network on a flat parameter slice: blocks of 3×3 convolution (stride, zero
//! padding), activation and optional 2×2 max-pool, then a dense softmax head: the conv-4
//! network of few-shot learning (Vinyals et al. 2016; Finn et al. 2017) without batch norm.
//! Loss and gradient are generic over [`Real`]; the Hessian-vector product is the R-op
//! (Pearlmutter) in `f64`.
//!
//! Images are stored channels-last (height × width × channels, row-major), so that a 3×3
//! convolution is one GEMM on the im2col patches: with P_l = im2col(a_l) (one row per output
//! position, 9·c_in columns in (ky, kx, c) order) and W_l (9·c_in × filters),
//!
//! ```text
//! z_l = P_l W_l + 1 b_lᵀ,   h_l = σ(z_l),   a_{l+1} = pool(h_l)  (or h_l without pooling)
//! o = flat(a_B) W_B + 1 b_Bᵀ,   loss = (1/B) Σ_i −log softmax(o_i)_{c_i}
//! ```
//!
//! Backward, with g_a = ∂loss/∂a: g_h = unpool(g_{a_{l+1}}) (to each window's argmax),
//! δ_l = g_h ⊙ σ'(z_l), ∇W_l = P_lᵀ δ_l, ∇b_l = 1ᵀ δ_l, g_{a_l} = col2im(δ_l W_lᵀ). The R-op
//! R{·} = d/dt (·)(θ + t v), v = (V_l, c_l), follows the same graph (im2col, col2im and the pool
//! with its argmax held fixed are linear):
//!
//! ```text
//! R{z_l} = im2col(R{a_l}) W_l + P_l V_l + 1 c_lᵀ,   R{a_{l+1}} = pool(σ'(z_l) ⊙ R{z_l})
//! R{δ_l} = unpool(R{g_{a_{l+1}}}) ⊙ σ'(z_l) + g_h ⊙ σ''(z_l) ⊙ R{z_l}
//! (H v)_{W_l} = im2col(R{a_l})ᵀ δ_l + P_lᵀ R{δ_l},   (H v)_{b_l} = 1ᵀ R{δ_l}
//! R{g_{a_l}} = col2im(R{δ_l} W_lᵀ + δ_l V_lᵀ)
//! ```
//!
//! The same for the head with P = flat(a_B). The first block's input is data: R{a_0} = 0.

use serde::{Deserialize, Serialize};

use super::{
    Activation, Loss, Product, Real, Targets, add_to_rows, column_sums, layer_product,
    lecun_normal, output_loss, output_loss_r,
};
use crate::core::{Error, Result};

/// The shape of one image: height × width × channels, stored channels-last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    /// Rows of pixels.
    pub height: usize,
    /// Columns of pixels.
    pub width: usize,
    /// Channels (1 for grey images).
    pub channels: usize,
}

impl ImageShape {
    /// Numbers per image.
    pub fn len(&self) -> usize {
        self.height * self.width * self.channels
    }
    /// True for an empty shape.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of the rows of `source`, `numbers` wide: `given` as [height, width,
    /// channels], or a square grey image; an error names the config field `image` when the
    /// shape does not hold `numbers`.
    pub fn of_rows(given: Option<[usize; 3]>, numbers: usize, source: &str) -> Result<Self> {
        let shape = match given {
            Some([height, width, channels]) => ImageShape {
                height,
                width,
                channels,
            },
            None => {
                let side = (numbers as f64).sqrt().round() as usize;
                ImageShape {
                    height: side,
                    width: side,
                    channels: 1,
                }
            }
        };
        if shape.len() != numbers {
            return Err(Error::config(
                "image",
                format!(
                    "{source} has {numbers} numbers per row, not a {}×{}×{} image (set image = \
                     [height, width, channels])",
                    shape.height, shape.width, shape.channels
                ),
            ));
        }
        Ok(shape)
    }
}

/// One block: a 3×3 convolution with `filters` outputs, `stride` and zero `padding`, the
/// network's activation, and a 2×2 max-pool of stride 2 when `pool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvBlock {
    /// Output channels.
    pub filters: usize,
    /// Convolution stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// A 2×2 max-pool after the activation.
    pub pool: bool,
}

impl ConvBlock {
    /// conv-4's block: `filters` 3×3 filters, stride 1, padding 1, 2×2 max-pool.
    pub fn conv4(filters: usize) -> Self {
        Self {
            filters,
            stride: 1,
            padding: 1,
            pool: true,
        }
    }
}

/// Sizes of one block.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BlockShape {
    input: ImageShape,
    /// The convolution's output (before pooling).
    conv: ImageShape,
    /// The block's output.
    output: ImageShape,
    stride: usize,
    padding: usize,
    pool: bool,
}

impl BlockShape {
    /// One of the convolution's [`Product`]s on a batch of `rows` images: the patch matrix
    /// (one row per output position) against the 9·c_in × filters weights.
    fn product<T: Real>(
        &self,
        rows: usize,
        out: &mut [T],
        left: &[T],
        right: &[T],
        product: Product,
        accumulate: bool,
    ) {
        layer_product(
            out,
            left,
            right,
            rows * self.positions(),
            self.patch(),
            self.conv.channels,
            product,
            accumulate,
        );
    }

    /// Output positions of the convolution per image.
    fn positions(&self) -> usize {
        self.conv.height * self.conv.width
    }
    /// Columns of the im2col patch matrix: 3 × 3 × input channels.
    fn patch(&self) -> usize {
        9 * self.input.channels
    }
}

/// Convolution blocks and a dense softmax head over `classes` (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNet {
    image: ImageShape,
    blocks: Vec<BlockShape>,
    activation: Activation,
    classes: usize,
    /// Offsets of (W, b) of each block, then of the head.
    offsets: Vec<(usize, usize)>,
    params: usize,
}

/// Buffers of one [`ConvNet`] on batches of one size, reused across calls (a call on a batch
/// of the same size allocates nothing).
#[derive(Clone, Debug, Default)]
pub struct ConvWorkspace<T> {
    rows: usize,
    /// The batch size the R-op buffers are sized for.
    r_rows: usize,
    /// a_l, l = 0..=B (a_0: the inputs; a_B: the head's input).
    a: Vec<Vec<T>>,
    /// im2col(a_l), z_l, σ(z_l) of each block.
    patches: Vec<Vec<T>>,
    z: Vec<Vec<T>>,
    h: Vec<Vec<T>>,
    /// The argmax of each pooling window (an index into h_l).
    argmax: Vec<Vec<usize>>,
    /// The head's output, softmax probabilities, δ.
    output: Vec<T>,
    probs: Vec<T>,
    delta_output: Vec<T>,
    /// g_{a_l} (index l = 1..=B used), g_h and δ of each block.
    grad_a: Vec<Vec<T>>,
    grad_h: Vec<Vec<T>>,
    delta: Vec<Vec<T>>,
    /// Gradient of the largest patch matrix.
    grad_patches: Vec<T>,
    /// R-op buffers (f64 only): R{a_l}, im2col(R{a_l}), R{z_l}, R{o}, R{δ_o}, R{g_{a_l}}.
    r_a: Vec<Vec<T>>,
    r_patches: Vec<Vec<T>>,
    r_z: Vec<Vec<T>>,
    r_output: Vec<T>,
    r_delta_output: Vec<T>,
    r_grad_a: Vec<Vec<T>>,
    /// R{δ} of the block being processed (the largest block's size).
    r_delta: Vec<T>,
}

impl<T: Real> ConvWorkspace<T> {
    /// An empty workspace (buffers grow on first use).
    pub fn new() -> Self {
        Self {
            rows: 0,
            r_rows: 0,
            a: Vec::new(),
            patches: Vec::new(),
            z: Vec::new(),
            h: Vec::new(),
            argmax: Vec::new(),
            output: Vec::new(),
            probs: Vec::new(),
            delta_output: Vec::new(),
            grad_a: Vec::new(),
            grad_h: Vec::new(),
            delta: Vec::new(),
            grad_patches: Vec::new(),
            r_a: Vec::new(),
            r_patches: Vec::new(),
            r_z: Vec::new(),
            r_output: Vec::new(),
            r_delta_output: Vec::new(),
            r_grad_a: Vec::new(),
            r_delta: Vec::new(),
        }
    }

    fn ensure(&mut self, net: &ConvNet, rows: usize, r_op: bool) {
        let blocks = net.blocks.len();
        let ready = self.rows == rows && self.a.len() == blocks + 1;
        let r_ready = !r_op || (self.r_rows == rows && self.r_a.len() == blocks + 1);
        if ready && r_ready {
            return;
        }
        let level_sizes: Vec<usize> = std::iter::once(net.image.len())
            .chain(net.blocks.iter().map(|b| b.output.len()))
            .map(|d| rows * d)
            .collect();
        let patch_sizes: Vec<usize> = net
            .blocks
            .iter()
            .map(|b| rows * b.positions() * b.patch())
            .collect();
        let conv_sizes: Vec<usize> = net.blocks.iter().map(|b| rows * b.conv.len()).collect();
        let pooled_sizes: Vec<usize> = net
            .blocks
            .iter()
            .map(|b| if b.pool { rows * b.output.len() } else { 0 })
            .collect();
        fn sized<T: Clone>(buffers: &mut Vec<Vec<T>>, sizes: &[usize], zero: T) {
            buffers.resize(sizes.len(), Vec::new());
            for (buffer, &n) in buffers.iter_mut().zip(sizes) {
                buffer.clear();
                buffer.resize(n, zero.clone());
            }
        }
        let zero = T::zero();
        if !r_ready {
            self.r_rows = rows;
            sized(&mut self.r_a, &level_sizes, zero);
            sized(&mut self.r_patches, &patch_sizes, zero);
            sized(&mut self.r_z, &conv_sizes, zero);
            sized(&mut self.r_grad_a, &level_sizes, zero);
            for buffer in [&mut self.r_output, &mut self.r_delta_output] {
                buffer.clear();
                buffer.resize(rows * net.classes, zero);
            }
            let largest_conv = conv_sizes.iter().copied().max().unwrap_or(0);
            self.r_delta.clear();
            self.r_delta.resize(largest_conv, zero);
        }
        if ready {
            return;
        }
        self.rows = rows;
        sized(&mut self.a, &level_sizes, zero);
        sized(&mut self.patches, &patch_sizes, zero);
        sized(&mut self.z, &conv_sizes, zero);
        sized(&mut self.h, &conv_sizes, zero);
        sized(&mut self.argmax, &pooled_sizes, 0);
        sized(&mut self.grad_a, &level_sizes, zero);
        sized(&mut self.grad_h, &conv_sizes, zero);
        sized(&mut self.delta, &conv_sizes, zero);
        let k = rows * net.classes;
        for buffer in [&mut self.output, &mut self.probs, &mut self.delta_output] {
            buffer.clear();
            buffer.resize(k, zero);
        }
        let largest_patches = patch_sizes.iter().copied().max().unwrap_or(0);
        self.grad_patches.clear();
        self.grad_patches.resize(largest_patches, zero);
    }
}

impl ConvNet {
    /// A network on images of `image` shape: the `blocks`, then a dense softmax head over
    /// `classes`.
    pub fn new(
        image: ImageShape,
        blocks: &[ConvBlock],
        activation: Activation,
        classes: usize,
    ) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidConfig {
            field: "network".into(),
            reason,
        };
        if image.is_empty() {
            return Err(invalid(format!(
                "an image needs a positive shape, got {image:?}"
            )));
        }
        if classes < 2 {
            return Err(invalid(format!(
                "a softmax head needs at least 2 classes, got {classes}"
            )));
        }
        let mut shapes = Vec::with_capacity(blocks.len());
        let mut input = image;
        for (l, block) in blocks.iter().enumerate() {
            if block.filters == 0 || block.stride == 0 || block.padding > 2 {
                return Err(invalid(format!(
                    "block {l}: filters and stride must be >= 1 and padding at most 2, got \
                     {block:?}"
                )));
            }
            let span = |n: usize| -> Option<usize> {
                (n + 2 * block.padding)
                    .checked_sub(3)
                    .map(|s| s / block.stride + 1)
            };
            let (Some(height), Some(width)) = (span(input.height), span(input.width)) else {
                return Err(invalid(format!(
                    "block {l}: a 3×3 filter does not fit a {}×{} input with padding {}",
                    input.height, input.width, block.padding
                )));
            };
            let conv = ImageShape {
                height,
                width,
                channels: block.filters,
            };
            let output = if block.pool {
                if height < 2 || width < 2 {
                    return Err(invalid(format!(
                        "block {l}: a 2×2 pool does not fit its {height}×{width} feature map \
                         (use fewer blocks or no pooling on small images)"
                    )));
                }
                ImageShape {
                    height: height / 2,
                    width: width / 2,
                    channels: block.filters,
                }
            } else {
                conv
            };
            shapes.push(BlockShape {
                input,
                conv,
                output,
                stride: block.stride,
                padding: block.padding,
                pool: block.pool,
            });
            input = output;
        }
        let mut offsets = Vec::with_capacity(blocks.len() + 1);
        let mut at = 0;
        let fans = shapes
            .iter()
            .map(|b| (b.patch(), b.conv.channels))
            .chain(std::iter::once((input.len(), classes)));
        for (fan_in, fan_out) in fans {
            let w = at;
            at += fan_in * fan_out;
            offsets.push((w, at));
            at += fan_out;
        }
        Ok(Self {
            image,
            blocks: shapes,
            activation,
            classes,
            offsets,
            params: at,
        })
    }

    /// One of the dense head's [`Product`]s on a batch of `rows`: features × classes weights.
    fn head_product<T: Real>(
        &self,
        rows: usize,
        out: &mut [T],
        left: &[T],
        right: &[T],
        product: Product,
        accumulate: bool,
    ) {
        layer_product(
            out,
            left,
            right,
            rows,
            self.features(),
            self.classes,
            product,
            accumulate,
        );
    }

    /// conv-4: four blocks of `filters` 3×3 filters (stride 1, padding 1) and 2×2 max-pool.
    pub fn conv4(
        image: ImageShape,
        filters: usize,
        activation: Activation,
        classes: usize,
    ) -> Result<Self> {
        Self::new(image, &[ConvBlock::conv4(filters); 4], activation, classes)
    }

    /// The number of parameters.
    pub fn num_params(&self) -> usize {
        self.params
    }
    /// The input image shape.
    pub fn image(&self) -> ImageShape {
        self.image
    }
    /// Numbers per input image.
    pub fn inputs(&self) -> usize {
        self.image.len()
    }
    /// Output width (classes).
    pub fn outputs(&self) -> usize {
        self.classes
    }
    /// The activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// Width of the head's input (the last block's output, flattened).
    pub fn features(&self) -> usize {
        self.blocks
            .last()
            .map_or(self.image.len(), |b| b.output.len())
    }

    /// Parameters drawn as LeCun-normal weights (N(0, 1/fan-in)) and zero biases.
    pub fn init(&self, rng: &mut crate::core::Rng) -> Vec<f64> {
        let mut params = vec![0.0; self.params];
        let fan_ins = self
            .blocks
            .iter()
            .map(BlockShape::patch)
            .chain(std::iter::once(self.features()));
        for (&(w, b), fan_in) in self.offsets.iter().zip(fan_ins) {
            lecun_normal(&mut params[w..b], fan_in, rng);
        }
        params
    }

    fn check(&self, params: usize, inputs: &[f64], targets: Option<&Targets<'_>>) {
        assert_eq!(
            params, self.params,
            "ConvNet: parameter slice of the wrong length"
        );
        let n = inputs.len() / self.inputs();
        assert_eq!(
            inputs.len(),
            n * self.inputs(),
            "ConvNet: inputs not n × image size"
        );
        if let Some(targets) = targets {
            targets.check(Loss::SoftmaxCrossEntropy, n, self.classes);
        }
    }

    /// The mean softmax cross-entropy over `batch` (row indices, repeats counted; `None`: every
    /// row) of the images `inputs` (n × image, row-major, channels-last), and its gradient into
    /// `grad` when given.
    pub fn loss_grad<T: Real>(
        &self,
        params: &[T],
        inputs: &[f64],
        targets: Targets<'_>,
        batch: Option<&[usize]>,
        grad: Option<&mut [T]>,
        ws: &mut ConvWorkspace<T>,
    ) -> T {
        self.check(params.len(), inputs, Some(&targets));
        let loss = self.forward(params, inputs, Some(targets), batch, ws, false);
        if let Some(grad) = grad {
            assert_eq!(
                grad.len(),
                self.params,
                "ConvNet: gradient slice of the wrong length"
            );
            self.backward(params, Some(grad), ws);
        }
        loss
    }

    /// The logits of `batch` (rows × classes): the forward pass alone, for predictions.
    pub fn outputs_of<'w, T: Real>(
        &self,
        params: &[T],
        inputs: &[f64],
        batch: Option<&[usize]>,
        ws: &'w mut ConvWorkspace<T>,
    ) -> &'w [T] {
        self.check(params.len(), inputs, None);
        self.forward(params, inputs, None, batch, ws, false);
        &ws.output
    }

    fn forward<T: Real>(
        &self,
        params: &[T],
        inputs: &[f64],
        targets: Option<Targets<'_>>,
        batch: Option<&[usize]>,
        ws: &mut ConvWorkspace<T>,
        r_op: bool,
    ) -> T {
        let n = inputs.len() / self.inputs();
        let rows = batch.map_or(n, <[usize]>::len);
        assert!(rows > 0, "ConvNet: an empty batch");
        ws.ensure(self, rows, r_op);
        let d = self.inputs();
        for r in 0..rows {
            let i = batch.map_or(r, |b| b[r]);
            assert!(i < n, "ConvNet: batch index {i} out of range (n = {n})");
            for (dst, &src) in ws.a[0][r * d..(r + 1) * d]
                .iter_mut()
                .zip(&inputs[i * d..(i + 1) * d])
            {
                *dst = T::from(src);
            }
        }
        for (l, shape) in self.blocks.iter().enumerate() {
            let (w, b) = self.offsets[l];
            im2col(&ws.a[l], &mut ws.patches[l], shape, rows);
            let z = &mut ws.z[l];
            shape.product(
                rows,
                z,
                &ws.patches[l],
                &params[w..b],
                Product::Forward,
                false,
            );
            add_to_rows(z, &params[b..b + shape.conv.channels]);
            for (hi, &zi) in ws.h[l].iter_mut().zip(z.iter()) {
                *hi = self.activation.value(zi);
            }
            let (h, next) = (&ws.h[l], &mut ws.a[l + 1]);
            if shape.pool {
                max_pool(h, next, &mut ws.argmax[l], shape, rows);
            } else {
                next.copy_from_slice(h);
            }
        }
        let blocks = self.blocks.len();
        let (w, b) = self.offsets[blocks];
        self.head_product(
            rows,
            &mut ws.output,
            &ws.a[blocks],
            &params[w..b],
            Product::Forward,
            false,
        );
        add_to_rows(&mut ws.output, &params[b..b + self.classes]);
        let Some(targets) = targets else {
            return T::zero();
        };
        output_loss(
            Loss::SoftmaxCrossEntropy,
            &ws.output,
            self.classes,
            targets,
            batch,
            &mut ws.probs,
            &mut ws.delta_output,
            None,
        )
    }

    /// The backward pass from δ of the output: every block's δ (and the gradient into `grad`).
    fn backward<T: Real>(
        &self,
        params: &[T],
        mut grad: Option<&mut [T]>,
        ws: &mut ConvWorkspace<T>,
    ) {
        let rows = ws.rows;
        let blocks = self.blocks.len();
        let (w, b) = self.offsets[blocks];
        if let Some(grad) = grad.as_deref_mut() {
            self.head_product(
                rows,
                &mut grad[w..b],
                &ws.a[blocks],
                &ws.delta_output,
                Product::WeightGradient,
                false,
            );
            column_sums(
                &ws.delta_output,
                self.classes,
                &mut grad[b..b + self.classes],
            );
        }
        if blocks == 0 {
            return;
        }
        self.head_product(
            rows,
            &mut ws.grad_a[blocks],
            &ws.delta_output,
            &params[w..b],
            Product::Backward,
            false,
        );
        for (l, shape) in self.blocks.iter().enumerate().rev() {
            let (w, b) = self.offsets[l];
            let grad_h = &mut ws.grad_h[l];
            if shape.pool {
                unpool(&ws.grad_a[l + 1], grad_h, &ws.argmax[l]);
            } else {
                grad_h.copy_from_slice(&ws.grad_a[l + 1]);
            }
            let (z, h) = (&ws.z[l], &ws.h[l]);
            for (((d, &g), &zi), &hi) in ws.delta[l].iter_mut().zip(grad_h.iter()).zip(z).zip(h) {
                *d = g * self.activation.derivative(zi, hi);
            }
            let (m, patch, filters) =
                (rows * shape.positions(), shape.patch(), shape.conv.channels);
            if let Some(grad) = grad.as_deref_mut() {
                shape.product(
                    rows,
                    &mut grad[w..b],
                    &ws.patches[l],
                    &ws.delta[l],
                    Product::WeightGradient,
                    false,
                );
                column_sums(&ws.delta[l], filters, &mut grad[b..b + filters]);
            }
            if l > 0 {
                let grad_patches = &mut ws.grad_patches[..m * patch];
                shape.product(
                    rows,
                    grad_patches,
                    &ws.delta[l],
                    &params[w..b],
                    Product::Backward,
                    false,
                );
                col2im(grad_patches, &mut ws.grad_a[l], shape, rows);
            }
        }
    }

    /// The R-forward pass along `v` after a forward pass with the R-op buffers: R{z_l}, R{a_l}
    /// of every block and R{output}.
    fn r_forward(&self, params: &[f64], v: &[f64], ws: &mut ConvWorkspace<f64>) {
        let rows = ws.rows;
        let activation = self.activation;
        let blocks = self.blocks.len();
        for (l, shape) in self.blocks.iter().enumerate() {
            let (w, b) = self.offsets[l];
            let filters = shape.conv.channels;
            let r_z = &mut ws.r_z[l];
            shape.product(rows, r_z, &ws.patches[l], &v[w..b], Product::Forward, false);
            if l > 0 {
                im2col(&ws.r_a[l], &mut ws.r_patches[l], shape, rows);
                shape.product(
                    rows,
                    r_z,
                    &ws.r_patches[l],
                    &params[w..b],
                    Product::Forward,
                    true,
                );
            }
            add_to_rows(r_z, &v[b..b + filters]);
            let (z, h) = (&ws.z[l], &ws.h[l]);
            let r_h = |i: usize| activation.derivative(z[i], h[i]) * r_z[i];
            let next = &mut ws.r_a[l + 1];
            if shape.pool {
                for (r, &i) in next.iter_mut().zip(&ws.argmax[l]) {
                    *r = r_h(i);
                }
            } else {
                for (i, r) in next.iter_mut().enumerate() {
                    *r = r_h(i);
                }
            }
        }
        let (w, b) = self.offsets[blocks];
        let k = self.classes;
        self.head_product(
            rows,
            &mut ws.r_output,
            &ws.a[blocks],
            &v[w..b],
            Product::Forward,
            false,
        );
        if blocks > 0 {
            self.head_product(
                rows,
                &mut ws.r_output,
                &ws.r_a[blocks],
                &params[w..b],
                Product::Forward,
                true,
            );
        }
        add_to_rows(&mut ws.r_output, &v[b..b + k]);
    }

    /// The outputs of `batch` (rows × outputs) and their directional derivative J·u along the
    /// parameter direction `u` (the R-forward pass), for a network used as a feature map inside
    /// a larger objective.
    pub fn outputs_and_jvp<'w>(
        &self,
        params: &[f64],
        u: &[f64],
        inputs: &[f64],
        batch: Option<&[usize]>,
        ws: &'w mut ConvWorkspace<f64>,
    ) -> (&'w [f64], &'w [f64]) {
        self.check(params.len(), inputs, None);
        assert_eq!(
            u.len(),
            self.params,
            "ConvNet: direction of the wrong length"
        );
        self.forward(params, inputs, None, batch, ws, true);
        self.r_forward(params, u, ws);
        (&ws.output, &ws.r_output)
    }

    /// Jᵀ·upstream into `grad`: the gradient of ⟨upstream, outputs⟩ with respect to the
    /// parameters, where `upstream` (rows × outputs) is the gradient of an outer loss with
    /// respect to the outputs of the last forward pass on this workspace.
    pub fn backward_from(
        &self,
        params: &[f64],
        upstream: &[f64],
        grad: &mut [f64],
        ws: &mut ConvWorkspace<f64>,
    ) {
        assert_eq!(
            upstream.len(),
            ws.delta_output.len(),
            "ConvNet: upstream gradient not rows × outputs of the last forward pass"
        );
        assert_eq!(
            grad.len(),
            self.params,
            "ConvNet: gradient slice of the wrong length"
        );
        ws.delta_output.copy_from_slice(upstream);
        self.backward(params, Some(grad), ws);
    }

    /// The loss, its gradient into `grad` when given, and the Hessian-vector product H·v into
    /// `out`, by the R-op (see the module docs).
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
        ws: &mut ConvWorkspace<f64>,
    ) -> f64 {
        self.check(params.len(), inputs, Some(&targets));
        assert_eq!(
            v.len(),
            self.params,
            "ConvNet: direction of the wrong length"
        );
        assert_eq!(
            out.len(),
            self.params,
            "ConvNet: output slice of the wrong length"
        );
        let loss = self.forward(params, inputs, Some(targets), batch, ws, true);
        self.backward(params, grad, ws);
        self.r_forward(params, v, ws);
        let rows = ws.rows;
        let activation = self.activation;
        let blocks = self.blocks.len();
        let (w, b) = self.offsets[blocks];
        let k = self.classes;
        output_loss_r(
            Loss::SoftmaxCrossEntropy,
            &ws.probs,
            &ws.r_output,
            k,
            &mut ws.r_delta_output,
        );
        // R-backward: the head.
        self.head_product(
            rows,
            &mut out[w..b],
            &ws.a[blocks],
            &ws.r_delta_output,
            Product::WeightGradient,
            false,
        );
        column_sums(&ws.r_delta_output, k, &mut out[b..b + k]);
        if blocks == 0 {
            return loss;
        }
        self.head_product(
            rows,
            &mut out[w..b],
            &ws.r_a[blocks],
            &ws.delta_output,
            Product::WeightGradient,
            true,
        );
        let r_grad = &mut ws.r_grad_a[blocks];
        self.head_product(
            rows,
            r_grad,
            &ws.r_delta_output,
            &params[w..b],
            Product::Backward,
            false,
        );
        self.head_product(
            rows,
            r_grad,
            &ws.delta_output,
            &v[w..b],
            Product::Backward,
            true,
        );
        // R-backward: the blocks.
        for (l, shape) in self.blocks.iter().enumerate().rev() {
            let (w, b) = self.offsets[l];
            let (m, patch, filters) =
                (rows * shape.positions(), shape.patch(), shape.conv.channels);
            let r_delta = &mut ws.r_delta[..rows * shape.conv.len()];
            if shape.pool {
                unpool(&ws.r_grad_a[l + 1], r_delta, &ws.argmax[l]);
            } else {
                r_delta.copy_from_slice(&ws.r_grad_a[l + 1]);
            }
            let (z, h, g, r_z) = (&ws.z[l], &ws.h[l], &ws.grad_h[l], &ws.r_z[l]);
            for (i, rd) in r_delta.iter_mut().enumerate() {
                *rd = *rd * activation.derivative(z[i], h[i])
                    + g[i] * activation.second_derivative(z[i], h[i]) * r_z[i];
            }
            shape.product(
                rows,
                &mut out[w..b],
                &ws.patches[l],
                r_delta,
                Product::WeightGradient,
                false,
            );
            column_sums(r_delta, filters, &mut out[b..b + filters]);
            if l > 0 {
                shape.product(
                    rows,
                    &mut out[w..b],
                    &ws.r_patches[l],
                    &ws.delta[l],
                    Product::WeightGradient,
                    true,
                );
                let grad_patches = &mut ws.grad_patches[..m * patch];
                shape.product(
                    rows,
                    grad_patches,
                    r_delta,
                    &params[w..b],
                    Product::Backward,
                    false,
                );
                shape.product(
                    rows,
                    grad_patches,
                    &ws.delta[l],
                    &v[w..b],
                    Product::Backward,
                    true,
                );
                col2im(grad_patches, &mut ws.r_grad_a[l], shape, rows);
            }
        }
        loss
    }
}

/// The input pixel under output position (oy, ox) and filter tap (ky, kx), if inside the image.
fn source(
    shape: &BlockShape,
    oy: usize,
    ox: usize,
    ky: usize,
    kx: usize,
) -> Option<(usize, usize)> {
    let iy = (oy * shape.stride + ky).checked_sub(shape.padding)?;
    let ix = (ox * shape.stride + kx).checked_sub(shape.padding)?;
    (iy < shape.input.height && ix < shape.input.width).then_some((iy, ix))
}

/// The patch matrix: one row per (image, output position), 9·channels columns in (ky, kx, c)
/// order, zero where the filter hangs over the padding.
fn im2col<T: Real>(images: &[T], patches: &mut [T], shape: &BlockShape, rows: usize) {
    let ImageShape {
        height,
        width,
        channels,
    } = shape.input;
    let patch = shape.patch();
    let mut row = 0;
    for image in 0..rows {
        let base = image * height * width;
        for oy in 0..shape.conv.height {
            for ox in 0..shape.conv.width {
                let dst = &mut patches[row * patch..(row + 1) * patch];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let tap = &mut dst[(ky * 3 + kx) * channels..(ky * 3 + kx + 1) * channels];
                        match source(shape, oy, ox, ky, kx) {
                            Some((iy, ix)) => {
                                let at = (base + iy * width + ix) * channels;
                                tap.copy_from_slice(&images[at..at + channels]);
                            }
                            None => tap.iter_mut().for_each(|t| *t = T::zero()),
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// The adjoint of [`im2col`]: each patch entry added back onto its pixel.
fn col2im<T: Real>(patches: &[T], images: &mut [T], shape: &BlockShape, rows: usize) {
    let ImageShape {
        height,
        width,
        channels,
    } = shape.input;
    let patch = shape.patch();
    images.iter_mut().for_each(|p| *p = T::zero());
    let mut row = 0;
    for image in 0..rows {
        let base = image * height * width;
        for oy in 0..shape.conv.height {
            for ox in 0..shape.conv.width {
                let src = &patches[row * patch..(row + 1) * patch];
                for ky in 0..3 {
                    for kx in 0..3 {
                        if let Some((iy, ix)) = source(shape, oy, ox, ky, kx) {
                            let at = (base + iy * width + ix) * channels;
                            let tap = &src[(ky * 3 + kx) * channels..(ky * 3 + kx + 1) * channels];
                            for (p, &t) in images[at..at + channels].iter_mut().zip(tap) {
                                *p += t;
                            }
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// 2×2 max-pool of stride 2 (a trailing odd row or column is dropped), recording each window's
/// argmax as an index into `h`.
fn max_pool<T: Real>(
    h: &[T],
    out: &mut [T],
    argmax: &mut [usize],
    shape: &BlockShape,
    rows: usize,
) {
    let ImageShape {
        height,
        width,
        channels,
    } = shape.conv;
    let mut at = 0;
    for image in 0..rows {
        let base = image * height * width;
        for py in 0..shape.output.height {
            for px in 0..shape.output.width {
                for c in 0..channels {
                    let mut best = (base + 2 * py * width + 2 * px) * channels + c;
                    for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                        let i = (base + (2 * py + dy) * width + 2 * px + dx) * channels + c;
                        if h[i].re() > h[best].re() {
                            best = i;
                        }
                    }
                    out[at] = h[best];
                    argmax[at] = best;
                    at += 1;
                }
            }
        }
    }
}

/// The adjoint of [`max_pool`] with its argmax fixed: each pooled entry sent to its argmax.
fn unpool<T: Real>(pooled: &[T], full: &mut [T], argmax: &[usize]) {
    full.iter_mut().for_each(|p| *p = T::zero());
    for (&g, &i) in pooled.iter().zip(argmax) {
        full[i] += g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_support::{assert_matches_differences, normals, rel_err, rng};
    use num_dual::Dual64;

    fn dual_hvp(
        net: &ConvNet,
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
        let mut grad = vec![Dual64::from(0.0); net.num_params()];
        net.loss_grad(
            &dual,
            x,
            t,
            batch,
            Some(&mut grad),
            &mut ConvWorkspace::new(),
        );
        grad.iter().map(|g| g.eps).collect()
    }

    const GREY_7: ImageShape = ImageShape {
        height: 7,
        width: 6,
        channels: 1,
    };
    const RGB_6: ImageShape = ImageShape {
        height: 6,
        width: 6,
        channels: 3,
    };

    /// Each layer on its own (one block and the head), then stacks of them.
    fn networks() -> Vec<(&'static str, ConvNet)> {
        let block = |filters, stride, padding, pool| ConvBlock {
            filters,
            stride,
            padding,
            pool,
        };
        let net = |image, blocks: &[ConvBlock], activation| {
            ConvNet::new(image, blocks, activation, 3).unwrap()
        };
        vec![
            ("dense head only", net(GREY_7, &[], Activation::Tanh)),
            (
                "conv, padding 1",
                net(GREY_7, &[block(4, 1, 1, false)], Activation::Tanh),
            ),
            (
                "conv, stride 2, no padding",
                net(RGB_6, &[block(3, 2, 0, false)], Activation::Sigmoid),
            ),
            (
                "conv + max-pool",
                net(GREY_7, &[block(4, 1, 1, true)], Activation::Softplus),
            ),
            (
                "two blocks, relu",
                net(
                    RGB_6,
                    &[block(4, 1, 1, true), block(5, 1, 1, false)],
                    Activation::Relu,
                ),
            ),
            (
                "conv-4 on 16×16",
                ConvNet::conv4(
                    ImageShape {
                        height: 16,
                        width: 16,
                        channels: 1,
                    },
                    4,
                    Activation::Tanh,
                    5,
                )
                .unwrap(),
            ),
        ]
    }

    fn data(net: &ConvNet, n: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
        let mut r = rng(seed);
        let x = normals(&mut r, n * net.inputs());
        let c = (0..n).map(|i| (i * 7 + 3) % net.outputs()).collect();
        (x, c)
    }

    #[test]
    fn the_r_op_equals_the_dual_number_hessian_vector_product_on_every_layer() {
        for (k, (name, net)) in networks().into_iter().enumerate() {
            let (x, c) = data(&net, 6, k as u64);
            let mut r = rng(100 + k as u64);
            let params: Vec<f64> = net.init(&mut r).iter().map(|p| p + 0.02).collect();
            let v = normals(&mut r, net.num_params());
            let relabelled = [2usize, 0, 1, 1];
            for (batch, targets) in [
                (Some(&[3usize, 0, 3, 5][..]), Targets::Classes(&c)),
                (
                    Some(&[1usize, 2, 2, 4][..]),
                    Targets::ClassesOfBatch(&relabelled),
                ),
                (None, Targets::Classes(&c)),
            ] {
                let exact = dual_hvp(&net, &params, &v, &x, targets, batch);
                let mut ws = ConvWorkspace::new();
                let mut out = vec![0.0; net.num_params()];
                let mut grad = vec![0.0; net.num_params()];
                let loss = net.hvp(
                    &params,
                    &v,
                    &x,
                    targets,
                    batch,
                    Some(&mut grad),
                    &mut out,
                    &mut ws,
                );
                // Dual numbers give H·v to rounding; the R-op sums in another order (GEMM
                // blocking), so 1e-10 relative is ample and still catches any missing term
                // (those are O(1) relative).
                let err = rel_err(&out, &exact);
                assert!(err < 1e-10, "{name} {batch:?}: {err:e}");
                let mut grad2 = vec![0.0; net.num_params()];
                let loss2 = net.loss_grad(
                    &params,
                    &x,
                    targets,
                    batch,
                    Some(&mut grad2),
                    &mut ConvWorkspace::new(),
                );
                assert_eq!(loss, loss2);
                assert!(rel_err(&grad, &grad2) < 1e-14, "{name}");
            }
        }
    }

    #[test]
    fn gradients_and_hessian_products_match_central_differences() {
        for (k, (name, net)) in networks().into_iter().enumerate() {
            if net.activation() == Activation::Relu {
                // Piecewise linear: a difference step can cross a kink (the dual test covers it).
                continue;
            }
            let (x, c) = data(&net, 5, 10 + k as u64);
            let targets = Targets::Classes(&c);
            let mut r = rng(200 + k as u64);
            let params: Vec<f64> = net.init(&mut r).iter().map(|p| p + 0.05).collect();
            let v = normals(&mut r, net.num_params());
            let mut ws = ConvWorkspace::new();
            let mut grad = vec![0.0; net.num_params()];
            net.loss_grad(&params, &x, targets, None, Some(&mut grad), &mut ws);
            let mut hv = vec![0.0; net.num_params()];
            net.hvp(&params, &v, &x, targets, None, None, &mut hv, &mut ws);
            // Central differences along v (tolerances in `assert_matches_differences`). The
            // max-pool's argmax does not move for a step this small (ties have measure zero).
            let shifted = |s: f64| -> (f64, Vec<f64>) {
                let p: Vec<f64> = params.iter().zip(&v).map(|(a, b)| a + s * b).collect();
                let mut g = vec![0.0; net.num_params()];
                let f = net.loss_grad(
                    &p,
                    &x,
                    targets,
                    None,
                    Some(&mut g),
                    &mut ConvWorkspace::new(),
                );
                (f, g)
            };
            assert_matches_differences(&grad, &hv, &v, shifted, name);
        }
    }

    #[test]
    fn the_jacobian_products_equal_dual_numbers_and_are_adjoint() {
        for (k, (name, net)) in networks().into_iter().enumerate() {
            let (x, _) = data(&net, 5, 40 + k as u64);
            let mut r = rng(400 + k as u64);
            let params = net.init(&mut r);
            let u = normals(&mut r, net.num_params());
            let batch = [3usize, 0, 3, 4];
            let mut ws = ConvWorkspace::new();
            let (outputs, jvp) = net.outputs_and_jvp(&params, &u, &x, Some(&batch), &mut ws);
            let (outputs, jvp) = (outputs.to_vec(), jvp.to_vec());
            // J·u exactly: the generic forward pass on dual numbers whose dual parts are u.
            let dual: Vec<Dual64> = params
                .iter()
                .zip(&u)
                .map(|(&p, &d)| Dual64::new(p, d))
                .collect();
            let mut dual_ws = ConvWorkspace::new();
            let exact = net.outputs_of(&dual, &x, Some(&batch), &mut dual_ws);
            let (values, tangents): (Vec<f64>, Vec<f64>) =
                exact.iter().map(|o| (o.re, o.eps)).unzip();
            assert!(rel_err(&outputs, &values) < 1e-14, "{name}");
            // Rounding of two summation orders: 1e-10 relative, as the R-op test.
            assert!(rel_err(&jvp, &tangents) < 1e-10, "{name}");
            // ⟨U, J u⟩ = ⟨Jᵀ U, u⟩ for a random upstream U.
            let upstream = normals(&mut r, outputs.len());
            let mut vjp = vec![0.0; net.num_params()];
            net.backward_from(&params, &upstream, &mut vjp, &mut ws);
            let lhs: f64 = upstream.iter().zip(&jvp).map(|(a, b)| a * b).sum();
            let rhs: f64 = vjp.iter().zip(&u).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0),
                "{name}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn im2col_and_col2im_are_adjoint_and_the_convolution_is_the_direct_sum() {
        let shape = ConvNet::new(
            RGB_6,
            &[ConvBlock {
                filters: 2,
                stride: 2,
                padding: 1,
                pool: false,
            }],
            Activation::Tanh,
            2,
        )
        .unwrap()
        .blocks[0];
        let rows = 2;
        let mut r = rng(5);
        let images = normals(&mut r, rows * shape.input.len());
        let mut patches = vec![0.0; rows * shape.positions() * shape.patch()];
        im2col(&images, &mut patches, &shape, rows);
        // ⟨im2col(a), p⟩ = ⟨a, col2im(p)⟩.
        let p = normals(&mut r, patches.len());
        let mut back = vec![0.0; images.len()];
        col2im(&p, &mut back, &shape, rows);
        let lhs: f64 = patches.iter().zip(&p).map(|(a, b)| a * b).sum();
        let rhs: f64 = images.iter().zip(&back).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0));
        // One output of the convolution, by the textbook sum over taps and channels.
        let weights = normals(&mut r, shape.patch() * 2);
        let mut z = vec![0.0; rows * shape.positions() * 2];
        f64::gemm(
            &mut z,
            &patches,
            &weights,
            rows * shape.positions(),
            shape.patch(),
            2,
            false,
            false,
            false,
        );
        let (image, oy, ox, filter) = (1, 2, 1, 1);
        let (h, w, c) = (6, 6, 3);
        let mut direct = 0.0;
        for ky in 0..3 {
            for kx in 0..3 {
                let (iy, ix) = (oy * 2 + ky, ox * 2 + kx);
                if iy < 1 || ix < 1 || iy > h || ix > w {
                    continue;
                }
                for ch in 0..c {
                    let pixel = images[((image * h + iy - 1) * w + ix - 1) * c + ch];
                    direct += pixel * weights[((ky * 3 + kx) * c + ch) * 2 + filter];
                }
            }
        }
        let at = (image * shape.positions() + oy * shape.conv.width + ox) * 2 + filter;
        assert!((z[at] - direct).abs() < 1e-12);
    }

    #[test]
    fn a_step_on_a_batch_of_the_same_size_reuses_the_buffers() {
        let (_, net) = networks().pop().unwrap();
        let (x, c) = data(&net, 8, 3);
        let params = net.init(&mut rng(1));
        let mut ws = ConvWorkspace::new();
        let mut grad = vec![0.0; net.num_params()];
        let mut out = vec![0.0; net.num_params()];
        let targets = Targets::Classes(&c);
        net.hvp(
            &params,
            &params,
            &x,
            targets,
            Some(&[1, 2, 3]),
            Some(&mut grad),
            &mut out,
            &mut ws,
        );
        let pointers: Vec<*const f64> = ws.a.iter().chain(&ws.r_z).map(|b| b.as_ptr()).collect();
        net.hvp(
            &params,
            &params,
            &x,
            targets,
            Some(&[4, 5, 6]),
            Some(&mut grad),
            &mut out,
            &mut ws,
        );
        net.loss_grad(
            &params,
            &x,
            targets,
            Some(&[0, 7, 6]),
            Some(&mut grad),
            &mut ws,
        );
        let again: Vec<*const f64> = ws.a.iter().chain(&ws.r_z).map(|b| b.as_ptr()).collect();
        assert_eq!(pointers, again);
    }

    #[test]
    fn shapes_follow_conv4_and_bad_ones_are_refused() {
        let mnist = ImageShape {
            height: 28,
            width: 28,
            channels: 1,
        };
        let net = ConvNet::conv4(mnist, 64, Activation::Relu, 5).unwrap();
        // 28 → 14 → 7 → 3 → 1: the head sees 64 features.
        assert_eq!(net.features(), 64);
        assert_eq!(
            net.num_params(),
            (9 * 64 + 64) + 3 * (9 * 64 * 64 + 64) + (64 * 5 + 5)
        );
        let digits = ImageShape {
            height: 8,
            width: 8,
            channels: 1,
        };
        // 8 → 4 → 2 → 1 → a fourth pool does not fit.
        let err = ConvNet::conv4(digits, 8, Activation::Relu, 5).unwrap_err();
        assert!(err.to_string().contains("pool does not fit"), "{err}");
        assert!(ConvNet::new(digits, &[ConvBlock::conv4(8); 3], Activation::Relu, 5).is_ok());
        assert!(ConvNet::conv4(mnist, 0, Activation::Relu, 5).is_err());
        assert!(ConvNet::conv4(mnist, 4, Activation::Relu, 1).is_err());
        let tiny = ImageShape {
            height: 2,
            width: 2,
            channels: 1,
        };
        let no_padding = ConvBlock {
            padding: 0,
            ..ConvBlock::conv4(2)
        };
        assert!(ConvNet::new(tiny, &[no_padding], Activation::Relu, 2).is_err());
    }
}
