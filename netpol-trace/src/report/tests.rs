//! Reports from recorded and generated streams: the golden Markdown, well-formed
//! self-contained HTML, bad input, and any valid stream rendering without a panic.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use quick_xml::events::Event;

use super::*;

/// A recorded `lab demo -o json` run (port-typo scenario).
const RECORDED: &str = "tests/fixtures/report/port-typo.ndjson";
/// Its Markdown report.
const GOLDEN: &str = "tests/fixtures/report/port-typo.md";

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The context of the golden files: no host, a fixed version, so they do not change with
/// the machine or the release.
fn ctx() -> Context {
    Context { tool_version: "VERSION".into(), ..Context::default() }
}

fn recorded() -> Incident {
    let text = std::fs::read_to_string(fixture(RECORDED)).unwrap();
    from_ndjson_text(Path::new("port-typo.ndjson"), &text, &ctx()).unwrap()
}

/// Checks that `html` is well-formed XML and loads nothing from outside; returns the
/// element names seen.
pub(crate) fn check_html(html: &str) -> Vec<String> {
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..40.min(html.len())]);
    let mut reader = quick_xml::Reader::from_str(html);
    let mut stack: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    loop {
        match reader.read_event() {
            Ok(ev @ (Event::Start(_) | Event::Empty(_))) => {
                let (Event::Start(e) | Event::Empty(e)) = &ev else { unreachable!() };
                let name = e.name().as_ref().to_string();
                assert_ne!(name, "script", "no script in the report");
                assert_ne!(name, "link", "no linked stylesheet in the report");
                assert_ne!(name, "img", "no image file in the report");
                for attr in e.attributes() {
                    let attr = attr.expect("well-formed attribute");
                    let key = attr.key.as_ref().to_string();
                    let value = attr.value.to_lowercase();
                    if matches!(key.as_str(), "src" | "href" | "xlink:href" | "action") {
                        panic!("external reference {key}={value}");
                    }
                    assert!(!key.starts_with("on"), "no event handler attribute: {key}");
                }
                if matches!(ev, Event::Start(_)) {
                    stack.push(name.clone());
                }
                seen.push(name);
            }
            Ok(Event::End(e)) => {
                let name = e.name().as_ref().to_string();
                assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "mismatched </{name}>");
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed at byte {}: {e}", reader.buffer_position()),
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    let lower = html.to_lowercase();
    assert!(!lower.contains("url("), "no external resource in CSS");
    assert!(!lower.contains("@import"), "no imported stylesheet");
    seen
}

#[test]
fn the_recorded_run_matches_its_golden_markdown() {
    let markdown = render(&recorded(), Format::Markdown);
    let golden = fixture(GOLDEN);
    if std::env::var_os("NETPOL_TRACE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &markdown).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
        .expect("golden file (NETPOL_TRACE_UPDATE_GOLDEN=1 writes it)");
    assert_eq!(markdown, want, "the report changed: review, then NETPOL_TRACE_UPDATE_GOLDEN=1");
}

#[test]
fn the_recorded_run_tells_the_whole_story() {
    let i = recorded();
    assert!(i.restored());
    assert_eq!(i.flows.len(), 1);
    assert_eq!(i.flows[0].source, "app/web");
    assert_eq!(i.flows[0].destination, "db/mysql");
    let kinds: Vec<_> = i.markers.iter().map(|m| m.kind).collect();
    for kind in
        [MarkerKind::Detected, MarkerKind::Attributed, MarkerKind::Patched, MarkerKind::Restored]
    {
        assert!(kinds.contains(&kind), "{kind:?} in {kinds:?}");
    }
    let cause = &i.causes[0];
    assert_eq!((cause.namespace.as_str(), cause.name.as_str()), ("db", "mysql-ingress"));
    assert_eq!(cause.mismatches[0].want, "3307");
    let yaml = cause.yaml.as_ref().expect("the scenario's policy");
    let marked: Vec<&str> = yaml.marked.iter().map(|n| yaml.lines[*n].trim()).collect();
    assert_eq!(marked, ["- port: 3307"]);
    let change = i.change.as_ref().expect("the patch");
    let diff = change.patches[0].diff.as_deref().expect("a diff");
    assert!(diff.lines().any(|l| l.starts_with('+') && l.contains("3306")), "{diff}");
    assert!(i.timings.restore_ms.is_some());
}

use super::model::MarkerKind;

#[test]
fn the_html_is_well_formed_self_contained_and_has_the_chart() {
    let html = render(&recorded(), Format::Html);
    let elements = check_html(&html);
    for needed in ["svg", "path", "title", "style", "table", "pre"] {
        assert!(elements.iter().any(|e| e == needed), "<{needed}> in the report");
    }
    assert!(html.contains("class=\"series s0\""));
    assert!(html.contains("prefers-color-scheme:dark"));
    assert!(html.contains("@media print"));
    for marker in ["m-detected", "m-attributed", "m-patched", "m-restored"] {
        assert!(html.contains(marker), "{marker}");
    }
}

fn drop_line(time: &str, first: &str, count: u64, pod: &str, port: u16) -> String {
    serde_json::json!({
        "type": "drop", "time": time, "first_seen": first, "reason": "NETFILTER_DROP",
        "reason_raw": 12, "ifname": "cali88f8578c6dc", "count": count, "protocol": "TCP",
        "src": {"ip": "10.244.1.5", "port": 44092, "namespace": "app", "pod": pod},
        "dst": {"ip": "10.244.2.7", "port": port, "namespace": "db", "pod": "mysql-0"},
        "policies": [{"namespace": "db", "name": "mysql-ingress", "direction": "ingress"}],
        "hint": "db/mysql-ingress ingress rule 0: ports[0].port: want 3307, got 3306",
        "evidence": {"syn_left_source": count, "syn_reached_destination": 0, "synack_returned": 0, "dropped": count}
    })
    .to_string()
}

#[test]
fn a_stream_that_ends_before_the_restore_says_so() {
    let text = [
        drop_line("2026-01-01T00:00:01Z", "2026-01-01T00:00:00Z", 2, "web-7d9f8b6c5-x2k4q", 3306),
        drop_line("2026-01-01T00:00:03Z", "2026-01-01T00:00:00Z", 5, "web-7d9f8b6c5-x2k4q", 3306),
    ]
    .join("\n");
    let i = from_ndjson_text(Path::new("node-1.ndjson"), &text, &ctx()).unwrap();
    assert!(!i.restored());
    assert_eq!(i.flows[0].drops, 5);
    let md = render(&i, Format::Markdown);
    assert!(
        md.contains("**NOT RESTORED: the evidence ends at 2026-01-01 00:00:03.000 UTC"),
        "{md}"
    );
    assert!(
        md.contains("time to restore (first dropped SYN → connection works) | not in the evidence")
    );
    let html = render(&i, Format::Html);
    check_html(&html);
    assert!(html.contains("NOT RESTORED"));
}

#[test]
fn several_nodes_add_up_into_one_flow() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("node-1.ndjson");
    let b = dir.path().join("node-2.ndjson");
    std::fs::write(
        &a,
        drop_line("2026-01-01T00:00:01Z", "2026-01-01T00:00:00Z", 3, "web-7d9f8b6c5-x2k4q", 3306),
    )
    .unwrap();
    std::fs::write(
        &b,
        drop_line("2026-01-01T00:00:02Z", "2026-01-01T00:00:01Z", 4, "web-7d9f8b6c5-b8m2p", 3306),
    )
    .unwrap();
    let i = from_ndjson_files(&[a, b], &ctx()).unwrap();
    assert_eq!(i.flows.len(), 1);
    assert_eq!(i.flows[0].drops, 7);
    assert_eq!(i.flows[0].nodes.iter().collect::<Vec<_>>(), ["node-1", "node-2"]);
    assert_eq!(i.flows[0].source_pods.len(), 2);
    assert_eq!(i.kernel.len(), 2);
}

#[test]
fn bad_input_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.ndjson");
    let e = from_ndjson_files(std::slice::from_ref(&missing), &ctx()).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: cannot read", missing.display())), "{e}");

    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "").unwrap();
    let e = from_ndjson_files(std::slice::from_ref(&empty), &ctx()).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: line 1: empty file", empty.display())), "{e}");

    let foreign = dir.path().join("k.json");
    std::fs::write(&foreign, "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}\n").unwrap();
    let e = from_ndjson_files(std::slice::from_ref(&foreign), &ctx()).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: line 1: not the NDJSON", foreign.display())), "{e}");

    let quiet = dir.path().join("quiet.ndjson");
    std::fs::write(&quiet, "{\"type\":\"summary\",\"matched\":0,\"events_lost\":0,\"flows_full\":0,\"dropped_flows\":0,\"restored_flows\":0,\"interfaces\":[]}\n").unwrap();
    let e = from_ndjson_files(std::slice::from_ref(&quiet), &ctx()).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: line 1: no drop event", quiet.display())), "{e}");
}

#[test]
fn evidence_text_is_escaped_in_both_formats() {
    let evil = "<script>alert(1)</script>|`x`";
    let text = drop_line("2026-01-01T00:00:01Z", "2026-01-01T00:00:00Z", 1, evil, 3306);
    let i = from_ndjson_text(Path::new("x.ndjson"), &text, &ctx()).unwrap();
    let html = render(&i, Format::Html);
    check_html(&html);
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;"));
    let md = render(&i, Format::Markdown);
    assert!(md.starts_with("# Incident report: app/\\<script\\>alert(1)\\</script\\>\\|"), "{md}");
    // Raw only in code blocks and spans, where GitHub and GitLab show it as text.
    let mut fenced = false;
    for line in md.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        let spans = code_spans(line);
        for (at, _) in line.match_indices("<script>") {
            assert!(spans.iter().any(|r| r.contains(&at)), "raw HTML outside a code span: {line}");
        }
    }
}

/// Byte ranges of the code spans of a Markdown line (CommonMark: a run of N backticks
/// opens, the next run of exactly N closes; outside spans `\\`` is a literal backtick).
fn code_spans(line: &str) -> Vec<std::ops::Range<usize>> {
    let b = line.as_bytes();
    let (mut spans, mut open, mut i) = (Vec::new(), None::<(usize, usize)>, 0);
    while i < b.len() {
        if b[i] == b'\\' && open.is_none() {
            i += 2;
            continue;
        }
        if b[i] == b'`' {
            let run = b[i..].iter().take_while(|c| **c == b'`').count();
            match open {
                None => open = Some((i + run, run)),
                Some((start, n)) if n == run => {
                    spans.push(start..i);
                    open = None;
                }
                Some(_) => {}
            }
            i += run;
        } else {
            i += 1;
        }
    }
    spans
}

const DROP_REPORT: &str = r#"
apiVersion: netpol-trace.io/v1alpha1
kind: DropReport
metadata: {name: app-web-db-mysql-3306-tcp, namespace: db}
spec:
  source: {namespace: app, workload: web, kind: Deployment}
  destination: {namespace: db, workload: mysql, kind: StatefulSet}
  port: 3306
  protocol: TCP
  decision: Approved
status:
  state: Restored
  firstSeen: "2026-01-01T00:00:00Z"
  lastSeen: "2026-01-01T00:04:00Z"
  count: 240
  nodes:
    - {node: node-1, count: 200, lastSeen: "2026-01-01T00:04:00Z", ifname: cali1234, reason: NETFILTER_DROP}
    - {node: node-2, count: 40, lastSeen: "2026-01-01T00:03:00Z", ifname: cali5678, reason: NETFILTER_DROP}
  attribution:
    policies: [{kind: NetworkPolicy, namespace: db, name: mysql-ingress, direction: ingress}]
    hint: "db/mysql-ingress ingress rule 0: ports[0].port: want 3307, got 3306"
  fix:
    phase: Applied
    patches:
      - action: patch
        namespace: db
        name: mysql-ingress
        direction: ingress
        jsonPatch: [{op: add, path: /spec/ingress/0/ports/-, value: {port: 3306, protocol: TCP}}]
        kubectl: "kubectl patch networkpolicy -n db mysql-ingress --type=json -p '[...]'"
        newlyAllowed: [{from: app/web-1, to: db/mysql-0, port: 3306, protocol: TCP}]
    applied:
      at: "2026-01-01T00:03:30Z"
      by: alice@example.com
      resourceVersions: [{namespace: db, name: mysql-ingress, resourceVersion: "812"}]
      backup:
        - namespace: db
          name: mysql-ingress
          object:
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: mysql-ingress, namespace: db, resourceVersion: "811"}
            spec:
              podSelector: {matchLabels: {app: mysql}}
              ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 3307, protocol: TCP}]}]
"#;

#[test]
fn a_drop_report_maps_onto_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dr.yaml");
    std::fs::write(&path, DROP_REPORT).unwrap();
    let i = dropreport::read(&path, &ctx()).unwrap();
    assert!(i.restored());
    assert_eq!(i.flows[0].label(), "app/web → db/mysql:3306/TCP");
    assert_eq!(i.flows[0].samples.iter().map(|s| s.1).sum::<u64>(), 240);
    assert_eq!(i.kernel.len(), 2);
    let md = render(&i, Format::Markdown);
    assert!(md.contains("netpol-trace restore dropreport/app-web-db-mysql-3306-tcp -n db"), "{md}");
    assert!(md.contains("approved by alice@example.com"), "{md}");
    assert!(md.contains("port: 3307   # <-- here"), "{md}");
    assert!(md.contains("+    - port: 3306") || md.contains("+  - port: 3306"), "{md}");
    assert!(md.contains("`app/web-1 -> db/mysql-0 TCP/3306`"), "{md}");
    check_html(&render(&i, Format::Html));

    std::fs::write(&path, "kind: DropReport\nspec: {source: {}, destination: {}}\n").unwrap();
    let e = dropreport::read(&path, &ctx()).unwrap_err().to_string();
    assert!(e.contains("dr.yaml: not a DropReport: spec: missing field `port`"), "{e}");
    std::fs::write(&path, "kind: Pod\nspec: {source: {}, destination: {}, port: 1}\n").unwrap();
    let e = dropreport::read(&path, &ctx()).unwrap_err().to_string();
    assert!(e.ends_with("kind: want DropReport, got Pod"), "{e}");
}

#[test]
fn an_hour_long_incident_draws_the_objective() {
    let lines: Vec<String> = (0..=60)
        .map(|m| {
            let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap()
                + chrono::Duration::minutes(m);
            drop_line(
                &t.to_rfc3339(),
                "2026-01-01T00:00:00Z",
                1 + m as u64 * 10,
                "web-7d9f8b6c5-x2k4q",
                3306,
            )
        })
        .collect();
    let i = from_ndjson_text(Path::new("long.ndjson"), &lines.join("\n"), &ctx()).unwrap();
    let t = chart::timeline(&i);
    assert_eq!(t.objective_at, Some(1800.0));
    assert!(t.buckets() <= 600);
    assert_eq!(t.series[0].counts.iter().sum::<u64>(), 601);
    assert!(render(&i, Format::Html).contains("class=\"objective\""));
}

fn arb_line() -> impl Strategy<Value = String> {
    let time = (0i64..7200, 0u32..1000).prop_map(|(s, ms)| {
        (chrono::DateTime::from_timestamp(1_767_225_600 + s, ms * 1_000_000).unwrap()).to_rfc3339()
    });
    let pod = prop_oneof![
        Just("web-7d9f8b6c5-x2k4q".to_string()),
        Just("api-0".to_string()),
        "[a-z<>&\"|`-]{1,12}"
    ];
    prop_oneof![
        (time.clone(), time.clone(), 0u64..10_000, pod.clone(), 1u16..5).prop_map(|(t, f, c, p, port)| drop_line(&t, &f, c, &p, 3300 + port)),
        (time.clone(), time.clone(), 0u64..100, pod).prop_map(|(t, f, d, p)| serde_json::json!({
            "type": "restored", "time": t, "first_drop": f, "drops": d, "protocol": "TCP",
            "src": {"ip": "10.244.1.5", "port": 1, "namespace": "app", "pod": p},
            "dst": {"ip": "10.244.2.7", "port": 3301, "namespace": "db", "pod": "mysql-0"},
            "evidence": {"syn_left_source": 1, "syn_reached_destination": 1, "synack_returned": 1, "dropped": d}
        }).to_string()),
        (time, prop_oneof![Just("detected"), Just("attributed"), Just("patched"), Just("verified")], ".{0,20}")
            .prop_map(|(t, s, d)| serde_json::json!({"type": "step", "step": s, "at_ms": 1, "time": t, "detail": d, "data": {"patches": [{"namespace": "db", "name": "mysql-ingress", "json_patch": [{"op": "add", "path": "/x", "value": 1}]}]}}).to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_valid_stream_makes_a_report(mut lines in proptest::collection::vec(arb_line(), 1..40), first in (0i64..7200, 1u64..50)) {
        let t = chrono::DateTime::from_timestamp(1_767_225_600 + first.0, 0).unwrap().to_rfc3339();
        lines.push(drop_line(&t, &t, first.1, "web-7d9f8b6c5-x2k4q", 3306));
        let i = from_ndjson_text(Path::new("p.ndjson"), &lines.join("\n"), &ctx()).unwrap();
        let md = render(&i, Format::Markdown);
        prop_assert!(md.starts_with("# Incident report: "));
        check_html(&render(&i, Format::Html));
    }
}
