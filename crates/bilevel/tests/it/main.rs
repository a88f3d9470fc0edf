//! Integration tests of the `bilevel` library.
//!
//! One test binary for the crate (each former `tests/*.rs` file is a module here): linking
//! one binary instead of one per file is most of a fresh `cargo test`'s time.
//!
//! Two files stay binaries of their own, because they change process-wide state that other
//! tests running in parallel would see: `no_alloc.rs` installs a counting global allocator, and
//! `simd_levels.rs` caps the instruction set of every kernel.

#[path = "../common/mod.rs"]
mod common;

mod a9a_hpo;
mod all_algorithms_converge;
mod baseline_estimators;
mod baseline_mechanics;
mod benchmark_replay;
mod data_files;
mod docs;
mod exact_evaluation;
mod hyperclean_mnist;
mod hypergradient;
mod lancbio_dynamic;
mod library_api;
mod mechanics;
mod meta_estimators;
mod networks;
mod oracle_counts;
mod oracles;
mod problems;
mod seed_configs;
mod seed_estimators;
mod seed_variants;
mod trustworthy_runs;
