//! Q. Command line, logs and process behaviour that client test harnesses rely on.

use crate::ms;
use nix::sys::signal::Signal;
use nsq_protocol::api::Info;
use nsq_tests::{NsqdProcess, RawConn, bin_path, cmd, run_to_exit};
use regex::Regex;

/// Q151: `nsqd --version` prints one line `nsqd v1.3.0 (built w/…)` and exits 0; `/info` reports
/// the same version.
#[tokio::test]
async fn q151_version_line() {
    let (status, stdout, _) = run_to_exit(&bin_path("nsqd"), &["--version".to_owned()], ms(10_000));
    assert!(status.expect("--version exits").success());
    let pattern = Regex::new(r"^nsqd v(\d+\.\d+\.\d+)(-[a-z]+)? \(built w/[a-z0-9.-]+\)$").unwrap();
    let line = stdout.strip_suffix('\n').unwrap_or(&stdout);
    let captures = pattern
        .captures(line)
        .unwrap_or_else(|| panic!("--version printed {stdout:?}"));
    assert_eq!(&captures[1], "1.3.0");
    assert!(
        captures.get(2).is_none(),
        "no suffix: gnsq's regex allows letters only"
    );

    let nsqd = NsqdProcess::start(&[]);
    let info: Info = nsqd.get_json("/info").await;
    assert_eq!(info.version, "1.3.0");
}

/// Q152: the `listening on` lines carry the ports the OS chose; `/info` reports the same.
#[tokio::test]
async fn q152_listening_lines_match_info() {
    let nsqd = NsqdProcess::start(&[]);
    assert_ne!(nsqd.tcp_addr.port(), 0);
    assert_ne!(nsqd.http_addr.port(), 0);
    let info: Info = nsqd.get_json("/info").await;
    assert_eq!(info.tcp_port, nsqd.tcp_addr.port());
    assert_eq!(info.http_port, nsqd.http_addr.port());
    let (status, body) = nsqd.get("/ping").await;
    assert_eq!((status, body.as_str()), (200, "OK"));
}

/// Q153: Go-style single-dash flags and `--flag value` work.
#[tokio::test]
async fn q153_single_dash_and_separate_value_flags() {
    let data_dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "-tcp-address",
        "127.0.0.1:0",
        "-http-address=127.0.0.1:0",
        &format!("-data-path={}", data_dir.path().display()),
        "--max-rdy-count",
        "33",
        "-msg-timeout=7s",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let nsqd = NsqdProcess::start_with_exact_args(&args, data_dir.path())
        .unwrap_or_else(|failure| panic!("{failure}"));
    let mut conn = RawConn::connect(nsqd.tcp_addr).await;
    let reply = conn.identify_negotiate("").await;
    assert_eq!(reply["max_rdy_count"], 33);
    assert_eq!(reply["msg_timeout"], 7000);
    let info: Info = nsqd.get_json("/info").await;
    assert_eq!(info.tcp_port, nsqd.tcp_addr.port());
}

/// Q153: boolean flags accept `--flag=false`.
#[tokio::test]
async fn q153_boolean_flag_false() {
    let nsqd = NsqdProcess::try_start(None, &["--snappy=false"]);
    assert!(nsqd.is_ok(), "--snappy=false: {}", nsqd.unwrap_err());
}

/// Q153: an unknown flag exits non-zero.
#[tokio::test]
async fn q153_unknown_flag_exits_nonzero() {
    let data_dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = run_to_exit(
        &bin_path("nsqd"),
        &[
            "--tcp-address=127.0.0.1:0".to_owned(),
            "--http-address=127.0.0.1:0".to_owned(),
            format!("--data-path={}", data_dir.path().display()),
            "--no-such-flag=1".to_owned(),
        ],
        ms(10_000),
    );
    let status = status.expect("exits on its own");
    assert!(!status.success(), "status {status:?}; stderr {stderr}");
}

/// Q155: a second nsqd on the same `--data-path` exits non-zero; the first keeps serving.
#[tokio::test]
async fn q155_second_nsqd_on_same_data_path_fails() {
    let first = NsqdProcess::start(&[]);
    let failure = NsqdProcess::try_start(Some(&first.data_dir), &[])
        .expect_err("a second nsqd on the same data path must not start");
    let status = failure.status.expect("the second nsqd exits on its own");
    assert!(!status.success(), "second nsqd: {failure}");
    let (status, body) = first.get("/ping").await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    crate::assert_healthy(&first, "q155").await;
}

/// K116: the refusal names the lock: `cannot flock directory … (possibly in use by another
/// instance of nsqd)`.
#[tokio::test]
async fn k116_second_nsqd_reports_flock() {
    let first = NsqdProcess::start(&[]);
    let failure = NsqdProcess::try_start(Some(&first.data_dir), &[])
        .expect_err("a second nsqd on the same data path must not start");
    let stderr = failure.stderr.join("\n");
    assert!(
        stderr.contains("cannot flock directory")
            && stderr.contains("(possibly in use by another instance of nsqd)"),
        "stderr: {stderr}"
    );
}

/// Q156: SIGINT and SIGTERM both shut down cleanly with exit code 0.
#[tokio::test]
async fn q156_sigint_and_sigterm_exit_zero() {
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let mut nsqd = NsqdProcess::start(&[]);
        let mut conn = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
        conn.publish("t", b"x").await;
        let status = nsqd.stop_with(signal);
        assert_eq!(status.code(), Some(0), "{signal:?}: {status:?}");
    }
}

/// Q157: `--max-channel-consumers=1`: a second SUB to the channel is fatal.
#[tokio::test]
async fn q157_max_channel_consumers() {
    let nsqd = NsqdProcess::start(&["--max-channel-consumers=1"]);
    let _first = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 0).await;
    let mut second = nsqd.connect().await;
    second.send(&cmd::sub("t", "c")).await;
    second
        .expect_fatal("E_SUB_FAILED SUB failed consumers for t:c exceeds limit of 1")
        .await;
    // Another channel is not limited by the first one's consumer.
    let _other = RawConn::consumer(nsqd.tcp_addr, "t", "d", "", 0).await;
}
