//! A tariff: connect fee, rate per minute, first and following increments, rounding.

use serde::{Deserialize, Serialize};

/// How a fractional minor unit is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Toward more (the default): any fraction of a minor unit is charged.
    Up,
    /// Half up.
    Nearest,
    /// Toward less.
    Down,
}

/// What a call costs by its length. Charging: an answered call pays `connect_fee` plus
/// `rate_per_minute` × charged seconds / 60 (rounded as `rounding` says), where the billable
/// seconds (any started second counts) are charged as `first_increment_secs` at least, then in
/// steps of `next_increment_secs`. A call that was never answered costs nothing; an answered call of
/// zero seconds pays the connect fee only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    /// ISO 4217 currency code of all amounts.
    pub currency: String,
    /// Charged once when a call is answered, minor units.
    pub connect_fee: i64,
    /// Minor units per 60 charged seconds.
    pub rate_per_minute: i64,
    /// The first increment, seconds (e.g. 60).
    pub first_increment_secs: u32,
    /// Each following increment, seconds (e.g. 1).
    pub next_increment_secs: u32,
    /// Rounding of the rate part.
    pub rounding: Rounding,
}

impl Default for Tariff {
    fn default() -> Self {
        Tariff {
            currency: "EUR".into(),
            connect_fee: 0,
            rate_per_minute: 10,
            first_increment_secs: 60,
            next_increment_secs: 1,
            rounding: Rounding::Up,
        }
    }
}

/// Largest amount accepted anywhere (credits, fees, rates): 10^12 minor units.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

impl Tariff {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "currency {:?} must be a 3-letter ISO 4217 code",
                self.currency
            ));
        }
        for (name, v) in [
            ("connect_fee", self.connect_fee),
            ("rate_per_minute", self.rate_per_minute),
        ] {
            if !(0..=MAX_AMOUNT).contains(&v) {
                return Err(format!(
                    "{name} must be between 0 and {MAX_AMOUNT}, not {v}"
                ));
            }
        }
        if self.first_increment_secs == 0 || self.next_increment_secs == 0 {
            return Err("increments must be at least 1 second".into());
        }
        Ok(())
    }

    /// Billable seconds of a call answered for `billable_ms` milliseconds: any started second
    /// counts.
    pub fn billable_seconds(billable_ms: i64) -> i64 {
        if billable_ms <= 0 {
            0
        } else {
            (billable_ms + 999) / 1000
        }
    }

    /// Seconds charged for `billable_secs`: 0 for 0, else the first increment at least, then
    /// whole following increments.
    pub fn charged_seconds(&self, billable_secs: i64) -> i64 {
        let first = i64::from(self.first_increment_secs);
        let next = i64::from(self.next_increment_secs);
        if billable_secs <= 0 {
            0
        } else if billable_secs <= first {
            first
        } else {
            first + (billable_secs - first + next - 1) / next * next
        }
    }

    /// The cost of an answered call of `billable_secs` seconds (connect fee included).
    pub fn cost(&self, billable_secs: i64) -> i64 {
        let charged = i128::from(self.charged_seconds(billable_secs));
        let numerator = i128::from(self.rate_per_minute) * charged;
        let rate_part = match self.rounding {
            Rounding::Up => (numerator + 59) / 60,
            Rounding::Nearest => (numerator + 30) / 60,
            Rounding::Down => numerator / 60,
        };
        let total = i128::from(self.connect_fee) + rate_part;
        i64::try_from(total).unwrap_or(i64::MAX)
    }

    /// The cost of a call: 0 if it was not answered, else [`Tariff::cost`] of its billable seconds.
    pub fn call_cost(&self, answered_at_ms: Option<i64>, ended_at_ms: i64) -> i64 {
        match answered_at_ms {
            Some(answered) => self.cost(Self::billable_seconds(ended_at_ms - answered)),
            None => 0,
        }
    }

    /// The tariff as a person reads it: `0.10 EUR per minute, no connect fee; charged for the
    /// first 60 s, then every 1 s; a part of a minor unit is rounded up`.
    pub fn describe(&self) -> String {
        let money = |minor| super::Money::new(minor, &self.currency);
        let fee = if self.connect_fee == 0 {
            "no connect fee".to_owned()
        } else {
            format!("connect fee {}", money(self.connect_fee))
        };
        let rounding = match self.rounding {
            Rounding::Up => "up",
            Rounding::Nearest => "to the nearest",
            Rounding::Down => "down",
        };
        format!(
            "{} per minute, {fee}; charged for the first {} s, then every {} s; a part of a minor unit is rounded {rounding}",
            money(self.rate_per_minute),
            self.first_increment_secs,
            self.next_increment_secs,
        )
    }

    /// Seconds of talk that `amount` pays for at this rate (beyond what is already charged);
    /// `None` when the rate is zero (unlimited).
    pub fn seconds_for(&self, amount: i64) -> Option<i64> {
        (self.rate_per_minute > 0).then(|| amount.max(0).saturating_mul(60) / self.rate_per_minute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tariff(connect_fee: i64, rate: i64, first: u32, next: u32, rounding: Rounding) -> Tariff {
        Tariff {
            currency: "EUR".into(),
            connect_fee,
            rate_per_minute: rate,
            first_increment_secs: first,
            next_increment_secs: next,
            rounding,
        }
    }

    #[test]
    fn a_tariff_reads_in_major_units() {
        let t = tariff(25, 10, 60, 1, Rounding::Up);
        assert_eq!(
            t.describe(),
            "0.10 EUR per minute, connect fee 0.25 EUR; charged for the first 60 s, then every 1 s; a part of a minor unit is rounded up"
        );
        assert!(tariff(0, 10, 60, 1, Rounding::Down)
            .describe()
            .contains("no connect fee"));
    }

    #[test]
    fn costs_computed_by_hand() {
        // 60/1 billing, 10 minor units per minute, connect fee 5.
        let t = tariff(5, 10, 60, 1, Rounding::Up);
        let cases = [
            (0, 5),  // answered, zero length: connect fee only
            (1, 15), // 60 s charged: 5 + 10
            (59, 15),
            (60, 15),
            (61, 16), // 61 s charged: 10 * 61 / 60 = 10.17, rounded up to 11
        ];
        for (secs, want) in cases {
            assert_eq!(t.cost(secs), want, "{secs} s");
        }
        assert_eq!(t.cost(90), 5 + 15); // 10 * 90 / 60 = 15 exactly
        assert_eq!(t.cost(3600), 5 + 600);

        // 30/6 billing, 120 per minute (2 per second), no fee.
        let t = tariff(0, 120, 30, 6, Rounding::Up);
        assert_eq!(t.charged_seconds(1), 30);
        assert_eq!(t.charged_seconds(30), 30);
        assert_eq!(t.charged_seconds(31), 36);
        assert_eq!(t.charged_seconds(36), 36);
        assert_eq!(t.charged_seconds(37), 42);
        assert_eq!(t.cost(31), 72);
        assert_eq!(t.cost(37), 84);

        // Rounding modes on 7 per minute for 61 s (7 * 61 / 60 = 7.1167).
        assert_eq!(tariff(0, 7, 1, 1, Rounding::Up).cost(61), 8);
        assert_eq!(tariff(0, 7, 1, 1, Rounding::Nearest).cost(61), 7);
        assert_eq!(tariff(0, 7, 1, 1, Rounding::Down).cost(61), 7);
        // 7 * 90 / 60 = 10.5: nearest rounds half up.
        assert_eq!(tariff(0, 7, 1, 1, Rounding::Nearest).cost(90), 11);
        assert_eq!(tariff(0, 7, 1, 1, Rounding::Down).cost(90), 10);
    }

    #[test]
    fn billable_seconds_count_started_seconds() {
        assert_eq!(Tariff::billable_seconds(0), 0);
        assert_eq!(Tariff::billable_seconds(-5), 0);
        assert_eq!(Tariff::billable_seconds(1), 1);
        assert_eq!(Tariff::billable_seconds(1000), 1);
        assert_eq!(Tariff::billable_seconds(1001), 2);
        let t = Tariff::default();
        assert_eq!(t.call_cost(None, 10_000), 0, "never answered");
        assert_eq!(t.call_cost(Some(0), 0), t.connect_fee);
    }

    #[test]
    fn no_overflow_and_validation() {
        let t = tariff(MAX_AMOUNT, MAX_AMOUNT, 1, 1, Rounding::Up);
        assert!(t.validate().is_ok());
        assert_eq!(
            t.cost(i64::MAX / 2),
            i64::MAX,
            "saturates instead of wrapping"
        );
        assert!(tariff(-1, 1, 1, 1, Rounding::Up).validate().is_err());
        assert!(tariff(0, 1, 0, 1, Rounding::Up).validate().is_err());
        let bad = Tariff {
            currency: "euro".into(),
            ..Tariff::default()
        };
        assert!(bad.validate().unwrap_err().contains("currency"));
        assert_eq!(Tariff::default().seconds_for(10), Some(60));
        assert_eq!(tariff(0, 0, 1, 1, Rounding::Up).seconds_for(10), None);
    }
}
