//! One HTTP/1.1 exchange on a fresh connection (the pieces also serve `pool`). Every request opens its own connection so
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
    /// The connection opened but broke before a whole response arrived, on an I/O error
    /// ("connection reset").
    Io(io::ErrorKind),
    /// The connection opened but the peer closed it before a whole response arrived.
    Closed,
    /// The exchange failed otherwise.
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
            Failure::Io(kind) => write!(f, "exchange: {kind}"),
            Failure::Closed => f.write_str("exchange: connection closed before message completed"),
            Failure::Exchange(e) => write!(f, "exchange: {e}"),
            Failure::Timeout => f.write_str("timeout"),
        }
    }
}

impl std::error::Error for Failure {}

/// Sends `method url` with an empty body and waits at most `timeout` for the whole response.
pub async fn send(method: Method, url: &Uri, timeout: Duration) -> Result<Response, Failure> {
    send_with(method, url, None, timeout).await
}

/// `send`, telling the server the request's idempotency key when there is one.
pub async fn send_with(
    method: Method,
    url: &Uri,
    key: Option<&str>,
    timeout: Duration,
) -> Result<Response, Failure> {
    match tokio::time::timeout(timeout, exchange(method, url, key)).await {
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

/// The request `method url` with an empty body, and its idempotency key if any.
pub fn request(
    method: Method,
    url: &Uri,
    key: Option<&str>,
) -> Result<Request<Empty<Bytes>>, Failure> {
    let authority = authority(url)?;
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority.as_str());
    if let Some(key) = key {
        request = request.header(crate::app::IDEMPOTENCY_KEY, key);
    }
    request
        .body(Empty::<Bytes>::new())
        .map_err(|_| Failure::BadUrl(url.to_string()))
}

/// Opens a TCP connection to the URL's host and port.
pub async fn connect(url: &Uri) -> Result<TcpStream, Failure> {
    let authority = authority(url)?;
    let port = authority.port_u16().unwrap_or(80);
    TcpStream::connect((authority.host(), port))
        .await
        .map_err(Failure::Connect)
}

/// Reads a whole response body, at most `MAX_BODY` bytes.
pub async fn body(response: hyper::Response<hyper::body::Incoming>) -> Result<Response, Failure> {
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| match e.downcast::<hyper::Error>() {
            Ok(e) => exchange_failure(*e),
            Err(e) => Failure::Exchange(e.to_string()),
        })?
        .to_bytes();
    Ok(Response { status, body })
}

async fn exchange(method: Method, url: &Uri, key: Option<&str>) -> Result<Response, Failure> {
    let mut request = request(method, url, key)?;
    // One request per connection: the server may close as soon as it has answered.
    request.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    let stream = connect(url).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(exchange_failure)?;
    let response = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(exchange_failure)?;
        body(response).await
    };
    tokio::pin!(response);
    tokio::pin!(connection);
    // The connection future does the I/O; once it ends, whatever the response got is final.
    tokio::select! {
        result = &mut response => result,
        _ = &mut connection => response.await,
    }
}

/// Names a broken exchange by its I/O cause when there is one ("connection reset"),
/// otherwise by hyper's description ("connection closed before message completed").
pub fn exchange_failure(e: hyper::Error) -> Failure {
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return Failure::Io(io.kind());
        }
        source = cause.source();
    }
    if e.is_incomplete_message() {
        return Failure::Closed;
    }
    Failure::Exchange(e.to_string())
}
