//! Full-text search over the messages a staff member can read.
//!
//! The index is behind [`TextSearch`]: SQLite answers it with an FTS5 table (`message_text`,
//! contentless, one row per live message with text, kept in step by `storage::append` in the
//! transaction of the event that changed it); a PostgreSQL store answers it with a `tsvector`
//! column and a GIN index (cluster mode). Either way the scope is decided before the query,
//! by the core: the conversations the searcher is in now, nothing else.
//!
//! Queries run in a [`Searcher`] of their own, off the core and off the read pool that builds
//! snapshots and history pages, with a deadline each and a bounded queue: however many
//! searches people send, snapshots and history are not kept waiting.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use rusqlite::{Connection, params};
use tally_shared::{ConversationId, Message, MessageId, StaffId};

/// The most words a query may have.
pub const MAX_TERMS: usize = 8;
/// The longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 200;
/// The most results in one page.
pub const MAX_RESULTS: u64 = 50;

/// One word of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// Lowercased letters and digits.
    pub word: String,
    /// Typed with a trailing `*`: matches any word it begins.
    pub prefix: bool,
}

/// A checked query: what to look for, where, and which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The words, all of which a message must have.
    pub terms: Vec<Term>,
    /// The conversations to look in (the searcher's).
    pub conversations: Vec<ConversationId>,
    /// Only messages older than this one (the next page).
    pub before: Option<MessageId>,
    /// At most this many results, newest first.
    pub limit: u64,
}

/// Why a query was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// Nothing to look for (or only one letter), or a `*` after fewer than 3 letters.
    TooShort,
    /// Longer than [`MAX_QUERY_BYTES`] or more than [`MAX_TERMS`] words.
    TooLong,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueryError::TooShort => "search for at least two letters, and put * only after three",
            QueryError::TooLong => "a search has at most 8 words and 200 bytes",
        })
    }
}

/// The fewest letters before a `*`: a shorter prefix matches too much to be worth its cost.
pub const MIN_PREFIX: usize = 3;

/// Splits what a person typed into words: anything that is not a letter or a digit
/// separates them (as the index's tokenizer does), so nothing is syntax but a `*` right after
/// a word, which makes it match the words it begins. A start of 3 to 8 letters has an index of
/// its own (schema 9), so it streams as a whole word does (under a millisecond on a million
/// messages); a longer one merges the list of every word it begins first (linear in the
/// messages that match; `docs/benchmarks.md`).
pub fn terms(text: &str) -> Result<Vec<Term>, QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(QueryError::TooLong);
    }
    let mut terms = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if !c.is_alphanumeric() {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, c)) = chars.peek().filter(|(_, c)| c.is_alphanumeric()) {
            end = i + c.len_utf8();
            chars.next();
        }
        let prefix = chars.peek().is_some_and(|(_, c)| *c == '*');
        let word = text[start..end].to_lowercase();
        if prefix && word.chars().count() < MIN_PREFIX {
            return Err(QueryError::TooShort);
        }
        terms.push(Term { word, prefix });
    }
    if terms.len() > MAX_TERMS {
        return Err(QueryError::TooLong);
    }
    if terms.iter().map(|t| t.word.chars().count()).sum::<usize>() < 2 {
        return Err(QueryError::TooShort);
    }
    Ok(terms)
}

/// The token that says which conversation an indexed message is in (its `scope` column).
pub fn scope_token(conversation: ConversationId) -> String {
    format!("tallyin{}", conversation.0)
}

/// The FTS5 query for some words in some conversations: a message must have every word, and be
/// in one of them. Words hold only letters and digits: quoting is all the escaping they need.
/// The scope is part of the index's own query, so a word found in a million messages costs
/// only the ones in the searcher's conversations, not a walk through all of them.
pub fn fts5_query(terms: &[Term], conversations: &[ConversationId]) -> String {
    let words = terms
        .iter()
        .map(|t| format!("\"{}\"{}", t.word, if t.prefix { "*" } else { "" }))
        .collect::<Vec<_>>()
        .join(" ");
    let scope = conversations
        .iter()
        .map(|c| scope_token(*c))
        .collect::<Vec<_>>()
        .join(" OR ");
    format!("({words}) AND ({scope})")
}

/// A page of results.
#[derive(Debug, Default)]
pub struct Found {
    /// The live messages that match, newest first.
    pub messages: Vec<Message>,
    /// Whether more may follow the last one (the page is full in results or in bytes).
    pub more: bool,
}

/// A full-text index of messages.
pub trait TextSearch {
    /// The live messages that match, newest first, at most the query's limit and
    /// [`limits::PAGE_MAX_BYTES`](tally_shared::limits::PAGE_MAX_BYTES) of them (at least one).
    fn search(&self, query: &SearchQuery) -> anyhow::Result<Found>;
}

impl TextSearch for Connection {
    fn search(&self, q: &SearchQuery) -> anyhow::Result<Found> {
        if q.conversations.is_empty() || q.terms.is_empty() {
            return Ok(Found::default());
        }
        let scope = serde_json::to_string(&q.conversations)?;
        let before = q.before.map_or(i64::MAX, |m| m.0 as i64);
        // The scope is in the FTS query; checked again on the row, so the answer never depends
        // on the index alone.
        let mut stmt = self.prepare_cached(
            "SELECT m.id, m.conversation, m.seq, m.payload FROM message_text t JOIN messages m ON m.id = t.rowid
             WHERE message_text MATCH ?1 AND t.rowid < ?2
               AND m.conversation IN (SELECT value FROM json_each(?3))
             ORDER BY t.rowid DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                fts5_query(&q.terms, &q.conversations),
                before,
                scope,
                q.limit.min(MAX_RESULTS) as i64
            ],
            |r| crate::packed::message_json(r, 0),
        )?;
        let limit = q.limit.min(MAX_RESULTS) as usize;
        let mut found = Found::default();
        let mut bytes = 0;
        for payload in rows {
            let payload = payload?;
            bytes += payload.len();
            if !found.messages.is_empty() && bytes > tally_shared::limits::PAGE_MAX_BYTES {
                found.more = true;
                break;
            }
            found.messages.push(serde_json::from_str(&payload)?);
        }
        found.more |= found.messages.len() >= limit;
        Ok(found)
    }
}

/// How long one search may take, from its arrival (waiting included) to its answer.
pub const DEADLINE: Duration = Duration::from_secs(1);
/// Searches that may wait for a connection; more are refused as busy.
pub const MAX_WAITING: usize = 16;
/// Searches one person may have waiting or running at once; more are refused as busy, so one
/// person's burst cannot fill the queue that everyone shares.
pub const PER_PERSON: usize = 2;

/// Why a search gave no results.
#[derive(Debug)]
pub enum SearchError {
    /// Too many searches are waiting already (everyone's, or this person's), or it waited
    /// until its deadline.
    Busy,
    /// It ran past [`DEADLINE`] (a `*` prefix on a very common start).
    TooSlow,
    /// The index cannot take a word: SQLite's tokenizer knows Unicode 6.1, so a letter that
    /// came later splits a word in two, which FTS5 then reads as a phrase it cannot search
    /// without positions.
    Unsearchable,
    /// Something else failed.
    Failed(anyhow::Error),
}

/// A few read-only connections that only searches use.
#[derive(Debug)]
pub struct Searcher {
    idle: Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
    waiting: AtomicUsize,
    /// Searches in the searcher (waiting or running), per person.
    by_person: Mutex<std::collections::HashMap<StaffId, usize>>,
    deadline: Duration,
}

/// A person's place in the searcher, given back when their search ends.
struct Place<'a> {
    searcher: &'a Searcher,
    staff: StaffId,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut by = self.searcher.by_person.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by.get_mut(&self.staff) {
            *n -= 1;
            if *n == 0 {
                by.remove(&self.staff);
            }
        }
    }
}

impl Searcher {
    /// A searcher on these (read-only) connections, as many searches at once.
    pub fn new(connections: Vec<Connection>) -> Searcher {
        assert!(!connections.is_empty(), "a searcher needs a connection");
        Searcher::with(connections, DEADLINE)
    }

    fn with(idle: Vec<Connection>, deadline: Duration) -> Searcher {
        Searcher {
            permits: tokio::sync::Semaphore::new(idle.len()),
            idle: Mutex::new(idle),
            waiting: AtomicUsize::new(0),
            by_person: Mutex::default(),
            deadline,
        }
    }

    /// Runs `staff`'s search on one of the connections, within the deadline.
    pub async fn search(&self, staff: &StaffId, query: SearchQuery) -> Result<Found, SearchError> {
        self.run(staff, move |conn| conn.search(&query)).await
    }

    /// A place for one more search of `staff`'s, if they have fewer than [`PER_PERSON`].
    fn place(&self, staff: &StaffId) -> Option<Place<'_>> {
        let mut by = self.by_person.lock().unwrap_or_else(|p| p.into_inner());
        let n = by.entry(staff.clone()).or_default();
        if *n >= PER_PERSON {
            return None;
        }
        *n += 1;
        Some(Place {
            searcher: self,
            staff: staff.clone(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        staff: &StaffId,
        work: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, SearchError> {
        let arrived = tokio::time::Instant::now();
        let _place = self.place(staff).ok_or(SearchError::Busy)?;
        if self.waiting.fetch_add(1, Relaxed) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Relaxed);
            return Err(SearchError::Busy);
        }
        // The deadline counts from arrival: a search that waited its whole second is answered
        // as busy, not run late.
        let permit = tokio::time::timeout_at(arrived + self.deadline, self.permits.acquire()).await;
        self.waiting.fetch_sub(1, Relaxed);
        let _permit = permit
            .map_err(|_| SearchError::Busy)?
            .map_err(|e| SearchError::Failed(e.into()))?;
        let conn = self
            .idle
            .lock()
            .map_err(|_| SearchError::Failed(anyhow::anyhow!("searcher poisoned")))?
            .pop()
            .expect("a connection for every permit");
        // Interrupting a connection that runs nothing does nothing, so a late timer is harmless.
        let interrupt = conn.get_interrupt_handle();
        let deadline = arrived + self.deadline;
        let started = tokio::time::Instant::now();
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            interrupt.interrupt();
        });
        let done = tokio::task::spawn_blocking(move || {
            let result = work(&conn);
            (conn, result)
        })
        .await;
        timer.abort();
        let (conn, result) = done.map_err(|e| SearchError::Failed(e.into()))?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        match result.map_err(classify) {
            // Stopped with little time of its own after a long wait: the searcher was busy,
            // not the search too costly.
            Err(SearchError::TooSlow) if started.elapsed() < self.deadline / 2 => Err(SearchError::Busy),
            other => other,
        }
    }
}

/// What a failed search means for the person who asked.
pub fn classify(e: anyhow::Error) -> SearchError {
    match e.downcast_ref::<rusqlite::Error>() {
        Some(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::OperationInterrupted => {
            SearchError::TooSlow
        }
        Some(rusqlite::Error::SqliteFailure(f, Some(why)))
            if f.code == rusqlite::ErrorCode::Unknown && why.starts_with("fts5:") =>
        {
            SearchError::Unsearchable
        }
        _ => SearchError::Failed(e),
    }
}

/// Keeps the index in step with one message of `conversation`: its text now (`None` or
/// empty: not indexed).
pub fn index(
    tx: &Connection,
    message: MessageId,
    conversation: ConversationId,
    text: Option<&str>,
) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM message_text WHERE rowid = ?1")?
        .execute([message.0 as i64])?;
    index_new(tx, message, conversation, text.unwrap_or_default())
}

/// Adds a new message's text (no earlier row to remove).
pub fn index_new(
    tx: &Connection,
    message: MessageId,
    conversation: ConversationId,
    text: &str,
) -> rusqlite::Result<()> {
    if !text.is_empty() {
        tx.prepare_cached("INSERT INTO message_text (rowid, body, scope) VALUES (?1, ?2, ?3)")?
            .execute(params![
                message.0 as i64,
                indexed_text(text),
                scope_token(conversation)
            ])?;
    }
    Ok(())
}

/// What is indexed of a text: its words, not its markup. The tokenizer already drops markup's
/// punctuation (`**`, `_`, `` ` ``, `>`, list markers), so only what the markup hides needs the
/// parser: a link's destination (`[docs](https://…)` shows "docs"). Texts without one are
/// indexed as they are.
fn indexed_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains("](") {
        std::borrow::Cow::Owned(tally_shared::markup::plain_text(text))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_holds_words_not_markup() {
        assert_eq!(indexed_text("**deploy** the api"), "**deploy** the api");
        assert_eq!(
            indexed_text("see [the runbook](https://wiki.acme.test/oncall)"),
            "see the runbook"
        );
    }

    /// A real database file with the schema the relay migrates to (the index as it is made).
    fn database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::storage::open(dir.path(), crate::storage::Durability::Normal).unwrap();
        (dir, conn)
    }

    proptest::proptest! {
        /// Whatever a person types is either refused with a reason or becomes a query SQLite
        /// accepts: nothing typed can be FTS5 syntax that breaks (or widens) the query.
        #[test]
        fn anything_typed_is_refused_or_a_valid_query(text in "\\PC{0,60}|[a-z* \"():^+-]{0,40}") {
            let (_dir, conn) = database();
            if let Ok(terms) = terms(&text) {
                proptest::prop_assert!(terms.len() <= MAX_TERMS);
                for t in &terms {
                    proptest::prop_assert!(!t.word.is_empty() && t.word.chars().all(char::is_alphanumeric));
                }
                let query = SearchQuery {
                    terms,
                    conversations: vec![ConversationId(1), ConversationId(2)],
                    before: None,
                    limit: 20,
                };
                match conn.search(&query).map_err(classify) {
                    Ok(_) | Err(SearchError::Unsearchable) => {}
                    Err(e) => proptest::prop_assert!(false, "{text:?}: {e:?}"),
                }
            }
        }
    }

    #[test]
    fn a_word_the_tokenizer_splits_is_unsearchable_not_a_failure() {
        let (_dir, conn) = database();
        // Found by the property test below: letters newer than Unicode 6.1 around a mark.
        let query = SearchQuery {
            terms: terms("\u{171f}\u{1772}\u{1e030}").unwrap(),
            conversations: vec![ConversationId(1)],
            before: None,
            limit: 20,
        };
        let e = conn.search(&query).unwrap_err();
        assert!(matches!(classify(e), SearchError::Unsearchable));
    }

    #[tokio::test]
    async fn a_search_past_its_deadline_is_stopped_and_its_connection_serves_the_next() {
        let searcher = Searcher::with(
            vec![Connection::open_in_memory().unwrap()],
            Duration::from_millis(50),
        );
        // Counting to ten billion takes SQLite minutes: stopped at the deadline.
        let slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000)
                    SELECT count(*) FROM n";
        let started = std::time::Instant::now();
        let alice = StaffId::new("alice").unwrap();
        let stopped = searcher
            .run(
                &alice,
                move |c| Ok(c.query_row(slow, [], |r| r.get::<_, i64>(0))?),
            )
            .await;
        assert!(matches!(stopped, Err(SearchError::TooSlow)), "{stopped:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The same connection answers the next search, which the timer does not reach.
        let quick = searcher
            .run(&alice, |c| {
                Ok(c.query_row("SELECT 42", [], |r| r.get::<_, i64>(0))?)
            })
            .await;
        assert_eq!(quick.unwrap(), 42);
    }

    #[tokio::test]
    async fn one_persons_burst_of_costly_searches_leaves_others_answered() {
        // Two connections, as the relay has; each of Alice's searches costs a moment.
        let searcher = std::sync::Arc::new(Searcher::with(
            vec![
                Connection::open_in_memory().unwrap(),
                Connection::open_in_memory().unwrap(),
            ],
            Duration::from_secs(10),
        ));
        let slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
                    SELECT count(*) FROM n";
        let alice = StaffId::new("alice").unwrap();
        let mut burst = Vec::new();
        for _ in 0..40 {
            let (searcher, alice) = (searcher.clone(), alice.clone());
            burst.push(tokio::spawn(async move {
                searcher
                    .run(
                        &alice,
                        move |c| Ok(c.query_row(slow, [], |r| r.get::<_, i64>(0))?),
                    )
                    .await
            }));
        }
        tokio::task::yield_now().await;
        // Bob's search arrives in the middle of Alice's burst, and is answered.
        let bob = StaffId::new("bob").unwrap();
        let answer = searcher
            .run(
                &bob,
                |c| Ok(c.query_row("SELECT 42", [], |r| r.get::<_, i64>(0))?),
            )
            .await;
        assert_eq!(answer.unwrap(), 42);
        let mut busy = 0;
        for b in burst {
            match b.await.unwrap() {
                Err(SearchError::Busy) => busy += 1,
                Ok(n) => assert_eq!(n, 300_000),
                other => panic!("{other:?}"),
            }
        }
        // Alice had two places; the rest of her burst was refused at once.
        assert_eq!(busy, 40 - PER_PERSON);
    }

    #[tokio::test]
    async fn a_search_that_waited_out_its_deadline_is_busy_not_run_late() {
        let searcher = std::sync::Arc::new(Searcher::with(
            vec![Connection::open_in_memory().unwrap()],
            Duration::from_millis(300),
        ));
        // Work that no interrupt stops holds the only connection past Dave's deadline.
        let hog = {
            let searcher = searcher.clone();
            tokio::spawn(async move {
                let carol = StaffId::new("carol").unwrap();
                searcher
                    .run(&carol, |_| {
                        std::thread::sleep(Duration::from_millis(900));
                        Ok(0i64)
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let dave = StaffId::new("dave").unwrap();
        let waited = searcher
            .run(
                &dave,
                |c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?),
            )
            .await;
        assert!(matches!(waited, Err(SearchError::Busy)), "{waited:?}");
        assert_eq!(hog.await.unwrap().unwrap(), 0);
    }

    fn words(text: &str) -> Vec<String> {
        terms(text)
            .unwrap()
            .into_iter()
            .map(|t| if t.prefix { format!("{}*", t.word) } else { t.word })
            .collect()
    }

    #[test]
    fn what_a_person_types_becomes_words_and_nothing_is_syntax_but_a_trailing_star() {
        assert_eq!(words("Room 4"), ["room", "4"]);
        assert_eq!(
            words("  \"NEAR(a b)\" OR * -x:y "),
            ["near", "a", "b", "or", "x", "y"]
        );
        assert_eq!(words("Ünïcode café"), ["ünïcode", "café"]);
        assert_eq!(words("parc* room*42 ward**"), ["parc*", "room*", "42", "ward*"]);
        assert_eq!(terms("a"), Err(QueryError::TooShort));
        assert_eq!(terms("  ** "), Err(QueryError::TooShort));
        assert_eq!(
            terms("room pa*"),
            Err(QueryError::TooShort),
            "a prefix of two letters"
        );
        assert_eq!(terms("a b c d e f g h i"), Err(QueryError::TooLong));
        assert_eq!(terms(&"x".repeat(201)), Err(QueryError::TooLong));
        let scope = [ConversationId(4), ConversationId(17)];
        let query = fts5_query(&terms("parcel is her*").unwrap(), &scope);
        assert_eq!(query, "(\"parcel\" \"is\" \"her\"*) AND (tallyin4 OR tallyin17)");
    }
}
