//! A small HTTPS/1.1 client (hyper over tokio-rustls) for the CA's JSON API: one connection per
//! request, bounded time and bounded response size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;

pub use hyper::Method;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::{Error, Result};

/// How long one request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body accepted.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

/// An `https://host[:port]` base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsUrl {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port (443 when not given).
    pub port: u16,
}

impl HttpsUrl {
    /// Parses `https://host[:port][/]`.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidArgument(format!("URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("must start with https://"))?;
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.contains('?') || authority.contains('@') {
            return Err(bad("must be https://HOST[:PORT] with no path"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("port is not a number"))?,
                None if after.is_empty() => 443,
                None => return Err(bad("junk after the IPv6 address")),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| bad("port is not a number"))?,
                ),
                None => (authority.to_owned(), 443),
            }
        };
        crate::id::validate_host_name(&host).map_err(|e| bad(&e))?;
        Ok(HttpsUrl { host, port })
    }
}

impl std::fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

/// A response: status and body.
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
}

/// Sends one request (with an optional body and its content type) and reads the whole response.
pub async fn request(
    config: Arc<rustls::ClientConfig>,
    url: &HttpsUrl,
    method: Method,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Response> {
    let target = format!("{url}{path}");
    let conn_err = |message: String| Error::Connection {
        target: target.clone(),
        message: with_endpoint_hint(message),
    };
    let work = async {
        let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| conn_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| Error::InvalidArgument(format!("host {:?}: {e}", url.host)))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| conn_err(format!("TLS handshake: {}", describe_tls(&e))))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| conn_err(e.to_string()))?;
        // The connection task sees a TLS alert the server sends after the handshake (a revoked
        // client certificate, say); keep its error so a failed request can name the cause.
        let (connection_error, connection_failed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                let _ = connection_error.send(describe_hyper(&e));
            }
        });
        let mut builder = Request::builder().method(method).uri(path).header(
            hyper::header::HOST,
            url.to_string().trim_start_matches("https://"),
        );
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(hyper::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Vec::new(),
        };
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::InvalidArgument(format!("request: {e}")))?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                let mut message = describe_hyper(&e);
                if let Ok(Ok(cause)) =
                    tokio::time::timeout(Duration::from_secs(1), connection_failed).await
                {
                    message = format!("{message} ({cause})");
                }
                return Err(conn_err(message));
            }
        };
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| conn_err(format!("reading the response: {e}")))?
            .to_bytes();
        Ok(Response { status, body })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .map_err(|_| Error::Connection {
            target: format!("{url}{path}"),
            message: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        })?
}

/// Adds what to do when the failure shows the URL points at something other than the CA: a
/// server that demands a client certificate before anything else is a `vc-server`.
fn with_endpoint_hint(message: String) -> String {
    if message.contains("CertificateRequired") {
        format!(
            "{message}; the server demands a client certificate, as vc-server does: is this vc-server's address? The CA URL is the CA's https://HOST:PORT (vc-ca serve prints it)"
        )
    } else {
        message
    }
}

/// Explains a TLS failure in words: which side refused which certificate, and why.
pub(crate) fn describe_tls(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(c)) => {
            format!(
                "the server's certificate was refused: {}",
                explain_certificate(c)
            )
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the server refused the connection: {alert:?}")
        }
        _ => e.to_string(),
    }
}

fn explain_certificate(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => "not issued by the pinned CA root".into(),
        C::Expired | C::ExpiredContext { .. } => "certificate expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "certificate not yet valid".into(),
        C::Revoked => "certificate revoked".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it does not name the host dialled".into()
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "it lacks the server-auth usage".into()
        }
        other => format!("{other:?}"),
    }
}

/// hyper's errors hide the TLS alert in their source chain; show the whole chain.
fn describe_hyper(e: &hyper::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = HttpsUrl::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8443));
        let u = HttpsUrl::parse("https://ca.example.com/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("ca.example.com", 443));
        let u = HttpsUrl::parse("https://[::1]:9").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(u.to_string(), "https://[::1]:9");
        for bad in ["http://x", "https://x:y", "https://x/path", "https://a b"] {
            assert!(HttpsUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
