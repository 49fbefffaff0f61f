//! The audit trail's rows: every edit in `db::edits` that operators make ends its
//! transaction with [`commit`], which writes the `audit` row and a `logs` row (category
//! `audit`, level INFO: TonyPi's Logs page shows it) in that transaction, commits, and
//! only then logs the daemon's line. An edit that changed nothing (a 404) rolls back
//! without rows; one whose audit rows fail does not commit.

use chrono::Utc;
use serde_json::json;
use sqlx::{PgConnection, Postgres, Transaction};

use crate::audit::{self, Actor, Entry};
use crate::db::writes::{clean, clean_json, insert_logs};
use crate::model::{LogRow, message_fingerprint};

/// The `logs` category of the audit rows.
pub const LOG_CATEGORY: &str = "audit";

/// Writes `e` by `actor` into the audit trail, commits `tx`, then logs the line.
pub async fn commit(
    mut tx: Transaction<'_, Postgres>,
    actor: &Actor,
    e: &Entry,
) -> Result<(), sqlx::Error> {
    record(&mut tx, actor, e).await?;
    tx.commit().await?;
    audit::log(actor, e);
    Ok(())
}

/// The `audit` row and its `logs` row, on `conn` (inside the change's transaction).
async fn record(conn: &mut PgConnection, actor: &Actor, e: &Entry) -> Result<(), sqlx::Error> {
    let details = clean_json(&e.details);
    let address = actor.address.map(|a| a.to_string());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO audit (actor, actor_kind, address, action, target, details, command_id) \
         VALUES ($1, $2, $3::inet, $4, $5, $6, $7) RETURNING id",
    )
    .bind(clean(&actor.name))
    .bind(actor.kind.as_str())
    .bind(&address)
    .bind(e.action)
    .bind(e.target.as_deref().map(clean))
    .bind(&details)
    .bind(&e.command_id)
    .fetch_one(&mut *conn)
    .await?;
    let row = LogRow {
        robot_id: e.robot_id.clone(),
        ts: Utc::now(),
        level: "INFO".into(),
        category: LOG_CATEGORY.into(),
        source: Some("fleetsink".into()),
        message: e.message(actor),
        details: Some(json!({
            "audit_id": id,
            "actor": actor.name,
            "actor_kind": actor.kind.as_str(),
            "address": address,
            "action": e.action,
            "target": e.target,
            "command_id": e.command_id,
            "details": details,
        })),
        dedup_key: message_fingerprint("audit", &id.to_be_bytes()),
    };
    insert_logs(conn, &[row]).await?;
    Ok(())
}
