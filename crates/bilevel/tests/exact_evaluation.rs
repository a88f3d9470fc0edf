//! The fast exact-evaluation path (dense Newton with Cholesky steps and a direct adjoint solve,
//! warm-started from the previous point) against the slow path (Newton-CG with Hessian-vector
//! products, then CG on ∇²ᵧᵧg v = ∇ᵧf) run at tight tolerances, on the real ijcnn1
//! hyperparameter problem (dim x = dim y = 22).
//!
//! Tolerance: both paths solve to ‖∇ᵧg‖ ≤ 1e-12 / 1e-13 and the adjoint to relative residual
//! 1e-13; the Hessian's condition number here is below 1e4, so each ∇F is accurate to about
//! 1e-9 relative and the two must agree to the required 1e-8.

use bilevel::core::{Problem, Vector, VectorExt};
use bilevel::problems::ProblemConfig;
use bilevel::problems::common::ReferenceConfig;
use bilevel::problems::logreg_hpo::LogregHpoConfig;

fn ijcnn1(reference: ReferenceConfig) -> Problem {
    ProblemConfig::LogregHpo(LogregHpoConfig {
        reference,
        ..Default::default()
    })
    .build()
    .expect("the shipped ijcnn1 loads")
}

fn relative(a: &Vector, b: &Vector) -> f64 {
    let mut d = a.clone();
    for (di, bi) in d.as_mut_slice().iter_mut().zip(b.as_slice()) {
        *di -= bi;
    }
    d.norm() / b.norm()
}

#[test]
fn fast_exact_evaluation_matches_a_tight_newton_cg_solve() {
    let fast = ijcnn1(ReferenceConfig::default());
    let slow = ijcnn1(ReferenceConfig {
        dense_max: 0, // Newton-CG and CG only
        tol: 1e-13,
        ..Default::default()
    });
    let (x0, _) = fast.start();
    let mut x1 = x0.clone();
    for (j, v) in x1.as_mut_slice().iter_mut().enumerate() {
        *v += if j % 2 == 0 { 0.3 } else { -0.2 };
    }
    let fast_ref = fast.reference().unwrap();
    let slow_ref = slow.reference().unwrap();
    // x0 cold, then x1 warm-started from x0 on the fast path.
    for x in [&x0, &x1] {
        let a = fast_ref.evaluate(x).unwrap();
        let b = slow_ref.evaluate(x).unwrap();
        let err = relative(&a.hypergradient, &b.hypergradient);
        eprintln!("relative error of ∇F: {err:e}");
        assert!(err <= 1e-8, "∇F relative error {err:e}");
        assert!((a.value - b.value).abs() <= 1e-12 * b.value.abs().max(1.0));
        let ya = a.y_star.unwrap();
        let yb = b.y_star.unwrap();
        assert!(relative(&ya, &yb) <= 1e-8);
    }
    // The warm-started fast evaluation at x1 equals a cold fast evaluation at x1.
    let cold = ijcnn1(ReferenceConfig::default());
    let c = cold.reference().unwrap().evaluate(&x1).unwrap();
    let w = fast_ref.evaluate(&x1).unwrap();
    assert!(relative(&w.hypergradient, &c.hypergradient) <= 1e-8);
    // And the gradient is not trivially small: the comparison has something to compare.
    assert!(c.hypergradient.norm() > 1e-6);
}
