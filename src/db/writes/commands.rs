//! `commands`: the robots' answers of a batch, matched to the commands they name.
//!
//! A reply names its command by id and comes from one robot; it answers that robot's
//! row of the command (a broadcast has one row per robot it expected answers from). The
//! rows are read and locked, each answer is judged against its command
//! ([`commands::judge`]: only an emergency-stop answer confirms an emergency stop), and
//! the verdicts are written in one statement. A command already acknowledged or failed
//! keeps its first verdict, so a resent answer changes nothing; one still `sent`,
//! `unconfirmed` or `expired` takes the verdict (a late confirmation is still one). A
//! robot that answers a broadcast it was not expected to (it was offline when the
//! broadcast was sent) gets a row of its own.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{clean, clean_json};
use crate::commands;
use crate::model::CommandReply;

/// A robot's answer as the batch carries it.
pub struct Answer<'a> {
    pub robot_id: &'a str,
    pub reply: &'a CommandReply,
    pub at: DateTime<Utc>,
}

/// A stored command row an answer may settle.
#[derive(sqlx::FromRow)]
struct Stored {
    id: i64,
    command_id: String,
    robot_id: Option<String>,
    command: String,
    status: String,
    broadcast: bool,
}

/// What the batch writes for one answer.
struct Settled {
    status: &'static str,
    payload: String,
    at: DateTime<Utc>,
}

/// Records the verdicts of `answers`; returns how many command rows changed.
pub async fn record(conn: &mut PgConnection, answers: &[Answer<'_>]) -> Result<u64, sqlx::Error> {
    let mut ids: Vec<String> = answers.iter().map(|a| clean(&a.reply.command_id)).collect();
    ids.sort_unstable();
    ids.dedup();
    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT id, command_id, robot_id, command, status, broadcast FROM commands \
         WHERE command_id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    if stored.is_empty() {
        return Ok(0);
    }
    // Updates by row id; answers to a broadcast from robots without a row, by
    // (command id, robot). The first answer that settles a command wins.
    let mut updates: HashMap<i64, Settled> = HashMap::new();
    let mut joins: HashMap<(String, String), Settled> = HashMap::new();
    for a in answers {
        let command_id = clean(&a.reply.command_id);
        let robot_id = clean(a.robot_id);
        let own = stored
            .iter()
            .find(|s| s.command_id == command_id && s.robot_id.as_deref() == Some(&robot_id));
        let (command, open) = match own {
            Some(s) => (
                &s.command,
                matches!(s.status.as_str(), "sent" | "unconfirmed" | "expired"),
            ),
            None => match stored
                .iter()
                .find(|s| s.command_id == command_id && s.broadcast)
            {
                Some(b) => (&b.command, true),
                None => continue,
            },
        };
        let Some(status) = commands::judge(command, a.reply).status().filter(|_| open) else {
            continue;
        };
        let settled = Settled {
            status,
            payload: clean_json(&a.reply.payload).to_string(),
            at: a.at,
        };
        match own {
            Some(s) => {
                updates.entry(s.id).or_insert(settled);
            }
            None => {
                joins.entry((command_id, robot_id)).or_insert(settled);
            }
        }
    }
    let mut changed = 0;
    if !updates.is_empty() {
        let (ids, rest): (Vec<i64>, Vec<Settled>) = updates.into_iter().unzip();
        let (status, payload, at) = columns(&rest);
        changed += sqlx::query(
            "UPDATE commands c SET status = r.status, response = r.payload::jsonb, responded_at = r.at \
             FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::timestamptz[]) AS r(id, status, payload, at) \
             WHERE c.id = r.id",
        )
        .bind(&ids)
        .bind(&status)
        .bind(&payload)
        .bind(&at)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    if !joins.is_empty() {
        let (keys, rest): (Vec<(String, String)>, Vec<Settled>) = joins.into_iter().unzip();
        let (command_ids, robot_ids): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let (status, payload, at) = columns(&rest);
        changed += sqlx::query(
            "INSERT INTO commands (command_id, robot_id, command, topic, payload, sent_at, \
                                   status, response, responded_at, broadcast) \
             SELECT DISTINCT ON (r.command_id, r.robot_id) r.command_id, r.robot_id, b.command, \
                    b.topic, b.payload, b.sent_at, r.status, r.payload::jsonb, r.at, true \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
                  AS r(command_id, robot_id, status, payload, at) \
             JOIN commands b ON b.command_id = r.command_id AND b.broadcast \
             ORDER BY r.command_id, r.robot_id, b.id \
             ON CONFLICT DO NOTHING",
        )
        .bind(&command_ids)
        .bind(&robot_ids)
        .bind(&status)
        .bind(&payload)
        .bind(&at)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(changed)
}

fn columns(rows: &[Settled]) -> (Vec<&str>, Vec<&str>, Vec<DateTime<Utc>>) {
    (
        rows.iter().map(|r| r.status).collect(),
        rows.iter().map(|r| r.payload.as_str()).collect(),
        rows.iter().map(|r| r.at).collect(),
    )
}
