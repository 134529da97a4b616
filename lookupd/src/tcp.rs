//! The TCP listener: one task per nsqd peer speaking the lookupd "V1" protocol.
//!
//! A peer sends the magic `"  V1"` (anything else: `E_BAD_PROTOCOL`, close), then commands decoded
//! by [`LookupServerCodec`]. Every error is fatal: the error payload is written and the connection
//! closed. However the connection ends, the peer is removed from every registration it held (the
//! keys stay).

use crate::Shared;
use crate::registration_db::Peer;
use futures::{SinkExt, StreamExt};
use nsq_protocol::ClientError;
use nsq_protocol::ProtocolError;
use nsq_protocol::lookup::{LookupCommand, LookupServerCodec, MAGIC_V1, OK, write_response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// How long to wait before accepting again after `accept` failed (e.g. out of file descriptors).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// After a fatal error, how long (and how many bytes) we keep reading what the peer still sends,
/// so that closing does not reset the connection before the peer has read the error.
const LINGER_TIME: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 64 * 1024;

/// Accepts peers until `stop` is cancelled; each runs on `tracker`.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                // Like Go, show an IPv4 peer on a dual-stack listener as plain IPv4.
                let remote = SocketAddr::new(remote.ip().to_canonical(), remote.port());
                let span = info_span!("client", %remote);
                tracker.spawn(
                    handle(stream, remote, Arc::clone(&shared), stop.clone()).instrument(span),
                );
            }
            Err(err) => {
                warn!("temporary Accept() failure - {err}");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_RETRY_DELAY) => {}
                }
            }
        }
    }
    info!("TCP: closing {}", shared.tcp_addr);
}

async fn handle(
    mut stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    info!("TCP: new client({remote})");
    if let Err(err) = stream.set_nodelay(true) {
        debug!("failed to set TCP_NODELAY - {err}");
    }
    let mut magic = [0u8; 4];
    let read = tokio::select! {
        () = stop.cancelled() => return,
        read = stream.read_exact(&mut magic) => read,
    };
    if let Err(err) = read {
        error!("failed to read protocol version - {err}");
        return;
    }
    let shown = String::from_utf8_lossy(&magic);
    if &magic != MAGIC_V1 {
        error!("client({remote}) bad protocol magic '{shown}'");
        let mut response = bytes::BytesMut::new();
        write_response(&mut response, b"E_BAD_PROTOCOL");
        if let Err(err) = stream.write_all(&response).await {
            error!("failed to send E_BAD_PROTOCOL - {err}");
        }
        close_after_error(&mut stream).await;
        return;
    }
    info!("CLIENT({remote}): desired protocol magic '{shown}'");
    let mut connection = Connection {
        remote,
        shared,
        peer: None,
    };
    connection
        .run(Framed::new(stream, LookupServerCodec::default()), stop)
        .await;
    connection.forget_peer();
}

/// One peer's state: who it is once identified.
struct Connection {
    remote: SocketAddr,
    shared: Arc<Shared>,
    peer: Option<Arc<Peer>>,
}

impl Connection {
    async fn run(
        &mut self,
        mut framed: Framed<TcpStream, LookupServerCodec>,
        stop: CancellationToken,
    ) {
        let mut failed = false;
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => break,
                next = framed.next() => next,
            };
            let result = match next {
                None => break,
                Some(Ok(command)) => self.exec(command),
                Some(Err(ProtocolError::Client(err))) => Err(err),
                Some(Err(err)) => {
                    error!("[{}] - {err}", self.remote);
                    break;
                }
            };
            match result {
                Ok(payload) => {
                    if let Err(err) = framed.send(&payload[..]).await {
                        error!("[{}] - {err}", self.remote);
                        break;
                    }
                }
                Err(err) => {
                    error!("[{}] - {err}", self.remote);
                    if let Err(send_err) = framed.send(err.to_frame_data().as_bytes()).await {
                        error!("[{}] - {send_err}", self.remote);
                    }
                    failed = true;
                    break;
                }
            }
        }
        info!("CLIENT({}): closing", self.remote);
        if failed {
            close_after_error(framed.get_mut()).await;
        } else {
            let _ = framed.get_mut().shutdown().await;
        }
    }

    fn exec(&mut self, command: LookupCommand) -> Result<Vec<u8>, ClientError> {
        let now = SystemTime::now();
        let remote = self.remote;
        match command {
            LookupCommand::Ping => {
                if let Some(peer) = &self.peer {
                    let last = SystemTime::UNIX_EPOCH
                        + Duration::from_nanos(peer.last_update_unix_nanos().max(0) as u64);
                    let since = now.duration_since(last).unwrap_or_default();
                    info!("CLIENT({remote}): pinged (last ping {since:?})");
                    peer.touch(now);
                }
                Ok(OK.to_vec())
            }
            LookupCommand::Identify(info) => {
                info!(
                    "CLIENT({remote}): IDENTIFY Address:{} TCP:{} HTTP:{} Version:{}",
                    info.broadcast_address, info.tcp_port, info.http_port, info.version
                );
                let peer = Arc::new(Peer::new(remote.to_string(), info, now));
                if self.shared.db.write().identify(&peer) {
                    info!("DB: client({remote}) REGISTER category:client key: subkey:");
                }
                self.peer = Some(peer);
                Ok(self.shared.identify_reply.clone())
            }
            LookupCommand::Register { topic, channel } => {
                let peer = self.identified_peer()?;
                let added = self.shared.db.write().register(
                    peer,
                    topic.as_str(),
                    channel.as_ref().map(|channel| channel.as_str()),
                );
                for registration in added {
                    info!(
                        "DB: client({remote}) REGISTER category:{} key:{} subkey:{}",
                        registration.category.as_str(),
                        registration.key,
                        registration.subkey
                    );
                }
                Ok(OK.to_vec())
            }
            LookupCommand::Unregister { topic, channel } => {
                let id = self.identified_peer()?.id.clone();
                let outcome = self.shared.db.write().unregister(
                    &id,
                    topic.as_str(),
                    channel.as_ref().map(|channel| channel.as_str()),
                );
                for registration in &outcome.unexpected {
                    warn!(
                        "client({remote}) unexpected UNREGISTER category:{} key:{} subkey:{}",
                        registration.category.as_str(),
                        registration.key,
                        registration.subkey
                    );
                }
                for registration in &outcome.removed {
                    info!(
                        "DB: client({remote}) UNREGISTER category:{} key:{} subkey:{}",
                        registration.category.as_str(),
                        registration.key,
                        registration.subkey
                    );
                }
                for registration in &outcome.deleted {
                    info!("DB: removing {registration} (ephemeral, no producers left)");
                }
                Ok(OK.to_vec())
            }
        }
    }

    /// The decoder already rejects REGISTER/UNREGISTER before IDENTIFY; this keeps the invariant
    /// local.
    fn identified_peer(&self) -> Result<&Arc<Peer>, ClientError> {
        self.peer
            .as_ref()
            .ok_or_else(|| ClientError::invalid("client must IDENTIFY"))
    }

    /// Removes the peer from every registration (the connection is gone).
    fn forget_peer(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        let removed = self.shared.db.write().remove_peer(&peer.id);
        for registration in removed {
            info!(
                "DB: client({}) UNREGISTER category:{} key:{} subkey:{}",
                self.remote,
                registration.category.as_str(),
                registration.key,
                registration.subkey
            );
        }
    }
}

/// Sends FIN, then discards what the peer still sends for a moment: closing a socket with unread
/// input makes the kernel send a reset, which can destroy the error answer before the peer reads
/// it.
async fn close_after_error(stream: &mut TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut budget = LINGER_BYTES;
    let drain = async {
        while let Ok(read) = stream.read(&mut sink).await {
            if read == 0 || read >= budget {
                break;
            }
            budget -= read;
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
