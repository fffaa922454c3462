//! Campaigns (docs/campaigns.md): definitions (`campaigns`), one send record per (campaign,
//! customer, channel) (`campaign_sends`), the suppression list, channel settings per workspace,
//! the sending lease per workspace (`campaign_locks`) and server-wide signing secrets.

use std::collections::HashSet;

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};

use crate::{db::Raw, Conn, Result, StoreError};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CampaignRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    /// `email`, `sms` or `ad`.
    pub kind: String,
    pub segment_id: Option<i64>,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub from_name: Option<String>,
    pub from_email: Option<String>,
    pub reply_to: Option<String>,
    /// draft, scheduled, sending, sent, cancelled, failed.
    pub status: String,
    pub send_at: Option<DateTime<Utc>>,
    pub track_opens: bool,
    pub track_clicks: bool,
    /// Messages per second for this campaign (the workspace's limit applies as well).
    pub rate_limit: Option<i64>,
    /// Only customers whose consent trait is true receive it (otherwise: everyone not opted out).
    pub require_consent: bool,
    /// Whether every recipient has its send record.
    pub audience_ready: bool,
    pub recipients: i64,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLS: &str = "id, tenant_id, name, kind, segment_id, subject, body, from_name, from_email, reply_to, status, \
     send_at, track_opens, track_clicks, rate_limit, require_consent, audience_ready, recipients, error, started_at, \
     finished_at, created_at, updated_at";

/// The writable fields of a campaign.
#[derive(Debug, Clone, Default)]
pub struct CampaignFields {
    pub name: String,
    pub kind: String,
    pub segment_id: Option<i64>,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub from_name: Option<String>,
    pub from_email: Option<String>,
    pub reply_to: Option<String>,
    pub track_opens: bool,
    pub track_clicks: bool,
    pub rate_limit: Option<i64>,
    pub require_consent: bool,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SendRow {
    pub id: i64,
    pub tenant_id: i64,
    pub campaign_id: i64,
    pub customer_id: i64,
    pub channel: String,
    pub address: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub provider_id: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub parts: Option<i64>,
    pub error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub clicked_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A send record with its campaign's name and kind, for a customer's list of messages.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CustomerSend {
    #[sqlx(flatten)]
    pub send: SendRow,
    pub campaign_name: String,
    pub campaign_kind: String,
}

const SEND_COLS: &str = "id, tenant_id, campaign_id, customer_id, channel, address, status, reason, provider_id, \
     attempts, next_attempt_at, parts, error, sent_at, delivered_at, opened_at, clicked_at, unsubscribed_at, \
     created_at, updated_at";

/// A send record to create: `status` is `queued`, or `skipped` with its reason.
#[derive(Debug, Clone)]
pub struct NewSend {
    pub customer_id: i64,
    pub address: Option<String>,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    /// 0 for a campaign; the automation run for a triggered campaign (one message per run).
    pub occurrence: i64,
}

/// What happened to one message.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub id: i64,
    /// sent, failed, bounced, unknown, skipped, or queued (a retry at `next_attempt_at`).
    pub status: &'static str,
    pub reason: Option<String>,
    pub provider_id: Option<String>,
    pub error: Option<String>,
    pub parts: Option<i64>,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
}

/// A campaign's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendCounts {
    pub recipients: i64,
    pub queued: i64,
    pub in_flight: i64,
    pub sent: i64,
    pub delivered: i64,
    pub failed: i64,
    pub bounced: i64,
    pub unknown: i64,
    pub skipped: i64,
    pub cancelled: i64,
    pub opened: i64,
    pub clicked: i64,
    pub unsubscribed: i64,
}

fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

impl Conn {
    pub async fn insert_campaign(
        &mut self,
        tenant: TenantId,
        f: &CampaignFields,
        now: DateTime<Utc>,
    ) -> Result<CampaignRow> {
        let sql = format!(
            "INSERT INTO campaigns (tenant_id, name, kind, segment_id, subject, body, from_name, from_email, reply_to,
                 status, track_opens, track_clicks, rate_limit, require_consent, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'draft', $10, $11, $12, $13, $14, $14) RETURNING {COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(&f.name)
            .bind(&f.kind)
            .bind(f.segment_id)
            .bind(&f.subject)
            .bind(&f.body)
            .bind(&f.from_name)
            .bind(&f.from_email)
            .bind(&f.reply_to)
            .bind(f.track_opens)
            .bind(f.track_clicks)
            .bind(f.rate_limit)
            .bind(f.require_consent)
            .bind(now)
            .fetch_one(c)
            .await)?)
    }

    pub async fn campaign(&mut self, tenant: TenantId, id: i64) -> Result<CampaignRow> {
        let sql = format!("SELECT {COLS} FROM campaigns WHERE tenant_id = $1 AND id = $2");
        let row: Option<CampaignRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// A workspace's campaigns, newest first, with the total.
    pub async fn list_campaigns(
        &mut self,
        tenant: TenantId,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<CampaignRow>, i64)> {
        let sql = format!(
            "SELECT {COLS} FROM campaigns WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2)
             ORDER BY id DESC LIMIT $3 OFFSET $4"
        );
        let rows = on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(status)
            .bind(limit)
            .bind(offset)
            .fetch_all(c)
            .await)?;
        let total: i64 = on!(self, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM campaigns WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2)"
        )
        .bind(tenant.0)
        .bind(status)
        .fetch_one(c)
        .await)?;
        Ok((rows, total))
    }

    /// Replaces a draft's (or scheduled campaign's) writable fields.
    pub async fn update_campaign(
        &mut self,
        tenant: TenantId,
        id: i64,
        f: &CampaignFields,
        now: DateTime<Utc>,
    ) -> Result<CampaignRow> {
        let sql = format!(
            "UPDATE campaigns SET name = $1, kind = $2, segment_id = $3, subject = $4, body = $5, from_name = $6,
                 from_email = $7, reply_to = $8, track_opens = $9, track_clicks = $10, rate_limit = $11,
                 require_consent = $12, updated_at = $13
             WHERE tenant_id = $14 AND id = $15 RETURNING {COLS}"
        );
        let row: Option<CampaignRow> = on!(self, |c| sqlx::query_as(&sql)
            .bind(&f.name)
            .bind(&f.kind)
            .bind(f.segment_id)
            .bind(&f.subject)
            .bind(&f.body)
            .bind(&f.from_name)
            .bind(&f.from_email)
            .bind(&f.reply_to)
            .bind(f.track_opens)
            .bind(f.track_clicks)
            .bind(f.rate_limit)
            .bind(f.require_consent)
            .bind(now)
            .bind(tenant.0)
            .bind(id)
            .fetch_optional(c)
            .await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn delete_campaign(&mut self, tenant: TenantId, id: i64) -> Result<bool> {
        let n = on!(self, |c| sqlx::query("DELETE FROM campaigns WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Moves a campaign from one of `from` to `to` (with `send_at` when scheduling). False when
    /// it was in none of them.
    pub async fn transition_campaign(
        &mut self,
        tenant: TenantId,
        id: i64,
        from: &[&str],
        to: &str,
        send_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let from = from.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
        let sql = format!(
            "UPDATE campaigns SET status = $1, send_at = COALESCE($2, send_at), updated_at = $3,
                 started_at = CASE WHEN $1 = 'sending' THEN COALESCE(started_at, $3) ELSE started_at END,
                 finished_at = CASE WHEN $1 IN ('sent', 'cancelled', 'failed') THEN $3 ELSE finished_at END
             WHERE tenant_id = $4 AND id = $5 AND status IN ({from})"
        );
        let n = on!(self, |c| sqlx::query(&sql)
            .persistent(false)
            .bind(to)
            .bind(send_at)
            .bind(now)
            .bind(tenant.0)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn fail_campaign(&mut self, tenant: TenantId, id: i64, error: &str, now: DateTime<Utc>) -> Result<()> {
        on!(self, |c| sqlx::query(
            "UPDATE campaigns SET status = 'failed', error = $1, finished_at = $2, updated_at = $2
             WHERE tenant_id = $3 AND id = $4 AND status = 'sending'"
        )
        .bind(error)
        .bind(now)
        .bind(tenant.0)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Scheduled campaigns whose time has come become `sending`; returns how many.
    pub async fn start_due_campaigns(&mut self, now: DateTime<Utc>) -> Result<u64> {
        Ok(on!(self, |c| sqlx::query(
            "UPDATE campaigns SET status = 'sending', started_at = $1, updated_at = $1
             WHERE status = 'scheduled' AND send_at <= $1"
        )
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?)
    }

    /// Workspaces with a campaign sending, or an automation's triggered campaign with messages
    /// waiting.
    pub async fn sending_tenants(&mut self) -> Result<Vec<TenantId>> {
        let ids: Vec<i64> = on!(self, |c| {
            sqlx::query_scalar(
            "SELECT DISTINCT tenant_id FROM campaigns c WHERE status = 'sending' OR (status = 'triggered' AND EXISTS
                 (SELECT 1 FROM campaign_sends s WHERE s.campaign_id = c.id AND s.status IN ('queued', 'committing')))
             ORDER BY tenant_id"
        )
        .fetch_all(c)
        .await
        })?;
        Ok(ids.into_iter().map(TenantId).collect())
    }

    /// A workspace's campaigns that are sending (or triggered with messages waiting), oldest
    /// first.
    pub async fn sending_campaigns(&mut self, tenant: TenantId) -> Result<Vec<CampaignRow>> {
        let sql = format!(
            "SELECT {COLS} FROM campaigns c WHERE tenant_id = $1 AND (status = 'sending' OR (status = 'triggered' AND EXISTS
                 (SELECT 1 FROM campaign_sends s WHERE s.campaign_id = c.id AND s.status IN ('queued', 'committing'))))
             ORDER BY id"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).fetch_all(c).await)?)
    }

    pub async fn set_audience_ready(&mut self, id: i64, recipients: i64, now: DateTime<Utc>) -> Result<()> {
        on!(self, |c| sqlx::query(
            "UPDATE campaigns SET audience_ready = TRUE, recipients = $1, updated_at = $2 WHERE id = $3"
        )
        .bind(recipients)
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Takes or renews the sending lease on a workspace.
    pub async fn take_campaign_lease(
        &mut self,
        tenant: TenantId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        self.take_lease("campaign_locks", tenant, holder, now, until).await
    }

    // ---- send records ----

    /// Creates send records, due at `due` (retries are timed by the system clock); those that
    /// exist already are left alone. Returns how many were new.
    pub async fn insert_sends(
        &mut self,
        tenant: TenantId,
        campaign: i64,
        channel: &str,
        sends: &[NewSend],
        now: DateTime<Utc>,
        due: DateTime<Utc>,
    ) -> Result<u64> {
        let mut n = 0;
        if let Raw::Postgres(c) = self.raw() {
            for chunk in sends.chunks(10_000) {
                n += sqlx::query(
                    "INSERT INTO campaign_sends (tenant_id, campaign_id, customer_id, channel, address, status, reason,
                         next_attempt_at, created_at, updated_at, occurrence)
                     SELECT $1, $2, u.c, $3, u.a, u.s, u.r, $9, $4, $4, u.o
                     FROM UNNEST($5::bigint[], $6::text[], $7::text[], $8::text[], $10::bigint[]) AS u(c, a, s, r, o)
                     ON CONFLICT (campaign_id, customer_id, channel, occurrence) DO NOTHING",
                )
                .bind(tenant.0)
                .bind(campaign)
                .bind(channel)
                .bind(now)
                .bind(chunk.iter().map(|s| s.customer_id).collect::<Vec<_>>())
                .bind(chunk.iter().map(|s| s.address.clone()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|s| s.status).collect::<Vec<_>>())
                .bind(chunk.iter().map(|s| s.reason).collect::<Vec<_>>())
                .bind(due)
                .bind(chunk.iter().map(|s| s.occurrence).collect::<Vec<_>>())
                .execute(&mut *c)
                .await?
                .rows_affected();
            }
            return Ok(n);
        }
        for s in sends {
            n += on!(self, |c| sqlx::query(
                "INSERT INTO campaign_sends (tenant_id, campaign_id, customer_id, channel, address, status, reason,
                     next_attempt_at, created_at, updated_at, occurrence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $8, $8, $10)
                 ON CONFLICT (campaign_id, customer_id, channel, occurrence) DO NOTHING"
            )
            .bind(tenant.0)
            .bind(campaign)
            .bind(s.customer_id)
            .bind(channel)
            .bind(&s.address)
            .bind(s.status)
            .bind(s.reason)
            .bind(now)
            .bind(due)
            .bind(s.occurrence)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok(n)
    }

    /// The next queued messages of a campaign that are due, oldest first, after the record `after`
    /// (0: from the start).
    pub async fn due_sends(
        &mut self,
        campaign: i64,
        after: i64,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SendRow>> {
        let sql = format!(
            "SELECT {SEND_COLS} FROM campaign_sends
             WHERE campaign_id = $1 AND status = 'queued' AND id > $2 AND next_attempt_at <= $3 ORDER BY id LIMIT $4"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(campaign).bind(after).bind(now).bind(limit).fetch_all(c).await)?)
    }

    /// Moves queued records to `committing`: from here on the message may have left, so a crash
    /// never sends it again (docs/campaigns.md, "Exactly once"). Returns the ids really moved:
    /// not a record cancelled meanwhile, nor one whose address was suppressed since its batch
    /// was rendered (an unsubscribe takes effect for every message not yet gone).
    pub async fn commit_sends(&mut self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        if let Raw::Postgres(c) = self.raw() {
            return Ok(sqlx::query_scalar(
                "UPDATE campaign_sends SET status = 'committing', attempts = attempts + 1, updated_at = $2
                 WHERE id = ANY($1) AND status = 'queued' AND NOT EXISTS (
                     SELECT 1 FROM suppressions p WHERE p.tenant_id = campaign_sends.tenant_id
                        AND p.channel = campaign_sends.channel AND p.address = campaign_sends.address)
                 RETURNING id",
            )
            .bind(ids)
            .bind(now)
            .fetch_all(&mut *c)
            .await?);
        }
        let sql = format!(
            "UPDATE campaign_sends SET status = 'committing', attempts = attempts + 1, updated_at = $1
             WHERE id IN ({}) AND status = 'queued' AND NOT EXISTS (
                 SELECT 1 FROM suppressions p WHERE p.tenant_id = campaign_sends.tenant_id
                    AND p.channel = campaign_sends.channel AND p.address = campaign_sends.address)
             RETURNING id",
            id_list(ids)
        );
        Ok(on!(self, |c| sqlx::query_scalar(&sql).persistent(false).bind(now).fetch_all(c).await)?)
    }

    /// Records what happened to messages. Records still `committing` or `queued` take the
    /// outcome whole. A provider's status callback can beat the sender here (the provider
    /// answers, reports delivery, and only then does the sender's batch commit): a record a
    /// callback already settled under the same provider id keeps its status and gains the
    /// sender's facts (parts, attempts); any other record is left alone.
    pub async fn finish_sends(&mut self, outcomes: &[SendOutcome], now: DateTime<Utc>) -> Result<()> {
        if let Raw::Postgres(c) = self.raw() {
            for chunk in outcomes.chunks(5_000) {
                sqlx::query(
                    "UPDATE campaign_sends s SET
                         status = CASE WHEN s.status IN ('committing', 'queued') THEN u.st ELSE s.status END,
                         reason = CASE WHEN s.status IN ('committing', 'queued') THEN u.re ELSE s.reason END,
                         error = CASE WHEN s.status IN ('committing', 'queued') THEN u.er ELSE s.error END,
                         next_attempt_at = CASE WHEN s.status IN ('committing', 'queued') THEN u.na
                                                ELSE s.next_attempt_at END,
                         provider_id = COALESCE(s.provider_id, u.pi), parts = u.pa, attempts = u.at,
                         sent_at = CASE WHEN u.st IN ('sent', 'unknown') THEN COALESCE(s.sent_at, $1)
                                        ELSE s.sent_at END,
                         updated_at = $1
                     FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                                 $8::bigint[], $9::timestamptz[]) AS u(id, st, re, pi, er, pa, at, na)
                     WHERE s.id = u.id AND (s.status IN ('committing', 'queued') OR s.provider_id = u.pi)",
                )
                .bind(now)
                .bind(chunk.iter().map(|o| o.id).collect::<Vec<_>>())
                .bind(chunk.iter().map(|o| o.status).collect::<Vec<_>>())
                .bind(chunk.iter().map(|o| o.reason.clone()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|o| o.provider_id.clone()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|o| o.error.clone()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|o| o.parts).collect::<Vec<_>>())
                .bind(chunk.iter().map(|o| o.attempts).collect::<Vec<_>>())
                .bind(chunk.iter().map(|o| o.next_attempt_at).collect::<Vec<_>>())
                .execute(&mut *c)
                .await?;
            }
            return Ok(());
        }
        // SQLite: one statement per 1,000 outcomes (a CTE of the values joined by id) instead of
        // one per outcome — each statement is a round trip to sqlx's SQLite worker thread, and
        // per-row updates made the sender's group commits its bottleneck.
        if let Raw::Sqlite(c) = self.raw() {
            for chunk in outcomes.chunks(1_000) {
                let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("WITH u(id, st, re, pi, er, pa, at, na) AS (");
                qb.push_values(chunk, |mut b, o| {
                    b.push_bind(o.id)
                        .push_bind(o.status)
                        .push_bind(o.reason.as_deref())
                        .push_bind(o.provider_id.as_deref())
                        .push_bind(o.error.as_deref())
                        .push_bind(o.parts)
                        .push_bind(o.attempts)
                        .push_bind(o.next_attempt_at);
                });
                qb.push(
                    ") UPDATE campaign_sends SET
                         status = CASE WHEN campaign_sends.status IN ('committing', 'queued') THEN u.st
                                       ELSE campaign_sends.status END,
                         reason = CASE WHEN campaign_sends.status IN ('committing', 'queued') THEN u.re
                                       ELSE campaign_sends.reason END,
                         error = CASE WHEN campaign_sends.status IN ('committing', 'queued') THEN u.er
                                      ELSE campaign_sends.error END,
                         next_attempt_at = CASE WHEN campaign_sends.status IN ('committing', 'queued') THEN u.na
                                                ELSE campaign_sends.next_attempt_at END,
                         provider_id = COALESCE(campaign_sends.provider_id, u.pi), parts = u.pa, attempts = u.at,
                         sent_at = CASE WHEN u.st IN ('sent', 'unknown') THEN COALESCE(campaign_sends.sent_at, ",
                );
                qb.push_bind(now);
                qb.push(") ELSE campaign_sends.sent_at END, updated_at = ");
                qb.push_bind(now);
                qb.push(
                    " FROM u WHERE campaign_sends.id = u.id
                       AND (campaign_sends.status IN ('committing', 'queued') OR campaign_sends.provider_id = u.pi)",
                );
                qb.build().persistent(false).execute(&mut *c).await?;
            }
        }
        Ok(())
    }

    /// After a restart: records left `committing` by a crash are settled as `to` (`unknown`:
    /// the message may have left) and never sent again. Returns how many.
    pub async fn settle_committing(&mut self, campaign: i64, to: &str, now: DateTime<Utc>) -> Result<u64> {
        Ok(on!(self, |c| sqlx::query(
            "UPDATE campaign_sends SET status = $1, reason = 'interrupted', updated_at = $2
             WHERE campaign_id = $3 AND status = 'committing'"
        )
        .bind(to)
        .bind(now)
        .bind(campaign)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?)
    }

    /// Queued records of a cancelled campaign are cancelled.
    pub async fn cancel_queued_sends(&mut self, campaign: i64, now: DateTime<Utc>) -> Result<u64> {
        Ok(on!(self, |c| {
            sqlx::query(
            "UPDATE campaign_sends SET status = 'cancelled', updated_at = $1 WHERE campaign_id = $2 AND status = 'queued'"
        )
        .bind(now)
        .bind(campaign)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?)
    }

    /// Fails every queued message of a campaign (an automation's triggered campaign whose
    /// channel is not configured).
    pub async fn fail_queued_sends(&mut self, campaign: i64, error: &str, now: DateTime<Utc>) -> Result<u64> {
        Ok(on!(self, |c| {
            sqlx::query(
                "UPDATE campaign_sends SET status = 'failed', error = $1, updated_at = $2
                 WHERE campaign_id = $3 AND status = 'queued'",
            )
            .bind(error)
            .bind(now)
            .bind(campaign)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
        })?)
    }

    /// Creates the campaign an automation's email or SMS step sends through: status
    /// `triggered`, its audience the runs that reach the step.
    pub async fn insert_triggered_campaign(
        &mut self,
        tenant: TenantId,
        automation: i64,
        f: &CampaignFields,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        Ok(on!(self, |c| {
            sqlx::query_scalar(
            "INSERT INTO campaigns (tenant_id, name, kind, subject, body, from_name, from_email, reply_to, status,
                 track_opens, track_clicks, rate_limit, require_consent, audience_ready, automation_id, started_at,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'triggered', $9, $10, $11, $12, TRUE, $13, $14, $14, $14) RETURNING id"
        )
        .bind(tenant.0)
        .bind(&f.name)
        .bind(&f.kind)
        .bind(&f.subject)
        .bind(&f.body)
        .bind(&f.from_name)
        .bind(&f.from_email)
        .bind(&f.reply_to)
        .bind(f.track_opens)
        .bind(f.track_clicks)
        .bind(f.rate_limit)
        .bind(f.require_consent)
        .bind(automation)
        .bind(now)
        .fetch_one(c)
        .await
        })?)
    }

    pub async fn send_counts(&mut self, campaign: i64) -> Result<SendCounts> {
        let rows: Vec<(String, i64, i64, i64, i64)> = on!(self, |c| sqlx::query_as(
            "SELECT status, COUNT(*), COUNT(opened_at), COUNT(clicked_at), COUNT(unsubscribed_at)
             FROM campaign_sends WHERE campaign_id = $1 GROUP BY status"
        )
        .bind(campaign)
        .fetch_all(c)
        .await)?;
        let mut s = SendCounts::default();
        for (status, n, opened, clicked, unsubscribed) in rows {
            s.recipients += n;
            s.opened += opened;
            s.clicked += clicked;
            s.unsubscribed += unsubscribed;
            match status.as_str() {
                "queued" => s.queued += n,
                "committing" => s.in_flight += n,
                "sent" => s.sent += n,
                "delivered" => s.delivered += n,
                "failed" => s.failed += n,
                "bounced" => s.bounced += n,
                "unknown" => s.unknown += n,
                "skipped" => s.skipped += n,
                _ => s.cancelled += n,
            }
        }
        Ok(s)
    }

    /// A campaign's send records in id order, optionally of one status.
    pub async fn list_sends(
        &mut self,
        campaign: i64,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<SendRow>> {
        let sql = format!(
            "SELECT {SEND_COLS} FROM campaign_sends WHERE campaign_id = $1 AND ($2 IS NULL OR status = $2)
             ORDER BY id LIMIT $3 OFFSET $4"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(campaign).bind(status).bind(limit).bind(offset).fetch_all(c).await)?)
    }

    /// A customer's send records across campaigns (automation steps' included), newest first,
    /// each with its campaign's name and kind; and how many there are.
    pub async fn customer_sends(
        &mut self,
        tenant: TenantId,
        customer: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<CustomerSend>, i64)> {
        let cols = SEND_COLS.split(", ").map(|c| format!("s.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {cols}, c.name AS campaign_name, c.kind AS campaign_kind FROM campaign_sends s
             JOIN campaigns c ON c.id = s.campaign_id
             WHERE s.customer_id = $2 AND s.tenant_id = $1 ORDER BY s.id DESC LIMIT $3 OFFSET $4"
        );
        let rows: Vec<CustomerSend> = on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(customer)
            .bind(limit)
            .bind(offset)
            .fetch_all(c)
            .await)?;
        let total: i64 = on!(self, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM campaign_sends WHERE customer_id = $2 AND tenant_id = $1"
        )
        .bind(tenant.0)
        .bind(customer)
        .fetch_one(c)
        .await)?;
        Ok((rows, total))
    }

    pub async fn send_record(&mut self, id: i64) -> Result<SendRow> {
        let sql = format!("SELECT {SEND_COLS} FROM campaign_sends WHERE id = $1");
        let row: Option<SendRow> = on!(self, |c| sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn send_by_provider_id(&mut self, provider_id: &str) -> Result<SendRow> {
        let sql = format!("SELECT {SEND_COLS} FROM campaign_sends WHERE provider_id = $1");
        let row: Option<SendRow> = on!(self, |c| sqlx::query_as(&sql).bind(provider_id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// Sets one of the send's first-time stamps (`opened_at`, `clicked_at`, `unsubscribed_at`,
    /// `delivered_at`) if unset. True when this call set it.
    pub async fn stamp_send(&mut self, id: i64, column: SendStamp, now: DateTime<Utc>) -> Result<bool> {
        let col = column.column();
        let sql = format!("UPDATE campaign_sends SET {col} = $1, updated_at = $1 WHERE id = $2 AND {col} IS NULL");
        let n = on!(self, |c| sqlx::query(&sql).bind(now).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Settles a send from a provider's report (delivery, failure, bounce). Reports can arrive
    /// out of order: a late `sent` never takes a settled record back.
    pub async fn settle_send(
        &mut self,
        id: i64,
        status: &str,
        provider_id: Option<&str>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
            "UPDATE campaign_sends SET
                 status = CASE WHEN $1 = 'sent' AND status IN ('delivered', 'failed', 'bounced') THEN status ELSE $1 END,
                 provider_id = COALESCE($2, provider_id), error = COALESCE($3, error),
                 delivered_at = CASE WHEN $1 = 'delivered' THEN $4 ELSE delivered_at END,
                 sent_at = COALESCE(sent_at, $4), updated_at = $4
             WHERE id = $5"
        )
        .bind(status)
        .bind(provider_id)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// The latest send to an address in a workspace (bounce reports name the address).
    pub async fn latest_send_to(&mut self, tenant: TenantId, channel: &str, address: &str) -> Result<Option<SendRow>> {
        let sql = format!(
            "SELECT {SEND_COLS} FROM campaign_sends WHERE tenant_id = $1 AND channel = $2 AND address = $3
             ORDER BY id DESC LIMIT 1"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(channel).bind(address).fetch_optional(c).await)?)
    }

    // ---- suppressions ----

    /// Adds an address to the workspace's suppression list (kept as it is when already there).
    pub async fn suppress(
        &mut self,
        tenant: TenantId,
        channel: &str,
        address: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let n = on!(self, |c| sqlx::query(
            "INSERT INTO suppressions (tenant_id, channel, address, reason, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, channel, address) DO NOTHING"
        )
        .bind(tenant.0)
        .bind(channel)
        .bind(address)
        .bind(reason)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn unsuppress(&mut self, tenant: TenantId, channel: &str, address: &str) -> Result<bool> {
        let n = on!(self, |c| sqlx::query(
            "DELETE FROM suppressions WHERE tenant_id = $1 AND channel = $2 AND address = $3"
        )
        .bind(tenant.0)
        .bind(channel)
        .bind(address)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Which of `addresses` are suppressed.
    pub async fn suppressed(
        &mut self,
        tenant: TenantId,
        channel: &str,
        addresses: &[String],
    ) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        if let Raw::Postgres(c) = self.raw() {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT address FROM suppressions WHERE tenant_id = $1 AND channel = $2 AND address = ANY($3)",
            )
            .bind(tenant.0)
            .bind(channel)
            .bind(addresses)
            .fetch_all(&mut *c)
            .await?;
            out.extend(rows);
            return Ok(out);
        }
        for chunk in addresses.chunks(500) {
            let marks = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(",");
            let sql = format!(
                "SELECT address FROM suppressions WHERE tenant_id = $1 AND channel = $2 AND address IN ({marks})"
            );
            let rows: Vec<String> = on!(self, |c| {
                let mut q = sqlx::query_scalar(&sql).persistent(false).bind(tenant.0).bind(channel);
                for a in chunk {
                    q = q.bind(a);
                }
                q.fetch_all(c).await
            })?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// The suppression list: (channel, address, reason, since), newest first.
    pub async fn list_suppressions(
        &mut self,
        tenant: TenantId,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<(String, String, String, DateTime<Utc>)>> {
        Ok(on!(self, |c| sqlx::query_as(
            "SELECT channel, address, reason, created_at FROM suppressions WHERE tenant_id = $1
             ORDER BY created_at DESC, address LIMIT $2 OFFSET $3"
        )
        .bind(tenant.0)
        .bind(limit)
        .bind(offset)
        .fetch_all(c)
        .await)?)
    }

    /// Profiles of a workspace with this email (`channel` email) or phone (`sms`).
    pub async fn customer_ids_by_address(
        &mut self,
        tenant: TenantId,
        channel: &str,
        address: &str,
    ) -> Result<Vec<i64>> {
        let sql = if channel == "sms" {
            "SELECT id FROM customers WHERE tenant_id = $1 AND phone = $2 ORDER BY id"
        } else {
            "SELECT id FROM customers WHERE tenant_id = $1 AND email = $2 ORDER BY id"
        };
        Ok(on!(self, |c| sqlx::query_scalar(sql).bind(tenant.0).bind(address).fetch_all(c).await)?)
    }

    // ---- settings and secrets ----

    pub async fn channel_settings(&mut self, tenant: TenantId, channel: &str) -> Result<Option<String>> {
        Ok(on!(self, |c| sqlx::query_scalar(
            "SELECT settings FROM channel_settings WHERE tenant_id = $1 AND channel = $2"
        )
        .bind(tenant.0)
        .bind(channel)
        .fetch_optional(c)
        .await)?)
    }

    pub async fn put_channel_settings(
        &mut self,
        tenant: TenantId,
        channel: &str,
        settings: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
            "INSERT INTO channel_settings (tenant_id, channel, settings, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, channel) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at"
        )
        .bind(tenant.0)
        .bind(channel)
        .bind(settings)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// A server-wide secret, created from `fresh` by whichever instance asks first.
    pub async fn server_secret(&mut self, name: &str, fresh: &str, now: DateTime<Utc>) -> Result<String> {
        on!(self, |c| sqlx::query(
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING"
        )
        .bind(name)
        .bind(fresh)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(on!(self, |c| sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(c)
            .await)?)
    }
}

/// The first-time stamps of a send record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStamp {
    Opened,
    Clicked,
    Unsubscribed,
}

impl SendStamp {
    fn column(self) -> &'static str {
        match self {
            SendStamp::Opened => "opened_at",
            SendStamp::Clicked => "clicked_at",
            SendStamp::Unsubscribed => "unsubscribed_at",
        }
    }
}
