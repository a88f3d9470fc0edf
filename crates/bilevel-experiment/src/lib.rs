//! # bilevel-experiment
//!
//! The experiment engine behind `bilevel run` (and the Python package): experiment files,
//! grids of runs with stable ids, their execution (all runs or a subset, in parallel, with
//! traces and checkpoints), resuming, and the summary, report and figures of an output folder.
//!
//! Modules, in the order they depend on each other (no module depends on a later one):
//! - [`error`]: [`ConfigError`], a mistake in the user's input;
//! - [`layout`]: the paths of an output folder;
//! - [`outdir`]: the folder's lock, its marker, valid names;
//! - [`report`]: reading traces back, parameter selection, `report.md`;
//! - [`experiment`]: parsing and validating an experiment file, expanding its grid into runs;
//! - [`plot`]: the figures (reads traces through [`report`]);
//! - [`summary`]: `summary.csv` and the run table;
//! - [`execute`]: running a grid of runs, one trace each, and finishing the folder;
//! - [`shard`]: `--shard K/N`, the partition of a grid, and [`shard::merge`];
//! - [`session`]: a whole `bilevel run` ([`session::run_experiment`]), or one shard of it;
//! - [`slurm`]: `bilevel slurm`, a grid as a Slurm job array.
//!
//! ```no_run
//! use bilevel_experiment::session::{RunRequest, resolve, run_experiment};
//!
//! let request = RunRequest {
//!     experiment: Some("experiments/quickstart.toml".into()),
//!     out: Some("results/quickstart".into()),
//!     overwrite: true,
//!     plots: true,
//!     ..Default::default()
//! };
//! let resolved = resolve(&request)?;
//! let report = run_experiment(&request, resolved)?;
//! println!("{} runs, {} not done", report.outcomes.len(), report.not_done().len());
//! # Ok::<(), anyhow::Error>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod error;
pub mod execute;
pub mod experiment;
pub mod layout;
pub mod outdir;
pub mod plot;
pub mod report;
pub mod session;
pub mod shard;
pub mod slurm;
pub mod summary;

pub use error::ConfigError;

/// The build's git commit (from build.rs), or "unknown": recorded in trace headers, reports
/// and benchmark results.
pub const GIT_COMMIT: &str = match option_env!("BILEVEL_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

#[cfg(test)]
mod tests {
    /// The modules in dependency order, as the crate documentation lists them.
    const ORDER: [&str; 11] = [
        "error",
        "layout",
        "outdir",
        "report",
        "experiment",
        "plot",
        "summary",
        "execute",
        "shard",
        "session",
        "slurm",
    ];

    /// The crate's modules that `text` refers to (`crate::name`, or `name` inside `crate::{…}`).
    fn references(text: &str) -> Vec<&'static str> {
        let mut found = Vec::new();
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for &module in &ORDER {
                let direct = line.contains(&format!("crate::{module}"));
                let grouped = line.contains("crate::{")
                    && line
                        .split(['{', '}', ',', ' '])
                        .any(|word| word.trim() == module);
                if (direct || grouped) && !found.contains(&module) {
                    found.push(module);
                }
            }
        }
        found
    }

    /// No module uses a module listed after it: the engine has no import cycle (report and plot
    /// read traces; execution calls them, never the other way round).
    #[test]
    fn modules_depend_only_on_earlier_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut problems = Vec::new();
        for (position, module) in ORDER.iter().enumerate() {
            let text = std::fs::read_to_string(dir.join(format!("{module}.rs"))).unwrap();
            for used in references(&text) {
                let at = ORDER.iter().position(|m| *m == used).unwrap();
                if at > position {
                    problems.push(format!("{module} uses {used}, which comes after it"));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // The check sees a grouped import.
        assert_eq!(
            references("use crate::{plot, summary};"),
            ["plot", "summary"]
        );
    }
}
