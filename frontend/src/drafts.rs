//! Drafts: what was typed in a conversation and not sent, kept when switching conversations and
//! across reloads, in the browser's storage under the signed-in staff member's own key (another
//! person signing in on the same browser never sees them), and removed when they sign out
//! (`Widget.signOut()`) or are deactivated.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use gloo::storage::{LocalStorage, Storage};
use tally_shared::{ConversationId, StaffId};

/// The drafts of the signed-in staff member.
#[derive(Debug, Default)]
pub struct Drafts {
    /// Where they are kept (`None` until the staff member is known).
    key: RefCell<Option<String>>,
    texts: RefCell<HashMap<ConversationId, String>>,
}

/// The storage key of `staff`'s drafts under the widget's storage key.
pub fn key_of(storage_key: &str, staff: &StaffId) -> String {
    format!("{storage_key}.drafts.{staff}")
}

impl Drafts {
    /// Loads `staff`'s drafts (once they are known; again if someone else signs in).
    pub fn bind(&self, storage_key: &str, staff: &StaffId) {
        let key = key_of(storage_key, staff);
        if self.key.borrow().as_deref() == Some(key.as_str()) {
            return;
        }
        let saved: HashMap<u64, String> = LocalStorage::get(&key).unwrap_or_default();
        *self.texts.borrow_mut() = saved.into_iter().map(|(c, t)| (ConversationId(c), t)).collect();
        *self.key.borrow_mut() = Some(key);
    }

    /// The draft of a conversation ("" when none).
    pub fn get(&self, conversation: ConversationId) -> String {
        self.texts
            .borrow()
            .get(&conversation)
            .cloned()
            .unwrap_or_default()
    }

    /// Keeps (or, empty, forgets) the draft of a conversation.
    pub fn set(&self, conversation: ConversationId, text: &str) {
        let changed = {
            let mut texts = self.texts.borrow_mut();
            if text.trim().is_empty() {
                texts.remove(&conversation).is_some()
            } else {
                texts.insert(conversation, text.to_string()).as_deref() != Some(text)
            }
        };
        if changed {
            self.save();
        }
    }

    /// The conversations with a draft.
    pub fn conversations(&self) -> HashSet<ConversationId> {
        self.texts.borrow().keys().copied().collect()
    }

    /// Forgets every draft, here and in storage.
    pub fn clear(&self) {
        self.texts.borrow_mut().clear();
        if let Some(key) = self.key.borrow().as_ref() {
            LocalStorage::delete(key);
        }
    }

    fn save(&self) {
        let Some(key) = self.key.borrow().clone() else {
            return;
        };
        let texts = self.texts.borrow();
        if texts.is_empty() {
            LocalStorage::delete(&key);
        } else {
            let saved: HashMap<u64, &String> = texts.iter().map(|(c, t)| (c.0, t)).collect();
            let _ = LocalStorage::set(&key, saved);
        }
    }
}
