//! One file per named algorithm, and the registry [`SolverConfig`].
//!
//! Adding an algorithm: copy `soba.rs` (single loop) or `aid_cg.rs` (double loop), then add
//! exactly one variant to [`SolverConfig`] and one arm to each of its three `match`es
//! (`kind`, `validate`, `visit`), and one row to `tests/it/all_algorithms_converge.rs`.

pub mod aid_cg;
pub mod aid_neumann;
pub mod amigo;
pub mod anil;
pub mod bome;
pub mod bsa;
pub mod double_loop;
pub mod esj;
pub mod esj_s;
pub mod exact_lbfgs;
pub mod f2sa;
pub mod fomaml;
pub mod fsla;
pub mod hoag;
pub mod imaml;
pub mod itd;
pub mod itd_truncated;
pub mod lancbio;
pub mod maml;
pub mod mrbo;
pub mod mstsa;
pub mod reptile;
pub mod saba;
pub mod soba;
pub mod srba;
pub mod stable;
pub mod stocbio;
pub mod subbio;
pub mod sustain;
pub mod ttsa;
pub mod ufo_blo;
pub mod vrbo;

use serde::{Deserialize, Serialize};

use crate::core::{Result, Solver};

pub use aid_cg::{AidCg, AidCgConfig, AidCgState};
pub use aid_neumann::{AidNeumann, AidNeumannConfig, AidNeumannState, NeumannForm};
pub use amigo::{Amigo, AmigoConfig, AmigoLinearSystem, AmigoState};
pub use anil::{Anil, AnilConfig, AnilState};
pub use bome::{Bome, BomeConfig, BomeState};
pub use bsa::{Bsa, BsaConfig, BsaState};
pub use double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
pub use esj::{Esj, EsjConfig, EsjState};
pub use esj_s::{EsjS, EsjSConfig, EsjSState};
pub use exact_lbfgs::{ExactLbfgs, ExactLbfgsConfig, ExactLbfgsState};
pub use f2sa::{F2sa, F2saConfig, F2saState};
pub use fomaml::{Fomaml, FomamlConfig, FomamlState};
pub use fsla::{Fsla, FslaConfig, FslaState, OuterDirection};
pub use hoag::{Hoag, HoagConfig, HoagState, ToleranceSchedule};
pub use imaml::{Imaml, ImamlConfig, ImamlState};
pub use itd::{Itd, ItdConfig, ItdState};
pub use itd_truncated::{ItdTruncated, ItdTruncatedConfig, ItdTruncatedState};
pub use lancbio::{Lancbio, LancbioConfig, LancbioState, LancbioVariant};
pub use maml::{Maml, MamlConfig, MamlState};
pub use mrbo::{Mrbo, MrboConfig, MrboMomentum, MrboState};
pub use mstsa::{Mstsa, MstsaConfig, MstsaState};
pub use reptile::{Reptile, ReptileConfig, ReptileState};
pub use saba::{Saba, SabaConfig, SabaInitMemory, SabaMemoryLayout, SabaState};
pub use soba::{Soba, SobaConfig, SobaState};
pub use srba::{Srba, SrbaConfig, SrbaState};
pub use stable::{Stable, StableConfig, StableInverse, StableState};
pub use stocbio::{Stocbio, StocbioConfig, StocbioState};
pub use subbio::{Subbio, SubbioConfig, SubbioState};
pub use sustain::{Sustain, SustainConfig, SustainState};
pub use ttsa::{Ttsa, TtsaConfig, TtsaState};
pub use ufo_blo::{ExactProb, QRule, UfoBlo, UfoBloConfig, UfoBloState};
pub use vrbo::{CheckpointBatch, Vrbo, VrboConfig, VrboState};

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
    /// L-BFGS on the exact hypergradient (`exact_lbfgs.rs`).
    ExactLbfgs(ExactLbfgsConfig),
    /// ITD (`itd.rs`).
    Itd(ItdConfig),
    /// Truncated ITD (`itd_truncated.rs`).
    ItdTruncated(ItdTruncatedConfig),
    /// SABA (`saba.rs`).
    Saba(SabaConfig),
    /// SRBA (`srba.rs`).
    Srba(SrbaConfig),
    /// TTSA (`ttsa.rs`).
    Ttsa(TtsaConfig),
    /// SUSTAIN (`sustain.rs`).
    Sustain(SustainConfig),
    /// MSTSA (`mstsa.rs`).
    Mstsa(MstsaConfig),
    /// STABLE (`stable.rs`).
    Stable(StableConfig),
    /// F2SA (`f2sa.rs`).
    F2sa(F2saConfig),
    /// BOME (`bome.rs`).
    Bome(BomeConfig),
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
    /// ESJ (`esj.rs`); alias `pzobo`.
    #[serde(alias = "pzobo")]
    Esj(EsjConfig),
    /// ESJ-S (`esj_s.rs`); alias `pzobo_s`.
    #[serde(alias = "pzobo_s")]
    EsjS(EsjSConfig),
    /// UFO-BLO / UFOM (`ufo_blo.rs`).
    UfoBlo(UfoBloConfig),
    /// MAML (`maml.rs`).
    Maml(MamlConfig),
    /// FO-MAML (`fomaml.rs`).
    Fomaml(FomamlConfig),
    /// iMAML (`imaml.rs`).
    Imaml(ImamlConfig),
    /// Reptile (`reptile.rs`).
    Reptile(ReptileConfig),
    /// ANIL (`anil.rs`).
    Anil(AnilConfig),
}

/// Alternative `kind` names accepted in configs, as (alias, canonical kind). An alias selects the
/// same configuration type and the same solver; traces carry the canonical name. Each alias is a
/// `#[serde(alias)]` on its variant; a test checks that the two lists agree.
pub const ALIASES: &[(&str, &str)] = &[("pzobo", "esj"), ("pzobo_s", "esj_s")];

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
            SolverConfig::ExactLbfgs(_) => "exact_lbfgs",
            SolverConfig::Itd(_) => "itd",
            SolverConfig::ItdTruncated(_) => "itd_truncated",
            SolverConfig::Saba(_) => "saba",
            SolverConfig::Srba(_) => "srba",
            SolverConfig::Ttsa(_) => "ttsa",
            SolverConfig::Sustain(_) => "sustain",
            SolverConfig::Mstsa(_) => "mstsa",
            SolverConfig::Stable(_) => "stable",
            SolverConfig::F2sa(_) => "f2sa",
            SolverConfig::Bome(_) => "bome",
            SolverConfig::Fsla(_) => "fsla",
            SolverConfig::Mrbo(_) => "mrbo",
            SolverConfig::Vrbo(_) => "vrbo",
            SolverConfig::Lancbio(_) => "lancbio",
            SolverConfig::Subbio(_) => "subbio",
            SolverConfig::Esj(_) => "esj",
            SolverConfig::EsjS(_) => "esj_s",
            SolverConfig::UfoBlo(_) => "ufo_blo",
            SolverConfig::Maml(_) => "maml",
            SolverConfig::Fomaml(_) => "fomaml",
            SolverConfig::Imaml(_) => "imaml",
            SolverConfig::Reptile(_) => "reptile",
            SolverConfig::Anil(_) => "anil",
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
            SolverConfig::ExactLbfgs(c) => c.validate(),
            SolverConfig::Itd(c) => c.validate(),
            SolverConfig::ItdTruncated(c) => c.validate(),
            SolverConfig::Saba(c) => c.validate(),
            SolverConfig::Srba(c) => c.validate(),
            SolverConfig::Ttsa(c) => c.validate(),
            SolverConfig::Sustain(c) => c.validate(),
            SolverConfig::Mstsa(c) => c.validate(),
            SolverConfig::Stable(c) => c.validate(),
            SolverConfig::F2sa(c) => c.validate(),
            SolverConfig::Bome(c) => c.validate(),
            SolverConfig::Fsla(c) => c.validate(),
            SolverConfig::Mrbo(c) => c.validate(),
            SolverConfig::Vrbo(c) => c.validate(),
            SolverConfig::Lancbio(c) => c.validate(),
            SolverConfig::Subbio(c) => c.validate(),
            SolverConfig::Esj(c) => c.validate(),
            SolverConfig::EsjS(c) => c.validate(),
            SolverConfig::UfoBlo(c) => c.validate(),
            SolverConfig::Maml(c) => c.validate(),
            SolverConfig::Fomaml(c) => c.validate(),
            SolverConfig::Imaml(c) => c.validate(),
            SolverConfig::Reptile(c) => c.validate(),
            SolverConfig::Anil(c) => c.validate(),
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
            SolverConfig::ExactLbfgs(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Itd(c) => visitor.visit(c.clone().build()?),
            SolverConfig::ItdTruncated(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Saba(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Srba(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Ttsa(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Sustain(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Mstsa(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Stable(c) => visitor.visit(c.clone().build()?),
            SolverConfig::F2sa(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Bome(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Fsla(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Mrbo(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Vrbo(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Lancbio(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Subbio(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Esj(c) => visitor.visit(c.clone().build()?),
            SolverConfig::EsjS(c) => visitor.visit(c.clone().build()?),
            SolverConfig::UfoBlo(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Maml(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Fomaml(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Imaml(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Reptile(c) => visitor.visit(c.clone().build()?),
            SolverConfig::Anil(c) => visitor.visit(c.clone().build()?),
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
            SolverConfig::ExactLbfgs(Default::default()),
            SolverConfig::Itd(Default::default()),
            SolverConfig::ItdTruncated(Default::default()),
            SolverConfig::Saba(Default::default()),
            SolverConfig::Srba(Default::default()),
            SolverConfig::Ttsa(Default::default()),
            SolverConfig::Sustain(Default::default()),
            SolverConfig::Mstsa(Default::default()),
            SolverConfig::Stable(Default::default()),
            SolverConfig::F2sa(Default::default()),
            SolverConfig::Bome(Default::default()),
            SolverConfig::Fsla(Default::default()),
            SolverConfig::Mrbo(Default::default()),
            SolverConfig::Vrbo(Default::default()),
            SolverConfig::Lancbio(Default::default()),
            SolverConfig::Subbio(Default::default()),
            SolverConfig::Esj(Default::default()),
            SolverConfig::EsjS(Default::default()),
            SolverConfig::UfoBlo(Default::default()),
            SolverConfig::Maml(Default::default()),
            SolverConfig::Fomaml(Default::default()),
            SolverConfig::Imaml(Default::default()),
            SolverConfig::Reptile(Default::default()),
            SolverConfig::Anil(Default::default()),
        ]
    }

    /// The paper of each algorithm (for `bilevel list` and the README table).
    pub fn paper(&self) -> &'static str {
        match self {
            SolverConfig::AidCg(_) => "Pedregosa, ICML 2016; Grazzi et al., ICML 2020",
            SolverConfig::Soba(_) => "Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022",
            SolverConfig::AidNeumann(_) => {
                "Grazzi, Franceschi, Pontil, Salzo, ICML 2020; Lorraine, Vicol, Duvenaud, AISTATS 2020"
            }
            SolverConfig::Stocbio(_) => "Ji, Yang, Liang, ICML 2021",
            SolverConfig::Amigo(_) => "Arbel, Mairal, ICLR 2022",
            SolverConfig::Bsa(_) => "Ghadimi, Wang, arXiv 2018",
            SolverConfig::Hoag(_) => "Pedregosa, ICML 2016",
            SolverConfig::ExactLbfgs(_) => {
                "Liu, Nocedal, Math. Programming 1989 (L-BFGS) on the exact implicit hypergradient"
            }
            SolverConfig::Itd(_) => "Franceschi, Donini, Frasconi, Pontil, ICML 2017",
            SolverConfig::ItdTruncated(_) => "Shaban, Cheng, Hatch, Boots, AISTATS 2019",
            SolverConfig::Saba(_) => "Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022",
            SolverConfig::Srba(_) => "Dagréou, Moreau, Vaiter, Ablin, AISTATS 2024",
            SolverConfig::Ttsa(_) => "Hong, Wai, Wang, Yang, SIAM J. Optim. 2023 (arXiv 2020)",
            SolverConfig::Sustain(_) => "Khanduri, Zeng, Hong, Wai, Wang, Yang, NeurIPS 2021",
            SolverConfig::Mstsa(_) => "Khanduri, Zeng, Hong, Wai, Wang, Yang, arXiv 2021",
            SolverConfig::Stable(_) => "Chen, Sun, Xiao, Yin, AISTATS 2022",
            SolverConfig::F2sa(_) => "Kwon, Kwon, Wright, Nowak, ICML 2023",
            SolverConfig::Bome(_) => "Liu, Ye, Wright, Stone, Liu, NeurIPS 2022",
            SolverConfig::Fsla(_) => "Li, Gu, Huang, AAAI 2022",
            SolverConfig::Mrbo(_) => "Yang, Ji, Liang, NeurIPS 2021",
            SolverConfig::Vrbo(_) => "Yang, Ji, Liang, NeurIPS 2021",
            SolverConfig::Lancbio(_) => "Yang, Gao, Yuan, ICLR 2025",
            SolverConfig::Subbio(_) => "Yang, Gao, Yuan, ICLR 2025",
            SolverConfig::Esj(_) | SolverConfig::EsjS(_) => "Sow, Ji, Liang, NeurIPS 2022",
            SolverConfig::UfoBlo(_) => {
                "Likhosherstov, Song, Choromanski, Davis, Weller, ICML 2021 (arXiv:2006.03631)"
            }
            SolverConfig::Maml(_) => "Finn, Abbeel, Levine, ICML 2017",
            SolverConfig::Fomaml(_) => "Finn, Abbeel, Levine, ICML 2017 (first-order variant)",
            SolverConfig::Imaml(_) => "Rajeswaran, Finn, Kakade, Levine, NeurIPS 2019",
            SolverConfig::Reptile(_) => "Nichol, Achiam, Schulman, arXiv:1803.02999, 2018",
            SolverConfig::Anil(_) => "Raghu, Raghu, Bengio, Vinyals, ICLR 2020",
        }
    }

    /// One line on what the algorithm does (for `bilevel.solvers()` in Python).
    pub fn description(&self) -> &'static str {
        match self {
            SolverConfig::AidCg(_) => {
                "approximate implicit differentiation: inner gradient steps, then conjugate gradient on the linear system"
            }
            SolverConfig::Soba(_) => {
                "single-loop stochastic: one SGD step each on y, v and x per iteration"
            }
            SolverConfig::AidNeumann(_) => {
                "approximate implicit differentiation with a truncated Neumann series for the inverse Hessian"
            }
            SolverConfig::Stocbio(_) => {
                "stochastic double loop: inner SGD, Neumann-series hypergradient on fresh minibatches"
            }
            SolverConfig::Amigo(_) => {
                "stochastic double loop with warm-started SGD on the linear system"
            }
            SolverConfig::Bsa(_) => {
                "bilevel stochastic approximation: inner SGD, Neumann hypergradient with a random truncation"
            }
            SolverConfig::Hoag(_) => {
                "hyperparameter optimization with approximate gradient: tolerances that decrease over the outer loop"
            }
            SolverConfig::ExactLbfgs(_) => {
                "L-BFGS on the exact implicit hypergradient (inner and linear systems solved to tolerance)"
            }
            SolverConfig::Itd(_) => {
                "iterative differentiation: reverse-mode through T inner gradient steps"
            }
            SolverConfig::ItdTruncated(_) => {
                "truncated back-propagation through the last K of T inner steps"
            }
            SolverConfig::Saba(_) => {
                "SOBA with SAGA variance reduction (a memory of per-sample oracles)"
            }
            SolverConfig::Srba(_) => {
                "stochastic recursive bilevel algorithm: SARAH on the SOBA directions, with periodic full passes"
            }
            SolverConfig::Ttsa(_) => {
                "two-timescale stochastic approximation: y on a faster step size than x"
            }
            SolverConfig::Sustain(_) => "single-loop with STORM momentum on both levels",
            SolverConfig::Mstsa(_) => "momentum-assisted single-timescale stochastic approximation",
            SolverConfig::Stable(_) => {
                "single-timescale stochastic bilevel with explicit Hessian and cross-derivative estimates"
            }
            SolverConfig::F2sa(_) => {
                "fully first-order: penalty reformulation with two inner sequences, no second derivatives"
            }
            SolverConfig::Bome(_) => {
                "first-order value-function method with a dynamic barrier (BOME)"
            }
            SolverConfig::Fsla(_) => {
                "fully single loop: the linear system's solution as a momentum variable, STORM on x"
            }
            SolverConfig::Mrbo(_) => {
                "momentum-based recursive bilevel (STORM on every estimate), single loop"
            }
            SolverConfig::Vrbo(_) => {
                "variance-reduced bilevel (SARAH/SPIDER with periodic large batches), double loop"
            }
            SolverConfig::Lancbio(_) => {
                "Lanczos-based subspace solves of the linear system, warm-started across outer steps"
            }
            SolverConfig::Subbio(_) => {
                "subspace-based bilevel: the linear system solved on a small subspace of recent directions"
            }
            SolverConfig::Esj(_) => {
                "evolution-strategy Jacobians: zeroth-order estimates of the response Jacobian"
            }
            SolverConfig::EsjS(_) => "ESJ with stochastic minibatches (ESJ-S)",
            SolverConfig::UfoBlo(_) => {
                "unbiased first-order meta-learning: FO-MAML plus a randomly applied second-order correction"
            }
            SolverConfig::Maml(_) => {
                "model-agnostic meta-learning: back-propagation through the inner adaptation steps"
            }
            SolverConfig::Fomaml(_) => {
                "first-order MAML: the outer gradient at the adapted parameters, no second derivatives"
            }
            SolverConfig::Imaml(_) => {
                "implicit MAML: proximal inner problems, meta-gradient by CG on the implicit function theorem"
            }
            SolverConfig::Reptile(_) => {
                "Reptile: move the initialization towards the adapted parameters"
            }
            SolverConfig::Anil(_) => "almost no inner loop: MAML that adapts the head only",
        }
    }

    /// The aliases of this configuration's kind (`["pzobo"]` for ESJ), from [`ALIASES`].
    pub fn aliases(&self) -> Vec<&'static str> {
        let kind = self.kind();
        ALIASES
            .iter()
            .filter(|(_, k)| *k == kind)
            .map(|(a, _)| *a)
            .collect()
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
