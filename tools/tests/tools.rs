//! Black-box tests of the tools against real nsqd/nsqlookupd processes (one test binary).

mod harness;

use harness::{
    Daemon, TIMEOUT, Tool, channel_stats, eventually, run_with_input, signal, topic_stats,
    wait_for_producers,
};
use nsq_protocol::client::{Consumer, ConsumerConfig, Producer};
use nsq_protocol::{ChannelName, TopicName};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

fn topic(name: &str) -> TopicName {
    TopicName::try_from(name).unwrap()
}

fn channel(name: &str) -> ChannelName {
    ChannelName::try_from(name).unwrap()
}

async fn publish(nsqd: &Daemon, topic_name: &str, bodies: &[&str]) {
    let producer = Producer::connect(nsqd.tcp.as_str()).await.unwrap();
    for body in bodies {
        producer
            .publish(&topic(topic_name), body.as_bytes().to_vec())
            .await
            .unwrap();
    }
}

/// Reads `count` messages from `topic_name`/`channel_name` and FINs them.
async fn consume(nsqd: &Daemon, topic_name: &str, channel_name: &str, count: usize) -> Vec<String> {
    let config = ConsumerConfig {
        max_in_flight: 100,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(
        nsqd.tcp.as_str(),
        &topic(topic_name),
        &channel(channel_name),
        config,
    )
    .await
    .unwrap();
    let mut bodies = Vec::new();
    while bodies.len() < count {
        let message = tokio::time::timeout(TIMEOUT, consumer.next_message())
            .await
            .expect("message in time")
            .unwrap();
        bodies.push(String::from_utf8(message.body.to_vec()).unwrap());
        consumer.finish(message.id).await.unwrap();
    }
    consumer.close().await.unwrap();
    bodies
}

/// Waits until a channel has nothing queued and nothing in flight.
async fn wait_drained(nsqd: &Daemon, topic_name: &str, channel_name: &str) {
    eventually(&format!("{topic_name}/{channel_name} drained"), || async {
        let stats = channel_stats(nsqd, topic_name, channel_name).await?;
        (stats.depth == 0 && stats.in_flight_count == 0).then_some(())
    })
    .await;
}

async fn wait_in_flight(nsqd: &Daemon, topic_name: &str, channel_name: &str, count: i64) {
    eventually(
        &format!("{count} in flight on {topic_name}/{channel_name}"),
        || async {
            let stats = channel_stats(nsqd, topic_name, channel_name).await?;
            (stats.in_flight_count == count).then_some(())
        },
    )
    .await;
}

// ---- to_nsq -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn to_nsq_publishes_every_line_to_every_nsqd() {
    let first = Daemon::nsqd(None);
    let second = Daemon::nsqd(None);
    let second_flag = format!("-nsqd-tcp-address={}", second.tcp);
    let (status, _, stderr) = run_with_input(
        "to_nsq",
        &[
            "--topic",
            "lines",
            "--nsqd-tcp-address",
            &first.tcp,
            &second_flag,
        ],
        b"one\ntwo\n\nthree",
    );
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("published 3 messages"), "{stderr}");
    for nsqd in [&first, &second] {
        let stats = topic_stats(nsqd, "lines").await.expect("topic");
        assert_eq!(stats.message_count, 3);
        assert_eq!(
            consume(nsqd, "lines", "check", 3).await,
            ["one", "two", "three"]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn to_nsq_splits_at_the_delimiter_and_throttles() {
    let nsqd = Daemon::nsqd(None);
    let start = Instant::now();
    let (status, _, stderr) = run_with_input(
        "to_nsq",
        &[
            "-topic=csv",
            "-nsqd-tcp-address",
            &nsqd.tcp,
            "-delimiter",
            ",",
            "-rate=10",
        ],
        b"a,b,c,d,e,f,",
    );
    let elapsed = start.elapsed();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("published 6 messages"), "{stderr}");
    // One message at once, then one every 100 ms.
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert_eq!(topic_stats(&nsqd, "csv").await.unwrap().message_count, 6);
    assert_eq!(
        consume(&nsqd, "csv", "check", 6).await,
        ["a", "b", "c", "d", "e", "f"]
    );

    let (status, _, stderr) = run_with_input(
        "to_nsq",
        &[
            "--topic",
            "csv",
            "--nsqd-tcp-address",
            &nsqd.tcp,
            "--delimiter",
            "ab",
        ],
        b"",
    );
    assert!(!status.success());
    assert!(
        stderr.contains("--delimiter must be a single byte"),
        "{stderr}"
    );
}

// ---- nsq_tail -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn nsq_tail_prints_topics_and_exits_after_n() {
    let nsqd = Daemon::nsqd(None);
    publish(&nsqd, "tail_a", &["a0", "a1", "a2"]).await;
    publish(&nsqd, "tail_b", &["b0", "b1"]).await;
    let mut tail = Tool::start(
        "nsq_tail",
        &[
            "--topic",
            "tail_a",
            "--topic",
            "tail_b",
            "--channel",
            "tailc",
            "--nsqd-tcp-address",
            &nsqd.tcp,
            "--n",
            "5",
            "--print-topic",
        ],
    );
    let (status, mut lines) = tail.finish();
    assert!(status.success(), "{}", tail.stderr());
    lines.sort();
    assert_eq!(
        lines,
        [
            "tail_a | a0",
            "tail_a | a1",
            "tail_a | a2",
            "tail_b | b0",
            "tail_b | b1"
        ]
    );
    // Everything shown was FINed.
    wait_drained(&nsqd, "tail_a", "tailc").await;
    wait_drained(&nsqd, "tail_b", "tailc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nsq_tail_requeues_what_it_does_not_show() {
    let nsqd = Daemon::nsqd(None);
    publish(&nsqd, "tail_n", &["m0", "m1", "m2", "m3", "m4"]).await;
    let mut tail = Tool::start(
        "nsq_tail",
        &[
            "-topic=tail_n",
            "-channel=rest",
            "-nsqd-tcp-address",
            &nsqd.tcp,
            "-n",
            "3",
        ],
    );
    let (status, lines) = tail.finish();
    assert!(status.success(), "{}", tail.stderr());
    assert_eq!(lines, ["m0", "m1", "m2"]);
    eventually("two messages back in the queue", || async {
        let stats = channel_stats(&nsqd, "tail_n", "rest").await?;
        (stats.depth == 2 && stats.in_flight_count == 0).then_some(())
    })
    .await;
    assert_eq!(consume(&nsqd, "tail_n", "rest", 2).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn nsq_tail_discovers_nsqds_through_lookupd() {
    let lookupd = Daemon::nsqlookupd();
    let first = Daemon::nsqd(Some(&lookupd));
    let second = Daemon::nsqd(Some(&lookupd));
    publish(&first, "disc", &["first0", "first1"]).await;
    wait_for_producers(&lookupd, "disc", 1).await;
    // The default channel is an ephemeral `tail…#ephemeral`.
    let mut tail = Tool::start(
        "nsq_tail",
        &[
            "--topic",
            "disc",
            "--lookupd-http-address",
            &lookupd.http,
            "--n",
            "4",
            "--lookupd-poll-interval",
            "200ms",
        ],
    );
    let mut lines = vec![tail.line(), tail.line()];
    lines.sort();
    assert_eq!(lines, ["first0", "first1"]);
    let tail_channel = channel_stats_names(&first, "disc").await;
    assert!(
        tail_channel.len() == 1
            && tail_channel[0].starts_with("tail")
            && tail_channel[0].ends_with("#ephemeral"),
        "{tail_channel:?}"
    );
    // A second nsqd gets the topic later: the next lookupd poll finds it.
    publish(&second, "disc", &["second0", "second1"]).await;
    let (status, mut rest) = tail.finish();
    assert!(status.success(), "{}", tail.stderr());
    rest.sort();
    assert_eq!(rest, ["second0", "second1"]);
}

async fn channel_stats_names(nsqd: &Daemon, topic_name: &str) -> Vec<String> {
    topic_stats(nsqd, topic_name)
        .await
        .map(|topic| {
            topic
                .channels
                .into_iter()
                .map(|channel| channel.channel_name)
                .collect()
        })
        .unwrap_or_default()
}

// ---- nsq_stat -----------------------------------------------------------------------------------

const STAT_RULE: &str =
    "------rate------+----------------depth----------------+--------------metadata---------------";
const STAT_COLUMNS: &str =
    "ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients";

#[tokio::test(flavor = "multi_thread")]
async fn nsq_stat_prints_channel_figures() {
    let lookupd = Daemon::nsqlookupd();
    let nsqd = Daemon::nsqd(Some(&lookupd));
    // A connected consumer with RDY 0 holds the channel open without taking messages.
    let config = ConsumerConfig {
        max_in_flight: 0,
        ..ConsumerConfig::default()
    };
    let _consumer = Consumer::connect(nsqd.tcp.as_str(), &topic("stat"), &channel("statc"), config)
        .await
        .unwrap();
    publish(&nsqd, "stat", &["1", "2", "3", "4", "5", "6", "7"]).await;
    wait_for_producers(&lookupd, "stat", 1).await;

    let expected_row = [
        "0", "0", "|", "7", "7", "0", "0", "0", "|", "0", "0", "7", "1",
    ];
    let mut stat = Tool::start(
        "nsq_stat",
        &[
            "--topic",
            "stat",
            "--channel",
            "statc",
            "--lookupd-http-address",
            &lookupd.http,
            "--count",
            "2",
            "--interval",
            "100ms",
        ],
    );
    let (status, lines) = stat.finish();
    assert!(status.success(), "{}", stat.stderr());
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], STAT_RULE);
    assert_eq!(lines[1], STAT_COLUMNS);
    for row in &lines[2..] {
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            expected_row,
            "{row}"
        );
    }

    // The same straight from nsqd, with Go-style flags and the old flag name.
    let mut stat = Tool::start(
        "nsq_stat",
        &[
            "-topic=stat",
            "-channel=statc",
            "-nsqd-http-address",
            &nsqd.http,
            "-count=1",
            "-status-every=50ms",
        ],
    );
    let (status, lines) = stat.finish();
    assert!(status.success(), "{}", stat.stderr());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        expected_row
    );

    // An unknown channel is an error, as upstream.
    let mut stat = Tool::start(
        "nsq_stat",
        &[
            "--topic",
            "stat",
            "--channel",
            "nope",
            "--nsqd-http-address",
            &nsqd.http,
            "--count",
            "1",
        ],
    );
    let (status, _) = stat.finish();
    assert!(!status.success());
    assert!(
        stat.stderr().contains("failed to find channel(nope)"),
        "{}",
        stat.stderr()
    );
}

// ---- nsq_to_file --------------------------------------------------------------------------------

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn short_hostname() -> String {
    let hostname = hostname_string();
    hostname.split('.').next().unwrap().to_owned()
}

fn hostname_string() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn nsq_to_file_writes_syncs_and_fins_on_hup_and_term() {
    let nsqd = Daemon::nsqd(None);
    let output = tempfile::tempdir().unwrap();
    let bodies: Vec<String> = (0..10).map(|n| format!("message {n}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    publish(&nsqd, "tofile", &refs).await;
    let output_dir = output.path().to_str().unwrap();
    let tool = Tool::start(
        "nsq_to_file",
        &[
            "--topic",
            "tofile",
            "--nsqd-tcp-address",
            &nsqd.tcp,
            "--output-dir",
            output_dir,
            "--datetime-format",
            "%Y",
        ],
    );
    // Opening the first file syncs, so the first message is FINed at once. The other nine are
    // far from starving a max-in-flight of 200, and the sync interval is 30 s: they stay in
    // flight, written but not yet synced.
    wait_in_flight(&nsqd, "tofile", "nsq_to_file", 9).await;
    // SIGHUP syncs (then FINs) and closes the file.
    signal(&tool.child, "HUP");
    wait_drained(&nsqd, "tofile", "nsq_to_file").await;
    let more: Vec<String> = (10..15).map(|n| format!("message {n}")).collect();
    let more_refs: Vec<&str> = more.iter().map(String::as_str).collect();
    publish(&nsqd, "tofile", &more_refs).await;
    // Reopening the file after SIGHUP FINs the first of them again.
    wait_in_flight(&nsqd, "tofile", "nsq_to_file", 4).await;
    // SIGTERM: sync, FIN, close, exit 0.
    signal(&tool.child, "TERM");
    let mut tool = tool;
    let status = tool.wait();
    assert!(status.success(), "{}", tool.stderr());
    wait_drained(&nsqd, "tofile", "nsq_to_file").await;

    let files = files_in(output.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0],
        format!("tofile.{}.{}.log", short_hostname(), chrono_year())
    );
    let text = std::fs::read_to_string(output.path().join(&files[0])).unwrap();
    let expected: String = bodies
        .iter()
        .chain(&more)
        .map(|body| format!("{body}\n"))
        .collect();
    assert_eq!(text, expected);
    let stderr = tool.stderr();
    assert!(stderr.contains("opening "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nsq_to_file_gzip_syncs_on_its_interval() {
    let nsqd = Daemon::nsqd(None);
    let output = tempfile::tempdir().unwrap();
    publish(&nsqd, "zipped", &["z0", "z1", "z2"]).await;
    let output_dir = output.path().to_str().unwrap();
    let mut tool = Tool::start(
        "nsq_to_file",
        &[
            "-topic=zipped",
            "-nsqd-tcp-address",
            &nsqd.tcp,
            "-output-dir",
            output_dir,
            "-gzip",
            "-gzip-level=9",
            "-sync-interval=100ms",
            "-channel=zip",
        ],
    );
    // The sync interval FINs them without any signal.
    wait_drained(&nsqd, "zipped", "zip").await;
    publish(&nsqd, "zipped", &["z3"]).await;
    wait_drained(&nsqd, "zipped", "zip").await;
    signal(&tool.child, "TERM");
    let status = tool.wait();
    assert!(status.success(), "{}", tool.stderr());
    let files = files_in(output.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let prefix = format!("zipped.{}-000000.", short_hostname());
    assert!(
        files[0].starts_with(&prefix) && files[0].ends_with(".log.gz"),
        "{files:?}"
    );
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(output.path().join(&files[0])).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "z0\nz1\nz2\nz3\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn nsq_to_file_follows_lookupd_topics_matching_a_pattern() {
    let lookupd = Daemon::nsqlookupd();
    let nsqd = Daemon::nsqd(Some(&lookupd));
    publish(&nsqd, "keep_1", &["k1"]).await;
    publish(&nsqd, "skip_1", &["s1"]).await;
    wait_for_producers(&lookupd, "keep_1", 1).await;
    wait_for_producers(&lookupd, "skip_1", 1).await;
    let output = tempfile::tempdir().unwrap();
    let output_dir = output.path().to_str().unwrap();
    let mut tool = Tool::start(
        "nsq_to_file",
        &[
            "--lookupd-http-address",
            &lookupd.http,
            "--topic-pattern",
            "^keep_",
            "--topic-refresh",
            "200ms",
            "--output-dir",
            output_dir,
            "--sync-interval",
            "100ms",
            "--filename-format",
            "<TOPIC>/<DATETIME><REV>.log",
            "--rotate-size",
            "1000000",
            "--datetime-format",
            "%Y",
        ],
    );
    wait_drained(&nsqd, "keep_1", "nsq_to_file").await;
    // A topic created later is picked up at the next refresh.
    publish(&nsqd, "keep_2", &["k2"]).await;
    wait_drained(&nsqd, "keep_2", "nsq_to_file").await;
    signal(&tool.child, "INT");
    let status = tool.wait();
    assert!(status.success(), "{}", tool.stderr());
    assert_eq!(files_in(output.path()), ["keep_1", "keep_2"]);
    let year = chrono_year();
    for (topic_name, body) in [("keep_1", "k1\n"), ("keep_2", "k2\n")] {
        let name = format!("{year}-000000.log");
        let text = std::fs::read_to_string(output.path().join(topic_name).join(name)).unwrap();
        assert_eq!(text, body);
    }
    // The skipped topic never got the channel.
    assert!(channel_stats_names(&nsqd, "skip_1").await.is_empty());
}

fn chrono_year() -> String {
    let output = std::process::Command::new("date")
        .arg("+%Y")
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn tools_print_their_version() {
    for name in ["nsq_tail", "to_nsq", "nsq_stat", "nsq_to_file"] {
        let output = std::process::Command::new(harness::bin_dir().join(name))
            .arg("-version")
            .output()
            .unwrap();
        assert!(output.status.success());
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            format!("{name} v1.3.0\n")
        );
    }
}
