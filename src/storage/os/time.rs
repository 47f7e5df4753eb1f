//! The wall clock, and local time as RocketMQ puts it into index file names.

use std::mem::MaybeUninit;
use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `ms` (milliseconds since the Unix epoch) as `yyyyMMddHHmmssSSS` in the local time
/// zone, the way RocketMQ names index files (17 digits for years 1000–9999).
///
/// Uses `localtime_r`, which reads the `TZ` environment variable (once, on first use, in
/// glibc). Falls back to UTC if the time cannot be represented.
pub fn format_local_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let fields = local_time_fields(secs).unwrap_or_else(|| utc_time_fields(secs));
    format_fields(fields, millis)
}

/// The local hour of day (0–23) at `ms` since the epoch (`localtime_r`; UTC if that fails).
pub fn local_hour(ms: i64) -> u32 {
    let secs = ms.div_euclid(1000);
    let fields = local_time_fields(secs).unwrap_or_else(|| utc_time_fields(secs));
    fields.3 as u32
}

/// Milliseconds since the Unix epoch by the wall clock (negative before 1970).
///
/// Read on every put: `clock_gettime` straight into whole milliseconds, without `SystemTime`'s
/// checked subtraction and 128-bit division (about half the cost of the read through std).
#[cfg(unix)]
pub fn now_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call; CLOCK_REALTIME
    // always exists, so the call cannot fail with valid arguments.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    if rc != 0 {
        return now_ms_std();
    }
    // tv_nsec is in [0, 1e9): flooring division, also before 1970. (`time_t` and `c_long` are
    // i64 on 64-bit targets, i32 on some 32-bit ones.)
    #[allow(clippy::useless_conversion)]
    let (secs, nanos) = (i64::from(ts.tv_sec), i64::from(ts.tv_nsec));
    secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
}

/// Milliseconds since the Unix epoch by the wall clock (negative before 1970).
#[cfg(not(unix))]
pub fn now_ms() -> i64 {
    now_ms_std()
}

/// [`now_ms`] through `SystemTime`.
pub(super) fn now_ms_std() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(err) => i64::try_from(err.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Calendar fields: year, month (1–12), day (1–31), hour, minute, second.
type TimeFields = (i64, i64, i64, i64, i64, i64);

pub(super) fn format_fields(
    (year, month, day, hour, minute, second): TimeFields,
    millis: i64,
) -> String {
    format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}{millis:03}")
}

fn local_time_fields(secs: i64) -> Option<TimeFields> {
    let time = libc::time_t::try_from(secs).ok()?;
    let mut tm = MaybeUninit::<libc::tm>::uninit();
    // SAFETY: both pointers are valid for the duration of the call: `time` is a live local and
    // `tm` is writable memory the size of a `struct tm`. localtime_r is the reentrant variant:
    // it touches no shared buffer.
    let result = unsafe { libc::localtime_r(&time, tm.as_mut_ptr()) };
    if result.is_null() {
        return None;
    }
    // SAFETY: localtime_r returned non-null, so it filled in the whole `struct tm`.
    let tm = unsafe { tm.assume_init() };
    Some((
        i64::from(tm.tm_year) + 1900,
        i64::from(tm.tm_mon) + 1,
        i64::from(tm.tm_mday),
        i64::from(tm.tm_hour),
        i64::from(tm.tm_min),
        i64::from(tm.tm_sec),
    ))
}

/// UTC calendar fields of `secs` since the epoch (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days`). Total: no libc, no failure.
pub(super) fn utc_time_fields(secs: i64) -> TimeFields {
    let days = secs.div_euclid(86_400);
    let second_of_day = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
    )
}
