//! The app graceful's end-to-end proof rolls under load (the articles' "guinea pig"): a
//! naive but well-meaning HTTP server, the counter it reports each request to (outside its
//! pods, so the count survives them), and the open-loop load that counts what was lost.

pub mod app;
pub mod client;
pub mod counter;
pub mod load;
pub mod report;

use std::future::Future;

use tokio::net::TcpListener;

/// Serves `router` until `shutdown` completes, then closes the listener at once (new
/// connections are refused), lets in-flight requests finish, and returns.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
