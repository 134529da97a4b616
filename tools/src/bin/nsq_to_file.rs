//! `nsq_to_file`: writes every message of one or more topics to files, one body per line, like
//! upstream's.
//!
//! ```text
//! nsq_to_file (--topic T ... | --lookupd-http-address H [--topic-pattern RE])
//!     (--nsqd-tcp-address A ... | --lookupd-http-address H ...) [--channel nsq_to_file]
//!     [--output-dir /tmp] [--filename-format '<TOPIC>.<HOST><REV>.<DATETIME>.log']
//!     [--datetime-format %Y-%m-%d_%H] [--gzip] [--gzip-level 6] [--rotate-size 0]
//!     [--rotate-interval 0] [--sync-interval 30s] [--max-in-flight 200]
//! ```
//!
//! Each topic has one consumer and one file (see `nsq_tools::file_logger` for naming and
//! rotation). Messages are FINed only after the file was synced: every `--sync-interval`, when
//! max-in-flight messages are waiting, when the consumer is starved (a connection has 85% of its
//! RDY in flight), on rotation, on SIGHUP (which also closes the file; the next message reopens
//! it) and on shutdown. Without `--topic`, every topic lookupd knows (matching
//! `--topic-pattern`) is written, re-checked every `--topic-refresh`. SIGINT/SIGTERM: CLS,
//! the messages still arriving are written, everything is synced and FINed, files are closed,
//! exit 0.

use anyhow::{Context as _, bail};
use clap::Parser;
use nsq_protocol::{ChannelName, TopicName};
use nsq_tools::args::{parse_args, parse_go_bool, parse_go_duration};
use nsq_tools::file_logger::{
    DEFAULT_DATETIME_FORMAT, DEFAULT_FILENAME_FORMAT, FileLogger, FileLoggerSettings,
    filename_template,
};
use nsq_tools::lookupd::HttpClient;
use nsq_tools::reader::{Delivery, Reader, ReaderSettings};
use regex::Regex;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// nsq_to_file: write NSQ messages to files.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "nsq_to_file",
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
    /// Only log topics matching this regular expression.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    topic_pattern: String,
    /// How often the topic list is refreshed from lookupd (without --topic).
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration)]
    topic_refresh: Duration,
    /// NSQ channel.
    #[arg(long, default_value = "nsq_to_file")]
    channel: String,
    /// nsqd TCP address (may be given multiple times).
    #[arg(long = "nsqd-tcp-address")]
    nsqd_tcp_addresses: Vec<String>,
    /// lookupd HTTP address (may be given multiple times).
    #[arg(long = "lookupd-http-address")]
    lookupd_http_addresses: Vec<String>,
    /// How often lookupd is polled for new nsqds of a topic.
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration)]
    lookupd_poll_interval: Duration,
    /// Max number of messages to allow in flight (per topic).
    #[arg(long, default_value_t = 200)]
    max_in_flight: u64,
    /// Directory to write output files to.
    #[arg(long, default_value = "/tmp")]
    output_dir: PathBuf,
    /// Output filename format (<TOPIC>, <HOST>, <PID>, <DATETIME>, <REV> are replaced; <REV> is
    /// increased when the file already exists).
    #[arg(long, default_value = DEFAULT_FILENAME_FORMAT)]
    filename_format: String,
    /// strftime format for <DATETIME> in --filename-format.
    #[arg(long, default_value = DEFAULT_DATETIME_FORMAT)]
    datetime_format: String,
    /// Gzip output files.
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", value_parser = parse_go_bool)]
    gzip: bool,
    /// Gzip compression level (1-9, 1=BestSpeed, 9=BestCompression).
    #[arg(long, default_value_t = 6)]
    gzip_level: u32,
    /// Rotate the file when it grows bigger than this many bytes (0: never).
    #[arg(long, default_value_t = 0)]
    rotate_size: u64,
    /// Rotate the file every duration (0: never).
    #[arg(long, default_value = "0", value_parser = parse_go_duration)]
    rotate_interval: Duration,
    /// Sync files to disk (and FIN what they hold) every duration.
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    sync_interval: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags: Flags = parse_args();
    if flags.version {
        println!("nsq_to_file v{}", nsq_tools::VERSION);
        return Ok(());
    }
    nsq_tools::init_logging("nsq_to_file");
    run(flags).await
}

/// What every topic's task shares.
struct Shared {
    flags: Flags,
    channel: ChannelName,
    files: FileLoggerSettings,
    hostname: String,
    http: HttpClient,
    stop: CancellationToken,
    hup: watch::Receiver<u64>,
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    if flags.channel.is_empty() {
        bail!("--channel is required");
    }
    if flags.nsqd_tcp_addresses.is_empty() && flags.lookupd_http_addresses.is_empty() {
        bail!("--nsqd-tcp-address or --lookupd-http-address required");
    }
    if !flags.nsqd_tcp_addresses.is_empty() && !flags.lookupd_http_addresses.is_empty() {
        bail!("use --nsqd-tcp-address or --lookupd-http-address not both");
    }
    if !(1..=9).contains(&flags.gzip_level) {
        bail!(
            "invalid --gzip-level value ({}), should be 1-9",
            flags.gzip_level
        );
    }
    if flags.sync_interval.is_zero()
        || flags.topic_refresh.is_zero()
        || flags.lookupd_poll_interval.is_zero()
    {
        bail!("--sync-interval, --topic-refresh and --lookupd-poll-interval must be positive");
    }
    if flags.topics.is_empty() && flags.lookupd_http_addresses.is_empty() {
        bail!(
            "use --topic to list at least one topic to subscribe to or specify at least one \
             --lookupd-http-address to subscribe to all its topics"
        );
    }
    let channel = ChannelName::try_from(flags.channel.as_str())
        .with_context(|| format!("invalid --channel {:?}", flags.channel))?;
    let pattern = (!flags.topic_pattern.is_empty())
        .then(|| Regex::new(&flags.topic_pattern))
        .transpose()
        .context("invalid --topic-pattern")?;
    let files = FileLoggerSettings {
        output_dir: flags.output_dir.clone(),
        filename_format: flags.filename_format.clone(),
        datetime_format: flags.datetime_format.clone(),
        gzip_level: flags.gzip.then_some(flags.gzip_level),
        rotate_size: flags.rotate_size,
        rotate_interval: flags.rotate_interval,
    };
    // Refuse a bad --filename-format before connecting anywhere.
    filename_template(&files, "topic", "host", 0)?;
    let hostname = hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default();
    let http = HttpClient::new()?;
    let topics_from_lookupd = flags.topics.is_empty();
    let initial_topics = if topics_from_lookupd {
        http.topics(&flags.lookupd_http_addresses)
            .await
            .context("could not retrieve topic list")?
    } else {
        flags.topics.clone()
    };
    let (hup_sender, hup) = watch::channel(0u64);
    let shared = Arc::new(Shared {
        flags,
        channel,
        files,
        hostname,
        http,
        stop: CancellationToken::new(),
        hup,
    });

    let mut known = HashSet::new();
    let mut tasks = JoinSet::new();
    add_topics(
        &shared,
        pattern.as_ref(),
        initial_topics,
        &mut known,
        &mut tasks,
    );

    let refresh_every = shared.flags.topic_refresh;
    let mut refresh =
        tokio::time::interval_at(tokio::time::Instant::now() + refresh_every, refresh_every);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("failed to install SIGHUP handler")?;
    let signal = nsq_tools::shutdown_signal();
    tokio::pin!(signal);
    let mut failure = None;
    loop {
        tokio::select! {
            name = &mut signal => {
                tracing::info!("received {name}, stopping");
                break;
            }
            _ = hangup.recv() => {
                tracing::info!("received SIGHUP, closing files");
                hup_sender.send_modify(|count| *count += 1);
            }
            _ = refresh.tick(), if topics_from_lookupd => {
                match shared.http.topics(&shared.flags.lookupd_http_addresses).await {
                    Ok(topics) => add_topics(&shared, pattern.as_ref(), topics, &mut known, &mut tasks),
                    Err(error) => tracing::error!("could not retrieve topic list: {error}"),
                }
            }
            Some(joined) = tasks.join_next() => {
                if let Err(error) = joined.context("topic task").and_then(|result| result) {
                    failure = Some(error);
                    break;
                }
            }
        }
    }
    shared.stop.cancel();
    while let Some(joined) = tasks.join_next().await {
        if let Err(error) = joined.context("topic task").and_then(|result| result) {
            failure.get_or_insert(error);
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn add_topics(
    shared: &Arc<Shared>,
    pattern: Option<&Regex>,
    topics: Vec<String>,
    known: &mut HashSet<String>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) {
    for topic in topics {
        if known.contains(&topic) {
            continue;
        }
        known.insert(topic.clone());
        if pattern.is_some_and(|pattern| !pattern.is_match(&topic)) {
            tracing::warn!(
                "skipping topic {topic} (doesn't match pattern {})",
                shared.flags.topic_pattern
            );
            continue;
        }
        let shared = Arc::clone(shared);
        tasks.spawn(async move {
            log_topic(&shared, &topic)
                .await
                .with_context(|| format!("topic {topic}"))
        });
    }
}

/// Consumes one topic into its files until the stop token is cancelled and every message
/// received has been written, synced and FINed.
async fn log_topic(shared: &Shared, topic: &str) -> anyhow::Result<()> {
    let flags = &shared.flags;
    let topic_name =
        TopicName::try_from(topic).with_context(|| format!("invalid topic name {topic:?}"))?;
    let mut logger = FileLogger::new(
        shared.files.clone(),
        topic,
        shared.channel.as_str(),
        &shared.hostname,
    )?;
    let (deliveries, mut received) = mpsc::unbounded_channel();
    let settings = ReaderSettings {
        topic: topic_name,
        channel: shared.channel.clone(),
        max_in_flight: flags.max_in_flight.max(1),
        user_agent: nsq_tools::user_agent("nsq_to_file"),
        nsqd_tcp_addresses: flags.nsqd_tcp_addresses.clone(),
        lookupd_http_addresses: flags.lookupd_http_addresses.clone(),
        lookupd_poll_interval: flags.lookupd_poll_interval,
        http: shared.http.clone(),
    };
    let reader = Reader::start(settings, deliveries).await?;
    let mut hup = shared.hup.clone();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + flags.sync_interval,
        flags.sync_interval,
    );
    let batch_limit = usize::try_from(flags.max_in_flight.max(1)).unwrap_or(usize::MAX);
    let mut pending: Vec<Delivery> = Vec::with_capacity(batch_limit);
    let mut stopping = false;
    let result = loop {
        let mut sync = false;
        let mut close_file = false;
        let mut exit = false;
        let step: anyhow::Result<()> = async {
            tokio::select! {
                delivery = received.recv() => match delivery {
                    None => {
                        sync = true;
                        close_file = true;
                        exit = true;
                    }
                    Some(delivery) => {
                        if rotate_if_needed(&mut logger)? {
                            sync = true;
                        }
                        logger.write(&delivery.message.body)?;
                        pending.push(delivery);
                        if pending.len() >= batch_limit {
                            sync = true;
                        }
                    }
                },
                _ = ticker.tick() => {
                    rotate_if_needed(&mut logger)?;
                    sync = true;
                }
                _ = shared.stop.cancelled(), if !stopping => {
                    stopping = true;
                    reader.stop();
                    sync = true;
                }
                Ok(()) = hup.changed() => {
                    sync = true;
                    close_file = true;
                }
            }
            if (sync || reader.is_starved() || (stopping && received.is_empty()))
                && !pending.is_empty()
            {
                tracing::debug!("[{topic}] syncing {} records to disk", pending.len());
                tokio::task::block_in_place(|| logger.sync())?;
                pending.drain(..).for_each(Delivery::finish);
            }
            if close_file {
                tokio::task::block_in_place(|| logger.close())?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = step {
            break Err(error);
        }
        if exit {
            break Ok(());
        }
    };
    if result.is_err() {
        // Unwritten messages go back to nsqd (dropping a delivery requeues it).
        pending.clear();
        reader.stop();
        drop(received);
    }
    reader.wait().await;
    result
}

/// Opens the next file if the current one must rotate; whether it did.
fn rotate_if_needed(logger: &mut FileLogger) -> anyhow::Result<bool> {
    let now = chrono::Local::now();
    let instant = Instant::now();
    if !logger.needs_rotation(&now, instant) {
        return Ok(false);
    }
    tokio::task::block_in_place(|| logger.update_file(&now, instant))?;
    Ok(true)
}
