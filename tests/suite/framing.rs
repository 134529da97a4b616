//! A. Connection and framing.

use crate::ms;
use nsq_protocol::Frame;
use nsq_tests::{NsqdProcess, RawConn, Read, cmd, topic_stats};
use std::time::{SystemTime, UNIX_EPOCH};

/// A1: the magic alone gets no greeting; the connection then works.
#[tokio::test]
async fn a01_magic_gets_no_greeting() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.expect_silence(ms(300)).await;
    conn.expect_open().await;
}

/// A2: a wrong magic gets the bare `E_BAD_PROTOCOL` error frame, then the close.
#[tokio::test]
async fn a02_bad_magic_is_e_bad_protocol() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = RawConn::connect_raw(nsqd.tcp_addr).await;
    conn.send(b"  V3").await;
    conn.expect_fatal("E_BAD_PROTOCOL").await;
}

/// A3: the `OK` response is exactly `00 00 00 06 00 00 00 00 4F 4B`.
#[tokio::test]
async fn a03_ok_frame_bytes() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::publish("t", b"x")).await;
    let (bytes, closed) = conn.bytes_at_least(10, ms(5000)).await;
    assert!(!closed);
    assert_eq!(
        bytes,
        [0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x4F, 0x4B]
    );
}

/// A4: command names are case-sensitive: `pub t x` is an invalid command, fatal.
#[tokio::test]
async fn a04_lowercase_command_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(b"pub t x\n").await;
    conn.expect_fatal("E_INVALID invalid command pub").await;
}

/// A5: an empty line is `E_INVALID invalid command ` (trailing space), fatal.
#[tokio::test]
async fn a05_empty_line_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(b"\n").await;
    conn.expect_fatal("E_INVALID invalid command ").await;
}

/// A6: a trailing `\r` is stripped and extra parameters are ignored.
#[tokio::test]
async fn a06_crlf_stripped_and_extra_params_ignored() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::with_body("PUB t\r", b"crlf")).await;
    conn.expect_ok().await;
    conn.send(&cmd::with_body("PUB t extra", b"extra")).await;
    conn.expect_ok().await;
    let stats = nsqd.stats().await;
    let topics: Vec<&str> = stats
        .topics
        .iter()
        .flatten()
        .map(|topic| topic.topic_name.as_str())
        .collect();
    assert_eq!(topics, ["t"], "both PUBs went to topic `t`");
    assert_eq!(topic_stats(&stats, "t").unwrap().message_count, 2);
}

/// A7: parameters are split on every single space: `SUB  t c` has an empty topic.
#[tokio::test]
async fn a07_double_space_gives_empty_topic() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(b"SUB  t c\n").await;
    conn.expect_fatal(r#"E_BAD_TOPIC SUB topic name "" is not valid"#)
        .await;
}

/// A8: a 16 000-byte line works; a line longer than 16 KiB is never answered with success.
#[tokio::test]
async fn a08_line_length_limit() {
    let nsqd = NsqdProcess::start(&[]);

    let prefix = "PUB a08 ";
    let mut long_ok = prefix.to_owned();
    long_ok.push_str(&"x".repeat(16_000 - prefix.len() - 1));
    let request = cmd::with_body(&long_ok, b"body");
    assert_eq!(request.iter().position(|byte| *byte == b'\n'), Some(15_999));
    let mut conn = nsqd.connect().await;
    conn.send(&request).await;
    conn.expect_ok().await;

    let mut too_long = prefix.to_owned();
    too_long.push_str(&"x".repeat(17_000));
    let mut conn = nsqd.connect().await;
    // The server may stop reading (and reset the connection) part way through.
    let _ = conn.try_send(&cmd::with_body(&too_long, b"body")).await;
    loop {
        match conn.next(ms(5000)).await {
            Read::Closed => break,
            Read::Frame(Frame::Response(data), _) => {
                panic!(
                    "over-long line answered with {:?}",
                    String::from_utf8_lossy(&data)
                )
            }
            Read::Frame(frame, _) => assert!(
                matches!(frame, Frame::Error(_)),
                "unexpected frame {frame:?}"
            ),
            Read::Timeout => panic!("over-long line: connection neither closed nor answered"),
        }
    }
    let stats = nsqd.stats().await;
    assert_eq!(topic_stats(&stats, "a08").unwrap().message_count, 1);
}

/// A9: message frame layout: 8-byte ns timestamp, 2-byte attempts (1 on first delivery),
/// 16 lower-case hex ID characters, body.
#[tokio::test]
async fn a09_message_frame_layout() {
    let nsqd = NsqdProcess::start(&[]);
    let before = now_ns();
    let mut producer = nsqd.connect().await;
    producer.publish("t", b"hello world").await;
    let after = now_ns();

    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 1).await;
    let (frame, bytes) = consumer.frame_with_bytes().await;
    assert!(matches!(frame, Frame::Message(_)), "{frame:?}");
    let body = b"hello world";
    assert_eq!(bytes.len(), 4 + 4 + 26 + body.len());
    assert_eq!(&bytes[0..4], &(4 + 26 + body.len() as u32).to_be_bytes());
    assert_eq!(&bytes[4..8], &2u32.to_be_bytes(), "frame type 2");
    let timestamp = i64::from_be_bytes(bytes[8..16].try_into().unwrap());
    assert!(
        (before..=after).contains(&timestamp),
        "timestamp {timestamp} not within the publish window {before}..={after}"
    );
    assert_eq!(u16::from_be_bytes([bytes[16], bytes[17]]), 1, "attempts");
    let id = &bytes[18..34];
    assert!(
        id.iter()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte)),
        "ID is 16 lower-case hex characters: {:?}",
        String::from_utf8_lossy(id)
    );
    assert_eq!(&bytes[34..], body);
}

fn now_ns() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_nanos()).unwrap()
}
