//! The browser store's behaviours that the property test does not drive: the outbox's age
//! limit and the redaction of quotes when a quoted message is deleted.

use tally_shared::memory::MemoryHost;
use tally_shared::store::PendingSend;
use tally_shared::{
    ChatStore, ClientMsgId, ConversationId, Millis, Request, ServerFrame, Staff, StaffId, limits,
};

fn sid(s: &str) -> StaffId {
    StaffId::new(s).unwrap()
}

fn pending(id: &str, queued_at: Option<u64>) -> PendingSend {
    PendingSend {
        client_id: ClientMsgId::new(id).unwrap(),
        conversation: ConversationId(1),
        body: "hi".into(),
        attachments: vec![],
        reply_to: None,
        failed: None,
        queued_at: queued_at.map(Millis),
    }
}

#[test]
fn a_send_older_than_the_relays_memory_of_client_ids_is_not_resent_by_itself() {
    let now = 30 * 24 * 3600 * 1000;
    let week = limits::CLIENT_ID_RETENTION_MS;
    let mut store = ChatStore::with_outbox(vec![
        pending("fresh", Some(now - 3600 * 1000)),
        pending("stale", Some(now - week)),
        pending("unknown-age", None),
    ]);
    let resent: Vec<_> = store
        .resend_outbox(Millis(now))
        .into_iter()
        .map(|f| match f.request {
            Request::SendMessage { client_id, .. } => client_id.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(resent, ["fresh", "unknown-age"]);
    let stale = store
        .outbox()
        .iter()
        .find(|p| p.client_id.as_str() == "stale")
        .unwrap();
    assert!(stale.failed.is_some(), "waits for the person instead");
    // The person may still send it again.
    assert!(store.retry(&stale.client_id.clone()).is_some());
}

#[test]
fn deleting_a_quoted_message_redacts_its_quotes_in_the_store_and_in_a_fresh_snapshot() {
    let staff = [
        Staff {
            id: sid("alice"),
            name: "A".into(),
        },
        Staff {
            id: sid("bob"),
            name: "B".into(),
        },
    ];
    let mut host = MemoryHost::with_staff(&staff);
    let dm = host
        .execute(
            &sid("alice"),
            &Request::CreateDirect { staff: sid("bob") },
            Millis(1),
        )
        .unwrap()
        .ack
        .conversation
        .unwrap();
    let send = |id: &str, body: &str, reply_to| Request::SendMessage {
        client_id: ClientMsgId::new(id).unwrap(),
        conversation: dm,
        body: body.into(),
        attachments: vec![],
        reply_to,
    };
    let quoted = host
        .execute(&sid("alice"), &send("a", "door code 4711", None), Millis(2))
        .unwrap();
    host.execute(&sid("bob"), &send("b", "ok", quoted.ack.message), Millis(3))
        .unwrap();
    let mut store = ChatStore::new();
    store.apply(ServerFrame::Snapshot(Box::new(host.snapshot(&sid("bob")))));
    let delete = Request::DeleteMessage {
        message: quoted.ack.message.unwrap(),
    };
    for a in host.execute(&sid("alice"), &delete, Millis(4)).unwrap().applied {
        store.apply(ServerFrame::Event(a.event));
    }
    let quote = |messages: &[tally_shared::Message]| messages.last().unwrap().reply_to.clone().unwrap();
    let live = quote(&store.conversation(dm).unwrap().messages);
    assert!(live.deleted && live.excerpt.is_empty(), "{live:?}");
    let fresh = host.snapshot(&sid("bob"));
    let state = fresh
        .conversations
        .iter()
        .find(|c| c.conversation.id == dm)
        .unwrap();
    assert_eq!(
        quote(&state.messages),
        live,
        "the store and a fresh snapshot agree"
    );
}
