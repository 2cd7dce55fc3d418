//! The CA's operations called directly (no network): every refusal the issue names is tried and
//! seen refused with its code, and nothing is recorded as issued.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
    PKCS_ECDSA_P384_SHA384,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use vcca::config::CaConfig;
use vcca::grant::Grant;
use vcca::service::Actor;
use vcca::CertificationAuthority;
use vcsdk::pki::{self, CertificateCheck, CertificateError, CsrSubject, Usage};
use vcsdk::proto::ca::RevocationReason;
use vcsdk::ClientId;

fn new_ca(dir: &std::path::Path, cert_validity: &str) -> CertificationAuthority {
    let config = CaConfig {
        cert_validity: cert_validity.into(),
        ..CaConfig::default()
    };
    CertificationAuthority::init(dir, &config, Duration::from_secs(365 * 86_400)).unwrap();
    CertificationAuthority::open(dir).unwrap()
}

fn client(id: &str) -> Grant {
    Grant::Client(ClientId::new(id).unwrap())
}

fn client_csr(id: &str) -> (KeyPair, String) {
    let key = pki::new_key_pair().unwrap();
    let csr = CsrSubject::Client(ClientId::new(id).unwrap())
        .csr_pem(&key)
        .unwrap();
    (key, csr)
}

fn csr_with(key: &KeyPair, edit: impl FnOnce(&mut CertificateParams)) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "alice");
    edit(&mut params);
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn issued_count(ca: &CertificationAuthority) -> usize {
    ca.list()
        .unwrap()
        .iter()
        .filter(|r| r.usage == "client")
        .count()
}

fn check_with_crl(ca: &CertificationAuthority) -> CertificateCheck {
    let mut check = CertificateCheck::new(ca.root().clone()).unwrap();
    check.set_crl_der(&ca.current_crl().unwrap().der).unwrap();
    check
}

#[test]
fn enrollment_issues_a_client_certificate_for_the_token_id() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "7d");
    let token = ca.create_token(&client("alice"), None).unwrap();
    let (key, csr) = client_csr("alice");
    let cert = ca.enroll(&token, &csr).unwrap();
    let verified = check_with_crl(&ca)
        .verify(
            std::slice::from_ref(&cert.der),
            Usage::Client,
            Some("alice"),
            UnixTime::now(),
        )
        .unwrap();
    assert_eq!(verified.info.id, "alice");
    assert_eq!(verified.info.serial, cert.serial);
    assert_eq!(verified.info.public_key, key.public_key_raw());
    assert!(verified.info.client_auth && !verified.info.server_auth && !verified.info.is_ca);
    let lifetime = cert.not_after - cert.not_before;
    assert!(
        (7 * 86_400..=7 * 86_400 + 300).contains(&lifetime),
        "{lifetime}"
    );
    let audit = ca.audit_log().unwrap();
    assert!(audit
        .iter()
        .any(|e| e.event == "issued" && e.serial.as_deref() == Some(&cert.serial)));
    // The token itself is never stored or logged; only its hash is.
    assert!(!audit.iter().any(|e| format!("{e:?}").contains(&token)));
}

#[test]
fn a_token_cannot_be_used_twice_or_late_or_if_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "7d");
    let token = ca.create_token(&client("alice"), None).unwrap();
    ca.enroll(&token, &client_csr("alice").1).unwrap();

    let reused = ca.enroll(&token, &client_csr("alice").1).unwrap_err();
    assert_eq!(reused.code, "token_used");
    let expired_token = ca
        .create_token(&client("bob"), Some(Duration::ZERO))
        .unwrap();
    let expired = ca.enroll(&expired_token, &client_csr("bob").1).unwrap_err();
    assert_eq!(expired.code, "token_expired");
    let unknown = ca.enroll("vct1.00ff", &client_csr("bob").1).unwrap_err();
    assert_eq!(unknown.code, "token_unknown");
    assert_eq!(issued_count(&ca), 1, "refusals record no certificate");
    let refused = ca
        .audit_log()
        .unwrap()
        .iter()
        .filter(|e| e.event == "enroll_refused")
        .count();
    assert_eq!(refused, 3);
}

#[test]
fn a_csr_asking_for_more_than_the_token_grants_is_refused_and_the_token_survives() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "7d");
    let token = ca.create_token(&client("alice"), None).unwrap();
    let key = pki::new_key_pair().unwrap();

    let cases: Vec<(&str, String, &str)> = vec![
        ("another id", client_csr("mallory").1, "wrong_id"),
        (
            "another id in the SAN",
            csr_with(&key, |p| {
                p.subject_alt_names =
                    vec![SanType::URI("urn:vcsdk:client:mallory".try_into().unwrap())]
            }),
            "wrong_id",
        ),
        (
            "a DNS name on a client token",
            csr_with(&key, |p| {
                p.subject_alt_names = vec![SanType::DnsName("evil.example".try_into().unwrap())]
            }),
            "wrong_id",
        ),
        (
            "CA powers",
            csr_with(&key, |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
            }),
            "forbidden_usage",
        ),
        (
            "server usage on a client token",
            csr_with(&key, |p| {
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]
            }),
            "forbidden_usage",
        ),
        (
            "a P-384 key",
            {
                let p384 = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
                csr_with(&p384, |_| {})
            },
            "unsupported_key",
        ),
        (
            "garbage",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into(),
            "csr_invalid",
        ),
        ("no PEM at all", "hello".into(), "csr_invalid"),
        (
            "a forged signature",
            forge_signature(&client_csr("alice").1),
            "csr_invalid",
        ),
    ];
    for (what, csr, code) in cases {
        let err = ca.enroll(&token, &csr).unwrap_err();
        assert_eq!(err.code, code, "{what}: {}", err.message);
        assert!(!err.message.is_empty());
    }
    assert_eq!(issued_count(&ca), 0, "nothing was issued");
    // The refusals did not burn the token: its rightful owner can still use it.
    ca.enroll(&token, &client_csr("alice").1).unwrap();
}

/// Flips a bit in the CSR's signature so it no longer verifies.
fn forge_signature(csr_pem: &str) -> String {
    let mut der = pki::pem::csr(csr_pem.as_bytes()).unwrap().as_ref().to_vec();
    let last = der.len() - 2;
    der[last] ^= 0x01;
    pki::pem::encode("CERTIFICATE REQUEST", &der)
}

#[test]
fn server_tokens_issue_server_certificates_for_their_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "7d");
    let names = vec!["vc.example.com".to_string(), "127.0.0.1".to_string()];
    let token = ca
        .create_token(&Grant::Server(names.clone()), None)
        .unwrap();
    let key = pki::new_key_pair().unwrap();
    let other = CsrSubject::Server(vec!["evil.example.com".into()])
        .csr_pem(&key)
        .unwrap();
    assert_eq!(ca.enroll(&token, &other).unwrap_err().code, "wrong_id");
    let client_usage = csr_with(&key, |p| {
        p.distinguished_name.remove(DnType::CommonName);
        p.distinguished_name
            .push(DnType::CommonName, "vc.example.com");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    assert_eq!(
        ca.enroll(&token, &client_usage).unwrap_err().code,
        "forbidden_usage"
    );
    let csr = CsrSubject::Server(names).csr_pem(&key).unwrap();
    let cert = ca.enroll(&token, &csr).unwrap();
    let check = check_with_crl(&ca);
    let chain = [cert.der.clone()];
    check
        .verify(
            &chain,
            Usage::Server,
            Some("vc.example.com"),
            UnixTime::now(),
        )
        .unwrap();
    check
        .verify(&chain, Usage::Server, Some("127.0.0.1"), UnixTime::now())
        .unwrap();
    assert!(matches!(
        check.verify(
            &chain,
            Usage::Server,
            Some("other.example.com"),
            UnixTime::now()
        ),
        Err(CertificateError::WrongId { .. })
    ));
    assert_eq!(
        check
            .verify(&chain, Usage::Client, None, UnixTime::now())
            .unwrap_err(),
        CertificateError::WrongUsage("client")
    );
}

#[test]
fn renewal_supersedes_and_revoked_or_foreign_certificates_cannot_renew() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "7d");
    let token = ca.create_token(&client("alice"), None).unwrap();
    let first = ca.enroll(&token, &client_csr("alice").1).unwrap();
    let (second, crl) = ca.renew(&first.der, &client_csr("alice").1).unwrap();
    assert_ne!(first.serial, second.serial);
    let records = ca.list().unwrap();
    let old = records.iter().find(|r| r.serial == first.serial).unwrap();
    assert_eq!(old.status, "revoked");
    assert_eq!(old.revocation_reason.as_deref(), Some("superseded"));
    assert_eq!(old.replaced_by.as_deref(), Some(second.serial.as_str()));
    let mut check = CertificateCheck::new(ca.root().clone()).unwrap();
    check.set_crl_der(&crl.der).unwrap();
    assert_eq!(
        check
            .verify(
                std::slice::from_ref(&first.der),
                Usage::Client,
                None,
                UnixTime::now()
            )
            .unwrap_err(),
        CertificateError::Revoked
    );
    check
        .verify(
            std::slice::from_ref(&second.der),
            Usage::Client,
            Some("alice"),
            UnixTime::now(),
        )
        .unwrap();

    // The superseded certificate cannot renew again, nor ask for another id.
    assert_eq!(
        ca.renew(&first.der, &client_csr("alice").1)
            .unwrap_err()
            .code,
        "certificate_revoked"
    );
    assert_eq!(
        ca.renew(&second.der, &client_csr("mallory").1)
            .unwrap_err()
            .code,
        "wrong_id"
    );
    // A certificate from a renewal renews again only after half its lifetime.
    assert_eq!(
        ca.renew(&second.der, &client_csr("alice").1)
            .unwrap_err()
            .code,
        "renew_too_soon"
    );

    // A certificate from another CA is unknown here, even with a colliding serial.
    let other_dir = tempfile::tempdir().unwrap();
    let other = new_ca(other_dir.path(), "7d");
    let other_token = other.create_token(&client("alice"), None).unwrap();
    let foreign = other.enroll(&other_token, &client_csr("alice").1).unwrap();
    assert_eq!(
        ca.renew(&foreign.der, &client_csr("alice").1)
            .unwrap_err()
            .code,
        "certificate_unknown"
    );
    assert_eq!(
        ca.revoke_presented(&foreign.der, RevocationReason::KeyCompromise)
            .unwrap_err()
            .code,
        "certificate_unknown"
    );
    let before = issued_count(&ca);
    let _ = ca.renew(&first.der, &client_csr("alice").1);
    assert_eq!(issued_count(&ca), before);
}

#[test]
fn revocation_is_published_in_the_crl_until_the_certificate_expires() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "3s");
    let token = ca.create_token(&client("alice"), None).unwrap();
    let cert = ca.enroll(&token, &client_csr("alice").1).unwrap();
    let before = ca.current_crl().unwrap();
    let done = ca
        .revoke_serial(
            &cert.serial.to_uppercase(),
            RevocationReason::KeyCompromise,
            Actor::Operator,
        )
        .unwrap();
    assert_eq!(done.serial, cert.serial);
    assert!(
        done.crl.number > before.number,
        "a new CRL is signed on revocation"
    );
    let mut check = CertificateCheck::new(ca.root().clone()).unwrap();
    check.set_crl_der(&done.crl.der).unwrap();
    assert_eq!(
        check
            .verify(
                std::slice::from_ref(&cert.der),
                Usage::Client,
                None,
                UnixTime::now()
            )
            .unwrap_err(),
        CertificateError::Revoked
    );
    assert_eq!(
        ca.revoke_serial(&cert.serial, RevocationReason::Unspecified, Actor::Operator)
            .unwrap_err()
            .code,
        "certificate_revoked"
    );
    assert_eq!(
        ca.revoke_serial("00ab", RevocationReason::Unspecified, Actor::Operator)
            .unwrap_err()
            .code,
        "certificate_unknown"
    );
    assert_eq!(
        ca.revoke_serial("xyz", RevocationReason::Unspecified, Actor::Operator)
            .unwrap_err()
            .code,
        "malformed_request"
    );
    let listed = |der: &[u8]| {
        let crl = webpki::OwnedCertRevocationList::from_der(der).unwrap();
        let serial = vcsdk::util::unhex(&cert.serial).unwrap();
        webpki::CertRevocationList::from(crl)
            .find_serial(&serial)
            .unwrap()
            .is_some()
    };
    assert!(listed(&done.crl.der));
    // Once the certificate has expired it drops off the next CRL.
    std::thread::sleep(Duration::from_secs(4));
    let conn_crl = {
        // Revoking something else forces a new CRL now.
        let t = ca.create_token(&client("bob"), None).unwrap();
        let bob = ca.enroll(&t, &client_csr("bob").1).unwrap();
        ca.revoke_serial(&bob.serial, RevocationReason::Unspecified, Actor::Operator)
            .unwrap()
            .crl
    };
    assert!(!listed(&conn_crl.der));
}

#[test]
fn the_certificate_check_refuses_each_kind_of_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "7d");
    let token = ca.create_token(&client("alice"), None).unwrap();
    let cert = ca.enroll(&token, &client_csr("alice").1).unwrap();
    let chain = [cert.der.clone()];
    let check = check_with_crl(&ca);
    let now = UnixTime::now();
    let at = |delta: i64| {
        UnixTime::since_unix_epoch(Duration::from_secs((now.as_secs() as i64 + delta) as u64))
    };

    check
        .verify(&chain, Usage::Client, Some("alice"), now)
        .unwrap();
    assert!(matches!(
        check.verify(&chain, Usage::Client, Some("bob"), now),
        Err(CertificateError::WrongId { .. })
    ));
    assert_eq!(
        check.verify(&chain, Usage::Server, None, now).unwrap_err(),
        CertificateError::WrongUsage("server")
    );
    assert_eq!(
        check
            .verify(&chain, Usage::Client, None, at(-86_400))
            .unwrap_err(),
        CertificateError::NotYetValid
    );
    // The CRL (valid 24 h) goes stale before the certificate (7 days) expires.
    assert_eq!(
        check
            .verify(&chain, Usage::Client, None, at(2 * 86_400))
            .unwrap_err(),
        CertificateError::CrlExpired
    );
    let no_crl = CertificateCheck::new(ca.root().clone()).unwrap();
    assert_eq!(
        no_crl
            .verify(&chain, Usage::Client, None, at(8 * 86_400))
            .unwrap_err(),
        CertificateError::Expired
    );
    assert!(matches!(
        no_crl.verify(&[], Usage::Client, None, now),
        Err(CertificateError::Malformed(_))
    ));
    assert!(matches!(
        no_crl.verify(
            &[CertificateDer::from(vec![1, 2, 3])],
            Usage::Client,
            None,
            now
        ),
        Err(CertificateError::Malformed(_))
    ));

    // Another CA: its certificates and its CRL are refused.
    let other_dir = tempfile::tempdir().unwrap();
    let other = new_ca(other_dir.path(), "7d");
    let t = other.create_token(&client("alice"), None).unwrap();
    let foreign = other.enroll(&t, &client_csr("alice").1).unwrap();
    assert_eq!(
        check
            .verify(
                std::slice::from_ref(&foreign.der),
                Usage::Client,
                Some("alice"),
                now
            )
            .unwrap_err(),
        CertificateError::UnknownIssuer
    );
    let mut wrong_crl = CertificateCheck::new(ca.root().clone()).unwrap();
    wrong_crl
        .set_crl_der(&other.current_crl().unwrap().der)
        .unwrap();
    assert!(matches!(
        wrong_crl.verify(&chain, Usage::Client, None, now),
        Err(CertificateError::BadCrl(_))
    ));
    // A leaf certificate cannot be pinned as a root.
    assert!(CertificateCheck::new(cert.der.clone()).is_err());
}

#[test]
fn init_refuses_to_overwrite_and_protects_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let _ca = new_ca(dir.path(), "7d");
    let root_before = std::fs::read(dir.path().join("root.pem")).unwrap();
    let err = CertificationAuthority::init(
        dir.path(),
        &CaConfig::default(),
        Duration::from_secs(365 * 86_400),
    )
    .unwrap_err();
    assert!(
        err.message.contains("refusing to overwrite"),
        "{}",
        err.message
    );
    assert_eq!(
        std::fs::read(dir.path().join("root.pem")).unwrap(),
        root_before
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let bad = CaConfig {
        cert_validity: "soon".into(),
        ..CaConfig::default()
    };
    let other = tempfile::tempdir().unwrap();
    let err =
        CertificationAuthority::init(other.path(), &bad, Duration::from_secs(86_400)).unwrap_err();
    assert!(err.message.contains("cert_validity"), "{}", err.message);
}
