//! Storage: one schema on SQLite (embedded, the default) or PostgreSQL (many nodes).
//!
//! # Why sync diesel behind `spawn_blocking`
//! diesel's synchronous connections are the mature path for both backends (diesel-async has no
//! SQLite driver of its own and no `MultiConnection`). Every query runs on tokio's blocking pool
//! through [`Store::run`] / [`Store::write`], with connections from an r2d2 pool, so no database
//! call blocks an executor thread; the one exception is [`Store::run_point_read`], a read through
//! an index on a SQLite file, cheaper than the hop to the pool.
//!
//! On SQLite the database runs in WAL mode with a busy timeout. Write transactions of one process
//! go through one writer thread with its own connection, which commits the writes waiting at the
//! same moment together (group commit, see `group.rs`): SQLite allows one writer at a time anyway,
//! and one commit for many writes is what makes concurrent ingest fast. Reads use the pool, and so
//! do writes on PostgreSQL, which runs concurrent transactions and groups their WAL flushes itself.

pub mod capped;
pub mod checks;
mod commit;
pub mod console;
mod group;
pub mod ingest;
pub mod metrics;
mod records;
pub mod rows;
pub mod schema;
mod seen;
mod snapshot;
mod stamp;
pub mod testing;
pub mod update;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ManageConnection, Pool};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use commit::{after_commit, in_write};
pub use records::*;
pub use seen::SEEN_FLUSH_EVERY;
pub use snapshot::Snapshot;
pub(crate) use stamp::Stamp;

use crate::error::{Error, Result};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

pub use any::AnyConnection;

/// The derive generates undocumented items; they live in their own module so the rest of the
/// crate keeps the `missing_docs` lint.
#[allow(missing_docs)]
mod any {
    /// A connection to either backend. Queries are written once against it; backend-specific SQL
    /// (such as `FOR UPDATE SKIP LOCKED`) matches on the variant.
    #[derive(diesel::MultiConnection)]
    pub enum AnyConnection {
        /// PostgreSQL.
        Postgres(diesel::PgConnection),
        /// SQLite.
        Sqlite(diesel::SqliteConnection),
    }
}

/// Runs `$body` with `$c` bound to the concrete connection behind an [`AnyConnection`]: the
/// same diesel query, compiled once per backend.
///
/// # Why
/// Through diesel's `MultiConnection` every statement renders its SQL text again on every
/// execution (the wrapper it executes renders the query even when only its binds are wanted,
/// and the text is the statement cache's key for queries without a static id). On the SQLite
/// writer thread that was a fifth of the time of the ingest path. On the concrete connection a
/// query whose type fixes its SQL is found in the cache by its type and only bound. The hot
/// statements of ingest and of the engine use it; the rest keep the plain `AnyConnection`.
macro_rules! direct {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::AnyConnection::Sqlite($c) => $body,
            $crate::store::AnyConnection::Postgres($c) => $body,
        }
    };
}
pub(crate) use direct;

/// Inserts one row and returns its id (`$id`, the table's integer primary key).
///
/// # Why
/// On SQLite the id is read back with `last_insert_rowid()` on the same connection, not with
/// `RETURNING`: SQLite collects the rows of a `RETURNING` clause in an ephemeral table, opened
/// (a b-tree with a pager of its own) and closed again for every statement, about 5% of the
/// writer thread on the ingest path. `id` is an alias of the rowid in every table (`INTEGER
/// PRIMARY KEY`), and the writer's connection runs one statement at a time.
macro_rules! insert_id {
    ($conn:expr, $table:path, $id:path, $values:expr) => {
        match $conn {
            $crate::store::AnyConnection::Sqlite(c) => diesel::insert_into($table)
                .values($values)
                .execute(c)
                .and_then(|_| {
                    diesel::select($crate::store::sqlite_fns::last_insert_rowid())
                        .get_result::<i64>(c)
                }),
            $crate::store::AnyConnection::Postgres(c) => diesel::insert_into($table)
                .values($values)
                .returning($id)
                .get_result::<i64>(c),
        }
    };
}
pub(crate) use insert_id;

/// SQL functions of SQLite's that diesel does not declare.
#[allow(missing_docs)]
pub(crate) mod sqlite_fns {
    use diesel::expression::functions::declare_sql_function;

    #[declare_sql_function]
    extern "SQL" {
        /// The rowid of the connection's latest successful `INSERT`.
        fn last_insert_rowid() -> BigInt;
    }
}

/// Which backend a store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A parsed `TOCSIN_DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` (relative), `sqlite:///ABS/PATH`, or `sqlite::memory:`.
    Sqlite(String),
    /// `postgres://...` or `postgresql://...`, handed to libpq as is.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses a database URL without touching the disk or the network.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(Self::Sqlite(":memory:".to_owned()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(Error::invalid_config(
                    "a sqlite URL needs a file path, such as sqlite://tocsin.db",
                ));
            }
            return Ok(Self::Sqlite(path.to_owned()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        Err(Error::invalid_config(
            "a database URL such as sqlite://tocsin.db, sqlite::memory: or postgres://user@host:5432/db",
        ))
    }

    /// The backend it names.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

/// `url` with `sslmode=disable` added when it names a server on this machine by a loopback
/// address (`localhost`, `127.0.0.1`, `[::1]`) and nothing chose a TLS mode: no `ssl*` parameter
/// in the URL, and (`tls_chosen` false) neither `PGSSLMODE` nor `PGREQUIRESSL` set.
///
/// # Why
/// libpq's default (`prefer`) negotiates TLS whenever the server offers it, as Debian's does,
/// and encrypting traffic that never leaves the kernel protects nothing while it costs both
/// ends: on issue 8's load it was a fifth of the server's CPU and the rate rose by a tenth to a
/// third without it. `prefer` already falls back to plain text without a word, so it promised
/// no encryption to begin with; a URL that asks for TLS still gets it.
fn loopback_without_tls(url: &str, tls_chosen: bool) -> Cow<'_, str> {
    if tls_chosen {
        return Cow::Borrowed(url);
    }
    let Some((_, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Several hosts: libpq tries each in turn, and one of them may be another machine.
    if authority.contains(',') {
        return Cow::Borrowed(url);
    }
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => hostport.split(':').next().unwrap_or(""),
    };
    if !matches!(host, "localhost" | "127.0.0.1" | "::1") {
        return Cow::Borrowed(url);
    }
    let query = url.split_once('?').map(|(_, q)| q);
    // A `host` or `hostaddr` parameter overrides the address in the URL.
    let keeps_libpq_default = query.is_some_and(|q| {
        q.split('&').any(|kv| {
            let key = kv.split('=').next().unwrap_or("");
            key.starts_with("ssl") || key == "host" || key == "hostaddr"
        })
    });
    if keeps_libpq_default {
        return Cow::Borrowed(url);
    }
    let sep = match query {
        None => "?",
        Some("") => "",
        Some(_) => "&",
    };
    Cow::Owned(format!("{url}{sep}sslmode=disable"))
}

/// Opens connections of the backend the URL names, reporting the backend's own error (diesel's
/// `MultiConnection::establish` tries every backend in turn and hides why PostgreSQL failed).
#[derive(Debug)]
struct Manager {
    url: DatabaseUrl,
    /// SQLite's page cache per connection, KiB (`None`: SQLite's default, 2 MiB).
    page_cache_kib: Option<u32>,
}

/// The page cache of a pooled SQLite connection of a file database, KiB. Such a connection
/// reads while the writer thread writes, and in WAL mode each read transaction that finds the
/// database changed starts with an empty cache: a large one buys little and, filled, costs its
/// size in every one of the pool's connections (issue 8's memory target).
const READER_PAGE_CACHE_KIB: u32 = 256;

/// A connection error, with the backend's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(String);

/// A pooled connection, and when it last served a caller without an error.
struct Pooled {
    conn: AnyConnection,
    served: Option<std::time::Instant>,
}

/// How long after serving a caller without an error a pooled connection is handed out again
/// without the check-out test.
///
/// # Why
/// The test (`SELECT 1`) is a round trip of its own on PostgreSQL, one of about ten per alert on
/// the webhook's path under load (issue 8), and a connection that just answered is as good as
/// proven. One idle longer, or whose last caller got an error (a server that went away, say),
/// is tested as before and replaced if it fails.
const TRUSTED_AFTER_USE: Duration = Duration::from_secs(1);

impl Manager {
    /// A new connection, set up for its backend.
    fn open(&self) -> std::result::Result<AnyConnection, ConnectError> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let mut c = diesel::SqliteConnection::establish(path)
                    .map_err(|e| ConnectError(e.to_string()))?;
                // WAL lets readers run beside the writer; the busy timeout makes a second process wait
                // instead of failing (set first: switching a new file to WAL takes a lock that
                // another connection opening at the same moment may hold); foreign keys are off by
                // default in SQLite. Group commit runs each write in a savepoint, whose journal
                // would otherwise be a temporary file.
                c.batch_execute(
                    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
                     PRAGMA temp_store = MEMORY;",
                )
                .map_err(|e| ConnectError(e.to_string()))?;
                if let Some(kib) = self.page_cache_kib {
                    c.batch_execute(&format!("PRAGMA cache_size = -{kib};"))
                        .map_err(|e| ConnectError(e.to_string()))?;
                }
                Ok(AnyConnection::Sqlite(c))
            }
            DatabaseUrl::Postgres(url) => {
                let tls_chosen = std::env::var_os("PGSSLMODE").is_some()
                    || std::env::var_os("PGREQUIRESSL").is_some();
                let url = loopback_without_tls(url, tls_chosen);
                let c = diesel::PgConnection::establish(&url).map_err(|e| {
                    let msg = e.to_string().trim().to_owned();
                    if matches!(url, Cow::Owned(_)) && msg.contains("no encryption") {
                        return ConnectError(format!(
                            "{msg} (tocsin connects to a server on this machine without TLS unless \
                             the URL sets sslmode: add ?sslmode=require to it)"
                        ));
                    }
                    ConnectError(msg)
                })?;
                Ok(AnyConnection::Postgres(c))
            }
        }
    }
}

impl ManageConnection for Manager {
    type Connection = Pooled;
    type Error = ConnectError;

    fn connect(&self) -> std::result::Result<Pooled, ConnectError> {
        Ok(Pooled {
            conn: self.open()?,
            served: None,
        })
    }

    fn is_valid(&self, pooled: &mut Pooled) -> std::result::Result<(), ConnectError> {
        if pooled
            .served
            .is_some_and(|t| t.elapsed() < TRUSTED_AFTER_USE)
        {
            return Ok(());
        }
        pooled
            .conn
            .batch_execute("SELECT 1")
            .map_err(|e| ConnectError(e.to_string()))
    }

    /// Called as a connection goes back to the pool. A write that panicked leaves its transaction
    /// open (diesel does not roll back on unwind): roll it back here, or drop the connection, so
    /// that the next user does not write into it.
    fn has_broken(&self, pooled: &mut Pooled) -> bool {
        use diesel::connection::TransactionManager;
        let conn = &mut pooled.conn;
        type Tm = <AnyConnection as Connection>::TransactionManager;
        for _ in 0..8 {
            match Tm::transaction_manager_status_mut(conn).transaction_depth() {
                Ok(None) => return false,
                Ok(Some(_)) => {
                    if Tm::rollback_transaction(conn).is_err() {
                        return true;
                    }
                }
                Err(_) => return true,
            }
        }
        true
    }
}

/// The storage handle: cheap to clone, safe to share.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    /// One permit per pooled connection. A task waits for a connection here, asynchronously,
    /// rather than on a blocking thread inside r2d2: a burst of reads (dozens of pipeline runs
    /// at once) would otherwise hold a blocking thread each, and every such thread keeps a
    /// malloc arena (issue 8: most of the server's memory under load).
    connections: Arc<tokio::sync::Semaphore>,
    backend: Backend,
    writes: Writes,
    /// The alerts this process stored, and re-sends' stamps waiting to be written.
    seen: Arc<seen::Seen>,
}

/// How write transactions are run.
#[derive(Clone)]
enum Writes {
    /// Through the group-commit writer thread.
    Grouped(Arc<group::GroupWriter>),
    /// On a pooled connection: one at a time for an in-memory SQLite database (it lives in its
    /// one pooled connection, which a writer thread cannot share), concurrently on PostgreSQL.
    Pooled(Option<Arc<Mutex<()>>>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects (the first connection is opened at once, so a bad URL or a server that is down
    /// fails here with the backend's message). Does not run migrations: see [`Store::migrate`].
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self> {
        let parsed = DatabaseUrl::parse(url)?;
        let backend = parsed.backend();
        // An in-memory SQLite database lives in one connection: more would each see an empty one.
        let in_memory = parsed == DatabaseUrl::Sqlite(":memory:".into());
        let size = if in_memory { 1 } else { pool_size.max(1) };
        let shown = crate::config::redact_url(url);
        let writer_url = parsed.clone();
        let pool = tokio::task::spawn_blocking(move || {
            let manager = Manager {
                url: parsed,
                // An in-memory database lives in its one connection's pages: never cap them.
                page_cache_kib: (!in_memory).then_some(READER_PAGE_CACHE_KIB),
            };
            // One direct attempt first: r2d2 would retry silently until its timeout and then report
            // only "timed out", while the backend's own message says what is wrong.
            let first = manager.connect()?;
            let builder = if in_memory {
                // The database lives in its one connection: never close it for idleness or age.
                Pool::builder().idle_timeout(None).max_lifetime(None)
            } else {
                Pool::builder()
            };
            let pool = builder
                .max_size(size)
                // No idle minimum: r2d2 keeps one by opening a replacement on its own thread
                // whenever a connection is checked out, and a process that exits while libpq is
                // connecting there crashes in libc (seen: SIGSEGV in `r2d2-worker-0` as a CLI
                // command returned). Connections are opened when asked for and kept once returned.
                .min_idle(Some(0))
                .connection_timeout(Duration::from_secs(10))
                .build_unchecked(manager);
            drop(first);
            Ok::<_, ConnectError>(pool)
        })
        .await
        .map_err(|e| Error::internal(format!("connection task failed: {e}")))?
        .map_err(|e| Error::storage(format!("cannot connect to {shown}: {e}")))?;
        let writes = if in_memory {
            Writes::Pooled(Some(Arc::new(Mutex::new(()))))
        } else if backend == Backend::Postgres {
            // PostgreSQL takes concurrent writers and already shares one WAL flush among the
            // commits of the moment; funnelling them through one connection would only add a
            // round trip per savepoint and lose that concurrency (measured: half the rate).
            Writes::Pooled(None)
        } else {
            let shown = shown.clone();
            let writer = tokio::task::spawn_blocking(move || {
                let manager = Manager {
                    url: writer_url,
                    page_cache_kib: None,
                };
                group::GroupWriter::start(Box::new(move || {
                    let conn = manager
                        .open()
                        .map_err(|e| Error::storage(format!("cannot connect to {shown}: {e}")))?;
                    Ok(conn)
                }))
            })
            .await
            .map_err(|e| Error::internal(format!("connection task failed: {e}")))??;
            Writes::Grouped(Arc::new(writer))
        };
        Ok(Self {
            pool,
            connections: Arc::new(tokio::sync::Semaphore::new(size as usize)),
            backend,
            writes,
            seen: Arc::new(seen::Seen::new()),
        })
    }

    /// Connects and brings the schema up to date: what a process does at start-up.
    pub async fn open(url: &str, pool_size: u32) -> Result<Self> {
        let store = Self::connect(url, pool_size).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies pending migrations; returns how many ran. Safe to call from many processes at once.
    pub async fn migrate(&self) -> Result<usize> {
        self.run(|conn| {
            let applied = match conn {
                AnyConnection::Sqlite(c) => {
                    c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len())
                }
                AnyConnection::Postgres(c) => {
                    // Two processes starting together must not both create the tables.
                    c.batch_execute("SELECT pg_advisory_lock(7243001)")?;
                    let r = c
                        .run_pending_migrations(POSTGRES_MIGRATIONS)
                        .map(|v| v.len());
                    c.batch_execute("SELECT pg_advisory_unlock(7243001)")?;
                    r
                }
            };
            applied.map_err(|e| Error::storage(format!("migration failed: {e}")))
        })
        .await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.run(|conn| Ok(conn.batch_execute("SELECT 1")?)).await
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        let permit = self
            .connections
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::internal("the connection limiter is closed"))?;
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let _permit = permit;
            let mut pooled = pool
                .get()
                .map_err(|e| Error::storage(format!("no database connection: {e}")))?;
            let result = f(&mut pooled.conn);
            pooled.served = result.as_ref().ok().map(|_| std::time::Instant::now());
            result
        })
        .await
        .map_err(|e| Error::internal(format!("storage task failed: {e}")))?
    }

    /// Runs `f` in one transaction on a pooled connection (on the blocking pool), so that all its
    /// reads see the same committed state. For reads: a write belongs in [`Store::write`].
    pub async fn run_snapshot<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        self.run(move |conn| conn.transaction(f)).await
    }

    /// Runs `f`, a read through an index that takes microseconds, on this thread when the
    /// database is a SQLite file and a pooled connection is free at once; otherwise (PostgreSQL,
    /// in-memory SQLite, every connection busy) as [`Store::run`].
    ///
    /// # Why
    /// On SQLite such a read costs less than the hop to the blocking pool and back: two thread
    /// wake-ups, which on the re-sent-alert load were over a third of the machine (issue 8).
    /// In WAL mode a reader does not wait for the writer, so the executor thread is held for the
    /// read alone. On PostgreSQL every read is a round trip to the server, which must not hold an
    /// executor thread. Anything longer than a point read goes through [`Store::run`].
    pub async fn run_point_read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        if matches!(self.writes, Writes::Grouped(_))
            && let Ok(permit) = self.connections.clone().try_acquire_owned()
            && let Some(mut pooled) = self.pool.try_get()
        {
            let _permit = permit;
            let result = f(&mut pooled.conn);
            pooled.served = result.as_ref().ok().map(|_| std::time::Instant::now());
            return result;
        }
        self.run(f).await
    }

    /// Runs `f` in one write transaction: all of it is committed, or none. It returns once the
    /// transaction committed, possibly together with other writes of the moment (group commit);
    /// `f` runs on the writer thread, so it must not wait for another write. Work `f` registers
    /// with [`after_commit`] runs once the transaction committed, before this returns.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        match &self.writes {
            Writes::Grouped(writer) => writer.write(f).await,
            Writes::Pooled(lock) => {
                let lock = lock.clone();
                self.run(move |conn| {
                    // A poisoned lock only means another writer panicked; the database is intact.
                    let _guard = lock
                        .as_ref()
                        .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
                    let (result, committed) = commit::collecting(|| conn.transaction(|c| f(c)));
                    if result.is_ok() {
                        committed.run();
                    }
                    result
                })
                .await
            }
        }
    }
}

/// A UTC timestamp as stored.
pub fn ts(naive: NaiveDateTime) -> DateTime<Utc> {
    naive.and_utc()
}

/// The current time, as stored (microsecond precision, which both backends keep exactly).
pub fn now() -> NaiveDateTime {
    let n = Utc::now().naive_utc();
    n.with_nanosecond_trunc()
}

trait TruncMicros {
    fn with_nanosecond_trunc(self) -> Self;
}

impl TruncMicros for NaiveDateTime {
    fn with_nanosecond_trunc(self) -> Self {
        use chrono::Timelike;
        let nanos = self.nanosecond() / 1_000 * 1_000;
        self.with_nanosecond(nanos).unwrap_or(self)
    }
}

/// Parses a stored JSON text column, naming the column when it is corrupt.
pub(crate) fn json_from<T: serde::de::DeserializeOwned>(text: &str, column: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::storage(format!("corrupt JSON in {column}: {e}")))
}

/// Serialises a value for a JSON text column.
pub fn json_to<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("cannot serialise JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::loopback_without_tls;

    #[test]
    fn a_loopback_server_is_reached_without_tls_unless_something_chose_a_mode() {
        let plain = |url| loopback_without_tls(url, false).into_owned();
        assert_eq!(
            plain("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
        );
        assert_eq!(
            plain("postgresql://u:p@localhost/db?options=-csearch_path%3Dx"),
            "postgresql://u:p@localhost/db?options=-csearch_path%3Dx&sslmode=disable"
        );
        assert_eq!(
            plain("postgres://[::1]:5433/db"),
            "postgres://[::1]:5433/db?sslmode=disable"
        );
        assert_eq!(
            plain("postgres://localhost/db?"),
            "postgres://localhost/db?sslmode=disable"
        );
        // Another machine, several hosts, a socket, an address given apart: libpq's default.
        for url in [
            "postgres://db.example.com/db",
            "postgres://10.0.0.5:5432/db",
            "postgres://localhost:5432,db.example.com:5432/db",
            "postgres:///db?host=/var/run/postgresql",
            "postgres://localhost/db?hostaddr=10.0.0.5",
            "postgres://127.0.0.1.example.com/db",
        ] {
            assert_eq!(plain(url), url);
        }
        // A mode or a certificate in the URL, or PGSSLMODE/PGREQUIRESSL: the user's choice.
        for url in [
            "postgres://127.0.0.1/db?sslmode=require",
            "postgres://localhost/db?sslrootcert=/etc/ca.pem",
        ] {
            assert_eq!(plain(url), url);
        }
        let url = "postgres://127.0.0.1/db";
        assert_eq!(loopback_without_tls(url, true), url);
    }
}
