//! Who is calling: a session (a user in a workspace) or an API key. The tenant always comes
//! from the credential, never from the path or body.

use std::time::{Duration as StdDuration, Instant};

use cairn_domain::{
    credential::{self, KeyKind},
    ApiKeyId, Role, Scope, ScopeSet, SessionId, TenantId, UserId,
};

use crate::{Result, ServiceError, Services};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub scopes: ScopeSet,
    pub actor: Actor,
}

#[derive(Debug, Clone)]
pub enum Actor {
    Key { id: ApiKeyId, kind: KeyKind, rate_limit: Option<i64>, ingest_rate_limit: Option<i64> },
    Session { id: SessionId, user_id: UserId, role: Role },
}

impl Principal {
    /// Demands a scope: 403 `FORBIDDEN` without it.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!("this credential lacks the {scope} scope")))
        }
    }

    /// Demands a credential that may use the management API at all: public keys (embedded
    /// in web pages) may only ingest and talk to the widget.
    pub fn require_private(&self) -> Result<()> {
        if self.is_public_key() {
            Err(ServiceError::Forbidden("public keys may only call the ingestion and widget endpoints".into()))
        } else {
            Ok(())
        }
    }

    pub fn is_public_key(&self) -> bool {
        matches!(self.actor, Actor::Key { kind, .. } if kind.is_public())
    }

    pub fn user_id(&self) -> Option<UserId> {
        match self.actor {
            Actor::Session { user_id, .. } => Some(user_id),
            Actor::Key { .. } => None,
        }
    }

    pub fn key_id(&self) -> Option<ApiKeyId> {
        match self.actor {
            Actor::Key { id, .. } => Some(id),
            Actor::Session { .. } => None,
        }
    }

    /// The role behind a session; `None` for API keys.
    pub fn role(&self) -> Option<Role> {
        match self.actor {
            Actor::Session { role, .. } => Some(role),
            Actor::Key { .. } => None,
        }
    }

    /// A stable label for per-credential state (idempotency keys, rate-limit buckets).
    pub fn label(&self) -> String {
        match self.actor {
            Actor::Key { id, .. } => format!("key:{id}"),
            Actor::Session { user_id, .. } => format!("user:{user_id}"),
        }
    }
}

/// What a role may do, as scopes. Members work with the data; managing the team, keys,
/// webhooks and settings is for admins and owners.
pub fn role_scopes(role: Role) -> ScopeSet {
    if role.is_manager() {
        ScopeSet::all()
    } else {
        Scope::ALL
            .iter()
            .copied()
            .filter(|s| {
                !matches!(s, Scope::KeysManage | Scope::TeamManage | Scope::SettingsManage | Scope::WebhooksManage)
            })
            .collect()
    }
}

/// Don't write `last_used_at` more than once a minute per key: it is for humans, and a write
/// per request would cost more than the request.
const TOUCH_EVERY: StdDuration = StdDuration::from_secs(60);

impl Services {
    /// Resolves a presented secret (session token or API key) to a principal, or 401.
    /// Every call reads the store, so a revoked key or ended session stops working at once on
    /// every instance (ingestion's short cache aside: see `authenticate_for_ingest`).
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, secret: &str) -> Result<Principal> {
        let now = self.clock.now();
        let unknown = || ServiceError::Unauthenticated("invalid or expired credentials".into());
        if secret.starts_with(credential::SESSION_PREFIX) {
            let mut c = self.store.read().await?;
            let s = c.live_session(&credential::hash_secret(secret), now).await?.ok_or_else(unknown)?;
            return Ok(Principal {
                tenant_id: s.tenant_id,
                scopes: role_scopes(s.role),
                actor: Actor::Session { id: s.id, user_id: s.user_id, role: s.role },
            });
        }
        let prefix = credential::key_prefix(secret).ok_or_else(unknown)?;
        let mut c = self.store.read().await?;
        let key = c.api_key_by_prefix(prefix).await?.ok_or_else(unknown)?;
        if key.revoked_at.is_some() || !credential::constant_time_eq(&key.key_hash, &credential::hash_secret(secret)) {
            return Err(unknown());
        }
        drop(c);
        self.touch_key(key.id);
        Ok(Principal {
            tenant_id: key.tenant_id,
            scopes: key.scopes,
            actor: Actor::Key {
                id: key.id,
                kind: key.kind,
                rate_limit: key.rate_limit,
                ingest_rate_limit: key.ingest_rate_limit,
            },
        })
    }

    /// [`Services::authenticate`] for the ingestion routes, which must sustain tens of
    /// thousands of requests per second: an API key authenticated less than
    /// `settings.ingest_key_cache` ago is not read from the store again.
    pub async fn authenticate_for_ingest(&self, secret: &str) -> Result<Principal> {
        let ttl = self.settings.ingest_key_cache;
        if ttl.is_zero() || secret.starts_with(credential::SESSION_PREFIX) {
            return self.authenticate(secret).await;
        }
        let hash = credential::hash_secret(secret);
        {
            let cache = self.ingest_keys.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((p, at)) = cache.get(&hash) {
                if at.elapsed() < ttl {
                    return Ok(p.clone());
                }
            }
        }
        let p = self.authenticate(secret).await?;
        let mut cache = self.ingest_keys.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        cache.insert(hash, (p.clone(), Instant::now()));
        Ok(p)
    }

    /// Forgets a key in the ingestion cache (on revocation), so this instance refuses it at once.
    pub(crate) fn forget_ingest_key(&self, id: ApiKeyId) {
        let mut cache = self.ingest_keys.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (p, _)| p.key_id() != Some(id));
    }

    fn touch_key(&self, id: ApiKeyId) {
        {
            let mut touches = self.key_touches.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match touches.get(&id) {
                Some(last) if now.duration_since(*last) < TOUCH_EVERY => return,
                _ => touches.insert(id, now),
            };
        }
        let store = self.store.clone();
        let now = self.clock.now();
        tokio::spawn(async move {
            let res = async { store.write().await?.touch_api_key(id, now).await }.await;
            if let Err(e) = res {
                tracing::warn!(error = %e, key.id = %id, "could not record key use");
            }
        });
    }
}
