//! The models against published results: the CDNOW sample (../shared/data, copied into
//! tests/data) summarised as the event stores do, fitted with time in weeks as of 1997-09-30.
//! The API suite repeats this end to end through ingestion on both backends.

use std::collections::BTreeMap;

use cairn_domain::CustomerId;
use cairn_events::PurchaseSummary;
use cairn_scoring::{
    model::{BgNbd, GammaGamma},
    repeat_average, rft, Method, Model,
};
use chrono::{NaiveDate, TimeZone, Utc};

const CDNOW: &str = include_str!("../../../tests/data/CDNOW_sample.txt");

fn day(yyyymmdd: &str) -> i64 {
    NaiveDate::parse_from_str(yyyymmdd, "%Y%m%d").unwrap().signed_duration_since(NaiveDate::default()).num_days()
}

/// Purchases up to the end of the calibration period, merged per customer and day.
fn summaries(end: i64) -> Vec<PurchaseSummary> {
    let mut per_day: BTreeMap<(i64, i64), (u64, f64)> = BTreeMap::new();
    for line in CDNOW.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (customer, d, amount) = (f[1].parse::<i64>().unwrap(), day(f[2]), f[4].parse::<f64>().unwrap());
        if d <= end {
            let e = per_day.entry((customer, d)).or_default();
            e.0 += 1;
            e.1 += amount;
        }
    }
    let mut out: Vec<PurchaseSummary> = Vec::new();
    for ((customer, d), (n, amount)) in per_day {
        match out.last_mut() {
            Some(s) if s.customer_id.0 == customer => {
                s.purchases += n;
                s.days += 1;
                s.last_day = d;
                s.gross += amount;
            }
            _ => out.push(PurchaseSummary {
                customer_id: CustomerId(customer),
                purchases: n,
                days: 1,
                first_day: d,
                last_day: d,
                last_at: Utc.timestamp_opt(d * 86_400, 0).unwrap(),
                gross: amount,
                first_day_gross: amount,
                refunds: 0.0,
            }),
        }
    }
    out
}

fn within(name: &str, got: f64, published: f64) {
    let off = (got - published).abs() / published;
    assert!(off <= 0.01, "{name} = {got}, published {published} ({:.2}% off)", off * 100.0);
}

#[test]
fn bgnbd_and_gamma_gamma_reproduce_the_published_cdnow_fits() {
    let end = day("19970930");
    let s = summaries(end);
    assert_eq!(s.len(), 2357);
    let bg = BgNbd::fit(&s.iter().map(|c| rft(c, end)).collect::<Vec<_>>()).expect("fits");
    within("r", bg.r, 0.243);
    within("alpha", bg.alpha, 4.414);
    within("a", bg.a, 0.793);
    within("b", bg.b, 2.426);
    let spend: Vec<(f64, f64)> = s.iter().map(|c| ((c.days - 1) as f64, repeat_average(c))).collect();
    assert_eq!(spend.iter().filter(|(x, _)| *x > 0.0).count(), 946);
    let gg = GammaGamma::fit(&spend).expect("fits");
    eprintln!("CDNOW fits: {bg:?} {gg:?}");
    within("p", gg.p, 6.25);
    within("q", gg.q, 3.74);
    within("gamma", gg.gamma, 15.44);

    let mut model = Model::default();
    model.fit(&s, end, Utc::now());
    assert_eq!(model.method, Method::BgnbdGammaGamma);
    // Customer 1's history gives a finite, positive prediction and a probability.
    let row = model.score(&s[0], end, 12.0);
    assert!(row.clv_predicted > 0.0 && row.p_alive.is_some_and(|p| (0.0..=1.0).contains(&p)), "{row:?}");
}

#[test]
fn too_little_data_falls_back_to_the_simple_formula() {
    let end = day("19970930");
    let s: Vec<PurchaseSummary> = summaries(end).into_iter().take(5).collect();
    let mut model = Model::default();
    model.fit(&s, end, Utc::now());
    assert_eq!(model.method, Method::Simple);
    let c = &s[0];
    let row = model.score(c, end, 12.0);
    let horizon_days = 365.25;
    let tenure = ((end - c.first_day + 1) as f64).max(horizon_days);
    assert!((row.clv_predicted - c.gross / tenure * horizon_days).abs() < 1e-9);
    assert_eq!(row.clv_method, "simple");
    assert_eq!(row.p_alive, None);
}
