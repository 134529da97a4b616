//! Pushing stats to statsd over UDP (`--statsd-address`), with upstream's metric names, types
//! and packing.
//!
//! Every `--statsd-interval` the task takes a `/stats` snapshot (no clients), turns it into lines
//! `<prefix><stat>:<value>|c` (counters: the increase since the previous push; a first push, or a
//! counter that went down because the topic was re-created, reports the full count resp. 0) and
//! `…|g` (gauges), packs whole lines into datagrams of at most `--statsd-udp-packet-size` bytes,
//! and sends them spread evenly over `interval − 1 s`.
//!
//! The prefix is `--statsd-prefix` with every `%s` replaced by the host key
//! (`<broadcast address>:<broadcast HTTP port>` with `.` and `:` turned into `_`), plus a trailing
//! `.` if missing; an empty prefix stays empty.

use crate::nsqd::{NodeIdentity, Nsqd};
use crate::stats::{StatsFilter, memory_stats, stats};
use nsq_protocol::api::{Stats, TopicStats};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// statsd settings from the flags.
#[derive(Debug, Clone)]
pub struct StatsdConfig {
    /// `host:port` (UDP).
    pub address: String,
    /// Expanded prefix (see [`expanded_prefix`]).
    pub prefix: String,
    /// Push period.
    pub interval: Duration,
    /// Also push `mem.*` gauges.
    pub mem_stats: bool,
    /// Largest datagram.
    pub udp_packet_size: usize,
    /// Leave out `#ephemeral` topics and channels.
    pub exclude_ephemeral: bool,
}

/// `--statsd-prefix` with `%s` replaced by the host key, ending in `.` (unless empty).
pub fn expanded_prefix(prefix: &str, identity: Option<&NodeIdentity>) -> String {
    if prefix.is_empty() {
        return String::new();
    }
    let host_key = identity
        .map(|identity| {
            format!(
                "{}:{}",
                identity.broadcast_address, identity.broadcast_http_port
            )
        })
        .unwrap_or_default()
        .replace(['.', ':'], "_");
    let mut expanded = prefix.replace("%s", &host_key);
    if !expanded.ends_with('.') {
        expanded.push('.');
    }
    expanded
}

/// Counter values of the previous push, keyed by stat name.
type LastCounters = HashMap<String, u64>;

/// Pushes until `shutdown`.
pub async fn run(nsqd: Arc<Nsqd>, config: StatsdConfig, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + config.interval,
        config.interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = LastCounters::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let filter = StatsFilter::default();
        let document = stats(&nsqd, &filter);
        let lines = build_lines(&document, &config, &mut last);
        let datagrams = pack(&lines, config.udp_packet_size);
        tracing::info!("STATSD: pushing stats to {}", config.address);
        if let Err(err) = send_spread(&config, &datagrams, &shutdown).await {
            tracing::error!("failed to push stats to statsd({}) - {err}", config.address);
        }
    }
    tracing::info!("STATSD: closing");
}

fn counter(
    out: &mut Vec<String>,
    last: &mut LastCounters,
    next: &mut LastCounters,
    prefix: &str,
    stat: String,
    value: u64,
) {
    let previous = last.get(&stat).copied().unwrap_or(0);
    // A re-created topic restarts from 0: report 0 rather than a wrapped negative delta.
    let delta = value.saturating_sub(previous);
    out.push(format!("{prefix}{stat}:{delta}|c\n"));
    next.insert(stat, value);
}

fn gauge(out: &mut Vec<String>, prefix: &str, stat: &str, value: i64) {
    out.push(format!("{prefix}{stat}:{value}|g\n"));
}

fn quantile_suffix(quantile: f64) -> String {
    format!("{:.0}", quantile * 100.0)
}

/// The lines of one push (each ending in `\n`); updates `last` with this push's counters.
fn build_lines(document: &Stats, config: &StatsdConfig, last: &mut LastCounters) -> Vec<String> {
    let prefix = &config.prefix;
    let mut out = Vec::new();
    let mut next = LastCounters::new();
    for topic in document.topics.iter().flatten() {
        if config.exclude_ephemeral && topic.topic_name.ends_with("#ephemeral") {
            continue;
        }
        topic_lines(&mut out, last, &mut next, config, topic);
    }
    if config.mem_stats {
        let memory = memory_stats();
        for (stat, value) in [
            ("mem.heap_objects", memory.heap_objects),
            ("mem.heap_idle_bytes", memory.heap_idle_bytes),
            ("mem.heap_in_use_bytes", memory.heap_in_use_bytes),
            ("mem.heap_released_bytes", memory.heap_released_bytes),
            ("mem.gc_pause_usec_100", memory.gc_pause_usec_100),
            ("mem.gc_pause_usec_99", memory.gc_pause_usec_99),
            ("mem.gc_pause_usec_95", memory.gc_pause_usec_95),
            ("mem.next_gc_bytes", memory.next_gc_bytes),
        ] {
            gauge(&mut out, prefix, stat, value as i64);
        }
        counter(
            &mut out,
            last,
            &mut next,
            prefix,
            "mem.gc_runs".to_owned(),
            memory.gc_total_runs,
        );
    }
    *last = next;
    out
}

fn topic_lines(
    out: &mut Vec<String>,
    last: &mut LastCounters,
    next: &mut LastCounters,
    config: &StatsdConfig,
    topic: &TopicStats,
) {
    let prefix = &config.prefix;
    let name = &topic.topic_name;
    counter(
        out,
        last,
        next,
        prefix,
        format!("topic.{name}.message_count"),
        topic.message_count,
    );
    counter(
        out,
        last,
        next,
        prefix,
        format!("topic.{name}.message_bytes"),
        topic.message_bytes,
    );
    gauge(out, prefix, &format!("topic.{name}.depth"), topic.depth);
    gauge(
        out,
        prefix,
        &format!("topic.{name}.backend_depth"),
        topic.backend_depth,
    );
    for percentile in topic.e2e_processing_latency.percentiles.iter().flatten() {
        let stat = format!(
            "topic.{name}.e2e_processing_latency_{}",
            quantile_suffix(percentile.quantile)
        );
        gauge(out, prefix, &stat, percentile.value as i64);
    }
    for channel in &topic.channels {
        if config.exclude_ephemeral && channel.channel_name.ends_with("#ephemeral") {
            continue;
        }
        let base = format!("topic.{name}.channel.{}", channel.channel_name);
        counter(
            out,
            last,
            next,
            prefix,
            format!("{base}.message_count"),
            channel.message_count,
        );
        gauge(out, prefix, &format!("{base}.depth"), channel.depth);
        gauge(
            out,
            prefix,
            &format!("{base}.backend_depth"),
            channel.backend_depth,
        );
        gauge(
            out,
            prefix,
            &format!("{base}.in_flight_count"),
            channel.in_flight_count,
        );
        gauge(
            out,
            prefix,
            &format!("{base}.deferred_count"),
            channel.deferred_count,
        );
        counter(
            out,
            last,
            next,
            prefix,
            format!("{base}.requeue_count"),
            channel.requeue_count,
        );
        counter(
            out,
            last,
            next,
            prefix,
            format!("{base}.timeout_count"),
            channel.timeout_count,
        );
        gauge(
            out,
            prefix,
            &format!("{base}.clients"),
            channel.client_count,
        );
        for percentile in channel.e2e_processing_latency.percentiles.iter().flatten() {
            let stat = format!(
                "{base}.e2e_processing_latency_{}",
                quantile_suffix(percentile.quantile)
            );
            gauge(out, prefix, &stat, percentile.value as i64);
        }
    }
}

/// Packs whole lines into datagrams of at most `size` bytes (a single longer line gets its own
/// datagram, as upstream's boundary writer does).
fn pack(lines: &[String], size: usize) -> Vec<Vec<u8>> {
    let mut datagrams = Vec::new();
    let mut current = String::new();
    for line in lines {
        if !current.is_empty() && current.len() + line.len() > size {
            datagrams.push(std::mem::take(&mut current).into_bytes());
        }
        let _ = write!(current, "{line}");
    }
    if !current.is_empty() {
        datagrams.push(current.into_bytes());
    }
    datagrams
}

/// Sends the datagrams spread evenly over `interval − 1 s` (all at once if shutting down).
async fn send_spread(
    config: &StatsdConfig,
    datagrams: &[Vec<u8>],
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    if datagrams.is_empty() {
        return Ok(());
    }
    let target = tokio::net::lookup_host(&config.address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(target).await?;
    let spread = config.interval.saturating_sub(Duration::from_secs(1));
    let pause = spread / u32::try_from(datagrams.len()).unwrap_or(u32::MAX);
    for datagram in datagrams {
        if let Err(err) = socket.send(datagram).await {
            // A refused datagram (nobody listening) is not worth stopping the push for.
            tracing::debug!("statsd send failed - {err}");
        }
        if !shutdown.is_cancelled() && !pause.is_zero() {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nsq_protocol::api::{ChannelStats, E2eLatency};
    use std::net::SocketAddr;

    fn identity() -> NodeIdentity {
        let addr: SocketAddr = "127.0.0.1:4150".parse().unwrap();
        NodeIdentity {
            broadcast_address: "myhost.example".to_owned(),
            hostname: "vm".to_owned(),
            tcp_addr: addr,
            http_addr: None,
            broadcast_tcp_port: 4150,
            broadcast_http_port: 64151,
        }
    }

    #[test]
    fn prefix_like_upstream() {
        assert_eq!(
            expanded_prefix("nsq.%s", Some(&identity())),
            "nsq.myhost_example_64151."
        );
        assert_eq!(expanded_prefix("custom.", Some(&identity())), "custom.");
        assert_eq!(expanded_prefix("", Some(&identity())), "");
    }

    fn document(message_count: u64) -> Stats {
        let none = E2eLatency {
            count: 0,
            percentiles: None,
        };
        Stats {
            version: "1.3.0".to_owned(),
            health: "OK".to_owned(),
            start_time: 0,
            topics: Some(vec![TopicStats {
                topic_name: "e2e".to_owned(),
                channels: vec![ChannelStats {
                    channel_name: "ch".to_owned(),
                    depth: 2,
                    backend_depth: 0,
                    in_flight_count: 1,
                    deferred_count: 0,
                    message_count,
                    requeue_count: 0,
                    timeout_count: 0,
                    client_count: 1,
                    clients: None,
                    paused: false,
                    e2e_processing_latency: none.clone(),
                }],
                depth: 0,
                backend_depth: 0,
                message_count,
                message_bytes: 10,
                paused: false,
                e2e_processing_latency: none,
            }]),
            memory: None,
            producers: None,
        }
    }

    #[test]
    fn counters_are_deltas_and_lines_are_packed() {
        let config = StatsdConfig {
            address: String::new(),
            prefix: "nsq.myhost_example_64151.".to_owned(),
            interval: Duration::from_secs(60),
            mem_stats: false,
            udp_packet_size: 508,
            exclude_ephemeral: false,
        };
        let mut last = LastCounters::new();
        let first = build_lines(&document(5), &config, &mut last);
        assert!(
            first.contains(&"nsq.myhost_example_64151.topic.e2e.message_count:5|c\n".to_owned())
        );
        assert!(first.contains(
            &"nsq.myhost_example_64151.topic.e2e.channel.ch.requeue_count:0|c\n".to_owned()
        ));
        assert!(
            first.contains(&"nsq.myhost_example_64151.topic.e2e.channel.ch.depth:2|g\n".to_owned())
        );
        let second = build_lines(&document(7), &config, &mut last);
        assert!(
            second.contains(&"nsq.myhost_example_64151.topic.e2e.message_count:2|c\n".to_owned())
        );
        let third = build_lines(&document(1), &config, &mut last);
        assert!(
            third.contains(&"nsq.myhost_example_64151.topic.e2e.message_count:0|c\n".to_owned())
        );

        let datagrams = pack(&first, 120);
        assert!(datagrams.len() > 1);
        for datagram in &datagrams {
            assert!(datagram.len() <= 120);
            assert!(datagram.ends_with(b"\n"));
        }
        assert_eq!(datagrams.concat(), first.concat().into_bytes());
    }
}
