//! `nsq-bench`: NSQ's `bench_writer` and `bench_reader` in one binary, built on
//! `nsq_protocol::client`.
//!
//! ```text
//! nsq-bench writer --nsqd-tcp-address 127.0.0.1:4150 --topic sub_bench --size 200 \
//!     --batch-size 200 --runfor 10s --connections 2 --pipeline 4
//! nsq-bench reader --nsqd-tcp-address 127.0.0.1:4150 --topic sub_bench --channel ch \
//!     --rdy 2500 --runfor 10s --connections 2 --limit 1000000
//! nsq-bench lookupd --lookupd-tcp-address 127.0.0.1:4160 --lookupd-http-address 127.0.0.1:4161 \
//!     --topics 1000 --nodes 3 --duration 10s --connections 8
//! ```
//!
//! Each prints a human summary and a last line for scripts:
//! `RESULT <writer|reader> msgs=<n> secs=<s> msgs_per_sec=<r> mib_per_sec=<r>`
//! (`lookupd`: `RESULT lookupd requests=<n> secs=<s> requests_per_sec=<r> p50_us=…`; see
//! [`lookupd`]).

mod lookupd;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use nsq_protocol::client::{Consumer, ConsumerConfig, PendingReply, Producer};
use nsq_protocol::{ChannelName, Command, IdentifyRequest, ProtocolError, TopicName};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, Parser)]
#[command(
    name = "nsq-bench",
    version,
    about = "Throughput benchmark for nsqd and nsqlookupd"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Publish fixed-size messages (MPUB batches) for a while.
    Writer(WriterArgs),
    /// Consume and FIN messages until a duration or message count is reached.
    Reader(ReaderArgs),
    /// Register fake nodes with nsqlookupd, then measure GET /lookup requests per second.
    Lookupd(lookupd::LookupdArgs),
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// nsqd TCP address.
    #[arg(long, default_value = "127.0.0.1:4150")]
    nsqd_tcp_address: String,
    /// Topic to publish to / consume from.
    #[arg(long, default_value = "sub_bench")]
    topic: String,
    /// How long to run (Go duration syntax such as `10s`, `1m30s`, `1.5s`, or humantime).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    runfor: Duration,
    /// Number of parallel connections.
    #[arg(long, visible_aliases = ["publishers", "consumers"], default_value_t = 1)]
    connections: usize,
}

#[derive(Debug, Args)]
struct WriterArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Messages per MPUB (1 uses PUB).
    #[arg(long, default_value_t = 200)]
    batch_size: usize,
    /// Publish commands in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
}

#[derive(Debug, Args)]
struct ReaderArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Channel to consume from.
    #[arg(long, default_value = "ch")]
    channel: String,
    /// RDY count per connection.
    #[arg(long, default_value_t = 2500)]
    rdy: u64,
    /// Stop after this many messages in total (0: no limit).
    #[arg(long, default_value_t = 0)]
    limit: u64,
    /// Stop when no message arrived for this long (0: only --runfor and --limit stop).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    idle_timeout: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        Mode::Writer(args) => run_writer(args).await,
        Mode::Reader(args) => run_reader(args).await,
        Mode::Lookupd(args) => lookupd::run(args).await,
    }
}

// ---- writer -------------------------------------------------------------------------------------

async fn run_writer(args: WriterArgs) -> anyhow::Result<()> {
    let common = &args.common;
    if args.size == 0 || args.batch_size == 0 || args.pipeline == 0 || common.connections == 0 {
        bail!("--size, --batch-size, --pipeline and --connections must be at least 1");
    }
    let topic = TopicName::try_from(common.topic.as_str())?;
    let batch = vec![Bytes::from(vec![b'a'; args.size]); args.batch_size];
    let mut producers = Vec::with_capacity(common.connections);
    for _ in 0..common.connections {
        let identify = IdentifyRequest {
            user_agent: Some("nsq-bench writer".to_owned()),
            ..IdentifyRequest::default()
        };
        let producer = Producer::connect_with(common.nsqd_tcp_address.as_str(), identify)
            .await
            .with_context(|| format!("connecting to {}", common.nsqd_tcp_address))?;
        producers.push(producer);
    }
    println!(
        "writer: {} connection(s), {} B messages, batches of {}, {} in flight per connection, for {:?}",
        common.connections, args.size, args.batch_size, args.pipeline, common.runfor
    );

    let start = Instant::now();
    let deadline = start + common.runfor;
    let mut tasks = JoinSet::new();
    for producer in producers {
        tasks.spawn(publish_loop(
            producer,
            topic.clone(),
            batch.clone(),
            deadline,
            args.pipeline,
        ));
    }
    let mut msgs = 0;
    while let Some(joined) = tasks.join_next().await {
        msgs += joined.context("publisher task")??;
    }
    let secs = start.elapsed().as_secs_f64();
    report("writer", msgs, msgs * args.size as u64, secs);
    Ok(())
}

/// Keeps `pipeline` publishes in flight until `deadline`; returns the messages acknowledged.
async fn publish_loop(
    producer: Producer,
    topic: TopicName,
    batch: Vec<Bytes>,
    deadline: Instant,
    pipeline: usize,
) -> anyhow::Result<u64> {
    let per_command = batch.len() as u64;
    let mut pending: VecDeque<PendingReply> = VecDeque::with_capacity(pipeline);
    let mut msgs = 0;
    while Instant::now() < deadline {
        if pending.len() == pipeline
            && let Some(reply) = pending.pop_front()
        {
            expect_ok(reply).await?;
            msgs += per_command;
        }
        let command = if batch.len() == 1 {
            Command::Pub {
                topic: topic.clone(),
                body: batch[0].clone(),
            }
        } else {
            Command::Mpub {
                topic: topic.clone(),
                bodies: batch.clone(),
            }
        };
        pending.push_back(producer.send(command).await?);
    }
    for reply in pending {
        expect_ok(reply).await?;
        msgs += per_command;
    }
    Ok(msgs)
}

async fn expect_ok(reply: PendingReply) -> anyhow::Result<()> {
    let data = reply.await?;
    if data.as_ref() != b"OK" {
        bail!(
            "unexpected reply to a publish: {:?}",
            String::from_utf8_lossy(&data)
        );
    }
    Ok(())
}

// ---- reader -------------------------------------------------------------------------------------

/// What one consumer connection got.
#[derive(Debug, Default)]
struct ReadStats {
    msgs: u64,
    bytes: u64,
    /// When the last message arrived.
    last: Option<Instant>,
    fin_failed: u64,
}

async fn run_reader(args: ReaderArgs) -> anyhow::Result<()> {
    let common = &args.common;
    if common.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let topic = TopicName::try_from(common.topic.as_str())?;
    let channel = ChannelName::try_from(args.channel.as_str())?;
    let mut consumers = Vec::with_capacity(common.connections);
    for _ in 0..common.connections {
        let config = ConsumerConfig {
            // RDY is raised once every connection is up, so timing starts together.
            max_in_flight: 0,
            identify: IdentifyRequest {
                user_agent: Some("nsq-bench reader".to_owned()),
                ..IdentifyRequest::default()
            },
        };
        let consumer =
            Consumer::connect(common.nsqd_tcp_address.as_str(), &topic, &channel, config)
                .await
                .with_context(|| format!("connecting to {}", common.nsqd_tcp_address))?;
        consumers.push(consumer);
    }
    println!(
        "reader: {} connection(s), RDY {}, for {:?}{}",
        common.connections,
        args.rdy,
        common.runfor,
        if args.limit > 0 {
            format!(" or {} messages", args.limit)
        } else {
            String::new()
        }
    );

    let start = Instant::now();
    let deadline = start + common.runfor;
    let total = Arc::new(AtomicU64::new(0));
    let (stop_sender, stop) = watch::channel(false);
    let stop_sender = Arc::new(stop_sender);
    let mut tasks = JoinSet::new();
    for consumer in consumers {
        consumer.ready(args.rdy).await?;
        tasks.spawn(consume_loop(
            consumer,
            Limits {
                deadline,
                idle_timeout: args.idle_timeout,
                limit: args.limit,
            },
            Arc::clone(&total),
            Arc::clone(&stop_sender),
            stop.clone(),
        ));
    }
    let mut stats = ReadStats::default();
    while let Some(joined) = tasks.join_next().await {
        let one = joined.context("consumer task")??;
        stats.msgs += one.msgs;
        stats.bytes += one.bytes;
        stats.fin_failed += one.fin_failed;
        stats.last = stats.last.max(one.last);
    }
    if stats.fin_failed > 0 {
        println!("warning: {} FIN(s) failed", stats.fin_failed);
    }
    let end = stats.last.unwrap_or_else(Instant::now);
    let secs = end.saturating_duration_since(start).as_secs_f64();
    report("reader", stats.msgs, stats.bytes, secs);
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    deadline: Instant,
    idle_timeout: Duration,
    limit: u64,
}

/// Receives and FINs messages until the deadline, the idle timeout, or the shared limit.
async fn consume_loop(
    mut consumer: Consumer,
    limits: Limits,
    total: Arc<AtomicU64>,
    stop_sender: Arc<watch::Sender<bool>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<ReadStats> {
    let mut stats = ReadStats::default();
    loop {
        let now = Instant::now();
        if now >= limits.deadline || *stop.borrow() {
            break;
        }
        let mut wait = limits.deadline - now;
        if !limits.idle_timeout.is_zero() {
            wait = wait.min(limits.idle_timeout);
        }
        let next = tokio::select! {
            next = tokio::time::timeout(wait, consumer.next_message()) => next,
            _ = stop.changed() => break,
        };
        let message = match next {
            Err(_elapsed) => break,
            Ok(Ok(message)) => message,
            Ok(Err(error @ ProtocolError::ErrorFrame(_)))
                if error.error_code().is_some_and(|code| !code.is_fatal()) =>
            {
                stats.fin_failed += 1;
                continue;
            }
            Ok(Err(error)) => return Err(error.into()),
        };
        stats.msgs += 1;
        stats.bytes += message.body.len() as u64;
        stats.last = Some(Instant::now());
        consumer.finish(message.id).await?;
        if limits.limit > 0 && total.fetch_add(1, Ordering::Relaxed) + 1 >= limits.limit {
            let _ = stop_sender.send(true);
            break;
        }
    }
    // CLS waits for CLOSE_WAIT, so every FIN sent before it has reached the server.
    let _ = consumer.close().await;
    Ok(stats)
}

// ---- output and parsing -------------------------------------------------------------------------

fn report(mode: &str, msgs: u64, bytes: u64, secs: f64) {
    let secs = secs.max(1e-9);
    let msgs_per_sec = msgs as f64 / secs;
    let mib_per_sec = bytes as f64 / secs / (1024.0 * 1024.0);
    let us_per_msg = if msgs > 0 {
        secs * 1e6 / msgs as f64
    } else {
        0.0
    };
    println!(
        "{mode}: duration {secs:.3}s - {mib_per_sec:.3} MiB/s - {msgs_per_sec:.1} msgs/s - {us_per_msg:.3} us/msg ({msgs} msgs)"
    );
    println!(
        "RESULT {mode} msgs={msgs} secs={secs:.3} msgs_per_sec={msgs_per_sec:.1} mib_per_sec={mib_per_sec:.3}"
    );
}

/// Parses Go's `time.ParseDuration` syntax (`300ms`, `1.5h`, `2h45m`, `0`), falling back to
/// humantime (`10 sec`, `1min 30s`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_go_duration(text)
        .or_else(|| humantime::parse_duration(text).ok())
        .ok_or_else(|| format!("invalid duration {text:?} (use Go syntax such as 10s or 1m30s)"))
}

fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_len = after
            .find(|ch: char| ch.is_ascii_digit() || ch == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1e0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * nanos_per_unit;
        rest = after;
    }
    Some(Duration::from_nanos(total.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("0", Duration::ZERO),
            ("1.5s", Duration::from_millis(1500)),
            ("1m30s", Duration::from_secs(90)),
            ("2h45m", Duration::from_secs(2 * 3600 + 45 * 60)),
            ("300ms", Duration::from_millis(300)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            (".5s", Duration::from_millis(500)),
            ("10 sec", Duration::from_secs(10)),
            ("1min 30s", Duration::from_secs(90)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "s", "10", "1.2.3s", "10x", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "nsq-bench",
            "writer",
            "--publishers",
            "2",
            "--runfor",
            "1.5s",
            "--pipeline",
            "4",
        ])
        .unwrap();
        let Mode::Writer(args) = cli.mode else {
            panic!("writer expected");
        };
        assert_eq!(args.common.connections, 2);
        assert_eq!(args.common.runfor, Duration::from_millis(1500));
        assert_eq!((args.size, args.batch_size, args.pipeline), (200, 200, 4));
        let cli = Cli::try_parse_from(["nsq-bench", "reader", "--limit", "10"]).unwrap();
        let Mode::Reader(args) = cli.mode else {
            panic!("reader expected");
        };
        assert_eq!(
            (args.rdy, args.limit, args.channel.as_str()),
            (2500, 10, "ch")
        );
    }
}
