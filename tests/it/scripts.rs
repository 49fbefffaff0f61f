//! `scripts/run.sh` tells an operator what went wrong and what to do: a PostgreSQL port
//! already taken is named, with the way out, before anything is started.

use std::process::Command;

#[test]
fn given_the_postgresql_port_taken_when_run_sh_starts_then_it_names_the_port_and_the_way_out() {
    // GIVEN a copy of the scripts (so the cluster directory is a throwaway one) and a
    // program listening on the port run.sh would give PostgreSQL
    let repo = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    for script in ["run.sh", "lib.sh"] {
        std::fs::copy(
            format!("{repo}/scripts/{script}"),
            dir.path().join("scripts").join(script),
        )
        .unwrap();
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();

    // WHEN run.sh starts with that port
    let out = Command::new("bash")
        .arg(dir.path().join("scripts/run.sh"))
        .env_remove("DATABASE_URL")
        .env_remove("FLEETSINK__DATABASE__URL")
        .env("FLEETSINK_PG_PORT", port.to_string())
        .output()
        .unwrap();

    // THEN it stops, says the port is in use and how to choose another, and started
    // nothing
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("port {port} on 127.0.0.1 is in use")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "FLEETSINK_PG_PORT={} scripts/run.sh",
            u32::from(port) + 1
        )),
        "{err}"
    );
    assert!(err.contains("DATABASE_URL="), "{err}");
    assert!(!dir.path().join(".fleetsink-pg").exists());
}
