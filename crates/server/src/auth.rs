//! Who may call `/mcp`, for which tenant, with which scopes.
//!
//! Credentials: the static bearer tokens (`token_set`: current + previous, the simplest case),
//! named API keys (`api_keys`) and JWTs from an OAuth authorization server (`jwt`, keys from
//! `jwks`, signatures checked by `jwt_ring`). [`Authenticator`] tries them and yields a
//! [`Principal`] (`principal`: name, tenant, [`Scopes`]); the HTTP guard calls it in one place and
//! answers refusals with the challenges of `resource_metadata`, which also serves RFC 9728
//! metadata. `setup` validates the configuration. This module knows nothing about axum's routing.

pub mod api_keys;
pub mod authenticator;
pub mod jwks;
pub mod jwt;
mod jwt_ring;
pub mod principal;
pub mod resource_metadata;
pub mod scopes;
pub mod setup;
pub mod token_set;

pub use authenticator::{AuthRefusal, Authenticator, SetupError, token_set};
pub use principal::Principal;
pub use scopes::{Scope, Scopes};
pub use token_set::{AuthError, PreviousToken, PreviousTokens, SharedTokenSet, TokenId, TokenSet};
