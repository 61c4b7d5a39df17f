//! Hardening: exactly-once retries, deleted text gone everywhere, budgets on the costly
//! requests, tokens that expire on open sockets, close codes, and HTTP headers. Each test names
//! what it protects; real sockets, a real relay in-process.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tally_relay::limits::Limits;
use tally_shared::protocol::{ServerFrame, close, encode};
use tally_shared::{Attachment, ClientFrame, ClientMsgId, ConversationId, ErrorCode, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn cid(s: &str) -> ClientMsgId {
    ClientMsgId::new(s).unwrap()
}

fn send(client_id: &str, conversation: ConversationId, body: &str) -> Request {
    Request::SendMessage {
        mention_ranges: Vec::new(),
        client_id: cid(client_id),
        conversation,
        body: body.into(),
        attachments: vec![],
        reply_to: None,
    }
}

async fn direct(alice: &mut Client, with: &str) -> ConversationId {
    alice
        .call(Request::CreateDirect { staff: sid(with) })
        .await
        .unwrap()
        .conversation
        .unwrap()
}

async fn upload(relay: &Relay, staff: &str, bytes: &[u8]) -> (u16, Vec<u8>) {
    let auth = bearer(&relay.token(staff));
    let (status, _, body) = http(
        relay.addr,
        "POST",
        "/api/attachments?name=f.bin",
        &[("Authorization", &auth)],
        bytes,
    )
    .await;
    (status, body)
}

async fn uploaded(relay: &Relay, staff: &str, bytes: &[u8]) -> Attachment {
    let (status, body) = upload(relay, staff, bytes).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

async fn download(relay: &Relay, staff: &str, id: &str) -> u16 {
    let path = format!("/api/attachments/{id}");
    http(
        relay.addr,
        "GET",
        &path,
        &[("Authorization", &bearer(&relay.token(staff)))],
        b"",
    )
    .await
    .0
}

#[tokio::test]
async fn a_client_id_is_scoped_to_its_kind_of_write() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let dm = direct(&mut alice, "bob").await;
    let sent = alice.call(send("same", dm, "hello")).await.unwrap();
    let group = Request::CreateGroup {
        client_id: cid("same"),
        title: "Front desk".into(),
        participants: vec![sid("bob")],
    };
    let created = alice.call(group.clone()).await.unwrap();
    assert_ne!(
        created.conversation,
        Some(dm),
        "the group create was not taken for the send"
    );
    // Retrying each stores nothing new and repeats its own first acknowledgement.
    let again = alice.call(send("same", dm, "hello")).await.unwrap();
    assert_eq!(
        (again.message, again.seq, again.offset),
        (sent.message, sent.seq, sent.offset)
    );
    let again = alice.call(group).await.unwrap();
    assert_eq!(
        (again.conversation, again.offset),
        (created.conversation, created.offset)
    );
    let bob = relay.connect("bob").await;
    assert_eq!(bob.store.counts(dm).unread, 1, "one message, not two");
    assert_eq!(bob.store.conversation_list().len(), 2, "one group, not two");
}

#[tokio::test]
async fn a_retry_gets_the_first_ack_even_after_the_world_changed() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    let group = alice
        .call(Request::CreateGroup {
            client_id: cid("g"),
            title: "Desk".into(),
            participants: vec![sid("bob"), sid("carol")],
        })
        .await
        .unwrap()
        .conversation
        .unwrap();
    let target = alice.call(send("t", group, "quote me")).await.unwrap();
    let reply = Request::SendMessage {
        mention_ranges: Vec::new(),
        client_id: cid("r"),
        conversation: group,
        body: "replying".into(),
        attachments: vec![],
        reply_to: target.message,
    };
    let first = bob.call(reply.clone()).await.unwrap();
    // The quoted message is deleted, then the replier leaves: the retry still gets its ack.
    alice
        .call(Request::DeleteMessage {
            message: target.message.unwrap(),
        })
        .await
        .unwrap();
    bob.call(Request::RemoveParticipant {
        conversation: group,
        staff: sid("bob"),
    })
    .await
    .unwrap();
    let again = bob.call(reply).await.unwrap();
    assert_eq!(
        again,
        tally_shared::protocol::Ack {
            req: again.req,
            ..first
        }
    );
    let carol = relay.connect("carol").await;
    let replies = carol
        .store
        .conversation(group)
        .unwrap()
        .messages
        .iter()
        .filter(|m| m.sender == sid("bob") && m.notice.is_none())
        .count();
    assert_eq!(replies, 1);
}

#[tokio::test]
async fn a_deleted_message_leaves_no_text_in_quotes_history_or_the_log_and_its_files_stop() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    let dm = direct(&mut alice, "bob").await;
    bob.sync().await;
    let file = uploaded(&relay, "alice", b"the door code file 4711").await;
    let secret = alice
        .call(Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: cid("s"),
            conversation: dm,
            body: "Door code 4711".into(),
            attachments: vec![file.id.clone()],
            reply_to: None,
        })
        .await
        .unwrap();
    alice
        .call(Request::EditMessage {
            mention_ranges: Vec::new(),
            message: secret.message.unwrap(),
            body: "Door code 4711, really".into(),
        })
        .await
        .unwrap();
    bob.call(Request::SendMessage {
        mention_ranges: Vec::new(),
        client_id: cid("q"),
        conversation: dm,
        body: "noted".into(),
        attachments: vec![],
        reply_to: secret.message,
    })
    .await
    .unwrap();
    assert_eq!(download(&relay, "bob", file.id.as_str()).await, 200);
    alice
        .call(Request::DeleteMessage {
            message: secret.message.unwrap(),
        })
        .await
        .unwrap();
    bob.sync().await;
    // The live store, a fresh snapshot, and a history page all show the quote redacted.
    let quote = |c: &Client| {
        let m = c.store.conversation(dm).unwrap().messages.last().unwrap().clone();
        m.reply_to.unwrap()
    };
    assert!(quote(&bob).deleted && quote(&bob).excerpt.is_empty());
    let fresh = relay.connect("bob").await;
    assert!(quote(&fresh).deleted && quote(&fresh).excerpt.is_empty());
    let (_, _, page) = http(
        relay.addr,
        "GET",
        &format!("/api/conversations/{dm}/messages"),
        &[("Authorization", &bearer(&relay.token("bob")))],
        b"",
    )
    .await;
    assert!(!String::from_utf8_lossy(&page).contains("4711"), "history");
    // Nothing on disk says it either: not the messages, not the log's events.
    let db = rusqlite::Connection::open(relay.dir.path().join("tally.sqlite3")).unwrap();
    for sql in ["SELECT payload FROM messages", "SELECT frame FROM events"] {
        let mut stmt = db.prepare(sql).unwrap();
        let rows: Vec<String> = stmt
            .query_map([], |r| tally_relay::packed::column(r, 0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(rows.iter().all(|r| !r.contains("4711")), "{sql}: {rows:?}");
    }
    // Its file is no longer served through it (its uploader keeps it for the grace period).
    assert_eq!(download(&relay, "bob", file.id.as_str()).await, 403);
    assert_eq!(download(&relay, "alice", file.id.as_str()).await, 200);
}

#[tokio::test]
async fn a_file_a_live_message_still_references_stays_served_after_another_is_deleted() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let dm = direct(&mut alice, "bob").await;
    let file = uploaded(&relay, "alice", b"shared file").await;
    let mut ids = Vec::new();
    for c in ["a", "b"] {
        let ack = alice
            .call(Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id: cid(c),
                conversation: dm,
                body: String::new(),
                attachments: vec![file.id.clone()],
                reply_to: None,
            })
            .await
            .unwrap();
        ids.push(ack.message.unwrap());
    }
    alice
        .call(Request::DeleteMessage { message: ids[0] })
        .await
        .unwrap();
    assert_eq!(download(&relay, "bob", file.id.as_str()).await, 200);
    alice
        .call(Request::DeleteMessage { message: ids[1] })
        .await
        .unwrap();
    assert_eq!(download(&relay, "bob", file.id.as_str()).await, 403);
}

#[tokio::test]
async fn uploads_have_a_rate_and_a_daily_quota_and_a_refused_one_stores_nothing() {
    let relay = Relay::start_with(&["alice"], |c| {
        c.limits = Limits {
            uploads_per_sec: 0.001,
            upload_burst: 4.0,
            upload_bytes_per_day: 250_000,
            ..Limits::unlimited()
        }
    })
    .await;
    let big = |i: u8| vec![i; 100_000];
    uploaded(&relay, "alice", &big(1)).await;
    // The same file again costs no new bytes.
    uploaded(&relay, "alice", &big(1)).await;
    uploaded(&relay, "alice", &big(2)).await;
    let (status, body) = upload(&relay, "alice", &big(3)).await;
    assert_eq!(status, 429);
    assert!(String::from_utf8_lossy(&body).contains("\"quota_exceeded\""));
    let (status, body) = upload(&relay, "alice", b"small").await;
    assert_eq!(status, 429, "the burst of 4 is spent");
    assert!(String::from_utf8_lossy(&body).contains("\"rate_limited\""));
    let files = walk(&relay.dir.path().join("attachments"));
    assert_eq!(files, 2, "two distinct files on disk, no temporaries left");
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test]
async fn unreferenced_uploads_are_collected_after_their_grace_and_referenced_ones_stay() {
    let relay = Relay::start_with(&["alice", "bob"], |c| c.attachment_grace = Duration::ZERO).await;
    let mut alice = relay.connect("alice").await;
    let dm = direct(&mut alice, "bob").await;
    let orphan = uploaded(&relay, "alice", b"never sent").await;
    let kept = uploaded(&relay, "alice", b"sent").await;
    let sent = alice
        .call(Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: cid("k"),
            conversation: dm,
            body: String::new(),
            attachments: vec![kept.id.clone()],
            reply_to: None,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    relay.running.as_ref().unwrap().collect_attachments().await;
    assert_eq!(walk(&relay.dir.path().join("attachments")), 1);
    assert_eq!(download(&relay, "alice", orphan.id.as_str()).await, 404);
    assert_eq!(download(&relay, "bob", kept.id.as_str()).await, 200);
    // Uploading the collected content again works: the file comes back.
    uploaded(&relay, "alice", b"never sent").await;
    assert_eq!(walk(&relay.dir.path().join("attachments")), 2);
    alice
        .call(Request::DeleteMessage {
            message: sent.message.unwrap(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    relay.running.as_ref().unwrap().collect_attachments().await;
    assert_eq!(walk(&relay.dir.path().join("attachments")), 0, "both collected");
}

#[tokio::test]
async fn history_pages_and_snapshots_have_their_own_budgets() {
    let relay = Relay::start_with(&["alice", "bob"], |c| {
        c.limits = Limits {
            history_per_sec: 0.001,
            history_burst: 2.0,
            snapshots_per_sec: 0.001,
            snapshot_burst: 1.0,
            ..Limits::unlimited()
        }
    })
    .await;
    let mut alice = relay.connect("alice").await;
    let dm = direct(&mut alice, "bob").await;
    let path = format!("/api/conversations/{dm}/messages");
    let auth = bearer(&relay.token("alice"));
    let headers = [("Authorization", auth.as_str())];
    let get = || http(relay.addr, "GET", &path, &headers, b"");
    assert_eq!(get().await.0, 200);
    assert_eq!(get().await.0, 200);
    let (status, head, body) = get().await;
    assert_eq!(status, 429);
    assert!(String::from_utf8_lossy(&body).contains("rate_limited"));
    assert!(head.to_ascii_lowercase().contains("cache-control: no-store"));
    // A snapshot is answered, then acknowledged; the next one is refused.
    let ack = alice.call(Request::RequestSnapshot).await.unwrap();
    assert!(alice.frames.iter().any(|f| matches!(f, ServerFrame::Snapshot(_))));
    assert_eq!(ack.offset, alice.store.applied());
    let err = alice.call(Request::RequestSnapshot).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::RateLimited);
    // A preference change reaches everyone in every conversation of one's: the same budget,
    // so toggling it cannot be turned into a flood of `seen` frames.
    let toggle = Request::SetPreferences {
        hide_read_state: true,
    };
    let err = alice.call(toggle).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::RateLimited);
}

#[tokio::test]
async fn an_open_socket_is_closed_with_4001_when_its_token_expires() {
    let relay = Relay::start_with(&["alice", "bob"], |c| c.token_leeway = Duration::ZERO).await;
    let now = tally_relay::auth::now_secs();
    let token = relay.keys.sign(&tally_relay::auth::Claims {
        sub: "alice".into(),
        aud: tally_relay::auth::AUDIENCE.into(),
        iat: now,
        exp: now + 2,
        nbf: None,
    });
    let mut alice = Client::connect(relay.addr, &token, None).await;
    let started = std::time::Instant::now();
    assert_eq!(alice.closed_with().await, Some(close::UNAUTHORIZED));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_token_living_longer_than_the_maximum_is_refused() {
    let relay = Relay::start_with(&["alice"], |c| c.max_token_ttl = Duration::from_secs(3600)).await;
    let long = relay.keys.mint(&sid("alice"), Duration::from_secs(7200));
    let mut ws = Client::raw(relay.addr).await;
    let hello = ClientFrame::new(Request::hello(long, None));
    futures_util::SinkExt::send(
        &mut ws,
        tokio_tungstenite::tungstenite::Message::text(encode(&hello)),
    )
    .await
    .unwrap();
    let mut code = None;
    while let Some(Ok(m)) = ws.next().await {
        if let tokio_tungstenite::tungstenite::Message::Close(f) = m {
            code = f.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(close::UNAUTHORIZED));
}

/// A bare WebSocket client that writes frames byte by byte, to send what real clients never do.
struct RawWs(TcpStream);

impl RawWs {
    async fn open(relay: &Relay) -> RawWs {
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            relay.addr
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        let mut ws = RawWs(s);
        let hello = encode(&ClientFrame::new(Request::hello(relay.token("alice"), None)));
        ws.frame(0x1, hello.as_bytes(), None).await;
        ws
    }

    /// Writes one masked frame; `claimed` overrides the length in the header.
    async fn frame(&mut self, opcode: u8, payload: &[u8], claimed: Option<u64>) {
        let len = claimed.unwrap_or(payload.len() as u64);
        let mut out = vec![0x80 | opcode];
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        let mask = [1u8, 2, 3, 4];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.0.write_all(&out).await.unwrap();
    }

    /// Reads frames until the close frame; its code.
    async fn close_code(&mut self) -> Option<u16> {
        tokio::time::timeout(WAIT, async {
            loop {
                let b0 = self.0.read_u8().await.ok()?;
                let b1 = self.0.read_u8().await.ok()?;
                let len = match b1 & 0x7f {
                    126 => u64::from(self.0.read_u16().await.ok()?),
                    127 => self.0.read_u64().await.ok()?,
                    n => u64::from(n),
                };
                let mut payload = vec![0; len as usize];
                self.0.read_exact(&mut payload).await.ok()?;
                if b0 & 0x0f == 0x8 {
                    return Some(u16::from_be_bytes([payload[0], payload[1]]));
                }
            }
        })
        .await
        .expect("closed in time")
    }
}

#[tokio::test]
async fn oversized_non_utf8_and_malformed_frames_close_with_their_rfc_codes() {
    let relay = Relay::start(&["alice"]).await;
    let mut ws = RawWs::open(&relay).await;
    ws.frame(0x1, b"", Some(1 << 20)).await;
    assert_eq!(ws.close_code().await, Some(close::MESSAGE_TOO_BIG));
    let mut ws = RawWs::open(&relay).await;
    ws.frame(0x1, &[0xff, 0xfe, 0xfd], None).await;
    assert_eq!(ws.close_code().await, Some(close::INVALID_PAYLOAD));
    let mut ws = RawWs::open(&relay).await;
    ws.frame(0x3, b"reserved opcode", None).await;
    assert_eq!(ws.close_code().await, Some(close::PROTOCOL_ERROR));
}

#[tokio::test]
async fn an_undecodable_frame_still_names_its_request() {
    let relay = Relay::start(&["alice"]).await;
    let mut alice = relay.connect("alice").await;
    alice.send_text(r#"{"req":41,"type":"fly"}"#.into()).await;
    alice
        .send_text(r#"{"req":42,"type":"mark_read","conversation":"x"}"#.into())
        .await;
    for (req, code) in [(41, ErrorCode::UnknownType), (42, ErrorCode::MalformedFrame)] {
        let f = alice.until(|f| matches!(f, ServerFrame::Error(_))).await;
        let ServerFrame::Error(e) = f else { unreachable!() };
        assert_eq!((e.req.map(|r| r.0), e.code), (Some(req), code));
    }
}

#[tokio::test]
async fn resuming_from_an_events_offset_replays_that_events_checkpoint() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let mut bob = relay.connect("bob").await;
    let dm = direct(&mut alice, "bob").await;
    let ack = alice.call(send("m", dm, "hi")).await.unwrap();
    bob.sync().await;
    // Bob applied the message's event but lost its unread_updated in the same disconnect.
    let resumed = Client::connect(relay.addr, &relay.token("bob"), Some(ack.offset)).await;
    let update = resumed.frames.iter().find_map(|f| match f {
        ServerFrame::UnreadUpdated(u) => Some(*u),
        _ => None,
    });
    assert_eq!(update.map(|u| (u.offset, u.unread)), Some((ack.offset, 1)));
}

#[tokio::test]
async fn head_works_wherever_get_does_and_json_is_never_cached() {
    let relay = Relay::start(&["alice"]).await;
    let (status, head, body) = http(relay.addr, "HEAD", "/healthz", &[], b"").await;
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert!(head.to_ascii_lowercase().contains("cache-control: no-store"));
    let auth = bearer(&relay.token("alice"));
    let (status, head, _) = http(relay.addr, "GET", "/api/staff", &[("Authorization", &auth)], b"").await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("cache-control: no-store"));
    assert_eq!(
        http(relay.addr, "HEAD", "/api/staff", &[("Authorization", &auth)], b"")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn attachments_are_private_revalidated_and_answer_304_only_after_the_access_check() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let mut alice = relay.connect("alice").await;
    let dm = direct(&mut alice, "bob").await;
    let file = uploaded(&relay, "alice", b"\x89PNG\r\n\x1a\nimage").await;
    alice
        .call(Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: cid("p"),
            conversation: dm,
            body: String::new(),
            attachments: vec![file.id.clone()],
            reply_to: None,
        })
        .await
        .unwrap();
    let path = format!("/api/attachments/{}", file.id);
    let bob = bearer(&relay.token("bob"));
    let (status, head, _) = http(relay.addr, "GET", &path, &[("Authorization", &bob)], b"").await;
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("cache-control: private, no-cache"), "{head}");
    assert!(head.contains("vary: authorization"));
    let etag = format!("\"{}\"", file.id);
    assert!(head.contains(&format!("etag: {etag}")));
    let cached = [("Authorization", bob.as_str()), ("If-None-Match", etag.as_str())];
    assert_eq!(http(relay.addr, "GET", &path, &cached, b"").await.0, 304);
    let carol = bearer(&relay.token("carol"));
    let cached = [
        ("Authorization", carol.as_str()),
        ("If-None-Match", etag.as_str()),
    ];
    assert_eq!(http(relay.addr, "GET", &path, &cached, b"").await.0, 403);
    assert_eq!(
        http(relay.addr, "HEAD", &path, &[("Authorization", &bob)], b"")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn metrics_can_live_on_their_own_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = Relay::start_with(&["alice"], |c| c.metrics_listen = Some(port)).await;
    assert_eq!(http(relay.addr, "GET", "/metrics", &[], b"").await.0, 404);
    let (status, _, body) = http(port, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("tally_sockets"));
}

#[tokio::test]
async fn the_demo_picker_mints_tokens_for_demo_staff_only() {
    let relay = Relay::start_with(&["mallory"], |c| c.demo = true).await;
    let sign_in = |who: &str| format!(r#"{{"staff":"{who}"}}"#);
    let json = [("Content-Type", "application/json")];
    let (status, _, _) = http(
        relay.addr,
        "POST",
        "/api/demo/token",
        &json,
        sign_in("alice").as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = http(
        relay.addr,
        "POST",
        "/api/demo/token",
        &json,
        sign_in("mallory").as_bytes(),
    )
    .await;
    assert_eq!(status, 404, "a real staff member is not the demo's to sign in as");
    let (_, _, body) = http(relay.addr, "GET", "/api/demo/staff", &[], b"").await;
    assert!(!String::from_utf8_lossy(&body).contains("mallory"));
}

#[tokio::test]
async fn through_a_trusted_proxy_the_forwarded_address_is_limited_not_the_proxys() {
    let limits = Limits {
        connects_per_sec: 0.001,
        connect_burst: 1.0,
        ..Limits::unlimited()
    };
    let upgrade = |relay: &Relay, forwarded: &str| {
        let head = format!(
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Forwarded-For: {forwarded}"
        );
        let addr = relay.addr;
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n{head}\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = [0u8; 12];
            s.read_exact(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf[9..12]).parse::<u16>().unwrap()
        }
    };
    let l = limits.clone();
    let trusting = Relay::start_with(&["alice"], move |c| {
        c.limits = l;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    assert_eq!(upgrade(&trusting, "198.51.100.1").await, 101);
    assert_eq!(
        upgrade(&trusting, "198.51.100.2").await,
        101,
        "another client behind it"
    );
    assert_eq!(
        upgrade(&trusting, "198.51.100.1").await,
        429,
        "the same client again"
    );
    let plain = Relay::start_with(&["alice"], move |c| c.limits = limits).await;
    assert_eq!(upgrade(&plain, "198.51.100.1").await, 101);
    assert_eq!(
        upgrade(&plain, "198.51.100.2").await,
        429,
        "an untrusted header changes nothing"
    );
}

#[tokio::test]
async fn allowed_origins_get_cors_headers_and_preflights_and_others_get_neither() {
    let host = "http://host.example";
    let relay = Relay::start_with(&["alice"], |c| c.allowed_origins = vec![host.into()]).await;
    let preflight = |origin: &'static str| {
        let headers = [
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization"),
        ];
        async move { http(relay.addr, "OPTIONS", "/api/attachments", &headers, b"").await }
    };
    let (status, head, _) = preflight(host).await;
    let head = head.to_ascii_lowercase();
    assert_eq!(status, 204);
    assert!(
        head.contains("access-control-allow-origin: http://host.example"),
        "{head}"
    );
    assert!(head.contains("access-control-allow-headers: authorization, content-type"));
    assert!(head.contains("vary: origin"));
    let (status, head, _) = preflight("http://evil.example").await;
    assert_eq!(status, 403);
    assert!(!head.to_ascii_lowercase().contains("access-control-allow-origin"));
    let auth = bearer(&relay.token("alice"));
    for (origin, allowed) in [(host, true), ("http://evil.example", false)] {
        let headers = [("Authorization", auth.as_str()), ("Origin", origin)];
        let (status, head, _) = http(relay.addr, "GET", "/api/staff", &headers, b"").await;
        let head = head.to_ascii_lowercase();
        assert_eq!(status, 200);
        assert!(head.contains("vary: origin"), "{head}");
        assert_eq!(
            head.contains("access-control-allow-origin"),
            allowed,
            "{origin}: {head}"
        );
    }
}

#[tokio::test]
async fn a_reported_divergence_is_counted_for_the_operator_and_acknowledged() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let dm = direct(&mut alice, "bob").await;
    let metric = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("tally_client_divergences_total "))
            .map(|v| v.trim().to_string())
    };
    let (_, _, before) = http(relay.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(metric(&String::from_utf8_lossy(&before)).as_deref(), Some("0"));
    let report = Request::ReportDivergence {
        conversation: dm,
        offset: alice.store.applied(),
        ours: tally_shared::Counts {
            unread: 2,
            mentions: 0,
        },
        relays: tally_shared::Counts {
            unread: 3,
            mentions: 0,
        },
    };
    alice.call(report).await.unwrap();
    let (_, _, after) = http(relay.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(metric(&String::from_utf8_lossy(&after)).as_deref(), Some("1"));
}

#[tokio::test]
async fn hello_names_its_protocol_version_and_one_the_relay_does_not_serve_is_told_to_reload() {
    use tally_shared::protocol::{PROTOCOL_MIN, PROTOCOL_VERSION, ProtocolRange};
    let relay = Relay::start(&["alice"]).await;
    // Today's widget: the snapshot says which versions the relay serves.
    let alice = relay.connect("alice").await;
    let ServerFrame::Snapshot(s) = &alice.frames[0] else {
        panic!("{:?}", alice.frames[0])
    };
    assert_eq!(
        s.protocols,
        Some(ProtocolRange {
            min: PROTOCOL_MIN,
            max: PROTOCOL_VERSION
        })
    );
    // A widget from before versions (no `protocol` field) is version 1; it and version 2 count
    // totals without threads, so they are told to reload rather than served wrong totals.
    let mut old = Client::raw(relay.addr).await;
    let hello = format!(r#"{{"type":"hello","token":"{}"}}"#, relay.token("alice"));
    futures_util::SinkExt::send(&mut old, tokio_tungstenite::tungstenite::Message::text(hello))
        .await
        .unwrap();
    let first = old.next().await.unwrap().unwrap();
    assert!(
        first.to_text().unwrap().contains("unsupported_protocol"),
        "{first:?}"
    );
    // Versions outside the range get a clear code and close 4010.
    for version in [0, 2, PROTOCOL_VERSION + 1] {
        let mut ws = Client::raw(relay.addr).await;
        let hello = ClientFrame::new(Request::Hello {
            token: relay.token("alice"),
            resume_from: None,
            protocol: Some(version),
            counts_first: false,
        });
        futures_util::SinkExt::send(
            &mut ws,
            tokio_tungstenite::tungstenite::Message::text(encode(&hello)),
        )
        .await
        .unwrap();
        let mut code = None;
        let mut error = None;
        while let Some(Ok(m)) = ws.next().await {
            match m {
                tokio_tungstenite::tungstenite::Message::Text(t) => {
                    if let Ok(ServerFrame::Error(e)) = serde_json::from_str(&t) {
                        error = Some(e.code);
                    }
                }
                tokio_tungstenite::tungstenite::Message::Close(f) => {
                    code = f.map(|f| u16::from(f.code));
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(
            (error, code),
            (
                Some(ErrorCode::UnsupportedProtocol),
                Some(close::UNSUPPORTED_PROTOCOL)
            )
        );
    }
}
