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
    /// On SIGTERM it stops accepting at once, finishes in-flight requests, exits 0.
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
    },
    /// The counter: POST /increments/{id}, GET /count, POST /reset. Counts each id once.
    Counter {
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
    },
    /// Sends POST requests to URL at a fixed rate, each on a new connection, then prints
    /// a JSON summary of what came back.
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
        } => {
            let counter = CounterClient::new(
                &format!("http://{counter_host}:{counter_port}"),
                Duration::from_secs(2),
            )?;
            let app = Arc::new(app::App::new(counter, work));
            serve(listen, app::router(app)).await
        }
        Command::Counter { listen } => serve(listen, counter::router()).await,
        Command::Load {
            url,
            rate,
            duration,
            timeout,
            counter,
        } => {
            let counter = counter
                .map(|base| CounterClient::new(&base, timeout))
                .transpose()?;
            let summary = load::run(load::Plan {
                url,
                rate,
                duration,
                timeout,
                counter,
            })
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

async fn serve(listen: SocketAddr, router: axum::Router) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    // Tests (and logs) learn the port from this line when --listen asks for port 0.
    println!("listening on {}", listener.local_addr()?);
    graceful_victim::serve(listener, router, terminated()?).await?;
    eprintln!("in-flight requests finished; exiting");
    Ok(())
}

/// Completes at SIGTERM (the kubelet) or SIGINT (a terminal).
fn terminated() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => eprintln!("SIGTERM: closing the listener, finishing in-flight requests"),
            _ = int.recv() => eprintln!("SIGINT: closing the listener, finishing in-flight requests"),
        }
    })
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
    fn columns_are_label_equals_file() {
        assert_eq!(
            parse_column("with policy=/tmp/b.json").unwrap(),
            ("with policy".to_owned(), PathBuf::from("/tmp/b.json"))
        );
        assert!(parse_column("nolabel").is_err());
        assert!(parse_column("=x").is_err());
    }
}
