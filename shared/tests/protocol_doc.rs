//! Parses every JSON example in docs/protocol.md, checks each survives a round trip, and checks
//! that every frame and event type has an example.

use std::collections::BTreeSet;

use tally_shared::protocol::{ServerFrame, decode_client_frame};

fn examples() -> Vec<(String, String)> {
    let doc = include_str!("../../docs/protocol.md");
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        match (&mut current, line.strip_prefix("```json ")) {
            (None, Some(kind)) => current = Some((kind.trim().to_string(), String::new())),
            (Some(_), _) if line.trim() == "```" => out.push(current.take().unwrap()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    out
}

fn type_of(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["type"].as_str().unwrap().to_string()
}

#[test]
fn every_example_in_the_protocol_doc_parses_and_round_trips() {
    let mut client_types = BTreeSet::new();
    let mut server_types = BTreeSet::new();
    for (kind, json) in examples() {
        match kind.as_str() {
            "client" => {
                let frame = decode_client_frame(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
                let again = decode_client_frame(&serde_json::to_string(&frame).unwrap()).unwrap();
                assert_eq!(frame, again);
                client_types.insert(type_of(&json));
            }
            "server" => {
                let frame: ServerFrame =
                    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
                let again: ServerFrame =
                    serde_json::from_str(&serde_json::to_string(&frame).unwrap()).unwrap();
                assert_eq!(frame, again);
                if let ServerFrame::Event(_) = frame {
                    assert!(json.contains("\"offset\""), "events carry their offset");
                }
                server_types.insert(type_of(&json));
            }
            other => panic!("unknown example kind {other}"),
        }
    }
    let events = [
        "conversation_created",
        "participant_added",
        "participant_removed",
        "conversation_renamed",
        "message_created",
        "message_edited",
        "reaction_changed",
        "everyone_mentions_changed",
        "message_deleted",
        "messages_read",
        "marked_unread",
        "mute_changed",
        "thread_read",
        "thread_marked_unread",
        "thread_followed",
    ];
    for t in tally_shared::protocol::REQUEST_TYPES {
        assert!(
            client_types.iter().any(|c| c == t),
            "docs/protocol.md has no example of client frame {t}"
        );
    }
    let frames = tally_shared::protocol::FRAME_TYPES;
    for t in frames.iter().chain(&events) {
        assert!(
            server_types.contains(*t),
            "docs/protocol.md has no example of server frame {t}"
        );
    }
}
