//! A simulation of the whole system without I/O, for property tests and fuzzing: the engine as
//! the relay runs it, one `ChatStore` per staff member fed exactly the frames the relay would
//! send them, and the naive [`Oracle`]. After every step the three must agree (invariants 1, 2
//! and 7 of docs/semantics.md); replays must change nothing; refusals (of staff and of the work app's backend alike) must
//! change nothing at all: not the engine, the log or any store. It panics on
//! the first violation, which is what a property test or a fuzzer wants.

use crate::engine::{Applied, DirectPost, ServiceRequest};
use crate::memory::MemoryHost;
use crate::oracle::Oracle;
use crate::protocol::ServerFrame;
use crate::{
    Attachment, AttachmentId, ChatStore, ClientMsgId, ConversationId, MessageId, Millis, Request, Seq, Staff,
    StaffId,
};

/// The simulated staff.
pub const STAFF: [&str; 4] = ["ann", "bob", "cy", "dee"];

/// One step of a simulation: every write and read path, plus reconnects and replays.
#[derive(Clone, Debug)]
#[allow(missing_docs)]
pub enum Op {
    CreateDirect(usize, usize),
    CreateGroup(usize, u8),
    Send {
        who: usize,
        conv: usize,
        mentions: u8,
        reply: Option<usize>,
        attach: bool,
    },
    Resend {
        who: usize,
    },
    /// A reply in the thread under the `root`-th message created (refused when that is a
    /// reply, a notice, or deleted before its thread started).
    Reply {
        who: usize,
        root: usize,
        mentions: u8,
        attach: bool,
    },
    /// Read a thread up to a point (`up_to` past its root), or whole when `None`.
    ReadThread {
        who: usize,
        root: usize,
        up_to: Option<u64>,
    },
    /// Mark a thread unread from `from` past its root.
    ThreadUnread {
        who: usize,
        root: usize,
        from: u64,
    },
    /// Follow or unfollow a thread.
    Follow {
        who: usize,
        root: usize,
        follow: bool,
    },
    /// Put an emoji on the `msg`-th message created, or take it off (`emoji` picks one of a
    /// few, and sometimes something that is no emoji).
    React {
        who: usize,
        msg: usize,
        emoji: u8,
        add: bool,
    },
    /// A group's owner allows `@here` or stops it (others are refused).
    Everyone {
        who: usize,
        conv: usize,
        allowed: bool,
    },
    Forward {
        who: usize,
        msg: usize,
        to: usize,
    },
    Edit {
        who: usize,
        msg: usize,
    },
    Delete {
        who: usize,
        msg: usize,
    },
    Rename {
        who: usize,
        conv: usize,
    },
    Add {
        who: usize,
        conv: usize,
        staff: u8,
    },
    Remove {
        who: usize,
        conv: usize,
        staff: usize,
    },
    Mute {
        who: usize,
        conv: usize,
        muted: bool,
    },
    MarkRead {
        who: usize,
        conv: usize,
        up_to: u64,
    },
    MarkConversationRead {
        who: usize,
        conv: usize,
    },
    MarkAllRead {
        who: usize,
    },
    MarkUnread {
        who: usize,
        conv: usize,
        from: u64,
    },
    Reconnect {
        who: usize,
    },
    Replay,
    /// The relay restarts from a checkpoint of its engine.
    Restart,
    /// A write by the work app's backend (`what` picks a notice, a group, membership, or a
    /// post into a direct conversation); `bad` makes some of them invalid on purpose.
    Service {
        what: u8,
        a: usize,
        b: usize,
        conv: usize,
        bad: u8,
    },
}

impl Op {
    /// Reads one operation from fuzzer bytes; `None` when they run out.
    pub fn decode(bytes: &mut &[u8]) -> Option<Op> {
        let mut next = || -> Option<u8> {
            let (b, rest) = bytes.split_first()?;
            *bytes = rest;
            Some(*b)
        };
        let who = |b: u8| b as usize % STAFF.len();
        let op = match next()? % 24 {
            0 => Op::CreateDirect(who(next()?), who(next()?)),
            1 => Op::CreateGroup(who(next()?), next()?),
            2 => {
                let (w, c, m, r, a) = (next()?, next()?, next()?, next()?, next()?);
                Op::Send {
                    who: who(w),
                    conv: c as usize,
                    mentions: m,
                    reply: (r % 2 == 0).then_some(r as usize / 2),
                    attach: a % 8 == 0,
                }
            }
            3 => Op::Resend { who: who(next()?) },
            4 => Op::Forward {
                who: who(next()?),
                msg: next()? as usize,
                to: next()? as usize,
            },
            5 => Op::Edit {
                who: who(next()?),
                msg: next()? as usize,
            },
            6 => Op::Delete {
                who: who(next()?),
                msg: next()? as usize,
            },
            7 => Op::Rename {
                who: who(next()?),
                conv: next()? as usize,
            },
            8 => Op::Add {
                who: who(next()?),
                conv: next()? as usize,
                staff: next()?,
            },
            9 => Op::Remove {
                who: who(next()?),
                conv: next()? as usize,
                staff: who(next()?),
            },
            10 => Op::Mute {
                who: who(next()?),
                conv: next()? as usize,
                muted: next()? % 2 == 0,
            },
            11 => Op::MarkRead {
                who: who(next()?),
                conv: next()? as usize,
                up_to: u64::from(next()?),
            },
            12 => Op::MarkConversationRead {
                who: who(next()?),
                conv: next()? as usize,
            },
            13 => Op::MarkAllRead { who: who(next()?) },
            14 => Op::MarkUnread {
                who: who(next()?),
                conv: next()? as usize,
                from: u64::from(next()?),
            },
            15 => Op::Reconnect { who: who(next()?) },
            16 => Op::Restart,
            17 => Op::Service {
                what: next()?,
                a: who(next()?),
                b: who(next()?),
                conv: next()? as usize,
                bad: next()?,
            },
            18 => Op::Reply {
                who: who(next()?),
                root: next()? as usize,
                mentions: next()?,
                attach: next()? % 8 == 0,
            },
            19 => {
                let (w, r, u) = (next()?, next()?, next()?);
                Op::ReadThread {
                    who: who(w),
                    root: r as usize,
                    up_to: (u % 4 != 0).then_some(u64::from(u)),
                }
            }
            20 => Op::ThreadUnread {
                who: who(next()?),
                root: next()? as usize,
                from: u64::from(next()?),
            },
            21 => Op::Follow {
                who: who(next()?),
                root: next()? as usize,
                follow: next()? % 2 == 0,
            },
            22 => {
                let (w, m, e) = (next()?, next()?, next()?);
                match e % 8 {
                    7 => Op::Everyone {
                        who: who(w),
                        conv: m as usize,
                        allowed: e % 16 < 8,
                    },
                    _ => Op::React {
                        who: who(w),
                        msg: m as usize,
                        emoji: e,
                        add: e % 3 != 0,
                    },
                }
            }
            _ => Op::Replay,
        };
        Some(op)
    }
}

/// A body that mentions the staff `mask`'s low four bits pick, `@here` with bit 4; with bit 5
/// as a picker sends them (ranges over "@Name", whatever the case), else as typed text
/// ("@id", upper case with bit 6).
fn mention_body(prefix: &str, mask: u8) -> (String, Vec<crate::mentions::MentionRange>) {
    let mut body = String::from(prefix);
    let mut ranges = Vec::new();
    let picked = (0..STAFF.len())
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| STAFF[i]);
    let everyone = (mask & 0x10 != 0).then_some("here");
    for name in picked.chain(everyone) {
        body.push(' ');
        let start = body.chars().count() as u32;
        let text = match mask & 0x60 {
            0x20 | 0x60 => format!("@{}{}", name[..1].to_uppercase(), &name[1..]),
            0x40 => format!("@{}", name.to_uppercase()),
            _ => format!("@{name}"),
        };
        body.push_str(&text);
        ranges.push(crate::mentions::MentionRange {
            start,
            end: body.chars().count() as u32,
            staff: (name != "here").then(|| StaffId::new(name).unwrap()),
        });
    }
    if mask & 0x20 == 0 {
        ranges.clear();
    }
    (body, ranges)
}

/// Whether `store` has `message` loaded.
fn holds(store: &ChatStore, message: MessageId) -> bool {
    store
        .conversation_list()
        .iter()
        .filter_map(|item| store.conversation(item.id))
        .any(|v| v.messages.iter().any(|m| m.id == message))
}

/// What a step may not change when it is refused.
struct Before {
    engine: crate::Engine,
    log: usize,
    stores: Vec<crate::store::StoreSummary>,
}

/// The relay's engine, a browser store per staff member, and the oracle, stepped together.
pub struct World {
    host: MemoryHost,
    oracle: Oracle,
    directory: Vec<Staff>,
    /// Every event appended, for replays from offset 0.
    log: Vec<crate::LoggedEvent>,
    staff: Vec<StaffId>,
    /// Each staff member's browser store.
    pub stores: Vec<ChatStore>,
    conversations: Vec<ConversationId>,
    messages: Vec<MessageId>,
    /// Where each message of `messages` is: a thread's name.
    places: Vec<(ConversationId, Seq)>,
    sent: Vec<(usize, Request)>,
    last: Option<Applied>,
    clock: u64,
    client_ids: u64,
}

impl World {
    /// Four staff, no conversations, an attachment each of them uploaded.
    pub fn new() -> Self {
        let staff: Vec<StaffId> = STAFF.iter().map(|s| StaffId::new(*s).unwrap()).collect();
        let directory: Vec<Staff> = staff
            .iter()
            .map(|id| Staff {
                id: id.clone(),
                name: id.to_string().to_uppercase(),
            })
            .collect();
        let mut host = MemoryHost::with_staff(&directory);
        let attachment = Attachment {
            id: AttachmentId::new("a".repeat(64)).unwrap(),
            name: "plan.pdf".into(),
            content_type: "application/pdf".into(),
            size: 10,
        };
        for s in &staff {
            host.storage.upload(s, attachment.clone());
        }
        let stores = staff
            .iter()
            .map(|s| {
                let mut store = ChatStore::new();
                store.apply(ServerFrame::Snapshot(Box::new(host.snapshot(s))));
                store
            })
            .collect();
        World {
            host,
            oracle: Oracle::new(),
            directory,
            log: Vec::new(),
            staff,
            stores,
            conversations: Vec::new(),
            messages: Vec::new(),
            places: Vec::new(),
            sent: Vec::new(),
            last: None,
            clock: 1_000,
            client_ids: 0,
        }
    }

    /// The `i`-th conversation created (modulo how many exist).
    pub fn conv(&self, i: usize) -> ConversationId {
        if self.conversations.is_empty() {
            ConversationId(999)
        } else {
            self.conversations[i % self.conversations.len()]
        }
    }

    fn msg(&self, i: usize) -> MessageId {
        if self.messages.is_empty() {
            MessageId(999)
        } else {
            self.messages[i % self.messages.len()]
        }
    }

    /// The thread under the `i`-th message created (modulo how many exist).
    fn root(&self, i: usize) -> (ConversationId, Seq) {
        if self.places.is_empty() {
            (ConversationId(999), Seq(1))
        } else {
            self.places[i % self.places.len()]
        }
    }

    /// How far a thread reaches past its root (0 before it starts).
    fn thread_span(&self, (c, root): (ConversationId, Seq)) -> u64 {
        let head = self.host.engine.projection().thread_head(c, root).unwrap_or(root);
        head.0 - root.0
    }

    fn head(&self, c: ConversationId) -> u64 {
        self.host.engine.projection().head(c).unwrap_or_default().0
    }

    // Over 80 lines: one arm per kind of operation the simulation draws.
    fn request(&mut self, op: &Op) -> Option<(usize, Request)> {
        let s = |i: usize| StaffId::new(STAFF[i]).unwrap();
        let pick =
            |mask: u8| -> Vec<StaffId> { (0..STAFF.len()).filter(|i| mask & (1 << i) != 0).map(s).collect() };
        self.client_ids += 1;
        let client_id = ClientMsgId::new(format!("c{}", self.client_ids)).unwrap();
        Some(match op.clone() {
            Op::CreateDirect(a, b) => (a, Request::CreateDirect { staff: s(b) }),
            Op::CreateGroup(a, m) => (
                a,
                Request::CreateGroup {
                    client_id,
                    title: format!("g{m}"),
                    participants: pick(m),
                },
            ),
            Op::Send {
                who,
                conv,
                mentions,
                reply,
                attach,
            } => {
                let (body, mention_ranges) = mention_body("hi", mentions);
                let attachments = if attach {
                    vec![AttachmentId::new("a".repeat(64)).unwrap()]
                } else {
                    vec![]
                };
                let reply_to = reply.map(|r| self.msg(r));
                (
                    who,
                    Request::SendMessage {
                        mention_ranges,
                        client_id,
                        conversation: self.conv(conv),
                        body,
                        attachments,
                        reply_to,
                    },
                )
            }
            Op::Resend { who } => {
                return self.sent.iter().rev().find(|(w, _)| *w == who).cloned();
            }
            Op::Reply {
                who,
                root,
                mentions,
                attach,
            } => {
                let (conversation, thread) = self.root(root);
                let (body, mention_ranges) = mention_body("re", mentions);
                let attachments = if attach {
                    vec![AttachmentId::new("a".repeat(64)).unwrap()]
                } else {
                    vec![]
                };
                (
                    who,
                    Request::ReplyInThread {
                        mention_ranges,
                        client_id,
                        conversation,
                        thread,
                        body,
                        attachments,
                    },
                )
            }
            Op::ReadThread { who, root, up_to } => {
                let place = self.root(root);
                let (conversation, thread) = place;
                let request = match up_to {
                    Some(n) => Request::MarkThreadRead {
                        conversation,
                        thread,
                        up_to: Seq(thread.0 + n % (self.thread_span(place) + 3)),
                    },
                    None => Request::ReadThread { conversation, thread },
                };
                (who, request)
            }
            Op::ThreadUnread { who, root, from } => {
                let place = self.root(root);
                let (conversation, thread) = place;
                (
                    who,
                    Request::MarkThreadUnread {
                        conversation,
                        thread,
                        from: Seq(thread.0 + from % (self.thread_span(place) + 2)),
                    },
                )
            }
            Op::Follow { who, root, follow } => {
                let (conversation, thread) = self.root(root);
                let request = if follow {
                    Request::FollowThread { conversation, thread }
                } else {
                    Request::UnfollowThread { conversation, thread }
                };
                (who, request)
            }
            Op::Forward { who, msg, to } => (
                who,
                Request::ForwardMessage {
                    client_id,
                    message: self.msg(msg),
                    to: self.conv(to),
                },
            ),
            Op::Edit { who, msg } => (
                who,
                Request::EditMessage {
                    mention_ranges: Vec::new(),
                    message: self.msg(msg),
                    body: "edited @bob @here".into(),
                },
            ),
            Op::React { who, msg, emoji, add } => {
                let emoji = ["👍", "🎉", "❤️", "🇩🇪", "ok"][emoji as usize % 5].to_string();
                let message = self.msg(msg);
                let request = if add {
                    Request::AddReaction { message, emoji }
                } else {
                    Request::RemoveReaction { message, emoji }
                };
                (who, request)
            }
            Op::Everyone { who, conv, allowed } => (
                who,
                Request::SetEveryoneMentions {
                    conversation: self.conv(conv),
                    allowed,
                },
            ),
            Op::Delete { who, msg } => (
                who,
                Request::DeleteMessage {
                    message: self.msg(msg),
                },
            ),
            Op::Rename { who, conv } => (
                who,
                Request::RenameConversation {
                    conversation: self.conv(conv),
                    title: "renamed".into(),
                },
            ),
            Op::Add { who, conv, staff } => (
                who,
                Request::AddParticipants {
                    conversation: self.conv(conv),
                    staff: pick(staff),
                },
            ),
            Op::Remove { who, conv, staff } => (
                who,
                Request::RemoveParticipant {
                    conversation: self.conv(conv),
                    staff: s(staff),
                },
            ),
            Op::Mute { who, conv, muted } => (
                who,
                Request::SetMuted {
                    conversation: self.conv(conv),
                    muted,
                },
            ),
            Op::MarkRead { who, conv, up_to } => {
                let c = self.conv(conv);
                let up_to = up_to % (self.head(c) + 3);
                (
                    who,
                    Request::MarkRead {
                        conversation: c,
                        up_to: Seq(up_to),
                    },
                )
            }
            Op::MarkConversationRead { who, conv } => (
                who,
                Request::MarkConversationRead {
                    conversation: self.conv(conv),
                },
            ),
            Op::MarkAllRead { who } => (who, Request::MarkAllRead),
            Op::MarkUnread { who, conv, from } => {
                let c = self.conv(conv);
                let from = from % (self.head(c) + 2);
                (
                    who,
                    Request::MarkUnread {
                        conversation: c,
                        from: Seq(from),
                    },
                )
            }
            Op::Reconnect { .. } | Op::Replay | Op::Restart | Op::Service { .. } => return None,
        })
    }

    /// The backend's write an [`Op::Service`] stands for.
    fn service_request(&mut self, what: u8, a: usize, b: usize, conv: usize, bad: u8) -> ServiceRequest {
        let s = |i: usize| StaffId::new(STAFF[i]).unwrap();
        self.client_ids += 1;
        let client_id = ClientMsgId::new(format!("s{}", self.client_ids)).unwrap();
        // A quarter of them break one rule each.
        let defect = bad.is_multiple_of(4).then_some(bad / 4 % 4);
        let title = if defect == Some(0) {
            String::new()
        } else {
            format!("notice {bad}")
        };
        // The attachment was uploaded by staff, not by the service.
        let attachments = if defect == Some(1) {
            vec![AttachmentId::new("a".repeat(64)).unwrap()]
        } else {
            Vec::new()
        };
        let body = if defect == Some(2) {
            "x".repeat(crate::limits::BODY_MAX_BYTES + 1)
        } else {
            format!("b{bad}")
        };
        match what % 5 {
            0 => ServiceRequest::PostNotice {
                client_id,
                conversation: self.conv(conv),
                title,
                body,
                attachments,
            },
            1 => ServiceRequest::CreateGroup {
                client_id,
                title,
                participants: (0..STAFF.len())
                    .filter(|i| !(b + i).is_multiple_of(3))
                    .map(s)
                    .collect(),
            },
            2 => ServiceRequest::AddParticipants {
                conversation: self.conv(conv),
                staff: vec![s(b)],
            },
            3 => ServiceRequest::RemoveParticipant {
                conversation: self.conv(conv),
                staff: s(a),
            },
            _ => {
                let post = if bad.is_multiple_of(2) {
                    DirectPost::Send {
                        // Someone outside the pair, now and then.
                        sender: s(if defect == Some(3) {
                            (a + 1) % STAFF.len()
                        } else {
                            a
                        }),
                        client_id,
                        body: if defect == Some(0) { String::new() } else { body },
                        attachments: Vec::new(),
                        reply_to: (defect == Some(1)).then(|| self.msg(conv)),
                    }
                } else {
                    DirectPost::Notice {
                        client_id,
                        title,
                        body,
                        attachments,
                    }
                };
                ServiceRequest::PostDirect {
                    between: [s(a), s(if defect == Some(3) { a } else { b })],
                    post,
                }
            }
        }
    }

    fn deliver(&mut self, applied: &Applied) {
        let frame = ServerFrame::Event(applied.event.clone());
        for key in &applied.recipients {
            let who = self.index_of(*key);
            let fx = self.stores[who].apply(frame.clone());
            assert!(
                fx.send.is_empty(),
                "store of {} asked for a snapshot after {:?}",
                self.staff[who],
                applied.event
            );
            for (k, update) in applied.changes.iter().filter(|(k, _)| k == key) {
                let _ = k;
                let fx = self.stores[who].apply(ServerFrame::UnreadUpdated(*update));
                assert_eq!(
                    fx.divergence, None,
                    "store of {} diverged after {:?}",
                    self.staff[who], applied.event
                );
            }
        }
        // Every count change goes to someone who received the event.
        for (k, _) in &applied.changes {
            assert!(
                applied.recipients.contains(k),
                "unread_updated for a non-recipient"
            );
        }
    }

    fn index_of(&self, key: crate::staff_keys::StaffKey) -> usize {
        let id = self.host.engine.projection().staff_id(key);
        self.staff.iter().position(|s| s == id).unwrap()
    }

    /// Runs one operation: a request through the engine (delivering its events and checkpoints
    /// to each recipient's store), a reconnect, or a replay. Panics on a broken invariant.
    pub fn step(&mut self, op: &Op) {
        match op {
            Op::Reconnect { who } => {
                let outbox = self.stores[*who].outbox().to_vec();
                let mut store = ChatStore::with_outbox(outbox);
                store.apply(ServerFrame::Snapshot(Box::new(
                    self.host.snapshot(&self.staff[*who]),
                )));
                self.stores[*who] = store;
                return;
            }
            Op::Restart => {
                self.restart();
                return;
            }
            Op::Replay => {
                if let Some(last) = self.last.clone() {
                    let before: Vec<_> = self.stores.iter().map(|s| s.summary(usize::MAX)).collect();
                    let frame = ServerFrame::Event(last.event.clone());
                    for key in &last.recipients {
                        let who = self.index_of(*key);
                        self.stores[who].apply(frame.clone());
                    }
                    let after: Vec<_> = self.stores.iter().map(|s| s.summary(usize::MAX)).collect();
                    assert_eq!(before, after, "a replayed event changed a store");
                }
                return;
            }
            _ => {}
        }
        if let Op::Service {
            what,
            a,
            b,
            conv,
            bad,
        } = *op
        {
            let request = self.service_request(what, a, b, conv, bad);
            self.clock += 1;
            let before = self.before();
            match self.host.execute_service(&request, Millis(self.clock)) {
                Err(_) => self.refused(&before, &format!("{request:?}")),
                Ok(outcome) => {
                    for applied in &outcome.applied {
                        self.observe(applied);
                    }
                    // (A notice into a group everyone has left reaches no store.)
                    if outcome.applied.iter().any(|a| !a.recipients.is_empty()) {
                        let after: Vec<_> = self.stores.iter().map(|s| s.summary(usize::MAX)).collect();
                        assert!(before.stores != after, "events of {request:?} changed no store");
                    }
                }
            }
            return;
        }
        let Some((who, request)) = self.request(op) else {
            return;
        };
        let author = self.staff[who].clone();
        self.clock += 1;
        let state = self.before();
        let before = state.stores.clone();
        // An edit or delete of a message no store has loaded (older than every snapshot's
        // recent messages, never paged in) shows nothing unless it changes a count.
        let may_change_nothing = match &request {
            // A change to a message no store has loaded changes no store.
            Request::EditMessage { message, .. }
            | Request::DeleteMessage { message }
            | Request::AddReaction { message, .. }
            | Request::RemoveReaction { message, .. } => !self.stores.iter().any(|s| holds(s, *message)),
            // A root's author leaving a thread before it started: it only starts the thread.
            Request::UnfollowThread { .. } => true,
            _ => false,
        };
        match self.host.execute(&author, &request, Millis(self.clock)) {
            Err(_) => self.refused(&state, &format!("{request:?}")),
            Ok(outcome) => {
                if matches!(
                    request,
                    Request::SendMessage { .. }
                        | Request::ForwardMessage { .. }
                        | Request::ReplyInThread { .. }
                ) {
                    self.sent.push((who, request.clone()));
                }
                for applied in &outcome.applied {
                    self.observe(applied);
                }
                self.oracle.accepted(&author, &request);
                if !outcome.applied.is_empty() && !may_change_nothing {
                    let after: Vec<_> = self.stores.iter().map(|s| s.summary(usize::MAX)).collect();
                    assert_ne!(before, after, "events of {request:?} changed no store");
                }
            }
        }
    }

    /// What a refusal must leave as it was: the engine's whole state (its checkpoint's bytes),
    /// the log, and every store.
    fn before(&self) -> Before {
        Before {
            engine: self.host.engine.clone(),
            log: self.log.len(),
            stores: self.stores.iter().map(|s| s.summary(usize::MAX)).collect(),
        }
    }

    /// Checks that a refused request changed nothing.
    fn refused(&self, before: &Before, request: &str) {
        assert!(
            self.host.engine.checkpoint() == before.engine.checkpoint(),
            "a refused request changed the engine: {request}"
        );
        assert_eq!(
            self.log.len(),
            before.log,
            "a refused request appended events: {request}"
        );
        let stores: Vec<_> = self.stores.iter().map(|s| s.summary(usize::MAX)).collect();
        assert_eq!(
            stores, before.stores,
            "a refused request changed a store: {request}"
        );
    }

    /// An accepted event: logged, counted by the oracle, delivered to its recipients' stores.
    fn observe(&mut self, applied: &Applied) {
        self.log.push(applied.event.clone());
        self.oracle.observe(&applied.event.event);
        match &applied.event.event {
            crate::Event::ConversationCreated { conversation, .. } => {
                self.conversations.push(conversation.id)
            }
            crate::Event::MessageCreated { message } => {
                self.messages.push(message.id);
                self.places.push((message.conversation, message.seq));
            }
            _ => {}
        }
        self.deliver(applied);
        self.last = Some(applied.clone());
    }

    /// Restarts the relay from a checkpoint of its engine, which must hold exactly the state
    /// of the running engine and of a replay of the whole log from offset 0 (compared by their
    /// checkpoints' bytes: encoding is deterministic). Later steps run on the restored engine.
    fn restart(&mut self) {
        let bytes = self.host.engine.checkpoint();
        let mut restored = crate::Engine::from_checkpoint(&bytes).expect("a checkpoint loads");
        let mut replayed = crate::Engine::new();
        for s in &self.directory {
            restored.upsert_staff(s.clone(), true);
            replayed.upsert_staff(s.clone(), true);
        }
        for e in &self.log {
            replayed.apply(e.clone());
        }
        assert!(
            restored.checkpoint() == bytes,
            "a restored engine differs from the one saved"
        );
        assert!(
            replayed.checkpoint() == bytes,
            "a replay from offset 0 differs from the running engine"
        );
        self.host.engine = restored;
    }

    /// Checks invariants 1, 2 and 7 for every staff member. Panics on a violation.
    pub fn check(&self) {
        let projection = self.host.engine.projection();
        for (i, staff) in self.staff.iter().enumerate() {
            let store = &self.stores[i];
            let mut list_sum = (0, 0);
            for item in store.conversation_list() {
                assert!(
                    self.oracle.is_member(staff, item.id),
                    "{staff} sees {} without being in it",
                    item.id
                );
                if !item.muted {
                    list_sum.0 += item.counts.unread;
                    list_sum.1 += item.counts.mentions;
                }
            }
            for t in store.thread_list() {
                if !t.muted {
                    list_sum.0 += t.counts.unread;
                    list_sum.1 += t.counts.mentions;
                }
            }
            // The Unreads inbox sums to the badge.
            let inbox: u32 = store.unreads().iter().map(|i| i.counts().unread).sum();
            assert_eq!(
                inbox,
                store.total().unread,
                "{staff}: the inbox does not sum to the badge"
            );
            // Invariant 2, in the browser: the total is the sum of what the lists show.
            assert_eq!(
                (store.total().unread, store.total().mentions),
                list_sum,
                "{staff}: total != sum of unmuted"
            );
            for (s, c) in self.oracle.memberships() {
                if &s != staff {
                    continue;
                }
                let expected = self.oracle.counts(staff, c);
                // Invariant 1: oracle == relay == browser.
                assert_eq!(
                    projection.counts(staff, c),
                    Some(expected),
                    "relay counts of {staff} in {c}"
                );
                assert_eq!(store.counts(c), expected, "browser counts of {staff} in {c}");
                assert_eq!(
                    store.last_read(c),
                    self.oracle.last_read(staff, c).unwrap(),
                    "watermark of {staff} in {c}"
                );
                assert!(store.conversation(c).is_some(), "{staff} does not see {c}");
            }
            // Threads: who follows what, each watermark and each count, in the relay and in
            // the browser.
            let followed = self.oracle.threads_of(staff);
            let relay_followed: Vec<_> = projection
                .threads_of(staff)
                .into_iter()
                .map(|(c, root, ..)| (c, root))
                .collect();
            assert_eq!(relay_followed, followed, "threads {staff} follows, in the relay");
            for (c, root) in followed {
                let expected = self.oracle.thread_counts(staff, c, root);
                assert_eq!(
                    projection.thread_counts(staff, c, root),
                    Some(expected),
                    "relay counts of {staff} in thread {c}/{root}"
                );
                assert_eq!(
                    store.thread_counts(c, root),
                    expected,
                    "browser counts of {staff} in thread {c}/{root}"
                );
                assert_eq!(
                    store.thread_last_read(c, root),
                    self.oracle.thread_last_read(staff, c, root),
                    "thread watermark of {staff} in {c}/{root}"
                );
            }
            assert_eq!(
                store.thread_list().len(),
                self.oracle.threads_of(staff).len(),
                "threads {staff} follows, in the browser"
            );
            assert_eq!(
                projection.total(staff),
                self.oracle.total(staff),
                "relay total of {staff}"
            );
            assert_eq!(
                store.total(),
                self.oracle.total(staff),
                "browser total of {staff}"
            );
            // The digest, kept incrementally by the relay and by the browser, equals one computed
            // from scratch.
            let digest = self.oracle.digest(staff);
            assert_eq!(projection.digest(staff), digest, "relay digest of {staff}");
            assert_eq!(store.digest(), digest, "browser digest of {staff}");
            assert_eq!(store.divergences(), 0);
            // Invariant 7: snapshot + events == fresh snapshot.
            let mut fresh = ChatStore::new();
            fresh.apply(ServerFrame::Snapshot(Box::new(self.host.snapshot(staff))));
            let (mut ours, mut theirs) = (store.summary(50), fresh.summary(50));
            // A store keeps what it has loaded; a snapshot carries a window. Compare the
            // messages both hold (the newest ones).
            for (a, b) in ours.conversations.iter_mut().zip(theirs.conversations.iter_mut()) {
                let common = a.messages.len().min(b.messages.len());
                a.messages.drain(..a.messages.len() - common);
                b.messages.drain(..b.messages.len() - common);
            }
            assert_eq!(ours, theirs, "{staff}: store != fresh snapshot");
        }
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}
