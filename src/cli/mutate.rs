//! `graceful mutate`: what graceful would do to the pods of a manifest, before it is
//! installed. Resolution and mutation are exactly the webhook's; a workload stands in
//! for the owner chain of the pods it would create.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::{GracefulPolicy, POLICY_KEY};
use crate::manifest::{self, Workload};
use crate::mutate::{Capabilities, Governing, Mutation, mutate};
use crate::resolve::{Candidate, Resolution, Subject, resolve};
use crate::webhook::policies::PolicyIndex;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The manifest: YAML or JSON, several documents, `-` for standard input. Pods,
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs are
    /// mutated; GracefulPolicies in it are used; everything else passes through.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,

    /// A file of GracefulPolicies to resolve against (may be given several times).
    #[arg(short, long, value_name = "FILE")]
    policy: Vec<PathBuf>,

    /// Print the patched manifest, or the JSON Patch for each governed document.
    #[arg(short, long, value_enum, default_value_t = Output::Manifest)]
    output: Output,

    /// The cluster's Kubernetes version, MAJOR.MINOR: before 1.30 the preStop sleep is
    /// an `exec` of `sleep`.
    #[arg(long, value_name = "VERSION", default_value = "1.34", value_parser = parse_version)]
    kubernetes_version: (u32, u32),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
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
    let mut documents = read_documents(&args.file)?;

    let mut policies = Vec::new();
    for file in &args.policy {
        let found = policies_in(file, &read_documents(file)?)?;
        if found.is_empty() {
            bail!("{}: no GracefulPolicy in this file", file.display());
        }
        policies.extend(found);
    }
    policies.extend(policies_in(&args.file, &documents)?);
    // Offline, a policy that cannot be used is an error in the user's files.
    for policy in &policies {
        Candidate::from_policy(policy)
            .with_context(|| format!("GracefulPolicy {}: spec.selector", policy.name_any()))?;
    }
    let index = PolicyIndex::build(&policies);

    let mut patches = Vec::new();
    for (number, document) in &mut documents {
        let found = manifest::workload(*number, document)
            .with_context(|| args.file.display().to_string())?;
        let Some(workload) = found else { continue };
        let Some((policy, mutation)) = govern(&index, &workload, caps) else {
            continue;
        };
        for warning in &mutation.warnings {
            eprintln!("graceful: {}: {warning}", workload.source);
        }
        json_patch::patch(document, &mutation.patch.0).with_context(|| {
            format!(
                "{}: the patch for {} does not apply; this is a bug in graceful",
                args.file.display(),
                workload.source
            )
        })?;
        if !mutation.patch.0.is_empty() {
            patches.push(json!({
                "document": number,
                "kind": workload.source.kind,
                "name": workload.source.name,
                "policy": policy,
                "patch": mutation.patch,
            }));
        }
    }

    match args.output {
        Output::Manifest => {
            for (_, document) in &documents {
                print!("---\n{}", serde_yaml_ng::to_string(document)?);
            }
        }
        Output::Patch => println!("{}", serde_json::to_string_pretty(&patches)?),
    }
    Ok(())
}

fn read_documents(file: &Path) -> anyhow::Result<Vec<(usize, Value)>> {
    let text = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    manifest::documents(&text).with_context(|| file.display().to_string())
}

fn policies_in(file: &Path, documents: &[(usize, Value)]) -> anyhow::Result<Vec<GracefulPolicy>> {
    let mut policies = Vec::new();
    for (number, document) in documents {
        let found =
            manifest::policy(*number, document).with_context(|| file.display().to_string())?;
        policies.extend(found);
    }
    Ok(policies)
}

/// The governing policy's name and the mutation, or `None` (with a word on standard
/// error) for a workload no policy governs.
fn govern(
    index: &PolicyIndex,
    workload: &Workload,
    caps: Capabilities,
) -> Option<(String, Mutation)> {
    let policies = index.get(&workload.namespace).unwrap_or_default();
    let subject = Subject {
        source: &workload.source,
        labels: workload.pod.labels(),
        annotation: workload.pod.annotation(POLICY_KEY),
        owners: &workload.owners,
    };
    let resolution = resolve(subject, &policies.candidates);
    if let Some(conflict) = resolution.conflict() {
        eprintln!("graceful: {}: {conflict}", workload.source);
    }
    let policy = match resolution {
        Resolution::Governed { policy, .. } => policy,
        Resolution::NotGoverned(why) => {
            eprintln!("graceful: {}: not governed: {why}", workload.source);
            return None;
        }
    };
    let governing = Governing {
        name: &policy.name,
        spec: policies.spec(&policy.name)?,
    };
    Some((
        policy.name.clone(),
        mutate(&workload.pod, &workload.root, governing, caps),
    ))
}
