//! `summary.csv`: one row per completed run, derived from the traces (so a resumed grid and an
//! uninterrupted one give the same file), and the table printed at the end of `bilevel run`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};
use bilevel::run::RunSummary;

use crate::layout::Layout;

/// One completed run, as read back from its trace.
#[derive(Clone, Debug)]
pub struct Row {
    /// Position in the experiment.
    pub run_index: u64,
    /// Run id.
    pub run: String,
    /// Problem kind.
    pub problem: String,
    /// Index of the problem in the suite.
    pub problem_index: u64,
    /// Solver name: the table's `label`, else the kind.
    pub solver: String,
    /// The solver's parameters (compact JSON, without `kind`).
    pub params: String,
    /// Seed.
    pub seed: u64,
    /// The run's summary.
    pub summary: RunSummary,
}

/// The leaves of a parameter object in compact JSON, as (dotted key, value) pairs.
fn flatten(params: &str) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    let key = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&key, v, out);
                }
            }
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(params) {
        walk("", &value, &mut out);
    }
    out
}

/// Reads the header and summary lines of a complete trace.
pub fn read_trace_summary(path: &Path) -> Result<Row> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut header = None;
    let mut summary = None;
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {}: invalid JSON", path.display(), number + 1))?;
        match value.get("type").and_then(|t| t.as_str()) {
            Some("header") => header = Some(value),
            Some("summary") => summary = Some(value),
            _ => {}
        }
    }
    let header = header.with_context(|| format!("{}: no header line", path.display()))?;
    let summary = summary.with_context(|| format!("{}: no summary line", path.display()))?;
    let summary: RunSummary = serde_json::from_value(summary)
        .with_context(|| format!("{}: malformed summary line", path.display()))?;
    let text = |key: &str| {
        header
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let number = |key: &str| header.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
    let kind = |key: &str| {
        header
            .get(key)
            .and_then(|v| v.get("kind"))
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let mut params = header.get("solver").cloned().unwrap_or_default();
    if let Some(map) = params.as_object_mut() {
        map.remove("kind");
    }
    Ok(Row {
        run_index: number("run_index"),
        run: text("run"),
        problem: kind("problem"),
        problem_index: number("problem_index"),
        solver: header
            .get("label")
            .and_then(|l| l.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| kind("solver")),
        params: params.to_string(),
        seed: number("seed"),
        summary,
    })
}

/// Every complete trace of the experiment directory, in run order.
pub fn read_rows(layout: &Layout) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let dir = layout.traces();
    if !dir.exists() {
        return Ok(rows);
    }
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            rows.push(read_trace_summary(&path)?);
        }
    }
    rows.sort_by(|a, b| (a.run_index, &a.run).cmp(&(b.run_index, &b.run)));
    Ok(rows)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Renders rows as CSV: fixed columns, then every metric name (sorted), then params and message.
pub fn to_csv(rows: &[Row]) -> String {
    let metrics: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.summary.final_metrics.keys().map(String::as_str))
        .collect();
    let mut out = String::from(
        "run,problem,problem_index,solver,seed,status,stop_reason,iters,solver_time_s,oracle_calls,samples,final_metrics_iter,eval_failures",
    );
    for m in &metrics {
        out.push(',');
        out.push_str(m);
    }
    out.push_str(",params,message\n");
    for r in rows {
        let s = &r.summary;
        let stop = serde_json::to_value(s.stop_reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut fields = vec![
            csv_field(&r.run),
            csv_field(&r.problem),
            r.problem_index.to_string(),
            csv_field(&r.solver),
            r.seed.to_string(),
            s.status.as_str().to_owned(),
            stop,
            s.iters.to_string(),
            format!("{:.6}", s.solver_time_s),
            s.counts.calls().to_string(),
            s.counts.samples().to_string(),
            s.final_metrics_iter
                .map(|i| i.to_string())
                .unwrap_or_default(),
            s.eval_failures.to_string(),
        ];
        for m in &metrics {
            fields.push(
                s.final_metrics
                    .get(*m)
                    .map(|v| format!("{v:e}"))
                    .unwrap_or_default(),
            );
        }
        fields.push(csv_field(&r.params));
        fields.push(csv_field(s.message.as_deref().unwrap_or("")));
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// Rewrites `summary.csv` from the traces, atomically.
pub fn write_summary(layout: &Layout) -> Result<()> {
    let rows = read_rows(layout)?;
    bilevel::run::write_atomic(&layout.summary(), to_csv(&rows).as_bytes())?;
    Ok(())
}

/// A readable table of the rows.
pub fn table(rows: &[Row], selection_metric: Option<&str>) -> String {
    // The metric the report selects on: the experiment's, else its default rule (the first
    // present of these).
    let defaults = ["suboptimality", "value", "hypergrad_norm_sq", "outer_value"];
    let key = selection_metric.unwrap_or_else(|| {
        defaults
            .into_iter()
            .find(|k| {
                rows.iter()
                    .any(|r| r.summary.final_metrics.contains_key(*k))
            })
            .unwrap_or("outer_value")
    });
    // Solvers by their label, followed, where one label has several settings, by the parameters
    // that differ between them (`soba (outer_lr.c=1000000)`).
    let leaves: Vec<Vec<(String, String)>> = rows.iter().map(|r| flatten(&r.params)).collect();
    let name = |k: usize| {
        let r = &rows[k];
        let differing: Vec<String> = leaves[k]
            .iter()
            .filter(|(key, value)| {
                rows.iter().zip(&leaves).any(|(other, theirs)| {
                    other.solver == r.solver
                        && theirs.iter().find(|(k2, _)| k2 == key).map(|(_, v)| v) != Some(value)
                })
            })
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        if differing.is_empty() {
            r.solver.clone()
        } else {
            format!("{} ({})", r.solver, differing.join(", "))
        }
    };
    let names: Vec<String> = (0..rows.len()).map(name).collect();
    let width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut lines = vec![format!(
        "{:<width$} {:>6} {:>9} {:>9} {:>10} {:>14}",
        "solver", "seed", "status", "iters", "time (s)", key
    )];
    for (r, name) in rows.iter().zip(&names) {
        let s = &r.summary;
        lines.push(format!(
            "{:<width$} {:>6} {:>9} {:>9} {:>10.3} {:>14}",
            name,
            r.seed,
            s.status.as_str(),
            s.iters,
            s.solver_time_s,
            s.final_metrics
                .get(key)
                .map(|v| format!("{v:.4e}"))
                .unwrap_or_else(|| "-".into())
        ));
    }
    lines.join("\n")
}
