//! The C interface against the real processes: C programs linked with libvcsdk (built by
//! scripts/c-tests.sh, with AddressSanitizer or for valgrind) enroll with a real `vc-ca`, connect to
//! a real `vc-server` and call each other. These tests are run by scripts/c-tests.sh, which builds
//! the programs and names them in the environment:
//! - `VCSDK_C_CALLS`: tests/c/calls.c (two C clients in one process, every refusal a C user can
//!   meet, NULL and garbage on every entry point);
//! - `VCSDK_C_SAMPLE`: samples/c/vc_sample.c (two processes: one listens and saves, one calls and
//!   streams a file);
//! - `VCSDK_C_CONFERENCE`: tests/c/conference.c (three C clients in one conference, NULL and
//!   garbage on every conference entry point);
//! - `VCSDK_C_LIFECYCLE`: tests/c/lifecycle.c (many connect/free cycles leave no descriptor,
//!   socket or memory behind; no event during a free; the library shut down);
//! - `VCSDK_C_LIFECYCLE_PLAIN` (optional): the same program built without a sanitizer, run
//!   directly (never under the runner) so that it can hold the heap to a bound;
//! - `VCSDK_C_RUNNER` (optional): a command to run them under, e.g. valgrind with its options.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vcsdk_tests::{TestCa, TestServer};

/// The longest a C program may run (valgrind makes everything ~30× slower).
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a sample waits for its peer to come online or to call (seconds, as an argument).
const WAIT_SECS: &str = "240";

fn program(variable: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .unwrap_or_else(|| panic!("{variable} is not set: run scripts/c-tests.sh"));
    PathBuf::from(path)
}

/// The command for `binary`, under `VCSDK_C_RUNNER` when set.
fn command(binary: &Path) -> Command {
    let runner = std::env::var("VCSDK_C_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut command = match words.next() {
        Some(first) => {
            let mut c = Command::new(first);
            c.args(words).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    command.stdin(Stdio::null());
    command
}

/// Runs `command` to its end, returning its output; one still running after
/// [`PROGRAM_TIMEOUT`] is killed (its status then fails the test).
fn finish(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the C program");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > PROGRAM_TIMEOUT {
            let _ = child.kill();
            let mut out = child.wait_with_output().expect("output");
            out.stderr.extend_from_slice(
                format!(
                    "\n[killed: still running after {} s]\n",
                    PROGRAM_TIMEOUT.as_secs()
                )
                .as_bytes(),
            );
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every program succeeded; otherwise fails showing what each of them printed.
fn assert_success(programs: &[(&str, &Output)]) {
    if programs.iter().all(|(_, out)| out.status.success()) {
        return;
    }
    let mut report = String::new();
    for (name, out) in programs {
        report.push_str(&format!(
            "=== {name} ({}):\n--- stdout\n{}\n--- stderr\n{}\n",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    panic!("a C program failed:\n{report}");
}

/// An identity enrolled with `vc enroll` and then revoked at the CA.
fn revoked_identity(ca: &TestCa, dir: &Path, id: &str) {
    let dir = dir.to_str().expect("utf-8");
    vcsdk_tests::run_ok(
        "vc",
        &[
            "enroll",
            "--identity-dir",
            dir,
            "--ca-url",
            &ca.url(),
            "--ca-root",
            ca.root_path().to_str().expect("utf-8"),
            "--token",
            &ca.client_token(id),
            "--id",
            id,
        ],
    );
    let list: serde_json::Value =
        serde_json::from_str(&ca.cli(&["list", "--format", "json"])).expect("vc-ca list JSON");
    let serial = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|r| r["subject"] == id)
        .and_then(|r| r["serial"].as_str())
        .unwrap_or_else(|| panic!("no serial for {id} in {list}"))
        .to_owned();
    ca.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"]);
}

#[test]
#[ignore = "run by scripts/c-tests.sh, which builds the C program"]
fn two_c_clients_call_each_other_and_every_refusal_reaches_c() {
    let binary = program("VCSDK_C_CALLS");
    let ca = TestCa::start(&[]);
    let other = TestCa::start(&["--name", "Other CA"]);
    let server = TestServer::start(
        &ca,
        &[
            "keepalive_secs = 2",
            "ring_timeout_secs = 20",
            "crl_refresh_secs = 1",
        ],
    );
    let work = tempfile::tempdir().expect("tempdir");
    revoked_identity(&ca, &work.path().join("carol"), "carol");
    // Let the server load the CRL that revokes carol.
    std::thread::sleep(Duration::from_secs(2));
    let voucher = server
        .cli(&["voucher", "create", "--amount", "5.00"])
        .trim()
        .to_owned();
    let mut c = command(&binary);
    c.env("VC_WORK", work.path())
        .env("VC_CA_URL", ca.url())
        .env("VC_CA_ROOT", ca.root_path())
        .env("VC_SERVER", server.addr())
        .env("VC_TOKEN_ALICE", ca.client_token("alice"))
        .env("VC_TOKEN_BOB", ca.client_token("bob"))
        .env("VC_TOKEN_SPARE", ca.client_token("dave"))
        .env("VC_VOUCHER", voucher)
        .env("VC_OTHER_CA_URL", other.url())
        .env("VC_OTHER_CA_ROOT", other.root_path())
        .env("VC_OTHER_TOKEN", other.client_token("mallory"))
        .env("VC_REVOKED_DIR", work.path().join("carol"));
    let out = finish(c);
    assert_success(&[("calls", &out)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("all C call tests passed"), "{stdout}");
}

#[test]
#[ignore = "run by scripts/c-tests.sh, which builds the C program"]
fn three_c_clients_hold_a_conference() {
    let binary = program("VCSDK_C_CONFERENCE");
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["keepalive_secs = 2", "rate_per_minute = 0"]);
    let work = tempfile::tempdir().expect("tempdir");
    let mut c = command(&binary);
    c.env("VC_WORK", work.path())
        .env("VC_CA_URL", ca.url())
        .env("VC_CA_ROOT", ca.root_path())
        .env("VC_SERVER", server.addr())
        .env("VC_TOKEN_ALICE", ca.client_token("alice"))
        .env("VC_TOKEN_BOB", ca.client_token("bob"))
        .env("VC_TOKEN_CAROL", ca.client_token("carol"));
    let out = finish(c);
    assert_success(&[("conference", &out)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("all C conference tests passed"), "{stdout}");
}

/// Runs the life-cycle program `binary` (under the runner when `runner`) against a fresh CA and
/// server, with `cycles` connect/free cycles, and returns what it printed.
fn lifecycle(binary: &Path, runner: bool, cycles: u32) -> String {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["keepalive_secs = 2"]);
    let work = tempfile::tempdir().expect("tempdir");
    let mut c = if runner {
        command(binary)
    } else {
        let mut c = Command::new(binary);
        c.stdin(Stdio::null());
        c
    };
    c.env("VC_WORK", work.path())
        .env("VC_CA_URL", ca.url())
        .env("VC_CA_ROOT", ca.root_path())
        .env("VC_SERVER", server.addr())
        .env("VC_TOKEN_ALICE", ca.client_token("alice"))
        .env("VC_CYCLES", cycles.to_string());
    let out = finish(c);
    assert_success(&[("lifecycle", &out)]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("all C life-cycle tests passed"), "{stdout}");
    stdout
}

#[test]
#[ignore = "run by scripts/c-tests.sh, which builds the C program"]
fn c_clients_connected_and_freed_many_times_leave_nothing_behind() {
    let under_runner = std::env::var("VCSDK_C_RUNNER").is_ok_and(|r| !r.trim().is_empty());
    // Under valgrind every cycle takes ~30 times longer: fewer cycles still show a leak (the
    // leak check names it) and a descriptor left open.
    let cycles = if under_runner { 60 } else { 200 };
    let said = lifecycle(&program("VCSDK_C_LIFECYCLE"), true, cycles);
    println!("{said}");
    if let Some(plain) = std::env::var_os("VCSDK_C_LIFECYCLE_PLAIN") {
        let said = lifecycle(Path::new(&plain), false, 200);
        assert!(!said.contains("heap not measured"), "{said}");
        println!("{said}");
    }
}

#[test]
#[ignore = "run by scripts/c-tests.sh, which builds the C sample"]
fn the_c_sample_streams_a_file_to_another_instance_of_itself() {
    let binary = program("VCSDK_C_SAMPLE");
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["keepalive_secs = 2", "ring_timeout_secs = 20"]);
    let work = tempfile::tempdir().expect("tempdir");
    let voucher = server
        .cli(&["voucher", "create", "--amount", "10.00"])
        .trim()
        .to_owned();
    let file = work.path().join("clip.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).expect("write the file");
    let saved = work.path().join("saved");
    std::fs::create_dir(&saved).expect("mkdir");
    let common = |c: &mut Command, id: &str| {
        c.arg("--dir")
            .arg(work.path().join(id))
            .arg("--ca-url")
            .arg(ca.url())
            .arg("--ca-root")
            .arg(ca.root_path())
            .arg("--token")
            .arg(ca.client_token(id))
            .arg("--id")
            .arg(id)
            .arg("--server")
            .arg(server.addr());
    };
    let mut listen = command(&binary);
    common(&mut listen, "bob");
    listen
        .arg("listen")
        .arg("--save")
        .arg(&saved)
        .arg("--calls")
        .arg("1")
        .arg("--timeout")
        .arg(WAIT_SECS);
    let listener = std::thread::spawn(move || finish(listen));
    // The caller retries while bob is not online yet (its sample prints that it waits).
    let mut call = command(&binary);
    common(&mut call, "alice");
    call.arg("--voucher")
        .arg(&voucher)
        .arg("call")
        .arg("bob")
        .arg("--send")
        .arg(&file)
        .arg("--wait-online")
        .arg(WAIT_SECS);
    let caller = finish(call);
    let listener = listener.join().expect("listener thread");
    assert_success(&[
        ("the calling sample", &caller),
        ("the listening sample", &listener),
    ]);
    let said = String::from_utf8_lossy(&caller.stdout);
    assert!(
        said.contains("the receiver saved identical bytes"),
        "{said}"
    );
    assert!(said.contains("balance"), "{said}");
    assert!(said.contains("frames sent"), "{said}");
    assert_eq!(
        std::fs::read(saved.join("clip.bin")).expect("the saved file"),
        data
    );
}

#[test]
#[ignore = "run by scripts/c-tests.sh, which builds the C sample"]
fn the_c_sample_streams_a_file_to_vc_listen_through_the_relay() {
    let binary = program("VCSDK_C_SAMPLE");
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &["keepalive_secs = 2", "ring_timeout_secs = 20"]);
    let work = tempfile::tempdir().expect("tempdir");
    let voucher = server
        .cli(&["voucher", "create", "--amount", "10.00"])
        .trim()
        .to_owned();
    let file = work.path().join("notes.txt");
    let data: Vec<u8> = (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&file, &data).expect("write the file");
    let saved = work.path().join("saved");
    std::fs::create_dir(&saved).expect("mkdir");

    // bob is the Rust command-line client.
    let bob = work.path().join("bob");
    let bob = bob.to_str().expect("utf-8");
    vcsdk_tests::run_ok(
        "vc",
        &[
            "enroll",
            "--identity-dir",
            bob,
            "--ca-url",
            &ca.url(),
            "--ca-root",
            ca.root_path().to_str().expect("utf-8"),
            "--token",
            &ca.client_token("bob"),
            "--id",
            "bob",
        ],
    );
    vcsdk_tests::run_ok(
        "vc",
        &[
            "register",
            "--server",
            &server.addr(),
            "--identity-dir",
            bob,
            "--accept-terms",
        ],
    );
    let mut listen = Command::new(vcsdk_tests::binary("vc"));
    listen.stdin(Stdio::null()).args([
        "listen",
        "--server",
        &server.addr(),
        "--identity-dir",
        bob,
        "--auto-accept",
        "--max-calls",
        "1",
        "--save",
        saved.to_str().expect("utf-8"),
    ]);
    // The sample retries while bob is not online yet.
    let listener = std::thread::spawn(move || finish(listen));

    let mut call = command(&binary);
    call.arg("--dir")
        .arg(work.path().join("alice"))
        .arg("--ca-url")
        .arg(ca.url())
        .arg("--ca-root")
        .arg(ca.root_path())
        .arg("--token")
        .arg(ca.client_token("alice"))
        .arg("--id")
        .arg("alice")
        .arg("--server")
        .arg(server.addr())
        .arg("--voucher")
        .arg(&voucher)
        .arg("call")
        .arg("bob")
        .arg("--send")
        .arg(&file)
        .arg("--frame-size")
        .arg("4000")
        .arg("--relay-only")
        .arg("--wait-online")
        .arg(WAIT_SECS);
    let caller = finish(call);
    let listener = listener.join().expect("listener thread");
    assert_success(&[("the calling sample", &caller), ("vc listen", &listener)]);
    let said = String::from_utf8_lossy(&caller.stdout);
    assert!(
        said.contains("the receiver saved identical bytes"),
        "{said}"
    );
    assert!(said.contains("media (relayed by the server)"), "{said}");
    assert_eq!(
        std::fs::read(saved.join("notes.txt")).expect("the file vc listen saved"),
        data
    );
    let heard = String::from_utf8_lossy(&listener.stdout);
    assert!(heard.contains("saved "), "{heard}");
}
