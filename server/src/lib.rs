//! vc-server: the vcsdk conferencing server. It admits clients only by certificate (mutual TLS 1.3
//! checked against the pinned CA root and the CA's CRL), keeps the registered and active user
//! lists, and routes calls between clients (see `docs/protocol.md`, signalling protocol v1).
#![forbid(unsafe_code)]

pub mod cdr;
pub mod conference;
pub mod config;
pub mod connection;
pub mod hub;
pub mod limits;
pub mod relay;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use vcsdk::identity::{AutoRenewal, IdentityStore};
use vcsdk::pki::{CertificateCheck, CsrSubject, Usage};
use vcsdk::tls::{self, PkiClientVerifier, ReloadableCertificate, SharedCheck};

use config::{ServerConfig, CONFIG_FILE};
use hub::Hub;
use relay::Relay;
use store::Store;

/// File name of the pinned CA root in the data directory.
pub const ROOT_FILE: &str = "root.pem";
/// Directory of the server's identity (key, certificate) in the data directory.
pub const IDENTITY_DIR: &str = "identity";

/// `vc-server init`: pins the CA root and writes the default settings into `dir`.
pub fn init(dir: &Path, ca_root: &Path) -> Result<(), String> {
    if dir.join(CONFIG_FILE).exists() || dir.join(ROOT_FILE).exists() {
        return Err(format!(
            "{} already holds a server; refusing to overwrite it",
            dir.display()
        ));
    }
    let root = std::fs::read(ca_root).map_err(|e| format!("reading {}: {e}", ca_root.display()))?;
    CertificateCheck::from_root_pem(&root).map_err(|e| format!("{}: {e}", ca_root.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let config = crate::config::commented_toml(&ServerConfig::default())?;
    let write = |file: &str, data: &[u8]| {
        vcsdk::util::write_atomic(&dir.join(file), data, 0o644)
            .map_err(|e| format!("writing {file}: {e}"))
    };
    write(ROOT_FILE, &root)?;
    Store::create(dir)?;
    // Written last: a directory holding server.toml is an initialised one.
    write(CONFIG_FILE, config.as_bytes())?;
    Ok(())
}

/// Lock file that one serving process holds in the data directory.
pub const SERVE_LOCK: &str = "serve.lock";

/// Takes the data directory for one serving process (before binding anything): a second
/// `vc-server serve` on it is refused and told which process holds it. Hold the lock for as long
/// as [`serve`] runs.
pub fn lock_data_dir(dir: &Path) -> Result<vcsdk::dir_lock::DirLock, String> {
    require_initialised(dir)?;
    vcsdk::dir_lock::DirLock::acquire(dir, SERVE_LOCK, "vc-server serve")
}

/// Refuses a directory that `vc-server init` did not make (a mistyped `--data-dir` must not
/// become a fresh, empty server).
pub fn require_initialised(dir: &Path) -> Result<(), String> {
    if dir.join(CONFIG_FILE).is_file() && dir.join(store::DB_FILE).is_file() {
        Ok(())
    } else {
        Err(format!(
            "{} is not a server data directory (no {CONFIG_FILE} and {}); check --data-dir, or create one with `vc-server init --data-dir {} --ca-root ROOT.pem`",
            dir.display(),
            store::DB_FILE,
            dir.display()
        ))
    }
}

/// `vc-server enroll`: obtains the server's certificate from the CA with a one-time token.
pub async fn enroll(
    dir: &Path,
    ca_url: &str,
    token: &str,
    hostnames: Vec<String>,
) -> Result<String, String> {
    let root = std::fs::read(dir.join(ROOT_FILE)).map_err(|e| {
        format!(
            "{}: {e} (run vc-server init first)",
            dir.join(ROOT_FILE).display()
        )
    })?;
    let identity = IdentityStore::new(dir.join(IDENTITY_DIR))
        .enroll(ca_url, &root, token, CsrSubject::Server(hostnames))
        .await
        .map_err(|e| e.to_string())?;
    let until = time::OffsetDateTime::from_unix_timestamp(identity.info().not_after)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Ok(format!(
        "enrolled {} (serial {}, valid until {until})",
        identity.info().host_names.join(","),
        identity.info().serial,
    ))
}

/// A running server: its hub, certificate and the CA it renews with.
pub struct Server {
    /// Clients, calls and the database.
    pub hub: Arc<Hub>,
    /// Where clients renew their certificates.
    pub ca_url: String,
    certificate_pem: RwLock<String>,
}

impl Server {
    /// The server's current certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        self.certificate_pem
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Serves on `listener` (and relays media on `media`, if given) until `shutdown` completes; then
/// ends every call (recorded), says goodbye to every client and commits the database.
/// `refresh_now` triggers an immediate CRL refresh.
pub async fn serve(
    dir: PathBuf,
    listener: TcpListener,
    media: Option<tokio::net::UdpSocket>,
    shutdown: impl std::future::Future<Output = ()>,
    mut refresh_now: tokio::sync::mpsc::Receiver<()>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    require_initialised(&dir)?;
    let config = Arc::new(ServerConfig::load(&dir)?);
    let identity_store = IdentityStore::new(dir.join(IDENTITY_DIR));
    let identity = identity_store
        .load()
        .map_err(|e| format!("{e} (run vc-server enroll first)"))?;
    let pinned = std::fs::read(dir.join(ROOT_FILE)).map_err(|e| format!("{ROOT_FILE}: {e}"))?;
    let pinned = CertificateCheck::from_root_pem(&pinned).map_err(|e| e.to_string())?;
    if pinned.root() != identity.root() {
        return Err("the identity was enrolled with another CA than the pinned root".into());
    }
    let check = match identity_store.refresh_crl().await {
        Ok(check) => check,
        Err(e) => {
            let cached = identity_store
                .certificate_check()
                .map_err(|e| e.to_string())?;
            if !cached.has_crl() {
                return Err(format!(
                    "cannot fetch the CRL from the CA and none is cached: {e}"
                ));
            }
            tracing::warn!(error = %e, "CRL fetch failed; using the cached CRL");
            cached
        }
    };
    let shared: SharedCheck = Arc::new(RwLock::new(check));
    let certificate =
        ReloadableCertificate::new(identity.certified_key()).map_err(|e| e.to_string())?;
    let verifier = PkiClientVerifier::mandatory(shared.clone(), vec![Usage::Client]);
    let tls_config =
        tls::reloadable_server_config(certificate.clone(), verifier).map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
    let ca_url = identity_store.ca_client().map_err(|e| e.to_string())?.url();
    let store = Arc::new(Store::open_recovering(&dir)?);
    let hub = Hub::new(store.clone(), config.clone());
    let relay_task = match media {
        Some(socket) => {
            let bound = socket.local_addr().map_err(|e| e.to_string())?;
            let advertised = if config.media_advertise.is_empty() {
                bound
            } else {
                config
                    .media_advertise
                    .parse()
                    .map_err(|e| format!("media_advertise: {e}"))?
            };
            let relay = Arc::new(Relay::new(
                socket,
                advertised,
                config.relay_max_kbit_per_sec,
            ));
            hub.set_media_relay(relay.clone());
            tracing::info!(%bound, %advertised, "media relay ready");
            Some(tokio::spawn(async move { relay.run().await }))
        }
        None => None,
    };
    let server = Arc::new(Server {
        hub: hub.clone(),
        ca_url,
        certificate_pem: RwLock::new(vcsdk::pki::pem::encode(
            "CERTIFICATE",
            identity.certificate(),
        )),
    });

    // The server's own certificate renews itself; new handshakes present the new one.
    let renewal = AutoRenewal::spawn(identity_store.clone(), identity);
    hub.set_authority(renewal.current(), shared.clone());
    let mut renewed = renewal.subscribe();
    let renewer = {
        let server = server.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            while renewed.changed().await.is_ok() {
                let identity = renewed.borrow().clone();
                if let Err(e) = certificate.replace(identity.certified_key()) {
                    tracing::error!(error = %e, "renewed certificate not installed");
                    continue;
                }
                hub.set_identity(identity.clone());
                *server
                    .certificate_pem
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) =
                    vcsdk::pki::pem::encode("CERTIFICATE", identity.certificate());
            }
        })
    };

    // The CRL: refreshed on a schedule and on demand; clients it refuses are disconnected.
    let refresher = {
        let hub = hub.clone();
        let every = Duration::from_secs(config.crl_refresh_secs);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    Some(()) = refresh_now.recv() => {}
                }
                match identity_store.refresh_crl().await {
                    Ok(check) => {
                        *shared.write().unwrap_or_else(|p| p.into_inner()) = check.clone();
                        let dropped = hub.sweep(&check);
                        tracing::debug!(dropped, "CRL refreshed");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "CRL refresh failed; keeping the previous CRL")
                    }
                }
            }
        })
    };

    let limit = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let per_address = limits::AddressSlots::new(config.max_connections_per_address);
    let mut refused_addresses = limits::RefusalLog::default();
    ready(listener.local_addr().map_err(|e| e.to_string())?);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => permit.map_err(|e| e.to_string())?,
        };
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // One address gets its share of the slots and no more: the rest is closed at once.
        let Some(slot) = per_address.acquire(addr.ip()) else {
            refused_addresses.note(addr);
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let server = server.clone();
        let handshake_timeout = config.handshake_timeout();
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = slot;
            let _ = tcp.set_nodelay(true);
            match vcsdk::tls::accept_or_refuse(&acceptor, tcp, handshake_timeout).await {
                Ok(tls) => connection::serve(server, tls, addr).await,
                Err(why) => tracing::debug!(%addr, "{why}"),
            }
        });
    }

    tracing::info!("shutting down: ending calls and closing connections");
    hub.shutdown();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while hub.connected() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refresher.abort();
    renewer.abort();
    if let Some(task) = relay_task {
        task.abort();
    }
    drop(renewal);
    store.flush().await;
    store.close();
    tracing::info!("shut down");
    Ok(())
}
