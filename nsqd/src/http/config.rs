//! `GET /config/:opt` and `PUT /config/:opt`.
//!
//! GET answers the value of any option by its config-file name, as upstream's reflection does:
//! numbers and booleans as JSON, durations as integer nanoseconds, lists as JSON arrays, and
//! strings as plain text (Go writes a string answer raw). Options upstream has without an
//! equivalent here (queue scan pool, experiments) answer upstream's defaults. Only
//! `nsqlookupd_tcp_addresses` and `log_level` can be PUT; a new flag needs a line in
//! [`option_value`].

use super::{HttpState, error_response, json_response, read_body_capped, sniffed_response};
use crate::logging::{self, LogLevel};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::time::Duration;

/// What an option's value looks like on the wire.
enum OptionValue {
    Json(serde_json::Value),
    Text(String),
}

pub(super) async fn get_option(
    State(state): State<HttpState>,
    Path(opt): Path<String>,
) -> Response {
    respond(&state, &opt)
}

pub(super) async fn put_option(
    State(state): State<HttpState>,
    Path(opt): Path<String>,
    request: Request,
) -> Response {
    let read_max = state.nsqd.settings.limits.max_msg_size.saturating_add(1);
    let Ok(body) = read_body_capped(request.into_body(), read_max).await else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR");
    };
    if body.is_empty() || body.len() as u64 == read_max {
        return error_response(StatusCode::PAYLOAD_TOO_LARGE, "INVALID_VALUE");
    }
    match opt.as_str() {
        "nsqlookupd_tcp_addresses" => {
            let Ok(addresses) = serde_json::from_slice::<Option<Vec<String>>>(&body) else {
                return error_response(StatusCode::BAD_REQUEST, "INVALID_VALUE");
            };
            let addresses = addresses.unwrap_or_default();
            tracing::info!("lookupd TCP addresses set to {addresses:?}");
            state.nsqd.set_lookupd_tcp_addresses(addresses);
        }
        "log_level" => {
            let Some(level) = std::str::from_utf8(&body)
                .ok()
                .and_then(|text| text.parse::<LogLevel>().ok())
            else {
                return error_response(StatusCode::BAD_REQUEST, "INVALID_VALUE");
            };
            logging::set_level(level);
            tracing::info!("log level set to {level}");
        }
        _ => return error_response(StatusCode::BAD_REQUEST, "INVALID_OPTION"),
    }
    respond(&state, &opt)
}

fn respond(state: &HttpState, opt: &str) -> Response {
    match option_value(state, opt) {
        Some(OptionValue::Json(value)) => json_response(
            StatusCode::OK,
            serde_json::to_vec(&value).unwrap_or_default(),
        ),
        Some(OptionValue::Text(text)) => sniffed_response(text),
        None => error_response(StatusCode::BAD_REQUEST, "INVALID_OPTION"),
    }
}

fn nanos(duration: Duration) -> serde_json::Value {
    serde_json::Value::from(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
}

/// A float as Go's encoder writes it (`1`, not `1.0`).
fn go_float(value: f64) -> serde_json::Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        serde_json::Value::from(value as i64)
    } else {
        serde_json::Value::from(value)
    }
}

/// Go's `tls.VersionTLS1x` number, which is what upstream stores for `--tls-min-version`.
fn go_tls_version(name: &str) -> u16 {
    match name.to_ascii_lowercase().as_str() {
        "ssl3.0" => 0x0300,
        "tls1.1" => 0x0302,
        "tls1.2" => 0x0303,
        "tls1.3" => 0x0304,
        _ => 0x0301,
    }
}

fn option_value(state: &HttpState, opt: &str) -> Option<OptionValue> {
    use OptionValue::{Json, Text};
    use serde_json::Value;
    let options = &state.options;
    let settings = &state.nsqd.settings;
    let identity = state.nsqd.identity.get();
    let value = match opt {
        "log_level" => Json(Value::from(logging::level().number())),
        "log_prefix" => Text(options.log_prefix.clone()),
        "id" => Json(Value::from(settings.node_id)),
        "tcp_address" => Text(options.tcp_address.clone()),
        "http_address" => Text(options.http_address.clone()),
        "https_address" => Text(options.https_address.clone()),
        "broadcast_address" => Text(
            identity
                .map(|identity| identity.broadcast_address.clone())
                .unwrap_or_default(),
        ),
        "broadcast_tcp_port" => Json(Value::from(options.broadcast_tcp_port)),
        "broadcast_http_port" => Json(Value::from(options.broadcast_http_port)),
        "nsqlookupd_tcp_addresses" => Json(Value::from(state.nsqd.lookupd_tcp_addresses())),
        "auth_http_addresses" => Json(Value::from(options.auth_http_addresses.clone())),
        "enable_experiment" => Json(Value::Array(Vec::new())),
        "auth_http_request_method" => Text(options.auth_http_request_method.clone()),
        "http_client_connect_timeout" => Json(nanos(options.http_client_connect_timeout)),
        "http_client_request_timeout" => Json(nanos(options.http_client_request_timeout)),
        "topology_region" => Text(settings.identify.topology_region.clone()),
        "topology_zone" => Text(settings.identify.topology_zone.clone()),
        "data_path" => Text(options.data_path.clone()),
        "mem_queue_size" => Json(Value::from(options.mem_queue_size)),
        "durable" => Json(Value::from(options.durable)),
        "max_bytes_per_file" => Json(Value::from(options.max_bytes_per_file)),
        "sync_every" => Json(Value::from(options.sync_every)),
        "sync_timeout" => Json(nanos(options.sync_timeout)),
        "queue_scan_worker_pool_max" => Json(Value::from(4)),
        "queue_scan_selection_count" => Json(Value::from(20)),
        "msg_timeout" => Json(nanos(options.msg_timeout)),
        "max_msg_timeout" => Json(nanos(options.max_msg_timeout)),
        "max_msg_size" => Json(Value::from(options.max_msg_size)),
        "max_body_size" => Json(Value::from(options.max_body_size)),
        "max_req_timeout" => Json(nanos(options.max_req_timeout)),
        "max_heartbeat_interval" => Json(nanos(options.max_heartbeat_interval)),
        "max_rdy_count" => Json(Value::from(options.max_rdy_count)),
        "max_output_buffer_size" => Json(Value::from(options.max_output_buffer_size)),
        "max_output_buffer_timeout" => Json(nanos(options.max_output_buffer_timeout)),
        "min_output_buffer_timeout" => Json(nanos(options.min_output_buffer_timeout)),
        "output_buffer_timeout" => Json(nanos(options.output_buffer_timeout)),
        "max_channel_consumers" => Json(Value::from(options.max_channel_consumers)),
        "statsd_address" => Text(options.statsd_address.clone()),
        "statsd_prefix" => Text(crate::statsd::expanded_prefix(
            &options.statsd_prefix,
            identity,
        )),
        "statsd_interval" => Json(nanos(options.statsd_interval)),
        "statsd_mem_stats" => Json(Value::from(options.statsd_mem_stats)),
        "statsd_udp_packet_size" => Json(Value::from(options.statsd_udp_packet_size)),
        "statsd_exclude_ephemeral" => Json(Value::from(options.statsd_exclude_ephemeral)),
        "e2e_processing_latency_percentiles" => Json(Value::Array(
            options
                .e2e_processing_latency_percentiles
                .iter()
                .map(|&value| go_float(value))
                .collect(),
        )),
        "e2e_processing_latency_window_time" => {
            Json(nanos(options.e2e_processing_latency_window_time))
        }
        "tls_cert" => Text(options.tls_cert.clone()),
        "tls_key" => Text(options.tls_key.clone()),
        "tls_client_auth_policy" => Text(options.tls_client_auth_policy.clone()),
        "tls_root_ca_file" => Text(options.tls_root_ca_file.clone()),
        "tls_required" => Json(Value::from(options.tls_required.config_value())),
        "tls_min_version" => Json(Value::from(go_tls_version(&options.tls_min_version))),
        "deflate" => Json(Value::from(options.deflate)),
        "max_deflate_level" => Json(Value::from(options.max_deflate_level)),
        "snappy" => Json(Value::from(options.snappy)),
        "shutdown_timeout" => Json(nanos(options.shutdown_timeout)),
        _ => return None,
    };
    Some(value)
}
