//! The timeline chart: dropped SYNs per second per flow, with the markers, as inline SVG
//! (no script; colours from the page's CSS so that it follows dark mode and prints), and the
//! same series as an ASCII sparkline for Markdown.

use chrono::{DateTime, Duration, Utc};
use maud::{Markup, html};

use super::model::{Incident, MarkerKind, OBJECTIVE_MS};

/// At most this many columns: a 1-hour stream is drawn in 6-second buckets.
const MAX_BUCKETS: i64 = 600;
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 44.0;
/// Rows of marker labels, so that close markers do not print over each other.
const LABEL_ROWS: usize = 4;

/// One flow's rate over the buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The flow.
    pub label: String,
    /// Dropped SYNs per second in each bucket.
    pub rates: Vec<f64>,
    /// Dropped SYNs in each bucket.
    pub counts: Vec<u64>,
}

/// The binned timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Start of the first bucket (the first dropped SYN, to the second).
    pub start: DateTime<Utc>,
    /// Seconds per bucket.
    pub bucket_secs: i64,
    /// Per flow.
    pub series: Vec<Series>,
    /// `(kind, seconds from start, detail)`.
    pub markers: Vec<(MarkerKind, f64, String)>,
    /// Seconds from start of the 30-minute objective, when the chart reaches it.
    pub objective_at: Option<f64>,
    /// Seconds covered.
    pub span_secs: f64,
}

impl Timeline {
    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.series.first().map_or(0, |s| s.rates.len())
    }

    /// Start time of bucket `i`.
    pub fn bucket_start(&self, i: usize) -> DateTime<Utc> {
        self.start + Duration::seconds(self.bucket_secs * i as i64)
    }
}

/// Bins the incident's drops per flow.
pub fn timeline(incident: &Incident) -> Timeline {
    let first = incident.started().unwrap_or_default();
    let start = DateTime::from_timestamp(first.timestamp(), 0).unwrap_or(first);
    let end = incident.last_evidence().unwrap_or(first).max(first);
    let objective = first + Duration::milliseconds(OBJECTIVE_MS as i64);
    let span_ms = (end - start).num_milliseconds().max(0) + 1;
    let secs = (span_ms + 999) / 1000;
    let bucket_secs = ((secs + MAX_BUCKETS - 1) / MAX_BUCKETS).max(1);
    let buckets = ((secs + bucket_secs - 1) / bucket_secs).max(1) as usize;
    let index = |t: DateTime<Utc>| {
        (((t - start).num_milliseconds().max(0) / 1000) / bucket_secs).min(buckets as i64 - 1)
            as usize
    };
    let series = incident
        .flows
        .iter()
        .map(|f| {
            let mut counts = vec![0u64; buckets];
            for (t, n) in &f.samples {
                counts[index(*t)] += n;
            }
            let rates = counts.iter().map(|c| *c as f64 / bucket_secs as f64).collect();
            Series { label: f.label(), rates, counts }
        })
        .collect();
    let offset = |t: DateTime<Utc>| (t - start).num_milliseconds() as f64 / 1000.0;
    let span_secs = (buckets as i64 * bucket_secs) as f64;
    Timeline {
        start,
        bucket_secs,
        series,
        markers: incident
            .markers
            .iter()
            .map(|m| (m.kind, offset(m.time), m.detail.clone()))
            .collect(),
        objective_at: (end >= objective).then(|| offset(objective)).filter(|o| *o <= span_secs),
        span_secs,
    }
}

/// A round upper bound for the y axis.
fn nice_max(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|m| *m >= v).unwrap_or(v)
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { format!("{v:.1}") }
}

/// The chart as inline SVG.
pub fn svg(t: &Timeline) -> Markup {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max = nice_max(t.series.iter().flat_map(|s| s.rates.iter().copied()).fold(0.0, f64::max));
    let x = |secs: f64| LEFT + plot_w * (secs / t.span_secs).clamp(0.0, 1.0);
    let y = |v: f64| TOP + plot_h * (1.0 - v / max);
    let bucket = t.bucket_secs as f64;
    let path = |rates: &[f64]| {
        let mut d = format!("M{:.1},{:.1}", x(0.0), y(0.0));
        for (i, r) in rates.iter().enumerate() {
            let x0 = x(i as f64 * bucket);
            let x1 = x((i + 1) as f64 * bucket);
            d.push_str(&format!(" L{x0:.1},{:.1} L{x1:.1},{:.1}", y(*r), y(*r)));
        }
        d.push_str(&format!(" L{:.1},{:.1} Z", x(t.span_secs), y(0.0)));
        d
    };
    let x_ticks: Vec<f64> = (0..=5).map(|i| t.span_secs * i as f64 / 5.0).collect();
    // Sub-second ticks on a short chart, so that no two ticks read the same.
    let tick_format = if t.span_secs < 10.0 { "%H:%M:%S%.3f" } else { "%H:%M:%S" };
    let at = |secs: f64| t.start + Duration::milliseconds((secs * 1000.0) as i64);
    let clock = |secs: f64| at(secs).format("%H:%M:%S").to_string();
    let tick_label = |secs: f64| at(secs).format(tick_format).to_string();
    let tick_anchor = |i: usize| match i {
        0 => "start",
        5 => "end",
        _ => "middle",
    };
    let title = format!(
        "Dropped SYNs per second per flow, {} to {} UTC ({}-second buckets)",
        clock(0.0),
        clock(t.span_secs),
        t.bucket_secs
    );
    html! {
        svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (WIDTH) " " (HEIGHT)}
            role="img" aria-label=(title) {
            title { (title) }
            @for i in 0..=4 {
                @let v = max * f64::from(i) / 4.0;
                line class="grid" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(v)) y2=(y(v)) {}
                text class="tick" x=(LEFT - 6.0) y=(y(v) + 4.0) text-anchor="end" { (fmt_num(v)) }
            }
            text class="axis" x="14" y=(TOP + plot_h / 2.0) text-anchor="middle"
                transform={"rotate(-90 14 " (TOP + plot_h / 2.0) ")"} { "dropped SYN/s" }
            @for (i, tick) in x_ticks.iter().enumerate() {
                line class="grid" x1=(x(*tick)) x2=(x(*tick)) y1=(TOP + plot_h) y2=(TOP + plot_h + 5.0) {}
                text class="tick" x=(x(*tick)) y=(TOP + plot_h + 18.0) text-anchor=(tick_anchor(i)) { (tick_label(*tick)) }
            }
            text class="axis" x=(LEFT + plot_w / 2.0) y=(HEIGHT - 6.0) text-anchor="middle" { "time (UTC)" }
            @for (i, s) in t.series.iter().enumerate() {
                path class={"series s" (i % 6)} d=(path(&s.rates)) {
                    title { (s.label) }
                }
            }
            line class="frame" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(0.0)) y2=(y(0.0)) {}
            @if let Some(o) = t.objective_at {
                line class="objective" x1=(x(o)) x2=(x(o)) y1=(TOP - 6.0) y2=(TOP + plot_h) {}
                text class="objective-label" x=(x(o) - 4.0) y=(TOP + 12.0) text-anchor="end" { "30-min objective" }
            }
            @for (i, (kind, at, detail)) in t.markers.iter().enumerate() {
                @let row = (i % LABEL_ROWS) as f64;
                @let mx = x(*at);
                @let anchor = if mx > WIDTH - 160.0 { "end" } else { "start" };
                @let tx = if anchor == "end" { mx - 3.0 } else { mx + 3.0 };
                g class={"marker m-" (kind.name())} {
                    title { (kind.name()) ": " (detail) }
                    line x1=(mx) x2=(mx) y1=(10.0 + row * 14.0) y2=(TOP + plot_h) {}
                    text x=(tx) y=(20.0 + row * 14.0) text-anchor=(anchor) { (kind.name()) }
                }
            }
        }
    }
}

/// The series as an ASCII sparkline of at most `width` columns (`_` for no drops).
pub fn sparkline(rates: &[f64], width: usize) -> String {
    const RAMP: &[u8] = b"_.-:=+*#%@";
    if rates.is_empty() || width == 0 {
        return String::new();
    }
    let per = rates.len().div_ceil(width);
    let cols: Vec<f64> =
        rates.chunks(per).map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
    let max = cols.iter().copied().fold(0.0, f64::max);
    cols.iter()
        .map(|v| {
            if *v <= 0.0 || max <= 0.0 {
                '_'
            } else {
                let level = 1 + ((v / max) * (RAMP.len() - 2) as f64).round() as usize;
                RAMP[level.min(RAMP.len() - 1)] as char
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sparkline_scales_to_its_peak() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0], 10), "_:+@");
        assert_eq!(sparkline(&[0.0; 3], 10), "___");
        // Wider than allowed: averaged down to the width.
        assert_eq!(sparkline(&[4.0, 4.0, 0.0, 0.0, 2.0, 2.0], 3).len(), 3);
        assert_eq!(sparkline(&[], 3), "");
    }

    #[test]
    fn y_axis_bounds_are_round() {
        assert_eq!(nice_max(0.3), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(17.0), 20.0);
        assert_eq!(nice_max(240.0), 250.0);
    }
}
