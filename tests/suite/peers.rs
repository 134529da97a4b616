//! Every NSQ client works unchanged: the real client libraries, as published, each do a round
//! trip of 1000 messages against our nsqd, requeueing (REQ) every message once and finishing
//! (FIN) it on its second attempt, plainly and over the IDENTIFY features they support.
//!
//! * pynsq 0.9.1 (plain in `pynsq`; TLS, snappy and deflate here): `pynsq_roundtrip.py`.
//! * gnsq 1.0.2 (gevent): `gnsq_roundtrip.py`; with a feature, gnsq's `Producer` cannot
//!   negotiate it (a gnsq bug), so the script publishes with gnsq's `NsqdTCPClient` instead.
//! * nsqjs 0.13.0: `nsqjs_roundtrip.mjs`.
//!
//! Each test starts its own nsqd; TLS tests give it a fresh CA-signed certificate and
//! `--tls-required=tcp-https`, so nothing but TLS is accepted on TCP, and the client verifies
//! the certificate against the CA. Each script also checks that nsqd negotiated the feature on
//! both of its connections. The clients come from `tests/peers/install.sh` (run by
//! `scripts/test.sh`).

use crate::ms;
use nsq_tests::{
    NsqdProcess, channel_stats, peer_python, require_peer, run_peer, topic_stats, workspace_root,
};
use std::path::PathBuf;

const COUNT: u64 = 1000;

fn node() -> PathBuf {
    require_peer(
        workspace_root().join("tests/peers/node/node_modules/nsqjs/package.json"),
        "nsqjs",
    );
    PathBuf::from("node")
}

/// A CA and a server certificate for 127.0.0.1/localhost signed by it, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "nsq-rs peers test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();

        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "nsqd.test");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();

        let dir = tempfile::Builder::new()
            .prefix("nsq-peers-pki-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn nsqd_flags(&self) -> Vec<String> {
        vec![
            format!("--tls-cert={}", self.path("server.pem")),
            format!("--tls-key={}", self.path("server.key")),
            "--https-address=127.0.0.1:0".to_owned(),
            "--tls-required=tcp-https".to_owned(),
        ]
    }
}

/// Starts nsqd (with TLS when `tls`), runs `program script args… --ca=… --topic=… --channel=…`
/// with a hard timeout, requires exit 0, then checks nsqd's own counts.
async fn round_trip(program: PathBuf, script: &str, args: &[&str], tls: bool, tag: &str) {
    let pki = tls.then(Pki::new);
    let flags = pki.as_ref().map(Pki::nsqd_flags).unwrap_or_default();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let nsqd = NsqdProcess::start(&flags);

    let topic = format!("peers_{tag}");
    let channel = "peer";
    let mut command_args = vec![workspace_root().join(script).display().to_string()];
    command_args.extend(args.iter().map(|arg| (*arg).to_owned()));
    command_args.push(nsqd.tcp_addr.to_string());
    if let Some(pki) = &pki {
        command_args.push(format!("--ca={}", pki.path("ca.pem")));
    }
    command_args.extend([
        format!("--count={COUNT}"),
        "--timeout=90".to_owned(),
        format!("--topic={topic}"),
        format!("--channel={channel}"),
    ]);
    run_peer(program, command_args, ms(120_000), || {
        format!("nsqd:\n{}", nsqd.stderr_lines().join("\n"))
    })
    .await;

    // nsqd agrees: COUNT published, each requeued once, nothing left, nothing timed out.
    let stats = nsqd
        .wait_stats(ms(10_000), "peer messages all finished", |stats| {
            channel_stats(stats, &topic, channel)
                .is_some_and(|channel| channel.in_flight_count == 0 && channel.depth == 0)
        })
        .await;
    assert_eq!(topic_stats(&stats, &topic).unwrap().message_count, COUNT);
    let channel = channel_stats(&stats, &topic, channel).unwrap();
    assert_eq!(channel.requeue_count, COUNT);
    assert_eq!(channel.timeout_count, 0);
    assert_eq!(channel.deferred_count, 0);
}

const PYNSQ: &str = "tests/peers/python/pynsq_roundtrip.py";
const GNSQ: &str = "tests/peers/python/gnsq_roundtrip.py";
const NSQJS: &str = "tests/peers/node/nsqjs_roundtrip.mjs";

#[tokio::test]
async fn pynsq_tls() {
    round_trip(peer_python(), PYNSQ, &["tls"], true, "pynsq_tls").await;
}

#[tokio::test]
async fn pynsq_snappy() {
    round_trip(peer_python(), PYNSQ, &["snappy"], false, "pynsq_snappy").await;
}

#[tokio::test]
async fn pynsq_deflate() {
    round_trip(peer_python(), PYNSQ, &["deflate"], false, "pynsq_deflate").await;
}

#[tokio::test]
async fn gnsq_plain() {
    round_trip(peer_python(), GNSQ, &["--mode=plain"], false, "gnsq_plain").await;
}

#[tokio::test]
async fn gnsq_tls() {
    round_trip(peer_python(), GNSQ, &["--mode=tls"], true, "gnsq_tls").await;
}

#[tokio::test]
async fn gnsq_snappy() {
    round_trip(
        peer_python(),
        GNSQ,
        &["--mode=snappy"],
        false,
        "gnsq_snappy",
    )
    .await;
}

#[tokio::test]
async fn gnsq_deflate() {
    round_trip(
        peer_python(),
        GNSQ,
        &["--mode=deflate"],
        false,
        "gnsq_deflate",
    )
    .await;
}

#[tokio::test]
async fn nsqjs_plain() {
    round_trip(node(), NSQJS, &["--mode=plain"], false, "nsqjs_plain").await;
}

#[tokio::test]
async fn nsqjs_tls() {
    round_trip(node(), NSQJS, &["--mode=tls"], true, "nsqjs_tls").await;
}

#[tokio::test]
async fn nsqjs_snappy() {
    round_trip(node(), NSQJS, &["--mode=snappy"], false, "nsqjs_snappy").await;
}

#[tokio::test]
async fn nsqjs_deflate() {
    round_trip(node(), NSQJS, &["--mode=deflate"], false, "nsqjs_deflate").await;
}
