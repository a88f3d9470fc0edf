//! Implicit differentiation (AID): inner descent, then a linear solve for v ≈ [∇²ᵧᵧg]⁻¹∇ᵧf,
//! then ĥ = ∇ₓf − ∇²ₓᵧg v. The building block of AID-CG, AID-Neumann, stocBiO, AmIGO, BSA and
//! HOAG.
//!
//! [`Hypergradient::estimate`] runs the two phases in order; algorithms that interleave them
//! differently (BSA steps x between the hypergradient and the inner loop) or change their
//! parameters from one outer iteration to the next (HOAG's decreasing tolerances) call the
//! phases themselves: [`Implicit::inner_phase`], [`Implicit::inner_phase_to_tolerance`] and
//! [`Implicit::hypergradient_phase`].

use serde::{Deserialize, Serialize};

use super::Hypergradient;
use crate::core::OracleSamplers;
use crate::core::linalg::{Scratch, serde_vector};
use crate::core::{Batch, Diagnostics, Problem, Result, Rng, SamplingMode, Vector, VectorExt};
use crate::inner::descend;
use crate::linsolve::{
    CgParams, CgWorkspace, GdParams, GdWorkspace, HiaParams, NeumannParams, NeumannWorkspace,
    cg_in_place, fixed_point_in_place, gd_in_place, neumann_in_place, neumann_random_in_place,
};

/// How the linear system ∇²ᵧᵧg v = ∇ᵧf is solved.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LinearSystem {
    /// Conjugate gradient (one minibatch for the whole solve in stochastic mode: CG needs a fixed
    /// operator).
    Cg(CgParams),
    /// The summed Neumann series (SHIA), a fresh minibatch per term in stochastic mode.
    Neumann(NeumannParams),
    /// Gradient descent on ½ vᵀAv − bᵀv from the current v (zero without a warm start): AmIGO-GD
    /// (warm), AID-FP (from zero). A fresh minibatch per step in stochastic mode; b is fixed
    /// for the whole solve (one outer batch per estimate).
    Gd(GdParams),
    /// The randomly truncated Neumann series (HIA, algorithms.md §1.5.2) of BSA: P uniform in
    /// {0, …, N − 1} drawn from the estimator's RNG, a fresh minibatch per product. Ignores
    /// the warm start.
    Hia(HiaParams),
}

impl LinearSystem {
    /// Checks the parameters, naming fields under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        match self {
            LinearSystem::Cg(p) => p.validate(prefix),
            LinearSystem::Neumann(p) => p.validate(prefix),
            LinearSystem::Gd(p) => p.validate(prefix),
            LinearSystem::Hia(p) => p.validate(prefix),
        }
    }
    /// The name of its config table (`cg`, `neumann`, `gd`, `hia`).
    pub fn table(&self) -> &'static str {
        match self {
            LinearSystem::Cg(_) => "cg",
            LinearSystem::Neumann(_) => "neumann",
            LinearSystem::Gd(_) => "gd",
            LinearSystem::Hia(_) => "hia",
        }
    }
}

/// The implicit-differentiation estimator.
#[derive(Clone, Debug, PartialEq)]
pub struct Implicit {
    /// Inner (S)GD steps per estimate, warm-started from the previous y.
    pub inner_steps: usize,
    /// Inner step size.
    pub inner_lr: f64,
    /// The linear solver.
    pub linear: LinearSystem,
    /// Start the solve from the previous v (AmIGO, AID-CG warm start) instead of 0.
    pub warm_start_v: bool,
    /// Minibatch size, or `None` for full-batch (deterministic) oracles.
    pub batch_size: Option<usize>,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Implicit {
    /// Checks the parameters (field names as in the algorithm configs).
    pub fn validate(&self) -> Result<()> {
        crate::core::error::check_positive("inner_lr", self.inner_lr)?;
        self.linear.validate(self.linear.table())?;
        if self.batch_size == Some(0) {
            return Err(crate::core::Error::config("batch_size", "must be >= 1"));
        }
        Ok(())
    }
}

impl Implicit {
    /// Inner phase: `steps` (S)GD steps y ← y − lr ∇ᵧg(x, y; B) from the current y (a fresh
    /// minibatch per step in stochastic mode). Oracle calls: `steps` × grad_y on g.
    pub fn inner_phase(
        &self,
        problem: &Problem,
        x: &Vector,
        st: &mut ImplicitState,
        steps: usize,
        lr: f64,
    ) {
        let dy = st.y.nrows();
        let [grad_y] = st.work.inner.vectors([dy]);
        descend(
            problem.g(),
            x,
            &mut st.y,
            steps,
            lr,
            st.samplers.as_mut().map(|s| &mut s.inner),
            grad_y,
        );
    }

    /// Inner phase to a tolerance (HOAG): GD steps until ‖∇ᵧg(x, y; B)‖ ≤ `tol` or `max_steps`
    /// steps. Returns (steps made, the last gradient norm). Oracle calls: steps + 1 × grad_y (the
    /// last gradient is the stopping test). In stochastic mode the test uses the minibatch
    /// gradient.
    pub fn inner_phase_to_tolerance(
        &self,
        problem: &Problem,
        x: &Vector,
        st: &mut ImplicitState,
        max_steps: usize,
        lr: f64,
        tol: f64,
    ) -> (usize, f64) {
        let g = problem.g();
        let dy = st.y.nrows();
        let [grad_y] = st.work.inner.vectors([dy]);
        let mut steps = 0;
        loop {
            match st.samplers.as_mut() {
                Some(s) => g.grad_y(x, &st.y, Batch::Indices(s.inner.draw()), grad_y),
                None => g.grad_y(x, &st.y, Batch::Full, grad_y),
            }
            let norm = grad_y.norm();
            if norm <= tol || steps == max_steps {
                return (steps, norm);
            }
            st.y.axpy(-lr, grad_y);
            steps += 1;
        }
    }

    /// Hypergradient phase at the current y: b = ∇ᵧf and ∇ₓf on one outer batch, v from
    /// `linear` (warm-started from the previous v when `warm_start_v`), then
    /// ĥ = ∇ₓf − ∇²ₓᵧg v into `out`. `rng` draws HIA's truncation.
    pub fn hypergradient_phase(
        &self,
        problem: &Problem,
        x: &Vector,
        st: &mut ImplicitState,
        linear: &LinearSystem,
        rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics> {
        let (f, g) = (problem.f(), problem.g());
        let (dx, dy) = problem.dims();
        let w = &mut st.work;
        let [b, grad_x, cross] = w.vectors.vectors([dy, dx, dx]);
        let mut diagnostics = Diagnostics::new();

        // 2. Outer gradients on one batch: b = ∇ᵧf, and ∇ₓf.
        match st.samplers.as_mut() {
            Some(s) => {
                s.outer.draw_into(&mut w.batch);
                f.grad_xy(x, &st.y, Batch::Indices(&w.batch), grad_x, b);
            }
            None => f.grad_xy(x, &st.y, Batch::Full, grad_x, b),
        }

        // 3. Linear system ∇²ᵧᵧg v = b.
        if !self.warm_start_v {
            st.v.set_zero();
        }
        let y = &st.y;
        match *linear {
            LinearSystem::Cg(params) => {
                let ws = w.cg.get_or_insert_with(|| CgWorkspace::new(dy));
                let info = match st.samplers.as_mut() {
                    Some(s) => {
                        s.hessian.draw_into(&mut w.batch);
                        let batch = Batch::Indices(&w.batch);
                        cg_in_place(
                            |p, o| g.hvp_yy(x, y, p, batch, o),
                            b,
                            &mut st.v,
                            &params,
                            ws,
                        )
                    }
                    None => cg_in_place(
                        |p, o| g.hvp_yy(x, y, p, Batch::Full, o),
                        b,
                        &mut st.v,
                        &params,
                        ws,
                    ),
                };
                diagnostics.set("linsolve_matvecs", info.matvecs as f64);
                diagnostics.set("cg_rel_residual", info.rel_residual);
            }
            LinearSystem::Neumann(params) => {
                // Without a warm start: the summed series (SHIA, §1.5.1). With one: the same
                // number of fixed-point steps v ← v − η(Av − b) from the previous v.
                let ws = w.neumann.get_or_insert_with(|| NeumannWorkspace::new(dy));
                let warm = self.warm_start_v;
                let info = match st.samplers.as_mut() {
                    Some(s) => {
                        let hessian = &mut s.hessian;
                        neumann_solve(
                            warm,
                            |p, o| g.hvp_yy(x, y, p, Batch::Indices(hessian.draw()), o),
                            b,
                            &mut st.v,
                            &params,
                            ws,
                        )
                    }
                    None => neumann_solve(
                        warm,
                        |p, o| g.hvp_yy(x, y, p, Batch::Full, o),
                        b,
                        &mut st.v,
                        &params,
                        ws,
                    ),
                };
                diagnostics.set("linsolve_matvecs", info.matvecs as f64);
            }
            LinearSystem::Gd(params) => {
                // §1.5.4, K times: v ← v − η (∇²ᵧᵧg v − b), from the previous v (or 0).
                let ws = w.gd.get_or_insert_with(|| GdWorkspace::new(dy));
                let info = match st.samplers.as_mut() {
                    Some(s) => {
                        let hessian = &mut s.hessian;
                        gd_in_place(
                            |p, o| g.hvp_yy(x, y, p, Batch::Indices(hessian.draw()), o),
                            b,
                            &mut st.v,
                            &params,
                            ws,
                        )
                    }
                    None => gd_in_place(
                        |p, o| g.hvp_yy(x, y, p, Batch::Full, o),
                        b,
                        &mut st.v,
                        &params,
                        ws,
                    ),
                };
                diagnostics.set("linsolve_matvecs", info.matvecs as f64);
                diagnostics.set("gd_rel_residual", info.rel_residual);
            }
            LinearSystem::Hia(params) => {
                // §1.5.2: P ~ U{0..N−1}; w ← b; P times w ← w − η A_j w; v = N η w.
                let ws = w.neumann.get_or_insert_with(|| NeumannWorkspace::new(dy));
                let truncation = params.draw_truncation(rng);
                let info = match st.samplers.as_mut() {
                    Some(s) => {
                        let hessian = &mut s.hessian;
                        neumann_random_in_place(
                            |p, o| g.hvp_yy(x, y, p, Batch::Indices(hessian.draw()), o),
                            b,
                            &mut st.v,
                            &params,
                            truncation,
                            ws,
                        )
                    }
                    None => neumann_random_in_place(
                        |p, o| g.hvp_yy(x, y, p, Batch::Full, o),
                        b,
                        &mut st.v,
                        &params,
                        truncation,
                        ws,
                    ),
                };
                diagnostics.set("linsolve_matvecs", info.matvecs as f64);
            }
        }

        // 4. ĥ = ∇ₓf − ∇²ₓᵧg v.
        match st.samplers.as_mut() {
            Some(s) => g.cross_xy(x, &st.y, &st.v, Batch::Indices(s.cross.draw()), cross),
            None => g.cross_xy(x, &st.y, &st.v, Batch::Full, cross),
        }
        out.assign(grad_x);
        out.axpy(-1.0, cross);
        Ok(diagnostics)
    }
}

/// Scratch buffers (not serialized; rebuilt on first use).
#[derive(Clone, Debug, Default)]
struct Work {
    vectors: Scratch,
    inner: Scratch,
    batch: Vec<usize>,
    cg: Option<CgWorkspace>,
    neumann: Option<NeumannWorkspace>,
    gd: Option<GdWorkspace>,
}

/// State of [`Implicit`]: the warm starts y and v, and the samplers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImplicitState {
    /// Inner iterate (warm start).
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// Linear-system iterate (warm start when `warm_start_v`).
    #[serde(with = "serde_vector")]
    pub v: Vector,
    samplers: Option<OracleSamplers>,
    #[serde(skip)]
    work: Work,
}

impl Hypergradient for Implicit {
    type State = ImplicitState;

    fn init(&self, problem: &Problem, y0: Vector, rng: &mut Rng) -> Result<ImplicitState> {
        let dy = y0.nrows();
        let samplers = OracleSamplers::for_problem(problem, self.batch_size, self.sampling, rng)?;
        Ok(ImplicitState {
            y: y0,
            v: Vector::zeros(dy),
            samplers,
            work: Work::default(),
        })
    }

    fn estimate(
        &self,
        problem: &Problem,
        x: &Vector,
        st: &mut ImplicitState,
        rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics> {
        // 1. Inner descent, warm-started from the previous y.
        self.inner_phase(problem, x, st, self.inner_steps, self.inner_lr);
        // 2.–4. Linear system and ĥ at the new y.
        self.hypergradient_phase(problem, x, st, &self.linear, rng, out)
    }

    fn inner_iterate<'s>(&self, st: &'s ImplicitState) -> &'s Vector {
        &st.y
    }

    fn adjoint<'s>(&self, st: &'s ImplicitState) -> Option<&'s Vector> {
        Some(&st.v)
    }
}

/// The summed series from 0 (no warm start) or fixed-point steps from the current v.
fn neumann_solve(
    warm_start: bool,
    matvec: impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    v: &mut Vector,
    params: &NeumannParams,
    ws: &mut NeumannWorkspace,
) -> crate::linsolve::SolveInfo {
    if warm_start {
        fixed_point_in_place(matvec, b, v, params, ws)
    } else {
        neumann_in_place(matvec, b, v, params, ws)
    }
}
