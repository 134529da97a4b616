//! Decoder tests for [`CommandCodec`] and [`FrameCodec`].
//!
//! Every case goes through [`check`]: the input is decoded whole, and (for inputs up to a few KiB)
//! also fed one byte at a time, which must give `Ok(None)` until the decoder has seen enough to
//! produce the same result. Expected error texts are the exact error-frame data of
//! `shared/spec/tcp-protocol.md` §6. A replay of the captured upstream fixtures and proptests
//! (round trips, no panics on arbitrary bytes) follow.

use bytes::{BufMut, Bytes, BytesMut};
use nsq_protocol::command::{MAX_LINE_LENGTH, encode_command};
use nsq_protocol::{
    ChannelName, Command, CommandCodec, ConnectionState, Frame, FrameCodec, IdentifyPolicy,
    IdentifyRequest, Limits, Message, MessageId, ProtocolError, TopicName,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::path::Path;
use tokio_util::codec::{Decoder, Encoder};

/// What decoding an input must produce.
#[derive(Debug)]
enum Expect {
    /// Exactly these commands, consuming the whole input.
    Commands(Vec<Command>),
    /// An error frame with exactly this data.
    Error(&'static str),
    /// [`ProtocolError::LineTooLong`].
    LineTooLong,
    /// Not enough input yet: `Ok(None)`, nothing consumed.
    Incomplete,
}

fn cmd(command: Command) -> Expect {
    Expect::Commands(vec![command])
}

/// Inputs longer than this are only decoded whole (byte-by-byte feeding is quadratic).
const MAX_INCREMENTAL_LEN: usize = 4096;

/// The one decode helper: decodes `input` with a codec built by `setup` and compares with `expected`.
fn check(setup: Setup, input: impl AsRef<[u8]>, expected: Expect) {
    let input = input.as_ref();
    let outcome = decode_all(&mut setup.codec(), input);
    assert_outcome(&outcome, &expected, input);
    if input.len() <= MAX_INCREMENTAL_LEN {
        check_incremental(setup, input, &expected);
    }
}

/// Decoder configurations used by the cases.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// Default limits, state init.
    Init,
    /// Default limits, state subscribed.
    Subscribed,
    /// Default limits, state closing.
    Closing,
    /// The server requires TLS and the connection has not upgraded.
    TlsRequired,
    /// IDENTIFY disabled heartbeats.
    NoHeartbeats,
    /// The limits of the captured fixtures: `--max-msg-size=1024 --max-body-size=4096`.
    SmallLimits,
}

impl Setup {
    fn codec(self) -> CommandCodec {
        let mut codec = CommandCodec::default();
        match self {
            Setup::Init => {}
            Setup::Subscribed => codec.state = ConnectionState::Subscribed,
            Setup::Closing => codec.state = ConnectionState::Closing,
            Setup::TlsRequired => codec.tls_required = true,
            Setup::NoHeartbeats => codec.heartbeats_disabled = true,
            Setup::SmallLimits => codec.limits = fixture_limits(),
        }
        codec
    }
}

fn fixture_limits() -> Limits {
    Limits {
        max_msg_size: 1024,
        max_body_size: 4096,
        ..Limits::default()
    }
}

#[derive(Debug)]
enum Outcome {
    Commands(Vec<Command>, usize),
    Error(Vec<Command>, ProtocolError),
}

/// Decodes commands until the decoder wants more input or fails.
fn decode_all(codec: &mut CommandCodec, input: &[u8]) -> Outcome {
    let mut buf = BytesMut::from(input);
    let mut commands = Vec::new();
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(command)) => commands.push(command),
            Ok(None) => return Outcome::Commands(commands, buf.len()),
            Err(error) => return Outcome::Error(commands, error),
        }
    }
}

fn assert_outcome(outcome: &Outcome, expected: &Expect, input: &[u8]) {
    let shown = String::from_utf8_lossy(&input[..input.len().min(80)]);
    match (outcome, expected) {
        (Outcome::Commands(commands, 0), Expect::Commands(want)) => {
            assert_eq!(commands, want, "input {shown:?}");
        }
        (Outcome::Commands(commands, left), Expect::Incomplete) => {
            assert!(commands.is_empty(), "input {shown:?}: decoded {commands:?}");
            assert_eq!(*left, input.len(), "input {shown:?}: consumed bytes");
        }
        (Outcome::Error(commands, ProtocolError::Client(error)), Expect::Error(want)) => {
            assert!(commands.is_empty(), "input {shown:?}: decoded {commands:?}");
            assert_eq!(error.to_frame_data(), *want, "input {shown:?}");
        }
        (Outcome::Error(commands, ProtocolError::LineTooLong { max }), Expect::LineTooLong) => {
            assert!(commands.is_empty(), "input {shown:?}: decoded {commands:?}");
            assert_eq!(*max, MAX_LINE_LENGTH);
        }
        (outcome, expected) => panic!("input {shown:?}: got {outcome:?}, want {expected:?}"),
    }
}

/// Feeds `input` one byte at a time: `Ok(None)` (nothing consumed) until the expected result.
fn check_incremental(setup: Setup, input: &[u8], expected: &Expect) {
    let mut codec = setup.codec();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for (index, &byte) in input.iter().enumerate() {
        buf.put_u8(byte);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(command)) => commands.push(command),
                Ok(None) => break,
                Err(error) => {
                    // An error may come before the whole input is seen (e.g. a body size check),
                    // but it must be the expected one.
                    assert_outcome(&Outcome::Error(commands, error), expected, input);
                    return;
                }
            }
        }
        if let Expect::Commands(want) = expected
            && index + 1 < input.len()
        {
            assert!(
                commands.len() < want.len(),
                "the last command completed early"
            );
        }
    }
    assert_outcome(&Outcome::Commands(commands, buf.len()), expected, input);
}

/// A command line followed by a size-prefixed body.
fn with_body(line: &str, body: &[u8]) -> Vec<u8> {
    let mut out = line.as_bytes().to_vec();
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A command line followed by a raw 4-byte size (which may lie) and then `rest`.
fn with_size(line: &str, size: i32, rest: &[u8]) -> Vec<u8> {
    let mut out = line.as_bytes().to_vec();
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

/// An MPUB body: count, then each message size-prefixed (without the outer body size).
fn mpub_payload(count: i32, messages: &[&[u8]]) -> Vec<u8> {
    let mut out = count.to_be_bytes().to_vec();
    for message in messages {
        out.extend_from_slice(&(message.len() as i32).to_be_bytes());
        out.extend_from_slice(message);
    }
    out
}

fn topic(name: &str) -> TopicName {
    name.parse().unwrap()
}

fn channel(name: &str) -> ChannelName {
    name.parse().unwrap()
}

fn id(raw: &[u8; 16]) -> MessageId {
    MessageId(*raw)
}

fn pub_cmd(name: &str, body: &'static [u8]) -> Command {
    Command::Pub {
        topic: topic(name),
        body: Bytes::from_static(body),
    }
}

const ID: &[u8; 16] = b"0123456789abcdef";

// ---- framing (checklist A) ----------------------------------------------------------------------

#[test]
fn line_framing() {
    use Setup::Init;
    check(Init, "NOP\n", cmd(Command::Nop));
    check(Init, "NOP\r\n", cmd(Command::Nop));
    check(
        Init,
        "NOP\nNOP\n",
        Expect::Commands(vec![Command::Nop, Command::Nop]),
    );
    check(Init, "NOP extra params\n", cmd(Command::Nop));
    check(Init, "NOP", Expect::Incomplete);
    check(Init, "", Expect::Incomplete);
    // A8/A6: a trailing \r is stripped, extra parameters are ignored.
    check(
        Init,
        with_body("PUB t\r\n", b"crlf"),
        cmd(pub_cmd("t", b"crlf")),
    );
    check(
        Init,
        with_body("PUB t extra\n", b"x"),
        cmd(pub_cmd("t", b"x")),
    );
    check(
        Init,
        with_body("PUB t extra\r\n", b"crlf"),
        cmd(pub_cmd("t", b"crlf")),
    );
    // Only one \r is stripped: the topic keeps the other and is invalid.
    check(
        Init,
        with_body("PUB t\r\r\n", b"x"),
        Expect::Error(r#"E_BAD_TOPIC PUB topic name "t\r" is not valid"#),
    );
    // A4, A5: names are case-sensitive; an empty line is an invalid command with a trailing space.
    check(
        Init,
        "pub t\n",
        Expect::Error("E_INVALID invalid command pub"),
    );
    check(Init, "\n", Expect::Error("E_INVALID invalid command "));
    check(Init, "\r\n", Expect::Error("E_INVALID invalid command "));
    check(
        Init,
        "FOO bar\n",
        Expect::Error("E_INVALID invalid command FOO"),
    );
    check(Init, " NOP\n", Expect::Error("E_INVALID invalid command "));
    check(Init, "NOP \n", cmd(Command::Nop));
    // A7: every single space separates, so two spaces make an empty parameter.
    check(
        Init,
        "SUB  t c\n",
        Expect::Error(r#"E_BAD_TOPIC SUB topic name "" is not valid"#),
    );
}

#[test]
fn line_length_limit() {
    use Setup::Init;
    // A8: a 16 000-byte line still works (here as an ignored extra parameter of NOP and PUB).
    let mut line = format!("PUB t {}", "p".repeat(16_000 - 7));
    line.push('\n');
    assert_eq!(line.len(), 16_000);
    check(Init, with_body(&line, b"x"), cmd(pub_cmd("t", b"x")));
    // The limit counts the \n: 16 384 bytes with the \n is accepted, one more is not.
    let longest = format!("NOP {}\n", "p".repeat(MAX_LINE_LENGTH - 5));
    assert_eq!(longest.len(), MAX_LINE_LENGTH);
    check(Init, &longest, cmd(Command::Nop));
    let too_long = format!("NOP {}\n", "p".repeat(MAX_LINE_LENGTH - 4));
    check(Init, &too_long, Expect::LineTooLong);
    // Without any \n the decoder gives up as soon as 16 KiB are buffered.
    check(Init, "x".repeat(MAX_LINE_LENGTH - 1), Expect::Incomplete);
    check(Init, "x".repeat(MAX_LINE_LENGTH), Expect::LineTooLong);
    check(Init, "x".repeat(3 * MAX_LINE_LENGTH), Expect::LineTooLong);
    // A long body after a short line is not a long line.
    let body = vec![b'b'; 3 * MAX_LINE_LENGTH];
    let mut codec = CommandCodec::default();
    let mut buf = BytesMut::from(&with_body("PUB t\n", &body)[..]);
    let decoded = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        decoded,
        Command::Pub {
            topic: topic("t"),
            body: Bytes::from(body)
        }
    );
}

#[test]
fn partial_input_then_complete() {
    let mut codec = CommandCodec::default();
    let whole = with_body("PUB t\n", b"hello");
    let mut buf = BytesMut::new();
    for chunk in [&whole[..3], &whole[3..6], &whole[6..8], &whole[8..12]] {
        buf.extend_from_slice(chunk);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), whole[..buf.len()].len(), "nothing consumed yet");
    }
    buf.extend_from_slice(&whole[12..]);
    buf.extend_from_slice(b"NO");
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(pub_cmd("t", b"hello"))
    );
    assert_eq!(&buf[..], b"NO");
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(b"P\n");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Command::Nop));
    assert!(buf.is_empty());
}

// ---- TLS-required policy (spec §3.2) ------------------------------------------------------------

#[test]
fn tls_required() {
    use Setup::TlsRequired;
    let cases: &[(&[u8], &str)] = &[
        (
            b"NOP\n",
            "E_INVALID cannot NOP in current state (TLS required)",
        ),
        (
            b"SUB t c\n",
            "E_INVALID cannot SUB in current state (TLS required)",
        ),
        (
            b"PUB bad!\n",
            "E_INVALID cannot PUB in current state (TLS required)",
        ),
        (
            b"RDY 1\n",
            "E_INVALID cannot RDY in current state (TLS required)",
        ),
        (
            b"AUTH\n",
            "E_INVALID cannot AUTH in current state (TLS required)",
        ),
        (
            b"pub t\n",
            "E_INVALID cannot pub in current state (TLS required)",
        ),
        (b"\n", "E_INVALID cannot  in current state (TLS required)"),
    ];
    for (input, want) in cases {
        check(TlsRequired, input, Expect::Error(want));
    }
    let body = br#"{"tls_v1":true}"#;
    check(
        TlsRequired,
        with_body("IDENTIFY\n", body),
        cmd(Command::Identify(Bytes::from_static(body))),
    );
}

// ---- IDENTIFY / AUTH (spec §6.1, §6.2) ----------------------------------------------------------

#[test]
fn identify() {
    use Setup::{Closing, Init, Subscribed};
    let body = br#"{"feature_negotiation":true}"#;
    let input = with_body("IDENTIFY\n", body);
    check(
        Init,
        &input,
        cmd(Command::Identify(Bytes::from_static(body))),
    );
    for state in [Subscribed, Closing] {
        check(
            state,
            &input,
            Expect::Error("E_INVALID cannot IDENTIFY in current state"),
        );
    }
    // Parameters after IDENTIFY are ignored.
    check(
        Init,
        with_body("IDENTIFY x\n", b"{}"),
        cmd(Command::Identify(Bytes::from_static(b"{}"))),
    );
    check(
        Init,
        with_size("IDENTIFY\n", 0, b""),
        Expect::Error("E_BAD_BODY IDENTIFY invalid body size 0"),
    );
    check(
        Init,
        with_size("IDENTIFY\n", -1, b""),
        Expect::Error("E_BAD_BODY IDENTIFY invalid body size -1"),
    );
    check(
        Init,
        with_size("IDENTIFY\n", 5_242_881, b""),
        Expect::Error("E_BAD_BODY IDENTIFY body too big 5242881 > 5242880"),
    );
    check(Init, with_size("IDENTIFY\n", 10, b"{}"), Expect::Incomplete);
}

#[test]
fn auth() {
    use Setup::{Closing, Init, Subscribed};
    let input = with_body("AUTH\n", b"secret");
    check(
        Init,
        &input,
        cmd(Command::Auth(Bytes::from_static(b"secret"))),
    );
    for state in [Subscribed, Closing] {
        check(
            state,
            &input,
            Expect::Error("E_INVALID cannot AUTH in current state"),
        );
    }
    for line in ["AUTH x\n", "AUTH \n"] {
        check(
            Init,
            with_body(line, b"s"),
            Expect::Error("E_INVALID AUTH invalid number of parameters"),
        );
    }
    check(
        Init,
        with_size("AUTH\n", 0, b""),
        Expect::Error("E_BAD_BODY AUTH invalid body size 0"),
    );
    check(
        Init,
        with_size("AUTH\n", 5_242_881, b""),
        Expect::Error("E_BAD_BODY AUTH body too big 5242881 > 5242880"),
    );
}

// ---- SUB (spec §6.3, checklist E) ---------------------------------------------------------------

#[test]
fn sub() {
    use Setup::{Closing, Init, NoHeartbeats, Subscribed};
    let sub = |t: &str, c: &str| {
        cmd(Command::Sub {
            topic: topic(t),
            channel: channel(c),
        })
    };
    check(Init, "SUB t c\n", sub("t", "c"));
    check(Init, "SUB t c extra\n", sub("t", "c"));
    check(
        Init,
        "SUB t#ephemeral c#ephemeral\n",
        sub("t#ephemeral", "c#ephemeral"),
    );
    for state in [Subscribed, Closing] {
        check(
            state,
            "SUB t c\n",
            Expect::Error("E_INVALID cannot SUB in current state"),
        );
    }
    check(
        NoHeartbeats,
        "SUB t c\n",
        Expect::Error("E_INVALID cannot SUB with heartbeats disabled"),
    );
    check(
        NoHeartbeats,
        "SUB\n",
        Expect::Error("E_INVALID cannot SUB with heartbeats disabled"),
    );
    let cases: &[(&str, &str)] = &[
        ("SUB\n", "E_INVALID SUB insufficient number of parameters"),
        ("SUB t\n", "E_INVALID SUB insufficient number of parameters"),
        (
            "SUB t bad!\n",
            r#"E_BAD_CHANNEL SUB channel name "bad!" is not valid"#,
        ),
        (
            "SUB bad! bad!\n",
            r#"E_BAD_TOPIC SUB topic name "bad!" is not valid"#,
        ),
        (
            "SUB t \n",
            r#"E_BAD_CHANNEL SUB channel name "" is not valid"#,
        ),
        (
            "SUB  t c\n",
            r#"E_BAD_TOPIC SUB topic name "" is not valid"#,
        ),
        (
            "SUB t a\"b\n",
            r#"E_BAD_CHANNEL SUB channel name "a\"b" is not valid"#,
        ),
        (
            "SUB #ephemeral c\n",
            r##"E_BAD_TOPIC SUB topic name "#ephemeral" is not valid"##,
        ),
    ];
    for (input, want) in cases {
        check(Init, input, Expect::Error(want));
    }
    // Go's %q: control bytes and invalid UTF-8 are escaped.
    check(
        Init,
        b"SUB t\x01\xff c\n",
        Expect::Error(r#"E_BAD_TOPIC SUB topic name "t\x01\xff" is not valid"#),
    );
}

// ---- RDY (spec §6.4) ----------------------------------------------------------------------------

#[test]
fn rdy() {
    use Setup::{Closing, Init, Subscribed};
    check(
        Init,
        "RDY 1\n",
        Expect::Error("E_INVALID cannot RDY in current state"),
    );
    check(Subscribed, "RDY\n", cmd(Command::Rdy(1)));
    check(Subscribed, "RDY 0\n", cmd(Command::Rdy(0)));
    check(Subscribed, "RDY \n", cmd(Command::Rdy(0)));
    check(Subscribed, "RDY 2500\n", cmd(Command::Rdy(2500)));
    check(Subscribed, "RDY 007\n", cmd(Command::Rdy(7)));
    let cases: &[(&str, &str)] = &[
        ("RDY 2501\n", "E_INVALID RDY count 2501 out of range 0-2500"),
        ("RDY -1\n", "E_INVALID RDY could not parse count -1"),
        ("RDY x\n", "E_INVALID RDY could not parse count x"),
        ("RDY +1\n", "E_INVALID RDY could not parse count +1"),
        (
            "RDY 99999999999999999999\n",
            "E_INVALID RDY could not parse count 99999999999999999999",
        ),
    ];
    for (input, want) in cases {
        check(Subscribed, input, Expect::Error(want));
    }
    // Extra parameters are ignored.
    check(Subscribed, "RDY 1 \n", cmd(Command::Rdy(1)));
    // After CLS, RDY is ignored before its count is even parsed.
    check(Closing, "RDY 5\n", cmd(Command::Nop));
    check(Closing, "RDY x\n", cmd(Command::Nop));
}

// ---- FIN / REQ / TOUCH / CLS (spec §6.5–6.8) ----------------------------------------------------

#[test]
fn fin_req_touch() {
    use Setup::{Closing, Init, Subscribed};
    for name in ["FIN", "REQ", "TOUCH"] {
        check(
            Init,
            format!("{name} 0123456789abcdef 0\n"),
            Expect::Error(match name {
                "FIN" => "E_INVALID cannot FIN in current state",
                "REQ" => "E_INVALID cannot REQ in current state",
                _ => "E_INVALID cannot TOUCH in current state",
            }),
        );
    }
    for state in [Subscribed, Closing] {
        check(state, "FIN 0123456789abcdef\n", cmd(Command::Fin(id(ID))));
        check(
            state,
            "FIN 0123456789abcdef extra\n",
            cmd(Command::Fin(id(ID))),
        );
        // The ID is not checked for hex: any 16 bytes are looked up.
        check(
            state,
            "FIN zzzzzzzzzzzzzzzz\n",
            cmd(Command::Fin(id(b"zzzzzzzzzzzzzzzz"))),
        );
        check(
            state,
            "TOUCH 0123456789abcdef\n",
            cmd(Command::Touch(id(ID))),
        );
        check(
            state,
            "REQ 0123456789abcdef 0\n",
            cmd(Command::Req {
                id: id(ID),
                timeout_ms: 0,
            }),
        );
        // Above --max-req-timeout: the decoder does not clamp (nsqd does), and it is not an error.
        check(
            state,
            "REQ 0123456789abcdef 7200000\n",
            cmd(Command::Req {
                id: id(ID),
                timeout_ms: 7_200_000,
            }),
        );
        check(
            state,
            "REQ 0123456789abcdef \n",
            cmd(Command::Req {
                id: id(ID),
                timeout_ms: 0,
            }),
        );
        let cases: &[(&str, &str)] = &[
            ("FIN\n", "E_INVALID FIN insufficient number of params"),
            ("FIN short\n", "E_INVALID invalid message ID"),
            ("FIN \n", "E_INVALID invalid message ID"),
            ("FIN 0123456789abcdef0\n", "E_INVALID invalid message ID"),
            ("TOUCH\n", "E_INVALID TOUCH insufficient number of params"),
            ("TOUCH short\n", "E_INVALID invalid message ID"),
            ("REQ\n", "E_INVALID REQ insufficient number of params"),
            (
                "REQ 0123456789abcdef\n",
                "E_INVALID REQ insufficient number of params",
            ),
            ("REQ short 0\n", "E_INVALID invalid message ID"),
            (
                "REQ 0123456789abcdef abc\n",
                "E_INVALID REQ could not parse timeout abc",
            ),
            (
                "REQ 0123456789abcdef -5\n",
                "E_INVALID REQ could not parse timeout -5",
            ),
            ("REQ short abc\n", "E_INVALID invalid message ID"),
        ];
        for (input, want) in cases {
            check(state, input, Expect::Error(want));
        }
    }
}

#[test]
fn cls_and_nop() {
    use Setup::{Closing, Init, Subscribed, TlsRequired};
    check(
        Init,
        "CLS\n",
        Expect::Error("E_INVALID cannot CLS in current state"),
    );
    check(Subscribed, "CLS\n", cmd(Command::Cls));
    check(
        Closing,
        "CLS\n",
        Expect::Error("E_INVALID cannot CLS in current state"),
    );
    for state in [Init, Subscribed, Closing] {
        check(state, "NOP\n", cmd(Command::Nop));
    }
    check(
        TlsRequired,
        "CLS\n",
        Expect::Error("E_INVALID cannot CLS in current state (TLS required)"),
    );
}

// ---- PUB (spec §6.10, checklist G) --------------------------------------------------------------

#[test]
fn pub_command() {
    use Setup::{Closing, Init, Subscribed};
    for state in [Init, Subscribed, Closing] {
        check(
            state,
            with_body("PUB t\n", b"hello"),
            cmd(pub_cmd("t", b"hello")),
        );
    }
    let max_name = "a".repeat(64);
    check(
        Init,
        with_body(&format!("PUB {max_name}\n"), b"x"),
        cmd(Command::Pub {
            topic: topic(&max_name),
            body: Bytes::from_static(b"x"),
        }),
    );
    let too_long = format!("E_BAD_TOPIC PUB topic name \"{max_name}a\" is not valid");
    check(
        Init,
        with_body(&format!("PUB {max_name}a\n"), b"x"),
        Expect::Error(too_long.leak()),
    );
    // Binary bodies, including bytes that look like a command line.
    check(
        Init,
        with_body("PUB t\n", b"\x00\n\r\xff \nPUB x\n"),
        cmd(pub_cmd("t", b"\x00\n\r\xff \nPUB x\n")),
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"PUB\n".to_vec(),
            "E_INVALID PUB insufficient number of parameters",
        ),
        (
            with_body("PUB bad!topic\n", b"x"),
            r#"E_BAD_TOPIC PUB topic name "bad!topic" is not valid"#,
        ),
        (
            with_body("PUB #ephemeral\n", b"x"),
            r##"E_BAD_TOPIC PUB topic name "#ephemeral" is not valid"##,
        ),
        (
            with_body("PUB \n", b"x"),
            r#"E_BAD_TOPIC PUB topic name "" is not valid"#,
        ),
        (
            with_size("PUB t\n", 0, b""),
            "E_BAD_MESSAGE PUB invalid message body size 0",
        ),
        (
            with_size("PUB t\n", -1, b""),
            "E_BAD_MESSAGE PUB invalid message body size -1",
        ),
        (
            with_size("PUB t\n", i32::MIN, b""),
            "E_BAD_MESSAGE PUB invalid message body size -2147483648",
        ),
        (
            with_size("PUB t\n", 1_048_577, b""),
            "E_BAD_MESSAGE PUB message too big 1048577 > 1048576",
        ),
        (
            with_size("PUB t\n", i32::MAX, b""),
            "E_BAD_MESSAGE PUB message too big 2147483647 > 1048576",
        ),
    ];
    for (input, want) in &cases {
        check(Init, input, Expect::Error(want));
    }
    check(Init, with_size("PUB t\n", 5, b"hell"), Expect::Incomplete);
    check(Init, "PUB t\n\0\0", Expect::Incomplete);
    // G59: exactly --max-msg-size is accepted.
    let body = vec![b'm'; 1_048_576];
    check(
        Init,
        with_body("PUB t\n", &body),
        cmd(Command::Pub {
            topic: topic("t"),
            body: Bytes::from(body),
        }),
    );
}

// ---- MPUB (spec §6.11) --------------------------------------------------------------------------

#[test]
fn mpub() {
    use Setup::{Init, SmallLimits, Subscribed};
    let two = mpub_payload(2, &[b"one", b"three"]);
    let expected = || {
        cmd(Command::Mpub {
            topic: topic("t"),
            bodies: vec![Bytes::from_static(b"one"), Bytes::from_static(b"three")],
        })
    };
    check(Init, with_body("MPUB t\n", &two), expected());
    check(Subscribed, with_body("MPUB t\n", &two), expected());
    // One message of exactly --max-msg-size, in a body of exactly --max-body-size.
    let big = vec![b'z'; 1024];
    check(
        SmallLimits,
        with_body("MPUB t\n", &mpub_payload(1, &[&big])),
        cmd(Command::Mpub {
            topic: topic("t"),
            bodies: vec![Bytes::from(big.clone())],
        }),
    );
    let fills_body = vec![b'z'; 4096 - 8];
    check(
        Setup::SmallLimits,
        with_body("MPUB t\n", &mpub_payload(1, &[&fills_body])),
        Expect::Error("E_BAD_MESSAGE MPUB message too big 4088 > 1024"),
    );

    let cases: Vec<(Setup, Vec<u8>, &str)> = vec![
        (
            Init,
            b"MPUB\n".to_vec(),
            "E_INVALID MPUB insufficient number of parameters",
        ),
        // G61: upstream writes the code twice.
        (
            Init,
            with_body("MPUB bad!\n", &two),
            r#"E_BAD_TOPIC E_BAD_TOPIC MPUB topic name "bad!" is not valid"#,
        ),
        (
            Init,
            b"MPUB bad!\n".to_vec(),
            r#"E_BAD_TOPIC E_BAD_TOPIC MPUB topic name "bad!" is not valid"#,
        ),
        (
            Init,
            with_size("MPUB t\n", 0, b""),
            "E_BAD_BODY MPUB invalid body size 0",
        ),
        (
            Init,
            with_size("MPUB t\n", -7, b""),
            "E_BAD_BODY MPUB invalid body size -7",
        ),
        (
            Init,
            with_size("MPUB t\n", 5_242_881, b""),
            "E_BAD_BODY MPUB body too big 5242881 > 5242880",
        ),
        (
            SmallLimits,
            with_size("MPUB t\n", 4097, b""),
            "E_BAD_BODY MPUB body too big 4097 > 4096",
        ),
        (
            Init,
            with_size("MPUB t\n", 4, &0i32.to_be_bytes()),
            "E_BAD_BODY MPUB invalid message count 0",
        ),
        (
            Init,
            with_size("MPUB t\n", 4, &(-1i32).to_be_bytes()),
            "E_BAD_BODY MPUB invalid message count -1",
        ),
        // The count limit is (max-body-size - 4) / 5.
        (
            Init,
            with_size("MPUB t\n", 100, &1_048_576i32.to_be_bytes()),
            "E_BAD_BODY MPUB invalid message count 1048576",
        ),
        (
            SmallLimits,
            with_size("MPUB t\n", 100, &819i32.to_be_bytes()),
            "E_BAD_BODY MPUB invalid message count 819",
        ),
        // G64: all-or-nothing, message(1) of size 0 fails the whole MPUB.
        (
            Init,
            with_body("MPUB t\n", &mpub_payload(2, &[b"a", b""])),
            "E_BAD_MESSAGE MPUB invalid message(1) body size 0",
        ),
        (
            Init,
            with_body(
                "MPUB t\n",
                &[&2i32.to_be_bytes()[..], &(-3i32).to_be_bytes()].concat(),
            ),
            "E_BAD_MESSAGE MPUB invalid message(0) body size -3",
        ),
        (
            SmallLimits,
            with_body("MPUB t\n", &mpub_payload(1, &[&[b'z'; 1025]])),
            "E_BAD_MESSAGE MPUB message too big 1025 > 1024",
        ),
        // The body ends before the messages the count announced.
        (
            Init,
            with_body("MPUB t\n", &mpub_payload(2, &[b"a"])),
            "E_BAD_MESSAGE MPUB failed to read message(1) body size",
        ),
        (
            Init,
            with_body(
                "MPUB t\n",
                &[&mpub_payload(2, &[b"a"])[..], &[0, 0]].concat(),
            ),
            "E_BAD_MESSAGE MPUB failed to read message(1) body size",
        ),
        (
            Init,
            with_body(
                "MPUB t\n",
                &[&1i32.to_be_bytes()[..], &5i32.to_be_bytes(), b"abc"].concat(),
            ),
            "E_BAD_MESSAGE MPUB failed to read message body",
        ),
        // A body size below 4 cannot hold the count.
        (
            Init,
            with_size(
                "MPUB t\n",
                2,
                &[&1i32.to_be_bytes()[..], &1i32.to_be_bytes(), b"a"].concat(),
            ),
            "E_BAD_BODY MPUB failed to read message count",
        ),
        // Bytes left over after the last message: rejected rather than desynchronising.
        (
            Init,
            with_body("MPUB t\n", &[&mpub_payload(1, &[b"a"])[..], b"xy"].concat()),
            "E_BAD_BODY MPUB body size 11 does not match its 1 messages (2 bytes left over)",
        ),
    ];
    for (setup, input, want) in &cases {
        check(*setup, input, Expect::Error(want));
    }
    // The body size and count are checked as soon as they arrive; the messages only once the
    // whole body is there.
    check(
        Init,
        with_size("MPUB t\n", 20, &2i32.to_be_bytes()),
        Expect::Incomplete,
    );
    check(Init, with_size("MPUB t\n", 20, &[0, 0]), Expect::Incomplete);
}

#[test]
fn mpub_huge_count_in_tiny_body_is_cheap() {
    // A 12-byte body announcing a million messages must fail without reserving room for them.
    let mut codec = CommandCodec::default();
    let mut buf = BytesMut::from(&with_body("MPUB t\n", &mpub_payload(1_048_575, &[b"a"]))[..]);
    let error = codec.decode(&mut buf).unwrap_err();
    assert_eq!(
        error.to_string(),
        "E_BAD_MESSAGE MPUB failed to read message(1) body size"
    );
}

// ---- DPUB (spec §6.12) --------------------------------------------------------------------------

#[test]
fn dpub() {
    use Setup::{Closing, Init};
    let dpub = |defer_ms| {
        cmd(Command::Dpub {
            topic: topic("t"),
            defer_ms,
            body: Bytes::from_static(b"deferred"),
        })
    };
    check(Init, with_body("DPUB t 5000\n", b"deferred"), dpub(5000));
    check(Closing, with_body("DPUB t 5000\n", b"deferred"), dpub(5000));
    check(Init, with_body("DPUB t 0\n", b"deferred"), dpub(0));
    check(
        Init,
        with_body("DPUB t 3600000\n", b"deferred"),
        dpub(3_600_000),
    );
    check(Init, with_body("DPUB t \n", b"deferred"), dpub(0));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"DPUB\n".to_vec(),
            "E_INVALID DPUB insufficient number of parameters",
        ),
        (
            b"DPUB t\n".to_vec(),
            "E_INVALID DPUB insufficient number of parameters",
        ),
        (
            with_body("DPUB bad! 5\n", b"x"),
            r#"E_BAD_TOPIC DPUB topic name "bad!" is not valid"#,
        ),
        (
            with_body("DPUB bad! abc\n", b"x"),
            r#"E_BAD_TOPIC DPUB topic name "bad!" is not valid"#,
        ),
        (
            with_body("DPUB t abc\n", b"x"),
            "E_INVALID DPUB could not parse timeout abc",
        ),
        (
            with_body("DPUB t -5\n", b"x"),
            "E_INVALID DPUB could not parse timeout -5",
        ),
        (
            with_body("DPUB t 3600001\n", b"x"),
            "E_INVALID DPUB timeout 3600001 out of range 0-3600000",
        ),
        (
            b"DPUB t 3600001\n".to_vec(),
            "E_INVALID DPUB timeout 3600001 out of range 0-3600000",
        ),
        (
            with_size("DPUB t 1\n", 0, b""),
            "E_BAD_MESSAGE DPUB invalid message body size 0",
        ),
        (
            with_size("DPUB t 1\n", -2, b""),
            "E_BAD_MESSAGE DPUB invalid message body size -2",
        ),
        (
            with_size("DPUB t 1\n", 1_048_577, b""),
            "E_BAD_MESSAGE DPUB message too big 1048577 > 1048576",
        ),
    ];
    for (input, want) in &cases {
        check(Init, input, Expect::Error(want));
    }
    check(Init, with_size("DPUB t 1\n", 3, b"ab"), Expect::Incomplete);
}

// ---- captured upstream exchanges ----------------------------------------------------------------

/// Replays the client bytes of every captured exchange in `shared/fixtures/tcp` through the
/// decoder (and IDENTIFY negotiation). Where upstream answered with a fatal error that the decoder
/// is responsible for, the decoder must produce exactly that error, at that point.
#[test]
fn upstream_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/tcp");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipping: no fixtures at {}", dir.display());
        return;
    };
    let mut replayed = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name.starts_with('_') {
            continue;
        }
        let fixture: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let sends = hex::decode(fixture["client_sends_hex"].as_str().unwrap()).unwrap();
        let Some(commands) = sends.strip_prefix(b"  V2") else {
            continue; // The bad-magic exchange never reaches the decoder.
        };
        let server_error = fixture["server_replies_decoded"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|frame| frame["type_name"] == "error")
            .map(|frame| frame["data"].as_str().unwrap().to_owned())
            .next();
        let decoder_error = replay(commands);
        match (&decoder_error, &server_error) {
            (Some(ours), Some(theirs)) => assert_eq!(ours, theirs, "{name}"),
            (Some(ours), None) => panic!("{name}: decoder failed with {ours:?}, upstream did not"),
            (None, Some(theirs)) => assert!(
                is_decided_after_decoding(theirs),
                "{name}: upstream failed with {theirs:?}, the decoder did not"
            ),
            (None, None) => {}
        }
        replayed += 1;
    }
    assert!(replayed >= 40, "only {replayed} fixtures replayed");
}

/// Decodes a captured client stream, updating the connection state as nsqd would on success.
/// Returns the first error frame text the decoder or negotiation produced.
fn replay(stream: &[u8]) -> Option<String> {
    let mut codec = CommandCodec::new(fixture_limits());
    let mut buf = BytesMut::from(stream);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(Command::Sub { .. })) => codec.state = ConnectionState::Subscribed,
            Ok(Some(Command::Cls)) => codec.state = ConnectionState::Closing,
            Ok(Some(Command::Identify(body))) => {
                let negotiated = IdentifyRequest::from_json(&body)
                    .and_then(|request| IdentifyPolicy::default().negotiate(&request));
                match negotiated {
                    Ok(negotiated) => {
                        codec.heartbeats_disabled = negotiated.heartbeat_interval.is_none();
                    }
                    Err(error) => return Some(error.to_frame_data()),
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(ProtocolError::Client(error)) => return Some(error.to_frame_data()),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
}

/// Errors nsqd decides after decoding (state of messages, auth), not the decoder.
fn is_decided_after_decoding(text: &str) -> bool {
    [
        "E_FIN_FAILED ",
        "E_REQ_FAILED ",
        "E_TOUCH_FAILED ",
        "E_AUTH_DISABLED ",
        "E_AUTH_FAILED ",
        "E_UNAUTHORIZED ",
    ]
    .iter()
    .any(|prefix| text.starts_with(prefix))
}

// ---- FrameCodec ---------------------------------------------------------------------------------

#[test]
fn frame_errors() {
    let mut codec = FrameCodec::new(1024);
    let cases: &[(&[u8], &str)] = &[
        (
            &[0, 0, 0, 3, 0, 0, 0],
            "malformed frame: invalid frame size 3",
        ),
        (
            &[0xff, 0xff, 0xff, 0xff],
            "malformed frame: invalid frame size -1",
        ),
        (&[0, 0, 4, 1], "malformed frame: invalid frame size 1025"),
        (
            &[0, 0, 0, 4, 0, 0, 0, 3],
            "malformed frame: unknown frame type 3",
        ),
        (
            &[0, 0, 0, 5, 0, 0, 0, 2, 0],
            "malformed frame: message frame shorter than 26 bytes",
        ),
    ];
    for (input, want) in cases {
        let error = codec.decode(&mut BytesMut::from(*input)).unwrap_err();
        assert_eq!(error.to_string(), *want, "{input:?}");
    }
    // An empty response frame is valid.
    assert_eq!(
        codec
            .decode(&mut BytesMut::from(&[0, 0, 0, 4, 0, 0, 0, 0][..]))
            .unwrap(),
        Some(Frame::Response(Bytes::new()))
    );
    // The largest frame the codec accepts.
    let mut buf = BytesMut::new();
    let data = vec![b'x'; 1020];
    nsq_protocol::frame::write_frame(&mut buf, nsq_protocol::FrameType::Error, &data);
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Frame::Error(Bytes::from(data)))
    );
}

// ---- property tests -----------------------------------------------------------------------------

fn name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[.a-zA-Z0-9_-]{1,64}",
        "[.a-zA-Z0-9_-]{1,54}".prop_map(|stem| format!("{stem}#ephemeral")),
    ]
}

fn body_strategy() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 1..300).prop_map(Bytes::from)
}

/// IDs that survive the line format: no space, `\n` or `\r` (the encoder does not escape).
fn id_strategy() -> impl Strategy<Value = MessageId> {
    prop::array::uniform16(
        any::<u8>().prop_filter("separator", |b| !matches!(b, b' ' | b'\n' | b'\r')),
    )
    .prop_map(MessageId)
}

/// A command and the state in which the decoder accepts it.
fn command_strategy() -> impl Strategy<Value = (Command, ConnectionState)> {
    let limits = Limits::default();
    let topic = || name_strategy().prop_map(|name| TopicName::try_from(name.as_str()).unwrap());
    let channel = name_strategy().prop_map(|name| ChannelName::try_from(name.as_str()).unwrap());
    let any_state = prop_oneof![
        Just(ConnectionState::Init),
        Just(ConnectionState::Subscribed),
        Just(ConnectionState::Closing),
    ];
    let delivery_state = prop_oneof![
        Just(ConnectionState::Subscribed),
        Just(ConnectionState::Closing)
    ];
    let init = Just(ConnectionState::Init);
    let subscribed = Just(ConnectionState::Subscribed);
    prop_oneof![
        (body_strategy(), init).prop_map(|(body, state)| (Command::Identify(body), state)),
        (body_strategy(), init).prop_map(|(body, state)| (Command::Auth(body), state)),
        (topic(), channel, init)
            .prop_map(|(topic, channel, state)| (Command::Sub { topic, channel }, state)),
        (topic(), body_strategy(), any_state.clone())
            .prop_map(|(topic, body, state)| (Command::Pub { topic, body }, state)),
        (
            topic(),
            prop::collection::vec(body_strategy(), 1..20),
            any_state.clone()
        )
            .prop_map(|(topic, bodies, state)| (Command::Mpub { topic, bodies }, state)),
        (
            topic(),
            0..=limits.max_req_timeout_ms,
            body_strategy(),
            any_state.clone()
        )
            .prop_map(|(topic, defer_ms, body, state)| (
                Command::Dpub {
                    topic,
                    defer_ms,
                    body
                },
                state
            )),
        (0..=limits.max_rdy_count, subscribed)
            .prop_map(|(count, state)| (Command::Rdy(count), state)),
        (id_strategy(), delivery_state.clone()).prop_map(|(id, state)| (Command::Fin(id), state)),
        (id_strategy(), any::<u64>(), delivery_state.clone())
            .prop_map(|(id, timeout_ms, state)| (Command::Req { id, timeout_ms }, state)),
        (id_strategy(), delivery_state).prop_map(|(id, state)| (Command::Touch(id), state)),
        subscribed.prop_map(|state| (Command::Cls, state)),
        any_state.prop_map(|state| (Command::Nop, state)),
    ]
}

fn message_strategy() -> impl Strategy<Value = Message> {
    (
        prop::array::uniform16(any::<u8>()),
        any::<i64>(),
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(id, timestamp, attempts, body)| Message {
            id: MessageId(id),
            timestamp,
            attempts,
            body: Bytes::from(body),
        })
}

fn frame_strategy() -> impl Strategy<Value = Frame> {
    let data = || prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
    prop_oneof![
        data().prop_map(Frame::Response),
        data().prop_map(Frame::Error),
        message_strategy().prop_map(Frame::Message),
    ]
}

fn codec_strategy() -> impl Strategy<Value = CommandCodec> {
    (0u8..3, any::<bool>(), any::<bool>(), 1u64..64, 1u64..256).prop_map(
        |(state, tls_required, heartbeats_disabled, max_msg_size, max_body_size)| CommandCodec {
            limits: Limits {
                max_msg_size,
                max_body_size,
                max_rdy_count: 10,
                max_req_timeout_ms: 1000,
            },
            state: match state {
                0 => ConnectionState::Init,
                1 => ConnectionState::Subscribed,
                _ => ConnectionState::Closing,
            },
            tls_required,
            heartbeats_disabled,
        },
    )
}

/// Starts of valid commands, so arbitrary suffixes reach the body and parameter parsers.
fn prefix_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        &b""[..],
        b"PUB t\n",
        b"DPUB t 5\n",
        b"MPUB t\n",
        b"MPUB t\n\0\0\0\x10",
        b"MPUB t\n\0\0\0\x10\0\0\0\x02",
        b"IDENTIFY\n",
        b"AUTH\n",
        b"SUB t c\n",
        b"RDY ",
        b"FIN ",
        b"REQ 0123456789abcdef ",
        b"TOUCH ",
        b"CLS\n",
        b"NOP\n",
    ])
    .prop_map(<[u8]>::to_vec)
}

/// Decodes until the codec stops; checks that a decode waiting for more input consumed nothing.
/// (After an error the connection is closed, so what an error consumed does not matter.)
fn drain_commands(codec: &mut CommandCodec, buf: &mut BytesMut) {
    loop {
        let before = buf.len();
        match codec.decode(buf) {
            Ok(Some(_)) => assert!(buf.len() < before, "a command consumed nothing"),
            Ok(None) => {
                assert_eq!(buf.len(), before);
                return;
            }
            Err(_) => return,
        }
    }
}

fn drain_frames(codec: &mut FrameCodec, buf: &mut BytesMut) {
    loop {
        let before = buf.len();
        match codec.decode(buf) {
            Ok(Some(_)) => assert!(buf.len() < before, "a frame consumed nothing"),
            Ok(None) | Err(_) => return,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/codec.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn command_round_trip((command, state) in command_strategy(), split in any::<prop::sample::Index>()) {
        let mut wire = BytesMut::new();
        encode_command(&command, &mut wire);
        let mut codec = CommandCodec { state, ..CommandCodec::default() };
        // Whole.
        let mut whole = wire.clone();
        prop_assert_eq!(codec.decode(&mut whole).unwrap(), Some(command.clone()));
        prop_assert!(whole.is_empty());
        // In two pieces: nothing until the last byte.
        let at = split.index(wire.len());
        let mut buf = BytesMut::from(&wire[..at]);
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&wire[at..]);
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(command.clone()));
        prop_assert!(buf.is_empty());
        // Through the Encoder impl too.
        let mut encoded = BytesMut::new();
        codec.encode(&command, &mut encoded).unwrap();
        prop_assert_eq!(encoded, wire);
    }

    #[test]
    fn frame_round_trip(frames in prop::collection::vec(frame_strategy(), 1..5)) {
        let mut codec = FrameCodec::default();
        let mut wire = BytesMut::new();
        for frame in &frames {
            codec.encode(frame, &mut wire).unwrap();
        }
        let mut decoded = Vec::new();
        while let Some(frame) = codec.decode(&mut wire).unwrap() {
            decoded.push(frame);
        }
        prop_assert_eq!(decoded, frames);
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn command_decoder_never_panics(mut codec in codec_strategy(), input in prop::collection::vec(any::<u8>(), 0..512)) {
        drain_commands(&mut codec, &mut BytesMut::from(&input[..]));
    }

    #[test]
    fn command_decoder_never_panics_after_valid_prefix(
        mut codec in codec_strategy(),
        prefix in prefix_strategy(),
        suffix in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let input = [prefix, suffix].concat();
        drain_commands(&mut codec, &mut BytesMut::from(&input[..]));
        // Byte by byte as well.
        let mut codec = codec.clone();
        let mut buf = BytesMut::new();
        for byte in input {
            buf.put_u8(byte);
            drain_commands(&mut codec, &mut buf);
        }
    }

    #[test]
    fn frame_decoder_never_panics(max in 0usize..512, input in prop::collection::vec(any::<u8>(), 0..512)) {
        drain_frames(&mut FrameCodec::new(max), &mut BytesMut::from(&input[..]));
    }

    #[test]
    fn frame_decoder_never_panics_after_valid_prefix(
        frame in frame_strategy(),
        suffix in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(&frame, &mut buf).unwrap();
        buf.extend_from_slice(&suffix);
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
        drain_frames(&mut codec, &mut buf);
    }
}
