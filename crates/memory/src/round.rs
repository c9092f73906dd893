//! A round of a conversation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who produced a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        })
    }
}

/// One round: an id unique within the memory, a role and its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Round {
    pub id: String,
    pub role: Role,
    pub text: String,
}

impl Round {
    pub fn new(id: impl Into<String>, role: Role, text: impl Into<String>) -> Round {
        Round { id: id.into(), role, text: text.into() }
    }
}
