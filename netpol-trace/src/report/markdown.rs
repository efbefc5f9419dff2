//! The report as Markdown (GitHub/GitLab flavour): the same sections as the HTML, with a
//! table and an ASCII sparkline instead of the chart. Evidence text is escaped for tables
//! and inline code.

use std::fmt::Write as _;

use super::{chart, model::Incident, words};

/// Columns of the sparkline.
const SPARK_WIDTH: usize = 60;
/// Rows of the drops table at most (busy buckets are merged).
const TABLE_ROWS: usize = 24;

/// Escapes text for a table cell or running text.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// Inline code that survives backticks and pipes in the value.
fn code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ").replace('|', "\\|");
    let fence = if s.contains('`') { "``" } else { "`" };
    let pad = if s.starts_with('`') || s.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A fenced block whose fence is longer than any backtick run inside.
fn block(out: &mut String, lang: &str, body: &str) {
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(out, "{fence}{lang}\n{}\n{fence}\n", body.trim_end_matches('\n'));
}

/// Renders the report.
pub fn render(i: &Incident) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Incident report: {}\n", text(&words::headline(i)));
    let start = i.started().unwrap_or_default();
    let _ = writeln!(
        o,
        "Dropped by a NetworkPolicy; evidence from the kernel. First dropped SYN: {}.\n",
        words::time(start)
    );

    let _ = writeln!(o, "## 1. What broke\n\n**{}**\n", text(&words::status(i)));
    let _ = writeln!(o, "| flow | pods | since | for | dropped SYNs | nodes | status |");
    let _ = writeln!(o, "|---|---|---|---|--:|---|---|");
    for f in &i.flows {
        let pods: Vec<String> = f.source_pods.iter().chain(&f.destination_pods).cloned().collect();
        let lasted = match f.restored_at {
            Some(r) => words::duration_ms((r - f.first_seen).num_milliseconds().max(0) as u64),
            None => format!("still dropping at {}", words::clock(f.last_seen)),
        };
        let status = match f.restored_at {
            Some(r) => format!("restored at {}", words::clock(r)),
            None => "**NOT restored**".into(),
        };
        let nodes: Vec<&str> = f.nodes.iter().map(String::as_str).collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} |",
            code(&f.label()),
            text(&pods.join(", ")),
            words::time(f.first_seen),
            lasted,
            f.drops,
            text(&nodes.join(", ")),
            status
        );
    }
    let _ = writeln!(o, "\nOutage: {}.\n", words::outage(i));

    let t = chart::timeline(i);
    let _ = writeln!(o, "## 2. Timeline\n");
    let _ = writeln!(
        o,
        "Dropped SYNs per second, {}-second buckets from {} UTC (`_` none, `@` the peak):\n",
        t.bucket_secs,
        t.start.format("%H:%M:%S")
    );
    let spark: String = t
        .series
        .iter()
        .map(|s| {
            let peak = s.rates.iter().copied().fold(0.0, f64::max);
            format!(
                "{}  peak {:.1}/s  {}\n",
                chart::sparkline(&s.rates, SPARK_WIDTH),
                peak,
                s.label
            )
        })
        .collect();
    block(&mut o, "text", &spark);
    let _ = write!(o, "| bucket (UTC) |");
    for s in &t.series {
        let _ = write!(o, " {} |", code(&s.label));
    }
    let _ = writeln!(o, " steps |");
    let _ = writeln!(o, "|---|{}---|", "--:|".repeat(t.series.len()));
    let buckets = t.buckets();
    let per = buckets.div_ceil(TABLE_ROWS).max(1);
    for first in (0..buckets).step_by(per) {
        let last = (first + per).min(buckets);
        let from = t.bucket_start(first);
        let to = t.bucket_start(last);
        let steps: Vec<&str> = i
            .markers
            .iter()
            .filter(|m| m.time >= from && (m.time < to || last == buckets))
            .map(|m| m.kind.name())
            .collect();
        let counts: Vec<u64> =
            t.series.iter().map(|s| s.counts[first..last].iter().sum()).collect();
        if counts.iter().all(|c| *c == 0) && steps.is_empty() {
            continue;
        }
        let _ = write!(o, "| {} |", from.format("%H:%M:%S"));
        for c in counts {
            let _ = write!(o, " {c} |");
        }
        let _ = writeln!(o, " {} |", steps.join(", "));
    }
    if t.objective_at.is_none() {
        let _ = writeln!(
            o,
            "\nThe 30-minute objective lies beyond this timeline: the evidence covers {}.",
            words::duration_ms((t.span_secs * 1000.0) as u64)
        );
    } else {
        let _ = writeln!(o, "\nThe timeline reaches the 30-minute objective.");
    }
    let _ = writeln!(o, "\n| time (UTC) | since first drop | step | detail |\n|---|--:|---|---|");
    for m in &i.markers {
        let _ = writeln!(
            o,
            "| {} | +{} | **{}** | {} |",
            words::clock(m.time),
            words::duration_ms((m.time - start).num_milliseconds().max(0) as u64),
            m.kind.name(),
            text(&m.detail)
        );
    }
    let _ = writeln!(o, "\n| against the 30-minute objective | time |\n|---|---|");
    for (label, value, share) in words::timing_rows(&i.timings) {
        let _ = writeln!(
            o,
            "| {label} | {} |",
            words::timing_value(value, share, i.timings.objective_ms)
        );
    }

    let _ = writeln!(o, "\n## 3. Root cause\n");
    if i.causes.is_empty() {
        let _ = writeln!(
            o,
            "The evidence names no denying policy (the stream was recorded without manifests or cluster access, or the drop is not a NetworkPolicy decision).\n"
        );
    }
    for c in &i.causes {
        let rule =
            c.rule.map(|r| format!(", closest rule: {} rule {r}", c.direction)).unwrap_or_default();
        let _ = writeln!(
            o,
            "### {} {} ({})\n\nDenies the flow{rule}.\n",
            c.kind,
            code(&format!("{}/{}", c.namespace, c.name)),
            c.direction
        );
        if !c.mismatches.is_empty() {
            let _ = writeln!(o, "| field | the rule wants | the flow has |\n|---|---|---|");
            for m in &c.mismatches {
                let _ =
                    writeln!(o, "| {} | {} | {} |", code(&m.field), code(&m.want), code(&m.got));
            }
            let _ = writeln!(o);
        } else if let Some(h) = &c.hint {
            let _ = writeln!(o, "{}\n", code(h));
        }
        if let Some(y) = &c.yaml {
            let body: Vec<String> =
                y.lines
                    .iter()
                    .enumerate()
                    .map(|(n, l)| {
                        if y.marked.contains(&n) { format!("{l}   # <-- here") } else { l.clone() }
                    })
                    .collect();
            block(&mut o, "yaml", &body.join("\n"));
        }
    }

    let _ = writeln!(o, "## 4. The change\n");
    match &i.change {
        None => {
            let _ = writeln!(
                o,
                "No change is recorded in the evidence.{}\n",
                if i.causes.is_empty() {
                    ""
                } else {
                    " `netpol-trace fix` proposes the minimal patch for the flow."
                }
            );
        }
        Some(c) => {
            if let Some(s) = &c.summary {
                let _ = writeln!(o, "{}\n", text(s));
            }
            let at = c.applied_at.map(|t| format!(" at {}", words::time(t))).unwrap_or_default();
            let by = c
                .approved_by
                .as_ref()
                .map(|b| format!("; approved by {}", text(b)))
                .unwrap_or_default();
            let _ = writeln!(o, "Applied to {}{at}{by}.\n", text(&c.applied_to));
            for p in &c.patches {
                let _ = writeln!(
                    o,
                    "### {} {} ({})\n",
                    p.action,
                    code(&format!("{}/{}", p.namespace, p.name)),
                    p.direction
                );
                if let Some(d) = &p.diff {
                    block(&mut o, "diff", d);
                }
                if let Some(j) = &p.json_patch {
                    let _ = writeln!(o, "JSON patch:\n");
                    block(&mut o, "json", j);
                }
                if let Some(k) = &p.kubectl {
                    let _ = writeln!(o, "Command:\n");
                    block(&mut o, "sh", k);
                }
            }
            let _ = writeln!(o, "Blast radius, newly allowed connections:\n");
            if c.newly_allowed.is_empty() {
                let _ = writeln!(o, "- none recorded");
            }
            for n in &c.newly_allowed {
                let _ = writeln!(o, "- {}", code(n));
            }
            let _ = writeln!(o);
        }
    }

    let _ = writeln!(o, "## 5. Recovery point\n");
    if !i.recovery.backups.is_empty() {
        let _ = writeln!(o, "| object | backup |\n|---|---|");
        for (object, at) in &i.recovery.backups {
            let _ = writeln!(o, "| {} | {} |", code(object), text(at));
        }
        let _ = writeln!(o);
    }
    if let Some(cmd) = &i.recovery.restore_command {
        let _ = writeln!(o, "To put the objects back as they were before the change:\n");
        block(&mut o, "sh", cmd);
    }
    let _ = writeln!(o, "{}\n", i.recovery.note);

    let _ = writeln!(o, "## 6. Kernel evidence\n");
    let _ = writeln!(
        o,
        "| node | interface | drop reason | flow | dropped | SYN left source | SYN reached destination | SYN-ACK returned |"
    );
    let _ = writeln!(o, "|---|---|---|---|--:|--:|--:|--:|");
    for k in &i.kernel {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            text(&k.node),
            code(&k.ifname),
            code(&k.reason),
            code(&k.flow),
            k.dropped,
            words::count(k.syn_left_source),
            words::count(k.syn_reached_destination),
            words::count(k.synack_returned)
        );
    }
    if let Some(c) = &i.measured.counters {
        let _ = writeln!(o, "\nTracer counters: {}", text(c));
    }
    if i.pcaps.is_empty() {
        let _ = writeln!(
            o,
            "\nNo packet capture was given (`trace --pcap FILE`, then `report --pcap FILE`)."
        );
    } else {
        let _ = writeln!(o, "\n| packet capture | packets |\n|---|--:|");
        for p in &i.pcaps {
            let _ = writeln!(o, "| {} | {} |", code(&p.name), p.packets);
        }
    }

    let m = &i.measured;
    let host = m.host.as_ref().map(|h| format!(" on {}", text(h))).unwrap_or_default();
    let _ = writeln!(
        o,
        "\n---\n\n**How this was measured.** Dropped SYNs come from observe-only eBPF programs (tc/tcx on the pod veths and the kernel's `kfree_skb` tracepoint with its drop reason), recorded by {} on {} ({}). Rates are per report of the tracer (about once a second per flow), binned by the timeline. Report by netpol-trace {}{host}.",
        m.recorder,
        text(&m.nodes.join(", ")),
        text(&m.inputs.join(", ")),
        m.tool_version
    );
    o
}
