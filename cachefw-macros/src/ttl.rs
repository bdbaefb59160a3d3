//! TTL literals such as `"1h30m"`, turned into milliseconds at compile time,
//! and TTL jitter such as `"10%"`.

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

const ACCEPTED: &str = "expected a number and a unit, largest unit first, such as \"500ms\", \
                        \"45s\", \"10m\", \"1h30m\" or \"1d\" (units: d, h, m, s, ms)";

/// Parses `text` into whole milliseconds, or says what is wrong.
pub(crate) fn parse_millis(text: &str) -> Result<u64, String> {
    let malformed = || format!("malformed TTL {text:?}: {ACCEPTED}");
    let mut rest = text;
    let mut total: u64 = 0;
    // Index into UNITS of the last unit seen: each must be smaller.
    let mut last: Option<usize> = None;
    if rest.is_empty() {
        return Err(malformed());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(malformed());
        }
        let (number, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(malformed());
        };
        if last.is_some_and(|last| index <= last) {
            return Err(format!(
                "malformed TTL {text:?}: units must each appear once, largest first ({ACCEPTED})"
            ));
        }
        last = Some(index);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("TTL {text:?} is too long"))?;
        total = number
            .checked_mul(UNITS[index].1)
            .and_then(|part| total.checked_add(part))
            .filter(|total| *total <= i64::MAX as u64)
            .ok_or_else(|| format!("TTL {text:?} is too long"))?;
        rest = after;
    }
    if total == 0 {
        return Err(format!(
            "TTL {text:?} is zero: an entry must live at least 1ms"
        ));
    }
    Ok(total)
}

/// Parses a jitter percentage such as `"10%"` into a fraction in `[0, 1)`.
pub(crate) fn parse_jitter(text: &str) -> Result<f64, String> {
    let malformed =
        || format!("malformed jitter {text:?}: expected a percentage below 100%, such as \"10%\"");
    let number = text.strip_suffix('%').ok_or_else(malformed)?;
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(malformed());
    }
    let percent: f64 = number.parse().map_err(|_| malformed())?;
    if percent >= 100.0 {
        return Err(malformed());
    }
    Ok(percent / 100.0)
}

#[cfg(test)]
mod tests {
    use super::{parse_jitter, parse_millis};

    #[test]
    fn jitter_is_a_percentage_below_100() {
        assert_eq!(parse_jitter("10%"), Ok(0.1));
        assert_eq!(parse_jitter("0%"), Ok(0.0));
        assert_eq!(parse_jitter("12.5%"), Ok(0.125));
        for bad in ["10", "100%", "-5%", "%", "ten%", "1e2%", "5 %"] {
            assert!(parse_jitter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("45s"), Ok(45_000));
        assert_eq!(parse_millis("10m"), Ok(600_000));
        assert_eq!(parse_millis("1h30m"), Ok(5_400_000));
        assert_eq!(parse_millis("1d"), Ok(86_400_000));
        assert_eq!(parse_millis("1d2h3m4s5ms"), Ok(93_784_005));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "", "10", "m", "10x", "1.5h", "10 m", "30m1h", "1m1m", "-5s", "1H", "0s",
        ] {
            let err = parse_millis(bad).expect_err(bad);
            assert!(err.contains(bad) || bad.is_empty(), "{err}");
        }
        assert!(parse_millis("0s").unwrap_err().contains("zero"));
        assert!(
            parse_millis("99999999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            parse_millis("1000000000000d")
                .unwrap_err()
                .contains("too long")
        );
    }
}
