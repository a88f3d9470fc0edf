//! Φ̂, the stochastic hypergradient estimate of algorithms.md §1.5.3, with replayable batches:
//!
//! $$ \hat\Phi(x, y) = \nabla_x f(x, y; B_F) - \nabla^2_{xy} g(x, y; B_G)\thinspace v, \qquad
//!    v = \mathrm{Neumann}\big(\nabla^2_{yy} g(x, y; B_j),\ \nabla_y f(x, y; B_F)\big), $$
//!
//! where the Neumann series is the summed SHIA (§1.5.1, Q terms, batches B_1..B_Q) or the randomly
//! truncated HIA (§1.5.2, truncation P). The batches are drawn once into a [`PhiHatDraw`] and can
//! be replayed at several points: MRBO, VRBO, SUSTAIN and MSTSA evaluate Φ̂ at the current and
//! the previous iterate with the *same* B_F, B_1..B_Q, B_G (and the same P): "joint SHIA".
//!
//! Oracle calls of one [`PhiHat::evaluate`]: f: grad_x 1, grad_y 1 (one fused call on B_F);
//! g: hvp_yy Q (SHIA) or P (HIA), cross_xy 1.
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use crate::core::error::{Result, check_at_least};
use crate::core::linalg::Scratch;
use crate::core::{Batch, MinibatchSampler, Problem, Rng, SamplingMode, Vector, VectorExt};
use crate::linsolve::{HiaParams, NeumannParams};

/// Which Neumann estimator approximates [∇²ᵧᵧg]⁻¹∇ᵧf inside Φ̂.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NeumannEstimator {
    /// SHIA: η Σ_{i=0..Q} Π_{j≤i}(I − η A_j) b with fresh batches per term (stocBiO, MRBO, VRBO).
    Shia(NeumannParams),
    /// HIA: N η Π_{j≤P}(I − η A_j) b with P uniform in {0..N−1} (BSA, TTSA, SUSTAIN).
    Hia(HiaParams),
}

impl NeumannEstimator {
    /// Checks the parameters, naming fields under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        match self {
            NeumannEstimator::Shia(p) => p.validate(prefix),
            NeumannEstimator::Hia(p) => p.validate(prefix),
        }
    }
    /// The largest number of Hessian products one evaluation can make.
    pub fn max_terms(&self) -> usize {
        match self {
            NeumannEstimator::Shia(p) => p.terms,
            NeumannEstimator::Hia(p) => p.max_terms.saturating_sub(1),
        }
    }
}

/// The Φ̂ estimator: a Neumann estimator and a minibatch size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhiHat {
    /// How v is approximated.
    pub neumann: NeumannEstimator,
    /// Size of B_F, each B_j and B_G.
    pub batch_size: usize,
    /// How the batches are drawn.
    pub sampling: SamplingMode,
}

/// Samplers of Φ̂ (serializable; part of a solver's state).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhiHatSamplers {
    outer: MinibatchSampler,
    hessian: MinibatchSampler,
    cross: MinibatchSampler,
}

/// One draw of the batches of Φ̂ (B_F, B_1..B_Q, B_G and, for HIA, P), replayable at any
/// number of points. Buffers are reused across draws: no allocation after the first.
#[derive(Clone, Debug, Default)]
pub struct PhiHatDraw {
    full: bool,
    outer: Vec<usize>,
    /// Q (or P) Hessian batches, concatenated.
    hessian: Vec<usize>,
    batch_size: usize,
    terms: usize,
    cross: Vec<usize>,
}

impl PhiHatDraw {
    /// A draw that uses the full batch everywhere (deterministic Φ̂; VRBO's full checkpoint).
    /// For HIA the truncation `terms` must still be given.
    pub fn full(terms: usize) -> Self {
        Self {
            full: true,
            terms,
            ..Self::default()
        }
    }
    /// The number of Hessian products this draw makes per evaluation.
    pub fn terms(&self) -> usize {
        self.terms
    }
    fn outer(&self) -> Batch<'_> {
        if self.full {
            Batch::Full
        } else {
            Batch::Indices(&self.outer)
        }
    }
    fn cross(&self) -> Batch<'_> {
        if self.full {
            Batch::Full
        } else {
            Batch::Indices(&self.cross)
        }
    }
    fn hessian(&self, j: usize) -> Batch<'_> {
        if self.full {
            Batch::Full
        } else {
            let bs = self.batch_size;
            Batch::Indices(&self.hessian[j * bs..(j + 1) * bs])
        }
    }
}

/// Scratch of [`PhiHat::evaluate`] (not serialized).
#[derive(Clone, Debug, Default)]
pub struct PhiHatWork {
    vectors: Scratch,
}

impl PhiHatWork {
    /// The v ≈ [∇²ᵧᵧg]⁻¹∇ᵧf of the last evaluation.
    pub fn adjoint(&self) -> Option<&Vector> {
        self.vectors.get(0)
    }
}

impl PhiHat {
    /// Checks the parameters (`prefix` names the Neumann table, e.g. `"neumann"`).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        check_at_least("batch_size", self.batch_size, 1)?;
        self.neumann.validate(prefix)
    }

    /// Fresh samplers for `problem`, seeded from `rng`.
    pub fn samplers(&self, problem: &Problem, rng: &mut Rng) -> Result<PhiHatSamplers> {
        use rand::Rng as _;
        let (n_f, n_g) = (problem.f().n_samples(), problem.g().n_samples());
        let bs = self.batch_size;
        Ok(PhiHatSamplers {
            outer: MinibatchSampler::new(n_f, bs, self.sampling, rng.next_u64())?,
            hessian: MinibatchSampler::new(n_g, bs, self.sampling, rng.next_u64())?,
            cross: MinibatchSampler::new(n_g, bs, self.sampling, rng.next_u64())?,
        })
    }

    /// Draws B_F, the Hessian batches (Q of them for SHIA; P ~ U{0..N−1} for HIA, from `rng`)
    /// and B_G into `draw`.
    pub fn draw(&self, samplers: &mut PhiHatSamplers, rng: &mut Rng, draw: &mut PhiHatDraw) {
        draw.full = false;
        draw.terms = match self.neumann {
            NeumannEstimator::Shia(p) => p.terms,
            NeumannEstimator::Hia(p) => p.draw_truncation(rng),
        };
        samplers.outer.draw_into(&mut draw.outer);
        samplers.cross.draw_into(&mut draw.cross);
        draw.hessian.clear();
        draw.batch_size = samplers.hessian.batch_size();
        for _ in 0..draw.terms {
            let batch = samplers.hessian.draw();
            draw.hessian.extend_from_slice(batch);
        }
    }

    /// Φ̂(x, y) with the batches of `draw`, into `out` (length dim x). The estimate v it used
    /// stays readable through [`PhiHatWork::adjoint`] until the next evaluation.
    pub fn evaluate(
        &self,
        problem: &Problem,
        x: &Vector,
        y: &Vector,
        draw: &PhiHatDraw,
        out: &mut Vector,
        work: &mut PhiHatWork,
    ) {
        let (f, g) = (problem.f(), problem.g());
        let (dx, dy) = problem.dims();
        let [b, w, aw, cross] = work.vectors.vectors([dy, dy, dy, dx]);
        // B_F: ∇ₓf into out, b = ∇ᵧf.
        f.grad_xy(x, y, draw.outer(), out, b);
        // v ≈ A⁻¹ b, accumulated in `b`'s companion buffers: w runs the products, b the sum.
        match self.neumann {
            NeumannEstimator::Shia(p) => {
                // s ← b; w ← b; repeat Q: w ← w − η A_j w; s ← s + w; v = η s   (§1.5.1)
                w.assign(b);
                for j in 0..draw.terms {
                    g.hvp_yy(x, y, w, draw.hessian(j), aw);
                    w.axpy(-p.step, aw);
                    b.axpy(1.0, w);
                }
                b.scale(p.step);
            }
            NeumannEstimator::Hia(p) => {
                // w ← b; repeat P: w ← w − η A_j w; v = N η w   (§1.5.2)
                for j in 0..draw.terms {
                    g.hvp_yy(x, y, b, draw.hessian(j), aw);
                    b.axpy(-p.step, aw);
                }
                b.scale(p.max_terms as f64 * p.step);
            }
        }
        // Φ̂ = ∇ₓf − ∇²ₓᵧg v on B_G.
        g.cross_xy(x, y, b, draw.cross(), cross);
        out.axpy(-1.0, cross);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::linalg::rng_from_seed;
    use crate::problems::quadratic::{QuadraticConfig, random_point};

    fn problem() -> Problem {
        QuadraticConfig {
            dim_x: 3,
            dim_y: 5,
            n_inner: 40,
            n_outer: 40,
            ..Default::default()
        }
        .build()
        .unwrap()
    }

    #[test]
    fn full_batch_shia_converges_to_the_hypergradient_at_y_star() {
        let pb = problem();
        let (x, _) = random_point(&pb, 1);
        let truth = pb.reference().unwrap().evaluate(&x).unwrap();
        let y_star = truth.y_star.unwrap();
        let est = PhiHat {
            neumann: NeumannEstimator::Shia(NeumannParams {
                terms: 3000,
                step: 1.0,
            }),
            batch_size: 8,
            sampling: SamplingMode::Shuffled,
        };
        let mut out = Vector::zeros(3);
        est.evaluate(
            &pb,
            &x,
            &y_star,
            &PhiHatDraw::full(3000),
            &mut out,
            &mut PhiHatWork::default(),
        );
        let err = (&out - &truth.hypergradient).norm() / truth.hypergradient.norm();
        assert!(err < 1e-8, "relative error {err:e}");
    }

    #[test]
    fn a_draw_replays_identically_and_counts_match() {
        let pb = problem();
        let (x, y) = random_point(&pb, 2);
        for neumann in [
            NeumannEstimator::Shia(NeumannParams {
                terms: 4,
                step: 0.5,
            }),
            NeumannEstimator::Hia(HiaParams {
                max_terms: 6,
                step: 0.5,
            }),
        ] {
            let est = PhiHat {
                neumann,
                batch_size: 4,
                sampling: SamplingMode::Shuffled,
            };
            let mut rng = rng_from_seed(3, 0);
            let mut samplers = est.samplers(&pb, &mut rng).unwrap();
            let mut draw = PhiHatDraw::default();
            est.draw(&mut samplers, &mut rng, &mut draw);
            let mut work = PhiHatWork::default();
            let (mut a, mut b) = (Vector::zeros(3), Vector::zeros(3));
            let before = pb.counts();
            est.evaluate(&pb, &x, &y, &draw, &mut a, &mut work);
            let c = pb.counts().since(&before);
            assert_eq!(c.g.hvp_yy, draw.terms() as u64);
            assert_eq!((c.f.grad_x, c.f.grad_y, c.g.cross_xy), (1, 1, 1));
            est.evaluate(&pb, &x, &y, &draw, &mut b, &mut work);
            assert_eq!(
                a.as_slice(),
                b.as_slice(),
                "same draw, same point, same value"
            );
        }
    }
}
