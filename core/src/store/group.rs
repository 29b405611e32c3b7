//! Group commit (SQLite): every write transaction of a process goes through one writer thread,
//! which runs the writes waiting at that moment in one database transaction, each after the first
//! in its own savepoint, and answers them only after that transaction committed.
//!
//! # Why
//! SQLite has exactly one writer at a time, and each commit writes every page it changed to the
//! log. When many requests write at once, one commit for all of them costs about what one commit
//! for one costs, so throughput grows with load instead of requests queueing on a lock (and the
//! pages many writes share, such as the ends of the indexes, are written once). A write that fails
//! still rolls back alone, and its caller gets its own error while the others commit: in its
//! savepoint, or, when it was first, with the transaction it had to itself.
//!
//! Nothing is acknowledged before it is durable: a caller's result is delivered after `COMMIT`
//! returned; if the commit fails, every write of the group gets that error.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use tokio::sync::oneshot;

use super::AnyConnection;
use crate::error::{Error, Result};

/// At most this many writes share one transaction: bounds how long the write lock is held and how
/// much one failed commit takes down.
const MAX_GROUP: usize = 256;

/// What the writer does with a write: run it in the group's transaction (in a savepoint when
/// writes before it in that transaction are to be kept: the flag), or fail it unrun with the
/// group's error.
enum Step<'a> {
    Run(&'a mut AnyConnection, bool),
    Abort(&'a Error),
}

/// One write. Run, it returns whether it succeeded and what to do once the commit's fate is known;
/// aborted, it answers its caller with the error and returns nothing.
type Job = Box<dyn FnOnce(Step<'_>) -> Option<(bool, Finish)> + Send>;
/// Delivers a write's result, given the group commit's outcome.
type Finish = Box<dyn FnOnce(std::result::Result<(), &Error>) + Send>;

/// Opens the writer's connection (and a new one after a connection failure).
pub(super) type Connect = Box<dyn Fn() -> Result<AnyConnection> + Send>;

/// The handle of the writer thread; the thread ends when the last handle is dropped.
#[derive(Debug)]
pub(super) struct GroupWriter {
    jobs: mpsc::Sender<Job>,
    /// Dropped with the writer, which stops the checkpointer.
    _checkpoints: Option<mpsc::Sender<()>>,
}

/// How often the checkpointer copies the SQLite write-ahead log back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

impl GroupWriter {
    /// Starts the writer thread with its own connection. On SQLite a thread of its own runs
    /// passive checkpoints beside it, so most of the log is copied back while the writer goes on;
    /// the writer's automatic checkpoint (every [`WRITER_AUTOCHECKPOINT_PAGES`] pages) then finds
    /// little left to copy, and completes, which lets the next transaction start the log over: a
    /// passive checkpoint alone never catches up with a busy writer, and the log would grow
    /// without bound.
    pub(super) fn start(connect: Connect) -> Result<Self> {
        let conn = connect()?;
        let checkpoints = match conn {
            AnyConnection::Sqlite(_) => Some(start_checkpointer(connect()?)?),
            AnyConnection::Postgres(_) => None,
        };
        // The writer's connection, and any that replaces it, checkpoints at its own size.
        let connect: Connect = Box::new(move || {
            let mut conn = connect()?;
            backstop_checkpoints(&mut conn)?;
            Ok(conn)
        });
        let mut conn = conn;
        backstop_checkpoints(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tocsin-writer".into())
            .spawn(move || writer_loop(conn, connect, rx))
            .map_err(|e| Error::internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            jobs: tx,
            _checkpoints: checkpoints,
        })
    }

    /// Runs `f` in the next group transaction; resolves once that transaction committed (or with
    /// `f`'s own error, its savepoint rolled back).
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let span = tracing::Span::current();
        let job: Job = Box::new(move |step| {
            let (conn, in_savepoint) = match step {
                Step::Run(conn, in_savepoint) => (conn, in_savepoint),
                Step::Abort(e) => {
                    let _ = reply.send(Err(e.clone()));
                    return None;
                }
            };
            let _entered = span.enter();
            // Nested in the group's transaction, diesel runs this in a savepoint. First in it, the
            // transaction is its own: the writer rolls it back if this fails.
            let (result, after) = super::commit::collecting(|| {
                if in_savepoint {
                    conn.transaction(f)
                } else {
                    f(conn)
                }
            });
            let ok = result.is_ok();
            Some((
                ok,
                Box::new(move |committed| {
                    let result = match committed {
                        Ok(()) => {
                            if result.is_ok() {
                                after.run();
                            }
                            result
                        }
                        // A write that failed on its own keeps its own error.
                        Err(e) => result.and_then(|_| Err(e.clone())),
                    };
                    // The caller may have gone away (its request was cancelled): nothing to tell.
                    let _ = reply.send(result);
                }),
            ))
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::internal("the database writer thread has stopped"))?;
        answer.await.map_err(|_| {
            Error::internal(
                "the database writer dropped a write (it panicked, or the writer stopped)",
            )
        })?
    }
}

fn writer_loop(mut conn: AnyConnection, connect: Connect, rx: mpsc::Receiver<Job>) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let jobs = std::mem::take(&mut group);
        if !run_group(&mut conn, jobs) {
            // A new connection when one can be had; otherwise the next group fails fast on the
            // old one and its callers get the error, rather than waiting here for the database.
            match connect() {
                Ok(c) => conn = c,
                Err(e) => tracing::error!(error = %e, "The database writer cannot reconnect."),
            }
        }
    }
}

/// Runs one group; false when the connection should be replaced.
///
/// A write runs in a savepoint only when writes before it in the same transaction succeeded: the
/// first has nothing of others' to protect, so if it fails the whole transaction is rolled back
/// and the rest of the group goes on in a new one. Each savepoint copies every existing page its
/// write touches into SQLite's statement journal (about 8% of the writer's time with one alert
/// per request, issue 8), and groups under load hold only a few writes each.
fn run_group(conn: &mut AnyConnection, jobs: Vec<Job>) -> bool {
    let size = jobs.len();
    if let Err(e) = begin(conn) {
        abort_all(jobs, &Error::from(e));
        return false;
    }
    // Writes that succeeded in the open transaction, waiting for its commit.
    let mut finishers: Vec<Finish> = Vec::with_capacity(size);
    let mut jobs = jobs.into_iter();
    while let Some(job) = jobs.next() {
        let in_savepoint = !finishers.is_empty();
        match std::panic::catch_unwind(AssertUnwindSafe(|| job(Step::Run(conn, in_savepoint)))) {
            Ok(None) => {}
            Ok(Some((true, finish))) => finishers.push(finish),
            // Its savepoint is rolled back; the others' writes stand.
            Ok(Some((false, finish))) if in_savepoint => finishers.push(finish),
            Ok(Some((false, finish))) => {
                // The first write failed with nothing else in the transaction: undo it, report
                // its own error, and begin again for the writes after it.
                let rolled_back = rollback(conn);
                finish(Ok(()));
                if jobs.len() == 0 {
                    return rolled_back.is_ok();
                }
                if let Err(e) = rolled_back.and_then(|()| begin(conn)) {
                    abort_all(jobs.collect(), &Error::from(e));
                    return false;
                }
            }
            Err(_) => {
                // A panic may have left the connection mid-savepoint: give up the whole group,
                // so that nothing half-written commits.
                tracing::error!(writes = size, "A write panicked; rolling its group back.");
                let e = Error::internal("a concurrent write failed; retry the request");
                let _ = rollback(conn);
                for finish in finishers {
                    finish(Err(&e));
                }
                abort_all(jobs.collect(), &e);
                return false;
            }
        }
    }
    match commit(conn) {
        Ok(()) => {
            for finish in finishers {
                finish(Ok(()));
            }
            true
        }
        Err(e) => {
            let e = Error::from(e);
            tracing::error!(error = %e, writes = size, "A group commit failed.");
            let _ = rollback(conn);
            for finish in finishers {
                finish(Err(&e));
            }
            false
        }
    }
}

/// Fails writes unrun with `e`.
fn abort_all(jobs: Vec<Job>, e: &Error) {
    if jobs.is_empty() {
        return;
    }
    tracing::error!(error = %e, writes = jobs.len(), "Cannot run a write transaction.");
    for job in jobs {
        job(Step::Abort(e));
    }
}

fn begin(conn: &mut AnyConnection) -> diesel::QueryResult<()> {
    match conn {
        // Take the write lock at once: a deferred transaction that reads first can fail with
        // SQLITE_BUSY without waiting when another process wrote in between.
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        AnyConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c),
    }
}

fn commit(conn: &mut AnyConnection) -> diesel::QueryResult<()> {
    <AnyConnection as Connection>::TransactionManager::commit_transaction(conn)
}

fn rollback(conn: &mut AnyConnection) -> diesel::QueryResult<()> {
    <AnyConnection as Connection>::TransactionManager::rollback_transaction(conn)
}

/// The size of the log, in pages, at which the writer checkpoints it itself at the end of a
/// commit (SQLite's default is 1000).
///
/// # Why
/// The checkpointer thread copies the log back beside the writer, but never all of it while the
/// writer goes on appending, and the log only starts over once a checkpoint has copied every
/// frame: the writer's own checkpoint, which finds little left to copy, is what lets it. That
/// checkpoint still syncs the log and the database file, on the writer thread, inside a commit
/// that every write of its group waits for: at the default size it was a tenth of the writer's
/// time under load (issue 8). Ten times the size makes it ten times rarer, for a log file that
/// may grow to about 40 MiB under sustained load (SQLite reuses the file; it does not shrink).
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Sets the writer connection's own checkpoint to [`WRITER_AUTOCHECKPOINT_PAGES`] (SQLite only).
fn backstop_checkpoints(conn: &mut AnyConnection) -> Result<()> {
    use diesel::connection::SimpleConnection;
    if let AnyConnection::Sqlite(c) = conn {
        c.batch_execute(&format!(
            "PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES};"
        ))?;
    }
    Ok(())
}

/// Runs a passive checkpoint every [`CHECKPOINT_EVERY`] until the returned sender is dropped. A
/// passive checkpoint never blocks the writer or readers; frames a reader still needs are copied by
/// a later one.
fn start_checkpointer(mut conn: AnyConnection) -> Result<mpsc::Sender<()>> {
    use diesel::connection::SimpleConnection;
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("tocsin-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                    tracing::warn!(error = %e, "A WAL checkpoint failed; the next one will retry.");
                }
            }
        })
        .map_err(|e| Error::internal(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(tx)
}
