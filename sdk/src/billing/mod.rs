//! Billing by call length, shared by the server (which charges) and clients (which check): the
//! tariff and its exact integer arithmetic, call detail records, signed call receipts, and the
//! guard that decides which receipts a client signs.
//! Money is always an integer number of minor currency units; [`Money`] shows it to people in
//! major units.

mod guard;
mod money;
mod receipt;
mod record;
mod tariff;

pub use guard::{
    parse_statement, ReceiptGuard, Statement, Verdict, DEFAULT_RECEIPT_TOLERANCE,
    MAX_STATEMENT_BYTES,
};
pub use money::{currency_decimals, parse_major, Money};
pub use receipt::{receipt_statement, verify_receipt, ReceiptKind};
pub use record::{verify_records, CallRecord, Receipt, RecordCheck};
pub use tariff::{Rounding, Tariff, MAX_AMOUNT};
