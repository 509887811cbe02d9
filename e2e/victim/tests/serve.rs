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

/// A request sent to the app, once it has reached the app and started its work.
async fn in_flight(
    app: &Process,
) -> tokio::task::JoinHandle<Result<client::Response, client::Failure>> {
    let url = format!("http://{}/incr", app.addr).parse().unwrap();
    let request =
        tokio::spawn(
            async move { client::send(Method::POST, &url, Duration::from_secs(10)).await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    request
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
    let in_flight = in_flight(&app).await;

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

/// A counter and an app with `args` after the counter's address.
fn counter_and_app(args: &[&str]) -> (Process, Process) {
    let counter = Process::start(&["counter", "--listen", "127.0.0.1:0"]);
    let (host, port) = counter.addr.rsplit_once(':').unwrap();
    let mut all = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--counter-host",
        host,
        "--counter-port",
        port,
    ];
    all.extend_from_slice(args);
    let app = Process::start(&all);
    (counter, app)
}

/// Writes one keep-alive request on `stream` and reads its whole response head and body
/// (the app answers a few bytes of JSON with a content-length).
async fn exchange(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"POST /incr HTTP/1.1\r\nhost: app\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(
            n > 0,
            "closed after {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&response).to_lowercase();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|l| l.trim().parse().ok())
                .expect("a content-length");
            if body.len() >= length {
                return text;
            }
        }
    }
}

/// The app closes `stream` without sending more, and exits 0.
async fn closed_then_exits(stream: &mut tokio::net::TcpStream, app: &mut Process) {
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(app.exit_code(Duration::from_secs(5)).await, Some(0));
}

#[tokio::test]
async fn a_draining_app_ends_a_kept_alive_connection_after_a_whole_response() {
    let (_counter, mut app) = counter_and_app(&["--work", "1ms"]);
    let mut stream = tokio::net::TcpStream::connect(&app.addr).await.unwrap();
    let before = exchange(&mut stream).await;
    assert!(before.starts_with("http/1.1 200"), "{before}");
    assert!(!before.contains("connection: close"), "{before}");

    app.terminate();
    // Until its idle wait is over, the open connection is still served, and told to close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = exchange(&mut stream).await;
    assert!(during.starts_with("http/1.1 200"), "{during}");
    assert!(during.contains("connection: close"), "{during}");
    closed_then_exits(&mut stream, &mut app).await;
}

#[tokio::test]
async fn a_draining_app_closes_an_idle_connection_and_exits() {
    let (_counter, mut app) = counter_and_app(&["--work", "1ms"]);
    let mut stream = tokio::net::TcpStream::connect(&app.addr).await.unwrap();
    exchange(&mut stream).await;
    app.terminate();
    // Nothing more is sent: the app closes the connection after its idle wait.
    closed_then_exits(&mut stream, &mut app).await;
}

#[tokio::test]
async fn the_exit_app_drops_its_in_flight_requests() {
    let (_counter, mut app) = counter_and_app(&["--work", "1500ms", "--on-sigterm", "exit"]);
    let in_flight = in_flight(&app).await;
    app.terminate();
    assert_eq!(app.exit_code(Duration::from_secs(5)).await, Some(0));
    let lost = in_flight.await.unwrap();
    assert!(lost.is_err(), "{lost:?}");
}
