//! HTTP calls: history pages, uploads (with progress), attachment downloads. The token goes in
//! the `Authorization` header, never in a URL.

use tally_shared::{Attachment, ConversationId, Message, Seq};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{ProgressEvent, XmlHttpRequest};

use crate::options::MountOptions;

/// A GET with the bearer token; an error is the relay's own message when it gave one (every
/// refusal is `{"code", "message"}`), or the status.
async fn get(options: &MountOptions, path: &str) -> Result<gloo::net::http::Response, String> {
    let token = options.token().await.ok_or("no token")?;
    let resp = gloo::net::http::Request::get(&format!("{}{path}", options.http_base()))
        .header("Authorization", &format!("Bearer {token}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.ok() {
        return Ok(resp);
    }
    #[derive(serde::Deserialize)]
    struct Refusal {
        message: String,
    }
    match resp.json::<Refusal>().await {
        Ok(r) => Err(r.message),
        Err(_) => Err(format!("{path}: HTTP {}", resp.status())),
    }
}

/// A page of search results: messages of my conversations, newest first.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct SearchPage {
    /// What matched.
    pub results: Vec<Message>,
    /// The next page starts before this message (none: no more).
    pub next_before: Option<tally_shared::MessageId>,
}

/// Searches my conversations for `query`; an error is the relay's own message (a query too
/// short, too many searches) or what went wrong on the way.
pub async fn search(
    options: &MountOptions,
    query: &str,
    before: Option<tally_shared::MessageId>,
) -> Result<SearchPage, String> {
    let mut path = format!(
        "/api/search?limit=20&q={}",
        String::from(js_sys::encode_uri_component(query))
    );
    if let Some(b) = before {
        path.push_str(&format!("&before={b}"));
    }
    get(options, &path).await?.json().await.map_err(|e| e.to_string())
}

/// An older page of a conversation: the messages before `before`.
pub async fn history(
    options: &MountOptions,
    conversation: ConversationId,
    before: Seq,
    limit: u64,
) -> Result<Vec<Message>, String> {
    let path = format!("/api/conversations/{conversation}/messages?before={before}&limit={limit}");
    messages(options, &path).await
}

/// The `messages` of a page of history.
async fn messages(options: &MountOptions, path: &str) -> Result<Vec<Message>, String> {
    #[derive(serde::Deserialize)]
    struct Page {
        messages: Vec<Message>,
    }
    let page: Page = get(options, path)
        .await?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(page.messages)
}

/// A thread's root and replies (the newest page of them), in order.
pub async fn thread(
    options: &MountOptions,
    conversation: ConversationId,
    root: Seq,
) -> Result<Vec<Message>, String> {
    let limit = tally_shared::limits::HISTORY_PAGE_MAX;
    let path = format!("/api/conversations/{conversation}/messages?thread={root}&limit={limit}");
    messages(options, &path).await
}

/// An earlier text of a message (before an edit), and when it was written.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Version {
    /// The text.
    pub body: String,
    /// When it was written.
    pub at: tally_shared::Millis,
}

/// A message's earlier versions that I saw, oldest first.
pub async fn versions(
    options: &MountOptions,
    message: tally_shared::MessageId,
) -> Result<Vec<Version>, String> {
    #[derive(serde::Deserialize)]
    struct Versions {
        versions: Vec<Version>,
    }
    let v: Versions = get(options, &format!("/api/messages/{}/versions", message.0))
        .await?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(v.versions)
}

/// The staff directory.
pub async fn directory(options: &MountOptions) -> Result<Vec<tally_shared::Staff>, String> {
    get(options, "/api/staff")
        .await?
        .json()
        .await
        .map_err(|e| e.to_string())
}

/// Downloads an attachment into a blob URL (an `<img src>` cannot send a header).
pub async fn attachment_url(options: &MountOptions, a: &Attachment) -> Result<String, String> {
    let path = format!(
        "/api/attachments/{}?name={}",
        a.id,
        js_sys::encode_uri_component(&a.name)
    );
    let resp = get(options, &path).await?;
    let bytes = resp.binary().await.map_err(|e| e.to_string())?;
    let array = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes.as_slice()));
    let props = web_sys::BlobPropertyBag::new();
    props.set_type(&a.content_type);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&array, &props).map_err(|_| "blob")?;
    web_sys::Url::create_object_url_with_blob(&blob).map_err(|_| "url".into())
}

/// Uploads a file, reporting progress (0.0 to 1.0); resolves to the attachment record.
pub async fn upload(
    options: &MountOptions,
    file: web_sys::File,
    progress: impl Fn(f64) + 'static,
) -> Result<Attachment, String> {
    let token = options.token().await.ok_or("no token")?;
    let url = format!(
        "{}/api/attachments?name={}",
        options.http_base(),
        js_sys::encode_uri_component(&file.name())
    );
    let xhr = XmlHttpRequest::new().map_err(|_| "xhr")?;
    xhr.open("POST", &url).map_err(|_| "open")?;
    xhr.set_request_header("Authorization", &format!("Bearer {token}"))
        .map_err(|_| "header")?;
    let on_progress = Closure::<dyn Fn(ProgressEvent)>::new(move |e: ProgressEvent| {
        if e.length_computable() && e.total() > 0.0 {
            progress(e.loaded() / e.total());
        }
    });
    if let Ok(up) = xhr.upload() {
        up.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
    }
    let done = js_sys::Promise::new(&mut |resolve, reject| {
        xhr.set_onload(Some(&resolve));
        xhr.set_onerror(Some(&reject));
    });
    xhr.send_with_opt_blob(Some(&file)).map_err(|_| "send")?;
    wasm_bindgen_futures::JsFuture::from(done)
        .await
        .map_err(|_| "network error".to_string())?;
    drop(on_progress);
    let text = xhr.response_text().ok().flatten().unwrap_or_default();
    if xhr.status().unwrap_or(0) != 201 {
        let code = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {}", xhr.status().unwrap_or(0)));
        return Err(code);
    }
    serde_json::from_str(&text).map_err(|e| e.to_string())
}
