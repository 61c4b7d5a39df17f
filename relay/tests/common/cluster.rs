//! A cluster on one machine, from real processes on free loopback ports in temporary
//! directories: a throwaway PostgreSQL (`initdb` and `pg_ctl`, as the `postgres` user when
//! run as root, since initdb refuses root), a `nats-server`, and relay nodes
//! (`tally-relay --postgres URL serve --nats URL`). Each can be stopped and started again.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tally_relay::auth::Keys;
use tally_shared::Offset;
use tally_shared::protocol::LoggedEvent;
pub use tally_testkit::proxy::Proxy;
pub use tally_testkit::{Nats, Pg};

use super::{Client, Killed, UNLIMITED, sid};

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
    /// Per node, when started behind proxies: its way to PostgreSQL and its way to NATS.
    pub proxies: Vec<(Proxy, Proxy)>,
}

impl Cluster {
    /// PostgreSQL with `staff` on its staff table, NATS, and `n` nodes.
    pub async fn start(n: usize, staff: &[&str]) -> Cluster {
        Self::start_with(n, staff, false).await
    }

    /// `start`, with each node reaching PostgreSQL and NATS through proxies of its own, whose
    /// faults the test sets (`proxies`).
    pub async fn start_behind_proxies(n: usize, staff: &[&str]) -> Cluster {
        Self::start_with(n, staff, true).await
    }

    async fn start_with(n: usize, staff: &[&str], proxied: bool) -> Cluster {
        let pg = Pg::start();
        let nats = Nats::start();
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
            Keys::new(&pg.secret(), tally_relay::auth::MAX_TOKEN_TTL)
        };
        let mut c = Cluster {
            pg,
            nats,
            nodes: Vec::new(),
            keys,
            proxies: Vec::new(),
        };
        for i in 0..n {
            if proxied {
                let pg = Proxy::start(([127, 0, 0, 1], c.pg.port).into());
                let nats = Proxy::start(([127, 0, 0, 1], c.nats.port).into());
                c.proxies.push((pg, nats));
            }
            let dir = tempfile::tempdir().unwrap();
            let (child, addr) = c.spawn_node(i, dir.path());
            c.nodes.push(Node {
                child: Some(child),
                addr,
                dir,
            });
        }
        c
    }

    fn spawn_node(&self, i: usize, data: &Path) -> (Killed, SocketAddr) {
        let (pg, nats) = match self.proxies.get(i) {
            Some((pg, nats)) => (
                format!("postgres://tally@{}/postgres", pg.addr),
                format!("nats://{}", nats.addr),
            ),
            None => (self.pg.url(), self.nats.url()),
        };
        let mut args = vec!["--postgres", &pg, "--nats", &nats, "--durability", "normal"];
        args.extend(UNLIMITED);
        super::spawn(data, &args, None)
    }

    /// Kills node `i` with SIGKILL (no shutdown, no flush).
    pub fn kill(&mut self, i: usize) {
        drop(self.nodes[i].child.take().expect("node running"));
    }

    /// Starts node `i` again on its data directory (on a new port).
    pub fn restart(&mut self, i: usize) {
        let (child, addr) = self.spawn_node(i, self.nodes[i].dir.path());
        self.nodes[i].child = Some(child);
        self.nodes[i].addr = addr;
    }

    /// The shared log's head.
    pub fn head(&self) -> Offset {
        Offset(self.pg.head())
    }

    /// The shared log, in order.
    pub fn log(&self) -> Vec<LoggedEvent> {
        self.pg
            .frames()
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect()
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
