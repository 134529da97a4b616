//! nsqlookupd: the NSQ directory service.
//!
//! nsqd nodes keep a TCP connection to every lookupd and tell it which topics and channels they
//! have (the "V1" protocol of [`nsq_protocol::lookup`]); consumers and nsqadmin ask over HTTP who
//! has what. Everything lives in one in-memory
//! [`registration_db::RegistrationDb`] behind a lock; nothing is persisted.
//!
//! * [`start`] binds both listeners and returns their real addresses ([`Running`]); the servers
//!   stop when the given token is cancelled.
//! * [`options`]: flags, config file, defaults. [`registration_db`]: the directory, pure and
//!   synchronous. `tcp` (one task per nsqd peer) and `http` (axum): the two servers.
//!   [`logging`]: upstream-shaped log lines. [`error`]: the crate's error type.

pub mod error;
mod http;
pub mod logging;
pub mod options;
pub mod registration_db;
mod tcp;

pub use error::Error;
pub use options::Options;

use nsq_protocol::lookup::LookupdInfo;
use parking_lot::RwLock;
use registration_db::{Liveness, RegistrationDb};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The NSQ version this lookupd implements (reported by `/info`, IDENTIFY and `--version`).
pub const VERSION: &str = nsq_protocol::NSQ_VERSION;

/// What `--version` prints: `nsqlookupd v1.3.0 (built w/rust-1.95.0)`.
pub fn version_line() -> String {
    format!(
        "nsqlookupd v{VERSION} (built w/rust-{})",
        env!("NSQ_RUSTC_VERSION")
    )
}

/// A started nsqlookupd.
#[derive(Debug)]
pub struct Running {
    /// Where the TCP (nsqd registration) listener is bound.
    pub tcp_addr: SocketAddr,
    /// Where the HTTP listener is bound.
    pub http_addr: SocketAddr,
    /// Finishes once both servers have stopped and every connection task has ended; the error
    /// of the first server that failed, if any.
    pub join: JoinHandle<Result<(), Error>>,
}

/// State shared by the TCP and HTTP servers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) db: RwLock<RegistrationDb>,
    pub(crate) liveness: Liveness,
    pub(crate) tcp_addr: SocketAddr,
    /// The IDENTIFY answer, the same for every peer.
    pub(crate) identify_reply: Vec<u8>,
}

/// Binds the TCP and HTTP listeners (port 0 picks a free port), logs
/// `TCP: listening on <addr>` and `HTTP: listening on <addr>`, and serves until `cancel` is
/// cancelled or a server fails.
pub async fn start(options: Options, cancel: CancellationToken) -> Result<Running, Error> {
    let hostname = hostname::get()
        .map_err(Error::Hostname)?
        .to_string_lossy()
        .into_owned();
    let (tcp_listener, tcp_addr) = bind(&options.tcp_address).await?;
    tracing::info!("TCP: listening on {tcp_addr}");
    let (http_listener, http_addr) = bind(&options.http_address).await?;
    tracing::info!("HTTP: listening on {http_addr}");

    let identify_reply = serde_json::to_vec(&LookupdInfo {
        broadcast_address: options.broadcast_address.clone(),
        hostname,
        http_port: http_addr.port(),
        tcp_port: tcp_addr.port(),
        version: VERSION.to_owned(),
    })?;
    let shared = Arc::new(Shared {
        db: RwLock::new(RegistrationDb::new()),
        liveness: Liveness {
            inactive_producer_timeout: options.inactive_producer_timeout,
            tombstone_lifetime: options.tombstone_lifetime,
        },
        tcp_addr,
        identify_reply,
    });

    // A failing server stops the other one too.
    let stop = cancel.child_token();
    let tracker = TaskTracker::new();
    let tcp_task = tokio::spawn({
        let stop = stop.clone();
        let tracker = tracker.clone();
        let shared = Arc::clone(&shared);
        async move {
            tcp::serve(tcp_listener, shared, stop.clone(), tracker).await;
            stop.cancel();
        }
    });
    let http_task = tokio::spawn({
        async move {
            let result = http::serve(http_listener, shared, stop.clone()).await;
            stop.cancel();
            result
        }
    });
    let join = tokio::spawn(async move {
        let (tcp_result, http_result) = tokio::join!(tcp_task, http_task);
        tracker.close();
        tracker.wait().await;
        tracing::info!("nsqlookupd: stopped");
        tcp_result?;
        http_result?
    });
    Ok(Running {
        tcp_addr,
        http_addr,
        join,
    })
}

/// Listens on `host:port`; an empty host (Go's `:4160`) means every interface.
async fn bind(address: &str) -> Result<(TcpListener, SocketAddr), Error> {
    let failed = |source| Error::Listen {
        address: address.to_owned(),
        source,
    };
    let target = match address.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => address.to_owned(),
    };
    let listener = TcpListener::bind(&target).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}
