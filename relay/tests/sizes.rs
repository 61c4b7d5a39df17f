//! Every size a peer chooses is bounded in bytes, and the largest legitimate state still gets
//! through: snapshots and replays of any history, history pages, search results. A real relay,
//! real sockets, default queue sizes (1,024 frames, 1 MiB per connection).

mod common;

use common::*;
use tally_shared::protocol::{ServerFrame, encode};
use tally_shared::{ClientFrame, ClientMsgId, ConversationId, Request, limits};

/// The largest body there is as JSON: 8 KiB of control characters, each escaped to six bytes.
fn maximal_body(i: usize) -> String {
    let tag = format!("m{i} ");
    tag.clone() + &"\u{1}".repeat(limits::BODY_MAX_BYTES - tag.len())
}

/// Sends `n` messages with bodies from `body`, pipelined, and waits until all are stored.
async fn flood(client: &mut Client, conversation: ConversationId, n: usize, body: impl Fn(usize) -> String) {
    for i in 0..n {
        let frame = ClientFrame::with_req(
            i as u64 + 1,
            Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id: ClientMsgId::new(format!("f-{conversation}-{i}")).unwrap(),
                conversation,
                body: body(i),
                attachments: vec![],
                reply_to: None,
            },
        );
        client.send_text(encode(&frame)).await;
        // Read as we go: the sender is a reader too, and must not become a slow consumer.
        if i % 16 == 15 {
            client.sync().await;
        }
    }
    client.sync().await;
}

/// A group of these staff, made by the first client.
async fn group(client: &mut Client, members: &[&str]) -> ConversationId {
    client
        .call(Request::CreateGroup {
            client_id: ClientMsgId::new(format!("g-{}", members.join("-"))).unwrap(),
            title: "Big".into(),
            participants: members.iter().map(|m| sid(m)).collect(),
        })
        .await
        .unwrap()
        .conversation
        .unwrap()
}

/// The snapshot a fresh connection gets, and the length of its frame.
async fn snapshot_of(
    relay: &Relay,
    staff: &str,
    resume_from: Option<tally_shared::Offset>,
) -> (Client, usize) {
    let client = Client::connect(relay.addr, &relay.token(staff), resume_from).await;
    let Some(ServerFrame::Snapshot(_)) = client.frames.first() else {
        panic!("{staff}: no snapshot first: {:?}", client.frames.first());
    };
    let len = encode(&client.frames[0]).len();
    (client, len)
}

#[tokio::test]
async fn a_group_full_of_maximal_messages_locks_nobody_out_on_connect_or_resume() {
    // The probe: about 22 maximal messages made every member's snapshot larger than a queue,
    // and each connection was closed as too slow before it had read anything, on every try.
    let relay = Relay::start_with(&["alice", "bob", "carol", "dave"], |c| {
        c.queue_bytes = tally_relay::hub::QUEUE_BYTES;
    })
    .await;
    let mut alice = relay.connect("alice").await;
    let g = group(&mut alice, &["bob", "carol", "dave"]).await;
    // Bob and Carol were here before the flood: they will resume from where they were.
    let mut before = Vec::new();
    for staff in ["bob", "carol"] {
        let mut c = relay.connect(staff).await;
        c.sync().await;
        before.push((staff, c.store.applied(), c.store));
    }
    flood(&mut alice, g, 300, maximal_body).await;
    let head = alice.store.head(g).0 as u32;
    for staff in ["bob", "carol", "dave", "alice"] {
        let (mut fresh, len) = snapshot_of(&relay, staff, None).await;
        fresh.sync().await;
        let want = if staff == "alice" { 0 } else { head };
        assert_eq!(fresh.store.counts(g).unread, want, "{staff}");
        assert!(
            len < limits::SNAPSHOT_MESSAGE_BYTES + 64 * 1024,
            "{staff}: a snapshot of {len} bytes"
        );
        let carried = fresh.store.conversation(g).unwrap().messages.len();
        assert!(carried >= 1, "{staff}: at least the newest message");
    }
    // Resuming from before the flood: 300 maximal events are no replay but a snapshot.
    for (staff, at, store) in before {
        let mut again = Client::connect_with_store(relay.addr, &relay.token(staff), Some(at), store).await;
        assert!(
            matches!(again.frames.first(), Some(ServerFrame::Snapshot(_))),
            "{staff}"
        );
        again.sync().await;
        assert_eq!(again.store.counts(g).unread, head, "{staff}");
        assert_eq!(again.store.divergences(), 0);
    }
    assert_eq!(
        metric_at(relay.addr, "tally_slow_consumer_disconnects_total").await,
        0
    );
}

#[tokio::test]
async fn someone_back_from_leave_with_a_thousand_long_unread_messages_connects_and_pages_them_all() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let dm = alice.direct_with("bob").await;
    let long = |i: usize| format!("{i}: {}", "long text ".repeat(limits::BODY_MAX_BYTES / 10 - 1));
    flood(&mut alice, dm, 1000, long).await;
    let (mut bob, len) = snapshot_of(&relay, "bob", None).await;
    bob.sync().await;
    assert_eq!(bob.store.counts(dm).unread, 1000);
    assert!(len < limits::SNAPSHOT_MESSAGE_BYTES + 64 * 1024, "{len}");
    // The rest comes through history, in pages bounded in bytes, each starting where the
    // last ended.
    let all = all_messages(relay.addr, &relay.token("bob"), dm).await;
    assert_eq!(all.len(), 1000);
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m["seq"].as_u64(), Some(i as u64 + 1));
    }
    // Reading them all through the store brings the count to 0, and nothing diverged.
    bob.call(Request::MarkConversationRead { conversation: dm })
        .await
        .unwrap();
    bob.sync().await;
    assert_eq!(bob.store.counts(dm).unread, 0);
    assert_eq!(bob.store.divergences(), 0);
}

#[tokio::test]
async fn a_history_page_is_bounded_in_bytes_and_the_next_one_follows_it() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let dm = alice.direct_with("bob").await;
    flood(&mut alice, dm, 200, maximal_body).await;
    let token = bearer(&relay.token("bob"));
    let path = format!("/api/conversations/{dm}/messages?limit=200");
    let (status, _, body) = http(relay.addr, "GET", &path, &[("Authorization", &token)], b"").await;
    assert_eq!(status, 200);
    // The probe's page was 7.9 MiB.
    assert!(
        body.len() <= limits::PAGE_MAX_BYTES + 4096,
        "a page of {} bytes",
        body.len()
    );
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let msgs = page["messages"].as_array().unwrap();
    assert!(!msgs.is_empty() && msgs.len() < 200);
    assert_eq!(
        msgs.last().unwrap()["seq"].as_u64(),
        Some(200),
        "the newest first"
    );
    let all = all_messages(relay.addr, &relay.token("bob"), dm).await;
    assert_eq!(all.len(), 200);
}

#[tokio::test]
async fn search_results_are_bounded_in_bytes_and_say_where_the_next_page_starts() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let dm = alice.direct_with("bob").await;
    let needle = |i: usize| format!("needle {i} {}", "\u{1}".repeat(limits::BODY_MAX_BYTES - 16));
    flood(&mut alice, dm, 50, needle).await;
    let token = bearer(&relay.token("bob"));
    let (status, _, body) = http(
        relay.addr,
        "GET",
        "/api/search?q=needle&limit=50",
        &[("Authorization", &token)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        body.len() <= limits::PAGE_MAX_BYTES + 4096,
        "{} bytes",
        body.len()
    );
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let found = page["results"].as_array().unwrap();
    assert!(!found.is_empty() && found.len() < 50);
    let next = page["next_before"].as_u64().expect("a next page");
    assert_eq!(Some(next), found.last().unwrap()["id"].as_u64());
}

#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_is_cut_off_with_a_typed_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = Relay::start(&["alice"]).await;
    let token = bearer(&relay.token("alice"));
    let s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let head = format!(
        "POST /api/attachments?name=a.txt HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\nContent-Length: 1000\r\n\r\n"
    );
    w.write_all(head.as_bytes()).await.unwrap();
    // One byte every 3 s: the probe's trickle (one every 5 s) stayed open past 120 s.
    let started = std::time::Instant::now();
    let trickle = tokio::spawn(async move {
        while w.write_all(b"x").await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(40), r.read_to_end(&mut out)).await;
    trickle.abort();
    assert!(read.is_ok(), "still open after 40 s");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"timeout""#), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
