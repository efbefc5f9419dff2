//! Prints the DropReport CRD generated from the Rust types, as shipped in
//! `deploy/crd-dropreport.yaml` and the Helm chart's `crds/dropreports.yaml`:
//!
//! ```sh
//! cargo run -p netpol-trace --example dropreport_crd > deploy/crd-dropreport.yaml
//! cp deploy/crd-dropreport.yaml deploy/helm/netpol-trace/crds/dropreports.yaml
//! ```

fn main() -> anyhow::Result<()> {
    print!("{}", netpol_trace::operator::report::crd_yaml()?);
    Ok(())
}
