//! Cross-origin embedding: a host page on another origin loads the widget's files from the relay
//! and calls its API. For the origins named with `--allow-origin`, and only for them, responses
//! carry `Access-Control-Allow-Origin` and preflights are answered; every response says
//! `Vary: Origin`, so no cache hands one origin's answer to another. Same-origin deployments
//! (the relay behind the work app's own reverse proxy) need none of it and see no change.

use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::{Filter, Rejection, Reply};

use crate::rejection::api_error;
use tally_shared::ErrorCode;

/// The methods the widget uses.
const METHODS: &str = "GET, HEAD, POST";
/// The request headers the widget sends.
const HEADERS: &str = "authorization, content-type";
/// How long a browser may keep a preflight's answer, in seconds.
const MAX_AGE: &str = "600";

/// Whether `origin` is one the operator allowed.
pub fn allowed(origin: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| a == origin)
}

/// `OPTIONS` anywhere: a CORS preflight, answered for allowed origins and refused for others.
pub fn preflight(
    allowed_origins: Vec<String>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    // Not `warp::options()`: its rejection of other methods (405) would outrank the 404 of a
    // path no route has.
    warp::method()
        .and_then(|method: Method| async move {
            if method == Method::OPTIONS {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("access-control-request-method"))
        .and_then(move |origin: Option<String>, method: Option<String>| {
            let allowed_origins = allowed_origins.clone();
            async move {
                let asked = method.and_then(|m| m.parse::<Method>().ok());
                let ok = matches!(asked, Some(Method::GET | Method::HEAD | Method::POST));
                match origin {
                    Some(origin) if ok && allowed(&origin, &allowed_origins) => {
                        let mut r = warp::reply().into_response();
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        let h = r.headers_mut();
                        h.insert(
                            header::ACCESS_CONTROL_ALLOW_METHODS,
                            HeaderValue::from_static(METHODS),
                        );
                        h.insert(
                            header::ACCESS_CONTROL_ALLOW_HEADERS,
                            HeaderValue::from_static(HEADERS),
                        );
                        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
                        Ok(r)
                    }
                    _ => Err(api_error(
                        StatusCode::FORBIDDEN,
                        ErrorCode::NotAllowed,
                        "cross-origin requests are not allowed from this origin",
                    )),
                }
            }
        })
}

/// Adds the CORS headers a response needs for the request's `origin`.
pub fn decorate(
    mut r: warp::reply::Response,
    origin: Option<&str>,
    allowed_origins: &[String],
) -> warp::reply::Response {
    let h = r.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin.filter(|o| allowed(o, allowed_origins))
        && let Ok(value) = HeaderValue::from_str(origin)
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    r
}
