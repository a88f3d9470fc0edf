//! The data kernels compute the same bits at every instruction-set level (portable code, AVX2,
//! AVX-512): they never fuse a multiply with an add and sum lanes in one fixed order, so a run
//! is reproducible across machines. This test caps the level with `set_simd_cap`, computes
//! oracles (minibatch and full batch, which also exercises the parallel blocks), 30 SOBA steps
//! and the exact evaluation on each level the CPU has, and asks for bit equality with the
//! portable code.
//!
//! One test in this file on purpose: the cap is process-wide.

use bilevel::data::DatasetSpec;
use bilevel::data::synthetic::Twin;
use bilevel::prelude::*;
use bilevel::problems::ProblemConfig;
use bilevel::problems::common::ReferenceConfig;
use bilevel::problems::data_cleaning::{DataCleaningConfig, Storage};
use bilevel::problems::logreg_hpo::{LogregHpoConfig, Penalty};
use bilevel::problems::{SimdLevel, set_simd_cap, simd_level};

/// Everything compared, as raw bits.
fn fingerprint(problem: &Problem) -> Vec<u64> {
    let problem = problem.fresh();
    let (x, y) = problem.start();
    let (dx, dy) = problem.dims();
    let n_inner = problem.g().n_samples();
    let batch: Vec<usize> = (0..n_inner).step_by(7).take(64).collect();
    let n_outer = problem.f().n_samples();
    let outer_batch: Vec<usize> = (0..n_outer).step_by(5).take(64).collect();
    let v = Vector::from_fn(dy, |i| ((i * 37 % 11) as f64 - 5.0) / 7.0);
    let mut bits = Vec::new();
    let mut push = |out: &Vector| bits.extend(out.iter().map(|a| a.to_bits()));
    for (b, fb) in [
        (Batch::Indices(&batch), Batch::Indices(&outer_batch)),
        (Batch::Full, Batch::Full),
    ] {
        let (mut gy, mut hv, mut gx) = (Vector::zeros(dy), Vector::zeros(dy), Vector::zeros(dx));
        problem.g().grad_y(&x, &y, b, &mut gy);
        push(&gy);
        problem.g().hvp_yy(&x, &y, &v, b, &mut hv);
        push(&hv);
        problem.g().cross_xy(&x, &y, &v, b, &mut gx);
        push(&gx);
        problem.f().grad_y(&x, &y, fb, &mut gy);
        push(&gy);
        push(&Vector::from_fn(1, |_| problem.f().value(&x, &y, fb)));
        push(&Vector::from_fn(1, |_| problem.g().value(&x, &y, b)));
    }
    let solver = SobaConfig {
        batch_size: 32,
        ..Default::default()
    }
    .build()
    .expect("valid SOBA");
    let mut state = solver.init(&problem, x, y, 3).expect("init");
    for _ in 0..30 {
        solver.step(&problem, &mut state).expect("step");
    }
    push(&state.x);
    push(&state.y);
    let metrics = problem
        .metrics(&state.x, &state.y, Some(&state.v))
        .expect("metrics");
    for value in metrics.values() {
        bits.push(value.to_bits());
    }
    bits
}

#[test]
fn kernels_give_the_same_bits_at_every_instruction_set_level() {
    let no_reference = ReferenceConfig {
        enabled: false,
        ..Default::default()
    };
    let ijcnn1_twin = |n_features: usize| {
        let mut dataset = DatasetSpec::twin(Twin::Ijcnn1, 0.01);
        dataset.n_features = Some(n_features);
        ProblemConfig::LogregHpo(LogregHpoConfig {
            dataset,
            validation_fraction: 0.3,
            ..Default::default()
        })
    };
    let cases = [
        // Binary, dense, widths with 1, 2, 3 and 5 lane chunks (the last is the generic path).
        ("ijcnn1 twin d=7", ijcnn1_twin(7)),
        ("ijcnn1 twin d=13", ijcnn1_twin(13)),
        ("ijcnn1 twin d=22", ijcnn1_twin(22)),
        ("ijcnn1 twin d=37", ijcnn1_twin(37)),
        // Multiclass, sparse rows streamed dense, one hyperparameter per class.
        (
            "covtype twin",
            ProblemConfig::LogregHpo(LogregHpoConfig {
                dataset: DatasetSpec::twin(Twin::Covtype, 0.003),
                validation_fraction: 0.2,
                test_fraction: 0.2,
                penalty: Penalty::PerClass,
                reference: no_reference,
                ..Default::default()
            }),
        ),
        // Multiclass with an intercept, per-sample weights, dense and CSR kernels.
        (
            "hyper-cleaning dense",
            ProblemConfig::DataCleaning(DataCleaningConfig {
                n_train: 300,
                n_validation: 100,
                n_test: 100,
                storage: Storage::Dense,
                intercept: true,
                reference: no_reference,
                ..Default::default()
            }),
        ),
        (
            "hyper-cleaning sparse",
            ProblemConfig::DataCleaning(DataCleaningConfig {
                n_train: 300,
                n_validation: 100,
                n_test: 100,
                storage: Storage::Sparse,
                intercept: true,
                reference: no_reference,
                ..Default::default()
            }),
        ),
    ];
    let detected = SimdLevel::detected();
    let levels: Vec<SimdLevel> = [SimdLevel::Plain, SimdLevel::Avx2, SimdLevel::Avx512]
        .into_iter()
        .filter(|&l| l <= detected)
        .collect();
    eprintln!("levels compared: {levels:?}");
    let mut failures = Vec::new();
    for (name, config) in &cases {
        let problem = config.build().expect(name);
        let mut reference: Option<Vec<u64>> = None;
        for &level in &levels {
            set_simd_cap(level);
            assert_eq!(simd_level(), level, "the cap takes effect");
            let bits = fingerprint(&problem);
            match &reference {
                None => reference = Some(bits),
                Some(plain) => {
                    let differing = plain.iter().zip(&bits).filter(|(a, b)| a != b).count();
                    if plain.len() != bits.len() || differing > 0 {
                        failures.push(format!(
                            "{name}: {} of {} values differ between plain and {}",
                            differing,
                            plain.len(),
                            level.name()
                        ));
                    }
                }
            }
        }
    }
    set_simd_cap(SimdLevel::Avx512);
    assert!(failures.is_empty(), "{failures:#?}");
}
