//! nsqd ⇄ nsqlookupd, black-box with real processes: registration of topics and channels on
//! several lookupds, unregistration when an nsqd stops or deletes a topic, tombstones, a lookupd
//! restarted on the same ports being repopulated, and discovery by the official Python client.

use crate::{ms, publish_all};
use nsq_tests::{
    LookupdProcess, NsqdProcess, channel_stats, peer_python, run_peer, workspace_root,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long registrations may take to show up (nsqd registers within a second; CI is slow).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts nsqd registered with every lookupd in `lookupds`.
fn nsqd_with(lookupds: &[&LookupdProcess]) -> NsqdProcess {
    let mut args = vec!["--broadcast-address=127.0.0.1".to_owned()];
    args.extend(
        lookupds
            .iter()
            .map(|lookupd| format!("--lookupd-tcp-address={}", lookupd.tcp_addr)),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    NsqdProcess::start(&args)
}

/// The TCP ports of `nodes`, the key the assertions compare producers by.
fn ports(nodes: &[&NsqdProcess]) -> BTreeSet<u64> {
    nodes
        .iter()
        .map(|node| u64::from(node.tcp_addr.port()))
        .collect()
}

/// GET `path` on `lookupd` as JSON, whatever the status (`Value::Null` if not JSON).
async fn get_value(lookupd: &LookupdProcess, path: &str) -> (u16, Value) {
    let (status, body) = lookupd.get(path).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Polls `path` on `lookupd` until `condition(status, json)` holds; panics with the last answer
/// after `timeout`.
async fn wait_json(
    lookupd: &LookupdProcess,
    path: &str,
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, json) = get_value(lookupd, path).await;
        if condition(status, &json) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "lookupd {}: timed out after {timeout:?} waiting for {what}; last GET {path}: \
             {status} {json}",
            lookupd.http_addr
        );
        tokio::time::sleep(ms(50)).await;
    }
}

/// The TCP ports of the producers in a `/lookup` or `/nodes` answer.
fn producer_ports(json: &Value) -> BTreeSet<u64> {
    json["producers"]
        .as_array()
        .map(|producers| {
            producers
                .iter()
                .filter_map(|producer| producer["tcp_port"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// The strings of `json[key]`.
fn strings(json: &Value, key: &str) -> BTreeSet<String> {
    json[key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `/lookup?topic=T` answers 200 with exactly the producers `expected` (TCP ports).
async fn wait_producers(lookupd: &LookupdProcess, topic: &str, expected: &BTreeSet<u64>) -> Value {
    wait_json(
        lookupd,
        &format!("/lookup?topic={topic}"),
        REGISTER_TIMEOUT,
        &format!("producers of {topic} = {expected:?}"),
        |status, json| status == 200 && producer_ports(json) == *expected,
    )
    .await
}

/// Waits until `/lookup` of `topic` lists exactly `expected` producers with the right addresses
/// and the given channels among its channels.
async fn wait_topic(
    lookupd: &LookupdProcess,
    topic: &str,
    nodes: &[&NsqdProcess],
    channels: &[&str],
    timeout: Duration,
) {
    let expected = ports(nodes);
    let json = wait_json(
        lookupd,
        &format!("/lookup?topic={topic}"),
        timeout,
        &format!("producers of {topic} = {expected:?} with channels {channels:?}"),
        |status, json| {
            let listed = strings(json, "channels");
            status == 200
                && producer_ports(json) == expected
                && channels.iter().all(|channel| listed.contains(*channel))
        },
    )
    .await;
    // Each producer carries the node's broadcast address and both ports.
    for producer in json["producers"].as_array().expect("producers") {
        let node = nodes
            .iter()
            .find(|node| producer["tcp_port"].as_u64() == Some(u64::from(node.tcp_addr.port())))
            .expect("producer is one of the nodes");
        assert_eq!(producer["broadcast_address"], "127.0.0.1", "{producer}");
        assert_eq!(
            producer["http_port"].as_u64(),
            Some(u64::from(node.http_addr.port())),
            "{producer}"
        );
    }
}

/// Asserts `/topics` lists `topics` and `/channels?topic=T` lists the channels.
async fn assert_listed(lookupd: &LookupdProcess, topics: &[&str], channels: &[(&str, &str)]) {
    let wanted: BTreeSet<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
    wait_json(
        lookupd,
        "/topics",
        REGISTER_TIMEOUT,
        &format!("/topics ⊇ {wanted:?}"),
        |status, json| status == 200 && strings(json, "topics").is_superset(&wanted),
    )
    .await;
    for (topic, channel) in channels {
        wait_json(
            lookupd,
            &format!("/channels?topic={topic}"),
            REGISTER_TIMEOUT,
            &format!("channel {channel} of {topic}"),
            |status, json| status == 200 && strings(json, "channels").contains(*channel),
        )
        .await;
    }
}

/// Waits until `/nodes` lists exactly `nodes`, each registered under (at least) its `topics`.
async fn wait_nodes(
    lookupd: &LookupdProcess,
    nodes: &[(&NsqdProcess, &[&str])],
    timeout: Duration,
) -> Value {
    let expected: BTreeSet<u64> = nodes
        .iter()
        .map(|(node, _)| u64::from(node.tcp_addr.port()))
        .collect();
    wait_json(
        lookupd,
        "/nodes",
        timeout,
        &format!("/nodes = {expected:?} with their topics"),
        |status, json| {
            status == 200
                && producer_ports(json) == expected
                && nodes.iter().all(|(node, topics)| {
                    node_entry(json, node).is_some_and(|entry| {
                        let listed = strings(entry, "topics");
                        topics.iter().all(|topic| listed.contains(*topic))
                    })
                })
        },
    )
    .await
}

/// The `/nodes` entry of `node`.
fn node_entry<'a>(json: &'a Value, node: &NsqdProcess) -> Option<&'a Value> {
    json["producers"]
        .as_array()?
        .iter()
        .find(|producer| producer["tcp_port"].as_u64() == Some(u64::from(node.tcp_addr.port())))
}

/// POST on nsqd, expecting 200.
async fn post_ok(nsqd: &NsqdProcess, path: &str) {
    let (status, body) = nsqd.post(path).await;
    assert_eq!(
        status, 200,
        "POST {path} on nsqd {}: {body}",
        nsqd.http_addr
    );
}

/// Topics and channels created on 3 nodes (HTTP create, TCP PUB, TCP SUB) show up on both
/// lookupds: `/lookup` producers, `/topics`, `/channels`, `/nodes`.
#[tokio::test]
async fn registrations_reach_every_lookupd() {
    let lookupds = [LookupdProcess::start(&[]), LookupdProcess::start(&[])];
    let both = [&lookupds[0], &lookupds[1]];
    let nodes = [nsqd_with(&both), nsqd_with(&both), nsqd_with(&both)];
    let [n0, n1, n2] = [&nodes[0], &nodes[1], &nodes[2]];

    // Node 0: HTTP-created topic and channel; node 1: PUB; node 2: SUB (topic + channel).
    post_ok(n0, "/topic/create?topic=lk_http").await;
    post_ok(n0, "/channel/create?topic=lk_http&channel=lk_http_ch").await;
    post_ok(n0, "/topic/create?topic=lk_shared").await;
    let mut producer = n1.connect().await;
    producer.publish("lk_pub", b"one").await;
    producer.publish("lk_shared", b"two").await;
    let _consumer = nsq_tests::RawConn::consumer(n2.tcp_addr, "lk_pub", "lk_sub_ch", "", 0).await;

    for lookupd in &lookupds {
        wait_topic(lookupd, "lk_http", &[n0], &["lk_http_ch"], REGISTER_TIMEOUT).await;
        wait_topic(lookupd, "lk_shared", &[n0, n1], &[], REGISTER_TIMEOUT).await;
        wait_topic(
            lookupd,
            "lk_pub",
            &[n1, n2],
            &["lk_sub_ch"],
            REGISTER_TIMEOUT,
        )
        .await;
        assert_listed(
            lookupd,
            &["lk_http", "lk_shared", "lk_pub"],
            &[("lk_http", "lk_http_ch"), ("lk_pub", "lk_sub_ch")],
        )
        .await;
        let json = wait_nodes(
            lookupd,
            &[
                (n0, &["lk_http", "lk_shared"]),
                (n1, &["lk_pub", "lk_shared"]),
                (n2, &["lk_pub"]),
            ],
            REGISTER_TIMEOUT,
        )
        .await;
        for node in &nodes {
            let entry = node_entry(&json, node).expect("listed");
            assert_eq!(entry["broadcast_address"], "127.0.0.1", "{entry}");
            assert_eq!(
                entry["http_port"].as_u64(),
                Some(u64::from(node.http_addr.port())),
                "{entry}"
            );
            let topics = entry["topics"].as_array().expect("topics").len();
            let tombstones = entry["tombstones"].as_array().expect("tombstones");
            assert_eq!(tombstones.len(), topics, "{entry}");
            assert!(tombstones.iter().all(|flag| flag == false), "{entry}");
        }
    }
}

/// An nsqd stopped with SIGTERM disappears from `/lookup` and `/nodes` of both lookupds; the
/// topic stays listed.
#[tokio::test]
async fn stopped_nsqd_is_unregistered() {
    let lookupds = [LookupdProcess::start(&[]), LookupdProcess::start(&[])];
    let both = [&lookupds[0], &lookupds[1]];
    let stays = nsqd_with(&both);
    let mut goes = nsqd_with(&both);
    post_ok(&stays, "/topic/create?topic=lk_stop").await;
    post_ok(&goes, "/topic/create?topic=lk_stop").await;
    post_ok(&goes, "/channel/create?topic=lk_stop&channel=c").await;
    for lookupd in &lookupds {
        wait_topic(
            lookupd,
            "lk_stop",
            &[&stays, &goes],
            &["c"],
            REGISTER_TIMEOUT,
        )
        .await;
    }

    let goes_port = u64::from(goes.tcp_addr.port());
    let status = goes.stop();
    assert!(status.success(), "nsqd exit after SIGTERM: {status:?}");

    for lookupd in &lookupds {
        wait_producers(lookupd, "lk_stop", &ports(&[&stays])).await;
        wait_json(
            lookupd,
            "/nodes",
            REGISTER_TIMEOUT,
            "the stopped node gone from /nodes",
            |status, json| status == 200 && !producer_ports(json).contains(&goes_port),
        )
        .await;
        assert_listed(lookupd, &["lk_stop"], &[("lk_stop", "c")]).await;
    }
}

/// A lookupd stopped and restarted on the same ports is repopulated by the running nsqds (they
/// reconnect and re-register everything), without restarting them.
#[tokio::test]
async fn restarted_lookupd_is_repopulated() {
    let mut lookupd = LookupdProcess::start(&[]);
    let nodes = [nsqd_with(&[&lookupd]), nsqd_with(&[&lookupd])];
    let [n0, n1] = [&nodes[0], &nodes[1]];
    post_ok(n0, "/topic/create?topic=lk_restart").await;
    post_ok(n0, "/channel/create?topic=lk_restart&channel=c0").await;
    let mut producer = n1.connect().await;
    producer.publish("lk_restart", b"x").await;
    producer.publish("lk_restart_only1", b"y").await;
    wait_topic(&lookupd, "lk_restart", &[n0, n1], &["c0"], REGISTER_TIMEOUT).await;
    wait_topic(&lookupd, "lk_restart_only1", &[n1], &[], REGISTER_TIMEOUT).await;

    let (tcp_addr, http_addr) = (lookupd.tcp_addr, lookupd.http_addr);
    lookupd.stop();
    let lookupd = tokio::task::spawn_blocking(move || {
        LookupdProcess::start_on(tcp_addr, http_addr, Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert_eq!((lookupd.tcp_addr, lookupd.http_addr), (tcp_addr, http_addr));

    // nsqd reconnects with backoff.
    let timeout = Duration::from_secs(20);
    wait_topic(&lookupd, "lk_restart", &[n0, n1], &["c0"], timeout).await;
    wait_topic(&lookupd, "lk_restart_only1", &[n1], &[], timeout).await;
    assert_listed(
        &lookupd,
        &["lk_restart", "lk_restart_only1"],
        &[("lk_restart", "c0")],
    )
    .await;
    wait_nodes(
        &lookupd,
        &[
            (n0, &["lk_restart"]),
            (n1, &["lk_restart", "lk_restart_only1"]),
        ],
        timeout,
    )
    .await;
}

/// Deleting a topic on nsqd unregisters that producer; tombstoning a producer on lookupd hides it
/// from `/lookup` but `/nodes` still lists it, with `tombstones` true for that topic only.
#[tokio::test]
async fn topic_delete_and_tombstone() {
    let lookupd = LookupdProcess::start(&[]);
    let nodes = [nsqd_with(&[&lookupd]), nsqd_with(&[&lookupd])];
    let [n0, n1] = [&nodes[0], &nodes[1]];
    for node in &nodes {
        post_ok(node, "/topic/create?topic=lk_del").await;
        post_ok(node, "/topic/create?topic=lk_tomb").await;
        post_ok(node, "/topic/create?topic=lk_keep").await;
    }
    for topic in ["lk_del", "lk_tomb", "lk_keep"] {
        wait_producers(&lookupd, topic, &ports(&[n0, n1])).await;
    }

    // nsqd topic delete → UNREGISTER.
    post_ok(n0, "/topic/delete?topic=lk_del").await;
    wait_producers(&lookupd, "lk_del", &ports(&[n1])).await;

    // lookupd tombstone of n1 for lk_tomb.
    let node = format!("127.0.0.1:{}", n1.http_addr.port());
    let path = format!("/topic/tombstone?topic=lk_tomb&node={node}");
    let (status, body) = lookupd.post(&path).await;
    assert_eq!(status, 200, "POST {path}: {body}");
    wait_producers(&lookupd, "lk_tomb", &ports(&[n0])).await;
    wait_producers(&lookupd, "lk_keep", &ports(&[n0, n1])).await;

    let json = wait_nodes(
        &lookupd,
        &[(n0, &["lk_tomb", "lk_keep"]), (n1, &["lk_tomb", "lk_keep"])],
        REGISTER_TIMEOUT,
    )
    .await;
    for node in &nodes {
        let entry = node_entry(&json, node).expect("listed");
        let topics = entry["topics"].as_array().expect("topics");
        let tombstones = entry["tombstones"].as_array().expect("tombstones");
        assert_eq!(topics.len(), tombstones.len(), "{entry}");
        for (topic, flag) in topics.iter().zip(tombstones) {
            let expected = node.tcp_addr == n1.tcp_addr && topic == "lk_tomb";
            assert_eq!(flag.as_bool(), Some(expected), "{topic} in {entry}");
        }
    }
    // n0 no longer has lk_del; n1 still does.
    assert!(!strings(node_entry(&json, n0).unwrap(), "topics").contains("lk_del"));
    assert!(strings(node_entry(&json, n1).unwrap(), "topics").contains("lk_del"));
}

/// pynsq's Reader, given only the two lookupds' HTTP addresses, discovers all 3 nodes and
/// receives every message published to them.
#[tokio::test]
async fn pynsq_reader_discovers_nodes_via_lookupd() {
    const COUNT: usize = 100;
    let python = peer_python();
    let script = workspace_root().join("tests/peers/python/pynsq_lookupd.py");
    let lookupds = [LookupdProcess::start(&[]), LookupdProcess::start(&[])];
    let both = [&lookupds[0], &lookupds[1]];
    let nodes = [nsqd_with(&both), nsqd_with(&both), nsqd_with(&both)];
    let (topic, channel) = ("lk_pynsq", "pynsq");
    for (index, node) in nodes.iter().enumerate() {
        post_ok(node, &format!("/topic/create?topic={topic}")).await;
        post_ok(
            node,
            &format!("/channel/create?topic={topic}&channel={channel}"),
        )
        .await;
        let bodies: Vec<String> = (0..COUNT).map(|i| format!("n{index}-{i:03}")).collect();
        publish_all(node, topic, &bodies).await;
    }
    let all: Vec<&NsqdProcess> = nodes.iter().collect();
    for lookupd in &lookupds {
        wait_topic(lookupd, topic, &all, &[channel], REGISTER_TIMEOUT).await;
    }

    let mut args = vec![script.display().to_string()];
    for lookupd in &lookupds {
        args.push(format!("--lookupd=http://{}", lookupd.http_addr));
    }
    args.extend([
        format!("--topic={topic}"),
        format!("--channel={channel}"),
        format!("--nodes={}", nodes.len()),
        format!("--count={COUNT}"),
        "--timeout=60".to_owned(),
    ]);
    run_peer(python, args, ms(90_000), String::new).await;

    // Every node agrees: its messages were all finished.
    for node in &nodes {
        node.wait_stats(ms(5000), "pynsq messages all finished", |stats| {
            channel_stats(stats, topic, channel).is_some_and(|channel| {
                channel.depth == 0
                    && channel.in_flight_count == 0
                    && channel.message_count == COUNT as u64
            })
        })
        .await;
    }
}
