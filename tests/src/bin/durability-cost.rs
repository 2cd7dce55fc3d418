//! The cost of `synchronous=FULL` for the server's billing writes: debit-shaped transactions (read
//! the balance, update it, add a numbered debit, advance the call) committed one at a time on
//! SQLite in WAL mode, with `synchronous=NORMAL` (a commit may be lost on power failure) and
//! `FULL` (every commit is on the disk before it returns), alternating rounds in one run on the
//! same disk. Usage: `durability-cost [--debits 2000] [--rounds 5] [--dir DIR]`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use rusqlite::{params, Connection, TransactionBehavior};

#[derive(Parser)]
struct Args {
    /// Debits per round.
    #[arg(long, default_value_t = 2000)]
    debits: usize,
    /// Rounds of each setting.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Where the databases go (default: a temporary directory; pick the disk the server uses).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn open(path: &Path, synchronous: &str) -> Connection {
    let conn = Connection::open(path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", synchronous)
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS calls (call_id TEXT PRIMARY KEY, debited INTEGER NOT NULL,
             last_debit_at_ms INTEGER);
         CREATE TABLE IF NOT EXISTS debits (call_id TEXT NOT NULL, seq INTEGER NOT NULL,
             amount INTEGER NOT NULL, covered_to_ms INTEGER NOT NULL, at_ms INTEGER NOT NULL,
             PRIMARY KEY (call_id, seq));
         INSERT OR IGNORE INTO users VALUES ('payer', 1000000000000);
         INSERT OR IGNORE INTO calls VALUES ('call', 0, NULL);",
    )
    .unwrap();
    conn
}

/// Commits `n` debits one transaction each; returns the time taken.
fn debits(conn: &mut Connection, n: usize, seq: &mut i64) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        *seq += 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let balance: i64 = tx
            .query_row("SELECT balance FROM users WHERE id = 'payer'", [], |r| {
                r.get(0)
            })
            .unwrap();
        tx.execute(
            "UPDATE users SET balance = ?1 WHERE id = 'payer'",
            params![balance - 10],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO debits VALUES ('call', ?1, 10, ?1, ?1)",
            params![*seq],
        )
        .unwrap();
        tx.execute(
            "UPDATE calls SET debited = debited + 10, last_debit_at_ms = ?1 WHERE call_id = 'call'",
            params![*seq],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    started.elapsed()
}

fn main() {
    let args = Args::parse();
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    let mut normal = open(&dir.join("normal.db"), "NORMAL");
    let mut full = open(&dir.join("full.db"), "FULL");
    let (mut seq_n, mut seq_f) = (0, 0);
    let (mut best_n, mut best_f) = (Duration::MAX, Duration::MAX);
    for _ in 0..args.rounds {
        best_n = best_n.min(debits(&mut normal, args.debits, &mut seq_n));
        best_f = best_f.min(debits(&mut full, args.debits, &mut seq_f));
    }
    let rate = |d: Duration| args.debits as f64 / d.as_secs_f64();
    println!(
        "debit transactions committed one at a time, best of {} rounds of {}:",
        args.rounds, args.debits
    );
    println!("  synchronous=NORMAL: {:>9.0} debits/s", rate(best_n));
    println!("  synchronous=FULL:   {:>9.0} debits/s", rate(best_f));
    println!(
        "  FULL / NORMAL time per debit: {:.2}x",
        best_f.as_secs_f64() / best_n.as_secs_f64()
    );
}
