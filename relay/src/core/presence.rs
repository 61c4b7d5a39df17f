//! Presence and typing: who is online, away or offline (announced at most once a second per
//! person, over the whole cluster), and typing relayed to a conversation's participants.
//! Nothing of it is stored.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tally_shared::protocol::{ErrorFrame, Presence, ServerFrame, encode};
use tally_shared::staff_keys::StaffKey;
use tally_shared::{ConversationId, ErrorCode, StaffId};

use super::Core;
use crate::hub::{ConnHandle, Frame};

/// What presence the core keeps.
#[derive(Default)]
pub(super) struct PresenceState {
    /// What was last announced of each person (absent: offline).
    announced: rustc_hash::FxHashMap<StaffKey, Presence>,
    /// Whose may have changed since the last tick (announced at the next, so that a page
    /// reload does not flash offline).
    dirty: rustc_hash::FxHashSet<StaffKey>,
    /// Presence on the other nodes of a cluster: per node, when it was last heard from and
    /// who is connected to it (see `doorbell::Gossip::Presence`).
    remote: rustc_hash::FxHashMap<u64, (Instant, rustc_hash::FxHashMap<StaffId, Presence>)>,
    /// The presence of people connected here as last told to the other nodes.
    published: rustc_hash::FxHashMap<StaffKey, Presence>,
    /// Seconds ticked (the 1 s `ReloadStaff`), for repeating presence to the other nodes.
    ticks: u64,
    /// Each person's last `presence` frame, encoded once for everyone who is told it (every
    /// hello of their peers: half the frames of a reconnect storm), with the presence and
    /// "do not disturb" it says; encoded again when either differs.
    frames: std::cell::RefCell<rustc_hash::FxHashMap<StaffKey, (Presence, bool, Frame)>>,
}

impl PresenceState {
    /// Someone's presence may have changed: announced at the next tick.
    pub(super) fn touch(&mut self, key: StaffKey) {
        self.dirty.insert(key);
    }

    /// What was last announced of someone.
    pub(super) fn announced(&self, key: StaffKey) -> Presence {
        self.announced.get(&key).copied().unwrap_or_default()
    }

    /// Forgets what is filed by staff key (a rebuild numbers staff anew).
    pub(super) fn forget_keys(&mut self) {
        self.frames.get_mut().clear();
        self.announced.clear();
        self.dirty.clear();
        self.published.clear();
    }
}

impl Core {
    /// The `presence` frame of what was last announced of someone (`None`: offline).
    pub(super) fn presence_frame(&self, key: StaffKey, staff: &StaffId) -> Option<Frame> {
        let presence = self.presence.announced(key);
        if presence == Presence::Offline {
            return None;
        }
        let dnd = self.quiet.announced(key);
        let mut frames = self.presence.frames.borrow_mut();
        match frames.get(&key) {
            Some((p, d, frame)) if (*p, *d) == (presence, dnd) => Some(frame.clone()),
            _ => {
                let frame: Frame = encode(&ServerFrame::Presence {
                    staff: staff.clone(),
                    presence,
                    dnd,
                })
                .into();
                frames.insert(key, (presence, dnd, frame.clone()));
                Some(frame)
            }
        }
    }

    /// Relays a `typing` frame to the conversation's other participants (not to the typist's
    /// own other tabs), then acknowledges it; refused like a write to a conversation one is not
    /// in. Nothing is stored, retained or replayed.
    pub(super) fn typing(
        &mut self,
        staff: &StaffId,
        conversation: ConversationId,
        req: Option<tally_shared::RequestId>,
        conn: &ConnHandle,
    ) {
        if !self.engine.is_participant(staff, conversation) {
            let (code, message) = match self.engine.conversation(conversation) {
                Some(_) => (
                    ErrorCode::NotParticipant,
                    format!("you are not in conversation {conversation}"),
                ),
                None => (ErrorCode::NotFound, format!("no conversation {conversation}")),
            };
            self.metrics.reject(code);
            let e = ErrorFrame::new(req, code, message);
            self.send(conn, encode(&ServerFrame::Error(e)).into());
            return;
        }
        self.relay_typing(staff, conversation);
        if let Some(bell) = &self.bell {
            bell.gossip(crate::doorbell::Gossip::Typing {
                staff: staff.clone(),
                conversation,
            });
        }
        let ack = tally_shared::protocol::Ack {
            req,
            offset: self.engine.offset(),
            ..Default::default()
        };
        self.send(conn, encode(&ServerFrame::Ack(ack)).into());
    }

    /// Sends `typing` to the conversation's participants connected here, but the typist.
    fn relay_typing(&self, staff: &StaffId, conversation: ConversationId) {
        let frame: Frame = encode(&ServerFrame::Typing {
            conversation,
            staff: staff.clone(),
        })
        .into();
        let others = self
            .engine
            .conversation(conversation)
            .map(|c| {
                c.participants
                    .iter()
                    .filter(|p| *p != staff)
                    .filter_map(|p| self.engine.key(p))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for key in others {
            self.hub.send(key, &frame, &self.metrics);
        }
    }

    /// Typing or presence another node told about.
    pub(super) fn gossip(&mut self, g: crate::doorbell::Gossip) {
        use crate::doorbell::Gossip;
        match g {
            Gossip::Typing { staff, conversation } => {
                if self.engine.is_participant(&staff, conversation) {
                    self.relay_typing(&staff, conversation);
                }
            }
            Gossip::Presence { node, full, staff } => {
                let (heard, there) = self
                    .presence
                    .remote
                    .entry(node)
                    .or_insert_with(|| (Instant::now(), rustc_hash::FxHashMap::default()));
                *heard = Instant::now();
                let mut touched: Vec<StaffId> = Vec::new();
                if full {
                    touched.extend(there.drain().map(|(id, _)| id));
                }
                for (id, presence) in staff {
                    if presence == Presence::Offline {
                        there.remove(&id);
                    } else {
                        there.insert(id.clone(), presence);
                    }
                    touched.push(id);
                }
                for id in touched {
                    if let Some(key) = self.engine.key(&id) {
                        self.presence.touch(key);
                    }
                }
            }
        }
    }

    /// The cluster's side of the 1 s tick: forget nodes not heard from, and repeat who is
    /// connected here every `PRESENCE_EVERY`.
    pub(super) fn tick_presence(&mut self) {
        let Some(bell) = &self.bell else { return };
        self.presence.ticks += 1;
        let gone: Vec<u64> = self
            .presence
            .remote
            .iter()
            .filter(|(_, (heard, _))| heard.elapsed() > crate::doorbell::PRESENCE_EXPIRES)
            .map(|(node, _)| *node)
            .collect();
        for node in gone {
            if let Some((_, there)) = self.presence.remote.remove(&node) {
                tracing::info!(
                    node,
                    people = there.len(),
                    "a node went quiet: its presence expires"
                );
                for id in there.into_keys() {
                    if let Some(key) = self.engine.key(&id) {
                        self.presence.touch(key);
                    }
                }
            }
        }
        if self
            .presence
            .ticks
            .is_multiple_of(crate::doorbell::PRESENCE_EVERY.as_secs().max(1))
        {
            let staff = self
                .hub
                .staff()
                .map(|key| {
                    (
                        self.engine.projection().staff_id(key).clone(),
                        self.hub.presence(key),
                    )
                })
                .collect();
            bell.gossip(crate::doorbell::Gossip::Presence {
                node: bell.node,
                full: true,
                staff,
            });
        }
    }

    /// Someone's presence over the whole cluster: the most present of here and elsewhere.
    pub(super) fn presence_of(&self, key: StaffKey) -> Presence {
        fn rank(p: Presence) -> u8 {
            match p {
                Presence::Online => 2,
                Presence::Away => 1,
                Presence::Offline => 0,
            }
        }
        let here = self.hub.presence(key);
        if self.presence.remote.is_empty() {
            return here;
        }
        let id = self.engine.projection().staff_id(key);
        self.presence
            .remote
            .values()
            .filter_map(|(_, there)| there.get(id).copied())
            .chain([here])
            .max_by_key(|p| rank(*p))
            .unwrap_or(here)
    }

    /// People who just came to share a conversation learn each other's presence (what was
    /// announced before only went to their peers of that time).
    pub(super) fn introduce(&self, event: &tally_shared::Event) {
        use tally_shared::Event;
        let (everyone, newcomer) = match event {
            Event::ConversationCreated { conversation, .. } => (&conversation.participants, None),
            Event::ParticipantAdded {
                conversation, staff, ..
            } => (&conversation.participants, Some(staff)),
            _ => return,
        };
        let mut sent = 0;
        for p in everyone {
            let Some(p_key) = self.engine.key(p) else { continue };
            let Some(frame) = self.presence_frame(p_key, p) else {
                continue;
            };
            // Everyone to everyone for a new conversation; for a newcomer, everyone to them
            // and them to everyone.
            let to: Vec<&StaffId> = match newcomer {
                None => everyone.iter().filter(|q| *q != p).collect(),
                Some(n) if n == p => everyone.iter().filter(|q| *q != p).collect(),
                Some(n) => vec![n],
            };
            for q in to {
                if let Some(q_key) = self.engine.key(q) {
                    sent += self.hub.send(q_key, &frame, &self.metrics);
                }
            }
        }
        self.metrics.frames_out.fetch_add(sent, Relaxed);
    }

    /// Announces the presence of everyone whose may have changed since the last tick, to the
    /// people they share a conversation with (and who are connected): at most once a second
    /// per person, and nothing when it came back to what was announced.
    pub(super) fn announce_presence(&mut self) {
        let mut changed_here = Vec::new();
        let stamp = self.clock.now();
        for key in std::mem::take(&mut self.presence.dirty) {
            if self.bell.is_some() {
                let here = self.hub.presence(key);
                if self.presence.published.get(&key).copied().unwrap_or_default() != here {
                    if here == Presence::Offline {
                        self.presence.published.remove(&key);
                    } else {
                        self.presence.published.insert(key, here);
                    }
                    changed_here.push((self.engine.projection().staff_id(key).clone(), here));
                }
            }
            let now = self.presence_of(key);
            let before = self.presence.announced.get(&key).copied().unwrap_or_default();
            let staff = self.engine.projection().staff_id(key).clone();
            let dnd = now != Presence::Offline && self.quiet.is_quiet(&staff, stamp);
            if now == before && dnd == self.quiet.announced(key) {
                continue;
            }
            self.quiet.set_announced(key, dnd);
            if now == Presence::Offline {
                // A quiet spell starts (also when their last tab closed on another node).
                self.reminders.quiet(key, stamp);
                self.presence.announced.remove(&key);
            } else {
                self.presence.announced.insert(key, now);
            }
            let frame: Frame = encode(&ServerFrame::Presence {
                staff: staff.clone(),
                presence: now,
                dnd,
            })
            .into();
            // Kept for their peers' hellos while they are not offline.
            let frames = self.presence.frames.get_mut();
            if now == Presence::Offline {
                frames.remove(&key);
            } else {
                frames.insert(key, (now, dnd, frame.clone()));
            }
            let mut sent = 0;
            for peer in self.engine.peers(&staff) {
                if let Some(peer_key) = self.engine.key(&peer) {
                    sent += self.hub.send(peer_key, &frame, &self.metrics);
                }
            }
            self.metrics.frames_out.fetch_add(sent, Relaxed);
        }
        if !changed_here.is_empty()
            && let Some(bell) = &self.bell
        {
            bell.gossip(crate::doorbell::Gossip::Presence {
                node: bell.node,
                full: false,
                staff: changed_here,
            });
        }
    }
}
