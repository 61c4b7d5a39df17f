//! The WebSocket upgrade, accepted by hand rather than with `warp::ws()` (which cannot pass
//! tungstenite the small read buffer that keeps an idle connection cheap): the Origin check,
//! the per-address attempt budget, and the RFC 6455 handshake.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tally_shared::ErrorCode;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use warp::http::{HeaderValue, StatusCode, header};
use warp::{Rejection, Reply};

use crate::listener::ConnInfo;
use crate::rejection::api_error;
use crate::session;
use crate::state::AppState;

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
pub async fn upgrade(
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
            return Err(crate::rejection::rate_limited(
                "too many connection attempts",
                wait,
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
    own || crate::cors::allowed(origin, allowed)
}
