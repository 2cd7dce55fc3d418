//! Call detail records as the server exports them, with their receipts, and the offline check that
//! every charge matches a call its payer signed.

use rustls::pki_types::UnixTime;
use serde::{Deserialize, Serialize};

use super::{receipt_statement, verify_receipt, Money, ReceiptKind, Tariff};
use crate::pki::{self, CertificateCheck, Usage};

/// One party's signature over a receipt statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Answer or end.
    pub kind: ReceiptKind,
    /// Who signed.
    pub party: String,
    /// The signed text ([`receipt_statement`]).
    pub statement: String,
    /// DER ECDSA signature, hex.
    pub signature_hex: String,
    /// The signer's certificate, PEM.
    pub certificate_pem: String,
}

/// A call detail record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRecord {
    /// The call.
    pub call_id: String,
    /// Who called.
    pub caller: String,
    /// Who was called.
    pub callee: String,
    /// Who pays (the caller, for a two-party call).
    pub payer: String,
    /// When it was requested (start), Unix ms.
    pub requested_at_ms: i64,
    /// When it was answered.
    pub answered_at_ms: Option<i64>,
    /// When it ended (absent while open).
    pub ended_at_ms: Option<i64>,
    /// End − start, ms.
    pub duration_ms: Option<i64>,
    /// End − answer, in started seconds.
    pub billable_secs: i64,
    /// answered, cancelled, declined, busy, no_answer, failed (absent while open).
    pub disposition: Option<String>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// What was charged, minor units.
    pub cost: i64,
    /// The currency of `cost`.
    pub currency: String,
    /// The tariff the call was charged by (answered calls).
    pub tariff: Option<Tariff>,
    /// When the last durable debit was made, Unix ms.
    pub last_debit_at_ms: Option<i64>,
    /// The signatures collected.
    pub receipts: Vec<Receipt>,
    /// The call was billed without an end receipt (a party vanished or the server stopped).
    pub end_receipt_missing: bool,
}

/// The outcome of checking one record offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordCheck {
    /// The charge equals the tariff applied to the answer and end times the payer signed.
    Verified {
        /// The call.
        call_id: String,
        /// The charge.
        cost: i64,
    },
    /// Nothing was charged to this user.
    NoCharge {
        /// The call.
        call_id: String,
    },
    /// The charge cannot be proven (an end receipt is missing); what was checked is said.
    Unverifiable {
        /// The call.
        call_id: String,
        /// Why, and what did check out.
        reason: String,
    },
    /// The record contradicts the signatures or the tariff.
    Failed {
        /// The call.
        call_id: String,
        /// What is wrong.
        reason: String,
    },
}

/// Checks every record charged to `user`: the answer and end receipts signed by `user` (with a
/// certificate that chains to the pinned root and names `user`) state exactly the record's call,
/// parties and times, and the charge equals the record's tariff applied to those times.
pub fn verify_records(
    records: &[CallRecord],
    user: &str,
    check: &CertificateCheck,
) -> Vec<RecordCheck> {
    records.iter().map(|r| verify_one(r, user, check)).collect()
}

fn verify_one(r: &CallRecord, user: &str, check: &CertificateCheck) -> RecordCheck {
    let call_id = r.call_id.clone();
    let failed = |reason: String| RecordCheck::Failed {
        call_id: call_id.clone(),
        reason,
    };
    if r.payer != user || r.cost == 0 {
        return RecordCheck::NoCharge { call_id };
    }
    let Some(tariff) = &r.tariff else {
        return failed("charged without a tariff".into());
    };
    let Some(answered) = r.answered_at_ms else {
        return failed("charged but never answered".into());
    };
    if let Err(e) = signed_by(r, ReceiptKind::Answer, answered, user, check) {
        return failed(format!("answer receipt: {e}"));
    }
    let Some(ended) = r.ended_at_ms else {
        return failed("the call is still open".into());
    };
    match signed_by(r, ReceiptKind::End, ended, user, check) {
        Ok(()) => {
            let expected = tariff.call_cost(Some(answered), ended);
            if expected == r.cost {
                RecordCheck::Verified {
                    call_id,
                    cost: r.cost,
                }
            } else {
                failed(format!(
                    "charged {} but the signed times give {}",
                    Money::new(r.cost, &r.currency),
                    Money::new(expected, &r.currency)
                ))
            }
        }
        Err(e) if r.end_receipt_missing => {
            let upto = r.last_debit_at_ms.unwrap_or(answered);
            let bound = tariff.call_cost(Some(answered), upto);
            if r.cost <= bound {
                RecordCheck::Unverifiable {
                    call_id,
                    reason: format!(
                        "end receipt missing ({e}); answer receipt verified; charged {} ≤ {}, the tariff up to the last debit",
                        Money::new(r.cost, &r.currency),
                        Money::new(bound, &r.currency)
                    ),
                }
            } else {
                failed(format!(
                    "end receipt missing and charged {} > {}, the tariff up to the last debit",
                    Money::new(r.cost, &r.currency),
                    Money::new(bound, &r.currency)
                ))
            }
        }
        Err(e) => failed(format!("end receipt: {e}")),
    }
}

fn signed_by(
    r: &CallRecord,
    kind: ReceiptKind,
    at_ms: i64,
    user: &str,
    check: &CertificateCheck,
) -> Result<(), String> {
    let expected = receipt_statement(kind, &r.call_id, &r.caller, &r.callee, at_ms);
    let receipt = r
        .receipts
        .iter()
        .find(|x| x.kind == kind && x.party == user)
        .ok_or_else(|| format!("no {} receipt signed by {user}", kind.as_str()))?;
    if receipt.statement != expected {
        return Err("the signed statement does not match the record".into());
    }
    let cert = pki::pem::certificate(receipt.certificate_pem.as_bytes(), "receipt certificate")
        .map_err(|e| e.to_string())?;
    let when = UnixTime::since_unix_epoch(std::time::Duration::from_millis(at_ms.max(0) as u64));
    let verified = check
        .verify(&[cert], Usage::Client, Some(user), when)
        .map_err(|e| format!("signer certificate: {e}"))?;
    let signature = crate::util::unhex(&receipt.signature_hex).ok_or("signature is not hex")?;
    if !verify_receipt(&verified.info.public_key, &receipt.statement, &signature) {
        return Err("signature does not verify".into());
    }
    Ok(())
}
