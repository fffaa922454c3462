//! The CLV models: BG/NBD (Fader, Hardie and Lee, "Counting Your Customers the Easy Way", 2005)
//! for how many transactions a customer will make, and Gamma-Gamma (Fader, Hardie and Lee,
//! "RFM and CLV: Using Iso-Value Curves", 2005) for how much each will be worth. Both are fitted
//! by maximum likelihood with Nelder-Mead over the logarithms of the parameters (which keeps them
//! positive). Written here rather than taken from a crate: no maintained Rust crate implements
//! either model, and the general optimisation crates (argmin) pull in far more than the hundred
//! lines a derivative-free minimiser over four parameters needs.

use std::collections::HashMap;

use libm::lgamma;
use serde::{Deserialize, Serialize};

/// One customer as the models see him: `x` repeat transactions (days with a purchase after the
/// first), the last at `t_x` and the first `t` ago, both in weeks since the first transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rft {
    pub x: f64,
    pub t_x: f64,
    pub t: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

impl BgNbd {
    /// Fits the model to customers. Identical histories are counted once; the terms that
    /// depend only on the number of repeat transactions are computed once per distinct count,
    /// and the logarithms of `alpha + t` once per distinct time, so an evaluation costs one
    /// `exp` and one `ln_1p` per distinct history, spread over two threads.
    pub fn fit(customers: &[Rft]) -> Option<BgNbd> {
        let mut times: Vec<f64> = customers.iter().flat_map(|c| [c.t_x, c.t]).collect();
        times.sort_by(f64::total_cmp);
        times.dedup();
        let at = |t: f64| times.binary_search_by(|v| v.total_cmp(&t)).expect("every time is in the table") as u32;
        let mut groups: HashMap<u64, HashMap<(u32, u32), f64>> = HashMap::new();
        for c in customers {
            *groups.entry(c.x.to_bits()).or_default().entry((at(c.t_x), at(c.t))).or_default() += 1.0;
        }
        // (x, customers with that x, their (t_x, T, count) histories as indices into `times`),
        // in a fixed order: the sum is then the same on every run, to the last bit.
        let mut groups: Vec<Group> = groups
            .into_iter()
            .map(|(x, members)| {
                let mut members: Vec<(u32, u32, f64)> = members.into_iter().map(|((t_x, t), n)| (t_x, t, n)).collect();
                members.sort_by_key(|m| (m.0, m.1));
                let count = members.iter().map(|m| m.2).sum();
                (f64::from_bits(x), count, members)
            })
            .collect();
        groups.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Two halves of about equal work, one per thread — above a few thousand histories,
        // where an evaluation outweighs starting a thread for it.
        let histories: usize = groups.iter().map(|g| g.2.len()).sum();
        let mut split = if histories < 5_000 { groups.len() } else { 0 };
        let mut seen = 0;
        while split < groups.len() && seen * 2 < histories {
            seen += groups[split].2.len();
            split += 1;
        }
        let (first, second) = groups.split_at(split);
        let total = customers.len() as f64;
        let objective = |p: &[f64]| {
            let (r, alpha, a, b) = (p[0].exp(), p[1].exp(), p[2].exp(), p[3].exp());
            let logs: Vec<f64> = times.iter().map(|t| (alpha + t).ln()).collect();
            let (one, two) = if second.is_empty() {
                (half_log_likelihood(first, &logs, r, alpha, a, b), 0.0)
            } else {
                std::thread::scope(|s| {
                    let other = s.spawn(|| half_log_likelihood(second, &logs, r, alpha, a, b));
                    let mine = half_log_likelihood(first, &logs, r, alpha, a, b);
                    (mine, other.join().expect("a likelihood sum does not panic"))
                })
            };
            -(one + two) / total
        };
        let best = minimize(objective, &[0.0; 4])?;
        let m = BgNbd { r: best[0].exp(), alpha: best[1].exp(), a: best[2].exp(), b: best[3].exp() };
        [m.r, m.alpha, m.a, m.b].iter().all(|v| v.is_finite() && *v > 0.0).then_some(m)
    }

    /// The log-likelihood of one customer's history (the paper's equation 6).
    pub fn log_likelihood(&self, c: &Rft) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let x = c.x;
        let a1 = lgamma(r + x) - lgamma(r) + r * alpha.ln();
        let a2 = lgamma(a + b) + lgamma(b + x) - lgamma(b) - lgamma(a + b + x);
        let a3 = -(r + x) * (alpha + c.t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + c.t_x).ln();
            let hi = a3.max(a4);
            a1 + a2 + hi + ((a3 - hi).exp() + (a4 - hi).exp()).ln()
        } else {
            a1 + a2 + a3
        }
    }

    /// The probability that the customer is still active.
    pub fn p_alive(&self, c: &Rft) -> f64 {
        if c.x == 0.0 {
            return 1.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        let odds = a / (b + c.x - 1.0) * ((alpha + c.t) / (alpha + c.t_x)).powf(r + c.x);
        1.0 / (1.0 + odds)
    }

    /// The expected number of transactions in the next `horizon` weeks (equation 10).
    pub fn expected_transactions(&self, c: &Rft, horizon: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let x = c.x;
        let z = horizon / (alpha + c.t + horizon);
        let hyp = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let head = (a + b + x - 1.0) / (a - 1.0);
        let body = 1.0 - ((alpha + c.t) / (alpha + c.t + horizon)).powf(r + x) * hyp;
        let tail = if x > 0.0 { a / (b + x - 1.0) * ((alpha + c.t) / (alpha + c.t_x)).powf(r + x) } else { 0.0 };
        head * body / (1.0 + tail)
    }
}

/// Customers with `x` repeat transactions: `(x, how many, their (t_x, T, count) histories)`,
/// times as indices into the fit's table of distinct times.
type Group = (f64, f64, Vec<(u32, u32, f64)>);

/// The BG/NBD log-likelihood of some groups of histories; `logs[i]` is `ln(alpha + times[i])`.
fn half_log_likelihood(groups: &[Group], logs: &[f64], r: f64, alpha: f64, a: f64, b: f64) -> f64 {
    let mut ll = 0.0;
    for (x, count, members) in groups {
        let x = *x;
        let head =
            lgamma(r + x) - lgamma(r) + r * alpha.ln() + lgamma(a + b) + lgamma(b + x) - lgamma(b) - lgamma(a + b + x);
        ll += count * head;
        if x > 0.0 {
            let k = a.ln() - (b + x - 1.0).ln();
            for &(t_x, t, n) in members {
                // ln(e^a3 + e^a4), without overflow: the larger plus ln(1 + e^-(difference)).
                let a3 = -(r + x) * logs[t as usize];
                let a4 = k - (r + x) * logs[t_x as usize];
                ll += n * (a3.max(a4) + (-(a3 - a4).abs()).exp().ln_1p());
            }
        } else {
            for &(_, t, n) in members {
                ll -= n * (r + x) * logs[t as usize];
            }
        }
    }
    ll
}

impl GammaGamma {
    /// Fits the spend model to customers with at least one repeat transaction: `(x, m_x)` is the
    /// number of repeat transactions and their average value.
    pub fn fit(customers: &[(f64, f64)]) -> Option<GammaGamma> {
        let usable: Vec<(f64, f64)> = customers.iter().copied().filter(|(x, m)| *x > 0.0 && *m > 0.0).collect();
        if usable.is_empty() {
            return None;
        }
        let n = usable.len() as f64;
        // Grouped by x: the log-gamma terms depend on x alone, and ln(m_x) on nothing fitted.
        let mut by_x: HashMap<u64, Vec<(f64, f64)>> = HashMap::new();
        for &(x, m) in &usable {
            by_x.entry(x.to_bits()).or_default().push((m, m.ln()));
        }
        let by_x: Vec<(f64, Vec<(f64, f64)>)> = by_x.into_iter().map(|(x, ms)| (f64::from_bits(x), ms)).collect();
        let objective = |p: &[f64]| {
            let (p, q, gamma) = (p[0].exp(), p[1].exp(), p[2].exp());
            let mut ll = 0.0;
            for (x, ms) in &by_x {
                let px = p * x;
                let head = lgamma(px + q) - lgamma(px) - lgamma(q) + q * gamma.ln() + px * x.ln();
                ll += ms.len() as f64 * head;
                for &(m, ln_m) in ms {
                    ll += (px - 1.0) * ln_m - (px + q) * (gamma + x * m).ln();
                }
            }
            -ll / n
        };
        let best = minimize(objective, &[0.0; 3])?;
        let m = GammaGamma { p: best[0].exp(), q: best[1].exp(), gamma: best[2].exp() };
        [m.p, m.q, m.gamma].iter().all(|v| v.is_finite() && *v > 0.0).then_some(m)
    }

    /// The log-likelihood of one customer's average transaction value `m_x` over `x` transactions.
    pub fn log_likelihood(&self, x: f64, m_x: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        lgamma(p * x + q) - lgamma(p * x) - lgamma(q) + q * gamma.ln() + (p * x - 1.0) * m_x.ln() + p * x * x.ln()
            - (p * x + q) * (gamma + x * m_x).ln()
    }

    /// The expected value of the customer's future transactions. Finite only when q > 1.
    pub fn expected_value(&self, x: f64, m_x: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        p * (gamma + x * m_x) / (p * x + q - 1.0)
    }
}

/// Gauss's hypergeometric function 2F1(a, b; c; z) for 0 ≤ z < 1, by its power series.
fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut term, mut sum) = (1.0, 1.0);
    for j in 0..100_000 {
        let j = j as f64;
        term *= (a + j) * (b + j) / ((c + j) * (j + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-15 * sum.abs() {
            break;
        }
    }
    sum
}

/// Nelder-Mead minimisation from `start`, restarted from its own result until a restart no longer
/// improves (the standard guard against a simplex that collapsed early). `None` when the
/// objective is not finite at the start.
fn minimize(f: impl Fn(&[f64]) -> f64, start: &[f64]) -> Option<Vec<f64>> {
    let mut best = start.to_vec();
    let mut best_value = f(&best);
    if !best_value.is_finite() {
        return None;
    }
    for _ in 0..3 {
        let (point, value) = nelder_mead(&f, &best);
        let improved = best_value - value > 1e-10 * best_value.abs().max(1.0);
        if value < best_value {
            best = point;
            best_value = value;
        }
        if !improved {
            break;
        }
    }
    Some(best)
}

fn nelder_mead(f: &impl Fn(&[f64]) -> f64, start: &[f64]) -> (Vec<f64>, f64) {
    let n = start.len();
    // Parameters are logarithms; beyond e^±15 a model is degenerate (no one ever drops out,
    // say), and the search stops pushing that way instead of wandering off.
    let eval = |p: &[f64]| {
        if p.iter().any(|v| v.abs() > 15.0) {
            return f64::INFINITY;
        }
        let v = f(p);
        if v.is_finite() {
            v
        } else {
            f64::INFINITY
        }
    };
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    simplex.push((start.to_vec(), eval(start)));
    for i in 0..n {
        let mut p = start.to_vec();
        p[i] += 0.5;
        let v = eval(&p);
        simplex.push((p, v));
    }
    let mut checkpoint = f64::INFINITY;
    for iteration in 0..2_000 {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        // Stagnation: 100 iterations that improved the best value by less than a billionth.
        // A degenerate optimum (spend that does not vary between customers, say) lies at
        // infinity, and the simplex would otherwise creep towards it along a flat valley.
        if iteration % 100 == 0 {
            if checkpoint - simplex[0].1 <= 1e-9 * simplex[0].1.abs().max(1e-10) {
                break;
            }
            checkpoint = simplex[0].1;
        }
        let (lo, hi) = (simplex[0].1, simplex[n].1);
        let size = simplex
            .iter()
            .skip(1)
            .flat_map(|(p, _)| p.iter().zip(&simplex[0].0).map(|(a, b)| (a - b).abs()))
            .fold(0.0, f64::max);
        // Parameters are logarithms: 1e-7 here is a relative precision of 1e-7 in each.
        if (hi - lo).abs() <= 1e-11 * lo.abs().max(1e-10) && size < 1e-7 {
            break;
        }
        let centroid: Vec<f64> =
            (0..n).map(|i| simplex[..n].iter().map(|(p, _)| p[i]).sum::<f64>() / n as f64).collect();
        let along =
            |t: f64| -> Vec<f64> { (0..n).map(|i| centroid[i] + t * (simplex[n].0[i] - centroid[i])).collect() };
        let reflected = along(-1.0);
        let fr = eval(&reflected);
        if fr < simplex[0].1 {
            let expanded = along(-2.0);
            let fe = eval(&expanded);
            simplex[n] = if fe < fr { (expanded, fe) } else { (reflected, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (reflected, fr);
        } else {
            let contracted = if fr < simplex[n].1 { along(-0.5) } else { along(0.5) };
            let fc = eval(&contracted);
            if fc < simplex[n].1.min(fr) {
                simplex[n] = (contracted, fc);
            } else {
                let best = simplex[0].0.clone();
                for (p, v) in simplex.iter_mut().skip(1) {
                    for i in 0..n {
                        p[i] = best[i] + 0.5 * (p[i] - best[i]);
                    }
                    *v = eval(p);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimize_finds_the_minimum_of_a_bowl() {
        let p = minimize(|p| (p[0] - 1.5).powi(2) + 3.0 * (p[1] + 0.25).powi(2) + 1.0, &[0.0, 0.0]).unwrap();
        assert!((p[0] - 1.5).abs() < 1e-5 && (p[1] + 0.25).abs() < 1e-5, "{p:?}");
    }

    #[test]
    fn hypergeometric_series_matches_closed_forms() {
        // 2F1(1, 1; 2; z) = -ln(1 - z) / z
        for z in [0.1, 0.5, 0.9] {
            let want = -(1.0f64 - z).ln() / z;
            assert!((hyp2f1(1.0, 1.0, 2.0, z) - want).abs() < 1e-10);
        }
    }

    #[test]
    fn p_alive_is_one_without_repeats_and_falls_with_silence() {
        let m = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
        assert_eq!(m.p_alive(&Rft { x: 0.0, t_x: 0.0, t: 30.0 }), 1.0);
        let recent = m.p_alive(&Rft { x: 3.0, t_x: 29.0, t: 30.0 });
        let silent = m.p_alive(&Rft { x: 3.0, t_x: 5.0, t: 30.0 });
        assert!(recent > silent && recent < 1.0 && silent > 0.0, "{recent} {silent}");
    }

    #[test]
    fn expected_transactions_grow_with_the_horizon_and_the_history() {
        let m = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
        let c = Rft { x: 2.0, t_x: 30.43, t: 38.86 };
        let (short, long) = (m.expected_transactions(&c, 10.0), m.expected_transactions(&c, 52.0));
        assert!(short > 0.0 && long > short, "{short} {long}");
        // Fader, Hardie and Lee's worked example (BG/NBD note, "Computing E(Y(t)|x, t_x, T)"):
        // a customer with x = 2, t_x = 30.43, T = 38.86 is expected to make 1.226 transactions
        // in the next 39 weeks.
        let e = m.expected_transactions(&c, 39.0);
        assert!((e - 1.226).abs() < 0.005, "{e}");
    }
}
