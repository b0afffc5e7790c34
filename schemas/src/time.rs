//! Time, defined once: the wall clock in epoch milliseconds, UTC days (`DAY_MS`, day indexes
//! since 1970-01-01) and their `YYYY-MM-DD` text.

use ::time::{Date, OffsetDateTime};

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// Julian day number of 1970-01-01 (day index 0).
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// The wall clock, epoch milliseconds (UTC).
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The day index (whole UTC days since 1970-01-01; negative before) of an epoch-ms instant.
pub fn day_of_ms(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// The day index of a UTC date (days since 1970-01-01).
pub fn day_index(date: Date) -> i64 {
    i64::from(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY)
}

/// The UTC date of a day index.
///
/// # Panics
/// Outside the dates `time` represents (years -9999 to 9999).
pub fn date_of_day(day_index: i64) -> Date {
    i32::try_from(day_index)
        .ok()
        .and_then(|day| day.checked_add(UNIX_EPOCH_JULIAN_DAY))
        .and_then(|julian| Date::from_julian_day(julian).ok())
        .unwrap_or_else(|| panic!("day index {day_index} is outside the representable dates"))
}

/// The first instant (epoch ms) of a UTC date.
pub fn day_start_ms(date: Date) -> i64 {
    day_index(date) * DAY_MS
}

/// A day text that is not a date `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a date YYYY-MM-DD: {reason}")]
pub struct DayError {
    /// The text given.
    pub text: String,
    /// Why it is not one.
    pub reason: String,
}

/// Parses a UTC day `YYYY-MM-DD` (four-digit year, two-digit month and day, a real date).
pub fn parse_day(text: &str) -> Result<Date, DayError> {
    Date::parse(text, ::time::macros::format_description!("[year]-[month]-[day]")).map_err(|e| DayError {
        text: text.to_string(),
        reason: e.to_string(),
    })
}

/// The `YYYY-MM-DD` text of a date (what [`parse_day`] reads).
pub fn day_text(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

#[cfg(test)]
mod tests {
    use ::time::macros::date;

    use super::*;

    #[test]
    fn days_and_instants_agree_at_the_boundaries() {
        for (text, date, index) in [
            ("1970-01-01", date!(1970 - 01 - 01), 0),
            ("1969-12-31", date!(1969 - 12 - 31), -1),
            ("2024-02-29", date!(2024 - 02 - 29), 19_782),
            ("2025-11-23", date!(2025 - 11 - 23), 20_415),
        ] {
            assert_eq!(parse_day(text), Ok(date), "{text}");
            assert_eq!(day_text(date), text);
            assert_eq!(day_index(date), index, "{text}");
            assert_eq!(date_of_day(index), date, "{text}");
            let start = day_start_ms(date);
            assert_eq!(start, index * DAY_MS);
            assert_eq!(
                start,
                date.midnight().assume_utc().unix_timestamp() * 1_000,
                "{text}"
            );
            // The day holds [start, start + DAY_MS).
            assert_eq!(day_of_ms(start), index);
            assert_eq!(day_of_ms(start + DAY_MS - 1), index);
            assert_eq!(day_of_ms(start - 1), index - 1);
        }
        assert_eq!(day_of_ms(-1), -1, "instants before 1970 belong to the day before");
    }

    #[test]
    fn bad_days_are_refused_naming_the_text() {
        for bad in [
            "2026-02-30",
            "2025-02-29",
            "2025-13-01",
            "2025-1-01",
            "yesterday",
            "",
            "2025-10-01T00:00:00Z",
        ] {
            let err = parse_day(bad).unwrap_err();
            assert_eq!(err.text, bad);
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    #[should_panic(expected = "outside the representable dates")]
    fn day_indexes_beyond_the_calendar_panic() {
        date_of_day(i64::from(i32::MAX));
    }

    #[test]
    fn the_clock_is_epoch_milliseconds() {
        let now = now_ms();
        assert!(now > day_start_ms(date!(2025 - 01 - 01)), "{now}");
        let t = OffsetDateTime::now_utc().unix_timestamp() * 1_000;
        assert!((now - t).abs() < 60_000, "{now} vs {t}");
    }
}
