//! Operator subcommands: they talk to the stores directly (no server needed), through the
//! same services the API uses.

use anyhow::{bail, Context};
use cairn_domain::{ApiKeyId, Clock, Role, TenantId};
use cairn_service::{accounts::Registration, keys::KeyRequest, ServiceError, ServiceSettings, Services};

use crate::{
    config::{KeysCmd, StoreArgs, TenantsCmd, UsersCmd},
    stores,
};

pub async fn migrate(args: &StoreArgs) -> anyhow::Result<()> {
    let s = stores::open(args).await?;
    let entity = s.entities.applied_migrations().await?;
    println!("Entity store ({:?}): {entity} migrations applied; up to date.", s.entities.backend());
    println!("Event store ({}): up to date.", s.events.backend());
    Ok(())
}

async fn services(args: &StoreArgs) -> anyhow::Result<Services> {
    let s = stores::open(args).await?;
    Ok(Services::new(s.entities, s.events, Clock::system(), ServiceSettings::default()))
}

/// Turns a service error into a message for the terminal.
fn explain(e: ServiceError) -> anyhow::Error {
    match e {
        ServiceError::Invalid(f) => {
            anyhow::anyhow!("--{}: {}", f.field.replace('_', "-"), f.message)
        }
        ServiceError::Duplicate { field, message } => anyhow::anyhow!("--{field}: {message}"),
        e => anyhow::anyhow!(e),
    }
}

async fn tenant_id(svc: &Services, reference: &str) -> anyhow::Result<TenantId> {
    let mut c = svc.store.read().await?;
    match c.tenant_by_ref(reference).await {
        Ok(t) => Ok(t.id),
        Err(cairn_store::StoreError::NotFound) => {
            bail!("--tenant: no workspace with id or slug {reference:?} (see `cairn tenants list`)")
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn tenants(args: &StoreArgs, cmd: TenantsCmd) -> anyhow::Result<()> {
    let svc = services(args).await?;
    match cmd {
        TenantsCmd::Create { name, owner_email, owner_password, owner_name } => {
            let (tenant, owner) = match (owner_email, owner_password) {
                (Some(email), Some(password)) => {
                    let r = Registration { email: &email, password: &password, name: &owner_name, workspace: &name };
                    let (t, u) = svc.create_workspace_with_owner(&r).await.map_err(explain)?;
                    (t, Some(u))
                }
                _ => (svc.create_workspace(&name).await.map_err(explain)?, None),
            };
            println!("Created workspace {} (id {}, slug {}).", tenant.name, tenant.id, tenant.slug);
            if let Some(u) = owner {
                println!("Owner: user {} can now sign in at POST /v1/auth/login.", u.id);
            }
            println!("Next: cairn keys create --tenant {} --name \"My server\"", tenant.slug);
        }
        TenantsCmd::List => {
            let list = svc.store.read().await?.list_tenants().await?;
            println!("{:>6}  {:<32}  {:<24}  created", "id", "slug", "name");
            for t in list {
                println!("{:>6}  {:<32}  {:<24}  {}", t.id, t.slug, t.name, t.created_at.format("%Y-%m-%d %H:%M"));
            }
        }
    }
    Ok(())
}

pub async fn users(args: &StoreArgs, cmd: UsersCmd) -> anyhow::Result<()> {
    let svc = services(args).await?;
    match cmd {
        UsersCmd::Create { tenant, email, name, password, role } => {
            let tenant = tenant_id(&svc, &tenant).await?;
            let role = Role::parse(&role).context("--role")?;
            let user = svc.add_user(tenant, &email, &name, &password, role).await.map_err(explain)?;
            println!("Added user {} to workspace {} as {}.", user.id, tenant, role.as_str());
        }
    }
    Ok(())
}

pub async fn keys(args: &StoreArgs, cmd: KeysCmd) -> anyhow::Result<()> {
    let svc = services(args).await?;
    match cmd {
        KeysCmd::Create { tenant, name, kind, environment, scopes, rate_limit, json } => {
            let tenant = tenant_id(&svc, &tenant).await?;
            let request = KeyRequest {
                name: &name,
                kind: &kind,
                environment: environment.as_deref(),
                scopes: (!scopes.is_empty()).then_some(scopes),
                rate_limit,
                ingest_rate_limit: None,
            };
            let (key, secret) = svc.create_key(tenant, None, request).await.map_err(explain)?;
            if json {
                let out = serde_json::json!({
                    "id": key.id, "tenant_id": tenant, "name": key.name, "type": key.kind.as_str(),
                    "prefix": key.prefix, "scopes": key.scopes.names(), "key": secret,
                });
                println!("{out}");
            } else {
                println!("Created {} key {} ({}) in workspace {}.", key.kind.as_str(), key.id, key.name, tenant);
                println!("Scopes: {}", key.scopes.names().join(" "));
                println!("The key is shown this once; store it now:");
                println!("{secret}");
            }
        }
        KeysCmd::List { tenant } => {
            let tenant = tenant_id(&svc, &tenant).await?;
            println!("{:>6}  {:<20}  {:<12}  {:<8}  {:<20}  name", "id", "prefix", "type", "status", "last used");
            for k in svc.list_keys_of(tenant).await.map_err(explain)? {
                let status = if k.revoked_at.is_some() { "revoked" } else { "active" };
                let used =
                    k.last_used_at.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "never".into());
                println!(
                    "{:>6}  {:<20}  {:<12}  {:<8}  {:<20}  {}",
                    k.id,
                    k.prefix,
                    k.kind.as_str(),
                    status,
                    used,
                    k.name
                );
            }
        }
        KeysCmd::Revoke { tenant, id } => {
            let tenant = tenant_id(&svc, &tenant).await?;
            let key = svc.revoke_key(tenant, None, ApiKeyId(id)).await.map_err(|e| match e {
                ServiceError::NotFound(_) => {
                    anyhow::anyhow!("no key {id} in workspace {tenant}")
                }
                e => explain(e),
            })?;
            println!("Revoked key {} ({}).", key.id, key.prefix);
        }
    }
    Ok(())
}
