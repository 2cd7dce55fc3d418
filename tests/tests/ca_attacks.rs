//! Attacks on the real `vc-ca` process from a hostile network: stalled bodies and headers, silent
//! handshakes, clients that never read, floods from one address; and clients that try to grow the
//! CA's state without bound (renewal loops, refusal floods, CRL re-signing). The attacker's sockets
//! are bound to 127.0.0.2 (and 127.0.0.3…), the legitimate client's to 127.0.0.1; each attack is
//! seen cut off or refused while the legitimate client is served.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use vcsdk::ca_client::CaClient;
use vcsdk::identity::IdentityStore;
use vcsdk::pki::{CertificateCheck, CsrSubject};
use vcsdk::proto::ca::RevocationReason;
use vcsdk::{ClientId, Error};
use vcsdk_tests::TestCa;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const LEGIT: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Allowance above a configured limit for a noisy machine, when checking that a limit applied.
const SLACK: Duration = Duration::from_secs(4);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn connector(ca: &TestCa) -> TlsConnector {
    let check = CertificateCheck::from_root_pem(&ca.root_pem()).unwrap();
    let config = vcsdk::tls::client_config(Arc::new(RwLock::new(check)), None).unwrap();
    TlsConnector::from(Arc::new(config))
}

fn ca_client(ca: &TestCa) -> CaClient {
    CaClient::new(
        &ca.url(),
        CertificateCheck::from_root_pem(&ca.root_pem()).unwrap(),
    )
    .unwrap()
}

/// A TCP connection to `ca` from the address `source` (optionally with a small receive buffer).
async fn tcp_from(
    source: Ipv4Addr,
    ca: SocketAddr,
    recv_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::from((source, 0)))?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(ca))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// A TLS connection to `ca` from `source`. `Err` holds `"hung"` when the handshake did not finish
/// within 5 s, or the error the CA's refusal caused.
async fn tls_from(
    ca: &TestCa,
    source: Ipv4Addr,
    recv_buffer: Option<u32>,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = tcp_from(source, ca.process.addr, recv_buffer)
        .await
        .map_err(|e| format!("TCP: {e}"))?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    match tokio::time::timeout(Duration::from_secs(5), connector(ca).connect(name, tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(format!("TLS: {e}")),
        Err(_) => Err("hung".into()),
    }
}

/// Reads until the peer closes (or fails) the stream, for at most `limit`: how long that took
/// (`None` if it was still open) and what was read.
async fn read_until_closed<R: AsyncRead + Unpin>(
    stream: &mut R,
    limit: Duration,
) -> (Option<Duration>, Vec<u8>) {
    let started = Instant::now();
    let mut data = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Some(left) = limit.checked_sub(started.elapsed()) else {
            return (None, data);
        };
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (None, data),
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(started.elapsed()), data),
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
        }
    }
}

fn client_subject(id: &str) -> CsrSubject {
    CsrSubject::Client(ClientId::new(id).unwrap())
}

/// Enrolls `id` through the SDK (from 127.0.0.1), into `home/id`.
async fn enroll(ca: &TestCa, home: &std::path::Path, id: &str) -> Result<IdentityStore, Error> {
    let store = IdentityStore::new(home.join(id));
    store
        .enroll(
            &ca.url(),
            &ca.root_pem(),
            &ca.client_token(id),
            client_subject(id),
        )
        .await?;
    Ok(store)
}

/// How each stalled connection ended: after how long it was closed (if it was), and what it read.
type Closings = Arc<Mutex<Vec<(Option<Duration>, String)>>>;

const STALLED_POST: &[u8] = b"POST /v1/certificates HTTP/1.1\r\nHost: localhost\r\n\
Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n";

#[test]
fn stalled_bodies_from_several_addresses_are_cut_off_and_a_legitimate_client_enrolls_meanwhile() {
    // 64 slots (16 kept for addresses holding fewer than 2), 16 per address; bodies 2 s.
    let ca = TestCa::start_with(
        &[],
        &[
            "max_connections = 64",
            "max_connections_per_address = 16",
            "body_timeout = \"2s\"",
        ],
    );
    let body_timeout = Duration::from_secs(2);
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    let ca = Arc::new(ca);
    let stop = Arc::new(AtomicBool::new(false));
    let stalled = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let closings: Closings = Arc::default();
    rt.block_on(async {
        // Four attacking addresses, sixteen workers each (64 in all, as many as there are slots):
        // each opens a connection, sends headers that announce a body, sends none of it, and
        // waits to be cut off; then does it again.
        let mut attack = tokio::task::JoinSet::new();
        for host in 2..=5u8 {
            for _ in 0..16 {
                let (ca, stop, stalled, refused, closings) = (
                    ca.clone(),
                    stop.clone(),
                    stalled.clone(),
                    refused.clone(),
                    closings.clone(),
                );
                attack.spawn(async move {
                    for _ in 0..200 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let mut tls =
                            match tls_from(&ca, Ipv4Addr::new(127, 0, 0, host), None).await {
                                Ok(tls) => tls,
                                Err(_) => {
                                    refused.fetch_add(1, Ordering::SeqCst);
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    continue;
                                }
                            };
                        if tls.write_all(STALLED_POST).await.is_err() || tls.flush().await.is_err()
                        {
                            continue;
                        }
                        stalled.fetch_add(1, Ordering::SeqCst);
                        let (closed, data) =
                            read_until_closed(&mut tls, body_timeout + SLACK + SLACK).await;
                        stalled.fetch_sub(1, Ordering::SeqCst);
                        closings
                            .lock()
                            .unwrap()
                            .push((closed, String::from_utf8_lossy(&data).into_owned()));
                    }
                });
            }
        }
        // Once the attack holds the 48 slots it can, a legitimate client enrolls and fetches
        // the CRL.
        let deadline = Instant::now() + Duration::from_secs(10);
        while stalled.load(Ordering::SeqCst) < 48 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            stalled.load(Ordering::SeqCst) >= 40,
            "the attack must hold connections before the legitimate client comes"
        );
        let store = enroll(&ca, home.path(), "alice")
            .await
            .expect("a legitimate enrollment succeeds during the attack");
        ca_client(&ca)
            .crl_der()
            .await
            .expect("a CRL fetch succeeds during the attack");
        assert_eq!(store.load().unwrap().id(), "alice");
        stop.store(true, Ordering::SeqCst);
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            while attack.join_next().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "the attackers' connections all ended");
    });
    let closings = closings.lock().unwrap();
    assert!(
        closings.len() >= 48,
        "{} stalled connections",
        closings.len()
    );
    for (closed, answer) in closings.iter() {
        let closed = closed.expect("a stalled connection is closed by the CA");
        assert!(
            closed <= body_timeout + SLACK,
            "closed after {closed:?}, body limit {body_timeout:?}"
        );
        assert!(
            answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"),
            "{answer}"
        );
    }
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "connections over the caps are refused"
    );
}

/// Writes `bytes` one at a time every `every`, until the stream fails.
fn trickle(
    mut writer: tokio::io::WriteHalf<TlsStream<TcpStream>>,
    bytes: Vec<u8>,
    every: Duration,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut sent = 0;
        for b in bytes {
            if writer.write_all(&[b]).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(every).await;
        }
        sent
    })
}

#[test]
fn every_stage_of_a_connection_has_a_time_limit() {
    let limit = Duration::from_secs(1);
    let ca = TestCa::start_with(
        &[],
        &[
            "handshake_timeout = \"1s\"",
            "header_timeout = \"1s\"",
            "body_timeout = \"1s\"",
            "idle_timeout = \"1s\"",
        ],
    );
    let rt = runtime();
    let bound = limit + SLACK;
    let wait = bound + SLACK;
    rt.block_on(async {
        // No TLS handshake at all.
        let silent_tcp = async {
            let mut tcp = tcp_from(ATTACKER, ca.process.addr, None).await.unwrap();
            read_until_closed(&mut tcp, wait).await.0
        };
        // A handshake, then nothing.
        let silent_tls = async {
            let mut tls = tls_from(&ca, ATTACKER, None).await.unwrap();
            read_until_closed(&mut tls, wait).await.0
        };
        // Slowloris: headers one byte every 100 ms (60 s worth).
        let slow_headers = async {
            let tls = tls_from(&ca, ATTACKER, None).await.unwrap();
            let (mut reader, writer) = tokio::io::split(tls);
            let mut headers = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n".to_vec();
            headers.extend(std::iter::repeat_n(b'a', 600));
            let writer = trickle(writer, headers, Duration::from_millis(100));
            let closed = read_until_closed(&mut reader, wait).await.0;
            writer.abort();
            closed
        };
        // A body one byte every 100 ms.
        let slow_body = async {
            let tls = tls_from(&ca, ATTACKER, None).await.unwrap();
            let (mut reader, mut writer) = tokio::io::split(tls);
            writer.write_all(STALLED_POST).await.unwrap();
            let writer = trickle(writer, vec![b' '; 600], Duration::from_millis(100));
            let (closed, answer) = read_until_closed(&mut reader, wait).await;
            writer.abort();
            let answer = String::from_utf8_lossy(&answer).into_owned();
            assert!(
                answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"),
                "{answer}"
            );
            closed
        };
        // One request answered, then an idle kept-alive connection.
        let idle = async {
            let mut tls = tls_from(&ca, ATTACKER, None).await.unwrap();
            tls.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&answer).contains("\"ok\"") {
                let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
                    .await
                    .expect("the health answer arrives")
                    .unwrap();
                assert!(n > 0, "closed before answering");
                answer.extend_from_slice(&buf[..n]);
            }
            assert!(answer.starts_with(b"HTTP/1.1 200"));
            read_until_closed(&mut tls, wait).await.0
        };
        let (silent_tcp, silent_tls, slow_headers, slow_body, idle) =
            tokio::join!(silent_tcp, silent_tls, slow_headers, slow_body, idle);
        for (what, closed) in [
            ("TLS handshake", silent_tcp),
            ("headers after the handshake", silent_tls),
            ("headers sent slowly", slow_headers),
            ("body sent slowly", slow_body),
            ("idle keep-alive", idle),
        ] {
            let closed = closed.unwrap_or_else(|| panic!("{what}: still open after {wait:?}"));
            assert!(closed <= bound, "{what}: closed after {closed:?}");
        }
        // The CA still serves.
        ca_client(&ca).crl_der().await.unwrap();
    });
    let log = ca.process.log();
    assert!(
        log.contains("request headers took too long")
            && log.contains("idle keep-alive took too long"),
        "{log}"
    );
}

#[test]
fn a_client_that_stops_reading_its_responses_is_cut_off_and_frees_its_slot() {
    // Two connections per address; responses must be written within 1 s.
    let ca = TestCa::start_with(
        &[],
        &[
            "max_connections_per_address = 2",
            "write_timeout = \"1s\"",
            "idle_timeout = \"60s\"",
            "header_timeout = \"60s\"",
        ],
    );
    let rt = runtime();
    const PIPELINED: usize = 20_000;
    rt.block_on(async {
        // Two connections with a tiny receive window that never read.
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for _ in 0..2 {
            let tls = tls_from(&ca, ATTACKER, Some(4096)).await.unwrap();
            let (reader, writer) = tokio::io::split(tls);
            readers.push(reader);
            writers.push(writer);
        }
        // The address holds its two slots: a third connection is refused.
        let third = tls_from(&ca, ATTACKER, None).await;
        assert!(
            third.as_ref().is_err_and(|e| e != "hung"),
            "a third connection must be refused at once: {:?}",
            third.map(|_| ())
        );
        // Each asks for the CRL 20 000 times in one go, and reads none of the answers.
        let mut pipelines = Vec::new();
        for mut writer in writers {
            pipelines.push(tokio::spawn(async move {
                let request = b"GET /v1/crl.pem HTTP/1.1\r\nHost: localhost\r\n\r\n";
                let all: Vec<u8> = request.repeat(PIPELINED);
                let _ = writer.write_all(&all).await;
                let _ = writer.flush().await;
                // Keep the writing half (and so the connection) open.
                tokio::time::sleep(Duration::from_secs(60)).await;
                drop(writer);
            }));
        }
        // Meanwhile a legitimate client gets the CRL.
        ca_client(&ca).crl_der().await.unwrap();
        // The CA cuts the two readers off: the address gets both its slots back.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut held = Vec::new();
        while held.len() < 2 && Instant::now() < deadline {
            match tls_from(&ca, ATTACKER, None).await {
                Ok(tls) => held.push(tls),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        assert_eq!(
            held.len(),
            2,
            "the non-reading connections still hold their slots: {}",
            ca.process.log()
        );
        // Reading now ends in a close, with far fewer answers than were asked for.
        for reader in &mut readers {
            let (closed, data) = read_until_closed(reader, Duration::from_secs(10)).await;
            assert!(closed.is_some(), "the non-reading connection is closed");
            let answers = String::from_utf8_lossy(&data)
                .matches("HTTP/1.1 200")
                .count();
            assert!(answers < PIPELINED, "{answers} answers");
        }
        for pipeline in pipelines {
            pipeline.abort();
        }
    });
    assert!(
        ca.process
            .wait_for_log("response write took too long", Duration::from_secs(5)),
        "{}",
        ca.process.log()
    );
}

#[test]
fn connections_over_the_per_address_cap_are_refused_at_once_while_others_are_served() {
    let ca = TestCa::start_with(
        &[],
        &[
            "max_connections_per_address = 4",
            "handshake_timeout = \"30s\"",
            "header_timeout = \"30s\"",
        ],
    );
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(tls_from(&ca, ATTACKER, None).await.expect("within the cap"));
        }
        // Over the cap: closed at once (the handshake limit is 30 s; it fails well within 5 s).
        for _ in 0..3 {
            let started = Instant::now();
            let over = tls_from(&ca, ATTACKER, None).await;
            let err = over
                .map(|_| ())
                .expect_err("a fifth connection from the address is refused");
            assert_ne!(err, "hung", "refused, not left waiting");
            assert!(started.elapsed() < Duration::from_secs(5));
        }
        // Another address is served meanwhile.
        let store = enroll(&ca, home.path(), "alice").await.unwrap();
        assert_eq!(store.load().unwrap().id(), "alice");
        let mut tls = tls_from(&ca, LEGIT, None).await.unwrap();
        tls.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (_, answer) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        // A connection that ends gives its slot back.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(5);
        let again = loop {
            match tls_from(&ca, ATTACKER, None).await {
                Ok(tls) => break Some(tls),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(_) => break None,
            }
        };
        assert!(again.is_some(), "the freed slot is given again");
    });
    assert!(ca
        .process
        .log()
        .contains("connection refused: the address holds its maximum of connections"));
}

#[test]
fn one_address_cannot_take_the_reserved_last_quarter_of_the_slots() {
    // 8 slots, a per-address cap above that: one address gets 6, never the last 2.
    let ca = TestCa::start_with(
        &[],
        &[
            "max_connections = 8",
            "max_connections_per_address = 100",
            "header_timeout = \"30s\"",
        ],
    );
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..12 {
            if let Ok(tls) = tls_from(&ca, ATTACKER, None).await {
                held.push(tls);
            }
        }
        assert_eq!(held.len(), 6, "one address holds at most three quarters");
        // A third address takes one reserved slot, not two.
        let first = tls_from(&ca, Ipv4Addr::new(127, 0, 0, 3), None).await;
        assert!(first.is_ok(), "{:?}", first.err());
        let second = tls_from(&ca, Ipv4Addr::new(127, 0, 0, 3), None).await;
        assert!(second.is_err());
        // The legitimate client still enrolls in the last slot.
        let store = enroll(&ca, home.path(), "alice").await.unwrap();
        assert_eq!(store.load().unwrap().id(), "alice");
    });
}

#[test]
fn a_request_that_cannot_reach_the_database_in_time_is_answered_busy() {
    let ca = TestCa::start_with(&[], &["handler_timeout = \"1s\""]);
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    let token = ca.client_token("alice");
    // The CA is serving (its start-up writes are done) before the database is locked.
    rt.block_on(ca_client(&ca).crl_der()).unwrap();
    // Another process holds the database's write lock: an enrollment waits for it (up to 10 s)
    // with the database queue; requests behind it are answered `busy` after 1 s.
    let db = rusqlite::Connection::open(ca.data_dir().join("ca.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    rt.block_on(async {
        let store = IdentityStore::new(home.path().join("alice"));
        let (url, root) = (ca.url(), ca.root_pem());
        let enrolling = tokio::spawn(async move {
            store
                .enroll(&url, &root, &token, client_subject("alice"))
                .await
        });
        let client = ca_client(&ca);
        let mut busy = None;
        for _ in 0..6 {
            match client.crl_der().await {
                Err(Error::CaRefused { code, message }) => {
                    busy = Some((code, message));
                    break;
                }
                Err(e) => panic!("{e}\n{}", ca.process.log()),
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let (code, message) = busy.expect("a request queued behind the locked database is refused");
        assert_eq!(code, "busy", "{message}");
        db.execute_batch("COMMIT").unwrap();
        let enrolled = tokio::time::timeout(Duration::from_secs(20), enrolling)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(enrolled.expect("the enrollment completes").id(), "alice");
        client.crl_der().await.expect("served again");
    });
}

/// Serials (lowercase hex) listed by a DER CRL, as openssl reads them.
fn crl_serials(der: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crl.der");
    std::fs::write(&path, der).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

fn client_records(ca: &TestCa, id: &str) -> usize {
    let list = ca.cli(&["list", "--format", "json"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    records.iter().filter(|r| r["subject"] == id).count()
}

fn audit(ca: &TestCa, event: &str) -> Vec<serde_json::Value> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ca.cli(&["audit", "--format", "json"])).unwrap();
    entries
        .into_iter()
        .filter(|e| e["event"] == event)
        .collect()
}

fn crl_rows(ca: &TestCa) -> (i64, i64) {
    let db = rusqlite::Connection::open(ca.data_dir().join("ca.db")).unwrap();
    db.query_row("SELECT COUNT(*), MAX(number) FROM crls", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

fn refused_code(result: Result<vcsdk::identity::Identity, Error>) -> String {
    match result {
        Err(Error::CaRefused { code, .. }) => code,
        Err(e) => format!("not a refusal: {e}"),
        Ok(_) => "accepted".into(),
    }
}

#[test]
fn a_client_renewing_in_a_loop_is_refused_and_grows_nothing() {
    let ca = TestCa::start(&[]);
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let store = enroll(&ca, home.path(), "alice").await.unwrap();
        // A certificate from enrollment renews at once; the renewed one not before half its life.
        let renewed = store.renew().await.unwrap();
        let crl_before = crl_rows(&ca);
        for _ in 0..25 {
            assert_eq!(refused_code(store.renew().await), "renew_too_soon");
        }
        assert_eq!(
            store.load().unwrap().info().serial,
            renewed.info().serial,
            "a refused renewal changes nothing"
        );
        assert_eq!(client_records(&ca, "alice"), 2);
        let crl = ca_client(&ca).crl_der().await.unwrap();
        assert_eq!(
            crl_serials(&crl).len(),
            1,
            "only the superseded certificate"
        );
        assert_eq!(crl_rows(&ca), crl_before, "no CRL was signed for a refusal");
    });
    // Twenty-five refusals are one audit entry counted 25 times.
    let refusals = audit(&ca, "renew_refused");
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0]["count"], 25);
    assert_eq!(refusals[0]["detail"], "renew_too_soon");

    // With a configured interval, renewal is allowed again once it has passed.
    let ca = TestCa::start(&["--renew-min-interval", "3s"]);
    rt.block_on(async {
        let store = enroll(&ca, home.path(), "bob").await.unwrap();
        store.renew().await.unwrap();
        let renewed_at = Instant::now();
        assert_eq!(refused_code(store.renew().await), "renew_too_soon");
        tokio::time::sleep(
            Duration::from_secs(3).saturating_sub(renewed_at.elapsed())
                + Duration::from_millis(1100),
        )
        .await;
        store.renew().await.expect("renewal after the interval");
    });
}

#[test]
fn floods_of_refused_enrollments_add_one_audit_entry_each() {
    let ca = TestCa::start(&[]);
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    let used = ca.client_token("alice");
    rt.block_on(async {
        let store = IdentityStore::new(home.path().join("alice"));
        store
            .enroll(&ca.url(), &ca.root_pem(), &used, client_subject("alice"))
            .await
            .unwrap();
        for i in 0..30 {
            let other = IdentityStore::new(home.path().join(format!("x{i}")));
            let unknown = format!("vct1.{:064x}", i + 1);
            let r = other
                .enroll(
                    &ca.url(),
                    &ca.root_pem(),
                    &unknown,
                    client_subject("mallory"),
                )
                .await;
            assert_eq!(refused_code(r), "token_unknown");
            let other = IdentityStore::new(home.path().join(format!("y{i}")));
            let r = other
                .enroll(&ca.url(), &ca.root_pem(), &used, client_subject("alice"))
                .await;
            assert_eq!(refused_code(r), "token_used");
        }
    });
    let refusals = audit(&ca, "enroll_refused");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for code in ["token_unknown", "token_used"] {
        let entry = refusals.iter().find(|e| e["detail"] == code).unwrap();
        assert_eq!(entry["count"], 30, "{entry}");
    }
    assert_eq!(client_records(&ca, "alice"), 1);
}

#[test]
fn old_crls_are_pruned_and_an_expired_revoked_certificate_leaves_the_crl() {
    // Certificates live 4 s; the CRL is valid 2 s, so it is re-signed every second.
    let ca = TestCa::start(&["--cert-validity", "4s", "--crl-validity", "2s"]);
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let client = ca_client(&ca);
        let gone = enroll(&ca, home.path(), "gone").await.unwrap();
        let serial = gone.load().unwrap().info().serial.clone();
        gone.revoke(RevocationReason::KeyCompromise).await.unwrap();
        assert!(crl_serials(&client.crl_der().await.unwrap()).contains(&serial));
        // Ten more revocations, each signing a CRL.
        for i in 0..10 {
            let store = enroll(&ca, home.path(), &format!("r{i}")).await.unwrap();
            store.revoke(RevocationReason::Unspecified).await.unwrap();
        }
        // Once the revoked certificate has expired, the next CRL no longer lists it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut listed = true;
        while listed && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            listed = crl_serials(&client.crl_der().await.unwrap()).contains(&serial);
        }
        assert!(!listed, "an expired certificate stays on the CRL");
    });
    let (rows, newest) = crl_rows(&ca);
    assert!(newest >= 12, "CRLs signed: {newest}");
    assert!(rows <= 8, "{rows} CRLs kept");
}
