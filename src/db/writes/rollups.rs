//! `metric_rollups` and `metric_rollup_marks`: per-minute partial statistics of the
//! metric rows a sink worker inserted, for the bucketed query (`reads/metrics.rs`).
//!
//! Each worker keeps a [`RollupCache`]: per open minute, robot and metric set, the
//! count, minimum, maximum, sum and newest value of every name, folded from the rows
//! its committed transactions actually inserted (a redelivered row that was skipped is
//! never folded in, so nothing counts twice). A minute is registered in
//! `metric_rollup_marks` (run, worker, sealed false) in the transaction of the first
//! rows the worker inserts in it. Once the minute has been over for [`GRACE`], the
//! worker's next batches each write up to [`CHUNK`] of its robots' minutes (one row
//! each, all of the robot's sets; a robot's once it sent nothing for the minute for
//! [`ROBOT_QUIET`], so a robot whose clock is behind does not get a row per message)
//! in their own transaction, and the batch writing the last of them seals the
//! minute's mark; an idle worker writes them by itself (`pipeline/sink.rs`), and a
//! stopping one writes all it holds. Nothing of a
//! transaction enters the cache before it commits ([`RollupNotes`]). What PostgreSQL
//! refuses for good is rolled back alone (a savepoint) and its minutes are never sealed
//! by this worker: rollups are derived, and no message is lost over them.
//!
//! Why a reader can trust a sealed minute: every row of the minute was inserted in a
//! transaction that also registered the minute for its (run, worker), and that mark
//! is sealed only by the transaction writing the worker's last partial of the minute.
//! A row that arrives for a minute the worker already sealed registers the minute
//! again (`sealed = false`) and its partial is written like any other. A worker that
//! dies leaves its marks unsealed, and the minute is read from `metrics` from then on.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// Rollup rows (robot minutes) written with one batch (or one idle flush) at most...
pub const CHUNK: usize = 100;

/// ...unless more than this many robot minutes are due (a backlog being replayed brings
/// hundreds of new ones a batch): then [`CHUNK_BEHIND`], so memory stays bounded.
const BEHIND: usize = 20_000;
const CHUNK_BEHIND: usize = 2_000;

/// How long after its end a minute is written: rows stamped by a robot's clock a few
/// seconds behind still fold into it instead of reopening it.
pub const GRACE: Duration = Duration::from_secs(5);

/// An idle worker writes due partials itself once a minute has been due this long
/// (a busy one writes them with its batches well before)...
pub const IDLE_AFTER: Duration = Duration::from_secs(10);

/// ...and once no batch came for this long (between the batches of a robot sending
/// its backlog the worker is idle for moments; its rows should fold into one partial).
pub const IDLE_QUIET: Duration = Duration::from_secs(1);

/// A robot's minute is written once none of its rows came for this long: a robot whose
/// clock is behind fleetsink's (or that replays its backlog, or whose rows wait behind
/// a slow database) sends rows for a minute already due, and they fold into one partial
/// instead of one per batch. A robot in step with the clock sends its last row of a
/// minute at the minute's end, so this costs it little past [`GRACE`] (the wait counts
/// from the commit of the row's batch).
pub const ROBOT_QUIET: Duration = Duration::from_secs(5);

/// ...but a robot's partial is written once it has been open this long, quiet or not:
/// a robot whose clock runs slow (or whose rows keep coming for one minute) would
/// otherwise never be quiet, and its partial never written. Past a minute and its
/// grace, so a robot in step with the clock never meets it.
const ROBOT_HOLD_MAX: i64 = 120;

/// A minute starting further ahead than this (a robot's clock ahead, within
/// `ingest.max_clock_skew`) is written as soon as possible instead of being held
/// until then.
const AHEAD: i64 = 120;

/// A minute: the Unix time of its first second.
type Minute = i64;
/// (robot key, metric set id).
type Key = (i32, i32);

/// One robot's minute: a partial per metric set (a robot sends a handful of sets).
#[derive(Debug)]
struct RobotMinute {
    sets: Vec<(i32, Partial)>,
    /// When (Unix seconds, fleetsink's clock) the first and the last row were folded in.
    opened_at: i64,
    folded_at: i64,
}

impl RobotMinute {
    /// Whether its partial is to be written at `now` (its minute being due): its robot
    /// sent nothing for it for [`ROBOT_QUIET`], or it has been open for
    /// [`ROBOT_HOLD_MAX`].
    fn ready(&self, now: i64) -> bool {
        self.folded_at + ROBOT_QUIET.as_secs() as i64 <= now
            || self.opened_at + ROBOT_HOLD_MAX <= now
    }
}

/// A minute's partials, per robot key.
#[derive(Debug, Default)]
struct Open {
    robots: HashMap<i32, RobotMinute>,
    /// When a row was last folded into the minute (by any robot; the idle timer's
    /// "all quiet" time, kept rather than found over every robot).
    folded_at: i64,
}

fn minute_of(ts: DateTime<Utc>) -> Minute {
    ts.timestamp().div_euclid(60) * 60
}

fn minute_start(m: Minute) -> DateTime<Utc> {
    DateTime::from_timestamp(m, 0).unwrap_or_default()
}

/// One (robot, set, minute)'s statistics: `vals` holds the minimums, maximums, sums
/// and newest values of the set's names, in that order (the row's `vals`).
#[derive(Debug, Clone, PartialEq)]
struct Partial {
    n: i32,
    last_ts: DateTime<Utc>,
    vals: Box<[f64]>,
}

impl Partial {
    fn new(ts: DateTime<Utc>, values: &[f64]) -> Self {
        Partial {
            n: 1,
            last_ts: ts,
            vals: [values, values, values, values].concat().into_boxed_slice(),
        }
    }

    /// Folds in one more row of the same set (so of the same length).
    fn add(&mut self, ts: DateTime<Utc>, values: &[f64]) {
        let k = values.len();
        if self.vals.len() != 4 * k {
            return;
        }
        let (mins, rest) = self.vals.split_at_mut(k);
        let (maxs, rest) = rest.split_at_mut(k);
        let (sums, lasts) = rest.split_at_mut(k);
        for (i, &v) in values.iter().enumerate() {
            mins[i] = mins[i].min(v);
            maxs[i] = maxs[i].max(v);
            sums[i] += v;
        }
        if ts >= self.last_ts {
            self.last_ts = ts;
            lasts.copy_from_slice(values);
        }
        self.n = self.n.saturating_add(1);
    }
}

/// One worker's partials of the minutes it registered and has not sealed yet.
#[derive(Debug)]
pub struct RollupCache {
    enabled: bool,
    run: i64,
    worker: i32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    minutes: BTreeMap<Minute, Open>,
    /// Minutes this worker will never seal, so they are read from the rows: all of
    /// them when disabled; else those whose partials PostgreSQL refused, or that a
    /// transaction of unknown outcome touched (its partials may or may not be in the
    /// table). Their rows are not folded; the value says whether this run registered
    /// the minute (unsealed) since, which a row in it does first.
    raw_only: BTreeMap<Minute, bool>,
}
impl RollupCache {
    /// Worker 0's cache of a process run: `run` is random (so a restarted process
    /// never takes over a dead one's marks). Disabled (`sink.minute_rollups = false`),
    /// it folds and writes no partials but still registers every minute it writes rows
    /// in, never sealed: those minutes are read from `metrics`, also after rollups are
    /// turned on again or by another instance that has them on.
    pub fn new(enabled: bool) -> Self {
        let mut b = [0u8; 8];
        // On failure the time of day stands in: runs need to differ, not be secret.
        if getrandom::fill(&mut b).is_err() {
            b = Utc::now()
                .timestamp_nanos_opt()
                .unwrap_or_default()
                .to_le_bytes();
        }
        Self::for_run(enabled, i64::from_le_bytes(b), 0)
    }

    fn for_run(enabled: bool, run: i64, worker: i32) -> Self {
        RollupCache {
            enabled,
            run,
            worker,
            state: Mutex::new(State::default()),
        }
    }

    /// An empty cache for worker `worker` of the same run.
    pub fn sibling(&self, worker: i32) -> Self {
        Self::for_run(self.enabled, self.run, worker)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only plain data behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long an idle worker waits for a batch before it writes partials itself:
    /// [`IDLE_AFTER`] past the first minute due, and until its robots were quiet for
    /// [`ROBOT_QUIET`], at least [`IDLE_QUIET`]; `None` when it holds none.
    pub fn idle_flush_in(&self, now: DateTime<Utc>) -> Option<Duration> {
        let now = now.timestamp();
        let idle = IDLE_AFTER.as_secs() as i64;
        let quiet = ROBOT_QUIET.as_secs() as i64;
        self.lock()
            .minutes
            .iter()
            .map(|(&m, open)| {
                // Once its robots are quiet: then at once if the minute is still far
                // ahead, else once it has been due for IDLE_AFTER (a minute ahead
                // becomes an ordinary one as the clock approaches it).
                let quiet_at = now.max(open.folded_at + quiet);
                let at = if m - quiet_at > AHEAD {
                    quiet_at
                } else {
                    quiet_at.max(due_at(m) + idle)
                };
                Duration::from_secs(at.saturating_sub(now).max(0) as u64).max(IDLE_QUIET)
            })
            .min()
    }

    /// Whether it holds anything (a stopping worker writes it all).
    pub fn is_empty(&self) -> bool {
        self.lock().minutes.is_empty()
    }

    /// Keeps what a committed transaction did: minutes it registered (raw-only ones
    /// too), partials it wrote, minutes it sealed or found refused, then the rows it
    /// inserted. The two kinds of registration never share a minute, nor do refusals
    /// and registrations (a transaction registers only minutes it holds nothing of).
    pub fn learn(&self, notes: RollupNotes) {
        self.learn_at(notes, Utc::now().timestamp());
    }

    /// [`Self::learn`] at `now` (Unix seconds).
    fn learn_at(&self, notes: RollupNotes, now: i64) {
        let mut state = self.lock();
        let State { minutes, raw_only } = &mut *state;
        for m in notes.refused {
            minutes.remove(&m);
            raw_only.entry(m).or_insert(false);
        }
        for m in notes.registered_raw {
            raw_only.insert(m, true);
        }
        for m in notes.registered {
            minutes.entry(m).or_default();
        }
        for (m, robots) in notes.written {
            if let Some(open) = minutes.get_mut(&m) {
                for r in robots {
                    open.robots.remove(&r);
                }
            }
        }
        for m in notes.sealed {
            if minutes.get(&m).is_some_and(|open| open.robots.is_empty()) {
                minutes.remove(&m);
            }
        }
        for r in &notes.rows {
            let values = &notes.values[r.from..r.from + r.len];
            let Some(open) = minutes.get_mut(&minute_of(r.ts)) else {
                // Not registered: cannot happen (`record` registers every minute of
                // the rows it notes); folding it in would let a seal cover a row
                // whose minute has no mark.
                continue;
            };
            let (robot, set) = r.key;
            open.folded_at = now;
            let rm = open.robots.entry(robot).or_insert_with(|| RobotMinute {
                sets: Vec::new(),
                opened_at: now,
                folded_at: now,
            });
            rm.folded_at = now;
            match rm.sets.iter_mut().find(|(s, _)| *s == set) {
                Some((_, p)) => p.add(r.ts, values),
                None => rm.sets.push((set, Partial::new(r.ts, values))),
            }
        }
        // Rows older than ingest.max_clock_skew (at most days) are stamped with their
        // receive time, so nothing arrives for a minute this old: forgetting it is safe.
        if let Some(oldest) = now.checked_sub(RAW_ONLY_KEPT) {
            raw_only.retain(|&m, _| m >= oldest);
        }
    }

    /// After a transaction whose outcome is unknown (a lost connection, a missed
    /// `database.commit_timeout`: its COMMIT may have landed): every minute it touched
    /// becomes raw-only. Its partials may be in the table once, or not at all, and its
    /// rows may be stored, so neither writing them again nor sealing without them is
    /// right; read from the rows, the minutes stay exact.
    pub fn unknown_outcome(&self, notes: &RollupNotes) {
        let touched: BTreeSet<Minute> = notes
            .registered
            .iter()
            .chain(&notes.sealed)
            .chain(notes.written.iter().map(|(m, _)| m))
            .copied()
            .chain(notes.rows.iter().map(|r| minute_of(r.ts)))
            .collect();
        if touched.is_empty() {
            return;
        }
        let mut state = self.lock();
        for m in touched {
            state.minutes.remove(&m);
            // Registered again (unsealed) by its next row: a seal of it may have landed.
            state.raw_only.insert(m, false);
        }
    }
}

/// How long raw-only minutes are remembered: beyond any sane `ingest.max_clock_skew`.
const RAW_ONLY_KEPT: i64 = 8 * 24 * 3600;

/// The Unix time a minute becomes due: its end plus [`GRACE`].
fn due_at(m: Minute) -> i64 {
    m + 60 + GRACE.as_secs() as i64
}

fn is_due(m: Minute, now: i64) -> bool {
    due_at(m) <= now || m - now > AHEAD
}

/// One inserted row, its values in [`RollupNotes::values`].
#[derive(Debug)]
struct Row {
    key: Key,
    ts: DateTime<Utc>,
    from: usize,
    len: usize,
}

/// What one transaction did to its worker's rollups, kept by [`RollupCache::learn`]
/// after the commit.
#[derive(Debug, Default)]
pub struct RollupNotes {
    registered: Vec<Minute>,
    rows: Vec<Row>,
    values: Vec<f64>,
    /// Robot minutes written, by robot key.
    written: Vec<(Minute, Vec<i32>)>,
    sealed: Vec<Minute>,
    refused: Vec<Minute>,
    /// Raw-only minutes this transaction registered (unsealed).
    registered_raw: Vec<Minute>,
}

impl RollupNotes {
    /// The minutes the transaction's rows fall in.
    fn minutes(&self) -> HashSet<Minute> {
        self.rows.iter().map(|r| minute_of(r.ts)).collect()
    }
}

/// The metric rows a batch inserted, as `metrics.rs` bound them: row `i` is robot
/// `robot[i]`, time `ts[i]`, set `set_ids[i]`, values `values[offset[i]..][..len[i]]`,
/// inserted unless `fresh` says otherwise.
pub(super) struct InsertedRows<'a> {
    pub robot: &'a [i32],
    pub ts: &'a [DateTime<Utc>],
    pub set_ids: &'a [i32],
    pub offset: &'a [i32],
    pub len: &'a [i32],
    pub values: &'a [f64],
    /// `None`: every row went in.
    pub fresh: Option<&'a HashSet<usize>>,
}

/// Notes the rows a batch inserted for its worker's rollups and registers, in the
/// batch's transaction, every minute of them the worker has no open mark for.
pub(super) async fn record(
    conn: &mut PgConnection,
    cache: &RollupCache,
    rows: InsertedRows<'_>,
    notes: &mut RollupNotes,
) -> Result<(), sqlx::Error> {
    let mut new: Vec<Minute> = Vec::new();
    let mut new_raw: Vec<Minute> = Vec::new();
    let mut kept: Vec<usize> = Vec::new();
    {
        let state = cache.lock();
        for i in 0..rows.robot.len() {
            if rows.fresh.is_some_and(|f| !f.contains(&i)) {
                continue;
            }
            let m = minute_of(rows.ts[i]);
            let raw = !cache.enabled || state.raw_only.contains_key(&m);
            if raw {
                if state.raw_only.get(&m) != Some(&true) && !new_raw.contains(&m) {
                    new_raw.push(m);
                }
                continue;
            }
            if !state.minutes.contains_key(&m)
                && !notes.registered.contains(&m)
                && !new.contains(&m)
            {
                new.push(m);
            }
            kept.push(i);
        }
    }
    // Every minute this worker writes rows in has its mark, unsealed until it sealed
    // the minute with all its partials. A refusal here fails the batch like any other
    // write: rows without a mark could be sealed over by another worker.
    let register: Vec<DateTime<Utc>> = new
        .iter()
        .chain(&new_raw)
        .map(|&m| minute_start(m))
        .collect();
    if !register.is_empty() {
        sqlx::query(
            "INSERT INTO metric_rollup_marks (minute, run, worker) \
             SELECT unnest($1::timestamptz[]), $2, $3 \
             ON CONFLICT (minute, run, worker) DO UPDATE SET sealed = false",
        )
        .bind(&register)
        .bind(cache.run)
        .bind(cache.worker)
        .execute(&mut *conn)
        .await?;
        notes.registered.extend(new);
        notes.registered_raw.extend(new_raw);
    }
    for i in kept {
        let from = usize::try_from(rows.offset[i]).unwrap_or(0);
        let len = usize::try_from(rows.len[i]).unwrap_or(0);
        let Some(values) = rows.values.get(from..from + len) else {
            continue;
        };
        notes.rows.push(Row {
            key: (rows.robot[i], rows.set_ids[i]),
            ts: rows.ts[i],
            from: notes.values.len(),
            len,
        });
        notes.values.extend_from_slice(values);
    }
    Ok(())
}

/// Runs `write` under a savepoint: what PostgreSQL refuses for good (not a passing
/// failure, which fails the transaction as before) is rolled back alone and logged,
/// and false returned, so the batch around it still commits. Rollups are derived:
/// a minute whose rollups cannot be written is read from the rows.
async fn guarded(
    conn: &mut PgConnection,
    write: impl AsyncFnOnce(&mut PgConnection) -> Result<(), sqlx::Error>,
) -> Result<bool, sqlx::Error> {
    sqlx::query("SAVEPOINT rollups").execute(&mut *conn).await?;
    match write(&mut *conn).await {
        Ok(()) => {
            sqlx::query("RELEASE SAVEPOINT rollups")
                .execute(&mut *conn)
                .await?;
            Ok(true)
        }
        Err(e) if crate::db::is_transient(&e) => Err(e),
        Err(e) => {
            sqlx::query("ROLLBACK TO SAVEPOINT rollups")
                .execute(&mut *conn)
                .await?;
            tracing::warn!(error = %e, "minute rollups refused by PostgreSQL; those minutes are read from the metrics rows");
            Ok(false)
        }
    }
}

/// The robot minutes one transaction writes: one row per robot minute; its per-set
/// arrays (set ids, counts, newest times, offsets into its values) and its values
/// travel flat, each row's share given by an offset and a length (rows differ in
/// length; a 2-D parameter is rectangular).
#[derive(Debug, Default)]
struct DueChunk {
    minute: Vec<DateTime<Utc>>,
    robot: Vec<i32>,
    sets_from: Vec<i32>,
    sets_len: Vec<i32>,
    set_ids: Vec<i32>,
    ns: Vec<i32>,
    last_ts: Vec<DateTime<Utc>>,
    offs: Vec<i32>,
    vals_from: Vec<i32>,
    vals_len: Vec<i32>,
    values: Vec<f64>,
    /// Robot minutes written, by robot key.
    written: Vec<(Minute, Vec<i32>)>,
    /// Minutes whose last partial is in the chunk.
    sealed: Vec<Minute>,
}

impl DueChunk {
    fn push(&mut self, m: Minute, r: i32, sets: &[(i32, Partial)]) {
        let len32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        self.minute.push(minute_start(m));
        self.robot.push(r);
        self.sets_from.push(len32(self.set_ids.len()));
        self.sets_len.push(len32(sets.len()));
        self.vals_from.push(len32(self.values.len()));
        let mut off = 0;
        for (set, p) in sets {
            self.set_ids.push(*set);
            self.ns.push(p.n);
            self.last_ts.push(p.last_ts);
            self.offs.push(len32(off));
            off += p.vals.len();
            self.values.extend_from_slice(&p.vals);
        }
        self.vals_len.push(len32(off));
    }
}

impl State {
    /// Up to [`CHUNK`] (when far behind, [`CHUNK_BEHIND`]) robot minutes due at `now`
    /// whose robots were quiet for [`ROBOT_QUIET`] (all, when `all`), oldest minute
    /// first, and the minutes whose last partials they are. A minute a transaction's
    /// own rows fall in (`touched`) waits for a later one: those rows are folded in
    /// only after the commit, and rows still arriving for it (a robot sending its
    /// backlog) fold into the same partials instead of one partial per batch.
    fn due_chunk(&self, now: i64, all: bool, touched: &HashSet<Minute>) -> DueChunk {
        let due = |m: Minute| (all || is_due(m, now)) && !touched.contains(&m);
        let ready = |rm: &RobotMinute| all || rm.ready(now);
        let waiting: usize = self
            .minutes
            .iter()
            .filter(|&(&m, _)| due(m))
            .map(|(_, open)| open.robots.len())
            .sum();
        let most = if waiting > BEHIND {
            CHUNK_BEHIND
        } else {
            CHUNK
        };
        let mut chunk = DueChunk::default();
        for (&m, open) in &self.minutes {
            if !due(m) {
                continue;
            }
            let room = most - chunk.robot.len();
            let mut robots = Vec::with_capacity(open.robots.len().min(room));
            let picks = open.robots.iter().filter(|(_, rm)| ready(rm));
            for (&r, rm) in picks.take(room) {
                chunk.push(m, r, &rm.sets);
                robots.push(r);
            }
            let whole = robots.len() == open.robots.len();
            if !robots.is_empty() {
                chunk.written.push((m, robots));
            }
            if whole {
                chunk.sealed.push(m);
            }
            if chunk.robot.len() >= most {
                break;
            }
        }
        chunk
    }
}

/// Writes the robot minutes [`State::due_chunk`] picks and seals each minute whose
/// last partial it writes. Returns the rollup rows written.
pub async fn flush_due(
    conn: &mut PgConnection,
    cache: &RollupCache,
    now: DateTime<Utc>,
    all: bool,
    notes: &mut RollupNotes,
) -> Result<u64, sqlx::Error> {
    if !cache.enabled {
        return Ok(0);
    }
    let touched = notes.minutes();
    let due = cache.lock().due_chunk(now.timestamp(), all, &touched);
    if due.robot.is_empty() && due.sealed.is_empty() {
        return Ok(0);
    }
    let starts: Vec<DateTime<Utc>> = due.sealed.iter().map(|&m| minute_start(m)).collect();
    let written = guarded(conn, async |c| {
        if !due.robot.is_empty() {
            sqlx::query(
                "INSERT INTO metric_rollups (minute, robot, set_ids, ns, last_ts, offs, vals) \
                 SELECT m, r, ($3::int4[])[so + 1 : so + sl], ($4::int4[])[so + 1 : so + sl], \
                        ($5::timestamptz[])[so + 1 : so + sl], ($6::int4[])[so + 1 : so + sl], \
                        ($7::float8[])[vo + 1 : vo + vl] \
                 FROM UNNEST($1::timestamptz[], $2::int4[], $8::int4[], $9::int4[], \
                             $10::int4[], $11::int4[]) AS x(m, r, so, sl, vo, vl)",
            )
            .bind(&due.minute)
            .bind(&due.robot)
            .bind(&due.set_ids)
            .bind(&due.ns)
            .bind(&due.last_ts)
            .bind(&due.offs)
            .bind(&due.values)
            .bind(&due.sets_from)
            .bind(&due.sets_len)
            .bind(&due.vals_from)
            .bind(&due.vals_len)
            .execute(&mut *c)
            .await?;
        }
        if !starts.is_empty() {
            sqlx::query(
                "UPDATE metric_rollup_marks SET sealed = true \
                 WHERE minute = ANY ($1::timestamptz[]) AND run = $2 AND worker = $3",
            )
            .bind(&starts)
            .bind(cache.run)
            .bind(cache.worker)
            .execute(&mut *c)
            .await?;
        }
        Ok(())
    })
    .await?;
    if !written {
        // Never sealed by this worker now: its rows of those minutes are read raw.
        notes
            .refused
            .extend(due.written.iter().map(|(m, _)| *m).chain(due.sealed));
        return Ok(0);
    }
    let rows = due.robot.len() as u64;
    notes.written.extend(due.written);
    notes.sealed.extend(due.sealed);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn a_partial_keeps_min_max_sum_and_the_newest_values() {
        let mut p = Partial::new(at(120), &[1.0, 10.0]);
        p.add(at(150), &[3.0, 5.0]);
        p.add(at(130), &[-2.0, 7.0]);
        assert_eq!(p.n, 3);
        assert_eq!(p.last_ts, at(150));
        assert_eq!(&*p.vals, &[-2.0, 5.0, 3.0, 10.0, 2.0, 22.0, 3.0, 5.0]);
        // A row of another length (cannot be the same set) changes nothing.
        p.add(at(160), &[1.0]);
        assert_eq!(p.n, 3);
    }

    #[test]
    fn minutes_and_due_times() {
        assert_eq!(minute_of(at(119)), 60);
        assert_eq!(minute_of(at(-1)), -60);
        // Minute 60..120 is due at 120 + GRACE.
        let grace = GRACE.as_secs() as i64;
        assert!(!is_due(60, 120 + grace - 1));
        assert!(is_due(60, 120 + grace));
        // Far ahead of the clock: due at once.
        assert!(is_due(10_000, 10_000 - AHEAD - 60));
        assert!(!is_due(10_000, 10_000 - AHEAD));
    }

    fn notes_with(rows: &[(Key, i64, &[f64])], registered: &[Minute]) -> RollupNotes {
        let mut notes = RollupNotes {
            registered: registered.to_vec(),
            ..RollupNotes::default()
        };
        for (key, s, vals) in rows {
            notes.rows.push(Row {
                key: *key,
                ts: at(*s),
                from: notes.values.len(),
                len: vals.len(),
            });
            notes.values.extend_from_slice(vals);
        }
        notes
    }

    #[test]
    fn learning_folds_rows_into_registered_minutes_only() {
        let cache = RollupCache::for_run(true, 7, 0);
        cache.learn(notes_with(
            &[
                ((1, 2), 61, &[1.0]),
                ((1, 2), 62, &[4.0]),
                ((1, 5), 63, &[7.0, 8.0]),
                ((1, 3), 130, &[9.0]),
            ],
            &[60],
        ));
        let state = cache.lock();
        let minutes = &state.minutes;
        assert_eq!(minutes.len(), 1);
        // Robot 1's minute: a partial per set, in the order the sets came.
        let sets = &minutes[&60].robots[&1].sets;
        assert_eq!(sets.len(), 2);
        let (set, p) = &sets[0];
        assert_eq!((*set, p.n, &*p.vals), (2, 2, &[1.0, 4.0, 5.0, 4.0][..]));
        assert_eq!(sets[1].0, 5);
        // Minute 120 was never registered: its row is not folded in.
        assert!(!minutes.contains_key(&120));
    }

    #[test]
    fn written_partials_leave_and_a_sealed_minute_closes() {
        let cache = RollupCache::for_run(true, 7, 0);
        cache.learn(notes_with(
            &[((1, 2), 61, &[1.0]), ((5, 2), 61, &[2.0])],
            &[60],
        ));
        cache.learn(RollupNotes {
            written: vec![(60, vec![1])],
            ..RollupNotes::default()
        });
        assert_eq!(cache.lock().minutes[&60].robots.len(), 1);
        // A seal with a partial still held (cannot be issued so) keeps the minute.
        cache.learn(RollupNotes {
            sealed: vec![60],
            ..RollupNotes::default()
        });
        assert!(!cache.is_empty());
        cache.learn(RollupNotes {
            written: vec![(60, vec![5])],
            sealed: vec![60],
            ..RollupNotes::default()
        });
        assert!(cache.is_empty());
    }

    #[test]
    fn an_idle_worker_writes_after_the_grace_and_the_idle_wait() {
        let cache = RollupCache::for_run(true, 7, 0);
        assert_eq!(cache.idle_flush_in(at(0)), None);
        cache.learn_at(notes_with(&[((1, 2), 61, &[1.0])], &[60]), 70);
        // Minute 60 ends at 120.
        let wait = GRACE + IDLE_AFTER;
        assert_eq!(cache.idle_flush_in(at(120)), Some(wait));
        assert_eq!(cache.idle_flush_in(at(1_000)), Some(IDLE_QUIET));
        // A minute far ahead of the clock is written once its robots were quiet.
        cache.learn_at(notes_with(&[((1, 2), 10_000, &[1.0])], &[9_960]), 121);
        assert_eq!(cache.idle_flush_in(at(121)), Some(ROBOT_QUIET));
        assert_eq!(cache.idle_flush_in(at(126)), Some(IDLE_QUIET));
        // A row of a minute long due (a robot's clock behind) waits for quiet too.
        let cache = RollupCache::for_run(true, 7, 0);
        cache.learn_at(notes_with(&[((1, 2), 61, &[1.0])], &[60]), 990);
        assert_eq!(cache.idle_flush_in(at(991)), Some(Duration::from_secs(4)));
    }

    fn chunk_robots(c: &DueChunk) -> Vec<(Minute, Vec<i32>)> {
        c.written
            .iter()
            .map(|(m, rs)| {
                let mut rs = rs.clone();
                rs.sort();
                (*m, rs)
            })
            .collect()
    }

    #[test]
    fn a_due_minute_writes_its_quiet_robots_and_seals_with_the_last() {
        let cache = RollupCache::for_run(true, 7, 0);
        // Robots 1 and 2 in step with the clock: their last rows of minute 60 came at
        // its end. Robot 3's clock is three minutes behind: its rows of minute 60
        // arrive from 240 on, one every 2 s.
        cache.learn_at(
            notes_with(&[((1, 9), 119, &[1.0]), ((2, 9), 119, &[2.0])], &[60]),
            120,
        );
        let none = HashSet::new();
        let state = cache.lock();
        assert!(state.due_chunk(124, false, &none).written.is_empty());
        let c = state.due_chunk(125, false, &none);
        assert_eq!(chunk_robots(&c), vec![(60, vec![1, 2])]);
        assert_eq!(c.sealed, vec![60]);
        // Written and sealed; the late robot's first row registers minute 60 again.
        drop(state);
        cache.learn_at(
            RollupNotes {
                written: c.written,
                sealed: c.sealed,
                ..RollupNotes::default()
            },
            125,
        );
        for (i, now) in (240..250).step_by(2).enumerate() {
            let registered = if i == 0 { vec![60] } else { vec![] };
            let row = [((3, 9), 61 + i as i64, &[i as f64][..])];
            cache.learn_at(notes_with(&row, &registered), now);
            // While its rows keep coming, its partial waits: one partial, not one
            // per row.
            assert!(
                cache
                    .lock()
                    .due_chunk(now + 1, false, &none)
                    .written
                    .is_empty()
            );
        }
        let state = cache.lock();
        assert!(state.due_chunk(252, false, &none).written.is_empty());
        let c = state.due_chunk(253, false, &none);
        assert_eq!(chunk_robots(&c), vec![(60, vec![3])]);
        assert_eq!(c.sealed, vec![60]);
        assert_eq!(c.ns, vec![5]);
        // A minute the transaction's own rows touch waits; stopping writes all.
        assert!(
            state
                .due_chunk(253, false, &HashSet::from([60]))
                .written
                .is_empty()
        );
        assert_eq!(state.due_chunk(241, true, &none).ns, vec![5]);
    }

    #[test]
    fn a_robot_that_never_goes_quiet_is_written_after_the_hold() {
        // A robot's slow clock keeps its rows in minute 60 from 240 on, every 2 s.
        let cache = RollupCache::for_run(true, 7, 0);
        let none = HashSet::new();
        for now in (240..=400).step_by(2) {
            let registered = if now == 240 { vec![60] } else { vec![] };
            cache.learn_at(notes_with(&[((3, 9), 61, &[1.0])], &registered), now);
            let c = cache.lock().due_chunk(now, false, &none);
            if now < 240 + ROBOT_HOLD_MAX {
                assert!(c.written.is_empty(), "written at {now}");
            } else {
                assert_eq!(chunk_robots(&c), vec![(60, vec![3])], "at {now}");
                return;
            }
        }
        panic!("never written");
    }

    #[test]
    fn an_idle_workers_timer_finds_something_to_write() {
        // Whatever it holds, when the idle timer fires the chunk is not empty.
        // (the row's time, its minute, when it was folded in)
        let cases: [(i64, Minute, i64); 4] = [
            // in step with the clock, folded at the minute's end
            (119, 60, 120),
            // a clock three minutes behind
            (61, 60, 241),
            // far ahead, and still far ahead once quiet
            (10_000, 9_960, 121),
            // ahead, but no longer far ahead once quiet
            (300, 300, 178),
        ];
        for (ts, m, now) in cases {
            let cache = RollupCache::for_run(true, 7, 0);
            cache.learn_at(notes_with(&[((1, 9), ts, &[1.0])], &[m]), now);
            let wait = cache.idle_flush_in(at(now)).unwrap();
            let fire = now + wait.as_secs() as i64;
            let c = cache.lock().due_chunk(fire, false, &HashSet::new());
            assert_eq!(chunk_robots(&c), vec![(m, vec![1])], "minute {m} at {fire}");
        }
    }

    #[test]
    fn a_due_minute_with_a_robot_still_sending_is_written_but_not_sealed() {
        let cache = RollupCache::for_run(true, 7, 0);
        cache.learn_at(notes_with(&[((1, 9), 119, &[1.0])], &[60]), 120);
        cache.learn_at(notes_with(&[((2, 9), 100, &[2.0])], &[]), 160);
        let state = cache.lock();
        let c = state.due_chunk(161, false, &HashSet::new());
        assert_eq!(chunk_robots(&c), vec![(60, vec![1])]);
        assert!(c.sealed.is_empty());
    }

    #[test]
    fn a_refused_minute_becomes_raw_only_and_is_registered_again_once() {
        // Recent minutes (raw-only ones older than RAW_ONLY_KEPT are forgotten).
        let b = minute_of(Utc::now());
        let cache = RollupCache::for_run(true, 7, 0);
        cache.learn(notes_with(&[((1, 2), b + 1, &[1.0])], &[b]));
        cache.learn(RollupNotes {
            refused: vec![b],
            ..RollupNotes::default()
        });
        assert!(cache.is_empty());
        // Not yet registered since: its next row registers it (unsealed) first.
        assert_eq!(cache.lock().raw_only.get(&b), Some(&false));
        cache.learn(RollupNotes {
            registered_raw: vec![b],
            ..RollupNotes::default()
        });
        assert_eq!(cache.lock().raw_only.get(&b), Some(&true));
    }

    #[test]
    fn a_transaction_of_unknown_outcome_makes_its_minutes_raw_only() {
        let b = minute_of(Utc::now());
        let cache = RollupCache::for_run(true, 7, 0);
        cache.learn(notes_with(
            &[((1, 2), b + 1, &[1.0]), ((1, 2), b + 65, &[2.0])],
            &[b, b + 60],
        ));
        // A transaction wrote minute b's partial and sealed it, and had a row in minute
        // b + 120; its COMMIT's outcome is unknown.
        let mut notes = notes_with(&[((1, 2), b + 121, &[3.0])], &[b + 120]);
        notes.written.push((b, vec![1]));
        notes.sealed.push(b);
        cache.unknown_outcome(&notes);
        let state = cache.lock();
        assert_eq!(
            state.minutes.keys().copied().collect::<Vec<_>>(),
            vec![b + 60]
        );
        assert_eq!(
            state.raw_only.keys().copied().collect::<Vec<_>>(),
            vec![b, b + 120]
        );
        assert!(state.raw_only.values().all(|registered| !registered));
    }

    #[test]
    fn a_disabled_cache_keeps_no_partials() {
        // Disabled, `record` registers minutes as raw-only and notes no rows.
        let cache = RollupCache::for_run(false, 7, 0);
        cache.learn(RollupNotes {
            registered_raw: vec![60],
            ..RollupNotes::default()
        });
        assert!(cache.is_empty());
        assert_eq!(cache.idle_flush_in(at(0)), None);
    }
}
