//! Reactions (an emoji on a message, put on and taken off) and a group's `@here` switch.
//! Neither changes a count (`docs/semantics.md`, "Reactions" and "Mentions").

use super::messages::message_ack;
use super::{Engine, Step, ack_for, reject};
use crate::engine::Rejection;
use crate::ids::{ConversationId, MessageId};
use crate::limits;
use crate::protocol::{Ack, ErrorCode, Event};
use crate::reactions;

impl Engine {
    /// Puts `emoji` on a message (`add`) or takes it off. Per person and emoji a reaction is
    /// there or not: a repeat acknowledges and appends nothing.
    pub(super) fn react(
        &mut self,
        step: &mut Step<'_>,
        message: MessageId,
        emoji: &str,
        add: bool,
    ) -> Result<Ack, Rejection> {
        if !reactions::valid_emoji(emoji) {
            return reject(
                ErrorCode::InvalidInput,
                format!(
                    "a reaction is one emoji (at most {} characters, {} bytes)",
                    limits::EMOJI_MAX_CHARS,
                    limits::EMOJI_MAX_BYTES
                ),
            );
        }
        let m = self.readable_message(step.author, message, step.lookup)?;
        let (conversation, seq) = (m.conversation, m.seq);
        let mine = |r: &reactions::Reaction| r.emoji == emoji && r.staff.contains(step.author);
        let there = m.reactions.iter().any(mine);
        if add == there {
            return Ok(message_ack(conversation, message, seq));
        }
        if add {
            if reactions::by(&m.reactions, step.author) >= limits::REACTIONS_PER_PERSON_MAX {
                let max = limits::REACTIONS_PER_PERSON_MAX;
                return reject(
                    ErrorCode::NotAllowed,
                    format!("at most {max} reactions of yours on one message"),
                );
            }
            let new_emoji = !m.reactions.iter().any(|r| r.emoji == emoji);
            if new_emoji && m.reactions.len() >= limits::REACTIONS_PER_MESSAGE_MAX {
                let max = limits::REACTIONS_PER_MESSAGE_MAX;
                return reject(
                    ErrorCode::NotAllowed,
                    format!("at most {max} different reactions on one message"),
                );
            }
        }
        let event = Event::ReactionChanged {
            conversation,
            message,
            seq,
            staff: step.author.clone(),
            emoji: emoji.to_string(),
            added: add,
        };
        self.push(&mut step.applied, event);
        Ok(message_ack(conversation, message, seq))
    }

    /// A group's owner (its creator) allows or stops `@here` / `@all` mentioning everyone.
    pub(super) fn set_everyone_mentions(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        allowed: bool,
    ) -> Result<Ack, Rejection> {
        let c = self.group(step.author, conversation)?;
        if &c.created_by != step.author {
            return reject(
                ErrorCode::NotAllowed,
                "only the group's owner (who created it) may change this",
            );
        }
        if c.everyone_off != allowed {
            return Ok(ack_for(conversation));
        }
        let event = Event::EveryoneMentionsChanged {
            conversation,
            allowed,
            by: step.author.clone(),
        };
        self.push(&mut step.applied, event);
        Ok(ack_for(conversation))
    }
}
