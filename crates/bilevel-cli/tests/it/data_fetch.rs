//! `bilevel data fetch` against a local HTTP server on 127.0.0.1 (spawned here, serving a bounded
//! number of requests, then stopping by itself).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

const BODY: &[u8] = b"+1 1:0.5 3:1\n-1 2:0.25\n";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serves up to `max_requests` requests: `/good.svm` → BODY, `/bad.svm` → BODY with one byte
/// flipped, `/short.svm` → a Content-Length longer than the body sent, anything else → 404.
/// Returns the port and a counter of requests served.
fn serve(max_requests: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max_requests) {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let path = request_line.split_whitespace().nth(1).unwrap_or("");
            let mut body = BODY.to_vec();
            let (status, length) = match path {
                "/good.svm" => ("200 OK", body.len()),
                "/bad.svm" => {
                    body[0] = b'-';
                    ("200 OK", body.len())
                }
                "/short.svm" => ("200 OK", body.len() + 100),
                _ => {
                    body = b"not found".to_vec();
                    ("404 Not Found", body.len())
                }
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {length}\r\nContent-Type: \
                 application/octet-stream\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            let _ = stream.flush();
        }
    });
    (port, served)
}

fn fetch(cache: &Path, name: &str, url: &str, sha: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args([
            "data", "fetch", name, "--url", url, "--sha256", sha, "--cache",
        ])
        .arg(cache)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("bilevel runs")
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_good_download_lands_and_a_corrupted_one_leaves_nothing() {
    let (port, served) = serve(4);
    let cache = tempfile::tempdir().unwrap();
    let sha = sha256_hex(BODY);

    // Good: lands with the right content, and the checksum is recorded.
    let out = fetch(
        cache.path(),
        "toy",
        &format!("http://127.0.0.1:{port}/good.svm"),
        &sha,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let landed = cache.path().join("toy/good.svm");
    assert_eq!(std::fs::read(&landed).unwrap(), BODY);
    assert_eq!(
        entries(&cache.path().join("toy")),
        ["SHA256SUMS", "good.svm"]
    );
    let sums = std::fs::read_to_string(cache.path().join("toy/SHA256SUMS")).unwrap();
    assert_eq!(sums, format!("{sha}  good.svm\n"));
    // The downloaded file loads.
    let ds = bilevel::data::libsvm::load(&landed, &Default::default()).unwrap();
    assert_eq!(ds.len(), 2);

    // Cached: a second fetch does not touch the network.
    let before = served.load(Ordering::SeqCst);
    let out = fetch(
        cache.path(),
        "toy",
        &format!("http://127.0.0.1:{port}/good.svm"),
        &sha,
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already cached"));
    assert_eq!(served.load(Ordering::SeqCst), before);

    // Corrupted: rejected with exit code 1, nothing cached, no temporary file left.
    let out = fetch(
        cache.path(),
        "broken",
        &format!("http://127.0.0.1:{port}/bad.svm"),
        &sha,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(entries(&cache.path().join("broken")).is_empty());

    // Truncated (the connection closes before Content-Length bytes): rejected, nothing left.
    let out = fetch(
        cache.path(),
        "short",
        &format!("http://127.0.0.1:{port}/short.svm"),
        &sha,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(entries(&cache.path().join("short")).is_empty());

    // A 404 is an error too (the server has stopped after 4 requests: use a fresh one).
    let (port, _) = serve(1);
    let out = fetch(
        cache.path(),
        "missing",
        &format!("http://127.0.0.1:{port}/nope.svm"),
        &sha,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(entries(&cache.path().join("missing")).is_empty());
}

#[test]
fn bad_arguments_exit_2() {
    let cache = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bilevel"))
            .args(args)
            .arg("--cache")
            .arg(cache.path())
            .output()
            .unwrap()
    };
    let out = run(&["data", "fetch", "no_such_dataset"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown dataset"));
    // ijcnn1's LIBSVM .bz2 has no pinned checksum: refused without --trust-unpinned.
    let out = run(&["data", "fetch", "ijcnn1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--trust-unpinned"));
    let out = run(&[
        "data",
        "fetch",
        "x",
        "--url",
        "http://127.0.0.1:9/x",
        "--sha256",
        "abc",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let list = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(["data", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    for name in ["ijcnn1", "a9a", "covtype", "mnist", "news20"] {
        assert!(text.contains(name), "{name} missing from `data list`");
    }
}
