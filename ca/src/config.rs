//! The CA's settings, kept in `ca.toml` in the data directory and written by `vc-ca init`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::CaError;

/// File name of the settings in the data directory.
pub const CONFIG_FILE: &str = "ca.toml";

/// Every setting, with its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// The CA's name (common name of the root).
    pub name: String,
    /// Lifetime of issued client and server certificates, e.g. `7d`.
    pub cert_validity: String,
    /// How long each CRL is valid (its nextUpdate); it is re-signed at half that.
    pub crl_validity: String,
    /// Default lifetime of enrollment tokens.
    pub token_ttl: String,
    /// Host names and addresses the CA's own HTTPS certificate names.
    pub tls_hostnames: Vec<String>,
    /// The CA's public base URL, e.g. `https://ca.example.com:8443`; when set, issued certificates
    /// carry `PUBLIC_URL/v1/crl` as their CRL distribution point.
    pub public_url: Option<String>,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            name: "vcsdk Conferencing CA".into(),
            cert_validity: "7d".into(),
            crl_validity: "24h".into(),
            token_ttl: "24h".into(),
            tls_hostnames: vec!["localhost".into(), "127.0.0.1".into()],
            public_url: None,
        }
    }
}

impl CaConfig {
    /// Reads `DIR/ca.toml`.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CaError::internal(format!("reading {}: {e}", path.display())))?;
        let config: CaConfig = toml::from_str(&text)
            .map_err(|e| CaError::internal(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> Result<(), CaError> {
        for (what, value) in [
            ("cert_validity", &self.cert_validity),
            ("crl_validity", &self.crl_validity),
            ("token_ttl", &self.token_ttl),
        ] {
            let d = vcsdk::util::parse_duration(value)
                .map_err(|e| CaError::internal(format!("{CONFIG_FILE}: {what}: {e}")))?;
            if d.is_zero() {
                return Err(CaError::internal(format!(
                    "{CONFIG_FILE}: {what} must not be zero"
                )));
            }
        }
        if self.tls_hostnames.is_empty() {
            return Err(CaError::internal(format!(
                "{CONFIG_FILE}: tls_hostnames must name at least one host"
            )));
        }
        for name in &self.tls_hostnames {
            vcsdk::id::validate_host_name(name)
                .map_err(|e| CaError::internal(format!("{CONFIG_FILE}: tls_hostnames: {e}")))?;
        }
        Ok(())
    }

    /// `cert_validity` as a duration.
    pub fn cert_validity(&self) -> Duration {
        vcsdk::util::parse_duration(&self.cert_validity).unwrap_or(Duration::from_secs(7 * 86_400))
    }

    /// `crl_validity` as a duration.
    pub fn crl_validity(&self) -> Duration {
        vcsdk::util::parse_duration(&self.crl_validity).unwrap_or(Duration::from_secs(86_400))
    }

    /// `token_ttl` as a duration.
    pub fn token_ttl(&self) -> Duration {
        vcsdk::util::parse_duration(&self.token_ttl).unwrap_or(Duration::from_secs(86_400))
    }

    /// The CRL distribution point placed in issued certificates, if a public URL is set.
    pub fn crl_url(&self) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|u| format!("{}{}", u.trim_end_matches('/'), vcsdk::proto::ca::PATH_CRL))
    }
}
