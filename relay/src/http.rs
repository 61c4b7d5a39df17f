//! HTTP routes: the WebSocket endpoint, attachments, history, health, metrics, the demo
//! sign-in picker, and the built frontend. Every error is a JSON body with a stable code, and
//! every `GET` route answers `HEAD` too.

use std::convert::Infallible;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tally_shared::{ConversationId, ErrorCode, Seq, StaffId, limits};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use warp::http::{HeaderValue, StatusCode, header};
use warp::{Filter, Rejection, Reply};

use crate::attachments;
use crate::core::Command;
use crate::limits::Kind;
use crate::listener::ConnInfo;
use crate::server::AppState;
use crate::session;

/// A refusal with an HTTP status and a stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl warp::reject::Reject for ApiError {}

/// A refusal as a rejection that `recover` turns into its JSON body.
pub fn api_error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Rejection {
    warp::reject::custom(ApiError {
        status,
        code: code.as_str(),
        message: message.into(),
    })
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

fn json_error(status: StatusCode, code: &str, message: &str) -> warp::reply::Response {
    let mut r =
        warp::reply::with_status(warp::reply::json(&ErrorBody { code, message }), status).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    let reply = if let Some(e) = r.find::<ApiError>() {
        json_error(e.status, e.code, &e.message)
    } else if r.is_not_found() {
        json_error(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the body is over the limit",
        )
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        json_error(
            StatusCode::LENGTH_REQUIRED,
            "invalid_input",
            "a Content-Length is required",
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "not_allowed",
            "method not allowed",
        )
    } else if r.find::<warp::reject::InvalidQuery>().is_some()
        || r.find::<warp::body::BodyDeserializeError>().is_some()
    {
        json_error(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "malformed query or body",
        )
    } else {
        tracing::debug!(rejection = ?r, "unhandled rejection");
        json_error(StatusCode::BAD_REQUEST, "invalid_input", "bad request")
    };
    Ok(reply)
}

type Route = warp::filters::BoxedFilter<(warp::reply::Response,)>;

fn boxed<F, R>(filter: F) -> Route
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    R: Reply + 'static,
{
    filter.map(Reply::into_response).boxed()
}

fn with_state(state: AppState) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// `GET`, and `HEAD` wherever `GET` works (hyper sends no body for `HEAD`).
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

/// The staff member behind an `Authorization: Bearer` header (never a URL parameter).
fn bearer(state: AppState) -> impl Filter<Extract = (StaffId,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(with_state(state))
        .and_then(|h: Option<String>, state: AppState| async move {
            let unauthorized = |m: &str| api_error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, m);
            let token = h
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "))
                .ok_or_else(|| unauthorized("missing bearer token"))?;
            let staff = state
                .keys
                .verify(token)
                .map_err(|e| unauthorized(&e.to_string()))?
                .staff;
            let active = state
                .ask(|reply| Command::IsActive {
                    staff: staff.clone(),
                    reply,
                })
                .await
                .unwrap_or(false);
            if !active {
                return Err(unauthorized("unknown or deactivated staff member"));
            }
            Ok(staff)
        })
}

/// Every route, boxed (the accept loop serves one concrete filter type).
pub fn routes(state: AppState) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    // GET /ws: the WebSocket endpoint.
    let ws = warp::path!("ws")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(warp::ext::get::<ConnInfo>())
        .and(with_state(state.clone()))
        .and_then(upgrade);

    // POST /api/attachments?name=FILE: the raw bytes; answers the attachment record. The rate
    // and the quota are checked from Content-Length before the body is read.
    let upload = warp::path!("api" / "attachments")
        .and(warp::post())
        .and(bearer(state.clone()))
        .and(warp::query::<NameQuery>())
        .and(warp::body::content_length_limit(limits::ATTACHMENT_MAX_BYTES))
        .and(warp::header::<u64>("content-length"))
        .and(with_state(state.clone()))
        .and_then(
            |staff: StaffId, q: NameQuery, length: u64, state: AppState| async move {
                attachments::admit_upload(staff, q.name, length, state).await
            },
        )
        .and(warp::body::bytes())
        .and_then(attachments::upload);

    // GET /api/attachments/{id}?name=FILE: only for staff in a conversation whose live message
    // references it.
    let download = warp::path!("api" / "attachments" / String)
        .and(get_or_head())
        .and(bearer(state.clone()))
        .and(warp::query::<NameQuery>())
        .and(warp::header::optional::<String>("if-none-match"))
        .and(with_state(state.clone()))
        .and_then(
            |id: String, staff: StaffId, q: NameQuery, etag: Option<String>, state: AppState| {
                attachments::download(id, staff, q.name, etag, state)
            },
        );

    // GET /api/conversations/{id}/messages?before=SEQ&limit=N: a page of history.
    let history = warp::path!("api" / "conversations" / u64 / "messages")
        .and(get_or_head())
        .and(bearer(state.clone()))
        .and(warp::query::<HistoryQuery>())
        .and(with_state(state.clone()))
        .and_then(history);

    // GET /api/staff: the directory, for starting conversations.
    let directory = warp::path!("api" / "staff")
        .and(get_or_head())
        .and(bearer(state.clone()))
        .and(with_state(state.clone()))
        .and_then(|_me: StaffId, state: AppState| async move {
            match state.ask(|reply| Command::Directory { reply }).await {
                Some(staff) => Ok(warp::reply::json(&staff)),
                None => Err(core_gone()),
            }
        });

    // GET /healthz
    let health = warp::path!("healthz")
        .and(get_or_head())
        .and(with_state(state.clone()))
        .and_then(|state: AppState| async move {
            match state.ask(|reply| Command::Health { reply }).await {
                Some(offset) => Ok(warp::reply::json(
                    &serde_json::json!({ "status": "ok", "offset": offset }),
                )),
                None => Err(api_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Internal,
                    "stopping",
                )),
            }
        });

    // GET /api/demo/staff and POST /api/demo/token: the sign-in picker, with --demo only, and
    // only for the demo's own staff (never for real staff added beside them).
    let demo_enabled = state.config.demo;
    let demo_gate = warp::any().and_then(move || async move {
        if demo_enabled {
            Ok(())
        } else {
            Err(warp::reject::not_found())
        }
    });
    let demo_staff = warp::path!("api" / "demo" / "staff")
        .and(get_or_head())
        .and(demo_gate)
        .and(with_state(state.clone()))
        .and_then(|(), state: AppState| async move {
            let staff: Vec<_> = state
                .ask(|reply| Command::Directory { reply })
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|s| crate::demo::is_demo_staff(&s.id))
                .collect();
            Ok::<_, Rejection>(warp::reply::json(&staff))
        });
    let demo_token = warp::path!("api" / "demo" / "token")
        .and(warp::post())
        .and(demo_gate)
        .and(warp::body::content_length_limit(1024))
        .and(warp::body::json::<DemoSignIn>())
        .and(with_state(state.clone()))
        .and_then(|(), body: DemoSignIn, state: AppState| async move {
            let active = crate::demo::is_demo_staff(&body.staff)
                && state
                    .ask(|reply| Command::IsActive {
                        staff: body.staff.clone(),
                        reply,
                    })
                    .await
                    .unwrap_or(false);
            if !active {
                return Err(api_error(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NotFound,
                    "no such demo staff member",
                ));
            }
            let token = state.keys.mint(&body.staff, crate::demo::TOKEN_TTL);
            Ok(warp::reply::json(&serde_json::json!({ "token": token })))
        });

    // Each route boxed to one response type keeps the combined filter's type shallow (the
    // nested type otherwise overflows the trait solver in release builds).
    let mut api = boxed(ws)
        .or(boxed(upload))
        .unify()
        .or(boxed(download))
        .unify()
        .or(boxed(history))
        .unify()
        .or(boxed(directory))
        .unify()
        .or(boxed(health))
        .unify()
        .or(boxed(demo_staff))
        .unify()
        .or(boxed(demo_token))
        .unify()
        .boxed();
    if state.config.metrics_listen.is_none() {
        api = api.or(metrics(state.clone())).unify().boxed();
    }
    let files = static_files(state.config.static_dir.clone());
    let csp = content_security_policy(state.config.static_dir.as_deref());
    api.or(files)
        .unify()
        .recover(recover)
        .unify()
        .map(move |reply| security_headers(reply, &csp))
        .with(warp::trace::request())
        .map(Reply::into_response)
        .boxed()
}

/// GET /metrics: Prometheus text.
fn metrics(state: AppState) -> Route {
    boxed(
        warp::path!("metrics")
            .and(get_or_head())
            .and(with_state(state))
            .map(|state: AppState| {
                warp::reply::with_header(
                    state.metrics.render(),
                    "content-type",
                    "text/plain; version=0.0.4",
                )
            }),
    )
}

/// The routes of the separate metrics address (`--metrics-listen`): `/metrics` alone.
pub fn metrics_routes(state: AppState) -> Route {
    metrics(state).recover(recover).unify().boxed()
}

/// The policy for everything the relay serves: scripts only from the relay itself (plus the
/// exact inline loader Trunk writes into index.html, by hash), WebAssembly compilation, no
/// framing, no referrer.
fn content_security_policy(static_dir: Option<&std::path::Path>) -> HeaderValue {
    let mut hashes = String::new();
    if let Some(html) = static_dir.and_then(|d| std::fs::read_to_string(d.join("index.html")).ok()) {
        for script in inline_scripts(&html) {
            hashes.push_str(&format!(
                " 'sha256-{}'",
                base64_engine::encode(&Sha256::digest(script.as_bytes()))
            ));
        }
    }
    let policy = format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    );
    HeaderValue::from_str(&policy).expect("the policy is ASCII")
}

/// The bodies of inline `<script>` elements (those without `src`).
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let tag = &after[..open_end];
        let body_start = open_end + 1;
        let Some(close) = after[body_start..].find("</script>") else {
            break;
        };
        if !tag.contains("src=") {
            out.push(&after[body_start..body_start + close]);
        }
        rest = &after[body_start + close..];
    }
    out
}

/// Standard base64, for CSP hashes.
mod base64_engine {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn encodes_like_rfc_4648() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
    }
}

/// The `Sec-WebSocket-Accept` answer to a valid upgrade request (RFC 6455 §4.2.1).
fn websocket_accept(headers: &warp::http::HeaderMap) -> Option<String> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let version = headers.get(header::SEC_WEBSOCKET_VERSION)?;
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") || version != "13" {
        return None;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    Some(derive_accept_key(key.as_bytes()))
}

/// Accepts a WebSocket upgrade by hand rather than with `warp::ws()`, which cannot pass
/// tungstenite the small read buffer that keeps an idle connection cheap.
async fn upgrade(
    headers: warp::http::HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    conn: ConnInfo,
    state: AppState,
) -> Result<impl Reply, Rejection> {
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let (origin, host) = (header(header::ORIGIN), header(header::HOST));
    // Cross-site WebSocket hijacking: a page on another site cannot ride a user's session.
    if !origin_allowed(origin, host, &state.config.allowed_origins) {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            ErrorCode::NotAllowed,
            "origin not allowed",
        ));
    }
    let ip = crate::address::client_ip(conn.0.peer.ip(), &headers, &state.config.trusted_proxies);
    {
        let l = &state.config.limits;
        let now = std::time::Instant::now();
        if let Err(wait) = state
            .address_buckets
            .take(&ip, l.connects_per_sec, l.connect_burst, now)
        {
            state.metrics.reject(ErrorCode::RateLimited);
            let message = format!(
                "too many connection attempts; retry in {} ms",
                wait.as_millis() + 1
            );
            return Err(api_error(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                message,
            ));
        }
    }
    let (Some(accept), Some(on_upgrade)) = (websocket_accept(&headers), on_upgrade) else {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            "a WebSocket upgrade (HTTP/1.1, version 13) is required",
        ));
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                let config = Some(session::websocket_config());
                let socket = WebSocketStream::from_raw_socket(io, Role::Server, config).await;
                session::serve(socket, state, conn.0, ip).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut response = warp::reply().into_response();
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    Ok(response)
}

fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        // Not a browser: browsers always send Origin on WebSocket upgrades.
        return true;
    };
    let own = host.is_some_and(|h| origin == format!("http://{h}") || origin == format!("https://{h}"));
    own || allowed.iter().any(|a| a == origin)
}

fn security_headers(reply: impl Reply, csp: &HeaderValue) -> warp::reply::Response {
    let mut r = reply.into_response();
    let h = r.headers_mut();
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(csp.clone());
    // JSON answers are per staff member and per moment: no cache may keep them.
    let json = h
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if json {
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    r
}

fn static_files(dir: Option<std::path::PathBuf>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    match dir {
        Some(dir) => get_or_head()
            .and(warp::fs::dir(dir))
            .map(|file: warp::fs::File| {
                let name = file
                    .path()
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                let mut r = file.into_response();
                let cache = if is_hashed(&name) {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                };
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
                r
            })
            .boxed(),
        None => warp::any()
            .and_then(|| async { Err::<warp::reply::Response, _>(warp::reject::not_found()) })
            .boxed(),
    }
}

/// Trunk names built assets `name-<16 hex digits>.ext`: those never change.
fn is_hashed(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or_default();
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit('-')
        .next()
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[derive(Deserialize)]
struct NameQuery {
    name: Option<String>,
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    limit: Option<u64>,
}

#[derive(Deserialize)]
struct DemoSignIn {
    staff: StaffId,
}

/// The core has stopped (the relay is shutting down).
pub fn core_gone() -> Rejection {
    api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal,
        "relay stopping",
    )
}

/// The HTTP status of a refusal.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::NotParticipant | ErrorCode::NotAuthor | ErrorCode::NotAllowed => StatusCode::FORBIDDEN,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::RateLimited | ErrorCode::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn history(
    conversation: u64,
    staff: StaffId,
    q: HistoryQuery,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    attachments::take_budget(&state, &staff, Kind::History)?;
    let before = q.before.map(Seq);
    let limit = q.limit.unwrap_or(50);
    let conversation = ConversationId(conversation);
    match state
        .ask(|reply| Command::History {
            staff,
            conversation,
            before,
            limit,
            reply,
        })
        .await
    {
        Some(Ok(messages)) => {
            Ok(warp::reply::json(&serde_json::json!({ "messages": messages })).into_response())
        }
        Some(Err(code)) => Err(api_error(
            status_of(code),
            code,
            "you are not in this conversation",
        )),
        None => Err(core_gone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_assets_are_recognised() {
        assert!(is_hashed("tally-frontend-3f2a9c1b0d4e5f67_bg.wasm"));
        assert!(is_hashed("tally-frontend-3f2a9c1b0d4e5f67.js"));
        assert!(!is_hashed("index.html"));
    }
}
