//! The HTTP API (`/lookup`, `/topics`, `/channels`, `/nodes`, `/topic/*`, `/channel/*`, …).
//!
//! Responses follow upstream's "V1" conventions: JSON with `Content-Type: application/json;
//! charset=utf-8` and `X-NSQ-Content-Type: nsq; version=1.0`, empty 200s with only the NSQ header,
//! errors as `{"message":"<CODE>"}`. Arguments come from the query string only (first value wins;
//! a malformed query is `400 INVALID_REQUEST`).
//!
//! Routing copies Go's httprouter, which upstream uses: a known path with another method is
//! `405 METHOD_NOT_ALLOWED` with `Allow: …, OPTIONS`; `OPTIONS` answers 200 with `Allow`; `HEAD`
//! is just another method; a trailing slash or wrong case redirects (301 for GET, 307 otherwise)
//! to the registered path; anything else is `404 NOT_FOUND`.

use crate::Shared;
use crate::error::Error;
use crate::registration_db::Registration;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use nsq_protocol::lookup::{ChannelsResponse, InfoResponse, TopicsResponse};
use nsq_protocol::names::is_valid_name;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the API on `listener` until `stop` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<(), Error> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(Error::HttpServer)
}

/// The API as an axum router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

/// The `X-NSQ-Content-Type` header every V1 response carries; go-nsq only parses bodies with it.
const NSQ_CONTENT_TYPE: (&str, &str) = ("x-nsq-content-type", "nsq; version=1.0");

/// A V1 JSON response.
pub(crate) fn v1_json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let (status, json) = match serde_json::to_vec(body) {
        Ok(json) => (status, json),
        Err(err) => {
            tracing::error!("failed to encode JSON response - {err}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"message":"INTERNAL_ERROR"}"#.to_vec(),
            )
        }
    };
    let mut response = (status, json).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        NSQ_CONTENT_TYPE.0,
        HeaderValue::from_static(NSQ_CONTENT_TYPE.1),
    );
    response
}

/// A V1 success with nothing to say: 200, empty body, no Content-Type.
fn v1_empty() -> Response {
    let mut response = Response::new(Body::empty());
    response.headers_mut().insert(
        NSQ_CONTENT_TYPE.0,
        HeaderValue::from_static(NSQ_CONTENT_TYPE.1),
    );
    response
}

fn plain_text(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Ping,
    Info,
    Debug,
    Lookup,
    Topics,
    Channels,
    Nodes,
    TopicCreate,
    TopicDelete,
    ChannelCreate,
    ChannelDelete,
    TopicTombstone,
    Pprof,
}

struct Route {
    method: &'static str,
    path: &'static str,
    endpoint: Endpoint,
}

const fn route(method: &'static str, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

const ROUTES: [Route; 13] = [
    route("GET", "/ping", Endpoint::Ping),
    route("GET", "/info", Endpoint::Info),
    route("GET", "/debug", Endpoint::Debug),
    route("GET", "/lookup", Endpoint::Lookup),
    route("GET", "/topics", Endpoint::Topics),
    route("GET", "/channels", Endpoint::Channels),
    route("GET", "/nodes", Endpoint::Nodes),
    route("POST", "/topic/create", Endpoint::TopicCreate),
    route("POST", "/topic/delete", Endpoint::TopicDelete),
    route("POST", "/channel/create", Endpoint::ChannelCreate),
    route("POST", "/channel/delete", Endpoint::ChannelDelete),
    route("POST", "/topic/tombstone", Endpoint::TopicTombstone),
    route("GET", "/debug/pprof", Endpoint::Pprof),
];

async fn dispatch(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let method = method.as_str();
    if let Some(found) = ROUTES
        .iter()
        .find(|route| route.path == path && route.method == method)
    {
        let result = handle(&shared, found.endpoint, uri.query().unwrap_or(""));
        return result.unwrap_or_else(IntoResponse::into_response);
    }
    if let Some(location) = redirect_target(method, path) {
        return redirect(method, location, uri.query());
    }
    let mut allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|route| route.path == path)
        .map(|route| route.method)
        .collect();
    if allowed.is_empty() {
        return Error::not_found("NOT_FOUND").into_response();
    }
    allowed.push("OPTIONS");
    allowed.sort_unstable();
    let allow = allowed.join(", ");
    let mut response = if method == "OPTIONS" {
        Response::new(Body::empty())
    } else {
        Error::Http {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "METHOD_NOT_ALLOWED",
        }
        .into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

fn handle(shared: &Shared, endpoint: Endpoint, raw_query: &str) -> Result<Response, Error> {
    let now = SystemTime::now();
    let params = || parse_query(raw_query).map_err(|()| Error::bad_request("INVALID_REQUEST"));
    Ok(match endpoint {
        Endpoint::Ping => plain_text(StatusCode::OK, "OK"),
        Endpoint::Info => v1_json(
            StatusCode::OK,
            &InfoResponse {
                version: crate::VERSION.to_owned(),
            },
        ),
        Endpoint::Debug => v1_json(StatusCode::OK, &shared.db.read().debug()),
        Endpoint::Topics => v1_json(
            StatusCode::OK,
            &TopicsResponse {
                topics: shared.db.read().topics(),
            },
        ),
        Endpoint::Nodes => v1_json(
            StatusCode::OK,
            &shared.db.read().nodes(now, shared.liveness),
        ),
        Endpoint::Channels => {
            let params = params()?;
            let topic = required(&params, "topic", "MISSING_ARG_TOPIC")?;
            v1_json(
                StatusCode::OK,
                &ChannelsResponse {
                    channels: shared.db.read().channels(topic),
                },
            )
        }
        Endpoint::Lookup => {
            let params = params()?;
            let topic = required(&params, "topic", "MISSING_ARG_TOPIC")?;
            let lookup = shared.db.read().lookup(topic, now, shared.liveness);
            match lookup {
                Some(lookup) => v1_json(StatusCode::OK, &lookup),
                None => return Err(Error::not_found("TOPIC_NOT_FOUND")),
            }
        }
        Endpoint::TopicCreate => {
            let params = params()?;
            let topic = required(&params, "topic", "MISSING_ARG_TOPIC")?;
            if !is_valid_name(topic.as_bytes()) {
                return Err(Error::bad_request("INVALID_ARG_TOPIC"));
            }
            tracing::info!("DB: adding topic({topic})");
            shared
                .db
                .write()
                .add_registration(Registration::topic(topic));
            v1_empty()
        }
        Endpoint::TopicDelete => {
            let params = params()?;
            let topic = required(&params, "topic", "MISSING_ARG_TOPIC")?;
            for registration in shared.db.write().delete_topic(topic) {
                tracing::info!("DB: removing {registration}");
            }
            v1_empty()
        }
        Endpoint::ChannelCreate => {
            let params = params()?;
            let (topic, channel) = topic_and_channel(&params)?;
            tracing::info!("DB: adding channel({channel}) in topic({topic})");
            let mut db = shared.db.write();
            db.add_registration(Registration::channel(topic, channel));
            db.add_registration(Registration::topic(topic));
            v1_empty()
        }
        Endpoint::ChannelDelete => {
            let params = params()?;
            let (topic, channel) = topic_and_channel(&params)?;
            if !shared
                .db
                .write()
                .remove_registration(&Registration::channel(topic, channel))
            {
                return Err(Error::not_found("CHANNEL_NOT_FOUND"));
            }
            tracing::info!("DB: removing channel({channel}) from topic({topic})");
            v1_empty()
        }
        Endpoint::TopicTombstone => {
            let params = params()?;
            let topic = required(&params, "topic", "MISSING_ARG_TOPIC")?;
            let node = required(&params, "node", "MISSING_ARG_NODE")?;
            tracing::info!("DB: setting tombstone for producer@{node} of topic({topic})");
            shared.db.write().tombstone(topic, node, now);
            v1_empty()
        }
        Endpoint::Pprof => plain_text(
            StatusCode::OK,
            "nsqlookupd (nsq-rs) does not embed Go's pprof profiler; no profiles are available.\n",
        ),
    })
}

/// The first value of `key`, or `400 <missing>`.
fn required<'a>(
    params: &'a [(String, String)],
    key: &str,
    missing: &'static str,
) -> Result<&'a str, Error> {
    params
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
        .ok_or(Error::bad_request(missing))
}

/// `topic` and `channel`, present and valid, checked in upstream's order.
fn topic_and_channel(params: &[(String, String)]) -> Result<(&str, &str), Error> {
    let topic = required(params, "topic", "MISSING_ARG_TOPIC")?;
    if !is_valid_name(topic.as_bytes()) {
        return Err(Error::bad_request("INVALID_ARG_TOPIC"));
    }
    let channel = required(params, "channel", "MISSING_ARG_CHANNEL")?;
    if !is_valid_name(channel.as_bytes()) {
        return Err(Error::bad_request("INVALID_ARG_CHANNEL"));
    }
    Ok((topic, channel))
}

/// Go's `url.ParseQuery`: `&`-separated `key=value` pairs, `+` is a space, `%XX` escapes; a `;` in
/// a pair or a bad escape is an error (the other pairs are still parsed, but the caller rejects
/// the request, as upstream does).
fn parse_query(raw: &str) -> Result<Vec<(String, String)>, ()> {
    let mut pairs = Vec::new();
    let mut failed = false;
    for pair in raw.split('&') {
        if pair.contains(';') {
            failed = true;
            continue;
        }
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (query_unescape(key), query_unescape(value)) {
            (Some(key), Some(value)) => pairs.push((key, value)),
            _ => failed = true,
        }
    }
    if failed { Err(()) } else { Ok(pairs) }
}

fn query_unescape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let high = hex_value(*bytes.get(index + 1)?)?;
                let low = hex_value(*bytes.get(index + 2)?)?;
                out.push(high << 4 | low);
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
    // Go strings may hold any bytes; names with invalid UTF-8 are invalid or unknown either way.
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// httprouter's trailing-slash and case-insensitive fixes, among the routes of this method.
fn redirect_target(method: &str, path: &str) -> Option<&'static str> {
    if method == "CONNECT" || path == "/" {
        return None;
    }
    let routes = || ROUTES.iter().filter(|route| route.method == method);
    if let Some(trimmed) = path.strip_suffix('/')
        && let Some(found) = routes().find(|route| route.path == trimmed)
    {
        return Some(found.path);
    }
    let cleaned = clean_path(path);
    let cleaned = cleaned.strip_suffix('/').unwrap_or(&cleaned);
    routes()
        .find(|route| route.path.eq_ignore_ascii_case(cleaned))
        .map(|route| route.path)
}

/// httprouter's `CleanPath`: resolves `.`, `..` and repeated slashes.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut cleaned = format!("/{}", parts.join("/"));
    if path.ends_with('/') && cleaned.len() > 1 {
        cleaned.push('/');
    }
    cleaned
}

/// Go's `http.Redirect`: `Location`, and for GET a short HTML body.
fn redirect(method: &str, path: &str, query: Option<&str>) -> Response {
    let location = match query {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    };
    let (status, text) = if method == "GET" {
        (StatusCode::MOVED_PERMANENTLY, "Moved Permanently")
    } else {
        (StatusCode::TEMPORARY_REDIRECT, "Temporary Redirect")
    };
    let body = if method == "GET" {
        format!("<a href=\"{}\">{text}</a>.\n\n", html_escape(&location))
    } else {
        String::new()
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    if method == "GET" || method == "HEAD" {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    response
}

fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&#34;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn query_parsing_like_go() {
        type Case = (
            &'static str,
            Result<&'static [(&'static str, &'static str)], ()>,
        );
        let cases: &[Case] = &[
            ("", Ok(&[])),
            ("topic=t", Ok(&[("topic", "t")])),
            ("topic=r1&topic=r2", Ok(&[("topic", "r1"), ("topic", "r2")])),
            ("topic", Ok(&[("topic", "")])),
            ("topic=", Ok(&[("topic", "")])),
            ("&&topic=a%2Ab+c&", Ok(&[("topic", "a*b c")])),
            ("node=127.0.0.1%3A4151", Ok(&[("node", "127.0.0.1:4151")])),
            ("a=b=c", Ok(&[("a", "b=c")])),
            ("topic=%zz", Err(())),
            ("topic=%4", Err(())),
            ("topic=a;b", Err(())),
            ("x=1;y=2&topic=t", Err(())),
        ];
        for (raw, expected) in cases {
            assert_eq!(parse_query(raw), expected.map(pairs), "{raw:?}");
        }
        let params = parse_query("topic=first&topic=second").unwrap();
        assert_eq!(required(&params, "topic", "MISSING").unwrap(), "first");
        assert!(required(&params, "channel", "MISSING").is_err());
    }

    #[test]
    fn redirects_like_httprouter() {
        let cases = [
            ("GET", "/ping/", Some("/ping")),
            ("GET", "/PING", Some("/ping")),
            ("GET", "/Topic/Create", None),
            ("POST", "/Topic/Create", Some("/topic/create")),
            ("POST", "/topic/create/", Some("/topic/create")),
            ("GET", "//lookup", Some("/lookup")),
            ("GET", "/x/../info", Some("/info")),
            ("PUT", "/ping/", None),
            ("GET", "/", None),
            ("GET", "/nosuch", None),
            ("CONNECT", "/PING", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(redirect_target(method, path), expected, "{method} {path}");
        }
        assert_eq!(clean_path("/a//b/./c/../d/"), "/a/b/d/");
        assert_eq!(clean_path("/.."), "/");
        assert_eq!(html_escape("/lookup?topic=a&b"), "/lookup?topic=a&amp;b");
    }
}
