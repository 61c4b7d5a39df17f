//! How staff talk, over real sockets: mentions chosen in a picker (ranges) and found in text,
//! `@here` and its owner's switch, and reactions (deduped, limited, logged, never counted).

mod common;

use common::*;
use tally_shared::mentions::MentionRange;
use tally_shared::protocol::{Event, ServerFrame};
use tally_shared::{ClientMsgId, ConversationId, Counts, ErrorCode, MessageId, Request};

fn send_with(conversation: ConversationId, id: &str, body: &str, ranges: Vec<MentionRange>) -> Request {
    Request::SendMessage {
        client_id: ClientMsgId::new(id).unwrap(),
        conversation,
        body: body.into(),
        attachments: vec![],
        reply_to: None,
        mention_ranges: ranges,
    }
}

fn range(start: u32, end: u32, staff: Option<&str>) -> MentionRange {
    MentionRange {
        start,
        end,
        staff: staff.map(sid),
    }
}

async fn group(client: &mut Client, members: &[&str]) -> ConversationId {
    let ack = client
        .call(Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "Front desk".into(),
            participants: members.iter().map(|m| sid(m)).collect(),
        })
        .await
        .unwrap();
    ack.conversation.unwrap()
}

#[tokio::test]
async fn a_picked_mention_names_its_person_whatever_the_text_and_here_names_everyone() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    let mut carol = relay.connect("carol").await;
    let g = group(&mut alice, &["bob", "carol"]).await;

    // "@Bob Chen" by name: the range says bob.
    alice
        .call(send_with(
            g,
            "m1",
            "hi @Bob Chen!",
            vec![range(3, 12, Some("bob"))],
        ))
        .await
        .unwrap();
    // "@Carol" typed without the picker: found in the text, any case.
    alice.call(send(g, "m2", "and @Carol")).await.unwrap();
    for c in [&mut bob, &mut carol] {
        c.sync().await;
    }
    // The group's "created" notice counts too.
    assert_eq!(
        bob.store.counts(g),
        Counts {
            unread: 3,
            mentions: 1
        }
    );
    assert_eq!(
        carol.store.counts(g),
        Counts {
            unread: 3,
            mentions: 1
        }
    );
    let created = bob
        .store
        .conversation(g)
        .unwrap()
        .messages
        .iter()
        .find(|m| m.body == "and @Carol")
        .cloned()
        .unwrap();
    assert_eq!(created.mention_ranges, vec![range(4, 10, Some("carol"))]);

    // @here mentions everyone but its sender.
    alice.call(send(g, "m3", "@here standup")).await.unwrap();
    for c in [&mut bob, &mut carol] {
        c.sync().await;
    }
    assert_eq!(bob.store.counts(g).mentions, 2);
    assert_eq!(carol.store.counts(g).mentions, 2);

    // Bad ranges change nothing and say why.
    let before = alice.call(Request::Ping).await.unwrap().offset;
    for (ranges, code) in [
        (vec![range(0, 3, Some("bob"))], ErrorCode::InvalidInput),
        (vec![range(3, 40, Some("bob"))], ErrorCode::InvalidInput),
        (vec![range(3, 6, Some("dave"))], ErrorCode::InvalidInput),
        (
            vec![range(3, 6, Some("bob")), range(3, 6, Some("bob"))],
            ErrorCode::InvalidInput,
        ),
        (vec![range(3, 6, Some("bob")); 51], ErrorCode::InvalidInput),
    ] {
        let e = alice
            .call(send_with(g, "bad", "hi @Bob", ranges))
            .await
            .unwrap_err();
        assert_eq!(e.code, code, "{}", e.message);
    }
    assert_eq!(alice.call(Request::Ping).await.unwrap().offset, before);

    // Only the owner turns @here off; then it is refused as a range and mentions nobody in text.
    let e = bob
        .call(Request::SetEveryoneMentions {
            conversation: g,
            allowed: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotAllowed);
    alice
        .call(Request::SetEveryoneMentions {
            conversation: g,
            allowed: false,
        })
        .await
        .unwrap();
    let e = alice
        .call(send_with(g, "m4", "@all go", vec![range(0, 4, None)]))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotAllowed);
    alice.call(send(g, "m5", "@all go")).await.unwrap();
    bob.sync().await;
    assert_eq!(
        bob.store.counts(g),
        Counts {
            unread: 5,
            mentions: 2
        }
    );
    assert!(bob.store.conversation(g).unwrap().conversation.everyone_off);

    // A direct conversation has no @here at all.
    let dm = alice.direct_with("bob").await;
    alice.call(send(dm, "d1", "@here hi")).await.unwrap();
    bob.sync().await;
    assert_eq!(bob.store.counts(dm).mentions, 0);
}

fn reactions_of(c: &Client, conversation: ConversationId, id: MessageId) -> Vec<(String, usize)> {
    let m = c
        .store
        .conversation(conversation)
        .unwrap()
        .messages
        .iter()
        .find(|m| m.id == id)
        .unwrap()
        .clone();
    m.reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.staff.len()))
        .collect()
}

#[tokio::test]
async fn reactions_reach_everyone_change_no_count_and_survive_a_restart() {
    let mut relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    let dm = alice.direct_with("bob").await;
    let sent = alice.call(send(dm, "m1", "lunch?")).await.unwrap();
    let id = sent.message.unwrap();
    bob.sync().await;
    let counts = bob.store.counts(dm);
    let total = bob.store.total();
    assert_eq!(counts.unread, 1);

    let react = |emoji: &str| Request::AddReaction {
        message: id,
        emoji: emoji.into(),
    };
    bob.call(react("👍")).await.unwrap();
    alice.call(react("👍")).await.unwrap();
    alice.call(react("🎉")).await.unwrap();
    // Again: acknowledged, nothing appended.
    let before = alice.call(Request::Ping).await.unwrap().offset;
    assert_eq!(alice.call(react("👍")).await.unwrap().offset, before);
    alice
        .call(Request::RemoveReaction {
            message: id,
            emoji: "🎉".into(),
        })
        .await
        .unwrap();
    for c in [&mut alice, &mut bob] {
        c.sync().await;
    }
    for c in [&alice, &bob] {
        assert_eq!(reactions_of(c, dm, id), vec![("👍".to_string(), 2)]);
    }
    // No count moved, for either of them.
    assert_eq!(bob.store.counts(dm), counts);
    assert_eq!(bob.store.total(), total);
    assert_eq!(alice.store.counts(dm).unread, 0);

    // Refusals change nothing.
    let before = alice.call(Request::Ping).await.unwrap().offset;
    for (emoji, code) in [
        ("ok", ErrorCode::InvalidInput),
        ("", ErrorCode::InvalidInput),
        ("<b>", ErrorCode::InvalidInput),
    ] {
        assert_eq!(alice.call(react(emoji)).await.unwrap_err().code, code);
    }
    let carol_like = Request::AddReaction {
        message: MessageId(9999),
        emoji: "👍".into(),
    };
    assert_eq!(
        alice.call(carol_like).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(alice.call(Request::Ping).await.unwrap().offset, before);

    // They are in the log: a resume replays them; a fresh snapshot and history after a
    // restart carry them.
    let resumed = Client::connect(relay.addr, &relay.token("alice"), Some(sent.offset)).await;
    let replayed = resumed
        .frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::Event(e) if matches!(e.event, Event::ReactionChanged { .. })))
        .count();
    let kinds: Vec<String> = resumed
        .frames
        .iter()
        .map(|f| format!("{f:?}").chars().take(60).collect())
        .collect();
    assert_eq!(replayed, 4, "{kinds:#?}");
    relay.stop().await;
    let relay = Relay::start_in(relay.dir, &["alice", "bob"], |_| {}).await;
    let fresh = relay.connect("bob").await;
    assert_eq!(reactions_of(&fresh, dm, id), vec![("👍".to_string(), 2)]);
    let page = all_messages(relay.addr, &relay.token("alice"), dm).await;
    assert_eq!(
        page[0]["reactions"][0]["staff"],
        serde_json::json!(["bob", "alice"])
    );
}

#[tokio::test]
async fn reactions_are_limited_per_person_per_message_and_by_their_own_budget() {
    let relay = Relay::start_with(&["alice", "bob"], |c| {
        c.limits.reactions_per_sec = 0.01;
        c.limits.reaction_burst = 22.0;
    })
    .await;
    let mut alice = relay.connect("alice").await;
    let dm = alice.direct_with("bob").await;
    let id = alice.call(send(dm, "m1", "vote")).await.unwrap().message.unwrap();
    let emoji = [
        "😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰", "😗", "😙",
        "😚", "🙂", "🤗", "🤩",
    ];
    for e in &emoji[..20] {
        alice
            .call(Request::AddReaction {
                message: id,
                emoji: (*e).into(),
            })
            .await
            .unwrap();
    }
    let e = alice
        .call(Request::AddReaction {
            message: id,
            emoji: emoji[20].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotAllowed, "{}", e.message);
    // The 22nd of the burst is the last; the next is rate limited, and a send still goes.
    alice
        .call(Request::RemoveReaction {
            message: id,
            emoji: emoji[0].into(),
        })
        .await
        .unwrap();
    let e = alice
        .call(Request::RemoveReaction {
            message: id,
            emoji: emoji[1].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::RateLimited);
    alice.call(send(dm, "m2", "still here")).await.unwrap();
}
