//! The part of a Pod (or pod template) that mutation and resolution read.
//!
//! Deserializing a whole `k8s_openapi` Pod costs several times more than everything else
//! an admission does (see BENCHMARKS.md); serde skips the fields not named here without
//! building them. Field names and nesting follow the Pod API exactly, so the same view
//! reads a Pod, a PodTemplateSpec and the `object` of an AdmissionReview.

use std::collections::BTreeMap;

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A Pod or a pod template, as far as graceful reads it.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
// The derived reader becomes `PodView::deserialize`; the trait's reader below wraps it so
// that the pod itself, like its fields, is read only from an object.
#[serde(remote = "Self")]
pub struct PodView {
    /// Absent in pod templates that carry no labels or annotations.
    #[serde(default, deserialize_with = "optional_object")]
    pub metadata: Option<PodMeta>,
    #[serde(deserialize_with = "object")]
    pub spec: PodSpecView,
}

impl<'de> Deserialize<'de> for PodView {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The derived reader, as a type [`object`] can call.
        struct Fields(PodView);
        impl<'de> Deserialize<'de> for Fields {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                PodView::deserialize(deserializer).map(Fields)
            }
        }
        object(deserializer).map(|Fields(pod)| pod)
    }
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub generate_name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// `None` when absent or null: the patch must then add the whole map.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub owner_references: Vec<OwnerReferenceView>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReferenceView {
    #[serde(default)]
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub controller: Option<bool>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    pub containers: Vec<ContainerView>,
    /// Read for native sidecars (`restartPolicy: Always`), which graceful never changes.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub init_containers: Vec<ContainerView>,
    #[serde(default)]
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(default, deserialize_with = "optional_object")]
    pub os: Option<PodOsView>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
pub struct PodOsView {
    pub name: String,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
    /// `Always` on an init container makes it a native sidecar.
    #[serde(default)]
    pub restart_policy: Option<String>,
    #[serde(default, deserialize_with = "optional_object")]
    pub lifecycle: Option<LifecycleView>,
    #[serde(default, deserialize_with = "optional_object")]
    pub readiness_probe: Option<ProbeTimings>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ports: Vec<PortView>,
    /// `None` when absent or null: the patch must then add the whole list.
    #[serde(default)]
    pub env: Option<Vec<EnvVarView>>,
    /// Its entries are only counted: what a ConfigMap or Secret holds is not known here.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub env_from: Vec<Value>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortView {
    #[serde(default)]
    pub name: Option<String>,
    pub container_port: i32,
}

/// A variable as the container sets it; kept whole, as the patch rewrites the list.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarView {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_from: Option<Value>,
}

impl EnvVarView {
    /// The variable as the Pod API writes it.
    pub fn to_json(&self) -> Value {
        let mut variable = serde_json::Map::new();
        variable.insert("name".to_owned(), Value::String(self.name.clone()));
        if let Some(value) = &self.value {
            variable.insert("value".to_owned(), Value::String(value.clone()));
        }
        if let Some(from) = &self.value_from {
            variable.insert("valueFrom".to_owned(), from.clone());
        }
        Value::Object(variable)
    }
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleView {
    /// Kept as JSON: it is only compared with the hook graceful would write and recorded.
    #[serde(default)]
    pub pre_stop: Option<Value>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

impl ContainerView {
    /// An init container that keeps running beside the app (Kubernetes 1.29+).
    pub fn is_native_sidecar(&self) -> bool {
        self.restart_policy.as_deref() == Some("Always")
    }

    /// `preStop: {sleep: {seconds: 0}}`: legal precisely to opt out of injected sleeps
    /// (KEP-4818), so graceful leaves the container alone.
    pub fn opts_out(&self) -> bool {
        let hook = self.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
        hook.is_some_and(|hook| hook["sleep"]["seconds"].as_i64() == Some(0))
    }
}

/// The timings of a readiness probe; its handler is never read.
#[derive(Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeTimings {
    #[serde(default)]
    pub period_seconds: Option<i32>,
    #[serde(default)]
    pub failure_threshold: Option<i32>,
    #[serde(default)]
    pub timeout_seconds: Option<i32>,
}

/// A field the Pod API defines as an object. serde would also read a JSON list into a
/// struct (its fields in order), which no apiserver sends, and a patch written for an
/// object cannot follow a list: so only a map is read, and anything else is the pod's
/// error.
fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Object<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
        type Value = T;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_map(Object(PhantomData))
}

/// [`object`] for an optional field: null or absent is `None`.
fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Optional<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Optional<T> {
        type Value = Option<T>;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("an object or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
            object(inner).map(Some)
        }
    }
    deserializer.deserialize_option(Optional(PhantomData))
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// The apiserver's defaults for a probe's timings (`SetDefaults_Probe`).
const PROBE_DEFAULTS: ProbeTimings = ProbeTimings {
    period_seconds: Some(10),
    failure_threshold: Some(3),
    timeout_seconds: Some(1),
};

impl PodView {
    /// The pod as the webhook sees it: the apiserver fills in these defaults before
    /// admission, so a pod template read offline gets them too, and mutation (its
    /// record above all) comes out the same.
    pub fn with_apiserver_defaults(mut self) -> Self {
        let spec = &mut self.spec;
        spec.termination_grace_period_seconds
            .get_or_insert(super::DEFAULT_GRACE_PERIOD_SECONDS);
        for probe in spec
            .containers
            .iter_mut()
            .filter_map(|c| c.readiness_probe.as_mut())
        {
            probe.period_seconds = probe.period_seconds.or(PROBE_DEFAULTS.period_seconds);
            probe.failure_threshold = probe.failure_threshold.or(PROBE_DEFAULTS.failure_threshold);
            probe.timeout_seconds = probe.timeout_seconds.or(PROBE_DEFAULTS.timeout_seconds);
        }
        self
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.metadata.as_ref()?.labels.as_ref()
    }

    /// The owner reference marked as the pod's controller.
    pub fn controller(&self) -> Option<&OwnerReferenceView> {
        let meta = self.metadata.as_ref()?;
        meta.owner_references
            .iter()
            .find(|r| r.controller == Some(true))
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        let annotations = self.metadata.as_ref()?.annotations.as_ref()?;
        annotations.get(key).map(String::as_str)
    }
}
