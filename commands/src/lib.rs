//! Command handling for cardap: the one path every change takes.
//!
//! authorize → load the stream → fold → decide → append with the expected version, retrying a bounded number of
//! times when another writer got there first. Owns who may do what ([`authz`]), the metadata every command
//! carries ([`CommandContext`]), and the generic handler ([`CommandHandler`]). It never touches read models.

pub mod access;
pub mod authz;
pub mod business_systems;
pub mod clock;
mod context;
pub mod engine;
mod handler;
pub mod ids;
pub mod municipalities;
pub mod operators;
pub mod passwords;
pub mod registry_import;
pub mod residents;
pub mod views;

pub use authz::{Actor, AuthzError, Permission, authorize};
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::CommandContext;
pub use handler::{CommandError, CommandHandler, Executed, Loaded};
pub use views::Views;
