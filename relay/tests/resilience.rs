//! Resume, bad input, slow consumers, and the HTTP surface, over real sockets.

mod common;

use common::*;
use futures_util::SinkExt;
use tally_shared::protocol::{ServerFrame, close, encode};
use tally_shared::{ClientFrame, ClientMsgId, ConversationId, ErrorCode, Request};
use tokio_tungstenite::tungstenite::Message;

async fn pair(relay: &Relay) -> (Client, Client, ConversationId) {
    let mut alice = relay.connect("alice").await;
    let bob = relay.connect("bob").await;
    let dm = alice
        .call(Request::CreateDirect { staff: sid("bob") })
        .await
        .unwrap()
        .conversation
        .unwrap();
    (alice, bob, dm)
}

#[tokio::test]
async fn a_snapshot_many_fragments_long_arrives_whole() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let body = "ü".repeat(tally_shared::limits::BODY_MAX_BYTES / 2);
    // Four groups of ten long messages: each carries up to its 64 KiB in the snapshot.
    let mut groups = Vec::new();
    for g in 0..4 {
        let group = alice
            .call(Request::CreateGroup {
                client_id: ClientMsgId::new(format!("g{g}")).unwrap(),
                title: format!("Group {g}"),
                participants: vec![sid("bob")],
            })
            .await
            .unwrap()
            .conversation
            .unwrap();
        for n in 0..10 {
            alice
                .call(send(group, &format!("big{g}-{n}"), &body))
                .await
                .unwrap();
        }
        groups.push(group);
    }
    // A new tab's snapshot: over 200 KB, written as 8 KiB fragments.
    let bob = relay.connect("bob").await;
    let snapshot = bob
        .frames
        .iter()
        .find(|f| matches!(f, ServerFrame::Snapshot(_)))
        .unwrap();
    assert!(encode(snapshot).len() > 20 * tally_relay::session::FRAGMENT);
    for group in groups {
        // The creation notice and the ten messages.
        assert_eq!(bob.store.counts(group).unread, 11);
        let view = bob.store.conversation(group).unwrap();
        assert!(view.messages.len() >= 5, "{}", view.messages.len());
        assert!(view.messages.iter().all(|m| m.body == body));
    }
}

#[tokio::test]
async fn a_client_that_resumes_gets_what_it_missed_and_converges() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let (mut alice, mut bob, dm) = pair(&relay).await;
    alice.call(send(dm, "a1", "one")).await.unwrap();
    bob.sync().await;
    let store = bob.store.clone();
    let offset = store.applied();
    drop(bob);
    for i in 0..5 {
        alice
            .call(send(dm, &format!("b{i}"), "while you were away"))
            .await
            .unwrap();
    }
    let mut bob = Client::connect_with_store(relay.addr, &relay.token("bob"), Some(offset), store).await;
    assert!(
        bob.frames
            .iter()
            .any(|f| matches!(f, ServerFrame::Resumed { .. })),
        "a replay, not a snapshot"
    );
    bob.sync().await;
    assert_eq!(bob.store.counts(dm).unread, 6);
    let fresh = relay.connect("bob").await;
    assert_eq!(
        bob.store.summary(50),
        fresh.store.summary(50),
        "resumed == fresh snapshot"
    );
}

#[tokio::test]
async fn a_client_older_than_the_retained_log_gets_a_snapshot() {
    let relay = Relay::start_with(&["alice", "bob"], |c| c.retain_events = 2).await;
    let (mut alice, mut bob, dm) = pair(&relay).await;
    bob.sync().await;
    let offset = bob.store.applied();
    let store = bob.store.clone();
    drop(bob);
    for i in 0..5 {
        alice.call(send(dm, &format!("c{i}"), "many")).await.unwrap();
    }
    let mut bob = Client::connect_with_store(relay.addr, &relay.token("bob"), Some(offset), store).await;
    assert!(matches!(bob.frames[0], ServerFrame::Snapshot(_)));
    bob.sync().await;
    assert_eq!(bob.store.counts(dm).unread, 5);
}

#[tokio::test]
async fn the_retained_log_is_bounded_in_bytes_too() {
    // Room for a few events' frames, not for 40 messages of 2 KB.
    let relay = Relay::start_with(&["alice", "bob"], |c| c.retain_bytes = 16 * 1024).await;
    let (mut alice, mut bob, dm) = pair(&relay).await;
    bob.sync().await;
    let (offset, store) = (bob.store.applied(), bob.store.clone());
    drop(bob);
    let body = "z".repeat(2000);
    for i in 0..40 {
        alice.call(send(dm, &format!("b{i}"), &body)).await.unwrap();
    }
    let (_, _, metrics) = http(relay.addr, "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8(metrics).unwrap();
    let bytes: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tally_retained_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes > 0 && bytes <= 16 * 1024, "{bytes}");
    let mut bob = Client::connect_with_store(relay.addr, &relay.token("bob"), Some(offset), store).await;
    assert!(matches!(bob.frames[0], ServerFrame::Snapshot(_)));
    bob.sync().await;
    assert_eq!(bob.store.counts(dm).unread, 40);
    // A client only a few events behind still resumes.
    let (offset, store) = (bob.store.applied(), bob.store.clone());
    drop(bob);
    alice.call(send(dm, "last", "short")).await.unwrap();
    let bob = Client::connect_with_store(relay.addr, &relay.token("bob"), Some(offset), store).await;
    assert!(
        bob.frames
            .iter()
            .any(|f| matches!(f, ServerFrame::Resumed { .. }))
    );
    assert_eq!(bob.store.counts(dm).unread, 41);
}

#[tokio::test]
async fn bad_input_gets_an_error_code_and_changes_nothing() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let (mut alice, mut bob, dm) = pair(&relay).await;
    alice.call(send(dm, "ok", "fine")).await.unwrap();
    bob.sync().await;
    let before = bob.store.summary(50);

    let expect_error = async |c: &mut Client, text: String, code: ErrorCode| {
        c.send_text(text).await;
        match c.until(|f| matches!(f, ServerFrame::Error(_))).await {
            ServerFrame::Error(e) => assert_eq!(e.code, code, "{e:?}"),
            _ => unreachable!(),
        }
    };
    // Malformed JSON, unknown type, missing fields, oversized frame, a second hello.
    expect_error(&mut alice, "{not json".into(), ErrorCode::MalformedFrame).await;
    expect_error(
        &mut alice,
        r#"{"type":"launch_rockets"}"#.into(),
        ErrorCode::UnknownType,
    )
    .await;
    expect_error(
        &mut alice,
        r#"{"type":"send_message","conversation":"one"}"#.into(),
        ErrorCode::MalformedFrame,
    )
    .await;
    let huge = format!(
        r#"{{"type":"send_message","client_id":"h","conversation":1,"body":"{}"}}"#,
        "x".repeat(tally_shared::limits::CLIENT_FRAME_MAX_BYTES)
    );
    expect_error(&mut alice, huge, ErrorCode::FrameTooLarge).await;
    expect_error(
        &mut alice,
        encode(&ClientFrame::new(Request::hello("t", None))),
        ErrorCode::HelloRequired,
    )
    .await;
    alice.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    alice
        .until(|f| matches!(f, ServerFrame::Error(e) if e.code == ErrorCode::MalformedFrame))
        .await;
    // A smuggled sender is ignored: the author is the connection.
    alice
        .send_text(r#"{"type":"send_message","req":7,"client_id":"smuggle","conversation":1,"body":"who wrote me","sender":"bob"}"#.into())
        .await;
    alice.until(|f| matches!(f, ServerFrame::Ack(_))).await;
    bob.sync().await;
    let last = bob
        .store
        .conversation(dm)
        .unwrap()
        .messages
        .last()
        .unwrap()
        .clone();
    assert_eq!(last.sender, sid("alice"));
    assert_eq!(bob.store.counts(dm).unread, 2);
    // The connection survived every error, and the other one never noticed.
    alice.sync().await;
    assert_ne!(before, bob.store.summary(50));
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_code() {
    let relay = Relay::start(&["alice"]).await;
    // Forged (another secret), expired, for an unknown staff member, garbage.
    let forged = tally_relay::auth::Keys::new(
        b"someone else's secret, 32 bytes!",
        tally_relay::auth::MAX_TOKEN_TTL,
    )
    .mint(&sid("alice"), std::time::Duration::from_secs(60));
    let unknown = relay
        .keys
        .mint(&sid("mallory"), std::time::Duration::from_secs(60));
    for token in [forged.as_str(), unknown.as_str(), "garbage"] {
        let mut ws = Client::raw(relay.addr).await;
        ws.send(Message::text(encode(&ClientFrame::new(Request::hello(
            token, None,
        )))))
        .await
        .unwrap();
        let (code, close_code) = read_refusal(&mut ws).await;
        assert_eq!(code, ErrorCode::Unauthorized, "{token}");
        assert_eq!(close_code, Some(close::UNAUTHORIZED));
    }
    // No hello at all: the first frame must be hello.
    let mut ws = Client::raw(relay.addr).await;
    ws.send(Message::text(encode(&ClientFrame::new(Request::Ping))))
        .await
        .unwrap();
    assert_eq!(read_refusal(&mut ws).await.0, ErrorCode::HelloRequired);
}

async fn read_refusal(ws: &mut Ws) -> (ErrorCode, Option<u16>) {
    use futures_util::StreamExt;
    let mut code = None;
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => {
                if let Ok(ServerFrame::Error(e)) = serde_json::from_str(&t) {
                    code = Some(e.code);
                }
            }
            Some(Ok(Message::Close(f))) => return (code.unwrap(), f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            _ => return (code.unwrap(), None),
        }
    }
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_and_others_keep_going() {
    let relay = Relay::start_with(&["alice", "bob", "carol"], |c| c.queue_frames = 32).await;
    let mut alice = relay.connect("alice").await;
    let mut carol = relay.connect("carol").await;
    let g = alice
        .call(Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "G".into(),
            participants: vec![sid("bob"), sid("carol")],
        })
        .await
        .unwrap()
        .conversation
        .unwrap();
    // Bob says hello and then never reads.
    let mut stalled = Client::raw(relay.addr).await;
    stalled
        .send(Message::text(encode(&ClientFrame::new(Request::hello(
            relay.token("bob"),
            None,
        )))))
        .await
        .unwrap();
    let body = "y".repeat(tally_shared::limits::BODY_MAX_BYTES);
    let mut n = 0;
    // Enough to fill the kernel's socket buffers and then bob's queue.
    while n < 4000 {
        alice.call(send(g, &format!("s{n}"), &body)).await.unwrap();
        n += 1;
        if n % 100 == 0 {
            carol.sync().await;
            let (_, _, metrics) = http(relay.addr, "GET", "/metrics", &[], b"").await;
            let text = String::from_utf8(metrics).unwrap();
            if text.contains("tally_slow_consumer_disconnects_total 1") {
                break;
            }
        }
    }
    assert!(n < 4000, "bob was never closed as a slow consumer");
    // Carol got everything, in order.
    carol.sync().await;
    assert_eq!(carol.store.counts(g).unread as usize, n + 1);
    // Bob's socket ends with the documented close code once he reads again.
    use futures_util::StreamExt;
    let mut code = None;
    let mut texts = 0;
    loop {
        let m = tokio::time::timeout(WAIT, stalled.next()).await.unwrap();
        match m {
            Some(Ok(Message::Close(f))) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            Some(Ok(_)) => texts += 1,
            other => {
                eprintln!("after {texts} frames: {other:?}");
                break;
            }
        }
    }
    assert_eq!(code, Some(close::SLOW_CONSUMER));
}

#[tokio::test]
async fn attachments_are_for_participants_only() {
    let relay = Relay::start(&["alice", "bob", "carol"]).await;
    let (mut alice, _bob, dm) = pair(&relay).await;
    let auth = |s: &str| bearer(&relay.token(s));
    let png = b"\x89PNG\r\n\x1a\n fake image".to_vec();
    let (status, _, body) = http(
        relay.addr,
        "POST",
        "/api/attachments?name=../../x.png",
        &[("Authorization", &auth("alice")), ("Content-Type", "text/html")],
        &png,
    )
    .await;
    assert_eq!(status, 201);
    let file: tally_shared::Attachment = serde_json::from_slice(&body).unwrap();
    assert_eq!(file.content_type, "image/png", "sniffed, not trusted");
    assert_eq!(file.name, "x.png");
    alice
        .call(Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: ClientMsgId::new("f").unwrap(),
            conversation: dm,
            body: String::new(),
            attachments: vec![file.id.clone()],
            reply_to: None,
        })
        .await
        .unwrap();
    let url = format!("/api/attachments/{}?name=x.png", file.id);
    let (status, head, bytes) = http(relay.addr, "GET", &url, &[("Authorization", &auth("bob"))], b"").await;
    assert_eq!(status, 200);
    assert_eq!(bytes, png);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: image/png"));
    assert!(head.contains("x-content-type-options: nosniff"));
    assert!(head.contains("content-disposition: inline"));
    // An outsider, no token, a bad id.
    assert_eq!(
        http(relay.addr, "GET", &url, &[("Authorization", &auth("carol"))], b"")
            .await
            .0,
        403
    );
    assert_eq!(http(relay.addr, "GET", &url, &[], b"").await.0, 401);
    assert_eq!(
        http(
            relay.addr,
            "GET",
            "/api/attachments/..%2f..%2fsecret",
            &[("Authorization", &auth("bob"))],
            b""
        )
        .await
        .0,
        404
    );
    // Carol cannot attach a file she did not upload.
    let mut carol = relay.connect("carol").await;
    let g = carol
        .call(Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "G".into(),
            participants: vec![],
        })
        .await
        .unwrap()
        .conversation
        .unwrap();
    let err = carol
        .call(Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: ClientMsgId::new("steal").unwrap(),
            conversation: g,
            body: String::new(),
            attachments: vec![file.id.clone()],
            reply_to: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    // Over the size limit.
    let big = vec![0u8; tally_shared::limits::ATTACHMENT_MAX_BYTES as usize + 1];
    let (status, _, body) = http(
        relay.addr,
        "POST",
        "/api/attachments?name=big.bin",
        &[("Authorization", &auth("alice"))],
        &big,
    )
    .await;
    assert_eq!(status, 413);
    assert!(String::from_utf8_lossy(&body).contains("\"code\""));
}

#[tokio::test]
async fn history_pages_health_metrics_and_no_demo_picker() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let (mut alice, _bob, dm) = pair(&relay).await;
    for i in 0..30 {
        alice
            .call(send(dm, &format!("h{i}"), &format!("message {i}")))
            .await
            .unwrap();
    }
    let auth = bearer(&relay.token("bob"));
    let (status, _, body) = http(
        relay.addr,
        "GET",
        &format!("/api/conversations/{dm}/messages?before=11&limit=5"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![6, 7, 8, 9, 10]);
    assert_eq!(
        http(
            relay.addr,
            "GET",
            "/api/conversations/999/messages",
            &[("Authorization", &auth)],
            b""
        )
        .await
        .0,
        404
    );
    let (status, _, body) = http(relay.addr, "GET", "/api/staff", &[("Authorization", &auth)], b"").await;
    assert_eq!(status, 200);
    let staff: Vec<tally_shared::Staff> = serde_json::from_slice(&body).unwrap();
    assert_eq!(staff.len(), 2);
    assert_eq!(http(relay.addr, "GET", "/api/staff", &[], b"").await.0, 401);
    let (status, _, body) = http(relay.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"ok\""));
    let (_, _, metrics) = http(relay.addr, "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("tally_events_appended_total 31"), "{metrics}");
    assert!(metrics.contains("tally_commit_batch_size_count"));
    let (status, _, body) = http(relay.addr, "GET", "/api/demo/staff", &[], b"").await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("not_found"));
}

#[tokio::test]
async fn a_foreign_origin_cannot_open_a_websocket() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let relay = Relay::start(&["alice"]).await;
    let mut req = format!("ws://{}/ws", relay.addr).into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let mut req = format!("ws://{}/ws", relay.addr).into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", format!("http://{}", relay.addr).parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
}

/// Sends an upgrade request for `/ws` with these extra headers; returns the response head.
async fn upgrade_head(addr: std::net::SocketAddr, extra: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

#[tokio::test]
async fn a_request_to_the_socket_endpoint_that_is_no_websocket_upgrade_gets_a_json_400() {
    let relay = Relay::start(&["alice"]).await;
    let upgrade = "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let version = "Sec-WebSocket-Version: 13\r\n";
    let cases = [
        String::new(),
        format!("Connection: close\r\nUpgrade: websocket\r\n{key}{version}"),
        format!("{upgrade}{key}Sec-WebSocket-Version: 8\r\n"),
        format!("{upgrade}{version}"),
    ];
    for extra in &cases {
        let head = upgrade_head(relay.addr, extra).await;
        assert!(head.starts_with("http/1.1 400"), "{extra}: {head}");
        assert!(head.contains("content-type: application/json"), "{extra}: {head}");
    }
    // The RFC 6455 example key gets the RFC's answer.
    let head = upgrade_head(relay.addr, &format!("{upgrade}{key}{version}")).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
}

#[tokio::test]
async fn a_hello_that_asks_for_counts_first_gets_the_totals_ahead_of_its_snapshot() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let (mut alice, mut bob, dm) = pair(&relay).await;
    for i in 0..3 {
        alice.call(send(dm, &format!("m{i}"), "hello")).await.unwrap();
    }
    bob.sync().await;
    let expected = bob.store.total();
    assert_eq!(expected.unread, 3);

    // A new tab that asks: the totals first, then the snapshot at the same state.
    let hello = Request::hello_counts_first(relay.token("bob"), None);
    let tab = Client::connect_with(relay.addr, hello, tally_shared::ChatStore::new()).await;
    let ServerFrame::Counts { offset, total } = tab.frames[0] else {
        panic!("{:?}", tab.frames[0]);
    };
    assert_eq!(total, expected);
    assert_eq!(
        tab.store.total(),
        expected,
        "the badge's first number is already exact"
    );
    let mut tab = tab;
    let ServerFrame::Snapshot(s) = tab.next().await.unwrap() else {
        panic!("the snapshot right after the counts");
    };
    assert_eq!((s.offset, s.total), (offset, expected));

    // A client that does not ask is sent what it always was: the snapshot first.
    let plain = relay.connect("bob").await;
    assert!(
        matches!(plain.frames[0], ServerFrame::Snapshot(_)),
        "{:?}",
        plain.frames[0]
    );

    // Resuming, there is no snapshot to wait for, so no counts frame either.
    tab.sync().await;
    let (store, from) = (tab.store.clone(), tab.store.applied());
    drop(tab);
    alice.call(send(dm, "m3", "while away")).await.unwrap();
    let hello = Request::hello_counts_first(relay.token("bob"), Some(from));
    let mut resumed = Client::connect_with(relay.addr, hello, store).await;
    resumed.sync().await;
    assert!(
        !resumed
            .frames
            .iter()
            .any(|f| matches!(f, ServerFrame::Counts { .. })),
        "{:?}",
        resumed.frames
    );
    assert_eq!(resumed.store.total().unread, 4);
}
