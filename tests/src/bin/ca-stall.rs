//! Stall-attack benchmark: a legitimate client's enrollment latency through the real `vc-ca`
//! (default limits) with and without an attack in which many addresses (127.0.0.2, 127.0.0.3, …)
//! hold as many connections as they can, each sending request headers that announce a body and
//! then nothing. Prints the latency of both runs and their ratio.
//!
//! Run with `cargo run -p vcsdk-tests --bin ca-stall -- --addresses 20 --per-address 64`
//! after `cargo build -p vc-ca`.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vcca::grant::Grant;
use vcca::CertificationAuthority;
use vcsdk::ca_client::CaClient;
use vcsdk::pki::{CertificateCheck, CsrSubject};
use vcsdk::ClientId;
use vcsdk_tests::{run_ok, Process};

/// Measures enrollment latency with and without a stalled-connection attack.
#[derive(Parser)]
struct Args {
    /// Attacking addresses (127.0.0.2 onwards).
    #[arg(long, default_value_t = 20)]
    addresses: u8,
    /// Connections each attacking address tries to hold.
    #[arg(long, default_value_t = 64)]
    per_address: usize,
    /// Enrollments measured in each run (one after the other, one client).
    #[arg(long, default_value_t = 100)]
    count: usize,
}

const STALLED_POST: &[u8] = b"POST /v1/certificates HTTP/1.1\r\nHost: localhost\r\n\
Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n";

fn main() {
    let args = Args::parse();
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("ca");
    let data_str = data.to_str().expect("utf-8 path");
    run_ok("vc-ca", &["init", "--data-dir", data_str]);
    let server = Process::start(
        "vc-ca",
        &["serve", "--data-dir", data_str, "--listen", "127.0.0.1:0"],
        &[("RUST_LOG", "warn")],
    );
    let authority = CertificationAuthority::open(&data).expect("open CA");
    let mut work: Vec<(String, String)> = (0..args.count * 2)
        .map(|i| {
            let id = ClientId::new(&format!("legit{i}")).expect("id");
            let token = authority
                .create_token(&Grant::Client(id.clone()), None)
                .expect("token");
            let key = vcsdk::pki::new_key_pair().expect("key");
            (token, CsrSubject::Client(id).csr_pem(&key).expect("csr"))
        })
        .collect();
    drop(authority);
    let root = std::fs::read(data.join("root.pem")).expect("root");
    let addr = server.addr;
    let client = CaClient::new(
        &format!("https://127.0.0.1:{}", addr.port()),
        CertificateCheck::from_root_pem(&root).expect("root"),
    )
    .expect("client");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let attack_work = work.split_off(args.count);
        let quiet = measure(&client, work).await;

        let stop = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicUsize::new(0));
        let connector = connector(&root);
        let mut attack = tokio::task::JoinSet::new();
        for host in 0..args.addresses {
            let source = Ipv4Addr::new(127, 0, 0, 2 + host);
            for _ in 0..args.per_address {
                let (stop, stalled, connector) = (stop.clone(), stalled.clone(), connector.clone());
                attack.spawn(stall(source, addr, connector, stop, stalled));
            }
        }
        // Let the attack take what it can before measuring.
        let mut held = 0;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = stalled.load(Ordering::SeqCst);
            if now > 0 && now == held {
                break;
            }
            held = now;
        }
        let held = stalled.load(Ordering::SeqCst);
        let attacked = measure(&client, attack_work).await;
        let held_after = stalled.load(Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        attack.abort_all();

        let p = |l: &[Duration], q: f64| l[((l.len() as f64 - 1.0) * q).round() as usize];
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "stall attack: {} addresses x {} connections tried; stalled connections held by the CA: {held} when measuring began, {held_after} at its end",
            args.addresses, args.per_address
        );
        for (name, l) in [("without attack", &quiet), ("during attack", &attacked)] {
            println!(
                "  {name}: {} enrollments, latency p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
                l.len(),
                ms(p(l, 0.5)),
                ms(p(l, 0.9)),
                ms(p(l, 1.0))
            );
        }
        println!(
            "  ratio during / without: p50 {:.2}, p90 {:.2}",
            ms(p(&attacked, 0.5)) / ms(p(&quiet, 0.5)),
            ms(p(&attacked, 0.9)) / ms(p(&quiet, 0.9))
        );
    });
}

/// Enrolls each of `work` in turn; the sorted latencies.
async fn measure(client: &CaClient, work: Vec<(String, String)>) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for (token, csr) in work {
        let started = Instant::now();
        client.enroll(&token, &csr).await.expect("enrollment");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

fn connector(root: &[u8]) -> tokio_rustls::TlsConnector {
    let check = CertificateCheck::from_root_pem(root).expect("root");
    let config = vcsdk::tls::client_config(Arc::new(RwLock::new(check)), None).expect("config");
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One attacker: holds a connection with a stalled body, reconnecting when it is cut off, and
/// backing off half a second when refused.
async fn stall(
    source: Ipv4Addr,
    ca: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    stop: Arc<AtomicBool>,
    stalled: Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::SeqCst) {
        let attempt = async {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(SocketAddr::from((source, 0))).ok()?;
            let tcp = socket.connect(ca).await.ok()?;
            let name = rustls_pki_types::ServerName::try_from("localhost").ok()?;
            let mut tls = connector.connect(name, tcp).await.ok()?;
            tls.write_all(STALLED_POST).await.ok()?;
            tls.flush().await.ok()?;
            Some(tls)
        };
        let Ok(Some(mut tls)) = tokio::time::timeout(Duration::from_secs(10), attempt).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        stalled.fetch_add(1, Ordering::SeqCst);
        let mut buf = [0u8; 1024];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(60), tls.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
        }
        stalled.fetch_sub(1, Ordering::SeqCst);
    }
}
