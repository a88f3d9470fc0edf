//! `run::threads::pin_pool_threads` in a test binary of its own (it builds the process-wide
//! pool): every worker ends up bound to its own allowed CPU, and a second call leaves the pool
//! alone.

use bilevel::run::threads::{Pinning, pin_pool_threads, pinning};

#[test]
fn workers_are_bound_one_per_allowed_cpu() {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .expect("the affinity mask is readable on Linux")
        .iter()
        .map(|c| c.id)
        .collect();
    let rayon_threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    let off = std::env::var("BILEVEL_PIN_THREADS").is_ok_and(|v| v.trim() == "0");
    let outcome = pin_pool_threads();
    eprintln!("pool: {outcome}");
    assert_eq!(pinning(), Some(&outcome));
    if off || rayon_threads.is_some_and(|n| n != allowed.len()) {
        assert!(matches!(outcome, Pinning::Unpinned(_)), "{outcome}");
        return;
    }
    assert_eq!(
        outcome,
        Pinning::Pinned {
            cpus: allowed.clone()
        }
    );
    assert_eq!(rayon::current_num_threads(), allowed.len());
    // Inside each worker, its affinity mask is its one CPU.
    let seen: Vec<(usize, Vec<usize>)> = rayon::broadcast(|ctx| {
        let mask = core_affinity::get_core_ids()
            .unwrap_or_default()
            .iter()
            .map(|c| c.id)
            .collect();
        (ctx.index(), mask)
    });
    for (worker, mask) in seen {
        assert_eq!(mask, vec![allowed[worker]], "worker {worker}");
    }
    // The pool exists now: a second call changes nothing.
    assert!(matches!(pin_pool_threads(), Pinning::Unpinned(_)));
    assert!(
        outcome
            .to_string()
            .starts_with("one per CPU, bound to CPUs")
    );
}
