//! F. FIN, REQ, TOUCH, CLS and timeouts (with `msg_timeout: 1000` where timeouts matter).

use crate::{ms, publish_all};
use nsq_tests::{NsqdProcess, RawConn, cmd};
use std::time::Instant;

const FAST_TIMEOUT: &str = r#""msg_timeout":1000"#;

/// F43: FIN of an in-flight message has no response, and the channel's in_flight_count drops.
#[tokio::test]
async fn f43_fin_has_no_response() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let message = consumer.message().await;
    nsqd.wait_channel("t", "c", "1 in flight", |channel| {
        channel.in_flight_count == 1
    })
    .await;
    consumer.fin(&message).await;
    // The next frame is the probe's OK: the FIN produced nothing.
    consumer.expect_open().await;
    let channel = nsqd
        .wait_channel("t", "c", "0 in flight", |channel| {
            channel.in_flight_count == 0
        })
        .await;
    assert_eq!(channel.depth, 0);
    assert_eq!(channel.clients.unwrap()[0].finish_count, 1);
}

/// F44: the same FIN again is the non-fatal `E_FIN_FAILED … ID not in flight`.
#[tokio::test]
async fn f44_second_fin_is_nonfatal_error() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let message = consumer.message().await;
    consumer.fin(&message).await;
    consumer.fin(&message).await;
    consumer
        .expect_nonfatal(&format!(
            "E_FIN_FAILED FIN {} failed ID not in flight",
            message.id
        ))
        .await;
}

/// F45: a message ID that is not 16 bytes is fatal.
#[tokio::test]
async fn f45_short_message_id_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
    consumer.send(b"FIN short\n").await;
    consumer.expect_fatal("E_INVALID invalid message ID").await;
}

/// F46: FIN/REQ/TOUCH of a message delivered to another connection are non-fatal errors.
#[tokio::test]
async fn f46_other_connections_message_is_nonfatal_error() {
    let nsqd = NsqdProcess::start(&[]);
    let mut owner = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
    let mut other = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 0).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let message = owner.message().await;
    let id = message.id.to_string();

    other.send(&cmd::fin(&id)).await;
    other
        .expect_nonfatal(&format!(
            "E_FIN_FAILED FIN {id} failed client does not own message"
        ))
        .await;
    other.send(&cmd::req(&id, 0)).await;
    other
        .expect_nonfatal(&format!(
            "E_REQ_FAILED REQ {id} failed client does not own message"
        ))
        .await;
    other.send(&cmd::touch(&id)).await;
    other
        .expect_nonfatal(&format!(
            "E_TOUCH_FAILED TOUCH {id} failed client does not own message"
        ))
        .await;
    // The owner still holds it.
    owner.fin(&message).await;
    owner.expect_open().await;
}

/// F47: FIN, REQ and TOUCH before SUB are fatal.
#[tokio::test]
async fn f47_fin_req_touch_before_sub_are_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    for (command, name) in [
        (cmd::fin("0123456789abcdef"), "FIN"),
        (cmd::req("0123456789abcdef", 0), "REQ"),
        (cmd::touch("0123456789abcdef"), "TOUCH"),
    ] {
        let mut conn = nsqd.connect().await;
        conn.send(&command).await;
        conn.expect_fatal(&format!("E_INVALID cannot {name} in current state"))
            .await;
    }
}

/// F48: `REQ id 0` redelivers the same message (ID, timestamp) with attempts + 1; requeue_count 1.
#[tokio::test]
async fn f48_req_zero_redelivers_at_once() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let first = consumer.message().await;
    assert_eq!(first.attempts, 1);
    consumer.req(&first, 0).await;
    let second = consumer.message().await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.timestamp, first.timestamp);
    assert_eq!(second.attempts, 2);
    assert_eq!(second.body, first.body);
    let channel = nsqd
        .wait_channel("t", "c", "requeue_count 1", |channel| {
            channel.requeue_count == 1
        })
        .await;
    assert_eq!(channel.timeout_count, 0);
    consumer.fin(&second).await;
}

/// F49: `REQ id 1500` is deferred (deferred_count 1) and redelivered ≥ 1.5 s later.
#[tokio::test]
async fn f49_req_with_delay_is_deferred() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let first = consumer.message().await;
    let requeued_at = Instant::now();
    consumer.req(&first, 1500).await;
    nsqd.wait_channel("t", "c", "deferred_count 1", |channel| {
        channel.deferred_count == 1 && channel.in_flight_count == 0
    })
    .await;
    let again = consumer.message_within(ms(8000)).await;
    let elapsed = requeued_at.elapsed();
    assert!(elapsed >= ms(1500), "redelivered after {elapsed:?}");
    assert_eq!(again.id, first.id);
    assert_eq!(again.attempts, 2);
}

/// F50: REQ without a timeout is fatal; a timeout above the 1 h maximum is clamped, not an error.
#[tokio::test]
async fn f50_req_timeout_required_and_clamped() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let message = consumer.message().await;
    consumer
        .send(&cmd::line(&format!("REQ {}", message.id)))
        .await;
    consumer
        .expect_fatal("E_INVALID REQ insufficient number of params")
        .await;

    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "u", "c", "", 1).await;
    publish_all(&nsqd, "u", &["m"]).await;
    let message = consumer.message().await;
    consumer.req(&message, 7_200_000).await;
    consumer.expect_open().await;
    nsqd.wait_channel("u", "c", "deferred_count 1", |channel| {
        channel.deferred_count == 1 && channel.requeue_count == 1
    })
    .await;
}

/// F51: with msg_timeout 1000 an unfinished message comes back after ≥ 1 s with attempts 2;
/// timeout_count + 1, requeue_count unchanged.
#[tokio::test]
async fn f51_msg_timeout_redelivers() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", FAST_TIMEOUT, 1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let first = consumer.message().await;
    let delivered_at = Instant::now();
    let again = consumer.message_within(ms(8000)).await;
    let elapsed = delivered_at.elapsed();
    assert!(elapsed >= ms(950), "redelivered after {elapsed:?}");
    assert_eq!(again.id, first.id);
    assert_eq!(again.attempts, 2);
    let channel = nsqd
        .wait_channel("t", "c", "timeout_count 1", |channel| {
            channel.timeout_count == 1
        })
        .await;
    assert_eq!(channel.requeue_count, 0);
    consumer.fin(&again).await;
}

/// F52: TOUCH every 0.7 s keeps a 1 s-timeout message; it comes back ≥ 1 s after the last TOUCH.
#[tokio::test]
async fn f52_touch_extends_the_deadline() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", FAST_TIMEOUT, 1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let message = consumer.message().await;
    let mut last_touch = Instant::now();
    for _ in 0..3 {
        consumer.expect_silence(ms(700)).await;
        consumer.touch(&message).await;
        last_touch = Instant::now();
    }
    let again = consumer.message_within(ms(8000)).await;
    let since_touch = last_touch.elapsed();
    assert!(
        since_touch >= ms(950),
        "redelivered {since_touch:?} after the last TOUCH"
    );
    assert_eq!(again.id, message.id);
    assert_eq!(again.attempts, 2);
}

/// F53: messages held by a consumer that disconnects go to another consumer only after the
/// msg_timeout, not at once.
#[tokio::test]
async fn f53_disconnect_does_not_requeue_at_once() {
    let nsqd = NsqdProcess::start(&[]);
    let mut holder = RawConn::consumer(nsqd.tcp_addr, "t", "c", FAST_TIMEOUT, 1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let held = holder.message().await;
    let delivered_at = Instant::now();
    let mut other = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
    drop(holder);
    let again = other.message_within(ms(8000)).await;
    let elapsed = delivered_at.elapsed();
    assert!(
        elapsed >= ms(950),
        "redelivered {elapsed:?} after the first delivery"
    );
    assert_eq!(again.id, held.id);
    assert_eq!(again.attempts, 2);
}

/// F54: CLS answers CLOSE_WAIT and keeps the connection; RDY is then ignored; FIN still works;
/// a second CLS is fatal.
#[tokio::test]
async fn f54_cls_close_wait() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
    publish_all(&nsqd, "t", &["m1", "m2", "m3"]).await;
    let held = consumer.message().await;
    consumer.send(&cmd::cls()).await;
    consumer.expect_response(b"CLOSE_WAIT").await;
    consumer.rdy(5).await;
    consumer.expect_silence(ms(400)).await;
    consumer.fin(&held).await;
    consumer.expect_open().await;
    let channel = nsqd
        .wait_channel("t", "c", "FIN after CLS", |channel| {
            channel.in_flight_count == 0
        })
        .await;
    assert_eq!(channel.depth, 2);
    let client = &channel.clients.unwrap()[0];
    assert_eq!(client.state, 4, "closing");
    assert_eq!(client.finish_count, 1);
    consumer.send(&cmd::cls()).await;
    consumer
        .expect_fatal("E_INVALID cannot CLS in current state")
        .await;
}

/// F55: attempts keep increasing across requeues and timeouts; nsqd never gives up on its own.
#[tokio::test]
async fn f55_attempts_keep_increasing() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", FAST_TIMEOUT, 1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let mut message = consumer.message().await;
    for attempt in 1..=7u16 {
        assert_eq!(message.attempts, attempt);
        consumer.req(&message, 0).await;
        message = consumer.message().await;
    }
    assert_eq!(message.attempts, 8);
    // Let it time out once more.
    let again = consumer.message_within(ms(8000)).await;
    assert_eq!(again.id, message.id);
    assert_eq!(again.attempts, 9);
    consumer.fin(&again).await;
}

/// F56: with sample_rate 1 most messages are dropped for the channel (never delivered to anyone,
/// not requeued).
#[tokio::test]
async fn f56_sample_rate_drops_messages() {
    let nsqd = NsqdProcess::start(&[]);
    let mut sampled = RawConn::consumer(nsqd.tcp_addr, "t", "c", r#""sample_rate":1"#, 500).await;
    let bodies: Vec<String> = (0..300).map(|index| format!("m{index}")).collect();
    publish_all(&nsqd, "t", &bodies).await;
    nsqd.wait_channel("t", "c", "every message handed out", |channel| {
        channel.depth == 0 && channel.deferred_count == 0
    })
    .await;
    let mut received = Vec::new();
    while let nsq_tests::Read::Frame(nsq_protocol::Frame::Message(message), _) =
        sampled.next(ms(300)).await
    {
        received.push(message);
    }
    assert!(
        received.len() < 60,
        "{} of 300 delivered with sample_rate 1 (expected about 2%)",
        received.len()
    );
    for message in &received {
        sampled.fin(message).await;
    }
    let channel = nsqd
        .wait_channel("t", "c", "sampled messages finished", |channel| {
            channel.in_flight_count == 0
        })
        .await;
    assert_eq!(channel.depth, 0, "skipped messages are not requeued");
    let mut unsampled = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 500).await;
    unsampled.expect_silence(ms(400)).await;
}

/// F47 (parameters, tcp-protocol.md §6.5–6.7): FIN, REQ and TOUCH without an ID, and REQ with a
/// non-numeric timeout, are fatal.
#[tokio::test]
async fn f47_missing_parameters_are_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    for (line, error) in [
        ("FIN", "E_INVALID FIN insufficient number of params"),
        ("REQ", "E_INVALID REQ insufficient number of params"),
        ("TOUCH", "E_INVALID TOUCH insufficient number of params"),
        ("TOUCH short", "E_INVALID invalid message ID"),
        ("REQ short 0", "E_INVALID invalid message ID"),
        (
            "REQ 0123456789abcdef abc",
            "E_INVALID REQ could not parse timeout abc",
        ),
    ] {
        let mut conn = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
        conn.send(&cmd::line(line)).await;
        conn.expect_fatal(error).await;
    }
}

/// F52 (cap, tcp-protocol.md §6.7): TOUCH never extends a message past delivery +
/// `--max-msg-timeout`.
#[tokio::test]
async fn f52_touch_capped_by_max_msg_timeout() {
    let nsqd = NsqdProcess::start(&["--max-msg-timeout=2s"]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", FAST_TIMEOUT, 1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let message = consumer.message().await;
    let delivered_at = Instant::now();
    let mut touches = 0;
    let again = loop {
        match consumer.next(ms(500)).await {
            nsq_tests::Read::Timeout => {
                assert!(delivered_at.elapsed() < ms(6000), "never redelivered");
                consumer.touch(&message).await;
                touches += 1;
            }
            nsq_tests::Read::Frame(nsq_protocol::Frame::Message(again), _) => break again,
            other => panic!("{other:?}"),
        }
    };
    let elapsed = delivered_at.elapsed();
    assert!(touches >= 3, "only {touches} touches");
    assert!(
        (ms(1900)..ms(3500)).contains(&elapsed),
        "redelivered {elapsed:?} after delivery despite TOUCH every 0.5 s (cap 2 s)"
    );
    assert_eq!(again.id, message.id);
}

/// F51 (flag): `--msg-timeout=1s` is the default for connections that do not negotiate one.
#[tokio::test]
async fn f51_msg_timeout_flag_is_the_default() {
    let nsqd = NsqdProcess::start(&["--msg-timeout=1s"]);
    let mut consumer = RawConn::connect(nsqd.tcp_addr).await;
    let reply = consumer.identify_negotiate("").await;
    assert_eq!(reply["msg_timeout"], 1000);
    consumer.sub("t", "c").await;
    consumer.rdy(1).await;
    publish_all(&nsqd, "t", &["m"]).await;
    let first = consumer.message().await;
    let delivered_at = Instant::now();
    let again = consumer.message_within(ms(8000)).await;
    assert!(delivered_at.elapsed() >= ms(950));
    assert_eq!((again.id, again.attempts), (first.id, 2));
}
