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
    /// A cluster's other nodes (`addrs` lists every node, `child`'s first).
    pub(crate) others: Vec<Child>,
    pub(crate) addrs: Vec<SocketAddr>,
    _servers: Option<(tally_testkit::Pg, tally_testkit::Nats, Vec<tempfile::TempDir>)>,
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
            .args(WRITES_AND_READS_LIFTED)
            .args(if behind_proxy {
                &["--trust-proxy", "127.0.0.1"][..]
            } else {
                &CONNECTS_LIFTED[..]
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
            others: Vec::new(),
            addrs: vec![addr],
            _servers: None,
        }
    }

    /// A cluster: a throwaway PostgreSQL with `staff` on its staff table, NATS (unless
    /// `nats` is false), and `nodes` relay nodes (durability full, limits lifted).
    pub(crate) fn cluster(staff: usize, nodes: usize, nats: bool) -> Target {
        let pg = tally_testkit::Pg::start();
        let nats_server = tally_testkit::Nats::start();
        let url = pg.url();
        let members: Vec<(Staff, bool)> = (0..staff)
            .map(|i| {
                let s = Staff {
                    id: staff_id(i),
                    name: format!("Staff {i}"),
                };
                (s, true)
            })
            .collect();
        let secret = std::thread::spawn({
            let url = url.clone();
            move || {
                use tally_relay::order::Order;
                let mut db = tally_relay::postgres::Postgres::connect(&url).expect("PostgreSQL");
                let mut unused = rusqlite::Connection::open_in_memory().expect("sqlite");
                db.mirror_staff(&mut unused, &members, false).expect("staff");
                db.secret().expect("secret")
            }
        })
        .join()
        .expect("setup");
        let mut children = Vec::new();
        let mut addrs = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..nodes {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut child = Command::new(sibling("tally-relay"))
                .arg("--data")
                .arg(dir.path())
                .args(["--postgres", &url])
                .args(["serve", "--listen", "127.0.0.1:0", "--static", "/nonexistent"])
                .args(if nats {
                    vec!["--nats".to_string(), nats_server.url()]
                } else {
                    vec![]
                })
                .args(WRITES_AND_READS_LIFTED)
                .args(CONNECTS_LIFTED)
                .env("RUST_LOG", "error")
                .stdout(Stdio::piped())
                .spawn()
                .expect("the release relay next to tally-loadgen (cargo build --release)");
            addrs.push(listening(&mut child));
            children.push(child);
            dirs.push(dir);
        }
        let child = children.remove(0);
        Target {
            child,
            addr: addrs[0],
            keys: Some(Keys::new(&secret, auth::MAX_TOKEN_TTL)),
            _data: None,
            others: children,
            addrs,
            _servers: Some((pg, nats_server, dirs)),
        }
    }

    /// The node client `i` connects to (clients are spread over a cluster's nodes in turn).
    pub(crate) fn addr_for(&self, i: usize) -> SocketAddr {
        self.addrs[i % self.addrs.len()]
    }

    /// Kills node `n` (SIGKILL); the nodes left.
    pub(crate) fn kill_node(&mut self, n: usize) -> Vec<SocketAddr> {
        let child = if n == 0 {
            &mut self.child
        } else {
            &mut self.others[n - 1]
        };
        let _ = child.kill();
        let _ = child.wait();
        let dead = self.addrs[n];
        self.addrs.iter().copied().filter(|a| *a != dead).collect()
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
            others: Vec::new(),
            addrs: vec![addr],
            _servers: None,
        }
    }

    pub(crate) fn token(&self, i: usize) -> String {
        match &self.keys {
            Some(k) => k.mint(&staff_id(i), Duration::from_secs(3600)),
            None => staff_id(i).to_string(),
        }
    }

    /// The relay nodes (one unless a cluster), the first node first.
    fn nodes(&self) -> impl Iterator<Item = &Child> {
        std::iter::once(&self.child).chain(&self.others)
    }

    /// CPU seconds used so far (user + system), by every relay node.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        (0..self.addrs.len()).map(|n| self.cpu_seconds_of(n)).sum()
    }

    /// CPU seconds used so far (user + system) by node `n`.
    pub(crate) fn cpu_seconds_of(&self, n: usize) -> f64 {
        let Some(c) = self.nodes().nth(n) else { return 0.0 };
        cpu_seconds_in(&format!("/proc/{}/stat", c.id()))
    }

    /// CPU seconds used so far by the first node's threads called `name` (the relay names its
    /// core thread `tally-core`).
    pub(crate) fn thread_cpu_seconds(&self, name: &str) -> f64 {
        let dir = format!("/proc/{}/task", self.child.id());
        let Ok(tasks) = std::fs::read_dir(&dir) else {
            return 0.0;
        };
        tasks
            .flatten()
            .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
            .map(|t| cpu_seconds_in(&t.path().join("stat").to_string_lossy()))
            .sum()
    }

    /// (current, peak) resident memory in MiB (of the first node).
    pub(crate) fn rss_mib(&self) -> (f64, f64) {
        self.rss_mib_of(0)
    }

    /// (current, peak) resident memory of node `n` in MiB.
    pub(crate) fn rss_mib_of(&self, n: usize) -> (f64, f64) {
        let Some(c) = self.nodes().nth(n) else {
            return (0.0, 0.0);
        };
        let status = format!("/proc/{}/status", c.id());
        let field = |name: &str| proc_word::<f64>(&status, name, 1).unwrap_or(0.0) / 1024.0;
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// How many relay nodes.
    pub(crate) fn node_count(&self) -> usize {
        self.addrs.len()
    }
}

/// User + system CPU seconds in a `/proc/…/stat` file (a process's or a thread's).
fn cpu_seconds_in(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The kernel's memory for sockets, machine-wide, in KiB: the slab caches (socket structures,
/// files, epoll entries) and the pages TCP buffers hold (`/proc/net/sockstat`'s `mem`).
/// Loopback connections have both ends here, so a connection counts twice.
pub(crate) fn kernel_socket_kib() -> (f64, f64) {
    let slab = proc_word::<f64>("/proc/meminfo", "Slab:", 1).unwrap_or(0.0);
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let pages = sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "mem")?;
            words.next()?.parse::<f64>().ok()
        })
        .unwrap_or(0.0);
    (slab, pages * 4.0)
}

/// The `n`-th word (from 0) of the first line of the file at `path` (a `/proc` file) that
/// starts with `prefix`, parsed; `None` when the file, the line or the word is not there.
pub(crate) fn proc_word<T: std::str::FromStr>(path: &str, prefix: &str, n: usize) -> Option<T> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(prefix))?
        .split_whitespace()
        .nth(n)?
        .parse()
        .ok()
}

impl Drop for Target {
    fn drop(&mut self) {
        for c in std::iter::once(&mut self.child).chain(&mut self.others) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Write and read rates lifted, for load.
const WRITES_AND_READS_LIFTED: [&str; 12] = [
    "--writes-per-sec",
    "1e9",
    "--write-burst",
    "1e9",
    "--reads-per-sec",
    "1e9",
    "--read-burst",
    "1e9",
    "--searches-per-sec",
    "1e9",
    "--search-burst",
    "1e9",
];

/// Connection rates and caps lifted (unless the generator plays clients behind a proxy).
const CONNECTS_LIFTED: [&str; 6] = [
    "--connects-per-sec",
    "1e9",
    "--connect-burst",
    "1e9",
    "--connections-per-staff",
    "1000000",
];

#[cfg(test)]
mod tests {
    use super::proc_word;

    #[test]
    fn a_proc_files_word_is_read_by_its_line_and_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits");
        std::fs::write(
            &path,
            "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 20000                files\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        assert_eq!(proc_word::<usize>(path, "Max open files", 3), Some(1024));
        assert_eq!(proc_word::<usize>(path, "Max open files", 4), Some(20000));
        assert_eq!(proc_word::<usize>(path, "Max open files", 9), None);
        assert_eq!(proc_word::<usize>(path, "Max processes", 3), None);
        assert_eq!(proc_word::<usize>("/nonexistent", "Max open files", 3), None);
        assert!(proc_word::<f64>("/proc/meminfo", "Slab:", 1).is_some_and(|kib| kib > 0.0));
    }
}
