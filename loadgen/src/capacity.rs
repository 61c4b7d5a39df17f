//! What a cluster's nodes can hold and carry (`--scenario capacity`): idle connections per node
//! with one node and with three holding three times as many; what a node spends applying the
//! events the others commit (a node with no clients, beside one that takes every send); and
//! sends per second against the number of nodes.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::client::{Client, Shared};
use crate::target::Target;
use crate::{Load, Report, connect_all, create, drive, metric, run_on};

/// Every part, in order.
pub(crate) async fn run(per_node: usize) -> Vec<Report> {
    let mut out = Vec::new();
    for nodes in [1, 3] {
        out.push(idle(per_node, nodes).await);
    }
    out.push(applying().await);
    for nodes in [1, 2, 3] {
        out.push(burst(nodes).await);
    }
    out
}

fn label(nodes: usize) -> String {
    match nodes {
        1 => "1 node, PostgreSQL".into(),
        n => format!("{n} nodes, PostgreSQL + NATS"),
    }
}

/// `per_node` idle connections on each of `nodes` nodes (client i on node i mod n): each node's
/// resident memory per connection.
async fn idle(per_node: usize, nodes: usize) -> Report {
    let staff = per_node * nodes;
    let target = Target::cluster(staff, nodes, nodes > 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<f64> = (0..nodes).map(|n| target.rss_mib_of(n).0).collect();
    let shared = Shared::new(0.0, false);
    let clients = connect_all(&target, 0..staff, &shared).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per: Vec<f64> = (0..nodes)
        .map(|n| (target.rss_mib_of(n).0 - before[n]) * 1024.0 / per_node as f64)
        .collect();
    let peak = (0..nodes).map(|n| target.rss_mib_of(n).1).fold(0.0, f64::max);
    let report = Report {
        scenario: "capacity: idle".into(),
        target: label(nodes),
        peak_rss_mib: peak,
        rss_per_connection_kib: per.iter().sum::<f64>() / nodes as f64,
        errors: shared.errors.load(std::sync::atomic::Ordering::Relaxed),
        note: format!(
            "capacity, idle, {}: {staff} connections, {per_node} per node; KiB per connection by node: {}",
            label(nodes),
            per.iter()
                .map(|k| format!("{k:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ..Report::default()
    };
    for c in clients {
        c.close();
    }
    report
}

/// Two nodes: 50 staff all on the first, sending 5,000 messages to one group as fast as they
/// are acknowledged; the second has no client and only applies what the first commits. Its CPU
/// per event applied is what a node pays for each event of the others.
async fn applying() -> Report {
    let (staff, count) = (50, 5000);
    let target = Target::cluster(staff, 2, true);
    let shared = Shared::new(0.0, false);
    let mut clients = Vec::with_capacity(staff);
    for i in 0..staff {
        let c = Client::connect(target.addrs[0], i, target.token(i), None, shared.clone())
            .await
            .expect("connect");
        clients.push(c);
    }
    let plan = vec![(0..staff).collect::<Vec<usize>>()];
    create(&clients, &plan).await;
    let other = target.addrs[1];
    let caught = || metric(other, "tally_events_caught_up_total");
    let (cpu0, cpu1, events0) = (target.cpu_seconds_of(0), target.cpu_seconds_of(1), caught().await);
    let elapsed = drive(
        &clients,
        &plan,
        &shared,
        count,
        None,
        64,
        &mut StdRng::seed_from_u64(7),
    )
    .await;
    // Until the second node has applied everything the first committed (or 10 s).
    let mut events = caught().await - events0;
    for _ in 0..100 {
        if events >= count as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        events = caught().await - events0;
    }
    let (writer, applier) = (target.cpu_seconds_of(0) - cpu0, target.cpu_seconds_of(1) - cpu1);
    let per_event = |cpu: f64| cpu * 1e6 / events.max(1) as f64;
    let report = Report {
        scenario: "capacity: applying".into(),
        target: label(2),
        sends_acked_per_s: count as f64 / elapsed.as_secs_f64(),
        cpu_percent: 100.0 * (writer + applier) / elapsed.as_secs_f64(),
        errors: shared.errors.load(std::sync::atomic::Ordering::Relaxed),
        note: format!(
            "capacity, applying: the node with no client applied {events} events of the other's in \
             {applier:.2} CPU s, {:.1} µs each; the node that took the sends used {writer:.2} CPU s, \
             {:.1} µs per event",
            per_event(applier),
            per_event(writer),
        ),
        ..Report::default()
    };
    for c in clients {
        c.close();
    }
    report
}

/// The cluster scenario's burst (one group of 50, 5,000 sends, 64 in flight) on `nodes` nodes.
async fn burst(nodes: usize) -> Report {
    let target = Target::cluster(50, nodes, nodes > 1);
    let plan = vec![(0..50).collect::<Vec<usize>>()];
    let load = Load {
        count: 5000,
        rate: None,
        window: 64,
        read_rate: 0.0,
    };
    let mut report = run_on("capacity: burst", &label(nodes), &target, true, 50, &plan, load).await;
    report.note = format!(
        "capacity, burst, {}: {:.0} sends/s acknowledged over {} node(s)",
        label(nodes),
        report.sends_acked_per_s,
        target.node_count()
    );
    report
}
