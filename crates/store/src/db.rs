//! Connections to either backend and the macro that runs one statement on whichever is in use.

use std::{
    path::PathBuf,
    str::FromStr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use sqlx::{
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction,
};

use crate::Result;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Where the entity store lives.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A SQLite file (created when missing).
    Sqlite { path: PathBuf },
    /// A PostgreSQL URL (`postgres://…`).
    Postgres { url: String, max_connections: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The entity store: a pool of connections to one backend. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// Bumped whenever a profile disappears other than through the ingest processor (an
    /// erasure), so that identity caches know to forget what they hold.
    identity_epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Clone)]
enum Db {
    /// SQLite allows one writer at a time; a one-connection write pool serialises writers in
    /// this process (no `SQLITE_BUSY` on lock upgrades) while readers use their own pool.
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
        /// The writer runs with `synchronous=NORMAL` for an unsynced transaction
        /// ([`Store::begin_unsynced`]); set until the connection is back in the pool, where
        /// `after_release` restores FULL before anyone else can take it.
        relaxed: Arc<AtomicBool>,
    },
    Postgres(PgPool),
}

/// A connection, or an open transaction, on either backend. Store operations are methods on
/// `Conn` (see the other modules), so the same code runs inside or outside a transaction.
pub enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
    SqliteTx(Transaction<'static, Sqlite>),
    PostgresTx(Transaction<'static, Postgres>),
}

#[doc(hidden)]
pub enum Raw<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

impl Conn {
    #[doc(hidden)]
    pub fn raw(&mut self) -> Raw<'_> {
        match self {
            Conn::Sqlite(c) => Raw::Sqlite(c),
            Conn::Postgres(c) => Raw::Postgres(c),
            Conn::SqliteTx(t) => Raw::Sqlite(t),
            Conn::PostgresTx(t) => Raw::Postgres(t),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) | Conn::SqliteTx(_) => Backend::Sqlite,
            Conn::Postgres(_) | Conn::PostgresTx(_) => Backend::Postgres,
        }
    }

    /// Commits a transaction; on a plain connection there is nothing to commit.
    pub async fn commit(self) -> Result<()> {
        match self {
            Conn::SqliteTx(t) => t.commit().await?,
            Conn::PostgresTx(t) => t.commit().await?,
            Conn::Sqlite(_) | Conn::Postgres(_) => {}
        }
        Ok(())
    }
}

/// Runs `$body` with `$c` bound to the backend's concrete connection type. The body is
/// compiled once per backend, so `sqlx::query(..)` infers the right driver in each arm.
/// Every statement's latency is recorded in [`QUERY_LATENCY`] for `/metrics`.
macro_rules! on {
    ($conn:expr, |$c:ident| $body:expr) => {{
        let started = std::time::Instant::now();
        let result = match $conn.raw() {
            $crate::db::Raw::Sqlite($c) => $body,
            $crate::db::Raw::Postgres($c) => $body,
        };
        $crate::db::QUERY_LATENCY.observe(started.elapsed());
        result
    }};
}

/// SQLite's form of a statement over many ids: what `head` writes (with its binds), then
/// `WHERE id IN (…)`, 500 ids a statement (PostgreSQL takes them as one array instead).
pub(crate) async fn sqlite_by_ids(
    c: &mut sqlx::SqliteConnection,
    ids: &[i64],
    head: impl Fn(&mut sqlx::QueryBuilder<'_, sqlx::Sqlite>),
) -> Result<()> {
    for chunk in ids.chunks(500) {
        let started = std::time::Instant::now();
        let mut qb = sqlx::QueryBuilder::new("");
        head(&mut qb);
        qb.push(" WHERE id IN (");
        let mut sep = qb.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        qb.push(")");
        qb.build().persistent(false).execute(&mut *c).await?;
        QUERY_LATENCY.observe(started.elapsed());
    }
    Ok(())
}

/// Latency of entity-store statements (whichever backend is in use).
pub static QUERY_LATENCY: cairn_domain::metrics::Histogram = cairn_domain::metrics::Histogram::new();

impl Store {
    /// Connects without migrating. Call [`Store::migrate`] before use.
    pub async fn connect(config: &StoreConfig) -> Result<Store> {
        let db = match config {
            StoreConfig::Sqlite { path } => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
                }
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // FULL: a committed transaction is fsync'd before COMMIT returns, so an
                    // acknowledged write survives kill -9 and power loss alike.
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    // Pages are read through a memory map instead of one `pread` each: with
                    // SQLite's 2 MB default cache, a multi-GB store (a million automation runs
                    // and their steps) spent most of its time in read syscalls. Read-only
                    // mapping: writes still go through the WAL and its fsync.
                    .pragma("mmap_size", 0x7fff_0000u64.to_string()); // SQLite's own ceiling
                                                                      // The writer keeps more pages of its own (indexes it updates on every batch).
                let relaxed = Arc::new(AtomicBool::new(false));
                let restore = relaxed.clone();
                let write = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_release(move |c, _| {
                        let restore = restore.clone();
                        Box::pin(async move {
                            if restore.swap(false, Ordering::AcqRel) {
                                // A pending ROLLBACK (a transaction dropped unfinished) runs first.
                                sqlx::Executor::execute(&mut *c, "PRAGMA synchronous = FULL").await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(opts.clone().pragma("cache_size", "-65536"))
                    .await?;
                let read = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts.pragma("cache_size", "-16384"))
                    .await?;
                Db::Sqlite { write, read, relaxed }
            }
            StoreConfig::Postgres { url, max_connections } => {
                let opts = PgConnectOptions::from_str(url)?;
                // One direct connection first: its error says why (refused, bad password, no
                // such database), where the pool would only report a timeout.
                sqlx::Connection::close(<PgConnection as sqlx::Connection>::connect_with(&opts).await?).await?;
                let pool = PgPoolOptions::new()
                    .max_connections(*max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await?;
                Db::Postgres(pool)
            }
        };
        Ok(Store { db, identity_epoch: Default::default() })
    }

    pub fn identity_epoch(&self) -> u64 {
        self.identity_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn bump_identity_epoch(&self) {
        self.identity_epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies pending migrations. Idempotent; on PostgreSQL concurrent instances serialise
    /// on an advisory lock.
    pub async fn migrate(&self) -> Result<usize> {
        let before = self.applied_migrations().await.unwrap_or(0);
        match &self.db {
            Db::Sqlite { write, .. } => SQLITE_MIGRATIONS.run(write).await?,
            Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(self.applied_migrations().await?.saturating_sub(before))
    }

    /// How many migrations have been applied.
    pub async fn applied_migrations(&self) -> Result<usize> {
        let mut c = self.read().await?;
        let n: i64 = on!(c, |c| sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(c).await)?;
        Ok(n as usize)
    }

    /// A connection for reads (and single-statement writes on PostgreSQL).
    pub async fn read(&self) -> Result<Conn> {
        Ok(match &self.db {
            Db::Sqlite { read, .. } => Conn::Sqlite(read.acquire().await?),
            Db::Postgres(p) => Conn::Postgres(p.acquire().await?),
        })
    }

    /// A connection for a single-statement write (autocommit).
    pub async fn write(&self) -> Result<Conn> {
        Ok(match &self.db {
            Db::Sqlite { write, .. } => Conn::Sqlite(write.acquire().await?),
            Db::Postgres(p) => Conn::Postgres(p.acquire().await?),
        })
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// it never fails half-way on a lock upgrade.
    pub async fn begin(&self) -> Result<Conn> {
        Ok(match &self.db {
            Db::Sqlite { write, .. } => Conn::SqliteTx(write.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => Conn::PostgresTx(p.begin().await?),
        })
    }

    /// A write transaction whose COMMIT does not wait for the disk: SQLite writes its pages to
    /// the WAL (so it survives kill -9 the moment COMMIT returns) without the fsync, which the
    /// next ordinary commit's fsync covers (`synchronous=NORMAL` for this one transaction);
    /// PostgreSQL commits with `synchronous_commit = off`. Only for records whose loss in a power
    /// cut between this commit and the next synced one is acceptable — the campaign sender's
    /// commit points, where waiting for the disk widens the window in which a kill -9 leaves a
    /// message in doubt (docs/campaigns.md).
    pub async fn begin_unsynced(&self) -> Result<Conn> {
        Ok(match &self.db {
            Db::Sqlite { write, relaxed, .. } => {
                let mut c = write.acquire().await?;
                relaxed.store(true, Ordering::Release);
                sqlx::Executor::execute(&mut *c, "PRAGMA synchronous = NORMAL").await?;
                Conn::SqliteTx(sqlx::Transaction::begin(c, Some("BEGIN IMMEDIATE".into())).await?)
            }
            Db::Postgres(p) => {
                let mut t = p.begin().await?;
                sqlx::Executor::execute(&mut *t, "SET LOCAL synchronous_commit = off").await?;
                Conn::PostgresTx(t)
            }
        })
    }

    /// Makes every commit so far durable against power loss, [`Store::begin_unsynced`]'s
    /// included. SQLite: a passive checkpoint, which syncs the WAL first (and copies what it can
    /// into the database, work an automatic checkpoint would do later). PostgreSQL flushes
    /// asynchronous commits itself within three `wal_writer_delay`s (600 ms by default), so
    /// this does nothing there.
    pub async fn sync(&self) -> Result<()> {
        if let Db::Sqlite { write, .. } = &self.db {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(write).await?;
        }
        Ok(())
    }

    /// Checks the store answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        let mut c = self.read().await?;
        let _: i32 = on!(c, |c| sqlx::query_scalar("SELECT 1").fetch_one(c).await)?;
        Ok(())
    }

    /// Connections currently open and idle, for `/metrics`.
    pub fn pool_stats(&self) -> (u32, usize) {
        match &self.db {
            Db::Sqlite { write, read, .. } => (write.size() + read.size(), write.num_idle() + read.num_idle()),
            Db::Postgres(p) => (p.size(), p.num_idle()),
        }
    }

    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite { write, read, .. } => {
                write.close().await;
                read.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }
}

impl Conn {
    /// Runs one statement as given (tests use it to break the schema on purpose).
    #[doc(hidden)]
    pub async fn execute_unchecked(&mut self, sql: &str) -> Result<u64> {
        Ok(on!(self, |c| sqlx::query(sql).execute(c).await.map(|r| r.rows_affected()))?)
    }
}
