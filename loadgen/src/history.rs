//! Large histories, written straight into a data directory: the engine decides every event (as
//! the relay would), and they are appended with the relay's own storage code, in big
//! transactions, without a socket in between. Then a checkpoint is written, as a relay that had
//! lived through that history would have one.
//!
//! The world: `staff` staff, four direct conversations per person on average and one group of
//! 5 to 50 per 10 people; 80% of messages in direct conversations. Messages carry client ids,
//! 3% are replies, 4% of group messages mention someone; 0.5% are edited and 0.3% deleted by
//! their sender right after. After each message, another member reads the conversation 30% of
//! the time, and at the end 90% of memberships are read to their end: most history is read.
//! Time runs evenly over the year before now.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tally_relay::storage::{self, Durability};
use tally_shared::protocol::{Event, encode};
use tally_shared::{
    Attachment, AttachmentId, ClientMsgId, ConversationId, Engine, Lookup, Message, MessageId, Millis,
    Request, Staff, StaffId,
};

use crate::target::staff_id;

/// What was generated, saved beside the database as `history.json` so a run can reuse it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Generated {
    pub(crate) staff: usize,
    pub(crate) messages: u64,
    pub(crate) events: u64,
    /// Each conversation's members by staff index; conversation `i` has id `i + 1`.
    pub(crate) plan: Vec<Vec<usize>>,
    pub(crate) seconds: f64,
    pub(crate) database_bytes: u64,
    pub(crate) checkpoint_bytes: u64,
}

impl Generated {
    pub(crate) fn load(data: &Path) -> Option<Generated> {
        serde_json::from_slice(&std::fs::read(data.join("history.json")).ok()?).ok()
    }
}

/// The newest messages, for the edits, deletes and replies that target them (a history of
/// millions cannot be kept in memory, and people change what they just wrote).
struct Recent {
    messages: FxHashMap<MessageId, Message>,
    order: VecDeque<MessageId>,
}

impl Recent {
    const KEEP: usize = 4096;

    fn keep(&mut self, event: &Event) {
        match event {
            Event::MessageCreated { message } => {
                self.messages.insert(message.id, message.clone());
                self.order.push_back(message.id);
                if self.order.len() > Self::KEEP
                    && let Some(old) = self.order.pop_front()
                {
                    self.messages.remove(&old);
                }
            }
            Event::MessageEdited { message, .. }
            | Event::ReactionChanged { message, .. }
            | Event::MessageDeleted { message, .. } => {
                if let Some(m) = self.messages.get_mut(message) {
                    event.change_message(m);
                }
            }
            _ => {}
        }
    }
}

impl Lookup for Recent {
    fn message(&self, id: MessageId) -> Result<Option<Message>, tally_shared::engine::LookupFailed> {
        Ok(self.messages.get(&id).cloned())
    }

    fn message_at(
        &self,
        conversation: tally_shared::ConversationId,
        seq: tally_shared::Seq,
    ) -> Result<Option<Message>, tally_shared::engine::LookupFailed> {
        // The generator makes no threads; a scan of what it keeps answers the rare ask.
        Ok(self
            .messages
            .values()
            .find(|m| m.conversation == conversation && m.seq == seq)
            .cloned())
    }

    fn attachment(
        &self,
        _: &AttachmentId,
        _: &StaffId,
    ) -> Result<Option<Attachment>, tally_shared::engine::LookupFailed> {
        Ok(None)
    }
}

const WORDS: &[&str] = &[
    "the", "invoice", "shift", "client", "meeting", "tomorrow", "ok", "thanks", "can", "you", "check",
    "order", "delivery", "is", "late", "please", "call", "back", "room", "4", "done", "on", "it", "lunch",
    "at", "noon", "report", "ready", "for", "review", "who", "has", "the", "keys", "sure", "later",
];

fn body(rng: &mut StdRng, mention: Option<&StaffId>) -> String {
    let n = rng.random_range(2..30);
    let mut out = String::new();
    if let Some(m) = mention {
        out.push('@');
        out.push_str(m.as_str());
    }
    for _ in 0..n {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    out
}

/// The conversations: `4 * staff / 2` direct pairs and `staff / 10` groups of 5 to 50.
fn plan(staff: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut pairs = std::collections::HashSet::new();
    while out.len() < staff * 2 {
        let (a, b) = (rng.random_range(0..staff), rng.random_range(0..staff));
        if a != b && pairs.insert((a.min(b), a.max(b))) {
            out.push(vec![a, b]);
        }
    }
    for _ in 0..(staff / 10).max(1) {
        let size = rng.random_range(5..=50.min(staff));
        let members: Vec<usize> = rand::seq::index::sample(rng, staff, size).into_vec();
        out.push(members);
    }
    out
}

/// The engine and what it appends.
struct Writer {
    engine: Engine,
    recent: Recent,
    ids: Vec<StaffId>,
    events: u64,
    in_tx: usize,
}

impl Writer {
    /// Executes a request as staff member `who` at `at` and appends its events; its ack, or
    /// `None` when the engine refused it (a generator's request may be pointless).
    fn run(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        who: usize,
        request: Request,
        at: u64,
    ) -> anyhow::Result<Option<tally_shared::protocol::Ack>> {
        // The generator makes writes only; anything else is one of its pointless requests.
        let tally_shared::Routed::Log(write) = request.into_route() else {
            return Ok(None);
        };
        let Ok(outcome) = self
            .engine
            .execute(&self.ids[who], write.request(), Millis(at), &self.recent)
        else {
            return Ok(None);
        };
        for a in &outcome.applied {
            storage::append(tx, &a.event, &encode(&a.event))?;
            self.recent.keep(&a.event.event);
            self.events += 1;
            self.in_tx += 1;
        }
        Ok(Some(outcome.ack))
    }
}

/// Writes `messages` messages of history for `staff` staff into a fresh data directory.
pub(crate) fn generate(data: &Path, staff: usize, messages: u64, seed: u64) -> anyhow::Result<Generated> {
    anyhow::ensure!(
        !storage::database(data).exists(),
        "{} has a database already",
        data.display()
    );
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conn = storage::open(data, Durability::Normal)?;
    // A generator that crashes starts over: no journal, no syncs, a large cache.
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -512 * 1024)?;
    let mut engine = Engine::new();
    let ids: Vec<StaffId> = (0..staff).map(staff_id).collect();
    {
        let tx = conn.transaction()?;
        for (i, id) in ids.iter().enumerate() {
            let member = Staff {
                id: id.clone(),
                name: format!("Staff {i}"),
            };
            storage::upsert_staff(&tx, &member)?;
            engine.upsert_staff(member, true);
        }
        tx.commit()?;
    }
    let plan = plan(staff, &mut rng);
    let groups_from = staff * 2;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let year = 365 * 24 * 3600 * 1000u64;
    let recent = Recent {
        messages: FxHashMap::default(),
        order: VecDeque::new(),
    };
    let mut last_in: Vec<Option<MessageId>> = vec![None; plan.len()];
    let mut tx = conn.transaction()?;
    let mut w = Writer {
        engine,
        recent,
        ids: ids.clone(),
        events: 0,
        in_tx: 0,
    };
    let start = now - year;
    for (i, members) in plan.iter().enumerate() {
        let request = if members.len() == 2 {
            Request::CreateDirect {
                staff: ids[members[1]].clone(),
            }
        } else {
            Request::CreateGroup {
                client_id: ClientMsgId::new(format!("g{i}"))?,
                title: format!("Group {i}"),
                participants: members[1..].iter().map(|m| ids[*m].clone()).collect(),
            }
        };
        let ack = w.run(&tx, members[0], request, start)?;
        anyhow::ensure!(
            ack.and_then(|a| a.conversation) == Some(ConversationId(i as u64 + 1)),
            "conversation {i} was not created in order"
        );
    }
    for n in 0..messages {
        let at = start + n * year / messages.max(1);
        let c = if rng.random_bool(0.8) || groups_from == plan.len() {
            rng.random_range(0..groups_from)
        } else {
            rng.random_range(groups_from..plan.len())
        };
        let members = &plan[c];
        let conversation = ConversationId(c as u64 + 1);
        let sender = members[rng.random_range(0..members.len())];
        let mention = (members.len() > 2 && rng.random_bool(0.04))
            .then(|| &ids[members[rng.random_range(0..members.len())]])
            .filter(|m| **m != ids[sender]);
        let reply_to = last_in[c].filter(|_| rng.random_bool(0.03));
        let send = Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: ClientMsgId::new(format!("h{n}"))?,
            conversation,
            body: body(&mut rng, mention),
            attachments: Vec::new(),
            reply_to,
        };
        let Some(ack) = w.run(&tx, sender, send, at)? else {
            continue;
        };
        let message = ack.message.expect("a send names its message");
        last_in[c] = Some(message);
        let roll: f64 = rng.random();
        if roll < 0.005 {
            let edit = Request::EditMessage {
                mention_ranges: Vec::new(),
                message,
                body: body(&mut rng, None),
            };
            w.run(&tx, sender, edit, at)?;
        } else if roll < 0.008 {
            w.run(&tx, sender, Request::DeleteMessage { message }, at)?;
            last_in[c] = None;
        }
        if rng.random_bool(0.3) {
            let reader = members[rng.random_range(0..members.len())];
            w.run(&tx, reader, Request::MarkConversationRead { conversation }, at)?;
        }
        if w.in_tx >= 50_000 {
            tx.commit()?;
            tx = conn.transaction()?;
            w.in_tx = 0;
        }
        if n % 1_000_000 == 999_999 {
            eprintln!(
                "  {} messages, {} events, {:.0} s",
                n + 1,
                w.events,
                started.elapsed().as_secs_f64()
            );
        }
    }
    for (c, members) in plan.iter().enumerate() {
        for m in members {
            if rng.random_bool(0.9) {
                let conversation = ConversationId(c as u64 + 1);
                w.run(&tx, *m, Request::MarkConversationRead { conversation }, now)?;
            }
        }
    }
    tx.commit()?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let log = storage::log_id(&conn)?;
    drop(conn);
    let (_, checkpoint_bytes) = tally_relay::checkpoints::write(data, &log, &w.engine)?;
    let generated = Generated {
        staff,
        messages,
        events: w.events,
        plan,
        seconds: started.elapsed().as_secs_f64(),
        database_bytes: std::fs::metadata(storage::database(data))?.len(),
        checkpoint_bytes: checkpoint_bytes as u64,
    };
    std::fs::write(data.join("history.json"), serde_json::to_vec(&generated)?)?;
    Ok(generated)
}
