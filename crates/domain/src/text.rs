//! Bounded text fields: every string the API stores has a maximum length.

use crate::FieldError;

/// Trims `raw` and checks it is non-empty and at most `max` characters.
pub fn required(field: &str, raw: &str, max: usize) -> Result<String, FieldError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    bounded(field, s, max)
}

/// Checks `raw` is at most `max` characters (no trimming of inner content).
pub fn bounded(field: &str, raw: &str, max: usize) -> Result<String, FieldError> {
    if raw.chars().count() > max {
        return Err(FieldError::new(field, format!("must be at most {max} characters")));
    }
    Ok(raw.to_string())
}

/// A password: at least 8 and at most 1024 characters (Argon2 accepts more, but a 1 MB
/// password is a denial-of-service attempt, not a password).
pub fn password(field: &str, raw: &str) -> Result<String, FieldError> {
    let n = raw.chars().count();
    if n < 8 {
        return Err(FieldError::new(field, "must be at least 8 characters"));
    }
    if n > 1024 {
        return Err(FieldError::new(field, "must be at most 1024 characters"));
    }
    Ok(raw.to_string())
}

/// A URL-safe identifier derived from a display name: `"Acme Corp!"` → `"acme-corp"`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
        if out.len() >= 48 {
            break;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("workspace");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lowercase_dashed_and_never_empty() {
        for (input, expected) in [
            ("Acme Corp!", "acme-corp"),
            ("  Zagreb -- Web  ", "zagreb-web"),
            ("Ana Kovač", "ana-kova"),
            ("!!!", "workspace"),
        ] {
            assert_eq!(slugify(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn required_text_is_trimmed_and_bounded() {
        assert_eq!(required("name", "  x ", 3).unwrap(), "x");
        assert_eq!(required("name", "   ", 3).unwrap_err().field, "name");
        assert!(required("name", "abcd", 3).is_err());
        assert!(password("password", "short").is_err());
        assert!(password("password", "long enough").is_ok());
    }
}

/// A phone number as people type it: digits with an optional leading `+` and the usual
/// separators (space, `-`, `.`, parentheses), 5 to 20 digits. Separators are dropped, so the
/// stored form is `+385921234567`.
pub fn phone(field: &str, raw: &str) -> Result<String, FieldError> {
    let s = raw.trim();
    let bad = || FieldError::new(field, "must be a phone number such as +385921234567");
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '+' if i == 0 => out.push('+'),
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(bad()),
        }
    }
    let digits = out.trim_start_matches('+').len();
    if !(5..=20).contains(&digits) {
        return Err(bad());
    }
    Ok(out)
}

/// An ISO 3166-1 alpha-2 country code, upper-cased (`hr` → `HR`).
pub fn country(field: &str, raw: &str) -> Result<String, FieldError> {
    let s = raw.trim().to_ascii_uppercase();
    if s.len() == 2 && s.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(s)
    } else {
        Err(FieldError::new(field, "must be a two-letter ISO 3166 country code such as HR"))
    }
}

#[cfg(test)]
mod contact_tests {
    use super::*;

    #[test]
    fn phones_keep_digits_and_a_leading_plus() {
        for (input, expected) in [
            ("+385921234567", Some("+385921234567")),
            ("+1-555-0123", Some("+15550123")),
            ("(01) 234 5678", Some("012345678")),
            ("12", None),
            ("call me", None),
            ("+1+2345678", None),
        ] {
            assert_eq!(phone("phone", input).ok().as_deref(), expected, "input {input:?}");
        }
    }

    #[test]
    fn countries_are_two_letters() {
        assert_eq!(country("country", " hr ").unwrap(), "HR");
        assert!(country("country", "HRV").is_err());
        assert!(country("country", "H1").is_err());
    }
}
