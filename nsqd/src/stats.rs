//! Builds `/stats` documents (protocol::api shapes) from topic and channel snapshots, and renders
//! upstream's text form.
//!
//! Filtering follows upstream's `GetStats`: an unknown `topic=` gives no topic list at all
//! (`"topics":null`, and no producers); a `channel=` drops topics that lack that channel. A
//! topic's e2e latency always merges all of its channels, filtered or not.

use crate::client::ClientShared;
use crate::e2e;
use crate::nsqd::Nsqd;
use nsq_protocol::api::{ChannelStats, ClientStats, MemoryStats, PubCount, Stats, TopicStats};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which parts of the node a `/stats` request wants.
#[derive(Debug, Clone, Default)]
pub struct StatsFilter {
    /// Only this topic.
    pub topic: Option<String>,
    /// Only this channel (topics without it are left out).
    pub channel: Option<String>,
    /// Include client lists and producers.
    pub include_clients: bool,
    /// Include the memory object.
    pub include_mem: bool,
}

/// `OK`, or `NOK - <last disk-write error>`.
pub fn health(nsqd: &Nsqd) -> String {
    match nsqd.health_error() {
        None => "OK".to_owned(),
        Some(err) => format!("NOK - {err}"),
    }
}

/// The `/stats` document.
pub fn stats(nsqd: &Nsqd, filter: &StatsFilter) -> Stats {
    let percentiles = &nsqd.settings.e2e_percentiles;
    let mut topics = Vec::new();
    let mut topic_found = filter.topic.is_none();
    for topic in nsqd.topics() {
        if let Some(wanted) = &filter.topic {
            if topic.name.as_str() != wanted {
                continue;
            }
            topic_found = true;
        }
        let snapshot = topic.snapshot();
        let topic_latency = if percentiles.is_empty() {
            None
        } else {
            e2e::merge_all(
                snapshot
                    .channels
                    .iter()
                    .filter_map(|channel| channel.e2e.as_ref()),
            )
        };
        let channels: Vec<ChannelStats> = snapshot
            .channels
            .iter()
            .filter(|channel| {
                filter
                    .channel
                    .as_deref()
                    .is_none_or(|wanted| channel.name.as_str() == wanted)
            })
            .map(|channel| ChannelStats {
                channel_name: channel.name.to_string(),
                depth: channel.depth as i64,
                backend_depth: channel.backend_depth as i64,
                in_flight_count: channel.in_flight_count as i64,
                deferred_count: channel.deferred_count as i64,
                message_count: channel.message_count,
                requeue_count: channel.requeue_count,
                timeout_count: channel.timeout_count,
                client_count: channel.clients.len() as i64,
                clients: filter.include_clients.then(|| {
                    channel
                        .clients
                        .iter()
                        .map(|client| client_stats(client, None))
                        .collect()
                }),
                paused: channel.paused,
                e2e_processing_latency: e2e::latency_api(channel.e2e.as_ref(), percentiles),
            })
            .collect();
        if filter.channel.is_some() && channels.is_empty() {
            continue;
        }
        topics.push(TopicStats {
            topic_name: snapshot.name.to_string(),
            channels,
            depth: snapshot.depth as i64,
            backend_depth: snapshot.backend_depth as i64,
            message_count: snapshot.message_count,
            message_bytes: snapshot.message_bytes,
            paused: snapshot.paused,
            e2e_processing_latency: e2e::latency_api(topic_latency.as_ref(), percentiles),
        });
    }
    let producers: Vec<ClientStats> = if filter.include_clients && topic_found {
        nsqd.producers()
            .iter()
            .map(|client| client_stats(client, filter.topic.as_deref()))
            .collect()
    } else {
        Vec::new()
    };
    Stats {
        version: nsq_protocol::NSQ_VERSION.to_owned(),
        health: health(nsqd),
        start_time: nsqd.start_time,
        topics: topic_found.then_some(topics),
        memory: filter.include_mem.then(memory_stats),
        producers: (!producers.is_empty()).then_some(producers),
    }
}

/// One connection's entry; with `topic`, `pub_counts` shows only that topic (as upstream).
fn client_stats(client: &Arc<ClientShared>, topic: Option<&str>) -> ClientStats {
    let info = client.info.lock().clone();
    let pub_counts = client
        .pub_counts
        .lock()
        .iter()
        .filter(|(name, _)| topic.is_none_or(|wanted| name.as_str() == wanted))
        .map(|(name, count)| PubCount {
            topic: name.to_string(),
            count: *count,
        })
        .collect();
    ClientStats {
        client_id: info.client_id,
        hostname: info.hostname,
        version: "V2".to_owned(),
        remote_address: client.remote_addr.to_string(),
        state: client.state.load(Ordering::Acquire),
        ready_count: client.ready_count.load(Ordering::Acquire) as i64,
        in_flight_count: client.in_flight_count.load(Ordering::Acquire) as i64,
        message_count: client.message_count.load(Ordering::Relaxed),
        finish_count: client.finish_count.load(Ordering::Relaxed),
        requeue_count: client.requeue_count.load(Ordering::Relaxed),
        connect_ts: client.connect_ts,
        sample_rate: i32::from(info.sample_rate),
        deflate: info.deflate,
        snappy: info.snappy,
        user_agent: info.user_agent,
        authed: info.authed.then_some(true),
        auth_identity: (!info.auth_identity.is_empty()).then_some(info.auth_identity),
        auth_identity_url: (!info.auth_identity_url.is_empty()).then_some(info.auth_identity_url),
        pub_counts,
        tls: info.tls.is_some(),
        // Go reports NegotiatedProtocolIsMutual as always true on a TLS connection.
        tls_negotiated_protocol_is_mutual: info.tls.is_some(),
        tls_cipher_suite: info
            .tls
            .as_ref()
            .map(|tls| tls.cipher_suite.clone())
            .unwrap_or_default(),
        tls_version: info
            .tls
            .as_ref()
            .map(|tls| tls.version.clone())
            .unwrap_or_default(),
        tls_negotiated_protocol: info
            .tls
            .map(|tls| tls.negotiated_protocol)
            .unwrap_or_default(),
    }
}

/// Resident set size from `/proc/self/statm`, reported as the in-use heap figure (no GC here, so
/// the GC fields stay 0; the keys stay so dashboards keep parsing).
pub fn memory_stats() -> MemoryStats {
    let page_size = 4096u64;
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    MemoryStats {
        heap_in_use_bytes: rss_pages * page_size,
        ..MemoryStats::default()
    }
}

/// The text form of `/stats`, byte for byte upstream's layout (Go `%-Nd` padding, Go duration
/// syntax, e2e percentiles in human units).
pub fn render_text(document: &Stats, uptime: Duration) -> String {
    let mut out = String::new();
    let now = unix_now();
    let start = UNIX_EPOCH + Duration::from_secs(document.start_time.max(0) as u64);
    let _ = writeln!(out, "{}", crate::options::version_line("nsqd"));
    let _ = writeln!(
        out,
        "start_time {}",
        humantime::format_rfc3339_seconds(start)
    );
    let _ = writeln!(out, "uptime {}", go_duration(uptime));
    let _ = writeln!(out, "\nHealth: {}", document.health);
    if let Some(memory) = &document.memory {
        let _ = writeln!(out, "\nMemory:");
        for (key, value) in [
            ("heap_objects", memory.heap_objects),
            ("heap_idle_bytes", memory.heap_idle_bytes),
            ("heap_in_use_bytes", memory.heap_in_use_bytes),
            ("heap_released_bytes", memory.heap_released_bytes),
            ("gc_pause_usec_100", memory.gc_pause_usec_100),
            ("gc_pause_usec_99", memory.gc_pause_usec_99),
            ("gc_pause_usec_95", memory.gc_pause_usec_95),
            ("next_gc_bytes", memory.next_gc_bytes),
            ("gc_total_runs", memory.gc_total_runs),
        ] {
            let _ = writeln!(out, "   {key:<25}\t{value}");
        }
    }
    let topics = document.topics.as_deref().unwrap_or_default();
    if topics.is_empty() {
        let _ = writeln!(out, "\nTopics: None");
    } else {
        let _ = write!(out, "\nTopics:");
    }
    for topic in topics {
        let paused = if topic.paused { "*P " } else { "   " };
        let _ = writeln!(
            out,
            "\n{paused}[{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8} e2e%: {}",
            topic.topic_name,
            topic.depth,
            topic.backend_depth,
            topic.message_count,
            latency_text(&topic.e2e_processing_latency)
        );
        for channel in &topic.channels {
            let paused = if channel.paused { "   *P " } else { "      " };
            let _ = writeln!(
                out,
                "{paused}[{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8} e2e%: {}",
                channel.channel_name,
                channel.depth,
                channel.backend_depth,
                channel.in_flight_count,
                channel.deferred_count,
                channel.requeue_count,
                channel.timeout_count,
                channel.message_count,
                latency_text(&channel.e2e_processing_latency)
            );
            for client in channel.clients.iter().flatten() {
                let _ = writeln!(out, "        {}", client_line(client, now));
            }
        }
    }
    match document.producers.as_deref() {
        None | Some([]) => {
            let _ = writeln!(out, "\nProducers: None");
        }
        Some(producers) => {
            let _ = writeln!(out, "\nProducers:");
            for client in producers {
                let _ = writeln!(out, "   {}", client_line(client, now));
            }
        }
    }
    out
}

/// Upstream's `ClientStats.String()`: a producer line if it has published, else a consumer line.
fn client_line(client: &ClientStats, now: i64) -> String {
    let connected = go_duration(Duration::from_secs((now - client.connect_ts).max(0) as u64));
    let port = client
        .remote_address
        .rsplit_once(':')
        .map_or("", |(_, port)| port);
    let id = format!("{}:{} {}", client.hostname, port, client.user_agent);
    if client.pub_counts.is_empty() {
        format!(
            "[{} {:<21}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8} connected: {}",
            client.version,
            id,
            client.state,
            client.in_flight_count,
            client.ready_count,
            client.finish_count,
            client.requeue_count,
            client.message_count,
            connected
        )
    } else {
        let total: u64 = client.pub_counts.iter().map(|count| count.count).sum();
        let topics: Vec<String> = client
            .pub_counts
            .iter()
            .map(|count| format!("{}={}", count.topic, count.count))
            .collect();
        format!(
            "[{} {:<21}] msgs: {:<8} topics: {} connected: {}",
            client.version,
            id,
            total,
            topics.join(","),
            connected
        )
    }
}

fn latency_text(latency: &nsq_protocol::api::E2eLatency) -> String {
    latency
        .percentiles
        .iter()
        .flatten()
        .map(|percentile| e2e::nanos_to_human(percentile.value))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Go's `time.Duration.String()`: `0s`, `750ns`, `1.5µs`, `691.580568ms`, `1m5s`, `1h0m0s`.
pub fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fraction(nanos, 1_000_000));
    }
    let total_seconds = nanos / 1_000_000_000;
    let sub_second = nanos % 1_000_000_000;
    let hours = total_seconds / 3600;
    let minutes = (total_seconds % 3600) / 60;
    let seconds = total_seconds % 60;
    let seconds_text = fraction(seconds * 1_000_000_000 + sub_second, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds_text}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds_text}s")
    } else {
        format!("{seconds_text}s")
    }
}

/// `value / unit` with the fraction's trailing zeros trimmed (Go's `fmtFrac`).
fn fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings() {
        for (duration, expected) in [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(750), "750ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_nanos(691_580_568), "691.580568ms"),
            (Duration::from_secs(65), "1m5s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_nanos(66_310_081_332), "1m6.310081332s"),
            (Duration::from_millis(1500), "1.5s"),
        ] {
            assert_eq!(go_duration(duration), expected);
        }
    }
}
