//! A pod's uid as the reconciler keeps it. Pure.
//!
//! The apiserver gives every object a UUID: 36 characters of text, a 48-byte allocation
//! behind a 24-byte `String` for each copy, and the reconciler keys several maps of
//! every governed pod by it. Its 16 bytes are kept inline instead. Anything else (a uid
//! that is not a UUID in the apiserver's lowercase form) is kept as it came, so that
//! every uid reads back exactly as it was written.

use std::fmt;

/// A pod's uid: its 16 bytes when it is a lowercase UUID, its text otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uid {
    Uuid([u8; 16]),
    Other(Box<str>),
}

/// Where the dashes of a UUID's text are.
const DASHES: [usize; 4] = [8, 13, 18, 23];

impl Uid {
    pub fn new(text: &str) -> Self {
        uuid(text).map_or_else(|| Self::Other(text.into()), Self::Uuid)
    }
}

/// The 16 bytes of `text`, when it is a UUID with lowercase hex digits (so that the
/// bytes print back as the same text).
fn uuid(text: &str) -> Option<[u8; 16]> {
    let text = text.as_bytes();
    if text.len() != 36 || DASHES.iter().any(|&at| text[at] != b'-') {
        return None;
    }
    let mut digits = text
        .iter()
        .enumerate()
        .filter(|(at, _)| !DASHES.contains(at))
        .map(|(_, &digit)| match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        });
    let mut bytes = [0; 16];
    for byte in &mut bytes {
        *byte = (digits.next()?? << 4) | digits.next()??;
    }
    Some(bytes)
}

impl From<&str> for Uid {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(text) => f.write_str(text),
            Self::Uuid(bytes) => {
                for (i, byte) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_kept_in_16_bytes_and_reads_back_as_written() {
        let text = "0f3c9a2e-7b41-4d5e-9a60-1c2b3d4e5f60";
        let uid = Uid::new(text);
        assert_eq!(
            uid,
            Uid::Uuid([
                0x0f, 0x3c, 0x9a, 0x2e, 0x7b, 0x41, 0x4d, 0x5e, 0x9a, 0x60, 0x1c, 0x2b, 0x3d, 0x4e,
                0x5f, 0x60
            ])
        );
        assert_eq!(uid.to_string(), text);
        assert!(size_of::<Uid>() <= 24, "{} bytes", size_of::<Uid>());
    }

    #[test]
    fn anything_else_is_kept_as_text() {
        for text in [
            "",
            "u1",
            // Uppercase digits would print back in lowercase.
            "0F3C9A2E-7B41-4D5E-9A60-1C2B3D4E5F60",
            // A dash out of place, a digit that is not hex, one digit short or too many.
            "0f3c9a2e7-b41-4d5e-9a60-1c2b3d4e5f60",
            "0f3c9a2e-7b41-4d5e-9a60-1c2b3d4e5f6g",
            "0f3c9a2e-7b41-4d5e-9a60-1c2b3d4e5f6",
            "0f3c9a2e-7b41-4d5e-9a60-1c2b3d4e5f600",
            "0f3c9a2e-7b41-4d5e-9a60-1c2b3d4e5fé",
        ] {
            let uid = Uid::new(text);
            assert_eq!(uid, Uid::Other(text.into()), "{text:?}");
            assert_eq!(uid.to_string(), text);
        }
        assert_ne!(
            Uid::new("0f3c9a2e-7b41-4d5e-9a60-1c2b3d4e5f60"),
            Uid::new("0f3c9a2e-7b41-4d5e-9a60-1c2b3d4e5f61")
        );
    }
}
