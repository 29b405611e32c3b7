//! Integration tests of tocsin-providers: real processes, real files, a real HTTP server standing
//! in for the OpenAI API, and real databases (SQLite always, PostgreSQL when
//! `TOCSIN_TEST_POSTGRES_URL` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test fixtures fail loudly

mod analyze;
mod helpers;
mod local;
mod openai;
