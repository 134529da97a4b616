//! The HTTP API against upstream's captures and checklist items 129–136.

use crate::harness::{HttpResponse, Lookupd, Peer, fixture, http_request, wait_until};
use serde_json::{Map, Value, json};

/// Post-1.3.0 keys we emit that the 1.3.0 captures lack (checklist 136 asks for them).
const TOPOLOGY_KEYS: [&str; 2] = ["topology_zone", "topology_region"];

/// Replaces what varies between runs: connection addresses become labels, times become a marker,
/// arrays become sorted (sets), and `/nodes` `topics`/`tombstones` become sorted pairs.
fn normalize(value: &Value, labels: &[(String, &str)]) -> Value {
    match value {
        Value::Object(fields) => {
            let mut normalized = Map::new();
            for (key, field) in fields {
                if TOPOLOGY_KEYS.contains(&key.as_str()) {
                    assert_eq!(field, "", "{key}");
                    continue;
                }
                let field = match key.as_str() {
                    "remote_address" | "id" => {
                        let address = field.as_str().unwrap();
                        let label = labels
                            .iter()
                            .find(|(known, _)| known == address)
                            .map_or_else(
                                || panic!("unknown address {address}"),
                                |(_, label)| *label,
                            );
                        json!(label)
                    }
                    "last_update" => {
                        assert!(field.as_i64().unwrap() > 0);
                        json!("<time>")
                    }
                    _ => normalize(field, labels),
                };
                normalized.insert(key.clone(), field);
            }
            if let (Some(Value::Array(topics)), Some(Value::Array(tombstones))) =
                (fields.get("topics"), fields.get("tombstones"))
            {
                let mut pairs: Vec<Value> = topics
                    .iter()
                    .zip(tombstones)
                    .map(|(topic, tombstone)| json!([topic, tombstone]))
                    .collect();
                pairs.sort_by_key(Value::to_string);
                normalized.remove("topics");
                normalized.remove("tombstones");
                normalized.insert("topic_tombstones".to_owned(), Value::Array(pairs));
            }
            Value::Object(normalized)
        }
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(|item| normalize(item, labels)).collect();
            items.sort_by_key(Value::to_string);
            Value::Array(items)
        }
        other => other.clone(),
    }
}

/// Objects have upstream's keys in upstream's order (plus the topology keys right after
/// `version` in producer and node objects), recursively; arrays through their first elements.
fn assert_key_order(ours: &ordered::Node, upstream: &ordered::Node, path: &str) {
    use ordered::Node;
    match (ours, upstream) {
        (Node::Object(mine), Node::Object(theirs)) => {
            let mut expected: Vec<&str> = theirs.iter().map(|(key, _)| key.as_str()).collect();
            let is_peer = expected.contains(&"broadcast_address") && !expected.contains(&"id");
            if is_peer {
                let at = expected.iter().position(|key| *key == "version").unwrap() + 1;
                expected.splice(at..at, TOPOLOGY_KEYS);
            }
            let mine_keys: Vec<&str> = mine.iter().map(|(key, _)| key.as_str()).collect();
            assert_eq!(mine_keys, expected, "key order at {path}");
            for (key, value) in theirs {
                let (_, my_value) = mine.iter().find(|(mine_key, _)| mine_key == key).unwrap();
                assert_key_order(my_value, value, &format!("{path}.{key}"));
            }
        }
        (Node::Array(mine), Node::Array(theirs)) => {
            if let (Some(mine), Some(theirs)) = (mine.first(), theirs.first()) {
                assert_key_order(mine, theirs, &format!("{path}[0]"));
            }
        }
        _ => {}
    }
}

/// Status, the two headers (present or absent exactly as upstream), `Allow`, and the body
/// (JSON structurally with [`normalize`] and key order, otherwise byte for byte).
fn assert_matches_capture(
    ours: &HttpResponse,
    capture: &Value,
    labels: &[(String, &str)],
    upstream_labels: &[(String, &str)],
) {
    let name = format!(
        "{} {}?{}",
        capture["method"],
        capture["path"],
        capture["query"].as_str().unwrap_or("")
    );
    assert_eq!(
        u64::from(ours.status),
        capture["status"].as_u64().unwrap(),
        "{name}: {}",
        ours.text()
    );
    for header in ["Content-Type", "X-NSQ-Content-Type"] {
        assert_eq!(
            ours.header(header),
            capture["headers"][header].as_str(),
            "{name}: {header}"
        );
    }
    if let Some(extra) = capture.get("extra_headers").and_then(Value::as_object) {
        for (header, value) in extra {
            assert_eq!(ours.header(header), value.as_str(), "{name}: {header}");
        }
    }
    let upstream_body = capture["body"].as_str().unwrap();
    if upstream_body.starts_with('{') {
        let mine = ordered::parse(&ours.text());
        let theirs = ordered::parse(upstream_body);
        assert_key_order(&mine, &theirs, &name);
        assert_eq!(
            normalize(&ours.json(), labels),
            normalize(
                &serde_json::from_str(upstream_body).unwrap(),
                upstream_labels
            ),
            "{name}"
        );
    } else {
        assert_eq!(ours.text(), upstream_body, "{name}");
    }
}

/// Every exchange in fixtures/lookupd/_index.json, in capture order, against two fake nsqd
/// registered like upstream's nsqd A and B were (checklist 129–133, 135, 136).
#[test]
fn upstream_http_captures_in_order() {
    let lookupd = Lookupd::start(&[]);
    // nsqd A: orders[billing, audit] and events[all] (ports as in the capture).
    let mut node_a = Peer::nsqd(&lookupd, 26500, 25248);
    for line in [
        "REGISTER orders billing",
        "REGISTER orders audit",
        "REGISTER events all",
    ] {
        assert_eq!(node_a.command(line), "OK");
    }
    // nsqd B: orders (which pre-created billing and audit) and only_b without channels.
    let mut node_b = Peer::nsqd(&lookupd, 30640, 26404);
    for line in [
        "REGISTER orders billing",
        "REGISTER orders audit",
        "REGISTER only_b",
    ] {
        assert_eq!(node_b.command(line), "OK");
    }
    let labels = [(node_a.local_addr(), "<A>"), (node_b.local_addr(), "<B>")];
    let upstream_labels = [
        ("127.0.0.1:44130".to_owned(), "<A>"),
        ("127.0.0.1:44136".to_owned(), "<B>"),
    ];

    let index = fixture("_index.json");
    let exchanges = index["exchanges_in_capture_order"].as_array().unwrap();
    assert_eq!(exchanges.len(), 41);
    for exchange in exchanges {
        let capture = fixture(exchange["file"].as_str().unwrap());
        let target = match capture["query"].as_str() {
            Some(query) => format!("{}?{query}", capture["path"].as_str().unwrap()),
            None => capture["path"].as_str().unwrap().to_owned(),
        };
        let ours = http_request(lookupd.http, capture["method"].as_str().unwrap(), &target);
        assert_matches_capture(&ours, &capture, &labels, &upstream_labels);
    }
    node_a.assert_open();
    node_b.assert_open();
}

/// 129 on an empty lookupd.
#[test]
fn empty_lookupd() {
    let lookupd = Lookupd::start(&[]);
    assert_eq!(lookupd.get("/topics").text(), r#"{"topics":[]}"#);
    assert_eq!(lookupd.get("/nodes").text(), r#"{"producers":[]}"#);
    assert_eq!(lookupd.get("/debug").text(), "{}");
    assert_eq!(
        lookupd.get("/channels?topic=unknown").text(),
        r#"{"channels":[]}"#
    );
    let missing = lookupd.get("/lookup");
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (400, r#"{"message":"MISSING_ARG_TOPIC"}"#)
    );
    let unknown = lookupd.get("/lookup?topic=unknown");
    assert_eq!(
        (unknown.status, unknown.text().as_str()),
        (404, r#"{"message":"TOPIC_NOT_FOUND"}"#)
    );
}

/// 130 and 131.
#[test]
fn topic_create_and_delete() {
    let lookupd = Lookupd::start(&[]);
    assert_eq!(lookupd.post("/topic/create?topic=t").status, 200);
    assert_eq!(
        lookupd.get("/lookup?topic=t").text(),
        r#"{"channels":[],"producers":[]}"#
    );
    let invalid = lookupd.post("/topic/create?topic=bad!");
    assert_eq!(
        (invalid.status, invalid.text().as_str()),
        (400, r#"{"message":"INVALID_ARG_TOPIC"}"#)
    );

    let mut peer = Peer::nsqd(&lookupd, 4150, 4151);
    assert_eq!(peer.command("REGISTER t c"), "OK");
    assert_eq!(
        lookupd.post("/channel/create?topic=t&channel=d").status,
        200
    );
    assert_eq!(lookupd.post("/topic/delete?topic=unknown").status, 200);
    assert_eq!(lookupd.post("/topic/delete?topic=t").status, 200);
    assert_eq!(lookupd.get("/lookup?topic=t").status, 404);
    assert_eq!(
        lookupd.get("/channels?topic=t").text(),
        r#"{"channels":[]}"#
    );
    assert_eq!(lookupd.get("/topics").text(), r#"{"topics":[]}"#);
    // The nsqd is not told; it re-adds the topic when it next registers.
    assert_eq!(peer.command("PING"), "OK");
    assert_eq!(lookupd.get("/lookup?topic=t").status, 404);
    assert_eq!(peer.command("REGISTER t c"), "OK");
    assert_eq!(lookupd.lookup_producers("t").unwrap(), [peer.local_addr()]);
    // /channel/create also creates the topic key.
    assert_eq!(
        lookupd.post("/channel/create?topic=n&channel=c").status,
        200
    );
    assert_eq!(
        lookupd.get("/lookup?topic=n").text(),
        r#"{"channels":["c"],"producers":[]}"#
    );
}

/// 132.
#[test]
fn channel_delete() {
    let lookupd = Lookupd::start(&[]);
    let unknown = lookupd.post("/channel/delete?topic=t&channel=c");
    assert_eq!(
        (unknown.status, unknown.text().as_str()),
        (404, r#"{"message":"CHANNEL_NOT_FOUND"}"#)
    );
    let mut peer = Peer::nsqd(&lookupd, 4150, 4151);
    assert_eq!(peer.command("REGISTER t c"), "OK");
    assert_eq!(
        lookupd.post("/channel/delete?topic=t&channel=c").status,
        200
    );
    assert_eq!(
        lookupd.get("/channels?topic=t").text(),
        r#"{"channels":[]}"#
    );
    assert_eq!(lookupd.lookup_producers("t").unwrap(), [peer.local_addr()]);
    for (target, message) in [
        ("/channel/delete?channel=c", "MISSING_ARG_TOPIC"),
        ("/channel/delete?topic=bad!&channel=c", "INVALID_ARG_TOPIC"),
        ("/channel/delete?topic=t", "MISSING_ARG_CHANNEL"),
        (
            "/channel/delete?topic=t&channel=bad!",
            "INVALID_ARG_CHANNEL",
        ),
    ] {
        let response = lookupd.post(target);
        assert_eq!(response.status, 400, "{target}");
        assert_eq!(response.json()["message"], message, "{target}");
    }
}

/// 133, with a 3 s tombstone lifetime.
#[test]
fn tombstone_hides_from_lookup_for_its_lifetime() {
    let lookupd = Lookupd::start(&["--tombstone-lifetime=3s"]);
    let mut node = Peer::nsqd(&lookupd, 4150, 4151);
    let mut other = Peer::nsqd(&lookupd, 5150, 5151);
    assert_eq!(node.command("REGISTER t c"), "OK");
    assert_eq!(node.command("REGISTER u"), "OK");
    assert_eq!(other.command("REGISTER t"), "OK");

    let missing = lookupd.post("/topic/tombstone?topic=t");
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (400, r#"{"message":"MISSING_ARG_NODE"}"#)
    );
    let missing = lookupd.post("/topic/tombstone?node=127.0.0.1:4151");
    assert_eq!(missing.json()["message"], "MISSING_ARG_TOPIC");
    assert_eq!(
        lookupd
            .post("/topic/tombstone?topic=t&node=127.0.0.1:1")
            .status,
        200
    );
    assert_eq!(lookupd.lookup_producers("t").unwrap().len(), 2);

    assert_eq!(
        lookupd
            .post("/topic/tombstone?topic=t&node=127.0.0.1:4151")
            .status,
        200
    );
    assert_eq!(lookupd.lookup_producers("t").unwrap(), [other.local_addr()]);
    assert_eq!(lookupd.lookup_producers("u").unwrap(), [node.local_addr()]);
    let nodes = lookupd.get_json("/nodes");
    let entry = nodes["producers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["remote_address"] == node.local_addr().as_str())
        .unwrap();
    let mut pairs: Vec<(String, bool)> = entry["topics"]
        .as_array()
        .unwrap()
        .iter()
        .zip(entry["tombstones"].as_array().unwrap())
        .map(|(topic, tombstone)| {
            (
                topic.as_str().unwrap().to_owned(),
                tombstone.as_bool().unwrap(),
            )
        })
        .collect();
    pairs.sort();
    assert_eq!(pairs, [("t".to_owned(), true), ("u".to_owned(), false)]);
    // A REGISTER during the lifetime does not clear it.
    assert_eq!(node.command("REGISTER t"), "OK");
    assert_eq!(lookupd.lookup_producers("t").unwrap(), [other.local_addr()]);
    wait_until("the tombstone to expire", || {
        lookupd.lookup_producers("t").unwrap().len() == 2
    });
}

/// 134, with a 3 s inactivity timeout.
#[test]
fn silent_producer_is_hidden_until_it_pings() {
    let lookupd = Lookupd::start(&["--inactive-producer-timeout=3s"]);
    let mut peer = Peer::nsqd(&lookupd, 4150, 4151);
    assert_eq!(peer.command("REGISTER t"), "OK");
    assert_eq!(lookupd.lookup_producers("t").unwrap(), [peer.local_addr()]);
    wait_until("the producer to become inactive", || {
        lookupd.lookup_producers("t").unwrap().is_empty()
    });
    assert!(lookupd.node_addresses().is_empty());
    assert_eq!(lookupd.get_json("/topics")["topics"], json!(["t"]));
    peer.assert_open();
    assert_eq!(lookupd.lookup_producers("t").unwrap(), [peer.local_addr()]);
    assert_eq!(lookupd.node_addresses(), [peer.local_addr()]);
}

/// 135 and 136.
#[test]
fn old_names_info_ping_and_node_shape() {
    let lookupd = Lookupd::start(&[]);
    for old in [
        "/delete_topic?topic=t",
        "/delete_channel?topic=t&channel=c",
        "/create_topic?topic=t",
        "/create_channel?topic=t&channel=c",
        "/tombstone_topic_producer?topic=t&node=n",
    ] {
        for response in [lookupd.get(old), lookupd.post(old)] {
            assert_eq!(response.status, 404, "{old}");
            assert_eq!(response.text(), r#"{"message":"NOT_FOUND"}"#);
            assert_eq!(
                response.header("X-NSQ-Content-Type"),
                Some("nsq; version=1.0")
            );
        }
    }
    assert_eq!(lookupd.get("/info").text(), r#"{"version":"1.3.0"}"#);
    let ping = lookupd.get("/ping");
    assert_eq!(ping.text(), "OK");
    assert_eq!(
        ping.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(ping.header("X-NSQ-Content-Type"), None);

    let mut peer = Peer::nsqd(&lookupd, 4150, 4151);
    assert_eq!(peer.command("REGISTER t"), "OK");
    let expected = format!(
        r#"{{"producers":[{{"remote_address":"{}","hostname":"vm","broadcast_address":"127.0.0.1","tcp_port":4150,"http_port":4151,"version":"1.3.0","topology_zone":"","topology_region":"","tombstones":[false],"topics":["t"]}}]}}"#,
        peer.local_addr()
    );
    assert_eq!(lookupd.get("/nodes").text(), expected);
}

/// Go httprouter behaviour: 405 with Allow, OPTIONS, HEAD, redirects; query-string quirks.
#[test]
fn router_and_query_behaviour() {
    let lookupd = Lookupd::start(&[]);
    let head = http_request(lookupd.http, "HEAD", "/ping");
    assert_eq!(head.status, 405);
    assert_eq!(head.header("Allow"), Some("GET, OPTIONS"));
    let options = http_request(lookupd.http, "OPTIONS", "/topic/create");
    assert_eq!((options.status, options.body.len()), (200, 0));
    assert_eq!(options.header("Allow"), Some("OPTIONS, POST"));
    let put = http_request(lookupd.http, "PUT", "/lookup");
    assert_eq!(
        (put.status, put.text().as_str()),
        (405, r#"{"message":"METHOD_NOT_ALLOWED"}"#)
    );

    let redirect = lookupd.get("/ping/");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("Location"), Some("/ping"));
    let redirect = lookupd.get("/LOOKUP?topic=t");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("Location"), Some("/lookup?topic=t"));
    let redirect = lookupd.post("/topic/create/?topic=t");
    assert_eq!(redirect.status, 307);
    assert_eq!(redirect.header("Location"), Some("/topic/create?topic=t"));
    assert_eq!(lookupd.get("/topic/create/").status, 404);

    let bad = lookupd.get("/lookup?topic=%zz");
    assert_eq!(
        (bad.status, bad.text().as_str()),
        (400, r#"{"message":"INVALID_REQUEST"}"#)
    );
    assert_eq!(
        lookupd.post("/topic/create?topic=a;b").json()["message"],
        "INVALID_REQUEST"
    );
    // The first value wins; escapes are decoded.
    assert_eq!(lookupd.post("/topic/create?topic=r1&topic=r2").status, 200);
    assert_eq!(
        lookupd
            .post("/channel/create?topic=r%31&channel=c%23ephemeral")
            .status,
        200
    );
    assert_eq!(lookupd.get_json("/topics")["topics"], json!(["r1"]));
    assert_eq!(
        lookupd.get_json("/channels?topic=r1")["channels"],
        json!(["c#ephemeral"])
    );
    // Names are not validated on reads; "*" is upstream's wildcard.
    assert_eq!(lookupd.get("/lookup?topic=bad!topic").status, 404);
    assert_eq!(
        lookupd.get_json("/channels?topic=*")["channels"],
        json!(["c#ephemeral"])
    );
    let pprof = lookupd.get("/debug/pprof");
    assert_eq!(pprof.status, 200);
}

/// A minimal order-preserving JSON reader: serde_json's `Map` sorts keys (no `preserve_order`
/// feature here), and key order is what we check.
mod ordered {
    /// JSON structure with object keys in document order; scalars are not kept.
    pub(super) enum Node {
        Object(Vec<(String, Node)>),
        Array(Vec<Node>),
        Scalar,
    }

    pub(super) fn parse(text: &str) -> Node {
        let mut parser = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        parser.value()
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl Parser<'_> {
        fn peek(&mut self) -> u8 {
            while self.bytes[self.at].is_ascii_whitespace() {
                self.at += 1;
            }
            self.bytes[self.at]
        }

        /// Consumes `byte` if it is next.
        fn eat(&mut self, byte: u8) -> bool {
            let found = self.peek() == byte;
            if found {
                self.at += 1;
            }
            found
        }

        fn value(&mut self) -> Node {
            if self.eat(b'{') {
                let mut fields = Vec::new();
                while !self.eat(b'}') {
                    let key = self.scalar();
                    assert!(self.eat(b':'));
                    fields.push((key.as_str().unwrap().to_owned(), self.value()));
                    self.eat(b',');
                }
                Node::Object(fields)
            } else if self.eat(b'[') {
                let mut items = Vec::new();
                while !self.eat(b']') {
                    items.push(self.value());
                    self.eat(b',');
                }
                Node::Array(items)
            } else {
                self.scalar();
                Node::Scalar
            }
        }

        fn scalar(&mut self) -> serde_json::Value {
            self.peek();
            let mut stream = serde_json::Deserializer::from_slice(&self.bytes[self.at..])
                .into_iter::<serde_json::Value>();
            let value = stream.next().unwrap().unwrap();
            self.at += stream.byte_offset();
            value
        }
    }
}
