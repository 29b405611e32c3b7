//! [`Seen`]: what one process knows about the alerts it recently stored, so that an identical
//! re-send is answered from a read, without a write transaction of its own.
//!
//! # Why
//! Sources re-send every firing alert again and again (Prometheus on every evaluation,
//! Alertmanager on every group interval), so most webhooks of a steady system change nothing.
//! Through the write path each such re-send cost a transaction on the writer: the lookup, a
//! savepoint, an `UPDATE` of `updated_at` and the wait for a commit, about two thirds of the
//! machine's time per re-send (issue 8). Read on a pooled connection and compared there, a
//! re-send that changes nothing needs no transaction; what it still writes is the alert's
//! last-seen time, and that is batched here.
//!
//! # What is and is not deferred
//! Only `updated_at` of alerts that a committed read found identical to the re-send. The alert,
//! its incident and every material change are written and committed before their webhook is
//! answered, as always; a re-send's answer reports the alert as the database holds it. The
//! stamps wait at most [`SEEN_FLUSH_EVERY`] and are written at once by [`Store::flush_seen`]
//! (a clean shutdown calls it); a flush that fails keeps them for the next one. A process killed
//! in between loses the last-seen times of that moment, never an alert. A stamp never moves
//! `updated_at` back.
//!
//! # The hint
//! A read per webhook would cost every first-seen alert a wasted round on the pool. The hint is a
//! fixed table of hashes of the alerts this process stored or found (direct-mapped, 64 Ki slots,
//! half a MiB): "maybe stored" sends a webhook to the read, anything else straight to the write.
//! It is only a hint; the read decides. An alert another process stored, or one pushed out of its
//! slot, takes the write path once and is remembered again.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;

use super::{AnyConnection, Store};
use crate::error::Result;

/// How long an identical re-send's last-seen time waits before it is written.
pub const SEEN_FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Slots of the hint (a power of two).
const HINT_SLOTS: usize = 1 << 16;

/// The process's hint and pending last-seen stamps; one per [`Store`].
pub(super) struct Seen {
    hint: Box<[AtomicU64]>,
    hasher: std::hash::RandomState,
    pending: Mutex<HashMap<i64, NaiveDateTime>>,
    /// A flush is scheduled (a task sleeping until it writes the pending stamps).
    scheduled: AtomicBool,
}

impl Seen {
    pub(super) fn new() -> Self {
        Self {
            hint: (0..HINT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::hash::RandomState::new(),
            pending: Mutex::new(HashMap::new()),
            scheduled: AtomicBool::new(false),
        }
    }

    fn hash(&self, source: &str, fingerprint: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(source.as_bytes());
        h.write_u8(0xff);
        h.write(fingerprint.as_bytes());
        // 0 marks an empty slot.
        h.finish().max(1)
    }

    fn slot(&self, hash: u64) -> &AtomicU64 {
        // The slot count is a power of two; the cast keeps the hash's low bits.
        &self.hint[(hash as usize) & (HINT_SLOTS - 1)]
    }

    pub(super) fn remember(&self, source: &str, fingerprint: &str) {
        let h = self.hash(source, fingerprint);
        self.slot(h).store(h, Ordering::Relaxed);
    }

    pub(super) fn maybe_stored(&self, source: &str, fingerprint: &str) -> bool {
        let h = self.hash(source, fingerprint);
        self.slot(h).load(Ordering::Relaxed) == h
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, NaiveDateTime>> {
        // A panic while holding it leaves a map of stamps, still valid.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues stamps; true when the caller must schedule the flush.
    fn queue(&self, ids: &[i64], at: NaiveDateTime) -> bool {
        let mut pending = self.lock();
        for id in ids {
            keep_latest(&mut pending, *id, at);
        }
        drop(pending);
        !self.scheduled.swap(true, Ordering::AcqRel)
    }

    fn take(&self) -> HashMap<i64, NaiveDateTime> {
        // Cleared before the map is taken: a stamp queued after this schedules the next flush.
        self.scheduled.store(false, Ordering::Release);
        std::mem::take(&mut *self.lock())
    }

    /// Puts back stamps a flush could not write, for the next flush (which the next stamp
    /// queued schedules, or the one at shutdown).
    fn restore(&self, stamps: &HashMap<i64, NaiveDateTime>) {
        let mut pending = self.lock();
        for (id, at) in stamps {
            keep_latest(&mut pending, *id, *at);
        }
    }
}

/// Records `at` as alert `id`'s pending stamp unless a later one is already there.
fn keep_latest(pending: &mut HashMap<i64, NaiveDateTime>, id: i64, at: NaiveDateTime) {
    let t = pending.entry(id).or_insert(at);
    *t = (*t).max(at);
}

/// Writes last-seen stamps, each only where it is later than the stored one.
fn write_stamps(conn: &mut AnyConnection, stamps: &HashMap<i64, NaiveDateTime>) -> Result<()> {
    use super::schema::alerts;
    use diesel::prelude::*;
    for (id, at) in stamps {
        diesel::update(
            alerts::table
                .filter(alerts::id.eq(*id))
                .filter(alerts::updated_at.lt(*at)),
        )
        .set(alerts::updated_at.eq(*at))
        .execute(conn)?;
    }
    Ok(())
}

impl Store {
    /// Whether this process may have stored the alert `(source, fingerprint)`: a hint, see
    /// [`Store::remember_alert`].
    pub fn maybe_stored_alert(&self, source: &str, fingerprint: &str) -> bool {
        self.seen.maybe_stored(source, fingerprint)
    }

    /// Notes that the alert `(source, fingerprint)` is stored, so that a re-send of it is first
    /// compared on a read (see the module documentation of `store::seen`).
    pub fn remember_alert(&self, source: &str, fingerprint: &str) {
        self.seen.remember(source, fingerprint);
    }

    /// Stamps `updated_at` of these alerts with `at` within [`SEEN_FLUSH_EVERY`], in one
    /// transaction for all the stamps of that time; an alert updated later keeps its later time.
    /// Outside a tokio runtime the stamps wait for [`Store::flush_seen`] or the next call inside
    /// one.
    pub fn stamp_seen_later(&self, ids: &[i64], at: NaiveDateTime) {
        if ids.is_empty() || !self.seen.queue(ids, at) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // Nothing to run the timer on: the stamps wait for a flush, or for the next stamp
            // queued inside a runtime, which schedules one.
            self.seen.scheduled.store(false, Ordering::Release);
            return;
        };
        let store = self.clone();
        rt.spawn(async move {
            tokio::time::sleep(SEEN_FLUSH_EVERY).await;
            if let Err(e) = store.flush_seen().await {
                tracing::warn!(error = %e, "Could not write the last-seen times of re-sent alerts.");
            }
        });
    }

    /// Writes the pending last-seen stamps now. A process calls it before it exits. Stamps it
    /// could not write wait for the next flush.
    pub async fn flush_seen(&self) -> Result<()> {
        let stamps = std::sync::Arc::new(self.seen.take());
        if stamps.is_empty() {
            return Ok(());
        }
        let batch = stamps.clone();
        let written = self.write(move |conn| write_stamps(conn, &batch)).await;
        if written.is_err() {
            self.seen.restore(&stamps);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_knows_what_it_was_told_and_little_else() {
        let seen = Seen::new();
        assert!(!seen.maybe_stored("alertmanager", "abc"));
        seen.remember("alertmanager", "abc");
        assert!(seen.maybe_stored("alertmanager", "abc"));
        assert!(
            !seen.maybe_stored("grafana", "abc"),
            "the source is part of the key"
        );
        assert!(!seen.maybe_stored("alertmanager", "abd"));
        // Far more alerts than slots: the newest are known, and the table stays its size.
        for i in 0..(4 * HINT_SLOTS) {
            seen.remember("s", &i.to_string());
        }
        let known = (3 * HINT_SLOTS..4 * HINT_SLOTS)
            .filter(|i| seen.maybe_stored("s", &i.to_string()))
            .count();
        assert!(known > HINT_SLOTS / 2, "{known}");
        let stale = (0..HINT_SLOTS)
            .filter(|i| seen.maybe_stored("s", &i.to_string()))
            .count();
        assert!(stale < HINT_SLOTS / 4, "{stale}");
    }

    #[test]
    fn queued_stamps_keep_the_latest_time_and_schedule_one_flush() {
        let seen = Seen::new();
        let t = |s| {
            chrono::DateTime::from_timestamp(s, 0)
                .map(|d| d.naive_utc())
                .unwrap_or_default()
        };
        assert!(seen.queue(&[1, 2], t(10)), "the first stamp schedules");
        assert!(!seen.queue(&[1], t(30)), "one flush at a time");
        assert!(!seen.queue(&[1], t(20)));
        let taken = seen.take();
        assert_eq!(taken.get(&1), Some(&t(30)));
        assert_eq!(taken.get(&2), Some(&t(10)));
        assert!(seen.take().is_empty());
        assert!(
            seen.queue(&[3], t(40)),
            "after a flush took them, the next one schedules"
        );
        // A flush that failed puts its stamps back; a later stamp of the same alert wins.
        seen.queue(&[1], t(50));
        seen.restore(&taken);
        let again = seen.take();
        assert_eq!(again.get(&1), Some(&t(50)));
        assert_eq!(again.get(&2), Some(&t(10)));
        assert_eq!(again.get(&3), Some(&t(40)));
    }
}
