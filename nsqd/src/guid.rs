//! Message IDs: 64-bit numbers spelled as 16 lower-case hex digits.
//!
//! ```text
//! bits 63..22  (unix_ns >> 20) - 1288834974288   ticks of 1.048576 ms
//! bits 21..12  node id (0..1023)
//! bits 11..0   sequence within the tick
//! ```
//!
//! One factory per topic: IDs are strictly increasing within a topic. Upstream sleeps when a tick's
//! 4096 sequence numbers run out or the clock steps back; this factory instead borrows the next
//! tick (a logical clock), so publishing never stalls and IDs stay unique and increasing.

use nsq_protocol::MessageId;

const EPOCH_TICKS: u64 = 1_288_834_974_288;
const SEQUENCE_BITS: u64 = 12;
const NODE_BITS: u64 = 10;
const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;

#[derive(Debug)]
pub(crate) struct GuidFactory {
    node_id: u64,
    last_tick: u64,
    sequence: u64,
}

impl GuidFactory {
    pub(crate) fn new(node_id: u16) -> Self {
        Self {
            node_id: u64::from(node_id) & ((1 << NODE_BITS) - 1),
            last_tick: 0,
            sequence: 0,
        }
    }

    /// The next ID, given the current time in ns since the Unix epoch.
    pub(crate) fn next_id(&mut self, unix_ns: i64) -> MessageId {
        let tick = ((unix_ns.max(0) as u64) >> 20).saturating_sub(EPOCH_TICKS);
        if tick > self.last_tick {
            self.last_tick = tick;
            self.sequence = 0;
        } else if self.sequence < MAX_SEQUENCE {
            self.sequence += 1;
        } else {
            self.last_tick += 1;
            self.sequence = 0;
        }
        MessageId::from_u64(
            (self.last_tick << (NODE_BITS + SEQUENCE_BITS))
                | (self.node_id << SEQUENCE_BITS)
                | self.sequence,
        )
    }
}

/// Upstream's default node ID: crc32(md5(hostname)) mod 1024.
pub(crate) fn default_node_id() -> u16 {
    use md5::{Digest, Md5};
    let host = hostname::get()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let digest = Md5::digest(host.as_bytes());
    (crc32fast::hash(&digest) % 1024) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increasing_with_node_bits() {
        let mut factory = GuidFactory::new(777);
        let now = 1_795_312_144_000_000_000;
        let mut last = 0;
        for _ in 0..10_000 {
            let id = factory.next_id(now).to_u64().unwrap();
            assert!(id > last);
            assert_eq!((id >> 12) & 0x3ff, 777);
            last = id;
        }
        // The clock stepping back never produces a smaller ID.
        assert!(factory.next_id(now - 1_000_000_000).to_u64().unwrap() > last);
    }
}
