//! Search: full-text over the conversations the searcher is in now (never others'), kept in
//! step with edits and deletes, paged, safe against query syntax, and rate-limited.

mod common;

use common::*;
use tally_shared::{ClientMsgId, Message, Request};

/// What `staff` finds for `q` (with extra query parameters), as status and the bodies found.
async fn search(relay: &Relay, staff: &str, query: &str) -> (u16, Vec<String>, serde_json::Value) {
    let token = relay.token(staff);
    let (status, _, body) = http(
        relay.addr,
        "GET",
        &format!("/api/search?{query}"),
        &[("Authorization", &bearer(&token))],
        b"",
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bodies = json["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|m| serde_json::from_value::<Message>(m.clone()).unwrap().body)
                .collect()
        })
        .unwrap_or_default();
    (status, bodies, json)
}

#[tokio::test]
async fn search_finds_only_what_the_searcher_may_read_and_follows_edits_deletes_and_leaving() {
    let relay = Relay::start(&["alice", "bob", "carol", "dave"]).await;
    let mut alice = relay.connect("alice").await;
    let mut carol = relay.connect("carol").await;
    let dm = alice.direct_with("bob").await;
    let theirs = carol.direct_with("dave").await;
    let group = alice
        .call(Request::CreateGroup {
            client_id: ClientMsgId::new("g").unwrap(),
            title: "Front desk".into(),
            participants: vec![tally_shared::StaffId::new("carol").unwrap()],
        })
        .await
        .unwrap()
        .conversation
        .unwrap();
    alice.call(send(dm, "a1", "The parcel is here")).await.unwrap();
    carol
        .call(send(theirs, "c1", "A parcel for Dave, private"))
        .await
        .unwrap();
    let in_group = alice
        .call(send(group, "a2", "Parcel room moved to the café"))
        .await
        .unwrap();

    let (status, found, _) = search(&relay, "alice", "q=parcel").await;
    assert_eq!(status, 200);
    assert_eq!(
        found,
        ["Parcel room moved to the café", "The parcel is here"],
        "newest first"
    );
    let (_, found, _) = search(&relay, "carol", "q=parcel").await;
    assert_eq!(
        found,
        ["Parcel room moved to the café", "A parcel for Dave, private"]
    );
    let (_, found, _) = search(&relay, "bob", "q=PARCEL").await;
    assert_eq!(
        found,
        ["The parcel is here"],
        "bob is only in the direct conversation"
    );
    // Whole words: a word's start finds nothing unless it ends with `*`.
    let (_, found, _) = search(&relay, "alice", "q=parc").await;
    assert!(found.is_empty(), "{found:?}");
    // Every word, a start with `*`, accents and case folded.
    let (_, found, _) = search(&relay, "alice", "q=parc*%20here").await;
    assert_eq!(found, ["The parcel is here"]);
    let (_, found, _) = search(&relay, "alice", "q=cafe").await;
    assert_eq!(found, ["Parcel room moved to the café"]);
    // One conversation: one of mine, or a refusal that says why.
    let (_, found, _) = search(&relay, "alice", &format!("q=parcel&conversation={dm}")).await;
    assert_eq!(found, ["The parcel is here"]);
    let (status, _, body) = search(&relay, "alice", &format!("q=parcel&conversation={theirs}")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_participant")),
        "{body}"
    );
    let (status, _, _) = search(&relay, "alice", "q=parcel&conversation=999").await;
    assert_eq!(status, 404);

    // Edited: found by its new text only. Deleted: found no more.
    let message = in_group.message.unwrap();
    alice
        .call(Request::EditMessage {
            mention_ranges: Vec::new(),
            message,
            body: "Boxes go to room 12".into(),
        })
        .await
        .unwrap();
    let (_, found, _) = search(&relay, "carol", "q=parcel").await;
    assert_eq!(found, ["A parcel for Dave, private"]);
    let (_, found, _) = search(&relay, "carol", "q=boxes").await;
    assert_eq!(found, ["Boxes go to room 12"]);
    alice.call(Request::DeleteMessage { message }).await.unwrap();
    let (_, found, _) = search(&relay, "carol", "q=boxes").await;
    assert!(found.is_empty());

    // Someone who leaves a group stops finding its messages.
    alice
        .call(send(group, "a3", "Parcel audit on Friday"))
        .await
        .unwrap();
    let (_, found, _) = search(&relay, "carol", "q=audit").await;
    assert_eq!(found, ["Parcel audit on Friday"]);
    let carol_id = tally_shared::StaffId::new("carol").unwrap();
    carol
        .call(Request::RemoveParticipant {
            conversation: group,
            staff: carol_id,
        })
        .await
        .unwrap();
    let (_, found, _) = search(&relay, "carol", "q=audit").await;
    assert!(found.is_empty());
}

#[tokio::test]
async fn search_pages_refuses_bad_queries_with_a_typed_error_and_is_rate_limited() {
    let relay = Relay::start_with(&["alice", "bob"], |c| {
        c.limits.searches_per_sec = 0.01;
        c.limits.search_burst = 8.0;
    })
    .await;
    let mut alice = relay.connect("alice").await;
    let dm = alice.direct_with("bob").await;
    for i in 0..25 {
        alice
            .call(send(dm, &format!("m{i}"), &format!("shift note {i}")))
            .await
            .unwrap();
    }
    // Pages of 10, newest first, until `next_before` is null.
    let mut seen = Vec::new();
    let mut before = String::new();
    loop {
        let (status, found, json) = search(&relay, "alice", &format!("q=shift&limit=10{before}")).await;
        assert_eq!(status, 200);
        seen.extend(found);
        match json["next_before"].as_u64() {
            Some(id) => before = format!("&before={id}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("shift note {i}")).collect();
    assert_eq!(seen, expected);

    // Query syntax is not syntax here: no 500, just words.
    let (status, found, _) = search(&relay, "alice", "q=%22shift%22%20OR%20NEAR(note%20*").await;
    assert_eq!(status, 200);
    assert!(found.is_empty(), "\"or\" and \"near\" are words no message has");
    for (q, why) in [
        ("q=", "empty"),
        ("q=a", "one letter"),
        ("q=%2A%2A", "no words"),
        ("", "no q"),
        ("q=sh*", "a prefix of two letters"),
    ] {
        let (status, _, body) = search(&relay, "alice", q).await;
        assert_eq!(status, 400, "{why}: {body}");
        assert_eq!(body["code"], "invalid_input", "{why}");
    }
    let long = "word%20".repeat(9);
    let (status, _, _) = search(&relay, "alice", &format!("q={long}")).await;
    assert_eq!(status, 400);

    // The budget (8 in a burst; 4 pages above, 1 more): then 429 with a typed body.
    let mut refused = None;
    for _ in 0..10 {
        let (status, _, body) = search(&relay, "alice", "q=shift").await;
        if status == 429 {
            refused = Some(body);
            break;
        }
    }
    let body = refused.expect("searches are rate-limited");
    assert_eq!(body["code"], "rate_limited");
    // No token: 401.
    let (status, _, _) = http(relay.addr, "GET", "/api/search?q=shift", &[], b"").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn search_matches_the_words_of_formatted_text_not_its_markup() {
    let relay = Relay::start(&["alice", "bob"]).await;
    let mut alice = relay.connect("alice").await;
    let dm = alice.direct_with("bob").await;
    let text = "**Deploy** per [the runbook](https://wiki.acme.test/oncall) and `rollback`";
    alice.call(send(dm, "a1", text)).await.unwrap();
    for (q, hits) in [
        ("deploy", 1),
        ("runbook", 1),
        ("rollback", 1),
        ("oncall", 0),
        ("wiki", 0),
    ] {
        let (status, found, _) = search(&relay, "alice", &format!("q={q}")).await;
        assert_eq!(status, 200);
        assert_eq!(found.len(), hits, "{q}: {found:?}");
    }
}
