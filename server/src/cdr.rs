//! Export of call detail records as CSV (one line per call, RFC 4180 quoting) or JSON lines.

use std::io::Write;

use vcsdk::billing::{CallRecord, Money};

use crate::store::Store;

/// The CSV header. `cost` is in minor units (an integer, for machines); `cost_major` is the same
/// amount in major units with the currency's decimals (`0.10`), for people.
pub const CSV_HEADER: &str = "call_id,caller,callee,payer,start,answer,end,duration_ms,billable_secs,disposition,end_reason,cost,currency,end_receipt_missing,cost_major";

/// Writes every record (of `user`, or all) to `out`, oldest first, streaming from the database.
pub fn export(
    store: &Store,
    user: Option<&str>,
    json: bool,
    out: impl Write,
) -> Result<(), String> {
    let mut out = std::io::BufWriter::new(out);
    let mut failed = None;
    if !json {
        writeln!(out, "{CSV_HEADER}").map_err(|e| e.to_string())?;
    }
    store.for_each_record(user, |record| {
        if failed.is_some() {
            return;
        }
        let written = if json {
            serde_json::to_writer(&mut out, record)
                .map_err(std::io::Error::other)
                .and_then(|_| out.write_all(b"\n"))
        } else {
            out.write_all(csv_line(record).as_bytes())
        };
        if let Err(e) = written {
            failed = Some(e.to_string());
        }
    })?;
    if let Some(e) = failed {
        return Err(format!("writing the export: {e}"));
    }
    out.flush().map_err(|e| e.to_string())
}

/// One CSV line (with its newline).
pub fn csv_line(r: &CallRecord) -> String {
    let opt = |v: Option<i64>| v.map(iso_ms).unwrap_or_default();
    let fields = [
        r.call_id.clone(),
        r.caller.clone(),
        r.callee.clone(),
        r.payer.clone(),
        iso_ms(r.requested_at_ms),
        opt(r.answered_at_ms),
        opt(r.ended_at_ms),
        r.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
        r.billable_secs.to_string(),
        r.disposition.clone().unwrap_or_default(),
        r.end_reason.clone().unwrap_or_default(),
        r.cost.to_string(),
        r.currency.clone(),
        r.end_receipt_missing.to_string(),
        Money::new(r.cost, &r.currency).major(),
    ];
    let mut line = fields
        .iter()
        .map(|f| quote(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
fn iso_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_times() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(iso_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
