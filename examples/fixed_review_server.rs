//! The limit of graceful's stack, for the load benchmark (benches/admission-load.sh): a
//! bare axum + axum-server + rustls (ring) server that reads the body of `POST /mutate`
//! and answers a fixed AdmissionReview, deciding nothing.
//!
//!   fixed_review_server serve ADDR CERT KEY
//!   fixed_review_server cert DIR      (writes DIR/tls.crt and DIR/tls.key, self-signed)
//!   fixed_review_server review        (prints the benchmark's AdmissionReview)

#[path = "../tests/fixtures/admission.rs"]
mod fixtures;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;

const ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true,"status":{}}}"#;

async fn mutate(body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body);
    ([(header::CONTENT_TYPE, "application/json")], ANSWER)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, dir] if command == "cert" => {
            let cert = rcgen::generate_simple_self_signed(vec![
                "127.0.0.1".to_owned(),
                "localhost".to_owned(),
            ])?;
            let dir = std::path::Path::new(dir);
            std::fs::write(dir.join("tls.crt"), cert.cert.pem())?;
            std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem())?;
            Ok(())
        }
        [command] if command == "review" => {
            let review = fixtures::review("CREATE", false, &fixtures::three_container_pod());
            println!("{}", String::from_utf8(review)?);
            Ok(())
        }
        [command, addr, cert, key] if command == "serve" => {
            let addr: SocketAddr = addr.parse()?;
            let key = graceful::tls::certified_key(&std::fs::read(cert)?, &std::fs::read(key)?)?;
            let mut config = rustls::ServerConfig::builder_with_provider(graceful::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let app = Router::new().route("/mutate", post(mutate));
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    axum_server::bind_rustls(addr, RustlsConfig::from_config(Arc::new(config)))
                        .serve(app.into_make_service())
                        .await
                })?;
            Ok(())
        }
        _ => anyhow::bail!("usage: fixed_review_server serve ADDR CERT KEY | cert DIR | review"),
    }
}
