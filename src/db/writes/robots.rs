//! `robots`: one upsert per robot per batch, and the status-change log rows.
//!
//! A status change inside the batch is logged as the batch is gathered; the change from
//! the stored status to the batch's first status is logged once the upsert has returned
//! the stored one. Both go through [`status_change_log`], the one place that says how a
//! change is logged. An older status (a resend) never overwrites a newer one
//! (`robots.status_at`) and logs nothing.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::clean;
use crate::model::{Decoded, LogRow, status_change_log};

#[derive(Default)]
struct RobotAgg {
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    first_status: Option<(String, DateTime<Utc>)>,
    last_status: Option<(String, DateTime<Utc>)>,
    ip_address: Option<String>,
    camera_url: Option<String>,
}

/// A robot as the upsert left it, with the status it had before.
#[derive(sqlx::FromRow)]
struct Stored {
    robot_id: String,
    id: i32,
    status: Option<String>,
    status_at: Option<DateTime<Utc>>,
}

/// The robots of one batch, in robot-id order.
#[derive(Default)]
pub(super) struct Robots<'a> {
    by_id: BTreeMap<&'a str, RobotAgg>,
}

impl<'a> Robots<'a> {
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds one message; a status change within the batch is pushed to `logs`.
    pub fn add(&mut self, d: &'a Decoded, received_at: DateTime<Utc>, logs: &mut Vec<LogRow>) {
        let agg = self.by_id.entry(d.robot_id.as_str()).or_default();
        agg.first_seen = Some(agg.first_seen.map_or(received_at, |t| t.min(received_at)));
        agg.last_seen = Some(agg.last_seen.map_or(received_at, |t| t.max(received_at)));
        let Some(state) = &d.state else {
            return;
        };
        if let Some(status) = &state.status {
            let status = clean(status);
            match &agg.last_status {
                None => agg.first_status = Some((status.clone(), d.ts)),
                Some((prev, _)) if *prev != status => {
                    logs.push(status_change_log(&d.robot_id, prev, &status, d.ts));
                }
                Some(_) => {}
            }
            agg.last_status = Some((status, d.ts));
        }
        if let Some(ip) = &state.ip_address {
            agg.ip_address = Some(clean(ip));
        }
        if let Some(url) = &state.camera_url {
            agg.camera_url = Some(clean(url));
        }
    }

    /// Upserts every robot; pushes the change from each stored status to the batch's
    /// first status onto `logs`. Returns each robot's integer key (`robots.id`).
    pub async fn upsert(
        &self,
        conn: &mut PgConnection,
        logs: &mut Vec<LogRow>,
    ) -> Result<HashMap<String, i32>, sqlx::Error> {
        let n = self.by_id.len();
        let mut ids = Vec::with_capacity(n);
        let mut first_seen = Vec::with_capacity(n);
        let mut last_seen = Vec::with_capacity(n);
        let mut last_status: Vec<Option<String>> = Vec::with_capacity(n);
        let mut last_status_ts: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
        let mut ips: Vec<Option<String>> = Vec::with_capacity(n);
        let mut cams: Vec<Option<String>> = Vec::with_capacity(n);
        for (id, a) in &self.by_id {
            ids.push(id.to_string());
            first_seen.push(a.first_seen);
            last_seen.push(a.last_seen);
            last_status.push(a.last_status.as_ref().map(|(s, _)| s.clone()));
            last_status_ts.push(a.last_status.as_ref().map(|(_, t)| *t));
            ips.push(a.ip_address.clone());
            cams.push(a.camera_url.clone());
        }
        // `prev` reads the rows as they were before this statement (one snapshot for all
        // CTEs), so it returns the stored status the batch's first status replaces.
        let stored: Vec<Stored> = sqlx::query_as(
            r#"
            WITH input AS (
                SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[],
                                     $5::timestamptz[], $6::text[], $7::text[])
                  AS t(robot_id, first_seen, last_seen, last_status, last_status_ts, ip_address, camera_url)
            ),
            prev AS (
                SELECT r.robot_id, r.status, r.status_at FROM robots r JOIN input i ON i.robot_id = r.robot_id
            ),
            upserted AS (
                INSERT INTO robots AS r (robot_id, first_seen, last_seen, status, status_at, ip_address, camera_url)
                SELECT robot_id, first_seen, last_seen, COALESCE(last_status, 'unknown'), last_status_ts,
                       ip_address, camera_url
                FROM input
                ON CONFLICT (robot_id) DO UPDATE SET
                    first_seen = LEAST(r.first_seen, EXCLUDED.first_seen),
                    last_seen  = GREATEST(r.last_seen, EXCLUDED.last_seen),
                    -- An older status (a resend) never overwrites a newer one.
                    status     = CASE WHEN EXCLUDED.status_at >= r.status_at OR r.status_at IS NULL
                                      THEN COALESCE((SELECT i.last_status FROM input i WHERE i.robot_id = EXCLUDED.robot_id), r.status)
                                      ELSE r.status END,
                    status_at  = GREATEST(r.status_at, EXCLUDED.status_at),
                    ip_address = COALESCE(EXCLUDED.ip_address, r.ip_address),
                    camera_url = COALESCE(EXCLUDED.camera_url, r.camera_url),
                    updated_at = now()
                RETURNING r.robot_id, r.id
            )
            SELECT u.robot_id, u.id, p.status, p.status_at FROM upserted u LEFT JOIN prev p ON p.robot_id = u.robot_id
            "#,
        )
        .bind(&ids)
        .bind(&first_seen)
        .bind(&last_seen)
        .bind(&last_status)
        .bind(&last_status_ts)
        .bind(&ips)
        .bind(&cams)
        .fetch_all(&mut *conn)
        .await?;
        for Stored {
            robot_id: id,
            status: prev_status,
            status_at: prev_at,
            ..
        } in &stored
        {
            let Some((status, ts)) = self
                .by_id
                .get(id.as_str())
                .and_then(|a| a.first_status.as_ref())
            else {
                continue;
            };
            let changed = prev_status.as_deref() != Some(status.as_str());
            let newer = prev_at.is_none_or(|at| *ts > at);
            if changed && newer {
                let from = prev_status.as_deref().unwrap_or("unknown");
                logs.push(status_change_log(id, from, status, *ts));
            }
        }
        Ok(stored.into_iter().map(|s| (s.robot_id, s.id)).collect())
    }
}
