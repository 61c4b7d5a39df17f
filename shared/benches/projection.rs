//! Events applied per second by the relay's projection and the browser's store, after 1k,
//! 100k and 1M events of history: the cost of one event must not grow with history.
//!
//! `cargo bench -p tally-shared --bench projection`

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tally_shared::protocol::{ConversationState, LoggedEvent, ServerFrame, Snapshot};
use tally_shared::unread::CountChange;
use tally_shared::{
    ChatStore, Conversation, ConversationId, ConversationKind, Counts, Event, Message, MessageId, Millis,
    Offset, Seq, StaffId, Totals, Tracking, UnreadProjection,
};

const CONVERSATIONS: u64 = 100;
const HISTORY: [u64; 3] = [1_000, 100_000, 1_000_000];

fn staff(i: u64) -> StaffId {
    StaffId::new(format!("s{i}")).unwrap()
}

fn conversation(c: u64) -> Conversation {
    Conversation {
        everyone_off: false,
        id: ConversationId(c),
        kind: ConversationKind::Direct,
        title: None,
        participants: vec![staff(0), staff(c)],
        created_by: staff(0),
        created_at: Millis(0),
    }
}

/// The n-th message: round robin over the conversations, alternating senders.
fn message(n: u64) -> Event {
    let c = 1 + n % CONVERSATIONS;
    let seq = n / CONVERSATIONS + 1;
    Event::MessageCreated {
        message: Message {
            reactions: Vec::new(),
            mention_ranges: Vec::new(),
            id: MessageId(n + 1),
            conversation: ConversationId(c),
            seq: Seq(seq),
            sender: if seq.is_multiple_of(3) { staff(0) } else { staff(c) },
            body: String::new(),
            mentions: vec![],
            attachments: vec![],
            reply_to: None,
            forwarded_from: None,
            thread: None,
            notice: None,
            client_id: None,
            created_at: Millis(n),
            edited_at: None,
            deleted: false,
        },
    }
}

/// The n-th message as a reply in the thread under its conversation's first message.
fn reply(n: u64) -> Event {
    let mut e = message(n);
    if let Event::MessageCreated { message } = &mut e {
        message.thread = Some(Seq(1));
    }
    e
}

fn projection_with_history(history: u64) -> UnreadProjection {
    let mut p = UnreadProjection::new(Tracking::Everyone);
    let mut sink = Vec::new();
    for c in 1..=CONVERSATIONS {
        p.apply(
            &Event::ConversationCreated {
                conversation: conversation(c),
                client_id: None,
            },
            &mut sink,
        )
        .unwrap();
    }
    for n in 0..history {
        p.apply(&message(n), &mut sink).unwrap();
        sink.clear();
    }
    p
}

fn store_with_history(history: u64) -> ChatStore {
    let me = staff(0);
    let mut store = ChatStore::new();
    let conversations = (1..=CONVERSATIONS)
        .map(|c| ConversationState {
            threads: Vec::new(),
            conversation: conversation(c),
            head: Seq(0),
            last_read: Seq(0),
            muted: false,
            counts: Counts::default(),
            last_activity: Millis(0),
            messages: vec![],
        })
        .collect();
    let snapshot = Snapshot {
        offset: Offset(0),
        me,
        staff: vec![],
        conversations,
        total: Totals::default(),
        protocols: None,
    };
    store.apply(ServerFrame::Snapshot(Box::new(snapshot)));
    for n in 0..history {
        store.apply(ServerFrame::Event(LoggedEvent {
            offset: Offset(n + 1),
            event: message(n),
        }));
    }
    store
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("projection/message_created");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for history in HISTORY {
        let mut p = projection_with_history(history);
        let mut next = history;
        g.bench_function(BenchmarkId::from_parameter(history), |b| {
            b.iter_custom(|iters| {
                let events: Vec<Event> = (next..next + iters).map(message).collect();
                next += iters;
                let mut changes: Vec<CountChange> = Vec::with_capacity(4);
                let start = Instant::now();
                for e in &events {
                    p.apply(e, &mut changes).unwrap();
                    changes.clear();
                }
                start.elapsed()
            })
        });
    }
    g.finish();

    // Replies in one thread per conversation (under its first message), which one participant
    // follows: the thread's indexes and followers instead of the conversation's.
    let mut g = c.benchmark_group("projection/reply_created");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for history in HISTORY {
        let mut p = projection_with_history(history);
        let mut sink = Vec::new();
        for c in 1..=CONVERSATIONS {
            let follow = Event::ThreadFollowed {
                conversation: ConversationId(c),
                thread: Seq(1),
                staff: staff(0),
                following: true,
                last_read: Seq(1),
            };
            p.apply(&follow, &mut sink).unwrap();
        }
        let mut next = history;
        g.bench_function(BenchmarkId::from_parameter(history), |b| {
            b.iter_custom(|iters| {
                let events: Vec<Event> = (next..next + iters).map(reply).collect();
                next += iters;
                let mut changes: Vec<CountChange> = Vec::with_capacity(4);
                let start = Instant::now();
                for e in &events {
                    p.apply(e, &mut changes).unwrap();
                    changes.clear();
                }
                start.elapsed()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("projection/mark_read_and_unread");
    g.throughput(Throughput::Elements(2))
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for history in HISTORY {
        let mut p = projection_with_history(history);
        let head = history / CONVERSATIONS;
        g.bench_function(BenchmarkId::from_parameter(history), |b| {
            let mut changes = Vec::new();
            let mut i = 0u64;
            b.iter(|| {
                // Mark unread from a random-ish point, then read to the middle: two recounts.
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let from = 1 + (i >> 33) % head;
                let c = ConversationId(1 + (i >> 20) % CONVERSATIONS);
                p.apply(
                    &Event::MarkedUnread {
                        conversation: c,
                        staff: staff(0),
                        last_read: Seq(from - 1),
                    },
                    &mut changes,
                )
                .unwrap();
                p.apply(
                    &Event::MessagesRead {
                        conversation: c,
                        staff: staff(0),
                        last_read: Seq((from + head) / 2),
                    },
                    &mut changes,
                )
                .unwrap();
                changes.clear();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("store/message_created");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for history in HISTORY {
        let mut store = store_with_history(history);
        let mut next = history;
        g.bench_function(BenchmarkId::from_parameter(history), |b| {
            b.iter_custom(|iters| {
                let frames: Vec<ServerFrame> = (next..next + iters)
                    .map(|n| {
                        ServerFrame::Event(LoggedEvent {
                            offset: Offset(n + 1),
                            event: message(n),
                        })
                    })
                    .collect();
                next += iters;
                let start = Instant::now();
                for f in frames {
                    store.apply(f);
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

/// Formatting: what rendering a message costs (the widget parses each row it draws; the relay
/// parses a text for its search index only when it holds a link, an entity or an escape).
fn markup(c: &mut Criterion) {
    let texts = [
        (
            "plain",
            "Morning! Did the courier come by yet? I'll be at the front desk until noon.",
        ),
        (
            "formatted",
            "**Fire drill** moved to `11:30`:\n- east stairs: @Bob Chen\n- car park: @Alice Martin\n> bring the visitor log\nsee [the plan](https://wiki.acme.test/drill)",
        ),
    ];
    let mut g = c.benchmark_group("markup/parse");
    g.sample_size(30).measurement_time(Duration::from_secs(2));
    for (name, text) in texts {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| tally_shared::markup::parse(std::hint::black_box(text), &[]))
        });
    }
    let long = "A line of a long message, with *some* `code` and a https://x.test/link.\n".repeat(110);
    g.throughput(Throughput::Bytes(long.len() as u64));
    g.bench_function("8KiB", |b| {
        b.iter(|| tally_shared::markup::parse(std::hint::black_box(&long), &[]))
    });
    g.finish();
}

/// One person's conversations (what each connect and presence change asks for) in a company:
/// 5,000 staff, 10,000 direct conversations and 500 groups of 20, as `tally-loadgen history`
/// makes them; and ten times that.
fn conversations_of(c: &mut Criterion) {
    let mut g = c.benchmark_group("projection/conversations_of");
    g.sample_size(30).measurement_time(Duration::from_secs(2));
    for scale in [1u64, 10] {
        let staff_n = 5_000 * scale;
        let mut p = UnreadProjection::new(Tracking::Everyone);
        let mut changes = Vec::new();
        let mut id = 0;
        let mut create = |p: &mut UnreadProjection, participants: Vec<StaffId>| {
            id += 1;
            let event = Event::ConversationCreated {
                conversation: Conversation {
                    everyone_off: false,
                    id: ConversationId(id),
                    kind: ConversationKind::Group,
                    title: None,
                    created_by: participants[0].clone(),
                    participants,
                    created_at: Millis(0),
                },
                client_id: None,
            };
            p.apply(&event, &mut changes).unwrap();
        };
        for i in 0..2 * staff_n {
            create(&mut p, vec![staff(i % staff_n), staff((i * 7 + 1) % staff_n)]);
        }
        for i in 0..staff_n / 10 {
            create(&mut p, (0..20).map(|j| staff((i * 20 + j) % staff_n)).collect());
        }
        let who = staff(42);
        g.bench_function(
            BenchmarkId::from_parameter(format!("{}k staff", staff_n / 1000)),
            |b| b.iter(|| p.conversations_of(std::hint::black_box(&who))),
        );
    }
    g.finish();
}

criterion_group!(benches, bench, markup, conversations_of);
criterion_main!(benches);
