//! Random interleavings of every write and read path for several staff and conversations. After
//! every step, the relay's projection, each staff member's browser store, and the naive oracle
//! must agree (invariants 1 and 2 of docs/semantics.md); each store that starts over from a fresh
//! snapshot must equal the one that applied the events (invariant 7); and replays change
//! nothing.
//!
//! `PROPTEST_CASES` (default 1000) and `TALLY_PROPTEST_STEPS` (default 200) set the size.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tally_shared::Request;
use tally_shared::protocol::{ServerFrame, UnreadUpdate};
use tally_shared::sim::{Op, STAFF, World};

fn op() -> impl Strategy<Value = Op> {
    let who = 0..STAFF.len();
    prop_oneof![
        2 => (who.clone(), who.clone()).prop_map(|(a, b)| Op::CreateDirect(a, b)),
        1 => (who.clone(), any::<u8>()).prop_map(|(a, m)| Op::CreateGroup(a, m)),
        12 => (who.clone(), 0..16usize, any::<u8>(), proptest::option::of(0..64usize), proptest::bool::weighted(0.1))
            .prop_map(|(who, conv, mentions, reply, attach)| Op::Send { who, conv, mentions, reply, attach }),
        1 => who.clone().prop_map(|who| Op::Resend { who }),
        2 => (who.clone(), 0..64usize, 0..16usize).prop_map(|(who, msg, to)| Op::Forward { who, msg, to }),
        2 => (who.clone(), 0..64usize).prop_map(|(who, msg)| Op::Edit { who, msg }),
        3 => (who.clone(), 0..64usize).prop_map(|(who, msg)| Op::Delete { who, msg }),
        1 => (who.clone(), 0..16usize).prop_map(|(who, conv)| Op::Rename { who, conv }),
        2 => (who.clone(), 0..16usize, any::<u8>()).prop_map(|(who, conv, staff)| Op::Add { who, conv, staff }),
        1 => (who.clone(), 0..16usize, who.clone()).prop_map(|(who, conv, staff)| Op::Remove { who, conv, staff }),
        2 => (who.clone(), 0..16usize, any::<bool>()).prop_map(|(who, conv, muted)| Op::Mute { who, conv, muted }),
        5 => (who.clone(), 0..16usize, 0..80u64).prop_map(|(who, conv, up_to)| Op::MarkRead { who, conv, up_to }),
        2 => (who.clone(), 0..16usize).prop_map(|(who, conv)| Op::MarkConversationRead { who, conv }),
        1 => who.clone().prop_map(|who| Op::MarkAllRead { who }),
        3 => (who.clone(), 0..16usize, 0..80u64).prop_map(|(who, conv, from)| Op::MarkUnread { who, conv, from }),
        6 => (who.clone(), 0..64usize, any::<u8>(), proptest::bool::weighted(0.1))
            .prop_map(|(who, root, mentions, attach)| Op::Reply { who, root, mentions, attach }),
        3 => (who.clone(), 0..64usize, proptest::option::of(0..40u64))
            .prop_map(|(who, root, up_to)| Op::ReadThread { who, root, up_to }),
        2 => (who.clone(), 0..64usize, 0..40u64).prop_map(|(who, root, from)| Op::ThreadUnread { who, root, from }),
        2 => (who.clone(), 0..64usize, any::<bool>()).prop_map(|(who, root, follow)| Op::Follow { who, root, follow }),
        4 => (who.clone(), 0..64usize, any::<u8>(), any::<bool>())
            .prop_map(|(who, msg, emoji, add)| Op::React { who, msg, emoji, add }),
        1 => (who.clone(), 0..16usize, any::<bool>()).prop_map(|(who, conv, allowed)| Op::Everyone { who, conv, allowed }),
        1 => who.clone().prop_map(|who| Op::Reconnect { who }),
        1 => Just(Op::Replay),
        1 => Just(Op::Restart),
        3 => (any::<u8>(), who.clone(), who.clone(), 0..16usize, any::<u8>())
            .prop_map(|(what, a, b, conv, bad)| Op::Service { what, a, b, conv, bad }),
    ]
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn projection_store_and_oracle_agree_on_every_path() {
    let cases = env_or("PROPTEST_CASES", 1000);
    let steps = env_or("TALLY_PROPTEST_STEPS", 200) as usize;
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), steps..=steps), |ops| {
            let mut world = World::new();
            for op in &ops {
                world.step(op);
                world.check();
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn unread_updated_is_a_checkpoint_that_repairs() {
    let mut world = World::new();
    world.step(&Op::CreateDirect(0, 1));
    world.step(&Op::Send {
        who: 0,
        conv: 0,
        mentions: 0,
        reply: None,
        attach: false,
    });
    let c = world.conv(0);
    let bob = &mut world.stores[1];
    assert_eq!(bob.counts(c).unread, 1);
    let fx = bob.apply(ServerFrame::UnreadUpdated(UnreadUpdate {
        thread: None,
        offset: bob.applied(),
        conversation: c,
        unread: 7,
        mentions: 0,
        total: tally_shared::Totals {
            unread: 7,
            mentions: 0,
        },
        digest: None,
    }));
    assert!(fx.divergence.is_some());
    assert_eq!(bob.divergences(), 1);
    assert_eq!(bob.counts(c).unread, 7, "the relay's figure is taken");
    // The divergence is reported for the operator, and a snapshot asked for.
    assert!(matches!(fx.send[0].request, Request::ReportDivergence { .. }));
    assert!(matches!(fx.send[1].request, Request::RequestSnapshot));
}

/// Found by CI: a delete of a message old enough to be outside every recipient's snapshot
/// (the 50 most recent per conversation), already read by everyone, changes nothing any store
/// can see. That is right, and the simulation must not call it a lost event.
#[test]
fn deleting_a_read_message_no_store_holds_changes_no_store() {
    let mut world = World::new();
    world.step(&Op::CreateDirect(0, 1));
    let send = Op::Send {
        who: 0,
        conv: 0,
        mentions: 0,
        reply: None,
        attach: false,
    };
    for _ in 0..=tally_shared::limits::SNAPSHOT_RECENT_MESSAGES {
        world.step(&send);
    }
    world.step(&Op::MarkConversationRead { who: 1, conv: 0 });
    world.step(&Op::Reconnect { who: 0 });
    world.step(&Op::Reconnect { who: 1 });
    world.check();
    world.step(&Op::Delete { who: 0, msg: 0 });
    world.check();
}
