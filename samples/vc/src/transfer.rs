//! Streaming a file over a call's encrypted media: `vc call --send FILE` splits it into frames of
//! a given size sent at a given rate; `vc listen --save DIR` puts the frames back together and
//! writes the file once its SHA-256 matches. Each data frame is `offset (8, big-endian) ‖ bytes`;
//! the announcement, the end and the receiver's verdict are JSON on the signalling stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use vcsdk::media::{MediaSession, MediaStats, Stream};
use vcsdk::util::hex;

/// Largest file `vc listen --save` accepts.
pub const MAX_FILE: u64 = 256 << 20;
/// How long the sender waits for the receiver's verdict.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages on the signalling stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Message {
    /// A file follows.
    File {
        name: String,
        size: u64,
        sha256: String,
        stream: String,
        frame_size: u64,
    },
    /// Every frame of the file was sent.
    Done,
    /// The receiver's verdict.
    Saved { sha256: String },
    /// The receiver could not rebuild the file.
    Failed { reason: String },
}

async fn signal(session: &MediaSession, message: &Message) -> Result<(), String> {
    let json = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    session
        .send(Stream::Signalling, &json)
        .await
        .map_err(|e| e.to_string())
}

/// How a file is sent.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Bytes of the file per frame.
    pub frame_size: usize,
    /// Frames per second (0: as fast as the path takes them).
    pub rate: u32,
    /// The stream the frames go on.
    pub stream: Stream,
}

/// Sends `path` over `session` and waits for the receiver's verdict.
pub async fn send_file(
    session: &MediaSession,
    path: &Path,
    options: &SendOptions,
) -> Result<String, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file name", path.display()))?
        .to_owned();
    let sha256 = hex(digest(&SHA256, &data).as_ref());
    let started = Instant::now();
    signal(
        session,
        &Message::File {
            name: name.clone(),
            size: data.len() as u64,
            sha256: sha256.clone(),
            stream: options.stream.name().into(),
            frame_size: options.frame_size.max(1) as u64,
        },
    )
    .await?;
    let frame_size = options.frame_size.max(1);
    let period = (options.rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(options.rate)));
    let mut ticker = period.map(tokio::time::interval);
    let mut frame = Vec::with_capacity(frame_size + 8);
    for (i, chunk) in data.chunks(frame_size).enumerate() {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        frame.clear();
        frame.extend_from_slice(&((i * frame_size) as u64).to_be_bytes());
        frame.extend_from_slice(chunk);
        session
            .send(options.stream, &frame)
            .await
            .map_err(|e| e.to_string())?;
    }
    signal(session, &Message::Done).await?;
    let sent_in = started.elapsed();
    let verdict = tokio::time::timeout(VERDICT_TIMEOUT, async {
        while let Some(f) = session.recv().await {
            if f.stream != Stream::Signalling {
                continue;
            }
            match serde_json::from_slice::<Message>(&f.data) {
                Ok(Message::Saved { sha256: got }) if got == sha256 => {
                    return Ok(format!(
                        "sent {name}: {} bytes in {:.2} s; the receiver saved identical bytes (SHA-256 {sha256})",
                        data.len(),
                        sent_in.as_secs_f64()
                    ))
                }
                Ok(Message::Saved { sha256: got }) => {
                    return Err(format!("the receiver saved different bytes (SHA-256 {got})"))
                }
                Ok(Message::Failed { reason }) => {
                    return Err(format!("the receiver could not rebuild the file: {reason}"))
                }
                _ => {}
            }
        }
        Err("the media session closed before the receiver answered".into())
    })
    .await
    .map_err(|_| format!("no answer from the receiver within {} s", VERDICT_TIMEOUT.as_secs()))?;
    verdict
}

/// A file being received.
struct Incoming {
    name: String,
    sha256: String,
    stream: Stream,
    data: Vec<u8>,
    received: Vec<bool>,
    frame_size: usize,
}

/// A file name safe to create inside the save directory.
fn safe_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0']);
    if ok {
        Ok(name.to_owned())
    } else {
        Err(format!("refusing the file name {name:?}"))
    }
}

/// Receives files on `session` until it closes, writing each into `dir` (or only checking it
/// when `dir` is `None`) and telling the sender the outcome. Returns what happened, one line per
/// file.
pub async fn receive_files(session: Arc<MediaSession>, dir: Option<PathBuf>) -> Vec<String> {
    let mut report = Vec::new();
    let mut current: Option<Incoming> = None;
    while let Some(frame) = session.recv().await {
        if frame.stream == Stream::Signalling {
            match serde_json::from_slice::<Message>(&frame.data) {
                Ok(Message::File {
                    name,
                    size,
                    sha256,
                    stream,
                    frame_size,
                }) => {
                    let accepted = safe_name(&name).and_then(|name| {
                        if size > MAX_FILE {
                            return Err(format!("{size} bytes is more than {MAX_FILE}"));
                        }
                        let stream: Stream = stream.parse().map_err(|e| format!("{e}"))?;
                        if frame_size == 0 || frame_size > 1 << 24 {
                            return Err(format!("frame size {frame_size} is out of range"));
                        }
                        let frame_size = frame_size as usize;
                        Ok(Incoming {
                            name,
                            sha256,
                            stream,
                            received: vec![false; (size as usize).div_ceil(frame_size)],
                            data: vec![0; size as usize],
                            frame_size,
                        })
                    });
                    match accepted {
                        Ok(incoming) => {
                            println!(
                                "receiving {} ({} bytes) on the {} stream",
                                incoming.name,
                                incoming.data.len(),
                                incoming.stream.name()
                            );
                            current = Some(incoming);
                        }
                        Err(reason) => {
                            let _ = signal(
                                &session,
                                &Message::Failed {
                                    reason: reason.clone(),
                                },
                            )
                            .await;
                            report.push(reason);
                        }
                    }
                }
                Ok(Message::Done) => {
                    if let Some(incoming) = current.take() {
                        let outcome = finish(incoming, dir.as_deref());
                        let reply = match &outcome {
                            Ok((_, sha256)) => Message::Saved {
                                sha256: sha256.clone(),
                            },
                            Err(reason) => Message::Failed {
                                reason: reason.clone(),
                            },
                        };
                        let _ = signal(&session, &reply).await;
                        report.push(match outcome {
                            Ok((line, _)) => line,
                            Err(reason) => reason,
                        });
                    }
                }
                _ => {}
            }
            continue;
        }
        let Some(incoming) = current.as_mut().filter(|i| i.stream == frame.stream) else {
            continue;
        };
        place(incoming, &frame.data);
    }
    report
}

/// Puts one `offset ‖ bytes` frame in place; frames that do not fit are ignored.
fn place(incoming: &mut Incoming, frame: &[u8]) {
    let Some((offset, bytes)) = frame.split_first_chunk::<8>() else {
        return;
    };
    let Ok(offset) = usize::try_from(u64::from_be_bytes(*offset)) else {
        return;
    };
    let size = incoming.frame_size;
    let Some(end) = offset.checked_add(bytes.len()) else {
        return;
    };
    let whole = end == incoming.data.len().min(offset.saturating_add(size));
    if end > incoming.data.len() || offset % size != 0 || !whole {
        return;
    }
    incoming.data[offset..end].copy_from_slice(bytes);
    incoming.received[offset / size] = true;
}

/// Checks a complete file and writes it; returns the report line and its SHA-256.
fn finish(incoming: Incoming, dir: Option<&Path>) -> Result<(String, String), String> {
    let frames = incoming.received.len();
    let got = incoming.received.iter().filter(|r| **r).count();
    if got < frames {
        return Err(format!(
            "{}: {} of {frames} frames arrived; not saved",
            incoming.name, got
        ));
    }
    let sha256 = hex(digest(&SHA256, &incoming.data).as_ref());
    if sha256 != incoming.sha256 {
        return Err(format!(
            "{}: SHA-256 does not match; not saved",
            incoming.name
        ));
    }
    let line = match dir {
        Some(dir) => {
            let path = dir.join(&incoming.name);
            vcsdk::util::write_atomic(&path, &incoming.data, 0o600)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            format!(
                "saved {} ({} bytes, SHA-256 {sha256})",
                path.display(),
                incoming.data.len()
            )
        }
        None => format!(
            "received {} ({} bytes, SHA-256 {sha256}); not saved (no --save)",
            incoming.name,
            incoming.data.len()
        ),
    };
    Ok((line, sha256))
}

/// The statistics of a session, for people.
pub fn describe(stats: &MediaStats) -> String {
    let path = stats
        .path
        .map_or_else(|| "closed".to_owned(), |p| p.to_string());
    format!(
        "media: path {path}; sent {} frames / {} bytes / {} packets; received {} frames / {} bytes / {} packets; \
         lost {}; refused: {} replays, {} authentication failures, {} unknown keys, {} foreign packets, {} malformed; \
         epochs sent {} received {}",
        stats.frames_sent,
        stats.bytes_sent,
        stats.packets_sent,
        stats.frames_received,
        stats.bytes_received,
        stats.packets_received,
        stats.frames_lost,
        stats.replays_refused,
        stats.auth_failures,
        stats.unknown_key,
        stats.foreign_packets,
        stats.malformed,
        stats.send_epoch,
        stats.receive_epoch,
    )
}

/// Checks that `file` can be sent: it exists, is a regular file and can be opened for reading.
pub fn check_readable(file: &std::path::Path) -> Result<(), String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("--send {}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(format!("--send {}: not a regular file", file.display()));
    }
    std::fs::File::open(file).map_err(|e| format!("--send {}: {e}", file.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_the_directory_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "x\0"] {
            assert!(safe_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_name("clip.bin").unwrap(), "clip.bin");
    }

    #[test]
    fn frames_are_placed_by_offset_and_bad_ones_ignored() {
        let mut i = Incoming {
            name: "f".into(),
            sha256: hex(digest(&SHA256, b"abcdefghij").as_ref()),
            stream: Stream::Video,
            data: vec![0; 10],
            received: vec![false; 3],
            frame_size: 4,
        };
        let frame = |off: u64, b: &[u8]| [&off.to_be_bytes()[..], b].concat();
        place(&mut i, &frame(4, b"efgh"));
        place(&mut i, &frame(0, b"abc"));
        let early = Incoming {
            received: i.received.clone(),
            data: i.data.clone(),
            name: "f".into(),
            sha256: i.sha256.clone(),
            stream: Stream::Video,
            frame_size: 4,
        };
        assert!(finish(early, None).unwrap_err().contains("1 of 3 frames"));
        place(&mut i, &frame(0, b"abcd"));
        place(&mut i, &frame(8, b"ij"));
        place(&mut i, &frame(9, b"zz"));
        place(&mut i, &frame(u64::MAX, b"zz"));
        place(&mut i, b"short");
        assert_eq!(i.data, b"abcdefghij");
        let (line, _) = finish(i, None).unwrap();
        assert!(line.contains("10 bytes"), "{line}");
    }
}
