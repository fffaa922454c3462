//! What scoring and segments share: per-workspace leases (`scoring_locks`, `segment_locks`)
//! and versioned marks of customers waiting for work (`scoring_dirty`, `segment_dirty`). Table
//! names come from this crate's code only.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};

use crate::{db::Raw, Conn, Result};

impl Conn {
    /// Takes or renews the lease on a workspace in `table` until `until`. False when another
    /// holder has it and its lease has not run out.
    pub(crate) async fn take_lease(
        &mut self,
        table: &'static str,
        tenant: TenantId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let sql = format!(
            "INSERT INTO {table} (tenant_id, holder, locked_until) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE SET holder = excluded.holder, locked_until = excluded.locked_until
             WHERE {table}.holder = excluded.holder OR {table}.locked_until < $4"
        );
        let n = on!(self, |c| sqlx::query(&sql)
            .bind(tenant.0)
            .bind(holder)
            .bind(until)
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Removes the (customer, version) marks of `table` that were not renewed since they were
    /// read.
    pub(crate) async fn clear_marks(
        &mut self,
        table: &'static str,
        tenant: TenantId,
        marks: &[(i64, i64)],
    ) -> Result<()> {
        if let Raw::Postgres(c) = self.raw() {
            for chunk in marks.chunks(10_000) {
                sqlx::query(&format!(
                    "DELETE FROM {table} d USING UNNEST($2::bigint[], $3::bigint[]) AS u(c, v)
                     WHERE d.tenant_id = $1 AND d.customer_id = u.c AND d.version = u.v"
                ))
                .bind(tenant.0)
                .bind(chunk.iter().map(|m| m.0).collect::<Vec<_>>())
                .bind(chunk.iter().map(|m| m.1).collect::<Vec<_>>())
                .execute(&mut *c)
                .await?;
            }
            return Ok(());
        }
        for chunk in marks.chunks(500) {
            on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new(format!("DELETE FROM {table} WHERE tenant_id = "));
                qb.push_bind(tenant.0);
                qb.push(" AND (customer_id, version) IN (");
                qb.push_values(chunk, |mut b, (customer, version)| {
                    b.push_bind(*customer).push_bind(*version);
                });
                qb.push(")");
                qb.build().persistent(false).execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }
}
