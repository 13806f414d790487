//! `application/x-www-form-urlencoded` bodies and query strings.

use axum::body::Body;

/// Largest form body the console reads (its forms carry a token and a few short fields).
pub const FORM_BYTES_MAX: usize = 16 * 1024;

pub type Pairs = Vec<(String, String)>;

/// Decoded as browsers encode (`+` a space, `%XX` a byte; a malformed escape kept as it is,
/// bytes that are not UTF-8 as U+FFFD), by the `form_urlencoded` crate.
pub fn parse(text: &str) -> Pairs {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

pub async fn read(body: Body) -> Option<Pairs> {
    let bytes = axum::body::to_bytes(body, FORM_BYTES_MAX).await.ok()?;
    Some(parse(std::str::from_utf8(&bytes).ok()?))
}

pub fn get<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decoding_and_encoding() {
        // Proves form values decode as browsers encode them, and that encode round-trips.
        let one = |text: &str| super::parse(&format!("k={text}"))[0].1.clone();
        assert_eq!(one("a+b%3Ac"), "a b:c");
        assert_eq!(one("50%"), "50%");
        assert_eq!(one("%4"), "%4");
        assert_eq!(one("%41"), "A");
        assert_eq!(one("%FF"), "\u{FFFD}");
        let s = "<script>\"&'/ 张=";
        assert_eq!(one(&super::encode(s)), s);
        assert_eq!(
            super::parse("a=1&&b&c=%26"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "".into()),
                ("c".into(), "&".into())
            ]
        );
    }
}
