//! The team of a workspace: members with roles, and invitations (seed 000: "invite your
//! team"). Rules: managing the team needs `team:manage` (owners and admins); only an owner
//! grants or takes away the owner role; a workspace always keeps at least one owner.

use cairn_domain::{credential, text, Email, InvitationId, Role, Scope, TenantId, UserId};
use cairn_store::{
    invitations::{Invitation, NewInvitation},
    users::{TeamMember, User},
};

use crate::{accounts::SignedIn, found, password, Principal, Result, ServiceError, Services};

fn require_manager(p: &Principal) -> Result<()> {
    p.require_private()?;
    p.require(Scope::TeamManage)
}

/// Only owners may touch the owner role (grant it, or change or remove an owner). API keys
/// with `team:manage` act as admins.
fn require_owner_for(p: &Principal, touches_owner: bool) -> Result<()> {
    if touches_owner && p.role() != Some(Role::Owner) {
        return Err(ServiceError::Forbidden("only an owner can grant or change the owner role".into()));
    }
    Ok(())
}

pub fn parse_role(field: &str, raw: &str) -> Result<Role> {
    Role::parse(raw).ok_or_else(|| ServiceError::invalid(field, "must be owner, admin or member"))
}

impl Services {
    /// Members of the caller's workspace. Every signed-in member may see the team; an API key
    /// needs `team:manage`.
    pub async fn team(&self, p: &Principal, limit: i64, offset: i64) -> Result<(Vec<TeamMember>, i64)> {
        p.require_private()?;
        if p.user_id().is_none() {
            p.require(Scope::TeamManage)?;
        }
        Ok(self.store.read().await?.team(p.tenant_id, limit, offset).await?)
    }

    pub async fn team_member(&self, p: &Principal, user: UserId) -> Result<TeamMember> {
        p.require_private()?;
        if p.user_id().is_none() {
            p.require(Scope::TeamManage)?;
        }
        found(self.store.read().await?.team_member(p.tenant_id, user).await, "user")
    }

    pub async fn set_member_role(&self, p: &Principal, user: UserId, role: Role) -> Result<TeamMember> {
        require_manager(p)?;
        let mut tx = self.store.begin().await?;
        let member = found(tx.team_member(p.tenant_id, user).await, "user")?;
        require_owner_for(p, member.role == Role::Owner || role == Role::Owner)?;
        if member.role == Role::Owner && role != Role::Owner && tx.count_owners(p.tenant_id).await? <= 1 {
            return Err(ServiceError::invalid(
                "role",
                "a workspace needs at least one owner; make someone else owner first",
            ));
        }
        tx.set_role(p.tenant_id, user, role).await?;
        let updated = found(tx.team_member(p.tenant_id, user).await, "user")?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Removes a member from the workspace; their sessions there stop working at once.
    pub async fn remove_member(&self, p: &Principal, user: UserId) -> Result<()> {
        require_manager(p)?;
        let mut tx = self.store.begin().await?;
        let member = found(tx.team_member(p.tenant_id, user).await, "user")?;
        require_owner_for(p, member.role == Role::Owner)?;
        if member.role == Role::Owner && tx.count_owners(p.tenant_id).await? <= 1 {
            return Err(ServiceError::invalid("id", "the last owner cannot be removed"));
        }
        tx.delete_membership(p.tenant_id, user).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Invites someone by email. Returns the invitation and its token (shown once; the
    /// invitee accepts with it at `POST /v1/auth/accept-invitation`).
    pub async fn invite(&self, p: &Principal, email: &str, role: &str) -> Result<(Invitation, String)> {
        require_manager(p)?;
        let email = Email::parse("email", email)?;
        let role = parse_role("role", role)?;
        require_owner_for(p, role == Role::Owner)?;
        let mut c = self.store.write().await?;
        if let Some(existing) = c.user_by_email(email.as_str()).await? {
            if c.role_of(p.tenant_id, cairn_domain::UserId(existing.id)).await?.is_some() {
                return Err(ServiceError::duplicate("email", "this person is already a member of the workspace"));
            }
        }
        let token = credential::generate_token(credential::INVITATION_PREFIX);
        let now = self.clock.now();
        let invitation = c
            .insert_invitation(&NewInvitation {
                tenant_id: p.tenant_id,
                email: email.as_str(),
                role,
                token_hash: &credential::hash_secret(&token),
                invited_by: p.user_id(),
                now,
                expires_at: now + self.settings.invitation_ttl,
            })
            .await?;
        Ok((invitation, token))
    }

    pub async fn invitations(&self, p: &Principal, limit: i64, offset: i64) -> Result<(Vec<Invitation>, i64)> {
        require_manager(p)?;
        Ok(self.store.read().await?.list_invitations(p.tenant_id, limit, offset).await?)
    }

    pub async fn invitation(&self, p: &Principal, id: InvitationId) -> Result<Invitation> {
        require_manager(p)?;
        found(self.store.read().await?.invitation(p.tenant_id, id).await, "invitation")
    }

    pub async fn revoke_invitation(&self, p: &Principal, id: InvitationId) -> Result<Invitation> {
        require_manager(p)?;
        let mut c = self.store.write().await?;
        if !c.revoke_invitation(p.tenant_id, id, self.clock.now()).await? {
            return Err(ServiceError::NotFound("invitation"));
        }
        found(c.invitation(p.tenant_id, id).await, "invitation")
    }

    /// Accepts an invitation: joins the workspace as a new user (name and password), or as an
    /// existing user of that email (whose password must match). Answers like login.
    #[tracing::instrument(skip_all)]
    pub async fn accept_invitation(&self, token: &str, name: Option<&str>, password_raw: &str) -> Result<SignedIn> {
        let now = self.clock.now();
        let invalid = || ServiceError::invalid("token", "this invitation is unknown, used, revoked or expired");
        let hash = credential::hash_secret(token);
        let inv = self.store.read().await?.open_invitation_by_token(&hash, now).await?.ok_or_else(invalid)?;
        let existing = self.store.read().await?.user_by_email(&inv.email).await?;
        let new_hash = match &existing {
            Some(row) => {
                if !password::verify(password_raw.to_string(), Some(row.password_hash.clone())).await {
                    return Err(ServiceError::Unauthenticated(
                        "an account with this email exists: give its password to join".into(),
                    ));
                }
                None
            }
            None => {
                let pw = text::password("password", password_raw)?;
                Some(password::hash(pw).await?)
            }
        };
        let mut tx = self.store.begin().await?;
        if !tx.accept_invitation(inv.id, now).await? {
            return Err(invalid());
        }
        let user: User = match (existing, new_hash) {
            (Some(row), _) => row.user(),
            (None, Some(h)) => {
                let name = text::required("name", name.unwrap_or(""), crate::accounts::MAX_NAME)?;
                tx.insert_user(&inv.email, &name, &h, now).await?
            }
            (None, None) => return Err(ServiceError::Internal("invitation without password hash".into())),
        };
        if tx.role_of(inv.tenant_id, user.id).await?.is_none() {
            tx.insert_membership(inv.tenant_id, user.id, inv.role, now).await?;
        }
        let tenant = found(tx.tenant(inv.tenant_id).await, "workspace")?;
        let role = tx.role_of(inv.tenant_id, user.id).await?.unwrap_or(inv.role);
        tx.commit().await?;
        self.start_session(user, tenant, role).await
    }

    /// The operator adds a user to a workspace directly (CLI: `cairn users create`).
    pub async fn add_user(
        &self,
        tenant: TenantId,
        email: &str,
        name: &str,
        password_raw: &str,
        role: Role,
    ) -> Result<User> {
        let email = Email::parse("email", email)?;
        let name = text::required("name", name, crate::accounts::MAX_NAME)?;
        let pw = text::password("password", password_raw)?;
        let hash = password::hash(pw).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        found(tx.tenant(tenant).await, "workspace")?;
        let user = match tx.user_by_email(email.as_str()).await? {
            Some(row) => row.user(),
            None => tx.insert_user(email.as_str(), &name, &hash, now).await?,
        };
        if tx.role_of(tenant, user.id).await?.is_some() {
            return Err(ServiceError::duplicate("email", "this person is already a member of the workspace"));
        }
        tx.insert_membership(tenant, user.id, role, now).await?;
        tx.commit().await?;
        Ok(user)
    }
}
