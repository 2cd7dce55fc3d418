//! The media datagrams on UDP, shared by clients and the server's relay (see `docs/protocol.md`,
//! "Media transport"). The first byte says what a datagram is:
//!
//! - `1` — a media packet ([`super::packet`]; its first byte is the packet version), sent directly
//!   to the peer or delivered by the relay;
//! - `2` — for the relay: `2 ‖ token (16) ‖ packet`. The relay forwards the packet to the other
//!   member of the call the token belongs to — only when it comes from the address the token is
//!   bound to;
//! - `3` — from the relay: `3 ‖ token (16)`, "bound";
//! - `4` — a bind: `4 ‖ token (16) ‖ counter (8) ‖ MAC (16)`, where the MAC is the first 16 bytes of
//!   HMAC-SHA-256 under the member's relay secret over `"vcsdk relay bind" ‖ token ‖ counter`, and
//!   the counter grows with every bind. It tells the relay where the member is; answered with `3`.
//!
//! Tokens and secrets are random, one per member and call, handed out over the authenticated
//! signalling connection. The relay drops every datagram whose token it does not know, and learns
//! a member's address only from a fresh authenticated bind — so someone who sees the traffic can
//! neither replay a bind nor move a member's media to another address.

use std::net::SocketAddr;

use crate::util::{hex, unhex};
use crate::{Error, Result};

/// First byte of a media packet.
pub const KIND_PACKET: u8 = super::packet::PACKET_VERSION;
/// First byte of a datagram for the relay.
pub const KIND_RELAY: u8 = 2;
/// First byte of the relay's answer to a bind.
pub const KIND_RELAY_BOUND: u8 = 3;
/// First byte of a bind.
pub const KIND_BIND: u8 = 4;
/// First byte of a conference datagram for the relay: `5 ‖ token ‖ member (2) ‖ packet`.
pub const KIND_GROUP_RELAY: u8 = 5;
/// Length of a relay secret.
pub const RELAY_SECRET_LEN: usize = 32;
/// Length of a bind datagram.
pub const BIND_LEN: usize = 1 + RELAY_TOKEN_LEN + 8 + 16;
/// Length of a relay token.
pub const RELAY_TOKEN_LEN: usize = 16;
/// Bytes the relay wrapping adds to a packet.
pub const RELAY_OVERHEAD: usize = 1 + RELAY_TOKEN_LEN;
/// Bytes the conference relay wrapping adds to a packet.
pub const GROUP_RELAY_OVERHEAD: usize = RELAY_OVERHEAD + 2;

/// A member's ticket to the relay for one call. Not printed by `Debug`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelayToken(pub [u8; RELAY_TOKEN_LEN]);

impl std::fmt::Debug for RelayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayToken(..)")
    }
}

impl RelayToken {
    /// A fresh random token.
    pub fn random() -> RelayToken {
        let mut b = [0u8; RELAY_TOKEN_LEN];
        let _ = aws_lc_rs::rand::fill(&mut b);
        RelayToken(b)
    }

    /// Hex, as carried in the `media_relay` event.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses the hex form.
    pub fn from_hex(text: &str) -> Result<RelayToken> {
        unhex(text)
            .and_then(|b| <[u8; RELAY_TOKEN_LEN]>::try_from(b).ok())
            .map(RelayToken)
            .ok_or_else(|| {
                Error::Protocol(format!(
                    "relay token must be {RELAY_TOKEN_LEN} bytes of hex"
                ))
            })
    }
}

/// A member's secret for authenticating binds. Not printed by `Debug`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RelaySecret(pub [u8; RELAY_SECRET_LEN]);

impl std::fmt::Debug for RelaySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelaySecret(..)")
    }
}

impl RelaySecret {
    /// A fresh random secret.
    pub fn random() -> RelaySecret {
        let mut b = [0u8; RELAY_SECRET_LEN];
        let _ = aws_lc_rs::rand::fill(&mut b);
        RelaySecret(b)
    }

    /// Hex, as carried in the `media_relay` event.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses the hex form.
    pub fn from_hex(text: &str) -> Result<RelaySecret> {
        unhex(text)
            .and_then(|b| <[u8; RELAY_SECRET_LEN]>::try_from(b).ok())
            .map(RelaySecret)
            .ok_or_else(|| {
                Error::Protocol(format!(
                    "relay secret must be {RELAY_SECRET_LEN} bytes of hex"
                ))
            })
    }

    fn mac(&self, token: &RelayToken, counter: u64) -> [u8; 16] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        let tag = aws_lc_rs::hmac::sign(
            &key,
            &[
                b"vcsdk relay bind".as_slice(),
                &token.0,
                &counter.to_be_bytes(),
            ]
            .concat(),
        );
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        out
    }

    /// The bind datagram for `token` with `counter`.
    pub fn bind(&self, token: &RelayToken, counter: u64) -> [u8; BIND_LEN] {
        let mut out = [0u8; BIND_LEN];
        out[0] = KIND_BIND;
        out[1..1 + RELAY_TOKEN_LEN].copy_from_slice(&token.0);
        out[1 + RELAY_TOKEN_LEN..1 + RELAY_TOKEN_LEN + 8].copy_from_slice(&counter.to_be_bytes());
        out[BIND_LEN - 16..].copy_from_slice(&self.mac(token, counter));
        out
    }

    /// Whether `mac` authenticates a bind of `token` with `counter` (constant time).
    pub fn verify(&self, token: &RelayToken, counter: u64, mac: &[u8; 16]) -> bool {
        let expected = self.mac(token, counter);
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected, mac).is_ok()
    }
}

/// Where a member reaches the relay for a call, with which token and bind secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayGrant {
    /// The relay's UDP address.
    pub address: SocketAddr,
    /// The member's token.
    pub token: RelayToken,
    /// The member's secret for binds.
    pub secret: RelaySecret,
}

/// A datagram, as the relay or a client sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// A media packet (header and payload).
    Packet(&'a [u8]),
    /// For the relay: forward `inner`.
    Relay {
        /// The sender's token.
        token: RelayToken,
        /// What to forward.
        inner: &'a [u8],
    },
    /// For the relay (conferences): forward `inner` to the member with index `to`.
    GroupRelay {
        /// The sender's token.
        token: RelayToken,
        /// The recipient's member index.
        to: u16,
        /// What to forward.
        inner: &'a [u8],
    },
    /// For the relay: the sender is at this address.
    Bind {
        /// The sender's token.
        token: RelayToken,
        /// Grows with every bind.
        counter: u64,
        /// Authenticates token and counter.
        mac: [u8; 16],
    },
    /// The relay confirms a bind.
    Bound(RelayToken),
}

impl<'a> Datagram<'a> {
    /// Classifies `datagram`; `None` for anything that is none of the above.
    pub fn parse(datagram: &'a [u8]) -> Option<Datagram<'a>> {
        let token = |b: &[u8]| -> Option<RelayToken> {
            Some(RelayToken(b.get(1..1 + RELAY_TOKEN_LEN)?.try_into().ok()?))
        };
        match *datagram.first()? {
            KIND_PACKET => Some(Datagram::Packet(datagram)),
            KIND_RELAY => Some(Datagram::Relay {
                token: token(datagram)?,
                inner: &datagram[RELAY_OVERHEAD..],
            }),
            KIND_GROUP_RELAY if datagram.len() >= GROUP_RELAY_OVERHEAD => {
                Some(Datagram::GroupRelay {
                    token: token(datagram)?,
                    to: u16::from_be_bytes([
                        datagram[RELAY_OVERHEAD],
                        datagram[RELAY_OVERHEAD + 1],
                    ]),
                    inner: &datagram[GROUP_RELAY_OVERHEAD..],
                })
            }
            KIND_RELAY_BOUND if datagram.len() == RELAY_OVERHEAD => {
                Some(Datagram::Bound(token(datagram)?))
            }
            KIND_BIND if datagram.len() == BIND_LEN => Some(Datagram::Bind {
                token: token(datagram)?,
                counter: u64::from_be_bytes(
                    datagram[1 + RELAY_TOKEN_LEN..1 + RELAY_TOKEN_LEN + 8]
                        .try_into()
                        .ok()?,
                ),
                mac: datagram[BIND_LEN - 16..].try_into().ok()?,
            }),
            _ => None,
        }
    }
}

/// Writes `2 ‖ token` into the first [`RELAY_OVERHEAD`] bytes of `out`.
pub fn write_relay_prefix(token: &RelayToken, out: &mut [u8]) {
    out[0] = KIND_RELAY;
    out[1..RELAY_OVERHEAD].copy_from_slice(&token.0);
}

/// Writes `5 ‖ token ‖ to` into the first [`GROUP_RELAY_OVERHEAD`] bytes of `out`.
pub fn write_group_relay_prefix(token: &RelayToken, to: u16, out: &mut [u8]) {
    out[0] = KIND_GROUP_RELAY;
    out[1..RELAY_OVERHEAD].copy_from_slice(&token.0);
    out[RELAY_OVERHEAD..GROUP_RELAY_OVERHEAD].copy_from_slice(&to.to_be_bytes());
}

/// The relay's answer to a bind.
pub fn bound(token: &RelayToken) -> [u8; RELAY_OVERHEAD] {
    let mut out = [0u8; RELAY_OVERHEAD];
    out[0] = KIND_RELAY_BOUND;
    out[1..].copy_from_slice(&token.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_classified_and_junk_is_refused() {
        let token = RelayToken::random();
        let mut d = vec![0u8; RELAY_OVERHEAD];
        write_relay_prefix(&token, &mut d);
        d.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            Datagram::parse(&d),
            Some(Datagram::Relay {
                token,
                inner: &[1, 2, 3]
            })
        );
        assert_eq!(
            Datagram::parse(&bound(&token)),
            Some(Datagram::Bound(token))
        );
        assert_eq!(Datagram::parse(&[1, 9]), Some(Datagram::Packet(&[1, 9])));
        let mut g = vec![0u8; GROUP_RELAY_OVERHEAD];
        write_group_relay_prefix(&token, 258, &mut g);
        g.push(1);
        assert_eq!(
            Datagram::parse(&g),
            Some(Datagram::GroupRelay {
                token,
                to: 258,
                inner: &[1]
            })
        );
        assert_eq!(Datagram::parse(&g[..GROUP_RELAY_OVERHEAD - 1]), None);
        for junk in [&[][..], &[2, 1, 2], &[3, 0], &[7, 0, 0], &[0]] {
            assert_eq!(Datagram::parse(junk), None, "{junk:?}");
        }
        let secret = RelaySecret::random();
        let bind = secret.bind(&token, 7);
        let Some(Datagram::Bind {
            token: t,
            counter,
            mac,
        }) = Datagram::parse(&bind)
        else {
            panic!("a bind");
        };
        assert_eq!((t, counter), (token, 7));
        assert!(secret.verify(&token, 7, &mac));
        assert!(!secret.verify(&token, 8, &mac), "another counter");
        assert!(
            !RelaySecret::random().verify(&token, 7, &mac),
            "another secret"
        );
        assert_eq!(Datagram::parse(&bind[..BIND_LEN - 1]), None);
        assert_eq!(RelaySecret::from_hex(&secret.to_hex()).unwrap(), secret);
        assert_eq!(format!("{secret:?}"), "RelaySecret(..)");
        assert_eq!(RelayToken::from_hex(&token.to_hex()).unwrap(), token);
        assert!(RelayToken::from_hex("abcd").is_err());
        assert_eq!(format!("{token:?}"), "RelayToken(..)");
    }
}
