//! Black-box test harness for the nsq-rs binaries (used by the `suite` test binary).
//!
//! * [`NsqdProcess`]: starts the real `nsqd` with `--tcp-address=127.0.0.1:0
//!   --http-address=127.0.0.1:0` in a temporary data directory, reads the bound addresses back from
//!   its `listening on` log lines, keeps draining (and recording) its stderr, and stops it by PID
//!   (SIGTERM, then SIGKILL after a deadline; SIGKILL on drop).
//! * [`LookupdProcess`]: the same for `nsqlookupd` (port 0 or given ports, `--broadcast-address=127.0.0.1`).
//! * [`RawConn`]: a V2 TCP connection that writes raw bytes and reads frames together with their
//!   exact bytes, with assertions for the usual outcomes (`OK`, fatal error, non-fatal error,
//!   close, silence). [`cmd`] builds command bytes by hand, independently of the code under test.
//! * [`wait_until`] / [`wait_for`]: poll a condition with a deadline instead of sleeping.
//! * HTTP: [`NsqdProcess::get`], [`NsqdProcess::stats`], [`NsqdProcess::wait_stats`], and lookups
//!   into [`Stats`] with [`topic_stats`] / [`channel_stats`].
//! * [`fixture`]: upstream's captured TCP exchanges from `shared/fixtures/tcp`.
#![warn(missing_docs)]

use bytes::BytesMut;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nsq_protocol::api::{ChannelStats, Stats, TopicStats};
use nsq_protocol::{Frame, FrameCodec, Message};
use std::collections::VecDeque;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

pub use nsq_protocol as protocol;

/// How long a process may take to print both `listening on` lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`NsqdProcess::stop`] waits after SIGTERM before sending SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of the [`RawConn`] assertions that wait for something to arrive.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

// ---- binaries -----------------------------------------------------------------------------------

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The shared contract folder (`shared/` beside the repository): `spec/` and `fixtures/`.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NSQ_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    workspace_root()
        .parent()
        .map(|parent| parent.join("shared"))
        .unwrap_or_else(|| PathBuf::from("shared"))
}

/// Path of a workspace binary (`nsqd`, `nsqlookupd`, …).
///
/// `<NAME>_BIN` (e.g. `NSQD_BIN`) overrides it; otherwise the binary next to the test executable's
/// profile directory (`target/<profile>/`), else `<workspace>/target/debug/`. Panics with a hint
/// when the binary has not been built, because `cargo test` does not build other crates' binaries.
pub fn bin_path(name: &str) -> PathBuf {
    let env_name = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&env_name) {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "{env_name}={} does not exist",
            path.display()
        );
        return path;
    }
    // The test executable is target/<profile>/deps/suite-<hash>.
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(name)))
        .filter(|path| path.exists());
    let path = beside_exe.unwrap_or_else(|| workspace_root().join("target/debug").join(name));
    assert!(
        path.exists(),
        "binary `{name}` not found at {}: run `cargo build --bins` (or scripts/test.sh) before \
         `cargo test`, or set {env_name}",
        path.display()
    );
    path
}

// ---- nsqd process -------------------------------------------------------------------------------

/// Why a process did not get to the point of listening.
#[derive(Debug)]
pub struct StartFailure {
    /// What went wrong.
    pub reason: String,
    /// Exit status, if the process exited (it is killed on a start timeout).
    pub status: Option<ExitStatus>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<String>,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (status {:?}); stderr:\n{}",
            self.reason,
            self.status,
            self.stderr.join("\n")
        )
    }
}

/// A running `nsqd`. Dropping it kills the process (SIGKILL) and removes its temporary data dir.
#[derive(Debug)]
pub struct NsqdProcess {
    /// The TCP address it listens on (from its `TCP: listening on` line).
    pub tcp_addr: SocketAddr,
    /// The HTTP address it listens on (from its `HTTP: listening on` line).
    pub http_addr: SocketAddr,
    /// The process (signals, exit status, stderr); its methods are callable on `NsqdProcess`.
    /// Declared before `temp_dir`: fields drop in order, so the process is killed before its data
    /// dir is removed.
    pub process: Daemon,
    /// `--data-path`.
    pub data_dir: PathBuf,
    temp_dir: Option<tempfile::TempDir>,
}

impl NsqdProcess {
    /// Starts nsqd on port 0 in a fresh temporary data dir, with `extra_args` after the defaults
    /// (later flags win, so `extra_args` may override them). Panics if it does not start.
    pub fn start(extra_args: &[&str]) -> Self {
        Self::try_start(None, extra_args).unwrap_or_else(|failure| panic!("nsqd: {failure}"))
    }

    /// [`NsqdProcess::start`] with a given `--data-path` (kept after the process ends).
    pub fn start_in(data_dir: &Path, extra_args: &[&str]) -> Self {
        Self::try_start(Some(data_dir), extra_args)
            .unwrap_or_else(|failure| panic!("nsqd: {failure}"))
    }

    /// Starts nsqd and reports a failure to start instead of panicking.
    pub fn try_start(data_dir: Option<&Path>, extra_args: &[&str]) -> Result<Self, StartFailure> {
        let (temp_dir, data_dir) = match data_dir {
            Some(dir) => (None, dir.to_path_buf()),
            None => {
                let temp_dir = tempfile::Builder::new()
                    .prefix("nsqd-test-")
                    .tempdir()
                    .map_err(|error| StartFailure {
                        reason: format!("cannot create a temp dir: {error}"),
                        status: None,
                        stderr: Vec::new(),
                    })?;
                let path = temp_dir.path().to_path_buf();
                (Some(temp_dir), path)
            }
        };
        let mut args = vec![
            "--tcp-address=127.0.0.1:0".to_owned(),
            "--http-address=127.0.0.1:0".to_owned(),
            format!("--data-path={}", data_dir.display()),
        ];
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        let mut process = Self::start_with_exact_args(&args, &data_dir)?;
        process.temp_dir = temp_dir;
        Ok(process)
    }

    /// Starts nsqd with exactly `args` (no defaults added: they must make it listen on port 0 and
    /// use `data_dir`, which is only recorded here, not created or removed).
    pub fn start_with_exact_args(args: &[String], data_dir: &Path) -> Result<Self, StartFailure> {
        let started = start_listening_process(&bin_path("nsqd"), args, &["TCP", "HTTP"])?;
        Ok(Self {
            tcp_addr: started.addresses[0],
            http_addr: started.addresses[1],
            data_dir: data_dir.to_path_buf(),
            temp_dir: None,
            process: Daemon::new("nsqd", started.child, started.stderr),
        })
    }

    /// Keeps the data dir on disk after this process is dropped and returns its path.
    pub fn keep_data_dir(&mut self) -> PathBuf {
        if let Some(dir) = self.temp_dir.take() {
            return dir.keep();
        }
        self.data_dir.clone()
    }

    /// `http://<http_addr><path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.http_addr, path_and_query)
    }

    /// HTTP GET; returns the status and the body.
    pub async fn get(&self, path_and_query: &str) -> (u16, String) {
        let response = http_client()
            .get(self.url(path_and_query))
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path_and_query}: {error}"));
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .unwrap_or_else(|error| panic!("GET {path_and_query} body: {error}"));
        (status, body)
    }

    /// HTTP POST with an empty body; returns the status and the body.
    pub async fn post(&self, path_and_query: &str) -> (u16, String) {
        http_request(reqwest::Method::POST, &self.url(path_and_query)).await
    }

    /// HTTP GET of a JSON document (panics unless 200 with valid JSON).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path_and_query: &str) -> T {
        let (status, body) = self.get(path_and_query).await;
        assert_eq!(status, 200, "GET {path_and_query}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("GET {path_and_query}: {error} in {body}"))
    }

    /// `GET /stats?format=json`.
    pub async fn stats(&self) -> Stats {
        self.get_json("/stats?format=json").await
    }

    /// Polls `/stats` until `condition` holds and returns those stats; panics with the last stats
    /// after `timeout`.
    pub async fn wait_stats(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&Stats) -> bool,
    ) -> Stats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats().await;
            if condition(&stats) {
                return stats;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}; last /stats: {stats:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `/stats` until the channel exists and `condition` holds for it.
    pub async fn wait_channel(
        &self,
        topic: &str,
        channel: &str,
        what: &str,
        mut condition: impl FnMut(&ChannelStats) -> bool,
    ) -> ChannelStats {
        let stats = self
            .wait_stats(
                READ_TIMEOUT,
                &format!("{topic}/{channel}: {what}"),
                |stats| channel_stats(stats, topic, channel).is_some_and(&mut condition),
            )
            .await;
        channel_stats(&stats, topic, channel)
            .cloned()
            .expect("channel present")
    }

    /// Opens a V2 connection (magic sent).
    pub async fn connect(&self) -> RawConn {
        RawConn::connect(self.tcp_addr).await
    }
}

impl std::ops::Deref for NsqdProcess {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.process
    }
}

impl std::ops::DerefMut for NsqdProcess {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.process
    }
}

// ---- a daemon process ---------------------------------------------------------------------------

/// A started daemon: signals, exit status and stderr. Dropping it kills the process (SIGKILL).
#[derive(Debug)]
pub struct Daemon {
    /// Process ID.
    pub pid: u32,
    name: &'static str,
    child: Child,
    exit_status: Option<ExitStatus>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn new(name: &'static str, child: Child, stderr: Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            pid: child.id(),
            name,
            child,
            exit_status: None,
            stderr,
        }
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        lock(&self.stderr).clone()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: Signal) {
        if self.exit_status.is_none() {
            let _ = kill(pid_of(self.pid), signal);
        }
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit_status.is_none() {
            self.exit_status = wait_child(&mut self.child, timeout);
        }
        self.exit_status
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.wait_exit(Duration::ZERO).is_none()
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`STOP_TIMEOUT`]); returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(Signal::SIGTERM)
    }

    /// Like [`Daemon::stop`] with another signal (e.g. SIGINT).
    pub fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        self.signal(signal);
        if let Some(status) = self.wait_exit(STOP_TIMEOUT) {
            return status;
        }
        self.kill()
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exit_status {
            return status;
        }
        let _ = kill(pid_of(self.pid), Signal::SIGKILL);
        let status = self
            .child
            .wait()
            .unwrap_or_else(|error| panic!("wait for {} after SIGKILL: {error}", self.name));
        self.exit_status = Some(status);
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exit_status.is_none() {
            let _ = kill(pid_of(self.pid), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

// ---- nsqlookupd process -------------------------------------------------------------------------

/// A running `nsqlookupd`. Dropping it kills the process (SIGKILL).
#[derive(Debug)]
pub struct LookupdProcess {
    /// The TCP address it listens on (from its `TCP: listening on` line).
    pub tcp_addr: SocketAddr,
    /// The HTTP address it listens on (from its `HTTP: listening on` line).
    pub http_addr: SocketAddr,
    /// The process (signals, exit status, stderr); its methods are callable on `LookupdProcess`.
    pub process: Daemon,
}

impl LookupdProcess {
    /// Starts nsqlookupd on port 0 (TCP and HTTP) with `--broadcast-address=127.0.0.1` and
    /// `extra_args` after the defaults (nsqlookupd rejects a repeated flag, so `extra_args` must
    /// not repeat those three). Panics if it does not start.
    pub fn start(extra_args: &[&str]) -> Self {
        Self::try_start(extra_args).unwrap_or_else(|failure| panic!("nsqlookupd: {failure}"))
    }

    /// Starts nsqlookupd like [`LookupdProcess::start`] and reports a failure to start instead of
    /// panicking.
    pub fn try_start(extra_args: &[&str]) -> Result<Self, StartFailure> {
        let mut args = vec![
            "--tcp-address=127.0.0.1:0".to_owned(),
            "--http-address=127.0.0.1:0".to_owned(),
            "--broadcast-address=127.0.0.1".to_owned(),
        ];
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        Self::start_with_exact_args(&args)
    }

    /// Starts nsqlookupd on the given TCP and HTTP addresses (e.g. those of a stopped instance),
    /// retrying for up to `retry_for` while the ports are not yet reusable. Panics if it does not
    /// start by then.
    pub fn start_on(tcp_addr: SocketAddr, http_addr: SocketAddr, retry_for: Duration) -> Self {
        let args = [
            format!("--tcp-address={tcp_addr}"),
            format!("--http-address={http_addr}"),
            "--broadcast-address=127.0.0.1".to_owned(),
        ];
        let deadline = Instant::now() + retry_for;
        loop {
            match Self::start_with_exact_args(&args) {
                Ok(process) => return process,
                Err(failure) if Instant::now() >= deadline => {
                    panic!("nsqlookupd on {tcp_addr} / {http_addr}: {failure}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Starts nsqlookupd with exactly `args` (no defaults added).
    pub fn start_with_exact_args(args: &[String]) -> Result<Self, StartFailure> {
        let started = start_listening_process(&bin_path("nsqlookupd"), args, &["TCP", "HTTP"])?;
        Ok(Self {
            tcp_addr: started.addresses[0],
            http_addr: started.addresses[1],
            process: Daemon::new("nsqlookupd", started.child, started.stderr),
        })
    }

    /// `http://<http_addr><path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.http_addr, path_and_query)
    }

    /// HTTP GET; returns the status and the body.
    pub async fn get(&self, path_and_query: &str) -> (u16, String) {
        http_request(reqwest::Method::GET, &self.url(path_and_query)).await
    }

    /// HTTP POST with an empty body; returns the status and the body.
    pub async fn post(&self, path_and_query: &str) -> (u16, String) {
        http_request(reqwest::Method::POST, &self.url(path_and_query)).await
    }

    /// HTTP GET of a JSON document (panics unless 200 with valid JSON).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path_and_query: &str) -> T {
        let (status, body) = self.get(path_and_query).await;
        assert_eq!(status, 200, "GET {path_and_query}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("GET {path_and_query}: {error} in {body}"))
    }
}

impl std::ops::Deref for LookupdProcess {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.process
    }
}

impl std::ops::DerefMut for LookupdProcess {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.process
    }
}

/// The venv Python that `tests/peers/install.sh` creates (pynsq, gnsq), or a panic saying how to
/// get it. With `CI` set a missing venv is a failure, never a skip.
pub fn peer_python() -> PathBuf {
    require_peer(
        workspace_root().join("tests/peers/.venv/bin/python"),
        "pynsq and gnsq",
    )
}

/// `path`, if the peer install that provides it exists; otherwise a panic saying how to get it.
pub fn require_peer(path: PathBuf, what: &str) -> PathBuf {
    if !path.exists() {
        let ci = if std::env::var_os("CI").is_some() {
            " (CI is set: this is a failure, not a skip)"
        } else {
            ""
        };
        panic!(
            "{} is missing{ci}: run scripts/test.sh, or `bash tests/peers/install.sh`, to install \
             {what}",
            path.display()
        );
    }
    path
}

/// Runs a peer script to completion (at most `timeout`), prints its stdout and panics unless it
/// exited 0; `context` is appended to the failure message (e.g. nsqd's log).
pub async fn run_peer(
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
    context: impl FnOnce() -> String,
) -> String {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let (status, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_to_exit(&program, &args, timeout))
            .await
            .expect("peer runner thread");
    println!("{stdout}");
    let status = status.unwrap_or_else(|| panic!("`{shown}` hung; stderr:\n{stderr}"));
    assert!(
        status.success(),
        "`{shown}` failed ({status:?})\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        context()
    );
    stdout
}

/// An HTTP request with an empty body to `url`; returns the status and the body (panics on a
/// transport error).
pub async fn http_request(method: reqwest::Method, url: &str) -> (u16, String) {
    let response = http_client()
        .request(method.clone(), url)
        .send()
        .await
        .unwrap_or_else(|error| panic!("{method} {url}: {error}"));
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .unwrap_or_else(|error| panic!("{method} {url} body: {error}"));
    (status, body)
}

/// A process that printed its `listening on` lines.
#[derive(Debug)]
pub struct ListeningProcess {
    /// The child.
    pub child: Child,
    /// The addresses of the requested listeners, in the order asked for.
    pub addresses: Vec<SocketAddr>,
    /// Stderr lines, still being appended to by a drain thread.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

/// Spawns `bin args…` and waits (up to [`START_TIMEOUT`]) until stderr has shown
/// `<LABEL>: listening on <addr>` for every label; stderr keeps being drained and recorded.
pub fn start_listening_process(
    bin: &Path,
    args: &[String],
    labels: &[&str],
) -> Result<ListeningProcess, StartFailure> {
    let mut child = std::process::Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| StartFailure {
            reason: format!("cannot spawn {}: {error}", bin.display()),
            status: None,
            stderr: Vec::new(),
        })?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (line_sender, lines) = mpsc::channel::<String>();
    let pipe = child.stderr.take().expect("stderr is piped");
    let recorded = Arc::clone(&stderr);
    std::thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).into_owned();
            lock(&recorded).push(line.clone());
            // The receiver is gone once startup is over; keep recording anyway.
            let _ = line_sender.send(line);
        }
    });

    let mut addresses: Vec<Option<SocketAddr>> = vec![None; labels.len()];
    let deadline = Instant::now() + START_TIMEOUT;
    while addresses.iter().any(Option::is_none) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(remaining) {
            Ok(line) => {
                for (label, slot) in labels.iter().zip(addresses.iter_mut()) {
                    if slot.is_none() {
                        *slot = listening_address(&line, label);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_child(&mut child, STOP_TIMEOUT);
                return Err(StartFailure {
                    reason: "exited before listening".to_owned(),
                    status,
                    stderr: lock(&stderr).clone(),
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let status = child.wait().ok();
                return Err(StartFailure {
                    reason: format!(
                        "no `listening on` lines for {labels:?} after {START_TIMEOUT:?}"
                    ),
                    status,
                    stderr: lock(&stderr).clone(),
                });
            }
        }
    }
    Ok(ListeningProcess {
        child,
        addresses: addresses.into_iter().flatten().collect(),
        stderr,
    })
}

/// The address in a `<label>: listening on <addr>` log line.
///
/// ```
/// let line = "2026-11-22T03:40:06Z  INFO TCP: listening on 127.0.0.1:40559";
/// assert_eq!(
///     nsq_tests::listening_address(line, "TCP"),
///     Some("127.0.0.1:40559".parse().unwrap())
/// );
/// assert_eq!(nsq_tests::listening_address(line, "HTTP"), None);
/// ```
pub fn listening_address(line: &str, label: &str) -> Option<SocketAddr> {
    let marker = format!("{label}: listening on ");
    let label_start = line.find(&marker)?;
    // `TCP:` must be a word of its own (not the end of, say, `XTCP:`).
    if label_start > 0 && line.as_bytes()[label_start - 1].is_ascii_alphanumeric() {
        return None;
    }
    line[label_start + marker.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs a binary to completion (e.g. `--version`, or a start that must fail), killing it after
/// `timeout`. Returns the status (`None` if it had to be killed), stdout and stderr.
pub fn run_to_exit(
    bin: &Path,
    args: &[String],
    timeout: Duration,
) -> (Option<ExitStatus>, String, String) {
    let mut child = std::process::Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot spawn {}: {error}", bin.display()));
    let stdout = drain_in_thread(child.stdout.take().expect("piped"));
    let stderr = drain_in_thread(child.stderr.take().expect("piped"));
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    (status, stdout, stderr)
}

fn drain_in_thread(
    mut pipe: impl std::io::Read + Send + 'static,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => return None,
        }
    }
}

fn pid_of(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).expect("pid fits i32"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn http_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        // No pooling: every test has its own runtime, and a pooled connection must not outlive it.
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("reqwest client")
    })
}

// ---- waiting ------------------------------------------------------------------------------------

/// Polls `condition` every 10 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Async [`wait_until`]: polls every 20 ms.
pub async fn wait_for<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- /stats lookups -----------------------------------------------------------------------------

/// The topic named `topic`, if listed.
pub fn topic_stats<'a>(stats: &'a Stats, topic: &str) -> Option<&'a TopicStats> {
    stats
        .topics
        .as_ref()?
        .iter()
        .find(|entry| entry.topic_name == topic)
}

/// The channel `topic`/`channel`, if listed.
pub fn channel_stats<'a>(stats: &'a Stats, topic: &str, channel: &str) -> Option<&'a ChannelStats> {
    topic_stats(stats, topic)?
        .channels
        .iter()
        .find(|entry| entry.channel_name == channel)
}

// ---- command bytes ------------------------------------------------------------------------------

/// Client → server command bytes, built by hand.
pub mod cmd {
    /// The V2 magic.
    pub const MAGIC: &[u8] = b"  V2";

    /// `[i32 BE size][data]`.
    pub fn sized(data: &[u8]) -> Vec<u8> {
        let mut out = i32::try_from(data.len())
            .expect("body fits i32")
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(data);
        out
    }

    /// A command line plus `\n`.
    pub fn line(text: &str) -> Vec<u8> {
        let mut out = text.as_bytes().to_vec();
        out.push(b'\n');
        out
    }

    /// A command line plus a sized body.
    pub fn with_body(text: &str, body: &[u8]) -> Vec<u8> {
        let mut out = line(text);
        out.extend(sized(body));
        out
    }

    /// `IDENTIFY` with a JSON body.
    pub fn identify(json: &str) -> Vec<u8> {
        with_body("IDENTIFY", json.as_bytes())
    }

    /// `SUB topic channel`.
    pub fn sub(topic: &str, channel: &str) -> Vec<u8> {
        line(&format!("SUB {topic} {channel}"))
    }

    /// `RDY count`.
    pub fn rdy(count: u64) -> Vec<u8> {
        line(&format!("RDY {count}"))
    }

    /// `FIN id`.
    pub fn fin(id: &str) -> Vec<u8> {
        line(&format!("FIN {id}"))
    }

    /// `REQ id timeout`.
    pub fn req(id: &str, timeout_ms: u64) -> Vec<u8> {
        line(&format!("REQ {id} {timeout_ms}"))
    }

    /// `TOUCH id`.
    pub fn touch(id: &str) -> Vec<u8> {
        line(&format!("TOUCH {id}"))
    }

    /// `NOP`.
    pub fn nop() -> Vec<u8> {
        line("NOP")
    }

    /// `CLS`.
    pub fn cls() -> Vec<u8> {
        line("CLS")
    }

    /// `PUB topic` with a body.
    pub fn publish(topic: &str, body: &[u8]) -> Vec<u8> {
        with_body(&format!("PUB {topic}"), body)
    }

    /// `DPUB topic defer` with a body.
    pub fn dpub(topic: &str, defer_ms: u64, body: &[u8]) -> Vec<u8> {
        with_body(&format!("DPUB {topic} {defer_ms}"), body)
    }

    /// `MPUB topic` with `[i32 body size][i32 count]([i32 size][body])*`.
    pub fn mpub<B: AsRef<[u8]>>(topic: &str, bodies: &[B]) -> Vec<u8> {
        let mut payload = i32::try_from(bodies.len())
            .expect("count fits i32")
            .to_be_bytes()
            .to_vec();
        for body in bodies {
            payload.extend(sized(body.as_ref()));
        }
        with_body(&format!("MPUB {topic}"), &payload)
    }
}

/// Panics unless `actual` is exactly `expected`, showing both as hex and as text.
pub fn assert_frame_bytes(actual: &[u8], expected: &[u8]) {
    if actual != expected {
        panic!(
            "frame bytes differ\n  expected: {}\n       got: {}",
            describe_frame(expected),
            describe_frame(actual)
        );
    }
}

/// A frame's bytes for messages: size, type and data as hex, then the data as text.
pub fn describe_frame(bytes: &[u8]) -> String {
    if bytes.len() < 8 {
        return format!("{} (short)", hex::encode(bytes));
    }
    let data = &bytes[8..];
    let text = if bytes[4..8] == 2i32.to_be_bytes() && data.len() >= 26 {
        format!(
            "message attempts {} id {:?} body {:?}",
            u16::from_be_bytes([data[8], data[9]]),
            String::from_utf8_lossy(&data[10..26]),
            String::from_utf8_lossy(&data[26..])
        )
    } else {
        format!("{:?}", String::from_utf8_lossy(data))
    };
    format!(
        "[{} {}] {} = {text}",
        hex::encode(&bytes[..4]),
        hex::encode(&bytes[4..8]),
        hex::encode(data)
    )
}

/// Server → client frame bytes: `[i32 size][i32 type][data]`, built by hand.
pub fn frame_bytes(frame_type: i32, data: &[u8]) -> Vec<u8> {
    let size = i32::try_from(4 + data.len()).expect("frame fits i32");
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.extend_from_slice(data);
    out
}

// ---- raw V2 connection --------------------------------------------------------------------------

/// What [`RawConn::next`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A whole frame, decoded, with its exact bytes.
    Frame(Frame, Vec<u8>),
    /// The server closed the connection (FIN or RST) between frames.
    Closed,
    /// Nothing complete arrived in time.
    Timeout,
}

/// A raw V2 client connection.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    codec: FrameCodec,
    /// Messages read while waiting for something else (by [`RawConn::expect_open`]).
    pending: VecDeque<Message>,
}

impl RawConn {
    /// Connects and sends the magic.
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut conn = Self::connect_raw(addr).await;
        conn.send(cmd::MAGIC).await;
        conn
    }

    /// Connects without sending anything.
    pub async fn connect_raw(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|error| panic!("connect {addr}: {error}"));
        stream.set_nodelay(true).expect("set_nodelay");
        Self {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            codec: FrameCodec::default(),
            pending: VecDeque::new(),
        }
    }

    /// Writes bytes; panics on error.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .await
            .unwrap_or_else(|error| panic!("send {} bytes: {error}", bytes.len()));
    }

    /// Writes bytes.
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }

    /// Shuts down the write side (the server sees EOF).
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// The next frame, the close, or a timeout.
    pub async fn next(&mut self, timeout: Duration) -> Read {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let before = self.buf.clone();
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    let used = before.len() - self.buf.len();
                    return Read::Frame(frame, before[..used].to_vec());
                }
                Ok(None) => {}
                Err(error) => panic!("undecodable bytes from server ({error}): {before:02x?}"),
            }
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Read::Timeout,
                Ok(Ok(0)) => {
                    assert!(
                        self.buf.is_empty(),
                        "connection closed inside a frame; partial bytes: {:02x?}",
                        &self.buf[..]
                    );
                    return Read::Closed;
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) if is_reset(&error) => return Read::Closed,
                Ok(Err(error)) => panic!("read error: {error}"),
            }
        }
    }

    /// The next frame and its bytes (within [`READ_TIMEOUT`]); panics on close or timeout.
    pub async fn frame_with_bytes(&mut self) -> (Frame, Vec<u8>) {
        match self.next(READ_TIMEOUT).await {
            Read::Frame(frame, bytes) => (frame, bytes),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame (within [`READ_TIMEOUT`]); panics on close or timeout.
    pub async fn frame(&mut self) -> Frame {
        self.frame_with_bytes().await.0
    }

    /// Expects a response frame with exactly `data`.
    pub async fn expect_response(&mut self, data: &[u8]) {
        let (_, bytes) = self.frame_with_bytes().await;
        assert_frame_bytes(&bytes, &frame_bytes(0, data));
    }

    /// Expects the response `OK` (exact bytes `00 00 00 06 00 00 00 00 4F 4B`).
    pub async fn expect_ok(&mut self) {
        self.expect_response(b"OK").await;
    }

    /// Expects an error frame with exactly `text`.
    pub async fn expect_error(&mut self, text: &str) {
        let (_, bytes) = self.frame_with_bytes().await;
        assert_frame_bytes(&bytes, &frame_bytes(1, text.as_bytes()));
    }

    /// Expects an error frame with exactly `text`, then the close (a fatal error).
    pub async fn expect_fatal(&mut self, text: &str) {
        self.expect_error(text).await;
        self.expect_closed().await;
    }

    /// Expects a non-fatal error frame with exactly `text`, and that the connection still works.
    pub async fn expect_nonfatal(&mut self, text: &str) {
        self.expect_error(text).await;
        self.expect_open().await;
    }

    /// Expects the server to close the connection with no (further) frame.
    pub async fn expect_closed(&mut self) {
        match self.next(READ_TIMEOUT).await {
            Read::Closed => {}
            other => panic!("expected the server to close the connection, got {other:?}"),
        }
    }

    /// Expects nothing at all for `duration`.
    pub async fn expect_silence(&mut self, duration: Duration) {
        match self.next(duration).await {
            Read::Timeout => {}
            other => panic!("expected no frame for {duration:?}, got {other:?}"),
        }
    }

    /// Proves the connection still works: publishes to the probe topic `alive_probe` (allowed in
    /// every state) and expects `OK`. Messages arriving meanwhile are kept for
    /// [`RawConn::message`]; heartbeats are skipped.
    pub async fn expect_open(&mut self) {
        self.send(&cmd::publish("alive_probe", b"probe")).await;
        loop {
            match self.frame().await {
                Frame::Message(message) => self.pending.push_back(message),
                frame if frame.is_heartbeat() => {}
                Frame::Response(data) if data.as_ref() == b"OK" => return,
                other => panic!("expected OK to the probe PUB, got {other:?}"),
            }
        }
    }

    /// The next message (within `timeout`), skipping heartbeats; panics on anything else.
    pub async fn message_within(&mut self, timeout: Duration) -> Message {
        if let Some(message) = self.pending.pop_front() {
            return message;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(remaining).await {
                Read::Frame(Frame::Message(message), _) => return message,
                Read::Frame(frame, _) if frame.is_heartbeat() => {}
                other => panic!("expected a message within {timeout:?}, got {other:?}"),
            }
        }
    }

    /// The next message within [`READ_TIMEOUT`].
    pub async fn message(&mut self) -> Message {
        self.message_within(READ_TIMEOUT).await
    }

    /// Reads raw bytes until the server closes (true) or `timeout` passes (false).
    pub async fn bytes_until_closed(&mut self, timeout: Duration) -> (Vec<u8>, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return (self.buf.split().to_vec(), false),
                Ok(Ok(0)) => return (self.buf.split().to_vec(), true),
                Ok(Ok(_)) => {}
                Ok(Err(error)) if is_reset(&error) => return (self.buf.split().to_vec(), true),
                Ok(Err(error)) => panic!("read error: {error}"),
            }
        }
    }

    /// Reads raw bytes until at least `len` have arrived, the server closes, or `timeout` passes.
    pub async fn bytes_at_least(&mut self, len: usize, timeout: Duration) -> (Vec<u8>, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.buf.len() < len {
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => break,
                Ok(Ok(0)) => return (self.buf.split().to_vec(), true),
                Ok(Ok(_)) => {}
                Ok(Err(error)) if is_reset(&error) => return (self.buf.split().to_vec(), true),
                Ok(Err(error)) => panic!("read error: {error}"),
            }
        }
        (self.buf.split().to_vec(), false)
    }

    // -- command shortcuts ------------------------------------------------------------------------

    /// Sends IDENTIFY with `json` and returns the response data (`OK` or the JSON reply).
    pub async fn identify(&mut self, json: &str) -> String {
        self.send(&cmd::identify(json)).await;
        match self.frame().await {
            Frame::Response(data) => String::from_utf8_lossy(&data).into_owned(),
            other => panic!("IDENTIFY {json}: expected a response, got {other:?}"),
        }
    }

    /// IDENTIFY with feature negotiation plus `extra` fields (e.g. `"msg_timeout":1000`), returning
    /// the parsed reply.
    pub async fn identify_negotiate(&mut self, extra: &str) -> serde_json::Value {
        let json = if extra.is_empty() {
            r#"{"feature_negotiation":true}"#.to_owned()
        } else {
            format!(r#"{{"feature_negotiation":true,{extra}}}"#)
        };
        let reply = self.identify(&json).await;
        serde_json::from_str(&reply).unwrap_or_else(|error| panic!("{error}: {reply}"))
    }

    /// `SUB topic channel`, expecting `OK`.
    pub async fn sub(&mut self, topic: &str, channel: &str) {
        self.send(&cmd::sub(topic, channel)).await;
        self.expect_ok().await;
    }

    /// `RDY count` (no reply).
    pub async fn rdy(&mut self, count: u64) {
        self.send(&cmd::rdy(count)).await;
    }

    /// `FIN id` (no reply).
    pub async fn fin(&mut self, message: &Message) {
        self.send(&cmd::fin(&message.id.to_string())).await;
    }

    /// `REQ id timeout` (no reply).
    pub async fn req(&mut self, message: &Message, timeout_ms: u64) {
        self.send(&cmd::req(&message.id.to_string(), timeout_ms))
            .await;
    }

    /// `TOUCH id` (no reply).
    pub async fn touch(&mut self, message: &Message) {
        self.send(&cmd::touch(&message.id.to_string())).await;
    }

    /// `PUB topic body`, expecting `OK`.
    pub async fn publish(&mut self, topic: &str, body: &[u8]) {
        self.send(&cmd::publish(topic, body)).await;
        self.expect_ok().await;
    }

    /// `MPUB topic bodies`, expecting `OK`.
    pub async fn mpub<B: AsRef<[u8]>>(&mut self, topic: &str, bodies: &[B]) {
        self.send(&cmd::mpub(topic, bodies)).await;
        self.expect_ok().await;
    }

    /// `DPUB topic defer body`, expecting `OK`.
    pub async fn dpub(&mut self, topic: &str, defer_ms: u64, body: &[u8]) {
        self.send(&cmd::dpub(topic, defer_ms, body)).await;
        self.expect_ok().await;
    }

    /// A subscribed consumer: optional IDENTIFY fields (`extra`, JSON object members), SUB, RDY.
    pub async fn consumer(
        addr: SocketAddr,
        topic: &str,
        channel: &str,
        identify_extra: &str,
        rdy: u64,
    ) -> Self {
        let mut conn = Self::connect(addr).await;
        if !identify_extra.is_empty() {
            conn.identify_negotiate(identify_extra).await;
        }
        conn.sub(topic, channel).await;
        if rdy > 0 {
            conn.rdy(rdy).await;
        }
        conn
    }
}

fn is_reset(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

// ---- fixtures -----------------------------------------------------------------------------------

/// Upstream's captured TCP exchanges (`shared/fixtures/tcp/*.json`).
pub mod fixture {
    use serde::Deserialize;
    use std::path::PathBuf;

    /// One captured exchange.
    #[derive(Debug, Clone, Deserialize)]
    pub struct TcpExchange {
        /// Everything the client sent, hex.
        pub client_sends_hex: String,
        /// Everything the server sent, hex.
        pub server_replies_hex: String,
        /// Whether the server closed the connection at the end.
        pub server_closed_connection: bool,
        /// What the capture shows.
        #[serde(default)]
        pub notes: String,
        /// The interleaving.
        pub transcript: Vec<TranscriptEntry>,
    }

    /// One step of the transcript.
    #[derive(Debug, Clone, Deserialize)]
    pub struct TranscriptEntry {
        /// `client->server` or `server->client`.
        pub dir: String,
        /// Bytes, hex (absent on the EOF entry).
        #[serde(default)]
        pub hex: Option<String>,
    }

    impl TcpExchange {
        /// The client's writes, in order, as bytes.
        pub fn client_chunks(&self) -> Vec<Vec<u8>> {
            self.transcript
                .iter()
                .filter(|entry| entry.dir == "client->server")
                .filter_map(|entry| entry.hex.as_deref())
                .map(|chunk| hex::decode(chunk).expect("fixture hex"))
                .collect()
        }

        /// Everything the server sent, as bytes.
        pub fn server_bytes(&self) -> Vec<u8> {
            hex::decode(&self.server_replies_hex).expect("fixture hex")
        }
    }

    /// The fixture folder.
    pub fn tcp_dir() -> PathBuf {
        super::shared_dir().join("fixtures/tcp")
    }

    /// Loads `shared/fixtures/tcp/<name>.json`.
    pub fn tcp(name: &str) -> TcpExchange {
        let path = tcp_dir().join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("fixture {}: {error}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("fixture {}: {error}", path.display()))
    }
}
