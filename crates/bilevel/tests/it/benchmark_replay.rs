//! SABA replayed from the reference benchmark's start on real ijcnn1 (algorithms.md §9.9), with
//! the benchmark's two sampler and memory conventions: memories start at zero
//! (`init_memory = "zero"`) and the first epoch visits the 64-row blocks in file order
//! (`sampling = { mode = "contiguous", first_epoch = "ordered" }`), one memory row per block.
//!
//! The benchmark's own result at these settings (200,000 iterations) lies in [0.2435, 0.2455];
//! with a full-pass memory fill instead, F lands near 0.2414, outside it. The runs are
//! deterministic for a seed; the range is the benchmark's seed spread, given by the issue that
//! asked for this replay.

use bilevel::prelude::*;
use bilevel::problems::logreg_hpo::LogregHpoConfig;

const X0: [f64; 22] = [
    -1.7707607746124268,
    -1.5224919319152832,
    -0.45416051149368286,
    -1.0762337446212769,
    -1.3027141094207764,
    -0.010464513674378395,
    -1.4063529968261719,
    -0.9554267525672913,
    -4.889085292816162,
    -0.37768271565437317,
    -0.3546612560749054,
    -0.8994390964508057,
    -0.8326278328895569,
    -0.5733810067176819,
    -0.5221762657165527,
    -0.909736156463623,
    -3.9045121669769287,
    -1.4920432567596436,
    -5.877161502838135,
    -0.8083367347717285,
    -0.7811306715011597,
    -0.16390380263328552,
];
const Y0: [f64; 22] = [
    -1.6197479963302612,
    -0.5470138192176819,
    0.6602012515068054,
    -0.6657078266143799,
    0.9635109901428223,
    -0.07921414822340012,
    -0.5607022047042847,
    -0.18915680050849915,
    0.02506985329091549,
    0.3006388247013092,
    -0.35742586851119995,
    0.5493083596229553,
    0.13021226227283478,
    -1.2531752586364746,
    -0.0405576229095459,
    -0.6004925966262817,
    1.608742594718933,
    0.2936576306819916,
    -0.28277847170829773,
    -1.7533358335494995,
    -1.5060757398605347,
    0.26015907526016235,
];

#[test]
fn saba_with_the_benchmark_conventions_lands_on_its_f() {
    let problem = ProblemConfig::LogregHpo(LogregHpoConfig::default())
        .build()
        .expect("the shipped ijcnn1 loads");
    let config = SolverConfig::Saba(SabaConfig {
        inner_lr: Schedule::constant(0.1),
        outer_lr: Schedule::constant(0.1),
        batch_size: 64,
        sampling: SamplingMode::ContiguousOrderedFirst,
        memory: SabaMemoryLayout::PerBatch,
        init_memory: SabaInitMemory::Zero,
    });
    // Three seeds with the benchmark's conventions, and one with the full-pass fill (seed 1),
    // which must land outside the range: the option has to matter.
    let mut full_pass = config.clone();
    if let SolverConfig::Saba(c) = &mut full_pass {
        c.init_memory = SabaInitMemory::FullPass;
    }
    let runs = [(1u64, &config), (2, &config), (3, &config), (1, &full_pass)];
    let values: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|(seed, config)| {
                let (problem, config) = (problem.fresh(), config.clone());
                scope.spawn(move || {
                    let options = RunOptions {
                        max_iters: Some(200_000),
                        eval_every: 200_000,
                        ..Default::default()
                    };
                    let x0 = bilevel::core::linalg::from_slice(&X0);
                    let y0 = bilevel::core::linalg::from_slice(&Y0);
                    let summary = Runner::new(options)
                        .run_config(&config, &problem, x0, y0, seed)
                        .unwrap();
                    assert_eq!(summary.status, RunStatus::Done);
                    summary.final_metrics["value"]
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("F(x) after 200,000 iterations: {values:?}");
    for &v in &values[..3] {
        assert!((0.2435..=0.2455).contains(&v), "F = {v}");
    }
    assert!(
        !(0.2435..=0.2455).contains(&values[3]),
        "the full-pass fill lands elsewhere: F = {}",
        values[3]
    );
}
