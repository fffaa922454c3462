//! Customer profiles (seed 003): create, read, list, update, erase, and their event history.

use cairn_domain::{text, CustomerId, Email, Scope};
use cairn_events::{Event, EventFilter};
use cairn_store::{
    customers::{Customer, CustomerFields, CustomerFilter, CustomerSort},
    scores::ScoreRow,
};
use serde_json::{json, Value};

use crate::{found, Principal, Result, ServiceError, Services};

/// Largest serialised `traits` object.
pub const MAX_TRAITS_BYTES: usize = 32 * 1024;

/// A change to a profile. For each field: absent (`None`) leaves it as it is; `Some(None)`
/// (JSON `null`) clears it; `Some(Some(v))` sets it. `traits` are merged key by key (a `null`
/// value removes that key).
#[derive(Debug, Default)]
pub struct CustomerPatch {
    pub email: Option<Option<String>>,
    pub user_id: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub city: Option<Option<String>>,
    pub country: Option<Option<String>>,
    pub traits: Option<Value>,
}

/// A customer with what the detail view adds.
pub struct CustomerDetail {
    pub customer: Customer,
    /// RFM and CLV, when the customer has purchased.
    pub scores: Option<ScoreRow>,
    /// Events by name, most frequent first.
    pub event_counts: Vec<(String, u64)>,
    pub segments: Vec<cairn_store::segments::Membership>,
}

fn set(
    target: &mut Option<String>,
    patch: Option<Option<String>>,
    parse: impl Fn(&str) -> Result<String, cairn_domain::FieldError>,
) -> Result<()> {
    match patch {
        None => {}
        Some(None) => *target = None,
        Some(Some(v)) if v.trim().is_empty() => *target = None,
        Some(Some(v)) => *target = Some(parse(&v)?),
    }
    Ok(())
}

/// Applies a patch to a profile's fields, validating each (the error names the field).
pub(crate) fn apply(f: &mut CustomerFields, p: CustomerPatch) -> Result<()> {
    set(&mut f.email, p.email, |v| Email::parse("email", v).map(Email::into_string))?;
    set(&mut f.external_id, p.user_id, |v| text::required("user_id", v, 255))?;
    set(&mut f.name, p.name, |v| text::required("name", v, 200))?;
    set(&mut f.phone, p.phone, |v| text::phone("phone", v))?;
    set(&mut f.city, p.city, |v| text::required("city", v, 100))?;
    set(&mut f.country, p.country, |v| text::country("country", v))?;
    if let Some(t) = p.traits {
        let Value::Object(changes) = t else {
            return Err(ServiceError::invalid("traits", "must be a JSON object"));
        };
        let Value::Object(current) = &mut f.traits else {
            return Err(ServiceError::Internal("stored traits are not an object".into()));
        };
        for (k, v) in changes {
            if k.is_empty() || k.chars().count() > 100 {
                return Err(ServiceError::invalid(&format!("traits.{k}"), "trait names are 1 to 100 characters"));
            }
            if v.is_null() {
                current.remove(&k);
            } else {
                current.insert(k, v);
            }
        }
        if f.traits.to_string().len() > MAX_TRAITS_BYTES {
            return Err(ServiceError::invalid("traits", format!("must be at most {MAX_TRAITS_BYTES} bytes as JSON")));
        }
    }
    Ok(())
}

pub(crate) fn duplicate(e: cairn_store::StoreError) -> ServiceError {
    match e {
        cairn_store::StoreError::Duplicate(f) if f == "external_id" => {
            ServiceError::duplicate("user_id", "another customer already has this user_id")
        }
        cairn_store::StoreError::Duplicate(_) => {
            ServiceError::duplicate("email", "another customer already has this email")
        }
        e => e.into(),
    }
}

impl Services {
    /// `POST /v1/customers`: a profile with an email or a user_id (or both). Emits
    /// `customer.created` into the outbox in the same transaction.
    #[tracing::instrument(skip_all, fields(tenant.id = %p.tenant_id))]
    pub async fn create_customer(&self, p: &Principal, patch: CustomerPatch) -> Result<Customer> {
        p.require_private()?;
        p.require(Scope::CustomersWrite)?;
        let mut fields = CustomerFields { traits: json!({}), ..Default::default() };
        apply(&mut fields, patch)?;
        if fields.email.is_none() && fields.external_id.is_none() {
            return Err(ServiceError::invalid("email", "a customer needs an email or a user_id"));
        }
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let customer = tx.insert_customer(p.tenant_id, &fields, now).await.map_err(duplicate)?;
        tx.insert_outbox(p.tenant_id, "customer.created", &customer.created_payload(), now).await?;
        tx.mark_segments_dirty(&[(p.tenant_id, customer.id, cairn_segments::changed::ALL)], now).await?;
        tx.commit().await?;
        tracing::info!(customer.id = %customer.id, "customer created");
        Ok(customer)
    }

    pub async fn customer(&self, p: &Principal, id: CustomerId) -> Result<CustomerDetail> {
        p.require_private()?;
        p.require(Scope::CustomersRead)?;
        let customer = found(self.store.read().await?.customer(p.tenant_id, id).await, "customer")?;
        let event_counts = self.events.customer_event_counts(p.tenant_id, id).await?;
        let mut conn = self.store.read().await?;
        let scores = conn.scores_for(p.tenant_id, &[id]).await?.pop();
        let segments = conn.customer_memberships(p.tenant_id, id).await?;
        Ok(CustomerDetail { customer, scores, event_counts, segments })
    }

    /// A page of profiles, each with its scores.
    pub async fn customers(
        &self,
        p: &Principal,
        filter: CustomerFilter<'_>,
        sort: CustomerSort,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<(Customer, Option<ScoreRow>)>, i64)> {
        p.require_private()?;
        p.require(Scope::CustomersRead)?;
        let search = filter.search.map(str::trim).filter(|s| !s.is_empty());
        if search.is_some_and(|s| s.chars().count() > 200) {
            return Err(ServiceError::invalid("search", "must be at most 200 characters"));
        }
        if let Some(segment) = filter.rfm_segment {
            if !cairn_scoring::rfm::SEGMENTS.contains(&segment) {
                return Err(ServiceError::invalid(
                    "rfm_segment",
                    "must be Champions, Loyal Customers, At Risk or Lost",
                ));
            }
        }
        let filter = CustomerFilter { search, ..filter };
        let mut conn = self.store.read().await?;
        if let Some(segment) = filter.segment_id {
            if conn.segment(p.tenant_id, segment).await.is_err() {
                return Err(ServiceError::invalid("segment_id", "is not a segment of this workspace"));
            }
        }
        let (customers, total) = conn.list_customers(p.tenant_id, &filter, sort, limit, offset).await?;
        let ids: Vec<CustomerId> = customers.iter().map(|c| c.id).collect();
        let mut scores: std::collections::HashMap<i64, ScoreRow> =
            conn.scores_for(p.tenant_id, &ids).await?.into_iter().map(|s| (s.customer_id, s)).collect();
        let rows = customers
            .into_iter()
            .map(|c| {
                let s = scores.remove(&c.id.0);
                (c, s)
            })
            .collect();
        Ok((rows, total))
    }

    /// `PUT /v1/customers/{id}`: changes the fields given, leaves the others.
    /// Returns the profile with its scores (unchanged by an edit).
    pub async fn update_customer(
        &self,
        p: &Principal,
        id: CustomerId,
        patch: CustomerPatch,
    ) -> Result<(Customer, Option<ScoreRow>)> {
        p.require_private()?;
        p.require(Scope::CustomersWrite)?;
        let mut tx = self.store.begin().await?;
        let current = found(tx.customer(p.tenant_id, id).await, "customer")?;
        let mut fields = CustomerFields {
            email: current.email,
            external_id: current.external_id,
            name: current.name,
            phone: current.phone,
            city: current.city,
            country: current.country,
            traits: current.traits,
        };
        apply(&mut fields, patch)?;
        if fields.email.is_none() && fields.external_id.is_none() {
            return Err(ServiceError::invalid("email", "a customer needs an email or a user_id"));
        }
        let updated = match tx.update_customer(p.tenant_id, id, &fields, self.clock.now()).await {
            Err(cairn_store::StoreError::NotFound) => return Err(ServiceError::NotFound("customer")),
            r => r.map_err(duplicate)?,
        };
        tx.mark_segments_dirty(&[(p.tenant_id, id, cairn_segments::changed::PROFILE)], self.clock.now()).await?;
        tx.commit().await?;
        let scores = self.store.read().await?.scores_for(p.tenant_id, &[id]).await?.pop();
        Ok((updated, scores))
    }

    /// `DELETE /v1/customers/{id}`: the right to erasure. Events go first, then the profile:
    /// a crash between the two leaves a profile without events, and the retry finishes the
    /// job; the other order could leave events nobody can reach to erase.
    #[tracing::instrument(skip_all, fields(tenant.id = %p.tenant_id, customer.id = %id))]
    pub async fn erase_customer(&self, p: &Principal, id: CustomerId) -> Result<()> {
        p.require_private()?;
        p.require(Scope::CustomersDelete)?;
        found(self.store.read().await?.customer(p.tenant_id, id).await, "customer")?;
        self.events.delete_customer(p.tenant_id, id).await?;
        let mut tx = self.store.begin().await?;
        tx.delete_customer(p.tenant_id, id).await?;
        tx.commit().await?;
        // The ingest processor caches identities: make it forget this one.
        self.store.bump_identity_epoch();
        tracing::info!("customer erased");
        Ok(())
    }

    /// A customer's events, newest first.
    pub async fn customer_events(
        &self,
        p: &Principal,
        id: CustomerId,
        filter: &EventFilter,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<Event>, u64)> {
        p.require_private()?;
        p.require(Scope::CustomersRead)?;
        found(self.store.read().await?.customer(p.tenant_id, id).await, "customer")?;
        Ok(self.events.customer_events(p.tenant_id, id, filter, limit, offset).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CustomerFields {
        CustomerFields {
            email: Some("a@b.co".into()),
            traits: json!({"plan": "pro", "seats": 3}),
            ..Default::default()
        }
    }

    #[test]
    fn a_patch_sets_clears_and_leaves_fields() {
        let mut f = base();
        let patch = CustomerPatch {
            name: Some(Some("  Marko Horvatić ".into())),
            phone: Some(Some("+385 92 123 4567".into())),
            country: Some(Some("hr".into())),
            email: None,
            traits: Some(json!({"seats": null, "city_size": "big"})),
            ..Default::default()
        };
        apply(&mut f, patch).unwrap();
        assert_eq!(f.email.as_deref(), Some("a@b.co"));
        assert_eq!(f.name.as_deref(), Some("Marko Horvatić"));
        assert_eq!(f.phone.as_deref(), Some("+385921234567"));
        assert_eq!(f.country.as_deref(), Some("HR"));
        assert_eq!(f.traits, json!({"plan": "pro", "city_size": "big"}));
        apply(&mut f, CustomerPatch { name: Some(None), ..Default::default() }).unwrap();
        assert_eq!(f.name, None);
    }

    #[test]
    fn invalid_fields_are_named() {
        for (patch, field) in [
            (CustomerPatch { email: Some(Some("nope".into())), ..Default::default() }, "email"),
            (CustomerPatch { phone: Some(Some("call me".into())), ..Default::default() }, "phone"),
            (CustomerPatch { country: Some(Some("Croatia".into())), ..Default::default() }, "country"),
            (CustomerPatch { traits: Some(json!([1])), ..Default::default() }, "traits"),
            (CustomerPatch { name: Some(Some("x".repeat(201))), ..Default::default() }, "name"),
        ] {
            match apply(&mut base(), patch) {
                Err(ServiceError::Invalid(f)) => assert_eq!(f.field, field),
                other => panic!("expected an invalid {field}, got {other:?}"),
            }
        }
    }
}
