//! The systemd unit passes `systemd-analyze verify`, and the daemon speaks the notify
//! protocol: READY=1 once up, WATCHDOG=1 while healthy, STOPPING=1 on SIGTERM.

use std::time::Duration;

use tokio::net::UnixDatagram;

use crate::helpers::*;

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/fleetsink.service"
    ))
    .unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "TimeoutStopSec=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "StateDirectory=fleetsink",
        "ConfigurationDirectory=fleetsink",
        "User=fleetsink",
    ] {
        assert!(unit.contains(line), "the unit lacks {line}");
    }
    // Verify it as installed, with the binary this build made in /usr/bin's place.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleetsink.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/fleetsink", env!("CARGO_BIN_EXE_fleetsink")),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze is needed (Debian/Ubuntu: apt-get install systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("fleetsink.service"),
        "warnings about the unit: {stderr}"
    );
}

async fn next_notification(sock: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), sock.recv(&mut buf))
        .await
        .expect("no notification within 30 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_watchdog_and_stopping_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let db = fresh_database().await;
    let mqtt = loopback(free_port());
    let daemon = Daemon::start(&[
        ("FLEETSINK__DATABASE__URL", db),
        ("FLEETSINK__MQTT__EMBEDDED__LISTEN", mqtt.to_string()),
        ("NOTIFY_SOCKET", path.display().to_string()),
        ("WATCHDOG_USEC", "1000000".into()),
    ])
    .await;
    let first = next_notification(&sock).await;
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    // Idle by choice, the watchdog is fed about every half second.
    let mut pings = 0;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        if next_notification(&sock)
            .await
            .lines()
            .any(|l| l == "WATCHDOG=1")
        {
            pings += 1;
        }
    }
    assert!(pings >= 3, "{pings} watchdog pings in 3 s");
    let stopping = tokio::spawn(async move {
        loop {
            let n = next_notification(&sock).await;
            if n.lines().any(|l| l == "STOPPING=1") {
                return n;
            }
        }
    });
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
    stopping.await.unwrap();
}
