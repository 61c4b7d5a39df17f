//! The service API against the real binary: each endpoint, each refusal (typed, and changing
//! nothing), idempotent retries, a revoked key; and posts watched by every participant's
//! WebSocket, whose counts must equal the naive oracle's over the stored log.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{Value, json};
use tally_shared::oracle::Oracle;
use tally_shared::protocol::LoggedEvent;
use tally_shared::{ConversationId, Request, Seq};

struct Api {
    addr: SocketAddr,
    key: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let auth = bearer(&self.key);
        raw(self.addr, method, path, &auth, body).await
    }
}

async fn raw(addr: SocketAddr, method: &str, path: &str, auth: &str, body: Value) -> (u16, Value) {
    let text = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let mut headers = vec![("Content-Type", "application/json")];
    if !auth.is_empty() {
        headers.push(("Authorization", auth));
    }
    let (status, _, out) = http(addr, method, &format!("/api/v1/service{path}"), &headers, &text).await;
    let json = if out.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out).unwrap()
    };
    (status, json)
}

fn relay() -> (Binary, Api) {
    let relay = Binary::serve(&["alice", "bob", "carol"], &UNLIMITED, None);
    let key = cli(relay.dir.path(), &["service-key", "create", "work-app"]);
    let api = Api {
        addr: relay.addr,
        key,
    };
    (relay, api)
}

/// The relay's offset, from `/healthz`.
async fn offset(addr: SocketAddr) -> u64 {
    let (_, _, body) = http(addr, "GET", "/healthz", &[], b"").await;
    serde_json::from_slice::<Value>(&body).unwrap()["offset"]
        .as_u64()
        .unwrap()
}

/// The stored log, as the oracle counts it.
fn oracle_of(data: &std::path::Path) -> Oracle {
    let conn = rusqlite::Connection::open(data.join("tally.sqlite3")).unwrap();
    let mut oracle = Oracle::new();
    tally_relay::storage::for_each_event(&conn, |e: LoggedEvent| oracle.observe_logged(&e.event)).unwrap();
    oracle
}

#[tokio::test]
async fn every_endpoint_answers_and_every_refusal_is_typed_and_changes_nothing() {
    let (relay, api) = relay();
    // No key, a staff token, a made-up key: 401 with a code.
    for auth in [
        String::new(),
        bearer(&relay.token("alice")),
        bearer("tally_sk_00"),
    ] {
        let (status, body) = raw(api.addr, "GET", "/staff/alice/unread", &auth, Value::Null).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{auth}"
        );
    }

    // The staff mirror: add dave, rename bob; a bad list changes nothing.
    let staff = json!([
        {"id": "alice", "name": "ALICE"},
        {"id": "bob", "name": "Bob Martin"},
        {"id": "carol", "name": "CAROL"},
        {"id": "dave", "name": "Dave", "active": true},
    ]);
    let (status, report) = api.call("PUT", "/staff", staff.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["added"].as_u64(), report["changed"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, again) = api.call("PUT", "/staff", staff).await;
    assert_eq!(
        (again["added"].as_u64(), again["changed"].as_u64()),
        (Some(0), Some(0))
    );
    for bad in [
        json!([{"id": "system", "name": "Mallory"}]),
        json!([{"id": "Eve!", "name": "Eve"}]),
        json!([{"id": "eve", "name": " "}]),
        json!([{"id": "eve", "name": "Eve"}, {"id": "eve", "name": "Eve"}]),
        json!([{"id": "eve", "name": "Eve", "admin": true}]),
        json!({"id": "eve"}),
    ] {
        let (status, body) = api.call("PUT", "/staff", bad.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_input")),
            "{bad}"
        );
    }
    let (status, _) = api.call("GET", "/staff/eve/unread", Value::Null).await;
    assert_eq!(status, 404, "eve was never added");

    // A message from a staff member into a direct conversation opened on demand.
    let post = json!({"direct": ["alice", "bob"], "sender": "alice", "body": "Lab results are in", "client_id": "lab-1"});
    let (status, first) = api.call("POST", "/messages", post.clone()).await;
    assert_eq!(status, 201, "{first}");
    let dm = first["message"]["conversation"].as_u64().unwrap();
    assert_eq!(first["message"]["seq"], 1);
    assert_eq!(first["message"]["sender"], "alice");
    assert!(first["offset"].as_u64().unwrap() > 0);
    // Its retry: the same message, nothing new.
    let (status, retry) = api.call("POST", "/messages", post).await;
    assert_eq!((status, &retry["message"]), (200, &first["message"]));
    assert_eq!(retry["offset"], first["offset"]);

    // A group by the service, a notice in it, membership changes.
    let group = json!({"title": "Ward 3 handover", "participants": ["alice", "bob"], "client_id": "ward-3"});
    let (status, made) = api.call("POST", "/conversations", group.clone()).await;
    assert_eq!(status, 201, "{made}");
    let g = made["conversation"]["id"].as_u64().unwrap();
    assert_eq!(made["conversation"]["created_by"], "system");
    assert_eq!(made["conversation"]["participants"], json!(["alice", "bob"]));
    let (status, same) = api.call("POST", "/conversations", group).await;
    assert_eq!(
        (status, &same["conversation"]["id"]),
        (200, &made["conversation"]["id"])
    );
    let notice = json!({"conversation": g, "notice": {"title": "Shift change", "text": "Night shift starts at 22:00"}});
    let (status, posted) = api.call("POST", "/messages", notice).await;
    assert_eq!(status, 201, "{posted}");
    assert_eq!(posted["message"]["sender"], "system");
    assert_eq!(
        posted["message"]["notice"],
        json!({"notice": "system", "title": "Shift change"})
    );
    let (status, added) = api
        .call(
            "POST",
            &format!("/conversations/{g}/participants"),
            json!({"staff": ["carol"]}),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(
        added["conversation"]["participants"],
        json!(["alice", "bob", "carol"])
    );
    let (status, removed) = api
        .call(
            "DELETE",
            &format!("/conversations/{g}/participants/alice"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["conversation"]["participants"], json!(["bob", "carol"]));

    // Counts, from the same projection: bob has the dm message, and in the group the `created`
    // notice, the shift notice, the `added carol` and the `removed alice` notices.
    let (status, unread) = api.call("GET", "/staff/bob/unread", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(unread["total"], json!({"unread": 5, "mentions": 0}), "{unread}");
    let by_id = |id: u64| {
        unread["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(dm)["unread"], 1);
    assert_eq!(by_id(g)["unread"], 4);
    assert_eq!(by_id(g)["title"], "Ward 3 handover");

    // Refusals: typed, and the log does not move.
    let offset_before = offset(relay.addr).await;
    let refusals = [
        (
            "POST",
            "/messages".to_string(),
            json!({"conversation": 999, "sender": "alice", "body": "x"}),
            404,
            "not_found",
        ),
        (
            "POST",
            "/messages".to_string(),
            json!({"conversation": g, "sender": "alice", "body": "x"}),
            403,
            "not_participant",
        ),
        (
            "POST",
            "/messages".to_string(),
            json!({"conversation": g, "sender": "bob", "body": ""}),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/messages".to_string(),
            json!({"conversation": g, "sender": "bob", "body": "x".repeat(9000)}),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/messages".to_string(),
            json!({"conversation": g, "body": "nobody"}),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/messages".to_string(),
            json!({"conversation": g, "direct": ["alice", "bob"], "sender": "bob", "body": "x"}),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/messages".to_string(),
            json!({"direct": ["alice", "bob"], "sender": "carol", "body": "x"}),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/messages".to_string(),
            json!({"conversation": g, "notice": {"title": ""}}),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/messages".to_string(),
            json!({"conversation": g, "sender": "bob", "body": "x", "attachments": ["ab"]}),
            404,
            "not_found",
        ),
        (
            "POST",
            "/messages".to_string(),
            json!({"conversation": dm, "sender": "alice", "body": "x", "reply_to": 99999}),
            404,
            "not_found",
        ),
        (
            "POST",
            "/conversations".to_string(),
            json!({"title": "Empty", "participants": []}),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/conversations".to_string(),
            json!({"title": "Ghosts", "participants": ["nobody"]}),
            404,
            "not_found",
        ),
        (
            "POST",
            format!("/conversations/{dm}/participants"),
            json!({"staff": ["carol"]}),
            403,
            "not_allowed",
        ),
        (
            "POST",
            format!("/conversations/{g}/participants"),
            json!({"staff": ["nobody"]}),
            404,
            "not_found",
        ),
        (
            "DELETE",
            format!("/conversations/{g}/participants/alice"),
            Value::Null,
            404,
            "not_found",
        ),
        (
            "POST",
            "/messages".to_string(),
            json!({"conversation": dm, "sender": "nobody", "body": "x"}),
            404,
            "not_found",
        ),
        (
            "GET",
            "/staff/nobody/unread".to_string(),
            Value::Null,
            404,
            "not_found",
        ),
        (
            "GET",
            "/staff/system/unread".to_string(),
            Value::Null,
            404,
            "not_found",
        ),
    ];
    for (method, path, body, status, code) in refusals {
        let (got, answer) = api.call(method, &path, body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{method} {path} {body}: {answer}"
        );
    }
    assert_eq!(
        offset(relay.addr).await,
        offset_before,
        "no refusal appended anything"
    );
    // A malformed body says what is wrong with it.
    let (status, answer) = api
        .call("POST", "/conversations", json!({"participants": ["bob"]}))
        .await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_input")));
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("missing field `title`"), "{answer}");

    // Deactivation by mirror closes sessions; the key, revoked, stops working at once.
    let mut carol = relay.connect("carol").await;
    let list = json!([{"id": "alice", "name": "ALICE"}, {"id": "bob", "name": "Bob Martin"}]);
    let (status, report) = api.call("PUT", "/staff?deactivate_missing=true", list).await;
    assert_eq!(status, 200);
    assert_eq!(report["deactivated_missing"], 2, "carol and dave: {report}");
    assert_eq!(
        carol.closed_with().await,
        Some(tally_shared::protocol::close::DEACTIVATED)
    );
    cli(relay.dir.path(), &["service-key", "revoke", "work-app"]);
    let (status, body) = api.call("GET", "/staff/bob/unread", Value::Null).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let listed = cli(relay.dir.path(), &["service-key", "list"]);
    assert!(
        listed.starts_with("work-app\t") && listed.contains("revoked"),
        "{listed}"
    );
    assert!(!listed.contains(&api.key), "a key is never shown again");
}

#[tokio::test]
async fn posts_through_the_service_api_reach_every_participant_with_the_oracles_counts() {
    let (relay, api) = relay();
    let (_, made) = api
        .call(
            "POST",
            "/conversations",
            json!({"title": "Front desk", "participants": ["alice", "bob", "carol"]}),
        )
        .await;
    let g = ConversationId(made["conversation"]["id"].as_u64().unwrap());
    let mut clients = Vec::new();
    for s in ["alice", "bob", "carol"] {
        clients.push((s, relay.connect(s).await));
    }
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for step in 0..60 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let who = ["alice", "bob", "carol"][(rng % 3) as usize];
        match (rng >> 8) % 5 {
            0 => {
                let notice = json!({"conversation": g.0, "notice": {"title": format!("Notice {step}")}});
                assert_eq!(api.call("POST", "/messages", notice).await.0, 201);
            }
            1 | 2 => {
                let body = json!({"conversation": g.0, "sender": who, "body": format!("step {step} @carol")});
                assert_eq!(api.call("POST", "/messages", body).await.0, 201);
            }
            3 => {
                let client = &mut clients.iter_mut().find(|(s, _)| *s == who).unwrap().1;
                let head = client.store.head(g).0;
                let up_to = Seq(head.saturating_sub((rng >> 16) % 3));
                client
                    .call(Request::MarkRead {
                        conversation: g,
                        up_to,
                    })
                    .await
                    .unwrap();
            }
            _ => {
                let body =
                    json!({"direct": [who, "alice"], "sender": "alice", "body": format!("direct {step}")});
                let expected = if who == "alice" { 400 } else { 201 };
                assert_eq!(api.call("POST", "/messages", body).await.0, expected);
            }
        }
        for (_, c) in &mut clients {
            c.sync().await;
        }
        let oracle = oracle_of(relay.dir.path());
        for (s, c) in &clients {
            let staff = sid(s);
            for (member, conv) in oracle.memberships() {
                if member == staff {
                    assert_eq!(
                        c.store.counts(conv),
                        oracle.counts(&staff, conv),
                        "{s} in {conv} at step {step}"
                    );
                }
            }
            assert_eq!(c.store.total(), oracle.total(&staff), "{s} at step {step}");
            let (_, unread) = api.call("GET", &format!("/staff/{s}/unread"), Value::Null).await;
            let total = oracle.total(&staff);
            assert_eq!(
                unread["total"],
                json!({"unread": total.unread, "mentions": total.mentions}),
                "{s}"
            );
        }
    }
}

#[tokio::test]
async fn a_refused_post_into_a_direct_conversation_opens_nothing() {
    // The probe: `direct: [a, b]` refused for its message still opened the conversation.
    let (relay, api) = relay();
    let before = offset(relay.addr).await;
    let refused = [
        json!({"direct": ["alice", "carol"], "body": "no sender nor notice"}),
        json!({"direct": ["alice", "carol"], "notice": {"title": "T"}, "body": "a notice has no body"}),
        json!({"direct": ["alice", "carol"], "sender": "alice", "body": ""}),
        json!({"direct": ["alice", "carol"], "sender": "alice", "body": "x".repeat(9000)}),
        json!({"direct": ["alice", "carol"], "sender": "alice", "body": "x", "attachments": ["ab"]}),
        json!({"direct": ["alice", "carol"], "sender": "alice", "body": "x", "reply_to": 1}),
        json!({"direct": ["alice", "carol"], "sender": "bob", "body": "not one of the two"}),
        json!({"direct": ["alice", "alice"], "sender": "alice", "body": "myself"}),
        json!({"direct": ["alice", "nobody"], "sender": "alice", "body": "x"}),
        json!({"direct": ["alice", "carol"], "notice": {"title": ""}}),
    ];
    for body in refused {
        let (status, answer) = api.call("POST", "/messages", body.clone()).await;
        assert!((400..500).contains(&status), "{body}: {status} {answer}");
        assert!(answer["code"].is_string(), "{body}: {answer}");
    }
    assert_eq!(offset(relay.addr).await, before, "a refusal wrote something");
    let (_, unread) = api.call("GET", "/staff/carol/unread", Value::Null).await;
    assert_eq!(unread["conversations"], json!([]), "nothing was opened: {unread}");
    // The same post, valid, opens it and posts in one write.
    let (status, posted) = api
        .call(
            "POST",
            "/messages",
            json!({"direct": ["alice", "carol"], "notice": {"title": "Rota"}}),
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    let (_, unread) = api.call("GET", "/staff/carol/unread", Value::Null).await;
    assert_eq!(unread["total"]["unread"], 1, "{unread}");
}

#[tokio::test]
async fn an_empty_mirror_cannot_deactivate_everyone() {
    let (relay, api) = relay();
    let (status, answer) = api.call("PUT", "/staff?deactivate_missing=true", json!([])).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_input")),
        "{answer}"
    );
    // Everyone still signs in.
    let mut alice = relay.connect("alice").await;
    alice.sync().await;
    // An empty list without deactivate_missing changes nothing and is fine.
    let (status, report) = api.call("PUT", "/staff", json!([])).await;
    assert_eq!(status, 200, "{report}");
}

#[tokio::test]
async fn forged_service_keys_are_throttled_per_address_and_the_real_key_still_works() {
    let (_relay, api) = relay();
    // The real key, used once: the relay has seen it valid.
    let (status, _) = api.call("GET", "/staff/alice/unread", Value::Null).await;
    assert_eq!(status, 200);
    let forged = bearer(&format!("tally_sk_{}", "0".repeat(64)));
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let (status, _) = raw(api.addr, "GET", "/staff/alice/unread", &forged, Value::Null).await;
        statuses.push(status);
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(unauthorized <= 22 && throttled >= 18, "{statuses:?}");
    // A 429 says when to come back, in the header clients honour and in the body.
    let headers = [("Authorization", forged.as_str())];
    let (status, head, body) = http(
        api.addr,
        "GET",
        "/api/v1/service/staff/alice/unread",
        &headers,
        b"",
    )
    .await;
    assert_eq!(status, 429);
    let retry_after = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(matches!(retry_after, Some(1..=60)), "{head}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{body}");
    // From the very same address, the real key is not locked out.
    let (status, body) = api.call("GET", "/staff/alice/unread", Value::Null).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn bad_bodies_are_400_with_the_reason_unknown_routes_404_and_wrong_methods_405() {
    // The probe: every one of these answered `405 not_allowed` from a relay serving the built
    // widget (its files answer every path, for GET).
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("index.html"), "<!doctype html><title>t</title>").unwrap();
    let dir = files.path().to_path_buf();
    let relay = Relay::start_with(&["alice", "bob"], move |c| c.static_dir = Some(dir)).await;
    let key = cli(relay.dir.path(), &["service-key", "create", "work-app"]);
    let api = Api {
        addr: relay.addr,
        key,
    };
    for (body, says) in [
        (json!("{not json"), "malformed body"),
        (
            json!({"conversation": 1, "sender": "alice", "body": "x", "colour": "red"}),
            "unknown field",
        ),
        (
            json!({"conversation": "1", "sender": "alice", "body": "x"}),
            "invalid type",
        ),
        (
            json!({"conversation": 1, "sender": "Not An Id!", "body": "x"}),
            "malformed body",
        ),
        (
            json!({"conversation": 1, "sender": "alice", "body": "x", "client_id": "has a space"}),
            "malformed body",
        ),
    ] {
        let text = match &body {
            Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        let auth = bearer(&api.key);
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let (status, _, out) = http(api.addr, "POST", "/api/v1/service/messages", &headers, &text).await;
        let answer: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("invalid_input")),
            "{body}: {answer}"
        );
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    let (status, answer) = api.call("POST", "/nothing-here", json!({})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("not_found")),
        "{answer}"
    );
    let (status, _) = raw(api.addr, "POST", "/../../api/v1/service/x", "", Value::Null).await;
    assert_eq!(status, 404);
    let (status, answer) = api.call("DELETE", "/messages", Value::Null).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (405, Some("not_allowed")),
        "{answer}"
    );
}

/// The work app posts a reply into a thread as a staff member: it counts for the thread's
/// followers (the root's author) and not in the conversation, the thread is in the
/// `message_created` message, and a reply that is also a notice, a direct post or a quote is
/// refused with a reason, storing nothing.
#[tokio::test]
async fn the_service_api_posts_into_a_thread() {
    let (relay, api) = relay();
    let (_, made) = api
        .call(
            "POST",
            "/conversations",
            json!({"title": "Rota", "participants": ["alice", "bob"]}),
        )
        .await;
    let g = made["conversation"]["id"].as_u64().unwrap();
    let mut alice = relay.connect("alice").await;
    let (status, root) = api
        .call(
            "POST",
            "/messages",
            json!({"conversation": g, "sender": "alice", "body": "Friday?"}),
        )
        .await;
    assert_eq!(status, 201, "{root}");
    let root_seq = root["message"]["seq"].as_u64().unwrap();
    alice.sync().await;
    let before = alice.store.counts(ConversationId(g));
    let (status, reply) = api
        .call(
            "POST",
            "/messages",
            json!({"conversation": g, "sender": "bob", "body": "I can", "thread": root_seq}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["message"]["thread"], root_seq);
    alice.sync().await;
    assert_eq!(
        alice.store.thread_counts(ConversationId(g), Seq(root_seq)).unread,
        1
    );
    assert_eq!(
        alice.store.counts(ConversationId(g)),
        before,
        "a reply never counts in its conversation"
    );
    // The API reads the same: the thread under its conversation, and in the total.
    let (_, unread) = api.call("GET", "/staff/alice/unread", Value::Null).await;
    let conv = unread["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == g)
        .unwrap()
        .clone();
    assert_eq!(conv["threads"][0]["root"], root_seq, "{unread}");
    assert_eq!(conv["threads"][0]["unread"], 1);
    assert_eq!(unread["total"]["unread"], alice.store.total().unread, "{unread}");
    let at = offset(relay.addr).await;
    for bad in [
        json!({"conversation": g, "notice": {"title": "x"}, "thread": root_seq}),
        json!({"direct": ["alice", "bob"], "sender": "bob", "body": "x", "thread": root_seq}),
        json!({"conversation": g, "sender": "bob", "body": "x", "thread": root_seq, "reply_to": 1}),
    ] {
        let (status, body) = api.call("POST", "/messages", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_input");
    }
    // A thread under a reply: threads do not nest.
    let reply_seq = reply["message"]["seq"].as_u64().unwrap();
    let (status, body) = api
        .call(
            "POST",
            "/messages",
            json!({"conversation": g, "sender": "bob", "body": "x", "thread": reply_seq}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_allowed")),
        "{body}"
    );
    assert_eq!(offset(relay.addr).await, at, "refusals store nothing");
}
