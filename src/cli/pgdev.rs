//! A throwaway PostgreSQL cluster for development, tests and benchmarks: `initdb` in a directory,
//! the server started on 127.0.0.1 with a free ephemeral port, stopped (or killed) on demand.
//!
//! PostgreSQL refuses to run as root: when this process is root, `initdb`, `pg_ctl` and the
//! server run as the `postgres` system user (which Debian's `postgresql` package creates), through
//! `runuser`, and the directory is handed to that user. Otherwise they run as the current user.
//! The binaries are found in `PATH` or under `/usr/lib/postgresql/<version>/bin` (the newest);
//! `scripts/pg-dev install` (or `apt-get install postgresql`) installs them.
//!
//! The cluster's superuser is `custos`, with a random password kept in `DIR/password` (0600):
//! connections over TCP authenticate with it (SCRAM), so the password path Custos uses in
//! production is the one exercised here; the local socket (in `DIR`) trusts its user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::secret::SecretString;

/// The superuser (and database) name of a development cluster.
pub const USER: &str = "custos";

/// A running (or stopped) development cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    run_as: Option<String>,
    running: bool,
    keep_running: bool,
}

fn text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s.trim().to_owned()
}

/// The directory holding `initdb` and `pg_ctl`.
pub fn find_binaries() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // The real directory (a link in PATH may point into the versioned one, which also
            // holds psql and createdb).
            let initdb = dir.join("initdb");
            if let Some(real) = initdb
                .canonicalize()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
            {
                if real.join("pg_ctl").is_file() && real.join("createdb").is_file() {
                    return Ok(real);
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL is not installed (no initdb in PATH or /usr/lib/postgresql/*/bin): run \
         `scripts/pg-dev install`, or `apt-get install postgresql`"
            .to_owned()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A free TCP port on 127.0.0.1 (the listener is closed again at once).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

fn random_password() -> Result<String, String> {
    let mut bytes = [0u8; 18];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("random generator failed: {e}"))?;
    let text = hex::encode(bytes);
    bytes.fill(0);
    Ok(text)
}

impl Cluster {
    /// Creates a cluster in `dir` if it holds none (`initdb`), and starts it on a free port.
    pub fn start(dir: &Path) -> Result<Cluster, String> {
        let bin = find_binaries()?;
        let run_as = if is_root() {
            Some("postgres".to_owned())
        } else {
            None
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cluster = Cluster {
            dir,
            port: 0,
            bin,
            run_as,
            running: false,
            keep_running: false,
        };
        if !cluster.data().join("PG_VERSION").is_file() {
            cluster.init()?;
        }
        // The port of the last start, if it is still free (configurations name it).
        cluster.port = std::fs::read_to_string(cluster.dir.join("port"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .unwrap_or(0);
        cluster.start_again()?;
        let _ = std::fs::write(cluster.dir.join("port"), format!("{}\n", cluster.port));
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command for a PostgreSQL binary, as the cluster's user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(&self, what: &str, mut command: Command) -> Result<(), String> {
        let out = command
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{what}: cannot run: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{what} failed: {}", text(&out)))
        }
    }

    fn init(&mut self) -> Result<(), String> {
        let password = random_password()?;
        let pwfile = self.dir.join("password");
        crate::service::devcerts::write_file(&pwfile, password.as_bytes(), true)
            .map_err(|e| e.to_string())?;
        if let Some(user) = &self.run_as {
            // The server's user must own its directory and read the password file once.
            let out = Command::new("chown")
                .args(["-R", &format!("{user}:")])
                .arg(&self.dir)
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "cannot hand {} to the '{user}' user (PostgreSQL refuses to run as root; \
                     Debian's postgresql package creates that user): {}",
                    self.dir.display(),
                    text(&out)
                ));
            }
            let _ = Command::new("chmod").arg("0755").arg(&self.dir).output();
        }
        let mut initdb = self.command("initdb");
        initdb
            .arg("-D")
            .arg(self.data())
            .args(["-U", USER, "-E", "UTF8", "--locale=C", "--no-instructions"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()));
        self.run("initdb", initdb)?;
        Ok(())
    }

    /// Starts the server (again) on a free port (the previous one when restarting).
    pub fn start_again(&mut self) -> Result<(), String> {
        if self.running {
            return Ok(());
        }
        let mut last = String::new();
        for _ in 0..5 {
            if self.port == 0 {
                self.port = free_port()?;
            }
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} \
                 -c max_connections=300",
                self.port,
                self.dir.display()
            );
            let mut start = self.command("pg_ctl");
            start
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-o", &options, "-w", "-t", "60", "start"]);
            match self.run("pg_ctl start", start) {
                Ok(()) => {
                    self.running = true;
                    self.create_database()?;
                    return Ok(());
                }
                Err(e) => {
                    last = format!(
                        "{e}\n{}",
                        std::fs::read_to_string(self.dir.join("server.log"))
                            .unwrap_or_default()
                            .lines()
                            .rev()
                            .take(5)
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                    self.port = 0;
                }
            }
        }
        Err(last)
    }

    fn create_database(&self) -> Result<(), String> {
        let mut psql = self.command("psql");
        psql.args(["-h"])
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", "postgres"])
            .args(["-v", "ON_ERROR_STOP=1", "-tA", "-c"])
            .arg(format!(
                "SELECT 1 FROM pg_database WHERE datname = '{USER}'"
            ));
        let out = psql
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            return Ok(());
        }
        let mut createdb = self.command("createdb");
        createdb
            .args(["-h"])
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", USER, USER]);
        self.run("createdb", createdb)
    }

    /// Stops the server of the cluster in `dir` (started earlier, by another process).
    pub fn stop_dir(dir: &Path) -> Result<(), String> {
        let data = dir.join("data");
        if !data.join("PG_VERSION").is_file() {
            return Err(format!("no PostgreSQL cluster in {}", dir.display()));
        }
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            port: 0,
            bin: find_binaries()?,
            run_as: is_root().then(|| "postgres".to_owned()),
            running: true,
            keep_running: true,
        };
        cluster.stop(false)
    }

    /// Stops the server: `fast` (clean) or `immediate` (as a crash: WAL recovery at the next
    /// start).
    pub fn stop(&mut self, immediate: bool) -> Result<(), String> {
        if !self.running {
            return Ok(());
        }
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", if immediate { "immediate" } else { "fast" }])
            .args(["-w", "-t", "60", "stop"]);
        self.run("pg_ctl stop", stop)?;
        self.running = false;
        Ok(())
    }

    /// Stops the server (immediately) and removes `remove` once process `pid` has ended, from a
    /// small watchdog shell running apart from this process: for handles that are never dropped
    /// (a cluster shared by a test binary lives in a static).
    pub fn stop_when_process_ends(&self, pid: u32, remove: &Path) -> Result<(), String> {
        let pg_ctl = self.bin.join("pg_ctl");
        let as_user = match &self.run_as {
            Some(user) => format!("runuser -u {user} -- "),
            None => String::new(),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {as_user}'{}' -D '{}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{}'",
            pg_ctl.display(),
            self.data().display(),
            remove.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|_| ())
            .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))
    }

    /// Leaves the server running when this handle is dropped (`custos dev postgres`).
    pub fn keep_running(&mut self) {
        self.keep_running = true;
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the superuser's password.
    pub fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    /// The superuser's password.
    pub fn password(&self) -> Result<SecretString, String> {
        SecretString::from_file(&self.password_file())
            .map(|s| SecretString::new(s.expose_secret().trim().to_owned()))
            .map_err(|e| format!("{}: {e}", self.password_file().display()))
    }

    /// `postgres://custos@127.0.0.1:PORT/custos` (no password: it is in [`Cluster::password_file`]).
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{USER}", self.port)
    }

    /// Settings for the cluster's database, in `schema` if given.
    pub fn settings(
        &self,
        schema: Option<&str>,
    ) -> Result<crate::state::postgres::PgSettings, String> {
        let mut settings = crate::state::postgres::PgSettings::new(self.url());
        settings.password = Some(self.password()?);
        settings.schema = schema.map(str::to_owned);
        Ok(settings)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.keep_running {
            let _ = self.stop(true);
        }
    }
}
