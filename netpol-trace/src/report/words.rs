//! Sentences and numbers both renderers print the same way.

use chrono::{DateTime, Utc};

use super::model::{Incident, Timings};

/// `2137 ms`, `12.4 s`, `3 min 20 s`, `1 h 02 min`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..=9_999 => format!("{ms} ms"),
        10_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {:02} s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// `2026-01-01 08:18:26.009 UTC`.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

/// `08:18:26.009`.
pub fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

/// The headline: the flows that broke.
pub fn headline(incident: &Incident) -> String {
    match incident.flows.as_slice() {
        [only] => only.label(),
        [first, rest @ ..] => format!("{} and {} more flow(s)", first.label(), rest.len()),
        [] => "no dropped flow".into(),
    }
}

/// The status now, plainly.
pub fn status(incident: &Incident) -> String {
    let last = incident.last_evidence().map(time).unwrap_or_default();
    if incident.restored() {
        let at =
            incident.flows.iter().filter_map(|f| f.restored_at).max().map(time).unwrap_or_default();
        return format!("RESTORED: the kernel saw the handshake complete again at {at}.");
    }
    let dropping: Vec<String> =
        incident.flows.iter().filter(|f| f.restored_at.is_none()).map(|f| f.label()).collect();
    format!(
        "NOT RESTORED: the evidence ends at {last} while {} still had no completed handshake \
         after its dropped SYNs. Nothing recorded shows the connection working again.",
        dropping.join(", ")
    )
}

/// How long the outage lasted, or has lasted as far as the evidence goes.
pub fn outage(incident: &Incident) -> String {
    let Some(start) = incident.started() else { return "-".into() };
    if incident.restored() {
        let end = incident.flows.iter().filter_map(|f| f.restored_at).max().unwrap_or(start);
        duration_ms((end - start).num_milliseconds().max(0) as u64)
    } else {
        let end = incident.last_evidence().unwrap_or(start);
        format!(
            "at least {} (still dropping when the evidence ends)",
            duration_ms((end - start).num_milliseconds().max(0) as u64)
        )
    }
}

/// `(label, value, share of the objective in percent)` per timing.
pub fn timing_rows(t: &Timings) -> Vec<(&'static str, Option<u64>, Option<f64>)> {
    let share = |v: Option<u64>| v.map(|v| 100.0 * v as f64 / t.objective_ms.max(1) as f64);
    vec![
        ("time to detect (first dropped SYN → reported)", t.detect_ms, share(t.detect_ms)),
        (
            "time to attribute (reported → policy and rule named)",
            t.attribute_ms,
            share(t.attribute_ms),
        ),
        (
            "time to restore (first dropped SYN → connection works)",
            t.restore_ms,
            share(t.restore_ms),
        ),
    ]
}

/// `2137 ms (0.12 % of the 30 min objective)` or `not restored`.
pub fn timing_value(value: Option<u64>, share: Option<f64>, objective_ms: u64) -> String {
    match (value, share) {
        (Some(v), Some(s)) => format!(
            "{} ({:.2} % of the {} objective){}",
            duration_ms(v),
            s,
            duration_ms(objective_ms),
            if v > objective_ms { " — MISSED" } else { "" }
        ),
        _ => "not in the evidence".into(),
    }
}

/// An optional count for a table.
pub fn count(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_every_scale() {
        assert_eq!(duration_ms(2137), "2137 ms");
        assert_eq!(duration_ms(12_400), "12.4 s");
        assert_eq!(duration_ms(200_000), "3 min 20 s");
        assert_eq!(duration_ms(1_800_000), "30 min 00 s");
        assert_eq!(duration_ms(3_720_000), "1 h 02 min");
    }
}
