//! Traffic tails: for each pod deleted during a run, the time from the start of its
//! deletion to the last request it received. The start is `deletionTimestamp` minus
//! `deletionGracePeriodSeconds` (the API sets the timestamp to the deletion's time plus
//! the grace period, in whole seconds); a watcher of the pods on the same host also notes
//! when it saw the deletion, which places the start within that second.
//!
//! Pure: the records come from `e2e/demo`'s pod watcher (one line per deleted pod:
//! `NAME SEEN_UNIX_SECONDS DELETION_TIMESTAMP GRACE_SECONDS`) and the last requests from
//! the counter, to which each pod reports the time it received each request.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    pub pod: String,
    /// When the deletion started, Unix seconds.
    pub started: f64,
}

/// One watcher line. The start is the time the watcher saw the deletion when that lies
/// within the second the timestamp allows, else the timestamp's own start.
pub fn parse_deletion(line: &str) -> anyhow::Result<Deletion> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [pod, seen, timestamp, grace] = fields[..] else {
        bail!("{line:?}: expected NAME SEEN TIMESTAMP GRACE");
    };
    let seen: f64 = seen.parse().with_context(|| format!("{line:?}: seen"))?;
    let grace: i64 = grace.parse().with_context(|| format!("{line:?}: grace"))?;
    let earliest = (unix_seconds(timestamp)? - grace) as f64;
    let started = if (earliest..earliest + 1.0).contains(&seen) {
        seen
    } else {
        earliest
    };
    Ok(Deletion {
        pod: pod.to_owned(),
        started,
    })
}

/// Every watcher line; the first line of a pod counts (later ones repeat it).
pub fn parse_deletions(text: &str) -> anyhow::Result<Vec<Deletion>> {
    let mut deletions: Vec<Deletion> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let deletion = parse_deletion(line)?;
        if !deletions.iter().any(|d| d.pod == deletion.pod) {
            deletions.push(deletion);
        }
    }
    Ok(deletions)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (as the API writes times) to Unix seconds.
pub fn unix_seconds(timestamp: &str) -> anyhow::Result<i64> {
    let bad = || format!("{timestamp:?} is not YYYY-MM-DDTHH:MM:SSZ");
    let b = timestamp.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        bail!(bad());
    }
    let number = |range: std::ops::Range<usize>| -> anyhow::Result<i64> {
        let text = &timestamp[range];
        if !text.bytes().all(|c| c.is_ascii_digit()) {
            bail!(bad());
        }
        text.parse().with_context(bad)
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        bail!(bad());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Each deleted pod's tail in seconds (negative: its last request came before its
/// deletion started); pods that got no request of the run are left out.
pub fn tails(
    deletions: &[Deletion],
    last_request_ms: &BTreeMap<String, u64>,
) -> BTreeMap<String, f64> {
    deletions
        .iter()
        .filter_map(|d| {
            let last = *last_request_ms.get(&d.pod)? as f64 / 1000.0;
            Some((
                d.pod.clone(),
                ((last - d.started) * 1000.0).round() / 1000.0,
            ))
        })
        .collect()
}

/// The largest tail, if any pod had one.
pub fn largest(tails: &BTreeMap<String, f64>) -> Option<f64> {
    tails.values().copied().reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_times_are_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(unix_seconds("2000-03-01T00:00:00Z").unwrap(), 951_868_800);
        assert_eq!(unix_seconds("2026-12-02T01:20:20Z").unwrap(), 1_796_174_420);
        for bad in [
            "",
            "2026-12-02 01:20:20Z",
            "2026-13-02T01:20:20Z",
            "2026-12-02T01:20:20.5Z",
            "2026-1a-02T01:20:20Z",
        ] {
            assert!(unix_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_start_is_the_watchers_time_within_the_timestamps_second() {
        // deletionTimestamp 01:20:50 with 30 s of grace: the deletion started in 01:20:20.
        let start = 1_796_174_420.0;
        let seen = parse_deletion("victim-a 1796174420.250 2026-12-02T01:20:50Z 30").unwrap();
        assert_eq!(
            seen,
            Deletion {
                pod: "victim-a".to_owned(),
                started: start + 0.25
            }
        );
        // A watcher that saw it late says nothing better than the timestamp.
        let late = parse_deletion("victim-a 1796174423.000 2026-12-02T01:20:50Z 30").unwrap();
        assert_eq!(late.started, start);
        assert!(parse_deletion("victim-a 1 2").is_err());
    }

    #[test]
    fn a_pod_counts_once_and_tails_are_last_request_minus_start() {
        let deletions = parse_deletions(
            "a 100.5 1970-01-01T00:02:10Z 30\na 101.0 1970-01-01T00:02:10Z 30\n\nb 200.0 1970-01-01T00:03:50Z 30\nc 300.0 1970-01-01T00:05:30Z 30\n",
        )
        .unwrap();
        assert_eq!(deletions.len(), 3);
        let last = BTreeMap::from([
            ("a".to_owned(), 102_750),
            ("b".to_owned(), 199_000),
            ("other".to_owned(), 500_000),
        ]);
        let tails = tails(&deletions, &last);
        assert_eq!(
            tails,
            BTreeMap::from([("a".to_owned(), 2.25), ("b".to_owned(), -1.0)])
        );
        assert_eq!(largest(&tails), Some(2.25));
        assert_eq!(largest(&BTreeMap::new()), None);
    }
}
