//! graceful's own certificate authority, the default when no certificate files are given.
//!
//! One Secret in graceful's namespace holds the chain every replica serves: a CA
//! certificate and a serving certificate with its key (the CA's key is dropped once it
//! has signed, so nothing can mint with it later). Every replica polls the Secret, loads
//! its serving certificate, and server-side-applies the CAs to trust into every webhook
//! of the MutatingWebhookConfiguration. Whichever replica finds a step due writes it with
//! the resourceVersion it read, so of two replicas only one mints; the other re-reads.
//!
//! Renewal never leaves the apiserver unable to verify what any replica serves:
//! 1. at two thirds of the validity a next chain is minted and its CA joins the bundle,
//!    beside the current one;
//! 2. once that bundle is in the webhook configuration and [`SETTLE`] has passed, the
//!    next chain goes into service and the old CA stays in the bundle as the previous;
//! 3. [`SETTLE`] later, when every replica has reloaded, the previous CA leaves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::{Serving, certified_key};
use crate::metrics::Metrics;

/// How often the Secret is read and the bundle checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long a change takes to reach every replica (one poll) and the apiserver (its
/// webhook configuration watch), with room to spare: the wait between rotation steps.
pub const SETTLE: Duration = Duration::from_secs(6);
/// The shortest validity accepted: the three steps of a renewal must fit in its last third.
pub const MIN_VALIDITY: Duration = Duration::from_secs(60);
/// Written on the MutatingWebhookConfiguration's caBundle fields.
const FIELD_MANAGER: &str = "graceful";

const CA: &str = "ca.crt";
const CERT: &str = "tls.crt";
const KEY: &str = "tls.key";
const NEXT_CA: &str = "next-ca.crt";
const NEXT_CERT: &str = "next-tls.crt";
const NEXT_KEY: &str = "next-tls.key";
const PREVIOUS_CA: &str = "previous-ca.crt";
const RENEW_AFTER: &str = "graceful.dev/renew-after";
const NEXT_RENEW_AFTER: &str = "graceful.dev/next-renew-after";
const NEXT_SERVE_AFTER: &str = "graceful.dev/next-serve-after";
const PREVIOUS_UNTIL: &str = "graceful.dev/previous-ca-until";

/// What graceful's certificates are for and where they live.
#[derive(Debug, Clone)]
pub struct CertConfig {
    pub namespace: String,
    pub secret: String,
    pub webhook_config: String,
    /// The serving certificate's subject alternative names (DNS names or IPs).
    pub names: Vec<String>,
    pub validity: Duration,
}

impl CertConfig {
    /// The names a Service `service` in `namespace` is called by, then `extra`.
    pub fn service_names(service: &str, namespace: &str, extra: &[String]) -> Vec<String> {
        let mut names = vec![
            service.to_owned(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        names.extend(extra.iter().cloned());
        names
    }
}

/// A serving certificate, the CA that signed it, and when to start replacing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub renew_after: Timestamp,
}

/// The Secret's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// In service.
    pub current: Chain,
    /// Trusted by the bundle, served once `serve_after` has passed.
    pub next: Option<(Chain, Timestamp)>,
    /// The CA of the chain served before, trusted until the time given.
    pub previous_ca: Option<(String, Timestamp)>,
}

/// The one step due on what was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No usable Secret: mint the first chain.
    Create,
    /// The current chain is due for renewal: mint the next one, trusted but not served.
    PublishNext,
    /// The next chain is trusted where it matters: serve it.
    Switch,
    /// No replica can still serve the previous chain: stop trusting its CA.
    RetirePrevious,
    Nothing,
}

impl Step {
    fn label(self) -> &'static str {
        match self {
            Step::Create => "created",
            Step::PublishNext => "next_published",
            Step::Switch => "switched",
            Step::RetirePrevious => "previous_retired",
            Step::Nothing => "nothing",
        }
    }
}

/// The rule every replica applies. `next_trusted`: the webhook configuration's bundle
/// already holds the next chain's CA.
pub fn step(stored: Option<&Stored>, now: Timestamp, next_trusted: bool) -> Step {
    let Some(stored) = stored else {
        return Step::Create;
    };
    if stored
        .previous_ca
        .as_ref()
        .is_some_and(|(_, until)| now >= *until)
    {
        return Step::RetirePrevious;
    }
    match &stored.next {
        Some((_, serve_after)) if now >= *serve_after && next_trusted => Step::Switch,
        Some(_) => Step::Nothing,
        None if now >= stored.current.renew_after => Step::PublishNext,
        None => Step::Nothing,
    }
}

/// The Secret's content after `step`; `mint` makes a new chain when the step needs one.
pub fn apply(
    step: Step,
    stored: Option<Stored>,
    now: Timestamp,
    mint: impl FnOnce() -> Result<Chain, rcgen::Error>,
) -> Result<Option<Stored>, rcgen::Error> {
    let settled = now + signed(SETTLE);
    Ok(match (step, stored) {
        (Step::Create, _) => Some(Stored {
            current: mint()?,
            next: None,
            previous_ca: None,
        }),
        (Step::PublishNext, Some(stored)) => Some(Stored {
            next: Some((mint()?, settled)),
            ..stored
        }),
        (
            Step::Switch,
            Some(Stored {
                current,
                next: Some((next, _)),
                ..
            }),
        ) => Some(Stored {
            current: next,
            next: None,
            previous_ca: Some((current.ca, settled)),
        }),
        (Step::RetirePrevious, Some(stored)) => Some(Stored {
            previous_ca: None,
            ..stored
        }),
        _ => None,
    })
}

impl Stored {
    /// The CAs to trust, each once: current, next, previous.
    pub fn bundle(&self) -> String {
        let mut bundle = String::new();
        let cas = [
            Some(&self.current.ca),
            self.next.as_ref().map(|(next, _)| &next.ca),
            self.previous_ca.as_ref().map(|(ca, _)| ca),
        ];
        for ca in cas.into_iter().flatten() {
            if !bundle.contains(ca.as_str()) {
                bundle.push_str(ca);
            }
        }
        bundle
    }

    /// Reads a Secret written by [`Stored::to_secret`]; `None` when it is not usable.
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| {
            data.get(key)
                .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
        };
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        let time = |key: &str| {
            annotations
                .get(key)
                .and_then(|t| t.parse::<Timestamp>().ok())
        };
        let chain = |ca: &str, cert: &str, key: &str, renew: &str| {
            Some(Chain {
                ca: text(ca)?,
                cert: text(cert)?,
                key: text(key)?,
                renew_after: time(renew)?,
            })
        };
        let next = chain(NEXT_CA, NEXT_CERT, NEXT_KEY, NEXT_RENEW_AFTER)
            .and_then(|next| Some((next, time(NEXT_SERVE_AFTER)?)));
        let previous_ca = text(PREVIOUS_CA).and_then(|ca| Some((ca, time(PREVIOUS_UNTIL)?)));
        Some(Self {
            current: chain(CA, CERT, KEY, RENEW_AFTER)?,
            next,
            previous_ca,
        })
    }

    /// The Secret that holds this, as `base` (name, namespace, resourceVersion) says.
    pub fn to_secret(&self, base: ObjectMeta) -> Secret {
        let mut data = BTreeMap::new();
        let mut annotations = base.annotations.clone().unwrap_or_default();
        for key in [
            RENEW_AFTER,
            NEXT_RENEW_AFTER,
            NEXT_SERVE_AFTER,
            PREVIOUS_UNTIL,
        ] {
            annotations.remove(key);
        }
        let mut put = |key: &str, value: &str| {
            data.insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
        };
        put(CA, &self.current.ca);
        put(CERT, &self.current.cert);
        put(KEY, &self.current.key);
        annotations.insert(RENEW_AFTER.into(), self.current.renew_after.to_string());
        if let Some((next, serve_after)) = &self.next {
            put(NEXT_CA, &next.ca);
            put(NEXT_CERT, &next.cert);
            put(NEXT_KEY, &next.key);
            annotations.insert(NEXT_RENEW_AFTER.into(), next.renew_after.to_string());
            annotations.insert(NEXT_SERVE_AFTER.into(), serve_after.to_string());
        }
        if let Some((ca, until)) = &self.previous_ca {
            put(PREVIOUS_CA, ca);
            annotations.insert(PREVIOUS_UNTIL.into(), until.to_string());
        }
        Secret {
            metadata: ObjectMeta {
                annotations: Some(annotations),
                ..base
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

/// A new CA and a serving certificate for `names` it signed, valid from a minute ago
/// (clocks disagree a little) for `validity`; due for renewal at two thirds of it.
pub fn mint(names: &[String], validity: Duration, now: Timestamp) -> Result<Chain, rcgen::Error> {
    let time = |t: Timestamp| {
        time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(|_| rcgen::Error::Time)
    };
    let not_before = time(now - SignedDuration::from_secs(60))?;
    let not_after = time(now + signed(validity))?;
    let name = |common_name: &str| {
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        name
    };

    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("graceful webhook CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut serving = CertificateParams::new(names.to_vec())?;
    serving.distinguished_name = name(names.first().map_or("graceful", String::as_str));
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    (serving.not_before, serving.not_after) = (not_before, not_after);
    let key = KeyPair::generate()?;
    let cert = serving.signed_by(&key, &Issuer::new(ca, ca_key))?;
    Ok(Chain {
        ca: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
        renew_after: now + signed(validity * 2 / 3),
    })
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("minting a certificate: {0}")]
    Mint(#[from] rcgen::Error),
    #[error("the Secret's certificate does not load: {0}")]
    Load(#[from] super::CertError),
    #[error("the Secret kept changing under us")]
    Contended,
}

/// The loop that keeps the Secret, the served certificate and the bundle in step.
pub struct Managed {
    settings: CertConfig,
    secrets: Api<Secret>,
    configs: Api<MutatingWebhookConfiguration>,
    serving: Arc<Serving>,
    /// The certificate PEM in service, to load only what changed.
    loaded: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

impl Managed {
    pub fn new(
        client: Client,
        settings: CertConfig,
        serving: Arc<Serving>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), &settings.namespace),
            configs: Api::all(client),
            settings,
            serving,
            loaded: Mutex::new(None),
            metrics,
        }
    }

    /// Runs for as long as the server does.
    pub async fn run(self) {
        let mut failing = false;
        loop {
            match self.round().await {
                Ok(()) => failing = false,
                Err(error) => {
                    // Said once per failing spell, not every poll.
                    if !failing {
                        tracing::warn!(%error, in_service = self.serving.is_loaded(), "managing the webhook certificate");
                    }
                    failing = true;
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn round(&self) -> Result<(), Error> {
        let stored = self.advance().await?;
        self.load(&stored.current)?;
        self.inject(&stored.bundle()).await
    }

    /// Reads the Secret and writes the step due, if any; what the Secret holds after.
    async fn advance(&self) -> Result<Stored, Error> {
        let name = &self.settings.secret;
        // A conflict means another replica wrote first: read again, never mint twice.
        for _ in 0..3 {
            let read = self.secrets.get_opt(name).await?;
            let stored = read.as_ref().and_then(Stored::from_secret);
            let next_trusted = match &stored {
                Some(Stored {
                    next: Some((next, _)),
                    ..
                }) => self.trusted(&next.ca).await?,
                _ => false,
            };
            let now = Timestamp::now();
            let step = step(stored.as_ref(), now, next_trusted);
            let mint = || mint(&self.settings.names, self.settings.validity, now);
            let Some(written) = apply(step, stored.clone(), now, mint)? else {
                return stored.ok_or(Error::Contended);
            };
            let base = ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                labels: Some([("app.kubernetes.io/name".into(), "graceful".into())].into()),
                ..ObjectMeta::default()
            };
            let result = match read {
                None => {
                    let secret = written.to_secret(base);
                    self.secrets.create(&PostParams::default(), &secret).await
                }
                Some(read) => {
                    let secret = written.to_secret(ObjectMeta {
                        labels: read.metadata.labels.clone().or(base.labels),
                        ..read.metadata
                    });
                    self.secrets
                        .replace(name, &PostParams::default(), &secret)
                        .await
                }
            };
            match result {
                Ok(_) => {
                    self.metrics.certificate_step(step.label());
                    tracing::info!(secret = %name, step = step.label(), "webhook certificate");
                    return Ok(written);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Contended)
    }

    /// Whether every webhook of the configuration trusts `ca`.
    async fn trusted(&self, ca: &str) -> Result<bool, Error> {
        let Some(config) = self.configs.get_opt(&self.settings.webhook_config).await? else {
            return Ok(false);
        };
        Ok(bundles(&config)
            .iter()
            .all(|(_, bundle)| bundle.as_deref().is_some_and(|b| b.contains(ca))))
    }

    fn load(&self, chain: &Chain) -> Result<(), Error> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.as_deref() == Some(chain.cert.as_str()) {
            return Ok(());
        }
        let key = certified_key(chain.cert.as_bytes(), chain.key.as_bytes());
        self.metrics.tls_reloaded(key.is_ok());
        let key = key?;
        self.metrics.certificate_in_service(&key);
        self.serving.set(key);
        *loaded = Some(chain.cert.clone());
        tracing::info!(secret = %self.settings.secret, "serving certificate loaded");
        Ok(())
    }

    /// Server-side-applies `bundle` to every webhook of the configuration that lacks it.
    async fn inject(&self, bundle: &str) -> Result<(), Error> {
        let name = &self.settings.webhook_config;
        let Some(config) = self.configs.get_opt(name).await? else {
            // Installed after graceful, or by another tool: the next poll tries again.
            tracing::debug!(%name, "no MutatingWebhookConfiguration to inject the CA into");
            return Ok(());
        };
        let webhooks = bundles(&config);
        if webhooks.iter().all(|(_, b)| b.as_deref() == Some(bundle)) {
            return Ok(());
        }
        let encoded = ByteString(bundle.as_bytes().to_vec());
        let apply = serde_json::json!({
            "apiVersion": MutatingWebhookConfiguration::api_version(&()),
            "kind": MutatingWebhookConfiguration::kind(&()),
            "metadata": {"name": name},
            "webhooks": webhooks.iter().map(|(webhook, _)| serde_json::json!({
                "name": webhook,
                "clientConfig": {"caBundle": encoded},
            })).collect::<Vec<_>>(),
        });
        self.configs
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&apply),
            )
            .await?;
        tracing::info!(%name, webhooks = webhooks.len(), "CA bundle injected");
        Ok(())
    }
}

/// Each webhook's name and caBundle (as text).
fn bundles(config: &MutatingWebhookConfiguration) -> Vec<(String, Option<String>)> {
    config
        .webhooks
        .iter()
        .flatten()
        .map(|webhook| {
            let bundle = webhook
                .client_config
                .ca_bundle
                .as_ref()
                .and_then(|b| String::from_utf8(b.0.clone()).ok());
            (webhook.name.clone(), bundle)
        })
        .collect()
}

#[cfg(test)]
mod tests;
