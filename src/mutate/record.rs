//! The record graceful leaves on a mutated pod: which policy, under which drain
//! settings, and every field it changed with its value before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Role;
use crate::api::{Budget, Mode};
use crate::json::write::{Text, write_key, write_seq, write_serialized, write_str, write_value};

/// Read through serde; written by [`ChangeRecord::write_json`], which a test compares with
/// serde's output field by field: a field added here must be added there.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    pub policy: String,
    pub mode: Mode,
    /// The drain the pod was admitted under; the reconciler measures shutdowns against
    /// these, not against a policy that may have changed since.
    #[serde(flatten)]
    pub budget: Budget,
    /// The regular containers the policy leaves alone, and why. The reconciler reads
    /// them so that it classifies containers as the webhook did: their shutdowns are
    /// not the app's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub left_alone: BTreeMap<String, Role>,
    /// Why the drain differs from the policy's own values (`tuning: Auto`), a line per
    /// value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tuning: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}

/// One changed field, named as in `kubectl explain` with containers by name.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: String,
    /// The value before; absent when the field was not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    pub to: Value,
}

impl ChangeRecord {
    /// Writes the record as serde writes it, without serde's byte-by-byte escaping (see
    /// [`crate::json::write`]): an admission writes it into every patch.
    pub fn write_json(&self, out: &mut Vec<u8>, how: Text) -> serde_json::Result<()> {
        out.push(b'{');
        write_key(out, "policy", how);
        write_str(out, &self.policy, how);
        out.push(b',');
        write_key(out, "mode", how);
        write_serialized(out, &self.mode, how)?;
        let Budget {
            pre_stop_sleep_seconds,
            shutdown_budget_seconds,
        } = self.budget;
        for (key, seconds) in [
            ("preStopSleepSeconds", pre_stop_sleep_seconds),
            ("shutdownBudgetSeconds", shutdown_budget_seconds),
        ] {
            out.push(b',');
            write_key(out, key, how);
            // A number holds nothing to escape, nested or not.
            serde_json::to_writer(&mut *out, &seconds)?;
        }
        if !self.left_alone.is_empty() {
            out.push(b',');
            write_key(out, "leftAlone", how);
            write_seq(out, b"{}", &self.left_alone, |out, (container, role)| {
                write_key(out, container, how);
                write_serialized(out, role, how)
            })?;
        }
        if !self.tuning.is_empty() {
            out.push(b',');
            write_key(out, "tuning", how);
            write_seq(out, b"[]", &self.tuning, |out, line| {
                write_str(out, line, how);
                Ok(())
            })?;
        }
        if !self.changes.is_empty() {
            out.push(b',');
            write_key(out, "changes", how);
            write_seq(out, b"[]", &self.changes, |out, change| {
                out.push(b'{');
                write_key(out, "field", how);
                write_str(out, &change.field, how);
                if let Some(from) = &change.from {
                    out.push(b',');
                    write_key(out, "from", how);
                    write_value(out, from, how)?;
                }
                out.push(b',');
                write_key(out, "to", how);
                write_value(out, &change.to, how)?;
                out.push(b'}');
                Ok(())
            })?;
        }
        out.push(b'}');
        Ok(())
    }

    /// Folds an earlier record of the same policy into this one, so that a second
    /// admission pass (webhook reinvocation after another webhook added a container)
    /// keeps what the first pass changed and the values from before it.
    pub fn merge_earlier(&mut self, earlier: ChangeRecord) {
        if earlier.policy != self.policy {
            return;
        }
        let mut merged: Vec<FieldChange> = Vec::with_capacity(earlier.changes.len());
        for old in earlier.changes {
            match self.changes.iter_mut().find(|new| new.field == old.field) {
                Some(new) => new.from = old.from,
                None => merged.push(old),
            }
        }
        merged.append(&mut self.changes);
        self.changes = merged;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn written(record: &ChangeRecord, how: Text) -> String {
        let mut out = Vec::new();
        record.write_json(&mut out, how).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_record_is_written_as_serde_writes_it() {
        let hostile = "a\"b\\c\nd\u{1}é✓/ and enough bytes for two chunks";
        let full = ChangeRecord {
            policy: format!("web{hostile}"),
            mode: Mode::Audit,
            budget: Budget {
                pre_stop_sleep_seconds: 7,
                shutdown_budget_seconds: -1,
            },
            left_alone: [
                ("envoy".to_owned(), Role::Sidecar),
                (hostile.to_owned(), Role::NotServing),
            ]
            .into(),
            tuning: vec!["preStopSleepSeconds 7: measured".into(), hostile.into()],
            changes: vec![
                FieldChange {
                    field: format!("spec.containers[{hostile}].lifecycle.preStop"),
                    from: Some(json!({"exec": {"command": ["sh", "-c", hostile]}})),
                    to: json!({"sleep": {"seconds": 7}}),
                },
                FieldChange {
                    field: "spec.terminationGracePeriodSeconds".into(),
                    from: None,
                    to: json!(2.5),
                },
            ],
        };
        let bare = ChangeRecord {
            left_alone: BTreeMap::new(),
            tuning: Vec::new(),
            changes: Vec::new(),
            ..full.clone()
        };
        for record in [full, bare] {
            let plain = serde_json::to_string(&record).unwrap();
            assert_eq!(written(&record, Text::Plain), plain);
            let nested = serde_json::to_string(&plain).unwrap();
            assert_eq!(written(&record, Text::Nested), nested[1..nested.len() - 1]);
        }
    }
}
