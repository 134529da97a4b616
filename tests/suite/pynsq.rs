//! The official Python client (pynsq 0.9.1), unchanged, against our nsqd.
//!
//! The venv comes from `tests/peers/install.sh` (run by `scripts/test.sh`).

use crate::ms;
use nsq_tests::{NsqdProcess, channel_stats, peer_python, run_peer, topic_stats, workspace_root};

/// pynsq's Writer publishes 1000 messages; its Reader REQs each once and FINs it on attempt 2.
#[tokio::test]
async fn round_trip_1000() {
    let python = peer_python();
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
    run_peer(python, args, ms(90_000), || nsqd.stderr_lines().join("\n")).await;

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
