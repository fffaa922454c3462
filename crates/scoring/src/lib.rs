//! Scoring: RFM scores by quintile and customer lifetime value from BG/NBD + Gamma-Gamma, kept
//! current per customer as purchases arrive and recomputed workspace-wide on a schedule.
//! The definitions are in docs/scoring.md; this crate is their one implementation.

pub mod model;
pub mod rfm;
mod worker;

use cairn_events::PurchaseSummary;
use cairn_store::scores::ScoreRow;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use worker::{
    enqueue_recompute, load_model, parse_schedule, time_zone, Progress, RecomputeRequest, Scorer, ScoringError,
    ScoringSettings, RECOMPUTE_JOB,
};

use crate::{
    model::{BgNbd, GammaGamma, Rft},
    rfm::{Boundaries, RfmInputs},
};

/// Below these, the models are not fitted and CLV uses the simple formula (docs/scoring.md).
pub const MIN_CUSTOMERS_TO_FIT: usize = 20;
pub const MIN_REPEATERS_TO_FIT: usize = 10;
/// Above this many customers, the models are fitted to an even sample of this size (every
/// k-th customer by id): the maximum-likelihood estimates then differ from the full data's
/// by sampling error well under 1%, and a nightly fit stays within seconds.
pub const MAX_CUSTOMERS_TO_FIT: usize = 100_000;

const DAYS_PER_WEEK: f64 = 7.0;
const DAYS_PER_MONTH: f64 = 365.25 / 12.0;

/// How `clv_predicted` (and `p_alive`) were produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// BG/NBD expected transactions × Gamma-Gamma expected value, fitted to the workspace.
    BgnbdGammaGamma,
    /// Too little data to fit: the customer's spend per day of tenure × the horizon.
    Simple,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::BgnbdGammaGamma => "bgnbd_gamma_gamma",
            Method::Simple => "simple",
        }
    }
}

/// A workspace's scoring model: the RFM cut points and the fitted CLV models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub method: Method,
    /// When the CLV models were last fitted (also when the fit fell back to `simple`).
    pub fitted_at: Option<DateTime<Utc>>,
    /// Customers with purchases when the models were fitted.
    pub customers: u64,
    /// How many of them the fit used (all, up to [`MAX_CUSTOMERS_TO_FIT`]).
    #[serde(default)]
    pub fit_sample: u64,
    pub bgnbd: Option<BgNbd>,
    pub gamma_gamma: Option<GammaGamma>,
    pub boundaries: Boundaries,
    pub boundaries_at: Option<DateTime<Utc>>,
    /// The horizon `clv_predicted` was computed over.
    #[serde(default = "default_horizon")]
    pub horizon_months: f64,
}

fn default_horizon() -> f64 {
    12.0
}

impl Default for Model {
    fn default() -> Model {
        Model {
            method: Method::Simple,
            fitted_at: None,
            customers: 0,
            fit_sample: 0,
            bgnbd: None,
            gamma_gamma: None,
            boundaries: Boundaries::default(),
            boundaries_at: None,
            horizon_months: default_horizon(),
        }
    }
}

/// The models' view of a customer on day `today`: repeat transactions and times in weeks.
pub fn rft(s: &PurchaseSummary, today: i64) -> Rft {
    let t = (today - s.first_day).max(0) as f64 / DAYS_PER_WEEK;
    Rft { x: s.days.saturating_sub(1) as f64, t_x: ((s.last_day - s.first_day) as f64 / DAYS_PER_WEEK).min(t), t }
}

/// The average value of a customer's repeat transactions (what Gamma-Gamma models).
pub fn repeat_average(s: &PurchaseSummary) -> f64 {
    let x = s.days.saturating_sub(1);
    if x == 0 {
        0.0
    } else {
        (s.gross - s.first_day_gross) / x as f64
    }
}

pub fn rfm_inputs(s: &PurchaseSummary) -> RfmInputs {
    RfmInputs { last_purchase_day: s.last_day, frequency: s.purchases, monetary: money(s.gross) - money(s.refunds) }
}

impl Model {
    /// Fits the CLV models to every customer's summary, as of day `today`. Falls back to the
    /// simple method when there are too few customers or repeaters, or a fit fails.
    pub fn fit(&mut self, all: &[PurchaseSummary], today: i64, now: DateTime<Utc>) {
        let step = all.len().div_ceil(MAX_CUSTOMERS_TO_FIT).max(1);
        let summaries: Vec<&PurchaseSummary> = all.iter().step_by(step).collect();
        let histories: Vec<Rft> = summaries.iter().map(|s| rft(s, today)).collect();
        let spend: Vec<(f64, f64)> =
            summaries.iter().map(|s| (s.days.saturating_sub(1) as f64, repeat_average(s))).collect();
        let repeaters = spend.iter().filter(|(x, m)| *x > 0.0 && *m > 0.0).count();
        let fitted = if summaries.len() >= MIN_CUSTOMERS_TO_FIT && repeaters >= MIN_REPEATERS_TO_FIT {
            // The two models are independent: fitted side by side, on two threads.
            let (bg, gg) = std::thread::scope(|s| {
                let spend_fit = s.spawn(|| GammaGamma::fit(&spend));
                let bg = BgNbd::fit(&histories);
                (bg, spend_fit.join().expect("the Gamma-Gamma fit does not panic"))
            });
            bg.zip(gg).filter(|(_, gg)| gg.q > 1.0)
        } else {
            None
        };
        self.fitted_at = Some(now);
        self.customers = all.len() as u64;
        self.fit_sample = summaries.len() as u64;
        match fitted {
            Some((bg, gg)) => {
                self.method = Method::BgnbdGammaGamma;
                self.bgnbd = Some(bg);
                self.gamma_gamma = Some(gg);
            }
            None => {
                self.method = Method::Simple;
                self.bgnbd = None;
                self.gamma_gamma = None;
            }
        }
    }

    /// A customer's scores, as of day `today`, predicting over `horizon_months`.
    pub fn score(&self, s: &PurchaseSummary, today: i64, horizon_months: f64) -> ScoreRow {
        // Sums of money are rounded to a millionth: ClickHouse adds in whatever order its
        // threads finish, and the last-bit noise would otherwise make unchanged customers look
        // changed on every recompute.
        let s = &PurchaseSummary {
            gross: money(s.gross),
            first_day_gross: money(s.first_day_gross),
            refunds: money(s.refunds),
            ..s.clone()
        };
        let rfm = self.boundaries.score(&rfm_inputs(s));
        let net = s.gross - s.refunds;
        let horizon_days = horizon_months * DAYS_PER_MONTH;
        let modelled = match (self.method, self.bgnbd, self.gamma_gamma) {
            (Method::BgnbdGammaGamma, Some(bg), Some(gg)) => {
                let h = rft(s, today);
                let transactions = bg.expected_transactions(&h, horizon_days / DAYS_PER_WEEK);
                let value = gg.expected_value(h.x, repeat_average(s));
                let predicted = transactions * value;
                let alive = bg.p_alive(&h);
                (predicted.is_finite() && predicted >= 0.0 && alive.is_finite()).then_some((predicted, alive))
            }
            _ => None,
        };
        let (clv_predicted, p_alive, method) = match modelled {
            Some((predicted, alive)) => (predicted, Some(alive), Method::BgnbdGammaGamma),
            None => {
                let tenure = ((today - s.first_day + 1) as f64).max(horizon_days);
                (net.max(0.0) / tenure * horizon_days, None, Method::Simple)
            }
        };
        ScoreRow {
            customer_id: s.customer_id.0,
            transactions: s.days as i64,
            first_purchase_day: s.first_day,
            last_purchase_day: s.last_day,
            last_purchase_at: s.last_at,
            gross: s.gross,
            first_day_gross: s.first_day_gross,
            refunds: s.refunds,
            rfm_recency: rfm.recency as i64,
            rfm_frequency: rfm.frequency as i64,
            rfm_monetary: rfm.monetary as i64,
            rfm_score: rfm.total() as i64,
            rfm_segment: rfm.segment().to_string(),
            clv_total: net,
            clv_order_count: s.purchases as i64,
            clv_average_order: s.gross / s.purchases.max(1) as f64,
            clv_predicted,
            p_alive,
            clv_method: method.as_str().to_string(),
        }
    }
}

fn money(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Today, as days since 1970-01-01 in the time zone.
pub fn day_number(t: DateTime<Utc>, tz: chrono_tz::Tz) -> i64 {
    t.with_timezone(&tz).date_naive().signed_duration_since(chrono::NaiveDate::default()).num_days()
}

/// The `customer.rfm_changed` payload part for one side of a change.
pub fn rfm_view(r: &ScoreRow) -> serde_json::Value {
    serde_json::json!({
        "rfm_recency": r.rfm_recency,
        "rfm_frequency": r.rfm_frequency,
        "rfm_monetary": r.rfm_monetary,
        "rfm_score": r.rfm_score,
        "rfm_segment": r.rfm_segment,
    })
}

/// Whether the scores a change event is about differ.
pub fn rfm_differs(a: &ScoreRow, b: &ScoreRow) -> bool {
    (a.rfm_recency, a.rfm_frequency, a.rfm_monetary, &a.rfm_segment)
        != (b.rfm_recency, b.rfm_frequency, b.rfm_monetary, &b.rfm_segment)
}
