//! Attachments over HTTP: upload (rate-limited, within a daily quota), download (streamed from
//! disk, only for staff in a conversation whose live message references the file), and content
//! sniffing. Where the bytes live and how long is [`crate::files`].

use sha2::{Digest, Sha256};
use tally_shared::{Attachment, AttachmentId, ErrorCode, StaffId, limits};
use warp::Rejection;
use warp::http::{HeaderValue, Response, StatusCode, header};
use warp::hyper::body::Bytes;

use crate::core::Command;
use crate::limits::Kind;
use crate::listener::FileBody;
use crate::rejection::{api_error, core_gone, status_of};
use crate::state::AppState;

/// A file name safe for a header and a file system: no paths, no quotes, no control characters.
pub fn clean_name(name: Option<String>) -> String {
    let name = name.unwrap_or_default();
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ';' | '\\'))
        .take(limits::ATTACHMENT_NAME_MAX)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "file".into()
    } else {
        cleaned
    }
}

/// The media type of some bytes, from their content (never from what the uploader claims).
pub fn sniff(bytes: &[u8]) -> &'static str {
    const SIGNATURES: [(&[u8], &str); 7] = [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
    ];
    for (magic, ty) in SIGNATURES {
        if bytes.starts_with(magic) {
            return ty;
        }
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return "image/webp";
    }
    if !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok() {
        return "text/plain; charset=utf-8";
    }
    "application/octet-stream"
}

/// Takes a token from one of the staff member's buckets, or refuses with `rate_limited`.
pub fn take_budget(state: &AppState, staff: &StaffId, kind: Kind) -> Result<(), Rejection> {
    let (rate, burst) = state.config.limits.budget(kind);
    match state
        .staff_buckets
        .take(&(staff.clone(), kind), rate, burst, std::time::Instant::now())
    {
        Ok(()) => Ok(()),
        Err(wait) => {
            state.metrics.reject(ErrorCode::RateLimited);
            Err(crate::rejection::rate_limited("too many requests", wait))
        }
    }
}

/// An upload allowed to send its body.
#[derive(Debug)]
pub struct Admitted {
    staff: StaffId,
    name: Option<String>,
    state: AppState,
}

/// `POST /api/attachments?name=FILE`, before its body is read: the upload rate and the quota,
/// from `Content-Length`.
pub async fn admit_upload(
    staff: StaffId,
    name: Option<String>,
    length: u64,
    state: AppState,
) -> Result<Admitted, Rejection> {
    take_budget(&state, &staff, Kind::Upload)?;
    let ask = |reply| Command::UploadAllowance {
        staff: staff.clone(),
        size: length,
        reply,
    };
    match state.ask(ask).await {
        Some(Ok(())) => Ok(Admitted { staff, name, state }),
        Some(Err(code)) => Err(quota_error(code, &state)),
        None => Err(core_gone()),
    }
}

/// `POST /api/attachments?name=FILE`: stores the body, then records it on the core thread
/// (which checks the quota again: uploads may have run side by side).
pub async fn upload(admitted: Admitted, body: Bytes) -> Result<warp::reply::Response, Rejection> {
    let Admitted { staff, name, state } = admitted;
    if body.is_empty() {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            "empty upload",
        ));
    }
    let id = AttachmentId::new(hex::encode(Sha256::digest(&body))).expect("hex is a valid id");
    let tmp = state.config.data.join("attachments").join(format!(
        ".upload-{}-{:016x}",
        id.as_str(),
        rand::random::<u64>()
    ));
    let write = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        tokio::io::AsyncWriteExt::write_all(&mut f, &body).await?;
        f.sync_all().await
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        tracing::error!(error = %e, "storing an upload failed");
        return Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "could not store the file",
        ));
    }
    let attachment = Attachment {
        id,
        name: clean_name(name),
        content_type: sniff(&body).to_string(),
        size: body.len() as u64,
    };
    // In a cluster, every node must be able to read it before it is acknowledged.
    if let Some(sharer) = &state.sharer {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Err(e) = sharer
            .share(staff.clone(), attachment.clone(), tmp.clone(), now)
            .await
        {
            let _ = tokio::fs::remove_file(&tmp).await;
            tracing::warn!(error = %e, "upload not shared");
            state.metrics.reject(ErrorCode::Unavailable);
            return Err(api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the file could not be stored now; retry",
            ));
        }
    }
    let a = attachment.clone();
    let recorded = state
        .ask(|reply| Command::Upload {
            staff,
            attachment: a,
            file: tmp.clone(),
            reply,
        })
        .await;
    match recorded {
        Some(Ok(())) => {
            let reply = warp::reply::with_status(warp::reply::json(&attachment), StatusCode::CREATED);
            Ok(warp::Reply::into_response(reply))
        }
        other => {
            let _ = tokio::fs::remove_file(&tmp).await;
            match other {
                Some(Err(code)) => Err(quota_error(code, &state)),
                _ => Err(core_gone()),
            }
        }
    }
}

/// Fetches an upload's bytes from a cluster's PostgreSQL into `path` (written aside, then moved
/// into place: a download beside it sees the whole file or none).
async fn fetch_shared(
    sharer: &crate::postgres::Sharer,
    id: &AttachmentId,
    path: &std::path::Path,
) -> Result<(), Rejection> {
    let unavailable = || {
        api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the file cannot be fetched now; retry",
        )
    };
    let bytes = match sharer.fetch(id.clone()).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(api_error(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such attachment",
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, attachment = %id, "a shared upload could not be fetched");
            return Err(unavailable());
        }
    };
    let tmp = path.with_file_name(format!(".fetch-{}-{:016x}", id.as_str(), rand::random::<u64>()));
    let write = async {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(&tmp, &bytes).await?;
        tokio::fs::rename(&tmp, path).await
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        tracing::error!(error = %e, "keeping a shared upload failed");
        return Err(unavailable());
    }
    Ok(())
}

fn quota_error(code: ErrorCode, state: &AppState) -> Rejection {
    if code == ErrorCode::QuotaExceeded {
        state.metrics.reject(code);
        let quota = state.config.limits.upload_bytes_per_day;
        return api_error(
            StatusCode::TOO_MANY_REQUESTS,
            code,
            format!("the upload quota of {quota} bytes per 24 hours is spent"),
        );
    }
    api_error(status_of(code), code, "could not record the upload")
}

/// `GET /api/attachments/{id}?name=FILE`: the file, streamed, for staff in a conversation whose
/// live message references it (or its uploader, within the grace period).
pub async fn download(
    id: String,
    staff: StaffId,
    name: Option<String>,
    if_none_match: Option<String>,
    state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let not_found = || api_error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such attachment");
    let id = AttachmentId::new(id)
        .ok()
        .filter(AttachmentId::is_content_address)
        .ok_or_else(not_found)?;
    let content_type = match state
        .ask(|reply| Command::Attachment {
            staff,
            id: id.clone(),
            reply,
        })
        .await
    {
        Some(Ok((content_type, _size))) => content_type,
        Some(Err(ErrorCode::NotFound)) => return Err(not_found()),
        Some(Err(code)) => {
            return Err(api_error(
                status_of(code),
                code,
                "you are not in a conversation with this file",
            ));
        }
        None => return Err(core_gone()),
    };
    // The content address is the perfect validator: a cached copy is only ever revalidated,
    // and only after the access check above.
    let etag = format!("\"{}\"", id.as_str());
    let mut r = if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        let mut r = Response::new(warp::hyper::body::Bytes::new().into());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let path = crate::files::path_of(&state.config.data, &id);
        if let Some(sharer) = &state.sharer
            && tokio::fs::metadata(&path).await.is_err()
        {
            // Uploaded through another node of the cluster: fetched once, kept here.
            fetch_shared(sharer, &id, &path).await?;
        }
        let file = tokio::fs::File::open(&path).await.map_err(|_| not_found())?;
        let len = file.metadata().await.map_err(|_| not_found())?.len();
        let mut r = Response::new(warp::hyper::body::Bytes::new().into());
        r.extensions_mut().insert(FileBody::new(file));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        r
    };
    let inline = limits::INLINE_IMAGE_TYPES.contains(&content_type.as_str());
    let disposition = format!(
        "{}; filename=\"{}\"",
        if inline { "inline" } else { "attachment" },
        clean_name(name).replace(|c: char| !c.is_ascii(), "_")
    );
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    // Private (no shared cache keeps it) and revalidated on every use, so a browser shared by
    // two staff members never shows one the other's file without asking the relay.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Authorization"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_ignores_claims_and_reads_content() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), "image/png");
        assert_eq!(sniff(b"<html><script>"), "text/plain; charset=utf-8");
        assert_eq!(sniff(&[0, 1, 2, 255]), "application/octet-stream");
    }

    #[test]
    fn names_cannot_traverse_or_inject_headers() {
        assert_eq!(clean_name(Some("../../etc/passwd".into())), "passwd");
        assert_eq!(clean_name(Some("a\"b;\r\nc.png".into())), "abc.png");
        assert_eq!(clean_name(None), "file");
        assert_eq!(clean_name(Some("..".into())), "file");
    }
}
