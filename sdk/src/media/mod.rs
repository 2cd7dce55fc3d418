//! Media security: SFrame (RFC 9605) frame encryption. Key agreement and the media transport
//! build on it.

pub mod sframe;
