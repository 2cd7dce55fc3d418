//! The server's durable state in SQLite (WAL, foreign keys on): registered users and which terms
//! version each accepted when, accounts, and call records. Writes go through one writer thread in
//! the order they were made; reads use their own connection.

use std::path::Path;
use std::sync::{mpsc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

/// File name of the database in the data directory.
pub const DB_FILE: &str = "server.db";

const MIGRATIONS: &[&str] = &[r#"
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
"#];

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
}

/// A call record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    /// The call.
    pub call_id: String,
    /// Who called.
    pub caller: String,
    /// Who was called.
    pub callee: String,
    /// Request time, Unix milliseconds.
    pub requested_at_ms: i64,
    /// Answer time.
    pub answered_at_ms: Option<i64>,
    /// End time.
    pub ended_at_ms: Option<i64>,
    /// How it ended.
    pub disposition: Option<String>,
    /// Why it ended.
    pub end_reason: Option<String>,
}

enum Write {
    Register {
        user: String,
        serial: String,
        der: Vec<u8>,
        terms: String,
        now: i64,
        done: oneshot::Sender<Result<(), String>>,
    },
    Unregister {
        user: String,
        now: i64,
        done: oneshot::Sender<Result<(), String>>,
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
    },
    CallEnded {
        call_id: String,
        at_ms: i64,
        disposition: Disposition,
        reason: String,
    },
    Flush(oneshot::Sender<()>),
}

/// The database: a writer thread and a read connection.
pub struct Store {
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Mutex<Connection>,
}

fn open_connection(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(())
    };
    setup().map_err(|e| format!("configuring {}: {e}", path.display()))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating and migrating) `DIR/server.db` and starts the writer thread.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let path = dir.join(DB_FILE);
        let mut writer_conn = open_connection(&path)?;
        migrate(&mut writer_conn).map_err(|e| format!("migrating {}: {e}", path.display()))?;
        let reader = open_connection(&path)?;
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

    /// Records a registration (and the terms acceptance) durably; returns when committed.
    pub async fn register(
        &self,
        user: &str,
        serial: &str,
        der: &[u8],
        terms: &str,
        now: i64,
    ) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Register {
            user: user.to_owned(),
            serial: serial.to_owned(),
            der: der.to_vec(),
            terms: terms.to_owned(),
            now,
            done,
        });
        wait.await
            .map_err(|_| "the database is closed".to_string())?
    }

    /// Records that a user unregistered; returns when committed.
    pub async fn unregister(&self, user: &str, now: i64) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Unregister {
            user: user.to_owned(),
            now,
            done,
        });
        wait.await
            .map_err(|_| "the database is closed".to_string())?
    }

    /// Remembers the certificate a registered user connected with (for getPeerCert).
    pub fn seen_certificate(&self, user: &str, serial: &str, der: &[u8]) {
        self.send(Write::SeenCertificate {
            user: user.to_owned(),
            serial: serial.to_owned(),
            der: der.to_vec(),
        });
    }

    /// Records a new call request.
    pub fn call_requested(&self, call_id: &str, caller: &str, callee: &str, at_ms: i64) {
        self.send(Write::CallRequested {
            call_id: call_id.to_owned(),
            caller: caller.to_owned(),
            callee: callee.to_owned(),
            at_ms,
        });
    }

    /// Records that a call was answered.
    pub fn call_answered(&self, call_id: &str, at_ms: i64) {
        self.send(Write::CallAnswered {
            call_id: call_id.to_owned(),
            at_ms,
        });
    }

    /// Records the end of a call.
    pub fn call_ended(&self, call_id: &str, at_ms: i64, disposition: Disposition, reason: &str) {
        self.send(Write::CallEnded {
            call_id: call_id.to_owned(),
            at_ms,
            disposition,
            reason: reason.to_owned(),
        });
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
                "SELECT id, cert_serial, terms_version, registered_at, unregistered_at, balance FROM users WHERE id = ?1",
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
            let mut stmt = c.prepare(
                "SELECT id, cert_serial, terms_version, registered_at, unregistered_at, balance FROM users ORDER BY id",
            )?;
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

    /// Every call record, oldest first.
    pub fn calls(&self) -> Result<Vec<CallRecord>, String> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT call_id, caller, callee, requested_at_ms, answered_at_ms, ended_at_ms, disposition, end_reason
                 FROM calls ORDER BY requested_at_ms, call_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(CallRecord {
                    call_id: r.get(0)?,
                    caller: r.get(1)?,
                    callee: r.get(2)?,
                    requested_at_ms: r.get(3)?,
                    answered_at_ms: r.get(4)?,
                    ended_at_ms: r.get(5)?,
                    disposition: r.get(6)?,
                    end_reason: r.get(7)?,
                })
            })?;
            rows.collect()
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        cert_serial: r.get(1)?,
        terms_version: r.get(2)?,
        registered_at: r.get(3)?,
        unregistered_at: r.get(4)?,
        balance: r.get(5)?,
    })
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for sql in MIGRATIONS.iter().skip(version) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    tx.commit()
}

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Write>) {
    while let Ok(write) = rx.recv() {
        if let Err(e) = apply(&mut conn, write) {
            tracing::error!(error = %e, "database write failed");
        }
    }
}

fn apply(conn: &mut Connection, write: Write) -> rusqlite::Result<()> {
    match write {
        Write::Register {
            user,
            serial,
            der,
            terms,
            now,
            done,
        } => {
            let result = (|| {
                let tx = conn.transaction()?;
                tx.execute(
                    "INSERT INTO users (id, cert_serial, cert_der, terms_version, registered_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(id) DO UPDATE SET cert_serial = ?2, cert_der = ?3, terms_version = ?4,
                        registered_at = CASE WHEN unregistered_at IS NULL THEN registered_at ELSE ?5 END,
                        unregistered_at = NULL",
                    params![user, serial, der, terms, now],
                )?;
                tx.execute(
                    "INSERT INTO terms_acceptances (user_id, terms_version, accepted_at) VALUES (?1, ?2, ?3)",
                    params![user, terms, now],
                )?;
                tx.commit()
            })();
            let _ = done.send(result.map_err(|e| format!("database: {e}")));
        }
        Write::Unregister { user, now, done } => {
            let result = conn
                .execute(
                    "UPDATE users SET unregistered_at = ?2 WHERE id = ?1 AND unregistered_at IS NULL",
                    params![user, now],
                )
                .map(|_| ())
                .map_err(|e| format!("database: {e}"));
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
                "INSERT INTO calls (call_id, caller, callee, requested_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![call_id, caller, callee, at_ms],
            )?;
        }
        Write::CallAnswered { call_id, at_ms } => {
            conn.execute(
                "UPDATE calls SET answered_at_ms = ?2 WHERE call_id = ?1",
                params![call_id, at_ms],
            )?;
        }
        Write::CallEnded {
            call_id,
            at_ms,
            disposition,
            reason,
        } => {
            conn.execute(
                "UPDATE calls SET ended_at_ms = ?2, disposition = ?3, end_reason = ?4 WHERE call_id = ?1 AND ended_at_ms IS NULL",
                params![call_id, at_ms, disposition.as_str(), reason],
            )?;
        }
        Write::Flush(done) => {
            let _ = done.send(());
        }
    }
    Ok(())
}
