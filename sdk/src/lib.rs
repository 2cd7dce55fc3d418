//! vcsdk: the core of the end-to-end encrypted video conferencing SDK.
//!
//! This crate is pure safe Rust and knows nothing of foreign-function interfaces. It holds:
//! - [`identity`]: a client's or server's identity (P-256 key, certificate, pinned root), stored in
//!   a directory, and its renewal schedule;
//! - [`pki`]: certificate parsing, CSR creation, and the one certificate check used everywhere;
//! - [`tls`]: rustls configurations built on that check;
//! - [`ca_client`]: the client side of the certification authority's HTTPS+JSON API;
//! - [`client`]: the client of the conferencing server (registration, presence, calls);
//! - [`billing`]: tariffs, call records and signed call receipts;
//! - [`conference`]: multi-party conferences: signed control messages, group keys, policies;
//! - [`media`]: SFrame (RFC 9605) frame encryption;
//! - [`proto`]: wire types shared by clients and servers;
//! - [`https`]: the small HTTPS client those use.
#![forbid(unsafe_code)]

pub mod billing;
pub mod ca_client;
pub mod client;
pub mod conference;
pub mod dir_lock;
pub mod error;
pub mod https;
pub mod id;
pub mod identity;
pub mod media;
pub mod pki;
pub mod proto;
pub mod tls;
pub mod util;

pub use error::{Error, Result};
pub use id::ClientId;

/// The version of this SDK, as "MAJOR.MINOR.PATCH".
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
