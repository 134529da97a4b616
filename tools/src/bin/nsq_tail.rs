//! `nsq_tail`: consumes topics and prints each message body on its own line, like upstream's.
//!
//! ```text
//! nsq_tail --topic T [--topic T2] (--nsqd-tcp-address A ... | --lookupd-http-address H ...)
//!     [--channel C] [--max-in-flight 200] [--n 0] [--print-topic] [--lookupd-poll-interval 1m0s]
//! ```
//!
//! Each message is written to stdout and then FINed. With `--n`, the tool stops after that many
//! messages: CLS on every connection, later deliveries are requeued, exit 0. SIGINT/SIGTERM do
//! the same.

use anyhow::{Context as _, bail};
use clap::Parser;
use nsq_protocol::{ChannelName, TopicName};
use nsq_tools::args::{parse_args, parse_go_bool, parse_go_duration};
use nsq_tools::lookupd::HttpClient;
use nsq_tools::reader::{Reader, ReaderSettings};
use std::io::Write;
use std::time::Duration;
use tokio::sync::mpsc;

/// nsq_tail: print messages of NSQ topics.
#[derive(Debug, Parser)]
#[command(
    name = "nsq_tail",
    disable_version_flag = true,
    args_override_self = true
)]
struct Flags {
    /// Print the version and exit.
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", value_parser = parse_go_bool)]
    version: bool,
    /// NSQ topic (may be given multiple times).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// NSQ channel (default: tail<random>#ephemeral).
    #[arg(long)]
    channel: Option<String>,
    /// nsqd TCP address (may be given multiple times).
    #[arg(long = "nsqd-tcp-address")]
    nsqd_tcp_addresses: Vec<String>,
    /// lookupd HTTP address (may be given multiple times).
    #[arg(long = "lookupd-http-address")]
    lookupd_http_addresses: Vec<String>,
    /// Max number of messages to allow in flight.
    #[arg(long, default_value_t = 200)]
    max_in_flight: u64,
    /// Total messages to show (will wait if starved); 0 for no limit.
    #[arg(short = 'n', long = "n", default_value_t = 0)]
    total_messages: u64,
    /// Print the topic name where each message was received (`topic | body`).
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", value_parser = parse_go_bool)]
    print_topic: bool,
    /// How often lookupd is polled for new nsqds (and how long before a lost nsqd is
    /// reconnected).
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration)]
    lookupd_poll_interval: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags: Flags = parse_args();
    if flags.version {
        println!("nsq_tail v{}", nsq_tools::VERSION);
        return Ok(());
    }
    nsq_tools::init_logging("nsq_tail");
    run(flags).await
}

async fn run(mut flags: Flags) -> anyhow::Result<()> {
    let channel = match flags.channel.take() {
        Some(channel) => channel,
        None => format!("tail{:06}#ephemeral", rand::random::<u32>() % 999_999),
    };
    if flags.nsqd_tcp_addresses.is_empty() && flags.lookupd_http_addresses.is_empty() {
        bail!("--nsqd-tcp-address or --lookupd-http-address required");
    }
    if !flags.nsqd_tcp_addresses.is_empty() && !flags.lookupd_http_addresses.is_empty() {
        bail!("use --nsqd-tcp-address or --lookupd-http-address not both");
    }
    if flags.topics.is_empty() {
        bail!("--topic required");
    }
    if flags.lookupd_poll_interval.is_zero() {
        bail!("--lookupd-poll-interval must be positive");
    }
    let channel = ChannelName::try_from(channel.as_str())
        .with_context(|| format!("invalid --channel {channel:?}"))?;
    // Don't ask for more messages than we want.
    let mut max_in_flight = flags.max_in_flight.max(1);
    if flags.total_messages > 0 && flags.total_messages < max_in_flight {
        max_in_flight = flags.total_messages;
    }

    let http = HttpClient::new()?;
    let (deliveries, mut received) = mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for topic in &flags.topics {
        let topic = TopicName::try_from(topic.as_str())
            .with_context(|| format!("invalid --topic {topic:?}"))?;
        tracing::info!("adding consumer for topic: {topic}");
        let settings = ReaderSettings {
            topic,
            channel: channel.clone(),
            max_in_flight,
            user_agent: nsq_tools::user_agent("nsq_tail"),
            nsqd_tcp_addresses: flags.nsqd_tcp_addresses.clone(),
            lookupd_http_addresses: flags.lookupd_http_addresses.clone(),
            lookupd_poll_interval: flags.lookupd_poll_interval,
            http: http.clone(),
        };
        readers.push(Reader::start(settings, deliveries.clone()).await?);
    }
    drop(deliveries);

    let stop_all = |readers: &[Reader]| readers.iter().for_each(Reader::stop);
    let signal = nsq_tools::shutdown_signal();
    tokio::pin!(signal);
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    let mut shown: u64 = 0;
    let mut stopping = false;
    loop {
        let delivery = tokio::select! {
            delivery = received.recv() => delivery,
            name = &mut signal, if !stopping => {
                tracing::info!("received {name}, stopping");
                stopping = true;
                stop_all(&readers);
                continue;
            }
        };
        let Some(delivery) = delivery else { break };
        if stopping {
            delivery.requeue(Duration::ZERO);
            continue;
        }
        if flags.print_topic {
            stdout.write_all(delivery.topic.as_str().as_bytes())?;
            stdout.write_all(b" | ")?;
        }
        stdout.write_all(&delivery.message.body)?;
        stdout.write_all(b"\n")?;
        if received.is_empty() {
            stdout.flush().context("failed to write to stdout")?;
        }
        delivery.finish();
        shown += 1;
        if flags.total_messages > 0 && shown >= flags.total_messages {
            stdout.flush().context("failed to write to stdout")?;
            stopping = true;
            stop_all(&readers);
        }
    }
    stdout.flush().context("failed to write to stdout")?;
    for reader in readers {
        reader.wait().await;
    }
    Ok(())
}
