//! A test bed for the binding tests (Kotlin, Python): starts the real `vc-ca` and `vc-server` on
//! 127.0.0.1 with port 0 and temporary data directories, makes one-time enrollment tokens for the
//! users named and prepaid vouchers, prints one JSON line describing it all, and keeps running until
//! its standard input closes; then it stops both processes and removes their directories.
//!
//! Usage: vc-testbed [--users alice,bob] [--vouchers N] [--voucher-amount MINOR_UNITS]
//!                   [--setting "key = value"]...
//!
//! The line: {"ca_url", "ca_root" (a PEM file), "server" (HOST:PORT), "tokens": {user: token},
//! "vouchers": [code, …], "work" (a scratch directory removed at the end)}.
#![forbid(unsafe_code)]

use std::io::Read;

use clap::Parser;
use vcsdk_tests::{TestCa, TestServer};

/// Starts a CA and a server for binding tests; stops them when stdin closes.
#[derive(Parser)]
struct Args {
    /// Users to make enrollment tokens for, comma-separated.
    #[arg(long, default_value = "alice,bob")]
    users: String,
    /// Prepaid vouchers to make.
    #[arg(long, default_value_t = 2)]
    vouchers: u32,
    /// The amount of each voucher, minor units.
    #[arg(long, default_value_t = 1000)]
    voucher_amount: i64,
    /// server.toml settings to override, `key = value` (repeatable).
    #[arg(long = "setting")]
    settings: Vec<String>,
}

fn main() {
    let args = Args::parse();
    let ca = TestCa::start(&[]);
    let mut settings = vec![
        "keepalive_secs = 2".to_owned(),
        "ring_timeout_secs = 20".to_owned(),
    ];
    settings.extend(args.settings.iter().cloned());
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let server = TestServer::start(&ca, &settings);
    let work = tempfile::tempdir().expect("tempdir");
    let tokens: serde_json::Map<String, serde_json::Value> = args
        .users
        .split(',')
        .filter(|u| !u.is_empty())
        .map(|u| (u.to_owned(), ca.client_token(u).into()))
        .collect();
    let amount = vcsdk::billing::Money::new(args.voucher_amount, "EUR").major();
    let vouchers: Vec<String> = (0..args.vouchers)
        .map(|_| {
            server
                .cli(&["voucher", "create", "--amount", &amount])
                .trim()
                .to_owned()
        })
        .collect();
    let line = serde_json::json!({
        "ca_url": ca.url(),
        "ca_root": ca.root_path(),
        "server": server.addr(),
        "tokens": tokens,
        "vouchers": vouchers,
        "work": work.path(),
    });
    println!("{line}");
    // Runs until the test closes our stdin (or dies, which closes it too).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(server);
    drop(ca);
}
