//! Hostile or broken peers: after each, lookupd still answers and a well-behaved nsqd stays
//! registered.

use crate::harness::{Lookupd, Peer, identify_body, identify_command};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

/// A lookupd with one registered, well-behaved nsqd that must survive everything.
struct Fixture {
    lookupd: Lookupd,
    sentinel: Peer,
}

impl Fixture {
    fn new() -> Self {
        let lookupd = Lookupd::start(&[]);
        let mut sentinel = Peer::nsqd(&lookupd, 4150, 4151);
        assert_eq!(sentinel.command("REGISTER sentinel c"), "OK");
        Self { lookupd, sentinel }
    }

    fn assert_healthy(&mut self, after: &str) {
        self.lookupd.assert_alive();
        assert_eq!(
            self.lookupd.lookup_producers("sentinel").unwrap(),
            [self.sentinel.local_addr()],
            "after {after}"
        );
        self.sentinel.assert_open();
    }

    /// Sends `bytes` on a fresh connection and expects `answer` (if any) and then a close.
    fn fatal(&mut self, name: &str, bytes: &[u8], answer: Option<&[u8]>) {
        let mut peer = Peer::connect(self.lookupd.tcp);
        peer.send(bytes);
        if let Some(answer) = answer {
            assert_eq!(
                String::from_utf8_lossy(&peer.read_response()),
                String::from_utf8_lossy(answer),
                "{name}"
            );
        }
        peer.expect_closed();
        self.assert_healthy(name);
    }
}

fn with_magic(rest: &[u8]) -> Vec<u8> {
    let mut bytes = b"  V1".to_vec();
    bytes.extend_from_slice(rest);
    bytes
}

#[test]
fn wrong_magic() {
    let mut fixture = Fixture::new();
    for magic in [
        &b"  V2"[..],
        b"V1  ",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x00\x00\x00\x00",
    ] {
        let mut peer = Peer::connect(fixture.lookupd.tcp);
        peer.send(magic);
        assert_eq!(peer.read_response(), b"E_BAD_PROTOCOL");
        // The rest of an HTTP request may still be unread, so the close can be a reset.
        peer.expect_closed();
        fixture.assert_healthy("wrong magic");
    }
    // A short magic and a close: nothing is answered.
    let mut peer = Peer::connect(fixture.lookupd.tcp);
    peer.send(b"  V");
    peer.stream.shutdown(Shutdown::Write).unwrap();
    peer.expect_closed();
    fixture.assert_healthy("short magic");
}

#[test]
fn bad_identify_sizes_and_bodies() {
    let mut fixture = Fixture::new();
    let size_error: &[u8] = b"E_BAD_BODY IDENTIFY failed to read body size";
    for (name, size) in [
        ("negative size", -1i32),
        ("i32::MIN", i32::MIN),
        ("huge size", i32::MAX),
        ("just over 5 MiB", 5 * 1024 * 1024 + 1),
    ] {
        let mut bytes = with_magic(b"IDENTIFY\n");
        bytes.extend_from_slice(&size.to_be_bytes());
        fixture.fatal(name, &bytes, Some(size_error));
    }
    fixture.fatal(
        "zero size",
        &with_magic(b"IDENTIFY\n\x00\x00\x00\x00"),
        Some(b"E_BAD_BODY IDENTIFY failed to decode JSON body"),
    );
    fixture.fatal(
        "binary body",
        &with_magic(b"IDENTIFY\n\x00\x00\x00\x04\xff\x00\xfe\x01"),
        Some(b"E_BAD_BODY IDENTIFY failed to decode JSON body"),
    );
    fixture.fatal(
        "wrong types",
        &with_magic(&identify_command(
            r#"{"broadcast_address":["x"],"tcp_port":1,"http_port":1,"version":"v"}"#,
        )),
        Some(b"E_BAD_BODY IDENTIFY failed to decode JSON body"),
    );

    // A body that is announced but never completes, then a half-close: upstream's short read.
    let mut peer = Peer::connect(fixture.lookupd.tcp);
    peer.send(&with_magic(b"IDENTIFY\n\x00\x00\x00\x40{\"broad"));
    peer.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        peer.read_response(),
        b"E_BAD_BODY IDENTIFY failed to read body"
    );
    peer.expect_closed();
    fixture.assert_healthy("truncated body");

    let mut peer = Peer::connect(fixture.lookupd.tcp);
    peer.send(&with_magic(b"IDENTIFY\n\x00\x00"));
    peer.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(peer.read_response(), size_error);
    peer.expect_closed();
    fixture.assert_healthy("truncated size");

    // A large but acceptable body (1 MiB of padding) works.
    let padding = " ".repeat(1024 * 1024);
    let body = format!("{}{padding}", identify_body(6150, 6151));
    let mut peer = Peer::connect_v1(fixture.lookupd.tcp);
    let reply = peer.identify(&body);
    assert!(
        reply.starts_with(b"{"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    peer.assert_open();
    fixture.assert_healthy("large body");
}

#[test]
fn garbage_bytes() {
    let mut fixture = Fixture::new();
    // Binary garbage with no newline: the line limit closes the connection without an answer.
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8)
        .filter(|byte| *byte != b'\n')
        .collect();
    let mut peer = Peer::connect(fixture.lookupd.tcp);
    peer.send(b"  V1");
    // The server may close (and reset) before taking all of it.
    let _ = peer.stream.write_all(&garbage);
    let mut rest = Vec::new();
    let _ = peer.stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    fixture.assert_healthy("long garbage line");

    fixture.fatal(
        "garbage line",
        &with_magic(b"\x01\x02\xff\xfe\n"),
        Some("E_INVALID invalid command \u{1}\u{2}\u{fffd}\u{fffd}".as_bytes()),
    );
    fixture.fatal(
        "empty line",
        &with_magic(b"\n"),
        Some(b"E_INVALID invalid command "),
    );
    fixture.fatal(
        "lower-case command",
        &with_magic(b"register t\n"),
        Some(b"E_INVALID invalid command register"),
    );

    // An identified peer that goes bad loses its registrations; the sentinel keeps its own.
    let mut rogue = Peer::nsqd(&fixture.lookupd, 7150, 7151);
    assert_eq!(rogue.command("REGISTER sentinel c"), "OK");
    assert_eq!(
        fixture.lookupd.lookup_producers("sentinel").unwrap().len(),
        2
    );
    assert_eq!(
        rogue.command("REGISTER ../etc"),
        "E_BAD_TOPIC REGISTER topic name '../etc' is not valid"
    );
    rogue.expect_closed();
    crate::harness::wait_until("the rogue peer to be dropped", || {
        fixture.lookupd.lookup_producers("sentinel").unwrap().len() == 1
    });
    fixture.assert_healthy("rogue peer");
}

#[test]
fn two_hundred_connections_dropped_at_once() {
    let mut fixture = Fixture::new();
    let mut connections = Vec::new();
    for index in 0..200 {
        let mut stream = TcpStream::connect(fixture.lookupd.tcp).unwrap();
        match index % 4 {
            0 => {}
            1 => stream.write_all(b"  V1").unwrap(),
            2 => stream
                .write_all(&with_magic(
                    &identify_command(&identify_body(8000, 8001))[..20],
                ))
                .unwrap(),
            _ => {
                let mut bytes = with_magic(&identify_command(&identify_body(9000, 9001)));
                bytes.extend_from_slice(b"REGISTER sentinel c\nREGISTER crowd\n");
                stream.write_all(&bytes).unwrap();
            }
        }
        connections.push(stream);
    }
    // Let the fully identified ones finish registering before they all vanish.
    let mut identified = 0;
    for stream in connections.iter_mut().skip(3).step_by(4) {
        stream
            .set_read_timeout(Some(crate::harness::TIMEOUT))
            .unwrap();
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).unwrap();
        let mut reply = vec![0u8; u32::from_be_bytes(size) as usize];
        stream.read_exact(&mut reply).unwrap();
        assert!(reply.starts_with(b"{"));
        let mut two_oks = [0u8; 12];
        stream.read_exact(&mut two_oks).unwrap();
        assert_eq!(&two_oks, b"\x00\x00\x00\x02OK\x00\x00\x00\x02OK");
        identified += 1;
    }
    assert_eq!(identified, 50);
    assert_eq!(fixture.lookupd.node_addresses().len(), 51);
    assert_eq!(fixture.lookupd.lookup_producers("crowd").unwrap().len(), 50);
    drop(connections);
    crate::harness::wait_until("the 50 identified connections to be dropped", || {
        fixture.lookupd.node_addresses().len() == 1
    });
    assert_eq!(
        fixture.lookupd.lookup_producers("crowd").unwrap(),
        Vec::<String>::new()
    );
    fixture.assert_healthy("200 dropped connections");
}
