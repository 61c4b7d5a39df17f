//! Moving between conversations from the keyboard: the quick switcher's candidates, the next
//! and previous (unread) conversation, and what Escape reads.

use tally_shared::memory::MemoryHost;
use tally_shared::navigate::{Target, match_score};
use tally_shared::{ChatStore, ClientMsgId, ConversationId, Millis, Request, ServerFrame, Staff, StaffId};

fn sid(s: &str) -> StaffId {
    StaffId::new(s).unwrap()
}

struct World {
    host: MemoryHost,
    at: u64,
}

impl World {
    fn run(&mut self, who: &str, request: Request) -> Option<ConversationId> {
        self.at += 1;
        self.host
            .execute(&sid(who), &request, Millis(self.at))
            .unwrap()
            .ack
            .conversation
    }

    fn say(&mut self, who: &str, conversation: ConversationId, body: &str) {
        let client_id = ClientMsgId::new(format!("m{}", self.at)).unwrap();
        self.run(
            who,
            Request::SendMessage {
                client_id,
                conversation,
                body: body.into(),
                attachments: vec![],
                reply_to: None,
                // Found in the text by the relay's rule (`@bob`).
                mention_ranges: Vec::new(),
            },
        );
    }

    fn group(&mut self, who: &str, title: &str, others: &[&str]) -> ConversationId {
        let client_id = ClientMsgId::new(format!("g{}", self.at)).unwrap();
        self.run(
            who,
            Request::CreateGroup {
                client_id,
                title: title.into(),
                participants: others.iter().map(|o| sid(o)).collect(),
            },
        )
        .unwrap()
    }

    fn store_of(&self, who: &str) -> ChatStore {
        let mut store = ChatStore::new();
        store.apply(ServerFrame::Snapshot(Box::new(self.host.snapshot(&sid(who)))));
        store.add_names(
            [
                ("alice", "Alice Park"),
                ("bob", "Bob Chen"),
                ("carol", "Carol Diaz"),
                ("dan", "Dan Ito"),
            ]
            .map(|(id, name)| Staff {
                id: sid(id),
                name: name.into(),
            })
            .to_vec(),
        );
        store
    }
}

/// Bob's conversations, most recent first: Night (muted, unread), Ops (mentions him),
/// Alice (unread), Lunch (read), Carol (read). Dan has no conversation with him.
fn bobs_world() -> (World, [ConversationId; 5]) {
    let staff = ["alice", "bob", "carol", "dan"].map(|id| Staff {
        id: sid(id),
        name: id.into(),
    });
    let mut w = World {
        host: MemoryHost::with_staff(&staff),
        at: 0,
    };
    let carol = w
        .run("bob", Request::CreateDirect { staff: sid("carol") })
        .unwrap();
    w.say("carol", carol, "hi");
    w.run("bob", Request::MarkConversationRead { conversation: carol });
    let lunch = w.group("alice", "Lunch", &["bob", "carol"]);
    w.say("alice", lunch, "noon?");
    w.run("bob", Request::MarkConversationRead { conversation: lunch });
    let alice = w
        .run("alice", Request::CreateDirect { staff: sid("bob") })
        .unwrap();
    w.say("alice", alice, "one");
    w.say("alice", alice, "two");
    let ops = w.group("carol", "Ops", &["bob", "alice"]);
    w.say("carol", ops, "@bob can you check the rota?");
    let night = w.group("alice", "Night shift", &["bob"]);
    w.run(
        "bob",
        Request::SetMuted {
            conversation: night,
            muted: true,
        },
    );
    w.say("alice", night, "quiet night");
    (w, [night, ops, alice, lunch, carol])
}

#[test]
fn names_match_from_their_start_then_a_words_start_then_anywhere() {
    assert_eq!(match_score("Bob Chen", "bob", "bo"), Some(0));
    assert_eq!(match_score("Bob Chen", "bob", "BOB"), Some(0));
    assert_eq!(match_score("Bob Chen", "bob", "che"), Some(1));
    assert_eq!(match_score("Bob Chen", "bob", "hen"), Some(2));
    assert_eq!(match_score("Bob Chen", "bob", "x"), None);
    assert_eq!(match_score("Bob Chen", "bob", ""), Some(0));
}

#[test]
fn the_switcher_lists_what_wants_me_first_then_the_rest_then_people_without_a_conversation() {
    let (w, [night, ops, alice, lunch, carol]) = bobs_world();
    let store = w.store_of("bob");
    let all: Vec<Target> = store
        .switch_candidates("", 12)
        .into_iter()
        .map(|c| c.target)
        .collect();
    assert_eq!(
        all,
        [
            Target::Conversation(ops),   // a mention
            Target::Conversation(alice), // unread
            Target::Conversation(night), // muted: its unread does not pull it up
            Target::Conversation(lunch),
            Target::Conversation(carol),
            Target::Person(sid("dan")), // no direct conversation yet
        ]
    );
    // By name: a direct conversation is found by the other's name (and id), once.
    let c: Vec<Target> = store
        .switch_candidates("car", 12)
        .into_iter()
        .map(|c| c.target)
        .collect();
    assert_eq!(c, [Target::Conversation(carol)]);
    let d = store.switch_candidates("ITO", 12);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].target.clone(), d[0].title.as_str()),
        (Target::Person(sid("dan")), "Dan Ito")
    );
    // Unread first, then how well the name matches (a word's start before anywhere),
    // conversations before people.
    let i: Vec<Target> = store
        .switch_candidates("i", 12)
        .into_iter()
        .map(|c| c.target)
        .collect();
    assert_eq!(
        i,
        [
            Target::Conversation(alice), // "Alice Park": unread
            Target::Person(sid("dan")),  // "Dan Ito": a word's start
            Target::Conversation(night), // "Night shift": inside, more recent
            Target::Conversation(carol), // "Carol Diaz": inside
        ]
    );
    assert!(store.switch_candidates("zzz", 12).is_empty());
    assert_eq!(store.switch_candidates("", 2).len(), 2);
}

#[test]
fn alt_arrows_walk_the_list_and_alt_shift_arrows_the_unread_ones_around_it() {
    let (w, [night, ops, alice, lunch, carol]) = bobs_world();
    let store = w.store_of("bob");
    // Plain steps stop at the ends; with nothing open they start at an end.
    assert_eq!(store.step_conversation(None, 1, false), Some(night));
    assert_eq!(store.step_conversation(None, -1, false), Some(carol));
    assert_eq!(store.step_conversation(Some(ops), 1, false), Some(alice));
    assert_eq!(store.step_conversation(Some(ops), -1, false), Some(night));
    assert_eq!(store.step_conversation(Some(carol), 1, false), None);
    assert_eq!(store.step_conversation(Some(night), -1, false), None);
    // Unread steps skip what has nothing for me (read, or muted without a mention) and wrap.
    assert_eq!(store.step_conversation(None, 1, true), Some(ops));
    assert_eq!(store.step_conversation(Some(ops), 1, true), Some(alice));
    assert_eq!(
        store.step_conversation(Some(alice), 1, true),
        Some(ops),
        "wraps past the end"
    );
    assert_eq!(store.step_conversation(Some(lunch), -1, true), Some(alice));
    assert_eq!(
        store.step_conversation(Some(ops), -1, true),
        Some(alice),
        "wraps past the start"
    );
}

#[test]
fn escape_reads_the_whole_conversation_unless_i_marked_it_unread_there() {
    let (mut w, [_, ops, alice, lunch, _]) = bobs_world();
    let mut store = w.store_of("bob");
    assert!(store.read_on_leaving(lunch).is_none(), "nothing to read");
    let frame = store.read_on_leaving(alice).expect("reads it");
    assert_eq!(
        frame.request,
        Request::MarkConversationRead { conversation: alice }
    );
    for a in w
        .host
        .execute(&sid("bob"), &frame.request, Millis(1_000))
        .unwrap()
        .applied
    {
        store.apply(ServerFrame::Event(a.event));
    }
    assert_eq!(store.counts(alice).unread, 0);
    // Marked unread while open: leaving keeps the mark…
    let read = Request::MarkConversationRead { conversation: ops };
    let unread = Request::MarkUnread {
        conversation: ops,
        from: tally_shared::Seq(1),
    };
    for (i, request) in [read, unread].iter().enumerate() {
        for a in w
            .host
            .execute(&sid("bob"), request, Millis(1_001 + i as u64))
            .unwrap()
            .applied
        {
            store.apply(ServerFrame::Event(a.event));
        }
    }
    assert!(store.counts(ops).unread > 0);
    assert!(store.read_on_leaving(ops).is_none());
    // …until it is opened again.
    store.opened(ops);
    assert!(store.read_on_leaving(ops).is_some());
}
