//! What each container of a pod is to a policy: an app it changes, or a container it
//! leaves alone (a sidecar, one that opts out, one the policy does not name, one that
//! serves no traffic). The one place that decides which containers are governed. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use crate::api::{Sidecars, Targets};

use super::{ContainerView, Governing, PodView, PortView};

/// Written into the pod's record for each container left alone (`sidecar`, `optedOut`,
/// ...), where the reconciler reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Changed: sleep, stop signal, readiness, variables.
    App,
    /// A sidecar or mesh proxy run as a regular container, by the policy's `sidecars`.
    Sidecar,
    /// `preStop: {sleep: {seconds: 0}}`.
    OptedOut,
    /// The policy names other containers.
    NotNamed,
    /// `targets: Serving`, and no Service of the namespace reaches its ports.
    NotServing,
}

impl Role {
    pub fn of(container: &ContainerView, pod: &PodView, policy: Governing) -> Role {
        let spec = policy.spec;
        if container.opts_out() {
            Role::OptedOut
        } else if is_sidecar(container, &spec.sidecars) {
            Role::Sidecar
        } else if !spec.containers.is_empty() && !spec.containers.contains(&container.name) {
            Role::NotNamed
        } else if spec.targets == Targets::Serving && !serving(container, pod, policy.services) {
            Role::NotServing
        } else {
            Role::App
        }
    }
}

/// Named or imaged as a sidecar by the policy.
fn is_sidecar(container: &ContainerView, sidecars: &Sidecars) -> bool {
    if sidecars.names.contains(&container.name) {
        return true;
    }
    let Some(image) = container.image.as_deref() else {
        return false;
    };
    let repository = super::mesh::repository(image);
    sidecars.images.iter().any(|wanted| {
        repository == wanted
            || repository
                .strip_suffix(wanted.as_str())
                .is_some_and(|head| head.ends_with('/'))
    })
}

/// What the webhook keeps of a Service: whom it selects, and which ports it sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<TargetPort>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(i32),
    Name(String),
}

impl Backend {
    /// `None` for a Service without a selector: its endpoints are managed by hand, and
    /// no pod is its backend by its labels.
    pub fn of(service: &Service) -> Option<Backend> {
        let spec = service.spec.as_ref()?;
        let selector = spec.selector.clone().filter(|s| !s.is_empty())?;
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|port| match &port.target_port {
                Some(IntOrString::Int(number)) => TargetPort::Number(*number),
                Some(IntOrString::String(name)) => match name.parse() {
                    Ok(number) => TargetPort::Number(number),
                    Err(_) => TargetPort::Name(name.clone()),
                },
                None => TargetPort::Number(port.port),
            })
            .collect();
        Some(Backend { selector, ports })
    }

    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    }

    fn reaches(&self, port: &PortView) -> bool {
        self.ports.iter().any(|target| match target {
            TargetPort::Number(number) => *number == port.container_port,
            TargetPort::Name(name) => port.name.as_deref() == Some(name),
        })
    }
}

fn serving(container: &ContainerView, pod: &PodView, services: &[Backend]) -> bool {
    let empty = BTreeMap::new();
    let labels = pod.labels().unwrap_or(&empty);
    services.iter().any(|backend| {
        backend.selects(labels) && container.ports.iter().any(|port| backend.reaches(port))
    })
}
