//! Sharded grids: `bilevel run GRID --shard K/N` runs the K-th of N parts of a grid into the same
//! output folder as a whole-grid run, and [`merge`] gathers what the shards wrote into one
//! `summary.csv`, report and figures, naming the runs that are missing or failed.
//!
//! The partition is by run index, round robin: run i (0-based, in the experiment's stable run
//! order) belongs to shard `i mod N + 1`, so the shards get similar mixes of solvers and seeds.
//! Shards write only their own runs' traces and checkpoints (atomically, one file per run id),
//! hold a shared lock on the folder and an exclusive lock on their own shard, and skip runs that
//! are already complete: a shard that was killed can be started again, and it finishes what is
//! missing. The folder records N (`sharding.json`); a shard with another N is refused, since
//! two partitions would run the same run twice at once.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bilevel::run::RunStatus;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::execute::{self, experiment_copy};
use crate::experiment::{BudgetOverride, Experiment};
use crate::layout::{BUDGET_OVERRIDE, EXPERIMENT_COPY, Layout};
use crate::outdir::{self, FolderLock, NamedLock};
use crate::summary;

/// The file that records how many shards a folder's grid is split into.
pub const SHARDING_FILE: &str = "sharding.json";

/// The Slurm job script that `bilevel slurm` writes, relative to the output folder.
pub const SLURM_SCRIPT: &str = "slurm/array.sh";

/// Part K of N of a grid (1 ≤ K ≤ N).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// K, from 1.
    pub index: usize,
    /// N.
    pub count: usize,
}

impl Shard {
    /// Parses `K/N`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = || {
            ConfigError(format!(
                "--shard {text:?}: expected K/N with 1 <= K <= N (e.g. 2/8)"
            ))
        };
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        Self::new(index, count).map_err(|_| bad())
    }

    /// Shard `index` of `count`.
    pub fn new(index: usize, count: usize) -> Result<Self, ConfigError> {
        if count == 0 || index == 0 || index > count {
            return Err(ConfigError(format!(
                "shard {index}/{count}: expected 1 <= K <= N"
            )));
        }
        Ok(Self { index, count })
    }

    /// Whether run `run_index` (0-based, in the experiment's order) is in this shard.
    pub fn contains(&self, run_index: usize) -> bool {
        run_index % self.count == self.index - 1
    }

    /// The indices of this shard's runs among `total`.
    pub fn runs(&self, total: usize) -> Vec<usize> {
        (0..total).filter(|&i| self.contains(i)).collect()
    }

    /// The shard (1-based) that run `run_index` belongs to among `count`.
    pub fn of_run(run_index: usize, count: usize) -> usize {
        run_index % count + 1
    }

    /// The name of its lock in `DIR/.locks/`.
    pub fn lock_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sharding {
    count: usize,
}

/// The shard count recorded in `dir`, if it was sharded.
pub fn recorded_count(dir: &Path) -> Result<Option<usize>> {
    let path = dir.join(SHARDING_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let sharding: Sharding = serde_json::from_str(&text)
        .map_err(|e| ConfigError(format!("{}: not a sharding record: {e}", path.display())))?;
    if sharding.count == 0 {
        return Err(ConfigError(format!("{}: count must be >= 1", path.display())).into());
    }
    Ok(Some(sharding.count))
}

/// Records that `dir`'s grid is split into `count` shards; refuses another count.
pub fn record_count(dir: &Path, count: usize) -> Result<()> {
    match recorded_count(dir)? {
        Some(n) if n == count => Ok(()),
        Some(n) => Err(ConfigError(format!(
            "{} is split into {n} shards (its {SHARDING_FILE}); run its shards as K/{n}, or \
             finish them, merge, and continue with `bilevel run --resume {}`",
            dir.display(),
            dir.display()
        ))
        .into()),
        None => {
            let text = serde_json::to_string(&Sharding { count })? + "\n";
            bilevel::run::write_atomic(&dir.join(SHARDING_FILE), text.as_bytes())?;
            Ok(())
        }
    }
}

/// Makes `dir` the output folder of `experiment` for sharded runs, or checks that it already
/// is: the marker, the experiment file's copy (byte for byte the same as `text`) and the
/// command-line budget. Several shards may start at once: the first one writes, the others
/// find the same files (an exclusive `init` lock orders them).
pub fn init_folder(dir: &Path, experiment: &Experiment, text: &[u8], count: usize) -> Result<()> {
    let _init = loop {
        match NamedLock::acquire(dir, "init", "the set-up of the folder") {
            Ok(lock) => break lock,
            // Another shard is setting the folder up: it takes milliseconds.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    let copy_path = dir.join(EXPERIMENT_COPY);
    let budget = experiment.budget_override.filter(|b| !b.is_empty());
    if outdir::has_marker(dir) && copy_path.exists() {
        let copy = std::fs::read(&copy_path)
            .with_context(|| format!("reading {}", copy_path.display()))?;
        if copy != text {
            return Err(ConfigError(format!(
                "{} holds the results of another experiment file ({} differs from {}); use \
                 another --out",
                dir.display(),
                copy_path.display(),
                experiment.path.display()
            ))
            .into());
        }
        let recorded = recorded_budget(dir)?;
        if recorded != budget {
            return Err(ConfigError(format!(
                "{} was run with the command-line budget {} and this shard has {}; give every \
                 shard the same --max-iters / --max-seconds",
                dir.display(),
                describe_budget(recorded.as_ref()),
                describe_budget(budget.as_ref())
            ))
            .into());
        }
    } else {
        if crate::execute::has_results(dir) {
            return Err(ConfigError(format!(
                "{} holds results that bilevel did not write (no {} marker and experiment \
                 copy); choose another --out",
                dir.display(),
                outdir::MARKER_FILE
            ))
            .into());
        }
        outdir::write_marker(dir)?;
        execute::write_budget_override(dir, budget.as_ref())?;
        bilevel::run::write_atomic(&copy_path, text)?;
    }
    record_count(dir, count)
}

fn recorded_budget(dir: &Path) -> Result<Option<BudgetOverride>> {
    let path = dir.join(BUDGET_OVERRIDE);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let budget: BudgetOverride =
        serde_json::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    Ok(Some(budget).filter(|b| !b.is_empty()))
}

fn describe_budget(budget: Option<&BudgetOverride>) -> String {
    match budget {
        None => "none (the file's)".into(),
        Some(b) => {
            let mut parts = Vec::new();
            if let Some(n) = b.max_iters {
                parts.push(format!("--max-iters {n}"));
            }
            if let Some(s) = b.max_seconds {
                parts.push(format!("--max-seconds {s}"));
            }
            parts.join(" ")
        }
    }
}

/// Where one run of a folder stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Its trace is complete and the run did not fail (done, diverged, interrupted …).
    Complete,
    /// Its trace is complete and says `failed`.
    Failed,
    /// No complete trace (never started, killed, or still running).
    Missing,
}

/// What [`merge`] found and wrote.
pub struct MergeReport {
    /// The folder.
    pub out: PathBuf,
    /// The experiment (from the folder's copy).
    pub experiment: Experiment,
    /// Shards the grid was split into (1 when it was not sharded).
    pub count: usize,
    /// Each run's id, shard and state, in the experiment's order.
    pub runs: Vec<(String, usize, RunState)>,
    /// Shards that hold their lock now (still running).
    pub running: Vec<usize>,
}

impl MergeReport {
    /// The runs in `state`: (id, shard).
    pub fn in_state(&self, state: &RunState) -> Vec<(&str, usize)> {
        self.runs
            .iter()
            .filter(|(_, _, s)| s == state)
            .map(|(id, k, _)| (id.as_str(), *k))
            .collect()
    }

    /// The shards that own a missing or failed run and are not running now: those to run again.
    pub fn shards_to_rerun(&self) -> Vec<usize> {
        let set: BTreeSet<usize> = self
            .runs
            .iter()
            .filter(|(_, k, s)| *s != RunState::Complete && !self.running.contains(k))
            .map(|(_, k, _)| *k)
            .collect();
        set.into_iter().collect()
    }

    /// Whether every run is complete.
    pub fn is_complete(&self) -> bool {
        self.runs.iter().all(|(_, _, s)| *s == RunState::Complete)
    }

    /// The command that runs only the shards with missing or failed runs again: an `sbatch`
    /// of the folder's job script for a grid that `bilevel slurm` submitted, else one
    /// `bilevel run --shard` per shard. None when nothing is left to run.
    pub fn resubmit_command(&self, bilevel: &str) -> Option<String> {
        let shards = self.shards_to_rerun();
        if shards.is_empty() {
            return None;
        }
        let script = self.out.join(SLURM_SCRIPT);
        let list = shards
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        if script.exists() {
            return Some(format!(
                "sbatch --array={list} {}",
                shell_quote(&script.display().to_string())
            ));
        }
        let copy = shell_quote(&self.out.join(EXPERIMENT_COPY).display().to_string());
        let out = shell_quote(&self.out.display().to_string());
        let budget = recorded_budget(&self.out).ok().flatten();
        let mut flags = String::new();
        if let Some(b) = budget {
            if let Some(n) = b.max_iters {
                flags.push_str(&format!(" --max-iters {n}"));
            }
            if let Some(s) = b.max_seconds {
                flags.push_str(&format!(" --max-seconds {s}"));
            }
        }
        if self.count == 1 {
            return Some(format!("{bilevel} run --resume {out}"));
        }
        Some(
            shards
                .iter()
                .map(|k| {
                    format!(
                        "{bilevel} run {copy} --out {out} --shard {k}/{}{flags}",
                        self.count
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

/// Quotes `text` for a POSIX shell when it needs it.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Gathers the traces that the shards of `dir` wrote into `summary.csv`, `report.md` and (with
/// `plots`) the figures, and says which runs are complete, failed or missing. Runs beside
/// running shards (a shared lock on the folder; one merge at a time): it reads only complete
/// traces, which shards write atomically.
pub fn merge(dir: &Path, plots: bool) -> Result<MergeReport> {
    if !dir.is_dir() {
        return Err(ConfigError(format!(
            "{}: no such folder; is this an output directory of `bilevel run`?",
            dir.display()
        ))
        .into());
    }
    let _folder = FolderLock::acquire_shared(dir)?;
    let _merge = NamedLock::acquire(dir, "merge", "a merge")?;
    let experiment = experiment_copy(dir)?;
    let count = recorded_count(dir)?.unwrap_or(1);
    let layout = Layout::new(dir);
    let mut runs = Vec::with_capacity(experiment.runs.len());
    for (i, spec) in experiment.runs.iter().enumerate() {
        let trace = layout.trace(&spec.id);
        let state = if trace.exists() {
            match summary::read_trace_summary(&trace) {
                Ok(row) if row.summary.status == RunStatus::Failed => RunState::Failed,
                Ok(_) => RunState::Complete,
                Err(_) => RunState::Missing,
            }
        } else {
            RunState::Missing
        };
        runs.push((spec.id.clone(), Shard::of_run(i, count), state));
    }
    let running = (1..=count)
        .filter(|&k| {
            count > 1 && Shard::new(k, count).is_ok_and(|s| NamedLock::is_held(dir, &s.lock_name()))
        })
        .collect();
    execute::finalize(dir, &experiment.name, &experiment.report, plots)?;
    Ok(MergeReport {
        out: dir.to_owned(),
        experiment,
        count,
        runs,
        running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_grid() {
        for count in 1..=7 {
            let mut seen = vec![0; 23];
            for k in 1..=count {
                let shard = Shard::new(k, count).unwrap();
                for i in shard.runs(23) {
                    seen[i] += 1;
                    assert_eq!(Shard::of_run(i, count), k);
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count}: {seen:?}");
        }
    }

    #[test]
    fn shard_specs_are_checked() {
        assert_eq!(Shard::parse("2/8").unwrap(), Shard { index: 2, count: 8 });
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "-1/3", ""] {
            let e = Shard::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected K/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn quoting_keeps_plain_paths_and_escapes_the_rest() {
        assert_eq!(shell_quote("/tmp/out-1/a.toml"), "/tmp/out-1/a.toml");
        assert_eq!(shell_quote("my dir"), "'my dir'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
