//! `/topic/*` and `/channel/*`: operator actions.
//!
//! Argument validation differs per endpoint upstream, and that is reproduced: topic create and
//! empty answer `INVALID_TOPIC`; topic delete, pause and unpause do not validate the name at all
//! (an invalid name is simply not found); the channel endpoints answer `INVALID_ARG_TOPIC` /
//! `MISSING_ARG_CHANNEL` / `INVALID_ARG_CHANNEL`, checked in that order before the topic lookup.
//! Pause and unpause persist the metadata before answering.

use super::{ApiError, HttpState, Params, empty_ok_response, error_response};
use crate::channel::Channel;
use crate::topic::Topic;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use nsq_protocol::{ChannelName, TopicName};
use std::sync::Arc;

pub(super) async fn topic_create(State(state): State<HttpState>, request: Request) -> Response {
    match valid_topic_name(&request) {
        Ok(name) => {
            state.nsqd.topic(&name);
            empty_ok_response()
        }
        Err(err) => err.into_response(),
    }
}

pub(super) async fn topic_delete(State(state): State<HttpState>, request: Request) -> Response {
    let name = match raw_topic_name(&request) {
        Ok(name) => name,
        Err(err) => return err.into_response(),
    };
    // Deleting closes every consumer connection of every channel (their close tokens).
    if state.nsqd.delete_topic(&name) {
        empty_ok_response()
    } else {
        error_response(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND")
    }
}

pub(super) async fn topic_empty(State(state): State<HttpState>, request: Request) -> Response {
    let name = match valid_topic_name(&request) {
        Ok(name) => name,
        Err(err) => return err.into_response(),
    };
    match state.nsqd.existing_topic(name.as_str()) {
        Some(topic) => {
            topic.empty();
            empty_ok_response()
        }
        None => error_response(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"),
    }
}

pub(super) async fn topic_pause(state: State<HttpState>, request: Request) -> Response {
    set_topic_paused(state, request, true).await
}

pub(super) async fn topic_unpause(state: State<HttpState>, request: Request) -> Response {
    set_topic_paused(state, request, false).await
}

async fn set_topic_paused(
    State(state): State<HttpState>,
    request: Request,
    paused: bool,
) -> Response {
    let name = match raw_topic_name(&request) {
        Ok(name) => name,
        Err(err) => return err.into_response(),
    };
    let Some(topic) = state.nsqd.existing_topic(&name) else {
        return error_response(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND");
    };
    topic.set_paused(paused);
    tracing::info!(topic = %topic.name, "TOPIC({}): {}", topic.name, if paused { "paused" } else { "unpaused" });
    persist(&state).await;
    empty_ok_response()
}

pub(super) async fn channel_create(State(state): State<HttpState>, request: Request) -> Response {
    let (topic, channel_name) = match existing_topic_and_channel_name(&state, &request) {
        Ok(found) => found,
        Err(err) => return err.into_response(),
    };
    topic.get_or_create_channel(&channel_name);
    empty_ok_response()
}

pub(super) async fn channel_delete(State(state): State<HttpState>, request: Request) -> Response {
    let (topic, channel_name) = match existing_topic_and_channel_name(&state, &request) {
        Ok(found) => found,
        Err(err) => return err.into_response(),
    };
    if topic.delete_channel(channel_name.as_str()).is_none() {
        return error_response(StatusCode::NOT_FOUND, "CHANNEL_NOT_FOUND");
    }
    // An ephemeral topic goes with its last channel.
    if topic.is_ephemeral() && topic.channel_names().is_empty() {
        state.nsqd.delete_topic_instance(&topic);
    }
    empty_ok_response()
}

pub(super) async fn channel_empty(State(state): State<HttpState>, request: Request) -> Response {
    match existing_channel(&state, &request) {
        Ok((_, channel)) => {
            channel.empty();
            empty_ok_response()
        }
        Err(err) => err.into_response(),
    }
}

pub(super) async fn channel_pause(state: State<HttpState>, request: Request) -> Response {
    set_channel_paused(state, request, true).await
}

pub(super) async fn channel_unpause(state: State<HttpState>, request: Request) -> Response {
    set_channel_paused(state, request, false).await
}

async fn set_channel_paused(
    State(state): State<HttpState>,
    request: Request,
    paused: bool,
) -> Response {
    let (topic, channel) = match existing_channel(&state, &request) {
        Ok(found) => found,
        Err(err) => return err.into_response(),
    };
    channel.set_paused(paused);
    tracing::info!(
        topic = %topic.name,
        channel = %channel.name,
        "CHANNEL({}): {}",
        channel.name,
        if paused { "paused" } else { "unpaused" }
    );
    persist(&state).await;
    empty_ok_response()
}

async fn persist(state: &HttpState) {
    if let Some(metadata) = &state.metadata {
        metadata.persist().await;
    }
}

/// `topic` as given, unvalidated (delete, pause, unpause).
fn raw_topic_name(request: &Request) -> Result<String, ApiError> {
    let params = Params::from_request(request)?;
    params
        .get("topic")
        .map(str::to_owned)
        .ok_or(ApiError::new(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))
}

/// `topic`, validated with `INVALID_TOPIC` (create, empty).
fn valid_topic_name(request: &Request) -> Result<TopicName, ApiError> {
    let raw = raw_topic_name(request)?;
    TopicName::try_from(raw.as_str())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_TOPIC"))
}

/// Upstream's `GetTopicChannelArgs` then `GetExistingTopic`.
fn existing_topic_and_channel_name(
    state: &HttpState,
    request: &Request,
) -> Result<(Arc<Topic>, ChannelName), ApiError> {
    let params = Params::from_request(request)?;
    let raw_topic = params
        .get("topic")
        .ok_or(ApiError::new(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))?;
    let topic_name = TopicName::try_from(raw_topic)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARG_TOPIC"))?;
    let raw_channel = params.get("channel").ok_or(ApiError::new(
        StatusCode::BAD_REQUEST,
        "MISSING_ARG_CHANNEL",
    ))?;
    let channel_name = ChannelName::try_from(raw_channel)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARG_CHANNEL"))?;
    let topic = state
        .nsqd
        .existing_topic(topic_name.as_str())
        .ok_or(ApiError::new(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"))?;
    Ok((topic, channel_name))
}

fn existing_channel(
    state: &HttpState,
    request: &Request,
) -> Result<(Arc<Topic>, Arc<Channel>), ApiError> {
    let (topic, channel_name) = existing_topic_and_channel_name(state, request)?;
    let channel = topic
        .channel(channel_name.as_str())
        .ok_or(ApiError::new(StatusCode::NOT_FOUND, "CHANNEL_NOT_FOUND"))?;
    Ok((topic, channel))
}
