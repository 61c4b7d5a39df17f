//! Desktop notifications: a message that is news for me (`ChatStore::news`) arriving while no
//! tab of mine is visible shows one, through the Notification API, with an optional short
//! sound. Permission is asked for only from the bell's checkbox (a user gesture). Clicking a
//! notification focuses the tab and opens the conversation. When the message is read anywhere
//! (another tab, another device, "read everything", a mute), the tab that showed its
//! notification closes it.
//!
//! One notification per message however many tabs are open: the tabs of a person talk over a
//! `BroadcastChannel` (each says, every two seconds and whenever it changes, whether it is
//! visible). A tab notifies only while it is hidden, no tab it heard from in the last five
//! seconds is visible, and its own id is the smallest of the tabs it heard from: one leader,
//! re-elected by itself when a tab goes. The notification's tag is the message's id, so the
//! system would fold a duplicate into one anyway.

use std::cell::RefCell;
use std::rc::Rc;

use gloo::storage::{LocalStorage, Storage};
use serde::{Deserialize, Serialize};
use tally_shared::{ConversationId, Message};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{BroadcastChannel, Notification, NotificationOptions, NotificationPermission};

/// What the person chose (kept in `localStorage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Show desktop notifications.
    pub enabled: bool,
    /// Play a short sound with each.
    pub sound: bool,
    /// Notify mentions in muted conversations too.
    pub mentions_when_muted: bool,
}

const SETTINGS_KEY: &str = "tally.notifications";
/// How often a tab says it is there.
const HEARTBEAT_MS: u32 = 2_000;
/// How long a tab is counted after it last said so.
const ALIVE_MS: f64 = 5_000.0;

impl Settings {
    /// The saved settings.
    pub fn load() -> Settings {
        LocalStorage::get(SETTINGS_KEY).unwrap_or_default()
    }

    /// Saves them.
    pub fn save(&self) {
        let _ = LocalStorage::set(SETTINGS_KEY, self);
    }
}

/// Whether the browser lets this page notify.
pub fn permitted() -> bool {
    Notification::permission() == NotificationPermission::Granted
}

/// Asks for permission (call from a click); whether it was granted.
pub async fn ask() -> bool {
    let Ok(promise) = Notification::request_permission() else {
        return false;
    };
    let answer = wasm_bindgen_futures::JsFuture::from(promise).await;
    answer.ok().and_then(|v| v.as_string()).as_deref() == Some("granted")
}

#[derive(Serialize, Deserialize)]
struct Heartbeat {
    tab: f64,
    visible: bool,
}

/// The channel's message handler, kept alive as long as the notifier.
type OnMessage = Closure<dyn FnMut(web_sys::MessageEvent)>;

/// One tab's side of the coordination.
pub struct Notifier {
    tab: f64,
    /// Other tabs: id, visible, when last heard (ms).
    peers: Rc<RefCell<Vec<(f64, bool, f64)>>>,
    channel: RefCell<Option<(String, BroadcastChannel)>>,
    _beat: RefCell<Option<gloo::timers::callback::Interval>>,
    _listener: RefCell<Option<OnMessage>>,
    /// The notifications this tab shows, by the message they announce, until it is read.
    shown: RefCell<Vec<(Shown, Notification)>>,
}

/// What a notification announced: a message, where it counts, and whether it mentions me.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    /// Its conversation.
    pub conversation: ConversationId,
    /// Its seq.
    pub seq: tally_shared::Seq,
    /// For a reply: its thread's root.
    pub thread: Option<tally_shared::Seq>,
    /// Whether it mentions me (such a notification may stand in a muted conversation).
    pub mentions_me: bool,
}

fn hidden() -> bool {
    gloo::utils::document().hidden()
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            tab: js_sys::Math::random(),
            peers: Rc::default(),
            channel: RefCell::new(None),
            _beat: RefCell::new(None),
            _listener: RefCell::new(None),
            shown: RefCell::new(Vec::new()),
        }
    }
}

impl Notifier {
    /// Joins `me`'s channel (once per person: a widget signed in as someone else starts over).
    fn join(&self, me: &str) {
        let name = format!("tally.notify.{me}");
        if self.channel.borrow().as_ref().is_some_and(|(n, _)| *n == name) {
            return;
        }
        let Ok(channel) = BroadcastChannel::new(&name) else {
            return;
        };
        let peers = self.peers.clone();
        let tab = self.tab;
        let listener = OnMessage::new(move |e: web_sys::MessageEvent| {
            let Some(text) = e.data().as_string() else { return };
            let Ok(beat) = serde_json::from_str::<Heartbeat>(&text) else {
                return;
            };
            if beat.tab == tab {
                return;
            }
            let now = js_sys::Date::now();
            let mut peers = peers.borrow_mut();
            peers.retain(|(id, ..)| *id != beat.tab);
            peers.push((beat.tab, beat.visible, now));
        });
        channel.set_onmessage(Some(listener.as_ref().unchecked_ref()));
        let beat = {
            let channel = channel.clone();
            move || {
                let beat = Heartbeat {
                    tab,
                    visible: !hidden(),
                };
                if let Ok(text) = serde_json::to_string(&beat) {
                    let _ = channel.post_message(&text.into());
                }
            }
        };
        beat();
        let on_visibility = beat.clone();
        gloo::events::EventListener::new(&gloo::utils::document(), "visibilitychange", move |_| {
            on_visibility()
        })
        .forget();
        *self._beat.borrow_mut() = Some(gloo::timers::callback::Interval::new(HEARTBEAT_MS, beat));
        *self._listener.borrow_mut() = Some(listener);
        *self.channel.borrow_mut() = Some((name, channel));
    }

    /// Whether this tab is the one to notify now.
    fn leads(&self) -> bool {
        if !hidden() {
            return false;
        }
        let now = js_sys::Date::now();
        let peers = self.peers.borrow();
        let alive = peers.iter().filter(|(_, _, at)| now - at < ALIVE_MS);
        let mut smallest = self.tab;
        for (id, visible, _) in alive {
            if *visible {
                return false;
            }
            smallest = smallest.min(*id);
        }
        smallest == self.tab
    }

    /// Offers news (messages, and whether their conversation is muted) for notification;
    /// `title` names a conversation, `name` a person; `open` opens a conversation.
    pub fn offer(
        &self,
        me: &str,
        news: Vec<(Message, bool)>,
        title: impl Fn(ConversationId) -> String,
        name: impl Fn(&Message) -> String,
        open: impl Fn(ConversationId) + Clone + 'static,
    ) {
        let settings = Settings::load();
        if news.is_empty() || !settings.enabled || !permitted() {
            return;
        }
        self.join(me);
        if !self.leads() {
            return;
        }
        let mut shown = false;
        for (m, muted) in news.iter().rev().take(3) {
            if *muted && !settings.mentions_when_muted {
                continue;
            }
            let options = NotificationOptions::new();
            let body = if m.body.is_empty() && !m.attachments.is_empty() {
                crate::i18n::ta(
                    "notify.file",
                    &[("name", &name(m)), ("file", &m.attachments[0].name)],
                )
            } else {
                let text: String = tally_shared::markup::plain_text(&m.body)
                    .chars()
                    .take(140)
                    .collect();
                crate::i18n::ta("notify.text", &[("name", &name(m)), ("text", &text)])
            };
            options.set_lang(crate::i18n::Locale::current().tag());
            options.set_body(&body);
            options.set_tag(&format!("tally-{}", m.id));
            let Ok(n) = Notification::new_with_options(&title(m.conversation), &options) else {
                continue;
            };
            let (open, conversation, shown_n) = (open.clone(), m.conversation, n.clone());
            let onclick = Closure::<dyn FnMut()>::new(move || {
                let _ = gloo::utils::window().focus();
                open(conversation);
                shown_n.close();
            });
            n.set_onclick(Some(onclick.as_ref().unchecked_ref()));
            onclick.forget();
            let what = Shown {
                conversation: m.conversation,
                seq: m.seq,
                thread: m.thread,
                mentions_me: m.mentions.iter().any(|p| p.as_str() == me),
            };
            self.shown.borrow_mut().push((what, n));
            shown = true;
        }
        if shown && settings.sound {
            beep();
        }
    }
}

impl Notifier {
    /// Closes the notifications this tab shows for messages that are no longer news: read
    /// anywhere (another tab or device, "read everything"), or their conversation muted. The
    /// tab's title and badge change from the same store update.
    pub fn close_read(&self, still_news: impl Fn(&Shown) -> bool) {
        self.shown.borrow_mut().retain(|(what, n)| {
            let keep = still_news(what);
            if !keep {
                n.close();
            }
            keep
        });
    }

    /// How many notifications this tab shows.
    pub fn showing(&self) -> usize {
        self.shown.borrow().len()
    }
}

/// A short, quiet two-tone chime.
fn beep() {
    let Ok(ctx) = web_sys::AudioContext::new() else {
        return;
    };
    let (Ok(osc), Ok(gain)) = (ctx.create_oscillator(), ctx.create_gain()) else {
        return;
    };
    let t = ctx.current_time();
    osc.frequency().set_value_at_time(880.0, t).ok();
    osc.frequency().set_value_at_time(660.0, t + 0.09).ok();
    gain.gain().set_value_at_time(0.08, t).ok();
    gain.gain().linear_ramp_to_value_at_time(0.0, t + 0.2).ok();
    if osc.connect_with_audio_node(&gain).is_ok() && gain.connect_with_audio_node(&ctx.destination()).is_ok()
    {
        let _ = osc.start();
        let _ = osc.stop_with_when(t + 0.2);
    }
}
