//! The fast exact-evaluation path (dense Newton with Cholesky steps and a direct adjoint solve,
//! warm-started from the previous point) against the slow path (Newton-CG with Hessian-vector
//! products, then CG on ∇²ᵧᵧg v = ∇ᵧf) run at tight tolerances, on the real ijcnn1
//! hyperparameter problem (dim x = dim y = 22).
//!
//! Tolerance: both paths solve to ‖∇ᵧg‖ ≤ 1e-12 / 1e-13 and the adjoint to relative residual
//! 1e-13; the Hessian's condition number here is below 1e4, so each ∇F is accurate to about
//! 1e-9 relative and the two must agree to the required 1e-8.

use std::sync::Arc;

use bilevel::core::{
    Batch, Fused, HessianOperator, Objective, Problem, Reference, Vector, VectorExt,
};
use bilevel::problems::ProblemConfig;
use bilevel::problems::common::NewtonReference;
use bilevel::problems::common::{ADJOINT_PCG_MAX_PRODUCTS, ReferenceConfig};
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

/// The inner (`.1`) or outer objective of a problem, shared (the problem's oracles, forwarded;
/// `hessian_yy_at` only when `.2`).
struct Side(Arc<Problem>, bool, bool);

impl Side {
    fn h(&self) -> &dyn Objective {
        if self.1 { self.0.g() } else { self.0.f() }
    }
}

impl Objective for Side {
    fn dims(&self) -> (usize, usize) {
        self.h().dims()
    }
    fn n_samples(&self) -> usize {
        self.h().n_samples()
    }
    fn value(&self, x: &Vector, y: &Vector, b: Batch<'_>) -> f64 {
        self.h().value(x, y, b)
    }
    fn grad_x(&self, x: &Vector, y: &Vector, b: Batch<'_>, out: &mut Vector) {
        self.h().grad_x(x, y, b, out)
    }
    fn grad_y(&self, x: &Vector, y: &Vector, b: Batch<'_>, out: &mut Vector) {
        self.h().grad_y(x, y, b, out)
    }
    fn grad_xy(&self, x: &Vector, y: &Vector, b: Batch<'_>, ox: &mut Vector, oy: &mut Vector) {
        self.h().grad_xy(x, y, b, ox, oy)
    }
    fn fused(&self, x: &Vector, y: &Vector, v: Option<&Vector>, b: Batch<'_>, out: Fused<'_>) {
        self.h().fused(x, y, v, b, out)
    }
    fn value_grad_hess_yy(
        &self,
        x: &Vector,
        y: &Vector,
        b: Batch<'_>,
        grad: &mut Vector,
        hess: &mut [f64],
    ) -> Option<f64> {
        self.h().value_grad_hess_yy(x, y, b, grad, hess)
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, b: Batch<'_>, out: &mut Vector) {
        self.h().hvp_yy(x, y, v, b, out)
    }
    fn hessian_yy_at<'a>(&'a self, x: &'a Vector, y: &'a Vector) -> Option<HessianOperator<'a>> {
        if self.2 {
            self.h().hessian_yy_at(x, y)
        } else {
            None
        }
    }
    fn hess_yy_diag(&self, x: &Vector, y: &Vector, b: Batch<'_>, out: &mut Vector) -> bool {
        self.h().hess_yy_diag(x, y, b, out)
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, b: Batch<'_>, out: &mut Vector) {
        self.h().cross_xy(x, y, v, b, out)
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, b: Batch<'_>, out: &mut Vector) {
        self.h().cross_yx(x, y, u, b, out)
    }
}

/// The ijcnn1 problem (no reference of its own) and a `NewtonReference` with `config` over its
/// counted objectives: the problem's counts show what each evaluation used.
fn counted_reference(config: ReferenceConfig) -> (Arc<Problem>, NewtonReference) {
    counted_reference_on(
        ijcnn1(ReferenceConfig {
            enabled: false,
            ..Default::default()
        }),
        config,
    )
}

/// A `NewtonReference` with `config` over the counted objectives of `problem`, starting at y = 0.
fn counted_reference_on(
    problem: Problem,
    config: ReferenceConfig,
) -> (Arc<Problem>, NewtonReference) {
    counted_reference_holding(problem, config, true)
}

/// [`counted_reference_on`], with the held Hessian of `Objective::hessian_yy_at` or without.
fn counted_reference_holding(
    problem: Problem,
    config: ReferenceConfig,
    hold: bool,
) -> (Arc<Problem>, NewtonReference) {
    let problem = Arc::new(problem);
    let dim_y = problem.dims().1;
    let reference = NewtonReference::new(
        Arc::new(Side(problem.clone(), false, hold)),
        Arc::new(Side(problem.clone(), true, hold)),
        Vector::zeros(dim_y),
        config,
    );
    (problem, reference)
}

/// The cold evaluation computes two dense Hessians (at the start and at y*); consecutive nearby
/// points take the warm quasi-Newton path from the previous Hessian and compute one (at y*,
/// for the adjoint); all agree with the tight Newton-CG path to 1e-8. A far jump makes the
/// quasi-Newton steps fail and falls back to dense Newton, still exact.
#[test]
fn warm_chord_path_is_taken_near_the_last_point_and_stays_exact() {
    let (problem, reference) = counted_reference(ReferenceConfig::default());
    let (x0, _) = problem.start();
    let slow = ijcnn1(ReferenceConfig {
        dense_max: 0,
        tol: 1e-13,
        ..Default::default()
    });
    let shifted = |step: f64| {
        let mut x = x0.clone();
        for (j, v) in x.as_mut_slice().iter_mut().enumerate() {
            *v += if j % 2 == 0 { step } else { -step };
        }
        x
    };
    for (i, x) in [shifted(0.0), shifted(0.01), shifted(0.02), shifted(3.0)]
        .iter()
        .enumerate()
    {
        let before = problem.counts();
        let fast = reference.evaluate(x).unwrap();
        let used = problem.counts().since(&before).g;
        let tight = slow.reference().unwrap().evaluate(x).unwrap();
        let err = relative(&fast.hypergradient, &tight.hypergradient);
        assert!(err <= 1e-8, "point {i}: ∇F relative error {err:e}");
        let paths = reference.paths();
        match i {
            0 => {
                // Cold: one dense Hessian at the start seeds the quasi-Newton steps, one at y*
                // gives the adjoint (a Hessian is counted as a value, a gradient and 22
                // products); no other products.
                assert_eq!((paths.dense_newton, paths.chord), (0, 1), "{paths:?}");
                assert_eq!(used.value, 2, "{used:?}");
                assert_eq!(used.hvp_yy, 2 * 22, "{used:?}");
            }
            1 | 2 => {
                assert_eq!(paths.chord, i + 1, "nearby: chord steps, {paths:?}");
                // The previous Hessian serves the steps: exactly one new dense Hessian (at y*,
                // for the adjoint), no line search, no other products, a few gradient passes.
                assert_eq!(used.value, 1, "{used:?}");
                assert_eq!(used.hvp_yy, 22, "{used:?}");
                assert!(used.grad_y <= 8, "{used:?}");
            }
            _ => assert_eq!(paths.dense_newton, 1, "far jump falls back, {paths:?}"),
        }
    }
}

/// From `adjoint_pcg_min` up (forced here at dim y = 22; the default, 128, is where a dense
/// Hessian pass starts to cost more than the products), warm evaluations solve the adjoint by CG
/// preconditioned with the kept Hessian: no new dense Hessian (a dense Hessian is counted as a
/// value on g; warm evaluations have none), at most `ADJOINT_PCG_MAX_PRODUCTS` Hessian-vector
/// products, and the same ∇F as the tight Newton-CG solve to 1e-8 (the tolerance argument of
/// the file header: the adjoint is solved to relative residual 1e-12).
#[test]
fn preconditioned_adjoint_skips_the_dense_hessian_and_stays_exact() {
    let (problem, reference) = counted_reference(ReferenceConfig {
        adjoint_pcg_min: 1,
        ..Default::default()
    });
    let (x0, _) = problem.start();
    let slow = ijcnn1(ReferenceConfig {
        dense_max: 0,
        tol: 1e-13,
        ..Default::default()
    });
    for (i, step) in [0.0, 0.01, 0.02, 0.03].into_iter().enumerate() {
        let mut x = x0.clone();
        for (j, v) in x.as_mut_slice().iter_mut().enumerate() {
            *v += if j % 2 == 0 { step } else { -step };
        }
        let before = problem.counts();
        let fast = reference.evaluate(&x).unwrap();
        let used = problem.counts().since(&before).g;
        let tight = slow.reference().unwrap().evaluate(&x).unwrap();
        let err = relative(&fast.hypergradient, &tight.hypergradient);
        assert!(err <= 1e-8, "point {i}: ∇F relative error {err:e}");
        if i > 0 {
            assert_eq!(
                used.value, 0,
                "point {i}: a dense Hessian was formed, {used:?}"
            );
            assert!(
                used.hvp_yy as usize <= ADJOINT_PCG_MAX_PRODUCTS,
                "point {i}: {used:?}"
            );
        }
    }
    let paths = reference.paths();
    assert!(paths.chord_pcg >= 3, "{paths:?}");
}

/// When dense Newton stalls (here: cut off after one step), the evaluation starts again from the
/// cold start with damped Newton (at least 100 steps) rather than fail, and lands on the same
/// point as the tight Newton-CG solve.
#[test]
fn a_stalled_dense_newton_falls_back_instead_of_failing() {
    let config = ReferenceConfig {
        max_newton: 1,
        ..Default::default()
    };
    let problem = ijcnn1(config);
    let slow = ijcnn1(ReferenceConfig {
        dense_max: 0,
        tol: 1e-13,
        ..Default::default()
    });
    let (x0, _) = problem.start();
    let mut far = x0.clone();
    for v in far.as_mut_slice() {
        *v += 4.0;
    }
    let (f, g) = problem.uncounted_objectives();
    let newton = NewtonReference::new(f, g, Vector::zeros(problem.dims().1), config);
    for x in [&x0, &far] {
        let a = newton
            .evaluate(x)
            .expect("the fallback rescues the evaluation");
        let b = slow.reference().unwrap().evaluate(x).unwrap();
        assert!(relative(&a.hypergradient, &b.hypergradient) <= 1e-8);
    }
    let paths = newton.paths();
    eprintln!("{paths:?}");
    assert_eq!(
        paths.fallback, 2,
        "the fallback ran at both points: {paths:?}"
    );
}

/// `precision = "f32"` on real ijcnn1: the design is rounded to f32 (ijcnn1's six-decimal
/// values are not f32 numbers: relative change ≤ u = 2⁻²⁴ ≈ 6e-8 per value), the arithmetic
/// stays f64. F and ∇F at the start move, but only as a smooth function of a data change of
/// that size. Bounds: F by at most 1e-7 relative (about u: the worst case, every value moved
/// by u in the same direction), ∇F by at most 1e-5 (u times an allowance of 100 for the adjoint
/// solve, whose Hessian's condition number is below 1e4 here). Measured: 7.3e-12 and 1.2e-10
/// (the rounding errors of 50,000 rows mostly cancel).
#[test]
fn f32_storage_moves_the_exact_hypergradient_only_by_the_rounding_of_the_data() {
    use bilevel::problems::logistic::Precision;
    let build = |precision: Precision| {
        ProblemConfig::LogregHpo(LogregHpoConfig {
            precision,
            ..Default::default()
        })
        .build()
        .expect("the shipped ijcnn1 loads")
    };
    let (p64, p32) = (build(Precision::F64), build(Precision::F32));
    let (x0, _) = p64.start();
    assert_eq!(
        x0,
        p32.start().0,
        "the start does not depend on the storage"
    );
    let a = p64.reference().unwrap().evaluate(&x0).unwrap();
    let b = p32.reference().unwrap().evaluate(&x0).unwrap();
    let value_change = (a.value - b.value).abs() / a.value.abs();
    let grad_change = relative(&b.hypergradient, &a.hypergradient);
    eprintln!(
        "f32 storage: F relative change {value_change:e}, ∇F relative change {grad_change:e}"
    );
    assert!(value_change <= 1e-7, "F changed by {value_change:e}");
    assert!(grad_change <= 1e-5, "∇F changed by {grad_change:e}");
    assert!(
        value_change > 0.0 && grad_change > 0.0,
        "f32 storage gave the f64 results: the data was not rounded"
    );
}

/// A problem's own reference turned off (the tests attach theirs to the counted objectives).
fn without_reference() -> ReferenceConfig {
    ReferenceConfig {
        enabled: false,
        ..Default::default()
    }
}

/// The covtype twin at scale 0.02 (7 classes, one L2 hyperparameter per class, dim y = 378;
/// multiclass problems have no dense Hessian), without a reference of its own.
fn covtype_twin() -> Problem {
    use bilevel::data::{DatasetSpec, synthetic::Twin};
    use bilevel::problems::logreg_hpo::Penalty;
    ProblemConfig::LogregHpo(LogregHpoConfig {
        dataset: DatasetSpec::twin(Twin::Covtype, 0.02),
        validation_fraction: 0.2,
        penalty: Penalty::PerClass,
        reference: without_reference(),
        ..Default::default()
    })
    .build()
    .unwrap()
}

/// ∇F from `reference` at the start x₀ and at x₀ moved by ±0.05 and ±0.1 (signs alternating over
/// the entries): a cold and two warm evaluations.
fn hypergradients_near_start(problem: &Problem, reference: &NewtonReference) -> Vec<Vector> {
    let (x0, _) = problem.start();
    [0.0, 0.05, 0.1]
        .map(|step| {
            let mut x = x0.clone();
            for (j, v) in x.as_mut_slice().iter_mut().enumerate() {
                *v += if j % 2 == 0 { step } else { -step };
            }
            reference.evaluate(&x).unwrap().hypergradient
        })
        .to_vec()
}

/// The Jacobi preconditioner of the Newton-CG path, on `logreg_hpo`: the covtype twin (7
/// classes, one L2 hyperparameter per class, dim y = 378; multiclass problems have no dense
/// Hessian) and ijcnn1 forced onto Newton-CG (`dense_max = 0`; per-feature λ). The cold and
/// two warm evaluations give the same ∇F as the unpreconditioned solves to 1e-8 relative (both
/// solve Newton to ‖∇ᵧg‖ ≤ 1e-12 and the adjoint to relative residual 1e-13), and take fewer
/// Hessian-vector products in all (each diagonal is counted as one product).
#[test]
fn jacobi_preconditioning_keeps_newton_cg_exact_with_fewer_products() {
    let no_reference = ReferenceConfig {
        enabled: false,
        ..Default::default()
    };
    let covtype = covtype_twin;
    let ijcnn1_problem = || ijcnn1(no_reference);
    for (name, build, dense_max) in [
        ("covtype", &covtype as &dyn Fn() -> Problem, 512),
        ("ijcnn1", &ijcnn1_problem, 0),
    ] {
        let run = |jacobi: bool| {
            let (problem, reference) = counted_reference_on(
                build(),
                ReferenceConfig {
                    jacobi,
                    dense_max,
                    ..Default::default()
                },
            );
            let grads = hypergradients_near_start(&problem, &reference);
            (grads, problem.counts().g.hvp_yy)
        };
        let (with, products_with) = run(true);
        let (without, products_without) = run(false);
        for (a, b) in with.iter().zip(&without) {
            let err = relative(a, b);
            assert!(err <= 1e-8, "{name}: ∇F relative difference {err:e}");
            assert!(b.norm() > 1e-8, "{name}: a trivial gradient");
        }
        eprintln!(
            "{name}: Hessian-vector products {products_with} with Jacobi, {products_without} without"
        );
        assert!(
            products_with < products_without,
            "{name}: {products_with} products with Jacobi, {products_without} without"
        );
    }
}

/// `data_cleaning` on digits (10 classes, σ-weighted samples), 400 training rows, without a
/// reference of its own.
fn digits_cleaning() -> Problem {
    use bilevel::data::DatasetSpec;
    use bilevel::problems::data_cleaning::DataCleaningConfig;
    ProblemConfig::DataCleaning(DataCleaningConfig {
        train: DatasetSpec::shared("digits"),
        heldout_from_train: true,
        n_train: 400,
        n_validation: 200,
        n_test: 100,
        reference: without_reference(),
        ..Default::default()
    })
    .build()
    .unwrap()
}

/// A test problem's constructor.
type Builder = fn() -> Problem;

/// The multiclass problems of the Newton-CG tests: `logreg_hpo` on the covtype twin (7
/// classes, per-class penalty, a Jacobi diagonal) and `data_cleaning` on digits.
const MULTICLASS: [(&str, Builder); 2] = [
    ("covtype", covtype_twin),
    ("data_cleaning", digits_cleaning),
];

/// The Newton-CG path with the Hessian held at each point (`Objective::hessian_yy_at`: the
/// multiclass losses keep each sample's class probabilities, and a product skips W x and its
/// softmax) gives the ∇F of the plain Hessian-vector products to 1e-8, over a cold and two warm
/// evaluations: on `logreg_hpo` (covtype twin, 7 classes, per-class penalty) and on
/// `data_cleaning` (digits, 10 classes, σ-weighted samples). Binary targets hold nothing.
#[test]
fn a_held_hessian_keeps_newton_cg_exact() {
    let no_reference = ReferenceConfig {
        enabled: false,
        ..Default::default()
    };
    for (name, build) in MULTICLASS {
        let run = |hold: bool| {
            let (problem, reference) =
                counted_reference_holding(build(), ReferenceConfig::default(), hold);
            let (x0, y0) = problem.start();
            assert!(
                problem.g().hessian_yy_at(&x0, &y0).is_some(),
                "{name}: no held Hessian"
            );
            hypergradients_near_start(&problem, &reference)
        };
        let (held, plain) = (run(true), run(false));
        for (a, b) in held.iter().zip(&plain) {
            let err = relative(a, b);
            assert!(err <= 1e-8, "{name}: ∇F relative difference {err:e}");
            assert!(b.norm() > 1e-8, "{name}: a trivial gradient");
        }
    }
    let binary = ijcnn1(no_reference);
    let (x0, y0) = binary.start();
    assert!(binary.g().hessian_yy_at(&x0, &y0).is_none());
}

/// The curvature pairs recycled from solve to solve (`ReferenceConfig::recycled_pairs`) give
/// the ∇F of solves without them to 1e-8 relative, over a cold and two warm evaluations and a
/// far jump (x₀ + 1.5 in every entry) after them (both
/// solve Newton to ‖∇ᵧg‖ ≤ 1e-12 and the adjoint to relative residual 1e-13), and take fewer
/// Hessian-vector products in all: on `logreg_hpo` (covtype twin, Jacobi diagonal below the
/// pairs) and `data_cleaning` (digits, no diagonal).
#[test]
fn recycled_curvature_pairs_keep_newton_cg_exact_with_fewer_products() {
    for (name, build) in MULTICLASS {
        let run = |recycled_pairs: usize| {
            let (problem, reference) = counted_reference_on(
                build(),
                ReferenceConfig {
                    recycled_pairs,
                    ..Default::default()
                },
            );
            let mut grads = hypergradients_near_start(&problem, &reference);
            // Then a far jump: the kept pairs come from another region.
            let (x0, _) = problem.start();
            let far = Vector::from_fn(x0.nrows(), |j| x0[j] + 1.5);
            grads.push(reference.evaluate(&far).unwrap().hypergradient);
            (grads, problem.counts().g.hvp_yy)
        };
        let (with, products_with) = run(ReferenceConfig::default().recycled_pairs);
        let (without, products_without) = run(0);
        for (a, b) in with.iter().zip(&without) {
            let err = relative(a, b);
            assert!(err <= 1e-8, "{name}: ∇F relative difference {err:e}");
            assert!(b.norm() > 1e-8, "{name}: a trivial gradient");
        }
        eprintln!(
            "{name}: Hessian-vector products {products_with} with recycled pairs, \
             {products_without} without"
        );
        assert!(
            products_with < products_without,
            "{name}: {products_with} products with recycled pairs, {products_without} without"
        );
    }
}
