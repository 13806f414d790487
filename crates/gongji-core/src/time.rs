//! Calendar arithmetic in China Standard Time.
//!
//! The engine clock is unix seconds (an `i64` UTC instant) supplied by the caller; this module
//! never reads a clock. Every calendar notion the rules use — the day of a payment, the month
//! of a statistics period, "06:00 tomorrow" — is defined in CST (UTC+8, no daylight saving),
//! so a fixed offset is exact. Date conversion uses Howard Hinnant's integer
//! `days_from_civil` / `civil_from_days`, valid over the whole proleptic Gregorian calendar.

use std::fmt;

/// CST is UTC+8 all year round.
pub const CST_OFFSET_SECONDS: i64 = 8 * 3600;

const SECONDS_PER_DAY: i64 = 86_400;

/// Years the text formats accept: four digits, and nothing before the unix epoch because the
/// engine has no business with earlier instants.
const MIN_YEAR: i64 = 1970;
const MAX_YEAR: i64 = 9999;

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    // Counting years from March puts the leap day at the end of the year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`] (Hinnant's `civil_from_days`): (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both are small and positive by construction: d in 1..=31, m in 1..=12.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The CST day number (unbounded) and second of that day for an instant.
///
/// Splits before adding the offset so that no `i64` input can overflow.
fn cst_split(unix: i64) -> (i64, i64) {
    let mut day = unix.div_euclid(SECONDS_PER_DAY);
    let mut sec = unix.rem_euclid(SECONDS_PER_DAY) + CST_OFFSET_SECONDS;
    if sec >= SECONDS_PER_DAY {
        day += 1;
        sec -= SECONDS_PER_DAY;
    }
    (day, sec)
}

/// Value of a fixed-width run of ASCII digits, or `None` if any byte is not a digit.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// Parses strict `YYYY-MM` with year 1970..=9999 and month 01..=12.
fn parse_ym(b: &[u8]) -> Option<(i64, u32)> {
    if b.len() != 7 || b[4] != b'-' {
        return None;
    }
    let y = i64::from(digits(&b[0..4])?);
    let m = digits(&b[5..7])?;
    ((MIN_YEAR..=MAX_YEAR).contains(&y) && (1..=12).contains(&m)).then_some((y, m))
}

/// Parses strict `YYYY-MM-DD` (a real date) into a day number.
fn parse_ymd(b: &[u8]) -> Option<i64> {
    if b.len() != 10 || b[7] != b'-' {
        return None;
    }
    let (y, m) = parse_ym(&b[..7])?;
    let d = digits(&b[8..10])?;
    (d >= 1 && d <= days_in_month(y, m)).then(|| days_from_civil(y, m, d))
}

/// `"2025-05-20 10:00:00"` read as CST → unix seconds. Strict format, valid calendar date/time
/// (hh 00-23, mm/ss 00-59), year 1970..=9999.
///
/// No leap seconds (unix time has none), no `T` separator, no offset suffix: one spelling per
/// instant keeps request hashing and idempotency exact.
pub fn parse_cst(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19 || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let day = parse_ymd(&b[..10])?;
    let (h, mi, sec) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let sod = i64::from(h * 3600 + mi * 60 + sec);
    Some(day * SECONDS_PER_DAY + sod - CST_OFFSET_SECONDS)
}

/// Formats an instant as CST `"2025-05-20 10:00:00"`.
///
/// Total on `i64`; years outside 0..=9999 simply print with more digits or a sign.
pub fn format_cst(unix: i64) -> String {
    let (day, sec) = cst_split(unix);
    let (y, m, d) = civil_from_days(day);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sec / 3600,
        sec / 60 % 60,
        sec % 60
    )
}

/// Day number (days since 1970-01-01) of the CST calendar day containing `unix`.
///
/// Saturates at the `i32` bounds, which lie far outside any instant the engine handles
/// (about ±5.8 million years), so the function stays total.
pub fn cst_day(unix: i64) -> i32 {
    let (day, _) = cst_split(unix);
    i32::try_from(day).unwrap_or(if day < 0 { i32::MIN } else { i32::MAX })
}

/// Seconds since CST midnight, 0..86400.
pub fn cst_second_of_day(unix: i64) -> u32 {
    let (_, sec) = cst_split(unix);
    // 0..86400 fits in u32.
    sec as u32
}

/// `"2025-05-20"` → CST day number. Strict: real date, year 1970..=9999.
pub fn parse_date(s: &str) -> Option<i32> {
    // Years 1970..=9999 give day numbers well inside i32.
    parse_ymd(s.as_bytes()).and_then(|d| i32::try_from(d).ok())
}

/// Formats a day number as `"2025-05-20"`.
pub fn format_date(day: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A month, as year*12 + (month-1). Statistics periods and crediting labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(pub u32);

impl Period {
    /// Calendar year of the period.
    pub const fn year(self) -> u32 {
        self.0 / 12
    }

    /// Calendar month of the period, 1..=12.
    pub const fn month(self) -> u32 {
        self.0 % 12 + 1
    }
}

/// `"2025-05"` → period. Strict: month 01-12, year 1970..=9999.
pub fn parse_period(s: &str) -> Option<Period> {
    let (y, m) = parse_ym(s.as_bytes())?;
    // y <= 9999, so y*12 + 11 fits in u32.
    Some(Period(y as u32 * 12 + (m - 1)))
}

impl fmt::Display for Period {
    /// `"2025-05"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

/// CST month of the instant.
///
/// Instants before year 0 saturate to `Period(0)`; the engine never sees them.
pub fn period_of(unix: i64) -> Period {
    let (day, _) = cst_split(unix);
    let (y, m, _) = civil_from_days(day);
    let p = y.saturating_mul(12).saturating_add(i64::from(m) - 1);
    Period(u32::try_from(p).unwrap_or(if p < 0 { 0 } else { u32::MAX }))
}

/// 06:00:00 CST on the calendar day after the CST day of `unix` (wallet transfer expiry).
///
/// Saturates instead of overflowing at the extreme ends of `i64`.
pub fn next_day_0600(unix: i64) -> i64 {
    let (day, _) = cst_split(unix);
    (day + 1)
        .saturating_mul(SECONDS_PER_DAY)
        .saturating_add(6 * 3600 - CST_OFFSET_SECONDS)
}

/// unix seconds of CST midnight starting `day`.
pub fn day_start(day: i32) -> i64 {
    i64::from(day) * SECONDS_PER_DAY - CST_OFFSET_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epoch() {
        // Proves the epoch is 08:00 CST on day 0 and CST midnight of day 0 is 8 h earlier.
        assert_eq!(format_cst(0), "1970-01-01 08:00:00");
        assert_eq!(cst_day(0), 0);
        assert_eq!(cst_second_of_day(0), 8 * 3600);
        assert_eq!(day_start(0), -CST_OFFSET_SECONDS);
        assert_eq!(parse_cst("1970-01-01 08:00:00"), Some(0));
        assert_eq!(parse_cst("1970-01-01 00:00:00"), Some(-28_800));
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_cst(-28_801), "1969-12-31 23:59:59");
        assert_eq!(cst_day(-28_801), -1);
    }

    #[test]
    fn known_instant() {
        // Proves parse/format against an independently known instant (2025-05-20 02:00 UTC).
        assert_eq!(parse_cst("2025-05-20 10:00:00"), Some(1_747_706_400));
        assert_eq!(format_cst(1_747_706_400), "2025-05-20 10:00:00");
        assert_eq!(parse_date("2025-05-20"), Some(20_228));
        assert_eq!(format_date(20_228), "2025-05-20");
        assert_eq!(cst_day(1_747_706_400), 20_228);
        assert_eq!(day_start(20_228), parse_cst("2025-05-20 00:00:00").unwrap());
    }

    #[test]
    fn leap_days() {
        // Proves Gregorian leap rules: 2024 and 2000 have 29 February, 2100 and 1900 do not.
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2000-02-29").is_some());
        assert_eq!(parse_date("2100-02-29"), None);
        assert_eq!(parse_cst("2100-02-29 00:00:00"), None);
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(
            parse_date("2024-03-01").unwrap() - parse_date("2024-02-28").unwrap(),
            2
        );
        assert_eq!(
            parse_date("2100-03-01").unwrap() - parse_date("2100-02-28").unwrap(),
            1
        );
        assert_eq!(format_date(parse_date("2024-02-29").unwrap()), "2024-02-29");
    }

    #[test]
    fn day_boundary_in_cst() {
        // Proves 23:59:59 CST and the next second fall on consecutive CST days.
        let last = parse_cst("2025-05-20 23:59:59").unwrap();
        let first = last + 1;
        assert_eq!(format_cst(first), "2025-05-21 00:00:00");
        assert_eq!(cst_day(first), cst_day(last) + 1);
        assert_eq!(cst_second_of_day(last), 86_399);
        assert_eq!(cst_second_of_day(first), 0);
        assert_eq!(day_start(cst_day(first)), first);
        // 23:59:59 CST is 15:59:59 UTC the same date: the UTC day would not change here.
        assert_eq!(last.rem_euclid(86_400), 15 * 3600 + 59 * 60 + 59);
    }

    #[test]
    fn next_day_0600_rules() {
        // Proves the expiry is 06:00 of the next CST day, even from before 06:00 today.
        let t = parse_cst("2025-05-20 23:30:00").unwrap();
        assert_eq!(format_cst(next_day_0600(t)), "2025-05-21 06:00:00");
        // 05:59:59 belongs to its own day, so its expiry is the following morning.
        let early = parse_cst("2025-05-20 05:59:59").unwrap();
        assert_eq!(cst_day(early), cst_day(t));
        assert_eq!(format_cst(next_day_0600(early)), "2025-05-21 06:00:00");
        let midnight = parse_cst("2025-05-20 00:00:00").unwrap();
        assert_eq!(format_cst(next_day_0600(midnight)), "2025-05-21 06:00:00");
        // Month and year rollovers.
        let eoy = parse_cst("2024-12-31 12:00:00").unwrap();
        assert_eq!(format_cst(next_day_0600(eoy)), "2025-01-01 06:00:00");
        let leap = parse_cst("2024-02-28 18:00:00").unwrap();
        assert_eq!(format_cst(next_day_0600(leap)), "2024-02-29 06:00:00");
    }

    #[test]
    fn period_in_cst_not_utc() {
        // Proves period_of uses the CST month: 2025-05-31 20:00 UTC is 2025-06-01 04:00 CST.
        let utc_may_31_20h = days_from_civil(2025, 5, 31) * 86_400 + 20 * 3600;
        assert_eq!(period_of(utc_may_31_20h).to_string(), "2025-06");
        assert_eq!(
            period_of(utc_may_31_20h - 4 * 3600 - 1).to_string(),
            "2025-05"
        );
        let last_may = parse_cst("2025-05-31 23:59:59").unwrap();
        assert_eq!(period_of(last_may), parse_period("2025-05").unwrap());
        assert_eq!(period_of(last_may + 1), parse_period("2025-06").unwrap());
        let new_year = parse_cst("2025-01-01 00:00:00").unwrap();
        assert_eq!(period_of(new_year - 1).to_string(), "2024-12");
        assert_eq!(period_of(new_year).to_string(), "2025-01");
    }

    #[test]
    fn period_values() {
        // Proves the year*12 + month-1 encoding, its accessors, ordering and strict parsing.
        let p = parse_period("2025-05").unwrap();
        assert_eq!(p, Period(2025 * 12 + 4));
        assert_eq!((p.year(), p.month()), (2025, 5));
        assert!(parse_period("2024-12").unwrap() < parse_period("2025-01").unwrap());
        assert_eq!(Period(2025 * 12 + 11).to_string(), "2025-12");
        for bad in [
            "2025-00",
            "2025-13",
            "2025-5",
            "25-05",
            "2025/05",
            "2025-05-01",
            "1969-12",
            "",
            "+025-05",
            "２025-05",
            "2025-0a",
        ] {
            assert_eq!(parse_period(bad), None, "{bad}");
        }
        assert!(parse_period("1970-01").is_some());
        assert!(parse_period("9999-12").is_some());
    }

    #[test]
    fn strict_parsing() {
        // Proves parse_cst and parse_date reject every near miss of the format and ranges.
        for bad in [
            "2025-05-20T10:00:00",
            "2025-05-20 10:00:00Z",
            "2025-05-20 10:00",
            "2025-5-20 10:00:00",
            "2025-05-20  10:00:00",
            "2025-05-20 24:00:00",
            "2025-05-20 23:60:00",
            "2025-05-20 23:59:60",
            "2025-05-32 10:00:00",
            "2025-04-31 10:00:00",
            "2025-00-10 10:00:00",
            "2025-13-10 10:00:00",
            "2025-05-00 10:00:00",
            "1969-12-31 23:59:59",
            "+025-05-20 10:00:00",
            "2025-05-20 1a:00:00",
            "2025-05-20 10:00:0０",
            "",
        ] {
            assert_eq!(parse_cst(bad), None, "{bad}");
        }
        assert!(parse_cst("9999-12-31 23:59:59").is_some());
        for bad in [
            "2025-05-20 ",
            "2025-5-20",
            "20250520",
            "2025-05-32",
            "1969-12-31",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn extremes_do_not_panic() {
        // Proves the unix-taking functions are total at the i64 and i32 bounds.
        for u in [i64::MIN, i64::MIN + 1, -1, i64::MAX - 1, i64::MAX] {
            let _ = format_cst(u);
            let _ = cst_day(u);
            assert!(cst_second_of_day(u) < 86_400);
            let _ = period_of(u);
            let _ = next_day_0600(u);
        }
        for d in [i32::MIN, i32::MAX] {
            let _ = format_date(d);
            let _ = day_start(d);
        }
        assert_eq!(cst_day(i64::MAX), i32::MAX);
        assert_eq!(cst_day(i64::MIN), i32::MIN);
        assert_eq!(period_of(i64::MIN), Period(0));
    }

    /// Unix seconds of 1970-01-01 00:00:00 and 9999-12-31 23:59:59 CST: the parseable range.
    const FIRST: i64 = -CST_OFFSET_SECONDS;
    const LAST: i64 = 253_402_271_999;

    proptest! {
        #[test]
        fn text_round_trip(
            y in 1970i64..=9999, m in 1u32..=12, d in 1u32..=31,
            h in 0u32..24, mi in 0u32..60, s in 0u32..60,
        ) {
            // Proves format_cst(parse_cst(x)) == x for every valid CST timestamp text.
            prop_assume!(d <= days_in_month(y, m));
            let text = format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            let unix = parse_cst(&text).unwrap();
            prop_assert_eq!(format_cst(unix), text.clone());
            prop_assert_eq!(parse_date(&text[..10]), Some(cst_day(unix)));
            prop_assert_eq!(format_date(cst_day(unix)), &text[..10]);
            prop_assert_eq!(period_of(unix).to_string(), &text[..7]);
        }

        #[test]
        fn instant_round_trip(u in FIRST..=LAST) {
            // Proves parse_cst(format_cst(u)) == u and the day/second split recombines to u.
            prop_assert_eq!(parse_cst(&format_cst(u)), Some(u));
            let day = cst_day(u);
            prop_assert_eq!(day_start(day) + i64::from(cst_second_of_day(u)), u);
            let next = next_day_0600(u);
            prop_assert_eq!(next, day_start(day + 1) + 6 * 3600);
            prop_assert!(next > u);
        }

        #[test]
        fn civil_round_trip(day in -1_000_000i64..=3_000_000) {
            // Proves civil_from_days inverts days_from_civil, including before the epoch.
            let (y, m, d) = civil_from_days(day);
            prop_assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, m, d), day);
        }

        #[test]
        fn period_round_trip(y in 1970u32..=9999, m in 1u32..=12) {
            // Proves Display and parse_period are inverse for every valid period.
            let text = format!("{y:04}-{m:02}");
            let p = parse_period(&text).unwrap();
            prop_assert_eq!(p.to_string(), text);
            prop_assert_eq!(parse_period(&p.to_string()), Some(p));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,25}") {
            // Proves the text parsers are total on arbitrary input.
            let _ = parse_cst(&s);
            let _ = parse_date(&s);
            let _ = parse_period(&s);
        }
    }
}
