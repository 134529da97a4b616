//! Codec micro-benchmarks: decoding the commands a busy nsqd sees most (PUB, MPUB, FIN) and
//! encoding the message frames it sends.

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use nsq_protocol::command::encode_command;
use nsq_protocol::frame::write_message_frame;
use nsq_protocol::{
    Command, CommandCodec, ConnectionState, FrameCodec, Message, MessageId, TopicName,
};
use std::hint::black_box;
use tokio_util::codec::Decoder;

const BODY_SIZE: usize = 200;
const BATCH: usize = 200;
const LINES: usize = 1000;

fn topic() -> TopicName {
    TopicName::try_from("bench_topic").expect("valid topic")
}

fn encoded(commands: impl IntoIterator<Item = Command>) -> Bytes {
    let mut wire = BytesMut::new();
    for command in commands {
        encode_command(&command, &mut wire);
    }
    wire.freeze()
}

/// Decodes every command in `wire`; returns how many there were.
fn decode_all(codec: &mut CommandCodec, mut buf: BytesMut) -> usize {
    let mut count = 0;
    while let Some(command) = codec.decode(&mut buf).expect("valid input") {
        black_box(command);
        count += 1;
    }
    count
}

fn bench_decode(c: &mut Criterion) {
    let body = Bytes::from(vec![b'a'; BODY_SIZE]);
    let mut group = c.benchmark_group("decode");

    let pubs = encoded((0..LINES).map(|_| Command::Pub {
        topic: topic(),
        body: body.clone(),
    }));
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("pub_200B_x1000", |b| {
        let mut codec = CommandCodec::default();
        b.iter_batched(
            || BytesMut::from(&pubs[..]),
            |buf| decode_all(&mut codec, buf),
            BatchSize::SmallInput,
        );
    });

    let mpub = encoded([Command::Mpub {
        topic: topic(),
        bodies: vec![body; BATCH],
    }]);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("mpub_200x200B", |b| {
        let mut codec = CommandCodec::default();
        b.iter_batched(
            || BytesMut::from(&mpub[..]),
            |buf| decode_all(&mut codec, buf),
            BatchSize::SmallInput,
        );
    });

    let fins = encoded((0..LINES as u64).map(|n| Command::Fin(MessageId::from_u64(n))));
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("fin_x1000", |b| {
        let mut codec = CommandCodec {
            state: ConnectionState::Subscribed,
            ..CommandCodec::default()
        };
        b.iter_batched(
            || BytesMut::from(&fins[..]),
            |buf| decode_all(&mut codec, buf),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn messages() -> Vec<Message> {
    let body = Bytes::from(vec![b'a'; BODY_SIZE]);
    (0..LINES as u64)
        .map(|n| Message {
            id: MessageId::from_u64(n),
            timestamp: 1_700_000_000_000_000_000,
            attempts: 1,
            body: body.clone(),
        })
        .collect()
}

fn bench_frames(c: &mut Criterion) {
    let messages = messages();
    let mut group = c.benchmark_group("frames");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("encode_message_200B_x1000", |b| {
        let mut out = BytesMut::with_capacity(LINES * (8 + 26 + BODY_SIZE));
        b.iter(|| {
            out.clear();
            for message in &messages {
                write_message_frame(&mut out, message);
            }
            black_box(out.len())
        });
    });

    let mut wire = BytesMut::new();
    for message in &messages {
        write_message_frame(&mut wire, message);
    }
    let wire = wire.freeze();
    group.bench_function("decode_message_200B_x1000", |b| {
        let mut codec = FrameCodec::default();
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                while let Some(frame) = codec.decode(&mut buf).expect("valid frames") {
                    black_box(frame);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_frames);
criterion_main!(benches);
