//! Billing load: (1) server CPU while N concurrent calls are being debited by the real `vc-server`;
//! (2) time to export 100 000 call records as CSV with `vc-server cdr list`, against reading the
//! same records without formatting (baseline, same run).
//!
//! Run through `scripts/bench-billing.sh` (it raises the open-file limit).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use clap::Parser;
use vcsdk::billing::Tariff;
use vcsdk::client::{Client, ClientEvent, ClientOptions};
use vcsdk::pki::CertificateCheck;
use vcsdk::proto::signal::{Answer, CallState};
use vcsdk_tests::{run_ok, TestCa, TestServer};
use vcserver::store::{Disposition, Store};

/// Measures billing under load and the CDR export.
#[derive(Parser)]
struct Args {
    /// Concurrent billed calls.
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// Seconds between debits of each call.
    #[arg(long, default_value_t = 10)]
    debit_interval: u32,
    /// Seconds over which server CPU is measured.
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// Records in the export test.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ca = TestCa::start(&["--cert-validity", "1d"]);
    let interval = format!("debit_interval_secs = {}", args.debit_interval);
    let server = TestServer::start(
        &ca,
        &[
            "max_connections = 60000",
            interval.as_str(),
            "ring_timeout_secs = 60",
        ],
    );
    let root = ca.root_pem();
    let identities = vcsdk_tests::issue_identities(&ca, "b", args.calls * 2);
    let check = CertificateCheck::from_root_pem(&root).expect("root");
    let addr = server.addr();
    let data = server.data_dir();
    let pid = server.process.pid();

    let (cpu_percent, debits_per_sec, accepted) = runtime.block_on(async {
        let mut clients = Vec::new();
        for identity in identities {
            let mut options = ClientOptions::new(addr.clone(), identity, check.clone());
            options.server_name = Some("localhost".into());
            options.reconnect = false;
            let (client, events) = Client::connect(options).await.expect("connect");
            client.register("1").await.expect("register");
            clients.push((client, events));
        }
        let store = Store::open(&data).expect("store");
        for (i, (client, _)) in clients.iter().enumerate() {
            if i % 2 == 0 {
                store
                    .credit(client.user(), 1_000_000_000, "load")
                    .await
                    .expect("credit");
            }
        }
        let mut accepted = 0;
        let mut held = Vec::new();
        let mut it = clients.into_iter();
        while let (Some((caller, mut caller_events)), Some((callee, mut callee_events))) =
            (it.next(), it.next())
        {
            let call = caller.call(callee.user()).await.expect("call");
            loop {
                if let Some(ClientEvent::IncomingCall { call_id, .. }) = callee_events.recv().await
                {
                    callee
                        .answer(&call_id, Answer::Accept)
                        .await
                        .expect("answer");
                    break;
                }
            }
            loop {
                if let Some(ClientEvent::CallState {
                    call_id,
                    state: CallState::Accepted,
                    ..
                }) = caller_events.recv().await
                {
                    if call_id == call {
                        accepted += 1;
                        break;
                    }
                }
            }
            held.push((caller, caller_events, callee, callee_events));
        }
        // While measuring, the calls only produce debits (no events: the balances are large).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_, debits_before) = store.counts().expect("counts");
        let ticks_before = cpu_ticks(pid);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.window)).await;
        let elapsed = started.elapsed().as_secs_f64();
        let ticks = cpu_ticks(pid) - ticks_before;
        let (_, debits_after) = store.counts().expect("counts");
        drop(held);
        (
            ticks as f64 / 100.0 / elapsed * 100.0,
            (debits_after - debits_before) as f64 / elapsed,
            accepted,
        )
    });
    drop(server);

    // CDR export of 100 000 records.
    let export_dir = tempfile::tempdir().expect("tempdir");
    let store = Store::create(export_dir.path()).expect("store");
    let tariff = Tariff::default();
    let started = Instant::now();
    runtime.block_on(async {
        store
            .register("caller", "s", b"der", "1", 0, "postpaid", 1_000_000_000)
            .await
            .expect("register");
        for i in 0..args.records as i64 {
            let id = format!("r{i:07}");
            let t = 1_700_000_000_000 + i * 100_000;
            store.call_requested(&id, "caller", "callee", t);
            store.call_answered(&id, t + 2_000, &tariff);
            store.call_ended(
                &id,
                t + 2_000 + (i % 600) * 1000 + 123,
                Disposition::Answered,
                "caller hung up",
            );
        }
        store.flush().await;
    });
    let fill = started.elapsed();
    let started = Instant::now();
    store.for_each_record(None, |_| {}).expect("read");
    let baseline = started.elapsed();
    drop(store);
    let dir = export_dir.path().to_str().expect("utf-8").to_owned();
    let started = Instant::now();
    let csv = run_ok(
        "vc-server",
        &["cdr", "list", "--data-dir", &dir, "--format", "csv"],
    );
    let export = started.elapsed();
    assert_eq!(csv.lines().count(), args.records + 1);

    println!(
        "billing load ({} concurrent billed calls, debit every {} s, {} s window)",
        args.calls, args.debit_interval, args.window
    );
    println!("  calls accepted and held: {accepted}");
    println!("  server CPU: {cpu_percent:.1}% of one core; debits committed: {debits_per_sec:.0} per second");
    println!(
        "  CDR export: {} records as CSV ({:.1} MB) by `vc-server cdr list` in {:.2} s ({:.0} records/s); baseline, reading the same records without formatting: {:.2} s (ratio {:.2}); filling the database took {:.1} s",
        args.records,
        csv.len() as f64 / 1e6,
        export.as_secs_f64(),
        args.records as f64 / export.as_secs_f64(),
        baseline.as_secs_f64(),
        export.as_secs_f64() / baseline.as_secs_f64(),
        fill.as_secs_f64()
    );
}
