//! What a Hessian-vector product of a network costs against its gradient (`bilevel::nn`): the
//! R-op (`Mlp::hvp`, f64 with faer's GEMM) and, for comparison, the generic gradient run on
//! dual numbers (exact too, but without GEMM). A benchmark, not a test.
//!
//! ```sh
//! cargo run --release -p bilevel --example nn_cost [-- --markdown benchmarks/nn_cost.md]
//! ```
//!
//! Each figure is the median over 15 timed blocks (after a warm-up) of the mean time per call
//! in the block; `--markdown F` also writes the table as a section for BENCHMARKS.md
//! (`bilevel bench-md … --include F`).

use std::hint::black_box;
use std::time::Instant;

use bilevel::core::linalg::{rng_from_seed, standard_normal};
use bilevel::nn::{Activation, Loss, Mlp, Targets, Workspace};
use num_dual::Dual64;

/// Median over blocks of the seconds per call of `call`.
fn time(mut call: impl FnMut(), calls_per_block: usize) -> f64 {
    for _ in 0..calls_per_block {
        call();
    }
    let mut blocks: Vec<f64> = (0..15)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls_per_block {
                call();
            }
            started.elapsed().as_secs_f64() / calls_per_block as f64
        })
        .collect();
    blocks.sort_by(f64::total_cmp);
    blocks[blocks.len() / 2]
}

struct Case {
    name: &'static str,
    sizes: Vec<usize>,
    activation: Activation,
    loss: Loss,
    batch: usize,
}

fn main() {
    let markdown_path = {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == "--markdown")
            .and_then(|i| args.get(i + 1).cloned())
    };
    let cases = [
        Case {
            name: "MAML sinusoid MLP 1-40-40-1, relu, ½ MSE",
            sizes: vec![1, 40, 40, 1],
            activation: Activation::Relu,
            loss: Loss::Mse,
            batch: 10,
        },
        Case {
            name: "MNIST-size MLP 784-256-256-10, tanh, softmax CE",
            sizes: vec![784, 256, 256, 10],
            activation: Activation::Tanh,
            loss: Loss::SoftmaxCrossEntropy,
            batch: 64,
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        let mlp = Mlp::new(&case.sizes, case.activation, case.loss).expect("valid sizes");
        let mut rng = rng_from_seed(0, 0);
        let n = 256;
        let inputs: Vec<f64> = (0..n * mlp.inputs())
            .map(|_| standard_normal(&mut rng))
            .collect();
        let regression: Vec<f64> = (0..n * mlp.outputs())
            .map(|_| standard_normal(&mut rng))
            .collect();
        let classes: Vec<usize> = (0..n).map(|i| i % mlp.outputs()).collect();
        let targets = match case.loss {
            Loss::Mse => Targets::Regression(&regression),
            Loss::SoftmaxCrossEntropy => Targets::Classes(&classes),
        };
        let params = mlp.init(&mut rng);
        let v: Vec<f64> = (0..mlp.num_params())
            .map(|_| standard_normal(&mut rng))
            .collect();
        let batch: Vec<usize> = (0..case.batch).map(|i| (i * 37) % n).collect();
        let mut ws = Workspace::new();
        let mut grad = vec![0.0; mlp.num_params()];
        let mut out = vec![0.0; mlp.num_params()];
        let calls = if case.batch * mlp.num_params() > 1_000_000 {
            20
        } else {
            2000
        };
        let gradient = time(
            || {
                black_box(mlp.loss_grad(
                    black_box(&params),
                    &inputs,
                    targets,
                    Some(&batch),
                    Some(&mut grad),
                    &mut ws,
                ));
            },
            calls,
        );
        let hvp = time(
            || {
                black_box(mlp.hvp(
                    black_box(&params),
                    black_box(&v),
                    &inputs,
                    targets,
                    Some(&batch),
                    None,
                    &mut out,
                    &mut ws,
                ));
            },
            calls,
        );
        let dual_params: Vec<Dual64> = params
            .iter()
            .zip(&v)
            .map(|(&p, &d)| Dual64::new(p, d))
            .collect();
        let mut dual_ws = Workspace::new();
        let mut dual_grad = vec![Dual64::from(0.0); mlp.num_params()];
        let dual = time(
            || {
                black_box(mlp.loss_grad(
                    black_box(&dual_params),
                    &inputs,
                    targets,
                    Some(&batch),
                    Some(&mut dual_grad),
                    &mut dual_ws,
                ));
            },
            (calls / 10).max(2),
        );
        rows.push((case, mlp.num_params(), gradient, hvp, dual));
    }
    let mut table = String::from(
        "| network | parameters | batch | gradient µs | HVP (R-op) µs | HVP / gradient | HVP by dual numbers µs |\n|---|---|---|---|---|---|---|\n",
    );
    for (case, params, gradient, hvp, dual) in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2}× | {:.1} |\n",
            case.name,
            params,
            case.batch,
            gradient * 1e6,
            hvp * 1e6,
            hvp / gradient,
            dual * 1e6
        ));
    }
    print!("{table}");
    if let Some(path) = markdown_path {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let section = format!(
            "## Network oracles: Hessian-vector product against gradient (`crates/bilevel/examples/nn_cost.rs`)\n\n\
             `cargo run --release -p bilevel --example nn_cost -- --markdown {path}` on {cpus} CPUs, \
             single-threaded products. Median over 15 blocks of the time per call. The HVP is the \
             R-op of `bilevel::nn::Mlp` (one forward and one backward pass, then their R-passes; no \
             gradient output); the last column runs the same generic gradient code on dual numbers \
             (exact H·v too, but plain loops instead of GEMM): the check of the R-op, not a fast \
             path. Target for the HVP / gradient ratio: ≤ 2.5×.\n\n{table}"
        );
        std::fs::write(&path, section).expect("writing the markdown section");
        eprintln!("wrote {path}");
    }
}
