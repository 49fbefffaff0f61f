//! The compose stack and the image, checked without a Docker engine: the compose file
//! validates with `docker-compose config` (Debian's docker-compose), holds no secrets,
//! and wires the services as the README says.

use std::process::Command;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn the_compose_stack_validates_and_holds_no_secrets() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let env_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(format!("{dir}/.env.example"), env_file.path()).unwrap();
    let out = Command::new("docker-compose")
        .args(["--env-file"])
        .arg(env_file.path())
        .args(["-f", &format!("{dir}/docker-compose.yml"), "config"])
        .output()
        .expect("docker-compose is needed (Debian/Ubuntu: apt-get install docker-compose; scripts/test.sh does)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "docker-compose config: {stderr}");
    let resolved = String::from_utf8_lossy(&out.stdout);
    // The .env values reach the services.
    assert!(resolved.contains("change-me-postgres"));
    // Without the secrets in the environment, the stack refuses to start.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("docker-compose")
        .args(["--env-file"])
        .arg(empty.path())
        .args(["-f", &format!("{dir}/docker-compose.yml"), "config", "-q"])
        .env_remove("POSTGRES_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("set POSTGRES_PASSWORD in .env"));

    let compose = repo_file("docker-compose.yml");
    for line in compose.lines() {
        let l = line.trim().to_lowercase();
        if l.contains("password:") || l.contains("token:") {
            assert!(
                l.contains("${"),
                "a literal secret in docker-compose.yml: {line}"
            );
        }
    }
    for needed in [
        "image: postgres:16",
        "mosquitto_2.0.18",
        "condition: service_healthy",
        "condition: service_completed_successfully",
        "healthcheck:",
        "pgdata:",
        "./docker/go-auth.conf:/etc/mosquitto/conf.d/go-auth.conf",
    ] {
        assert!(
            compose.contains(needed),
            "docker-compose.yml lacks {needed}"
        );
    }
    let go_auth = repo_file("docker/go-auth.conf");
    assert!(go_auth.contains("auth_opt_http_host fleetsink"));
    let mosquitto = repo_file("mosquitto/mosquitto.conf");
    assert!(
        mosquitto.contains("allow_anonymous false")
            && mosquitto.contains("include_dir /etc/mosquitto/conf.d")
    );

    let dockerfile = repo_file("Dockerfile");
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")),
        2,
        "multi-stage"
    );
    assert!(dockerfile.contains("FROM debian:bookworm-slim"));
    assert!(
        dockerfile.contains("\nUSER fleetsink"),
        "the runtime image must not run as root"
    );
}
