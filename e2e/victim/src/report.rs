//! Load summaries side by side, one column per run.

use std::fmt::Write;

use crate::load::Summary;

/// A row's name and how a run fills its cell.
type Row = (&'static str, fn(&Summary) -> String);

pub fn table(runs: &[(String, Summary)]) -> String {
    let rows: [Row; 8] = [
        ("sent", |s| s.sent.to_string()),
        ("2xx", |s| s.ok.to_string()),
        ("non-2xx", |s| s.non_2xx.to_string()),
        ("connection errors", |s| s.connection_errors.to_string()),
        ("timeouts", |s| s.timeouts.to_string()),
        ("counter", |s| or_dash(s.counter)),
        ("counter - 2xx", |s| or_dash(s.counter_minus_ok)),
        ("lost nothing", |s| {
            if s.lossless { "yes" } else { "no" }.to_owned()
        }),
    ];
    let label_width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let widths: Vec<usize> = runs.iter().map(|(name, _)| name.len().max(6)).collect();
    let mut out = format!("{:label_width$}", "");
    for ((name, _), width) in runs.iter().zip(&widths) {
        let _ = write!(out, "  {name:>width$}");
    }
    out.push('\n');
    for (row, cell) in rows {
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
                   without policy  with policy  no counter
sent                         1000         1000        1000
2xx                           996         1000        1000
non-2xx                         0            0           0
connection errors               3            0           0
timeouts                        1            0           0
counter                       997         1000           -
counter - 2xx                   1            0           -
lost nothing                   no          yes         yes
"
        );
    }
}
