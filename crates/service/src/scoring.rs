//! Scores as the API shows them: recompute requests and their jobs, the workspace's models,
//! the RFM grid, and one customer's scores with everything behind them.

use cairn_domain::{CustomerId, Scope};
use cairn_scoring::{enqueue_recompute, load_model, time_zone, Model, RECOMPUTE_JOB};
use cairn_store::{
    jobs::Job,
    scores::{RfmCounts, ScoreRow},
};

use crate::{found, Principal, Result, Services};

/// One customer's scores and what produced them.
pub struct ScoreExplanation {
    pub customer_id: CustomerId,
    pub scores: Option<ScoreRow>,
    pub model: Option<Model>,
    /// Today in the workspace's time zone (days since 1970-01-01).
    pub today: i64,
    pub time_zone: String,
}

impl Services {
    /// Queues a workspace-wide recompute (`fit`: refit the CLV models too).
    pub async fn request_recompute(&self, p: &Principal, fit: bool) -> Result<Job> {
        p.require_private()?;
        p.require(Scope::CustomersWrite)?;
        let id = enqueue_recompute(&self.store, p.tenant_id, fit, None).await?;
        Ok(self.store.read().await?.job(id).await?)
    }

    /// A recompute job of the caller's workspace.
    pub async fn scoring_job(&self, p: &Principal, id: i64) -> Result<Job> {
        p.require_private()?;
        p.require(Scope::CustomersRead)?;
        let job = found(self.store.read().await?.job(id).await, "job")?;
        if job.tenant_id != Some(p.tenant_id.0) || job.kind != RECOMPUTE_JOB {
            return Err(crate::ServiceError::NotFound("job"));
        }
        Ok(job)
    }

    /// The workspace's model; `None` before its first recompute.
    pub async fn scoring_model(&self, p: &Principal) -> Result<Option<Model>> {
        p.require_private()?;
        p.require(Scope::AnalyticsRead)?;
        let mut conn = self.store.read().await?;
        Ok(load_model(&mut conn, p.tenant_id).await?.map(|(m, _)| m))
    }

    /// The R×F grid and segment sizes, with the model they were scored against.
    pub async fn rfm_counts(&self, p: &Principal) -> Result<(RfmCounts, Option<Model>)> {
        p.require_private()?;
        p.require(Scope::AnalyticsRead)?;
        let mut conn = self.store.read().await?;
        let counts = conn.rfm_counts(p.tenant_id).await?;
        let model = load_model(&mut conn, p.tenant_id).await?.map(|(m, _)| m);
        Ok((counts, model))
    }

    pub async fn explain_scores(&self, p: &Principal, id: CustomerId) -> Result<ScoreExplanation> {
        p.require_private()?;
        p.require(Scope::CustomersRead)?;
        let mut conn = self.store.read().await?;
        found(conn.customer(p.tenant_id, id).await, "customer")?;
        let scores = conn.scores_for(p.tenant_id, &[id]).await?.pop();
        let model = load_model(&mut conn, p.tenant_id).await?.map(|(m, _)| m);
        let tz = time_zone(&mut conn, p.tenant_id).await?;
        let today = cairn_scoring::day_number(self.clock.now(), tz);
        Ok(ScoreExplanation { customer_id: id, scores, model, today, time_zone: tz.name().to_string() })
    }
}
