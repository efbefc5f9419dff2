//! Connecting to a cluster: kubeconfig (with `--kubeconfig`/`--context`) or in-cluster.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::error::{Error, Result};

/// How long the first request may take before the cluster counts as unreachable.
pub const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster-selection flags shared by every command that talks to a cluster.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// Loads the client configuration: an explicit kubeconfig file or context when given,
/// otherwise kube's inference ($KUBECONFIG, ~/.kube/config, then the in-cluster service account).
pub async fn load_config(args: &ClusterArgs) -> Result<kube::Config> {
    let options = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
        }
        (None, Some(context)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::Config(format!("context {context}: {e}"))),
        (None, None) => kube::Config::infer().await.map_err(|e| Error::Config(e.to_string())),
    }
}

/// Builds a client and checks that the API server answers (its `/version`), so that a
/// missing cluster is reported once, clearly, instead of as the first failing request.
pub async fn connect(args: &ClusterArgs) -> Result<kube::Client> {
    let config = load_config(args).await?;
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    match tokio::time::timeout(REACHABILITY_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(Error::Unreachable { url, reason: e.to_string() }),
        Err(_) => Err(Error::Unreachable {
            url,
            reason: format!("no answer within {}s", REACHABILITY_TIMEOUT.as_secs()),
        }),
    }
}

/// A client for the selected cluster and the namespace a command works in: `namespace` when
/// given, else the kubeconfig context's (or the in-cluster service account's).
pub async fn client_and_namespace(
    args: &ClusterArgs,
    namespace: Option<&str>,
) -> Result<(kube::Client, String)> {
    let config = load_config(args).await?;
    let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_string);
    let client = kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok((client, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake_apiserver::FakeApiServer;

    #[tokio::test]
    async fn connects_through_a_kubeconfig_file_and_context() {
        let fake = FakeApiServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        fake.write_kubeconfig(&path).unwrap();
        let args = ClusterArgs { kubeconfig: Some(path.clone()), context: Some("fake".into()) };
        tokio::time::timeout(Duration::from_secs(5), connect(&args)).await.unwrap().unwrap();

        let wrong = ClusterArgs { kubeconfig: Some(path), context: Some("nope".into()) };
        let Err(err) = connect(&wrong).await else { panic!("unknown context accepted") };
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[tokio::test]
    async fn unreachable_cluster_is_named() {
        let fake = FakeApiServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        fake.write_kubeconfig(&path).unwrap();
        drop(fake);
        let args = ClusterArgs { kubeconfig: Some(path), context: None };
        let Err(err) = tokio::time::timeout(Duration::from_secs(5), connect(&args)).await.unwrap()
        else {
            panic!("a stopped server counted as reachable")
        };
        assert!(
            err.to_string().starts_with("no Kubernetes cluster reachable at http://127.0.0.1:"),
            "{err}"
        );
    }
}
