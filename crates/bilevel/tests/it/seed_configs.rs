//! Configuration round trips of FSLA, MRBO, VRBO, LancBiO and SubBiO: defaults survive JSON,
//! partial tables fill in defaults, nested options parse, typos are rejected by name.

use bilevel::prelude::*;

#[test]
fn defaults_round_trip_through_json() {
    for config in SolverConfig::all_defaults() {
        let json = serde_json::to_string(&config).unwrap();
        let back: SolverConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config, "{json}");
        back.validate().unwrap();
    }
}

#[test]
fn partial_tables_and_nested_options_parse() {
    let parse = |s: &str| serde_json::from_str::<SolverConfig>(s).unwrap();
    let SolverConfig::Fsla(c) = parse(r#"{"kind": "fsla", "outer_direction": "ema"}"#) else {
        panic!("not fsla")
    };
    assert_eq!(c.outer_direction, OuterDirection::Ema);
    assert_eq!(c.batch_size, FslaConfig::default().batch_size);
    let SolverConfig::Mrbo(c) = parse(
        r#"{"kind": "mrbo", "step": 1.0,
            "momentum": {"kind": "constant", "outer": 0.9, "inner": 0.9}}"#,
    ) else {
        panic!("not mrbo")
    };
    assert_eq!(
        c.momentum,
        MrboMomentum::Constant {
            outer: 0.9,
            inner: 0.9
        }
    );
    assert_eq!(c.step, Schedule::constant(1.0));
    let SolverConfig::Vrbo(c) = parse(r#"{"kind": "vrbo", "large_batch": "full"}"#) else {
        panic!("not vrbo")
    };
    assert_eq!(c.large_batch, CheckpointBatch::Full);
    let SolverConfig::Lancbio(c) = parse(r#"{"kind": "lancbio", "batch_size": 32}"#) else {
        panic!("not lancbio")
    };
    assert_eq!(c.batch_size, Some(32));
    let SolverConfig::Subbio(c) = parse(r#"{"kind": "subbio", "v_lr": 0.1}"#) else {
        panic!("not subbio")
    };
    assert_eq!(c.v_lr, 0.1);
}

#[test]
fn typos_and_bad_values_are_rejected_by_name() {
    let err = |s: &str| {
        serde_json::from_str::<SolverConfig>(s)
            .unwrap_err()
            .to_string()
    };
    assert!(err(r#"{"kind": "fsla", "outer_direction": "stormy"}"#).contains("stormy"));
    assert!(err(r#"{"kind": "lancbio", "restart_periods": 3}"#).contains("restart_periods"));
    assert!(err(r#"{"kind": "mrbo", "momentum": {"kind": "theory", "c1": 1}}"#).contains("c1"));
    let invalid = |c: SolverConfig| c.validate().unwrap_err().to_string();
    assert!(
        invalid(SolverConfig::Fsla(FslaConfig {
            momentum: Schedule::constant(1.5),
            ..Default::default()
        }))
        .contains("momentum")
    );
    assert!(
        invalid(SolverConfig::Vrbo(VrboConfig {
            period: 0,
            ..Default::default()
        }))
        .contains("period")
    );
    assert!(
        invalid(SolverConfig::Subbio(SubbioConfig {
            v_lr: 0.0,
            ..Default::default()
        }))
        .contains("v_lr")
    );
    assert!(
        invalid(SolverConfig::Lancbio(LancbioConfig {
            batch_size: Some(0),
            ..Default::default()
        }))
        .contains("batch_size")
    );
}
