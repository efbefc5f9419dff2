//! Validation of Calico objects as Calico's API server does it, into [`CalicoPolicy`] and
//! [`CalicoTier`]: selectors parse, actions and protocols are known, ports only with TCP, UDP,
//! SCTP or UDPLite, `types` agree with the rules. Errors name the field.

use ipnet::IpNet;
use serde_json::Value;

use super::model::{CalicoPolicyObject, CalicoRuleSpec, EntityRuleSpec, TierObject, VERSIONS};
use super::{
    CalicoPolicy, CalicoPort, CalicoRule, CalicoSelector, CalicoTier, DEFAULT_TIER, EntityMatch,
    ServiceAccounts,
};
use crate::policy::PolicyError;
use crate::policy::error::FieldError;
use crate::policy::kind::{PolicyKind, RuleAction, RuleEffect};

const ACTIONS: &[(&str, RuleEffect)] = &[
    ("Allow", RuleEffect::Allow),
    ("Deny", RuleEffect::Deny),
    ("Log", RuleEffect::Log),
    ("Pass", RuleEffect::Pass),
];

/// Protocols that can have ports.
const PORT_PROTOCOLS: [u8; 4] = [6, 17, 132, 136];

fn check_version(version: &str, kind: &str) -> Result<(), FieldError> {
    if VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(FieldError::new(
            "apiVersion",
            format!("Calico {kind} {version:?} is not supported (want {})", VERSIONS.join(" or ")),
        ))
    }
}

/// Validates a Tier.
pub fn compile_tier(object: &TierObject) -> Result<CalicoTier, PolicyError> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let fail =
        |error| PolicyError { kind: "tier", namespace: String::new(), name: name.clone(), error };
    check_version(&object.api_version, "Tier").map_err(fail)?;
    if name.is_empty() {
        return Err(fail(FieldError::new("metadata.name", "is required")));
    }
    let pass_at_end = match object.spec.default_action.as_deref() {
        None | Some("Deny") => false,
        Some("Pass") => true,
        Some(other) => {
            return Err(fail(FieldError::new(
                "spec.defaultAction",
                format!("unsupported value {other:?} (want Deny or Pass)"),
            )));
        }
    };
    if let Some(order) = object.spec.order.filter(|o| !o.is_finite()) {
        return Err(fail(FieldError::new("spec.order", format!("{order} is not a number"))));
    }
    Ok(CalicoTier { name, order: object.spec.order, pass_at_end })
}

/// Validates a NetworkPolicy (namespaced; `default_namespace` when it names none) or
/// GlobalNetworkPolicy.
pub fn compile_calico_policy(
    object: &CalicoPolicyObject,
    default_namespace: &str,
) -> Result<CalicoPolicy, PolicyError> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let global = object.kind == "GlobalNetworkPolicy";
    let namespace = (!global)
        .then(|| object.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned()));
    let fail = |error| PolicyError {
        kind: if global { "globalnetworkpolicy" } else { "networkpolicy.projectcalico.org" },
        namespace: namespace.clone().unwrap_or_default(),
        name: name.clone(),
        error,
    };
    check_version(&object.api_version, &object.kind).map_err(fail)?;
    if name.is_empty() {
        return Err(fail(FieldError::new("metadata.name", "is required")));
    }
    let kind = if global { PolicyKind::GlobalNetworkPolicy } else { PolicyKind::NetworkPolicy };
    compile_spec(object, kind, name.clone(), namespace.clone()).map_err(fail)
}

fn selector(text: Option<&str>, field: &str) -> Result<Option<CalicoSelector>, FieldError> {
    match text {
        None => Ok(None),
        Some(text) => CalicoSelector::parse(text).map(Some).map_err(|e| {
            FieldError::new(
                field,
                format!("invalid selector {:?} at offset {}: {}", e.selector, e.offset, e.message),
            )
        }),
    }
}

fn compile_spec(
    object: &CalicoPolicyObject,
    kind: PolicyKind,
    name: String,
    namespace: Option<String>,
) -> Result<CalicoPolicy, FieldError> {
    let spec = &object.spec;
    if let Some(order) = spec.order.filter(|o| !o.is_finite()) {
        return Err(FieldError::new("spec.order", format!("{order} is not a number")));
    }
    if namespace.is_some() && spec.namespace_selector.is_some() {
        return Err(FieldError::new(
            "spec.namespaceSelector",
            "is a GlobalNetworkPolicy field; a NetworkPolicy applies to its own namespace",
        ));
    }
    let tier = match spec.tier.as_deref() {
        None | Some("") => DEFAULT_TIER.to_owned(),
        Some(tier) => tier.to_owned(),
    };
    let policy_selector =
        selector(spec.selector.as_deref(), "spec.selector")?.unwrap_or_else(CalicoSelector::all);
    let namespace_selector =
        selector(spec.namespace_selector.as_deref(), "spec.namespaceSelector")?;
    let service_account_selector =
        selector(spec.service_account_selector.as_deref(), "spec.serviceAccountSelector")?;
    let has_ingress = spec.ingress.as_ref().is_some_and(|r| !r.is_empty());
    let has_egress = spec.egress.as_ref().is_some_and(|r| !r.is_empty());
    let (ingress_type, egress_type) = match &spec.types {
        None => (!has_egress || has_ingress, has_egress),
        Some(types) => {
            let mut seen = (false, false);
            for (i, t) in types.iter().enumerate() {
                let slot = match t.as_str() {
                    "Ingress" => &mut seen.0,
                    "Egress" => &mut seen.1,
                    other => {
                        return Err(FieldError::new(
                            format!("spec.types[{i}]"),
                            format!("unsupported value {other:?} (want Ingress or Egress)"),
                        ));
                    }
                };
                if *slot {
                    return Err(FieldError::new(
                        format!("spec.types[{i}]"),
                        format!("{t} is listed twice"),
                    ));
                }
                *slot = true;
            }
            if has_ingress && !seen.0 {
                return Err(FieldError::new(
                    "spec.ingress",
                    "ingress rules are set but types does not include Ingress",
                ));
            }
            if has_egress && !seen.1 {
                return Err(FieldError::new(
                    "spec.egress",
                    "egress rules are set but types does not include Egress",
                ));
            }
            seen
        }
    };
    let rules =
        |list: &Option<Vec<CalicoRuleSpec>>, field: &str| -> Result<Vec<CalicoRule>, FieldError> {
            list.iter()
                .flatten()
                .enumerate()
                .map(|(i, rule)| {
                    compile_rule(rule, &format!("spec.{field}[{i}]"), namespace.as_deref())
                })
                .collect()
        };
    let ingress = rules(&spec.ingress, "ingress")?;
    let egress = rules(&spec.egress, "egress")?;
    Ok(CalicoPolicy {
        kind,
        namespace: namespace.clone(),
        name,
        tier,
        order: spec.order,
        selector: policy_selector,
        namespace_selector,
        service_account_selector,
        ingress: ingress_type.then_some(ingress),
        egress: egress_type.then_some(egress),
    })
}

/// An IP protocol from a name or number.
fn protocol(value: &Value, field: &str) -> Result<u8, FieldError> {
    let by_name = |name: &str| match name {
        "TCP" | "tcp" => Some(6),
        "UDP" | "udp" => Some(17),
        "ICMP" | "icmp" => Some(1),
        "ICMPv6" | "icmpv6" => Some(58),
        "SCTP" | "sctp" => Some(132),
        "UDPLite" | "udplite" => Some(136),
        _ => None,
    };
    let number = match value {
        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()).filter(|&n| n != 0),
        Value::String(s) => by_name(s).or_else(|| s.parse::<u8>().ok().filter(|&n| n != 0)),
        _ => None,
    };
    number.ok_or_else(|| {
        FieldError::new(
            field,
            format!(
                "invalid protocol {value} (want TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255)"
            ),
        )
    })
}

fn compile_rule(
    rule: &CalicoRuleSpec,
    path: &str,
    namespace: Option<&str>,
) -> Result<CalicoRule, FieldError> {
    let action = RuleAction::parse(&rule.action, ACTIONS)
        .map_err(|m| FieldError::new(format!("{path}.action"), m))?;
    let ip_version = match rule.ip_version {
        None => None,
        Some(v @ (4 | 6)) => Some(v as u8),
        Some(v) => {
            return Err(FieldError::new(format!("{path}.ipVersion"), format!("{v} is not 4 or 6")));
        }
    };
    let protocol_number =
        rule.protocol.as_ref().map(|p| protocol(p, &format!("{path}.protocol"))).transpose()?;
    let not_protocol = rule
        .not_protocol
        .as_ref()
        .map(|p| protocol(p, &format!("{path}.notProtocol")))
        .transpose()?;
    if (rule.icmp.is_some() || rule.not_icmp.is_some()) && !matches!(protocol_number, Some(1 | 58))
    {
        return Err(FieldError::new(
            format!("{path}.icmp"),
            "ICMP fields need protocol ICMP or ICMPv6",
        ));
    }
    let source =
        compile_entity(&rule.source, &format!("{path}.source"), namespace, protocol_number)?;
    let destination = compile_entity(
        &rule.destination,
        &format!("{path}.destination"),
        namespace,
        protocol_number,
    )?;
    Ok(CalicoRule {
        action,
        ip_version,
        protocol: protocol_number,
        not_protocol,
        source,
        destination,
        http: rule.http.is_some(),
    })
}

fn nets(list: Option<&Vec<String>>, field: &str) -> Result<Vec<IpNet>, FieldError> {
    list.into_iter()
        .flatten()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    FieldError::new(
                        format!("{field}[{i}]"),
                        format!("{text:?} is not a CIDR or address"),
                    )
                })
        })
        .collect()
}

fn ports(
    list: Option<&Vec<Value>>,
    field: &str,
    protocol: Option<u8>,
) -> Result<Vec<CalicoPort>, FieldError> {
    let list = list.map(Vec::as_slice).unwrap_or_default();
    if !list.is_empty() && !protocol.is_some_and(|p| PORT_PROTOCOLS.contains(&p)) {
        return Err(FieldError::new(
            field,
            "ports can only be used with protocol TCP, UDP, SCTP or UDPLite",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, value)| {
            let field = format!("{field}[{i}]");
            let number = |text: &str| text.trim().parse::<u16>().ok();
            match value {
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .map(|n| CalicoPort::Range(n, n))
                    .ok_or_else(|| FieldError::new(&field, format!("port {n} is out of range 0-65535"))),
                Value::String(text) => {
                    if let Some(n) = number(text) {
                        return Ok(CalicoPort::Range(n, n));
                    }
                    if let Some((a, b)) = text.split_once(':') {
                        return match (number(a), number(b)) {
                            (Some(a), Some(b)) if a <= b => Ok(CalicoPort::Range(a, b)),
                            _ => Err(FieldError::new(&field, format!("invalid port range {text:?} (want \"first:last\", first <= last <= 65535)"))),
                        };
                    }
                    let valid = !text.is_empty()
                        && text.len() <= 128
                        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                    if valid {
                        Ok(CalicoPort::Named(text.clone()))
                    } else {
                        Err(FieldError::new(&field, format!("invalid port name {text:?}")))
                    }
                }
                other => Err(FieldError::new(&field, format!("invalid port {other} (want a number, \"first:last\" or a name)"))),
            }
        })
        .collect()
}

fn compile_entity(
    entity: &EntityRuleSpec,
    path: &str,
    namespace: Option<&str>,
    protocol: Option<u8>,
) -> Result<EntityMatch, FieldError> {
    let service_accounts = entity
        .service_accounts
        .as_ref()
        .map(|sa| -> Result<ServiceAccounts, FieldError> {
            Ok(ServiceAccounts {
                names: sa.names.clone().unwrap_or_default(),
                selector: selector(
                    sa.selector.as_deref(),
                    &format!("{path}.serviceAccounts.selector"),
                )?,
            })
        })
        .transpose()?
        .filter(|sa| !sa.names.is_empty() || sa.selector.is_some());
    let namespace_selector = selector(
        entity.namespace_selector.as_deref().filter(|s| !s.is_empty()),
        &format!("{path}.namespaceSelector"),
    )?;
    Ok(EntityMatch {
        nets: nets(entity.nets.as_ref(), &format!("{path}.nets"))?,
        not_nets: nets(entity.not_nets.as_ref(), &format!("{path}.notNets"))?,
        selector: selector(
            entity.selector.as_deref().filter(|s| !s.is_empty()),
            &format!("{path}.selector"),
        )?,
        not_selector: selector(
            entity.not_selector.as_deref().filter(|s| !s.is_empty()),
            &format!("{path}.notSelector"),
        )?,
        own_namespace: if namespace_selector.is_none() {
            namespace.map(str::to_owned)
        } else {
            None
        },
        namespace_selector,
        service_accounts,
        ports: ports(entity.ports.as_ref(), &format!("{path}.ports"), protocol)?,
        not_ports: ports(entity.not_ports.as_ref(), &format!("{path}.notPorts"), protocol)?,
        services: entity.services.is_some(),
    })
}
