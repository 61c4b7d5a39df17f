//! The quick switcher (Ctrl/Cmd+K): a text box over my conversations and the people I have no
//! conversation with, by name, unread first (`ChatStore::switch_candidates`); ↑/↓ choose,
//! Enter opens, Escape closes. And the keyboard shortcuts' help.

use tally_shared::navigate::{SWITCHER_SHOWN, Target};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::dialogs::Dialog;
use super::use_chat;
use crate::i18n::{t, tn};
use crate::state::Action;
use crate::util;

/// The quick switcher.
#[function_component(QuickSwitcher)]
pub fn quick_switcher() -> Html {
    let chat = use_chat();
    let query = use_state(String::new);
    let selected = use_state(|| 0usize);
    let candidates = chat.state().store.switch_candidates(&query, SWITCHER_SHOWN);
    let close = chat.callback(|()| Action::Switcher(false));
    let choose = {
        let chat = chat.clone();
        Callback::from(move |target: Target| {
            chat.dispatch(Action::Switcher(false));
            chat.dispatch(match target {
                Target::Conversation(c) => Action::Show(c),
                Target::Person(s) => Action::OpenDirect(s),
            });
        })
    };
    let oninput = {
        let (query, selected) = (query.clone(), selected.clone());
        Callback::from(move |e: InputEvent| {
            query.set(e.target_unchecked_into::<HtmlInputElement>().value());
            selected.set(0);
        })
    };
    let n = candidates.len();
    let at = (*selected).min(n.saturating_sub(1));
    let onkeydown = {
        let (selected, choose) = (selected.clone(), choose.clone());
        let chosen = candidates.get(at).map(|c| c.target.clone());
        Callback::from(move |e: KeyboardEvent| match e.key().as_str() {
            "ArrowDown" | "ArrowUp" if n > 0 && !e.alt_key() => {
                e.prevent_default();
                let step = if e.key() == "ArrowDown" { 1 } else { n - 1 };
                selected.set((at + step) % n);
            }
            "Enter" if !e.is_composing() => {
                e.prevent_default();
                if let Some(target) = chosen.clone() {
                    choose.emit(target);
                }
            }
            _ => {}
        })
    };
    let list_id = "tally-switcher-list";
    html! {
        <Dialog label={t("switcher.title")} id="switcher" on_close={close}>
            <input class="tally-input" type="text" role="combobox" aria-label={t("switcher.label")} placeholder={t("switcher.placeholder")}
                aria-expanded={(n > 0).to_string()} aria-controls={list_id} aria-autocomplete="list" dir="auto"
                aria-activedescendant={(n > 0).then(|| format!("{list_id}-{at}"))} autocomplete="off"
                value={(*query).clone()} {oninput} {onkeydown} data-testid="switcher-input" />
            if n == 0 {
                <p class="tally-empty" role="status">{ t("switcher.none") }</p>
            }
            <ul class="tally-mention-list tally-switcher-list" role="listbox" id={list_id} aria-label={t("switcher.label")} data-testid="switcher-list">
                { for candidates.into_iter().enumerate().map(|(i, c)| {
                    let pick = {
                        let (choose, target) = (choose.clone(), c.target.clone());
                        Callback::from(move |e: MouseEvent| { e.prevent_default(); choose.emit(target.clone()); })
                    };
                    let title = util::shown_title(&c.title);
                    let person = matches!(c.target, Target::Person(_));
                    let data = match &c.target { Target::Conversation(id) => id.0.to_string(), Target::Person(s) => s.to_string() };
                    html! {
                        <li role="option" id={format!("{list_id}-{i}")} aria-selected={(i == at).to_string()} data-target={data}
                            class={classes!("tally-mention-choice", (i == at).then_some("tally-selected"), c.wants_me().then_some("tally-item-unread"))}
                            onmousedown={pick} data-testid="switcher-option">
                            <span class="tally-avatar tally-avatar-small" aria-hidden="true">{ util::initials(&title) }</span>
                            <span class="tally-switcher-title" dir="auto">{ title }</span>
                            if person { <span class="tally-mention-id">{ t("switcher.person") }</span> }
                            if c.counts.mentions > 0 {
                                <span class="tally-badge tally-badge-mention" aria-hidden="true">{"@"}</span>
                                <span class="tally-sr-only">{ t("list.mentioned") }</span>
                            }
                            if c.counts.unread > 0 {
                                <span class={classes!("tally-badge", c.muted.then_some("tally-badge-muted"))} aria-hidden="true">
                                    { crate::i18n::Locale::current().number(u64::from(c.counts.unread)) }</span>
                                <span class="tally-sr-only">{ tn("list.unread", u64::from(c.counts.unread)) }</span>
                            }
                        </li>
                    }
                }) }
            </ul>
        </Dialog>
    }
}

/// The keyboard shortcuts.
#[function_component(ShortcutsHelp)]
pub fn shortcuts_help() -> Html {
    let chat = use_chat();
    let close = chat.callback(|()| Action::Shortcuts(false));
    let close_click = chat.callback(|_: MouseEvent| Action::Shortcuts(false));
    html! {
        <Dialog label={t("shortcuts.title")} id="shortcuts" on_close={close}>
            <dl class="tally-shortcuts" data-testid="shortcuts">
                { for crate::shortcuts::LIST.iter().map(|(keys, what)| html! {
                    <div class="tally-shortcut"><dt><kbd>{ t(keys) }</kbd></dt><dd>{ t(what) }</dd></div>
                }) }
            </dl>
            <div class="tally-dialog-actions">
                <button class="tally-primary" onclick={close_click}>{ t("dialog.close") }</button>
            </div>
        </Dialog>
    }
}
