//! The SDK's error type. Every variant has a stable machine-readable code (see [`Error::code`]) that
//! the foreign bindings map one to one.

use crate::pki::CertificateError;

/// Result with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the SDK.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument was malformed or out of range; the message names it.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A certificate failed the certificate check.
    #[error("certificate refused: {0}")]
    Certificate(#[from] CertificateError),
    /// A file or directory could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored identity data is missing or damaged.
    #[error("identity store: {0}")]
    Store(String),
    /// The network connection or TLS handshake failed.
    #[error("connection to {target} failed: {message}")]
    Connection {
        /// The address or URL.
        target: String,
        /// What went wrong.
        message: String,
    },
    /// The certification authority refused the request.
    #[error("the CA refused the request ({code}): {message}")]
    CaRefused {
        /// The CA's stable error code (see docs/protocol.md).
        code: String,
        /// The CA's explanation.
        message: String,
    },
    /// The conferencing server refused the request.
    #[error("the server refused the request ({code}): {message}")]
    ServerRefused {
        /// The server's stable error code (see docs/protocol.md).
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// A peer answered with something that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A cryptographic operation failed.
    #[error("cryptography: {0}")]
    Crypto(String),
    /// What was asked for ended first: the call hung up before its media started, or the
    /// session or connection is closed. Not a fault of either side.
    #[error("closed: {0}")]
    Closed(String),
}

impl Error {
    /// A stable, machine-readable code for this error (never renamed once published).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Certificate(_) => "certificate",
            Error::Io { .. } => "io",
            Error::Store(_) => "store",
            Error::Connection { .. } => "connection",
            Error::CaRefused { .. } => "ca_refused",
            Error::ServerRefused { .. } => "server_refused",
            Error::Protocol(_) => "protocol",
            Error::Crypto(_) => "crypto",
            Error::Closed(_) => "closed",
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
