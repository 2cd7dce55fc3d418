//! Wire types shared by the SDK and the servers. Each submodule is one protocol, documented in
//! `docs/protocol.md`.

pub mod ca;
pub mod frame;
pub mod signal;
