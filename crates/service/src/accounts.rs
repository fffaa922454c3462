//! Workspaces, sign-up, sign-in and sessions.

use cairn_domain::{credential, text, Email, Role, TenantId};
use cairn_store::{tenants::Tenant, users::User, Conn, StoreError};
use chrono::{DateTime, Utc};

use crate::{found, password, Actor, Principal, Result, ServiceError, Services};

/// Limits on the lengths of names people type.
pub const MAX_NAME: usize = 200;

/// A successful sign-in: seed 003's `{token, user, tenant}`, plus the role and expiry.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
    pub tenant: Tenant,
    pub role: Role,
}

pub struct Registration<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub name: &'a str,
    pub workspace: &'a str,
}

/// A new workspace's owner, as given to the CLI or the first-run bootstrap.
pub struct NewWorkspace<'a> {
    pub workspace: &'a str,
    pub owner: Option<Registration<'a>>,
}

impl Services {
    /// `POST /v1/auth/register`: a new workspace and its owner, signed in.
    #[tracing::instrument(skip_all)]
    pub async fn register(&self, r: Registration<'_>) -> Result<SignedIn> {
        if !self.settings.allow_registration {
            return Err(ServiceError::Forbidden(
                "registration is closed on this server; ask an owner for an invitation".into(),
            ));
        }
        let (tenant, user) = self.create_workspace_with_owner(&r).await?;
        self.start_session(user, tenant, Role::Owner).await
    }

    /// Creates a workspace and its owner in one transaction (used by register, the CLI and
    /// the first-run bootstrap).
    pub async fn create_workspace_with_owner(&self, r: &Registration<'_>) -> Result<(Tenant, User)> {
        let email = Email::parse("email", r.email)?;
        let password = text::password("password", r.password)?;
        let name = text::required("name", r.name, MAX_NAME)?;
        let workspace = text::required("workspace", r.workspace, MAX_NAME)?;
        let hash = password::hash(password).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if tx.user_by_email(email.as_str()).await?.is_some() {
            return Err(ServiceError::duplicate("email", "an account with this email already exists; sign in instead"));
        }
        let tenant = insert_tenant(&mut tx, &workspace, now).await?;
        let user = tx.insert_user(email.as_str(), &name, &hash, now).await.map_err(|e| match e {
            StoreError::Duplicate(_) => ServiceError::duplicate("email", "an account with this email already exists"),
            e => e.into(),
        })?;
        tx.insert_membership(tenant.id, user.id, Role::Owner, now).await?;
        tx.commit().await?;
        tracing::info!(tenant.id = %tenant.id, user.id = %user.id, "workspace created");
        Ok((tenant, user))
    }

    /// Creates a workspace without members (CLI: `cairn tenants create` with no owner).
    pub async fn create_workspace(&self, name: &str) -> Result<Tenant> {
        let name = text::required("name", name, MAX_NAME)?;
        let mut tx = self.store.begin().await?;
        let tenant = insert_tenant(&mut tx, &name, self.clock.now()).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// `POST /v1/auth/login`. A wrong email and a wrong password give the same 401, after the
    /// same amount of work. With several workspaces, `workspace` (id or slug) picks one;
    /// otherwise the oldest membership is used.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, email: &str, password: &str, workspace: Option<&str>) -> Result<SignedIn> {
        let bad = || ServiceError::Unauthenticated("invalid email or password".into());
        let email = Email::parse("email", email).map_err(|_| bad())?;
        if password.chars().count() > 1024 {
            return Err(bad());
        }
        let row = self.store.read().await?.user_by_email(email.as_str()).await?;
        let ok = password::verify(password.to_string(), row.as_ref().map(|r| r.password_hash.clone())).await;
        let row = match row {
            Some(row) if ok => row,
            _ => return Err(bad()),
        };
        let user = row.user();
        let memberships = self.store.read().await?.memberships_of(user.id).await?;
        let chosen = match workspace {
            None => memberships.into_iter().next(),
            Some(w) => memberships.into_iter().find(|m| m.tenant.slug == w || m.tenant.id.to_string() == w),
        };
        let Some(m) = chosen else {
            return Err(ServiceError::Forbidden(match workspace {
                Some(_) => "you are not a member of that workspace".into(),
                None => "you are not a member of any workspace".into(),
            }));
        };
        self.start_session(user, m.tenant, m.role).await
    }

    pub(crate) async fn start_session(&self, user: User, tenant: Tenant, role: Role) -> Result<SignedIn> {
        let token = credential::generate_token(credential::SESSION_PREFIX);
        let now = self.clock.now();
        let expires_at = now + self.settings.session_ttl;
        let mut c = self.store.write().await?;
        c.insert_session(&credential::hash_secret(&token), user.id, tenant.id, now, expires_at).await?;
        Ok(SignedIn { token, expires_at, user, tenant, role })
    }

    /// `POST /v1/auth/logout`: ends the calling session at once.
    pub async fn logout(&self, p: &Principal) -> Result<()> {
        match p.actor {
            Actor::Session { id, .. } => {
                self.store.write().await?.revoke_session(id, self.clock.now()).await?;
                Ok(())
            }
            Actor::Key { .. } => Err(ServiceError::invalid(
                "Authorization",
                "logout ends a session; an API key is revoked with DELETE /v1/api-keys/{id}",
            )),
        }
    }

    pub async fn tenant(&self, id: TenantId) -> Result<Tenant> {
        found(self.store.read().await?.tenant(id).await, "workspace")
    }

    pub async fn workspaces_of(&self, p: &Principal) -> Result<Vec<cairn_store::tenants::Membership>> {
        match p.user_id() {
            Some(u) => Ok(self.store.read().await?.memberships_of(u).await?),
            None => Ok(vec![]),
        }
    }

    pub async fn user(&self, p: &Principal) -> Result<Option<User>> {
        match p.user_id() {
            Some(u) => Ok(Some(found(self.store.read().await?.user(u).await, "user")?)),
            None => Ok(None),
        }
    }

    /// Whether any workspace exists yet (first-run guidance).
    pub async fn has_workspaces(&self) -> Result<bool> {
        Ok(self.store.read().await?.count_tenants().await? > 0)
    }
}

/// Inserts a workspace under a free slug derived from its name.
async fn insert_tenant(tx: &mut Conn, name: &str, now: DateTime<Utc>) -> Result<Tenant> {
    let base = text::slugify(name);
    let mut slug = base.clone();
    let mut n = 1;
    while tx.tenant_slug_exists(&slug).await? {
        n += 1;
        slug = format!("{base}-{n}");
    }
    Ok(tx.insert_tenant(name, &slug, now).await?)
}

impl Services {
    /// Renames the caller's workspace (its slug stays, so URLs and CLI references keep working)
    /// and sets its time zone (an IANA name; scoring's calendar days follow it, so a change
    /// queues a recompute).
    pub async fn update_workspace(&self, p: &Principal, name: Option<&str>, time_zone: Option<&str>) -> Result<Tenant> {
        p.require_private()?;
        p.require(cairn_domain::Scope::SettingsManage)?;
        let name = name.map(|n| text::required("name", n, MAX_NAME)).transpose()?;
        let tz = time_zone
            .map(|z| {
                z.parse::<chrono_tz::Tz>().map_err(|_| {
                    ServiceError::invalid("time_zone", "must be an IANA time zone name such as UTC or Europe/Zagreb")
                })
            })
            .transpose()?;
        let mut c = self.store.write().await?;
        let before = found(c.tenant(p.tenant_id).await, "workspace")?;
        if let Some(name) = &name {
            found(c.rename_tenant(p.tenant_id, name).await, "workspace")?;
        }
        if let Some(tz) = tz {
            c.set_tenant_time_zone(p.tenant_id, tz.name()).await?;
        }
        drop(c);
        if tz.is_some_and(|z| z.name() != before.time_zone) {
            cairn_scoring::enqueue_recompute(&self.store, p.tenant_id, true, None).await?;
        }
        found(self.store.read().await?.tenant(p.tenant_id).await, "workspace")
    }

    /// The request log of the caller's workspace (`keys:manage`).
    pub async fn api_logs(
        &self,
        p: &Principal,
        filter: &cairn_store::api_logs::ApiLogFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<cairn_store::api_logs::ApiLogRow>, i64)> {
        p.require_private()?;
        p.require(cairn_domain::Scope::KeysManage)?;
        Ok(self.store.read().await?.list_api_logs(p.tenant_id, filter, limit, offset).await?)
    }
}
