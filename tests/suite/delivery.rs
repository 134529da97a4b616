//! E. SUB, RDY and delivery.

use crate::{ms, publish_all};
use nsq_tests::{NsqdProcess, RawConn, channel_stats, cmd, topic_stats};
use std::collections::HashSet;

/// E31: `SUB t c` answers `OK`, and the topic and channel appear in `/stats` with the client in
/// state 3.
#[tokio::test]
async fn e31_sub_creates_topic_and_channel() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.sub("t", "c").await;
    let stats = nsqd.stats().await;
    let channel = channel_stats(&stats, "t", "c").expect("t/c in /stats");
    assert_eq!(channel.client_count, 1);
    let clients = channel.clients.as_ref().expect("clients listed");
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].state, 3);
    assert_eq!(clients[0].remote_address, conn.local_addr().to_string());
}

/// E32: a second SUB on the same connection is fatal.
#[tokio::test]
async fn e32_second_sub_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.sub("t", "c").await;
    conn.send(&cmd::sub("t", "c")).await;
    conn.expect_fatal("E_INVALID cannot SUB in current state")
        .await;
}

/// E33: SUB without a channel is fatal.
#[tokio::test]
async fn e33_sub_without_channel_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(b"SUB t\n").await;
    conn.expect_fatal("E_INVALID SUB insufficient number of parameters")
        .await;
}

/// E34: an invalid channel name is fatal.
#[tokio::test]
async fn e34_bad_channel_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(b"SUB t bad!\n").await;
    conn.expect_fatal(r#"E_BAD_CHANNEL SUB channel name "bad!" is not valid"#)
        .await;
}

/// E35: after SUB and no RDY, nothing is delivered; RDY then releases the message.
#[tokio::test]
async fn e35_nothing_delivered_without_rdy() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = nsqd.connect().await;
    consumer.sub("t", "c").await;
    publish_all(&nsqd, "t", &["one"]).await;
    nsqd.wait_channel("t", "c", "depth 1", |channel| channel.depth == 1)
        .await;
    consumer.expect_silence(ms(400)).await;
    consumer.rdy(1).await;
    assert_eq!(&consumer.message().await.body[..], b"one");
}

/// E36: RDY is a window: `RDY 2` with 3 queued gives exactly 2; a FIN lets the 3rd through with
/// no new RDY.
#[tokio::test]
async fn e36_rdy_is_a_window() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = nsqd.connect().await;
    consumer.sub("t", "c").await;
    publish_all(&nsqd, "t", &["m1", "m2", "m3"]).await;
    consumer.rdy(2).await;
    let first = consumer.message().await;
    let second = consumer.message().await;
    consumer.expect_silence(ms(400)).await;
    consumer.fin(&first).await;
    let third = consumer.message().await;
    let bodies: HashSet<Vec<u8>> = [&first, &second, &third]
        .iter()
        .map(|message| message.body.to_vec())
        .collect();
    assert_eq!(bodies.len(), 3);
    consumer.expect_silence(ms(200)).await;
}

/// E37: `RDY` without a count is `RDY 1`; `RDY 0` stops delivery without an error.
#[tokio::test]
async fn e37_rdy_default_and_zero() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = nsqd.connect().await;
    consumer.sub("t", "c").await;
    publish_all(&nsqd, "t", &["m1", "m2", "m3"]).await;
    consumer.send(b"RDY\n").await;
    let first = consumer.message().await;
    consumer.expect_silence(ms(300)).await;
    consumer.fin(&first).await;
    let second = consumer.message().await;
    consumer.rdy(0).await;
    consumer.fin(&second).await;
    consumer.expect_silence(ms(400)).await;
    nsqd.wait_channel("t", "c", "one message left", |channel| {
        channel.depth == 1 && channel.in_flight_count == 0
    })
    .await;
    consumer.expect_open().await;
}

/// E38: RDY bounds: 2501 is out of range, 2500 accepted, -1 unparsable.
#[tokio::test]
async fn e38_rdy_bounds() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 0).await;
    conn.send(b"RDY 2501\n").await;
    conn.expect_fatal("E_INVALID RDY count 2501 out of range 0-2500")
        .await;

    let mut conn = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 0).await;
    conn.send(b"RDY 2500\n").await;
    conn.expect_open().await;
    nsqd.wait_stats(crate::ms(5000), "ready_count 2500", |stats| {
        channel_stats(stats, "t", "c")
            .and_then(|channel| channel.clients.as_ref())
            .is_some_and(|clients| clients.iter().any(|client| client.ready_count == 2500))
    })
    .await;

    let mut conn = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 0).await;
    conn.send(b"RDY -1\n").await;
    conn.expect_fatal("E_INVALID RDY could not parse count -1")
        .await;
}

/// E39: RDY before SUB is fatal.
#[tokio::test]
async fn e39_rdy_before_sub_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(b"RDY 1\n").await;
    conn.expect_fatal("E_INVALID cannot RDY in current state")
        .await;
}

/// E40: `/stats` `ready_count` is the last RDY, not decreased by deliveries.
#[tokio::test]
async fn e40_ready_count_is_last_rdy() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 5).await;
    publish_all(&nsqd, "t", &["m1", "m2"]).await;
    consumer.message().await;
    consumer.message().await;
    let channel = nsqd
        .wait_channel("t", "c", "2 in flight", |channel| {
            channel.in_flight_count == 2
        })
        .await;
    let clients = channel.clients.expect("clients");
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].ready_count, 5);
    assert_eq!(clients[0].in_flight_count, 2);
    assert_eq!(clients[0].message_count, 2);
}

/// E41: two consumers on one channel: each message goes to exactly one of them.
#[tokio::test]
async fn e41_two_consumers_share_a_channel() {
    let nsqd = NsqdProcess::start(&[]);
    let mut first = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 100).await;
    let mut second = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 100).await;
    let bodies: Vec<String> = (0..20).map(|index| format!("m{index}")).collect();
    publish_all(&nsqd, "t", &bodies).await;
    nsqd.wait_channel("t", "c", "all 20 in flight", |channel| {
        channel.in_flight_count == 20
    })
    .await;
    let mut seen = Vec::new();
    for consumer in [&mut first, &mut second] {
        loop {
            match consumer.next(ms(300)).await {
                nsq_tests::Read::Frame(nsq_protocol::Frame::Message(message), _) => {
                    seen.push(String::from_utf8(message.body.to_vec()).unwrap());
                    consumer.fin(&message).await;
                }
                nsq_tests::Read::Timeout => break,
                other => panic!("{other:?}"),
            }
        }
    }
    seen.sort();
    let mut expected = bodies.clone();
    expected.sort();
    assert_eq!(seen, expected, "every message exactly once");
}

/// E42: two channels on one topic each receive every message.
#[tokio::test]
async fn e42_two_channels_each_get_everything() {
    let nsqd = NsqdProcess::start(&[]);
    let mut first = RawConn::consumer(nsqd.tcp_addr, "t", "c1", "", 100).await;
    let mut second = RawConn::consumer(nsqd.tcp_addr, "t", "c2", "", 100).await;
    let bodies: Vec<String> = (0..10).map(|index| format!("m{index}")).collect();
    publish_all(&nsqd, "t", &bodies).await;
    for consumer in [&mut first, &mut second] {
        let mut seen = Vec::new();
        for _ in 0..10 {
            let message = consumer.message().await;
            seen.push(String::from_utf8(message.body.to_vec()).unwrap());
            consumer.fin(&message).await;
        }
        seen.sort();
        let mut expected = bodies.clone();
        expected.sort();
        assert_eq!(seen, expected);
        consumer.expect_silence(ms(200)).await;
    }
    let stats = nsqd.stats().await;
    assert_eq!(topic_stats(&stats, "t").unwrap().message_count, 10);
}

/// E38 (number parsing, tcp-protocol.md §6): only ASCII digits; an empty count (`RDY ` with a
/// trailing space) parses as 0; a sign, a space-padded or a 20-digit value is rejected.
#[tokio::test]
async fn e38_rdy_number_parsing() {
    let nsqd = NsqdProcess::start(&[]);
    // `RDY ` = `RDY 0`: accepted silently, and nothing is delivered.
    let mut conn = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 0).await;
    publish_all(&nsqd, "t", &["m"]).await;
    conn.send(b"RDY \n").await;
    conn.expect_silence(ms(300)).await;
    conn.expect_open().await;

    for raw in ["+1", "1x", "99999999999999999999"] {
        let mut conn = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 0).await;
        conn.send(&cmd::line(&format!("RDY {raw}"))).await;
        conn.expect_fatal(&format!("E_INVALID RDY could not parse count {raw}"))
            .await;
    }
}

/// E36 (window, tcp-protocol.md §6.4): lowering RDY below the in-flight count stops delivery until
/// enough messages are finished.
#[tokio::test]
async fn e36_lowering_rdy_below_in_flight() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 3).await;
    publish_all(&nsqd, "t", &["m1", "m2", "m3", "m4", "m5"]).await;
    let held = [
        consumer.message().await,
        consumer.message().await,
        consumer.message().await,
    ];
    consumer.rdy(1).await;
    consumer.fin(&held[0]).await;
    consumer.fin(&held[1]).await;
    consumer.expect_silence(ms(300)).await;
    consumer.fin(&held[2]).await;
    let fourth = consumer.message().await;
    consumer.expect_silence(ms(300)).await;
    consumer.fin(&fourth).await;
    consumer.message().await;
}

/// E36 (output buffering, tcp-protocol.md §8.5): with spare RDY, a single message is not held
/// longer than the output buffer timeout (250 ms by default).
#[tokio::test]
async fn e36_trickle_is_flushed_promptly() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 100).await;
    let mut producer = nsqd.connect().await;
    for index in 0..3 {
        let published_at = std::time::Instant::now();
        producer.publish("t", format!("m{index}").as_bytes()).await;
        let message = consumer.message_within(ms(2000)).await;
        let latency = published_at.elapsed();
        assert!(
            latency < ms(750),
            "message {index} arrived after {latency:?}"
        );
        consumer.fin(&message).await;
    }
}
