//! The SFrame header (RFC 9605 §4.3): `X|KKK|Y|CCC`, then the KID and CTR bytes when they do not
//! fit in three bits. Values are big-endian in the fewest bytes.

use super::SframeError;

/// Longest possible header: one config byte, 8 KID bytes, 8 CTR bytes.
pub const MAX_HEADER_LEN: usize = 17;

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Key id.
    pub kid: u64,
    /// Counter.
    pub ctr: u64,
}

fn byte_len(v: u64) -> usize {
    (8 - (v.leading_zeros() as usize / 8)).max(1)
}

impl Header {
    /// The encoded length.
    pub fn len(&self) -> usize {
        let kid = if self.kid < 8 { 0 } else { byte_len(self.kid) };
        let ctr = if self.ctr < 8 { 0 } else { byte_len(self.ctr) };
        1 + kid + ctr
    }

    /// A header is never empty; for symmetry with [`Header::len`].
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header at the start of `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, SframeError> {
        let len = self.len();
        if out.len() < len {
            return Err(SframeError::BufferTooSmall { needed: len });
        }
        let mut config = 0u8;
        let mut at = 1;
        if self.kid < 8 {
            config |= (self.kid as u8) << 4;
        } else {
            let n = byte_len(self.kid);
            config |= 0x80 | (((n - 1) as u8) << 4);
            out[at..at + n].copy_from_slice(&self.kid.to_be_bytes()[8 - n..]);
            at += n;
        }
        if self.ctr < 8 {
            config |= self.ctr as u8;
        } else {
            let n = byte_len(self.ctr);
            config |= 0x08 | ((n - 1) as u8);
            out[at..at + n].copy_from_slice(&self.ctr.to_be_bytes()[8 - n..]);
        }
        out[0] = config;
        Ok(len)
    }

    /// Reads a header from the start of `frame`; returns it and its length.
    pub fn decode(frame: &[u8]) -> Result<(Header, usize), SframeError> {
        let config = *frame.first().ok_or(SframeError::Malformed("empty frame"))?;
        let mut at = 1;
        let mut read = |extended: bool, low: u8| -> Result<u64, SframeError> {
            if !extended {
                return Ok(u64::from(low));
            }
            let n = usize::from(low) + 1;
            let bytes = frame
                .get(at..at + n)
                .ok_or(SframeError::Malformed("truncated header"))?;
            at += n;
            Ok(bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)))
        };
        let kid = read(config & 0x80 != 0, (config >> 4) & 0x07)?;
        let ctr = read(config & 0x08 != 0, config & 0x07)?;
        Ok((Header { kid, ctr }, at))
    }
}
