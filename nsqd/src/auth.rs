//! AUTH: nsqd as a client of the auth server(s) (`--auth-http-address`), the cached answer and
//! the permission check (tcp-protocol.md §6.2).

use crate::error::NsqdError;
use crate::options::Options;
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use tokio::time::{Duration, Instant};

/// `--auth-http-request-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// Query parameters (upstream's default).
    Get,
    /// A JSON body (post-1.3.0).
    Post,
}

/// The configured auth servers and the HTTP client that calls them.
#[derive(Debug)]
pub struct AuthClient {
    addresses: Vec<String>,
    method: AuthMethod,
    http: reqwest::Client,
}

/// One validated auth-server answer, cached by the connection until `expires`.
#[derive(Debug, Clone)]
pub struct AuthState {
    /// `identity`.
    pub identity: String,
    /// `identity_url`.
    pub identity_url: String,
    authorizations: Vec<Authorization>,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct Authorization {
    topic: Regex,
    channels: Vec<Regex>,
    subscribe: bool,
    publish: bool,
}

#[derive(Deserialize)]
struct RawState {
    #[serde(default)]
    ttl: i64,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    identity_url: Option<String>,
    #[serde(default)]
    authorizations: Option<Vec<RawAuthorization>>,
}

#[derive(Deserialize)]
struct RawAuthorization {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
}

impl AuthState {
    /// Whether the auth server granted anything at all.
    pub fn has_authorizations(&self) -> bool {
        !self.authorizations.is_empty()
    }

    /// Number of entries in `authorizations`.
    pub fn permission_count(&self) -> usize {
        self.authorizations.len()
    }

    /// Whether the TTL has run out (the next SUB/PUB/MPUB/DPUB re-queries).
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires <= now
    }

    /// Upstream's check: a non-empty channel needs `subscribe`, the empty channel (publishes)
    /// needs `publish`; the topic pattern is searched unanchored; one channel pattern must match.
    pub fn is_allowed(&self, topic: &str, channel: &str) -> bool {
        self.authorizations.iter().any(|grant| {
            let permitted = if channel.is_empty() {
                grant.publish
            } else {
                grant.subscribe
            };
            permitted
                && grant.topic.is_match(topic)
                && grant
                    .channels
                    .iter()
                    .any(|pattern| pattern.is_match(channel))
        })
    }

    /// Parses and validates an auth server's 200 answer.
    fn parse(body: &[u8], now: Instant) -> Result<Self, String> {
        let raw: RawState =
            serde_json::from_slice(body).map_err(|err| format!("invalid JSON answer - {err}"))?;
        let mut authorizations = Vec::new();
        for grant in raw.authorizations.unwrap_or_default() {
            let mut subscribe = false;
            let mut publish = false;
            for permission in grant.permissions.unwrap_or_default() {
                match permission.as_str() {
                    "subscribe" => subscribe = true,
                    "publish" => publish = true,
                    other => return Err(format!("unknown permission {other}")),
                }
            }
            let pattern = grant.topic.unwrap_or_default();
            let topic = Regex::new(&pattern)
                .map_err(|err| format!("unable to compile topic {pattern:?} {err}"))?;
            let channels = grant
                .channels
                .unwrap_or_default()
                .iter()
                .map(|pattern| {
                    Regex::new(pattern)
                        .map_err(|err| format!("unable to compile channel {pattern:?} {err}"))
                })
                .collect::<Result<_, _>>()?;
            authorizations.push(Authorization {
                topic,
                channels,
                subscribe,
                publish,
            });
        }
        if raw.ttl <= 0 {
            return Err(format!("invalid TTL {} (must be >0)", raw.ttl));
        }
        Ok(Self {
            identity: raw.identity.unwrap_or_default(),
            identity_url: raw.identity_url.unwrap_or_default(),
            authorizations,
            expires: now + Duration::from_secs(raw.ttl as u64),
        })
    }
}

/// Go's `url.QueryEscape`.
fn query_escape(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for &byte in raw {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}

/// What nsqd tells the auth server about a connection.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The client's IP without port.
    pub remote_ip: &'a str,
    /// The connection completed the TLS upgrade.
    pub tls: bool,
    /// Subject CN of the client certificate ("" without one).
    pub common_name: &'a str,
    /// The AUTH body.
    pub secret: &'a [u8],
}

impl AuthClient {
    /// The auth client for `--auth-http-address` (none configured: `None`). Validates
    /// `--auth-http-request-method` whether or not addresses are given, as upstream does.
    pub fn from_options(options: &Options) -> Result<Option<Arc<Self>>, NsqdError> {
        let method = match options.auth_http_request_method.as_str() {
            "get" => AuthMethod::Get,
            "post" => AuthMethod::Post,
            _ => {
                return Err(NsqdError::Config(
                    "--auth-http-request-method must be post or get".to_owned(),
                ));
            }
        };
        if options.auth_http_addresses.is_empty() {
            return Ok(None);
        }
        let mut builder = reqwest::Client::builder();
        if !options.http_client_connect_timeout.is_zero() {
            builder = builder.connect_timeout(options.http_client_connect_timeout);
        }
        if !options.http_client_request_timeout.is_zero() {
            builder = builder.timeout(options.http_client_request_timeout);
        }
        if !options.tls_root_ca_file.is_empty() {
            for cert in crate::tls::load_certs(&options.tls_root_ca_file)
                .map_err(|err| NsqdError::Config(format!("failed to load CA file - {err}")))?
            {
                let cert = reqwest::Certificate::from_der(&cert)
                    .map_err(|err| NsqdError::Config(format!("failed to load CA file - {err}")))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|err| NsqdError::Config(format!("failed to build HTTP client - {err}")))?;
        Ok(Some(Arc::new(Self {
            addresses: options.auth_http_addresses.clone(),
            method,
            http,
        })))
    }

    /// Asks the auth servers in turn, starting at a random one, until one answers validly.
    pub async fn query_any(&self, request: AuthRequest<'_>) -> Result<AuthState, String> {
        let count = self.addresses.len();
        let start = rand::random::<u32>() as usize % count.max(1);
        let mut last_error = String::from("no auth server configured");
        for index in 0..count {
            let address = &self.addresses[(start + index) % count];
            match self.query(address, request).await {
                Ok(state) => return Ok(state),
                Err(err) => {
                    tracing::warn!("failed auth against {address} {err}");
                    last_error = err;
                }
            }
        }
        Err(last_error)
    }

    async fn query(&self, address: &str, request: AuthRequest<'_>) -> Result<AuthState, String> {
        let endpoint = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}/auth")
        };
        let tls = if request.tls { "true" } else { "false" };
        let accept = ("accept", "application/vnd.nsq; version=1.0");
        let sent = match self.method {
            AuthMethod::Get => {
                let url = format!(
                    "{endpoint}?common_name={}&remote_ip={}&secret={}&tls={tls}",
                    query_escape(request.common_name.as_bytes()),
                    query_escape(request.remote_ip.as_bytes()),
                    query_escape(request.secret),
                );
                self.http.get(url).header(accept.0, accept.1).send().await
            }
            AuthMethod::Post => {
                let secret = String::from_utf8_lossy(request.secret);
                let body: BTreeMap<&str, [&str; 1]> = BTreeMap::from([
                    ("common_name", [request.common_name]),
                    ("remote_ip", [request.remote_ip]),
                    ("secret", [secret.as_ref()]),
                    ("tls", [tls]),
                ]);
                let body = serde_json::to_vec(&body).map_err(|err| err.to_string())?;
                self.http
                    .post(&endpoint)
                    .header(accept.0, accept.1)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
            }
        };
        let response = sent.map_err(|err| err.to_string())?;
        let status = response.status();
        let body = response.bytes().await.map_err(|err| err.to_string())?;
        if status != reqwest::StatusCode::OK {
            return Err(format!(
                "got response {status} {:?}",
                String::from_utf8_lossy(&body)
            ));
        }
        AuthState::parse(&body, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> Result<AuthState, String> {
        AuthState::parse(json.as_bytes(), Instant::now())
    }

    #[test]
    fn validation() {
        assert!(state(r#"{"ttl":0,"authorizations":[]}"#).is_err());
        assert!(state(r#"{"ttl":1.5}"#).is_err());
        assert!(
            state(r#"{"ttl":5,"authorizations":[{"topic":"t","channels":[],"permissions":["admin"]}]}"#)
                .is_err()
        );
        assert!(
            state(r#"{"ttl":5,"authorizations":[{"topic":"(","channels":[],"permissions":[]}]}"#)
                .is_err()
        );
        assert!(
            state(
                r#"{"ttl":5,"authorizations":[{"topic":"t","channels":["["],"permissions":[]}]}"#
            )
            .is_err()
        );
        let empty = state(r#"{"ttl":5,"identity":null,"authorizations":null}"#).unwrap();
        assert!(!empty.has_authorizations());
    }

    #[test]
    fn permission_rules() {
        let grants = state(
            r#"{"ttl":5,"identity":"i","authorizations":[
                {"topic":"foo","channels":[".*"],"permissions":["publish"]},
                {"topic":"^sub$","channels":["^c"],"permissions":["subscribe"]},
                {"topic":".*","channels":[],"permissions":["publish","subscribe"]}]}"#,
        )
        .unwrap();
        assert_eq!(grants.permission_count(), 3);
        assert!(grants.is_allowed("foobar", ""));
        assert!(grants.is_allowed("xfoo", ""));
        assert!(!grants.is_allowed("bar", ""));
        assert!(!grants.is_allowed("foo", "c1"));
        assert!(grants.is_allowed("sub", "c1"));
        assert!(!grants.is_allowed("sub", "d1"));
        assert!(!grants.is_allowed("sub", ""));
    }

    #[test]
    fn go_query_escape() {
        assert_eq!(query_escape(b"a b&c=d/~*"), "a+b%26c%3Dd%2F~%2A");
        assert_eq!(query_escape("é".as_bytes()), "%C3%A9");
    }
}
