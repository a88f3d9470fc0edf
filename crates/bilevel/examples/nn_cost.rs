//! What a Hessian-vector product of a network costs against its gradient (`bilevel::nn`): the
//! R-op (`Mlp::hvp`, `ConvNet::hvp`, f64 with faer's GEMM) and, for comparison, the generic gradient run on
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
use bilevel::nn::{
    Activation, ConvNet, ImageShape, Loss, Mlp, Network, NetworkWorkspace, Targets, Workspace,
};
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
    network: Network,
    loss: Loss,
    batch: usize,
}

fn mlp(sizes: &[usize], activation: Activation, loss: Loss) -> Network {
    Network::Mlp(Mlp::new(sizes, activation, loss).expect("valid sizes"))
}

fn conv4(filters: usize) -> Network {
    let image = ImageShape {
        height: 28,
        width: 28,
        channels: 1,
    };
    Network::Conv(ConvNet::conv4(image, filters, Activation::Relu, 5).expect("valid shape"))
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
            network: mlp(&[1, 40, 40, 1], Activation::Relu, Loss::Mse),
            loss: Loss::Mse,
            batch: 10,
        },
        Case {
            name: "MNIST-size MLP 784-256-256-10, tanh, softmax CE",
            network: mlp(
                &[784, 256, 256, 10],
                Activation::Tanh,
                Loss::SoftmaxCrossEntropy,
            ),
            loss: Loss::SoftmaxCrossEntropy,
            batch: 64,
        },
        Case {
            name: "conv-4, 32 filters, 28×28 grey, relu, 5-way (a 1-shot support set)",
            network: conv4(32),
            loss: Loss::SoftmaxCrossEntropy,
            batch: 5,
        },
        Case {
            name: "conv-4, 32 filters, 28×28 grey, relu, 5-way (a 15-query set)",
            network: conv4(32),
            loss: Loss::SoftmaxCrossEntropy,
            batch: 75,
        },
        Case {
            name: "conv-4, 64 filters, 28×28 grey, relu, 5-way (a 15-query set)",
            network: conv4(64),
            loss: Loss::SoftmaxCrossEntropy,
            batch: 75,
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        let net = &case.network;
        let mut rng = rng_from_seed(0, 0);
        let n = 256;
        let inputs: Vec<f64> = (0..n * net.inputs())
            .map(|_| standard_normal(&mut rng))
            .collect();
        let regression: Vec<f64> = (0..n * net.outputs())
            .map(|_| standard_normal(&mut rng))
            .collect();
        let classes: Vec<usize> = (0..n).map(|i| i % net.outputs()).collect();
        let targets = match case.loss {
            Loss::Mse => Targets::Regression(&regression),
            Loss::SoftmaxCrossEntropy => Targets::Classes(&classes),
        };
        let params = net.init(&mut rng);
        let v: Vec<f64> = (0..net.num_params())
            .map(|_| standard_normal(&mut rng))
            .collect();
        let batch: Vec<usize> = (0..case.batch).map(|i| (i * 37) % n).collect();
        let mut ws = NetworkWorkspace::new();
        let mut grad = vec![0.0; net.num_params()];
        let mut out = vec![0.0; net.num_params()];
        // About 0.05 s of work per block.
        let work = case.batch * net.num_params() * net.inputs().min(100);
        let calls = (5e7 / work as f64).clamp(2.0, 2000.0) as usize;
        let forward = time(
            || {
                black_box(net.outputs_of(black_box(&params), &inputs, Some(&batch), &mut ws));
            },
            calls,
        );
        let gradient = time(
            || {
                black_box(net.loss_grad(
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
                black_box(net.hvp(
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
        // Dual numbers run the generic code with plain loops: only the MLPs, whose dual
        // gradient takes milliseconds (conv-4's would take seconds).
        let dual = match net {
            Network::Mlp(mlp) => {
                let dual_params: Vec<Dual64> = params
                    .iter()
                    .zip(&v)
                    .map(|(&p, &d)| Dual64::new(p, d))
                    .collect();
                let mut dual_ws = Workspace::new();
                let mut dual_grad = vec![Dual64::from(0.0); mlp.num_params()];
                Some(time(
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
                ))
            }
            Network::Conv(_) => None,
        };
        rows.push((case, net.num_params(), forward, gradient, hvp, dual));
    }
    let mut table = String::from(
        "| network | parameters | batch | forward µs | gradient µs | HVP (R-op) µs | HVP / gradient | HVP by dual numbers µs |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (case, params, forward, gradient, hvp, dual) in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2}× | {} |\n",
            case.name,
            params,
            case.batch,
            forward * 1e6,
            gradient * 1e6,
            hvp * 1e6,
            hvp / gradient,
            dual.map_or("—".to_owned(), |d| format!("{:.1}", d * 1e6))
        ));
    }
    print!("{table}");
    if let Some(path) = markdown_path {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let section = format!(
            "## Network oracles: Hessian-vector product against gradient (`crates/bilevel/examples/nn_cost.rs`)\n\n\
             `cargo run --release -p bilevel --example nn_cost -- --markdown {path}` on {cpus} CPUs, \
             single-threaded products. Median over 15 blocks of the time per call. The HVP is the \
             R-op of `bilevel::nn` (`Mlp::hvp`, `ConvNet::hvp`: one forward and one backward pass, \
             then their R-passes; no gradient output); the last column runs the same generic \
             gradient code on dual numbers (exact H·v too, but plain loops instead of GEMM): the \
             check of the R-op, not a fast path. Target for the HVP / gradient ratio: ≤ 2.5×.\n\n{table}"
        );
        std::fs::write(&path, section).expect("writing the markdown section");
        eprintln!("wrote {path}");
    }
}
