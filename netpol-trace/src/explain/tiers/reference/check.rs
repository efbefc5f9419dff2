//! The reference evaluator, the random clusters, and the property.

use super::*;

/// One tier of the reference's evaluation order.
#[derive(Debug, Clone, Copy)]
enum TierRef {
    Admin,
    Baseline,
    Calico(Option<usize>),
}

struct Probe {
    src: usize,
    dst: usize,
    port: u16,
    udp: bool,
}

impl Cluster {
    fn ns_labels(&self, pod: usize) -> &Labels {
        &self.namespaces[self.pods[pod].ns]
    }

    fn port_ok(rule: &Rule, probe: &Probe) -> bool {
        rule.port.is_none_or(|port| !probe.udp && port == probe.port)
    }

    /// The contract's evaluation of direction `d` (verdict, `decided_by` as JSON).
    fn reference(&self, probe: &Probe, d: usize) -> (bool, Value) {
        let (endpoint, peer) =
            if d == INGRESS { (probe.dst, probe.src) } else { (probe.src, probe.dst) };
        let mut tiers: Vec<((bool, u64), String, TierRef)> = vec![
            ((false, 1000), "adminnetworkpolicy".into(), TierRef::Admin),
            ((false, 1_000_000), "default".into(), TierRef::Calico(None)),
            ((false, 10_000_000), "baselineadminnetworkpolicy".into(), TierRef::Baseline),
        ];
        for (i, tier) in self.tiers.iter().enumerate() {
            let key = (tier.order.is_none(), u64::from(tier.order.unwrap_or(0)));
            tiers.push((key, TIERS[i].into(), TierRef::Calico(Some(i))));
        }
        tiers.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, _, tier) in tiers {
            let outcome = match tier {
                TierRef::Admin => self.admin_tier(true, endpoint, peer, probe, d),
                TierRef::Baseline => self.admin_tier(false, endpoint, peer, probe, d),
                TierRef::Calico(t) => self.calico_tier(t, endpoint, peer, probe, d),
            };
            if let Some(decided) = outcome {
                return decided;
            }
        }
        (true, Value::Null)
    }

    fn admin_tier(
        &self,
        admin: bool,
        endpoint: usize,
        peer: usize,
        probe: &Probe,
        d: usize,
    ) -> Option<(bool, Value)> {
        let mut members: Vec<(u32, usize)> = self
            .policies
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Policy::Admin { kind, priority, .. } => {
                    let in_admin = matches!(kind, AdminKind::Anp | AdminKind::CnpAdmin);
                    (in_admin == admin).then_some((*priority, i))
                }
                _ => None,
            })
            .collect();
        members.sort_unstable();
        for (_, i) in members {
            let Policy::Admin { kind, ns, pods, rules, .. } = &self.policies[i] else { continue };
            let selects = subset(ns, self.ns_labels(endpoint))
                && pods.as_ref().is_none_or(|p| subset(p, &self.pods[endpoint].labels));
            if !selects {
                continue;
            }
            let hit = rules[d].iter().position(|r| {
                subset(r.ns.as_ref().unwrap(), self.ns_labels(peer))
                    && r.pods.as_ref().is_none_or(|p| subset(p, &self.pods[peer].labels))
                    && Self::port_ok(r, probe)
            });
            let Some(j) = hit else { continue };
            let act = rules[d][j].act;
            if act == Act::Pass {
                return None;
            }
            let kind_name = match kind {
                AdminKind::Anp => "AdminNetworkPolicy",
                AdminKind::Banp => "BaselineAdminNetworkPolicy",
                _ => "ClusterNetworkPolicy",
            };
            let by = json!({"kind": kind_name, "name": self.name(i),
                "tier": if admin { "Admin" } else { "Baseline" },
                "rule": j, "action": admin_action(*kind, act)});
            return Some((act == Act::Allow, by));
        }
        None
    }

    fn calico_tier(
        &self,
        tier: Option<usize>,
        endpoint: usize,
        peer: usize,
        probe: &Probe,
        d: usize,
    ) -> Option<(bool, Value)> {
        let pod = &self.pods[endpoint];
        let mut applying: Vec<((bool, u32), String, usize)> = Vec::new();
        for (i, policy) in self.policies.iter().enumerate() {
            match policy {
                Policy::Kube { ns, selector, ingress, egress } if tier.is_none() => {
                    let has = if d == INGRESS { ingress.is_some() } else { egress.is_some() };
                    if *ns == pod.ns && subset(selector, &pod.labels) && has {
                        let name = format!("ns{ns}/knp.default.{}", self.name(i));
                        applying.push(((false, 1000), name, i));
                    }
                }
                Policy::Calico { ns, tier: t, order, selector, types, rules } if *t == tier => {
                    let selects = ns.is_none_or(|n| n == pod.ns) && selector.matches(&pod.labels);
                    if selects && calico_types(rules, *types)[d] {
                        let name = match ns {
                            Some(n) => format!("ns{n}/{}", self.name(i)),
                            None => self.name(i),
                        };
                        applying.push(((order.is_none(), order.unwrap_or(0)), name, i));
                    }
                }
                _ => {}
            }
        }
        applying.sort();
        let &(_, _, last) = applying.last()?;
        let tier_name = tier.map_or("default", |t| TIERS[t]);
        for &(_, _, i) in &applying {
            let hit = match &self.policies[i] {
                Policy::Kube { ns, ingress, egress, .. } => {
                    let rules = if d == INGRESS { ingress } else { egress };
                    rules
                        .iter()
                        .flatten()
                        .position(|r| {
                            let peer_ok = r.any_peer
                                || (r.ns.as_ref().map_or(self.pods[peer].ns == *ns, |s| {
                                    subset(s, self.ns_labels(peer))
                                }) && subset(
                                    r.pods.as_ref().unwrap(),
                                    &self.pods[peer].labels,
                                ));
                            peer_ok && Self::port_ok(r, probe)
                        })
                        .map(|j| (j, Act::Allow))
                }
                Policy::Calico { ns, rules, .. } => rules[d]
                    .iter()
                    .enumerate()
                    .find(|(_, r)| r.act != Act::Log && self.calico_rule(r, *ns, peer, probe))
                    .map(|(j, r)| (j, r.act)),
                Policy::Admin { .. } => unreachable!("admin policies are not in Calico tiers"),
            };
            match hit {
                None => continue,
                Some((_, Act::Pass)) => return None,
                Some((j, act)) => {
                    return Some((act == Act::Allow, self.calico_by(i, tier_name, json!(j), act)));
                }
            }
        }
        if tier.is_some_and(|t| self.tiers[t].pass) {
            return None;
        }
        Some((false, self.calico_by(last, tier_name, Value::Null, Act::Deny)))
    }

    fn calico_rule(&self, r: &Rule, ns: Option<usize>, peer: usize, probe: &Probe) -> bool {
        let protocol_ok = match r.port {
            Some(port) => !probe.udp && port == probe.port,
            None => !r.udp || probe.udp,
        };
        let peer_ok = (r.csel.is_none() && r.cns.is_none())
            || (match &r.cns {
                Some(sel) => sel.matches(self.ns_labels(peer)),
                None => ns.is_none_or(|n| n == self.pods[peer].ns),
            } && r.csel.as_ref().is_none_or(|s| s.matches(&self.pods[peer].labels)));
        protocol_ok && peer_ok
    }

    fn calico_by(&self, i: usize, tier: &str, rule: Value, act: Act) -> Value {
        let action = calico_action(act);
        match &self.policies[i] {
            Policy::Kube { ns, .. } => {
                json!({"kind": "NetworkPolicy", "namespace": format!("ns{ns}"),
                "name": self.name(i), "rule": rule, "action": action})
            }
            Policy::Calico { ns: Some(ns), .. } => json!({"kind": "NetworkPolicy",
                "namespace": format!("ns{ns}"), "name": self.name(i), "tier": tier,
                "rule": rule, "action": action}),
            _ => json!({"kind": "GlobalNetworkPolicy", "name": self.name(i), "tier": tier,
                "rule": rule, "action": action}),
        }
    }
}

fn labels() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map(
        prop::sample::select(&KEYS[..]),
        prop::sample::select(&VALUES[..]),
        0..=2,
    )
}

fn sel() -> impl Strategy<Value = Sel> {
    let key = || prop::sample::select(&KEYS[..]);
    let value = || prop::sample::select(&VALUES[..]);
    let leaf = prop_oneof![
        Just(Sel::All),
        (key(), value()).prop_map(|(k, v)| Sel::Eq(k, v)),
        (key(), value()).prop_map(|(k, v)| Sel::Ne(k, v)),
        key().prop_map(Sel::Has),
        key().prop_map(Sel::NotHas),
        (key(), value()).prop_map(|(k, v)| Sel::In(k, v)),
    ];
    prop_oneof![4 => leaf.clone(), 1 => (leaf.clone(), leaf).prop_map(|(x, y)| Sel::And(Box::new(x), Box::new(y)))]
}

fn rule() -> impl Strategy<Value = Rule> {
    let act = prop::sample::select(&[Act::Allow, Act::Deny, Act::Pass, Act::Log][..]);
    let port = prop::option::of(prop::sample::select(&PORTS[..]));
    (
        act,
        prop::option::of(labels()),
        prop::option::of(labels()),
        prop::option::of(sel()),
        prop::option::of(sel()),
        any::<bool>(),
        port,
        any::<bool>(),
    )
        .prop_map(|(act, ns, pods, csel, cns, udp, port, any_peer)| Rule {
            act,
            ns,
            pods,
            csel,
            cns,
            udp,
            port,
            any_peer,
        })
}

fn rules() -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(rule(), 0..=2)
}

fn policy() -> impl Strategy<Value = Policy> {
    let kube = (0..3usize, labels(), prop::option::of(rules()), prop::option::of(rules()))
        .prop_map(|(ns, selector, ingress, egress)| {
            let kube = |rules: Vec<Rule>| -> Vec<Rule> {
                rules
                    .into_iter()
                    .map(|r| Rule {
                        act: Act::Allow,
                        pods: Some(r.pods.clone().unwrap_or_default()),
                        ..r
                    })
                    .collect()
            };
            let ingress = match (&ingress, &egress) {
                (None, None) => Some(Vec::new()),
                _ => ingress.map(kube),
            };
            Policy::Kube { ns, selector, ingress, egress: egress.map(kube) }
        });
    let kinds = vec![AdminKind::Anp, AdminKind::Banp, AdminKind::CnpAdmin, AdminKind::CnpBaseline];
    let admin = (
        prop::sample::select(kinds),
        0..3u32,
        labels(),
        prop::option::of(labels()),
        rules(),
        rules(),
    )
        .prop_map(|(kind, priority, ns, pods, ingress, egress)| {
            let baseline = matches!(kind, AdminKind::Banp | AdminKind::CnpBaseline);
            let admin = |rules: Vec<Rule>| -> Vec<Rule> {
                let fix = |act| match act {
                    Act::Log => Act::Deny,
                    Act::Pass if baseline => Act::Allow,
                    act => act,
                };
                rules
                    .into_iter()
                    .map(|r| Rule {
                        act: fix(r.act),
                        ns: Some(r.ns.clone().unwrap_or_default()),
                        ..r
                    })
                    .collect()
            };
            Policy::Admin { kind, priority, ns, pods, rules: [admin(ingress), admin(egress)] }
        });
    let order = prop::option::of(prop::sample::select(&[100u32, 1000, 2000][..]));
    let types = prop::option::of(any::<[bool; 2]>());
    let calico =
        (
            prop::option::of(0..3usize),
            prop::option::of(0..2usize),
            order,
            sel(),
            types,
            rules(),
            rules(),
        )
            .prop_map(|(ns, tier, order, selector, types, ingress, egress)| {
                Policy::Calico { ns, tier, order, selector, types, rules: [ingress, egress] }
            });
    prop_oneof![kube, admin, calico]
}

fn cluster() -> impl Strategy<Value = Cluster> {
    let tier =
        (prop::option::of(prop::sample::select(&[100u32, 5000, 2_000_000][..])), any::<bool>())
            .prop_map(|(order, pass)| Tier { order, pass });
    (
        prop::collection::vec(labels(), 2..=3),
        prop::collection::vec((0..3usize, labels()), 2..=4),
        prop::collection::vec(tier, 0..=2),
        prop::collection::vec(policy(), 0..=4),
    )
        .prop_map(|(namespaces, pods, tiers, policies)| {
            let n = namespaces.len();
            let pods = pods.into_iter().map(|(ns, labels)| Pod { ns: ns % n, labels }).collect();
            let mut seen_banp = false;
            let has_banp =
                policies.iter().any(|p| matches!(p, Policy::Admin { kind: AdminKind::Banp, .. }));
            let policies = policies
                .into_iter()
                .enumerate()
                .filter_map(|(i, mut p)| {
                    match &mut p {
                        Policy::Kube { ns, .. } => *ns %= n,
                        Policy::Calico { ns, tier, .. } => {
                            *ns = ns.map(|x| x % n);
                            *tier = tier.filter(|&t| t < tiers.len());
                        }
                        // Upstream leaves ties in priority undefined, and a baseline tier holds
                        // one BaselineAdminNetworkPolicy (named default) or ClusterNetworkPolicies.
                        Policy::Admin { kind, priority, .. } => {
                            *priority = *priority * 10 + i as u32;
                            match kind {
                                AdminKind::Banp if seen_banp => return None,
                                AdminKind::Banp => seen_banp = true,
                                AdminKind::CnpBaseline if has_banp => return None,
                                _ => {}
                            }
                        }
                    }
                    Some(p)
                })
                .collect();
            Cluster { namespaces, pods, tiers, policies }
        })
}

fn check(cluster: &Cluster) -> Result<(), TestCaseError> {
    let text = cluster.manifests();
    let inventory = inventory_of(&text);
    for src in 0..cluster.pods.len() {
        for dst in (0..cluster.pods.len()).filter(|&d| d != src) {
            for (port, udp) in [(80, false), (81, false), (80, true)] {
                let probe = Probe { src, dst, port, udp };
                let id = |i: usize| {
                    let ns = format!("ns{}", cluster.pods[i].ns);
                    EndpointSpec::Pod(inventory.pod_id(&ns, &format!("pod{i}")).unwrap())
                };
                let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
                let flow = Flow::new(&inventory, id(src), id(dst), port, protocol);
                let options = ExplainOptions::default();
                let explanation = explain(&inventory, &flow, &options);
                let got = serde_json::to_value(&explanation).unwrap();
                let mut all = true;
                for (d, field) in [(EGRESS, "egress"), (INGRESS, "ingress")] {
                    let (allowed, by) = cluster.reference(&probe, d);
                    all &= allowed;
                    let context = format!("pod{src} -> pod{dst} {protocol}/{port} {field}\n{text}");
                    prop_assert_eq!(&got[field]["allowed"], &json!(allowed), "{}", context);
                    prop_assert_eq!(&got[field]["decided_by"], &by, "{}", context);
                }
                prop_assert_eq!(explanation.allowed(), all);
                prop_assert_eq!(is_allowed(&inventory, &flow, &options), all);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn tiered_evaluator_equals_the_brute_force_reference(cluster in cluster()) {
        check(&cluster)?;
    }
}
