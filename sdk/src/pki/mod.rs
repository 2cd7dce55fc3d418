//! Public-key infrastructure: PEM handling, certificate facts, keys and CSRs, and the one
//! certificate check used for every peer (server, client, CA).

mod check;
mod info;
mod keys;
pub mod pem;

pub use check::{CertificateCheck, CertificateError, VerifiedCertificate};
pub use info::{CertificateInfo, Usage};
pub use keys::{new_key_pair, parse_key_pair, CsrSubject};
