//! Signalling load: connects N clients to the real `vc-server` over mutual TLS, holds them, and
//! places calls at a steady rate. Reports connected clients held, server memory per client, mTLS
//! handshakes per second, and call-setup latency (request → accepted) percentiles.
//!
//! Needs a high open-file limit (`ulimit -n 65536`): run it through `scripts/bench-server.sh`.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use vcsdk::client::{Client, ClientEvent, ClientOptions};
use vcsdk::identity::Identity;
use vcsdk::pki::CertificateCheck;
use vcsdk::proto::signal::{Answer, CallState};
use vcsdk_tests::{TestCa, TestServer};

/// Measures the conferencing server under many connected clients and a steady call rate.
#[derive(Parser)]
struct Args {
    /// Clients to connect and hold.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Calls placed per second during the call phase.
    #[arg(long, default_value_t = 20)]
    call_rate: u32,
    /// Length of the call phase, seconds.
    #[arg(long, default_value_t = 15)]
    call_seconds: u64,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ca = TestCa::start(&["--cert-validity", "1d"]);
    let server = TestServer::start(
        &ca,
        &[
            "max_connections = 60000",
            "outbound_queue = 64",
            "ring_timeout_secs = 30",
            "rate_per_minute = 0",
        ],
    );
    let server_pid = server.process.pid();
    let root = ca.root_pem();

    // Identities are issued in-process (same CA code and database) to keep the setup short.
    let started = Instant::now();
    let identities = vcsdk_tests::issue_identities(&ca, "u", args.clients);
    eprintln!(
        "issued {} identities in {:.1} s",
        args.clients,
        started.elapsed().as_secs_f64()
    );

    // Baseline in the same run: the same mutual-TLS 1.3 handshake (same certificates, verifiers
    // and provider) between two in-memory endpoints, no sockets, one thread.
    let baseline = in_memory_handshakes(&server, &root, &identities[0], 500);
    let rss_before = rss_kib(server_pid);
    let check = CertificateCheck::from_root_pem(&root).expect("root");
    let addr = server.addr();
    runtime.block_on(async move {
        // Connect everyone, `concurrency` at a time.
        let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, identity) in identities.into_iter().enumerate() {
            let semaphore = semaphore.clone();
            let mut options = ClientOptions::new(addr.clone(), identity, check.clone());
            options.server_name = Some("localhost".into());
            options.reconnect = false;
            tasks.spawn(async move {
                let _permit = semaphore.acquire_owned().await.expect("semaphore");
                let (client, events) = Client::connect(options).await.expect("connect");
                (i, client, events)
            });
        }
        let mut clients = Vec::with_capacity(args.clients);
        while let Some(done) = tasks.join_next().await {
            clients.push(done.expect("task"));
        }
        let connect_elapsed = started.elapsed();
        clients.sort_by_key(|(i, _, _)| *i);
        let mut clients: Vec<(Client, Receiver)> = clients.into_iter().map(|(_, c, e)| (c, e)).collect();

        // Register everyone (durable writes).
        let started = Instant::now();
        let mut registering = tokio::task::JoinSet::new();
        for (client, _) in &clients {
            let client = client.clone();
            registering.spawn(async move { client.register("1").await.expect("register") });
        }
        while registering.join_next().await.is_some() {}
        let register_elapsed = started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_held = rss_kib(server_pid);
        let active = clients[0].0.active_users().await.expect("active users").len();

        // Calls at a steady rate between pairs; callees accept at once.
        let pairs = (clients.len() / 2).min(args.call_rate as usize * 2).max(1);
        let period = Duration::from_secs_f64(pairs as f64 / f64::from(args.call_rate));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut workers = Vec::new();
        let pair_list: Vec<_> = clients.drain(..pairs * 2).collect();
        // The workers are aborted at the end; these keep their connections open until the report.
        let held: Vec<Client> = pair_list.iter().map(|(c, _)| c.clone()).collect();
        let mut pair_iter = pair_list.into_iter();
        for k in 0..pairs {
            let (caller, mut caller_events) = pair_iter.next().expect("caller");
            let (callee, mut callee_events) = pair_iter.next().expect("callee");
            workers.push(tokio::spawn(async move {
                while let Some(event) = callee_events.recv().await {
                    if let ClientEvent::IncomingCall { call_id, .. } = event {
                        let _ = callee.answer(&call_id, Answer::Accept).await;
                    }
                }
            }));
            let latencies = latencies.clone();
            let failures = failures.clone();
            let callee_id = format!("u{:05}", 2 * k + 1);
            workers.push(tokio::spawn(async move {
                tokio::time::sleep(period.mul_f64(k as f64 / pairs as f64)).await;
                let mut ticker = tokio::time::interval(period);
                loop {
                    ticker.tick().await;
                    let t0 = Instant::now();
                    let Ok(call_id) = caller.call(&callee_id).await else {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    };
                    let accepted = tokio::time::timeout(Duration::from_secs(10), async {
                        while let Some(event) = caller_events.recv().await {
                            if let ClientEvent::CallState { call_id: id, state, .. } = event {
                                if id == call_id && state == CallState::Accepted {
                                    return true;
                                }
                                if id == call_id && state.is_final() {
                                    return false;
                                }
                            }
                        }
                        false
                    })
                    .await
                    .unwrap_or(false);
                    if accepted {
                        latencies.lock().expect("latencies").push(t0.elapsed());
                    } else {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let _ = caller.terminate(&call_id, None).await;
                    // Wait for the end so the next call does not meet "already in a call".
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Some(event) = caller_events.recv().await {
                            if matches!(event, ClientEvent::CallState { call_id: ref ended, state, .. } if *ended == call_id && state.is_final()) {
                                return;
                            }
                        }
                    })
                    .await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(args.call_seconds)).await;
        for w in &workers {
            w.abort();
        }
        let mut sorted = latencies.lock().expect("latencies").clone();
        sorted.sort();
        let still_active = held[0]
            .active_users()
            .await
            .map(|u| u.len())
            .unwrap_or(0);

        let n = args.clients as f64;
        println!("signalling load: {} clients over mutual TLS 1.3 (one process each side, 2 cores shared)", args.clients);
        println!("  connected clients held: {active} registered and online after connecting; {still_active} still online after the call phase");
        println!(
            "  mTLS handshakes (connect + hello/welcome): {:.0} per second ({} in {:.1} s, {} at a time)",
            n / connect_elapsed.as_secs_f64(),
            args.clients,
            connect_elapsed.as_secs_f64(),
            args.concurrency
        );
        println!(
            "  baseline, in-memory mTLS 1.3 handshakes (both ends, one thread): {baseline:.0} per second; ratio server / baseline = {:.2}",
            n / connect_elapsed.as_secs_f64() / baseline
        );
        println!("  registrations (durable): {:.0} per second", n / register_elapsed.as_secs_f64());
        println!(
            "  server memory: {:.1} MiB before, {:.1} MiB holding them: {:.1} KiB per connected client",
            rss_before as f64 / 1024.0,
            rss_held as f64 / 1024.0,
            (rss_held.saturating_sub(rss_before)) as f64 / n
        );
        println!(
            "  call setup (request -> accepted), {} calls at {} calls/s over {} pairs: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} failed",
            sorted.len(),
            args.call_rate,
            pairs,
            percentile(&sorted, 0.50).as_secs_f64() * 1e3,
            percentile(&sorted, 0.99).as_secs_f64() * 1e3,
            sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            failures.load(std::sync::atomic::Ordering::Relaxed)
        );
        drop(held);
        drop(clients);
    });
}

type Receiver = tokio::sync::mpsc::Receiver<ClientEvent>;

/// Full mutual-TLS handshakes per second between in-memory endpoints configured as the real
/// server and client are.
fn in_memory_handshakes(server: &TestServer, root: &[u8], client: &Identity, count: u32) -> f64 {
    use std::sync::RwLock;
    let server_identity = vcsdk::identity::IdentityStore::new(server.data_dir().join("identity"))
        .load()
        .expect("server identity");
    let check = Arc::new(RwLock::new(
        CertificateCheck::from_root_pem(root).expect("root"),
    ));
    let verifier =
        vcsdk::tls::PkiClientVerifier::mandatory(check.clone(), vec![vcsdk::pki::Usage::Client]);
    let server_config = Arc::new(
        vcsdk::tls::server_config(server_identity.certified_key(), verifier)
            .expect("server config"),
    );
    let client_config = Arc::new(
        vcsdk::tls::client_config(check, Some(client.certified_key())).expect("client config"),
    );
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let started = Instant::now();
    for _ in 0..count {
        let mut c =
            rustls::ClientConnection::new(client_config.clone(), name.clone()).expect("client");
        let mut s = rustls::ServerConnection::new(server_config.clone()).expect("server");
        let mut buf = Vec::new();
        while c.is_handshaking() || s.is_handshaking() {
            buf.clear();
            while c.wants_write() {
                c.write_tls(&mut buf).expect("write");
            }
            if !buf.is_empty() {
                s.read_tls(&mut &buf[..]).expect("read");
                s.process_new_packets().expect("server handshake");
            }
            buf.clear();
            while s.wants_write() {
                s.write_tls(&mut buf).expect("write");
            }
            if !buf.is_empty() {
                c.read_tls(&mut &buf[..]).expect("read");
                c.process_new_packets().expect("client handshake");
            }
        }
    }
    f64::from(count) / started.elapsed().as_secs_f64()
}
