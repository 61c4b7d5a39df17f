//! Cluster mode, with real processes: a throwaway PostgreSQL, a `nats-server` and three relay
//! nodes. Clients spread over the nodes must see the oracle's counts over the shared log at
//! every quiet point, whatever fails: a node killed with SIGKILL, NATS stopped, PostgreSQL
//! restarted, two nodes writing to one conversation at once.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cluster::Cluster;
use common::*;
use tally_shared::oracle::Oracle;
use tally_shared::protocol::{Event, ServerFrame, encode};
use tally_shared::{ClientFrame, ConversationId, ErrorCode, MessageId, Request, Seq};
use tally_testkit::proxy::Fault;

/// These tests start their own PostgreSQL: the pass of the suite on the test server
/// (`TALLY_TEST_POSTGRES`) leaves them to the SQLite pass rather than run them twice.
fn ran_on_the_other_pass() -> bool {
    test_postgres().is_some()
}

/// The cluster tests run side by side, but the nemesis runs alone.
static TURN: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const STAFF: [&str; 6] = ["alice", "bob", "carol", "dan", "erin", "fay"];

/// One browser tab: who, on which node, and its client.
struct Tab {
    who: &'static str,
    node: usize,
    client: Client,
    sent: Vec<MessageId>,
}

/// The oracle over the shared log.
fn oracle(cluster: &Cluster) -> Oracle {
    let mut oracle = Oracle::new();
    for e in cluster.log() {
        oracle.observe_logged(&e.event);
    }
    oracle
}

/// Waits until every tab's node has reached the shared log's head and the tab has every
/// frame sent before (a ping's acknowledgement carries the node's offset).
async fn quiet(cluster: &Cluster, tabs: &mut [Tab]) {
    let head = cluster.head();
    for t in tabs.iter_mut() {
        let mut tries = 0;
        loop {
            let ack = t.client.call(Request::Ping).await.expect("ping");
            if ack.offset >= head {
                break;
            }
            tries += 1;
            assert!(
                tries < 500,
                "{} on node {} stays at {} < {head}",
                t.who,
                t.node,
                ack.offset
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every tab's counts equal the oracle's; tabs of one person agree.
async fn check(cluster: &Cluster, tabs: &mut [Tab], when: &str) {
    quiet(cluster, tabs).await;
    let oracle = oracle(cluster);
    for t in tabs.iter() {
        let staff = sid(t.who);
        for (member, conv) in oracle.memberships() {
            if member == staff {
                assert_eq!(
                    t.client.store.counts(conv),
                    oracle.counts(&staff, conv),
                    "{} on node {} in {conv} {when}",
                    t.who,
                    t.node
                );
            }
        }
        assert_eq!(
            t.client.store.total(),
            oracle.total(&staff),
            "{} on node {} {when}",
            t.who,
            t.node
        );
    }
}

fn xorshift(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

async fn tabs_on(cluster: &Cluster, people: &[(&'static str, usize)]) -> Vec<Tab> {
    let mut tabs = Vec::new();
    for &(who, node) in people {
        tabs.push(Tab {
            who,
            node,
            client: cluster.connect(node, who).await,
            sent: Vec::new(),
        });
    }
    tabs
}

/// A group of everyone in `STAFF`, made on node 0.
async fn group(tab: &mut Tab, title: &str) -> ConversationId {
    let ack = tab
        .client
        .call(Request::CreateGroup {
            client_id: tally_shared::ClientMsgId::new(format!("g-{title}")).unwrap(),
            title: title.into(),
            participants: STAFF.iter().map(|s| sid(s)).collect(),
        })
        .await
        .unwrap();
    ack.conversation.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_nodes_agree_with_the_oracle_on_every_path() {
    if ran_on_the_other_pass() {
        return;
    }
    let _turn = TURN.read().await;
    let cluster = Cluster::start(3, &STAFF).await;
    // Everyone on a node of their own choosing; alice has a second tab on another node.
    let mut tabs = tabs_on(
        &cluster,
        &[
            ("alice", 0),
            ("bob", 1),
            ("carol", 2),
            ("dan", 0),
            ("erin", 1),
            ("fay", 2),
            ("alice", 2),
        ],
    )
    .await;
    let g = group(&mut tabs[0], "everyone").await;
    let bob = tabs[1].client.direct_with("carol").await;
    let dan = tabs[3].client.direct_with("alice").await;
    check(&cluster, &mut tabs, "after setup").await;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for step in 0..240 {
        let t = (xorshift(&mut rng) % tabs.len() as u64) as usize;
        let r = xorshift(&mut rng);
        let tab = &mut tabs[t];
        let convs: Vec<ConversationId> = [g, bob, dan]
            .into_iter()
            .filter(|c| tab.client.store.conversation_list().iter().any(|i| i.id == *c))
            .collect();
        let Some(&conv) = convs.get((r % convs.len().max(1) as u64) as usize) else {
            continue;
        };
        let head = tab.client.store.head(conv);
        let request = match (r >> 8) % 10 {
            0..=2 => Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id: tally_shared::ClientMsgId::new(format!("s{step}")).unwrap(),
                conversation: conv,
                body: if r & 1 == 0 {
                    format!("step {step} @carol")
                } else {
                    format!("step {step}")
                },
                attachments: vec![],
                reply_to: tab.sent.last().copied().filter(|_| r & 2 == 0),
            },
            3 => match tab.sent.last() {
                Some(&message) => Request::EditMessage {
                    mention_ranges: Vec::new(),
                    message,
                    body: format!("edited at {step}"),
                },
                None => Request::MarkAllRead,
            },
            4 => match tab.sent.pop() {
                Some(message) => Request::DeleteMessage { message },
                None => Request::MarkAllRead,
            },
            5 => match tab.sent.last() {
                Some(&message) => Request::ForwardMessage {
                    client_id: tally_shared::ClientMsgId::new(format!("f{step}")).unwrap(),
                    message,
                    to: g,
                },
                None => Request::MarkAllRead,
            },
            6 => Request::MarkRead {
                conversation: conv,
                up_to: Seq(head.0.saturating_sub((r >> 16) % 3)),
            },
            7 => Request::MarkConversationRead { conversation: conv },
            8 => Request::MarkUnread {
                conversation: conv,
                from: Seq(head.0.saturating_sub((r >> 16) % 4).max(1)),
            },
            _ => Request::MarkAllRead,
        };
        match tab.client.call(request.clone()).await {
            Ok(ack) => {
                if matches!(
                    request,
                    Request::SendMessage { .. } | Request::ForwardMessage { .. }
                ) && let Some(m) = ack.message
                {
                    tab.sent.push(m);
                }
            }
            Err(e) => assert!(
                !matches!(e.code, ErrorCode::Internal | ErrorCode::Unavailable),
                "{request:?}: {e:?}"
            ),
        }
        if step % 40 == 39 {
            check(&cluster, &mut tabs, &format!("at step {step}")).await;
        }
    }
    check(&cluster, &mut tabs, "at the end").await;
    // Alice's two tabs, on two nodes, agree with each other too.
    let (a, b) = (&tabs[0].client.store, &tabs[6].client.store);
    assert_eq!(a.total(), b.total());
    for c in [g, dan] {
        assert_eq!(a.counts(c), b.counts(c), "alice's tabs in {c}");
    }
    // What was deleted left PostgreSQL's copy of the log too.
    let log = cluster.log();
    let deleted: Vec<MessageId> = log
        .iter()
        .filter_map(|e| match &e.event {
            Event::MessageDeleted { message, .. } => Some(*message),
            _ => None,
        })
        .collect();
    assert!(!deleted.is_empty());
    for e in &log {
        if let Event::MessageCreated { message } = &e.event
            && deleted.contains(&message.id)
        {
            assert!(
                message.body.is_empty(),
                "deleted text in PostgreSQL: {:?}",
                message.body
            );
        }
    }
}

/// Sends `count` numbered messages (`{prefix}-{i}`) without waiting, then collects what the
/// node answers until it answers all or the connection ends; returns the acknowledged ids.
async fn burst(
    client: &mut Client,
    g: ConversationId,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> Vec<usize> {
    burst_telling(client, g, prefix, range, None).await
}

/// `burst`, saying how many were acknowledged so far after each acknowledgement.
async fn burst_telling(
    client: &mut Client,
    g: ConversationId,
    prefix: &str,
    range: std::ops::Range<usize>,
    progress: Option<tokio::sync::watch::Sender<usize>>,
) -> Vec<usize> {
    for i in range.clone() {
        let frame = ClientFrame::with_req(
            i as u64,
            Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id: tally_shared::ClientMsgId::new(format!("{prefix}-{i}")).unwrap(),
                conversation: g,
                body: format!("{prefix} {i}"),
                attachments: vec![],
                reply_to: None,
            },
        );
        if futures_util::SinkExt::send(
            &mut client.ws,
            tokio_tungstenite::tungstenite::Message::text(encode(&frame)),
        )
        .await
        .is_err()
        {
            break;
        }
    }
    let mut acked = Vec::new();
    let mut answered = 0;
    while answered < range.len() {
        match client.next().await {
            Some(ServerFrame::Ack(a)) if a.req.is_some_and(|r| range.contains(&(r.0 as usize))) => {
                acked.push(a.req.unwrap().0 as usize);
                answered += 1;
                if let Some(p) = &progress {
                    p.send_replace(acked.len());
                }
            }
            Some(ServerFrame::Error(e)) if e.req.is_some() => answered += 1,
            Some(_) => {}
            None => break,
        }
    }
    acked
}

/// A request's answer, or none if the connection ended first.
async fn try_call(
    client: &mut Client,
    request: Request,
) -> Option<Result<tally_shared::protocol::Ack, tally_shared::protocol::ErrorFrame>> {
    let req = 1_000_000 + rand_req();
    let text = encode(&ClientFrame::with_req(req, request));
    // A connection already closed answers nothing.
    futures_util::SinkExt::send(
        &mut client.ws,
        tokio_tungstenite::tungstenite::Message::text(text),
    )
    .await
    .ok()?;
    loop {
        match client.next().await? {
            ServerFrame::Ack(a) if a.req.map(|r| r.0) == Some(req) => return Some(Ok(a)),
            ServerFrame::Error(e) if e.req.map(|r| r.0) == Some(req) => return Some(Err(e)),
            _ => {}
        }
    }
}

fn rand_req() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How many times each message body starting with `prefix` is in the shared log.
fn stored(cluster: &Cluster, prefix: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for e in cluster.log() {
        if let Event::MessageCreated { message } = &e.event
            && message.body.starts_with(prefix)
        {
            *seen.entry(message.body.clone()).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_burst_loses_nothing_acknowledged_and_its_clients_resume_elsewhere() {
    if ran_on_the_other_pass() {
        return;
    }
    let _turn = TURN.read().await;
    const N: usize = 2_000;
    let mut cluster = Cluster::start(3, &STAFF).await;
    let mut tabs = tabs_on(&cluster, &[("alice", 0), ("dan", 0), ("bob", 1), ("carol", 2)]).await;
    let g = group(&mut tabs[0], "burst").await;
    check(&cluster, &mut tabs, "before").await;

    // Alice sends 2,000 messages through node 0, which is killed once 100 are acknowledged.
    let mut writer = tabs.remove(0);
    let (progress, mut acks) = tokio::sync::watch::channel(0);
    let sending = tokio::spawn(async move {
        let acked = burst_telling(&mut writer.client, g, "burst", 0..N, Some(progress)).await;
        (writer, acked)
    });
    acks.wait_for(|n| *n >= 100).await.unwrap();
    cluster.kill(0);
    let (mut writer, acked) = sending.await.unwrap();

    // Alice and dan move to the other nodes and resume from where their stores are.
    for (tab, node) in [(&mut writer, 1usize), (&mut tabs[0], 2)] {
        let store = std::mem::take(&mut tab.client.store);
        let from = store.applied();
        tab.client = Client::connect_with_store(
            cluster.nodes[node].addr,
            &cluster.token(tab.who),
            Some(from),
            store,
        )
        .await;
        tab.node = node;
    }
    // Alice sends again every message not acknowledged (same client ids): none twice.
    let missing: Vec<usize> = (0..N).filter(|i| !acked.contains(i)).collect();
    for i in &missing {
        let frame = Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: tally_shared::ClientMsgId::new(format!("burst-{i}")).unwrap(),
            conversation: g,
            body: format!("burst {i}"),
            attachments: vec![],
            reply_to: None,
        };
        writer.client.call(frame).await.unwrap();
    }
    let seen = stored(&cluster, "burst ");
    for i in 0..N {
        assert_eq!(
            seen.get(&format!("burst {i}")),
            Some(&1),
            "burst {i} (acked: {})",
            acked.contains(&i)
        );
    }
    tabs.push(writer);
    check(&cluster, &mut tabs, "after the kill").await;
    assert!(
        !acked.is_empty() && !missing.is_empty(),
        "the kill came mid-burst: {} acked",
        acked.len()
    );

    // The killed node comes back on its own replica and catches up.
    cluster.restart(0);
    let mut back = tabs_on(&cluster, &[("alice", 0), ("dan", 0)]).await;
    check(&cluster, &mut back, "on the restarted node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_stopped_nodes_read_postgres_and_the_doorbell_comes_back() {
    if ran_on_the_other_pass() {
        return;
    }
    let _turn = TURN.read().await;
    let mut cluster = Cluster::start(3, &STAFF).await;
    let mut tabs = tabs_on(&cluster, &[("alice", 0), ("bob", 1), ("carol", 2)]).await;
    let g = group(&mut tabs[0], "nats").await;
    check(&cluster, &mut tabs, "before").await;
    // The group's ring reaches node 1 (its subscription may still be settling after start).
    let mut rings = 0;
    for _ in 0..50 {
        rings = metric_at(cluster.nodes[1].addr, "tally_doorbell_rings_total").await;
        if rings > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rings > 0, "the doorbell rang before NATS stopped");

    cluster.nats.down();
    let stopped = std::time::Instant::now();
    let mut i = 0;
    while stopped.elapsed() < Duration::from_secs(5) {
        tabs[0]
            .client
            .call(send(g, &format!("n{i}"), &format!("while down {i}")))
            .await
            .unwrap();
        // Bob, on another node, gets it without NATS (node 1 polls PostgreSQL).
        tabs[1]
            .client
            .until(|f| matches!(f, ServerFrame::Event(e) if matches!(&e.event, Event::MessageCreated { message } if message.body == format!("while down {i}"))))
            .await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(&cluster, &mut tabs, "while NATS is down").await;

    cluster.nats.up();
    // The nodes reconnect on their own; the doorbell rings again.
    let mut tries = 0;
    loop {
        tabs[0]
            .client
            .call(send(g, &format!("u{tries}"), "after"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if metric_at(cluster.nodes[1].addr, "tally_doorbell_rings_total").await > rings {
            break;
        }
        tries += 1;
        assert!(tries < 100, "the doorbell never rang again");
    }
    check(&cluster, &mut tabs, "after NATS is back").await;
    let seen = stored(&cluster, "while down");
    assert_eq!(seen.len(), i);
    assert!(seen.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_refuses_writes_as_unavailable_then_they_succeed() {
    if ran_on_the_other_pass() {
        return;
    }
    let _turn = TURN.read().await;
    let cluster = Cluster::start(3, &STAFF).await;
    let mut tabs = tabs_on(&cluster, &[("alice", 0), ("bob", 1), ("carol", 2)]).await;
    let g = group(&mut tabs[0], "pg").await;
    check(&cluster, &mut tabs, "before").await;

    let writer = tokio::spawn({
        let token = cluster.token("alice");
        let addr = cluster.nodes[0].addr;
        let mut client = tabs.remove(0).client;
        async move {
            let mut unavailable = 0;
            let mut acked = Vec::new();
            let started = std::time::Instant::now();
            let mut i = 0;
            while started.elapsed() < Duration::from_secs(6) {
                match try_call(&mut client, send(g, &format!("p{i}"), &format!("pg {i}"))).await {
                    Some(Ok(_)) => {
                        acked.push(i);
                        i += 1;
                    }
                    Some(Err(e)) => {
                        assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
                        unavailable += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    None => {
                        // The node closed its sessions to rebuild: resume, send again.
                        let store = std::mem::take(&mut client.store);
                        let from = store.applied();
                        client = Client::connect_with_store(addr, &token, Some(from), store).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acked, unavailable, i)
        }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.pg.down();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.pg.up();
    let (acked, unavailable, sent) = writer.await.unwrap();
    assert!(unavailable > 0, "writes were refused while PostgreSQL was down");
    assert!(
        acked.len() > 10 && acked.len() == sent,
        "writes succeeded again: {} of {sent}",
        acked.len()
    );
    let seen = stored(&cluster, "pg ");
    for i in &acked {
        assert_eq!(seen.get(&format!("pg {i}")), Some(&1), "pg {i}");
    }
    check(&cluster, &mut tabs, "after the restart").await;
}

/// A half-open connection to PostgreSQL (what the node sends arrives, the answers are lost)
/// while the node is idle: its 1 s tick's query, outside any transaction, is one no server-side
/// timeout ends. The node gives the round trip up after its deadline, connects again, and
/// writes go through; before the deadline existed the core waited for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_that_stops_answering_outside_a_transaction_is_given_up_and_reconnected() {
    if ran_on_the_other_pass() {
        return;
    }
    let _turn = TURN.read().await;
    let cluster = Cluster::start_behind_proxies(1, &STAFF).await;
    let mut tabs = tabs_on(&cluster, &[("alice", 0), ("bob", 0)]).await;
    let g = group(&mut tabs[0], "half-open").await;
    // Idle, so the next query is the tick's; two ticks' worth of answers are lost.
    cluster.proxies[0].0.set(Fault::HalfOpen);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    cluster.proxies[0].0.set(Fault::Pass);
    let healed = std::time::Instant::now();
    let within = tally_relay::pg::ROUND_TRIP + Duration::from_secs(20);
    let mut i = 0;
    loop {
        assert!(
            healed.elapsed() < within,
            "no send acknowledged {within:?} after the connection went half-open"
        );
        let c = &mut tabs[0].client;
        match tokio::time::timeout(
            Duration::from_secs(2),
            try_call(c, send(g, &format!("h{i}"), &format!("half-open {i}"))),
        )
        .await
        {
            Ok(Some(Ok(_))) => break,
            Ok(Some(Err(e))) => assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}"),
            // Waiting on the core: the same send again (it is deduplicated by its client id).
            Err(_) => continue,
            Ok(None) => {
                let store = std::mem::take(&mut tabs[0].client.store);
                let from = store.applied();
                let token = cluster.token("alice");
                tabs[0].client =
                    Client::connect_with_store(cluster.nodes[0].addr, &token, Some(from), store).await;
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("a send acknowledged {:?} after healing", healed.elapsed());
    check(&cluster, &mut tabs, "after the half-open connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_writing_to_one_conversation_end_in_one_order_everywhere() {
    if ran_on_the_other_pass() {
        return;
    }
    let _turn = TURN.read().await;
    let cluster = Cluster::start(3, &STAFF).await;
    let mut tabs = tabs_on(&cluster, &[("alice", 0), ("bob", 1), ("carol", 2)]).await;
    let g = group(&mut tabs[0], "race").await;
    check(&cluster, &mut tabs, "before").await;
    let mut alice = tabs.remove(0);
    let mut bob = tabs.remove(0);
    let (a, b) = tokio::join!(
        burst(&mut alice.client, g, "alice", 0..300),
        burst(&mut bob.client, g, "bob", 1000..1300)
    );
    assert_eq!((a.len(), b.len()), (300, 300));
    tabs.insert(0, bob);
    tabs.insert(0, alice);
    check(&cluster, &mut tabs, "after the race").await;
    // The batches interleaved, and every node's history has the same order.
    let mut orders = Vec::new();
    for node in 0..3 {
        let messages = all_messages(cluster.nodes[node].addr, &cluster.token("carol"), g).await;
        let order: Vec<(u64, String)> = messages
            .iter()
            .filter(|m| {
                m["body"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("alice ") || b.starts_with("bob "))
            })
            .map(|m| {
                (
                    m["seq"].as_u64().unwrap(),
                    m["body"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        orders.push(order);
    }
    assert_eq!(orders[0].len(), 600);
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    let switches = orders[0]
        .windows(2)
        .filter(|w| w[0].1.split(' ').next() != w[1].1.split(' ').next())
        .count();
    assert!(
        switches > 1,
        "the two writers' batches interleaved ({switches} switches)"
    );
}

/// Whether a presence frame for `staff` saying `presence` has arrived.
fn heard_presence(client: &Client, staff: &str, presence: tally_shared::protocol::Presence) -> bool {
    client.frames.iter().any(
        |f| matches!(f, ServerFrame::Presence { staff: s, presence: p, .. } if s.as_str() == staff && *p == presence),
    )
}

/// Pings `client` every 200 ms until `done` holds (at most `within`).
async fn ping_until(client: &mut Client, within: Duration, done: impl Fn(&Client) -> bool) {
    let started = std::time::Instant::now();
    while !done(client) {
        assert!(started.elapsed() < within, "not within {within:?}");
        client.call(Request::Ping).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_cross_nodes_and_a_dead_nodes_people_go_offline() {
    if ran_on_the_other_pass() {
        return;
    }
    let _turn = TURN.read().await;
    use tally_shared::protocol::Presence;
    let mut cluster = Cluster::start(2, &STAFF).await;
    let mut alice = cluster.connect(0, "alice").await;
    let direct = alice.direct_with("bob").await;
    let mut bob = cluster.connect(1, "bob").await;
    // Bob is on node 1: alice, on node 0, hears he is online.
    ping_until(&mut alice, Duration::from_secs(10), |c| {
        heard_presence(c, "bob", Presence::Online)
    })
    .await;
    // Typing crosses too (bob's node relays alice's, only to bob).
    alice
        .call(Request::Typing { conversation: direct })
        .await
        .unwrap();
    bob.until(|f| matches!(f, ServerFrame::Typing { staff, conversation } if staff.as_str() == "alice" && *conversation == direct))
        .await;
    // Bob closes his tab: offline.
    drop(bob);
    ping_until(&mut alice, Duration::from_secs(10), |c| {
        heard_presence(c, "bob", Presence::Offline)
    })
    .await;
    // Bob again, then his node dies without a word: his presence expires with it.
    alice.frames.clear();
    let _bob = cluster.connect(1, "bob").await;
    ping_until(&mut alice, Duration::from_secs(10), |c| {
        heard_presence(c, "bob", Presence::Online)
    })
    .await;
    alice.frames.clear();
    cluster.kill(1);
    let expires = tally_relay::doorbell::PRESENCE_EXPIRES + Duration::from_secs(5);
    ping_until(&mut alice, expires, |c| {
        heard_presence(c, "bob", Presence::Offline)
    })
    .await;
}

/// Staff live in PostgreSQL: a change made there (here by the CLI) reaches every node at its
/// next tick, though each reads the staff table only when a version row, kept by triggers,
/// says someone wrote to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_change_made_in_postgres_reaches_every_node() {
    if ran_on_the_other_pass() {
        return;
    }
    let _turn = TURN.read().await;
    let cluster = Cluster::start(2, &STAFF).await;
    // Alice has a tab on each node.
    let mut on_0 = cluster.connect(0, "alice").await;
    let mut on_1 = cluster.connect(1, "alice").await;
    // Ticks with nothing written: both keep her.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    on_0.sync().await;
    on_1.sync().await;
    let started = std::time::Instant::now();
    let cli = tempfile::tempdir().unwrap();
    common::cluster::cluster_cli(cli.path(), &cluster.pg.url(), &["staff", "deactivate", "alice"]);
    for (node, tab) in [(0, &mut on_0), (1, &mut on_1)] {
        assert_eq!(
            tab.closed_with().await,
            Some(tally_shared::protocol::close::DEACTIVATED),
            "node {node} heard"
        );
    }
    eprintln!("both sessions closed {:?} after the CLI", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_through_one_node_is_sent_through_another_and_downloaded_from_a_third() {
    if ran_on_the_other_pass() {
        return;
    }
    let _turn = TURN.read().await;
    let cluster = Cluster::start(3, &STAFF).await;
    let mut alice = cluster.connect(1, "alice").await;
    let direct = alice.direct_with("bob").await;
    let bytes: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let (status, _, body) = http(
        cluster.nodes[0].addr,
        "POST",
        "/api/attachments?name=chart.bin",
        &[("Authorization", &bearer(&cluster.token("alice")))],
        &bytes,
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let attachment: tally_shared::Attachment = serde_json::from_slice(&body).unwrap();
    // Node 1 never saw the upload: it fetches it from PostgreSQL to check it is alice's.
    alice
        .call(Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: tally_shared::ClientMsgId::new("with-file").unwrap(),
            conversation: direct,
            body: "the chart".into(),
            attachments: vec![attachment.id.clone()],
            reply_to: None,
        })
        .await
        .unwrap();
    let path = format!("/api/attachments/{}", attachment.id);
    let get = |node: usize, who: &'static str| {
        let addr = cluster.nodes[node].addr;
        let auth = bearer(&cluster.token(who));
        let path = path.clone();
        async move { http(addr, "GET", &path, &[("Authorization", &auth)], b"").await }
    };
    // Bob, on node 2, downloads the same bytes; carol, in no conversation with it, may not.
    let (status, _, got) = get(2, "bob").await;
    assert_eq!(status, 200);
    assert_eq!(got, bytes);
    assert_eq!(get(2, "carol").await.0, 403);
    assert_eq!(get(0, "carol").await.0, 403);
    // Someone else's upload cannot be attached through another node either.
    let mut dan = cluster.connect(2, "dan").await;
    let to_alice = dan.direct_with("alice").await;
    let refused = dan
        .call(Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: tally_shared::ClientMsgId::new("not-mine").unwrap(),
            conversation: to_alice,
            body: "x".into(),
            attachments: vec![attachment.id.clone()],
            reply_to: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotFound, "{refused:?}");
}

/// Rings carry the events they announce, sealed with the cluster's secret: the other nodes
/// apply them without reading PostgreSQL. A message on NATS that no node sealed (a forged
/// event at the next offset, a forged presence) is dropped and counted, and changes nothing;
/// a real ring played again carries only events every node has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rings_carry_sealed_events_and_nothing_unsealed_is_believed() {
    use futures_util::StreamExt;
    if ran_on_the_other_pass() {
        return;
    }
    let _turn = TURN.read().await;
    let cluster = Cluster::start(2, &STAFF).await;
    let mut tabs = tabs_on(&cluster, &[("alice", 0), ("bob", 1)]).await;
    let g = group(&mut tabs[0], "sealed").await;
    let nats = async_nats::connect(cluster.nats.url()).await.unwrap();
    let mut rings = nats.subscribe("tally.*.head").await.unwrap();
    let mut gossip = nats.subscribe("tally.*.gossip").await.unwrap();
    nats.flush().await.unwrap();
    for i in 0..20 {
        tabs[0]
            .client
            .call(send(g, &format!("s{i}"), "sealed"))
            .await
            .unwrap();
    }
    check(&cluster, &mut tabs, "after the sends").await;
    let node1 = cluster.nodes[1].addr;
    let heard = metric_at(node1, "tally_events_heard_total").await;
    // (Some may have been read from PostgreSQL instead, if a stall of 500 ms, `QUIET`, came
    // between a commit and its ring: a slow machine's, not a failure.)
    assert!(
        heard >= 10,
        "node 1 applied the sends as their rings carried them ({heard} of 20)"
    );

    // What an outsider on NATS sees: a ring, a tag then the head and its events.
    let ring = tokio::time::timeout(Duration::from_secs(5), rings.next())
        .await
        .expect("a ring")
        .unwrap();
    let body = std::str::from_utf8(&ring.payload[32..]).unwrap();
    let mut lines = body.lines();
    let head: u64 = lines.next().unwrap().parse().unwrap();
    let event: serde_json::Value = serde_json::from_str(lines.next().expect("an event")).unwrap();
    assert!(event["offset"].as_u64().unwrap() <= head);
    let gossip_subject = tokio::time::timeout(Duration::from_secs(10), gossip.next())
        .await
        .expect("presence gossip")
        .unwrap()
        .subject;

    // Forged: the next offset, a message nobody sent, with a made-up tag; and carol online.
    let before = metric_at(node1, "tally_nats_refused_total").await;
    let next = cluster.head().0 + 1;
    let mut forged = event.clone();
    forged["offset"] = next.into();
    let forged = forged.to_string().replace("\"sealed\"", "\"forged\"");
    assert!(forged.contains("forged"));
    let mut payload = vec![7u8; 32];
    payload.extend_from_slice(format!("{next}\n{forged}").as_bytes());
    nats.publish(ring.subject.clone(), payload.into()).await.unwrap();
    let mut payload = vec![7u8; 32];
    payload.extend_from_slice(br#"{"kind":"presence","node":7,"full":true,"staff":[["carol","online"]]}"#);
    nats.publish(gossip_subject, payload.into()).await.unwrap();
    // Played again: a real ring, every event of which node 1 has.
    nats.publish(ring.subject.clone(), ring.payload.clone())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let started = std::time::Instant::now();
    while metric_at(node1, "tally_nats_refused_total").await < before + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the forgeries were not refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tabs[0]
        .client
        .call(send(g, "after", "after the forgery"))
        .await
        .unwrap();
    check(&cluster, &mut tabs, "after the forgery").await;
    assert!(
        !heard_presence(&tabs[1].client, "carol", tally_shared::protocol::Presence::Online),
        "forged gossip showed carol online"
    );
    assert!(
        !tabs[1].client.frames.iter().any(|f| encode(f).contains("forged")),
        "bob got the forged message"
    );
    assert!(
        tabs[1]
            .client
            .frames
            .iter()
            .any(|f| encode(f).contains("after the forgery")),
        "bob got the message sent after the forgery"
    );
    let stored = stored(&cluster, "sealed");
    assert_eq!(
        stored.values().sum::<usize>(),
        20,
        "nothing forged reached the log"
    );
}

/// How long the nemesis runs: `TALLY_SOAK_SECONDS` (`make soak MINUTES=…`), 20 s otherwise.
fn soak_seconds() -> u64 {
    std::env::var("TALLY_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// How long a client may take to converge once the network is healed (the bound the nemesis
/// test holds the cluster to).
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);

/// What one writer did: the message each acknowledged send made, by its number.
type Acked = HashMap<usize, MessageId>;

/// A writer on one node: sends numbered messages one at a time (`{prefix}-{i}`), each retried
/// with its client id until acknowledged; a connection that stops answering is replaced. Runs
/// until `stop`, then until every message it began is acknowledged.
async fn writer(
    cluster_addr: std::sync::Arc<std::sync::Mutex<std::net::SocketAddr>>,
    token: String,
    g: ConversationId,
    prefix: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Acked, usize) {
    let mut acked = Acked::new();
    let mut client: Option<Client> = None;
    let mut next = 0usize;
    let mut open: Option<usize> = None;
    let mut attempts = 0usize;
    let deadline_after_stop = Duration::from_secs(90);
    let mut stopped_at: Option<tokio::time::Instant> = None;
    loop {
        if *stop.borrow() && stopped_at.is_none() {
            stopped_at = Some(tokio::time::Instant::now());
        }
        if open.is_none() {
            if stopped_at.is_some() {
                return (acked, attempts);
            }
            open = Some(next);
            next += 1;
        }
        if let Some(at) = stopped_at {
            assert!(
                at.elapsed() < deadline_after_stop,
                "{prefix}: a send is still not acknowledged {deadline_after_stop:?} after the faults stopped"
            );
        }
        let i = open.expect("a send in hand");
        if client.is_none() {
            let addr = *cluster_addr.lock().unwrap();
            match tokio::time::timeout(Duration::from_secs(5), Client::connect(addr, &token, None)).await {
                Ok(c) => client = Some(c),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        attempts += 1;
        let request = Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: tally_shared::ClientMsgId::new(format!("{prefix}-{i}")).unwrap(),
            conversation: g,
            body: format!("{prefix} {i}"),
            attachments: vec![],
            reply_to: None,
        };
        let c = client.as_mut().expect("connected");
        match tokio::time::timeout(Duration::from_secs(5), try_call(c, request)).await {
            Ok(Some(Ok(ack))) => {
                acked.insert(i, ack.message.expect("a send's ack names its message"));
                open = None;
            }
            Ok(Some(Err(e))) => {
                assert_eq!(e.code, ErrorCode::Unavailable, "{prefix} {i}: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The connection ended, or stopped answering: a new one, and the same send again.
            Ok(None) | Err(_) => client = None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_random_network_faults_nothing_acknowledged_is_lost_or_doubled_and_everyone_converges() {
    if ran_on_the_other_pass() {
        return;
    }
    // Alone: its faults and load would make the other cluster tests' timings lie.
    let _turn = TURN.write().await;
    let cluster = Cluster::start_behind_proxies(3, &STAFF).await;
    let mut tabs = tabs_on(
        &cluster,
        &[("alice", 0), ("bob", 1), ("carol", 2), ("dan", 0), ("erin", 1)],
    )
    .await;
    let g = group(&mut tabs[0], "nemesis").await;
    check(&cluster, &mut tabs, "before the faults").await;

    // One writer per node, as fay, erin and dan.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for (node, who) in [(0usize, "fay"), (1, "erin"), (2, "dan")] {
        let addr = std::sync::Arc::new(std::sync::Mutex::new(cluster.nodes[node].addr));
        let task = tokio::spawn(writer(
            addr,
            cluster.token(who),
            g,
            format!("nem{node}"),
            stop.clone(),
        ));
        writers.push((who, node, task));
    }

    // The nemesis: a random fault on one node's way to PostgreSQL or NATS, for a while, then
    // healed, again and again.
    let mut rng = 0x2545_f491_4f6c_dd1du64 ^ u64::from(std::process::id());
    let seed = rng;
    let until = tokio::time::Instant::now() + Duration::from_secs(soak_seconds());
    let mut schedule = Vec::new();
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500 + xorshift(&mut rng) % 1_500)).await;
        let node = (xorshift(&mut rng) % 3) as usize;
        let to_pg = xorshift(&mut rng).is_multiple_of(2);
        let proxy = if to_pg {
            &cluster.proxies[node].0
        } else {
            &cluster.proxies[node].1
        };
        let fault = match xorshift(&mut rng) % 5 {
            0 => Fault::Partition,
            1 => Fault::Latency(Duration::from_millis(50 + xorshift(&mut rng) % 400)),
            2 => Fault::HalfOpen,
            3 => Fault::Throttle(2_000 + (xorshift(&mut rng) % 50_000) as u32),
            _ => {
                proxy.reset();
                schedule.push(format!("reset node {node} {}", if to_pg { "pg" } else { "nats" }));
                continue;
            }
        };
        schedule.push(format!(
            "{fault:?} node {node} {}",
            if to_pg { "pg" } else { "nats" }
        ));
        proxy.set(fault);
        tokio::time::sleep(Duration::from_millis(500 + xorshift(&mut rng) % 2_500)).await;
        proxy.set(Fault::Pass);
    }
    // Healed: a half-open connection stays stuck until something resets it, as after a real
    // network fault; the writers then finish what they began.
    for (pg, nats) in &cluster.proxies {
        pg.set(Fault::Pass);
        nats.set(Fault::Pass);
    }
    let healed = tokio::time::Instant::now();
    stop_tx.send_replace(true);
    let mut sent = 0;
    for (who, node, task) in writers {
        let (acked, attempts) = task.await.unwrap_or_else(|e| {
            panic!("{who}'s writer on node {node}: {e} (seed {seed:#x}, faults {schedule:?})")
        });
        // Every acknowledged send is in the shared log exactly once, as the message it named.
        let log = cluster.log();
        for (i, id) in &acked {
            let body = format!("nem{node} {i}");
            let stored: Vec<MessageId> = log
                .iter()
                .filter_map(|e| match &e.event {
                    Event::MessageCreated { message } if message.body == body => Some(message.id),
                    _ => None,
                })
                .collect();
            assert_eq!(stored, vec![*id], "{body} (seed {seed:#x}, faults {schedule:?})");
        }
        sent += acked.len();
        println!(
            "writer {who} on node {node}: {} sends acknowledged in {attempts} attempts",
            acked.len()
        );
    }
    // Nothing else of theirs was stored: every send a writer began, it saw acknowledged.
    let all = stored(&cluster, "nem");
    assert_eq!(
        all.len(),
        sent,
        "stored sends that no writer saw acknowledged (seed {seed:#x})"
    );
    assert!(
        all.values().all(|n| *n == 1),
        "a send stored twice (seed {seed:#x})"
    );

    // Every client converges on the oracle over PostgreSQL's log within the bound: one whose
    // connection a fault closed (a node that rebuilt after a commit of unknown outcome closes
    // every connection) resumes from its store, as the widget does.
    let head = cluster.head();
    for t in tabs.iter_mut() {
        loop {
            assert!(
                healed.elapsed() < CONVERGE_WITHIN,
                "{} on node {} has not converged {CONVERGE_WITHIN:?} after healing (seed {seed:#x}, faults {schedule:?})",
                t.who,
                t.node
            );
            match tokio::time::timeout(Duration::from_secs(2), try_call(&mut t.client, Request::Ping)).await {
                Ok(Some(Ok(ack))) if ack.offset >= head => break,
                Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(None) | Err(_) => {
                    let store = std::mem::take(&mut t.client.store);
                    let from = store.applied();
                    let addr = cluster.nodes[t.node].addr;
                    let token = cluster.token(t.who);
                    if let Ok(c) = tokio::time::timeout(
                        Duration::from_secs(5),
                        Client::connect_with_store(addr, &token, Some(from), store.clone()),
                    )
                    .await
                    {
                        t.client = c;
                    } else {
                        t.client.store = store;
                    }
                }
            }
        }
    }
    let mut fresh = tabs_on(&cluster, &[("alice", 0), ("bob", 1), ("carol", 2)]).await;
    check(&cluster, &mut tabs, "after the faults").await;
    check(&cluster, &mut fresh, "on fresh connections after the faults").await;
    let took = healed.elapsed();
    assert!(
        took < CONVERGE_WITHIN,
        "converged after {took:?} (seed {seed:#x}, faults {schedule:?})"
    );
    println!(
        "nemesis: {} faults over {} s, {sent} sends acknowledged once each, converged {took:?} after healing",
        schedule.len(),
        soak_seconds()
    );
}
