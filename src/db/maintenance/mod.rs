//! The SQL of fleetsink's upkeep, outside the ingest path: day partitions (`days.rs`
//! names and creates one, `partitions.rs` runs the maintenance round, `archive.rs`
//! exports a partition before it is dropped and restores one), the offline sweep and
//! robots gauge (`offline.rs`), and settling commands no answer will settle
//! (`commands.rs`), planner statistics for tables that grew from nothing
//! (`analyze.rs`).
//!
//! Only one-shot functions live here; when and how often they run, and what happens
//! when one fails, is `crate::background`'s. Imports point one way:
//! `partitions` → `archive` → `days`, and `partitions` → `days`.

pub mod analyze;
pub mod archive;
pub mod commands;
pub mod days;
pub mod offline;
pub mod partitions;
