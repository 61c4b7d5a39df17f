//! Refusals over HTTP: every error is a JSON body `{"code", "message"}` with a status and a
//! stable [`ErrorCode`], never cached.

use std::convert::Infallible;

use serde::Serialize;
use tally_shared::ErrorCode;
use warp::http::{HeaderValue, StatusCode, header};
use warp::{Rejection, Reply};

/// A refusal with an HTTP status and a stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    /// When to try again (a 429): sent as `Retry-After` (whole seconds, rounded up) and as
    /// `retry_after_ms` in the body.
    retry_after: Option<std::time::Duration>,
}

impl warp::reject::Reject for ApiError {}

/// A refusal as a rejection that `recover` turns into its JSON body.
pub fn api_error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Rejection {
    warp::reject::custom(ApiError {
        status,
        code,
        message: message.into(),
        retry_after: None,
    })
}

/// A 429 `rate_limited`: `what` is too frequent; retry after `wait`.
pub fn rate_limited(what: &str, wait: std::time::Duration) -> Rejection {
    warp::reject::custom(ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: ErrorCode::RateLimited,
        message: format!("{what}; retry in {} ms", wait.as_millis() + 1),
        retry_after: Some(wait),
    })
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

fn json_error(status: StatusCode, code: ErrorCode, message: &str) -> warp::reply::Response {
    error_response(status, code, message, None)
}

fn error_response(
    status: StatusCode,
    code: ErrorCode,
    message: &str,
    retry_after: Option<std::time::Duration>,
) -> warp::reply::Response {
    let body = ErrorBody {
        code: code.as_str(),
        message,
        retry_after_ms: retry_after.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX) + 1),
    };
    let mut r = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(wait) = retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    r
}

pub async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    let reply = if let Some(e) = r.find::<ApiError>() {
        error_response(e.status, e.code, &e.message, e.retry_after)
    } else if r.is_not_found() {
        json_error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            "the body is over the limit",
        )
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        json_error(
            StatusCode::LENGTH_REQUIRED,
            ErrorCode::InvalidInput,
            "a Content-Length is required",
        )
    } else if let Some(e) = r.find::<warp::body::BodyDeserializeError>() {
        // Say what was wrong (a missing field, a wrong type, where): integrators read this.
        // Before a method's 405: a route that read the body had the right path and method.
        let why = std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string);
        json_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            &format!("malformed body: {why}"),
        )
    } else if r.find::<warp::reject::InvalidQuery>().is_some() {
        json_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            "malformed query or body",
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::NotAllowed,
            "method not allowed",
        )
    } else {
        tracing::debug!(rejection = ?r, "unhandled rejection");
        json_error(StatusCode::BAD_REQUEST, ErrorCode::InvalidInput, "bad request")
    };
    Ok(reply)
}

/// A request whose body came too slowly (`paced`): 408, and the connection closes.
pub fn body_too_slow() -> warp::reply::Response {
    let message = crate::paced::TooSlow.to_string();
    let mut r = json_error(StatusCode::REQUEST_TIMEOUT, ErrorCode::Timeout, &message);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
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
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
        _ => StatusCode::BAD_REQUEST,
    }
}
