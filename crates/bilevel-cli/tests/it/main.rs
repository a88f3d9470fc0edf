//! Integration tests of the `bilevel` command (they run the built binary).
//!
//! One test binary for the crate (each former `tests/*.rs` file is a module here): linking
//! one binary instead of one per file is most of a fresh `cargo test`'s time.

#[path = "../common/mod.rs"]
mod common;

mod bench;
mod budget_override;
mod cli;
mod data_fetch;
mod experiments;
mod shards;
mod trustworthy;
