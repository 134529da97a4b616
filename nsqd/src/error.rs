//! Errors that stop the node from starting or running.

/// A startup or storage failure.
#[derive(Debug, thiserror::Error)]
pub enum NsqdError {
    /// A flag value is unusable.
    #[error("{0}")]
    Config(String),
    /// A listener could not be opened.
    #[error("listen ({addr}) failed - {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another nsqd holds the data directory.
    #[error(
        "failed to lock data-path: cannot flock directory {path} - {source} (possibly in use by another instance of nsqd)"
    )]
    DataPathLocked {
        /// The data directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Node metadata (topics, channels, paused flags) could not be loaded or stored.
    #[error("failed to load metadata - {0}")]
    Metadata(String),
    /// Other I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
