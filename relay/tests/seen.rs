//! "Seen": the relay shares participants' watermarks with the others in each conversation
//! (live, after a snapshot, after a resume), never with outsiders, and honours the preference
//! to hide one's read state, across tabs and restarts.

mod common;

use common::*;
use tally_shared::protocol::ServerFrame;
use tally_shared::{Request, Seq};

fn is_seen(f: &ServerFrame) -> bool {
    matches!(f, ServerFrame::Seen { .. })
}

#[tokio::test]
async fn seen_moves_when_the_other_person_reads_and_outsiders_hear_nothing() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    let mut carol = relay.connect("carol").await;
    let dm = alice.direct_with("bob").await;
    alice.call(send(dm, "a1", "hello")).await.unwrap();
    alice.call(send(dm, "a2", "hello")).await.unwrap();
    bob.sync().await;
    assert_eq!(alice.store.seen_marker(dm), None);

    bob.call(Request::MarkRead {
        conversation: dm,
        up_to: Seq(1),
    })
    .await
    .unwrap();
    until_marker(&mut alice, dm, Some(Seq(1))).await;
    bob.call(Request::MarkConversationRead { conversation: dm })
        .await
        .unwrap();
    until_marker(&mut alice, dm, Some(Seq(2))).await;

    // A second tab of alice's, fresh or resumed, knows it from the start.
    let mut fresh = relay.connect("alice").await;
    fresh.sync().await;
    assert_eq!(fresh.store.seen_marker(dm), Some(Seq(2)));
    let offset = alice.call(Request::Ping).await.unwrap().offset;
    let mut resumed = Client::connect_with_store(
        relay.addr,
        &relay.token("alice"),
        Some(offset),
        alice.store.clone(),
    )
    .await;
    resumed.sync().await;
    assert_eq!(resumed.store.seen_marker(dm), Some(Seq(2)));
    // So does one after a snapshot it asked for.
    resumed.call(Request::RequestSnapshot).await.unwrap();
    resumed.sync().await;
    assert_eq!(resumed.store.seen_marker(dm), Some(Seq(2)));

    carol.sync().await;
    assert!(!carol.frames.iter().any(is_seen), "{:?}", carol.frames);
}

#[tokio::test]
async fn hiding_ones_read_state_hides_it_from_others_and_theirs_from_one_across_tabs_and_restarts() {
    let mut relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    let mut bob2 = relay.connect("bob").await;
    let dm = alice.direct_with("bob").await;
    alice.call(send(dm, "a1", "hello")).await.unwrap();
    bob.call(send(dm, "b1", "hello")).await.unwrap();
    alice
        .call(Request::MarkConversationRead { conversation: dm })
        .await
        .unwrap();
    // Positions go out in their conversation's share of the second, a move or several at once.
    until_marker(&mut alice, dm, Some(Seq(1))).await;
    until_marker(&mut bob, dm, Some(Seq(2))).await;

    bob.call(Request::SetPreferences {
        hide_read_state: true,
    })
    .await
    .unwrap();
    until_marker(&mut alice, dm, None).await; // bob's position withdrawn
    bob.sync().await;
    assert!(bob.store.hides_read_state());
    assert_eq!(bob.store.seen_marker(dm), None, "and he sees nobody's");
    bob2.until(|f| {
        matches!(
            f,
            ServerFrame::Preferences {
                hide_read_state: true
            }
        )
    })
    .await;
    assert!(bob2.store.hides_read_state(), "his other tab knows");

    // Reads go on privately.
    alice.call(send(dm, "a2", "hello")).await.unwrap();
    bob.call(Request::MarkConversationRead { conversation: dm })
        .await
        .unwrap();
    alice
        .call(Request::MarkConversationRead { conversation: dm })
        .await
        .unwrap();
    for c in [&mut alice, &mut bob] {
        c.sync().await;
    }
    assert_eq!(alice.store.seen_marker(dm), None);
    assert_eq!(bob.store.seen_marker(dm), None);

    // The preference survives a restart.
    relay.stop().await;
    let relay = Relay::start_in(relay.dir, &["alice", "bob"], |_| {}).await;
    let mut alice = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    for c in [&mut alice, &mut bob] {
        c.sync().await;
    }
    assert!(bob.store.hides_read_state());
    assert_eq!(alice.store.seen_marker(dm), None);
    assert_eq!(bob.store.seen_marker(dm), None);

    // Sharing again brings both back at once.
    bob.call(Request::SetPreferences {
        hide_read_state: false,
    })
    .await
    .unwrap();
    until_marker(&mut alice, dm, Some(Seq(3))).await;
    until_marker(&mut bob, dm, Some(Seq(2))).await;
}

/// Reads `seen` frames until the client's marker in `conversation` is `want`.
async fn until_marker(c: &mut Client, conversation: tally_shared::ConversationId, want: Option<Seq>) {
    while c.store.seen_marker(conversation) != want {
        c.until(is_seen).await;
    }
}

#[tokio::test]
async fn read_positions_are_announced_at_most_once_a_tick_however_fast_they_move() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    let dm = alice.direct_with("bob").await;
    for i in 0..3 {
        alice.call(send(dm, &format!("a{i}"), "hello")).await.unwrap();
    }
    bob.sync().await;
    alice.sync().await;
    let before = alice.frames.iter().filter(|f| is_seen(f)).count();
    let started = std::time::Instant::now();
    // 80 watermark moves, as fast as the relay takes them.
    for _ in 0..40 {
        bob.call(Request::MarkUnread {
            conversation: dm,
            from: Seq(1),
        })
        .await
        .unwrap();
        bob.call(Request::MarkConversationRead { conversation: dm })
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    // Alice ends up knowing where he is...
    while alice.store.seen_marker(dm) != Some(Seq(3)) {
        alice.until(is_seen).await;
    }
    // ...having heard it about once a second, not 80 times.
    let heard = alice.frames.iter().filter(|f| is_seen(f)).count() - before;
    let ticks = elapsed.as_secs() as usize + 2;
    assert!(heard <= ticks, "{heard} seen frames in {elapsed:?}");
}
