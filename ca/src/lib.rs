//! vc-ca: the vcsdk certification authority. It issues X.509 certificates to clients and servers
//! from a CSR and a one-time token, renews them over mutual TLS, revokes them, and publishes a
//! signed CRL, all over an HTTPS+JSON API (see `docs/protocol.md`).
#![forbid(unsafe_code)]

pub mod admission;
pub mod api;
pub mod authority;
pub mod config;
pub mod error;
pub mod grant;
pub mod service;
pub mod stages;
pub mod store;

pub use error::CaError;
pub use service::CertificationAuthority;
