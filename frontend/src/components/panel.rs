//! The panel: a header (connection state, mark all read, new conversation) over either the
//! conversation list or the open conversation.

use tally_shared::Request;
use yew::prelude::*;

use super::conversation::ConversationView;
use super::dialogs::NewConversation;
use super::use_chat;
use crate::i18n::t;
use crate::state::{Action, ConnectionState};

/// The bell's settings: desktop notifications (asking the browser's permission from this very
/// click), a sound, and mentions in muted conversations.
#[function_component(NotificationSettings)]
fn notification_settings() -> Html {
    use crate::notify::{self, Settings};
    let chat = use_chat();
    let share_reads = !chat.state().store.hides_read_state();
    let on_share_reads = chat.callback(|e: Event| {
        let checked = e.target_unchecked_into::<web_sys::HtmlInputElement>().checked();
        Action::Request(Request::SetPreferences {
            hide_read_state: !checked,
        })
    });
    let settings = use_state(Settings::load);
    let blocked = use_state(|| false);
    let save = {
        let settings = settings.clone();
        move |s: Settings| {
            s.save();
            settings.set(s);
        }
    };
    let on_enabled = {
        let (settings, blocked, save) = (settings.clone(), blocked.clone(), save.clone());
        Callback::from(move |e: Event| {
            let checked = e.target_unchecked_into::<web_sys::HtmlInputElement>().checked();
            if !checked {
                save(Settings {
                    enabled: false,
                    ..*settings
                });
                return;
            }
            let (settings, blocked, save) = (settings.clone(), blocked.clone(), save.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let granted = notify::permitted() || notify::ask().await;
                blocked.set(!granted);
                save(Settings {
                    enabled: granted,
                    ..*settings
                });
            });
        })
    };
    let toggle = |f: fn(&mut Settings, bool)| {
        let (settings, save) = (settings.clone(), save.clone());
        Callback::from(move |e: Event| {
            let mut s = *settings;
            f(
                &mut s,
                e.target_unchecked_into::<web_sys::HtmlInputElement>().checked(),
            );
            save(s);
        })
    };
    html! {
        <div class="tally-notify-settings" data-testid="notification-settings">
            <label><input type="checkbox" checked={settings.enabled} onchange={on_enabled} data-testid="notify-enabled" />
                <span>{ t("settings.desktop") }</span></label>
            <label><input type="checkbox" checked={settings.sound} disabled={!settings.enabled}
                onchange={toggle(|s, v| s.sound = v)} /><span>{ t("settings.sound") }</span></label>
            <label><input type="checkbox" checked={settings.mentions_when_muted} disabled={!settings.enabled}
                onchange={toggle(|s, v| s.mentions_when_muted = v)} /><span>{ t("settings.muted_mentions") }</span></label>
            if *blocked { <p class="tally-status-error" role="alert">{ t("settings.blocked") }</p> }
            <label><input type="checkbox" checked={share_reads} onchange={on_share_reads} data-testid="share-reads" />
                <span>{ t("settings.share_reads") }</span></label>
            <QuietSettings />
            <button class="tally-link" data-testid="shortcuts-button" onclick={chat.callback(|_: MouseEvent| Action::Shortcuts(true))}>
                { t("shortcuts.title") }</button>
        </div>
    }
}

/// A change a schedule's control makes from what it holds.
type EditSchedule = dyn Fn(&mut tally_shared::quiet::Schedule, &web_sys::HtmlInputElement);

/// Do not disturb: snooze for a while, quiet hours on chosen days, and whether mentions break
/// through. Stored on the relay (`set_quiet`), so every tab and device obeys them.
#[function_component(QuietSettings)]
fn quiet_settings() -> Html {
    use tally_shared::quiet::{Quiet, Schedule};
    let chat = use_chat();
    let quiet = chat.state().store.quiet().clone();
    let custom = use_node_ref();
    let refused = use_state(|| None::<String>);
    // Checked here by the relay's own rule first: a refused change would only flash.
    let set = {
        let (chat, refused) = (chat.clone(), refused.clone());
        Callback::from(move |q: Quiet| match q.check(crate::quiet::now()) {
            Ok(()) => {
                refused.set(None);
                chat.dispatch(Action::Request(Request::SetQuiet { quiet: q }));
            }
            Err(_) => refused.set(Some(t("quiet.refused"))),
        })
    };
    let now = crate::quiet::now();
    let snooze = |until: Option<u64>| {
        let (set, quiet) = (set.clone(), quiet.clone());
        Callback::from(move |_: MouseEvent| {
            set.emit(Quiet {
                snooze_until: until.map(tally_shared::Millis),
                ..quiet.clone()
            })
        })
    };
    let minutes = |m: u64| Some(now.0 + m * 60_000);
    let snooze_custom = {
        let (set, quiet, custom) = (set.clone(), quiet.clone(), custom.clone());
        Callback::from(move |_: MouseEvent| {
            let Some(input) = custom.cast::<web_sys::HtmlInputElement>() else {
                return;
            };
            let at = input.value_as_number();
            if at.is_finite() {
                // A datetime-local's number is its wall time read as UTC: shift it to the
                // moment it means here.
                let offset = js_sys::Date::new(&at.into()).get_timezone_offset() * 60_000.0;
                let until = (at + offset).max(0.0) as u64;
                set.emit(Quiet {
                    snooze_until: Some(tally_shared::Millis(until)),
                    ..quiet.clone()
                });
            }
        })
    };
    let schedule = quiet.schedule.clone().unwrap_or(Schedule {
        days: 0b001_1111,
        from: 18 * 60,
        to: 8 * 60,
        zone: crate::quiet::browser_zone(),
    });
    let with_schedule = |f: Box<EditSchedule>| {
        let (set, quiet, schedule) = (set.clone(), quiet.clone(), schedule.clone());
        Callback::from(move |e: Event| {
            let input = e.target_unchecked_into::<web_sys::HtmlInputElement>();
            let mut s = schedule.clone();
            f(&mut s, &input);
            if s.days == 0 {
                // Quiet hours need a day: the last one stays.
                input.set_checked(true);
                return;
            }
            set.emit(Quiet {
                schedule: Some(s),
                ..quiet.clone()
            });
        })
    };
    let on_schedule = {
        let (set, quiet, schedule) = (set.clone(), quiet.clone(), schedule.clone());
        Callback::from(move |e: Event| {
            let on = e.target_unchecked_into::<web_sys::HtmlInputElement>().checked();
            set.emit(Quiet {
                schedule: on.then(|| schedule.clone()),
                ..quiet.clone()
            });
        })
    };
    let time_of = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    let parse_time = |v: &str| -> Option<u16> {
        let (h, m) = v.split_once(':')?;
        Some(h.parse::<u16>().ok()? * 60 + m.parse::<u16>().ok()?)
    };
    let on_from = with_schedule(Box::new(move |s, i| {
        s.from = parse_time(&i.value()).unwrap_or(s.from)
    }));
    let on_to = with_schedule(Box::new(move |s, i| {
        s.to = parse_time(&i.value()).unwrap_or(s.to)
    }));
    let on_mentions = {
        let (set, quiet) = (set.clone(), quiet.clone());
        Callback::from(move |e: Event| {
            set.emit(Quiet {
                mentions_break_through: e.target_unchecked_into::<web_sys::HtmlInputElement>().checked(),
                ..quiet.clone()
            })
        })
    };
    let locale = crate::i18n::Locale::current();
    let status = if quiet.snoozed(now) {
        let until = quiet.snooze_until.unwrap_or_default();
        Some(crate::i18n::ta(
            "quiet.paused_until",
            &[("time", &locale.date_time(until))],
        ))
    } else if crate::quiet::is_quiet_now(&quiet) {
        Some(t("quiet.hours_now"))
    } else {
        None
    };
    html! {
        <fieldset class="tally-quiet" data-testid="quiet-settings">
            <legend>{ t("quiet.title") }</legend>
            if let Some(status) = status {
                <p class="tally-quiet-status" role="status" data-testid="quiet-status">{ status }</p>
            }
            if let Some(why) = (*refused).clone() {
                <p class="tally-status-error" role="alert" data-testid="quiet-refused">{ why }</p>
            }
            <div class="tally-quiet-row" role="group" aria-label={t("quiet.snooze")}>
                <span class="tally-field">{ t("quiet.snooze") }</span>
                <button class="tally-chip" data-testid="snooze-30" onclick={snooze(minutes(30))}>{ t("quiet.30m") }</button>
                <button class="tally-chip" onclick={snooze(minutes(60))}>{ t("quiet.1h") }</button>
                <button class="tally-chip" onclick={snooze(Some(crate::quiet::tomorrow_morning().0))}>{ t("quiet.tomorrow") }</button>
                if quiet.snoozed(now) {
                    <button class="tally-chip" data-testid="snooze-off" onclick={snooze(None)}>{ t("quiet.resume") }</button>
                }
            </div>
            <div class="tally-quiet-row">
                <label class="tally-field" for="tally-snooze-until">{ t("quiet.custom") }</label>
                <input id="tally-snooze-until" class="tally-input tally-input-inline" type="datetime-local" ref={custom} />
                <button class="tally-chip" onclick={snooze_custom}>{ t("quiet.custom_button") }</button>
            </div>
            <label><input type="checkbox" checked={quiet.schedule.is_some()} onchange={on_schedule} data-testid="quiet-hours" />
                <span>{ t("quiet.schedule") }</span></label>
            if quiet.schedule.is_some() {
                <div class="tally-quiet-row">
                    <label class="tally-field">{ t("quiet.from") }
                        <input class="tally-input tally-input-inline" type="time" value={time_of(schedule.from)} onchange={on_from} /></label>
                    <label class="tally-field">{ t("quiet.to") }
                        <input class="tally-input tally-input-inline" type="time" value={time_of(schedule.to)} onchange={on_to} /></label>
                </div>
                <div class="tally-quiet-row tally-quiet-days" role="group" aria-label={t("quiet.days")}>
                    { for (0..7u8).map(|d| {
                        let on = schedule.days & (1 << d) != 0;
                        let toggle = with_schedule(Box::new(move |s, i| if i.checked() { s.days |= 1 << d } else { s.days &= !(1 << d) }));
                        html! { <label class="tally-day"><input type="checkbox" checked={on} onchange={toggle} />
                            <span>{ locale.weekday_short(d) }</span></label> }
                    }) }
                </div>
            }
            <label><input type="checkbox" checked={quiet.mentions_break_through} onchange={on_mentions} data-testid="quiet-mentions" />
                <span>{ t("quiet.mentions") }</span></label>
        </fieldset>
    }
}

/// The panel.
#[function_component(Panel)]
pub fn panel() -> Html {
    let chat = use_chat();
    let s = chat.state();
    let new_open = use_state(|| false);
    let searching = use_state(|| false);
    // Opened (from the launcher, by keyboard too): focus goes to the first conversation, and
    // back to the launcher when the panel closes.
    let node = use_node_ref();
    super::use_focus_inside(node.clone(), &[".tally-item", ".tally-header button"]);
    let status = match &s.connection {
        ConnectionState::Connected => html! {},
        ConnectionState::Connecting => {
            html! { <div class="tally-status" role="status">{ t("status.connecting") }</div> }
        }
        ConnectionState::Reconnecting { .. } => {
            html! { <div class="tally-status tally-status-warn" role="status" data-testid="reconnecting">{ t("status.reconnecting") }</div> }
        }
        ConnectionState::Offline(why) => {
            html! { <div class="tally-status tally-status-error" role="alert">{ t(why) }</div> }
        }
    };
    let dispatch = |a: fn() -> Action| chat.callback(move |_: MouseEvent| a());
    let bell_open = use_state(|| false);
    let toggle_bell = {
        let bell_open = bell_open.clone();
        Callback::from(move |_| bell_open.set(!*bell_open))
    };
    let toggle_new = {
        let new_open = new_open.clone();
        Callback::from(move |_| new_open.set(!*new_open))
    };
    let close_new = {
        let new_open = new_open.clone();
        Callback::from(move |_| new_open.set(false))
    };
    let onkeydown = {
        let chat = chat.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" {
                chat.dispatch(Action::TogglePanel);
            }
        })
    };
    let total = s.store.total();
    // Marking all read keeps focus on the button (it no longer goes disabled under the
    // keyboard: focus fell to the page, and Escape stopped closing the panel).
    let mark_all = {
        let chat = chat.clone();
        Callback::from(move |_: MouseEvent| {
            let total = chat.state().store.total();
            if total.unread > 0 || total.mentions > 0 {
                chat.dispatch(Action::Request(Request::MarkAllRead));
            }
        })
    };
    html! {
        <section class="tally-panel" role="dialog" aria-label={t("panel.title")} ref={node} {onkeydown}>
            <header class="tally-header">
                <h2>{ t("panel.title") }</h2>
                <div class="tally-header-actions">
                    <button class="tally-icon-button" title={t("panel.mark_all_read")} aria-label={t("panel.mark_all_read")}
                        aria-disabled={(total.unread == 0 && total.mentions == 0).to_string()} data-testid="mark-all-read"
                        onclick={mark_all}>{ super::icons::check_all() }</button>
                    <button class="tally-icon-button" title={t("panel.search")} aria-label={t("panel.search")}
                        aria-expanded={searching.to_string()} data-testid="search"
                        onclick={let s = searching.clone(); move |_| s.set(!*s)}>{ super::icons::search() }</button>
                    <button class="tally-icon-button" title={t("panel.new")} aria-label={t("panel.new")}
                        onclick={toggle_new}>{ super::icons::compose() }</button>
                    <button class="tally-icon-button" title={t("panel.notifications")} aria-label={t("panel.notifications")}
                        aria-expanded={bell_open.to_string()} data-testid="bell" onclick={toggle_bell}>{ super::icons::bell() }</button>
                    <button class="tally-icon-button" title={t("panel.close")} aria-label={t("panel.close")}
                        onclick={dispatch(|| Action::TogglePanel)}>{ super::icons::close() }</button>
                </div>
            </header>
            { status }
            if *bell_open { <NotificationSettings /> }
            if *new_open { <NewConversation on_close={close_new} /> }
            if s.switcher { <super::switcher::QuickSwitcher /> }
            if s.shortcuts { <super::switcher::ShortcutsHelp /> }
            if !s.store.is_ready() {
                <div class="tally-empty">{ t("status.loading") }</div>
            } else if *searching {
                <super::search::SearchView on_close={let s = searching.clone(); Callback::from(move |_| s.set(false))} />
            } else if let Some((conversation, root)) = s.open_thread {
                <super::thread::ThreadPane key={format!("t-{conversation}-{root}")} {conversation} {root} />
            } else if let Some(id) = s.open {
                <ConversationView key={id.0.to_string()} {id} />
            } else {
                <super::list::Lists />
            }
        </section>
    }
}
