//! The report as one self-contained HTML file: inline CSS (light, dark via
//! `prefers-color-scheme`, print), inline SVG, no script, no external asset. Everything from
//! the evidence goes through maud's escaping. The output is also well-formed XML.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{
    chart,
    model::{Incident, MarkedYaml},
    words,
};

/// The page's CSS (static: no evidence in it).
const STYLE: &str = include_str!("style.css");

fn yaml(y: &MarkedYaml) -> Markup {
    html! {
        pre.yaml {
            @for (i, line) in y.lines.iter().enumerate() {
                @if y.marked.contains(&i) { span.hl { (line) } } @else { span { (line) " " } }
            }
        }
    }
}

fn diff(text: &str) -> Markup {
    html! {
        pre.diff {
            @for line in text.lines() {
                @let class = match line.chars().next() {
                    _ if line.starts_with("+++") || line.starts_with("---") => "hunk",
                    Some('+') => "add",
                    Some('-') => "del",
                    Some('@') => "hunk",
                    _ => "ctx",
                };
                span class=(class) { (line) " " }
            }
        }
    }
}

fn summary(i: &Incident) -> Markup {
    html! {
        section #summary {
            h2 { "1. What broke" }
            p { span class={"status " (if i.restored() { "ok" } else { "bad" })} { (words::status(i)) } }
            table {
                tr { th { "flow" } th { "since" } th { "for" } th.num { "dropped SYNs" } th { "nodes" } th { "status" } }
                @for f in &i.flows {
                    tr {
                        td { code { (f.label()) } div.muted { (f.source_pods.iter().chain(&f.destination_pods).cloned().collect::<Vec<_>>().join(", ")) } }
                        td { (words::time(f.first_seen)) }
                        td { @match f.restored_at {
                            Some(r) => (words::duration_ms((r - f.first_seen).num_milliseconds().max(0) as u64)),
                            None => { "still dropping at " (words::clock(f.last_seen)) },
                        } }
                        td.num { (f.drops) }
                        td { (f.nodes.iter().cloned().collect::<Vec<_>>().join(", ")) }
                        td { @if let Some(r) = f.restored_at { "restored at " (words::clock(r)) } @else { strong { "NOT restored" } } }
                    }
                }
            }
            p { "Outage: " (words::outage(i)) "." }
        }
    }
}

fn timeline(i: &Incident) -> Markup {
    let t = chart::timeline(i);
    let start = i.started().unwrap_or_default();
    html! {
        section #timeline {
            h2 { "2. Timeline" }
            (chart::svg(&t))
            p.legend {
                @for (n, s) in t.series.iter().enumerate() {
                    span class={"swatch s" (n % 6)} {} (s.label) " "
                }
            }
            @if t.objective_at.is_none() {
                p.muted { "The 30-minute objective lies beyond the chart: the evidence covers "
                    (words::duration_ms((t.span_secs * 1000.0) as u64)) "." }
            }
            table {
                tr { th { "time (UTC)" } th.num { "since first drop" } th { "step" } th { "detail" } }
                @for m in &i.markers {
                    tr {
                        td { (words::clock(m.time)) }
                        td.num { "+" (words::duration_ms((m.time - start).num_milliseconds().max(0) as u64)) }
                        td { strong { (m.kind.name()) } }
                        td { (m.detail) }
                    }
                }
            }
            table {
                tr { th { "against the 30-minute objective" } th { "time" } th { "share" } }
                @for (label, value, share) in words::timing_rows(&i.timings) {
                    tr {
                        td { (label) }
                        td { (words::timing_value(value, share, i.timings.objective_ms)) }
                        td { @if let Some(s) = share {
                            div class={"bar" @if s > 100.0 { " missed" }} {
                                span style={"width:" (format!("{:.2}", s.clamp(0.5, 100.0))) "%"} {}
                            }
                        } }
                    }
                }
            }
        }
    }
}

fn root_cause(i: &Incident) -> Markup {
    html! {
        section #root-cause {
            h2 { "3. Root cause" }
            @if i.causes.is_empty() {
                p { "The evidence names no denying policy (the stream was recorded without manifests or cluster access, or the drop is not a NetworkPolicy decision)." }
            }
            @for c in &i.causes {
                h3 { (c.kind) " " code { (c.namespace) "/" (c.name) } " (" (c.direction) ")" }
                p {
                    "Denies the flow. "
                    @if let Some(r) = c.rule { "Closest rule: " (c.direction) " rule " (r) ". " }
                }
                @if !c.mismatches.is_empty() {
                    table {
                        tr { th { "field" } th { "the rule wants" } th { "the flow has" } }
                        @for m in &c.mismatches { tr { td { code { (m.field) } } td { code { (m.want) } } td { code { (m.got) } } } }
                    }
                } @else if let Some(h) = &c.hint { p { code { (h) } } }
                @if let Some(y) = &c.yaml { (yaml(y)) }
            }
        }
    }
}

fn change(i: &Incident) -> Markup {
    html! {
        section #change {
            h2 { "4. The change" }
            @match &i.change {
                None => p { "No change is recorded in the evidence. "
                    @if !i.causes.is_empty() { "`netpol-trace fix` proposes the minimal patch for the flow." } },
                Some(c) => {
                    @if let Some(s) = &c.summary { p { (s) } }
                    p { "Applied to " (c.applied_to)
                        @if let Some(at) = c.applied_at { " at " (words::time(at)) }
                        @if let Some(by) = &c.approved_by { "; approved by " (by) } "." }
                    @for p in &c.patches {
                        h3 { (p.action) " " code { (p.namespace) "/" (p.name) } " (" (p.direction) ")" }
                        @if let Some(d) = &p.diff { (diff(d)) }
                        @if let Some(j) = &p.json_patch { p { "JSON patch:" } pre { (j) } }
                        @if let Some(k) = &p.kubectl { p { "Command:" } pre { (k) } }
                    }
                    h3 { "Blast radius: newly allowed connections" }
                    @if c.newly_allowed.is_empty() { p { "none recorded" } }
                    ul { @for n in &c.newly_allowed { li { code { (n) } } } }
                }
            }
        }
    }
}

fn recovery(i: &Incident) -> Markup {
    let r = &i.recovery;
    html! {
        section #recovery {
            h2 { "5. Recovery point" }
            @if !r.backups.is_empty() {
                table {
                    tr { th { "object" } th { "backup" } }
                    @for (object, at) in &r.backups { tr { td { code { (object) } } td { (at) } } }
                }
            }
            @if let Some(cmd) = &r.restore_command { p { "To put the objects back as they were before the change:" } pre { (cmd) } }
            p { (r.note) }
        }
    }
}

fn kernel(i: &Incident) -> Markup {
    html! {
        section #kernel {
            h2 { "6. Kernel evidence" }
            table {
                tr { th { "node" } th { "interface" } th { "drop reason" } th { "flow" } th.num { "dropped" }
                     th.num { "SYN left source" } th.num { "SYN reached destination" } th.num { "SYN-ACK returned" } }
                @for k in &i.kernel {
                    tr { td { (k.node) } td { code { (k.ifname) } } td { code { (k.reason) } } td { (k.flow) }
                         td.num { (k.dropped) } td.num { (words::count(k.syn_left_source)) }
                         td.num { (words::count(k.syn_reached_destination)) } td.num { (words::count(k.synack_returned)) } }
                }
            }
            @if let Some(c) = &i.measured.counters { p.muted { "Tracer counters: " (c) } }
            @if i.pcaps.is_empty() {
                p.muted { "No packet capture was given (`trace --pcap FILE`, then `report --pcap FILE`)." }
            } @else {
                table {
                    tr { th { "packet capture" } th.num { "packets" } }
                    @for p in &i.pcaps { tr { td { code { (p.name) } } td.num { (p.packets) } } }
                }
            }
        }
    }
}

fn footer(i: &Incident) -> Markup {
    let m = &i.measured;
    html! {
        footer {
            strong { "How this was measured. " }
            "Dropped SYNs come from observe-only eBPF programs (tc/tcx on the pod veths and the kernel's "
            code { "kfree_skb" } " tracepoint with its drop reason), recorded by " (m.recorder)
            " on " (m.nodes.join(", ")) " (" (m.inputs.join(", ")) "). Rates are per report of the tracer "
            "(about once a second per flow), binned by the chart. Report by netpol-trace " (m.tool_version)
            @if let Some(h) = &m.host { " on " (h) } "."
        }
    }
}

/// Renders the report.
pub fn render(i: &Incident) -> String {
    let title = format!("Incident report: {}", words::headline(i));
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (PreEscaped("<meta charset=\"utf-8\"/>"))
                (PreEscaped("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>"))
                (PreEscaped("<meta name=\"color-scheme\" content=\"light dark\"/>"))
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) }
                p.muted { "Dropped by a NetworkPolicy; evidence from the kernel. First dropped SYN: "
                    (i.started().map(words::time).unwrap_or_default()) "." }
                (summary(i)) (timeline(i)) (root_cause(i)) (change(i)) (recovery(i)) (kernel(i)) (footer(i))
            }
        }
    };
    page.into_string()
}
