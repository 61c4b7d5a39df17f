//! Reads: snapshots (built off this thread by read workers when there are some), history
//! pages, search scopes and attachment checks. Each is answered between batches, at a state
//! every connection has been sent.

use std::sync::atomic::Ordering::Relaxed;

use tally_shared::protocol::{ProtocolRange, ServerFrame, encode};
use tally_shared::{AttachmentId, ErrorCode, Message, MessageId, Offset, Seq, StaffId, limits};
use tokio::sync::oneshot;

use super::{Core, HistoryRequest, SearchRequest};
use crate::hub::{ConnHandle, Frame};
use crate::reads::Job;
use crate::storage;
use tally_shared::protocol::close;

/// A snapshot or history page waiting for a read connection.
pub(super) enum Pending {
    Snapshot {
        staff: StaffId,
        conn: ConnHandle,
        deliver: oneshot::Sender<crate::hub::Built>,
    },
    History(HistoryRequest),
}

impl Core {
    /// Queues a snapshot for a connection: built by a read worker at the state when a read
    /// connection is free, or here when there are no workers. Frames queued after it wait.
    pub(super) fn queue_snapshot(&mut self, staff: &StaffId, conn: &ConnHandle) {
        if self.reads.is_none() {
            let mut snapshot = self.snapshot_without_messages(staff);
            let budget = tally_shared::engine::SnapshotBudget::default();
            let mut unread = None;
            tally_shared::engine::fill_messages(&mut snapshot, budget, &mut |c, from, to, take| {
                if let Err(e) = storage::messages_newest_first(&self.conn, c, from, to, take) {
                    unread = Some(e);
                }
            });
            if let Some(e) = unread {
                // No snapshot with holes: the client reconnects and asks again.
                tracing::warn!(error = %e, "a snapshot's messages could not be read");
                conn.closer.close(close::GOING_AWAY);
                return;
            }
            let frame: Frame = encode(&ServerFrame::Snapshot(snapshot)).into();
            if let Some(built) = conn.admit_snapshot(frame, &self.metrics) {
                let (deliver, later) = oneshot::channel();
                let _ = deliver.send(built);
                if conn.send_later(later, &self.metrics) {
                    self.metrics.frames_out.fetch_add(1, Relaxed);
                }
            }
            return;
        }
        let (deliver, later) = oneshot::channel();
        if conn.send_later(later, &self.metrics) {
            self.pending.push_back(Pending::Snapshot {
                staff: staff.clone(),
                conn: conn.clone(),
                deliver,
            });
            self.pump();
        }
    }

    pub(super) fn snapshot_without_messages(&self, staff: &StaffId) -> Box<tally_shared::protocol::Snapshot> {
        let mut snapshot = self.engine.snapshot_without_messages(staff);
        snapshot.protocols = Some(ProtocolRange::SERVED);
        Box::new(snapshot)
    }

    /// Starts what waits for a read connection, while one is free: each read transaction opens
    /// here, between batches, so it sees exactly the engine's state.
    pub(super) fn pump(&mut self) {
        while !self.pending.is_empty() {
            let Some(reads) = self.reads.as_mut() else { return };
            let Some(read) = reads.take() else { return };
            let job = match self.pending.pop_front().expect("not empty") {
                Pending::Snapshot { staff, conn, deliver } => {
                    // A closing connection (say, a slow consumer) would only drop it.
                    (conn.closer.code().is_none()).then(|| Job::Snapshot {
                        snapshot: self.snapshot_without_messages(&staff),
                        deliver,
                        conn,
                        metrics: self.metrics.clone(),
                    })
                }
                Pending::History(h) => match self.history_range(&h) {
                    Ok(Some((from, to))) => Some(Job::History {
                        conversation: h.conversation,
                        from,
                        to,
                        thread: h.thread_page(),
                        reply: h.reply,
                    }),
                    other => {
                        let _ = h.reply.send(other.map(|_| Vec::new()));
                        None
                    }
                },
            };
            let reads = self.reads.as_mut().expect("checked above");
            match job {
                Some(job) => reads.run(read, job),
                None => reads.give(read),
            }
        }
    }

    /// A fresh snapshot, then the acknowledgement of the request that asked for it.
    pub(super) fn snapshot(
        &mut self,
        staff: &StaffId,
        req: Option<tally_shared::RequestId>,
        conn: &ConnHandle,
    ) {
        if conn.closer.code().is_some() {
            // Closing (say, as a slow consumer): a snapshot would only be dropped.
            return;
        }
        self.queue_snapshot(staff, conn);
        self.session_state(staff, conn);
        let ack = tally_shared::protocol::Ack {
            req,
            offset: self.engine.offset(),
            ..Default::default()
        };
        self.send(conn, encode(&ServerFrame::Ack(ack)).into());
    }

    /// A page of history: up to `limit` messages before `before` (or up to the head).
    pub(super) fn history(&self, h: &HistoryRequest) -> Result<Vec<Message>, ErrorCode> {
        let conversation = h.conversation;
        let Some((from, to)) = self.history_range(h)? else {
            return Ok(Vec::new());
        };
        storage::history_page(
            &self.conn,
            conversation,
            (from, to),
            h.thread_page(),
            limits::PAGE_MAX_BYTES,
        )
        .map_err(|e| {
            tracing::warn!(error = %e, "a history page could not be read");
            ErrorCode::Unavailable
        })
    }

    /// A message's earlier versions (its text before each edit), oldest first, as far as this
    /// staff member saw them: those still current after they (last) joined its conversation.
    /// A deleted message has none; someone not in the conversation gets `not_participant`.
    pub(super) fn versions(
        &self,
        staff: &StaffId,
        message: MessageId,
    ) -> Result<Vec<storage::Version>, ErrorCode> {
        let unavailable = |e: rusqlite::Error| {
            tracing::warn!(error = %e, "a message's versions could not be read");
            ErrorCode::Unavailable
        };
        let Some((conversation, deleted, mut versions)) =
            storage::message_versions(&self.conn, message).map_err(unavailable)?
        else {
            return Err(ErrorCode::NotFound);
        };
        if !self.engine.is_participant(staff, conversation) {
            return Err(ErrorCode::NotParticipant);
        }
        if deleted {
            return Err(ErrorCode::NotFound);
        }
        // Never edited: no earlier version (and no need to look for when they joined, which
        // reads the conversation's events).
        if versions.len() < 2 {
            return Ok(Vec::new());
        }
        let joined = storage::joined_at(&self.conn, conversation, staff)
            .map_err(unavailable)?
            .unwrap_or_default();
        // Version i was replaced by version i + 1: seen if that happened after they joined.
        let replaced: Vec<Offset> = versions.iter().skip(1).map(|v| v.offset).collect();
        versions.truncate(replaced.len());
        Ok(versions
            .into_iter()
            .zip(replaced)
            .filter(|(_, replaced)| *replaced > joined)
            .map(|(v, _)| v)
            .collect())
    }

    /// A search's query with its scope: the one conversation asked for, if the searcher is in
    /// it, or every conversation they are in now.
    pub(super) fn search_scope(&self, r: &SearchRequest) -> Result<crate::search::SearchQuery, ErrorCode> {
        let conversations = match r.conversation {
            Some(c) if self.engine.is_participant(&r.staff, c) => vec![c],
            Some(c) if self.engine.conversation(c).is_some() => return Err(ErrorCode::NotParticipant),
            Some(_) => return Err(ErrorCode::NotFound),
            None => self
                .engine
                .projection()
                .conversations_of(&r.staff)
                .into_iter()
                .map(|(c, ..)| c)
                .collect(),
        };
        Ok(crate::search::SearchQuery {
            terms: r.terms.clone(),
            conversations,
            before: r.before,
            limit: r.limit.clamp(1, crate::search::MAX_RESULTS),
        })
    }

    /// The seqs of a page of history, if the staff member may read it (`None`: no messages).
    pub(super) fn history_range(&self, h: &HistoryRequest) -> Result<Option<(Seq, Seq)>, ErrorCode> {
        let (staff, conversation, before, limit) = (&h.staff, h.conversation, h.before, h.limit);
        if !self.engine.is_participant(staff, conversation) {
            return Err(match self.engine.conversation(conversation) {
                Some(_) => ErrorCode::NotParticipant,
                None => ErrorCode::NotFound,
            });
        }
        let head = self.engine.projection().head(conversation).unwrap_or_default();
        let to = before.map_or(head, |b| Seq(b.0.saturating_sub(1)).min(head));
        let limit = limit.clamp(1, limits::HISTORY_PAGE_MAX);
        let from = Seq(to.0.saturating_sub(limit - 1).max(1));
        Ok((to.0 > 0).then_some((from, to)))
    }

    /// Whether a staff member may fetch an attachment: its uploader within the grace period,
    /// or a participant of a conversation whose live message references it.
    pub(super) fn attachment_access(
        &mut self,
        staff: &StaffId,
        id: &AttachmentId,
    ) -> Result<(String, u64), ErrorCode> {
        self.fetch_upload(id, None);
        let since = self.files.grace_starts(self.clock.now());
        let used = storage::attachment_use(&self.conn, id, since).map_err(|e| {
            tracing::warn!(error = %e, "an attachment's use could not be read");
            ErrorCode::Unavailable
        })?;
        let Some(used) = used else {
            return Err(ErrorCode::NotFound);
        };
        let allowed = used.uploaders.contains(staff)
            || used
                .conversations
                .iter()
                .any(|c| self.engine.is_participant(staff, *c));
        if !allowed {
            return Err(ErrorCode::NotParticipant);
        }
        Ok((used.content_type, used.size))
    }

    /// A page of history: built by a read worker when there are some, here otherwise.
    pub(super) fn history_page(&mut self, h: HistoryRequest) {
        if self.reads.is_some() {
            self.pending.push_back(Pending::History(h));
            self.pump();
        } else {
            let page = self.history(&h);
            let _ = h.reply.send(page);
        }
    }

    /// Whether a staff member may fetch an attachment (see `attachment_access`), after
    /// catching up with the cluster if not.
    pub(super) fn attachment(
        &mut self,
        staff: &StaffId,
        id: &AttachmentId,
    ) -> Result<(String, u64), ErrorCode> {
        let access = self.attachment_access(staff, id);
        if access.is_err() && self.bell.is_some() {
            // The message that shares it may have been committed through another node a moment
            // ago, its ring still on the way: a node behind the cluster reads what it missed
            // before it refuses (read-your-writes across nodes).
            self.catch_up();
            return self.attachment_access(staff, id);
        }
        access
    }
}
