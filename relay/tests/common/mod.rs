//! Test harness: a real relay on 127.0.0.1:0 with a temporary data dir, real WebSocket clients
//! (tokio-tungstenite) whose frames feed a real `ChatStore`, and a bare HTTP/1.1 client.
#![allow(dead_code, unreachable_pub)]

pub mod cluster;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tally_relay::auth::{self, Keys};
use tally_relay::storage::{self, Durability};
use tally_relay::{Config, Running};
use tally_shared::protocol::{Ack, ErrorFrame, ServerFrame, encode};
use tally_shared::{ChatStore, ClientFrame, Request, Staff, StaffId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

pub fn sid(s: &str) -> StaffId {
    StaffId::new(s).unwrap()
}

pub struct Relay {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub keys: Keys,
}

impl Relay {
    pub async fn start(staff: &[&str]) -> Relay {
        Self::start_with(staff, |_| {}).await
    }

    pub async fn start_with(staff: &[&str], tweak: impl FnOnce(&mut Config)) -> Relay {
        Self::start_in(tempfile::tempdir().unwrap(), staff, tweak).await
    }

    /// A relay on an existing data dir (which it takes over), with these staff added.
    pub async fn start_in(dir: tempfile::TempDir, staff: &[&str], tweak: impl FnOnce(&mut Config)) -> Relay {
        add_staff(dir.path(), staff);
        let mut config = Config::new(dir.path());
        config.postgres = postgres_for(dir.path());
        config.durability = Durability::Normal;
        // Functional tests send bursts; the security suite sets the limits it tests.
        config.limits = tally_relay::limits::Limits::unlimited();
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = tally_relay::start(config, listener).await.unwrap();
        let keys = keys_for(dir.path());
        Relay {
            addr: running.addr,
            running: Some(running),
            dir,
            keys,
        }
    }

    pub fn token(&self, staff: &str) -> String {
        self.keys.mint(&sid(staff), Duration::from_secs(600))
    }

    pub async fn connect(&self, staff: &str) -> Client {
        Client::connect(self.addr, &self.token(staff), None).await
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// The suite on PostgreSQL: with `TALLY_TEST_POSTGRES` set to a server's URL (as
/// `scripts/with-postgres.sh` does), every relay here is a one-node cluster on a database of
/// its own, made when its data directory is first used and remembered in it.
pub fn test_postgres() -> Option<String> {
    std::env::var("TALLY_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
}

/// The database of the relay whose data directory is `data`, when the suite runs on PostgreSQL.
pub fn postgres_for(data: &std::path::Path) -> Option<String> {
    let base = test_postgres()?;
    let marker = data.join(".test-postgres");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let name = format!("t{:016x}", rand::random::<u64>());
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    let url = format!("{server}/{name}");
    on_a_thread(move || {
        let mut c = postgres::Client::connect(&base, postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    });
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(&marker, &url).unwrap();
    Some(url)
}

/// For tests of what only a single node's SQLite has (its file as a backup, its migrations,
/// the importer's fast path into it): whether to skip, saying so, on PostgreSQL, where
/// backups are PostgreSQL's own (docs/operations.md).
pub fn sqlite_only(what: &str) -> bool {
    let skip = test_postgres().is_some();
    if skip {
        eprintln!("on SQLite only: {what}");
    }
    skip
}

/// Runs `f` off the test's runtime (the PostgreSQL client blocks).
pub fn on_a_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().unwrap()
}

/// Adds staff where the relay on `data` reads them: its SQLite, or its PostgreSQL.
pub fn add_staff(data: &std::path::Path, staff: &[&str]) {
    let staff: Vec<Staff> = staff
        .iter()
        .map(|s| Staff {
            id: sid(s),
            name: s.to_uppercase(),
        })
        .collect();
    match postgres_for(data) {
        Some(url) => on_a_thread(move || {
            use tally_relay::order::Order;
            let mut pg = tally_relay::postgres::Postgres::connect(&url).unwrap();
            let unused = rusqlite::Connection::open_in_memory().unwrap();
            for s in &staff {
                pg.upsert_staff(&unused, s).unwrap();
            }
        }),
        None => {
            let mut conn = storage::open(data, Durability::Normal).unwrap();
            let tx = conn.transaction().unwrap();
            for s in &staff {
                storage::upsert_staff(&tx, s).unwrap();
            }
            tx.commit().unwrap();
        }
    }
}

/// The token keys of the relay on `data`.
pub fn keys_for(data: &std::path::Path) -> Keys {
    let secret = match postgres_for(data) {
        Some(url) => on_a_thread(move || {
            tally_relay::postgres::Postgres::connect(&url)
                .unwrap()
                .secret()
                .unwrap()
        }),
        None => auth::load_secret(data).unwrap(),
    };
    Keys::new(&secret, auth::MAX_TOKEN_TTL)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    pub store: ChatStore,
    pub frames: Vec<ServerFrame>,
    next_req: u64,
}

impl Client {
    pub async fn raw(addr: SocketAddr) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        ws
    }

    pub async fn connect(addr: SocketAddr, token: &str, resume_from: Option<tally_shared::Offset>) -> Client {
        Self::connect_with_store(addr, token, resume_from, ChatStore::new()).await
    }

    pub async fn connect_with_store(
        addr: SocketAddr,
        token: &str,
        resume_from: Option<tally_shared::Offset>,
        store: ChatStore,
    ) -> Client {
        Self::connect_with(addr, Request::hello(token, resume_from), store).await
    }

    /// Connects with this `hello` (which says whether it resumes).
    pub async fn connect_with(addr: SocketAddr, hello: Request, store: ChatStore) -> Client {
        let Request::Hello { resume_from, .. } = hello else {
            panic!("not a hello: {hello:?}");
        };
        let mut ws = Self::raw(addr).await;
        ws.send(Message::text(encode(&ClientFrame::new(hello))))
            .await
            .unwrap();
        let mut c = Client {
            ws,
            store,
            frames: Vec::new(),
            next_req: 1000,
        };
        let first = c.next().await.expect("a first frame");
        assert!(
            matches!(
                first,
                ServerFrame::Snapshot(_)
                    | ServerFrame::Counts { .. }
                    | ServerFrame::Resumed { .. }
                    | ServerFrame::Event(_)
                    | ServerFrame::UnreadUpdated(_)
            ),
            "{first:?}"
        );
        if resume_from.is_some() && !matches!(first, ServerFrame::Snapshot(_) | ServerFrame::Resumed { .. }) {
            c.until(|f| matches!(f, ServerFrame::Resumed { .. })).await;
        }
        c
    }

    /// The next frame, applied to the store.
    pub async fn next(&mut self) -> Option<ServerFrame> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")?
                .ok()?;
            match msg {
                Message::Text(t) => {
                    let frame: ServerFrame = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
                    let fx = self.store.apply(frame.clone());
                    assert_eq!(fx.divergence, None, "the store diverged from the relay");
                    self.frames.push(frame.clone());
                    return Some(frame);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Frames until one matches; returns it.
    pub async fn until(&mut self, pred: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        loop {
            let f = self.next().await.expect("connection open");
            if pred(&f) {
                return f;
            }
        }
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// Sends a request and waits for its ack or error.
    pub async fn call(&mut self, request: Request) -> Result<Ack, ErrorFrame> {
        self.next_req += 1;
        let req = self.next_req;
        self.send_text(encode(&ClientFrame::with_req(req, request))).await;
        match self
            .until(|f| match f {
                ServerFrame::Ack(a) => a.req.map(|r| r.0) == Some(req),
                ServerFrame::Error(e) => e.req.map(|r| r.0) == Some(req),
                _ => false,
            })
            .await
        {
            ServerFrame::Ack(a) => Ok(a),
            ServerFrame::Error(e) => Err(e),
            _ => unreachable!(),
        }
    }

    /// Opens (or finds) this client's direct conversation with `staff`.
    pub async fn direct_with(&mut self, staff: &str) -> tally_shared::ConversationId {
        let ack = self
            .call(Request::CreateDirect { staff: sid(staff) })
            .await
            .unwrap();
        ack.conversation.expect("a direct conversation")
    }

    /// Waits until every event the relay sent before now has arrived.
    pub async fn sync(&mut self) {
        self.call(Request::Ping).await.unwrap();
    }

    /// The close code the relay ended the connection with.
    pub async fn closed_with(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("closed in time")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    }
}

/// A bare HTTP/1.1 request; returns (status, headers, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // A server may answer (413) and close before reading a large body: that is not an error.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Rate limits lifted, for tests that send bursts through the real binary.
pub const UNLIMITED: [&str; 8] = [
    "--writes-per-sec",
    "1e9",
    "--write-burst",
    "1e9",
    "--reads-per-sec",
    "1e9",
    "--read-burst",
    "1e9",
];

pub use tally_testkit::Killed;

/// Starts the real `tally-relay serve` on `data` and a free loopback port (the one launch
/// helper of the relay's tests); `nofile` limits its descriptors.
pub fn spawn(data: &std::path::Path, args: &[&str], nofile: Option<u32>) -> (Killed, SocketAddr) {
    use std::io::BufRead;
    let limit = nofile.map_or(String::new(), |n| format!("ulimit -n {n} && "));
    let mut child = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{limit}exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_tally-relay"))
        .arg("--data")
        .arg(data)
        .args(
            postgres_for(data)
                .map(|url| ["--postgres".to_string(), url])
                .into_iter()
                .flatten(),
        )
        .args(["serve", "--listen", "127.0.0.1:0", "--static", "/nonexistent"])
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().parse().unwrap();
    (Killed(child), addr)
}

/// The real `tally-relay` binary serving a temporary data dir, killed when dropped.
pub struct Binary {
    pub child: Killed,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub keys: Keys,
}

impl Binary {
    /// Adds `staff`, then serves with `args` (after `serve`); `nofile` limits its descriptors.
    pub fn serve(staff: &[&str], args: &[&str], nofile: Option<u32>) -> Binary {
        let dir = tempfile::tempdir().unwrap();
        add_staff(dir.path(), staff);
        let args: Vec<&str> = ["--durability", "normal"].iter().chain(args).copied().collect();
        let (child, addr) = spawn(dir.path(), &args, nofile);
        let keys = keys_for(dir.path());
        Binary {
            child,
            addr,
            dir,
            keys,
        }
    }

    pub fn token(&self, staff: &str) -> String {
        self.keys.mint(&sid(staff), Duration::from_secs(600))
    }

    pub async fn connect(&self, staff: &str) -> Client {
        Client::connect(self.addr, &self.token(staff), None).await
    }

    /// The relay's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// A metric's value from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        metric_at(self.addr, name).await
    }
}

/// Whether a TCP connection between these two loopback ports is ESTABLISHED, per the kernel.
pub fn established(local_port: u16, remote_port: u16) -> bool {
    let mut found = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |s: &str| u16::from_str_radix(s.rsplit(':').next().unwrap(), 16).unwrap();
            if f.len() > 3 && port(f[1]) == local_port && port(f[2]) == remote_port && f[3] == "01" {
                found = true;
            }
        }
    }
    found
}

/// A WebSocket client whose socket has a tiny receive buffer and that, after its hello, never
/// reads: the slowest consumer there is.
pub async fn never_reading(addr: SocketAddr, token: &str, frames: &[ClientFrame]) -> (Ws, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let port = stream.local_addr().unwrap().port();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let hello = ClientFrame::new(Request::hello(token, None));
    ws.send(Message::text(encode(&hello))).await.unwrap();
    for f in frames {
        ws.send(Message::text(encode(f))).await.unwrap();
    }
    (ws, port)
}

/// `tally-relay --data DATA ARGS…` (the real binary), as it ran.
pub fn cli_output(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tally-relay"))
        .arg("--data")
        .arg(data)
        .args(
            postgres_for(data)
                .map(|url| ["--postgres".to_string(), url])
                .into_iter()
                .flatten(),
        )
        .args(args)
        .output()
        .unwrap()
}

/// `tally-relay --data DATA ARGS…`, which must succeed; what it printed.
pub fn cli(data: &std::path::Path, args: &[&str]) -> String {
    let out = cli_output(data, args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A plain text send with this client id.
pub fn send(conversation: tally_shared::ConversationId, client_id: &str, body: &str) -> Request {
    Request::SendMessage {
        mention_ranges: Vec::new(),
        client_id: tally_shared::ClientMsgId::new(client_id).unwrap(),
        conversation,
        body: body.into(),
        attachments: vec![],
        reply_to: None,
    }
}

/// The `i`-th send of a burst (request id `i`, client id `m-i`).
pub fn numbered_send(conversation: tally_shared::ConversationId, i: usize) -> ClientFrame {
    ClientFrame::with_req(
        i as u64,
        Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: tally_shared::ClientMsgId::new(format!("m-{i}")).unwrap(),
            conversation,
            body: format!("message {i}"),
            attachments: vec![],
            reply_to: None,
        },
    )
}

/// Every message of a conversation, oldest first, paged through the history endpoint.
pub async fn all_messages(
    addr: SocketAddr,
    token: &str,
    conversation: tally_shared::ConversationId,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut before = u64::MAX;
    loop {
        let path = format!("/api/conversations/{conversation}/messages?before={before}&limit=200");
        let (status, _, body) = http(addr, "GET", &path, &[("Authorization", &bearer(token))], b"").await;
        assert_eq!(status, 200);
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let msgs = page["messages"].as_array().unwrap().clone();
        if msgs.is_empty() {
            break;
        }
        before = msgs[0]["seq"].as_u64().unwrap();
        out.splice(0..0, msgs);
        if before <= 1 {
            break;
        }
    }
    out
}

/// A metric's value from a relay's `/metrics`.
pub async fn metric_at(addr: SocketAddr, name: &str) -> u64 {
    let (_, _, body) = http(addr, "GET", "/metrics", &[], b"").await;
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}
