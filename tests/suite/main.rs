//! The black-box conformance suite: every test starts the real `nsqd` binary on port 0 (see the
//! `nsq_tests` harness) and checks one item of `shared/spec/README.md`'s checklist, named after
//! its number (`a03_…` is item 3 of section A). Byte-exact expectations come from the spec and
//! from upstream's captured exchanges in `shared/fixtures/tcp` (replayed in `fixtures`).
//!
//! Other parts of the contract are tested beside their code: TLS, compression and AUTH in
//! `nsqd/tests/tls_compression_auth.rs`, the HTTP API in `nsqd/tests/http_api.rs`, lookupd in
//! `lookupd/tests/`, nsqadmin (with a real browser) in `admin-ui/tests/`, the CLI tools in
//! `tools/tests/`. Disk spill and restarts are in `durability` here.

mod bad_input;
mod cli;
mod crash;
mod delivery;
mod durability;
mod fin_req_touch;
mod fixtures;
mod framing;
mod heartbeats;
mod identify;
mod lookup;
mod names;
mod peers;
mod publish;
mod pynsq;
mod scenarios;

use nsq_tests::NsqdProcess;
use std::time::Duration;

/// Publishes `bodies` to `topic` on a fresh connection (one MPUB).
async fn publish_all<B: AsRef<[u8]>>(nsqd: &NsqdProcess, topic: &str, bodies: &[B]) {
    let mut producer = nsqd.connect().await;
    producer.mpub(topic, bodies).await;
}

/// Asserts that nsqd still works end to end: a fresh producer publishes to a fresh topic and a
/// fresh consumer receives and finishes the message.
async fn assert_healthy(nsqd: &NsqdProcess, tag: &str) {
    let topic = format!("health_{tag}");
    let mut consumer = nsq_tests::RawConn::consumer(nsqd.tcp_addr, &topic, "c", "", 1).await;
    let mut producer = nsqd.connect().await;
    producer.publish(&topic, tag.as_bytes()).await;
    let message = consumer.message().await;
    assert_eq!(&message.body[..], tag.as_bytes());
    consumer.fin(&message).await;
    nsqd.wait_channel(&topic, "c", "the health message finished", |channel| {
        channel.in_flight_count == 0 && channel.depth == 0
    })
    .await;
}

/// Milliseconds as a Duration.
const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}
