//! The one error of the bindings. Its variants are the C `vc_result` kinds (the same table:
//! [`VcError::new`] and [`VcError::result`] are exhaustive both ways, and a test walks every
//! value), each with the stable `code` (the CA's or server's reason for `Refused`) and a `detail`
//! text. In Kotlin and Python each variant is an exception class; in Swift an enum case.

use crate::result::{classify, last_error, vc_result};

/// What went wrong, by kind, with the stable code and the details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum VcError {
    /// A required value was missing.
    #[error("{detail}")]
    NullParameter {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// An argument was malformed or out of range.
    #[error("{detail}")]
    InvalidArgument {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// An output did not fit.
    #[error("{detail}")]
    BufferTooSmall {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// No key for the frame's KID.
    #[error("{detail}")]
    UnknownKey {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// A replayed or too old frame.
    #[error("{detail}")]
    Replay {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// A frame that did not authenticate.
    #[error("{detail}")]
    AuthenticationFailed {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// Not a well-formed frame.
    #[error("{detail}")]
    Malformed {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// A sending KID used before.
    #[error("{detail}")]
    KeyReused {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// A key's counters are used up.
    #[error("{detail}")]
    CounterExhausted {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// An internal failure caught at the interface.
    #[error("{detail}")]
    Panic {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// A certificate was refused.
    #[error("{detail}")]
    Certificate {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// The identity store or a file failed.
    #[error("{detail}")]
    Store {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// The connection or the TLS handshake failed.
    #[error("{detail}")]
    Connection {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// The CA or the server refused; `code` is its reason (`insufficient_credit`, `token_used`, …).
    #[error("{detail}")]
    Refused {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// The other side broke the protocol.
    #[error("{detail}")]
    Protocol {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// A cryptographic operation failed.
    #[error("{detail}")]
    Crypto {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// Nothing arrived in time.
    #[error("{detail}")]
    Timeout {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// The session or connection is closed, or the call ended before its media started.
    #[error("{detail}")]
    Closed {
        /// The stable code (the server's or the CA's for `Refused`).
        code: String,
        /// What went wrong, in words.
        detail: String,
    },
}

impl VcError {
    /// The error of kind `kind` (VC_RESULT_OK, which is no error, becomes `Panic`).
    pub(crate) fn new(kind: vc_result, code: impl Into<String>, detail: impl Into<String>) -> Self {
        let (code, detail) = (code.into(), detail.into());
        use vc_result::*;
        match kind {
            VC_RESULT_NULL_PARAMETER => VcError::NullParameter { code, detail },
            VC_RESULT_INVALID_ARGUMENT => VcError::InvalidArgument { code, detail },
            VC_RESULT_BUFFER_TOO_SMALL => VcError::BufferTooSmall { code, detail },
            VC_RESULT_UNKNOWN_KEY => VcError::UnknownKey { code, detail },
            VC_RESULT_REPLAY => VcError::Replay { code, detail },
            VC_RESULT_AUTHENTICATION_FAILED => VcError::AuthenticationFailed { code, detail },
            VC_RESULT_MALFORMED => VcError::Malformed { code, detail },
            VC_RESULT_KEY_REUSED => VcError::KeyReused { code, detail },
            VC_RESULT_COUNTER_EXHAUSTED => VcError::CounterExhausted { code, detail },
            VC_RESULT_OK | VC_RESULT_PANIC => VcError::Panic { code, detail },
            VC_RESULT_CERTIFICATE => VcError::Certificate { code, detail },
            VC_RESULT_STORE => VcError::Store { code, detail },
            VC_RESULT_CONNECTION => VcError::Connection { code, detail },
            VC_RESULT_REFUSED => VcError::Refused { code, detail },
            VC_RESULT_PROTOCOL => VcError::Protocol { code, detail },
            VC_RESULT_CRYPTO => VcError::Crypto { code, detail },
            VC_RESULT_TIMEOUT => VcError::Timeout { code, detail },
            VC_RESULT_CLOSED => VcError::Closed { code, detail },
        }
    }

    /// An error of `kind` with the kind's own code.
    pub(crate) fn kind(kind: vc_result, detail: impl Into<String>) -> Self {
        VcError::new(kind, kind.code(), detail)
    }

    /// The C result this error corresponds to.
    #[cfg(test)]
    pub(crate) fn result(&self) -> vc_result {
        use vc_result::*;
        match self {
            VcError::NullParameter { .. } => VC_RESULT_NULL_PARAMETER,
            VcError::InvalidArgument { .. } => VC_RESULT_INVALID_ARGUMENT,
            VcError::BufferTooSmall { .. } => VC_RESULT_BUFFER_TOO_SMALL,
            VcError::UnknownKey { .. } => VC_RESULT_UNKNOWN_KEY,
            VcError::Replay { .. } => VC_RESULT_REPLAY,
            VcError::AuthenticationFailed { .. } => VC_RESULT_AUTHENTICATION_FAILED,
            VcError::Malformed { .. } => VC_RESULT_MALFORMED,
            VcError::KeyReused { .. } => VC_RESULT_KEY_REUSED,
            VcError::CounterExhausted { .. } => VC_RESULT_COUNTER_EXHAUSTED,
            VcError::Panic { .. } => VC_RESULT_PANIC,
            VcError::Certificate { .. } => VC_RESULT_CERTIFICATE,
            VcError::Store { .. } => VC_RESULT_STORE,
            VcError::Connection { .. } => VC_RESULT_CONNECTION,
            VcError::Refused { .. } => VC_RESULT_REFUSED,
            VcError::Protocol { .. } => VC_RESULT_PROTOCOL,
            VcError::Crypto { .. } => VC_RESULT_CRYPTO,
            VcError::Timeout { .. } => VC_RESULT_TIMEOUT,
            VcError::Closed { .. } => VC_RESULT_CLOSED,
        }
    }

    /// The error a C-side helper just recorded as `kind` (with this thread's last error text).
    pub(crate) fn from_result_code(kind: vc_result) -> Self {
        let (code, detail) = last_error();
        VcError::new(kind, code, detail)
    }
}

impl From<vcsdk::Error> for VcError {
    fn from(e: vcsdk::Error) -> Self {
        let (kind, code) = classify(&e);
        VcError::new(kind, code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_c_result_has_its_own_variant_and_back() {
        let mut seen = std::collections::HashSet::new();
        for kind in vc_result::ALL.into_iter().skip(1) {
            let e = VcError::kind(kind, "x");
            assert_eq!(e.result(), kind, "{e:?}");
            assert!(
                seen.insert(std::mem::discriminant(&e)),
                "{kind:?} shares a variant"
            );
        }
        // The C table and this enum have the same number of failure kinds.
        assert_eq!(seen.len(), vc_result::ALL.len() - 1);
    }

    #[test]
    fn the_table_walked_above_is_every_value_the_header_declares() {
        // ALL is written by hand: check it against the checked-in header (itself checked against
        // the code by gen-header --check), so a new vc_result cannot be left out of the walk.
        let header = include_str!("../../../include/vcsdk.h");
        let end = header.find("} vc_result;").expect("the vc_result enum");
        let start = header[..end].rfind("typedef enum {").expect("its start");
        let declared: Vec<&str> = header[start..end]
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("VC_RESULT_"))
            .map(|l| l.split([' ', ',']).next().unwrap_or(""))
            .collect();
        let walked: Vec<String> = vc_result::ALL.iter().map(|r| format!("{r:?}")).collect();
        assert_eq!(declared, walked);
        // And every kind has a generated exception class in the Python and Kotlin bindings.
        let python = include_str!("../../../bindings/python/vcsdk/vcsdk.py");
        let kotlin = include_str!("../../../bindings/kotlin/src/main/kotlin/org/vcsdk/vcsdk.kt");
        for kind in vc_result::ALL.into_iter().skip(1) {
            let e = VcError::kind(kind, "x");
            let name = format!("{e:?}");
            let variant = name.split([' ', '{']).next().unwrap_or("");
            assert!(
                python.contains(&format!("class {variant}(")),
                "Python lacks VcError.{variant}"
            );
            assert!(
                kotlin.contains(&format!("class {variant}(")),
                "Kotlin lacks VcException.{variant}"
            );
        }
    }

    #[test]
    fn sdk_errors_map_as_in_c() {
        let e = VcError::from(vcsdk::Error::ServerRefused {
            code: "user_offline".into(),
            message: "bob is offline".into(),
        });
        assert_eq!(
            e,
            VcError::Refused {
                code: "user_offline".into(),
                detail: "the server refused the request (user_offline): bob is offline".into()
            }
        );
        let kind = crate::result::sdk_error(vcsdk::Error::Protocol("x".into()));
        assert_eq!(
            VcError::from(vcsdk::Error::Protocol("x".into())).result(),
            kind
        );
    }
}
