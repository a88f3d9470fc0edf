//! Every oracle of the built-in quadratic matches finite differences, and the finite-difference
//! defaults of the `Objective` trait match the exact products.

use bilevel::core::linalg::{normal_vector, rng_from_seed};
use bilevel::prelude::*;
use bilevel::problems::quadratic::{QuadraticConfig, tiny};
use bilevel::testing::assert_objective_matches_fd;

/// Central differences in f64 reach about 1e-9 relative error on these smooth quadratics (the
/// function values are O(10), the step 1e-5); 1e-6 leaves three orders of margin while still
/// catching any wrong sign, factor or transpose (those give errors of order 1).
const FD_TOL: f64 = 1e-6;

fn small_quadratic() -> Problem {
    QuadraticConfig {
        dim_x: 6,
        dim_y: 9,
        n_inner: 40,
        n_outer: 30,
        seed: 4,
        ..Default::default()
    }
    .build()
    .unwrap()
}

#[test]
fn quadratic_oracles_match_finite_differences() {
    for problem in [small_quadratic(), tiny()] {
        assert_objective_matches_fd(problem.f(), 3, FD_TOL, 1);
        assert_objective_matches_fd(problem.g(), 3, FD_TOL, 2);
    }
}

#[test]
fn large_quadratic_oracles_match_by_directional_derivatives() {
    // dim 100 > 64: the check switches to random directional derivatives.
    let problem = QuadraticConfig {
        n_inner: 200,
        n_outer: 50,
        ..Default::default()
    }
    .build()
    .unwrap();
    assert_objective_matches_fd(problem.g(), 1, FD_TOL, 3);
}

/// An objective that implements only the required methods, so the second-order products come
/// from the trait's finite-difference defaults.
struct GradientsOnly<'a>(&'a dyn Objective);

impl Objective for GradientsOnly<'_> {
    fn dims(&self) -> (usize, usize) {
        self.0.dims()
    }
    fn n_samples(&self) -> usize {
        self.0.n_samples()
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        self.0.value(x, y, batch)
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.0.grad_x(x, y, batch, out)
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.0.grad_y(x, y, batch, out)
    }
}

#[test]
fn finite_difference_defaults_match_exact_products() {
    let problem = small_quadratic();
    let exact = problem.g();
    let fd = GradientsOnly(exact);
    let (dx, dy) = problem.dims();
    let mut rng = rng_from_seed(9, 0);
    let (x, y) = (normal_vector(&mut rng, dx), normal_vector(&mut rng, dy));
    let (v, u) = (normal_vector(&mut rng, dy), normal_vector(&mut rng, dx));
    let batch_indices = [0usize, 3, 7];
    for batch in [Batch::Full, Batch::Indices(&batch_indices)] {
        let (mut a, mut b) = (Vector::zeros(dy), Vector::zeros(dy));
        exact.hvp_yy(&x, &y, &v, batch, &mut a);
        fd.hvp_yy(&x, &y, &v, batch, &mut b);
        assert!((&a - &b).norm() <= FD_TOL * a.norm(), "hvp_yy");
        let (mut a, mut b) = (Vector::zeros(dx), Vector::zeros(dx));
        exact.cross_xy(&x, &y, &v, batch, &mut a);
        fd.cross_xy(&x, &y, &v, batch, &mut b);
        assert!((&a - &b).norm() <= FD_TOL * a.norm(), "cross_xy");
        let (mut a, mut b) = (Vector::zeros(dy), Vector::zeros(dy));
        exact.cross_yx(&x, &y, &u, batch, &mut a);
        fd.cross_yx(&x, &y, &u, batch, &mut b);
        assert!((&a - &b).norm() <= FD_TOL * a.norm(), "cross_yx");
    }
}

#[test]
fn a_wrong_oracle_is_caught() {
    /// The quadratic with a sign error in the cross product: the check must fail.
    struct WrongCross<'a>(&'a dyn Objective);
    impl Objective for WrongCross<'_> {
        fn dims(&self) -> (usize, usize) {
            self.0.dims()
        }
        fn value(&self, x: &Vector, y: &Vector, b: Batch<'_>) -> f64 {
            self.0.value(x, y, b)
        }
        fn grad_x(&self, x: &Vector, y: &Vector, b: Batch<'_>, out: &mut Vector) {
            self.0.grad_x(x, y, b, out)
        }
        fn grad_y(&self, x: &Vector, y: &Vector, b: Batch<'_>, out: &mut Vector) {
            self.0.grad_y(x, y, b, out)
        }
        fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, b: Batch<'_>, out: &mut Vector) {
            self.0.cross_xy(x, y, v, b, out);
            out.scale(-1.0);
        }
    }
    let problem = small_quadratic();
    let wrong = WrongCross(problem.g());
    let (x, y) = bilevel::problems::quadratic::random_point(&problem, 1);
    let report = bilevel::testing::check_objective(&wrong, &x, &y, Batch::Full, 0);
    assert!(report.cross_xy > 0.5, "{report:?}");
}

#[test]
fn meta_problem_oracles_match_finite_differences() {
    use bilevel::problems::meta_linear::MetaLinearConfig;
    use bilevel::problems::ufo_toy::UfoToyConfig;
    // The toy is C² (piecewise quadratic / cubic / linear with matching curvature), so central
    // differences are as accurate as on a quadratic away from the joins, which random points
    // hit with probability ~1e-5.
    for problem in [
        MetaLinearConfig::default().build().unwrap(),
        UfoToyConfig::default().build().unwrap(),
    ] {
        assert_objective_matches_fd(problem.f(), 4, FD_TOL, 5);
        assert_objective_matches_fd(problem.g(), 4, FD_TOL, 6);
    }
}
