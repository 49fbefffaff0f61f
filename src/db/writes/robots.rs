//! `robots`: one upsert per robot per batch, and the lifecycle log rows (category
//! `robot`): first seen, every status change, back online, reactivated.
//!
//! Per batch, a robot whose row the batch changes goes the full way: its stored row is
//! read, its new status decided here ([`next_status`]), and the row upserted. Most
//! messages change nothing but `last_seen`, and for those [`RobotCache`] remembers the
//! row as fleetsink last wrote it (an online, active robot, its integer key, address
//! and camera): such a robot's row is only checked (status, active, silent: one indexed
//! read for all of the batch's cached robots, which returns only the rows that differ
//! from the cache), and written only once `last_seen` has moved by
//! `robots.last_seen_every`, in the same statement. A change made elsewhere (swept
//! offline, deactivated, another instance) sends the robot down the full way in the
//! same transaction, so the rules below hold as if every row were read. A status
//! message that repeats the cached status (TonyPi robots send one every 10 s) only
//! moves `last_seen` and `status_at` in that statement. A status change, a new address
//! or camera, or a robot the cache does not hold (or holds as offline or inactive)
//! always goes the full way. This took the robots statements from the largest share of
//! PostgreSQL's time per batch to a small one (BENCHMARKS.md, "Performance v3"). Robots
//! stored `offline` or inactive are read again `FOR UPDATE` first (in robot-id order,
//! so instances cannot deadlock): a transition keyed by receive time (back online,
//! reactivated) is then logged by exactly one transaction even with several instances.
//! Locking every robot of every batch cost 25 % of embedded after-commit throughput
//! (BENCHMARKS.md).
//!
//! Status rules:
//! - a `status` message sets the status unless it is older (payload time) than the
//!   status stored (`robots.status_at`): a resend never rolls state back;
//! - with no status message, a message newer than the stored status (payload time)
//!   makes an `offline` robot `online` again ("back online"); so does a message without
//!   a payload time, but only when the robot was marked offline for silence
//!   (`robots.silent_since`): after an `offline` the robot announced itself, such a
//!   message may be a resend from before;
//! - `last_seen` is the receive time, so the offline sweeper (`db::robots`) judges
//!   silence by fleetsink's clock, never by a robot's drifting one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::clean;
use crate::model::{Decoded, LogRow, TsSource, first_seen_log, reactivated_log, status_change_log};

#[derive(Default)]
struct RobotAgg {
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    first_status: Option<(String, DateTime<Utc>)>,
    last_status: Option<(String, DateTime<Utc>)>,
    /// Status changes inside the batch after the first status.
    changes: Vec<LogRow>,
    /// The oldest message time of the batch (payload time, else receive time).
    first_ts: Option<DateTime<Utc>>,
    /// The newest payload time of the batch's messages that had one.
    latest_stamped: Option<DateTime<Utc>>,
    /// Some message had no usable payload time (stored at receive time).
    unstamped: bool,
    ip_address: Option<String>,
    camera_url: Option<String>,
}

/// A robot's row as stored before this batch.
#[derive(sqlx::FromRow)]
struct Stored {
    robot_id: String,
    status: String,
    status_at: Option<DateTime<Utc>>,
    silent_since: Option<DateTime<Utc>>,
    is_active: bool,
}

/// What the batch does to a robot's status.
#[derive(Debug, PartialEq)]
enum Next {
    /// A status message newer than the stored one: set it (with its payload time).
    Reported(String, DateTime<Utc>),
    /// No (new) status message, but the robot spoke again after going offline.
    BackOnline,
    Unchanged,
}

/// A robot's row after the upsert.
#[derive(sqlx::FromRow)]
struct Upserted {
    robot_id: String,
    id: i32,
    inserted: bool,
    status: String,
    is_active: bool,
    silent: bool,
    ip_address: Option<String>,
    camera_url: Option<String>,
    last_seen: Option<DateTime<Utc>>,
}

/// What fleetsink last wrote of a robot that was online and active then.
#[derive(Debug, Clone)]
struct Known {
    id: i32,
    status: String,
    ip_address: Option<String>,
    camera_url: Option<String>,
    /// The `last_seen` written.
    last_seen: DateTime<Utc>,
}

/// Robots held at most; past it the cache starts over (it refills from the full way).
const MAX_CACHED: usize = 200_000;

/// The robots rows fleetsink wrote, for batches that change nothing but `last_seen`
/// (module docs). Shared by the sink workers; a robot's messages all go to one worker,
/// so its entry is never written by two batches at once.
#[derive(Debug)]
pub struct RobotCache {
    known: Mutex<HashMap<String, Known>>,
    last_seen_every: chrono::Duration,
}

/// What a batch learned about robots rows; kept by [`RobotCache::note`] only once the
/// batch committed.
#[derive(Debug, Default)]
pub struct RobotNotes {
    known: Vec<(String, Known)>,
    forget: Vec<String>,
}

impl RobotNotes {
    /// The row of `robot_id` may change in this batch in a way the cache cannot see
    /// (a command answer sets its status): drop it after commit.
    pub fn forget(&mut self, robot_id: &str) {
        self.forget.push(robot_id.to_string());
    }
}

impl RobotCache {
    pub fn new(last_seen_every: Duration) -> Self {
        Self {
            known: Mutex::new(HashMap::new()),
            last_seen_every: chrono::Duration::from_std(last_seen_every)
                .unwrap_or(chrono::Duration::MAX),
        }
    }

    /// Keeps what a committed batch wrote.
    pub fn note(&self, notes: RobotNotes) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for id in &notes.forget {
            known.remove(id);
        }
        if known.len() + notes.known.len() > MAX_CACHED {
            known.clear();
        }
        known.extend(notes.known);
    }

    fn get<'a>(&self, ids: impl Iterator<Item = &'a str>) -> HashMap<String, Known> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        ids.filter_map(|id| known.get(id).map(|k| (id.to_string(), k.clone())))
            .collect()
    }
}

/// A robot of the batch the cache answers for.
struct Checked<'a> {
    id: &'a str,
    known: &'a Known,
    /// Its row is written: `last_seen` is due, or a status message repeated the status
    /// (`last_seen`, and the status message's time for `status_at`).
    touch: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
}

impl RobotAgg {
    /// No status message, or only ones that say `status` (no change within the batch).
    fn repeats_status(&self, status: &str) -> bool {
        match (&self.first_status, &self.last_status) {
            (_, None) => true,
            (Some((first, _)), Some((last, _))) => {
                first == status && last == status && self.changes.is_empty()
            }
            (None, Some(_)) => false,
        }
    }
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

    /// Adds one message.
    pub fn add(&mut self, d: &'a Decoded, received_at: DateTime<Utc>) {
        let agg = self.by_id.entry(d.robot_id.as_str()).or_default();
        agg.first_seen = Some(agg.first_seen.map_or(received_at, |t| t.min(received_at)));
        agg.last_seen = Some(agg.last_seen.map_or(received_at, |t| t.max(received_at)));
        agg.first_ts = Some(agg.first_ts.map_or(d.ts, |t| t.min(d.ts)));
        if d.ts_source == TsSource::Payload {
            agg.latest_stamped = Some(agg.latest_stamped.map_or(d.ts, |t| t.max(d.ts)));
        } else {
            agg.unstamped = true;
        }
        let Some(state) = &d.state else {
            return;
        };
        if let Some(status) = &state.status {
            let status = clean(status);
            match &agg.last_status {
                None => agg.first_status = Some((status.clone(), d.ts)),
                Some((prev, _)) if *prev != status => {
                    let row = status_change_log(&d.robot_id, prev, &status, d.ts);
                    agg.changes.push(row);
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

    /// Writes what the batch changes of every robot (module docs) and pushes lifecycle
    /// rows onto `logs`. Returns each robot's integer key (`robots.id`) and how many
    /// `robots` rows were written (a robot the cache answered for, with no `last_seen`
    /// due, is only checked).
    pub async fn upsert(
        &self,
        conn: &mut PgConnection,
        cache: &RobotCache,
        notes: &mut RobotNotes,
        logs: &mut Vec<LogRow>,
    ) -> Result<(HashMap<String, i32>, u64), sqlx::Error> {
        let mut written = 0;
        let cached = cache.get(self.by_id.keys().copied());
        let mut keys = HashMap::with_capacity(self.by_id.len());
        let mut full: Vec<&str> = Vec::new();
        let mut checked: Vec<Checked> = Vec::new();
        for (id, agg) in &self.by_id {
            let same = |new: &Option<String>, old: &Option<String>| new.is_none() || new == old;
            match cached.get(*id) {
                Some(k)
                    if agg.repeats_status(&k.status)
                        && same(&agg.ip_address, &k.ip_address)
                        && same(&agg.camera_url, &k.camera_url) =>
                {
                    keys.insert(id.to_string(), k.id);
                    let seen = agg.last_seen.unwrap_or_else(Utc::now);
                    let status_at = agg.last_status.as_ref().map(|(_, at)| *at);
                    let due = status_at.is_some() || seen - k.last_seen >= cache.last_seen_every;
                    checked.push(Checked {
                        id,
                        known: k,
                        touch: due.then_some((seen, status_at)),
                    });
                }
                _ => full.push(id),
            }
        }
        if !checked.is_empty() {
            // One statement: `last_seen` (and `status_at`, for a status message that
            // repeats the status) for the robots due, and the robots the cache answered
            // for whose row changed elsewhere (status, deactivated, gone silent,
            // deleted): only those come back, most batches none. `status_at` moves only
            // while the row still has that status; one that changed goes the full way
            // below, in this transaction, and is decided there from the row.
            let ids: Vec<i32> = checked.iter().map(|c| c.known.id).collect();
            let statuses: Vec<&str> = checked.iter().map(|c| c.known.status.as_str()).collect();
            let (mut touch_ids, mut touch_seen, mut touch_status, mut touch_status_at) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for c in checked.iter() {
                if let Some((seen, status_at)) = c.touch {
                    touch_ids.push(c.known.id);
                    touch_seen.push(seen);
                    touch_status.push(c.known.status.as_str());
                    touch_status_at.push(status_at);
                }
            }
            let changed: Vec<i32> = sqlx::query_scalar(
                "WITH touched AS ( \
                     UPDATE robots r SET last_seen = GREATEST(r.last_seen, u.seen), \
                         status_at = CASE WHEN r.status = u.status \
                                          THEN GREATEST(r.status_at, u.status_at) \
                                          ELSE r.status_at END, \
                         updated_at = now() \
                     FROM UNNEST($2::int4[], $3::timestamptz[], $5::text[], $6::timestamptz[]) \
                          AS u(id, seen, status, status_at) \
                     WHERE r.id = u.id) \
                 SELECT e.id FROM UNNEST($1::int4[], $4::text[]) AS e(id, status) \
                 LEFT JOIN robots r ON r.id = e.id \
                 WHERE r.id IS NULL OR r.status <> e.status OR NOT r.is_active \
                    OR r.silent_since IS NOT NULL",
            )
            .bind(&ids)
            .bind(&touch_ids)
            .bind(&touch_seen)
            .bind(&statuses)
            .bind(&touch_status)
            .bind(&touch_status_at)
            .fetch_all(&mut *conn)
            .await?;
            written += touch_ids.len() as u64;
            let changed: HashSet<i32> = changed.into_iter().collect();
            for Checked { id, known, touch } in checked {
                if changed.contains(&known.id) {
                    // Changed since fleetsink wrote it: decide again from the row.
                    keys.remove(id);
                    full.push(id);
                } else if let Some((seen, _)) = touch {
                    let known = Known {
                        last_seen: seen,
                        ..known.clone()
                    };
                    notes.known.push((id.to_string(), known));
                }
            }
        }
        if !full.is_empty() {
            full.sort_unstable();
            self.upsert_full(conn, &full, notes, logs, &mut keys)
                .await?;
            written += full.len() as u64;
        }
        Ok((keys, written))
    }

    /// The full way for `ids` (sorted): read, decide, upsert, log.
    async fn upsert_full(
        &self,
        conn: &mut PgConnection,
        ids: &[&str],
        notes: &mut RobotNotes,
        logs: &mut Vec<LogRow>,
        keys: &mut HashMap<String, i32>,
    ) -> Result<(), sqlx::Error> {
        let aggs: Vec<&RobotAgg> = ids.iter().filter_map(|id| self.by_id.get(id)).collect();
        let mut stored = read_stored(conn, ids, false).await?;
        // Robots that may come back online or be reactivated: those rows are read again
        // under a row lock, so of two instances only one sees the old state and logs the
        // transition. (Status-message transitions need no lock: their rows are keyed by
        // the message's own time, so a second write of the same change is a no-op.)
        let contested: Vec<&str> = stored
            .values()
            .filter(|s| s.status == "offline" || !s.is_active)
            .map(|s| s.robot_id.as_str())
            .collect();
        if !contested.is_empty() {
            let locked = read_stored(conn, &contested, true).await?;
            stored.extend(locked);
        }

        let next: Vec<Next> = ids
            .iter()
            .zip(&aggs)
            .map(|(id, a)| next_status(a, stored.get(*id)))
            .collect();
        let (status, status_at): (Vec<Option<&str>>, Vec<Option<DateTime<Utc>>>) = next
            .iter()
            .map(|n| match n {
                Next::Reported(s, at) => (Some(s.as_str()), Some(*at)),
                Next::BackOnline => (Some("online"), None),
                Next::Unchanged => (None, None),
            })
            .unzip();
        // Robots stored before the batch are updated by row; only new ones go through
        // the insert, whose conflict branch covers another instance creating the robot
        // a moment ago. (One upsert for all cost a correlated lookup per row.)
        let (known, new): (Vec<usize>, Vec<usize>) =
            (0..ids.len()).partition(|i| stored.contains_key(ids[*i]));
        let mut upserted: Vec<Upserted> = Vec::with_capacity(ids.len());
        for (part, sql) in [(&known, UPDATE_STORED), (&new, INSERT_NEW)] {
            if part.is_empty() {
                continue;
            }
            let col = |f: &dyn Fn(usize) -> Option<DateTime<Utc>>| -> Vec<Option<DateTime<Utc>>> {
                part.iter().map(|i| f(*i)).collect()
            };
            let part_ids: Vec<&str> = part.iter().map(|i| ids[*i]).collect();
            let status: Vec<Option<&str>> = part.iter().map(|i| status[*i]).collect();
            let ips: Vec<Option<&str>> = part
                .iter()
                .map(|i| aggs[*i].ip_address.as_deref())
                .collect();
            let cams: Vec<Option<&str>> = part
                .iter()
                .map(|i| aggs[*i].camera_url.as_deref())
                .collect();
            let rows: Vec<Upserted> = sqlx::query_as(sql)
                .bind(&part_ids)
                .bind(col(&|i| aggs[i].first_seen))
                .bind(col(&|i| aggs[i].last_seen))
                .bind(&status)
                .bind(col(&|i| status_at[i]))
                .bind(&ips)
                .bind(&cams)
                .fetch_all(&mut *conn)
                .await?;
            upserted.extend(rows);
        }

        let decided: HashMap<&str, &Next> = ids.iter().copied().zip(next.iter()).collect();
        for u in upserted {
            if u.status != "offline" && u.is_active && !u.silent {
                let known = Known {
                    id: u.id,
                    status: u.status.clone(),
                    ip_address: u.ip_address.clone(),
                    camera_url: u.camera_url.clone(),
                    last_seen: u.last_seen.unwrap_or_else(Utc::now),
                };
                notes.known.push((u.robot_id.clone(), known));
            }
            let (Some(agg), Some(next)) = (
                self.by_id.get(u.robot_id.as_str()),
                decided.get(u.robot_id.as_str()),
            ) else {
                continue;
            };
            let seen = agg.last_seen.unwrap_or_else(Utc::now);
            match stored.get(&u.robot_id) {
                // Created by this batch (or, racing another instance, found created).
                None if u.inserted => {
                    let first = agg.first_status.as_ref().map_or("unknown", |(s, _)| s);
                    let at = agg.first_ts.unwrap_or(seen);
                    logs.push(first_seen_log(&u.robot_id, first, at));
                }
                None => {}
                Some(before) => {
                    if !before.is_active {
                        logs.push(reactivated_log(&u.robot_id, seen));
                    }
                    match (next, &agg.first_status) {
                        (Next::BackOnline, _) => {
                            let at = agg.latest_stamped.unwrap_or(seen);
                            logs.push(status_change_log(&u.robot_id, &before.status, "online", at));
                        }
                        (Next::Reported(..), Some((first, ts)))
                            if *first != before.status
                                && before.status_at.is_none_or(|at| *ts > at) =>
                        {
                            logs.push(status_change_log(&u.robot_id, &before.status, first, *ts));
                        }
                        _ => {}
                    }
                }
            }
            logs.extend(agg.changes.iter().cloned());
            keys.insert(u.robot_id, u.id);
        }
        Ok(())
    }
}

// Both statements bind, by position: robot_id, first_seen, last_seen, status (`NULL`:
// unchanged), status_at, ip_address, camera_url.

/// Robots read before the batch. The status was decided in Rust on the row read; the
/// time check only matters when another instance changed it since (no row was locked).
/// Any status the batch sets ends a silence.
const UPDATE_STORED: &str = "UPDATE robots r SET \
         first_seen = LEAST(r.first_seen, u.first_seen), \
         last_seen = GREATEST(r.last_seen, u.last_seen), \
         status = CASE WHEN u.status IS NOT NULL AND (u.status_at IS NULL OR r.status_at IS NULL \
                                                     OR u.status_at >= r.status_at) \
                       THEN u.status ELSE r.status END, \
         status_at = GREATEST(r.status_at, u.status_at), \
         silent_since = CASE WHEN u.status IS NULL THEN r.silent_since END, \
         ip_address = COALESCE(u.ip_address, r.ip_address), \
         camera_url = COALESCE(u.camera_url, r.camera_url), \
         is_active = true, updated_at = now() \
     FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], \
           $5::timestamptz[], $6::text[], $7::text[]) \
           AS u(robot_id, first_seen, last_seen, status, status_at, ip_address, camera_url) \
     WHERE r.robot_id = u.robot_id \
     RETURNING r.robot_id, r.id, false AS inserted, r.status, r.is_active, \
               r.silent_since IS NOT NULL AS silent, r.ip_address, r.camera_url, r.last_seen";

/// Robots not stored before the batch; one another instance created a moment ago is
/// updated as [`UPDATE_STORED`] would (a new robot's status and status_at are both
/// given or both not).
const INSERT_NEW: &str = "INSERT INTO robots AS r (robot_id, first_seen, last_seen, status, status_at, ip_address, camera_url) \
     SELECT robot_id, first_seen, last_seen, COALESCE(status, 'unknown'), status_at, ip_address, camera_url \
     FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], \
           $5::timestamptz[], $6::text[], $7::text[]) \
           AS u(robot_id, first_seen, last_seen, status, status_at, ip_address, camera_url) \
     ON CONFLICT (robot_id) DO UPDATE SET \
         first_seen = LEAST(r.first_seen, EXCLUDED.first_seen), \
         last_seen = GREATEST(r.last_seen, EXCLUDED.last_seen), \
         status = CASE WHEN EXCLUDED.status_at IS NOT NULL \
                            AND (r.status_at IS NULL OR EXCLUDED.status_at >= r.status_at) \
                       THEN EXCLUDED.status ELSE r.status END, \
         status_at = GREATEST(r.status_at, EXCLUDED.status_at), \
         silent_since = CASE WHEN EXCLUDED.status_at IS NULL THEN r.silent_since END, \
         ip_address = COALESCE(EXCLUDED.ip_address, r.ip_address), \
         camera_url = COALESCE(EXCLUDED.camera_url, r.camera_url), \
         is_active = true, updated_at = now() \
     RETURNING r.robot_id, r.id, (r.xmax = 0) AS inserted, r.status, r.is_active, \
               r.silent_since IS NOT NULL AS silent, r.ip_address, r.camera_url, r.last_seen";

/// The stored rows of `ids`, by robot id; `lock`: `FOR UPDATE`, in robot-id order (so
/// instances cannot deadlock).
async fn read_stored(
    conn: &mut PgConnection,
    ids: &[&str],
    lock: bool,
) -> Result<HashMap<String, Stored>, sqlx::Error> {
    let sql = if lock {
        "SELECT robot_id, status, status_at, silent_since, is_active FROM robots \
         WHERE robot_id = ANY($1) ORDER BY robot_id FOR UPDATE"
    } else {
        "SELECT robot_id, status, status_at, silent_since, is_active FROM robots \
         WHERE robot_id = ANY($1)"
    };
    let rows: Vec<Stored> = sqlx::query_as(sql).bind(ids).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(|s| (s.robot_id.clone(), s)).collect())
}

/// The status rules of the module docs, for one robot of the batch.
fn next_status(a: &RobotAgg, stored: Option<&Stored>) -> Next {
    let Some(before) = stored else {
        return match &a.last_status {
            Some((s, at)) => Next::Reported(s.clone(), *at),
            None => Next::Unchanged,
        };
    };
    if let Some((s, at)) = &a.last_status
        && before.status_at.is_none_or(|stored_at| *at >= stored_at)
    {
        return Next::Reported(s.clone(), *at);
    }
    if a.last_status.is_none() && before.status == "offline" {
        let newer = match (a.latest_stamped, before.status_at) {
            (Some(ts), Some(at)) => ts > at,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if newer || (a.unstamped && before.silent_since.is_some()) {
            return Next::BackOnline;
        }
    }
    Next::Unchanged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        format!("2026-11-22T{s}Z").parse().unwrap()
    }

    fn stored(status: &str, status_at: Option<&str>, silent: bool) -> Stored {
        Stored {
            robot_id: "r".into(),
            status: status.into(),
            status_at: status_at.map(at),
            silent_since: silent.then(|| at("12:00:00")),
            is_active: true,
        }
    }

    fn batch(status: Option<(&str, &str)>, stamped: Option<&str>, unstamped: bool) -> RobotAgg {
        RobotAgg {
            last_status: status.map(|(s, t)| (s.to_string(), at(t))),
            latest_stamped: stamped.map(at),
            unstamped,
            ..RobotAgg::default()
        }
    }

    #[test]
    fn status_messages_apply_unless_older() {
        let before = stored("online", Some("10:00:00"), false);
        let newer = batch(Some(("offline", "10:00:05")), Some("10:00:05"), false);
        assert_eq!(
            next_status(&newer, Some(&before)),
            Next::Reported("offline".into(), at("10:00:05"))
        );
        let older = batch(Some(("offline", "09:59:00")), Some("09:59:00"), false);
        assert_eq!(next_status(&older, Some(&before)), Next::Unchanged);
    }

    #[test]
    fn a_batch_repeats_the_status_only_when_every_status_message_says_it() {
        let mut none = RobotAgg::default();
        assert!(none.repeats_status("online"));
        none.last_status = Some(("online".into(), at("10:00:00")));
        none.first_status = none.last_status.clone();
        assert!(none.repeats_status("online"));
        assert!(!none.repeats_status("busy"));
        // online -> busy -> online within the batch: two changes to log.
        let mut back = RobotAgg {
            first_status: Some(("online".into(), at("10:00:00"))),
            last_status: Some(("online".into(), at("10:00:02"))),
            ..RobotAgg::default()
        };
        back.changes
            .push(status_change_log("r", "online", "busy", at("10:00:01")));
        assert!(!back.repeats_status("online"));
    }

    #[test]
    fn offline_robots_come_back_only_with_new_messages() {
        let announced = stored("offline", Some("10:00:00"), false);
        let silent = stored("offline", Some("10:00:00"), true);
        let fresh = batch(None, Some("10:00:01"), false);
        let resent = batch(None, Some("09:59:59"), false);
        let unstamped = batch(None, None, true);
        assert_eq!(next_status(&fresh, Some(&announced)), Next::BackOnline);
        assert_eq!(next_status(&resent, Some(&announced)), Next::Unchanged);
        assert_eq!(next_status(&unstamped, Some(&announced)), Next::Unchanged);
        assert_eq!(next_status(&unstamped, Some(&silent)), Next::BackOnline);
        let online = stored("online", Some("10:00:00"), false);
        assert_eq!(next_status(&fresh, Some(&online)), Next::Unchanged);
    }
}
