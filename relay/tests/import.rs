//! `tally-relay import`, through the real binary: a generated export with random reads (gaps
//! included), deletions and replies; every person's count in every conversation, as their own
//! WebSocket store shows it, against the old system's rule computed here independently; a second
//! run that changes nothing; broken files that change nothing; and a running relay it refuses.

mod common;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use common::*;
use tally_shared::ConversationId;

const STAFF: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Msg {
    id: String,
    sender: &'static str,
    deleted: bool,
}

/// An export: the JSON lines, and for each conversation its participants, messages in time
/// order, and who read which message.
struct Export {
    text: String,
    conversations: Vec<Exported>,
    messages: usize,
}

/// A conversation of an export: its id, participants, messages, and reads.
type Exported = (
    String,
    Vec<&'static str>,
    Vec<Msg>,
    HashSet<(&'static str, String)>,
);

fn generate(seed: u64) -> Export {
    let mut rng = Rng(seed);
    let mut text = String::new();
    for s in STAFF {
        writeln!(
            text,
            r#"{{"kind":"staff","id":"{s}","name":"{} Import","active":true}}"#,
            s.to_uppercase()
        )
        .unwrap();
    }
    let mut conversations = Vec::new();
    let mut minute = 0u64;
    let mut messages = 0;
    for c in 0..14 {
        let (kind, participants): (&str, Vec<&'static str>) = if c < 6 {
            // Directs: distinct pairs.
            let pairs = [(0, 1), (0, 2), (1, 2), (3, 4), (4, 5), (0, 5)];
            ("direct", vec![STAFF[pairs[c].0], STAFF[pairs[c].1]])
        } else {
            let mut p: Vec<&'static str> = STAFF.iter().copied().filter(|_| rng.below(3) > 0).collect();
            if p.is_empty() {
                p.push("alice");
            }
            ("group", p)
        };
        let id = format!("conv/{c}");
        let title = if kind == "group" {
            format!(r#","title":"Group {c}""#)
        } else {
            String::new()
        };
        let list: Vec<String> = participants.iter().map(|p| format!("\"{p}\"")).collect();
        writeln!(
            text,
            r#"{{"kind":"conversation","id":"{id}","type":"{kind}"{title},"participants":[{}],"created_at":"2025-01-01T08:00:00Z"}}"#,
            list.join(",")
        )
        .unwrap();
        let count = rng.below(400) as usize;
        let mut msgs: Vec<Msg> = Vec::new();
        for m in 0..count {
            minute += 1;
            let sender = participants[rng.below(participants.len() as u64) as usize];
            let deleted = rng.below(12) == 0;
            let mid = format!("{id}/m{m}");
            let reply = if m > 0 && rng.below(5) == 0 {
                format!(r#","reply_to":"{}""#, msgs[rng.below(m as u64) as usize].id)
            } else {
                String::new()
            };
            let (h, mi) = (minute / 60, minute % 60);
            let (d, h) = (1 + h / 24, h % 24);
            writeln!(
                text,
                r#"{{"kind":"message","id":"{mid}","conversation":"{id}","sender":"{sender}","body":"message {m} \"quoted\" ✓","created_at":"2025-02-{d:02}T{h:02}:{mi:02}:00Z","deleted":{deleted}{reply}}}"#
            )
            .unwrap();
            msgs.push(Msg {
                id: mid,
                sender,
                deleted,
            });
        }
        messages += count;
        // Reads: each person reads a prefix, and some then skip one (a gap) or read on.
        let mut reads = HashSet::new();
        for p in &participants {
            let prefix = rng.below(count as u64 + 1) as usize;
            let gap = rng.below(3) == 0;
            for (i, m) in msgs.iter().enumerate() {
                let read = i < prefix || (gap && i > prefix + 1 && rng.below(2) == 0);
                // The old system recorded reads of others' messages (own ones sometimes too).
                if read && (m.sender != *p || rng.below(2) == 0) {
                    reads.insert((*p, m.id.clone()));
                }
            }
        }
        let mut ordered: Vec<&(&str, String)> = reads.iter().collect();
        ordered.sort();
        for (p, m) in ordered {
            writeln!(
                text,
                r#"{{"kind":"read","conversation":"{id}","staff":"{p}","message":"{m}"}}"#
            )
            .unwrap();
        }
        conversations.push((id, participants, msgs, reads));
    }
    Export {
        text,
        conversations,
        messages,
    }
}

/// The old system's unread count, and the count the documented gap rule gives.
fn expected(person: &str, msgs: &[Msg], reads: &HashSet<(&str, String)>) -> (u32, u32, bool) {
    let counts = |m: &Msg| m.sender != person && !m.deleted;
    let read = |m: &Msg| reads.contains(&(person, m.id.clone()));
    let old = msgs.iter().filter(|m| counts(m) && !read(m)).count() as u32;
    let first_unread = msgs.iter().position(|m| counts(m) && !read(m));
    let tally = first_unread.map_or(0, |i| msgs[i..].iter().filter(|m| counts(m)).count() as u32);
    (old, tally, tally != old)
}

fn imported_ids(data: &std::path::Path) -> HashMap<String, ConversationId> {
    let conn = rusqlite::Connection::open(data.join("tally.sqlite3")).unwrap();
    let mut stmt = conn
        .prepare("SELECT external, internal FROM imported WHERE kind = 'conversation'")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, ConversationId(r.get::<_, i64>(1)? as u64)))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn offset(data: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(data.join("tally.sqlite3")).unwrap();
    conn.query_row("SELECT COALESCE(MAX(offset), 0) FROM events", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn an_export_imports_with_the_old_systems_counts_once_and_all_or_nothing() {
    if sqlite_only("the import") {
        return;
    }
    let export = generate(0x9e37_79b9_7f4a_7c15);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &export.text).unwrap();
    let data = dir.path().join("data");
    let file_arg = file.to_str().unwrap();

    // A dry run writes nothing.
    let said = cli(&data, &["import", file_arg, "--dry-run"]);
    assert!(said.starts_with("would import"), "{said}");
    assert_eq!(offset(&data), 0);

    let said = cli(&data, &["import", file_arg]);
    assert!(said.contains(&format!("{} messages", export.messages)), "{said}");
    let after_first = offset(&data);
    assert!(after_first > export.messages as i64);

    // Again: nothing changes.
    let said = cli(&data, &["import", file_arg]);
    assert!(said.contains("(0 events"), "{said}");
    assert_eq!(offset(&data), after_first);

    // Every count, as each person's own store has it, against the old rule.
    let ids = imported_ids(&data);
    let (child, addr) = spawn(&data, &UNLIMITED, None);
    let keys = tally_relay::auth::Keys::new(
        &tally_relay::auth::load_secret(&data).unwrap(),
        tally_relay::auth::MAX_TOKEN_TTL,
    );
    let mut gaps = 0;
    for person in STAFF {
        let token = keys.mint(&sid(person), std::time::Duration::from_secs(600));
        let client = Client::connect(addr, &token, None).await;
        for (external, participants, msgs, reads) in &export.conversations {
            if !participants.contains(&person) {
                continue;
            }
            let (old, tally, gap) = expected(person, msgs, reads);
            let got = client.store.counts(ids[external]).unread;
            if gap {
                gaps += 1;
                assert!(tally > old, "a gap only ever shows more");
            }
            assert_eq!(got, tally, "{person} in {external} (old rule: {old})");
        }
    }
    assert!(gaps > 0, "the export has gaps to handle");
    // Replies kept their quote; deleted messages kept no text.
    let token = keys.mint(&sid("alice"), std::time::Duration::from_secs(600));
    let (external, _, msgs, _) = export
        .conversations
        .iter()
        .find(|(_, p, m, _)| p.contains(&"alice") && m.len() > 20)
        .unwrap();
    let stored = all_messages(addr, &token, ids[external]).await;
    assert_eq!(stored.len(), msgs.len());
    for (s, m) in stored.iter().zip(msgs) {
        assert_eq!(s["deleted"].as_bool().unwrap_or(false), m.deleted);
        if m.deleted {
            assert_eq!(s["body"], "");
        } else {
            assert!(s["body"].as_str().unwrap().ends_with("\"quoted\" ✓"));
        }
    }
    assert!(
        stored.iter().any(|s| s["reply_to"]["seq"].as_u64().is_some()),
        "replies are replies"
    );

    // While a relay serves the directory, an import is refused.
    let refused = cli_output(&data, &["import", file_arg]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("running relay"));
    drop(child);

    // A broken file: every bad line reported by number, nothing imported.
    let broken = dir.path().join("broken.jsonl");
    let mut text = String::from(r#"{"kind":"staff","id":"zoe","name":"Zoe"}"#);
    text.push('\n');
    text.push_str(r#"{"kind":"conversation","id":"new","type":"group","title":"New","participants":["zoe","alice"],"created_at":"2025-03-01T09:00:00Z"}"#);
    text.push('\n');
    text.push_str("not json\n");
    text.push_str(r#"{"kind":"message","id":"x1","conversation":"nowhere","sender":"zoe","body":"hi","created_at":"2025-03-01T09:00:00Z"}"#);
    text.push('\n');
    text.push_str(r#"{"kind":"message","id":"x2","conversation":"new","sender":"zoe","body":"hi","created_at":"March 1st"}"#);
    text.push('\n');
    text.push_str(r#"{"kind":"message","id":"x3","conversation":"new","sender":"zoe","body":"ok","created_at":"2025-03-01T09:00:00Z","reply_to":"conv/0/m0"}"#);
    text.push('\n');
    text.push_str(r#"{"kind":"read","conversation":"new","staff":"bob","message":"x3"}"#);
    text.push('\n');
    // The probe's: a character where the offset's digits go panicked the importer (exit 101).
    text.push_str(r#"{"kind":"message","id":"x4","conversation":"new","sender":"zoe","body":"hi","created_at":"2025-01-01T09:00:00+0é00"}"#);
    text.push('\n');
    // A sender who is not in the conversation: the live relay would refuse that send.
    text.push_str(r#"{"kind":"message","id":"x5","conversation":"new","sender":"bob","body":"hi","created_at":"2025-03-01T09:00:00Z"}"#);
    text.push('\n');
    std::fs::write(&broken, text).unwrap();
    let out = cli_output(&data, &["import", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [":3:", ":4:", ":5:", ":6:", ":7:", ":8:", ":9:"] {
        assert!(err.contains(line), "line {line} reported: {err}");
    }
    assert!(!err.contains(":1:") && !err.contains(":2:"), "{err}");
    assert_eq!(offset(&data), after_first, "nothing was imported");
    let staff = cli(&data, &["staff", "list"]);
    assert!(!staff.contains("zoe"), "not even the good lines");
}

/// Importing after going live (issue 27): a pair that already wrote to each other in Tally
/// keeps its one direct conversation, which the old messages join; messages carry their files
/// (an attachment-only message included), which download afterwards; a bad attachment refuses
/// the whole file; a second run changes nothing.
#[tokio::test]
async fn an_import_after_going_live_joins_a_pairs_direct_conversation_and_carries_files() {
    if sqlite_only("the import") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_staff(&data, &["ann", "ben"]);
    // Live use first: ann writes to ben.
    let (child, addr) = spawn(&data, &UNLIMITED, None);
    let keys = keys_for(&data);
    let token = |who: &str| keys.mint(&sid(who), std::time::Duration::from_secs(600));
    let mut ann = Client::connect(addr, &token("ann"), None).await;
    let direct = ann.direct_with("ben").await;
    ann.call(send(direct, "live-1", "written in Tally"))
        .await
        .unwrap();
    drop(ann);
    drop(child);

    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("2024")).unwrap();
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n"
        .iter()
        .copied()
        .chain((0..5_000u32).map(|i| (i % 251) as u8))
        .collect();
    std::fs::write(files.join("2024/chart.png"), &png).unwrap();
    std::fs::write(files.join("notes.txt"), "minutes of the meeting").unwrap();
    let staff = concat!(
        r#"{"kind":"staff","id":"ann","name":"Ann"}"#,
        "\n",
        r#"{"kind":"staff","id":"ben","name":"Ben"}"#,
        "\n",
        r#"{"kind":"conversation","id":"dm","type":"direct","participants":["ben","ann"],"created_at":"2024-05-01T09:00:00Z"}"#,
        "\n",
    );
    let messages = concat!(
        r#"{"kind":"message","id":"m1","conversation":"dm","sender":"ben","body":"the chart","created_at":"2024-05-01T09:01:00Z","attachments":[{"file":"2024/chart.png"}]}"#,
        "\n",
        r#"{"kind":"message","id":"m2","conversation":"dm","sender":"ben","body":"","created_at":"2024-05-01T09:02:00Z","attachments":[{"file":"notes.txt","name":"Minutes.txt"},{"file":"2024/chart.png","name":"again.png"}]}"#,
        "\n",
        r#"{"kind":"read","conversation":"dm","staff":"ann","message":"m1"}"#,
        "\n",
    );
    let file = dir.path().join("export.jsonl");
    let files_arg = files.to_str().unwrap();
    // Bad attachments, each on its line: nothing is imported.
    let bad = [
        r#"{"kind":"message","id":"b1","conversation":"dm","sender":"ben","body":"","created_at":"2024-05-01T09:03:00Z"}"#,
        r#"{"kind":"message","id":"b2","conversation":"dm","sender":"ben","body":"x","created_at":"2024-05-01T09:03:00Z","attachments":[{"file":"../export.jsonl"}]}"#,
        r#"{"kind":"message","id":"b3","conversation":"dm","sender":"ben","body":"x","created_at":"2024-05-01T09:03:00Z","attachments":[{"file":"missing.pdf"}]}"#,
        r#"{"kind":"message","id":"b4","conversation":"dm","sender":"ben","body":"x","created_at":"2024-05-01T09:03:00Z","attachments":[{"file":"/etc/passwd"}]}"#,
        r#"{"kind":"message","id":"b5","conversation":"dm","sender":"ben","body":"x","created_at":"2024-05-01T09:03:00Z","attachments":[{"file":"notes.txt","size":3}]}"#,
    ];
    let eleven = format!(
        r#"{{"kind":"message","id":"b6","conversation":"dm","sender":"ben","body":"x","created_at":"2024-05-01T09:03:00Z","attachments":[{}]}}"#,
        [r#"{"file":"notes.txt"}"#; 11].join(",")
    );
    std::fs::write(&file, format!("{staff}{messages}{}\n{eleven}\n", bad.join("\n"))).unwrap();
    let before = offset(&data);
    let out = cli_output(&data, &["import", file.to_str().unwrap(), "--files", files_arg]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for (line, says) in [
        (":7:", "needs a body or attachments"),
        (":8:", "relative path"),
        (":9:", "missing.pdf"),
        (":10:", "relative path"),
        (":11:", "size"),
        (":12:", "at most 10 attachments"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(line) && l.contains(says)),
            "line {line} reported with {says:?}: {err}"
        );
    }
    assert_eq!(offset(&data), before, "nothing was imported");
    assert!(
        !data.join("attachments").exists()
            || std::fs::read_dir(data.join("attachments")).unwrap().count() == 0
    );

    // The good file: the files are found under --files.
    std::fs::write(&file, format!("{staff}{messages}")).unwrap();
    let said = cli(&data, &["import", file.to_str().unwrap(), "--files", files_arg]);
    assert!(
        said.contains("2 messages") && said.contains("3 files attached"),
        "{said}"
    );
    assert!(said.contains("1 direct conversations already existed"), "{said}");
    let after = offset(&data);
    let said = cli(&data, &["import", file.to_str().unwrap(), "--files", files_arg]);
    assert!(said.contains("(0 events"), "a second run changes nothing: {said}");
    assert_eq!(offset(&data), after);
    assert_eq!(
        imported_ids(&data)["dm"],
        direct,
        "the file's direct is the pair's"
    );

    let (_child, addr) = spawn(&data, &UNLIMITED, None);
    let ann = Client::connect(addr, &token("ann"), None).await;
    assert_eq!(ann.store.counts(direct).unread, 1, "ann read m1, not m2");
    let stored = all_messages(addr, &token("ben"), direct).await;
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0]["body"], "written in Tally");
    assert_eq!(stored[2]["body"], "", "attachment-only");
    let names: Vec<&str> = stored[2]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Minutes.txt", "again.png"]);
    let chart = &stored[1]["attachments"][0];
    assert_eq!(chart["name"], "chart.png");
    assert_eq!(chart["content_type"], "image/png");
    assert_eq!(chart["size"], png.len());
    assert_eq!(
        stored[2]["attachments"][1]["id"], chart["id"],
        "one file, stored once"
    );
    for who in ["ann", "ben"] {
        let path = format!("/api/attachments/{}", chart["id"].as_str().unwrap());
        let (status, _, got) = http(
            addr,
            "GET",
            &path,
            &[("Authorization", &bearer(&token(who)))],
            b"",
        )
        .await;
        assert_eq!(status, 200, "{who}");
        assert_eq!(got, png);
    }
}

/// Threads in an import: replies name their root with `thread`; the root's author, the repliers
/// and the people a reply mentions follow it; reads of replies set each follower's thread
/// watermark by the conversation's rule; a reply never counts in its conversation. A reply
/// under a reply, or with `reply_to` too, is refused and nothing is imported; a second run
/// changes nothing; `check` finds the counts the log says.
#[tokio::test]
async fn threads_import_with_their_followers_and_watermarks() {
    if sqlite_only("the import") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_staff(&data, &["ann", "ben", "cy"]);
    let head = concat!(
        r#"{"kind":"staff","id":"ann","name":"Ann"}"#,
        "\n",
        r#"{"kind":"staff","id":"ben","name":"Ben"}"#,
        "\n",
        r#"{"kind":"staff","id":"cy","name":"Cy"}"#,
        "\n",
        r#"{"kind":"conversation","id":"g","type":"group","title":"Rota","participants":["ann","ben","cy"],"created_at":"2024-05-01T09:00:00Z"}"#,
        "\n",
        r#"{"kind":"message","id":"r1","conversation":"g","sender":"ann","body":"Who covers Friday?","created_at":"2024-05-01T09:01:00Z"}"#,
        "\n",
        r#"{"kind":"message","id":"t1","conversation":"g","sender":"ben","body":"I can","thread":"r1","created_at":"2024-05-01T09:02:00Z"}"#,
        "\n",
        r#"{"kind":"message","id":"t2","conversation":"g","sender":"cy","body":"@ann me too","thread":"r1","created_at":"2024-05-01T09:03:00Z"}"#,
        "\n",
        r#"{"kind":"message","id":"t3","conversation":"g","sender":"ben","body":"then we swap","thread":"r1","created_at":"2024-05-01T09:04:00Z"}"#,
        "\n",
        r#"{"kind":"read","conversation":"g","staff":"ann","message":"t1"}"#,
        "\n",
    );
    let file = dir.path().join("export.jsonl");
    for (bad, says) in [
        (
            r#"{"kind":"message","id":"x1","conversation":"g","sender":"cy","body":"nested","thread":"t1","created_at":"2024-05-01T09:05:00Z"}"#,
            "threads do not nest",
        ),
        (
            r#"{"kind":"message","id":"x2","conversation":"g","sender":"cy","body":"both","thread":"r1","reply_to":"t1","created_at":"2024-05-01T09:05:00Z"}"#,
            "give `thread` or `reply_to`",
        ),
        (
            r#"{"kind":"message","id":"x3","conversation":"g","sender":"cy","body":"early","thread":"r1","created_at":"2024-05-01T08:00:00Z"}"#,
            "not older than its root",
        ),
    ] {
        std::fs::write(&file, format!("{head}{bad}\n")).unwrap();
        let out = cli_output(&data, &["import", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(":10:") && err.contains(says), "{says}: {err}");
    }
    std::fs::write(&file, head).unwrap();
    let said = cli(&data, &["import", file.to_str().unwrap()]);
    assert!(said.contains("4 messages"), "{said}");
    let after = offset(&data);
    let again = cli(&data, &["import", file.to_str().unwrap()]);
    assert!(
        again.contains("(0 events"),
        "a second run changes nothing: {again}"
    );
    assert_eq!(offset(&data), after);
    let check = cli(&data, &["check"]);
    assert!(!check.contains("relay counts"), "{check}");

    let g = imported_ids(&data)["g"];
    let (_child, addr) = spawn(&data, &UNLIMITED, None);
    let keys = keys_for(&data);
    let token = |who: &str| keys.mint(&sid(who), std::time::Duration::from_secs(600));
    let ann = Client::connect(addr, &token("ann"), None).await;
    let root = ann
        .store
        .conversation(g)
        .unwrap()
        .messages
        .iter()
        .find(|m| m.body == "Who covers Friday?")
        .unwrap()
        .seq;
    // Ann wrote the root and read t1: t2 (mentioning her) and t3 are new; the conversation's
    // count has nothing of the replies (she wrote its one message).
    let counts = ann.store.thread_counts(g, root);
    assert_eq!((counts.unread, counts.mentions), (2, 1));
    assert_eq!(
        ann.store.counts(g).unread,
        0,
        "replies never count in the conversation"
    );
    assert_eq!(ann.store.total().unread, 2);
    let ben = Client::connect(addr, &token("ben"), None).await;
    assert_eq!(
        ben.store.thread_counts(g, root).unread,
        0,
        "his reply is the newest"
    );
    assert!(ben.store.follows(g, root));
    let cy = Client::connect(addr, &token("cy"), None).await;
    assert_eq!(
        cy.store.thread_counts(g, root).unread,
        1,
        "ben's reply after hers"
    );
}
