//! A client's access-control list: who may invite it to a conference. It is checked after the
//! inviter's certificate and signature were verified (so the inviter is who it claims to be) and
//! before the invitation reaches the application; a refused invitation is declined without ever
//! being shown.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Whom the list admits when neither the allow nor the deny list names the inviter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclDefault {
    /// Anyone the CA certified.
    #[default]
    Anyone,
    /// Only the client's contacts.
    Contacts,
    /// Nobody (only the allow list).
    Nobody,
}

impl std::str::FromStr for AclDefault {
    type Err = Error;

    fn from_str(s: &str) -> Result<AclDefault> {
        match s {
            "anyone" => Ok(AclDefault::Anyone),
            "contacts" => Ok(AclDefault::Contacts),
            "nobody" => Ok(AclDefault::Nobody),
            _ => Err(Error::InvalidArgument(format!(
                "unknown access default {s:?} (anyone, contacts, nobody)"
            ))),
        }
    }
}

/// Who may invite this client. The deny list wins over everything, then the allow list, then
/// the default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessList {
    /// Always admitted (unless denied).
    pub allow: BTreeSet<String>,
    /// Never admitted.
    pub deny: BTreeSet<String>,
    /// The client's contacts (admitted under [`AclDefault::Contacts`]).
    pub contacts: BTreeSet<String>,
    /// Everyone else.
    pub default: AclDefault,
}

/// The outcome of an access check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclDecision {
    /// The invitation may be shown.
    Admit,
    /// Refused: the inviter is on the deny list.
    Denied,
    /// Refused: the inviter is not a contact and the default is `contacts`.
    NotAContact,
    /// Refused: the default is `nobody` and the inviter is not on the allow list.
    NotAllowed,
}

impl AclDecision {
    /// Whether the invitation may be shown.
    pub fn admits(self) -> bool {
        self == AclDecision::Admit
    }

    /// Why, in words.
    pub fn reason(self) -> &'static str {
        match self {
            AclDecision::Admit => "admitted",
            AclDecision::Denied => "the inviter is on the deny list",
            AclDecision::NotAContact => "the inviter is not a contact",
            AclDecision::NotAllowed => "the inviter is not on the allow list",
        }
    }
}

impl AccessList {
    /// Whether `inviter` may invite this client.
    pub fn check(&self, inviter: &str) -> AclDecision {
        if self.deny.contains(inviter) {
            AclDecision::Denied
        } else if self.allow.contains(inviter) {
            AclDecision::Admit
        } else {
            match self.default {
                AclDefault::Anyone => AclDecision::Admit,
                AclDefault::Contacts if self.contacts.contains(inviter) => AclDecision::Admit,
                AclDefault::Contacts => AclDecision::NotAContact,
                AclDefault::Nobody => AclDecision::NotAllowed,
            }
        }
    }

    /// Reads a list from TOML text (`allow`, `deny`, `contacts`, `default`).
    pub fn from_toml(text: &str) -> Result<AccessList> {
        let list: AccessList = toml::from_str(text)
            .map_err(|e| Error::InvalidArgument(format!("access list: {e}")))?;
        for id in list.allow.iter().chain(&list.deny).chain(&list.contacts) {
            crate::id::validate_id(id)
                .map_err(|e| Error::InvalidArgument(format!("access list: {id:?}: {e}")))?;
        }
        Ok(list)
    }

    /// The list as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_beats_allow_beats_default() {
        let mut acl = AccessList::default();
        assert!(acl.check("mallory").admits());
        acl.deny.insert("mallory".into());
        acl.allow.insert("mallory".into());
        assert_eq!(acl.check("mallory"), AclDecision::Denied);
        acl.default = AclDefault::Contacts;
        acl.contacts.insert("carol".into());
        assert!(acl.check("carol").admits());
        assert_eq!(acl.check("dave"), AclDecision::NotAContact);
        acl.default = AclDefault::Nobody;
        assert_eq!(acl.check("carol"), AclDecision::NotAllowed);
        acl.allow.insert("carol".into());
        assert!(acl.check("carol").admits());
    }

    #[test]
    fn toml_round_trip_and_bad_ids_are_refused() {
        let acl = AccessList::from_toml(
            "default = \"contacts\"\ncontacts = [\"bob\"]\ndeny = [\"mallory\"]\n",
        )
        .unwrap();
        assert_eq!(acl.default, AclDefault::Contacts);
        assert_eq!(AccessList::from_toml(&acl.to_toml()).unwrap(), acl);
        assert!(AccessList::from_toml("deny = [\"bad id!\"]").is_err());
        assert!(AccessList::from_toml("color = \"red\"").is_err());
    }
}
