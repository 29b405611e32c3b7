//! Small text helpers that bound what is stored or sent.

/// At most `max` characters of `s`, with `…` appended when cut (never splits a character).
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Megabytes (MiB) with one decimal.
pub(crate) fn mib(bytes: u64) -> f64 {
    round1(bytes as f64 / 1_048_576.0)
}

/// One decimal.
pub(crate) fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Two decimals.
pub(crate) fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A size for people: `812.4 MiB`, `3.2 GiB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_bounds_characters_not_bytes() {
        assert_eq!(cut("héllo", 10), "héllo");
        assert_eq!(cut("héllo wörld", 5), "héll…");
        assert_eq!(cut("ééééé", 5).chars().count(), 5);
    }

    #[test]
    fn sizes_are_rendered_in_binary_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(12 * 1024 * 1024), "12.0 MiB");
        assert_eq!(human(3 * 1024 * 1024 * 1024 + 200 * 1024 * 1024), "3.2 GiB");
        assert_eq!(mib(1_572_864), 1.5);
    }
}
