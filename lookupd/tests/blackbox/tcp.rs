//! The V1 TCP protocol against upstream's captures and checklist items 120–128.

use crate::harness::{
    Lookupd, Peer, fixture, fixture_dir, identify_body, os_hostname, split_responses, wait_until,
};
use serde_json::Value;
use std::io::Read;

/// Compares one IDENTIFY answer with upstream's: same keys in the same order, same values except
/// the ports (ours must be the real ones) and the hostname (ours must be the OS hostname).
fn assert_identify_reply(ours: &[u8], upstream: &[u8], lookupd: &Lookupd) {
    let ours: serde_json::Map<String, Value> = serde_json::from_slice(ours).unwrap();
    let upstream: serde_json::Map<String, Value> = serde_json::from_slice(upstream).unwrap();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        upstream.keys().collect::<Vec<_>>()
    );
    assert_eq!(ours["tcp_port"], lookupd.tcp.port());
    assert_eq!(ours["http_port"], lookupd.http.port());
    assert_eq!(ours["hostname"], os_hostname().as_str());
    assert_eq!(ours["broadcast_address"], upstream["broadcast_address"]);
    assert_eq!(ours["version"], upstream["version"]);
}

/// Sends the client bytes, reads until the server closes (or, for open connections, until as many
/// bytes as upstream sent arrived), and compares answer by answer.
fn replay(lookupd: &Lookupd, client_sends: &[u8], upstream_replies: &[u8], closed: bool) -> Peer {
    let mut peer = crate::harness::Peer::connect(lookupd.tcp);
    peer.send(client_sends);
    let upstream = split_responses(upstream_replies);
    let mut ours = Vec::new();
    if closed {
        peer.stream.read_to_end(&mut ours).unwrap();
    } else {
        for _ in &upstream {
            let payload = peer.read_response();
            ours.extend_from_slice(&(payload.len() as i32).to_be_bytes());
            ours.extend_from_slice(&payload);
        }
    }
    let ours = split_responses(&ours);
    assert_eq!(ours.len(), upstream.len(), "answers: {ours:?}");
    for (mine, theirs) in ours.iter().zip(&upstream) {
        if theirs.starts_with(b"{") {
            assert_identify_reply(mine, theirs, lookupd);
        } else {
            assert_eq!(
                String::from_utf8_lossy(mine),
                String::from_utf8_lossy(theirs)
            );
        }
    }
    peer
}

/// Every capture in fixtures/lookupd/tcp/ (checklist 120–123, 128).
#[test]
fn upstream_tcp_captures() {
    let lookupd = Lookupd::start(&[]);
    let mut names: Vec<_> = std::fs::read_dir(fixture_dir().join("tcp"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 13);
    for name in names {
        let capture = fixture(&format!("tcp/{name}"));
        let client_sends = hex::decode(capture["client_sends_hex"].as_str().unwrap()).unwrap();
        let replies = hex::decode(capture["server_replies_hex"].as_str().unwrap()).unwrap();
        let closed = capture["server_closed_connection"].as_bool().unwrap();
        let mut peer = replay(&lookupd, &client_sends, &replies, closed);
        if !closed {
            peer.assert_open();
        }
        println!("{name}: ok");
    }
    lookupd.assert_alive();
}

/// nsqd 1.3.0's whole conversation (fixtures/lookupd/nsqd_lookupd_tcp_conversation.json), then
/// the directory state it leaves.
#[test]
fn upstream_nsqd_conversation() {
    let lookupd = Lookupd::start(&[]);
    let capture = fixture("nsqd_lookupd_tcp_conversation.json");
    let connection = &capture["connections"][0];
    let sends = hex::decode(connection["nsqd_sends_hex"].as_str().unwrap()).unwrap();
    let replies = hex::decode(connection["lookupd_replies_hex"].as_str().unwrap()).unwrap();
    let peer = replay(&lookupd, &sends, &replies, false);
    let me = peer.local_addr();

    assert_eq!(
        lookupd.lookup_producers("orders").unwrap(),
        std::slice::from_ref(&me)
    );
    assert_eq!(
        lookupd.lookup_producers("live_pub").unwrap(),
        std::slice::from_ref(&me)
    );
    // UNREGISTER live_t removed the producer; live_c stays (durable), the ephemeral one went.
    let live_t = lookupd.get_json("/lookup?topic=live_t");
    assert_eq!(live_t["channels"], serde_json::json!(["live_c"]));
    assert_eq!(live_t["producers"], serde_json::json!([]));
    let mut topics: Vec<String> =
        serde_json::from_value(lookupd.get_json("/topics")["topics"].clone()).unwrap();
    topics.sort();
    assert_eq!(topics, ["events", "live_pub", "live_t", "orders"]);
    let node = &lookupd.get_json("/nodes")["producers"][0];
    assert_eq!(node["remote_address"], me.as_str());
    assert_eq!(node["tcp_port"], 26500);

    // nsqd closes at SIGTERM; lookupd drops every registration of the peer, keys stay.
    drop(peer);
    wait_until("the peer's registrations to go", || {
        lookupd.lookup_producers("orders").unwrap().is_empty()
    });
    assert!(lookupd.node_addresses().is_empty());
    assert_eq!(
        lookupd.get_json("/topics")["topics"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// 122: the IDENTIFY answer reports lookupd's real ports and hostname, keys alphabetical.
#[test]
fn identify_answer_reports_real_ports() {
    let lookupd = Lookupd::start(&[]);
    let mut peer = Peer::connect_v1(lookupd.tcp);
    let reply = peer.identify(&identify_body(4150, 4151));
    let expected = format!(
        r#"{{"broadcast_address":"127.0.0.1","hostname":"{}","http_port":{},"tcp_port":{},"version":"1.3.0"}}"#,
        os_hostname(),
        lookupd.http.port(),
        lookupd.tcp.port()
    );
    assert_eq!(String::from_utf8(reply).unwrap(), expected);
    // 122: a second IDENTIFY is fatal.
    peer.send(&crate::harness::identify_command(&identify_body(
        4150, 4151,
    )));
    assert_eq!(peer.read_response(), b"E_INVALID cannot IDENTIFY again");
    peer.expect_closed();
}

/// 122: IDENTIFY without `version` is fatal.
#[test]
fn identify_missing_version_is_fatal() {
    let lookupd = Lookupd::start(&[]);
    let mut peer = Peer::connect_v1(lookupd.tcp);
    let reply = peer.identify(r#"{"broadcast_address":"127.0.0.1","tcp_port":1,"http_port":2}"#);
    assert_eq!(reply, b"E_BAD_BODY IDENTIFY missing fields");
    peer.expect_closed();
    assert!(lookupd.node_addresses().is_empty());
}

/// 120 and 121.
#[test]
fn bad_magic_ping_and_register_before_identify() {
    let lookupd = Lookupd::start(&[]);
    let mut peer = Peer::connect(lookupd.tcp);
    peer.send(b"  V2");
    assert_eq!(peer.read_response(), b"E_BAD_PROTOCOL");
    peer.expect_closed();

    let mut peer = Peer::connect_v1(lookupd.tcp);
    peer.send(b"PING\n");
    let mut raw = [0u8; 6];
    peer.stream.read_exact(&mut raw).unwrap();
    assert_eq!(raw, *b"\x00\x00\x00\x02OK");
    assert_eq!(peer.command("REGISTER t"), "E_INVALID client must IDENTIFY");
    peer.expect_closed();
}

/// 123: single quotes around the bad name, fatal.
#[test]
fn register_invalid_names() {
    let lookupd = Lookupd::start(&[]);
    let mut peer = Peer::nsqd(&lookupd, 4150, 4151);
    assert_eq!(
        peer.command("REGISTER bad!"),
        "E_BAD_TOPIC REGISTER topic name 'bad!' is not valid"
    );
    peer.expect_closed();
    let mut peer = Peer::nsqd(&lookupd, 4150, 4151);
    assert_eq!(
        peer.command("UNREGISTER t bad!c"),
        "E_BAD_CHANNEL UNREGISTER channel name 'bad!c' is not valid"
    );
    peer.expect_closed();
    assert!(
        lookupd.get_json("/topics")["topics"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// 124 and 125.
#[test]
fn register_and_unregister_topic() {
    let lookupd = Lookupd::start(&[]);
    let mut peer = Peer::nsqd(&lookupd, 4150, 4151);
    assert_eq!(peer.command("REGISTER t c"), "OK");
    let lookup = lookupd.get_json("/lookup?topic=t");
    assert_eq!(lookup["channels"], serde_json::json!(["c"]));
    let producers = lookup["producers"].as_array().unwrap();
    assert_eq!(producers.len(), 1);
    let producer = &producers[0];
    assert_eq!(producer["remote_address"], peer.local_addr().as_str());
    assert_eq!(producer["broadcast_address"], "127.0.0.1");
    assert_eq!(producer["hostname"], "vm");
    assert_eq!(producer["tcp_port"], 4150);
    assert_eq!(producer["http_port"], 4151);
    assert_eq!(producer["version"], "1.3.0");

    assert_eq!(peer.command("UNREGISTER t"), "OK");
    let lookup = lookupd.get_json("/lookup?topic=t");
    assert_eq!(lookup["channels"], serde_json::json!(["c"]));
    assert_eq!(lookup["producers"], serde_json::json!([]));
    // Unregistering again (or something never registered) is still OK.
    assert_eq!(peer.command("UNREGISTER t"), "OK");
    assert_eq!(peer.command("UNREGISTER never c"), "OK");
    // Re-registering the bare topic brings the producer back.
    assert_eq!(peer.command("REGISTER t"), "OK");
    assert_eq!(lookupd.lookup_producers("t").unwrap(), [peer.local_addr()]);
}

/// 126.
#[test]
fn ephemeral_channel_goes_with_its_last_producer() {
    let lookupd = Lookupd::start(&[]);
    let mut one = Peer::nsqd(&lookupd, 4150, 4151);
    let mut two = Peer::nsqd(&lookupd, 5150, 5151);
    assert_eq!(one.command("REGISTER t e#ephemeral"), "OK");
    assert_eq!(two.command("REGISTER t e#ephemeral"), "OK");
    assert_eq!(one.command("UNREGISTER t e#ephemeral"), "OK");
    assert_eq!(
        lookupd.get_json("/channels?topic=t")["channels"],
        serde_json::json!(["e#ephemeral"])
    );
    assert_eq!(two.command("UNREGISTER t e#ephemeral"), "OK");
    assert_eq!(
        lookupd.get_json("/channels?topic=t")["channels"],
        serde_json::json!([])
    );
    // A durable channel stays without producers.
    assert_eq!(one.command("REGISTER t d"), "OK");
    assert_eq!(one.command("UNREGISTER t d"), "OK");
    assert_eq!(
        lookupd.get_json("/channels?topic=t")["channels"],
        serde_json::json!(["d"])
    );
    // An ephemeral topic goes too, once its last producer unregisters it.
    assert_eq!(one.command("REGISTER x#ephemeral"), "OK");
    assert_eq!(one.command("UNREGISTER x#ephemeral"), "OK");
    assert_eq!(lookupd.get("/lookup?topic=x%23ephemeral").status, 404);
}

/// 127.
#[test]
fn closing_the_connection_removes_the_producer_everywhere() {
    let lookupd = Lookupd::start(&[]);
    let mut leaving = Peer::nsqd(&lookupd, 4150, 4151);
    let mut staying = Peer::nsqd(&lookupd, 5150, 5151);
    assert_eq!(leaving.command("REGISTER t1 c"), "OK");
    assert_eq!(leaving.command("REGISTER t2"), "OK");
    assert_eq!(leaving.command("REGISTER e#ephemeral x#ephemeral"), "OK");
    assert_eq!(staying.command("REGISTER t1"), "OK");
    assert_eq!(lookupd.node_addresses().len(), 2);
    drop(leaving);
    wait_until("the closed peer to leave /nodes", || {
        lookupd.node_addresses() == [staying.local_addr()]
    });
    assert_eq!(
        lookupd.lookup_producers("t1").unwrap(),
        [staying.local_addr()]
    );
    assert_eq!(
        lookupd.lookup_producers("t2").unwrap(),
        Vec::<String>::new()
    );
    let mut topics: Vec<String> =
        serde_json::from_value(lookupd.get_json("/topics")["topics"].clone()).unwrap();
    topics.sort();
    // Keys stay, even ephemeral ones (only UNREGISTER deletes those).
    assert_eq!(topics, ["e#ephemeral", "t1", "t2"]);
    assert_eq!(
        lookupd.get_json("/channels?topic=t1")["channels"],
        serde_json::json!(["c"])
    );
    staying.assert_open();
}

/// 128.
#[test]
fn invalid_command_and_padding() {
    let lookupd = Lookupd::start(&[]);
    let mut peer = Peer::nsqd(&lookupd, 4150, 4151);
    peer.send(b"  REGISTER t \r\n");
    assert_eq!(peer.read_response(), b"OK");
    assert_eq!(lookupd.lookup_producers("t").unwrap(), [peer.local_addr()]);
    assert_eq!(peer.command("BOGUS"), "E_INVALID invalid command BOGUS");
    peer.expect_closed();
}

/// PING refreshes the producer's `last_update` (visible in /debug).
#[test]
fn ping_refreshes_last_update() {
    let lookupd = Lookupd::start(&[]);
    let mut peer = Peer::nsqd(&lookupd, 4150, 4151);
    let last_update = || {
        lookupd.get_json("/debug")["client::"][0]["last_update"]
            .as_i64()
            .unwrap()
    };
    let before = last_update();
    wait_until("a PING to move last_update", || {
        peer.assert_open();
        last_update() > before
    });
}
