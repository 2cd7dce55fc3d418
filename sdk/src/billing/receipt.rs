//! Signed call receipts: when a call is answered and when it ends, each party signs a statement
//! naming the call, both parties and the moment, with its certificate key (ECDSA P-256, SHA-256).

use serde::{Deserialize, Serialize};

/// Which moment a receipt attests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// The call was answered at the stated time.
    Answer,
    /// The call ended at the stated time.
    End,
}

impl ReceiptKind {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptKind::Answer => "answer",
            ReceiptKind::End => "end",
        }
    }
}

/// The exact text a party signs (UTF-8, `\n`-separated, no trailing spaces):
/// `vcsdk-call-receipt/1`, kind, call id, caller, callee, time in Unix milliseconds.
pub fn receipt_statement(
    kind: ReceiptKind,
    call_id: &str,
    caller: &str,
    callee: &str,
    at_ms: i64,
) -> String {
    format!(
        "vcsdk-call-receipt/1\n{}\n{call_id}\n{caller}\n{callee}\n{at_ms}\n",
        kind.as_str()
    )
}

/// Checks `signature` (DER ECDSA) over `statement` with the P-256 public key `public_key`
/// (uncompressed point, as in the signer's certificate).
pub fn verify_receipt(public_key: &[u8], statement: &str, signature: &[u8]) -> bool {
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        public_key,
    )
    .verify(statement.as_bytes(), signature)
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_is_exact() {
        assert_eq!(
            receipt_statement(ReceiptKind::End, "c1", "alice", "bob", 1700000000123),
            "vcsdk-call-receipt/1\nend\nc1\nalice\nbob\n1700000000123\n"
        );
    }

    #[test]
    fn signatures_verify_only_for_their_key_and_text() {
        use rcgen::SigningKey;
        let key = crate::pki::new_key_pair().unwrap();
        let other = crate::pki::new_key_pair().unwrap();
        let text = receipt_statement(ReceiptKind::Answer, "c1", "alice", "bob", 5);
        let sig = key.sign(text.as_bytes()).unwrap();
        assert!(verify_receipt(key.public_key_raw(), &text, &sig));
        assert!(!verify_receipt(other.public_key_raw(), &text, &sig));
        let changed = receipt_statement(ReceiptKind::Answer, "c2", "alice", "bob", 5);
        assert!(!verify_receipt(key.public_key_raw(), &changed, &sig));
    }
}
