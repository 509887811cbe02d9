//! One HTTP/1.1 exchange on a fresh connection. Every request opens its own connection so
//! that kube-proxy routes each one afresh (as separate clients would be), and the failure
//! is named by where it happened: connecting, or on the connection once open.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::http::uri::Authority;
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Responses here are a few bytes of JSON; anything bigger is not one of ours.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

#[derive(Debug)]
pub enum Failure {
    /// The URL is not `http://host:port/...`.
    BadUrl(String),
    /// No connection: refused, unreachable, reset during the handshake.
    Connect(io::Error),
    /// The connection opened but broke before a whole response arrived.
    Exchange(String),
    /// Nothing complete within the timeout.
    Timeout,
}

/// The messages double as the load's error labels, so they name a kind, not an instance.
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadUrl(url) => write!(f, "bad url: {url}"),
            Failure::Connect(e) => write!(f, "connect: {}", e.kind()),
            Failure::Exchange(e) => write!(f, "exchange: {e}"),
            Failure::Timeout => f.write_str("timeout"),
        }
    }
}

impl std::error::Error for Failure {}

/// Sends `method url` with an empty body and waits at most `timeout` for the whole response.
pub async fn send(method: Method, url: &Uri, timeout: Duration) -> Result<Response, Failure> {
    match tokio::time::timeout(timeout, exchange(method, url)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

/// The `host[:port]` of an `http://` URL: the only URLs this client speaks to.
pub fn authority(url: &Uri) -> Result<&Authority, Failure> {
    match (url.scheme_str(), url.authority()) {
        (Some("http"), Some(authority)) => Ok(authority),
        _ => Err(Failure::BadUrl(url.to_string())),
    }
}

async fn exchange(method: Method, url: &Uri) -> Result<Response, Failure> {
    let authority = authority(url)?;
    let port = authority.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((authority.host(), port))
        .await
        .map_err(Failure::Connect)?;
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority.as_str())
        // One request per connection: the server may close as soon as it has answered.
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| Failure::BadUrl(url.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(exchange_failure)?;
    let response = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Response { status, body })
    };
    tokio::pin!(response);
    tokio::pin!(connection);
    // The connection future does the I/O; once it ends, whatever the response got is final.
    let result = tokio::select! {
        result = &mut response => result,
        _ = &mut connection => response.await,
    };
    result.map_err(|e| match e.downcast::<hyper::Error>() {
        Ok(e) => exchange_failure(*e),
        Err(e) => Failure::Exchange(e.to_string()),
    })
}

/// Names a broken exchange by its I/O cause when there is one ("connection reset"),
/// otherwise by hyper's description ("connection closed before message completed").
fn exchange_failure(e: hyper::Error) -> Failure {
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return Failure::Exchange(io.kind().to_string());
        }
        source = cause.source();
    }
    Failure::Exchange(e.to_string())
}
