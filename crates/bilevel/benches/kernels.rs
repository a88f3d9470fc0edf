//! Criterion micro-benchmarks of the hot kernels: oracles on a minibatch and on the full batch,
//! CG on a Hessian-vector closure, the minibatch sampler, and one solver step.
//!
//! `cargo bench -p bilevel --features bench --bench kernels`. Macro comparisons live in `bilevel bench`.

use std::hint::black_box;

use bilevel::core::linalg::{normal_vector, rng_from_seed};
use bilevel::core::{Batch, Fused, MinibatchSampler, SamplingMode, Solver, Vector};
use bilevel::linsolve::{CgParams, CgWorkspace, cg_in_place};
use bilevel::prelude::*;
use bilevel::problems::quadratic::QuadraticConfig;
use criterion::{Criterion, criterion_group, criterion_main};

fn quadratic() -> Problem {
    QuadraticConfig {
        dim_x: 10,
        dim_y: 100,
        ..Default::default()
    }
    .build()
    .expect("the benchmark quadratic builds")
}

fn oracles(c: &mut Criterion) {
    let problem = quadratic();
    let (dx, dy) = problem.dims();
    let mut rng = rng_from_seed(1, 0);
    let (x, y, v) = (
        normal_vector(&mut rng, dx),
        normal_vector(&mut rng, dy),
        normal_vector(&mut rng, dy),
    );
    let batch: Vec<usize> = (0..64).map(|i| (i * 13) % 1024).collect();
    let mut out_y = Vector::zeros(dy);
    let mut out_x = Vector::zeros(dx);
    let g = problem.g();
    let mut group = c.benchmark_group("quadratic_d100_oracles");
    group.bench_function("grad_y_batch64", |b| {
        b.iter(|| {
            g.grad_y(
                black_box(&x),
                black_box(&y),
                Batch::Indices(&batch),
                &mut out_y,
            )
        })
    });
    group.bench_function("hvp_yy_batch64", |b| {
        b.iter(|| g.hvp_yy(&x, &y, black_box(&v), Batch::Indices(&batch), &mut out_y))
    });
    group.bench_function("cross_xy_batch64", |b| {
        b.iter(|| g.cross_xy(&x, &y, black_box(&v), Batch::Indices(&batch), &mut out_x))
    });
    group.bench_function("grad_y_full", |b| {
        b.iter(|| g.grad_y(black_box(&x), black_box(&y), Batch::Full, &mut out_y))
    });
    group.finish();
}

/// The ijcnn1 problem (real data: 49,990 × 22 train, 91,701 × 22 validation).
fn ijcnn1() -> Problem {
    bilevel::problems::logreg_hpo::LogregHpoConfig::default()
        .build()
        .expect("ijcnn1 loads (shared data directory)")
}

fn logreg_oracles(c: &mut Criterion) {
    let problem = ijcnn1();
    let (dx, dy) = problem.dims();
    let (x, y) = problem.start();
    let mut rng = rng_from_seed(4, 0);
    let v = normal_vector(&mut rng, dy);
    let n = problem.g().n_samples();
    let contiguous: Vec<usize> = (1000..1064).collect();
    let mut shuffled = MinibatchSampler::new(n, 64, SamplingMode::Shuffled, 5).expect("sampler");
    let shuffled: Vec<usize> = shuffled.draw().to_vec();
    let (mut gy, mut hv) = (Vector::zeros(dy), Vector::zeros(dy));
    let mut cross = Vector::zeros(dx);
    let (g, f) = (problem.g(), problem.f());
    let mut group = c.benchmark_group("ijcnn1_oracles_batch64");
    for (name, batch) in [("contiguous", &contiguous), ("shuffled", &shuffled)] {
        group.bench_function(format!("g_grad_y_{name}"), |b| {
            b.iter(|| g.grad_y(&x, black_box(&y), Batch::Indices(batch), &mut gy))
        });
        group.bench_function(format!("g_hvp_yy_{name}"), |b| {
            b.iter(|| g.hvp_yy(&x, &y, black_box(&v), Batch::Indices(batch), &mut hv))
        });
        group.bench_function(format!("g_fused_grad_hvp_cross_{name}"), |b| {
            b.iter(|| {
                g.fused(
                    &x,
                    black_box(&y),
                    Some(&v),
                    Batch::Indices(batch),
                    Fused {
                        grad_y: Some(&mut gy),
                        hvp_yy: Some(&mut hv),
                        cross_xy: Some(&mut cross),
                        ..Fused::default()
                    },
                )
            })
        });
        group.bench_function(format!("g_separate_grad_hvp_cross_{name}"), |b| {
            b.iter(|| {
                g.grad_y(&x, black_box(&y), Batch::Indices(batch), &mut gy);
                g.hvp_yy(&x, &y, &v, Batch::Indices(batch), &mut hv);
                g.cross_xy(&x, &y, &v, Batch::Indices(batch), &mut cross);
            })
        });
        group.bench_function(format!("f_grad_y_{name}"), |b| {
            b.iter(|| f.grad_y(&x, black_box(&y), Batch::Indices(batch), &mut gy))
        });
    }
    for bs in [1usize, 16, 256, 1024] {
        let batch: Vec<usize> = (2000..2000 + bs).collect();
        group.bench_function(format!("f_grad_y_contiguous_batch{bs}"), |b| {
            b.iter(|| f.grad_y(&x, black_box(&y), Batch::Indices(&batch), &mut gy))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("ijcnn1_full_batch");
    group.sample_size(20);
    group.bench_function("g_grad_y_full", |b| {
        b.iter(|| g.grad_y(&x, black_box(&y), Batch::Full, &mut gy))
    });
    group.bench_function("g_hvp_yy_full", |b| {
        b.iter(|| g.hvp_yy(&x, &y, black_box(&v), Batch::Full, &mut hv))
    });
    group.finish();
}

fn conjugate_gradient(c: &mut Criterion) {
    let problem = quadratic();
    let (dx, dy) = problem.dims();
    let mut rng = rng_from_seed(2, 0);
    let (x, y, rhs) = (
        normal_vector(&mut rng, dx),
        normal_vector(&mut rng, dy),
        normal_vector(&mut rng, dy),
    );
    let g = problem.g();
    let params = CgParams {
        max_iters: 10,
        rel_tol: 0.0,
    };
    let mut ws = CgWorkspace::new(dy);
    let mut v = Vector::zeros(dy);
    c.bench_function("cg_10_iters_full_hvp_d100", |b| {
        b.iter(|| {
            v.as_mut_slice().fill(0.0);
            cg_in_place(
                |p, out| g.hvp_yy(&x, &y, p, Batch::Full, out),
                black_box(&rhs),
                &mut v,
                &params,
                &mut ws,
            )
        })
    });
}

fn sampler(c: &mut Criterion) {
    let mut group = c.benchmark_group("sampler_n50000_batch64");
    for (name, mode) in [
        ("shuffled", SamplingMode::Shuffled),
        ("with_replacement", SamplingMode::WithReplacement),
        ("contiguous", SamplingMode::Contiguous),
    ] {
        let mut s = MinibatchSampler::new(50_000, 64, mode, 3).expect("valid sampler");
        group.bench_function(name, |b| b.iter(|| black_box(s.draw().len())));
    }
    group.finish();
}

fn solver_steps(c: &mut Criterion) {
    let problem = quadratic();
    let mut group = c.benchmark_group("step_quadratic_d100");
    let soba = SobaConfig::default().build().expect("valid config");
    let (x0, y0) = problem.start();
    let mut state = soba.init(&problem, x0, y0, 0).expect("init");
    group.bench_function("soba", |b| {
        b.iter(|| soba.step(&problem, &mut state).expect("step"))
    });
    group.finish();
}

criterion_group!(
    benches,
    oracles,
    logreg_oracles,
    conjugate_gradient,
    sampler,
    solver_steps
);
criterion_main!(benches);
