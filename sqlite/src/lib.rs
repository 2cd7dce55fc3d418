//! SQLite helpers shared by `vc-ca` and `vc-server`: one schema migration routine, which brings a
//! database up to the program's schema in one transaction and refuses, touching nothing, a
//! database whose schema is newer than the program knows.
#![forbid(unsafe_code)]

use rusqlite::{Connection, TransactionBehavior};

/// Why a migration did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database was written by a newer program.
    #[error(
        "the database schema is version {found}, newer than this {program} knows ({known}); \
         run the newer {program} that wrote it"
    )]
    Newer {
        /// The schema version found in the database.
        found: i64,
        /// The newest version this program knows.
        known: i64,
        /// The program, for the message (`vc-ca`, `vc-server`).
        program: &'static str,
    },
    /// SQLite failed.
    #[error("migrating the database schema: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Brings the schema of `conn` up to `migrations.len()`: runs every migration after the one
/// recorded in `PRAGMA user_version`, then records the new version — all in one immediate
/// transaction, so a failure leaves the database as it was. Migration `i` (from 0) takes the
/// schema from version `i` to `i + 1`. Returns the version found before.
pub fn migrate(
    conn: &mut Connection,
    migrations: &[&str],
    program: &'static str,
) -> Result<i64, MigrateError> {
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known || found < 0 {
        return Err(MigrateError::Newer {
            found,
            known,
            program,
        });
    }
    if found == known {
        return Ok(found);
    }
    for sql in &migrations[found as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", known)?;
    tx.commit()?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[&str] = &[
        "CREATE TABLE a (x INTEGER);",
        "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (1);",
    ];

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_fresh_database_gets_every_step_and_a_current_one_none() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, &STEPS[..1], "test").unwrap(), 0);
        assert_eq!(version(&conn), 1);
        assert_eq!(migrate(&mut conn, STEPS, "test").unwrap(), 1);
        assert_eq!(version(&conn), 2);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM a", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "the second step ran once");
        assert_eq!(migrate(&mut conn, STEPS, "test").unwrap(), 2);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM a", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "nothing ran again");
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_as_it_is() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, STEPS, "test").unwrap();
        let err = migrate(&mut conn, &STEPS[..1], "vc-test").unwrap_err();
        assert!(
            err.to_string()
                .contains("schema is version 2, newer than this vc-test knows (1)"),
            "{err}"
        );
        assert_eq!(version(&conn), 2);
    }

    #[test]
    fn a_failing_step_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("db")).unwrap();
        migrate(&mut conn, &STEPS[..1], "test").unwrap();
        let broken = [STEPS[0], "CREATE TABLE c (z); NOT SQL AT ALL;"];
        assert!(migrate(&mut conn, &broken, "test").is_err());
        assert_eq!(version(&conn), 1);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'c'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the half-done step was rolled back");
    }
}
