//! Media security and transport: the end-to-end key agreement of a call ([`handshake`]), SFrame
//! (RFC 9605) frame encryption ([`sframe`]), the packets protected frames travel in ([`packet`]),
//! the transport's own control messages ([`control`]), the relay's datagrams ([`relay`]), and the
//! media session that sends and receives a call's frames over UDP ([`session`]).

pub mod control;
pub mod handshake;
pub mod packet;
pub mod relay;
pub mod session;
pub mod sframe;

pub use handshake::Stream;
pub use session::{MediaConfig, MediaFrame, MediaPath, MediaSession, MediaStats, PreparedMedia};
