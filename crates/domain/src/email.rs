//! Email addresses: one way in, normalised.

use crate::FieldError;

/// A syntactically plausible email address, trimmed and lower-cased so that lookups by email
/// find the same person however the address was typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(field: &str, raw: &str) -> Result<Email, FieldError> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(FieldError::new(field, format!("must be at most {} characters", Self::MAX_LEN)));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(FieldError::new(field, "must be an email address"));
        };
        let domain_ok = !domain.is_empty()
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty() || !domain_ok || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(FieldError::new(field, "must be an email address"));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Option<&str>) {
        let got = Email::parse("email", raw).ok().map(Email::into_string);
        assert_eq!(got.as_deref(), expected, "input {raw:?}");
    }

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        check("  Ana@Example.COM ", Some("ana@example.com"));
        check("marko+tag@sub.example.hr", Some("marko+tag@sub.example.hr"));
        check("no-at-sign", None);
        check("@example.com", None);
        check("a@", None);
        check("a@.example.com", None);
        check("a@exa mple.com", None);
        check("a b@example.com", None);
        check("", None);
        check(&format!("{}@example.com", "x".repeat(250)), None);
    }
}
