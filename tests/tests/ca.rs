//! The real `vc-ca` process on 127.0.0.1, driven by the SDK, the `vc` client and openssl.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use vcsdk::https::{self, HttpsUrl, Method};
use vcsdk::identity::{AutoRenewal, IdentityStore};
use vcsdk::pki::{CertificateCheck, CsrSubject, Usage};
use vcsdk::proto::ca::{self as wire, RevocationReason};
use vcsdk::tls;
use vcsdk::{ClientId, Error};
use vcsdk_tests::{has_mode, run, run_ok, TestCa};

fn client_subject(id: &str) -> CsrSubject {
    CsrSubject::Client(ClientId::new(id).unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn openssl_verify(
    ca: &TestCa,
    cert: &std::path::Path,
    crl: Option<&std::path::Path>,
) -> (bool, String) {
    let root = ca.root_path();
    let mut args = vec!["verify".to_string()];
    if let Some(crl) = crl {
        args.extend([
            "-crl_check".into(),
            "-CRLfile".into(),
            crl.display().to_string(),
        ]);
    }
    args.extend([
        "-CAfile".into(),
        root.display().to_string(),
        cert.display().to_string(),
    ]);
    let out = std::process::Command::new("openssl")
        .args(&args)
        .output()
        .expect("openssl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn enroll_renew_revoke_with_the_sdk_and_openssl_agrees() {
    let ca = TestCa::start(&[]);
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    let store = IdentityStore::new(home.path().join("alice"));
    let token = ca.client_token("alice");
    let first = rt
        .block_on(store.enroll(&ca.url(), &ca.root_pem(), &token, client_subject("alice")))
        .unwrap();
    assert_eq!(first.id(), "alice");
    assert!(
        has_mode(&store.dir().join("key.pem"), 0o600),
        "key.pem must be 0600"
    );
    let cert_path = store.dir().join("cert.pem");
    let (ok, text) = openssl_verify(&ca, &cert_path, None);
    assert!(ok, "openssl refused an issued certificate: {text}");
    let purpose = std::process::Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "extendedKeyUsage,subjectAltName",
            "-in",
        ])
        .arg(&cert_path)
        .output()
        .unwrap();
    let purpose = String::from_utf8_lossy(&purpose.stdout);
    assert!(
        purpose.contains("TLS Web Client Authentication"),
        "{purpose}"
    );
    assert!(purpose.contains("URI:urn:vcsdk:client:alice"), "{purpose}");

    // The loaded identity is the stored one.
    let loaded = store.load().unwrap();
    assert_eq!(loaded.info().serial, first.info().serial);

    // Renewal: new key, new serial; the old certificate is revoked as superseded.
    let old_cert = home.path().join("old.pem");
    std::fs::copy(&cert_path, &old_cert).unwrap();
    let old_key = std::fs::read(store.dir().join("key.pem")).unwrap();
    let second = rt.block_on(store.renew()).unwrap();
    assert_ne!(second.info().serial, first.info().serial);
    assert_ne!(std::fs::read(store.dir().join("key.pem")).unwrap(), old_key);
    let crl = home.path().join("crl.pem");
    ca.cli(&["crl", "--out", crl.to_str().unwrap()]);
    let (ok, text) = openssl_verify(&ca, &old_cert, Some(&crl));
    assert!(
        !ok && text.contains("revoked"),
        "superseded certificate must be refused: {text}"
    );
    let (ok, text) = openssl_verify(&ca, &cert_path, Some(&crl));
    assert!(ok, "renewed certificate must pass with the CRL: {text}");

    // The SDK's own check with the CA's CRL agrees.
    let check = rt.block_on(store.refresh_crl()).unwrap();
    let old_der = vcsdk::pki::pem::certificate(&std::fs::read(&old_cert).unwrap(), "old").unwrap();
    let now = rustls_pki_types::UnixTime::now();
    assert_eq!(
        check
            .verify(&[old_der], Usage::Client, Some("alice"), now)
            .unwrap_err(),
        vcsdk::pki::CertificateError::Revoked
    );
    check
        .verify(
            &[second.certificate().clone()],
            Usage::Client,
            Some("alice"),
            now,
        )
        .unwrap();

    // Revocation by the holder, over mutual TLS.
    let revoked_cert = home.path().join("revoked.pem");
    std::fs::copy(&cert_path, &revoked_cert).unwrap();
    let done = rt
        .block_on(store.revoke(RevocationReason::KeyCompromise))
        .unwrap();
    assert_eq!(done.serial, second.info().serial);
    assert!(!store.exists(), "a revoked identity is no longer presented");
    ca.cli(&["crl", "--out", crl.to_str().unwrap()]);
    let (ok, text) = openssl_verify(&ca, &revoked_cert, Some(&crl));
    assert!(
        !ok && text.contains("revoked"),
        "revoked certificate must be refused: {text}"
    );
    let crl_text = std::process::Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(&crl)
        .output()
        .unwrap();
    let crl_text = String::from_utf8_lossy(&crl_text.stdout).to_string();
    assert!(
        crl_text.contains("Key Compromise") && crl_text.contains("Superseded"),
        "{crl_text}"
    );

    let list = ca.cli(&["list"]);
    assert!(
        list.contains(&first.info().serial) && list.contains("revoked (superseded)"),
        "{list}"
    );
    assert!(list.contains("revoked (keyCompromise)"), "{list}");
}

#[test]
fn the_vc_command_line_enrolls_renews_and_revokes() {
    let ca = TestCa::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("bob");
    let dir = dir.to_str().unwrap();
    let token = ca.client_token("bob");
    let url = ca.url();
    let root = ca.root_path();
    let out = run_ok(
        "vc",
        &[
            "enroll",
            "--ca-url",
            &url,
            "--ca-root",
            root.to_str().unwrap(),
            "--token",
            &token,
            "--id",
            "bob",
            "--identity-dir",
            dir,
        ],
    );
    assert!(out.starts_with("enrolled bob (serial "), "{out}");
    let who = run_ok("vc", &["whoami", "--identity-dir", dir, "--check"]);
    assert!(
        who.contains("id:          bob") && who.contains("status:      valid"),
        "{who}"
    );
    let not_due = run_ok("vc", &["renew", "--identity-dir", dir, "--if-due"]);
    assert!(not_due.starts_with("not due"), "{not_due}");
    let renewed = run_ok("vc", &["renew", "--identity-dir", dir]);
    assert!(renewed.starts_with("renewed bob"), "{renewed}");

    // The operator revokes it; the holder sees it refused and can no longer renew.
    let json = run_ok("vc", &["whoami", "--identity-dir", dir, "--json"]);
    let serial = serde_json::from_str::<serde_json::Value>(&json).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = ca.cli(&[
        "revoke",
        "--serial",
        &serial,
        "--reason",
        "privilegeWithdrawn",
    ]);
    assert!(revoked.contains(&serial), "{revoked}");
    let who = run("vc", &["whoami", "--identity-dir", dir, "--check"]);
    assert_eq!(who.status.code(), Some(9), "a failed check exits non-zero");
    let said = String::from_utf8_lossy(&who.stdout);
    assert!(said.contains("refused: certificate revoked"), "{said}");
    let renew = run("vc", &["renew", "--identity-dir", dir]);
    assert!(!renew.status.success());
    let err = String::from_utf8_lossy(&renew.stderr);
    assert!(err.to_lowercase().contains("revoked"), "{err}");
    let revoke = run("vc", &["revoke", "--identity-dir", dir]);
    assert!(!revoke.status.success());

    // A wrong token, and a bad id, each give a clear error.
    let bad = run(
        "vc",
        &[
            "enroll",
            "--ca-url",
            &url,
            "--ca-root",
            root.to_str().unwrap(),
            "--token",
            "vct1.00",
            "--id",
            "carol",
            "--identity-dir",
            &format!("{dir}-2"),
        ],
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("token_unknown"));
    let bad = run(
        "vc",
        &[
            "enroll",
            "--ca-url",
            &url,
            "--ca-root",
            root.to_str().unwrap(),
            "--token",
            "x",
            "--id",
            "car ol",
            "--identity-dir",
            &format!("{dir}-3"),
        ],
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("contains ' '"));
}

#[test]
fn init_names_the_root_sets_its_lifetime_tokens_lapse_and_holders_revoke_from_the_cli() {
    // `vc-ca init --name --validity-days`: the root's subject and lifetime, as openssl reads them.
    let ca = TestCa::start(&["--name", "Acme Test CA", "--validity-days", "30"]);
    let root = ca.root_path();
    let root = root.to_str().unwrap();
    let subject = std::process::Command::new("openssl")
        .args(["x509", "-in", root, "-noout", "-subject"])
        .output()
        .unwrap();
    let subject = String::from_utf8_lossy(&subject.stdout);
    assert!(subject.contains("Acme Test CA"), "{subject}");
    let lives_past = |days: u64| {
        std::process::Command::new("openssl")
            .args([
                "x509",
                "-in",
                root,
                "-noout",
                "-checkend",
                &(days * 86_400).to_string(),
            ])
            .status()
            .unwrap()
            .success()
    };
    assert!(lives_past(29), "the root must live 30 days");
    assert!(!lives_past(31), "the root must not outlive 30 days");

    // `vc-ca token create --ttl`: a token past its lifetime is refused as expired.
    let token = ca
        .cli(&["token", "create", "--client", "zed", "--ttl", "1s"])
        .trim()
        .to_owned();
    std::thread::sleep(Duration::from_millis(2100));
    let home = tempfile::tempdir().unwrap();
    let enroll = |token: &str, dir: &str| {
        run(
            "vc",
            &[
                "enroll",
                "--ca-url",
                &ca.url(),
                "--ca-root",
                root,
                "--token",
                token,
                "--id",
                "zed",
                "--identity-dir",
                dir,
            ],
        )
    };
    let late_dir = home.path().join("late");
    let late = enroll(&token, late_dir.to_str().unwrap());
    assert!(!late.status.success());
    assert!(
        String::from_utf8_lossy(&late.stderr).contains("token_expired"),
        "{}",
        String::from_utf8_lossy(&late.stderr)
    );

    // `vc revoke` by the holder: the CA lists the certificate as revoked with the reason given.
    let dir = home.path().join("zed");
    let dir = dir.to_str().unwrap();
    let fresh = ca
        .cli(&["token", "create", "--client", "zed"])
        .trim()
        .to_owned();
    assert!(enroll(&fresh, dir).status.success());
    let out = run_ok(
        "vc",
        &["revoke", "--identity-dir", dir, "--reason", "keyCompromise"],
    );
    assert!(
        out.starts_with("revoked serial ") && out.contains("keyCompromise"),
        "{out}"
    );
    let list = ca.cli(&["list"]);
    let line = list.lines().find(|l| l.contains("zed")).unwrap_or_default();
    assert!(line.contains("revoked"), "{list}");
    let who = run("vc", &["whoami", "--identity-dir", dir]);
    assert!(
        !who.status.success(),
        "the identity directory holds no certificate after revoking"
    );
}

#[test]
fn the_cli_refuses_to_overwrite_a_ca() {
    let ca = TestCa::start(&[]);
    let data = ca.data_dir();
    let out = run("vc-ca", &["init", "--data-dir", data.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert!(has_mode(&data.join("ca-key.pem"), 0o600));
    let out = run(
        "vc-ca",
        &[
            "token",
            "create",
            "--data-dir",
            data.to_str().unwrap(),
            "--client",
            "a/b",
        ],
    );
    assert!(!out.status.success());
    let help = run_ok("vc-ca", &["--help"]);
    for word in ["init", "serve", "token", "revoke", "crl", "list"] {
        assert!(help.contains(word), "{help}");
    }
}

/// A raw request and the status and error code it must get.
type RawCase = (
    Method,
    &'static str,
    Option<(&'static str, Vec<u8>)>,
    u16,
    &'static str,
);

/// Raw requests, for what the SDK would never send.
fn raw(
    ca: &TestCa,
    identity: Option<tls::CertifiedKey>,
    method: Method,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<(u16, String), Error> {
    let check = Arc::new(RwLock::new(
        CertificateCheck::from_root_pem(&ca.root_pem()).unwrap(),
    ));
    let config = Arc::new(tls::client_config(check, identity).unwrap());
    let url = HttpsUrl::parse(&ca.url()).unwrap();
    let rt = runtime();
    let response = rt.block_on(https::request(config, &url, method, path, body))?;
    Ok((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<wire::ErrorBody>(body)
        .map(|b| b.error.code)
        .unwrap_or_else(|_| format!("not an error body: {body}"))
}

#[test]
fn malformed_oversize_and_unauthenticated_requests_are_refused() {
    let ca = TestCa::start(&[]);
    let json = "application/json";
    let big = format!(
        "{{\"token\":\"{}\",\"csr_pem\":\"x\"}}",
        "a".repeat(70 * 1024)
    );
    let cases: Vec<RawCase> = vec![
        (
            Method::POST,
            wire::PATH_ENROLL,
            Some((json, big.into_bytes())),
            413,
            "body_too_large",
        ),
        (
            Method::POST,
            wire::PATH_ENROLL,
            Some((json, b"{not json".to_vec())),
            400,
            "malformed_request",
        ),
        (
            Method::POST,
            wire::PATH_ENROLL,
            Some((
                json,
                br#"{"token":"t","csr_pem":"c","admin":true}"#.to_vec(),
            )),
            400,
            "malformed_request",
        ),
        (
            Method::POST,
            wire::PATH_ENROLL,
            Some((json, br#"{"token":"t"}"#.to_vec())),
            400,
            "malformed_request",
        ),
        (
            Method::POST,
            wire::PATH_ENROLL,
            Some(("text/plain", br#"{"token":"t","csr_pem":"c"}"#.to_vec())),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            wire::PATH_ENROLL,
            Some((json, br#"{"token":"t","csr_pem":"c"}"#.to_vec())),
            400,
            "csr_invalid",
        ),
        (
            Method::GET,
            wire::PATH_ENROLL,
            None,
            405,
            "method_not_allowed",
        ),
        (Method::GET, "/v1/nothing", None, 404, "not_found"),
        (
            Method::POST,
            wire::PATH_RENEW,
            Some((json, br#"{"csr_pem":"c"}"#.to_vec())),
            401,
            "certificate_required",
        ),
        (
            Method::POST,
            wire::PATH_REVOKE,
            Some((json, b"{}".to_vec())),
            401,
            "certificate_required",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, text) = raw(&ca, None, method.clone(), path, body).unwrap();
        assert_eq!(
            (got, error_code(&text).as_str()),
            (status, code),
            "{method} {path}: {text}"
        );
    }
    let (status, crl) = raw(&ca, None, Method::GET, wire::PATH_CRL_PEM, None).unwrap();
    assert_eq!(status, 200);
    assert!(crl.starts_with("-----BEGIN X509 CRL-----"));
    let (status, root) = raw(&ca, None, Method::GET, wire::PATH_ROOT, None).unwrap();
    assert_eq!((status, root.as_bytes()), (200, ca.root_pem().as_slice()));
    // The CA is still serving after all that.
    let (status, _) = raw(&ca, None, Method::GET, wire::PATH_HEALTH, None).unwrap();
    assert_eq!(status, 200);
    // Nothing was issued but the CA's own HTTPS certificate.
    assert_eq!(ca.cli(&["list"]).lines().count(), 2);
}

#[test]
fn revoked_and_foreign_certificates_cannot_renew_or_revoke_and_a_wrong_root_is_refused() {
    let ca = TestCa::start(&[]);
    let other = TestCa::start(&["--name", "Some Other CA"]);
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();

    // An identity from another CA: the TLS layer refuses it.
    let foreign = IdentityStore::new(home.path().join("foreign"));
    let id = rt
        .block_on(foreign.enroll(
            &other.url(),
            &other.root_pem(),
            &other.client_token("mallory"),
            client_subject("mallory"),
        ))
        .unwrap();
    let body = serde_json::to_vec(&wire::RevokeRequest::default()).unwrap();
    let err = raw(
        &ca,
        Some(id.certified_key()),
        Method::POST,
        wire::PATH_REVOKE,
        Some(("application/json", body.clone())),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("UnknownCA") || err.to_string().contains("unknown"),
        "{err}"
    );

    // A client that pins the wrong root refuses the CA.
    let wrong = IdentityStore::new(home.path().join("wrong"));
    let err = rt
        .block_on(wrong.enroll(
            &ca.url(),
            &other.root_pem(),
            &ca.client_token("alice"),
            client_subject("alice"),
        ))
        .unwrap_err();
    assert!(
        err.to_string().contains("not issued by the pinned CA root"),
        "{err}"
    );

    // A revoked certificate can do nothing more.
    let alice = IdentityStore::new(home.path().join("alice"));
    let identity = rt
        .block_on(alice.enroll(
            &ca.url(),
            &ca.root_pem(),
            &ca.client_token("alice"),
            client_subject("alice"),
        ))
        .unwrap();
    let key = identity.certified_key();
    let done = raw(
        &ca,
        Some(identity.certified_key()),
        Method::POST,
        wire::PATH_REVOKE,
        Some(("application/json", body.clone())),
    )
    .unwrap();
    assert_eq!(done.0, 200, "{}", done.1);
    for path in [wire::PATH_REVOKE, wire::PATH_RENEW] {
        let body = if path == wire::PATH_RENEW {
            let k = vcsdk::pki::new_key_pair().unwrap();
            serde_json::to_vec(&wire::RenewRequest {
                csr_pem: client_subject("alice").csr_pem(&k).unwrap(),
            })
            .unwrap()
        } else {
            body.clone()
        };
        let key = tls::CertifiedKey {
            chain: key.chain.clone(),
            key: key.key.clone_key(),
        };
        match raw(
            &ca,
            Some(key),
            Method::POST,
            path,
            Some(("application/json", body)),
        ) {
            Err(e) => assert!(e.to_string().contains("Revoked"), "{path}: {e}"),
            Ok((status, text)) => assert_eq!(
                (status, error_code(&text).as_str()),
                (403, "certificate_revoked"),
                "{path}"
            ),
        }
    }
    let list = ca.cli(&["list"]);
    assert_eq!(list.matches("alice").count(), 1, "{list}");
}

#[test]
fn fifty_parallel_enrollments_all_succeed_with_distinct_serials() {
    let ca = TestCa::start(&[]);
    let data = ca.data_dir();
    let authority = vcca::CertificationAuthority::open(&data).unwrap();
    let tokens: Vec<(String, String)> = (0..50)
        .map(|i| {
            let id = format!("user{i}");
            let grant = vcca::grant::Grant::Client(ClientId::new(&id).unwrap());
            (id, authority.create_token(&grant, None).unwrap())
        })
        .collect();
    drop(authority);
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    let url = ca.url();
    let root = ca.root_pem();
    let serials = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (id, token) in tokens {
            let store = IdentityStore::new(home.path().join(&id));
            let url = url.clone();
            let root = root.clone();
            tasks.spawn(async move {
                let identity = store
                    .enroll(&url, &root, &token, client_subject(&id))
                    .await?;
                Ok::<_, Error>((id, identity.info().serial.clone()))
            });
        }
        let mut serials = std::collections::BTreeSet::new();
        while let Some(done) = tasks.join_next().await {
            let (id, serial) = done
                .unwrap()
                .unwrap_or_else(|e| panic!("enrollment failed: {e}"));
            assert!(serials.insert(serial), "duplicate serial for {id}");
        }
        serials
    });
    assert_eq!(serials.len(), 50);
    let list = ca.cli(&["list", "--format", "json"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(
        records.iter().filter(|r| r["usage"] == "client").count(),
        50
    );
}

#[test]
fn identities_renew_automatically_at_two_thirds_of_their_lifetime() {
    let ca = TestCa::start(&["--cert-validity", "6s"]);
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    let store = IdentityStore::new(home.path().join("auto"));
    let first = rt
        .block_on(store.enroll(
            &ca.url(),
            &ca.root_pem(),
            &ca.client_token("auto"),
            client_subject("auto"),
        ))
        .unwrap();
    let first_serial = first.info().serial.clone();
    let due = first.info().renewal_due_at();
    rt.block_on(async {
        let renewal = AutoRenewal::spawn(store.clone(), first);
        let mut updates = renewal.subscribe();
        tokio::time::timeout(Duration::from_secs(30), updates.changed())
            .await
            .expect("renewed within 30 s")
            .unwrap();
        let renewed = renewal.current();
        assert_ne!(renewed.info().serial, first_serial);
        assert!(
            vcsdk::util::unix_now() >= due,
            "renewed no earlier than two thirds of the lifetime"
        );
    });
    assert_ne!(store.load().unwrap().info().serial, first_serial);
    let list = ca.cli(&["list"]);
    assert!(list.contains("revoked (superseded)"), "{list}");
}

#[test]
fn no_secret_appears_in_any_log_line() {
    let ca = TestCa::start(&[]);
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    let store = IdentityStore::new(home.path().join("carol"));
    let token = ca.client_token("carol");
    rt.block_on(store.enroll(&ca.url(), &ca.root_pem(), &token, client_subject("carol")))
        .unwrap();
    // A refused reuse is logged too, without the token.
    let again = IdentityStore::new(home.path().join("carol2"));
    assert!(rt
        .block_on(again.enroll(&ca.url(), &ca.root_pem(), &token, client_subject("carol")))
        .is_err());
    rt.block_on(store.renew()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let log = ca.process.log();
    assert!(
        log.contains("certificate issued") && log.contains("enrollment refused"),
        "{log}"
    );
    assert!(!log.contains(&token), "the token leaked into the log");
    assert!(
        !log.contains(&token["vct1.".len()..]),
        "the token leaked into the log"
    );
    assert!(!log.contains("PRIVATE KEY"));
    for secret_file in [
        ca.data_dir().join("ca-key.pem"),
        store.dir().join("key.pem"),
    ] {
        let pem = std::fs::read_to_string(&secret_file).unwrap();
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(
                !log.contains(line),
                "key material of {} leaked",
                secret_file.display()
            );
        }
    }
}
