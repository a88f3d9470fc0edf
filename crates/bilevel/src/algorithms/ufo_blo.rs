//! # UFO-BLO (UFOM) — unbiased first-order (approximate) bilevel optimisation
//!
//! V. Likhosherstov, X. Song, K. Choromanski, J. Davis, A. Weller. *UFO-BLO: Unbiased
//! First-Order Bilevel Optimization.* arXiv:2006.03631 (2020); published as *Debiasing a
//! First-order Heuristic for Approximate Bi-level Optimization*, ICML 2021 (arXiv:2106.02487),
//! where the method is called UFOM. algorithms.md §7.
//!
//! Runs on unrolled (meta-learning) problems: x = φ is the initialisation of the problem's r-step
//! inner SGD (step α) on each task's support loss l_j; M(φ) = mean_j L_j(θ_r^j) with L_j the
//! query loss. The first-order (FOM) meta-gradient g_FO = ∇L_j(θ_r) is biased; UFO-BLO adds the
//! exact correction on a random fraction q of the tasks, reweighted so that the estimate is
//! unbiased, at expected cost O(r + q·r) and O(1) memory on the first-order branch.
//!
//! ## Update (one meta-iteration t; `UnbMAML.train_step` of the official code, §7.3)
//! For each task j of a meta-batch 𝒯:
//! 1. ξ_j ~ Bernoulli(q).
//! 2. θ₀ = φ_t, $\theta_{k+1} = \theta_k - \alpha \nabla l_j(\theta_k)$, k < r, storing the
//!    iterates only if ξ_j = 1 (`inner::descend_recording_on`).
//! 3. $g_{FO} = \nabla L_j(\theta_r)$.
//! 4. If ξ_j = 1: reverse sweep (shared with MAML) $g_{ex} \leftarrow g_{FO}$, for k = r−1..0:
//!    $g_{ex} \leftarrow g_{ex} - \alpha \nabla^2 l_j(\theta_k)\thinspace g_{ex}$ (optionally clipped,
//!    see `clip`); then $g_j = g_{FO} + (g_{ex} - g_{FO})/q$, computed as
//!    $g_{ex}/q + (1 - 1/q)\thinspace g_{FO}$ so that q = 1 gives g_ex bit for bit.
//!    Else $g_j = g_{FO}$.
//! 5. $\hat h = \frac{1}{|\mathcal T|}\sum_j g_j$; $\phi_{t+1} = \phi_t - \gamma_t \hat h$ (or Adam).
//!
//! Unbiasedness (no clipping): E_ξ\[g_j\] = g_FO + q(g_ex − g_FO)/q = g_ex = ∇M_j(φ).
//! Special cases: q = 0 is FO-MAML (no exact branch ever; identical iterates to `fomaml`),
//! q = 1 is exact MAML (identical iterates to `maml`); both are tested bit for bit.
//! Second moment [derived, §7.4]: E‖g_j‖² = V² + D²(1/q − 1), V² = ‖g_ex‖², D² = ‖g_FO − g_ex‖².
//!
//! **Clipping** (`clip = c`): as in the official code, after each reverse step the recursion
//! vector is clipped elementwise on the step scale, α·g_ex ∈ [−c, c]. This bounds the variance of
//! the 1/q reweighting but **breaks unbiasedness** (E\[g_j\] ≠ ∇M_j wherever the clip is active).
//! Off by default; the UFOM runs used c = 0.1 with R = 10.
//!
//! **Adaptive q (experimental, §7.4)**: `exact_prob = { kind = "adaptive", … }` starts at q_min
//! and, after each meta-step in which the exact branch fired, updates bias-corrected exponential
//! moving averages (β) of D² = ‖g_FO − g_ex‖² and V² = ‖g_ex‖², scales D² by `d2_scale` (the
//! code's heuristic 1/10) and recomputes q by `rule`, clipped to [q_min, 1]. The official code's
//! quirk (measuring D² with the already debiased g, i.e. (1 − 1/q)²‖g_FO − g_ex‖²) is fixed: D²
//! uses g_FO. Rules ([`QRule`]): `derived` (default) minimises cost × second moment,
//! (C_det + qC_rnd)(V² − D² + D²/q) ⟹ q* = √(C_det D² / (C_rnd(V² − D²))), with the costs of
//! this implementation in oracle calls (C_det = r + 1 gradients, C_rnd = r HVPs on stored
//! iterates); `reptile_code` and `toy_code` are the two (mutually inconsistent) closed forms of
//! the official scripts. q then depends on past draws, so the estimate is unbiased conditionally
//! on the current q only. The two scripts disagree and the paper's formula could not be checked
//! (§11.8): treat q as a hyperparameter first. **Order differs from the official code:** here q
//! is updated once per meta-step, from EMAs averaged over the meta-batch's tasks that took the
//! exact branch; the official code updates the EMAs and q inside its loop over the meta-batch,
//! once per exact task (so later tasks of a batch already see the new q).
//!
//! ## Oracle calls per iteration (m = meta-batch size, e = number of tasks with ξ = 1;
//! checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | m·r | m | one task each |
//! | hvp_yy | e·r (E\[e\] = q·m) | – | one task each |
//! | grad_x, cross_xy | 0 | 0 | |
//!
//! Memory: r + 1 stored iterates on the exact branch only (the code's recomputation mode, O(1)
//! memory and O(r²) gradients, is not implemented: iterates are stored, as the shipped code does).
//!
//! ## Parameters
//! r and α belong to the problem. The code's outer step is SGD with step meta_step·α on g
//! (`phi += meta_step * mean(-alpha * g)`); here `outer_lr` is the step on g directly.
//!
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `exact_prob` | q | 0.1 | number in [0, 1], or `{ kind = "adaptive", q_min = 0.05, beta = 0.99, d2_scale = 0.1, rule = "derived" }` |
//! | `clip` | c | none | > 0 |
//! | `meta_batch` | tasks per meta-step | 5 (UFOM code) | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//! | `outer_lr` | meta step | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! // The counter-example of §7.5: FO-MAML stalls at |∇M| = 0.1, UFO-BLO does not.
//! let problem = bilevel::problems::ufo_toy::UfoToyConfig::default().build().unwrap();
//! let solver = UfoBloConfig {
//!     exact_prob: ExactProb::Fixed(0.5),
//!     meta_batch: 2,
//!     outer_lr: Schedule::InvPower { c: 10.0, a: 1.0, t0: 1.0 },
//!     ..Default::default()
//! }
//! .build()
//! .unwrap();
//! let (x0, y0) = problem.start();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..2000 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! let grad = problem.reference().unwrap().evaluate(&state.x).unwrap().hypergradient;
//! assert!(grad.norm() < 0.03);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Deserializer, Serialize};

use super::double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
use crate::core::error::{check_at_least, check_in_range, check_positive};
use crate::core::linalg::uniform01;
use crate::core::{
    Batch, Diagnostics, Problem, Result, Rng, SamplingMode, Schedule, Vector, VectorExt,
};
use crate::hypergrad::Hypergradient;
use crate::hypergrad::meta_unrolled::{
    MetaBatch, MetaState, adapt, adapt_recording, reverse_sweep, unrolled_spec,
};

/// The closed form that turns (D², V²) into q in the adaptive mode (algorithms.md §7.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QRule {
    /// \[derived\] minimise (C_det + qC_rnd)(V² − D² + D²/q): q* = √(C_det D²/(C_rnd(V² − D²))),
    /// q* = 1 when D²(C_det + C_rnd) ≥ C_rnd V²; C_det = r + 1, C_rnd = r (oracle calls here).
    #[default]
    Derived,
    /// reptile.py: with R = r + 1, C_det = R + 1, C_rnd = R(R−1)/2 + R: q* = 1 if
    /// D² ≥ ½C_rnd V²/(C_det + C_rnd), else the root in (0, 1) of
    /// (V² − D²)C_rnd q² − D²C_rnd q − 2D²C_det = 0.
    ReptileCode,
    /// toy.py: q* = 1 if D² ≥ 2rV²/(2r + 1), else the root in (0, 1) of
    /// r(V² − D²)q² + (D²r/2)q − D²(r + 1)/2 = 0.
    ToyCode,
}

impl QRule {
    /// q* for the statistics (D², V²) and r inner steps (not yet clipped to [q_min, 1]).
    pub fn q_star(&self, d2: f64, v2: f64, r: usize) -> f64 {
        let r = r as f64;
        if v2.partial_cmp(&d2) != Some(std::cmp::Ordering::Greater) {
            // The FO bias is as large as the gradient itself: always take the exact branch.
            return 1.0;
        }
        // The positive root of a q² + b q + c = 0 with a > 0, c < 0.
        let root = |a: f64, b: f64, c: f64| (-b + (b * b - 4.0 * a * c).sqrt()) / (2.0 * a);
        match self {
            QRule::Derived => {
                let (c_det, c_rnd) = (r + 1.0, r.max(1.0));
                if d2 * (c_det + c_rnd) >= c_rnd * v2 {
                    1.0
                } else {
                    (c_det * d2 / (c_rnd * (v2 - d2))).sqrt()
                }
            }
            QRule::ReptileCode => {
                let big_r = r + 1.0;
                let (c_det, c_rnd) = (big_r + 1.0, big_r * (big_r - 1.0) / 2.0 + big_r);
                if d2 >= 0.5 * c_rnd * v2 / (c_det + c_rnd) {
                    1.0
                } else {
                    root((v2 - d2) * c_rnd, -d2 * c_rnd, -2.0 * d2 * c_det)
                }
            }
            QRule::ToyCode => {
                if d2 >= 2.0 * r * v2 / (2.0 * r + 1.0) || r == 0.0 {
                    1.0
                } else {
                    root(r * (v2 - d2), d2 * r / 2.0, -d2 * (r + 1.0) / 2.0)
                }
            }
        }
    }
}

/// q, the probability of the exact branch: fixed, or adapted online (experimental).
///
/// In configs a bare number is `Fixed`: `exact_prob = 0.1` (also `{ kind = "fixed", q = 0.1 }`);
/// a fixed q serializes as the bare number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExactProb {
    /// A fixed q ∈ [0, 1] (0: FO-MAML, 1: MAML).
    Fixed(f64),
    /// Adaptive q (§7.4; experimental).
    Adaptive {
        /// Floor of q, and its starting value (code: 0.05).
        q_min: f64,
        /// EMA factor of the D², V² statistics (code: 0.99).
        beta: f64,
        /// Factor applied to D² before the rule (the code's heuristic: 0.1).
        d2_scale: f64,
        /// The closed form.
        rule: QRule,
    },
}

impl ExactProb {
    /// The adaptive mode with the code's constants and the derived rule.
    pub const fn adaptive() -> Self {
        ExactProb::Adaptive {
            q_min: 0.05,
            beta: 0.99,
            d2_scale: 0.1,
            rule: QRule::Derived,
        }
    }
    fn initial_q(&self) -> f64 {
        match *self {
            ExactProb::Fixed(q) => q,
            ExactProb::Adaptive { q_min, .. } => q_min,
        }
    }
    fn validate(&self) -> Result<()> {
        match *self {
            ExactProb::Fixed(q) => check_in_range("exact_prob", q, 0.0, 1.0),
            ExactProb::Adaptive {
                q_min,
                beta,
                d2_scale,
                ..
            } => {
                check_in_range("exact_prob.q_min", q_min, f64::MIN_POSITIVE, 1.0)?;
                check_in_range("exact_prob.beta", beta, 0.0, 1.0 - f64::EPSILON)?;
                check_positive("exact_prob.d2_scale", d2_scale)
            }
        }
    }
}

impl Serialize for ExactProb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match *self {
            ExactProb::Fixed(q) => s.serialize_f64(q),
            ExactProb::Adaptive {
                q_min,
                beta,
                d2_scale,
                rule,
            } => {
                let mut map = s.serialize_struct("ExactProb", 5)?;
                map.serialize_field("kind", "adaptive")?;
                map.serialize_field("q_min", &q_min)?;
                map.serialize_field("beta", &beta)?;
                map.serialize_field("d2_scale", &d2_scale)?;
                map.serialize_field("rule", &rule)?;
                map.end()
            }
        }
    }
}

fn default_q_min() -> f64 {
    0.05
}
fn default_beta() -> f64 {
    0.99
}
fn default_d2_scale() -> f64 {
    0.1
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum TaggedExactProb {
    Fixed {
        q: f64,
    },
    Adaptive {
        #[serde(default = "default_q_min")]
        q_min: f64,
        #[serde(default = "default_beta")]
        beta: f64,
        #[serde(default = "default_d2_scale")]
        d2_scale: f64,
        #[serde(default)]
        rule: QRule,
    },
}

impl<'de> Deserialize<'de> for ExactProb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ExactProb;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number in [0, 1] (fixed q) or a table with `kind` = \"adaptive\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<ExactProb, E> {
                Ok(ExactProb::Fixed(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<ExactProb, E> {
                Ok(ExactProb::Fixed(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<ExactProb, E> {
                Ok(ExactProb::Fixed(v as f64))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<ExactProb, A::Error> {
                let tagged = TaggedExactProb::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(match tagged {
                    TaggedExactProb::Fixed { q } => ExactProb::Fixed(q),
                    TaggedExactProb::Adaptive {
                        q_min,
                        beta,
                        d2_scale,
                        rule,
                    } => ExactProb::Adaptive {
                        q_min,
                        beta,
                        d2_scale,
                        rule,
                    },
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Configuration of UFO-BLO.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UfoBloConfig {
    /// q: probability of the exact branch per task, fixed or adaptive.
    pub exact_prob: ExactProb,
    /// c: elementwise clip of the step-scale recursion vector (breaks unbiasedness).
    pub clip: Option<f64>,
    /// Tasks per meta-step.
    pub meta_batch: usize,
    /// How tasks are drawn.
    pub sampling: SamplingMode,
    /// γ_t: meta step size.
    pub outer_lr: Schedule,
    /// SGD or Adam on the meta-gradient.
    pub outer_optimizer: OuterOptimizer,
}

impl Default for UfoBloConfig {
    fn default() -> Self {
        Self {
            exact_prob: ExactProb::Fixed(0.1),
            clip: None,
            meta_batch: 5,
            sampling: SamplingMode::Shuffled,
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
        }
    }
}

/// The UFO-BLO estimator.
#[derive(Clone, Debug, PartialEq)]
pub struct UfoEstimator {
    /// q, fixed or adaptive.
    pub exact_prob: ExactProb,
    /// Optional clip c.
    pub clip: Option<f64>,
    /// Meta-batch settings.
    pub batch: MetaBatch,
}

/// State of [`UfoEstimator`]: the meta state plus q and the adaptive statistics.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UfoState {
    /// Task sampler and reported inner iterate.
    pub meta: MetaState,
    /// The current q.
    pub q: f64,
    /// EMA of D² = ‖g_FO − g_ex‖² (adaptive mode; not bias-corrected).
    pub d2: f64,
    /// EMA of V² = ‖g_ex‖² (adaptive mode; not bias-corrected).
    pub v2: f64,
    /// Number of EMA updates so far (for the bias correction 1/(1 − βⁿ)).
    pub updates: u64,
}

impl Hypergradient for UfoEstimator {
    type State = UfoState;

    fn init(&self, problem: &Problem, y0: Vector, rng: &mut Rng) -> Result<UfoState> {
        Ok(UfoState {
            meta: MetaState::init(problem, y0, self.batch, rng, "ufo_blo", false)?,
            q: self.exact_prob.initial_q(),
            d2: 0.0,
            v2: 0.0,
            updates: 0,
        })
    }

    fn estimate(
        &self,
        problem: &Problem,
        phi: &Vector,
        st: &mut UfoState,
        rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics> {
        let spec = unrolled_spec(problem, "ufo_blo", false)?;
        let (f, g) = (problem.f(), problem.g());
        let q = st.q;
        let m = st.meta.begin();
        let w = &mut st.meta.work;
        let [theta, grad, g_fo, g_ex, hv, pa] = w.vectors.vectors([phi.nrows(); 6]);
        out.set_zero();
        let (mut fired, mut d2_sum, mut v2_sum) = (0usize, 0.0, 0.0);
        for &j in &w.tasks {
            // §7.3: ξ ~ Bernoulli(q).
            let exact = uniform01(rng) < q;
            // §7.3: θ₀ = φ .. θ_r, storing the iterates only on the exact branch.
            if exact {
                adapt_recording(g, phi, j, &spec, None, theta, grad, &mut w.trajectory);
            } else {
                adapt(g, phi, j, &spec, None, theta, grad);
            }
            // §7.3: g_FO = ∇L_j(θ_r).
            f.grad_y(phi, theta, Batch::Indices(&[j]), g_fo);
            if exact {
                // §7.3: g_ex ← g_FO; for k = r−1..0: g_ex ← g_ex − α H_k g_ex (optional clip).
                g_ex.assign(g_fo);
                reverse_sweep(
                    g,
                    phi,
                    j,
                    spec.lr,
                    None,
                    self.clip,
                    &w.trajectory,
                    g_ex,
                    hv,
                    pa,
                );
                // §7.4 statistics (quirk fixed: D² from g_FO, not from the debiased g).
                let mut diff_sq = 0.0;
                for (a, b) in g_fo.as_slice().iter().zip(g_ex.as_slice()) {
                    diff_sq += (a - b) * (a - b);
                }
                d2_sum += diff_sq;
                v2_sum += g_ex.norm_sq();
                fired += 1;
                // §7.3: g = g_FO + (g_ex − g_FO)/q = g_ex/q + (1 − 1/q) g_FO.
                g_ex.scale(1.0 / q);
                g_ex.axpy(1.0 - 1.0 / q, g_fo);
                out.axpy(1.0 / m as f64, g_ex);
            } else {
                out.axpy(1.0 / m as f64, g_fo);
            }
            st.meta.y.axpy(1.0 / m as f64, theta);
        }
        // §7.4 (experimental): update the EMAs and recompute q after the meta-step.
        if let ExactProb::Adaptive {
            q_min,
            beta,
            d2_scale,
            rule,
        } = self.exact_prob
            && fired > 0
        {
            let (cur_d2, cur_v2) = (d2_sum / fired as f64, v2_sum / fired as f64);
            st.d2 = beta * st.d2 + (1.0 - beta) * cur_d2;
            st.v2 = beta * st.v2 + (1.0 - beta) * cur_v2;
            st.updates += 1;
            let correction = 1.0 - beta.powi(st.updates.min(i32::MAX as u64) as i32);
            let (d2, v2) = (d2_scale * st.d2 / correction, st.v2 / correction);
            st.q = rule.q_star(d2, v2, spec.steps).clamp(q_min, 1.0);
        }
        Ok(Diagnostics::new()
            .with("exact_fraction", fired as f64 / m as f64)
            .with("q", q))
    }

    fn inner_iterate<'s>(&self, st: &'s UfoState) -> &'s Vector {
        &st.meta.y
    }
}

/// UFO-BLO: a double loop over the unbiased first-order estimator.
pub type UfoBlo = DoubleLoop<UfoEstimator>;
/// State of [`UfoBlo`].
pub type UfoBloState = DoubleLoopState<UfoState>;

impl UfoBloConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.exact_prob.validate()?;
        if let Some(c) = self.clip {
            check_positive("clip", c)?;
        }
        check_at_least("meta_batch", self.meta_batch, 1)?;
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`UfoBlo`].
    pub fn build(self) -> Result<UfoBlo> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "ufo_blo",
            hypergrad: UfoEstimator {
                exact_prob: self.exact_prob,
                clip: self.clip,
                batch: MetaBatch {
                    size: self.meta_batch,
                    sampling: self.sampling,
                },
            },
            outer_lr: self.outer_lr,
            outer_optimizer: self.outer_optimizer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_q_minimises_cost_times_second_moment() {
        let (d2, v2, r) = (0.01, 1.0, 10);
        let q = QRule::Derived.q_star(d2, v2, r);
        let (c_det, c_rnd) = (11.0, 10.0);
        let objective = |q: f64| (c_det + q * c_rnd) * (v2 - d2 + d2 / q);
        // q* is the minimiser over (0, 1]: no grid point does better.
        for k in 1..=1000 {
            let other = k as f64 / 1000.0;
            assert!(
                objective(q) <= objective(other) + 1e-12,
                "q* = {q}, q = {other}"
            );
        }
        assert!((q - (c_det * d2 / (c_rnd * (v2 - d2))).sqrt()).abs() < 1e-15);
        // A bias as large as the gradient: always exact.
        assert_eq!(QRule::Derived.q_star(0.9, 1.0, r), 1.0);
        assert_eq!(QRule::Derived.q_star(2.0, 1.0, r), 1.0);
    }

    #[test]
    fn code_rules_return_the_roots_of_their_quadratics() {
        let (d2, v2, r) = (0.002, 1.0, 9);
        let q = QRule::ReptileCode.q_star(d2, v2, r);
        let big_r = r as f64 + 1.0;
        let (c_det, c_rnd) = (big_r + 1.0, big_r * (big_r - 1.0) / 2.0 + big_r);
        let residual = (v2 - d2) * c_rnd * q * q - d2 * c_rnd * q - 2.0 * d2 * c_det;
        assert!(residual.abs() < 1e-12 && q > 0.0 && q < 1.0, "q = {q}");
        let q = QRule::ToyCode.q_star(d2, v2, r);
        let rf = r as f64;
        let residual = rf * (v2 - d2) * q * q + d2 * rf / 2.0 * q - d2 * (rf + 1.0) / 2.0;
        assert!(residual.abs() < 1e-12 && q > 0.0 && q < 1.0, "q = {q}");
    }

    #[test]
    fn exact_prob_reads_numbers_and_tables_and_rejects_typos() {
        let c: UfoBloConfig = serde_json::from_str(r#"{"exact_prob": 0.2}"#).unwrap();
        assert_eq!(c.exact_prob, ExactProb::Fixed(0.2));
        let c: UfoBloConfig =
            serde_json::from_str(r#"{"exact_prob": {"kind": "fixed", "q": 1}}"#).unwrap();
        assert_eq!(c.exact_prob, ExactProb::Fixed(1.0));
        let c: UfoBloConfig =
            serde_json::from_str(r#"{"exact_prob": {"kind": "adaptive"}}"#).unwrap();
        assert_eq!(c.exact_prob, ExactProb::adaptive());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<UfoBloConfig>(&json).unwrap(), c);
        let fixed = UfoBloConfig::default();
        let json = serde_json::to_string(&fixed).unwrap();
        assert!(json.contains(r#""exact_prob":0.1"#), "{json}");
        let err = serde_json::from_str::<UfoBloConfig>(
            r#"{"exact_prob": {"kind": "adaptive", "qmin": 0.1}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("qmin"), "{err}");
        let err = UfoBloConfig {
            exact_prob: ExactProb::Fixed(1.5),
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("exact_prob"), "{err}");
    }
}
