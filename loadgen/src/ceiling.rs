//! The ceiling: the least a fan-out server can do with the same frames (each encoded once and
//! shared by its recipients, on the relay's transport settings). No authentication, no
//! validation, no storage, no counts: `hello` names the staff member, `send_message` is
//! stamped and sent to every member of its conversation, and acknowledged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tally_shared::protocol::{Ack, Event, LoggedEvent, ServerFrame, decode_client_frame, encode};
use tally_shared::{ConversationId, Message, MessageId, Millis, Offset, Request, Seq, StaffId};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};

type Members = HashMap<ConversationId, Vec<StaffId>>;

struct State {
    members: Members,
    conns: Mutex<HashMap<StaffId, Vec<mpsc::UnboundedSender<Utf8Bytes>>>>,
    offset: AtomicU64,
    seqs: Mutex<HashMap<ConversationId, u64>>,
}

pub(crate) async fn serve(members: Members) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("ceiling listening on http://{}", listener.local_addr()?);
    let state = Arc::new(State {
        members,
        conns: Mutex::default(),
        offset: AtomicU64::new(0),
        seqs: Mutex::default(),
    });
    loop {
        let (tcp, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            // The relay's transport settings, so that both pay the same per connection.
            let config = tally_relay::session::websocket_config();
            let _ = tcp.set_nodelay(true);
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
            tokio::spawn(async move {
                while let Some(text) = rx.recv().await {
                    if sink.send(WsMessage::Text(text)).await.is_err() {
                        break;
                    }
                }
            });
            let mut me: Option<StaffId> = None;
            while let Some(Ok(msg)) = stream.next().await {
                let WsMessage::Text(text) = msg else { continue };
                let Ok(frame) = decode_client_frame(&text) else {
                    continue;
                };
                match frame.request {
                    Request::Hello { token, .. } => {
                        let Ok(id) = StaffId::new(token) else { return };
                        state
                            .conns
                            .lock()
                            .unwrap()
                            .entry(id.clone())
                            .or_default()
                            .push(tx.clone());
                        me = Some(id);
                        let _ = tx.send(
                            encode(&ServerFrame::Resumed {
                                offset: Offset(0),
                                protocols: None,
                            })
                            .into(),
                        );
                    }
                    Request::SendMessage {
                        client_id,
                        conversation,
                        body,
                        ..
                    } => {
                        let Some(sender) = me.clone() else { continue };
                        let offset = state.offset.fetch_add(1, Ordering::Relaxed) + 1;
                        let seq = {
                            let mut seqs = state.seqs.lock().unwrap();
                            let s = seqs.entry(conversation).or_default();
                            *s += 1;
                            *s
                        };
                        let message = Message {
                            reactions: Vec::new(),
                            mention_ranges: Vec::new(),
                            thread: None,
                            id: MessageId(offset),
                            conversation,
                            seq: Seq(seq),
                            sender,
                            body,
                            mentions: vec![],
                            attachments: vec![],
                            reply_to: None,
                            forwarded_from: None,
                            notice: None,
                            client_id: Some(client_id.clone()),
                            created_at: Millis(0),
                            edited_at: None,
                            deleted: false,
                        };
                        let event: Utf8Bytes = encode(&LoggedEvent {
                            offset: Offset(offset),
                            event: Event::MessageCreated { message },
                        })
                        .into();
                        if let Some(members) = state.members.get(&conversation) {
                            let conns = state.conns.lock().unwrap();
                            for m in members {
                                for c in conns.get(m).into_iter().flatten() {
                                    let _ = c.send(event.clone());
                                }
                            }
                        }
                        let ack = Ack {
                            req: frame.req,
                            offset: Offset(offset),
                            client_id: Some(client_id),
                            ..Ack::default()
                        };
                        let _ = tx.send(encode(&ServerFrame::Ack(ack)).into());
                    }
                    _ => {
                        let ack = Ack {
                            req: frame.req,
                            offset: Offset(state.offset.load(Ordering::Relaxed)),
                            ..Ack::default()
                        };
                        let _ = tx.send(encode(&ServerFrame::Ack(ack)).into());
                    }
                }
            }
        });
    }
}
