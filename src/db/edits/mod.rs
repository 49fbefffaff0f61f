//! What operators change through the HTTP API or the CLI: alerts (manual ones,
//! acknowledged, resolved, deleted) and alert thresholds, commands recorded (and
//! failed when the broker does not take them), robots registered, updated and
//! deactivated, MQTT users and ACL rules, and the `logs` row that records an API
//! action. Each change an operator makes commits together with its audit row
//! (`audit.rs`). Each function is one statement (or one transaction) and reports what it
//! changed; deciding what that means for the caller (a 404, "already exists") is the
//! caller's. The ingest path's writes are `db::writes`.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod commands;
pub mod console_users;
pub mod logs;
pub mod robots;
