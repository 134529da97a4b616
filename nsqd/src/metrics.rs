//! `GET /metrics`: the `/stats` figures in Prometheus text format (version 0.0.4), an nsq-rs
//! addition.
//!
//! Built from the same [`stats`](crate::stats::stats) document as `/stats`, so both always agree.
//! Counters (`*_total`) count since this process started, as `/stats` does. E2e latency is a
//! gauge per configured quantile (seconds) plus the sample count of the current window; it is
//! absent without `--e2e-processing-latency-percentile`.

use crate::nsqd::Nsqd;
use crate::stats::{StatsFilter, memory_stats, stats};
use nsq_protocol::api::{E2eLatency, Stats};
use std::fmt::Write as _;
use std::time::Duration;

/// One metric family: name, type, help, and its samples (labels, value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, labels: String, value: impl Into<f64>) {
        self.samples.push((labels, value.into()));
    }
}

/// The exposition text.
pub fn render(nsqd: &Nsqd, uptime: Duration) -> String {
    let filter = StatsFilter {
        include_clients: false,
        include_mem: false,
        ..StatsFilter::default()
    };
    let document = stats(nsqd, &filter);
    let mut text = render_document(&document, uptime, memory_stats().heap_in_use_bytes);
    let commits = nsqd.commit_counters();
    for (name, help, value) in [
        (
            "nsqd_durable_commit_rounds_total",
            "Group commits run (--durable): each makes every publish waiting at its start durable.",
            commits.rounds,
        ),
        (
            "nsqd_durable_fsyncs_total",
            "fdatasync/fsync calls made by group commits.",
            commits.fsyncs,
        ),
        (
            "nsqd_durable_commit_requests_total",
            "Publishes (and topic-to-channel hand-overs) acknowledged after a group commit.",
            commits.requests,
        ),
    ] {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    text
}

fn render_document(document: &Stats, uptime: Duration, resident_bytes: u64) -> String {
    let mut node = [
        Family::new(
            "nsqd_info",
            "gauge",
            "Constant 1, labelled with the NSQ protocol version.",
        ),
        Family::new(
            "nsqd_healthy",
            "gauge",
            "1 when the last disk write succeeded (/ping OK), else 0.",
        ),
        Family::new(
            "nsqd_start_time_seconds",
            "gauge",
            "Process start, Unix seconds.",
        ),
        Family::new(
            "nsqd_uptime_seconds",
            "gauge",
            "Seconds since the process started.",
        ),
        Family::new("nsqd_resident_memory_bytes", "gauge", "Resident set size."),
        Family::new("nsqd_topics", "gauge", "Number of topics."),
    ];
    node[0].push(format!("{{version=\"{}\"}}", escape(&document.version)), 1);
    node[1].push(String::new(), u8::from(document.health == "OK"));
    node[2].push(String::new(), document.start_time as f64);
    node[3].push(String::new(), uptime.as_secs_f64());
    node[4].push(String::new(), resident_bytes as f64);
    let topics = document.topics.as_deref().unwrap_or_default();
    node[5].push(String::new(), topics.len() as f64);

    let mut topic_depth = Family::new(
        "nsqd_topic_depth",
        "gauge",
        "Messages queued at the topic (memory + disk).",
    );
    let mut topic_backend = Family::new(
        "nsqd_topic_backend_depth",
        "gauge",
        "Disk part of the topic depth.",
    );
    let mut topic_messages = Family::new(
        "nsqd_topic_messages_total",
        "counter",
        "Messages published to the topic.",
    );
    let mut topic_bytes = Family::new(
        "nsqd_topic_message_bytes_total",
        "counter",
        "Body bytes published to the topic.",
    );
    let mut topic_paused = Family::new("nsqd_topic_paused", "gauge", "1 when the topic is paused.");
    let mut topic_channels = Family::new(
        "nsqd_topic_channels",
        "gauge",
        "Number of channels of the topic.",
    );
    let mut topic_e2e = Family::new(
        "nsqd_topic_e2e_processing_latency_seconds",
        "gauge",
        "Publish-to-FIN latency quantiles over the window, merged over channels.",
    );
    let mut topic_e2e_count = Family::new(
        "nsqd_topic_e2e_processing_latency_samples",
        "gauge",
        "FINs in the latency window, merged over channels.",
    );
    let mut channel_depth = Family::new(
        "nsqd_channel_depth",
        "gauge",
        "Deliverable messages queued in the channel (memory + disk).",
    );
    let mut channel_backend = Family::new(
        "nsqd_channel_backend_depth",
        "gauge",
        "Disk part of the channel depth.",
    );
    let mut channel_in_flight = Family::new(
        "nsqd_channel_in_flight",
        "gauge",
        "Messages delivered and not yet finished.",
    );
    let mut channel_deferred = Family::new("nsqd_channel_deferred", "gauge", "Deferred messages.");
    let mut channel_messages = Family::new(
        "nsqd_channel_messages_total",
        "counter",
        "Messages put into the channel.",
    );
    let mut channel_requeues =
        Family::new("nsqd_channel_requeues_total", "counter", "Explicit REQs.");
    let mut channel_timeouts = Family::new(
        "nsqd_channel_timeouts_total",
        "counter",
        "In-flight deadlines that expired.",
    );
    let mut channel_clients = Family::new("nsqd_channel_clients", "gauge", "Connected consumers.");
    let mut channel_paused = Family::new(
        "nsqd_channel_paused",
        "gauge",
        "1 when the channel is paused.",
    );
    let mut channel_e2e = Family::new(
        "nsqd_channel_e2e_processing_latency_seconds",
        "gauge",
        "Publish-to-FIN latency quantiles over the window.",
    );
    let mut channel_e2e_count = Family::new(
        "nsqd_channel_e2e_processing_latency_samples",
        "gauge",
        "FINs in the latency window.",
    );

    for topic in topics {
        let labels = format!("{{topic=\"{}\"}}", escape(&topic.topic_name));
        topic_depth.push(labels.clone(), topic.depth as f64);
        topic_backend.push(labels.clone(), topic.backend_depth as f64);
        topic_messages.push(labels.clone(), topic.message_count as f64);
        topic_bytes.push(labels.clone(), topic.message_bytes as f64);
        topic_paused.push(labels.clone(), u8::from(topic.paused));
        topic_channels.push(labels, topic.channels.len() as f64);
        let topic_label = format!("topic=\"{}\"", escape(&topic.topic_name));
        push_latency(
            &mut topic_e2e,
            &mut topic_e2e_count,
            &topic_label,
            &topic.e2e_processing_latency,
        );
        for channel in &topic.channels {
            let inner = format!(
                "topic=\"{}\",channel=\"{}\"",
                escape(&topic.topic_name),
                escape(&channel.channel_name)
            );
            let labels = format!("{{{inner}}}");
            channel_depth.push(labels.clone(), channel.depth as f64);
            channel_backend.push(labels.clone(), channel.backend_depth as f64);
            channel_in_flight.push(labels.clone(), channel.in_flight_count as f64);
            channel_deferred.push(labels.clone(), channel.deferred_count as f64);
            channel_messages.push(labels.clone(), channel.message_count as f64);
            channel_requeues.push(labels.clone(), channel.requeue_count as f64);
            channel_timeouts.push(labels.clone(), channel.timeout_count as f64);
            channel_clients.push(labels.clone(), channel.client_count as f64);
            channel_paused.push(labels, u8::from(channel.paused));
            push_latency(
                &mut channel_e2e,
                &mut channel_e2e_count,
                &inner,
                &channel.e2e_processing_latency,
            );
        }
    }

    let mut out = String::new();
    for family in node.iter().chain([
        &topic_depth,
        &topic_backend,
        &topic_messages,
        &topic_bytes,
        &topic_paused,
        &topic_channels,
        &topic_e2e,
        &topic_e2e_count,
        &channel_depth,
        &channel_backend,
        &channel_in_flight,
        &channel_deferred,
        &channel_messages,
        &channel_requeues,
        &channel_timeouts,
        &channel_clients,
        &channel_paused,
        &channel_e2e,
        &channel_e2e_count,
    ]) {
        if family.samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for (labels, value) in &family.samples {
            let _ = writeln!(out, "{}{labels} {value}", family.name);
        }
    }
    out
}

fn push_latency(quantiles: &mut Family, counts: &mut Family, labels: &str, latency: &E2eLatency) {
    let Some(percentiles) = &latency.percentiles else {
        return;
    };
    for percentile in percentiles {
        quantiles.push(
            format!("{{{labels},quantile=\"{}\"}}", percentile.quantile),
            percentile.value / 1e9,
        );
    }
    counts.push(format!("{{{labels}}}"), latency.count as f64);
}

/// Label-value escaping of the text format (`\\`, `\"`, `\n`).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nsq_protocol::api::{ChannelStats, Percentile, TopicStats};

    #[test]
    fn renders_families_and_labels() {
        let latency = E2eLatency {
            count: 3,
            percentiles: Some(vec![Percentile {
                quantile: 0.99,
                value: 2e9,
            }]),
        };
        let document = Stats {
            version: "1.3.0".to_owned(),
            health: "OK".to_owned(),
            start_time: 10,
            topics: Some(vec![TopicStats {
                topic_name: "t#ephemeral".to_owned(),
                channels: vec![ChannelStats {
                    channel_name: "c".to_owned(),
                    depth: 4,
                    backend_depth: 1,
                    in_flight_count: 2,
                    deferred_count: 0,
                    message_count: 9,
                    requeue_count: 1,
                    timeout_count: 0,
                    client_count: 1,
                    clients: None,
                    paused: true,
                    e2e_processing_latency: latency.clone(),
                }],
                depth: 0,
                backend_depth: 0,
                message_count: 9,
                message_bytes: 90,
                paused: false,
                e2e_processing_latency: latency,
            }]),
            memory: None,
            producers: None,
        };
        let text = render_document(&document, Duration::from_secs(5), 1024);
        assert!(text.contains("# TYPE nsqd_channel_depth gauge\n"));
        assert!(text.contains("nsqd_channel_depth{topic=\"t#ephemeral\",channel=\"c\"} 4\n"));
        assert!(text.contains("nsqd_channel_paused{topic=\"t#ephemeral\",channel=\"c\"} 1\n"));
        assert!(text.contains("nsqd_topic_messages_total{topic=\"t#ephemeral\"} 9\n"));
        assert!(text.contains(
            "nsqd_channel_e2e_processing_latency_seconds{topic=\"t#ephemeral\",channel=\"c\",quantile=\"0.99\"} 2\n"
        ));
        assert!(text.contains("nsqd_healthy 1\n"));
    }
}
