//! Experiment files: parsing, validation and grid expansion.
//!
//! An experiment file is TOML:
//!
//! ```toml
//! name = "quickstart"          # names the output directory results/<name>
//! seeds = [1, 2, 3]
//!
//! [problem]                    # or several [[problem]] tables: a suite
//! kind = "quadratic"
//! dim_x = 10
//!
//! [start]                      # optional; the problem's default otherwise
//! x = -2.0                     # scalar fills every coordinate; a list gives it exactly
//! y = 0.0
//!
//! [run]                        # budgets and evaluation (bilevel::run::RunOptions)
//! max_iters = 2000
//! eval_every = 100
//!
//! [[solver]]
//! kind = "soba"
//! outer_lr = { kind = "inv_power", c = [0.1, 0.5], a = 0.5 }   # a list is a grid axis
//! ```
//!
//! Every array of scalars inside a `[problem]` or `[[solver]]` table is a grid axis; so is an
//! array of arrays, whose points are the inner arrays (a list-valued field is written
//! `hidden = [[64, 64]]`, a grid over two of them `hidden = [[64], [128, 128]]`). The grid is
//! the Cartesian product of the axes, times the seeds. Everything is validated (unknown fields,
//! out-of-range values, dimensions) before anything runs, and errors name the file, the table
//! and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use bilevel::algorithms::SolverConfig;
use bilevel::core::Vector;
use bilevel::problems::ProblemConfig;
use bilevel::run::RunOptions;
use serde::{Deserialize, Serialize};

use crate::outdir::{MAX_NAME_LEN, valid_name};
use crate::report::ReportOptions;

pub use crate::error::ConfigError;

/// How a starting vector is given.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StartValue {
    /// Every coordinate equal.
    Scalar(f64),
    /// The exact vector.
    List(Vec<f64>),
}

impl<'de> Deserialize<'de> for StartValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = StartValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number (every coordinate) or a list of numbers (the vector)")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StartValue, E> {
                Ok(StartValue::Scalar(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StartValue, E> {
                Ok(StartValue::Scalar(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StartValue, E> {
                Ok(StartValue::Scalar(v as f64))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StartValue, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element::<f64>()? {
                    values.push(v);
                }
                Ok(StartValue::List(values))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl StartValue {
    fn to_vector(&self, dim: usize, what: &str) -> Result<Vector, String> {
        match self {
            StartValue::Scalar(v) if v.is_finite() => Ok(Vector::from_fn(dim, |_| *v)),
            StartValue::Scalar(v) => Err(format!("{what} = {v} is not finite")),
            StartValue::List(values) => {
                if values.len() != dim {
                    return Err(format!(
                        "{what} has {} entries but the problem has dimension {dim}",
                        values.len()
                    ));
                }
                if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                    return Err(format!("{what} contains a non-finite value {bad}"));
                }
                Ok(bilevel::core::linalg::from_slice(values))
            }
        }
    }
}

/// The optional `[start]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// x₀.
    pub x: Option<StartValue>,
    /// y₀.
    pub y: Option<StartValue>,
}

impl Start {
    /// (x₀, y₀) for `problem`: given values override the problem's default.
    pub fn resolve(&self, problem: &bilevel::core::Problem) -> Result<(Vector, Vector), String> {
        let (dx, dy) = problem.dims();
        let (mut x0, mut y0) = problem.start();
        if let Some(x) = &self.x {
            x0 = x.to_vector(dx, "start.x")?;
        }
        if let Some(y) = &self.y {
            y0 = y.to_vector(dy, "start.y")?;
        }
        Ok((x0, y0))
    }
}

/// One run of the grid: a problem, a solver, a seed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    /// Stable id: `<solver kind>-<hash of problem, start and solver>-seed<k>`.
    pub id: String,
    /// Index of the problem in the suite.
    pub problem_index: usize,
    /// The problem.
    pub problem: ProblemConfig,
    /// The solver.
    pub solver: SolverConfig,
    /// The name the report, the plots and the summary give the solver (its table's `label`;
    /// default: its kind). Settings with the same label compete in parameter selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The seed.
    pub seed: u64,
    /// The solver table's own evaluation settings (its `eval` table), over the `[run]` table's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalSettings>,
}

/// When a solver's runs are evaluated, in place of the `[run]` table's settings: a solver table's
/// `eval = { … }`. Budgets stay the experiment's (the same for every solver, for a fair
/// comparison); only the spacing of the curve's points differs, e.g. every 2 iterations for a
/// method whose iterations are full passes, by draws for the stochastic ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSettings {
    /// Replaces `eval_every` (0: not by iterations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<u64>,
    /// Replaces `eval_every_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every_seconds: Option<f64>,
    /// Replaces `eval_every_samples`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every_samples: Option<u64>,
    /// Replaces `eval_every_draws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every_draws: Option<u64>,
}

impl EvalSettings {
    /// `run` with these settings in place of its own.
    pub fn apply(&self, run: &RunOptions) -> RunOptions {
        let mut run = run.clone();
        if let Some(n) = self.eval_every {
            run.eval_every = n;
        }
        if let Some(s) = self.eval_every_seconds {
            run.eval_every_seconds = Some(s);
        }
        if let Some(n) = self.eval_every_samples {
            run.eval_every_samples = Some(n);
        }
        if let Some(n) = self.eval_every_draws {
            run.eval_every_draws = Some(n);
        }
        run
    }
}

impl RunSpec {
    /// The run's options: the experiment's `[run]` table with the solver's `eval` settings.
    pub fn options(&self, run: &RunOptions) -> RunOptions {
        match &self.eval {
            Some(eval) => eval.apply(run),
            None => run.clone(),
        }
    }
}

/// A validated experiment.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// The problems of the suite (after grid expansion).
    pub problems: Vec<ProblemConfig>,
    /// The starting point.
    pub start: Start,
    /// Budgets and evaluation.
    pub run: RunOptions,
    /// All runs, in a stable order.
    pub runs: Vec<RunSpec>,
    /// How the report selects and summarises.
    pub report: ReportOptions,
    /// A budget given on the command line in place of the file's (already applied to `run`).
    pub budget_override: Option<BudgetOverride>,
    /// Extra `#SBATCH` options for `bilevel slurm` (the `[slurm]` table): name (without `--`)
    /// and value (None for a flag).
    pub slurm: Vec<(String, Option<String>)>,
}

/// Budgets given on the command line (`bilevel run --max-iters N --max-seconds S`): each one
/// given replaces the `[run]` table's value; the file's other budgets still apply (a run stops
/// at the first budget it reaches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetOverride {
    /// Replaces `max_iters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iters: Option<u64>,
    /// Replaces `max_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<f64>,
}

impl BudgetOverride {
    /// Whether no budget is given.
    pub fn is_empty(&self) -> bool {
        self.max_iters.is_none() && self.max_seconds.is_none()
    }
}

impl Experiment {
    /// Settings that are valid but probably not what was meant, or costly (printed before a
    /// run).
    pub fn warnings(&self) -> Vec<String> {
        let run = &self.run;
        let mut out = Vec::new();
        if let Some(n) = run.max_iters {
            if run.eval_every > n {
                out.push(format!(
                    "eval_every = {} exceeds max_iters = {n}: each run is evaluated only at its \
                     start and its end",
                    run.eval_every
                ));
            }
            // eval_every = 0 evaluates by time, samples or draws only: no per-iteration records.
            let records = n.checked_div(run.eval_every).unwrap_or(0);
            if records > 100_000 {
                out.push(format!(
                    "max_iters / eval_every = {records} records per trace (about {} MB each); \
                     raise eval_every",
                    records * 600 / 1_000_000
                ));
            }
        }
        if let Some(every) = run.checkpoint_every
            && every < 100
        {
            out.push(format!(
                "checkpoint_every = {every}: the solver's whole state is written and synced \
                 to disk every {every} iteration(s) (megabytes for SABA-type solvers, which keep \
                 one vector per sample); this can dominate the run time"
            ));
        }
        out
    }

    /// Replaces the budgets of `[run]` by those of `budget` and validates the result like the
    /// file's own table. `eval_every` (and `checkpoint_every`) are clamped to the new
    /// `max_iters`, so that a reduced run still evaluates at its end and in between only where
    /// the file asked for it.
    pub fn apply_budget_override(&mut self, budget: BudgetOverride) -> Result<(), ConfigError> {
        if budget.is_empty() {
            return Ok(());
        }
        let file = self.path.display().to_string();
        if let Some(n) = budget.max_iters {
            if n == 0 {
                return Err(ConfigError(format!("{file}: --max-iters must be >= 1")));
            }
            self.run.max_iters = Some(n);
            self.run.eval_every = self.run.eval_every.min(n);
            self.run.checkpoint_every = self.run.checkpoint_every.map(|c| c.min(n));
        }
        if let Some(s) = budget.max_seconds {
            if !(s.is_finite() && s > 0.0) {
                return Err(ConfigError(format!(
                    "{file}: --max-seconds must be a positive number of seconds, got {s}"
                )));
            }
            self.run.max_seconds = Some(s);
        }
        self.run
            .validate()
            .map_err(|e| ConfigError(format!("{file}: [run] with the command-line budget: {e}")))?;
        self.budget_override = Some(budget);
        Ok(())
    }
}

const TOP_LEVEL_KEYS: [&str; 8] = [
    "name", "seeds", "problem", "start", "run", "solver", "report", "slurm",
];

/// `sbatch` options that `bilevel slurm` sets itself, refused in a `[slurm]` table.
const SLURM_RESERVED: [&str; 6] = ["array", "output", "error", "job-name", "wrap", "parsable"];

/// The `[slurm]` table: each key an `sbatch` long option (`mem = "4G"` gives
/// `#SBATCH --mem=4G`; `exclusive = true` gives `#SBATCH --exclusive`; `false` leaves it out).
fn slurm_options(value: &toml::Value) -> Result<Vec<(String, Option<String>)>, String> {
    let table = value
        .as_table()
        .ok_or_else(|| "[slurm] must be a table of sbatch options".to_owned())?;
    let mut options = Vec::new();
    for (key, value) in table {
        let plain = !key.is_empty()
            && key.len() <= 40
            && key.starts_with(|c: char| c.is_ascii_lowercase())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !plain {
            return Err(format!(
                "[slurm] `{key}`: expected an sbatch long option name (lowercase letters, \
                 digits, '-')"
            ));
        }
        let name = key.replace('_', "-");
        if SLURM_RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "[slurm] `{key}`: set by `bilevel slurm` itself (it writes --array, --output, \
                 --error and --job-name)"
            ));
        }
        let rendered = match value {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(true) => None,
            toml::Value::Boolean(false) => continue,
            other => {
                return Err(format!(
                    "[slurm] `{key}`: expected a string, number or boolean, got {}",
                    other.type_str()
                ));
            }
        };
        if rendered
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.chars().any(|c| c.is_control()))
        {
            return Err(format!(
                "[slurm] `{key}`: the value must be non-empty and on one line"
            ));
        }
        options.push((name, rendered));
    }
    Ok(options)
}

/// Reads, validates and expands an experiment file.
pub fn load(path: &Path) -> Result<Experiment, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
    parse(&text, path)
}

/// Parses experiment text (`path` is used in messages and for the name default).
pub fn parse(text: &str, path: &Path) -> Result<Experiment, ConfigError> {
    let file = path.display().to_string();
    let err = |msg: String| ConfigError(format!("{file}: {msg}"));
    let root: toml::Table = toml::from_str(text).map_err(|e| {
        let location = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: ")
            })
            .unwrap_or_default();
        err(format!("{location}{}", e.message().trim()))
    })?;
    for key in root.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            return Err(err(format!(
                "unknown top-level key `{key}`, expected one of {}",
                TOP_LEVEL_KEYS.map(|k| format!("`{k}`")).join(", ")
            )));
        }
    }
    // The name is the output folder's (`results/<name>`): a plain path component, never `..`.
    let name = match root.get("name") {
        None => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !valid_name(&stem) {
                return Err(err(format!(
                    "the file name does not give a valid experiment name (`{stem}`); set \
                     `name` to 1 to {MAX_NAME_LEN} letters, digits, '-', '_' and '.', not \
                     starting with '.'"
                )));
            }
            stem
        }
        Some(toml::Value::String(s)) if valid_name(s) => s.clone(),
        Some(other) => {
            let shown = other.to_string();
            let shown = if shown.chars().count() > 60 {
                format!(
                    "{}… ({} characters)",
                    shown.chars().take(60).collect::<String>(),
                    shown.chars().count()
                )
            } else {
                shown
            };
            return Err(err(format!(
                "`name` must be 1 to {MAX_NAME_LEN} letters, digits, '-', '_' and '.', not \
                 starting with '.' (it names the output folder), got {shown}"
            )));
        }
    };
    let seeds: Vec<u64> = match root.get("seeds") {
        None => vec![0],
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| err(format!("`seeds`: {}", e.message().trim())))?,
    };
    if seeds.is_empty() {
        return Err(err("`seeds` must not be empty".into()));
    }
    let run: RunOptions = match root.get("run") {
        None => RunOptions::default(),
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| err(format!("[run]: {}", e.message().trim())))?,
    };
    run.validate().map_err(|e| err(format!("[run]: {e}")))?;
    let start: Start = match root.get("start") {
        None => Start::default(),
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| err(format!("[start]: {}", e.message().trim())))?,
    };

    let report: ReportOptions = match root.get("report") {
        None => ReportOptions::default(),
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| err(format!("[report]: {}", e.message().trim())))?,
    };
    report
        .validate()
        .map_err(|e| err(format!("[report]: {e}")))?;

    let slurm = match root.get("slurm") {
        None => Vec::new(),
        Some(v) => slurm_options(v).map_err(&err)?,
    };

    let problem_tables = tables(&root, "problem").map_err(&err)?;
    if problem_tables.is_empty() {
        return Err(err("missing [problem] table".into()));
    }
    // Count the grid before expanding it: a typo such as `seeds = [1, …]` over a long list must
    // give an error, not exhaust memory.
    let problem_points = problem_tables
        .iter()
        .try_fold(0u64, |acc, t| acc.checked_add(grid_size(t)?));
    let solver_points = tables(&root, "solver")
        .map_err(&err)?
        .iter()
        .try_fold(0u64, |acc, t| {
            let mut t = t.clone();
            t.remove("problems");
            t.remove("label");
            t.remove("eval");
            let own_seeds = match t.remove("seeds") {
                Some(toml::Value::Array(a)) => a.len() as u64,
                _ => seeds.len() as u64,
            };
            acc.checked_add(grid_size(&t)?.checked_mul(own_seeds)?)
        });
    let total = problem_points
        .zip(solver_points)
        .and_then(|(p, s)| p.checked_mul(s));
    match total {
        Some(n) if n <= MAX_RUNS => {}
        _ => {
            return Err(err(format!(
                "the grid expands to {} runs, more than the {MAX_RUNS} one experiment may hold; \
                 split it into several files",
                total.map_or("over 2^64".to_owned(), |n| n.to_string())
            )));
        }
    }
    let mut problems = Vec::new();
    // The [[problem]] table (0-based) each expanded problem comes from.
    let mut problem_table_of = Vec::new();
    for (i, table) in problem_tables.iter().enumerate() {
        let label = table_label("problem", i, problem_tables.len(), table);
        for point in expand(table) {
            let config: ProblemConfig = from_point(point, &label).map_err(&err)?;
            config
                .validate()
                .map_err(|e| err(format!("{label}: {e}")))?;
            problems.push(config);
            problem_table_of.push(i);
        }
    }

    let solver_tables = tables(&root, "solver").map_err(&err)?;
    if solver_tables.is_empty() {
        return Err(err("no [[solver]] table".into()));
    }
    let mut solvers = Vec::new();
    // label → kind, to keep one kind per label.
    let mut label_kinds: Vec<(String, String)> = Vec::new();
    for (i, table) in solver_tables.iter().enumerate() {
        let label = table_label("solver", i, solver_tables.len(), table);
        let mut table = table.clone();
        let only = match table.remove("problems") {
            None => None,
            Some(value) => Some(
                problem_filter(&value, problem_tables.len())
                    .map_err(|e| err(format!("{label}: `problems` {e}")))?,
            ),
        };
        let eval: Option<EvalSettings> = match table.remove("eval") {
            None => None,
            Some(v) => {
                let eval: EvalSettings = v.try_into().map_err(|e: toml::de::Error| {
                    err(format!("{label}: `eval`: {}", e.message().trim()))
                })?;
                eval.apply(&run)
                    .validate()
                    .map_err(|e| err(format!("{label}: `eval`: {e}")))?;
                Some(eval)
            }
        };
        let own_seeds: Option<Vec<u64>> = match table.remove("seeds") {
            None => None,
            Some(v) => {
                let list: Vec<u64> = v.try_into().map_err(|e: toml::de::Error| {
                    err(format!("{label}: `seeds`: {}", e.message().trim()))
                })?;
                if list.is_empty() {
                    return Err(err(format!("{label}: `seeds` must not be empty")));
                }
                Some(list)
            }
        };
        let name = match table.remove("label") {
            None => None,
            Some(toml::Value::String(s)) if valid_label(&s) => Some(s),
            Some(other) => {
                return Err(err(format!(
                    "{label}: `label` must be a non-empty string of letters, digits, spaces and \
                     '-', '_', '.', '=', '(', ')', '+', got {other}"
                )));
            }
        };
        if let Some(kind) = table.get("kind").and_then(|k| k.as_str()) {
            let shown = name.clone().unwrap_or_else(|| kind.to_owned());
            match label_kinds.iter().find(|(l, _)| *l == shown) {
                Some((_, k)) if k != kind => {
                    return Err(err(format!(
                        "{label}: the name `{shown}` is also given to solver kind `{k}`; \
                         give each table its own `label`"
                    )));
                }
                Some(_) => {}
                None => label_kinds.push((shown, kind.to_owned())),
            }
        }
        for point in expand(&table) {
            let config: SolverConfig = from_point(point, &label).map_err(&err)?;
            config
                .validate()
                .map_err(|e| err(format!("{label}: {e}")))?;
            solvers.push((
                config,
                name.clone(),
                only.clone(),
                own_seeds.clone(),
                eval.clone(),
            ));
        }
    }

    let mut runs = Vec::new();
    for (problem_index, problem) in problems.iter().enumerate() {
        for (solver, label, only, own_seeds, eval) in &solvers {
            if only
                .as_ref()
                .is_some_and(|tables| !tables.contains(&problem_table_of[problem_index]))
            {
                continue;
            }
            let hash = stable_hash(&serde_json::json!({
                "problem": problem,
                "start": start,
                "solver": solver,
            }));
            for &seed in own_seeds.as_ref().unwrap_or(&seeds) {
                runs.push(RunSpec {
                    id: format!("{}-{hash:016x}-seed{seed}", solver.kind()),
                    problem_index,
                    problem: problem.clone(),
                    solver: solver.clone(),
                    label: label.clone(),
                    seed,
                    eval: eval.clone(),
                });
            }
        }
    }
    if let Some(idle) = (0..problems.len()).find(|&p| !runs.iter().any(|r| r.problem_index == p)) {
        return Err(err(format!(
            "[[problem]] #{} has no solver: every [[solver]] table's `problems` leaves it out",
            problem_table_of[idle] + 1
        )));
    }
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_unstable_by(|&a, &b| runs[a].id.cmp(&runs[b].id));
    if let Some(w) = order.windows(2).find(|w| runs[w[0]].id == runs[w[1]].id) {
        let (a, b) = (&runs[w[0]], &runs[w[1]]);
        let config =
            |r: &RunSpec| serde_json::json!({"problem": r.problem, "solver": r.solver}).to_string();
        return Err(err(if config(a) == config(b) {
            format!(
                "two runs have the same id `{}`: the same solver settings and seed are listed \
                 twice ({})",
                a.id,
                config(a)
            )
        } else {
            format!(
                "two different runs hash to the same id `{}`; change a setting of one of \
                 them:\n  {}\n  {}",
                a.id,
                config(a),
                config(b)
            )
        }));
    }
    Ok(Experiment {
        path: path.to_owned(),
        name,
        problems,
        start,
        run,
        runs,
        report,
        budget_override: None,
        slurm,
    })
}

/// The 0-based `[[problem]]` tables named by a solver table's `problems` (1-based in the file: an
/// integer or an array of integers).
fn problem_filter(value: &toml::Value, tables: usize) -> Result<Vec<usize>, String> {
    let items = match value {
        toml::Value::Array(items) if !items.is_empty() => items.clone(),
        toml::Value::Integer(_) => vec![value.clone()],
        other => {
            return Err(format!(
                "must be a [[problem]] table number or a non-empty list of them, got {other}"
            ));
        }
    };
    let mut out = Vec::new();
    for item in items {
        match item.as_integer() {
            Some(k) if k >= 1 && (k as usize) <= tables => out.push(k as usize - 1),
            _ => {
                return Err(format!(
                    "must list [[problem]] tables by number, 1 to {tables} (in file order), \
                     got {item}"
                ));
            }
        }
    }
    Ok(out)
}

fn valid_label(s: &str) -> bool {
    !s.trim().is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '=' | '(' | ')' | '+')
        })
}

fn table_label(section: &str, index: usize, count: usize, table: &toml::Table) -> String {
    let kind = table
        .get("kind")
        .and_then(|k| k.as_str())
        .map(|k| format!(" (kind = \"{k}\")"))
        .unwrap_or_default();
    if count == 1 {
        format!("[{section}]{kind}")
    } else {
        format!("[[{section}]] #{}{kind}", index + 1)
    }
}

/// The tables under `key`: a single table or an array of tables.
fn tables(root: &toml::Table, key: &str) -> Result<Vec<toml::Table>, String> {
    match root.get(key) {
        None => Ok(Vec::new()),
        Some(toml::Value::Table(t)) => Ok(vec![t.clone()]),
        Some(toml::Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                toml::Value::Table(t) => Ok(t.clone()),
                _ => Err(format!("[[{key}]] #{} is not a table", i + 1)),
            })
            .collect(),
        Some(_) => Err(format!("`{key}` must be a table")),
    }
}

fn is_scalar(v: &toml::Value) -> bool {
    matches!(
        v,
        toml::Value::Integer(_)
            | toml::Value::Float(_)
            | toml::Value::String(_)
            | toml::Value::Boolean(_)
    )
}

/// Paths (sequences of keys) of the grid axes: non-empty arrays of scalars, or of arrays.
fn axes(
    table: &toml::Table,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Vec<toml::Value>)>,
) {
    for (key, value) in table {
        prefix.push(key.clone());
        match value {
            toml::Value::Array(items)
                if !items.is_empty()
                    && (items.iter().all(is_scalar)
                        || items.iter().all(|i| matches!(i, toml::Value::Array(_)))) =>
            {
                out.push((prefix.clone(), items.clone()));
            }
            toml::Value::Table(inner) => axes(inner, prefix, out),
            _ => {}
        }
        prefix.pop();
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    if path.len() == 1 {
        table.insert(path[0].clone(), value);
    } else if let Some(toml::Value::Table(inner)) = table.get_mut(&path[0]) {
        set_path(inner, &path[1..], value);
    }
}

/// Deserializes one grid point of a `[problem]` or `[[solver]]` table (`label` names the
/// table), naming the field of a type error.
fn from_point<T: serde::de::DeserializeOwned>(
    point: toml::Table,
    label: &str,
) -> Result<T, String> {
    toml::Value::Table(point.clone())
        .try_into()
        .map_err(|e: toml::de::Error| {
            format!("{label}: {}", with_field(&point, e.message().trim()))
        })
}

/// Names the field of a type error ("invalid type: string \"64\", expected usize" says which
/// value but not which field): the one key of `table` (searched recursively) whose value reads
/// as the value in the message. The message is returned unchanged when none or several match.
fn with_field(table: &toml::Table, message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_owned();
    };
    let shown = rest.split(", expected").next().unwrap_or("");
    // "string \"64\"", "integer `-1`", "floating point `1.5`", "boolean `true`".
    let value = match shown.split_once('`') {
        Some((_, v)) => v.trim_end_matches('`').to_owned(),
        None => shown.strip_prefix("string ").unwrap_or(shown).to_owned(),
    };
    fn find(table: &toml::Table, value: &str, prefix: &str, out: &mut Vec<String>) {
        for (key, v) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match v {
                toml::Value::Table(inner) => find(inner, value, &path, out),
                other if other.to_string() == value => out.push(path),
                _ => {}
            }
        }
    }
    let mut found = Vec::new();
    find(table, &value, "", &mut found);
    match found.as_slice() {
        [field] => format!("`{field}`: {message}"),
        _ => message.to_owned(),
    }
}

/// The most runs one experiment may expand to.
pub const MAX_RUNS: u64 = 100_000;

/// How many points [`expand`] would make of `table` (`None` past u64).
pub fn grid_size(table: &toml::Table) -> Option<u64> {
    let mut found = Vec::new();
    axes(table, &mut Vec::new(), &mut found);
    found.iter().try_fold(1u64, |acc, (_, values)| {
        acc.checked_mul(values.len() as u64)
    })
}

/// The Cartesian product of a table's grid axes (in key order, last axis fastest).
pub fn expand(table: &toml::Table) -> Vec<toml::Table> {
    let mut found = Vec::new();
    axes(table, &mut Vec::new(), &mut found);
    let mut points = vec![table.clone()];
    for (path, values) in &found {
        let mut next = Vec::with_capacity(points.len() * values.len());
        for point in &points {
            for value in values {
                let mut p = point.clone();
                set_path(&mut p, path, value.clone());
                next.push(p);
            }
        }
        points = next;
    }
    points
}

/// FNV-1a 64 of the canonical (sorted-key) JSON: stable across runs, platforms and versions.
pub fn stable_hash(value: &serde_json::Value) -> u64 {
    let text = serde_json::to_string(value).expect("invariant: JSON values serialize");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: &str = r#"
name = "grid"
seeds = [1, 2, 3]
[problem]
kind = "quadratic_tiny"
[run]
max_iters = 10
eval_every = 5
[[solver]]
kind = "soba"
outer_lr = [0.1, 0.2, 0.3]
[[solver]]
kind = "aid_cg"
outer_lr = { kind = "constant", c = [0.1, 0.2, 0.3] }
"#;

    #[test]
    fn two_solvers_three_steps_three_seeds_make_18_runs_with_stable_distinct_ids() {
        let a = parse(GRID, Path::new("grid.toml")).unwrap();
        assert_eq!(a.runs.len(), 18);
        let mut ids: Vec<_> = a.runs.iter().map(|r| r.id.clone()).collect();
        let b = parse(GRID, Path::new("grid.toml")).unwrap();
        let ids_b: Vec<_> = b.runs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, ids_b, "ids are stable across parses");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 18, "ids are distinct");
    }

    #[test]
    fn an_array_of_arrays_is_an_axis_of_list_values() {
        let file = |hidden: &str| {
            format!(
                "seeds = [1]\n[problem]\nkind = \"meta_sinusoid\"\nhidden = {hidden}\n[run]\n\
                 max_iters = 1\n[[solver]]\nkind = \"maml\"\n"
            )
        };
        let hidden_of = |text: &str| -> Vec<Vec<usize>> {
            parse(text, Path::new("nn.toml"))
                .unwrap()
                .runs
                .iter()
                .map(|r| match &r.problem {
                    ProblemConfig::MetaSinusoid(c) => c.hidden.clone(),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(hidden_of(&file("[[16, 16]]")), [vec![16, 16]]);
        assert_eq!(hidden_of(&file("[[8], [4, 4]]")), [vec![8], vec![4, 4]]);
        // An array of scalars stays an axis of scalars (a type error for a list field).
        let e = parse(&file("[16, 16]"), Path::new("nn.toml"))
            .unwrap_err()
            .0;
        assert!(e.contains("expected a sequence"), "{e}");
    }

    #[test]
    fn evaluation_by_time_only_parses_and_warns_about_nothing() {
        let text = GRID.replace(
            "eval_every = 5",
            "eval_every = 0\neval_every_seconds = 1.0\nmax_seconds = 2.0",
        );
        let experiment = parse(&text, Path::new("t.toml")).unwrap();
        assert_eq!(experiment.run.eval_every, 0);
        assert!(
            experiment.warnings().is_empty(),
            "{:?}",
            experiment.warnings()
        );
    }

    #[test]
    fn type_errors_name_their_field() {
        for (bad, field) in [
            ("batch_size = \"64\"", "`batch_size`"),
            ("batch_size = 1.5", "`batch_size`"),
            ("batch_size = -3", "`batch_size`"),
        ] {
            let text = GRID.replace("outer_lr = [0.1, 0.2, 0.3]", bad);
            let e = parse(&text, Path::new("t.toml")).unwrap_err().0;
            assert!(e.contains(field), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_file_table_and_field() {
        let bad = GRID.replace("outer_lr = [0.1, 0.2, 0.3]", "outerlr = 0.1");
        let e = parse(&bad, Path::new("exp.toml")).unwrap_err().0;
        assert!(
            e.starts_with("exp.toml: [[solver]] #1 (kind = \"soba\")"),
            "{e}"
        );
        assert!(e.contains("outerlr"), "{e}");
        let bad = GRID.replace("max_iters = 10", "max_iter = 10");
        let e = parse(&bad, Path::new("exp.toml")).unwrap_err().0;
        assert!(e.contains("[run]") && e.contains("max_iter"), "{e}");
        let bad = GRID.replace("kind = \"quadratic_tiny\"", "kind = \"quadratic\"\nmu = -1");
        let e = parse(&bad, Path::new("exp.toml")).unwrap_err().0;
        assert!(e.contains("[problem]") && e.contains("mu"), "{e}");
        let e = parse("name = [", Path::new("exp.toml")).unwrap_err().0;
        assert!(e.starts_with("exp.toml: line 1"), "{e}");
        let e = parse(&format!("{GRID}\nbogus = 1"), Path::new("exp.toml"))
            .unwrap_err()
            .0;
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn a_solver_table_can_be_restricted_to_some_problem_tables() {
        let suite = r#"
seeds = [1, 2]
[[problem]]
kind = "quadratic_tiny"
[[problem]]
kind = "quadratic"
dim_x = [3, 4]
[run]
max_iters = 10
[[solver]]
kind = "soba"
problems = 1
[[solver]]
kind = "aid_cg"
problems = [2]
outer_lr = [0.1, 0.2]
[[solver]]
kind = "fsla"
"#;
        let e = parse(suite, Path::new("s.toml")).unwrap();
        let with_seeds = suite.replace("kind = \"fsla\"", "kind = \"fsla\"\nseeds = [7]");
        let f = parse(&with_seeds, Path::new("s.toml")).unwrap();
        let fsla: Vec<u64> = f
            .runs
            .iter()
            .filter(|r| r.solver.kind() == "fsla")
            .map(|r| r.seed)
            .collect();
        assert_eq!(fsla, [7, 7, 7], "a solver table's seeds replace the file's");
        assert_eq!(f.runs.len(), e.runs.len() - 3);
        for bad in ["seeds = []", "seeds = [-1]", "seeds = 3"] {
            let text = suite.replace("kind = \"fsla\"", &format!("kind = \"fsla\"\n{bad}"));
            let msg = parse(&text, Path::new("s.toml")).unwrap_err().0;
            assert!(msg.contains("`seeds`"), "{bad}: {msg}");
        }
        let count = |kind: &str, p: usize| {
            e.runs
                .iter()
                .filter(|r| r.solver.kind() == kind && r.problem_index == p)
                .count()
        };
        // problem 0 = table 1; problems 1 and 2 = the two grid points of table 2.
        assert_eq!(
            (count("soba", 0), count("soba", 1), count("soba", 2)),
            (2, 0, 0)
        );
        assert_eq!(
            (count("aid_cg", 0), count("aid_cg", 1), count("aid_cg", 2)),
            (0, 4, 4)
        );
        assert_eq!(
            (count("fsla", 0), count("fsla", 1), count("fsla", 2)),
            (2, 2, 2)
        );
        for (bad, needle) in [
            ("problems = 3", "1 to 2"),
            ("problems = 0", "1 to 2"),
            ("problems = []", "non-empty"),
            ("problems = \"1\"", "table number"),
        ] {
            let text = suite.replace("problems = 1", bad);
            let msg = parse(&text, Path::new("s.toml")).unwrap_err().0;
            assert!(
                msg.contains("`problems`") && msg.contains(needle),
                "{bad}: {msg}"
            );
        }
        let orphan = suite
            .replace("problems = 1", "problems = 2")
            .replace("kind = \"fsla\"", "kind = \"fsla\"\nproblems = 2");
        let msg = parse(&orphan, Path::new("s.toml")).unwrap_err().0;
        assert!(msg.contains("[[problem]] #1 has no solver"), "{msg}");
    }

    #[test]
    fn labels_name_solver_tables_and_stay_out_of_the_solver_config() {
        let labelled = GRID
            .replace(
                "kind = \"soba\"",
                "kind = \"soba\"\nlabel = \"SOBA (small steps)\"",
            )
            .replace(
                "[[solver]]\nkind = \"aid_cg\"",
                "[[solver]]\nkind = \"soba\"\nlabel = \"soba-2\"\nbatch_size = 8",
            );
        let e = parse(&labelled, Path::new("l.toml")).unwrap();
        let labels: Vec<_> = e.runs.iter().map(|r| r.label.clone().unwrap()).collect();
        assert_eq!(
            labels.iter().filter(|l| *l == "SOBA (small steps)").count(),
            9
        );
        assert_eq!(labels.iter().filter(|l| *l == "soba-2").count(), 9);
        // The label is not part of the run id's hash: unlabelled, the same ids.
        let plain = parse(GRID, Path::new("l.toml")).unwrap();
        assert_eq!(e.runs[0].id, plain.runs[0].id);

        for (bad, needle) in [
            ("label = 3", "`label` must be"),
            ("label = \"\"", "`label` must be"),
            ("label = \"a,b\"", "`label` must be"),
            ("label = [\"a\", \"b\"]", "`label` must be"),
            ("label = \"aid_cg\"", "is also given to solver kind"),
        ] {
            let text = GRID.replace("kind = \"soba\"", &format!("kind = \"soba\"\n{bad}"));
            let msg = parse(&text, Path::new("l.toml")).unwrap_err().0;
            assert!(msg.contains(needle), "{bad}: {msg}");
        }
    }
}
