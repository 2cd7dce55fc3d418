//! A call's media for the bindings: frames per stream, statistics, a frame listener.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use vcsdk::media::{MediaConfig, MediaPath};

use super::{on_runtime, Subscription, VcError};
use crate::result::vc_result;

/// The media streams of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Stream {
    /// Audio.
    Audio,
    /// Video.
    Video,
    /// Data (whiteboard, files).
    Data,
    /// Application signalling between the parties.
    Signalling,
}

impl From<Stream> for vcsdk::media::Stream {
    fn from(s: Stream) -> Self {
        match s {
            Stream::Audio => vcsdk::media::Stream::Audio,
            Stream::Video => vcsdk::media::Stream::Video,
            Stream::Data => vcsdk::media::Stream::Data,
            Stream::Signalling => vcsdk::media::Stream::Signalling,
        }
    }
}

impl From<vcsdk::media::Stream> for Stream {
    fn from(s: vcsdk::media::Stream) -> Self {
        match s {
            vcsdk::media::Stream::Audio => Stream::Audio,
            vcsdk::media::Stream::Video => Stream::Video,
            vcsdk::media::Stream::Data => Stream::Data,
            vcsdk::media::Stream::Signalling => Stream::Signalling,
        }
    }
}

/// Security levels (docs/protocol.md §5). Calls use `Encrypted` or `PostQuantum`; the lower
/// levels exist for conference policies and are refused for calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SecurityLevel {
    /// 0: no mutual authentication, nothing encrypted.
    Open,
    /// 1: mutual authentication, nothing encrypted.
    Authenticated,
    /// 2: mutual authentication, X25519 key agreement, AES-128-GCM media.
    Encrypted,
    /// 3: as 2 with ML-KEM-768 in the key agreement and AES-256-GCM.
    PostQuantum,
}

impl SecurityLevel {
    fn number(self) -> u8 {
        match self {
            SecurityLevel::Open => 0,
            SecurityLevel::Authenticated => 1,
            SecurityLevel::Encrypted => 2,
            SecurityLevel::PostQuantum => 3,
        }
    }
}

/// How a media session is set up.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MediaOptions {
    /// The security level; both parties must use the same (`default_media_options()` gives
    /// `Encrypted`).
    pub level: SecurityLevel,
    /// Try a direct path before the relay (false: relay only, our address is never revealed).
    #[uniffi(default = true)]
    pub direct: bool,
    /// How long the key agreement may take, milliseconds.
    #[uniffi(default = 15000)]
    pub handshake_timeout_ms: u32,
}

impl MediaOptions {
    /// The SDK configuration for these options.
    pub(crate) fn config(&self) -> Result<MediaConfig, VcError> {
        if !matches!(
            self.level,
            SecurityLevel::Encrypted | SecurityLevel::PostQuantum
        ) {
            return Err(VcError::kind(
                vc_result::VC_RESULT_INVALID_ARGUMENT,
                format!(
                    "security level {} is for conferences; calls use 2 (Encrypted) or 3 (PostQuantum)",
                    self.level.number()
                ),
            ));
        }
        if self.handshake_timeout_ms == 0 {
            return Err(VcError::kind(
                vc_result::VC_RESULT_INVALID_ARGUMENT,
                "handshake_timeout_ms must be above 0",
            ));
        }
        Ok(MediaConfig {
            level: self.level.number(),
            direct: self.direct,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms.into()),
            ..MediaConfig::default()
        })
    }
}

/// The default media options (level 2, direct path first, 15 s handshake).
#[uniffi::export]
pub fn default_media_options() -> MediaOptions {
    MediaOptions {
        level: SecurityLevel::Encrypted,
        direct: true,
        handshake_timeout_ms: 15_000,
    }
}

/// The path media takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PathKind {
    /// The session is closed.
    Closed,
    /// Straight to the peer.
    Direct,
    /// Through the server's relay (which cannot read it).
    Relay,
}

/// A frame from the peer.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MediaFrame {
    /// Its stream.
    pub stream: Stream,
    /// Its bytes, decrypted and authenticated.
    pub data: Vec<u8>,
}

/// What a media session did so far.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MediaStats {
    /// The path in use.
    pub path: PathKind,
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
    /// Frames received.
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
}

/// Receives a session's frames. Called on a thread of the library, one frame at a time, in
/// order; `on_closed` once when the session ends.
#[uniffi::export(with_foreign)]
pub trait FrameListener: Send + Sync {
    /// A frame arrived.
    fn on_frame(&self, frame: MediaFrame);
    /// The session closed (the call ended, or `stop` was called); nothing follows.
    fn on_closed(&self);
}

/// A call's end-to-end encrypted media.
#[derive(uniffi::Object)]
pub struct MediaSession {
    session: Arc<vcsdk::media::MediaSession>,
}

impl MediaSession {
    /// Wraps an SDK session.
    pub(crate) fn new(session: Arc<vcsdk::media::MediaSession>) -> Self {
        MediaSession { session }
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.session.close();
    }
}

fn closed() -> VcError {
    VcError::kind(vc_result::VC_RESULT_CLOSED, "the media session is closed")
}

#[uniffi::export]
impl MediaSession {
    /// Encrypts `data` as one frame of `stream` and sends it.
    pub async fn send(&self, stream: Stream, data: Vec<u8>) -> Result<(), VcError> {
        if self.session.is_closed() {
            return Err(closed());
        }
        let session = self.session.clone();
        on_runtime(async move { Ok(session.send(stream.into(), &data).await?) }).await
    }

    /// Like `send`, but blocks the calling thread instead of suspending: for media threads that
    /// produce frames in a loop, where it costs less per frame than an awaited call. Not for use
    /// on an event loop's thread.
    pub fn send_blocking(&self, stream: Stream, data: Vec<u8>) -> Result<(), VcError> {
        if self.session.is_closed() {
            return Err(closed());
        }
        crate::runtime::block_on_media(self.session.send(stream.into(), &data))
            .map_err(VcError::from_result_code)?
            .map_err(VcError::from)
    }

    /// Like `receive`, but blocks the calling thread (see `send_blocking`).
    pub fn receive_blocking(&self, timeout_ms: u32) -> Result<Option<MediaFrame>, VcError> {
        let session = self.session.clone();
        let wait = Duration::from_millis(timeout_ms.into());
        let frame = crate::runtime::block_on_media(async move {
            tokio::time::timeout(wait, session.recv()).await
        })
        .map_err(VcError::from_result_code)?;
        match frame {
            Ok(Some(frame)) => Ok(Some(MediaFrame {
                stream: frame.stream.into(),
                data: frame.data,
            })),
            Ok(None) => Err(closed()),
            Err(_) => Ok(None),
        }
    }

    /// The next frame, waiting up to `timeout_ms`; `None` when none came in time. `Closed` once
    /// the session is closed and every frame was taken.
    pub async fn receive(&self, timeout_ms: u32) -> Result<Option<MediaFrame>, VcError> {
        let session = self.session.clone();
        on_runtime(async move {
            let wait = Duration::from_millis(timeout_ms.into());
            match tokio::time::timeout(wait, session.recv()).await {
                Ok(Some(frame)) => Ok(Some(MediaFrame {
                    stream: frame.stream.into(),
                    data: frame.data,
                })),
                Ok(None) => Err(closed()),
                Err(_) => Ok(None),
            }
        })
        .await
    }

    /// Hands every frame to `listener` (instead of `receive`) until the subscription is
    /// cancelled or dropped, or the session closes.
    pub fn add_frame_listener(
        &self,
        listener: Arc<dyn FrameListener>,
    ) -> Result<Arc<Subscription>, VcError> {
        let (stop, mut stopped) = watch::channel(false);
        let session = self.session.clone();
        std::thread::Builder::new()
            .name("vcsdk-frames".into())
            .spawn(move || loop {
                let next = crate::runtime::block_on_media(async {
                    tokio::select! {
                        biased;
                        _ = stopped.wait_for(|s| *s) => None,
                        frame = session.recv() => Some(frame),
                    }
                });
                // A listener that throws is reported by UniFFI as a panic; delivery goes on.
                let call = |f: &dyn Fn()| {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                };
                match next {
                    Ok(Some(Some(frame))) => call(&|| {
                        listener.on_frame(MediaFrame {
                            stream: frame.stream.into(),
                            data: frame.data.clone(),
                        })
                    }),
                    Ok(Some(None)) => {
                        call(&|| listener.on_closed());
                        break;
                    }
                    _ => break,
                }
            })
            .map_err(|e| VcError::kind(vc_result::VC_RESULT_STORE, e.to_string()))?;
        Ok(Arc::new(Subscription::new(move || {
            let _ = stop.send(true);
        })))
    }

    /// Starts a new sending key epoch now; returns its number.
    pub async fn rekey(&self) -> Result<u32, VcError> {
        let session = self.session.clone();
        on_runtime(async move { Ok(session.rekey().await?) }).await
    }

    /// What the session did so far.
    pub fn stats(&self) -> MediaStats {
        let s = self.session.stats();
        MediaStats {
            // `stats()` keeps the last path; a closed session has none.
            path: match self.session.path() {
                None => PathKind::Closed,
                Some(MediaPath::Direct(_)) => PathKind::Direct,
                Some(MediaPath::Relay(_)) => PathKind::Relay,
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
        }
    }

    /// Stops the session: nothing more is sent or received (`close`, in Kotlin and Swift, frees
    /// the object).
    pub fn stop(&self) {
        self.session.close();
    }
}
