//! What the HTTP API and the MQTT auth cache read, one file per subject. Each function
//! is one query on the pool that returns typed rows; the handlers in `http/` only parse
//! the request and shape the answer, so every query the API runs can be found (and its
//! plan checked) here. Nothing here writes.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod commands;
pub mod console_users;
pub mod ingest_errors;
pub mod jobs;
pub mod logs;
pub mod metrics;
pub mod robot_data;
pub mod robots;
