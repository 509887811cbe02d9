//! The serving certificate from a PEM chain and key on disk (cert-manager's mounted
//! Secret, say), reloaded when they change, without a restart.
//!
//! The files are polled and compared by content rather than watched with inotify: a
//! Secret mounted by the kubelet changes by swapping a symlink two levels up, which
//! file-change events report unreliably, and reading two small files every few seconds
//! costs nothing. A pair that does not load (a key written before its certificate, say)
//! keeps the previous certificate in service until the next poll.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{CertError, Serving, certified_key_at};
use crate::metrics::Metrics;

/// How often the files are compared with what is loaded.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The certificate in service, and the files it comes from.
#[derive(Debug)]
pub struct CertFiles {
    cert_path: PathBuf,
    key_path: PathBuf,
    serving: Arc<Serving>,
    /// The file contents of the certificate in service.
    loaded_from: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
    metrics: Arc<Metrics>,
}

impl CertFiles {
    /// Nothing is loaded until [`CertFiles::reload`] or [`CertFiles::watch`] runs.
    pub fn new(
        cert_path: PathBuf,
        key_path: PathBuf,
        serving: Arc<Serving>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            cert_path,
            key_path,
            serving,
            loaded_from: Mutex::new(None),
            metrics,
        }
    }

    /// Loads the files if they differ from what is in service; `Ok(true)` when a new
    /// certificate went into service.
    pub fn reload(&self) -> Result<bool, CertError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| CertError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let contents = (read(&self.cert_path)?, read(&self.key_path)?);
        let mut loaded_from = self
            .loaded_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if loaded_from.as_ref() == Some(&contents) {
            return Ok(false);
        }
        let key = certified_key_at(&contents.0, &contents.1, &self.cert_path, &self.key_path)?;
        self.metrics.certificate_in_service(&key);
        self.serving.set(key);
        *loaded_from = Some(contents);
        Ok(true)
    }

    /// Polls the files for as long as the server runs.
    pub async fn watch(self: Arc<Self>) {
        let mut failing = false;
        loop {
            match self.reload() {
                Ok(true) => {
                    failing = false;
                    self.metrics.tls_reloaded(true);
                    tracing::info!(cert = %self.cert_path.display(), "serving certificate loaded");
                }
                Ok(false) => failing = false,
                Err(error) => {
                    // Said once per failing spell, not every poll.
                    if !failing {
                        self.metrics.tls_reloaded(false);
                        tracing::warn!(%error, in_service = self.serving.is_loaded(), "serving certificate not loaded");
                    }
                    failing = true;
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    fn serving(files: &CertFiles) -> Vec<u8> {
        files.serving.current().unwrap().cert[0].to_vec()
    }

    #[test]
    fn loads_then_reloads_only_on_change_and_keeps_the_old_one_on_a_bad_pair() {
        let dir = std::env::temp_dir().join(format!("graceful-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
        let files = CertFiles::new(
            cert_path.clone(),
            key_path.clone(),
            Arc::default(),
            Arc::new(Metrics::new()),
        );
        assert!(!files.serving.is_loaded());
        assert!(matches!(files.reload(), Err(CertError::Read { .. })));

        let (cert, key) = self_signed("one.example");
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        assert!(files.reload().unwrap());
        assert!(files.serving.is_loaded());
        let first = serving(&files);
        assert!(!files.reload().unwrap(), "unchanged files are not reloaded");

        let (cert2, key2) = self_signed("two.example");
        std::fs::write(&cert_path, &cert2).unwrap();
        assert!(matches!(files.reload(), Err(CertError::Key(_))));
        assert_eq!(
            serving(&files),
            first,
            "a mismatched pair keeps the old one"
        );

        std::fs::write(&key_path, &key2).unwrap();
        assert!(files.reload().unwrap());
        assert_ne!(serving(&files), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_a_pem_error() {
        assert!(matches!(
            super::super::certified_key(b"nope", b"nope"),
            Err(CertError::Pem { .. })
        ));
    }
}
