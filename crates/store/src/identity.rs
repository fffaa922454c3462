//! Identity resolution's storage: looking profiles up by email, external id or anonymous id,
//! linking anonymous ids, upgrading and merging profiles, and touching them as events arrive.

use cairn_domain::{CustomerId, TenantId};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Conn, Result};

/// A profile found by one of its identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub id: CustomerId,
    /// Whether it has an email or external id (is not an anonymous visitor).
    pub known: bool,
}

#[derive(sqlx::FromRow)]
struct FoundRow {
    id: i64,
    email: Option<String>,
    external_id: Option<String>,
}

impl From<FoundRow> for Found {
    fn from(r: FoundRow) -> Self {
        Found { id: CustomerId(r.id), known: r.email.is_some() || r.external_id.is_some() }
    }
}

/// What a batch of events changes on one profile.
#[derive(Debug, Clone, Copy)]
pub struct ProfileTouch<'a> {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub traits: Option<&'a Value>,
    pub name: Option<&'a str>,
    pub phone: Option<&'a str>,
}

/// A pending merge of one profile's events into another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingMerge {
    pub id: i64,
    pub tenant_id: i64,
    pub from_id: i64,
    pub into_id: i64,
}

impl Conn {
    pub async fn customer_exists(&mut self, tenant: TenantId, id: CustomerId) -> Result<Option<Found>> {
        let row: Option<FoundRow> = on!(self, |c| sqlx::query_as(
            "SELECT id, email, external_id FROM customers WHERE tenant_id = $1 AND id = $2"
        )
        .bind(tenant.0)
        .bind(id.0)
        .fetch_optional(c)
        .await)?;
        Ok(row.map(Into::into))
    }

    /// Points an anonymous id at a profile (moving it if it pointed elsewhere).
    pub async fn link_anonymous_id(
        &mut self,
        tenant: TenantId,
        anonymous_id: &str,
        customer: CustomerId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
            "INSERT INTO customer_anonymous_ids (tenant_id, anonymous_id, customer_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, anonymous_id) DO UPDATE SET customer_id = excluded.customer_id"
        )
        .bind(tenant.0)
        .bind(anonymous_id)
        .bind(customer.0)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Sets an email and/or external id on a profile that lacks them.
    pub async fn set_customer_identity(
        &mut self,
        tenant: TenantId,
        id: CustomerId,
        email: Option<&str>,
        external_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, |c| sqlx::query(
            "UPDATE customers SET email = COALESCE(email, $1), external_id = COALESCE(external_id, $2), updated_at = $3
             WHERE tenant_id = $4 AND id = $5"
        )
        .bind(email)
        .bind(external_id)
        .bind(now)
        .bind(tenant.0)
        .bind(id.0)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(crate::StoreError::from)?;
        Ok(())
    }

    /// Merges profile `from` into `into`: its anonymous ids move, its first-seen time and
    /// traits fill gaps in `into`, the profile row goes, and a pending merge is recorded for
    /// the event store.
    pub async fn merge_customers(
        &mut self,
        tenant: TenantId,
        from: CustomerId,
        into: CustomerId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, |c| {
            sqlx::query("UPDATE customer_anonymous_ids SET customer_id = $1 WHERE tenant_id = $2 AND customer_id = $3")
                .bind(into.0)
                .bind(tenant.0)
                .bind(from.0)
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })?;
        let old = self.customer(tenant, from).await?;
        let new = self.customer(tenant, into).await?;
        let mut traits = old.traits.clone();
        if let (Value::Object(t), Value::Object(n)) = (&mut traits, &new.traits) {
            for (k, v) in n {
                t.insert(k.clone(), v.clone());
            }
        }
        let first_seen = match (old.first_seen_at, new.first_seen_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let last_seen = match (old.last_seen_at, new.last_seen_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        on!(self, |c| {
            sqlx::query(
            "UPDATE customers SET traits = $1, first_seen_at = $2, last_seen_at = $3, updated_at = $4,
                 name = COALESCE(name, $5), phone = COALESCE(phone, $6), city = COALESCE(city, $7), country = COALESCE(country, $8)
             WHERE tenant_id = $9 AND id = $10"
        )
        .bind(Json(&traits))
        .bind(first_seen)
        .bind(last_seen)
        .bind(now)
        .bind(old.name.as_deref())
        .bind(old.phone.as_deref())
        .bind(old.city.as_deref())
        .bind(old.country.as_deref())
        .bind(tenant.0)
        .bind(into.0)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
        self.forget_customer_memberships(tenant, from).await?;
        self.delete_scores(tenant, &[from.0]).await?;
        on!(self, |c| sqlx::query("DELETE FROM customers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(from.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        on!(self, |c| {
            sqlx::query("INSERT INTO customer_merges (tenant_id, from_id, into_id, created_at) VALUES ($1, $2, $3, $4)")
                .bind(tenant.0)
                .bind(from.0)
                .bind(into.0)
                .bind(now)
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    pub async fn pending_merges(&mut self, limit: i64) -> Result<Vec<PendingMerge>> {
        Ok(on!(self, |c| {
            sqlx::query_as(
            "SELECT id, tenant_id, from_id, into_id FROM customer_merges WHERE applied_at IS NULL ORDER BY id LIMIT $1"
        )
        .bind(limit)
        .fetch_all(c)
        .await
        })?)
    }

    pub async fn mark_merge_applied(&mut self, id: i64, now: DateTime<Utc>) -> Result<()> {
        on!(self, |c| sqlx::query("UPDATE customer_merges SET applied_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records activity on a profile: first seen is the earliest event time, last seen the
    /// latest (whatever order events arrive in); `traits` merge key by key; identify's name
    /// and phone replace the stored ones.
    pub async fn touch_customer(
        &mut self,
        tenant: TenantId,
        id: CustomerId,
        touch: &ProfileTouch<'_>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let ProfileTouch { first, last, traits, name, phone } = *touch;
        let merged = match traits {
            Some(Value::Object(patch)) if !patch.is_empty() => {
                let mut current = self.customer(tenant, id).await?.traits;
                if let Value::Object(t) = &mut current {
                    for (k, v) in patch {
                        if v.is_null() {
                            t.remove(k);
                        } else {
                            t.insert(k.clone(), v.clone());
                        }
                    }
                }
                Some(current)
            }
            _ => None,
        };
        on!(self, |c| {
            sqlx::query(
                "UPDATE customers SET
                 first_seen_at = CASE WHEN first_seen_at IS NULL OR first_seen_at > $1 THEN $1 ELSE first_seen_at END,
                 last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < $2 THEN $2 ELSE last_seen_at END,
                 traits = COALESCE($3, traits), name = COALESCE($4, name), phone = COALESCE($5, phone), updated_at = $6
             WHERE tenant_id = $7 AND id = $8",
            )
            .bind(first)
            .bind(last)
            .bind(merged.as_ref().map(Json))
            .bind(name)
            .bind(phone)
            .bind(now)
            .bind(tenant.0)
            .bind(id.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}

/// Which identity a bulk lookup matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    Email,
    ExternalId,
    AnonymousId,
}

#[derive(sqlx::FromRow)]
struct KeyedRow {
    key: String,
    id: i64,
    email: Option<String>,
    external_id: Option<String>,
}

impl Conn {
    /// Looks up many identities of one kind at once (the processor's batch prefetch).
    pub async fn customers_by_identities(
        &mut self,
        tenant: TenantId,
        kind: IdentityKind,
        keys: &[String],
    ) -> Result<Vec<(String, Found)>> {
        let mut out = Vec::with_capacity(keys.len());
        let (select, column) = match kind {
            IdentityKind::Email => {
                ("SELECT c.email AS key, c.id, c.email, c.external_id FROM customers c WHERE c.tenant_id = ", "c.email")
            }
            IdentityKind::ExternalId => (
                "SELECT c.external_id AS key, c.id, c.email, c.external_id FROM customers c WHERE c.tenant_id = ",
                "c.external_id",
            ),
            IdentityKind::AnonymousId => (
                "SELECT a.anonymous_id AS key, c.id, c.email, c.external_id FROM customer_anonymous_ids a \
                 JOIN customers c ON c.id = a.customer_id WHERE a.tenant_id = ",
                "a.anonymous_id",
            ),
        };
        for chunk in keys.chunks(500) {
            let rows: Vec<KeyedRow> = on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new(select);
                qb.push_bind(tenant.0);
                qb.push(" AND ").push(column).push(" IN (");
                let mut list = qb.separated(", ");
                for k in chunk {
                    list.push_bind(k.as_str());
                }
                qb.push(")");
                qb.build_query_as().fetch_all(c).await
            })?;
            out.extend(rows.into_iter().map(|r| {
                let known = r.email.is_some() || r.external_id.is_some();
                (r.key, Found { id: CustomerId(r.id), known })
            }));
        }
        Ok(out)
    }

    /// Moves first/last seen of many profiles at once (one statement per 500 profiles).
    pub async fn touch_seen_many(
        &mut self,
        touches: &[(TenantId, CustomerId, DateTime<Utc>, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        for chunk in touches.chunks(500) {
            on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new(
                    "UPDATE customers SET \
                     first_seen_at = CASE WHEN first_seen_at IS NULL OR first_seen_at > v.column3 THEN v.column3 ELSE first_seen_at END, \
                     last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < v.column4 THEN v.column4 ELSE last_seen_at END, \
                     updated_at = ",
                );
                qb.push_bind(now);
                qb.push(" FROM (");
                qb.push_values(chunk, |mut b, (t, id, first, last)| {
                    b.push_bind(t.0).push_bind(id.0).push_bind(*first).push_bind(*last);
                });
                qb.push(") AS v WHERE customers.tenant_id = v.column1 AND customers.id = v.column2");
                qb.build().execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }
}
