//! Percentiles of measured durations, as every statistic in a policy's status gives
//! them. Pure.

/// The count, median, 95th percentile and maximum of some durations in seconds,
/// rounded to hundredths; the percentiles are nearest-rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: i64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

/// `None` for no durations.
pub fn summary(seconds: &[f64]) -> Option<Summary> {
    if seconds.is_empty() {
        return None;
    }
    let mut sorted = seconds.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank =
        |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    Some(Summary {
        count: sorted.len() as i64,
        p50: round2(rank(0.50)),
        p95: round2(rank(0.95)),
        max: round2(sorted[sorted.len() - 1]),
    })
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let seconds: Vec<f64> = (1..=20).map(f64::from).collect();
        let found = summary(&seconds).unwrap();
        assert_eq!(
            (found.count, found.p50, found.p95, found.max),
            (20, 10.0, 19.0, 20.0)
        );
        assert_eq!(summary(&[0.123]).unwrap().p95, 0.12);
        assert_eq!(summary(&[]), None);
    }
}
