//! `bilevel bench-md`: writes `BENCHMARKS.md` from the JSON reports of `bilevel bench --json`
//! and, for ratios, the peer timing files of the same sitting (the output of
//! `../shared/peers/jax_timing.py`, as `benchmarks/peer-sitting.sh` writes them). Nothing in the
//! tables is typed by hand, and no peer figure is "measured elsewhere": a ratio is shown only
//! between a peer file and a report given together.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::bench::{BenchReport, SCALING_BATCHES, SCALING_FEATURES, read_floor_us};

/// The per-iteration speed-up over the peer the project aims for, per shape and storage
/// precision of our side (issue 16).
fn target(shape: &str, precision: &str) -> Option<f64> {
    match (shape, precision) {
        ("ijcnn1-shape", "f32") => Some(5.0),
        ("ijcnn1-shape", _) => Some(4.0),
        ("covtype-shape" | "hyperclean-shape", _) => Some(2.0),
        _ => None,
    }
}

/// One peer timing file: the output of `jax_timing.py` for one shape, with the `# key: value`
/// lines a sitting script puts before it (date, the benchmark's commit, the round).
#[derive(Clone, Debug)]
pub struct PeerFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Our shape name (`ijcnn1-shape`, …) for the peer's `ijcnn1`, ….
    pub shape: String,
    /// The JAX version the file names.
    pub jax: String,
    /// The `# key: value` lines.
    pub notes: Vec<(String, String)>,
    /// (solver, median, min, max) in µs per iteration.
    pub solvers: Vec<(String, f64, f64, f64)>,
}

/// Parses one peer file; an error names the file and the line.
fn parse_peer(path: &Path, text: &str) -> Result<PeerFile> {
    let mut peer = PeerFile {
        path: path.to_path_buf(),
        shape: String::new(),
        jax: String::new(),
        notes: Vec::new(),
        solvers: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(note) = line.strip_prefix('#') {
            if let Some((k, v)) = note.split_once(':') {
                peer.notes.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("shape ") {
            let mut parts = rest.split(';').map(str::trim);
            let shape = parts.next().unwrap_or_default();
            peer.shape = match shape {
                "ijcnn1" | "covtype" | "hyperclean" => format!("{shape}-shape"),
                other => bail!("{}:{}: unknown peer shape `{other}`", path.display(), n + 1),
            };
            peer.jax = parts
                .find_map(|p| p.strip_prefix("jax "))
                .unwrap_or("?")
                .to_owned();
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() >= 8 && tokens[1] == "median" && tokens[3] == "us/it" {
            let number = |t: &str| -> Result<f64> {
                t.trim_matches(|c| c == '[' || c == ']' || c == ',')
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .with_context(|| format!("{}:{}: `{t}` is not a time", path.display(), n + 1))
            };
            peer.solvers.push((
                tokens[0].to_owned(),
                number(tokens[2])?,
                number(tokens[5])?,
                number(tokens[7])?,
            ));
        }
    }
    if peer.shape.is_empty() {
        bail!(
            "{} is not a peer timing file (no `shape …; jax …` line from jax_timing.py)",
            path.display()
        );
    }
    if peer.solvers.is_empty() {
        bail!("{}: no `<solver> median … us/it` line", path.display());
    }
    Ok(peer)
}

/// Reads the peer files.
pub fn load_peers(paths: &[PathBuf]) -> Result<Vec<PeerFile>> {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse_peer(path, &text)
        })
        .collect()
}

fn range(low: f64, high: f64, digits: usize) -> String {
    if (low - high).abs() <= f64::EPSILON * high.abs() {
        format!("{low:.digits$}")
    } else {
        format!("{low:.digits$}–{high:.digits$}")
    }
}

/// Reads the reports.
pub fn load(paths: &[PathBuf]) -> Result<Vec<(PathBuf, BenchReport)>> {
    if paths.is_empty() {
        bail!("give at least one JSON report of `bilevel bench --json`");
    }
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let report: BenchReport = serde_json::from_str(&text).with_context(|| {
                format!("{} is not a `bilevel bench --json` report", path.display())
            })?;
            Ok((path.clone(), report))
        })
        .collect()
}

/// Renders the Markdown.
pub fn render(
    reports: &[(PathBuf, BenchReport)],
    peers: &[PeerFile],
    includes: &[(PathBuf, String)],
    out_name: &Path,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `bilevel bench-md` from the JSON reports of `bilevel bench --json` listed \
         below; do not edit by hand. To regenerate, run each report's command (release build), \
         then:\n\n```\ntarget/release/bilevel bench-md {}{}{} --out {}\n```\n",
        reports
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        if peers.is_empty() {
            String::new()
        } else {
            format!(
                " --peers {}",
                peers
                    .iter()
                    .map(|p| p.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
        if includes.is_empty() {
            String::new()
        } else {
            format!(
                " --include {}",
                includes
                    .iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
        out_name.display()
    );
    let _ = writeln!(md, "## Machine and commands\n");
    let _ = writeln!(
        md,
        "| report | CPUs | CPU model | kernels | storage | git commit | command |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for (path, r) in reports {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | `{}` | `{}` |",
            path.display(),
            r.cpus,
            r.cpu_model,
            if r.simd.is_empty() { "?" } else { &r.simd },
            r.precision,
            r.git_commit,
            r.command
        );
    }
    let _ = writeln!(
        md,
        "\nMethod: each solver starts from the problem's start, runs the warm-up, then `repeats` \
         timed blocks of `iters` iterations; µs/iteration is the median block (min and max in \
         brackets). Oracle calls and heap allocations (a counting global allocator in the \
         binary) are per iteration over all timed blocks. Evaluation never runs inside a timed \
         block; the exact evaluation of a shape is timed before its solvers run. On a shared virtual machine whole invocations drift (we have seen the same \
         binary run 40 % slower an hour later), more than the spread within one report: compare \
         figures from one report, and rerun before reading much into a few percent.\n"
    );

    peer_section(&mut md, reports, peers);
    for (path, r) in reports {
        for shape in &r.shapes {
            let _ = writeln!(
                md,
                "## {}, {} storage (`{}`)\n\n{}; dim x = {}, dim y = {}, {} outer and {} inner \
                 samples; problem built in {:.2} s. Batch {}, {} warm-up + {} × {} iterations.\n",
                shape.shape,
                r.precision,
                path.display(),
                shape.about,
                shape.dims[0],
                shape.dims[1],
                shape.dims[2],
                shape.dims[3],
                shape.build_s,
                r.batch_size,
                r.warmup,
                r.repeats,
                r.iters
            );
            let _ = writeln!(
                md,
                "| solver | µs/iteration, median [min, max] | oracle calls/it | samples/it | \
                 allocations/it | data KB/it | read floor µs/it | status |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
            for s in &shape.solvers {
                if s.us_per_iter_median.is_finite() {
                    let _ = writeln!(
                        md,
                        "| {} | {:.2} [{:.2}, {:.2}] | {:.1} | {:.0} | {:.2} | {} | {} | {} |",
                        s.solver,
                        s.us_per_iter_median,
                        s.us_per_iter_min,
                        s.us_per_iter_max,
                        s.oracle_calls_per_iter,
                        s.samples_per_iter,
                        s.allocs_per_iter,
                        or_dash(s.data_kb_per_iter, 1),
                        or_dash(read_floor_us(s.data_kb_per_iter, r.block_read_gbs), 2),
                        s.status
                    );
                } else {
                    let _ = writeln!(
                        md,
                        "| {} | – | – | – | – | – | – | {} |",
                        s.solver, s.status
                    );
                }
            }
            if let Some([median, min, max]) = shape.exact_eval_ms {
                let _ = writeln!(
                    md,
                    "\nExact evaluation (F and ∇F on the full data), warm-started from the \
                     previous point at new points: median {median:.2} ms [{min:.2}, {max:.2}]; \
                     the first one, cold: {:.2} ms.",
                    shape.exact_eval_cold_ms.unwrap_or(f64::NAN)
                );
            }
            let _ = writeln!(md);
        }
    }
    scaling_section(&mut md, reports);
    // Sections written by other benchmark scripts (each names its own command), verbatim.
    for (_, text) in includes {
        let _ = writeln!(md, "{}", text.trim_end());
        let _ = writeln!(md);
    }
    md
}

/// Reads the Markdown sections given with `--include`.
pub fn load_includes(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String)>> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("--include {}: cannot read", p.display()))?;
            if !text.trim_start().starts_with("## ") {
                bail!(
                    "--include {}: expected a Markdown section starting with a `## ` heading",
                    p.display()
                );
            }
            Ok((p.clone(), text))
        })
        .collect()
}

/// `v` with `digits` decimals, or a dash when it is unknown (NaN).
fn or_dash(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".to_owned()
    }
}

fn peer_section(md: &mut String, reports: &[(PathBuf, BenchReport)], peers: &[PeerFile]) {
    let _ = writeln!(
        md,
        "## Against the reference benchmark's JAX solvers (same sitting)\n"
    );
    if peers.is_empty() {
        let _ = writeln!(
            md,
            "No peer timing file was given (`--peers`), so this file states no ratio to a peer: \
             a ratio holds only between timings taken back to back on one machine \
             (`benchmarks/peer-sitting.sh` takes both).\n"
        );
        return;
    }
    let _ = writeln!(
        md,
        "Peer: the reference benchmark's own solvers at their defaults (JAX, float32, \
         synchronised; `../shared/peers/jax_timing.py`), timed in the same sitting as the reports \
         built from the commit the peer files name (`bilevel commit`), alternating peer and \
         bilevel round by round. Ratio = peer µs / bilevel µs per \
         iteration, round i against round i (files in the order given); the range is over \
         rounds. Per-iteration cost does not depend on the data values: the covtype and \
         hyper-cleaning rows use data of the same shape on both sides, ijcnn1 the same file.\n"
    );
    let _ = writeln!(md, "| peer file | shape | JAX | notes |");
    let _ = writeln!(md, "|---|---|---|---|");
    for p in peers {
        let notes: Vec<String> = p.notes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} |",
            p.path.display(),
            p.shape,
            p.jax,
            notes.join("; ")
        );
    }
    let _ = writeln!(md);
    let mut shapes: Vec<&str> = Vec::new();
    for p in peers {
        if !shapes.contains(&p.shape.as_str()) {
            shapes.push(&p.shape);
        }
    }
    for shape in shapes {
        let rounds: Vec<&PeerFile> = peers.iter().filter(|p| p.shape == shape).collect();
        // The reports of the sitting: those built from the commit the peer files name (all
        // reports when they name none).
        let commits: Vec<&str> = rounds
            .iter()
            .flat_map(|p| p.notes.iter())
            .filter(|(k, _)| k == "bilevel commit")
            .map(|(_, v)| v.as_str())
            .collect();
        let same_commit = |c: &str| {
            commits.is_empty()
                || commits.iter().any(|n| {
                    let k = n.len().min(c.len()).min(12);
                    k >= 7 && n.as_bytes()[..k] == c.as_bytes()[..k]
                })
        };
        let sitting: Vec<&BenchReport> = reports
            .iter()
            .filter(|(_, r)| same_commit(&r.git_commit))
            .map(|(_, r)| r)
            .collect();
        let mut precisions: Vec<&str> = Vec::new();
        for r in &sitting {
            if !precisions.contains(&r.precision.as_str()) {
                precisions.push(&r.precision);
            }
        }
        for precision in precisions {
            let ours: Vec<_> = sitting
                .iter()
                .filter(|r| r.precision == precision)
                .filter_map(|r| r.shapes.iter().find(|s| s.shape == shape))
                .collect();
            peer_table(md, shape, precision, &rounds, &ours);
        }
    }
}

/// One shape's ratios against the peer rounds, for our reports of one storage precision (round
/// i of the peer against our i-th report).
fn peer_table(
    md: &mut String,
    shape: &str,
    precision: &str,
    rounds: &[&PeerFile],
    ours: &[&crate::bench::ShapeResult],
) {
    {
        let goal = target(shape, precision);
        let _ = writeln!(
            md,
            "### {shape}, bilevel with {precision} storage: {} peer round(s), {} bilevel \
             report(s)\n",
            rounds.len(),
            ours.len()
        );
        let _ = writeln!(
            md,
            "| solver | JAX µs/it per round | bilevel µs/it per round | ratio per round | target | met |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        let mut solvers: Vec<&str> = Vec::new();
        for r in rounds {
            for (name, ..) in &r.solvers {
                if !solvers.contains(&name.as_str()) {
                    solvers.push(name);
                }
            }
        }
        for solver in solvers {
            let theirs: Vec<Option<f64>> = rounds
                .iter()
                .map(|r| r.solvers.iter().find(|s| s.0 == solver).map(|s| s.1))
                .collect();
            let mine: Vec<Option<f64>> = ours
                .iter()
                .map(|s| {
                    s.solvers
                        .iter()
                        .find(|t| t.solver == solver && t.us_per_iter_median.is_finite())
                        .map(|t| t.us_per_iter_median)
                })
                .collect();
            let list = |v: &[Option<f64>]| {
                v.iter()
                    .map(|x| x.map_or("–".to_owned(), |x| format!("{x:.1}")))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let ratios: Vec<f64> = theirs
                .iter()
                .zip(&mine)
                .filter_map(|(a, b)| Some((*a)? / (*b)?))
                .collect();
            let (ratio, met) = if ratios.is_empty() {
                ("not in the reports".to_owned(), "–".to_owned())
            } else {
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(0.0, f64::max);
                let met = match goal {
                    Some(t) if lo >= t => "yes",
                    Some(t) if hi >= t => "in some rounds",
                    Some(_) => "no",
                    None => "–",
                };
                (format!("{}×", range(lo, hi, 2)), met.to_owned())
            };
            let _ = writeln!(
                md,
                "| {solver} | {} | {} | {ratio} | {} | {met} |",
                list(&theirs),
                list(&mine),
                goal.map_or("–".to_owned(), |t| format!("≥ {t}×"))
            );
        }
        let _ = writeln!(md);
    }
}

fn scaling_section(md: &mut String, reports: &[(PathBuf, BenchReport)]) {
    for (path, r) in reports.iter().filter(|(_, r)| !r.scaling.is_empty()) {
        let _ = writeln!(
            md,
            "## Scaling in batch size and dimension (`{}`)\n\n`logreg_hpo` on the ijcnn1-shaped \
             twin (14,169 rows, half train, half validation, per-feature L2) at width d; \
             µs per iteration (median of {} repeats), and in brackets ns per sample·feature \
             (µs/it ÷ (batch · d)), which stays flat when the cost is linear in both.\n",
            path.display(),
            r.repeats
        );
        let mut solvers: Vec<&str> = Vec::new();
        for p in &r.scaling {
            if !solvers.contains(&p.solver.as_str()) {
                solvers.push(&p.solver);
            }
        }
        let mut header = "| solver | d |".to_owned();
        let mut rule = "|---|---|".to_owned();
        for b in SCALING_BATCHES {
            let _ = write!(header, " batch {b} |");
            rule.push_str("---|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for solver in solvers {
            for d in SCALING_FEATURES {
                let mut row = format!("| {solver} | {d} |");
                for b in SCALING_BATCHES {
                    match r
                        .scaling
                        .iter()
                        .find(|p| p.solver == solver && p.features == d && p.batch == b)
                    {
                        Some(p) => {
                            let _ = write!(
                                row,
                                " {:.1} ({:.2}) |",
                                p.us_per_iter_median, p.ns_per_sample_feature
                            );
                        }
                        None => row.push_str(" – |"),
                    }
                }
                let _ = writeln!(md, "{row}");
            }
        }
        let _ = writeln!(md);
    }
}
