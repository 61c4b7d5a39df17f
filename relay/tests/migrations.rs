//! Schema migrations are numbered and forward-only: a data directory written by the previous
//! schema (a fixture made by the relay of that time) opens with today's code, and its counts,
//! history, attachments and what a delete redacts are all as they should be.

mod common;

use common::*;
use tally_shared::protocol::ServerFrame;
use tally_shared::{ConversationId, Request};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v1");

fn copy(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &to.join(e.file_name()));
        } else if e.file_name() != "README.md" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn a_data_directory_of_schema_1_migrates_with_its_counts_history_and_files() {
    if sqlite_only("SQLite schema migrations") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    copy(std::path::Path::new(FIXTURE), dir.path());
    let frames_before: Vec<String> = {
        let db = rusqlite::Connection::open(dir.path().join("tally.sqlite3")).unwrap();
        let mut stmt = db.prepare("SELECT frame FROM events ORDER BY offset").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let relay = Relay::start_in(dir, &[], |_| {}).await;
    let (dm, group) = (ConversationId(1), ConversationId(2));
    let db = rusqlite::Connection::open(relay.dir.path().join("tally.sqlite3")).unwrap();
    let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version as usize, tally_relay::storage::schema_version());
    assert_eq!(version, 11);
    // Migration 11: a creation stored as its message's row is found by the row, not the index.
    let (rows, known): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM events WHERE frame = ''),
                    (SELECT count(*) FROM messages m JOIN events e ON e.offset = m.created
                     WHERE e.frame = '' AND e.message = m.id)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows, known);
    let index: String = db
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'events_by_message'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(index.contains("frame <> ''"), "{index}");
    // Migration 10: each message stored once, packed; the log reads as it was, byte for byte.
    let unpacked: i64 = db
        .query_row(
            "SELECT count(*) FROM messages WHERE typeof(payload) != 'blob'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unpacked, 0);
    let (creations, as_rows): (i64, i64) = db
        .query_row(
            "SELECT count(*), count(*) FILTER (WHERE frame = '') FROM events WHERE message IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(as_rows > 0 && as_rows <= creations, "{as_rows} of {creations}");
    let mut frames_after = Vec::new();
    tally_relay::storage::for_each_frame(
        &db,
        tally_shared::Offset(0),
        tally_shared::Offset(u64::MAX),
        |_, f| {
            frames_after.push(f.to_string());
            Ok(true)
        },
    )
    .unwrap();
    assert_eq!(frames_after, frames_before);
    // Migration 9: the search index has its prefix indexes.
    let index: String = db
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'message_text'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(index.contains("prefix = '3 4 5 6 7 8'"), "{index}");
    // Migration 8: quiet hours, set by nobody yet.
    let quiet: i64 = db
        .query_row(
            "SELECT count(*) FROM preferences WHERE quiet IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(quiet, 0);
    // Migration 7: no message of schema 1 is a reply in a thread.
    let replies: i64 = db
        .query_row(
            "SELECT count(*) FROM messages WHERE thread IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(replies, 0);
    let log: String = db
        .query_row("SELECT value FROM meta WHERE key = 'log_id'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(log.len(), 16, "the log has an identity: {log}");

    // Counts, rebuilt from the migrated log.
    let carol = relay.connect("carol").await;
    assert_eq!(
        (
            carol.store.counts(group).unread,
            carol.store.counts(group).mentions
        ),
        (6, 5)
    );
    let mut bob = relay.connect("bob").await;
    assert_eq!(
        bob.store.counts(dm).unread,
        0,
        "replied, and the other one deleted"
    );
    assert_eq!(bob.store.counts(group).unread, 3, "read up to 3 of 6");
    assert!(bob.store.is_muted(group));
    assert_eq!(bob.store.total().unread, 0, "the group is muted");

    // History and the attachment, served through the per-message table the migration built.
    let messages = &bob.store.conversation(dm).unwrap().messages;
    let first = &messages[0];
    assert_eq!(first.body, "Door code 4711 (edited)");
    let file = first.attachments[0].id.clone();
    let reply = messages[1].reply_to.clone().unwrap();
    assert_eq!(reply.excerpt, "Door code 4711");
    let path = format!("/api/attachments/{file}");
    let auth = bearer(&relay.token("bob"));
    assert_eq!(
        http(relay.addr, "GET", &path, &[("Authorization", &auth)], b"")
            .await
            .0,
        200
    );

    // The migration indexed the old messages' text for search.
    let search = "/api/search?q=door%20code";
    let (status, _, body) = http(relay.addr, "GET", search, &[("Authorization", &auth)], b"").await;
    assert_eq!(status, 200);
    let found: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(found["results"][0]["body"], "Door code 4711 (edited)", "{found}");
    // Migration 9 rebuilt the index with prefix indexes: a word's start finds it too.
    let (status, _, body) = http(
        relay.addr,
        "GET",
        "/api/search?q=doo*%20cod*",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let found: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(found["results"][0]["body"], "Door code 4711 (edited)", "{found}");

    // A delete after the migration finds the old reply and the old events to redact.
    let mut alice = relay.connect("alice").await;
    alice
        .call(Request::DeleteMessage { message: first.id })
        .await
        .unwrap();
    bob.until(|f| matches!(f, ServerFrame::Event(_))).await;
    for sql in ["SELECT payload FROM messages", "SELECT frame FROM events"] {
        let mut stmt = db.prepare(sql).unwrap();
        let rows: Vec<String> = stmt
            .query_map([], |r| tally_relay::packed::column(r, 0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(rows.iter().all(|r| !r.contains("4711")), "{sql}: {rows:?}");
    }
    let (_, _, body) = http(relay.addr, "GET", search, &[("Authorization", &auth)], b"").await;
    let found: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        found["results"],
        serde_json::json!([]),
        "deleted: no longer found"
    );
    assert_eq!(
        http(relay.addr, "GET", &path, &[("Authorization", &auth)], b"")
            .await
            .0,
        403
    );
}
