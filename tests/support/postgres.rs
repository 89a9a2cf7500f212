//! A real PostgreSQL for the fleet tests, started by the test itself: `initdb` into a
//! scratch directory and `postgres` on a free loopback port, so a test can kill it, pause
//! it (`SIGSTOP` to every process of the server) and start it again on the same data. As root it runs as the `postgres` user (PostgreSQL
//! refuses to run as root).
//!
//! Without PostgreSQL installed the fleet tests skip, loudly, on a developer's machine
//! and fail under CI (`CI=true`): `.ci/run` installs Debian's `postgresql`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A PostgreSQL server of the test's own, stopped on drop.
pub(crate) struct TestPostgres {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    server: Option<Child>,
    as_postgres: bool,
}

/// Where the server binaries are: `PG_BIN`, or the newest Debian installation.
fn binaries() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("postgres").exists() && bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl TestPostgres {
    /// Starts a server, or `None` when PostgreSQL is not installed and this is not CI
    /// (the caller skips). Under CI a missing PostgreSQL fails the test.
    pub(crate) fn start() -> Option<TestPostgres> {
        let Some(bin) = binaries() else {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            assert!(
                !ci,
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): \
                 the fleet tests need it (apt-get install postgresql)"
            );
            eprintln!(
                "SKIPPING the fleet test: PostgreSQL is not installed \
                 (apt-get install postgresql, or set PG_BIN)"
            );
            return None;
        };
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Under /tmp: the postgres user must be able to reach it.
        let dir = std::env::temp_dir().join(format!("purser-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the PostgreSQL directory");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown the PostgreSQL directory to postgres"
            );
        }
        let mut postgres = TestPostgres {
            port: 0,
            bin,
            dir,
            server: None,
            as_postgres,
        };
        let initdb = postgres
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(postgres.data())
            .stdout(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        postgres.port = free_port();
        postgres.launch();
        Some(postgres)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server binary, as the `postgres` user when this runs as root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Starts the server on its port and data and waits until it accepts connections.
    fn launch(&mut self) {
        self.spawn_server();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.accepts() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("server.log"))
            .expect("server log");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        self.server = Some(command.spawn().expect("start postgres"));
    }

    fn accepts(&self) -> bool {
        self.command("pg_isready")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
            .status()
            .is_ok_and(|status| status.success())
    }

    /// The server's own log.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A new database, and the URL Purser is given for it.
    pub(crate) fn database(&self, name: &str) -> String {
        let created = self
            .command("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-qc",
                &format!("CREATE DATABASE {name}"),
            ])
            .output()
            .expect("run psql");
        assert!(
            created.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        self.url(name)
    }

    pub(crate) fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL and returns its rows, `|`-separated.
    pub(crate) fn query(&self, database: &str, sql: &str) -> Vec<String> {
        let out = self
            .command("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-XAtc", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Signals the postmaster and every process it started (PostgreSQL puts each of
    /// them in a session of its own, so a process group does not reach them).
    fn signal_group(&self, signal: &str) {
        let Some(server) = &self.server else {
            return;
        };
        let mut pids = vec![server.id().to_string()];
        pids.extend(children_of(server.id()).iter().map(u32::to_string));
        // One `kill` for all of them, so they stop (or die) together, as in a crash. A
        // child may have exited meanwhile: nothing to say about it.
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&pids)
            .stderr(Stdio::null())
            .status();
    }

    /// Freezes the WAL writer (`SIGSTOP`) until the server is killed: what a transaction
    /// committed without waiting for the disk then stays in the server's memory, where a
    /// crash takes it back, instead of reaching the disk within milliseconds.
    pub(crate) fn freeze_wal_writer(&self) {
        let Some(server) = &self.server else {
            return;
        };
        let writer = children_of(server.id()).into_iter().find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("walwriter"))
        });
        let writer = writer.expect("PostgreSQL's walwriter process");
        let status = Command::new("kill")
            .args(["-STOP", &writer.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "stop the WAL writer");
    }

    /// Freezes every server process (`SIGSTOP`): connections stay open, nothing answers.
    pub(crate) fn pause(&self) {
        self.signal_group("STOP");
    }

    /// Lets a paused server run again.
    pub(crate) fn resume(&self) {
        self.signal_group("CONT");
    }

    /// Kills the server as a crash would (`SIGKILL` to every process): what was not on
    /// disk is gone, and the next start recovers from the write-ahead log.
    pub(crate) fn kill(&mut self) {
        // Not resumed first: `SIGKILL` ends a stopped process too, and a frozen WAL writer
        // let run even briefly would write what the crash should take back.
        self.signal_group("KILL");
        if let Some(mut server) = self.server.take() {
            let _ = server.wait();
        }
        // Backends exit once they see the postmaster gone; the next start needs them out.
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Starts the server again on the same port and data (after a crash it replays its
    /// write-ahead log first; a start that finds the old processes still leaving retries).
    pub(crate) fn restart(&mut self) {
        if self.server.is_some() {
            self.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.spawn_server();
            let attempt = Instant::now() + Duration::from_secs(10);
            while Instant::now() < attempt && !self.exited() {
                if self.accepts() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not restart: {}",
                self.log()
            );
            self.kill();
        }
    }

    fn exited(&mut self) -> bool {
        self.server
            .as_mut()
            .is_none_or(|server| server.try_wait().ok().flatten().is_some())
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.resume();
        self.signal_group("KILL");
        if let Some(mut server) = self.server.take() {
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // The command may hold spaces and parentheses: fields follow the last ')'.
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}
