//! A client's or server's identity: its P-256 key, its certificate and the pinned CA root, kept in
//! a directory, enrolled with a one-time token, renewed (on demand and automatically once two
//! thirds of its lifetime have passed) and revoked.
//!
//! Directory layout: `cert.pem` (the certificate), `key.pem` (PKCS#8, mode 0600), `root.pem`
//! (the pinned CA root), `identity.toml` (CA URL, id, usage) and `crl.der` (the last CRL fetched).
//! Revoked certificates and their keys are moved to `revoked/SERIAL/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::{Deserialize, Serialize};

use crate::ca_client::CaClient;
use crate::pki::{self, CertificateCheck, CertificateInfo, CsrSubject, Usage};
use crate::proto::ca::{CertificateResponse, RevocationReason, RevokeResponse};
use crate::tls::CertifiedKey;
use crate::util::{unix_now, write_atomic};
use crate::{ClientId, Error, Result};

/// File holding the certificate.
pub const CERT_FILE: &str = "cert.pem";
/// File holding the private key (mode 0600).
pub const KEY_FILE: &str = "key.pem";
/// File holding the pinned CA root.
pub const ROOT_FILE: &str = "root.pem";
/// File holding the identity's settings.
pub const CONFIG_FILE: &str = "identity.toml";
/// File caching the last CRL fetched from the CA.
pub const CRL_FILE: &str = "crl.der";
/// The new key during a renewal, before the new certificate is in place.
const NEXT_KEY_FILE: &str = "key.pem.next";

/// Settings stored beside the key and certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredConfig {
    ca_url: String,
    usage: Usage,
    id: String,
    #[serde(default)]
    host_names: Vec<String>,
}

/// A loaded identity: key, certificate and pinned root.
pub struct Identity {
    key: KeyPair,
    certificate: CertificateDer<'static>,
    info: CertificateInfo,
    root: CertificateDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.info.id)
            .field("serial", &self.info.serial)
            .field("not_after", &self.info.not_after)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Builds an identity from PEM texts (certificate, PKCS#8 P-256 key, pinned root), refusing a
    /// key that does not belong to the certificate. For identities kept outside an
    /// [`IdentityStore`] (a platform keystore, or memory).
    pub fn from_pem(certificate_pem: &[u8], key_pem: &str, root_pem: &[u8]) -> Result<Self> {
        let certificate = pki::pem::certificate(certificate_pem, "certificate")?;
        let info = CertificateInfo::parse(&certificate)?;
        let key = pki::parse_key_pair(key_pem)?;
        if key.public_key_raw() != info.public_key.as_slice() {
            return Err(Error::InvalidArgument(
                "the private key does not belong to the certificate".into(),
            ));
        }
        let root = pki::pem::certificate(root_pem, "CA root")?;
        Ok(Identity {
            key,
            certificate,
            info,
            root,
        })
    }

    /// The client id (or, for a server, its first host name).
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The facts of the certificate.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The pinned CA root (DER).
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The certificate and key, for TLS client or server authentication.
    pub fn certified_key(&self) -> CertifiedKey {
        CertifiedKey {
            chain: vec![self.certificate.clone()],
            key: PrivateKeyDer::Pkcs8(self.key.serialize_der().into()),
        }
    }

    /// Signs `message` with the identity key (ECDSA P-256, SHA-256; DER signature).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        rcgen::SigningKey::sign(&self.key, message)
            .map_err(|e| Error::Crypto(format!("signing failed: {e}")))
    }

    /// Whether two thirds of the certificate's lifetime have passed at `now` (Unix seconds).
    pub fn renewal_due(&self, now: i64) -> bool {
        now >= self.info.renewal_due_at()
    }

    fn usage(&self) -> Usage {
        if self.info.client_auth {
            Usage::Client
        } else {
            Usage::Server
        }
    }
}

/// The directory that holds an identity.
#[derive(Clone, Debug)]
pub struct IdentityStore {
    dir: PathBuf,
}

impl IdentityStore {
    /// An identity directory (it need not exist yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        IdentityStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory holds an identity.
    pub fn exists(&self) -> bool {
        self.dir.join(CERT_FILE).exists()
    }

    /// getNewCert: makes a new key, asks the CA at `ca_url` (whose root is `root_pem`) for a
    /// certificate with the one-time `token`, checks the answer, and stores everything.
    ///
    /// Nothing can be lost on the way: the new key is stored before the CA is asked, the
    /// certificate is the commit point (written atomically), and enrolling again with the same
    /// token after a failure (the answer lost, the disk full) gets the same certificate for the
    /// same stored key. A directory whose certificate is revoked, expired or from another CA is
    /// enrolled again, its old files kept aside in `replaced/SERIAL/`; one with a valid
    /// certificate is refused.
    pub async fn enroll(
        &self,
        ca_url: &str,
        root_pem: &[u8],
        token: &str,
        subject: CsrSubject,
    ) -> Result<Identity> {
        let check = CertificateCheck::from_root_pem(root_pem)?;
        let client = CaClient::new(ca_url, check.clone())?;
        if self.exists() {
            self.set_aside_unless_valid(&client, &check).await?;
        }
        let (usage, id, host_names) = match &subject {
            CsrSubject::Client(id) => (Usage::Client, id.to_string(), Vec::new()),
            CsrSubject::Server(names) => (
                Usage::Server,
                names.first().cloned().unwrap_or_default(),
                names.clone(),
            ),
        };
        create_private_dir(&self.dir)?;
        let key = self.pending_key()?;
        let csr = subject.csr_pem(&key)?;
        let issued = client.enroll(token, &csr).await?;
        let identity = accept_issued(&check, key, &issued, usage, &id)?;
        let config = StoredConfig {
            ca_url: client.url(),
            usage,
            id,
            host_names,
        };
        let config_text = toml::to_string(&config).map_err(|e| Error::Store(e.to_string()))?;
        self.write(
            ROOT_FILE,
            pki::pem::encode("CERTIFICATE", check.root()).as_bytes(),
            0o644,
        )?;
        self.write(CONFIG_FILE, config_text.as_bytes(), 0o644)?;
        self.install(&issued.certificate_pem)?;
        Ok(identity)
    }

    /// The key of the request in progress: the one stored by an attempt that did not finish,
    /// or a new one, stored (0600) before anything is sent to the CA.
    fn pending_key(&self) -> Result<KeyPair> {
        let path = self.dir.join(NEXT_KEY_FILE);
        if path.is_file() {
            return read_key(&path);
        }
        let key = pki::new_key_pair()?;
        self.write(NEXT_KEY_FILE, key.serialize_pem().as_bytes(), 0o600)?;
        Ok(key)
    }

    /// Stores an issued certificate (the commit point) and moves the pending key in place;
    /// [`IdentityStore::load`] finishes the move if we stop in between.
    fn install(&self, certificate_pem: &str) -> Result<()> {
        self.write(CERT_FILE, certificate_pem.as_bytes(), 0o644)?;
        std::fs::rename(self.dir.join(NEXT_KEY_FILE), self.dir.join(KEY_FILE)).map_err(|e| {
            Error::io(
                format!("installing the new key in {}", self.dir.display()),
                e,
            )
        })?;
        sync_dir(&self.dir)
    }

    /// Before enrolling again: refuses when the stored certificate is still good (valid, not
    /// revoked by the CA's current CRL); otherwise moves it and its key to `replaced/SERIAL/`.
    async fn set_aside_unless_valid(&self, ca: &CaClient, check: &CertificateCheck) -> Result<()> {
        let certificate = pki::pem::certificate(&self.read(CERT_FILE)?, CERT_FILE)?;
        let info = CertificateInfo::parse(&certificate)?;
        let mut current = check.clone();
        current.set_crl_der(&ca.crl_der().await?)?;
        let usage = if info.client_auth {
            Usage::Client
        } else {
            Usage::Server
        };
        if current
            .verify(
                std::slice::from_ref(&certificate),
                usage,
                None,
                UnixTime::now(),
            )
            .is_ok()
        {
            return Err(Error::InvalidArgument(format!(
                "{} already holds a valid certificate for {} (serial {}, valid until {}); revoke it first or use another directory",
                self.dir.display(),
                info.id,
                info.serial,
                crate::util::rfc3339(info.not_after)
            )));
        }
        let aside = self.dir.join("replaced").join(&info.serial);
        create_private_dir(&aside)?;
        for file in [CERT_FILE, KEY_FILE] {
            let from = self.dir.join(file);
            if from.exists() {
                std::fs::rename(&from, aside.join(file))
                    .map_err(|e| Error::io(format!("setting {file} aside"), e))?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Loads the identity, finishing a renewal that was interrupted after its certificate was
    /// stored, and refusing a key that does not match the certificate.
    pub fn load(&self) -> Result<Identity> {
        if !self.exists() {
            let revoked = self.dir.join("revoked");
            let hint = if revoked.is_dir() {
                " (its last certificate was revoked; enroll again with a new token)"
            } else {
                ""
            };
            return Err(Error::Store(format!(
                "{} holds no identity{hint}",
                self.dir.display()
            )));
        }
        let certificate = pki::pem::certificate(&self.read(CERT_FILE)?, CERT_FILE)?;
        let info = CertificateInfo::parse(&certificate)?;
        let root = pki::pem::certificate(&self.read(ROOT_FILE)?, ROOT_FILE)?;
        let next = self.dir.join(NEXT_KEY_FILE);
        if next.is_file() {
            // The certificate was stored but the key not yet moved: finish. Otherwise the key
            // belongs to a request still in progress (the CA may have certified it already):
            // it stays for the retry.
            let candidate = read_key(&next)?;
            if candidate.public_key_raw() == info.public_key.as_slice() {
                std::fs::rename(&next, self.dir.join(KEY_FILE)).map_err(|e| {
                    Error::io(format!("finishing renewal in {}", self.dir.display()), e)
                })?;
            }
        }
        let key = read_key(&self.dir.join(KEY_FILE))?;
        if key.public_key_raw() != info.public_key.as_slice() {
            return Err(Error::Store(format!(
                "{} does not hold the key of {}",
                KEY_FILE, CERT_FILE
            )));
        }
        Ok(Identity {
            key,
            certificate,
            info,
            root,
        })
    }

    /// The certificate check with the pinned root and the cached CRL, if one was fetched.
    pub fn certificate_check(&self) -> Result<CertificateCheck> {
        let mut check = CertificateCheck::from_root_pem(&self.read(ROOT_FILE)?)?;
        if let Ok(crl) = std::fs::read(self.dir.join(CRL_FILE)) {
            check.set_crl_der(&crl)?;
        }
        Ok(check)
    }

    /// A client for the CA this identity was enrolled with.
    pub fn ca_client(&self) -> Result<CaClient> {
        let config = self.config()?;
        CaClient::new(
            &config.ca_url,
            CertificateCheck::from_root_pem(&self.read(ROOT_FILE)?)?,
        )
    }

    /// Fetches the CA's current CRL, stores it, and returns the check with it installed.
    pub async fn refresh_crl(&self) -> Result<CertificateCheck> {
        let der = self.ca_client()?.crl_der().await?;
        let mut check = CertificateCheck::from_root_pem(&self.read(ROOT_FILE)?)?;
        check.set_crl_der(&der)?;
        self.write(CRL_FILE, &der, 0o644)?;
        Ok(check)
    }

    /// Caches `der` as the CRL that [`IdentityStore::certificate_check`] installs (after it was
    /// checked, e.g. by a [`crate::pki::LiveCheck`]).
    pub fn save_crl(&self, der: &[u8]) -> Result<()> {
        self.write(CRL_FILE, der, 0o644)
    }

    /// updateCert: a new key and certificate for the same id, authorised by the current
    /// certificate. The CA revokes the old one as superseded.
    ///
    /// Nothing can be lost on the way: the new key is stored before the CA is asked (a
    /// read-only or full disk fails here, with the old certificate untouched); the certificate
    /// is the commit point; and when an earlier attempt left its key behind (the CA may have
    /// renewed, the answer or the write was lost), the same certificate is fetched again first.
    pub async fn renew(&self) -> Result<Identity> {
        let current = self.load()?;
        let config = self.config()?;
        let subject = match config.usage {
            Usage::Client => CsrSubject::Client(ClientId::new(&config.id)?),
            Usage::Server => CsrSubject::Server(config.host_names.clone()),
        };
        let retry = self.dir.join(NEXT_KEY_FILE).is_file();
        let key = self.pending_key()?;
        let csr = subject.csr_pem(&key)?;
        let ca = self.ca_client()?;
        let recovered = if retry {
            let previous = pki::pem::encode("CERTIFICATE", &current.certificate);
            match ca.renewal_of(&previous, &csr).await {
                Ok(issued) => Some(issued),
                Err(Error::CaRefused { code, .. })
                    if code == "renewal_unknown" || code == "not_found" =>
                {
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let issued = match recovered {
            Some(issued) => issued,
            None => ca.renew(current.certified_key(), &csr).await?,
        };
        let check = CertificateCheck::new(current.root.clone())?;
        let renewed = accept_issued(&check, key, &issued, current.usage(), &config.id)?;
        self.install(&issued.certificate_pem)?;
        Ok(renewed)
    }

    /// Renews when two thirds of the lifetime have passed; `None` when it is not due yet.
    pub async fn renew_if_due(&self) -> Result<Option<Identity>> {
        if self.load()?.renewal_due(unix_now()) {
            self.renew().await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// revokeCert: revokes the current certificate at the CA and moves it and its key to
    /// `revoked/SERIAL/`, so the directory no longer presents it.
    pub async fn revoke(&self, reason: RevocationReason) -> Result<RevokeResponse> {
        let current = self.load()?;
        let answer = self
            .ca_client()?
            .revoke(current.certified_key(), reason)
            .await?;
        let archive = self.dir.join("revoked").join(&current.info.serial);
        create_private_dir(&archive)?;
        for file in [CERT_FILE, KEY_FILE] {
            std::fs::rename(self.dir.join(file), archive.join(file))
                .map_err(|e| Error::io(format!("archiving {file}"), e))?;
        }
        Ok(answer)
    }

    fn config(&self) -> Result<StoredConfig> {
        let text = String::from_utf8(self.read(CONFIG_FILE)?)
            .map_err(|_| Error::Store(format!("{CONFIG_FILE} is not UTF-8")))?;
        toml::from_str(&text).map_err(|e| Error::Store(format!("{CONFIG_FILE}: {e}")))
    }

    fn read(&self, file: &str) -> Result<Vec<u8>> {
        let path = self.dir.join(file);
        std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
    }

    fn write(&self, file: &str, data: &[u8], mode: u32) -> Result<()> {
        let path = self.dir.join(file);
        write_atomic(&path, data, mode)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}

/// Checks what the CA issued (chains to the root, right usage and id, our key) and pairs it with
/// the key.
fn accept_issued(
    check: &CertificateCheck,
    key: KeyPair,
    issued: &CertificateResponse,
    usage: Usage,
    id: &str,
) -> Result<Identity> {
    let certificate =
        pki::pem::certificate(issued.certificate_pem.as_bytes(), "issued certificate")?;
    let verified = check.verify(
        std::slice::from_ref(&certificate),
        usage,
        Some(id),
        UnixTime::now(),
    )?;
    if verified.info.public_key != key.public_key_raw() {
        return Err(Error::Protocol(
            "the CA issued a certificate for a different key".into(),
        ));
    }
    Ok(Identity {
        key,
        certificate,
        info: verified.info,
        root: check.root().clone(),
    })
}

fn read_key(path: &Path) -> Result<KeyPair> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    pki::parse_key_pair(&text)
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("restricting {}", dir.display()), e))?;
    }
    Ok(())
}

/// Keeps an identity fresh in the background: renews it when two thirds of its lifetime have
/// passed, retries failures with backoff, and publishes each new identity. Dropping it stops it.
pub struct AutoRenewal {
    task: tokio::task::JoinHandle<()>,
    current: tokio::sync::watch::Receiver<Arc<Identity>>,
}

impl AutoRenewal {
    /// Starts renewing `store`'s identity (already loaded as `identity`).
    pub fn spawn(store: IdentityStore, identity: Identity) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(identity));
        let task = tokio::spawn(async move {
            loop {
                let info = tx.borrow().info.clone();
                let wait = (info.renewal_due_at() - unix_now()).max(0) as u64;
                tokio::time::sleep(Duration::from_secs(wait)).await;
                let lifetime = (info.not_after - info.not_before).max(1) as u64;
                let mut retry = Duration::from_secs((lifetime / 30).clamp(1, 60));
                loop {
                    match store.renew().await {
                        Ok(renewed) => {
                            tracing::info!(serial = %renewed.info.serial, not_after = renewed.info.not_after, "certificate renewed");
                            if tx.send(Arc::new(renewed)).is_err() {
                                return;
                            }
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, retry_s = retry.as_secs(), "certificate renewal failed");
                            tokio::time::sleep(retry).await;
                            retry = (retry * 2).min(Duration::from_secs(300));
                        }
                    }
                }
            }
        });
        AutoRenewal { task, current: rx }
    }

    /// A receiver that sees every renewed identity.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Identity>> {
        self.current.clone()
    }

    /// The current identity.
    pub fn current(&self) -> Arc<Identity> {
        self.current.borrow().clone()
    }
}

impl Drop for AutoRenewal {
    fn drop(&mut self) {
        self.task.abort();
    }
}
