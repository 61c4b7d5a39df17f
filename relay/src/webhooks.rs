//! Webhooks: signed HTTP deliveries to the work app, from a durable outbox.
//!
//! - **Registered** with `tally-relay webhook add URL --events …`, which shows the signing
//!   secret once. Events: `message_created`, `message_deleted`, `unread_reminder`.
//! - **Written with their cause.** The core inserts an outbox row in the very transaction that
//!   appends the event it reports (or records the reminder): none is lost across a crash, and
//!   none is sent for a write that was not committed.
//! - **Delivered at least once** by [`deliver`], a task that posts due rows and reports each
//!   result to the core, which deletes a delivered row or reschedules a failed one with
//!   exponential backoff (1 s doubling to an hour, with jitter), up to [`MAX_ATTEMPTS`]; then
//!   the row stays, marked failed (`webhook list` counts them). Each delivery carries an
//!   idempotency key (`Tally-Delivery`, also `id` in the body), random, unique for ever and the
//!   same on every attempt, so a receiver drops repeats; order is not guaranteed.
//! - **Forgetful**: deleting a message rewrites the deliveries still waiting that carry its
//!   text (its own `message_created`, and replies quoting it), so a retry never sends it again,
//!   and queues a `message_deleted`.
//! - **Fair**: each receiver may hold only its share of the delivery slots, so one that
//!   accepts connections and never answers does not delay the others.
//! - **Signed** twice: per the Standard Webhooks spec (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature: v1,BASE64`, which its libraries verify), and the earlier
//!   `Tally-Signature: t=UNIX_SECONDS,v1=HEX` where HEX is HMAC-SHA256(secret, "{t}.{body}"),
//!   kept while receivers move over. A receiver recomputes one and refuses old timestamps.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::Sha256;
use tokio::sync::{Notify, mpsc};

/// The events a webhook may subscribe to.
pub const EVENTS: [&str; 3] = ["message_created", "message_deleted", "unread_reminder"];
/// Attempts before a delivery is given up (about 10 hours of retrying).
pub const MAX_ATTEMPTS: u32 = 16;
/// How long one attempt may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries in flight at once (shared fairly between receivers, see [`share`]).
pub const IN_FLIGHT: usize = 8;

/// How a delivery went, for the core to record (it answers once the row is settled).
#[derive(Debug)]
pub struct Settled {
    /// The outbox row.
    pub id: i64,
    /// Delivered, or why not.
    pub result: Result<(), String>,
    /// Answered once recorded.
    pub reply: tokio::sync::oneshot::Sender<()>,
}

/// A registered webhook, as the core keeps it.
#[derive(Clone, Debug)]
pub struct Hook {
    /// Its id.
    pub id: i64,
    /// What it subscribes to.
    pub events: HashSet<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where a webhook posts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Over TLS (`https://`).
    pub tls: bool,
    /// A name or an IP address (an IPv6 one without its brackets).
    pub host: String,
    /// The port (80 or 443 when the URL names none).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl Target {
    /// The `Host` header: the port only when it is not the scheme's own.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Parses `http[s]://host[:port]/path`. The host is a name or an IPv4 address (letters, digits,
/// `.` and `-`) or an IPv6 address in brackets; the path is printable ASCII without spaces
/// (percent-encode anything else): a URL that would put a space, a CR or an LF into the request
/// line or the `Host` header is refused when it is added.
pub fn parse_url(url: &str) -> anyhow::Result<Target> {
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => anyhow::bail!("a webhook URL is https://host[:port]/path (or http://)"),
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':').filter(|(h, _)| !h.ends_with(':')) {
        Some((h, p)) if !p.contains(']') => {
            let port: u16 = p.parse().map_err(|_| anyhow::anyhow!("bad port in {url:?}"))?;
            anyhow::ensure!(port > 0, "bad port in {url:?}");
            (h, port)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let ipv6_ok = host.len() > 2
        && host.starts_with('[')
        && host.ends_with(']')
        && host[1..host.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
    anyhow::ensure!(name_ok || ipv6_ok, "bad host in {url:?}");
    anyhow::ensure!(
        path.bytes().all(|b| b.is_ascii_graphic()),
        "a webhook URL's path is printable ASCII without spaces (percent-encode the rest): {url:?}"
    );
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Target {
        tls,
        host: host.to_string(),
        port,
        path,
    })
}

/// The TLS settings of deliveries over `https://`: the system's trusted roots (Debian's
/// `ca-certificates`), and those of `extra_ca` (a PEM file, for a company's private CA).
/// Certificates are always verified: a receiver whose certificate no root vouches for, or
/// that names another host, gets nothing.
pub fn tls_config(extra_ca: Option<&std::path::Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use anyhow::Context;
    let mut roots = rustls::RootCertStore::empty();
    match rustls_native_certs::load_native_certs() {
        Ok(certs) => {
            let (added, _unusable) = roots.add_parsable_certificates(certs);
            tracing::debug!(roots = added, "webhooks: the system's trusted roots");
        }
        Err(e) => tracing::warn!(error = %e, "webhooks: the system's trusted roots cannot be read"),
    }
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).with_context(|| format!("reading --webhook-ca {}", path.display()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.with_context(|| format!("--webhook-ca {}: not PEM", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("--webhook-ca {}: not a usable CA certificate", path.display()))?;
            added += 1;
        }
        anyhow::ensure!(added > 0, "--webhook-ca {}: no certificate in it", path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Registers a webhook; its id and its secret (shown once).
pub fn add(conn: &Connection, url: &str, events: &[String]) -> anyhow::Result<(i64, String)> {
    let secret = check(url, events)?;
    conn.execute(
        "INSERT INTO webhooks (url, secret, events, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![url, secret, events.join(","), now_ms()],
    )?;
    Ok((conn.last_insert_rowid(), secret))
}

/// Checks a new webhook's URL and events; a fresh signing secret for it.
pub(crate) fn check(url: &str, events: &[String]) -> anyhow::Result<String> {
    parse_url(url)?;
    anyhow::ensure!(
        !events.is_empty(),
        "name at least one event: {}",
        EVENTS.join(", ")
    );
    for e in events {
        anyhow::ensure!(
            EVENTS.contains(&e.as_str()),
            "no event {e} (there are: {})",
            EVENTS.join(", ")
        );
    }
    Ok(format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>())))
}

/// How many deliveries to a webhook are waiting, and how many were given up, in this outbox.
pub fn waiting(conn: &Connection, webhook: i64) -> anyhow::Result<(i64, i64)> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FILTER (WHERE failed_at IS NULL), COUNT(*) FILTER (WHERE failed_at IS NOT NULL)
         FROM outbox WHERE webhook = ?1",
        [webhook],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// A webhook as stored: id, URL, signing secret, events (comma-separated), made, removed.
pub type WebhookRow = (i64, String, String, String, i64, Option<i64>);

/// Keeps this node's copy of a cluster's webhooks (the delivery task reads it): rows as they
/// are in PostgreSQL; a removed one takes its pending deliveries with it.
pub fn mirror(conn: &Connection, rows: &[WebhookRow]) -> anyhow::Result<()> {
    let tx = conn.unchecked_transaction()?;
    for (id, url, secret, events, created_at, removed_at) in rows {
        let was_live: Option<bool> = tx
            .query_row(
                "SELECT removed_at IS NULL FROM webhooks WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute(
            "INSERT INTO webhooks (id, url, secret, events, created_at, removed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET removed_at = excluded.removed_at",
            params![id, url, secret, events, created_at, removed_at],
        )?;
        if removed_at.is_some() && was_live != Some(false) {
            tx.execute("DELETE FROM outbox WHERE webhook = ?1", [id])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Removes a webhook: its pending deliveries are dropped. False if there is no such one.
pub fn remove(conn: &Connection, id: i64) -> anyhow::Result<bool> {
    let changed = conn.execute(
        "UPDATE webhooks SET removed_at = ?2 WHERE id = ?1 AND removed_at IS NULL",
        params![id, now_ms()],
    )?;
    conn.execute("DELETE FROM outbox WHERE webhook = ?1", [id])?;
    Ok(changed == 1)
}

/// One line per live webhook: id, URL, events, deliveries pending and given up.
pub fn list(conn: &Connection) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT w.id, w.url, w.events,
            (SELECT COUNT(*) FROM outbox o WHERE o.webhook = w.id AND o.failed_at IS NULL),
            (SELECT COUNT(*) FROM outbox o WHERE o.webhook = w.id AND o.failed_at IS NOT NULL)
         FROM webhooks w WHERE w.removed_at IS NULL ORDER BY w.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(format!(
            "{}\t{}\t{}\tpending {}\tfailed {}",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The live webhooks (the core reloads them every second: the CLI writes the table directly).
pub fn load(conn: &Connection) -> rusqlite::Result<Vec<Hook>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, events FROM webhooks WHERE removed_at IS NULL ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        let events: String = r.get(1)?;
        Ok(Hook {
            id: r.get(0)?,
            events: events.split(',').map(str::to_string).collect(),
        })
    })?;
    rows.collect()
}

/// Queues a `message_created` or `message_deleted` delivery for each message a batch created or
/// deleted (in its transaction), `message_created` ones marked with the message they carry;
/// how many.
pub fn enqueue_created(
    hooks: &[Hook],
    tx: &Connection,
    applied: &[&tally_shared::engine::Applied],
) -> rusqlite::Result<usize> {
    if hooks.is_empty() {
        return Ok(0);
    }
    let mut queued = 0;
    for a in applied {
        let offset = a.event.offset;
        let (event, data, message) = match &a.event.event {
            tally_shared::Event::MessageCreated { message } => (
                "message_created",
                serde_json::json!({ "offset": offset, "message": message }),
                Some(message.id),
            ),
            tally_shared::Event::MessageDeleted {
                conversation,
                message,
                seq,
                sender,
                thread,
                ..
            } => (
                "message_deleted",
                serde_json::json!({
                    "offset": offset,
                    "conversation": conversation,
                    "message": message,
                    "seq": seq,
                    "sender": sender,
                    "thread": thread,
                }),
                // It carries no text: nothing a later deletion would redact.
                None,
            ),
            _ => continue,
        };
        queued += enqueue(tx, hooks, event, &data, message)?;
    }
    Ok(queued)
}

/// Queues a delivery of `event` with `data` to each hook subscribed to it (inside the caller's
/// transaction), about `message` if it carries one; how many.
pub fn enqueue(
    conn: &Connection,
    hooks: &[Hook],
    event: &str,
    data: &serde_json::Value,
    message: Option<tally_shared::MessageId>,
) -> rusqlite::Result<usize> {
    let mut queued = 0;
    let body = data.to_string();
    let now = now_ms();
    for h in hooks.iter().filter(|h| h.events.contains(event)) {
        // 128 random bits: unique across restarts, databases and nodes, unlike a row id.
        let delivery = hex::encode(rand::random::<[u8; 16]>());
        conn.prepare_cached(
            "INSERT INTO outbox (webhook, event, body, created_at, due_at, message, delivery)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
        )?
        .execute(params![
            h.id,
            event,
            body,
            now,
            message.map(|m| m.0 as i64),
            delivery
        ])?;
        queued += 1;
    }
    Ok(queued)
}

/// Records how a delivery went: a delivered one is deleted; a failed one is retried later, or
/// given up after [`MAX_ATTEMPTS`].
pub fn settle(conn: &Connection, id: i64, result: &Result<(), String>) -> rusqlite::Result<()> {
    match result {
        Ok(()) => {
            conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                .execute([id])?;
        }
        Err(why) => {
            let attempts: u32 = conn
                .prepare_cached("SELECT attempts FROM outbox WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .unwrap_or(0)
                + 1;
            let now = now_ms();
            let failed = (attempts >= MAX_ATTEMPTS).then_some(now);
            conn.prepare_cached(
                "UPDATE outbox SET attempts = ?2, due_at = ?3, last_error = ?4, failed_at = ?5 WHERE id = ?1",
            )?
            .execute(params![id, attempts, now + backoff_ms(attempts), why, failed])?;
        }
    }
    Ok(())
}

/// Deletes deliveries given up more than `older_than_ms` ago (the outbox must not grow without
/// bound behind a receiver that is gone); how many.
pub fn purge(conn: &Connection, older_than_ms: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM outbox WHERE failed_at IS NOT NULL AND failed_at < ?1",
        [now_ms() - older_than_ms],
    )
}

/// How long given-up deliveries stay listed (`webhook list`) before they are deleted.
pub const KEEP_FAILED_MS: i64 = 7 * 24 * 3600 * 1000;

/// The wait after the `attempts`-th failure: a second, doubling, at most an hour, ±20%.
pub fn backoff_ms(attempts: u32) -> i64 {
    let base = 1000i64
        .saturating_mul(1 << attempts.saturating_sub(1).min(12))
        .min(3_600_000);
    let jitter = rand::random_range(0..=base / 5);
    base - base / 10 + jitter
}

/// The Standard Webhooks signature (`webhook-signature`) of delivery `id`'s body sent at `t`:
/// `v1,` and the base64 HMAC-SHA256 of `"{id}.{t}.{body}"`, keyed with the secret's base64
/// part (after `whsec_`, as the spec's libraries read it: a hex secret is valid base64 too).
pub fn standard_signature(secret: &str, id: &str, t: u64, body: &[u8]) -> String {
    use base64::Engine;
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_else(|_| encoded.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(format!("{id}.{t}.").as_bytes());
    mac.update(body);
    let tag = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("v1,{tag}")
}

/// The signature header's value for a body sent at `t` (Unix seconds).
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A due delivery.
struct Due {
    id: i64,
    webhook: i64,
    event: String,
    body: String,
    created_at: i64,
    url: String,
    secret: String,
    /// Its idempotency key.
    delivery: String,
}

/// The live webhooks with deliveries due, and how many webhooks are live.
fn due_hooks(conn: &Connection) -> rusqlite::Result<(Vec<i64>, usize)> {
    let due = conn
        .prepare_cached(
            "SELECT DISTINCT o.webhook FROM outbox o JOIN webhooks w ON w.id = o.webhook
             WHERE o.failed_at IS NULL AND o.due_at <= ?1 AND w.removed_at IS NULL",
        )?
        .query_map([now_ms()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let live: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM webhooks WHERE removed_at IS NULL")?
        .query_row([], |r| r.get(0))?;
    Ok((due, live as usize))
}

/// Up to `limit` due deliveries to `webhook` that are not in `exclude` (in flight).
fn due(conn: &Connection, webhook: i64, exclude: &HashSet<i64>, limit: usize) -> rusqlite::Result<Vec<Due>> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.id, o.webhook, o.event, o.body, o.created_at, w.url, w.secret, o.delivery FROM outbox o
         JOIN webhooks w ON w.id = o.webhook
         WHERE o.webhook = ?3 AND o.failed_at IS NULL AND o.due_at <= ?1 AND w.removed_at IS NULL
         ORDER BY o.due_at, o.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now_ms(), (limit + exclude.len()) as i64, webhook], |r| {
        Ok(Due {
            id: r.get(0)?,
            webhook: r.get(1)?,
            event: r.get(2)?,
            body: r.get(3)?,
            created_at: r.get(4)?,
            url: r.get(5)?,
            secret: r.get(6)?,
            delivery: r.get(7)?,
        })
    })?;
    let mut out = Vec::new();
    for d in rows {
        let d = d?;
        if !exclude.contains(&d.id) {
            out.push(d);
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// The slots each receiver may hold when `receivers` webhooks are registered: an equal share
/// of [`IN_FLIGHT`] (at least one), whether the others have anything due yet or not, so a
/// receiver that never answers holds only its own and the others always find theirs free.
pub fn share(receivers: usize) -> usize {
    (IN_FLIGHT / receivers.max(1)).max(1)
}

/// Delivers due outbox rows until the core stops: woken by `wake` (a commit that queued some)
/// and every second (retries coming due). Each receiver holds at most its [`share`] of the
/// slots.
pub async fn deliver(
    data: std::path::PathBuf,
    tls: Arc<rustls::ClientConfig>,
    wake: Arc<Notify>,
    core: mpsc::Sender<Settled>,
) {
    let conn = match crate::storage::open_reader(&data) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot read the outbox");
            return;
        }
    };
    let (done_tx, mut done_rx) = mpsc::channel::<(i64, i64, Result<(), String>)>(IN_FLIGHT);
    let mut in_flight: HashSet<i64> = HashSet::new();
    // Slots held, per webhook.
    let mut held: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    loop {
        let batch = if in_flight.len() < IN_FLIGHT {
            let (hooks, live) = due_hooks(&conn).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "webhooks: reading the outbox failed");
                (Vec::new(), 1)
            });
            let share = share(live);
            let mut batch = Vec::new();
            for hook in hooks {
                let free = share
                    .saturating_sub(held.get(&hook).copied().unwrap_or(0))
                    .min(IN_FLIGHT - in_flight.len() - batch.len());
                if free > 0 {
                    batch.extend(due(&conn, hook, &in_flight, free).unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "webhooks: reading the outbox failed");
                        Vec::new()
                    }));
                }
            }
            batch
        } else {
            Vec::new()
        };
        for d in batch {
            in_flight.insert(d.id);
            *held.entry(d.webhook).or_default() += 1;
            let done = done_tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let result = post(&d, tls).await;
                let _ = done.send((d.id, d.webhook, result)).await;
            });
        }
        tokio::select! {
            Some((id, webhook, result)) = done_rx.recv() => {
                if let Err(why) = &result {
                    tracing::info!(delivery = id, error = %why, "webhook delivery failed; will retry");
                }
                // The row is settled by the core before it can come due again.
                let (reply, settled) = tokio::sync::oneshot::channel();
                if core.send(Settled { id, result, reply }).await.is_err() {
                    return;
                }
                let _ = settled.await;
                in_flight.remove(&id);
                if let Some(n) = held.get_mut(&webhook) {
                    *n -= 1;
                    if *n == 0 {
                        held.remove(&webhook);
                    }
                }
            }
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if core.is_closed() {
            return;
        }
    }
}

/// Posts one delivery; Ok for a 2xx answer.
async fn post(d: &Due, tls: Arc<rustls::ClientConfig>) -> Result<(), String> {
    let key = &d.delivery;
    let target = parse_url(&d.url).map_err(|e| e.to_string())?;
    let body = format!(
        r#"{{"id":"{key}","type":"{}","created_at":{},"data":{}}}"#,
        d.event, d.created_at, d.body
    );
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let request = hyper::Request::post(target.path.as_str())
        .header("host", target.host_header())
        .header("content-type", "application/json")
        .header("user-agent", "tally-relay")
        .header("tally-event", &d.event)
        .header("tally-delivery", key)
        .header("tally-signature", signature(&d.secret, t, body.as_bytes()))
        // Standard Webhooks (standardwebhooks.com): what its libraries verify.
        .header("webhook-id", key)
        .header("webhook-timestamp", t.to_string())
        .header(
            "webhook-signature",
            standard_signature(&d.secret, key, t, body.as_bytes()),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if !target.tls {
            return exchange(stream, request).await;
        }
        let name =
            rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| format!("tls: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, stream)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        exchange(stream, request).await
    };
    tokio::time::timeout(TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {} s", TIMEOUT.as_secs())))
}

/// One request over a connection (plain or TLS); Ok for a 2xx answer.
async fn exchange<Io>(
    io: Io,
    request: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<(), String>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_signatures_and_backoff() {
        let t = |tls, host: &str, port, path: &str| Target {
            tls,
            host: host.into(),
            port,
            path: path.into(),
        };
        assert_eq!(parse_url("http://h:81/x/y").unwrap(), t(false, "h", 81, "/x/y"));
        assert_eq!(parse_url("http://h").unwrap(), t(false, "h", 80, "/"));
        assert_eq!(parse_url("https://h/x").unwrap(), t(true, "h", 443, "/x"));
        assert_eq!(parse_url("https://h:8443").unwrap(), t(true, "h", 8443, "/"));
        assert!(parse_url("ftp://h/").is_err());
        assert!(parse_url("HTTP://h/").is_err());
        assert_eq!(
            parse_url("http://10.0.0.7:8000/hooks/tally?x=1").unwrap(),
            t(false, "10.0.0.7", 8000, "/hooks/tally?x=1")
        );
        assert_eq!(parse_url("http://h?a=b").unwrap(), t(false, "h", 80, "/?a=b"));
        assert_eq!(parse_url("http://[::1]:9/x").unwrap(), t(false, "::1", 9, "/x"));
        assert_eq!(parse_url("https://[::1]/x").unwrap().host_header(), "[::1]");
        assert_eq!(parse_url("https://h:443/").unwrap().host_header(), "h");
        assert_eq!(parse_url("http://h:443/").unwrap().host_header(), "h:443");
        // The probe's: spaces, CR and LF would break the request line or the Host header.
        for bad in [
            "http://h/a b",
            "http://h/a\r\nX-Injected: 1",
            "http://h\r\n/x",
            "http://h x/",
            "http:///x",
            "http://h:0/",
            "http://h:99999/",
            "http://h:/",
            "http://[zz]/",
            "http://h/é",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?}");
        }
        // HMAC-SHA256("key", "1.body"), as Python's hmac module computes it.
        let s = signature("key", 1, b"body");
        assert_eq!(
            s,
            "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5"
        );
        assert_ne!(signature("key", 2, b"body"), s, "the timestamp is signed");
        for attempts in 1..=MAX_ATTEMPTS {
            let b = backoff_ms(attempts);
            assert!((900..=3_600_000 * 11 / 10).contains(&b), "{attempts}: {b}");
        }
        assert!(backoff_ms(2) >= 1800 && backoff_ms(2) <= 2200);
    }

    #[test]
    fn each_receiver_gets_an_equal_share_of_the_slots() {
        assert_eq!(share(1), IN_FLIGHT);
        assert_eq!(share(2), IN_FLIGHT / 2);
        assert_eq!(share(100), 1);
    }
}
