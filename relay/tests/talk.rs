//! How staff talk, over real sockets: mentions chosen in a picker (ranges) and found in text,
//! `@here` and its owner's switch, and reactions (deduped, limited, logged, never counted).

mod common;

use common::*;
use tally_shared::mentions::MentionRange;
use tally_shared::protocol::{Event, ServerFrame};
use tally_shared::quiet::{Quiet, Schedule};
use tally_shared::{ClientMsgId, ConversationId, Counts, ErrorCode, MessageId, Millis, Request};

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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn is_quiet_frame(f: &ServerFrame) -> Option<Quiet> {
    match f {
        ServerFrame::Quiet { quiet } => Some(quiet.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn quiet_hours_reach_every_tab_show_others_do_not_disturb_survive_a_restart_and_bad_ones_change_nothing()
 {
    let mut relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob1 = relay.connect("bob").await;
    let mut bob2 = relay.connect("bob").await;
    alice
        .call(Request::CreateDirect { staff: sid("bob") })
        .await
        .unwrap();
    // Bob snoozes for 30 minutes, letting mentions through, and keeps nights quiet in Berlin.
    let quiet = Quiet {
        schedule: Some(Schedule {
            days: 0b111_1111,
            from: 22 * 60,
            to: 7 * 60,
            zone: "Europe/Berlin".into(),
        }),
        snooze_until: Some(Millis(now_ms() + 30 * 60 * 1000)),
        mentions_break_through: true,
    };
    bob1.call(Request::SetQuiet { quiet: quiet.clone() })
        .await
        .unwrap();
    let told = bob2
        .until(|f| is_quiet_frame(f).is_some_and(|q| q.snooze_until.is_some()))
        .await;
    assert_eq!(
        is_quiet_frame(&told),
        Some(quiet.clone()),
        "his other tab is told"
    );
    alice
        .until(|f| matches!(f, ServerFrame::Presence { staff, dnd: true, .. } if staff.as_str() == "bob"))
        .await;

    // Out of bounds: refused with the reason, nothing stored.
    let bad = [
        Schedule {
            zone: "Mars/Olympus_Mons".into(),
            ..quiet.schedule.clone().unwrap()
        },
        Schedule {
            days: 0,
            ..quiet.schedule.clone().unwrap()
        },
        Schedule {
            to: 24 * 60,
            ..quiet.schedule.clone().unwrap()
        },
    ];
    for schedule in bad {
        let e = bob1
            .call(Request::SetQuiet {
                quiet: Quiet {
                    schedule: Some(schedule),
                    ..Quiet::default()
                },
            })
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput, "{}", e.message);
    }
    let a_week_and_a_minute = Millis(now_ms() + tally_shared::quiet::SNOOZE_MAX_MS + 60_000);
    let e = bob1
        .call(Request::SetQuiet {
            quiet: Quiet {
                snooze_until: Some(a_week_and_a_minute),
                ..Quiet::default()
            },
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput);
    // A new tab, after a restart, is told what was stored.
    drop((alice, bob1, bob2));
    relay.stop().await;
    let mut relay = Relay::start_in(relay.dir, &["alice", "bob"], |_| {}).await;
    let mut bob3 = relay.connect("bob").await;
    let told = bob3.until(|f| is_quiet_frame(f).is_some()).await;
    assert_eq!(is_quiet_frame(&told), Some(quiet));
    // Cleared: Alice sees him without "do not disturb" again.
    let mut alice = relay.connect("alice").await;
    alice
        .until(|f| matches!(f, ServerFrame::Presence { staff, dnd: true, .. } if staff.as_str() == "bob"))
        .await;
    bob3.call(Request::SetQuiet {
        quiet: Quiet::default(),
    })
    .await
    .unwrap();
    alice
        .until(|f| matches!(f, ServerFrame::Presence { staff, dnd: false, .. } if staff.as_str() == "bob"))
        .await;
    relay.stop().await;
}

async fn versions_of(relay: &Relay, who: &str, message: MessageId) -> (u16, serde_json::Value) {
    let path = format!("/api/messages/{}/versions", message.0);
    let (status, _, body) = http(
        relay.addr,
        "GET",
        &path,
        &[("Authorization", &bearer(&relay.token(who)))],
        b"",
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap())
}

fn bodies(v: &serde_json::Value) -> Vec<String> {
    v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["body"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_messages_earlier_versions_show_to_those_who_saw_them_and_to_nobody_once_it_is_deleted() {
    let relay = Relay::start(&["alice", "bob", "carol", "dan"]).await;
    let mut alice = relay.connect("alice").await;
    let g = group(&mut alice, &["bob"]).await;
    let ack = alice.call(send_with(g, "m1", "Meet at 9", vec![])).await.unwrap();
    let id = ack.message.unwrap();
    let edit = |body: &str| Request::EditMessage {
        message: id,
        body: body.into(),
        mention_ranges: vec![],
    };
    alice.call(edit("Meet at 10")).await.unwrap();
    // Carol joins between the two edits: she saw "Meet at 10", never "Meet at 9".
    alice
        .call(Request::AddParticipants {
            conversation: g,
            staff: vec![sid("carol")],
        })
        .await
        .unwrap();
    alice.call(edit("Meet at 10:30")).await.unwrap();
    let (status, bob) = versions_of(&relay, "bob", id).await;
    assert_eq!(status, 200);
    assert_eq!(
        bodies(&bob),
        ["Meet at 9", "Meet at 10"],
        "oldest first, the current text not among them"
    );
    assert!(bob["versions"][0]["at"].as_u64().unwrap() <= bob["versions"][1]["at"].as_u64().unwrap());
    let (_, carol) = versions_of(&relay, "carol", id).await;
    assert_eq!(bodies(&carol), ["Meet at 10"]);
    // Not in the conversation: refused; no such message: not found.
    let (status, body) = versions_of(&relay, "dan", id).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_participant")));
    let (status, _) = versions_of(&relay, "bob", MessageId(9_999)).await;
    assert_eq!(status, 404);
    // Deleted: every version is gone with it.
    alice.call(Request::DeleteMessage { message: id }).await.unwrap();
    let (status, body) = versions_of(&relay, "bob", id).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}
