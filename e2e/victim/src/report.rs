//! Load summaries side by side, one column per run.

use std::fmt::Write;

use crate::kinds::Kind;
use crate::load::Summary;

/// A row's name and how a run fills its cell.
type Row = (&'static str, fn(&Summary) -> String);
/// A row whose cell depends on more than the summary (the kind of loss it counts).
type Cell = Box<dyn Fn(&Summary) -> String>;

/// The kinds of loss that any run had: the rest would be rows of zeros.
fn lost_kinds(runs: &[(String, Summary)]) -> Vec<Kind> {
    Kind::ALL
        .into_iter()
        .filter(|kind| {
            runs.iter()
                .any(|(_, s)| s.lost.get(kind).is_some_and(|n| *n > 0))
        })
        .collect()
}

pub fn table(runs: &[(String, Summary)]) -> String {
    let mut rows: Vec<(String, Cell)> = vec![
        ("sent".to_owned(), Box::new(|s| s.sent.to_string())),
        ("2xx".to_owned(), Box::new(|s| s.ok.to_string())),
        (
            "lost".to_owned(),
            Box::new(|s| (s.sent - s.ok.min(s.sent)).to_string()),
        ),
    ];
    for kind in lost_kinds(runs) {
        rows.push((
            format!("  {}", kind.label()),
            Box::new(move |s| s.lost.get(&kind).copied().unwrap_or(0).to_string()),
        ));
    }
    let fixed: [Row; 6] = [
        ("retried (2xx after)", |s| {
            format!("{} ({})", s.retries, s.retries_ok)
        }),
        ("counter", |s| or_dash(s.counter)),
        ("counter - 2xx", |s| or_dash(s.counter_minus_ok)),
        ("largest tail (s)", |s| {
            s.largest_tail_seconds
                .map_or_else(|| "-".to_owned(), |t| format!("{t:.1}"))
        }),
        ("lost nothing", |s| {
            if s.lossless { "yes" } else { "no" }.to_owned()
        }),
        ("mode", |s| s.mode.clone()),
    ];
    rows.extend(
        fixed
            .into_iter()
            .map(|(name, cell)| (name.to_owned(), Box::new(cell) as Cell)),
    );
    let label_width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let widths: Vec<usize> = runs
        .iter()
        .map(|(name, summary)| {
            rows.iter()
                .map(|(_, cell)| cell(summary).len())
                .fold(name.len().max(6), usize::max)
        })
        .collect();
    let mut out = format!("{:label_width$}", "");
    for ((name, _), width) in runs.iter().zip(&widths) {
        let _ = write!(out, "  {name:>width$}");
    }
    out.push('\n');
    for (row, cell) in &rows {
        let _ = write!(out, "{row:label_width$}");
        for ((_, summary), width) in runs.iter().zip(&widths) {
            let _ = write!(out, "  {:>width$}", cell(summary));
        }
        out.push('\n');
    }
    out
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Latency;
    use std::collections::BTreeMap;

    fn summary(ok: u64, connection_errors: u64, counter: Option<u64>) -> Summary {
        Summary {
            url: "http://198.18.0.10/incr".to_owned(),
            run: "load".to_owned(),
            mode: "new connections".to_owned(),
            rate: 25.0,
            duration_seconds: 40.0,
            timeout_seconds: 10.0,
            sent: 1000,
            ok,
            non_2xx: 0,
            connection_errors,
            timeouts: 1000 - ok - connection_errors,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            lost: [
                (Kind::Refused, connection_errors),
                (Kind::Timeout, 1000 - ok - connection_errors),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect(),
            retries: 0,
            retries_ok: 0,
            traffic_tails_seconds: BTreeMap::new(),
            largest_tail_seconds: (connection_errors > 0).then_some(2.04),
            latency_ms: Latency::default(),
            started_unix_seconds: 0.0,
            failed_at_seconds: Vec::new(),
            elapsed_seconds: 40.1,
            counter,
            counter_minus_ok: counter.map(|c| c as i64 - ok as i64),
            lossless: ok == 1000 && counter.is_none_or(|c| c == 1000),
        }
    }

    #[test]
    fn runs_are_columns() {
        let runs = [
            ("without policy".to_owned(), summary(996, 3, Some(997))),
            ("with policy".to_owned(), summary(1000, 0, Some(1000))),
            ("no counter".to_owned(), summary(1000, 0, None)),
        ];
        // The leading newline only keeps the header aligned in this source.
        assert_eq!(
            format!("\n{}", table(&runs)),
            "
                      without policy      with policy       no counter
sent                            1000             1000             1000
2xx                              996             1000             1000
lost                               4                0                0
  refused                          3                0                0
  timeout                          1                0                0
retried (2xx after)            0 (0)            0 (0)            0 (0)
counter                          997             1000                -
counter - 2xx                      1                0                -
largest tail (s)                 2.0                -                -
lost nothing                      no              yes              yes
mode                 new connections  new connections  new connections
"
        );
    }
}
