//! Frames applied in batches (as the inbox applies what arrived together) leave exactly the
//! store that applying them one by one does.
#![cfg(target_arch = "wasm32")]

use tally_frontend::state::{Action, ChatState, Interest};
use tally_shared::memory::MemoryHost;
use tally_shared::protocol::ServerFrame;
use tally_shared::{ClientMsgId, ConversationId, Millis, Request, Seq, Staff, StaffId};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn sid(s: &str) -> StaffId {
    StaffId::new(s).unwrap()
}

/// What bob's socket would carry: a snapshot, then every event and checkpoint of a busy
/// stretch (sends, reads, deletes, mark unread, a group) in order.
fn frames() -> Vec<ServerFrame> {
    let staff: Vec<Staff> = ["alice", "bob", "carol"]
        .iter()
        .map(|s| Staff {
            id: sid(s),
            name: s.to_uppercase(),
        })
        .collect();
    let mut host = MemoryHost::with_staff(&staff);
    let mut out = vec![ServerFrame::Snapshot(Box::new(host.snapshot(&sid("bob"))))];
    let bob = host.engine.key(&sid("bob")).unwrap();
    let mut clock = 1;
    let mut run = |host: &mut MemoryHost, who: &str, request: Request| {
        clock += 1;
        let outcome = host.execute(&sid(who), &request, Millis(clock)).unwrap();
        for a in outcome.applied {
            if a.recipients.contains(&bob) {
                out.push(ServerFrame::Event(a.event.clone()));
            }
            out.extend(
                a.changes
                    .iter()
                    .filter(|(k, _)| *k == bob)
                    .map(|(_, u)| ServerFrame::UnreadUpdated(*u)),
            );
        }
        outcome.ack
    };
    let dm = run(&mut host, "alice", Request::CreateDirect { staff: sid("bob") })
        .conversation
        .unwrap();
    let group = run(
        &mut host,
        "carol",
        Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "Desk".into(),
            participants: vec![sid("alice"), sid("bob")],
        },
    )
    .conversation
    .unwrap();
    let send = |c: ConversationId, i: usize| Request::SendMessage {
        mention_ranges: Vec::new(),
        client_id: ClientMsgId::new(format!("m{i}")).unwrap(),
        conversation: c,
        body: format!("message {i} @bob"),
        attachments: vec![],
        reply_to: None,
    };
    let mut sent = Vec::new();
    for i in 0..300 {
        let (who, c) = if i % 3 == 0 {
            ("carol", group)
        } else {
            ("alice", dm)
        };
        let message = run(&mut host, who, send(c, i)).message.unwrap();
        if who == "alice" {
            sent.push(message);
        }
        if i % 50 == 49 {
            run(
                &mut host,
                "bob",
                Request::MarkRead {
                    conversation: dm,
                    up_to: Seq(i as u64 / 2),
                },
            );
        }
        if i % 70 == 69 {
            run(
                &mut host,
                "alice",
                Request::DeleteMessage {
                    message: sent[sent.len() - 3],
                },
            );
        }
    }
    run(
        &mut host,
        "bob",
        Request::MarkUnread {
            conversation: dm,
            from: Seq(10),
        },
    );
    run(
        &mut host,
        "bob",
        Request::SetMuted {
            conversation: group,
            muted: true,
        },
    );
    out
}

fn summary(state: &ChatState) -> impl PartialEq + std::fmt::Debug {
    (
        state.store.summary(0),
        state.store.applied(),
        state.store.divergences(),
    )
}

#[wasm_bindgen_test]
fn applying_frames_in_batches_leaves_the_same_store_as_one_by_one() {
    let frames = frames();
    let mut one_by_one = ChatState::new(Vec::new());
    for f in frames.clone() {
        one_by_one.reduce(Action::Frame(f));
    }
    for size in [1, 7, 64, 256, frames.len()] {
        let mut batched = ChatState::new(Vec::new());
        for chunk in frames.chunks(size) {
            batched.reduce(Action::Frames(chunk.to_vec()));
        }
        assert_eq!(summary(&batched), summary(&one_by_one), "batches of {size}");
    }
    assert!(one_by_one.store.total().unread > 0);
}

/// What a conversation's own view and composer render from.
fn shown(state: &ChatState, c: ConversationId) -> String {
    let s = &state.store;
    let mut summaries: Vec<_> = s.thread_summaries(c, Seq(0)).into_iter().collect();
    summaries.sort_by_key(|(seq, _)| *seq);
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        s.conversation(c),
        s.counts(c),
        s.last_read(c),
        s.seen_marker(c),
        s.unseen_below(c),
        summaries,
        s.outbox().iter().filter(|p| p.conversation == c).count(),
    )
}

/// A frame that a dispatch says touches only some conversations leaves every other
/// conversation's view as it was: what lets the open conversation skip rendering for frames
/// about the others (and for typing). Checked on every frame of a busy stretch, with typing
/// and presence frames among them.
#[wasm_bindgen_test]
fn a_frame_said_to_touch_some_conversations_leaves_the_others_alone() {
    let mut frames = frames();
    let conversations: Vec<ConversationId> = {
        let mut s = ChatState::new(Vec::new());
        s.reduce(Action::Frames(frames.clone()));
        s.store.conversation_list().iter().map(|i| i.id).collect()
    };
    assert_eq!(conversations.len(), 2);
    for (i, c) in conversations.iter().enumerate() {
        let at = frames.len() / 3 * (i + 1);
        frames.insert(
            at,
            ServerFrame::Typing {
                conversation: *c,
                staff: sid("alice"),
            },
        );
        frames.insert(
            at,
            ServerFrame::Presence {
                staff: sid("carol"),
                presence: tally_shared::protocol::Presence::Online,
                dnd: false,
            },
        );
    }
    let mut state = ChatState::new(Vec::new());
    let (mut narrow, mut typing) = (0, 0);
    for f in frames {
        let before: Vec<String> = conversations.iter().map(|c| shown(&state, *c)).collect();
        let (epoch, names, me) = (state.epoch, state.store.directory(), state.store.me().cloned());
        state.reduce(Action::Frame(f.clone()));
        let changed = std::mem::take(&mut state.changed);
        // Message rows render again only when their own props or the epoch change.
        assert_eq!(state.epoch != epoch, changed.everything, "{f:?} and the epoch");
        if changed.everything {
            continue;
        }
        assert_eq!(
            state.store.directory(),
            names,
            "{f:?} renamed someone without the epoch"
        );
        assert_eq!(state.store.me(), me.as_ref());
        narrow += 1;
        typing += usize::from(!changed.typing.is_empty());
        for (c, before) in conversations.iter().zip(before) {
            if !changed.touches(Interest::Conversation(*c)) {
                assert_eq!(
                    shown(&state, *c),
                    before,
                    "{f:?} changed conversation {c} ({changed:?})"
                );
            }
        }
        if let ServerFrame::Typing { conversation, .. } = f {
            assert!(changed.touches(Interest::Typing(conversation)));
            assert!(!changed.touches(Interest::Counts), "typing renders no list");
        }
    }
    assert!(narrow > 300, "most frames are about one conversation ({narrow})");
    assert_eq!(typing, 2);
}

/// Opening a conversation, a snapshot and anything not about one conversation render
/// everything; what the viewport saw touches only its conversation.
#[wasm_bindgen_test]
fn what_is_not_about_one_conversation_touches_everything() {
    let frames = frames();
    let mut state = ChatState::new(Vec::new());
    state.reduce(Action::Frame(frames[0].clone()));
    assert!(std::mem::take(&mut state.changed).everything, "a snapshot");
    state.reduce(Action::Frames(frames[1..].to_vec()));
    let c = state.store.conversation_list()[0].id;
    state.changed = Default::default();
    state.reduce(Action::Seen(c, Seq(1)));
    let seen = std::mem::take(&mut state.changed);
    assert!(!seen.everything && seen.touches(Interest::Conversation(c)));
    state.reduce(Action::Open(Some(c)));
    let opened = std::mem::take(&mut state.changed);
    assert!(opened.everything);
    assert!(
        !opened.touches(Interest::Props),
        "a component that never reads the store"
    );
}

/// `util::Days` asks the browser once a day and answers from the day's bounds otherwise: the
/// same key as asking the browser for every time, across midnights, in order and not.
#[wasm_bindgen_test]
fn days_keyed_from_the_days_bounds_match_the_browser() {
    let browser = |at: u64| -> String {
        js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at as f64))
            .to_date_string()
            .into()
    };
    // Around the local midnight of a day: the last and first milliseconds, then a spread of
    // times over six weeks (a month's end; a clock change where this browser has one).
    let noon = js_sys::Date::new_with_year_month_day_hr_min(2026, 2, 28, 12, 0);
    let midnight = {
        let d = js_sys::Date::new(&noon);
        d.set_date(d.get_date() + 1);
        d.set_hours(0);
        d.set_minutes(0);
        d.set_seconds(0);
        d.set_milliseconds(0) as u64
    };
    let mut times = vec![midnight - 1, midnight, midnight + 1, midnight - 1];
    let mut t = noon.get_time() as u64;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Mostly forward by up to an hour, now and then back (an edited or late row).
        t = if rng.is_multiple_of(10) {
            t - (rng >> 40) % 7_200_000
        } else {
            t + (rng >> 40) % 3_600_000
        };
        times.push(t);
    }
    let mut days = tally_frontend::util::Days::default();
    for at in times {
        assert_eq!(days.key(Millis(at)), browser(at), "at {at}");
    }
}
