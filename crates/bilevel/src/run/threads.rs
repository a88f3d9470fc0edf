//! The worker threads of full passes: one per CPU, each kept on its own CPU.
//!
//! Full passes and exact evaluations split their rows over rayon's global pool (minibatch steps
//! stay on the calling thread). Between two exact evaluations of a run the workers sleep, and
//! when they wake the Linux scheduler can place both on one CPU and leave the other idle for
//! tens of milliseconds: on the 2-core benchmark machine the first seven warm exact evaluations
//! of ijcnn1 ran at one-thread speed (6.3–8.5 ms; both workers' samples on CPU 0 in `perf`),
//! the later ones at two-thread speed (3.1–4.1 ms). [`pin_pool_threads`] builds the pool with
//! worker i bound to the i-th CPU the process may use, so every pass gets every CPU from the
//! start (3.1–4.1 ms for all twenty points). Values never depend on it: passes split and add
//! their blocks in a fixed order whatever thread runs them.
//!
//! It binds only when the pool would have exactly one worker per allowed CPU (the default, or
//! `RAYON_NUM_THREADS` equal to that count): with fewer workers than CPUs, several processes
//! binding their workers to the same first CPUs would crowd them. `BILEVEL_PIN_THREADS=0` turns
//! it off.

/// Why the pool's workers were or were not bound to CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// Worker i runs on `cpus[i]` only.
    Pinned {
        /// The CPU of each worker, in worker order.
        cpus: Vec<usize>,
    },
    /// Not bound, and why.
    Unpinned(&'static str),
}

impl std::fmt::Display for Pinning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pinning::Pinned { cpus } => {
                let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
                write!(f, "one per CPU, bound to CPUs {}", list.join(","))
            }
            Pinning::Unpinned(why) => write!(f, "not bound to CPUs ({why})"),
        }
    }
}

static OUTCOME: std::sync::OnceLock<Pinning> = std::sync::OnceLock::new();

/// What [`pin_pool_threads`] did, once it has been called (`bilevel bench` prints it).
pub fn pinning() -> Option<&'static Pinning> {
    OUTCOME.get()
}

/// Builds rayon's global pool with one worker per allowed CPU, worker i bound to the i-th of
/// them (see the module documentation), unless `BILEVEL_PIN_THREADS=0`, `RAYON_NUM_THREADS`
/// asks for another count, the CPUs cannot be read, or the pool already exists (then it is left
/// as it is). Call it once, before the first parallel pass.
pub fn pin_pool_threads() -> Pinning {
    let outcome = pin();
    let _ = OUTCOME.set(outcome.clone());
    outcome
}

fn pin() -> Pinning {
    if std::env::var("BILEVEL_PIN_THREADS").is_ok_and(|v| v.trim() == "0") {
        return Pinning::Unpinned("BILEVEL_PIN_THREADS=0");
    }
    // The CPUs of the calling thread's affinity mask (a Slurm allocation or `taskset` narrows
    // it), read before any worker is bound.
    let Some(cores) = core_affinity::get_core_ids().filter(|c| !c.is_empty()) else {
        return Pinning::Unpinned("the allowed CPUs cannot be read here");
    };
    let requested = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    if requested.is_some_and(|n| n != cores.len()) {
        return Pinning::Unpinned("RAYON_NUM_THREADS differs from the CPU count");
    }
    let cpus: Vec<usize> = cores.iter().map(|c| c.id).collect();
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(cores.len())
        .start_handler(move |worker| {
            // Best effort: a refused binding leaves the worker free, with the same values.
            let _ = core_affinity::set_for_current(cores[worker]);
        })
        .build_global();
    match built {
        Ok(()) => Pinning::Pinned { cpus },
        Err(_) => Pinning::Unpinned("the thread pool was already running"),
    }
}
