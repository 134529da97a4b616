//! G. PUB, MPUB and DPUB.

use crate::ms;
use nsq_tests::{NsqdProcess, RawConn, channel_stats, cmd, topic_stats};
use std::time::Instant;

/// G57: PUB of 5 bytes → `OK`; topic message_count 1, message_bytes 5.
#[tokio::test]
async fn g57_pub_counts_in_stats() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.publish("t", b"hello").await;
    let stats = nsqd.stats().await;
    let topic = topic_stats(&stats, "t").expect("topic t");
    assert_eq!(topic.message_count, 1);
    assert_eq!(topic.message_bytes, 5);
    assert_eq!(topic.depth, 1, "no channel yet: the topic keeps it");
}

/// G58: PUB without a topic, and PUB with a zero size, are fatal.
#[tokio::test]
async fn g58_pub_parameter_errors() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(b"PUB\n").await;
    conn.expect_fatal("E_INVALID PUB insufficient number of parameters")
        .await;
    let mut conn = nsqd.connect().await;
    conn.send(b"PUB t\n\x00\x00\x00\x00").await;
    conn.expect_fatal("E_BAD_MESSAGE PUB invalid message body size 0")
        .await;
}

/// G59: 1 048 577 bytes is too big (fatal); exactly 1 048 576 is accepted.
#[tokio::test]
async fn g59_max_message_size() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.publish("t", &vec![b'm'; 1_048_576]).await;

    let mut conn = nsqd.connect().await;
    conn.send(&cmd::line("PUB t")).await;
    conn.send(&1_048_577i32.to_be_bytes()).await;
    // The server may stop reading after the size; the body may not fit any more.
    let _ = conn.try_send(&vec![b'm'; 1_048_577]).await;
    conn.expect_fatal("E_BAD_MESSAGE PUB message too big 1048577 > 1048576")
        .await;
    let stats = nsqd.stats().await;
    assert_eq!(topic_stats(&stats, "t").unwrap().message_count, 1);
}

/// G60: MPUB of 2 messages → `OK`; message_count + 2; the IDs are consecutive.
#[tokio::test]
async fn g60_mpub_two_messages() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 2).await;
    let mut conn = nsqd.connect().await;
    conn.mpub("t", &["one", "two"]).await;
    let stats = nsqd.stats().await;
    assert_eq!(topic_stats(&stats, "t").unwrap().message_count, 2);
    let mut messages = [consumer.message().await, consumer.message().await];
    messages.sort_by_key(|message| message.id);
    let first = messages[0].id.to_u64().expect("hex ID");
    let second = messages[1].id.to_u64().expect("hex ID");
    assert_eq!(
        &messages[0].body[..],
        b"one",
        "the first body has the lower ID"
    );
    // Bits 63..22 are the clock tick, bits 11..0 the sequence within it.
    if first >> 22 == second >> 22 {
        assert_eq!(second, first + 1, "consecutive IDs {first:x} {second:x}");
    } else {
        assert!(second > first);
    }
}

/// G61: MPUB with a bad topic repeats the error code (upstream quirk), fatal.
#[tokio::test]
async fn g61_mpub_bad_topic_doubles_the_code() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::mpub("bad!", &["x"])).await;
    conn.expect_fatal(r#"E_BAD_TOPIC E_BAD_TOPIC MPUB topic name "bad!" is not valid"#)
        .await;
}

/// G62: MPUB with a count of 0 is fatal.
#[tokio::test]
async fn g62_mpub_zero_count_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(b"MPUB t\n\x00\x00\x00\x04\x00\x00\x00\x00").await;
    conn.expect_fatal("E_BAD_BODY MPUB invalid message count 0")
        .await;
}

/// G63: MPUB body size 0 and 5 242 881 are fatal.
#[tokio::test]
async fn g63_mpub_body_size_bounds() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(b"MPUB t\n\x00\x00\x00\x00").await;
    conn.expect_fatal("E_BAD_BODY MPUB invalid body size 0")
        .await;

    let mut conn = nsqd.connect().await;
    conn.send(b"MPUB t\n").await;
    conn.send(&5_242_881i32.to_be_bytes()).await;
    conn.expect_fatal("E_BAD_BODY MPUB body too big 5242881 > 5242880")
        .await;
}

/// G64: an MPUB whose 2nd message has size 0 is fatal and enqueues none of its messages.
#[tokio::test]
async fn g64_mpub_is_all_or_nothing() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 10).await;
    let mut conn = nsqd.connect().await;
    let mut payload = 2i32.to_be_bytes().to_vec();
    payload.extend(cmd::sized(b"a"));
    payload.extend(0i32.to_be_bytes());
    conn.send(&cmd::with_body("MPUB t", &payload)).await;
    conn.expect_fatal("E_BAD_MESSAGE MPUB invalid message(1) body size 0")
        .await;
    consumer.expect_silence(ms(300)).await;
    let stats = nsqd.stats().await;
    assert_eq!(topic_stats(&stats, "t").unwrap().message_count, 0);
    assert_eq!(channel_stats(&stats, "t", "c").unwrap().message_count, 0);
}

/// G65: `DPUB t 1000` → `OK`; every channel holds it deferred; delivered ≥ 1 s later.
#[tokio::test]
async fn g65_dpub_defers_per_channel() {
    let nsqd = NsqdProcess::start(&[]);
    let mut first = RawConn::consumer(nsqd.tcp_addr, "t", "c1", "", 1).await;
    let mut second = RawConn::consumer(nsqd.tcp_addr, "t", "c2", "", 1).await;
    let mut conn = nsqd.connect().await;
    let published_at = Instant::now();
    conn.dpub("t", 1000, b"later").await;
    nsqd.wait_stats(ms(900), "deferred_count 1 in both channels", |stats| {
        ["c1", "c2"].iter().all(|channel| {
            channel_stats(stats, "t", channel).is_some_and(|channel| channel.deferred_count == 1)
        })
    })
    .await;
    for consumer in [&mut first, &mut second] {
        let message = consumer.message_within(ms(8000)).await;
        assert_eq!(&message.body[..], b"later");
        assert_eq!(message.attempts, 1);
        assert!(
            published_at.elapsed() >= ms(1000),
            "after {:?}",
            published_at.elapsed()
        );
    }
}

/// G66: DPUB bounds and parameters.
#[tokio::test]
async fn g66_dpub_parameter_errors() {
    let nsqd = NsqdProcess::start(&[]);
    for (line, error) in [
        (
            "DPUB t 3600001",
            "E_INVALID DPUB timeout 3600001 out of range 0-3600000",
        ),
        ("DPUB t -5", "E_INVALID DPUB could not parse timeout -5"),
        ("DPUB t", "E_INVALID DPUB insufficient number of parameters"),
    ] {
        let mut conn = nsqd.connect().await;
        conn.send(&cmd::with_body(line, b"x")).await;
        conn.expect_fatal(error).await;
    }
    let mut conn = nsqd.connect().await;
    conn.dpub("t", 3_600_000, b"x").await;
    conn.send(&cmd::with_body("DPUB t 0", b"y")).await;
    conn.expect_ok().await;
}

/// G67: a subscribed connection may PUB; it then shows in both `clients` and `producers`.
#[tokio::test]
async fn g67_consumer_can_publish() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 0).await;
    conn.publish("other", b"x").await;
    let address = conn.local_addr().to_string();
    let stats = nsqd.stats().await;
    let clients = channel_stats(&stats, "t", "c")
        .and_then(|channel| channel.clients.clone())
        .expect("clients");
    assert!(
        clients
            .iter()
            .any(|client| client.remote_address == address)
    );
    let producers = stats.producers.expect("producers listed");
    assert!(
        producers
            .iter()
            .any(|producer| producer.remote_address == address),
        "{producers:?}"
    );
}

/// G66 (body errors, tcp-protocol.md §6.12): DPUB's body errors read like PUB's, with `DPUB`.
#[tokio::test]
async fn g66_dpub_body_errors() {
    let nsqd = NsqdProcess::start(&["--max-msg-size=1024"]);
    let mut conn = nsqd.connect().await;
    conn.send(b"DPUB t 10\n\x00\x00\x00\x00").await;
    conn.expect_fatal("E_BAD_MESSAGE DPUB invalid message body size 0")
        .await;
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::with_body("DPUB t 10", &[b'x'; 1025])).await;
    conn.expect_fatal("E_BAD_MESSAGE DPUB message too big 1025 > 1024")
        .await;
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::with_body("DPUB bad! 10", b"x")).await;
    conn.expect_fatal(r#"E_BAD_TOPIC DPUB topic name "bad!" is not valid"#)
        .await;
}

/// G58 (flags): `--max-msg-size` and `--max-body-size` set the limits in the error texts.
#[tokio::test]
async fn g59_limits_follow_flags() {
    let nsqd = NsqdProcess::start(&["--max-msg-size=100", "--max-body-size=200"]);
    let mut conn = nsqd.connect().await;
    conn.publish("t", &[b'x'; 100]).await;
    conn.send(&cmd::publish("t", &[b'x'; 101])).await;
    conn.expect_fatal("E_BAD_MESSAGE PUB message too big 101 > 100")
        .await;
    let mut conn = nsqd.connect().await;
    conn.send(b"MPUB t\n\x00\x00\x00\xc9").await;
    conn.expect_fatal("E_BAD_BODY MPUB body too big 201 > 200")
        .await;
    // count > (max-body-size - 4) / 5 = 39
    let mut conn = nsqd.connect().await;
    conn.send(b"MPUB t\n\x00\x00\x00\xc8\x00\x00\x00\x28").await;
    conn.expect_fatal("E_BAD_BODY MPUB invalid message count 40")
        .await;
    let mut conn = nsqd.connect().await;
    conn.send(b"IDENTIFY\n\x00\x00\x00\xc9").await;
    conn.expect_fatal("E_BAD_BODY IDENTIFY body too big 201 > 200")
        .await;
}
