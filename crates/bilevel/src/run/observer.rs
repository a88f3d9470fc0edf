//! Observers of a run: a JSONL trace on disk, an in-memory trace and a progress bar.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::checkpoint::write_atomic;
use super::runner::{Record, RunSummary};
use crate::core::{Error, Result};

/// Notified by the [`Runner`](super::Runner) at every evaluation point and once at the end.
pub trait Observer {
    /// A new evaluation record.
    fn observe(&mut self, record: &Record) -> Result<()>;
    /// The run ended.
    fn finish(&mut self, _summary: &RunSummary) -> Result<()> {
        Ok(())
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
    fn observe(&mut self, record: &Record) -> Result<()> {
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

/// Collects records in memory.
pub struct InMemory<'a> {
    /// The records, in order.
    pub records: &'a mut Vec<Record>,
}

impl<'a> InMemory<'a> {
    /// Appends records to `records`.
    pub fn new(records: &'a mut Vec<Record>) -> Self {
        Self { records }
    }
}

impl Observer for InMemory<'_> {
    fn observe(&mut self, record: &Record) -> Result<()> {
        self.records.push(record.clone());
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
    fn observe(&mut self, record: &Record) -> Result<()> {
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
