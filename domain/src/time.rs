//! Time as the domain sees it: a point in Unix seconds that a command carries in.
//!
//! The domain has no clock. A decision that depends on time (a lock that expires, when a password changed)
//! receives `at: Timestamp` inside its command, so a replay decides exactly as the original did.

use serde::{Deserialize, Serialize};

/// A point in time, in whole seconds since 1970-01-01T00:00:00Z; stored as a plain JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    pub const fn unix(self) -> i64 {
        self.0
    }

    /// Moves by `seconds` (negative goes back), saturating at the ends of `i64` instead of wrapping.
    pub const fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds))
    }

    /// The date in Japan (UTC+9) as `YYYY-MM-DD`, for a clerk's message (e.g. when a retention period ends).
    pub fn date_text(self) -> String {
        // Days since 1970-01-01 in JST, then the proleptic Gregorian date (H. Hinnant's civil_from_days).
        let days = self.0.saturating_add(9 * 3600).div_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!("{year:04}-{month:02}-{day:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn is_a_plain_json_number() {
        let t = Timestamp::from_unix(1_700_000_000);
        assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(1_700_000_000));
        assert_eq!(serde_json::from_str::<Timestamp>("1700000000").unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"1700000000\"").is_err());
    }

    #[test]
    fn plus_seconds_saturates() {
        assert_eq!(Timestamp::from_unix(i64::MAX - 1).plus_seconds(900), Timestamp::from_unix(i64::MAX));
        assert_eq!(Timestamp::from_unix(i64::MIN + 1).plus_seconds(-900), Timestamp::from_unix(i64::MIN));
    }

    #[test]
    fn the_date_is_the_one_in_japan() {
        assert_eq!(Timestamp::from_unix(0).date_text(), "1970-01-01");
        // 2026-12-05T15:00:00Z is already the 6th in Japan.
        assert_eq!(Timestamp::from_unix(1_796_482_800).date_text(), "2026-12-06");
        assert_eq!(Timestamp::from_unix(1_796_482_799).date_text(), "2026-12-05");
        assert_eq!(Timestamp::from_unix(951_782_400).date_text(), "2000-02-29");
    }

    proptest! {
        #[test]
        fn plus_seconds_adds_and_orders(t in -1_000_000_000_000i64..1_000_000_000_000, d in 0i64..1_000_000_000) {
            let a = Timestamp::from_unix(t);
            let b = a.plus_seconds(d);
            prop_assert_eq!(b.unix(), t + d);
            prop_assert!(a <= b);
            prop_assert_eq!(b.plus_seconds(-d), a);
        }
    }
}
