//! The pipeline engine: one durable state machine for the default pipeline and every stored
//! definition.
//!
//! A run is a row of `pipeline_runs`; each attempt of each node is a row of `stage_executions`
//! with its input and output snapshots. Workers claim due runs from the database with a lease
//! ([`queue`]); a worker executes nodes in definition order, skipping those that already succeeded
//! (so a run resumed after a crash or a failure never repeats a finished node), and:
//! - retries a node's temporary error by scheduling the run again after an exponential backoff
//!   with jitter (the run is `retrying`, no thread sleeps), up to `max_retries` per node;
//! - fails the run on a permanent error (or when retries are exhausted) of a required node;
//! - records an optional node's failure, and nodes skipped by `skip_if_errors`, as skipped with
//!   the reason, and goes on.
//!
//! Statuses: `pending -> processing -> ingested -> checked -> analyzed -> notified`, `retrying`,
//! `failed`. While a worker holds a run it is `processing`; between nodes it reports the last
//! completed stage kind.

#[cfg(feature = "redis-broker")]
pub mod broker;
pub mod definition;
mod local;
pub mod queue;
pub mod transform;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tracing::Instrument;

pub use definition::{Definition, Node, Problem};

use crate::Tocsin;
use crate::domain::{PipelineRun, PipelineStatus, StageExecution, StageStatus, new_id};
use crate::error::{Error, ErrorKind, Result};
use crate::plugin::StageContext;
use crate::store::schema::{pipeline_runs, stage_executions};
use crate::store::update::Update;
use crate::store::{self, AnyConnection, NewPipelineRun, NewStageExecution, Snapshot, now};

/// Largest stored snapshot, in bytes of JSON; larger ones keep a preview.
pub const SNAPSHOT_LIMIT: usize = 256 * 1024;

/// How many runs a worker executes at once unless told otherwise (and as many again per worker
/// may start right after their ingest, see [`Engine::start_after_commit`]). A run mostly waits (on
/// the database's group commit, a channel's answer) and the writes of runs in flight share
/// commits: with 4 the pipeline drained a few hundred runs a second while ingest queued
/// thousands, and an alert waited seconds for its notification under load. More than 8 bought
/// no latency and cost memory: runs waiting on the local analysis held 35 MiB more at 32.
pub const DEFAULT_RUNS_PER_WORKER: usize = 8;

/// Built-in definition names, usable without storing anything.
pub const BUILTIN_DEFINITIONS: &[&str] = &["default", "checks-only"];

/// What to run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Submit {
    /// A stored (or built-in) definition; `None` is the default pipeline.
    pub definition: Option<String>,
    /// An inline definition, used when `definition` is `None` (validated at submission).
    pub inline_definition: Option<Definition>,
    /// The inbound payload (a vendor webhook body for the `ingest` node).
    pub payload: Value,
    /// The ingest driver, when known (else the `ingest` node detects it).
    pub driver: Option<String>,
    /// Where the event came from (`alertmanager`, `cli`, `tocsin-checkers`...).
    pub source: String,
    /// Environment; defaults to `TOCSIN_ENVIRONMENT`.
    pub environment: Option<String>,
    /// Trace id to continue; generated when absent.
    pub trace_id: Option<String>,
    /// The incident this run is about, when already ingested (the webhook path).
    pub incident_id: Option<i64>,
    /// Extra initial state keys (for example `"incident_change": "resolved"`).
    #[serde(default)]
    pub extra: Map<String, Value>,
}

/// The run's inbound envelope, stored in `inbound_payload`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Envelope {
    payload: Value,
    driver: Option<String>,
    incident_id: Option<i64>,
    definition: Option<Definition>,
    #[serde(default)]
    extra: Map<String, Value>,
}

/// Resolves a definition by name: built-ins first, then stored active definitions.
pub fn resolve_definition(conn: &mut AnyConnection, name: Option<&str>) -> Result<Definition> {
    match name {
        None | Some("default") => Ok(Definition::default_pipeline()),
        Some("checks-only") => Ok(checks_only()),
        Some(n) => {
            let stored = store::get_definition(conn, n)?;
            if !stored.active {
                return Err(Error::invalid_input(format!(
                    "pipeline definition {n:?} is disabled"
                )));
            }
            Definition::parse(&stored.config).map_err(|p| {
                Error::invalid_input(format!(
                    "stored definition {n:?} is invalid: {}",
                    definition::describe(&p)
                ))
            })
        }
    }
}

/// The built-in `checks-only` definition: run the checkers, nothing else.
pub fn checks_only() -> Definition {
    let mut d = Definition::default_pipeline();
    d.description = "Run the health checks only.".to_owned();
    d.nodes.retain(|n| n.kind == "context");
    if let Some(n) = d.nodes.first_mut() {
        n.next = None;
        n.required = true;
    }
    d
}

/// Queues a run inside the caller's transaction (the webhook path enqueues in the same
/// transaction that stores the alerts). Does not wake workers: call [`Engine::wake`] after commit.
pub fn enqueue_in(
    conn: &mut AnyConnection,
    tocsin: &Tocsin,
    submit: &Submit,
) -> Result<PipelineRun> {
    let queued = Queued::prepare(conn, tocsin, submit)?;
    store::insert_pipeline_run(conn, &queued.row)
}

/// A run about to be queued: its row, and what a claim in the same transaction would otherwise
/// read back (the definition, the envelope).
struct Queued {
    row: NewPipelineRun,
    envelope: Envelope,
    /// `None`: the default pipeline, built only if a claim needs it.
    definition: Option<Definition>,
}

impl Queued {
    /// Resolves and checks the definition (a stored one is read once per run queued: this runs
    /// in the ingest transaction) and builds the row.
    fn prepare(conn: &mut AnyConnection, tocsin: &Tocsin, submit: &Submit) -> Result<Self> {
        let (definition, inline) = match (&submit.definition, &submit.inline_definition) {
            (Some(name), _) => {
                let d = resolve_definition(conn, Some(name))?;
                check_valid(&d, tocsin)?;
                (Some(d), None)
            }
            (None, Some(d)) => {
                check_valid(d, tocsin)?;
                (Some(d.clone()), Some(d.clone()))
            }
            (None, None) => (None, None),
        };
        let max_retries = definition.as_ref().map_or_else(
            || definition::Defaults::default().max_retries,
            |d| d.defaults.max_retries,
        );
        let envelope = Envelope {
            payload: submit.payload.clone(),
            driver: submit.driver.clone(),
            incident_id: submit.incident_id,
            definition: inline,
            extra: submit.extra.clone(),
        };
        let row = NewPipelineRun {
            run_id: new_id(),
            trace_id: submit
                .trace_id
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(new_id),
            definition_name: submit.definition.clone(),
            incident_id: submit.incident_id,
            source: if submit.source.is_empty() {
                "unknown".to_owned()
            } else {
                submit.source.clone()
            },
            environment: submit
                .environment
                .clone()
                .unwrap_or_else(|| tocsin.config().environment.clone()),
            max_retries: i32::try_from(max_retries).unwrap_or(i32::MAX),
            inbound_payload: serde_json::to_value(&envelope)?,
        };
        Ok(Self {
            row,
            envelope,
            definition,
        })
    }
}

fn check_valid(d: &Definition, tocsin: &Tocsin) -> Result<()> {
    let problems = d.validate(tocsin.plugins());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "invalid pipeline definition: {}",
            definition::describe(&problems)
        )))
    }
}

/// Runs pipelines: submits, claims, executes, resumes.
#[derive(Clone)]
pub struct Engine {
    tocsin: Tocsin,
    worker_id: String,
    wake: Arc<Notify>,
    backoff_base: Duration,
    poll_interval: Duration,
    lease_margin: Duration,
    runs_per_worker: usize,
    /// Runs this process starts itself after the commit that queued them ([`local`]).
    local: Arc<local::LocalStarts>,
    #[cfg(feature = "redis-broker")]
    broker: Option<broker::Broker>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over a library handle.
    pub fn new(tocsin: Tocsin) -> Self {
        let worker_id = format!(
            "{}:{}:{}",
            tocsin.hostname(),
            std::process::id(),
            &new_id()[..12]
        );
        Self {
            tocsin,
            worker_id,
            wake: Arc::new(Notify::new()),
            backoff_base: Duration::from_secs(1),
            poll_interval: Duration::from_millis(500),
            lease_margin: Duration::from_secs(30),
            runs_per_worker: DEFAULT_RUNS_PER_WORKER,
            local: Arc::default(),
            #[cfg(feature = "redis-broker")]
            broker: None,
        }
    }

    /// Also delivers run ids over a Redis Stream (the database stays the source of truth).
    #[cfg(feature = "redis-broker")]
    pub fn with_broker(mut self, broker: broker::Broker) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Announces queued runs to the broker, if there is one. Best effort: workers also poll the
    /// database, so a run whose announcement failed is still executed.
    pub async fn announce(&self, run_ids: &[String]) {
        // Runs this process already started (`start_after_commit`) need no worker.
        let run_ids = self.local.not_started_here(run_ids);
        if run_ids.is_empty() {
            return;
        }
        #[cfg(feature = "redis-broker")]
        if let Some(b) = &self.broker {
            for id in &run_ids {
                if let Err(e) = b.publish(id).await {
                    tracing::warn!(run_id = %id, error = %e, "Could not announce a run on the broker; workers will find it by polling.");
                }
            }
        }
        #[cfg(not(feature = "redis-broker"))]
        let _ = run_ids;
        self.wake();
    }

    /// The base of the exponential retry backoff (default 1 s: 1, 2, 4... seconds, with jitter).
    pub fn with_backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// How many runs one worker executes at once (default 8, at least 1). A run mostly waits:
    /// on the database, on a provider's answer; running a few side by side keeps a worker busy
    /// meanwhile, and they are claimed together in one transaction.
    pub fn with_runs_per_worker(mut self, n: usize) -> Self {
        self.runs_per_worker = n.max(1);
        self
    }

    /// How often an idle worker looks for due runs it was not woken for (default 500 ms).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How long a lease outlives a node's deadline (default 30 s). A dead worker's run becomes
    /// claimable this long after the node it was running should have finished.
    pub fn with_lease_margin(mut self, margin: Duration) -> Self {
        self.lease_margin = margin;
        self
    }

    /// The library handle.
    pub fn tocsin(&self) -> &Tocsin {
        &self.tocsin
    }

    /// This engine's worker id (recorded as the lease owner).
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Wakes an idle worker of this process (after runs were queued). One, not all: each woken
    /// worker runs a claim, and the one that wins claims a batch; a worker that filled its batch
    /// wakes the next (see [`Engine::run_worker`]).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Queues a run and wakes the workers; returns it `pending`.
    pub async fn submit(&self, submit: Submit) -> Result<PipelineRun> {
        let tocsin = self.tocsin.clone();
        let run = self
            .tocsin
            .store()
            .write(move |c| enqueue_in(c, &tocsin, &submit))
            .await?;
        self.announce(std::slice::from_ref(&run.run_id)).await;
        Ok(run)
    }

    /// Queues a run and executes it here until it finishes (waiting out retry backoffs).
    pub async fn run_sync(&self, submit: Submit) -> Result<PipelineRun> {
        let run = self.submit(submit).await?;
        self.drive(&run.run_id).await
    }

    /// Makes a failed run claimable again (continuing from its first unfinished node); only one of
    /// concurrent resumes succeeds, the others get an `InvalidInput` error.
    pub async fn resume(&self, run_id: &str) -> Result<PipelineRun> {
        let id = run_id.to_owned();
        let run = self
            .tocsin
            .store()
            .write(move |c| queue::resume(c, &id))
            .await?;
        self.announce(std::slice::from_ref(&run.run_id)).await;
        Ok(run)
    }

    /// Executes one run here until it leaves the queue (finished or failed), waiting out retry
    /// backoffs; if another worker holds it, waits for that worker instead.
    pub async fn drive(&self, run_id: &str) -> Result<PipelineRun> {
        loop {
            if let Some(run) = self.claim(Some(run_id)).await? {
                self.execute(run).await?;
            }
            let id = run_id.to_owned();
            let run = self
                .tocsin
                .store()
                .run(move |c| store::get_pipeline_run(c, &id))
                .await?;
            match run.status {
                PipelineStatus::Failed => return Ok(run),
                PipelineStatus::Pending | PipelineStatus::Retrying | PipelineStatus::Processing => {
                    let wait = run
                        .next_attempt_at
                        .filter(|_| run.status != PipelineStatus::Processing)
                        .map(|t| (t - chrono::Utc::now()).to_std().unwrap_or_default())
                        .unwrap_or(Duration::from_millis(50));
                    tokio::time::sleep(
                        wait.min(Duration::from_secs(5))
                            .max(Duration::from_millis(5)),
                    )
                    .await;
                }
                _ if run.completed_at.is_some() => return Ok(run),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Claims and executes one due run; false when none was due.
    pub async fn work_once(&self) -> Result<bool> {
        match self.claim(None).await? {
            Some(run) => {
                self.execute(run).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Works until `shutdown` turns true: claims due runs and executes up to
    /// [`Engine::with_runs_per_worker`] of them at once, sleeps (asynchronously) when none is
    /// due, wakes early when this process queues one. On shutdown it finishes the runs it holds.
    pub async fn run_worker(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        tracing::info!(worker = %self.worker_id, "Pipeline worker started.");
        #[cfg(feature = "redis-broker")]
        if let Some(b) = self.broker.clone() {
            return self.run_broker_worker(b, shutdown).await;
        }
        let mut running = tokio::task::JoinSet::new();
        while !*shutdown.borrow() {
            let free = self.runs_per_worker.saturating_sub(running.len());
            // With runs in flight, claim again once a quarter of the slots is free rather than at
            // each run's end: one claim (a query and a commit) then starts several runs.
            if free == 0 || (!running.is_empty() && free < self.runs_per_worker.div_ceil(4)) {
                tokio::select! {
                    done = running.join_next() => log_finished(done),
                    changed = shutdown.changed() => if changed.is_err() { break },
                }
                continue;
            }
            // Listening starts before the claim: a run queued while the claim found nothing
            // wakes this worker at once instead of after a poll interval (a wake-up while no
            // worker waits is kept for the next one that listens).
            let woken = self.wake.notified();
            match self.claim_due(free).await {
                Ok(claims) if !claims.is_empty() => {
                    if claims.len() == free {
                        // A full batch: more may be due; another worker can take them meanwhile.
                        self.wake.notify_one();
                    }
                    for claim in claims {
                        let engine = self.clone();
                        running.spawn(async move { engine.execute(claim).await });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Pipeline worker could not claim runs; retrying.")
                }
            }
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                // A slot came free: claim again at once, runs may be waiting.
                Some(done) = running.join_next(), if !running.is_empty() => log_finished(Some(done)),
                // A dropped sender means nobody can stop us any more: stop now rather than spin.
                changed = shutdown.changed() => if changed.is_err() { break },
            }
        }
        // Runs already claimed are finished rather than left to their lease's expiry, and so
        // are the runs started here after their ingest.
        while let Some(done) = running.join_next().await {
            log_finished(Some(done));
        }
        self.local.finish().await;
        tracing::info!(worker = %self.worker_id, "Pipeline worker stopped.");
    }

    #[cfg(feature = "redis-broker")]
    async fn run_broker_worker(
        &self,
        b: broker::Broker,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut last_poll = tokio::time::Instant::now();
        let mut consumer = loop {
            match b.consumer(&self.worker_id).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot reach the broker; retrying.");
                    tokio::select! {
                        () = tokio::time::sleep(self.poll_interval) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        let block = self.poll_interval.min(Duration::from_secs(2));
        while !*shutdown.borrow() {
            let next = tokio::select! {
                r = consumer.next(block) => r,
                _ = shutdown.changed() => break,
            };
            match next {
                Ok(Some(d)) => {
                    match self.claim(Some(&d.run_id)).await {
                        Ok(Some(run)) => {
                            if let Err(e) = self.execute(run).await {
                                tracing::warn!(run_id = %d.run_id, error = %e, "Broker-delivered run failed to execute.");
                            }
                        }
                        // Not due (retry backoff) or held by another worker: the database queue has it.
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "Could not claim a broker-delivered run.")
                        }
                    }
                    if let Err(e) = b.ack(&d).await {
                        tracing::warn!(error = %e, "Could not acknowledge a broker delivery.");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Broker read failed; falling back to the database queue.");
                    tokio::time::sleep(self.poll_interval).await;
                }
            }
            // The database remains the source of truth: due retries and lost messages are found here.
            if last_poll.elapsed() >= self.poll_interval {
                last_poll = tokio::time::Instant::now();
                while let Ok(true) = self.work_once().await {}
            }
        }
        tracing::info!(worker = %self.worker_id, "Pipeline worker stopped.");
    }

    /// Starts `n` workers in this process.
    pub fn spawn_workers(
        &self,
        n: u32,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        // As many runs again may start here right after the commit that queued them.
        self.local
            .enable(usize::try_from(n).unwrap_or(0) * self.runs_per_worker);
        (0..n)
            .map(|i| {
                let mut engine = self.clone();
                engine.worker_id = format!("{}-{i}", self.worker_id);
                let rx = shutdown.clone();
                tokio::spawn(async move { engine.run_worker(rx).await })
            })
            .collect()
    }

    /// When a lease taken by a claim ends: it covers the longest node deadline, and is renewed
    /// before every node.
    fn claim_lease(&self) -> NaiveDateTime {
        lease_until(
            Duration::from_secs(definition::Defaults::default().timeout_seconds)
                + self.lease_margin,
        )
    }

    /// Claims up to `limit` due runs in one transaction.
    async fn claim_due(&self, limit: usize) -> Result<Vec<Claim>> {
        let owner = format!("{}#{}", self.worker_id, &new_id()[20..]);
        let margin = self.lease_margin;
        let until = self.claim_lease();
        let tocsin = self.tocsin.clone();
        self.tocsin
            .store()
            .write(move |c| {
                let runs = queue::claim_due(c, &owner, until, limit)?;
                runs.into_iter()
                    .map(|run| Claim::load(c, &tocsin, run, margin))
                    .collect()
            })
            .await
    }

    async fn claim(&self, run_id: Option<&str>) -> Result<Option<Claim>> {
        let owner = format!("{}#{}", self.worker_id, &new_id()[20..]);
        let margin = self.lease_margin;
        let until = self.claim_lease();
        let id = run_id.map(str::to_owned);
        let tocsin = self.tocsin.clone();
        self.tocsin
            .store()
            .write(move |c| {
                let Some(run) = queue::claim(c, &owner, until, id.as_deref())? else {
                    return Ok(None);
                };
                // Read in the claim's transaction: one round trip less per run.
                Claim::load(c, &tocsin, run, margin).map(Some)
            })
            .await
    }

    /// Executes a claimed run node by node, until it ends, waits for a retry or is lost to
    /// another worker.
    ///
    /// # Why nothing is returned
    /// Every caller reads the run again if it wants it (`drive`) or drops it; reading the whole
    /// run back at its end (its state is the largest column) was a third of the end's
    /// transaction on the writer (issue 8).
    async fn execute(&self, claim: Claim) -> Result<()> {
        let span = tracing::info_span!("pipeline_run", run_id = %claim.run.run_id, trace_id = %claim.run.trace_id);
        self.execute_inner(claim).instrument(span).await
    }

    /// Runs the nodes. A node's result is not committed on its own: it is owed
    /// ([`Deferred`]) and written in the same transaction as whatever comes next (the next
    /// node's start, the run's end), so a run of n nodes takes n + 2 transactions rather than
    /// 2n + 2. The result is still committed before the next node starts, so a worker that dies
    /// in between leaves the same traces as before: the node `running`, redone on resume.
    async fn execute_inner(&self, claim: Claim) -> Result<()> {
        let Claim {
            run,
            loaded,
            first,
            mut owed,
            mut prefetched,
            ran_last,
        } = claim;
        let store = self.tocsin.store().clone();
        let owner = run.lease_owner.clone().unwrap_or_default();
        let pk = run.id;
        let mut progress = match loaded {
            Ok(p) => p,
            Err(e) => return self.fail_run(&run, &e, None, Vec::new()).await.map(drop),
        };
        // Debug, not info: a line per run is written before its first node, on the way to the
        // notification (and at thousands of runs a second it costs more than the run's records).
        tracing::debug!(
            definition = run.definition_name.as_deref().unwrap_or("default"),
            "Executing pipeline run."
        );
        // The first node was started in the claim's transaction.
        let mut next_start = first;
        loop {
            let (step, started) = match next_start.take() {
                Some(s) => s,
                None => {
                    let Some(step) = progress.advance(&run, &mut owed) else {
                        break;
                    };
                    let until = lease_until(step.timeout + self.lease_margin);
                    let (owner2, settled) = (owner.clone(), std::mem::take(&mut owed));
                    let exec = step.exec.clone();
                    let abandoned = progress.left_running(&step.node_id);
                    let started = store
                        .write(move |c| {
                            settle(c, settled)?;
                            start_node(c, pk, &owner2, until, &exec, abandoned, None)
                        })
                        .await?;
                    (step, started)
                }
            };
            let node = progress.order[step.index].clone();
            let (attempt, failures_so_far, timeout) =
                (step.exec.attempt, step.failures_so_far, step.timeout);
            let started = match started {
                Ok(started) => started,
                Err(current) => {
                    tracing::warn!(node = %node.id, run = ?current.status, "Lost the lease of this run to another worker; stopping here.");
                    return Ok(());
                }
            };
            let t0 = std::time::Instant::now();
            let mut ctx = StageContext::new(
                self.tocsin.clone(),
                run.run_id.clone(),
                run.trace_id.clone(),
                node.id.clone(),
                attempt,
                node.config.clone(),
                progress.state.clone(),
            );
            // Only the node started in the claim's transaction has anything read ahead.
            ctx.prefetch = prefetched.take();
            let node_span =
                tracing::info_span!("node", node = %node.id, kind = %node.kind, attempt);
            let result = tokio::time::timeout(timeout, self.run_node(&node, &ctx))
                .instrument(node_span)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Timeout,
                        format!("node {:?} ran past {}s", node.id, timeout.as_secs()),
                    ))
                });
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            match result {
                Ok(output) => {
                    owed.push(
                        succeeded(&mut progress.state, &node, run.incident_id, output, ms)
                            .owed(pk, started),
                    );
                }
                Err(err) => {
                    let exec_id = started;
                    let retry_left = err.is_temporary()
                        && failures_so_far < u32::try_from(run.max_retries.max(0)).unwrap_or(0);
                    if retry_left {
                        let delay =
                            backoff(self.backoff_base, failures_so_far + 1, err.retry_after());
                        tracing::warn!(node = %node.id, error = %err, retry_in_ms = delay.as_millis() as u64, "Node failed; retry scheduled.");
                        let e2 = err.clone();
                        let settled = std::mem::take(&mut owed);
                        return store
                            .write(move |c| {
                                settle(c, settled)?;
                                finish_execution(
                                    c,
                                    exec_id,
                                    StageStatus::Failed,
                                    &Snapshot::null(),
                                    Some(&e2),
                                    None,
                                    ms,
                                )?;
                                schedule_retry(c, pk, &e2, delay)
                            })
                            .await
                            .map(drop);
                    }
                    if !node.required {
                        let reason = format!("optional node failed: {}", err.message());
                        tracing::warn!(node = %node.id, error = %err, "Optional node failed; going on.");
                        let (e2, r2) = (err.clone(), reason.clone());
                        owed.push(Box::new(move |c| {
                            finish_execution(
                                c,
                                exec_id,
                                StageStatus::Skipped,
                                &Snapshot::null(),
                                Some(&e2),
                                Some(&r2),
                                ms,
                            )
                        }));
                        note_skip(&mut progress.state, &node.id, &reason, true);
                        continue;
                    }
                    tracing::error!(node = %node.id, error = %err, "Required node failed; the run fails.");
                    return self
                        .fail_run(&run, &err, Some((exec_id, ms)), owed)
                        .await
                        .map(drop);
                }
            }
        }
        // Every node done: the run ends in the status of the last stage kind it completed.
        let final_status = progress.final_status();
        // Set by the claim (which re-read the row), so no read is needed here.
        let started_at = run.started_at;
        store
            .write(move |c| end_run(c, pk, owed, ran_last, final_status, started_at).map(drop))
            .await?;
        // Debug: at thousands of runs a second a line each is a real cost, and every run is
        // recorded; a failed run is logged where it fails.
        tracing::debug!(status = %final_status, "Pipeline run finished.");
        Ok(())
    }

    async fn run_node(&self, node: &Node, ctx: &StageContext) -> Result<Value> {
        if node.kind == "transform" {
            let cfg = transform::TransformConfig::parse(&node.config)?;
            return transform::run(&cfg, &ctx.state);
        }
        let d = self.tocsin.plugins().stages.get(&node.kind)?;
        let stage = (d.build)(&node.config, &self.tocsin.build_context())?;
        stage.execute(ctx).await
    }

    async fn fail_run(
        &self,
        run: &PipelineRun,
        err: &Error,
        exec: Option<(i64, f64)>,
        owed: Vec<Deferred>,
    ) -> Result<PipelineRun> {
        let (pk, e2) = (run.id, err.clone());
        self.tocsin
            .store()
            .write(move |c| {
                settle(c, owed)?;
                if let Some((exec_id, ms)) = exec {
                    finish_execution(
                        c,
                        exec_id,
                        StageStatus::Failed,
                        &Snapshot::null(),
                        Some(&e2),
                        None,
                        ms,
                    )?;
                }
                let t = now();
                diesel::update(pipeline_runs::table.find(pk))
                    .set((
                        pipeline_runs::status.eq(PipelineStatus::Failed.as_str()),
                        pipeline_runs::last_error_type.eq(Some(e2.kind().as_str())),
                        pipeline_runs::last_error_message.eq(Some(e2.message())),
                        pipeline_runs::last_error_retryable.eq(e2.is_temporary()),
                        pipeline_runs::completed_at.eq(Some(t)),
                        pipeline_runs::updated_at.eq(t),
                        pipeline_runs::lease_owner.eq(None::<String>),
                        pipeline_runs::lease_expires_at.eq(None::<NaiveDateTime>),
                        pipeline_runs::next_attempt_at.eq(None::<NaiveDateTime>),
                    ))
                    .execute(c)?;
                load_run(c, pk)
            })
            .await
    }
}

/// Logs how a run a worker spawned ended, when it ended in an error the run could not record.
fn log_finished(done: Option<std::result::Result<Result<()>, tokio::task::JoinError>>) {
    match done {
        Some(Ok(Err(e))) => {
            tracing::warn!(error = %e, "A pipeline run could not be recorded; its lease will expire and another worker will take it.")
        }
        Some(Err(e)) => tracing::error!(error = %e, "A pipeline run's task failed."),
        Some(Ok(Ok(_))) | None => {}
    }
}

/// A record the engine owes the database, written in its next transaction.
type Deferred = Box<dyn FnOnce(&mut AnyConnection) -> Result<()> + Send>;

/// Writes what is owed, in the caller's transaction.
fn settle(c: &mut AnyConnection, owed: Vec<Deferred>) -> Result<()> {
    owed.into_iter().try_for_each(|write| write(c))
}

/// A node skipped by a skip control: an attempt recorded as skipped, with the reason.
fn skip_record(
    run: &PipelineRun,
    node: &Node,
    attempt: i32,
    state: &Value,
    reason: &str,
) -> Deferred {
    let exec = NewStageExecution {
        pipeline_run_id: run.id,
        node_id: node.id.clone(),
        stage: node.kind.clone(),
        attempt,
        status: StageStatus::Skipped,
        idempotency_key: format!("{}:{}", run.run_id, node.id),
        input_snapshot: bound(state),
    };
    let reason = reason.to_owned();
    Box::new(move |c| {
        store::insert_finished_stage_execution(c, &exec, &Snapshot::null(), Some(&reason), 0.0)
            .map(drop)
    })
}

/// A claimed run with what executing it needs, read in the claim's transaction.
struct Claim {
    run: PipelineRun,
    /// Where the run stands; an error (no definition) fails the run.
    loaded: Result<Progress>,
    /// The first node to run, already started in the claim's transaction (saving one).
    first: Option<(NodeStart, StartResult)>,
    /// Records of nodes skipped before there was a node to start.
    owed: Vec<Deferred>,
    /// What the first node read ahead in the claim's transaction ([`crate::plugin::Stage::read_ahead`]).
    prefetched: Option<crate::plugin::Prefetched>,
    /// The last node run in the claim's transaction when no node followed it: recorded as the
    /// run's stage with the run's end.
    ran_last: Option<String>,
}

/// A started attempt's id, or the run as it is when this worker lost its lease.
type StartResult = std::result::Result<i64, PipelineRun>;

impl Claim {
    /// Reads the definition and earlier attempts and starts the first node to run, all in the
    /// claim's transaction; nodes before it that need no I/O run there too.
    fn load(
        c: &mut AnyConnection,
        tocsin: &Tocsin,
        run: PipelineRun,
        lease_margin: Duration,
    ) -> Result<Self> {
        let envelope: Envelope =
            serde_json::from_value(run.inbound_payload.clone()).unwrap_or_default();
        let loaded = (|| {
            let def = match &envelope.definition {
                Some(d) if run.definition_name.is_none() => d.clone(),
                _ => resolve_definition(c, run.definition_name.as_deref())?,
            };
            let executions = store::list_stage_executions(c, run.id)?;
            Ok(Progress::new(&run, &envelope, def, executions))
        })();
        Self::begin(c, tocsin, run, loaded, lease_margin)
    }

    /// Like [`Claim::load`] for a run queued and claimed in the transaction still open on `c`:
    /// its definition and envelope are those just written, and it has no earlier attempts, so
    /// nothing is read back.
    fn fresh(
        c: &mut AnyConnection,
        tocsin: &Tocsin,
        run: PipelineRun,
        queued: Queued,
        lease_margin: Duration,
    ) -> Result<Self> {
        let def = queued
            .definition
            .unwrap_or_else(Definition::default_pipeline);
        let progress = Progress::new(&run, &queued.envelope, def, Vec::new());
        let mut claim = Self::begin(c, tocsin, run, Ok(progress), lease_margin)?;
        if let (Some((step, Ok(_))), Ok(progress)) = (&claim.first, &claim.loaded) {
            let node = &progress.order[step.index];
            claim.prefetched = prefetch(
                c,
                tocsin,
                &claim.run,
                node,
                step.exec.attempt,
                &progress.state,
            );
        }
        Ok(claim)
    }

    /// Starts the first node to run, running before it, in this transaction, the nodes that need
    /// no I/O.
    fn begin(
        c: &mut AnyConnection,
        tocsin: &Tocsin,
        run: PipelineRun,
        loaded: Result<Progress>,
        lease_margin: Duration,
    ) -> Result<Self> {
        let mut claim = Self {
            run,
            loaded,
            first: None,
            owed: Vec::new(),
            prefetched: None,
            ran_last: None,
        };
        let Ok(progress) = &mut claim.loaded else {
            return Ok(claim);
        };
        let owner = claim.run.lease_owner.clone().unwrap_or_default();
        let pk = claim.run.id;
        // The last node run here and the run's status after it: written with the next node's
        // start, or on their own when no node follows.
        let mut ran: Option<(String, Option<PipelineStatus>)> = None;
        loop {
            let Some(step) = progress.advance(&claim.run, &mut claim.owed) else {
                claim.ran_last = ran.map(|(stage, _)| stage);
                return Ok(claim);
            };
            settle(c, std::mem::take(&mut claim.owed))?;
            let abandoned = progress.left_running(&step.node_id);
            // A node that needs no I/O runs before anything is written for it (the claim holds
            // the lease it took in this transaction): its attempt is inserted finished, one
            // statement where a start and a finish took two, and the run's status goes with the
            // next node's start.
            let node = &progress.order[step.index];
            let t0 = std::time::Instant::now();
            let inline = if abandoned {
                None
            } else {
                inline_output(tocsin, &claim.run, node, step.exec.attempt, &progress.state)
            };
            if let Some(output) = inline {
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                let node = node.clone();
                let done = succeeded(
                    &mut progress.state,
                    &node,
                    claim.run.incident_id,
                    output,
                    ms,
                );
                let exec = NewStageExecution {
                    status: done.exec_status,
                    ..step.exec
                };
                let skip = done.skip_reason.as_deref();
                store::insert_finished_stage_execution(c, &exec, &done.snap, skip, ms)?;
                link_incident(c, pk, done.link)?;
                let status = done.status.or(ran.and_then(|(_, s)| s));
                ran = Some((node.id, status));
                continue;
            }
            let until = lease_until(step.timeout + lease_margin);
            let status = ran.take().and_then(|(_, s)| s);
            let started = start_node(c, pk, &owner, until, &step.exec, abandoned, status)?;
            claim.first = Some((step, started));
            return Ok(claim);
        }
    }

    /// Ends the run in the claim's transaction, still open on `c`, when nothing is left to run
    /// outside it (every node ran there: a definition of `ingest` alone); returns the run as
    /// ended, or `None` when a node waits to run.
    ///
    /// # Why
    /// Such a run has nothing to wait for, and its end in a transaction of its own (a task on
    /// the runtime, a write and a commit share) cost a third of what storing its alert did.
    fn end_here(&mut self, c: &mut AnyConnection) -> Result<Option<PipelineRun>> {
        let (None, Ok(progress)) = (&self.first, &self.loaded) else {
            return Ok(None);
        };
        if progress.next < progress.order.len() {
            return Ok(None);
        }
        let status = progress.final_status();
        let stage = self.ran_last.take();
        let owed = std::mem::take(&mut self.owed);
        let (t, total) = end_run(
            c,
            self.run.id,
            owed,
            stage.clone(),
            status,
            self.run.started_at,
        )?;
        let mut run = self.run.clone();
        run.status = status;
        if stage.is_some() {
            run.current_stage = stage;
        }
        run.completed_at = Some(store::ts(t));
        run.updated_at = store::ts(t);
        run.total_duration_ms = total;
        run.lease_owner = None;
        run.lease_expires_at = None;
        run.next_attempt_at = None;
        tracing::debug!(run_id = %run.run_id, trace_id = %run.trace_id, status = %status, "Pipeline run finished in the transaction that queued it.");
        Ok(Some(run))
    }
}

/// Ends run `pk`, every node done: settles what is still owed and records `status` (and
/// `stage`, the last node, when no node's start recorded it), the end and the time since
/// `started_at`, giving up the lease. Returns the end and the run's duration in ms.
fn end_run(
    c: &mut AnyConnection,
    pk: i64,
    owed: Vec<Deferred>,
    stage: Option<String>,
    status: PipelineStatus,
    started_at: Option<DateTime<Utc>>,
) -> Result<(NaiveDateTime, Option<f64>)> {
    settle(c, owed)?;
    let t = now();
    let total =
        started_at.map(|s| (t - s.naive_utc()).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    let mut u = Update::by_id("pipeline_runs", pk)
        .set(pipeline_runs::status, status.as_str())
        .set(pipeline_runs::completed_at, Some(t))
        .set(pipeline_runs::updated_at, t)
        .set(pipeline_runs::total_duration_ms, total)
        .set(pipeline_runs::lease_owner, None::<&str>)
        .set(pipeline_runs::lease_expires_at, None::<NaiveDateTime>)
        .set(pipeline_runs::next_attempt_at, None::<NaiveDateTime>);
    if let Some(stage) = &stage {
        u = u.set(pipeline_runs::current_stage, Some(stage.as_str()));
    }
    u.execute(c)?;
    Ok((t, total))
}

/// Where a run stands: its definition's nodes in execution order, the attempts of earlier
/// claims, the state rebuilt from what they finished, and the next node to look at.
struct Progress {
    def: Definition,
    order: Vec<Node>,
    executions: Vec<StageExecution>,
    state: Value,
    next: usize,
}

/// The next node to run and the attempt to record for it.
struct NodeStart {
    index: usize,
    node_id: String,
    exec: NewStageExecution,
    failures_so_far: u32,
    timeout: Duration,
}

impl Progress {
    /// Whether an earlier claim left an attempt of this node `running` (its worker died holding
    /// the lease). Only attempts read at the claim count: this claim's own are settled before the
    /// next node starts.
    fn left_running(&self, node_id: &str) -> bool {
        self.executions
            .iter()
            .any(|e| e.node_id == node_id && e.status == StageStatus::Running)
    }

    fn new(
        run: &PipelineRun,
        envelope: &Envelope,
        def: Definition,
        executions: Vec<StageExecution>,
    ) -> Self {
        let mut state = initial_state(run, envelope);
        let order: Vec<Node> = def.execution_order().into_iter().cloned().collect();
        // Replay what earlier attempts finished: their outputs rebuild the state.
        for node in &order {
            let mut execs = executions.iter().filter(|e| e.node_id == node.id);
            if let Some(done) = execs.clone().find(|e| e.status == StageStatus::Succeeded) {
                merge_output(&mut state, &node.id, &done.output_snapshot);
            } else if let Some(skipped) = execs.find(|e| e.status == StageStatus::Skipped) {
                // A node skipped by a skip control still produced output (skipped checks...).
                if skipped
                    .output_snapshot
                    .as_object()
                    .is_some_and(|o| !o.is_empty())
                {
                    merge_output(&mut state, &node.id, &skipped.output_snapshot);
                }
                note_skip(
                    &mut state,
                    &node.id,
                    skipped.skip_reason.as_deref().unwrap_or("skipped"),
                    skipped.error_message.is_some(),
                );
            }
        }
        Self {
            def,
            order,
            executions,
            state,
            next: 0,
        }
    }

    /// The status a run ends in once every node is done: that of the last stage kind it
    /// completed (`notified` when no node's kind sets one).
    fn final_status(&self) -> PipelineStatus {
        self.order
            .iter()
            .rev()
            .filter_map(|n| definition::status_after(&n.kind).map(|s| (n, s)))
            .find(|(n, _)| self.state.get("nodes").and_then(|m| m.get(&n.id)).is_some())
            .map(|(_, s)| s)
            .unwrap_or(PipelineStatus::Notified)
    }

    /// Moves to the next node to run, passing nodes earlier attempts finished; a node skipped
    /// by `skip_if_errors` on the way is owed as a record. `None`: every node is done.
    fn advance(&mut self, run: &PipelineRun, owed: &mut Vec<Deferred>) -> Option<NodeStart> {
        while self.next < self.order.len() {
            let index = self.next;
            self.next += 1;
            let node = &self.order[index];
            let mine: Vec<&StageExecution> = self
                .executions
                .iter()
                .filter(|e| e.node_id == node.id)
                .collect();
            if mine
                .iter()
                .any(|e| matches!(e.status, StageStatus::Succeeded | StageStatus::Skipped))
            {
                continue;
            }
            let attempt = mine.iter().map(|e| e.attempt).max().unwrap_or(0) + 1;
            let since = run.resumed_at;
            let failures_so_far = mine
                .iter()
                .filter(|e| e.status == StageStatus::Failed || e.status == StageStatus::Running)
                .filter(|e| since.is_none_or(|s| e.started_at.is_some_and(|st| st >= s)))
                .count() as u32;
            let has_errors = self
                .state
                .get("errors")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty());
            if node.skip_if_errors && has_errors {
                let reason = "skipped because an earlier node failed (skip_if_errors)".to_owned();
                owed.push(skip_record(run, node, attempt, &self.state, &reason));
                note_skip(&mut self.state, &node.id, &reason, false);
                continue;
            }
            return Some(NodeStart {
                index,
                node_id: node.id.clone(),
                exec: NewStageExecution {
                    pipeline_run_id: run.id,
                    node_id: node.id.clone(),
                    stage: node.kind.clone(),
                    attempt,
                    status: StageStatus::Running,
                    idempotency_key: format!("{}:{}", run.run_id, node.id),
                    input_snapshot: bound(&self.state),
                },
                failures_so_far,
                timeout: Duration::from_secs(self.def.defaults.timeout_seconds.max(1)),
            });
        }
        None
    }
}

/// A node's success: merges its output into the run state and returns what is to be recorded
/// (its execution's end, the run's status, the incident it names). `claimed_incident`: the
/// incident the run was claimed with.
fn succeeded(
    state: &mut Value,
    node: &Node,
    claimed_incident: Option<i64>,
    output: Value,
    ms: f64,
) -> Success {
    let output = if output.is_object() {
        output
    } else {
        json!({ "value": output })
    };
    merge_output(state, &node.id, &output);
    // A stage that did nothing because of a skip control says so: recorded as skipped with its
    // reason, its output still handed on.
    let skip_reason = output
        .get("skip_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (exec_status, status) = match &skip_reason {
        Some(_) => (StageStatus::Skipped, None),
        None => (StageStatus::Succeeded, definition::status_after(&node.kind)),
    };
    let snap = bound(&output);
    // The run links the first incident a node names. One it was claimed with is linked already
    // (the webhook's `ingest` node names the incident its run was queued for), so no statement.
    let link = snap
        .value()
        .get("incident_id")
        .and_then(Value::as_i64)
        .filter(|id| Some(*id) != claimed_incident);
    tracing::debug!(node = %node.id, duration_ms = ms, "Node succeeded.");
    Success {
        exec_status,
        snap,
        skip_reason,
        status,
        link,
        ms,
    }
}

/// What a node's success leaves to record.
struct Success {
    exec_status: StageStatus,
    snap: Snapshot,
    skip_reason: Option<String>,
    /// The run's status after this node, if its kind sets one.
    status: Option<PipelineStatus>,
    /// An incident to link the run to.
    link: Option<i64>,
    ms: f64,
}

impl Success {
    /// The records still owed for a started attempt `exec_id` of run `pk`: its end, then the
    /// run's status and incident.
    fn owed(self, pk: i64, exec_id: i64) -> Deferred {
        Box::new(move |c| {
            finish_execution(
                c,
                exec_id,
                self.exec_status,
                &self.snap,
                None,
                self.skip_reason.as_deref(),
                self.ms,
            )?;
            if let Some(s) = self.status {
                Update::by_id("pipeline_runs", pk)
                    .set(pipeline_runs::status, s.as_str())
                    .set(pipeline_runs::updated_at, now())
                    .execute(c)?;
            }
            link_incident(c, pk, self.link)
        })
    }
}

/// Links run `pk` to `incident`, unless it names one already.
fn link_incident(c: &mut AnyConnection, pk: i64, incident: Option<i64>) -> Result<()> {
    if let Some(id) = incident {
        Update::by_id("pipeline_runs", pk)
            .set(pipeline_runs::incident_id, Some(id))
            .filter_null(pipeline_runs::incident_id)
            .execute(c)?;
    }
    Ok(())
}

/// The output of a node whose stage can tell it without I/O ([`Stage::execute_inline`]); `None`
/// when it cannot (the node then runs as usual, where its errors are handled).
///
/// [`Stage::execute_inline`]: crate::plugin::Stage::execute_inline
fn inline_output(
    tocsin: &Tocsin,
    run: &PipelineRun,
    node: &Node,
    attempt: i32,
    state: &Value,
) -> Option<Value> {
    let (stage, ctx) = stage_for(tocsin, run, node, attempt, state)?;
    stage.execute_inline(&ctx)
}

/// `node`'s stage and the context of this attempt, for what a claim runs of it in its own
/// transaction; `None` for a `transform` node or a stage that cannot be built (the node then
/// runs as usual, where its errors are handled).
fn stage_for(
    tocsin: &Tocsin,
    run: &PipelineRun,
    node: &Node,
    attempt: i32,
    state: &Value,
) -> Option<(Arc<dyn crate::plugin::Stage>, StageContext)> {
    if node.kind == "transform" {
        return None;
    }
    let d = tocsin.plugins().stages.get(&node.kind).ok()?;
    let stage = (d.build)(&node.config, &tocsin.build_context()).ok()?;
    let ctx = StageContext::new(
        tocsin.clone(),
        run.run_id.clone(),
        run.trace_id.clone(),
        node.id.clone(),
        attempt,
        node.config.clone(),
        state.clone(),
    );
    Some((stage, ctx))
}

/// What `node`'s stage reads ahead in the claim's transaction ([`crate::plugin::Stage::read_ahead`]).
/// On PostgreSQL in a savepoint, so that a failed read cannot abort the transaction that stores
/// the webhook; a failure only means the stage reads for itself.
fn prefetch(
    c: &mut AnyConnection,
    tocsin: &Tocsin,
    run: &PipelineRun,
    node: &Node,
    attempt: i32,
    state: &Value,
) -> Option<crate::plugin::Prefetched> {
    let (stage, ctx) = stage_for(tocsin, run, node, attempt, state)?;
    let read = stage.read_ahead(&ctx)?;
    let read = match c {
        AnyConnection::Sqlite(_) => read(c),
        AnyConnection::Postgres(_) => c.transaction(read),
    };
    read.inspect_err(|e| {
        tracing::debug!(node = %node.id, error = %e, "A read ahead failed; the node reads for itself.");
    })
    .ok()
}

/// Records the start of a node's attempt if `owner` still holds the run's lease (extending it
/// to `until`); otherwise returns the run as it is. `abandoned`: an earlier claim left an attempt
/// of this node `running` (see [`Progress::left_running`]), to be marked failed.
fn start_node(
    c: &mut AnyConnection,
    pk: i64,
    owner: &str,
    until: NaiveDateTime,
    exec: &NewStageExecution,
    abandoned: bool,
    status: Option<PipelineStatus>,
) -> Result<StartResult> {
    // Renews the lease and names the stage (and sets the status the nodes run before it left)
    // in one statement; no row: the lease was lost.
    let t = now();
    let node_id = exec.node_id.as_str();
    let mut renew = Update::by_id("pipeline_runs", pk)
        .set(pipeline_runs::lease_expires_at, Some(until))
        .set(pipeline_runs::current_stage, Some(node_id))
        .set(pipeline_runs::updated_at, t);
    if let Some(s) = status {
        renew = renew.set(pipeline_runs::status, s.as_str());
    }
    let renewed = renew
        .filter_eq(pipeline_runs::lease_owner, owner)
        .execute(c)?;
    if renewed != 1 {
        return Ok(Err(load_run(c, pk)?));
    }
    if abandoned {
        // An attempt left `running` belongs to a worker that died holding the lease.
        diesel::update(
            stage_executions::table
                .filter(stage_executions::pipeline_run_id.eq(pk))
                .filter(stage_executions::node_id.eq(node_id))
                .filter(stage_executions::status.eq(StageStatus::Running.as_str())),
        )
        .set((
            stage_executions::status.eq(StageStatus::Failed.as_str()),
            stage_executions::error_type.eq(Some("abandoned")),
            stage_executions::error_message.eq(Some(
                "the worker running this attempt stopped before it finished",
            )),
            stage_executions::error_retryable.eq(true),
            stage_executions::completed_at.eq(Some(t)),
        ))
        .execute(c)?;
    }
    store::insert_stage_execution(c, exec).map(Ok)
}

fn lease_until(d: Duration) -> NaiveDateTime {
    now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(300))
}

fn load_run(conn: &mut AnyConnection, pk: i64) -> Result<PipelineRun> {
    store::direct!(conn, |c| pipeline_runs::table
        .find(pk)
        .select(pipeline_runs::all_columns)
        // Not `first`: its bound `LIMIT` makes SQLite prepare the statement again on every call.
        .get_result::<store::rows::PipelineRunRow>(c))?
    .try_into()
}

fn finish_execution(
    c: &mut AnyConnection,
    exec_id: i64,
    status: StageStatus,
    output: &Snapshot,
    err: Option<&Error>,
    skip_reason: Option<&str>,
    ms: f64,
) -> Result<()> {
    Update::by_id("stage_executions", exec_id)
        .set(stage_executions::status, status.as_str())
        .set(stage_executions::output_snapshot, output.as_str())
        .set(stage_executions::error_type, err.map(|e| e.kind().as_str()))
        .set(stage_executions::error_message, err.map(Error::message))
        .set(
            stage_executions::error_retryable,
            err.is_some_and(Error::is_temporary),
        )
        .set(stage_executions::skip_reason, skip_reason)
        .set(stage_executions::completed_at, Some(now()))
        .set(stage_executions::duration_ms, Some(ms))
        .execute(c)?;
    Ok(())
}

fn schedule_retry(
    c: &mut AnyConnection,
    pk: i64,
    err: &Error,
    delay: Duration,
) -> Result<PipelineRun> {
    let t = now();
    let at = t + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(60));
    diesel::update(pipeline_runs::table.find(pk))
        .set((
            pipeline_runs::status.eq(PipelineStatus::Retrying.as_str()),
            pipeline_runs::next_attempt_at.eq(Some(at)),
            pipeline_runs::last_error_type.eq(Some(err.kind().as_str())),
            pipeline_runs::last_error_message.eq(Some(err.message())),
            pipeline_runs::last_error_retryable.eq(true),
            pipeline_runs::lease_owner.eq(None::<String>),
            pipeline_runs::lease_expires_at.eq(None::<NaiveDateTime>),
            pipeline_runs::updated_at.eq(t),
        ))
        .execute(c)?;
    load_run(c, pk)
}

/// Exponential backoff with ±25 % jitter, at least what the remote side asked for, at most 5 min.
pub fn backoff(base: Duration, failure: u32, retry_after: Option<Duration>) -> Duration {
    let exp = base.saturating_mul(1u32 << failure.saturating_sub(1).min(16));
    let jitter = rand::rng().random_range(0.75..=1.25);
    let d = exp.mul_f64(jitter).min(Duration::from_secs(300));
    retry_after.map_or(d, |r| d.max(r.min(Duration::from_secs(3600))))
}

fn initial_state(run: &PipelineRun, env: &Envelope) -> Value {
    let mut s = json!({
        "payload": env.payload,
        "driver": env.driver,
        "incident_id": env.incident_id,
        "incident_ids": env.incident_id.map(|i| vec![i]).unwrap_or_default(),
        "checks": [],
        "recommendations": [],
        "nodes": {},
        "errors": [],
        "run": {"run_id": run.run_id, "trace_id": run.trace_id, "source": run.source, "environment": run.environment},
    });
    if let Some(obj) = s.as_object_mut() {
        for (k, v) in &env.extra {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    s
}

/// Keys of a node's output that are lifted into the run state.
pub const LIFTED_KEYS: &[&str] = &["incident_id", "incident_ids", "checks", "recommendations"];

fn merge_output(state: &mut Value, node_id: &str, output: &Value) {
    let Some(s) = state.as_object_mut() else {
        return;
    };
    if let Some(out) = output.as_object() {
        for key in LIFTED_KEYS {
            if let Some(v) = out.get(*key) {
                s.insert((*key).to_owned(), v.clone());
            }
        }
    }
    if let Some(Value::Object(nodes)) = s.get_mut("nodes") {
        nodes.insert(node_id.to_owned(), output.clone());
    }
}

fn note_skip(state: &mut Value, node_id: &str, reason: &str, is_error: bool) {
    if !is_error {
        return;
    }
    if let Some(Value::Array(errors)) = state.get_mut("errors") {
        errors.push(json!({"node": node_id, "reason": reason}));
    }
}

/// A snapshot no larger than [`SNAPSHOT_LIMIT`]: secrets redacted; an oversized value keeps a
/// preview and its size.
pub fn bound(value: &Value) -> Snapshot {
    let full = Snapshot::redacted(value);
    let text = full.as_str();
    if text.len() <= SNAPSHOT_LIMIT {
        return full;
    }
    let mut cut = 4096.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    // A cut of redacted text holds no secret.
    Snapshot::of_redacted(json!({"truncated": true, "bytes": text.len(), "preview": &text[..cut]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_honours_retry_after() {
        let base = Duration::from_millis(100);
        for _ in 0..50 {
            let d1 = backoff(base, 1, None);
            let d3 = backoff(base, 3, None);
            assert!(
                d1 >= Duration::from_millis(75) && d1 <= Duration::from_millis(125),
                "{d1:?}"
            );
            assert!(
                d3 >= Duration::from_millis(300) && d3 <= Duration::from_millis(500),
                "{d3:?}"
            );
        }
        assert!(backoff(base, 1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        assert!(backoff(Duration::from_secs(1), 30, None) <= Duration::from_secs(300));
    }

    #[test]
    fn snapshots_are_bounded_and_redacted() {
        let big = json!({"blob": "x".repeat(SNAPSHOT_LIMIT * 2)});
        let b = bound(&big);
        assert_eq!(b.value()["truncated"], true);
        assert_eq!(b.value()["bytes"], SNAPSHOT_LIMIT * 2 + 11);
        assert!(b.value()["preview"].as_str().unwrap().len() <= 4096);
        assert!(b.as_str().len() < 4096 + 100, "{}", b.as_str().len());
        // What is stored is the text of what the caller sees.
        assert_eq!(
            serde_json::from_str::<Value>(b.as_str()).unwrap(),
            *b.value()
        );
        let small = bound(&json!({"api_key": "k", "n": [1, 2]}));
        assert_eq!(small.value()["api_key"], "**REDACTED**");
        assert_eq!(small.as_str(), r#"{"api_key":"**REDACTED**","n":[1,2]}"#);
    }
}
