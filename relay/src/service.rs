//! The service API: what the work app's backend calls (`/api/v1/service/…`), with a service key
//! (`Authorization: Bearer tally_sk_…`), never a staff token. Every write goes to the core as
//! a [`ServiceWrite`] in the same batches, through the same engine, validation and log as a
//! WebSocket write; refusals are the same typed JSON errors. Each key has its own rate budget
//! (`--service-per-sec`, `--service-burst`). `docs/integration.md` has an example of each call.

use serde::Deserialize;
use tally_shared::engine::{DirectPost, ServiceRequest};
use tally_shared::{ClientMsgId, ConversationId, ErrorCode, LogWrite, MessageId, Staff, StaffId, limits};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::attachments::{self, take_budget};
use crate::core::{Command, ServiceDone, ServiceWrite};
use crate::limits::Kind;
use crate::listener::ConnInfo;
use crate::rejection::{api_error, core_gone, status_of};
use crate::state::AppState;

type Route = warp::filters::BoxedFilter<(warp::reply::Response,)>;

/// Most staff in one mirror call.
pub const MIRROR_MAX: usize = 100_000;
/// Largest JSON body of a service call other than the staff mirror.
const BODY_MAX: u64 = 64 * 1024;

fn with_state(
    state: AppState,
) -> impl Filter<Extract = (AppState,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

fn base() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path!("api" / "v1" / "service" / ..)
}

/// A live service key (its name), with a token from its rate budget. Failed attempts are
/// throttled per address (`service_keys::Attempts`).
fn service_key(state: AppState) -> impl Filter<Extract = ((),), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::header::headers_cloned())
        .and(warp::ext::get::<ConnInfo>())
        .and(with_state(state))
        .and_then(
            |h: Option<String>, headers, conn: ConnInfo, state: AppState| async move {
                let unauthorized = |m: &str| api_error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, m);
                let key = h
                    .as_deref()
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .ok_or_else(|| unauthorized("missing bearer service key"))?
                    .to_string();
                let ip = crate::address::client_ip(conn.0.peer.ip(), &headers, &state.config.trusted_proxies);
                if let Err(wait) = state.key_attempts.may_try(ip, &key) {
                    state.metrics.reject(ErrorCode::RateLimited);
                    let what = "too many failed service-key attempts from this address";
                    return Err(crate::rejection::rate_limited(what, wait));
                }
                let asked = key.clone();
                let found = state
                    .ask(|reply| Command::ServiceKey { key: asked, reply })
                    .await
                    .ok_or_else(core_gone)?;
                let Some(name) = found else {
                    state.key_attempts.failed(ip);
                    return Err(unauthorized("unknown or revoked service key"));
                };
                state.key_attempts.succeeded(&key);
                // Key names are in the staff id alphabet: its own bucket kind keeps them apart.
                let bucket = StaffId::new(name).map_err(|_| unauthorized("unusable service key name"))?;
                take_budget(&state, &bucket, Kind::Service)?;
                Ok::<_, Rejection>(())
            },
        )
}

fn json_body<T: for<'de> Deserialize<'de> + Send>(
    max: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::body::content_length_limit(max).and(warp::body::json::<T>())
}

/// Every route of the service API.
pub fn routes(state: AppState) -> Route {
    let key = || service_key(state.clone());
    let s = || with_state(state.clone());
    let mirror = base()
        .and(warp::path!("staff"))
        .and(warp::put())
        .and(key())
        .and(warp::query::<MirrorQuery>())
        .and(json_body::<Vec<StaffEntry>>(16 * 1024 * 1024))
        .and(s())
        .and_then(mirror_staff);
    let unread = base()
        .and(warp::path!("staff" / StaffId / "unread"))
        .and(crate::pages::get_or_head())
        .and(key())
        .and(s())
        .and_then(unread);
    let post = base()
        .and(warp::path!("messages"))
        .and(warp::post())
        .and(key())
        .and(json_body::<PostMessage>(BODY_MAX))
        .and(s())
        .and_then(post_message);
    let group = base()
        .and(warp::path!("conversations"))
        .and(warp::post())
        .and(key())
        .and(json_body::<CreateGroup>(BODY_MAX))
        .and(s())
        .and_then(create_group);
    let add = base()
        .and(warp::path!("conversations" / u64 / "participants"))
        .and(warp::post())
        .and(key())
        .and(json_body::<AddParticipants>(BODY_MAX))
        .and(s())
        .and_then(add_participants);
    let remove = base()
        .and(warp::path!("conversations" / u64 / "participants" / StaffId))
        .and(warp::delete())
        .and(key())
        .and(s())
        .and_then(remove_participant);
    let upload = base()
        .and(warp::path!("attachments"))
        .and(warp::post())
        .and(key())
        .and(warp::query::<UploadQuery>())
        .and(warp::body::content_length_limit(limits::ATTACHMENT_MAX_BYTES))
        .and(warp::header::<u64>("content-length"))
        .and(s())
        .and_then(|(), q: UploadQuery, length: u64, state: AppState| async move {
            let uploader = q.uploader.unwrap_or_else(StaffId::system);
            attachments::admit_upload(uploader, q.name, length, state).await
        })
        .and(warp::body::bytes())
        .and_then(attachments::upload);
    let routes = mirror
        .map(Reply::into_response)
        .or(unread.map(Reply::into_response))
        .unify()
        .or(post.map(Reply::into_response))
        .unify()
        .or(group.map(Reply::into_response))
        .unify()
        .or(add.map(Reply::into_response))
        .unify()
        .or(remove.map(Reply::into_response))
        .unify()
        .or(upload.map(Reply::into_response))
        .unify();
    routes.boxed()
}

#[derive(Deserialize)]
struct MirrorQuery {
    #[serde(default)]
    deactivate_missing: bool,
}

/// One staff member as the work app has them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffEntry {
    id: StaffId,
    name: String,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeBody {
    title: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostMessage {
    conversation: Option<ConversationId>,
    direct: Option<[StaffId; 2]>,
    sender: Option<StaffId>,
    notice: Option<NoticeBody>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    attachments: Vec<tally_shared::AttachmentId>,
    reply_to: Option<MessageId>,
    /// A thread's root (its seq) in `conversation`: the post is a reply in that thread.
    thread: Option<tally_shared::Seq>,
    client_id: Option<ClientMsgId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    title: String,
    participants: Vec<StaffId>,
    client_id: Option<ClientMsgId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddParticipants {
    staff: Vec<StaffId>,
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
    /// Whose upload it is (a staff member who will send it), or the service's own (notices).
    uploader: Option<StaffId>,
}

fn invalid(message: impl Into<String>) -> Rejection {
    api_error(StatusCode::BAD_REQUEST, ErrorCode::InvalidInput, message)
}

/// A random client id, for a call that did not bring one (a retry of it is then not
/// recognised: bring one to make retries safe).
fn fresh_client_id() -> ClientMsgId {
    ClientMsgId::new(format!("svc-{}", hex::encode(rand::random::<[u8; 12]>()))).expect("hex is an id")
}

async fn write(state: &AppState, write: ServiceWrite) -> Result<ServiceDone, Rejection> {
    let acting = match &write {
        ServiceWrite::AsStaff(staff, _) => Some(staff.clone()),
        ServiceWrite::Service(_) => None,
    };
    match state.ask(|reply| Command::Service { write, reply }).await {
        Some(Ok(done)) => Ok(done),
        // The key is fine: it is the staff member it acts as who is unknown or deactivated.
        Some(Err(rejection)) if rejection.code == ErrorCode::Unauthorized && acting.is_some() => {
            let staff = acting.expect("checked");
            let message = format!("no active staff member {staff}");
            Err(api_error(StatusCode::NOT_FOUND, ErrorCode::NotFound, message))
        }
        Some(Err(rejection)) => Err(api_error(
            status_of(rejection.code),
            rejection.code,
            rejection.message,
        )),
        None => Err(core_gone()),
    }
}

/// 201 with the body when the call made something, 200 when it was a retry of one that did.
fn answer(created: bool, body: &serde_json::Value) -> warp::reply::Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

async fn mirror_staff(
    (): (),
    q: MirrorQuery,
    entries: Vec<StaffEntry>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    if entries.len() > MIRROR_MAX {
        return Err(invalid(format!("at most {MIRROR_MAX} staff per call")));
    }
    // An empty list with `deactivate_missing` would deactivate everyone: almost always a
    // query that returned nothing, not a company that let every member of staff go.
    if entries.is_empty() && q.deactivate_missing {
        return Err(invalid(
            "an empty list with deactivate_missing=true would deactivate every member of staff: \
             refused (deactivate people one by one with \"active\": false)",
        ));
    }
    let mut staff = Vec::with_capacity(entries.len());
    let mut seen = std::collections::HashSet::new();
    for (i, e) in entries.into_iter().enumerate() {
        let name = e.name.trim();
        if e.id.is_system() {
            return Err(invalid(format!("staff[{i}]: `{}` is reserved", StaffId::SYSTEM)));
        }
        if name.is_empty() || name.len() > limits::STAFF_NAME_MAX_BYTES || name.chars().any(char::is_control)
        {
            let max = limits::STAFF_NAME_MAX_BYTES;
            return Err(invalid(format!(
                "staff[{i}]: a name is 1 to {max} bytes, no control characters"
            )));
        }
        if !seen.insert(e.id.clone()) {
            return Err(invalid(format!("staff[{i}]: {} is listed twice", e.id)));
        }
        staff.push((
            Staff {
                id: e.id,
                name: name.to_string(),
            },
            e.active,
        ));
    }
    let deactivate_missing = q.deactivate_missing;
    let ask = |reply| Command::MirrorStaff {
        staff,
        deactivate_missing,
        reply,
    };
    match state.ask(ask).await {
        Some(Ok(report)) => Ok(warp::reply::json(&report).into_response()),
        Some(Err(e)) => {
            tracing::error!(error = %e, "mirroring staff failed");
            Err(api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "could not store the staff",
            ))
        }
        None => Err(core_gone()),
    }
}

async fn unread(staff: StaffId, (): (), state: AppState) -> Result<warp::reply::Response, Rejection> {
    let s = staff.clone();
    let Some((total, conversations)) = state
        .ask(|reply| Command::Unread { staff: s, reply })
        .await
        .ok_or_else(core_gone)?
    else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no staff member {staff}"),
        ));
    };
    let conversations: Vec<_> = conversations
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "id": c.conversation.id,
                "kind": c.conversation.kind,
                "title": c.conversation.title,
                "unread": c.counts.unread,
                "mentions": c.counts.mentions,
                "muted": c.muted,
                "last_read": c.last_read,
                "head": c.head,
                // The threads followed here: the total adds their counts (when not muted).
                "threads": c.threads.iter().map(|t| serde_json::json!({
                    "root": t.root,
                    "unread": t.counts.unread,
                    "mentions": t.counts.mentions,
                    "last_read": t.last_read,
                    "head": t.head,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = serde_json::json!({ "staff": staff, "total": total, "conversations": conversations });
    Ok(warp::reply::json(&body).into_response())
}

async fn post_message((): (), p: PostMessage, state: AppState) -> Result<warp::reply::Response, Rejection> {
    let client_id = p.client_id.unwrap_or_else(fresh_client_id);
    if p.notice.is_some() && (!p.body.is_empty() || p.reply_to.is_some()) {
        return Err(invalid("a notice has `notice.text`, no `body` or `reply_to`"));
    }
    if p.thread.is_some() && (p.notice.is_some() || p.direct.is_some() || p.reply_to.is_some()) {
        return Err(invalid(
            "a reply in a thread is a `sender`'s post into a `conversation`, without `reply_to`",
        ));
    }
    // Everything is checked before anything is written: into a direct conversation, the post
    // and the conversation it may open are one write, so a refused post opens nothing.
    let request = match (p.conversation, p.direct, p.sender, p.notice) {
        (Some(_), Some(_), ..) | (None, None, ..) => {
            return Err(invalid("give exactly one of `conversation` and `direct`"));
        }
        (_, _, Some(_), Some(_)) | (_, _, None, None) => {
            return Err(invalid("give exactly one of `sender` and `notice`"));
        }
        (Some(conversation), None, Some(sender), None) => ServiceWrite::AsStaff(
            sender,
            match p.thread {
                Some(thread) => {
                    LogWrite::reply_in_thread(client_id, conversation, thread, p.body, p.attachments)
                }
                None => LogWrite::send_message(client_id, conversation, p.body, p.attachments, p.reply_to),
            },
        ),
        (Some(conversation), None, None, Some(notice)) => ServiceWrite::Service(ServiceRequest::PostNotice {
            client_id,
            conversation,
            title: notice.title,
            body: notice.text,
            attachments: p.attachments,
        }),
        (None, Some(between), sender, notice) => {
            let post = match (sender, notice) {
                (Some(sender), None) => DirectPost::Send {
                    sender,
                    client_id,
                    body: p.body,
                    attachments: p.attachments,
                    reply_to: p.reply_to,
                },
                (None, Some(notice)) => DirectPost::Notice {
                    client_id,
                    title: notice.title,
                    body: notice.text,
                    attachments: p.attachments,
                },
                _ => unreachable!("one of sender and notice, checked above"),
            };
            ServiceWrite::Service(ServiceRequest::PostDirect { between, post })
        }
    };
    let done = write(&state, request).await?;
    let created = done.created;
    let body = serde_json::json!({ "offset": done.ack.offset, "message": done.message });
    Ok(answer(created, &body))
}

async fn create_group((): (), g: CreateGroup, state: AppState) -> Result<warp::reply::Response, Rejection> {
    let request = ServiceRequest::CreateGroup {
        client_id: g.client_id.unwrap_or_else(fresh_client_id),
        title: g.title,
        participants: g.participants,
    };
    let done = write(&state, ServiceWrite::Service(request)).await?;
    let id = done.ack.conversation.expect("a group was created or found");
    let conversation = state
        .ask(|reply| Command::Conversation { id, reply })
        .await
        .ok_or_else(core_gone)?;
    let body = serde_json::json!({ "offset": done.ack.offset, "conversation": conversation });
    Ok(answer(done.created, &body))
}

async fn add_participants(
    conversation: u64,
    (): (),
    a: AddParticipants,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let id = ConversationId(conversation);
    let request = ServiceRequest::AddParticipants {
        conversation: id,
        staff: a.staff,
    };
    membership(&state, id, request).await
}

async fn remove_participant(
    conversation: u64,
    staff: StaffId,
    (): (),
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let id = ConversationId(conversation);
    let request = ServiceRequest::RemoveParticipant {
        conversation: id,
        staff,
    };
    membership(&state, id, request).await
}

async fn membership(
    state: &AppState,
    id: ConversationId,
    request: ServiceRequest,
) -> Result<warp::reply::Response, Rejection> {
    let done = write(state, ServiceWrite::Service(request)).await?;
    let conversation = state
        .ask(|reply| Command::Conversation { id, reply })
        .await
        .ok_or_else(core_gone)?;
    let body = serde_json::json!({ "offset": done.ack.offset, "conversation": conversation });
    Ok(answer(false, &body))
}
