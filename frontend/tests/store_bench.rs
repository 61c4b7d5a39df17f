//! A benchmark, not a test (ignored unless asked for): what one `message_created` frame costs the
//! mounted widget (its chatStore reducer and the render it schedules) when the store already
//! holds 100, 5,000 or 20,000 loaded messages. Run in release, in headless Chromium:
//!
//! ```sh
//! CHROMEDRIVER=/usr/bin/chromedriver cargo test -p tally-frontend --target wasm32-unknown-unknown \
//!   --release --test store_bench -- --include-ignored --nocapture
//! ```
#![cfg(target_arch = "wasm32")]

use std::rc::Rc;

use tally_frontend::app::{App, AppProps, Harness};
use tally_frontend::options::MountOptions;
use tally_shared::memory::MemoryHost;
use tally_shared::protocol::ServerFrame;
use tally_shared::{ClientMsgId, ConversationId, Millis, Request, Staff, StaffId};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn sid(s: &str) -> StaffId {
    StaffId::new(s).unwrap()
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

async fn settle() {
    gloo::timers::future::TimeoutFuture::new(40).await;
}

/// A widget signed in as bob whose store holds `loaded` messages, in conversations of 200.
async fn widget(loaded: usize) -> (MemoryHost, Harness, Vec<ConversationId>, u64) {
    let staff: Vec<Staff> = ["alice", "bob"]
        .iter()
        .map(|s| Staff {
            id: sid(s),
            name: s.to_uppercase(),
        })
        .collect();
    let mut host = MemoryHost::with_staff(&staff);
    let mut clock = 1;
    let mut conversations = Vec::new();
    let mut sent = 0;
    while sent < loaded || conversations.is_empty() {
        clock += 1;
        let group = Request::CreateGroup {
            client_id: ClientMsgId::new(format!("g{clock}")).unwrap(),
            title: format!("Group {clock}"),
            participants: vec![sid("bob")],
        };
        let c = host
            .execute(&sid("alice"), &group, Millis(clock))
            .unwrap()
            .ack
            .conversation
            .unwrap();
        conversations.push(c);
        for _ in 0..200.min(loaded.saturating_sub(sent)) {
            clock += 1;
            sent += 1;
            let send = Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id: ClientMsgId::new(format!("m{clock}")).unwrap(),
                conversation: c,
                body: "A message of ordinary length, about as long as people write them.".into(),
                attachments: vec![],
                reply_to: None,
            };
            host.execute(&sid("alice"), &send, Millis(clock)).unwrap();
        }
    }
    let root = gloo::utils::document().create_element("div").unwrap();
    gloo::utils::document()
        .body()
        .unwrap()
        .append_child(&root)
        .unwrap();
    let harness = Harness::default();
    let options = Rc::new(MountOptions {
        storage_key: Some(format!("bench.{loaded}")),
        title_badge: Some(false),
        ..Default::default()
    });
    yew::Renderer::<App>::with_root_and_props(
        root,
        AppProps {
            options,
            harness: Some(harness.clone()),
            handle: None,
        },
    )
    .render();
    settle().await;
    harness.deliver(ServerFrame::Snapshot(Box::new(host.snapshot(&sid("bob")))));
    settle().await;
    (host, harness, conversations, clock)
}

#[wasm_bindgen_test]
#[ignore]
async fn message_created_per_frame_at_100_5000_and_20000_loaded_messages() {
    const FRAMES: usize = 10_000;
    for loaded in [100, 5_000, 20_000] {
        let (mut host, harness, conversations, mut clock) = widget(loaded).await;
        let groups = conversations.len();
        // The frames, made before the clock starts.
        let mut frames = Vec::with_capacity(FRAMES);
        for i in 0..FRAMES {
            clock += 1;
            let send = Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id: ClientMsgId::new(format!("n{i}")).unwrap(),
                conversation: conversations[i % conversations.len()],
                body: "Another one.".into(),
                attachments: vec![],
                reply_to: None,
            };
            let outcome = host.execute(&sid("alice"), &send, Millis(clock)).unwrap();
            frames.extend(outcome.applied.into_iter().map(|a| ServerFrame::Event(a.event)));
        }
        // In chunks, yielding between them (untimed) so that the page stays responsive to the
        // test runner: each delivery runs the reducer and the render it causes.
        let mut applied = 0.0;
        let mut frames = frames.into_iter().peekable();
        while frames.peek().is_some() {
            let started = now_ms();
            for f in frames.by_ref().take(250) {
                harness.deliver(f);
            }
            applied += now_ms() - started;
            gloo::timers::future::TimeoutFuture::new(0).await;
        }
        web_sys::console::log_1(
            &format!(
                "store_bench: {loaded} loaded: {FRAMES} message_created frames in {applied:.0} ms \
                 ({:.1} µs per frame)",
                applied * 1000.0 / FRAMES as f64
            )
            .into(),
        );
        settle().await;
        // The widget counted every frame: its launcher says so.
        let label = gloo::utils::document()
            .query_selector_all(".tally-launcher")
            .unwrap()
            .item(loaded_index(loaded))
            .and_then(|n| wasm_bindgen::JsCast::dyn_into::<web_sys::Element>(n).ok())
            .and_then(|e| e.get_attribute("aria-label"))
            .unwrap_or_default();
        // Each group's `created` notice counts too.
        let unread = loaded + FRAMES + groups;
        assert_eq!(label, format!("Messages, {unread} unread"), "bench at {loaded}");
    }
}

/// The position of the widget made for `loaded` (one per size, in order).
fn loaded_index(loaded: usize) -> u32 {
    match loaded {
        100 => 0,
        5_000 => 1,
        _ => 2,
    }
}
