//! Starts the real nsqd/nsqlookupd binaries on loopback port 0 and runs the tools under test.
//!
//! Daemons are taken from the directory the tools were built into (`target/debug`); build them
//! first with `cargo build -p nsqd -p nsqlookupd`. Every process is stopped by PID when its
//! handle is dropped (SIGTERM, then SIGKILL after a deadline).

#![allow(dead_code, unreachable_pub)]

use nsq_protocol::api::{ChannelStats, Stats, TopicStats};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any awaited condition may take before a test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Where the daemons and the tools were built.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_to_nsq"))
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

fn daemon_binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: build the daemons first with `cargo build -p nsqd -p nsqlookupd`",
        path.display()
    );
    path
}

/// A running nsqd or nsqlookupd.
pub struct Daemon {
    child: Child,
    /// `127.0.0.1:port` of its TCP listener.
    pub tcp: String,
    /// `127.0.0.1:port` of its HTTP listener.
    pub http: String,
    log: Arc<Mutex<String>>,
    _data: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts nsqlookupd.
    pub fn nsqlookupd() -> Self {
        Self::start(
            "nsqlookupd",
            &[
                "--tcp-address=127.0.0.1:0".to_owned(),
                "--http-address=127.0.0.1:0".to_owned(),
                "--broadcast-address=127.0.0.1".to_owned(),
            ],
            None,
        )
    }

    /// Starts nsqd, registering with `lookupd` if given.
    pub fn nsqd(lookupd: Option<&Daemon>) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut args = vec![
            "--tcp-address=127.0.0.1:0".to_owned(),
            "--http-address=127.0.0.1:0".to_owned(),
            "--broadcast-address=127.0.0.1".to_owned(),
            format!("--data-path={}", data.path().display()),
        ];
        if let Some(lookupd) = lookupd {
            args.push(format!("--lookupd-tcp-address={}", lookupd.tcp));
        }
        Self::start("nsqd", &args, Some(data))
    }

    fn start(name: &str, args: &[String], data: Option<tempfile::TempDir>) -> Self {
        let mut child = Command::new(daemon_binary(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (lines, addresses) = mpsc::channel();
        let thread_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                thread_log.lock().unwrap().push_str(&line);
                thread_log.lock().unwrap().push('\n');
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        let (mut tcp, mut http) = (None, None);
        while tcp.is_none() || http.is_none() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = addresses.recv_timeout(wait) else {
                let _ = child.kill();
                panic!(
                    "{name} did not report its addresses; its log:\n{}",
                    log.lock().unwrap()
                );
            };
            if let Some(address) = listening_address(&line, "TCP: listening on ") {
                tcp = Some(address);
            }
            if let Some(address) = listening_address(&line, "HTTP: listening on ") {
                http = Some(address);
            }
        }
        Self {
            child,
            tcp: tcp.unwrap(),
            http: http.unwrap(),
            log,
            _data: data,
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn listening_address(line: &str, marker: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next().map(str::to_owned)
}

/// SIGTERM, wait, then SIGKILL.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `SIG<name>` to a child by PID.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {} failed", child.id());
}

/// A tool under test, with its stdout read line by line and its stderr collected.
pub struct Tool {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Tool {
    /// Starts `name` (one of this crate's binaries) with `args`; stdin is closed.
    pub fn start(name: &str, args: &[&str]) -> Self {
        Self::spawn(name, args, Stdio::null())
    }

    fn spawn(name: &str, args: &[&str], stdin: Stdio) -> Self {
        let mut child = Command::new(bin_dir().join(name))
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let thread_stderr = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                thread_stderr
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            lines,
            stderr,
        }
    }

    /// The next stdout line (panics after [`TIMEOUT`] or at end of output).
    pub fn line(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(error) => panic!(
                "no stdout line ({error:?}); stderr so far:\n{}",
                self.stderr()
            ),
        }
    }

    /// Waits for the process to exit; panics after [`TIMEOUT`].
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("tool did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for exit and returns every remaining stdout line.
    pub fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        let status = self.wait();
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            rest.push(line);
        }
        (status, rest)
    }

    /// stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Runs `name` with `input` on stdin to completion; returns status, stdout lines and stderr.
pub fn run_with_input(
    name: &str,
    args: &[&str],
    input: &[u8],
) -> (ExitStatus, Vec<String>, String) {
    let mut tool = Tool::spawn(name, args, Stdio::piped());
    let mut stdin = tool.child.stdin.take().expect("stdin");
    let input = input.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (status, lines) = tool.finish();
    let stderr = tool.stderr();
    (status, lines, stderr)
}

/// Polls `check` every 20 ms until it returns `Some`; panics with `what` after [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// nsqd's `/stats?format=json`.
pub async fn stats(nsqd: &Daemon) -> Stats {
    reqwest::get(format!("http://{}/stats?format=json", nsqd.http))
        .await
        .expect("GET /stats")
        .json()
        .await
        .expect("/stats JSON")
}

/// One topic from `/stats`, if nsqd has it.
pub async fn topic_stats(nsqd: &Daemon, topic: &str) -> Option<TopicStats> {
    stats(nsqd)
        .await
        .topics
        .unwrap_or_default()
        .into_iter()
        .find(|stats| stats.topic_name == topic)
}

/// One channel from `/stats`, if nsqd has it.
pub async fn channel_stats(nsqd: &Daemon, topic: &str, channel: &str) -> Option<ChannelStats> {
    topic_stats(nsqd, topic)
        .await?
        .channels
        .into_iter()
        .find(|stats| stats.channel_name == channel)
}

/// Waits until lookupd lists `count` producers for `topic`.
pub async fn wait_for_producers(lookupd: &Daemon, topic: &str, count: usize) {
    let url = format!("http://{}/lookup?topic={topic}", lookupd.http);
    eventually(
        &format!("{count} producer(s) of {topic} in lookupd"),
        || {
            let url = url.clone();
            async move {
                let response = reqwest::get(&url).await.ok()?;
                let lookup: nsq_protocol::lookup::LookupResponse = response.json().await.ok()?;
                (lookup.producers.len() == count).then_some(())
            }
        },
    )
    .await;
}
