//! The server's settings: `server.toml` in the data directory, written with defaults by
//! `vc-server init`. Every key is optional; the defaults are those of [`ServerConfig::default`].

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vcsdk::billing::Tariff;

/// File name of the settings in the data directory.
pub const CONFIG_FILE: &str = "server.toml";

/// Every setting, with its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The server's name, sent in `welcome`.
    pub name: String,
    /// Address `serve` listens on when `--listen` is not given.
    pub listen: String,
    /// The terms-of-use version clients must accept to register.
    pub terms_version: String,
    /// Seconds between keepalive pings; a connection silent for three periods is dropped.
    pub keepalive_secs: u64,
    /// Seconds a call rings before it ends as "no answer".
    pub ring_timeout_secs: u64,
    /// Seconds between CRL refreshes from the CA (also on SIGHUP).
    pub crl_refresh_secs: u64,
    /// Requests per second allowed per connection (sustained).
    pub rate_limit_per_sec: u32,
    /// Requests allowed in a burst per connection.
    pub rate_limit_burst: u32,
    /// Frames queued for one client before it is dropped as too slow.
    pub outbound_queue: usize,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections from one source address at once, in any stage (so one address cannot
    /// hold the slots everyone else needs).
    pub max_connections_per_address: usize,
    /// Most connections (devices) one user may have open at once; the next is refused at hello
    /// with `too_many_devices`.
    pub max_devices_per_user: usize,
    /// Seconds a new connection has for the TLS handshake, and then again for `hello`.
    pub handshake_timeout_secs: u64,
    /// Calls one user may place a minute (each attempt is a call record, answered or not).
    pub call_attempts_per_minute: u32,
    /// UDP address of the media relay when `--media-listen` is not given: "same" for the
    /// address the signalling listens on (UDP, same port), or an address; "off" or empty: no relay.
    pub media_listen: String,
    /// The relay address told to clients (`host:port`); empty: the bound address, or — when that
    /// is a wildcard — the address each client connected to, with the relay's port.
    pub media_advertise: String,
    /// Most media one call member may send through the relay, kilobits per second.
    pub relay_max_kbit_per_sec: u64,
    /// Billing: tariff, debit interval, warnings, account defaults.
    pub billing: BillingConfig,
}

/// The `[billing]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// The tariff (`[billing.tariff]`): currency, connect fee, rate per minute, increments, rounding.
    pub tariff: Tariff,
    /// Seconds between debits while a call runs (each debit pays this far ahead).
    pub debit_interval_secs: u32,
    /// Warn the payer when the balance covers less than this many seconds.
    pub low_balance_warning_secs: u32,
    /// `prepaid` or `postpaid`, for new accounts.
    pub default_account_type: String,
    /// How far below zero a new postpaid account may go, minor units.
    pub default_credit_limit: i64,
    /// Who pays for a member's time in a conference: `participant` (each member pays for its
    /// own time) or `creator` (the member who created the conference pays for everyone's).
    pub conference_payer: String,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            tariff: Tariff::default(),
            debit_interval_secs: 10,
            low_balance_warning_secs: 60,
            default_account_type: "prepaid".into(),
            default_credit_limit: 0,
            conference_payer: "participant".into(),
        }
    }
}

/// `media_listen` naming the signalling listener's own address (UDP, same port).
pub const MEDIA_LISTEN_SAME: &str = "same";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: "vc-server".into(),
            listen: "127.0.0.1:7443".into(),
            terms_version: "1".into(),
            keepalive_secs: 15,
            ring_timeout_secs: 30,
            crl_refresh_secs: 60,
            rate_limit_per_sec: 20,
            rate_limit_burst: 40,
            outbound_queue: 256,
            max_connections: 20_000,
            max_connections_per_address: 64,
            max_devices_per_user: 8,
            handshake_timeout_secs: 10,
            call_attempts_per_minute: 30,
            media_listen: MEDIA_LISTEN_SAME.into(),
            media_advertise: String::new(),
            relay_max_kbit_per_sec: 20_000,
            billing: BillingConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Reads `DIR/server.toml`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let config: ServerConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("keepalive_secs", self.keepalive_secs),
            ("ring_timeout_secs", self.ring_timeout_secs),
            ("crl_refresh_secs", self.crl_refresh_secs),
            ("rate_limit_per_sec", u64::from(self.rate_limit_per_sec)),
            ("rate_limit_burst", u64::from(self.rate_limit_burst)),
            ("outbound_queue", self.outbound_queue as u64),
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_address",
                self.max_connections_per_address as u64,
            ),
            ("max_devices_per_user", self.max_devices_per_user as u64),
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            (
                "call_attempts_per_minute",
                u64::from(self.call_attempts_per_minute),
            ),
            ("relay_max_kbit_per_sec", self.relay_max_kbit_per_sec),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{CONFIG_FILE}: {name} must be at least 1"));
            }
        }
        self.billing
            .tariff
            .validate()
            .map_err(|e| format!("{CONFIG_FILE}: [billing.tariff]: {e}"))?;
        if self.billing.debit_interval_secs == 0 {
            return Err(format!(
                "{CONFIG_FILE}: [billing] debit_interval_secs must be at least 1"
            ));
        }
        if !matches!(
            self.billing.default_account_type.as_str(),
            "prepaid" | "postpaid"
        ) {
            return Err(format!(
                "{CONFIG_FILE}: [billing] default_account_type must be prepaid or postpaid"
            ));
        }
        if !(0..=vcsdk::billing::MAX_AMOUNT).contains(&self.billing.default_credit_limit) {
            return Err(format!(
                "{CONFIG_FILE}: [billing] default_credit_limit must be between 0 and {}",
                vcsdk::billing::MAX_AMOUNT
            ));
        }
        if !matches!(
            self.billing.conference_payer.as_str(),
            "participant" | "creator"
        ) {
            return Err(format!(
                "{CONFIG_FILE}: [billing] conference_payer must be participant or creator"
            ));
        }
        if !self.media_advertise.is_empty()
            && self
                .media_advertise
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(format!(
                "{CONFIG_FILE}: media_advertise must be an IP address and port, like 203.0.113.5:7443"
            ));
        }
        if self.terms_version.is_empty() || self.terms_version.len() > 64 {
            return Err(format!(
                "{CONFIG_FILE}: terms_version must be 1 to 64 characters"
            ));
        }
        Ok(())
    }

    /// How long a connection has for its TLS handshake, and again for `hello`.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// Keepalive period.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_secs)
    }
}

/// The sources whose doc comments explain the settings (one source for the text: the fields'
/// own documentation).
const DOCUMENTED_SOURCES: [&str; 2] = [
    include_str!("config.rs"),
    include_str!("../../sdk/src/billing/tariff.rs"),
];

/// The doc comment of the field `key`, joined into one line.
fn field_doc(key: &str) -> Option<String> {
    let field = format!("pub {key}:");
    for source in DOCUMENTED_SOURCES {
        let lines: Vec<&str> = source.lines().collect();
        if let Some(at) = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&field))
        {
            let mut doc: Vec<&str> = lines[..at]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with("///"))
                .map(|l| l.trim_start().trim_start_matches("///").trim())
                .collect();
            doc.reverse();
            if !doc.is_empty() {
                return Some(doc.join(" "));
            }
        }
    }
    None
}

/// `config` as TOML with each setting explained by a comment above it: what `vc-server init`
/// writes, so the file documents itself.
pub fn commented_toml(config: &ServerConfig) -> Result<String, String> {
    let plain = toml::to_string(config).map_err(|e| e.to_string())?;
    let mut out = String::from(
        "# vc-server settings. Every key is optional (its default is shown); restart the server\n\
         # after a change. Amounts are integers of the currency's minor units (cents for EUR).\n\n",
    );
    for line in plain.lines() {
        let key = line.split_once(" = ").map(|(k, _)| k.trim());
        if let Some(doc) = key.and_then(field_doc) {
            out.push_str(&format!("# {doc}\n"));
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod commented_tests {
    use super::*;

    #[test]
    fn every_setting_init_writes_is_explained_and_reads_back_the_same() {
        let config = ServerConfig::default();
        let text = commented_toml(&config).unwrap();
        for line in toml::to_string(&config).unwrap().lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    field_doc(key.trim()).is_some(),
                    "{key} has no doc comment to explain it in server.toml"
                );
            }
        }
        assert!(text.contains(
            "# Seconds a call rings before it ends as \"no answer\".\nring_timeout_secs = "
        ));
        let back: ServerConfig = toml::from_str(&text).unwrap();
        assert_eq!(
            toml::to_string(&back).unwrap(),
            toml::to_string(&config).unwrap()
        );
    }
}
