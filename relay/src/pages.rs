//! The built frontend and the page's protections: static files with their caching, the
//! content security policy (with the hash of Trunk's inline loader), and the security headers
//! every response gets.

use sha2::{Digest, Sha256};
use warp::http::{HeaderValue, header};
use warp::{Filter, Rejection, Reply};

/// `GET`, and `HEAD` wherever `GET` works (hyper sends no body for `HEAD`).
pub fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

/// The policy for everything the relay serves: scripts only from the relay itself (plus the
/// exact inline loader Trunk writes into index.html, by hash), WebAssembly compilation, no
/// framing, no referrer.
pub fn content_security_policy(static_dir: Option<&std::path::Path>) -> HeaderValue {
    let mut hashes = String::new();
    if let Some(html) = static_dir.and_then(|d| std::fs::read_to_string(d.join("index.html")).ok()) {
        for script in inline_scripts(&html) {
            hashes.push_str(&format!(
                " 'sha256-{}'",
                base64_engine::encode(&Sha256::digest(script.as_bytes()))
            ));
        }
    }
    let policy = format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    );
    HeaderValue::from_str(&policy).expect("the policy is ASCII")
}

/// The bodies of inline `<script>` elements (those without `src`).
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let tag = &after[..open_end];
        let body_start = open_end + 1;
        let Some(close) = after[body_start..].find("</script>") else {
            break;
        };
        if !tag.contains("src=") {
            out.push(&after[body_start..body_start + close]);
        }
        rest = &after[body_start + close..];
    }
    out
}

/// Standard base64, for CSP hashes.
mod base64_engine {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn encodes_like_rfc_4648() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
    }
}

pub fn security_headers(reply: impl Reply, csp: &HeaderValue) -> warp::reply::Response {
    let mut r = reply.into_response();
    let h = r.headers_mut();
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(csp.clone());
    // JSON answers are per staff member and per moment: no cache may keep them.
    let json = h
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if json {
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    r
}

pub fn static_files(dir: Option<std::path::PathBuf>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    match dir {
        // Not `get_or_head()`: its 405 for other methods would outrank the 400 of a bad body
        // or the 404 of a path no route has (the files answer every path).
        Some(dir) => warp::method()
            .and_then(|method: warp::http::Method| async move {
                if method == warp::http::Method::GET || method == warp::http::Method::HEAD {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            })
            .untuple_one()
            .and(warp::fs::dir(dir))
            .map(|file: warp::fs::File| {
                let name = file
                    .path()
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                let mut r = file.into_response();
                let cache = if is_hashed(&name) {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                };
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
                r
            })
            .boxed(),
        None => warp::any()
            .and_then(|| async { Err::<warp::reply::Response, _>(warp::reject::not_found()) })
            .boxed(),
    }
}

/// Trunk names built assets `name-<16 hex digits>.ext`: those never change.
fn is_hashed(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or_default();
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit('-')
        .next()
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_assets_are_recognised() {
        assert!(is_hashed("tally-frontend-3f2a9c1b0d4e5f67_bg.wasm"));
        assert!(is_hashed("tally-frontend-3f2a9c1b0d4e5f67.js"));
        assert!(!is_hashed("index.html"));
    }
}
