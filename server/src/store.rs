//! The server's durable state in SQLite (WAL, synchronous=FULL, foreign keys on): registered users and which terms
//! version each accepted when, accounts, and call records. Writes go through one writer thread in
//! the order they were made; reads use their own connection.

use std::path::Path;
use std::sync::{mpsc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::oneshot;
use vcsdk::billing::{CallRecord, Receipt, ReceiptKind, Tariff};

/// File name of the database in the data directory.
pub const DB_FILE: &str = "server.db";

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    cert_serial     TEXT NOT NULL,
    cert_der        BLOB NOT NULL,
    terms_version   TEXT NOT NULL,
    registered_at   INTEGER NOT NULL,
    unregistered_at INTEGER,
    balance         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE terms_acceptances (
    user_id       TEXT NOT NULL REFERENCES users(id),
    terms_version TEXT NOT NULL,
    accepted_at   INTEGER NOT NULL
);
CREATE TABLE calls (
    call_id         TEXT PRIMARY KEY,
    caller          TEXT NOT NULL,
    callee          TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    answered_at_ms  INTEGER,
    ended_at_ms     INTEGER,
    disposition     TEXT,
    end_reason      TEXT
);
CREATE INDEX calls_caller ON calls(caller);
CREATE INDEX calls_callee ON calls(callee);
"#,
    r#"
ALTER TABLE users ADD COLUMN account_type TEXT NOT NULL DEFAULT 'prepaid' CHECK (account_type IN ('prepaid', 'postpaid'));
ALTER TABLE users ADD COLUMN credit_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN payer TEXT;
ALTER TABLE calls ADD COLUMN tariff TEXT;
ALTER TABLE calls ADD COLUMN debited INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN cost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN last_debit_at_ms INTEGER;
CREATE INDEX calls_payer ON calls(payer, requested_at_ms);
CREATE TABLE debits (
    call_id       TEXT NOT NULL REFERENCES calls(call_id),
    seq           INTEGER NOT NULL,
    amount        INTEGER NOT NULL,
    covered_to_ms INTEGER NOT NULL,
    at_ms         INTEGER NOT NULL,
    PRIMARY KEY (call_id, seq)
);
CREATE TABLE credits (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL REFERENCES users(id),
    amount  INTEGER NOT NULL CHECK (amount > 0),
    source  TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE TABLE vouchers (
    hash        BLOB PRIMARY KEY,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    created_at  INTEGER NOT NULL,
    redeemed_by TEXT REFERENCES users(id),
    redeemed_at INTEGER
);
CREATE TABLE receipts (
    call_id   TEXT NOT NULL REFERENCES calls(call_id),
    kind      TEXT NOT NULL CHECK (kind IN ('answer', 'end')),
    party     TEXT NOT NULL,
    statement TEXT NOT NULL,
    signature BLOB NOT NULL,
    cert_der  BLOB NOT NULL,
    at        INTEGER NOT NULL,
    PRIMARY KEY (call_id, kind, party)
);
"#,
];

/// What a debit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebitOutcome {
    /// Paid up to `covered_to_ms`; `available` is what remains to spend (balance plus any
    /// postpaid credit limit).
    Paid {
        /// Balance after the debit.
        balance: i64,
        /// Balance plus credit limit.
        available: i64,
        /// The call is paid up to this moment, Unix ms.
        covered_to_ms: i64,
    },
    /// The payer cannot afford the next interval: the call must end.
    Insufficient,
    /// The call is already closed.
    Closed,
}

/// A ledger check of one account: its balance against credits minus charges.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountLedger {
    /// The user.
    pub user: String,
    /// `prepaid` or `postpaid`.
    pub account_type: String,
    /// Balance, minor units.
    pub balance: i64,
    /// How far a postpaid balance may go below zero.
    pub credit_limit: i64,
    /// Sum of credits.
    pub credits: i64,
    /// Sum of debits (charges, net of refunds).
    pub debits: i64,
    /// Sum of the costs of the user's closed calls.
    pub closed_call_costs: i64,
    /// Whether balance = credits − debits.
    pub consistent: bool,
}

/// Why a billing request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingRefusal {
    /// Stable code.
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

fn refusal(code: &'static str, message: impl Into<String>) -> BillingRefusal {
    BillingRefusal {
        code,
        message: message.into(),
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// It was answered (and then ended).
    Answered,
    /// The caller gave up while it rang.
    Cancelled,
    /// The callee declined.
    Declined,
    /// The callee was busy.
    Busy,
    /// Nobody answered in time.
    NoAnswer,
    /// A party vanished or the server stopped before it was answered.
    Failed,
}

impl Disposition {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Cancelled => "cancelled",
            Disposition::Declined => "declined",
            Disposition::Busy => "busy",
            Disposition::NoAnswer => "no_answer",
            Disposition::Failed => "failed",
        }
    }
}

/// One voucher as `vc-server voucher list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VoucherListing {
    /// The first 12 hex digits of the code's hash.
    pub id: String,
    /// Minor units.
    pub amount: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Who redeemed it.
    pub redeemed_by: Option<String>,
    /// When, Unix seconds.
    pub redeemed_at: Option<i64>,
}

/// A registered user's record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserRecord {
    /// The id.
    pub id: String,
    /// Serial of the certificate last seen.
    pub cert_serial: String,
    /// The terms version accepted last.
    pub terms_version: String,
    /// When the user (last) registered, Unix seconds.
    pub registered_at: i64,
    /// When the user unregistered, if they did.
    pub unregistered_at: Option<i64>,
    /// Balance in minor currency units.
    pub balance: i64,
    /// `prepaid` or `postpaid`.
    pub account_type: String,
    /// How far a postpaid balance may go below zero.
    pub credit_limit: i64,
}

impl UserRecord {
    /// Balance plus the postpaid credit limit: what may still be spent.
    pub fn available(&self) -> i64 {
        if self.account_type == "postpaid" {
            self.balance.saturating_add(self.credit_limit)
        } else {
            self.balance
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, BillingRefusal>>;

enum Write {
    Register {
        user: String,
        serial: String,
        der: Vec<u8>,
        terms: String,
        now: i64,
        account_type: String,
        credit_limit: i64,
        done: Reply<i64>,
    },
    Unregister {
        user: String,
        now: i64,
        done: Reply<()>,
    },
    SeenCertificate {
        user: String,
        serial: String,
        der: Vec<u8>,
    },
    CallRequested {
        call_id: String,
        caller: String,
        callee: String,
        at_ms: i64,
    },
    CallAnswered {
        call_id: String,
        at_ms: i64,
        tariff: String,
    },
    Debit {
        call_id: String,
        now_ms: i64,
        interval_secs: i64,
        done: Reply<DebitOutcome>,
    },
    CallEnded {
        call_id: String,
        at_ms: i64,
        disposition: Disposition,
        reason: String,
    },
    Credit {
        user: String,
        amount: i64,
        source: String,
        done: Reply<i64>,
    },
    SetAccount {
        user: String,
        account_type: String,
        credit_limit: i64,
        done: Reply<()>,
    },
    CreateVoucher {
        hash: Vec<u8>,
        amount: i64,
        done: Reply<()>,
    },
    RedeemVoucher {
        user: String,
        hash: Vec<u8>,
        done: Reply<i64>,
    },
    Receipt {
        call_id: String,
        kind: ReceiptKind,
        party: String,
        statement: String,
        signature: Vec<u8>,
        cert_der: Vec<u8>,
        done: Reply<()>,
    },
    Flush(oneshot::Sender<()>),
}

/// The database: a writer thread and a read connection.
pub struct Store {
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Mutex<Connection>,
}

/// Opens the database at `path`; only `create` makes a missing one.
fn open_connection(path: &Path, create: bool) -> Result<Connection, String> {
    let mut flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_URI
        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= rusqlite::OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        if !create && !path.exists() {
            format!(
                "{} does not exist: not a server data directory (create one with `vc-server init`)",
                path.display()
            )
        } else {
            format!("opening {}: {e}", path.display())
        }
    })?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Committed money survives power loss: every commit reaches the disk before it returns.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(())
    };
    setup().map_err(|e| format!("configuring {}: {e}", path.display()))?;
    Ok(conn)
}

/// Largest amount of one credit or voucher.
pub const MAX_CREDIT: i64 = vcsdk::billing::MAX_AMOUNT;

/// Checks a credit amount: 1 to [`MAX_CREDIT`].
pub fn check_amount(amount: i64) -> Result<(), BillingRefusal> {
    if (1..=MAX_CREDIT).contains(&amount) {
        Ok(())
    } else {
        Err(refusal(
            "bad_amount",
            format!("amount {amount} must be between 1 and {MAX_CREDIT} minor units"),
        ))
    }
}

/// SHA-256 of a voucher code: what the database keeps.
pub fn voucher_hash(code: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code.trim().as_bytes())
        .as_ref()
        .to_vec()
}

impl Store {
    /// Opens (creating and migrating) `DIR/server.db` and starts the writer thread. For tools that
    /// run beside a serving server; the server itself uses [`Store::open_recovering`].
    pub fn open(dir: &Path) -> Result<Self, String> {
        Self::open_with(dir, false)
    }

    /// Creates the database in `dir` (as `vc-server init` does) and opens it; an existing one is
    /// opened as it is.
    pub fn create(dir: &Path) -> Result<Self, String> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            open_connection(&path, true)?;
        }
        Self::open_with(dir, false)
    }

    /// Opens the database for serving: first closes the calls a previous run left open, each
    /// charged exactly up to its last durable debit.
    pub fn open_recovering(dir: &Path) -> Result<Self, String> {
        Self::open_with(dir, true)
    }

    fn open_with(dir: &Path, recover: bool) -> Result<Self, String> {
        let path = dir.join(DB_FILE);
        let mut writer_conn = open_connection(&path, false)?;
        migrate(&mut writer_conn).map_err(|e| format!("migrating {}: {e}", path.display()))?;
        if recover {
            let recovered = recover_open_calls(&mut writer_conn)
                .map_err(|e| format!("closing open calls: {e}"))?;
            if recovered > 0 {
                tracing::warn!(
                    recovered,
                    "closed calls left open by a previous run, charged up to their last debit"
                );
            }
        }
        let reader = open_connection(&path, false)?;
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("vc-server-db".into())
            .spawn(move || write_loop(writer_conn, rx))
            .map_err(|e| format!("starting the database thread: {e}"))?;
        Ok(Store {
            writes: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(reader),
        })
    }

    fn send(&self, write: Write) {
        if let Some(tx) = self
            .writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send(write);
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Write) -> Result<T, BillingRefusal> {
        let (done, wait) = oneshot::channel();
        self.send(make(done));
        wait.await
            .map_err(|_| refusal("internal", "the database is closed"))?
    }

    /// Records a registration (and the terms acceptance) durably; returns, once committed, when the
    /// user registered (an already registered user keeps the first time). A new account gets
    /// `account_type` and `credit_limit`.
    #[allow(clippy::too_many_arguments)]
    pub async fn register(
        &self,
        user: &str,
        serial: &str,
        der: &[u8],
        terms: &str,
        now: i64,
        account_type: &str,
        credit_limit: i64,
    ) -> Result<i64, BillingRefusal> {
        self.ask(|done| Write::Register {
            user: user.to_owned(),
            serial: serial.to_owned(),
            der: der.to_vec(),
            terms: terms.to_owned(),
            now,
            account_type: account_type.to_owned(),
            credit_limit,
            done,
        })
        .await
    }

    /// Records that a user unregistered; returns when committed.
    pub async fn unregister(&self, user: &str, now: i64) -> Result<(), BillingRefusal> {
        self.ask(|done| Write::Unregister {
            user: user.to_owned(),
            now,
            done,
        })
        .await
    }

    /// Remembers the certificate a registered user connected with (for getPeerCert).
    pub fn seen_certificate(&self, user: &str, serial: &str, der: &[u8]) {
        self.send(Write::SeenCertificate {
            user: user.to_owned(),
            serial: serial.to_owned(),
            der: der.to_vec(),
        });
    }

    /// Records a new call request; the caller pays.
    pub fn call_requested(&self, call_id: &str, caller: &str, callee: &str, at_ms: i64) {
        self.send(Write::CallRequested {
            call_id: call_id.to_owned(),
            caller: caller.to_owned(),
            callee: callee.to_owned(),
            at_ms,
        });
    }

    /// Records that a call was answered, with the tariff it is charged by.
    pub fn call_answered(&self, call_id: &str, at_ms: i64, tariff: &Tariff) {
        self.send(Write::CallAnswered {
            call_id: call_id.to_owned(),
            at_ms,
            tariff: serde_json::to_string(tariff).unwrap_or_default(),
        });
    }

    /// Debits the payer of a running call so that it is paid `interval_secs` ahead of `now_ms`.
    pub async fn debit(
        &self,
        call_id: &str,
        now_ms: i64,
        interval_secs: i64,
    ) -> Result<DebitOutcome, BillingRefusal> {
        self.ask(|done| Write::Debit {
            call_id: call_id.to_owned(),
            now_ms,
            interval_secs,
            done,
        })
        .await
    }

    /// Records the end of a call and settles its charge (the exact cost replaces the advance
    /// debits: the difference is debited or refunded).
    pub fn call_ended(&self, call_id: &str, at_ms: i64, disposition: Disposition, reason: &str) {
        self.send(Write::CallEnded {
            call_id: call_id.to_owned(),
            at_ms,
            disposition,
            reason: reason.to_owned(),
        });
    }

    /// Makes a user's account `prepaid` (credit limit 0) or `postpaid` with `credit_limit`.
    pub async fn set_account(
        &self,
        user: &str,
        account_type: &str,
        credit_limit: i64,
    ) -> Result<(), BillingRefusal> {
        let limit = match account_type {
            "prepaid" if credit_limit == 0 => 0,
            "prepaid" => {
                return Err(refusal(
                    "bad_amount",
                    "a prepaid account has no credit limit",
                ))
            }
            "postpaid" if (0..=MAX_CREDIT).contains(&credit_limit) => credit_limit,
            "postpaid" => {
                return Err(refusal(
                    "bad_amount",
                    format!(
                    "credit limit {credit_limit} must be between 0 and {MAX_CREDIT} minor units"
                ),
                ))
            }
            other => {
                return Err(refusal(
                    "bad_account_type",
                    format!("account type {other:?} must be prepaid or postpaid"),
                ))
            }
        };
        self.ask(|done| Write::SetAccount {
            user: user.to_owned(),
            account_type: account_type.to_owned(),
            credit_limit: limit,
            done,
        })
        .await
    }

    /// Adds credit to a registered user's account; returns the new balance.
    pub async fn credit(
        &self,
        user: &str,
        amount: i64,
        source: &str,
    ) -> Result<i64, BillingRefusal> {
        check_amount(amount)?;
        self.ask(|done| Write::Credit {
            user: user.to_owned(),
            amount,
            source: source.to_owned(),
            done,
        })
        .await
    }

    /// Creates a one-time voucher worth `amount`; returns its code (only its hash is stored).
    pub async fn create_voucher(&self, amount: i64) -> Result<String, BillingRefusal> {
        check_amount(amount)?;
        let mut secret = [0u8; 16];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| refusal("internal", "the random generator failed"))?;
        let code = format!("vcv1.{}", vcsdk::util::hex(&secret));
        let hash = voucher_hash(&code);
        self.ask(|done| Write::CreateVoucher { hash, amount, done })
            .await?;
        Ok(code)
    }

    /// Redeems a voucher for `user`; returns the new balance.
    pub async fn redeem_voucher(&self, user: &str, code: &str) -> Result<i64, BillingRefusal> {
        let hash = voucher_hash(code);
        self.ask(|done| Write::RedeemVoucher {
            user: user.to_owned(),
            hash,
            done,
        })
        .await
    }

    /// Stores a verified receipt signature.
    #[allow(clippy::too_many_arguments)]
    pub async fn store_receipt(
        &self,
        call_id: &str,
        kind: ReceiptKind,
        party: &str,
        statement: &str,
        signature: &[u8],
        cert_der: &[u8],
    ) -> Result<(), BillingRefusal> {
        self.ask(|done| Write::Receipt {
            call_id: call_id.to_owned(),
            kind,
            party: party.to_owned(),
            statement: statement.to_owned(),
            signature: signature.to_vec(),
            cert_der: cert_der.to_vec(),
            done,
        })
        .await
    }

    /// Waits until every write made so far is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        self.send(Write::Flush(done));
        let _ = wait.await;
    }

    /// Stops the writer thread after it has committed everything.
    pub fn close(&self) {
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, String> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| format!("database: {e}"))
    }

    /// The user's record, if they ever registered.
    pub fn user(&self, id: &str) -> Result<Option<UserRecord>, String> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id],
                user_row,
            )
            .optional()
        })
    }

    /// Whether the user is registered now.
    pub fn is_registered(&self, id: &str) -> Result<bool, String> {
        Ok(self.user(id)?.is_some_and(|u| u.unregistered_at.is_none()))
    }

    /// The certificate (DER) a registered user last connected with.
    pub fn certificate(&self, id: &str) -> Result<Option<Vec<u8>>, String> {
        self.read(|c| {
            c.query_row(
                "SELECT cert_der FROM users WHERE id = ?1 AND unregistered_at IS NULL",
                [id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Every user who ever registered.
    pub fn users(&self) -> Result<Vec<UserRecord>, String> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))?;
            let rows = stmt.query_map([], user_row)?;
            rows.collect()
        })
    }

    /// Terms acceptances of a user: (version, Unix seconds), oldest first.
    pub fn terms_acceptances(&self, id: &str) -> Result<Vec<(String, i64)>, String> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT terms_version, accepted_at FROM terms_acceptances WHERE user_id = ?1 ORDER BY rowid",
            )?;
            let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Call records, newest first: of `user` (as caller or callee) or of everyone, at most `limit`
    /// after the cursor `before` (`"<requested_at_ms>/<call_id>"`), with receipts if asked.
    pub fn call_records(
        &self,
        user: Option<&str>,
        before: Option<&str>,
        limit: usize,
        with_receipts: bool,
    ) -> Result<Vec<CallRecord>, String> {
        let (before_ms, before_id) = match before.and_then(|b| b.split_once('/')) {
            Some((ms, id)) => (
                ms.parse::<i64>().map_err(|_| "bad cursor".to_string())?,
                id.to_owned(),
            ),
            None => (i64::MAX, String::new()),
        };
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {CALL_COLUMNS} FROM calls
                 WHERE (?1 IS NULL OR caller = ?1 OR callee = ?1)
                   AND (requested_at_ms < ?2 OR (requested_at_ms = ?2 AND call_id < ?3))
                 ORDER BY requested_at_ms DESC, call_id DESC LIMIT ?4"
            ))?;
            let rows =
                stmt.query_map(params![user, before_ms, before_id, limit as i64], call_row)?;
            let mut records = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            for record in &mut records {
                load_receipts(c, record, with_receipts)?;
            }
            Ok(records)
        })
    }

    /// Visits every call record (oldest first, optionally of one user) without holding them all.
    pub fn for_each_record(
        &self,
        user: Option<&str>,
        mut visit: impl FnMut(&CallRecord),
    ) -> Result<usize, String> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE (?1 IS NULL OR caller = ?1 OR callee = ?1)
                 ORDER BY requested_at_ms, call_id"
            ))?;
            let mut rows = stmt.query(params![user])?;
            let mut count = 0;
            while let Some(row) = rows.next()? {
                let mut record = call_row(row)?;
                load_receipts(c, &mut record, false)?;
                visit(&record);
                count += 1;
            }
            Ok(count)
        })
    }

    /// Every voucher, newest first: its id (the first 12 hex digits of its hash; the code itself
    /// is never stored), amount, and who redeemed it when.
    pub fn vouchers(&self) -> Result<Vec<VoucherListing>, String> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT hash, amount, created_at, redeemed_by, redeemed_at FROM vouchers
                 ORDER BY created_at DESC, hash",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(VoucherListing {
                    id: vcsdk::util::hex(&r.get::<_, Vec<u8>>(0)?)[..12].to_owned(),
                    amount: r.get(1)?,
                    created_at: r.get(2)?,
                    redeemed_by: r.get(3)?,
                    redeemed_at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Every account's balance against its credits and charges.
    pub fn ledgers(&self) -> Result<Vec<AccountLedger>, String> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT u.id, u.account_type, u.balance, u.credit_limit,
                        (SELECT COALESCE(SUM(amount), 0) FROM credits WHERE user_id = u.id),
                        (SELECT COALESCE(SUM(d.amount), 0) FROM debits d JOIN calls k ON k.call_id = d.call_id WHERE k.payer = u.id),
                        (SELECT COALESCE(SUM(cost), 0) FROM calls WHERE payer = u.id AND ended_at_ms IS NOT NULL)
                 FROM users u ORDER BY u.id",
            )?;
            let rows = stmt.query_map([], |r| {
                let balance: i64 = r.get(2)?;
                let credits: i64 = r.get(4)?;
                let debits: i64 = r.get(5)?;
                Ok(AccountLedger {
                    user: r.get(0)?,
                    account_type: r.get(1)?,
                    balance,
                    credit_limit: r.get(3)?,
                    credits,
                    debits,
                    closed_call_costs: r.get(6)?,
                    consistent: balance == credits - debits,
                })
            })?;
            rows.collect()
        })
    }

    /// The parties and times of a call.
    pub fn call_times(&self, call_id: &str) -> Result<Option<CallTimes>, String> {
        self.read(|c| {
            c.query_row(
                "SELECT caller, callee, answered_at_ms, ended_at_ms FROM calls WHERE call_id = ?1",
                [call_id],
                |r| {
                    Ok(CallTimes {
                        caller: r.get(0)?,
                        callee: r.get(1)?,
                        answered_at_ms: r.get(2)?,
                        ended_at_ms: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }
}

/// Who was in a call and when it was answered and ended (Unix ms).
#[derive(Debug, Clone)]
pub struct CallTimes {
    /// Who called.
    pub caller: String,
    /// Who was called.
    pub callee: String,
    /// When it was answered.
    pub answered_at_ms: Option<i64>,
    /// When it ended.
    pub ended_at_ms: Option<i64>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

const USER_COLUMNS: &str =
    "id, cert_serial, terms_version, registered_at, unregistered_at, balance, account_type, credit_limit";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        cert_serial: r.get(1)?,
        terms_version: r.get(2)?,
        registered_at: r.get(3)?,
        unregistered_at: r.get(4)?,
        balance: r.get(5)?,
        account_type: r.get(6)?,
        credit_limit: r.get(7)?,
    })
}

const CALL_COLUMNS: &str = "call_id, caller, callee, COALESCE(payer, caller), requested_at_ms, answered_at_ms, ended_at_ms, disposition, end_reason, cost, tariff, last_debit_at_ms";

fn call_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRecord> {
    let requested: i64 = r.get(4)?;
    let answered: Option<i64> = r.get(5)?;
    let ended: Option<i64> = r.get(6)?;
    let tariff: Option<Tariff> = r
        .get::<_, Option<String>>(10)?
        .and_then(|t| serde_json::from_str(&t).ok());
    Ok(CallRecord {
        call_id: r.get(0)?,
        caller: r.get(1)?,
        callee: r.get(2)?,
        payer: r.get(3)?,
        requested_at_ms: requested,
        answered_at_ms: answered,
        ended_at_ms: ended,
        duration_ms: ended.map(|e| e - requested),
        billable_secs: match (answered, ended) {
            (Some(a), Some(e)) => Tariff::billable_seconds(e - a),
            _ => 0,
        },
        disposition: r.get(7)?,
        end_reason: r.get(8)?,
        cost: r.get(9)?,
        currency: tariff
            .as_ref()
            .map(|t| t.currency.clone())
            .unwrap_or_default(),
        tariff,
        last_debit_at_ms: r.get(11)?,
        receipts: Vec::new(),
        end_receipt_missing: false,
    })
}

/// Fills in the receipts (when asked) and whether the payer's end receipt is missing.
fn load_receipts(
    c: &Connection,
    record: &mut CallRecord,
    with_receipts: bool,
) -> rusqlite::Result<()> {
    if record.answered_at_ms.is_some() && record.ended_at_ms.is_some() {
        let payer_end: i64 = c.query_row(
            "SELECT COUNT(*) FROM receipts WHERE call_id = ?1 AND kind = 'end' AND party = ?2",
            params![record.call_id, record.payer],
            |r| r.get(0),
        )?;
        record.end_receipt_missing = payer_end == 0;
    }
    if with_receipts {
        let mut stmt = c.prepare_cached(
            "SELECT kind, party, statement, signature, cert_der FROM receipts WHERE call_id = ?1 ORDER BY kind, party",
        )?;
        let rows = stmt.query_map([&record.call_id], |r| {
            let kind: String = r.get(0)?;
            let signature: Vec<u8> = r.get(3)?;
            let cert: Vec<u8> = r.get(4)?;
            Ok(Receipt {
                kind: if kind == "end" {
                    ReceiptKind::End
                } else {
                    ReceiptKind::Answer
                },
                party: r.get(1)?,
                statement: r.get(2)?,
                signature_hex: vcsdk::util::hex(&signature),
                certificate_pem: vcsdk::pki::pem::encode("CERTIFICATE", &cert),
            })
        })?;
        record.receipts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    }
    Ok(())
}

/// Brings the schema up to this program's version; refuses (touching nothing) a database whose
/// schema is newer than this program knows.
fn migrate(conn: &mut Connection) -> Result<(), String> {
    vcsqlite::migrate(conn, MIGRATIONS, "vc-server")
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Closes every call a previous run left open: an answered call ends at its last durable debit
/// (or its answer) and is charged exactly up to then; an unanswered one ends as failed.
fn recover_open_calls(conn: &mut Connection) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let open: Vec<(String, i64, Option<i64>, Option<i64>)> = {
        let mut stmt = tx.prepare(
            "SELECT call_id, requested_at_ms, answered_at_ms, last_debit_at_ms FROM calls WHERE ended_at_ms IS NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    for (call_id, requested, answered, last_debit) in &open {
        match answered {
            Some(a) => settle(
                &tx,
                call_id,
                last_debit.unwrap_or(*a),
                Disposition::Answered,
                "server stopped; billed up to the last debit",
            )?,
            None => settle(
                &tx,
                call_id,
                *requested,
                Disposition::Failed,
                "server stopped before the call was answered",
            )?,
        }
    }
    tx.commit()?;
    Ok(open.len())
}

/// The billing state of one call.
struct CallBilling {
    payer: String,
    answered: Option<i64>,
    tariff: Option<String>,
    debited: i64,
    ended: Option<i64>,
}

fn call_billing(tx: &Transaction<'_>, call_id: &str) -> rusqlite::Result<Option<CallBilling>> {
    tx.query_row(
        "SELECT COALESCE(payer, caller), answered_at_ms, tariff, debited, ended_at_ms FROM calls WHERE call_id = ?1",
        [call_id],
        |r| {
            Ok(CallBilling {
                payer: r.get(0)?,
                answered: r.get(1)?,
                tariff: r.get(2)?,
                debited: r.get(3)?,
                ended: r.get(4)?,
            })
        },
    )
    .optional()
}

/// Ends a call at `at_ms` and settles its charge: cost by its tariff, the difference to what was
/// debited debited or refunded, in the caller's transaction.
fn settle(
    tx: &Transaction<'_>,
    call_id: &str,
    at_ms: i64,
    disposition: Disposition,
    reason: &str,
) -> rusqlite::Result<()> {
    let Some(CallBilling {
        payer,
        answered,
        tariff,
        debited,
        ended,
    }) = call_billing(tx, call_id)?
    else {
        return Ok(());
    };
    if ended.is_some() {
        return Ok(());
    }
    let cost = match (
        answered,
        tariff.and_then(|t| serde_json::from_str::<Tariff>(&t).ok()),
    ) {
        (Some(a), Some(t)) => t.call_cost(Some(a), at_ms.max(a)),
        _ => 0,
    };
    let delta = cost - debited;
    if delta != 0 {
        add_debit(tx, call_id, &payer, delta, at_ms, at_ms)?;
    }
    tx.execute(
        "UPDATE calls SET ended_at_ms = ?2, disposition = ?3, end_reason = ?4, cost = ?5, debited = ?5 WHERE call_id = ?1",
        params![call_id, at_ms, disposition.as_str(), reason, cost],
    )?;
    Ok(())
}

/// Appends a debit (negative: a refund) to a call and applies it to the payer's balance.
fn add_debit(
    tx: &Transaction<'_>,
    call_id: &str,
    payer: &str,
    amount: i64,
    covered_to_ms: i64,
    at_ms: i64,
) -> rusqlite::Result<()> {
    let seq: i64 = tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM debits WHERE call_id = ?1",
        [call_id],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO debits (call_id, seq, amount, covered_to_ms, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![call_id, seq, amount, covered_to_ms, at_ms],
    )?;
    tx.execute(
        "UPDATE users SET balance = balance - ?2 WHERE id = ?1",
        params![payer, amount],
    )?;
    Ok(())
}

fn debit(
    tx: &Transaction<'_>,
    call_id: &str,
    now_ms: i64,
    interval_secs: i64,
) -> rusqlite::Result<DebitOutcome> {
    let row = call_billing(tx, call_id)?;
    let Some(CallBilling {
        payer,
        answered: Some(answered),
        tariff: Some(tariff),
        debited,
        ended: None,
    }) = row
    else {
        return Ok(DebitOutcome::Closed);
    };
    let Ok(tariff) = serde_json::from_str::<Tariff>(&tariff) else {
        return Ok(DebitOutcome::Closed);
    };
    let user = tx.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        [&payer],
        user_row,
    )?;
    let elapsed = Tariff::billable_seconds(now_ms - answered);
    let covered_secs = elapsed + interval_secs;
    let target = tariff.cost(covered_secs);
    let delta = target - debited;
    if delta > 0 && user.available() < delta {
        return Ok(DebitOutcome::Insufficient);
    }
    let covered_to_ms = answered + covered_secs * 1000;
    add_debit(tx, call_id, &payer, delta.max(0), covered_to_ms, now_ms)?;
    tx.execute(
        "UPDATE calls SET debited = debited + ?2, last_debit_at_ms = ?3 WHERE call_id = ?1",
        params![call_id, delta.max(0), now_ms],
    )?;
    let balance = user.balance - delta.max(0);
    let available = user.available() - delta.max(0);
    Ok(DebitOutcome::Paid {
        balance,
        available,
        covered_to_ms,
    })
}

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Write>) {
    while let Ok(write) = rx.recv() {
        if let Err(e) = apply(&mut conn, write) {
            tracing::error!(error = %e, "database write failed");
        }
    }
}

fn db_refusal(e: rusqlite::Error) -> BillingRefusal {
    refusal("internal", format!("database: {e}"))
}

fn apply(conn: &mut Connection, write: Write) -> rusqlite::Result<()> {
    match write {
        Write::Register {
            user,
            serial,
            der,
            terms,
            now,
            account_type,
            credit_limit,
            done,
        } => {
            let result = (|| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                // An acceptance is recorded when it is news: a new user, other terms, or a
                // return after unregistering — registering again changes nothing else.
                let previous: Option<(String, Option<i64>)> = tx
                    .query_row(
                        "SELECT terms_version, unregistered_at FROM users WHERE id = ?1",
                        params![user],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let accepted_now = previous
                    .as_ref()
                    .is_none_or(|(t, gone)| *t != terms || gone.is_some());
                let registered_at: i64 = tx.query_row(
                    "INSERT INTO users (id, cert_serial, cert_der, terms_version, registered_at, account_type, credit_limit)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(id) DO UPDATE SET cert_serial = ?2, cert_der = ?3, terms_version = ?4,
                        registered_at = CASE WHEN unregistered_at IS NULL THEN registered_at ELSE ?5 END,
                        unregistered_at = NULL
                     RETURNING registered_at",
                    params![user, serial, der, terms, now, account_type, credit_limit],
                    |r| r.get(0),
                )?;
                if accepted_now {
                    tx.execute(
                        "INSERT INTO terms_acceptances (user_id, terms_version, accepted_at) VALUES (?1, ?2, ?3)",
                        params![user, terms, now],
                    )?;
                }
                tx.commit()?;
                Ok(registered_at)
            })();
            let _ = done.send(result.map_err(db_refusal));
        }
        Write::Unregister { user, now, done } => {
            let result = conn
                .execute(
                    "UPDATE users SET unregistered_at = ?2 WHERE id = ?1 AND unregistered_at IS NULL",
                    params![user, now],
                )
                .map(|_| ())
                .map_err(db_refusal);
            let _ = done.send(result);
        }
        Write::SeenCertificate { user, serial, der } => {
            conn.execute(
                "UPDATE users SET cert_serial = ?2, cert_der = ?3 WHERE id = ?1",
                params![user, serial, der],
            )?;
        }
        Write::CallRequested {
            call_id,
            caller,
            callee,
            at_ms,
        } => {
            conn.execute(
                "INSERT INTO calls (call_id, caller, callee, payer, requested_at_ms) VALUES (?1, ?2, ?3, ?2, ?4)",
                params![call_id, caller, callee, at_ms],
            )?;
        }
        Write::CallAnswered {
            call_id,
            at_ms,
            tariff,
        } => {
            conn.execute(
                "UPDATE calls SET answered_at_ms = ?2, tariff = ?3 WHERE call_id = ?1",
                params![call_id, at_ms, tariff],
            )?;
        }
        Write::Debit {
            call_id,
            now_ms,
            interval_secs,
            done,
        } => {
            let result = (|| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let outcome = debit(&tx, &call_id, now_ms, interval_secs)?;
                tx.commit()?;
                Ok(outcome)
            })();
            let _ = done.send(result.map_err(db_refusal));
        }
        Write::CallEnded {
            call_id,
            at_ms,
            disposition,
            reason,
        } => {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            settle(&tx, &call_id, at_ms, disposition, &reason)?;
            tx.commit()?;
        }
        Write::Credit {
            user,
            amount,
            source,
            done,
        } => {
            let result = (|| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(db_refusal)?;
                let balance: Option<i64> = tx
                    .query_row("SELECT balance FROM users WHERE id = ?1", [&user], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(db_refusal)?;
                let balance = balance
                    .ok_or_else(|| refusal("unknown_user", format!("{user} has no account")))?;
                let new_balance = balance
                    .checked_add(amount)
                    .filter(|b| *b <= MAX_CREDIT * 1000)
                    .ok_or_else(|| refusal("bad_amount", "the balance would overflow"))?;
                tx.execute(
                    "INSERT INTO credits (user_id, amount, source, at) VALUES (?1, ?2, ?3, ?4)",
                    params![user, amount, source, vcsdk::util::unix_now()],
                )
                .map_err(db_refusal)?;
                tx.execute(
                    "UPDATE users SET balance = ?2 WHERE id = ?1",
                    params![user, new_balance],
                )
                .map_err(db_refusal)?;
                tx.commit().map_err(db_refusal)?;
                Ok(new_balance)
            })();
            let _ = done.send(result);
        }
        Write::SetAccount {
            user,
            account_type,
            credit_limit,
            done,
        } => {
            let result = conn
                .execute(
                    "UPDATE users SET account_type = ?2, credit_limit = ?3 WHERE id = ?1",
                    params![user, account_type, credit_limit],
                )
                .map_err(db_refusal)
                .and_then(|n| {
                    if n == 1 {
                        Ok(())
                    } else {
                        Err(refusal("unknown_user", format!("{user} has no account")))
                    }
                });
            let _ = done.send(result);
        }
        Write::CreateVoucher { hash, amount, done } => {
            let result = conn
                .execute(
                    "INSERT INTO vouchers (hash, amount, created_at) VALUES (?1, ?2, ?3)",
                    params![hash, amount, vcsdk::util::unix_now()],
                )
                .map(|_| ())
                .map_err(db_refusal);
            let _ = done.send(result);
        }
        Write::RedeemVoucher { user, hash, done } => {
            let result = (|| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(db_refusal)?;
                let voucher: Option<(i64, Option<String>)> = tx
                    .query_row(
                        "SELECT amount, redeemed_by FROM vouchers WHERE hash = ?1",
                        [&hash],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(db_refusal)?;
                let (amount, redeemed_by) =
                    voucher.ok_or_else(|| refusal("voucher_unknown", "no such voucher"))?;
                if redeemed_by.is_some() {
                    return Err(refusal(
                        "voucher_redeemed",
                        "this voucher was already redeemed",
                    ));
                }
                let balance: i64 = tx
                    .query_row("SELECT balance FROM users WHERE id = ?1", [&user], |r| {
                        r.get(0)
                    })
                    .map_err(db_refusal)?;
                let new_balance = balance
                    .checked_add(amount)
                    .filter(|b| *b <= MAX_CREDIT * 1000)
                    .ok_or_else(|| refusal("bad_amount", "the balance would overflow"))?;
                tx.execute(
                    "UPDATE vouchers SET redeemed_by = ?2, redeemed_at = ?3 WHERE hash = ?1",
                    params![hash, user, vcsdk::util::unix_now()],
                )
                .map_err(db_refusal)?;
                tx.execute(
                    "INSERT INTO credits (user_id, amount, source, at) VALUES (?1, ?2, 'voucher', ?3)",
                    params![user, amount, vcsdk::util::unix_now()],
                )
                .map_err(db_refusal)?;
                tx.execute(
                    "UPDATE users SET balance = ?2 WHERE id = ?1",
                    params![user, new_balance],
                )
                .map_err(db_refusal)?;
                tx.commit().map_err(db_refusal)?;
                Ok(new_balance)
            })();
            let _ = done.send(result);
        }
        Write::Receipt {
            call_id,
            kind,
            party,
            statement,
            signature,
            cert_der,
            done,
        } => {
            let result = conn
                .execute(
                    "INSERT INTO receipts (call_id, kind, party, statement, signature, cert_der, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![call_id, kind.as_str(), party, statement, signature, cert_der, vcsdk::util::unix_now()],
                )
                .map(|_| ())
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                        refusal("bad_receipt", "this receipt was already signed")
                    }
                    other => db_refusal(other),
                });
            let _ = done.send(result);
        }
        Write::Flush(done) => {
            let _ = done.send(());
        }
    }
    Ok(())
}

impl Store {
    /// Numbers of call records and of debits (for load reports).
    pub fn counts(&self) -> Result<(i64, i64), String> {
        self.read(|c| {
            Ok((
                c.query_row("SELECT COUNT(*) FROM calls", [], |r| r.get(0))?,
                c.query_row("SELECT COUNT(*) FROM debits", [], |r| r.get(0))?,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_commits_to_the_disk_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let reader = store.reader.lock().unwrap();
        let synchronous: i64 = reader
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "synchronous=FULL");
        let conn = open_connection(&dir.path().join(DB_FILE), false).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    fn per_second_tariff() -> Tariff {
        Tariff {
            currency: "EUR".into(),
            connect_fee: 0,
            rate_per_minute: 600,
            first_increment_secs: 1,
            next_increment_secs: 1,
            rounding: vcsdk::billing::Rounding::Up,
        }
    }

    #[tokio::test]
    async fn concurrent_calls_of_one_prepaid_payer_never_overdraw() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        store
            .register("p", "s", b"der", "1", 0, "prepaid", 0)
            .await
            .unwrap();
        for callee in ["a", "b"] {
            store
                .register(callee, "s", b"der", "1", 0, "prepaid", 0)
                .await
                .unwrap();
        }
        store.credit("p", 95, "test").await.unwrap();
        let tariff = per_second_tariff();
        let start = 1_000_000;
        for (call, callee) in [("c1", "a"), ("c2", "b")] {
            store.call_requested(call, "p", callee, start);
            store.call_answered(call, start, &tariff);
        }
        let mut open = vec!["c1", "c2"];
        let mut t = start;
        let mut last_paid = std::collections::HashMap::new();
        while !open.is_empty() {
            let mut still = Vec::new();
            for call in open {
                match store.debit(call, t, 1).await.unwrap() {
                    DebitOutcome::Paid {
                        balance,
                        covered_to_ms,
                        ..
                    } => {
                        assert!(balance >= 0, "prepaid balance went below zero: {balance}");
                        last_paid.insert(call, covered_to_ms);
                        still.push(call);
                    }
                    DebitOutcome::Insufficient => {
                        // The call ends inside the time already paid for.
                        let end = last_paid.get(call).copied().unwrap_or(start).min(t);
                        store.call_ended(call, end, Disposition::Answered, "insufficient credit");
                    }
                    DebitOutcome::Closed => panic!("closed"),
                }
            }
            open = still;
            t += 1000;
            assert!(t < start + 60_000, "never ran out");
        }
        store.flush().await;
        let ledger = store
            .ledgers()
            .unwrap()
            .into_iter()
            .find(|l| l.user == "p")
            .unwrap();
        assert!(ledger.balance >= 0, "{ledger:?}");
        assert!(ledger.consistent, "{ledger:?}");
        assert_eq!(ledger.closed_call_costs, ledger.debits, "{ledger:?}");
        assert_eq!(ledger.balance, 95 - ledger.closed_call_costs);
    }

    #[tokio::test]
    async fn settlement_charges_the_exact_cost_and_refunds_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        store
            .register("p", "s", b"der", "1", 0, "postpaid", 50)
            .await
            .unwrap();
        store
            .register("q", "s", b"der", "1", 0, "prepaid", 0)
            .await
            .unwrap();
        let tariff = per_second_tariff();
        store.call_requested("c", "p", "q", 0);
        store.call_answered("c", 1_000, &tariff);
        // Postpaid: may go 50 below zero. Paid 1 s ahead: 0..2 s covered at t = 1.001 s.
        assert!(matches!(
            store.debit("c", 1_000, 1).await.unwrap(),
            DebitOutcome::Paid { balance: -10, .. }
        ));
        assert!(matches!(
            store.debit("c", 2_001, 1).await.unwrap(),
            DebitOutcome::Paid { balance: -30, .. }
        ));
        store.call_ended("c", 2_500, Disposition::Answered, "hung up");
        store.flush().await;
        let user = store.user("p").unwrap().unwrap();
        assert_eq!(user.balance, -20, "2 started seconds cost 20; 10 refunded");
        assert!(matches!(
            store.debit("c", 3_000, 1).await.unwrap(),
            DebitOutcome::Closed
        ));
        assert!(store.credit("p", 0, "x").await.is_err());
        assert!(store.credit("p", -1, "x").await.is_err());
        assert_eq!(
            store.credit("nobody", 5, "x").await.unwrap_err().code,
            "unknown_user"
        );
    }
}
