//! The words of `-m mark`, `-j MARK` and `-m statistic`, read as iptables stores them.

use super::matches::number;

/// `value[/mask]` as xtables' `xtables_parse_mark_mask` reads it (`strtoul` base 0 for both;
/// the mask all ones when absent).
pub(crate) fn value_mask(s: &str) -> Result<(u32, u32), String> {
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let value = number(v, u32::MAX, "mark")?;
    let mask = match m {
        Some(m) => number(m, u32::MAX, "mark mask")?,
        None => u32::MAX,
    };
    Ok((value, mask))
}

/// A MARK option and its value as libxt_MARK (revision 2) stores them: `(mask, xor)`, the
/// mark becoming `(mark & !mask) ^ xor`. `None` for an option MARK has not.
pub(crate) fn mark_op(opt: &str, value: &str) -> Option<Result<(u32, u32), String>> {
    let bits = || number(value, u32::MAX, "mark");
    Some(match opt {
        "--set-xmark" => value_mask(value).map(|(v, m)| (m, v)),
        "--set-mark" => value_mask(value).map(|(v, m)| (m | v, v)),
        "--and-mark" => bits().map(|b| (!b, 0)),
        "--or-mark" => bits().map(|b| (b, b)),
        "--xor-mark" => bits().map(|b| (0, b)),
        _ => return None,
    })
}

/// `--probability p` (libxt_statistic: a number from 0 to 1, stored as `lround(p * 2^31)`).
pub(crate) fn probability(s: &str) -> Result<u32, String> {
    let bad = || format!("invalid --probability {s:?} (a number from 0 to 1)");
    let p: f64 = s.trim().parse().map_err(|_| bad())?;
    if !(0.0..=1.0).contains(&p) {
        return Err(bad());
    }
    Ok(dataplane::classify::walk::probability(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_as_libxt_mark_stores_them() {
        assert_eq!(value_mask("0x4000/0x4000"), Ok((0x4000, 0x4000)));
        assert_eq!(value_mask("16"), Ok((16, u32::MAX)));
        assert!(value_mask("0x1/zz").is_err());
        assert_eq!(
            mark_op("--set-xmark", "0x4000/0x4000").unwrap(),
            Ok((0x4000, 0x4000))
        );
        assert_eq!(
            mark_op("--set-xmark", "0x8000/0x0").unwrap(),
            Ok((0, 0x8000))
        );
        assert_eq!(mark_op("--set-mark", "0x1/0x3").unwrap(), Ok((0x3, 0x1)));
        assert_eq!(
            mark_op("--or-mark", "0x4000").unwrap(),
            Ok((0x4000, 0x4000))
        );
        assert_eq!(mark_op("--xor-mark", "0x4000").unwrap(), Ok((0, 0x4000)));
        assert_eq!(mark_op("--and-mark", "0xff").unwrap(), Ok((!0xff, 0)));
        assert!(mark_op("--set-class", "1").is_none());
        assert_eq!(probability("0.5"), Ok(1 << 30));
        assert_eq!(probability("1"), Ok(1 << 31));
        assert!(probability("1.5").is_err());
    }
}
