//! The data-backed and synthetic problems: every oracle against finite differences, every
//! reference hypergradient against a finite difference of F, and the registry.

use bilevel::core::linalg::{normal_vector, rng_from_seed};
use bilevel::data::DatasetSpec;
use bilevel::data::synthetic::Twin;
use bilevel::prelude::*;
use bilevel::problems::common::Preprocess;
use bilevel::problems::data_cleaning::{CleaningModel, DataCleaningConfig};
use bilevel::problems::hyper_representation::{HyperRepresentationConfig, Representation};
use bilevel::problems::lancbio_synthetic::LancbioSyntheticConfig;
use bilevel::problems::logreg_hpo::{LogregHpoConfig, Parametrization, Penalty, Task};
use bilevel::problems::ridge_hpo::RidgeHpoConfig;
use bilevel::testing::assert_objective_matches_fd;

/// Central differences in f64 reach about 1e-9 relative error on these smooth objectives; 1e-6
/// leaves three orders of margin while catching any wrong sign, factor or transpose (errors of
/// order 1).
const FD_TOL: f64 = 1e-6;

/// The reference ∇F must match a central difference of the reference F to this relative error
/// (the brief's 1e-6): F is computed from y* solved to ‖∇ᵧg‖ ≤ 1e-12.
const HYPERGRAD_FD_TOL: f64 = 1e-6;

fn small_problems() -> Vec<(&'static str, Problem)> {
    let heart = |dense: bool, param: Parametrization| LogregHpoConfig {
        dataset: DatasetSpec::shared("heart_scale"),
        validation_fraction: 0.3,
        dense,
        penalty: if dense {
            Penalty::Scalar
        } else {
            Penalty::PerFeature
        },
        parametrization: param,
        x0: (param == Parametrization::Linear).then_some(0.5),
        ..Default::default()
    };
    let digits = |penalty: Penalty| LogregHpoConfig {
        dataset: DatasetSpec::shared("digits"),
        validation_fraction: 0.3,
        max_train: 150,
        max_validation: 100,
        preprocess: Preprocess::Standardize,
        penalty,
        x0: Some(-1.0),
        ..Default::default()
    };
    let covtype = LogregHpoConfig {
        dataset: DatasetSpec::twin(Twin::Covtype, 0.0005),
        validation_fraction: 0.3,
        task: Task::Multiclass,
        penalty: Penalty::PerClass,
        ..Default::default()
    };
    let news = LogregHpoConfig {
        dataset: DatasetSpec {
            twin: Some(Twin::News20),
            scale: Some(0.004),
            n_features: Some(3_000),
            ..Default::default()
        },
        validation_fraction: 0.3,
        x0: Some(-3.0),
        ..Default::default()
    };
    let cleaning = DataCleaningConfig {
        train: DatasetSpec::shared("digits"),
        heldout_from_train: true,
        n_train: 80,
        n_validation: 60,
        n_test: 60,
        ..Default::default()
    };
    let build = |c: ProblemConfig| c.build().unwrap_or_else(|e| panic!("{}: {e}", c.kind()));
    vec![
        (
            "logreg sparse exp",
            build(ProblemConfig::LogregHpo(heart(false, Parametrization::Exp))),
        ),
        (
            "logreg dense linear scalar",
            build(ProblemConfig::LogregHpo(heart(
                true,
                Parametrization::Linear,
            ))),
        ),
        (
            "logreg multiclass per_feature",
            build(ProblemConfig::LogregHpo(digits(Penalty::PerFeature))),
        ),
        (
            "logreg multiclass per_class",
            build(ProblemConfig::LogregHpo(digits(Penalty::PerClass))),
        ),
        (
            "logreg covtype twin per_class",
            build(ProblemConfig::LogregHpo(covtype)),
        ),
        (
            "logreg news20 twin per_feature",
            build(ProblemConfig::LogregHpo(news)),
        ),
        (
            "data_cleaning",
            build(ProblemConfig::DataCleaning(cleaning.clone())),
        ),
        (
            "data_cleaning mlp",
            build(ProblemConfig::DataCleaning(DataCleaningConfig {
                model: CleaningModel::Mlp,
                hidden: vec![6, 5],
                n_train: 30,
                ..cleaning
            })),
        ),
        (
            "lancbio_synthetic",
            build(ProblemConfig::LancbioSynthetic(LancbioSyntheticConfig {
                dim: 12,
                kappa: 100.0,
                ..Default::default()
            })),
        ),
        (
            "hyper_representation linear",
            build(ProblemConfig::HyperRepresentation(
                HyperRepresentationConfig {
                    p: 5,
                    d: 4,
                    n: 40,
                    ..Default::default()
                },
            )),
        ),
        (
            "hyper_representation two_layer",
            build(ProblemConfig::HyperRepresentation(
                HyperRepresentationConfig {
                    representation: Representation::TwoLayerSigmoid,
                    p: 4,
                    q: 6,
                    d: 3,
                    n: 40,
                    ridge: 1e-2,
                    ..Default::default()
                },
            )),
        ),
        (
            "ridge_hpo",
            build(ProblemConfig::RidgeHpo(RidgeHpoConfig {
                n_train: 50,
                n_validation: 30,
                dim: 6,
                ..Default::default()
            })),
        ),
    ]
}

#[test]
fn every_oracle_matches_finite_differences() {
    for (name, problem) in small_problems() {
        eprintln!("{name}");
        assert_objective_matches_fd(problem.f(), 2, FD_TOL, 1);
        assert_objective_matches_fd(problem.g(), 2, FD_TOL, 2);
    }
}

#[test]
fn every_reference_hypergradient_matches_a_difference_of_f() {
    for (name, problem) in small_problems() {
        // A network classifier's inner problem is not convex: no exact reference.
        let Some(reference) = problem.reference() else {
            assert_eq!(name, "data_cleaning mlp", "{name} has no reference");
            continue;
        };
        let (x0, _) = problem.start();
        let dx = x0.nrows();
        let mut rng = rng_from_seed(5, 0);
        // A point near the start (linear parametrizations need x > 0: perturb mildly).
        let mut x = normal_vector(&mut rng, dx);
        x.scale(0.1);
        x.axpy(1.0, &x0);
        let point = reference
            .evaluate(&x)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let grad = point.hypergradient;
        let f_at = |p: &Vector| reference.evaluate(p).unwrap().value;
        // Directions: coordinates when few, else 4 random directions.
        let dirs: Vec<Vector> = if dx <= 13 {
            (0..dx)
                .map(|i| Vector::from_fn(dx, |j| if i == j { 1.0 } else { 0.0 }))
                .collect()
        } else {
            (0..4).map(|_| normal_vector(&mut rng, dx)).collect()
        };
        for dir in dirs {
            let h = 1e-4 / dir.norm();
            let mut plus = x.clone();
            plus.axpy(h, &dir);
            let mut minus = x.clone();
            minus.axpy(-h, &dir);
            let fd = (f_at(&plus) - f_at(&minus)) / (2.0 * h);
            let exact = grad.dot(&dir);
            let scale = grad.norm() * dir.norm();
            let err = (fd - exact).abs() / scale.max(1e-12);
            assert!(
                err <= HYPERGRAD_FD_TOL,
                "{name}: ∇F·u = {exact:e}, finite difference {fd:e}, relative error {err:e}"
            );
        }
    }
}

#[test]
fn reference_solves_the_inner_problem_and_warm_starts() {
    let problem = ProblemConfig::LancbioSynthetic(LancbioSyntheticConfig {
        dim: 30,
        ..Default::default() // κ = 1e5: the paper's conditioning
    })
    .build()
    .unwrap();
    let reference = problem.reference().unwrap();
    let x = normal_vector(&mut rng_from_seed(1, 0), 30);
    let point = reference.evaluate(&x).unwrap();
    let y = point.y_star.unwrap();
    let mut gy = Vector::zeros(30);
    problem.g().grad_y(&x, &y, Batch::Full, &mut gy);
    assert!(gy.norm() <= 1e-10, "‖∇ᵧg(x, y*)‖ = {:e}", gy.norm());
    // Same x again: served from the cache, bit-identical.
    let again = reference.evaluate(&x).unwrap();
    assert_eq!(again.value.to_bits(), point.value.to_bits());
}

#[test]
fn every_new_kind_is_listed_and_parses_from_toml() {
    let kinds: Vec<&str> = ProblemConfig::catalog().iter().map(|c| c.0).collect();
    for kind in [
        "logreg_hpo",
        "data_cleaning",
        "lancbio_synthetic",
        "hyper_representation",
        "ridge_hpo",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from the catalog");
    }
    let c: ProblemConfig = toml::from_str(
        r#"
kind = "logreg_hpo"
dataset = { twin = "covtype", scale = 0.01 }
penalty = "per_class"
validation_fraction = 0.2
"#,
    )
    .unwrap();
    c.validate().unwrap();
    let bad: Result<ProblemConfig, _> =
        toml::from_str("kind = \"data_cleaning\"\ncorruptoin = 0.1");
    assert!(bad.unwrap_err().to_string().contains("corruptoin"));
    let c: ProblemConfig =
        toml::from_str("kind = \"logreg_hpo\"\ndataset = { shared = \"nope\" }").unwrap();
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("dataset.shared")
    );
}
