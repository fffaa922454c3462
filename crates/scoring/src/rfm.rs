//! RFM scores by quintile. For a metric and n scored customers, a customer's score is
//! `1 + floor(5 × worse / n)`, `worse` counting the customers strictly worse on it. That equals
//! `1 + #{k in 1..=4 : v > b_k}` where `b_k` is the `ceil(k·n/5)`-th smallest value: four numbers
//! per metric (the [`Boundaries`]) score any customer, old or new, exactly as the whole
//! population would — so an event re-scores its customer without reading anyone else.

use serde::{Deserialize, Serialize};

/// The four cut points of each metric. Recency is kept as the day of the last purchase (days
/// since 1970-01-01 in the workspace's time zone): "more recent" is then "greater", and the cut
/// points stay right as the days pass without a recompute.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Boundaries {
    pub last_purchase_day: Vec<f64>,
    pub frequency: Vec<f64>,
    pub monetary: Vec<f64>,
    /// How many customers they were computed from.
    pub customers: u64,
}

/// The values a customer is scored on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RfmInputs {
    pub last_purchase_day: i64,
    pub frequency: u64,
    pub monetary: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfmScores {
    pub recency: u8,
    pub frequency: u8,
    pub monetary: u8,
}

impl RfmScores {
    pub fn total(&self) -> u8 {
        self.recency + self.frequency + self.monetary
    }

    pub fn segment(&self) -> &'static str {
        segment_of(self.total())
    }
}

/// Seed 003's named segments of the combined score (3–15).
pub fn segment_of(score: u8) -> &'static str {
    match score {
        13.. => "Champions",
        9..=12 => "Loyal Customers",
        5..=8 => "At Risk",
        _ => "Lost",
    }
}

pub const SEGMENTS: [&str; 4] = ["Champions", "Loyal Customers", "At Risk", "Lost"];

impl Boundaries {
    pub fn compute(inputs: &[RfmInputs]) -> Boundaries {
        let cuts = |mut values: Vec<f64>| -> Vec<f64> {
            if values.is_empty() {
                return Vec::new();
            }
            values.sort_by(f64::total_cmp);
            let n = values.len();
            (1..=4).map(|k| values[(k * n).div_ceil(5) - 1]).collect()
        };
        Boundaries {
            last_purchase_day: cuts(inputs.iter().map(|i| i.last_purchase_day as f64).collect()),
            frequency: cuts(inputs.iter().map(|i| i.frequency as f64).collect()),
            monetary: cuts(inputs.iter().map(|i| i.monetary).collect()),
            customers: inputs.len() as u64,
        }
    }

    /// Scores a customer. Without boundaries (no one scored yet) everyone is a 3.
    pub fn score(&self, i: &RfmInputs) -> RfmScores {
        let score = |cuts: &[f64], v: f64| -> u8 {
            if cuts.is_empty() {
                return 3;
            }
            1 + cuts.iter().filter(|b| v > **b).count() as u8
        };
        RfmScores {
            recency: score(&self.last_purchase_day, i.last_purchase_day as f64),
            frequency: score(&self.frequency, i.frequency as f64),
            monetary: score(&self.monetary, i.monetary),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, computed the slow way.
    fn by_definition(values: &[f64], v: f64) -> u8 {
        let worse = values.iter().filter(|x| **x < v).count();
        1 + (5 * worse / values.len()) as u8
    }

    #[test]
    fn cut_points_reproduce_the_quintile_definition_with_ties() {
        let mut seed = 7u64;
        for n in [1usize, 2, 3, 4, 5, 6, 7, 9, 10, 11, 23, 100, 101] {
            let inputs: Vec<RfmInputs> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    RfmInputs {
                        last_purchase_day: 10_000 + (seed >> 60) as i64,
                        frequency: 1 + (seed >> 61),
                        monetary: ((seed >> 40) % 1000) as f64 / 10.0,
                    }
                })
                .collect();
            let b = Boundaries::compute(&inputs);
            let days: Vec<f64> = inputs.iter().map(|i| i.last_purchase_day as f64).collect();
            let freq: Vec<f64> = inputs.iter().map(|i| i.frequency as f64).collect();
            let money: Vec<f64> = inputs.iter().map(|i| i.monetary).collect();
            for i in &inputs {
                let s = b.score(i);
                assert_eq!(s.recency, by_definition(&days, i.last_purchase_day as f64), "n={n}");
                assert_eq!(s.frequency, by_definition(&freq, i.frequency as f64), "n={n}");
                assert_eq!(s.monetary, by_definition(&money, i.monetary), "n={n}");
            }
        }
    }

    #[test]
    fn five_distinct_customers_score_one_to_five() {
        let inputs: Vec<RfmInputs> = (0..5)
            .map(|k| RfmInputs { last_purchase_day: 100 + k, frequency: 1 + k as u64, monetary: 10.0 * (k + 1) as f64 })
            .collect();
        let b = Boundaries::compute(&inputs);
        let scores: Vec<u8> = inputs.iter().map(|i| b.score(i).recency).collect();
        assert_eq!(scores, [1, 2, 3, 4, 5]);
        assert_eq!(b.score(&inputs[4]).segment(), "Champions");
        assert_eq!(b.score(&inputs[0]).segment(), "Lost");
        assert_eq!(segment_of(12), "Loyal Customers");
        assert_eq!(segment_of(5), "At Risk");
    }
}
