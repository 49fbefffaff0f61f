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

/// `cargo deb` builds a package holding the binary, the unit, the example config and
/// env file, with a postinst that creates the `fleetsink` system user. (The test
/// packages the debug binary the tests already built; a release is `cargo deb`.)
#[test]
fn the_debian_package_holds_what_an_install_needs() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out_dir = tempfile::tempdir().unwrap();
    let deb = out_dir.path().join("fleetsink.deb");
    let out = Command::new("cargo")
        .args(["deb", "--no-build", "--profile", "dev", "--output"])
        .arg(&deb)
        .current_dir(dir)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo deb failed (install it: cargo install cargo-deb --locked; scripts/test.sh does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dpkg = |flag: &str| {
        let o = Command::new("dpkg-deb")
            .arg(flag)
            .arg(&deb)
            .output()
            .expect("dpkg-deb");
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let contents = dpkg("-c");
    for path in [
        "./usr/bin/fleetsink",
        "./usr/lib/systemd/system/fleetsink.service",
        "./etc/fleetsink/fleetsink.toml",
        "./etc/fleetsink/fleetsink.env",
        "./usr/share/fleetsink/grafana/fleetsink.json",
        "./usr/share/fleetsink/mosquitto/go-auth-http.conf",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{contents}"
        );
    }
    assert!(
        contents
            .lines()
            .any(|l| l.starts_with("-rw-r-----") && l.ends_with("fleetsink.env")),
        "the env file (secrets) must not be world-readable:\n{contents}"
    );
    let info = dpkg("-I");
    for field in [
        "Package: fleetsink",
        "Depends: adduser",
        "Architecture: amd64",
    ] {
        assert!(info.contains(field), "{field} missing:\n{info}");
    }
    // The maintainer scripts and conffiles.
    let control = out_dir.path().join("control");
    let ok = Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&control)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system") && postinst.contains("fleetsink"));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(conffiles.contains("/etc/fleetsink/fleetsink.toml"));
    assert!(conffiles.contains("/etc/fleetsink/fleetsink.env"));
}
