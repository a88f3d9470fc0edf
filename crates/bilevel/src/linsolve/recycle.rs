//! A limited-memory preconditioner recycled from earlier solves (Morales and Nocedal, "Automatic
//! preconditioning by limited memory quasi-Newton updating", SIAM J. Optim. 10(4), 2000).
//!
//! Every Hessian-vector product of a conjugate-gradient solve is a curvature pair (s, A s). A
//! sequence of nearby systems — the Newton steps of one inner solve, the adjoint after them,
//! the next evaluation at a nearby x — shares most of its spectrum, so the pairs of one solve
//! make an L-BFGS approximation M ≈ A⁻¹ for the next: M agrees with A⁻¹ on the span of the
//! kept pairs (for conjugate pairs of one matrix exactly), which removes those eigen-directions
//! from the next solve's iteration count. M is symmetric positive definite whatever the pairs
//! (pairs without safely positive curvature are skipped), so preconditioned CG stays correct:
//! only the number of products changes.

use crate::core::linalg::{Vector, VectorExt};

/// Up to `capacity` curvature pairs (s, A s), newest last, and their L-BFGS inverse.
pub struct CurvaturePairs {
    /// Pairs kept (the first `count` slots of the ring; the buffers beyond stay allocated).
    count: usize,
    s: Vec<Vector>,
    y: Vec<Vector>,
    /// 1 / sᵀy per pair.
    rho: Vec<f64>,
    /// Index of the oldest pair once the buffer is full (a ring).
    oldest: usize,
    capacity: usize,
    /// α of the two-loop recursion, one per pair (kept to avoid an allocation per use).
    alpha: Vec<f64>,
}

impl CurvaturePairs {
    /// Room for `capacity` pairs of dimension `dim` (allocated as they come).
    pub fn new(capacity: usize) -> Self {
        Self {
            count: 0,
            s: Vec::new(),
            y: Vec::new(),
            rho: Vec::new(),
            oldest: 0,
            capacity,
            alpha: vec![0.0; capacity],
        }
    }

    /// Pairs kept.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no pair is kept.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forgets every pair (the buffers stay allocated).
    pub fn clear(&mut self) {
        self.count = 0;
        self.oldest = 0;
    }

    /// Keeps (s, y = A s), replacing the oldest pair when full. Skipped (returns false) when the
    /// curvature sᵀy is not safely positive: sᵀy ≤ 1e-10 ‖s‖ ‖y‖, or not finite.
    pub fn push(&mut self, s: &Vector, y: &Vector) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let sy = s.dot(y);
        if !(sy.is_finite() && sy > 1e-10 * s.norm() * y.norm()) {
            return false;
        }
        let at = if self.count < self.capacity {
            self.count += 1;
            self.count - 1
        } else {
            let at = self.oldest;
            self.oldest = (at + 1) % self.capacity;
            at
        };
        if at < self.s.len() {
            self.s[at].assign(s);
            self.y[at].assign(y);
            self.rho[at] = 1.0 / sy;
        } else {
            self.s.push(s.clone());
            self.y.push(y.clone());
            self.rho.push(1.0 / sy);
        }
        true
    }

    /// The newest pair (s, A s), if any.
    pub fn newest(&self) -> Option<(&Vector, &Vector)> {
        (self.count > 0).then(|| {
            let i = self.slot(self.count - 1);
            (&self.s[i], &self.y[i])
        })
    }

    /// Moves every pair, oldest first, into `other` (which keeps its newest ones), leaving
    /// this empty; the buffers stay allocated.
    pub fn drain_into(&mut self, other: &mut CurvaturePairs) {
        for k in 0..self.count {
            let i = self.slot(k);
            other.push(&self.s[i], &self.y[i]);
        }
        self.clear();
    }

    /// Slot of the k-th pair from the oldest (k = 0) to the newest.
    fn slot(&self, k: usize) -> usize {
        ring_slot(self.oldest, self.count, k)
    }

    /// z = M r by the two-loop recursion, with initial matrix diag(`diagonal`) when given, else
    /// γ I with γ = sᵀy / yᵀy of the newest pair. With no pair, z = diag · r (or z = r).
    pub fn apply(&mut self, r: &Vector, diagonal: Option<&Vector>, z: &mut Vector) {
        let (n, oldest) = (self.count, self.oldest);
        let Self {
            s, y, rho, alpha, ..
        } = self;
        let slot = |k: usize| ring_slot(oldest, n, k);
        z.assign(r);
        two_loop(
            n,
            |k| (&s[slot(k)], &y[slot(k)], rho[slot(k)]),
            |z| match diagonal {
                Some(d) => {
                    for (zi, &di) in z.as_mut_slice().iter_mut().zip(d.as_slice()) {
                        *zi *= di;
                    }
                }
                None if n > 0 => {
                    let newest = slot(n - 1);
                    z.scale(1.0 / (rho[newest] * y[newest].norm_sq()));
                }
                None => {}
            },
            z,
            alpha,
        );
    }
}

/// Slot of the k-th of `count` pairs from the oldest, in a ring whose oldest is at `oldest`.
fn ring_slot(oldest: usize, count: usize, k: usize) -> usize {
    (oldest + k) % count
}

/// z ← H z for the L-BFGS inverse H of `n` curvature pairs by the two-loop recursion (Nocedal
/// and Wright, *Numerical Optimization*, Algorithm 7.4): `pair(k)` = (sₖ, yₖ, 1 / sₖᵀyₖ) from
/// the oldest (k = 0) to the newest, H⁰ applied in place by `initial`, `alpha` with room for
/// `n` values. Shared by [`CurvaturePairs`] and `exact_lbfgs`.
pub fn two_loop<'a>(
    n: usize,
    pair: impl Fn(usize) -> (&'a Vector, &'a Vector, f64),
    initial: impl FnOnce(&mut Vector),
    z: &mut Vector,
    alpha: &mut [f64],
) {
    for k in (0..n).rev() {
        let (s, y, rho) = pair(k);
        alpha[k] = rho * s.dot(z);
        z.axpy(-alpha[k], y);
    }
    initial(z);
    for k in 0..n {
        let (s, y, rho) = pair(k);
        let beta = rho * y.dot(z);
        z.axpy(alpha[k] - beta, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::linalg::{Matrix, from_slice, rng_from_seed, standard_normal};
    use crate::linsolve::{CgParams, CgWorkspace, cg_in_place, pcg_in_place};

    /// An SPD matrix with eigenvalues spread over [1, 1e4] (a hard CG problem).
    fn ill_conditioned(n: usize, seed: u64) -> Matrix {
        let mut rng = rng_from_seed(seed, 0);
        let q = Matrix::from_fn(n, n, |_, _| standard_normal(&mut rng));
        let q = q.qr().compute_Q();
        let d = Matrix::from_fn(n, n, |i, j| {
            if i == j {
                10f64.powf(4.0 * i as f64 / (n - 1) as f64)
            } else {
                0.0
            }
        });
        &q * &d * q.transpose()
    }

    #[test]
    fn the_pairs_of_one_solve_precondition_the_next_and_leave_its_answer_unchanged() {
        let n = 60;
        let a = ill_conditioned(n, 7);
        let mut rng = rng_from_seed(11, 0);
        let b1 = Vector::from_fn(n, |_| standard_normal(&mut rng));
        let b2 = Vector::from_fn(n, |_| standard_normal(&mut rng));
        let params = CgParams {
            max_iters: 1000,
            rel_tol: 1e-10,
        };
        let mut ws = CgWorkspace::new(n);
        // First solve, recording every product as a pair.
        let mut pairs = CurvaturePairs::new(20);
        let mut v1 = Vector::zeros(n);
        cg_in_place(
            |p, out| {
                out.assign(&(&a * p));
                pairs.push(p, out);
            },
            &b1,
            &mut v1,
            &params,
            &mut ws,
        );
        assert_eq!(pairs.len(), 20);
        // Second system: plain CG against CG preconditioned with the first solve's pairs.
        let mut plain = Vector::zeros(n);
        let plain_info = cg_in_place(
            |p, out| out.assign(&(&a * p)),
            &b2,
            &mut plain,
            &params,
            &mut ws,
        );
        let mut recycled = Vector::zeros(n);
        let info = pcg_in_place(
            |p, out| out.assign(&(&a * p)),
            |r, z| pairs.apply(r, None, z),
            &b2,
            &mut recycled,
            &params,
            &mut ws,
        );
        assert!(plain_info.converged && info.converged);
        // The same solution to the tolerance (cond 1e4 × 1e-10 relative residual).
        let diff = (&plain - &recycled).norm() / plain.norm();
        assert!(diff < 1e-5, "solutions differ by {diff:e}");
        eprintln!(
            "products: {} plain, {} with 20 recycled pairs",
            plain_info.matvecs, info.matvecs
        );
        // The 20 pairs remove about 20 directions' worth of iterations (a third of n = 60).
        assert!(
            info.matvecs + 10 <= plain_info.matvecs,
            "recycled {} products, plain {}",
            info.matvecs,
            plain_info.matvecs
        );
    }

    #[test]
    fn pairs_without_positive_curvature_are_skipped_and_the_ring_keeps_the_newest() {
        let mut pairs = CurvaturePairs::new(2);
        let s = from_slice(&[1.0, 0.0]);
        assert!(
            !pairs.push(&s, &from_slice(&[-1.0, 0.0])),
            "negative curvature"
        );
        assert!(!pairs.push(&s, &from_slice(&[0.0, 1.0])), "zero curvature");
        assert!(!pairs.push(&s, &from_slice(&[f64::NAN, 0.0])), "NaN");
        assert!(pairs.is_empty());
        // A = diag(2, 4): pairs along e1 then e2, then e1 again (replaces the oldest).
        assert!(pairs.push(&from_slice(&[1.0, 0.0]), &from_slice(&[2.0, 0.0])));
        assert!(pairs.push(&from_slice(&[0.0, 1.0]), &from_slice(&[0.0, 4.0])));
        assert!(pairs.push(&from_slice(&[3.0, 0.0]), &from_slice(&[6.0, 0.0])));
        assert_eq!(pairs.len(), 2);
        let (s_new, y_new) = pairs.newest().unwrap();
        assert_eq!(
            (s_new[0], y_new[0]),
            (3.0, 6.0),
            "the newest pair is the last pushed"
        );
        // Pairs along both axes of a diagonal A: M = A⁻¹ exactly.
        let mut z = Vector::zeros(2);
        pairs.apply(&from_slice(&[1.0, 1.0]), None, &mut z);
        assert!(
            (z[0] - 0.5).abs() < 1e-15 && (z[1] - 0.25).abs() < 1e-15,
            "{z:?}"
        );
        // No pair: the initial matrix alone.
        let mut empty = CurvaturePairs::new(3);
        empty.apply(
            &from_slice(&[1.0, 2.0]),
            Some(&from_slice(&[0.5, 0.25])),
            &mut z,
        );
        assert_eq!(z.as_slice(), &[0.5, 0.5]);
        empty.clear();
        assert!(empty.is_empty());
    }
}
