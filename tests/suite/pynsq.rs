//! The official Python client (pynsq 0.9.1), unchanged, against our nsqd.
//!
//! The venv comes from `tests/peers/install.sh` (run by `scripts/test.sh`).

use crate::ms;
use nsq_tests::{NsqdProcess, channel_stats, run_to_exit, topic_stats, workspace_root};
use std::path::PathBuf;

fn venv_python() -> PathBuf {
    let python = workspace_root().join("tests/peers/.venv/bin/python");
    if !python.exists() {
        let ci = if std::env::var_os("CI").is_some() {
            " (CI is set: this is a failure, not a skip)"
        } else {
            ""
        };
        panic!(
            "{} is missing{ci}: run scripts/test.sh, or `bash tests/peers/install.sh`, to create \
             the pynsq venv",
            python.display()
        );
    }
    python
}

/// pynsq's Writer publishes 1000 messages; its Reader REQs each once and FINs it on attempt 2.
#[tokio::test]
async fn round_trip_1000() {
    let python = venv_python();
    let script = workspace_root().join("tests/peers/python/pynsq_roundtrip.py");
    let nsqd = NsqdProcess::start(&[]);
    let args = vec![
        script.display().to_string(),
        "plain".to_owned(),
        nsqd.tcp_addr.to_string(),
        "--count=1000".to_owned(),
        "--timeout=60".to_owned(),
        "--topic=pynsq_roundtrip".to_owned(),
        "--channel=pynsq".to_owned(),
    ];
    let (status, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_to_exit(&python, &args, ms(90_000)))
            .await
            .unwrap();
    println!("{stdout}");
    let status = status.unwrap_or_else(|| panic!("pynsq script hung; stderr:\n{stderr}"));
    assert!(
        status.success(),
        "pynsq round trip failed ({status:?})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // nsqd agrees: 1000 published, each requeued once, nothing left.
    let stats = nsqd
        .wait_stats(ms(5000), "pynsq messages all finished", |stats| {
            channel_stats(stats, "pynsq_roundtrip", "pynsq")
                .is_some_and(|channel| channel.in_flight_count == 0 && channel.depth == 0)
        })
        .await;
    assert_eq!(
        topic_stats(&stats, "pynsq_roundtrip")
            .unwrap()
            .message_count,
        1000
    );
    let channel = channel_stats(&stats, "pynsq_roundtrip", "pynsq").unwrap();
    assert_eq!(channel.requeue_count, 1000);
    assert_eq!(channel.timeout_count, 0);
    assert_eq!(channel.deferred_count, 0);
}
