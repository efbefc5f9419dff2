//! A pod or an address as a Calico rule sees it, and rule matching.
//!
//! Endpoint labels are what Felix evaluates selectors against: the pod's labels plus
//! `projectcalico.org/namespace`, `projectcalico.org/orchestrator: k8s`,
//! `projectcalico.org/serviceaccount`, and the labels inherited from the namespace and service
//! account profiles (`pcns.<namespace label>`, `pcns.projectcalico.org/name`,
//! `pcsa.projectcalico.org/name`). A namespace selector sees the namespace's labels plus
//! `projectcalico.org/name`.

use std::net::IpAddr;

use super::selector::{LabelLookup, SelectorContext};
use super::{CalicoPort, CalicoRule, EntityMatch};
use crate::policy::kind::Misses;
use crate::policy::port::{ContainerPort, Protocol};
use crate::policy::{Direction, Labels};

/// Label with the endpoint's namespace.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// Label with the endpoint's orchestrator.
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
/// Label with the endpoint's service account.
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";
/// Name label of namespace and service account profiles.
pub const NAME_LABEL: &str = "projectcalico.org/name";
/// Prefix of namespace labels inherited by endpoints.
pub const NAMESPACE_PREFIX: &str = "pcns.";
/// Prefix of service account labels inherited by endpoints.
pub const SERVICE_ACCOUNT_PREFIX: &str = "pcsa.";

/// A pod as Calico selectors see it.
#[derive(Debug, Clone, Copy)]
pub struct EndpointView<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its labels.
    pub labels: &'a Labels,
    /// Its namespace's labels.
    pub namespace_labels: &'a Labels,
    /// Its service account.
    pub service_account: &'a str,
}

impl LabelLookup for EndpointView<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        match key {
            NAMESPACE_LABEL => Some(self.namespace),
            ORCHESTRATOR_LABEL => Some("k8s"),
            SERVICE_ACCOUNT_LABEL => Some(self.service_account),
            _ => {
                if let Some(label) = self.labels.get(key) {
                    return Some(label);
                }
                if let Some(inner) = key.strip_prefix(NAMESPACE_PREFIX) {
                    return if inner == NAME_LABEL {
                        Some(self.namespace)
                    } else {
                        self.namespace_labels.get(inner).map(String::as_str)
                    };
                }
                key.strip_prefix(SERVICE_ACCOUNT_PREFIX)
                    .filter(|inner| *inner == NAME_LABEL)
                    .map(|_| self.service_account)
            }
        }
    }
}

impl<'a> EndpointView<'a> {
    /// The namespace profile's labels.
    pub fn namespace_view(&self) -> NamedView<'a> {
        NamedView { name: self.namespace, labels: Some(self.namespace_labels) }
    }

    /// The service account profile's labels (only its name is known).
    pub fn service_account_view(&self) -> NamedView<'a> {
        NamedView { name: self.service_account, labels: None }
    }
}

/// A profile's labels: its own plus `projectcalico.org/name`.
#[derive(Debug, Clone, Copy)]
pub struct NamedView<'a> {
    name: &'a str,
    labels: Option<&'a Labels>,
}

impl LabelLookup for NamedView<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        if key == NAME_LABEL {
            return Some(self.name);
        }
        self.labels.and_then(|l| l.get(key)).map(String::as_str)
    }
}

/// One end of a flow for a rule: a pod (with its declared ports) and/or an address.
#[derive(Debug, Clone, Copy)]
pub struct Entity<'a> {
    /// The pod, when the end is one.
    pub pod: Option<EndpointView<'a>>,
    /// Its address.
    pub ip: Option<IpAddr>,
    /// Ports its containers declare (named ports of a destination).
    pub ports: Option<&'a [ContainerPort]>,
}

/// The flow a rule is checked against.
#[derive(Debug, Clone, Copy)]
pub struct RuleFlow<'a> {
    /// Source.
    pub src: Entity<'a>,
    /// Destination.
    pub dst: Entity<'a>,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

/// IP protocol number of `protocol`.
pub fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// Calico's name for IP protocol `number`.
pub fn protocol_name(number: u8) -> String {
    match number {
        1 => "ICMP".to_owned(),
        6 => "TCP".to_owned(),
        17 => "UDP".to_owned(),
        58 => "ICMPv6".to_owned(),
        132 => "SCTP".to_owned(),
        136 => "UDPLite".to_owned(),
        n => n.to_string(),
    }
}

impl CalicoRule {
    /// Whether the rule matches `flow`; with `misses.0` set, every failed check is recorded.
    pub fn check(&self, flow: &RuleFlow<'_>, mut misses: Misses<'_>) -> bool {
        let mut ok = true;
        let mut fail = |misses: &mut Misses<'_>, field: &str, want: String, got: String| {
            ok = false;
            misses.miss(field, want, got)
        };
        if self.http
            && !fail(
                &mut misses,
                "http",
                "an HTTP match (not visible to this engine)".into(),
                "a connection".into(),
            )
        {
            return false;
        }
        let number = protocol_number(flow.protocol);
        if let Some(p) = self.protocol.filter(|&p| p != number)
            && !fail(&mut misses, "protocol", protocol_name(p), flow.protocol.to_string())
        {
            return false;
        }
        if let Some(p) = self.not_protocol.filter(|&p| p == number)
            && !fail(
                &mut misses,
                "notProtocol",
                format!("not {}", protocol_name(p)),
                flow.protocol.to_string(),
            )
        {
            return false;
        }
        let family = flow.src.ip.or(flow.dst.ip).map(|ip| if ip.is_ipv4() { 4 } else { 6 });
        if let Some(v) = self.ip_version.filter(|&v| family.is_some_and(|f| f != v))
            && !fail(
                &mut misses,
                "ipVersion",
                v.to_string(),
                family.map(|f| f.to_string()).unwrap_or_default(),
            )
        {
            return false;
        }
        let src_ok = self.source.check("source", &flow.src, None, flow, &mut misses);
        if !src_ok && misses.0.is_none() {
            return false;
        }
        let dst_ok =
            self.destination.check("destination", &flow.dst, Some(flow.port), flow, &mut misses);
        ok && src_ok && dst_ok
    }
}

impl EntityMatch {
    /// Whether `entity` matches; `port` is its port when known (the destination's).
    fn check(
        &self,
        side: &str,
        entity: &Entity<'_>,
        port: Option<u16>,
        flow: &RuleFlow<'_>,
        misses: &mut Misses<'_>,
    ) -> bool {
        let mut ok = true;
        let got_ip = || entity.ip.map_or_else(|| "no address".to_owned(), |ip| ip.to_string());
        let who = || match entity.pod {
            Some(pod) => format!("pod in namespace {}", pod.namespace),
            None => format!("{} (not a pod)", got_ip()),
        };
        macro_rules! fail {
            ($field:expr, $want:expr, $got:expr) => {{
                ok = false;
                if !misses.miss(format!("{side}.{}", $field), $want, $got) {
                    return false;
                }
            }};
        }
        if self.services {
            fail!("services", "a Service's endpoints (not modelled)".to_owned(), who());
        }
        if !self.nets.is_empty()
            && !entity.ip.is_some_and(|ip| self.nets.iter().any(|n| n.contains(&ip)))
        {
            fail!("nets", join(&self.nets), got_ip());
        }
        if let Some(ip) = entity.ip
            && let Some(net) = self.not_nets.iter().find(|n| n.contains(&ip))
        {
            fail!("notNets", format!("not in {net}"), ip.to_string());
        }
        // Calico scopes the positive selector to the namespace(s) whenever a selector of any
        // kind is given; `notSelector` alone stays unscoped but still triggers the scope.
        let has_namespace = self.namespace_selector.is_some() || self.own_namespace.is_some();
        let any_selector = self.selector.is_some()
            || self.service_accounts.is_some()
            || self.not_selector.is_some()
            || self.namespace_selector.is_some();
        let scope_active = has_namespace && any_selector;
        if scope_active || self.selector.is_some() || self.service_accounts.is_some() {
            match entity.pod {
                None => {
                    let field = if self.selector.is_some() {
                        "selector"
                    } else if self.namespace_selector.is_some() {
                        "namespaceSelector"
                    } else if self.service_accounts.is_some() {
                        "serviceAccounts"
                    } else {
                        "notSelector"
                    };
                    fail!(field, "a pod".to_owned(), who());
                }
                Some(pod) => {
                    if scope_active {
                        match (&self.namespace_selector, &self.own_namespace) {
                            (Some(ns), _)
                                if !ns
                                    .matches(&pod.namespace_view(), SelectorContext::Namespace) =>
                            {
                                fail!(
                                    "namespaceSelector",
                                    ns.to_string(),
                                    format!("namespace {}", pod.namespace)
                                );
                            }
                            (None, Some(own)) if own != pod.namespace => {
                                fail!(
                                    "namespace",
                                    format!("{own} (the policy's)"),
                                    pod.namespace.to_owned()
                                );
                            }
                            _ => {}
                        }
                    }
                    if let Some(selector) = &self.selector
                        && !selector.matches(&pod, SelectorContext::Endpoint)
                    {
                        fail!("selector", selector.to_string(), describe_labels(pod.labels));
                    }
                    if let Some(accounts) = &self.service_accounts {
                        if !accounts.names.is_empty()
                            && !accounts.names.iter().any(|n| n == pod.service_account)
                        {
                            fail!(
                                "serviceAccounts.names",
                                accounts.names.join(", "),
                                pod.service_account.to_owned()
                            );
                        }
                        if let Some(selector) = &accounts.selector
                            && !selector
                                .matches(&pod.service_account_view(), SelectorContext::Endpoint)
                        {
                            fail!(
                                "serviceAccounts.selector",
                                selector.to_string(),
                                format!("service account {}", pod.service_account)
                            );
                        }
                    }
                }
            }
        }
        if let (Some(selector), Some(pod)) = (&self.not_selector, entity.pod)
            && selector.matches(&pod, SelectorContext::Endpoint)
        {
            fail!("notSelector", format!("not {selector}"), describe_labels(pod.labels));
        }
        if !self.ports.is_empty() {
            let hit = port.is_some_and(|p| {
                self.ports.iter().any(|c| port_matches(c, p, entity, flow.protocol))
            });
            if !hit {
                let got = port.map_or_else(|| "an ephemeral port".to_owned(), |p| p.to_string());
                fail!("ports", join(&self.ports), got);
            }
        }
        if let Some(p) = port
            && let Some(c) =
                self.not_ports.iter().find(|c| port_matches(c, p, entity, flow.protocol))
        {
            fail!("notPorts", format!("not {c}"), p.to_string());
        }
        ok
    }
}

fn port_matches(port: &CalicoPort, number: u16, entity: &Entity<'_>, protocol: Protocol) -> bool {
    match port {
        CalicoPort::Range(a, b) => (*a..=*b).contains(&number),
        CalicoPort::Named(name) => entity.ports.is_some_and(|ports| {
            ports.iter().any(|c| {
                c.name.as_deref() == Some(name) && c.protocol == protocol && c.port == number
            })
        }),
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn describe_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "no labels".to_owned();
    }
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The two ends of `flow` as the rules of a policy in `direction` name them: the endpoint the
/// policy applies to and its peer.
pub fn sides<'a>(
    direction: Direction,
    local: Entity<'a>,
    peer: Entity<'a>,
) -> (Entity<'a>, Entity<'a>) {
    match direction {
        Direction::Ingress => (peer, local),
        Direction::Egress => (local, peer),
    }
}
