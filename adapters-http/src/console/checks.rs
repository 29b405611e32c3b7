//! Check runs (with a small server-rendered chart of one checker's recent values) and analysis
//! runs.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tocsin_core::domain::CheckRun;
use tocsin_core::store;

use super::form::param;
use super::{ConsoleError, Page, Params, Session, params, render};
use crate::AppState;

/// The value a check run is charted by: its `percent`, else `value`, else its first number.
fn value_of(run: &CheckRun) -> Option<f64> {
    let m = run.metrics.as_object()?;
    m.get("percent")
        .or_else(|| m.get("value"))
        .and_then(Value::as_f64)
        .or_else(|| m.values().find_map(Value::as_f64))
}

/// Bars of an SVG chart 300 x 60 of `values` (oldest first): `(x, y, width, height, value)`.
fn bars(values: &[f64]) -> Vec<(f64, f64, f64, f64, f64)> {
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let width = 300.0 / values.len().max(1) as f64;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let h = (v.max(0.0) / max * 56.0).max(1.0);
            let r = |x: f64| (x * 10.0).round() / 10.0;
            (
                r(i as f64 * width),
                r(60.0 - h),
                r((width - 1.0).max(0.5)),
                r(h),
                *v,
            )
        })
        .collect()
}

/// `GET /admin/checks?checker=`.
pub(crate) async fn checks(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let checker = param(&p, "checker");
    let names = state.tocsin.plugins().checkers.names();
    if !checker.is_empty() && !names.contains(&checker.as_str()) {
        return Err(ConsoleError::bad_request(format!(
            "checker: unknown checker {checker:?}; known: {}",
            names.join(", ")
        )));
    }
    let c = checker.clone();
    let runs = state
        .tocsin
        .store()
        .run(move |conn| store::list_check_runs(conn, (!c.is_empty()).then_some(c.as_str()), 100))
        .await?;
    let chart = if checker.is_empty() {
        None
    } else {
        let mut values: Vec<f64> = runs.iter().take(50).filter_map(value_of).collect();
        values.reverse();
        let (min, max) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        (!values.is_empty()).then(|| {
            json!({"bars": bars(&values), "count": values.len(),
                   "min": (min * 10.0).round() / 10.0, "max": (max * 10.0).round() / 10.0,
                   "last": values.last()})
        })
    };
    Ok(render(
        StatusCode::OK,
        "checks.html",
        Some(&session),
        json!({
            "nav": "checks",
            "runs": runs,
            "checker": checker,
            "checkers": names,
            "chart": chart,
        }),
    ))
}

/// `GET /admin/analyses?incident=`.
pub(crate) async fn analyses(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<Params>, QueryRejection>,
) -> Page {
    let p = params(query)?;
    let raw = param(&p, "incident");
    let incident = if raw.is_empty() {
        None
    } else {
        Some(raw.parse::<i64>().map_err(|_| {
            ConsoleError::bad_request(format!("incident must be a whole number, got {raw:?}"))
        })?)
    };
    let runs = state
        .tocsin
        .store()
        .run(move |c| store::list_analysis_runs(c, incident, 100))
        .await?;
    Ok(render(
        StatusCode::OK,
        "analyses.html",
        Some(&session),
        json!({"nav": "analyses", "runs": runs, "incident": raw}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let b = bars(&[0.0, 50.0, 100.0]);
        assert_eq!(b.len(), 3);
        assert_eq!(b[2].3, 56.0);
        assert_eq!(b[1].3, 28.0);
        assert_eq!(b[0].3, 1.0, "a zero still shows");
    }
}
