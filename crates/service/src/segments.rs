//! Segments (seed 003, docs/segments.md): definitions, evaluation jobs, members, preview,
//! static membership by hand or CSV, a customer's memberships, and why a customer is in or out.

use cairn_domain::{CustomerId, Scope};
use cairn_segments::{check_references, enqueue_evaluation, explain::Explainer, worker::time_zone, Definition};
use cairn_store::{
    customers::Customer, jobs::Job, segments::Membership, segments::SegmentFields, segments::SegmentRow,
};
use serde_json::Value;

use crate::{found, Principal, Result, ServiceError, Services};

/// What a create or update says; absent fields are left as they are (update) or defaulted.
#[derive(Debug, Default)]
pub struct SegmentInput {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub color: Option<Option<String>>,
    /// `dynamic` (default) or `static`.
    pub kind: Option<String>,
    pub filters: Option<Value>,
}

/// A segment with its latest evaluation job.
pub struct SegmentView {
    pub row: SegmentRow,
    pub job: Option<Job>,
}

/// What a CSV upload did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub rows: u64,
    pub added: u64,
    pub already: u64,
    /// 1-based line numbers of rows naming no customer of the workspace.
    pub not_found: Vec<u64>,
}

const PREVIEW: usize = 20;
const MAX_CSV_ROWS: usize = 100_000;

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ServiceError::invalid("name", "must be 1 to 200 characters"));
    }
    Ok(name.to_string())
}

fn check_color(color: Option<String>) -> Result<Option<String>> {
    match color {
        Some(c) if c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|h| h.is_ascii_hexdigit()) => Ok(Some(c)),
        Some(_) => Err(ServiceError::invalid("color", "must be a hex color such as #6366f1")),
        None => Ok(None),
    }
}

fn check_description(d: Option<String>) -> Result<Option<String>> {
    match d {
        Some(d) if d.chars().count() > 2_000 => {
            Err(ServiceError::invalid("description", "must be at most 2000 characters"))
        }
        d => Ok(d.filter(|d| !d.trim().is_empty())),
    }
}

impl Services {
    async fn definitions(&self, p: &Principal) -> Result<Vec<Definition>> {
        let rows = self.store.read().await?.list_segments(p.tenant_id).await?;
        rows.into_iter().map(|r| Definition::from_row(r).map_err(|e| ServiceError::Internal(e.to_string()))).collect()
    }

    /// Parses a filter and checks its references (`saving`: the segment being edited).
    async fn checked_filter(
        &self,
        p: &Principal,
        filters: &Value,
        saving: Option<i64>,
    ) -> Result<cairn_segments::Filter> {
        let f = cairn_segments::parse(filters, "filters")?;
        let defs = self.definitions(p).await?;
        check_references(&f, saving, &defs, "filters")?;
        Ok(f)
    }

    async fn view(&self, row: SegmentRow) -> Result<SegmentView> {
        let job = match row.job_id {
            Some(id) => self.store.read().await?.job(id).await.ok(),
            None => None,
        };
        Ok(SegmentView { row, job })
    }

    pub async fn create_segment(&self, p: &Principal, input: SegmentInput) -> Result<SegmentView> {
        p.require_private()?;
        p.require(Scope::SegmentsWrite)?;
        let name = check_name(input.name.as_deref().ok_or_else(|| ServiceError::invalid("name", "is required"))?)?;
        let description = check_description(input.description.flatten())?;
        let color = check_color(input.color.flatten())?;
        let kind = input.kind.unwrap_or_else(|| "dynamic".into());
        let mut deps = cairn_segments::changed::MEMBERSHIP;
        let filters = match (kind.as_str(), input.filters) {
            ("dynamic", Some(f)) => {
                deps = cairn_segments::deps(&self.checked_filter(p, &f, None).await?);
                Some(f.to_string())
            }
            ("dynamic", None) => return Err(ServiceError::invalid("filters", "is required for a dynamic segment")),
            ("static", None) => None,
            ("static", Some(_)) => {
                return Err(ServiceError::invalid("filters", "a static segment has no filters: add members instead"))
            }
            _ => return Err(ServiceError::invalid("type", "must be dynamic or static")),
        };
        let now = self.clock.now();
        let fields = SegmentFields {
            name: &name,
            description: description.as_deref(),
            color: color.as_deref(),
            kind: &kind,
            filters: filters.as_deref(),
            deps,
        };
        let mut tx = self.store.begin().await?;
        let mut row = tx.insert_segment(p.tenant_id, &fields, None, now).await?;
        if filters.is_some() {
            row.job_id = Some(enqueue_evaluation(&mut tx, p.tenant_id, row.id, now).await?);
        }
        tx.commit().await?;
        tracing::info!(segment.id = row.id, kind = %row.kind, "segment created");
        self.view(row).await
    }

    pub async fn segments(&self, p: &Principal) -> Result<Vec<SegmentView>> {
        p.require_private()?;
        p.require(Scope::SegmentsRead)?;
        let rows = self.store.read().await?.list_segments(p.tenant_id).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.view(r).await?);
        }
        Ok(out)
    }

    pub async fn segment(&self, p: &Principal, id: i64) -> Result<SegmentView> {
        p.require_private()?;
        p.require(Scope::SegmentsRead)?;
        let row = found(self.store.read().await?.segment(p.tenant_id, id).await, "segment")?;
        self.view(row).await
    }

    pub async fn update_segment(&self, p: &Principal, id: i64, input: SegmentInput) -> Result<SegmentView> {
        p.require_private()?;
        p.require(Scope::SegmentsWrite)?;
        let current = found(self.store.read().await?.segment(p.tenant_id, id).await, "segment")?;
        if input.kind.as_deref().is_some_and(|k| k != current.kind) {
            return Err(ServiceError::invalid("type", "cannot be changed; create a new segment instead"));
        }
        let builtin = current.builtin.is_some();
        let name = match input.name {
            Some(n) if builtin && n.trim() != current.name => {
                return Err(ServiceError::invalid("name", "the built-in RFM segments keep their names"))
            }
            Some(n) => check_name(&n)?,
            None => current.name.clone(),
        };
        let description = match input.description {
            Some(d) => check_description(d)?,
            None => current.description.clone(),
        };
        let color = match input.color {
            Some(c) => check_color(c)?,
            None => current.color.clone(),
        };
        let mut deps = current.deps;
        let filters = match input.filters {
            Some(_) if builtin => {
                return Err(ServiceError::invalid("filters", "the built-in RFM segments' filters cannot be changed"))
            }
            Some(_) if current.kind == "static" => {
                return Err(ServiceError::invalid("filters", "a static segment has no filters: add members instead"))
            }
            Some(f) => {
                deps = cairn_segments::deps(&self.checked_filter(p, &f, Some(id)).await?);
                Some(f.to_string())
            }
            None => current.filters.clone(),
        };
        let refilter = filters != current.filters;
        let now = self.clock.now();
        let fields = SegmentFields {
            name: &name,
            description: description.as_deref(),
            color: color.as_deref(),
            kind: &current.kind,
            filters: filters.as_deref(),
            deps,
        };
        let mut tx = self.store.begin().await?;
        let mut row = found(tx.update_segment(p.tenant_id, id, &fields, now).await, "segment")?;
        if refilter {
            row.job_id = Some(enqueue_evaluation(&mut tx, p.tenant_id, id, now).await?);
        }
        tx.commit().await?;
        self.view(row).await
    }

    /// Deletes a segment (its members leave without `customer.segment_exited` events: the
    /// segment itself is gone). Built-in segments and segments others refer to stay.
    pub async fn delete_segment(&self, p: &Principal, id: i64) -> Result<()> {
        p.require_private()?;
        p.require(Scope::SegmentsDelete)?;
        let current = found(self.store.read().await?.segment(p.tenant_id, id).await, "segment")?;
        if current.builtin.is_some() {
            return Err(ServiceError::invalid("id", "the built-in RFM segments cannot be deleted"));
        }
        for d in self.definitions(p).await? {
            let mut refs = Vec::new();
            if let Some(f) = &d.filter {
                cairn_segments::filter::referenced_segments(f, &mut refs);
            }
            if d.row.id != id && refs.contains(&id) {
                return Err(ServiceError::invalid(
                    "id",
                    format!("segment {} ({}) refers to this segment; change it first", d.row.id, d.row.name),
                ));
            }
        }
        let mut tx = self.store.begin().await?;
        tx.delete_segment(p.tenant_id, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A page of a segment's members with since when.
    pub async fn segment_customers(
        &self,
        p: &Principal,
        id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<(Customer, chrono::DateTime<chrono::Utc>)>, i64)> {
        p.require_private()?;
        p.require(Scope::SegmentsRead)?;
        p.require(Scope::CustomersRead)?;
        let mut conn = self.store.read().await?;
        found(conn.segment(p.tenant_id, id).await, "segment")?;
        let (members, total) = conn.segment_member_page(p.tenant_id, id, limit, offset).await?;
        let mut out = Vec::with_capacity(members.len());
        for (c, since) in members {
            if let Ok(customer) = conn.customer(p.tenant_id, c).await {
                out.push((customer, since));
            }
        }
        Ok((out, total))
    }

    /// Evaluates filters without saving: how many customers match, and the first 20.
    pub async fn preview_segment(&self, p: &Principal, filters: &Value) -> Result<(usize, Vec<Customer>)> {
        p.require_private()?;
        p.require(Scope::SegmentsRead)?;
        let f = self.checked_filter(p, filters, None).await?;
        let tz = time_zone(&mut self.store.read().await?, p.tenant_id).await?;
        let overrides = Default::default();
        let mut ev = cairn_segments::eval::Evaluator::new(
            &self.store,
            self.events.as_ref(),
            p.tenant_id,
            self.clock.now(),
            tz,
            &overrides,
        );
        let members = ev.members(&f, None).await.map_err(segment_error)?;
        let mut conn = self.store.read().await?;
        let mut first = Vec::new();
        for id in members.iter().take(PREVIEW) {
            first.push(conn.customer(p.tenant_id, CustomerId(*id)).await?);
        }
        Ok((members.len(), first))
    }

    async fn static_segment(&self, p: &Principal, id: i64) -> Result<SegmentRow> {
        p.require_private()?;
        p.require(Scope::SegmentsWrite)?;
        let row = found(self.store.read().await?.segment(p.tenant_id, id).await, "segment")?;
        if row.kind != "static" {
            return Err(ServiceError::invalid("id", "members are added by hand only to static segments"));
        }
        Ok(row)
    }

    /// Adds (`add`) or removes customers of a static segment. Ids of other workspaces' or
    /// missing customers are refused with their position. Returns how many really changed.
    pub async fn change_segment_members(&self, p: &Principal, id: i64, ids: &[i64], add: bool) -> Result<u64> {
        let row = self.static_segment(p, id).await?;
        if ids.is_empty() || ids.len() > 10_000 {
            return Err(ServiceError::invalid("customer_ids", "must hold 1 to 10000 customer ids"));
        }
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let existing = self.store.read().await?.customer_ids(p.tenant_id, Some(&sorted)).await?;
        if let Some(pos) = ids.iter().position(|c| existing.binary_search(c).is_err()) {
            return Err(ServiceError::invalid(&format!("customer_ids[{pos}]"), "is not a customer of this workspace"));
        }
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let (added, removed) = if add {
            cairn_segments::worker::change_members(&mut tx, p.tenant_id, &row, &sorted, &[], now).await
        } else {
            cairn_segments::worker::change_members(&mut tx, p.tenant_id, &row, &[], &sorted, now).await
        }
        .map_err(segment_error)?;
        tx.commit().await?;
        Ok(added + removed)
    }

    /// Adds the customers a CSV names to a static segment: a header row with a `customer_id`
    /// or an `email` column (or both), then one customer per row.
    pub async fn import_segment_members(&self, p: &Principal, id: i64, csv: &str) -> Result<ImportReport> {
        let row = self.static_segment(p, id).await?;
        let mut lines = csv.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else { return Err(ServiceError::invalid("file", "is empty")) };
        let columns: Vec<String> = split_csv(header).into_iter().map(|c| c.trim().to_lowercase()).collect();
        let id_col = columns.iter().position(|c| c == "customer_id" || c == "id");
        let email_col = columns.iter().position(|c| c == "email");
        if id_col.is_none() && email_col.is_none() {
            return Err(ServiceError::invalid("file", "the header must name a customer_id or an email column"));
        }
        let mut report = ImportReport::default();
        let mut wanted: Vec<(u64, Option<i64>, Option<String>)> = Vec::new();
        for (n, line) in lines {
            let cells = split_csv(line);
            let cell =
                |i: Option<usize>| i.and_then(|i| cells.get(i)).map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
            wanted.push((
                (n + 1) as u64,
                cell(id_col).and_then(|c| c.parse().ok()),
                cell(email_col).map(|e| e.to_lowercase()),
            ));
            if wanted.len() > MAX_CSV_ROWS {
                return Err(ServiceError::invalid("file", format!("holds more than {MAX_CSV_ROWS} rows")));
            }
        }
        report.rows = wanted.len() as u64;
        let mut conn = self.store.read().await?;
        let mut ids = Vec::new();
        for (line, id, email) in wanted {
            let found = match (id, email) {
                (Some(id), _) => conn.customer(p.tenant_id, CustomerId(id)).await.ok().map(|c| c.id.0),
                (None, Some(e)) => conn
                    .customers_by_identities(p.tenant_id, cairn_store::identity::IdentityKind::Email, &[e])
                    .await?
                    .pop()
                    .map(|(_, f)| f.id.0),
                (None, None) => None,
            };
            match found {
                Some(c) => ids.push(c),
                None => report.not_found.push(line),
            }
        }
        drop(conn);
        ids.sort_unstable();
        ids.dedup();
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let (added, _) = cairn_segments::worker::change_members(&mut tx, p.tenant_id, &row, &ids, &[], now)
            .await
            .map_err(segment_error)?;
        tx.commit().await?;
        report.added = added;
        report.already = ids.len() as u64 - added;
        Ok(report)
    }

    /// A customer's memberships, with since when.
    pub async fn customer_segments(&self, p: &Principal, customer: CustomerId) -> Result<Vec<Membership>> {
        p.require_private()?;
        p.require(Scope::CustomersRead)?;
        let mut conn = self.store.read().await?;
        found(conn.customer(p.tenant_id, customer).await, "customer")?;
        Ok(conn.customer_memberships(p.tenant_id, customer).await?)
    }

    /// Whether a customer is a member now, what the stored membership says, and for each
    /// condition whether it held and the value seen.
    pub async fn explain_segment(&self, p: &Principal, id: i64, customer: CustomerId) -> Result<(bool, Value)> {
        p.require_private()?;
        p.require(Scope::SegmentsRead)?;
        let mut conn = self.store.read().await?;
        let row = found(conn.segment(p.tenant_id, id).await, "segment")?;
        let c = found(conn.customer(p.tenant_id, customer).await, "customer")?;
        let stored = !conn.segment_member_ids(p.tenant_id, id, Some(&[customer.0])).await?.is_empty();
        let tz = time_zone(&mut conn, p.tenant_id).await.map_err(segment_error)?;
        drop(conn);
        let def = Definition::from_row(row).map_err(segment_error)?;
        let Some(f) = def.filter else {
            return Ok((stored, serde_json::json!({"static": true, "held": stored})));
        };
        let explainer = Explainer {
            store: &self.store,
            events: self.events.as_ref(),
            tenant: p.tenant_id,
            now: self.clock.now(),
            tz,
        };
        Ok((stored, explainer.explain(&f, &c).await.map_err(segment_error)?))
    }
}

fn segment_error(e: cairn_segments::SegmentError) -> ServiceError {
    e.into()
}

/// One CSV line's cells (RFC 4180 quoting: `"a, b"` and `""` inside quotes).
fn split_csv(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cell.is_empty() => quoted = true,
            (',', false) => cells.push(std::mem::take(&mut cell)),
            (c, _) => cell.push(c),
        }
    }
    cells.push(cell);
    cells
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_cells_follow_rfc_4180_quoting() {
        assert_eq!(super::split_csv(r#"1,"Doe, Ana","say ""hi""",x"#), vec!["1", "Doe, Ana", "say \"hi\"", "x"]);
    }
}
