//! `POST /pub` and `POST /mpub`: publishing over HTTP, through [`Nsqd::publish`] like TCP.
//!
//! The checks run in upstream's order, quirks included: `/pub` reads and checks the body before
//! the topic (`MSG_EMPTY` wins over `MISSING_ARG_TOPIC`), the topic is created once its name is
//! valid even if a later check fails, `/mpub` ignores `defer`, skips empty lines, answers an
//! empty body with `OK`, and reports binary-mode errors as 413 with the TCP code minus `E_`.
//!
//! [`Nsqd::publish`]: crate::nsqd::Nsqd::publish

use super::{
    ApiError, HttpState, Params, content_length, error_response, read_body_capped, text_response,
};
use crate::topic::PublishError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use nsq_protocol::TopicName;
use std::time::Duration;

/// `POST /pub?topic=<t>[&defer=<ms>]`.
pub(super) async fn pub_one(State(state): State<HttpState>, request: Request) -> Response {
    let max_msg_size = state.nsqd.settings.limits.max_msg_size;
    if content_length(request.headers()).is_some_and(|length| length > max_msg_size) {
        return error_response(StatusCode::PAYLOAD_TOO_LARGE, "MSG_TOO_BIG");
    }
    let (parts, body) = request.into_parts();
    let read_max = max_msg_size.saturating_add(1);
    let Ok(body) = read_body_capped(body, read_max).await else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR");
    };
    if body.len() as u64 == read_max {
        return error_response(StatusCode::PAYLOAD_TOO_LARGE, "MSG_TOO_BIG");
    }
    if body.is_empty() {
        return error_response(StatusCode::BAD_REQUEST, "MSG_EMPTY");
    }
    let (params, topic_name) = match topic_from_query(&state, parts.uri.query()) {
        Ok(found) => found,
        Err(err) => return err.into_response(),
    };
    let defer = match params.get("defer") {
        None => None,
        Some(raw) => match parse_defer(raw, state.nsqd.settings.max_req_timeout) {
            Some(defer) => Some(defer),
            None => return error_response(StatusCode::BAD_REQUEST, "INVALID_DEFER"),
        },
    };
    publish(&state, &topic_name, &[body], defer).await
}

/// `POST /mpub?topic=<t>[&binary=true]`.
pub(super) async fn pub_many(State(state): State<HttpState>, request: Request) -> Response {
    let limits = state.nsqd.settings.limits;
    if content_length(request.headers()).is_some_and(|length| length > limits.max_body_size) {
        return error_response(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_BIG");
    }
    let (parts, body) = request.into_parts();
    let (params, topic_name) = match topic_from_query(&state, parts.uri.query()) {
        Ok(found) => found,
        Err(err) => return err.into_response(),
    };
    let binary = match params.get("binary") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            tracing::warn!("deprecated value '{other}' used for /mpub binary param");
            true
        }
    };
    let read_max = limits.max_body_size.saturating_add(1);
    let Ok(body) = read_body_capped(body, read_max).await else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR");
    };
    let parsed = if binary {
        split_binary(&body, limits.max_msg_size, limits.max_body_size)
    } else {
        split_text(&body, read_max, limits.max_msg_size)
    };
    match parsed {
        Ok(bodies) => publish(&state, &topic_name, &bodies, None).await,
        Err(code) => error_response(StatusCode::PAYLOAD_TOO_LARGE, code),
    }
}

/// Upstream's `getTopicFromQuery`: parse, require `topic`, validate it, create the topic.
fn topic_from_query(
    state: &HttpState,
    query: Option<&str>,
) -> Result<(Params, TopicName), ApiError> {
    let params = Params::parse(query)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST"))?;
    let raw = params
        .get("topic")
        .ok_or(ApiError::new(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))?;
    let topic_name = TopicName::try_from(raw)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_TOPIC"))?;
    state.nsqd.topic(&topic_name);
    Ok((params, topic_name))
}

/// Go's `strconv.ParseInt(raw, 10, 64)` milliseconds, within `0..=max`.
fn parse_defer(raw: &str, max: Duration) -> Option<Duration> {
    let millis: i64 = raw.parse().ok()?;
    let millis = u64::try_from(millis).ok()?;
    let defer = Duration::from_millis(millis);
    (defer <= max).then_some(defer)
}

async fn publish(
    state: &HttpState,
    topic_name: &TopicName,
    bodies: &[Bytes],
    defer: Option<Duration>,
) -> Response {
    if bodies.is_empty() {
        return text_response("OK");
    }
    match state.nsqd.publish(topic_name, bodies, defer).await {
        Ok(()) => text_response("OK"),
        Err(PublishError::Backend(err)) => {
            // A failing disk (upstream has no such failure and answers 503 EXITING for any).
            tracing::error!(topic = %topic_name, "HTTP publish failed - {err}");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
        }
        Err(err) => {
            tracing::error!(topic = %topic_name, "HTTP publish failed - {err}");
            error_response(StatusCode::SERVICE_UNAVAILABLE, "EXITING")
        }
    }
}

/// Text mode: one message per `\n`-terminated line, empty lines skipped, `\r` kept. `body` is at
/// most `read_max` bytes; reaching it means the body was too big.
fn split_text(body: &Bytes, read_max: u64, max_msg_size: u64) -> Result<Vec<Bytes>, &'static str> {
    let mut messages = Vec::new();
    let mut total = 0u64;
    let mut start = 0;
    while start < body.len() {
        let end = body[start..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map_or(body.len(), |offset| start + offset + 1);
        total += (end - start) as u64;
        if total == read_max {
            return Err("BODY_TOO_BIG");
        }
        let line_end = if body[end - 1] == b'\n' { end - 1 } else { end };
        let line = body.slice(start..line_end);
        start = end;
        if line.is_empty() {
            continue;
        }
        if line.len() as u64 > max_msg_size {
            return Err("MSG_TOO_BIG");
        }
        messages.push(line);
    }
    Ok(messages)
}

/// Binary mode: `[i32 count]` then `count × ([i32 size][bytes])`, validated like TCP MPUB;
/// trailing bytes are ignored.
fn split_binary(
    body: &Bytes,
    max_msg_size: u64,
    max_body_size: u64,
) -> Result<Vec<Bytes>, &'static str> {
    let read_i32 = |offset: usize| -> Option<i32> {
        let raw = body.get(offset..offset + 4)?;
        Some(i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]))
    };
    let count = read_i32(0).ok_or("BAD_BODY")?;
    let max_messages = max_body_size.saturating_sub(4) / 5;
    if count <= 0 || count as u64 > max_messages {
        return Err("BAD_BODY");
    }
    let mut messages = Vec::with_capacity(count as usize);
    let mut offset = 4;
    for _ in 0..count {
        let size = read_i32(offset).ok_or("BAD_MESSAGE")?;
        if size <= 0 || size as u64 > max_msg_size {
            return Err("BAD_MESSAGE");
        }
        offset += 4;
        let end = offset + size as usize;
        if end > body.len() {
            return Err("BAD_MESSAGE");
        }
        messages.push(body.slice(offset..end));
        offset = end;
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_mode_like_upstream() {
        let body = Bytes::from_static(b"\n\na\n\nb\n\n");
        assert_eq!(split_text(&body, 4097, 1024).unwrap(), vec!["a", "b"]);
        let crlf = Bytes::from_static(b"c\r\nd\r\n");
        assert_eq!(split_text(&crlf, 4097, 1024).unwrap(), vec!["c\r", "d\r"]);
        let no_newline = Bytes::from_static(b"m1\nm2");
        assert_eq!(
            split_text(&no_newline, 4097, 1024).unwrap(),
            vec!["m1", "m2"]
        );
        assert!(split_text(&Bytes::new(), 4097, 1024).unwrap().is_empty());
        let long_line = Bytes::from(format!("ok\n{}", "x".repeat(1025)));
        assert_eq!(split_text(&long_line, 4097, 1024), Err("MSG_TOO_BIG"));
        let too_big = Bytes::from(vec![b'x'; 11]);
        assert_eq!(split_text(&too_big, 11, 100), Err("BODY_TOO_BIG"));
    }

    #[test]
    fn binary_mode_like_upstream() {
        let ok = Bytes::from_static(b"\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x01bjunk");
        assert_eq!(split_binary(&ok, 1024, 4096).unwrap(), vec!["a", "b"]);
        for (body, code) in [
            (&b""[..], "BAD_BODY"),
            (b"\x00\x00", "BAD_BODY"),
            (b"\x00\x00\x00\x00", "BAD_BODY"),
            (b"\x00\x00\x03\xe8\x00\x00\x00\x01a", "BAD_BODY"),
            (b"m1\nm2\n", "BAD_BODY"),
            (b"\x00\x00\x00\x02\x00\x00\x00\x01a", "BAD_MESSAGE"),
            (b"\x00\x00\x00\x01\x00\x00\x00\x00", "BAD_MESSAGE"),
            (b"\x00\x00\x00\x01\x00\x00\x00\x0aabc", "BAD_MESSAGE"),
            (b"\x00\x00\x00\x01\x00\x00\x04\x01zz", "BAD_MESSAGE"),
        ] {
            assert_eq!(
                split_binary(&Bytes::copy_from_slice(body), 1024, 4096),
                Err(code),
                "{body:?}"
            );
        }
    }

    #[test]
    fn defer_bounds() {
        let max = Duration::from_secs(3600);
        assert_eq!(parse_defer("3600000", max), Some(max));
        assert_eq!(parse_defer("0", max), Some(Duration::ZERO));
        assert_eq!(parse_defer("+5", max), Some(Duration::from_millis(5)));
        assert_eq!(parse_defer("3600001", max), None);
        assert_eq!(parse_defer("-1", max), None);
        assert_eq!(parse_defer("abc", max), None);
        assert_eq!(parse_defer("", max), None);
    }
}
