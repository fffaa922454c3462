//! Configuration: command-line flags, each with a `CAIRN_*` environment variable. This is the
//! only place that reads configuration; everything else receives typed settings.
//! A bad value stops start-up with a message that names the setting.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a self-hosted customer data platform and CRM.",
    long_about = "Cairn: a self-hosted customer data platform and CRM — event tracking, scoring, segments, \
                  automations, campaigns, leads and deals — in one binary.\n\n\
                  Start with `cairn serve`: it keeps everything in SQLite files under ./cairn-data. Set \
                  CAIRN_DATABASE_URL (PostgreSQL) and CAIRN_CLICKHOUSE_URL (ClickHouse) to scale out.",
    after_help = "Every option can also be set with the environment variable shown next to it."
)]
pub struct Cli {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (API, ingestion and background work) until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations to both stores and exit (idempotent).
    Migrate,
    /// Manage workspaces.
    #[command(subcommand)]
    Tenants(TenantsCmd),
    /// Manage the people who sign in.
    #[command(subcommand)]
    Users(UsersCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Directory for the embedded SQLite stores.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./cairn-data", global = true)]
    pub data_dir: PathBuf,
    /// PostgreSQL URL for the entity store (postgres://user:pass@host:5432/db). Unset: SQLite.
    #[arg(long, env = "CAIRN_DATABASE_URL", value_parser = parse_database_url, global = true)]
    pub database_url: Option<String>,
    /// Largest PostgreSQL connection pool.
    #[arg(long, env = "CAIRN_DATABASE_MAX_CONNECTIONS", default_value_t = 16, global = true,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
    /// ClickHouse HTTP URL for the event store (http://host:8123). Unset: SQLite.
    #[arg(long, env = "CAIRN_CLICKHOUSE_URL", value_parser = parse_clickhouse_url, global = true)]
    pub clickhouse_url: Option<String>,
    /// ClickHouse database (created if missing).
    #[arg(long, env = "CAIRN_CLICKHOUSE_DATABASE", default_value = "cairn", value_parser = parse_identifier, global = true)]
    pub clickhouse_database: String,
    #[arg(long, env = "CAIRN_CLICKHOUSE_USER", global = true)]
    pub clickhouse_user: Option<String>,
    #[arg(long, env = "CAIRN_CLICKHOUSE_PASSWORD", global = true, hide_env_values = true)]
    pub clickhouse_password: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Log format: `text` or `json`.
    #[arg(long, env = "CAIRN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    pub log_format: String,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `cairn_api=debug,info`.
    #[arg(long, env = "CAIRN_LOG", default_value = "info", global = true)]
    pub log: String,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Largest request body on the CRM API, in bytes.
    #[arg(long, env = "CAIRN_MAX_BODY_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    pub max_body_bytes: u64,
    /// Largest request body on the ingestion routes (a batch), in bytes.
    #[arg(long, env = "CAIRN_MAX_BATCH_BYTES", default_value_t = 500 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub max_batch_bytes: u64,
    /// Largest single tracked message, in bytes.
    #[arg(long, env = "CAIRN_MAX_EVENT_BYTES", default_value_t = 32 * 1024,
          value_parser = clap::value_parser!(u64).range(256..=1024 * 1024))]
    pub max_event_bytes: u64,
    /// Largest file attached to a CRM entity (`POST /v1/files`), in bytes.
    #[arg(long, env = "CAIRN_MAX_FILE_BYTES", default_value_t = 10 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    pub max_file_bytes: u64,
    /// Largest CSV import body (`POST /v1/imports`), in bytes.
    #[arg(long, env = "CAIRN_MAX_IMPORT_BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=4 * 1024 * 1024 * 1024))]
    pub max_import_bytes: u64,
    /// Disk the ingest log may fill with events not yet processed (MiB); past it, ingestion
    /// answers 503 with Retry-After.
    #[arg(long, env = "CAIRN_INGEST_LOG_BUDGET_MB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ingest_log_budget_mb: u64,
    /// Let webhooks reach private, loopback and link-local addresses (off: SSRF guard).
    #[arg(long, env = "CAIRN_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    pub webhook_allow_private: bool,
    /// How far ahead `clv_predicted` looks, in months.
    #[arg(long, env = "CAIRN_CLV_HORIZON_MONTHS", default_value_t = 12,
          value_parser = clap::value_parser!(u64).range(1..=120))]
    pub clv_horizon_months: u64,
    /// When RFM cut points are refreshed and every customer re-scored (cron: 5 fields, or 6
    /// with seconds first; the injected clock's time, UTC).
    #[arg(long, env = "CAIRN_SCORING_BOUNDARIES_CRON", default_value = "*/10 * * * *", value_parser = parse_cron)]
    pub scoring_boundaries_cron: cron::Schedule,
    /// When the CLV models are refitted (cron, as above).
    #[arg(long, env = "CAIRN_SCORING_FIT_CRON", default_value = "0 3 * * *", value_parser = parse_cron)]
    pub scoring_fit_cron: cron::Schedule,
    /// Requests per minute per secret key on the CRM API (seed 004's default).
    #[arg(long, env = "CAIRN_RATE_LIMIT_SECRET", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_secret: u64,
    /// Requests per minute per public key on the CRM API (seed 004's default).
    #[arg(long, env = "CAIRN_RATE_LIMIT_PUBLIC", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_public: u64,
    /// Requests per minute per signed-in session.
    #[arg(long, env = "CAIRN_RATE_LIMIT_SESSION", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_session: u64,
    /// Requests per minute per key on the ingestion routes.
    #[arg(long, env = "CAIRN_RATE_LIMIT_INGEST", default_value_t = 6_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_ingest: u64,
    /// Requests per minute per client address without valid credentials (login, register).
    #[arg(long, env = "CAIRN_RATE_LIMIT_ANONYMOUS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_anonymous: u64,
    /// Hours a session token from login stays valid.
    #[arg(long, env = "CAIRN_SESSION_TTL_HOURS", default_value_t = 720, value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub session_ttl_hours: u64,
    /// Whether anyone may create a workspace with POST /v1/auth/register.
    #[arg(long, env = "CAIRN_ALLOW_REGISTRATION", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub allow_registration: bool,
    /// Expose /v1/test/clock and let owners set the clock (tests and demos only).
    #[arg(long, env = "CAIRN_TEST_CLOCK", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    pub test_clock: bool,
    /// On first start, create a workspace and this owner (with CAIRN_ADMIN_PASSWORD).
    #[arg(long, env = "CAIRN_ADMIN_EMAIL", requires = "admin_password")]
    pub admin_email: Option<String>,
    #[arg(long, env = "CAIRN_ADMIN_PASSWORD", hide_env_values = true, requires = "admin_email")]
    pub admin_password: Option<String>,
    /// Name of the workspace created on first start.
    #[arg(long, env = "CAIRN_ADMIN_WORKSPACE", default_value = "My workspace")]
    pub admin_workspace: String,
    /// Roles this instance runs (comma-separated: api, ingest, worker). All by default.
    #[arg(long, env = "CAIRN_ROLES", default_value = "api,ingest,worker", value_parser = parse_roles)]
    pub roles: String,
    /// The URL customers reach this server at: tracking, unsubscribe and SMS callback links
    /// start with it. Default: http:// and the listen address.
    #[arg(long, env = "CAIRN_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// The default SMTP server for campaigns: smtp://user:pass@host:port?tls=none|starttls|tls
    /// (workspaces may set their own with PUT /v1/settings/email).
    #[arg(long, env = "CAIRN_SMTP_URL", hide_env_values = true, value_parser = parse_smtp_url)]
    pub smtp_url: Option<cairn_channels::email::SmtpSettings>,
    /// SMTP connections per sending campaign.
    #[arg(long, env = "CAIRN_SMTP_CONNECTIONS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub smtp_connections: u64,
    /// The default SMS provider: a Twilio-compatible Messages API base URL.
    #[arg(long, env = "CAIRN_SMS_API_URL", requires_all = ["sms_account_sid", "sms_auth_token", "sms_from"])]
    pub sms_api_url: Option<String>,
    #[arg(long, env = "CAIRN_SMS_ACCOUNT_SID")]
    pub sms_account_sid: Option<String>,
    #[arg(long, env = "CAIRN_SMS_AUTH_TOKEN", hide_env_values = true)]
    pub sms_auth_token: Option<String>,
    /// The sending number (E.164) or alphanumeric sender id.
    #[arg(long, env = "CAIRN_SMS_FROM")]
    pub sms_from: Option<String>,
    /// Seed 002's CRM webhook secret (`POST /webhooks/crm/lead`, sent as Bearer or X-API-Key).
    #[arg(long, env = "CRM_WEBHOOK_SECRET", hide_env_values = true)]
    pub crm_webhook_secret: Option<String>,
    /// Used when CRM_WEBHOOK_SECRET is not set (seed 002).
    #[arg(long, env = "CRM_CALLBACK_SECRET", hide_env_values = true)]
    pub crm_callback_secret: Option<String>,
    /// When set, CRM webhook calls made with the environment's secret must be signed
    /// (X-TraceCRM-Timestamp/-Signature/-Delivery, docs/webhooks.md).
    #[arg(long, env = "CRM_WEBHOOK_SIGNING_SECRET", hide_env_values = true)]
    pub crm_webhook_signing_secret: Option<String>,
    /// The workspace (id or slug) the environment's CRM webhook secret serves (default: the
    /// first workspace registered).
    #[arg(long, env = "CRM_WEBHOOK_WORKSPACE")]
    pub crm_webhook_workspace: Option<String>,
    /// Seconds to let in-flight requests finish after SIGTERM before exiting.
    #[arg(long, env = "CAIRN_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,
}

#[derive(Subcommand, Debug)]
pub enum TenantsCmd {
    /// Create a workspace, optionally with its owner.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, requires = "owner_password")]
        owner_email: Option<String>,
        #[arg(long, env = "CAIRN_OWNER_PASSWORD", hide_env_values = true, requires = "owner_email")]
        owner_password: Option<String>,
        #[arg(long, default_value = "Owner")]
        owner_name: String,
    },
    /// List workspaces.
    List,
}

#[derive(Subcommand, Debug)]
pub enum UsersCmd {
    /// Add a person to a workspace (creating their account if needed).
    Create {
        /// Workspace id or slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long, env = "CAIRN_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "member", value_parser = ["owner", "admin", "member"])]
        role: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Create an API key and print it (shown once).
    Create {
        /// Workspace id or slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// `secret` (eck_…) or `public` (pk_live_… / pk_test_…).
        #[arg(long = "type", default_value = "secret", value_parser = ["secret", "public"])]
        kind: String,
        /// For public keys: live or test.
        #[arg(long, value_parser = ["live", "test"])]
        environment: Option<String>,
        /// A scope to grant (repeatable). Default: all for secret keys, ingestion for public.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Requests per minute on the CRM API.
        #[arg(long)]
        rate_limit: Option<i64>,
        /// Print the key as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a workspace's keys (by prefix; keys are never shown again).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: i64,
    },
}

fn parse_public_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(s.trim_end_matches('/').to_string())
        }
        _ => Err(format!("CAIRN_PUBLIC_URL must be an http(s) URL such as https://cairn.example.com, not {s:?}")),
    }
}

fn parse_smtp_url(s: &str) -> Result<cairn_channels::email::SmtpSettings, String> {
    cairn_channels::email::SmtpSettings::parse(s).map_err(|e| format!("CAIRN_SMTP_URL: {e}"))
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("CAIRN_LISTEN / --listen must be an address like 127.0.0.1:8080, not {s:?}"))
}

fn parse_database_url(s: &str) -> Result<String, String> {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(s.to_string())
    } else {
        Err("CAIRN_DATABASE_URL / --database-url must be a postgres:// URL (leave it unset for the embedded SQLite store)".into())
    }
}

fn parse_clickhouse_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            Ok(s.trim_end_matches('/').to_string())
        }
        _ => {
            Err("CAIRN_CLICKHOUSE_URL / --clickhouse-url must be ClickHouse's HTTP address, like http://127.0.0.1:8123"
                .into())
        }
    }
}

fn parse_identifier(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(s.to_string())
    } else {
        Err("CAIRN_CLICKHOUSE_DATABASE must be letters, digits and underscores".into())
    }
}

fn parse_cron(s: &str) -> Result<cron::Schedule, String> {
    cairn_scoring::parse_schedule(s)
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("expected true/false (or 1/0), not {s:?}")),
    }
}

fn parse_roles(s: &str) -> Result<String, String> {
    // clap calls this once per comma-separated value when `value_delimiter` is set; here the
    // whole list arrives, so check every part.
    for part in s.split(',') {
        if !["api", "ingest", "worker"].contains(&part.trim()) {
            return Err(format!("CAIRN_ROLES / --roles takes api, ingest and worker, not {part:?}"));
        }
    }
    Ok(s.to_string())
}

/// A database URL safe to print: the password replaced.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparseable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named_in_the_error() {
        assert!(parse_listen("localhost").unwrap_err().contains("CAIRN_LISTEN"));
        assert!(parse_database_url("mysql://x").unwrap_err().contains("CAIRN_DATABASE_URL"));
        assert!(parse_clickhouse_url("127.0.0.1:8123").unwrap_err().contains("CAIRN_CLICKHOUSE_URL"));
        assert!(parse_roles("api,cook").unwrap_err().contains("CAIRN_ROLES"));
        assert_eq!(parse_clickhouse_url("http://127.0.0.1:8123/").unwrap(), "http://127.0.0.1:8123");
    }

    #[test]
    fn passwords_never_reach_the_output() {
        assert_eq!(redact_url("postgres://u:secret@db:5432/cairn"), "postgres://u:***@db:5432/cairn");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
