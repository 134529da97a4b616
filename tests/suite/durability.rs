//! Disk spill and restart persistence (checklist K and the disk-queue issue): messages beyond
//! `--mem-queue-size` go to the disk queue and all come back; a clean shutdown writes queued,
//! in-flight and deferred messages to disk and a restart delivers them (deferred ones at their
//! original due time, which upstream loses); a damaged byte costs exactly one record.

use nsq_tests::{NsqdProcess, RawConn, channel_stats};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Consumes `count` messages (FINning each) and returns their bodies.
async fn consume_all(consumer: &mut RawConn, count: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::with_capacity(count);
    while bodies.len() < count {
        let message = consumer.message_within(Duration::from_secs(20)).await;
        bodies.push(message.body.to_vec());
        consumer.fin(&message).await;
    }
    bodies
}

#[tokio::test]
async fn k108_spill_beyond_mem_queue_size_shows_backend_depth() {
    let nsqd = NsqdProcess::start(&["--mem-queue-size=2"]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "spill", "c", "", 0).await;
    let mut producer = nsqd.connect().await;
    for n in 0..8 {
        producer.publish("spill", format!("m{n}").as_bytes()).await;
    }
    let channel = nsqd
        .wait_channel("spill", "c", "depth 8", |c| c.depth == 8)
        .await;
    assert_eq!(channel.backend_depth, 6);
    let files: Vec<String> = std::fs::read_dir(&nsqd.data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files
            .iter()
            .any(|name| name.starts_with("spill:c.diskqueue2.")),
        "no disk queue file for spill:c in {files:?}"
    );
    consumer.rdy(10).await;
    let bodies: HashSet<Vec<u8>> = consume_all(&mut consumer, 8).await.into_iter().collect();
    assert_eq!(bodies.len(), 8);
    nsqd.wait_channel("spill", "c", "drained", |c| {
        c.depth == 0 && c.in_flight_count == 0
    })
    .await;
}

#[tokio::test]
async fn spill_100k_messages_with_mem_queue_size_100_all_arrive() {
    let nsqd = NsqdProcess::start(&["--mem-queue-size=100", "--max-bytes-per-file=1048576"]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "big", "c", "", 0).await;
    let mut producer = nsqd.connect().await;
    const TOTAL: usize = 100_000;
    for batch in 0..(TOTAL / 1000) {
        let bodies: Vec<Vec<u8>> = (0..1000)
            .map(|n| format!("message-{:06}", batch * 1000 + n).into_bytes())
            .collect();
        producer.mpub("big", &bodies).await;
    }
    let channel = nsqd
        .wait_channel("big", "c", "all accepted", |c| c.depth == TOTAL as i64)
        .await;
    assert!(channel.backend_depth >= (TOTAL - 100) as i64, "{channel:?}");
    consumer.rdy(2500).await;
    let bodies = consume_all(&mut consumer, TOTAL).await;
    let distinct: HashSet<Vec<u8>> = bodies.into_iter().collect();
    assert_eq!(distinct.len(), TOTAL);
    nsqd.wait_channel("big", "c", "drained", |c| {
        c.depth == 0 && c.in_flight_count == 0
    })
    .await;
}

#[tokio::test]
async fn sigterm_then_restart_delivers_queued_in_flight_and_deferred_messages() {
    let data = tempfile::tempdir().unwrap();
    let mut nsqd = NsqdProcess::start_in(data.path(), &[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "keep", "c", "", 0).await;
    let mut producer = nsqd.connect().await;
    for n in 0..5 {
        producer
            .publish("keep", format!("queued-{n}").as_bytes())
            .await;
    }
    consumer.rdy(3).await;
    let first = consumer.message().await;
    let second = consumer.message().await;
    let third = consumer.message().await;
    // One REQ'd with a long delay (deferred), two left in flight, nothing more delivered.
    consumer.rdy(0).await;
    consumer.req(&third, 4_000).await;
    let deferred_due = Instant::now() + Duration::from_millis(4_000);
    producer.dpub("keep", 3_000, b"dpub-3s").await;
    let dpub_due = Instant::now() + Duration::from_millis(3_000);
    nsqd.wait_channel("keep", "c", "2 in flight, 2 deferred", |c| {
        c.in_flight_count == 2 && c.deferred_count == 2
    })
    .await;
    drop(consumer);
    drop(producer);
    assert!(nsqd.stop().success(), "nsqd did not exit 0");

    let nsqd = NsqdProcess::start_in(data.path(), &[]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "keep", "c", "", 10).await;
    let mut immediate = Vec::new();
    for _ in 0..4 {
        let message = consumer.message_within(Duration::from_secs(5)).await;
        immediate.push(message.clone());
        consumer.fin(&message).await;
    }
    let in_flight_again: Vec<_> = immediate
        .iter()
        .filter(|m| m.id == first.id || m.id == second.id)
        .collect();
    assert_eq!(
        in_flight_again.len(),
        2,
        "both in-flight messages come back"
    );
    for message in in_flight_again {
        assert_eq!(
            message.attempts, 2,
            "in-flight messages keep their attempts"
        );
    }
    let mut late = Vec::new();
    for _ in 0..2 {
        let message = consumer.message_within(Duration::from_secs(10)).await;
        late.push((message.body.to_vec(), Instant::now()));
        consumer.fin(&message).await;
    }
    for (body, arrived) in late {
        if body == b"dpub-3s" {
            assert!(arrived >= dpub_due, "DPUB delivered before its due time");
        } else {
            assert_eq!(body, third.body.to_vec());
            assert!(
                arrived >= deferred_due,
                "REQ'd message delivered before its due time"
            );
        }
    }
}

#[tokio::test]
async fn a_corrupted_byte_loses_only_the_record_it_hits() {
    let data = tempfile::tempdir().unwrap();
    let mut nsqd = NsqdProcess::start_in(data.path(), &["--mem-queue-size=0"]);
    let consumer = RawConn::consumer(nsqd.tcp_addr, "dmg", "c", "", 0).await;
    let mut producer = nsqd.connect().await;
    for n in 0..10 {
        producer
            .publish(
                "dmg",
                format!("record-{n:02}-{}", "x".repeat(40)).as_bytes(),
            )
            .await;
    }
    nsqd.wait_channel("dmg", "c", "10 on disk", |c| c.backend_depth == 10)
        .await;
    drop(consumer);
    drop(producer);
    assert!(nsqd.stop().success());

    let segment = std::fs::read_dir(data.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("dmg:c.diskqueue2.")
                && name.ends_with(".dat")
                && !name.contains("meta")
        })
        .expect("segment file");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();

    let nsqd = NsqdProcess::start_in(data.path(), &["--mem-queue-size=0"]);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "dmg", "c", "", 20).await;
    let bodies = consume_all(&mut consumer, 9).await;
    assert_eq!(bodies.iter().collect::<HashSet<_>>().len(), 9);
    consumer.expect_silence(Duration::from_millis(300)).await;
    let stats = nsqd.stats().await;
    let channel = channel_stats(&stats, "dmg", "c").expect("channel");
    assert_eq!(channel.depth, 0, "{channel:?}");
}

/// Copies a directory (flat: the upstream data dir has no subdirectories).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// One message of `upstream-datadir.expected.json`: (id, timestamp, attempts when delivered, body).
type Expected = (String, i64, u16, Vec<u8>);

fn expected_message(message: &serde_json::Value) -> Expected {
    use base64::Engine as _;
    let body = match message["body"].as_str() {
        Some(text) => text.as_bytes().to_vec(),
        None => base64::engine::general_purpose::STANDARD
            .decode(
                message["body_base64"]
                    .as_str()
                    .expect("body or body_base64"),
            )
            .expect("valid base64"),
    };
    let attempts_on_disk = message["attempts_on_disk"]
        .as_u64()
        .expect("attempts_on_disk");
    let attempts = message["attempts_when_redelivered"]
        .as_u64()
        .unwrap_or(attempts_on_disk + 1);
    (
        message["id"].as_str().expect("id").to_owned(),
        message["timestamp_ns"].as_i64().expect("timestamp_ns"),
        attempts as u16,
        body,
    )
}

/// A copy of a data dir written by upstream nsqd (go-diskqueue files, `nsqd.dat`) comes up with
/// its topics, channels and paused flags, and delivers exactly the messages upstream left there,
/// with their IDs, timestamps and attempts (+1 for this delivery) kept.
#[tokio::test]
async fn upstream_data_dir_delivers_exactly_its_messages() {
    let fixtures = nsq_tests::shared_dir().join("fixtures");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("upstream-datadir.expected.json")).unwrap(),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    copy_dir(&fixtures.join("upstream-datadir"), data.path());
    let nsqd = NsqdProcess::start_in(data.path(), &[]);

    let stats = nsqd.stats().await;
    let paused = |topic: &str, channel: &str| {
        channel_stats(&stats, topic, channel)
            .unwrap_or_else(|| panic!("{topic}/{channel} restored"))
            .paused
    };
    assert!(!paused("orders", "billing"));
    assert!(paused("orders", "audit"));
    assert!(!paused("events", "all"));
    assert!(nsq_tests::topic_stats(&stats, "events").unwrap().paused);

    assert_eq!(
        nsqd.post("/channel/unpause?topic=orders&channel=audit")
            .await
            .0,
        200
    );
    assert_eq!(nsqd.post("/topic/unpause?topic=events").await.0, 200);

    for topic in expected["topics"].as_array().unwrap() {
        let topic_name = topic["name"].as_str().unwrap();
        for channel in topic["channels"].as_array().unwrap() {
            let channel_name = channel["name"].as_str().unwrap();
            let mut want: Vec<Expected> = channel["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(expected_message)
                .collect();
            // (The channel's list already holds the messages that were waiting at the topic: they
            // reach its only channel once the topic is unpaused.)
            let mut consumer =
                RawConn::consumer(nsqd.tcp_addr, topic_name, channel_name, "", 500).await;
            let mut got: Vec<Expected> = Vec::with_capacity(want.len());
            while got.len() < want.len() {
                let message = consumer.message_within(Duration::from_secs(10)).await;
                got.push((
                    String::from_utf8_lossy(message.id.as_bytes()).into_owned(),
                    message.timestamp,
                    message.attempts,
                    message.body.to_vec(),
                ));
                consumer.fin(&message).await;
            }
            consumer.expect_silence(Duration::from_millis(300)).await;
            want.sort();
            got.sort();
            assert_eq!(got.len(), want.len(), "{topic_name}/{channel_name}");
            for (got, want) in got.iter().zip(&want) {
                assert_eq!(got, want, "{topic_name}/{channel_name}");
            }
        }
    }
}

/// Mounts a small tmpfs for the test's lifetime (needs root; `None` otherwise).
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// A full disk: PUB gets `E_PUB_FAILED`, `/ping` reports unhealthy, nothing acknowledged is lost,
/// and the node recovers by itself once space returns.
#[tokio::test]
async fn disk_full_fails_publishes_cleanly_and_recovers() {
    disk_full_case(&["--mem-queue-size=0"]).await;
}

/// The same in durable mode: the failing write (or fsync) answers E_PUB_FAILED instead of OK.
#[tokio::test]
async fn durable_disk_full_fails_publishes_cleanly_and_recovers() {
    disk_full_case(&["--durable"]).await;
}

async fn disk_full_case(args: &[&str]) {
    let Some(filesystem) = SmallFilesystem::mount("4m") else {
        eprintln!("SKIPPED disk_full test: mounting a tmpfs needs root (run the suite as root)");
        return;
    };
    let mut nsqd = NsqdProcess::start_in(filesystem.dir.path(), args);
    let consumer = RawConn::consumer(nsqd.tcp_addr, "full", "c", "", 0).await;
    let body = vec![b'x'; 64 * 1024];
    let mut producer = nsqd.connect().await;
    let mut acknowledged = 0i64;
    let failure = loop {
        producer.send(&nsq_tests::cmd::publish("full", &body)).await;
        match producer.frame().await {
            nsq_protocol::Frame::Response(data) if &data[..] == b"OK" => acknowledged += 1,
            nsq_protocol::Frame::Error(data) => break String::from_utf8_lossy(&data).into_owned(),
            other => panic!("unexpected frame {other:?}"),
        }
        assert!(acknowledged < 1000, "a 4 MiB filesystem never filled up");
    };
    assert!(failure.starts_with("E_PUB_FAILED PUB failed"), "{failure}");
    producer.expect_closed().await;
    let http_publish = reqwest::Client::new()
        .post(nsqd.url("/pub?topic=full"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(http_publish.status(), 500, "HTTP /pub on a full disk");
    let (status, reason) = nsqd.get("/ping").await;
    assert_eq!(status, 500, "{reason}");
    let channel = nsqd.wait_channel("full", "c", "depth", |_| true).await;
    assert!(
        channel.depth >= acknowledged,
        "acknowledged {acknowledged}, depth {}",
        channel.depth
    );

    // Space returns: the node serves again without a restart.
    assert_eq!(
        nsqd.post("/channel/empty?topic=full&channel=c").await.0,
        200
    );
    let mut producer = nsqd.connect().await;
    producer.publish("full", b"after").await;
    let (status, body) = nsqd.get("/ping").await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    drop(consumer);
    assert!(nsqd.stop().success());
}
