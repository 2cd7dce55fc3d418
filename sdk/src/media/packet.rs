//! Media packets: a protected frame (SFrame output) is split into packets that fit the path MTU and
//! reassembled on the other side. Each packet carries a small header naming the stream, the frame
//! sequence number and the fragment's place; the loss of one packet loses only its frame, and a
//! receiver holds a bounded number of incomplete frames.
//!
//! Packet header (10 bytes, big-endian): version (1) ‖ stream (1) ‖ sender (2) ‖ frame sequence (4)
//! ‖ fragment index (1) ‖ fragment count (1). At most 255 fragments per frame. Frames are numbered
//! per sender and stream; the header is not secret and not authenticated (the reassembled SFrame
//! frame is).

use std::collections::BTreeMap;

/// Version of the packet header.
pub const PACKET_VERSION: u8 = 1;
/// Header length.
pub const PACKET_HEADER_LEN: usize = 10;
/// Most fragments of one frame.
pub const MAX_FRAGMENTS: usize = 255;

/// Why a packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the header, unknown version, or fragment fields out of range.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The frame needs more than [`MAX_FRAGMENTS`] packets at this payload size.
    #[error("frame of {0} bytes needs more than {MAX_FRAGMENTS} packets")]
    FrameTooLarge(usize),
}

/// A parsed packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// The stream (see [`super::handshake::Stream`]).
    pub stream: u8,
    /// The sender's index in the call.
    pub sender: u16,
    /// The frame's sequence number.
    pub frame: u32,
    /// This fragment's index.
    pub index: u8,
    /// How many fragments the frame has.
    pub count: u8,
}

impl PacketHeader {
    /// Parses the header at the start of `packet`; returns it and the payload.
    pub fn parse(packet: &[u8]) -> Result<(PacketHeader, &[u8]), PacketError> {
        if packet.len() < PACKET_HEADER_LEN {
            return Err(PacketError::Malformed("shorter than the header"));
        }
        if packet[0] != PACKET_VERSION {
            return Err(PacketError::Malformed("unknown version"));
        }
        let header = PacketHeader {
            stream: packet[1],
            sender: u16::from_be_bytes([packet[2], packet[3]]),
            frame: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            index: packet[8],
            count: packet[9],
        };
        if header.count == 0 || header.index >= header.count {
            return Err(PacketError::Malformed("fragment index out of range"));
        }
        Ok((header, &packet[PACKET_HEADER_LEN..]))
    }

    fn write(&self, out: &mut [u8]) {
        out[0] = PACKET_VERSION;
        out[1] = self.stream;
        out[2..4].copy_from_slice(&self.sender.to_be_bytes());
        out[4..8].copy_from_slice(&self.frame.to_be_bytes());
        out[8] = self.index;
        out[9] = self.count;
    }
}

/// Splits `frame` (frame number `sequence` of `sender`'s `stream`) into packets of at most
/// `max_packet` bytes (header included), calling `emit` with each packet, written into `scratch` (no
/// allocation per packet). Returns the number of packets.
pub fn split(
    sender: u16,
    stream: u8,
    sequence: u32,
    frame: &[u8],
    max_packet: usize,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, PacketError> {
    let room = max_packet
        .saturating_sub(PACKET_HEADER_LEN)
        .min(scratch.len().saturating_sub(PACKET_HEADER_LEN));
    if room == 0 {
        return Err(PacketError::Malformed(
            "packet size leaves no room for payload",
        ));
    }
    let count = frame.len().div_ceil(room).max(1);
    if count > MAX_FRAGMENTS {
        return Err(PacketError::FrameTooLarge(frame.len()));
    }
    for index in 0..count {
        let chunk = &frame[(index * room).min(frame.len())..((index + 1) * room).min(frame.len())];
        PacketHeader {
            stream,
            sender,
            frame: sequence,
            index: index as u8,
            count: count as u8,
        }
        .write(scratch);
        scratch[PACKET_HEADER_LEN..PACKET_HEADER_LEN + chunk.len()].copy_from_slice(chunk);
        emit(&scratch[..PACKET_HEADER_LEN + chunk.len()]);
    }
    Ok(count)
}

struct Partial {
    count: u8,
    received: usize,
    fragments: Vec<Option<Vec<u8>>>,
    bytes: usize,
}

/// Reassembles the frames of one stream from packets in any order, keeping at most `max_pending`
/// incomplete frames (the oldest are dropped first) of at most `max_frame` bytes each.
pub struct Reassembler {
    pending: BTreeMap<u32, Partial>,
    max_pending: usize,
    max_frame: usize,
    dropped: u64,
}

impl Reassembler {
    /// A reassembler with the given bounds.
    pub fn new(max_pending: usize, max_frame: usize) -> Self {
        Reassembler {
            pending: BTreeMap::new(),
            max_pending: max_pending.max(1),
            max_frame,
            dropped: 0,
        }
    }

    /// Incomplete frames given up so far (lost packets, or too many pending).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes one packet's header and payload; returns the whole frame when this packet completes it.
    pub fn push(&mut self, header: PacketHeader, payload: &[u8]) -> Option<Vec<u8>> {
        if header.count == 1 {
            return Some(payload.to_vec());
        }
        if !self.pending.contains_key(&header.frame) {
            while self.pending.len() >= self.max_pending {
                self.pending.pop_first();
                self.dropped += 1;
            }
            self.pending.insert(
                header.frame,
                Partial {
                    count: header.count,
                    received: 0,
                    fragments: vec![None; usize::from(header.count)],
                    bytes: 0,
                },
            );
        }
        let partial = self.pending.get_mut(&header.frame)?;
        if partial.count != header.count {
            return None;
        }
        let slot = partial.fragments.get_mut(usize::from(header.index))?;
        if slot.is_some() {
            return None;
        }
        partial.bytes += payload.len();
        if partial.bytes > self.max_frame {
            self.pending.remove(&header.frame);
            self.dropped += 1;
            return None;
        }
        *slot = Some(payload.to_vec());
        partial.received += 1;
        if partial.received < usize::from(partial.count) {
            return None;
        }
        let done = self.pending.remove(&header.frame)?;
        // Frames older than a completed one will not complete any more: their packets were lost.
        let stale: Vec<u32> = self
            .pending
            .range(..header.frame)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.pending.remove(&k);
            self.dropped += 1;
        }
        let mut frame = Vec::with_capacity(done.bytes);
        for part in done.fragments.into_iter().flatten() {
            frame.extend_from_slice(&part);
        }
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(stream: u8, seq: u32, frame: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut scratch = vec![0u8; max];
        split(3, stream, seq, frame, max, &mut scratch, |p| {
            out.push(p.to_vec())
        })
        .unwrap();
        out
    }

    #[test]
    fn frames_survive_reordering_and_duplicates() {
        let frame: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut pkts = packets(1, 42, &frame, 1200);
        assert_eq!(pkts.len(), 10_000usize.div_ceil(1190));
        assert!(pkts.iter().all(|p| p.len() <= 1200));
        pkts.reverse();
        pkts.insert(3, pkts[0].clone());
        let mut r = Reassembler::new(8, 1 << 20);
        let mut out = None;
        for p in &pkts {
            let (h, payload) = PacketHeader::parse(p).unwrap();
            assert_eq!((h.stream, h.sender, h.frame), (1, 3, 42));
            if let Some(f) = r.push(h, payload) {
                assert!(out.is_none(), "completed twice");
                out = Some(f);
            }
        }
        assert_eq!(out.unwrap(), frame);
        let small = packets(0, 1, b"tiny", 1200);
        let (h, payload) = PacketHeader::parse(&small[0]).unwrap();
        assert_eq!(r.push(h, payload).unwrap(), b"tiny");
    }

    #[test]
    fn a_lost_packet_loses_only_its_frame() {
        let mut r = Reassembler::new(8, 1 << 20);
        let a = vec![1u8; 3000];
        let b = vec![2u8; 3000];
        let mut got = Vec::new();
        for (seq, frame, skip) in [(1u32, &a, Some(1usize)), (2, &b, None)] {
            for (i, p) in packets(1, seq, frame, 1000).iter().enumerate() {
                if Some(i) == skip {
                    continue;
                }
                let (h, payload) = PacketHeader::parse(p).unwrap();
                if let Some(f) = r.push(h, payload) {
                    got.push(f);
                }
            }
        }
        assert_eq!(got, vec![b.clone()]);
        assert_eq!(r.dropped(), 1, "the incomplete older frame is given up");
    }

    #[test]
    fn bad_packets_and_bounds_are_refused() {
        assert!(PacketHeader::parse(&[1, 0, 0]).is_err());
        assert!(PacketHeader::parse(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(
            PacketHeader::parse(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 2]).is_err(),
            "index beyond count"
        );
        assert!(
            PacketHeader::parse(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "zero fragments"
        );
        let mut scratch = [0u8; 16];
        assert!(matches!(
            split(0, 0, 0, &vec![0u8; 256 * 8], 16, &mut scratch, |_| {}),
            Err(PacketError::FrameTooLarge(_))
        ));
        assert!(split(0, 0, 0, b"x", 10, &mut scratch, |_| {}).is_err());
        // Bounded memory: at most `max_pending` incomplete frames, each at most `max_frame` bytes.
        let mut r = Reassembler::new(2, 2500);
        for seq in 0..5u32 {
            let p = &packets(0, seq, &[0u8; 2000], 1000)[0];
            let (h, payload) = PacketHeader::parse(p).unwrap();
            assert!(r.push(h, payload).is_none());
        }
        assert_eq!(r.dropped(), 3);
        for p in packets(0, 9, &[0u8; 3000], 1000) {
            let (h, payload) = PacketHeader::parse(&p).unwrap();
            assert!(
                r.push(h, payload).is_none(),
                "an oversize frame never completes"
            );
        }
    }
}
