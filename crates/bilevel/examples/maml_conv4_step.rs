//! One MAML meta-gradient on conv-4 (`meta_fewshot`): the time per meta-step, to set against
//! PyTorch's on the same shapes (`benchmarks/maml_conv4_torch.py`). A benchmark, not a test.
//!
//! ```sh
//! cargo run --release -p bilevel --example maml_conv4_step [-- --filters 32 --meta-batch 4]
//! ```
//!
//! The step: for each of the meta-batch's tasks (5-way 1-shot, 15 queries per class, MNIST
//! digits), θ' = φ − α ∇l(φ) on the support, then the exact meta-gradient
//! (I − α ∇²l(φ)) ∇L(θ') by one Hessian-vector product (the R-op); averaged over the tasks. The
//! figure is the median over 7 blocks of the mean time per meta-gradient in the block, after a
//! warm-up block. Single-threaded (faer's sequential GEMM).

use std::time::Instant;

use bilevel::algorithms::maml::ExactMetaGradient;
use bilevel::core::linalg::rng_from_seed;
use bilevel::hypergrad::Hypergradient;
use bilevel::hypergrad::meta_unrolled::MetaBatch;
use bilevel::prelude::*;
use bilevel::problems::meta_fewshot::{FewshotModel, MetaFewshotConfig};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a whole number"))
}

fn main() {
    let filters = arg("--filters", 32);
    let meta_batch = arg("--meta-batch", 4);
    let config = MetaFewshotConfig {
        model: FewshotModel::Conv4,
        filters,
        tasks: 64,
        test_tasks: 1,
        ..Default::default()
    };
    let problem = config
        .build()
        .expect("the MNIST test set under shared/data");
    let estimator = ExactMetaGradient {
        name: "maml",
        batch: MetaBatch {
            size: meta_batch,
            sampling: SamplingMode::Shuffled,
        },
        head_only: false,
    };
    let phi = problem.start().0;
    let mut rng = rng_from_seed(0, 0);
    let mut state = estimator
        .init(&problem, phi.clone(), &mut rng)
        .expect("init");
    let mut out = Vector::zeros(phi.nrows());
    let per_block = 5;
    let mut step = || {
        estimator
            .estimate(&problem, &phi, &mut state, &mut rng, &mut out)
            .expect("estimate");
    };
    for _ in 0..per_block {
        step();
    }
    let mut blocks: Vec<f64> = (0..7)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..per_block {
                step();
            }
            started.elapsed().as_secs_f64() / per_block as f64
        })
        .collect();
    blocks.sort_by(f64::total_cmp);
    let median = blocks[blocks.len() / 2];
    println!(
        "conv-4 ({filters} filters, {} parameters), 5-way 1-shot, 15 queries, meta-batch \
         {meta_batch}, r = 1: {:.1} ms per MAML meta-gradient (median of 7 blocks of {per_block})",
        phi.nrows(),
        median * 1e3
    );
}
