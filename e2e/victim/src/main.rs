use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hyper::Uri;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use graceful_victim::counter::CounterClient;
use graceful_victim::{app, counter, load, report};

/// The app graceful's end-to-end proof rolls under load, its counter, and the load loop.
#[derive(Parser)]
#[command(name = "victim")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The app: POST /incr works a while, has the counter record it, answers 200.
    /// What it does on SIGTERM is --on-sigterm.
    Serve {
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// The counter's host; in a pod, from the `counter` Service's environment variables.
        #[arg(long, env = "COUNTER_SERVICE_HOST")]
        counter_host: String,
        #[arg(long, env = "COUNTER_SERVICE_PORT")]
        counter_port: u16,
        /// Work per request.
        #[arg(long, default_value = "100ms", value_parser = parse_duration)]
        work: Duration,
        /// careful: close the listener, answer the requests still arriving on open
        /// connections with `Connection: close`, close idle ones after 1 s, exit 0 once all
        /// have ended. exit: exit 0 at once (the most common naive app). slow: as careful,
        /// then --slow-drain more of shutdown work: longer than the default grace period.
        #[arg(long, value_enum, default_value_t = OnSigterm::Careful)]
        on_sigterm: OnSigterm,
        #[arg(long, default_value = "35s", value_parser = parse_duration)]
        slow_drain: Duration,
        /// The pod's name, told to the counter with each request (for the traffic tails).
        #[arg(long, env = "POD_NAME", default_value = "")]
        pod: String,
    },
    /// The counter: POST /increments/{id}, GET /count, POST /reset. Counts each id once.
    Counter {
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
    },
    /// Sends POST requests to URL at a fixed rate, each on a new connection or through a
    /// pool of kept-alive ones, then prints a JSON summary of what came back. SIGTERM or
    /// SIGINT ends it early: no request leaves after, those sent are awaited.
    Load {
        #[arg(long)]
        url: Uri,
        /// Requests per second.
        #[arg(long, default_value_t = 25.0, value_parser = parse_rate)]
        rate: f64,
        #[arg(long, default_value = "40s", value_parser = parse_duration)]
        duration: Duration,
        /// Per request, connecting included.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
        /// The counter's URL (http://host:port): reset before the run, compared after.
        #[arg(long)]
        counter: Option<String>,
        /// Keep a pool of at most N kept-alive connections (retrying once a request whose
        /// reused connection broke before any answer); without it, a new connection each.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        keep_alive: Option<u16>,
        /// The run's name (letters, digits, `-`): its requests' idempotency keys are
        /// RUN-N, so the counter counts it apart from other runs.
        #[arg(long, default_value = "load", value_parser = parse_run)]
        run: String,
        /// The pod watcher's deletion records (NAME SEEN TIMESTAMP GRACE per line), read
        /// at the end: each deleted pod's traffic tail (needs --counter).
        #[arg(long)]
        deletions: Option<PathBuf>,
    },
    /// Prints load summaries side by side: LABEL=FILE for each column.
    Report {
        #[arg(required = true, value_parser = parse_column)]
        columns: Vec<(String, PathBuf)>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            listen,
            counter_host,
            counter_port,
            work,
            on_sigterm,
            slow_drain,
            pod,
        } => {
            let counter = CounterClient::new(
                &format!("http://{counter_host}:{counter_port}"),
                Duration::from_secs(2),
            )?;
            let app = Arc::new(app::App::new(counter, work, pod));
            serve(listen, app::router(app), on_sigterm).await?;
            if on_sigterm == OnSigterm::Slow {
                eprintln!("shutdown work: {slow_drain:?} more before exiting");
                tokio::time::sleep(slow_drain).await;
            }
            Ok(())
        }
        Command::Counter { listen } => serve(listen, counter::router(), OnSigterm::Careful).await,
        Command::Load {
            url,
            rate,
            duration,
            timeout,
            counter,
            keep_alive,
            run,
            deletions,
        } => {
            let counter = counter
                .map(|base| CounterClient::new(&base, timeout))
                .transpose()?;
            if deletions.is_some() && counter.is_none() {
                bail!("--deletions needs --counter: the pods tell it their last requests");
            }
            let plan = load::Plan {
                url,
                rate,
                duration,
                timeout,
                counter,
                keep_alive: keep_alive.map(usize::from),
                run,
                deletions,
            };
            let summary = load::run(
                plan,
                terminated("no further requests; awaiting those sent")?,
            )
            .await?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(())
        }
        Command::Report { columns } => {
            let mut runs = Vec::new();
            for (label, path) in columns {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let summary = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a load summary", path.display()))?;
                runs.push((label, summary));
            }
            print!("{}", report::table(&runs));
            Ok(())
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnSigterm {
    Careful,
    Exit,
    Slow,
}

async fn serve(
    listen: SocketAddr,
    router: axum::Router,
    on_sigterm: OnSigterm,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    // Tests (and logs) learn the port from this line when --listen asks for port 0.
    println!("listening on {}", listener.local_addr()?);
    let signalled = terminated("closing the listener, draining the open connections")?;
    let shutdown = async move {
        signalled.await;
        if on_sigterm == OnSigterm::Exit {
            eprintln!("exiting at once");
            std::process::exit(0);
        }
    };
    graceful_victim::serve(listener, router, shutdown).await?;
    eprintln!("every connection has ended");
    Ok(())
}

/// Completes at SIGTERM (the kubelet) or SIGINT (a terminal), saying what follows.
fn terminated(next: &'static str) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => eprintln!("SIGTERM: {next}"),
            _ = int.recv() => eprintln!("SIGINT: {next}"),
        }
    })
}

/// A run's name: letters, digits and `-`, as an idempotency key's prefix.
fn parse_run(text: &str) -> anyhow::Result<String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        bail!("{text:?}: a run's name is letters, digits and -");
    }
    Ok(text.to_owned())
}

/// `40s`, `500ms`, `2m`, or plain seconds.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => bail!("{text:?}: the unit must be ms, s or m"),
    };
    Duration::try_from_secs_f64(seconds).with_context(|| format!("{text:?} is not a duration"))
}

fn parse_rate(text: &str) -> anyhow::Result<f64> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => bail!("{text:?}: the rate must be a number of requests per second above 0"),
    }
}

fn parse_column(text: &str) -> anyhow::Result<(String, PathBuf)> {
    match text.split_once('=') {
        Some((label, path)) if !label.is_empty() && !path.is_empty() => {
            Ok((label.to_owned(), PathBuf::from(path)))
        }
        _ => bail!("{text:?}: expected LABEL=FILE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("40s").unwrap(), Duration::from_secs(40));
        assert_eq!(parse_duration("40").unwrap(), Duration::from_secs(40));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        for bad in ["", "s", "10h", "-1s", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_are_positive() {
        assert_eq!(parse_rate("25").unwrap(), 25.0);
        for bad in ["0", "-3", "NaN", "inf", "x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_names_fit_in_a_key() {
        assert_eq!(
            parse_run("ingress-keep-alive").unwrap(),
            "ingress-keep-alive"
        );
        for bad in ["", "a b", "a/b", "a.b"] {
            assert!(parse_run(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn columns_are_label_equals_file() {
        assert_eq!(
            parse_column("with policy=/tmp/b.json").unwrap(),
            ("with policy".to_owned(), PathBuf::from("/tmp/b.json"))
        );
        assert!(parse_column("nolabel").is_err());
        assert!(parse_column("=x").is_err());
    }
}
