//! The directory: which nsqd (producer) has which topic and channel.
//!
//! A [`Registration`] (`client::`, `topic:T:` or `channel:T:C`) maps to the producers holding it,
//! keyed by peer id (the nsqd's lookupd connection address). Keys outlive their producers: removing
//! the last producer leaves an empty key, which still shows in `/topics`, `/channels` and makes
//! `/lookup` answer 200. Only explicit deletion and the `#ephemeral` UNREGISTER rule remove keys.
//!
//! Liveness is evaluated when a query runs (no sweeper task), from the caller's `now`:
//! a producer is *inactive* once `now - last_update > inactive_producer_timeout` and *tombstoned*
//! for a registration while `now - tombstoned_at < tombstone_lifetime`.
//!
//! A key or subkey of `"*"` in [`RegistrationDb::find_registrations`] and
//! [`RegistrationDb::find_producers`] is a wildcard, as upstream; the HTTP API passes its
//! (unvalidated) arguments straight through, so `/channels?topic=*` lists every channel.
//!
//! Pure and synchronous: no I/O, no clock reads. The daemon keeps it behind one `RwLock`.

use nsq_protocol::lookup::{
    DebugProducer, DebugResponse, GO_ZERO_TIME_UNIX_NANOS, LookupResponse, NodeInfo, NodesResponse,
    PeerInfo, ProducerInfo,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wildcard key / subkey.
pub const WILDCARD: &str = "*";

/// The three kinds of registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// One per identified nsqd connection (key and subkey empty): the list behind `/nodes`.
    Client,
    /// `topic:T:`.
    Topic,
    /// `channel:T:C`.
    Channel,
}

impl Category {
    /// Upstream's spelling (`client`, `topic`, `channel`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Client => "client",
            Category::Topic => "topic",
            Category::Channel => "channel",
        }
    }
}

/// A registration key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Registration {
    /// What kind of key this is.
    pub category: Category,
    /// The topic (empty for [`Category::Client`]).
    pub key: String,
    /// The channel (empty unless [`Category::Channel`]).
    pub subkey: String,
}

impl Registration {
    /// `client::`.
    pub fn client() -> Self {
        Self::new(Category::Client, "", "")
    }

    /// `topic:<topic>:`.
    pub fn topic(topic: &str) -> Self {
        Self::new(Category::Topic, topic, "")
    }

    /// `channel:<topic>:<channel>`.
    pub fn channel(topic: &str, channel: &str) -> Self {
        Self::new(Category::Channel, topic, channel)
    }

    /// Any registration.
    pub fn new(category: Category, key: &str, subkey: &str) -> Self {
        Self {
            category,
            key: key.to_owned(),
            subkey: subkey.to_owned(),
        }
    }

    /// Whether this key matches a query where `"*"` matches any key or subkey.
    pub fn is_match(&self, category: Category, key: &str, subkey: &str) -> bool {
        self.category == category
            && (key == WILDCARD || self.key == key)
            && (subkey == WILDCARD || self.subkey == subkey)
    }
}

impl fmt::Display for Registration {
    /// `<category>:<key>:<subkey>`, the `/debug` key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.category.as_str(), self.key, self.subkey)
    }
}

/// An identified nsqd connection. Shared by every registration it holds, so a PING refreshes
/// them all at once.
#[derive(Debug)]
pub struct Peer {
    /// The connection's remote address (`ip:port`): the producer's identity and `remote_address`.
    pub id: String,
    /// What the nsqd said in IDENTIFY.
    pub info: PeerInfo,
    /// Last IDENTIFY or PING, Unix nanoseconds.
    last_update: AtomicI64,
}

impl Peer {
    /// A peer identified at `now`.
    pub fn new(id: String, info: PeerInfo, now: SystemTime) -> Self {
        Self {
            id,
            info,
            last_update: AtomicI64::new(unix_nanos(now)),
        }
    }

    /// Records a PING at `now`.
    pub fn touch(&self, now: SystemTime) {
        self.last_update.store(unix_nanos(now), Ordering::Relaxed);
    }

    /// Last IDENTIFY or PING, Unix nanoseconds.
    pub fn last_update_unix_nanos(&self) -> i64 {
        self.last_update.load(Ordering::Relaxed)
    }

    /// Whether the peer has been silent for longer than `inactive_timeout`.
    pub fn is_inactive(&self, now: SystemTime, inactive_timeout: Duration) -> bool {
        let elapsed_nanos = unix_nanos(now).saturating_sub(self.last_update_unix_nanos());
        i128::from(elapsed_nanos) > inactive_timeout.as_nanos() as i128
    }

    /// `<broadcast_address>:<http_port>`, the node string `/topic/tombstone` compares against.
    pub fn node_address(&self) -> String {
        format!("{}:{}", self.info.broadcast_address, self.info.http_port)
    }

    /// The `/lookup` producer object.
    pub fn producer_info(&self) -> ProducerInfo {
        ProducerInfo {
            remote_address: self.id.clone(),
            hostname: self.info.hostname.clone(),
            broadcast_address: self.info.broadcast_address.clone(),
            tcp_port: self.info.tcp_port,
            http_port: self.info.http_port,
            version: self.info.version.clone(),
            topology_zone: self.info.topology_zone.clone(),
            topology_region: self.info.topology_region.clone(),
        }
    }
}

/// One peer's entry under one registration.
#[derive(Debug, Clone)]
pub struct Producer {
    /// The nsqd.
    pub peer: Arc<Peer>,
    /// When this producer was tombstoned for this registration, if ever. Never cleared: it simply
    /// stops mattering after the tombstone lifetime.
    pub tombstoned_at: Option<SystemTime>,
}

impl Producer {
    /// A fresh, untombstoned entry.
    pub fn new(peer: Arc<Peer>) -> Self {
        Self {
            peer,
            tombstoned_at: None,
        }
    }

    /// Whether the tombstone (if any) is younger than `lifetime`.
    pub fn is_tombstoned(&self, now: SystemTime, lifetime: Duration) -> bool {
        self.tombstoned_at.is_some_and(|at| {
            let elapsed_nanos = i128::from(unix_nanos(now)) - i128::from(unix_nanos(at));
            elapsed_nanos < lifetime.as_nanos() as i128
        })
    }

    /// Neither inactive nor tombstoned (upstream's `FilterByActive`).
    pub fn is_active(&self, now: SystemTime, liveness: Liveness) -> bool {
        !self
            .peer
            .is_inactive(now, liveness.inactive_producer_timeout)
            && !self.is_tombstoned(now, liveness.tombstone_lifetime)
    }
}

/// The two time limits queries apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// `--inactive-producer-timeout`.
    pub inactive_producer_timeout: Duration,
    /// `--tombstone-lifetime`.
    pub tombstone_lifetime: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            inactive_producer_timeout: Duration::from_secs(300),
            tombstone_lifetime: Duration::from_secs(45),
        }
    }
}

/// What an UNREGISTER changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unregistered {
    /// Registrations the peer was removed from.
    pub removed: Vec<Registration>,
    /// Channel registrations a topic-level UNREGISTER removed the peer from (upstream logs these
    /// as unexpected: nsqd unregisters its channels first).
    pub unexpected: Vec<Registration>,
    /// Empty `#ephemeral` keys that were deleted.
    pub deleted: Vec<Registration>,
}

/// Registration → producers (keyed by peer id). Iteration is sorted, so answers are stable.
#[derive(Debug, Default)]
pub struct RegistrationDb {
    registrations: BTreeMap<Registration, BTreeMap<String, Producer>>,
}

impl RegistrationDb {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates the key with no producers if it does not exist. Returns whether it was created.
    pub fn add_registration(&mut self, registration: Registration) -> bool {
        let created = !self.registrations.contains_key(&registration);
        self.registrations.entry(registration).or_default();
        created
    }

    /// Adds `peer` under `registration` (creating the key). An existing entry for the same peer id
    /// is kept as it is, tombstone included. Returns whether the peer was added.
    pub fn add_producer(&mut self, registration: Registration, peer: &Arc<Peer>) -> bool {
        let producers = self.registrations.entry(registration).or_default();
        if producers.contains_key(&peer.id) {
            return false;
        }
        producers.insert(peer.id.clone(), Producer::new(Arc::clone(peer)));
        true
    }

    /// Removes peer `id` from `registration`; the key stays even when it becomes empty. Returns
    /// whether the peer was there and how many producers are left (0 if the key does not exist).
    pub fn remove_producer(&mut self, registration: &Registration, id: &str) -> (bool, usize) {
        match self.registrations.get_mut(registration) {
            Some(producers) => {
                let removed = producers.remove(id).is_some();
                (removed, producers.len())
            }
            None => (false, 0),
        }
    }

    /// Deletes a key and its producers. Returns whether it existed.
    pub fn remove_registration(&mut self, registration: &Registration) -> bool {
        self.registrations.remove(registration).is_some()
    }

    /// Keys matching the query (`"*"` = any key / subkey).
    pub fn find_registrations(
        &self,
        category: Category,
        key: &str,
        subkey: &str,
    ) -> Vec<Registration> {
        self.matching(category, key, subkey)
            .map(|(registration, _)| registration.clone())
            .collect()
    }

    /// Producers of the matching keys, each peer once (its entry under the first matching key).
    pub fn find_producers(&self, category: Category, key: &str, subkey: &str) -> Vec<&Producer> {
        let mut seen = std::collections::HashSet::new();
        self.matching(category, key, subkey)
            .flat_map(|(_, producers)| producers.values())
            .filter(|producer| seen.insert(producer.peer.id.as_str()))
            .collect()
    }

    /// Every key peer `id` is registered under.
    pub fn lookup_registrations(&self, id: &str) -> Vec<Registration> {
        self.registrations
            .iter()
            .filter(|(_, producers)| producers.contains_key(id))
            .map(|(registration, _)| registration.clone())
            .collect()
    }

    /// Every key with its producers, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Registration, impl Iterator<Item = &Producer>)> {
        self.registrations
            .iter()
            .map(|(registration, producers)| (registration, producers.values()))
    }

    /// IDENTIFY: adds the peer under `client::`.
    pub fn identify(&mut self, peer: &Arc<Peer>) -> bool {
        self.add_producer(Registration::client(), peer)
    }

    /// REGISTER: adds the peer to `channel:T:C` (if a channel is given) and to `topic:T`. Returns
    /// the registrations it was newly added to.
    pub fn register(
        &mut self,
        peer: &Arc<Peer>,
        topic: &str,
        channel: Option<&str>,
    ) -> Vec<Registration> {
        let mut added = Vec::new();
        let mut keys = Vec::with_capacity(2);
        if let Some(channel) = channel {
            keys.push(Registration::channel(topic, channel));
        }
        keys.push(Registration::topic(topic));
        for registration in keys {
            if self.add_producer(registration.clone(), peer) {
                added.push(registration);
            }
        }
        added
    }

    /// UNREGISTER, with upstream's rules:
    /// * with a channel: removes the peer from `channel:T:C`; if no producer is left and the
    ///   channel ends in `#ephemeral`, deletes that key;
    /// * without: removes the peer from every `channel:T:*` and from `topic:T`; if no producer is
    ///   left on the topic and it ends in `#ephemeral`, deletes the topic key (channel keys stay).
    pub fn unregister(&mut self, id: &str, topic: &str, channel: Option<&str>) -> Unregistered {
        let mut outcome = Unregistered::default();
        let ephemeral = |name: &str| name.ends_with(nsq_protocol::names::EPHEMERAL_SUFFIX);
        let (registration, name) = match channel {
            Some(channel) => (Registration::channel(topic, channel), channel),
            None => {
                for registration in self.find_registrations(Category::Channel, topic, WILDCARD) {
                    if self.remove_producer(&registration, id).0 {
                        outcome.unexpected.push(registration.clone());
                        outcome.removed.push(registration);
                    }
                }
                (Registration::topic(topic), topic)
            }
        };
        let (removed, left) = self.remove_producer(&registration, id);
        if removed {
            outcome.removed.push(registration.clone());
        }
        if left == 0 && ephemeral(name) && self.remove_registration(&registration) {
            outcome.deleted.push(registration);
        }
        outcome
    }

    /// A closed connection: removes the peer from every key it holds (keys stay). Returns those
    /// keys.
    pub fn remove_peer(&mut self, id: &str) -> Vec<Registration> {
        self.registrations
            .iter_mut()
            .filter_map(|(registration, producers)| {
                producers.remove(id).map(|_| registration.clone())
            })
            .collect()
    }

    /// `POST /topic/delete`: deletes every `channel:T:*` key, then `topic:T`. Returns the deleted
    /// keys.
    pub fn delete_topic(&mut self, topic: &str) -> Vec<Registration> {
        let mut deleted = self.find_registrations(Category::Channel, topic, WILDCARD);
        deleted.extend(self.find_registrations(Category::Topic, topic, ""));
        for registration in &deleted {
            self.remove_registration(registration);
        }
        deleted
    }

    /// `POST /topic/tombstone`: marks, at `now`, every producer of the matching topic keys whose
    /// `broadcast_address:http_port` is `node`. Returns how many entries were marked.
    pub fn tombstone(&mut self, topic: &str, node: &str, now: SystemTime) -> usize {
        let mut marked = 0;
        for (registration, producers) in self.registrations.iter_mut() {
            if !registration.is_match(Category::Topic, topic, "") {
                continue;
            }
            for producer in producers.values_mut() {
                if producer.peer.node_address() == node {
                    producer.tombstoned_at = Some(now);
                    marked += 1;
                }
            }
        }
        marked
    }

    /// `GET /topics`: every topic key.
    pub fn topics(&self) -> Vec<String> {
        self.matching(Category::Topic, WILDCARD, "")
            .map(|(registration, _)| registration.key.clone())
            .collect()
    }

    /// `GET /channels?topic=T`: every channel key of T.
    pub fn channels(&self, topic: &str) -> Vec<String> {
        self.matching(Category::Channel, topic, WILDCARD)
            .map(|(registration, _)| registration.subkey.clone())
            .collect()
    }

    /// `GET /lookup?topic=T`: `None` when no `topic:T` key exists; otherwise all channel keys and
    /// the active producers of T.
    pub fn lookup(
        &self,
        topic: &str,
        now: SystemTime,
        liveness: Liveness,
    ) -> Option<LookupResponse> {
        self.matching(Category::Topic, topic, "").next()?;
        Some(LookupResponse {
            channels: self.channels(topic),
            producers: self
                .find_producers(Category::Topic, topic, "")
                .into_iter()
                .filter(|producer| producer.is_active(now, liveness))
                .map(|producer| producer.peer.producer_info())
                .collect(),
        })
    }

    /// `GET /nodes`: every identified peer that is not inactive (tombstones do not hide nodes),
    /// with its topics and whether it is tombstoned for each.
    pub fn nodes(&self, now: SystemTime, liveness: Liveness) -> NodesResponse {
        let producers = self
            .find_producers(Category::Client, "", "")
            .into_iter()
            .filter(|client| {
                !client
                    .peer
                    .is_inactive(now, liveness.inactive_producer_timeout)
            })
            .map(|client| {
                let peer = &client.peer;
                let topic_entries: Vec<(String, bool)> = self
                    .matching(Category::Topic, WILDCARD, "")
                    .filter_map(|(registration, producers)| {
                        producers.get(&peer.id).map(|producer| {
                            (
                                registration.key.clone(),
                                producer.is_tombstoned(now, liveness.tombstone_lifetime),
                            )
                        })
                    })
                    .collect();
                let info = peer.producer_info();
                NodeInfo {
                    remote_address: info.remote_address,
                    hostname: info.hostname,
                    broadcast_address: info.broadcast_address,
                    tcp_port: info.tcp_port,
                    http_port: info.http_port,
                    version: info.version,
                    topology_zone: info.topology_zone,
                    topology_region: info.topology_region,
                    tombstones: topic_entries
                        .iter()
                        .map(|(_, tombstoned)| *tombstoned)
                        .collect(),
                    topics: topic_entries.into_iter().map(|(topic, _)| topic).collect(),
                }
            })
            .collect();
        NodesResponse { producers }
    }

    /// `GET /debug`: every key that has producers, with a dump of each.
    pub fn debug(&self) -> DebugResponse {
        self.registrations
            .iter()
            .filter(|(_, producers)| !producers.is_empty())
            .map(|(registration, producers)| {
                let dumps = producers
                    .values()
                    .map(|producer| DebugProducer {
                        broadcast_address: producer.peer.info.broadcast_address.clone(),
                        hostname: producer.peer.info.hostname.clone(),
                        http_port: producer.peer.info.http_port,
                        id: producer.peer.id.clone(),
                        last_update: producer.peer.last_update_unix_nanos(),
                        tcp_port: producer.peer.info.tcp_port,
                        tombstoned: producer.tombstoned_at.is_some(),
                        tombstoned_at: producer
                            .tombstoned_at
                            .map_or(GO_ZERO_TIME_UNIX_NANOS, unix_nanos),
                        version: producer.peer.info.version.clone(),
                    })
                    .collect();
                (registration.to_string(), dumps)
            })
            .collect()
    }

    /// Keys matching a query. A category's keys are contiguous in the map (the category sorts
    /// first), and so are a topic's, so this is a range scan.
    fn matching<'a, 'q>(
        &'a self,
        category: Category,
        key: &'q str,
        subkey: &'q str,
    ) -> impl Iterator<Item = (&'a Registration, &'a BTreeMap<String, Producer>)> {
        let any_key = key == WILDCARD;
        let start = Registration::new(category, if any_key { "" } else { key }, "");
        self.registrations
            .range(start..)
            .take_while(move |(registration, _)| {
                registration.category == category && (any_key || registration.key == key)
            })
            .filter(move |(registration, _)| registration.is_match(category, key, subkey))
    }
}

/// Unix nanoseconds of `time` (negative before the epoch, saturating far outside i64's range).
pub fn unix_nanos(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |nanos| -nanos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC30: Duration = Duration::from_secs(30);

    fn beginning_of_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_348_797_047)
    }

    fn peer(id: &str, tcp_port: i64, http_port: i64, at: SystemTime) -> Arc<Peer> {
        Arc::new(Peer::new(
            id.to_owned(),
            PeerInfo {
                broadcast_address: "b_addr".to_owned(),
                hostname: "host".to_owned(),
                tcp_port,
                http_port,
                version: "v1".to_owned(),
                ..PeerInfo::default()
            },
            at,
        ))
    }

    fn liveness(inactive: Duration, tombstone: Duration) -> Liveness {
        Liveness {
            inactive_producer_timeout: inactive,
            tombstone_lifetime: tombstone,
        }
    }

    fn ids(producers: &[&Producer]) -> Vec<String> {
        producers
            .iter()
            .map(|producer| producer.peer.id.clone())
            .collect()
    }

    fn active_count(producers: &[&Producer], now: SystemTime, live: Liveness) -> usize {
        producers
            .iter()
            .filter(|producer| producer.is_active(now, live))
            .count()
    }

    fn key(category: &str) -> Category {
        match category {
            "c" => Category::Channel,
            "t" => Category::Topic,
            _ => Category::Client,
        }
    }

    /// Upstream's `TestRegistrationDB`, step by step. Upstream's arbitrary categories "c", "d"
    /// and "t" become Channel, Client and Topic; "a"/"b" are keys and subkeys as there.
    #[test]
    fn upstream_registration_db_test() {
        let start = beginning_of_time();
        let pi1 = peer("1", 1, 2, start);
        let pi2 = peer("2", 2, 3, start);
        let pi3 = peer("3", 3, 4, start);
        let mut db = RegistrationDb::new();

        // add producers
        assert!(db.add_producer(Registration::new(key("c"), "a", ""), &pi1));
        assert!(db.add_producer(Registration::new(key("c"), "a", ""), &pi2));
        assert!(db.add_producer(Registration::new(key("c"), "a", "b"), &pi2));
        assert!(db.add_producer(Registration::new(key("d"), "a", ""), &pi3));
        assert!(db.add_producer(Registration::new(key("t"), "a", ""), &pi1));
        assert!(!db.add_producer(Registration::new(key("t"), "a", ""), &pi1));

        // find producers
        let keys: Vec<_> = db
            .find_registrations(key("c"), "*", "")
            .into_iter()
            .map(|registration| registration.key)
            .collect();
        assert_eq!(keys, ["a"]);
        assert_eq!(db.find_producers(key("t"), "*", "").len(), 1);
        assert_eq!(db.find_producers(key("c"), "*", "").len(), 2);
        assert_eq!(db.find_producers(key("c"), "a", "").len(), 2);
        let with_subkey = db.find_producers(key("c"), "*", "b");
        assert_eq!(ids(&with_subkey), ["2"]);

        // filter by active: everything last updated at the beginning of time is inactive
        let now = start + Duration::from_secs(3600);
        let live = liveness(SEC30, SEC30);
        assert_eq!(active_count(&with_subkey, now, live), 0);
        pi2.touch(now);
        assert_eq!(active_count(&with_subkey, now, live), 1);
        let all_c = db.find_producers(key("c"), "*", "");
        assert_eq!(active_count(&all_c, now, live), 1);

        // tombstoning
        let few_sec_ago = now - Duration::from_secs(5);
        pi1.touch(few_sec_ago);
        pi2.touch(few_sec_ago);
        assert_eq!(
            active_count(&db.find_producers(key("c"), "*", ""), now, live),
            2
        );
        assert_eq!(
            db.tombstone("a", "b_addr:1", now),
            0,
            "no node has HTTP port 1"
        );
        // Upstream tombstones p1 directly under the "c" key; tombstone() only marks topic keys,
        // so mark the entry the same way.
        db.registrations
            .get_mut(&Registration::new(key("c"), "a", ""))
            .unwrap()
            .get_mut("1")
            .unwrap()
            .tombstoned_at = Some(now);
        assert_eq!(
            active_count(&db.find_producers(key("c"), "*", ""), now, live),
            1
        );
        let later = now + Duration::from_millis(10);
        assert_eq!(
            active_count(
                &db.find_producers(key("c"), "*", ""),
                later,
                liveness(SEC30, Duration::from_millis(5))
            ),
            2
        );
        // the same peer under another registration is not tombstoned (upstream #148)
        assert_eq!(
            active_count(&db.find_producers(key("t"), "*", ""), now, live),
            1
        );

        // keys and subkeys
        assert!(db.find_registrations(key("c"), "b", "").is_empty());
        assert_eq!(
            db.find_registrations(key("c"), "a", ""),
            [Registration::new(key("c"), "a", "")]
        );
        let subkeys: Vec<_> = db
            .find_registrations(key("c"), "*", "b")
            .into_iter()
            .map(|registration| registration.subkey)
            .collect();
        assert_eq!(subkeys, ["b"]);

        // removing producers
        assert_eq!(
            db.remove_producer(&Registration::new(key("c"), "a", ""), "1"),
            (true, 1)
        );
        assert_eq!(db.find_producers(key("c"), "*", "*").len(), 1);
        assert_eq!(
            db.remove_producer(&Registration::new(key("c"), "a", ""), "2"),
            (true, 0)
        );
        assert_eq!(
            db.remove_producer(&Registration::new(key("c"), "a", "b"), "2"),
            (true, 0)
        );
        assert_eq!(
            db.remove_producer(&Registration::new(key("c"), "a", "b"), "2"),
            (false, 0)
        );
        assert_eq!(
            db.remove_producer(&Registration::new(key("c"), "zz", ""), "2"),
            (false, 0)
        );
        assert!(db.find_producers(key("c"), "*", "*").is_empty());

        // do some key removals: the empty keys are still there
        assert_eq!(db.find_registrations(key("c"), "*", "*").len(), 2);
        assert!(db.remove_registration(&Registration::new(key("c"), "a", "")));
        assert!(db.remove_registration(&Registration::new(key("c"), "a", "b")));
        assert!(!db.remove_registration(&Registration::new(key("c"), "a", "b")));
        assert!(db.find_registrations(key("c"), "*", "*").is_empty());
    }

    #[test]
    fn wildcards_and_range_scans() {
        let now = beginning_of_time();
        let one = peer("1", 1, 2, now);
        let mut db = RegistrationDb::new();
        db.register(&one, "t", Some("c1"));
        db.register(&one, "t", Some("c2"));
        db.register(&one, "t2", Some("c1"));
        db.register(&one, "u", None);
        // A topic whose name sorts between "t" and "t2" must not leak into "t"'s range.
        db.add_registration(Registration::channel("t-", "x"));
        assert_eq!(db.channels("t"), ["c1", "c2"]);
        assert_eq!(db.channels("t2"), ["c1"]);
        assert_eq!(db.channels("unknown"), Vec::<String>::new());
        assert_eq!(db.channels("*"), ["c1", "c2", "x", "c1"]);
        assert_eq!(db.topics(), ["t", "t2", "u"]);
        assert_eq!(db.find_registrations(Category::Channel, "*", "c1").len(), 2);
        assert_eq!(db.find_producers(Category::Channel, "*", "*").len(), 1);
        assert_eq!(
            db.find_registrations(Category::Topic, "t", ""),
            [Registration::topic("t")]
        );
        assert!(db.find_registrations(Category::Topic, "t", "x").is_empty());
        assert_eq!(
            db.lookup("*", now, Liveness::default()).unwrap().channels,
            ["c1", "c2", "x", "c1"]
        );
        assert_eq!(db.lookup_registrations("1").len(), 6);
        assert_eq!(db.lookup_registrations("nobody").len(), 0);
    }

    #[test]
    fn register_adds_channel_and_topic_and_keeps_existing_entries() {
        let now = beginning_of_time();
        let one = peer("1", 1, 2, now);
        let mut db = RegistrationDb::new();
        assert!(db.identify(&one));
        assert!(!db.identify(&one));
        assert_eq!(
            db.register(&one, "t", Some("c")),
            [Registration::channel("t", "c"), Registration::topic("t")]
        );
        assert_eq!(db.register(&one, "t", None), []);
        assert_eq!(db.register(&one, "t", Some("c")), []);
        // A re-REGISTER keeps the tombstone.
        assert_eq!(db.tombstone("t", "b_addr:2", now), 1);
        db.register(&one, "t", None);
        let live = Liveness::default();
        assert!(db.lookup("t", now, live).unwrap().producers.is_empty());
        assert!(
            !db.lookup("t", now + live.tombstone_lifetime, live)
                .unwrap()
                .producers
                .is_empty()
        );
        assert_eq!(
            db.lookup_registrations("1"),
            [
                Registration::client(),
                Registration::topic("t"),
                Registration::channel("t", "c")
            ]
        );
    }

    #[test]
    fn unregister_rules() {
        let now = beginning_of_time();
        let one = peer("1", 1, 2, now);
        let two = peer("2", 3, 4, now);
        let mut db = RegistrationDb::new();
        db.register(&one, "t", Some("c"));
        db.register(&one, "t", Some("e#ephemeral"));
        db.register(&two, "t", Some("e#ephemeral"));

        // Channel UNREGISTER: the key stays while another producer has it or it is durable.
        let outcome = db.unregister("1", "t", Some("e#ephemeral"));
        assert_eq!(outcome.removed, [Registration::channel("t", "e#ephemeral")]);
        assert!(outcome.deleted.is_empty());
        let outcome = db.unregister("2", "t", Some("e#ephemeral"));
        assert_eq!(outcome.deleted, [Registration::channel("t", "e#ephemeral")]);
        assert_eq!(db.channels("t"), ["c"]);
        // Not registered: still fine, nothing changes; an absent ephemeral key is not "deleted".
        assert_eq!(
            db.unregister("1", "t", Some("e#ephemeral")),
            Unregistered::default()
        );
        assert_eq!(db.unregister("1", "never", None), Unregistered::default());

        // Topic UNREGISTER removes the peer from every channel of the topic, keys stay.
        let outcome = db.unregister("1", "t", None);
        assert_eq!(outcome.unexpected, [Registration::channel("t", "c")]);
        assert_eq!(
            outcome.removed,
            [Registration::channel("t", "c"), Registration::topic("t")]
        );
        assert!(outcome.deleted.is_empty());
        let lookup = db.lookup("t", now, Liveness::default()).unwrap();
        assert_eq!(lookup.channels, ["c"]);
        assert_eq!(lookup.producers.len(), 1);
        assert_eq!(lookup.producers[0].remote_address, "2");
        assert_eq!(
            db.unregister("2", "t", None).removed,
            [Registration::topic("t")]
        );
        assert!(
            db.lookup("t", now, Liveness::default())
                .unwrap()
                .producers
                .is_empty()
        );
        assert_eq!(db.topics(), ["t"]);

        // Ephemeral topic: its key goes once empty, its channel keys stay (even ephemeral ones).
        db.register(&one, "x#ephemeral", Some("c#ephemeral"));
        db.register(&two, "x#ephemeral", None);
        let outcome = db.unregister("1", "x#ephemeral", None);
        assert!(outcome.deleted.is_empty());
        let outcome = db.unregister("2", "x#ephemeral", None);
        assert_eq!(outcome.deleted, [Registration::topic("x#ephemeral")]);
        assert!(db.lookup("x#ephemeral", now, Liveness::default()).is_none());
        assert_eq!(db.channels("x#ephemeral"), ["c#ephemeral"]);

        // An ephemeral channel key created without producers (HTTP) goes on any UNREGISTER of it.
        db.add_registration(Registration::channel("t", "h#ephemeral"));
        assert_eq!(
            db.unregister("1", "t", Some("h#ephemeral")).deleted,
            [Registration::channel("t", "h#ephemeral")]
        );
    }

    #[test]
    fn disconnect_removes_peer_but_keeps_keys() {
        let now = beginning_of_time();
        let one = peer("1", 1, 2, now);
        let two = peer("2", 3, 4, now);
        let mut db = RegistrationDb::new();
        db.identify(&one);
        db.identify(&two);
        db.register(&one, "t", Some("c"));
        db.register(&one, "e#ephemeral", Some("x#ephemeral"));
        db.register(&two, "t", None);
        let removed = db.remove_peer("1");
        assert_eq!(removed.len(), 5);
        assert!(db.lookup_registrations("1").is_empty());
        assert_eq!(db.topics(), ["e#ephemeral", "t"]);
        assert_eq!(db.channels("e#ephemeral"), ["x#ephemeral"]);
        let lookup = db.lookup("t", now, Liveness::default()).unwrap();
        assert_eq!(lookup.producers.len(), 1);
        assert_eq!(lookup.producers[0].remote_address, "2");
        assert_eq!(db.nodes(now, Liveness::default()).producers.len(), 1);
        assert!(db.remove_peer("1").is_empty());
    }

    #[test]
    fn http_create_and_delete() {
        let now = beginning_of_time();
        let one = peer("1", 1, 2, now);
        let mut db = RegistrationDb::new();
        assert!(db.lookup("t", now, Liveness::default()).is_none());
        assert!(db.add_registration(Registration::topic("t")));
        assert!(!db.add_registration(Registration::topic("t")));
        assert_eq!(
            db.lookup("t", now, Liveness::default()),
            Some(LookupResponse::default())
        );
        db.register(&one, "t", Some("c"));
        db.add_registration(Registration::channel("t", "d"));
        db.register(&one, "other", Some("c"));
        let deleted = db.delete_topic("t");
        assert_eq!(
            deleted,
            [
                Registration::channel("t", "c"),
                Registration::channel("t", "d"),
                Registration::topic("t")
            ]
        );
        assert!(db.lookup("t", now, Liveness::default()).is_none());
        assert!(db.channels("t").is_empty());
        assert_eq!(db.topics(), ["other"]);
        assert!(db.delete_topic("never").is_empty());
        // The peer's other registrations are untouched.
        assert_eq!(db.lookup_registrations("1").len(), 2);
        // "*" deletes everything, as upstream.
        db.add_registration(Registration::topic("t"));
        assert_eq!(db.delete_topic("*").len(), 3);
        assert!(db.topics().is_empty());
    }

    #[test]
    fn tombstones_hide_from_lookup_only_for_their_lifetime() {
        let now = beginning_of_time();
        let one = peer("1", 4150, 4151, now);
        let two = peer("2", 5150, 5151, now);
        let mut db = RegistrationDb::new();
        for peer in [&one, &two] {
            db.identify(peer);
            db.register(peer, "t", Some("c"));
            db.register(peer, "u", None);
        }
        let live = liveness(Duration::from_secs(300), Duration::from_secs(45));
        assert_eq!(db.tombstone("t", "b_addr:1", now), 0);
        assert_eq!(db.tombstone("unknown", "b_addr:5151", now), 0);
        assert_eq!(db.tombstone("t", "b_addr:5151", now), 1);

        let lookup = db.lookup("t", now, live).unwrap();
        assert_eq!(lookup.producers.len(), 1);
        assert_eq!(lookup.producers[0].remote_address, "1");
        assert_eq!(db.lookup("u", now, live).unwrap().producers.len(), 2);
        let nodes = db.nodes(now, live);
        assert_eq!(nodes.producers.len(), 2);
        let node_two = &nodes.producers[1];
        assert_eq!(node_two.remote_address, "2");
        assert_eq!(node_two.topics, ["t", "u"]);
        assert_eq!(node_two.tombstones, [true, false]);
        assert_eq!(nodes.producers[0].tombstones, [false, false]);

        // Still hidden just before the lifetime ends, back at the lifetime (strict <).
        let almost = now + Duration::from_secs(45) - Duration::from_nanos(1);
        assert_eq!(db.lookup("t", almost, live).unwrap().producers.len(), 1);
        let after = now + Duration::from_secs(45);
        assert_eq!(db.lookup("t", after, live).unwrap().producers.len(), 2);
        assert_eq!(
            db.nodes(after, live).producers[1].tombstones,
            [false, false]
        );
        let debug = db.debug();
        let dumps = &debug["topic:t:"];
        assert!(dumps[1].tombstoned);
        assert_eq!(dumps[1].tombstoned_at, unix_nanos(now));
        assert!(!dumps[0].tombstoned);
        assert_eq!(dumps[0].tombstoned_at, GO_ZERO_TIME_UNIX_NANOS);

        // "*" tombstones the node in every topic.
        assert_eq!(db.tombstone("*", "b_addr:4151", after), 2);
        assert!(db.lookup("u", after, live).unwrap().producers.len() == 1);
    }

    #[test]
    fn inactive_producers_are_hidden_until_they_ping() {
        let start = beginning_of_time();
        let one = peer("1", 1, 2, start);
        let mut db = RegistrationDb::new();
        db.identify(&one);
        db.register(&one, "t", None);
        let live = liveness(Duration::from_secs(300), Duration::from_secs(45));
        let at_limit = start + Duration::from_secs(300);
        assert_eq!(db.lookup("t", at_limit, live).unwrap().producers.len(), 1);
        assert_eq!(db.nodes(at_limit, live).producers.len(), 1);
        let past = at_limit + Duration::from_nanos(1);
        assert!(db.lookup("t", past, live).unwrap().producers.is_empty());
        assert!(db.nodes(past, live).producers.is_empty());
        // The key is still there, and a PING brings the producer back everywhere.
        assert_eq!(db.topics(), ["t"]);
        one.touch(past);
        assert_eq!(db.lookup("t", past, live).unwrap().producers.len(), 1);
        assert_eq!(db.nodes(past, live).producers.len(), 1);
        assert_eq!(db.debug()["client::"][0].last_update, unix_nanos(past));
        // A clock that went backwards does not make anyone inactive.
        assert!(!one.is_inactive(start, Duration::ZERO));
    }

    #[test]
    fn nodes_and_debug_shapes() {
        let now = beginning_of_time();
        let one = peer("127.0.0.1:1000", 4150, 4151, now);
        let mut db = RegistrationDb::new();
        assert!(db.nodes(now, Liveness::default()).producers.is_empty());
        assert!(db.debug().is_empty());
        db.identify(&one);
        db.register(&one, "t", Some("c"));
        db.add_registration(Registration::topic("empty"));
        let node = &db.nodes(now, Liveness::default()).producers[0];
        assert_eq!(
            (node.remote_address.as_str(), node.tcp_port, node.http_port),
            ("127.0.0.1:1000", 4150, 4151)
        );
        assert_eq!(node.topics, ["t"]);
        let debug = db.debug();
        assert_eq!(
            debug.keys().collect::<Vec<_>>(),
            ["channel:t:c", "client::", "topic:t:"]
        );
        assert_eq!(debug["client::"][0].id, "127.0.0.1:1000");
        assert_eq!(debug["client::"][0].last_update, unix_nanos(now));
        // A peer not identified (no client key) is not a node.
        let two = peer("2", 1, 1, now);
        db.register(&two, "t", None);
        assert_eq!(db.nodes(now, Liveness::default()).producers.len(), 1);
        assert_eq!(Registration::channel("t", "c").to_string(), "channel:t:c");
        assert_eq!(Registration::client().to_string(), "client::");
    }

    #[test]
    fn unix_nanos_handles_both_sides_of_the_epoch() {
        assert_eq!(unix_nanos(UNIX_EPOCH), 0);
        assert_eq!(unix_nanos(UNIX_EPOCH + Duration::from_nanos(5)), 5);
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_nanos(5)), -5);
    }
}
