//! `victim serve` and `victim counter` as processes: what SIGTERM does to the app.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use graceful_victim::client;
use graceful_victim::counter::CounterClient;
use hyper::{Method, StatusCode};

/// A `victim` subprocess, killed if the test ends first.
struct Process {
    child: Child,
    addr: String,
}

impl Process {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_victim"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("victim starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, addr }
    }

    fn terminate(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid, which it cannot have released: not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// Waits for the exit without blocking the runtime's other tasks.
    async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("still running after {within:?}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_refuses_new_connections_at_once_and_finishes_in_flight_requests() {
    let counter = Process::start(&["counter", "--listen", "127.0.0.1:0"]);
    let (counter_host, counter_port) = counter.addr.rsplit_once(':').unwrap();
    let mut app = Process::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--counter-host",
        counter_host,
        "--counter-port",
        counter_port,
        "--work",
        "1500ms",
    ]);
    let url = format!("http://{}/incr", app.addr).parse().unwrap();
    let in_flight =
        tokio::spawn(
            async move { client::send(Method::POST, &url, Duration::from_secs(10)).await },
        );
    // Let the request reach the app and start its work.
    tokio::time::sleep(Duration::from_millis(300)).await;

    app.terminate();
    let signalled = Instant::now();
    loop {
        match tokio::net::TcpStream::connect(&app.addr).await {
            // Reset: this connection sat in the backlog when the listener closed.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                break;
            }
            Err(e) => panic!("connecting after SIGTERM: {e}"),
            Ok(_) => {
                assert!(
                    signalled.elapsed() < Duration::from_secs(1),
                    "still accepting {:?} after SIGTERM",
                    signalled.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    assert!(
        !in_flight.is_finished(),
        "the request ended before the listener closed"
    );

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(app.exit_code(Duration::from_secs(5)).await, Some(0));

    let counter =
        CounterClient::new(&format!("http://{}", counter.addr), Duration::from_secs(2)).unwrap();
    assert_eq!(counter.read().await.unwrap().count, 1);
}

#[tokio::test]
async fn the_app_answers_503_when_the_counter_cannot_record() {
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = gone.local_addr().unwrap().port().to_string();
    drop(gone);
    let app = Process::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--counter-host",
        "127.0.0.1",
        "--counter-port",
        &port,
        "--work",
        "1ms",
    ]);
    let url = format!("http://{}/incr", app.addr).parse().unwrap();
    let response = client::send(Method::POST, &url, Duration::from_secs(5))
        .await
        .unwrap();
    // Never a 2xx for work that was not recorded.
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
}
