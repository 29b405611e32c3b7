//! Storage functions of the CHECK stage, used by `tocsin-checkers` and its command line. Like
//! [`super::records`] they are synchronous functions over a connection, composed by the caller
//! inside one transaction.

use diesel::prelude::*;

use super::AnyConnection;
use super::schema::{alerts, incident_events, incidents};
use crate::error::Result;

/// Removes an incident that the current transaction opened, detaching its alerts and dropping
/// its events: how `check-and-alert --no-incidents` keeps the INGEST write path's alerts without
/// the incidents it would open. Returns how many alerts were detached.
pub fn discard_incident(conn: &mut AnyConnection, incident_id: i64) -> Result<usize> {
    let detached = diesel::update(alerts::table.filter(alerts::incident_id.eq(incident_id)))
        .set(alerts::incident_id.eq(None::<i64>))
        .execute(conn)?;
    diesel::delete(incident_events::table.filter(incident_events::incident_id.eq(incident_id)))
        .execute(conn)?;
    diesel::delete(incidents::table.filter(incidents::id.eq(incident_id))).execute(conn)?;
    Ok(detached)
}
