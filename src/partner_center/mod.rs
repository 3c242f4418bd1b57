//! Partner Center: the App+User token and the calls the gateway fronts.

mod breaker;
mod client;
pub mod credential;
mod error;
mod http;
mod token;
mod wire;

pub use client::{PartnerCenterClient, UpstreamCall};
pub use error::UpstreamError;
pub use http::PerThreadClient;
pub use token::{AccessToken, TokenError, TokenProvider};
