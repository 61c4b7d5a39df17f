//! Presence: announced to the people one shares a conversation with (and no one else), at
//! most once a second, `away` when every tab is hidden, `offline` when none is open; a new
//! session learns who is here right after its snapshot. Never logged.

mod common;

use common::*;
use tally_shared::Request;
use tally_shared::protocol::{Presence, ServerFrame};

fn presence_of(f: &ServerFrame, who: &str) -> Option<Presence> {
    match f {
        ServerFrame::Presence { staff, presence, .. } if staff.as_str() == who => Some(*presence),
        _ => None,
    }
}

/// Whether a client has received this presence of `who`.
fn saw(c: &Client, who: &str, presence: Presence) -> bool {
    c.frames.iter().any(|f| presence_of(f, who) == Some(presence))
}

/// Waits for `who`'s next presence frame.
async fn next_presence(c: &mut Client, who: &str) -> Presence {
    let f = c.until(|f| presence_of(f, who).is_some()).await;
    presence_of(&f, who).unwrap()
}

#[tokio::test]
async fn presence_goes_to_people_who_share_a_conversation_and_follows_tabs() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let mut bob = relay.connect("bob").await;
    let mut carol = relay.connect("carol").await;
    let mut alice = relay.connect("alice").await;
    let dm = alice
        .call(Request::CreateDirect { staff: sid("bob") })
        .await
        .unwrap();
    let before = dm.offset;
    // Alice is here: Bob hears it (within a tick), Carol, who shares nothing with her, does not.
    assert_eq!(next_presence(&mut bob, "alice").await, Presence::Online);
    // Her only tab is hidden: away; shown again: online.
    alice.call(Request::Visibility { visible: false }).await.unwrap();
    assert_eq!(next_presence(&mut bob, "alice").await, Presence::Away);
    alice.call(Request::Visibility { visible: true }).await.unwrap();
    assert_eq!(next_presence(&mut bob, "alice").await, Presence::Online);
    // A second, hidden tab changes nothing: one visible tab is enough.
    let mut alice2 = relay.connect("alice").await;
    alice2.call(Request::Visibility { visible: false }).await.unwrap();
    // Bob, reconnecting, learns who is here right after his snapshot.
    let mut bob2 = relay.connect("bob").await;
    let first = bob2
        .frames
        .iter()
        .position(|f| matches!(f, ServerFrame::Snapshot(_)));
    assert_eq!(next_presence(&mut bob2, "alice").await, Presence::Online);
    assert!(first.is_some(), "the snapshot came first");
    // Both of Alice's tabs close: offline.
    drop(alice);
    drop(alice2);
    assert_eq!(next_presence(&mut bob, "alice").await, Presence::Offline);
    carol.sync().await;
    assert!(
        !carol.frames.iter().any(|f| presence_of(f, "alice").is_some()),
        "{:?}",
        carol.frames
    );
    // Nothing of it was logged.
    assert_eq!(bob.call(Request::Ping).await.unwrap().offset, before);
}

#[tokio::test]
async fn people_who_come_to_share_a_conversation_learn_each_others_presence_at_once() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    let mut carol = relay.connect("carol").await;
    // Let a tick announce them while they share nothing: nobody hears.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    alice
        .call(Request::CreateDirect { staff: sid("bob") })
        .await
        .unwrap();
    assert_eq!(next_presence(&mut bob, "alice").await, Presence::Online);
    // Alice's came before the ack of her own request.
    assert!(saw(&alice, "bob", Presence::Online));
    // Carol joins a group with Alice: each learns of the other.
    let group = alice
        .call(Request::CreateGroup {
            client_id: tally_shared::ClientMsgId::new("g").unwrap(),
            title: "Desk".into(),
            participants: vec![],
        })
        .await
        .unwrap()
        .conversation
        .unwrap();
    alice
        .call(Request::AddParticipants {
            conversation: group,
            staff: vec![sid("carol")],
        })
        .await
        .unwrap();
    assert_eq!(next_presence(&mut carol, "alice").await, Presence::Online);
    assert!(saw(&alice, "carol", Presence::Online));
}
