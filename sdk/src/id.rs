//! Client identifiers: the names the CA binds into certificates and the server routes by.

use std::fmt;

/// Longest accepted client id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// A validated client id: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, starting with a letter
/// or digit. Ids compare exactly (case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    /// Validates `id`, naming what is wrong with it when it is refused.
    pub fn new(id: &str) -> crate::Result<Self> {
        validate_id(id).map_err(crate::Error::InvalidArgument)?;
        Ok(ClientId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI placed in the certificate's subject alternative name for this id.
    pub fn san_uri(&self) -> String {
        format!("{CLIENT_URI_PREFIX}{}", self.0)
    }
}

/// Prefix of the SAN URI that carries a client id in a certificate.
pub const CLIENT_URI_PREFIX: &str = "urn:vcsdk:client:";

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the client id rules; the error text names the problem.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("client id is empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "client id is {} bytes long; at most {MAX_ID_LEN} are allowed",
            id.len()
        ));
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!(
            "client id {id:?} must start with a letter or digit"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "client id {id:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Checks a server host name (a DNS name or an IP address) for a server certificate.
pub fn validate_host_name(name: &str) -> Result<(), String> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if name.is_empty() || name.len() > 253 {
        return Err(format!("host name {name:?} must be 1 to 253 bytes long"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(format!("host name {name:?} is not a valid DNS name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for id in ["alice", "Bob-2", "a", "x.y_z", &"a".repeat(64)] {
            assert!(ClientId::new(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_bad_ids_with_reason() {
        let cases = [
            ("", "empty"),
            ("-alice", "must start"),
            ("al ice", "contains ' '"),
            ("al/ice", "contains '/'"),
            ("älice", "must start"),
        ];
        for (id, why) in cases {
            let err = ClientId::new(id).unwrap_err().to_string();
            assert!(err.contains(why), "{id}: {err}");
        }
        let long = "a".repeat(65);
        assert!(ClientId::new(&long)
            .unwrap_err()
            .to_string()
            .contains("at most 64"));
    }

    #[test]
    fn host_names() {
        for ok in ["localhost", "127.0.0.1", "::1", "vc.example.com"] {
            assert!(validate_host_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a..b", "-a.com", "a_b.com", "x y"] {
            assert!(validate_host_name(bad).is_err(), "{bad}");
        }
    }
}
