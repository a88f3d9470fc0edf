//! `bilevel data fetch NAME` and `bilevel data list`: download the canonical dataset files into a
//! cache directory, checksum-verified and written atomically.
//!
//! - Every file is streamed into a temporary file in the destination directory while its
//!   SHA-256 is computed; only a file whose checksum matches is renamed into place (an atomic
//!   rename on one file system). A mismatch, a truncated transfer or an HTTP error removes the
//!   temporary file and leaves no cached file behind.
//! - A cached file whose checksum matches is not downloaded again.
//! - Checksums are pinned where a published value is known (MNIST, covtype) or where the
//!   project's shipped copies fix the content (a9a; shared/data/README.md). For the LIBSVM
//!   `.bz2` files (ijcnn1, news20) no published checksum is known: the command refuses them
//!   unless `--trust-unpinned` is given, and then prints the SHA-256 it computed so that it can
//!   be pinned with `--url … --sha256 …`.
//! - `--url URL --sha256 HEX` fetch one arbitrary file under the name NAME (used by the tests
//!   against a loopback server).
//!
//! HTTP client: `ureq` 3 with rustls (pure-Rust TLS, bundled webpki roots). It is blocking
//! (no async runtime to carry in a CLI), small, follows redirects (the figshare and LIBSVM
//! mirrors redirect), honours the usual proxy variables, streams bodies without buffering them,
//! and reports a connection closed before `Content-Length` bytes as an error. Plain `http://`
//! goes through the same client, so the loopback test exercises the real code path.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use sha2::{Digest, Sha256};

use bilevel_experiment::experiment::ConfigError;

/// `bilevel data …`.
#[derive(Subcommand)]
pub enum DataCommand {
    /// Download a dataset's canonical files into the cache, checksum-verified.
    Fetch {
        /// A catalog name (see `bilevel data list`), or any name with `--url`.
        name: String,
        /// Cache directory (default: $BILEVEL_CACHE_DIR, else $XDG_CACHE_HOME/bilevel, else
        /// ~/.cache/bilevel). Files land in DIR/NAME/.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Fetch this one URL instead of the catalog's files (needs --sha256 or
        /// --trust-unpinned).
        #[arg(long)]
        url: Option<String>,
        /// Expected SHA-256 (hex) of the --url file.
        #[arg(long, requires = "url")]
        sha256: Option<String>,
        /// Accept files without a pinned checksum (prints the computed SHA-256).
        #[arg(long)]
        trust_unpinned: bool,
    },
    /// List the catalog: names, files, sources and whether checksums are pinned.
    List,
}

/// One file of the catalog.
struct RemoteFile {
    file: &'static str,
    url: &'static str,
    sha256: Option<&'static str>,
}

struct CatalogEntry {
    name: &'static str,
    about: &'static str,
    files: &'static [RemoteFile],
}

macro_rules! libsvm_url {
    ($path:literal) => {
        concat!(
            "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets",
            $path
        )
    };
}

const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "ijcnn1",
        about: "LIBSVM ijcnn1 train (49,990) and test (91,701), 22 features, bzip2",
        files: &[
            RemoteFile {
                file: "ijcnn1.bz2",
                url: libsvm_url!("/binary/ijcnn1.bz2"),
                sha256: None,
            },
            RemoteFile {
                file: "ijcnn1.t.bz2",
                url: libsvm_url!("/binary/ijcnn1.t.bz2"),
                sha256: None,
            },
        ],
    },
    CatalogEntry {
        name: "a9a",
        about: "LIBSVM a9a train (32,561) and test (16,281), 123 features, plain text",
        files: &[
            RemoteFile {
                file: "a9a",
                url: libsvm_url!("/binary/a9a"),
                sha256: Some("f5d5ffd8d865ff41328e7ee043e4b020816914ff6843ff15b98905ddbedce906"),
            },
            RemoteFile {
                file: "a9a.t",
                url: libsvm_url!("/binary/a9a.t"),
                sha256: Some("1f448a153f0320399a7e40836eb207655b0bde0f21fc941cc472193daa9f5de9"),
            },
        ],
    },
    CatalogEntry {
        name: "covtype",
        about: "UCI covertype, 581,012 x 54, 7 classes, CSV with the label last (gzip); \
                load with format = \"csv\"",
        files: &[RemoteFile {
            file: "covtype.data.gz",
            url: "https://ndownloader.figshare.com/files/5976039",
            sha256: Some("614360d0257557dd1792834a85a1cdebfadc3c4f30b011d56afee7ffb5b15771"),
        }],
    },
    CatalogEntry {
        name: "mnist",
        about: "MNIST train (60,000) and test (10,000) images and labels, IDX (gzip)",
        files: &[
            RemoteFile {
                file: "train-images-idx3-ubyte.gz",
                url: "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
                sha256: Some("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            },
            RemoteFile {
                file: "train-labels-idx1-ubyte.gz",
                url: "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
                sha256: Some("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            },
            RemoteFile {
                file: "t10k-images-idx3-ubyte.gz",
                url: "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
                sha256: Some("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            },
            RemoteFile {
                file: "t10k-labels-idx1-ubyte.gz",
                url: "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
                sha256: Some("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
            },
        ],
    },
    CatalogEntry {
        name: "news20",
        about: "20 Newsgroups in LIBSVM form (multiclass news20: 15,935 train, 3,993 test, \
                62,061 features, 20 classes), bzip2",
        files: &[
            RemoteFile {
                file: "news20.bz2",
                url: libsvm_url!("/multiclass/news20.bz2"),
                sha256: None,
            },
            RemoteFile {
                file: "news20.t.bz2",
                url: libsvm_url!("/multiclass/news20.t.bz2"),
                sha256: None,
            },
        ],
    },
];

/// Runs a `bilevel data` command.
pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::List => {
            for entry in CATALOG {
                println!("{}: {}", entry.name, entry.about);
                for f in entry.files {
                    let pin = f
                        .sha256
                        .map_or("unpinned".to_owned(), |s| format!("sha256 {s}"));
                    println!("    {}  <- {}  ({pin})", f.file, f.url);
                }
            }
            Ok(())
        }
        DataCommand::Fetch {
            name,
            cache,
            url,
            sha256,
            trust_unpinned,
        } => fetch(&name, cache, url, sha256, trust_unpinned),
    }
}

fn default_cache() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("BILEVEL_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("bilevel"));
    }
    if let Some(dir) = var("LOCALAPPDATA") {
        return Ok(dir.join("bilevel"));
    }
    if let Some(home) = var("HOME") {
        return Ok(home.join(".cache").join("bilevel"));
    }
    bail!(ConfigError(
        "no cache directory: set --cache, BILEVEL_CACHE_DIR or HOME".into()
    ))
}

fn valid_component(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn fetch(
    name: &str,
    cache: Option<PathBuf>,
    url: Option<String>,
    sha256: Option<String>,
    trust_unpinned: bool,
) -> Result<()> {
    if !valid_component(name) {
        bail!(ConfigError(format!(
            "dataset name `{name}` must be letters, digits, '-', '_' and '.'"
        )));
    }
    let sha256 = sha256.map(|s| s.trim().to_ascii_lowercase());
    if let Some(s) = &sha256
        && (s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()))
    {
        bail!(ConfigError(format!(
            "--sha256 must be 64 hexadecimal digits, got `{s}`"
        )));
    }
    let files: Vec<(String, String, Option<String>)> = match &url {
        Some(url) => {
            let file = url
                .split(['?', '#'])
                .next()
                .and_then(|u| u.rsplit('/').next())
                .filter(|f| valid_component(f))
                .unwrap_or("download")
                .to_owned();
            vec![(file, url.clone(), sha256)]
        }
        None => {
            let entry = CATALOG.iter().find(|e| e.name == name).ok_or_else(|| {
                ConfigError(format!(
                    "unknown dataset `{name}`; known: {} (or give --url and --sha256)",
                    CATALOG
                        .iter()
                        .map(|e| e.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            entry
                .files
                .iter()
                .map(|f| {
                    (
                        f.file.to_owned(),
                        f.url.to_owned(),
                        f.sha256.map(str::to_owned),
                    )
                })
                .collect()
        }
    };
    if let Some((_, url, _)) = files.iter().find(|f| !https_or_loopback(&f.1)) {
        bail!(ConfigError(format!(
            "only https URLs are fetched (plain http only from this machine's loopback \
             address), got {url}"
        )));
    }
    if !trust_unpinned && let Some((file, _, _)) = files.iter().find(|f| f.2.is_none()) {
        bail!(ConfigError(format!(
            "`{file}` has no pinned checksum: pass --sha256 with --url, or --trust-unpinned to \
             accept it and print its SHA-256"
        )));
    }
    let dir = match cache {
        Some(c) => c,
        None => default_cache()?,
    }
    .join(name);
    let created = !dir.exists();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    remove_stale_parts(&dir);
    let loopback = files.iter().all(|f| !f.1.starts_with("https://"));
    let result = fetch_into(&dir, &files, !loopback);
    if result.is_err() && created && fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none()) {
        // A fetch that failed into a folder it created leaves no empty folder behind.
        let _ = fs::remove_dir(&dir);
    }
    result?;
    println!("{}", dir.display());
    Ok(())
}

/// Removes `.<file>.part-<pid>` files of downloads whose process is gone (killed mid-download:
/// its guard could not run).
fn remove_stale_parts(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .starts_with('.')
            .then(|| name.rsplit_once(".part-"))
            .flatten()
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The entries of a `SHA256SUMS` file: (file, digest).
fn read_sums(path: &Path) -> Vec<(String, String)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (digest, file) = l.split_once("  ")?;
            Some((file.trim().to_owned(), digest.trim().to_owned()))
        })
        .collect()
}

/// Whether `url` is https, or plain http to the loopback address (a local mirror or a test
/// server).
fn https_or_loopback(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..]).unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Downloads `files` into `dir`. With `https_only`, a redirect to plain http is refused too.
fn fetch_into(
    dir: &Path,
    files: &[(String, String, Option<String>)],
    https_only: bool,
) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .https_only(https_only)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .user_agent(concat!("bilevel/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    // SHA256SUMS keeps every file of the folder: earlier fetches' entries stay, this fetch's
    // replace theirs.
    let sums_path = dir.join("SHA256SUMS");
    let mut sums = read_sums(&sums_path);
    let mut record = |file: &str, digest: &str| {
        sums.retain(|(f, _)| f != file);
        sums.push((file.to_owned(), digest.to_owned()));
    };
    for (file, url, expected) in files {
        let dest = dir.join(file);
        if let Some(expected) = expected
            && dest.is_file()
            && sha256_of_file(&dest)? == *expected
        {
            eprintln!("{}: already cached, checksum ok", dest.display());
            record(file, expected);
            continue;
        }
        let digest = download(&agent, url, &dest, expected.as_deref())?;
        if expected.is_none() {
            eprintln!(
                "{}: UNPINNED checksum, accepted with --trust-unpinned; sha256 {digest}",
                dest.display()
            );
        }
        record(file, &digest);
    }
    sums.sort();
    let text: String = sums
        .iter()
        .map(|(file, digest)| format!("{digest}  {file}\n"))
        .collect();
    bilevel::run::write_atomic(&sums_path, text.as_bytes())?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_of_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Removes the temporary file unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Streams `url` into a temporary file next to `dest`, hashing it; renames it to `dest` when the
/// checksum matches `expected` (or when none is expected). Returns the SHA-256.
fn download(agent: &ureq::Agent, url: &str, dest: &Path, expected: Option<&str>) -> Result<String> {
    let dir = dest
        .parent()
        .ok_or_else(|| anyhow!("no parent directory"))?;
    let file_name = dest
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.part-{}", std::process::id()));
    let mut guard = TempGuard(Some(tmp.clone()));
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    eprintln!("downloading {url}");
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url} failed"))?;
    let mut reader = response.body_mut().as_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total: u64 = 0;
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("download of {url} interrupted after {total} bytes"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        total += n as u64;
    }
    out.sync_all()
        .with_context(|| format!("cannot flush {}", tmp.display()))?;
    drop(out);
    let digest = hex(&hasher.finalize());
    if let Some(expected) = expected
        && digest != expected
    {
        bail!(
            "checksum mismatch for {url}: expected sha256 {expected}, got {digest} ({total} \
             bytes); nothing was written"
        );
    }
    fs::rename(&tmp, dest)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))?;
    guard.0 = None;
    eprintln!("{}: {total} bytes, sha256 {digest}", dest.display());
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_fetched() {
        for ok in [
            "https://example.org/a.bz2",
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://[::1]:80/x",
            "http://127.1.2.3/x",
        ] {
            assert!(https_or_loopback(ok), "{ok}");
        }
        for bad in [
            "http://example.org/a",
            "http://127.0.0.1.evil.org/x",
            "http://10.0.0.1/x",
            "ftp://example.org/x",
            "http://user@example.org/x",
        ] {
            assert!(!https_or_loopback(bad), "{bad}");
        }
    }

    #[test]
    fn stale_partial_downloads_are_removed_and_sums_are_merged() {
        let dir = tempfile::tempdir().unwrap();
        // pid 2^31 - 1 cannot be running (pid_max is at most 2^22).
        let stale = dir.path().join(".a.svm.part-2147483647");
        let live = dir
            .path()
            .join(format!(".b.svm.part-{}", std::process::id()));
        std::fs::write(&stale, b"x").unwrap();
        std::fs::write(&live, b"x").unwrap();
        remove_stale_parts(dir.path());
        assert!(!stale.exists() && live.exists());
        let sums = dir.path().join("SHA256SUMS");
        std::fs::write(&sums, "aa  one.svm\nbb  two.svm\n").unwrap();
        assert_eq!(
            read_sums(&sums),
            vec![
                ("one.svm".to_owned(), "aa".to_owned()),
                ("two.svm".to_owned(), "bb".to_owned())
            ]
        );
    }
}
