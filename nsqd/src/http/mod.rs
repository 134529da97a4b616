//! nsqd's HTTP API on axum, with upstream's status codes, bodies and headers.
//!
//! * `mod.rs`: the router, response helpers, Go-compatible query parsing and body reading,
//!   `/ping`, `/info`, `/stats`, `/metrics`, and httprouter's 404/405/OPTIONS/redirect behaviour.
//! * [`publish`] serves `/pub` and `/mpub`.
//! * [`admin`] serves `/topic/*` and `/channel/*`.
//! * [`config`] serves `/config/{opt}`.
//!
//! Every JSON answer and every error carries `X-NSQ-Content-Type: nsq; version=1.0` (go-nsq needs
//! it); errors are `{"message":"<CODE>"}`. `/ping` is plain text without that header. An empty
//! success has no `Content-Type`. Arguments come only from the query string; a repeated one uses
//! its first value.

mod admin;
mod config;
mod publish;

use crate::metadata::Metadata;
use crate::nsqd::Nsqd;
use crate::options::Options;
use crate::stats::{StatsFilter, render_text, stats};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use bytes::{Bytes, BytesMut};
use futures::{FutureExt as _, StreamExt as _};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

const NSQ_CONTENT_TYPE: HeaderName = HeaderName::from_static("x-nsq-content-type");
const NSQ_V1: HeaderValue = HeaderValue::from_static("nsq; version=1.0");
const JSON_UTF8: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");
const TEXT_UTF8: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");
const PROMETHEUS_TEXT: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The node.
    pub nsqd: Arc<Nsqd>,
    /// The flags the node started with (`GET /config/:opt`).
    pub options: Arc<Options>,
    /// The metadata store, persisted after pause/unpause (`None`: not persisted).
    pub metadata: Option<Arc<Metadata>>,
    /// When the node started (`uptime` in text `/stats`).
    pub started: Instant,
}

/// Every static path, for the trailing-slash and case redirects.
const STATIC_ROUTES: &[&str] = &[
    "/ping",
    "/info",
    "/stats",
    "/metrics",
    "/pub",
    "/mpub",
    "/topic/create",
    "/topic/delete",
    "/topic/empty",
    "/topic/pause",
    "/topic/unpause",
    "/channel/create",
    "/channel/delete",
    "/channel/empty",
    "/channel/pause",
    "/channel/unpause",
    "/debug/freememory",
    "/debug/setblockrate",
];

const GET_ONLY: &str = "GET, OPTIONS";
const POST_ONLY: &str = "OPTIONS, POST";
const PUT_ONLY: &str = "OPTIONS, PUT";
const GET_PUT: &str = "GET, OPTIONS, PUT";

/// The HTTP router over a node.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/ping", methods(get(ping), GET_ONLY))
        .route("/info", methods(get(info), GET_ONLY))
        .route("/stats", methods(get(get_stats), GET_ONLY))
        .route("/metrics", methods(get(get_metrics), GET_ONLY))
        .route("/pub", methods(post(publish::pub_one), POST_ONLY))
        .route("/mpub", methods(post(publish::pub_many), POST_ONLY))
        .route(
            "/topic/create",
            methods(post(admin::topic_create), POST_ONLY),
        )
        .route(
            "/topic/delete",
            methods(post(admin::topic_delete), POST_ONLY),
        )
        .route("/topic/empty", methods(post(admin::topic_empty), POST_ONLY))
        .route("/topic/pause", methods(post(admin::topic_pause), POST_ONLY))
        .route(
            "/topic/unpause",
            methods(post(admin::topic_unpause), POST_ONLY),
        )
        .route(
            "/channel/create",
            methods(post(admin::channel_create), POST_ONLY),
        )
        .route(
            "/channel/delete",
            methods(post(admin::channel_delete), POST_ONLY),
        )
        .route(
            "/channel/empty",
            methods(post(admin::channel_empty), POST_ONLY),
        )
        .route(
            "/channel/pause",
            methods(post(admin::channel_pause), POST_ONLY),
        )
        .route(
            "/channel/unpause",
            methods(post(admin::channel_unpause), POST_ONLY),
        )
        .route(
            "/config/{opt}",
            methods(get(config::get_option).put(config::put_option), GET_PUT),
        )
        .route("/debug/freememory", methods(post(empty_ok), POST_ONLY))
        .route(
            "/debug/setblockrate",
            methods(axum::routing::put(set_block_rate), PUT_ONLY),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn(catch_panic))
        .with_state(state)
}

/// httprouter's method handling: OPTIONS answers with `Allow`, any other method (HEAD included:
/// Go does not map it to GET) gets 405 with `Allow`.
fn methods(router: MethodRouter<HttpState>, allow: &'static str) -> MethodRouter<HttpState> {
    router
        .options(move || async move { options_response(allow) })
        .head(move || async move { method_not_allowed(allow) })
        .fallback(move || async move { method_not_allowed(allow) })
}

// ---- responses ----------------------------------------------------------------------------------

/// A JSON body with upstream's headers.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, JSON_UTF8),
            (NSQ_CONTENT_TYPE, NSQ_V1),
        ],
        body,
    )
        .into_response()
}

/// An HTTP error in upstream's shape (status plus `{"message":"<CODE>"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
}

impl ApiError {
    pub(crate) const fn new(status: StatusCode, code: &'static str) -> Self {
        Self { status, code }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.code)
    }
}

/// An error in upstream's shape: `{"message":"<CODE>"}`.
pub fn error_response(status: StatusCode, code: &str) -> Response {
    json_response(
        status,
        serde_json::to_vec(&serde_json::json!({ "message": code })).unwrap_or_default(),
    )
}

/// A text 200 (`OK`, text `/stats`): Go sniffs `text/plain`.
fn text_response(body: impl Into<Body>) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, TEXT_UTF8),
            (NSQ_CONTENT_TYPE, NSQ_V1),
        ],
        body.into(),
    )
        .into_response()
}

/// A string answer (`GET /config/<string option>`), typed as Go's content sniffing would: no
/// `Content-Type` when empty, `text/plain` for text, `application/octet-stream` for binary.
fn sniffed_response(body: String) -> Response {
    if body.is_empty() {
        return empty_ok_response();
    }
    let binary = body
        .bytes()
        .any(|byte| byte < 0x20 && !matches!(byte, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b));
    let content_type = if binary { OCTET_STREAM } else { TEXT_UTF8 };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (NSQ_CONTENT_TYPE, NSQ_V1),
        ],
        body,
    )
        .into_response()
}

/// An empty 200: only `X-NSQ-Content-Type`, no `Content-Type`.
fn empty_ok_response() -> Response {
    (StatusCode::OK, [(NSQ_CONTENT_TYPE, NSQ_V1)]).into_response()
}

async fn empty_ok() -> Response {
    empty_ok_response()
}

fn options_response(allow: &'static str) -> Response {
    (StatusCode::OK, [(header::ALLOW, allow)]).into_response()
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 404, or httprouter's redirect (301 for GET, 307 otherwise) when the path differs from a route
/// only by a trailing slash or letter case.
async fn not_found(request: Request) -> Response {
    let path = request.uri().path();
    if let Some(canonical) = canonical_path(path) {
        let location = match request.uri().query() {
            Some(query) => format!("{canonical}?{query}"),
            None => canonical,
        };
        let status = if request.method() == Method::GET {
            StatusCode::MOVED_PERMANENTLY
        } else {
            StatusCode::TEMPORARY_REDIRECT
        };
        if let Ok(location) = HeaderValue::from_str(&location) {
            return (status, [(header::LOCATION, location)]).into_response();
        }
    }
    error_response(StatusCode::NOT_FOUND, "NOT_FOUND")
}

fn canonical_path(path: &str) -> Option<String> {
    let trimmed = match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    };
    if let Some(route) = STATIC_ROUTES
        .iter()
        .find(|route| route.eq_ignore_ascii_case(trimmed))
    {
        return (*route != path).then(|| (*route).to_owned());
    }
    let prefix = trimmed.get(..8)?;
    let option = &trimmed[8..];
    if prefix.eq_ignore_ascii_case("/config/") && !option.is_empty() && !option.contains('/') {
        let canonical = format!("/config/{option}");
        return (canonical != path).then_some(canonical);
    }
    None
}

/// Upstream's panic handler: `500 {"message":"INTERNAL_ERROR"}`.
async fn catch_panic(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => {
            tracing::debug!("{} {method} {uri}", response.status().as_u16());
            response
        }
        Err(_) => {
            tracing::error!("panic in HTTP handler for {method} {uri}");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
        }
    }
}

// ---- request helpers ----------------------------------------------------------------------------

/// Query parameters decoded as Go's `url.ParseQuery` does (`+` is a space, `%XX` escapes; a bad
/// escape or a `;` separator makes the whole query invalid).
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

/// The query string could not be parsed (`400 INVALID_REQUEST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidQuery;

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, InvalidQuery> {
        let mut params = Vec::new();
        let mut invalid = false;
        for pair in raw.unwrap_or("").split('&') {
            if pair.contains(';') {
                invalid = true;
                continue;
            }
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (unescape(key), unescape(value)) {
                (Some(key), Some(value)) => params.push((key, value)),
                _ => invalid = true,
            }
        }
        if invalid {
            Err(InvalidQuery)
        } else {
            Ok(Self(params))
        }
    }

    /// The first value of `key`, if present (possibly empty).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn from_request(request: &Request) -> Result<Self, ApiError> {
        Self::parse(request.uri().query()).map_err(|InvalidQuery| {
            tracing::warn!(
                "failed to parse request params - {:?}",
                request.uri().query()
            );
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST")
        })
    }
}

fn unescape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes.get(index + 1..index + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The request's `Content-Length`, if it is a number.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reading the request body failed.
#[derive(Debug)]
pub(crate) struct BodyReadError;

/// Reads at most `cap` bytes of the body (Go's `io.LimitReader`): callers compare the length with
/// `cap` to detect "too big" without buffering the rest.
pub(crate) async fn read_body_capped(body: Body, cap: u64) -> Result<Bytes, BodyReadError> {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut stream = body.into_data_stream();
    let mut collected = BytesMut::new();
    while collected.len() < cap {
        match stream.next().await {
            None => break,
            Some(Ok(chunk)) => {
                let room = cap - collected.len();
                collected.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Some(Err(_)) => return Err(BodyReadError),
        }
    }
    Ok(collected.freeze())
}

// ---- node endpoints -----------------------------------------------------------------------------

async fn ping(State(state): State<HttpState>) -> Response {
    match state.nsqd.health_error() {
        None => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT_UTF8)], "OK").into_response(),
        Some(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, TEXT_UTF8)],
            format!("NOK - {err}"),
        )
            .into_response(),
    }
}

async fn info(State(state): State<HttpState>) -> Response {
    let nsqd = &state.nsqd;
    let Some(identity) = nsqd.identity.get() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR");
    };
    let settings = &nsqd.settings;
    let info = nsq_protocol::api::Info {
        version: nsq_protocol::NSQ_VERSION.to_owned(),
        broadcast_address: identity.broadcast_address.clone(),
        hostname: identity.hostname.clone(),
        // The actual listening ports, not the broadcast ones.
        http_port: identity.http_addr.map_or(0, |addr| addr.port()),
        tcp_port: identity.tcp_addr.port(),
        start_time: nsqd.start_time,
        max_heartbeat_interval: settings.identify.max_heartbeat_interval.as_nanos() as u64,
        max_output_buffer_size: settings.identify.max_output_buffer_size,
        max_output_buffer_timeout: settings.identify.max_output_buffer_timeout.as_nanos() as u64,
        max_deflate_level: settings.identify.max_deflate_level,
        topology_zone: settings.identify.topology_zone.clone(),
        topology_region: settings.identify.topology_region.clone(),
    };
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&info).unwrap_or_default(),
    )
}

/// Upstream's boolean parameters: `true`/`1`/`false`/`0`; anything else (or absent) is true.
fn query_flag(params: &Params, key: &str) -> bool {
    !matches!(params.get(key), Some("false" | "0"))
}

async fn get_stats(State(state): State<HttpState>, request: Request) -> Response {
    let params = match Params::from_request(&request) {
        Ok(params) => params,
        Err(err) => return err.into_response(),
    };
    let filter = StatsFilter {
        topic: params
            .get("topic")
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        channel: params
            .get("channel")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        include_clients: query_flag(&params, "include_clients"),
        include_mem: query_flag(&params, "include_mem"),
    };
    let document = stats(&state.nsqd, &filter);
    if params.get("format") == Some("json") {
        json_response(
            StatusCode::OK,
            serde_json::to_vec(&document).unwrap_or_default(),
        )
    } else {
        text_response(render_text(&document, state.started.elapsed()))
    }
}

async fn get_metrics(State(state): State<HttpState>) -> Response {
    let body = crate::metrics::render(&state.nsqd, state.started.elapsed());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        body,
    )
        .into_response()
}

/// `PUT /debug/setblockrate?rate=<int>`: Go's block profiler does not exist here; the rate is
/// validated as upstream does and otherwise ignored.
async fn set_block_rate(request: Request) -> Response {
    let rate = Params::parse(request.uri().query())
        .ok()
        .and_then(|params| params.get("rate").map(str::to_owned))
        .unwrap_or_default();
    match rate.parse::<i64>() {
        Ok(_) => (StatusCode::OK, [(NSQ_CONTENT_TYPE, NSQ_V1)]).into_response(),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, TEXT_UTF8)],
            format!("invalid block rate : strconv.Atoi: parsing {rate:?}: invalid syntax"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_follows_go() {
        let params = Params::parse(Some("topic=r1&topic=r2&x=a+b%21&flag")).unwrap();
        assert_eq!(params.get("topic"), Some("r1"));
        assert_eq!(params.get("x"), Some("a b!"));
        assert_eq!(params.get("flag"), Some(""));
        assert_eq!(params.get("missing"), None);
        assert!(Params::parse(Some("topic=%zz")).is_err());
        assert!(Params::parse(Some("topic=a;b")).is_err());
        assert!(Params::parse(Some("topic=%4")).is_err());
        assert!(Params::parse(None).unwrap().get("topic").is_none());
    }

    #[test]
    fn redirects_only_near_misses() {
        assert_eq!(canonical_path("/stats/").as_deref(), Some("/stats"));
        assert_eq!(canonical_path("/PING").as_deref(), Some("/ping"));
        assert_eq!(
            canonical_path("/Config/log_level/").as_deref(),
            Some("/config/log_level")
        );
        assert_eq!(canonical_path("/nope"), None);
        assert_eq!(canonical_path("/"), None);
        assert_eq!(canonical_path("/stats"), None);
    }
}
