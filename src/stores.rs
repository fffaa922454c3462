//! Opening both stores from configuration, with errors that name the setting at fault.

use std::sync::Arc;

use anyhow::Context;
use cairn_events::{ClickHouseConfig, ClickHouseStore, EventStore, SqliteEventStore, Timed};
use cairn_store::{Store, StoreConfig};

use crate::config::{redact_url, StoreArgs};

pub struct Stores {
    pub entities: Store,
    pub events: Arc<dyn EventStore>,
}

/// Opens (and creates) the entity and event stores, and applies pending migrations.
pub async fn open(args: &StoreArgs) -> anyhow::Result<Stores> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("CAIRN_DATA_DIR: cannot create {}", args.data_dir.display()))?;
    let entity_config = match &args.database_url {
        Some(url) => StoreConfig::Postgres { url: url.clone(), max_connections: args.database_max_connections },
        None => StoreConfig::Sqlite { path: args.data_dir.join("cairn.db") },
    };
    let entities = Store::connect(&entity_config).await.with_context(|| match &args.database_url {
        Some(url) => format!("CAIRN_DATABASE_URL: cannot connect to PostgreSQL at {}", redact_url(url)),
        None => format!("CAIRN_DATA_DIR: cannot open {}", args.data_dir.join("cairn.db").display()),
    })?;
    let applied = entities.migrate().await.context("entity store migrations failed")?;
    if applied > 0 {
        tracing::info!(applied, backend = ?entities.backend(), "entity store migrated");
    }

    let events: Arc<dyn EventStore> = match &args.clickhouse_url {
        Some(url) => Arc::new(Timed(ClickHouseStore::new(ClickHouseConfig {
            url: url.clone(),
            database: args.clickhouse_database.clone(),
            user: args.clickhouse_user.clone(),
            password: args.clickhouse_password.clone(),
        }))),
        None => {
            let path = args.data_dir.join("events.db");
            let store = SqliteEventStore::open(&path)
                .await
                .with_context(|| format!("CAIRN_DATA_DIR: cannot open {}", path.display()))?;
            Arc::new(Timed(store))
        }
    };
    let applied = events.migrate().await.with_context(|| match &args.clickhouse_url {
        Some(url) => format!("CAIRN_CLICKHOUSE_URL: cannot migrate the event store at {}", redact_url(url)),
        None => "event store migrations failed".to_string(),
    })?;
    if applied > 0 {
        tracing::info!(applied, backend = events.backend(), "event store migrated");
    }
    Ok(Stores { entities, events })
}
