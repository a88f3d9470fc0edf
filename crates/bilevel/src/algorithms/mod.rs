//! One file per named algorithm, and the registry [`SolverConfig`].
//!
//! Adding an algorithm: copy `soba.rs` (single loop) or `aid_cg.rs` (double loop), then add
//! exactly one variant to [`SolverConfig`] and one arm to each of its three `match`es
//! (`kind`, `validate`, `visit`), and one row to `tests/all_algorithms_converge.rs`.

pub mod aid_cg;
pub mod double_loop;
pub mod fsla;
pub mod lancbio;
pub mod mrbo;
pub mod soba;
pub mod subbio;
pub mod vrbo;

use serde::{Deserialize, Serialize};

use crate::core::{Result, Solver};

pub use aid_cg::{AidCg, AidCgConfig, AidCgState};
pub use double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
pub use fsla::{Fsla, FslaConfig, FslaState, OuterDirection};
pub use lancbio::{Lancbio, LancbioConfig, LancbioState};
pub use mrbo::{Mrbo, MrboConfig, MrboMomentum, MrboState};
pub use soba::{Soba, SobaConfig, SobaState};
pub use subbio::{Subbio, SubbioConfig, SubbioState};
pub use vrbo::{CheckpointBatch, Vrbo, VrboConfig, VrboState};

/// Every algorithm's configuration, selected by `kind` (the algorithm's file name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SolverConfig {
    /// AID-CG (`aid_cg.rs`).
    AidCg(AidCgConfig),
    /// SOBA (`soba.rs`).
    Soba(SobaConfig),
    /// FSLA (`fsla.rs`).
    Fsla(FslaConfig),
    /// MRBO (`mrbo.rs`).
    Mrbo(MrboConfig),
    /// VRBO (`vrbo.rs`).
    Vrbo(VrboConfig),
    /// LancBiO (`lancbio.rs`).
    Lancbio(LancbioConfig),
    /// SubBiO (`subbio.rs`).
    Subbio(SubbioConfig),
}

/// An operation generic over the concrete solver type: the registry's one dispatch point.
/// `Solver` has an associated `State`, so it is not object-safe; generic code (run, resume,
/// tests) implements this trait instead of matching on [`SolverConfig`].
pub trait SolverVisitor {
    /// What the operation returns.
    type Output;
    /// Runs the operation on a built solver.
    fn visit<S: Solver>(self, solver: S) -> Self::Output;
}

impl SolverConfig {
    /// The `kind` name (equals the solver's `name()`).
    pub fn kind(&self) -> &'static str {
        match self {
            SolverConfig::AidCg(_) => "aid_cg",
            SolverConfig::Soba(_) => "soba",
            SolverConfig::Fsla(_) => "fsla",
            SolverConfig::Mrbo(_) => "mrbo",
            SolverConfig::Vrbo(_) => "vrbo",
            SolverConfig::Lancbio(_) => "lancbio",
            SolverConfig::Subbio(_) => "subbio",
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        match self {
            SolverConfig::AidCg(c) => c.validate(),
            SolverConfig::Soba(c) => c.validate(),
            SolverConfig::Fsla(c) => c.validate(),
            SolverConfig::Mrbo(c) => c.validate(),
            SolverConfig::Vrbo(c) => c.validate(),
            SolverConfig::Lancbio(c) => c.validate(),
            SolverConfig::Subbio(c) => c.validate(),
        }
    }

    /// Builds the solver and hands it to `visitor`.
    pub fn visit<V: SolverVisitor>(&self, visitor: V) -> Result<V::Output> {
        Ok(match self {
            SolverConfig::AidCg(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Soba(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Fsla(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Mrbo(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Vrbo(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Lancbio(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Subbio(c) => visitor.visit(c.clone().build()?),
        })
    }

    /// Every registered algorithm with its default configuration.
    pub fn all_defaults() -> Vec<SolverConfig> {
        vec![
            SolverConfig::AidCg(Default::default()),
            SolverConfig::Soba(Default::default()),
            SolverConfig::Fsla(Default::default()),
            SolverConfig::Mrbo(Default::default()),
            SolverConfig::Vrbo(Default::default()),
            SolverConfig::Lancbio(Default::default()),
            SolverConfig::Subbio(Default::default()),
        ]
    }

    /// The paper of each algorithm (for `bilevel list` and the README table).
    pub fn paper(&self) -> &'static str {
        match self {
            SolverConfig::AidCg(_) => "Pedregosa, ICML 2016; Grazzi et al., ICML 2020",
            SolverConfig::Soba(_) => "Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022",
            SolverConfig::Fsla(_) => "Li, Gu, Huang, AAAI 2022",
            SolverConfig::Mrbo(_) => "Yang, Ji, Liang, NeurIPS 2021",
            SolverConfig::Vrbo(_) => "Yang, Ji, Liang, NeurIPS 2021",
            SolverConfig::Lancbio(_) => "Yang, Gao, Yuan, ICLR 2025",
            SolverConfig::Subbio(_) => "Yang, Gao, Yuan, ICLR 2025",
        }
    }

    /// The configuration as JSON without the `kind` tag (the parameter table).
    pub fn parameters(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).expect("invariant: configs serialize");
        if let Some(map) = json.as_object_mut() {
            map.remove("kind");
        }
        json
    }
}
