//! Replays upstream's captured TCP exchanges (`shared/fixtures/tcp`) and compares the server's
//! byte stream exactly, including whether it closed the connection.
//!
//! Replayed: every capture whose reply bytes do not vary between runs. Left to other tests:
//! captures with message frames (IDs and timestamps vary), heartbeat timings, the negotiation
//! JSON (upstream 1.3.0 lacks the post-release `topology_*` keys; see `identify::c13`),
//! `err_fin_failed_client_does_not_own` (needs another client's message ID) and
//! deflate/snappy upgrades.

use crate::ms;
use nsq_tests::{NsqdProcess, RawConn, fixture};

/// The captures replayed byte for byte; the nsqd flags match the capture's
/// (`--max-msg-size=1024 --max-body-size=4096`).
const REPLAYED: &[&str] = &[
    "cls_close_wait",
    "dpub_ok",
    "err_auth_disabled",
    "err_bad_magic",
    "err_cls_before_sub_wrong_state",
    "err_dpub_bad_timeout",
    "err_dpub_timeout_not_number",
    "err_empty_line",
    "err_fin_before_sub_wrong_state",
    "err_fin_failed_not_in_flight",
    "err_fin_invalid_message_id",
    "err_identify_after_sub",
    "err_identify_bad_json",
    "err_identify_body_size_zero",
    "err_identify_heartbeat_invalid",
    "err_invalid_command",
    "err_invalid_command_lowercase",
    "err_mpub_body_too_big",
    "err_mpub_count_zero",
    "err_mpub_msg_size_zero",
    "err_mpub_msg_too_big",
    "err_pub_bad_topic",
    "err_pub_bad_topic_ephemeral_suffix_only",
    "err_pub_empty_body",
    "err_pub_missing_topic",
    "err_pub_too_big",
    "err_rdy_before_sub_wrong_state",
    "err_rdy_not_a_number",
    "err_rdy_out_of_range",
    "err_req_failed_not_in_flight",
    "err_req_not_a_number",
    "err_sub_bad_channel",
    "err_sub_heartbeats_disabled",
    "err_sub_missing_channel",
    "err_sub_twice_wrong_state",
    "err_touch_failed_not_in_flight",
    "identify_without_feature_negotiation",
    "mpub_ok",
    "nop_no_response",
    "pub_ok",
    "pub_ok_binary_body",
    "pub_ok_crlf_and_extra_params",
    "pub_ok_max_size",
    "req_timeout_out_of_range_is_clamped",
];

/// Runs one capture against nsqd; returns a description of the mismatch, if any.
async fn replay(nsqd: &NsqdProcess, name: &str) -> Option<String> {
    let exchange = fixture::tcp(name);
    let expected = exchange.server_bytes();
    let mut conn = RawConn::connect_raw(nsqd.tcp_addr).await;
    for chunk in exchange.client_chunks() {
        // After a fatal error the server may have closed already; later chunks may then fail.
        if conn.try_send(&chunk).await.is_err() {
            break;
        }
    }
    let (actual, closed) = if exchange.server_closed_connection {
        conn.bytes_until_closed(ms(5000)).await
    } else {
        // Everything expected, then a short quiet period to catch extra bytes or a close.
        let (mut actual, closed) = conn.bytes_at_least(expected.len(), ms(5000)).await;
        if !closed {
            let (more, closed_later) = conn.bytes_until_closed(ms(300)).await;
            actual.extend(more);
            (actual, closed_later)
        } else {
            (actual, closed)
        }
    };
    if actual == expected && closed == exchange.server_closed_connection {
        return None;
    }
    Some(format!(
        "{name}: expected {} (closed: {}), got {} (closed: {closed}); notes: {}",
        describe(&expected),
        exchange.server_closed_connection,
        describe(&actual),
        exchange.notes
    ))
}

fn describe(bytes: &[u8]) -> String {
    format!(
        "{} {:?}",
        hex::encode(bytes),
        String::from_utf8_lossy(bytes)
    )
}

/// Every replayable upstream capture, byte for byte.
#[tokio::test]
async fn upstream_tcp_captures_replay_byte_exact() {
    let nsqd = NsqdProcess::start(&["--max-msg-size=1024", "--max-body-size=4096"]);
    let mut failures = Vec::new();
    // Concurrently, in small groups: each capture uses its own connection and names.
    for group in REPLAYED.chunks(8) {
        let results = futures::future::join_all(group.iter().map(|name| replay(&nsqd, name))).await;
        failures.extend(results.into_iter().flatten());
    }
    assert!(
        failures.is_empty(),
        "{} of {} captures differ:\n{}",
        failures.len(),
        REPLAYED.len(),
        failures.join("\n")
    );
}

/// Every capture file is either replayed here or named as covered elsewhere.
#[test]
fn every_capture_is_accounted_for() {
    const ELSEWHERE: &[&str] = &[
        "err_fin_failed_client_does_not_own",   // fin_req_touch::f46
        "err_identify_snappy_and_deflate",      // identify::c20
        "heartbeat_answered_with_nop",          // heartbeats::d28
        "heartbeat_timeout_closes",             // heartbeats::d27
        "identify_deflate",                     // not offered by nsqd yet
        "identify_feature_negotiation",         // identify::c13
        "identify_feature_negotiation_minimal", // identify::c13
        "identify_snappy",                      // not offered by nsqd yet
        "req_redelivery",                       // fin_req_touch::f48
        "sub_rdy_message_fin",                  // framing::a09, delivery
        "touch_ok",                             // fin_req_touch::f52
    ];
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(fixture::tcp_dir()).expect("fixtures/tcp") {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if name.starts_with('_') {
            continue;
        }
        if !REPLAYED.contains(&name) && !ELSEWHERE.contains(&name) {
            missing.push(name.to_owned());
        }
    }
    assert!(missing.is_empty(), "captures not covered: {missing:?}");
}
