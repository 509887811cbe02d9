//! A GracefulPolicy checked as the apiserver checks it, for `graceful mutate`: offline,
//! the tool and the cluster must agree on what a valid policy is. Pure.
//!
//! The checks are read from the CRD's own OpenAPI schema ([`GracefulPolicy::crd`]), the
//! same one the apiserver enforces: types, ranges, enums, `set` lists, defaults. Its CEL
//! rules (`x-kubernetes-validations`) are each matched by a check in [`RULES`], by the
//! rule's text; a test fails for a rule in the schema that has none, so a new rule cannot
//! be forgotten here. Messages are worded as the apiserver words them.

use std::sync::LazyLock;

use kube::CustomResourceExt;
use serde_json::Value;

use super::GracefulPolicy;

/// The first thing the apiserver would reject in a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// As the apiserver names it: `spec.drain.preStopSleepSeconds`, `spec.containers[1]`.
    pub field: String,
    pub message: String,
}

/// A CEL rule of the schema and the same check in Rust, on the object the rule is on
/// (with defaults filled in), and the field to name (`None`: the object's own path).
struct Rule {
    rule: &'static str,
    field: Option<&'static str>,
    holds: fn(&Value) -> bool,
}

const RULES: &[Rule] = &[
    Rule {
        rule: "size(self.metadata.name) <= 63",
        field: Some("metadata.name"),
        holds: |policy| {
            policy["metadata"]["name"]
                .as_str()
                .is_none_or(|name| name.chars().count() <= 63)
        },
    },
    Rule {
        rule: "!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? has(e.values) && size(e.values) > 0 : e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0))",
        field: None,
        holds: |selector| {
            let expressions = selector["matchExpressions"].as_array();
            expressions.into_iter().flatten().all(|e| {
                let values = e["values"].as_array().map_or(0, Vec::len);
                match e["operator"].as_str() {
                    Some("In" | "NotIn") => values > 0,
                    Some("Exists" | "DoesNotExist") => values == 0,
                    _ => false,
                }
            })
        },
    },
    Rule {
        rule: "self.shutdownBudgetSeconds + self.safetyMarginSeconds >= 1",
        field: None,
        holds: |drain| {
            let seconds = |key: &str| drain[key].as_i64().unwrap_or(0);
            seconds("shutdownBudgetSeconds").saturating_add(seconds("safetyMarginSeconds")) >= 1
        },
    },
    Rule {
        rule: "self.min <= self.max",
        field: None,
        holds: |bounds| bounds["min"].as_i64() <= bounds["max"].as_i64(),
    },
    Rule {
        rule: "self.all(v, self.exists_one(w, w.name == v.name))",
        field: None,
        holds: |variables| {
            let names: Vec<&Value> = variables
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| &v["name"])
                .collect();
            names
                .iter()
                .all(|name| names.iter().filter(|other| *other == name).count() == 1)
        },
    },
    Rule {
        rule: "self.name.matches('^[A-Za-z_][A-Za-z0-9_.-]*$')",
        field: None,
        holds: |variable| {
            let name = variable["name"].as_str().unwrap_or_default();
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        },
    },
];

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let crd = GracefulPolicy::crd();
    crd.spec
        .versions
        .first()
        .and_then(|version| version.schema.as_ref())
        .and_then(|schema| serde_json::to_value(&schema.open_api_v3_schema).ok())
        .unwrap_or(Value::Null)
});

/// Checks `policy` (the object as read, before defaults) against the CRD's schema.
pub fn validate(policy: &Value) -> Result<(), Invalid> {
    let mut policy = policy.clone();
    check(&mut policy, &SCHEMA, "")
}

fn check(value: &mut Value, schema: &Value, path: &str) -> Result<(), Invalid> {
    let invalid = |message: String| Invalid {
        field: if path.is_empty() { "<nil>" } else { path }.to_owned(),
        message,
    };
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    if let Some(kind) = schema["type"].as_str()
        && !has_type(value, kind)
    {
        return Err(invalid(format!(
            "Invalid value: \"{}\": {path} in body must be of type {kind}: \"{}\"",
            type_name(value),
            type_name(value)
        )));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(invalid(format!(
            "Unsupported value: {value}: supported values: {}",
            names.join(", ")
        )));
    }
    if let Some(number) = value.as_f64() {
        if let Some(minimum) = schema["minimum"].as_f64()
            && number < minimum
        {
            return Err(invalid(format!(
                "Invalid value: {value}: {path} in body should be greater than or equal to {minimum}"
            )));
        }
        if let Some(maximum) = schema["maximum"].as_f64()
            && number > maximum
        {
            return Err(invalid(format!(
                "Invalid value: {value}: {path} in body should be less than or equal to {maximum}"
            )));
        }
    }
    let size = match value {
        Value::String(text) => Some((text.chars().count(), "Length", "characters")),
        Value::Array(items) => Some((items.len(), "Items", "items")),
        _ => None,
    };
    if let Some((size, bound, unit)) = size {
        if let Some(max) = schema[format!("max{bound}")].as_u64()
            && size as u64 > max
        {
            return Err(invalid(format!(
                "Too long: may not be more than {max} {unit}"
            )));
        }
        if let Some(min) = schema[format!("min{bound}")].as_u64()
            && (size as u64) < min
        {
            return Err(invalid(format!(
                "Invalid value: \"\": {path} in body should have at least {min} {unit}"
            )));
        }
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                for (key, property) in properties {
                    if !map.contains_key(key)
                        && let Some(default) = property.get("default")
                    {
                        map.insert(key.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(key) {
                        check(child, property, &join(path, key))?;
                    }
                }
            }
        }
        Value::Array(items) => {
            if schema["x-kubernetes-list-type"] == "set" {
                for (index, item) in items.iter().enumerate() {
                    if items[..index].contains(item) {
                        return Err(Invalid {
                            field: format!("{path}[{index}]"),
                            message: format!("Duplicate value: {item}"),
                        });
                    }
                }
            }
            for (index, item) in items.iter_mut().enumerate() {
                check(item, &schema["items"], &format!("{path}[{index}]"))?;
            }
        }
        _ => {}
    }
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap_or_default();
        let message = rule["message"].as_str().unwrap_or(text);
        let known = RULES.iter().find(|known| known.rule == text);
        // A rule without a check here is caught by the test below, never at run time.
        if let Some(known) = known
            && !(known.holds)(value)
        {
            return Err(Invalid {
                field: known.field.map_or_else(|| path.to_owned(), str::to_owned),
                message: format!("Invalid value: \"{}\": {message}", type_name(value)),
            });
        }
    }
    Ok(())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules_in(schema: &Value, found: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                for rule in map
                    .get("x-kubernetes-validations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    found.push(rule["rule"].as_str().unwrap().to_owned());
                }
                map.values().for_each(|child| rules_in(child, found));
            }
            Value::Array(items) => items.iter().for_each(|child| rules_in(child, found)),
            _ => {}
        }
    }

    #[test]
    fn every_cel_rule_of_the_crd_has_its_check() {
        let mut found = Vec::new();
        rules_in(&SCHEMA, &mut found);
        // One rule may sit on several objects of the same type (Auto's two bounds).
        found.sort();
        found.dedup();
        assert_eq!(found.len(), RULES.len(), "{found:?}");
        for rule in &found {
            assert!(
                RULES.iter().any(|known| known.rule == rule),
                "no offline check for the CRD's rule {rule:?}"
            );
        }
    }

    fn policy(spec: Value) -> Value {
        json!({"apiVersion": "graceful.dev/v1alpha1", "kind": "GracefulPolicy",
               "metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn a_valid_policy_passes_and_defaults_count_in_rules() {
        assert_eq!(validate(&policy(json!({}))), Ok(()));
        assert_eq!(
            validate(&policy(json!({"drain": {"shutdownBudgetSeconds": 0}}))),
            Ok(()),
            "the default margin of 5 keeps the sum at least 1"
        );
        let full = json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]},
                          "readiness": {"periodSeconds": 2}, "containers": ["a", "b"], "mode": "Audit"});
        assert_eq!(validate(&policy(full)), Ok(()));
        let env = json!({"env": {"budget": [{"name": "SPRING_LIFECYCLE_TIMEOUT_PER_SHUTDOWN_PHASE", "format": "Duration"}]},
                         "sidecars": {"shutdownSeconds": 10, "meshDrain": "Align"},
                         "drain": {"stopSignal": "SIGQUIT"}, "targets": "Serving", "jobs": "Include"});
        assert_eq!(validate(&policy(env)), Ok(()));
    }

    #[test]
    fn budget_variables_need_unique_names_a_shell_can_read() {
        let twice = json!({"env": {"budget": [{"name": "A"}, {"name": "A", "format": "Seconds"}]}});
        let error = validate(&policy(twice)).unwrap_err();
        assert_eq!(error.field, "spec.env.budget");
        assert!(error.message.contains("unique"), "{error}");
        let bad = json!({"env": {"budget": [{"name": "1X"}]}});
        let error = validate(&policy(bad)).unwrap_err();
        assert_eq!(error.field, "spec.env.budget[0]");
        let empty = json!({"env": {"budget": [{"name": ""}]}});
        let error = validate(&policy(empty)).unwrap_err();
        assert_eq!(error.field, "spec.env.budget[0].name");
        let signal = json!({"drain": {"stopSignal": "SIGKILL"}});
        assert!(
            validate(&policy(signal))
                .unwrap_err()
                .message
                .contains("Unsupported value")
        );
    }

    #[test]
    fn ranges_types_and_the_name_are_named_as_the_apiserver_names_them() {
        let error = validate(&policy(json!({"drain": {"safetyMarginSeconds": 4000}}))).unwrap_err();
        assert_eq!(error.field, "spec.drain.safetyMarginSeconds");
        assert!(
            error.message.contains("less than or equal to 3600"),
            "{error}"
        );
        let error = validate(&policy(json!({"drain": {"preStopSleepSeconds": "5"}}))).unwrap_err();
        assert!(error.message.contains("must be of type integer"), "{error}");
        let mut long = policy(json!({}));
        long["metadata"]["name"] = json!("n".repeat(64));
        assert_eq!(validate(&long).unwrap_err().field, "metadata.name");
    }
}
