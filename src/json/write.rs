//! JSON written straight to bytes, byte for byte as `serde_json` writes it compactly, for
//! the strings of the patch and the record.
//!
//! serde_json decides byte by byte whether a string needs an escape, which cost more
//! instructions than the rest of writing the patch and the record together. The strings
//! graceful writes (paths, field names, container names) almost never need one, so here
//! a check over 16 bytes at a time (the vector mask the reader uses too) lets them be
//! copied whole; only a string that holds an escape goes byte by byte.

use serde::Serialize;
use serde_json::Value;

use super::stops;

/// How the JSON lands in its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// As JSON.
    Plain,
    /// As the contents of a JSON string, as an annotation holds the record: the JSON's
    /// quotes and escapes are escaped in turn, in the same pass.
    Nested,
}

impl Text {
    /// A string's quote.
    fn quote(self, out: &mut Vec<u8>) {
        match self {
            Text::Plain => out.push(b'"'),
            Text::Nested => out.extend_from_slice(b"\\\""),
        }
    }
}

/// Writes `text` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, text: &str, how: Text) {
    how.quote(out);
    let bytes = text.as_bytes();
    if needs_escape(bytes) {
        write_escaped(out, bytes, how);
    } else {
        out.extend_from_slice(bytes);
    }
    how.quote(out);
}

/// `"key":`
pub fn write_key(out: &mut Vec<u8>, key: &str, how: Text) {
    write_str(out, key, how);
    out.push(b':');
}

/// Writes `value` as serde_json writes a `Value` (map entries in their order).
pub fn write_value(out: &mut Vec<u8>, value: &Value, how: Text) -> serde_json::Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // A number holds nothing to escape, nested or not.
        Value::Number(number) => serde_json::to_writer(&mut *out, number)?,
        Value::String(text) => write_str(out, text, how),
        Value::Array(items) => {
            write_seq(out, b"[]", items, |out, item| write_value(out, item, how))?
        }
        Value::Object(map) => write_seq(out, b"{}", map, |out, (key, item)| {
            write_key(out, key, how);
            write_value(out, item, how)
        })?,
    }
    Ok(())
}

/// Writes `items` between `brackets`, each by `write`, separated by commas.
pub fn write_seq<T>(
    out: &mut Vec<u8>,
    brackets: &[u8; 2],
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T) -> serde_json::Result<()>,
) -> serde_json::Result<()> {
    out.push(brackets[0]);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item)?;
    }
    out.push(brackets[1]);
    Ok(())
}

/// Writes `value` through serde, for what serde names (an enum's variants).
pub fn write_serialized(
    out: &mut Vec<u8>,
    value: &impl Serialize,
    how: Text,
) -> serde_json::Result<()> {
    write_value(out, &serde_json::to_value(value)?, how)
}

/// Whether JSON must escape any of `bytes` in a string: a quote, a backslash or a
/// control character. 16 bytes at a time; the last few are checked as a chunk padded
/// with a byte that needs no escape.
fn needs_escape(bytes: &[u8]) -> bool {
    let (chunks, rest) = bytes.as_chunks::<16>();
    let mut last = [b' '; 16];
    last[..rest.len()].copy_from_slice(rest);
    chunks.iter().any(|chunk| stops(chunk) != 0) || stops(&last) != 0
}

/// `bytes` escaped as serde_json escapes a string's contents, and escaped once more when
/// nested.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8], how: Text) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => {
                out.push(byte);
                continue;
            }
        };
        // The escape's backslash, itself escaped when nested.
        out.extend_from_slice(match how {
            Text::Plain => b"\\",
            Text::Nested => b"\\\\",
        });
        match short {
            b'u' => out.extend_from_slice(&[
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
            b'"' | b'\\' if how == Text::Nested => out.extend_from_slice(&[b'\\', short]),
            _ => out.push(short),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// What serde_json writes, and that again as a string's contents.
    fn by_serde(value: &Value) -> (String, String) {
        let plain = serde_json::to_string(value).unwrap();
        let nested = serde_json::to_string(&plain).unwrap();
        (plain, nested[1..nested.len() - 1].to_owned())
    }

    fn written(value: &Value) -> (String, String) {
        let [plain, nested] = [Text::Plain, Text::Nested].map(|how| {
            let mut out = Vec::new();
            write_value(&mut out, value, how).unwrap();
            String::from_utf8(out).unwrap()
        });
        (plain, nested)
    }

    #[test]
    fn values_are_written_as_serde_writes_them() {
        let hostile = "q\"b\\s/n\nr\rt\tb\u{8}f\u{c}\u{0}\u{1f}\u{7f}é✓𝄞 and sixteen more bytes\"";
        let value = json!({
            "policy": "web", "": {}, "list": [], hostile: [hostile, 1, -2, 2.5, 1e300, null, true, false],
            "nested": {"z": {"a": [{"b\"": "c\\"}]}, "a": 0}
        });
        assert_eq!(written(&value), by_serde(&value));
    }

    #[test]
    fn enum_names_come_from_serde() {
        let mut out = b"x".to_vec();
        write_serialized(&mut out, &crate::api::Mode::Audit, Text::Nested).unwrap();
        assert_eq!(out, br#"x\"Audit\""#);
    }

    proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_escapes_it(text in any::<String>()) {
            let value = Value::String(text);
            prop_assert_eq!(written(&value), by_serde(&value));
        }

        #[test]
        fn any_ascii_is_escaped_as_serde_escapes_it(bytes in proptest::collection::vec(0u8..0x80, 0..40)) {
            let value = Value::String(String::from_utf8(bytes).unwrap());
            prop_assert_eq!(written(&value), by_serde(&value));
        }
    }
}
