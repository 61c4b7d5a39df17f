//! Full-text search over the messages a staff member can read.
//!
//! The index is behind [`TextSearch`]: SQLite answers it with an FTS5 table (`message_text`,
//! contentless, one row per live message with text, kept in step by `storage::append` in the
//! transaction of the event that changed it); a PostgreSQL store answers it with a `tsvector`
//! column and a GIN index (cluster mode). Either way the scope is decided before the query,
//! by the core: the conversations the searcher is in now, nothing else.

use rusqlite::{Connection, params};
use tally_shared::{ConversationId, Message, MessageId};

/// The most words a query may have.
pub const MAX_TERMS: usize = 8;
/// The longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 200;
/// The most results in one page.
pub const MAX_RESULTS: u64 = 50;

/// A checked query: what to look for, where, and which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The words, each matched as the beginning of a word.
    pub terms: Vec<String>,
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
    /// Nothing to look for (or only one letter).
    TooShort,
    /// Longer than [`MAX_QUERY_BYTES`] or more than [`MAX_TERMS`] words.
    TooLong,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueryError::TooShort => "search for at least two letters",
            QueryError::TooLong => "a search has at most 8 words and 200 bytes",
        })
    }
}

/// Splits what a person typed into words: anything that is not a letter or a digit
/// separates them (as the index's tokenizer does), so no character is syntax.
pub fn terms(text: &str) -> Result<Vec<String>, QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(QueryError::TooLong);
    }
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect();
    if terms.len() > MAX_TERMS {
        return Err(QueryError::TooLong);
    }
    if terms.iter().map(|t| t.chars().count()).sum::<usize>() < 2 {
        return Err(QueryError::TooShort);
    }
    Ok(terms)
}

/// The FTS5 query for some words: every one must begin a word of the message (so a query
/// typed halfway already finds). Words hold only letters and digits: quoting is all the
/// escaping they need.
pub fn fts5_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{t}\"*"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A full-text index of messages.
pub trait TextSearch {
    /// The live messages that match, newest first.
    fn search(&self, query: &SearchQuery) -> anyhow::Result<Vec<Message>>;
}

impl TextSearch for Connection {
    fn search(&self, q: &SearchQuery) -> anyhow::Result<Vec<Message>> {
        if q.conversations.is_empty() || q.terms.is_empty() {
            return Ok(Vec::new());
        }
        let scope = serde_json::to_string(&q.conversations)?;
        let before = q.before.map_or(i64::MAX, |m| m.0 as i64);
        let mut stmt = self.prepare_cached(
            "SELECT m.payload FROM message_text t JOIN messages m ON m.id = t.rowid
             WHERE message_text MATCH ?1 AND t.rowid < ?2
               AND m.conversation IN (SELECT value FROM json_each(?3))
             ORDER BY t.rowid DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                fts5_query(&q.terms),
                before,
                scope,
                q.limit.min(MAX_RESULTS) as i64
            ],
            |r| r.get::<_, String>(0),
        )?;
        let mut out = Vec::new();
        for payload in rows {
            out.push(serde_json::from_str(&payload?)?);
        }
        Ok(out)
    }
}

/// Keeps the index in step with one message: its text now (`None` or empty: not indexed).
pub fn index(tx: &Connection, message: MessageId, text: Option<&str>) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM message_text WHERE rowid = ?1")?
        .execute([message.0 as i64])?;
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        tx.prepare_cached("INSERT INTO message_text (rowid, body) VALUES (?1, ?2)")?
            .execute(params![message.0 as i64, text])?;
    }
    Ok(())
}

/// Adds a new message's text (no earlier row to remove).
pub fn index_new(tx: &Connection, message: MessageId, text: &str) -> rusqlite::Result<()> {
    if !text.is_empty() {
        tx.prepare_cached("INSERT INTO message_text (rowid, body) VALUES (?1, ?2)")?
            .execute(params![message.0 as i64, text])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_person_types_becomes_words_and_nothing_is_syntax() {
        assert_eq!(terms("Room 4").unwrap(), ["room", "4"]);
        assert_eq!(
            terms("  \"NEAR(a b)\" OR * -x:y ").unwrap(),
            ["near", "a", "b", "or", "x", "y"]
        );
        assert_eq!(terms("Ünïcode café").unwrap(), ["ünïcode", "café"]);
        assert_eq!(terms("a"), Err(QueryError::TooShort));
        assert_eq!(terms("  ** "), Err(QueryError::TooShort));
        assert_eq!(terms("a b c d e f g h i"), Err(QueryError::TooLong));
        assert_eq!(terms(&"x".repeat(201)), Err(QueryError::TooLong));
        assert_eq!(
            fts5_query(&terms("parcel is her").unwrap()),
            "\"parcel\"* \"is\"* \"her\"*"
        );
    }
}
