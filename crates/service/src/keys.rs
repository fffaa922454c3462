//! API keys: created with chosen scopes (never wider than the creator's), shown once,
//! listed by prefix, revoked at once.

use cairn_domain::{
    credential::{self, KeyKind},
    text, ApiKeyId, Scope, ScopeSet, TenantId,
};
use cairn_store::keys::{ApiKey, NewApiKey};

use crate::{found, Principal, Result, ServiceError, Services};

/// What a caller asks for.
#[derive(Debug, Default)]
pub struct KeyRequest<'a> {
    pub name: &'a str,
    /// `secret`, `public`, `public_live` or `public_test`.
    pub kind: &'a str,
    /// For `public`: `live` (default) or `test`.
    pub environment: Option<&'a str>,
    pub scopes: Option<Vec<String>>,
    pub rate_limit: Option<i64>,
    pub ingest_rate_limit: Option<i64>,
}

/// Largest per-key limit accepted (requests per minute).
const MAX_RATE_LIMIT: i64 = 100_000_000;

fn parse_kind(kind: &str, environment: Option<&str>) -> Result<KeyKind> {
    let env_live = match environment {
        None | Some("live") => true,
        Some("test") => false,
        Some(_) => return Err(ServiceError::invalid("environment", "must be \"live\" or \"test\"")),
    };
    match kind {
        "secret" if environment.is_none() => Ok(KeyKind::Secret),
        "secret" => Err(ServiceError::invalid("environment", "applies to public keys only")),
        "public" if env_live => Ok(KeyKind::PublicLive),
        "public" => Ok(KeyKind::PublicTest),
        "public_live" => Ok(KeyKind::PublicLive),
        "public_test" => Ok(KeyKind::PublicTest),
        _ => Err(ServiceError::invalid("type", "must be \"secret\" or \"public\"")),
    }
}

fn parse_scopes(kind: KeyKind, requested: Option<&[String]>, ceiling: ScopeSet) -> Result<ScopeSet> {
    let Some(names) = requested else {
        // Defaults: a secret key gets everything its creator may grant; a public key ingestion.
        return Ok(if kind.is_public() { ScopeSet::ingestion() } else { ceiling.iter().collect() });
    };
    if names.is_empty() {
        return Err(ServiceError::invalid("scopes", "must name at least one scope (or be left out)"));
    }
    let mut set = ScopeSet::empty();
    for (i, n) in names.iter().enumerate() {
        let scope = Scope::parse(n)
            .ok_or_else(|| ServiceError::invalid(&format!("scopes[{i}]"), format!("unknown scope {n:?}")))?;
        if kind.is_public() && !scope.public_allowed() {
            return Err(ServiceError::invalid(
                &format!("scopes[{i}]"),
                format!("a public key may only hold events:write and widget:access, not {n}"),
            ));
        }
        set.insert(scope);
    }
    if let Some(extra) = set.iter().find(|s| !ceiling.allows(*s)) {
        return Err(ServiceError::Forbidden(format!(
            "cannot grant the {extra} scope, which this credential does not hold"
        )));
    }
    Ok(set)
}

fn check_limit(field: &str, v: Option<i64>) -> Result<Option<i64>> {
    match v {
        Some(n) if !(1..=MAX_RATE_LIMIT).contains(&n) => {
            Err(ServiceError::invalid(field, format!("must be between 1 and {MAX_RATE_LIMIT} requests per minute")))
        }
        v => Ok(v),
    }
}

impl Services {
    /// Creates a key. `creator` is the calling credential (its scopes cap the new key's), or
    /// `None` for the operator's CLI. Returns the key's record and its full text (shown once).
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant))]
    pub async fn create_key(
        &self,
        tenant: TenantId,
        creator: Option<&Principal>,
        r: KeyRequest<'_>,
    ) -> Result<(ApiKey, String)> {
        if let Some(p) = creator {
            p.require_private()?;
            p.require(Scope::KeysManage)?;
        }
        let name = text::required("name", r.name, 100)?;
        let kind = parse_kind(r.kind, r.environment)?;
        let ceiling = creator.map(|p| p.scopes).unwrap_or_else(ScopeSet::all);
        let scopes = parse_scopes(kind, r.scopes.as_deref(), ceiling)?;
        let rate_limit = check_limit("rate_limit", r.rate_limit)?;
        let ingest_rate_limit = check_limit("ingest_rate_limit", r.ingest_rate_limit)?;
        let generated = credential::generate_key(kind);
        let mut c = self.store.write().await?;
        let key = c
            .insert_api_key(&NewApiKey {
                tenant_id: tenant,
                name: &name,
                kind,
                prefix: &generated.prefix,
                key_hash: &generated.hash,
                scopes,
                rate_limit,
                ingest_rate_limit,
                created_by: creator.and_then(Principal::user_id),
                now: self.clock.now(),
            })
            .await?;
        tracing::info!(key.id = %key.id, "api key created");
        Ok((key, generated.key))
    }

    pub async fn list_keys(
        &self,
        p: &Principal,
        include_revoked: bool,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ApiKey>, i64)> {
        p.require_private()?;
        p.require(Scope::KeysManage)?;
        Ok(self.store.read().await?.list_api_keys(p.tenant_id, include_revoked, limit, offset).await?)
    }

    /// The operator's view (CLI): every key of a workspace.
    pub async fn list_keys_of(&self, tenant: TenantId) -> Result<Vec<ApiKey>> {
        Ok(self.store.read().await?.list_api_keys(tenant, true, i64::MAX, 0).await?.0)
    }

    pub async fn get_key(&self, p: &Principal, id: ApiKeyId) -> Result<ApiKey> {
        p.require_private()?;
        p.require(Scope::KeysManage)?;
        found(self.store.read().await?.api_key(p.tenant_id, id).await, "api key")
    }

    /// Revokes a key; it stops authenticating on the very next request, on every instance.
    pub async fn revoke_key(&self, tenant: TenantId, creator: Option<&Principal>, id: ApiKeyId) -> Result<ApiKey> {
        if let Some(p) = creator {
            p.require_private()?;
            p.require(Scope::KeysManage)?;
        }
        let mut c = self.store.write().await?;
        if !c.revoke_api_key(tenant, id, self.clock.now()).await? {
            return Err(ServiceError::NotFound("api key"));
        }
        self.forget_ingest_key(id);
        tracing::info!(key.id = %id, "api key revoked");
        found(c.api_key(tenant, id).await, "api key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_and_environments_map_to_kinds() {
        assert_eq!(parse_kind("secret", None).unwrap(), KeyKind::Secret);
        assert_eq!(parse_kind("public", None).unwrap(), KeyKind::PublicLive);
        assert_eq!(parse_kind("public", Some("test")).unwrap(), KeyKind::PublicTest);
        assert!(parse_kind("secret", Some("test")).is_err());
        assert!(parse_kind("admin", None).is_err());
    }

    #[test]
    fn public_keys_cannot_hold_management_scopes() {
        let err =
            parse_scopes(KeyKind::PublicLive, Some(&["events:write".into(), "leads:read".into()]), ScopeSet::all());
        assert!(matches!(err, Err(ServiceError::Invalid(f)) if f.field == "scopes[1]"));
    }

    #[test]
    fn a_key_cannot_grant_more_than_its_creator_holds() {
        let ceiling: ScopeSet = [Scope::LeadsRead, Scope::KeysManage].into_iter().collect();
        assert!(matches!(
            parse_scopes(KeyKind::Secret, Some(&["leads:write".into()]), ceiling),
            Err(ServiceError::Forbidden(_))
        ));
        assert_eq!(parse_scopes(KeyKind::Secret, None, ceiling).unwrap(), ceiling);
    }
}
