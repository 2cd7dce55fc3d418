//! Test harness: starts the real `vc-ca` (and later `vc-server`) binaries on 127.0.0.1 with port 0
//! and temporary data directories, reads the address they log, and stops them when dropped.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a process may take to report its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The path of a binary built from this workspace (next to the running test's directory).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// Runs a binary to completion with `args`, returning its output.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(binary(name))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("spawn")
}

/// Runs a binary that must succeed; returns its standard output.
pub fn run_ok(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A running server process whose log is collected.
pub struct Process {
    child: Child,
    /// The address it reported with `listening on HOST:PORT`.
    pub addr: std::net::SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Process {
    /// Starts `name` with `args` and waits for its `listening on` line.
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut command = Command::new(binary(name));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("stdout")),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.split("listening on ").nth(1) {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let started = Instant::now();
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(addr) => break addr.parse().expect("listening address"),
                Err(_) if started.elapsed() > START_TIMEOUT => {
                    let _ = child.kill();
                    panic!(
                        "{name} did not report its address:\n{}",
                        log.lock().unwrap()
                    );
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("{name} exited with {status}:\n{}", log.lock().unwrap());
                    }
                }
            }
        };
        Process { child, addr, log }
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns whether it exited.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA initialised in a temporary directory and served on 127.0.0.1 with port 0.
pub struct TestCa {
    /// The data directory.
    pub dir: tempfile::TempDir,
    /// The running `vc-ca serve`.
    pub process: Process,
}

impl TestCa {
    /// `vc-ca init` with the extra `init_args`, then `vc-ca serve`.
    pub fn start(init_args: &[&str]) -> TestCa {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("ca");
        let data = data.to_str().expect("utf-8 path");
        let mut args = vec!["init", "--data-dir", data];
        args.extend_from_slice(init_args);
        run_ok("vc-ca", &args);
        let process = Process::start(
            "vc-ca",
            &["serve", "--data-dir", data, "--listen", "127.0.0.1:0"],
            &[("RUST_LOG", "debug")],
        );
        TestCa { dir, process }
    }

    /// The data directory path.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.process.addr.port())
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir().join("root.pem")).expect("root.pem")
    }

    /// Path of the root certificate.
    pub fn root_path(&self) -> PathBuf {
        self.data_dir().join("root.pem")
    }

    /// A new one-time token for a client id, made with `vc-ca token create`.
    pub fn client_token(&self, id: &str) -> String {
        self.cli(&["token", "create", "--client", id])
            .trim()
            .to_owned()
    }

    /// Runs `vc-ca ARGS --data-dir DIR`, which must succeed.
    pub fn cli(&self, args: &[&str]) -> String {
        let data = self.data_dir();
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--data-dir", data.to_str().expect("utf-8 path")]);
        run_ok("vc-ca", &all)
    }
}

/// Whether `path` exists and has exactly the Unix permissions `mode`.
pub fn has_mode(path: &Path, mode: u32) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777 == mode)
        .unwrap_or(false)
}
