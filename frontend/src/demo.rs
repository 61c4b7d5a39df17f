//! The demo host page: a pretend work app with a sign-in picker of demo staff (served by
//! `tally-relay serve --demo`), then the widget mounted as any host page would mount it:
//! through [`crate::mount`], into an element of the page.

use gloo::storage::{SessionStorage, Storage};
use tally_shared::Staff;
use wasm_bindgen::JsValue;
use yew::prelude::*;

const KEY: &str = "tally.demo.token";

/// The demo page.
#[function_component(DemoHost)]
pub fn demo_host() -> Html {
    // Per tab (sessionStorage), so two windows can be two different staff members.
    let token = use_state(|| SessionStorage::get::<String>(KEY).ok());
    let staff = use_state(|| None::<Result<Vec<Staff>, String>>);
    {
        let staff = staff.clone();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                let result = match gloo::net::http::Request::get("/api/demo/staff").send().await {
                    Ok(r) if r.ok() => r.json::<Vec<Staff>>().await.map_err(|e| e.to_string()),
                    Ok(r) => Err(format!("The relay is not in demo mode (HTTP {}).", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                staff.set(Some(result));
            });
        });
    }
    let sign_out = {
        let token = token.clone();
        Callback::from(move |_| {
            SessionStorage::delete(KEY);
            token.set(None);
        })
    };
    let messenger = use_node_ref();
    {
        let messenger = messenger.clone();
        let who = signed_in_as(&staff).unwrap_or_default();
        use_effect_with((*token).clone(), move |token| {
            let widget = token.as_ref().and_then(|t| {
                let options = js_sys::Object::new();
                let _ = js_sys::Reflect::set(&options, &"token".into(), &JsValue::from_str(t));
                let key = format!("tally.outbox.{who}");
                let _ = js_sys::Reflect::set(&options, &"storageKey".into(), &JsValue::from_str(&key));
                // `?lang=de` shows the demo page (and so the widget) in another language.
                if let Some(lang) = demo_lang() {
                    if let Some(html) = gloo::utils::document().document_element() {
                        let _ = html.set_attribute("lang", &lang);
                    }
                    let _ = js_sys::Reflect::set(&options, &"locale".into(), &JsValue::from_str(&lang));
                }
                crate::mount(messenger.cast::<web_sys::Element>()?, options.into()).ok()
            });
            move || {
                if let Some(mut w) = widget {
                    w.unmount();
                }
            }
        });
    }
    if token.is_some() {
        return html! {
            <>
                <header class="demo-bar">
                    <strong>{"Acme Work App"}</strong>
                    <span class="demo-who">{ signed_in_as(&staff).map(|s| format!("Signed in as {s}")).unwrap_or_default() }</span>
                    <button class="demo-signout" onclick={sign_out}>{"Sign out"}</button>
                </header>
                <main class="demo-content">
                    <h1>{"Today’s schedule"}</h1>
                    <p>{"This page stands in for the work app. The messenger lives in the corner."}</p>
                </main>
                <div id="messenger" ref={messenger} />
            </>
        };
    }
    let pick = |s: &Staff| {
        let (token, id) = (token.clone(), s.id.clone());
        Callback::from(move |_| {
            let (token, id) = (token.clone(), id.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let body = serde_json::json!({ "staff": id }).to_string();
                let Ok(req) = gloo::net::http::Request::post("/api/demo/token")
                    .header("Content-Type", "application/json")
                    .body(body)
                else {
                    return;
                };
                if let Ok(r) = req.send().await
                    && let Ok(v) = r.json::<serde_json::Value>().await
                    && let Some(t) = v["token"].as_str()
                {
                    let _ = SessionStorage::set(KEY, t);
                    let _ = SessionStorage::set("tally.demo.staff", id.as_str());
                    token.set(Some(t.to_string()));
                }
            });
        })
    };
    html! {
        <main class="demo-signin">
            <h1>{"Tally demo"}</h1>
            <p>{"Sign in as a demo staff member. Open a second window as someone else to see counts move live."}</p>
            { match &*staff {
                None => html! { <p>{"Loading staff…"}</p> },
                Some(Err(e)) => html! { <p class="demo-failed">{ e.clone() }</p> },
                Some(Ok(list)) => html! {
                    <ul class="demo-staff">
                        { for list.iter().map(|s| html! {
                            <li key={s.id.to_string()}>
                                <button onclick={pick(s)} data-staff={s.id.to_string()}>
                                    <span class="demo-avatar">{ crate::util::initials(&s.name) }</span>{ s.name.clone() }
                                </button>
                            </li>
                        }) }
                    </ul>
                },
            } }
        </main>
    }
}

/// The `lang` of the page's query string (`?lang=ar`), if any.
fn demo_lang() -> Option<String> {
    let search = gloo::utils::window().location().search().ok()?;
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix("lang="))
        .filter(|l| {
            !l.is_empty() && l.len() <= 35 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_string)
}

fn signed_in_as(_staff: &UseStateHandle<Option<Result<Vec<Staff>, String>>>) -> Option<String> {
    SessionStorage::get::<String>("tally.demo.staff").ok()
}
