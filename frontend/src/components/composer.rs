//! The composer: multi-line, Enter to send, Shift+Enter for a new line, attachments by picker
//! or drag-and-drop with upload progress, reply and edit modes, and a draft per conversation
//! that survives switching conversations and reloads.

use tally_shared::store::PendingSend;
use tally_shared::{Attachment, ConversationId, Message, Request, limits};
use web_sys::{HtmlInputElement, HtmlTextAreaElement};
use yew::prelude::*;

use super::{icons, use_chat_for};
use crate::i18n::{t, ta};
use crate::state::{Action, Interest};
use crate::{api, picker, util};

/// Properties.
#[derive(Properties, PartialEq)]
pub struct ComposerProps {
    /// Where to send.
    pub conversation: ConversationId,
    /// The message being replied to.
    pub reply_to: Option<Message>,
    /// The message being edited.
    pub editing: Option<Message>,
    /// Called after a send or edit (to clear reply and edit modes).
    pub on_done: Callback<()>,
    /// Called after a new message is sent (the view goes to the newest, where it shows).
    #[prop_or_default]
    pub on_sent: Callback<()>,
    /// The thread (its root's seq) a new message replies in, in the thread pane.
    #[prop_or_default]
    pub thread: Option<tally_shared::Seq>,
}

/// The saved draft of a conversation's composer (a thread pane's composer keeps none).
fn draft(
    chat: &crate::chat::Chat,
    conversation: ConversationId,
    thread: Option<tally_shared::Seq>,
) -> String {
    if thread.is_some() {
        String::new()
    } else {
        chat.draft(conversation)
    }
}

#[derive(Clone, PartialEq)]
struct Upload {
    name: String,
    progress: f64,
    done: Option<Result<Attachment, String>>,
}

/// The composer.
#[function_component(Composer)]
pub fn composer(props: &ComposerProps) -> Html {
    let chat = use_chat_for(Interest::Conversation(props.conversation));
    let text = {
        let (chat, conversation, thread) = (chat.clone(), props.conversation, props.thread);
        use_state(move || draft(&chat, conversation, thread))
    };
    let uploads = use_state(Vec::<Upload>::new);
    // The mentions chosen in the picker, and the picker when open: where its `@` is, what
    // follows it, and which choice is highlighted.
    let chosen = use_mut_ref(Vec::<picker::Choice>::new);
    let mention = use_state(|| None::<(usize, String, usize)>);
    let dragging = use_state(|| false);
    let input = use_node_ref();
    let file_input = use_node_ref();

    // Entering edit mode (or replying) focuses the box; editing puts the message's text in it.
    {
        let (text, input, editing) = (text.clone(), input.clone(), props.editing.clone());
        let replying = props.reply_to.as_ref().map(|m| m.id);
        use_effect_with((editing.as_ref().map(|m| m.id), replying), move |_| {
            if let Some(area) = input.cast::<HtmlTextAreaElement>() {
                let _ = area.focus();
            }
            if let Some(m) = editing {
                text.set(m.body);
            }
        });
    }

    let start_uploads = {
        let (uploads, options) = (uploads.clone(), chat.options.clone());
        Callback::from(move |files: Vec<web_sys::File>| {
            let base = (*uploads).clone();
            let start = base.len();
            let mut all = base;
            for f in &files {
                all.push(Upload {
                    name: f.name(),
                    progress: 0.0,
                    done: None,
                });
            }
            uploads.set(all.clone());
            // Progress and results land in a shared list; each update re-renders.
            let shared = std::rc::Rc::new(std::cell::RefCell::new(all));
            for (i, file) in files.into_iter().enumerate() {
                let (uploads, options, shared) = (uploads.clone(), options.clone(), shared.clone());
                let idx = start + i;
                wasm_bindgen_futures::spawn_local(async move {
                    if file.size() > limits::ATTACHMENT_MAX_BYTES as f64 {
                        shared.borrow_mut()[idx].done = Some(Err(t("error.too_large")));
                        uploads.set(shared.borrow().clone());
                        return;
                    }
                    let (u2, s2) = (uploads.clone(), shared.clone());
                    let result = api::upload(&options, file, move |p| {
                        s2.borrow_mut()[idx].progress = p;
                        u2.set(s2.borrow().clone());
                    })
                    .await;
                    shared.borrow_mut()[idx].done = Some(result);
                    uploads.set(shared.borrow().clone());
                });
            }
        })
    };

    let busy = uploads.iter().any(|u| u.done.is_none());
    let ready: Vec<Attachment> = uploads
        .iter()
        .filter_map(|u| u.done.clone().and_then(Result::ok))
        .collect();
    // While someone types a new message, say so at most every TYPING_EVERY_MS (and at once
    // for the next message: sending one ends what the others saw).
    let said_typing = use_mut_ref(|| 0.0f64);
    let submit = {
        let (chat, text, uploads) = (chat.clone(), text.clone(), uploads.clone());
        let said_typing = said_typing.clone();
        let (conversation, reply_to, editing, on_done, on_sent) = (
            props.conversation,
            props.reply_to.clone(),
            props.editing.clone(),
            props.on_done.clone(),
            props.on_sent.clone(),
        );
        let thread = props.thread;
        let ready = ready.clone();
        let (chosen, mention) = (chosen.clone(), mention.clone());
        Callback::from(move |_: ()| {
            let body = text.trim().to_string();
            if busy || (body.is_empty() && ready.is_empty()) || body.len() > limits::BODY_MAX_BYTES {
                return;
            }
            let mention_ranges = {
                let state = chat.state();
                let (view, me) = (state.store.conversation(conversation), state.store.me());
                match (view, me) {
                    (Some(v), Some(me)) => picker::ranges(&body, &chosen.borrow(), &v.conversation, me),
                    _ => Vec::new(),
                }
            };
            chosen.borrow_mut().clear();
            mention.set(None);
            if let Some(m) = &editing {
                chat.dispatch(Action::Request(Request::EditMessage {
                    message: m.id,
                    body,
                    mention_ranges,
                }));
                // Back to what was being written before the edit.
                text.set(draft(&chat, conversation, thread));
            } else {
                chat.dispatch(Action::Send(PendingSend {
                    mention_ranges,
                    client_id: util::client_id(),
                    conversation,
                    body,
                    attachments: ready.clone(),
                    reply_to: reply_to.as_ref().map(|m| m.id),
                    thread,
                    failed: None,
                    queued_at: Some(tally_shared::Millis(js_sys::Date::now() as u64)),
                }));
                on_sent.emit(());
                if thread.is_none() {
                    chat.set_draft(conversation, "");
                }
                text.set(String::new());
            }
            uploads.set(Vec::new());
            *said_typing.borrow_mut() = 0.0;
            on_done.emit(());
        })
    };
    let choices: Vec<picker::Choice> = match &*mention {
        Some((_, query, _)) => {
            let state = chat.state();
            let store = &state.store;
            store
                .conversation(props.conversation)
                .map(|v| {
                    picker::candidates(
                        &v.conversation,
                        store.me(),
                        |s| store.name_of(s).to_string(),
                        query,
                    )
                })
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    let choose = {
        let (text, mention, chosen, input) = (text.clone(), mention.clone(), chosen.clone(), input.clone());
        let (chat, conversation, thread, editing) = (
            chat.clone(),
            props.conversation,
            props.thread,
            props.editing.is_some(),
        );
        Callback::from(move |choice: picker::Choice| {
            let Some((at, query, _)) = (*mention).clone() else {
                return;
            };
            let caret = at + 1 + query.chars().count();
            let (new, caret) = picker::insert(&text, at, caret, &choice);
            chosen.borrow_mut().push(choice);
            if !editing && thread.is_none() {
                chat.set_draft(conversation, &new);
            }
            if let Some(area) = input.cast::<HtmlTextAreaElement>() {
                area.set_value(&new);
                let at = picker::utf16_from_chars(&new, caret);
                let _ = area.set_selection_range(at, at);
                let _ = area.focus();
            }
            text.set(new);
            mention.set(None);
        })
    };
    let onkeydown = {
        let submit = submit.clone();
        let on_done = props.on_done.clone();
        let (replying, editing) = (props.reply_to.is_some(), props.editing.is_some());
        let (mention, choose, choices) = (mention.clone(), choose.clone(), choices.clone());
        Callback::from(move |e: KeyboardEvent| {
            if let Some((at, query, selected)) = (*mention).clone()
                && !choices.is_empty()
            {
                let n = choices.len();
                match e.key().as_str() {
                    "ArrowDown" | "ArrowUp" => {
                        e.prevent_default();
                        let next = if e.key() == "ArrowDown" {
                            (selected + 1) % n
                        } else {
                            (selected + n - 1) % n
                        };
                        mention.set(Some((at, query, next)));
                        return;
                    }
                    "Enter" | "Tab" if !e.is_composing() => {
                        e.prevent_default();
                        choose.emit(choices[selected.min(n - 1)].clone());
                        return;
                    }
                    "Escape" => {
                        e.prevent_default();
                        e.stop_propagation();
                        mention.set(None);
                        return;
                    }
                    _ => {}
                }
            }
            if e.key() == "Enter" && !e.shift_key() && !e.is_composing() {
                e.prevent_default();
                submit.emit(());
            } else if e.key() == "Escape" && (replying || editing) {
                // Leaving reply or edit mode is all this Escape does.
                e.prevent_default();
                on_done.emit(());
            }
        })
    };
    let oninput = {
        let (text, chat, conversation) = (text.clone(), chat.clone(), props.conversation);
        let editing = props.editing.is_some();
        let thread = props.thread;
        let mention = mention.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(t) = e.target_dyn_into::<HtmlTextAreaElement>() {
                let value = t.value();
                let caret = t.selection_start().ok().flatten().unwrap_or(0);
                let caret = picker::chars_from_utf16(&value, caret);
                mention.set(picker::query_at(&value, caret).map(|(at, q)| (at, q, 0)));
                let now = js_sys::Date::now();
                let due = now - *said_typing.borrow() >= tally_shared::protocol::TYPING_EVERY_MS as f64;
                if !editing && due && !value.trim().is_empty() {
                    *said_typing.borrow_mut() = now;
                    chat.dispatch(Action::Request(Request::Typing { conversation }));
                }
                if !editing && thread.is_none() {
                    chat.set_draft(conversation, &value);
                }
                text.set(value);
            }
        })
    };
    let pick = {
        let file_input = file_input.clone();
        Callback::from(move |_| {
            if let Some(i) = file_input.cast::<HtmlInputElement>() {
                i.click();
            }
        })
    };
    let on_files = {
        let start_uploads = start_uploads.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            if let Some(list) = input.files() {
                start_uploads.emit((0..list.length()).filter_map(|i| list.get(i)).collect());
            }
            input.set_value("");
        })
    };
    let ondragover = {
        let dragging = dragging.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            dragging.set(true);
        })
    };
    let ondragleave = {
        let dragging = dragging.clone();
        Callback::from(move |_: DragEvent| dragging.set(false))
    };
    let ondrop = {
        let (dragging, start_uploads) = (dragging.clone(), start_uploads.clone());
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            dragging.set(false);
            if let Some(list) = e.data_transfer().and_then(|d| d.files()) {
                start_uploads.emit((0..list.length()).filter_map(|i| list.get(i)).collect());
            }
        })
    };
    let too_long = text.len() > limits::BODY_MAX_BYTES;
    let send_click = {
        let submit = submit.clone();
        Callback::from(move |_| submit.emit(()))
    };
    let cancel = {
        let (on_done, text, editing) = (props.on_done.clone(), text.clone(), props.editing.is_some());
        let (chat, conversation, thread) = (chat.clone(), props.conversation, props.thread);
        Callback::from(move |_| {
            if editing {
                text.set(draft(&chat, conversation, thread));
            }
            on_done.emit(())
        })
    };
    let listbox_id = format!(
        "tally-mentions-{}-{}",
        props.conversation,
        props.thread.map_or(0, |t| t.0)
    );
    let state = chat.state();
    let store = &state.store;
    html! {
        <div class={classes!("tally-composer", dragging.then_some("tally-dragging"))} {ondragover} {ondragleave} {ondrop}>
            if let Some(m) = &props.reply_to {
                <div class="tally-composer-mode">
                    <span class="tally-composer-what">
                        <strong>{ ta("composer.replying_to", &[("name", store.name_of(&m.sender))]) }</strong>{" "}
                        <span dir="auto">{ m.body.chars().take(60).collect::<String>() }</span>
                    </span>
                    <button class="tally-icon-button" onclick={cancel.clone()} aria-label={t("composer.cancel_reply")}>{ icons::close() }</button>
                </div>
            }
            if props.editing.is_some() {
                <div class="tally-composer-mode"><span class="tally-composer-what">{ t("composer.editing") }</span>
                    <button class="tally-icon-button" onclick={cancel} aria-label={t("composer.cancel_edit")}>{ icons::close() }</button>
                </div>
            }
            if !uploads.is_empty() {
                <ul class="tally-uploads">
                    { for uploads.iter().map(|u| html! {
                        <li>
                            { icons::paperclip() }{" "}{ u.name.clone() }
                            { match &u.done {
                                None => html! { <progress max="100" value={((u.progress * 100.0) as u32).to_string()} aria-label={ta("composer.uploading", &[("name", &u.name)])} /> },
                                Some(Ok(_)) => html! { <span class="tally-ok">{" ✓"}</span> },
                                Some(Err(e)) => html! { <span class="tally-failed">{" "}{ e.clone() }</span> },
                            } }
                        </li>
                    }) }
                </ul>
            }
            if !choices.is_empty() {
                <ul class="tally-mention-list" role="listbox" id={listbox_id.clone()} aria-label={t("mention.list")} data-testid="mention-list">
                    { for choices.iter().enumerate().map(|(i, c)| {
                        let selected = mention.as_ref().is_some_and(|m| m.2 == i);
                        let pick = { let (choose, c) = (choose.clone(), c.clone()); Callback::from(move |e: MouseEvent| { e.prevent_default(); choose.emit(c.clone()); }) };
                        let who = match &c.staff {
                            Some(s) => html! { <><span class="tally-avatar tally-avatar-small" aria-hidden="true">{ util::initials(&c.name) }</span><span dir="auto">{ c.name.clone() }</span><span class="tally-mention-id">{ format!(" @{s}") }</span></> },
                            None => html! { <><span dir="auto">{ "@here" }</span><span class="tally-mention-id">{ format!(" {}", t("mention.everyone")) }</span></> },
                        };
                        html! {
                            <li role="option" id={format!("{listbox_id}-{i}")} aria-selected={selected.to_string()}
                                class={classes!("tally-mention-choice", selected.then_some("tally-selected"))} onmousedown={pick}>{ who }</li>
                        }
                    }) }
                </ul>
            }
            <div class="tally-composer-row">
                <button class="tally-icon-button" aria-label={t("composer.attach")} title={t("composer.attach")} onclick={pick}>{ icons::paperclip() }</button>
                <input type="file" multiple=true hidden=true ref={file_input} onchange={on_files} data-testid="file-input" />
                <textarea ref={input} rows="1" placeholder={t("composer.placeholder")} aria-label={t("composer.label")} dir="auto"
                    aria-autocomplete="list" aria-controls={(!choices.is_empty()).then(|| listbox_id.clone())}
                    aria-activedescendant={mention.as_ref().filter(|_| !choices.is_empty()).map(|m| format!("{listbox_id}-{}", m.2))}
                    value={(*text).clone()} {oninput} {onkeydown} data-testid="composer" />
                <button class="tally-send" aria-label={if props.editing.is_some() { t("composer.save") } else { t("composer.send") }}
                    data-testid="send"
                    disabled={busy || too_long || (text.trim().is_empty() && ready.is_empty())} onclick={send_click}>{ icons::send() }</button>
            </div>
            if too_long {
                <div class="tally-failed" role="alert">
                    { ta("composer.too_long", &[("size", &crate::i18n::Locale::current().bytes(limits::BODY_MAX_BYTES as u64))]) }
                </div>
            }
        </div>
    }
}
