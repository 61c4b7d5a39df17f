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
        mention_ranges: Vec::new(),
        thread: None,
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
        mention_ranges: Vec::new(),
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
            mention_ranges: Vec::new(),
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
            mention_ranges: Vec::new(),
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
    // Marked unread from 2: what was seen no longer counts, and what the still open view shows
    // is not read (a late report of the viewport would read it straight back)…
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
    assert!(store.read_seen(dm).is_none(), "held while the view stays open");
    // …until the conversation is opened again: then what comes into view is read.
    store.opened(dm);
    assert!(store.read_seen(dm).is_none(), "nothing seen since");
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
        mention_ranges: Vec::new(),
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
        mention_ranges: Vec::new(),
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
        mention_ranges: Vec::new(),
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
fn a_long_conversation_opens_on_a_window_around_its_first_unread_message_and_grows_both_ways() {
    use tally_shared::store::{WINDOW_CONTEXT, WINDOW_MAX_ROWS, WINDOW_ROWS, WINDOW_STEP, Window};
    // Live messages: the store keeps all of them (a snapshot would hold fewer).
    let (mut host, mut store, dm) = bob_after(0);
    for i in 0..400 {
        let send = Request::SendMessage {
            mention_ranges: Vec::new(),
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
        len > 3 * WINDOW_MAX_ROWS,
        "the test needs more loaded than windows hold"
    );
    let to_end = |from: Seq| Window { from, to: None };
    // Everything unread: from the first message, as many rows as a window holds.
    let all = store.opening_window(dm, Seq(0));
    assert_eq!(
        all,
        Window {
            from: loaded[0],
            to: Some(loaded[WINDOW_MAX_ROWS - 1])
        }
    );
    // Scrolling down extends it by a step, and to the newest at the end.
    let further = store.extend_window(dm, all.to.unwrap());
    assert_eq!(further, Some(loaded[WINDOW_MAX_ROWS + WINDOW_STEP - 1]));
    assert_eq!(store.extend_window(dm, loaded[len - 20]), None);
    // A few unread: the minimum window (it already holds the divider and its context).
    let watermark = loaded[len - 5];
    assert_eq!(
        store.opening_window(dm, watermark),
        to_end(loaded[len - WINDOW_ROWS])
    );
    // First unread 100 from the end: context above it, to the newest.
    let watermark = loaded[len - 101];
    assert_eq!(
        store.opening_window(dm, watermark),
        to_end(loaded[len - 100 - WINDOW_CONTEXT])
    );
    // First unread 300 from the end: from its context, a window's length.
    let watermark = loaded[len - 301];
    let from = len - 300 - WINDOW_CONTEXT;
    let expected = Window {
        from: loaded[from],
        to: Some(loaded[from + WINDOW_MAX_ROWS - 1]),
    };
    assert_eq!(store.opening_window(dm, watermark), expected);
    // A search result far back: the window holds it, a few before.
    assert_eq!(store.window_at(dm, loaded[50]).from, loaded[50 - WINDOW_CONTEXT]);
    // Nothing unread at all: the minimum window.
    apply(
        &mut host,
        &mut store,
        "bob",
        Request::MarkConversationRead { conversation: dm },
    );
    let head = *loaded.last().unwrap();
    assert_eq!(store.opening_window(dm, head), to_end(loaded[len - WINDOW_ROWS]));
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
    assert_eq!(short.opening_window(dm, Seq(0)), to_end(Seq(1)));
    assert_eq!(short.opening_window(ConversationId(99), Seq(0)), to_end(Seq(0)));
}

/// Three people's stores fed what the relay would send them, seen frames included.
struct Trio {
    host: MemoryHost,
    stores: std::collections::BTreeMap<&'static str, ChatStore>,
}

impl Trio {
    fn new() -> (Trio, ConversationId, ConversationId) {
        let staff: Vec<Staff> = ["alice", "bob", "carol"]
            .iter()
            .map(|s| Staff {
                id: sid(s),
                name: s.to_uppercase(),
            })
            .collect();
        let mut t = Trio {
            host: MemoryHost::with_staff(&staff),
            stores: Default::default(),
        };
        let dm = t.run("alice", Request::CreateDirect { staff: sid("bob") });
        let group = t.run(
            "alice",
            Request::CreateGroup {
                client_id: ClientMsgId::new("g").unwrap(),
                title: "Team".into(),
                participants: vec![sid("bob"), sid("carol")],
            },
        );
        for who in ["alice", "bob", "carol"] {
            t.connect(who);
        }
        (t, dm.unwrap(), group.unwrap())
    }

    /// A session starts: snapshot, preferences, then every seen frame (as the relay's hello).
    fn connect(&mut self, who: &'static str) {
        let mut store = ChatStore::new();
        store.apply(ServerFrame::Snapshot(Box::new(self.host.snapshot(&sid(who)))));
        let hide_read_state = self.host.engine.hides_read_state(&sid(who));
        store.apply(ServerFrame::Preferences { hide_read_state });
        for f in self.host.engine.all_read_positions(&sid(who)) {
            store.apply(f);
        }
        self.stores.insert(who, store);
    }

    fn deliver(&mut self, frames: tally_shared::engine::Addressed) {
        for (keys, frame) in frames {
            for key in keys {
                let who = self.host.engine.projection().staff_id(key).as_str().to_string();
                if let Some(store) = self.stores.get_mut(who.as_str()) {
                    store.apply(frame.clone());
                }
            }
        }
    }

    fn run(&mut self, who: &str, request: Request) -> Option<ConversationId> {
        self.acked(who, request).conversation
    }

    /// `run`, answering with the whole acknowledgement.
    fn acked(&mut self, who: &str, request: Request) -> tally_shared::protocol::Ack {
        let outcome = self.host.execute(&sid(who), &request, Millis(100)).unwrap();
        let (now, moved) = self
            .host
            .engine
            .seen_changes(outcome.applied.iter().map(|a| &a.event.event));
        let frames: Vec<_> = now
            .into_iter()
            .chain(self.host.engine.seen_frames(&moved))
            .collect();
        for a in outcome.applied {
            for (name, store) in self.stores.iter_mut() {
                if a.recipients.contains(&self.host.engine.key(&sid(name)).unwrap()) {
                    store.apply(ServerFrame::Event(a.event.clone()));
                }
            }
        }
        self.deliver(frames);
        outcome.ack
    }

    fn send(&mut self, who: &str, conversation: ConversationId, id: &str) -> Seq {
        self.run(
            who,
            Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id: ClientMsgId::new(id).unwrap(),
                conversation,
                body: id.into(),
                attachments: vec![],
                reply_to: None,
            },
        );
        self.stores[who].head(conversation)
    }

    fn seen_by(&self, who: &str, conversation: ConversationId, seq: Seq) -> Vec<String> {
        let store = &self.stores[who];
        let m = store
            .conversation(conversation)
            .unwrap()
            .messages
            .iter()
            .find(|m| m.seq == seq)
            .unwrap();
        store.seen_by(m).into_iter().map(|s| s.to_string()).collect()
    }
}

#[test]
fn seen_follows_the_other_persons_watermark_in_a_direct_conversation() {
    let (mut t, dm, _) = Trio::new();
    let first = t.send("alice", dm, "a1");
    let second = t.send("alice", dm, "a2");
    assert_eq!(t.stores["alice"].seen_marker(dm), None, "bob read nothing yet");
    t.run(
        "bob",
        Request::MarkRead {
            conversation: dm,
            up_to: first,
        },
    );
    assert_eq!(t.stores["alice"].seen_marker(dm), Some(first));
    t.run("bob", Request::MarkConversationRead { conversation: dm });
    assert_eq!(t.stores["alice"].seen_marker(dm), Some(second));
    // Bob's reply reads everything before it; "Seen" stays under alice's last message.
    let reply = t.send("bob", dm, "b1");
    assert_eq!(t.stores["alice"].seen_marker(dm), Some(second));
    // Marking unread moves it back, as it moves his count.
    t.run(
        "bob",
        Request::MarkUnread {
            conversation: dm,
            from: second,
        },
    );
    assert_eq!(t.stores["alice"].seen_marker(dm), Some(first));
    // Bob sees where alice is too, and a fresh session of alice's gets it all back.
    assert_eq!(t.stores["bob"].seen_marker(dm), None);
    t.run("alice", Request::MarkConversationRead { conversation: dm });
    assert_eq!(t.stores["bob"].seen_marker(dm), Some(reply));
    let before = t.stores["alice"].seen_marker(dm);
    t.connect("alice");
    assert_eq!(t.stores["alice"].seen_marker(dm), before);
    // From a first row on, it is the marker when that is there, and nothing before it.
    for who in ["alice", "bob"] {
        let store = &t.stores[who];
        let whole = store.seen_marker(dm);
        assert!(whole.is_some(), "{who}");
        for from in (0..=reply.0 + 1).map(Seq) {
            assert_eq!(
                store.seen_marker_from(dm, from),
                whole.filter(|s| *s >= from),
                "{who} from {from:?}"
            );
        }
    }
}

#[test]
fn seen_by_in_a_group_leaves_out_the_sender_and_whoever_hides_their_read_state() {
    let (mut t, _, group) = Trio::new();
    let m = t.send("alice", group, "hello");
    assert!(t.seen_by("alice", group, m).is_empty());
    t.run("bob", Request::MarkConversationRead { conversation: group });
    assert_eq!(t.seen_by("alice", group, m), ["bob"]);
    assert_eq!(t.seen_by("carol", group, m), ["bob"], "anyone may hover it");
    assert!(
        t.seen_by("bob", group, m).is_empty(),
        "not himself, not the sender"
    );
    t.run("carol", Request::MarkConversationRead { conversation: group });
    assert_eq!(t.seen_by("alice", group, m), ["bob", "carol"]);

    // Carol hides her read state: everyone forgets hers, and she sees nobody's.
    assert!(t.host.engine.set_read_state_hidden(&sid("carol"), true));
    let frames = t.host.engine.preference_frames(&sid("carol"));
    t.deliver(frames);
    assert_eq!(t.seen_by("alice", group, m), ["bob"]);
    assert!(t.stores["carol"].hides_read_state());
    assert!(t.seen_by("carol", group, m).is_empty());
    let later = t.send("alice", group, "again");
    t.run("carol", Request::MarkConversationRead { conversation: group });
    t.run("bob", Request::MarkConversationRead { conversation: group });
    assert_eq!(t.seen_by("alice", group, later), ["bob"]);
    assert!(t.seen_by("carol", group, later).is_empty());
    // Nor after a reconnect.
    t.connect("alice");
    t.connect("carol");
    assert_eq!(t.seen_by("alice", group, later), ["bob"]);
    assert!(t.seen_by("carol", group, later).is_empty());

    // She shares again: both directions come back at once.
    assert!(t.host.engine.set_read_state_hidden(&sid("carol"), false));
    assert!(
        !t.host.engine.set_read_state_hidden(&sid("carol"), false),
        "no change"
    );
    let frames = t.host.engine.preference_frames(&sid("carol"));
    t.deliver(frames);
    assert_eq!(t.seen_by("alice", group, later), ["bob", "carol"]);
    assert_eq!(t.seen_by("carol", group, later), ["bob"]);
    // The staff table's mirror does not reset the preference.
    t.host.engine.upsert_staff(
        Staff {
            id: sid("carol"),
            name: "C".into(),
        },
        true,
    );
    assert!(!t.host.engine.hides_read_state(&sid("carol")));
    t.host.engine.set_read_state_hidden(&sid("carol"), true);
    t.host.engine.upsert_staff(
        Staff {
            id: sid("carol"),
            name: "C".into(),
        },
        true,
    );
    assert!(t.host.engine.hides_read_state(&sid("carol")));
}

#[test]
fn a_newcomer_and_the_group_learn_each_others_read_positions() {
    let (mut t, _, group) = Trio::new();
    let staff = Staff {
        id: sid("dave"),
        name: "DAVE".into(),
    };
    t.host.engine.upsert_staff(staff, true);
    let m = t.send("alice", group, "before-dave");
    t.run("bob", Request::MarkConversationRead { conversation: group });
    t.connect("dave");
    t.run(
        "alice",
        Request::AddParticipants {
            conversation: group,
            staff: vec![sid("dave")],
        },
    );
    // Dave joins at the head: he has "seen" what came before him, and he knows bob's.
    assert_eq!(t.seen_by("alice", group, m), ["bob", "dave"]);
    // (once he has loaded the history)
    let older = t.host.storage.range(group, Seq(1), m);
    t.stores.get_mut("dave").unwrap().apply_history(group, older);
    assert_eq!(t.seen_by("dave", group, m), ["bob"]);
}

#[test]
fn my_quiet_settings_show_at_once_and_go_back_when_the_relay_refuses_them() {
    use tally_shared::protocol::{Ack, ErrorFrame};
    use tally_shared::quiet::Quiet;
    let (_, mut store, _) = bob_after(0);
    let snooze = Quiet {
        snooze_until: Some(Millis(5_000)),
        ..Quiet::default()
    };
    let asked = store.request(Request::SetQuiet {
        quiet: snooze.clone(),
    });
    assert_eq!(store.quiet(), &snooze, "shown at once");
    store.apply(ServerFrame::Error(ErrorFrame::new(
        asked.req,
        tally_shared::ErrorCode::InvalidInput,
        "no",
    )));
    assert_eq!(
        store.quiet(),
        &Quiet::default(),
        "refused: back to what the relay holds"
    );
    // Accepted: the ack, then the frame every tab gets.
    let asked = store.request(Request::SetQuiet {
        quiet: snooze.clone(),
    });
    store.apply(ServerFrame::Ack(Ack {
        req: asked.req,
        ..Ack::default()
    }));
    store.apply(ServerFrame::Quiet {
        quiet: snooze.clone(),
    });
    assert_eq!(store.quiet(), &snooze);
    // Another tab's change reaches this one.
    store.apply(ServerFrame::Quiet {
        quiet: Quiet::default(),
    });
    assert_eq!(store.quiet(), &Quiet::default());
}

/// Thread summaries from a seq on are those of the roots from there, as a scan of the whole
/// conversation gives them: replies come after their roots, wherever they are.
#[test]
fn thread_summaries_from_a_seq_are_the_whole_scans_roots_from_there() {
    // Bob's store gets every event of the group from its creation on.
    let (mut t, _, group) = Trio::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut roots: Vec<Seq> = Vec::new();
    for i in 0..300u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let who = ["alice", "bob", "carol"][(rng % 3) as usize];
        let client_id = ClientMsgId::new(format!("m{i}")).unwrap();
        let request = match roots.get((rng >> 8) as usize % (roots.len() + 1)) {
            Some(root) if rng.is_multiple_of(2) => Request::ReplyInThread {
                client_id,
                conversation: group,
                thread: *root,
                body: format!("reply {i}"),
                attachments: vec![],
                mention_ranges: Vec::new(),
            },
            _ => Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id,
                conversation: group,
                body: format!("message {i}"),
                attachments: vec![],
                reply_to: None,
            },
        };
        let is_root = matches!(request, Request::SendMessage { .. });
        let ack = t.acked(who, request);
        if is_root {
            roots.push(ack.seq.unwrap());
        }
        if rng.is_multiple_of(17) {
            t.acked(
                who,
                Request::DeleteMessage {
                    message: ack.message.unwrap(),
                },
            );
            if is_root {
                // A deleted message roots no new thread.
                roots.pop();
            }
        }
    }
    let store = &t.stores["bob"];
    let loaded = &store.conversation(group).unwrap().messages;
    assert!(loaded.iter().filter(|m| m.thread.is_some()).count() > 50);
    let whole = store.thread_summaries(group, Seq(0));
    assert!(whole.len() > 10, "{} roots with replies", whole.len());
    for from in (0..=loaded.last().unwrap().seq.0 + 1).map(Seq) {
        let mut want: Vec<_> = whole.iter().filter(|(root, _)| **root >= from).collect();
        let part = store.thread_summaries(group, from);
        let mut got: Vec<_> = part.iter().collect();
        want.sort_by_key(|(root, _)| **root);
        got.sort_by_key(|(root, _)| **root);
        assert_eq!(got, want, "from {from:?}");
    }
}

#[test]
fn counts_ahead_of_the_first_snapshot_are_the_total_until_it_loads_and_never_after() {
    let (mut host, loaded, _) = bob_after(3);
    let snapshot = host.snapshot(&sid("bob"));
    let early = tally_shared::Totals {
        unread: 3,
        mentions: 0,
    };
    assert_eq!(snapshot.total, early, "the relay's figure for the counts frame");
    let mut store = ChatStore::new();
    assert!(!store.counts_known());
    store.apply(ServerFrame::Counts {
        offset: snapshot.offset,
        total: early,
    });
    assert!(
        store.counts_known() && !store.is_ready(),
        "known, but no conversation yet"
    );
    assert_eq!(store.total(), early);
    assert_eq!(
        store.applied(),
        tally_shared::Offset(0),
        "a resume would still start afresh"
    );
    store.apply(ServerFrame::Snapshot(Box::new(snapshot)));
    assert_eq!(store.total(), loaded.total());
    // After a snapshot the store's own counts are live: a stray counts frame changes nothing.
    let dm = store.conversation_list()[0].id;
    apply(
        &mut host,
        &mut store,
        "bob",
        Request::MarkConversationRead { conversation: dm },
    );
    assert_eq!(store.total().unread, 0);
    store.apply(ServerFrame::Counts {
        offset: tally_shared::Offset(1),
        total: early,
    });
    assert_eq!(store.total().unread, 0);
}
