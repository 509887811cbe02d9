//! Reading Kubernetes manifests offline: the documents of a YAML or JSON file as kubectl
//! reads them ([`yaml`]), the pod template inside each workload, and the GracefulPolicies
//! among them. Pure: text in, values out; errors name the document and the field.

use json_patch::jsonptr::PointerBuf;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{GracefulPolicy, POLICY_KEY, validate};
use crate::kinds::Templated;
use crate::mutate::PodView;
use crate::resolve::{Owner, Source};

pub mod yaml;

use yaml::Document;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("line {line}: not valid YAML or JSON: {message}")]
    Syntax { line: usize, message: String },
    #[error("document {document} ({object}): {field}: {message}")]
    Field {
        document: usize,
        object: String,
        field: String,
        message: String,
    },
}

/// A file's documents, as kubectl reads them.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Read (and so written) as JSON.
    pub json: bool,
    pub documents: Vec<Document>,
}

pub fn read(text: &str) -> Result<Stream, ManifestError> {
    if yaml::is_json(text) {
        let documents = yaml::json_documents(text).map_err(|error| ManifestError::Syntax {
            line: error.line(),
            message: error.to_string(),
        })?;
        return Ok(Stream {
            json: true,
            documents,
        });
    }
    let documents = yaml::documents(text).map_err(|error| ManifestError::Syntax {
        line: error.line,
        message: error.message,
    })?;
    Ok(Stream {
        json: false,
        documents,
    })
}

/// An object of a stream: a whole document, or an item of a `kind: List` document.
#[derive(Debug, Clone)]
pub struct Object<'a> {
    /// The document's number, from 1.
    pub document: usize,
    /// Where the object sits in its document: `/items/2` for a List's third item.
    pub at: PointerBuf,
    pub value: &'a Value,
}

/// The objects of a stream, in order; documents without a node have none.
pub fn objects(stream: &Stream) -> Vec<Object<'_>> {
    let mut out = Vec::new();
    for (index, document) in stream.documents.iter().enumerate() {
        let Some(value) = &document.value else {
            continue;
        };
        let number = index + 1;
        let items = (value.get("kind").and_then(Value::as_str) == Some("List"))
            .then(|| value.get("items").and_then(Value::as_array))
            .flatten();
        match items {
            Some(items) => out.extend(items.iter().enumerate().map(|(item, value)| Object {
                document: number,
                at: PointerBuf::from_tokens(["items".to_owned(), item.to_string()]),
                value,
            })),
            None => out.push(Object {
                document: number,
                at: PointerBuf::root(),
                value,
            }),
        }
    }
    out
}

/// A workload and the pod template it creates pods from.
#[derive(Debug, Clone)]
pub struct Workload {
    pub source: Source,
    pub namespace: String,
    /// Where the pod (template) sits in the document.
    pub root: PointerBuf,
    pub pod: PodView,
    /// The objects between the pod and the workload, nearest first, with their
    /// `graceful.dev/policy` annotations.
    pub owners: Vec<Owner>,
}

/// The namespace the apiserver would put an object without one in.
const DEFAULT_NAMESPACE: &str = "default";

/// The workload in a document, or `None` for a document of a kind that has no pods.
pub fn workload(document: usize, value: &Value) -> Result<Option<Workload>, ManifestError> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(templated) = Templated::of(api_version, kind) else {
        return Ok(None);
    };
    let source = Source {
        kind: kind.to_owned(),
        name: str_at(value, &["metadata", "name"])
            .unwrap_or("<unnamed>")
            .to_owned(),
    };
    let root_tokens = templated.template();
    let root = PointerBuf::from_tokens(root_tokens.iter().copied());
    let at = root_tokens
        .iter()
        .try_fold(value, |v, token| v.get(token))
        .ok_or_else(|| field_error(document, &source, &root_tokens.join("."), "missing"))?;
    let pod = typed::<PodView>(document, &source, root_tokens, at)?.with_apiserver_defaults();

    let mut owners = Vec::new();
    if let Templated::Owner(owner) = templated {
        if let Some((through, metadata)) = owner.through() {
            // The object in between does not exist yet; its name is made by its controller.
            owners.push(Owner {
                source: Source {
                    kind: through.name().to_owned(),
                    name: format!("{}-<generated>", source.name),
                },
                policy: annotation(value, metadata),
            });
        }
        owners.push(Owner {
            source: source.clone(),
            policy: annotation(value, &["metadata"]),
        });
    }
    Ok(Some(Workload {
        namespace: namespace_of(value),
        source,
        root,
        pod,
        owners,
    }))
}

/// The namespace of an object, as the apiserver would put it.
pub fn namespace_of(value: &Value) -> String {
    str_at(value, &["metadata", "namespace"])
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_owned()
}

/// The GracefulPolicy in a document, or `None` for a document of another kind.
pub fn policy(document: usize, value: &Value) -> Result<Option<GracefulPolicy>, ManifestError> {
    if value.get("kind").and_then(Value::as_str) != Some("GracefulPolicy") {
        return Ok(None);
    }
    let source = Source {
        kind: "GracefulPolicy".to_owned(),
        name: str_at(value, &["metadata", "name"])
            .unwrap_or("<unnamed>")
            .to_owned(),
    };
    // As the apiserver would: the schema and its rules first, then the typed read.
    validate(value)
        .map_err(|invalid| field_error(document, &source, &invalid.field, &invalid.message))?;
    let mut policy: GracefulPolicy = typed(document, &source, &[], value)?;
    policy
        .metadata
        .namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
    Ok(Some(policy))
}

fn typed<T: DeserializeOwned>(
    document: usize,
    source: &Source,
    prefix: &[&str],
    value: &Value,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let inner = error.path().to_string();
        let mut field = prefix.join(".");
        if inner != "." {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&inner);
        }
        field_error(document, source, &field, &error.into_inner().to_string())
    })
}

fn field_error(document: usize, source: &Source, field: &str, message: &str) -> ManifestError {
    ManifestError::Field {
        document,
        object: source.to_string(),
        field: if field.is_empty() { "." } else { field }.to_owned(),
        message: message.to_owned(),
    }
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, token| v.get(token))?
        .as_str()
}

fn annotation(value: &Value, metadata: &[&str]) -> Option<String> {
    let meta = metadata.iter().try_fold(value, |v, token| v.get(token))?;
    Some(
        meta.get("annotations")?
            .get(POLICY_KEY)?
            .as_str()?
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_several_documents_and_expands_lists() {
        let text = "kind: Pod\n---\n---\nkind: List\nitems: [{kind: Service}, {kind: Pod}]\n";
        let stream = read(text).unwrap();
        let kinds: Vec<(usize, String, String)> = objects(&stream)
            .into_iter()
            .map(|o| {
                let kind = o.value["kind"].as_str().unwrap().to_owned();
                (o.document, o.at.to_string(), kind)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (1, String::new(), "Pod".into()),
                (3, "/items/0".into(), "Service".into()),
                (3, "/items/1".into(), "Pod".into())
            ]
        );
    }

    #[test]
    fn json_is_read_as_json() {
        let stream = read("{\"kind\": \"Pod\", \"v\": \"yes\"}").unwrap();
        assert!(stream.json);
        assert_eq!(objects(&stream)[0].value["v"], "yes");
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let error = read("kind: Pod\n---\nkind: [unclosed\n").unwrap_err();
        assert!(
            error.to_string().contains(": not valid YAML or JSON: "),
            "{error}"
        );
        assert!(matches!(error, ManifestError::Syntax { line: 3.., .. }));
    }

    #[test]
    fn a_bad_field_is_named_with_its_path() {
        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": 7}]}}}
        });
        let error = workload(4, &deployment).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "document 4 (Deployment/web): spec.template.spec.containers[0].name: invalid type"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_missing_template_is_an_error() {
        let error = workload(
            1,
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}}),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "document 1 (Deployment/<unnamed>): spec.template: missing"
        );
    }

    #[test]
    fn a_cronjob_has_its_job_and_itself_as_owners() {
        let cronjob = json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "ops",
                         "annotations": {"graceful.dev/policy": "batch"}},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "job"}]}}}}}
        });
        let workload = workload(1, &cronjob).unwrap().unwrap();
        assert_eq!(workload.root.as_str(), "/spec/jobTemplate/spec/template");
        assert_eq!(workload.namespace, "ops");
        let policies: Vec<_> = workload.owners.iter().map(|o| o.policy.clone()).collect();
        assert_eq!(policies, [None, Some("batch".to_owned())]);
    }

    #[test]
    fn kinds_without_pods_are_passed_over() {
        assert!(workload(1, &json!({"kind": "Service"})).unwrap().is_none());
        assert!(policy(1, &json!({"kind": "Service"})).unwrap().is_none());
    }

    #[test]
    fn a_policy_without_namespace_lands_in_default_with_defaults() {
        let value = json!({"apiVersion": "graceful.dev/v1alpha1", "kind": "GracefulPolicy",
                           "metadata": {"name": "web"}, "spec": {}});
        let policy = policy(1, &value).unwrap().unwrap();
        assert_eq!(policy.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(policy.spec.drain.grace_period_seconds(), 30);
    }
}
