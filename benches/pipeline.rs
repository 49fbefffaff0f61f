//! `cargo bench`: the CPU cost of decoding and batching the captured TonyPi traffic,
//! and — when `FLEETSINK_BENCH_DATABASE_URL` names a database fleetsink may migrate —
//! the cost of writing one batch to PostgreSQL (each iteration is rolled back, so the
//! tables do not grow and every iteration inserts the same rows).
//!
//! End-to-end throughput (MQTT in, committed rows out) is `fleetsink bench`; see
//! BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fleetsink::config::Config;
use fleetsink::db::writes::{self, Caches, Entry, Learned, MetricsWrite, WriteOptions};
use fleetsink::model::Decoded;
use fleetsink::pipeline::batch::{Item, decode_envelope};
use fleetsink::pipeline::decode::{self, DecodeSettings};
use fleetsink::pipeline::route::Router;
use fleetsink::pipeline::{AckToken, Envelope};
use fleetsink::testing::fixtures;

fn options() -> DecodeSettings {
    DecodeSettings {
        // The capture is from one morning; accept its timestamps whenever this runs.
        max_clock_skew: chrono::Duration::days(3650),
        ..DecodeSettings::default()
    }
}

fn router() -> Router {
    Router::new(&Config::default().effective_routes()).unwrap()
}

fn received_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T09:28:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn bench_decode(c: &mut Criterion) {
    let fx = fixtures();
    let router = router();
    let opts = options();
    let at = received_at();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(fx.len() as u64));
    g.bench_function("tonypi_capture", |b| {
        b.iter(|| {
            for (topic, payload) in &fx {
                let route = router.find(topic).unwrap();
                let _ = black_box(decode::decode(route, topic, payload, at, &opts));
            }
        })
    });
    g.finish();
}

/// Route + decode + metrics bookkeeping for one batch, as intake and the batcher do it.
fn bench_batch(c: &mut Criterion) {
    let fx = fixtures();
    let router = router();
    let opts = options();
    let at = received_at();
    let envelopes = || -> Vec<Envelope> {
        fx.iter()
            .cycle()
            .take(5000)
            .map(|(topic, payload)| Envelope {
                topic: topic.clone(),
                route: None,
                payload: payload.clone(),
                received_at: at,
                client_id: Some("bench".into()),
                username: None,
                ack: AckToken::None,
            })
            .collect()
    };
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(5000));
    g.bench_function("decode_envelope_5000", |b| {
        b.iter_batched(
            envelopes,
            |envs| {
                let items: Vec<Item> = envs
                    .into_iter()
                    .map(|mut e| {
                        // The route lookup the source does at intake.
                        e.route = router.find(&e.topic).cloned();
                        decode_envelope(e, &opts)
                    })
                    .collect();
                black_box(items)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// A batch of `copies` × the capture, each copy under its own robot ids so no two
/// rows collide.
fn decoded_batch(copies: usize) -> Vec<Decoded> {
    fleetsink::testing::decoded_fleets(copies, received_at())
}

fn bench_insert(c: &mut Criterion) {
    let Ok(url) = std::env::var("FLEETSINK_BENCH_DATABASE_URL") else {
        eprintln!(
            "insert benchmarks skipped: set FLEETSINK_BENCH_DATABASE_URL to a database fleetsink may migrate"
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pool = rt.block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        fleetsink::db::MIGRATOR.run(&pool).await.unwrap();
        pool
    });
    let batch = decoded_batch(8); // 1040 messages, as in a busy group commit
    let rows: usize = batch.iter().map(Decoded::row_count).sum();
    let entries: Vec<Entry> = batch
        .iter()
        .map(|d| Entry::Rows {
            decoded: d,
            received_at: received_at(),
        })
        .collect();
    // Warm the caches as a running daemon has them (metric dictionary, robots rows):
    // commit the batch once, keep what it learned, then delete the batch's rows again
    // but for the robots, which a running daemon has registered.
    let caches = Caches::new(std::time::Duration::from_secs(5));
    let alerts = fleetsink::alerts::AlertSettings::default();
    let alert_cache = writes::AlertCache::new(alerts.flush_every, Default::default());
    // The minute rollups as the daemon runs by default: each batch notes its rows (and
    // registers the minute the first time).
    let rollups = writes::RollupCache::new(true);
    rt.block_on(async {
        let mut learned = Learned::default();
        let opts = WriteOptions {
            error_payload_cap: 4096,
            metrics: MetricsWrite::SkipExisting,
            caches: &caches,
            alert_cache: &alert_cache,
            rollups: &rollups,
            alerts: &alerts,
        };
        let mut tx = pool.begin().await.unwrap();
        writes::write(&mut tx, &entries, &opts, &mut learned)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        caches.learn(learned, &alert_cache, &rollups);
        let robots: Vec<&str> = batch.iter().map(|d| d.robot_id.as_str()).collect();
        for sql in [
            "DELETE FROM metrics WHERE robot IN (SELECT id FROM robots WHERE robot_id = ANY($1))",
            "DELETE FROM logs WHERE robot_id = ANY($1)",
            "DELETE FROM jobs WHERE robot_id = ANY($1)",
        ] {
            sqlx::query(sql).bind(&robots).execute(&pool).await.unwrap();
        }
    });
    let mut g = c.benchmark_group("insert");
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(10));
    g.throughput(Throughput::Elements(rows as u64));
    for (name, mode) in [
        ("plain_rows", MetricsWrite::Plain),
        ("skip_existing_rows", MetricsWrite::SkipExisting),
        ("copy_rows", MetricsWrite::Copy),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let opts = WriteOptions {
                    error_payload_cap: 4096,
                    metrics: mode,
                    caches: &caches,
                    alert_cache: &alert_cache,
                    rollups: &rollups,
                    alerts: &alerts,
                };
                let mut learned = Learned::default();
                let mut tx = pool.begin().await.unwrap();
                let w = writes::write(&mut tx, &entries, &opts, &mut learned)
                    .await
                    .unwrap();
                tx.rollback().await.unwrap();
                black_box(w)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decode, bench_batch, bench_insert);
criterion_main!(benches);
