//! fleetsink's own API, beside the TonyPi-compatible routes: robots' metric readings
//! (`metrics.rs`: time buckets, latest values, names), what the pipeline rejected
//! (`ingest_errors.rs`), commands (`commands.rs`: a generic device's command, a
//! robot's command list) and the audit trail (`audit.rs`).

pub mod audit;
pub mod commands;
pub mod ingest_errors;
pub mod metrics;
