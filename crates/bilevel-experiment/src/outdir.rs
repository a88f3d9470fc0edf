//! The output folder of an experiment: its exclusive lock, the marker that says bilevel wrote
//! it, and the rules that keep every write inside it (plain names, checked run ids).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::ConfigError;

/// The lock file inside an output folder.
pub const LOCK_FILE: &str = ".bilevel.lock";

/// The marker that bilevel created the folder (what `--overwrite` requires before deleting).
pub const MARKER_FILE: &str = ".bilevel-output";

/// The longest experiment name (a path component; file systems allow 255 bytes).
pub const MAX_NAME_LEN: usize = 100;

/// The folder of the per-shard and merge locks inside an output folder.
pub const LOCK_DIR: &str = ".locks";

/// A lock on an output folder, held until dropped (or the process ends: the operating system
/// releases it, so a killed run leaves no stale lock). Exclusive for a whole-grid `run`,
/// `--resume`, `report` and `plot`; shared by the shards of a sharded grid and by `merge`, which
/// run side by side (each shard also holds its own [`NamedLock`]).
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

impl FolderLock {
    /// Takes the exclusive lock on `dir` (created if missing). A second process gets a clear
    /// error naming the process (or the shards) that hold it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the output folder {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = open_lock_file(&path)?;
        if !try_take(&file, &path, false)? {
            let running = held_locks(dir);
            let who = if !running.is_empty() {
                format!("a sharded run ({} held)", running.join(", "))
            } else {
                holder(&mut file)
            };
            return Err(ConfigError(format!(
                "{} is in use by {who} (lock file {}); wait for it to finish, or choose \
                 another --out",
                dir.display(),
                path.display()
            ))
            .into());
        }
        write_holder(&mut file, &path)?;
        Ok(Self { _file: file })
    }

    /// Takes a shared lock on `dir` (created if missing): refused while a whole-grid run,
    /// resume, report or plot holds it exclusively.
    pub fn acquire_shared(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the output folder {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = open_lock_file(&path)?;
        if !try_take(&file, &path, true)? {
            return Err(ConfigError(format!(
                "{} is in use by {} (a whole-grid run, resume, report or plot; lock file {}); \
                 wait for it to finish",
                dir.display(),
                holder(&mut file),
                path.display()
            ))
            .into());
        }
        Ok(Self { _file: file })
    }
}

/// An exclusive lock on one named file in `DIR/.locks/`: a shard's (`shard-K-of-N`), or the
/// merge's. Held until dropped or the process ends.
#[derive(Debug)]
pub struct NamedLock {
    _file: File,
}

impl NamedLock {
    /// Takes `DIR/.locks/<name>.lock`; `what` names the holder in the error a second process
    /// gets ("shard 2/3", "a merge").
    pub fn acquire(dir: &Path, name: &str, what: &str) -> Result<Self> {
        let folder = dir.join(LOCK_DIR);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let path = folder.join(format!("{name}.lock"));
        let mut file = open_lock_file(&path)?;
        if !try_take(&file, &path, false)? {
            return Err(ConfigError(format!(
                "{what} is already running in {} ({}; lock file {})",
                dir.display(),
                holder(&mut file),
                path.display()
            ))
            .into());
        }
        write_holder(&mut file, &path)?;
        Ok(Self { _file: file })
    }

    /// Whether a process holds `DIR/.locks/<name>.lock` now.
    pub fn is_held(dir: &Path, name: &str) -> bool {
        let path = dir.join(LOCK_DIR).join(format!("{name}.lock"));
        let Ok(file) = std::fs::File::open(&path) else {
            return false;
        };
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }
}

/// The names of the held locks in `DIR/.locks/` (running shards, a running merge).
pub fn held_locks(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join(LOCK_DIR)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".lock"))
                .map(str::to_owned)
        })
        .filter(|name| NamedLock::is_held(dir, name))
        .collect();
    names.sort();
    names
}

/// Tries to take `file`'s lock (shared or exclusive) without waiting: false when another
/// process holds it.
fn try_take(file: &File, path: &Path, shared: bool) -> Result<bool> {
    let attempt = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match attempt {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))
}

/// "process N" from a held lock file (its holder writes its pid), or "another process".
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    match text.trim() {
        "" => "another process".to_owned(),
        pid => format!("process {pid}"),
    }
}

/// Writes the holder's pid into an exclusively held lock file, for the next process's message.
fn write_holder(file: &mut File, path: &Path) -> Result<()> {
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush())
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes the marker that bilevel made `dir` an output folder.
pub fn write_marker(dir: &Path) -> Result<()> {
    let text = format!(
        "{{\"written_by\": \"bilevel\", \"version\": \"{}\"}}\n",
        env!("CARGO_PKG_VERSION")
    );
    bilevel::run::write_atomic(&dir.join(MARKER_FILE), text.as_bytes())?;
    Ok(())
}

/// Whether `dir` carries the marker of a bilevel output folder.
pub fn has_marker(dir: &Path) -> bool {
    dir.join(MARKER_FILE).is_file()
}

/// Whether `name` can be a folder or file name on its own: not empty, at most
/// [`MAX_NAME_LEN`] characters of letters, digits, '-', '_' and '.', not starting with '.'
/// (so never `.` or `..`, and never hidden).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether `id` has the form of a run id: `<solver kind>-<16 hex digits>-seed<k>`, so that
/// `traces/<id>.jsonl` and `checkpoints/<id>.json` stay inside their folders.
pub fn valid_run_id(id: &str) -> bool {
    let mut parts = id.rsplitn(3, '-');
    let (Some(seed), Some(hash), Some(kind)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let seed_ok = seed
        .strip_prefix("seed")
        .is_some_and(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()));
    let hash_ok = hash.len() == 16 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let kind_ok = !kind.is_empty()
        && kind.len() <= 40
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    seed_ok && hash_ok && kind_ok
}

/// The output folder that holds the checkpoint at `path` (`DIR/checkpoints/<id>.json`) and the
/// run id its name gives; an error for a checkpoint anywhere else.
pub fn checkpoint_home(path: &Path) -> Result<(PathBuf, String)> {
    let absolute =
        std::fs::canonicalize(path).with_context(|| format!("checkpoint {}", path.display()))?;
    let id = absolute
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".json"))
        .filter(|id| valid_run_id(id))
        .map(str::to_owned);
    let folder = absolute
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "checkpoints"));
    match (id, folder.and_then(Path::parent)) {
        (Some(id), Some(dir)) => Ok((dir.to_owned(), id)),
        _ => Err(ConfigError(format!(
            "{}: not a checkpoint of `bilevel run` (expected DIR/checkpoints/<run id>.json)",
            path.display()
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_path_components() {
        for good in ["quickstart", "paper_lancbio", "a.b-c_1", "x"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in ["", ".", "..", "...", ".hidden", "a/b", "a\\b", "a b", &long] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn run_ids_are_checked() {
        assert!(valid_run_id("soba-0123456789abcdef-seed3"));
        assert!(valid_run_id("aid_cg-0123456789abcdef-seed0"));
        for bad in [
            "soba-01234567-seed3",
            "../soba-0123456789abcdef-seed3",
            "soba-0123456789abcdef-seed",
            "soba-0123456789ABCDEF-seed1",
            "soba-0123456789abcdef-seed1/..",
            "-0123456789abcdef-seed1",
            "",
        ] {
            assert!(!valid_run_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_second_lock_on_a_folder_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = FolderLock::acquire(dir.path()).unwrap();
        let e = FolderLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("process {}", std::process::id())),
            "the message names the holder: {e}"
        );
        drop(first);
        FolderLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn shared_locks_coexist_and_exclude_the_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = FolderLock::acquire_shared(dir.path()).unwrap();
        let b = FolderLock::acquire_shared(dir.path()).unwrap();
        let shard = NamedLock::acquire(dir.path(), "shard-1-of-2", "shard 1/2").unwrap();
        let e = NamedLock::acquire(dir.path(), "shard-1-of-2", "shard 1/2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("shard 1/2 is already running"), "{e}");
        assert!(NamedLock::is_held(dir.path(), "shard-1-of-2"));
        assert!(!NamedLock::is_held(dir.path(), "shard-2-of-2"));
        let e = FolderLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("a sharded run (shard-1-of-2 held)"), "{e}");
        drop((a, b, shard));
        assert!(held_locks(dir.path()).is_empty());
        let whole = FolderLock::acquire(dir.path()).unwrap();
        let e = FolderLock::acquire_shared(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole-grid run"), "{e}");
        drop(whole);
    }
}
