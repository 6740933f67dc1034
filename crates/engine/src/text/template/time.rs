//! The small piece of `strftime` that chat templates use (`strftime_now("%d %b %Y")` in Llama 3.x,
//! `"%Y-%m-%d"` elsewhere), in UTC, without a date-time dependency. Calendar arithmetic is Howard
//! Hinnant's `civil_from_days` (proleptic Gregorian, O(1)).

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Seconds since the Unix epoch, negative before it.
pub(super) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A broken-down UTC time.
struct Tm {
    year: i64,
    month: u32, // 1..=12
    day: u32,   // 1..=31
    hour: u32,
    minute: u32,
    second: u32,
    weekday: u32, // 0 = Sunday
    yday: u32,    // 0-based day of the year
}

fn breakdown(unix: i64) -> Tm {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400) as u32;
    // civil_from_days: shift the era to start on 0000-03-01 so leap days fall at the year's end.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[(month - 1) as usize] + day - 1 + u32::from(leap && month > 2);
    Tm {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as u32,
        yday,
    }
}

/// Formats `unix` (UTC) like C's `strftime`, including glibc's `%-d` (no padding) flag. Unknown
/// directives are copied through, as glibc does.
pub(super) fn strftime(format: &str, unix: i64) -> String {
    let tm = breakdown(unix);
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let no_pad = spec == Some('-');
        if no_pad {
            spec = chars.next();
        }
        let num = |out: &mut String, v: i64, width: usize| {
            if no_pad {
                out.push_str(&v.to_string());
            } else {
                out.push_str(&format!("{v:0width$}"));
            }
        };
        let hour12 = match tm.hour % 12 {
            0 => 12,
            h => h,
        };
        match spec {
            Some('Y') => out.push_str(&tm.year.to_string()),
            Some('y') => num(&mut out, tm.year.rem_euclid(100), 2),
            Some('C') => num(&mut out, tm.year.div_euclid(100), 2),
            Some('m') => num(&mut out, tm.month.into(), 2),
            Some('d') => num(&mut out, tm.day.into(), 2),
            Some('e') if no_pad => out.push_str(&tm.day.to_string()),
            Some('e') => out.push_str(&format!("{:2}", tm.day)),
            Some('H') => num(&mut out, tm.hour.into(), 2),
            Some('I') => num(&mut out, hour12.into(), 2),
            Some('M') => num(&mut out, tm.minute.into(), 2),
            Some('S') => num(&mut out, tm.second.into(), 2),
            Some('j') => num(&mut out, i64::from(tm.yday) + 1, 3),
            Some('p') => out.push_str(if tm.hour < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(MONTHS[(tm.month - 1) as usize]),
            Some('b' | 'h') => out.push_str(&MONTHS[(tm.month - 1) as usize][..3]),
            Some('A') => out.push_str(WEEKDAYS[tm.weekday as usize]),
            Some('a') => out.push_str(&WEEKDAYS[tm.weekday as usize][..3]),
            Some('u') => out.push_str(&(if tm.weekday == 0 { 7 } else { tm.weekday }).to_string()),
            Some('w') => out.push_str(&tm.weekday.to_string()),
            Some('F') => out.push_str(&format!("{}-{:02}-{:02}", tm.year, tm.month, tm.day)),
            Some('T') => out.push_str(&format!("{:02}:{:02}:{:02}", tm.hour, tm.minute, tm.second)),
            Some('D') => out.push_str(&format!(
                "{:02}/{:02}/{:02}",
                tm.month,
                tm.day,
                tm.year.rem_euclid(100)
            )),
            Some('Z') => out.push_str("UTC"),
            Some('z') => out.push_str("+0000"),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strftime;

    #[test]
    fn known_dates() {
        // 2024-07-26 12:34:56 UTC, a Friday (the date Llama 3.1's template defaults to).
        let t = 1_721_997_296;
        assert_eq!(strftime("%d %b %Y", t), "26 Jul 2024");
        assert_eq!(strftime("%Y-%m-%d %H:%M:%S", t), "2024-07-26 12:34:56");
        assert_eq!(
            strftime("%A, %B %-d (%j) %I%p %%", t),
            "Friday, July 26 (208) 12PM %"
        );
        // Leap day and the epoch.
        assert_eq!(strftime("%F %a", 1_709_164_800), "2024-02-29 Thu");
        assert_eq!(strftime("%F %T %a", 0), "1970-01-01 00:00:00 Thu");
        // Before the epoch: 1969-12-31 23:59:59, a Wednesday.
        assert_eq!(strftime("%F %T %a", -1), "1969-12-31 23:59:59 Wed");
        // 2000-03-01 (after a century leap day) is day 61.
        assert_eq!(strftime("%F %j", 951_868_800), "2000-03-01 061");
    }
}
