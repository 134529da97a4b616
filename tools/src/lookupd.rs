//! HTTP queries the tools make: nsqlookupd's `/lookup` and `/topics` (merged over every lookupd
//! given, as go-nsq and upstream's `clusterinfo` do) and nsqd's `/stats`.

use crate::ToolsError;
use nsq_protocol::api::Stats;
use nsq_protocol::lookup::{LookupResponse, TopicsResponse};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::time::Duration;

/// What go-nsq sends to ask lookupd for its V1 JSON.
pub const ACCEPT_V1: &str = "application/vnd.nsq; version=1.0";

/// An nsqd as lookupd announces it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NsqdNode {
    /// Address clients should connect to.
    pub broadcast_address: String,
    /// TCP port.
    pub tcp_port: u16,
    /// HTTP port.
    pub http_port: u16,
}

impl NsqdNode {
    /// `broadcast_address:tcp_port` (IPv6 in brackets).
    pub fn tcp_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.tcp_port)
    }

    /// `broadcast_address:http_port` (IPv6 in brackets).
    pub fn http_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.http_port)
    }
}

/// Go's `net.JoinHostPort`.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `host:port` becomes `http://host:port`; an address with a scheme is kept.
pub fn http_base(address: &str) -> String {
    let address = address.trim_end_matches('/');
    if address.starts_with("http://") || address.starts_with("https://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// An HTTP client for lookupd and nsqd.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// A client with upstream's default timeouts (2 s to connect, 5 s per request).
    pub fn new() -> Result<Self, ToolsError> {
        Self::with_timeouts(Duration::from_secs(2), Duration::from_secs(5))
    }

    /// A client with the given connect and request timeouts.
    pub fn with_timeouts(connect: Duration, request: Duration) -> Result<Self, ToolsError> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .build()
            .map_err(|source| ToolsError::Http {
                url: String::new(),
                source,
            })?;
        Ok(Self { client })
    }

    /// The nsqd nodes that have `topic`, from every lookupd in `lookupds` (merged, sorted).
    /// A lookupd that does not know the topic contributes nothing; fails only if every lookupd
    /// failed (the others are logged).
    pub async fn lookup(
        &self,
        lookupds: &[String],
        topic: &str,
    ) -> Result<Vec<NsqdNode>, ToolsError> {
        let mut nodes = BTreeSet::new();
        let mut errors = Vec::new();
        for lookupd in lookupds {
            let url = format!("{}/lookup", http_base(lookupd));
            match self
                .get_json::<LookupResponse>(&url, &[("topic", topic)])
                .await
            {
                Ok(response) => {
                    for producer in response.producers {
                        let (Ok(tcp_port), Ok(http_port)) = (
                            u16::try_from(producer.tcp_port),
                            u16::try_from(producer.http_port),
                        ) else {
                            continue;
                        };
                        nodes.insert(NsqdNode {
                            broadcast_address: producer.broadcast_address,
                            tcp_port,
                            http_port,
                        });
                    }
                }
                Err(ToolsError::Status { status: 404, .. }) => {}
                Err(error) => {
                    tracing::warn!("error querying nsqlookupd ({url}) - {error}");
                    errors.push(error.to_string());
                }
            }
        }
        if !lookupds.is_empty() && errors.len() == lookupds.len() {
            return Err(ToolsError::NoLookupd(errors.join("; ")));
        }
        Ok(nodes.into_iter().collect())
    }

    /// Every topic any lookupd in `lookupds` knows (merged, sorted); fails only if every lookupd
    /// failed.
    pub async fn topics(&self, lookupds: &[String]) -> Result<Vec<String>, ToolsError> {
        let mut topics = BTreeSet::new();
        let mut errors = Vec::new();
        for lookupd in lookupds {
            let url = format!("{}/topics", http_base(lookupd));
            match self.get_json::<TopicsResponse>(&url, &[]).await {
                Ok(response) => topics.extend(response.topics),
                Err(error) => {
                    tracing::warn!("error querying nsqlookupd ({url}) - {error}");
                    errors.push(error.to_string());
                }
            }
        }
        if !lookupds.is_empty() && errors.len() == lookupds.len() {
            return Err(ToolsError::NoLookupd(errors.join("; ")));
        }
        Ok(topics.into_iter().collect())
    }

    /// nsqd's `/stats?format=json` for one topic (and channel), without clients.
    pub async fn nsqd_stats(
        &self,
        nsqd_http_address: &str,
        topic: &str,
        channel: Option<&str>,
    ) -> Result<Stats, ToolsError> {
        let url = format!("{}/stats", http_base(nsqd_http_address));
        let mut query = vec![
            ("format", "json"),
            ("topic", topic),
            ("include_clients", "false"),
            ("include_mem", "false"),
        ];
        if let Some(channel) = channel {
            query.push(("channel", channel));
        }
        self.get_json(&url, &query).await
    }

    /// GET with go-nsq's `Accept` header; a 2xx body is parsed as `T` (a pre-1.0 `{"data": …}`
    /// envelope is unwrapped), anything else is [`ToolsError::Status`].
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ToolsError> {
        let http_error = |source| ToolsError::Http {
            url: url.to_owned(),
            source,
        };
        let response = self
            .client
            .get(url)
            .query(query)
            .header(reqwest::header::ACCEPT, ACCEPT_V1)
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(http_error)?;
        if !status.is_success() {
            return Err(ToolsError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            });
        }
        let json_error = |source| ToolsError::Json {
            url: url.to_owned(),
            source,
        };
        let mut value: serde_json::Value = serde_json::from_slice(&body).map_err(json_error)?;
        if value.get("status_code").is_some()
            && let Some(data) = value.get_mut("data")
        {
            value = data.take();
        }
        serde_json::from_value(value).map_err(json_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(http_base("127.0.0.1:4161"), "http://127.0.0.1:4161");
        assert_eq!(http_base("http://h:4161/"), "http://h:4161");
        assert_eq!(join_host_port("::1", 4150), "[::1]:4150");
        let node = NsqdNode {
            broadcast_address: "h".to_owned(),
            tcp_port: 1,
            http_port: 2,
        };
        assert_eq!(
            (node.tcp_address(), node.http_address()),
            ("h:1".to_owned(), "h:2".to_owned())
        );
    }
}
