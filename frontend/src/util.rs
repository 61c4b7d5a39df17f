//! Small helpers: ids, times, storage, the text of notices.

use tally_shared::model::Notice;
use tally_shared::store::{ChatStore, PendingSend};
use tally_shared::{ClientMsgId, Message, Millis};

/// The text of a system notice (or a message's body), as the viewer reads it.
pub fn notice_text(store: &ChatStore, m: &Message) -> String {
    use crate::i18n::{t, ta};
    let who = |s| {
        if Some(s) == store.me() {
            t("list.you")
        } else {
            store.name_of(s).to_string()
        }
    };
    let sender = who(&m.sender);
    match m.notice.as_deref() {
        Some(Notice::Created { title }) => ta("notice.created", &[("who", &sender), ("title", title)]),
        Some(Notice::Renamed { title }) => ta("notice.renamed", &[("who", &sender), ("title", title)]),
        Some(Notice::ParticipantAdded { staff }) => {
            ta("notice.added", &[("who", &sender), ("whom", &who(staff))])
        }
        Some(Notice::ParticipantRemoved { staff }) if *staff == m.sender => {
            ta("notice.left", &[("who", &sender)])
        }
        Some(Notice::ParticipantRemoved { staff }) => {
            ta("notice.removed", &[("who", &sender), ("whom", &who(staff))])
        }
        Some(Notice::System { title }) if m.body.is_empty() => title.clone(),
        Some(Notice::System { title }) => ta("notice.system", &[("title", title), ("text", &m.body)]),
        None => m.body.clone(),
    }
}

/// A conversation's title as shown: the store's, or, for a conversation with nobody else in
/// it and no title, "Just you" in the widget's language.
pub fn shown_title(title: &str) -> String {
    if title.is_empty() {
        crate::i18n::t("list.just_you")
    } else {
        title.to_string()
    }
}

/// A fresh client-made message id.
pub fn client_id() -> ClientMsgId {
    let part = || (js_sys::Math::random() * 4_294_967_296.0) as u32;
    ClientMsgId::new(format!(
        "{:08x}{:08x}{:08x}{:08x}",
        part(),
        part(),
        part(),
        part()
    ))
    .expect("hex is a valid id")
}

/// The saved outbox, if any.
pub fn load_outbox(key: &str) -> Vec<PendingSend> {
    <gloo::storage::LocalStorage as gloo::storage::Storage>::get::<Vec<PendingSend>>(key).unwrap_or_default()
}

/// Saves the outbox (or clears it when empty).
pub fn save_outbox(key: &str, outbox: &[PendingSend]) {
    use gloo::storage::{LocalStorage, Storage};
    if outbox.is_empty() {
        LocalStorage::delete(key);
    } else {
        let _ = LocalStorage::set(key, outbox);
    }
}

fn date_of(at: Millis) -> js_sys::Date {
    js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at.0 as f64))
}

/// The time of day, as the widget's language writes it (`14:05`, `2:05 PM`): under every
/// message, whatever its age (its day is in the heading above it).
pub fn time_of_day(at: Millis) -> String {
    crate::i18n::Locale::current().date(&date_of(at), &[("hour", "numeric"), ("minute", "2-digit")])
}

/// For the conversation list: the time for today, the weekday and time this week, else the
/// date (with the year when it is another year's), in the widget's language.
pub fn short_time(at: Millis) -> String {
    let locale = crate::i18n::Locale::current();
    let d = date_of(at);
    let now = js_sys::Date::new_0();
    if d.to_date_string() == now.to_date_string() {
        return time_of_day(at);
    }
    let days = (now.get_time() - d.get_time()) / 86_400_000.0;
    if days < 6.0 {
        locale.date(
            &d,
            &[("weekday", "short"), ("hour", "numeric"), ("minute", "2-digit")],
        )
    } else if d.get_full_year() == now.get_full_year() {
        locale.date(&d, &[("day", "numeric"), ("month", "short")])
    } else {
        locale.date(&d, &[("day", "numeric"), ("month", "short"), ("year", "numeric")])
    }
}

/// A day heading: `Today`, `Yesterday`, or the full date, in the widget's language.
pub fn day_label(at: Millis) -> String {
    let d = date_of(at);
    let now = js_sys::Date::new_0();
    let yesterday = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(now.get_time() - 86_400_000.0));
    if d.to_date_string() == now.to_date_string() {
        crate::i18n::t("day.today")
    } else if d.to_date_string() == yesterday.to_date_string() {
        crate::i18n::t("day.yesterday")
    } else {
        crate::i18n::Locale::current().date(
            &d,
            &[
                ("weekday", "long"),
                ("day", "numeric"),
                ("month", "long"),
                ("year", "numeric"),
            ],
        )
    }
}

/// The element that has the focus, looking into shadow roots (the widget lives in one, where
/// `document.activeElement` is only its host).
pub fn active_element() -> Option<web_sys::Element> {
    let mut active = gloo::utils::document().active_element()?;
    while let Some(inner) = active.shadow_root().and_then(|s| s.active_element()) {
        active = inner;
    }
    Some(active)
}

/// The calendar days of times, for grouping rows by day. Asking the browser (a `Date` and its
/// string) for every row cost three calls a row, 720 each time a window of 240 rows was
/// built: this keeps the last day's local start and end and asks again only outside them.
#[derive(Default)]
pub struct Days {
    /// The last day asked for: from its local midnight to the next one (a day of 23 or 25
    /// hours when the clocks change), and its key.
    last: Option<(f64, f64, String)>,
}

impl Days {
    /// The local calendar day of `at`, as a key (equal for times on the same day).
    pub fn key(&mut self, at: Millis) -> &str {
        let t = at.0 as f64;
        let known = self
            .last
            .as_ref()
            .is_some_and(|(from, to, _)| *from <= t && t < *to);
        if !known {
            let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(t));
            let key: String = date.to_date_string().into();
            date.set_hours(0);
            date.set_minutes(0);
            date.set_seconds(0);
            let from = date.set_milliseconds(0);
            date.set_date(date.get_date() + 1);
            self.last = Some((from, date.get_time(), key));
        }
        self.last.as_ref().map_or("", |(_, _, key)| key.as_str())
    }
}

/// Initials for an avatar.
pub fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .collect::<String>()
        .to_uppercase()
}

/// The words of a search query, as the relay splits them (letters and digits), lowercased.
pub fn search_words(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A search result's text: an excerpt from a little before the first match, with each word
/// that begins with one of `words` marked.
pub fn highlighted(text: &str, words: &[String]) -> yew::Html {
    use yew::html;
    // Byte ranges of the words that match, in order.
    let mut marks: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                let word = text[s..i].to_lowercase();
                if words.iter().any(|w| word.starts_with(w.as_str())) {
                    marks.push((s, i));
                }
                start = None;
            }
            _ => {}
        }
    }
    let boundary = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let from = marks.first().map_or(0, |m| boundary(m.0.saturating_sub(60)));
    let to = boundary((from + 240).min(text.len()));
    let mut parts: Vec<yew::Html> = Vec::new();
    if from > 0 {
        parts.push(html! { "…" });
    }
    let mut at = from;
    for (s, e) in marks.into_iter().filter(|(s, e)| *s >= from && *e <= to) {
        parts.push(html! { { text[at..s].to_string() } });
        parts.push(html! { <mark>{ text[s..e].to_string() }</mark> });
        at = e;
    }
    parts.push(html! { { text[at..to].to_string() } });
    if to < text.len() {
        parts.push(html! { "…" });
    }
    html! { <>{ for parts }</> }
}

/// The element an event happened on, and its closest ancestor matching `selector` (Yew
/// delegates events, so `current_target` is the widget's root, not the element handling it).
pub fn event_within(e: &web_sys::Event, selector: &str) -> Option<web_sys::Element> {
    use wasm_bindgen::JsCast;
    e.target()?
        .dyn_into::<web_sys::Element>()
        .ok()?
        .closest(selector)
        .ok()
        .flatten()
}

/// Moves focus `step` places among the elements matching `selector` inside the closest
/// `scope` around where `e` happened (wrapping around), from the one that has it.
pub fn move_focus(e: &web_sys::KeyboardEvent, scope: &str, selector: &str, step: i32) {
    use wasm_bindgen::JsCast;
    let Some(within) = event_within(e, scope) else {
        return;
    };
    let Ok(nodes) = within.query_selector_all(selector) else {
        return;
    };
    let items: Vec<web_sys::HtmlElement> = (0..nodes.length())
        .filter_map(|i| nodes.item(i)?.dyn_into().ok())
        .collect();
    if items.is_empty() {
        return;
    }
    let active = active_element();
    let at = items.iter().position(|i| {
        active
            .as_ref()
            .is_some_and(|a| a == i.as_ref() as &web_sys::Element)
    });
    let n = items.len() as i32;
    let next = match at {
        Some(at) => (at as i32 + step).rem_euclid(n),
        None if step > 0 => 0,
        None => n - 1,
    };
    let _ = items[next as usize].focus();
}

/// A keydown handler that calls `then` on Escape and keeps the key from the panel (which
/// closes on Escape): a dialog or the search box closes alone.
pub fn on_escape(then: yew::Callback<()>) -> yew::Callback<web_sys::KeyboardEvent> {
    yew::Callback::from(move |e: web_sys::KeyboardEvent| {
        if e.key() == "Escape" {
            e.stop_propagation();
            then.emit(());
        }
    })
}
