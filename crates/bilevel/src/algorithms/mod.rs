//! One file per named algorithm, and the registry [`SolverConfig`].
//!
//! Adding an algorithm: copy `soba.rs` (single loop) or `aid_cg.rs` (double loop), then add
//! exactly one variant to [`SolverConfig`] and one arm to each of its three `match`es
//! (`kind`, `validate`, `visit`), and one row to `tests/all_algorithms_converge.rs`.

pub mod aid_cg;
pub mod double_loop;
pub mod soba;
pub mod aid_neumann;
pub mod stocbio;
pub mod amigo;
pub mod bsa;
pub mod hoag;
pub mod itd;
pub mod itd_truncated;

use serde::{Deserialize, Serialize};

use crate::core::{Result, Solver};

pub use aid_cg::{AidCg, AidCgConfig, AidCgState};
pub use double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
pub use soba::{Soba, SobaConfig, SobaState};
pub use aid_neumann::{AidNeumann, AidNeumannConfig, AidNeumannState};
pub use stocbio::{Stocbio, StocbioConfig, StocbioState};
pub use amigo::{Amigo, AmigoConfig, AmigoState};
pub use bsa::{Bsa, BsaConfig, BsaState};
pub use hoag::{Hoag, HoagConfig, HoagState};
pub use itd::{Itd, ItdConfig, ItdState};
pub use itd_truncated::{ItdTruncated, ItdTruncatedConfig, ItdTruncatedState};

/// Every algorithm's configuration, selected by `kind` (the algorithm's file name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SolverConfig {
    /// AID-CG (`aid_cg.rs`).
    AidCg(AidCgConfig),
    /// SOBA (`soba.rs`).
    Soba(SobaConfig),
    /// AID-Neumann (`aid_neumann.rs`).
    AidNeumann(AidNeumannConfig),
    /// stocBiO (`stocbio.rs`).
    Stocbio(StocbioConfig),
    /// AmIGO (`amigo.rs`).
    Amigo(AmigoConfig),
    /// BSA (`bsa.rs`).
    Bsa(BsaConfig),
    /// HOAG (`hoag.rs`).
    Hoag(HoagConfig),
    /// ITD (`itd.rs`).
    Itd(ItdConfig),
    /// Truncated ITD (`itd_truncated.rs`).
    ItdTruncated(ItdTruncatedConfig),
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
            SolverConfig::AidNeumann(_) => "aid_neumann",
            SolverConfig::Stocbio(_) => "stocbio",
            SolverConfig::Amigo(_) => "amigo",
            SolverConfig::Bsa(_) => "bsa",
            SolverConfig::Hoag(_) => "hoag",
            SolverConfig::Itd(_) => "itd",
            SolverConfig::ItdTruncated(_) => "itd_truncated",
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        match self {
            SolverConfig::AidCg(c) => c.validate(),
            SolverConfig::Soba(c) => c.validate(),
            SolverConfig::AidNeumann(c) => c.validate(),
            SolverConfig::Stocbio(c) => c.validate(),
            SolverConfig::Amigo(c) => c.validate(),
            SolverConfig::Bsa(c) => c.validate(),
            SolverConfig::Hoag(c) => c.validate(),
            SolverConfig::Itd(c) => c.validate(),
            SolverConfig::ItdTruncated(c) => c.validate(),
        }
    }

    /// Builds the solver and hands it to `visitor`.
    pub fn visit<V: SolverVisitor>(&self, visitor: V) -> Result<V::Output> {
        Ok(match self {
            SolverConfig::AidCg(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Soba(c) => visitor.visit(c.clone().build()?),
            SolverConfig::AidNeumann(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Stocbio(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Amigo(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Bsa(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Hoag(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Itd(c) => visitor.visit(c.clone().build()?),
            SolverConfig::ItdTruncated(c) => visitor.visit(c.clone().build()?),
        })
    }

    /// Every registered algorithm with its default configuration.
    pub fn all_defaults() -> Vec<SolverConfig> {
        vec![
            SolverConfig::AidCg(Default::default()),
            SolverConfig::Soba(Default::default()),
            SolverConfig::AidNeumann(Default::default()),
            SolverConfig::Stocbio(Default::default()),
            SolverConfig::Amigo(Default::default()),
            SolverConfig::Bsa(Default::default()),
            SolverConfig::Hoag(Default::default()),
            SolverConfig::Itd(Default::default()),
            SolverConfig::ItdTruncated(Default::default()),
        ]
    }

    /// The paper of each algorithm (for `bilevel list` and the README table).
    pub fn paper(&self) -> &'static str {
        match self {
            SolverConfig::AidCg(_) => "Pedregosa, ICML 2016; Grazzi et al., ICML 2020",
            SolverConfig::Soba(_) => "Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022",
            SolverConfig::AidNeumann(_) => "Grazzi, Franceschi, Pontil, Salzo, ICML 2020; Lorraine, Vicol, Duvenaud, AISTATS 2020",
            SolverConfig::Stocbio(_) => "Ji, Yang, Liang, ICML 2021",
            SolverConfig::Amigo(_) => "Arbel, Mairal, ICLR 2022",
            SolverConfig::Bsa(_) => "Ghadimi, Wang, arXiv 2018",
            SolverConfig::Hoag(_) => "Pedregosa, ICML 2016",
            SolverConfig::Itd(_) => "Franceschi, Donini, Frasconi, Pontil, ICML 2017",
            SolverConfig::ItdTruncated(_) => "Shaban, Cheng, Hatch, Boots, AISTATS 2019",
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
