//! Typing indicators: relayed to the conversation's other participants only, never stored or
//! replayed, refused for outsiders, and held to their own rate budget.

mod common;

use common::*;
use tally_shared::protocol::ServerFrame;
use tally_shared::{ErrorCode, Request};

fn is_typing(f: &ServerFrame) -> bool {
    matches!(f, ServerFrame::Typing { .. })
}

#[tokio::test]
async fn typing_reaches_the_other_participants_only_and_is_never_stored() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let mut alice = relay.connect("alice").await;
    let mut alice2 = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    let mut carol = relay.connect("carol").await;
    let dm = alice.direct_with("bob").await;
    for c in [&mut alice2, &mut bob, &mut carol] {
        c.sync().await;
    }
    let before = alice.call(Request::Ping).await.unwrap().offset;

    alice.call(Request::Typing { conversation: dm }).await.unwrap();
    let got = bob.until(is_typing).await;
    assert_eq!(
        got,
        ServerFrame::Typing {
            conversation: dm,
            staff: sid("alice")
        }
    );
    // Not to the typist's own other tab, nor to someone outside the conversation.
    for c in [&mut alice2, &mut carol] {
        c.sync().await;
        assert!(!c.frames.iter().any(is_typing), "{:?}", c.frames);
    }
    // Nothing was logged: the offset did not move, and a resume replays no typing.
    assert_eq!(alice.call(Request::Ping).await.unwrap().offset, before);
    let resumed = Client::connect(relay.addr, &relay.token("bob"), Some(tally_shared::Offset(0))).await;
    assert!(!resumed.frames.iter().any(is_typing));

    // An outsider learns nothing and is told no.
    let refused = carol
        .call(Request::Typing { conversation: dm })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotParticipant);
    let unknown = tally_shared::ConversationId(999);
    let refused = carol
        .call(Request::Typing {
            conversation: unknown,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotFound);
    bob.sync().await;
    assert_eq!(bob.frames.iter().filter(|f| is_typing(f)).count(), 1);
}

#[tokio::test]
async fn typing_has_its_own_budget() {
    let relay = Relay::start_with(&["alice", "bob"], |c| {
        c.limits.typing_per_sec = 1.0;
        c.limits.typing_burst = 5.0;
    })
    .await;
    let mut alice = relay.connect("alice").await;
    let dm = alice.direct_with("bob").await;
    for _ in 0..5 {
        alice.call(Request::Typing { conversation: dm }).await.unwrap();
    }
    let refused = alice
        .call(Request::Typing { conversation: dm })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited);
    // Sends are not slowed by it.
    alice.call(numbered_send(dm, 1).request).await.unwrap();
}
