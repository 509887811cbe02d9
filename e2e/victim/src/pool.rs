//! A pool of at most N kept-alive HTTP/1.1 connections to one host, as HTTP client
//! libraries and proxies keep: a request takes the most recently used idle connection (or
//! opens one while fewer than N are open, else waits for one), and gives it back once the
//! whole response has arrived, unless the server said `Connection: close`.
//!
//! Like Go's `net/http` Transport, a request that fails on a *reused* connection before any
//! response arrived is sent once more on a new connection: the server may have closed the
//! idle connection just as the request left. Only idempotent requests may be retried; the
//! load's carry an idempotency key, which the app uses as the request's id. Each retry is
//! reported, never hidden.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

use crate::client::{self, Failure, Response};

type Sender = SendRequest<Empty<Bytes>>;

pub struct Pool {
    url: Uri,
    idle: Mutex<Vec<Sender>>,
    /// One permit per connection that may be open.
    slots: Semaphore,
}

/// A request's result, and whether it was sent a second time.
#[derive(Debug)]
pub struct Sent {
    pub result: Result<Response, Failure>,
    pub retried: bool,
}

/// How an attempt on one connection failed.
struct Broken {
    failure: Failure,
    /// Before a response head arrived: nothing of an answer was read.
    before_response: bool,
}

impl Pool {
    /// A pool of at most `size` connections (at least 1) to `url`'s host.
    pub fn new(url: &Uri, size: usize) -> Result<Self, Failure> {
        client::authority(url)?;
        Ok(Self {
            url: url.clone(),
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(size.max(1)),
        })
    }

    /// Sends `method` to the pool's URL and waits at most `timeout` for the whole response,
    /// waiting for a connection and a retry included.
    pub async fn send(&self, method: Method, key: Option<&str>, timeout: Duration) -> Sent {
        let mut retried = false;
        let attempts = async {
            // Never closed: the pool owns the semaphore.
            let _slot = self.slots.acquire().await;
            let (sender, reused) = match self.take_idle() {
                Some(sender) => (sender, true),
                None => (self.open().await?, false),
            };
            match self.exchange(sender, method.clone(), key).await {
                Ok(response) => Ok(response),
                Err(broken) if reused && broken.before_response => {
                    retried = true;
                    let sender = self.open().await?;
                    self.exchange(sender, method, key)
                        .await
                        .map_err(|b| b.failure)
                }
                Err(broken) => Err(broken.failure),
            }
        };
        let result = match tokio::time::timeout(timeout, attempts).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout),
        };
        Sent { result, retried }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Sender>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that is still open.
    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle();
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    async fn open(&self) -> Result<Sender, Failure> {
        let stream = client::connect(&self.url).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(client::exchange_failure)?;
        // Ends when either side closes; the sender then reports itself closed.
        tokio::spawn(connection);
        Ok(sender)
    }

    async fn exchange(
        &self,
        mut sender: Sender,
        method: Method,
        key: Option<&str>,
    ) -> Result<Response, Broken> {
        let early = |failure| Broken {
            failure,
            before_response: true,
        };
        let request = client::request(method, &self.url, key).map_err(early)?;
        sender
            .ready()
            .await
            .map_err(|e| early(client::exchange_failure(e)))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| early(client::exchange_failure(e)))?;
        let close = response
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let response = client::body(response).await.map_err(|failure| Broken {
            failure,
            before_response: false,
        })?;
        if !close {
            self.idle().push(sender);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// Serves each connection with `answer(connection number, request number on it)`:
    /// Some(bytes) to write, None to close without answering. Returns the URL and the
    /// number of connections accepted.
    async fn server(
        answer: impl Fn(u64, u64) -> Option<&'static [u8]> + Send + Sync + 'static,
    ) -> (Uri, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/incr", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let seen = accepted.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let connection = seen.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    for request in 0.. {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        match answer(connection, request) {
                            Some(bytes) => socket.write_all(bytes).await.unwrap(),
                            None => return,
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn requests_one_after_another_share_one_connection() {
        let (url, accepted) = server(|_, _| Some(OK)).await;
        let pool = Pool::new(&url, 4).unwrap();
        for _ in 0..5 {
            let sent = pool.send(Method::POST, None, Duration::from_secs(5)).await;
            assert_eq!(sent.result.unwrap().status, 200);
            assert!(!sent.retried);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn connection_close_is_honoured() {
        let (url, accepted) = server(|_, _| {
            Some(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        })
        .await;
        let pool = Pool::new(&url, 4).unwrap();
        for _ in 0..3 {
            let sent = pool.send(Method::POST, None, Duration::from_secs(5)).await;
            assert_eq!(sent.result.unwrap().status, 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_reused_connection_closed_before_an_answer_is_retried_once_on_a_new_one() {
        // The first connection answers once, then closes under the second request.
        let (url, accepted) =
            server(|connection, request| (connection > 0 || request == 0).then_some(OK)).await;
        let pool = Pool::new(&url, 1).unwrap();
        let first = pool.send(Method::POST, None, Duration::from_secs(5)).await;
        assert!(!first.retried);
        let second = pool.send(Method::POST, None, Duration::from_secs(5)).await;
        assert_eq!(second.result.unwrap().status, 200);
        assert!(second.retried);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_new_connection_closed_before_an_answer_is_not_retried() {
        let (url, accepted) = server(|_, _| None).await;
        let pool = Pool::new(&url, 1).unwrap();
        let sent = pool.send(Method::POST, None, Duration::from_secs(5)).await;
        assert!(matches!(sent.result, Err(Failure::Closed)), "{sent:?}");
        assert!(!sent.retried);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_retry_that_fails_too_is_a_loss() {
        // Every connection answers its first request only; the retry's connection then
        // closes too, as a pod that has gone would.
        let (url, _) =
            server(|connection, request| (connection == 0 && request == 0).then_some(OK)).await;
        let pool = Pool::new(&url, 1).unwrap();
        pool.send(Method::POST, None, Duration::from_secs(5))
            .await
            .result
            .unwrap();
        let sent = pool.send(Method::POST, None, Duration::from_secs(5)).await;
        assert!(sent.retried);
        assert!(matches!(sent.result, Err(Failure::Closed)), "{sent:?}");
    }
}
