//! Throwaway servers for Tally's cluster tests and load runs, from real programs on free
//! loopback ports in temporary directories: a PostgreSQL (`initdb` and `pg_ctl`, run as the
//! `postgres` user when we are root, since initdb refuses root) and a `nats-server`. Each can
//! be stopped and started again. Not part of the product: the relay's tests and
//! `tally-loadgen` use it.

pub mod proxy;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A child process killed (SIGKILL) when dropped.
pub struct Killed(pub std::process::Child);

impl std::ops::Deref for Killed {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    pub fn head(&self) -> u64 {
        self.with(|c| {
            c.query_one("SELECT head FROM tally_head", &[])
                .unwrap()
                .get::<_, i64>(0)
        }) as u64
    }

    /// Every stored frame of the shared log, in order (checked gap-free).
    pub fn frames(&self) -> Vec<String> {
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
                frame
            })
            .collect()
    }

    /// The token secret the nodes share (made by the first node, or the CLI).
    pub fn secret(&self) -> Vec<u8> {
        let secret: String = self.with(|c| {
            c.query_one("SELECT value FROM tally_meta WHERE key = 'secret'", &[])
                .unwrap()
                .get(0)
        });
        secret.into_bytes()
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
    pub fn start() -> Nats {
        let mut n = Nats {
            port: free_port(),
            child: None,
        };
        n.up();
        n
    }

    /// Starts the server (again, on its port), waiting until it accepts connections.
    pub fn up(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (`make test` installs it)");
        self.child = Some(Killed(child));
        for _ in 0..250 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
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
