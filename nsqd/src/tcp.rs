//! The TCP accept loop: every connection gets its own task on the tracker.

use crate::connection;
use crate::nsqd::Nsqd;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    nsqd: Arc<Nsqd>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let span = tracing::info_span!("client", %peer);
                tracker.spawn(
                    connection::serve(Arc::clone(&nsqd), stream, peer, shutdown.clone())
                        .instrument(span),
                );
            }
            Err(err) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!("TCP: accept error - {err}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    tracing::info!(
        "TCP: closing {}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
}
