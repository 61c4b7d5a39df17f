//! The browser store's behaviours that the property test does not drive: the outbox (its age
//! limit, its revision), quote redaction, where the "new messages" divider goes, and reading.

use tally_shared::memory::MemoryHost;
use tally_shared::store::PendingSend;
use tally_shared::{
    ChatStore, ClientMsgId, ConversationId, Millis, Request, Seq, ServerFrame, Staff, StaffId, limits,
};

fn sid(s: &str) -> StaffId {
    StaffId::new(s).unwrap()
}

fn pending(id: &str, queued_at: Option<u64>) -> PendingSend {
    PendingSend {
        client_id: ClientMsgId::new(id).unwrap(),
        conversation: ConversationId(1),
        body: "hi".into(),
        attachments: vec![],
        reply_to: None,
        failed: None,
        queued_at: queued_at.map(Millis),
    }
}

#[test]
fn a_send_older_than_the_relays_memory_of_client_ids_is_not_resent_by_itself() {
    let now = 30 * 24 * 3600 * 1000;
    let week = limits::CLIENT_ID_RETENTION_MS;
    let mut store = ChatStore::with_outbox(vec![
        pending("fresh", Some(now - 3600 * 1000)),
        pending("stale", Some(now - week)),
        pending("unknown-age", None),
    ]);
    let resent: Vec<_> = store
        .resend_outbox(Millis(now))
        .into_iter()
        .map(|f| match f.request {
            Request::SendMessage { client_id, .. } => client_id.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(resent, ["fresh", "unknown-age"]);
    let stale = store
        .outbox()
        .iter()
        .find(|p| p.client_id.as_str() == "stale")
        .unwrap();
    assert!(stale.failed.is_some(), "waits for the person instead");
    // The person may still send it again.
    assert!(store.retry(&stale.client_id.clone()).is_some());
}

#[test]
fn deleting_a_quoted_message_redacts_its_quotes_in_the_store_and_in_a_fresh_snapshot() {
    let staff = [
        Staff {
            id: sid("alice"),
            name: "A".into(),
        },
        Staff {
            id: sid("bob"),
            name: "B".into(),
        },
    ];
    let mut host = MemoryHost::with_staff(&staff);
    let dm = host
        .execute(
            &sid("alice"),
            &Request::CreateDirect { staff: sid("bob") },
            Millis(1),
        )
        .unwrap()
        .ack
        .conversation
        .unwrap();
    let send = |id: &str, body: &str, reply_to| Request::SendMessage {
        client_id: ClientMsgId::new(id).unwrap(),
        conversation: dm,
        body: body.into(),
        attachments: vec![],
        reply_to,
    };
    let quoted = host
        .execute(&sid("alice"), &send("a", "door code 4711", None), Millis(2))
        .unwrap();
    host.execute(&sid("bob"), &send("b", "ok", quoted.ack.message), Millis(3))
        .unwrap();
    let mut store = ChatStore::new();
    store.apply(ServerFrame::Snapshot(Box::new(host.snapshot(&sid("bob")))));
    let delete = Request::DeleteMessage {
        message: quoted.ack.message.unwrap(),
    };
    for a in host.execute(&sid("alice"), &delete, Millis(4)).unwrap().applied {
        store.apply(ServerFrame::Event(a.event));
    }
    let quote = |messages: &[tally_shared::Message]| messages.last().unwrap().reply_to.clone().unwrap();
    let live = quote(&store.conversation(dm).unwrap().messages);
    assert!(live.deleted && live.excerpt.is_empty(), "{live:?}");
    let fresh = host.snapshot(&sid("bob"));
    let state = fresh
        .conversations
        .iter()
        .find(|c| c.conversation.id == dm)
        .unwrap();
    assert_eq!(
        quote(&state.messages),
        live,
        "the store and a fresh snapshot agree"
    );
}

/// Bob's store, after alice wrote `n` messages to him, and the host that wrote them.
fn bob_after(n: usize) -> (MemoryHost, ChatStore, ConversationId) {
    let staff = [
        Staff {
            id: sid("alice"),
            name: "A".into(),
        },
        Staff {
            id: sid("bob"),
            name: "B".into(),
        },
    ];
    let mut host = MemoryHost::with_staff(&staff);
    let dm = host
        .execute(
            &sid("alice"),
            &Request::CreateDirect { staff: sid("bob") },
            Millis(1),
        )
        .unwrap()
        .ack
        .conversation
        .unwrap();
    for i in 0..n {
        let send = Request::SendMessage {
            client_id: ClientMsgId::new(format!("a{i}")).unwrap(),
            conversation: dm,
            body: format!("message {i}"),
            attachments: vec![],
            reply_to: None,
        };
        host.execute(&sid("alice"), &send, Millis(2 + i as u64)).unwrap();
    }
    let mut store = ChatStore::new();
    store.apply(ServerFrame::Snapshot(Box::new(host.snapshot(&sid("bob")))));
    (host, store, dm)
}

fn apply(host: &mut MemoryHost, store: &mut ChatStore, who: &str, request: Request) {
    for a in host.execute(&sid(who), &request, Millis(100)).unwrap().applied {
        store.apply(ServerFrame::Event(a.event));
    }
}

#[test]
fn the_divider_goes_before_the_first_message_that_counts_as_unread() {
    let (mut host, mut store, dm) = bob_after(3);
    assert_eq!(store.first_unread_after(dm, Seq(0)), Some(Seq(1)));
    assert_eq!(
        store.first_unread_after(dm, Seq(3)),
        None,
        "nothing after the head"
    );
    // Own messages and deleted ones are never where unread starts.
    apply(
        &mut host,
        &mut store,
        "bob",
        Request::SendMessage {
            client_id: ClientMsgId::new("b").unwrap(),
            conversation: dm,
            body: "mine".into(),
            attachments: vec![],
            reply_to: None,
        },
    );
    assert_eq!(store.first_unread_after(dm, Seq(3)), None);
    let second = store.conversation(dm).unwrap().messages[1].id;
    apply(
        &mut host,
        &mut store,
        "alice",
        Request::DeleteMessage { message: second },
    );
    assert_eq!(store.first_unread_after(dm, Seq(1)), Some(Seq(3)));
}

#[test]
fn reading_asks_once_only_forward_and_again_after_a_mark_unread() {
    let (mut host, mut store, dm) = bob_after(5);
    assert!(store.read_seen(dm).is_none(), "nothing seen yet");
    store.note_seen(dm, Seq(3));
    store.note_seen(dm, Seq(2));
    let frame = store.read_seen(dm).expect("a mark_read");
    assert_eq!(
        frame.request,
        Request::MarkRead {
            conversation: dm,
            up_to: Seq(3)
        }
    );
    assert!(store.read_seen(dm).is_none(), "asked already, not yet confirmed");
    apply(&mut host, &mut store, "bob", frame.request);
    assert_eq!(store.last_read(dm), Seq(3));
    store.note_seen(dm, Seq(99));
    let frame = store.read_seen(dm).unwrap();
    assert_eq!(
        frame.request,
        Request::MarkRead {
            conversation: dm,
            up_to: Seq(5)
        },
        "never past the head"
    );
    apply(&mut host, &mut store, "bob", frame.request);
    // Marked unread from 2: what was seen no longer counts until it is seen again.
    apply(
        &mut host,
        &mut store,
        "bob",
        Request::MarkUnread {
            conversation: dm,
            from: Seq(2),
        },
    );
    assert_eq!(store.last_read(dm), Seq(1));
    assert!(store.read_seen(dm).is_none());
    store.note_seen(dm, Seq(4));
    let frame = store.read_seen(dm).unwrap();
    assert_eq!(
        frame.request,
        Request::MarkRead {
            conversation: dm,
            up_to: Seq(4)
        }
    );
}

#[test]
fn the_outbox_revision_moves_when_the_outbox_does() {
    let mut store = ChatStore::new();
    let r0 = store.outbox_revision();
    store.queue_send(pending("x", Some(1)));
    assert_ne!(store.outbox_revision(), r0);
    let r1 = store.outbox_revision();
    store.apply(ServerFrame::Resumed {
        offset: tally_shared::Offset(0),
        protocols: None,
    });
    assert_eq!(store.outbox_revision(), r1);
}

#[test]
fn a_wrong_count_in_another_conversation_is_caught_by_the_next_checkpoints_digest() {
    let staff = [
        Staff {
            id: sid("alice"),
            name: "A".into(),
        },
        Staff {
            id: sid("bob"),
            name: "B".into(),
        },
        Staff {
            id: sid("carol"),
            name: "C".into(),
        },
    ];
    let mut host = MemoryHost::with_staff(&staff);
    let mut clock = 1;
    let mut run = |host: &mut MemoryHost, who: &str, request: Request| {
        clock += 1;
        host.execute(&sid(who), &request, Millis(clock)).unwrap()
    };
    let with_alice = run(&mut host, "alice", Request::CreateDirect { staff: sid("bob") })
        .ack
        .conversation
        .unwrap();
    let with_carol = run(&mut host, "carol", Request::CreateDirect { staff: sid("bob") })
        .ack
        .conversation
        .unwrap();
    let send = |c: ConversationId, id: &str| Request::SendMessage {
        client_id: ClientMsgId::new(id).unwrap(),
        conversation: c,
        body: "hi".into(),
        attachments: vec![],
        reply_to: None,
    };
    run(&mut host, "carol", send(with_carol, "c1"));
    // Muted, so that the total (which the checkpoint also carries) cannot give it away.
    let mute = Request::SetMuted {
        conversation: with_carol,
        muted: true,
    };
    run(&mut host, "bob", mute);
    let mut bob = ChatStore::new();
    bob.apply(ServerFrame::Snapshot(Box::new(host.snapshot(&sid("bob")))));
    // Bob's count with Carol goes wrong without anyone noticing...
    bob.inject_counts(
        with_carol,
        tally_shared::Counts {
            unread: 9,
            mentions: 0,
        },
    );
    // ...until Alice writes: the checkpoint names the conversation with Alice, and its digest
    // covers the one with Carol too.
    let key = host.engine.key(&sid("bob")).unwrap();
    let mut diverged = None;
    for a in run(&mut host, "alice", send(with_alice, "a1")).applied {
        bob.apply(ServerFrame::Event(a.event.clone()));
        for (k, u) in a.changes {
            if k == key {
                assert_eq!(u.conversation, with_alice);
                diverged = bob.apply(ServerFrame::UnreadUpdated(u)).divergence;
            }
        }
    }
    assert!(diverged.is_some(), "the digest caught it");
    assert_eq!(bob.divergences(), 1);
}

#[test]
fn the_new_messages_pill_counts_unread_messages_below_what_the_viewport_showed() {
    let (mut host, mut store, dm) = bob_after(5);
    assert_eq!(store.unseen_below(dm), 5, "nothing seen yet");
    store.note_seen(dm, Seq(2));
    assert_eq!(store.unseen_below(dm), 3);
    // My own message and a deleted one are not news.
    let send = |id: &str| Request::SendMessage {
        client_id: ClientMsgId::new(id).unwrap(),
        conversation: dm,
        body: "x".into(),
        attachments: vec![],
        reply_to: None,
    };
    apply(&mut host, &mut store, "bob", send("b1"));
    assert_eq!(store.unseen_below(dm), 0, "sending read everything before it");
    apply(&mut host, &mut store, "alice", send("a-new"));
    apply(&mut host, &mut store, "alice", send("a-newer"));
    assert_eq!(store.unseen_below(dm), 2);
    let newest = store.conversation(dm).unwrap().messages.last().unwrap().id;
    apply(
        &mut host,
        &mut store,
        "alice",
        Request::DeleteMessage { message: newest },
    );
    assert_eq!(store.unseen_below(dm), 1);
}

#[test]
fn news_is_someone_elses_live_unread_message_and_in_a_muted_conversation_only_a_mention() {
    let (mut host, mut store, dm) = bob_after(1);
    let last = |store: &ChatStore| store.conversation(dm).unwrap().messages.last().unwrap().clone();
    assert_eq!(store.news(&last(&store)), Some(false));
    let send = |id: &str, body: &str| Request::SendMessage {
        client_id: ClientMsgId::new(id).unwrap(),
        conversation: dm,
        body: body.into(),
        attachments: vec![],
        reply_to: None,
    };
    apply(&mut host, &mut store, "bob", send("b1", "mine"));
    assert_eq!(store.news(&last(&store)), None, "my own message");
    apply(
        &mut host,
        &mut store,
        "bob",
        Request::SetMuted {
            conversation: dm,
            muted: true,
        },
    );
    apply(&mut host, &mut store, "alice", send("a2", "quiet"));
    assert_eq!(store.news(&last(&store)), None, "muted, no mention");
    apply(&mut host, &mut store, "alice", send("a3", "@bob look"));
    assert_eq!(store.news(&last(&store)), Some(true), "muted, but a mention");
    apply(
        &mut host,
        &mut store,
        "bob",
        Request::MarkConversationRead { conversation: dm },
    );
    assert_eq!(store.news(&last(&store)), None, "already read");
}

#[test]
fn a_long_conversation_opens_on_a_window_around_its_first_unread_message_and_widens_upwards() {
    use tally_shared::store::{WINDOW_CONTEXT, WINDOW_MAX_ROWS, WINDOW_ROWS, WINDOW_STEP};
    // Live messages: the store keeps all of them (a snapshot would hold fewer).
    let (mut host, mut store, dm) = bob_after(0);
    for i in 0..400 {
        let send = Request::SendMessage {
            client_id: ClientMsgId::new(format!("live{i}")).unwrap(),
            conversation: dm,
            body: format!("live {i}"),
            attachments: vec![],
            reply_to: None,
        };
        apply(&mut host, &mut store, "alice", send);
    }
    let loaded: Vec<Seq> = store
        .conversation(dm)
        .unwrap()
        .messages
        .iter()
        .map(|m| m.seq)
        .collect();
    let len = loaded.len();
    assert!(
        len > WINDOW_MAX_ROWS,
        "the test needs more loaded than the window holds"
    );
    // Everything unread: the window is as long as it may be, ending at the head.
    assert_eq!(store.opening_window(dm, Seq(0)), loaded[len - WINDOW_MAX_ROWS]);
    // A few unread: the minimum window (it already holds the divider and its context).
    let watermark = loaded[len - 5];
    assert_eq!(store.opening_window(dm, watermark), loaded[len - WINDOW_ROWS]);
    // First unread 100 from the end: context above it.
    let watermark = loaded[len - 101];
    assert_eq!(
        store.opening_window(dm, watermark),
        loaded[len - 100 - WINDOW_CONTEXT]
    );
    // Nothing unread at all: the minimum window.
    apply(
        &mut host,
        &mut store,
        "bob",
        Request::MarkConversationRead { conversation: dm },
    );
    let head = *loaded.last().unwrap();
    assert_eq!(store.opening_window(dm, head), loaded[len - WINDOW_ROWS]);
    // Scrolling up widens by a step, down to the first loaded message.
    let from = loaded[len - WINDOW_ROWS];
    assert_eq!(
        store.widen_window(dm, from),
        loaded[len - WINDOW_ROWS - WINDOW_STEP]
    );
    assert_eq!(store.widen_window(dm, loaded[3]), loaded[0]);
    assert_eq!(store.widen_window(dm, loaded[0]), loaded[0]);
    // A short conversation renders whole.
    let (_, short, dm) = bob_after(7);
    assert_eq!(short.opening_window(dm, Seq(0)), Seq(1));
    assert_eq!(short.opening_window(ConversationId(99), Seq(0)), Seq(0));
}
