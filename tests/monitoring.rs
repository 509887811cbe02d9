//! manifests/monitoring/ with the real tools: `promtool check rules` and `promtool test
//! rules` (each alert fires and stays quiet where it should), `kubectl kustomize`, and
//! every metric name the rules and the dashboard use exists in a running graceful's
//! `/metrics`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use support::graceful::Graceful;
use support::repo;

fn monitoring(file: &str) -> PathBuf {
    repo().join("manifests/monitoring").join(file)
}

fn rule_spec() -> Value {
    let text = std::fs::read_to_string(monitoring("prometheus-rule.yaml")).expect("the rule file");
    let rule: Value = serde_yaml_ng::from_str(&text).expect("the PrometheusRule is YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    rule["spec"].clone()
}

/// A directory with the rule file's `spec` as `rules.yaml` (the Prometheus rule file
/// format promtool reads) and the unit tests beside it.
fn promtool_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graceful-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let rules = serde_yaml_ng::to_string(&rule_spec()).expect("the rules serialize");
    std::fs::write(dir.join("rules.yaml"), rules).expect("rules.yaml is written");
    std::fs::copy(
        repo().join("tests/monitoring/alerts.test.yaml"),
        dir.join("alerts.test.yaml"),
    )
    .expect("the tests are copied");
    dir
}

fn promtool(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(repo().join("e2e/bin/promtool"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("e2e/bin/promtool runs (e2e/cluster build makes it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {}:\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn the_rules_pass_promtool_and_every_alert_fires_only_when_it_should() {
    let dir = promtool_dir();
    let checked = promtool(&dir, &["check", "rules", "rules.yaml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every alert of the rule file is exercised by the tests, firing at least once.
    let tests = std::fs::read_to_string(dir.join("alerts.test.yaml")).expect("the tests");
    for alert in alerts() {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - "
            )),
            "no test makes {alert} fire"
        );
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts: []")),
            "no test keeps {alert} quiet"
        );
    }
}

fn alerts() -> BTreeSet<String> {
    rules()
        .iter()
        .filter_map(|rule| rule["alert"].as_str().map(str::to_owned))
        .collect()
}

fn rules() -> Vec<Value> {
    let spec = rule_spec();
    let groups = spec["groups"].as_array().expect("rule groups").clone();
    groups
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn kustomize_builds_the_pod_monitor_the_rules_and_the_dashboard() {
    let output = Command::new(repo().join("e2e/bin/kubectl"))
        .args(["kustomize"])
        .arg(repo().join("manifests/monitoring"))
        .output()
        .expect("kubectl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for kind in [
        "kind: PodMonitor",
        "kind: PrometheusRule",
        "kind: ConfigMap",
        "grafana_dashboard: \"1\"",
    ] {
        assert!(text.contains(kind), "{kind} missing:\n{text}");
    }
}

/// The PromQL expressions of the rules and of the dashboard's panels.
fn expressions() -> Vec<String> {
    let mut found: Vec<String> = rules()
        .iter()
        .filter_map(|rule| rule["expr"].as_str().map(str::to_owned))
        .collect();
    let text = std::fs::read_to_string(monitoring("dashboard.json")).expect("the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            found.push(target["expr"].as_str().expect("an expr").to_owned());
        }
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    found.extend(
        variables
            .iter()
            .filter_map(|v| v["definition"].as_str().map(str::to_owned)),
    );
    found
}

/// The identifiers of `expr` that name series: graceful's metrics (`graceful_...`) and
/// recorded series (with a colon). Label values in quotes are skipped.
fn series_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            current.push(c);
            continue;
        }
        if current.starts_with("graceful_") || current.contains(':') && !current.starts_with(':') {
            names.push(current.clone());
        }
        current.clear();
    }
    names
}

/// The sample names `/metrics` can have, from its `# TYPE` lines (a counter `x` is
/// sampled as `x_total`, a histogram as `x_bucket`, `x_sum` and `x_count`).
fn exposed(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let mut words = line.split_whitespace();
        if (words.next(), words.next()) != (Some("#"), Some("TYPE")) {
            continue;
        }
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
    }
    names
}

#[test]
fn every_metric_the_rules_and_the_dashboard_use_exists() {
    let cluster = support::cluster();
    let graceful = Graceful::start(cluster, "monitoring", &[]);
    let metrics = graceful.metrics();
    let exposed = exposed(&metrics);
    let recorded: BTreeSet<String> = rules()
        .iter()
        .filter_map(|rule| rule["record"].as_str().map(str::to_owned))
        .collect();
    let mut used = BTreeSet::new();
    for expr in expressions() {
        used.extend(series_names(&expr));
    }
    assert!(used.contains("graceful_violations_total"), "{used:?}");
    assert!(
        used.contains("graceful_certificate_expiry_timestamp_seconds"),
        "{used:?}"
    );
    for name in &used {
        if name.contains(':') {
            assert!(
                recorded.contains(name),
                "{name} is used but no rule records it"
            );
        } else {
            assert!(
                exposed.contains(name),
                "{name} is not in graceful's /metrics:\n{metrics}"
            );
        }
    }
    // The certificate graceful serves is in its metric: the alert watches a real value.
    let expiry = graceful
        .metric("graceful_certificate_expiry_timestamp_seconds")
        .expect("the certificate's expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    assert!(
        expiry > now,
        "expiry {expiry} is not in the future (now {now})"
    );
}

#[test]
fn series_names_are_read_from_promql() {
    assert_eq!(
        series_names(
            r#"max by (namespace) (increase(graceful_violations_total{kind="graceful_x"}[15m])) - a:b:c"#
        ),
        ["graceful_violations_total", "a:b:c"]
    );
    let text = "# TYPE graceful_violations counter\n# TYPE graceful_leader gauge\n# TYPE graceful_shutdown_duration_seconds histogram\n";
    let names = exposed(text);
    assert!(names.contains("graceful_violations_total"));
    assert!(names.contains("graceful_leader"));
    assert!(names.contains("graceful_shutdown_duration_seconds_bucket"));
    assert!(!names.contains("graceful_violations"));
}
