//! What a connection is sent when it says hello (a replay or a snapshot, then its session's
//! state), and the preferences it sets.

use tally_shared::protocol::{ErrorFrame, ProtocolRange, ServerFrame, encode};
use tally_shared::{ErrorCode, StaffId};

use super::{Core, Greeting};
use crate::hub::ConnHandle;
use crate::storage;

impl Core {
    /// Registers a connection that said hello, after a replay or a snapshot.
    pub(super) fn hello(
        &mut self,
        staff: &StaffId,
        greeting: Greeting,
        conn: ConnHandle,
    ) -> Result<(), ErrorFrame> {
        let Greeting {
            resume_from,
            counts_first,
        } = greeting;
        let Some(key) = self.engine.key(staff).filter(|_| self.engine.is_active(staff)) else {
            let message = "unknown or deactivated staff member";
            return Err(ErrorFrame::new(None, ErrorCode::Unauthorized, message));
        };
        if self.hub.count(key) >= self.connection_cap {
            self.metrics.reject(ErrorCode::RateLimited);
            let cap = self.connection_cap;
            let message = format!("at most {cap} connections per staff member");
            return Err(ErrorFrame::new(None, ErrorCode::RateLimited, message));
        }
        if self.reminders.connected(staff) {
            // Their quiet spell is over: the next one may remind them again.
            if let Err(e) = storage::forget_reminded(&self.conn, staff) {
                // At worst, after a restart in this spell, no reminder until the next one.
                tracing::warn!(error = %e, "a reminder's end was not recorded");
            }
        }
        if resume_from.is_some_and(|from| from > self.engine.offset()) {
            // Resuming from an offset another node served: this node catches up to it first.
            self.catch_up();
        }
        match resume_from.and_then(|from| self.resume.replay(key, from, self.engine.offset())) {
            Some(frames) => {
                for f in frames {
                    self.send(&conn, f);
                }
                let resumed = ServerFrame::Resumed {
                    offset: self.engine.offset(),
                    protocols: Some(ProtocolRange::SERVED),
                };
                self.send(&conn, encode(&resumed).into());
            }
            None => {
                if counts_first {
                    // Cheap to make, and the badge need not wait for the snapshot's messages.
                    let counts = ServerFrame::Counts {
                        offset: self.engine.offset(),
                        total: self.engine.projection().total(staff),
                    };
                    self.send(&conn, encode(&counts).into());
                }
                self.queue_snapshot(staff, &conn)
            }
        }
        self.session_state(staff, &conn);
        self.hub.register(key, conn);
        self.presence.touch(key);
        Ok(())
    }

    /// What follows a snapshot or a replay (the store forgets it at those frames): the
    /// presence of everyone this person shares a conversation with who is not offline, their
    /// preferences, and how far the others have read.
    pub(super) fn session_state(&self, staff: &StaffId, conn: &ConnHandle) {
        for peer in self.engine.peers(staff) {
            let Some(peer_key) = self.engine.key(&peer) else {
                continue;
            };
            if let Some(frame) = self.presence_frame(peer_key, &peer) {
                self.send(conn, frame);
            }
        }
        let hide_read_state = self.engine.hides_read_state(staff);
        let preferences = ServerFrame::Preferences { hide_read_state };
        self.send(conn, encode(&preferences).into());
        self.send(conn, self.quiet_frame(staff));
        for frame in self.engine.all_read_positions(staff) {
            self.send(conn, encode(&frame).into());
        }
    }

    /// Records a preference, then tells this person's tabs and, for the read state, the people
    /// they share conversations with.
    pub(super) fn preferences(
        &mut self,
        staff: &StaffId,
        hide_read_state: bool,
        req: Option<tally_shared::RequestId>,
        conn: &ConnHandle,
    ) {
        if let Err(e) = self
            .order
            .set_read_state_hidden(&self.conn, staff, hide_read_state)
        {
            tracing::warn!(error = %e, "preference not stored");
            let e = ErrorFrame::new(
                req,
                ErrorCode::Unavailable,
                "preferences cannot be stored now; retry",
            );
            self.send(conn, encode(&ServerFrame::Error(e)).into());
            return;
        }
        let changed = self.engine.set_read_state_hidden(staff, hide_read_state);
        let ack = tally_shared::protocol::Ack {
            req,
            offset: self.engine.offset(),
            ..Default::default()
        };
        self.send(conn, encode(&ServerFrame::Ack(ack)).into());
        if changed {
            let frames = self.engine.preference_frames(staff);
            self.send_addressed(frames);
        }
    }

    /// A tab became visible or hidden: presence changes at the next tick.
    pub(super) fn visibility(
        &mut self,
        staff: &StaffId,
        visible: bool,
        req: Option<tally_shared::RequestId>,
        conn: &ConnHandle,
    ) {
        self.hub.set_visible(conn.id, visible);
        if let Some(key) = self.engine.key(staff) {
            self.presence.touch(key);
        }
        let ack = tally_shared::protocol::Ack {
            req,
            offset: self.engine.offset(),
            ..Default::default()
        };
        self.send(conn, encode(&ServerFrame::Ack(ack)).into());
    }

    /// A connection closed: presence changes at the next tick, and with the last one a quiet
    /// spell starts.
    pub(super) fn disconnected(&mut self, staff: &StaffId, conn_id: u64) {
        if let Some(key) = self.engine.key(staff) {
            self.hub.unregister(key, conn_id);
            self.presence.touch(key);
            if self.hub.count(key) == 0 {
                self.reminders.quiet(key, self.clock.now());
            }
        }
    }
}
