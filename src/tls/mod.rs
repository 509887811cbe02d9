//! The webhook's serving certificate. Whatever supplies it (files on disk, or graceful's
//! own certificate authority kept in a Secret), the TLS server asks [`Serving`] for the
//! certificate on every handshake, so a new one goes into service without a restart.

pub mod files;
pub mod managed;

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use files::CertFiles;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("reading {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("the key does not go with the certificate: {0}")]
    Key(rustls::Error),
}

/// The ring provider, explicitly: graceful never links OpenSSL or aws-lc.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain and private key into a serving certificate.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, CertError> {
    certified_key_at(
        cert_pem,
        key_pem,
        Path::new("certificate"),
        Path::new("key"),
    )
}

/// As [`certified_key`], naming where the certificate and key come from in errors.
fn certified_key_at(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, CertError> {
    let pem_error = |path: &Path, message: String| CertError::Pem {
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(cert_path, "no CERTIFICATE block".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem_error(key_path, e.to_string()))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(CertError::Key)
}

/// When the leaf of `key`'s chain expires (its notAfter, Unix seconds); `None` when it
/// cannot be read, which rustls would have refused already.
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.end_entity_cert().ok()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf).ok()?;
    Some(certificate.validity().not_after.timestamp())
}

/// The certificate in service; none until the first one is set.
#[derive(Debug)]
pub struct Serving {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    loaded: tokio::sync::watch::Sender<bool>,
}

impl Default for Serving {
    fn default() -> Self {
        Self {
            current: RwLock::default(),
            loaded: tokio::sync::watch::channel(false).0,
        }
    }
}

impl Serving {
    pub fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(key));
        self.loaded.send_replace(true);
    }

    pub fn is_loaded(&self) -> bool {
        self.current().is_some()
    }

    /// Waits until a certificate is in service.
    pub async fn until_loaded(&self) {
        let mut loaded = self.loaded.subscribe();
        // The sender lives in `self`, so the wait only ends with a certificate.
        let _ = loaded.wait_for(|loaded| *loaded).await;
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A rustls server configuration that serves whatever certificate is current.
    pub fn server_config(self: Arc<Self>) -> Result<ServerConfig, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for Serving {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}
