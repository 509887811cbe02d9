//! The AdmissionReview v1 edge, read and written by hand.
//!
//! Deserializing the whole k8s-openapi Pod costs several times more than everything
//! else an admission does, so the request envelope is read into a few fields and its
//! `object` into [`PodView`], skipping the rest unbuilt, with
//! [`crate::json::read`]. The answer is serialized
//! exactly as `kube::core::admission::AdmissionReview` would serialize it (a test
//! compares both on every test pod). Pure: bytes in, values out.

use serde::Deserialize;

use crate::json::read::{self, Reader};
use crate::mutate::{Patch, PodView};

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// Why a body is not an admission request graceful can answer; each becomes a 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Malformed {
    #[error("the body is not an AdmissionReview in JSON: {0}")]
    NotJson(String),
    #[error("expected apiVersion {API_VERSION} kind {KIND}, got {api_version} {kind}")]
    NotAdmissionReview { api_version: String, kind: String },
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("the request has no uid")]
    NoUid,
    #[error("the request is for a {0}, graceful only admits core/v1 Pods")]
    NotAPod(String),
    #[error("a {0} request carries no object")]
    NoObject(String),
    #[error("the object is not a Pod: {0}")]
    BadObject(String),
}

/// The request, read in one pass: the apiserver writes `kind` and `operation` before
/// `object`, so a Pod at CREATE is read straight into a [`PodView`]; any other object
/// (or one that comes first) is only checked and delimited, and read later if at all.
// Everything defaults, so that a review of another version is named as such rather
// than by the first field it lacks.
#[derive(Default)]
struct Request<'a> {
    uid: String,
    kind: GroupVersionKind,
    namespace: Option<String>,
    operation: String,
    dry_run: Option<bool>,
    object: Object<'a>,
}

#[derive(Default)]
enum Object<'a> {
    #[default]
    Absent,
    /// Its JSON text.
    Raw(&'a str),
    /// `None`: `null`.
    /// Boxed: a pod view is far larger than the other variants.
    Pod(Option<Box<PodView>>),
}

impl Request<'_> {
    fn is_pod(&self) -> bool {
        let gvk = &self.kind;
        gvk.group.is_empty() && gvk.version == "v1" && gvk.kind == "Pod"
    }

    fn is_pod_create(&self) -> bool {
        self.is_pod() && self.operation == "CREATE"
    }
}

impl From<read::Error> for Malformed {
    fn from(error: read::Error) -> Self {
        Malformed::NotJson(error.to_string())
    }
}

fn bad_object(error: read::Error) -> Malformed {
    Malformed::BadObject(error.to_string())
}

fn read_request<'a>(reader: &mut Reader<'a>) -> Result<Request<'a>, Malformed> {
    let mut request = Request::default();
    reader.entries(|reader, key| {
        match key.as_ref() {
            "uid" => request.uid = reader.read()?,
            "kind" => request.kind = reader.read()?,
            "namespace" => request.namespace = reader.read()?,
            "operation" => request.operation = reader.read()?,
            "dryRun" => request.dry_run = reader.read()?,
            "object" if request.is_pod_create() => {
                request.object = Object::Pod(reader.read().map_err(bad_object)?);
            }
            "object" => request.object = Object::Raw(reader.skip()?),
            _ => {
                reader.skip()?;
            }
        }
        Ok::<_, Malformed>(())
    })?;
    Ok(request)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GroupVersionKind {
    group: String,
    version: String,
    kind: String,
}

/// An admission request for a Pod, as far as graceful reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRequest {
    pub uid: String,
    pub namespace: String,
    pub dry_run: bool,
    /// `None` for any operation but CREATE: graceful mutates pods only as they are made.
    pub pod: Option<PodView>,
}

/// Reads an AdmissionReview v1 for a Pod.
pub fn parse(body: &[u8]) -> Result<PodRequest, Malformed> {
    // One check of the whole body; then every string read is a slice of it.
    let body = std::str::from_utf8(body)
        .map_err(|e| Malformed::NotJson(format!("the body is not UTF-8: {e}")))?;
    let mut reader = Reader::new(body);
    let (mut api_version, mut kind, mut request) = (String::new(), String::new(), None);
    reader.entries(|reader, key| {
        match key.as_ref() {
            "apiVersion" => api_version = reader.read()?,
            "kind" => kind = reader.read()?,
            "request" if reader.null()? => request = None,
            "request" => request = Some(read_request(reader)?),
            _ => {
                reader.skip()?;
            }
        }
        Ok::<_, Malformed>(())
    })?;
    reader.end()?;
    if api_version != API_VERSION || kind != KIND {
        return Err(Malformed::NotAdmissionReview { api_version, kind });
    }
    let request = request.ok_or(Malformed::NoRequest)?;
    if request.uid.is_empty() {
        return Err(Malformed::NoUid);
    }
    if !request.is_pod() {
        let gvk = &request.kind;
        let group = if gvk.group.is_empty() {
            "core"
        } else {
            &gvk.group
        };
        return Err(Malformed::NotAPod(format!(
            "{group}/{} {}",
            gvk.version, gvk.kind
        )));
    }
    let pod = if request.operation == "CREATE" {
        let pod = match request.object {
            Object::Pod(pod) => pod.map(|pod| *pod),
            Object::Raw(raw) => Reader::read_all(raw).map_err(bad_object)?,
            Object::Absent => None,
        };
        Some(pod.ok_or_else(|| Malformed::NoObject(request.operation.clone()))?)
    } else {
        None
    };
    Ok(PodRequest {
        uid: request.uid,
        namespace: request.namespace.unwrap_or_default(),
        dry_run: request.dry_run.unwrap_or(false),
        pod,
    })
}

/// The answer to one request: always allowed, with a patch or not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    pub uid: String,
    /// Empty: no patch.
    pub patch: Patch,
    pub warnings: Vec<String>,
}

impl Answer {
    /// The AdmissionReview v1 that carries this answer, written by hand: the same bytes
    /// serde would write for kube's field order (apiVersion, kind, then the response's
    /// uid, allowed, status, patch, patchType, warnings), but with the base64 of the patch
    /// encoded straight into the body. Through serde it would be encoded into a String,
    /// checked as UTF-8, then scanned byte by byte for characters to escape, of which
    /// base64 has none: together more than the rest of the answer costs. The encoder
    /// uses the CPU's vector instructions where it has them: the `base64` crate's took
    /// as many instructions as the rest of the answer.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let patch = (!self.patch.is_empty()).then(|| self.patch.as_json());
        let base64 = base64_simd::STANDARD;
        let encoded = patch.map_or(0, |patch| base64.encoded_length(patch.len()));
        let mut out = Vec::with_capacity(256 + encoded);
        out.extend_from_slice(b"{\"apiVersion\":\"");
        out.extend_from_slice(API_VERSION.as_bytes());
        out.extend_from_slice(b"\",\"kind\":\"");
        out.extend_from_slice(KIND.as_bytes());
        out.extend_from_slice(b"\",\"response\":{\"uid\":");
        serde_json::to_writer(&mut out, &self.uid)?;
        // kube serializes an empty `Status` as `{}`.
        out.extend_from_slice(b",\"allowed\":true,\"status\":{}");
        if let Some(patch) = patch {
            out.extend_from_slice(b",\"patch\":\"");
            base64.encode_append(patch, &mut out);
            out.extend_from_slice(b"\",\"patchType\":\"JSONPatch\"");
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":");
            serde_json::to_writer(&mut out, &self.warnings)?;
        }
        out.extend_from_slice(b"}}");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(request: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": API_VERSION, "kind": KIND, "request": request}))
            .unwrap()
    }

    fn pod_request(operation: &str, object: serde_json::Value) -> Vec<u8> {
        review(json!({
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "shop", "operation": operation, "dryRun": true, "object": object
        }))
    }

    #[test]
    fn reads_a_create() {
        let body = pod_request("CREATE", json!({"spec": {"containers": [{"name": "app"}]}}));
        let request = parse(&body).unwrap();
        assert_eq!(request.uid, "u-1");
        assert_eq!(request.namespace, "shop");
        assert!(request.dry_run);
        assert_eq!(request.pod.unwrap().spec.containers[0].name, "app");
    }

    #[test]
    fn an_object_before_the_kind_is_read_all_the_same() {
        let body =
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "object": {"spec": {"containers": [{"name": "app"}]}}, "uid": "u",
            "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE"}}"#;
        assert_eq!(
            parse(body).unwrap().pod.unwrap().spec.containers[0].name,
            "app"
        );
        let bad = String::from_utf8(body.to_vec())
            .unwrap()
            .replace(r#"[{"name": "app"}]"#, "7");
        assert!(matches!(
            parse(bad.as_bytes()),
            Err(Malformed::BadObject(_))
        ));
    }

    #[test]
    fn other_operations_carry_no_pod_and_are_not_read() {
        let body = pod_request("UPDATE", json!({"spec": "not even a spec"}));
        assert_eq!(parse(&body).unwrap().pod, None);
        let body = pod_request("DELETE", serde_json::Value::Null);
        assert_eq!(parse(&body).unwrap().pod, None);
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(matches!(parse(b"{"), Err(Malformed::NotJson(_))));
        // Even in a field graceful does not read.
        let mut body = pod_request("CREATE", json!({"spec": {"containers": [{"name": "app"}]}}));
        body.splice(1..1, *b"\"skipped\":\"\xff\",");
        assert_eq!(
            parse(&body),
            Err(Malformed::NotJson(
                "the body is not UTF-8: invalid utf-8 sequence of 1 bytes from index 12".into()
            ))
        );
        assert!(matches!(
            parse(br#"{"apiVersion": "v1", "kind": "Pod"}"#),
            Err(Malformed::NotAdmissionReview { .. })
        ));
        assert_eq!(
            parse(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#),
            Err(Malformed::NoRequest)
        );
        let deployment = review(json!({
            "uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "operation": "CREATE", "object": {}
        }));
        assert_eq!(
            parse(&deployment),
            Err(Malformed::NotAPod("apps/v1 Deployment".into()))
        );
        assert_eq!(
            parse(&pod_request("CREATE", serde_json::Value::Null)),
            Err(Malformed::NoObject("CREATE".into()))
        );
        assert!(matches!(
            parse(&pod_request("CREATE", json!({"spec": {}}))),
            Err(Malformed::BadObject(_))
        ));
    }

    #[test]
    fn an_answer_without_patch_or_warnings_is_bare() {
        let answer = Answer {
            uid: "u".into(),
            ..Answer::default()
        };
        let json: serde_json::Value = serde_json::from_slice(&answer.to_json().unwrap()).unwrap();
        assert_eq!(
            json,
            json!({"apiVersion": API_VERSION, "kind": KIND,
                   "response": {"uid": "u", "allowed": true, "status": {}}})
        );
    }

    #[test]
    fn an_answer_is_written_byte_for_byte_as_serde_would() {
        let mut patch = Patch::default();
        let root = json_patch::jsonptr::Pointer::root();
        patch
            .add(root, &["metadata", "labels"], &json!({"a": "b\"c"}))
            .unwrap();
        let answer = Answer {
            uid: "u\"1".into(),
            patch,
            warnings: vec!["graceful: \"w\"".into(), "x".into()],
        };
        let patch = serde_json::to_vec(&json!([
            {"op": "add", "path": "/metadata/labels", "value": {"a": "b\"c"}}
        ]))
        .unwrap();
        let expected = serde_json::to_vec(&json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "response": {"uid": "u\"1", "allowed": true, "status": {},
                         "patch": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, patch),
                         "patchType": "JSONPatch", "warnings": ["graceful: \"w\"", "x"]}
        }))
        .unwrap();
        assert_eq!(
            String::from_utf8(answer.to_json().unwrap()).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }
}
