//! The gateway's time zone (SPEC §3.3 settings): instants in, local-naive
//! `YYYY-MM-DDTHH:MM:SS` out, query dates in, and the bounds of "today".
//!
//! Orders keep instants (Unix ms); a [`Zone`] only decides how they read, so
//! changing the setting changes every timestamp shown from then on (SPEC:
//! "shown in the zone in force when they are read").
//!
//! # Where the zone data comes from
//!
//! jiff's global database: the system's `/usr/share/zoneinfo` (or `TZDIR`)
//! when there is one, since it is updated with the OS. jiff is built with
//! `tzdb-bundle-always`, so a copy of the IANA database is compiled in too:
//! it is the global database on a machine without zoneinfo, and
//! [`Zone::from_iana`] also falls back to it for a name the system database
//! lacks (minimal containers ship only `Etc/UTC`). Every name that one
//! machine accepts is therefore accepted on every other, and settings
//! persisted as a name restore everywhere.
//!
//! Nothing here reads the clock. [`Zone::system`] reads the OS's time-zone
//! configuration (`TZ`, `/etc/localtime`), which is allowed: it is
//! configuration, not time.

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone, TimeZoneDatabase};
use jiff::Timestamp;

use super::Echo;

/// Earliest instant written: 0001-01-02T00:00:00Z, so that no offset (at
/// most ±26 h) takes the local year below 0001.
// SPEC gap: instants outside 0001 … 9999 are written clamped into it.
const MIN_WRITTEN_MS: i64 = -62_135_510_400_000;
/// Latest instant written: 9999-12-30T00:00:00Z, so the local year stays four
/// digits.
const MAX_WRITTEN_MS: i64 = 253_402_128_000_000;
/// Longest zone name accepted (the longest IANA name is 32 bytes).
const MAX_ZONE_NAME_LEN: usize = 64;
/// Files in a zoneinfo directory that jiff could load but that are not IANA
/// zone names (they depend on the machine).
const NOT_ZONE_NAMES: [&str; 2] = ["localtime", "posixrules"];

/// An IANA time zone and its name.
#[derive(Clone, Debug)]
pub struct Zone {
    /// jiff's rules for the zone: offsets and DST transitions.
    tz: TimeZone,
    /// The IANA name as the database spells it (what settings show and
    /// persist).
    name: String,
}

impl PartialEq for Zone {
    /// Two zones are equal when they have the same name (the name decides
    /// the rules).
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl Zone {
    /// `UTC`.
    pub fn utc() -> Zone {
        Zone {
            tz: TimeZone::UTC,
            name: "UTC".into(),
        }
    }

    /// The zone with this IANA name (case-insensitive; kept as the database
    /// spells it, so `europe/moscow` becomes `Europe/Moscow`).
    ///
    /// # Errors
    ///
    /// A message when the name is not a known IANA time-zone name: `""`,
    /// fixed offsets such as `+03:00`, POSIX `TZ` strings, `localtime`, and
    /// any name neither the system nor the bundled database has.
    pub fn from_iana(name: &str) -> Result<Zone, String> {
        let bad = || format!("{} is not a known IANA time zone name", Echo(name));
        // IANA names use letters, digits, '/', '_', '-' and '+' only; this
        // also keeps '.' (a path) away from the zoneinfo lookup.
        let charset_ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'));
        if name.is_empty()
            || name.len() > MAX_ZONE_NAME_LEN
            || !charset_ok
            || !name.as_bytes()[0].is_ascii_alphabetic()
            || NOT_ZONE_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
        {
            return Err(bad());
        }
        let tz = jiff::tz::db()
            .get(name)
            .or_else(|_| TimeZoneDatabase::bundled().get(name))
            .map_err(|_| bad())?;
        // `Etc/Unknown` and the like load but have no IANA name.
        let canonical = tz.iana_name().ok_or_else(bad)?.to_owned();
        Ok(Zone {
            tz,
            name: canonical,
        })
    }

    /// The machine's own IANA zone (`TZ`, else `/etc/localtime`), or UTC
    /// when it has none or it is not an IANA name (SPEC §3.3). Reads the
    /// OS's configuration, not the clock.
    pub fn system() -> Zone {
        TimeZone::try_system()
            .ok()
            .and_then(|tz| tz.iana_name().and_then(|n| Zone::from_iana(n).ok()))
            .unwrap_or_else(Zone::utc)
    }

    /// The IANA name, e.g. `Europe/Moscow`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `YYYY-MM-DDTHH:MM:SS`: the instant `ms` (Unix ms) on a wall clock in
    /// this zone, seconds rounded down.
    pub fn local_naive(&self, ms: i64) -> String {
        let mut out = Vec::with_capacity(19);
        self.write_local_naive(&mut out, ms);
        // Only ASCII digits and punctuation were written.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends [`Zone::local_naive`] to `out` (no quotes).
    pub fn write_local_naive(&self, out: &mut Vec<u8>, ms: i64) {
        let dt = self.tz.to_datetime(timestamp(ms));
        write_date(out, dt.date());
        out.push(b'T');
        two(out, dt.hour());
        out.push(b':');
        two(out, dt.minute());
        out.push(b':');
        two(out, dt.second());
    }

    /// Parses a query date into Unix ms:
    ///
    /// * `YYYY-MM-DD`: the start of that day in this zone;
    /// * `YYYY-MM-DDTHH:MM:SS[.fraction]`: that wall-clock time in this zone
    ///   (a time in a DST gap or fold is resolved by jiff's "compatible"
    ///   rule: the later reading in a gap, the earlier in a fold);
    /// * the same followed by `Z` or `±HH:MM`: RFC 3339, an exact instant.
    ///
    /// A fraction of a millisecond is dropped. `t` and `z` may be lowercase.
    /// Anything else, or a date or time that does not exist (`2015-02-29`,
    /// `24:00:00`, leap second 60), is `None`. A valid time past the range
    /// of instants (late on 9999-12-30 UTC and after) reads as its last
    /// instant.
    pub fn parse_local(&self, text: &str) -> Option<i64> {
        let b = text.as_bytes();
        let year = digits(b.get(0..4)?)?;
        let month = digits(b.get(5..7)?)?;
        let day = digits(b.get(8..10)?)?;
        if b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let date = Date::new(year as i16, month as i8, day as i8).ok()?;
        // A valid time too late for jiff's range (which ends late on
        // 9999-12-30 UTC) is its last instant: no order is created after it.
        let in_range = |ms: Option<i64>| {
            ms.or_else(|| (year == 9999).then(|| Timestamp::MAX.as_millisecond()))
        };
        if b.len() == 10 {
            let dt = date.to_datetime(jiff::civil::Time::midnight());
            return in_range(self.resolve_local(dt));
        }
        if !matches!(b[10], b'T' | b't') {
            return None;
        }
        let hour = digits(b.get(11..13)?)?;
        let minute = digits(b.get(14..16)?)?;
        let second = digits(b.get(17..19)?)?;
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let mut rest = &b[19..];
        let mut nanos = 0i32;
        if let Some(frac) = rest.strip_prefix(b".") {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return None;
            }
            nanos = digits(&frac[..n])? as i32 * 10i32.pow(9 - n as u32);
            rest = &frac[n..];
        }
        let dt = DateTime::new(
            year as i16,
            month as i8,
            day as i8,
            hour as i8,
            minute as i8,
            second as i8,
            nanos,
        )
        .ok()?;
        let offset_secs = match rest {
            [] => return in_range(self.resolve_local(dt)),
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let hours = digits(&[*h1, *h2])?;
                let minutes = digits(&[*m1, *m2])?;
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let secs = (hours * 3600 + minutes * 60) as i32;
                if *sign == b'-' {
                    -secs
                } else {
                    secs
                }
            }
            _ => return None,
        };
        let offset = Offset::from_seconds(offset_secs).ok()?;
        in_range(offset.to_timestamp(dt).ok().map(|ts| ts.as_millisecond()))
    }

    /// "Today" in this zone at the instant `now_ms`: the Unix ms of its first
    /// instant, of the next day's first instant, and `YYYY-MM-DD`. A day
    /// with a DST change is 23 or 25 hours long; a day whose midnight falls
    /// in a gap starts when the clock jumps.
    pub fn day_bounds(&self, now_ms: i64) -> (i64, i64, String) {
        let now = timestamp(now_ms);
        let date = self.tz.to_datetime(now).date();
        let start = self.day_start(date).unwrap_or(now.as_millisecond());
        let end = date
            .tomorrow()
            .ok()
            .and_then(|d| self.day_start(d))
            .unwrap_or(start.saturating_add(86_400_000));
        let mut text = Vec::with_capacity(10);
        write_date(&mut text, date);
        (start, end, String::from_utf8(text).unwrap_or_default())
    }

    /// The first instant of `date` in this zone.
    fn day_start(&self, date: Date) -> Option<i64> {
        self.resolve_local(date.to_datetime(jiff::civil::Time::midnight()))
    }

    /// A wall-clock time in this zone to Unix ms, by the "compatible" rule.
    fn resolve_local(&self, dt: DateTime) -> Option<i64> {
        let ts = self.tz.to_ambiguous_timestamp(dt).compatible().ok()?;
        Some(ts.as_millisecond())
    }
}

/// `ms` as a jiff timestamp, clamped to the range that writes four-digit
/// local years.
fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms.clamp(MIN_WRITTEN_MS, MAX_WRITTEN_MS))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A run of ASCII digits (at most 9) as a number.
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0')))
}

/// Appends `YYYY-MM-DD` (years 0001 … 9999 after clamping).
fn write_date(out: &mut Vec<u8>, date: Date) {
    let year = date.year().clamp(0, 9999);
    two(out, (year / 100) as i8);
    two(out, (year % 100) as i8);
    out.push(b'-');
    two(out, date.month());
    out.push(b'-');
    two(out, date.day());
}

/// Appends a number 0 … 99 as two digits.
fn two(out: &mut Vec<u8>, n: i8) {
    let n = n.clamp(0, 99) as u8;
    out.push(b'0' + n / 10);
    out.push(b'0' + n % 10);
}
