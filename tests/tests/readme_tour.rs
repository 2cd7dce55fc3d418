//! The README's five-minute tour runs as written, from top to bottom: its shell blocks, taken from
//! README.md itself, run in one `bash` with the workspace's binaries on `PATH`, in an empty
//! directory, against the real `vc-ca` and `vc-server` they start. Only the two listening ports are
//! changed, to free ones. Every command must succeed (`set -e`), and what the tour says it shows
//! must be there.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole tour must finish well within this.
const LIMIT: Duration = Duration::from_secs(300);

/// The `sh` blocks of the README's tour section (before its Rust and C examples), in order.
fn tour_blocks(readme: &str) -> Vec<String> {
    let start = readme
        .find("## A five-minute tour")
        .expect("the README has a tour");
    let section = &readme[start..];
    let end = section
        .find("From Rust")
        .expect("the tour ends before 'From Rust'");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section[..end].lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().expect("open block")),
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed block in the tour");
    blocks
}

fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    drop(udp);
    socket.local_addr().expect("addr").port()
}

#[test]
fn the_readme_tour_runs_as_written_from_top_to_bottom() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let blocks = tour_blocks(&readme);
    assert_eq!(blocks.len(), 3, "the tour's three shell blocks");
    let (ca_port, server_port) = (free_port(), free_port());
    let script = blocks
        .join("\n")
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{ca_port}"))
        .replace("127.0.0.1:7443", &format!("127.0.0.1:{server_port}"));
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        work.path().join("tour.sh"),
        format!("set -euo pipefail\n{script}"),
    )
    .expect("write the script");

    let bin = vcsdk_tests::binary("vc");
    let bin_dir = bin.parent().expect("binary directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg("tour.sh")
        .current_dir(work.path())
        .env("PATH", path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: whatever it left running is stopped with it.
        .process_group(0)
        .spawn()
        .expect("bash");
    let group = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Nothing of the tour outlives it (on success the tour has stopped its servers itself).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let logs: String = [
        "ca.log",
        "srv.log",
        "bob.log",
        "carol-conf.log",
        "bob-conf.log",
    ]
    .iter()
    .map(|f| {
        let text = std::fs::read_to_string(work.path().join(f)).unwrap_or_default();
        format!("--- {f}\n{text}")
    })
    .collect();
    let shown = format!("--- stdout\n{out}\n--- stderr\n{err}\n{logs}");
    let status = status.unwrap_or_else(|| panic!("the tour ran over {LIMIT:?}\n{shown}"));
    assert!(status.success(), "the tour failed ({status})\n{shown}");

    // What the tour's comments promise.
    for promised in [
        "alice/cert.pem: OK",        // openssl verify
        "ringing",                   // vc call
        "accepted",                  // vc call
        "balance:",                  // vc account, in major units
        "EUR",                       // money with its currency
        "call_id,caller,callee",     // the CDR CSV header
        "epoch 3: carol, bob, dave", // vc conf status, after dave joined
    ] {
        assert!(shown.contains(promised), "{promised:?} is missing\n{shown}");
    }
    let sent = std::fs::read(work.path().join("clip.bin")).expect("clip.bin");
    let saved = std::fs::read(work.path().join("inbox/clip.bin")).expect("inbox/clip.bin");
    assert!(sent == saved, "bob saved other bytes than carol sent");
}
