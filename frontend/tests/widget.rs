//! The widget in headless Chromium: the real components and chatStore, with the socket replaced
//! by the real shared engine (`MemoryHost`) — frames the widget sends are executed by it, and
//! its events come back to the widget as the relay would send them.
#![cfg(target_arch = "wasm32")]

use std::rc::Rc;

use tally_frontend::app::{App, AppProps, Harness};
use tally_frontend::options::MountOptions;
use tally_frontend::state::Action;
use tally_shared::memory::MemoryHost;
use tally_shared::protocol::{ServerFrame, UnreadUpdate};
use tally_shared::{ClientMsgId, ConversationId, Millis, Request, Staff, StaffId};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::HtmlElement;

wasm_bindgen_test_configure!(run_in_browser);

fn sid(s: &str) -> StaffId {
    StaffId::new(s).unwrap()
}

/// The relay's engine with alice, bob and carol, and alice's direct conversation with bob.
fn host() -> MemoryHost {
    let staff: Vec<Staff> = ["alice", "bob", "carol"]
        .iter()
        .map(|s| Staff {
            id: sid(s),
            name: s.to_uppercase(),
        })
        .collect();
    let mut host = MemoryHost::with_staff(&staff);
    host.execute(
        &sid("alice"),
        &Request::CreateDirect { staff: sid("bob") },
        Millis(1),
    )
    .unwrap();
    host
}

/// The relay's engine, driving one widget signed in as bob.
struct World {
    host: MemoryHost,
    harness: Harness,
    root: web_sys::Element,
    handled: usize,
    clock: u64,
}

impl World {
    async fn new(key: &str) -> World {
        let mut w = Self::mount(host(), key).await;
        w.deliver_snapshot();
        settle().await;
        w
    }

    async fn mount(host: MemoryHost, key: &str) -> World {
        let doc = gloo::utils::document();
        let root = doc.create_element("div").unwrap();
        doc.body().unwrap().append_child(&root).unwrap();
        let harness = Harness::default();
        tally_frontend::i18n::Locale::new(["en"], &Default::default()).install();
        let options = Rc::new(MountOptions {
            storage_key: Some(key.into()),
            title_badge: Some(false),
            ..Default::default()
        });
        yew::Renderer::<App>::with_root_and_props(
            root.clone(),
            AppProps {
                options,
                harness: Some(harness.clone()),
                handle: None,
            },
        )
        .render();
        settle().await;
        World {
            host,
            harness,
            root,
            handled: 0,
            clock: 10,
        }
    }

    fn deliver_snapshot(&mut self) {
        self.harness
            .deliver(ServerFrame::Snapshot(Box::new(self.host.snapshot(&sid("bob")))));
    }

    /// Someone else acts; bob's widget receives what the relay would send him.
    fn act(&mut self, who: &str, request: Request) {
        self.clock += 1;
        let outcome = self
            .host
            .execute(&sid(who), &request, Millis(self.clock))
            .unwrap();
        let bob = self.host.engine.key(&sid("bob")).unwrap();
        let seen = seen_frames(&self.host.engine, &outcome);
        for a in outcome.applied {
            if a.recipients.contains(&bob) {
                self.harness.deliver(ServerFrame::Event(a.event.clone()));
            }
            for (k, u) in &a.changes {
                if *k == bob {
                    self.harness.deliver(ServerFrame::UnreadUpdated(*u));
                }
            }
        }
        self.deliver_to_bob(seen);
    }

    /// The frames of a group addressed to bob, as the relay sends them.
    fn deliver_to_bob(&self, frames: tally_shared::engine::Addressed) {
        let bob = self.host.engine.key(&sid("bob")).unwrap();
        for (keys, frame) in frames {
            if keys.contains(&bob) {
                self.harness.deliver(frame);
            }
        }
    }

    /// Executes what bob's widget sent since the last pump.
    async fn pump(&mut self) {
        settle().await;
        let sent: Vec<_> = self.harness.sent.borrow()[self.handled..].to_vec();
        self.handled += sent.len();
        for frame in sent {
            match frame.request {
                // Typing is relayed by the relay, not executed: nothing comes back but its ack.
                Request::Hello { .. }
                | Request::Ping
                | Request::Typing { .. }
                | Request::Visibility { .. } => {}
                Request::RequestSnapshot => self.deliver_snapshot(),
                // Quiet hours are the relay's preference: every tab is told, then the ack.
                Request::SetQuiet { quiet } => {
                    self.harness.deliver(ServerFrame::Quiet { quiet });
                    self.harness
                        .deliver(ServerFrame::Ack(tally_shared::protocol::Ack {
                            req: frame.req,
                            ..Default::default()
                        }));
                }
                Request::SetPreferences { hide_read_state } => {
                    self.host
                        .engine
                        .set_read_state_hidden(&sid("bob"), hide_read_state);
                    let frames = self.host.engine.preference_frames(&sid("bob"));
                    self.deliver_to_bob(frames);
                }
                request => {
                    self.clock += 1;
                    let bob = self.host.engine.key(&sid("bob")).unwrap();
                    match self.host.execute(&sid("bob"), &request, Millis(self.clock)) {
                        Ok(outcome) => {
                            let seen = seen_frames(&self.host.engine, &outcome);
                            self.deliver_to_bob(seen);
                            for a in &outcome.applied {
                                if a.recipients.contains(&bob) {
                                    self.harness.deliver(ServerFrame::Event(a.event.clone()));
                                }
                                for (k, u) in &a.changes {
                                    if *k == bob {
                                        self.harness.deliver(ServerFrame::UnreadUpdated(*u));
                                    }
                                }
                            }
                            let ack = tally_shared::protocol::Ack {
                                req: frame.req,
                                ..outcome.ack
                            };
                            self.harness.deliver(ServerFrame::Ack(ack));
                        }
                        Err(r) => {
                            self.harness
                                .deliver(ServerFrame::Error(tally_shared::protocol::ErrorFrame {
                                    req: frame.req,
                                    code: r.code,
                                    message: r.message,
                                    retry_after_ms: None,
                                }))
                        }
                    }
                }
            }
        }
        settle().await;
    }

    fn text(&self, selector: &str) -> Option<String> {
        self.root
            .query_selector(selector)
            .unwrap()
            .map(|e| e.text_content().unwrap_or_default())
    }

    fn count(&self, selector: &str) -> u32 {
        self.root.query_selector_all(selector).unwrap().length()
    }

    async fn click(&self, selector: &str) {
        let el: HtmlElement = self
            .root
            .query_selector(selector)
            .unwrap()
            .unwrap_or_else(|| panic!("no {selector}"))
            .unchecked_into();
        el.click();
        settle().await;
    }

    fn sent_of(&self, kind: &str) -> usize {
        self.harness
            .sent
            .borrow()
            .iter()
            .filter(|f| f.request.kind() == kind)
            .count()
    }
}

/// The `seen` frames an outcome causes, now and at the relay's next tick, together.
fn seen_frames(
    engine: &tally_shared::Engine,
    outcome: &tally_shared::Outcome,
) -> tally_shared::engine::Addressed {
    let (now, moved) = engine.seen_changes(outcome.applied.iter().map(|a| &a.event.event));
    now.into_iter().chain(engine.seen_frames(&moved)).collect()
}

async fn settle() {
    gloo::timers::future::TimeoutFuture::new(40).await;
}

fn send(conversation: ConversationId, id: &str, body: &str) -> Request {
    Request::SendMessage {
        client_id: ClientMsgId::new(id).unwrap(),
        conversation,
        body: body.into(),
        attachments: vec![],
        reply_to: None,
        mention_ranges: vec![],
    }
}

#[wasm_bindgen_test]
async fn anothers_message_raises_the_badge_and_opening_reads_it_with_one_frame() {
    let mut w = World::new("t1").await;
    assert_eq!(w.text("[data-testid=total-badge]"), None);
    w.act("alice", send(ConversationId(1), "a1", "hi bob"));
    w.act("alice", send(ConversationId(1), "a2", "are you there?"));
    settle().await;
    assert_eq!(w.text("[data-testid=total-badge]").as_deref(), Some("2"));
    w.click(".tally-launcher").await;
    assert_eq!(w.text("[data-testid=unread-badge]").as_deref(), Some("2"));
    // Opening the conversation shows both messages; the viewport reads them with one frame.
    let _ = gloo::utils::window().focus();
    w.click("[data-conversation='1']").await;
    assert!(
        w.count("[data-testid=new-divider]") == 1,
        "the divider sits at the watermark"
    );
    gloo::timers::future::TimeoutFuture::new(600).await;
    assert_eq!(w.sent_of("mark_read"), 1, "one mark-read frame");
    w.pump().await;
    assert_eq!(w.text("[data-testid=total-badge]"), None, "badge cleared");
    assert_eq!(w.sent_of("mark_read"), 1, "no more frames after the read");
}

#[wasm_bindgen_test]
async fn the_badge_shows_the_relays_counts_ahead_of_the_snapshot_and_the_list_waits_for_it() {
    let mut host = host();
    for i in 0..3 {
        host.execute(
            &sid("alice"),
            &send(ConversationId(1), &format!("a{i}"), "hi"),
            Millis(2 + i),
        )
        .unwrap();
    }
    let w = World::mount(host, "t-counts").await;
    assert_eq!(w.text("[data-testid=total-badge]"), None, "nothing known yet");
    let snapshot = w.host.snapshot(&sid("bob"));
    w.harness.deliver(ServerFrame::Counts {
        offset: snapshot.offset,
        total: snapshot.total,
    });
    settle().await;
    assert_eq!(w.text("[data-testid=total-badge]").as_deref(), Some("3"));
    w.click(".tally-launcher").await;
    assert_eq!(w.count("[data-conversation]"), 0, "no list before the snapshot");
    w.harness.deliver(ServerFrame::Snapshot(Box::new(snapshot)));
    settle().await;
    assert_eq!(w.text("[data-testid=total-badge]").as_deref(), Some("3"));
    assert_eq!(w.text("[data-testid=unread-badge]").as_deref(), Some("3"));
}

#[wasm_bindgen_test]
async fn muted_conversations_leave_the_total_but_keep_their_badge() {
    let mut w = World::new("t2").await;
    w.act(
        "carol",
        Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "Team".into(),
            participants: vec![sid("bob")],
        },
    );
    w.act("alice", send(ConversationId(1), "a1", "direct"));
    settle().await;
    assert_eq!(w.text("[data-testid=total-badge]").as_deref(), Some("2"));
    w.harness.dispatch(Action::Request(Request::SetMuted {
        conversation: ConversationId(2),
        muted: true,
    }));
    w.pump().await;
    assert_eq!(w.text("[data-testid=total-badge]").as_deref(), Some("1"));
    w.click(".tally-launcher").await;
    assert_eq!(
        w.count("[data-testid=unread-badge]"),
        2,
        "the muted one keeps its own badge"
    );
}

#[wasm_bindgen_test]
async fn mentions_show_a_marker_on_the_launcher() {
    let mut w = World::new("t3").await;
    w.act("alice", send(ConversationId(1), "a1", "@bob look"));
    settle().await;
    assert_eq!(w.count("[data-testid=mention-marker]"), 1);
}

#[wasm_bindgen_test]
async fn a_divergent_checkpoint_is_repaired_and_counted() {
    let mut w = World::new("t4").await;
    w.act("alice", send(ConversationId(1), "a1", "one"));
    settle().await;
    w.harness.deliver(ServerFrame::UnreadUpdated(UnreadUpdate {
        thread: None,
        offset: w.host.engine.offset(),
        conversation: ConversationId(1),
        unread: 5,
        mentions: 0,
        total: tally_shared::Totals {
            unread: 5,
            mentions: 0,
        },
        digest: None,
    }));
    settle().await;
    assert_eq!(
        w.text("[data-testid=total-badge]").as_deref(),
        Some("5"),
        "the relay's figure is taken"
    );
    assert_eq!(w.sent_of("request_snapshot"), 1, "and a snapshot is asked for");
    w.pump().await;
    assert_eq!(
        w.text("[data-testid=total-badge]").as_deref(),
        Some("1"),
        "the snapshot repairs it"
    );
}

#[wasm_bindgen_test]
async fn the_outbox_survives_a_reload() {
    let key = "t5";
    let _ = web_sys::window()
        .unwrap()
        .local_storage()
        .unwrap()
        .unwrap()
        .remove_item(key);
    let w = World::new(key).await;
    // Offline: the send is queued but never acknowledged.
    w.harness.dispatch(Action::Send(tally_shared::store::PendingSend {
        mention_ranges: Vec::new(),
        thread: None,
        client_id: ClientMsgId::new("offline-1").unwrap(),
        conversation: ConversationId(1),
        body: "written offline".into(),
        attachments: vec![],
        reply_to: None,
        failed: None,
        queued_at: None,
    }));
    settle().await;
    let host = w.host.clone();
    w.root.remove();
    // Reload: a new widget with the same storage.
    let mut w = World::mount(host, key).await;
    w.deliver_snapshot();
    settle().await;
    w.harness.dispatch(Action::Reconnected);
    w.harness.dispatch(Action::Open(Some(ConversationId(1))));
    w.click(".tally-launcher").await;
    assert_eq!(w.count("[data-testid=pending]"), 1, "shown as sending");
    w.pump().await;
    assert_eq!(w.count("[data-testid=pending]"), 0, "acknowledged");
    assert!(w.text(".tally-messages").unwrap().contains("written offline"));
    assert_eq!(
        w.host
            .storage
            .range(ConversationId(1), tally_shared::Seq(1), tally_shared::Seq(9))
            .len(),
        1
    );
}

#[wasm_bindgen_test]
async fn someone_typing_shows_ends_with_their_message_or_expires_and_my_typing_is_throttled() {
    let mut w = World::new("t-typing").await;
    w.click(".tally-launcher").await;
    let _ = gloo::utils::window().focus();
    w.click("[data-conversation='1']").await;
    let alice_types = || ServerFrame::Typing {
        conversation: ConversationId(1),
        staff: sid("alice"),
    };
    assert_eq!(w.text("[data-testid=typing]").as_deref(), Some(""));
    w.harness.deliver(alice_types());
    settle().await;
    assert_eq!(
        w.text("[data-testid=typing]").as_deref(),
        Some("ALICE is typing…")
    );
    // Her message ends it.
    w.act("alice", send(ConversationId(1), "a1", "here it is"));
    settle().await;
    assert_eq!(w.text("[data-testid=typing]").as_deref(), Some(""));
    // Otherwise it shows for six seconds (the line renders itself each second).
    w.harness.deliver(alice_types());
    settle().await;
    assert_eq!(
        w.text("[data-testid=typing]").as_deref(),
        Some("ALICE is typing…")
    );
    gloo::timers::future::TimeoutFuture::new(7_100).await;
    assert_eq!(w.text("[data-testid=typing]").as_deref(), Some(""));
    // Bob's own typing: one frame for a burst of keystrokes.
    let area: web_sys::HtmlTextAreaElement = w
        .root
        .query_selector("[data-testid=composer]")
        .unwrap()
        .unwrap()
        .unchecked_into();
    for text in ["h", "he", "hel", "hell"] {
        area.set_value(text);
        let input = web_sys::InputEvent::new("input").unwrap();
        area.dispatch_event(&input).unwrap();
        settle().await;
    }
    assert_eq!(w.sent_of("typing"), 1, "at most one typing frame per 3 s");
}

#[wasm_bindgen_test]
async fn a_direct_conversation_shows_the_other_persons_presence() {
    use tally_shared::protocol::Presence;
    let w = World::new("t-presence").await;
    w.click(".tally-launcher").await;
    let dot = |w: &World| {
        w.root
            .query_selector("[data-conversation='1'] [data-testid=presence]")
            .unwrap()
            .and_then(|e| e.get_attribute("data-presence"))
    };
    assert_eq!(dot(&w).as_deref(), Some("offline"));
    for (presence, shown) in [
        (Presence::Online, "online"),
        (Presence::Away, "away"),
        (Presence::Offline, "offline"),
    ] {
        w.harness.deliver(ServerFrame::Presence {
            staff: sid("alice"),
            presence,
            dnd: false,
        });
        settle().await;
        assert_eq!(dot(&w).as_deref(), Some(shown));
    }
    // A new session forgets it until the relay says again.
    w.harness.deliver(ServerFrame::Presence {
        staff: sid("alice"),
        presence: Presence::Online,
        dnd: false,
    });
    w.harness
        .deliver(ServerFrame::Snapshot(Box::new(w.host.snapshot(&sid("bob")))));
    settle().await;
    assert_eq!(dot(&w).as_deref(), Some("offline"));
}

#[wasm_bindgen_test]
async fn seen_appears_under_my_message_when_the_other_person_reads_it_and_not_once_i_hide_mine() {
    let mut w = World::new("t-seen").await;
    w.click(".tally-launcher").await;
    w.click("[data-conversation='1']").await;
    w.act("alice", send(ConversationId(1), "a1", "Parcel is here"));
    w.act("bob", send(ConversationId(1), "b1", "Thanks!"));
    settle().await;
    assert_eq!(w.count("[data-testid=seen]"), 0, "alice has not read it");
    w.act(
        "alice",
        Request::MarkConversationRead {
            conversation: ConversationId(1),
        },
    );
    settle().await;
    assert_eq!(w.count("[data-testid=seen]"), 1);
    let seen_row = w
        .root
        .query_selector("[data-testid=seen]")
        .unwrap()
        .unwrap()
        .closest(".tally-msg")
        .unwrap()
        .unwrap();
    assert!(seen_row.text_content().unwrap().contains("Thanks!"));

    // Bob stops sharing his read state from the bell's settings: he sees nobody's either.
    w.click("[data-testid=bell]").await;
    w.click("[data-testid=share-reads]").await;
    w.pump().await;
    assert_eq!(w.sent_of("set_preferences"), 1);
    assert_eq!(w.count("[data-testid=seen]"), 0);
    let checkbox: web_sys::HtmlInputElement = w
        .root
        .query_selector("[data-testid=share-reads]")
        .unwrap()
        .unwrap()
        .unchecked_into();
    assert!(!checkbox.checked());
}

#[wasm_bindgen_test]
async fn a_group_message_says_who_has_seen_it_and_a_long_conversation_opens_on_a_window_at_its_first_unread()
{
    let mut w = World::new("t-window").await;
    w.act(
        "alice",
        Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "Desk".into(),
            participants: vec![sid("bob"), sid("carol")],
        },
    );
    let group = ConversationId(2);
    w.act("bob", send(group, "b1", "Who closes?"));
    w.act("alice", Request::MarkConversationRead { conversation: group });
    w.act("carol", Request::MarkConversationRead { conversation: group });
    // (Names of people met after the snapshot come from the directory, as the widget's own.)
    w.harness.dispatch(Action::Directory(vec![Staff {
        id: sid("carol"),
        name: "CAROL".into(),
    }]));
    w.click(".tally-launcher").await;
    w.click("[data-conversation='2']").await;
    assert_eq!(
        w.text("[data-testid=seen-by]").as_deref(),
        Some("Seen by ALICE, CAROL")
    );
    // 300 unread in the direct conversation: it opens on 120 rows from the first unread one,
    // with the divider, and renders the rest as the reader scrolls.
    w.click("[aria-label='Back to conversations']").await;
    for i in 0..300 {
        w.act(
            "alice",
            send(ConversationId(1), &format!("a{i}"), &format!("line {i}")),
        );
    }
    settle().await;
    w.click("[data-conversation='1']").await;
    assert_eq!(w.count(".tally-msg"), tally_shared::store::WINDOW_MAX_ROWS as u32);
    assert_eq!(w.count("[data-testid=new-divider]"), 1);
    assert_eq!(w.text(".tally-msg .tally-text").as_deref(), Some("line 0"));
}

/// A page that lists a cluster's nodes in `relayUrls` goes round them, one per reconnect,
/// and its HTTP calls follow the node it is on.
#[wasm_bindgen_test]
fn relay_urls_go_round_the_nodes_one_per_reconnect() {
    let options = js_sys::JSON::parse(
        r#"{"relayUrls": ["https://a.example/", "https://b.example", "https://c.example"]}"#,
    )
    .unwrap();
    let options = MountOptions::from_js(options).unwrap();
    let first = options.http_base();
    assert!(first.ends_with(".example") && !first.ends_with('/'), "{first}");
    assert_eq!(
        options.ws_url(),
        format!("{}/ws", first.replacen("https://", "wss://", 1))
    );
    let mut seen = vec![first];
    for _ in 0..2 {
        options.next_relay();
        seen.push(options.http_base());
    }
    seen.sort();
    assert_eq!(
        seen,
        ["https://a.example", "https://b.example", "https://c.example"]
    );
    options.next_relay();
    // Without a list, the one relay (or the page's origin) stays.
    let one = MountOptions::from_js(js_sys::JSON::parse(r#"{"relayUrl": "https://one.example/"}"#).unwrap())
        .unwrap();
    one.next_relay();
    assert_eq!(one.http_base(), "https://one.example");
    assert_eq!(
        tally_frontend::options::pick(&["x".to_string(), "y".to_string()], 3),
        "y"
    );
}

#[wasm_bindgen_test]
fn every_catalog_has_every_key_and_every_plural_form_its_language_needs() {
    let gaps = tally_frontend::i18n::Locale::gaps();
    assert!(gaps.is_empty(), "{gaps:#?}");
}

#[wasm_bindgen_test]
fn plurals_follow_each_languages_rules() {
    use tally_frontend::i18n::Locale;
    let none = std::collections::HashMap::new();
    let en = Locale::new(["en"], &none);
    assert_eq!(en.count("launcher.announce", 1, &[]), "1 unread message");
    assert_eq!(en.count("launcher.announce", 2, &[]), "2 unread messages");
    assert_eq!(en.count("launcher.announce", 3000, &[]), "3,000 unread messages");
    let de = Locale::new(["de"], &none);
    assert_eq!(de.count("launcher.announce", 1, &[]), "1 ungelesene Nachricht");
    // Austrian German: German words, Austria's way of grouping digits.
    let at = Locale::new(["de-AT"], &none);
    assert_eq!(at.lang(), "de");
    assert_eq!(
        at.count("launcher.announce", 3000, &[]),
        "3\u{a0}000 ungelesene Nachrichten"
    );
    assert_eq!(
        de.count("launcher.announce", 3000, &[]),
        "3.000 ungelesene Nachrichten"
    );
    let ar = Locale::new(["ar"], &none);
    assert_eq!(ar.dir(), "rtl");
    // Arabic has six forms: two is not three, and eleven is not three either.
    assert_eq!(ar.count("launcher.announce", 2, &[]), "رسالتان غير مقروءتين");
    assert!(ar.count("launcher.announce", 3, &[]).contains("رسائل"));
    assert!(!ar.count("launcher.announce", 11, &[]).contains("رسائل"));
    // A host's own words win.
    let mut mine = std::collections::HashMap::new();
    mine.insert("panel.title".to_string(), "Team chat".to_string());
    assert_eq!(Locale::new(["fr"], &mine).text("panel.title", &[]), "Team chat");
    assert_eq!(
        Locale::new(["fr"], &mine).text("panel.close", &[]),
        "Fermer les messages"
    );
}

#[wasm_bindgen_test]
async fn one_unread_message_is_announced_in_the_singular() {
    let mut w = World::new("t-singular").await;
    w.act("alice", send(ConversationId(1), "a1", "hello"));
    settle().await;
    let announced = w.text("[aria-live=polite].tally-sr-only").unwrap();
    assert_eq!(announced, "1 unread message");
}

#[wasm_bindgen_test]
async fn a_draft_survives_switching_conversations_and_a_reload_and_is_marked_in_the_list() {
    let mut w = World::new("t-drafts").await;
    w.act("carol", Request::CreateDirect { staff: sid("bob") });
    w.click(".tally-launcher").await;
    w.click(".tally-item[data-conversation='1']").await;
    type_into(&w, "[data-testid=composer]", "half a thought").await;
    w.click("[aria-label='Back to conversations']").await;
    assert_eq!(w.count("[data-testid=draft-mark]"), 1, "the list marks it");
    w.click(".tally-item[data-conversation='2']").await;
    assert_eq!(composer_text(&w), "", "another conversation has its own");
    w.click("[aria-label='Back to conversations']").await;
    w.click(".tally-item[data-conversation='1']").await;
    assert_eq!(composer_text(&w), "half a thought");
    // A reload (a new widget on the same storage) finds it too.
    let host = std::mem::take(&mut w.host);
    let mut again = World::mount(host, "t-drafts").await;
    again.deliver_snapshot();
    settle().await;
    again.click(".tally-launcher").await;
    assert_eq!(again.count("[data-testid=draft-mark]"), 1);
    again.click(".tally-item[data-conversation='1']").await;
    assert_eq!(composer_text(&again), "half a thought");
    // Sending it ends it.
    again.click("[data-testid=send]").await;
    again.pump().await;
    again.click("[aria-label='Back to conversations']").await;
    assert_eq!(again.count("[data-testid=draft-mark]"), 0);
}

#[wasm_bindgen_test]
async fn links_are_links_to_the_web_only_and_a_long_message_folds() {
    let mut w = World::new("t-links").await;
    let long = "word ".repeat(300);
    w.act(
        "alice",
        send(
            ConversationId(1),
            "l1",
            "see https://example.org/a?b=1, or javascript:alert(1)",
        ),
    );
    w.act("alice", send(ConversationId(1), "l2", &long));
    w.click(".tally-launcher").await;
    w.click(".tally-item[data-conversation='1']").await;
    let links = w.root.query_selector_all(".tally-text a").unwrap();
    assert_eq!(links.length(), 1);
    let a: web_sys::Element = links.item(0).unwrap().unchecked_into();
    assert_eq!(
        a.get_attribute("href").as_deref(),
        Some("https://example.org/a?b=1")
    );
    assert_eq!(a.get_attribute("rel").as_deref(), Some("noopener noreferrer"));
    // These messages are from 1970, long over six days old: each still shows its time.
    let time = w.text(".tally-msg-meta time").unwrap();
    assert!(
        time.len() >= 4 && time.contains(':') && time.chars().any(|c| c.is_ascii_digit()),
        "{time:?}"
    );
    assert_eq!(w.count(".tally-folded"), 1);
    w.click("[data-testid=fold]").await;
    assert_eq!(w.count(".tally-folded"), 0, "unfolded");
    assert!(w.text("[data-testid=fold]").unwrap().contains("Show less"));
}

/// Types into a text box as a person would (its input event included).
async fn type_into(w: &World, selector: &str, text: &str) {
    let area: web_sys::HtmlTextAreaElement =
        w.root.query_selector(selector).unwrap().unwrap().unchecked_into();
    area.set_value(text);
    let event = web_sys::InputEvent::new("input").unwrap();
    area.dispatch_event(&event).unwrap();
    settle().await;
}

fn composer_text(w: &World) -> String {
    let area: web_sys::HtmlTextAreaElement = w
        .root
        .query_selector("[data-testid=composer]")
        .unwrap()
        .unwrap()
        .unchecked_into();
    area.value()
}

#[wasm_bindgen_test]
async fn a_reply_in_a_followed_thread_raises_the_badge_not_the_conversation_and_the_pane_reads_it() {
    let mut w = World::new("threads").await;
    let dm = ConversationId(1);
    // Bob's message, then Alice replies under it: Bob (its author) follows the thread.
    w.act("bob", send(dm, "b1", "who has the keys?"));
    let root = w.host.engine.projection().head(dm).unwrap();
    w.act(
        "alice",
        Request::ReplyInThread {
            mention_ranges: Vec::new(),
            client_id: ClientMsgId::new("a1").unwrap(),
            conversation: dm,
            thread: root,
            body: "I do".into(),
            attachments: vec![],
        },
    );
    settle().await;
    assert_eq!(
        w.text("[data-testid=total-badge]").as_deref(),
        Some("1"),
        "the thread counts in the badge"
    );
    w.click(".tally-launcher").await;
    assert_eq!(
        w.count("[data-testid=unread-badge]"),
        0,
        "the conversation's own count does not rise"
    );
    // The Unreads inbox lists the thread, and its numbers sum to the badge.
    w.click("[data-testid=tab-unreads]").await;
    assert_eq!(w.count("[data-testid=thread-item]"), 1);
    assert_eq!(
        w.text("[data-testid=inbox] [data-testid=unread-badge]")
            .as_deref(),
        Some("1")
    );
    // In the conversation, the root says "1 reply, 1 new"; the reply itself is not in the stream.
    w.click("[data-testid=tab-all]").await;
    w.click("[data-conversation='1']").await;
    let line = w
        .root
        .query_selector("[data-testid=thread-line]")
        .unwrap()
        .expect("a thread line under the root");
    assert_eq!(line.get_attribute("data-replies").as_deref(), Some("1"));
    assert_eq!(line.get_attribute("data-unread").as_deref(), Some("1"));
    assert_eq!(
        w.count(".tally-conversation .tally-msg"),
        1,
        "replies live in their pane"
    );
    // Opening the thread shows the reply after its divider; reading what is in view reads it.
    let _ = gloo::utils::window().focus();
    w.click("[data-testid=thread-line]").await;
    assert_eq!(w.count("[data-testid=thread-pane]"), 1);
    assert_eq!(w.count("[data-testid=thread-divider]"), 1);
    assert_eq!(w.text("[data-testid=follow]").as_deref(), Some("Following"));
    gloo::timers::future::TimeoutFuture::new(600).await;
    assert_eq!(w.sent_of("mark_thread_read"), 1, "one thread read");
    w.pump().await;
    assert_eq!(w.text("[data-testid=total-badge]"), None, "badge cleared");
    // A reply from the pane is a reply in the thread.
    type_into(&w, ".tally-thread textarea", "thanks").await;
    w.click(".tally-thread .tally-send").await;
    w.pump().await;
    assert_eq!(w.sent_of("reply_in_thread"), 1);
    assert_eq!(
        w.host.engine.projection().thread_head(dm, root),
        w.host.engine.projection().head(dm)
    );
}

fn keydown(w: &World, selector: &str, key: &str) {
    let init = web_sys::KeyboardEventInit::new();
    init.set_key(key);
    init.set_bubbles(true);
    init.set_cancelable(true);
    let event = web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap();
    w.root
        .query_selector(selector)
        .unwrap()
        .unwrap()
        .dispatch_event(&event)
        .unwrap();
}

#[wasm_bindgen_test]
async fn typing_at_offers_the_participants_by_name_and_a_choice_is_sent_as_a_range() {
    let mut w = World::new("t-picker").await;
    w.act(
        "alice",
        Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "Desk".into(),
            participants: vec![sid("bob"), sid("carol")],
        },
    );
    w.click(".tally-launcher").await;
    w.click(".tally-item[data-conversation='2']").await;
    // "@" lists everyone but me, and @here; "@ca" filters to Carol, by name, in any case.
    type_into(&w, "[data-testid=composer]", "ask @").await;
    assert_eq!(w.count("[data-testid=mention-list] [role=option]"), 3);
    type_into(&w, "[data-testid=composer]", "ask @Ca").await;
    assert_eq!(w.count("[data-testid=mention-list] [role=option]"), 1);
    let chosen = w.text("[role=option][aria-selected=true]").unwrap();
    assert!(chosen.contains("carol"), "{chosen:?}");
    // The keyboard chooses: Enter writes the name, and does not send.
    keydown(&w, "[data-testid=composer]", "Enter");
    settle().await;
    assert_eq!(composer_text(&w), "ask @carol ");
    assert_eq!(w.count("[data-testid=mention-list]"), 0);
    assert_eq!(w.sent_of("send_message"), 0);
    type_into(&w, "[data-testid=composer]", "ask @carol about @alice").await;
    w.click("[data-testid=send]").await;
    let sent = w
        .harness
        .sent
        .borrow()
        .iter()
        .rev()
        .find(|f| f.request.kind() == "send_message")
        .cloned()
        .unwrap();
    let Request::SendMessage { mention_ranges, .. } = sent.request else {
        unreachable!()
    };
    let who: Vec<_> = mention_ranges
        .iter()
        .map(|r| (r.start, r.end, r.staff.clone()))
        .collect();
    assert_eq!(
        who,
        vec![(4, 10, Some(sid("carol"))), (17, 23, Some(sid("alice")))]
    );
    w.pump().await;
    // Escape closes the list without leaving the conversation.
    type_into(&w, "[data-testid=composer]", "@").await;
    keydown(&w, "[data-testid=composer]", "Escape");
    settle().await;
    assert_eq!(w.count("[data-testid=mention-list]"), 0);
    assert_eq!(w.count("[data-testid=composer]"), 1);
}

#[wasm_bindgen_test]
async fn a_mention_of_me_is_highlighted_formatting_renders_and_html_stays_text() {
    let mut w = World::new("t-format").await;
    w.act(
        "alice",
        send(
            ConversationId(1),
            "f1",
            "**Ship** it, @bob: `make release`\n- one\n- two <b>no</b>",
        ),
    );
    w.click(".tally-launcher").await;
    w.click(".tally-item[data-conversation='1']").await;
    assert_eq!(w.text(".tally-text strong").as_deref(), Some("Ship"));
    assert_eq!(w.text(".tally-text code").as_deref(), Some("make release"));
    assert_eq!(w.count(".tally-text li"), 2);
    assert_eq!(w.count(".tally-text b"), 0, "HTML in a message is text");
    assert!(w.text(".tally-text li:last-child").unwrap().contains("<b>no</b>"));
    assert_eq!(w.text(".tally-mention-me").as_deref(), Some("@bob"));
}

#[wasm_bindgen_test]
async fn a_reaction_shows_for_everyone_and_changes_no_count() {
    let mut w = World::new("t-react").await;
    w.act("alice", send(ConversationId(1), "r1", "lunch?"));
    let id = tally_shared::MessageId(1);
    let mid = w.host.engine.projection().head(ConversationId(1)).unwrap();
    assert_eq!(mid.0, 1);
    // Alice reacts: Bob's badge stays as it was.
    settle().await;
    let badge = w.text("[data-testid=total-badge]");
    assert_eq!(badge.as_deref(), Some("1"));
    w.act(
        "alice",
        Request::AddReaction {
            message: id,
            emoji: "🎉".into(),
        },
    );
    settle().await;
    assert_eq!(w.text("[data-testid=total-badge]"), badge);
    w.click(".tally-launcher").await;
    w.click(".tally-item[data-conversation='1']").await;
    w.pump().await;
    assert_eq!(w.count("[data-testid=reactions] .tally-reaction"), 1);
    // Bob adds 👍 from the menu's quick row, then presses Alice's 🎉 to join it.
    w.click(".tally-menu-button").await;
    w.click("[data-testid=quick-reaction]").await;
    w.pump().await;
    w.click(".tally-reaction[data-emoji='🎉']").await;
    w.pump().await;
    let counts: Vec<String> = (0..2)
        .map(|i| {
            let b: web_sys::Element = w
                .root
                .query_selector_all(".tally-reaction")
                .unwrap()
                .item(i)
                .unwrap()
                .unchecked_into();
            format!(
                "{}{}",
                b.get_attribute("data-emoji").unwrap(),
                b.get_attribute("data-count").unwrap()
            )
        })
        .collect();
    assert_eq!(counts, vec!["🎉2", "👍1"]);
    assert_eq!(w.count(".tally-reaction-mine"), 2);
    // The full picker offers more, and takes mine off when pressed again.
    w.click(".tally-menu-button").await;
    w.click("[data-testid=more-reactions]").await;
    assert_eq!(w.count("[data-testid=emoji-picker]"), 1);
    w.click("[data-testid=emoji-picker] .tally-emoji[aria-pressed=true]")
        .await;
    w.pump().await;
    assert_eq!(w.count("[data-testid=emoji-picker]"), 0);
    assert_eq!(w.count(".tally-reaction-mine"), 1);
    assert_eq!(
        w.text("[data-testid=total-badge]"),
        None,
        "read on opening; reactions never counted"
    );
}

/// A key pressed on `target`, with modifiers (`c`trl, `a`lt, `s`hift in `mods`).
fn press_on(target: &web_sys::EventTarget, key: &str, mods: &str) -> bool {
    let init = web_sys::KeyboardEventInit::new();
    init.set_key(key);
    init.set_bubbles(true);
    init.set_cancelable(true);
    init.set_composed(true);
    init.set_ctrl_key(mods.contains('c'));
    init.set_alt_key(mods.contains('a'));
    init.set_shift_key(mods.contains('s'));
    let event = web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap();
    target.dispatch_event(&event).unwrap();
    event.default_prevented()
}

#[wasm_bindgen_test]
async fn the_keyboard_switches_conversations_moves_through_unreads_and_escape_reads_and_closes() {
    let mut w = World::new("t-keys").await;
    w.act(
        "alice",
        Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "Desk".into(),
            participants: vec![sid("bob"), sid("carol")],
        },
    );
    w.act("alice", send(ConversationId(1), "a1", "are you in?"));
    w.act("alice", send(ConversationId(2), "a2", "desk at nine"));
    w.harness.dispatch(Action::Directory(
        ["alice", "bob", "carol"]
            .map(|s| Staff {
                id: sid(s),
                name: s.to_uppercase(),
            })
            .to_vec(),
    ));
    w.pump().await;
    // A host page's own text field keeps its keys: Ctrl+K there does nothing.
    let field = gloo::utils::document().create_element("input").unwrap();
    gloo::utils::document()
        .body()
        .unwrap()
        .append_child(&field)
        .unwrap();
    assert!(!press_on(&field, "k", "c"));
    settle().await;
    assert_eq!(w.count(".tally-panel"), 0);
    // Elsewhere Ctrl+K opens the panel on the switcher: unread first, and Carol, with whom
    // Bob has no conversation yet, after them. (Pressed on this widget's launcher: the other
    // tests' widgets are still on this page, and a key outside every widget is the first's.)
    let launcher: web_sys::EventTarget = w.root.query_selector(".tally-launcher").unwrap().unwrap().into();
    assert!(press_on(&launcher, "k", "c"));
    settle().await;
    assert_eq!(w.count("[data-testid=switcher-input]"), 1);
    let targets = || {
        let list = w
            .root
            .query_selector_all("[data-testid=switcher-option]")
            .unwrap();
        (0..list.length())
            .map(|i| {
                let e: web_sys::Element = list.item(i).unwrap().unchecked_into();
                e.get_attribute("data-target").unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(targets(), ["2", "1", "carol"]);
    // By name, from the keyboard: ↓ and Enter open the chosen one.
    type_into(&w, "[data-testid=switcher-input]", "a").await;
    assert_eq!(
        targets(),
        ["1", "carol"],
        "ALICE and CAROL have an a; Desk has not"
    );
    keydown(&w, "[data-testid=switcher-input]", "ArrowDown");
    settle().await;
    assert_eq!(
        w.root
            .query_selector("[role=option][aria-selected=true]")
            .unwrap()
            .unwrap()
            .get_attribute("data-target")
            .as_deref(),
        Some("carol")
    );
    keydown(&w, "[data-testid=switcher-input]", "Enter");
    w.pump().await;
    assert_eq!(w.count("[data-testid=switcher-input]"), 0);
    assert_eq!(w.sent_of("create_direct"), 1);
    let root = w.root.clone();
    let open = move || {
        root.query_selector(".tally-conversation")
            .unwrap()
            .and_then(|c| c.get_attribute("data-conversation"))
    };
    assert_eq!(open().as_deref(), Some("3"), "the new conversation with Carol");
    // Alt+Shift+↓ goes to the next unread conversation (wrapping), from inside the widget.
    let composer: web_sys::EventTarget = w
        .root
        .query_selector("[data-testid=composer]")
        .unwrap()
        .unwrap()
        .into();
    assert!(press_on(&composer, "ArrowDown", "as"));
    w.pump().await;
    let first = open().unwrap();
    assert!(first == "1" || first == "2", "{first}");
    // Escape reads it whole and goes back to the list, whose row for it has the focus.
    let total = |w: &World| w.text("[data-testid=total-badge]");
    keydown(&w, "[data-testid=composer]", "Escape");
    w.pump().await;
    assert_eq!(open(), None);
    assert_eq!(w.count(".tally-panel"), 1, "the panel stays");
    let focused = tally_frontend::util::active_element().and_then(|e| e.get_attribute("data-conversation"));
    assert_eq!(focused.as_deref(), Some(first.as_str()));
    // Alt+↑ from the list opens the conversation above the focused row's one… the list's
    // order is the newest first; Alt+Shift+↑ finds the one unread left.
    let list: web_sys::EventTarget = w.root.query_selector(".tally-list").unwrap().unwrap().into();
    assert!(press_on(&list, "ArrowUp", "as"));
    w.pump().await;
    let second = open().unwrap();
    assert_ne!(second, first);
    keydown(&w, "[data-testid=composer]", "Escape");
    w.pump().await;
    assert_eq!(total(&w), None, "both read by Escape");
    assert!(w.sent_of("mark_conversation_read") >= 1);
    // A second Escape, on the list, closes the panel; the help opens from Ctrl+/.
    keydown(&w, ".tally-list", "Escape");
    settle().await;
    assert_eq!(w.count(".tally-panel"), 0);
    let launcher: web_sys::EventTarget = w.root.query_selector(".tally-launcher").unwrap().unwrap().into();
    assert!(press_on(&launcher, "/", "c"));
    settle().await;
    assert_eq!(w.count("[data-testid=shortcuts] .tally-shortcut"), 8);
    field.remove();
}
