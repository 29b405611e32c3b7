//! Integration tests of tocsin-notify: real SMTP and HTTP servers on loopback, real SQLite and
//! PostgreSQL (when `TOCSIN_TEST_POSTGRES_URL` is set).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;
mod conformance;
mod delivery;
mod email;
mod http_drivers;
mod stage;
