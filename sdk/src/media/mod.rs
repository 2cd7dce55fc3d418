//! Media security: the end-to-end key agreement of a call ([`handshake`]), SFrame (RFC 9605) frame
//! encryption ([`sframe`]), and the packets protected frames travel in ([`packet`]). The media
//! transport builds on them.

pub mod handshake;
pub mod packet;
pub mod sframe;
