//! Issuance benchmark: certificates per second through the real `vc-ca` HTTPS API with durable
//! storage (SQLite, synchronous=FULL), from N concurrent clients, each request on a fresh mutual
//! TLS connection as the SDK makes it. Baselines measured in the same run: the same enrollment
//! in-process (CSR check + signing + durable commit, no network), and signing alone.
//!
//! Run with `cargo run --release -p vcsdk-tests --bin ca-load -- --clients 8 --count 400`
//! after `cargo build --release -p vc-ca`.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use vcca::config::CaConfig;
use vcca::grant::Grant;
use vcca::CertificationAuthority;
use vcsdk::ca_client::CaClient;
use vcsdk::pki::{CertificateCheck, CsrSubject};
use vcsdk::ClientId;
use vcsdk_tests::{run_ok, Process};

/// Measures certificate issuance through the vc-ca HTTPS API.
#[derive(Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Certificates to issue through the API.
    #[arg(long, default_value_t = 400)]
    count: usize,
}

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

    // Client-side work (keys, CSRs) and tokens are made before the clock starts.
    let authority = CertificationAuthority::open(&data).expect("open CA");
    let work: Vec<(String, String)> = (0..args.count)
        .map(|i| {
            let id = ClientId::new(&format!("load{i}")).expect("id");
            let token = authority
                .create_token(&Grant::Client(id.clone()), None)
                .expect("token");
            (token, csr(&id))
        })
        .collect();
    drop(authority);

    let root = std::fs::read(data.join("root.pem")).expect("root");
    let client = CaClient::new(
        &format!("https://127.0.0.1:{}", server.addr.port()),
        CertificateCheck::from_root_pem(&root).expect("root"),
    )
    .expect("client");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let queue = Arc::new(std::sync::Mutex::new(work));
    let started = Instant::now();
    let mut latencies: Vec<Duration> = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.clients {
            let queue = queue.clone();
            let client = client.clone();
            tasks.spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let Some((token, csr)) = queue.lock().expect("queue").pop() else {
                        return mine;
                    };
                    let t = Instant::now();
                    client.enroll(&token, &csr).await.expect("enrollment");
                    mine.push(t.elapsed());
                }
            });
        }
        let mut all = Vec::new();
        while let Some(done) = tasks.join_next().await {
            all.extend(done.expect("task"));
        }
        all
    });
    let https_elapsed = started.elapsed();
    latencies.sort();
    let https_rate = args.count as f64 / https_elapsed.as_secs_f64();

    // Baseline 1: the same enrollment in-process, one at a time, on a fresh CA with the same
    // storage settings.
    let base_dir = home.path().join("baseline");
    CertificationAuthority::init(
        &base_dir,
        &CaConfig::default(),
        Duration::from_secs(86_400 * 365),
    )
    .expect("baseline CA");
    let base = CertificationAuthority::open(&base_dir).expect("baseline CA");
    let base_work: Vec<(String, String)> = (0..args.count)
        .map(|i| {
            let id = ClientId::new(&format!("base{i}")).expect("id");
            let token = base
                .create_token(&Grant::Client(id.clone()), None)
                .expect("token");
            (token, csr(&id))
        })
        .collect();
    let started = Instant::now();
    for (token, csr) in &base_work {
        base.enroll(token, csr).expect("in-process enrollment");
    }
    let inprocess_rate = args.count as f64 / started.elapsed().as_secs_f64();

    // Baseline 2: signing alone (CSR parse and signature check, certificate signing).
    let signer = vcca::authority::Authority::load(&base_dir).expect("authority");
    let grant = Grant::Client(ClientId::new("sign").expect("id"));
    let csrs: Vec<String> = (0..args.count)
        .map(|_| csr(&ClientId::new("sign").expect("id")))
        .collect();
    let started = Instant::now();
    for pem in &csrs {
        let params = rcgen::CertificateSigningRequestParams::from_pem(pem).expect("csr");
        signer
            .sign_csr(params, &grant, Duration::from_secs(86_400), None)
            .expect("sign");
    }
    let sign_rate = args.count as f64 / started.elapsed().as_secs_f64();

    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "issuance benchmark: {} certificates, {} concurrent clients",
        args.count, args.clients
    );
    println!(
        "  HTTPS API (mTLS-capable TLS 1.3, new connection per request, SQLite synchronous=FULL): {https_rate:.0} certificates/s; latency p50 {:.1} ms, p99 {:.1} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    println!("  baseline, in-process enrollment (check + sign + durable commit, 1 thread): {inprocess_rate:.0} certificates/s");
    println!("  baseline, signing alone (CSR verify + certificate sign, 1 thread): {sign_rate:.0} certificates/s");
    println!(
        "  ratios: HTTPS / in-process = {:.2}; HTTPS / signing alone = {:.2}",
        https_rate / inprocess_rate,
        https_rate / sign_rate
    );
}

fn csr(id: &ClientId) -> String {
    let key = vcsdk::pki::new_key_pair().expect("key");
    CsrSubject::Client(id.clone()).csr_pem(&key).expect("csr")
}
