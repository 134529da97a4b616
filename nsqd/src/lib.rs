//! `nsqd`: the NSQ node daemon.
//!
//! Start with [`start`], which binds the listeners and returns a [`Running`] node. The path of a
//! message is: `connection` (decode) → `protocol_v2` (execute) → [`Nsqd::publish`] →
//! [`topic::Topic`] (fan-out) → [`channel::Channel`] (ready queue) → a consumer's `connection`
//! (take under RDY, encode) → FIN back to the channel. See ARCHITECTURE.md.

pub mod auth;
pub mod backend;
pub mod channel;
pub mod client;
pub mod commit;
mod connection;
mod deferred;
pub mod e2e;
pub mod error;
mod guid;
pub mod http;
mod in_flight;
pub mod logging;
mod lookup;
pub mod metadata;
pub mod metrics;
pub mod nsqd;
pub mod options;
mod protocol_v2;
pub mod settings;
pub mod stats;
pub mod statsd;
mod tcp;
pub mod tls;
pub mod topic;
mod upgrade;

pub use error::NsqdError;
pub use nsqd::Nsqd;
pub use options::Options;

use settings::Settings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A started node.
#[derive(Debug)]
pub struct Running {
    /// The node.
    pub nsqd: Arc<Nsqd>,
    /// Bound TCP address.
    pub tcp_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: Option<SocketAddr>,
    /// Bound HTTPS address (only with TLS configured).
    pub https_addr: Option<SocketAddr>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    metadata: Arc<metadata::Metadata>,
    _data_lock: Option<std::fs::File>,
}

impl Running {
    /// Waits until the shutdown token is cancelled and every connection has closed, at most
    /// `timeout` after cancellation. Returns `false` if the deadline passed.
    pub async fn wait(self, timeout: Duration) -> bool {
        self.shutdown.cancelled().await;
        self.tracker.close();
        let finished = tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok();
        // Metadata first (upstream's order), so a failed flush still leaves the topic list.
        self.metadata.persist().await;
        let nsqd = Arc::clone(&self.nsqd);
        let flushed = tokio::task::spawn_blocking(move || nsqd.flush_to_disk())
            .await
            .is_ok();
        finished && flushed
    }
}

/// Derives the node's effective settings from its flags.
pub fn settings_from(options: &Options) -> Settings {
    let identify = nsq_protocol::IdentifyPolicy {
        version: nsq_protocol::NSQ_VERSION.to_owned(),
        max_rdy_count: options.max_rdy_count,
        default_heartbeat_interval: Duration::from_secs(30),
        max_heartbeat_interval: options.max_heartbeat_interval,
        default_output_buffer_timeout: options.output_buffer_timeout,
        min_output_buffer_timeout: options.min_output_buffer_timeout,
        max_output_buffer_timeout: options.max_output_buffer_timeout,
        default_output_buffer_size: 16 * 1024,
        max_output_buffer_size: options.max_output_buffer_size,
        default_msg_timeout: options.msg_timeout,
        max_msg_timeout: options.max_msg_timeout,
        max_deflate_level: options.max_deflate_level,
        deflate_enabled: options.deflate,
        snappy_enabled: options.snappy,
        // start() refuses to run when the certificate and key cannot be loaded.
        tls_available: !options.tls_cert.is_empty() && !options.tls_key.is_empty(),
        auth_required: !options.auth_http_addresses.is_empty(),
        topology_region: String::new(),
        topology_zone: String::new(),
    };
    Settings {
        mem_queue_size: options.mem_queue_size,
        msg_timeout: options.msg_timeout,
        max_msg_timeout: options.max_msg_timeout,
        max_req_timeout: options.max_req_timeout,
        node_id: options.node_id.unwrap_or_else(guid::default_node_id),
        max_channel_consumers: options.max_channel_consumers,
        limits: nsq_protocol::Limits {
            max_msg_size: options.max_msg_size,
            max_body_size: options.max_body_size,
            max_rdy_count: options.max_rdy_count,
            max_req_timeout_ms: options.max_req_timeout.as_millis() as u64,
        },
        identify,
        client_timeout: Duration::from_secs(60),
        e2e_percentiles: e2e::sorted_descending(&options.e2e_processing_latency_percentiles),
        e2e_window: options.e2e_processing_latency_window_time,
        // Filled in by start(), which can report errors.
        tls: None,
        tls_required: tls::effective_tls_required(options),
        auth: None,
        data_path: data_dir(&options.data_path),
        disk: backend::DiskSettings {
            max_bytes_per_file: options.max_bytes_per_file,
            sync_every: options.sync_every,
            sync_timeout: options.sync_timeout,
            durable: options.durable,
        },
    }
}

fn data_dir(path: &str) -> PathBuf {
    if path.is_empty() {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    } else {
        PathBuf::from(path)
    }
}

fn lock_data_path(path: &str) -> Result<Option<std::fs::File>, NsqdError> {
    let dir = data_dir(path);
    let handle = std::fs::File::open(&dir)?;
    match handle.try_lock() {
        Ok(()) => Ok(Some(handle)),
        Err(err) => Err(NsqdError::DataPathLocked {
            path: dir.display().to_string(),
            source: std::io::Error::other(err.to_string()),
        }),
    }
}

async fn bind(addr: &str) -> Result<TcpListener, NsqdError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NsqdError::Listen {
            addr: addr.to_owned(),
            source,
        })
}

/// Binds the listeners and starts serving. Cancel `shutdown` to stop.
pub async fn start(options: Options, shutdown: CancellationToken) -> Result<Running, NsqdError> {
    if let Some(bad) = options
        .e2e_processing_latency_percentiles
        .iter()
        .find(|&&value| !(value > 0.0 && value <= 1.0))
    {
        return Err(NsqdError::Config(format!(
            "invalid E2E processing latency percentile: {bad}"
        )));
    }
    if let Ok(level) = options.log_level.parse::<logging::LogLevel>() {
        logging::note_level(level);
    }
    let started = std::time::Instant::now();
    let data_lock = lock_data_path(&options.data_path)?;
    let mut settings = settings_from(&options);
    settings.tls = tls::server_config(&options)?;
    settings.auth = auth::AuthClient::from_options(&options)?;
    let nsqd = Arc::new(Nsqd::new(settings));
    let tracker = TaskTracker::new();

    let tcp_listener = bind(&options.tcp_address).await?;
    let tcp_addr = tcp_listener.local_addr()?;
    tracing::info!("TCP: listening on {tcp_addr}");
    let http_listener = if options.http_address.is_empty() {
        None
    } else {
        Some(bind(&options.http_address).await?)
    };
    let http_addr = match &http_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!("HTTP: listening on {addr}");
            Some(addr)
        }
        None => None,
    };
    let https_listener = match &nsqd.settings.tls {
        Some(_) if !options.https_address.is_empty() => Some(bind(&options.https_address).await?),
        _ => None,
    };
    let https_addr = match &https_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!("HTTPS: listening on {addr}");
            Some(addr)
        }
        None => None,
    };

    let hostname = hostname::get()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let identity = nsqd::NodeIdentity {
        broadcast_address: options
            .broadcast_address
            .clone()
            .unwrap_or_else(|| hostname.clone()),
        hostname,
        tcp_addr,
        http_addr,
        broadcast_tcp_port: if options.broadcast_tcp_port == 0 {
            tcp_addr.port()
        } else {
            options.broadcast_tcp_port
        },
        broadcast_http_port: if options.broadcast_http_port == 0 {
            http_addr.map_or(0, |addr| addr.port())
        } else {
            options.broadcast_http_port
        },
    };
    let _ = nsqd.identity.set(identity);

    // Topics, channels and paused flags come back before anyone can connect.
    let metadata = Arc::new(metadata::Metadata::open(
        &nsqd.settings.data_path,
        Arc::clone(&nsqd),
    )?);
    let stored = metadata.load()?;
    metadata.restore(&stored);
    let events = nsqd.subscribe_events();
    metadata.persist().await;
    tracker.spawn(Arc::clone(&metadata).follow_events(events, shutdown.clone()));
    if !options.statsd_address.is_empty() {
        let config = statsd::StatsdConfig {
            address: options.statsd_address.clone(),
            prefix: statsd::expanded_prefix(&options.statsd_prefix, nsqd.identity.get()),
            interval: options.statsd_interval,
            mem_stats: options.statsd_mem_stats,
            udp_packet_size: options.statsd_udp_packet_size,
            exclude_ephemeral: options.statsd_exclude_ephemeral,
        };
        tracker.spawn(statsd::run(Arc::clone(&nsqd), config, shutdown.clone()));
    }

    nsqd.set_lookupd_tcp_addresses(options.lookupd_tcp_addresses.clone());
    tracker.spawn(lookup::run(
        Arc::clone(&nsqd),
        nsqd.watch_lookupd_tcp_addresses(),
        shutdown.clone(),
    ));
    tracker.spawn(sync_loop(Arc::clone(&nsqd), shutdown.clone()));
    tracker.spawn(tcp::accept_loop(
        tcp_listener,
        Arc::clone(&nsqd),
        shutdown.clone(),
        tracker.clone(),
    ));
    let make_router = || {
        http::router(http::HttpState {
            nsqd: Arc::clone(&nsqd),
            options: Arc::new(options.clone()),
            metadata: Some(Arc::clone(&metadata)),
            started,
        })
    };
    if let (Some(listener), Some(config)) = (https_listener, nsqd.settings.tls.clone()) {
        tracker.spawn(tls::serve_https(
            listener,
            config,
            make_router(),
            shutdown.clone(),
        ));
    }
    if let Some(listener) = http_listener {
        let app = if nsqd.settings.tls_required == options::TlsRequired::Yes {
            tls::tls_required_router(https_addr.map_or(0, |addr| addr.port()))
        } else {
            make_router()
        };
        let token = shutdown.clone();
        tracker.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
            if let Err(err) = served {
                tracing::error!("HTTP: server error - {err}");
            }
            tracing::info!("HTTP: closing");
        });
    }

    Ok(Running {
        nsqd,
        tcp_addr,
        http_addr,
        https_addr,
        tracker,
        shutdown,
        metadata,
        _data_lock: data_lock,
    })
}

/// Applies the disk queues' sync policy (`--sync-every`, `--sync-timeout`) in the background.
async fn sync_loop(nsqd: Arc<Nsqd>, shutdown: CancellationToken) {
    let period = nsqd
        .settings
        .disk
        .sync_timeout
        .clamp(Duration::from_millis(10), Duration::from_millis(200));
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                let nsqd = Arc::clone(&nsqd);
                let _ = tokio::task::spawn_blocking(move || nsqd.sync_backends()).await;
            }
        }
    }
}
