//! Bit-exact resume and determinism for the non-default variants of FSLA, MRBO, VRBO, LancBiO
//! and SubBiO (the convergence table covers one setting each): minibatch LancBiO and SubBiO
//! (optional samplers in the state), VRBO's official-code anchor and sized checkpoint, FSLA's EMA
//! direction, MRBO's constant weights.

use crate::common;
use bilevel::prelude::*;
use bilevel::testing::{assert_deterministic, assert_resumes_bit_exact};

fn variants() -> Vec<SolverConfig> {
    vec![
        SolverConfig::Lancbio(LancbioConfig {
            batch_size: Some(32),
            restart_period: 2,
            restart_growth_every: 3,
            inner_lr: Schedule::constant(0.3),
            outer_lr: Schedule::constant(0.1),
            ..Default::default()
        }),
        SolverConfig::Subbio(SubbioConfig {
            batch_size: Some(32),
            sampling: SamplingMode::Contiguous,
            ..Default::default()
        }),
        SolverConfig::Vrbo(VrboConfig {
            large_batch: CheckpointBatch::Size(100),
            small_batch: 16,
            inner_steps: 2,
            correct_last_inner_step: false,
            ..Default::default()
        }),
        SolverConfig::Fsla(FslaConfig {
            outer_direction: OuterDirection::Ema,
            sampling: SamplingMode::WithReplacement,
            batch_size: 16,
            ..Default::default()
        }),
        SolverConfig::Mrbo(MrboConfig {
            momentum: MrboMomentum::Constant {
                outer: 0.9,
                inner: 0.9,
            },
            step: Schedule::constant(1.0),
            outer_scale: 0.1,
            inner_scale: 0.1,
            batch_size: 16,
            ..Default::default()
        }),
    ]
}

#[test]
fn variants_resume_bit_exactly_and_are_deterministic() {
    let problem = common::quadratic_10x20();
    for config in variants() {
        assert_resumes_bit_exact(&config, &problem, 7, 3);
        assert_deterministic(&config, &problem, 9, 11);
    }
}

#[test]
fn minibatch_variants_differ_between_seeds() {
    let problem = common::quadratic_10x20();
    for config in variants() {
        let (a, _) = bilevel::testing::iterate_after(&config, &problem, 5, 1);
        let (b, _) = bilevel::testing::iterate_after(&config, &problem, 5, 2);
        assert_ne!(a.as_slice(), b.as_slice(), "{}", config.kind());
    }
}
