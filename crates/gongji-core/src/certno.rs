//! Chinese resident identity numbers (GB 11643) and administrative division codes (admdvs).
//!
//! An ID number is 17 digits and a check character. We validate it fully (province, birth
//! date, check character) at the API edge so the state machine can store it packed in a `u64`:
//! with tens of millions of persons, 8 bytes instead of an 18-byte string matters. Masking
//! helpers live here too because every log line and response that shows an ID or a name must
//! use the same rule.

use arrayvec::ArrayString;

/// Weights of the first 17 digits in the GB 11643 check sum.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// Check character indexed by `weighted sum mod 11`.
const CHECK_CHARS: [u8; 11] = *b"10X98765432";

/// 10^17: one more than the largest 17-digit body.
const BODY_LIMIT: u64 = 100_000_000_000_000_000;

/// Valid province codes of the mainland (first two digits of an admdvs or ID number).
const PROVINCES: [u8; 31] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65,
];

/// Valid province codes (first two digits of admdvs).
///
/// Only the 31 mainland provinces: insurance pooling areas exist only there.
pub fn province_valid(code: u8) -> bool {
    PROVINCES.contains(&code)
}

/// Province codes an ID number may start with: the mainland plus Taiwan (71), Hong Kong (81),
/// Macao (82) and the residence permits for Taiwan residents (83), which carry the same format.
fn certno_province_valid(code: u8) -> bool {
    province_valid(code) || matches!(code, 71 | 81 | 82 | 83)
}

/// The index into [`CHECK_CHARS`] for 17 ASCII digits.
fn check_index(body: &[u8; 17]) -> u8 {
    let sum: u32 = body
        .iter()
        .zip(WEIGHTS)
        .map(|(&d, w)| u32::from(d - b'0') * w)
        .sum();
    // sum % 11 < 11, so the cast is lossless.
    (sum % 11) as u8
}

/// The first 17 bytes if they are all ASCII digits.
fn digits17(b: &[u8]) -> Option<&[u8; 17]> {
    let body: &[u8; 17] = b.get(..17)?.try_into().ok()?;
    body.iter().all(u8::is_ascii_digit).then_some(body)
}

/// Value of a run of ASCII digits already known to be digits.
fn num(b: &[u8]) -> u32 {
    b.iter().fold(0, |acc, &c| acc * 10 + u32::from(c - b'0'))
}

/// Whether `yyyymmdd` is a real calendar date with year 1900..=2099.
fn birth_date_valid(b: &[u8]) -> bool {
    let (y, m, d) = (num(&b[0..4]), num(&b[4..6]), num(&b[6..8]));
    if !(1900..=2099).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return false;
    }
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    d <= days
}

/// Validates and returns (17-digit body, check index) of a certno.
fn certno_parts(s: &str) -> Option<(&[u8; 17], u8)> {
    let b = s.as_bytes();
    if b.len() != 18 {
        return None;
    }
    let body = digits17(b)?;
    // Digits are ASCII, so the two-digit value fits a u8.
    if !certno_province_valid(num(&body[0..2]) as u8) || !birth_date_valid(&body[6..14]) {
        return None;
    }
    let idx = check_index(body);
    // Upper-case `X` only: the standard prints it upper case and one spelling per person keeps
    // lookups exact.
    (b[17] == CHECK_CHARS[usize::from(idx)]).then_some((body, idx))
}

/// Whether `s` is a valid 18-character resident ID: 17 digits, known province, real birth
/// date in 1900..=2099, and the right check character (`X` upper case only).
pub fn certno_valid(s: &str) -> bool {
    certno_parts(s).is_some()
}

/// Packs a valid certno into a u64 (17 digits × 11 + check index) so 50 M persons store it in 8 bytes.
///
/// Returns `None` for anything [`certno_valid`] rejects. The largest value, about 1.1 × 10^18,
/// fits in a u64 with room to spare.
pub fn certno_pack(s: &str) -> Option<u64> {
    let (body, idx) = certno_parts(s)?;
    let digits = body
        .iter()
        .fold(0u64, |acc, &c| acc * 10 + u64::from(c - b'0'));
    Some(digits * 11 + u64::from(idx))
}

/// Inverse of [`certno_pack`].
///
/// Total on `u64` so corrupt input cannot panic: a value not produced by `certno_pack` yields
/// some 18-character string that need not be a valid certno.
pub fn certno_unpack(v: u64) -> ArrayString<18> {
    let mut digits = (v / 11) % BODY_LIMIT;
    let idx = v % 11;
    let mut buf = [0u8; 18];
    for slot in buf[..17].iter_mut().rev() {
        // digits % 10 < 10: lossless.
        *slot = b'0' + (digits % 10) as u8;
        digits /= 10;
    }
    buf[17] = CHECK_CHARS[idx as usize];
    let mut out = ArrayString::new();
    for &c in &buf {
        out.push(char::from(c));
    }
    out
}

/// What a masked certno keeps of a packed one (first 4 digits, last 3 digits and the check
/// character) as one number below 1.1 × 10^8: the key of the masked-certno index.
pub fn masked_key_of_packed(packed: u64) -> u32 {
    let digits = (packed / 11) % BODY_LIMIT;
    let first4 = digits / 10u64.pow(13);
    let last3 = digits % 1000;
    u32::try_from((first4 * 1000 + last3) * 11 + packed % 11).expect("below 1.1e8")
}

/// The key of a masked certno as [`mask_certno`] writes it (`4401**********123X`: 4 digits,
/// 10 `*`, 3 digits, a check character), or `None` for anything else.
pub fn masked_key(masked: &str) -> Option<u32> {
    let b = masked.as_bytes();
    if b.len() != 18
        || !b[..4].iter().all(u8::is_ascii_digit)
        || !b[4..14].iter().all(|&c| c == b'*')
        || !b[14..17].iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let number = |s: &[u8]| {
        s.iter()
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
    };
    let check = CHECK_CHARS.iter().position(|&c| c == b[17])? as u32;
    Some((number(&b[..4]) * 1000 + number(&b[14..17])) * 11 + check)
}

/// First 4 and last 4 characters kept, the rest `*`: `4401**********123X`.
///
/// Works on any string, counting chars rather than bytes. Strings of 8 chars or fewer are
/// masked completely, because keeping 4 + 4 of them would reveal everything.
pub fn mask_certno(s: &str) -> String {
    let n = s.chars().count();
    if n <= 8 {
        return "*".repeat(n);
    }
    s.chars()
        .enumerate()
        .map(|(i, c)| if i < 4 || i >= n - 4 { c } else { '*' })
        .collect()
}

/// First character kept, each other character `*`: `张三丰` → `张**`; single char name → unchanged.
pub fn mask_name(s: &str) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| if i == 0 { c } else { '*' })
        .collect()
}

/// `admdvs`: exactly 6 ASCII digits whose first two are a valid province → the number.
pub fn parse_admdvs(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let a = num(b);
    province_valid(admdvs_province(a)).then_some(a)
}

/// Province of an admdvs: `440106` → `44`.
///
/// Meant for values from [`parse_admdvs`]; others are reduced modulo 100 rather than panicking.
pub fn admdvs_province(a: u32) -> u8 {
    // < 100: lossless.
    (a / 10_000 % 100) as u8
}

/// Pooling area of an admdvs (its first four digits): `440106` → `4401`.
///
/// Meant for values from [`parse_admdvs`]; others are reduced modulo 10000 rather than
/// panicking.
pub fn admdvs_pool(a: u32) -> u16 {
    // < 10000: lossless.
    (a / 100 % 10_000) as u16
}

/// A helper for tests and the simulator: appends the right check character to 17 digits.
///
/// Only the digits are checked, not province or birth date, so tests can also build
/// well-checked IDs that are invalid for other reasons.
pub fn certno_with_check(first17: &str) -> Option<String> {
    let b = first17.as_bytes();
    if b.len() != 17 {
        return None;
    }
    let body = digits17(b)?;
    let mut out = String::with_capacity(18);
    out.push_str(first17);
    out.push(char::from(CHECK_CHARS[usize::from(check_index(body))]));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn check_character_known_examples() {
        // Proves the weights and check table against sums worked out by hand.
        // 1 1 0 1 0 5 1 9 4 9 1 2 3 1 0 0 2 weighted: 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4
        // = 167; 167 mod 11 = 2 → 'X'.
        assert_eq!(
            certno_with_check("11010519491231002").as_deref(),
            Some("11010519491231002X")
        );
        // 4 4 0 1 0 6 1 9 9 0 0 1 0 1 1 2 3 weighted: 28+36+0+5+0+24+2+9+54+0+0+9+0+5+8+8+6
        // = 194; 194 mod 11 = 7 → '5'.
        assert_eq!(
            certno_with_check("44010619900101123").as_deref(),
            Some("440106199001011235")
        );
        // 3 1 0 1 0 1 2 0 0 0 0 2 2 9 0 0 1 weighted: 21+9+0+5+0+4+4+0+0+0+0+18+20+45+0+0+2
        // = 128; 128 mod 11 = 7 → '5'.
        assert_eq!(
            certno_with_check("31010120000229001").as_deref(),
            Some("310101200002290015")
        );
        assert!(certno_valid("11010519491231002X"));
        assert!(certno_valid("440106199001011235"));
        assert!(certno_valid("310101200002290015"));
    }

    #[test]
    fn with_check_rejects_non_digits() {
        // Proves certno_with_check only accepts exactly 17 ASCII digits.
        assert_eq!(certno_with_check("1101051949123100"), None);
        assert_eq!(certno_with_check("110105194912310020"), None);
        assert_eq!(certno_with_check("1101051949123100a"), None);
        assert_eq!(certno_with_check(""), None);
    }

    #[test]
    fn invalid_certnos() {
        // Proves each rule on its own rejects an otherwise valid ID.
        // Wrong check character (right one is '5').
        assert!(!certno_valid("440106199001011234"));
        // Lower-case x.
        assert!(!certno_valid("11010519491231002x"));
        // Invalid dates, with the right check character so only the date fails.
        for body in [
            "44010619990230123", // 30 February
            "44010619000229123", // 1900 is not a leap year
            "44010619991301123", // month 13
            "44010619990100123", // day 0
            "44010619990431123", // 31 April
            "44010618991231123", // before 1900
            "44010621000101123", // after 2099
        ] {
            let id = certno_with_check(body).unwrap();
            assert!(!certno_valid(&id), "{id}");
        }
        // Leap days that exist.
        assert!(certno_valid(
            &certno_with_check("44010620000229123").unwrap()
        ));
        assert!(certno_valid(
            &certno_with_check("44010620240229123").unwrap()
        ));
        // Bad province (10, 24, 99) but right check character.
        for body in [
            "10010619900101123",
            "24010619900101123",
            "99010619900101123",
        ] {
            assert!(!certno_valid(&certno_with_check(body).unwrap()));
        }
        // Hong Kong / Macao / Taiwan prefixes are accepted for IDs.
        for body in [
            "71000019900101123",
            "81000019900101123",
            "83000019900101123",
        ] {
            assert!(certno_valid(&certno_with_check(body).unwrap()));
        }
        // Wrong lengths.
        assert!(!certno_valid("44010619900101123"));
        assert!(!certno_valid("4401061990010112350"));
        assert!(!certno_valid(""));
        // Non-ASCII: full-width digit, and a multi-byte char making 18 bytes.
        assert!(!certno_valid("４40106199001011235"));
        assert!(!certno_valid("4401061990010112é"));
        // X only allowed at the end.
        assert!(!certno_valid("4401061990010112X5"));
        assert_eq!(certno_pack("440106199001011234"), None);
    }

    #[test]
    fn pack_known_value() {
        // Proves the packing formula digits × 11 + check index on a hand-computed example.
        assert_eq!(
            certno_pack("11010519491231002X"),
            Some(11_010_519_491_231_002 * 11 + 2)
        );
        assert_eq!(
            certno_unpack(11_010_519_491_231_002 * 11 + 2).as_str(),
            "11010519491231002X"
        );
    }

    #[test]
    fn unpack_is_total() {
        // Proves unpack of values certno_pack never produces still yields 18 chars, no panic.
        for v in [0, 1, 10, u64::MAX, u64::MAX - 1, BODY_LIMIT * 11] {
            assert_eq!(certno_unpack(v).len(), 18);
        }
        assert_eq!(certno_unpack(0).as_str(), "000000000000000001");
    }

    #[test]
    fn masking() {
        // Proves the masking rules on IDs, short strings, multi-byte text and names.
        assert_eq!(mask_certno("44010619900101123X"), "4401**********123X");
        assert_eq!(mask_certno("123456789"), "1234*6789");
        assert_eq!(mask_certno("12345678"), "********");
        assert_eq!(mask_certno("abc"), "***");
        assert_eq!(mask_certno(""), "");
        assert_eq!(mask_certno("一二三四五六七八九十"), "一二三四**七八九十");
        assert_eq!(mask_name("张三丰"), "张**");
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("张"), "张");
        assert_eq!(mask_name(""), "");
        assert_eq!(mask_name("Ann"), "A**");
    }

    #[test]
    fn provinces_and_admdvs() {
        // Proves province_valid accepts exactly the 31 mainland codes and admdvs parsing/splitting.
        let valid: Vec<u8> = (0..=u8::MAX).filter(|&c| province_valid(c)).collect();
        assert_eq!(valid, PROVINCES.to_vec());
        for c in [71, 81, 82, 83, 0, 10, 16, 47, 66, 99] {
            assert!(!province_valid(c), "{c}");
        }
        assert_eq!(parse_admdvs("440106"), Some(440_106));
        assert_eq!(parse_admdvs("110000"), Some(110_000));
        assert_eq!(parse_admdvs("810000"), None);
        assert_eq!(parse_admdvs("990106"), None);
        assert_eq!(parse_admdvs("44010"), None);
        assert_eq!(parse_admdvs("4401060"), None);
        assert_eq!(parse_admdvs("44010a"), None);
        assert_eq!(parse_admdvs("+44010"), None);
        assert_eq!(parse_admdvs("４40106"), None);
        assert_eq!(admdvs_province(440_106), 44);
        assert_eq!(admdvs_pool(440_106), 4401);
        assert_eq!(admdvs_province(110_000), 11);
        assert_eq!(admdvs_pool(110_000), 1100);
    }

    /// Strategy for valid certnos: a valid province, any area digits, a real date, any order.
    fn valid_certno() -> impl Strategy<Value = String> {
        (
            prop::sample::select(
                PROVINCES
                    .iter()
                    .copied()
                    .chain([71, 81, 82, 83])
                    .collect::<Vec<u8>>(),
            ),
            0u32..10_000,
            1900u32..=2099,
            1u32..=12,
            1u32..=31,
            0u32..1000,
        )
            .prop_filter_map("real date", |(p, area, y, m, d, order)| {
                let body = format!("{p:02}{area:04}{y:04}{m:02}{d:02}{order:03}");
                let id = certno_with_check(&body)?;
                certno_valid(&id).then_some(id)
            })
    }

    proptest! {
        #[test]
        fn pack_unpack_round_trip(id in valid_certno()) {
            // Proves every valid certno packs and unpacks to the identical string.
            let packed = certno_pack(&id).unwrap();
            let unpacked = certno_unpack(packed);
            prop_assert_eq!(unpacked.as_str(), id.as_str());
        }

        #[test]
        fn single_digit_change_is_caught(id in valid_certno(), pos in 0usize..17, delta in 1u8..10) {
            // Proves changing any one of the first 17 digits breaks the check character.
            let mut b = id.into_bytes();
            b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
            let s = String::from_utf8(b).unwrap();
            prop_assert!(!certno_valid(&s));
        }

        #[test]
        fn never_panics(s in "\\PC{0,20}", v in any::<u64>()) {
            // Proves the public functions are total on arbitrary input.
            let _ = certno_valid(&s);
            let _ = certno_pack(&s);
            let _ = certno_with_check(&s);
            let _ = parse_admdvs(&s);
            let _ = mask_certno(&s);
            let _ = mask_name(&s);
            prop_assert_eq!(certno_unpack(v).len(), 18);
        }
    }
}
