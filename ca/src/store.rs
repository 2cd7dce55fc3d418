//! The CA's durable state in SQLite (WAL, synchronous=FULL, foreign keys on): issued certificates,
//! enrollment tokens (only their SHA-256 hashes), revocations, published CRLs and the audit log.
//! Functions take a connection or transaction so the caller decides what is one atomic step.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::authority::{RevokedEntry, SignedCertificate};
use crate::error::CaError;
use crate::grant::Grant;
use vcsdk::util::hex;

/// File name of the database in the data directory.
pub const DB_FILE: &str = "ca.db";

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY,
    usage             TEXT NOT NULL CHECK (usage IN ('client', 'server')),
    subject           TEXT NOT NULL,
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    issued_at         INTEGER NOT NULL,
    der               BLOB NOT NULL,
    status            TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
    revoked_at        INTEGER,
    revocation_reason TEXT,
    replaced_by       TEXT REFERENCES certificates(serial)
);
CREATE INDEX certificates_subject ON certificates(subject);
CREATE INDEX certificates_revoked ON certificates(status, not_after);
CREATE TABLE tokens (
    hash        BLOB PRIMARY KEY,
    usage       TEXT NOT NULL CHECK (usage IN ('client', 'server')),
    subject     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    used_serial TEXT REFERENCES certificates(serial)
);
CREATE TABLE crls (
    number      INTEGER PRIMARY KEY,
    this_update INTEGER NOT NULL,
    next_update INTEGER NOT NULL,
    der         BLOB NOT NULL
);
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    event   TEXT NOT NULL,
    actor   TEXT NOT NULL,
    subject TEXT,
    serial  TEXT,
    detail  TEXT
);
"#,
    // Renewal limits look certificates up by what they replaced; repeated refusals are counted on
    // one audit entry.
    r#"
CREATE INDEX certificates_replaced_by ON certificates(replaced_by);
ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit ADD COLUMN last_at INTEGER;
CREATE INDEX audit_event_at ON audit(event, at);
"#,
    // Operators revoke tokens that were handed out but must not be used.
    r#"
ALTER TABLE tokens ADD COLUMN revoked_at INTEGER;
"#,
];

/// How many CRLs are kept; older ones are deleted when a new one is stored.
pub const CRLS_KEPT: i64 = 8;

/// Repeated refusals with the same event, actor, subject, serial and detail within this many
/// seconds are counted on one audit entry instead of each adding one.
pub const REFUSAL_AGGREGATION_SECS: i64 = 3600;

/// Opens (creating if needed) the database and brings its schema up to date.
pub fn open(dir: &Path) -> Result<Connection, CaError> {
    let path = dir.join(DB_FILE);
    let mut conn = Connection::open(&path)
        .map_err(|e| CaError::internal(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), CaError> {
    vcsqlite::migrate(conn, MIGRATIONS, "vc-ca")
        .map(|_| ())
        .map_err(|e| CaError::internal(e.to_string()))
}

/// A stored token, found by hash.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// What the token authorises.
    pub grant: Grant,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
    /// When it was used, if it was.
    pub used_at: Option<i64>,
    /// When the operator revoked it, if they did.
    pub revoked_at: Option<i64>,
}

/// One token as `vc-ca token list` shows it (never the token itself: only its hash is kept).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenListing {
    /// The first 12 hex digits of the token's hash: how `token revoke --id` names it.
    pub id: String,
    /// `client` or `server`.
    pub usage: String,
    /// Client id, or server host names joined by commas.
    pub subject: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// When it was used, and for which certificate.
    pub used_at: Option<i64>,
    /// The certificate it was spent on.
    pub used_serial: Option<String>,
    /// When the operator revoked it.
    pub revoked_at: Option<i64>,
}

impl TokenListing {
    /// `usable`, `used`, `expired` or `revoked`, at `now`.
    pub fn status(&self, now: i64) -> &'static str {
        if self.used_at.is_some() {
            "used"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if now >= self.expires_at {
            "expired"
        } else {
            "usable"
        }
    }
}

/// Every token, newest first.
pub fn tokens(conn: &Connection) -> Result<Vec<TokenListing>, CaError> {
    let mut stmt = conn.prepare(
        "SELECT hash, usage, subject, created_at, expires_at, used_at, used_serial, revoked_at
         FROM tokens ORDER BY created_at DESC, hash",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(TokenListing {
            id: hex(&r.get::<_, Vec<u8>>(0)?)[..12].to_owned(),
            usage: r.get(1)?,
            subject: r.get(2)?,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            used_at: r.get(5)?,
            used_serial: r.get(6)?,
            revoked_at: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Revokes the unused, unrevoked tokens whose hash starts with `id_prefix` (hex) or that name
/// `subject`; returns how many.
pub fn revoke_tokens(
    conn: &Connection,
    id_prefix: Option<&str>,
    subject: Option<&str>,
    now: i64,
) -> Result<usize, CaError> {
    let chosen: Vec<TokenListing> = tokens(conn)?
        .into_iter()
        .filter(|t| {
            id_prefix.is_some_and(|p| t.id.starts_with(&p.to_ascii_lowercase()))
                || subject.is_some_and(|s| t.subject == s)
        })
        .filter(|t| t.used_at.is_none() && t.revoked_at.is_none())
        .collect();
    if id_prefix.is_some() && chosen.len() > 1 {
        return Err(CaError::internal(format!(
            "the id prefix matches {} unused tokens; give more of the id",
            chosen.len()
        )));
    }
    let mut revoked = 0;
    for t in chosen {
        revoked += conn.execute(
            "UPDATE tokens SET revoked_at = ?1 WHERE lower(hex(hash)) LIKE ?2 || '%' AND used_at IS NULL AND revoked_at IS NULL",
            params![now, t.id],
        )?;
    }
    Ok(revoked)
}

/// One issued certificate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertificateRecord {
    /// Serial in lowercase hex.
    pub serial: String,
    /// `client` or `server`.
    pub usage: String,
    /// Client id, or server host names joined by commas.
    pub subject: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// When it was issued, Unix seconds.
    pub issued_at: i64,
    /// `valid` or `revoked`.
    pub status: String,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// Why (RFC 5280 reason name).
    pub revocation_reason: Option<String>,
    /// The certificate that superseded it.
    pub replaced_by: Option<String>,
}

impl CertificateRecord {
    /// What it authorises on renewal.
    pub fn grant(&self) -> Result<Grant, CaError> {
        Grant::from_stored(&self.usage, &self.subject)
    }
}

/// A published CRL.
#[derive(Debug, Clone)]
pub struct CrlRecord {
    /// CRL number.
    pub number: u64,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds.
    pub next_update: i64,
    /// DER.
    pub der: Vec<u8>,
}

/// Stores a new token (by hash).
pub fn insert_token(
    conn: &Connection,
    hash: &[u8],
    grant: &Grant,
    now: i64,
    expires_at: i64,
) -> Result<(), CaError> {
    conn.execute(
        "INSERT INTO tokens (hash, usage, subject, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hash, grant.usage().as_str(), grant.subject(), now, expires_at],
    )?;
    Ok(())
}

/// Finds a token by hash.
pub fn token(conn: &Connection, hash: &[u8]) -> Result<Option<TokenRecord>, CaError> {
    let row = conn
        .query_row(
            "SELECT usage, subject, expires_at, used_at, revoked_at FROM tokens WHERE hash = ?1",
            params![hash],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()?;
    row.map(|(usage, subject, expires_at, used_at, revoked_at)| {
        Ok(TokenRecord {
            grant: Grant::from_stored(&usage, &subject)?,
            expires_at,
            used_at,
            revoked_at,
        })
    })
    .transpose()
}

/// The certificate a used token was spent on.
pub fn token_used_serial(conn: &Connection, hash: &[u8]) -> Result<Option<String>, CaError> {
    Ok(conn
        .query_row(
            "SELECT used_serial FROM tokens WHERE hash = ?1",
            params![hash],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}

/// A valid, unexpired certificate with its DER, for handing the same certificate out again.
pub fn valid_certificate_der(
    conn: &Connection,
    serial: &str,
    now: i64,
) -> Result<Option<(CertificateRecord, Vec<u8>)>, CaError> {
    let Some(record) = certificate(conn, serial)? else {
        return Ok(None);
    };
    if record.status != "valid" || now >= record.not_after {
        return Ok(None);
    }
    let der: Vec<u8> = conn.query_row(
        "SELECT der FROM certificates WHERE serial = ?1",
        [serial],
        |r| r.get(0),
    )?;
    Ok(Some((record, der)))
}

/// Marks a token used for `serial`. Fails if it was used meanwhile.
pub fn consume_token(
    tx: &Transaction<'_>,
    hash: &[u8],
    serial: &str,
    now: i64,
) -> Result<(), CaError> {
    let changed = tx.execute(
        "UPDATE tokens SET used_at = ?1, used_serial = ?2 WHERE hash = ?3 AND used_at IS NULL",
        params![now, serial, hash],
    )?;
    if changed != 1 {
        return Err(CaError::token_used());
    }
    Ok(())
}

/// Records an issued certificate.
pub fn insert_certificate(
    conn: &Connection,
    grant: &Grant,
    cert: &SignedCertificate,
    now: i64,
) -> Result<(), CaError> {
    conn.execute(
        "INSERT INTO certificates (serial, usage, subject, not_before, not_after, issued_at, der)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            cert.serial,
            grant.usage().as_str(),
            grant.subject(),
            cert.not_before,
            cert.not_after,
            now,
            cert.der.as_ref()
        ],
    )?;
    Ok(())
}

const CERT_COLUMNS: &str = "serial, usage, subject, not_before, not_after, issued_at, status, revoked_at, revocation_reason, replaced_by";

fn certificate_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CertificateRecord> {
    Ok(CertificateRecord {
        serial: r.get(0)?,
        usage: r.get(1)?,
        subject: r.get(2)?,
        not_before: r.get(3)?,
        not_after: r.get(4)?,
        issued_at: r.get(5)?,
        status: r.get(6)?,
        revoked_at: r.get(7)?,
        revocation_reason: r.get(8)?,
        replaced_by: r.get(9)?,
    })
}

/// Finds a certificate by serial (lowercase hex).
pub fn certificate(conn: &Connection, serial: &str) -> Result<Option<CertificateRecord>, CaError> {
    Ok(conn
        .query_row(
            &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?1"),
            params![serial],
            certificate_row,
        )
        .optional()?)
}

/// Every issued certificate, newest first.
pub fn certificates(conn: &Connection) -> Result<Vec<CertificateRecord>, CaError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CERT_COLUMNS} FROM certificates ORDER BY issued_at DESC, serial"
    ))?;
    let rows = stmt.query_map([], certificate_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Marks a valid certificate revoked. Fails if it is not valid (already revoked).
pub fn revoke(
    conn: &Connection,
    serial: &str,
    reason: &str,
    replaced_by: Option<&str>,
    now: i64,
) -> Result<(), CaError> {
    let changed = conn.execute(
        "UPDATE certificates SET status = 'revoked', revoked_at = ?1, revocation_reason = ?2, replaced_by = ?3
         WHERE serial = ?4 AND status = 'valid'",
        params![now, reason, replaced_by, serial],
    )?;
    if changed != 1 {
        return Err(CaError::certificate_revoked(serial, "already revoked"));
    }
    Ok(())
}

/// Revoked certificates that have not yet expired: the CRL's entries.
pub fn revoked_unexpired(conn: &Connection, now: i64) -> Result<Vec<RevokedEntry>, CaError> {
    let mut stmt = conn.prepare(
        "SELECT serial, revoked_at, revocation_reason FROM certificates
         WHERE status = 'revoked' AND not_after > ?1 ORDER BY revoked_at, serial",
    )?;
    let rows = stmt.query_map(params![now], |r| {
        Ok(RevokedEntry {
            serial: r.get(0)?,
            revoked_at: r.get(1)?,
            reason: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The number the next CRL gets.
pub fn next_crl_number(conn: &Connection) -> Result<u64, CaError> {
    let last: Option<i64> = conn.query_row("SELECT MAX(number) FROM crls", [], |r| r.get(0))?;
    Ok(last.map_or(1, |n| n as u64 + 1))
}

/// Stores a newly signed CRL and deletes all but the newest [`CRLS_KEPT`].
pub fn insert_crl(conn: &Connection, crl: &CrlRecord) -> Result<(), CaError> {
    conn.execute(
        "INSERT INTO crls (number, this_update, next_update, der) VALUES (?1, ?2, ?3, ?4)",
        params![crl.number as i64, crl.this_update, crl.next_update, crl.der],
    )?;
    conn.execute(
        "DELETE FROM crls WHERE number <= (SELECT MAX(number) FROM crls) - ?1",
        params![CRLS_KEPT],
    )?;
    Ok(())
}

/// The certificate that `serial` superseded by renewal, if it was issued by one.
pub fn renewed_from(conn: &Connection, serial: &str) -> Result<Option<String>, CaError> {
    Ok(conn
        .query_row(
            "SELECT serial FROM certificates WHERE replaced_by = ?1",
            params![serial],
            |r| r.get(0),
        )
        .optional()?)
}

/// The newest CRL.
pub fn latest_crl(conn: &Connection) -> Result<Option<CrlRecord>, CaError> {
    Ok(conn
        .query_row(
            "SELECT number, this_update, next_update, der FROM crls ORDER BY number DESC LIMIT 1",
            [],
            |r| {
                Ok(CrlRecord {
                    number: r.get::<_, i64>(0)? as u64,
                    this_update: r.get(1)?,
                    next_update: r.get(2)?,
                    der: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Appends to the audit log. `detail` must never hold a secret.
pub fn audit(
    conn: &Connection,
    now: i64,
    event: &str,
    actor: &str,
    subject: Option<&str>,
    serial: Option<&str>,
    detail: Option<&str>,
) -> Result<(), CaError> {
    conn.execute(
        "INSERT INTO audit (at, event, actor, subject, serial, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now, event, actor, subject, serial, detail],
    )?;
    Ok(())
}

/// Records a refusal: counted on the newest entry with the same event, actor, subject, serial and
/// detail from the last [`REFUSAL_AGGREGATION_SECS`], or appended when there is none, so that a
/// peer repeating a refused request cannot grow the log without bound.
pub fn audit_refusal(
    conn: &Connection,
    now: i64,
    event: &str,
    actor: &str,
    subject: Option<&str>,
    serial: Option<&str>,
    detail: Option<&str>,
) -> Result<(), CaError> {
    let counted = conn.execute(
        "UPDATE audit SET count = count + 1, last_at = ?1 WHERE seq = (
             SELECT seq FROM audit WHERE event = ?2 AND at >= ?3 AND actor = ?4
                 AND subject IS ?5 AND serial IS ?6 AND detail IS ?7
             ORDER BY seq DESC LIMIT 1)",
        params![
            now,
            event,
            now - REFUSAL_AGGREGATION_SECS,
            actor,
            subject,
            serial,
            detail
        ],
    )?;
    if counted == 0 {
        audit(conn, now, event, actor, subject, serial, detail)?;
    }
    Ok(())
}

/// One audit log entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    /// Sequence number.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// What happened, e.g. `issued`, `revoked`, `enroll_refused`.
    pub event: String,
    /// Who did it: `api`, `operator`, or the requesting certificate's serial.
    pub actor: String,
    /// The client id or host names concerned.
    pub subject: Option<String>,
    /// The certificate concerned.
    pub serial: Option<String>,
    /// More detail (reasons, codes).
    pub detail: Option<String>,
    /// How many times it happened (repeated refusals are counted on one entry).
    pub count: i64,
    /// When it last happened, if more than once.
    pub last_at: Option<i64>,
}

/// The whole audit log, oldest first.
pub fn audit_log(conn: &Connection) -> Result<Vec<AuditEntry>, CaError> {
    let mut stmt = conn
        .prepare("SELECT seq, at, event, actor, subject, serial, detail, count, last_at FROM audit ORDER BY seq")?;
    let rows = stmt.query_map([], |r| {
        Ok(AuditEntry {
            seq: r.get(0)?,
            at: r.get(1)?,
            event: r.get(2)?,
            actor: r.get(3)?,
            subject: r.get(4)?,
            serial: r.get(5)?,
            detail: r.get(6)?,
            count: r.get(7)?,
            last_at: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
