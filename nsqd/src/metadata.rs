//! Node metadata: which topics and channels exist and which are paused, kept across restarts.
//!
//! The store is a sled database at `<data-path>/nsqd.sled/`:
//!
//! ```text
//! tree "topics"   key: topic name   value: JSON {"paused":bool,"channels":[{"name":…,"paused":bool}]}
//! default tree    key "format"      value: "1"   (written with the first snapshot)
//! ```
//!
//! Every write replaces the whole set in one batch, then flushes; ephemeral topics and channels
//! are never stored. Alongside, `<data-path>/nsqd.dat` is rewritten in upstream's format (compact
//! JSON, temp file + fsync + rename, mode 0600) so an operator can swap back to upstream nsqd.
//!
//! On the first start (no `format` key yet) an upstream `nsqd.dat` is imported if present.
//! Restoring uses the ordinary creation paths: a paused topic is paused before its channels exist
//! (so its backlog stays at the topic), all channels of a topic are created together (so each gets
//! the backlog), then paused channels are paused. This happens before the listeners accept
//! anyone.
//!
//! Writes happen: right after restoring; after every non-ephemeral topic/channel creation or
//! deletion (a task follows [`Nsqd::subscribe_events`], batching bursts and resynchronising after
//! `Lagged`); after every HTTP pause/unpause ([`Metadata::persist`]); and at clean shutdown.

use crate::error::NsqdError;
use crate::nsqd::{Nsqd, RegistryEvent};
use nsq_protocol::{ChannelName, TopicName};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

const SLED_DIR: &str = "nsqd.sled";
const DAT_FILE: &str = "nsqd.dat";
const TOPICS_TREE: &str = "topics";
const FORMAT_KEY: &str = "format";
const FORMAT_VERSION: &[u8] = b"1";

/// The node's topics and channels (upstream's `nsqd.dat` shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMetadata {
    /// Topics, any order.
    pub topics: Vec<TopicMetadata>,
    /// Server version (written, ignored on load).
    #[serde(default)]
    pub version: String,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Paused flag.
    #[serde(default)]
    pub paused: bool,
    /// `null` (not `[]`) when the topic has no channels, as upstream writes it.
    #[serde(default)]
    pub channels: Option<Vec<ChannelMetadata>>,
}

/// One channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMetadata {
    /// Channel name.
    pub name: String,
    /// Paused flag.
    #[serde(default)]
    pub paused: bool,
}

/// A sled value: one topic without its name (the key).
#[derive(Debug, Serialize, Deserialize)]
struct StoredTopic {
    paused: bool,
    channels: Vec<ChannelMetadata>,
}

/// The metadata store of one node.
#[derive(Debug)]
pub struct Metadata {
    nsqd: Arc<Nsqd>,
    db: sled::Db,
    topics: sled::Tree,
    dat_path: PathBuf,
    /// One writer at a time, so an older snapshot never overwrites a newer one.
    writing: tokio::sync::Mutex<()>,
}

fn store_error(err: impl std::fmt::Display) -> NsqdError {
    NsqdError::Metadata(err.to_string())
}

impl Metadata {
    /// Opens (or creates) the store under `data_path`.
    pub fn open(data_path: &Path, nsqd: Arc<Nsqd>) -> Result<Self, NsqdError> {
        let db = sled::Config::new()
            .path(data_path.join(SLED_DIR))
            .cache_capacity(8 * 1024 * 1024)
            // We flush explicitly after each write; no background flusher thread is needed.
            .flush_every_ms(None)
            .open()
            .map_err(store_error)?;
        let topics = db.open_tree(TOPICS_TREE).map_err(store_error)?;
        Ok(Self {
            nsqd,
            db,
            topics,
            dat_path: data_path.join(DAT_FILE),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// What to restore: our store if it was ever written, else an upstream `nsqd.dat`, else
    /// nothing.
    pub fn load(&self) -> Result<NodeMetadata, NsqdError> {
        if self.db.contains_key(FORMAT_KEY).map_err(store_error)? {
            return self.load_store();
        }
        match std::fs::read(&self.dat_path) {
            Ok(raw) => {
                let metadata: NodeMetadata = serde_json::from_slice(&raw).map_err(|err| {
                    NsqdError::Metadata(format!(
                        "failed to parse metadata in {} - {err}",
                        self.dat_path.display()
                    ))
                })?;
                tracing::info!(
                    "importing {} topics from {}",
                    metadata.topics.len(),
                    self.dat_path.display()
                );
                Ok(metadata)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(NodeMetadata::default()),
            Err(err) => Err(NsqdError::Metadata(format!(
                "failed to read metadata from {} - {err}",
                self.dat_path.display()
            ))),
        }
    }

    fn load_store(&self) -> Result<NodeMetadata, NsqdError> {
        let mut topics = Vec::new();
        for entry in self.topics.iter() {
            let (key, value) = entry.map_err(store_error)?;
            let name = String::from_utf8_lossy(&key).into_owned();
            let stored: StoredTopic = match serde_json::from_slice(&value) {
                Ok(stored) => stored,
                Err(err) => {
                    tracing::warn!(topic = %name, "skipping unreadable metadata - {err}");
                    continue;
                }
            };
            topics.push(TopicMetadata {
                name,
                paused: stored.paused,
                channels: (!stored.channels.is_empty()).then_some(stored.channels),
            });
        }
        Ok(NodeMetadata {
            topics,
            version: nsq_protocol::NSQ_VERSION.to_owned(),
        })
    }

    /// Creates the topics and channels of `metadata` with their paused flags.
    pub fn restore(&self, metadata: &NodeMetadata) {
        for entry in &metadata.topics {
            let topic_name = match TopicName::try_from(entry.name.as_str()) {
                Ok(name) if !name.is_ephemeral() => name,
                Ok(_) => continue,
                Err(_) => {
                    tracing::warn!("skipping creation of invalid topic {:?}", entry.name);
                    continue;
                }
            };
            let topic = self.nsqd.topic(&topic_name);
            if entry.paused {
                topic.set_paused(true);
            }
            let channels: Vec<(ChannelName, bool)> = entry
                .channels
                .iter()
                .flatten()
                .filter_map(
                    |channel| match ChannelName::try_from(channel.name.as_str()) {
                        Ok(name) if !name.is_ephemeral() => Some((name, channel.paused)),
                        Ok(_) => None,
                        Err(_) => {
                            tracing::warn!(
                                topic = %topic_name,
                                "skipping creation of invalid channel {:?}",
                                channel.name
                            );
                            None
                        }
                    },
                )
                .collect();
            let names: Vec<ChannelName> = channels.iter().map(|(name, _)| name.clone()).collect();
            topic.create_channels(&names);
            for (name, paused) in channels {
                if paused && let Some(channel) = topic.channel(name.as_str()) {
                    channel.set_paused(true);
                }
            }
        }
    }

    /// The node's current non-ephemeral topics and channels.
    pub fn snapshot(nsqd: &Nsqd) -> NodeMetadata {
        let topics = nsqd
            .topics()
            .into_iter()
            .filter(|topic| !topic.is_ephemeral())
            .map(|topic| {
                let channels: Vec<ChannelMetadata> = topic
                    .channel_names()
                    .into_iter()
                    .filter(|name| !name.is_ephemeral())
                    .filter_map(|name| {
                        let channel = topic.channel(name.as_str())?;
                        Some(ChannelMetadata {
                            name: name.to_string(),
                            paused: channel.is_paused(),
                        })
                    })
                    .collect();
                TopicMetadata {
                    name: topic.name.to_string(),
                    paused: topic.is_paused(),
                    channels: (!channels.is_empty()).then_some(channels),
                }
            })
            .collect();
        NodeMetadata {
            topics,
            version: nsq_protocol::NSQ_VERSION.to_owned(),
        }
    }

    /// Writes `metadata` (blocking I/O: call from a blocking context).
    pub fn write(&self, metadata: &NodeMetadata) -> Result<(), NsqdError> {
        let mut batch = sled::Batch::default();
        let mut present = std::collections::HashSet::new();
        for topic in &metadata.topics {
            let stored = StoredTopic {
                paused: topic.paused,
                channels: topic.channels.clone().unwrap_or_default(),
            };
            let value = serde_json::to_vec(&stored).map_err(store_error)?;
            batch.insert(topic.name.as_bytes(), value);
            present.insert(topic.name.as_bytes().to_vec());
        }
        for key in self.topics.iter().keys() {
            let key = key.map_err(store_error)?;
            if !present.contains(key.as_ref()) {
                batch.remove(key);
            }
        }
        self.topics.apply_batch(batch).map_err(store_error)?;
        self.db
            .insert(FORMAT_KEY, FORMAT_VERSION)
            .map_err(store_error)?;
        self.db.flush().map_err(store_error)?;
        write_dat(&self.dat_path, metadata)
    }

    /// Snapshots the node and writes it now (HTTP pause/unpause, events, shutdown).
    pub async fn persist(self: &Arc<Self>) {
        let _writing = self.writing.lock().await;
        let metadata = Self::snapshot(&self.nsqd);
        let store = Arc::clone(self);
        match tokio::task::spawn_blocking(move || store.write(&metadata)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!("failed to persist metadata - {err}"),
            Err(err) => tracing::error!("failed to persist metadata - {err}"),
        }
    }

    /// Follows topic/channel creations and deletions and persists after each burst, until
    /// `shutdown`. Subscribe before the first change that must be seen.
    pub async fn follow_events(
        self: Arc<Self>,
        mut events: tokio::sync::broadcast::Receiver<RegistryEvent>,
        shutdown: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.recv() => event,
            };
            let mut dirty = match first {
                Ok(event) => is_persistent(&event),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            };
            // Everything that queued up meanwhile is covered by the same snapshot.
            loop {
                match events.try_recv() {
                    Ok(event) => dirty |= is_persistent(&event),
                    Err(TryRecvError::Lagged(_)) => dirty = true,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => break,
                }
            }
            if dirty {
                self.persist().await;
            }
        }
    }
}

fn is_persistent(event: &RegistryEvent) -> bool {
    match event {
        RegistryEvent::TopicCreated(topic) | RegistryEvent::TopicDeleted(topic) => {
            !topic.is_ephemeral()
        }
        RegistryEvent::ChannelCreated(topic, channel)
        | RegistryEvent::ChannelDeleted(topic, channel) => {
            !topic.is_ephemeral() && !channel.is_ephemeral()
        }
    }
}

/// Writes upstream's `nsqd.dat` atomically: temp file, fsync, rename.
fn write_dat(path: &Path, metadata: &NodeMetadata) -> Result<(), NsqdError> {
    let json = serde_json::to_vec(metadata).map_err(store_error)?;
    let tmp = path.with_file_name(format!("{DAT_FILE}.{}.tmp", rand::random::<u32>()));
    let result = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|err| NsqdError::Metadata(format!("failed to write {} - {err}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dat_format_matches_upstream() {
        let metadata = NodeMetadata {
            topics: vec![
                TopicMetadata {
                    name: "t".to_owned(),
                    paused: false,
                    channels: Some(vec![ChannelMetadata {
                        name: "c".to_owned(),
                        paused: true,
                    }]),
                },
                TopicMetadata {
                    name: "h1".to_owned(),
                    paused: true,
                    channels: None,
                },
            ],
            version: "1.3.0".to_owned(),
        };
        assert_eq!(
            serde_json::to_string(&metadata).unwrap(),
            r#"{"topics":[{"name":"t","paused":false,"channels":[{"name":"c","paused":true}]},{"name":"h1","paused":true,"channels":null}],"version":"1.3.0"}"#
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DAT_FILE);
        write_dat(&path, &metadata).unwrap();
        let back: NodeMetadata = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, metadata);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn parses_the_upstream_fixture_shape() {
        let raw = r#"{"topics":[{"name":"orders","paused":false,"channels":[{"name":"billing","paused":false},{"name":"audit","paused":true}]},{"name":"events","paused":true,"channels":[{"name":"all","paused":false}]}],"version":"1.3.0"}"#;
        let metadata: NodeMetadata = serde_json::from_str(raw).unwrap();
        assert_eq!(metadata.topics.len(), 2);
        assert!(metadata.topics[1].paused);
        assert!(metadata.topics[0].channels.as_ref().unwrap()[1].paused);
    }
}
