//! The kinds of object that own or create pods: where each keeps its pod template, which
//! API group it lives in, and what it creates pods through. Pure data, one table, read by
//! the manifest reader ([`crate::manifest`]) and the webhook's owner cache
//! ([`crate::webhook::owners`]), so that the offline preview and the cluster follow the
//! same chain from a pod to the object that names its policy.

/// A kind that owns pods, directly (ReplicaSet, StatefulSet, ...) or through another
/// (Deployment through ReplicaSet, CronJob through Job). The webhook's owner cache
/// watches every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ReplicaSet,
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicationController,
}

/// One row of the table.
struct Row {
    name: &'static str,
    /// The API group (`""` is the core group).
    group: &'static str,
    /// The resource, as RBAC rules and `kubectl auth can-i` name it.
    resource: &'static str,
    /// Where the pod template sits in an object of this kind.
    template: &'static [&'static str],
    /// The kind of the object this one creates pods through, and where in this object
    /// the metadata of that object comes from.
    through: Option<(Kind, &'static [&'static str])>,
}

const fn row(kind: Kind) -> Row {
    const SPEC_TEMPLATE: &[&str] = &["spec", "template"];
    match kind {
        Kind::ReplicaSet => Row {
            name: "ReplicaSet",
            group: "apps",
            resource: "replicasets",
            template: SPEC_TEMPLATE,
            through: None,
        },
        // The Deployment controller copies the Deployment's annotations onto the
        // ReplicaSets it makes.
        Kind::Deployment => Row {
            name: "Deployment",
            group: "apps",
            resource: "deployments",
            template: SPEC_TEMPLATE,
            through: Some((Kind::ReplicaSet, &["metadata"])),
        },
        Kind::StatefulSet => Row {
            name: "StatefulSet",
            group: "apps",
            resource: "statefulsets",
            template: SPEC_TEMPLATE,
            through: None,
        },
        Kind::DaemonSet => Row {
            name: "DaemonSet",
            group: "apps",
            resource: "daemonsets",
            template: SPEC_TEMPLATE,
            through: None,
        },
        Kind::Job => Row {
            name: "Job",
            group: "batch",
            resource: "jobs",
            template: SPEC_TEMPLATE,
            through: None,
        },
        // The Jobs a CronJob makes carry the job template's metadata.
        Kind::CronJob => Row {
            name: "CronJob",
            group: "batch",
            resource: "cronjobs",
            template: &["spec", "jobTemplate", "spec", "template"],
            through: Some((Kind::Job, &["spec", "jobTemplate", "metadata"])),
        },
        Kind::ReplicationController => Row {
            name: "ReplicationController",
            group: "",
            resource: "replicationcontrollers",
            template: SPEC_TEMPLATE,
            through: None,
        },
    }
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
        Kind::ReplicationController,
    ];

    pub fn name(self) -> &'static str {
        row(self).name
    }

    pub fn group(self) -> &'static str {
        row(self).group
    }

    pub fn resource(self) -> &'static str {
        row(self).resource
    }

    pub fn template(self) -> &'static [&'static str] {
        row(self).template
    }

    /// The kind this one creates its pods through, and where in an object of this kind
    /// the metadata of that object comes from.
    pub fn through(self) -> Option<(Kind, &'static [&'static str])> {
        row(self).through
    }

    /// The kind an owner reference (or a manifest's `apiVersion` and `kind`) names, if
    /// it is one that owns pods.
    pub fn of(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.split_once('/').map_or("", |(group, _)| group);
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == kind && k.group() == group)
    }
}

/// An object in a manifest that holds a pod or a pod template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Templated {
    Pod,
    /// A PodTemplate object: pods are made from it by hand or by a controller that reads
    /// it, never owned by it.
    PodTemplate,
    Owner(Kind),
}

impl Templated {
    /// What a manifest's `apiVersion` and `kind` hold, if it holds a pod.
    pub fn of(api_version: &str, kind: &str) -> Option<Templated> {
        match (api_version, kind) {
            ("v1", "Pod") => Some(Templated::Pod),
            ("v1", "PodTemplate") => Some(Templated::PodTemplate),
            _ => Kind::of(api_version, kind).map(Templated::Owner),
        }
    }

    /// Where the pod (template) sits: the empty path for a Pod.
    pub fn template(self) -> &'static [&'static str] {
        match self {
            Templated::Pod => &[],
            Templated::PodTemplate => &["template"],
            Templated::Owner(kind) => kind.template(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_references_are_followed_by_group_and_kind() {
        assert_eq!(Kind::of("apps/v1", "ReplicaSet"), Some(Kind::ReplicaSet));
        assert_eq!(Kind::of("batch/v1", "CronJob"), Some(Kind::CronJob));
        assert_eq!(
            Kind::of("v1", "ReplicationController"),
            Some(Kind::ReplicationController)
        );
        assert_eq!(Kind::of("example.com/v1", "Deployment"), None);
        assert_eq!(Kind::of("apps/v1", "ReplicationController"), None);
    }

    #[test]
    fn every_kind_is_found_by_its_own_group_and_name() {
        for kind in Kind::ALL {
            let api_version = match kind.group() {
                "" => "v1".to_owned(),
                group => format!("{group}/v1"),
            };
            assert_eq!(Kind::of(&api_version, kind.name()), Some(kind));
            assert_eq!(kind.template().last(), Some(&"template"));
        }
    }

    #[test]
    fn pods_and_pod_templates_hold_pods_but_own_none() {
        assert_eq!(Templated::of("v1", "Pod"), Some(Templated::Pod));
        assert_eq!(
            Templated::of("v1", "Pod").map(Templated::template),
            Some(&[][..])
        );
        assert_eq!(
            Templated::of("v1", "PodTemplate").map(Templated::template),
            Some(&["template"][..])
        );
        assert_eq!(
            Templated::of("batch/v1", "CronJob").map(Templated::template),
            Some(&["spec", "jobTemplate", "spec", "template"][..])
        );
        assert_eq!(Templated::of("v1", "Service"), None);
    }

    #[test]
    fn deployments_and_cronjobs_create_pods_through_another_kind() {
        assert_eq!(
            Kind::Deployment.through(),
            Some((Kind::ReplicaSet, &["metadata"][..]))
        );
        assert_eq!(
            Kind::CronJob.through().map(|(kind, _)| kind),
            Some(Kind::Job)
        );
        assert_eq!(Kind::StatefulSet.through(), None);
    }
}
