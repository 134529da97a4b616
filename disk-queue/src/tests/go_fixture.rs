//! The upstream data dir in `shared/fixtures/upstream-datadir` (written by nsqd v1.3.0) read through
//! [`crate::go`], checked against `upstream-datadir.expected.json`. Always on a copy: the fixture is
//! read-only and must stay byte-identical.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::go::open_go_queue;

fn fixtures() -> PathBuf {
    if let Ok(dir) = std::env::var("NSQ_FIXTURES") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
    assert!(
        dir.join("upstream-datadir").is_dir(),
        "fixtures not found at {} (set NSQ_FIXTURES to shared/fixtures)",
        dir.display()
    );
    dir
}

fn copy_of_datadir() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixtures().join("upstream-datadir")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    copy
}

/// One expected message as the payload bytes upstream stored, with its file and offset.
struct Expected {
    file: String,
    offset: u64,
    payload: Vec<u8>,
}

fn expected_payload(message: &Value) -> Expected {
    let mut payload = message["timestamp_ns"]
        .as_u64()
        .unwrap()
        .to_be_bytes()
        .to_vec();
    let attempts = u16::try_from(message["attempts_on_disk"].as_u64().unwrap()).unwrap();
    payload.extend_from_slice(&attempts.to_be_bytes());
    let id = message["id"].as_str().unwrap();
    assert_eq!(id.len(), 16);
    payload.extend_from_slice(id.as_bytes());
    let body = match &message["body"] {
        Value::String(text) => text.as_bytes().to_vec(),
        _ => base64_decode(message["body_base64"].as_str().unwrap()),
    };
    assert_eq!(body.len() as u64, message["body_len"].as_u64().unwrap());
    payload.extend_from_slice(&body);
    Expected {
        file: message["file"].as_str().unwrap().to_owned(),
        offset: message["offset"].as_u64().unwrap(),
        payload,
    }
}

/// The messages stored in `queue`'s own files, in file order.
fn expected_for(expected: &Value, queue: &str) -> (u64, Vec<Expected>) {
    let (topic, channel) = match queue.split_once(':') {
        Some((topic, channel)) => (topic, Some(channel)),
        None => (queue, None),
    };
    let topic = expected["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|candidate| candidate["name"] == topic)
        .unwrap();
    let (queue_info, messages) = match channel {
        None => (&topic["topic_queue"], &topic["topic_queue"]["messages"]),
        Some(channel) => {
            let channel = topic["channels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|candidate| candidate["name"] == channel)
                .unwrap();
            (&channel["channel_queue"], &channel["messages"])
        }
    };
    let prefix = format!("{queue}.diskqueue.");
    let mut list: Vec<Expected> = messages
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| {
            message["file"]
                .as_str()
                .is_some_and(|file| file.starts_with(&prefix))
        })
        .map(expected_payload)
        .collect();
    list.sort_by(|a, b| (&a.file, a.offset).cmp(&(&b.file, b.offset)));
    (queue_info["meta"]["depth"].as_u64().unwrap(), list)
}

#[test]
fn reads_every_upstream_queue_exactly() {
    let fixtures = fixtures();
    let expected: Value =
        serde_json::from_slice(&fs::read(fixtures.join("upstream-datadir.expected.json")).unwrap())
            .unwrap();
    let copy = copy_of_datadir();
    for (queue, count) in [
        ("orders:billing", 178),
        ("orders:audit", 201),
        ("events", 15),
        ("events:all", 15),
        ("orders", 0),
    ] {
        let (depth, messages) = expected_for(&expected, queue);
        assert_eq!(messages.len(), count, "{queue}: expected.json");
        let mut reader = open_go_queue(copy.path(), queue).unwrap().unwrap();
        assert_eq!(reader.depth(), depth, "{queue}");
        assert_eq!(reader.depth(), count as u64, "{queue}");
        for (index, message) in messages.iter().enumerate() {
            let payload = reader.read_next().unwrap().unwrap_or_else(|| {
                panic!("{queue}: ended after {index} records, expected {count}")
            });
            assert_eq!(
                &payload[..],
                &message.payload[..],
                "{queue}: record {index} ({} @ {})",
                message.file,
                message.offset
            );
        }
        assert_eq!(reader.read_next().unwrap(), None, "{queue}: extra records");
        assert_eq!(reader.corrupt_files(), 0, "{queue}");
        reader.remove_files().unwrap();
        assert!(open_go_queue(copy.path(), queue).unwrap().is_none());
    }
    let left: Vec<String> = fs::read_dir(copy.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["nsqd.dat"]);
    assert!(open_go_queue(copy.path(), "missing").unwrap().is_none());
}

/// Standard alphabet, with or without padding; enough for the fixture's binary bodies.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |byte: u8| match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {byte}"),
    };
    let mut out = Vec::new();
    let mut accumulator = 0u32;
    let mut bits = 0;
    for byte in text.bytes().filter(|&byte| byte != b'=') {
        accumulator = (accumulator << 6) | u32::from(value(byte));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((accumulator >> bits) as u8);
        }
    }
    out
}

#[test]
fn base64_decoder_works() {
    assert_eq!(base64_decode("AP/+"), vec![0x00, 0xff, 0xfe]);
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
}
