//! Invariant 3: a write acknowledged to its author survives `kill -9` of the relay. Runs the
//! real binary as a child process on a real data dir.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tally_shared::protocol::{ServerFrame, encode};
use tally_shared::{ClientMsgId, ConversationId, Request};
use tokio_tungstenite::tungstenite::Message;

/// The relay with its default durability (`synchronous=FULL`) and rate limits lifted.
fn serve(data: &Path) -> (Killed, SocketAddr) {
    spawn(data, &UNLIMITED, None)
}

/// Alice and Bob on the real relay over `data`, a burst of `burst` sends from Alice to their
/// direct conversation in flight, and the client ids acknowledged once `at_least` of them were.
struct Burst {
    child: Killed,
    alice: Client,
    bob_token: String,
    dm: ConversationId,
    acked: BTreeSet<String>,
}

async fn burst(data: &Path, burst: usize, at_least: usize) -> Burst {
    cli(data, &["staff", "add", "alice", "--name", "Alice"]);
    cli(data, &["staff", "add", "bob", "--name", "Bob"]);
    let alice_token = cli(data, &["token", "alice", "--ttl", "10m"]);
    let bob_token = cli(data, &["token", "bob"]);
    let (child, addr) = serve(data);
    let mut alice = Client::connect(addr, &alice_token, None).await;
    let dm = alice
        .call(Request::CreateDirect { staff: sid("bob") })
        .await
        .unwrap()
        .conversation
        .unwrap();
    for i in 0..burst {
        alice
            .ws
            .send(Message::text(encode(&numbered_send(dm, i))))
            .await
            .unwrap();
    }
    let mut acked = BTreeSet::new();
    while acked.len() < at_least {
        if let Some(ServerFrame::Ack(a)) = alice.next().await {
            acked.insert(a.client_id.unwrap().to_string());
        }
    }
    Burst {
        child,
        alice,
        bob_token,
        dm,
        acked,
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_retries_store_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    const BURST: usize = 400;
    let Burst {
        mut child,
        mut alice,
        bob_token,
        dm,
        mut acked,
    } = burst(data, BURST, BURST / 4).await;
    let alice_token = cli(data, &["token", "alice", "--ttl", "10m"]);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acks already in the socket were sent after their commit too.
    while let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(std::time::Duration::from_millis(200), alice.ws.next()).await
    {
        if let Ok(ServerFrame::Ack(a)) = serde_json::from_str::<ServerFrame>(&t) {
            acked.insert(a.client_id.unwrap().to_string());
        }
    }

    let (mut child, addr) = serve(data);
    let stored = all_messages(addr, &bob_token, dm).await;
    let ids: Vec<String> = stored
        .iter()
        .map(|m| m["client_id"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "nothing stored twice");
    for a in &acked {
        assert!(unique.contains(a), "acknowledged {a} was lost");
    }
    let bob = Client::connect(addr, &bob_token, None).await;
    assert_eq!(
        bob.store.counts(dm).unread as usize,
        ids.len(),
        "counts rebuilt from the log"
    );

    // The outbox retries everything: each stored once, the rest stored now.
    let mut alice = Client::connect(addr, &alice_token, None).await;
    for i in 0..BURST {
        alice
            .ws
            .send(Message::text(encode(&numbered_send(dm, i))))
            .await
            .unwrap();
    }
    let mut acks = 0;
    while acks < BURST {
        if let Some(ServerFrame::Ack(_)) = alice.next().await {
            acks += 1;
        }
    }
    let stored = all_messages(addr, &bob_token, dm).await;
    assert_eq!(stored.len(), BURST);
    let mut bob = Client::connect(addr, &bob_token, None).await;
    bob.sync().await;
    assert_eq!(bob.store.counts(dm).unread as usize, BURST);
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("acknowledged before kill: {}, stored: {}", acked.len(), ids.len());
}

#[tokio::test]
async fn sigterm_flushes_and_closes_sockets_with_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    cli(data, &["staff", "add", "alice", "--name", "Alice"]);
    let token = cli(data, &["token", "alice"]);
    let (mut child, addr) = serve(data);
    let mut alice = Client::connect(addr, &token, None).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        alice.closed_with().await,
        Some(tally_shared::protocol::close::GOING_AWAY)
    );
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn a_backup_taken_mid_burst_restores_every_write_acknowledged_before_it_with_exact_counts() {
    if sqlite_only("a SQLite backup file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    const BURST: usize = 600;
    let Burst {
        mut child,
        mut alice,
        bob_token,
        dm,
        acked: acked_before,
    } = burst(data, BURST, BURST / 3).await;
    // The backup runs while the rest of the burst is (usually still) being written; what must
    // hold either way: everything acknowledged before it is in it, with exact counts.
    let file = dir.path().join("backup.sqlite3");
    let said = cli(data, &["backup", "--to", file.to_str().unwrap()]);
    let offset: u64 = said.rsplit(' ').next().unwrap().parse().unwrap();
    let mut acks = acked_before.len();
    while acks < BURST {
        if let Some(ServerFrame::Ack(_)) = alice.next().await {
            acks += 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let restored = tempfile::tempdir().unwrap();
    cli(restored.path(), &["restore", file.to_str().unwrap()]);
    let refused = cli_output(restored.path(), &["restore", file.to_str().unwrap()]);
    assert!(
        !refused.status.success(),
        "a data directory with a database is refused without --force"
    );
    // Restored with --force over the original: its checkpoints belonged to the log replaced.
    let planted =
        tally_relay::checkpoints::dir(data).join("checkpoint-0123456789abcdef-00000000000000099999.bin");
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::write(&planted, b"of the replaced log").unwrap();
    cli(data, &["restore", "--force", file.to_str().unwrap()]);
    assert!(
        !planted.exists(),
        "restore drops the checkpoints of the log it replaces"
    );
    std::fs::copy(data.join("secret"), restored.path().join("secret")).unwrap();
    let (mut child, addr) = serve(restored.path());
    let stored = all_messages(addr, &bob_token, dm).await;
    let ids: BTreeSet<String> = stored
        .iter()
        .map(|m| m["client_id"].as_str().unwrap().to_string())
        .collect();
    for a in &acked_before {
        assert!(
            ids.contains(a),
            "{a} was acknowledged before the backup and is missing"
        );
    }
    let bob = Client::connect(addr, &bob_token, None).await;
    assert_eq!(
        bob.store.applied().0,
        offset,
        "the restored log ends at the backup's offset"
    );
    assert_eq!(
        bob.store.counts(dm).unread as usize,
        ids.len(),
        "counts at that offset"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn check_agrees_with_a_live_relay_and_finds_a_damaged_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    for s in ["alice", "bob", "carol"] {
        cli(data, &["staff", "add", s, "--name", s]);
    }
    let (mut child, addr) = serve(data);
    let mut alice = Client::connect(addr, &cli(data, &["token", "alice"]), None).await;
    let mut bob = Client::connect(addr, &cli(data, &["token", "bob"]), None).await;
    let group = alice
        .call(Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "Desk".into(),
            participants: vec![sid("bob"), sid("carol")],
        })
        .await
        .unwrap()
        .conversation
        .unwrap();
    for i in 0..30 {
        alice.call(numbered_send(group, i).request).await.unwrap();
    }
    bob.call(Request::MarkRead {
        conversation: group,
        up_to: tally_shared::Seq(12),
    })
    .await
    .unwrap();
    bob.call(Request::SetMuted {
        conversation: group,
        muted: true,
    })
    .await
    .unwrap();
    let ack = alice.call(numbered_send(group, 99).request).await.unwrap();
    alice
        .call(Request::DeleteMessage {
            message: ack.message.unwrap(),
        })
        .await
        .unwrap();
    // While the relay serves.
    assert!(cli(data, &["check"]).contains("every count agrees"));
    child.kill().unwrap();
    child.wait().unwrap();
    // A hole in the log (a lost row) is reported, and the command fails.
    let db = rusqlite::Connection::open(data.join("tally.sqlite3")).unwrap();
    db.execute("DELETE FROM events WHERE offset = 10", []).unwrap();
    drop(db);
    let out = cli_output(data, &["check"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("jumps from offset 9 to 11"),
        "{out:?}"
    );
}
