//! A media session: the end-to-end encrypted media of one call between two members, over UDP.
//!
//! Frames are SFrame-protected with the sender's keys of the current epoch (KID = epoch, sender,
//! stream), split into packets ([`super::packet`]) and sent either directly to the peer — on an
//! address the peer offered (sealed in a signalling-stream frame) and that answered an
//! authenticated probe — or through the server's relay ([`super::relay`]) when the direct path
//! does not answer within [`MediaConfig::direct_timeout`]. Received packets are accepted only from
//! the relay or from an address that proved it holds the peer's keys; frames are reassembled,
//! checked (authentication, replay window, known KID) and delivered per stream. Everything refused
//! is counted in [`MediaStats`].
//!
//! Each sender moves to a new epoch on [`MediaSession::rekey`] (or after
//! [`MediaConfig::rekey_after_frames`]); the receiver follows when the first frame of the new epoch
//! authenticates and keeps the previous epoch's keys for [`MediaConfig::grace`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch, Mutex};

use super::control::{Control, APPLICATION, CONTROL};
use super::handshake::{kid_parts, SenderChain, SessionSecrets, Stream};
use super::packet::{split, PacketHeader, Reassembler, PACKET_HEADER_LEN};
use super::relay::{self, Datagram, RelayGrant, RELAY_OVERHEAD};
use super::sframe::{SframeContext, SframeError, MAX_HEADER_LEN, TAG_LEN};
use crate::util::{hex, unhex};
use crate::{Error, Result};

/// Largest datagram read.
const RECEIVE_BUFFER: usize = 65_536;
/// Epochs a receiver may skip forward at once (the frames of the epochs between were all lost).
const MAX_EPOCH_SKIP: u32 = 4;
/// How often a bound relay is reminded of our address.
const RELAY_KEEPALIVE: Duration = Duration::from_secs(15);
/// How long the relay may take to confirm a bind before the relay path counts as unreachable.
const RELAY_BIND_TIMEOUT: Duration = Duration::from_secs(3);
/// Socket buffer size asked for.
const SOCKET_BUFFER: usize = 4 << 20;
/// Incomplete frames held per stream.
const PENDING_FRAMES: usize = 16;

/// How a session behaves. [`Default`] suits a call on a LAN or the Internet.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Largest UDP payload sent, relay wrapping included (default 1200).
    pub max_packet: usize,
    /// Offer our address and try the direct path (default on). Off: media goes through the relay
    /// only, and our address is never shown to the peer.
    pub direct: bool,
    /// How long direct probes may go unanswered before the relay is used (default 1.5 s).
    pub direct_timeout: Duration,
    /// Time between probes (default 100 ms).
    pub probe_interval: Duration,
    /// How long the previous epoch's keys still open late frames (default 2 s).
    pub grace: Duration,
    /// Frames held for the application before newer ones are dropped (default 1024).
    pub receive_queue: usize,
    /// Largest frame accepted from the peer, bytes (default 4 MiB).
    pub max_frame: usize,
    /// Start a new sending epoch after this many frames (default: only on [`MediaSession::rekey`]).
    pub rekey_after_frames: Option<u64>,
    /// Security level of the call's key agreement: 2 (X25519, AES-128-GCM media) or 3 (X25519 +
    /// ML-KEM-768, AES-256-GCM media). Both members must ask for the same (default 2).
    pub level: u8,
    /// Local IP of the media socket (default: the one the signalling connection uses).
    pub bind: Option<IpAddr>,
    /// How long each step of the key agreement may wait for the peer (default 15 s).
    pub handshake_timeout: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            max_packet: 1200,
            direct: true,
            direct_timeout: Duration::from_millis(1500),
            probe_interval: Duration::from_millis(100),
            grace: Duration::from_secs(2),
            receive_queue: 1024,
            max_frame: 4 << 20,
            rekey_after_frames: None,
            level: 2,
            bind: None,
            handshake_timeout: Duration::from_secs(15),
        }
    }
}

/// The path media takes to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaPath {
    /// Straight to the peer at this address.
    Direct(SocketAddr),
    /// Through the server's relay at this address.
    Relay(SocketAddr),
}

impl std::fmt::Display for MediaPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaPath::Direct(a) => write!(f, "direct to {a}"),
            MediaPath::Relay(a) => write!(f, "relayed by {a}"),
        }
    }
}

/// A frame received from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// Its stream.
    pub stream: Stream,
    /// The sender's index in the call.
    pub sender: u16,
    /// The sender's epoch it was protected in.
    pub epoch: u32,
    /// The plaintext.
    pub data: Vec<u8>,
}

/// What a session did and refused, since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// The path in use.
    pub path: Option<MediaPath>,
    /// Our sending epoch.
    pub send_epoch: u32,
    /// The peer's epoch we receive in.
    pub receive_epoch: u32,
    /// Frames sent (application frames; probes not counted).
    pub frames_sent: u64,
    /// Plaintext bytes of those frames.
    pub bytes_sent: u64,
    /// Packets sent (including probes and relay binds).
    pub packets_sent: u64,
    /// Frames received and delivered.
    pub frames_received: u64,
    /// Plaintext bytes of those frames.
    pub bytes_received: u64,
    /// Packets received from accepted sources.
    pub packets_received: u64,
    /// Frames that never arrived whole (sequence gaps).
    pub frames_lost: u64,
    /// Frames refused as replays or as older than the replay window.
    pub replays_refused: u64,
    /// Frames refused because authentication failed (altered, or protected with another key).
    pub auth_failures: u64,
    /// Frames refused because their KID is unknown or its key was retired.
    pub unknown_key: u64,
    /// Packets refused because they came from an address that is neither the relay nor a proven
    /// peer address, or named another sender.
    pub foreign_packets: u64,
    /// Datagrams refused as malformed.
    pub malformed: u64,
    /// Frames dropped because the application did not take them fast enough.
    pub dropped_slow_receiver: u64,
    /// Packets the socket refused to send.
    pub send_errors: u64,
}

#[derive(Default)]
struct Counters {
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    packets_sent: AtomicU64,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    packets_received: AtomicU64,
    frames_lost: AtomicU64,
    replays_refused: AtomicU64,
    auth_failures: AtomicU64,
    unknown_key: AtomicU64,
    foreign_packets: AtomicU64,
    malformed: AtomicU64,
    dropped_slow_receiver: AtomicU64,
    send_errors: AtomicU64,
    send_epoch: AtomicU32,
    receive_epoch: AtomicU32,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A session whose socket and keys exist, before the peer's addresses are known: it seals our
/// addresses for the peer and opens the peer's. [`PreparedMedia::start`] begins the media.
pub struct PreparedMedia {
    socket: UdpSocket,
    me: u16,
    peer: u16,
    send: SframeContext,
    send_chain: SenderChain,
    receive: SframeContext,
    receive_chain: SenderChain,
}

impl std::fmt::Debug for PreparedMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedMedia")
            .field("me", &self.me)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl PreparedMedia {
    /// Binds a UDP socket on `bind` (port 0 picks one) and installs epoch 0's keys of a call where
    /// we are sender `me` and the peer is sender `peer`.
    pub async fn new(secrets: &SessionSecrets, me: u16, peer: u16, bind: IpAddr) -> Result<Self> {
        if me == peer {
            return Err(Error::InvalidArgument(
                "the two members of a call need distinct sender indices".into(),
            ));
        }
        let socket = UdpSocket::bind(SocketAddr::new(bind, 0))
            .await
            .map_err(|e| Error::io(format!("binding a UDP socket on {bind}"), e))?;
        // Room for bursts of video packets; the system may grant less.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        let crypto = |e: SframeError| Error::Crypto(e.to_string());
        let send_chain = secrets.sender_chain(me);
        let mut send = SframeContext::new();
        send_chain.install_send(&mut send).map_err(crypto)?;
        let receive_chain = secrets.sender_chain(peer);
        let mut receive = SframeContext::new();
        receive_chain
            .install_receive(&mut receive)
            .map_err(crypto)?;
        Ok(PreparedMedia {
            socket,
            me,
            peer,
            send,
            send_chain,
            receive,
            receive_chain,
        })
    }

    /// The local address of the media socket.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.socket
            .local_addr()
            .map_err(|e| Error::io("media socket address", e))
    }

    /// Our addresses for the peer as a sealed signalling-stream frame (hex): the local address, or
    /// none when `direct` is off (relay only).
    pub fn seal_candidates(&mut self, direct: bool) -> Result<String> {
        let list = if direct {
            vec![self.local_addr()?]
        } else {
            Vec::new()
        };
        let plain = Control::Candidates(list).encode();
        let kid = self.send_chain.kid(Stream::Signalling);
        let mut out = vec![0u8; plain.len() + MAX_HEADER_LEN + TAG_LEN];
        let n = self
            .send
            .encrypt(kid, &[], &plain, &mut out)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        Ok(hex(&out[..n]))
    }

    /// Opens the peer's sealed addresses; refuses anything not protected with the peer's
    /// signalling key of epoch 0, and any replay.
    pub fn open_candidates(&mut self, sealed: &str) -> Result<Vec<SocketAddr>> {
        let refused = |what: &str| Error::Protocol(format!("the peer's media addresses: {what}"));
        let mut frame = unhex(sealed).ok_or_else(|| refused("not hex"))?;
        let (kid, range) = self
            .receive
            .decrypt_in_place(&[], &mut frame)
            .map_err(|e| refused(&e.to_string()))?;
        if kid != self.receive_chain.kid(Stream::Signalling) {
            return Err(refused("not on the peer's signalling stream"));
        }
        match Control::decode(&frame[range]) {
            Some(Control::Candidates(list)) => Ok(list),
            _ => Err(refused("not an address list")),
        }
    }

    /// Starts the media: probes the peer's `candidates` (unless `config.direct` is off), binds to the
    /// `relay` if there is one, and returns once a path is chosen — the first direct address whose
    /// probe is answered within `config.direct_timeout`, else the relay. Fails when neither works.
    pub async fn start(
        self,
        candidates: Vec<SocketAddr>,
        relay: Option<RelayGrant>,
        config: MediaConfig,
    ) -> Result<MediaSession> {
        if config.max_packet < PACKET_HEADER_LEN + RELAY_OVERHEAD + 16 || config.max_packet > 65_000
        {
            return Err(Error::InvalidArgument(format!(
                "max_packet {} is outside {}..=65000",
                config.max_packet,
                PACKET_HEADER_LEN + RELAY_OVERHEAD + 16
            )));
        }
        let candidates: Vec<SocketAddr> = if config.direct {
            candidates
        } else {
            Vec::new()
        };
        let wait = if candidates.is_empty() {
            Duration::ZERO
        } else {
            config.direct_timeout
        };
        let mut nonce_bytes = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut nonce_bytes);
        let (path_tx, mut path_rx) = watch::channel(None);
        let (bound_tx, mut bound_rx) = watch::channel(false);
        let (frames_tx, frames_rx) = mpsc::channel(config.receive_queue.max(1));
        let counters = Counters::default();
        let shared = Arc::new(Shared {
            socket: self.socket,
            me: self.me,
            peer: self.peer,
            relay,
            path: path_tx,
            counters,
            probe_nonce: u64::from_be_bytes(nonce_bytes),
            sender: Mutex::new(Sender {
                context: self.send,
                chain: self.send_chain,
                sequence: [0; 4],
                frames_in_epoch: 0,
                frame: Vec::new(),
                scratch: vec![0u8; config.max_packet],
                out: Vec::new(),
                lengths: Vec::new(),
            }),
            config,
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let receiver = Receiver {
            shared: shared.clone(),
            context: self.receive,
            chain: self.receive_chain,
            trusted: Vec::new(),
            candidates,
            reassemblers: std::array::from_fn(|_| {
                Reassembler::new(PENDING_FRAMES, shared.config.max_frame)
            }),
            next_sequence: [None; 4],
            frames: frames_tx,
            bound: bound_tx,
        };
        let task = tokio::spawn(receiver.run());
        let session = MediaSession {
            shared: shared.clone(),
            frames: Mutex::new(frames_rx),
            task: StdMutex::new(Some(task)),
        };

        let direct = async {
            loop {
                if let Some(p) = *path_rx.borrow_and_update() {
                    return p;
                }
                if path_rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        if let Ok(path) = tokio::time::timeout(wait, direct).await {
            tracing::debug!(%path, "media path chosen");
            return Ok(session);
        }
        let Some(grant) = shared.relay else {
            return Err(Error::Connection {
                target: "the peer's media addresses".into(),
                message: "no direct path answered and the server offers no relay".into(),
            });
        };
        let bound = tokio::time::timeout(RELAY_BIND_TIMEOUT, bound_rx.wait_for(|b| *b)).await;
        if !matches!(bound, Ok(Ok(_))) {
            return Err(Error::Connection {
                target: grant.address.to_string(),
                message: "no direct path answered and the relay did not confirm the bind".into(),
            });
        }
        shared.path.send_if_modified(|p| {
            if p.is_none() {
                *p = Some(MediaPath::Relay(grant.address));
                true
            } else {
                false
            }
        });
        tracing::debug!(path = ?*shared.path.borrow(), "media path chosen");
        Ok(session)
    }
}

struct Sender {
    context: SframeContext,
    chain: SenderChain,
    sequence: [u32; 4],
    frames_in_epoch: u64,
    /// The protected frame being sent (grows to the largest frame, then reused).
    frame: Vec<u8>,
    scratch: Vec<u8>,
    /// The frame's datagrams, back to back, and their lengths.
    out: Vec<u8>,
    lengths: Vec<usize>,
}

impl Sender {
    /// Moves to the next epoch: new keys on every stream; the old ones are forgotten.
    fn advance(&mut self) -> Result<u32> {
        let next = self.chain.next().ok_or_else(|| {
            Error::Crypto("the sending epoch counter is exhausted; start a new call".into())
        })?;
        next.install_send(&mut self.context)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        for stream in Stream::ALL {
            self.context.remove_send_key(self.chain.kid(stream));
        }
        self.chain = next;
        self.frames_in_epoch = 0;
        Ok(self.chain.epoch())
    }
}

struct Shared {
    socket: UdpSocket,
    me: u16,
    peer: u16,
    relay: Option<RelayGrant>,
    path: watch::Sender<Option<MediaPath>>,
    counters: Counters,
    probe_nonce: u64,
    sender: Mutex<Sender>,
    config: MediaConfig,
    closed: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Protects `plain` (after an optional first byte) on `stream` and sends its packets along
    /// `path`. Transport control frames (`counted` false) are not counted as frames sent.
    async fn send_frame(
        &self,
        stream: Stream,
        prefix: Option<u8>,
        plain: &[u8],
        path: MediaPath,
        counted: bool,
    ) -> Result<()> {
        let mut guard = self.sender.lock().await;
        let s = &mut *guard;
        if let Some(limit) = self.config.rekey_after_frames.filter(|_| counted) {
            if s.frames_in_epoch >= limit.max(1) {
                let epoch = s.advance()?;
                self.counters.send_epoch.store(epoch, Ordering::Relaxed);
            }
        }
        let kid = s.chain.kid(stream);
        let offset = usize::from(prefix.is_some());
        let total = offset + plain.len();
        let needed = total + MAX_HEADER_LEN + TAG_LEN;
        if total > self.config.max_frame {
            return Err(Error::InvalidArgument(format!(
                "frame of {} bytes exceeds the largest frame, {} bytes",
                plain.len(),
                self.config.max_frame
            )));
        }
        if s.frame.len() < needed {
            s.frame.resize(needed, 0);
        }
        if let Some(p) = prefix {
            s.frame[0] = p;
        }
        s.frame[offset..total].copy_from_slice(plain);
        let n = s
            .context
            .encrypt_in_place(kid, &[], &mut s.frame, total)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let sequence = s.sequence[stream as usize];
        s.sequence[stream as usize] = sequence.wrapping_add(1);
        if counted {
            s.frames_in_epoch += 1;
        }
        let (dest, wrap) = match path {
            MediaPath::Direct(addr) => (addr, None),
            MediaPath::Relay(addr) => (addr, self.relay.map(|g| g.token)),
        };
        let prefix_len = if wrap.is_some() { RELAY_OVERHEAD } else { 0 };
        s.out.clear();
        s.lengths.clear();
        let Sender {
            frame,
            scratch,
            out,
            lengths,
            ..
        } = s;
        split(
            self.me,
            stream as u8,
            sequence,
            &frame[..n],
            self.config.max_packet - prefix_len,
            scratch,
            |packet| {
                if let Some(token) = &wrap {
                    let at = out.len();
                    out.resize(at + RELAY_OVERHEAD, 0);
                    relay::write_relay_prefix(token, &mut out[at..]);
                }
                out.extend_from_slice(packet);
                lengths.push(prefix_len + packet.len());
            },
        )
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut at = 0;
        for &len in lengths.iter() {
            self.transmit(&out[at..at + len], dest).await;
            at += len;
        }
        if counted {
            bump(&self.counters.frames_sent);
            self.counters
                .bytes_sent
                .fetch_add(plain.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn transmit(&self, datagram: &[u8], dest: SocketAddr) {
        match self.socket.send_to(datagram, dest).await {
            Ok(_) => bump(&self.counters.packets_sent),
            Err(e) => {
                bump(&self.counters.send_errors);
                tracing::debug!(%dest, error = %e, "media packet not sent");
            }
        }
    }

    /// Sends a transport control frame to `dest` directly.
    async fn send_control(&self, control: Control, dest: SocketAddr) {
        let plain = control.encode();
        if let Err(e) = self
            .send_frame(
                Stream::Signalling,
                None,
                &plain,
                MediaPath::Direct(dest),
                false,
            )
            .await
        {
            tracing::debug!(error = %e, "control frame not sent");
        }
    }
}

/// The receiving half: owned by the session's task.
struct Receiver {
    shared: Arc<Shared>,
    context: SframeContext,
    chain: SenderChain,
    /// Addresses that proved they hold the peer's keys (answered or sent a probe).
    trusted: Vec<SocketAddr>,
    candidates: Vec<SocketAddr>,
    reassemblers: [Reassembler; 4],
    next_sequence: [Option<u32>; 4],
    frames: mpsc::Sender<MediaFrame>,
    bound: watch::Sender<bool>,
}

impl Receiver {
    async fn run(mut self) {
        let mut buf = vec![0u8; RECEIVE_BUFFER];
        let started = Instant::now();
        let mut probe = tokio::time::interval(self.shared.config.probe_interval);
        let mut housekeeping = tokio::time::interval(Duration::from_millis(250));
        let mut last_bind = None::<Instant>;
        let mut bind_counter = 0u64;
        loop {
            tokio::select! {
                received = self.shared.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.datagram(&mut buf[..n], from).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "media socket receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = probe.tick() => {
                    let probing = self.shared.path.borrow().is_none()
                        && started.elapsed() < self.shared.config.direct_timeout;
                    if probing {
                        for dest in self.candidates.clone() {
                            self.shared
                                .send_control(Control::Probe { nonce: self.shared.probe_nonce }, dest)
                                .await;
                        }
                    }
                }
                _ = housekeeping.tick() => {
                    self.context.purge_expired();
                    if let Some(grant) = self.shared.relay {
                        let due = match last_bind {
                            None => true,
                            Some(at) if !*self.bound.borrow() => at.elapsed() >= Duration::from_millis(250),
                            Some(at) => at.elapsed() >= RELAY_KEEPALIVE,
                        };
                        if due {
                            bind_counter += 1;
                            let bind = grant.secret.bind(&grant.token, bind_counter);
                            self.shared.transmit(&bind, grant.address).await;
                            last_bind = Some(Instant::now());
                        }
                    }
                }
            }
        }
    }

    fn is_relay(&self, from: SocketAddr) -> bool {
        self.shared.relay.is_some_and(|g| g.address == from)
    }

    async fn datagram(&mut self, datagram: &mut [u8], from: SocketAddr) {
        let shared = self.shared.clone();
        let c = &shared.counters;
        match Datagram::parse(datagram) {
            Some(Datagram::Bound(token)) if self.is_relay(from) => {
                if self.shared.relay.is_some_and(|g| g.token == token) {
                    self.bound.send_replace(true);
                } else {
                    bump(&c.foreign_packets);
                }
            }
            Some(Datagram::Packet(_)) => {
                let trusted = self.is_relay(from) || self.trusted.contains(&from);
                let Ok((header, _)) = PacketHeader::parse(datagram) else {
                    bump(&c.malformed);
                    return;
                };
                if header.sender != self.shared.peer {
                    bump(&c.foreign_packets);
                    return;
                }
                if Stream::from_u8(header.stream).is_none() {
                    bump(&c.malformed);
                    return;
                }
                if !trusted {
                    // An unknown address may only prove itself with a probe (a single-packet
                    // frame on the signalling stream that authenticates with the peer's key).
                    let probe_like = header.count == 1
                        && header.stream == Stream::Signalling as u8
                        && self.shared.config.direct;
                    if !probe_like {
                        bump(&c.foreign_packets);
                        return;
                    }
                }
                if trusted {
                    bump(&c.packets_received);
                }
                if header.count == 1 {
                    let frame = &mut datagram[PACKET_HEADER_LEN..];
                    self.open(header, frame, from, trusted).await;
                } else if let Some(mut whole) = self.reassemblers[usize::from(header.stream)]
                    .push(header, &datagram[PACKET_HEADER_LEN..])
                {
                    self.open(header, &mut whole, from, trusted).await;
                }
            }
            _ => bump(&c.malformed),
        }
    }

    /// Authenticates, decrypts and dispatches one whole frame. From an address not yet proven
    /// (`trusted` false) only a probe is taken; anything else counts as foreign.
    async fn open(
        &mut self,
        header: PacketHeader,
        frame: &mut [u8],
        from: SocketAddr,
        trusted: bool,
    ) {
        let shared = self.shared.clone();
        let c = &shared.counters;
        let (kid, range) = match self.decrypt(frame) {
            Ok(v) => v,
            Err(_) if !trusted => return bump(&c.foreign_packets),
            Err(SframeError::Replay { .. } | SframeError::TooOld { .. }) => {
                return bump(&c.replays_refused)
            }
            Err(SframeError::UnknownKid(_)) => return bump(&c.unknown_key),
            Err(SframeError::AuthenticationFailed) => return bump(&c.auth_failures),
            Err(_) => return bump(&c.malformed),
        };
        let parts = kid_parts(kid)
            .and_then(|(epoch, sender, n)| Some((epoch, sender, Stream::from_u8(n)?)));
        let Some((epoch, sender, stream)) = parts else {
            return bump(&c.malformed);
        };
        if sender != header.sender || stream as u8 != header.stream {
            return bump(&c.malformed);
        }
        if !trusted {
            bump(&c.packets_received);
        }
        self.account_sequence(stream, header.frame);
        let plain = &frame[range];
        if stream == Stream::Signalling {
            match plain.first() {
                Some(&CONTROL) => self.control(Control::decode(plain), from).await,
                Some(&APPLICATION) if trusted => {
                    self.deliver(stream, sender, epoch, plain[1..].to_vec())
                }
                Some(&APPLICATION) => bump(&c.foreign_packets),
                _ => bump(&c.malformed),
            }
        } else if trusted {
            self.deliver(stream, sender, epoch, plain.to_vec())
        } else {
            bump(&c.foreign_packets)
        }
    }

    fn deliver(&mut self, stream: Stream, sender: u16, epoch: u32, data: Vec<u8>) {
        let c = &self.shared.counters;
        let len = data.len() as u64;
        let frame = MediaFrame {
            stream,
            sender,
            epoch,
            data,
        };
        // Counted before it is handed over, so statistics read after a frame arrives include it.
        match self.frames.try_reserve() {
            Ok(permit) => {
                bump(&c.frames_received);
                c.bytes_received.fetch_add(len, Ordering::Relaxed);
                permit.send(frame);
            }
            Err(_) => bump(&c.dropped_slow_receiver),
        }
    }

    /// Counts frames skipped in a stream's sequence as lost (a late one gives one back).
    fn account_sequence(&mut self, stream: Stream, sequence: u32) {
        let c = &self.shared.counters;
        let slot = &mut self.next_sequence[stream as usize];
        match *slot {
            None => *slot = Some(sequence.wrapping_add(1)),
            Some(next) => {
                let ahead = sequence.wrapping_sub(next);
                if ahead < u32::MAX / 2 {
                    c.frames_lost.fetch_add(u64::from(ahead), Ordering::Relaxed);
                    *slot = Some(sequence.wrapping_add(1));
                } else {
                    let _ = c
                        .frames_lost
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
                }
            }
        }
    }

    /// Decrypts with the current keys, or — for a KID of one of the peer's next few epochs — with
    /// that epoch's keys, adopted (and the previous ones retired) only if the frame authenticates.
    fn decrypt(
        &mut self,
        frame: &mut [u8],
    ) -> std::result::Result<(u64, std::ops::Range<usize>), SframeError> {
        match self.context.decrypt_in_place(&[], frame) {
            Err(SframeError::UnknownKid(kid)) => {
                let Some((epoch, sender, _)) = kid_parts(kid) else {
                    return Err(SframeError::UnknownKid(kid));
                };
                let current = self.chain.epoch();
                if sender != self.shared.peer
                    || epoch <= current
                    || epoch - current > MAX_EPOCH_SKIP
                {
                    return Err(SframeError::UnknownKid(kid));
                }
                let mut next = self.chain.next().ok_or(SframeError::UnknownKid(kid))?;
                while next.epoch() < epoch {
                    next = next.next().ok_or(SframeError::UnknownKid(kid))?;
                }
                next.install_receive(&mut self.context)?;
                match self.context.decrypt_in_place(&[], frame) {
                    Ok(done) => {
                        for stream in Stream::ALL {
                            self.context.retire_receive_key(
                                self.chain.kid(stream),
                                self.shared.config.grace,
                            );
                        }
                        self.chain = next;
                        self.shared
                            .counters
                            .receive_epoch
                            .store(epoch, Ordering::Relaxed);
                        Ok(done)
                    }
                    Err(e) => {
                        for stream in Stream::ALL {
                            self.context.remove_receive_key(next.kid(stream));
                        }
                        Err(e)
                    }
                }
            }
            other => other,
        }
    }

    async fn control(&mut self, control: Option<Control>, from: SocketAddr) {
        let c = &self.shared.counters;
        match control {
            Some(Control::Probe { .. }) if !self.shared.config.direct => {}
            Some(Control::Probe { nonce }) => {
                if !self.trusted.contains(&from) {
                    self.trusted.push(from);
                }
                self.shared
                    .send_control(Control::ProbeAck { nonce }, from)
                    .await;
            }
            Some(Control::ProbeAck { nonce }) if nonce == self.shared.probe_nonce => {
                if !self.trusted.contains(&from) {
                    self.trusted.push(from);
                }
                self.shared.path.send_if_modified(|p| {
                    if p.is_none() {
                        *p = Some(MediaPath::Direct(from));
                        true
                    } else {
                        false
                    }
                });
            }
            _ => bump(&c.malformed),
        }
    }
}

/// The media of an established call: send frames on a stream, receive the peer's, see statistics.
/// Dropping it (or [`MediaSession::close`]) stops it.
pub struct MediaSession {
    shared: Arc<Shared>,
    frames: Mutex<mpsc::Receiver<MediaFrame>>,
    task: StdMutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("me", &self.shared.me)
            .field("peer", &self.shared.peer)
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// Sends one frame on `stream` (any size up to [`MediaConfig::max_frame`]; split into packets
    /// as needed).
    pub async fn send(&self, stream: Stream, frame: &[u8]) -> Result<()> {
        let path = self.path().ok_or_else(|| Error::Connection {
            target: "media".into(),
            message: "the media session is closed".into(),
        })?;
        let prefix = (stream == Stream::Signalling).then_some(APPLICATION);
        self.shared
            .send_frame(stream, prefix, frame, path, true)
            .await
    }

    /// The next frame from the peer; `None` once the session is closed.
    pub async fn recv(&self) -> Option<MediaFrame> {
        self.frames.lock().await.recv().await
    }

    /// A frame from the peer if one is waiting.
    pub fn try_recv(&self) -> Option<MediaFrame> {
        self.frames.try_lock().ok()?.try_recv().ok()
    }

    /// Starts our next sending epoch now: fresh keys on every stream. The peer follows by itself.
    pub async fn rekey(&self) -> Result<u32> {
        let epoch = self.shared.sender.lock().await.advance()?;
        self.shared
            .counters
            .send_epoch
            .store(epoch, Ordering::Relaxed);
        Ok(epoch)
    }

    /// The path in use (`None` once closed).
    pub fn path(&self) -> Option<MediaPath> {
        if self.is_closed() {
            None
        } else {
            *self.shared.path.borrow()
        }
    }

    /// The local address of the media socket.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.shared
            .socket
            .local_addr()
            .map_err(|e| Error::io("media socket address", e))
    }

    /// Counters since the start; `path` is the last path used, also after closing.
    pub fn stats(&self) -> MediaStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MediaStats {
            path: *self.shared.path.borrow(),
            send_epoch: c.send_epoch.load(Ordering::Relaxed),
            receive_epoch: c.receive_epoch.load(Ordering::Relaxed),
            frames_sent: get(&c.frames_sent),
            bytes_sent: get(&c.bytes_sent),
            packets_sent: get(&c.packets_sent),
            frames_received: get(&c.frames_received),
            bytes_received: get(&c.bytes_received),
            packets_received: get(&c.packets_received),
            frames_lost: get(&c.frames_lost),
            replays_refused: get(&c.replays_refused),
            auth_failures: get(&c.auth_failures),
            unknown_key: get(&c.unknown_key),
            foreign_packets: get(&c.foreign_packets),
            malformed: get(&c.malformed),
            dropped_slow_receiver: get(&c.dropped_slow_receiver),
            send_errors: get(&c.send_errors),
        }
    }

    /// Stops the session: no more frames are sent or received; [`MediaSession::recv`] returns the
    /// frames already queued, then `None`.
    pub fn close(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        self.shared.closed.store(true, Ordering::SeqCst);
    }

    /// Whether the session was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
