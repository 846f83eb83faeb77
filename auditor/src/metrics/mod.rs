//! The Prometheus endpoint of `auditor run` (`--metrics ADDR`, or
//! `[metrics] listen`), off unless asked for.
//!
//! The daemon binds the listener before it loads the kernel program, renders
//! the counters when it accepts a connection, and hands the text to
//! [`MetricsConnection::respond`], which answers on a task of its own so a
//! slow client never holds up capture. At most [`MAX_CONNECTIONS`] scrapes
//! are served at once; more are closed unanswered.

mod exposition;
mod request;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

pub use exposition::render;

pub const MAX_CONNECTIONS: usize = 16;
/// The pause after a failed accept (out of file descriptors, say), so the
/// failure is not retried in a busy loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot serve metrics on {address}: {source}; give a free local address with --metrics or [metrics] listen"
)]
pub struct BindError {
    address: SocketAddr,
    source: io::Error,
}

pub struct MetricsListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
}

/// An accepted scrape, within [`MAX_CONNECTIONS`].
pub struct MetricsConnection {
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
}

impl MetricsListener {
    pub async fn bind(address: SocketAddr) -> Result<MetricsListener, BindError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| BindError { address, source })?;
        tracing::info!(
            "serving metrics on http://{}/metrics",
            listener.local_addr().unwrap_or(address)
        );
        Ok(MetricsListener {
            listener,
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        })
    }

    /// The next connection to answer. Failed accepts are logged and retried.
    pub async fn accept(&self) -> MetricsConnection {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => match self.permits.clone().try_acquire_owned() {
                    Ok(permit) => return MetricsConnection { stream, permit },
                    Err(_) => {
                        tracing::debug!(%peer, "too many metrics scrapes at once; closed");
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a metrics connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }
}

/// The next connection of `listener`; never, without one.
pub async fn accept(listener: Option<&MetricsListener>) -> MetricsConnection {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

impl MetricsConnection {
    /// Answers the scrape with `metrics` (see [`render`]) on a task of its own.
    pub fn respond(self, metrics: String) {
        tokio::spawn(async move {
            let MetricsConnection { stream, permit } = self;
            if let Err(error) = request::answer(stream, &metrics).await {
                tracing::debug!(%error, "metrics scrape failed");
            }
            drop(permit);
        });
    }
}
