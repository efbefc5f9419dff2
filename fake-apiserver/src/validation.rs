//! The small part of the API server's defaulting and validation that the project depends on.

use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::status::FieldError;

const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const POLICY_TYPES: &[&str] = &["Ingress", "Egress"];
const SELECTOR_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];

/// Applies the server-side defaults a real cluster adds on every write.
pub fn apply_defaults(rt: &ResourceType, obj: &mut Value) {
    match (rt.group, rt.plural) {
        ("", "namespaces") => default_namespace(obj),
        ("networking.k8s.io", "networkpolicies") => default_network_policy(obj),
        _ => {}
    }
}

/// Every Namespace carries `kubernetes.io/metadata.name` and, once created, phase Active.
fn default_namespace(obj: &mut Value) {
    let name = obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    let meta = &mut obj["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    meta["labels"]["kubernetes.io/metadata.name"] = name;
    if obj.pointer("/spec/finalizers").is_none() {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
    }
    if obj.pointer("/status/phase").is_none() {
        obj["status"] = json!({"phase": "Active"});
    }
}

/// `SetDefaults_NetworkPolicySpec` and `SetDefaults_NetworkPolicyPort`: an empty podSelector,
/// protocol TCP on every port, and policyTypes `[Ingress]` plus `Egress` when egress rules exist.
fn default_network_policy(obj: &mut Value) {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    if !spec["podSelector"].is_object() {
        spec["podSelector"] = json!({});
    }
    for dir in ["ingress", "egress"] {
        if let Some(rules) = spec.get_mut(dir).and_then(Value::as_array_mut) {
            for rule in rules {
                if let Some(ports) = rule.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports.iter_mut().filter(|p| p.is_object()) {
                        if port.get("protocol").is_none_or(Value::is_null) {
                            port["protocol"] = json!("TCP");
                        }
                    }
                }
            }
        }
    }
    let has_types =
        spec.get("policyTypes").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if !has_types {
        let has_egress =
            spec.get("egress").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        spec["policyTypes"] =
            if has_egress { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) };
    }
}

/// Validates an object about to be stored; an empty list means valid.
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if rt.plural == "namespaces" {
        if !is_dns_label(name) {
            errs.push(FieldError::invalid("metadata.name", format!("\"{name}\""), DNS_LABEL_MSG));
        }
    } else if !is_dns_subdomain(name) {
        errs.push(FieldError::invalid("metadata.name", format!("\"{name}\""), DNS_SUBDOMAIN_MSG));
    }
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let v = v.as_str().unwrap_or_default();
            if !is_label_value(v) {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    format!("\"{v}\""),
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                ));
            }
            if k.is_empty() || k.len() > 316 {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    format!("\"{k}\""),
                    "invalid label key",
                ));
            }
        }
    }
    match (rt.group, rt.plural) {
        ("networking.k8s.io", "networkpolicies") => validate_network_policy(obj, &mut errs),
        ("events.k8s.io", "events") => validate_event(obj, &mut errs),
        _ => {}
    }
    errs
}

const DNS_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

/// IANA_SVC_NAME: at most 15 characters, lowercase alphanumerics and '-', at least one letter.
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn validate_selector(sel: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) else { return };
    for (i, e) in exprs.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
        let n_values = e.get("values").and_then(Value::as_array).map_or(0, Vec::len);
        if !SELECTOR_OPERATORS.contains(&op) {
            errs.push(FieldError::not_supported(format!("{p}.operator"), op, SELECTOR_OPERATORS));
        } else if matches!(op, "In" | "NotIn") && n_values == 0 {
            errs.push(FieldError::required(
                format!("{p}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ));
        } else if matches!(op, "Exists" | "DoesNotExist") && n_values > 0 {
            errs.push(FieldError::invalid(
                format!("{p}.values"),
                "[...]",
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ));
        }
    }
}

fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn validate_peer(peer: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let pod = peer.get("podSelector").filter(|v| !v.is_null());
    let ns = peer.get("namespaceSelector").filter(|v| !v.is_null());
    let ip = peer.get("ipBlock").filter(|v| !v.is_null());
    let count = [pod, ns, ip].iter().filter(|x| x.is_some()).count();
    if count == 0 {
        errs.push(FieldError::required(path.to_string(), "must specify a peer"));
    } else if ip.is_some() && count > 1 {
        errs.push(FieldError::invalid(
            path.to_string(),
            "{...}",
            "may not specify both ipBlock and another peer",
        ));
    }
    if let Some(sel) = pod {
        validate_selector(sel, &format!("{path}.podSelector"), errs);
    }
    if let Some(sel) = ns {
        validate_selector(sel, &format!("{path}.namespaceSelector"), errs);
    }
    if let Some(block) = ip {
        let cidr = block.get("cidr").and_then(Value::as_str).unwrap_or_default();
        if cidr.is_empty() {
            errs.push(FieldError::required(format!("{path}.ipBlock.cidr"), ""));
        } else if parse_cidr(cidr).is_none() {
            errs.push(FieldError::invalid(
                format!("{path}.ipBlock.cidr"),
                format!("\"{cidr}\""),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
        for (i, ex) in
            block.get("except").and_then(Value::as_array).into_iter().flatten().enumerate()
        {
            let ex = ex.as_str().unwrap_or_default();
            if parse_cidr(ex).is_none() {
                errs.push(FieldError::invalid(
                    format!("{path}.ipBlock.except[{i}]"),
                    format!("\"{ex}\""),
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                ));
            }
        }
    }
}

fn validate_port(port: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(proto) = port.get("protocol").and_then(Value::as_str)
        && !PROTOCOLS.contains(&proto)
    {
        errs.push(FieldError::not_supported(format!("{path}.protocol"), proto, PROTOCOLS));
    }
    let numeric = match port.get("port") {
        Some(Value::Number(n)) => {
            let v = n.as_i64().unwrap_or(-1);
            if !(1..=65535).contains(&v) {
                errs.push(FieldError::invalid(
                    format!("{path}.port"),
                    n,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            Some(v)
        }
        Some(Value::String(s)) => {
            if !is_port_name(s) {
                errs.push(FieldError::invalid(
                    format!("{path}.port"),
                    format!("\"{s}\""),
                    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), at most 15 characters, and at least one letter",
                ));
            }
            None
        }
        _ => None,
    };
    if let Some(end) = port.get("endPort").filter(|v| !v.is_null()) {
        let end_v = end.as_i64().unwrap_or(-1);
        match numeric {
            None => errs.push(FieldError::invalid(
                format!("{path}.endPort"),
                end,
                "may not be specified when `port` is non-numeric or unset",
            )),
            Some(start) if end_v < start => errs.push(FieldError::invalid(
                format!("{path}.endPort"),
                end,
                "must be greater than or equal to `port`",
            )),
            Some(_) if !(1..=65535).contains(&end_v) => errs.push(FieldError::invalid(
                format!("{path}.endPort"),
                end,
                "must be between 1 and 65535, inclusive",
            )),
            Some(_) => {}
        }
    }
}

fn validate_network_policy(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = &obj["spec"];
    validate_selector(&spec["podSelector"], "spec.podSelector", errs);
    for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in spec.get(dir).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let rp = format!("spec.{dir}[{i}]");
            for (j, port) in
                rule.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate()
            {
                validate_port(port, &format!("{rp}.ports[{j}]"), errs);
            }
            for (j, peer) in
                rule.get(peers).and_then(Value::as_array).into_iter().flatten().enumerate()
            {
                validate_peer(peer, &format!("{rp}.{peers}[{j}]"), errs);
            }
        }
    }
    let types = spec.get("policyTypes").and_then(Value::as_array).cloned().unwrap_or_default();
    if types.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.policyTypes",
            "[...]",
            "may not specify more than two policyTypes",
        ));
    }
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or_default();
        if !POLICY_TYPES.contains(&t) {
            errs.push(FieldError::not_supported(format!("spec.policyTypes[{i}]"), t, POLICY_TYPES));
        }
    }
}

/// The required fields of an events.k8s.io/v1 Event (`ValidateEventCreate`).
fn validate_event(obj: &Value, errs: &mut Vec<FieldError>) {
    let s = |f: &str| obj.get(f).and_then(Value::as_str).unwrap_or_default();
    if s("eventTime").is_empty() {
        errs.push(FieldError::required("eventTime", ""));
    }
    for field in ["reportingController", "reportingInstance", "action", "reason"] {
        if s(field).is_empty() {
            errs.push(FieldError::required(field, ""));
        }
    }
    let ty = s("type");
    if !matches!(ty, "Normal" | "Warning") {
        errs.push(FieldError::not_supported("type", ty, &["Normal", "Warning"]));
    }
    if s("note").len() > 1024 {
        errs.push(FieldError::invalid("note", "...", "can have at most 1024 characters"));
    }
    if let Some(series) = obj.get("series").filter(|v| !v.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(FieldError::invalid(
                "series.count",
                series["count"].clone(),
                "should be at least 2",
            ));
        }
        if series.get("lastObservedTime").and_then(Value::as_str).unwrap_or_default().is_empty() {
            errs.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RESOURCES, ResourceType};

    fn by_name(plural: &str) -> Option<&'static ResourceType> {
        RESOURCES.iter().find(|r| r.plural == plural)
    }

    #[test]
    fn network_policy_defaults_and_port_range() {
        let rt = by_name("networkpolicies").unwrap();
        let mut np =
            json!({"metadata": {"name": "p"}, "spec": {"ingress": [{"ports": [{"port": 70000}]}]}});
        apply_defaults(rt, &mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
        let errs = validate(rt, &np);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.ingress[0].ports[0].port");
    }

    #[test]
    fn end_port_needs_numeric_port() {
        let rt = by_name("networkpolicies").unwrap();
        let np = json!({"metadata": {"name": "p"}, "spec": {"egress": [{"ports": [{"port": "mysql", "endPort": 10}]}]}});
        assert_eq!(validate(rt, &np)[0].field, "spec.egress[0].ports[0].endPort");
    }
}
