//! A post's state, as stored in its `state` field.
//!
//! The stored strings are a public contract (operators read them with `redis-cli`, producers with
//! `status`), so [`State::as_str`] never changes. The Lua scripts of the ledger (and of the queue) do
//! not restate which states are terminal: they receive [`lua_prelude`], generated from [`TERMINAL`],
//! so a state added here is known to every script at once.

use std::fmt;
use std::str::FromStr;

/// Where a post is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting for `publish_at`.
    Scheduled,
    /// Due, waiting for a worker.
    Queued,
    /// A worker is talking to TikTok (creator_info, init, upload).
    Uploading,
    /// Uploaded; TikTok is processing it.
    Processing,
    /// Live on TikTok.
    Published,
    /// Draft delivered to the creator's inbox.
    Inbox,
    /// Waiting out a TikTok cap (see `deferred_until_ms`).
    Deferred,
    /// Failed for good (see `error_code`, `error_message`).
    Failed,
    /// Cancelled before it was sent.
    Cancelled,
    /// The daemon could not settle whether TikTok published it; a person must check.
    Unconfirmed,
}

/// Every state, in the order a post meets them.
pub const ALL: &[State] = &[
    State::Scheduled,
    State::Queued,
    State::Uploading,
    State::Processing,
    State::Published,
    State::Inbox,
    State::Deferred,
    State::Failed,
    State::Cancelled,
    State::Unconfirmed,
];

/// States no worker moves on from.
pub const TERMINAL: &[State] = &[
    State::Published,
    State::Inbox,
    State::Failed,
    State::Cancelled,
    State::Unconfirmed,
];

/// States a post reaches only when something went wrong, so it is indexed for the operator (the
/// ledger's "dead" set).
pub const DEAD: &[State] = &[State::Failed, State::Unconfirmed];

/// States a post may be cancelled from (when it has not been sent and no worker holds it).
pub const CANCELLABLE: &[State] = &[State::Scheduled, State::Queued, State::Deferred];

impl State {
    /// Every state (as the module's `ALL`).
    pub const ALL: &'static [State] = ALL;
    /// The terminal states (as the module's `TERMINAL`).
    pub const TERMINAL: &'static [State] = TERMINAL;

    /// The string stored in the ledger.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Uploading => "uploading",
            Self::Processing => "processing",
            Self::Published => "published",
            Self::Inbox => "inbox",
            Self::Deferred => "deferred",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Unconfirmed => "unconfirmed",
        }
    }

    /// The state a stored string names, if any.
    pub fn parse(s: &str) -> Option<Self> {
        ALL.iter().copied().find(|st| st.as_str() == s)
    }

    /// True for states no worker moves on from.
    pub fn is_terminal(self) -> bool {
        TERMINAL.contains(&self)
    }

    /// The Lua constant naming this state in [`lua_prelude`] (e.g. `S_FAILED`).
    fn lua_name(self) -> String {
        format!("S_{}", self.as_str().to_ascii_uppercase())
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a post state")]
pub struct UnknownState(pub String);

impl FromStr for State {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownState(s.to_string()))
    }
}

fn lua_set(name: &str, states: &[State]) -> String {
    let items: Vec<String> = states
        .iter()
        .map(|s| format!("['{}']=true", s.as_str()))
        .collect();
    format!("local {name} = {{{}}}\n", items.join(", "))
}

/// Lua lines that every script naming a state starts with: one constant per state (`S_QUEUED =
/// 'queued'`, …) and the sets `TERMINAL`, `DEAD` and `CANCELLABLE` (`TERMINAL[st]` is true for a
/// terminal state), all generated from this module.
pub fn lua_prelude() -> String {
    let mut out = String::new();
    for s in ALL {
        out.push_str(&format!("local {} = '{}'\n", s.lua_name(), s.as_str()));
    }
    out.push_str(&lua_set("TERMINAL", TERMINAL));
    out.push_str(&lua_set("DEAD", DEAD));
    out.push_str(&lua_set("CANCELLABLE", CANCELLABLE));
    out
}

/// A script: [`lua_prelude`] followed by `body`.
pub fn lua_script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{}{body}", lua_prelude()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_strings_are_the_contract() {
        let strings: Vec<&str> = ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            strings,
            [
                "scheduled",
                "queued",
                "uploading",
                "processing",
                "published",
                "inbox",
                "deferred",
                "failed",
                "cancelled",
                "unconfirmed"
            ]
        );
        for s in ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert!("Published".parse::<State>().is_err());
        assert!("".parse::<State>().is_err());
    }

    #[test]
    fn terminal_states() {
        let terminal: Vec<State> = ALL.iter().copied().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, TERMINAL);
        let stored = |s: &str| State::parse(s).is_some_and(State::is_terminal);
        assert!(stored("unconfirmed"));
        assert!(!stored("deferred"));
        assert!(!stored("nonsense"));
    }

    #[test]
    fn prelude_names_every_state_and_set() {
        let p = lua_prelude();
        assert!(p.contains("local S_QUEUED = 'queued'\n"));
        assert!(p.contains("local S_UNCONFIRMED = 'unconfirmed'\n"));
        assert!(p.contains(
            "local TERMINAL = {['published']=true, ['inbox']=true, ['failed']=true, ['cancelled']=true, ['unconfirmed']=true}\n"
        ));
        assert!(p.contains("local DEAD = {['failed']=true, ['unconfirmed']=true}\n"));
        assert!(p.contains(
            "local CANCELLABLE = {['scheduled']=true, ['queued']=true, ['deferred']=true}\n"
        ));
    }
}
