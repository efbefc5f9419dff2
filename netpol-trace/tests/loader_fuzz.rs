//! Fuzzes the manifest loader and inventory build with random and mutated YAML/JSON: any input
//! may be rejected, none may panic.

use std::path::Path;

use netpol_trace::inventory::{ClusterObjects, Inventory, InventoryOptions};
use netpol_trace::manifest::{Syntax, parse_manifest};
use proptest::prelude::*;

const SEEDS: [&str; 4] = [
    include_str!("fixtures/mysql.yaml"),
    "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: p}\n  spec:\n    podSelector: {matchExpressions: [{key: a, operator: NotIn, values: [b]}]}\n    egress: [{to: [{ipBlock: {cidr: 'fd00::/64', except: ['fd00::/96']}}], ports: [{port: 1, endPort: 2}]}]\n",
    "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"a\"}, \"status\": {\"podIP\": \"10.0.0.1\"}}",
    "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {a: b}, ports: [{port: 80, targetPort: http}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.1]}]\n",
];

/// Edge inputs pinned as fixed cases: empty documents, a List whose items is no list, List items
/// that are not objects.
const EDGE_CASES: [&str; 3] = [
    "---\n---\n",
    "kind: List\nitems: 3\n",
    "apiVersion: v1\nkind: List\nitems: [null, 1, {kind: Pod}]\n",
];

fn load(text: &str) {
    for syntax in [Syntax::Yaml, Syntax::Json] {
        let mut objects = ClusterObjects::default();
        if parse_manifest(text, Path::new("fuzz.yaml"), syntax, &mut objects).is_ok() {
            let _ = Inventory::from_objects(objects, InventoryOptions::default());
        }
    }
}

/// A random edit of `seed`: delete, duplicate or replace a span with YAML-ish noise.
fn mutated() -> impl Strategy<Value = String> {
    let noise = prop_oneof![
        Just("{".to_owned()),
        Just("]".to_owned()),
        Just(": ".to_owned()),
        Just("\n- ".to_owned()),
        Just("---\n".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("65536".to_owned()),
        Just("null".to_owned()),
        Just("~".to_owned()),
        Just("'::/0'".to_owned()),
        Just("&a *a".to_owned()),
        Just("!!binary".to_owned()),
        "[ -~]{0,8}".prop_map(|s| s),
    ];
    (
        0..SEEDS.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), 0usize..12, noise), 1..6),
    )
        .prop_map(|(seed, edits)| {
            let mut text = SEEDS[seed].to_owned();
            for (at, len, insert) in edits {
                let mut start = at.index(text.len() + 1);
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                let mut end = (start + len).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.replace_range(start..end, &insert);
            }
            text
        })
}

#[test]
fn seeds_and_edge_cases_load() {
    for seed in SEEDS {
        let mut objects = ClusterObjects::default();
        parse_manifest(seed, Path::new("seed.yaml"), Syntax::Yaml, &mut objects).unwrap();
        Inventory::from_objects(objects, InventoryOptions::default()).unwrap();
    }
    for input in EDGE_CASES {
        load(input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_manifests_never_panic(text in mutated()) {
        load(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        load(&text);
    }
}
