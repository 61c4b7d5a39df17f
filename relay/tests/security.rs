//! The security suite: each test names the attack it stops. Real sockets, a real relay.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tally_relay::auth::{AUDIENCE, Claims, now_secs};
use tally_relay::limits::Limits;
use tally_shared::protocol::{ServerFrame, close, encode};
use tally_shared::{ClientFrame, ClientMsgId, ErrorCode, Request};
use tokio_tungstenite::tungstenite::Message;

async fn hello(relay: &Relay, token: &str) -> Ws {
    let mut ws = Client::raw(relay.addr).await;
    let frame = ClientFrame::new(Request::hello(token, None));
    ws.send(Message::text(encode(&frame))).await.unwrap();
    ws
}

/// Reads until the socket closes; returns the last error code and the close code.
async fn refusal(ws: &mut Ws) -> (Option<ErrorCode>, Option<u16>) {
    let mut code = None;
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Text(t))) => {
                if let Ok(ServerFrame::Error(e)) = serde_json::from_str(&t) {
                    code = Some(e.code);
                }
            }
            Some(Ok(Message::Close(f))) => return (code, f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            _ => return (code, None),
        }
    }
}

#[tokio::test]
async fn flooding_writes_is_rate_limited_with_a_retry_hint_and_stores_nothing() {
    let relay = Relay::start_with(&["alice", "bob"], |c| {
        c.limits = Limits {
            writes_per_sec: 1.0,
            write_burst: 3.0,
            ..Limits::unlimited()
        }
    })
    .await;
    let mut alice = relay.connect("alice").await;
    let dm = alice
        .call(Request::CreateDirect { staff: sid("bob") })
        .await
        .unwrap()
        .conversation
        .unwrap();
    let send = |i: u32| Request::SendMessage {
        mention_ranges: Vec::new(),
        client_id: ClientMsgId::new(format!("f{i}")).unwrap(),
        conversation: dm,
        body: "spam".into(),
        attachments: vec![],
        reply_to: None,
    };
    assert!(alice.call(send(1)).await.is_ok());
    assert!(alice.call(send(2)).await.is_ok());
    let err = alice.call(send(3)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::RateLimited);
    assert!(
        err.retry_after_ms.is_some_and(|ms| ms > 0 && ms <= 1000),
        "{err:?}"
    );
    let bob = relay.connect("bob").await;
    assert_eq!(bob.store.counts(dm).unread, 2, "the refused send stored nothing");
    let (_, _, metrics) = http(relay.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        String::from_utf8(metrics)
            .unwrap()
            .contains("tally_rejected_frames_total{code=\"rate_limited\"} 1")
    );
}

#[tokio::test]
async fn one_staff_member_cannot_open_unbounded_connections() {
    let relay = Relay::start_with(&["alice"], |c| {
        c.limits = Limits {
            connections_per_staff: 2,
            ..Limits::unlimited()
        }
    })
    .await;
    let _one = relay.connect("alice").await;
    let _two = relay.connect("alice").await;
    let mut three = hello(&relay, &relay.token("alice")).await;
    let (code, close_code) = refusal(&mut three).await;
    assert_eq!(code, Some(ErrorCode::RateLimited));
    assert_eq!(close_code, Some(close::TOO_MANY_CONNECTIONS));
}

#[tokio::test]
async fn one_address_cannot_hammer_the_upgrade_endpoint() {
    let relay = Relay::start_with(&["alice"], |c| {
        c.limits = Limits {
            connects_per_sec: 0.01,
            connect_burst: 2.0,
            ..Limits::unlimited()
        }
    })
    .await;
    let _a = Client::raw(relay.addr).await;
    let _b = Client::raw(relay.addr).await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/ws", relay.addr))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
}

#[tokio::test]
async fn a_deactivated_staff_member_is_cut_off_within_a_second() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let token = relay.token("alice");
    let mut alice = relay.connect("alice").await;
    let started = Instant::now();
    cli(relay.dir.path(), &["staff", "deactivate", "alice"]);
    assert_eq!(alice.closed_with().await, Some(close::DEACTIVATED));
    eprintln!("closed {:?} after deactivation", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3));
    // Her still-valid token no longer works, on the socket or over HTTP.
    let (code, close_code) = refusal(&mut hello(&relay, &token).await).await;
    assert_eq!(
        (code, close_code),
        (Some(ErrorCode::Unauthorized), Some(close::UNAUTHORIZED))
    );
    let status = http(
        relay.addr,
        "GET",
        "/api/conversations/1/messages",
        &[("Authorization", &bearer(&token))],
        b"",
    )
    .await
    .0;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn expired_wrong_audience_and_future_tokens_are_refused() {
    let relay = Relay::start(&["alice"]).await;
    let now = now_secs();
    let claims = |aud: &str, iat: u64, exp: u64| Claims {
        sub: "alice".into(),
        aud: aud.into(),
        iat,
        exp,
        nbf: None,
    };
    for (what, token) in [
        (
            "expired past the leeway",
            relay.keys.sign(&claims(AUDIENCE, now - 7200, now - 3600)),
        ),
        (
            "for another audience",
            relay.keys.sign(&claims("billing", now, now + 600)),
        ),
        (
            "issued in the future",
            relay.keys.sign(&claims(AUDIENCE, now + 3600, now + 7200)),
        ),
    ] {
        let (code, close_code) = refusal(&mut hello(&relay, &token).await).await;
        assert_eq!(code, Some(ErrorCode::Unauthorized), "{what}");
        assert_eq!(close_code, Some(close::UNAUTHORIZED), "{what}");
    }
    // Within the clock-skew leeway still works.
    let skewed = relay.keys.sign(&claims(AUDIENCE, now - 3600, now - 10));
    let mut c = Client::connect(relay.addr, &skewed, None).await;
    c.sync().await;
}

#[tokio::test]
async fn tokens_in_urls_are_not_accepted() {
    let relay = Relay::start(&["alice"]).await;
    let token = relay.token("alice");
    for path in [
        format!("/api/conversations/1/messages?token={token}"),
        format!("/api/attachments/{}?access_token={token}", "a".repeat(64)),
    ] {
        let (status, _, body) = http(relay.addr, "GET", &path, &[], b"").await;
        assert_eq!(status, 401, "{path}");
        assert!(String::from_utf8_lossy(&body).contains("unauthorized"));
    }
}

#[tokio::test]
async fn pages_are_served_with_a_strict_policy_and_no_framing() {
    let dist = tempfile::tempdir().unwrap();
    let script = "import init from '/x.js'; await init();";
    std::fs::write(
        dist.path().join("index.html"),
        format!("<html><head><script type=\"module\">{script}</script></head></html>"),
    )
    .unwrap();
    let static_dir = dist.path().to_path_buf();
    let relay = Relay::start_with(&["alice"], move |c| c.static_dir = Some(static_dir)).await;
    let (status, head, _) = http(relay.addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("x-frame-options: deny"));
    assert!(head.contains("x-content-type-options: nosniff"));
    assert!(head.contains("referrer-policy: no-referrer"));
    assert!(head.contains("frame-ancestors 'none'"));
    assert!(
        head.contains("script-src 'self' 'wasm-unsafe-eval' 'sha256-"),
        "{head}"
    );
    assert!(
        !head.contains("unsafe-inline' 'self'"),
        "no inline scripts beyond the hashed loader"
    );
    assert!(head.contains("cache-control: no-cache"));
}
