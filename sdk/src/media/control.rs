//! What travels inside the frames of the signalling stream ([`super::handshake::Stream::Signalling`]):
//! the first byte of the plaintext says whether a frame is the application's (`1`, delivered) or
//! the transport's own (`0`): path probes, their answers, and the media addresses a member offers.
//! Being SFrame frames, all of them are encrypted and authenticated with the call's keys.

use std::net::{IpAddr, SocketAddr};

/// First plaintext byte of a transport control frame.
pub const CONTROL: u8 = 0;
/// First plaintext byte of an application frame on the signalling stream.
pub const APPLICATION: u8 = 1;
/// Most addresses one member offers.
pub const MAX_CANDIDATES: usize = 8;

const PROBE: u8 = 1;
const PROBE_ACK: u8 = 2;
const CANDIDATES: u8 = 3;

/// A transport control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// "Can you hear me here?" — sent to each of the peer's addresses.
    Probe {
        /// Echoed in the answer.
        nonce: u64,
    },
    /// The answer to a probe, sent back to where the probe came from.
    ProbeAck {
        /// The probe's nonce.
        nonce: u64,
    },
    /// The UDP addresses where the sender receives media directly (empty: relay only).
    Candidates(Vec<SocketAddr>),
}

impl Control {
    /// The plaintext of the control frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![CONTROL];
        match self {
            Control::Probe { nonce } => {
                out.push(PROBE);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Control::ProbeAck { nonce } => {
                out.push(PROBE_ACK);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Control::Candidates(list) => {
                out.push(CANDIDATES);
                let list = &list[..list.len().min(MAX_CANDIDATES)];
                out.push(list.len() as u8);
                for addr in list {
                    match addr.ip() {
                        IpAddr::V4(ip) => {
                            out.push(4);
                            out.extend_from_slice(&ip.octets());
                        }
                        IpAddr::V6(ip) => {
                            out.push(6);
                            out.extend_from_slice(&ip.octets());
                        }
                    }
                    out.extend_from_slice(&addr.port().to_be_bytes());
                }
            }
        }
        out
    }

    /// Parses a control frame's plaintext (first byte [`CONTROL`]); `None` if malformed.
    pub fn decode(plain: &[u8]) -> Option<Control> {
        let (&first, rest) = plain.split_first()?;
        if first != CONTROL {
            return None;
        }
        let (&kind, body) = rest.split_first()?;
        let nonce = || Some(u64::from_be_bytes(body.try_into().ok()?));
        match kind {
            PROBE => Some(Control::Probe { nonce: nonce()? }),
            PROBE_ACK => Some(Control::ProbeAck { nonce: nonce()? }),
            CANDIDATES => {
                let (&count, mut body) = body.split_first()?;
                if usize::from(count) > MAX_CANDIDATES {
                    return None;
                }
                let mut list = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let (&family, rest) = body.split_first()?;
                    let (ip, rest) = match family {
                        4 => {
                            let b: [u8; 4] = rest.get(..4)?.try_into().ok()?;
                            (IpAddr::from(b), &rest[4..])
                        }
                        6 => {
                            let b: [u8; 16] = rest.get(..16)?.try_into().ok()?;
                            (IpAddr::from(b), &rest[16..])
                        }
                        _ => return None,
                    };
                    let port = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
                    list.push(SocketAddr::new(ip, port));
                    body = &rest[2..];
                }
                body.is_empty().then_some(Control::Candidates(list))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_and_junk_is_refused() {
        for m in [
            Control::Probe { nonce: 7 },
            Control::ProbeAck { nonce: u64::MAX },
            Control::Candidates(vec![]),
            Control::Candidates(vec![
                "127.0.0.1:5000".parse().unwrap(),
                "[::1]:6000".parse().unwrap(),
            ]),
        ] {
            assert_eq!(Control::decode(&m.encode()), Some(m));
        }
        let mut long = Control::Candidates(vec![]).encode();
        long[2] = 9;
        for junk in [
            &[][..],
            &[1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0, 1, 0],
            &[0, 9],
            &[0, 3, 1, 5, 1, 2, 3, 4, 0, 1],
            &[0, 3, 0, 0],
            &long,
        ] {
            assert_eq!(Control::decode(junk), None, "{junk:?}");
        }
    }
}
