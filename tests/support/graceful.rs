//! `graceful run` as a child process of a test, on free loopback ports, with a fresh
//! self-signed serving certificate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Cluster;

/// A running `graceful run`, killed when dropped.
pub struct Graceful {
    child: Child,
    pub dir: PathBuf,
    pub webhook_port: u16,
    pub admin_port: u16,
    /// The serving certificate (PEM), which is its own CA.
    pub ca_pem: String,
}

impl Drop for Graceful {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep the log of a failed test to read.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A plain HTTP/1.0 GET on loopback; the whole response, headers included.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_at(SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// A plain HTTP/1.0 GET of `address` (e.g. a ClusterIP), giving up after 2 s.
pub fn http_get_at(address: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

impl Graceful {
    /// Starts `graceful run` against `cluster` and waits until it is ready. `name`
    /// keeps its files apart from other instances of this test binary, and names its
    /// Lease: two instances of the same name take turns as the status writer.
    pub fn start(cluster: &Cluster, name: &str, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("graceful-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a test directory");
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("a certificate");
        let ca_pem = cert.cert.pem();
        std::fs::write(dir.join("tls.crt"), &ca_pem).expect("the certificate is written");
        std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem())
            .expect("the key is written");
        let (webhook_port, admin_port) = (free_port(), free_port());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("graceful.log"))
            .expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_graceful"))
            .arg("run")
            .args(["--webhook-addr", &format!("127.0.0.1:{webhook_port}")])
            .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .arg("--tls-cert-file")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key-file")
            .arg(dir.join("tls.key"))
            .args(["--lease-namespace", "default"])
            .args([
                "--lease-name",
                &format!("graceful-test-{}-{name}", std::process::id()),
            ])
            .args(extra)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("graceful runs");
        let graceful = Graceful {
            child,
            dir,
            webhook_port,
            admin_port,
            ca_pem,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !graceful.ready() {
            assert!(
                Instant::now() < deadline,
                "graceful run did not become ready:\n{}",
                graceful.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        graceful
    }

    pub fn ready(&self) -> bool {
        http_get(self.admin_port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.0 200"))
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin_port, "/metrics").unwrap_or_default()
    }

    /// The value of one sample in `/metrics`, e.g. `graceful_tracked_pods`.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let metrics = self.metrics();
        let line = metrics
            .lines()
            .find(|line| line.split_whitespace().next() == Some(sample))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("graceful.log")).unwrap_or_default()
    }
}
