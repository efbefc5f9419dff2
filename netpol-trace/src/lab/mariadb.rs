//! A real MariaDB server in a pod: data directory initialised with `mariadb-install-db` under
//! the run directory, `mariadbd` started inside the pod's network namespace bound to the pod IP,
//! a user that may connect from any host, readiness checked with a real handshake greeting.

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::error::{LabError, Result};
use super::naming::process_name;
use super::paths::{MARIADB_INSTALL_DB_BIN, MARIADBD_BIN, RunDir, tool};
use super::process::{DaemonRecord, is_running, spawn_daemon, stop_daemon};
use super::system::run_command;
use super::topology::LabPod;
use crate::netns::in_netns;

/// The port MariaDB listens on.
pub const MARIADB_PORT: u16 = 3306;
/// The user created for clients in other pods (`'lab'@'%'`, all privileges).
pub const MARIADB_USER: &str = "lab";
/// Its password.
pub const MARIADB_PASSWORD: &str = "netpol-trace-lab";
/// How long the server gets to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Role name of the server process (see [`process_name`]).
pub const MARIADB_ROLE: &str = "mariadb";

/// Server options that keep a lab database small and self-contained.
const SIZE_OPTIONS: [&str; 3] =
    ["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M", "--skip-log-bin"];

/// Files of one pod's server inside the run directory.
#[derive(Debug, Clone)]
pub struct MariadbFiles {
    dir: PathBuf,
}

impl MariadbFiles {
    /// The files of `pod`'s server.
    pub fn new(run_dir: &RunDir, pod: &LabPod) -> Self {
        Self { dir: run_dir.mariadb_dir(&format!("{}.{}", pod.namespace, pod.name)) }
    }

    /// Data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// The server's own PID file.
    pub fn server_pid_file(&self) -> PathBuf {
        self.dir.join("mysqld.pid")
    }

    /// SQL run at every start (creates the client user).
    pub fn init_file(&self) -> PathBuf {
        self.dir.join("init.sql")
    }

    /// Temporary files.
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }
}

/// The SQL creating the client user.
pub fn init_sql() -> String {
    format!(
        "CREATE USER IF NOT EXISTS '{MARIADB_USER}'@'%' IDENTIFIED BY '{MARIADB_PASSWORD}';\n\
         GRANT ALL PRIVILEGES ON *.* TO '{MARIADB_USER}'@'%';\n"
    )
}

/// Initialises the data directory, starts the server in the pod and waits until it greets a
/// client on `pod.ip:3306`.
pub fn start(
    run_dir: &RunDir,
    pod: &LabPod,
    on_spawned: impl FnOnce(&DaemonRecord) -> Result<()>,
) -> Result<DaemonRecord> {
    let files = MariadbFiles::new(run_dir, pod);
    for dir in [files.data_dir(), files.tmp_dir()] {
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    }
    write(&files.init_file(), &init_sql())?;
    let started = Instant::now();
    install_db(&files)?;
    tracing::info!(pod = %pod.key(), elapsed = ?started.elapsed(), "MariaDB data directory initialised");
    let args = server_args(&files, pod);
    let name = process_name(MARIADB_ROLE, &pod.namespace, &pod.name);
    let record =
        spawn_daemon(run_dir, &name, &pod.key(), &pod.netns, Path::new(MARIADBD_BIN), &args)?;
    on_spawned(&record)?;
    wait_ready(pod, &record)?;
    Ok(record)
}

/// Stops the server started by [`start`]; returns whether it was running.
pub fn stop(record: &DaemonRecord) -> bool {
    stop_daemon(record)
}

fn install_db(files: &MariadbFiles) -> Result<()> {
    let mut command = Command::new(tool(MARIADB_INSTALL_DB_BIN));
    command
        .arg("--no-defaults")
        .arg(format!("--datadir={}", files.data_dir().display()))
        .arg(format!("--tmpdir={}", files.tmp_dir().display()))
        .args(["--user=root", "--auth-root-authentication-method=socket", "--skip-test-db"])
        .args(SIZE_OPTIONS);
    run_command(&mut command, None).map(drop)
}

fn server_args(files: &MariadbFiles, pod: &LabPod) -> Vec<String> {
    let mut args = vec![
        // Must come first: ignore /etc/mysql so the host's configuration cannot interfere.
        "--no-defaults".to_owned(),
        format!("--datadir={}", files.data_dir().display()),
        format!("--tmpdir={}", files.tmp_dir().display()),
        format!("--socket={}", files.socket().display()),
        format!("--pid-file={}", files.server_pid_file().display()),
        format!("--init-file={}", files.init_file().display()),
        format!("--bind-address={}", pod.ip),
        format!("--port={MARIADB_PORT}"),
        "--user=root".to_owned(),
        "--skip-name-resolve".to_owned(),
    ];
    args.extend(SIZE_OPTIONS.iter().map(|s| (*s).to_owned()));
    args
}

fn wait_ready(pod: &LabPod, record: &DaemonRecord) -> Result<()> {
    let target = SocketAddr::new(pod.ip, MARIADB_PORT);
    let started = Instant::now();
    while started.elapsed() < READY_TIMEOUT {
        if !is_running(record) {
            break;
        }
        if in_netns(&pod.netns, || greets(target))? {
            tracing::debug!(pod = %pod.key(), elapsed = ?started.elapsed(), "MariaDB ready");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(LabError::NotReady {
        what: format!("MariaDB in pod {}", pod.key()),
        seconds: READY_TIMEOUT.as_secs(),
        log: record.log_file.clone(),
    })
}

/// Whether a server at `target` sends its handshake greeting.
fn greets(target: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(1))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}
