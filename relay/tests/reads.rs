//! Snapshots are built off the core thread, at the core's state: a staff member who connects,
//! or asks for a snapshot, while writes keep flowing must end up exactly where the events after
//! the snapshot take them, with no divergence, however the snapshot and the events interleave.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use tally_shared::protocol::encode;
use tally_shared::{ClientFrame, ClientMsgId, Request, Seq};

#[tokio::test]
async fn snapshots_taken_while_writes_flow_agree_with_the_events_after_them() {
    let mut args = UNLIMITED.to_vec();
    args.extend(["--snapshots-per-sec", "1e9", "--snapshot-burst", "1e9"]);
    let relay = Binary::serve(&["alice", "bob", "carol"], &args, None);
    let mut alice = relay.connect("alice").await;
    let group = alice
        .call(Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "Desk".into(),
            participants: vec![sid("bob"), sid("carol")],
        })
        .await
        .unwrap()
        .conversation
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Bob's tabs, connecting one after another while Alice writes: each reads every frame,
    // asks for snapshots and moves his watermark now and then.
    let mut tabs = Vec::new();
    for tab in 0..4u64 {
        let (addr, token, stop) = (relay.addr, relay.token("bob"), stop.clone());
        tabs.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(40 * tab)).await;
            let mut bob = Client::connect(addr, &token, None).await;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let request = match n % 97 {
                    0 => Some(Request::RequestSnapshot),
                    31 => Some(Request::MarkConversationRead { conversation: group }),
                    63 => Some(Request::MarkUnread {
                        conversation: group,
                        from: Seq(n / 4 + 1),
                    }),
                    _ => None,
                };
                if let Some(r) = request {
                    bob.send_text(encode(&ClientFrame::with_req(n, r))).await;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), bob.next()).await;
            }
            bob.sync().await;
            bob
        }));
    }
    for round in 0..12 {
        let mut acks = Vec::new();
        for i in 0..40 {
            let body = if i % 5 == 0 {
                format!("@bob look {round}/{i}")
            } else {
                format!("{round}/{i}")
            };
            let ack = alice
                .call(Request::SendMessage {
                    mention_ranges: Vec::new(),
                    client_id: ClientMsgId::new(format!("m-{round}-{i}")).unwrap(),
                    conversation: group,
                    body,
                    attachments: vec![],
                    reply_to: None,
                })
                .await
                .unwrap();
            acks.push(ack);
        }
        for ack in acks.iter().step_by(7) {
            alice
                .call(Request::DeleteMessage {
                    message: ack.message.unwrap(),
                })
                .await
                .unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut bobs = Vec::new();
    for tab in tabs {
        bobs.push(tab.await.unwrap());
    }
    let fresh = relay.connect("bob").await;
    for bob in bobs {
        assert_eq!(bob.store.divergences(), 0);
        assert_eq!(bob.store.counts(group), fresh.store.counts(group));
        assert_eq!(bob.store.last_read(group), fresh.store.last_read(group));
        assert_eq!(bob.store.total(), fresh.store.total());
        assert_eq!(bob.store.digest(), fresh.store.digest());
    }
    assert_eq!(relay.metric("tally_client_divergences_total").await, 0);
}
