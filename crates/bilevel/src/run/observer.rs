//! Observers of a run: a JSONL trace on disk, an in-memory trace and a progress bar.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use std::sync::{Arc, Mutex, MutexGuard};

use super::checkpoint::write_atomic;
use super::runner::{Record, RunSummary};
use crate::core::{Error, Result, Vector};

/// The iterate an evaluation [`Record`] describes: the solver's current (x, y) and, for solvers
/// that keep one, its estimate v of [∇²ᵧᵧg]⁻¹∇ᵧf.
#[derive(Clone, Copy, Debug)]
pub struct Iterate<'a> {
    /// The outer variable x.
    pub x: &'a Vector,
    /// The inner variable y.
    pub y: &'a Vector,
    /// The adjoint v, when the solver keeps one.
    pub v: Option<&'a Vector>,
}

/// Notified by the [`Runner`](super::Runner) at every evaluation point and once at the end.
///
/// Closures `FnMut(&Record, Iterate<'_>) -> Result<()>` are observers too (annotate the
/// argument types, as below); one that captures a local variable by reference lends it to the
/// runner until the runner is dropped.
///
/// ```
/// use bilevel::prelude::*;
/// use bilevel::run::{Iterate, Observer, Record, RunSummary};
///
/// /// Prints one line per evaluation and one at the end.
/// struct PrintLines;
///
/// impl Observer for PrintLines {
///     fn observe(&mut self, record: &Record, iterate: Iterate<'_>) -> bilevel::core::Result<()> {
///         println!("{:>4} f = {:.4e} |x| = {:.3}", record.iter, record.metrics["outer_value"],
///                  iterate.x.norm());
///         Ok(())
///     }
///     fn finish(&mut self, summary: &RunSummary) -> bilevel::core::Result<()> {
///         println!("{} after {} iterations", summary.status.as_str(), summary.iters);
///         Ok(())
///     }
/// }
///
/// let problem = bilevel::problems::quadratic::tiny();
/// let config = SolverConfig::AidCg(AidCgConfig::default());
/// // The x of the evaluation with the lowest outer value, kept by a closure.
/// let mut best: Option<(f64, Vector)> = None;
/// let options = RunOptions { max_iters: Some(20), eval_every: 5, ..Default::default() };
/// let (x0, y0) = problem.start();
/// Runner::new(options)
///     .observe(PrintLines)
///     .observe(|record: &Record, iterate: Iterate<'_>| {
///         let value = record.metrics["outer_value"];
///         if best.as_ref().is_none_or(|(lowest, _)| value < *lowest) {
///             best = Some((value, iterate.x.clone()));
///         }
///         Ok(())
///     })
///     .run_config(&config, &problem, x0, y0, 0)?;
/// let (lowest, x) = best.expect("five evaluations: iterations 0, 5, 10, 15 and 20");
/// assert!(lowest.is_finite() && x.nrows() == problem.dims().0);
/// # Ok::<(), bilevel::core::Error>(())
/// ```
pub trait Observer {
    /// A new evaluation record, and the iterate it was evaluated at.
    fn observe(&mut self, record: &Record, iterate: Iterate<'_>) -> Result<()>;
    /// The run ended.
    fn finish(&mut self, _summary: &RunSummary) -> Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&Record, Iterate<'_>) -> Result<()>> Observer for F {
    fn observe(&mut self, record: &Record, iterate: Iterate<'_>) -> Result<()> {
        self(record, iterate)
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line<'a> {
    Header(&'a serde_json::Value),
    Record(&'a Record),
    Summary(&'a RunSummary),
}

/// A JSON-lines trace: a header line, one line per [`Record`], and a summary line.
///
/// The trace is written to `<path>.partial` while the run goes on (each line flushed), and renamed
/// to `<path>` only when the run finishes: a complete trace is never half-written, and an
/// interrupted one can be continued with [`JsonlTrace::resume`].
pub struct JsonlTrace {
    path: PathBuf,
    partial: PathBuf,
    writer: BufWriter<File>,
}

/// The in-progress file of a trace at `path`.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

impl JsonlTrace {
    /// Starts a trace at `path` (writing `<path>.partial`) with `header`, which must be a JSON
    /// object (run id, configs, seed, versions…).
    pub fn create(path: &Path, header: &serde_json::Value) -> Result<Self> {
        if !header.is_object() {
            return Err(Error::config(
                "header",
                "a trace header must be a JSON object",
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let partial = partial_path(path);
        let file = File::create(&partial).map_err(|e| Error::io(&partial, e))?;
        let mut trace = Self {
            path: path.to_owned(),
            partial,
            writer: BufWriter::new(file),
        };
        trace.write_line(&Line::Header(header))?;
        Ok(trace)
    }

    /// Continues the interrupted trace at `path`: keeps its header and the records with
    /// `iter <= upto_iter` (those before the checkpoint being resumed), drops the rest, and
    /// appends from there. Fails if there is no partial trace.
    pub fn resume(path: &Path, upto_iter: u64) -> Result<Self> {
        let partial = partial_path(path);
        let file = File::open(&partial).map_err(|e| Error::io(&partial, e))?;
        let mut kept = Vec::new();
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::io(&partial, e))?;
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                // A line cut by the interruption: everything after it is dropped.
                break;
            };
            let keep = match value.get("type").and_then(|t| t.as_str()) {
                Some("header") => number == 0,
                Some("record") => value
                    .get("iter")
                    .and_then(|i| i.as_u64())
                    .is_some_and(|i| i <= upto_iter),
                _ => false,
            };
            if keep {
                kept.extend_from_slice(line.as_bytes());
                kept.push(b'\n');
            }
        }
        if kept.is_empty() {
            return Err(Error::Data {
                path: partial.display().to_string(),
                location: "line 1".into(),
                reason: "the partial trace has no header".into(),
            });
        }
        write_atomic(&partial, &kept)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&partial)
            .map_err(|e| Error::io(&partial, e))?;
        Ok(Self {
            path: path.to_owned(),
            partial,
            writer: BufWriter::new(file),
        })
    }

    fn write_line(&mut self, line: &Line<'_>) -> Result<()> {
        let io = |e: std::io::Error| Error::io(&self.partial, e);
        serde_json::to_writer(&mut self.writer, line)
            .map_err(|e| Error::io(&self.partial, e.into()))?;
        self.writer.write_all(b"\n").map_err(io)?;
        self.writer.flush().map_err(io)
    }
}

impl Observer for JsonlTrace {
    fn observe(&mut self, record: &Record, _iterate: Iterate<'_>) -> Result<()> {
        self.write_line(&Line::Record(record))
    }
    fn finish(&mut self, summary: &RunSummary) -> Result<()> {
        self.write_line(&Line::Summary(summary))?;
        self.writer
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.partial, e))?;
        std::fs::rename(&self.partial, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

/// Collects records (and the summary) in memory.
///
/// A cheap handle: give the runner a clone and read the records from the original, during or
/// after the run, with no borrow to scope.
///
/// ```
/// use bilevel::prelude::*;
/// use bilevel::run::InMemory;
///
/// let problem = bilevel::problems::quadratic::tiny();
/// let trace = InMemory::new();
/// let options = RunOptions { max_iters: Some(10), eval_every: 5, ..Default::default() };
/// let (x0, y0) = problem.start();
/// Runner::new(options)
///     .observe(trace.clone())
///     .run_config(&SolverConfig::AidCg(AidCgConfig::default()), &problem, x0, y0, 0)?;
/// let iters: Vec<u64> = trace.records().iter().map(|r| r.iter).collect();
/// assert_eq!(iters, [0, 5, 10]);
/// assert_eq!(trace.summary().unwrap().iters, 10);
/// # Ok::<(), bilevel::core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemory {
    shared: Arc<Mutex<(Vec<Record>, Option<RunSummary>)>>,
}

impl InMemory {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> MutexGuard<'_, (Vec<Record>, Option<RunSummary>)> {
        // A poisoned lock only means an observer call panicked mid-push: the data is still a
        // list of whole records.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The records so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.lock().0.clone()
    }
    /// How many records so far.
    pub fn len(&self) -> usize {
        self.lock().0.len()
    }
    /// True before the first record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The summary of the last run that finished (`None` while it runs).
    pub fn summary(&self) -> Option<RunSummary> {
        self.lock().1.clone()
    }
}

impl Observer for InMemory {
    fn observe(&mut self, record: &Record, _iterate: Iterate<'_>) -> Result<()> {
        self.lock().0.push(record.clone());
        Ok(())
    }
    fn finish(&mut self, summary: &RunSummary) -> Result<()> {
        self.lock().1 = Some(summary.clone());
        Ok(())
    }
}

/// An indicatif progress bar on stderr (hidden when stderr is not a terminal).
pub struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    /// A bar over `max_iters` iterations (a spinner when unknown), labelled `label`.
    pub fn new(label: &str, max_iters: Option<u64>) -> Self {
        let bar = match max_iters {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        Self { bar }
    }
}

impl Observer for Progress {
    fn observe(&mut self, record: &Record, _iterate: Iterate<'_>) -> Result<()> {
        self.bar.set_position(record.iter);
        let key = ["hypergrad_norm_sq", "value", "outer_value"]
            .into_iter()
            .find_map(|k| record.metrics.get(k).map(|v| (k, *v)));
        if let Some((k, v)) = key {
            self.bar.set_message(format!("{k}={v:.3e}"));
        }
        Ok(())
    }
    fn finish(&mut self, summary: &RunSummary) -> Result<()> {
        self.bar.finish_with_message(format!(
            "{} after {} iterations",
            summary.status.as_str(),
            summary.iters
        ));
        Ok(())
    }
}
