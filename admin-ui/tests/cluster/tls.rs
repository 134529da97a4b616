//! `--http-client-tls-*` against a real nsqd that requires TLS and verified client certificates
//! (`--tls-client-auth-policy=require-verify`): its plain HTTP port answers `403 TLS_REQUIRED`
//! with its `https_port`, and nsqadmin retries over HTTPS with the configured CA and client
//! certificate, as upstream does.

use crate::harness::{get, nsqadmin_bin, spawn, workspace_bin};
use std::path::Path;

/// A throw-away CA with a server certificate for 127.0.0.1 and a client certificate, as files.
fn write_pki(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "nsqadmin tls test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, usage: rcgen::ExtendedKeyUsagePurpose| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "nsqadmin tls test");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec!["nsqadmin".to_owned()],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    for (name, text) in [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server_cert),
        ("server.key", server_key),
        ("client.pem", client_cert),
        ("client.key", client_key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[tokio::test]
async fn tls_client_flags_against_an_nsqd_that_requires_tls() {
    let pki = tempfile::tempdir().unwrap();
    write_pki(pki.path());
    let file = |name: &str| pki.path().join(name).display().to_string();
    let data = tempfile::tempdir().unwrap();
    let nsqd = spawn(
        "nsqd-tls",
        workspace_bin("nsqd"),
        &[
            "--tcp-address=127.0.0.1:0".to_owned(),
            "--http-address=127.0.0.1:0".to_owned(),
            "--https-address=127.0.0.1:0".to_owned(),
            "--broadcast-address=127.0.0.1".to_owned(),
            format!("--data-path={}", data.path().display()),
            format!("--tls-cert={}", file("server.pem")),
            format!("--tls-key={}", file("server.key")),
            format!("--tls-root-ca-file={}", file("ca.pem")),
            "--tls-client-auth-policy=require-verify".to_owned(),
        ],
        true,
    );
    // The plain port refuses, naming the HTTPS port.
    let refused = get(&format!("http://{}/stats?format=json", nsqd.http)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["message"], "TLS_REQUIRED");
    let https_port = refused.json()["https_port"].as_u64().unwrap();
    // Create a topic over HTTPS, as a client holding a certificate.
    let mut identity = std::fs::read(file("client.key")).unwrap();
    identity.extend(std::fs::read(file("client.pem")).unwrap());
    let https = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(file("ca.pem")).unwrap()).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap();
    let created = https
        .post(format!(
            "https://127.0.0.1:{https_port}/topic/create?topic=tls_topic"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);

    let admin = |name: &str, extra: &[String]| {
        let mut args = vec![
            "--http-address=127.0.0.1:0".to_owned(),
            format!("--nsqd-http-address={}", nsqd.http),
        ];
        args.extend(extra.iter().cloned());
        spawn(name, nsqadmin_bin(), &args, false)
    };
    let ca = format!("--http-client-tls-root-ca-file={}", file("ca.pem"));
    let cert = format!("--http-client-tls-cert={}", file("client.pem"));
    let key = format!("--http-client-tls-key={}", file("client.key"));

    // CA and client certificate: nsqadmin reads the node over HTTPS.
    let full = admin("nsqadmin-tls", &[ca.clone(), cert.clone(), key.clone()]);
    let topics = get(&format!("http://{}/api/topics", full.http)).await;
    assert_eq!(topics.status, 200, "{}", topics.body);
    assert_eq!(
        topics.json(),
        serde_json::json!({"topics": ["tls_topic"], "message": ""})
    );
    let topic = get(&format!("http://{}/api/topics/tls_topic", full.http)).await;
    assert_eq!(topic.status, 200, "{}", topic.body);
    assert_eq!(topic.json()["nodes"].as_array().map(Vec::len), Some(1));
    let nodes = get(&format!("http://{}/api/nodes", full.http)).await;
    assert_eq!(nodes.status, 200, "{}", nodes.body);
    assert_eq!(nodes.json()["message"], "", "{}", nodes.body);
    assert_eq!(
        nodes.json()["nodes"][0]["http_port"].as_u64(),
        nsqd.http.rsplit(':').next().unwrap().parse::<u64>().ok()
    );

    // CA but no client certificate: nsqd refuses the handshake.
    let no_cert = admin("nsqadmin-tls-no-cert", std::slice::from_ref(&ca));
    let reply = get(&format!("http://{}/api/nodes", no_cert.http)).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with(&format!(
            "UPSTREAM_ERROR: failed to query any nsqd: Get \"https://127.0.0.1:{https_port}/"
        )) && message.contains("remote error: tls: "),
        "{message}"
    );

    // Client certificate but no CA: nsqadmin refuses nsqd's certificate.
    let no_ca = admin("nsqadmin-tls-no-ca", &[cert.clone(), key.clone()]);
    let reply = get(&format!("http://{}/api/nodes", no_ca.http)).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.ends_with(
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        ),
        "{message}"
    );

    // Skip verification (and present the certificate nsqd asks for): works without the CA.
    let skip = admin(
        "nsqadmin-tls-skip-verify",
        &[
            "--http-client-tls-insecure-skip-verify".to_owned(),
            cert.clone(),
            key.clone(),
        ],
    );
    let reply = get(&format!("http://{}/api/nodes", skip.http)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["message"], "", "{}", reply.body);

    // A certificate without its key stops start-up with upstream's message.
    let output = std::process::Command::new(nsqadmin_bin())
        .args([
            "--http-address=127.0.0.1:0".to_owned(),
            format!("--nsqd-http-address={}", nsqd.http),
            cert,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FATAL: failed to instantiate nsqadmin - --http-client-tls-key must be specified with --http-client-tls-cert"),
        "{stderr}"
    );
    // An unreadable CA file too (after the flag checks, like upstream's New).
    let output = std::process::Command::new(nsqadmin_bin())
        .args([
            "--http-address=127.0.0.1:0".to_owned(),
            format!("--nsqd-http-address={}", nsqd.http),
            format!("--http-client-tls-root-ca-file={}", file("missing.pem")),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "FATAL: failed to instantiate nsqadmin - failed to read TLS root CA file {} - ",
            file("missing.pem")
        )),
        "{stderr}"
    );
    drop((full, no_cert, no_ca, skip, nsqd));
}
