//! Fixtures shared by the unit tests of several modules.

use crate::{
    inventory::{ClusterObjects, Inventory, InventoryOptions},
    manifest::{Syntax, parse_manifest},
};

/// A web pod, a MariaDB pod behind a Service, and an ingress policy with a port typo (3307).
pub(crate) const MYSQL_MANIFESTS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: app, labels: {app: web}}
spec: {containers: [{name: web, image: web}]}
status: {podIP: 10.0.1.5}
---
apiVersion: v1
kind: Pod
metadata: {name: mysql-0, namespace: db, labels: {app: mysql}}
spec: {containers: [{name: db, image: mariadb, ports: [{containerPort: 3306, name: mysql}]}]}
status: {podIP: 10.0.2.7}
---
apiVersion: v1
kind: Service
metadata: {name: mysql, namespace: db}
spec: {selector: {app: mysql}, clusterIP: 10.96.0.10, ports: [{port: 13306, targetPort: mysql}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: mysql-ingress, namespace: db}
spec:
  podSelector: {matchLabels: {app: mysql}}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 3307}]
"#;

/// The inventory of a multi-document YAML text.
pub(crate) fn inventory_of(manifests: &str) -> Inventory {
    let mut objects = ClusterObjects::default();
    parse_manifest(manifests, std::path::Path::new("fixture.yaml"), Syntax::Yaml, &mut objects)
        .expect("fixture parses");
    Inventory::from_objects(objects, InventoryOptions::default()).expect("fixture is valid")
}
