//! Tests that the header names every refusal code the server and the CA can send a C program:
//! the codes are read from their sources, so a new code cannot be left out of the header.

use std::collections::BTreeSet;
use std::path::Path;

/// Codes the header need not name: this library never provokes them (its frames, CSRs, receipts
/// and conference bundles are well-formed, and it speaks the CA's HTTP API correctly), or they
/// never reach a vc_* result.
const NEVER_SEEN_BY_C: &[&str] = &[
    "hello_required",
    "unexpected_hello",
    "malformed_frame",
    "frame_too_large",
    "malformed_message",
    "forbidden_src",
    "payload_too_large",
    // Receipts are signed by the library itself; a refusal is not reported to the application.
    "bad_receipt",
    // Asked only by the library's own conference engine (bundles, log catch-up, media
    // signalling), whose refusals are not returned to the application.
    "conf_wraps_missing",
    "conf_not_member",
    // Asked only by the library's own renewal, when it fetches again a certificate an earlier
    // attempt left unstored; it then renews normally.
    "renewal_unknown",
    // Operator commands only (credit, account type).
    "bad_account_type",
    // The CA's HTTP layer.
    "not_found",
    "method_not_allowed",
    "unsupported_media_type",
];

/// The string literal right after each occurrence of `marker` in `text` (whitespace skipped).
fn literals_after(text: &str, marker: &str, into: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        rest = &rest[at + marker.len()..];
        let trimmed = rest.trim_start();
        if let Some(body) = trimmed.strip_prefix('"') {
            if let Some(end) = body.find('"') {
                let code = &body[..end];
                if !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    into.insert(code.to_owned());
                }
            }
        }
    }
}

fn codes_in(dir: &Path, markers: &[&str]) -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source file");
            for marker in markers {
                literals_after(&text, marker, &mut codes);
            }
        }
    }
    codes
}

#[test]
fn the_header_names_every_refusal_code_of_the_server_and_the_ca() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut codes = codes_in(
        &root.join("server/src"),
        &[
            "Refusal::new(",
            "refusal(",
            "error(None,",
            "error(Some(id),",
        ],
    );
    // The conference rules' codes as the server renames them (conf_refusal's match arms).
    let mut arms = codes_in(&root.join("server/src"), &["=>"]);
    arms.retain(|c| c.starts_with("conf_"));
    codes.extend(arms);
    codes.extend(codes_in(&root.join("ca/src"), &["Self::new("]));
    for expected in [
        "terms_mismatch",
        "unknown_user",
        "conf_stale",
        "conf_invalid",
        "token_used",
        "certificate_revoked",
    ] {
        assert!(
            codes.contains(expected),
            "the scan missed {expected}: {codes:?}"
        );
    }
    let header = std::fs::read_to_string(root.join("include/vcsdk.h")).expect("the header");
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| !NEVER_SEEN_BY_C.contains(&c.as_str()))
        .filter(|c| !header.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "refusal codes the header does not name: {missing:?}"
    );
    assert!(
        !header.contains("terms_outdated"),
        "the server's code is terms_mismatch"
    );
}
