//! `nsq_stat`: polls `/stats` of every nsqd that has a topic and prints one channel's aggregate
//! figures every interval, in upstream's layout.
//!
//! ```text
//! nsq_stat --topic T --channel C (--nsqd-http-address A ... | --lookupd-http-address H ...)
//!     [--interval 2s] [--count N]
//! ```
//!
//! ```text
//! ------rate------+----------------depth----------------+--------------metadata---------------
//! ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients
//!      24      24 |       0       0       0     0     0 |       0       0           48       1
//! ```
//!
//! The first poll only takes a baseline; each later one prints a row: ingress is the rate of
//! `message_count` growth, egress that minus the depth growth, then depth (memory = depth - disk),
//! in flight, deferred, requeued, timed out, messages, clients, summed over the nsqds. The header
//! repeats every 25 polls. `--count N` exits after N rows.

use anyhow::{Context as _, bail};
use clap::Parser;
use nsq_protocol::api::ChannelStats;
use nsq_tools::args::{parse_args, parse_go_bool, parse_go_duration};
use nsq_tools::lookupd::HttpClient;
use std::collections::BTreeSet;
use std::time::Duration;

/// nsq_stat: aggregate channel stats over an NSQ cluster.
#[derive(Debug, Parser)]
#[command(
    name = "nsq_stat",
    disable_version_flag = true,
    args_override_self = true
)]
struct Flags {
    /// Print the version and exit.
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", value_parser = parse_go_bool)]
    version: bool,
    /// NSQ topic.
    #[arg(long, default_value = "")]
    topic: String,
    /// NSQ channel.
    #[arg(long, default_value = "")]
    channel: String,
    /// Duration of time between polling/printing output.
    #[arg(long, visible_alias = "status-every", default_value = "2s", value_parser = parse_go_duration)]
    interval: Duration,
    /// Number of reports (rows) to print before exiting.
    #[arg(long)]
    count: Option<u32>,
    /// nsqd HTTP address (may be given multiple times).
    #[arg(long = "nsqd-http-address")]
    nsqd_http_addresses: Vec<String>,
    /// lookupd HTTP address (may be given multiple times).
    #[arg(long = "lookupd-http-address")]
    lookupd_http_addresses: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags: Flags = parse_args();
    if flags.version {
        println!("nsq_stat v{}", nsq_tools::VERSION);
        return Ok(());
    }
    nsq_tools::init_logging("nsq_stat");
    tokio::select! {
        result = run(flags) => result,
        _ = nsq_tools::shutdown_signal() => Ok(()),
    }
}

/// One channel's figures summed over nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    depth: i64,
    memory_depth: i64,
    backend_depth: i64,
    in_flight: i64,
    deferred: i64,
    requeued: u64,
    timed_out: u64,
    messages: u64,
    clients: i64,
}

impl Totals {
    fn add(&mut self, channel: &ChannelStats) {
        self.depth += channel.depth;
        self.memory_depth += channel.depth - channel.backend_depth;
        self.backend_depth += channel.backend_depth;
        self.in_flight += channel.in_flight_count;
        self.deferred += channel.deferred_count;
        self.requeued += channel.requeue_count;
        self.timed_out += channel.timeout_count;
        self.messages += channel.message_count;
        self.clients += channel.client_count;
    }
}

/// Upstream's two header lines.
const HEADER_RULE: &str =
    "------rate------+----------------depth----------------+--------------metadata---------------";
const HEADER_COLUMNS: &str =
    "ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients";

/// One report: rates over `seconds` from `before` to `current`, then `current`'s figures.
fn row(before: &Totals, current: &Totals, seconds: f64) -> String {
    let delta_messages = current.messages as i64 - before.messages as i64;
    let delta_depth = current.depth - before.depth;
    format!(
        "{:>7} {:>7} | {:>7} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} {:>12} {:>7}",
        (delta_messages as f64 / seconds) as i64,
        ((delta_messages - delta_depth) as f64 / seconds) as i64,
        current.depth,
        current.memory_depth,
        current.backend_depth,
        current.in_flight,
        current.deferred,
        current.requeued,
        current.timed_out,
        current.messages,
        current.clients
    )
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    if flags.topic.is_empty() || flags.channel.is_empty() {
        bail!("--topic and --channel are required");
    }
    if flags.interval.is_zero() {
        bail!("--interval should be positive");
    }
    if flags.count == Some(0) {
        bail!("--count should be positive");
    }
    if flags.nsqd_http_addresses.is_empty() && flags.lookupd_http_addresses.is_empty() {
        bail!("--nsqd-http-address or --lookupd-http-address required");
    }
    if !flags.nsqd_http_addresses.is_empty() && !flags.lookupd_http_addresses.is_empty() {
        bail!("use --nsqd-http-address or --lookupd-http-address not both");
    }
    let http = HttpClient::new()?;
    let seconds = flags.interval.as_secs_f64();
    let mut previous: Option<Totals> = None;
    let mut poll: u32 = 0;
    loop {
        let current = poll_once(&http, &flags).await?;
        if poll.is_multiple_of(25) {
            println!("{HEADER_RULE}\n{HEADER_COLUMNS}");
        }
        if let Some(before) = &previous {
            println!("{}", row(before, &current, seconds));
        }
        previous = Some(current);
        if flags.count.is_some_and(|count| poll >= count) {
            return Ok(());
        }
        poll += 1;
        tokio::time::sleep(flags.interval).await;
    }
}

/// The channel's totals over every nsqd that has the topic.
async fn poll_once(http: &HttpClient, flags: &Flags) -> anyhow::Result<Totals> {
    let nodes: BTreeSet<String> = if flags.lookupd_http_addresses.is_empty() {
        flags.nsqd_http_addresses.iter().cloned().collect()
    } else {
        http.lookup(&flags.lookupd_http_addresses, &flags.topic)
            .await
            .context("failed to get topic producers")?
            .iter()
            .map(|node| node.http_address())
            .collect()
    };
    let mut totals = Totals::default();
    let mut found = false;
    for node in nodes {
        let stats = http
            .nsqd_stats(&node, &flags.topic, Some(&flags.channel))
            .await
            .context("failed to get nsqd stats")?;
        let channels = stats
            .topics
            .unwrap_or_default()
            .into_iter()
            .filter(|topic| topic.topic_name == flags.topic)
            .flat_map(|topic| topic.channels)
            .filter(|channel| channel.channel_name == flags.channel);
        for channel in channels {
            totals.add(&channel);
            found = true;
        }
    }
    if !found {
        bail!(
            "failed to find channel({}) in stats metadata for topic({})",
            flags.channel,
            flags.topic
        );
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_upstream_layout() {
        // Upstream: fmt.Printf("%7s %7s | %7s %7s %7s %5s %5s | %7s %7s %12s %7s\n", ...).
        let header = format!(
            "{:>7} {:>7} | {:>7} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} {:>12} {:>7}",
            "ingress",
            "egress",
            "total",
            "mem",
            "disk",
            "inflt",
            "def",
            "req",
            "t-o",
            "msgs",
            "clients"
        );
        assert_eq!(header, HEADER_COLUMNS);
        let before = Totals {
            depth: 10,
            messages: 100,
            ..Totals::default()
        };
        let current = Totals {
            depth: 30,
            memory_depth: 25,
            backend_depth: 5,
            in_flight: 3,
            deferred: 2,
            requeued: 7,
            timed_out: 1,
            messages: 200,
            clients: 4,
        };
        // 100 messages in 2 s in, 20 of them still queued: 50/s ingress, 40/s egress.
        assert_eq!(
            row(&before, &current, 2.0),
            "     50      40 |      30      25       5     3     2 |       7       1          200       4"
        );
    }
}
