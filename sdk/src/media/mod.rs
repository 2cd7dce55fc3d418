//! Media security: the end-to-end key agreement of a call ([`handshake`]) and SFrame (RFC 9605)
//! frame encryption ([`sframe`]). The media transport builds on them.

pub mod handshake;
pub mod sframe;
