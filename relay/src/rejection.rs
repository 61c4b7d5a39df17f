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
}

impl warp::reject::Reject for ApiError {}

/// A refusal as a rejection that `recover` turns into its JSON body.
pub fn api_error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Rejection {
    warp::reject::custom(ApiError {
        status,
        code,
        message: message.into(),
    })
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

fn json_error(status: StatusCode, code: ErrorCode, message: &str) -> warp::reply::Response {
    let body = ErrorBody {
        code: code.as_str(),
        message,
    };
    let mut r = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    let reply = if let Some(e) = r.find::<ApiError>() {
        json_error(e.status, e.code, &e.message)
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
