//! The WebSocket: `hello` with the token and the last applied offset, every frame into the
//! chatStore, reconnection with exponential backoff and jitter, and the outbox resent on
//! every reconnect.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::mpsc;
use futures_util::{SinkExt, StreamExt};
use gloo::net::websocket::{Message, WebSocketError, futures::WebSocket};
use tally_shared::protocol::{ServerFrame, close, encode};
use tally_shared::{ClientFrame, Offset, Request};
use yew::Callback;

use crate::inbox::Inbox;
use crate::options::MountOptions;
use crate::state::{Action, ConnectionState};

/// Where frames to send go: the current socket's writer, when connected.
#[derive(Clone, Default)]
pub struct Outlet(Rc<RefCell<Option<mpsc::UnboundedSender<String>>>>);

impl Outlet {
    /// Drops the current socket's writer (the widget is going away).
    pub fn close(&self) {
        self.0.borrow_mut().take();
    }

    /// Sends a frame if connected; false otherwise (the outbox and the read logic retry).
    pub fn send(&self, frame: &ClientFrame) -> bool {
        match &*self.0.borrow() {
            Some(tx) => tx.unbounded_send(encode(frame)).is_ok(),
            None => false,
        }
    }
}

/// Delay before reconnect attempt `attempt` (1, 2, ...): 0.5 s doubling up to 30 s, with full
/// jitter in its upper half so that a relay restart is not met by every client at once.
pub fn backoff_ms(attempt: u32, random: f64) -> u32 {
    let cap = 500u32.saturating_mul(1 << attempt.min(6)).min(30_000);
    (cap as f64 * (0.5 + random * 0.5)) as u32
}

/// Runs the connection until the staff member is deactivated or signed out.
pub async fn run(
    options: Rc<MountOptions>,
    dispatch: Callback<Action>,
    applied: Rc<dyn Fn() -> Offset>,
    can_reload: Rc<dyn Fn() -> bool>,
    outlet: Outlet,
) {
    let mut attempt = 0u32;
    loop {
        if !is_online() {
            dispatch.emit(Action::Connection(ConnectionState::Offline(
                "status.offline".into(),
            )));
            window_event("online").await;
            attempt = 0;
        }
        // The first attempt uses the socket opened at mount (dropped, so closed, if unused).
        let early = options.early.take_socket();
        // A `getToken` that failed, or gave something that is no token (the host's login page,
        // once its session ended), means signed out, not a reason to knock once a second.
        let token = options.token().await.filter(|t| looks_like_token(t));
        let close_code = match token {
            Some(token) => {
                let ws = match early {
                    Some(ws) => Some(ws),
                    None => WebSocket::open(&options.ws_url()).ok(),
                };
                match ws {
                    Some(ws) => connect_once(ws, &token, &dispatch, &applied, &outlet, &mut attempt).await,
                    None => None,
                }
            }
            None => Some(close::UNAUTHORIZED),
        };
        *outlet.0.borrow_mut() = None;
        match close_code {
            Some(close::UNSUPPORTED_PROTOCOL) => {
                // The relay was upgraded past this widget: reload it, but not under the
                // person's hands, and never with a message still waiting to be sent.
                dispatch.emit(Action::Connection(ConnectionState::Offline(
                    "status.updated".into(),
                )));
                reload_when_idle(&can_reload).await;
                return;
            }
            Some(close::DEACTIVATED) => {
                dispatch.emit(Action::Connection(ConnectionState::Offline(
                    "status.deactivated".into(),
                )));
                return;
            }
            Some(close::UNAUTHORIZED) if options.get_token.is_none() => {
                dispatch.emit(Action::Connection(ConnectionState::Offline(
                    "status.signed_out".into(),
                )));
                return;
            }
            _ => {}
        }
        if !is_online() {
            continue;
        }
        attempt += 1;
        if close_code == Some(close::UNAUTHORIZED) {
            // Signed out for now: `getToken` is asked again later and later (up to every 30 s),
            // in case the host's session comes back.
            dispatch.emit(Action::Connection(ConnectionState::Offline(
                "status.signed_out".into(),
            )));
        } else {
            // A cluster's nodes listed in `relayUrls`: try the next (any node serves anyone).
            options.next_relay();
            dispatch.emit(Action::Connection(ConnectionState::Reconnecting { attempt }));
        }
        let delay = gloo::timers::future::TimeoutFuture::new(backoff_ms(attempt, js_sys::Math::random()));
        // Coming back online cuts the wait short.
        let _ = futures_util::future::select(delay, Box::pin(window_event("online"))).await;
    }
}

async fn connect_once(
    ws: WebSocket,
    token: &str,
    dispatch: &Callback<Action>,
    applied: &Rc<dyn Fn() -> Offset>,
    outlet: &Outlet,
    attempt: &mut u32,
) -> Option<u16> {
    let (mut sink, mut stream) = ws.split();
    let resume_from = Some(applied()).filter(|o| o.0 > 0);
    let hello = ClientFrame::new(Request::hello_counts_first(token.to_string(), resume_from));
    if sink.send(Message::Text(encode(&hello))).await.is_err() {
        return None;
    }
    let (tx, mut rx) = mpsc::unbounded::<String>();
    *outlet.0.borrow_mut() = Some(tx);
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(text) = rx.next().await {
            if sink.send(Message::Text(text)).await.is_err() {
                break;
            }
        }
    });
    let inbox = Inbox::new(dispatch.clone());
    let closed = read_frames(&mut stream, dispatch, &inbox, attempt).await;
    // What the socket delivered before it closed counts, before anything else happens.
    inbox.flush();
    closed
}

/// Reads frames into the inbox until the socket closes (its close code) or the browser goes
/// offline.
async fn read_frames(
    stream: &mut (impl futures_util::Stream<Item = Result<Message, WebSocketError>> + Unpin),
    dispatch: &Callback<Action>,
    inbox: &Rc<Inbox>,
    attempt: &mut u32,
) -> Option<u16> {
    let mut first = true;
    let mut offline = Box::pin(window_event("offline"));
    loop {
        let msg = match futures_util::future::select(stream.next(), offline.as_mut()).await {
            futures_util::future::Either::Left((Some(msg), _)) => msg,
            futures_util::future::Either::Left((None, _)) => return None,
            // The browser lost the network: drop this socket now rather than wait for a timeout.
            futures_util::future::Either::Right(_) => return None,
        };
        match msg {
            Ok(Message::Text(text)) => match serde_json::from_str::<ServerFrame>(&text) {
                Ok(frame) => {
                    if first {
                        first = false;
                        // Only a connection that works starts the backoff over (a refusal does
                        // not, or a refused token would be tried again at once, for ever).
                        if !matches!(frame, ServerFrame::Error(_)) {
                            *attempt = 0;
                        }
                        if matches!(
                            frame,
                            ServerFrame::Resumed { .. }
                                | ServerFrame::Event(_)
                                | ServerFrame::UnreadUpdated(_)
                        ) {
                            dispatch.emit(Action::Connection(ConnectionState::Connected));
                        }
                        // Sends that were waiting go out again; their client ids make that safe.
                        dispatch.emit(Action::Reconnected);
                    }
                    inbox.push(frame);
                }
                Err(e) => gloo::console::warn!(format!("tally: unreadable frame: {e}")),
            },
            Ok(Message::Bytes(_)) => {}
            Err(WebSocketError::ConnectionClose(ev)) => return Some(ev.code),
            Err(_) => return None,
        }
    }
}

/// Reloads the page once it is hidden (nobody is looking) and `can_reload` says so (the outbox
/// is empty), checking every few seconds.
async fn reload_when_idle(can_reload: &Rc<dyn Fn() -> bool>) {
    loop {
        gloo::timers::future::TimeoutFuture::new(5_000).await;
        let hidden = gloo::utils::document().visibility_state() != web_sys::VisibilityState::Visible;
        if hidden && can_reload() {
            let _ = gloo::utils::window().location().reload();
            return;
        }
    }
}

/// Whether `s` has a token's shape (a JWT: three base64url parts), before it is sent anywhere.
pub fn looks_like_token(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    s.len() <= 8 * 1024
        && parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_online() -> bool {
    gloo::utils::window().navigator().on_line()
}

/// Resolves the next time the window fires `name`.
async fn window_event(name: &'static str) {
    let (tx, rx) = futures_channel::oneshot::channel::<()>();
    let mut tx = Some(tx);
    let _listener = gloo::events::EventListener::once(&gloo::utils::window(), name, move |_| {
        if let Some(tx) = tx.take() {
            let _ = tx.send(());
        }
    });
    let _ = rx.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tokens_shape_passes_for_a_token() {
        assert!(looks_like_token("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2ln"));
        assert!(!looks_like_token("<!doctype html><title>Sign in</title>"));
        assert!(!looks_like_token(""));
        assert!(!looks_like_token("a.b"));
        assert!(!looks_like_token("a.b.c d"));
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        assert_eq!(backoff_ms(1, 1.0), 1000);
        assert_eq!(backoff_ms(1, 0.0), 500);
        assert_eq!(backoff_ms(20, 1.0), 30_000);
        assert!(backoff_ms(3, 0.5) < backoff_ms(4, 0.5));
    }
}
