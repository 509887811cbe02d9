//! The patch the engine writes: an RFC 6902 JSON Patch of `add` operations, written
//! straight to its JSON as the engine decides, byte for byte as serde writes a
//! `json_patch::Patch` (tests compare both). The webhook sends these bytes as they are;
//! `graceful mutate` reads them back to apply them to manifests.
//!
//! Building the operations as values and serializing them afterwards cost about as
//! much as deciding them, mostly for the record: it was written to a string, copied into
//! a value, and escaped again inside the patch. Here it is written once, escaped as it
//! goes ([`Patch::add_with`], [`json_text`]).

use std::fmt;

use json_patch::jsonptr::Pointer;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::ChangeRecord;
use crate::json::write::{Text, write_key, write_str};

/// An RFC 6902 JSON Patch as its JSON text.
#[derive(Clone, Default)]
pub struct Patch {
    /// `[op,op,...]`; empty (not `[]`) while it has no operation.
    json: Vec<u8>,
    /// The path being written, kept for its allocation.
    path: String,
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }

    /// The patch's JSON, `[]` when it has no operation.
    pub fn as_json(&self) -> &[u8] {
        if self.json.is_empty() {
            b"[]"
        } else {
            &self.json
        }
    }

    /// The operations, to apply them to a document.
    pub fn operations(&self) -> serde_json::Result<json_patch::Patch> {
        serde_json::from_slice(self.as_json())
    }

    /// Appends `{"op":"add","path":PATH,"value":VALUE}`, PATH being `tokens` under
    /// `root`. On an error the patch is left as it was.
    pub fn add(
        &mut self,
        root: &Pointer,
        tokens: &[&str],
        value: &impl Serialize,
    ) -> serde_json::Result<()> {
        self.add_with(root, tokens, |out| serde_json::to_writer(out, value))
    }

    /// [`Patch::add`] with a value that `write` writes as JSON.
    pub fn add_with(
        &mut self,
        root: &Pointer,
        tokens: &[&str],
        write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
    ) -> serde_json::Result<()> {
        // The pointer, encoded by hand: `PointerBuf::push_back` took a tenth of the
        // mutation's instructions.
        self.path.clear();
        self.path.push_str(root.as_str());
        for token in tokens {
            self.path.push('/');
            // Bytes, not chars: `str::contains` with a set of chars decodes each one.
            if token.bytes().any(|b| matches!(b, b'~' | b'/')) {
                for c in token.chars() {
                    match c {
                        '~' => self.path.push_str("~0"),
                        '/' => self.path.push_str("~1"),
                        c => self.path.push(c),
                    }
                }
            } else {
                self.path.push_str(token);
            }
        }
        let before = self.json.len();
        let written = self.write_add(write);
        if written.is_err() {
            self.json.truncate(before);
            // The list's `]` had become the `,` before the failed operation.
            if let Some(last) = self.json.last_mut() {
                *last = b']';
            }
        }
        written
    }

    fn write_add(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
    ) -> serde_json::Result<()> {
        match self.json.pop() {
            Some(_) => self.json.push(b','),
            // Sized for a typical patch (about 2 KB for a three-container pod).
            None => {
                self.json.reserve(PATCH_CAPACITY);
                self.json.push(b'[');
            }
        }
        self.json.extend_from_slice(br#"{"op":"add","path":"#);
        write_str(&mut self.json, &self.path, Text::Plain);
        self.json.extend_from_slice(br#","value":"#);
        write(&mut self.json)?;
        self.json.extend_from_slice(b"}]");
        Ok(())
    }
}

const PATCH_CAPACITY: usize = 4096;

impl PartialEq for Patch {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json
    }
}

impl Eq for Patch {}

impl fmt::Debug for Patch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_json()))
    }
}

/// A map of one entry, as JSON writes `{"key":value}`.
pub struct Entry<'a, V>(pub &'a str, pub V);

impl<V: Serialize> Serialize for Entry<'_, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.0, &self.1)?;
        map.end()
    }
}

/// Writes `{"key":` VALUE `}`, VALUE written by `value`.
pub fn write_entry(
    out: &mut Vec<u8>,
    key: &str,
    value: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
) -> serde_json::Result<()> {
    out.push(b'{');
    write_key(out, key, Text::Plain);
    value(out)?;
    out.push(b'}');
    Ok(())
}

/// Writes the record's JSON as a JSON string, as an annotation holds it: the same bytes
/// as serializing it to a string and that string again, in one pass.
pub fn json_text(out: &mut Vec<u8>, record: &ChangeRecord) -> serde_json::Result<()> {
    out.push(b'"');
    record.write_json(out, Text::Nested)?;
    out.push(b'"');
    Ok(())
}

#[cfg(test)]
mod tests {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation};
    use serde_json::{Value, json};

    use super::*;

    /// The way the patch used to be made: values, serialized by serde afterwards.
    fn through_values(root: &str, ops: &[(&[&str], Value)]) -> Vec<u8> {
        let ops = ops
            .iter()
            .map(|(tokens, value)| {
                let mut path = PointerBuf::parse(root).unwrap();
                tokens.iter().for_each(|t| path.push_back(*t));
                PatchOperation::Add(AddOperation {
                    path,
                    value: value.clone(),
                })
            })
            .collect();
        serde_json::to_vec(&json_patch::Patch(ops)).unwrap()
    }

    #[test]
    fn operations_are_written_as_serde_writes_them() {
        let record = ChangeRecord {
            policy: "w\"eb".into(),
            mode: crate::api::Mode::Enforce,
            budget: crate::api::Budget::default(),
            left_alone: Default::default(),
            tuning: Vec::new(),
            changes: vec![crate::mutate::FieldChange {
                field: "a\\b".into(),
                from: Some(json!({"x": [1, 2.5, null, true, -3, 1e300], "": {}})),
                to: json!("line\nbreak\ttab\u{1}\u{7f}é✓\u{8}\u{c}\r/"),
            }],
        };
        let text = serde_json::to_string(&record).unwrap();
        let key = "graceful.dev/a~b\"c";
        let text_of = |out: &mut Vec<u8>| json_text(out, &record);
        for root in ["", "/spec/template", "/a~0b/c~1d"] {
            let mut patch = Patch::default();
            let at = PointerBuf::parse(root).unwrap();
            let hook = json!({"sleep": {"seconds": 5}});
            let lifecycle = ["spec", "containers", "0", "lifecycle"];
            patch
                .add(&at, &lifecycle, &Entry("preStop", &hook))
                .unwrap();
            patch
                .add_with(&at, &["metadata", "annotations", key], text_of)
                .unwrap();
            patch
                .add_with(&at, &["metadata", "annotations"], |out| {
                    write_entry(out, key, text_of)
                })
                .unwrap();
            patch
                .add(&at, &["spec", "terminationGracePeriodSeconds"], &35)
                .unwrap();
            let old = through_values(
                root,
                &[
                    (&lifecycle, json!({"preStop": hook})),
                    (&["metadata", "annotations", key], json!(text)),
                    (&["metadata", "annotations"], json!({key: text})),
                    (&["spec", "terminationGracePeriodSeconds"], json!(35)),
                ],
            );
            assert_eq!(
                String::from_utf8(patch.as_json().to_vec()).unwrap(),
                String::from_utf8(old).unwrap()
            );
            assert_eq!(patch.operations().unwrap().len(), 4);
        }
    }

    #[test]
    fn an_empty_patch_is_an_empty_list() {
        let patch = Patch::default();
        assert!(patch.is_empty());
        assert_eq!(patch.as_json(), b"[]");
        assert!(patch.operations().unwrap().is_empty());
    }

    #[test]
    fn a_value_that_cannot_be_written_leaves_the_patch_as_it_was() {
        let mut patch = Patch::default();
        patch.add(Pointer::root(), &["a"], &1).unwrap();
        let before = patch.clone();
        // JSON has no map keys but strings.
        let bad: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(patch.add(Pointer::root(), &["b"], &bad).is_err());
        assert_eq!(patch, before);
        assert!(Patch::default().add(Pointer::root(), &["b"], &bad).is_err());
    }
}
