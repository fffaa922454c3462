//! CRM entities (seeds 000 and 004): leads, opportunities on pipelines, prospect accounts,
//! activities, notes, files, custom field definitions, forms and imports. People are customer
//! profiles (`crate::customers`) with the CRM columns of `people`.
//!
//! Lists take filters whose values are always bound, never spliced into SQL: a [`Where`] collects
//! conditions with `$n` placeholders and their [`Arg`]s, and [`bind_all!`] binds them in order on
//! whichever backend runs the statement.

pub mod leads;
pub mod opportunities;
pub mod people;
pub mod prospects;
pub mod records;
pub mod reports;
pub mod settings;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A bound value of a dynamically built statement.
#[derive(Debug, Clone)]
pub enum Arg {
    I64(Option<i64>),
    F64(Option<f64>),
    Text(Option<String>),
    Bool(bool),
    Time(Option<DateTime<Utc>>),
    Json(Value),
    /// A nullable JSON column (a typed NULL: PostgreSQL refuses a text NULL for jsonb).
    JsonOpt(Option<Value>),
    Bytes(Vec<u8>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::I64(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::I64(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::F64(Some(v))
    }
}
impl From<Option<f64>> for Arg {
    fn from(v: Option<f64>) -> Self {
        Arg::F64(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_string()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_string))
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Arg::Time(Some(v))
    }
}
impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Arg::Time(v)
    }
}
impl From<Value> for Arg {
    fn from(v: Value) -> Self {
        Arg::Json(v)
    }
}

/// Binds every [`Arg`] of a slice, in order, to a query of either backend.
macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args.iter() {
            q = match a {
                $crate::crm::Arg::I64(v) => q.bind(*v),
                $crate::crm::Arg::F64(v) => q.bind(*v),
                $crate::crm::Arg::Text(v) => q.bind(v.clone()),
                $crate::crm::Arg::Bool(v) => q.bind(*v),
                $crate::crm::Arg::Time(v) => q.bind(*v),
                $crate::crm::Arg::Json(v) => q.bind(sqlx::types::Json(v.clone())),
                $crate::crm::Arg::JsonOpt(v) => q.bind(v.clone().map(sqlx::types::Json)),
                $crate::crm::Arg::Bytes(v) => q.bind(v.clone()),
            };
        }
        q
    }};
}
pub(crate) use bind_all;

/// The conditions of a list query and their bound values.
#[derive(Debug, Default, Clone)]
pub struct Where {
    conds: Vec<String>,
    pub(crate) args: Vec<Arg>,
}

impl Where {
    /// Starts with `tenant_id = $1`.
    pub fn tenant(tenant: cairn_domain::TenantId) -> Where {
        let mut w = Where::default();
        w.push("tenant_id = ?", tenant.0);
        w
    }

    /// The next placeholder's number.
    pub fn next(&self) -> usize {
        self.args.len() + 1
    }

    /// Adds a condition whose `?`s are each replaced by the next placeholder, binding `arg` to
    /// all of them (the same value repeated).
    pub fn push(&mut self, cond: &str, arg: impl Into<Arg>) {
        let arg = arg.into();
        let mut out = String::new();
        for (i, part) in cond.split('?').enumerate() {
            if i > 0 {
                out.push_str(&format!("${}", self.next()));
                self.args.push(arg.clone());
            }
            out.push_str(part);
        }
        self.conds.push(out);
    }

    /// Adds `cond` when `arg` is present.
    pub fn opt<T: Into<Arg>>(&mut self, cond: &str, arg: Option<T>) {
        if let Some(a) = arg {
            self.push(cond, a);
        }
    }

    /// Adds a condition without a bound value.
    pub fn raw(&mut self, cond: &str) {
        self.conds.push(cond.to_string());
    }

    pub fn sql(&self) -> String {
        if self.conds.is_empty() {
            "TRUE".into()
        } else {
            self.conds.join(" AND ")
        }
    }
}

/// `$1, $2, …, $n`.
pub(crate) fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// `a = $1, b = $2, …` for an UPDATE of these columns, bound first.
pub(crate) fn assignments(cols: &[&str]) -> String {
    cols.iter().enumerate().map(|(i, c)| format!("{c} = ${}", i + 1)).collect::<Vec<_>>().join(", ")
}

/// A `LIKE` pattern matching `term` anywhere, literally, lower-cased (use with `ESCAPE '\'`).
pub fn contains_pattern(term: &str) -> String {
    let mut p = String::from("%");
    for c in term.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The entities activities, notes and files attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityType {
    Lead,
    Contact,
    Opportunity,
    Prospect,
}

impl EntityType {
    /// Canonical names and the other seeds' words for them (person, customer, deal, client,
    /// company).
    pub fn parse(s: &str) -> Option<EntityType> {
        Some(match s {
            "lead" | "leads" => EntityType::Lead,
            "contact" | "contacts" | "person" | "people" | "customer" | "customers" => EntityType::Contact,
            "opportunity" | "opportunities" | "deal" | "deals" => EntityType::Opportunity,
            "prospect" | "prospects" | "client" | "clients" | "company" | "companies" => EntityType::Prospect,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Lead => "lead",
            EntityType::Contact => "contact",
            EntityType::Opportunity => "opportunity",
            EntityType::Prospect => "prospect",
        }
    }

    /// The table holding the entity itself.
    pub fn table(self) -> &'static str {
        match self {
            EntityType::Lead => "leads",
            EntityType::Contact => "customers",
            EntityType::Opportunity => "opportunities",
            EntityType::Prospect => "prospects",
        }
    }
}

impl crate::Conn {
    /// Whether the workspace has this entity.
    pub async fn entity_exists(
        &mut self,
        tenant: cairn_domain::TenantId,
        ty: EntityType,
        id: i64,
    ) -> crate::Result<bool> {
        let sql = format!("SELECT COUNT(*) FROM {} WHERE tenant_id = $1 AND id = $2", ty.table());
        let n: i64 = on!(self, |c| sqlx::query_scalar(&sql).bind(tenant.0).bind(id).fetch_one(c).await)?;
        Ok(n > 0)
    }

    /// Removes the activities, notes and files of an entity (when it is deleted).
    pub async fn delete_attachments(
        &mut self,
        tenant: cairn_domain::TenantId,
        ty: EntityType,
        id: i64,
    ) -> crate::Result<()> {
        for table in ["activities", "notes", "files"] {
            let sql = format!("DELETE FROM {table} WHERE tenant_id = $1 AND entity_type = $2 AND entity_id = $3");
            on!(self, |c| sqlx::query(&sql)
                .bind(tenant.0)
                .bind(ty.as_str())
                .bind(id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// A user's display name, for payloads (`ownerName`); none when not a member.
    pub async fn member_name(
        &mut self,
        tenant: cairn_domain::TenantId,
        user: Option<i64>,
    ) -> crate::Result<Option<String>> {
        let Some(user) = user else { return Ok(None) };
        Ok(on!(self, |c| sqlx::query_scalar(
            "SELECT u.name FROM users u JOIN memberships m ON m.user_id = u.id WHERE m.tenant_id = $1 AND u.id = $2"
        )
        .bind(tenant.0)
        .bind(user)
        .fetch_optional(c)
        .await)?)
    }
}

/// Generic list helper: a page of `T` rows from `sql_from` (`FROM table WHERE …`) and the total.
pub(crate) async fn page<T>(
    conn: &mut crate::Conn,
    cols: &str,
    from_where: &str,
    order: &str,
    args: &[Arg],
    limit: i64,
    offset: i64,
) -> crate::Result<(Vec<T>, i64)>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let n = args.len();
    let sql = format!("SELECT {cols} {from_where} ORDER BY {order} LIMIT ${} OFFSET ${}", n + 1, n + 2);
    let rows: Vec<T> =
        on!(conn, |c| bind_all!(sqlx::query_as(&sql), args).bind(limit).bind(offset).fetch_all(c).await)?;
    let total = if (rows.len() as i64) < limit && (offset == 0 || !rows.is_empty()) {
        offset + rows.len() as i64
    } else {
        let sql = format!("SELECT COUNT(*) {from_where}");
        on!(conn, |c| bind_all!(sqlx::query_scalar(&sql), args).fetch_one(c).await)?
    };
    Ok((rows, total))
}

impl crate::Conn {
    /// The id of the workspace's profile with this (lower-cased) email.
    pub async fn customer_id_by_email(
        &mut self,
        tenant: cairn_domain::TenantId,
        email: &str,
    ) -> crate::Result<Option<i64>> {
        Ok(on!(self, |c| sqlx::query_scalar("SELECT id FROM customers WHERE tenant_id = $1 AND email = $2")
            .bind(tenant.0)
            .bind(email)
            .fetch_optional(c)
            .await)?)
    }
}
