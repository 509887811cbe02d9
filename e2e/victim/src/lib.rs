//! The app graceful's end-to-end proof rolls under load (the articles' "guinea pig"): a
//! naive but well-meaning HTTP server, the counter it reports each request to (outside its
//! pods, so the count survives them), and the open-loop load that counts what was lost.

pub mod app;
pub mod client;
pub mod counter;
pub mod kinds;
pub mod load;
pub mod pool;
pub mod report;
pub mod tail;

use std::future::Future;
use std::time::Duration;

use axum::http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Once draining, a kept-alive connection that carries no request for this long is closed:
/// long enough for a client that has just picked it from its pool to send on it, short
/// enough that the drain ends soon after the last request.
pub const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Serves `router` until `shutdown` completes, then drains: closes the listener at once
/// (new connections are refused), answers every further request on an open connection
/// with `Connection: close` (so a client's kept-alive connection ends cleanly after a
/// whole response), closes connections idle for `IDLE_WAIT`, and returns once every
/// connection has ended.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (draining, drain) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors or a connection reset in the backlog: keep serving.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        connections.spawn(connection(stream, router.clone(), drain.clone()));
        // Forget the connections that have ended.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // Fails only when no connection is left to tell.
    let _ = draining.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    router: axum::Router,
    drain: watch::Receiver<bool>,
) {
    let responses = drain.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let router = router.clone();
        let responses = responses.clone();
        async move {
            let mut response = router.oneshot(request).await?;
            if *responses.borrow() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let served =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    let mut drain = drain;
    tokio::select! {
        _ = served.as_mut() => return,
        // Err: the server is gone, which only happens once it has returned.
        _ = drain.wait_for(|draining| *draining) => {}
    }
    tokio::select! {
        _ = served.as_mut() => return,
        () = tokio::time::sleep(IDLE_WAIT) => served.as_mut().graceful_shutdown(),
    }
    let _ = served.await;
}
