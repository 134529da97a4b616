//! Black-box tests of the IDENTIFY upgrades (TLS, snappy, deflate), `--tls-required`, client
//! certificate policies, HTTPS, decompression bounds, and AUTH against a test auth server.
//!
//! Every test starts the real `nsqd` binary on port 0 in a temporary data dir and speaks the wire
//! protocol byte by byte; the client-side TLS/snappy/deflate here is written independently of the
//! server's (rustls client, `snap::raw`, `flate2`), and checked against upstream's captured bytes
//! (`shared/fixtures/tcp/identify_*.json`) where they exist. Certificates are made with `rcgen`.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const START_TIMEOUT: Duration = Duration::from_secs(15);
const WAIT: Duration = Duration::from_secs(10);

// ---- node harness ------------------------------------------------------------------------------

/// A running nsqd, killed on drop.
struct Node {
    child: Child,
    tcp: SocketAddr,
    http: SocketAddr,
    https: Option<SocketAddr>,
    _temp: tempfile::TempDir,
}

fn listening(line: &str, label: &str) -> Option<SocketAddr> {
    let at = line.find(label)?;
    line[at + label.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Node {
    fn start(args: &[&str]) -> Self {
        Self::try_start(args).unwrap_or_else(|stderr| panic!("nsqd did not start:\n{stderr}"))
    }

    /// Starts nsqd; `Err(stderr)` if it exits or does not listen in time.
    fn try_start(args: &[&str]) -> Result<Self, String> {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_nsqd"))
            .arg("--tcp-address=127.0.0.1:0")
            .arg("--http-address=127.0.0.1:0")
            .arg("--https-address=127.0.0.1:0")
            .arg(format!("--data-path={}", temp.path().display()))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsqd");
        let want_https = args.iter().any(|arg| arg.starts_with("--tls-cert"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let pipe = child.stderr.take().expect("stderr pipe");
        let recorded = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                recorded.lock().unwrap().push(line.clone());
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut tcp, mut http, mut https) = (None, None, None);
        while tcp.is_none() || http.is_none() || (want_https && https.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    tcp = tcp.or_else(|| listening(&line, "TCP: listening on "));
                    http = http.or_else(|| listening(&line, "HTTP: listening on "));
                    https = https.or_else(|| listening(&line, "HTTPS: listening on "));
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(50));
                    return Err(stderr.lock().unwrap().join("\n"));
                }
            }
        }
        Ok(Self {
            child,
            tcp: tcp.unwrap(),
            http: http.unwrap(),
            https,
            _temp: temp,
        })
    }

    async fn connect(&self) -> Conn {
        Conn::connect(self.tcp).await
    }

    async fn stats(&self) -> Value {
        let url = format!("http://{}/stats?format=json", self.http);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }

    /// Peak resident set size of the nsqd process (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs nsqd expecting it to refuse to start; returns its stderr.
fn start_failure(args: &[&str]) -> String {
    let temp = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_nsqd"))
        .arg("--tcp-address=127.0.0.1:0")
        .arg("--http-address=127.0.0.1:0")
        .arg("--https-address=127.0.0.1:0")
        .arg(format!("--data-path={}", temp.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "nsqd {args:?} started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The client entry of `/stats` whose `user_agent` or `client_id` is `name` (channels and
/// producers).
fn stats_client(stats: &Value, name: &str) -> Option<Value> {
    let mut all = Vec::new();
    for topic in stats["topics"].as_array().into_iter().flatten() {
        for channel in topic["channels"].as_array().into_iter().flatten() {
            all.extend(channel["clients"].as_array().into_iter().flatten().cloned());
        }
    }
    all.extend(stats["producers"].as_array().into_iter().flatten().cloned());
    all.into_iter()
        .find(|client| client["client_id"] == name || client["user_agent"] == name)
}

// ---- certificates -------------------------------------------------------------------------------

struct Authority {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Authority {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    fn issue(&self, common_name: &str, server: bool) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert, key)
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

/// A CA, a server certificate for 127.0.0.1/localhost, and PEM files for nsqd's flags.
struct Pki {
    ca: Authority,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let ca = Authority::new("nsq-rs test CA");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.issue("nsqd.test", true);
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        Self { ca, dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn cert_flags(&self) -> Vec<String> {
        vec![
            format!("--tls-cert={}", self.path("server.pem")),
            format!("--tls-key={}", self.path("server.key")),
        ]
    }

    fn client_config(
        &self,
        client_cert: Option<(&rcgen::Certificate, &rcgen::KeyPair)>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![cert.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .unwrap(),
        };
        Arc::new(config)
    }

    fn default_client(&self) -> Arc<rustls::ClientConfig> {
        self.client_config(None, rustls::ALL_VERSIONS)
    }

    fn https_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca.cert.pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap()
    }
}

fn args<'a>(owned: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    owned
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

// ---- a raw protocol client with its own TLS / snappy / deflate -------------------------------

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

enum ClientCodec {
    Plain,
    Deflate {
        compress: flate2::Compress,
        decompress: flate2::Decompress,
    },
    Snappy {
        sent_identifier: bool,
    },
}

const SNAPPY_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Snappy framing (compressed chunks when they are smaller).
fn snappy_frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for block in data.chunks(65536) {
        let compressed = snap::raw::Encoder::new().compress_vec(block).unwrap();
        let (kind, body) = if compressed.len() < block.len() {
            (0u8, &compressed[..])
        } else {
            (1u8, block)
        };
        let len = (body.len() + 4) as u32;
        out.push(kind);
        out.extend_from_slice(&len.to_le_bytes()[..3]);
        out.extend_from_slice(&masked_crc(block).to_le_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// Raw DEFLATE of `data` followed by a sync flush (what go-nsq does per write batch).
fn deflate_sync(compress: &mut flate2::Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut input = data;
    loop {
        out.reserve(input.len() / 2 + 1024);
        let space = out.capacity() - out.len();
        let (in_before, out_before) = (compress.total_in(), compress.total_out());
        compress
            .compress_vec(input, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        input = &input[(compress.total_in() - in_before) as usize..];
        let produced = (compress.total_out() - out_before) as usize;
        // Done once all input is in and the flush did not run out of room.
        if input.is_empty() && produced < space {
            return out;
        }
    }
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    kind: i32,
    data: Vec<u8>,
}

impl Frame {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

struct Conn {
    stream: Option<Box<dyn Stream>>,
    /// Set when the write half was handed to a writer task.
    reader: Option<Box<dyn AsyncRead + Unpin + Send>>,
    raw: Vec<u8>,
    plain: Vec<u8>,
    codec: ClientCodec,
    eof: bool,
}

fn command(line: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{line}\n").into_bytes();
    if let Some(body) = body {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(b"  V2").await.unwrap();
        Self {
            stream: Some(Box::new(stream)),
            reader: None,
            raw: Vec::new(),
            plain: Vec::new(),
            codec: ClientCodec::Plain,
            eof: false,
        }
    }

    fn encode(&mut self, bytes: &[u8]) -> Vec<u8> {
        match &mut self.codec {
            ClientCodec::Plain => bytes.to_vec(),
            ClientCodec::Deflate { compress, .. } => deflate_sync(compress, bytes),
            ClientCodec::Snappy { sent_identifier } => {
                let mut out = Vec::new();
                if !*sent_identifier {
                    out.extend_from_slice(SNAPPY_IDENTIFIER);
                    *sent_identifier = true;
                }
                out.extend(snappy_frame(bytes));
                out
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let wire = self.encode(bytes);
        self.send_raw(&wire).await;
    }

    async fn send_raw(&mut self, wire: &[u8]) {
        let stream = self.stream.as_mut().expect("stream");
        stream.write_all(wire).await.unwrap();
        stream.flush().await.unwrap();
    }

    /// Moves received raw bytes through the client codec into `plain`.
    fn decode_raw(&mut self) {
        match &mut self.codec {
            ClientCodec::Plain => self.plain.append(&mut self.raw),
            ClientCodec::Deflate { decompress, .. } => {
                let mut input = &self.raw[..];
                loop {
                    let mut out = Vec::with_capacity(64 * 1024);
                    let before = decompress.total_in();
                    decompress
                        .decompress_vec(input, &mut out, flate2::FlushDecompress::None)
                        .expect("valid deflate stream from nsqd");
                    input = &input[(decompress.total_in() - before) as usize..];
                    let produced = out.len();
                    self.plain.extend_from_slice(&out);
                    if produced == 0 {
                        break;
                    }
                }
                assert!(input.is_empty(), "deflate input left over");
                self.raw.clear();
            }
            ClientCodec::Snappy { .. } => loop {
                if self.raw.len() < 4 {
                    break;
                }
                let kind = self.raw[0];
                let len = usize::from(self.raw[1])
                    | usize::from(self.raw[2]) << 8
                    | usize::from(self.raw[3]) << 16;
                if self.raw.len() < 4 + len {
                    break;
                }
                let chunk: Vec<u8> = self.raw.drain(..4 + len).collect();
                match kind {
                    0xff => assert_eq!(&chunk[..], SNAPPY_IDENTIFIER),
                    0x00 | 0x01 => {
                        let crc = u32::from_le_bytes(chunk[4..8].try_into().unwrap());
                        let data = if kind == 0 {
                            snap::raw::Decoder::new()
                                .decompress_vec(&chunk[8..])
                                .unwrap()
                        } else {
                            chunk[8..].to_vec()
                        };
                        assert_eq!(masked_crc(&data), crc, "snappy CRC");
                        self.plain.extend_from_slice(&data);
                    }
                    other => panic!("unexpected snappy chunk type {other:#x}"),
                }
            },
        }
    }

    async fn read_more(&mut self) -> bool {
        let mut buf = vec![0u8; 64 * 1024];
        let read = match (&mut self.reader, &mut self.stream) {
            (Some(reader), _) => tokio::time::timeout(WAIT, reader.read(&mut buf)).await,
            (None, Some(stream)) => tokio::time::timeout(WAIT, stream.read(&mut buf)).await,
            (None, None) => panic!("no stream"),
        };
        match read.expect("read timed out") {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// The next frame; `None` once the server closed the connection.
    async fn try_frame(&mut self) -> Option<Frame> {
        loop {
            self.decode_raw();
            if self.plain.len() >= 8 {
                let size = u32::from_be_bytes(self.plain[..4].try_into().unwrap()) as usize;
                if self.plain.len() >= 4 + size {
                    let kind = i32::from_be_bytes(self.plain[4..8].try_into().unwrap());
                    let data = self.plain[8..4 + size].to_vec();
                    self.plain.drain(..4 + size);
                    return Some(Frame { kind, data });
                }
            }
            if self.eof || !self.read_more().await {
                return None;
            }
        }
    }

    async fn frame(&mut self) -> Frame {
        self.try_frame()
            .await
            .expect("connection closed before a frame")
    }

    /// The next response frame (heartbeats skipped).
    async fn response(&mut self) -> Vec<u8> {
        loop {
            let frame = self.frame().await;
            if frame.kind == 0 && frame.data == b"_heartbeat_" {
                continue;
            }
            assert_eq!(frame.kind, 0, "expected a response, got {:?}", frame.text());
            return frame.data;
        }
    }

    async fn expect_ok(&mut self) {
        assert_eq!(String::from_utf8_lossy(&self.response().await), "OK");
    }

    /// An error frame with exactly `text`, then the server closes the connection.
    async fn expect_fatal(&mut self, text: &str) {
        let frame = self.frame().await;
        assert_eq!((frame.kind, frame.text().as_str()), (1, text));
        self.expect_closed().await;
    }

    async fn expect_closed(&mut self) {
        if let Some(frame) = self.try_frame().await {
            panic!("expected close, got frame {:?}", frame.text());
        }
    }

    async fn identify(&mut self, json: &str) -> Value {
        self.send(&command("IDENTIFY", Some(json.as_bytes()))).await;
        serde_json::from_slice(&self.response().await).expect("IDENTIFY JSON reply")
    }

    /// Switches the client side to compression after the server's JSON reply. Bytes already
    /// received past that reply are compressed ones.
    fn start_codec(&mut self, codec: ClientCodec) {
        let mut leftover = std::mem::take(&mut self.plain);
        leftover.append(&mut self.raw);
        self.raw = leftover;
        self.codec = codec;
    }

    fn start_deflate(&mut self, level: u32) {
        self.start_codec(ClientCodec::Deflate {
            compress: flate2::Compress::new(flate2::Compression::new(level), false),
            decompress: flate2::Decompress::new(false),
        });
    }

    fn start_snappy(&mut self) {
        self.start_codec(ClientCodec::Snappy {
            sent_identifier: false,
        });
    }

    /// Client side of the TLS upgrade; `Err` when the handshake fails.
    async fn start_tls(&mut self, config: Arc<rustls::ClientConfig>) -> std::io::Result<()> {
        assert!(
            self.plain.is_empty() && self.raw.is_empty(),
            "bytes before TLS"
        );
        let stream = self.stream.take().unwrap();
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(WAIT, connector.connect(name, stream))
            .await
            .expect("TLS handshake timed out")?;
        self.stream = Some(Box::new(tls));
        Ok(())
    }

    /// Hands the write side to the caller (reads keep going through this connection).
    fn split_writer(&mut self) -> tokio::io::WriteHalf<Box<dyn Stream>> {
        let (reader, writer) = tokio::io::split(self.stream.take().unwrap());
        self.reader = Some(Box::new(reader));
        writer
    }
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/tcp")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("fixture {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The fixture's JSON reply (upstream 1.3.0 has no topology keys): every key it has must match.
fn assert_reply_matches_fixture(reply: &Value, fixture: &Value) {
    let expected: Value = serde_json::from_str(
        fixture["server_replies_decoded"][0]["data"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&reply[key], value, "IDENTIFY reply key {key}");
    }
}

// ---- C24 / C25: compression -----------------------------------------------------------------

/// C24: deflate negotiated (level 9 clamped to 6): JSON in clear, then a raw DEFLATE stream whose
/// decompression is `OK` (with sync-flush markers); a deflated PUB gets a deflated OK.
#[tokio::test]
async fn c24_deflate_upgrade() {
    let node = Node::start(&[]);
    let mut conn = node.connect().await;
    let fixture = fixture("identify_deflate.json");
    let reply = conn
        .identify(r#"{"feature_negotiation":true,"deflate":true,"deflate_level":9,"user_agent":"deflater"}"#)
        .await;
    assert_reply_matches_fixture(&reply, &fixture);
    assert_eq!(
        (reply["deflate"].clone(), reply["deflate_level"].clone()),
        (json!(true), json!(6))
    );
    conn.start_deflate(6);
    // Raw bytes: no zlib header, and the sync-flush marker ends the batch.
    while conn.raw.len() < 4 || !conn.raw.ends_with(&[0, 0, 0xff, 0xff]) {
        assert!(conn.read_more().await, "closed");
    }
    assert_ne!(conn.raw[0], 0x78, "zlib header");
    conn.expect_ok().await;
    conn.send(&command("PUB deflated", Some(&vec![b'x'; 10_000])))
        .await;
    conn.expect_ok().await;
    // The same exchange as a second batch, then a consumer over deflate gets the messages back.
    conn.send(&command("PUB deflated", Some(b"second"))).await;
    conn.expect_ok().await;
    conn.send(&command("SUB deflated c", None)).await;
    conn.expect_ok().await;
    conn.send(&command("RDY 5", None)).await;
    let first = conn.frame().await;
    assert_eq!(first.kind, 2);
    assert_eq!(&first.data[26..], &vec![b'x'; 10_000][..]);
    let second = conn.frame().await;
    assert_eq!(&second.data[26..], b"second");
    let stats = node.stats().await;
    let client = stats_client(&stats, "deflater").expect("client in /stats");
    assert_eq!(
        (client["deflate"].clone(), client["snappy"].clone()),
        (json!(true), json!(false))
    );
}

/// C25: snappy negotiated: the bytes after the JSON are exactly upstream's (stream identifier,
/// then `OK` in an uncompressed chunk); compressed chunks work both ways.
#[tokio::test]
async fn c25_snappy_upgrade() {
    let node = Node::start(&[]);
    let mut conn = node.connect().await;
    let fixture = fixture("identify_snappy.json");
    let reply = conn
        .identify(r#"{"feature_negotiation":true,"snappy":true,"user_agent":"snapper"}"#)
        .await;
    assert_reply_matches_fixture(&reply, &fixture);
    conn.start_snappy();
    let expected = unhex(
        fixture["server_replies_undecoded_tail_hex"]
            .as_str()
            .unwrap(),
    );
    while conn.raw.len() < expected.len() {
        assert!(conn.read_more().await, "closed");
    }
    assert_eq!(&conn.raw[..10], b"\xff\x06\x00\x00\x73\x4e\x61\x50\x70\x59");
    assert_eq!(
        conn.raw, expected,
        "snappy tail differs from upstream's capture"
    );
    conn.expect_ok().await;
    // A compressible body travels in a compressed chunk (0x00) in both directions.
    let body = b"snappy ".repeat(5000);
    let publish = command("PUB snappy", Some(&body));
    assert_eq!(snappy_frame(&publish)[0], 0x00);
    conn.send(&publish).await;
    conn.expect_ok().await;
    conn.send(&command("SUB snappy c", None)).await;
    conn.expect_ok().await;
    conn.send(&command("RDY 1", None)).await;
    let message = conn.frame().await;
    assert_eq!((message.kind, &message.data[26..]), (2, &body[..]));
    let client = stats_client(&node.stats().await, "snapper").expect("client in /stats");
    assert_eq!(
        (client["snappy"].clone(), client["deflate"].clone()),
        (json!(true), json!(false))
    );
}

/// C20: asking for both compressions is fatal; without feature negotiation nothing is upgraded.
#[tokio::test]
async fn snappy_and_deflate_together_is_fatal() {
    let node = Node::start(&[]);
    let mut conn = node.connect().await;
    conn.send(&command(
        "IDENTIFY",
        Some(br#"{"feature_negotiation":true,"snappy":true,"deflate":true}"#),
    ))
    .await;
    conn.expect_fatal("E_IDENTIFY_FAILED cannot enable both deflate and snappy compression")
        .await;
    let mut conn = node.connect().await;
    conn.send(&command(
        "IDENTIFY",
        Some(br#"{"snappy":true,"deflate":true}"#),
    ))
    .await;
    conn.expect_ok().await;
    conn.send(&command("PUB plain", Some(b"x"))).await;
    conn.expect_ok().await;
}

/// `--snappy=false` / `--deflate=false`: the reply says false and the stream stays plain.
#[tokio::test]
async fn compression_can_be_disabled() {
    let node = Node::start(&["--snappy=false", "--deflate=false"]);
    for ask in [r#""snappy":true"#, r#""deflate":true"#] {
        let mut conn = node.connect().await;
        let reply = conn
            .identify(&format!(r#"{{"feature_negotiation":true,{ask}}}"#))
            .await;
        assert_eq!(
            (reply["snappy"].clone(), reply["deflate"].clone()),
            (json!(false), json!(false))
        );
        conn.send(&command("PUB plain", Some(b"x"))).await;
        conn.expect_ok().await;
    }
}

// ---- decompression bounds ---------------------------------------------------------------------

const BOMB_BYTES: usize = 1 << 30;
const MAX_PEAK_RSS_KIB: u64 = 200 * 1024;

/// A PUB whose body would expand to 1 GiB, deflated: refused from its size prefix, and the rest
/// of the stream is never inflated (peak RSS stays far below it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_bomb_is_refused_with_bounded_memory() {
    let node = Node::start(&[]);
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"deflate":true}"#)
        .await;
    conn.start_deflate(6);
    conn.expect_ok().await;

    // Build the bomb with a fresh compressor: the PUB line and a 1 GiB size, then 1 MiB blocks
    // of zeros (each one sync-flushed, so a later block can be repeated verbatim).
    let mut compress = flate2::Compress::new(flate2::Compression::new(9), false);
    let mut header = b"PUB bomb\n".to_vec();
    header.extend_from_slice(&(BOMB_BYTES as u32).to_be_bytes());
    let head = deflate_sync(&mut compress, &header);
    let zeros = vec![0u8; 1 << 20];
    let first = deflate_sync(&mut compress, &zeros);
    let block = deflate_sync(&mut compress, &zeros);
    let wire_total = head.len() + first.len() + block.len() * 1023;
    assert!(
        wire_total < 8 << 20,
        "bomb is {wire_total} bytes on the wire"
    );

    let mut writer = conn.split_writer();
    let sender = tokio::spawn(async move {
        let mut sent = 0usize;
        for part in [&head, &first] {
            if writer.write_all(part).await.is_err() {
                return sent;
            }
            sent += part.len();
        }
        for _ in 0..1023 {
            if writer.write_all(&block).await.is_err() {
                break;
            }
            sent += block.len();
        }
        let _ = writer.flush().await;
        sent
    });
    conn.expect_fatal(&format!(
        "E_BAD_MESSAGE PUB message too big {BOMB_BYTES} > 1048576"
    ))
    .await;
    let sent = sender.await.unwrap();
    eprintln!("deflate bomb: {sent} bytes accepted by the socket");
    let peak = node.peak_rss_kib();
    eprintln!("nsqd peak RSS after the bomb: {peak} KiB");
    assert!(peak < MAX_PEAK_RSS_KIB, "nsqd peak RSS {peak} KiB");
    // The node is fine.
    let mut conn = node.connect().await;
    conn.send(&command("PUB after", Some(b"x"))).await;
    conn.expect_ok().await;
}

/// The same with snappy: 16384 compressed chunks of 64 KiB zeros (1 GiB) after an oversized PUB.
/// Also: a 1 GiB stream of decompressed bytes without a newline ends the connection without
/// buffering it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_bomb_is_refused_with_bounded_memory() {
    let node = Node::start(&[]);
    for with_pub in [true, false] {
        let mut conn = node.connect().await;
        conn.identify(r#"{"feature_negotiation":true,"snappy":true}"#)
            .await;
        conn.start_snappy();
        conn.expect_ok().await;
        let mut head = SNAPPY_IDENTIFIER.to_vec();
        if with_pub {
            let mut header = b"PUB bomb\n".to_vec();
            header.extend_from_slice(&(BOMB_BYTES as u32).to_be_bytes());
            head.extend(snappy_frame(&header));
        }
        let block = snappy_frame(&vec![0u8; 65536]);
        assert_eq!(block[0], 0x00);
        let mut writer = conn.split_writer();
        let sender = tokio::spawn(async move {
            if writer.write_all(&head).await.is_err() {
                return;
            }
            let batch = block.repeat(64);
            for _ in 0..(BOMB_BYTES / 65536 / 64) {
                if writer.write_all(&batch).await.is_err() {
                    return;
                }
            }
        });
        if with_pub {
            conn.expect_fatal(&format!(
                "E_BAD_MESSAGE PUB message too big {BOMB_BYTES} > 1048576"
            ))
            .await;
        } else {
            // Upstream drops a connection whose command line exceeds its buffer, silently.
            conn.expect_closed().await;
        }
        let _ = sender.await;
    }
    let peak = node.peak_rss_kib();
    eprintln!("nsqd peak RSS after the bomb: {peak} KiB");
    assert!(peak < MAX_PEAK_RSS_KIB, "nsqd peak RSS {peak} KiB");
}

/// Corrupt compressed input ends the connection (upstream: a read error, no frame).
#[tokio::test]
async fn corrupt_compressed_input_closes() {
    let node = Node::start(&[]);
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"snappy":true}"#)
        .await;
    conn.start_snappy();
    conn.expect_ok().await;
    let mut bad = SNAPPY_IDENTIFIER.to_vec();
    bad.extend(snappy_frame(b"NOP\n"));
    let crc_at = SNAPPY_IDENTIFIER.len() + 4;
    bad[crc_at] ^= 0xff;
    conn.send_raw(&bad).await;
    conn.expect_closed().await;
}

// ---- C26: TLS --------------------------------------------------------------------------------

/// C26: the JSON in clear, the handshake, `OK` inside TLS, then PUB over TLS; `/stats` shows the
/// session with Go's names.
#[tokio::test]
async fn c26_tls_upgrade() {
    let pki = Pki::new();
    let node = Node::start(&args(&pki.cert_flags(), &[]));
    assert!(node.https.is_some());
    let mut conn = node.connect().await;
    let reply = conn
        .identify(r#"{"feature_negotiation":true,"tls_v1":true,"user_agent":"tls13"}"#)
        .await;
    assert_eq!(reply["tls_v1"], true);
    conn.start_tls(pki.default_client()).await.unwrap();
    conn.expect_ok().await;
    conn.send(&command("PUB tls", Some(b"secret message")))
        .await;
    conn.expect_ok().await;
    let client = stats_client(&node.stats().await, "tls13").expect("client in /stats");
    assert_eq!(client["tls"], true);
    assert_eq!(client["tls_version"], "TLS1.3");
    let suite = client["tls_cipher_suite"].as_str().unwrap();
    assert!(
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256"
        ]
        .contains(&suite),
        "{suite}"
    );
    assert_eq!(client["tls_negotiated_protocol"], "");
    assert_eq!(client["tls_negotiated_protocol_is_mutual"], true);

    // A TLS 1.2 client: version and an ECDHE suite name as Go spells it.
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"tls_v1":true,"user_agent":"tls12"}"#)
        .await;
    conn.start_tls(pki.client_config(None, &[&rustls::version::TLS12]))
        .await
        .unwrap();
    conn.expect_ok().await;
    conn.send(&command("PUB tls", Some(b"x"))).await;
    conn.expect_ok().await;
    let client = stats_client(&node.stats().await, "tls12").expect("client in /stats");
    assert_eq!(client["tls_version"], "TLS1.2");
    let suite = client["tls_cipher_suite"].as_str().unwrap();
    assert!(suite.starts_with("TLS_ECDHE_ECDSA_WITH_"), "{suite}");

    // A plain connection on the same node.
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"user_agent":"plain"}"#)
        .await;
    conn.send(&command("PUB tls", Some(b"x"))).await;
    conn.expect_ok().await;
    let client = stats_client(&node.stats().await, "plain").expect("client in /stats");
    assert_eq!(client["tls"], false);
    assert_eq!(client["tls_version"], "");
    assert_eq!(client["tls_negotiated_protocol_is_mutual"], false);
}

/// TLS first, compression inside it (upstream's order): JSON, handshake, `OK` in TLS, then the
/// compressed `OK`; a consumer gets its messages through both layers.
#[tokio::test]
async fn tls_with_snappy_and_with_deflate() {
    let pki = Pki::new();
    let node = Node::start(&args(&pki.cert_flags(), &[]));
    for compression in ["snappy", "deflate"] {
        let mut conn = node.connect().await;
        let reply = conn
            .identify(&format!(
                r#"{{"feature_negotiation":true,"tls_v1":true,"{compression}":true,"deflate_level":1}}"#
            ))
            .await;
        assert_eq!(
            (reply["tls_v1"].clone(), reply[compression].clone()),
            (json!(true), json!(true))
        );
        conn.start_tls(pki.default_client()).await.unwrap();
        conn.expect_ok().await;
        if compression == "snappy" {
            conn.start_snappy();
        } else {
            conn.start_deflate(1);
        }
        conn.expect_ok().await;
        let topic = format!("layered_{compression}");
        let body = compression.repeat(3000).into_bytes();
        conn.send(&command(&format!("PUB {topic}"), Some(&body)))
            .await;
        conn.expect_ok().await;
        conn.send(&command(&format!("SUB {topic} c"), None)).await;
        conn.expect_ok().await;
        conn.send(&command("RDY 1", None)).await;
        let message = conn.frame().await;
        assert_eq!((message.kind, &message.data[26..]), (2, &body[..]));
        let id = String::from_utf8(message.data[10..26].to_vec()).unwrap();
        conn.send(&command(&format!("FIN {id}"), None)).await;
        conn.send(&command("NOP", None)).await;
    }
}

/// Compressed commands sent right behind IDENTIFY (before its reply arrived) are decoded too:
/// bytes read together with IDENTIFY belong to the new layer.
#[tokio::test]
async fn compressed_commands_pipelined_with_identify() {
    let node = Node::start(&[]);
    for compression in ["snappy", "deflate"] {
        let mut conn = node.connect().await;
        let identify = format!(r#"{{"feature_negotiation":true,"{compression}":true}}"#);
        let mut wire = command("IDENTIFY", Some(identify.as_bytes()));
        let publish = command("PUB pipelined", Some(b"early bird"));
        let codec = if compression == "snappy" {
            wire.extend_from_slice(SNAPPY_IDENTIFIER);
            wire.extend(snappy_frame(&publish));
            ClientCodec::Snappy {
                sent_identifier: true,
            }
        } else {
            let mut compress = flate2::Compress::new(flate2::Compression::new(6), false);
            wire.extend(deflate_sync(&mut compress, &publish));
            ClientCodec::Deflate {
                compress,
                decompress: flate2::Decompress::new(false),
            }
        };
        conn.send_raw(&wire).await;
        let reply: Value = serde_json::from_slice(&conn.response().await).unwrap();
        assert_eq!(reply[compression], true);
        conn.start_codec(codec);
        conn.expect_ok().await; // the upgrade
        conn.expect_ok().await; // the pipelined PUB
        conn.send(&command("PUB pipelined", Some(b"later"))).await;
        conn.expect_ok().await;
    }
}

/// A client that sends its ClientHello in the same write as IDENTIFY (without waiting for the
/// JSON reply) still gets the JSON in clear, then `OK` inside TLS.
#[tokio::test]
async fn client_hello_pipelined_with_identify() {
    use std::io::Write as _;
    let pki = Pki::new();
    let node = Node::start(&args(&pki.cert_flags(), &[]));
    let config = pki.default_client();
    let addr = node.tcp;
    let frames = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let mut tls =
            rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut wire = b"  V2".to_vec();
        wire.extend(command(
            "IDENTIFY",
            Some(br#"{"feature_negotiation":true,"tls_v1":true}"#),
        ));
        tls.write_tls(&mut wire).unwrap();
        socket.write_all(&wire).unwrap();
        let read_frame = |reader: &mut dyn std::io::Read| {
            let mut size = [0u8; 4];
            reader.read_exact(&mut size).unwrap();
            let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
            reader.read_exact(&mut frame).unwrap();
            frame
        };
        let json = read_frame(&mut socket);
        let mut stream = rustls::Stream::new(&mut tls, &mut socket);
        let ok = read_frame(&mut stream);
        stream.write_all(&command("PUB hello", Some(b"x"))).unwrap();
        let published = read_frame(&mut stream);
        (json, ok, published)
    })
    .await
    .unwrap();
    let reply: Value = serde_json::from_slice(&frames.0[4..]).unwrap();
    assert_eq!(reply["tls_v1"], true);
    assert_eq!(&frames.1, b"\0\0\0\0OK");
    assert_eq!(&frames.2, b"\0\0\0\0OK");
}

/// A second IDENTIFY does not start a layer twice (the reply says false for it).
#[tokio::test]
async fn repeated_identify_does_not_upgrade_twice() {
    let node = Node::start(&[]);
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"snappy":true}"#)
        .await;
    conn.start_snappy();
    conn.expect_ok().await;
    conn.send(&command(
        "IDENTIFY",
        Some(br#"{"feature_negotiation":true,"snappy":true}"#),
    ))
    .await;
    let reply: Value = serde_json::from_slice(&conn.response().await).unwrap();
    assert_eq!(reply["snappy"], false);
    conn.send(&command("PUB twice", Some(b"x"))).await;
    conn.expect_ok().await;
}

/// A client that asks for TLS and then sends garbage instead of a ClientHello gets
/// `E_IDENTIFY_FAILED` (in clear) and is disconnected.
#[tokio::test]
async fn failed_tls_handshake_is_identify_failed() {
    let pki = Pki::new();
    let node = Node::start(&args(&pki.cert_flags(), &[]));
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"tls_v1":true}"#)
        .await;
    conn.send_raw(b"NOP\nNOP\nthis is not TLS at all....").await;
    // A TLS alert may come first (as with upstream): look for the frame in what arrives
    // before the server closes.
    while conn.read_more().await {}
    let needle = b"E_IDENTIFY_FAILED IDENTIFY failed ";
    let at = conn
        .raw
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap_or_else(|| panic!("no E_IDENTIFY_FAILED in {:?}", conn.raw));
    let frame_start = at - 8;
    let size = u32::from_be_bytes(conn.raw[frame_start..frame_start + 4].try_into().unwrap());
    assert_eq!(size as usize, conn.raw.len() - frame_start - 4);
    assert_eq!(&conn.raw[frame_start + 4..at], &[0, 0, 0, 1]);
}

// ---- --tls-required, HTTPS ---------------------------------------------------------------------

/// P150 `--tls-required` (bare flag = true): every command but IDENTIFY is refused before the
/// upgrade; plain HTTP answers 403 with the HTTPS port; HTTPS serves; after TLS all works.
#[tokio::test]
async fn p150_tls_required_true() {
    let pki = Pki::new();
    let node = Node::start(&args(&pki.cert_flags(), &["--tls-required"]));
    let https = node.https.unwrap();
    for line in ["NOP", "PUB t", "SUB t c"] {
        let mut conn = node.connect().await;
        conn.send(&command(line, None)).await;
        let name = line.split(' ').next().unwrap();
        conn.expect_fatal(&format!(
            "E_INVALID cannot {name} in current state (TLS required)"
        ))
        .await;
    }
    // IDENTIFY without TLS is answered, but the connection still cannot do anything else.
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true}"#).await;
    conn.send(&command("NOP", None)).await;
    conn.expect_fatal("E_INVALID cannot NOP in current state (TLS required)")
        .await;

    let response = reqwest::get(format!("http://{}/ping", node.http))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-nsq-content-type"], "nsq; version=1.0");
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        response.text().await.unwrap(),
        format!(
            r#"{{"message": "TLS_REQUIRED", "https_port": {}}}"#,
            https.port()
        )
    );
    let client = pki.https_client();
    let response = client
        .get(format!("https://localhost:{}/ping", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "OK");
    let stats: Value = client
        .get(format!(
            "https://127.0.0.1:{}/stats?format=json",
            https.port()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["health"], "OK");

    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"tls_v1":true}"#)
        .await;
    conn.start_tls(pki.default_client()).await.unwrap();
    conn.expect_ok().await;
    conn.send(&command("NOP", None)).await;
    conn.send(&command("PUB t", Some(b"x"))).await;
    conn.expect_ok().await;
}

/// `--tls-required=tcp-https`: TCP still requires TLS, plain HTTP is served.
#[tokio::test]
async fn tls_required_tcp_https() {
    let pki = Pki::new();
    let node = Node::start(&args(&pki.cert_flags(), &["--tls-required=tcp-https"]));
    let response = reqwest::get(format!("http://{}/ping", node.http))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut conn = node.connect().await;
    conn.send(&command("PUB t", Some(b"x"))).await;
    conn.expect_fatal("E_INVALID cannot PUB in current state (TLS required)")
        .await;
}

/// Startup errors and flag syntax.
#[test]
fn tls_and_auth_flag_errors() {
    let stderr = start_failure(&["--tls-required=true"]);
    assert!(
        stderr.contains("cannot require TLS client connections without TLS key and cert"),
        "{stderr}"
    );
    let stderr = start_failure(&["--tls-client-auth-policy=require"]);
    assert!(
        stderr.contains("cannot require TLS client connections without TLS key and cert"),
        "{stderr}"
    );
    let stderr = start_failure(&["--tls-cert=/nonexistent.pem", "--tls-key=/nonexistent.key"]);
    assert!(stderr.contains("failed to build TLS config - "), "{stderr}");
    let stderr = start_failure(&["--auth-http-request-method=put"]);
    assert!(
        stderr.contains("--auth-http-request-method must be post or get"),
        "{stderr}"
    );
    let stderr = start_failure(&["--tls-min-version=ssl3.0"]);
    assert!(stderr.contains("ssl3.0"), "{stderr}");
    let stderr = start_failure(&["--tls-required=maybe"]);
    assert!(stderr.contains("maybe"), "{stderr}");
}

/// Without a certificate there is no HTTPS listener and `tls_v1` is answered false.
#[tokio::test]
async fn no_tls_without_certificate() {
    let node = Node::start(&[]);
    assert!(node.https.is_none());
    let mut conn = node.connect().await;
    let reply = conn
        .identify(r#"{"feature_negotiation":true,"tls_v1":true}"#)
        .await;
    assert_eq!(reply["tls_v1"], false);
    conn.send(&command("PUB t", Some(b"x"))).await;
    conn.expect_ok().await;
}

/// `--tls-min-version=tls1.3` refuses a TLS 1.2-only client.
#[tokio::test]
async fn tls_min_version() {
    let pki = Pki::new();
    let node = Node::start(&args(&pki.cert_flags(), &["--tls-min-version=tls1.3"]));
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"tls_v1":true}"#)
        .await;
    let result = conn
        .start_tls(pki.client_config(None, &[&rustls::version::TLS12]))
        .await;
    assert!(result.is_err(), "a TLS 1.2 client was accepted");
}

// ---- client certificates ------------------------------------------------------------------------

/// Reads the `OK` that follows a successful upgrade; `false` if the handshake or the read failed.
async fn upgrade_succeeds(conn: &mut Conn, config: Arc<rustls::ClientConfig>) -> bool {
    if conn.start_tls(config).await.is_err() {
        return false;
    }
    // TLS 1.3: a refused client certificate shows up on the first read.
    matches!(conn.try_frame().await, Some(frame) if frame.kind == 0 && frame.data == b"OK")
}

/// `--tls-client-auth-policy=require`: a certificate must be presented (any, unverified);
/// the policy also forces `--tls-required=true`.
#[tokio::test]
async fn client_auth_policy_require() {
    let pki = Pki::new();
    let node = Node::start(&args(
        &pki.cert_flags(),
        &["--tls-client-auth-policy=require"],
    ));
    let mut conn = node.connect().await;
    conn.send(&command("NOP", None)).await;
    conn.expect_fatal("E_INVALID cannot NOP in current state (TLS required)")
        .await;
    let response = reqwest::get(format!("http://{}/ping", node.http))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"tls_v1":true}"#)
        .await;
    assert!(!upgrade_succeeds(&mut conn, pki.default_client()).await);

    let stranger = Authority::new("someone else");
    let (cert, key) = stranger.issue("client-x", false);
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"tls_v1":true}"#)
        .await;
    assert!(
        upgrade_succeeds(
            &mut conn,
            pki.client_config(Some((&cert, &key)), rustls::ALL_VERSIONS)
        )
        .await
    );
    conn.send(&command("PUB t", Some(b"x"))).await;
    conn.expect_ok().await;
}

/// `--tls-client-auth-policy=require-verify`: the certificate must chain to
/// `--tls-root-ca-file`.
#[tokio::test]
async fn client_auth_policy_require_verify() {
    let pki = Pki::new();
    let ca_flag = format!("--tls-root-ca-file={}", pki.path("ca.pem"));
    let node = Node::start(&args(
        &pki.cert_flags(),
        &["--tls-client-auth-policy=require-verify", &ca_flag],
    ));
    let stranger = Authority::new("someone else");
    let (cert, key) = stranger.issue("client-x", false);
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"tls_v1":true}"#)
        .await;
    assert!(
        !upgrade_succeeds(
            &mut conn,
            pki.client_config(Some((&cert, &key)), rustls::ALL_VERSIONS)
        )
        .await
    );

    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"tls_v1":true}"#)
        .await;
    assert!(!upgrade_succeeds(&mut conn, pki.default_client()).await);

    let (cert, key) = pki.ca.issue("client-ok", false);
    for versions in [rustls::ALL_VERSIONS, &[&rustls::version::TLS12]] {
        let mut conn = node.connect().await;
        conn.identify(r#"{"feature_negotiation":true,"tls_v1":true}"#)
            .await;
        assert!(
            upgrade_succeeds(&mut conn, pki.client_config(Some((&cert, &key)), versions)).await
        );
        conn.send(&command("PUB t", Some(b"x"))).await;
        conn.expect_ok().await;
    }
}

// ---- AUTH ---------------------------------------------------------------------------------------

/// One request the test auth server received.
#[derive(Debug, Clone)]
struct AuthCall {
    method: String,
    path_and_query: String,
    accept: String,
    content_type: String,
    body: String,
}

#[derive(Clone, Default)]
struct AuthServerState {
    calls: Arc<Mutex<Vec<AuthCall>>>,
}

/// A small auth server on 127.0.0.1:0. The secret picks the answer.
struct AuthServer {
    addr: SocketAddr,
    state: AuthServerState,
}

fn auth_answer(secret: &str) -> (StatusCode, String) {
    let grants = match secret {
        "good" => json!({"ttl": 3600, "identity": "user1", "identity_url": "http://x/u1",
            "authorizations": [
                {"topic": "^a$", "channels": [".*"], "permissions": ["publish"]},
                {"topic": "^s", "channels": ["^c$"], "permissions": ["subscribe"]}]}),
        "short" => json!({"ttl": 2, "identity": "brief",
            "authorizations": [{"topic": ".*", "channels": [".*"], "permissions": ["subscribe", "publish"]}]}),
        "none" => json!({"ttl": 60, "identity": "nobody", "authorizations": []}),
        "nochannels" => json!({"ttl": 60,
            "authorizations": [{"topic": ".*", "channels": [], "permissions": ["publish"]}]}),
        "badperm" => json!({"ttl": 60,
            "authorizations": [{"topic": ".*", "channels": [".*"], "permissions": ["admin"]}]}),
        "zerottl" => json!({"ttl": 0,
            "authorizations": [{"topic": ".*", "channels": [".*"], "permissions": ["publish"]}]}),
        _ => return (StatusCode::FORBIDDEN, "forbidden".to_owned()),
    };
    (StatusCode::OK, grants.to_string())
}

async fn auth_handler(
    State(state): State<AuthServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    let secret = if method == Method::POST {
        serde_json::from_str::<Value>(&body).unwrap()["secret"][0]
            .as_str()
            .unwrap_or("")
            .to_owned()
    } else {
        uri.query()
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("secret="))
            .unwrap_or("")
            .to_owned()
    };
    state.calls.lock().unwrap().push(AuthCall {
        method: method.to_string(),
        path_and_query: uri
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default(),
        accept: header("accept"),
        content_type: header("content-type"),
        body,
    });
    auth_answer(&secret).into_response()
}

impl AuthServer {
    async fn start() -> Self {
        let state = AuthServerState::default();
        let app = axum::Router::new()
            .fallback(auth_handler)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    fn calls(&self) -> Vec<AuthCall> {
        self.state.calls.lock().unwrap().clone()
    }

    fn flag(&self) -> String {
        format!("--auth-http-address={}", self.addr)
    }
}

async fn authed(node: &Node, secret: &str) -> Conn {
    let mut conn = node.connect().await;
    conn.send(&command("AUTH", Some(secret.as_bytes()))).await;
    let reply: Value = serde_json::from_slice(&conn.response().await).unwrap();
    assert!(reply["permission_count"].as_u64().unwrap() > 0, "{reply}");
    conn
}

/// H68–H70: `auth_required` in IDENTIFY; E_AUTH_FIRST before AUTH (MPUB before its body);
/// the GET exchange exactly; the AUTH reply; `/stats` auth fields.
#[tokio::test]
async fn h68_h70_auth_get_exchange() {
    let auth = AuthServer::start().await;
    let node = Node::start(&[&auth.flag()]);
    let mut conn = node.connect().await;
    let reply = conn.identify(r#"{"feature_negotiation":true}"#).await;
    assert_eq!(reply["auth_required"], true);
    conn.send(&command("PUB a", Some(b"x"))).await;
    conn.expect_fatal("E_AUTH_FIRST AUTH required before PUB")
        .await;
    for (line, name) in [("SUB a c", "SUB"), ("DPUB a 10", "DPUB")] {
        let mut conn = node.connect().await;
        let body = (name == "DPUB").then_some(&b"x"[..]);
        conn.send(&command(line, body)).await;
        conn.expect_fatal(&format!("E_AUTH_FIRST AUTH required before {name}"))
            .await;
    }
    // MPUB is checked before its body is read: the line alone gets the answer.
    let mut conn = node.connect().await;
    conn.send(b"MPUB a\n").await;
    conn.expect_fatal("E_AUTH_FIRST AUTH required before MPUB")
        .await;

    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"user_agent":"authed-one"}"#)
        .await;
    conn.send(&command("AUTH", Some(b"good"))).await;
    let reply = conn.response().await;
    assert_eq!(
        String::from_utf8_lossy(&reply),
        r#"{"identity":"user1","identity_url":"http://x/u1","permission_count":2}"#
    );
    let calls = auth.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "GET");
    assert_eq!(
        calls[0].path_and_query,
        "/auth?common_name=&remote_ip=127.0.0.1&secret=good&tls=false"
    );
    assert_eq!(calls[0].accept, "application/vnd.nsq; version=1.0");
    conn.send(&command("PUB a", Some(b"x"))).await;
    conn.expect_ok().await;
    let mut plain = node.connect().await;
    plain
        .identify(r#"{"feature_negotiation":true,"user_agent":"not-authed"}"#)
        .await;
    let stats = node.stats().await;
    let client = stats_client(&stats, "authed-one").expect("authed client");
    assert_eq!(client["authed"], true);
    assert_eq!(client["auth_identity"], "user1");
    assert_eq!(client["auth_identity_url"], "http://x/u1");
    // Clients in init are not listed anywhere; a producer that never authed is not possible
    // here, so check the keys' absence on the authed one's peer through a plain node below.
    drop(plain);
    let other = Node::start(&[]);
    let mut conn = other.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"user_agent":"plain-producer"}"#)
        .await;
    conn.send(&command("PUB t", Some(b"x"))).await;
    conn.expect_ok().await;
    let client = stats_client(&other.stats().await, "plain-producer").unwrap();
    for key in ["authed", "auth_identity", "auth_identity_url"] {
        assert!(client.get(key).is_none(), "{key} present: {client}");
    }
}

/// H71: `--auth-http-request-method=post` with a full URL: JSON body of one-element arrays.
#[tokio::test]
async fn h71_auth_post_exchange() {
    let auth = AuthServer::start().await;
    let node = Node::start(&[
        &format!("--auth-http-address=http://{}/custom/path", auth.addr),
        "--auth-http-request-method=post",
    ]);
    let mut conn = authed(&node, "good").await;
    conn.send(&command("PUB a", Some(b"x"))).await;
    conn.expect_ok().await;
    let calls = auth.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].path_and_query, "/custom/path");
    assert_eq!(calls[0].content_type, "application/json");
    assert_eq!(calls[0].accept, "application/vnd.nsq; version=1.0");
    assert_eq!(
        calls[0].body,
        r#"{"common_name":[""],"remote_ip":["127.0.0.1"],"secret":["good"],"tls":["false"]}"#
    );
}

/// H72, H73: auth server refusal, empty grants, invalid answers, AUTH twice, AUTH disabled.
#[tokio::test]
async fn h72_h73_auth_failures() {
    let auth = AuthServer::start().await;
    let node = Node::start(&[&auth.flag()]);
    for (secret, error) in [
        ("wrong", "E_AUTH_FAILED AUTH failed"),
        ("badperm", "E_AUTH_FAILED AUTH failed"),
        ("zerottl", "E_AUTH_FAILED AUTH failed"),
        ("none", "E_UNAUTHORIZED AUTH no authorizations found"),
    ] {
        let mut conn = node.connect().await;
        conn.send(&command("AUTH", Some(secret.as_bytes()))).await;
        conn.expect_fatal(error).await;
    }
    let mut conn = authed(&node, "good").await;
    conn.send(&command("AUTH", Some(b"good"))).await;
    conn.expect_fatal("E_INVALID AUTH already set").await;

    let plain = Node::start(&[]);
    let mut conn = plain.connect().await;
    let reply = conn.identify(r#"{"feature_negotiation":true}"#).await;
    assert_eq!(reply["auth_required"], false);
    conn.send(&command("AUTH", Some(b"secret"))).await;
    conn.expect_fatal("E_AUTH_DISABLED AUTH disabled").await;
    // Upstream's capture of that exchange.
    let fixture = fixture("err_auth_disabled.json");
    assert_eq!(
        fixture["server_replies_decoded"][0]["data"],
        "E_AUTH_DISABLED AUTH disabled"
    );

    // An unreachable auth server is a failure too.
    let dead = Node::start(&["--auth-http-address=127.0.0.1:1"]);
    let mut conn = dead.connect().await;
    conn.send(&command("AUTH", Some(b"good"))).await;
    conn.expect_fatal("E_AUTH_FAILED AUTH failed").await;
}

/// H74, H75: permission checks (unanchored topic search, channel patterns, publishes use the
/// empty channel, empty channel lists authorize nothing).
#[tokio::test]
async fn h74_h75_permission_checks() {
    let auth = AuthServer::start().await;
    let node = Node::start(&[&auth.flag()]);
    let mut conn = authed(&node, "good").await;
    conn.send(&command("PUB a", Some(b"x"))).await;
    conn.expect_ok().await;
    conn.send(&command("DPUB a 10", Some(b"x"))).await;
    conn.expect_ok().await;
    let mut body = Vec::new();
    body.extend_from_slice(&2u32.to_be_bytes());
    for message in [&b"m1"[..], b"m2"] {
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
    }
    conn.send(&command("MPUB a", Some(&body))).await;
    conn.expect_ok().await;
    conn.send(&command("PUB b", Some(b"x"))).await;
    conn.expect_fatal(r#"E_UNAUTHORIZED AUTH failed for PUB on "b" """#)
        .await;

    let mut conn = authed(&node, "good").await;
    conn.send(b"MPUB b\n").await;
    conn.expect_fatal(r#"E_UNAUTHORIZED AUTH failed for MPUB on "b" """#)
        .await;
    let mut conn = authed(&node, "good").await;
    conn.send(&command("SUB a c", None)).await;
    conn.expect_fatal(r#"E_UNAUTHORIZED AUTH failed for SUB on "a" "c""#)
        .await;
    let mut conn = authed(&node, "good").await;
    conn.send(&command("SUB sx d", None)).await;
    conn.expect_fatal(r#"E_UNAUTHORIZED AUTH failed for SUB on "sx" "d""#)
        .await;
    // Unanchored: "^s" matches "sx".
    let mut conn = authed(&node, "good").await;
    conn.send(&command("SUB sx c", None)).await;
    conn.expect_ok().await;

    let mut conn = authed(&node, "nochannels").await;
    conn.send(&command("PUB a", Some(b"x"))).await;
    conn.expect_fatal(r#"E_UNAUTHORIZED AUTH failed for PUB on "a" """#)
        .await;
}

/// H76: with ttl 2 the answer is re-fetched by the first SUB/PUB/MPUB/DPUB after expiry, never
/// by RDY/FIN/NOP.
#[tokio::test]
async fn h76_ttl_expiry_reauthenticates_lazily() {
    let auth = AuthServer::start().await;
    let node = Node::start(&[&auth.flag()]);
    let mut conn = authed(&node, "short").await;
    conn.send(&command("SUB ttl c", None)).await;
    conn.expect_ok().await;
    assert_eq!(auth.calls().len(), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    conn.send(&command("RDY 1", None)).await;
    conn.send(&command("NOP", None)).await;
    // RDY/NOP did not re-query; a PUB does (and then succeeds).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(auth.calls().len(), 1);
    conn.send(&command("PUB ttl", Some(b"x"))).await;
    let mut got_ok = false;
    let mut message_id = None;
    while !(got_ok && message_id.is_some()) {
        let frame = conn.frame().await;
        match frame.kind {
            0 if frame.data == b"OK" => got_ok = true,
            2 => message_id = Some(String::from_utf8(frame.data[10..26].to_vec()).unwrap()),
            _ => panic!("unexpected frame {:?}", frame.text()),
        }
    }
    assert_eq!(auth.calls().len(), 2);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    conn.send(&command(&format!("FIN {}", message_id.unwrap()), None))
        .await;
    conn.send(&command("NOP", None)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(auth.calls().len(), 2);
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_be_bytes());
    body.extend_from_slice(&1u32.to_be_bytes());
    body.push(b'z');
    conn.send(&command("MPUB ttl", Some(&body))).await;
    conn.expect_ok().await;
    assert_eq!(auth.calls().len(), 3);
}

/// Over TLS with a client certificate, the auth server learns `tls=true` and the certificate's
/// common name.
#[tokio::test]
async fn auth_over_tls_sends_common_name() {
    let pki = Pki::new();
    let auth = AuthServer::start().await;
    let node = Node::start(&args(
        &pki.cert_flags(),
        &[&auth.flag(), "--tls-client-auth-policy=require"],
    ));
    let (cert, key) = pki.ca.issue("client one", false);
    let mut conn = node.connect().await;
    conn.identify(r#"{"feature_negotiation":true,"tls_v1":true,"deflate":true}"#)
        .await;
    assert!(
        upgrade_succeeds(
            &mut conn,
            pki.client_config(Some((&cert, &key)), rustls::ALL_VERSIONS)
        )
        .await
    );
    conn.start_deflate(6);
    conn.expect_ok().await;
    conn.send(&command("AUTH", Some(b"good"))).await;
    let reply: Value = serde_json::from_slice(&conn.response().await).unwrap();
    assert_eq!(reply["identity"], "user1");
    let calls = auth.calls();
    assert_eq!(
        calls[0].path_and_query,
        "/auth?common_name=client+one&remote_ip=127.0.0.1&secret=good&tls=true"
    );
    conn.send(&command("PUB a", Some(b"x"))).await;
    conn.expect_ok().await;
}

// ---- IDENTIFY settings in /stats and in effect -----------------------------------------------

/// `sample_rate`, `user_agent`, `msg_timeout`, `output_buffer_size`/`_timeout` from IDENTIFY:
/// echoed in the reply, shown in `/stats`, and a 1 s msg_timeout redelivers after about 1 s.
#[tokio::test]
async fn identify_settings_show_and_apply() {
    let node = Node::start(&[]);
    let mut conn = node.connect().await;
    let reply = conn
        .identify(
            r#"{"feature_negotiation":true,"user_agent":"probe/2.0","client_id":"cons1","sample_rate":50,"msg_timeout":1000,"output_buffer_size":2048,"output_buffer_timeout":100}"#,
        )
        .await;
    assert_eq!(reply["sample_rate"], 50);
    assert_eq!(reply["msg_timeout"], 1000);
    assert_eq!(reply["output_buffer_size"], 2048);
    assert_eq!(reply["output_buffer_timeout"], 100);
    conn.send(&command("SUB settings c", None)).await;
    conn.expect_ok().await;
    let stats = node.stats().await;
    let client = stats_client(&stats, "cons1").expect("client in /stats");
    assert_eq!(client["user_agent"], "probe/2.0");
    assert_eq!(client["sample_rate"], 50);
    assert_eq!(client["state"], 3);

    let mut consumer = node.connect().await;
    consumer
        .identify(r#"{"feature_negotiation":true,"msg_timeout":1000}"#)
        .await;
    consumer.send(&command("SUB timeouts c", None)).await;
    consumer.expect_ok().await;
    consumer.send(&command("RDY 1", None)).await;
    let mut producer = node.connect().await;
    producer
        .send(&command("PUB timeouts", Some(b"again")))
        .await;
    producer.expect_ok().await;
    let first = consumer.frame().await;
    let delivered = Instant::now();
    assert_eq!((first.kind, first.data[9]), (2, 1));
    let second = consumer.frame().await;
    let waited = delivered.elapsed();
    assert_eq!((second.kind, second.data[9]), (2, 2), "attempts");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "redelivered after {waited:?}"
    );
}
