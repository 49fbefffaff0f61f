//! The reference the external path is measured against (BENCHMARKS.md, "External
//! against a reference"): the least an MQTT → PostgreSQL sink with the same guarantee
//! must do. One QoS 1 subscription to the broker with manual acks, messages batched as
//! they arrive (up to 5,000), each message's numbers (every numeric leaf of its JSON)
//! written as one row by a streaming text `COPY` in one transaction per batch, and the
//! batch's PUBACKs sent after the commit. No routes, robots, alerts, dictionaries or
//! idempotency: what fleetsink does beyond this is what the comparison prices.
//!
//! ```text
//! cargo run --release --example reference_sink -- HOST:PORT DATABASE_URL IDLE_SECONDS
//! ```
//!
//! Creates `reference_rows` in the database, subscribes to `#`, and stops once no
//! message has arrived for IDLE_SECONDS after the first; then prints the messages and
//! values committed and the rate from the first message received to the last commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

const BATCH: usize = 5_000;

fn numbers(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Number(n) => out.extend(n.as_f64()),
        Value::Array(a) => a.iter().for_each(|v| numbers(v, out)),
        Value::Object(o) => o.values().for_each(|v| numbers(v, out)),
        _ => {}
    }
}

/// One `COPY … FROM STDIN` text line: received time, topic, the numbers as an array.
fn line(buf: &mut String, p: &Publish, received: &str) -> usize {
    let mut vals = Vec::new();
    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
        numbers(&v, &mut vals);
    }
    let topic = p
        .topic
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n");
    let _ = write!(buf, "{received}\t{topic}\t{{");
    for (i, v) in vals.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(buf, "{sep}{v}");
    }
    buf.push_str("}\n");
    vals.len()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, broker, db, idle] = args.as_slice() else {
        anyhow::bail!("usage: reference_sink HOST:PORT DATABASE_URL IDLE_SECONDS");
    };
    let (host, port) = broker
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("broker must be HOST:PORT"))?;
    let idle = Duration::from_secs(idle.parse()?);
    let mut conn = PgConnection::connect(db).await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS reference_rows \
         (ts timestamptz NOT NULL, topic text NOT NULL, vals float8[] NOT NULL)",
    )
    .execute(&mut conn)
    .await?;

    let mut opts = MqttOptions::new("fleetsink-reference-sink", host, port.parse()?);
    opts.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_request_channel_capacity(20_000);
    let (client, mut events) = AsyncClient::new(opts, 20_000);
    client.subscribe("#", QoS::AtLeastOnce).await?;
    // Unbounded, so that the MQTT task never waits on this loop while this loop waits
    // on it to take acks (with a bounded channel both sides filled and the sink
    // stalled); the broker's in-flight window bounds what is held here.
    let (tx, mut rx) = mpsc::unbounded_channel::<Publish>();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("reference sink: MQTT: {e}; reconnecting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });

    let (mut messages, mut values) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last_commit = Instant::now();
    let mut batch: Vec<Publish> = Vec::with_capacity(BATCH);
    let mut text = String::new();
    loop {
        batch.clear();
        let wait = if first.is_some() {
            idle
        } else {
            Duration::from_secs(3600)
        };
        match tokio::time::timeout(wait, rx.recv_many(&mut batch, BATCH)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        first.get_or_insert_with(Instant::now);
        let received = chrono::Utc::now().to_rfc3339();
        text.clear();
        for p in &batch {
            values += line(&mut text, p, &received) as u64;
        }
        let mut tx = conn.begin().await?;
        let mut copy = tx
            .copy_in_raw("COPY reference_rows (ts, topic, vals) FROM STDIN")
            .await?;
        copy.send(text.as_bytes()).await?;
        copy.finish().await?;
        tx.commit().await?;
        last_commit = Instant::now();
        messages += batch.len() as u64;
        for p in &batch {
            client.ack(p).await?;
        }
    }
    let span = first.map_or(Duration::ZERO, |f| last_commit - f);
    println!(
        "reference sink: {messages} messages ({values} values, {:.2} per message) committed in {:.1} s = {:.0} msg/s",
        values as f64 / messages.max(1) as f64,
        span.as_secs_f64(),
        messages as f64 / span.as_secs_f64().max(1e-9)
    );
    Ok(())
}
