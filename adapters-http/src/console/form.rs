//! `application/x-www-form-urlencoded` bodies and query strings, and the links the pages build.

use std::collections::BTreeMap;

/// A decoded form body, in field order (repeated fields kept).
#[derive(Debug, Clone, Default)]
pub(crate) struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// Decodes a form body; malformed escapes are kept as they are rather than refused, since a
    /// browser never sends them and the fields are validated by their consumers anyway.
    pub(crate) fn parse(body: &[u8]) -> Self {
        let pairs = body
            .split(|b| *b == b'&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let mut it = pair.splitn(2, |b| *b == b'=');
                let k = decode(it.next().unwrap_or_default());
                let v = decode(it.next().unwrap_or_default());
                (k, v)
            })
            .collect();
        Self(pairs)
    }

    /// The first value of a field.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one component (`+` is a space).
pub(crate) fn decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex_val(input[i + 1]), hex_val(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
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

/// Percent-encodes a query component.
pub(crate) fn encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&...` with the empty parameters left out.
pub(crate) fn link(path: &str, params: &[(&str, String)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

/// Query parameters of a page, non-empty ones only.
pub(crate) type Params = BTreeMap<String, String>;

/// The value of a parameter, empty when absent.
pub(crate) fn param(p: &Params, name: &str) -> String {
    p.get(name).map(|s| s.trim().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_escapes_and_plus() {
        let f = FormData::parse(b"a=1+2&b=%3Cscript%3E&c=%zz&d");
        assert_eq!(f.get("a"), Some("1 2"));
        assert_eq!(f.get("b"), Some("<script>"));
        assert_eq!(f.get("c"), Some("%zz"));
        assert_eq!(f.get("d"), Some(""));
        assert_eq!(decode(b"%4"), "%4");
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(
            link("/x", &[("q", "a&b".into()), ("p", String::new())]),
            "/x?q=a%26b"
        );
    }
}
