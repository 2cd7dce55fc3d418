//! The media of a conference: a full mesh over UDP. Each member protects a frame once with its
//! own key of the current epoch (KID = epoch, member index, stream) and sends the packets to every
//! other member — directly, on an address that answered an authenticated probe, or through the
//! server's relay when the direct path does not answer in time. Streams the policy leaves plain
//! are sent in the clear (packet stream byte with [`PLAIN_FLAG`]) and accepted only where the
//! policy of a live epoch says so, from proven addresses.
//!
//! Keys come from the epoch secret the distributor wraps to every member ([`super::group_key`]).
//! Receiving keys are derived on a sender's first frame of an epoch; frames of an epoch whose
//! bundle has not arrived yet are held (bounded, briefly) until it does, and the previous epoch's
//! keys stay for a grace period, so no frame of a remaining member is lost at a switch. A member
//! that left is dropped from the mesh at once, and gets no key of the next epoch.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Mutex};

use super::group_key::EpochSecret;
use super::policy::{Policy, Protection};
use crate::media::control::Control;
use crate::media::handshake::{kid_parts, Stream};
use crate::media::packet::{split, PacketHeader, Reassembler, PACKET_HEADER_LEN};
use crate::media::relay::{self, Datagram, RelayGrant, GROUP_RELAY_OVERHEAD};
use crate::media::sframe::{CipherSuite, SframeContext, SframeError, MAX_HEADER_LEN, TAG_LEN};
use crate::media::MediaPath;
use crate::util::hex;
use crate::{Error, Result};

/// Stream number of the transport's own messages (probes, addresses): always encrypted.
pub const TRANSPORT_STREAM: u8 = 4;
/// Set in a packet's stream byte when the frame is sent in the clear.
pub const PLAIN_FLAG: u8 = 0x80;
/// Largest datagram read.
const RECEIVE_BUFFER: usize = 65_536;
/// How often a bound relay is reminded of our address.
const RELAY_KEEPALIVE: Duration = Duration::from_secs(15);
/// Socket buffer size asked for.
const SOCKET_BUFFER: usize = 4 << 20;
/// Incomplete frames held per sender and stream.
const PENDING_FRAMES: usize = 16;
/// Frames of a not yet known epoch held, and for how long.
const EARLY_FRAMES: usize = 512;
const EARLY_FOR: Duration = Duration::from_secs(3);
/// Of those, most held for one sender (so no member crowds out the others' frames).
const EARLY_FRAMES_PER_SENDER: usize = 128;
/// How far past our current epoch a frame may be held for: a bundle in flight is one epoch
/// ahead (two when a join and a leave come together); anything further is no early frame.
const EARLY_EPOCHS_AHEAD: u32 = 2;
/// Most probes sent to one address of one member's list.
const PROBES_PER_ADDRESS: u32 = 32;
/// Epochs whose receiving keys are kept (the current one and those in their grace period).
const KEPT_EPOCHS: usize = 3;

/// The KID of `sender`'s stream number `stream` in `epoch`.
pub fn conference_kid(epoch: u32, sender: u16, stream: u8) -> u64 {
    (u64::from(epoch) << 24) | (u64::from(sender) << 8) | u64::from(stream)
}

/// The suite of the transport stream under `policy`.
fn transport_suite(policy: &Policy) -> CipherSuite {
    if policy.post_quantum() {
        CipherSuite::Aes256GcmSha512
    } else {
        CipherSuite::Aes128GcmSha256
    }
}

/// The protection of stream number `stream` under `policy` (`None` for a plain stream).
fn suite_of(policy: &Policy, stream: u8) -> Option<CipherSuite> {
    if stream == TRANSPORT_STREAM {
        Some(transport_suite(policy))
    } else {
        Stream::from_u8(stream).and_then(|s| policy.streams.get(s).suite())
    }
}

/// How the conference media behaves. [`Default`] suits a LAN or the Internet.
#[derive(Debug, Clone)]
pub struct ConferenceMediaConfig {
    /// Largest UDP payload sent, relay wrapping included (default 1200).
    pub max_packet: usize,
    /// Offer our address and try direct paths (default on). Off: everything goes through the
    /// relay and our address is never shown to the others.
    pub direct: bool,
    /// How long a peer's direct probes may go unanswered before the relay is used (default 1.5 s).
    pub direct_timeout: Duration,
    /// Time between probes (default 100 ms).
    pub probe_interval: Duration,
    /// How long the previous epoch's keys still open late frames (default 2 s).
    pub grace: Duration,
    /// Frames held for the application before newer ones are dropped (default 1024).
    pub receive_queue: usize,
    /// Largest frame accepted, bytes (default 4 MiB).
    pub max_frame: usize,
    /// Local IP of the media socket (default: the one the signalling connection uses).
    pub bind: Option<IpAddr>,
}

impl Default for ConferenceMediaConfig {
    fn default() -> Self {
        ConferenceMediaConfig {
            max_packet: 1200,
            direct: true,
            direct_timeout: Duration::from_millis(1500),
            probe_interval: Duration::from_millis(100),
            grace: Duration::from_secs(2),
            receive_queue: 1024,
            max_frame: 4 << 20,
            bind: None,
        }
    }
}

/// A frame from another member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceFrame {
    /// Its stream.
    pub stream: Stream,
    /// The sender's member index.
    pub sender: u16,
    /// The sender's id.
    pub member: Arc<str>,
    /// The epoch it was protected in (the current one for a plain frame).
    pub epoch: u32,
    /// Whether it came in the clear (a plain stream of the policy).
    pub plain: bool,
    /// The plaintext.
    pub data: Vec<u8>,
}

/// The path to one other member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPath {
    /// The member.
    pub member: String,
    /// Its index.
    pub index: u16,
    /// The path in use, if one works yet.
    pub path: Option<MediaPath>,
}

/// What the conference media did and refused, since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConferenceMediaStats {
    /// Our sending epoch.
    pub epoch: u32,
    /// The path to each other member.
    pub peers: Vec<PeerPath>,
    /// Frames sent (each counted once, whatever the number of members).
    pub frames_sent: u64,
    /// Plaintext bytes of those frames.
    pub bytes_sent: u64,
    /// Packets sent (to all members; probes and binds included).
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
    /// Frames refused because authentication failed.
    pub auth_failures: u64,
    /// Frames refused because their key is unknown, retired, or of an epoch that never came.
    pub unknown_key: u64,
    /// Packets refused because they came from an unproven address or a non-member.
    pub foreign_packets: u64,
    /// Plain frames refused on a stream the policy encrypts.
    pub plain_refused: u64,
    /// Datagrams refused as malformed.
    pub malformed: u64,
    /// Frames dropped because the application did not take them fast enough.
    pub dropped_slow_receiver: u64,
    /// Packets the socket refused to send.
    pub send_errors: u64,
    /// Frames held because they came before their epoch's keys (then opened or dropped).
    pub early_frames: u64,
    /// Address lists refused because the member had sent one in that epoch already.
    pub addresses_refused: u64,
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
    plain_refused: AtomicU64,
    malformed: AtomicU64,
    dropped_slow_receiver: AtomicU64,
    send_errors: AtomicU64,
    early_frames: AtomicU64,
    addresses_refused: AtomicU64,
    epoch: AtomicU32,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Link {
    member: Arc<str>,
    path: Option<MediaPath>,
}

#[derive(Default)]
struct Links {
    peers: BTreeMap<u16, Link>,
    relay: Option<RelayGrant>,
}

struct Sender {
    context: SframeContext,
    epoch: Option<u32>,
    policy: Policy,
    sequence: [u32; 5],
    /// The frame being sent (grows to the largest frame, then reused).
    frame: Vec<u8>,
    scratch: Vec<u8>,
    /// The frame's packets, back to back, and their lengths.
    out: Vec<u8>,
    lengths: Vec<usize>,
    /// One relayed datagram.
    relayed: Vec<u8>,
    destinations: Vec<(u16, MediaPath)>,
}

struct Shared {
    socket: UdpSocket,
    me: u16,
    config: ConferenceMediaConfig,
    counters: Counters,
    probe_nonce: u64,
    sender: Mutex<Sender>,
    links: StdMutex<Links>,
    closed: AtomicBool,
}

/// A frame opened on request ([`ConferenceMedia::open_frame`]).
type OpenedFrame = Result<(u16, u32, u8, Vec<u8>)>;

enum Command {
    Epoch(EpochKeys),
    Depart(u16),
    DepartAll,
    Open(Vec<u8>, tokio::sync::oneshot::Sender<OpenedFrame>),
    Candidates { member: u16, sealed: Vec<u8> },
    Relay,
}

struct EpochKeys {
    epoch: u32,
    secret: EpochSecret,
    policy: Policy,
    roster: Vec<(u16, Arc<str>)>,
    /// Receiving KIDs installed from this epoch.
    installed: Vec<u64>,
    /// When the next epoch replaced it.
    retired_at: Option<Instant>,
}

impl EpochKeys {
    fn member(&self, index: u16) -> Option<&Arc<str>> {
        self.roster
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, m)| m)
    }
}

impl Shared {
    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Protects `plain` on stream number `stream` (or copies it for a plain stream) into the
    /// sender's frame buffer; returns the frame length and the packet stream byte.
    fn protect(s: &mut Sender, me: u16, stream: u8, plain: &[u8]) -> Result<(usize, u8)> {
        let epoch = s.epoch.ok_or_else(|| Error::Connection {
            target: "conference media".into(),
            message: "no group key yet: the first epoch has not arrived".into(),
        })?;
        let needed = plain.len() + MAX_HEADER_LEN + TAG_LEN;
        if s.frame.len() < needed {
            s.frame.resize(needed, 0);
        }
        s.frame[..plain.len()].copy_from_slice(plain);
        match suite_of(&s.policy, stream) {
            None => Ok((plain.len(), stream | PLAIN_FLAG)),
            Some(_) => {
                let n = s
                    .context
                    .encrypt_in_place(
                        conference_kid(epoch, me, stream),
                        &[],
                        &mut s.frame,
                        plain.len(),
                    )
                    .map_err(|e| Error::Crypto(e.to_string()))?;
                Ok((n, stream))
            }
        }
    }

    /// Sends `plain` on stream number `stream` to every member with a path (or only to `only`).
    async fn send_frame(
        &self,
        stream: u8,
        plain: &[u8],
        only: Option<SocketAddr>,
        counted: bool,
    ) -> Result<()> {
        if plain.len() > self.config.max_frame {
            return Err(Error::InvalidArgument(format!(
                "frame of {} bytes exceeds the largest frame, {} bytes",
                plain.len(),
                self.config.max_frame
            )));
        }
        let mut guard = self.sender.lock().await;
        let s = &mut *guard;
        let (n, stream_byte) = Self::protect(s, self.me, stream, plain)?;
        let sequence = s.sequence[usize::from(stream)];
        s.sequence[usize::from(stream)] = sequence.wrapping_add(1);
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
            stream_byte,
            sequence,
            &frame[..n],
            self.config.max_packet - GROUP_RELAY_OVERHEAD,
            scratch,
            |packet| {
                out.extend_from_slice(packet);
                lengths.push(packet.len());
            },
        )
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        s.destinations.clear();
        let relay = {
            let links = self.links();
            match only {
                Some(addr) => s.destinations.push((0, MediaPath::Direct(addr))),
                None => s.destinations.extend(
                    links
                        .peers
                        .iter()
                        .filter_map(|(i, l)| l.path.map(|p| (*i, p))),
                ),
            }
            links.relay
        };
        for &(to, path) in &s.destinations {
            let mut at = 0;
            for &len in &s.lengths {
                let packet = &s.out[at..at + len];
                at += len;
                match (path, relay) {
                    (MediaPath::Direct(addr), _) => self.transmit(packet, addr).await,
                    (MediaPath::Relay(addr), Some(grant)) => {
                        s.relayed.clear();
                        s.relayed.resize(GROUP_RELAY_OVERHEAD, 0);
                        relay::write_group_relay_prefix(&grant.token, to, &mut s.relayed);
                        s.relayed.extend_from_slice(packet);
                        self.transmit(&s.relayed, addr).await;
                    }
                    (MediaPath::Relay(_), None) => bump(&self.counters.send_errors),
                }
            }
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
                tracing::debug!(%dest, error = %e, "conference packet not sent");
            }
        }
    }

    async fn send_control(&self, control: Control, dest: SocketAddr) {
        if let Err(e) = self
            .send_frame(TRANSPORT_STREAM, &control.encode(), Some(dest), false)
            .await
        {
            tracing::debug!(error = %e, "control frame not sent");
        }
    }
}

/// The media of one conference. Dropping it (or [`ConferenceMedia::close`]) stops it.
pub struct ConferenceMedia {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    frames: Mutex<mpsc::Receiver<ConferenceFrame>>,
    task: StdMutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for ConferenceMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConferenceMedia")
            .field("me", &self.shared.me)
            .finish_non_exhaustive()
    }
}

impl ConferenceMedia {
    /// Binds a UDP socket on `bind` (port 0) for member `me`; no keys until the first epoch.
    pub async fn new(me: u16, bind: IpAddr, config: ConferenceMediaConfig) -> Result<Self> {
        if config.max_packet < PACKET_HEADER_LEN + GROUP_RELAY_OVERHEAD + 16
            || config.max_packet > 65_000
        {
            return Err(Error::InvalidArgument(format!(
                "max_packet {} is outside {}..=65000",
                config.max_packet,
                PACKET_HEADER_LEN + GROUP_RELAY_OVERHEAD + 16
            )));
        }
        let socket = UdpSocket::bind(SocketAddr::new(bind, 0))
            .await
            .map_err(|e| Error::io(format!("binding a UDP socket on {bind}"), e))?;
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        let mut nonce = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut nonce);
        let (frames_tx, frames_rx) = mpsc::channel(config.receive_queue.max(1));
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            socket,
            me,
            counters: Counters::default(),
            probe_nonce: u64::from_be_bytes(nonce),
            sender: Mutex::new(Sender {
                context: SframeContext::new(),
                epoch: None,
                policy: Policy::default(),
                sequence: [0; 5],
                frame: Vec::new(),
                scratch: vec![0u8; config.max_packet],
                out: Vec::new(),
                lengths: Vec::new(),
                relayed: Vec::with_capacity(config.max_packet),
                destinations: Vec::new(),
            }),
            links: StdMutex::new(Links::default()),
            closed: AtomicBool::new(false),
            config,
        });
        let receiver = Receiver {
            shared: shared.clone(),
            commands: commands_rx,
            context: SframeContext::new(),
            epochs: Vec::new(),
            peers: HashMap::new(),
            reassemblers: HashMap::new(),
            next_sequence: HashMap::new(),
            early: VecDeque::new(),
            early_candidates: Vec::new(),
            frames: frames_tx,
            bound: false,
            last_bind: None,
            bind_counter: 0,
        };
        let task = tokio::spawn(receiver.run());
        Ok(ConferenceMedia {
            shared,
            commands: commands_tx,
            frames: Mutex::new(frames_rx),
            task: StdMutex::new(Some(task)),
        })
    }

    /// Our member index.
    pub fn me(&self) -> u16 {
        self.shared.me
    }

    /// The local address of the media socket.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.shared
            .socket
            .local_addr()
            .map_err(|e| Error::io("media socket address", e))
    }

    /// Starts `epoch`: our sending keys on every encrypted stream (the previous epoch's are
    /// forgotten), the roster of the epoch, and the receiving side's keys (derived as frames
    /// come; the previous epoch's kept for the grace period). `roster` includes us.
    pub async fn install_epoch(
        &self,
        epoch: u32,
        secret: &EpochSecret,
        policy: Policy,
        roster: Vec<(u16, Arc<str>)>,
    ) -> Result<()> {
        let me = self.shared.me;
        {
            let mut s = self.shared.sender.lock().await;
            if s.epoch.is_some_and(|e| e >= epoch) {
                return Err(Error::InvalidArgument(format!(
                    "epoch {epoch} is not after the current one"
                )));
            }
            for stream in 0..=TRANSPORT_STREAM {
                if let Some(suite) = suite_of(&policy, stream) {
                    s.context
                        .add_send_key(
                            suite,
                            conference_kid(epoch, me, stream),
                            &secret.media_base_key(epoch, me, stream),
                        )
                        .map_err(|e| Error::Crypto(e.to_string()))?;
                }
            }
            if let Some(old) = s.epoch {
                for stream in 0..=TRANSPORT_STREAM {
                    s.context.remove_send_key(conference_kid(old, me, stream));
                }
            }
            s.epoch = Some(epoch);
            s.policy = policy;
        }
        {
            let mut links = self.shared.links();
            links
                .peers
                .retain(|i, _| roster.iter().any(|(r, _)| r == i));
            for (index, member) in &roster {
                if *index != me {
                    links.peers.entry(*index).or_insert_with(|| Link {
                        member: member.clone(),
                        path: None,
                    });
                }
            }
        }
        self.shared.counters.epoch.store(epoch, Ordering::Relaxed);
        let _ = self.commands.send(Command::Epoch(EpochKeys {
            epoch,
            secret: secret.clone(),
            policy,
            roster,
            installed: Vec::new(),
            retired_at: None,
        }));
        Ok(())
    }

    /// Drops member `index` from the mesh now (it left): nothing more is sent to it, nothing it
    /// sends is taken.
    pub fn depart(&self, index: u16) {
        self.shared.links().peers.remove(&index);
        let _ = self.commands.send(Command::Depart(index));
    }

    /// Leaves the mesh altogether (we are no longer a member): nothing is sent or taken; the
    /// keys held can still open captured frames ([`ConferenceMedia::open_frame`]).
    pub fn depart_all(&self) {
        self.shared.links().peers.clear();
        let _ = self.commands.send(Command::DepartAll);
    }

    /// Opens a protected frame (captured, or from an application's own transport) with the keys
    /// this member holds: returns (sender, epoch, stream number, plaintext). Refused when no key
    /// held opens it — a frame of an epoch this member never had, or whose keys were retired.
    pub async fn open_frame(&self, frame: &[u8]) -> OpenedFrame {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::Open(frame.to_vec(), tx))
            .map_err(|_| Error::InvalidArgument("the conference media is closed".into()))?;
        rx.await
            .map_err(|_| Error::InvalidArgument("the conference media is closed".into()))?
    }

    /// The relay the server offers for this conference.
    pub fn set_relay(&self, grant: RelayGrant) {
        self.shared.links().relay = Some(grant);
        let _ = self.commands.send(Command::Relay);
    }

    /// Our addresses (none when direct paths are off), sealed with our transport key of the
    /// current epoch (hex), for the other members.
    pub async fn seal_candidates(&self) -> Result<String> {
        let list = if self.shared.config.direct {
            vec![self.local_addr()?]
        } else {
            Vec::new()
        };
        self.seal_addresses(list).await
    }

    /// `list`, sealed as our address list with our transport key of the current epoch (hex).
    pub async fn seal_addresses(&self, list: Vec<SocketAddr>) -> Result<String> {
        if list.len() > crate::media::control::MAX_CANDIDATES {
            return Err(Error::InvalidArgument(format!(
                "at most {} addresses in one list",
                crate::media::control::MAX_CANDIDATES
            )));
        }
        let plain = Control::Candidates(list).encode();
        let mut s = self.shared.sender.lock().await;
        let (n, _) = Shared::protect(&mut s, self.shared.me, TRANSPORT_STREAM, &plain)?;
        Ok(hex(&s.frame[..n]))
    }

    /// Another member's sealed addresses: opened with its transport key, then probed.
    pub fn add_candidates(&self, member: u16, sealed: Vec<u8>) {
        let _ = self.commands.send(Command::Candidates { member, sealed });
    }

    /// Sends one frame on `stream` to every member (protected as the policy says).
    pub async fn send(&self, stream: Stream, frame: &[u8]) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Connection {
                target: "conference media".into(),
                message: "the conference media is closed".into(),
            });
        }
        self.shared
            .send_frame(stream as u8, frame, None, true)
            .await
    }

    /// Protects one frame on `stream` with our current key, without sending it: for an
    /// application with its own transport (and for checking who can open what).
    pub async fn protect(&self, stream: Stream, frame: &[u8]) -> Result<Vec<u8>> {
        let mut s = self.shared.sender.lock().await;
        let (n, _) = Shared::protect(&mut s, self.shared.me, stream as u8, frame)?;
        Ok(s.frame[..n].to_vec())
    }

    /// The next frame from another member; `None` once closed.
    pub async fn recv(&self) -> Option<ConferenceFrame> {
        self.frames.lock().await.recv().await
    }

    /// A frame if one is waiting.
    pub fn try_recv(&self) -> Option<ConferenceFrame> {
        self.frames.try_lock().ok()?.try_recv().ok()
    }

    /// Counters and paths.
    pub fn stats(&self) -> ConferenceMediaStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let peers = self
            .shared
            .links()
            .peers
            .iter()
            .map(|(i, l)| PeerPath {
                member: l.member.to_string(),
                index: *i,
                path: l.path,
            })
            .collect();
        ConferenceMediaStats {
            epoch: c.epoch.load(Ordering::Relaxed),
            peers,
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
            plain_refused: get(&c.plain_refused),
            malformed: get(&c.malformed),
            dropped_slow_receiver: get(&c.dropped_slow_receiver),
            send_errors: get(&c.send_errors),
            early_frames: get(&c.early_frames),
            addresses_refused: get(&c.addresses_refused),
        }
    }

    /// Stops the media.
    pub fn close(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        self.shared.closed.store(true, Ordering::SeqCst);
    }

    /// Whether it was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }
}

impl Drop for ConferenceMedia {
    fn drop(&mut self) {
        self.close();
    }
}

struct Probe {
    candidates: Vec<SocketAddr>,
    /// Addresses that proved they hold the member's keys.
    trusted: Vec<SocketAddr>,
    /// When its addresses arrived (or it appeared): probing lasts `direct_timeout` from then.
    since: Instant,
    /// The epoch its address list was sealed in: one list per member per epoch is taken.
    list_epoch: Option<u32>,
    /// Probes still to be sent to each address of the list.
    probes_left: u32,
}

impl Probe {
    fn new(now: Instant) -> Self {
        Probe {
            candidates: Vec::new(),
            trusted: Vec::new(),
            since: now,
            list_epoch: None,
            probes_left: 0,
        }
    }
}

struct Early {
    at: Instant,
    header: PacketHeader,
    frame: Vec<u8>,
    from: SocketAddr,
    trusted: bool,
}

struct Receiver {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    context: SframeContext,
    epochs: Vec<EpochKeys>,
    peers: HashMap<u16, Probe>,
    reassemblers: HashMap<(u16, u8), Reassembler>,
    next_sequence: HashMap<(u16, u8), u32>,
    early: VecDeque<Early>,
    early_candidates: Vec<(Instant, u16, Vec<u8>)>,
    frames: mpsc::Sender<ConferenceFrame>,
    bound: bool,
    last_bind: Option<Instant>,
    bind_counter: u64,
}

enum Opened {
    Done,
    /// The frame is of an epoch we do not hold yet.
    Early,
}

impl Receiver {
    async fn run(mut self) {
        let mut buf = vec![0u8; RECEIVE_BUFFER];
        let mut probe = tokio::time::interval(self.shared.config.probe_interval);
        let mut housekeeping = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                received = self.shared.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.datagram(&mut buf[..n], from).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "conference media receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                command = self.commands.recv() => match command {
                    Some(c) => self.command(c).await,
                    None => return,
                },
                _ = probe.tick() => self.probe().await,
                _ = housekeeping.tick() => self.housekeeping().await,
            }
        }
    }

    fn relay(&self) -> Option<RelayGrant> {
        self.shared.links().relay
    }

    fn current_epoch(&self) -> Option<u32> {
        self.epochs.last().map(|e| e.epoch)
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Epoch(keys) => {
                let now = Instant::now();
                if let Some(current) = self.epochs.last_mut() {
                    current.retired_at = Some(now);
                }
                for (index, _) in &keys.roster {
                    if *index != self.shared.me {
                        self.peers.entry(*index).or_insert_with(|| Probe::new(now));
                    }
                }
                let roster: Vec<u16> = keys.roster.iter().map(|(i, _)| *i).collect();
                self.peers.retain(|i, _| roster.contains(i));
                self.epochs.push(keys);
                while self.epochs.len() > KEPT_EPOCHS {
                    let old = self.epochs.remove(0);
                    for kid in old.installed {
                        self.context.remove_receive_key(kid);
                    }
                }
                // Frames and addresses that came before their keys.
                for (_, member, sealed) in std::mem::take(&mut self.early_candidates) {
                    self.candidates(member, sealed);
                }
                for early in std::mem::take(&mut self.early) {
                    let Early {
                        header,
                        mut frame,
                        from,
                        trusted,
                        ..
                    } = early;
                    if let Opened::Early = self.open(header, &mut frame, from, trusted).await {
                        bump(&self.shared.counters.unknown_key);
                    }
                }
            }
            Command::Depart(index) => {
                self.peers.remove(&index);
                self.reassemblers.retain(|(s, _), _| *s != index);
                self.next_sequence.retain(|(s, _), _| *s != index);
            }
            Command::DepartAll => {
                self.peers.clear();
                self.reassemblers.clear();
                self.next_sequence.clear();
            }
            Command::Open(mut frame, reply) => {
                let result = self
                    .decrypt(&mut frame)
                    .map_err(|e| Error::Crypto(format!("the frame does not open: {e}")))
                    .and_then(|(kid, range)| {
                        let (epoch, sender, stream) =
                            kid_parts(kid).ok_or_else(|| Error::Crypto("malformed KID".into()))?;
                        Ok((sender, epoch, stream, frame[range].to_vec()))
                    });
                let _ = reply.send(result);
            }
            Command::Candidates { member, sealed } => self.candidates(member, sealed),
            Command::Relay => {
                self.bound = false;
                self.last_bind = None;
            }
        }
    }

    /// Opens a member's sealed addresses (held until its epoch's keys arrive, if need be).
    fn candidates(&mut self, member: u16, mut sealed: Vec<u8>) {
        let result = self.decrypt(&mut sealed);
        let (kid, range) = match result {
            Ok(v) => v,
            Err(SframeError::UnknownKid(kid))
                if kid_parts(kid).is_some_and(|(e, s, _)| {
                    s == member && self.current_epoch().is_none_or(|c| e > c)
                }) =>
            {
                // One held list per member: a newer one replaces it.
                self.early_candidates.retain(|(_, m, _)| *m != member);
                if self.early_candidates.len() < 64 {
                    self.early_candidates.push((Instant::now(), member, sealed));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(member, error = %e, "sealed addresses refused");
                return bump(&self.shared.counters.malformed);
            }
        };
        let Some((epoch, _, _)) =
            kid_parts(kid).filter(|(_, s, n)| *s == member && *n == TRANSPORT_STREAM)
        else {
            return bump(&self.shared.counters.malformed);
        };
        let Some(Control::Candidates(list)) = Control::decode(&sealed[range]) else {
            return bump(&self.shared.counters.malformed);
        };
        let direct = self.shared.config.direct;
        let Some(p) = self.peers.get_mut(&member) else {
            return;
        };
        // One list per member per epoch: a member cannot keep pointing our probes at addresses
        // of its choosing by sending lists again.
        if p.list_epoch.is_some_and(|e| epoch <= e) {
            tracing::debug!(member, epoch, "a second address list in one epoch refused");
            return bump(&self.shared.counters.addresses_refused);
        }
        p.list_epoch = Some(epoch);
        p.candidates = if direct { list } else { Vec::new() };
        p.since = Instant::now();
        p.probes_left = PROBES_PER_ADDRESS;
    }

    fn path_of(&self, member: u16) -> Option<MediaPath> {
        self.shared.links().peers.get(&member).and_then(|l| l.path)
    }

    fn set_path(&self, member: u16, path: MediaPath) {
        if let Some(link) = self.shared.links().peers.get_mut(&member) {
            if link.path != Some(path) {
                tracing::debug!(member, %path, "conference media path");
                link.path = Some(path);
            }
        }
    }

    async fn probe(&mut self) {
        if self.current_epoch().is_none() {
            return;
        }
        let timeout = self.shared.config.direct_timeout;
        let mut targets = Vec::new();
        let mut paths = HashMap::new();
        for index in self.peers.keys() {
            paths.insert(*index, self.path_of(*index));
        }
        for (index, p) in self.peers.iter_mut() {
            let direct = matches!(paths.get(index), Some(Some(MediaPath::Direct(_))));
            if !direct && p.since.elapsed() < timeout && p.probes_left > 0 {
                p.probes_left -= 1;
                targets.extend(p.candidates.iter().copied());
            }
        }
        for dest in targets {
            self.shared
                .send_control(
                    Control::Probe {
                        nonce: self.shared.probe_nonce,
                    },
                    dest,
                )
                .await;
        }
    }

    async fn housekeeping(&mut self) {
        let grace = self.shared.config.grace;
        let now = Instant::now();
        // Forget the keys of epochs whose grace period is over.
        let mut expired = Vec::new();
        self.epochs.retain(|e| {
            let keep = e.retired_at.is_none_or(|at| now.duration_since(at) < grace);
            if !keep {
                expired.extend(e.installed.iter().copied());
            }
            keep
        });
        for kid in expired {
            self.context.remove_receive_key(kid);
        }
        let before = self.early.len();
        self.early.retain(|e| now.duration_since(e.at) < EARLY_FOR);
        self.shared
            .counters
            .unknown_key
            .fetch_add((before - self.early.len()) as u64, Ordering::Relaxed);
        self.early_candidates
            .retain(|(at, _, _)| now.duration_since(*at) < EARLY_FOR);
        let Some(grant) = self.relay() else {
            return;
        };
        let due = match self.last_bind {
            None => true,
            Some(at) if !self.bound => at.elapsed() >= Duration::from_millis(250),
            Some(at) => at.elapsed() >= RELAY_KEEPALIVE,
        };
        if due {
            self.bind_counter += 1;
            let bind = grant.secret.bind(&grant.token, self.bind_counter);
            self.shared.transmit(&bind, grant.address).await;
            self.last_bind = Some(now);
        }
        if self.bound {
            // Members whose direct path did not answer in time go through the relay.
            let timeout = self.shared.config.direct_timeout;
            let waiting: Vec<u16> = self
                .peers
                .iter()
                .filter(|(i, p)| {
                    self.path_of(**i).is_none()
                        && (p.since.elapsed() >= timeout || !self.shared.config.direct)
                })
                .map(|(i, _)| *i)
                .collect();
            for index in waiting {
                self.set_path(index, MediaPath::Relay(grant.address));
            }
        }
    }

    fn is_relay(&self, from: SocketAddr) -> bool {
        self.relay().is_some_and(|g| g.address == from)
    }

    async fn datagram(&mut self, datagram: &mut [u8], from: SocketAddr) {
        let shared = self.shared.clone();
        let c = &shared.counters;
        match Datagram::parse(datagram) {
            Some(Datagram::Bound(token)) if self.is_relay(from) => {
                if self.relay().is_some_and(|g| g.token == token) {
                    self.bound = true;
                } else {
                    bump(&c.foreign_packets);
                }
            }
            Some(Datagram::Packet(_)) => {
                let Ok((header, _)) = PacketHeader::parse(datagram) else {
                    return bump(&c.malformed);
                };
                let stream = header.stream & !PLAIN_FLAG;
                if stream > TRANSPORT_STREAM {
                    return bump(&c.malformed);
                }
                let Some(peer) = self.peers.get(&header.sender) else {
                    return bump(&c.foreign_packets);
                };
                let trusted = self.is_relay(from) || peer.trusted.contains(&from);
                if !trusted {
                    // An unproven address may only prove itself with a probe: a single-packet,
                    // encrypted transport frame that authenticates with the member's key.
                    let probe_like = header.count == 1
                        && header.stream == TRANSPORT_STREAM
                        && self.shared.config.direct;
                    if !probe_like {
                        return bump(&c.foreign_packets);
                    }
                } else {
                    bump(&c.packets_received);
                }
                if header.count == 1 {
                    let frame = &mut datagram[PACKET_HEADER_LEN..];
                    if let Opened::Early = self.open(header, frame, from, trusted).await {
                        self.park(header, frame.to_vec(), from, trusted);
                    }
                } else {
                    let max_frame = self.shared.config.max_frame;
                    let Some(mut whole) = self
                        .reassemblers
                        .entry((header.sender, header.stream))
                        .or_insert_with(|| Reassembler::new(PENDING_FRAMES, max_frame))
                        .push(header, &datagram[PACKET_HEADER_LEN..])
                    else {
                        return;
                    };
                    if let Opened::Early = self.open(header, &mut whole, from, trusted).await {
                        self.park(header, whole, from, trusted);
                    }
                }
            }
            _ => bump(&c.malformed),
        }
    }

    /// Holds a frame of an epoch whose keys have not arrived yet (the oldest goes when full).
    fn park(&mut self, header: PacketHeader, frame: Vec<u8>, from: SocketAddr, trusted: bool) {
        let c = &self.shared.counters;
        let sender = header.sender;
        let of_sender = self
            .early
            .iter()
            .filter(|e| e.header.sender == sender)
            .count();
        if of_sender >= EARLY_FRAMES_PER_SENDER {
            if let Some(oldest) = self.early.iter().position(|e| e.header.sender == sender) {
                self.early.remove(oldest);
                bump(&c.unknown_key);
            }
        } else if self.early.len() >= EARLY_FRAMES {
            self.early.pop_front();
            bump(&c.unknown_key);
        }
        bump(&c.early_frames);
        self.early.push_back(Early {
            at: Instant::now(),
            header,
            frame,
            from,
            trusted,
        });
    }

    /// Decrypts with the keys held, deriving a sender's key of a held epoch on its first frame.
    fn decrypt(
        &mut self,
        frame: &mut [u8],
    ) -> std::result::Result<(u64, std::ops::Range<usize>), SframeError> {
        match self.context.decrypt_in_place(&[], frame) {
            Err(SframeError::UnknownKid(kid)) => {
                let (epoch, sender, stream) = kid_parts(kid).ok_or(SframeError::UnknownKid(kid))?;
                let keys = self
                    .epochs
                    .iter_mut()
                    .find(|e| e.epoch == epoch)
                    .ok_or(SframeError::UnknownKid(kid))?;
                if keys.member(sender).is_none() || sender == self.shared.me {
                    return Err(SframeError::UnknownKid(kid));
                }
                let suite = suite_of(&keys.policy, stream).ok_or(SframeError::UnknownKid(kid))?;
                self.context.add_receive_key(
                    suite,
                    kid,
                    &keys.secret.media_base_key(epoch, sender, stream),
                )?;
                keys.installed.push(kid);
                if let Some(at) = keys.retired_at {
                    let left = self.shared.config.grace.saturating_sub(at.elapsed());
                    self.context.retire_receive_key(kid, left);
                }
                self.context.decrypt_in_place(&[], frame)
            }
            other => other,
        }
    }

    /// Authenticates, decrypts and dispatches one whole frame.
    async fn open(
        &mut self,
        header: PacketHeader,
        frame: &mut [u8],
        from: SocketAddr,
        trusted: bool,
    ) -> Opened {
        let shared = self.shared.clone();
        let c = &shared.counters;
        let stream = header.stream & !PLAIN_FLAG;
        if header.stream & PLAIN_FLAG != 0 {
            let Some(s) = Stream::from_u8(stream).filter(|_| trusted) else {
                bump(&c.foreign_packets);
                return Opened::Done;
            };
            // Only where a live epoch's policy leaves the stream plain.
            let Some(epoch) = self
                .epochs
                .iter()
                .rev()
                .find(|e| e.policy.streams.get(s) == Protection::Plain)
                .map(|e| e.epoch)
            else {
                bump(&c.plain_refused);
                return Opened::Done;
            };
            self.account_sequence(header.sender, header.stream, header.frame);
            self.deliver(s, header.sender, epoch, true, frame.to_vec());
            return Opened::Done;
        }
        let (kid, range) = match self.decrypt(frame) {
            Ok(v) => v,
            Err(SframeError::UnknownKid(kid))
                if trusted
                    && kid_parts(kid).is_some_and(|(e, s, _)| {
                        s == header.sender
                            && self
                                .current_epoch()
                                .is_none_or(|cur| e > cur && e - cur <= EARLY_EPOCHS_AHEAD)
                    }) =>
            {
                // Held only from an authenticated source (the relay, or an address that proved
                // the member's keys), and only for the next epochs.
                return Opened::Early;
            }
            Err(_) if !trusted => {
                bump(&c.foreign_packets);
                return Opened::Done;
            }
            Err(SframeError::Replay { .. } | SframeError::TooOld { .. }) => {
                bump(&c.replays_refused);
                return Opened::Done;
            }
            Err(SframeError::UnknownKid(_)) => {
                bump(&c.unknown_key);
                return Opened::Done;
            }
            Err(SframeError::AuthenticationFailed) => {
                bump(&c.auth_failures);
                return Opened::Done;
            }
            Err(_) => {
                bump(&c.malformed);
                return Opened::Done;
            }
        };
        let Some((epoch, sender, n)) = kid_parts(kid) else {
            bump(&c.malformed);
            return Opened::Done;
        };
        if sender != header.sender || n != stream {
            bump(&c.malformed);
            return Opened::Done;
        }
        if !trusted {
            bump(&c.packets_received);
        }
        self.account_sequence(header.sender, header.stream, header.frame);
        if n == TRANSPORT_STREAM {
            self.control(sender, Control::decode(&frame[range]), from)
                .await;
        } else if let Some(s) = Stream::from_u8(n).filter(|_| trusted) {
            self.deliver(s, sender, epoch, false, frame[range].to_vec());
        } else {
            bump(&c.foreign_packets);
        }
        Opened::Done
    }

    fn deliver(&mut self, stream: Stream, sender: u16, epoch: u32, plain: bool, data: Vec<u8>) {
        let c = &self.shared.counters;
        let member = self
            .shared
            .links()
            .peers
            .get(&sender)
            .map(|l| l.member.clone())
            .or_else(|| {
                self.epochs
                    .iter()
                    .rev()
                    .find_map(|e| e.member(sender).cloned())
            });
        let Some(member) = member else {
            return bump(&c.foreign_packets);
        };
        let len = data.len() as u64;
        match self.frames.try_reserve() {
            Ok(permit) => {
                bump(&c.frames_received);
                c.bytes_received.fetch_add(len, Ordering::Relaxed);
                permit.send(ConferenceFrame {
                    stream,
                    sender,
                    member,
                    epoch,
                    plain,
                    data,
                });
            }
            Err(_) => bump(&c.dropped_slow_receiver),
        }
    }

    fn account_sequence(&mut self, sender: u16, stream: u8, sequence: u32) {
        let c = &self.shared.counters;
        match self.next_sequence.get_mut(&(sender, stream)) {
            None => {
                self.next_sequence
                    .insert((sender, stream), sequence.wrapping_add(1));
            }
            Some(next) => {
                let ahead = sequence.wrapping_sub(*next);
                if ahead < u32::MAX / 2 {
                    c.frames_lost.fetch_add(u64::from(ahead), Ordering::Relaxed);
                    *next = sequence.wrapping_add(1);
                } else {
                    let _ = c
                        .frames_lost
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
                }
            }
        }
    }

    async fn control(&mut self, sender: u16, control: Option<Control>, from: SocketAddr) {
        match control {
            Some(Control::Probe { .. }) if !self.shared.config.direct => {}
            Some(Control::Probe { nonce }) => {
                if let Some(p) = self.peers.get_mut(&sender) {
                    if !p.trusted.contains(&from) {
                        p.trusted.push(from);
                    }
                }
                self.shared
                    .send_control(Control::ProbeAck { nonce }, from)
                    .await;
            }
            Some(Control::ProbeAck { nonce }) if nonce == self.shared.probe_nonce => {
                if let Some(p) = self.peers.get_mut(&sender) {
                    if !p.trusted.contains(&from) {
                        p.trusted.push(from);
                    }
                }
                self.set_path(sender, MediaPath::Direct(from));
            }
            _ => bump(&self.shared.counters.malformed),
        }
    }
}
