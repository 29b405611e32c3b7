//! Runs started by the process that queued them, the moment the transaction that queued them
//! commits, instead of waiting for a worker to find them.
//!
//! # Why
//! A worker finds a run by a claim: a wake-up, a query over the queue and a commit of its own,
//! before the first node can start. When the webhook that queued the run arrives at a process
//! whose workers have room, [`Engine::start_after_commit`] claims the run inside the webhook's
//! transaction and starts its first node there too; the store hands the claim to this process's
//! runtime once that transaction committed ([`crate::store::after_commit`]). Nothing changes for
//! durability: the run is stored, claimed and leased exactly as a worker would have it, so if
//! this process dies before finishing it, the lease runs out and any worker takes it over. When
//! the workers are full (or there are none here), the run simply stays queued.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Claim, Engine, Queued, queue};
use crate::domain::PipelineRun;
use crate::error::Result;
use crate::store::{self, AnyConnection};

/// Announcements remembered at most: an entry outlives its run only when its announcement never
/// came (the request was dropped), and then it only spares a worker one wake-up.
const MAX_REMEMBERED: usize = 4096;

/// The state of local starts one engine (and its clones) shares.
#[derive(Debug)]
pub(super) struct LocalStarts {
    /// Runs started this way that may execute at once; none until workers start here.
    permits: Arc<Semaphore>,
    /// Permits ever added, so that shutdown can wait for all of them.
    total: std::sync::atomic::AtomicU32,
    /// The runtime the runs execute on (the one the workers were started on).
    runtime: OnceLock<tokio::runtime::Handle>,
    /// Ids of runs started here whose announcement is still to come: it wakes no worker.
    started: Mutex<HashSet<String>>,
}

impl Default for LocalStarts {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(0)),
            total: Default::default(),
            runtime: OnceLock::new(),
            started: Mutex::default(),
        }
    }
}

impl LocalStarts {
    /// Lets `n` more runs start here at once, on the current runtime.
    pub(super) fn enable(&self, n: usize) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let _ = self.runtime.set(handle);
        let n = u32::try_from(n).unwrap_or(u32::MAX / 2);
        self.permits.add_permits(n as usize);
        self.total.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits until no run started here is executing.
    pub(super) async fn finish(&self) {
        let n = self.total.load(std::sync::atomic::Ordering::SeqCst);
        if n > 0 {
            let _ = self.permits.acquire_many(n).await;
        }
    }

    /// The ids of `run_ids` a worker must be told about: those not started here.
    pub(super) fn not_started_here<'a>(&self, run_ids: &'a [String]) -> Vec<&'a String> {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if started.is_empty() {
            return run_ids.iter().collect();
        }
        run_ids.iter().filter(|id| !started.remove(*id)).collect()
    }

    fn remember(&self, run_id: String) {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if started.len() >= MAX_REMEMBERED {
            started.clear();
        }
        started.insert(run_id);
    }
}

impl Engine {
    /// Claims `run`, queued in the write running on this thread, for this process, and starts it
    /// here as soon as that write commits (it is dropped with the write if the write rolls back).
    /// False when it does not: no workers run in this process, they are all busy, or no
    /// [`crate::store::Store::write`] is running on this thread; the run then stays queued for
    /// any worker. See the module documentation.
    pub fn start_after_commit(&self, conn: &mut AnyConnection, run: &PipelineRun) -> Result<bool> {
        let Some(slot) = self.local_slot() else {
            return Ok(false);
        };
        let owner = format!("{}#local#{}", self.worker_id, run.id);
        let until = self.claim_lease();
        let Some(claimed) = queue::claim_queued(conn, run.id, &owner, until)? else {
            return Ok(false);
        };
        let mut claim = Claim::load(conn, &self.tocsin, claimed, self.lease_margin)?;
        if let Some(done) = claim.end_here(conn)? {
            self.ended_here(done.run_id);
            return Ok(true);
        }
        Ok(self.run_after_commit(slot, claim))
    }

    /// Queues a run of `submit` in the write running on this thread, like
    /// [`super::enqueue_in`], and when [`Engine::start_after_commit`] would start it, stores it
    /// claimed at once and starts it the same way; nothing it wrote is read back. Returns the run
    /// as stored.
    pub fn enqueue_and_start(
        &self,
        conn: &mut AnyConnection,
        submit: &super::Submit,
    ) -> Result<PipelineRun> {
        let queued = Queued::prepare(conn, &self.tocsin, submit)?;
        let Some(slot) = self.local_slot() else {
            return store::insert_pipeline_run(conn, &queued.row);
        };
        let owner = format!("{}#local#{}", self.worker_id, queued.row.run_id);
        let run =
            store::insert_claimed_pipeline_run(conn, &queued.row, &owner, self.claim_lease())?;
        let mut claim = Claim::fresh(conn, &self.tocsin, run.clone(), queued, self.lease_margin)?;
        if let Some(done) = claim.end_here(conn)? {
            self.ended_here(done.run_id.clone());
            return Ok(done);
        }
        self.run_after_commit(slot, claim);
        Ok(run)
    }

    /// A run that ended in the write that queued it (every node ran there): its announcement,
    /// once that write commits, wakes no worker. Its slot is given back at once.
    fn ended_here(&self, run_id: String) {
        let local = self.local.clone();
        store::after_commit(move || local.remember(run_id));
    }

    /// Room to start a run here: the runtime and a permit; `None` outside a write, without
    /// workers here, or when they are all busy.
    fn local_slot(&self) -> Option<(tokio::runtime::Handle, OwnedSemaphorePermit)> {
        let runtime = self.local.runtime.get().cloned()?;
        if !store::in_write() {
            return None;
        }
        let permit = self.local.permits.clone().try_acquire_owned().ok()?;
        Some((runtime, permit))
    }

    /// Hands `claim` to the runtime once the write on this thread commits. A claim whose write
    /// ran on no such thread (false) is left to its lease: a worker takes it when it runs out.
    fn run_after_commit(
        &self,
        (runtime, permit): (tokio::runtime::Handle, OwnedSemaphorePermit),
        claim: Claim,
    ) -> bool {
        let (engine, local, run_id) = (self.clone(), self.local.clone(), claim.run.run_id.clone());
        store::after_commit(move || {
            local.remember(run_id);
            runtime.spawn(async move {
                let _permit = permit;
                if let Err(e) = engine.execute(claim).await {
                    tracing::warn!(error = %e, "A run started after its ingest could not finish here; its lease will let a worker take it over.");
                }
            });
        })
    }
}
