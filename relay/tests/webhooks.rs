//! Webhooks through the real binary and a local receiver: deliveries are signed, a 500 is
//! retried with the same idempotency key, nothing queued is lost across a `kill -9`, and
//! `unread_reminder` fires once per person per quiet spell.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request the receiver got: its headers (lower-cased names) and body.
#[derive(Clone, Debug)]
struct Got {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A tiny HTTP receiver: records every request and answers the statuses it is told to
/// (the front of `script` first, then 200).
#[derive(Clone)]
struct Receiver {
    port: u16,
    tls: bool,
    /// Connections accepted (a TLS handshake that failed included).
    accepted: Arc<Mutex<usize>>,
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<Vec<u16>>>,
    down: Arc<Mutex<bool>>,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::listen(None).await
    }

    /// A receiver over TLS, with a certificate and key from `tests/fixtures/tls`.
    async fn start_tls(cert: &str) -> Receiver {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let pem = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let certs = rustls_pemfile::certs(&mut pem(cert).as_slice())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut pem("receiver.key").as_slice())
            .unwrap()
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Receiver::listen(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn listen(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            port: listener.local_addr().unwrap().port(),
            tls: tls.is_some(),
            accepted: Arc::default(),
            got: Arc::default(),
            script: Arc::default(),
            down: Arc::default(),
        };
        let me = r.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                *me.accepted.lock().unwrap() += 1;
                let me = me.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => me.answer(s).await,
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(s).await {
                                me.answer(s).await;
                            }
                        }
                    }
                });
            }
        });
        r
    }

    /// Reads one request and answers it.
    async fn answer(&self, mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let split = loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
        };
        let head = String::from_utf8_lossy(&buf[..split]).to_string();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = buf[split + 4..].to_vec();
        while body.len() < length {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        let status = if *self.down.lock().unwrap() {
            503
        } else {
            let mut script = self.script.lock().unwrap();
            if script.is_empty() { 200 } else { script.remove(0) }
        };
        self.got.lock().unwrap().push(Got { headers, body });
        let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(answer.as_bytes()).await;
        let _ = s.shutdown().await;
    }

    fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}/hooks/tally", self.port)
        } else {
            format!("http://127.0.0.1:{}/hooks/tally", self.port)
        }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for what was received.
    async fn until(&self, what: &str, pred: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.got();
            if pred(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited for {what}; got {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn signed_by(secret: &str, got: &Got) -> bool {
    let sig = got.header("tally-signature");
    let Some((t, v1)) = sig.strip_prefix("t=").and_then(|s| s.split_once(",v1=")) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&got.body);
    mac.verify_slice(&hex::decode(v1).unwrap()).is_ok()
}

async fn post(addr: std::net::SocketAddr, key: &str, body: Value) -> Value {
    let auth = bearer(key);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, _, out) = http(
        addr,
        "POST",
        "/api/v1/service/messages",
        &headers,
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&out));
    serde_json::from_slice(&out).unwrap()
}

/// Long enough for a running relay to pick up a webhook the CLI added (it rereads every second).
const PICKED_UP: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn deliveries_are_signed_retried_and_survive_a_kill_9() {
    let receiver = Receiver::start().await;
    let mut relay = Binary::serve(&["alice", "bob"], &UNLIMITED, None);
    let data = relay.dir.path().to_path_buf();
    let key = cli(&data, &["service-key", "create", "app"]);
    let secret = cli(
        &data,
        &["webhook", "add", &receiver.url(), "--events", "message_created"],
    );
    assert!(secret.starts_with("whsec_"), "{secret}");
    tokio::time::sleep(PICKED_UP).await;

    // A 500 first: retried, with the same idempotency key, both signed.
    receiver.script.lock().unwrap().push(500);
    let first = post(
        relay.addr,
        &key,
        json!({"direct": ["alice", "bob"], "sender": "alice", "body": "one"}),
    )
    .await;
    let got = receiver.until("a retry after the 500", |g| g.len() >= 2).await;
    assert_eq!(got[0].header("tally-delivery"), got[1].header("tally-delivery"));
    assert_eq!(got[0].header("tally-event"), "message_created");
    for g in &got {
        assert!(signed_by(&secret, g), "signed: {g:?}");
        let mut tampered = g.clone();
        tampered.body.push(b' ');
        assert!(
            !signed_by(&secret, &tampered),
            "a changed body fails the signature"
        );
        assert!(!signed_by("whsec_other", g));
    }
    let body = got[1].json();
    assert_eq!(body["type"], "message_created");
    assert_eq!(body["id"], got[1].header("tally-delivery"));
    assert_eq!(body["data"]["message"], first["message"]);
    assert_eq!(body["data"]["offset"], first["offset"]);

    // The receiver goes down; two messages wait in the outbox; the relay is killed.
    *receiver.down.lock().unwrap() = true;
    let mut waiting = Vec::new();
    for text in ["two", "three"] {
        let posted = post(
            relay.addr,
            &key,
            json!({"direct": ["alice", "bob"], "sender": "bob", "body": text}),
        )
        .await;
        waiting.push(posted["message"]["id"].clone());
    }
    receiver.until("the failed attempts", |g| g.len() >= 4).await;
    relay.child.kill().unwrap();
    relay.child.wait().unwrap();
    *receiver.down.lock().unwrap() = false;
    let before = receiver.got().len();

    // Restarted, the relay delivers both, exactly as queued.
    let (_restarted, _) = spawn(&data, &UNLIMITED, None);
    let got = receiver
        .until("both waiting deliveries after the restart", |g| {
            let delivered: Vec<Value> = g[before..]
                .iter()
                .map(|r| r.json()["data"]["message"]["id"].clone())
                .collect();
            waiting.iter().all(|w| delivered.contains(w))
        })
        .await;
    for g in &got[before..] {
        assert!(signed_by(&secret, g));
    }
    let listed = cli(&data, &["webhook", "list"]);
    assert!(listed.contains("pending 0\tfailed 0"), "{listed}");
}

/// A relay reminding after 1 s to a receiver; its service key and the webhook's secret.
async fn reminding() -> (Receiver, Binary, String, String) {
    let receiver = Receiver::start().await;
    let args: Vec<&str> = UNLIMITED
        .iter()
        .copied()
        .chain(["--reminder-after", "1s"])
        .collect();
    let relay = Binary::serve(&["alice", "bob"], &args, None);
    let data = relay.dir.path().to_path_buf();
    let key = cli(&data, &["service-key", "create", "app"]);
    let secret = cli(
        &data,
        &["webhook", "add", &receiver.url(), "--events", "unread_reminder"],
    );
    tokio::time::sleep(PICKED_UP).await;
    (receiver, relay, key, secret)
}

#[tokio::test]
async fn an_unread_reminder_fires_once_per_quiet_spell() {
    let (receiver, relay, key, secret) = reminding().await;

    // Alice writes to bob, who has no connection open: one reminder, for him alone.
    for text in ["are you there?", "the lab called"] {
        post(
            relay.addr,
            &key,
            json!({"direct": ["alice", "bob"], "sender": "alice", "body": text}),
        )
        .await;
    }
    let got = receiver.until("a reminder", |g| !g.is_empty()).await;
    let reminder = got[0].json();
    assert!(signed_by(&secret, &got[0]));
    assert_eq!(reminder["type"], "unread_reminder");
    assert_eq!(reminder["data"]["staff"], "bob");
    assert_eq!(reminder["data"]["total"]["unread"], 2);
    assert_eq!(reminder["data"]["conversations"][0]["unread"], 2);
    // More messages in the same quiet spell: no second reminder.
    post(
        relay.addr,
        &key,
        json!({"direct": ["alice", "bob"], "sender": "alice", "body": "hello?"}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.got().len(), 1, "once per quiet spell");

    // Bob comes and goes without reading: a new spell, a new reminder (with 3 unread now).
    let bob = relay.connect("bob").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(bob);
    let got = receiver.until("a second reminder", |g| g.len() >= 2).await;
    assert_eq!(got[1].json()["data"]["total"]["unread"], 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.got().len(), 2);
}

#[tokio::test]
async fn a_snooze_holds_the_unread_reminder_until_it_ends() {
    let (receiver, relay, key, _) = reminding().await;
    // Bob snoozes for 6 s and leaves.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let until = now + 6_000;
    let mut bob = relay.connect("bob").await;
    bob.call(tally_shared::Request::SetQuiet {
        quiet: tally_shared::quiet::Quiet {
            snooze_until: Some(tally_shared::Millis(until)),
            ..Default::default()
        },
    })
    .await
    .unwrap();
    drop(bob);
    post(
        relay.addr,
        &key,
        json!({"direct": ["alice", "bob"], "sender": "alice", "body": "are you there?"}),
    )
    .await;
    // A reminder would be due a second later; the snooze holds it…
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(receiver.got().is_empty(), "held while snoozed");
    // …until it ends.
    let got = receiver
        .until("the reminder after the snooze", |g| !g.is_empty())
        .await;
    let arrived = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(arrived >= until, "not before the snooze ended");
    assert_eq!(got[0].json()["data"]["staff"], "bob");
}

#[tokio::test]
async fn a_deleted_messages_text_leaves_pending_deliveries_and_a_message_deleted_follows() {
    let receiver = Receiver::start().await;
    let relay = Binary::serve(&["alice", "bob"], &UNLIMITED, None);
    let data = relay.dir.path().to_path_buf();
    cli(
        &data,
        &[
            "webhook",
            "add",
            &receiver.url(),
            "--events",
            "message_created,message_deleted",
        ],
    );
    tokio::time::sleep(PICKED_UP).await;
    // The receiver is down: the deliveries wait in the outbox, retrying.
    *receiver.down.lock().unwrap() = true;
    let mut alice = relay.connect("alice").await;
    let dm = alice.direct_with("bob").await;
    let secret = alice
        .call(send(dm, "s-1", "the door code is 4711"))
        .await
        .unwrap();
    let reply = tally_shared::Request::SendMessage {
        mention_ranges: Vec::new(),
        client_id: tally_shared::ClientMsgId::new("s-2").unwrap(),
        conversation: dm,
        body: "noted".into(),
        attachments: vec![],
        reply_to: secret.message,
    };
    alice.call(reply).await.unwrap();
    receiver.until("failed attempts of both", |g| g.len() >= 2).await;
    alice
        .call(tally_shared::Request::DeleteMessage {
            message: secret.message.unwrap(),
        })
        .await
        .unwrap();
    // Nothing waiting in the outbox holds the text any more.
    let conn = rusqlite::Connection::open(data.join("tally.sqlite3")).unwrap();
    let bodies: Vec<String> = conn
        .prepare("SELECT body FROM outbox")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(bodies.len(), 3, "two creations and the deletion: {bodies:?}");
    assert!(bodies.iter().all(|b| !b.contains("4711")), "{bodies:?}");
    // Back up: the retries carry the tombstone and the redacted quote, and the deletion follows.
    let before = receiver.got().len();
    *receiver.down.lock().unwrap() = false;
    let got = receiver
        .until("the retries and the deletion", |g| {
            let types: Vec<Value> = g[before..].iter().map(|r| r.json()["type"].clone()).collect();
            types.iter().filter(|t| *t == "message_created").count() >= 2
                && types.contains(&json!("message_deleted"))
        })
        .await;
    for g in &got[before..] {
        assert!(!String::from_utf8_lossy(&g.body).contains("4711"), "{g:?}");
    }
    let later: Vec<Value> = got[before..].iter().map(Got::json).collect();
    let created = |id: &Value| {
        later
            .iter()
            .find(|d| d["type"] == "message_created" && &d["data"]["message"]["id"] == id)
            .cloned()
            .unwrap()
    };
    let deleted_id = json!(secret.message.unwrap().0);
    let tombstone = created(&deleted_id);
    assert_eq!(tombstone["data"]["message"]["body"], "");
    assert_eq!(tombstone["data"]["message"]["deleted"], true);
    let quoting = later
        .iter()
        .find(|d| d["type"] == "message_created" && d["data"]["message"]["id"] != deleted_id)
        .unwrap();
    assert_eq!(quoting["data"]["message"]["reply_to"]["excerpt"], "");
    assert_eq!(quoting["data"]["message"]["reply_to"]["deleted"], true);
    let deletion = later.iter().find(|d| d["type"] == "message_deleted").unwrap();
    assert_eq!(deletion["data"]["message"], deleted_id);
    assert_eq!(deletion["data"]["conversation"], json!(dm.0));
    assert_eq!(deletion["data"]["sender"], "alice");
}

/// A receiver that accepts connections, reads them, and never answers; counts the connections
/// the relay gave up on (closed).
async fn black_hole() -> (u16, Arc<Mutex<(usize, usize)>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<(usize, usize)>> = Arc::default();
    let counts = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            counts.lock().unwrap().0 += 1;
            let counts = counts.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                counts.lock().unwrap().1 += 1;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn a_receiver_that_never_answers_holds_only_its_share_of_the_slots() {
    let (hole, hole_seen) = black_hole().await;
    let receiver = Receiver::start().await;
    let relay = Binary::serve(&["alice", "bob"], &UNLIMITED, None);
    let data = relay.dir.path().to_path_buf();
    let key = cli(&data, &["service-key", "create", "app"]);
    let hole_url = format!("http://127.0.0.1:{hole}/hooks");
    cli(
        &data,
        &["webhook", "add", &hole_url, "--events", "message_created"],
    );
    cli(
        &data,
        &["webhook", "add", &receiver.url(), "--events", "message_created"],
    );
    tokio::time::sleep(PICKED_UP).await;
    for i in 0..20 {
        let body = json!({"direct": ["alice", "bob"], "sender": "alice", "body": format!("m{i}")});
        post(relay.addr, &key, body).await;
    }
    // The healthy receiver gets all twenty while the silent one still holds its first
    // connections open (the relay gives up on one after 10 s): it never had all the slots.
    receiver.until("all twenty", |g| g.len() >= 20).await;
    let (opened, closed) = *hole_seen.lock().unwrap();
    assert_eq!(
        closed, 0,
        "the healthy receiver waited for the silent one's timeouts"
    );
    assert!(
        (1..=tally_relay::webhooks::share(2)).contains(&opened),
        "the silent receiver held {opened} slots"
    );
}

#[tokio::test]
async fn delivery_ids_are_never_reused_even_after_the_outbox_drains_and_a_restart() {
    let receiver = Receiver::start().await;
    let mut relay = Binary::serve(&["alice", "bob"], &UNLIMITED, None);
    let data = relay.dir.path().to_path_buf();
    let key = cli(&data, &["service-key", "create", "app"]);
    cli(
        &data,
        &["webhook", "add", &receiver.url(), "--events", "message_created"],
    );
    tokio::time::sleep(PICKED_UP).await;
    let drained = |data: &std::path::Path| {
        let conn = rusqlite::Connection::open(data.join("tally.sqlite3")).unwrap();
        conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .unwrap()
            == 0
    };
    let mut addr = relay.addr;
    let mut _restarted = None;
    for i in 0..4 {
        if i == 2 {
            relay.child.kill().unwrap();
            relay.child.wait().unwrap();
            let (child, a) = spawn(&data, &UNLIMITED, None);
            _restarted = Some(child);
            addr = a;
        }
        let body = json!({"direct": ["alice", "bob"], "sender": "alice", "body": format!("m{i}")});
        post(addr, &key, body).await;
        receiver.until("the delivery", |g| g.len() > i).await;
        for _ in 0..100 {
            if drained(&data) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(drained(&data), "the outbox drains");
    }
    let ids: std::collections::HashSet<String> = receiver
        .got()
        .iter()
        .map(|g| g.header("tally-delivery").to_string())
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
}

#[test]
fn a_webhook_url_with_spaces_or_line_breaks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    add_staff(dir.path(), &["alice"]);
    for bad in ["http://h/a b", "http://h/x\r\nX-Evil: 1", "http://h\n/x"] {
        let out = cli_output(
            dir.path(),
            &["webhook", "add", bad, "--events", "message_created"],
        );
        assert!(!out.status.success(), "{bad:?} was accepted");
    }
}

#[tokio::test]
async fn deliveries_verify_with_the_standard_webhooks_reference_library() {
    let receiver = Receiver::start().await;
    let relay = Binary::serve(&["alice", "bob"], &UNLIMITED, None);
    let data = relay.dir.path().to_path_buf();
    let key = cli(&data, &["service-key", "create", "app"]);
    let secret = cli(
        &data,
        &["webhook", "add", &receiver.url(), "--events", "message_created"],
    );
    tokio::time::sleep(PICKED_UP).await;
    post(
        relay.addr,
        &key,
        json!({"direct": ["alice", "bob"], "sender": "alice", "body": "Grüße, ✓"}),
    )
    .await;
    let got = receiver.until("a delivery", |g| !g.is_empty()).await;
    let g = &got[0];
    assert_eq!(g.header("webhook-id"), g.header("tally-delivery"));
    // PyPI's `standardwebhooks` (make test installs it into tools/venv) verifies it, and
    // refuses it with a byte changed or another secret.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body"), &g.body).unwrap();
    let headers = json!({
        "webhook-id": g.header("webhook-id"),
        "webhook-timestamp": g.header("webhook-timestamp"),
        "webhook-signature": g.header("webhook-signature"),
    });
    std::fs::write(dir.path().join("headers.json"), headers.to_string()).unwrap();
    let script = r#"
import json, sys
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
body = open(sys.argv[1] + "/body", "rb").read()
headers = json.load(open(sys.argv[1] + "/headers.json"))
event = Webhook(sys.argv[2]).verify(body, headers)
assert event["type"] == "message_created", event
for secret, data in [("whsec_" + "ab" * 32, body), (sys.argv[2], body + b" ")]:
    try:
        Webhook(secret).verify(data, headers)
        sys.exit("a forgery verified")
    except WebhookVerificationError:
        pass
print("verified")
"#;
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .arg(&secret)
        .output()
        .expect("tools/venv/bin/python (make test makes it)");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("verified"),
        "{}{} (make test installs standardwebhooks into tools/venv)",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deliveries over HTTPS (rustls): to a receiver whose certificate a CA given with
/// `--webhook-ca` vouches for, signed as over HTTP; never to one whose certificate no trusted
/// root vouches for (the attempt fails and stays queued); and a CA file that is not one stops
/// the relay from starting, saying why.
#[tokio::test]
async fn deliveries_go_over_https_to_a_receiver_the_trusted_ca_vouches_for_and_no_other() {
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem");
    let ca = ca.to_str().unwrap();
    let trusted = Receiver::start_tls("receiver.pem").await;
    let impostor = Receiver::start_tls("untrusted.pem").await;
    let args: Vec<&str> = UNLIMITED.iter().copied().chain(["--webhook-ca", ca]).collect();
    let relay = Binary::serve(&["alice", "bob"], &args, None);
    let data = relay.dir.path().to_path_buf();
    let key = cli(&data, &["service-key", "create", "app"]);
    let secret = cli(
        &data,
        &["webhook", "add", &trusted.url(), "--events", "message_created"],
    );
    cli(
        &data,
        &["webhook", "add", &impostor.url(), "--events", "message_created"],
    );
    tokio::time::sleep(PICKED_UP).await;
    let posted = post(
        relay.addr,
        &key,
        json!({"direct": ["alice", "bob"], "sender": "alice", "body": "over TLS"}),
    )
    .await;
    let got = trusted.until("a delivery over TLS", |g| !g.is_empty()).await;
    assert!(signed_by(&secret, &got[0]));
    assert_eq!(got[0].json()["data"]["message"], posted["message"]);
    assert_eq!(got[0].header("host"), format!("localhost:{}", trusted.port));
    // The impostor was tried (its handshake failed) and got nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while *impostor.accepted.lock().unwrap() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the impostor was never tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        impostor.got().is_empty(),
        "nothing reached an unverified receiver"
    );
    let listed = cli(&data, &["webhook", "list"]);
    assert!(
        listed.contains("pending 1"),
        "the impostor's delivery waits: {listed}"
    );

    // A CA file that holds no certificate: the relay refuses to start, and says why.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let out = cli_output(
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--webhook-ca",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--webhook-ca"), "{err}");
}
