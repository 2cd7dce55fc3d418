//! The HTTPS+JSON API (TLS 1.3; client certificates optional at the TLS layer and required by the
//! renew and revoke endpoints). Endpoints and errors are documented in `docs/protocol.md`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use vcsdk::pki::{CertificateCheck, CertificateInfo, Usage};
use vcsdk::proto::ca::{self as wire, CertificateResponse, RevocationReason, RevokeResponse};
use vcsdk::tls::{self, PkiClientVerifier, SharedCheck};

use crate::authority::SignedCertificate;
use crate::error::CaError;
use crate::service::CertificationAuthority;

/// How long a client may take for the TLS handshake and for sending request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 1024;

/// Everything a request handler needs.
struct Context {
    ca: Arc<CertificationAuthority>,
    check: SharedCheck,
}

/// Serves the API on `listener` until `shutdown` completes. Issues the CA's own HTTPS certificate
/// at start, and keeps the CRL used for client certificates current.
pub async fn serve(
    ca: Arc<CertificationAuthority>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CaError> {
    let (identity, tls_cert) = ca.issue_tls_identity()?;
    let certificate =
        tls::ReloadableCertificate::new(identity).map_err(|e| CaError::internal(e.to_string()))?;
    let mut check =
        CertificateCheck::new(ca.root().clone()).map_err(|e| CaError::internal(e.to_string()))?;
    check
        .set_crl_der(&ca.current_crl()?.der)
        .map_err(|e| CaError::internal(e.to_string()))?;
    let check: SharedCheck = Arc::new(RwLock::new(check));
    let verifier = PkiClientVerifier::optional(check.clone(), vec![Usage::Client, Usage::Server]);
    let config = tls::reloadable_server_config(certificate.clone(), verifier)
        .map_err(|e| CaError::internal(e.to_string()))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let context = Arc::new(Context {
        ca: ca.clone(),
        check,
    });
    tracing::info!(serial = %tls_cert.serial, not_after = tls_cert.not_after, "HTTPS certificate issued");

    let refresher = tokio::spawn(refresh_crl(context.clone()));
    let renewer = tokio::spawn(renew_tls_certificate(ca.clone(), certificate, tls_cert));
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => permit.map_err(|e| CaError::internal(e.to_string()))?,
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let context = context.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(acceptor, context, tcp, peer).await;
        });
    }
    refresher.abort();
    renewer.abort();
    tracing::info!("shut down");
    Ok(())
}

async fn serve_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    context: Arc<Context>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match vcsdk::tls::accept_or_refuse(&acceptor, tcp, HANDSHAKE_TIMEOUT).await {
        Ok(tls) => tls,
        Err(why) => {
            tracing::debug!(%peer, "{why}");
            return;
        }
    };
    let client_cert: Option<CertificateDer<'static>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    let client_cert = Arc::new(client_cert);
    let service = hyper::service::service_fn(move |req| {
        let context = context.clone();
        let client_cert = client_cert.clone();
        async move { Ok::<_, Infallible>(handle(&context, client_cert.as_ref().as_ref(), req).await) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_buf_size(64 * 1024);
    if let Err(e) = http.serve_connection(TokioIo::new(tls), service).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Re-issues the CA's own HTTPS certificate when two thirds of its lifetime have passed.
async fn renew_tls_certificate(
    ca: Arc<CertificationAuthority>,
    certificate: Arc<tls::ReloadableCertificate>,
    mut current: SignedCertificate,
) {
    loop {
        let due = current.not_before + (current.not_after - current.not_before) * 2 / 3;
        let wait = (due - vcsdk::util::unix_now()).max(1) as u64;
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let ca = ca.clone();
        match tokio::task::spawn_blocking(move || ca.issue_tls_identity()).await {
            Ok(Ok((identity, cert))) => match certificate.replace(identity) {
                Ok(()) => {
                    tracing::info!(serial = %cert.serial, not_after = cert.not_after, "HTTPS certificate renewed");
                    current = cert;
                }
                Err(e) => tracing::error!(error = %e, "renewed HTTPS certificate not installed"),
            },
            Ok(Err(e)) => tracing::error!(error = %e, "HTTPS certificate renewal failed"),
            Err(e) => tracing::error!(error = %e, "HTTPS certificate renewal task failed"),
        }
    }
}

/// Keeps the CRL fresh: re-signs it at half its validity and installs it in the TLS check.
async fn refresh_crl(context: Arc<Context>) {
    let period = (context.ca.config().crl_validity() / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut interval = tokio::time::interval(period);
    loop {
        interval.tick().await;
        let ca = context.ca.clone();
        match tokio::task::spawn_blocking(move || ca.current_crl()).await {
            Ok(Ok(crl)) => install_crl(&context.check, &crl.der),
            Ok(Err(e)) => tracing::warn!(error = %e, "CRL refresh failed"),
            Err(e) => tracing::warn!(error = %e, "CRL refresh task failed"),
        }
    }
}

fn install_crl(check: &SharedCheck, der: &[u8]) {
    let mut check = check.write().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = check.set_crl_der(der) {
        tracing::warn!(error = %e, "CRL not installed");
    }
}

async fn handle(
    context: &Context,
    client_cert: Option<&CertificateDer<'static>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let result = route(context, client_cert, req).await;
    match result {
        Ok(response) => response,
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(%method, %path, code = e.code, "{}", e.message);
            } else {
                tracing::debug!(%method, %path, code = e.code, "{}", e.message);
            }
            json_response(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &wire::ErrorBody {
                    error: wire::ErrorDetail {
                        code: e.code.to_owned(),
                        message: e.message,
                    },
                },
            )
        }
    }
}

async fn route(
    context: &Context,
    client_cert: Option<&CertificateDer<'static>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, CaError> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let ca = context.ca.clone();
    match (path.as_str(), method) {
        (wire::PATH_ENROLL, Method::POST) => {
            let body: wire::EnrollRequest = read_json(req).await?;
            let cert = blocking(move || ca.enroll(&body.token, &body.csr_pem)).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &certificate_response(&context.ca, &cert)?,
            ))
        }
        (wire::PATH_RENEW, Method::POST) => {
            let presented = client_cert
                .cloned()
                .ok_or_else(CaError::certificate_required)?;
            let body: wire::RenewRequest = read_json(req).await?;
            let (cert, crl) = blocking(move || ca.renew(&presented, &body.csr_pem)).await?;
            install_crl(&context.check, &crl.der);
            Ok(json_response(
                StatusCode::CREATED,
                &certificate_response(&context.ca, &cert)?,
            ))
        }
        (wire::PATH_REVOKE, Method::POST) => {
            let presented = client_cert
                .cloned()
                .ok_or_else(CaError::certificate_required)?;
            let body: wire::RevokeRequest = read_json(req).await?;
            let reason = body.reason.unwrap_or(RevocationReason::Unspecified);
            let done = blocking(move || ca.revoke_presented(&presented, reason)).await?;
            install_crl(&context.check, &done.crl.der);
            Ok(json_response(
                StatusCode::OK,
                &RevokeResponse {
                    serial: done.serial,
                    reason: done.reason,
                    revoked_at: done.revoked_at,
                },
            ))
        }
        (wire::PATH_CRL, Method::GET) => {
            let crl = blocking(move || ca.current_crl()).await?;
            Ok(bytes_response("application/pkix-crl", crl.der))
        }
        (wire::PATH_CRL_PEM, Method::GET) => {
            let crl = blocking(move || ca.current_crl()).await?;
            Ok(bytes_response(
                "application/x-pem-file",
                vcsdk::pki::pem::encode("X509 CRL", &crl.der).into_bytes(),
            ))
        }
        (wire::PATH_ROOT, Method::GET) => Ok(bytes_response(
            "application/x-pem-file",
            context.ca.root_pem().into_bytes(),
        )),
        (wire::PATH_HEALTH, Method::GET) => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        (
            wire::PATH_ENROLL
            | wire::PATH_RENEW
            | wire::PATH_REVOKE
            | wire::PATH_CRL
            | wire::PATH_CRL_PEM
            | wire::PATH_ROOT
            | wire::PATH_HEALTH,
            method,
        ) => Err(CaError::method_not_allowed(method.as_str(), &path)),
        _ => Err(CaError::not_found(&path)),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CaError> + Send + 'static,
) -> Result<T, CaError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CaError::internal(format!("request task failed: {e}")))?
}

/// Reads a JSON body of at most [`wire::MAX_REQUEST_BODY`] bytes into `T`, refusing unknown fields.
async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, CaError> {
    let json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !json {
        return Err(CaError::unsupported_media_type());
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_some_and(|n| n > wire::MAX_REQUEST_BODY as u64) {
        discard_rest(&mut body, 0).await;
        return Err(CaError::too_large(wire::MAX_REQUEST_BODY));
    }
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| CaError::malformed(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > wire::MAX_REQUEST_BODY {
                discard_rest(&mut body, bytes.len() + data.len()).await;
                return Err(CaError::too_large(wire::MAX_REQUEST_BODY));
            }
            bytes.extend_from_slice(&data);
        }
    }
    let body = bytes;
    serde_json::from_slice(&body).map_err(|e| CaError::malformed(format!("request body: {e}")))
}

/// How much of an oversized body the CA reads and throws away before answering 413, so that
/// a client still writing its body reads the refusal instead of a broken pipe. Beyond it the
/// connection is simply closed.
const DISCARD_LIMIT: usize = 1024 * 1024;

/// Reads and drops the rest of a refused body, up to [`DISCARD_LIMIT`] bytes in all and at most
/// a few seconds.
async fn discard_rest(body: &mut Incoming, already: usize) {
    let drain = async {
        let mut seen = already;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > DISCARD_LIMIT {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
}

fn certificate_response(
    ca: &CertificationAuthority,
    cert: &SignedCertificate,
) -> Result<CertificateResponse, CaError> {
    let info = CertificateInfo::parse(&cert.der).map_err(|e| CaError::internal(e.to_string()))?;
    Ok(CertificateResponse {
        id: info.id,
        serial: cert.serial.clone(),
        not_before: cert.not_before,
        not_after: cert.not_after,
        certificate_pem: vcsdk::pki::pem::encode("CERTIFICATE", &cert.der),
        chain_pem: ca.root_pem(),
    })
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let json = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(json)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn bytes_response(content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
