//! Starts real nsqlookupd, nsqd and nsqadmin processes on 127.0.0.1 port 0 and reads their bound
//! addresses from the `listening on` lines they log. Processes are killed (by PID) on drop.
//!
//! nsqd and nsqlookupd come from `<workspace>/target/debug/` (`cargo build -p nsqd -p nsqlookupd`);
//! nsqadmin is this package's own binary.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// One running daemon.
pub(crate) struct Proc {
    pub name: String,
    child: Child,
    logs: Arc<Mutex<String>>,
    pub http: String,
    pub tcp: Option<String>,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn logs(&self) -> String {
        self.logs
            .lock()
            .map(|logs| logs.clone())
            .unwrap_or_default()
    }

    /// Kills the process now (SIGKILL) and waits for it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.logs());
        }
    }
}

/// `<workspace>/target/debug/<name>` (or under `CARGO_TARGET_DIR`), or a clear failure.
pub(crate) fn workspace_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the daemons first with `cargo build -p nsqd -p nsqlookupd` (or `cargo build --bins`)",
        path.display()
    );
    path
}

pub(crate) fn nsqadmin_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nsqadmin"))
}

/// Starts `bin` with `args`, waiting until it logs its HTTP (and, if `tcp`, TCP) address.
pub(crate) fn spawn(name: &str, bin: PathBuf, args: &[String], tcp: bool) -> Proc {
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("failed to start {}: {err}", bin.display()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let logs = Arc::new(Mutex::new(String::new()));
    let (found, addresses) = mpsc::channel::<(bool, String)>();
    {
        let logs = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for (is_tcp, marker) in
                    [(true, "TCP: listening on "), (false, "HTTP: listening on ")]
                {
                    if let Some(at) = line.find(marker) {
                        let addr = line[at + marker.len()..].trim().to_owned();
                        let _ = found.send((is_tcp, addr));
                    }
                }
                if let Ok(mut logs) = logs.lock() {
                    logs.push_str(&line);
                    logs.push('\n');
                }
            }
        });
    }
    let mut proc = Proc {
        name: name.to_owned(),
        child,
        logs,
        http: String::new(),
        tcp: None,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while proc.http.is_empty() || (tcp && proc.tcp.is_none()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match addresses.recv_timeout(left) {
            Ok((true, addr)) => proc.tcp = Some(addr),
            Ok((false, addr)) => proc.http = addr,
            Err(_) => panic!(
                "{name} did not log its listening addresses in time; log:\n{}",
                proc.logs()
            ),
        }
    }
    proc
}

/// nsqlookupd + two nsqd registered with it, and data directories that live as long as this.
pub(crate) struct Cluster {
    pub lookupd: Proc,
    pub nsqd: Vec<Proc>,
    _dirs: Vec<TempDir>,
}

impl Cluster {
    pub(crate) async fn start() -> Cluster {
        let lookupd = spawn(
            "nsqlookupd",
            workspace_bin("nsqlookupd"),
            &[
                "--tcp-address=127.0.0.1:0".to_owned(),
                "--http-address=127.0.0.1:0".to_owned(),
                "--broadcast-address=127.0.0.1".to_owned(),
            ],
            true,
        );
        let lookupd_tcp = lookupd.tcp.clone().expect("lookupd tcp");
        let mut dirs = Vec::new();
        let mut nsqd = Vec::new();
        for name in ["nsqd-a", "nsqd-b"] {
            let dir = tempfile::tempdir().expect("temp dir");
            nsqd.push(spawn(
                name,
                workspace_bin("nsqd"),
                &[
                    "--tcp-address=127.0.0.1:0".to_owned(),
                    "--http-address=127.0.0.1:0".to_owned(),
                    "--broadcast-address=127.0.0.1".to_owned(),
                    format!("--data-path={}", dir.path().display()),
                    format!("--lookupd-tcp-address={lookupd_tcp}"),
                ],
                true,
            ));
            dirs.push(dir);
        }
        let cluster = Cluster {
            lookupd,
            nsqd,
            _dirs: dirs,
        };
        let lookupd_http = cluster.lookupd.http.clone();
        wait_until("both nsqd registered with lookupd", || async {
            let nodes = get_json(&format!("http://{lookupd_http}/nodes")).await;
            nodes["producers"].as_array().map_or(0, Vec::len) == 2
        })
        .await;
        cluster
    }

    pub(crate) fn nsqd_http(&self, index: usize) -> &str {
        &self.nsqd[index].http
    }

    pub(crate) fn nsqd_tcp(&self, index: usize) -> &str {
        self.nsqd[index].tcp.as_deref().expect("nsqd tcp")
    }

    /// An nsqadmin over this cluster's lookupd, with extra flags.
    pub(crate) fn admin(&self, extra: &[&str]) -> Proc {
        let mut args = vec![
            "--http-address=127.0.0.1:0".to_owned(),
            format!("--lookupd-http-address={}", self.lookupd.http),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        spawn("nsqadmin", nsqadmin_bin(), &args, false)
    }

    /// An nsqadmin talking to the nsqds directly.
    pub(crate) fn direct_admin(&self, extra: &[&str]) -> Proc {
        let mut args = vec!["--http-address=127.0.0.1:0".to_owned()];
        for node in &self.nsqd {
            args.push(format!("--nsqd-http-address={}", node.http));
        }
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        spawn("nsqadmin-direct", nsqadmin_bin(), &args, false)
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// An HTTP exchange's status, headers and body.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }
}

pub(crate) async fn request(
    method: reqwest::Method,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = client()
        .request(method, url)
        .header("Accept-Encoding", "identity");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if let Some(body) = body {
        builder = builder.body(body.to_owned());
    }
    let response = builder
        .send()
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"));
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap_or_default(),
    }
}

pub(crate) async fn get(url: &str) -> Reply {
    request(reqwest::Method::GET, url, None, &[]).await
}

pub(crate) async fn get_json(url: &str) -> serde_json::Value {
    get(url).await.json()
}

/// `POST` to an nsqd/lookupd HTTP endpoint, expecting 200.
pub(crate) async fn post_ok(url: &str, body: &str) {
    let reply = request(reqwest::Method::POST, url, Some(body), &[]).await;
    assert_eq!(reply.status, 200, "POST {url}: {}", reply.body);
}

/// Polls `condition` every 100 ms for up to 10 s.
pub(crate) async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
