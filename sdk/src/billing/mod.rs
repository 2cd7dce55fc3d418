//! Billing by call length, shared by the server (which charges) and clients (which check): the
//! tariff and its exact integer arithmetic, call detail records, and signed call receipts.
//! Money is always an integer number of minor currency units.

mod receipt;
mod record;
mod tariff;

pub use receipt::{receipt_statement, verify_receipt, ReceiptKind};
pub use record::{verify_records, CallRecord, Receipt, RecordCheck};
pub use tariff::{Rounding, Tariff, MAX_AMOUNT};
