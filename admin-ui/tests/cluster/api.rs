//! `/api/*` against a real cluster, compared with upstream's captured answers.

use crate::harness::{Cluster, get, get_json, nsqadmin_bin, post_ok, request, wait_until};
use crate::shape::{assert_same_shape, fixture};
use reqwest::Method;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw V2 consumer: IDENTIFY (with `user_agent`), SUB, RDY; it never FINs, so up to `rdy`
/// messages stay in flight while it is alive.
pub(crate) async fn consumer(
    tcp: &str,
    topic: &str,
    channel: &str,
    user_agent: &str,
    rdy: u32,
) -> TcpStream {
    let mut stream = TcpStream::connect(tcp).await.expect("connect nsqd");
    let identify = serde_json::json!({
        "client_id": "api-consumer",
        "hostname": "api-consumer-host",
        "user_agent": user_agent,
        "feature_negotiation": true,
    })
    .to_string();
    let mut out = b"  V2IDENTIFY\n".to_vec();
    out.extend_from_slice(&(identify.len() as u32).to_be_bytes());
    out.extend_from_slice(identify.as_bytes());
    stream.write_all(&out).await.unwrap();
    read_frame(&mut stream).await;
    stream
        .write_all(format!("SUB {topic} {channel}\n").as_bytes())
        .await
        .unwrap();
    let (_, ok) = read_frame(&mut stream).await;
    assert_eq!(ok, b"OK", "SUB answered {}", String::from_utf8_lossy(&ok));
    stream
        .write_all(format!("RDY {rdy}\n").as_bytes())
        .await
        .unwrap();
    stream
}

async fn read_frame(stream: &mut TcpStream) -> (u32, Vec<u8>) {
    let size = stream.read_u32().await.expect("frame size");
    let kind = stream.read_u32().await.expect("frame type");
    let mut data = vec![0; size as usize - 4];
    stream.read_exact(&mut data).await.expect("frame data");
    (kind, data)
}

async fn publish(nsqd_http: &str, topic: &str, count: usize) {
    let body: Vec<String> = (0..count).map(|i| format!("message-{i}")).collect();
    post_ok(
        &format!("http://{nsqd_http}/mpub?topic={topic}"),
        &body.join("\n"),
    )
    .await;
}

fn url(admin: &str, path: &str) -> String {
    format!("http://{admin}{path}")
}

/// Sets up what upstream's capture had (fixtures README §5): node A with `orders`
/// (billing with a consumer holding messages, audit paused) and `events` (paused, channel
/// `all`); node B with `orders` (billing, audit) and `only_b` (no channel).
async fn fixture_scenario(cluster: &Cluster) -> TcpStream {
    let (a, b) = (cluster.nsqd_http(0), cluster.nsqd_http(1));
    for node in [a, b] {
        post_ok(&format!("http://{node}/topic/create?topic=orders"), "").await;
        for channel in ["billing", "audit"] {
            post_ok(
                &format!("http://{node}/channel/create?topic=orders&channel={channel}"),
                "",
            )
            .await;
        }
    }
    post_ok(
        &format!("http://{a}/channel/pause?topic=orders&channel=audit"),
        "",
    )
    .await;
    publish(a, "orders", 3).await;
    publish(b, "orders", 7).await;
    post_ok(&format!("http://{a}/topic/create?topic=events"), "").await;
    post_ok(
        &format!("http://{a}/channel/create?topic=events&channel=all"),
        "",
    )
    .await;
    publish(a, "events", 15).await;
    post_ok(&format!("http://{a}/topic/pause?topic=events"), "").await;
    publish(a, "events", 5).await;
    publish(b, "only_b", 1).await;
    let stream = consumer(
        cluster.nsqd_tcp(0),
        "orders",
        "billing",
        "fixture-capture/1.0",
        2,
    )
    .await;
    let a_stats = format!("http://{a}/stats?format=json&topic=orders&channel=billing");
    wait_until("the consumer holds 2 messages", || async {
        let stats = get_json(&a_stats).await;
        stats["topics"][0]["channels"][0]["in_flight_count"] == 2
    })
    .await;
    let lookupd = cluster.lookupd.http.clone();
    wait_until("lookupd knows all topics", || async {
        let topics = get_json(&format!("http://{lookupd}/topics")).await;
        topics["topics"].as_array().map_or(0, Vec::len) == 3
    })
    .await;
    stream
}

#[tokio::test]
async fn api_matches_upstream_fixtures() {
    let cluster = Cluster::start().await;
    let _consumer = fixture_scenario(&cluster).await;
    let admin = cluster.admin(&[]);
    let admin = admin.http.as_str();
    let (a, b) = (
        cluster.nsqd_http(0).to_owned(),
        cluster.nsqd_http(1).to_owned(),
    );

    // Exact answers.
    for (name, path) in [
        ("api_topics", "/api/topics"),
        ("api_topics_inactive", "/api/topics?inactive=true"),
        ("api_topics_err_unknown_topic", "/api/topics/unknown"),
        (
            "api_topics_err_unknown_channel",
            "/api/topics/orders/unknown",
        ),
        ("api_nodes_err_unknown_node", "/api/nodes/127.0.0.1:1"),
        (
            "api_graphite_err_no_graphite",
            "/api/graphite?metric=rate&target=*",
        ),
        ("config_err_invalid_option", "/config/no_such_option"),
        ("not_found", "/api/nosuch"),
        ("static_err_unknown_asset", "/static/nosuch.js"),
        ("ping", "/ping"),
    ] {
        let expected = fixture(name);
        let reply = get(&url(admin, path)).await;
        assert_eq!(reply.status, expected.status, "{name}: {}", reply.body);
        assert_eq!(reply.body, expected.body, "{name}");
        assert_eq!(
            Some(reply.header("content-type")),
            expected.content_type.as_deref(),
            "{name}"
        );
        if let Some(nsq) = &expected.nsq_content_type {
            assert_eq!(reply.header("x-nsq-content-type"), nsq, "{name}");
        }
    }
    let reply = get(&url(admin, "/config/nsqlookupd_http_addresses")).await;
    assert_eq!(reply.body, format!("[\"{}\"]", cluster.lookupd.http));
    let reply = request(Method::PUT, &url(admin, "/api/topics"), None, &[]).await;
    let expected = fixture("method_not_allowed");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (405, expected.body.as_str())
    );
    assert_eq!(reply.header("allow"), "GET, OPTIONS, POST");
    let reply = request(
        Method::GET,
        &url(admin, "/api/topics"),
        None,
        &[("Accept-Encoding", "gzip")],
    )
    .await;
    assert_eq!(reply.header("content-encoding"), "gzip");

    // Same shape as upstream's answers.
    for (name, path) in [
        ("api_topics_orders", "/api/topics/orders".to_owned()),
        ("api_topics_events", "/api/topics/events".to_owned()),
        (
            "api_topics_orders_billing",
            "/api/topics/orders/billing".to_owned(),
        ),
        (
            "api_topics_orders_audit",
            "/api/topics/orders/audit".to_owned(),
        ),
        ("api_nodes", "/api/nodes".to_owned()),
        ("api_nodes_a", format!("/api/nodes/{a}")),
        ("api_nodes_b", format!("/api/nodes/{b}")),
    ] {
        let reply = get(&url(admin, &path)).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        assert_same_shape(&reply.body, &fixture(name));
    }
    // Values that follow from the scenario.
    let orders = get_json(&url(admin, "/api/topics/orders")).await;
    assert_eq!(orders["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(orders["message_count"], 10);
    let billing = get_json(&url(admin, "/api/topics/orders/billing")).await;
    assert_eq!(billing["depth"], 8, "10 published, 2 in flight");
    assert_eq!(billing["in_flight_count"], 2);
    assert_eq!(billing["clients"][0]["user_agent"], "fixture-capture/1.0");
    assert_eq!(billing["clients"][0]["node"], a.as_str());
    let audit = get_json(&url(admin, "/api/topics/orders/audit")).await;
    assert_eq!(audit["paused"], true, "paused on any node");
    // Counter keys hold ports: map ours onto upstream's before comparing shapes.
    let counter_body = get(&url(admin, "/api/counter"))
        .await
        .body
        .replace(&a, "127.0.0.1:25248")
        .replace(&b, "127.0.0.1:26404");
    let mut sorted_counter = crate::shape::parse(&counter_body);
    if let crate::shape::Json::Object(top) = &mut sorted_counter
        && let Some((_, crate::shape::Json::Object(stats))) = top.first_mut()
    {
        stats.sort_by(|left, right| left.0.cmp(&right.0));
    }
    let mut diffs = Vec::new();
    crate::shape::shape_diff(
        &sorted_counter,
        &crate::shape::parse(&fixture("api_counter").body),
        "$",
        &mut diffs,
    );
    assert!(diffs.is_empty(), "api_counter: {diffs:?}");
    let counter = get_json(&url(admin, "/api/counter")).await;
    let mut keys: Vec<String> = counter["stats"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    let mut expected_keys = vec![
        format!("events:all:{a}"),
        format!("orders:audit:{a}"),
        format!("orders:audit:{b}"),
        format!("orders:billing:{a}"),
        format!("orders:billing:{b}"),
    ];
    expected_keys.sort();
    assert_eq!(keys, expected_keys);

    // Actions, with upstream's bodies.
    let post = |path: &str, body: &str| {
        let target = url(admin, path);
        let body = body.to_owned();
        async move { request(Method::POST, &target, Some(&body), &[]).await }
    };
    let delete = |path: &str, body: Option<&str>| {
        let target = url(admin, path);
        let body = body.map(str::to_owned);
        async move { request(Method::DELETE, &target, body.as_deref(), &[]).await }
    };
    for (name, reply) in [
        (
            "post_api_topics_create_ok",
            post("/api/topics", r#"{"topic":"admin_t","channel":"admin_c"}"#).await,
        ),
        (
            "post_api_topics_create_topic_only_ok",
            post("/api/topics", r#"{"topic":"admin_t2"}"#).await,
        ),
        (
            "post_api_topics_err_invalid_topic",
            post("/api/topics", r#"{"topic":"bad!topic"}"#).await,
        ),
        (
            "post_api_topics_err_invalid_channel",
            post("/api/topics", r#"{"topic":"admin_t","channel":"bad!c"}"#).await,
        ),
        (
            "post_api_topics_err_bad_json",
            post("/api/topics", "not json").await,
        ),
        (
            "post_api_topics_err_empty_body",
            post("/api/topics", "").await,
        ),
        (
            "post_api_topic_action_pause_ok",
            post("/api/topics/orders", r#"{"action":"pause"}"#).await,
        ),
    ] {
        let expected = fixture(name);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (expected.status, expected.body.as_str()),
            "{name}"
        );
    }
    for node in [&a, &b] {
        let stats = get_json(&format!("http://{node}/stats?format=json&topic=orders")).await;
        assert_eq!(
            stats["topics"][0]["paused"], true,
            "orders paused on {node}"
        );
    }
    assert_eq!(
        get_json(&url(admin, "/api/topics/orders")).await["paused"],
        true
    );
    for (name, reply) in [
        (
            "post_api_topic_action_unpause_ok",
            post("/api/topics/orders", r#"{"action":"unpause"}"#).await,
        ),
        (
            "post_api_channel_action_pause_ok",
            post("/api/topics/orders/billing", r#"{"action":"pause"}"#).await,
        ),
    ] {
        let expected = fixture(name);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (expected.status, expected.body.as_str()),
            "{name}"
        );
    }
    for node in [&a, &b] {
        let stats = get_json(&format!(
            "http://{node}/stats?format=json&topic=orders&channel=billing"
        ))
        .await;
        assert_eq!(
            stats["topics"][0]["paused"], false,
            "orders unpaused on {node}"
        );
        assert_eq!(
            stats["topics"][0]["channels"][0]["paused"], true,
            "billing paused on {node}"
        );
    }
    for (name, reply) in [
        (
            "post_api_channel_action_unpause_ok",
            post("/api/topics/orders/billing", r#"{"action":"unpause"}"#).await,
        ),
        (
            "post_api_channel_action_empty_unknown_channel_warning",
            post("/api/topics/only_b/nosuch", r#"{"action":"empty"}"#).await,
        ),
        (
            "post_api_topic_action_err_invalid_action",
            post("/api/topics/orders", r#"{"action":"explode"}"#).await,
        ),
        (
            "post_api_topic_action_err_bad_json",
            post("/api/topics/orders", "{").await,
        ),
        (
            "post_api_topic_action_empty_ok",
            post("/api/topics/admin_t2", r#"{"action":"empty"}"#).await,
        ),
        (
            "delete_api_channel_ok",
            delete("/api/topics/admin_t/admin_c", None).await,
        ),
        (
            "delete_api_topic_ok",
            delete("/api/topics/admin_t", None).await,
        ),
        (
            "delete_api_topic_unknown",
            delete("/api/topics/never_existed", None).await,
        ),
    ] {
        let expected = fixture(name);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (expected.status, expected.body.as_str()),
            "{name}"
        );
    }
    for node in [&a, &b] {
        let stats = get_json(&format!("http://{node}/stats?format=json&topic=admin_t")).await;
        assert!(
            stats["topics"].is_null(),
            "admin_t deleted on {node}: {stats}"
        );
    }
    for (name, reply) in [
        (
            "delete_api_node_tombstone_ok",
            delete(&format!("/api/nodes/{b}"), Some(r#"{"topic":"only_b"}"#)).await,
        ),
        (
            "delete_api_node_tombstone_err_invalid_topic",
            delete(&format!("/api/nodes/{b}"), Some(r#"{"topic":"bad!"}"#)).await,
        ),
        (
            "delete_api_node_tombstone_err_bad_body",
            delete(&format!("/api/nodes/{b}"), Some("nope")).await,
        ),
    ] {
        let expected = fixture(name);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (expected.status, expected.body.as_str()),
            "{name}"
        );
    }
    let stats = get_json(&format!("http://{b}/stats?format=json&topic=only_b")).await;
    assert!(stats["topics"].is_null(), "only_b deleted on B: {stats}");
    assert_same_shape(
        &get(&url(admin, "/api/nodes")).await.body,
        &fixture("api_nodes_after_mutations"),
    );
    let reply = get(&url(admin, "/api/topics")).await;
    assert_eq!(reply.body, fixture("api_topics_after_mutations").body);
}

/// A sink for `--notification-http-endpoint`: every POSTed body arrives on the channel.
async fn notification_sink() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sender = sender.clone();
            async move {
                let _ = sender.send(serde_json::from_slice(&body).unwrap_or_default());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/notify"), receiver)
}

#[tokio::test]
async fn admin_acl_and_notifications() {
    let cluster = Cluster::start().await;
    publish(cluster.nsqd_http(0), "acl_t", 1).await;
    publish(cluster.nsqd_http(1), "acl_t", 1).await;
    let lookupd = cluster.lookupd.http.clone();
    wait_until("lookupd knows acl_t on both nodes", || async {
        let lookup = get_json(&format!("http://{lookupd}/lookup?topic=acl_t")).await;
        lookup["producers"].as_array().map_or(0, Vec::len) == 2
    })
    .await;
    let (endpoint, mut notifications) = notification_sink().await;
    let notify_flag = format!("--notification-http-endpoint={endpoint}");
    let admin = cluster.admin(&["--admin-user=alice", &notify_flag]);
    let target = url(&admin.http, "/api/topics/acl_t");

    let denied = request(Method::POST, &target, Some(r#"{"action":"pause"}"#), &[]).await;
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, r#"{"message":"FORBIDDEN"}"#)
    );
    let wrong = request(
        Method::POST,
        &target,
        Some(r#"{"action":"pause"}"#),
        &[("X-Forwarded-User", "mallory")],
    )
    .await;
    assert_eq!(wrong.status, 403);
    let deleted = request(Method::DELETE, &target, None, &[]).await;
    assert_eq!(deleted.status, 403, "every mutation is guarded");
    let page = get(&url(&admin.http, "/topics/acl_t")).await;
    assert!(page.body.contains(r#""is_admin":false"#), "{}", page.body);

    let allowed = request(
        Method::POST,
        &target,
        Some(r#"{"action":"pause"}"#),
        &[
            ("X-Forwarded-User", "alice"),
            ("User-Agent", "acl-test/1.0"),
        ],
    )
    .await;
    assert_eq!(
        (allowed.status, allowed.body.as_str()),
        (200, r#"{"message":""}"#)
    );
    for node in [cluster.nsqd_http(0), cluster.nsqd_http(1)] {
        let stats = get_json(&format!("http://{node}/stats?format=json&topic=acl_t")).await;
        assert_eq!(stats["topics"][0]["paused"], true, "paused on {node}");
    }
    let note = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("a notification within 5 s")
        .expect("sink alive");
    assert_eq!(note["action"], "pause_topic");
    assert_eq!(note["topic"], "acl_t");
    assert!(note["timestamp"].as_i64().unwrap() > 1_600_000_000);
    assert!(
        note["remote_ip"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(note["user_agent"], "acl-test/1.0");
    assert_eq!(
        note["url"],
        format!("http://{}/api/topics/acl_t", admin.http)
    );
    assert!(note["via"].is_string());
    assert!(
        note.get("channel").is_none(),
        "empty channel is omitted: {note}"
    );
    let keys: Vec<&str> = note
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "action",
        "topic",
        "timestamp",
        "remote_ip",
        "user_agent",
        "url",
        "via",
    ] {
        assert!(keys.contains(&key), "{key} in {note}");
    }
    let page = request(
        Method::GET,
        &url(&admin.http, "/topics/acl_t"),
        None,
        &[("X-Forwarded-User", "alice")],
    )
    .await;
    assert!(page.body.contains(r#""is_admin":true"#));

    // Tombstone: notification carries the node.
    let node = cluster.nsqd_http(1).to_owned();
    let tombstone = request(
        Method::DELETE,
        &url(&admin.http, &format!("/api/nodes/{node}")),
        Some(r#"{"topic":"acl_t"}"#),
        &[("X-Forwarded-User", "alice")],
    )
    .await;
    assert_eq!(tombstone.status, 200, "{}", tombstone.body);
    let note = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note["action"], "tombstone_topic_producer");
    assert_eq!(note["node"], node.as_str());
}

#[tokio::test]
async fn partial_and_total_upstream_failures() {
    let cluster = Cluster::start().await;
    publish(cluster.nsqd_http(0), "pf_a", 2).await;
    publish(cluster.nsqd_http(1), "pf_b", 3).await;
    // A bound but not listening socket: connections to it are refused, and no other process
    // (tests run in parallel) can take the port while it is held.
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    reserved
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let dead = reserved
        .local_addr()
        .unwrap()
        .as_socket()
        .unwrap()
        .to_string();

    // One of two lookupds down: still 200, with a warning naming it.
    let dead_lookupd = format!("--lookupd-http-address={dead}");
    let admin = cluster.admin(&[&dead_lookupd]);
    let lookupd = cluster.lookupd.http.clone();
    wait_until("lookupd knows both topics", || async {
        let topics = get_json(&format!("http://{lookupd}/topics")).await;
        topics["topics"].as_array().map_or(0, Vec::len) == 2
    })
    .await;
    let reply = get_json(&url(&admin.http, "/api/topics")).await;
    assert_eq!(reply["topics"], serde_json::json!(["pf_a", "pf_b"]));
    let message = reply["message"].as_str().unwrap();
    assert!(message.starts_with("WARNING: "), "{message}");
    assert!(
        message.contains(&format!(
            "Get \"http://{dead}/topics\": dial tcp {dead}: connect: connection refused"
        )),
        "{message}"
    );

    // All lookupds down: 502.
    let all_dead = cluster.admin_with_only_lookupd(&dead);
    let reply = get(&url(&all_dead.http, "/api/topics")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.json()["message"],
        format!(
            "UPSTREAM_ERROR: failed to query any nsqlookupd: Get \"http://{dead}/topics\": dial tcp {dead}: connect: connection refused"
        )
    );

    // Direct mode: topics are the union of the nodes' /stats; one node down is a warning,
    // and /api/overview marks it failed.
    let mut cluster = cluster;
    let direct = cluster.direct_admin(&[]);
    let reply = get_json(&url(&direct.http, "/api/topics")).await;
    assert_eq!(reply["topics"], serde_json::json!(["pf_a", "pf_b"]));
    assert_eq!(reply["message"], "");
    let created = request(
        Method::POST,
        &url(&direct.http, "/api/topics"),
        Some(r#"{"topic":"pf_new","channel":"c"}"#),
        &[],
    )
    .await;
    assert_eq!(
        (created.status, created.body.as_str()),
        (200, r#"{"message":""}"#)
    );
    for index in 0..2 {
        let node = cluster.nsqd_http(index).to_owned();
        let stats = get_json(&format!("http://{node}/stats?format=json&topic=pf_new")).await;
        assert_eq!(
            stats["topics"][0]["channels"][0]["channel_name"], "c",
            "direct mode creates on {node}"
        );
    }
    let down = cluster.nsqd_http(1).to_owned();
    cluster.nsqd[1].kill();
    let reply = get_json(&url(&direct.http, "/api/topics")).await;
    assert_eq!(reply["topics"], serde_json::json!(["pf_a", "pf_new"]));
    let message = reply["message"].as_str().unwrap();
    assert!(message.starts_with("WARNING: "), "{message}");
    assert!(
        message.contains(&format!("http://{down}/stats")),
        "{message}"
    );
    let overview = get_json(&url(&direct.http, "/api/overview")).await;
    let nodes = overview["nodes"].as_array().unwrap();
    let failed: Vec<&serde_json::Value> = nodes.iter().filter(|n| n["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{overview}");
    assert_eq!(failed[0]["node"], down.as_str());
    assert!(
        overview["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["topic_name"] == "pf_a")
    );
    cluster.nsqd[0].kill();
    let reply = get(&url(&direct.http, "/api/topics")).await;
    assert_eq!(reply.status, 502);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("UPSTREAM_ERROR: failed to query any nsqd: "),
        "{}",
        reply.body
    );
}

impl Cluster {
    fn admin_with_only_lookupd(&self, lookupd: &str) -> crate::harness::Proc {
        crate::harness::spawn(
            "nsqadmin-dead-lookupd",
            nsqadmin_bin(),
            &[
                "--http-address=127.0.0.1:0".to_owned(),
                format!("--lookupd-http-address={lookupd}"),
            ],
            false,
        )
    }
}

#[test]
fn startup_checks_and_version() {
    let run = |args: &[&str]| {
        std::process::Command::new(nsqadmin_bin())
            .args(args)
            .output()
            .expect("run nsqadmin")
    };
    let neither = run(&["--http-address=127.0.0.1:0"]);
    assert!(!neither.status.success());
    let stderr = String::from_utf8_lossy(&neither.stderr);
    assert!(
        stderr.contains("FATAL: failed to instantiate nsqadmin - --nsqd-http-address or --lookupd-http-address required"),
        "{stderr}"
    );
    let both = run(&[
        "-lookupd-http-address",
        "127.0.0.1:4161",
        "-nsqd-http-address=127.0.0.1:4151",
    ]);
    assert!(!both.status.success());
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains("FATAL: failed to instantiate nsqadmin - use --nsqd-http-address or --lookupd-http-address not both"),
        "{stderr}"
    );
    let unknown = run(&["--no-such-flag"]);
    assert!(!unknown.status.success());
    let version = run(&["--version"]);
    assert!(version.status.success());
    let line = String::from_utf8_lossy(&version.stdout);
    let line = line.trim();
    assert!(line.starts_with("nsqadmin v1.3.0 (built w/rust-"), "{line}");
    assert!(line.ends_with(')'), "{line}");
}
