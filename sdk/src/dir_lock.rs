//! An exclusive lock on a directory, held by one process at a time: a second `vc-server serve`,
//! `vc-ca serve` or conference session on the same directory is refused, and told who holds it.
//! The lock is the operating system's (`flock`) on a file in the directory, so it is released
//! when its holder exits, however it exits; the file's text only names the holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock file `name` in `dir` for `what` (e.g. "vc-server serve"), or names who
    /// holds it: `… is in use by vc-server serve (pid 4242, since 2026-12-03T14:00:00Z)`.
    pub fn acquire(dir: &Path, name: &str, what: &str) -> Result<DirLock, String> {
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("opening the lock {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(format!(
                    "{} is in use by {}; stop that first",
                    dir.display(),
                    if holder.is_empty() {
                        "another process"
                    } else {
                        holder
                    }
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(format!("locking {}: {e}", path.display()));
            }
        }
        let holder = format!(
            "{what} (pid {}, since {})\n",
            std::process::id(),
            crate::util::rfc3339(crate::util::unix_now())
        );
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(holder.as_bytes()))
            .and_then(|()| file.flush());
        written.map_err(|e| format!("writing the lock {}: {e}", path.display()))?;
        Ok(DirLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // The holder's text goes; the file stays (removing it would race with a new holder).
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "serve.lock", "vc-server serve").unwrap();
        let e = DirLock::acquire(dir.path(), "serve.lock", "vc-server serve").unwrap_err();
        assert!(e.contains("in use by vc-server serve (pid "), "{e}");
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        drop(first);
        DirLock::acquire(dir.path(), "serve.lock", "vc-server serve").unwrap();
    }
}
