//! A generated history, restarted from: the generator's checkpoint agrees with its log
//! (`check`), the relay starts from it replaying nothing, snapshots carry the counts a replay
//! from offset 0 gives, and marking unread deep into old history (long out of any cache, the
//! relay keeps no message in memory) gives exactly the count the stored messages say.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tally_relay::auth::{self, Keys};
use tally_relay::{packed, storage};
use tally_shared::protocol::{ServerFrame, encode};
use tally_shared::{ClientFrame, ConversationId, Engine, Request, Seq, StaffId};
use tokio_tungstenite::tungstenite::Message;

fn generate(data: &std::path::Path, messages: u64) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally-loadgen"))
        .args([
            "history",
            "--staff",
            "60",
            "--messages",
            &messages.to_string(),
            "--data",
        ])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws) -> ServerFrame {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Live messages from others after `after` in a conversation, counted over the stored rows.
fn stored_unread(data: &std::path::Path, conversation: ConversationId, me: &StaffId, after: Seq) -> u32 {
    let conn = storage::open_reader(data).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, conversation, seq, payload FROM messages WHERE conversation = ?1 AND seq > ?2")
        .unwrap();
    let rows = stmt
        .query_map([conversation.0 as i64, after.0 as i64], |r| {
            packed::message_json(r, 0)
        })
        .unwrap();
    let mut n = 0;
    for row in rows {
        let m: tally_shared::Message = serde_json::from_str(&row.unwrap()).unwrap();
        if !m.deleted && &m.sender != me {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_restarts_from_a_generated_history_and_marks_unread_deep_in_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, 30_000);
    assert_eq!(
        tally_relay::maintenance::check(&data).unwrap(),
        Vec::<String>::new()
    );

    // What a replay from offset 0 says.
    let mut replayed = Engine::new();
    storage::for_each_event(&storage::open_reader(&data).unwrap(), |e| {
        replayed.apply(e);
    })
    .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = tally_relay::start(tally_relay::Config::new(&data), listener)
        .await
        .unwrap();
    let (_, metrics) = http_get(relay.addr, "/metrics").await;
    assert!(metrics.contains("tally_start_replayed_events 0\n"), "{metrics}");

    let me = StaffId::new("s1").unwrap();
    let keys = Keys::new(&auth::load_secret(&data).unwrap(), auth::MAX_TOKEN_TTL);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", relay.addr))
        .await
        .unwrap();
    let token = keys.mint(&me, Duration::from_secs(600));
    let hello = ClientFrame::new(Request::hello(&token, None));
    ws.send(Message::text(encode(&hello))).await.unwrap();
    let ServerFrame::Snapshot(snapshot) = next(&mut ws).await else {
        panic!("a snapshot first")
    };
    assert!(!snapshot.conversations.is_empty());
    for c in &snapshot.conversations {
        let id = c.conversation.id;
        assert_eq!(Some(c.counts), replayed.projection().counts(&me, id), "{id}");
    }
    assert_eq!(snapshot.total, replayed.projection().total(&me));

    // The conversation with the most messages, marked unread from its 5th.
    let deepest = snapshot.conversations.iter().max_by_key(|c| c.head).unwrap();
    let id = deepest.conversation.id;
    assert!(deepest.head.0 > 500, "a long conversation: {}", deepest.head);
    let mark = ClientFrame::with_req(
        1,
        Request::MarkUnread {
            conversation: id,
            from: Seq(5),
        },
    );
    ws.send(Message::text(encode(&mark))).await.unwrap();
    let update = loop {
        if let ServerFrame::UnreadUpdated(u) = next(&mut ws).await
            && u.conversation == id
        {
            break u;
        }
    };
    assert_eq!(update.unread, stored_unread(&data, id, &me, Seq(4)));
    relay.shutdown().await;
    assert_eq!(
        tally_relay::maintenance::check(&data).unwrap(),
        Vec::<String>::new()
    );
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text[9..12].parse().unwrap();
    (status, text)
}
