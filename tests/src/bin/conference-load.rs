//! Conference load: the cost of renewing the group key when a member leaves, for conferences of
//! several sizes, at security levels 2 and 3.
//!
//! (1) In-process, with certificates from a real CA: the distributor's CPU for one rekey on leave
//!     (a fresh secret wrapped to every remaining member, the bundle signed), the bundle's size
//!     (the signed entry and the wraps as sent), and each member's CPU to process it (verify the
//!     entry's certificate, signature and rules, open its wrap, install its sending keys). This is
//!     CPU-bound work on one thread, timed with the monotonic clock; the median of the rounds is
//!     reported, so a round the shared machine preempted does not count. One entry check and one
//!     single-recipient wrap are timed in the same run as the baseline.
//! (2) On loopback against the real `vc-ca` and `vc-server`: N SDK clients in one conference; one
//!     member leaves; the time from its leave until every remaining member sends on the new
//!     epoch, and what the engines themselves report for the bundle and for opening it.
//!
//! Run through `scripts/bench-conference.sh`.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use vcsdk::client::{Client, ClientEvent, ClientOptions, ConferenceOptions};
use vcsdk::conference::entry::{sha256_hex, Body, Entry, Sequenced};
use vcsdk::conference::group_key::{
    unwrap_epoch, wrap_epoch, MemberSecrets, Recipient, WrapContext,
};
use vcsdk::conference::media::{ConferenceMedia, ConferenceMediaConfig};
use vcsdk::conference::state::{ConferenceState, Verifier};
use vcsdk::conference::{next_epoch, Mode, Policy};
use vcsdk::identity::Identity;
use vcsdk::pki::CertificateCheck;
use vcsdk_tests::{TestCa, TestServer};

/// Measures group rekeying on leave.
#[derive(Parser)]
struct Args {
    /// Conference sizes, comma-separated.
    #[arg(long, default_value = "10,50,100", value_delimiter = ',')]
    members: Vec<usize>,
    /// Rekeys measured per size and level (the median is reported).
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    /// Skip the loopback part (2).
    #[arg(long)]
    no_loopback: bool,
    /// Levels of the loopback part, comma-separated.
    #[arg(long, default_value = "2,3", value_delimiter = ',')]
    loopback_levels: Vec<u8>,
}

/// Runs `f` (CPU-bound, on this thread), returning its result and the time it took, µs.
fn cpu<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let t = f();
    (t, start.elapsed().as_secs_f64() * 1e6)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

const CONF: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";

/// A conference of `identities` built in-process: every entry checked as a member checks it.
struct Bed<'a> {
    identities: &'a [Arc<Identity>],
    secrets: Vec<MemberSecrets>,
    state: ConferenceState,
    check: CertificateCheck,
    at_ms: i64,
}

impl Bed<'_> {
    fn verifier(&self) -> Verifier<'_> {
        Verifier {
            check: &self.check,
            server_name: Some("localhost"),
            live: true,
        }
    }

    fn post(&mut self, who: usize, body: Body) -> Sequenced {
        let identity = &self.identities[who];
        let mut content = self.state.content(identity.id(), body);
        content.counter = self.state.counter_of(identity.id()) + 1;
        let entry = Entry::sign(identity, &content).expect("sign");
        self.at_ms += 10;
        let s = Sequenced {
            seq: self.state.next_seq(),
            at_ms: self.at_ms,
            entry,
        };
        let check = self.check.clone();
        let verifier = Verifier {
            check: &check,
            server_name: Some("localhost"),
            live: true,
        };
        self.state.admit(&s, &verifier).expect("an honest entry");
        s
    }

    /// The distributor's next epoch: (bundle entry, wraps).
    fn bundle(&self) -> (Entry, vcsdk::conference::group_key::PreparedEpoch) {
        let me = self.state.distributor().expect("distributor");
        let identity = self
            .identities
            .iter()
            .find(|i| i.id() == me)
            .expect("the distributor's identity");
        let made =
            next_epoch(&self.state, identity, self.state.counter_of(me) + 1).expect("bundle");
        (made.entry, made.prepared)
    }
}

/// Builds a conference of `n` members at `level`, then measures `rounds` rekeys on leave.
fn in_process(
    identities: &[Arc<Identity>],
    check: &CertificateCheck,
    n: usize,
    level: u8,
    rounds: usize,
    rt: &tokio::runtime::Runtime,
) -> (f64, usize, f64, f64) {
    let policy = Policy::for_level(level, Mode::Moderation);
    let pq = policy.post_quantum();
    let needed = n + rounds;
    let mut bed = Bed {
        identities: &identities[..needed],
        secrets: (0..needed)
            .map(|_| MemberSecrets::generate().expect("keys"))
            .collect(),
        state: ConferenceState::new(CONF),
        check: check.clone(),
        at_ms: vcsdk::util::unix_now() * 1000,
    };
    let keys = bed.secrets[0].public().clone();
    bed.post(0, Body::Create { policy, keys });
    // Everyone joins (one rekey at the end; the log's content is what matters here).
    for i in 1..needed {
        let invitee = bed.identities[i].clone();
        bed.post(
            0,
            Body::Invite {
                invitee: invitee.id().to_owned(),
                invitee_certificate: sha256_hex(invitee.certificate()),
                ttl_secs: 600,
            },
        );
        let invite = bed.state.invitations().last().expect("invite").id.clone();
        let keys = bed.secrets[i].public().clone();
        bed.post(i, Body::Join { invite, keys });
    }
    // Members beyond n leave first, so that each measured round starts from n members.
    let (mut make, mut open) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for round in 0..rounds {
        let leaver = needed - 1 - round;
        let s = bed.post(leaver, Body::Leave);
        drop(s);
        // The distributor's work: wrap to every remaining member and sign.
        let ((entry, prepared), us) = cpu(|| bed.bundle());
        make.push(us / 1000.0);
        bytes = entry.content.len()
            + entry.signature.len()
            + entry.certificate.len()
            + prepared.wrap_bytes() * 2;
        // One member's work: check the entry, open its wrap, install its sending keys.
        let member_index = 1usize;
        let member = &bed.state.members()[member_index].clone();
        let mut member_state = bed.state.clone();
        let sequenced = Sequenced {
            seq: member_state.next_seq(),
            at_ms: bed.at_ms + 5,
            entry: entry.clone(),
        };
        let wrap = prepared
            .wraps
            .iter()
            .find(|(i, _)| *i == member.index)
            .map(|(_, w)| w.clone())
            .expect("the member's wrap");
        let media = rt
            .block_on(ConferenceMedia::new(
                member.index,
                "127.0.0.1".parse().expect("ip"),
                ConferenceMediaConfig::default(),
            ))
            .expect("media");
        let roster: Vec<(u16, Arc<str>)> = bed
            .state
            .members()
            .iter()
            .map(|m| (m.index, Arc::from(m.id.as_str())))
            .collect();
        let roster_hash = *bed.state.roster_hash();
        let secrets = &bed.secrets[identities
            .iter()
            .position(|i| i.id() == member.id)
            .expect("member")];
        let ((), us) = cpu(|| {
            let verifier = Verifier {
                check,
                server_name: Some("localhost"),
                live: true,
            };
            member_state
                .apply(&sequenced, &verifier)
                .expect("the bundle applies");
            let ctx = WrapContext {
                conf: CONF,
                epoch: member_state.epoch(),
                roster_hash: &roster_hash,
                post_quantum: pq,
            };
            let secret = unwrap_epoch(
                &ctx,
                secrets,
                member.index,
                &member.id,
                &prepared.ephemeral,
                &wrap,
            )
            .expect("unwrap");
            rt.block_on(media.install_epoch(
                member_state.epoch(),
                &secret,
                *member_state.policy(),
                roster.clone(),
            ))
            .expect("install");
        });
        open.push(us / 1000.0);
        // The bundle is applied for real before the next round.
        let s = Sequenced {
            seq: bed.state.next_seq(),
            at_ms: bed.at_ms + 5,
            entry,
        };
        let verifier = bed.verifier();
        let mut state = bed.state.clone();
        state.apply(&s, &verifier).expect("applies");
        bed.state = state;
        bed.at_ms += 10;
    }
    let max_open = open.iter().cloned().fold(0.0, f64::max);
    (median(&mut make), bytes, median(&mut open), max_open)
}

/// Connects and registers an SDK client for `identity`.
async fn online(
    server: &str,
    identity: Arc<Identity>,
    check: &CertificateCheck,
) -> (Client, tokio::sync::mpsc::Receiver<ClientEvent>) {
    let mut options = ClientOptions::new(server.to_owned(), identity, check.clone());
    options.server_name = Some("localhost".into());
    options.reconnect = false;
    let (client, events) = Client::connect(options).await.expect("connect");
    client.register("1").await.expect("register");
    (client, events)
}

/// Loopback: `n` members; one leaves; until every other member sends on the new epoch.
async fn loopback(
    server: &str,
    identities: &[Arc<Identity>],
    check: &CertificateCheck,
    n: usize,
    level: u8,
) -> (f64, f64, f64, f64) {
    let mut clients = Vec::new();
    for identity in &identities[..n] {
        clients.push(online(server, identity.clone(), check).await);
    }
    let options = || ConferenceOptions {
        policy: Policy {
            rekey_interval_secs: 0,
            ..Policy::for_level(level, Mode::Moderation)
        },
        media: ConferenceMediaConfig {
            direct: false,
            ..Default::default()
        },
    };
    let host = clients[0]
        .0
        .create_conference(options())
        .await
        .expect("create");
    let mut members = vec![host.clone()];
    for (client, events) in clients.iter_mut().skip(1) {
        host.invite(client.user()).await.expect("invite");
        let conf = loop {
            match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
                Ok(Some(ClientEvent::ConferenceInvitation { conf, .. })) => break conf,
                Ok(Some(_)) => {}
                _ => panic!("no invitation"),
            }
        };
        members.push(
            client
                .join_conference(&conf, options())
                .await
                .expect("join"),
        );
    }
    let full = host.epoch();
    for m in &members {
        m.wait_for_epoch(full, Duration::from_secs(60))
            .await
            .expect("the full roster's epoch");
    }
    let leaver = members.pop().expect("a member");
    let start = Instant::now();
    leaver.leave().await.expect("leave");
    let mut times = Vec::new();
    for m in &members {
        m.wait_for_epoch(full + 1, Duration::from_secs(60))
            .await
            .expect("the new epoch");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let slowest = times.iter().cloned().fold(0.0, f64::max);
    let bundle_ms = host.timings().last_bundle_micros as f64 / 1000.0;
    let mut opens: Vec<f64> = members[1..]
        .iter()
        .map(|m| m.timings().last_epoch_open_micros as f64 / 1000.0)
        .collect();
    let open_median = median(&mut opens);
    for m in &members {
        let _ = m.leave().await;
    }
    for (c, _) in &clients {
        let _ = c.close().await;
    }
    (slowest, median(&mut times), bundle_ms, open_median)
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ca = TestCa::start(&["--cert-validity", "1d"]);
    let largest = args.members.iter().copied().max().unwrap_or(100);
    let identities = vcsdk_tests::issue_identities(&ca, "m", largest + args.rounds);
    let authority = vcca::CertificationAuthority::open(&ca.data_dir()).expect("CA");
    let mut check = CertificateCheck::new(authority.root().clone()).expect("root");
    check
        .set_crl_der(&authority.current_crl().expect("crl").der)
        .expect("crl");

    // Baseline of the same run: one signature check, one X25519 agreement.
    let sample = Entry::sign(
        &identities[0],
        &ConferenceState::new(CONF).content(identities[0].id(), Body::Leave),
    )
    .expect("sign");
    let opened = sample.open().expect("open");
    let (_, verify_us) = cpu(|| {
        for _ in 0..200 {
            sample
                .verify(&opened, &check, None, rustls_pki_types::UnixTime::now())
                .expect("verify");
        }
    });
    let a = MemberSecrets::generate().expect("keys");
    let ctx = WrapContext {
        conf: CONF,
        epoch: 1,
        roster_hash: &[0; 32],
        post_quantum: false,
    };
    let (_, x_us) = cpu(|| {
        for _ in 0..200 {
            wrap_epoch(
                &ctx,
                &[Recipient {
                    member: 1,
                    id: "a",
                    keys: a.public(),
                }],
            )
            .expect("wrap");
        }
    });
    println!(
        "baseline (same run): entry check (certificate + signature) {:.3} ms, one single-recipient wrap {:.3} ms",
        verify_us / 200.0 / 1000.0,
        x_us / 200.0 / 1000.0
    );
    println!();
    println!(
        "(1) rekey on leave, in-process, one thread (median of {} rekeys)",
        args.rounds
    );
    println!("members  level  distributor CPU  bundle size   per-member CPU (median / max)");
    for &n in &args.members {
        for level in [2u8, 3] {
            let (make, bytes, open, max_open) =
                in_process(&identities, &check, n, level, args.rounds, &rt);
            println!(
                "{n:>7}  {level:>5}  {make:>12.2} ms  {:>8.1} KiB   {open:>6.3} ms / {max_open:.3} ms",
                bytes as f64 / 1024.0
            );
        }
    }
    if args.no_loopback {
        return;
    }
    let server = TestServer::start(
        &ca,
        &[
            "rate_per_minute = 0",
            "rate_limit_per_sec = 2000",
            "rate_limit_burst = 4000",
            "max_connections = 60000",
        ],
    );
    println!();
    println!("(2) loopback, real vc-server: one member leaves; until every remaining member sends on the new epoch");
    println!(
        "members  level  all on new epoch  median member  engine bundle  engine open (median)"
    );
    for &n in &args.members {
        for &level in &args.loopback_levels {
            let (slowest, median_ms, bundle, open) =
                rt.block_on(loopback(&server.addr(), &identities, &check, n, level));
            println!(
                "{n:>7}  {level:>5}  {slowest:>13.1} ms  {median_ms:>10.1} ms  {bundle:>10.2} ms  {open:>10.3} ms"
            );
        }
    }
}
