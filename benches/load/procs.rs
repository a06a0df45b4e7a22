//! Child processes under test (the release `darkroom`, the Node reference,
//! the bare-axum floor): started on a free loopback port, waited for, and
//! killed when their guard drops — also on panic, and on Ctrl-C through a
//! registry of live process ids.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Process ids of children still running, for the Ctrl-C handler.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A running child; dropping it kills it and waits for it.
pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    pub name: &'static str,
    /// A darkroom's data directory and PostgreSQL database, for a second
    /// instance beside it ([`darkroom_beside`]).
    site: Option<(PathBuf, Option<String>)>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmHWM` (peak resident set) and `VmRSS` of the child, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|&p| p != pid);
        }
    }
}

/// Kills every registered child (the Ctrl-C path; `Drop` does it otherwise).
pub fn kill_all() {
    if let Ok(live) = LIVE.lock() {
        for pid in live.iter() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

/// Starts `cmd` (already configured with the port it must listen on), then
/// waits until `addr` accepts connections.
pub fn start(name: &'static str, mut cmd: Command, addr: SocketAddr, log: &Path) -> Proc {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("could not start {name}: {e}"));
    LIVE.lock().expect("registry").push(child.id());
    eprintln!("  started {name}: pid {} on {addr}", child.id());
    let mut proc = Proc { child, addr, name, site: None };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("{name} exited with {status} before listening; see {}", log.display());
        }
        assert!(Instant::now() < deadline, "{name} did not listen on {addr} within 30 s; see {}", log.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    proc
}

/// The repository root (benches run from it; the server reads `Leptos.toml`
/// and serves `target/site` relative to it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The server under test: `$DARKROOM_BENCH_BIN` (the Makefile's copy of the
/// `make build` binary), else `target/release/darkroom`.
pub fn server_bin() -> PathBuf {
    std::env::var_os("DARKROOM_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/darkroom"))
}

/// The site the server under test serves (`$DARKROOM_BENCH_SITE`, the
/// Makefile's copy of `make build`'s output, else `target/site`).
pub fn site_root() -> PathBuf {
    std::env::var_os("DARKROOM_BENCH_SITE").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target/site"))
}

/// The PostgreSQL server the run uses instead of SQLite (`--postgres URL`).
static POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Runs every server of this run on PostgreSQL at `server` (a URL without
/// a database name), a fresh database per server; the bench databases of
/// earlier runs are dropped first.
pub fn use_postgres(server: &str) {
    let server = server.trim_end_matches('/').to_owned();
    let old = psql(&server, "SELECT datname FROM pg_database WHERE datname LIKE 'darkroom_bench_%'");
    for name in old.lines().map(str::trim).filter(|l| !l.is_empty()) {
        psql(&server, &format!("DROP DATABASE IF EXISTS {name}"));
    }
    let _ = POSTGRES.set(server);
}

/// Whether this run's servers use PostgreSQL (`--postgres`).
pub fn on_postgres() -> bool {
    POSTGRES.get().is_some()
}

/// A new database on the run's PostgreSQL server, or `None` on SQLite.
fn fresh_database() -> Option<String> {
    let server = POSTGRES.get()?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("darkroom_bench_{nanos:x}");
    psql(server, &format!("CREATE DATABASE {name}"));
    Some(format!("{server}/{name}"))
}

/// Runs one statement with `psql` against the server's `postgres`
/// database; its output.
fn psql(server: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-Atqc", sql])
        .output()
        .unwrap_or_else(|e| panic!("psql: {e}"));
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The release server with a fresh data directory under `data_dir` (and a
/// fresh PostgreSQL database with `--postgres`), the simulator, and `env`
/// on top of the bench defaults.
pub fn darkroom(data_dir: &Path, env: &[(&str, String)]) -> Proc {
    darkroom_on(data_dir, fresh_database(), env, "server.log")
}

/// A second instance of `first`'s site (PostgreSQL only): the same
/// database, and the same data directory, so the same object folder and
/// simulator key — each instance's simulator answers for predictions the
/// other's created, as one provider would. `env` as `first` was given it.
pub fn darkroom_beside(first: &Proc, env: &[(&str, String)]) -> Proc {
    let (data_dir, database) = first.site.clone().expect("a darkroom");
    assert!(database.is_some(), "two instances share a PostgreSQL database");
    darkroom_on(&data_dir, database, env, "server-2.log")
}

fn darkroom_on(data_dir: &Path, database: Option<String>, env: &[(&str, String)], log: &str) -> Proc {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let root = repo_root();
    let mut cmd = Command::new(server_bin());
    cmd.current_dir(&root)
        .env("LEPTOS_SITE_ADDR", addr.to_string())
        .env("LEPTOS_SITE_ROOT", site_root())
        .env("DARKROOM_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .env("DARKROOM_AUTH_ATTEMPTS_PER_MINUTE", "10000")
        .env("DARKROOM_SIGNUPS_PER_HOUR", "1000000")
        .env("DARKROOM_SIGNUPS_PER_ADDRESS_PER_HOUR", "1000000")
        // The load accounts start thousands of generations at once.
        .env("DARKROOM_MAX_ACTIVE_TASKS", "10000")
        .env("DARKROOM_GENERATIONS_PER_MINUTE", "100000")
        .env("DARKROOM_SIGNUP_CREDITS", "10000000");
    if let Some(url) = &database {
        cmd.env("DATABASE_URL", url);
    }
    for (k, v) in env {
        // `DARKROOM_PUBLIC_URL=self`: this server's own address (webhooks).
        let v = if *k == "DARKROOM_PUBLIC_URL" && v == "self" { format!("http://{addr}") } else { v.clone() };
        cmd.env(k, v);
    }
    std::fs::create_dir_all(data_dir).expect("data dir");
    let mut proc = start("darkroom", cmd, addr, &data_dir.join(log));
    proc.site = Some((data_dir.to_owned(), database));
    proc
}
