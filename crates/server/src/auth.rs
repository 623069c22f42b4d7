//! Who may call `/mcp`. Today: a set of static bearer tokens (the current one plus previous ones
//! kept during a rotation, each optionally with an expiry), compared in constant time.
//!
//! The HTTP guard calls [`SharedTokenSet::check`] in one place; SIGHUP replaces the set with
//! [`SharedTokenSet::replace`]. This module knows nothing about axum's routing or the
//! configuration schema: it takes header maps and secrets, so other credential kinds (API keys,
//! JWT) can join it without touching the guard.

pub mod token_set;

pub use token_set::{AuthError, PreviousToken, PreviousTokens, SharedTokenSet, TokenId, TokenSet};
