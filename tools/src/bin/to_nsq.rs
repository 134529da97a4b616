//! `to_nsq`: publishes stdin to a topic, one message per line (or per `--delimiter`), like
//! upstream's.
//!
//! ```text
//! to_nsq --topic T --nsqd-tcp-address A [--nsqd-tcp-address B ...] [--delimiter '\n'] [--rate 0]
//! ```
//!
//! Every message goes to every nsqd given. Empty messages are skipped. Publishes are pipelined
//! per connection; at end of input (or on SIGINT/SIGTERM) the tool waits until every publish is
//! acknowledged, prints the count on stderr and exits 0. A failed publish exits 1.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use nsq_protocol::client::{PendingReply, Producer};
use nsq_protocol::{Command, IdentifyRequest, TopicName};
use nsq_tools::args::{parse_args, parse_go_bool};
use std::collections::VecDeque;
use std::io::BufRead;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Publishes awaiting their `OK`, per nsqd, before the next one waits for the oldest.
const PIPELINE: usize = 128;

/// to_nsq: publish lines from stdin to NSQ.
#[derive(Debug, Parser)]
#[command(
    name = "to_nsq",
    disable_version_flag = true,
    args_override_self = true
)]
struct Flags {
    /// Print the version and exit.
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", value_parser = parse_go_bool)]
    version: bool,
    /// NSQ topic to publish to.
    #[arg(long, default_value = "")]
    topic: String,
    /// Destination nsqd TCP address (may be given multiple times).
    #[arg(long = "nsqd-tcp-address")]
    nsqd_tcp_addresses: Vec<String>,
    /// Character to split input from stdin (one byte).
    #[arg(long, default_value = "\n", allow_hyphen_values = true)]
    delimiter: String,
    /// Throttle messages to n/second; 0 to disable.
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags: Flags = parse_args();
    if flags.version {
        println!("to_nsq v{}", nsq_tools::VERSION);
        return Ok(());
    }
    nsq_tools::init_logging("to_nsq");
    run(flags).await
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    if flags.topic.is_empty() {
        bail!("--topic required");
    }
    let &[delimiter] = flags.delimiter.as_bytes() else {
        bail!("--delimiter must be a single byte");
    };
    if flags.nsqd_tcp_addresses.is_empty() {
        bail!("--nsqd-tcp-address required");
    }
    let topic = TopicName::try_from(flags.topic.as_str())
        .with_context(|| format!("invalid --topic {:?}", flags.topic))?;
    let mut publishers = Vec::new();
    for address in &flags.nsqd_tcp_addresses {
        let identify = IdentifyRequest {
            user_agent: Some(nsq_tools::user_agent("to_nsq")),
            ..IdentifyRequest::default()
        };
        let producer = Producer::connect_with(address.as_str(), identify)
            .await
            .with_context(|| format!("failed to connect to nsqd {address}"))?;
        publishers.push(Publisher {
            address: address.clone(),
            producer,
            pending: VecDeque::new(),
        });
    }

    // stdin is read on its own thread; lines come over a bounded channel.
    let (line_sender, mut lines) = mpsc::channel::<Bytes>(1024);
    std::thread::spawn(move || read_lines(delimiter, &line_sender));

    let mut throttle = (flags.rate > 0).then(|| {
        tracing::info!("throttling messages rate to max:{}/second", flags.rate);
        Throttle::new(flags.rate)
    });
    let signal = nsq_tools::shutdown_signal();
    tokio::pin!(signal);
    let mut published: u64 = 0;
    loop {
        let line = tokio::select! {
            line = lines.recv() => line,
            name = &mut signal => {
                tracing::info!("received {name}, stopping");
                None
            }
        };
        let Some(line) = line else { break };
        if let Some(throttle) = &mut throttle {
            throttle.acquire().await;
        }
        for publisher in &mut publishers {
            publisher.publish(&topic, line.clone()).await?;
        }
        published += 1;
    }
    for publisher in &mut publishers {
        publisher.drain().await?;
    }
    eprintln!(
        "to_nsq: published {published} messages to topic {topic} on {} nsqd(s)",
        publishers.len()
    );
    Ok(())
}

/// Sends stdin split at `delimiter` (delimiter removed, empty parts skipped) until end of input,
/// a read error, or the receiver is gone.
fn read_lines(delimiter: u8, lines: &mpsc::Sender<Bytes>) {
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut line = Vec::new();
        match stdin.read_until(delimiter, &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) => {
                tracing::error!("failed to read stdin - {error}");
                return;
            }
        }
        if line.last() == Some(&delimiter) {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        if lines.blocking_send(Bytes::from(line)).is_err() {
            return;
        }
    }
}

struct Publisher {
    address: String,
    producer: Producer,
    pending: VecDeque<PendingReply>,
}

impl Publisher {
    async fn publish(&mut self, topic: &TopicName, body: Bytes) -> anyhow::Result<()> {
        if self.pending.len() >= PIPELINE
            && let Some(reply) = self.pending.pop_front()
        {
            self.check(reply).await?;
        }
        let command = Command::Pub {
            topic: topic.clone(),
            body,
        };
        let reply = self
            .producer
            .send(command)
            .await
            .with_context(|| format!("failed to publish to nsqd {}", self.address))?;
        self.pending.push_back(reply);
        Ok(())
    }

    async fn drain(&mut self) -> anyhow::Result<()> {
        while let Some(reply) = self.pending.pop_front() {
            self.check(reply).await?;
        }
        Ok(())
    }

    async fn check(&self, reply: PendingReply) -> anyhow::Result<()> {
        let data = reply
            .await
            .with_context(|| format!("failed to publish to nsqd {}", self.address))?;
        if data.as_ref() != b"OK" {
            bail!(
                "unexpected reply from nsqd {}: {:?}",
                self.address,
                String::from_utf8_lossy(&data)
            );
        }
        Ok(())
    }
}

/// Upstream's throttle: one message per `1/rate` s, with up to one second of unused capacity
/// saved up (starting with one message).
struct Throttle {
    rate: f64,
    balance: f64,
    last: Instant,
}

impl Throttle {
    fn new(rate: u64) -> Self {
        Self {
            rate: rate as f64,
            balance: 1.0,
            last: Instant::now(),
        }
    }

    async fn acquire(&mut self) {
        loop {
            let now = Instant::now();
            let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
            self.balance = (self.balance + earned).min(self.rate);
            self.last = now;
            if self.balance >= 1.0 {
                self.balance -= 1.0;
                return;
            }
            let wait = (1.0 - self.balance) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}
