//! A cluster on one machine, from real processes on free loopback ports in temporary
//! directories: a throwaway PostgreSQL (`initdb` and `pg_ctl`, as the `postgres` user when
//! run as root, since initdb refuses root), a `nats-server`, and relay nodes
//! (`tally-relay --postgres URL serve --nats URL`). Each can be stopped and started again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tally_relay::auth::Keys;
use tally_shared::Offset;
use tally_shared::protocol::LoggedEvent;

use super::{Client, Killed, UNLIMITED, sid};

/// A free loopback port (free when asked; nothing else here takes ports meanwhile).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A PostgreSQL server program: on PATH, or where Debian's package puts it.
fn pg_bin(name: &str) -> PathBuf {
    let on_path = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string()));
    if let Some(p) = on_path {
        return p;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin").join(name)).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found: `make test` installs postgresql"))
}

/// Runs a PostgreSQL program (as `postgres` when we are root); it must succeed.
fn pg_run(program: &str, args: &[&str]) {
    let bin = pg_bin(program);
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&bin)
            .args(args)
            .output()
    } else {
        Command::new(&bin).args(args).output()
    }
    .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway PostgreSQL.
pub struct Pg {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Pg {
    pub fn start() -> Pg {
        let dir = tempfile::Builder::new().prefix("tally-pg").tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let data = dir.path().join("db");
        pg_run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "tally",
                "--no-sync",
            ],
        );
        let pg = Pg {
            dir,
            port: free_port(),
        };
        pg.up();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        pg_run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "start",
                "-w",
            ],
        );
    }

    /// Stops the server (`fast`: sessions are ended, transactions rolled back).
    pub fn down(&self) {
        pg_run(
            "pg_ctl",
            &["-D", self.data().to_str().unwrap(), "stop", "-m", "fast", "-w"],
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://tally@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `f` with a client (on a thread of its own: the blocking client must not run on
    /// the test's runtime).
    pub fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut postgres::Client) -> T + Send + 'static) -> T {
        let url = self.url();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            f(&mut c)
        })
        .join()
        .unwrap()
    }

    /// The shared log's head.
    pub fn head(&self) -> Offset {
        Offset(self.with(|c| {
            c.query_one("SELECT head FROM tally_head", &[])
                .unwrap()
                .get::<_, i64>(0)
        }) as u64)
    }

    /// Every event of the shared log, in order (checked gap-free).
    pub fn log(&self) -> Vec<LoggedEvent> {
        let frames: Vec<(i64, String)> = self.with(|c| {
            c.query("SELECT off, frame FROM tally_events ORDER BY off", &[])
                .unwrap()
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        });
        frames
            .into_iter()
            .enumerate()
            .map(|(i, (off, frame))| {
                assert_eq!(off as usize, i + 1, "the log has a gap");
                serde_json::from_str(&frame).unwrap()
            })
            .collect()
    }

    /// The token secret the nodes share.
    pub fn keys(&self) -> Keys {
        let secret: String = self.with(|c| {
            c.query_one("SELECT value FROM tally_meta WHERE key = 'secret'", &[])
                .unwrap()
                .get(0)
        });
        Keys::new(secret.as_bytes(), tally_relay::auth::MAX_TOKEN_TTL)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.data();
        let args = ["-D", data.to_str().unwrap(), "stop", "-m", "immediate", "-w"];
        let bin = pg_bin("pg_ctl");
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin)
                .args(args)
                .output()
        } else {
            Command::new(bin).args(args).output()
        };
    }
}

/// A `nats-server` on a port of its own.
pub struct Nats {
    pub port: u16,
    child: Option<Killed>,
}

impl Nats {
    pub async fn start() -> Nats {
        let mut n = Nats {
            port: free_port(),
            child: None,
        };
        n.up().await;
        n
    }

    pub async fn up(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (`make test` installs it)");
        self.child = Some(Killed(child));
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("nats-server did not start");
    }

    pub fn down(&mut self) {
        self.child = None;
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// A relay node of the cluster (its data directory outlives its process).
pub struct Node {
    pub child: Option<Killed>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// PostgreSQL, NATS and relay nodes.
pub struct Cluster {
    pub pg: Pg,
    pub nats: Nats,
    pub nodes: Vec<Node>,
    pub keys: Keys,
}

impl Cluster {
    /// PostgreSQL with `staff` on its staff table, NATS, and `n` nodes.
    pub async fn start(n: usize, staff: &[&str]) -> Cluster {
        let pg = Pg::start();
        let nats = Nats::start().await;
        let dir = tempfile::tempdir().unwrap();
        for s in staff {
            cluster_cli(
                dir.path(),
                &pg.url(),
                &["staff", "add", s, "--name", &s.to_uppercase()],
            );
        }
        let keys = {
            // The first node makes the secret if nobody has.
            cluster_cli(dir.path(), &pg.url(), &["token", staff[0]]);
            pg.keys()
        };
        let mut c = Cluster {
            pg,
            nats,
            nodes: Vec::new(),
            keys,
        };
        for _ in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let (child, addr) = c.spawn_node(dir.path());
            c.nodes.push(Node {
                child: Some(child),
                addr,
                dir,
            });
        }
        c
    }

    fn spawn_node(&self, data: &Path) -> (Killed, SocketAddr) {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally-relay"))
            .arg("--data")
            .arg(data)
            .args(["--postgres", &self.pg.url()])
            .args(["serve", "--listen", "127.0.0.1:0", "--static", "/nonexistent"])
            .args(["--nats", &self.nats.url(), "--durability", "normal"])
            .args(UNLIMITED)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("node did not start ({e}): {line:?}"));
        (Killed(child), addr)
    }

    /// Kills node `i` with SIGKILL (no shutdown, no flush).
    pub fn kill(&mut self, i: usize) {
        drop(self.nodes[i].child.take().expect("node running"));
    }

    /// Starts node `i` again on its data directory (on a new port).
    pub fn restart(&mut self, i: usize) {
        let (child, addr) = self.spawn_node(self.nodes[i].dir.path());
        self.nodes[i].child = Some(child);
        self.nodes[i].addr = addr;
    }

    pub fn token(&self, staff: &str) -> String {
        self.keys.mint(&sid(staff), Duration::from_secs(600))
    }

    pub async fn connect(&self, node: usize, staff: &str) -> Client {
        Client::connect(self.nodes[node].addr, &self.token(staff), None).await
    }
}

/// `tally-relay --data DIR --postgres URL ARGS…`, which must succeed.
pub fn cluster_cli(data: &Path, url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tally-relay"))
        .arg("--data")
        .arg(data)
        .args(["--postgres", url])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
