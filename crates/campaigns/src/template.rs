//! Message templates (docs/campaigns.md): minijinja — `{{name}}` as seed 003 writes it, filters,
//! conditionals, `default` — over the customer's fields and traits. Syntax errors name the field,
//! line and column; rendering is bounded by fuel (instructions) and by output size, so no
//! template can stall the sender. HTML bodies are auto-escaped.

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value};

/// Instructions one render may execute: far beyond any real message, far below a stall.
const FUEL: u64 = 200_000;
/// The largest rendered subject or body.
pub const MAX_OUTPUT: usize = 512 * 1024;

/// A template that does not compile or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}{}", location(*.line, *.column))]
pub struct TemplateError {
    /// `subject` or `body`.
    pub field: &'static str,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

/// A campaign's templates, compiled once.
pub struct Templates {
    env: Environment<'static>,
    has_subject: bool,
}

/// What one recipient gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

fn error(field: &'static str, source: &str, e: &minijinja::Error) -> TemplateError {
    let message = match e.kind() {
        ErrorKind::OutOfFuel => "the template does too much work (a loop that never ends?)".to_string(),
        _ => e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string()),
    };
    let column = e.range().map(|r| {
        let before = &source[..r.start.min(source.len())];
        before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1
    });
    TemplateError { field, message, line: e.line(), column }
}

impl Templates {
    /// Compiles a subject (optional: SMS has none) and a body; `html` auto-escapes the body.
    pub fn compile(subject: Option<&str>, body: &str, html: bool) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        // A null (a trait set to null) prints as nothing, like a missing value — never "none".
        env.set_formatter(
            |out, state, value| {
                if value.is_none() {
                    Ok(())
                } else {
                    minijinja::escape_formatter(out, state, value)
                }
            },
        );
        env.set_auto_escape_callback(|name| if name == "body.html" { AutoEscape::Html } else { AutoEscape::None });
        if let Some(s) = subject {
            env.add_template_owned("subject", s.to_string()).map_err(|e| error("subject", s, &e))?;
        }
        let name = if html { "body.html" } else { "body" };
        env.add_template_owned(name, body.to_string()).map_err(|e| error("body", body, &e))?;
        let t = Templates { env, has_subject: subject.is_some() };
        Ok(t)
    }

    fn body_name(&self) -> &'static str {
        if self.env.get_template("body.html").is_ok() {
            "body.html"
        } else {
            "body"
        }
    }

    /// Renders for one recipient.
    pub fn render(&self, context: &Value) -> Result<Rendered, TemplateError> {
        let one = |name: &str, field: &'static str| -> Result<String, TemplateError> {
            let t = self.env.get_template(name).expect("compiled");
            let out = t.render(context).map_err(|e| error(field, t.source(), &e))?;
            if out.len() > MAX_OUTPUT {
                return Err(TemplateError {
                    field,
                    message: format!("renders to more than {} KiB", MAX_OUTPUT / 1024),
                    line: None,
                    column: None,
                });
            }
            Ok(out)
        };
        let subject =
            if self.has_subject { one("subject", "subject")?.replace(['\r', '\n'], " ") } else { String::new() };
        Ok(Rendered { subject: subject.trim().to_string(), body: one(self.body_name(), "body")? })
    }
}

/// The variables a template sees for a customer: `id`, `email`, `name`, `first_name`,
/// `last_name`, `phone`, `city`, `country`, `external_id`, `traits`, every trait at the top
/// level too (fields win a clash), and whatever `extra` holds (`unsubscribe_url`, …).
pub fn context(customer: &cairn_store::customers::Customer, extra: &[(&str, Value)]) -> Value {
    let mut m = Map::new();
    if let Value::Object(traits) = &customer.traits {
        for (k, v) in traits {
            m.insert(k.clone(), v.clone());
        }
    }
    let name = customer.name.clone().unwrap_or_default();
    let mut parts = name.split_whitespace();
    let first = parts.next().unwrap_or("").to_string();
    let last = parts.collect::<Vec<_>>().join(" ");
    let fields = [
        ("id", Value::from(customer.id.0)),
        ("email", customer.email.clone().into()),
        ("name", customer.name.clone().into()),
        ("first_name", if first.is_empty() { Value::Null } else { first.into() }),
        ("last_name", if last.is_empty() { Value::Null } else { last.into() }),
        ("phone", customer.phone.clone().into()),
        ("city", customer.city.clone().into()),
        ("country", customer.country.clone().into()),
        ("external_id", customer.external_id.clone().into()),
        ("traits", customer.traits.clone()),
    ];
    // A field the profile lacks is left out rather than set to null, so that the template sees
    // it as undefined: `{{ name }}` prints nothing and `{{ name | default("there") }}` falls
    // back (a null would print "none" and defeat `default`).
    for (k, v) in fields {
        if v.is_null() {
            continue;
        }
        m.insert(k.to_string(), v);
    }
    for (k, v) in extra {
        m.insert(k.to_string(), v.clone());
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_the_seed_template_with_filters_and_defaults() {
        let t = Templates::compile(
            Some("Hi {{ first_name | default('there') }}"),
            "<p>Hi {{name}},</p>{% if plan == 'pro' %}<p>Pro</p>{% endif %}<p>{{ city | upper }}</p>",
            true,
        )
        .unwrap();
        let r = t.render(&json!({"name": "Ana <Kovač>", "first_name": "Ana", "plan": "pro", "city": "Split"})).unwrap();
        assert_eq!(r.subject, "Hi Ana");
        assert_eq!(r.body, "<p>Hi Ana &lt;Kovač&gt;,</p><p>Pro</p><p>SPLIT</p>");
        let r = t.render(&json!({})).unwrap();
        assert_eq!(r.subject, "Hi there");
    }

    #[test]
    fn a_missing_name_prints_nothing_and_takes_the_default() {
        let t = Templates::compile(
            Some("Hello {{ name }}!"),
            "<p>Hi {{ name | default('there') }}, {{ traits.x }}</p>",
            true,
        )
        .unwrap();
        let now = chrono::Utc::now();
        let customer = cairn_store::customers::Customer {
            id: cairn_domain::CustomerId(1),
            tenant_id: cairn_domain::TenantId(1),
            email: Some("a@example.com".into()),
            external_id: None,
            name: None,
            phone: None,
            city: None,
            country: None,
            traits: json!({"x": null}),
            first_seen_at: None,
            last_seen_at: None,
            created_at: now,
            updated_at: now,
        };
        let r = t.render(&context(&customer, &[])).unwrap();
        assert_eq!(r.subject, "Hello !");
        assert_eq!(r.body, "<p>Hi there, </p>");
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let e = Templates::compile(Some("ok"), "line one\n  {{ name }\n", true).err().unwrap();
        assert_eq!(e.field, "body");
        assert_eq!(e.line, Some(2));
        assert!(e.column.is_some(), "{e:?}");
        let e = Templates::compile(Some("{% if %}"), "x", true).err().unwrap();
        assert_eq!((e.field, e.line), ("subject", Some(1)));
    }

    #[test]
    fn runaway_templates_stop() {
        let t = Templates::compile(
            None,
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            false,
        )
        .unwrap();
        let e = t.render(&json!({})).unwrap_err();
        assert!(e.message.contains("too much work"), "{e:?}");
    }
}
