//! The metric dictionaries: `metric_names` (name + unit → id) and `metric_sets` (the
//! ordered list of name ids of one message's values → id), cached in-process.
//!
//! A batch resolves its names and sets from the cache; what is missing is inserted
//! inside the batch's own transaction (`INSERT … ON CONFLICT DO NOTHING`, then a
//! `SELECT` in a new statement, so an id another instance committed meanwhile is seen;
//! one inserting the same name concurrently makes ours wait for its commit). New ids go
//! into the cache only after the batch commits ([`Dictionary::learn`]): an id from a
//! rolled-back transaction must never be reused.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

use sqlx::PgConnection;

use super::push_clean;

/// Entries beyond this are dropped from the cache (and re-read from PostgreSQL when
/// next needed), so a device that invents a new metric name per message cannot grow
/// fleetsink's memory without bound.
const MAX_CACHED: usize = 200_000;

/// A metric name with its unit (`""` for none) as one key: `name`, NUL, `unit`. Neither
/// holds a NUL (PostgreSQL text cannot; the sink removes them), so the key is
/// unambiguous, and a batch looks its names up as slices of one buffer, without a
/// string per name ([`push_name_key`]).
pub type NameKey = String;

/// Appends `name` and `unit`'s key (see [`NameKey`]) to `buf`, their NULs removed.
pub fn push_name_key(buf: &mut String, name: &str, unit: &str) {
    push_clean(buf, name);
    buf.push('\0');
    push_clean(buf, unit);
}

/// The name and unit of a [`NameKey`].
fn split_name_key(key: &str) -> (&str, &str) {
    key.split_once('\0').unwrap_or((key, ""))
}

/// The process-wide dictionary cache, shared by every sink worker.
#[derive(Debug, Default)]
pub struct Dictionary {
    names: RwLock<HashMap<NameKey, i32>>,
    sets: RwLock<HashMap<Vec<i32>, i32>>,
}

/// Ids a batch read or inserted that the cache does not hold yet; handed to
/// [`Dictionary::learn`] once the batch has committed.
#[derive(Debug, Default)]
pub struct Learned {
    names: HashMap<NameKey, i32>,
    sets: HashMap<Vec<i32>, i32>,
}

impl Dictionary {
    /// Adds what a committed batch learned.
    pub fn learn(&self, learned: Learned) {
        if !learned.names.is_empty() {
            let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
            if names.len() + learned.names.len() > MAX_CACHED {
                names.clear();
            }
            names.extend(learned.names);
        }
        if !learned.sets.is_empty() {
            let mut sets = self.sets.write().unwrap_or_else(|p| p.into_inner());
            if sets.len() + learned.sets.len() > MAX_CACHED {
                sets.clear();
            }
            sets.extend(learned.sets);
        }
    }

    /// Ids of `keys`, inserting the names PostgreSQL does not know yet.
    pub async fn name_ids(
        &self,
        conn: &mut PgConnection,
        keys: &[&str],
        learned: &mut Learned,
    ) -> Result<Vec<i32>, sqlx::Error> {
        let mut ids = cached(&self.names, &learned.names, keys.iter().copied());
        if ids.contains(&None) {
            let mut missing = unknown(keys.iter().copied(), &ids);
            // A fixed order, so two instances adding the same new names cannot deadlock.
            missing.sort_unstable();
            missing.dedup();
            let (names, units): (Vec<&str>, Vec<&str>) =
                missing.iter().map(|k| split_name_key(k)).unzip();
            sqlx::query(
                "INSERT INTO metric_names (name, unit) \
                 SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            )
            .bind(&names)
            .bind(&units)
            .execute(&mut *conn)
            .await?;
            let found: Vec<(i32, String, String)> = sqlx::query_as(
                "SELECT n.id, n.name, n.unit FROM metric_names n \
                 JOIN UNNEST($1::text[], $2::text[]) AS k(name, unit) USING (name, unit)",
            )
            .bind(&names)
            .bind(&units)
            .fetch_all(&mut *conn)
            .await?;
            for (id, name, unit) in found {
                let mut key = NameKey::with_capacity(name.len() + 1 + unit.len());
                push_name_key(&mut key, &name, &unit);
                learned.names.insert(key, id);
            }
            fill(&mut ids, keys.iter().copied(), &learned.names);
        }
        keys.iter()
            .zip(ids)
            .map(|(k, id)| id.ok_or_else(|| missing_entry("metric_names", split_name_key(k).0)))
            .collect()
    }

    /// Ids of the name-id lists `sets`, inserting the ones PostgreSQL does not know yet.
    pub async fn set_ids(
        &self,
        conn: &mut PgConnection,
        sets: &[&[i32]],
        learned: &mut Learned,
    ) -> Result<Vec<i32>, sqlx::Error> {
        let mut ids = cached(&self.sets, &learned.sets, sets.iter().copied());
        if ids.contains(&None) {
            let mut missing = unknown(sets.iter().copied(), &ids);
            missing.sort_unstable();
            missing.dedup();
            // Arrays of different lengths cannot be one 2-D parameter: send each as
            // an array literal.
            let literals: Vec<String> = missing.iter().map(|s| array_literal(s)).collect();
            sqlx::query(
                "INSERT INTO metric_sets (name_ids) \
                 SELECT s::int4[] FROM UNNEST($1::text[]) AS s ON CONFLICT DO NOTHING",
            )
            .bind(&literals)
            .execute(&mut *conn)
            .await?;
            let found: Vec<(i32, Vec<i32>)> = sqlx::query_as(
                "SELECT id, name_ids FROM metric_sets \
                 WHERE name_ids = ANY (SELECT s::int4[] FROM UNNEST($1::text[]) AS s)",
            )
            .bind(&literals)
            .fetch_all(&mut *conn)
            .await?;
            for (id, ids) in found {
                learned.sets.insert(ids, id);
            }
            fill(&mut ids, sets.iter().copied(), &learned.sets);
        }
        sets.iter()
            .zip(ids)
            .map(|(s, id)| id.ok_or_else(|| missing_entry("metric_sets", &array_literal(s))))
            .collect()
    }
}

/// The id of each key from the shared cache (read under one lock) or else from what
/// this batch has learned; `None` for the ones neither knows.
fn cached<'k, K, Q>(
    cache: &RwLock<HashMap<K, i32>>,
    learned: &HashMap<K, i32>,
    keys: impl Iterator<Item = &'k Q>,
) -> Vec<Option<i32>>
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ?Sized + 'k,
{
    let cache = cache.read().unwrap_or_else(|p| p.into_inner());
    keys.map(|k| cache.get(k).or_else(|| learned.get(k)).copied())
        .collect()
}

/// The keys whose id is not known yet.
fn unknown<'k, Q: ?Sized>(keys: impl Iterator<Item = &'k Q>, ids: &[Option<i32>]) -> Vec<&'k Q> {
    keys.zip(ids)
        .filter(|(_, id)| id.is_none())
        .map(|(k, _)| k)
        .collect()
}

/// Fills the unknown ids from what the batch has just learned.
fn fill<'k, K, Q>(
    ids: &mut [Option<i32>],
    keys: impl Iterator<Item = &'k Q>,
    learned: &HashMap<K, i32>,
) where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ?Sized + 'k,
{
    for (id, k) in ids.iter_mut().zip(keys) {
        if id.is_none() {
            *id = learned.get(k).copied();
        }
    }
}

fn array_literal(ids: &[i32]) -> String {
    let inner: Vec<String> = ids.iter().map(i32::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

/// A dictionary row that was inserted (or found to exist) and then not found: only
/// possible if something deletes dictionary rows under a running fleetsink.
fn missing_entry(table: &str, key: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!(
        "{table} has no row for {key:?} right after inserting it; were dictionary rows deleted?"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_fills_and_bounds_the_cache() {
        let d = Dictionary::default();
        let mut l = Learned::default();
        l.names.insert("a\0".into(), 1);
        l.sets.insert(vec![1], 7);
        d.learn(l);
        assert_eq!(
            cached(&d.names, &HashMap::new(), ["a\0"].into_iter()),
            [Some(1)]
        );
        assert_eq!(
            cached(&d.sets, &HashMap::new(), [&[1][..]].into_iter()),
            [Some(7)]
        );
        let mut big = Learned::default();
        for i in 0..MAX_CACHED as i32 {
            big.sets.insert(vec![i, i], i);
        }
        d.learn(big);
        assert!(d.sets.read().unwrap().len() <= MAX_CACHED);
        assert_eq!(array_literal(&[3, 1, 2]), "{3,1,2}");
    }

    #[test]
    fn name_keys_hold_name_and_unit_without_nuls() {
        let mut buf = String::new();
        push_name_key(&mut buf, "servo\0.temp", "°C\0");
        assert_eq!(buf, "servo.temp\0°C");
        assert_eq!(split_name_key(&buf), ("servo.temp", "°C"));
        buf.clear();
        push_name_key(&mut buf, "battery", "");
        assert_eq!(split_name_key(&buf), ("battery", ""));
    }
}
