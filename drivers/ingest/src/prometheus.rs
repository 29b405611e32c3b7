//! The Prometheus-style alert object shared by Alertmanager (webhook v4) and Grafana unified
//! alerting: `status`, `labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`,
//! `fingerprint`.

use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tocsin_core::Result;
use tocsin_core::domain::{AlertStatus, Labels, RawPayload, Severity};
use tocsin_core::plugin::{NormalizedAlert, ParsedPayload};

use crate::body::Strict;
use crate::common::{
    Fields, TimeValue, fallback_fingerprint, into_object, invalid, parse_time_text, severity_word,
};

/// Extra string fields of an alert copied into annotations (Grafana's links and values).
const EXTRA_ANNOTATIONS: &[(&str, &str)] = &[
    ("generatorURL", "generator_url"),
    ("silenceURL", "silence_url"),
    ("dashboardURL", "dashboard_url"),
    ("panelURL", "panel_url"),
    ("imageURL", "image_url"),
    ("valueString", "value_string"),
];

/// Payload-level facts kept as they are sent.
const META_VALUES: &[&str] = &[
    "receiver",
    "status",
    "groupKey",
    "externalURL",
    "version",
    "truncatedAlerts",
    "orgId",
    "title",
    "state",
    "message",
];

/// Payload-level facts that must be objects when sent.
const META_OBJECTS: &[&str] = &["groupLabels", "commonLabels", "commonAnnotations"];

/// Parses the `alerts` list and the payload-level facts of an Alertmanager-shaped body. The body
/// is taken whole so that its values move into the alerts and facts rather than being copied.
pub(crate) fn parse_group(driver: &'static str, body: Value) -> Result<ParsedPayload> {
    let map = into_object(driver, body)?;
    // Every check first, in the order the fields are read, so the first fault is the one named.
    let f = Fields {
        driver,
        path: String::new(),
        map: &map,
    };
    f.array("alerts")?;
    for key in META_OBJECTS {
        f.opt_map(key)?;
    }
    // One pass over the body's keys, in order: each kept value and its key move as they are.
    let mut list = Vec::new();
    let mut meta = Map::new();
    for (key, v) in map {
        if key == "alerts"
            && let Value::Array(a) = v
        {
            list = a;
        } else if !v.is_null()
            && (META_VALUES.contains(&key.as_str()) || META_OBJECTS.contains(&key.as_str()))
        {
            meta.insert(key, v);
        }
    }
    let mut alerts = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        alerts.push(parse_alert(driver, i, raw)?);
    }
    let empty_reason = alerts
        .is_empty()
        .then(|| format!("the {driver} body has an empty `alerts` list"));
    Ok(ParsedPayload {
        alerts,
        meta: meta.into(),
        empty_reason,
    })
}

/// Alert `index` of the `alerts` list, moved into the alert's `raw_payload`.
pub(crate) fn parse_alert(
    driver: &'static str,
    index: usize,
    raw: Value,
) -> Result<NormalizedAlert> {
    let a = Fields::element(driver, format!("alerts[{index}]"), &raw)?;
    let path = a.path.as_str();
    let status = match a.str("status")? {
        "firing" => AlertStatus::Firing,
        "resolved" => AlertStatus::Resolved,
        other => {
            return Err(invalid(
                driver,
                format!("field `{path}.status` must be \"firing\" or \"resolved\", got {other:?}"),
            ));
        }
    };
    let labels = a.string_map("labels")?;
    let annotations = a.string_map("annotations")?;
    let name = labels
        .get("alertname")
        .filter(|n| !n.trim().is_empty())
        .cloned()
        .ok_or_else(|| invalid(driver, format!("missing label `{path}.labels.alertname`")))?;
    let mut extras = [None; EXTRA_ANNOTATIONS.len()];
    for (slot, (from, _)) in extras.iter_mut().zip(EXTRA_ANNOTATIONS) {
        *slot = a.opt_str(from)?;
    }
    let parts = AlertParts {
        status,
        labels,
        annotations,
        name,
        extras,
        started_at: a.opt_time("startsAt")?,
        ends_at: a.opt_time("endsAt")?,
        fingerprint: a.opt_str("fingerprint")?,
    };
    Ok(parts.into_alert(driver, RawPayload::from(&raw)))
}

/// An alert's fields as either parse read them, checked: what the alert is made of.
struct AlertParts<'a> {
    status: AlertStatus,
    labels: Labels,
    annotations: Labels,
    name: String,
    /// The values of [`EXTRA_ANNOTATIONS`], in its order.
    extras: [Option<&'a str>; EXTRA_ANNOTATIONS.len()],
    started_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    fingerprint: Option<&'a str>,
}

impl AlertParts<'_> {
    fn into_alert(self, driver: &'static str, raw_payload: RawPayload) -> NormalizedAlert {
        let Self {
            status,
            labels,
            mut annotations,
            name,
            extras,
            started_at,
            ends_at,
            fingerprint,
        } = self;
        let severity = labels
            .get("severity")
            .and_then(|s| severity_word(s))
            .unwrap_or(Severity::Warning);
        let description = ["description", "summary", "message"]
            .iter()
            .find_map(|k| annotations.get(*k).filter(|v| !v.is_empty()).cloned())
            .unwrap_or_default();
        for ((_, to), v) in EXTRA_ANNOTATIONS.iter().zip(extras) {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                annotations
                    .entry((*to).to_owned())
                    .or_insert_with(|| v.to_owned());
            }
        }
        // A firing alert's `endsAt` is either Go's zero time (no end) or Alertmanager's resolve
        // timeout, a guess about the future: neither is an end.
        let ended_at = match status {
            AlertStatus::Firing => None,
            AlertStatus::Resolved => Some(ends_at.unwrap_or_else(Utc::now)),
        };
        let fingerprint = match fingerprint.filter(|f| !f.trim().is_empty()) {
            Some(f) => f.to_owned(),
            None => fallback_fingerprint(driver, &name, &labels),
        };
        NormalizedAlert {
            fingerprint,
            name,
            status,
            severity,
            description,
            labels,
            annotations,
            started_at,
            ended_at,
            raw_payload,
            acknowledged: false,
        }
    }
}

/// [`parse_group`] straight from the body's text, for the plain shape senders send: the alerts'
/// `status`, `labels`, `annotations`, times, `fingerprint` and links as strings, each alert kept
/// as its text. `None` for anything else (a field of another type or null where it matters, a key
/// sent twice, an escaped key, a NUL, an unknown status, a time that is not one, no `alertname`),
/// which then goes through the strict decode and [`parse_group`], whose error names the fault.
pub(crate) fn parse_group_text(driver: &'static str, text: &str) -> Option<ParsedPayload> {
    let mut de = serde_json::Deserializer::from_str(text);
    let group = GroupVisitor.deserialize(&mut de).ok()?;
    de.end().ok()?;
    let mut alerts = Vec::with_capacity(group.alerts.len());
    for raw in group.alerts {
        alerts.push(alert_from_text(driver, raw)?);
    }
    let empty_reason = alerts
        .is_empty()
        .then(|| format!("the {driver} body has an empty `alerts` list"));
    Some(ParsedPayload {
        alerts,
        meta: group.meta,
        empty_reason,
    })
}

/// The envelope read by [`parse_group_text`]: each alert's text and the payload facts.
struct Group<'de> {
    alerts: Vec<&'de RawValue>,
    meta: RawPayload,
}

/// The payload facts as one object's text, from the facts' own texts as sent (nulls left out,
/// as [`parse_group`] does), serialised rather than assembled so nothing needs checking again.
fn facts_text<E: de::Error>(facts: &[(&str, &RawValue)]) -> std::result::Result<RawPayload, E> {
    struct Facts<'a>(&'a [(&'a str, &'a RawValue)]);
    impl serde::Serialize for Facts<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
    serde_json::value::to_raw_value(&Facts(facts))
        .map(RawPayload::from)
        .map_err(E::custom)
}

/// Whether a payload fact's text passes the strict decode's checks as a fact of `key`: an object
/// fact is an object of strings (or null), another a string, number, boolean or null; no NUL
/// (which JSON text can only carry as the escape `\u0000`) and no key twice. Anything else is
/// left to the strict path.
fn plain_fact(key: &str, raw: &RawValue) -> bool {
    let text = raw.get().trim();
    // Most facts have no escape at all: one byte search rules a NUL out.
    if text.as_bytes().contains(&b'\\') && text.contains("\\u0000") {
        return false;
    }
    if META_OBJECTS.contains(&key) {
        if text == "null" {
            return true;
        }
        let mut de = serde_json::Deserializer::from_str(text);
        return StringObject.deserialize(&mut de).is_ok();
    }
    !(text.starts_with('{') || text.starts_with('['))
}

/// Checks an object of strings, keys unescaped and each once, without keeping it.
struct StringObject;

impl<'de> DeserializeSeed<'de> for StringObject {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StringObject {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut seen = Seen::default();
        while let Some(key) = map.next_key::<&'de str>()? {
            seen.add(key)?;
            map.next_value_seed(AnyString)?;
        }
        Ok(())
    }
}

/// Reads [`Group`]; an error is only ever "not the plain shape".
struct GroupVisitor;

impl<'de> DeserializeSeed<'de> for GroupVisitor {
    type Value = Group<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Group<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for GroupVisitor {
    type Value = Group<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an Alertmanager-shaped object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Group<'de>, A::Error> {
        let mut seen = Seen::default();
        let mut alerts = None;
        let mut facts = Vec::with_capacity(META_VALUES.len() + META_OBJECTS.len());
        while let Some(key) = map.next_key::<&'de str>()? {
            seen.add(key)?;
            if key == "alerts" {
                alerts = Some(map.next_value::<Vec<&'de RawValue>>()?);
            } else if META_VALUES.contains(&key) || META_OBJECTS.contains(&key) {
                let raw: &'de RawValue = map.next_value()?;
                if !plain_fact(key, raw) {
                    return Err(de::Error::custom("a fact the strict path must check"));
                }
                if raw.get().trim() != "null" {
                    facts.push((key, raw));
                }
            } else {
                // Checked as the strict decode would, then dropped.
                drop(map.next_value::<Strict>()?);
            }
        }
        let alerts = alerts.ok_or_else(|| de::Error::custom("no alerts"))?;
        Ok(Group {
            alerts,
            meta: facts_text(&facts)?,
        })
    }
}

/// The fields of one alert that [`parse_alert`] reads, as sent.
#[derive(Default)]
struct AlertText<'de> {
    status: Option<&'de str>,
    labels: Option<Labels>,
    annotations: Option<Labels>,
    starts_at: Option<&'de str>,
    ends_at: Option<&'de str>,
    fingerprint: Option<&'de str>,
    /// The values of [`EXTRA_ANNOTATIONS`], in its order.
    extras: [Option<&'de str>; EXTRA_ANNOTATIONS.len()],
}

/// [`parse_alert`] of one alert's text; `None` where [`parse_group_text`] says.
fn alert_from_text(driver: &'static str, raw: &RawValue) -> Option<NormalizedAlert> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let a = AlertVisitor.deserialize(&mut de).ok()?;
    let status = match a.status? {
        "firing" => AlertStatus::Firing,
        "resolved" => AlertStatus::Resolved,
        _ => return None,
    };
    let labels = a.labels.unwrap_or_default();
    let name = labels
        .get("alertname")
        .filter(|n| !n.trim().is_empty())?
        .clone();
    let time = |t: Option<&str>| match t.map(parse_time_text) {
        None | Some(TimeValue::Unset) => Some(None),
        Some(TimeValue::Time(t)) => Some(Some(t)),
        Some(TimeValue::Invalid) => None,
    };
    let parts = AlertParts {
        status,
        annotations: a.annotations.unwrap_or_default(),
        labels,
        name,
        extras: a.extras,
        started_at: time(a.starts_at)?,
        ends_at: time(a.ends_at)?,
        fingerprint: a.fingerprint,
    };
    Some(parts.into_alert(driver, RawPayload::from_raw(raw)))
}

/// Reads [`AlertText`]; an error is only ever "not the plain shape".
struct AlertVisitor;

impl<'de> DeserializeSeed<'de> for AlertVisitor {
    type Value = AlertText<'de>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<AlertText<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AlertVisitor {
    type Value = AlertText<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an alert object")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<AlertText<'de>, A::Error> {
        let mut seen = Seen::default();
        let mut a = AlertText::default();
        while let Some(key) = map.next_key::<&'de str>()? {
            seen.add(key)?;
            match key {
                "status" => a.status = Some(map.next_value()?),
                "labels" => a.labels = Some(map.next_value_seed(StringMap)?),
                "annotations" => a.annotations = Some(map.next_value_seed(StringMap)?),
                "startsAt" => a.starts_at = map.next_value()?,
                "endsAt" => a.ends_at = map.next_value()?,
                "fingerprint" => a.fingerprint = map.next_value()?,
                other => match EXTRA_ANNOTATIONS
                    .iter()
                    .position(|(from, _)| *from == other)
                {
                    Some(i) => a.extras[i] = map.next_value()?,
                    // Checked as the strict decode would, then dropped.
                    None => drop(map.next_value::<Strict>()?),
                },
            }
        }
        Ok(a)
    }
}

/// The keys of one object so far, on the stack: a key sent twice is refused. An object with more
/// keys than a plain body has is left to the strict path.
#[derive(Default)]
struct Seen<'de> {
    keys: [&'de str; 24],
    len: usize,
}

impl<'de> Seen<'de> {
    fn add<E: de::Error>(&mut self, key: &'de str) -> std::result::Result<(), E> {
        if self.keys[..self.len].contains(&key) {
            return Err(E::custom("a key twice"));
        }
        let slot = self
            .keys
            .get_mut(self.len)
            .ok_or_else(|| E::custom("more keys than a plain body has"))?;
        *slot = key;
        self.len += 1;
        Ok(())
    }
}

/// Checks a string, escaped or not, without keeping it (the caller checked the text for NUL).
struct AnyString;

impl<'de> DeserializeSeed<'de> for AnyString {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for AnyString {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
}

/// An object of strings without NUL characters or a key twice (labels, annotations).
struct StringMap;

impl<'de> DeserializeSeed<'de> for StringMap {
    type Value = Labels;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Labels, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StringMap {
    type Value = Labels;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Labels, A::Error> {
        let mut out = Labels::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: String = map.next_value()?;
            if key.contains('\0') || value.contains('\0') {
                return Err(de::Error::custom("a NUL"));
            }
            if out.insert(key, value).is_some() {
                return Err(de::Error::custom("a key twice"));
            }
        }
        Ok(out)
    }
}
