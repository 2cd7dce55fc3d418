//! The media relay: one UDP socket that forwards the opaque media packets of a call between its
//! two members when they cannot reach each other directly. Each member gets a random token and
//! bind secret per call (sent over its authenticated signalling connection). A fresh bind
//! authenticated with the secret records where the member is (answered "bound"); a datagram
//! `2 ‖ token ‖ packet` from that address is forwarded to the other member's bound address.
//! Anything else — unknown or expired tokens, stale or forged binds, packets from another address
//! than the bound one, junk, a member over its rate — is dropped and counted. The relay never
//! holds a media key: it sees ciphertext only (see `vcsdk::media::relay`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::net::UdpSocket;
use vcsdk::media::relay::{self, Datagram, RelaySecret, RelayToken};

/// Socket buffer size asked for.
const SOCKET_BUFFER: usize = 8 << 20;
/// Largest datagram the relay reads.
const MAX_DATAGRAM: usize = 65_536;

/// Where a leg's packets go.
enum Target {
    /// The other member of a two-party call.
    Call(RelayToken),
    /// A conference: the datagram names the member by index.
    Group(String),
}

/// A conference's legs: member index → (member, token).
type Group = HashMap<u16, (String, RelayToken)>;

struct Leg {
    call_id: String,
    peer: Target,
    secret: RelaySecret,
    /// The counter of the last accepted bind.
    bind_counter: u64,
    address: Option<SocketAddr>,
    /// Token bucket of bytes this member may still send, refilled at the configured rate.
    allowance: f64,
    refilled: Instant,
}

/// What the relay did, since it started.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Packets forwarded.
    pub forwarded: AtomicU64,
    /// Bytes forwarded.
    pub forwarded_bytes: AtomicU64,
    /// Binds answered.
    pub binds: AtomicU64,
    /// Datagrams with a token the relay does not know (never issued, or the call ended).
    pub unknown_token: AtomicU64,
    /// Datagrams that are not relay datagrams.
    pub malformed: AtomicU64,
    /// Binds refused: wrong MAC, or a counter not above the last one (a replay).
    pub bad_binds: AtomicU64,
    /// Packets refused because they came from another address than the member's bound one.
    pub unbound_source: AtomicU64,
    /// Packets dropped because the other member's address is not known yet.
    pub no_peer: AtomicU64,
    /// Packets dropped because the member exceeded its rate.
    pub over_rate: AtomicU64,
}

/// The relay of a server.
pub struct Relay {
    socket: UdpSocket,
    /// The address told to clients.
    advertised: SocketAddr,
    legs: Mutex<HashMap<RelayToken, Leg>>,
    calls: Mutex<HashMap<String, [RelayToken; 2]>>,
    /// Conferences: member index → (member, token).
    groups: Mutex<HashMap<String, Group>>,
    /// Bytes per second one member may send through the relay.
    rate: f64,
    /// Counters.
    pub counters: RelayCounters,
}

impl Relay {
    /// A relay on `socket`, telling clients to reach it at `advertised`, forwarding at most
    /// `max_kbit_per_sec` per member.
    pub fn new(socket: UdpSocket, advertised: SocketAddr, max_kbit_per_sec: u64) -> Relay {
        // Room for bursts of video packets from many calls; the system may grant less.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        Relay {
            socket,
            advertised,
            legs: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            rate: max_kbit_per_sec as f64 * 1000.0 / 8.0,
            counters: RelayCounters::default(),
        }
    }

    /// The address clients send to.
    pub fn advertised(&self) -> SocketAddr {
        self.advertised
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn legs(&self) -> std::sync::MutexGuard<'_, HashMap<RelayToken, Leg>> {
        self.legs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the relay for `call_id`: a fresh token and bind secret per member (caller, callee).
    pub fn open(&self, call_id: &str) -> [(RelayToken, RelaySecret); 2] {
        let grants = [
            (RelayToken::random(), RelaySecret::random()),
            (RelayToken::random(), RelaySecret::random()),
        ];
        let tokens = [grants[0].0, grants[1].0];
        let now = Instant::now();
        let mut legs = self.legs();
        for (i, (token, secret)) in grants.iter().enumerate() {
            legs.insert(
                *token,
                Leg {
                    call_id: call_id.to_owned(),
                    peer: Target::Call(tokens[1 - i]),
                    secret: *secret,
                    bind_counter: 0,
                    address: None,
                    allowance: self.rate,
                    refilled: now,
                },
            );
        }
        drop(legs);
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call_id.to_owned(), tokens);
        grants
    }

    /// Closes the relay for `call_id`: its tokens stop working at once.
    pub fn close(&self, call_id: &str) {
        let tokens = self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(call_id);
        if let Some(tokens) = tokens {
            let mut legs = self.legs();
            for t in tokens {
                if let Some(leg) = legs.remove(&t) {
                    tracing::debug!(call_id = %leg.call_id, "relay leg closed");
                }
            }
        }
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a leg for `member` (index `index`) of conference `conf`: a fresh token and secret.
    pub fn open_member(&self, conf: &str, member: &str, index: u16) -> (RelayToken, RelaySecret) {
        let (token, secret) = (RelayToken::random(), RelaySecret::random());
        self.legs().insert(
            token,
            Leg {
                call_id: conf.to_owned(),
                peer: Target::Group(conf.to_owned()),
                secret,
                bind_counter: 0,
                address: None,
                allowance: self.rate,
                refilled: Instant::now(),
            },
        );
        let old = self
            .groups()
            .entry(conf.to_owned())
            .or_default()
            .insert(index, (member.to_owned(), token));
        if let Some((_, old)) = old {
            self.legs().remove(&old);
        }
        (token, secret)
    }

    /// Closes `member`'s leg of `conf`: its token stops working at once.
    pub fn close_member(&self, conf: &str, member: &str) {
        let token = {
            let mut groups = self.groups();
            let Some(group) = groups.get_mut(conf) else {
                return;
            };
            let index = group
                .iter()
                .find(|(_, (m, _))| m == member)
                .map(|(i, _)| *i);
            index.and_then(|i| group.remove(&i)).map(|(_, t)| t)
        };
        if let Some(t) = token {
            self.legs().remove(&t);
        }
    }

    /// Closes every leg of `conf`.
    pub fn close_group(&self, conf: &str) {
        let group = self.groups().remove(conf);
        let mut legs = self.legs();
        for (_, (_, t)) in group.into_iter().flatten() {
            legs.remove(&t);
        }
    }

    /// Calls with an open relay now.
    pub fn open_calls(&self) -> usize {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Forwards datagrams until the task is dropped.
    pub async fn run(&self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(v) => v,
                Err(e) => {
                    // ICMP errors from a member that went away surface here; keep serving.
                    tracing::debug!(error = %e, "relay receive failed");
                    continue;
                }
            };
            if let Some((datagram, to)) = self.route(&buf[..n], from) {
                if let Err(e) = self.socket.send_to(datagram, to).await {
                    tracing::debug!(%to, error = %e, "relay send failed");
                }
            }
        }
    }

    /// Decides what to send for one received datagram, and where.
    fn route<'a>(&self, datagram: &'a [u8], from: SocketAddr) -> Option<(&'a [u8], SocketAddr)> {
        let c = &self.counters;
        let (token, inner, to_member) = match Datagram::parse(datagram) {
            Some(Datagram::Relay { token, inner }) if !inner.is_empty() => (token, inner, None),
            Some(Datagram::GroupRelay { token, to, inner }) if !inner.is_empty() => {
                (token, inner, Some(to))
            }
            Some(Datagram::Bind {
                token,
                counter,
                mac,
            }) => {
                self.bind(token, counter, &mac, from);
                return None;
            }
            _ => {
                c.malformed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let mut legs = self.legs();
        let Some(leg) = legs.get_mut(&token) else {
            c.unknown_token.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if leg.address != Some(from) {
            c.unbound_source.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(leg.refilled).as_secs_f64();
        leg.allowance = (leg.allowance + elapsed * self.rate).min(self.rate);
        leg.refilled = now;
        if leg.allowance < inner.len() as f64 {
            c.over_rate.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        leg.allowance -= inner.len() as f64;
        let peer = match (&leg.peer, to_member) {
            (Target::Call(peer), None) => Some(*peer),
            (Target::Group(conf), Some(index)) => self
                .groups()
                .get(conf)
                .and_then(|g| g.get(&index))
                .map(|(_, t)| *t)
                .filter(|t| *t != token),
            _ => {
                c.malformed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let to = peer
            .and_then(|peer| legs.get(&peer))
            .and_then(|p| p.address);
        let Some(to) = to else {
            c.no_peer.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if Datagram::parse(inner).is_none_or(|d| !matches!(d, Datagram::Packet(_))) {
            c.malformed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        c.forwarded.fetch_add(1, Ordering::Relaxed);
        c.forwarded_bytes
            .fetch_add(inner.len() as u64, Ordering::Relaxed);
        Some((inner, to))
    }

    /// Takes a bind: a fresh, authenticated one moves the member to `from` and is answered.
    fn bind(&self, token: RelayToken, counter: u64, mac: &[u8; 16], from: SocketAddr) {
        let c = &self.counters;
        let mut legs = self.legs();
        let Some(leg) = legs.get_mut(&token) else {
            c.unknown_token.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if counter <= leg.bind_counter || !leg.secret.verify(&token, counter, mac) {
            c.bad_binds.fetch_add(1, Ordering::Relaxed);
            return;
        }
        leg.bind_counter = counter;
        if leg.address != Some(from) {
            tracing::debug!(call_id = %leg.call_id, %from, "relay member bound");
            leg.address = Some(from);
        }
        c.binds.fetch_add(1, Ordering::Relaxed);
        drop(legs);
        // Binds are rare (start and keepalive): answered straight from here.
        let _ = self.socket.try_send_to(&relay::bound(&token), from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(token: &RelayToken, inner: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; relay::RELAY_OVERHEAD];
        relay::write_relay_prefix(token, &mut d);
        d.extend_from_slice(inner);
        d
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    async fn relay(kbit: u64) -> Relay {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        Relay::new(socket, local, kbit)
    }

    const PACKET: [u8; 11] = [1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 42];

    #[tokio::test]
    async fn forwards_between_the_bound_members_of_a_call_only() {
        let relay = relay(1000).await;
        let [(a, sa), (b, sb)] = relay.open("call");
        let (pa, pb) = (addr(1000), addr(2000));
        // Nobody bound: nothing forwarded.
        assert!(relay.route(&wrap(&a, &PACKET), pa).is_none());
        assert!(relay.route(&sa.bind(&a, 1), pa).is_none(), "a bind");
        assert!(
            relay.route(&wrap(&a, &PACKET), pa).is_none(),
            "b not bound yet"
        );
        assert!(relay.route(&sb.bind(&b, 1), pb).is_none());
        assert_eq!(relay.route(&wrap(&a, &PACKET), pa), Some((&PACKET[..], pb)));
        assert_eq!(relay.route(&wrap(&b, &PACKET), pb), Some((&PACKET[..], pa)));
        // Someone who saw a's traffic: a's packets from elsewhere, a replayed or forged bind, a
        // bind with b's secret for a's token — all refused; a stays where it is.
        let thief = addr(6666);
        assert!(relay.route(&wrap(&a, &PACKET), thief).is_none());
        assert!(
            relay.route(&sa.bind(&a, 1), thief).is_none(),
            "replayed bind"
        );
        assert!(
            relay.route(&sb.bind(&a, 9), thief).is_none(),
            "wrong secret"
        );
        assert_eq!(relay.route(&wrap(&b, &PACKET), pb), Some((&PACKET[..], pa)));
        // A member that really moves re-binds with a higher counter and is followed.
        let moved = addr(3000);
        assert!(relay.route(&sb.bind(&b, 2), moved).is_none());
        assert_eq!(
            relay.route(&wrap(&a, &PACKET), pa),
            Some((&PACKET[..], moved))
        );
        // Unknown tokens, junk, non-packets inside: dropped.
        assert!(relay
            .route(&wrap(&RelayToken::random(), &PACKET), pa)
            .is_none());
        assert!(relay.route(&PACKET, pa).is_none());
        assert!(relay.route(&wrap(&a, &wrap(&b, &PACKET)), pa).is_none());
        assert!(relay.route(&wrap(&a, &[]), pa).is_none());
        assert!(relay.route(&[], pa).is_none());
        // After the call, its tokens are dead.
        relay.close("call");
        assert!(relay.route(&wrap(&a, &PACKET), pa).is_none());
        assert!(relay.route(&sa.bind(&a, 5), pa).is_none());
        let c = &relay.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(get(&c.forwarded), 4);
        assert_eq!(get(&c.binds), 3);
        assert_eq!(get(&c.bad_binds), 2);
        assert_eq!(get(&c.unbound_source), 2);
        assert_eq!(get(&c.unknown_token), 3);
        assert_eq!(get(&c.malformed), 4);
        assert_eq!(get(&c.no_peer), 1);
        assert_eq!(relay.open_calls(), 0);
    }

    fn group_wrap(token: &RelayToken, to: u16, inner: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; relay::GROUP_RELAY_OVERHEAD];
        relay::write_group_relay_prefix(token, to, &mut d);
        d.extend_from_slice(inner);
        d
    }

    #[tokio::test]
    async fn conference_legs_forward_to_the_named_member_only() {
        let relay = relay(1000).await;
        let (a, sa) = relay.open_member("conf", "alice", 0);
        let (b, sb) = relay.open_member("conf", "bob", 1);
        let (c, sc) = relay.open_member("conf", "carol", 2);
        let (x, sx) = relay.open_member("other", "xavier", 0);
        let (pa, pb, pc, px) = (addr(1000), addr(2000), addr(3000), addr(4000));
        for (t, s, p) in [(a, sa, pa), (b, sb, pb), (c, sc, pc), (x, sx, px)] {
            assert!(relay.route(&s.bind(&t, 1), p).is_none());
        }
        assert_eq!(
            relay.route(&group_wrap(&a, 1, &PACKET), pa),
            Some((&PACKET[..], pb))
        );
        assert_eq!(
            relay.route(&group_wrap(&a, 2, &PACKET), pa),
            Some((&PACKET[..], pc))
        );
        // Not to ourselves, not to an index of another conference, not with the call format,
        // not from another address.
        assert!(relay.route(&group_wrap(&a, 0, &PACKET), pa).is_none());
        assert!(relay.route(&group_wrap(&x, 1, &PACKET), px).is_none());
        assert!(relay.route(&wrap(&a, &PACKET), pa).is_none());
        assert!(relay.route(&group_wrap(&a, 1, &PACKET), px).is_none());
        // A member that left: its token is dead, and nothing reaches it.
        relay.close_member("conf", "bob");
        assert!(relay.route(&group_wrap(&b, 0, &PACKET), pb).is_none());
        assert!(relay.route(&group_wrap(&a, 1, &PACKET), pa).is_none());
        assert_eq!(
            relay.route(&group_wrap(&c, 0, &PACKET), pc),
            Some((&PACKET[..], pa))
        );
        relay.close_group("conf");
        assert!(relay.route(&group_wrap(&c, 0, &PACKET), pc).is_none());
        assert!(relay.route(&sx.bind(&x, 2), px).is_none());
    }

    #[tokio::test]
    async fn a_member_over_its_rate_is_cut_off() {
        // 80 kbit/s = 10 000 bytes per second, and a burst of as much.
        let relay = relay(80).await;
        let [(a, sa), (b, sb)] = relay.open("call");
        let (pa, pb) = (addr(1000), addr(2000));
        relay.route(&sa.bind(&a, 1), pa);
        relay.route(&sb.bind(&b, 1), pb);
        let mut packet = vec![0u8; 1000];
        packet[0] = 1;
        let forwarded = (0..100)
            .filter(|_| relay.route(&wrap(&a, &packet), pa).is_some())
            .count();
        assert!((10..=20).contains(&forwarded), "{forwarded}");
        assert!(relay.counters.over_rate.load(Ordering::Relaxed) >= 80);
    }
}
