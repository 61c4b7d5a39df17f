//! `tally-loadgen`: drives a real `tally-relay` over loopback with many staff, measures it, and
//! runs the same scenario against a bare fan-out server (the ceiling) for comparison.
//!
//! ```sh
//! cargo build --release -p tally-relay -p tally-loadgen --bins
//! target/release/tally-loadgen run --scenario all --json target/loadgen.json
//! ```

mod capacity;
mod ceiling;
mod client;
mod dictionary;
mod export;
mod history;
mod search;
mod target;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use client::{Client, Shared};
use futures_util::future::join_all;
use rand::prelude::*;
use serde::Serialize;
use tally_relay::storage::Durability;
use tally_shared::oracle::Oracle;
use tally_shared::{ClientMsgId, ConversationId, Request};
use target::{Target, staff_id};

#[derive(Parser)]
#[command(name = "tally-loadgen", about = "Load generator for tally-relay")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenarios and print a report.
    Run {
        #[arg(long, value_enum, default_value = "all")]
        scenario: Scenario,
        /// Shorter runs (what `make bench` uses).
        #[arg(long)]
        quick: bool,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The `history` scenario's data directory (made with `tally-loadgen history`); it is
        /// written to (the run's sends are appended).
        #[arg(long, default_value = "target/history")]
        history: PathBuf,
        /// The `cluster` scenario on these setups only (repeat it; all three by default; the
        /// failover run goes with `cluster`).
        #[arg(long = "setup", value_enum)]
        setups: Vec<Setup>,
        /// The `scale` scenario's connections (capped by this process's descriptor limit).
        #[arg(long, default_value_t = 100_000)]
        connections: usize,
        /// The `steady` scenario's staff, all online (with three conversations per ten staff).
        #[arg(long, default_value_t = 1000)]
        staff: usize,
        /// The `steady` scenario's sends per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
    },
    /// Write a large history straight into a new data directory (and a checkpoint), for the
    /// `history` scenario and for trying a relay that has lived for a while.
    History {
        /// The data directory to create.
        #[arg(long)]
        data: PathBuf,
        /// How many messages.
        #[arg(long, default_value_t = 10_000_000)]
        messages: u64,
        /// How many staff.
        #[arg(long, default_value_t = 5000)]
        staff: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Time searches (words and starts of words) on a history made by `tally-loadgen history`,
    /// through the release relay.
    Search {
        /// The data directory (made with `tally-loadgen history`).
        #[arg(long, default_value = "target/history")]
        data: PathBuf,
        /// How many staff members ask each query.
        #[arg(long, default_value_t = 20)]
        people: usize,
    },
    /// Write an import file (`tally-relay import`'s format) like an export of the chat Tally
    /// replaces: staff, conversations, messages, and per-message reads.
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// How many messages.
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// How many staff.
        #[arg(long, default_value_t = 2000)]
        staff: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Train the dictionary the relay packs stored JSON with, on a history made by
    /// `tally-loadgen history` (another seed than the one measured).
    Dictionary {
        /// The history's data directory.
        #[arg(long)]
        data: PathBuf,
        /// Where to write it.
        #[arg(long, default_value = "relay/src/packed/dictionary-1.zdict")]
        out: PathBuf,
        /// How many stored values to train on.
        #[arg(long, default_value_t = 20_000)]
        samples: usize,
    },
    /// The bare fan-out server (started by `run`).
    Ceiling {
        #[arg(long)]
        membership: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Scenario {
    All,
    Steady,
    Burst,
    Idle,
    Storm,
    Durability,
    History,
    /// Cluster mode (PostgreSQL + NATS, started here) against one node; not in `all`.
    Cluster,
    /// A whole company on one node (`--connections`, 100,000 by default, as many as the
    /// descriptor limits allow): idle memory, then a reconnect storm; not in `all`.
    Scale,
    /// What a cluster's nodes hold and carry (PostgreSQL + NATS, started here): idle
    /// connections per node with one node and three, the cost of applying the others'
    /// events, sends/s against the number of nodes; not in `all`.
    Capacity,
}

#[derive(Serialize, Default, Clone, Debug)]
struct Report {
    scenario: String,
    target: String,
    sends_acked_per_s: f64,
    frames_delivered_per_s: f64,
    created_ms: [f64; 4],
    unread_ms: [f64; 4],
    cpu_percent: f64,
    peak_rss_mib: f64,
    rss_per_connection_kib: f64,
    converged_s: f64,
    errors: u64,
    divergences: u64,
    counts_exact: Option<bool>,
    note: String,
}

fn quantiles(h: &hdrhistogram::Histogram<u64>) -> [f64; 4] {
    if h.is_empty() {
        return [0.0; 4];
    }
    [
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.95),
        h.value_at_quantile(0.99),
        h.max(),
    ]
    .map(|v| v as f64 / 1000.0)
}

/// Conversations: many direct pairs, some groups of 5 to 50. Members by staff index.
fn plan(staff: usize, conversations: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let groups = conversations / 10;
    let mut out = Vec::new();
    let mut pairs = std::collections::HashSet::new();
    while out.len() < conversations - groups {
        let (a, b) = (rng.random_range(0..staff), rng.random_range(0..staff));
        if a != b && pairs.insert((a.min(b), a.max(b))) {
            out.push(vec![a, b]);
        }
    }
    for _ in 0..groups {
        let size = rng.random_range(5..=50.min(staff));
        let mut members: Vec<usize> = (0..staff).collect();
        members.shuffle(rng);
        members.truncate(size);
        out.push(members);
    }
    out
}

async fn connect_all(target: &Target, ids: impl Iterator<Item = usize>, shared: &Arc<Shared>) -> Vec<Client> {
    let ids: Vec<usize> = ids.collect();
    let mut clients = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(250) {
        let batch = join_all(
            chunk
                .iter()
                .map(|i| Client::connect(target.addr_for(*i), *i, target.token(*i), None, shared.clone())),
        )
        .await;
        clients.extend(batch.into_iter().map(|c| c.expect("connect")));
    }
    clients
}

/// Creates the planned conversations on the relay (ids 1, 2, ... in order), or tells the
/// ceiling about them.
async fn create(clients: &[Client], plan: &[Vec<usize>]) {
    for (i, members) in plan.iter().enumerate() {
        let creator = &clients[members[0]];
        let request = if members.len() == 2 {
            Request::CreateDirect {
                staff: staff_id(members[1]),
            }
        } else {
            Request::CreateGroup {
                client_id: ClientMsgId::new(format!("plan-{i}")).unwrap(),
                title: format!("Group {i}"),
                participants: members[1..].iter().map(|m| staff_id(*m)).collect(),
            }
        };
        creator.call(request).await;
    }
    join_all(clients.iter().map(Client::sync)).await;
}

fn ceiling_for(plan: &[Vec<usize>]) -> (Target, tempfile::NamedTempFile) {
    let members: HashMap<u64, Vec<String>> = plan
        .iter()
        .enumerate()
        .map(|(i, m)| (i as u64 + 1, m.iter().map(|s| staff_id(*s).to_string()).collect()))
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_string(&members).unwrap()).unwrap();
    (Target::ceiling(file.path()), file)
}

/// Sends `count` messages: paced at `rate` per second, or as fast as acknowledged with
/// `window` in flight. Returns the elapsed time until all are acknowledged and delivered.
async fn drive(
    clients: &[Client],
    plan: &[Vec<usize>],
    shared: &Arc<Shared>,
    count: usize,
    rate: Option<f64>,
    window: usize,
    rng: &mut StdRng,
) -> Duration {
    let by_index: HashMap<usize, &Client> = clients.iter().map(|c| (c.index, c)).collect();
    let start = Instant::now();
    let before = shared.acked_sends.load(Relaxed);
    shared.window.add_permits(window);
    for n in 0..count {
        match rate {
            Some(r) => {
                let due = start + Duration::from_secs_f64(n as f64 / r);
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            None => shared.window.acquire().await.expect("open").forget(),
        }
        // Conversations left empty in a plan take no part (their ids stay in place).
        let c = loop {
            let c = rng.random_range(0..plan.len());
            if !plan[c].is_empty() {
                break c;
            }
        };
        let sender = plan[c][rng.random_range(0..plan[c].len())];
        if let Some(client) = by_index.get(&sender) {
            client.send(ConversationId(c as u64 + 1), shared);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.acked_sends.load(Relaxed) - before < count as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    join_all(clients.iter().map(Client::sync)).await;
    start.elapsed()
}

/// Rebuilds the oracle from every delivered event and accepted read, and compares every
/// client's counts and total with it.
fn counts_exact(shared: &Shared, clients: &[Client]) -> bool {
    let log = shared.log.lock().unwrap();
    let mut reads = shared.reads.lock().unwrap().clone();
    reads.sort_by_key(|r| r.0);
    let mut oracle = Oracle::new();
    let mut ri = 0;
    let apply_reads = |oracle: &mut Oracle, ri: &mut usize, upto: u64| {
        while *ri < reads.len() && reads[*ri].0 < upto {
            oracle.accepted(&staff_id(reads[*ri].1), &reads[*ri].2);
            *ri += 1;
        }
    };
    for (offset, event) in log.iter() {
        apply_reads(&mut oracle, &mut ri, *offset);
        oracle.observe(event);
    }
    apply_reads(&mut oracle, &mut ri, u64::MAX);
    let mut exact = true;
    for c in clients {
        let store = c.store();
        let me = staff_id(c.index);
        for (s, conv) in oracle.memberships() {
            if s == me && store.counts(conv) != oracle.counts(&me, conv) {
                eprintln!(
                    "{me} in {conv}: widget {:?}, oracle {:?}",
                    store.counts(conv),
                    oracle.counts(&me, conv)
                );
                exact = false;
            }
        }
        if store.total() != oracle.total(&me) {
            exact = false;
        }
    }
    exact
}

/// How much load: `count` sends, paced at `rate`/s or `window` in flight, and the chance a
/// recipient reads what it receives.
#[derive(Clone, Copy)]
struct Load {
    count: usize,
    rate: Option<f64>,
    window: usize,
    read_rate: f64,
}

async fn fanout(name: &str, relay: bool, staff: usize, plan: &[Vec<usize>], load: Load) -> Report {
    let (target, _file) = if relay {
        (
            Target::relay(staff, Durability::Full, tally_relay::core::MAX_BATCH),
            None,
        )
    } else {
        let (t, f) = ceiling_for(plan);
        (t, Some(f))
    };
    let label = if relay { "relay" } else { "ceiling" };
    run_on(name, label, &target, relay, staff, plan, load).await
}

/// Runs `load` over `plan` with `staff` clients on `target` (a relay or a cluster when
/// `relay`, else the ceiling).
async fn run_on(
    name: &str,
    label: &str,
    target: &Target,
    relay: bool,
    staff: usize,
    plan: &[Vec<usize>],
    load: Load,
) -> Report {
    let mut rng = StdRng::seed_from_u64(42);
    let Load {
        count,
        rate,
        window,
        read_rate,
    } = load;
    let shared = Shared::new(if relay { read_rate } else { 0.0 }, relay);
    let clients = connect_all(target, 0..staff, &shared).await;
    if relay {
        create(&clients, plan).await;
    }
    *shared.created.lock().unwrap() = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
    *shared.unread.lock().unwrap() = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
    let (cpu0, frames0) = (target.cpu_seconds(), shared.frames.load(Relaxed));
    let elapsed = drive(&clients, plan, &shared, count, rate, window, &mut rng).await;
    let report = Report {
        scenario: name.into(),
        target: label.into(),
        counts_exact: relay.then(|| counts_exact(&shared, &clients)),
        ..measured(&shared, target, count, elapsed, (frames0, cpu0))
    };
    for c in clients {
        c.close();
    }
    report
}

/// Where the cluster scenario runs the same load.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Setup {
    /// One node on its own SQLite (today's default).
    Sqlite,
    /// One node whose order is PostgreSQL's (what the order costs).
    Postgres,
    /// Three nodes on PostgreSQL and NATS.
    Cluster,
}

impl Setup {
    fn target(self, staff: usize) -> Target {
        match self {
            Setup::Sqlite => Target::relay(staff, Durability::Full, tally_relay::core::MAX_BATCH),
            Setup::Postgres => Target::cluster(staff, 1, false),
            Setup::Cluster => Target::cluster(staff, 3, true),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Setup::Sqlite => "1 node, SQLite",
            Setup::Postgres => "1 node, PostgreSQL",
            Setup::Cluster => "3 nodes, PostgreSQL + NATS",
        }
    }
}

/// Cluster mode against one node: 1,000 staff and 1,000 sends/s (clients spread over the
/// nodes in turn, so most recipients are on another node than the sender), sends as fast as
/// acknowledged (64 in flight), then a node of three killed under 1,000 connected staff.
async fn cluster_runs(quick: bool, setups: &[Setup]) -> Vec<Report> {
    let (staff, convs, rate, secs) = (1000, 300, 1000.0, if quick { 15.0 } else { 60.0 });
    let steady_plan = plan(staff, convs, &mut StdRng::seed_from_u64(1));
    let steady = Load {
        count: (rate * secs) as usize,
        rate: Some(rate),
        window: 0,
        read_rate: 0.5,
    };
    let burst_plan = vec![(0..50).collect::<Vec<usize>>()];
    let burst = Load {
        count: 5000,
        rate: None,
        window: 64,
        read_rate: 0.0,
    };
    let mut out = Vec::new();
    let setups = match setups {
        [] => &[Setup::Sqlite, Setup::Postgres, Setup::Cluster][..],
        some => some,
    };
    for &setup in setups {
        let target = setup.target(staff);
        let mut report = run_on(
            "cluster steady",
            setup.label(),
            &target,
            true,
            staff,
            &steady_plan,
            steady,
        )
        .await;
        if setup == Setup::Cluster {
            // How much of what the nodes caught up on came with the rings, not from PostgreSQL.
            let (mut heard, mut caught) = (0, 0);
            for i in 0..3 {
                heard += metric(target.addr_for(i), "tally_events_heard_total").await;
                caught += metric(target.addr_for(i), "tally_events_caught_up_total").await;
            }
            report.note = format!(
                "steady, 3 nodes: of {caught} events caught up from other nodes, {heard} ({:.0}%) came with the rings",
                100.0 * heard as f64 / caught.max(1) as f64
            );
        }
        out.push(report);
        drop(target);
        let target = setup.target(50);
        out.push(
            run_on(
                "cluster burst",
                setup.label(),
                &target,
                true,
                50,
                &burst_plan,
                burst,
            )
            .await,
        );
    }
    if setups.contains(&Setup::Cluster) {
        out.push(failover(staff).await);
    }
    out
}

/// Kills one node of three while 1,000 staff are connected: its third of them resume on the
/// other two (from their stores' offsets); how long until every one has, and whether every
/// count is then exact.
async fn failover(staff: usize) -> Report {
    let mut rng = StdRng::seed_from_u64(3);
    let shared = Shared::new(0.0, true);
    let mut target = Target::cluster(staff, 3, true);
    let plan = plan(staff, 300, &mut rng);
    let clients = connect_all(&target, 0..staff, &shared).await;
    create(&clients, &plan).await;
    drive(&clients, &plan, &shared, 3000, Some(1000.0), 0, &mut rng).await;
    let started = Instant::now();
    let left = target.kill_node(0);
    let (moving, mut staying): (Vec<Client>, Vec<Client>) =
        clients.into_iter().partition(|c| c.index % 3 == 0);
    let moved = moving.len();
    let resumed = join_all(moving.into_iter().enumerate().map(|(n, c)| {
        let (index, store) = (c.index, c.store());
        c.close();
        let (addr, token, shared) = (left[n % left.len()], target.token(index), shared.clone());
        async move { Client::connect(addr, index, token, Some(store), shared).await }
    }))
    .await;
    let took = started.elapsed();
    let failed = resumed.iter().filter(|r| r.is_err()).count();
    staying.extend(resumed.into_iter().flatten());
    join_all(staying.iter().map(Client::sync)).await;
    let exact = counts_exact(&shared, &staying);
    let report = Report {
        scenario: "cluster failover".into(),
        target: Setup::Cluster.label().into(),
        converged_s: took.as_secs_f64(),
        counts_exact: Some(exact),
        errors: failed as u64,
        note: format!(
            "{moved} of {staff} staff on the killed node resumed on the other two in {:.2} s ({failed} failed); counts exact: {exact}",
            took.as_secs_f64()
        ),
        ..Report::default()
    };
    for c in staying {
        c.close();
    }
    report
}

/// What a run of `count` sends that took `elapsed` measured, from the frame count and CPU
/// seconds at its start.
fn measured(
    shared: &Shared,
    target: &Target,
    count: usize,
    elapsed: Duration,
    (frames0, cpu0): (u64, f64),
) -> Report {
    let secs = elapsed.as_secs_f64();
    Report {
        sends_acked_per_s: count as f64 / secs,
        frames_delivered_per_s: (shared.frames.load(Relaxed) - frames0) as f64 / secs,
        created_ms: quantiles(&shared.created.lock().unwrap()),
        unread_ms: quantiles(&shared.unread.lock().unwrap()),
        cpu_percent: (target.cpu_seconds() - cpu0) / secs * 100.0,
        peak_rss_mib: target.rss_mib().1,
        errors: shared.errors.load(Relaxed),
        divergences: shared.divergences.load(Relaxed),
        ..Report::default()
    }
}

async fn idle(relay: bool, staff: usize) -> Report {
    let shared = Shared::new(0.0, false);
    let plan = vec![vec![0, 1]];
    let (target, _file) = if relay {
        (
            Target::relay(staff, Durability::Full, tally_relay::core::MAX_BATCH),
            None,
        )
    } else {
        let (t, f) = ceiling_for(&plan);
        (t, Some(f))
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = target.rss_mib().0;
    let kernel_before = target::kernel_socket_kib();
    let clients = connect_all(&target, 0..staff, &shared).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, peak) = target.rss_mib();
    let kernel_after = target::kernel_socket_kib();
    let per = |a: f64, b: f64| (a - b) / staff as f64;
    let report = Report {
        scenario: "idle".into(),
        target: if relay { "relay" } else { "ceiling" }.into(),
        peak_rss_mib: peak,
        rss_per_connection_kib: (after - before) * 1024.0 / staff as f64,
        errors: shared.errors.load(Relaxed),
        note: format!(
            "{staff} connections; RSS {before:.1} MiB before, {after:.1} MiB after; kernel, both \
             ends of each loopback connection, machine-wide: slab {:.1} KiB and TCP buffers \
             {:.1} KiB per connection",
            per(kernel_after.0, kernel_before.0),
            per(kernel_after.1, kernel_before.1)
        ),
        ..Report::default()
    };
    for c in clients {
        c.close();
    }
    report
}

/// How many connections the `scale` scenario can open: what was asked, within this process's
/// descriptor limit (each connection is a descriptor here and one in the relay, which inherits
/// the limit), less a margin for files, listeners and the relay's own database. Says why when
/// it had to open fewer.
fn scale_connections(asked: usize) -> (usize, Option<String>) {
    let soft = target::proc_word::<usize>("/proc/self/limits", "Max open files", 3).unwrap_or(1024);
    let most = soft.saturating_sub(500);
    if asked <= most {
        return (asked, None);
    }
    (
        most,
        Some(format!(
            "scale: {asked} connections asked, {most} opened: the descriptor limit is {soft} \
             (raise it with `ulimit -n`; see docs/operations.md, \"Sizing a node\")"
        )),
    )
}

/// Idle connections whose snapshots carry history: staff in groups of 50, each group with 60
/// messages of 1,000 characters, so that every hello is answered with a snapshot of ~60 KB
/// (the newest 50 messages). What a connection keeps after sending that is the point.
async fn idle_with_history(staff: usize) -> Report {
    let shared = Shared::new(0.0, false);
    let target = Target::relay(staff, Durability::Full, tally_relay::core::MAX_BATCH);
    let creators: Vec<usize> = (0..staff).step_by(50).collect();
    let writers = connect_all(&target, creators.iter().copied(), &shared).await;
    // One after the other, so that group g gets conversation id g + 1.
    for w in &writers {
        let members = (w.index + 1..(w.index + 50).min(staff)).map(staff_id).collect();
        w.call(Request::CreateGroup {
            client_id: ClientMsgId::new(format!("history-{}", w.index)).expect("valid id"),
            title: format!("Group {}", w.index / 50),
            participants: members,
        })
        .await;
    }
    let body = "x".repeat(1000);
    join_all(writers.iter().map(|w| {
        let body = body.clone();
        async move {
            let conversation = ConversationId(w.index as u64 / 50 + 1);
            for n in 0..60 {
                w.call(Request::SendMessage {
                    mention_ranges: Vec::new(),
                    client_id: ClientMsgId::new(format!("h{}-{n}", w.index)).expect("valid id"),
                    conversation,
                    body: body.clone(),
                    attachments: vec![],
                    reply_to: None,
                })
                .await;
            }
        }
    }))
    .await;
    for w in writers {
        w.close();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.rss_mib().0;
    let clients = connect_all(&target, 0..staff, &shared).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, peak) = target.rss_mib();
    let received = clients
        .iter()
        .filter(|c| c.store().summary(0).total.unread >= 50)
        .count();
    for c in clients {
        c.close();
    }
    Report {
        scenario: "idle".into(),
        target: "relay, 60 KB snapshots".into(),
        peak_rss_mib: peak,
        rss_per_connection_kib: (after - before) * 1024.0 / staff as f64,
        errors: shared.errors.load(Relaxed),
        counts_exact: Some(received == staff - creators.len()),
        note: format!(
            "{staff} connections, each sent the newest 50 of its group's 60 messages; RSS {before:.1} MiB \
             before, {after:.1} MiB after"
        ),
        ..Report::default()
    }
}

async fn storm(staff: usize, missed: usize, behind_proxy: bool) -> Report {
    let writer = staff;
    let groups = 100;
    let plan: Vec<Vec<usize>> = (0..groups)
        .map(|g| {
            std::iter::once(writer)
                .chain((g * staff / groups)..((g + 1) * staff / groups))
                .collect()
        })
        .collect();
    let shared = Shared::new(0.0, false);
    shared.via_proxy.store(behind_proxy, Relaxed);
    let target = Target::relay_with(
        staff + 1,
        Durability::Full,
        tally_relay::core::MAX_BATCH,
        behind_proxy,
    );
    let mut clients = connect_all(&target, 0..=staff, &shared).await;
    create(&clients, &plan).await;
    // Everyone reads what they have (the creation notices), then everyone but the writer leaves.
    join_all(clients.iter().map(|c| c.call(Request::MarkAllRead))).await;
    join_all(clients.iter().map(Client::sync)).await;
    let writer_client = clients.pop().expect("writer");
    let stores: Vec<_> = clients.iter().map(|c| (c.index, c.store())).collect();
    for c in clients {
        c.close();
    }
    let mut rng = StdRng::seed_from_u64(7);
    let writer_only: Vec<Vec<usize>> = plan.iter().map(|_| vec![writer]).collect();
    drive(
        std::slice::from_ref(&writer_client),
        &writer_only,
        &shared,
        missed,
        None,
        64,
        &mut rng,
    )
    .await;
    // Everyone comes back at once, resuming from their offset. (The line on stderr tells a
    // profiler watching the relay when the storm starts.)
    eprintln!("storm: {staff} staff reconnecting now");
    let (cpu0, core0, started) = (
        target.cpu_seconds(),
        target.thread_cpu_seconds("tally-core"),
        Instant::now(),
    );
    let reconnecting = stores.into_iter().map(|(i, store)| {
        let shared = shared.clone();
        let token = target.token(i);
        let addr = target.addr;
        async move {
            Client::connect(addr, i, token, Some(store), shared)
                .await
                .expect("reconnect")
        }
    });
    let clients = join_all(reconnecting).await;
    join_all(clients.iter().map(Client::sync)).await;
    let converged = started.elapsed().as_secs_f64();
    let (cpu, core) = (
        target.cpu_seconds() - cpu0,
        target.thread_cpu_seconds("tally-core") - core0,
    );
    // Each staff member's group got `missed / groups` messages on average; check against the
    // relay's own fresh snapshot rather than an estimate.
    let mut exact = true;
    let checking = Shared::new(0.0, false);
    checking.via_proxy.store(behind_proxy, Relaxed);
    for c in &clients {
        let fresh = Client::connect(
            target.addr,
            c.index,
            target.token(c.index),
            None,
            checking.clone(),
        )
        .await
        .expect("fresh");
        let (a, b) = (c.store().summary(0), fresh.store().summary(0));
        if a.total != b.total
            || a.conversations
                .iter()
                .zip(&b.conversations)
                .any(|(x, y)| x.counts != y.counts)
        {
            exact = false;
        }
        fresh.close();
    }
    Report {
        scenario: "storm".into(),
        target: if behind_proxy {
            "relay, one proxy, default limits"
        } else {
            "relay"
        }
        .into(),
        converged_s: converged,
        cpu_percent: cpu / converged * 100.0,
        peak_rss_mib: target.rss_mib().1,
        errors: shared.errors.load(Relaxed),
        divergences: shared.divergences.load(Relaxed),
        counts_exact: Some(exact),
        note: format!(
            "{staff} staff resumed at once after {missed} events; the relay used {cpu:.1} CPU s \
             until they had, its core thread {core:.1}"
        ),
        ..Report::default()
    }
}

async fn durability(count: usize, max_batch: usize) -> Report {
    let pairs = 50;
    let plan: Vec<Vec<usize>> = (0..pairs).map(|p| vec![2 * p, 2 * p + 1]).collect();
    let shared = Shared::new(0.0, false);
    let target = Target::relay(2 * pairs, Durability::Full, max_batch);
    let clients = connect_all(&target, 0..2 * pairs, &shared).await;
    create(&clients, &plan).await;
    let mut rng = StdRng::seed_from_u64(9);
    let elapsed = drive(&clients, &plan, &shared, count, None, 200, &mut rng).await;
    let r = Report {
        scenario: "durability".into(),
        target: if max_batch == 1 {
            "relay, commit per write"
        } else {
            "relay, group commit"
        }
        .into(),
        sends_acked_per_s: count as f64 / elapsed.as_secs_f64(),
        errors: shared.errors.load(Relaxed),
        note: "synchronous=FULL; 100 staff, 200 sends in flight".into(),
        ..Report::default()
    };
    for c in clients {
        c.close();
    }
    r
}

/// A relay that has lived through a large history: restart time and memory, 1,000 staff
/// connecting, the steady load on top, and the steady load while one client asks for
/// snapshots and history pages as fast as its rate limits let it.
async fn history_run(data: &std::path::Path, quick: bool) -> anyhow::Result<(Vec<Report>, Vec<String>)> {
    let generated = history::Generated::load(data).ok_or_else(|| {
        anyhow::anyhow!(
            "no history in {}: make one with `tally-loadgen history --data {}`",
            data.display(),
            data.display()
        )
    })?;
    let mut notes = Vec::new();
    let started = Instant::now();
    let target = Target::relay_on(data, Durability::Full, tally_relay::core::MAX_BATCH, false);
    let restart = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_start = target.rss_mib().0;
    let (connected, rate, secs) = (1000usize, 1000.0, if quick { 20.0 } else { 60.0 });
    let shared = Shared::new(0.5, false);
    let began = Instant::now();
    let clients = connect_all(&target, 0..connected, &shared).await;
    let connect_s = began.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_clients = target.rss_mib().0;
    notes.push(format!(
        "history: {} messages ({} events, {} staff, {} conversations): ready {restart:.2} s after start,          RSS {after_start:.0} MiB; {connected} staff connected (snapshots) in {connect_s:.2} s, RSS {after_clients:.0} MiB",
        generated.messages,
        generated.events,
        generated.staff,
        generated.plan.len()
    ));
    // The steady load among the connected staff: their conversations with one another.
    let plan: Vec<Vec<usize>> = generated
        .plan
        .iter()
        .map(|m| {
            if m.iter().all(|s| *s < connected) {
                m.clone()
            } else {
                Vec::new()
            }
        })
        .collect();
    let count = (rate * secs) as usize;
    let mut reports = Vec::new();
    for hammered in [false, true] {
        *shared.unread.lock().unwrap() = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)?;
        *shared.created.lock().unwrap() = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)?;
        let theirs: Vec<u64> = (generated.plan.iter().enumerate())
            .filter(|(_, m)| m.contains(&connected))
            .map(|(i, _)| i as u64 + 1)
            .collect();
        let hammer = hammered.then(|| tokio::spawn(hammer(target.addr, target.token(connected), theirs)));
        let (cpu0, frames0) = (target.cpu_seconds(), shared.frames.load(Relaxed));
        let checkpoints0 = metric(target.addr, "tally_checkpoints_written_total").await;
        let slow0 = slow_commits(target.addr).await;
        let mut rng = StdRng::seed_from_u64(3);
        let elapsed = drive(&clients, &plan, &shared, count, Some(rate), 0, &mut rng).await;
        let asked = match hammer {
            Some(h) => {
                h.abort();
                "; one client asking for snapshots and history pages at its rate limits"
            }
            None => "",
        };
        let written = metric(target.addr, "tally_checkpoints_written_total").await - checkpoints0;
        let slow = slow_commits(target.addr).await;
        let (slow, commits) = (slow.0 - slow0.0, slow.1 - slow0.1);
        reports.push(Report {
            scenario: "history".into(),
            target: if hammered {
                "relay, +snapshot hammer"
            } else {
                "relay"
            }
            .into(),
            note: format!(
                "{} messages of history{asked}; {written} checkpoint(s) written meanwhile; \
                 {slow} of {commits} commits took over 10 ms",
                generated.messages
            ),
            ..measured(&shared, &target, count, elapsed, (frames0, cpu0))
        });
    }
    notes.push(format!("history: RSS at the end {:.0} MiB", target.rss_mib().0));
    for c in clients {
        c.close();
    }
    Ok((reports, notes))
}

/// One staff member in many conversations asking for a snapshot and a history page as often
/// as the default rate limits allow (and a little more: refusals are part of the load).
async fn hammer(addr: std::net::SocketAddr, token: String, conversations: Vec<u64>) {
    let url = format!("ws://{addr}/ws");
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    use futures_util::{SinkExt, StreamExt};
    use tally_shared::protocol::encode;
    use tokio_tungstenite::tungstenite::Message;
    let hello = tally_shared::ClientFrame::new(Request::hello(&token, None));
    let _ = ws.send(Message::text(encode(&hello))).await;
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move { while stream.next().await.is_some() {} });
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        // request_snapshot: 1 per 5 s, burst 5 by default; asked twice a second.
        if n.is_multiple_of(5) {
            let frame = tally_shared::ClientFrame::new(Request::RequestSnapshot);
            if sink.send(Message::text(encode(&frame))).await.is_err() {
                return;
            }
        }
        // History: 5 per second, burst 40; a page of 100 from deep in a conversation.
        let Some(conversation) = conversations.get(n as usize % conversations.len().max(1)) else {
            continue;
        };
        let before = 1 + (n * 7919) % 2000;
        let path = format!("/api/conversations/{conversation}/messages?before={before}&limit=100");
        let _ = get_as(addr, &path, &token).await;
    }
}

/// (commits over 10 ms, all commits) so far.
async fn slow_commits(addr: std::net::SocketAddr) -> (u64, u64) {
    let all = metric(addr, "tally_commit_seconds_count").await;
    let fast = metric(addr, "tally_commit_seconds_bucket{le=\"0.01\"}").await;
    (all - fast, all)
}

/// A counter or gauge from the relay's `/metrics` (0 when absent).
async fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    if s.write_all(request.as_bytes()).await.is_err() || s.read_to_string(&mut text).await.is_err() {
        return 0;
    }
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A `GET` as staff (bearer token), read to its end over a connection of its own; the answer's
/// HTTP status (0 if it has none).
pub(crate) async fn get_as(addr: std::net::SocketAddr, path: &str, token: &str) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    Ok(answer
        .get(9..12)
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0))
}

fn print(reports: &[Report]) {
    println!(
        "{:<11} {:<24} {:>9} {:>11} {:>30} {:>30} {:>6} {:>8} {:>7} {:>7} {:>4} {:>5}",
        "scenario",
        "target",
        "sends/s",
        "frames/s",
        "send→message_created ms p50/95/99/max",
        "send→unread_updated ms p50/95/99/max",
        "cpu%",
        "peakMiB",
        "KiB/conn",
        "conv s",
        "err",
        "exact"
    );
    for r in reports {
        let q = |v: [f64; 4]| format!("{:.1}/{:.1}/{:.1}/{:.1}", v[0], v[1], v[2], v[3]);
        println!(
            "{:<11} {:<24} {:>9.0} {:>11.0} {:>30} {:>30} {:>6.0} {:>8.1} {:>7.1} {:>7.2} {:>4} {:>5}",
            r.scenario,
            r.target,
            r.sends_acked_per_s,
            r.frames_delivered_per_s,
            q(r.created_ms),
            q(r.unread_ms),
            r.cpu_percent,
            r.peak_rss_mib,
            r.rss_per_connection_kib,
            r.converged_s,
            r.errors + r.divergences,
            r.counts_exact.map_or("-", |e| if e { "yes" } else { "NO" })
        );
    }
}

fn ratio(relay: &Report, ceiling: &Report) -> String {
    format!(
        "relay/ceiling: sends {:.2}, frames {:.2}",
        relay.sends_acked_per_s / ceiling.sends_acked_per_s.max(1e-9),
        relay.frames_delivered_per_s / ceiling.frames_delivered_per_s.max(1e-9)
    )
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.cmd {
        Cmd::History {
            data,
            messages,
            staff,
            seed,
        } => {
            let g = history::generate(&data, staff, messages, seed)?;
            println!(
                "{} messages, {} events, {} conversations, {} staff in {:.1} s: database {:.2} GB, checkpoint {:.1} MB",
                g.messages,
                g.events,
                g.plan.len(),
                g.staff,
                g.seconds,
                g.database_bytes as f64 / 1e9,
                g.checkpoint_bytes as f64 / 1e6
            );
            Ok(())
        }
        Cmd::Dictionary { data, out, samples } => {
            println!("{}", dictionary::train(&data, &out, samples)?);
            Ok(())
        }
        Cmd::Search { data, people } => runtime.block_on(search::run(&data, people.max(1))),
        Cmd::Export {
            out,
            messages,
            staff,
            seed,
        } => {
            let w = export::write(&out, staff.max(2), messages, seed)?;
            println!(
                "{} lines: {} messages, {} reads, in {:.1} s",
                w.lines, w.messages, w.reads, w.seconds
            );
            Ok(())
        }
        Cmd::Ceiling { membership } => {
            let raw: HashMap<u64, Vec<String>> = serde_json::from_str(&std::fs::read_to_string(membership)?)?;
            let members = raw
                .into_iter()
                .map(|(c, m)| {
                    (
                        ConversationId(c),
                        m.into_iter()
                            .filter_map(|s| tally_shared::StaffId::new(s).ok())
                            .collect(),
                    )
                })
                .collect();
            runtime.block_on(ceiling::serve(members))
        }
        Cmd::Run {
            scenario,
            quick,
            json,
            history,
            setups,
            connections,
            staff,
            rate,
        } => runtime.block_on(async move {
            let mut reports = Vec::new();
            let mut notes = Vec::new();
            let all = scenario == Scenario::All;
            if all || scenario == Scenario::Steady {
                let (convs, secs) = (staff * 3 / 10, if quick { 20.0 } else { 60.0 });
                let plan = plan(staff, convs, &mut StdRng::seed_from_u64(1));
                let count = (rate * secs) as usize;
                let r = fanout(
                    "steady",
                    true,
                    staff,
                    &plan,
                    Load {
                        count,
                        rate: Some(rate),
                        window: 0,
                        read_rate: 0.5,
                    },
                )
                .await;
                let c = fanout(
                    "steady",
                    false,
                    staff,
                    &plan,
                    Load {
                        count,
                        rate: Some(rate),
                        window: 0,
                        read_rate: 0.0,
                    },
                )
                .await;
                notes.push(format!("steady: {}", ratio(&r, &c)));
                reports.extend([r, c]);
            }
            if all || scenario == Scenario::Burst {
                let members: Vec<usize> = (0..50).collect();
                let plan = vec![members];
                let r = fanout(
                    "burst",
                    true,
                    50,
                    &plan,
                    Load {
                        count: 5000,
                        rate: None,
                        window: 64,
                        read_rate: 0.0,
                    },
                )
                .await;
                let c = fanout(
                    "burst",
                    false,
                    50,
                    &plan,
                    Load {
                        count: 5000,
                        rate: None,
                        window: 64,
                        read_rate: 0.0,
                    },
                )
                .await;
                notes.push(format!("burst: {}", ratio(&r, &c)));
                reports.extend([r, c]);
            }
            if all || scenario == Scenario::Idle {
                let n = 10_000;
                reports.push(idle(true, n).await);
                reports.push(idle(false, n).await);
                reports.push(idle_with_history(n).await);
                for r in &reports[reports.len() - 3..] {
                    notes.push(format!("idle, {}: {}", r.target, r.note));
                }
            }
            if all || scenario == Scenario::Storm {
                reports.push(storm(1000, 10_000, false).await);
                reports.push(storm(1000, 10_000, true).await);
                for r in &reports[reports.len() - 2..] {
                    notes.push(format!("storm, {}: {}", r.target, r.note));
                }
            }
            if scenario == Scenario::Scale {
                let (n, why) = scale_connections(connections);
                if let Some(why) = why {
                    notes.push(why);
                }
                reports.push(idle(true, n).await);
                notes.push(format!("scale, idle: {}", reports[reports.len() - 1].note));
                reports.push(storm(n, 10_000, true).await);
                notes.push(format!("scale, storm: {}", reports[reports.len() - 1].note));
            }
            if scenario == Scenario::Capacity {
                // 6,000 connections per node, three nodes' worth within the descriptor limit.
                let (n, why) = scale_connections(3 * 6000);
                if let Some(why) = why {
                    notes.push(why);
                }
                let r = capacity::run(n / 3).await;
                notes.extend(r.iter().filter(|r| !r.note.is_empty()).map(|r| r.note.clone()));
                reports.extend(r);
            }
            if scenario == Scenario::Cluster {
                let r = cluster_runs(quick, &setups).await;
                notes.extend(r.iter().filter(|r| !r.note.is_empty()).map(|r| r.note.clone()));
                reports.extend(r);
            }
            if all || scenario == Scenario::Durability {
                let n = if quick { 3000 } else { 10_000 };
                reports.push(durability(n, tally_relay::core::MAX_BATCH).await);
                reports.push(durability(n / 5, 1).await);
            }
            if scenario == Scenario::History {
                let (r, n) = history_run(&history, quick).await?;
                notes.extend(n);
                notes.extend(r.iter().map(|r| format!("history, {}: {}", r.target, r.note)));
                reports.extend(r);
            }
            print(&reports);
            for n in &notes {
                println!("{n}");
            }
            if let Some(path) = json {
                let by: BTreeMap<String, &Report> = reports
                    .iter()
                    .map(|r| (format!("{}/{}", r.scenario, r.target), r))
                    .collect();
                std::fs::write(path, serde_json::to_string_pretty(&by)?)?;
            }
            anyhow::Ok(())
        }),
    }
}
