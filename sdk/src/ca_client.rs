//! The client side of the CA's API (see `docs/protocol.md`): getNewCert (enroll), updateCert
//! (renew), revokeCert and the CRL.

use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;

use crate::https::{self, HttpsUrl, Method};
use crate::pki::CertificateCheck;
use crate::proto::ca::{self as api, CertificateResponse, RevocationReason, RevokeResponse};
use crate::tls::{self, CertifiedKey, SharedCheck};
use crate::{Error, Result};

/// A connection point to the CA, which must present a certificate chaining to the pinned root.
#[derive(Clone)]
pub struct CaClient {
    url: HttpsUrl,
    check: SharedCheck,
}

impl CaClient {
    /// A client for the CA at `url` (`https://host:port`) that pins `check`'s root.
    pub fn new(url: &str, check: CertificateCheck) -> Result<Self> {
        Ok(CaClient {
            url: HttpsUrl::parse(url)?,
            check: Arc::new(RwLock::new(check)),
        })
    }

    /// The CA's URL.
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// getNewCert: sends a CSR with a one-time token.
    pub async fn enroll(&self, token: &str, csr_pem: &str) -> Result<CertificateResponse> {
        let body = api::EnrollRequest {
            token: token.to_owned(),
            csr_pem: csr_pem.to_owned(),
        };
        self.post(None, api::PATH_ENROLL, &body).await
    }

    /// updateCert: authenticates with `current` and sends a CSR for a new key.
    pub async fn renew(&self, current: CertifiedKey, csr_pem: &str) -> Result<CertificateResponse> {
        let body = api::RenewRequest {
            csr_pem: csr_pem.to_owned(),
        };
        self.post(Some(current), api::PATH_RENEW, &body).await
    }

    /// The certificate a renewal of `previous` (PEM) issued onto the key of `csr_pem`, when the
    /// renewal's answer never reached us. Changes nothing at the CA.
    pub async fn renewal_of(
        &self,
        previous_pem: &str,
        csr_pem: &str,
    ) -> Result<CertificateResponse> {
        let body = api::RenewalOfRequest {
            certificate_pem: previous_pem.to_owned(),
            csr_pem: csr_pem.to_owned(),
        };
        self.post(None, api::PATH_RENEWAL_OF, &body).await
    }

    /// revokeCert: revokes the certificate `current` authenticates with.
    pub async fn revoke(
        &self,
        current: CertifiedKey,
        reason: RevocationReason,
    ) -> Result<RevokeResponse> {
        let body = api::RevokeRequest {
            reason: Some(reason),
        };
        self.post(Some(current), api::PATH_REVOKE, &body).await
    }

    /// Fetches the current CRL (DER). Its signature is checked when it is installed in a
    /// [`CertificateCheck`].
    pub async fn crl_der(&self) -> Result<Vec<u8>> {
        let config = Arc::new(tls::client_config(self.check.clone(), None)?);
        let response = https::request(config, &self.url, Method::GET, api::PATH_CRL, None).await?;
        if response.status != 200 {
            return Err(refusal(response.status, &response.body));
        }
        Ok(response.body.to_vec())
    }

    async fn post<T: DeserializeOwned>(
        &self,
        identity: Option<CertifiedKey>,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T> {
        let config = Arc::new(tls::client_config(self.check.clone(), identity)?);
        let json = serde_json::to_vec(body).map_err(|e| Error::Protocol(e.to_string()))?;
        let response = https::request(
            config,
            &self.url,
            Method::POST,
            path,
            Some(("application/json", json)),
        )
        .await?;
        if !(200..300).contains(&response.status) {
            return Err(refusal(response.status, &response.body));
        }
        serde_json::from_slice(&response.body).map_err(|e| {
            Error::Protocol(format!(
                "the CA's answer to {path} is not the expected JSON: {e}"
            ))
        })
    }
}

fn refusal(status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<api::ErrorBody>(body) {
        Ok(b) => Error::CaRefused {
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => Error::Protocol(format!(
            "the CA answered HTTP {status} without an error body"
        )),
    }
}
