//! `application/x-www-form-urlencoded` bodies and query strings.

use axum::body::Body;

/// Largest form body the console reads (its forms carry a token and a few short fields).
pub const FORM_BYTES_MAX: usize = 16 * 1024;

pub type Pairs = Vec<(String, String)>;

pub fn parse(text: &str) -> Pairs {
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
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

/// `+` is a space, `%XX` a byte; a malformed escape stays as it is; non-UTF-8 becomes U+FFFD.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn decoding_and_encoding() {
        // Proves form values decode as browsers encode them, and that encode round-trips.
        assert_eq!(super::decode("a+b%3Ac"), "a b:c");
        assert_eq!(super::decode("50%"), "50%");
        assert_eq!(super::decode("%4"), "%4");
        assert_eq!(super::decode("%41"), "A");
        assert_eq!(super::decode("%FF"), "\u{FFFD}");
        let s = "<script>\"&'/ 张";
        assert_eq!(super::decode(&super::encode(s)), s);
    }
}
