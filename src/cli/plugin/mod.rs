//! `kubectl graceful`: graceful's binary installed as `kubectl-graceful` (kubectl runs
//! any `kubectl-NAME` on the PATH as `kubectl NAME`). It reads the cluster as kubectl
//! does and follows kubectl's habits: `-n`, `-A`, `--context`, `--kubeconfig`,
//! `-o yaml|json`, colour only on a terminal. The decisions are in [`status`], [`why`],
//! [`table`] and [`crate::recommend`]; this module only reads and prints.

mod status;
mod table;
mod why;

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::{GracefulPolicy, POLICY_KEY};
use crate::kinds::Kind;
use crate::mutate::{Backend, Capabilities};
use crate::recommend::{merge_patch, recommendations};
use crate::resolve::{Owner, Source};
use crate::webhook::owners::Trimmed;

/// The name kubectl finds the plugin by.
pub const BINARY_NAME: &str = "kubectl-graceful";

#[derive(clap::Parser, Debug)]
#[command(
    name = "kubectl graceful",
    version,
    about = "What graceful does to your pods, from kubectl"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,

    /// The namespace; the kubeconfig context's, else `default`.
    #[arg(short, long, global = true)]
    namespace: Option<String>,

    /// Every namespace.
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,

    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,

    /// The kubeconfig file (else KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<std::path::PathBuf>,

    /// Output format: a table or text for people, or a document for programs.
    #[arg(short, long, global = true, value_enum)]
    output: Option<Output>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Policies with their pods, violations, recommendations and readiness.
    Status,
    /// Which policy governs a pod and why, what it was admitted with, what happened to
    /// it since, and what would change were it created now.
    Why {
        /// The pod's name.
        pod: String,
    },
    /// The policy edits that apply graceful's recommendations, as `kubectl patch`
    /// commands (`-o yaml|json`: the merge patches).
    Recommend,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Yaml,
    Json,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .context("no usable kubeconfig (--kubeconfig, KUBECONFIG or ~/.kube/config)")?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("connecting to the cluster")?;
    let scope = if cli.all_namespaces {
        None
    } else {
        Some(namespace.as_str())
    };
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let text = match &cli.command {
        Command::Status => status_command(&client, scope, cli.output, colour).await?,
        Command::Why { pod } => why_command(&client, &namespace, pod, cli.output).await?,
        Command::Recommend => recommend_command(&client, scope, cli.output).await?,
    };
    print!("{text}");
    Ok(())
}

fn policies_api(client: &Client, scope: Option<&str>) -> Api<GracefulPolicy> {
    match scope {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

async fn list_policies(
    client: &Client,
    scope: Option<&str>,
) -> anyhow::Result<Vec<GracefulPolicy>> {
    let listed = policies_api(client, scope)
        .list(&ListParams::default())
        .await
        .context(
            "listing GracefulPolicies (is graceful's CRD installed? kubectl apply -f crds/)",
        )?;
    Ok(listed.items)
}

async fn status_command(
    client: &Client,
    scope: Option<&str>,
    output: Option<Output>,
    colour: bool,
) -> anyhow::Result<String> {
    let policies = list_policies(client, scope).await?;
    let pods_api: Api<Pod> = match scope {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let governed = pods_api
        .list_metadata(&ListParams::default().labels(POLICY_KEY))
        .await
        .context("listing governed pods")?;
    let mut pods: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for pod in governed.items {
        if let Some(policy) = pod.labels().get(POLICY_KEY) {
            let key = (pod.namespace().unwrap_or_default(), policy.clone());
            pods.entry(key).or_default().push(pod.name_any());
        }
    }
    let statuses = status::policy_statuses(&policies, &pods);
    match output {
        Some(format) => document(&json!({"items": statuses}), format),
        None if statuses.is_empty() => Ok(match scope {
            Some(namespace) => format!("No GracefulPolicies found in {namespace} namespace.\n"),
            None => "No GracefulPolicies found.\n".to_owned(),
        }),
        None => Ok(status::table(&statuses, scope.is_none(), colour)),
    }
}

async fn why_command(
    client: &Client,
    namespace: &str,
    name: &str,
    output: Option<Output>,
) -> anyhow::Result<String> {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .with_context(|| format!("reading pod {namespace}/{name}"))?;
    let owners = owners_of(client, namespace, &pod).await?;
    let policies = list_policies(client, Some(namespace)).await?;
    let caps = capabilities(client).await;
    let services: Vec<Backend> = Api::<Service>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await
        .with_context(|| format!("listing the Services of {namespace}"))?
        .items
        .iter()
        .filter_map(Backend::of)
        .collect();
    let why = why::explain(&pod, &owners, &policies, &services, caps).context("reading the pod")?;
    match output {
        Some(format) => document(&why, format),
        None => Ok(why::text(&why)),
    }
}

/// The pod's owners, nearest first, with their `graceful.dev/policy` annotations.
async fn owners_of(client: &Client, namespace: &str, pod: &Pod) -> anyhow::Result<Vec<Owner>> {
    let mut owners = Vec::new();
    let mut next = Trimmed::from_meta(&pod.metadata).controller;
    // Real chains have two links at most; a loop in broken data ends here.
    while let Some((kind, name)) = next.take().filter(|_| owners.len() < 4) {
        let gvk = GroupVersionKind::gvk(kind.group(), "v1", kind.name());
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk));
        let Some(owner) = api
            .get_metadata_opt(&name)
            .await
            .with_context(|| format!("reading {}/{name}", kind.name()))?
        else {
            break;
        };
        let trimmed = Trimmed::from_meta(&owner.metadata);
        owners.push(Owner {
            source: Source {
                kind: Kind::name(kind).to_owned(),
                name: name.to_string(),
            },
            policy: trimmed.policy.map(String::from),
        });
        next = trimmed.controller;
    }
    Ok(owners)
}

async fn capabilities(client: &Client) -> Capabilities {
    let version = client.apiserver_version().await.ok();
    version
        .and_then(|info| super::run::parse_version(&info.major, &info.minor))
        .map_or_else(Capabilities::default, |(major, minor)| {
            Capabilities::for_server_version(major, minor)
        })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyPatch {
    namespace: String,
    name: String,
    patch: Value,
}

async fn recommend_command(
    client: &Client,
    scope: Option<&str>,
    output: Option<Output>,
) -> anyhow::Result<String> {
    let mut policies = list_policies(client, scope).await?;
    policies.sort_by_key(|p| (p.namespace(), p.name_any()));
    let patches: Vec<PolicyPatch> = policies
        .iter()
        .filter_map(|policy| {
            let found = recommendations(&policy.spec.drain, policy.status.as_ref());
            Some(PolicyPatch {
                namespace: policy.namespace().unwrap_or_default(),
                name: policy.name_any(),
                patch: merge_patch(&found)?,
            })
        })
        .collect();
    if let Some(format) = output {
        return document(&json!({"items": patches}), format);
    }
    if patches.is_empty() {
        return Ok("# Every policy gives what graceful measured its pods need.\n".to_owned());
    }
    let mut text = String::new();
    for patch in &patches {
        text.push_str(&format!(
            "kubectl patch gracefulpolicy {} -n {} --type merge -p '{}'\n",
            patch.name, patch.namespace, patch.patch
        ));
    }
    Ok(text)
}

fn document(value: &impl Serialize, format: Output) -> anyhow::Result<String> {
    Ok(match format {
        Output::Json => serde_json::to_string_pretty(value)? + "\n",
        Output::Yaml => serde_yaml_ng::to_string(value)?,
    })
}
