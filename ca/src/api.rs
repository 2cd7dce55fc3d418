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
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use vcsdk::pki::{CertificateCheck, CertificateInfo, Usage};
use vcsdk::proto::ca::{self as wire, CertificateResponse, RevocationReason, RevokeResponse};
use vcsdk::tls::{self, PkiClientVerifier, SharedCheck};

use crate::admission::Admission;
use crate::authority::SignedCertificate;
use crate::config::Limits;
use crate::error::CaError;
use crate::service::CertificationAuthority;
use crate::stages::{Clock, StageLimits, Watched};

/// How long work that has started on the database may take beyond the handler limit before the
/// connection is given up on (SQLite waits up to 10 s for a lock held by another process, such as
/// the operator's command line).
const DATABASE_WORK_ALLOWANCE: Duration = Duration::from_secs(15);
/// How often refused connections are summed up in the log.
const REFUSAL_REPORT_PERIOD: Duration = Duration::from_secs(10);

/// The `[limits]` of ca.toml as durations.
#[derive(Debug, Clone, Copy)]
struct Times {
    handshake: Duration,
    body: Duration,
    handler: Duration,
    stages: StageLimits,
}

impl Times {
    fn new(limits: &Limits) -> Self {
        Times {
            handshake: limits.handshake_timeout(),
            body: limits.body_timeout(),
            handler: limits.handler_timeout(),
            stages: StageLimits {
                headers: limits.header_timeout(),
                handling: limits.body_timeout()
                    + limits.handler_timeout()
                    + DATABASE_WORK_ALLOWANCE,
                writing: limits.write_timeout(),
                idle: limits.idle_timeout(),
            },
        }
    }
}

/// Everything a request handler needs.
struct Context {
    ca: Arc<CertificationAuthority>,
    check: SharedCheck,
    times: Times,
    /// Requests that need the database wait here, in order; one that waits longer than the
    /// handler limit is answered `busy` instead of piling up.
    database: Arc<Semaphore>,
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
    let limits = &ca.config().limits;
    let admission = Admission::new(limits.max_connections, limits.max_connections_per_address);
    let context = Arc::new(Context {
        ca: ca.clone(),
        check,
        times: Times::new(limits),
        database: Arc::new(Semaphore::new(1)),
    });
    tracing::info!(serial = %tls_cert.serial, not_after = tls_cert.not_after, "HTTPS certificate issued");

    let refresher = tokio::spawn(refresh_crl(context.clone()));
    let renewer = tokio::spawn(renew_tls_certificate(ca.clone(), certificate, tls_cert));
    let mut last_report = tokio::time::Instant::now();
    tokio::pin!(shutdown);
    loop {
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
        if last_report.elapsed() >= REFUSAL_REPORT_PERIOD {
            last_report = tokio::time::Instant::now();
            let refused = admission.take_refused();
            if refused > 0 {
                tracing::warn!(
                    refused,
                    in_use = admission.in_use(),
                    max = limits.max_connections,
                    per_address = limits.max_connections_per_address,
                    "connections refused over the caps in the last {} s",
                    REFUSAL_REPORT_PERIOD.as_secs()
                );
            }
        }
        // Over a cap the connection is closed at once: a refused client learns it immediately
        // and holds nothing.
        let slot = match admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(%peer, "connection refused: {why}");
                drop(tcp);
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let context = context.clone();
        tokio::spawn(async move {
            let _slot = slot;
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
    let tls = match vcsdk::tls::accept_or_refuse(&acceptor, tcp, context.times.handshake).await {
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
    let clock = Clock::new(context.times.stages);
    let service = {
        let clock = clock.clone();
        let context = context.clone();
        hyper::service::service_fn(move |req| {
            let context = context.clone();
            let client_cert = client_cert.clone();
            let clock = clock.clone();
            async move {
                clock.request_started();
                let response = handle(&context, client_cert.as_ref().as_ref(), req).await;
                clock.response_ready();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // The clock bounds header time (and every other stage); hyper's own timer is not used.
    http.header_read_timeout(None).max_buf_size(64 * 1024);
    let connection = http.serve_connection(TokioIo::new(Watched::new(tls, clock.clone())), service);
    tokio::select! {
        served = connection => {
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        stage = clock.expired() => {
            tracing::debug!(%peer, %stage, "connection closed: {stage} took too long");
        }
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
            if e.code == "busy" {
                tracing::warn!(%method, %path, code = e.code, "{}", e.message);
            } else if e.status >= 500 {
                tracing::error!(%method, %path, code = e.code, "{}", e.message);
            } else {
                tracing::debug!(%method, %path, code = e.code, "{}", e.message);
            }
            let mut response = json_response(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &wire::ErrorBody {
                    error: wire::ErrorDetail {
                        code: e.code.to_owned(),
                        message: e.message,
                    },
                },
            );
            // A body that timed out or was too large was not read to its end: the connection
            // cannot carry another request.
            if e.status == 408 || e.status == 413 {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            response
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
            let body: wire::EnrollRequest = read_json(req, context.times.body).await?;
            let cert = blocking(context, move || ca.enroll(&body.token, &body.csr_pem)).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &certificate_response(&context.ca, &cert)?,
            ))
        }
        (wire::PATH_RENEW, Method::POST) => {
            let presented = client_cert
                .cloned()
                .ok_or_else(CaError::certificate_required)?;
            let body: wire::RenewRequest = read_json(req, context.times.body).await?;
            let (cert, crl) =
                blocking(context, move || ca.renew(&presented, &body.csr_pem)).await?;
            install_crl(&context.check, &crl.der);
            Ok(json_response(
                StatusCode::CREATED,
                &certificate_response(&context.ca, &cert)?,
            ))
        }
        (wire::PATH_RENEWAL_OF, Method::POST) => {
            let body: wire::RenewalOfRequest = read_json(req, context.times.body).await?;
            let previous =
                vcsdk::pki::pem::certificate(body.certificate_pem.as_bytes(), "certificate_pem")
                    .map_err(|e| CaError::malformed(e.to_string()))?;
            let cert = blocking(context, move || ca.renewal_of(&previous, &body.csr_pem)).await?;
            Ok(json_response(
                StatusCode::OK,
                &certificate_response(&context.ca, &cert)?,
            ))
        }
        (wire::PATH_REVOKE, Method::POST) => {
            let presented = client_cert
                .cloned()
                .ok_or_else(CaError::certificate_required)?;
            let body: wire::RevokeRequest = read_json(req, context.times.body).await?;
            let reason = body.reason.unwrap_or(RevocationReason::Unspecified);
            let done = blocking(context, move || ca.revoke_presented(&presented, reason)).await?;
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
            let crl = blocking(context, move || ca.current_crl()).await?;
            Ok(bytes_response("application/pkix-crl", crl.der))
        }
        (wire::PATH_CRL_PEM, Method::GET) => {
            let crl = blocking(context, move || ca.current_crl()).await?;
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
            | wire::PATH_RENEWAL_OF
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

/// Runs database work on a blocking thread once the database queue lets it in; a request that
/// waits longer than the handler limit is answered `busy` and does nothing.
async fn blocking<T: Send + 'static>(
    context: &Context,
    work: impl FnOnce() -> Result<T, CaError> + Send + 'static,
) -> Result<T, CaError> {
    let limit = context.times.handler;
    let turn = tokio::time::timeout(limit, context.database.clone().acquire_owned())
        .await
        .map_err(|_| CaError::busy(limit))?
        .map_err(|e| CaError::internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
    .await
    .map_err(|e| CaError::internal(format!("request task failed: {e}")))?
}

/// Reads a JSON body of at most [`wire::MAX_REQUEST_BODY`] bytes, arriving within `limit`, into
/// `T`, refusing unknown fields.
async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
    limit: Duration,
) -> Result<T, CaError> {
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
        discard_rest(&mut body, 0, limit).await;
        return Err(CaError::too_large(wire::MAX_REQUEST_BODY));
    }
    let deadline = tokio::time::Instant::now() + limit;
    let mut bytes = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(CaError::request_timeout(limit)),
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        let frame =
            frame.map_err(|e| CaError::malformed(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > wire::MAX_REQUEST_BODY {
                discard_rest(&mut body, bytes.len() + data.len(), limit).await;
                return Err(CaError::too_large(wire::MAX_REQUEST_BODY));
            }
            bytes.extend_from_slice(&data);
        }
    }
    serde_json::from_slice(&bytes).map_err(|e| CaError::malformed(format!("request body: {e}")))
}

/// How much of an oversized body the CA reads and throws away before answering 413, so that
/// a client still writing its body reads the refusal instead of a broken pipe. Beyond it the
/// connection is simply closed.
const DISCARD_LIMIT: usize = 1024 * 1024;

/// Reads and drops the rest of a refused body, up to [`DISCARD_LIMIT`] bytes in all and at most
/// `limit` (the body time limit).
async fn discard_rest(body: &mut Incoming, already: usize, limit: Duration) {
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
    let _ = tokio::time::timeout(limit, drain).await;
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
