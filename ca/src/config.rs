//! The CA's settings, kept in `ca.toml` in the data directory and written by `vc-ca init`.
//!
//! Top-level keys: `name`, `cert_validity`, `crl_validity`, `token_ttl`, `tls_hostnames`,
//! `public_url`, `renew_min_interval`. The `[limits]` table bounds what one network peer can hold:
//!
//! | key | default | what |
//! |---|---|---|
//! | `max_connections` | 1024 | connections served at once; more are closed at once |
//! | `max_connections_per_address` | 64 | connections one IP address (IPv6: one /64) may hold |
//! | `handshake_timeout` | `10s` | TLS handshake |
//! | `header_timeout` | `10s` | request line and headers, from their first byte (or from the handshake) |
//! | `body_timeout` | `10s` | the whole request body |
//! | `handler_timeout` | `20s` | waiting for the CA's database before work starts (then `503 busy`) |
//! | `write_timeout` | `10s` | writing the whole response (a client that does not read it is cut off) |
//! | `idle_timeout` | `15s` | a kept-alive connection waiting for its next request |
//!
//! The last quarter of `max_connections` is kept for addresses holding few connections (fewer
//! than an eighth of the per-address cap and of that quarter, at least one), so no address — nor a
//! few — can fill it.

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
    /// How old a certificate that was itself obtained by renewal must be before it may be renewed
    /// again (`renew_too_soon` before that); absent: half of `cert_validity`. A certificate from
    /// enrollment may be renewed at once.
    pub renew_min_interval: Option<String>,
    /// Connection and time limits (`[limits]`).
    pub limits: Limits,
}

/// The `[limits]` table: what one connection, and one address, may hold, and for how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Most connections one IP address (for IPv6, one /64 prefix) may hold at once.
    pub max_connections_per_address: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: String,
    /// Time allowed for a request's line and headers, from their first byte (for the first
    /// request, from the end of the handshake).
    pub header_timeout: String,
    /// Time allowed for a request's whole body, once its headers have arrived.
    pub body_timeout: String,
    /// Time a request may wait for the CA's database before it is answered `503 busy`.
    pub handler_timeout: String,
    /// Time allowed for writing a whole response; a client that does not read it is cut off.
    pub write_timeout: String,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: String,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_address: 64,
            handshake_timeout: "10s".into(),
            header_timeout: "10s".into(),
            body_timeout: "10s".into(),
            handler_timeout: "20s".into(),
            write_timeout: "10s".into(),
            idle_timeout: "15s".into(),
        }
    }
}

impl Limits {
    fn durations(&self) -> [(&'static str, &String); 6] {
        [
            ("handshake_timeout", &self.handshake_timeout),
            ("header_timeout", &self.header_timeout),
            ("body_timeout", &self.body_timeout),
            ("handler_timeout", &self.handler_timeout),
            ("write_timeout", &self.write_timeout),
            ("idle_timeout", &self.idle_timeout),
        ]
    }

    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> Result<(), CaError> {
        for (what, value) in self.durations() {
            nonzero_duration(&format!("limits.{what}"), value)?;
        }
        for (what, value) in [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
        ] {
            if value == 0 {
                return Err(CaError::internal(format!(
                    "{CONFIG_FILE}: limits.{what} must be at least 1"
                )));
            }
        }
        Ok(())
    }

    /// `handshake_timeout` as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        duration_or(&self.handshake_timeout, 10)
    }

    /// `header_timeout` as a duration.
    pub fn header_timeout(&self) -> Duration {
        duration_or(&self.header_timeout, 10)
    }

    /// `body_timeout` as a duration.
    pub fn body_timeout(&self) -> Duration {
        duration_or(&self.body_timeout, 10)
    }

    /// `handler_timeout` as a duration.
    pub fn handler_timeout(&self) -> Duration {
        duration_or(&self.handler_timeout, 20)
    }

    /// `write_timeout` as a duration.
    pub fn write_timeout(&self) -> Duration {
        duration_or(&self.write_timeout, 10)
    }

    /// `idle_timeout` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        duration_or(&self.idle_timeout, 15)
    }
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
            renew_min_interval: None,
            limits: Limits::default(),
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
            nonzero_duration(what, value)?;
        }
        if let Some(interval) = &self.renew_min_interval {
            vcsdk::util::parse_duration(interval).map_err(|e| {
                CaError::internal(format!("{CONFIG_FILE}: renew_min_interval: {e}"))
            })?;
        }
        self.limits.validate()?;
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

    /// `renew_min_interval` as a duration: half of `cert_validity` when not set.
    pub fn renew_min_interval(&self) -> Duration {
        self.renew_min_interval
            .as_deref()
            .and_then(|t| vcsdk::util::parse_duration(t).ok())
            .unwrap_or_else(|| self.cert_validity() / 2)
    }

    /// The CRL distribution point placed in issued certificates, if a public URL is set.
    pub fn crl_url(&self) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|u| format!("{}{}", u.trim_end_matches('/'), vcsdk::proto::ca::PATH_CRL))
    }
}

fn nonzero_duration(what: &str, value: &str) -> Result<Duration, CaError> {
    let d = vcsdk::util::parse_duration(value)
        .map_err(|e| CaError::internal(format!("{CONFIG_FILE}: {what}: {e}")))?;
    if d.is_zero() {
        return Err(CaError::internal(format!(
            "{CONFIG_FILE}: {what} must not be zero"
        )));
    }
    Ok(d)
}

fn duration_or(value: &str, default_secs: u64) -> Duration {
    vcsdk::util::parse_duration(value).unwrap_or(Duration::from_secs(default_secs))
}
