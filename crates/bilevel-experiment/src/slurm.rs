//! `bilevel slurm`: an experiment grid as a Slurm job array. Task K of the array runs
//! `bilevel run --resume DIR --shard K/N` (see [`crate::shard`]); a second job, started when the
//! array has ended (`--dependency=afterany`), runs `bilevel merge DIR`. No scheduler of our own:
//! Slurm queues, places and restarts; the shards skip what is complete, so re-submitting some
//! tasks (`sbatch --array=2,5 DIR/slurm/array.sh`, which `merge` prints) finishes a grid.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::error::ConfigError;
use crate::experiment::{self, BudgetOverride, Experiment};
use crate::shard::{self, SLURM_SCRIPT, shell_quote};

/// The merge job's script, relative to the output folder.
pub const MERGE_SCRIPT: &str = "slurm/merge.sh";

/// What `bilevel slurm` is asked for.
#[derive(Clone, Debug, Default)]
pub struct SlurmRequest {
    /// The experiment file.
    pub experiment: PathBuf,
    /// The output folder (default `results/<experiment name>`).
    pub out: Option<PathBuf>,
    /// Tasks in the array, N (default: one per run, at most 1000).
    pub array_size: Option<usize>,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (Slurm's formats: minutes, `HH:MM:SS`, `D-HH`, …).
    pub time: Option<String>,
    /// `--cpus-per-task`, also the runs each task runs at once (default 1).
    pub cpus: Option<usize>,
    /// A budget that replaces the file's, as `bilevel run --max-iters/--max-seconds`.
    pub budget: BudgetOverride,
    /// The `bilevel` binary the tasks run (an absolute path is written into the script).
    pub bilevel: PathBuf,
    /// Also submit the merge job.
    pub merge_job: bool,
}

/// The scripts of a grid, ready to write and submit.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The experiment, validated, with the budget applied.
    pub experiment: Experiment,
    /// The output folder (absolute).
    pub out: PathBuf,
    /// Tasks in the array.
    pub count: usize,
    /// `DIR/slurm/array.sh` and its text.
    pub array_script: (PathBuf, String),
    /// `DIR/slurm/merge.sh` and its text.
    pub merge_script: (PathBuf, String),
}

/// Validates the request and renders the scripts (nothing is written).
pub fn prepare(request: &SlurmRequest) -> Result<Prepared> {
    let mut experiment = experiment::load(&request.experiment)?;
    experiment.apply_budget_override(request.budget)?;
    let runs = experiment.runs.len();
    let count = match request.array_size {
        Some(0) => return Err(ConfigError("--array-size must be >= 1".into()).into()),
        Some(n) => n.min(runs),
        None => runs.min(1000),
    };
    let cpus = request.cpus.unwrap_or(1);
    if cpus == 0 {
        return Err(ConfigError("--cpus must be >= 1".into()).into());
    }
    for (flag, value) in [
        ("--partition", &request.partition),
        ("--time", &request.time),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(ConfigError(format!("{flag}: expected one word")).into());
        }
    }
    let out = request
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(&experiment.name));
    let out =
        std::path::absolute(&out).with_context(|| format!("resolving --out {}", out.display()))?;
    let bilevel = std::path::absolute(&request.bilevel)
        .with_context(|| format!("resolving {}", request.bilevel.display()))?;

    // Options in force: ours, then the file's [slurm] table (ours win on a clash).
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    options.push(("cpus-per-task".into(), Some(cpus.to_string())));
    if let Some(p) = &request.partition {
        options.push(("partition".into(), Some(p.clone())));
    }
    if let Some(t) = &request.time {
        options.push(("time".into(), Some(t.clone())));
    }
    for (name, value) in &experiment.slurm {
        if !options.iter().any(|(n, _)| n == name) {
            options.push((name.clone(), value.clone()));
        }
    }
    let sbatch_lines = |options: &[(String, Option<String>)]| {
        let mut text = String::new();
        for (name, value) in options {
            let _ = match value {
                Some(v) => writeln!(text, "#SBATCH --{name}={v}"),
                None => writeln!(text, "#SBATCH --{name}"),
            };
        }
        text
    };
    let dir = shell_quote(&out.display().to_string());
    let bin = shell_quote(&bilevel.display().to_string());
    let logs = out.join("slurm");
    let name = &experiment.name;

    let array_path = out.join(SLURM_SCRIPT);
    let mut array = String::new();
    let _ = writeln!(array, "#!/bin/bash");
    let _ = writeln!(
        array,
        "# Written by `bilevel slurm` for the experiment `{name}`: {runs} run(s) in {count} \
         shard(s); task K runs shard K/{count}."
    );
    let _ = writeln!(
        array,
        "# Tasks skip their complete runs: re-submit some with `sbatch --array=2,5 {}`.",
        array_path.display()
    );
    let _ = writeln!(array, "#SBATCH --job-name=bilevel-{name}");
    let _ = writeln!(array, "#SBATCH --array=1-{count}");
    let _ = writeln!(array, "#SBATCH --output={}/shard-%a.out", logs.display());
    array.push_str(&sbatch_lines(&options));
    let _ = writeln!(array, "set -eu");
    let _ = writeln!(
        array,
        "exec {bin} run --resume {dir} --shard \"${{SLURM_ARRAY_TASK_ID}}/{count}\" --jobs {cpus} \
         --quiet"
    );

    let merge_path = out.join(MERGE_SCRIPT);
    let mut merge = String::new();
    let _ = writeln!(merge, "#!/bin/bash");
    let _ = writeln!(
        merge,
        "# Written by `bilevel slurm`: gathers the shards of `{name}` (summary.csv, report.md, \
         figures) once the array has ended."
    );
    let _ = writeln!(merge, "#SBATCH --job-name=bilevel-{name}-merge");
    let _ = writeln!(merge, "#SBATCH --output={}/merge.out", logs.display());
    let mut merge_options = options.clone();
    merge_options[0].1 = Some("1".into());
    merge.push_str(&sbatch_lines(&merge_options));
    let _ = writeln!(merge, "set -eu");
    let _ = writeln!(merge, "exec {bin} merge {dir}");

    Ok(Prepared {
        experiment,
        out,
        count,
        array_script: (array_path, array),
        merge_script: (merge_path, merge),
    })
}

/// Sets the folder up for the shards (marker, experiment copy, budget, shard count) and writes
/// the two scripts.
pub fn write(prepared: &Prepared) -> Result<()> {
    let text = std::fs::read(&prepared.experiment.path)
        .with_context(|| format!("reading {}", prepared.experiment.path.display()))?;
    {
        let _folder = crate::outdir::FolderLock::acquire_shared(&prepared.out)?;
        shard::init_folder(&prepared.out, &prepared.experiment, &text, prepared.count)?;
    }
    for (path, text) in [&prepared.array_script, &prepared.merge_script] {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        bilevel::run::write_atomic(path, text.as_bytes())?;
        set_executable(path)?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> Result<()> {
    Ok(())
}

/// The job ids `sbatch` gave.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// The array job.
    pub array: String,
    /// The merge job, when one was submitted.
    pub merge: Option<String>,
}

/// Submits the array (and, with `merge_job`, the merge job after it) with `sbatch`.
pub fn submit(prepared: &Prepared, merge_job: bool) -> Result<Submitted> {
    let array = sbatch(&[], &prepared.array_script.0)?;
    let merge = if merge_job {
        Some(sbatch(
            &[format!("--dependency=afterany:{array}")],
            &prepared.merge_script.0,
        )?)
    } else {
        None
    };
    Ok(Submitted { array, merge })
}

/// Runs `sbatch --parsable ARGS SCRIPT` and returns the job id.
fn sbatch(args: &[String], script: &Path) -> Result<String> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .arg(script)
        .output()
        .map_err(|e| {
            ConfigError(format!(
                "running sbatch: {e} (is Slurm installed here? `bilevel slurm --dry-run` \
                 prints the script without submitting)"
            ))
        })?;
    if !output.status.success() {
        return Err(ConfigError(format!(
            "sbatch {} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
        .into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // `--parsable` prints `jobid` or `jobid;cluster`.
    let id = stdout.trim().split(';').next().unwrap_or("").to_owned();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError(format!(
            "sbatch {}: unexpected output {:?}",
            script.display(),
            stdout.trim()
        ))
        .into());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(dir: &Path, slurm: &str) -> PathBuf {
        let path = dir.join("grid.toml");
        std::fs::write(
            &path,
            format!(
                "name = \"g\"\nseeds = [0, 1, 2]\n[run]\nmax_iters = 5\neval_every = 5\n\
                 [[problem]]\nkind = \"quadratic\"\n[[solver]]\nkind = \"soba\"\n\
                 [[solver]]\nkind = \"aid_cg\"\n{slurm}"
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn the_array_script_runs_one_shard_per_task_with_the_tables_options() {
        let dir = tempfile::tempdir().unwrap();
        let request = SlurmRequest {
            experiment: grid(
                dir.path(),
                "[slurm]\nmem = \"2G\"\nexclusive = true\nrequeue = false\npartition = \"ignored\"\n",
            ),
            out: Some(dir.path().join("out dir")),
            array_size: Some(4),
            partition: Some("short".into()),
            time: Some("00:10:00".into()),
            cpus: Some(2),
            budget: BudgetOverride {
                max_iters: Some(3),
                max_seconds: None,
            },
            bilevel: "/opt/bin/bilevel".into(),
            merge_job: true,
        };
        let prepared = prepare(&request).unwrap();
        assert_eq!(prepared.count, 4);
        let script = &prepared.array_script.1;
        for line in [
            "#SBATCH --array=1-4",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --partition=short",
            "#SBATCH --time=00:10:00",
            "#SBATCH --mem=2G",
            "#SBATCH --exclusive",
        ] {
            assert!(script.lines().any(|l| l == line), "{line} in\n{script}");
        }
        assert!(!script.contains("requeue"), "{script}");
        assert!(
            !script.contains("ignored"),
            "the flag wins over the table: {script}"
        );
        let out = shell_quote(&prepared.out.display().to_string());
        assert!(
            out.starts_with('\''),
            "a path with a space is quoted: {out}"
        );
        assert!(
            script.contains(&format!(
                "exec /opt/bin/bilevel run --resume {out} --shard \"${{SLURM_ARRAY_TASK_ID}}/4\" --jobs 2"
            )),
            "{script}"
        );
        assert!(
            prepared
                .merge_script
                .1
                .contains(&format!("exec /opt/bin/bilevel merge {out}"))
        );
        assert!(
            prepared
                .merge_script
                .1
                .contains("#SBATCH --cpus-per-task=1")
        );
        // More tasks than runs: one run per task.
        let many = prepare(&SlurmRequest {
            array_size: Some(50),
            ..request.clone()
        })
        .unwrap();
        assert_eq!(many.count, 6);
        // Writing sets the folder up for the shards, with the budget.
        write(&prepared).unwrap();
        assert_eq!(shard::recorded_count(&prepared.out).unwrap(), Some(4));
        assert!(prepared.array_script.0.exists());
        let copy = crate::execute::experiment_copy(&prepared.out).unwrap();
        assert_eq!(copy.run.max_iters, Some(3));
    }

    #[test]
    fn bad_slurm_tables_and_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (table, expected) in [
            (
                "[slurm]\narray = \"1-3\"\n",
                "set by `bilevel slurm` itself",
            ),
            (
                "[slurm]\n\"bad key\" = 1\n",
                "expected an sbatch long option",
            ),
            ("[slurm]\nmem = \"2G\\n#SBATCH --x\"\n", "on one line"),
            (
                "[slurm]\nmem = [1]\n",
                "expected a string, number or boolean",
            ),
        ] {
            let e = experiment::load(&grid(dir.path(), table))
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{table}: {e}");
        }
        let request = SlurmRequest {
            experiment: grid(dir.path(), ""),
            bilevel: "bilevel".into(),
            ..Default::default()
        };
        for bad in [
            SlurmRequest {
                array_size: Some(0),
                ..request.clone()
            },
            SlurmRequest {
                cpus: Some(0),
                ..request.clone()
            },
            SlurmRequest {
                time: Some("1 day".into()),
                ..request.clone()
            },
        ] {
            assert!(prepare(&bad).is_err());
        }
    }
}
