//! Exhaustion: nobody can starve the relay of sockets, descriptors or memory. Each test runs the
//! real binary as a child process and attacks it over real sockets; the bounds they check are
//! the relay's configured limits, with wide margins (these are liveness checks, not timings).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tally_shared::protocol::{ServerFrame, close, encode};
use tally_shared::{ClientFrame, ClientMsgId, ConversationId, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Waits until the peer closes the socket (EOF or reset); how long that took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

async fn direct(client: &mut Client, with: &str) -> ConversationId {
    client
        .call(Request::CreateDirect { staff: sid(with) })
        .await
        .unwrap()
        .conversation
        .unwrap()
}

/// Sends `n` new messages, a window at a time, reading every ack (so the sender keeps up).
async fn flood(client: &mut Client, conversation: ConversationId, n: usize, body: &str) {
    static SENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let first = SENT.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    let window = 200;
    for start in (first..first + n).step_by(window) {
        let end = (start + window).min(first + n);
        for i in start..end {
            let frame = ClientFrame::with_req(
                1_000_000 + i as u64,
                Request::SendMessage {
                    mention_ranges: Vec::new(),
                    client_id: ClientMsgId::new(format!("flood-{conversation}-{i}")).unwrap(),
                    conversation,
                    body: body.into(),
                    attachments: vec![],
                    reply_to: None,
                },
            );
            client.send_text(encode(&frame)).await;
        }
        let last = 1_000_000 + end as u64 - 1;
        client
            .until(|f| matches!(f, ServerFrame::Ack(a) if a.req.map(|r| r.0) == Some(last)))
            .await;
    }
}

#[tokio::test]
async fn idle_sockets_cannot_lock_staff_out_under_a_descriptor_limit() {
    let relay = Binary::serve(&["alice", "bob"], &UNLIMITED, Some(1024));
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect(relay.addr).await.unwrap());
    }
    // With 1,100 idle sockets open against a limit of 1,024 descriptors, staff still connect,
    // send, and fetch over HTTP.
    let mut alice = tokio::time::timeout(WAIT, relay.connect("alice"))
        .await
        .expect("alice connects");
    let dm = direct(&mut alice, "bob").await;
    let sent = alice
        .call(Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: ClientMsgId::new("through").unwrap(),
            conversation: dm,
            body: "still here".into(),
            attachments: vec![],
            reply_to: None,
        })
        .await;
    assert!(sent.is_ok(), "{sent:?}");
    let bob = tokio::time::timeout(WAIT, relay.connect("bob"))
        .await
        .expect("bob connects");
    assert_eq!(bob.store.counts(dm).unread, 1);
    let (status, _, _) = tokio::time::timeout(WAIT, http(relay.addr, "GET", "/healthz", &[], b""))
        .await
        .expect("HTTP answers");
    assert_eq!(status, 200);
    assert!(relay.metric("tally_sockets_evicted_total").await > 0);
    drop(idle);
}

#[tokio::test]
async fn silent_trickling_and_idle_keep_alive_sockets_are_closed_after_the_header_timeout() {
    let relay = Binary::serve(&["alice"], &["--header-timeout", "1s"], None);
    let limit = Duration::from_secs(8);
    let mut silent = TcpStream::connect(relay.addr).await.unwrap();
    let mut trickle = TcpStream::connect(relay.addr).await.unwrap();
    let trickler = tokio::spawn(async move {
        for b in b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" {
            if trickle.write_all(&[*b]).await.is_err() {
                return Some(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    });
    let mut keep_alive = TcpStream::connect(relay.addr).await.unwrap();
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut silent, limit).await.is_some(),
        "a silent socket"
    );
    assert!(
        closed_within(&mut keep_alive, limit).await.is_some(),
        "an idle keep-alive"
    );
    assert_eq!(trickler.await.unwrap(), Some(()), "a trickled request is cut off");
}

#[tokio::test]
async fn the_hello_deadline_runs_from_accept_not_from_the_upgrade() {
    let relay = Binary::serve(&["alice"], &[], None);
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let started = Instant::now();
    let lines = [
        "GET /ws HTTP/1.1\r\n".to_string(),
        format!("Host: {}\r\n", relay.addr),
        "Connection: Upgrade\r\n".into(),
        "Upgrade: websocket\r\n".into(),
        "Sec-WebSocket-Version: 13\r\n".into(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n".into(),
        "\r\n".into(),
    ];
    for line in lines {
        s.write_all(line.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    // Upgraded after ~7 s; no hello follows. The 10 s count from accept, not from here.
    closed_within(&mut s, Duration::from_secs(30)).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(14), "closed after {took:?}");
}

#[tokio::test]
async fn a_reader_that_stopped_is_reset_soon_after_4008_and_counts_until_its_socket_is_gone() {
    let mut args = UNLIMITED.to_vec();
    args.extend(["--connections-per-staff", "1"]);
    let relay = Binary::serve(&["alice", "bob"], &args, None);
    let mut alice = relay.connect("alice").await;
    let dm = direct(&mut alice, "bob").await;
    let (stalled, bob_port) = never_reading(relay.addr, &relay.token("bob"), &[]).await;
    let relay_port = relay.addr.port();
    assert!(established(relay_port, bob_port));
    let body = "x".repeat(400);
    let mut sent = 0;
    while relay.metric("tally_slow_consumer_disconnects_total").await == 0 {
        flood(&mut alice, dm, 1000, &body).await;
        sent += 1000;
        assert!(sent < 50_000, "never closed as a slow consumer");
    }
    let closed_at = Instant::now();
    // Still there, so still counted: a second tab of Bob is over the cap of 1.
    let mut second = Client::raw(relay.addr).await;
    let hello = ClientFrame::new(Request::hello(relay.token("bob"), None));
    second.send(Message::text(encode(&hello))).await.unwrap();
    let mut refused = None;
    while let Some(Ok(m)) = second.next().await {
        if let Message::Close(f) = m {
            refused = f.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(refused, Some(close::TOO_MANY_CONNECTIONS));
    while established(relay_port, bob_port) {
        assert!(
            closed_at.elapsed() < Duration::from_secs(10),
            "still ESTABLISHED 10 s after 4008"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Gone, so no longer counted.
    let mut bob = tokio::time::timeout(WAIT, relay.connect("bob")).await.unwrap();
    bob.sync().await;
    assert!(relay.metric("tally_sockets_killed_total").await >= 1);
    drop(stalled);
}

#[tokio::test]
async fn snapshots_requested_by_a_reader_that_stopped_are_bounded_in_bytes() {
    let mut args = UNLIMITED.to_vec();
    args.extend(["--snapshots-per-sec", "1e9", "--snapshot-burst", "1e9"]);
    let relay = Binary::serve(&["alice", "bob"], &args, None);
    let mut alice = relay.connect("alice").await;
    // Bob's snapshot: 40 conversations with 200 unread messages each, about 3 MB.
    let body = "y".repeat(200);
    for i in 0..40 {
        let group = alice
            .call(Request::CreateGroup {
                client_id: ClientMsgId::new(format!("g{i}")).unwrap(),
                title: format!("Group {i}"),
                participants: vec![sid("bob")],
            })
            .await
            .unwrap()
            .conversation
            .unwrap();
        flood(&mut alice, group, 200, &body).await;
    }
    let before = relay.rss_kib();
    let asks: Vec<ClientFrame> = (0..120)
        .map(|_| ClientFrame::new(Request::RequestSnapshot))
        .collect();
    let (stalled, _) = never_reading(relay.addr, &relay.token("bob"), &asks).await;
    // Every request has been handled once a later ping of Alice's is answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    alice.sync().await;
    let grown_mib = relay.rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "120 unread snapshots grew the relay by {grown_mib} MiB"
    );
    assert!(relay.metric("tally_slow_consumer_disconnects_total").await >= 1);
    drop(stalled);
}

#[tokio::test]
async fn stalled_downloads_do_not_hold_their_files_in_memory() {
    let relay = Binary::serve(&["alice", "bob"], &UNLIMITED, None);
    let mut alice = relay.connect("alice").await;
    let dm = direct(&mut alice, "bob").await;
    let file: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let auth = bearer(&relay.token("alice"));
    let (status, _, body) = http(
        relay.addr,
        "POST",
        "/api/attachments?name=big.bin",
        &[("Authorization", &auth)],
        &file,
    )
    .await;
    assert_eq!(status, 201);
    let attachment: tally_shared::Attachment = serde_json::from_slice(&body).unwrap();
    alice
        .call(Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: ClientMsgId::new("big").unwrap(),
            conversation: dm,
            body: String::new(),
            attachments: vec![attachment.id.clone()],
            reply_to: None,
        })
        .await
        .unwrap();
    let before = relay.rss_kib();
    let bob = bearer(&relay.token("bob"));
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(relay.addr).await.unwrap();
        let req = format!(
            "GET /api/attachments/{} HTTP/1.1\r\nHost: x\r\nAuthorization: {bob}\r\n\r\n",
            attachment.id
        );
        s.write_all(req.as_bytes()).await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown_mib = relay.rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "40 stalled downloads of 10 MiB grew the relay by {grown_mib} MiB"
    );
    // And a download that reads gets the whole file.
    let (status, _, got) = http(
        relay.addr,
        "GET",
        &format!("/api/attachments/{}", attachment.id),
        &[("Authorization", &bob)],
        b"",
    )
    .await;
    assert_eq!((status, got.len()), (200, file.len()));
    assert!(got == file);
}

#[tokio::test]
async fn a_thousand_staff_behind_one_trusted_proxy_reconnect_at_once_with_default_limits() {
    let staff: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    let names: Vec<&str> = staff.iter().map(String::as_str).collect();
    let relay = Binary::serve(&names, &["--trust-proxy", "127.0.0.1"], None);
    let mut tasks = Vec::new();
    for (i, s) in staff.iter().enumerate() {
        let token = relay.token(s);
        let addr = relay.addr;
        tasks.push(tokio::spawn(async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
            let forwarded = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
            request
                .headers_mut()
                .insert("x-forwarded-for", forwarded.parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
            let hello = ClientFrame::new(Request::hello(token, None));
            ws.send(Message::text(encode(&hello))).await?;
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with(r#"{"type":"snapshot""#) => Ok(ws),
                other => panic!("no snapshot: {other:?}"),
            }
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        let ws: Result<_, tokio_tungstenite::tungstenite::Error> = t.await.unwrap();
        open.push(ws.expect("every staff member connects"));
    }
    assert_eq!(open.len(), 1000);
}
