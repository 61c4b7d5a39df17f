//! Search: a box over the panel's list; results from the relay (only my conversations'
//! messages, newest first), each opening its conversation at the message.

use gloo::timers::callback::Timeout;
use tally_shared::{Message, MessageId};
use yew::prelude::*;

use super::use_chat;
use crate::api::{self, SearchPage};
use crate::i18n::{t, ta};
use crate::state::Action;
use crate::util;

/// How long typing pauses before the widget searches.
const DEBOUNCE_MS: u32 = 250;

/// Properties.
#[derive(Properties, PartialEq)]
pub struct SearchProps {
    /// Leave search (Escape, the close button, or a result chosen).
    pub on_close: Callback<()>,
}

/// What the results area shows.
#[derive(Clone, PartialEq)]
enum Found {
    /// Nothing asked yet.
    Idle,
    /// Waiting for the relay.
    Searching,
    /// Results, and where the next page starts.
    Page(Vec<Message>, Option<MessageId>),
    /// The relay's refusal or what failed.
    Failed(String),
}

/// The search box and its results.
#[function_component(SearchView)]
pub fn search_view(props: &SearchProps) -> Html {
    let chat = use_chat();
    let query = use_state(String::new);
    let found = use_state(|| Found::Idle);
    let timer = use_mut_ref(|| None::<Timeout>);
    // Which query the shown results are for: an older answer arriving late is dropped.
    let asked = use_mut_ref(String::new);
    let input = use_node_ref();
    {
        let input = input.clone();
        use_effect_with((), move |_| {
            if let Some(i) = input.cast::<web_sys::HtmlElement>() {
                let _ = i.focus();
            }
        });
    }
    let run = {
        let (chat, found, asked) = (chat.clone(), found.clone(), asked.clone());
        move |q: String, before: Option<MessageId>, shown: Vec<Message>| {
            *asked.borrow_mut() = q.clone();
            if before.is_none() {
                found.set(Found::Searching);
            }
            let (chat, found, asked) = (chat.clone(), found.clone(), asked.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let answer = api::search(&chat.options, &q, before).await;
                if *asked.borrow() != q {
                    return;
                }
                found.set(match answer {
                    Ok(SearchPage { results, next_before }) => {
                        let mut all = shown;
                        all.extend(results);
                        Found::Page(all, next_before)
                    }
                    Err(why) => Found::Failed(why),
                });
            });
        }
    };
    let oninput = {
        let (query, found, timer, run) = (query.clone(), found.clone(), timer.clone(), run.clone());
        Callback::from(move |e: InputEvent| {
            let q = e.target_unchecked_into::<web_sys::HtmlInputElement>().value();
            query.set(q.clone());
            timer.borrow_mut().take();
            if q.trim().chars().count() < 2 {
                found.set(Found::Idle);
                return;
            }
            let run = run.clone();
            *timer.borrow_mut() = Some(Timeout::new(DEBOUNCE_MS, move || run(q, None, Vec::new())));
        })
    };
    // Escape leaves search, not the whole panel.
    let onkeydown = util::on_escape(props.on_close.clone());
    let state = chat.state();
    let store = &state.store;
    let results = match &*found {
        Found::Idle => html! {
            <p class="tally-empty" data-testid="search-hint">{ t("search.hint") }</p>
        },
        Found::Searching => html! { <p class="tally-empty" role="status">{ t("search.searching") }</p> },
        Found::Failed(why) => html! { <p class="tally-status-error" role="alert">{ why.clone() }</p> },
        Found::Page(messages, _) if messages.is_empty() => {
            html! { <p class="tally-empty" role="status">{ t("search.none") }</p> }
        }
        Found::Page(messages, next) => {
            let words = util::search_words(&query);
            let rows = messages.iter().map(|m| {
                let title = store
                    .conversation(m.conversation)
                    .map(|v| util::shown_title(&store.title_of(&v.conversation)))
                    .unwrap_or_else(|| t("search.somewhere"));
                let open = {
                    let (chat, on_close, c, seq) = (chat.clone(), props.on_close.clone(), m.conversation, m.seq);
                    let thread = m.thread;
                    Callback::from(move |_: MouseEvent| {
                        // A reply opens inside its thread; anything else at its place in the
                        // conversation.
                        chat.dispatch(match thread {
                            Some(root) => Action::OpenThread(Some((c, root))),
                            None => Action::Jump(c, seq),
                        });
                        on_close.emit(());
                    })
                };
                html! {
                    <li key={m.id.0.to_string()}>
                        <button class="tally-result" onclick={open} data-testid="search-result">
                            <span class="tally-result-where">
                                <strong dir="auto">{ title }</strong>
                                <span class="tally-result-time">{ util::day_label(m.created_at) }{" "}{ util::short_time(m.created_at) }</span>
                            </span>
                            <span class="tally-result-text" dir="auto">
                                <span class="tally-result-who">{ ta("message.from", &[("name", store.name_of(&m.sender))]) }{" "}</span>
                                { util::highlighted(&m.body, &words) }
                            </span>
                        </button>
                    </li>
                }
            });
            let more = next.map(|before| {
                let (run, q, shown) = (run.clone(), (*query).clone(), messages.clone());
                html! {
                    <li class="tally-history-more" key="more">
                        <button class="tally-link" onclick={move |_| run(q.clone(), Some(before), shown.clone())}>{ t("search.more") }</button>
                    </li>
                }
            });
            html! {
                <ul class="tally-results" aria-label={t("search.results")} data-testid="search-results">
                    { for rows }
                    { for more }
                </ul>
            }
        }
    };
    let close = {
        let on_close = props.on_close.clone();
        Callback::from(move |_: MouseEvent| on_close.emit(()))
    };
    html! {
        <div class="tally-search" {onkeydown}>
            <div class="tally-search-bar">
                <input ref={input} type="search" class="tally-search-input" placeholder={t("search.placeholder")} dir="auto"
                    aria-label={t("search.placeholder")} value={(*query).clone()} {oninput} data-testid="search-input" />
                <button class="tally-icon-button" aria-label={t("search.close")} title={t("search.close")} onclick={close}>{ super::icons::close() }</button>
            </div>
            { results }
        </div>
    }
}
