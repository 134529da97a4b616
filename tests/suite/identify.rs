//! C. IDENTIFY. (The upgrades C24–C26 are tested in `nsqd/tests/tls_compression_auth.rs`.)

use nsq_tests::{NsqdProcess, RawConn, cmd, fixture};
use serde_json::{Value, json};

/// C12: without `feature_negotiation` the answer is the response `OK`.
#[tokio::test]
async fn c12_identify_without_negotiation_is_ok() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"client_id":"c1","hostname":"h1"}"#))
        .await;
    conn.expect_ok().await;
    conn.expect_open().await;
}

/// C13: the negotiation reply has exactly the 15 keys, with upstream's defaults; the values
/// upstream's capture shows (`identify_feature_negotiation.json`) match.
#[tokio::test]
async fn c13_negotiation_reply_keys_and_defaults() {
    let nsqd = NsqdProcess::start(&[]);
    let exchange = fixture::tcp("identify_feature_negotiation");
    let chunks = exchange.client_chunks();
    let mut conn = RawConn::connect_raw(nsqd.tcp_addr).await;
    for chunk in &chunks {
        conn.send(chunk).await;
    }
    let reply = match conn.frame().await {
        nsq_protocol::Frame::Response(data) => data,
        other => panic!("expected the JSON response, got {other:?}"),
    };
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    let object = reply.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected_keys = vec![
        "max_rdy_count",
        "version",
        "max_msg_timeout",
        "msg_timeout",
        "tls_v1",
        "deflate",
        "deflate_level",
        "max_deflate_level",
        "snappy",
        "sample_rate",
        "auth_required",
        "output_buffer_size",
        "output_buffer_timeout",
        "topology_region",
        "topology_zone",
    ];
    expected_keys.sort_unstable();
    assert_eq!(keys, expected_keys);
    assert_eq!(reply["max_rdy_count"], 2500);
    assert_eq!(reply["max_msg_timeout"], 900_000);
    assert_eq!(reply["msg_timeout"], 60_000);
    assert_eq!(reply["output_buffer_size"], 16_384);
    assert_eq!(reply["output_buffer_timeout"], 250);
    assert_eq!(reply["version"], "1.3.0");
    assert_eq!(reply["topology_region"], "");
    assert_eq!(reply["topology_zone"], "");

    // Upstream's captured reply (release 1.3.0, before the topology keys) value by value.
    let captured = exchange.server_bytes();
    let captured: Value = serde_json::from_slice(&captured[8..]).unwrap();
    for (key, value) in captured.as_object().unwrap() {
        assert_eq!(&reply[key], value, "key {key}");
    }
}

/// C13: with default flags, the minimal negotiation reply is byte for byte the default-configured
/// example of tcp-protocol.md §6.1 (upstream's key order, topology keys last).
#[tokio::test]
async fn c13_default_reply_bytes() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"feature_negotiation":true}"#))
        .await;
    let expected = concat!(
        r#"{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":60000,"#,
        r#""tls_v1":false,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,"#,
        r#""sample_rate":0,"auth_required":false,"output_buffer_size":16384,"#,
        r#""output_buffer_timeout":250,"topology_region":"","topology_zone":""}"#
    );
    conn.expect_response(expected.as_bytes()).await;
}

/// C14: unknown fields are ignored.
#[tokio::test]
async fn c14_unknown_fields_are_ignored() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    let reply = conn
        .identify_negotiate(r#""short_id":"s","long_id":"l","foo":{"bar":[1,2]}"#)
        .await;
    assert_eq!(reply["max_rdy_count"], 2500);
    conn.expect_open().await;
}

/// C15: heartbeat_interval 999 is invalid (fatal); 1000 and -1 are accepted.
#[tokio::test]
async fn c15_heartbeat_interval_bounds() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"heartbeat_interval":999}"#))
        .await;
    conn.expect_fatal("E_BAD_BODY IDENTIFY heartbeat interval (999) is invalid")
        .await;
    for accepted in ["1000", "-1"] {
        let mut conn = nsqd.connect().await;
        conn.send(&cmd::identify(&format!(
            r#"{{"heartbeat_interval":{accepted}}}"#
        )))
        .await;
        conn.expect_ok().await;
    }
}

/// C16: output buffer size 63 and timeout 10 are invalid; size -1 means unbuffered (size 1,
/// timeout 0).
#[tokio::test]
async fn c16_output_buffer_bounds() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"output_buffer_size":63}"#))
        .await;
    conn.expect_fatal("E_BAD_BODY IDENTIFY output buffer size (63) is invalid")
        .await;

    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"output_buffer_timeout":10}"#))
        .await;
    conn.expect_fatal("E_BAD_BODY IDENTIFY output buffer timeout (10) is invalid")
        .await;

    let mut conn = nsqd.connect().await;
    let reply = conn.identify_negotiate(r#""output_buffer_size":-1"#).await;
    assert_eq!(reply["output_buffer_size"], 1);
    assert_eq!(reply["output_buffer_timeout"], 0);

    let mut conn = nsqd.connect().await;
    let reply = conn
        .identify_negotiate(r#""output_buffer_size":64,"output_buffer_timeout":25"#)
        .await;
    assert_eq!(reply["output_buffer_size"], 64);
    assert_eq!(reply["output_buffer_timeout"], 25);
}

/// C17: sample_rate 100 and msg_timeout 999 are invalid; msg_timeout 5000 is echoed.
#[tokio::test]
async fn c17_sample_rate_and_msg_timeout_bounds() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"sample_rate":100}"#)).await;
    conn.expect_fatal("E_BAD_BODY IDENTIFY sample rate (100) is invalid")
        .await;

    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(r#"{"msg_timeout":999}"#)).await;
    conn.expect_fatal("E_BAD_BODY IDENTIFY msg timeout (999) is invalid")
        .await;

    let mut conn = nsqd.connect().await;
    let reply = conn
        .identify_negotiate(r#""msg_timeout":5000,"sample_rate":99"#)
        .await;
    assert_eq!(reply["msg_timeout"], 5000);
    assert_eq!(reply["sample_rate"], 99);
}

/// C18: a body that is not a JSON object, or has a known field of the wrong type, is fatal.
#[tokio::test]
async fn c18_undecodable_json_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    for body in ["notjson", "[]", r#"{"heartbeat_interval":"1000"}"#] {
        let mut conn = nsqd.connect().await;
        conn.send(&cmd::identify(body)).await;
        conn.expect_fatal("E_BAD_BODY IDENTIFY failed to decode JSON body")
            .await;
    }
}

/// C19: a zero body size is fatal.
#[tokio::test]
async fn c19_zero_body_size_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(b"IDENTIFY\n\x00\x00\x00\x00").await;
    conn.expect_fatal("E_BAD_BODY IDENTIFY invalid body size 0")
        .await;
}

/// C20: negotiating both snappy and deflate is fatal.
#[tokio::test]
async fn c20_snappy_and_deflate_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.send(&cmd::identify(
        r#"{"feature_negotiation":true,"snappy":true,"deflate":true}"#,
    ))
    .await;
    conn.expect_fatal("E_IDENTIFY_FAILED cannot enable both deflate and snappy compression")
        .await;
}

/// C14/C18 (types, tcp-protocol.md §6.1): `null` means "not given"; a float for an integer field
/// is a decode error.
#[tokio::test]
async fn c18_null_is_absent_and_float_is_invalid() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    let reply = conn
        .identify_negotiate(r#""msg_timeout":null,"heartbeat_interval":null,"client_id":null"#)
        .await;
    assert_eq!(reply["msg_timeout"], 60_000);
    for body in [
        r#"{"msg_timeout":1000.5}"#,
        r#"{"feature_negotiation":"yes"}"#,
    ] {
        let mut conn = nsqd.connect().await;
        conn.send(&cmd::identify(body)).await;
        conn.expect_fatal("E_BAD_BODY IDENTIFY failed to decode JSON body")
            .await;
    }
}

/// C21 (without deflate, which nsqd does not offer yet): `deflate_level` is never an error; the
/// reply shows 6 when deflate is not requested.
#[tokio::test]
async fn c21_deflate_level_is_never_an_error() {
    let nsqd = NsqdProcess::start(&[]);
    for level in ["9", "-3", "0"] {
        let mut conn = nsqd.connect().await;
        let reply = conn
            .identify_negotiate(&format!(r#""deflate_level":{level}"#))
            .await;
        assert_eq!(reply["deflate"], false);
        assert_eq!(reply["deflate_level"], 6, "deflate_level {level}");
    }
}

/// C22: a second IDENTIFY before SUB is answered normally.
#[tokio::test]
async fn c22_second_identify_is_answered() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    let first = conn.identify_negotiate("").await;
    let second = conn.identify_negotiate(r#""msg_timeout":5000"#).await;
    assert_eq!(first["msg_timeout"], 60_000);
    assert_eq!(second["max_rdy_count"], json!(2500));
    conn.sub("t", "c").await;
}

/// C23: IDENTIFY after SUB is fatal.
#[tokio::test]
async fn c23_identify_after_sub_is_fatal() {
    let nsqd = NsqdProcess::start(&[]);
    let mut conn = nsqd.connect().await;
    conn.sub("t", "c").await;
    conn.send(&cmd::identify(r#"{"feature_negotiation":true}"#))
        .await;
    conn.expect_fatal("E_INVALID cannot IDENTIFY in current state")
        .await;
}
