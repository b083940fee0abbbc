//! The pure domain of cardap: value types that parse, aggregates as `decide`/`evolve`, and their events.
//!
//! Owns the rules of the business (手引き I) and nothing else: no IO, no async, no clock, no database.
//! What a decision needs (the time, a looked-up fact) arrives inside the command.

pub mod aggregate;
pub mod biometric_policy;
pub mod business_system;
pub mod card;
pub mod card_area;
pub mod cells;
pub mod certificate;
pub mod contact;
pub mod feed_fields;
pub mod ids;
pub mod issuance_service;
pub mod library_link;
pub mod local_settings;
pub mod login_client;
pub mod message;
pub mod municipality;
pub mod operator;
pub mod patch;
pub mod read_alert;
pub mod registry;
pub mod resident;
pub mod time;
pub mod webhook;

pub use aggregate::{Aggregate, DomainEvent, EventDecodeError, Snapshotted};
pub use ids::{BusinessId, MunicipalityCode, OperatorKey, ParseError};
pub use message::Localized;
pub use time::Timestamp;

#[cfg(test)]
mod testing;
