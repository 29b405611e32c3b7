//! Retries, in one place: [`Retrying`] wraps any [`NotifyDriver`] and retries temporary errors
//! with exponential backoff and full jitter, honouring `Retry-After` up to a bound. Drivers send
//! once and only classify their errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use tocsin_core::Result;
use tocsin_core::plugin::{DeliveryReceipt, Notification, NotifyDriver};

/// How a delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1). Default 4.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled each time. Default 500 ms.
    pub base_delay: Duration,
    /// Largest backoff. Default 30 s.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; a provider asking for more ends the retries. Default 120 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// For a caller who waits on the answer (an HTTP request, the command line): 3 attempts,
    /// short backoff, and a `Retry-After` of more than 10 s ends the retries.
    pub fn interactive() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        }
    }

    /// Sends once, never retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The ceiling of the backoff before attempt `attempt + 1` (`attempt` from 1).
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay)
    }

    /// The wait before the next attempt, `None` when there is none: full jitter over the backoff
    /// ceiling, but never less than the `Retry-After` asked for.
    pub fn delay_after(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        if retry_after.is_some_and(|ra| ra > self.max_retry_after) {
            return None;
        }
        let ceiling = self.backoff_ceiling(attempt);
        let jittered = if ceiling.is_zero() {
            Duration::ZERO
        } else {
            // Half fixed, half random: spreads retries of many senders without ever retrying at once.
            let half = ceiling / 2;
            half + Duration::from_nanos(
                rand::rng().random_range(0..=half.as_nanos().min(u64::MAX as u128) as u64),
            )
        };
        Some(jittered.max(retry_after.unwrap_or(Duration::ZERO)))
    }
}

/// One attempt as it happened.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// From 1.
    pub number: u32,
    /// What the driver returned.
    pub result: Result<DeliveryReceipt>,
    /// How long the attempt took.
    pub duration: Duration,
    /// The wait before the next attempt, `None` when this was the last.
    pub next_delay: Option<Duration>,
}

/// Receives every attempt as soon as it ends (to record it).
#[async_trait]
pub trait AttemptSink: Send + Sync {
    /// Called once per attempt, before the wait for the next one.
    async fn attempt(&self, attempt: &Attempt);
}

/// A sink that ignores attempts.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSink;

#[async_trait]
impl AttemptSink for NoSink {
    async fn attempt(&self, _attempt: &Attempt) {}
}

/// Any driver, retried by a [`RetryPolicy`].
#[derive(Clone)]
pub struct Retrying {
    inner: Arc<dyn NotifyDriver>,
    policy: RetryPolicy,
}

impl std::fmt::Debug for Retrying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrying")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Retrying {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn NotifyDriver>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// Sends, retrying temporary errors, telling `sink` about every attempt. Returns the last result.
    pub async fn send_recorded(
        &self,
        notification: &Notification,
        sink: &dyn AttemptSink,
    ) -> Result<DeliveryReceipt> {
        let mut number = 1;
        loop {
            let started = Instant::now();
            let result = self.inner.send(notification).await;
            let duration = started.elapsed();
            let next_delay = match &result {
                Err(e) if e.is_temporary() => self.policy.delay_after(number, e.retry_after()),
                _ => None,
            };
            let attempt = Attempt {
                number,
                result,
                duration,
                next_delay,
            };
            sink.attempt(&attempt).await;
            match (attempt.result, next_delay) {
                (Err(e), Some(wait)) => {
                    tracing::warn!(attempt = number, wait_ms = wait.as_millis() as u64, error = %e,
                        "Delivery failed temporarily; retrying.");
                    tokio::time::sleep(wait).await;
                    number += 1;
                }
                (result, _) => return result,
            }
        }
    }
}

#[async_trait]
impl NotifyDriver for Retrying {
    async fn send(&self, notification: &Notification) -> Result<DeliveryReceipt> {
        self.send_recorded(notification, &NoSink).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tocsin_core::{Error, ErrorKind};

    struct Flaky {
        calls: AtomicU32,
        fail: Vec<Error>,
    }

    #[async_trait]
    impl NotifyDriver for Flaky {
        async fn send(&self, _n: &Notification) -> Result<DeliveryReceipt> {
            let i = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
            match self.fail.get(i) {
                Some(e) => Err(e.clone()),
                None => Ok(DeliveryReceipt {
                    message_id: Some(format!("m{i}")),
                    response: None,
                }),
            }
        }
    }

    #[derive(Default)]
    struct Rec(Mutex<Vec<(u32, bool, Option<Duration>)>>);
    #[async_trait]
    impl AttemptSink for Rec {
        async fn attempt(&self, a: &Attempt) {
            self.0
                .lock()
                .unwrap()
                .push((a.number, a.result.is_ok(), a.next_delay));
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            ..RetryPolicy::default()
        }
    }

    #[tokio::test]
    async fn temporary_errors_are_retried_until_success() {
        let d = Arc::new(Flaky {
            calls: AtomicU32::new(0),
            fail: vec![Error::new(ErrorKind::Upstream, "503"); 2],
        });
        let rec = Rec::default();
        let r = Retrying::new(d.clone(), fast())
            .send_recorded(&Notification::default(), &rec)
            .await
            .unwrap();
        assert_eq!(r.message_id.as_deref(), Some("m2"));
        let seen = rec.0.lock().unwrap().clone();
        assert_eq!(
            seen.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
            vec![(1, false), (2, false), (3, true)]
        );
        assert!(seen[0].2.is_some() && seen[2].2.is_none());
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried_and_attempts_are_bounded() {
        let d = Arc::new(Flaky {
            calls: AtomicU32::new(0),
            fail: vec![Error::invalid_config("bad")],
        });
        assert!(
            Retrying::new(d.clone(), fast())
                .send(&Notification::default())
                .await
                .is_err()
        );
        assert_eq!(d.calls.load(Ordering::SeqCst), 1);
        let d = Arc::new(Flaky {
            calls: AtomicU32::new(0),
            fail: vec![Error::new(ErrorKind::Timeout, "t"); 10],
        });
        assert!(
            Retrying::new(d.clone(), fast())
                .send(&Notification::default())
                .await
                .is_err()
        );
        assert_eq!(d.calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn backoff_grows_is_bounded_and_honours_retry_after() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ceiling(1), Duration::from_millis(500));
        assert_eq!(p.backoff_ceiling(3), Duration::from_secs(2));
        assert_eq!(p.backoff_ceiling(30), Duration::from_secs(30));
        for _ in 0..50 {
            let d = p.delay_after(2, None).unwrap();
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
        assert_eq!(
            p.delay_after(1, Some(Duration::from_secs(20))),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            p.delay_after(1, Some(Duration::from_secs(3600))),
            None,
            "beyond the bound: give up"
        );
        assert_eq!(p.delay_after(4, None), None);
    }
}
