//! The background CPU sampler: a rolling window of CPU readings, so the `cpu` checker answers at
//! once instead of waiting a sample interval.
//!
//! CPU usage is the difference of two readings of the kernel's counters, so a fresh measurement
//! always costs one interval. A long-running process (`tocsin serve`) starts one sampler; it reads
//! the counters every `interval` on its own thread (one `/proc/stat` read, microseconds) and keeps
//! the readings of the last `window`. While it runs, every `cpu` check in the process answers from
//! it.
//!
//! ```
//! use std::time::Duration;
//! use tocsin_checkers::sampler::{self, SamplerConfig};
//!
//! let handle = sampler::start_sampler(SamplerConfig {
//!     interval: Duration::from_millis(100),
//!     window: Duration::from_secs(1),
//! })?;
//! // ... serve; `cpu` checks now read `handle`'s window.
//! handle.stop();
//! # Ok::<(), tocsin_core::Error>(())
//! ```

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sysinfo::System;
use tocsin_core::{Error, Result};

use crate::cpu::{self, CpuReading, LoadAverage};

/// How the sampler samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerConfig {
    /// Time between readings (each reading spans this long). Default 1 s; at least 10 ms.
    pub interval: Duration,
    /// How much history the `cpu` checker averages. Default 5 s (the original's five one-second
    /// samples, answered at once).
    pub window: Duration,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            window: Duration::from_secs(5),
        }
    }
}

/// What the window holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuWindow {
    /// Readings, oldest first.
    pub readings: Vec<CpuReading>,
    /// The time they span.
    pub span: Duration,
    /// Load averages at the latest reading.
    pub load: Option<LoadAverage>,
    /// Age of the latest reading.
    pub age: Duration,
}

struct Shared {
    config: SamplerConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    readings: VecDeque<(Instant, CpuReading)>,
    load: Option<LoadAverage>,
}

impl Shared {
    fn window(&self) -> Option<CpuWindow> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (newest, _) = state.readings.back()?;
        let age = newest.elapsed();
        // A sampler that stopped ticking (a stalled thread, a suspended machine) is not answered from.
        if age > (self.config.interval * 3).max(Duration::from_secs(3)) {
            return None;
        }
        let span = self.config.interval * state.readings.len() as u32;
        Some(CpuWindow {
            readings: state.readings.iter().map(|(_, r)| r.clone()).collect(),
            span,
            load: state.load,
            age,
        })
    }

    fn push(&self, reading: CpuReading, load: Option<LoadAverage>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        state.readings.push_back((now, reading));
        state.load = load;
        let keep = window_len(self.config);
        while state.readings.len() > keep {
            state.readings.pop_front();
        }
    }
}

/// How many readings cover `window` (at least one).
fn window_len(c: SamplerConfig) -> usize {
    let n = c.window.as_secs_f64() / c.interval.as_secs_f64();
    (n.round() as usize).max(1)
}

/// The sampler this process's `cpu` checkers read from.
static ACTIVE: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

/// The window of the running sampler, if one runs and has a recent reading.
pub fn current_window() -> Option<CpuWindow> {
    let active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    active?.window()
}

/// A running sampler. Dropping it (or [`SamplerHandle::stop`]) stops the thread.
pub struct SamplerHandle {
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SamplerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerHandle")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl SamplerHandle {
    /// The window now (`None` until the first reading, the interval or 200 ms after start,
    /// whichever is shorter).
    pub fn snapshot(&self) -> Option<CpuWindow> {
        self.shared.window()
    }

    /// The sampler's settings.
    pub fn config(&self) -> SamplerConfig {
        self.shared.config
    }

    /// Stops the sampler and waits for its thread.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for SamplerHandle {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread's `recv_timeout` at once.
        self.stop.take();
        {
            let mut active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
            if active
                .as_ref()
                .is_some_and(|a| Arc::ptr_eq(a, &self.shared))
            {
                *active = None;
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the background sampler on its own thread and makes it the one `cpu` checks read.
/// A later call replaces it as the active one.
pub fn start_sampler(config: SamplerConfig) -> Result<SamplerHandle> {
    if config.interval < Duration::from_millis(10) || config.window < config.interval {
        return Err(Error::invalid_config(format!(
            "sampler: interval must be at least 10 ms and window at least one interval, got {:?} and {:?}",
            config.interval, config.window
        )));
    }
    let mut sys =
        System::new().map_err(|e| Error::internal(format!("cannot read CPU counters: {e}")))?;
    sys.refresh_cpu_usage();
    let shared = Arc::new(Shared {
        config,
        state: Mutex::new(State::default()),
    });
    let (tx, rx) = mpsc::channel::<()>();
    let worker = shared.clone();
    let thread = std::thread::Builder::new()
        .name("tocsin-cpu-sampler".into())
        .spawn(move || {
            // The first reading comes as soon as the counters allow (200 ms), not a whole
            // interval after start: until then every `cpu` check measures on its own, which costs
            // it that long. Then it wakes every interval; a stop (or the handle dropped) ends the
            // loop at once.
            let mut wait = worker
                .config
                .interval
                .min(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
            while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(wait) {
                sys.refresh_cpu_usage();
                worker.push(cpu::read(&sys), cpu::read_load());
                wait = worker.config.interval;
            }
            tracing::debug!("CPU sampler stopped.");
        })
        .map_err(|e| Error::internal(format!("cannot start the CPU sampler thread: {e}")))?;
    *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(shared.clone());
    tracing::info!(
        interval_ms = config.interval.as_millis() as u64,
        window_ms = config.window.as_millis() as u64,
        "CPU sampler started."
    );
    Ok(SamplerHandle {
        shared,
        stop: Some(tx),
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keeps_only_the_configured_number_of_readings() {
        let shared = Shared {
            config: SamplerConfig {
                interval: Duration::from_millis(100),
                window: Duration::from_millis(300),
            },
            state: Mutex::new(State::default()),
        };
        assert!(shared.window().is_none(), "no reading yet");
        for i in 0..5 {
            shared.push(
                CpuReading {
                    total: f64::from(i),
                    per_core: vec![f64::from(i)],
                },
                None,
            );
        }
        let w = shared.window().unwrap();
        assert_eq!(
            w.readings.iter().map(|r| r.total).collect::<Vec<_>>(),
            vec![2.0, 3.0, 4.0]
        );
        assert_eq!(w.span, Duration::from_millis(300));
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(
            start_sampler(SamplerConfig {
                interval: Duration::ZERO,
                window: Duration::from_secs(1)
            })
            .is_err()
        );
        assert!(
            start_sampler(SamplerConfig {
                interval: Duration::from_secs(2),
                window: Duration::from_secs(1)
            })
            .is_err()
        );
    }
}
