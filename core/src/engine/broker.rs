//! Optional Redis Streams delivery of run ids (`TOCSIN_BROKER_URL=redis://...`), for teams that
//! already run Redis as their broker.
//!
//! The database stays the source of truth: a run is queued in `pipeline_runs` first and its id is
//! then added to the stream; a worker that reads an id claims that run through the database lease
//! like any other, so a duplicate or lost message can neither run a run twice nor lose it (workers
//! still poll the database, more slowly). Entries a consumer read but never acknowledged (it died)
//! are re-claimed by live consumers with `XAUTOCLAIM` once idle longer than `stale_after`.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamReadOptions, StreamReadReply};

use crate::error::{Error, ErrorKind, Result};

/// The stream run ids go to.
pub const STREAM: &str = "tocsin:runs";
/// The consumer group every worker joins.
pub const GROUP: &str = "tocsin-workers";

fn upstream(e: redis::RedisError) -> Error {
    Error::new(ErrorKind::Upstream, format!("redis broker: {e}"))
}

/// A connection to the broker.
#[derive(Clone)]
pub struct Broker {
    client: redis::Client,
    conn: MultiplexedConnection,
    stream: String,
    group: String,
    stale_after: Duration,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// One delivered run id; acknowledge it once the run left this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The stream entry id.
    pub entry_id: String,
    /// The run id it carries.
    pub run_id: String,
}

impl Broker {
    /// Connects and makes sure the stream and the consumer group exist.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_to(url, STREAM, GROUP).await
    }

    /// Connects to a given stream and group (tests isolate themselves this way).
    pub async fn connect_to(url: &str, stream: &str, group: &str) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::invalid_config(format!("TOCSIN_BROKER_URL: {e}")))?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(upstream)?;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = created {
            // The group exists already: another worker made it.
            if e.code() != Some("BUSYGROUP") {
                return Err(upstream(e));
            }
        }
        Ok(Self {
            client,
            conn,
            stream: stream.to_owned(),
            group: group.to_owned(),
            stale_after: Duration::from_secs(60),
        })
    }

    /// How long a read but unacknowledged entry waits before another consumer takes it.
    pub fn with_stale_after(mut self, d: Duration) -> Self {
        self.stale_after = d;
        self
    }

    /// Announces a queued run.
    pub async fn publish(&self, run_id: &str) -> Result<String> {
        let mut c = self.conn.clone();
        c.xadd(&self.stream, "*", &[("run_id", run_id)])
            .await
            .map_err(upstream)
    }

    /// A consumer with a connection of its own: a blocking read holds its connection, so it
    /// must not share the one that publishes and acknowledges.
    pub async fn consumer(&self, name: &str) -> Result<Consumer> {
        let conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(upstream)?;
        Ok(Consumer {
            broker: self.clone(),
            conn,
            name: name.to_owned(),
        })
    }

    /// Reads one entry for `consumer` on a fresh connection (see [`Broker::consumer`] to reuse one).
    pub async fn next(&self, consumer: &str, block: Duration) -> Result<Option<Delivery>> {
        self.consumer(consumer).await?.next(block).await
    }
}

/// One named reader of the stream, with its own connection.
pub struct Consumer {
    broker: Broker,
    conn: MultiplexedConnection,
    name: String,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Waits up to `block` for the next run id: first an entry some dead consumer left behind,
    /// else a new one.
    pub async fn next(&mut self, block: Duration) -> Result<Option<Delivery>> {
        let (b, consumer) = (&self.broker, self.name.as_str());
        let c = &mut self.conn;
        let stale_ms = u64::try_from(b.stale_after.as_millis()).unwrap_or(u64::MAX);
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&b.stream)
            .arg(&b.group)
            .arg(consumer)
            .arg(stale_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(c)
            .await
            .map_err(upstream)?;
        if let Some(d) = claimed.claimed.into_iter().find_map(|e| delivery(&e)) {
            return Ok(Some(d));
        }
        let opts = StreamReadOptions::default()
            .group(&b.group, consumer)
            .count(1)
            .block(usize::try_from(block.as_millis()).unwrap_or(1000).max(1));
        let reply: Option<StreamReadReply> = c
            .xread_options(&[&b.stream], &[">"], &opts)
            .await
            .map_err(upstream)?;
        Ok(reply.and_then(|r| {
            r.keys
                .into_iter()
                .flat_map(|k| k.ids)
                .find_map(|e| delivery(&e))
        }))
    }
}

impl Broker {
    /// Acknowledges a delivery.
    pub async fn ack(&self, d: &Delivery) -> Result<()> {
        let mut c = self.conn.clone();
        let _: i64 = c
            .xack(&self.stream, &self.group, &[&d.entry_id])
            .await
            .map_err(upstream)?;
        Ok(())
    }

    /// Entries delivered but not yet acknowledged.
    pub async fn pending(&self) -> Result<i64> {
        let mut c = self.conn.clone();
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(&mut c)
            .await
            .map_err(upstream)?;
        match reply {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => Ok(*n),
                _ => Ok(0),
            },
            _ => Ok(0),
        }
    }
}

fn delivery(e: &redis::streams::StreamId) -> Option<Delivery> {
    let run_id: String = e.get("run_id")?;
    Some(Delivery {
        entry_id: e.id.clone(),
        run_id,
    })
}
