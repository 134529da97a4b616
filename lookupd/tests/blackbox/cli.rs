//! Command line, logs and process behaviour (checklist 151–154, 156 for nsqlookupd).

use crate::harness::{Lookupd, Peer, binary, wait_until};
use std::io::Write as _;
use std::process::{Command, Stdio};

/// 151: one line `nsqlookupd v1.3.0 (built w/rust-<version>)`, exit 0, for both flag spellings.
#[test]
fn version_line() {
    for flag in ["--version", "-version"] {
        let output = Command::new(binary()).arg(flag).output().unwrap();
        assert!(output.status.success(), "{flag}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let line = stdout.strip_suffix('\n').unwrap();
        assert!(!line.contains('\n'));
        let built_with = line
            .strip_prefix("nsqlookupd v1.3.0 (built w/")
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unexpected version line {line:?}"));
        assert!(built_with.starts_with("rust-"), "{line}");
        assert!(
            built_with.bytes().all(|byte| byte.is_ascii_lowercase()
                || byte.is_ascii_digit()
                || b".-".contains(&byte)),
            "{line}"
        );
    }
}

/// 152 and 153: Go-style single-dash flags; the logged ports are the bound ones.
#[test]
fn go_style_flags_and_listening_lines() {
    let lookupd = Lookupd::start_raw(&[
        "-tcp-address",
        "127.0.0.1:0",
        "-http-address=127.0.0.1:0",
        "-broadcast-address",
        "bcast.example",
        "-log-prefix=[test-lookupd] ",
    ]);
    assert_ne!(lookupd.tcp.port(), 0);
    assert_ne!(lookupd.http.port(), 0);
    lookupd.assert_alive();
    let mut peer = Peer::connect_v1(lookupd.tcp);
    let reply: serde_json::Value =
        serde_json::from_slice(&peer.identify(&crate::harness::identify_body(4150, 4151))).unwrap();
    assert_eq!(reply["broadcast_address"], "bcast.example");
    assert_eq!(reply["tcp_port"], lookupd.tcp.port());
    assert_eq!(reply["http_port"], lookupd.http.port());
    let log = lookupd.log();
    let listening = log
        .iter()
        .find(|line| line.contains("TCP: listening on"))
        .unwrap();
    assert!(listening.starts_with("[test-lookupd] "), "{listening}");
    assert!(
        listening.contains(" INFO: TCP: listening on 127.0.0.1:"),
        "{listening}"
    );
}

/// 153: an unknown flag or a bad value exits non-zero without starting.
#[test]
fn bad_flags_exit_non_zero() {
    for args in [
        &["--no-such-flag"][..],
        &["-tombstone-lifetime", "45"],
        &["--log-level=loud"],
        &["--tcp-address=not-an-address"],
    ] {
        let status = Command::new(binary())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "{args:?}");
    }
}

/// A port already in use is a fatal start-up error.
#[test]
fn busy_port_exits_non_zero() {
    let first = Lookupd::start(&[]);
    let output = Command::new(binary())
        .arg(format!("--tcp-address={}", first.tcp))
        .arg("--http-address=127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&first.tcp.to_string()), "{stderr}");
    first.assert_alive();
}

/// 154: TOML config, flags win over it.
#[test]
fn config_file() {
    let mut config = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        config,
        "tcp_address = \"127.0.0.1:0\"\nhttp_address = \"127.0.0.1:1\"\nbroadcast_address = \"from-config\"\ntombstone_lifetime = \"1m0s\"\n"
    )
    .unwrap();
    let path = config.path().to_str().unwrap().to_owned();
    let lookupd = Lookupd::start_raw(&["-config", &path, "--http-address=127.0.0.1:0"]);
    lookupd.assert_alive();
    let mut peer = Peer::connect_v1(lookupd.tcp);
    let reply: serde_json::Value =
        serde_json::from_slice(&peer.identify(&crate::harness::identify_body(4150, 4151))).unwrap();
    assert_eq!(reply["broadcast_address"], "from-config");
}

/// 156: SIGINT and SIGTERM both exit 0, with peers connected.
#[test]
fn signals_exit_cleanly() {
    for signal in ["TERM", "INT"] {
        let mut lookupd = Lookupd::start(&[]);
        let mut peer = Peer::nsqd(&lookupd, 4150, 4151);
        assert_eq!(peer.command("REGISTER t"), "OK");
        lookupd.signal(signal);
        let status = lookupd.wait_exit();
        assert_eq!(status.code(), Some(0), "SIG{signal}");
        peer.expect_closed();
        wait_until("the log to mention the stop", || {
            lookupd
                .log()
                .iter()
                .any(|line| line.contains("nsqlookupd: stopped"))
        });
    }
}
