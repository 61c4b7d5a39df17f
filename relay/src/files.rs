//! Where attachment bytes live and how long: content-addressed paths under `DATA/attachments`,
//! the upload quota, moving an upload into place, and collecting files that nothing references.
//!
//! Everything here that touches both the database and the files runs on the core thread, one
//! step after another, so a collection can never delete a file that an upload or a send is
//! about to reference: whichever comes second sees what the first did.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use tally_shared::{Attachment, AttachmentId, ErrorCode, Millis, StaffId};

use crate::storage;

/// How long an uploaded file that no live message references is kept (the default).
pub const GRACE: Duration = Duration::from_secs(24 * 3600);
/// How often unreferenced files are looked for.
pub const COLLECT_EVERY: Duration = Duration::from_secs(600);
/// The window of the upload quota.
const QUOTA_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// Where an attachment's bytes live.
pub fn path_of(data: &Path, id: &AttachmentId) -> PathBuf {
    let s = id.as_str();
    data.join("attachments").join(&s[..2]).join(s)
}

/// The attachment files of one data directory, with their grace period and quota.
#[derive(Debug, Clone)]
pub struct Files {
    data: PathBuf,
    grace_ms: u64,
    quota_per_day: u64,
}

impl Files {
    /// The files under `data`, kept `grace` when unreferenced, `quota_per_day` bytes each.
    pub fn new(data: PathBuf, grace: Duration, quota_per_day: u64) -> Self {
        Files {
            data,
            grace_ms: grace.as_millis() as u64,
            quota_per_day,
        }
    }

    /// Uploads since this moment still give their uploader access (the grace period).
    pub fn grace_starts(&self, now: Millis) -> u64 {
        now.0.saturating_sub(self.grace_ms)
    }

    /// Whether a staff member's uploads in the last 24 hours leave room for `size` more bytes.
    pub fn allowance(
        &self,
        conn: &Connection,
        staff: &StaffId,
        size: u64,
        now: Millis,
    ) -> Result<(), ErrorCode> {
        let since = now.0.saturating_sub(QUOTA_WINDOW_MS);
        let used = storage::uploaded_bytes_since(conn, staff, since).map_err(|e| {
            tracing::warn!(error = %e, "the upload quota could not be read");
            ErrorCode::Unavailable
        })?;
        if used.saturating_add(size) > self.quota_per_day {
            return Err(ErrorCode::QuotaExceeded);
        }
        Ok(())
    }

    /// Moves an upload (written and synced to `file`) into place and records it, within the
    /// quota.
    pub fn place(
        &self,
        conn: &Connection,
        staff: &StaffId,
        attachment: &Attachment,
        file: &Path,
        now: Millis,
    ) -> Result<(), ErrorCode> {
        self.allowance(conn, staff, attachment.size, now)?;
        let path = path_of(&self.data, &attachment.id);
        let placed = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(file, &path));
        placed
            .map_err(anyhow::Error::from)
            .and_then(|()| storage::record_upload(conn, staff, attachment, now.0).map_err(Into::into))
            .map_err(|e| {
                tracing::error!(error = %e, "recording an upload failed");
                ErrorCode::Internal
            })
    }

    /// Whether this node knows an attachment and that `uploader` uploaded it (any uploader
    /// when none is given).
    pub fn has(&self, conn: &Connection, id: &AttachmentId, uploader: Option<&StaffId>) -> bool {
        match storage::attachment_use(conn, id, 0) {
            Ok(used) => used.is_some_and(|u| uploader.is_none_or(|s| u.uploaders.contains(s))),
            Err(e) => {
                // Fetched again from the cluster, which is harmless.
                tracing::warn!(error = %e, "whether an attachment is here could not be read");
                false
            }
        }
    }

    /// Keeps here the records of an upload another node of the cluster shared, as they were
    /// made there (its bytes come on first download, off the core: `postgres::Sharer`).
    pub fn adopt(&self, conn: &Connection, shared: &crate::order::SharedUpload) -> anyhow::Result<()> {
        for (uploader, name, at) in &shared.uploads {
            let a = Attachment {
                name: name.clone(),
                ..shared.attachment.clone()
            };
            storage::record_upload(conn, uploader, &a, *at)?;
        }
        Ok(())
    }

    /// Deletes the records and files of attachments that no live message references and that
    /// nobody uploaded within the grace period; which.
    pub fn collect(&self, conn: &Connection, now: Millis) -> Vec<AttachmentId> {
        let ids = match storage::collect_attachments(conn, self.grace_starts(now)) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "unreferenced attachments not collected; trying again later");
                return Vec::new();
            }
        };
        for id in &ids {
            if let Err(e) = std::fs::remove_file(path_of(&self.data, id))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, attachment = %id, "could not delete an unreferenced file");
            }
        }
        if !ids.is_empty() {
            tracing::info!(files = ids.len(), "deleted unreferenced attachments");
        }
        ids
    }
}
