//! Errors the CA reports: a stable code, the HTTP status it maps to, and a message naming what was
//! wrong. The codes are listed in docs/protocol.md and never renamed.

/// A refusal or failure, as reported to the requester and the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CaError {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// HTTP status for the API.
    pub status: u16,
    /// What was wrong (never contains a secret).
    pub message: String,
}

impl CaError {
    fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        CaError {
            code,
            status,
            message: message.into(),
        }
    }

    /// The request body or one of its fields is malformed.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new("malformed_request", 400, message)
    }
    /// The request body is larger than the CA accepts.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            "body_too_large",
            413,
            format!("request body exceeds {limit} bytes"),
        )
    }
    /// The token is not known to this CA.
    pub fn token_unknown() -> Self {
        Self::new(
            "token_unknown",
            403,
            "enrollment token is not known to this CA",
        )
    }
    /// The token was already used.
    pub fn token_used() -> Self {
        Self::new("token_used", 403, "enrollment token was already used")
    }
    /// The operator revoked the token.
    pub fn token_revoked() -> Self {
        Self::new(
            "token_revoked",
            403,
            "enrollment token was revoked by the CA operator",
        )
    }
    /// The token's time ran out.
    pub fn token_expired() -> Self {
        Self::new("token_expired", 403, "enrollment token has expired")
    }
    /// The CSR could not be parsed or its signature does not verify.
    pub fn csr_invalid(message: impl Into<String>) -> Self {
        Self::new("csr_invalid", 400, message)
    }
    /// The CSR asks for a name the authorisation does not cover.
    pub fn wrong_id(message: impl Into<String>) -> Self {
        Self::new("wrong_id", 403, message)
    }
    /// The CSR asks for a usage the authorisation does not cover (CA, or the other role).
    pub fn forbidden_usage(message: impl Into<String>) -> Self {
        Self::new("forbidden_usage", 403, message)
    }
    /// The CSR's key is not ECDSA P-256.
    pub fn unsupported_key(message: impl Into<String>) -> Self {
        Self::new("unsupported_key", 400, message)
    }
    /// The endpoint needs a client certificate (mutual TLS).
    pub fn certificate_required() -> Self {
        Self::new(
            "certificate_required",
            401,
            "this request must be made over mutual TLS with the current certificate",
        )
    }
    /// The presented certificate is revoked or superseded.
    pub fn certificate_revoked(serial: &str, reason: &str) -> Self {
        Self::new(
            "certificate_revoked",
            403,
            format!("certificate {serial} is revoked ({reason})"),
        )
    }
    /// The presented or named certificate is not in this CA's records.
    pub fn certificate_unknown(serial: &str) -> Self {
        Self::new(
            "certificate_unknown",
            404,
            format!("no certificate with serial {serial} was issued by this CA"),
        )
    }
    /// No renewal of the presented certificate issued a certificate for the CSR's key.
    pub fn renewal_unknown(serial: &str) -> Self {
        Self::new(
            "renewal_unknown",
            404,
            format!("certificate {serial} was not renewed onto the key of this CSR (or that certificate is no longer valid)"),
        )
    }
    /// A certificate that has expired cannot be renewed or revoked.
    pub fn certificate_expired(serial: &str) -> Self {
        Self::new(
            "certificate_expired",
            403,
            format!("certificate {serial} has expired"),
        )
    }
    /// No such endpoint.
    pub fn not_found(path: &str) -> Self {
        Self::new("not_found", 404, format!("no endpoint {path}"))
    }
    /// The endpoint exists but not with this method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            "method_not_allowed",
            405,
            format!("{method} is not allowed on {path}"),
        )
    }
    /// The body is not `application/json`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            "unsupported_media_type",
            415,
            "request body must be application/json",
        )
    }
    /// The request body did not arrive in time.
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            "request_timeout",
            408,
            format!(
                "the request body did not arrive within {} ms",
                limit.as_millis()
            ),
        )
    }
    /// The CA could not start the request in time; the client may try again later.
    pub fn busy(limit: std::time::Duration) -> Self {
        Self::new(
            "busy",
            503,
            format!(
                "the CA could not take the request within {} ms; try again later",
                limit.as_millis()
            ),
        )
    }
    /// The presented certificate came from a renewal too recently to be renewed again.
    pub fn renew_too_soon(serial: &str, allowed_at: i64, now: i64) -> Self {
        Self::new(
            "renew_too_soon",
            429,
            format!(
                "certificate {serial} was itself issued by a renewal and may be renewed again from {} (in {} s)",
                vcsdk::util::rfc3339(allowed_at),
                (allowed_at - now).max(0)
            ),
        )
    }
    /// Something failed inside the CA; the message says what (no secrets).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("internal", 500, message)
    }
}

impl From<rusqlite::Error> for CaError {
    fn from(e: rusqlite::Error) -> Self {
        CaError::internal(format!("database: {e}"))
    }
}
