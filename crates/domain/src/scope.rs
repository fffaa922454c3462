//! Permissions carried by API keys and sessions. Every resource the seeds name has scopes;
//! routes demand one, and a credential without it gets 403 `FORBIDDEN`.

use std::fmt;

macro_rules! scopes {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// One permission, written `resource:action` on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Scope { $($variant),* }

        impl Scope {
            pub const ALL: &'static [Scope] = &[$(Scope::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Scope::$variant => $name),* }
            }

            pub fn parse(s: &str) -> Option<Scope> {
                match s { $($name => Some(Scope::$variant),)* _ => None }
            }
        }
    };
}

scopes! {
    LeadsRead = "leads:read", LeadsWrite = "leads:write", LeadsDelete = "leads:delete",
    DealsRead = "deals:read", DealsWrite = "deals:write", DealsDelete = "deals:delete",
    OpportunitiesRead = "opportunities:read", OpportunitiesWrite = "opportunities:write",
    OpportunitiesDelete = "opportunities:delete",
    FormsRead = "forms:read", FormsWrite = "forms:write", FormsDelete = "forms:delete",
    CustomersRead = "customers:read", CustomersWrite = "customers:write",
    CustomersDelete = "customers:delete",
    ContactsRead = "contacts:read", ContactsWrite = "contacts:write", ContactsDelete = "contacts:delete",
    ProspectsRead = "prospects:read", ProspectsWrite = "prospects:write",
    ProspectsDelete = "prospects:delete",
    ActivitiesRead = "activities:read", ActivitiesWrite = "activities:write",
    ActivitiesDelete = "activities:delete",
    NotesRead = "notes:read", NotesWrite = "notes:write", NotesDelete = "notes:delete",
    EventsRead = "events:read", EventsWrite = "events:write",
    SegmentsRead = "segments:read", SegmentsWrite = "segments:write", SegmentsDelete = "segments:delete",
    CampaignsRead = "campaigns:read", CampaignsWrite = "campaigns:write",
    CampaignsDelete = "campaigns:delete",
    AutomationsRead = "automations:read", AutomationsWrite = "automations:write",
    AutomationsDelete = "automations:delete",
    AnalyticsRead = "analytics:read",
    WebhooksManage = "webhooks:manage",
    WidgetAccess = "widget:access",
    KeysManage = "keys:manage",
    TeamManage = "team:manage",
    SettingsManage = "settings:manage",
}

impl Scope {
    /// Scopes that name the same resource under another seed's word: a `deals:read` key may
    /// read opportunities (seed 000 vs seed 004), a `contacts:*` key customers (seed 004's
    /// people are seed 003's customers). Recorded in docs/compatibility.md.
    fn alias(self) -> Option<Scope> {
        use Scope::*;
        Some(match self {
            DealsRead => OpportunitiesRead,
            DealsWrite => OpportunitiesWrite,
            DealsDelete => OpportunitiesDelete,
            OpportunitiesRead => DealsRead,
            OpportunitiesWrite => DealsWrite,
            OpportunitiesDelete => DealsDelete,
            ContactsRead => CustomersRead,
            ContactsWrite => CustomersWrite,
            ContactsDelete => CustomersDelete,
            CustomersRead => ContactsRead,
            CustomersWrite => ContactsWrite,
            CustomersDelete => ContactsDelete,
            _ => return None,
        })
    }

    /// Scopes a public (`pk_…`) key may hold: it is embedded in web pages, so it may only ingest
    /// events and talk to the widget.
    pub fn public_allowed(self) -> bool {
        matches!(self, Scope::EventsWrite | Scope::WidgetAccess)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, as a bit set (there are fewer than 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeSet(u64);

const _: () = assert!(Scope::ALL.len() <= 64);

impl ScopeSet {
    pub fn all() -> ScopeSet {
        Scope::ALL.iter().copied().collect()
    }

    /// What a public key gets when no scopes are given.
    pub fn ingestion() -> ScopeSet {
        [Scope::EventsWrite, Scope::WidgetAccess].into_iter().collect()
    }

    pub fn empty() -> ScopeSet {
        ScopeSet(0)
    }

    pub fn insert(&mut self, s: Scope) {
        self.0 |= 1 << (s as u8);
    }

    pub fn contains(&self, s: Scope) -> bool {
        self.0 & (1 << (s as u8)) != 0
    }

    /// Whether this set grants `required`, directly or through an alias.
    pub fn allows(&self, required: Scope) -> bool {
        self.contains(required) || required.alias().is_some_and(|a| self.contains(a))
    }

    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.iter().all(|s| other.allows(s))
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        Scope::ALL.iter().copied().filter(|s| self.contains(*s))
    }

    pub fn names(&self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_string()).collect()
    }

    /// Parses scope names; the error names the first unknown one.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<ScopeSet, String> {
        let mut set = ScopeSet::empty();
        for n in names {
            set.insert(Scope::parse(n).ok_or_else(|| n.to_string())?);
        }
        Ok(set)
    }

    /// The stored form: space-separated names.
    pub fn to_db(&self) -> String {
        self.names().join(" ")
    }

    /// Reads the stored form, ignoring names this version does not know (a downgrade must not
    /// lock a key out; it only loses what it cannot name).
    pub fn from_db(s: &str) -> ScopeSet {
        s.split_whitespace().filter_map(Scope::parse).collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::empty();
        for s in iter {
            set.insert(s);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_name_round_trips() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(*s));
        }
        let all = ScopeSet::all();
        assert_eq!(ScopeSet::from_db(&all.to_db()), all);
    }

    #[test]
    fn deals_and_opportunities_are_one_resource() {
        let set: ScopeSet = [Scope::DealsRead].into_iter().collect();
        assert!(set.allows(Scope::OpportunitiesRead));
        assert!(!set.allows(Scope::OpportunitiesWrite));
        let set: ScopeSet = [Scope::ContactsWrite].into_iter().collect();
        assert!(set.allows(Scope::CustomersWrite));
    }

    #[test]
    fn unknown_scope_names_are_reported() {
        assert_eq!(ScopeSet::parse(["leads:read", "leads:fly"]), Err("leads:fly".to_string()));
    }

    #[test]
    fn ingestion_scopes_are_all_public_safe() {
        assert!(ScopeSet::ingestion().iter().all(Scope::public_allowed));
        assert!(!Scope::LeadsRead.public_allowed());
    }
}
