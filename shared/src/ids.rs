//! Identifiers: one newtype per kind of id, so no bare integer crosses a module boundary.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::limits;

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

numeric_id!(
    /// A conversation, assigned by the relay.
    ConversationId
);
numeric_id!(
    /// A message, unique across all conversations, assigned by the relay.
    MessageId
);
numeric_id!(
    /// A message's position in its conversation: 1, 2, 3, ... A read watermark is a `Seq` too;
    /// `Seq(0)` means "nothing read".
    Seq
);
numeric_id!(
    /// A position in the global, gap-free event log. `Offset(0)` means "nothing applied".
    Offset
);
numeric_id!(
    /// A request made by a client, echoed in the acknowledgement or error it causes.
    RequestId
);
numeric_id!(
    /// Milliseconds since the Unix epoch, as stamped by the relay.
    Millis
);

impl Seq {
    /// The next position.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl Offset {
    /// The next position.
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

/// Why a textual id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty, or longer than the limit.
    #[error("must be 1 to {max} characters long")]
    Length {
        /// The longest allowed.
        max: usize,
    },
    /// A character outside the allowed set.
    #[error("may contain only a-z, 0-9, '.', '_' and '-'")]
    Charset,
}

fn check_token(s: &str, max: usize, allow_upper: bool) -> Result<(), IdError> {
    if s.is_empty() || s.len() > max {
        return Err(IdError::Length { max });
    }
    let ok = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '.' | '_' | '-')
            || (allow_upper && c.is_ascii_uppercase())
    };
    if s.chars().all(ok) {
        Ok(())
    } else {
        Err(IdError::Charset)
    }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $max:expr, $upper:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps a textual id.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_token(&s, $max, $upper)?;
                Ok(Self(s))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

text_id!(
    /// A staff member, as the embedding work app names them (`alice`, `j.doe`, `emp-1042`).
    StaffId,
    limits::STAFF_ID_MAX,
    false
);
impl StaffId {
    /// The author of what the work app's backend writes through the service API (system
    /// notices, groups it creates, membership it changes). Reserved: no staff member has it, so
    /// nobody can sign in as it, and everything it writes counts as unread for everyone.
    pub const SYSTEM: &'static str = "system";

    /// The reserved author of service writes.
    pub fn system() -> StaffId {
        StaffId(Self::SYSTEM.to_string())
    }

    /// Whether this is the reserved service author.
    pub fn is_system(&self) -> bool {
        self.0 == Self::SYSTEM
    }
}

text_id!(
    /// A send's client-made id: sending the same one twice stores one message.
    ClientMsgId,
    limits::CLIENT_ID_MAX,
    true
);
text_id!(
    /// An attachment's content address: the lowercase hex SHA-256 of its bytes.
    AttachmentId,
    64,
    false
);

impl AttachmentId {
    /// True when this is a well-formed content address (64 lowercase hex digits).
    pub fn is_content_address(&self) -> bool {
        self.0.len() == 64 && self.0.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_ids_refuse_markup_and_empty() {
        assert!(StaffId::new("alice").is_ok());
        assert!(StaffId::new("emp-1042.x_y").is_ok());
        assert_eq!(
            StaffId::new(""),
            Err(IdError::Length {
                max: limits::STAFF_ID_MAX
            })
        );
        assert_eq!(StaffId::new("<script>"), Err(IdError::Charset));
        assert_eq!(StaffId::new("Alice"), Err(IdError::Charset));
        assert!(serde_json::from_str::<StaffId>("\"a b\"").is_err());
    }

    #[test]
    fn client_ids_allow_uuids_and_upper_case() {
        assert!(ClientMsgId::new("3F2504E0-4F89-11D3-9A0C-0305E82C3301").is_ok());
        assert!(ClientMsgId::new("x".repeat(limits::CLIENT_ID_MAX + 1)).is_err());
    }
}
