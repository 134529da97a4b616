//! D. Heartbeats (with `heartbeat_interval: 1000` to keep them fast).

use crate::ms;
use nsq_protocol::Frame;
use nsq_tests::{NsqdProcess, Read, cmd, fixture, frame_bytes};
use std::time::Instant;

const HEARTBEAT: &[u8] = b"_heartbeat_";

/// D27: unanswered, heartbeats arrive at ~1 s (and maybe ~2 s), and the connection is closed at
/// ~2 s (2 × interval after the last command) without an error frame. Bytes as upstream's
/// `heartbeat_timeout_closes` capture.
#[tokio::test]
async fn d27_unanswered_heartbeats_then_close() {
    let nsqd = NsqdProcess::start(&[]);
    let exchange = fixture::tcp("heartbeat_timeout_closes");
    let captured = exchange.server_bytes();
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"heartbeat_interval":1000}"#))
        .await;
    let start = Instant::now();
    let (_, ok_bytes) = match conn.next(ms(5000)).await {
        Read::Frame(frame, bytes) => (frame, bytes),
        other => panic!("{other:?}"),
    };
    assert_eq!(ok_bytes, captured[..10], "OK as captured");

    let (_, first) = match conn.next(ms(5000)).await {
        Read::Frame(frame, bytes) => (frame, bytes),
        other => panic!("expected the first heartbeat, got {other:?}"),
    };
    let first_at = start.elapsed();
    assert_eq!(first, frame_bytes(0, HEARTBEAT));
    assert_eq!(first, captured[10..], "heartbeat as captured");
    assert!(
        (ms(800)..ms(2000)).contains(&first_at),
        "first heartbeat at {first_at:?}"
    );

    // The 2nd heartbeat races with the close (both seen upstream); no other frame may come.
    let closed_at = loop {
        match conn.next(ms(5000)).await {
            Read::Closed => break start.elapsed(),
            Read::Frame(frame, _) if frame.is_heartbeat() => {}
            other => panic!("expected a heartbeat or the close, got {other:?}"),
        }
    };
    assert!(
        (ms(1800)..ms(4000)).contains(&closed_at),
        "closed at {closed_at:?}, expected ~2 s"
    );
}

/// D28: answering each heartbeat with NOP keeps the connection open; NOP gets no response.
#[tokio::test]
async fn d28_nop_keeps_connection_open() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"heartbeat_interval":1000}"#))
        .await;
    conn.expect_ok().await;
    let start = Instant::now();
    for _ in 0..3 {
        // The next frame after a NOP is the next heartbeat: NOP itself has no response.
        conn.expect_response(HEARTBEAT).await;
        conn.send(&cmd::nop()).await;
    }
    assert!(
        start.elapsed() >= ms(2500),
        "3 heartbeats took {:?}",
        start.elapsed()
    );
    conn.expect_open().await;
}

/// D29: a producer-only connection (it never SUBs) also gets heartbeats.
#[tokio::test]
async fn d29_producer_receives_heartbeats() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"heartbeat_interval":1000}"#))
        .await;
    conn.expect_ok().await;
    conn.publish("t", b"x").await;
    let start = Instant::now();
    match conn.next(ms(3000)).await {
        Read::Frame(Frame::Response(data), _) => assert_eq!(&data[..], HEARTBEAT),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    assert!(
        start.elapsed() <= ms(2000),
        "heartbeat after {:?}",
        start.elapsed()
    );
}

/// D30: with heartbeats disabled, SUB is fatal.
#[tokio::test]
async fn d30_sub_with_heartbeats_disabled_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"heartbeat_interval":-1}"#))
        .await;
    conn.expect_ok().await;
    conn.send(&cmd::sub("t", "c")).await;
    conn.expect_fatal("E_INVALID cannot SUB with heartbeats disabled")
        .await;
}
