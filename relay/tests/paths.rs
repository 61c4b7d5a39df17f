//! Every write and read path over real sockets, checked against the shared oracle: the counts
//! each staff member's store computes (and the relay's `unread_updated` checkpoints they agree
//! with) equal a naive scan after every step.

mod common;

use common::*;
use tally_shared::memory::MemoryHost;
use tally_shared::oracle::Oracle;
use tally_shared::protocol::ServerFrame;
use tally_shared::{Attachment, ClientMsgId, ConversationId, Millis, Request, Seq, Staff};

const STAFF: [&str; 4] = ["alice", "bob", "carol", "dave"];

struct Scenario {
    relay: Relay,
    clients: Vec<Client>,
    shadow: MemoryHost,
    oracle: Oracle,
    n: u64,
}

impl Scenario {
    async fn new() -> Scenario {
        let relay = Relay::start(&STAFF).await;
        let mut clients = Vec::new();
        for s in STAFF {
            clients.push(relay.connect(s).await);
        }
        let staff: Vec<Staff> = STAFF
            .iter()
            .map(|s| Staff {
                id: sid(s),
                name: s.to_uppercase(),
            })
            .collect();
        Scenario {
            relay,
            clients,
            shadow: MemoryHost::with_staff(&staff),
            oracle: Oracle::new(),
            n: 0,
        }
    }

    fn idx(who: &str) -> usize {
        STAFF.iter().position(|s| *s == who).unwrap()
    }

    fn cid(&mut self) -> ClientMsgId {
        self.n += 1;
        ClientMsgId::new(format!("m{}", self.n)).unwrap()
    }

    /// Runs a request on the relay and on the shadow engine; both must agree, and afterwards
    /// every store must equal the oracle.
    async fn step(
        &mut self,
        who: &str,
        request: Request,
    ) -> Result<tally_shared::protocol::Ack, tally_shared::ErrorCode> {
        let live = self.clients[Self::idx(who)].call(request.clone()).await;
        let shadow = self.shadow.execute(&sid(who), &request, Millis(0));
        match (&live, &shadow) {
            (Ok(ack), Ok(outcome)) => {
                assert_eq!(
                    ack.offset, outcome.ack.offset,
                    "relay and shadow engine disagree on {request:?}"
                );
                for a in &outcome.applied {
                    self.oracle.observe(&a.event.event);
                }
                self.oracle.accepted(&sid(who), &request);
            }
            (Err(e), Err(r)) => assert_eq!(e.code, r.code, "{request:?}"),
            _ => panic!("relay said {live:?}, shadow said {shadow:?} for {request:?}"),
        }
        self.check().await;
        live.map_err(|e| e.code)
    }

    async fn check(&mut self) {
        for (i, s) in STAFF.iter().enumerate() {
            let c = &mut self.clients[i];
            c.sync().await;
            let staff = sid(s);
            for (member, conv) in self.oracle.memberships() {
                if member == staff {
                    assert_eq!(
                        c.store.counts(conv),
                        self.oracle.counts(&staff, conv),
                        "{s} in {conv}"
                    );
                }
            }
            for (conv, root) in self.oracle.threads_of(&staff) {
                assert_eq!(
                    c.store.thread_counts(conv, root),
                    self.oracle.thread_counts(&staff, conv, root),
                    "{s} in thread {conv}/{root}"
                );
            }
            assert_eq!(
                c.store.thread_list().len(),
                self.oracle.threads_of(&staff).len(),
                "threads {s} follows"
            );
            assert_eq!(c.store.total(), self.oracle.total(&staff), "total of {s}");
            let listed: Vec<ConversationId> = c.store.conversation_list().iter().map(|i| i.id).collect();
            for id in listed {
                assert!(
                    self.oracle.is_member(&staff, id),
                    "{s} sees {id} without being in it"
                );
            }
        }
    }

    fn client(&mut self, who: &str) -> &mut Client {
        &mut self.clients[Self::idx(who)]
    }
}

fn send(conversation: ConversationId, client_id: ClientMsgId, body: &str) -> Request {
    Request::SendMessage {
        mention_ranges: Vec::new(),
        client_id,
        conversation,
        body: body.into(),
        attachments: vec![],
        reply_to: None,
    }
}

#[tokio::test]
async fn every_write_and_read_path_agrees_with_the_oracle() {
    let mut s = Scenario::new().await;
    // Direct conversation, one per pair.
    let dm = s
        .step("alice", Request::CreateDirect { staff: sid("bob") })
        .await
        .unwrap()
        .conversation
        .unwrap();
    let again = s
        .step("bob", Request::CreateDirect { staff: sid("alice") })
        .await
        .unwrap()
        .conversation
        .unwrap();
    assert_eq!(dm, again);
    // Send text: bob's badge shows 1, alice's stays 0.
    let c = s.cid();
    let first = s.step("alice", send(dm, c.clone(), "hello bob")).await.unwrap();
    assert_eq!(s.client("bob").store.counts(dm).unread, 1);
    assert_eq!(s.client("alice").store.counts(dm).unread, 0);
    // The same client id again stores nothing new and returns the first acknowledgement.
    let repeat = s.step("alice", send(dm, c, "hello bob")).await.unwrap();
    assert_eq!((repeat.message, repeat.seq), (first.message, first.seq));
    assert_eq!(s.client("bob").store.counts(dm).unread, 1);
    // Attachment: upload, then send it.
    let (status, _, body) = http(
        s.relay.addr,
        "POST",
        "/api/attachments?name=plan.txt",
        &[("Authorization", &bearer(&s.relay.token("alice")))],
        b"the plan",
    )
    .await;
    assert_eq!(status, 201);
    let file: Attachment = serde_json::from_slice(&body).unwrap();
    s.shadow.storage.upload(&sid("alice"), file.clone());
    let c = s.cid();
    s.step(
        "alice",
        Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: c,
            conversation: dm,
            body: String::new(),
            attachments: vec![file.id.clone()],
            reply_to: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("bob").store.counts(dm).unread, 2);
    // Reply: replying moves bob's watermark.
    let c = s.cid();
    s.step(
        "bob",
        Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: c,
            conversation: dm,
            body: "thanks".into(),
            attachments: vec![],
            reply_to: first.message,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("bob").store.counts(dm).unread, 0);
    assert_eq!(s.client("alice").store.counts(dm).unread, 1);
    // Group with a creation notice: everyone but the creator has 1 unread.
    let c = s.cid();
    let group = s
        .step(
            "carol",
            Request::CreateGroup {
                client_id: c,
                title: "Front desk".into(),
                participants: vec![sid("alice"), sid("bob")],
            },
        )
        .await
        .unwrap()
        .conversation
        .unwrap();
    assert_eq!(s.client("bob").store.counts(group).unread, 1);
    // Mention: bob's mention count rises.
    let c = s.cid();
    let mention = s
        .step("carol", send(group, c, "@bob can you cover?"))
        .await
        .unwrap();
    assert_eq!(s.client("bob").store.counts(group).mentions, 1);
    // Forward into another conversation.
    let c = s.cid();
    s.step(
        "alice",
        Request::ForwardMessage {
            client_id: c,
            message: mention.message.unwrap(),
            to: dm,
        },
    )
    .await
    .unwrap();
    // Edit: no count changes.
    let before = s.client("bob").store.total();
    s.step(
        "carol",
        Request::EditMessage {
            mention_ranges: Vec::new(),
            message: mention.message.unwrap(),
            body: "@bob could you cover?".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("bob").store.total(), before);
    // Delete an unread message: counts drop.
    s.step(
        "carol",
        Request::DeleteMessage {
            message: mention.message.unwrap(),
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("bob").store.counts(group).mentions, 0);
    // Added to a group: the notice counts, old history does not.
    let c = s.cid();
    s.step("carol", send(group, c, "history before dave"))
        .await
        .unwrap();
    s.step(
        "carol",
        Request::AddParticipants {
            conversation: group,
            staff: vec![sid("dave")],
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("dave").store.counts(group).unread, 1);
    // Rename (a notice too).
    s.step(
        "bob",
        Request::RenameConversation {
            conversation: group,
            title: "Reception".into(),
        },
    )
    .await
    .unwrap();
    let c = s.cid();
    s.step("carol", send(group, c, "renamed, thanks")).await.unwrap();
    // Mute: out of the total, badge kept.
    s.step(
        "bob",
        Request::SetMuted {
            conversation: group,
            muted: true,
        },
    )
    .await
    .unwrap();
    let bob = s.client("bob");
    assert!(bob.store.counts(group).unread > 0);
    assert_eq!(bob.store.total().unread, bob.store.counts(dm).unread);
    s.step(
        "bob",
        Request::SetMuted {
            conversation: group,
            muted: false,
        },
    )
    .await
    .unwrap();
    // Read paths.
    s.step(
        "bob",
        Request::MarkRead {
            conversation: group,
            up_to: Seq(2),
        },
    )
    .await
    .unwrap();
    s.step(
        "bob",
        Request::MarkRead {
            conversation: group,
            up_to: Seq(1),
        },
    )
    .await
    .unwrap(); // never back
    s.step("bob", Request::MarkConversationRead { conversation: group })
        .await
        .unwrap();
    assert_eq!(s.client("bob").store.counts(group).unread, 0);
    s.step(
        "bob",
        Request::MarkUnread {
            conversation: group,
            from: Seq(3),
        },
    )
    .await
    .unwrap();
    assert!(s.client("bob").store.counts(group).unread > 0);
    s.step("bob", Request::MarkAllRead).await.unwrap();
    assert_eq!(s.client("bob").store.total().unread, 0);
    // Leave: dave stops seeing the group.
    s.step(
        "dave",
        Request::RemoveParticipant {
            conversation: group,
            staff: sid("dave"),
        },
    )
    .await
    .unwrap();
    assert!(s.client("dave").store.conversation(group).is_none());
    s.relay.stop().await;
}

#[tokio::test]
async fn refusals_change_nothing_and_match_the_engine() {
    let mut s = Scenario::new().await;
    let dm = s
        .step("alice", Request::CreateDirect { staff: sid("bob") })
        .await
        .unwrap()
        .conversation
        .unwrap();
    let c = s.cid();
    let m = s.step("alice", send(dm, c, "hi")).await.unwrap().message.unwrap();
    let c = s.cid();
    assert_eq!(
        s.step("carol", send(dm, c, "intrude")).await.unwrap_err(),
        tally_shared::ErrorCode::NotParticipant
    );
    assert_eq!(
        s.step(
            "bob",
            Request::EditMessage {
                mention_ranges: Vec::new(),
                message: m,
                body: "mine now".into()
            }
        )
        .await
        .unwrap_err(),
        tally_shared::ErrorCode::NotAuthor
    );
    assert_eq!(
        s.step("bob", Request::DeleteMessage { message: m })
            .await
            .unwrap_err(),
        tally_shared::ErrorCode::NotAuthor
    );
    let c = s.cid();
    assert_eq!(
        s.step("alice", send(ConversationId(999), c, "x"))
            .await
            .unwrap_err(),
        tally_shared::ErrorCode::NotFound
    );
    let c = s.cid();
    let long = "x".repeat(tally_shared::limits::BODY_MAX_BYTES + 1);
    assert_eq!(
        s.step("alice", send(dm, c, &long)).await.unwrap_err(),
        tally_shared::ErrorCode::InvalidInput
    );
    let c = s.cid();
    assert_eq!(
        s.step(
            "carol",
            Request::ForwardMessage {
                client_id: c,
                message: m,
                to: dm
            }
        )
        .await
        .unwrap_err(),
        tally_shared::ErrorCode::NotFound
    );
    assert_eq!(
        s.step(
            "alice",
            Request::MarkUnread {
                conversation: dm,
                from: Seq(9)
            }
        )
        .await
        .unwrap_err(),
        tally_shared::ErrorCode::NotFound
    );
    assert_eq!(
        s.step(
            "alice",
            Request::RenameConversation {
                conversation: dm,
                title: "x".into()
            }
        )
        .await
        .unwrap_err(),
        tally_shared::ErrorCode::NotAllowed
    );
    s.relay.stop().await;
}

#[tokio::test]
async fn two_connections_of_one_staff_stay_in_step() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob1 = relay.connect("bob").await;
    let mut bob2 = relay.connect("bob").await;
    let dm = alice
        .call(Request::CreateDirect { staff: sid("bob") })
        .await
        .unwrap()
        .conversation
        .unwrap();
    for i in 0..3 {
        alice
            .call(send(dm, ClientMsgId::new(format!("x{i}")).unwrap(), "ping"))
            .await
            .unwrap();
    }
    bob1.sync().await;
    bob2.sync().await;
    assert_eq!(bob1.store.counts(dm).unread, 3);
    assert_eq!(bob2.store.counts(dm).unread, 3);
    bob1.call(Request::MarkRead {
        conversation: dm,
        up_to: Seq(2),
    })
    .await
    .unwrap();
    bob2.sync().await;
    assert_eq!(
        bob2.store.counts(dm).unread,
        1,
        "a read in one tab shows in the other"
    );
    assert_eq!(bob2.store.summary(50), bob1.store.summary(50));
}

#[tokio::test]
async fn a_removed_participant_stops_receiving_events() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let mut alice = relay.connect("alice").await;
    let mut carol = relay.connect("carol").await;
    let g = alice
        .call(Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "G".into(),
            participants: vec![sid("bob"), sid("carol")],
        })
        .await
        .unwrap()
        .conversation
        .unwrap();
    alice
        .call(Request::RemoveParticipant {
            conversation: g,
            staff: sid("carol"),
        })
        .await
        .unwrap();
    carol.sync().await;
    let seen = carol.frames.len();
    alice
        .call(send(g, ClientMsgId::new("secret").unwrap(), "after carol left"))
        .await
        .unwrap();
    carol.sync().await;
    let after: Vec<_> = carol.frames[seen..]
        .iter()
        .filter(|f| !matches!(f, ServerFrame::Ack(_)))
        .collect();
    assert!(after.is_empty(), "carol got {after:?}");
    assert!(carol.store.conversation(g).is_none());
    let history = http(
        relay.addr,
        "GET",
        &format!("/api/conversations/{g}/messages"),
        &[("Authorization", &bearer(&relay.token("carol")))],
        b"",
    )
    .await;
    assert_eq!(history.0, 403);
}

fn reply(conversation: ConversationId, thread: Seq, client_id: ClientMsgId, body: &str) -> Request {
    Request::ReplyInThread {
        mention_ranges: Vec::new(),
        client_id,
        conversation,
        thread,
        body: body.into(),
        attachments: vec![],
    }
}

/// Threads over real sockets (on SQLite, and on PostgreSQL when the suite runs there): every
/// thread request, the follow rules, thread counts in the totals and never in the
/// conversation's, deletes of roots and replies, mute, read everything, leaving, and a thread's
/// page over HTTP, each step checked against the oracle.
#[tokio::test]
async fn every_thread_path_agrees_with_the_oracle() {
    let mut s = Scenario::new().await;
    let c = s.cid();
    let group = s
        .step(
            "alice",
            Request::CreateGroup {
                client_id: c,
                title: "Rota".into(),
                participants: vec![sid("bob"), sid("carol")],
            },
        )
        .await
        .unwrap()
        .conversation
        .unwrap();
    let c = s.cid();
    let root = s
        .step("alice", send(group, c, "who covers Friday?"))
        .await
        .unwrap()
        .seq
        .unwrap();
    s.step("bob", Request::MarkConversationRead { conversation: group })
        .await
        .unwrap();
    // Bob replies: Alice (the root's author) follows and counts it; the conversation does not.
    let c = s.cid();
    let r1 = s
        .step("bob", reply(group, root, c, "I can"))
        .await
        .unwrap()
        .seq
        .unwrap();
    assert_eq!(s.client("alice").store.thread_counts(group, root).unread, 1);
    assert_eq!(
        s.client("bob").store.counts(group).unread,
        0,
        "a reply never counts in its conversation"
    );
    assert_eq!(
        s.client("carol").store.thread_counts(group, root).unread,
        0,
        "carol does not follow"
    );
    // A mention makes carol follow, and it counts.
    let c = s.cid();
    s.step("bob", reply(group, root, c, "@carol can you swap?"))
        .await
        .unwrap();
    assert_eq!(
        (
            s.client("carol").store.thread_counts(group, root).unread,
            s.client("carol").store.thread_counts(group, root).mentions
        ),
        (1, 1)
    );
    assert_eq!(s.client("alice").store.thread_counts(group, root).unread, 2);
    // Reading up to the first reply, marking unread, reading it all.
    s.step(
        "alice",
        Request::MarkThreadRead {
            conversation: group,
            thread: root,
            up_to: r1,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("alice").store.thread_counts(group, root).unread, 1);
    s.step(
        "alice",
        Request::MarkThreadUnread {
            conversation: group,
            thread: root,
            from: r1,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("alice").store.thread_counts(group, root).unread, 2);
    // Reading the conversation leaves its threads alone.
    s.step("alice", Request::MarkConversationRead { conversation: group })
        .await
        .unwrap();
    assert_eq!(s.client("alice").store.thread_counts(group, root).unread, 2);
    s.step(
        "alice",
        Request::ReadThread {
            conversation: group,
            thread: root,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("alice").store.thread_counts(group, root).unread, 0);
    // Refusals: a reply to a reply, a thread under a notice, a mark outside the thread, a
    // conversation one is not in.
    let c = s.cid();
    assert_eq!(
        s.step("bob", reply(group, r1, c, "nested")).await,
        Err(tally_shared::ErrorCode::NotAllowed)
    );
    let c = s.cid();
    assert_eq!(
        s.step("bob", reply(group, Seq(1), c, "on the notice")).await,
        Err(tally_shared::ErrorCode::NotAllowed)
    );
    assert_eq!(
        s.step(
            "alice",
            Request::MarkThreadUnread {
                conversation: group,
                thread: root,
                from: root
            }
        )
        .await,
        Err(tally_shared::ErrorCode::NotFound)
    );
    assert_eq!(
        s.step(
            "dave",
            Request::FollowThread {
                conversation: group,
                thread: root
            }
        )
        .await,
        Err(tally_shared::ErrorCode::NotParticipant)
    );
    // Carol unfollows: her counts leave her total; following again starts at the newest reply.
    s.step(
        "carol",
        Request::UnfollowThread {
            conversation: group,
            thread: root,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.client("carol").store.total().unread,
        s.client("carol").store.counts(group).unread
    );
    s.step(
        "carol",
        Request::FollowThread {
            conversation: group,
            thread: root,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("carol").store.thread_counts(group, root).unread, 0);
    // Deleting the root leaves its replies counting, and the thread takes replies; a new
    // thread cannot start under a deleted message.
    let c = s.cid();
    let other = s.step("alice", send(group, c, "lunch?")).await.unwrap();
    s.step(
        "alice",
        Request::DeleteMessage {
            message: other.message.unwrap(),
        },
    )
    .await
    .unwrap();
    let c = s.cid();
    assert_eq!(
        s.step("bob", reply(group, other.seq.unwrap(), c, "yes")).await,
        Err(tally_shared::ErrorCode::NotFound)
    );
    let root_id = s
        .client("alice")
        .store
        .conversation(group)
        .unwrap()
        .messages
        .iter()
        .find(|m| m.seq == root)
        .unwrap()
        .id;
    s.step("alice", Request::DeleteMessage { message: root_id })
        .await
        .unwrap();
    let c = s.cid();
    let r3 = s.step("bob", reply(group, root, c, "still me")).await.unwrap();
    assert_eq!(s.client("alice").store.thread_counts(group, root).unread, 1);
    assert_eq!(s.client("carol").store.thread_counts(group, root).unread, 1);
    // Deleting a reply lowers the counts of whoever had not read it.
    s.step(
        "bob",
        Request::DeleteMessage {
            message: r3.message.unwrap(),
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("alice").store.thread_counts(group, root).unread, 0);
    let c = s.cid();
    s.step("bob", reply(group, root, c, "again")).await.unwrap();
    // Muting takes the thread out of the total; reading everything reads threads too.
    s.step(
        "alice",
        Request::SetMuted {
            conversation: group,
            muted: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("alice").store.total().unread, 0);
    assert_eq!(s.client("alice").store.thread_counts(group, root).unread, 1);
    s.step(
        "alice",
        Request::SetMuted {
            conversation: group,
            muted: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("alice").store.total().unread, 1);
    s.step("alice", Request::MarkAllRead).await.unwrap();
    assert_eq!(s.client("alice").store.total().unread, 0);
    // A thread's page over HTTP: its root (a tombstone now) and its replies, in order.
    let (status, _, body) = http(
        s.relay.addr,
        "GET",
        &format!("/api/conversations/{group}/messages?thread={root}"),
        &[("Authorization", &bearer(&s.relay.token("carol")))],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.first(), Some(&root.0));
    assert!(
        page["messages"].as_array().unwrap()[1..]
            .iter()
            .all(|m| m["thread"] == root.0)
    );
    assert_eq!(
        seqs.len(),
        5,
        "the root and its four replies, a tombstone among them: {seqs:?}"
    );
    // Search finds a reply with its thread, so a result opens inside it.
    let (status, _, body) = http(
        s.relay.addr,
        "GET",
        "/api/search?q=again",
        &[("Authorization", &bearer(&s.relay.token("carol")))],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let found: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(found["results"][0]["thread"], root.0, "{found}");
    // Leaving takes the threads and their counts away.
    let c = s.cid();
    s.step("bob", reply(group, root, c, "bye @carol")).await.unwrap();
    assert_eq!(s.client("carol").store.thread_counts(group, root).mentions, 1);
    s.step(
        "carol",
        Request::RemoveParticipant {
            conversation: group,
            staff: sid("carol"),
        },
    )
    .await
    .unwrap();
    assert_eq!(s.client("carol").store.total(), tally_shared::Totals::default());
}
