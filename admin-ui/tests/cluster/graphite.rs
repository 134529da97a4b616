//! The page's graphite target names and graph URLs (`assets/graphite.js`, the code the page runs,
//! evaluated here under node) against the names upstream's page builds from `--statsd-prefix`,
//! `--statsd-counter-format`, `--statsd-gauge-format` and `--statsd-interval`.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;

/// Runs each `[function, ...args]` of `calls` on `NsqGraphite` (graphite.js loaded in a fresh
/// `vm` context) and returns the results in order.
fn graphite_js(calls: &Value) -> Vec<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/graphite.js");
    let runner = r#"
const fs = require('fs');
const vm = require('vm');
const context = {};
vm.createContext(context);
vm.runInContext(fs.readFileSync(process.argv[1], 'utf8'), context);
const calls = JSON.parse(process.argv[2]);
console.log(JSON.stringify(calls.map(([name, ...args]) => context.NsqGraphite[name](...args))));
"#;
    let output = Command::new("node")
        .arg("-e")
        .arg(runner)
        .arg(&script)
        .arg(calls.to_string())
        .output()
        .expect("node is needed for this test (see admin-ui/tests/browser/install.sh)");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("node printed JSON")
}

fn upstream_defaults() -> Value {
    json!({
        "graphite_url": "http://graphite.local:8080",
        "statsd_prefix": "nsq.%s",
        "statsd_counter_format": "stats.counters.%s.count",
        "statsd_gauge_format": "stats.gauges.%s",
        "statsd_interval": 60,
    })
}

#[test]
fn target_names_for_topics_and_channels() {
    let s = upstream_defaults();
    let e2e = json!({"topic": "orders", "channel": "billing",
                     "percentiles": [{"quantile": 0.99}, {"quantile": 0.5}, {"quantile": 0.999}]});
    let calls = json!([
        ["targets", s, "topic", "*", "orders", "", "depth"],
        ["targets", s, "topic", "", "orders", "", "message_count"],
        ["targets", s, "topic", "127.0.0.1:4151", "orders", "", "depth"],
        ["targets", s, "channel", "*", "orders", "billing", "depth"],
        ["targets", s, "channel", "*", "orders", "billing", "in_flight_count"],
        ["targets", s, "channel", "*", "orders", "billing", "deferred_count"],
        ["targets", s, "channel", "*", "orders", "billing", "requeue_count"],
        ["targets", s, "channel", "*", "orders", "billing", "timeout_count"],
        ["targets", s, "channel", "*", "orders", "billing", "message_count"],
        ["targets", s, "channel", "nsqd-a.example:4151", "orders", "billing", "clients"],
        ["rateTarget", s, "topic", "*", "orders", ""],
        ["rateTarget", s, "channel", "127.0.0.1:4151", "orders", "billing"],
        ["targets", s, "counter", "*", "", "", "message_count"],
        ["targets", s, "node", "127.0.0.1:4151", "", "", "gc_runs"],
        ["targets", s, "node", "127.0.0.1:4151", "", "", "heap_objects"],
        ["targets", s, "node", "[::1]:4151", "", "", "*_bytes"],
        ["targets", s, "e2e", "*", e2e, "", "e2e_processing_latency"],
        ["targets", s, "e2e", "127.0.0.1:4151", {"topic": "orders", "channel": "", "percentiles": [{"quantile": 0.95}]}, "", "e2e_processing_latency"],
    ]);
    let expected = json!([
        ["sumSeries(stats.gauges.nsq.*.topic.orders.depth)"],
        ["sumSeries(stats.counters.nsq.*.topic.orders.message_count.count)"],
        ["sumSeries(stats.gauges.nsq.127_0_0_1_4151.topic.orders.depth)"],
        ["sumSeries(stats.gauges.nsq.*.topic.orders.channel.billing.depth)"],
        ["sumSeries(stats.gauges.nsq.*.topic.orders.channel.billing.in_flight_count)"],
        ["sumSeries(stats.gauges.nsq.*.topic.orders.channel.billing.deferred_count)"],
        ["sumSeries(stats.counters.nsq.*.topic.orders.channel.billing.requeue_count.count)"],
        ["sumSeries(stats.counters.nsq.*.topic.orders.channel.billing.timeout_count.count)"],
        ["sumSeries(stats.counters.nsq.*.topic.orders.channel.billing.message_count.count)"],
        ["sumSeries(stats.gauges.nsq.nsqd-a_example_4151.topic.orders.channel.billing.clients)"],
        "sumSeries(stats.counters.nsq.*.topic.orders.message_count.count)",
        "sumSeries(stats.counters.nsq.127_0_0_1_4151.topic.orders.channel.billing.message_count.count)",
        ["sumSeries(stats.counters.nsq.*.topic.*.channel.*.message_count.count)"],
        ["movingAverage(stats.counters.nsq.127_0_0_1_4151.mem.gc_runs.count,45)"],
        ["stats.gauges.nsq.127_0_0_1_4151.mem.heap_objects"],
        ["stats.gauges.nsq.[__1]_4151.mem.*_bytes"],
        [
            "scale(averageSeries(stats.gauges.nsq.*.topic.orders.channel.billing.e2e_processing_latency_99),0.000001)",
            "scale(averageSeries(stats.gauges.nsq.*.topic.orders.channel.billing.e2e_processing_latency_50),0.000001)",
            "scale(averageSeries(stats.gauges.nsq.*.topic.orders.channel.billing.e2e_processing_latency_100),0.000001)",
        ],
        ["scale(stats.gauges.nsq.127_0_0_1_4151.topic.orders.e2e_processing_latency_95,0.000001)"],
    ]);
    let results = graphite_js(&calls);
    for (index, (got, want)) in results.iter().zip(expected.as_array().unwrap()).enumerate() {
        assert_eq!(got, want, "call {}: {}", index, calls[index]);
    }
    assert_eq!(results.len(), expected.as_array().unwrap().len());
}

#[test]
fn prefix_and_formats_come_from_the_flags() {
    let custom = |prefix: &str, counter: &str, gauge: &str| {
        json!({"graphite_url": "", "statsd_prefix": prefix, "statsd_counter_format": counter,
               "statsd_gauge_format": gauge, "statsd_interval": 10})
    };
    // Old statsd naming (`stats_counts.`), no gauge wrapping, a prefix that already ends in `.`,
    // `%s` more than once, and no prefix at all.
    let old_statsd = custom("prod.%s.nsq.", "stats_counts.%s", "");
    let twice = custom("%s.nsq.%s", "%s", "%s");
    let bare = custom("", "stats.counters.%s.count", "stats.gauges.%s");
    let calls = json!([
        [
            "targets",
            old_statsd,
            "topic",
            "*",
            "orders",
            "",
            "message_count"
        ],
        [
            "targets",
            old_statsd,
            "channel",
            "10.0.0.7:4151",
            "orders",
            "billing",
            "depth"
        ],
        ["targets", twice, "topic", "h:1", "orders", "", "depth"],
        ["targets", bare, "topic", "*", "orders", "", "depth"],
        ["prefix", old_statsd, "*"],
        ["formatKey", old_statsd, "counter", "k"],
        ["formatKey", old_statsd, "gauge", "k"],
        ["formatKey", old_statsd, "unknown", "k"],
    ]);
    assert_eq!(
        graphite_js(&calls),
        [
            json!(["sumSeries(stats_counts.prod.*.nsq.topic.orders.message_count)"]),
            json!(["sumSeries(prod.10_0_0_7_4151.nsq.topic.orders.channel.billing.depth)"]),
            json!(["sumSeries(h_1.nsq.h_1.topic.orders.depth)"]),
            json!(["sumSeries(stats.gauges.topic.orders.depth)"]),
            json!("prod.*.nsq."),
            json!("stats_counts.k"),
            json!("k"),
            json!("k"),
        ]
    );
}

/// The query pairs of a (possibly relative) graph URL, and the URL before `?`.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let parsed = reqwest::Url::parse("http://page.invalid/")
        .unwrap()
        .join(url)
        .unwrap();
    let before = url.split('?').next().unwrap().to_owned();
    let pairs = parsed
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    (before, pairs)
}

fn values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .collect()
}

#[test]
fn sparkline_and_large_graph_urls() {
    let s = upstream_defaults();
    let proxied = json!({"graphite_url": "/admin", "statsd_prefix": "nsq.%s",
        "statsd_counter_format": "stats.counters.%s.count", "statsd_gauge_format": "stats.gauges.%s",
        "statsd_interval": 60});
    let e2e = json!({"topic": "orders", "channel": "", "percentiles": [{"quantile": 0.99}, {"quantile": 0.5}]});
    let calls = json!([
        ["sparklineUrl", s, "2h", "topic", "*", "orders", "", "depth"],
        [
            "largeGraphUrl",
            s,
            "24h",
            "topic",
            "*",
            "orders",
            "",
            "message_count"
        ],
        [
            "largeGraphUrl",
            s,
            "2h",
            "channel",
            "*",
            "orders",
            "billing",
            "depth"
        ],
        [
            "sparklineUrl",
            proxied,
            "1h",
            "channel",
            "*",
            "orders",
            "billing",
            "requeue_count"
        ],
        [
            "sparklineUrl",
            s,
            "2h",
            "e2e",
            "*",
            e2e,
            "",
            "e2e_processing_latency"
        ],
    ]);
    let urls: Vec<String> = graphite_js(&calls)
        .into_iter()
        .map(|url| url.as_str().unwrap().to_owned())
        .collect();

    let (base, pairs) = split_url(&urls[0]);
    assert_eq!(base, "http://graphite.local:8080/render");
    for (name, value) in [
        ("colorList", "red"),
        ("height", "20"),
        ("width", "120"),
        ("hideGrid", "true"),
        ("hideLegend", "true"),
        ("hideAxes", "true"),
        ("bgcolor", "ff000000"),
        ("fgcolor", "black"),
        ("margin", "0"),
        ("yMin", "0"),
        ("lineMode", "connected"),
        ("drawNullAsZero", "false"),
        ("from", "-2h"),
        ("until", "-1min"),
    ] {
        assert_eq!(values(&pairs, name), [value], "{name}");
    }
    assert_eq!(
        values(&pairs, "target"),
        [r#"summarize(sumSeries(stats.gauges.nsq.*.topic.orders.depth),"60sec","avg")"#]
    );

    // Counters on large graphs are per second: scaled by 1 / statsd interval.
    let (_, pairs) = split_url(&urls[1]);
    assert_eq!(values(&pairs, "width"), ["800"]);
    assert_eq!(values(&pairs, "height"), ["450"]);
    assert_eq!(values(&pairs, "fgcolor"), ["999999"]);
    assert_eq!(values(&pairs, "colorList"), ["blue"]);
    assert_eq!(values(&pairs, "from"), ["-24h"]);
    assert_eq!(
        values(&pairs, "target"),
        [
            r#"summarize(scale(sumSeries(stats.counters.nsq.*.topic.orders.message_count.count),0.016666666666666666),"60sec","avg")"#
        ]
    );
    let (_, pairs) = split_url(&urls[2]);
    assert_eq!(
        values(&pairs, "target"),
        [
            r#"summarize(sumSeries(stats.gauges.nsq.*.topic.orders.channel.billing.depth),"60sec","avg")"#
        ]
    );

    // With --proxy-graphite the page asks nsqadmin's own /render under the base path.
    let (base, pairs) = split_url(&urls[3]);
    assert_eq!(base, "/admin/render");
    assert_eq!(
        values(&pairs, "target"),
        [
            r#"summarize(sumSeries(stats.counters.nsq.*.topic.orders.channel.billing.requeue_count.count),"60sec","avg")"#
        ]
    );

    // One target per e2e percentile.
    let (_, pairs) = split_url(&urls[4]);
    assert_eq!(
        values(&pairs, "target"),
        [
            r#"summarize(scale(averageSeries(stats.gauges.nsq.*.topic.orders.e2e_processing_latency_99),0.000001),"60sec","avg")"#,
            r#"summarize(scale(averageSeries(stats.gauges.nsq.*.topic.orders.e2e_processing_latency_50),0.000001),"60sec","avg")"#,
        ]
    );
}
