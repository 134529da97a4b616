//! End-to-end scenarios over several connections.

use crate::ms;
use nsq_protocol::Message;
use nsq_protocol::client::Producer;
use nsq_protocol::names::TopicName;
use nsq_tests::{NsqdProcess, RawConn, Read};
use std::collections::HashMap;
use std::time::Instant;

/// Receives and FINs messages until `expected` have arrived; returns body → count.
async fn consume_and_fin(consumer: &mut RawConn, expected: usize) -> HashMap<Vec<u8>, usize> {
    let mut counts = HashMap::new();
    for _ in 0..expected {
        let message = consumer.message_within(ms(10_000)).await;
        consumer.fin(&message).await;
        *counts.entry(message.body.to_vec()).or_insert(0) += 1;
    }
    counts
}

fn bodies(count: usize) -> Vec<bytes::Bytes> {
    (0..count)
        .map(|index| bytes::Bytes::from(format!("message-{index}")))
        .collect()
}

/// N messages to a topic with 3 channels arrive N times on each channel, each body once.
#[tokio::test]
async fn three_channels_each_receive_every_message() {
    const N: usize = 500;
    let nsqd = NsqdProcess::start(&[]);
    let mut consumers = Vec::new();
    for channel in ["c1", "c2", "c3"] {
        consumers.push(RawConn::consumer(nsqd.tcp_addr, "t", channel, "", 50).await);
    }
    let producer = Producer::connect(nsqd.tcp_addr).await.unwrap();
    let topic = TopicName::try_from(&b"t"[..]).unwrap();
    let all = bodies(N);
    for chunk in all.chunks(100) {
        producer
            .multi_publish(&topic, chunk.to_vec())
            .await
            .unwrap();
    }
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|mut consumer| {
            tokio::spawn(async move {
                let counts = consume_and_fin(&mut consumer, N).await;
                consumer.expect_silence(ms(300)).await;
                counts
            })
        })
        .collect();
    for task in tasks {
        let counts = task.await.unwrap();
        assert_eq!(counts.len(), N, "distinct bodies");
        assert!(
            counts.values().all(|count| *count == 1),
            "each body exactly once"
        );
    }
    let stats = nsqd
        .wait_stats(ms(5000), "all finished", |stats| {
            ["c1", "c2", "c3"].iter().all(|channel| {
                nsq_tests::channel_stats(stats, "t", channel)
                    .is_some_and(|channel| channel.in_flight_count == 0 && channel.depth == 0)
            })
        })
        .await;
    for channel in ["c1", "c2", "c3"] {
        let channel = nsq_tests::channel_stats(&stats, "t", channel).unwrap();
        assert_eq!(channel.message_count, N as u64);
        assert_eq!(channel.requeue_count + channel.timeout_count, 0);
    }
}

/// 4 consumers on one channel together receive each message exactly once when they all FIN.
#[tokio::test]
async fn four_consumers_share_a_channel_exactly_once() {
    const N: usize = 1000;
    let nsqd = NsqdProcess::start(&[]);
    let mut consumers = Vec::new();
    for _ in 0..4 {
        consumers.push(RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 20).await);
    }
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|mut consumer| {
            tokio::spawn(async move {
                let mut received: Vec<Message> = Vec::new();
                // Runs until the stream has been quiet for a while after the last message.
                loop {
                    match consumer.next(ms(1000)).await {
                        Read::Frame(nsq_protocol::Frame::Message(message), _) => {
                            consumer.fin(&message).await;
                            received.push(message);
                        }
                        Read::Frame(frame, _) if frame.is_heartbeat() => {}
                        Read::Timeout if !received.is_empty() => break,
                        Read::Timeout => {}
                        other => panic!("{other:?}"),
                    }
                }
                received
            })
        })
        .collect();
    let producer = Producer::connect(nsqd.tcp_addr).await.unwrap();
    let topic = TopicName::try_from(&b"t"[..]).unwrap();
    for body in bodies(N) {
        producer.publish(&topic, body).await.unwrap();
    }
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut per_consumer = Vec::new();
    for task in tasks {
        let received = task.await.unwrap();
        per_consumer.push(received.len());
        for message in received {
            assert_eq!(
                message.attempts, 1,
                "no redelivery when everything is FINed"
            );
            *counts.entry(message.body.to_vec()).or_insert(0) += 1;
        }
    }
    assert_eq!(
        counts.len(),
        N,
        "every message delivered (per consumer: {per_consumer:?})"
    );
    assert!(counts.values().all(|count| *count == 1), "exactly once");
    let channel = nsqd
        .wait_channel("t", "c", "all finished", |channel| {
            channel.in_flight_count == 0 && channel.depth == 0
        })
        .await;
    assert_eq!(channel.message_count, N as u64);
    assert_eq!(channel.requeue_count + channel.timeout_count, 0);
}

/// A consumer that never FINs sees every message again after msg_timeout, attempts 2.
#[tokio::test]
async fn never_fin_redelivers_after_msg_timeout() {
    const N: usize = 5;
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer =
        RawConn::consumer(nsqd.tcp_addr, "t", "c", r#""msg_timeout":1000"#, N as u64).await;
    crate::publish_all(&nsqd, "t", &bodies(N)).await;
    let mut first = HashMap::new();
    for _ in 0..N {
        let message = consumer.message().await;
        first.insert(message.id, (message.body.clone(), Instant::now()));
    }
    for _ in 0..N {
        let again = consumer.message_within(ms(8000)).await;
        let (body, delivered_at) = first.get(&again.id).expect("a message seen before");
        assert_eq!(&again.body, body);
        assert_eq!(again.attempts, 2);
        assert!(
            delivered_at.elapsed() >= ms(950),
            "after {:?}",
            delivered_at.elapsed()
        );
        consumer.fin(&again).await;
    }
    nsqd.wait_channel("t", "c", "timeouts counted", |channel| {
        channel.timeout_count == N as u64 && channel.in_flight_count == 0
    })
    .await;
}

/// A message REQ'd with 1500 ms is not delivered before 1.5 s.
#[tokio::test]
async fn req_with_delay_not_delivered_early() {
    let nsqd = NsqdProcess::start(&[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "t", "c", "", 10).await;
    crate::publish_all(&nsqd, "t", &["late"]).await;
    let message = consumer.message().await;
    let requeued_at = Instant::now();
    consumer.req(&message, 1500).await;
    consumer.expect_silence(ms(1400)).await;
    let again = consumer.message_within(ms(8000)).await;
    let elapsed = requeued_at.elapsed();
    assert!(elapsed >= ms(1500), "redelivered after {elapsed:?}");
    assert_eq!(again.id, message.id);
    assert_eq!(again.attempts, 2);
    consumer.fin(&again).await;
}
