//! `alerts`: threshold alerts evaluated on a batch's readings (rules in `crate::alerts`),
//! in set operations: one read of the thresholds that concern the batch's robots
//! (`alert_thresholds`, through its unique index, so an edit counts from the next
//! batch on), one read (locking) of the newest threshold alert per robot and metric,
//! then one insert and one update for the alerts the batch opened or changed, and a log
//! row (category `alert`) per open, escalation and resolution.
//!
//! fleetsink's own alerts are the rows with `source = 'fleetsink'`; manual alerts of the
//! same robot and type are neither read nor changed here.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::alerts::{self, Alert, AlertSettings, Event, EventAt, Level, Observed, Watched};
use crate::db::reads::alerts::{SOURCE, ThresholdScopes};
use crate::model::{Decoded, LogRow, message_fingerprint};

/// One reading: value and time.
type Reading = (f64, DateTime<Utc>);

/// A batch's readings of watched metrics, by robot and metric: the worst of each
/// message's values (the hottest servo, the lowest voltage).
#[derive(Default)]
pub(super) struct Readings<'a> {
    by_key: BTreeMap<(&'a str, Watched), Vec<Reading>>,
}

impl<'a> Readings<'a> {
    pub fn add(&mut self, d: &'a Decoded) {
        // By `Watched`'s position in `Watched::ALL` (a map per message cost an
        // allocation per message).
        let mut worst: [Option<f64>; Watched::ALL.len()] = [None; Watched::ALL.len()];
        for m in &d.metrics {
            if let Some(w) = Watched::of_metric(&m.name) {
                let v = &mut worst[w as usize];
                *v = Some(v.map_or(m.value, |v| w.worse(v, m.value)));
            }
        }
        for (w, v) in Watched::ALL.into_iter().zip(worst) {
            if let Some(v) = v {
                self.by_key
                    .entry((d.robot_id.as_str(), w))
                    .or_default()
                    .push((v, d.ts));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// A robot and one of its watched metrics: what one alert row tracks.
type Key = (String, Watched);

/// A [`Key`] borrowed from a batch.
type BatchKey<'a> = (&'a str, Watched);

/// A sink worker's copy of the newest fleetsink alert of each robot and metric it has
/// evaluated (`None`: it has none). One robot's messages always go to the same worker,
/// so only that worker reads and changes its robots' entries: a batch reads an entry,
/// and what the batch changed enters only once its transaction committed
/// ([`AlertNotes`]).
///
/// An entry is dirty when a reading only re-triggered its alert (count, value, last
/// trigger, last reading): that is kept here instead of one UPDATE per batch, and
/// written once it has waited `alerts.flush_interval` — by the worker's next batch,
/// in its own transaction, a few entries at a time, so no batch waits for a large
/// write — or by [`flush`] when the worker is idle, and at shutdown. Every
/// write of an alert is guarded by what the cached copy assumed of the row (same
/// resolved state and severity); a row someone else changed (resolved or deleted
/// through the API, or another instance's evaluation) fails the guard, and its entry
/// is read again from the table.
///
/// This process's own resolve and delete (through the API) are told to every worker
/// through [`AlertEdits`]: the worker's next batch first writes what it holds and
/// forgets the rest, so the change counts from that batch on.
#[derive(Debug)]
pub struct AlertCache {
    flush_every: std::time::Duration,
    edits: Arc<AlertEdits>,
    state: Mutex<CacheState>,
}

#[derive(Debug)]
struct CacheState {
    entries: HashMap<Key, Cached>,
    /// How many entries are dirty.
    dirty: usize,
    /// Entries in the order they became dirty, with the time they did: what
    /// [`flush_due`] takes from the front instead of scanning every entry per batch.
    /// An item whose entry has since been written, forgotten or dirtied anew (another
    /// time) is stale and dropped when it reaches the front.
    due: VecDeque<(Instant, Key)>,
    /// The [`AlertEdits`] count this copy has caught up with.
    edits_seen: u64,
}

/// Counts the API's changes to alert rows that evaluation depends on (resolve,
/// delete), so the workers' [`AlertCache`]s read those rows again.
#[derive(Debug, Default)]
pub struct AlertEdits(AtomicU64);

impl AlertEdits {
    /// Called after such a change committed.
    pub fn changed(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

#[derive(Debug, Clone)]
struct Cached {
    alert: Option<Alert>,
    /// Since when `alert` holds re-triggers its row does not (`None`: clean).
    dirty_since: Option<Instant>,
}

impl Cached {
    fn clean(alert: Option<Alert>) -> Self {
        Cached {
            alert,
            dirty_since: None,
        }
    }

    fn is_dirty(&self) -> bool {
        self.dirty_since.is_some()
    }
}

/// Entries one worker keeps at most; past it, the clean ones are dropped (read again
/// when their robot reports).
const MAX_ENTRIES: usize = 200_000;

impl AlertCache {
    pub fn new(flush_every: std::time::Duration, edits: Arc<AlertEdits>) -> Self {
        let edits_seen = edits.0.load(Ordering::Acquire);
        Self {
            flush_every,
            edits,
            state: Mutex::new(CacheState {
                entries: HashMap::new(),
                dirty: 0,
                due: VecDeque::new(),
                edits_seen,
            }),
        }
    }

    /// An empty cache for another worker, with this one's interval and edit counter.
    pub fn sibling(&self) -> Self {
        Self::new(self.flush_every, self.edits.clone())
    }

    /// Whether the API changed alerts since this copy last caught up: the worker then
    /// flushes and calls [`AlertCache::forget_clean`] before its next batch.
    pub fn edited(&self) -> bool {
        self.edits.0.load(Ordering::Acquire) != self.lock().edits_seen
    }

    /// Forgets every entry without re-triggers waiting to be written (after a flush,
    /// none), as of the edits counted so far.
    pub fn forget_clean(&self) {
        let seen = self.edits.0.load(Ordering::Acquire);
        let mut s = self.lock();
        s.entries.retain(|_, c| c.is_dirty());
        s.edits_seen = seen;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // A panic while holding the lock leaves only plain data behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether re-triggers wait to be written.
    pub fn has_dirty(&self) -> bool {
        self.lock().dirty > 0
    }

    /// Keeps what a committed transaction wrote or changed in memory, in its order.
    pub fn learn(&self, notes: AlertNotes) {
        let mut s = self.lock();
        for (key, cached) in notes.0 {
            let since = cached.as_ref().and_then(|c| c.dirty_since);
            let newly_dirty = since.map(|t| (t, key.clone()));
            let before = match cached {
                Some(c) => s.entries.insert(key, c),
                None => s.entries.remove(&key),
            }
            .and_then(|c| c.dirty_since);
            s.dirty = s.dirty + usize::from(since.is_some()) - usize::from(before.is_some());
            if let Some(item) = newly_dirty.filter(|_| since != before) {
                s.due.push_back(item);
            }
        }
        if s.entries.len() > MAX_ENTRIES {
            s.entries.retain(|_, c| c.is_dirty());
        }
    }

    /// The cached entries of `keys`, and the keys it has no entry for.
    fn lookup<'k>(
        &self,
        keys: impl Iterator<Item = (&'k str, Watched)>,
    ) -> (HashMap<BatchKey<'k>, Cached>, Vec<BatchKey<'k>>) {
        let s = self.lock();
        let mut hits = HashMap::new();
        let mut misses = Vec::new();
        for (robot, w) in keys {
            match s.entries.get(&(robot.to_string(), w)) {
                Some(c) => {
                    hits.insert((robot, w), c.clone());
                }
                None => misses.push((robot, w)),
            }
        }
        (hits, misses)
    }

    /// Every dirty entry.
    fn dirty_entries(&self) -> Vec<(Key, Alert)> {
        let s = self.lock();
        s.entries
            .iter()
            .filter(|(_, c)| c.is_dirty())
            .filter_map(|(k, c)| Some((k.clone(), c.alert.clone()?)))
            .collect()
    }

    /// The entries dirty since `before` or earlier, from the front of the due queue
    /// (dropping the stale items found there). The queue is in the order entries
    /// became dirty, so this reads only the entries due and those right behind them.
    fn due_entries(&self, before: Instant) -> Vec<(Key, Alert)> {
        let mut guard = self.lock();
        let s = &mut *guard;
        // The entry a queue item stands for, if it is still dirty since that item's time.
        fn live<'e>(
            entries: &'e HashMap<Key, Cached>,
            (t, k): &(Instant, Key),
        ) -> Option<&'e Cached> {
            entries.get(k).filter(|c| c.dirty_since == Some(*t))
        }
        while s
            .due
            .front()
            .is_some_and(|item| live(&s.entries, item).is_none())
        {
            s.due.pop_front();
        }
        s.due
            .iter()
            .take_while(|(t, _)| *t <= before)
            .filter_map(|item| Some((item.1.clone(), live(&s.entries, item)?.alert.clone()?)))
            .collect()
    }
}

/// What one transaction did to the [`AlertCache`], in order (`None`: forget the
/// entry): kept by [`AlertCache::learn`] only once it committed.
#[derive(Debug, Default)]
pub struct AlertNotes(Vec<(Key, Option<Cached>)>);

impl AlertNotes {
    fn set(&mut self, robot: &str, w: Watched, c: Cached) {
        self.0.push(((robot.to_string(), w), Some(c)));
    }

    fn forget(&mut self, key: Key) {
        self.0.push((key, None));
    }

    /// The newest state noted for each key (`None`: forgotten).
    fn newest(&self) -> HashMap<&Key, Option<&Cached>> {
        let mut newest = HashMap::new();
        for (k, c) in &self.0 {
            newest.insert(k, c.as_ref());
        }
        newest
    }
}

#[derive(sqlx::FromRow)]
struct StoredAlert {
    id: i64,
    robot_id: String,
    alert_type: String,
    severity: String,
    value: f64,
    threshold: f64,
    first_triggered: DateTime<Utc>,
    last_triggered: DateTime<Utc>,
    count: i32,
    resolved: bool,
    resolved_at: Option<DateTime<Utc>>,
    resolution_logged: bool,
    last_reading_at: DateTime<Utc>,
}

/// The newest fleetsink alert of each of `keys` from the table, locked: instances
/// sharing a broker's traffic evaluate one robot's alerts one after the other.
async fn read_stored<'k>(
    conn: &mut PgConnection,
    keys: &[(&'k str, Watched)],
) -> Result<HashMap<(&'k str, Watched), Option<Alert>>, sqlx::Error> {
    let robots: Vec<&str> = keys.iter().map(|(r, _)| *r).collect();
    let metrics: Vec<&str> = keys.iter().map(|(_, w)| w.name()).collect();
    let stored: Vec<StoredAlert> = sqlx::query_as(
        "SELECT id, robot_id, alert_type, severity, value, threshold, first_triggered, \
                last_triggered, count, resolved, resolved_at, resolution_logged, last_reading_at \
         FROM alerts WHERE id IN ( \
             SELECT max(a.id) FROM alerts a \
             JOIN UNNEST($1::text[], $2::text[]) AS k(robot_id, alert_type) \
               USING (robot_id, alert_type) \
             WHERE a.source = $3 \
             GROUP BY a.robot_id, a.alert_type) \
         ORDER BY id FOR UPDATE",
    )
    .bind(&robots)
    .bind(&metrics)
    .bind(SOURCE)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_key: HashMap<(String, String), StoredAlert> = stored
        .into_iter()
        .map(|a| ((a.robot_id.clone(), a.alert_type.clone()), a))
        .collect();
    Ok(keys
        .iter()
        .map(|&(robot, w)| {
            let a = by_key.remove(&(robot.to_string(), w.name().to_string()));
            ((robot, w), a.and_then(to_alert))
        })
        .collect())
}

/// What a batch's readings do to one alert.
struct Plan<'a> {
    robot: &'a str,
    w: Watched,
    /// The alert as the batch found it (what the guarded writes assume of the row).
    before: Option<Alert>,
    /// Since when `before` holds re-triggers not yet written.
    dirty_since: Option<Instant>,
    observed: Observed,
}

/// Rows as read from the table: nothing waiting to be written.
fn fresh(
    stored: HashMap<BatchKey<'_>, Option<Alert>>,
) -> impl Iterator<Item = (BatchKey<'_>, Cached)> {
    stored
        .into_iter()
        .map(|(k, alert)| (k, Cached::clean(alert)))
}

impl Plan<'_> {
    /// Whether the change must be written with the batch: anything but a re-trigger
    /// of the same alert (opened, escalated, resolved, re-activated, replaced).
    fn writes_now(&self) -> bool {
        let o = &self.observed;
        if !o.events.is_empty() || !o.replaced.is_empty() {
            return true;
        }
        match (&self.before, &o.alert) {
            (Some(b), Some(a)) => {
                a.id.is_none()
                    || b.id != a.id
                    || b.resolved != a.resolved
                    || b.level != a.level
                    || b.threshold != a.threshold
                    || b.resolved_at != a.resolved_at
                    || b.resolution_logged != a.resolution_logged
                    || b.first_triggered != a.first_triggered
            }
            (None, Some(_)) => true,
            (_, None) => false,
        }
    }
}

/// One alert row to write, and what the batch assumed of the stored row.
struct Write<'a> {
    robot: &'a str,
    w: Watched,
    alert: Alert,
    /// (resolved, severity) the row must still have; `None` for a new row.
    guard: Option<(bool, Level)>,
}

/// Evaluates the batch's readings; pushes the alert log rows onto `logs`. Returns the
/// alert rows written.
pub(super) async fn evaluate(
    conn: &mut PgConnection,
    readings: &Readings<'_>,
    settings: &AlertSettings,
    cache: &AlertCache,
    notes: &mut AlertNotes,
    logs: &mut Vec<LogRow>,
    events: &mut super::AlertEvents,
) -> Result<u64, sqlx::Error> {
    let robots: Vec<&str> = {
        let mut r: Vec<&str> = readings.by_key.keys().map(|(r, _)| *r).collect();
        r.dedup();
        r
    };
    let scopes = ThresholdScopes::read(&mut *conn, &robots).await?;
    let (mut before, misses) = cache.lookup(readings.by_key.keys().copied());
    if !misses.is_empty() {
        before.extend(fresh(read_stored(conn, &misses).await?));
    }

    let mut written = 0;
    let mut pending: Vec<(&str, Watched)> = readings.by_key.keys().copied().collect();
    // A key whose guarded write found the row changed is read again and evaluated
    // once more, now from the locked row; a second miss leaves it to the next batch.
    for round in 0..2 {
        let mut plans = Vec::new();
        for &(robot, w) in &pending {
            let Some(t) = scopes.effective(robot, w, settings.default_for(w)) else {
                continue; // disabled at the deciding scope: no alerts for this metric
            };
            let mut values = readings.by_key[&(robot, w)].clone();
            values.sort_by_key(|(_, ts)| *ts);
            let cached = before
                .get(&(robot, w))
                .cloned()
                .unwrap_or(Cached::clean(None));
            let observed = Alert::observe(cached.alert.clone(), w, &t, &settings.policy, &values);
            plans.push(Plan {
                robot,
                w,
                before: cached.alert,
                dirty_since: cached.dirty_since,
                observed,
            });
        }
        let (now, later): (Vec<Plan>, Vec<Plan>) = plans.into_iter().partition(Plan::writes_now);
        for p in later {
            // A re-trigger waits for the flush. A reading that changed only the last
            // reading's time (a normal value on a resolved alert) is kept here but
            // writes nothing: that time only guards writes against resends, and any
            // write carries it.
            let retriggered = match (&p.before, &p.observed.alert) {
                (Some(b), Some(a)) => {
                    (b.count, b.value, b.last_triggered) != (a.count, a.value, a.last_triggered)
                }
                _ => false,
            };
            let dirty_since = if retriggered {
                p.dirty_since.or(Some(Instant::now()))
            } else {
                p.dirty_since
            };
            let alert = if p.observed.changed {
                p.observed.alert
            } else {
                p.before
            };
            notes.set(p.robot, p.w, Cached { alert, dirty_since });
        }
        let (done, stale, n) = write_plans(conn, now).await?;
        written += n;
        for p in done {
            for e in &p.observed.events {
                events.count(e.event);
                logs.push(alert_log(p.robot, p.w, e));
            }
            notes.set(p.robot, p.w, Cached::clean(p.observed.alert));
        }
        if stale.is_empty() {
            break;
        }
        if round == 1 {
            tracing::debug!(
                alerts = stale.len(),
                "alert rows changed while evaluated; left to the next batch"
            );
            for (r, w) in stale {
                notes.forget((r.to_string(), w));
            }
            break;
        }
        before.extend(fresh(read_stored(conn, &stale).await?));
        pending = stale;
    }
    Ok(written)
}

/// Writes the alerts `plans` opened or changed; returns the plans written, the keys
/// whose row had changed under them (nothing of theirs written), and the rows written.
async fn write_plans<'a>(
    conn: &mut PgConnection,
    plans: Vec<Plan<'a>>,
) -> Result<(Vec<Plan<'a>>, Vec<(&'a str, Watched)>, u64), sqlx::Error> {
    if plans.is_empty() {
        return Ok((plans, Vec::new(), 0));
    }
    let guard = |p: &Plan| p.before.as_ref().map(|b| (b.resolved, b.level));
    let mut updates: Vec<Write> = Vec::new();
    for p in &plans {
        let changed = p
            .observed
            .replaced
            .iter()
            .chain(p.observed.alert.iter().filter(|_| p.observed.changed));
        for a in changed.filter(|a| a.id.is_some()) {
            updates.push(Write {
                robot: p.robot,
                w: p.w,
                alert: a.clone(),
                guard: guard(p).filter(|_| a.id == p.before.as_ref().and_then(|b| b.id)),
            });
        }
    }
    let updated = if updates.is_empty() {
        Vec::new()
    } else {
        update(conn, &updates).await?
    };
    let mut stale: Vec<(&str, Watched)> = updates
        .iter()
        .filter(|u| !updated.contains(&u.alert.id.unwrap_or_default()))
        .map(|u| (u.robot, u.w))
        .collect();
    stale.dedup();
    let mut written = updated.len() as u64;

    let mut plans: Vec<Plan> = plans
        .into_iter()
        .filter(|p| !stale.contains(&(p.robot, p.w)))
        .collect();
    let inserts: Vec<Write> = plans
        .iter()
        .filter_map(|p| {
            let a = p.observed.alert.as_ref().filter(|a| a.id.is_none())?;
            Some(Write {
                robot: p.robot,
                w: p.w,
                alert: a.clone(),
                guard: None,
            })
        })
        .collect();
    if !inserts.is_empty() {
        let ids = insert(conn, &inserts).await?;
        written += ids.len() as u64;
        for p in &mut plans {
            if let Some(a) = p.observed.alert.as_mut().filter(|a| a.id.is_none()) {
                match ids.get(&(p.robot, p.w.name())) {
                    Some(id) => a.id = Some(*id),
                    // Another instance opened this alert a moment ago.
                    None => stale.push((p.robot, p.w)),
                }
            }
        }
        plans.retain(|p| p.observed.alert.as_ref().is_none_or(|a| a.id.is_some()));
    }
    Ok((plans, stale, written))
}

/// Writes every re-triggered alert the worker keeps in memory (module docs), in one
/// statement inside the caller's transaction: when the worker is idle, after the API
/// changed alerts, and at shutdown.
pub async fn flush(
    conn: &mut PgConnection,
    cache: &AlertCache,
    notes: &mut AlertNotes,
) -> Result<u64, sqlx::Error> {
    let dirty = cache.dirty_entries();
    write_retriggers(conn, dirty, notes).await
}

/// Writes, with a batch, the re-triggered alerts that have waited
/// `alerts.flush_interval` (as the batch left them, for its own robots).
pub(super) async fn flush_due(
    conn: &mut PgConnection,
    cache: &AlertCache,
    notes: &mut AlertNotes,
) -> Result<u64, sqlx::Error> {
    let Some(due_since) = Instant::now().checked_sub(cache.flush_every) else {
        return Ok(0);
    };
    let is_due = |c: &Cached| c.dirty_since.is_some_and(|t| t <= due_since);
    // The batch's own robots as it left them; the others as the cache has them.
    let batch = notes.newest();
    let mut due: HashMap<Key, Alert> = HashMap::new();
    if cache.has_dirty() {
        for (k, a) in cache.due_entries(due_since) {
            if !batch.contains_key(&k) {
                due.insert(k, a);
            }
        }
    }
    for (k, c) in batch {
        if let Some(a) = c.filter(|c| is_due(c)).and_then(|c| c.alert.as_ref()) {
            due.insert(k.clone(), a.clone());
        }
    }
    if due.is_empty() {
        return Ok(0);
    }
    write_retriggers(conn, due.into_iter().collect(), notes).await
}

/// The guarded write of re-triggered alerts: a row resolved, deleted or escalated by
/// someone else since is left alone, and its entry forgotten (read again when its
/// robot reports). It only moves counts and times forward, so repeating it (after a
/// commit whose outcome was lost) is harmless.
async fn write_retriggers(
    conn: &mut PgConnection,
    dirty: Vec<(Key, Alert)>,
    notes: &mut AlertNotes,
) -> Result<u64, sqlx::Error> {
    if dirty.is_empty() {
        return Ok(0);
    }
    let rows: Vec<(&str, Watched, Alert)> = dirty
        .iter()
        .map(|((r, w), a)| (r.as_str(), *w, a.clone()))
        .collect();
    let ids: Vec<i64> = rows.iter().filter_map(|(_, _, a)| a.id).collect();
    let c = columns(&rows);
    let kept: Vec<i64> = sqlx::query_scalar(
        "UPDATE alerts a SET \
             value = CASE WHEN u.last_triggered >= a.last_triggered THEN u.value ELSE a.value END, \
             message = CASE WHEN u.last_triggered >= a.last_triggered THEN u.message ELSE a.message END, \
             last_triggered = greatest(a.last_triggered, u.last_triggered), \
             count = greatest(a.count, u.count), \
             last_reading_at = greatest(a.last_reading_at, u.last_reading_at), \
             updated_at = now() \
         FROM UNNEST($1::int8[], $2::bool[], $3::text[], $4::float8[], $5::timestamptz[], \
             $6::int4[], $7::timestamptz[], $8::text[]) \
           AS u(id, resolved, severity, value, last_triggered, count, last_reading_at, message) \
         WHERE a.id = u.id AND a.resolved = u.resolved AND a.severity = u.severity \
         RETURNING a.id",
    )
    .bind(&ids)
    .bind(&c.resolved)
    .bind(&c.severity)
    .bind(&c.value)
    .bind(&c.last_triggered)
    .bind(&c.count)
    .bind(&c.last_reading_at)
    .bind(&c.message)
    .fetch_all(&mut *conn)
    .await?;
    let kept: HashSet<i64> = kept.into_iter().collect();
    for ((robot, w), a) in dirty {
        if a.id.is_some_and(|id| kept.contains(&id)) {
            notes.set(&robot, w, Cached::clean(Some(a)));
        } else {
            notes.forget((robot, w));
        }
    }
    Ok(kept.len() as u64)
}

fn to_alert(a: StoredAlert) -> Option<Alert> {
    Some(Alert {
        id: Some(a.id),
        level: Level::from_name(&a.severity)?,
        value: a.value,
        threshold: a.threshold,
        first_triggered: a.first_triggered,
        last_triggered: a.last_triggered,
        count: a.count,
        resolved: a.resolved,
        resolved_at: a.resolved_at,
        resolution_logged: a.resolution_logged,
        last_reading_at: a.last_reading_at,
    })
}

/// The log row of one alert event; keyed by the alert's start and the event, so a
/// rewritten batch does not log it twice.
fn alert_log(robot: &str, w: Watched, e: &EventAt) -> LogRow {
    let (value, threshold) = (e.value, e.threshold);
    let (level, what) = match e.event {
        Event::Opened(Level::Warning) => ("WARNING", "warning"),
        Event::Opened(Level::Critical) => ("CRITICAL", "critical"),
        Event::Escalated => ("CRITICAL", "escalated to critical"),
        Event::Resolved => ("INFO", "resolved"),
    };
    let relation = if w.low_is_bad() { "below" } else { "above" };
    let message = match e.event {
        Event::Resolved => format!("{} alert resolved: {value}", w.name()),
        _ => format!(
            "{} {what}: {value} {relation} threshold {threshold}",
            w.name()
        ),
    };
    LogRow {
        robot_id: Some(robot.to_string()),
        ts: e.ts,
        level: level.into(),
        category: "alert".into(),
        source: Some(SOURCE.into()),
        message,
        details: Some(serde_json::json!({
            "metric": w.name(), "level": e.level.name(), "event": what,
            "value": value, "threshold": threshold,
        })),
        dedup_key: message_fingerprint(
            &format!(
                "{robot}/alert/{}/{}",
                w.name(),
                e.first_triggered.to_rfc3339()
            ),
            what.as_bytes(),
        ),
    }
}

/// The alerts to write, column by column (for `UNNEST`).
#[derive(Default)]
struct Columns<'a> {
    robot: Vec<&'a str>,
    alert_type: Vec<&'static str>,
    severity: Vec<&'static str>,
    value: Vec<f64>,
    threshold: Vec<f64>,
    first_triggered: Vec<DateTime<Utc>>,
    last_triggered: Vec<DateTime<Utc>>,
    count: Vec<i32>,
    resolved: Vec<bool>,
    resolved_at: Vec<Option<DateTime<Utc>>>,
    resolution_logged: Vec<bool>,
    last_reading_at: Vec<DateTime<Utc>>,
    title: Vec<String>,
    message: Vec<String>,
}

fn columns<'a>(rows: &[(&'a str, Watched, Alert)]) -> Columns<'a> {
    let mut c = Columns::default();
    for (robot, w, a) in rows {
        c.robot.push(robot);
        c.alert_type.push(w.name());
        c.severity.push(a.level.name());
        c.value.push(a.value);
        c.threshold.push(a.threshold);
        c.first_triggered.push(a.first_triggered);
        c.last_triggered.push(a.last_triggered);
        c.count.push(a.count);
        c.resolved.push(a.resolved);
        c.resolved_at.push(a.resolved_at);
        c.resolution_logged.push(a.resolution_logged);
        c.last_reading_at.push(a.last_reading_at);
        c.title.push(alerts::title(*w, robot));
        c.message.push(alerts::message(*w, a.value, a.threshold));
    }
    c
}

fn rows<'a>(writes: &[Write<'a>]) -> Vec<(&'a str, Watched, Alert)> {
    writes
        .iter()
        .map(|w| (w.robot, w.w, w.alert.clone()))
        .collect()
}

/// Inserts new alerts; returns the id of each by robot and metric. An open alert
/// another instance inserted a moment ago wins (the unique index allows one open
/// threshold alert per robot and metric): no id comes back for it.
async fn insert<'a>(
    conn: &mut PgConnection,
    writes: &[Write<'a>],
) -> Result<HashMap<(&'a str, &'static str), i64>, sqlx::Error> {
    let rows = rows(writes);
    let c = columns(&rows);
    let ids: Vec<(String, String, i64)> = sqlx::query_as(
        "INSERT INTO alerts (robot_id, alert_type, severity, value, threshold, first_triggered, \
             last_triggered, count, resolved, resolved_at, resolution_logged, last_reading_at, \
             title, message, source) \
         SELECT *, $13 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[], \
             $5::float8[], $6::timestamptz[], $7::timestamptz[], $8::int4[], $9::bool[], \
             $10::timestamptz[], $11::bool[], $12::timestamptz[], $14::text[], $15::text[]) \
         ON CONFLICT (robot_id, alert_type) WHERE NOT resolved AND source = 'fleetsink' \
         DO NOTHING \
         RETURNING robot_id, alert_type, id",
    )
    .bind(&c.robot)
    .bind(&c.alert_type)
    .bind(&c.severity)
    .bind(&c.value)
    .bind(&c.threshold)
    .bind(&c.first_triggered)
    .bind(&c.last_triggered)
    .bind(&c.count)
    .bind(&c.resolved)
    .bind(&c.resolved_at)
    .bind(&c.resolution_logged)
    .bind(&c.last_reading_at)
    .bind(SOURCE)
    .bind(&c.title)
    .bind(&c.message)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids
        .into_iter()
        .filter_map(|(robot, metric, id)| {
            let w = writes
                .iter()
                .find(|w| w.robot == robot && w.w.name() == metric)?;
            Some(((w.robot, w.w.name()), id))
        })
        .collect())
}

/// Writes changed alerts whole, each only if its row still has the resolved state and
/// severity the batch assumed; returns the ids written.
async fn update(conn: &mut PgConnection, writes: &[Write<'_>]) -> Result<Vec<i64>, sqlx::Error> {
    let ids: Vec<i64> = writes.iter().filter_map(|w| w.alert.id).collect();
    let guarded: Vec<bool> = writes.iter().map(|w| w.guard.is_some()).collect();
    let was_resolved: Vec<bool> = writes
        .iter()
        .map(|w| w.guard.is_some_and(|g| g.0))
        .collect();
    let was_severity: Vec<&str> = writes
        .iter()
        .map(|w| w.guard.map_or("", |g| g.1.name()))
        .collect();
    let rows = rows(writes);
    let c = columns(&rows);
    sqlx::query_scalar(
        "UPDATE alerts a SET severity = u.severity, value = u.value, threshold = u.threshold, \
             last_triggered = u.last_triggered, count = u.count, resolved = u.resolved, \
             resolved_at = u.resolved_at, resolution_logged = u.resolution_logged, \
             last_reading_at = u.last_reading_at, message = u.message, updated_at = now() \
         FROM UNNEST($1::int8[], $2::text[], $3::float8[], $4::float8[], $5::timestamptz[], \
             $6::int4[], $7::bool[], $8::timestamptz[], $9::bool[], $10::timestamptz[], \
             $11::text[], $12::bool[], $13::bool[], $14::text[]) \
           AS u(id, severity, value, threshold, last_triggered, count, resolved, resolved_at, \
                resolution_logged, last_reading_at, message, guarded, was_resolved, was_severity) \
         WHERE a.id = u.id \
           AND (NOT u.guarded OR (a.resolved = u.was_resolved AND a.severity = u.was_severity)) \
         RETURNING a.id",
    )
    .bind(&ids)
    .bind(&c.severity)
    .bind(&c.value)
    .bind(&c.threshold)
    .bind(&c.last_triggered)
    .bind(&c.count)
    .bind(&c.resolved)
    .bind(&c.resolved_at)
    .bind(&c.resolution_logged)
    .bind(&c.last_reading_at)
    .bind(&c.message)
    .bind(&guarded)
    .bind(&was_resolved)
    .bind(&was_severity)
    .fetch_all(&mut *conn)
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn open_alert(count: i32) -> Alert {
        let now = Utc::now();
        Alert {
            id: Some(i64::from(count)),
            level: Level::Warning,
            value: 1.0,
            threshold: 1.0,
            first_triggered: now,
            last_triggered: now,
            count,
            resolved: false,
            resolved_at: None,
            resolution_logged: false,
            last_reading_at: now,
        }
    }

    fn note(notes: &mut AlertNotes, robot: &str, count: i32, since: Option<Instant>) {
        let c = Cached {
            alert: Some(open_alert(count)),
            dirty_since: since,
        };
        notes.set(robot, Watched::Cpu, c);
    }

    fn robots(mut due: Vec<(Key, Alert)>) -> Vec<String> {
        due.sort_by(|a, b| a.0.cmp(&b.0));
        due.into_iter().map(|((r, _), _)| r).collect()
    }

    #[test]
    fn given_entries_dirtied_over_time_when_asked_what_is_due_then_only_the_due_live_ones_come_back()
     {
        let cache = AlertCache::new(Duration::from_secs(5), Arc::new(AlertEdits::default()));
        let t0 = Instant::now();
        let (t1, t2) = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2));
        let mut n = AlertNotes::default();
        note(&mut n, "a", 1, Some(t0));
        note(&mut n, "b", 1, Some(t1));
        note(&mut n, "c", 1, Some(t2));
        cache.learn(n);
        // "a" re-triggered again (same dirty time: not queued twice), "b" written.
        let mut n = AlertNotes::default();
        note(&mut n, "a", 2, Some(t0));
        note(&mut n, "b", 1, None);
        cache.learn(n);

        assert_eq!(robots(cache.due_entries(t1)), ["a"]);
        assert_eq!(robots(cache.due_entries(t2)), ["a", "c"]);
        assert_eq!(
            cache.lock().due.len(),
            3,
            "b is stale but not at the front yet"
        );

        // "a" written and dirtied anew later: its old item is stale, the new one waits.
        let t3 = t0 + Duration::from_secs(3);
        let mut n = AlertNotes::default();
        note(&mut n, "a", 3, None);
        note(&mut n, "a", 4, Some(t3));
        cache.learn(n);
        assert_eq!(robots(cache.due_entries(t2)), ["c"]);
        assert_eq!(
            cache.lock().due.len(),
            2,
            "stale items at the front dropped"
        );
        assert_eq!(robots(cache.due_entries(t3)), ["a", "c"]);
        assert_eq!(robots(cache.dirty_entries()), ["a", "c"]);
        assert_eq!(cache.lock().dirty, 2);
    }
}
