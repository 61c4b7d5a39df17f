//! HTTP routes: the WebSocket endpoint, attachments, history, health, metrics, the demo
//! sign-in picker, and the built frontend. Every error is a JSON body with a stable code, and
//! every `GET` route answers `HEAD` too.

use std::convert::Infallible;

use hyper::upgrade::OnUpgrade;
use serde::Deserialize;
use tally_shared::{ConversationId, ErrorCode, Seq, StaffId, limits};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::core::{Command, HistoryRequest};
use crate::limits::Kind;
use crate::listener::ConnInfo;
use crate::pages::{content_security_policy, get_or_head, security_headers, static_files};
use crate::rejection::{api_error, core_gone, recover, status_of};
use crate::state::AppState;
use crate::{attachments, cors, upgrade};

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
    // Each route boxed to one response type keeps the combined filter's type shallow (the
    // nested type otherwise overflows the trait solver in release builds).
    let mut api = websocket(state.clone())
        .or(upload(state.clone()))
        .unify()
        .or(download(state.clone()))
        .unify()
        .or(history_page(state.clone()))
        .unify()
        .or(message_versions(state.clone()))
        .unify()
        .or(search_page(state.clone()))
        .unify()
        .or(directory(state.clone()))
        .unify()
        .or(health(state.clone()))
        .unify()
        .or(crate::service::routes(state.clone()))
        .unify()
        .boxed();
    if state.config.demo {
        api = api
            .or(demo_staff(state.clone()))
            .unify()
            .or(demo_token(state.clone()))
            .unify()
            .boxed();
    }
    if state.config.metrics_listen.is_none() {
        api = api.or(metrics(state.clone())).unify().boxed();
    }
    let files = static_files(state.config.static_dir.clone());
    let csp = content_security_policy(state.config.static_dir.as_deref());
    let origins = state.config.allowed_origins.clone();
    let answered = cors::preflight(origins.clone())
        .or(api)
        .unify()
        .or(files)
        .unify()
        .recover(recover)
        .unify();
    warp::header::optional::<String>("origin")
        .and(answered)
        .map(move |origin: Option<String>, reply| cors::decorate(reply, origin.as_deref(), &origins))
        .map(move |reply| security_headers(reply, &csp))
        .with(warp::trace::request())
        .map(Reply::into_response)
        .boxed()
}

/// GET /ws: the WebSocket endpoint.
fn websocket(state: AppState) -> Route {
    boxed(
        warp::path!("ws")
            .and(warp::get())
            .and(warp::header::headers_cloned())
            .and(warp::ext::optional::<OnUpgrade>())
            .and(warp::ext::get::<ConnInfo>())
            .and(with_state(state))
            .and_then(upgrade::upgrade),
    )
}

/// POST /api/attachments?name=FILE: the raw bytes; answers the attachment record. The rate and
/// the quota are checked from Content-Length before the body is read.
fn upload(state: AppState) -> Route {
    boxed(
        warp::path!("api" / "attachments")
            .and(warp::post())
            .and(bearer(state.clone()))
            .and(warp::query::<NameQuery>())
            .and(warp::body::content_length_limit(limits::ATTACHMENT_MAX_BYTES))
            .and(warp::header::<u64>("content-length"))
            .and(with_state(state))
            .and_then(
                |staff: StaffId, q: NameQuery, length: u64, state: AppState| async move {
                    attachments::admit_upload(staff, q.name, length, state).await
                },
            )
            .and(warp::body::bytes())
            .and_then(attachments::upload),
    )
}

/// GET /api/attachments/{id}?name=FILE: only for staff in a conversation whose live message
/// references it.
fn download(state: AppState) -> Route {
    boxed(
        warp::path!("api" / "attachments" / String)
            .and(get_or_head())
            .and(bearer(state.clone()))
            .and(warp::query::<NameQuery>())
            .and(warp::header::optional::<String>("if-none-match"))
            .and(with_state(state))
            .and_then(
                |id: String, staff: StaffId, q: NameQuery, etag: Option<String>, state: AppState| {
                    attachments::download(id, staff, q.name, etag, state)
                },
            ),
    )
}

/// GET /api/conversations/{id}/messages?before=SEQ&limit=N[&thread=ROOT]: a page of history,
/// or of one thread (its root and replies).
fn history_page(state: AppState) -> Route {
    boxed(
        warp::path!("api" / "conversations" / u64 / "messages")
            .and(get_or_head())
            .and(bearer(state.clone()))
            .and(warp::query::<HistoryQuery>())
            .and(with_state(state))
            .and_then(history),
    )
}

/// GET /api/messages/{id}/versions: a message's earlier texts (before each edit), oldest
/// first, as far as I saw them.
fn message_versions(state: AppState) -> Route {
    boxed(
        warp::path!("api" / "messages" / u64 / "versions")
            .and(get_or_head())
            .and(bearer(state.clone()))
            .and(with_state(state))
            .and_then(versions),
    )
}

/// GET /api/search?q=WORDS[&conversation=ID][&before=MESSAGE][&limit=N]: the messages of my
/// conversations (or of one) whose text has every word (the last as a word's start), newest
/// first; `next_before` pages on.
fn search_page(state: AppState) -> Route {
    boxed(
        warp::path!("api" / "search")
            .and(get_or_head())
            .and(bearer(state.clone()))
            .and(warp::query::<SearchParams>())
            .and(with_state(state))
            .and_then(search),
    )
}

/// GET /api/staff: the directory, for starting conversations.
fn directory(state: AppState) -> Route {
    boxed(
        warp::path!("api" / "staff")
            .and(get_or_head())
            .and(bearer(state.clone()))
            .and(with_state(state))
            .and_then(|_me: StaffId, state: AppState| async move {
                match state.ask(|reply| Command::Directory { reply }).await {
                    Some(staff) => Ok(warp::reply::json(&staff)),
                    None => Err(core_gone()),
                }
            }),
    )
}

/// GET /healthz
fn health(state: AppState) -> Route {
    boxed(
        warp::path!("healthz")
            .and(get_or_head())
            .and(with_state(state))
            .and_then(|state: AppState| async move {
                match state.ask(|reply| Command::Health { reply }).await {
                    Some(offset) => Ok(warp::reply::json(
                        &serde_json::json!({ "status": "ok", "offset": offset }),
                    )),
                    None => Err(core_gone()),
                }
            }),
    )
}

/// GET /api/demo/staff (with `--demo` only): the sign-in picker's staff, the demo's own only
/// (never real staff added beside them).
fn demo_staff(state: AppState) -> Route {
    boxed(
        warp::path!("api" / "demo" / "staff")
            .and(get_or_head())
            .and(with_state(state))
            .and_then(|state: AppState| async move {
                let staff: Vec<_> = state
                    .ask(|reply| Command::Directory { reply })
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| crate::demo::is_demo_staff(&s.id))
                    .collect();
                Ok::<_, Rejection>(warp::reply::json(&staff))
            }),
    )
}

/// POST /api/demo/token (with `--demo` only): a token for one of the demo's staff.
fn demo_token(state: AppState) -> Route {
    boxed(
        warp::path!("api" / "demo" / "token")
            .and(warp::post())
            .and(warp::body::content_length_limit(1024))
            .and(warp::body::json::<DemoSignIn>())
            .and(with_state(state))
            .and_then(|body: DemoSignIn, state: AppState| async move {
                let staff = body.staff;
                let ask = |reply| Command::IsActive {
                    staff: staff.clone(),
                    reply,
                };
                let active = crate::demo::is_demo_staff(&staff) && state.ask(ask).await.unwrap_or(false);
                if !active {
                    let message = "no such demo staff member";
                    return Err(api_error(StatusCode::NOT_FOUND, ErrorCode::NotFound, message));
                }
                let token = state.keys.mint(&staff, crate::demo::TOKEN_TTL);
                Ok(warp::reply::json(&serde_json::json!({ "token": token })))
            }),
    )
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

#[derive(Deserialize)]
struct NameQuery {
    name: Option<String>,
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    limit: Option<u64>,
    /// A thread's root: the page is that thread's (its root and replies).
    thread: Option<u64>,
}

#[derive(Deserialize)]
struct SearchParams {
    q: Option<String>,
    conversation: Option<u64>,
    before: Option<u64>,
    limit: Option<u64>,
}

#[derive(Deserialize)]
struct DemoSignIn {
    staff: StaffId,
}

async fn search(
    staff: StaffId,
    q: SearchParams,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let terms = crate::search::terms(q.q.as_deref().unwrap_or_default())
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, ErrorCode::InvalidInput, e.to_string()))?;
    attachments::take_budget(&state, &staff, Kind::Search)?;
    let limit = q.limit.unwrap_or(20);
    let asked = |reply| {
        Command::Search(crate::core::SearchRequest {
            staff: staff.clone(),
            terms,
            conversation: q.conversation.map(ConversationId),
            before: q.before.map(tally_shared::MessageId),
            limit,
            reply,
        })
    };
    let query = match state.ask(asked).await {
        Some(Ok(query)) => query,
        Some(Err(code)) => {
            let why = match code {
                ErrorCode::NotParticipant => "you are not in this conversation",
                _ => "no such conversation",
            };
            return Err(api_error(status_of(code), code, why));
        }
        None => return Err(core_gone()),
    };
    use crate::search::SearchError;
    match state.searcher.search(&staff, query).await {
        Ok(found) => {
            let next_before = found.more.then(|| found.messages.last().map(|m| m.id)).flatten();
            let body = serde_json::json!({ "results": found.messages, "next_before": next_before });
            Ok(warp::reply::json(&body).into_response())
        }
        Err(SearchError::Busy) => Err(crate::rejection::rate_limited(
            "searches are busy",
            std::time::Duration::from_millis(500),
        )),
        Err(SearchError::Unsearchable) => Err(api_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            "some characters of this search cannot be searched for",
        )),
        Err(SearchError::TooSlow) => Err(api_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            "this search takes too long: use whole words, or more letters before *",
        )),
        Err(SearchError::Failed(e)) => {
            tracing::error!(error = %e, "search failed");
            Err(api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the search failed",
            ))
        }
    }
}

async fn versions(message: u64, staff: StaffId, state: AppState) -> Result<warp::reply::Response, Rejection> {
    attachments::take_budget(&state, &staff, Kind::History)?;
    let message = tally_shared::MessageId(message);
    match state
        .ask(|reply| Command::Versions {
            staff,
            message,
            reply,
        })
        .await
    {
        Some(Ok(versions)) => Ok(warp::reply::json(&serde_json::json!({
            "message": message,
            "versions": versions,
        }))
        .into_response()),
        Some(Err(code)) => Err(api_error(
            status_of(code),
            code,
            match code {
                ErrorCode::NotParticipant => "you are not in this message's conversation",
                ErrorCode::NotFound => "no such message (or it was deleted)",
                _ => "the message's versions cannot be read now; retry",
            },
        )),
        None => Err(core_gone()),
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
        .ask(|reply| {
            Command::History(HistoryRequest {
                staff,
                conversation,
                before,
                thread: q.thread.map(Seq),
                limit,
                reply,
            })
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
