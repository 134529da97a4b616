//! Crash test (the disk-queue issue's "durable mode" criterion): publishers publish with
//! acknowledgements (PUB, MPUB, DPUB) and a consumer FINs some messages and holds others in flight
//! while nsqd is killed with SIGKILL at random moments, several times on the same data dir. After
//! the last restart a consumer drains the node. Every acknowledged message must then have been
//! delivered and FINished at least once (duplicates are allowed and counted), and no deferred
//! message may arrive before its due time.
//!
//! `--durable` must lose nothing. The default mode (upstream's promise: a crash loses what was in
//! memory) runs the same schedule and only reports its loss.

use nsq_protocol::frame::Frame;
use nsq_tests::{NsqdProcess, RawConn, Read, cmd};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOPIC: &str = "crash";
const CHANNEL: &str = "c";
const PUBLISHERS: usize = 4;
const ROUNDS: usize = 5;
/// Deliveries before the due time minus this are counted as early (clock reads on both sides).
const EARLY_TOLERANCE: Duration = Duration::from_millis(50);

/// Whether a delivery now comes before `due` (beyond the tolerance).
fn is_early(due: Instant) -> bool {
    Instant::now() + EARLY_TOLERANCE < due
}

/// Panics if a delivery now comes before `due`.
fn assert_not_early(due: Instant, what: &str) {
    assert!(
        !is_early(due),
        "{what} arrived {:?} before its due time",
        due.saturating_duration_since(Instant::now())
    );
}

/// What the test saw, shared by its tasks.
#[derive(Default)]
struct Ledger {
    /// Acknowledged bodies, with the earliest time each may be delivered (DPUB).
    acked: HashMap<String, Option<Instant>>,
    /// FINished bodies and how many times each was delivered and FINished.
    finished: HashMap<String, u32>,
    /// Deferred bodies delivered before their due time.
    early: Vec<String>,
}

#[derive(Debug)]
struct Report {
    acked: usize,
    lost: usize,
    duplicates: u32,
    early: usize,
}

/// A small deterministic generator (xorshift64*), seeded per run and printed, so a failing
/// schedule can be replayed with CRASH_SEED.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            });
        println!("crash test seed: CRASH_SEED={seed}");
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Publishes until the connection breaks, recording what was acknowledged.
async fn publisher(
    addr: std::net::SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    round: usize,
    id: usize,
) {
    let mut conn = RawConn::connect(addr).await;
    let mut seq = 0usize;
    loop {
        let kind = seq % 4;
        let bodies: Vec<String> = match kind {
            0 => (0..20)
                .map(|n| format!("r{round}-p{id}-m{seq}-{n}"))
                .collect(),
            _ => vec![format!("r{round}-p{id}-m{seq}")],
        };
        let defer = (kind == 3).then(|| Duration::from_millis(200 + (seq as u64 * 37) % 1300));
        let command = match (kind, defer) {
            (0, _) => cmd::mpub(TOPIC, &bodies),
            (_, Some(defer)) => cmd::dpub(TOPIC, defer.as_millis() as u64, bodies[0].as_bytes()),
            _ => cmd::publish(TOPIC, bodies[0].as_bytes()),
        };
        let sent_at = Instant::now();
        if conn.try_send(&command).await.is_err() {
            return;
        }
        match conn.next(Duration::from_secs(10)).await {
            Read::Frame(Frame::Response(data), _) if &data[..] == b"OK" => {
                let due = defer.map(|defer| sent_at + defer);
                let mut ledger = ledger.lock().unwrap();
                for body in bodies {
                    ledger.acked.insert(body, due);
                }
            }
            Read::Frame(Frame::Error(_), _) | Read::Closed | Read::Timeout => return,
            other => panic!("publisher: unexpected {other:?}"),
        }
        seq += 1;
    }
}

/// Consumes until the connection breaks or `idle` passes without a message. FINs every message,
/// except (when `hold_some`) every seventh, which it keeps in flight unanswered: those time out
/// after 1.5 s and are delivered again, or, if nsqd is killed first, must come back after the
/// restart.
async fn consumer(
    addr: std::net::SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    hold_some: bool,
    idle: Duration,
    mut done: impl FnMut(&Ledger) -> bool,
) {
    let mut conn = RawConn::connect(addr).await;
    conn.send(&cmd::identify(r#"{"msg_timeout":1500}"#)).await;
    conn.send(&cmd::sub(TOPIC, CHANNEL)).await;
    for _ in 0..2 {
        match conn.next(Duration::from_secs(10)).await {
            Read::Frame(Frame::Response(data), _) if &data[..] == b"OK" => {}
            _ => return,
        }
    }
    if conn.try_send(&cmd::rdy(200)).await.is_err() {
        return;
    }
    let mut deliveries = 0u64;
    loop {
        if done(&ledger.lock().unwrap()) {
            return;
        }
        let message = match conn.next(idle).await {
            Read::Frame(Frame::Message(message), _) => message,
            Read::Frame(frame, _) if frame.is_heartbeat() => {
                if conn.try_send(&cmd::nop()).await.is_err() {
                    return;
                }
                continue;
            }
            Read::Frame(_, _) | Read::Closed | Read::Timeout => return,
        };
        deliveries += 1;
        let body = String::from_utf8_lossy(&message.body).into_owned();
        {
            let mut ledger = ledger.lock().unwrap();
            if let Some(Some(due)) = ledger.acked.get(&body).copied()
                && is_early(due)
            {
                ledger.early.push(body.clone());
            }
        }
        if hold_some && deliveries.is_multiple_of(7) {
            continue;
        }
        if conn
            .try_send(&cmd::fin(&message.id.to_string()))
            .await
            .is_err()
        {
            return;
        }
        *ledger.lock().unwrap().finished.entry(body).or_insert(0) += 1;
    }
}

async fn start(data_dir: &Path, durable: bool) -> NsqdProcess {
    let durable_flag = format!("--durable={durable}");
    let nsqd = NsqdProcess::start_in(
        data_dir,
        &[
            &durable_flag,
            "--mem-queue-size=500",
            "--max-bytes-per-file=262144",
            "--sync-every=200",
            "--sync-timeout=100ms",
        ],
    );
    for path in [
        format!("/topic/create?topic={TOPIC}"),
        format!("/channel/create?topic={TOPIC}&channel={CHANNEL}"),
    ] {
        let (status, body) = nsqd.post(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    nsqd
}

async fn run_crashes(durable: bool) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Rng::new();
    for round in 0..ROUNDS {
        let mut nsqd = start(dir.path(), durable).await;
        let addr = nsqd.tcp_addr;
        let mut tasks = Vec::new();
        for id in 0..PUBLISHERS {
            tasks.push(tokio::spawn(publisher(
                addr,
                Arc::clone(&ledger),
                round,
                id,
            )));
        }
        tasks.push(tokio::spawn(consumer(
            addr,
            Arc::clone(&ledger),
            true,
            Duration::from_secs(30),
            |_| false,
        )));
        tokio::time::sleep(Duration::from_millis(300 + rng.below(900))).await;
        nsqd.kill();
        for task in tasks {
            // A task may panic on a frame cut by the kill; that only ends it.
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    let nsqd = start(dir.path(), durable).await;
    let all_finished = |ledger: &Ledger| {
        ledger
            .acked
            .keys()
            .all(|body| ledger.finished.contains_key(body))
    };
    // Deferred messages wait up to 1.5 s; in default mode lost messages never come, so the
    // drain ends once nothing arrives for a while.
    let drain = consumer(
        nsqd.tcp_addr,
        Arc::clone(&ledger),
        false,
        Duration::from_secs(4),
        all_finished,
    );
    tokio::time::timeout(Duration::from_secs(120), drain)
        .await
        .expect("final drain took over 2 minutes");

    let ledger = ledger.lock().unwrap();
    let lost = ledger
        .acked
        .keys()
        .filter(|body| !ledger.finished.contains_key(*body))
        .count();
    let duplicates = ledger
        .finished
        .values()
        .map(|count| count.saturating_sub(1))
        .sum();
    Report {
        acked: ledger.acked.len(),
        lost,
        duplicates,
        early: ledger.early.len(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_mode_loses_nothing_across_sigkills() {
    let report = run_crashes(true).await;
    println!(
        "crash test --durable: {} rounds, acked {}, lost {}, duplicates {}, early deferred {}",
        ROUNDS, report.acked, report.lost, report.duplicates, report.early
    );
    assert!(report.acked > 1000, "too little was published: {report:?}");
    assert_eq!(report.lost, 0, "acknowledged messages lost: {report:?}");
    assert_eq!(
        report.early, 0,
        "deferred messages delivered early: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn default_mode_reports_its_loss_across_sigkills() {
    let report = run_crashes(false).await;
    println!(
        "crash test default mode: {} rounds, acked {}, lost {} ({:.1} %), duplicates {}, early deferred {}",
        ROUNDS,
        report.acked,
        report.lost,
        100.0 * report.lost as f64 / report.acked.max(1) as f64,
        report.duplicates,
        report.early
    );
    assert!(report.acked > 1000, "too little was published: {report:?}");
}

// ---- durable mode, one mechanism at a time ------------------------------------------------------

fn durable_args() -> Vec<&'static str> {
    vec!["--durable", "--sync-timeout=1h", "--sync-every=1000000000"]
}

/// Messages published to a topic with no channel wait in the topic's disk queue: after a kill -9
/// they are all handed to the channel created after the restart, deferred ones not before their
/// due time. (Metadata is never synced here, so recovery must find every record by scanning.)
#[tokio::test]
async fn durable_topic_backlog_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut nsqd = NsqdProcess::start_in(dir.path(), &durable_args());
    let mut producer = nsqd.connect().await;
    let bodies: Vec<String> = (0..500).map(|n| format!("backlog-{n}")).collect();
    producer.mpub("orphan", &bodies).await;
    producer.send(&cmd::dpub("orphan", 2500, b"deferred")).await;
    producer.expect_ok().await;
    let deferred_due = Instant::now() + Duration::from_millis(2500);
    nsqd.kill();

    let nsqd = NsqdProcess::start_in(dir.path(), &durable_args());
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "orphan", "c", "", 1000).await;
    let mut seen = HashMap::new();
    while seen.len() < 501 {
        let message = consumer.message_within(Duration::from_secs(10)).await;
        let body = String::from_utf8_lossy(&message.body).into_owned();
        if body == "deferred" {
            assert_not_early(deferred_due, "the deferred message");
        }
        *seen.entry(body).or_insert(0u32) += 1;
        consumer.fin(&message).await;
    }
    for body in &bodies {
        assert!(seen.contains_key(body), "{body} lost");
    }
}

/// REQ with a delay moves the message to a record carrying its due time: after a kill -9 it comes
/// back, not before that time, with the attempts it had.
#[tokio::test]
async fn durable_req_delay_survives_sigkill_with_its_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut nsqd = NsqdProcess::start_in(dir.path(), &durable_args());
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "req", "c", "", 1).await;
    let mut producer = nsqd.connect().await;
    producer.publish("req", b"retry-me").await;
    let message = consumer.message_within(Duration::from_secs(10)).await;
    assert_eq!(message.attempts, 1);
    consumer.req(&message, 3000).await;
    let due = Instant::now() + Duration::from_millis(3000);
    nsqd.wait_channel("req", "c", "the message deferred", |c| {
        c.deferred_count == 1 && c.in_flight_count == 0
    })
    .await;
    nsqd.kill();

    let nsqd = NsqdProcess::start_in(dir.path(), &durable_args());
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "req", "c", "", 1).await;
    let again = consumer.message_within(Duration::from_secs(10)).await;
    assert_not_early(due, "the REQ'd message");
    assert_eq!(again.id, message.id);
    assert_eq!(&again.body[..], b"retry-me");
    assert_eq!(again.attempts, 2, "attempts kept across the crash");
    consumer.fin(&again).await;
    consumer.expect_silence(Duration::from_millis(300)).await;
}

/// A message deferred for long pins the segment its record is in; once consumers have moved past
/// whole segments, the message is relocated so finished segments are deleted (disk use stays
/// bounded), and it still survives a kill -9 with its due time.
#[tokio::test]
async fn durable_long_deferred_message_is_relocated_and_old_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--durable",
        "--max-bytes-per-file=4096",
        "--sync-every=50",
        "--sync-timeout=20ms",
    ];
    let mut nsqd = NsqdProcess::start_in(dir.path(), &args);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "pinned", "c", "", 100).await;
    let mut producer = nsqd.connect().await;
    producer.send(&cmd::dpub("pinned", 6000, b"later")).await;
    producer.expect_ok().await;
    let due = Instant::now() + Duration::from_millis(6000);
    let bodies: Vec<Vec<u8>> = (0..2000)
        .map(|n| format!("{n:0>100}").into_bytes())
        .collect();
    for chunk in bodies.chunks(100) {
        producer.mpub("pinned", chunk).await;
    }
    for _ in 0..2000 {
        let message = consumer.message_within(Duration::from_secs(10)).await;
        assert_ne!(
            &message.body[..],
            b"later",
            "deferred message delivered early"
        );
        consumer.fin(&message).await;
    }
    let segments = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                (name.starts_with("pinned:c.diskqueue2.")
                    && name.ends_with(".dat")
                    && !name.contains("meta"))
                .then_some(name)
            })
            .count()
    };
    // 2,000 records of ~150 bytes fill ~75 segments of 4 KiB.
    let bounded = nsq_tests::wait_until(Duration::from_secs(10), || segments(dir.path()) <= 2);
    assert!(
        bounded,
        "old segments kept: {} segment files remain",
        segments(dir.path())
    );
    nsqd.kill();

    let nsqd = NsqdProcess::start_in(dir.path(), &args);
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "pinned", "c", "", 100).await;
    let message = consumer.message_within(Duration::from_secs(10)).await;
    assert_eq!(&message.body[..], b"later");
    assert_not_early(due, "the deferred message");
    consumer.fin(&message).await;
}

/// HTTP `/pub`, `/mpub` and deferred `/pub` answer `OK` only once durable: all survive a kill -9.
#[tokio::test]
async fn durable_http_publishes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut nsqd = NsqdProcess::start_in(dir.path(), &durable_args());
    let client = reqwest::Client::new();
    let post = |path: &str, body: &'static str| client.post(nsqd.url(path)).body(body).send();
    let reply = post("/pub?topic=web", "one").await.unwrap();
    assert_eq!(reply.status(), 200);
    let reply = post("/mpub?topic=web", "two\nthree\n").await.unwrap();
    assert_eq!(reply.status(), 200);
    let reply = post("/pub?topic=web&defer=1500", "later").await.unwrap();
    assert_eq!(reply.status(), 200);
    let due = Instant::now() + Duration::from_millis(1500);
    nsqd.kill();

    let nsqd = NsqdProcess::start_in(dir.path(), &durable_args());
    let mut consumer = RawConn::consumer(nsqd.tcp_addr, "web", "c", "", 10).await;
    let mut bodies = Vec::new();
    while bodies.len() < 4 {
        let message = consumer.message_within(Duration::from_secs(10)).await;
        if &message.body[..] == b"later" {
            assert_not_early(due, "the deferred /pub");
        }
        bodies.push(String::from_utf8_lossy(&message.body).into_owned());
        consumer.fin(&message).await;
    }
    bodies.sort();
    assert_eq!(bodies, ["later", "one", "three", "two"]);
}

/// A consumer's sample rate drops messages for its channel; in durable mode their records are
/// released too, so they do not keep old segments alive.
#[tokio::test]
async fn durable_sampled_out_messages_release_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--durable",
        "--max-bytes-per-file=4096",
        "--sync-every=50",
        "--sync-timeout=20ms",
    ];
    let nsqd = NsqdProcess::start_in(dir.path(), &args);
    let mut consumer =
        RawConn::consumer(nsqd.tcp_addr, "sampled", "c", r#""sample_rate":50"#, 2000).await;
    let mut producer = nsqd.connect().await;
    let bodies: Vec<Vec<u8>> = (0..2000)
        .map(|n| format!("{n:0>100}").into_bytes())
        .collect();
    for chunk in bodies.chunks(100) {
        producer.mpub("sampled", chunk).await;
    }
    // Consume until the channel holds nothing (not until a quiet spell: a loaded machine pauses).
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match consumer.next(Duration::from_millis(200)).await {
            Read::Frame(Frame::Message(message), _) => {
                received += 1;
                consumer.fin(&message).await;
            }
            Read::Frame(frame, _) if frame.is_heartbeat() => consumer.send(&cmd::nop()).await,
            Read::Timeout => {
                let stats = nsqd.stats().await;
                let drained = nsq_tests::channel_stats(&stats, "sampled", "c")
                    .is_some_and(|c| c.depth == 0 && c.in_flight_count == 0);
                if drained {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "channel never drained: {:?}",
                    nsq_tests::channel_stats(&stats, "sampled", "c")
                );
            }
            other => panic!("consumer: unexpected {other:?}"),
        }
    }
    assert!(
        received > 0 && received < 2000,
        "sampling delivered {received}"
    );
    let segments = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with("sampled:c.diskqueue2.") && !name.contains("meta")
            })
            .count()
    };
    assert!(
        nsq_tests::wait_until(Duration::from_secs(10), || segments() <= 2),
        "{} segment files kept by sampled-out messages",
        segments()
    );
}
