//! `graceful mutate`: what graceful would do to the pods of a manifest, before it is
//! installed. Resolution and mutation are exactly the webhook's; a workload stands in
//! for the owner chain of the pods it would create.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::GracefulPolicy;
use crate::govern::{self, Verdict, govern};
use crate::install;
use crate::manifest::{self, Stream, yaml};
use crate::mutate::{Backend, Capabilities};
use crate::resolve::Candidate;
use crate::webhook::policies::PolicyIndex;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The manifest: YAML or JSON, several documents, `-` for standard input, read as
    /// kubectl reads it. Pods, PodTemplates and the kinds that create pods (Deployments,
    /// StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs)
    /// are mutated; GracefulPolicies in it are used; everything else passes through.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,

    /// A file of GracefulPolicies to resolve against (may be given several times).
    #[arg(short, long, value_name = "FILE")]
    policy: Vec<PathBuf>,

    /// Print the patched manifest, or the JSON Patch for each governed object. Documents
    /// graceful does not change are printed byte for byte. The paths of a patch start at
    /// the root of its document: `/items/N/...` for an item of a `kind: List`.
    #[arg(short, long, value_enum, default_value_t = Output::Manifest)]
    output: Output,

    /// The cluster's Kubernetes version, MAJOR.MINOR: before 1.30 the preStop sleep is
    /// an `exec` of `sleep`.
    #[arg(long, value_name = "VERSION", default_value = "1.34", value_parser = parse_version)]
    kubernetes_version: (u32, u32),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Manifest,
    Patch,
}

fn parse_version(text: &str) -> Result<(u32, u32), String> {
    let parsed = text
        .trim_start_matches('v')
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
    parsed.ok_or_else(|| format!("expected MAJOR.MINOR such as 1.34, got {text:?}"))
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (major, minor) = args.kubernetes_version;
    let caps = Capabilities::for_server_version(major, minor);
    let text = read_text(&args.file)?;
    let policy_files = args
        .policy
        .iter()
        .map(|file| Ok((file.clone(), read_text(file)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    print!(
        "{}",
        render(&args.file, &text, &policy_files, args.output, caps)?
    );
    Ok(())
}

/// What `graceful mutate` prints for the manifest `text` read from `file`, with the
/// policies of `policy_files` (each a path and its text). No files are read: the command
/// and the tests that feed it hostile input share it. Its notes go to standard error.
pub fn render(
    file: &Path,
    text: &str,
    policy_files: &[(PathBuf, String)],
    output: Output,
    caps: Capabilities,
) -> anyhow::Result<String> {
    let mut stream = manifest::read(text).with_context(|| file.display().to_string())?;

    let mut policies = Vec::new();
    for (policy_file, policy_text) in policy_files {
        let found = policies_in(policy_file, policy_text)?;
        if found.is_empty() {
            bail!("{}: no GracefulPolicy in this file", policy_file.display());
        }
        policies.extend(found);
    }
    policies.extend(policies_in(file, text)?);
    // Offline, a policy that cannot be used is an error in the user's files.
    for policy in &policies {
        Candidate::from_policy(policy)
            .with_context(|| format!("GracefulPolicy {}: spec.selector", policy.name_any()))?;
    }
    let index = PolicyIndex::build(&policies);
    let services = services_in(&stream);

    let mut changed = vec![false; stream.documents.len()];
    let mut changes = Vec::new();
    let mut patches = Vec::new();
    for object in manifest::objects(&stream) {
        let found = manifest::workload(object.document, object.value)
            .with_context(|| file.display().to_string())?;
        let Some(workload) = found else { continue };
        let say = |line: &dyn std::fmt::Display| eprintln!("graceful: {}: {line}", workload.source);
        if let Some(skip) = install::skipped(&workload.namespace) {
            say(&skip);
        }
        let root = object.at.concat(&workload.root);
        let pod = govern::Pod {
            view: &workload.pod,
            root: &root,
            source: &workload.source,
            owners: &workload.owners,
            services: services
                .get(&workload.namespace)
                .map_or(&[][..], Vec::as_slice),
        };
        let empty = Default::default();
        let policies = index.get(&workload.namespace);
        let (policy, mutation, warnings) =
            match govern(pod, policies.as_deref().unwrap_or(&empty), caps) {
                Verdict::Governed {
                    policy,
                    mutation,
                    warnings,
                    ..
                } => (policy, mutation, warnings),
                Verdict::NotGoverned { why, warnings } => {
                    warnings.iter().for_each(|w| say(w));
                    say(&format!("not governed: {why}"));
                    continue;
                }
                Verdict::Unusable(why) => {
                    say(&format!("not governed: {why}"));
                    continue;
                }
            };
        warnings
            .iter()
            .chain(&mutation.warnings)
            .for_each(|w| say(w));
        if mutation.patch.is_empty() {
            continue;
        }
        let patch = mutation
            .patch
            .operations()
            .context("graceful wrote a patch it cannot read back; this is a bug")?;
        patches.push(json!({
            "document": object.document,
            "kind": workload.source.kind,
            "name": workload.source.name,
            "policy": policy,
            "patch": patch,
        }));
        changes.push((object.document, patch));
    }
    for (document, patch) in changes {
        let value = stream.documents[document - 1]
            .value
            .as_mut()
            .context("a patched document has a value")?;
        // The reader takes only objects where the Pod API has them, so a patch that does
        // not apply is graceful's fault, not the manifest's.
        json_patch::patch(value, &patch.0).with_context(|| {
            format!(
                "{}: a patch for document {document} does not apply; this is a bug in graceful",
                file.display()
            )
        })?;
        changed[document - 1] = true;
    }

    Ok(match output {
        Output::Manifest => write_stream(text, &stream, &changed)?,
        Output::Patch => format!("{}\n", serde_json::to_string_pretty(&patches)?),
    })
}

/// The Services of the input, by namespace, for policies with `targets: Serving`: offline
/// they are all graceful knows of.
fn services_in(stream: &Stream) -> BTreeMap<String, Vec<Backend>> {
    let mut services: BTreeMap<String, Vec<Backend>> = BTreeMap::new();
    for object in manifest::objects(stream) {
        let value = object.value;
        if value.get("kind").and_then(Value::as_str) != Some("Service")
            || value.get("apiVersion").and_then(Value::as_str) != Some("v1")
        {
            continue;
        }
        let Ok(service) = serde_json::from_value::<Service>(value.clone()) else {
            continue;
        };
        let namespace = manifest::namespace_of(value);
        services
            .entry(namespace)
            .or_default()
            .extend(Backend::of(&service));
    }
    services
}

/// The stream as read, with each changed document written anew: YAML so that kubectl
/// reads every value as before, JSON as JSON.
fn write_stream(text: &str, stream: &Stream, changed: &[bool]) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    for (index, document) in stream.documents.iter().enumerate() {
        let original = &text[document.span.clone()];
        match (&document.value, changed[index]) {
            (Some(value), true) if stream.json => {
                // The white space around the value stays, as it separates documents.
                let lead = original.len() - original.trim_start().len();
                out.push_str(&original[..lead]);
                out.push_str(&serde_json::to_string_pretty(value)?);
                out.push_str(&original[original.trim_end().len()..]);
            }
            (Some(value), true) => {
                if index > 0 || original.starts_with("---") {
                    out.push_str("---\n");
                }
                out.push_str(&yaml::to_yaml(value));
            }
            _ => out.push_str(original),
        }
    }
    Ok(out)
}

fn read_text(file: &Path) -> anyhow::Result<String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

/// The GracefulPolicies of a file, each checked as the apiserver checks it.
fn policies_in(file: &Path, text: &str) -> anyhow::Result<Vec<GracefulPolicy>> {
    let stream = manifest::read(text).with_context(|| file.display().to_string())?;
    let mut policies = Vec::new();
    for object in manifest::objects(&stream) {
        let found = manifest::policy(object.document, object.value)
            .with_context(|| file.display().to_string())?;
        policies.extend(found);
    }
    Ok(policies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_where_kubernetes_has_a_map_is_the_manifests_error_not_a_bug() {
        // Found by tests/fuzz.rs: serde read `lifecycle: []` as an empty object, so the
        // pod was governed, and its patch could not be applied to the list. The pod's
        // reader now takes only an object there, and says where.
        let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {graceful.dev/policy: web}}\n\
                        spec: {containers: [{name: app, image: app, lifecycle: []}]}\n";
        let policy = "apiVersion: graceful.dev/v1alpha1\nkind: GracefulPolicy\nmetadata: {name: web}\n\
                      spec: {drain: {preStopSleepSeconds: 5, shutdownBudgetSeconds: 25}}\n";
        let policies = [(PathBuf::from("policy.yaml"), policy.to_owned())];
        let render = |text: &str| {
            render(
                Path::new("pod.yaml"),
                text,
                &policies,
                Output::Patch,
                Capabilities::default(),
            )
        };
        let error = format!("{:#}", render(manifest).expect_err("refused"));
        assert_eq!(
            error,
            "pod.yaml: document 1 (Pod/p): spec.containers[0].lifecycle: invalid type: \
             sequence, expected an object"
        );
        let fixed = manifest.replace("lifecycle: []", "lifecycle: {}");
        assert!(render(&fixed).expect("mutated").contains("preStop"));
        // The same for the pod template as a whole: serde would read it from a list.
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n\
                          spec: {template: [{annotations: {graceful.dev/policy: web}}, \
                          {containers: [{name: app, image: app}]}]}\n";
        let error = format!("{:#}", render(deployment).expect_err("refused"));
        assert!(
            error.starts_with(
                "pod.yaml: document 1 (Deployment/d): spec.template: invalid type: sequence"
            ),
            "{error}"
        );
    }
}
