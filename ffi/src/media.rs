//! A call's end-to-end encrypted media: frames per stream, sent and received through caller-owned
//! buffers, with the session's statistics.

use std::ffi::c_char;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vcsdk::media::{MediaConfig, MediaFrame, MediaPath, MediaSession, Stream};

use crate::client::vc_client;
use crate::result::{
    boundary, done, fail, free_handle, hand_out, handle, input, output, required, sdk_error, text,
    vc_result,
};
use crate::runtime::{block_on, block_on_media};

/// The media streams of a call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vc_stream {
    /// Audio.
    VC_STREAM_AUDIO = 0,
    /// Video.
    VC_STREAM_VIDEO = 1,
    /// Data (whiteboard, files).
    VC_STREAM_DATA = 2,
    /// Application signalling between the two parties.
    VC_STREAM_SIGNALLING = 3,
}

/// The path media takes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vc_media_path {
    /// The session is closed.
    VC_MEDIA_PATH_CLOSED = 0,
    /// Straight to the peer.
    VC_MEDIA_PATH_DIRECT = 1,
    /// Through the server's relay (which cannot read it).
    VC_MEDIA_PATH_RELAY = 2,
}

/// How a media session is set up. Start from vc_media_options_default().
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vc_media_options {
    /// Security level 0–3 (docs/protocol.md §5); both parties must agree. Default 2.
    pub level: u8,
    /// Try a direct path before the relay (false: relay only). Default true.
    pub direct: bool,
    /// How long the key agreement with the peer may take, milliseconds. Default 15000.
    pub handshake_timeout_ms: u32,
    /// Largest frame accepted from the peer, bytes. Default 4 MiB.
    pub max_frame: u32,
}

/// What a media session did so far.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vc_media_stats {
    /// The path in use; VC_MEDIA_PATH_CLOSED once the session is closed (by vc_media_close() or
    /// the end of the call).
    pub path: vc_media_path,
    /// Our current sending key epoch.
    pub send_epoch: u32,
    /// The peer's latest key epoch seen.
    pub receive_epoch: u32,
    /// Frames sent.
    pub frames_sent: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Frames received and delivered.
    pub frames_received: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Packets received.
    pub packets_received: u64,
    /// Frames that never completed.
    pub frames_lost: u64,
    /// Replayed packets refused.
    pub replays_refused: u64,
    /// Packets that failed authentication.
    pub auth_failures: u64,
    /// Packets for keys we do not hold.
    pub unknown_key: u64,
    /// Packets from addresses that are not the peer's path.
    pub foreign_packets: u64,
    /// Malformed packets.
    pub malformed: u64,
    /// Frames dropped because the application did not receive them fast enough.
    pub dropped_slow_receiver: u64,
    /// Sends the network refused.
    pub send_errors: u64,
}

/// A call's media session. Safe to use from several threads at once: one thread may send while
/// another receives.
pub struct vc_media {
    session: Arc<MediaSession>,
    /// A frame too large for the buffer of the last receive, kept for the next one.
    pending: Mutex<Option<MediaFrame>>,
}

impl Drop for vc_media {
    fn drop(&mut self) {
        self.session.close();
    }
}

/// Fills `*out` with the default media options.
///
/// # Safety
/// Pointers: `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_media_options_default(out: *mut vc_media_options) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            let d = MediaConfig::default();
            let value = vc_media_options {
                level: d.level,
                direct: d.direct,
                handshake_timeout_ms: u32::try_from(d.handshake_timeout.as_millis())
                    .unwrap_or(u32::MAX),
                max_frame: u32::try_from(d.max_frame).unwrap_or(u32::MAX),
            };
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out = value };
            Ok(())
        })())
    })
}

fn config(options: &vc_media_options) -> Result<MediaConfig, vc_result> {
    if options.level > 3 {
        return Err(fail(
            vc_result::VC_RESULT_INVALID_ARGUMENT,
            format!("security level {} is not 0–3", options.level),
        ));
    }
    if options.handshake_timeout_ms == 0 || options.max_frame == 0 {
        return Err(fail(
            vc_result::VC_RESULT_INVALID_ARGUMENT,
            "handshake_timeout_ms and max_frame must be above 0",
        ));
    }
    Ok(MediaConfig {
        level: options.level,
        direct: options.direct,
        handshake_timeout: Duration::from_millis(options.handshake_timeout_ms.into()),
        max_frame: options.max_frame as usize,
        ..MediaConfig::default()
    })
}

/// Starts the media of the accepted call `call_id` (both parties call this once the call is
/// accepted): agrees keys end to end with the peer (checking its certificate), finds a path
/// (direct, else the server's relay) and returns the session. Blocks until the session is up or
/// the handshake timed out (VC_RESULT_TIMEOUT). Free with vc_media_free(); the session closes by
/// itself when the call ends. A call this client did not place or accept gives
/// VC_RESULT_INVALID_ARGUMENT; a peer certificate that fails the checks VC_RESULT_CERTIFICATE.
/// Refusals: `not_registered`, `unknown_user` (the peer has no certificate on record),
/// `unknown_call` and `not_in_call` (the call ended meanwhile).
///
/// # Safety
/// Pointers: `client` required; `call_id` required; `options` optional (NULL: the defaults of
/// vc_media_options_default()); `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_media_open(
    client: *const vc_client,
    call_id: *const c_char,
    options: *const vc_media_options,
    out: *mut *mut vc_media,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promises.
            let (client, call_id, options) = unsafe {
                (
                    handle(client, "client")?,
                    text(call_id, "call_id")?,
                    options.as_ref(),
                )
            };
            let config = match options {
                Some(o) => config(o)?,
                None => MediaConfig::default(),
            };
            let deadline = config.handshake_timeout + Duration::from_secs(1);
            let sdk = client.client().clone();
            let session = block_on(async move {
                tokio::time::timeout(deadline, sdk.media(call_id, config)).await
            })?
            .map_err(|_| {
                fail(
                    vc_result::VC_RESULT_TIMEOUT,
                    "the media handshake with the peer did not finish in time",
                )
            })?
            .map_err(sdk_error)?;
            let value = vc_media {
                session,
                pending: Mutex::new(None),
            };
            // SAFETY: `out` checked non-NULL.
            unsafe { hand_out(out, value) };
            Ok(())
        })())
    })
}

/// Closes the session (if still open) and frees the handle.
///
/// # Safety
/// Pointers: `media` optional (NULL: nothing happens); not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn vc_media_free(media: *mut vc_media) {
    // SAFETY: forwarded caller promise.
    unsafe { free_handle(media) }
}

/// Closes the session: nothing more is sent or received, and its statistics say
/// VC_MEDIA_PATH_CLOSED. The handle stays valid until freed.
///
/// # Safety
/// Pointers: `media` required.
#[no_mangle]
pub unsafe extern "C" fn vc_media_close(media: *const vc_media) -> vc_result {
    boundary(|| {
        // SAFETY: forwarded caller promise.
        done(unsafe { handle(media, "media") }.map(|m| m.session.close()))
    })
}

fn stream(value: u32) -> Result<Stream, vc_result> {
    u8::try_from(value)
        .ok()
        .and_then(Stream::from_u8)
        .ok_or_else(|| {
            fail(
                vc_result::VC_RESULT_INVALID_ARGUMENT,
                format!(
                    "stream {value} is not a vc_stream (0 audio, 1 video, 2 data, 3 signalling)"
                ),
            )
        })
}

/// Encrypts `data` (`len` bytes, up to the peer's max_frame) as one frame of `stream` (a
/// vc_stream value) and sends it. Returns once it is handed to the network; VC_RESULT_CLOSED
/// after the session closed.
///
/// # Safety
/// Pointers: `media` required; `data` required unless `len` is 0.
#[no_mangle]
pub unsafe extern "C" fn vc_media_send(
    media: *const vc_media,
    stream_id: u32,
    data: *const u8,
    len: usize,
) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promises.
            let (media, data) = unsafe { (handle(media, "media")?, input(data, len, "data")?) };
            let stream = stream(stream_id)?;
            if media.session.is_closed() {
                return Err(fail(
                    vc_result::VC_RESULT_CLOSED,
                    "the media session is closed",
                ));
            }
            block_on_media(media.session.send(stream, data))?.map_err(sdk_error)
        })())
    })
}

/// Receives the next frame into `buf` (capacity `cap`): its length goes into `*out_len` and its
/// stream into `*out_stream`. Waits up to `timeout_ms` milliseconds (0: only takes a frame
/// already waiting) and then gives VC_RESULT_TIMEOUT. A frame larger than `cap` is not lost: it
/// is kept for the next call, and VC_RESULT_BUFFER_TOO_SMALL puts its length (the capacity
/// needed; frames are bytes, with no NUL) in `*out_len`. VC_RESULT_CLOSED once the session is
/// closed and every frame was taken.
///
/// # Safety
/// Pointers: `media` required; `buf` required unless `cap` is 0; `out_len` required;
/// `out_stream` optional (NULL: the stream is not reported).
#[no_mangle]
pub unsafe extern "C" fn vc_media_receive(
    media: *const vc_media,
    timeout_ms: u32,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    out_stream: *mut u32,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out_len, "out_len")?;
            // SAFETY: forwarded caller promises.
            let (media, buf) = unsafe { (handle(media, "media")?, output(buf, cap, "buf")?) };
            let mut pending = media.pending.lock().unwrap_or_else(|p| p.into_inner());
            let frame = match pending.take() {
                Some(frame) => Some(frame),
                None => match media.session.try_recv() {
                    Some(frame) => Some(frame),
                    None if timeout_ms == 0 => {
                        if media.session.is_closed() {
                            None
                        } else {
                            crate::runtime::check_running()?;
                            return Err(fail(vc_result::VC_RESULT_TIMEOUT, "no frame waiting"));
                        }
                    }
                    None => {
                        let wait = Duration::from_millis(timeout_ms.into());
                        block_on_media(async {
                            tokio::time::timeout(wait, media.session.recv()).await
                        })?
                        .map_err(|_| {
                            fail(
                                vc_result::VC_RESULT_TIMEOUT,
                                format!("no frame within {timeout_ms} ms"),
                            )
                        })?
                    }
                },
            };
            let Some(frame) = frame else {
                return Err(fail(
                    vc_result::VC_RESULT_CLOSED,
                    "the media session is closed",
                ));
            };
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out_len = frame.data.len() };
            if frame.data.len() > buf.len() {
                let needed = frame.data.len();
                *pending = Some(frame);
                return Err(fail(
                    vc_result::VC_RESULT_BUFFER_TOO_SMALL,
                    format!("the frame has {needed} bytes; the buffer holds {cap}"),
                ));
            }
            buf[..frame.data.len()].copy_from_slice(&frame.data);
            if !out_stream.is_null() {
                // SAFETY: non-NULL; writable by the caller's promise.
                unsafe { *out_stream = frame.stream as u32 };
            }
            Ok(())
        })())
    })
}

/// Starts a new sending key epoch now (fresh keys on every stream; the peer follows).
///
/// # Safety
/// Pointers: `media` required.
#[no_mangle]
pub unsafe extern "C" fn vc_media_rekey(media: *const vc_media) -> vc_result {
    boundary(|| {
        done((|| {
            // SAFETY: forwarded caller promise.
            let media = unsafe { handle(media, "media")? };
            block_on(media.session.rekey())?
                .map(drop)
                .map_err(sdk_error)
        })())
    })
}

/// Fills `*out` with the session's statistics. Once the session is closed `path` is
/// VC_MEDIA_PATH_CLOSED and the counters keep their final values.
///
/// # Safety
/// Pointers: `media` required; `out` required.
#[no_mangle]
pub unsafe extern "C" fn vc_media_get_stats(
    media: *const vc_media,
    out: *mut vc_media_stats,
) -> vc_result {
    boundary(|| {
        done((|| {
            required(out, "out")?;
            // SAFETY: forwarded caller promise.
            let media = unsafe { handle(media, "media")? };
            let s = media.session.stats();
            let value = vc_media_stats {
                // `stats()` keeps the last path; a closed session has none.
                path: match media.session.path() {
                    None => vc_media_path::VC_MEDIA_PATH_CLOSED,
                    Some(MediaPath::Direct(_)) => vc_media_path::VC_MEDIA_PATH_DIRECT,
                    Some(MediaPath::Relay(_)) => vc_media_path::VC_MEDIA_PATH_RELAY,
                },
                send_epoch: s.send_epoch,
                receive_epoch: s.receive_epoch,
                frames_sent: s.frames_sent,
                bytes_sent: s.bytes_sent,
                packets_sent: s.packets_sent,
                frames_received: s.frames_received,
                bytes_received: s.bytes_received,
                packets_received: s.packets_received,
                frames_lost: s.frames_lost,
                replays_refused: s.replays_refused,
                auth_failures: s.auth_failures,
                unknown_key: s.unknown_key,
                foreign_packets: s.foreign_packets,
                malformed: s.malformed,
                dropped_slow_receiver: s.dropped_slow_receiver,
                send_errors: s.send_errors,
            };
            // SAFETY: checked non-NULL; writable by the caller's promise.
            unsafe { *out = value };
            Ok(())
        })())
    })
}
