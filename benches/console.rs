//! What sign-in costs (BENCHMARKS.md, "Console sign-in"): checking a session token
//! (`verify_token`: the HMAC-SHA256 and two small JSON decodes, the cost the JWT check adds
//! to every console request besides a hash-map lookup), issuing one, and the argon2id
//! password check that dominates a login. CPU only, no database.
//!
//! ```sh
//! cargo bench --bench console
//! ```

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use fleetsink::auth::console::{self, Role};

const SECRET: &[u8] = b"a-32-character-or-longer-secret-for-benchmarks";

fn tokens(c: &mut Criterion) {
    let now = Utc::now();
    let token = console::issue_token(
        "operator_7",
        Role::Operator,
        SECRET,
        now,
        Duration::from_secs(8 * 3600),
    );
    c.bench_function("console/verify_token", |b| {
        b.iter(|| console::verify_token(std::hint::black_box(&token), SECRET, now).unwrap())
    });
    c.bench_function("console/issue_token", |b| {
        b.iter(|| {
            console::issue_token(
                "operator_7",
                Role::Operator,
                SECRET,
                now,
                Duration::from_secs(3600),
            )
        })
    });
}

fn passwords(c: &mut Criterion) {
    let hash = console::hash_password("correct horse battery").unwrap();
    let mut group = c.benchmark_group("console");
    group.sample_size(20);
    group.bench_function("verify_password_argon2id", |b| {
        b.iter(|| assert!(console::verify_password("correct horse battery", &hash)))
    });
    group.finish();
}

criterion_group!(benches, tokens, passwords);
criterion_main!(benches);
