//! B. Topic and channel names. (B11, HTTP `/pub`, is not implemented by nsqd yet.)

use nsq_tests::{NsqdProcess, cmd};

/// B10: 64 bytes including `#ephemeral` is the limit; `#ephemeral` alone or twice is invalid.
#[tokio::test]
async fn b10_topic_name_length_and_ephemeral_suffix() {
    let nsqd = NsqdProcess::start(&[]);

    for valid in [
        "a".repeat(64),
        format!("{}#ephemeral", "e".repeat(54)),
        "._-AZaz09".to_owned(),
    ] {
        let mut conn = nsqd.connect().await;
        conn.send(&cmd::publish(&valid, b"x")).await;
        conn.expect_ok().await;
    }

    for invalid in [
        "a".repeat(65),
        format!("{}#ephemeral", "e".repeat(55)),
        "#ephemeral".to_owned(),
        "t#ephemeral#ephemeral".to_owned(),
        "bad!".to_owned(),
        "a:b".to_owned(),
    ] {
        let mut conn = nsqd.connect().await;
        conn.send(&cmd::publish(&invalid, b"x")).await;
        conn.expect_fatal(&format!(
            r#"E_BAD_TOPIC PUB topic name "{invalid}" is not valid"#
        ))
        .await;
    }
}

/// B10 (channels): the same rules apply to channel names in SUB.
#[tokio::test]
async fn b10_channel_name_rules() {
    let nsqd = NsqdProcess::start(&[]);
    for valid in ["c".repeat(64), format!("{}#ephemeral", "e".repeat(54))] {
        let mut conn = nsqd.connect().await;
        conn.sub("t", &valid).await;
    }
    for invalid in [
        "c".repeat(65),
        "#ephemeral".to_owned(),
        "c#ephemeral#ephemeral".to_owned(),
    ] {
        let mut conn = nsqd.connect().await;
        conn.send(&cmd::sub("t", &invalid)).await;
        conn.expect_fatal(&format!(
            r#"E_BAD_CHANNEL SUB channel name "{invalid}" is not valid"#
        ))
        .await;
    }
}
