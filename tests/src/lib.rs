//! Test harness: starts the real `vc-ca` (and later `vc-server`) binaries on 127.0.0.1 with port 0
//! and temporary data directories, reads the address they log, and stops them when dropped.
#![forbid(unsafe_code)]

pub mod conference;

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
        Self::launch(name, args, env, true)
    }

    /// Starts `name` with `args` without waiting for anything (a client such as `vc`); its
    /// `addr` is unspecified.
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
        Self::launch(name, args, env, false)
    }

    fn launch(name: &str, args: &[&str], env: &[(&str, &str)], listens: bool) -> Process {
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
        if !listens {
            return Process {
                child,
                addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                log,
            };
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most `timeout`) until the log contains `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log().contains(text)
    }

    /// Sends a signal (e.g. `HUP`) to the process.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
    }

    /// Waits (at most `timeout`) for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Kills the process at once (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        Self::start_with(init_args, &[])
    }

    /// `vc-ca init` with the extra `init_args`, ca.toml settings overridden by `settings`
    /// (`key = value` lines replacing the line of that key, in whichever table it is), then
    /// `vc-ca serve`.
    pub fn start_with(init_args: &[&str], settings: &[&str]) -> TestCa {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("ca");
        let data = data.to_str().expect("utf-8 path");
        let mut args = vec!["init", "--data-dir", data];
        args.extend_from_slice(init_args);
        run_ok("vc-ca", &args);
        if !settings.is_empty() {
            let path = dir.path().join("ca").join("ca.toml");
            let text = std::fs::read_to_string(&path).expect("ca.toml");
            std::fs::write(&path, replace_settings(&text, settings, "ca.toml"))
                .expect("write ca.toml");
        }
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

/// `text` (a TOML settings file) with each `key = value` line of `settings` replacing the line
/// of that key, in whichever table it is; a key the file does not have is a test error.
fn replace_settings(text: &str, settings: &[&str], file: &str) -> String {
    let mut config = text.to_owned();
    for line in settings {
        let key = line.split('=').next().expect("key").trim();
        let mut found = false;
        config = config
            .lines()
            .map(|l| {
                if l.split('=').next().map(str::trim) == Some(key) {
                    found = true;
                    line.to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(found, "{file} has no setting {key:?}");
    }
    config
}

/// Whether `path` exists and has exactly the Unix permissions `mode`.
pub fn has_mode(path: &Path, mode: u32) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777 == mode)
        .unwrap_or(false)
}

/// A conferencing server enrolled with a [`TestCa`] and served on 127.0.0.1 with port 0.
pub struct TestServer {
    /// The data directory.
    pub dir: tempfile::TempDir,
    /// The running `vc-server serve`.
    pub process: Process,
}

impl TestServer {
    /// `vc-server init`, settings overridden by `settings` (`key = value` lines replacing the
    /// line of that key, in whichever table of server.toml it is), `enroll`
    /// with a server token for `localhost,127.0.0.1`, then `serve`.
    pub fn start(ca: &TestCa, settings: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("server");
        let data_str = data.to_str().expect("utf-8 path").to_owned();
        let root = ca.root_path();
        run_ok(
            "vc-server",
            &[
                "init",
                "--data-dir",
                &data_str,
                "--ca-root",
                root.to_str().expect("utf-8"),
            ],
        );
        let config_path = data.join("server.toml");
        let config = std::fs::read_to_string(&config_path).expect("server.toml");
        let config = replace_settings(&config, settings, "server.toml");
        std::fs::write(&config_path, config).expect("write server.toml");
        let token = ca
            .cli(&["token", "create", "--server", "localhost,127.0.0.1"])
            .trim()
            .to_owned();
        run_ok(
            "vc-server",
            &[
                "enroll",
                "--data-dir",
                &data_str,
                "--ca-url",
                &ca.url(),
                "--token",
                &token,
                "--hostname",
                "localhost,127.0.0.1",
            ],
        );
        let process = Self::serve(&data_str, "127.0.0.1:0");
        TestServer { dir, process }
    }

    /// Starts `vc-server serve` on `listen` for an existing data directory.
    pub fn serve(data: &str, listen: &str) -> Process {
        Process::start(
            "vc-server",
            &[
                "serve",
                "--data-dir",
                data,
                "--listen",
                listen,
                "--media-listen",
                "127.0.0.1:0",
            ],
            &[("RUST_LOG", "debug")],
        )
    }

    /// The data directory path.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("server")
    }

    /// The UDP address of the media relay (from its `media relay on HOST:PORT` line).
    pub fn relay_addr(&self) -> std::net::SocketAddr {
        let log = self.process.log();
        log.lines()
            .find_map(|l| l.split("media relay on ").nth(1))
            .expect("the server reports its media relay")
            .trim()
            .parse()
            .expect("relay address")
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.process.addr.port())
    }

    /// Runs `vc-server ARGS --data-dir DIR`, which must succeed.
    pub fn cli(&self, args: &[&str]) -> String {
        let data = self.data_dir();
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--data-dir", data.to_str().expect("utf-8 path")]);
        run_ok("vc-server", &all)
    }
}

/// A hand-driven signalling connection, for what the SDK would never send.
pub struct RawClient {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects to `addr` with TLS (server checked against `root_pem`, name `localhost`),
    /// presenting `identity` if given.
    pub async fn connect(
        addr: &str,
        root_pem: &[u8],
        identity: Option<vcsdk::tls::CertifiedKey>,
    ) -> Result<RawClient, String> {
        let check =
            vcsdk::pki::CertificateCheck::from_root_pem(root_pem).map_err(|e| e.to_string())?;
        let config = vcsdk::tls::client_config(Arc::new(std::sync::RwLock::new(check)), identity)
            .map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(RawClient {
            stream,
            buf: Vec::new(),
        })
    }

    /// Writes raw bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| e.to_string())?;
        self.stream.flush().await.map_err(|e| e.to_string())
    }

    /// Writes one message as a frame.
    pub async fn send(
        &mut self,
        message: &vcsdk::proto::signal::ClientMessage,
    ) -> Result<(), String> {
        let frame = vcsdk::proto::frame::encode(message).map_err(|e| e.to_string())?;
        self.send_bytes(&frame).await
    }

    /// Sends `hello` for the current protocol version and returns the answer.
    pub async fn hello(&mut self) -> Result<vcsdk::proto::signal::ServerMessage, String> {
        self.send(&vcsdk::proto::signal::ClientMessage::Hello {
            protocol: vcsdk::proto::signal::PROTOCOL_VERSION,
            agent: "raw".into(),
        })
        .await?;
        self.recv().await
    }

    /// Sends `hello` for protocol `version` and returns the answer as it came (JSON).
    pub async fn hello_version(&mut self, version: u32) -> Result<serde_json::Value, String> {
        self.send(&vcsdk::proto::signal::ClientMessage::Hello {
            protocol: version,
            agent: format!("raw, protocol {version}"),
        })
        .await?;
        self.recv_json().await
    }

    /// Reads the next message that is not a ping (answering pings), within 10 s, as it came
    /// (JSON): what an older or foreign client would have to parse.
    pub async fn recv_json(&mut self) -> Result<serde_json::Value, String> {
        loop {
            let read = tokio::time::timeout(
                Duration::from_secs(10),
                vcsdk::proto::frame::read_frame(&mut self.stream, &mut self.buf),
            )
            .await
            .map_err(|_| "timed out".to_string())?;
            match read {
                Ok(true) => {}
                Ok(false) => return Err("closed".into()),
                Err(e) => return Err(e.to_string()),
            }
            let message: serde_json::Value =
                serde_json::from_slice(&self.buf).map_err(|e| e.to_string())?;
            if message["type"] == "ping" {
                let nonce = message["nonce"].as_u64().ok_or("a ping without a nonce")?;
                self.send(&vcsdk::proto::signal::ClientMessage::Pong { nonce })
                    .await?;
                continue;
            }
            return Ok(message);
        }
    }

    /// Sends a request with `id`.
    pub async fn request(
        &mut self,
        id: u64,
        request: vcsdk::proto::signal::Request,
    ) -> Result<(), String> {
        self.send(&vcsdk::proto::signal::ClientMessage::Request { id, request })
            .await
    }

    /// Reads the next message that is not a ping (answering pings), within 10 s.
    pub async fn recv(&mut self) -> Result<vcsdk::proto::signal::ServerMessage, String> {
        let message = self.recv_json().await?;
        serde_json::from_value(message).map_err(|e| e.to_string())
    }
}

/// Enrolls the client `id` with `ca` through the SDK, into `home/id`.
pub async fn enroll(ca: &TestCa, home: &Path, id: &str) -> vcsdk::identity::IdentityStore {
    let store = vcsdk::identity::IdentityStore::new(home.join(id));
    store
        .enroll(
            &ca.url(),
            &ca.root_pem(),
            &ca.client_token(id),
            vcsdk::pki::CsrSubject::Client(vcsdk::ClientId::new(id).expect("id")),
        )
        .await
        .expect("enrollment");
    store
}

/// A connected SDK client and its events.
pub type Connected = (
    vcsdk::client::Client,
    tokio::sync::mpsc::Receiver<vcsdk::client::ClientEvent>,
);

/// Connects `store`'s identity to `server` (pinning `ca`'s root, no reconnection) and registers.
pub async fn online(
    server: &TestServer,
    ca: &TestCa,
    store: &vcsdk::identity::IdentityStore,
) -> Connected {
    let identity = Arc::new(store.load().expect("identity"));
    let check = vcsdk::pki::CertificateCheck::from_root_pem(&ca.root_pem()).expect("root");
    let mut options = vcsdk::client::ClientOptions::new(server.addr(), identity, check);
    options.server_name = Some("localhost".into());
    options.reconnect = false;
    let (client, events) = vcsdk::client::Client::connect(options)
        .await
        .expect("connect");
    client
        .register(&client.welcome().terms_version)
        .await
        .expect("register");
    (client, events)
}

/// Issues `count` client identities (`PREFIX00000`, `PREFIX00001`, …) in-process with the CA
/// library, on the same database the running `vc-ca` uses: for load tools, where enrolling
/// thousands of clients over HTTPS would dominate the setup.
pub fn issue_identities(
    ca: &TestCa,
    prefix: &str,
    count: usize,
) -> Vec<Arc<vcsdk::identity::Identity>> {
    let authority = vcca::CertificationAuthority::open(&ca.data_dir()).expect("CA");
    let root = ca.root_pem();
    (0..count)
        .map(|i| {
            let id = vcsdk::ClientId::new(&format!("{prefix}{i:05}")).expect("id");
            let token = authority
                .create_token(&vcca::grant::Grant::Client(id.clone()), None)
                .expect("token");
            let key = vcsdk::pki::new_key_pair().expect("key");
            let csr = vcsdk::pki::CsrSubject::Client(id)
                .csr_pem(&key)
                .expect("csr");
            let cert = authority.enroll(&token, &csr).expect("enroll");
            let pem = vcsdk::pki::pem::encode("CERTIFICATE", &cert.der);
            Arc::new(
                vcsdk::identity::Identity::from_pem(pem.as_bytes(), &key.serialize_pem(), &root)
                    .expect("identity"),
            )
        })
        .collect()
}

/// A CA run in-process with the CA library (for tests of what a compromised server or network
/// could deliver, where the CA's HTTPS API is not what is being tested).
pub struct LocalCa {
    _dir: tempfile::TempDir,
    /// The authority (to revoke with, or read the CRL of).
    pub ca: vcca::CertificationAuthority,
}

impl LocalCa {
    /// A fresh CA (its root lives a year; certificates the default 7 days).
    pub fn new() -> LocalCa {
        let dir = tempfile::tempdir().expect("tempdir");
        vcca::CertificationAuthority::init(
            dir.path(),
            &vcca::config::CaConfig::default(),
            Duration::from_secs(365 * 86_400),
        )
        .expect("init");
        let ca = vcca::CertificationAuthority::open(dir.path()).expect("open");
        LocalCa { _dir: dir, ca }
    }

    fn issue(
        &self,
        grant: vcca::grant::Grant,
        subject: vcsdk::pki::CsrSubject,
    ) -> vcsdk::identity::Identity {
        let token = self.ca.create_token(&grant, None).expect("token");
        let key = vcsdk::pki::new_key_pair().expect("key");
        let cert = self
            .ca
            .enroll(&token, &subject.csr_pem(&key).expect("csr"))
            .expect("enroll");
        let pem = vcsdk::pki::pem::encode("CERTIFICATE", &cert.der);
        vcsdk::identity::Identity::from_pem(
            pem.as_bytes(),
            &key.serialize_pem(),
            self.ca.root_pem().as_bytes(),
        )
        .expect("identity")
    }

    /// A client identity for `id`.
    pub fn client(&self, id: &str) -> vcsdk::identity::Identity {
        let id = vcsdk::ClientId::new(id).expect("id");
        self.issue(
            vcca::grant::Grant::Client(id.clone()),
            vcsdk::pki::CsrSubject::Client(id),
        )
    }

    /// A server identity for `localhost`.
    pub fn server(&self) -> vcsdk::identity::Identity {
        let names = vec!["localhost".to_string()];
        self.issue(
            vcca::grant::Grant::Server(names.clone()),
            vcsdk::pki::CsrSubject::Server(names),
        )
    }

    /// The pinned root with the CA's current CRL.
    pub fn check(&self) -> vcsdk::pki::CertificateCheck {
        let mut check = vcsdk::pki::CertificateCheck::new(self.ca.root().clone()).expect("root");
        check
            .set_crl_der(&self.ca.current_crl().expect("crl").der)
            .expect("crl");
        check
    }

    /// Revokes `identity`'s certificate (key compromise).
    pub fn revoke(&self, identity: &vcsdk::identity::Identity) {
        self.ca
            .revoke_serial(
                &identity.info().serial,
                vcsdk::proto::ca::RevocationReason::KeyCompromise,
                vcca::service::Actor::Operator,
            )
            .expect("revoke");
    }
}

impl Default for LocalCa {
    fn default() -> Self {
        Self::new()
    }
}
