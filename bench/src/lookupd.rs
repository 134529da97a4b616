//! `nsq-bench lookupd`: how many `GET /lookup` requests per second nsqlookupd answers.
//!
//! 1. Registers `--nodes` fake nsqds over the V1 TCP protocol: magic, IDENTIFY with a
//!    [`PeerInfo`], then `REGISTER <topic>` and `REGISTER <topic> <channel>` for each of the
//!    `--topics` topics, pipelined, every answer checked. The connections stay open (and PING
//!    every 15 s) for the whole run, as real nsqds would.
//! 2. Checks that `/lookup` of one topic lists every node.
//! 3. Opens `--connections` keep-alive HTTP/1.1 connections (a minimal client over a
//!    `TcpStream`: one request in flight per connection) and, for `--duration`, asks each for
//!    `/lookup?topic=<a random registered topic>`; every answer must be a 200.
//! 4. Prints requests/s and latency percentiles (HdrHistogram, microseconds).

use anyhow::{Context as _, bail, ensure};
use bytes::{Buf, Bytes, BytesMut};
use clap::Args;
use hdrhistogram::Histogram;
use nsq_protocol::lookup::{
    LookupClientCodec, LookupCommand, LookupResponse, LookupdInfo, MAGIC_V1, OK, PeerInfo,
    encode_command,
};
use nsq_protocol::{ChannelName, TopicName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::codec::Decoder;

/// How often each fake node PINGs lookupd (nsqd's interval).
const PING_INTERVAL: Duration = Duration::from_secs(15);

#[derive(Debug, Args)]
pub(crate) struct LookupdArgs {
    /// nsqlookupd TCP address (where the fake nodes register).
    #[arg(long, default_value = "127.0.0.1:4160")]
    lookupd_tcp_address: String,
    /// nsqlookupd HTTP address (what is measured).
    #[arg(long, default_value = "127.0.0.1:4161")]
    lookupd_http_address: String,
    /// Topics each node registers (every node registers the same ones).
    #[arg(long, default_value_t = 1000)]
    topics: usize,
    /// Fake nsqd nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// How long to send requests (Go duration syntax or humantime).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// Concurrent keep-alive HTTP connections, one request in flight each.
    #[arg(long, default_value_t = 8)]
    connections: usize,
}

pub(crate) async fn run(args: LookupdArgs) -> anyhow::Result<()> {
    ensure!(
        args.topics > 0 && args.nodes > 0 && args.connections > 0,
        "--topics, --nodes and --connections must be at least 1"
    );
    let topics: Vec<TopicName> = (0..args.topics)
        .map(|n| TopicName::try_from(format!("bench_topic_{n:05}").as_str()))
        .collect::<Result<_, _>>()?;
    let channel = ChannelName::try_from("bench_channel")?;

    let mut nodes = JoinSet::new();
    let registration_start = Instant::now();
    for index in 0..args.nodes {
        let stream = register_node(&args.lookupd_tcp_address, index, &topics, &channel)
            .await
            .with_context(|| format!("registering node {index}"))?;
        nodes.spawn(keep_alive(stream));
    }
    println!(
        "lookupd: registered {} nodes x {} topics (+1 channel each) in {:.3}s",
        args.nodes,
        args.topics,
        registration_start.elapsed().as_secs_f64()
    );

    let host = args.lookupd_http_address.clone();
    let mut check = HttpConnection::connect(&host).await?;
    let (status, body) = check
        .get(&lookup_request(&host, topics[0].as_str()))
        .await?;
    ensure!(status == 200, "GET /lookup answered {status}");
    let lookup: LookupResponse = serde_json::from_slice(&body).context("/lookup JSON")?;
    ensure!(
        lookup.producers.len() == args.nodes,
        "/lookup lists {} producers instead of {}",
        lookup.producers.len(),
        args.nodes
    );
    drop(check);

    let requests: Arc<Vec<Bytes>> = Arc::new(
        topics
            .iter()
            .map(|topic| lookup_request(&host, topic.as_str()))
            .collect(),
    );
    println!(
        "lookupd: {} connection(s) asking /lookup?topic=<random of {}> for {:?}",
        args.connections, args.topics, args.duration
    );
    let mut clients = JoinSet::new();
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        connections.push(HttpConnection::connect(&host).await?);
    }
    let start = Instant::now();
    let deadline = start + args.duration;
    for (index, connection) in connections.into_iter().enumerate() {
        let seed = 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(index as u64 + 1);
        clients.spawn(hammer(connection, Arc::clone(&requests), deadline, seed));
    }
    let mut histogram = new_histogram()?;
    let mut total = 0u64;
    let mut failures = 0u64;
    while let Some(joined) = clients.join_next().await {
        let outcome = joined.context("client task")??;
        histogram.add(&outcome.latencies_us)?;
        total += outcome.requests;
        failures += outcome.failures;
    }
    let secs = start.elapsed().as_secs_f64();
    nodes.abort_all();

    let per_sec = total as f64 / secs;
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "lookupd: {total} requests in {secs:.3}s - {per_sec:.1} requests/s - latency p50 {:.3}ms \
         p90 {:.3}ms p99 {:.3}ms p99.9 {:.3}ms max {:.3}ms - {failures} non-200",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        histogram.max() as f64 / 1000.0
    );
    println!(
        "RESULT lookupd requests={total} secs={secs:.3} requests_per_sec={per_sec:.1} \
         p50_us={} p90_us={} p99_us={} p999_us={} max_us={} non_200={failures}",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.9),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max()
    );
    if failures > 0 {
        bail!("{failures} requests were not answered with 200");
    }
    Ok(())
}

/// Connects one fake node, IDENTIFYs and registers every topic and its channel.
async fn register_node(
    address: &str,
    index: usize,
    topics: &[TopicName],
    channel: &ChannelName,
) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true)?;
    let port_base = 20_000 + 2 * i64::try_from(index)?;
    let info = PeerInfo {
        broadcast_address: format!("bench-node-{index}"),
        hostname: format!("bench-node-{index}"),
        http_port: port_base + 1,
        tcp_port: port_base,
        version: nsq_protocol::NSQ_VERSION.to_owned(),
        ..PeerInfo::default()
    };
    let mut out = BytesMut::new();
    out.extend_from_slice(MAGIC_V1);
    encode_command(&LookupCommand::Identify(info), &mut out)?;
    for topic in topics {
        for channel in [None, Some(channel.clone())] {
            let register = LookupCommand::Register {
                topic: topic.clone(),
                channel,
            };
            encode_command(&register, &mut out)?;
        }
    }
    stream.write_all(&out).await?;

    let mut codec = LookupClientCodec::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let expected = 1 + 2 * topics.len();
    let mut answered = 0;
    while answered < expected {
        let Some(payload) = codec.decode(&mut buf)? else {
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("lookupd closed the connection after {answered} answers");
            }
            continue;
        };
        if answered == 0 {
            ensure!(
                LookupdInfo::from_json(&payload).is_some(),
                "IDENTIFY answered {:?}",
                String::from_utf8_lossy(&payload)
            );
        } else {
            ensure!(
                payload.as_ref() == OK,
                "REGISTER answered {:?}",
                String::from_utf8_lossy(&payload)
            );
        }
        answered += 1;
    }
    Ok(stream)
}

/// PINGs like an nsqd until aborted, so lookupd keeps the node active.
async fn keep_alive(mut stream: TcpStream) -> anyhow::Result<()> {
    let mut codec = LookupClientCodec::default();
    let mut buf = BytesMut::new();
    loop {
        tokio::time::sleep(PING_INTERVAL).await;
        stream.write_all(b"PING\n").await?;
        loop {
            if let Some(payload) = codec.decode(&mut buf)? {
                ensure!(payload.as_ref() == OK, "PING answered {payload:?}");
                break;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("lookupd closed a node connection");
            }
        }
    }
}

fn lookup_request(host: &str, topic: &str) -> Bytes {
    Bytes::from(format!(
        "GET /lookup?topic={topic} HTTP/1.1\r\nHost: {host}\r\n\
         Accept: application/vnd.nsq; version=1.0\r\n\r\n"
    ))
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// What one client connection did.
struct Outcome {
    requests: u64,
    failures: u64,
    latencies_us: Histogram<u64>,
}

/// Sends requests back to back until `deadline`.
async fn hammer(
    mut connection: HttpConnection,
    requests: Arc<Vec<Bytes>>,
    deadline: Instant,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome {
        requests: 0,
        failures: 0,
        latencies_us: new_histogram()?,
    };
    let mut random = seed | 1;
    while Instant::now() < deadline {
        // xorshift64: cheap, and good enough to spread requests over the topics.
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let request = &requests[(random % requests.len() as u64) as usize];
        let sent = Instant::now();
        let (status, _) = connection.get(request).await?;
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        outcome.latencies_us.saturating_record(micros.max(1));
        outcome.requests += 1;
        if status != 200 {
            outcome.failures += 1;
        }
    }
    Ok(outcome)
}

/// A keep-alive HTTP/1.1 connection with one request in flight; responses must carry
/// `Content-Length`.
struct HttpConnection {
    stream: TcpStream,
    buf: BytesMut,
}

impl HttpConnection {
    async fn connect(address: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Sends a whole request and returns the response's status and body.
    async fn get(&mut self, request: &[u8]) -> anyhow::Result<(u16, Bytes)> {
        self.stream.write_all(request).await?;
        let (head_len, status, body_len) = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            self.read_more().await?;
        };
        while self.buf.len() < head_len + body_len {
            self.read_more().await?;
        }
        self.buf.advance(head_len);
        Ok((status, self.buf.split_to(body_len).freeze()))
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

/// `Some((head length, status, content length))` once the buffer holds a whole response head.
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<(usize, u16, usize)>> {
    let Some(end) = buf.windows(4).position(|window| window == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.trim().parse::<usize>()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not supported by this client");
        }
    }
    let content_length = content_length.context("response without Content-Length")?;
    Ok(Some((end + 4, status, content_length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
        let head = b"HTTP/1.1 404 Not Found\r\ncontent-length: 27\r\nX: y\r\n\r\n{\"message\"";
        assert_eq!(parse_head(head).unwrap(), Some((52, 404, 27)));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }
}
