//! What the generator drives: the real relay binary, or the bare fan-out ceiling, each as its
//! own process so that its CPU and memory can be read from /proc.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tally_relay::auth::{self, Keys};
use tally_relay::storage::{self, Durability};
use tally_shared::{Staff, StaffId};

pub(crate) struct Target {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) keys: Option<Keys>,
    _data: Option<tempfile::TempDir>,
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe().expect("own path").with_file_name(name)
}

fn listening(child: &mut Child) -> SocketAddr {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("a first line");
    line.trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

pub(crate) fn staff_id(i: usize) -> StaffId {
    StaffId::new(format!("s{i}")).expect("valid id")
}

impl Target {
    /// The relay binary, with `staff` staff members and no rate limits.
    pub(crate) fn relay(staff: usize, durability: Durability, max_batch: usize) -> Target {
        Self::relay_with(staff, durability, max_batch, false)
    }

    /// The relay binary; `behind_proxy`: the default connection limits, trusting a reverse
    /// proxy on 127.0.0.1 (writes and reads stay unlimited).
    pub(crate) fn relay_with(
        staff: usize,
        durability: Durability,
        max_batch: usize,
        behind_proxy: bool,
    ) -> Target {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = storage::open(dir.path(), durability).expect("database");
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..staff {
            storage::upsert_staff(
                &conn,
                &Staff {
                    id: staff_id(i),
                    name: format!("Staff {i}"),
                },
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
        drop(conn);
        let mut target = Self::relay_on(dir.path(), durability, max_batch, behind_proxy);
        target._data = Some(dir);
        target
    }

    /// The relay binary on an existing data directory (rate limits lifted as in
    /// [`relay_with`](Self::relay_with)).
    pub(crate) fn relay_on(
        data: &Path,
        durability: Durability,
        max_batch: usize,
        behind_proxy: bool,
    ) -> Target {
        let durability = match durability {
            Durability::Full => "full",
            Durability::Normal => "normal",
        };
        let mut child = Command::new(sibling("tally-relay"))
            .arg("--data")
            .arg(data)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--static",
                "/nonexistent",
                "--durability",
                durability,
            ])
            .args(["--max-batch", &max_batch.to_string()])
            .args([
                "--writes-per-sec",
                "1e9",
                "--write-burst",
                "1e9",
                "--reads-per-sec",
                "1e9",
                "--read-burst",
                "1e9",
            ])
            .args(if behind_proxy {
                &["--trust-proxy", "127.0.0.1"][..]
            } else {
                &[
                    "--connects-per-sec",
                    "1e9",
                    "--connect-burst",
                    "1e9",
                    "--connections-per-staff",
                    "1000000",
                ][..]
            })
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the release relay next to tally-loadgen (cargo build --release)");
        let addr = listening(&mut child);
        let keys = Keys::new(&auth::load_secret(data).expect("secret"), auth::MAX_TOKEN_TTL);
        Target {
            child,
            addr,
            keys: Some(keys),
            _data: None,
        }
    }

    /// The bare fan-out server, knowing the conversations' members from a file.
    pub(crate) fn ceiling(membership: &Path) -> Target {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["ceiling", "--membership"])
            .arg(membership)
            .stdout(Stdio::piped())
            .spawn()
            .expect("tally-loadgen ceiling");
        let addr = listening(&mut child);
        Target {
            child,
            addr,
            keys: None,
            _data: None,
        }
    }

    pub(crate) fn token(&self, i: usize) -> String {
        match &self.keys {
            Some(k) => k.mint(&staff_id(i), Duration::from_secs(3600)),
            None => staff_id(i).to_string(),
        }
    }

    /// CPU seconds used so far (user + system).
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    }

    /// (current, peak) resident memory in MiB.
    pub(crate) fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
