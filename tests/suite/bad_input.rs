//! Hostile and broken clients: after each, another client still publishes and consumes.

use crate::{assert_healthy, ms};
use nsq_tests::{NsqdProcess, RawConn, Read, topic_stats};

/// Deterministic pseudo-random bytes (xorshift), so failures can be replayed.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()[0]
        })
        .collect()
}

/// Reads until the server closes, ignoring frames; panics if it stays open.
async fn expect_eventually_closed(conn: &mut RawConn) {
    loop {
        match conn.next(ms(5000)).await {
            Read::Closed => return,
            Read::Frame(..) => {}
            Read::Timeout => panic!("connection still open after garbage"),
        }
    }
}

/// Garbage instead of the magic, and garbage (ending in a newline) after it.
#[tokio::test]
async fn garbage_bytes() {
    let nsqd = NsqdProcess::start(&[]);
    for seed in 1..=5u64 {
        let mut conn = RawConn::connect_raw(nsqd.tcp_addr).await;
        let mut bytes = garbage(4096, seed);
        bytes[0] = b'X';
        let _ = conn.try_send(&bytes).await;
        expect_eventually_closed(&mut conn).await;

        let mut conn = nsqd.connect().await;
        let mut bytes = garbage(4096, seed + 100);
        bytes.push(b'\n');
        let _ = conn.try_send(&bytes).await;
        expect_eventually_closed(&mut conn).await;
    }
    assert_healthy(&nsqd, "garbage").await;
}

/// Wrong magics get `E_BAD_PROTOCOL` and a close.
#[tokio::test]
async fn wrong_magic() {
    let nsqd = NsqdProcess::start(&[]);
    for magic in [
        &b"  V1"[..],
        b"V2  ",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\0\0\0\0",
    ] {
        let mut conn = RawConn::connect_raw(nsqd.tcp_addr).await;
        let _ = conn.try_send(magic).await;
        conn.expect_fatal("E_BAD_PROTOCOL").await;
    }
    assert_healthy(&nsqd, "magic").await;
}

/// A 10 MB body announced to PUB, MPUB and IDENTIFY is refused without being buffered.
#[tokio::test]
async fn ten_megabyte_body() {
    let nsqd = NsqdProcess::start(&[]);
    let body = vec![b'z'; 10 * 1024 * 1024];
    for (line, error) in [
        (
            "PUB t",
            "E_BAD_MESSAGE PUB message too big 10485760 > 1048576",
        ),
        ("MPUB t", "E_BAD_BODY MPUB body too big 10485760 > 5242880"),
        (
            "IDENTIFY",
            "E_BAD_BODY IDENTIFY body too big 10485760 > 5242880",
        ),
    ] {
        let mut conn = nsqd.connect().await;
        conn.send(&nsq_tests::cmd::line(line)).await;
        conn.send(&10_485_760i32.to_be_bytes()).await;
        // The server stops reading after the size, so the write may fail or stall part way.
        let _ = tokio::time::timeout(ms(5000), conn.try_send(&body)).await;
        conn.expect_fatal(error).await;
    }
    let stats = nsqd.stats().await;
    assert!(topic_stats(&stats, "t").is_none_or(|topic| topic.message_count == 0));
    assert_healthy(&nsqd, "big").await;
}

/// Half a frame, then a disconnect, for every body-carrying command and a bare line.
#[tokio::test]
async fn half_frame_then_disconnect() {
    let nsqd = NsqdProcess::start(&[]);
    let partials: [&[u8]; 7] = [
        b"PUB half\n\x00\x00\x00\x64only-part-of-the-body",
        b"PUB half\n\x00\x00",
        b"MPUB half\n\x00\x00\x00\x20\x00\x00\x00\x02\x00\x00\x00\x05ab",
        b"DPUB half 10\n\x00\x00\x00\x10abc",
        b"IDENTIFY\n\x00\x00\x00\x40{\"feature_negotiation\"",
        b"SUB half c",
        b" V",
    ];
    for partial in partials {
        let mut conn = RawConn::connect_raw(nsqd.tcp_addr).await;
        if partial != b" V" {
            conn.send(b"  V2").await;
        }
        conn.send(partial).await;
        drop(conn);
    }
    // A subscribed consumer that half-sends a FIN and disconnects while holding a message.
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "half2", "c", "", 1).await;
    let mut producer = nsqd.connect().await;
    producer.publish("half2", b"held").await;
    let _held = consumer.message().await;
    consumer.send(b"FIN 01234").await;
    drop(consumer);

    nsqd.wait_stats(ms(5000), "the half-open connections are gone", |stats| {
        stats.topics.iter().flatten().all(|topic| {
            topic
                .channels
                .iter()
                .all(|channel| channel.client_count == 0)
        })
    })
    .await;
    let stats = nsqd.stats().await;
    assert!(
        topic_stats(&stats, "half").is_none_or(|topic| topic.message_count == 0),
        "nothing from a half frame is published"
    );
    assert_healthy(&nsqd, "half").await;
}

/// 500 connections opened at once and dropped (some after the magic, some mid-command).
#[tokio::test]
async fn five_hundred_connections_opened_and_dropped() {
    let nsqd = NsqdProcess::start(&[]);
    let addr = nsqd.tcp_addr;
    let tasks: Vec<_> = (0..500)
        .map(|index| {
            tokio::spawn(async move {
                let mut conn = RawConn::connect_raw(addr).await;
                match index % 4 {
                    0 => {}
                    1 => conn.send(b"  V2").await,
                    2 => conn.send(b"  V2SUB many c\nRDY 10\n").await,
                    _ => conn.send(b"  V2PUB many\n\x00\x00").await,
                }
                conn
            })
        })
        .collect();
    let mut conns = Vec::new();
    for task in tasks {
        conns.push(task.await.unwrap());
    }
    assert_healthy(&nsqd, "during").await;
    drop(conns);
    nsqd.wait_stats(ms(10_000), "all 500 consumers gone", |stats| {
        stats.topics.iter().flatten().all(|topic| {
            topic
                .channels
                .iter()
                .all(|channel| channel.client_count == 0)
        })
    })
    .await;
    assert_healthy(&nsqd, "after").await;
}
