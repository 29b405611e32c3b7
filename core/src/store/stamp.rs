//! [`Stamp`]: a time bound to an insert, written on SQLite without a format string.
//!
//! # Why
//! diesel writes a SQLite timestamp with chrono's `format("%F %T%.f")`, which parses the pattern
//! on every call: with about thirteen timestamps per new alert it was 8% of the writer thread on
//! the batched intake (issue 8). [`Stamp`] writes the same text directly (a test holds the two
//! to the same output), and on PostgreSQL binds exactly as diesel does.

use chrono::{Datelike, NaiveDateTime, Timelike};
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{IsNull, Output, ToSql};
use diesel::sql_types::Timestamp;
use diesel::sqlite::Sqlite;

/// A time for a `TIMESTAMP` column of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression)]
#[diesel(sql_type = Timestamp)]
pub struct Stamp(pub NaiveDateTime);

impl ToSql<Timestamp, Sqlite> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> diesel::serialize::Result {
        out.set_value(sqlite_text(self.0));
        Ok(IsNull::No)
    }
}

impl ToSql<Timestamp, Pg> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> diesel::serialize::Result {
        <NaiveDateTime as ToSql<Timestamp, Pg>>::to_sql(&self.0, out)
    }
}

/// `t` as diesel stores it in SQLite (`%F %T%.f`: the fraction in 0, 3, 6 or 9 digits, as
/// needed). Years outside 0..=9999 and leap seconds, which that pattern writes its own way, go
/// through chrono.
fn sqlite_text(t: NaiveDateTime) -> String {
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return t.format("%F %T%.f").to_string();
    }
    let mut out = String::with_capacity(29);
    push_num(&mut out, year.unsigned_abs(), 4);
    out.push('-');
    push_num(&mut out, t.month(), 2);
    out.push('-');
    push_num(&mut out, t.day(), 2);
    out.push(' ');
    push_num(&mut out, t.hour(), 2);
    out.push(':');
    push_num(&mut out, t.minute(), 2);
    out.push(':');
    push_num(&mut out, t.second(), 2);
    if nanos != 0 {
        out.push('.');
        if nanos % 1_000_000 == 0 {
            push_num(&mut out, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            push_num(&mut out, nanos / 1_000, 6);
        } else {
            push_num(&mut out, nanos, 9);
        }
    }
    out
}

/// Appends `n`'s last `width` decimal digits, zero-padded.
fn push_num(out: &mut String, n: u32, width: u32) {
    for i in (0..width).rev() {
        let digit = (n / 10u32.pow(i)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, NaiveDate};

    #[test]
    fn the_text_is_what_diesel_writes_for_sqlite() {
        let base = NaiveDate::from_ymd_opt(2026, 11, 29)
            .and_then(|d| d.and_hms_nano_opt(4, 59, 46, 611_175_000))
            .unwrap();
        let mut times = vec![
            base,
            base.with_nanosecond(0).unwrap(),
            base.with_nanosecond(611_000_000).unwrap(),
            base.with_nanosecond(1_000).unwrap(),
            base.with_nanosecond(123_456_789).unwrap(),
            base.with_nanosecond(5).unwrap(),
            // a leap second
            base.with_nanosecond(1_500_000_000).unwrap(),
            NaiveDate::from_ymd_opt(1, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
            NaiveDate::from_ymd_opt(9999, 12, 31)
                .unwrap()
                .and_hms_micro_opt(23, 59, 59, 999_999)
                .unwrap(),
            NaiveDate::from_ymd_opt(10_000, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
            NaiveDate::from_ymd_opt(-1, 6, 15)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap(),
        ];
        // A spread of instants, microsecond precision as stored, a few seconds to years apart.
        let mut t = base;
        for i in 0..2_000i64 {
            t += Duration::microseconds(i * 7_919_891 + 13);
            times.push(t);
        }
        for t in times {
            assert_eq!(sqlite_text(t), t.format("%F %T%.f").to_string(), "{t:?}");
        }
    }
}
