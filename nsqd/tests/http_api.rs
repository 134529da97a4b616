//! Black-box tests of nsqd's HTTP API, `/stats`, node metadata, e2e latency, statsd and
//! `/metrics`: each test starts the real `nsqd` binary on port 0 in a temporary data dir and talks
//! to it over HTTP (reqwest) and TCP (`nsq_protocol::client`).
//!
//! Upstream's captured exchanges (`shared/fixtures/http`) are replayed in capture order after
//! rebuilding the state they were captured in, and compared status, headers and body.

use nsq_protocol::api::Stats;
use nsq_protocol::client::{Consumer, ConsumerConfig, Producer};
use nsq_protocol::{ChannelName, IdentifyRequest, Message, TopicName};
use reqwest::Method;
use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(15);
const WAIT: Duration = Duration::from_secs(10);

// ---- harness ------------------------------------------------------------------------------------

/// A running nsqd, killed (SIGKILL) on drop.
struct Node {
    child: Child,
    tcp: SocketAddr,
    http: SocketAddr,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    stderr: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Node {
    fn start(args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut node = Self::start_in(&dir, args);
        node._temp = Some(temp);
        node
    }

    fn start_in(data_dir: &Path, args: &[&str]) -> Self {
        match Self::try_start_in(data_dir, args) {
            Ok(node) => node,
            Err(stderr) => panic!("nsqd did not start:\n{stderr}"),
        }
    }

    /// Starts nsqd; `Err(stderr)` if it exits or does not listen in time.
    fn try_start_in(data_dir: &Path, args: &[&str]) -> Result<Self, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nsqd"))
            .arg("--tcp-address=127.0.0.1:0")
            .arg("--http-address=127.0.0.1:0")
            .arg(format!("--data-path={}", data_dir.display()))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsqd");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let pipe = child.stderr.take().expect("stderr pipe");
        let recorded = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                recorded.lock().unwrap().push(line.clone());
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut tcp, mut http) = (None, None);
        while tcp.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line, "TCP: listening on ") {
                        tcp = Some(addr);
                    } else if let Some(addr) = listening_addr(&line, "HTTP: listening on ") {
                        http = Some(addr);
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // The pipe is closed now: the reader ends after collecting what is left.
                    let _ = reader.join();
                    return Err(stderr.lock().unwrap().join("\n"));
                }
            }
        }
        Ok(Self {
            child,
            tcp: tcp.unwrap(),
            http: http.unwrap(),
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            stderr,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        })
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.http)
    }

    async fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("HTTP request");
        Reply::from(response).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &[u8]) -> Reply {
        self.request(Method::POST, path, Some(body.to_vec())).await
    }

    /// POST that must succeed.
    async fn ok(&self, path: &str, body: &[u8]) {
        let reply = self.post(path, body).await;
        assert_eq!(reply.status, 200, "POST {path}: {}", reply.text());
    }

    async fn stats(&self, query: &str) -> Stats {
        let reply = self.get(&format!("/stats?format=json{query}")).await;
        assert_eq!(reply.status, 200);
        serde_json::from_slice(&reply.body).expect("/stats deserializes into api::Stats")
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "nsqd did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn consumer(&self, topic: &str, channel: &str, rdy: u64) -> Consumer {
        self.consumer_with(topic, channel, rdy, IdentifyRequest::default())
            .await
    }

    async fn consumer_with(
        &self,
        topic: &str,
        channel: &str,
        rdy: u64,
        identify: IdentifyRequest,
    ) -> Consumer {
        Consumer::connect(
            self.tcp,
            &topic_name(topic),
            &channel_name(channel),
            ConsumerConfig {
                max_in_flight: rdy,
                identify,
            },
        )
        .await
        .expect("consumer connects")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    let at = line.find(marker)?;
    line[at + marker.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn topic_name(name: &str) -> TopicName {
    TopicName::try_from(name).unwrap()
}

fn channel_name(name: &str) -> ChannelName {
    ChannelName::try_from(name).unwrap()
}

/// One HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: Option<String>,
    nsq_content_type: Option<String>,
    allow: Option<String>,
    location: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    async fn from(response: reqwest::Response) -> Self {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        let status = response.status().as_u16();
        let content_type = header("content-type");
        let nsq_content_type = header("x-nsq-content-type");
        let allow = header("allow");
        let location = header("location");
        let body = response.bytes().await.expect("body").to_vec();
        Self {
            status,
            content_type,
            nsq_content_type,
            allow,
            location,
            body,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| panic!("{err}: {}", self.text()))
    }
}

/// Polls `condition` until it holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next_message(consumer: &mut Consumer) -> Message {
    tokio::time::timeout(WAIT, consumer.next_message())
        .await
        .expect("a message within the deadline")
        .expect("a message")
}

fn topic<'a>(stats: &'a Stats, name: &str) -> &'a nsq_protocol::api::TopicStats {
    stats
        .topics
        .as_ref()
        .and_then(|topics| topics.iter().find(|topic| topic.topic_name == name))
        .unwrap_or_else(|| panic!("topic {name} in {stats:?}"))
}

fn channel<'a>(
    stats: &'a Stats,
    topic_name: &str,
    name: &str,
) -> &'a nsq_protocol::api::ChannelStats {
    topic(stats, topic_name)
        .channels
        .iter()
        .find(|channel| channel.channel_name == name)
        .unwrap_or_else(|| panic!("channel {topic_name}/{name}"))
}

// ---- fixtures -----------------------------------------------------------------------------------

fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NSQ_SHARED_DIR") {
        return PathBuf::from(dir).join("fixtures");
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
    assert!(
        dir.exists(),
        "fixtures not found at {} (set NSQ_SHARED_DIR)",
        dir.display()
    );
    dir
}

fn fixture(name: &str) -> Value {
    let path = fixtures_dir().join("http").join(name);
    let raw = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_slice(&raw).unwrap()
}

fn fixture_request_body(exchange: &Value) -> Option<Vec<u8>> {
    if let Some(text) = exchange["request_body"].as_str() {
        return Some(text.as_bytes().to_vec());
    }
    let encoded = exchange["request_body_base64"].as_str()?;
    Some(base64_decode(encoded))
}

fn base64_decode(encoded: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in encoded.bytes().filter(|&byte| byte != b'=') {
        let value = ALPHABET.iter().position(|&c| c == byte).expect("base64") as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// Blanks what varies between runs (clock, memory, ports, the disk/memory split).
fn normalize_stats_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let (Some(depth), Some(backend)) = (map.get("depth"), map.get("backend_depth")) {
                assert!(
                    backend.as_i64() <= depth.as_i64(),
                    "backend_depth > depth: {map:?}"
                );
            }
            for (key, field) in map.iter_mut() {
                match key.as_str() {
                    "start_time" | "connect_ts" | "backend_depth" => *field = Value::from(0),
                    "remote_address" => *field = Value::from("ADDR"),
                    "memory" => {
                        if let Value::Object(memory) = field {
                            for figure in memory.values_mut() {
                                assert!(figure.is_u64());
                                *figure = Value::from(0);
                            }
                        }
                    }
                    _ => normalize_stats_json(field),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_stats_json),
        _ => {}
    }
}

/// Blanks what varies in the text `/stats`.
fn normalize_stats_text(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_memory = false;
    for line in text.split('\n') {
        let mut line = line.to_owned();
        if let Some(at) = line.find(" (built w/") {
            line.truncate(at);
            line.push_str(" (built w/X)");
        } else if line.starts_with("start_time ") {
            line = "start_time X".to_owned();
        } else if line.starts_with("uptime ") {
            line = "uptime X".to_owned();
        }
        if line == "Memory:" {
            in_memory = true;
        } else if line.is_empty() {
            in_memory = false;
        } else if in_memory && let Some(tab) = line.find('\t') {
            line.truncate(tab + 1);
            line.push('N');
        }
        line = blank_number_after(&line, "be-depth: ");
        if let Some(at) = line.find("connected: ") {
            line.truncate(at);
            line.push_str("connected: X");
        }
        if line.trim_start().starts_with("[V2 ")
            && let Some(colon) = line.find(':')
        {
            let digits = line[colon + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(0);
            line.replace_range(colon + 1..colon + 1 + digits, "P");
        }
        out.push(line);
    }
    out.join("\n")
}

/// `be-depth: 11    ` → `be-depth: N ` (the padding depends on the number).
fn blank_number_after(line: &str, marker: &str) -> String {
    let Some(at) = line.find(marker) else {
        return line.to_owned();
    };
    let start = at + marker.len();
    let rest = &line[start..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let spaces = rest[digits..]
        .find(|c: char| c != ' ')
        .unwrap_or(rest.len() - digits);
    format!("{}N {}", &line[..start], &rest[digits + spaces..])
}

/// Rebuilds the node state the HTTP fixtures were captured in (http/README.md).
async fn build_fixture_state(node: &Node) -> (Producer, Consumer) {
    node.ok("/topic/create?topic=orders", b"").await;
    node.ok("/channel/create?topic=orders&channel=billing", b"")
        .await;
    node.ok("/channel/create?topic=orders&channel=audit", b"")
        .await;
    node.ok("/channel/pause?topic=orders&channel=audit", b"")
        .await;
    node.ok("/topic/create?topic=events", b"").await;
    node.ok("/channel/create?topic=events&channel=all", b"")
        .await;
    let mut consumer = node
        .consumer_with(
            "orders",
            "billing",
            3,
            IdentifyRequest {
                client_id: Some("fixture-consumer".to_owned()),
                hostname: Some("fixture-host".to_owned()),
                user_agent: Some("fixture-capture/1.0".to_owned()),
                msg_timeout: Some(120_000),
                feature_negotiation: Some(true),
                ..IdentifyRequest::default()
            },
        )
        .await;
    for n in 0..20 {
        node.ok("/pub?topic=orders", format!("order-{n:03}").as_bytes())
            .await;
    }
    let producer = Producer::connect_with(
        node.tcp,
        IdentifyRequest {
            client_id: Some("fixture-producer".to_owned()),
            hostname: Some("producer-host".to_owned()),
            user_agent: Some("fixture-producer/1.0".to_owned()),
            ..IdentifyRequest::default()
        },
    )
    .await
    .unwrap();
    let orders = topic_name("orders");
    producer
        .publish(&orders, &b"order-from-tcp-producer"[..])
        .await
        .unwrap();
    producer
        .multi_publish(&orders, vec!["order-mpub-a".into(), "order-mpub-b".into()])
        .await
        .unwrap();
    for n in 0..5 {
        node.ok("/pub?topic=events", format!("ev-{n}").as_bytes())
            .await;
    }
    eventually("events reach channel all", || async {
        channel(&node.stats("").await, "events", "all").depth == 5
    })
    .await;
    node.ok("/topic/pause?topic=events", b"").await;
    for n in 5..8 {
        node.ok("/pub?topic=events", format!("ev-{n}").as_bytes())
            .await;
    }
    // RDY 3: three in flight; FIN one, REQ one (delay 0); two more arrive.
    let first = next_message(&mut consumer).await;
    let second = next_message(&mut consumer).await;
    let _third = next_message(&mut consumer).await;
    consumer.finish(first.id).await.unwrap();
    let _fourth = next_message(&mut consumer).await;
    consumer.requeue(second.id, Duration::ZERO).await.unwrap();
    let _fifth = next_message(&mut consumer).await;
    eventually("the consumer's counters settle", || async {
        let stats = node.stats("").await;
        let billing = channel(&stats, "orders", "billing");
        billing.in_flight_count == 3 && billing.requeue_count == 1
    })
    .await;
    (producer, consumer)
}

const FIXTURE_FLAGS: &[&str] = &[
    "--broadcast-address=127.0.0.1",
    "--mem-queue-size=10",
    "--max-bytes-per-file=4096",
    "--max-msg-size=1024",
    "--max-body-size=4096",
];

/// Every exchange of `shared/fixtures/http`, replayed in capture order on the state it was
/// captured in: status, both headers, `Allow`, and body (JSON compared after blanking what
/// varies; text `/stats` compared line by line likewise).
#[tokio::test]
async fn upstream_http_session_replays_exactly() {
    let node = Node::start(FIXTURE_FLAGS);
    let (producer, consumer) = build_fixture_state(&node).await;
    let mut clients = Some((producer, consumer));
    let index = fixture("_index.json");
    let exchanges = index["exchanges_in_capture_order"].as_array().unwrap();
    let mut compared = 0;
    for entry in exchanges {
        let name = entry["file"].as_str().unwrap();
        let exchange = fixture(name);
        if name == "stats_json_no_clients_connected.json" {
            drop(clients.take());
            eventually("clients to disconnect", || async {
                let stats = node.stats("&topic=orders").await;
                stats.producers.is_none() && channel(&stats, "orders", "billing").client_count == 0
            })
            .await;
        }
        let method = Method::from_bytes(exchange["method"].as_str().unwrap().as_bytes()).unwrap();
        let path = match exchange["query"].as_str() {
            Some(query) => format!("{}?{query}", exchange["path"].as_str().unwrap()),
            None => exchange["path"].as_str().unwrap().to_owned(),
        };
        let mut request = node.client.request(method.clone(), node.url(&path));
        if let Some(headers) = exchange["request_headers"].as_object() {
            for (key, value) in headers {
                request = request.header(key.as_str(), value.as_str().unwrap());
            }
        }
        if let Some(body) = fixture_request_body(&exchange) {
            request = request.body(body);
        }
        let reply = Reply::from(request.send().await.unwrap()).await;
        let context = format!(
            "{name}: {method} {path} -> {} {}",
            reply.status,
            reply.text()
        );
        assert_eq!(
            u64::from(reply.status),
            exchange["status"].as_u64().unwrap(),
            "{context}"
        );
        let headers = &exchange["headers"];
        assert_eq!(
            reply.content_type.as_deref(),
            headers["Content-Type"].as_str(),
            "Content-Type of {context}"
        );
        assert_eq!(
            reply.nsq_content_type.as_deref(),
            headers["X-NSQ-Content-Type"].as_str(),
            "X-NSQ-Content-Type of {context}"
        );
        assert_eq!(
            reply.allow.as_deref(),
            exchange["extra_headers"]["Allow"].as_str(),
            "Allow of {context}"
        );
        let expected_body = exchange["body"].as_str().unwrap();
        match name {
            "info.json" => {
                let ours = reply.json();
                let theirs: Value = serde_json::from_str(expected_body).unwrap();
                for key in theirs.as_object().unwrap().keys() {
                    assert!(ours.get(key).is_some(), "/info lacks {key}");
                }
                assert_eq!(ours["http_port"], node.http.port());
                assert_eq!(ours["tcp_port"], node.tcp.port());
                assert_eq!(ours["version"], theirs["version"]);
                assert_eq!(ours["broadcast_address"], "127.0.0.1");
                assert_eq!(
                    ours["max_heartbeat_interval"],
                    theirs["max_heartbeat_interval"]
                );
                assert_eq!(
                    ours["max_output_buffer_timeout"],
                    theirs["max_output_buffer_timeout"]
                );
            }
            "config_tcp_address_get.json" => assert_eq!(reply.text(), "127.0.0.1:0"),
            "config_data_path_get.json" => {
                assert_eq!(reply.text(), node.data_dir.display().to_string());
            }
            _ if name.starts_with("stats_") && expected_body.starts_with('{') => {
                let mut ours = reply.json();
                let mut theirs: Value = serde_json::from_str(expected_body).unwrap();
                normalize_stats_json(&mut ours);
                normalize_stats_json(&mut theirs);
                assert_eq!(ours, theirs, "{name}");
                let typed: Stats = serde_json::from_slice(&reply.body).unwrap();
                assert_eq!(typed.version, "1.3.0");
            }
            _ if name.starts_with("stats_") => {
                assert_eq!(
                    normalize_stats_text(&reply.text()),
                    normalize_stats_text(expected_body),
                    "{name}"
                );
            }
            _ => assert_eq!(reply.text(), expected_body, "body of {context}"),
        }
        compared += 1;
    }
    assert!(compared >= 130, "only {compared} exchanges replayed");
}

// ---- publishing and delivery --------------------------------------------------------------------

#[tokio::test]
async fn http_publishes_reach_tcp_consumers() {
    let node = Node::start(&[]);
    node.ok("/topic/create?topic=t", b"").await;
    let mut consumer = node.consumer("t", "c", 10).await;
    node.ok("/pub?topic=t", b"hello over http").await;
    assert_eq!(
        next_message(&mut consumer).await.body.as_ref(),
        b"hello over http"
    );

    node.ok("/mpub?topic=t", b"a\n\nb\n").await;
    let bodies = [
        next_message(&mut consumer).await,
        next_message(&mut consumer).await,
    ];
    assert_eq!(bodies[0].body.as_ref(), b"a");
    assert_eq!(bodies[1].body.as_ref(), b"b");
    assert_eq!(bodies[0].attempts, 1);

    node.ok(
        "/mpub?topic=t&binary=true",
        b"\x00\x00\x00\x02\x00\x00\x00\x01x\x00\x00\x00\x02yz",
    )
    .await;
    assert_eq!(next_message(&mut consumer).await.body.as_ref(), b"x");
    assert_eq!(next_message(&mut consumer).await.body.as_ref(), b"yz");

    // An empty text /mpub publishes nothing and still answers OK.
    let reply = node.post("/mpub?topic=t", b"").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "OK"));

    // `defer` on /mpub is ignored at this baseline: delivered at once.
    node.ok("/mpub?topic=t&defer=60000", b"now\n").await;
    assert_eq!(next_message(&mut consumer).await.body.as_ref(), b"now");

    // /pub with defer: deferred in the channel, delivered after the delay.
    let sent = Instant::now();
    node.ok("/pub?topic=t&defer=1000", b"later").await;
    let stats = node.stats("").await;
    assert_eq!(channel(&stats, "t", "c").deferred_count, 1);
    let later = next_message(&mut consumer).await;
    assert_eq!(later.body.as_ref(), b"later");
    assert!(
        sent.elapsed() >= Duration::from_millis(950),
        "{:?}",
        sent.elapsed()
    );

    let stats = node.stats("").await;
    assert_eq!(topic(&stats, "t").message_count, 7);
    assert_eq!(channel(&stats, "t", "c").message_count, 7);
    // HTTP publishers are not TCP producers.
    assert!(stats.producers.is_none());
}

/// `/stats` counters agree with what the TCP clients observed.
#[tokio::test]
async fn stats_counters_match_client_observations() {
    let node = Node::start(&[]);
    node.ok("/topic/create?topic=counts", b"").await;
    node.ok("/channel/create?topic=counts&channel=c", b"").await;
    let mut consumer = node
        .consumer_with(
            "counts",
            "c",
            5,
            IdentifyRequest {
                client_id: Some("counter".to_owned()),
                msg_timeout: Some(1000),
                ..IdentifyRequest::default()
            },
        )
        .await;
    let producer = Producer::connect(node.tcp).await.unwrap();
    let counts = topic_name("counts");
    for n in 0..10 {
        producer
            .publish(&counts, format!("m{n}").into_bytes())
            .await
            .unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(next_message(&mut consumer).await);
    }
    // FIN 2, REQ 1 at once, REQ 1 for a minute, keep 1 until it times out.
    consumer.finish(held[0].id).await.unwrap();
    consumer.finish(held[1].id).await.unwrap();
    consumer.requeue(held[2].id, Duration::ZERO).await.unwrap();
    consumer
        .requeue(held[3].id, Duration::from_secs(60))
        .await
        .unwrap();
    // Four slots opened: four more arrive (the REQ'd-at-once one among what is queued).
    let mut received = 5;
    for _ in 0..4 {
        held.push(next_message(&mut consumer).await);
        received += 1;
    }
    eventually("counters to settle", || async {
        let stats = node.stats("").await;
        let c = channel(&stats, "counts", "c");
        c.in_flight_count == 5 && c.deferred_count == 1
    })
    .await;
    let stats = node.stats("").await;
    let c = channel(&stats, "counts", "c");
    assert_eq!(topic(&stats, "counts").message_count, 10);
    assert_eq!(c.message_count, 10);
    assert_eq!(c.requeue_count, 2);
    assert_eq!(c.in_flight_count, 5);
    assert_eq!(c.deferred_count, 1);
    // 10 published - 2 finished - 5 in flight - 1 deferred.
    assert_eq!(c.depth, 2);
    assert_eq!(c.timeout_count, 0);
    let clients = c.clients.as_ref().unwrap();
    assert_eq!(clients.len(), 1);
    let client = &clients[0];
    assert_eq!(client.client_id, "counter");
    assert_eq!(client.ready_count, 5);
    assert_eq!(client.finish_count, 2);
    assert_eq!(client.requeue_count, 2);
    assert_eq!(client.in_flight_count, 5);
    assert_eq!(client.message_count, received);
    assert_eq!(client.state, 3);
    let producers = stats.producers.as_ref().unwrap();
    assert_eq!(producers[0].pub_counts[0].count, 10);

    // Nothing is FINed now: after the 1 s msg_timeout the five in flight time out.
    eventually("timeouts", || async {
        channel(&node.stats("").await, "counts", "c").timeout_count >= 5
    })
    .await;
    let stats = node.stats("").await;
    assert_eq!(channel(&stats, "counts", "c").requeue_count, 2);
}

#[tokio::test]
async fn paused_channel_delivers_nothing_then_everything() {
    let node = Node::start(&[]);
    node.ok("/topic/create?topic=p", b"").await;
    let mut consumer = node.consumer("p", "c", 10).await;
    node.ok("/channel/pause?topic=p&channel=c", b"").await;
    let stats = node.stats("").await;
    assert!(channel(&stats, "p", "c").paused);
    for n in 0..5 {
        node.ok("/pub?topic=p", format!("m{n}").as_bytes()).await;
    }
    // The behaviour under test is that nothing happens for 2 s.
    let silent = tokio::time::timeout(Duration::from_secs(2), consumer.next_message()).await;
    assert!(silent.is_err(), "a paused channel delivered {silent:?}");
    let stats = node.stats("").await;
    assert_eq!(channel(&stats, "p", "c").depth, 5);
    assert_eq!(channel(&stats, "p", "c").client_count, 1);
    node.ok("/channel/unpause?topic=p&channel=c", b"").await;
    for n in 0..5 {
        assert_eq!(next_message(&mut consumer).await.body, format!("m{n}"));
    }
}

#[tokio::test]
async fn paused_topic_keeps_messages_at_the_topic() {
    let node = Node::start(&[]);
    node.ok("/topic/create?topic=tp", b"").await;
    node.ok("/channel/create?topic=tp&channel=c", b"").await;
    node.ok("/topic/pause?topic=tp", b"").await;
    for _ in 0..3 {
        node.ok("/pub?topic=tp", b"x").await;
    }
    let stats = node.stats("").await;
    assert!(topic(&stats, "tp").paused);
    assert_eq!(topic(&stats, "tp").depth, 3);
    assert_eq!(channel(&stats, "tp", "c").depth, 0);
    node.ok("/topic/unpause?topic=tp", b"").await;
    eventually("the backlog to drain into the channel", || async {
        let stats = node.stats("").await;
        topic(&stats, "tp").depth == 0 && channel(&stats, "tp", "c").depth == 3
    })
    .await;
}

#[tokio::test]
async fn empty_channel_drops_messages_but_keeps_consumers() {
    let node = Node::start(&[]);
    node.ok("/topic/create?topic=e", b"").await;
    let mut consumer = node.consumer("e", "c", 2).await;
    for n in 0..6 {
        node.ok("/pub?topic=e", format!("m{n}").as_bytes()).await;
    }
    let held = next_message(&mut consumer).await;
    let _also_held = next_message(&mut consumer).await;
    node.ok("/pub?topic=e&defer=60000", b"deferred").await;
    eventually("queue state", || async {
        let stats = node.stats("").await;
        let c = channel(&stats, "e", "c");
        c.depth == 4 && c.in_flight_count == 2 && c.deferred_count == 1
    })
    .await;
    node.ok("/channel/empty?topic=e&channel=c", b"").await;
    let stats = node.stats("").await;
    let c = channel(&stats, "e", "c");
    assert_eq!((c.depth, c.in_flight_count, c.deferred_count), (0, 0, 0));
    assert_eq!(c.client_count, 1);
    assert_eq!(c.clients.as_ref().unwrap()[0].in_flight_count, 0);
    // A FIN for a message dropped by the empty is refused, without closing the connection.
    consumer.finish(held.id).await.unwrap();
    let refused = tokio::time::timeout(WAIT, consumer.next_message())
        .await
        .expect("an answer");
    let error = format!("{refused:?}");
    assert!(error.contains("E_FIN_FAILED"), "{error}");
    // Still subscribed: new messages arrive.
    node.ok("/pub?topic=e", b"after").await;
    assert_eq!(next_message(&mut consumer).await.body.as_ref(), b"after");

    node.ok("/topic/create?topic=te", b"").await;
    node.ok("/pub?topic=te", b"x").await;
    node.ok("/topic/empty?topic=te", b"").await;
    assert_eq!(topic(&node.stats("").await, "te").depth, 0);
}

#[tokio::test]
async fn deleting_a_topic_closes_its_consumers() {
    let node = Node::start(&[]);
    node.ok("/topic/create?topic=gone", b"").await;
    let mut consumer = node.consumer("gone", "c", 1).await;
    node.ok("/topic/delete?topic=gone", b"").await;
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            if consumer.next_event().await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the consumer's connection stayed open");
    let stats = node.stats("&topic=gone").await;
    assert!(stats.topics.is_none());
    // A channel delete closes its consumers too, and an ephemeral topic goes with its last
    // channel.
    node.ok("/topic/create?topic=eph%23ephemeral", b"").await;
    node.ok("/channel/create?topic=eph%23ephemeral&channel=c", b"")
        .await;
    node.ok("/channel/delete?topic=eph%23ephemeral&channel=c", b"")
        .await;
    eventually("the ephemeral topic to go", || async {
        node.stats("&topic=eph%23ephemeral").await.topics.is_none()
    })
    .await;
}

// ---- metadata -----------------------------------------------------------------------------------

#[tokio::test]
async fn restart_restores_topics_channels_and_paused_flags() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start_in(dir.path(), &[]);
    for (path, body) in [
        ("/topic/create?topic=a", &b""[..]),
        ("/channel/create?topic=a&channel=c1", b""),
        ("/channel/create?topic=a&channel=c2", b""),
        ("/channel/pause?topic=a&channel=c2", b""),
        ("/topic/create?topic=b", b""),
        ("/topic/pause?topic=b", b""),
        ("/channel/create?topic=a&channel=eph%23ephemeral", b""),
        ("/topic/create?topic=t%23ephemeral", b""),
        ("/pub?topic=auto", b"creates topic auto"),
        ("/topic/create?topic=deleted", b""),
        ("/topic/delete?topic=deleted", b""),
    ] {
        node.ok(path, body).await;
    }
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}");

    // Upstream-compatible nsqd.dat, written too (no ephemeral names, null for no channels).
    let dat: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("nsqd.dat")).unwrap()).unwrap();
    assert_eq!(dat["version"], "1.3.0");
    let topics = dat["topics"].as_array().unwrap();
    let names: Vec<&str> = topics.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "auto", "b"]);
    assert_eq!(topics[2]["channels"], Value::Null);
    assert_eq!(topics[2]["paused"], true);

    let node = Node::start_in(dir.path(), &[]);
    let stats = node.stats("").await;
    let names: Vec<&str> = stats
        .topics
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| t.topic_name.as_str())
        .collect();
    assert_eq!(names, ["a", "auto", "b"]);
    let a = topic(&stats, "a");
    assert!(!a.paused);
    let channels: Vec<(&str, bool)> = a
        .channels
        .iter()
        .map(|c| (c.channel_name.as_str(), c.paused))
        .collect();
    assert_eq!(channels, [("c1", false), ("c2", true)]);
    assert!(topic(&stats, "b").paused);
    assert!(topic(&stats, "b").channels.is_empty());
}

/// A topic's name and paused flag, with its channels' names and paused flags.
type TopicFlags = (String, bool, Vec<(String, bool)>);

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        std::fs::copy(entry.path(), &target).unwrap();
        let mut permissions = std::fs::metadata(&target).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(&target, permissions).unwrap();
    }
}

#[tokio::test]
async fn upstream_data_dir_comes_up_with_its_topics_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures_dir().join("upstream-datadir"), dir.path());
    let expected: Value = serde_json::from_slice(
        &std::fs::read(fixtures_dir().join("upstream-datadir.expected.json")).unwrap(),
    )
    .unwrap();
    let node = Node::start_in(dir.path(), &[]);
    let stats = node.stats("").await;
    let mut ours: Vec<TopicFlags> = stats
        .topics
        .unwrap()
        .into_iter()
        .map(|t| {
            let mut channels: Vec<(String, bool)> = t
                .channels
                .into_iter()
                .map(|c| (c.channel_name, c.paused))
                .collect();
            channels.sort();
            (t.topic_name, t.paused, channels)
        })
        .collect();
    ours.sort();
    let mut theirs: Vec<TopicFlags> = expected["nsqd_dat"]["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let mut channels: Vec<(String, bool)> = t["channels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().to_owned(),
                        c["paused"].as_bool().unwrap(),
                    )
                })
                .collect();
            channels.sort();
            (
                t["name"].as_str().unwrap().to_owned(),
                t["paused"].as_bool().unwrap(),
                channels,
            )
        })
        .collect();
    theirs.sort();
    assert_eq!(ours, theirs);
    // The fixture itself is untouched (we worked on a copy).
    assert!(fixtures_dir().join("upstream-datadir/nsqd.dat").exists());
}

// ---- config, ping, info, routing ---------------------------------------------------------------

#[tokio::test]
async fn config_log_level_changes_logging_at_runtime() {
    let node = Node::start(&[]);
    assert_eq!(node.get("/config/log_level").await.text(), "2");
    let reply = node
        .request(Method::PUT, "/config/log_level", Some(b"warn".to_vec()))
        .await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "3"));
    node.ok("/topic/create?topic=quiet", b"").await;
    let reply = node
        .request(Method::PUT, "/config/log_level", Some(b"INFO".to_vec()))
        .await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "2"));
    node.ok("/topic/create?topic=loud", b"").await;
    eventually("an info line after the change", || async {
        node.stderr_text().contains("TOPIC(loud): created")
    })
    .await;
    assert!(!node.stderr_text().contains("TOPIC(quiet): created"));
    let reply = node
        .request(Method::PUT, "/config/log_level", Some(b"debug".to_vec()))
        .await;
    assert_eq!(reply.text(), "1");
    assert_eq!(node.get("/config/log_level").await.text(), "1");
    let reply = node
        .request(Method::PUT, "/config/log_level", Some(b"loud".to_vec()))
        .await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (400, r#"{"message":"INVALID_VALUE"}"#)
    );
}

#[tokio::test]
async fn config_lookupd_addresses_and_other_options() {
    let node = Node::start(&["--lookupd-tcp-address=127.0.0.1:1", "--msg-timeout=7s"]);
    let reply = node.get("/config/nsqlookupd_tcp_addresses").await;
    assert_eq!(reply.json(), serde_json::json!(["127.0.0.1:1"]));
    let reply = node
        .request(
            Method::PUT,
            "/config/nsqlookupd_tcp_addresses",
            Some(br#"["127.0.0.1:2","127.0.0.1:3"]"#.to_vec()),
        )
        .await;
    assert_eq!(
        reply.json(),
        serde_json::json!(["127.0.0.1:2", "127.0.0.1:3"])
    );
    assert_eq!(
        node.get("/config/nsqlookupd_tcp_addresses").await.json(),
        serde_json::json!(["127.0.0.1:2", "127.0.0.1:3"])
    );
    assert_eq!(node.get("/config/msg_timeout").await.text(), "7000000000");
    assert_eq!(node.get("/config/queue_scan_interval").await.status, 400);
    assert!(
        node.get("/config/statsd_prefix")
            .await
            .text()
            .ends_with('.')
    );
    let reply = node
        .request(Method::PUT, "/config/mem_queue_size", Some(b"5".to_vec()))
        .await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (400, r#"{"message":"INVALID_OPTION"}"#)
    );
    let reply = node
        .request(Method::PUT, "/config/log_level", Some(Vec::new()))
        .await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (413, r#"{"message":"INVALID_VALUE"}"#)
    );
}

#[tokio::test]
async fn router_behaviour_matches_httprouter() {
    let node = Node::start(&[]);
    let ping = node.get("/ping").await;
    assert_eq!((ping.status, ping.text().as_str()), (200, "OK"));
    assert_eq!(
        ping.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(ping.nsq_content_type.is_none());

    let redirect = node.get("/stats/?format=json").await;
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.location.as_deref(), Some("/stats?format=json"));
    let redirect = node.post("/PUB?topic=t", b"x").await;
    assert_eq!(redirect.status, 307);
    assert_eq!(redirect.location.as_deref(), Some("/pub?topic=t"));

    let options = node.request(Method::OPTIONS, "/pub", None).await;
    assert_eq!(options.status, 200);
    assert_eq!(options.allow.as_deref(), Some("OPTIONS, POST"));
    let head = node.request(Method::HEAD, "/ping", None).await;
    assert_eq!(head.status, 405);
    assert_eq!(head.allow.as_deref(), Some("GET, OPTIONS"));

    let bad_query = node.get("/stats?format=json&topic=%zz").await;
    assert_eq!(
        (bad_query.status, bad_query.text().as_str()),
        (400, r#"{"message":"INVALID_REQUEST"}"#)
    );
    // Arguments come only from the query string, never from a form body.
    let form = node
        .client
        .post(node.url("/pub"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("topic=x")
        .send()
        .await
        .unwrap();
    let form = Reply::from(form).await;
    assert_eq!(
        (form.status, form.text().as_str()),
        (400, r#"{"message":"MISSING_ARG_TOPIC"}"#)
    );
    // A repeated parameter uses its first value.
    node.ok("/topic/create?topic=r1&topic=r2", b"").await;
    let stats = node.stats("").await;
    assert!(
        stats
            .topics
            .as_ref()
            .unwrap()
            .iter()
            .any(|t| t.topic_name == "r1")
    );
    assert!(
        !stats
            .topics
            .as_ref()
            .unwrap()
            .iter()
            .any(|t| t.topic_name == "r2")
    );
    // Oversized /pub by Content-Length, with the real default limit: refused from the header,
    // without waiting for the body (none is sent here).
    let mut stream = tokio::net::TcpStream::connect(node.http).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream
        .write_all(b"POST /pub?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let expected_body = br#"{"message":"MSG_TOO_BIG"}"#;
    let _ = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 4096];
        while !raw.ends_with(expected_body) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.ends_with(r#"{"message":"MSG_TOO_BIG"}"#), "{raw}");
    let big = vec![b'x'; 1_048_577];
    node.ok("/pub?topic=t", &big[..1_048_576]).await;
}

#[tokio::test]
async fn stats_text_and_filters() {
    let node = Node::start(&[]);
    let text = node.get("/stats").await;
    assert_eq!(
        text.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(text.nsq_content_type.as_deref(), Some("nsq; version=1.0"));
    let body = text.text();
    assert!(body.starts_with("nsqd v1.3.0 (built w/rust-"), "{body}");
    assert!(body.contains("\nHealth: OK\n"));
    assert!(body.contains("\nTopics: None\n"));
    assert!(body.ends_with("\nProducers: None\n"));
    assert_eq!(
        node.get("/stats?format=xml").await.text().lines().next(),
        body.lines().next()
    );

    let fresh = node.get("/stats?format=json").await.json();
    let keys: Vec<&String> = fresh.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6);
    assert_eq!(fresh["topics"], serde_json::json!([]));
    assert_eq!(fresh["producers"], Value::Null);
    assert_eq!(fresh["memory"].as_object().unwrap().len(), 9);
    let no_mem = node
        .get("/stats?format=json&include_mem=false")
        .await
        .json();
    assert!(no_mem.get("memory").is_none());

    assert_eq!(
        node.post("/channel/create?topic=nosuch&channel=c", b"")
            .await
            .status,
        404
    );
    node.ok("/topic/create?topic=x1", b"").await;
    node.ok("/channel/create?topic=x1&channel=c", b"").await;
    node.ok("/topic/create?topic=x2", b"").await;
    node.ok("/channel/create?topic=x2&channel=d", b"").await;
    let only_c = node.stats("&channel=c").await;
    assert_eq!(only_c.topics.as_ref().unwrap().len(), 1);
    let no_clients = node
        .get("/stats?format=json&include_clients=false")
        .await
        .json();
    assert_eq!(
        no_clients["topics"][0]["channels"][0]["clients"],
        Value::Null
    );
    assert_eq!(
        no_clients["topics"][0]["channels"][0]["e2e_processing_latency"],
        serde_json::json!({"count":0,"percentiles":null})
    );
}

// ---- e2e latency, statsd, metrics ---------------------------------------------------------------

#[tokio::test]
async fn e2e_latency_percentiles_are_reported() {
    let node = Node::start(&["--e2e-processing-latency-percentile=0.5,0.99"]);
    node.ok("/topic/create?topic=lat", b"").await;
    let mut consumer = node.consumer("lat", "c", 10).await;
    for _ in 0..4 {
        node.ok("/pub?topic=lat", b"x").await;
    }
    for _ in 0..4 {
        let message = next_message(&mut consumer).await;
        consumer.finish(message.id).await.unwrap();
    }
    eventually("four samples", || async {
        channel(&node.stats("").await, "lat", "c")
            .e2e_processing_latency
            .count
            == 4
    })
    .await;
    let stats = node.stats("").await;
    for latency in [
        &channel(&stats, "lat", "c").e2e_processing_latency,
        &topic(&stats, "lat").e2e_processing_latency,
    ] {
        assert_eq!(latency.count, 4);
        let percentiles = latency.percentiles.as_ref().unwrap();
        let quantiles: Vec<f64> = percentiles.iter().map(|p| p.quantile).collect();
        assert_eq!(quantiles, [0.99, 0.5]);
        assert!(percentiles.iter().all(|p| p.value > 0.0 && p.value < 10e9));
    }
    let text = node.get("/stats").await.text();
    assert!(
        text.contains("e2e%: ") && (text.contains("ms, ") || text.contains("us, ")),
        "{text}"
    );
    assert_eq!(
        node.get("/config/e2e_processing_latency_percentiles")
            .await
            .json(),
        serde_json::json!([0.5, 0.99])
    );

    for bad in ["1.5", "0", "-0.1"] {
        let dir = tempfile::tempdir().unwrap();
        let flag = format!("--e2e-processing-latency-percentile={bad}");
        let failed = Node::try_start_in(dir.path(), &[flag.as_str()])
            .err()
            .expect("startup fails");
        assert!(
            failed.contains(&format!("invalid E2E processing latency percentile: {bad}")),
            "{failed}"
        );
    }
}

#[tokio::test]
async fn statsd_pushes_upstream_metric_names() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let address = format!("--statsd-address={}", socket.local_addr().unwrap());
    let node = Node::start(&[
        address.as_str(),
        "--statsd-interval=1s",
        "--broadcast-address=h.x",
    ]);
    node.ok("/topic/create?topic=t", b"").await;
    node.ok("/channel/create?topic=t&channel=c", b"").await;
    node.ok("/pub?topic=t", b"abc").await;
    let prefix = format!("nsq.h_x_{}.", node.http.port());
    let expected = [
        format!("{prefix}topic.t.channel.c.depth:1|g"),
        format!("{prefix}topic.t.message_count:1|c"),
        format!("{prefix}topic.t.message_bytes:3|c"),
        format!("{prefix}topic.t.channel.c.clients:0|g"),
        format!("{prefix}topic.t.channel.c.requeue_count:0|c"),
    ];
    let mem_line = format!("{prefix}mem.heap_in_use_bytes:");
    let complete = |lines: &[String]| {
        expected.iter().all(|line| lines.contains(line))
            && lines.iter().any(|line| line.starts_with(&mem_line))
    };
    let mut lines: Vec<String> = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut buffer = [0u8; 2048];
    while Instant::now() < deadline && !complete(&lines) {
        if let Ok(size) = socket.recv(&mut buffer) {
            assert!(size <= 508, "datagram of {size} bytes");
            let text = std::str::from_utf8(&buffer[..size]).unwrap();
            assert!(text.ends_with('\n'));
            lines.extend(text.lines().map(str::to_owned));
        }
    }
    for line in &expected {
        assert!(lines.contains(line), "{line} not in {lines:#?}");
    }
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with(&format!("{prefix}mem.heap_in_use_bytes:")))
    );
}

#[tokio::test]
async fn metrics_parse_and_match_stats() {
    let node = Node::start(&["--e2e-processing-latency-percentile=0.99"]);
    node.ok("/topic/create?topic=m", b"").await;
    let mut consumer = node.consumer("m", "c", 2).await;
    node.ok("/channel/create?topic=m&channel=idle", b"").await;
    node.ok("/channel/pause?topic=m&channel=idle", b"").await;
    node.ok("/mpub?topic=m", b"1\n2\n3\n4\n5\n").await;
    let first = next_message(&mut consumer).await;
    let _second = next_message(&mut consumer).await;
    consumer.finish(first.id).await.unwrap();
    eventually("the FIN to land", || async {
        channel(&node.stats("").await, "m", "c")
            .e2e_processing_latency
            .count
            == 1
    })
    .await;
    let _third = next_message(&mut consumer).await;
    eventually("two in flight", || async {
        channel(&node.stats("").await, "m", "c").in_flight_count == 2
    })
    .await;
    let reply = node.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = reply.text();
    let stats = node.stats("").await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("{name} {labels:?} not in\n{text}"));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{other:?}"),
        }
    };
    let t = topic(&stats, "m");
    assert_eq!(
        value("nsqd_topic_messages_total", &[("topic", "m")]),
        t.message_count as f64
    );
    assert_eq!(
        value("nsqd_topic_message_bytes_total", &[("topic", "m")]),
        t.message_bytes as f64
    );
    assert_eq!(value("nsqd_topic_depth", &[("topic", "m")]), t.depth as f64);
    for name in ["c", "idle"] {
        let c = channel(&stats, "m", name);
        let labels = [("topic", "m"), ("channel", name)];
        assert_eq!(value("nsqd_channel_depth", &labels), c.depth as f64);
        assert_eq!(
            value("nsqd_channel_backend_depth", &labels),
            c.backend_depth as f64
        );
        assert_eq!(
            value("nsqd_channel_in_flight", &labels),
            c.in_flight_count as f64
        );
        assert_eq!(
            value("nsqd_channel_deferred", &labels),
            c.deferred_count as f64
        );
        assert_eq!(
            value("nsqd_channel_messages_total", &labels),
            c.message_count as f64
        );
        assert_eq!(
            value("nsqd_channel_requeues_total", &labels),
            c.requeue_count as f64
        );
        assert_eq!(
            value("nsqd_channel_timeouts_total", &labels),
            c.timeout_count as f64
        );
        assert_eq!(
            value("nsqd_channel_clients", &labels),
            c.client_count as f64
        );
        assert_eq!(
            value("nsqd_channel_paused", &labels),
            f64::from(u8::from(c.paused))
        );
    }
    let c = channel(&stats, "m", "c");
    assert_eq!((c.in_flight_count, c.depth), (2, 2));
    assert_eq!(
        value(
            "nsqd_channel_e2e_processing_latency_samples",
            &[("topic", "m"), ("channel", "c")]
        ),
        1.0
    );
    let p99 = value(
        "nsqd_channel_e2e_processing_latency_seconds",
        &[("topic", "m"), ("channel", "c"), ("quantile", "0.99")],
    );
    let from_stats = c.e2e_processing_latency.percentiles.as_ref().unwrap()[0].value / 1e9;
    assert!((p99 - from_stats).abs() < 1e-9, "{p99} vs {from_stats}");
    assert_eq!(value("nsqd_healthy", &[]), 1.0);
}

/// 1,000 garbage requests and a TCP V2 handshake on the HTTP port: each gets an HTTP answer or a
/// close, and the server keeps serving.
#[tokio::test]
async fn garbage_requests_do_not_hurt_the_http_server() {
    let node = Node::start(&["--max-msg-size=1024", "--max-body-size=4096"]);
    let http = node.http;
    let handle = tokio::task::spawn_blocking(move || {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let paths = [
            "/pub",
            "/mpub",
            "/stats",
            "/topic/create",
            "/channel/pause",
            "/config/log_level",
            "/config/%zz",
            "/%00",
            "/ping/../info",
            "//",
            "/topic//create",
            "/metrics",
        ];
        let methods = [
            "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "BREW", "G\x01T",
        ];
        let queries = [
            "",
            "?topic=",
            "?topic=%",
            "?topic=a;b",
            "?topic=t&binary=yes",
            "?topic=t&defer=-9",
            "?format=json&topic=t&channel=%ff",
            "?topic=t#frag",
            "?topic=\u{7f}",
            "?a=b=c&&&",
        ];
        let mut answered = 0;
        for n in 0..1000 {
            let method = methods[next() as usize % methods.len()];
            let path = paths[next() as usize % paths.len()];
            let query = queries[next() as usize % queries.len()];
            let body_len = (next() % 6000) as usize;
            let body: Vec<u8> = (0..body_len).map(|_| next() as u8).collect();
            let mut request =
                format!("{method} {path}{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
            match n % 4 {
                0 => request.push_str(&format!("Content-Length: {body_len}\r\n\r\n")),
                1 => request.push_str(&format!("Content-Length: {}\r\n\r\n", body_len / 2)),
                2 => request.push_str("Transfer-Encoding: chunked\r\n\r\n"),
                _ => request.push_str("Content-Length: banana\r\n\r\n"),
            }
            let mut stream = std::net::TcpStream::connect(http).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let _ = stream.write_all(request.as_bytes());
            if n % 4 == 2 {
                let _ = stream.write_all(format!("{body_len:x}\r\n").as_bytes());
                let _ = stream.write_all(&body);
                let _ = stream.write_all(b"\r\n0\r\n\r\n");
            } else {
                let _ = stream.write_all(&body);
            }
            let mut reply = Vec::new();
            let _ = stream.read_to_end(&mut reply);
            if reply.starts_with(b"HTTP/1.1 ") {
                answered += 1;
            }
        }
        answered
    });
    let answered = handle.await.unwrap();
    assert!(
        answered >= 990,
        "only {answered} of 1000 garbage requests got an HTTP answer"
    );

    // The TCP V2 protocol spoken to the HTTP port gets an HTTP error reply.
    let mut stream = tokio::net::TcpStream::connect(node.http).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.write_all(b"  V2SUB t c\nRDY 1\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");

    // Still serving.
    let ping = node.get("/ping").await;
    assert_eq!((ping.status, ping.text().as_str()), (200, "OK"));
    assert_eq!(node.get("/stats?format=json").await.status, 200);
}
