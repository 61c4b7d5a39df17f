//! The demo: a handful of staff and conversations with history, seeded once.

use tally_shared::{ClientMsgId, Request, Staff, StaffId};

use crate::core::Core;

/// The demo staff: (id, name).
pub const STAFF: [(&str, &str); 5] = [
    ("alice", "Alice Martin"),
    ("bob", "Bob Chen"),
    ("carol", "Carol Diaz"),
    ("dan", "Dan Okafor"),
    ("erin", "Erin Walsh"),
];

/// How long a demo sign-in's token lasts.
pub const TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(8 * 3600);

/// Whether a staff id is one of the demo's: the picker mints tokens for these only.
pub fn is_demo_staff(staff: &StaffId) -> bool {
    STAFF.iter().any(|(id, _)| *id == staff.as_str())
}

fn id(s: &str) -> StaffId {
    StaffId::new(s).expect("demo ids are valid")
}

/// Adds the demo staff (idempotent) and, on an empty log, conversations with history.
pub fn seed(core: &mut Core) -> anyhow::Result<()> {
    for (sid, name) in STAFF {
        core.add_staff(Staff {
            id: id(sid),
            name: name.into(),
        })?;
    }
    if core.engine().offset().0 > 0 {
        return Ok(());
    }
    let mut n = 0;
    let mut say = |core: &mut Core, who: &str, conversation: u64, body: &str| -> anyhow::Result<()> {
        n += 1;
        core.execute_local(
            &id(who),
            Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id: ClientMsgId::new(format!("demo-{n}"))?,
                conversation: tally_shared::ConversationId(conversation),
                body: body.into(),
                attachments: vec![],
                reply_to: None,
            },
        )
    };
    core.execute_local(&id("alice"), Request::CreateDirect { staff: id("bob") })?; // 1
    core.execute_local(
        &id("carol"),
        Request::CreateGroup {
            client_id: ClientMsgId::new("demo-front-desk")?,
            title: "Front desk".into(),
            participants: vec![id("alice"), id("bob"), id("dan")],
        },
    )?; // 2
    core.execute_local(&id("dan"), Request::CreateDirect { staff: id("alice") })?; // 3
    say(core, "bob", 1, "Morning! Did the courier come by yet?")?;
    say(
        core,
        "alice",
        1,
        "Not yet, I'll ping you when the parcel is here.",
    )?;
    say(
        core,
        "carol",
        2,
        "Reminder: fire drill at 11:00, please guide visitors to the car park.",
    )?;
    say(core, "dan", 2, "Got it. @alice can you cover reception at 10:45?")?;
    say(core, "bob", 2, "I'll take the east stairs.")?;
    say(
        core,
        "dan",
        3,
        "Could you sign the visitor log when you have a minute?",
    )?;
    // Threads: under the fire drill notice in the front desk group (Alice is mentioned in it,
    // so she follows), and a busy operations group where a thread under Alice's message has
    // replies she has not read.
    let mut reply =
        |core: &mut Core, who: &str, conversation: u64, root: u64, body: &str| -> anyhow::Result<()> {
            n += 1;
            core.execute_local(
                &id(who),
                Request::ReplyInThread {
                    mention_ranges: Vec::new(),
                    client_id: ClientMsgId::new(format!("demo-{n}"))?,
                    conversation: tally_shared::ConversationId(conversation),
                    thread: tally_shared::Seq(root),
                    body: body.into(),
                    attachments: vec![],
                },
            )
        };
    reply(
        core,
        "dan",
        2,
        2,
        "Do we print the visitor list for the roll call?",
    )?;
    reply(core, "carol", 2, 2, "Yes please, @alice has the printer key.")?;
    core.execute_local(
        &id("dan"),
        Request::CreateGroup {
            client_id: ClientMsgId::new("demo-operations")?,
            title: "Operations".into(),
            participants: vec![id("alice"), id("bob"), id("carol")],
        },
    )?; // 4
    let mut n = 100;
    let mut post = |core: &mut Core, who: &str, body: &str| -> anyhow::Result<()> {
        n += 1;
        core.execute_local(
            &id(who),
            Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id: ClientMsgId::new(format!("demo-{n}"))?,
                conversation: tally_shared::ConversationId(4),
                body: body.into(),
                attachments: vec![],
                reply_to: None,
            },
        )
    };
    post(core, "dan", "Delivery slots for next week are up on the board.")?;
    post(core, "alice", "Inventory count moves to Thursday, 8:00.")?; // 3
    post(core, "carol", "The lift on the north side is out until Monday.")?;
    post(
        core,
        "bob",
        "Parking permits for the contractors are at reception.",
    )?;
    // Alice has read the operations group; its thread's replies are what is new for her.
    core.execute_local(
        &id("alice"),
        Request::MarkConversationRead {
            conversation: tally_shared::ConversationId(4),
        },
    )?;
    reply(core, "bob", 4, 3, "Thursday works. Do we count the basement too?")?;
    reply(core, "carol", 4, 3, "Basement is done, I did it on Monday.")?;
    reply(core, "dan", 4, 3, "I'll bring the scanners.")?;
    // How staff talk: a formatted message in the front desk group that mentions Alice and Bob
    // by name (as the picker sends it), and reactions on it.
    let plan = core.engine().next_ids().1;
    let body = "**Fire drill** moved to `11:30`:\n- east stairs: @Bob Chen\n- car park: @Alice Martin";
    let at = |name: &str| {
        let start = body[..body.find(name).expect("in the text")].chars().count() as u32;
        (start, start + name.chars().count() as u32)
    };
    let range = |name: &str, staff: &str| {
        let (start, end) = at(name);
        tally_shared::mentions::MentionRange {
            start,
            end,
            staff: Some(id(staff)),
        }
    };
    core.execute_local(
        &id("carol"),
        Request::SendMessage {
            mention_ranges: vec![range("@Bob Chen", "bob"), range("@Alice Martin", "alice")],
            client_id: ClientMsgId::new("demo-formatted")?,
            conversation: tally_shared::ConversationId(2),
            body: body.into(),
            attachments: vec![],
            reply_to: None,
        },
    )?;
    for (who, emoji) in [("dan", "👍"), ("bob", "👍"), ("dan", "✅")] {
        core.execute_local(
            &id(who),
            Request::AddReaction {
                message: plan,
                emoji: emoji.into(),
            },
        )?;
    }
    Ok(())
}
