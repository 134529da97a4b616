//! Starts the real `nsqlookupd` binary and talks to it like nsqd and HTTP clients do.

use serde_json::Value;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single wait in these tests may take before the test fails.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_nsqlookupd")
}

/// `shared/fixtures/lookupd/<name>` (shared/ sits beside the project checkout).
pub(crate) fn fixture(name: &str) -> Value {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read fixture {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/lookupd")
}

/// Polls `condition` until it holds or [`TIMEOUT`] passes.
pub(crate) fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running nsqlookupd, killed when dropped.
pub(crate) struct Lookupd {
    child: Child,
    pub(crate) tcp: SocketAddr,
    pub(crate) http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Lookupd {
    /// Starts on loopback port 0 with `--broadcast-address=127.0.0.1` and the extra flags.
    pub(crate) fn start(extra: &[&str]) -> Self {
        let mut args = vec![
            "--tcp-address=127.0.0.1:0",
            "--http-address=127.0.0.1:0",
            "--broadcast-address=127.0.0.1",
        ];
        args.extend_from_slice(extra);
        Self::start_raw(&args)
    }

    /// Starts with exactly these arguments and waits for both `listening on` lines.
    pub(crate) fn start_raw(args: &[&str]) -> Self {
        let mut child = Command::new(binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to start nsqlookupd");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line.clone());
                    let _ = lines_tx.send(line);
                }
            });
        }
        let mut lookupd = Self {
            child,
            tcp: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        let (mut tcp, mut http) = (None, None);
        let deadline = Instant::now() + TIMEOUT;
        while tcp.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines_rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "nsqlookupd did not log its listeners; log so far:\n{}",
                    lookupd.log().join("\n")
                )
            });
            tcp = tcp.or_else(|| listening_address(&line, "TCP: listening on "));
            http = http.or_else(|| listening_address(&line, "HTTP: listening on "));
        }
        lookupd.tcp = tcp.unwrap();
        lookupd.http = http.unwrap();
        lookupd
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything logged so far.
    pub(crate) fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends a signal by name (`TERM`, `INT`) with kill(1).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until("nsqlookupd to exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }

    pub(crate) fn get(&self, target: &str) -> HttpResponse {
        http_request(self.http, "GET", target)
    }

    pub(crate) fn post(&self, target: &str) -> HttpResponse {
        http_request(self.http, "POST", target)
    }

    pub(crate) fn get_json(&self, target: &str) -> Value {
        let response = self.get(target);
        assert_eq!(response.status, 200, "GET {target}: {}", response.text());
        response.json()
    }

    /// `/lookup?topic=<topic>` producers' remote addresses (sorted); `None` on 404.
    pub(crate) fn lookup_producers(&self, topic: &str) -> Option<Vec<String>> {
        let response = self.get(&format!("/lookup?topic={topic}"));
        if response.status == 404 {
            return None;
        }
        assert_eq!(response.status, 200);
        Some(addresses(&response.json()["producers"]))
    }

    /// The `/nodes` producers' remote addresses (sorted).
    pub(crate) fn node_addresses(&self) -> Vec<String> {
        addresses(&self.get_json("/nodes")["producers"])
    }

    /// `/ping` answers `OK`.
    pub(crate) fn assert_alive(&self) {
        let response = self.get("/ping");
        assert_eq!((response.status, response.text().as_str()), (200, "OK"));
    }
}

impl Drop for Lookupd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn listening_address(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn addresses(producers: &Value) -> Vec<String> {
    let mut list: Vec<String> = producers
        .as_array()
        .unwrap()
        .iter()
        .map(|producer| producer["remote_address"].as_str().unwrap().to_owned())
        .collect();
    list.sort();
    list
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub(crate) fn http_request(addr: SocketAddr, method: &str, target: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let length = if method == "POST" || method == "PUT" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{length}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (key, value) = line.split_once(':').unwrap();
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(key, value)| {
        key.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// A raw lookupd TCP connection (what nsqd opens).
pub(crate) struct Peer {
    pub(crate) stream: TcpStream,
}

impl Peer {
    /// Connects without sending anything.
    pub(crate) fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream }
    }

    /// Connects and sends the `"  V1"` magic.
    pub(crate) fn connect_v1(addr: SocketAddr) -> Self {
        let mut peer = Self::connect(addr);
        peer.send(b"  V1");
        peer
    }

    /// Connects, IDENTIFYs as an nsqd with these broadcast ports (hostname `vm`) and checks the
    /// answer.
    pub(crate) fn nsqd(lookupd: &Lookupd, tcp_port: u16, http_port: u16) -> Self {
        let mut peer = Self::connect_v1(lookupd.tcp);
        let reply = peer.identify(&identify_body(tcp_port, http_port));
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(reply["tcp_port"], lookupd.tcp.port());
        assert_eq!(reply["http_port"], lookupd.http.port());
        peer
    }

    pub(crate) fn local_addr(&self) -> String {
        self.stream.local_addr().unwrap().to_string()
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one `[i32 size][payload]` response.
    pub(crate) fn read_response(&mut self) -> Vec<u8> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).unwrap();
        let mut payload = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut payload).unwrap();
        payload
    }

    /// Sends `IDENTIFY\n[size][json]` and returns the answer's payload.
    pub(crate) fn identify(&mut self, json: &str) -> Vec<u8> {
        self.send(&identify_command(json));
        self.read_response()
    }

    /// Sends `line\n` and returns the answer's payload as text.
    pub(crate) fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        String::from_utf8(self.read_response()).unwrap()
    }

    /// The server closes the connection (EOF or reset) without sending anything more.
    pub(crate) fn expect_closed(&mut self) {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("unexpected data {byte:?}"),
            Err(err) => assert!(
                matches!(
                    err.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ),
                "connection not closed: {err}"
            ),
        }
    }

    /// The connection is still usable: PING answers OK.
    pub(crate) fn assert_open(&mut self) {
        assert_eq!(self.command("PING"), "OK");
    }
}

/// The IDENTIFY body nsqd 1.3.0 sends, with hostname `vm`.
pub(crate) fn identify_body(tcp_port: u16, http_port: u16) -> String {
    format!(
        r#"{{"broadcast_address":"127.0.0.1","hostname":"vm","http_port":{http_port},"tcp_port":{tcp_port},"version":"1.3.0"}}"#
    )
}

pub(crate) fn identify_command(json: &str) -> Vec<u8> {
    let mut raw = b"IDENTIFY\n".to_vec();
    raw.extend_from_slice(&(json.len() as i32).to_be_bytes());
    raw.extend_from_slice(json.as_bytes());
    raw
}

/// Splits a lookupd response stream into payloads.
pub(crate) fn split_responses(mut raw: &[u8]) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    while raw.len() >= 4 {
        let size = i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        payloads.push(raw[4..4 + size].to_vec());
        raw = &raw[4 + size..];
    }
    assert!(raw.is_empty(), "trailing bytes {raw:?}");
    payloads
}

pub(crate) fn os_hostname() -> String {
    hostname::get().unwrap().to_string_lossy().into_owned()
}
