//! Python's own rules for the text operations plans use, where they can be matched exactly.
//!
//! Whatever cannot be matched exactly here (case folding beyond ASCII, Python's float repr)
//! is left to Python: callers decline the record.

use std::borrow::Cow;

/// `str.isspace()` for one character: Unicode's Zs category and bidirectional classes WS, B, S.
pub fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\x1c'..='\x20'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// `str.strip()` without arguments.
pub fn py_strip(text: &str) -> &str {
    text.trim_matches(is_py_space)
}

/// `str.casefold()`, `str.lower()`, `str.upper()` on ASCII text; None for any other text.
pub fn ascii_lower(text: &str) -> Option<Cow<'_, str>> {
    if !text.is_ascii() {
        return None;
    }
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(text.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(text))
    }
}

pub fn ascii_upper(text: &str) -> Option<Cow<'_, str>> {
    if !text.is_ascii() {
        return None;
    }
    if text.bytes().any(|b| b.is_ascii_lowercase()) {
        Some(Cow::Owned(text.to_ascii_uppercase()))
    } else {
        Some(Cow::Borrowed(text))
    }
}

/// `text[:limit]`: the first `limit` code points.
pub fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text; // no more bytes than the limit: no more code points either
    }
    match text.char_indices().nth(limit) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `int(text)` for text of ASCII digits (what `str.isdigit()` accepts among ASCII), when it
/// fits a u64; None otherwise.
pub fn ascii_digits(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `transforms.is_canonical_time`: `YYYY-MM-DDTHH:MM:SS.mmmZ`, a real moment, years 1 to 3000.
pub fn is_canonical_time(text: &str) -> bool {
    const SHAPE: &[u8; 24] = b"0000-00-00T00:00:00.000Z";
    let bytes = text.as_bytes();
    if bytes.len() != SHAPE.len() {
        return false;
    }
    for (&b, &s) in bytes.iter().zip(SHAPE.iter()) {
        if s == b'0' {
            if !b.is_ascii_digit() {
                return false;
            }
        } else if b != s {
            return false;
        }
    }
    let number = |from: usize, to: usize| -> u32 {
        bytes[from..to]
            .iter()
            .fold(0, |n, b| n * 10 + u32::from(b - b'0'))
    };
    let (year, month, day) = (number(0, 4), number(5, 7), number(8, 10));
    let (hour, minute, second) = (number(11, 13), number(14, 16), number(17, 19));
    (1..=3000).contains(&year)
        && (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second < 60
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `transforms.to_time` of an integer: epoch milliseconds from 1e11 on, else seconds, written
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`; None outside the years 1 to 3000.
pub fn epoch_time(number: i128) -> Option<String> {
    const MS_FROM: i128 = 100_000_000_000;
    const DAY_MS: i128 = 86_400_000;
    let ms = if number.abs() >= MS_FROM {
        number
    } else {
        number.checked_mul(1000)?
    };
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    if days.abs() > 4_000_000 {
        return None; // far outside the years Braze accepts
    }
    let (year, month, day) = civil_from_days(days as i64);
    if !(1..=3000).contains(&year) {
        return None;
    }
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z"
    ))
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
