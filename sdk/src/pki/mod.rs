//! Public-key infrastructure: PEM handling, certificate facts, keys and CSRs, and the one
//! certificate check used for every peer (server, client, CA).

mod check;
mod crl;
mod info;
mod keys;
mod live;
pub mod pem;

pub use check::{CertificateCheck, CertificateError, VerifiedCertificate};
pub use crl::CrlInfo;
pub use info::{CertificateInfo, Usage};
pub use keys::{new_key_pair, parse_key_pair, CsrSubject};
pub use live::{CrlStatus, LiveCheck};
