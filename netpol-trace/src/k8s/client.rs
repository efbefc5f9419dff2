//! Connecting to a cluster the way kubectl does: `--kubeconfig`, `--context`, the context's
//! namespace as the default for `-n`, `--dry-run=none|client|server`, and printed `kubectl`
//! commands that name the same kubeconfig and context (so a pasted command cannot patch
//! another cluster).

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::error::{Error, Result};
use crate::fix::kubectl::shell_word;

/// The namespace used when neither `-n` nor the kubeconfig context names one.
pub const FALLBACK_NAMESPACE: &str = "default";

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

impl ClusterArgs {
    /// The flags that select this cluster on a kubectl command line, each preceded by a
    /// space (empty when the user gave neither).
    pub fn kubectl_flags(&self) -> String {
        let mut flags = String::new();
        if let Some(path) = &self.kubeconfig {
            flags.push_str(" --kubeconfig ");
            flags.push_str(&shell_word(&path.to_string_lossy()));
        }
        if let Some(context) = &self.context {
            flags.push_str(" --context ");
            flags.push_str(&shell_word(context));
        }
        flags
    }

    /// `command` (a `kubectl ...` line) with this cluster's `--kubeconfig`/`--context` right
    /// after `kubectl`; other text is returned unchanged.
    pub fn kubectl(&self, command: &str) -> String {
        match command.strip_prefix("kubectl ") {
            Some(rest) => format!("kubectl{} {rest}", self.kubectl_flags()),
            None => command.to_owned(),
        }
    }

    /// The namespace kubectl would use without `-n`: the selected context's namespace, else
    /// the in-cluster service account's, else `default` (also when no configuration loads).
    pub async fn default_namespace(&self) -> String {
        match load_config(self).await {
            Ok(config) if !config.default_namespace.is_empty() => config.default_namespace,
            _ => FALLBACK_NAMESPACE.to_owned(),
        }
    }

    /// [`Self::default_namespace`] for synchronous callers (a short-lived runtime; reading
    /// the kubeconfig sends no request).
    pub fn default_namespace_blocking(&self) -> String {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => std::thread::scope(|scope| {
                scope
                    .spawn(|| Self::block_on_namespace(self))
                    .join()
                    .unwrap_or_else(|_| FALLBACK_NAMESPACE.to_owned())
            }),
            Err(_) => Self::block_on_namespace(self),
        }
    }

    fn block_on_namespace(&self) -> String {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(self.default_namespace()),
            Err(_) => FALLBACK_NAMESPACE.to_owned(),
        }
    }
}

/// kubectl's `--dry-run` modes for commands that write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DryRun {
    /// Write for real.
    #[default]
    None,
    /// Show what would be written; send no write to the API server (reads are fine).
    Client,
    /// Send every write with `dryRun=All`: the API server validates and persists nothing.
    Server,
}

impl DryRun {
    /// Whether nothing is persisted.
    pub fn is_dry(self) -> bool {
        self != Self::None
    }
}

/// The `--dry-run` flag, shared by the commands that write.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct DryRunArgs {
    /// Write nothing: `client` shows what would be written without sending a write, `server`
    /// has the API server validate every write without persisting it. A bare `--dry-run`
    /// means `client`, as in kubectl.
    #[arg(
        long = "dry-run",
        value_enum,
        value_name = "none|client|server",
        num_args = 0..=1,
        require_equals = true,
        default_value = "none",
        default_missing_value = "client"
    )]
    pub dry_run: DryRun,
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
        assert_eq!(args.default_namespace().await, "default");

        let wrong = ClusterArgs { kubeconfig: Some(path), context: Some("nope".into()) };
        let Err(err) = connect(&wrong).await else { panic!("unknown context accepted") };
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[test]
    fn printed_commands_carry_the_kubeconfig_and_context() {
        let args = ClusterArgs {
            kubeconfig: Some("/home/me/.kube/prod config".into()),
            context: Some("prod-eu".into()),
        };
        assert_eq!(
            args.kubectl("kubectl patch networkpolicy -n db x --type=json -p '[]'"),
            "kubectl --kubeconfig '/home/me/.kube/prod config' --context prod-eu patch networkpolicy -n db x --type=json -p '[]'"
        );
        assert_eq!(ClusterArgs::default().kubectl("kubectl get pods"), "kubectl get pods");
        assert_eq!(args.kubectl("netpol-trace restore x"), "netpol-trace restore x");
    }

    #[test]
    fn namespace_defaults_to_the_contexts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
             clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n\
             users: [{name: u, user: {}}]\n\
             contexts: [{name: a, context: {cluster: c, user: u, namespace: shop}},\
                        {name: b, context: {cluster: c, user: u}}]\n",
        )
        .unwrap();
        let current = ClusterArgs { kubeconfig: Some(path.clone()), context: None };
        assert_eq!(current.default_namespace_blocking(), "shop");
        let other = ClusterArgs { kubeconfig: Some(path.clone()), context: Some("b".into()) };
        assert_eq!(other.default_namespace_blocking(), "default");
        let missing = ClusterArgs { kubeconfig: Some(dir.path().join("none")), context: None };
        assert_eq!(missing.default_namespace_blocking(), "default");
    }

    #[derive(clap::Parser)]
    struct DryRunCli {
        #[command(flatten)]
        dry: DryRunArgs,
        path: Option<String>,
    }

    #[test]
    fn dry_run_takes_kubectls_modes_and_bare_means_client() {
        use clap::Parser;
        let parse =
            |args: &[&str]| DryRunCli::try_parse_from(args).map(|c| (c.dry.dry_run, c.path));
        assert_eq!(parse(&["x"]).unwrap().0, DryRun::None);
        assert_eq!(parse(&["x", "--dry-run"]).unwrap().0, DryRun::Client);
        assert_eq!(parse(&["x", "--dry-run=server"]).unwrap().0, DryRun::Server);
        assert_eq!(parse(&["x", "--dry-run=none"]).unwrap().0, DryRun::None);
        // A bare --dry-run before a positional does not eat it.
        assert_eq!(
            parse(&["x", "--dry-run", "backup"]).unwrap(),
            (DryRun::Client, Some("backup".into()))
        );
        assert!(parse(&["x", "--dry-run=yes"]).is_err());
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
