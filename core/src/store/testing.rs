//! Test databases for every backend, used by the test suites of all tocsin crates (feature
//! `testing`). Each [`TestDb`] is isolated: a fresh SQLite file in a temporary folder, or a fresh
//! PostgreSQL schema that is dropped afterwards.
#![cfg(feature = "testing")]

use std::io::Write;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use super::Store;

/// An isolated, migrated database for one test.
pub struct TestDb {
    /// The store.
    pub store: Store,
    /// `sqlite` or `postgres`, for assertion messages.
    pub label: &'static str,
    /// The URL the store was opened with (a worker process given it sees the same data).
    pub url: String,
    pg_cleanup: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// The variable that points the suites at PostgreSQL.
pub const POSTGRES_ENV: &str = "TOCSIN_TEST_POSTGRES_URL";

/// A fresh SQLite database in a temporary folder.
pub async fn sqlite() -> TestDb {
    let dir =
        tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary folder: {e}"));
    let url = format!("sqlite://{}", dir.path().join("tocsin-test.db").display());
    let store = Store::open(&url, 4)
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    TestDb {
        store,
        label: "sqlite",
        url,
        pg_cleanup: None,
        _dir: Some(dir),
    }
}

/// A fresh PostgreSQL schema, or `None` when `TOCSIN_TEST_POSTGRES_URL` is unset.
///
/// When it runs, it says so on the real standard output (not captured by the test harness), so a
/// CI log shows that the PostgreSQL suite ran. With `TOCSIN_TEST_REQUIRE_POSTGRES=1` an unset URL
/// fails the test instead of skipping it.
pub async fn postgres() -> Option<TestDb> {
    let Ok(base) = std::env::var(POSTGRES_ENV) else {
        if std::env::var("TOCSIN_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            panic!("TOCSIN_TEST_REQUIRE_POSTGRES=1 but {POSTGRES_ENV} is not set");
        }
        return None;
    };
    let schema = format!("tocsin_test_{}", uuid::Uuid::new_v4().simple());
    let setup_base = base.clone();
    let setup_schema = schema.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = PgConnection::establish(&setup_base)
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but PostgreSQL refuses: {e}"));
        c.batch_execute(&format!("CREATE SCHEMA {setup_schema}"))
            .unwrap_or_else(|e| panic!("cannot create schema {setup_schema}: {e}"));
    })
    .await
    .unwrap_or_else(|e| panic!("setup task failed: {e}"));
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let store = Store::open(&url, 4)
        .await
        .unwrap_or_else(|e| panic!("cannot open PostgreSQL schema {schema}: {e}"));
    // Written past the harness's capture on purpose: the log must show the PostgreSQL suite ran.
    let _ = writeln!(
        std::io::stdout(),
        "[tocsin test] using PostgreSQL ({}) schema {schema}",
        crate::config::redact_url(&base)
    );
    Some(TestDb {
        store,
        label: "postgres",
        url,
        pg_cleanup: Some((base, schema)),
        _dir: None,
    })
}

/// SQLite always, and PostgreSQL when configured: run a store test against each.
pub async fn all() -> Vec<TestDb> {
    let mut dbs = vec![sqlite().await];
    dbs.extend(postgres().await);
    dbs
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.pg_cleanup.take() {
            // Runs on its own thread: dropping inside an async test must not block the executor.
            let _ = std::thread::spawn(move || {
                if let Ok(mut c) = PgConnection::establish(&base) {
                    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
            })
            .join();
        }
    }
}
