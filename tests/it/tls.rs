//! TLS: the embedded broker's TLS listener (with and without client certificates) and
//! external mode over `mqtts://` to a Mosquitto with a TLS listener and a password,
//! all with a throwaway CA generated here.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetsink::config::MqttMode;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};

use crate::helpers::*;

/// A CA and, signed by it, a server certificate for 127.0.0.1/localhost and a client
/// certificate; PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fleetsink test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca.pem());
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ),
            ("client", vec!["robot7".to_string()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        // Another CA, which signed nothing here.
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = CertifiedIssuer::self_signed(other, KeyPair::generate().unwrap()).unwrap();
        write("other-ca.pem", other.pem());
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

/// Connects over TLS trusting `ca`, optionally with a client certificate; publishes one
/// QoS 1 message and waits for its PUBACK. `Err` carries the connection error.
async fn tls_publish(
    addr: std::net::SocketAddr,
    pki: &Pki,
    ca: &str,
    client_cert: bool,
    topic: &str,
    payload: String,
) -> Result<(), String> {
    let mut opts = MqttOptions::new("tls-robot", "127.0.0.1", addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let client_auth = client_cert.then(|| (pki.read("client.pem"), pki.read("client.key")));
    opts.set_transport(Transport::tls(pki.read(ca), client_auth, None));
    let (client, mut el) = AsyncClient::new(opts, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(15), el.poll())
            .await
            .map_err(|_| "timed out".to_string())?
        {
            Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn tls_config(cfg: &mut fleetsink::config::Config, pki: &Pki, client_ca: bool) {
    let tls = &mut cfg.mqtt.embedded.tls;
    tls.listen = Some("127.0.0.1:0".parse().unwrap());
    tls.cert = Some(pki.path("server.pem"));
    tls.key = Some(pki.path("server.key"));
    tls.client_ca = client_ca.then(|| pki.path("ca.pem"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_tls_listener_with_and_without_client_certificates() {
    let pki = Pki::new();
    let mut t = spawn_app(MqttMode::Embedded, |cfg| tls_config(cfg, &pki, false)).await;
    let addr = t.app().mqtt_tls_addr().expect("a TLS listener");
    let status = r#"{"status":"online"}"#.to_string();
    tls_publish(
        addr,
        &pki,
        "ca.pem",
        false,
        "tonypi/status/tls_a",
        status.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        t.wait_count("SELECT count(*) FROM robots WHERE robot_id = 'tls_a'", 1)
            .await,
        1
    );
    // A client trusting another CA refuses the server.
    let err = tls_publish(
        addr,
        &pki,
        "other-ca.pem",
        false,
        "tonypi/status/tls_b",
        status.clone(),
    )
    .await
    .unwrap_err();
    assert!(!err.is_empty());
    t.stop().await;

    // Client certificates required: without one the handshake fails; with one it works.
    let mut t = spawn_app(MqttMode::Embedded, |cfg| tls_config(cfg, &pki, true)).await;
    let addr = t.app().mqtt_tls_addr().unwrap();
    assert!(
        tls_publish(
            addr,
            &pki,
            "ca.pem",
            false,
            "tonypi/status/tls_c",
            status.clone()
        )
        .await
        .is_err()
    );
    tls_publish(addr, &pki, "ca.pem", true, "tonypi/status/tls_d", status)
        .await
        .unwrap();
    assert_eq!(
        t.wait_count("SELECT count(*) FROM robots WHERE robot_id = 'tls_d'", 1)
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM robots WHERE robot_id = 'tls_c'")
            .await,
        0
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_stop_start_up_with_a_clear_error() {
    let pki = Pki::new();
    for (key, cert, says) in [
        ("client.key", "server.pem", "key belongs to the certificate"),
        ("missing.key", "server.pem", "mqtt.embedded.tls.key"),
        ("server.key", "missing.pem", "mqtt.embedded.tls.cert"),
    ] {
        let err = try_spawn_app(MqttMode::Embedded, |cfg| {
            tls_config(cfg, &pki, false);
            cfg.mqtt.embedded.tls.key = Some(pki.path(key));
            cfg.mqtt.embedded.tls.cert = Some(pki.path(cert));
        })
        .await
        .expect_err("start-up must fail");
        assert!(err.contains(says), "{key}/{cert}: {err}");
    }
}

/// A Mosquitto with a password and a TLS listener that requires client certificates
/// (and a plain listener for the robot).
async fn tls_mosquitto(pki: &Pki) -> (Mosquitto, u16) {
    let tls_port = free_port();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("server.pem"),
        pki.path("server.key"),
    );
    let pki_dir = pki.dir.path().to_path_buf();
    let broker = Mosquitto::start_with("127.0.0.1", |dir: &Path| {
        let pw = dir.join("passwd");
        for (i, (user, password)) in [("fleetsink", "s3cret"), ("robot", "robot-pw")]
            .iter()
            .enumerate()
        {
            let mut cmd = std::process::Command::new("mosquitto_passwd");
            cmd.arg("-b");
            if i == 0 {
                cmd.arg("-c");
            }
            let ok = cmd
                .arg(&pw)
                .args([user, password])
                .status()
                .expect("mosquitto_passwd (package mosquitto) is needed")
                .success();
            assert!(ok, "mosquitto_passwd failed");
        }
        // Mosquitto started as root reads its files as the `mosquitto` user.
        for d in [dir, pki_dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
            for f in std::fs::read_dir(d).unwrap() {
                let f = f.unwrap().path();
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        format!(
            "allow_anonymous false\npassword_file {}\n\
             listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\n",
            pw.display(),
            ca.display(),
            cert.display(),
            key.display()
        )
    })
    .await;
    wait_for_port(std::net::SocketAddr::from(([127, 0, 0, 1], tls_port))).await;
    (broker, tls_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_mode_over_mqtts_with_a_ca_file_client_certificate_and_password() {
    let pki = Pki::new();
    let (broker, tls_port) = tls_mosquitto(&pki).await;
    let plain = broker.addr;
    let mut t = spawn_app_with_broker(broker, |cfg| {
        cfg.mqtt.external.url = format!("mqtts://127.0.0.1:{tls_port}").as_str().into();
        cfg.mqtt.external.username = Some("fleetsink".into());
        cfg.mqtt.external.password = Some("s3cret".into());
        cfg.mqtt.external.tls.ca_file = Some(pki.path("ca.pem"));
        cfg.mqtt.external.tls.client_cert = Some(pki.path("client.pem"));
        cfg.mqtt.external.tls.client_key = Some(pki.path("client.key"));
    })
    .await;
    let mut opts = MqttOptions::new("robot-plain", "127.0.0.1", plain.port());
    opts.set_credentials("robot", "robot-pw");
    let (client, mut el) = AsyncClient::new(opts, 10);
    client
        .publish(
            "tonypi/status/tls_ext",
            QoS::AtLeastOnce,
            false,
            r#"{"status":"online"}"#,
        )
        .await
        .unwrap();
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    assert_eq!(
        t.wait_count("SELECT count(*) FROM robots WHERE robot_id = 'tls_ext'", 1)
            .await,
        1
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tls_files_that_cannot_be_read_stop_start_up() {
    let err = try_spawn_app(MqttMode::External, |cfg| {
        cfg.mqtt.external.url = "mqtts://127.0.0.1:8883".into();
        cfg.mqtt.external.tls.ca_file = Some("/nonexistent/ca.pem".into());
    })
    .await
    .expect_err("start-up must fail");
    assert!(err.contains("mqtt.external.tls.ca_file"), "{err}");
}
