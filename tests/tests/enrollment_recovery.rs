//! Enrollment and renewal cannot lose a certificate, and a revoked identity is no dead end: the
//! real `vc` and `vc-ca`, with the failures a client meets (a write that fails, an answer lost
//! after the CA committed).

use vcsdk::ca_client::CaClient;
use vcsdk::pki::{CertificateCheck, CsrSubject};
use vcsdk::ClientId;
use vcsdk_tests::{run, TestCa};

/// The pending key file a request in progress keeps in the identity directory.
const PENDING_KEY: &str = "key.pem.next";

fn vc(args: &[&str]) -> (Option<i32>, String) {
    let out = run("vc", args);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn enroll_cli(ca: &TestCa, dir: &std::path::Path, id: &str, token: &str) -> (Option<i32>, String) {
    let root = ca.root_path();
    vc(&[
        "enroll",
        "--ca-url",
        &ca.url(),
        "--ca-root",
        root.to_str().unwrap(),
        "--token",
        token,
        "--id",
        id,
        "--identity-dir",
        dir.to_str().unwrap(),
    ])
}

fn whoami_check(dir: &std::path::Path) -> (Option<i32>, String) {
    vc(&["whoami", "--check", "--identity-dir", dir.to_str().unwrap()])
}

fn serial_of(dir: &std::path::Path) -> String {
    let pem = std::fs::read(dir.join("cert.pem")).unwrap();
    let der = vcsdk::pki::pem::certificate(&pem, "cert.pem").unwrap();
    vcsdk::pki::CertificateInfo::parse(&der).unwrap().serial
}

/// A key stored as a request in progress leaves it, and the CSR for it.
fn pending_request(dir: &std::path::Path, id: &str) -> String {
    let key = vcsdk::pki::new_key_pair().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(PENDING_KEY), key.serialize_pem()).unwrap();
    CsrSubject::Client(ClientId::new(id).unwrap())
        .csr_pem(&key)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_whose_key_cannot_be_stored_changes_nothing_at_the_ca() {
    let ca = TestCa::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("alice");
    let (code, out) = enroll_cli(&ca, &dir, "alice", &ca.client_token("alice"));
    assert_eq!(code, Some(0), "{out}");
    let before = serial_of(&dir);
    // The new key's file cannot be written (a non-empty directory stands in its way: refused even
    // to root, like a read-only or full disk).
    std::fs::create_dir_all(dir.join(PENDING_KEY).join("in-the-way")).unwrap();
    let (code, out) = vc(&["renew", "--identity-dir", dir.to_str().unwrap()]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains(PENDING_KEY), "{out}");
    // The CA was never asked: the old certificate is still the valid one.
    assert_eq!(serial_of(&dir), before);
    let (code, out) = whoami_check(&dir);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("status:      valid"), "{out}");
    assert!(!ca.cli(&["audit"]).contains("renewed"));
    std::fs::remove_dir_all(dir.join(PENDING_KEY)).unwrap();
    let (code, out) = vc(&["renew", "--identity-dir", dir.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert_ne!(serial_of(&dir), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_committed_at_the_ca_but_lost_on_the_way_is_fetched_again() {
    let ca = TestCa::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("alice");
    let (code, out) = enroll_cli(&ca, &dir, "alice", &ca.client_token("alice"));
    assert_eq!(code, Some(0), "{out}");
    let store = vcsdk::identity::IdentityStore::new(&dir);
    let current = store.load().unwrap();
    let old_serial = current.info().serial.clone();
    // The client stored its new key and sent the renewal; the CA committed it (the old
    // certificate is now revoked as superseded) and the answer never arrived.
    let csr = pending_request(&dir, "alice");
    let lost = store
        .ca_client()
        .unwrap()
        .renew(current.certified_key(), &csr)
        .await
        .unwrap();
    assert_ne!(lost.serial, old_serial);
    // Renewing again gets the very certificate the CA issued, for the key stored before.
    let (code, out) = vc(&["renew", "--identity-dir", dir.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(serial_of(&dir), lost.serial, "{out}");
    assert!(!dir.join(PENDING_KEY).exists());
    let (code, out) = whoami_check(&dir);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(ca.cli(&["audit"]).matches("renewed").count(), 1);

    // Nobody else gets a certificate that way: a CSR for another key is refused.
    let other = vcsdk::pki::new_key_pair().unwrap();
    let other_csr = CsrSubject::Client(ClientId::new("alice").unwrap())
        .csr_pem(&other)
        .unwrap();
    let previous = vcsdk::pki::pem::encode("CERTIFICATE", current.certificate());
    let refused = store
        .ca_client()
        .unwrap()
        .renewal_of(&previous, &other_csr)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, vcsdk::Error::CaRefused { code, .. } if code == "renewal_unknown"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_whose_answer_was_lost_is_retried_with_the_same_token() {
    let ca = TestCa::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("bob");
    let token = ca.client_token("bob");
    let csr = pending_request(&dir, "bob");
    let check = CertificateCheck::from_root_pem(&ca.root_pem()).unwrap();
    let lost = CaClient::new(&ca.url(), check.clone())
        .unwrap()
        .enroll(&token, &csr)
        .await
        .unwrap();
    // The same token again, with the key kept from the first attempt: the same certificate.
    let (code, out) = enroll_cli(&ca, &dir, "bob", &token);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(serial_of(&dir), lost.serial);
    let (code, out) = whoami_check(&dir);
    assert_eq!(code, Some(0), "{out}");
    // The spent token is worth nothing to anyone else (another key).
    let elsewhere = home.path().join("mallory");
    let (code, out) = enroll_cli(&ca, &elsewhere, "bob", &token);
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("token_used"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_identity_is_enrolled_again_and_checks_fail_loudly() {
    let ca = TestCa::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("carol");
    let (code, out) = enroll_cli(&ca, &dir, "carol", &ca.client_token("carol"));
    assert_eq!(code, Some(0), "{out}");
    // Enrolling over a valid identity is refused, and says why.
    let (code, out) = enroll_cli(&ca, &dir, "carol", &ca.client_token("carol"));
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("already holds a valid certificate"), "{out}");

    // The operator revokes it: the check says so and fails.
    let serial = serial_of(&dir);
    ca.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"]);
    let (code, out) = whoami_check(&dir);
    assert_eq!(code, Some(9), "{out}");
    assert!(out.contains("refused") && out.contains("revoked"), "{out}");

    // A new token just works; the old files are kept aside.
    let (code, out) = enroll_cli(&ca, &dir, "carol", &ca.client_token("carol"));
    assert_eq!(code, Some(0), "{out}");
    assert_ne!(serial_of(&dir), serial);
    assert!(dir.join("replaced").join(&serial).join("cert.pem").exists());
    assert!(dir.join("replaced").join(&serial).join("key.pem").exists());
    let (code, out) = whoami_check(&dir);
    assert_eq!(code, Some(0), "{out}");
}
