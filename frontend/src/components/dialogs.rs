//! Dialogs: start a conversation (direct or group), forward a message, group settings.

use tally_shared::{ConversationId, MessageId, Request, StaffId};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::use_chat;
use crate::i18n::{t, ta};
use crate::state::Action;
use crate::util;

/// Properties of a dialog that can be closed.
#[derive(Properties, PartialEq)]
pub struct DialogProps {
    /// Called to close it.
    pub on_close: Callback<()>,
}

/// Properties of [`Dialog`].
#[derive(Properties, PartialEq)]
pub struct FrameProps {
    /// Its accessible name (and heading).
    pub label: AttrValue,
    /// A stable id for its heading (the label is translated).
    pub id: AttrValue,
    /// Called to close it (Escape, too).
    pub on_close: Callback<()>,
    /// Its content.
    pub children: Html,
}

/// A dialog's frame: a modal `dialog` named by its heading; focus moves into it when it opens
/// and back to where it was when it closes; Escape closes it (and only it).
#[function_component(Dialog)]
pub fn dialog(props: &FrameProps) -> Html {
    let node = use_node_ref();
    super::use_focus_inside(node.clone(), &["input, button"]);
    let onkeydown = util::on_escape(props.on_close.clone());
    let heading = format!("tally-dialog-{}", props.id);
    html! {
        <div class="tally-dialog" role="dialog" aria-modal="true" aria-labelledby={heading.clone()} ref={node} {onkeydown}>
            <h3 id={heading} dir="auto">{ props.label.clone() }</h3>
            { props.children.clone() }
        </div>
    }
}

/// Pick staff: one makes a direct conversation, several (with a title) a group.
#[function_component(NewConversation)]
pub fn new_conversation(props: &DialogProps) -> Html {
    let chat = use_chat();
    let picked = use_state(Vec::<StaffId>::new);
    let title = use_state(String::new);
    let people: Vec<(StaffId, String)> = {
        let state = chat.state();
        let me = state.store.me();
        state
            .store
            .directory()
            .into_iter()
            .filter(|(id, _)| Some(id) != me)
            .collect()
    };
    let create = {
        let (chat, picked, title, on_close) = (
            chat.clone(),
            picked.clone(),
            title.clone(),
            props.on_close.clone(),
        );
        Callback::from(move |_| {
            let request = match picked.as_slice() {
                [] => return,
                [one] if title.trim().is_empty() => Request::CreateDirect { staff: one.clone() },
                many => Request::CreateGroup {
                    client_id: util::client_id(),
                    title: if title.trim().is_empty() {
                        t("dialog.new_group_default")
                    } else {
                        title.trim().to_string()
                    },
                    participants: many.to_vec(),
                },
            };
            chat.dispatch(Action::RequestAndOpen(request));
            on_close.emit(());
        })
    };
    let is_group = picked.len() > 1 || !title.trim().is_empty();
    html! {
        <Dialog label={t("dialog.new")} id="new" on_close={props.on_close.clone()}>
            <ul class="tally-pick">
                { for people.into_iter().map(|(id, name)| {
                    let checked = picked.contains(&id);
                    let picked = picked.clone();
                    let id2 = id.clone();
                    let onchange = Callback::from(move |_| {
                        let mut v = (*picked).clone();
                        if let Some(i) = v.iter().position(|p| *p == id2) { v.remove(i); } else { v.push(id2.clone()); }
                        picked.set(v);
                    });
                    html! { <li key={id.to_string()}><label><input type="checkbox" {checked} {onchange} /><span dir="auto">{ name }</span></label></li> }
                }) }
            </ul>
            <input class="tally-input" placeholder={if is_group { t("dialog.group_name") } else { t("dialog.group_name_hint") }}
                aria-label={t("dialog.group_name")} value={(*title).clone()} dir="auto"
                oninput={let t = title.clone(); Callback::from(move |e: InputEvent| t.set(e.target_unchecked_into::<HtmlInputElement>().value()))} />
            <div class="tally-dialog-actions">
                <button class="tally-link" onclick={let c = props.on_close.clone(); move |_| c.emit(())}>{ t("dialog.cancel") }</button>
                <button class="tally-primary" disabled={picked.is_empty()} onclick={create}>
                    { if is_group { t("dialog.create_group") } else { t("dialog.start") } }
                </button>
            </div>
        </Dialog>
    }
}

/// Properties.
#[derive(Properties, PartialEq)]
pub struct ForwardProps {
    /// The message to forward.
    pub message: MessageId,
    /// Called to close it.
    pub on_close: Callback<()>,
    /// Called with the title of where it went, once forwarded.
    pub on_forwarded: Callback<String>,
}

/// Pick the conversation to forward to.
#[function_component(ForwardDialog)]
pub fn forward_dialog(props: &ForwardProps) -> Html {
    let chat = use_chat();
    let items = chat.state().store.conversation_list();
    html! {
        <Dialog label={t("dialog.forward")} id="forward" on_close={props.on_close.clone()}>
            <ul class="tally-pick">
                { for items.into_iter().map(|item| {
                    let (chat, on_close, message, to) = (chat.clone(), props.on_close.clone(), props.message, item.id);
                    let title = util::shown_title(&item.title);
                    let on_forwarded = props.on_forwarded.clone();
                    let onclick = {
                        let title = title.clone();
                        Callback::from(move |_| {
                            chat.dispatch(Action::Request(Request::ForwardMessage { client_id: util::client_id(), message, to }));
                            on_close.emit(());
                            on_forwarded.emit(title.clone());
                        })
                    };
                    html! { <li key={item.id.0.to_string()}><button class="tally-link" dir="auto" {onclick}>{ title }</button></li> }
                }) }
            </ul>
            <div class="tally-dialog-actions">
                <button class="tally-link" onclick={let c = props.on_close.clone(); move |_| c.emit(())}>{ t("dialog.cancel") }</button>
            </div>
        </Dialog>
    }
}

/// Properties.
#[derive(Properties, PartialEq)]
pub struct GroupProps {
    /// The group.
    pub id: ConversationId,
    /// Called to close it.
    pub on_close: Callback<()>,
}

/// Rename, add people, remove people, leave.
#[function_component(GroupDialog)]
pub fn group_dialog(props: &GroupProps) -> Html {
    let chat = use_chat();
    let title = {
        let chat = chat.clone();
        let id = props.id;
        use_state(move || {
            let state = chat.state();
            let view = state.store.conversation(id);
            view.and_then(|v| v.conversation.title.clone())
                .unwrap_or_default()
        })
    };
    let state = chat.state();
    let store = &state.store;
    let Some(view) = store.conversation(props.id) else {
        return html! {};
    };
    let me = store.me().cloned();
    let id = props.id;
    let send = |r: Request| {
        let (chat, on_close) = (chat.clone(), props.on_close.clone());
        Callback::from(move |_| {
            chat.dispatch(Action::Request(r.clone()));
            on_close.emit(());
        })
    };
    let rename = {
        let (chat, title, on_close) = (chat.clone(), title.clone(), props.on_close.clone());
        Callback::from(move |_| {
            chat.dispatch(Action::Request(Request::RenameConversation {
                conversation: id,
                title: (*title).clone(),
            }));
            on_close.emit(());
        })
    };
    let others: Vec<(StaffId, String)> = store
        .directory()
        .into_iter()
        .filter(|(s, _)| !view.conversation.participants.contains(s))
        .collect();
    html! {
        <Dialog label={t("dialog.group_settings")} id="group" on_close={props.on_close.clone()}>
            <label class="tally-field">{ t("dialog.name") }
                <input class="tally-input" value={(*title).clone()} dir="auto"
                    oninput={let t = title.clone(); Callback::from(move |e: InputEvent| t.set(e.target_unchecked_into::<HtmlInputElement>().value()))} />
            </label>
            <button class="tally-primary" onclick={rename}>{ t("dialog.rename") }</button>
            <h4>{ t("dialog.people") }</h4>
            <ul class="tally-pick">
                { for view.conversation.participants.iter().map(|p| {
                    let name = store.name_of(p).to_string();
                    html! {
                        <li key={p.to_string()}><span dir="auto">{ name.clone() }</span>
                            if Some(p) != me.as_ref() {
                                {" "}<button class="tally-link" aria-label={ta("dialog.remove", &[("name", &name)])}
                                    onclick={send(Request::RemoveParticipant { conversation: id, staff: p.clone() })}>{ t("dialog.remove_short") }</button>
                            }
                        </li>
                    }
                }) }
            </ul>
            if me.as_ref() == Some(&view.conversation.created_by) {
                // The owner decides whether @here and @all mention everyone here.
                <label class="tally-pick-line"><input type="checkbox" checked={!view.conversation.everyone_off} data-testid="everyone-mentions"
                    onchange={let chat = chat.clone(); Callback::from(move |e: Event| {
                        let allowed = e.target_unchecked_into::<HtmlInputElement>().checked();
                        chat.dispatch(Action::Request(Request::SetEveryoneMentions { conversation: id, allowed }));
                    })} />
                    <span>{ t("dialog.everyone_mentions") }</span></label>
            }
            if !others.is_empty() {
                <h4>{ t("dialog.add") }</h4>
                <ul class="tally-pick">
                    { for others.into_iter().map(|(s, name)| html! {
                        <li key={s.to_string()}><button class="tally-link" dir="auto" onclick={send(Request::AddParticipants { conversation: id, staff: vec![s.clone()] })}>{"+ "}{ name }</button></li>
                    }) }
                </ul>
            }
            <div class="tally-dialog-actions">
                if let Some(me) = me {
                    <button class="tally-danger" onclick={send(Request::RemoveParticipant { conversation: id, staff: me })}>{ t("dialog.leave") }</button>
                }
                <button class="tally-link" onclick={let c = props.on_close.clone(); move |_| c.emit(())}>{ t("dialog.close") }</button>
            </div>
        </Dialog>
    }
}

/// The full reaction picker's emoji, by group: in the bundle, never fetched.
const EMOJI: [(&str, &str); 6] = [
    (
        "reactions.smileys",
        "😀 😃 😄 😁 😆 😅 😂 🤣 🙂 😉 😊 😇 🥰 😍 🤩 😘 😋 😜 🤔 🤨 😐 😑 😶 🙄 😏 😬 😌 😴 😷 🤒 🤯 🥳 😎 🤓 🧐 😕 😟 🙁 😮 😲 😳 🥺 😢 😭 😱 😤 😡 🤬",
    ),
    (
        "reactions.gestures",
        "👍 👎 👌 ✌️ 🤞 🤝 🙏 👏 🙌 👐 💪 👋 ✋ 🤙 👉 👈 👆 👇 ☝️ ✍️ 👀 🫡",
    ),
    (
        "reactions.hearts",
        "❤️ 🧡 💛 💚 💙 💜 🖤 🤍 💔 💕 💖 💯 ✨ 🔥 ⭐ 🌟",
    ),
    (
        "reactions.work",
        "✅ ☑️ ✔️ ❌ ❗ ❓ ⚠️ 🚧 🚀 🎯 📌 📎 📅 ⏰ ⏳ 📈 📉 💡 🛠️ 🐛 📝 📣 🔔 🔕",
    ),
    ("reactions.celebrate", "🎉 🎊 🎂 🎁 🏆 🥇 🍀 ☕ 🍕 🍰 🍻 🥂"),
    ("reactions.nature", "☀️ 🌧️ ⛄ 🌈 🌻 🌲 🐶 🐱 🦄 🐢"),
];

/// Properties of [`VersionsDialog`].
#[derive(Properties, PartialEq)]
pub struct VersionsProps {
    /// The edited message.
    pub message: MessageId,
    /// Called to close it.
    pub on_close: Callback<()>,
}

/// An edited message's earlier texts that I saw (the relay decides which), oldest first, then
/// the text it has now.
#[function_component(VersionsDialog)]
pub fn versions_dialog(props: &VersionsProps) -> Html {
    let chat = use_chat();
    let loaded = use_state(|| None::<Result<Vec<crate::api::Version>, String>>);
    {
        let (chat, loaded, message) = (chat.clone(), loaded.clone(), props.message);
        use_effect_with(message, move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                loaded.set(Some(crate::api::versions(&chat.options, message).await));
            });
        });
    }
    let now = chat.state().store.find_message(props.message).cloned();
    let locale = crate::i18n::Locale::current();
    let row = |body: &str, when: String| {
        html! {
            <li class="tally-version">
                <span class="tally-field">{ when }</span>
                <div class="tally-text" dir="auto">{ tally_shared::markup::plain_text(body) }</div>
            </li>
        }
    };
    let close = props.on_close.reform(|_: MouseEvent| ());
    html! {
        <Dialog label={t("message.versions")} id="versions" on_close={props.on_close.clone()}>
            <ol class="tally-versions" data-testid="versions">
                { match &*loaded {
                    // The roles go on what the item holds: an `<li>` with a role of its own is
                    // no list item, and a list may hold list items only (axe caught it while
                    // the versions were still loading).
                    None => html! { <li><span role="status">{ t("status.loading") }</span></li> },
                    Some(Err(e)) => html! { <li class="tally-failed"><span role="alert">{ e.clone() }</span></li> },
                    Some(Ok(v)) if v.is_empty() => html! { <li><span role="status">{ t("message.no_versions") }</span></li> },
                    Some(Ok(v)) => html! { { for v.iter().map(|x| row(&x.body, locale.date_time(x.at))) } },
                } }
                if let Some(m) = now.filter(|m| !m.deleted) {
                    { row(&m.body, ta("message.version_now", &[("time", &locale.date_time(m.edited_at.unwrap_or(m.created_at)))])) }
                }
            </ol>
            <div class="tally-dialog-actions">
                <button class="tally-primary" onclick={close}>{ t("dialog.close") }</button>
            </div>
        </Dialog>
    }
}

/// Properties.
#[derive(Properties, PartialEq)]
pub struct EmojiProps {
    /// The message to react to.
    pub message: MessageId,
    /// Called to close it.
    pub on_close: Callback<()>,
}

/// Every emoji the widget offers, by group, for a reaction: a press puts it on (or takes mine
/// off), and closes the picker.
#[function_component(EmojiPicker)]
pub fn emoji_picker(props: &EmojiProps) -> Html {
    let chat = use_chat();
    let state = chat.state();
    let me = state.store.me().cloned();
    let mine: Vec<String> = state
        .store
        .find_message(props.message)
        .map(|m| {
            m.reactions
                .iter()
                .filter(|r| me.as_ref().is_some_and(|me| r.staff.contains(me)))
                .map(|r| r.emoji.clone())
                .collect()
        })
        .unwrap_or_default();
    drop(state);
    html! {
        <Dialog label={t("reactions.picker")} id="emoji" on_close={props.on_close.clone()}>
            <div class="tally-emoji-picker" data-testid="emoji-picker">
                { for EMOJI.iter().map(|(group, list)| html! {
                    <section aria-label={t(group)}>
                        <h3 class="tally-emoji-group">{ t(group) }</h3>
                        <div class="tally-emoji-grid" role="group" aria-label={t(group)}>
                            { for list.split(' ').map(|e| {
                                let pressed = mine.iter().any(|m| m == e);
                                let (chat, on_close, message) = (chat.clone(), props.on_close.clone(), props.message);
                                let onclick = Callback::from(move |_: MouseEvent| {
                                    chat.dispatch(Action::react(message, e, !pressed));
                                    on_close.emit(());
                                });
                                html! { <button class="tally-emoji" aria-pressed={pressed.to_string()} {onclick}>{ e }</button> }
                            }) }
                        </div>
                    </section>
                }) }
            </div>
            <div class="tally-dialog-actions">
                <button class="tally-link" onclick={let c = props.on_close.clone(); move |_| c.emit(())}>{ t("dialog.cancel") }</button>
            </div>
        </Dialog>
    }
}
