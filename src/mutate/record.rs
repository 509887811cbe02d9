//! The record graceful leaves on a mutated pod: which policy, under which drain
//! settings, and every field it changed with its value before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Role;
use crate::api::{Budget, Mode};

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
