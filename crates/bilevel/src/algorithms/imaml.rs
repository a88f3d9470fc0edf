//! # iMAML — implicit model-agnostic meta-learning
//!
//! A. Rajeswaran, C. Finn, S. Kakade, S. Levine. *Meta-Learning with Implicit Gradients.*
//! NeurIPS 2019 (arXiv:1909.04630), Algorithms 1 and 2; algorithms.md §8.6.
//!
//! Each task's adaptation is the solution of a **proximal** inner problem, regularised towards
//! the meta-parameters φ (eq. 3 of the paper):
//!
//! $$ \theta_j^\star(\phi) = \arg\min_\theta\ l_j(\theta) + \frac{\lambda}{2}\lVert \theta - \phi \rVert^2, $$
//!
//! so that, by the implicit function theorem (Lemma 1, eq. 6), the meta-gradient of
//! M(φ) = mean_j L_j(θ_j*(φ)) does not depend on the path of the inner optimiser:
//!
//! $$ \nabla M_j(\phi) = \Big(I + \frac{1}{\lambda} \nabla^2 l_j(\theta_j^\star)\Big)^{-1} \nabla L_j(\theta_j^\star). $$
//!
//! This is AID with a proximal inner problem: the linear system is solved by conjugate gradient
//! ([`mod@crate::linsolve::cg`], the same solver AID-CG uses), one Hessian-vector product of the
//! support loss per CG iteration, memory O(dim) whatever the number of inner steps.
//!
//! ## Update (one meta-iteration t; Algorithm 1 with Algorithm 2 for the meta-gradient)
//! 1. Draw a meta-batch 𝒯 of `meta_batch` tasks.
//! 2. For each task j: θ₀ = φ_t and `inner_steps` gradient steps of size `inner_lr` on the
//!    proximal objective, $\theta_{k+1} = \theta_k - \alpha(\nabla l_j(\theta_k) + \lambda(\theta_k - \phi_t))$,
//!    an approximate θ_j* (Definition 3: a δ-approximate solution is all the theory needs).
//! 3. gⱼ ≈ (I + ∇²l_j(θ_j)/λ)⁻¹ ∇L_j(θ_j) by `cg.max_iters` CG iterations from 0 (eq. 7,
//!    Algorithm 2; CG stops early on non-positive curvature, which a non-convex l_j can have
//!    where λ is small).
//! 4. $\hat h = \frac{1}{|\mathcal T|}\sum_j g_j$ and $\phi_{t+1} = \phi_t - \gamma_t \hat h$
//!    (or Adam, as the paper's experiments).
//!
//! The problem's r and α (its [`UnrolledSpec`](crate::core::UnrolledSpec)) are the defaults
//! of `inner_steps` and `inner_lr`; the proximal problem is better conditioned than l_j (its
//! Hessian is ∇²l_j + λI), so a step up to 1/(L + λ) is safe.
//!
//! ## Oracle calls per iteration (m = meta-batch size, T inner steps, K CG iterations)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | m·T | m | one task each |
//! | hvp_yy | ≤ m·K | 0 | one task each |
//! | grad_x, cross_xy | 0 | 0 | |
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `meta_batch` | tasks per meta-step | 5 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//! | `lambda` | λ, the proximal strength | 1.0 | > 0 |
//! | `inner_steps` | steps of the inner solver | the problem's r | ≥ 1 |
//! | `inner_lr` | its step size | the problem's α | > 0 |
//! | `cg` | CG for eq. 7 | 5 iterations, `rel_tol` 0 (the paper's 5 CG steps) | |
//! | `outer_lr` | meta step η | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
use crate::core::error::{check_at_least, check_positive};
use crate::core::{
    Batch, Diagnostics, Problem, Result, Rng, SamplingMode, Schedule, Vector, VectorExt,
};
use crate::hypergrad::Hypergradient;
use crate::hypergrad::meta_unrolled::{MetaBatch, MetaState, unrolled_spec};
use crate::linsolve::cg::{CgParams, CgWorkspace, cg_in_place};

/// Configuration of iMAML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImamlConfig {
    /// Tasks per meta-step.
    pub meta_batch: usize,
    /// How tasks are drawn.
    pub sampling: SamplingMode,
    /// λ: strength of the proximal term (λ/2)‖θ − φ‖².
    pub lambda: f64,
    /// Gradient steps on each task's proximal problem (default: the problem's r).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner_steps: Option<usize>,
    /// Their step size (default: the problem's α).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner_lr: Option<f64>,
    /// CG on (I + ∇²l_j/λ) g = ∇L_j.
    pub cg: CgParams,
    /// γ_t: meta step size.
    pub outer_lr: Schedule,
    /// SGD or Adam on the meta-gradient.
    pub outer_optimizer: OuterOptimizer,
}

impl Default for ImamlConfig {
    fn default() -> Self {
        Self {
            meta_batch: 5,
            sampling: SamplingMode::Shuffled,
            lambda: 1.0,
            inner_steps: None,
            inner_lr: None,
            cg: CgParams {
                max_iters: 5,
                rel_tol: 0.0,
            },
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
        }
    }
}

/// The implicit meta-gradient of the proximal inner problems (module docs, steps 2–3).
#[derive(Clone, Debug, PartialEq)]
pub struct ImplicitMetaGradient {
    /// Meta-batch settings.
    pub batch: MetaBatch,
    /// λ.
    pub lambda: f64,
    /// Inner steps (`None`: the problem's r).
    pub inner_steps: Option<usize>,
    /// Inner step size (`None`: the problem's α).
    pub inner_lr: Option<f64>,
    /// The CG solve of eq. 7.
    pub cg: CgParams,
}

impl Hypergradient for ImplicitMetaGradient {
    type State = MetaState;

    fn init(&self, problem: &Problem, y0: Vector, rng: &mut Rng) -> Result<MetaState> {
        MetaState::init(problem, y0, self.batch, rng, "imaml", false)
    }

    fn estimate(
        &self,
        problem: &Problem,
        phi: &Vector,
        st: &mut MetaState,
        _rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics> {
        let spec = unrolled_spec(problem, "imaml", false)?;
        let (steps, alpha) = (
            self.inner_steps.unwrap_or(spec.steps),
            self.inner_lr.unwrap_or(spec.lr),
        );
        let (f, g) = (problem.f(), problem.g());
        let lambda = self.lambda;
        let m = st.begin();
        let w = &mut st.work;
        let dim = phi.nrows();
        let cg_ws = w.cg.get_or_insert_with(|| CgWorkspace::new(dim));
        let [theta, grad, query, g_j] = w.vectors.vectors([dim; 4]);
        out.set_zero();
        let (mut matvecs, mut worst_residual) = (0usize, 0.0f64);
        for &j in &w.tasks {
            let task = [j];
            let batch = Batch::Indices(&task);
            // Step 2: θ₀ = φ, θ_{k+1} = θ_k − α(∇l_j(θ_k) + λ(θ_k − φ)).
            theta.assign(phi);
            for _ in 0..steps {
                g.grad_y(phi, theta, batch, grad);
                grad.axpy(lambda, theta);
                grad.axpy(-lambda, phi);
                theta.axpy(-alpha, grad);
            }
            // Step 3 (eq. 7): (I + ∇²l_j(θ_j)/λ) g_j = ∇L_j(θ_j) by CG from 0.
            f.grad_y(phi, theta, batch, query);
            g_j.set_zero();
            let theta: &Vector = theta;
            let info = cg_in_place(
                |v, o| {
                    g.hvp_yy(phi, theta, v, batch, o);
                    o.scale(1.0 / lambda);
                    o.axpy(1.0, v);
                },
                query,
                g_j,
                &self.cg,
                cg_ws,
            );
            matvecs += info.matvecs;
            worst_residual = worst_residual.max(info.rel_residual);
            // Step 4: ĥ = mean over the meta-batch.
            out.axpy(1.0 / m as f64, g_j);
            st.y.axpy(1.0 / m as f64, theta);
        }
        Ok(Diagnostics::new()
            .with("linsolve_matvecs", matvecs as f64)
            .with("cg_rel_residual", worst_residual))
    }

    fn inner_iterate<'s>(&self, st: &'s MetaState) -> &'s Vector {
        &st.y
    }
}

/// iMAML: a double loop over the implicit meta-gradient.
pub type Imaml = DoubleLoop<ImplicitMetaGradient>;
/// State of [`Imaml`].
pub type ImamlState = DoubleLoopState<MetaState>;

impl ImamlConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_at_least("meta_batch", self.meta_batch, 1)?;
        check_positive("lambda", self.lambda)?;
        if let Some(steps) = self.inner_steps {
            check_at_least("inner_steps", steps, 1)?;
        }
        if let Some(lr) = self.inner_lr {
            check_positive("inner_lr", lr)?;
        }
        self.cg.validate("cg")?;
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`Imaml`].
    pub fn build(self) -> Result<Imaml> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "imaml",
            hypergrad: ImplicitMetaGradient {
                batch: MetaBatch {
                    size: self.meta_batch,
                    sampling: self.sampling,
                },
                lambda: self.lambda,
                inner_steps: self.inner_steps,
                inner_lr: self.inner_lr,
                cg: self.cg,
            },
            outer_lr: self.outer_lr,
            outer_optimizer: self.outer_optimizer,
        })
    }
}
