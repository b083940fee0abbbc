//! The application layer of cardap: every use case, one module per area — read the module list to learn what
//! cardap does.
//!
//! - [`access`]: log in, authenticate a session, log out, change one's password; reset, bulk-reset, revoke, unlock;
//!   failed logins throttled per client address and login name ([`throttle`]).
//! - [`biometric`]: biometric login (生体認証) with WebAuthn — register and delete an operator's authenticators
//!   (生体情報登録), the municipality's biometric policy (required for whom, which authenticator models), log in
//!   with an assertion.
//! - [`municipalities`]: register, change, abolish (市町村設定).
//! - [`business_systems`]: register, update, retire; permit and withdraw shared use (共同利用).
//! - [`operators`]: register one or a batch (with 業務内IDs and kept hashes), check a batch before registering it
//!   (every refusal of every item), change, map 業務内IDs (each held by one operator per business system,
//!   `internal_ids`); the operator directory.
//! - [`operator_migration`]: move operators to another municipality with their passwords (操作者情報の移行).
//! - [`residents`]: resident settings, residents, cards, local area, APs, 標準ID (利用者登録, カードAP搭載).
//! - [`registry_import`]: the resident registry import (a file's batches in, their outcomes out, in file order),
//!   stopped when the importing operator's session ends.
//! - [`imports`]: how many imports run at once, per municipality and on the server (admission, turned away when
//!   full); [`jobs`]: imports that run in the background as jobs (progress, outcome, generated passwords once).
//! - [`erasure`]: erase a resident for good (消去: after his move-out and the retention period, or on a
//!   documented request) — the erasure event, then his data keys destroyed.
//! - [`feeds`]: the business systems' replication feeds (a page, a long poll, a follower for SSE; each delivery of
//!   personal data recorded) and their field lists (データの最小化).
//! - [`library`]: the library link (図書館): a library system links a 標準ID to its 図書ID, looks it up (also by a
//!   reissued card's new 標準ID), unlinks.
//! - [`issuance_service`]: the municipality's issuance service (証明書等自動交付: certificates, hours, closed
//!   periods), which the certificate issuance system's feed carries.
//! - [`registry`]: the registry entries 利用者登録 prefills from (by registry key, by the facts read from a card).
//! - [`read_access`]: the read access log — every read of residents' personal data recorded before it is
//!   answered, queried by auditors — and the municipality's bulk-read alert threshold.
//! - [`status`]: is the event store answering (readiness, metrics).
//! - [`bootstrap`]: first start (the system administrator, the built-in business systems).
//!
//! Every change runs through one engine ([`engine::transact`]): authorize → load the streams → fold → decide →
//! append at the loaded versions in one transaction (with its [`cardap_store::Companion`] writes), retrying a
//! bounded number of times when another writer got there first; a retried command id writes nothing. Owns who
//! may do what ([`authz`]), the metadata every command carries ([`CommandContext`]), the clock ([`clock`]) and the
//! ports of what is not an event ([`ports`]). It reads the views it needs through the query functions of
//! `cardap_projections` and waits only for the view it answers from ([`views`]); it never writes a read model.

pub mod access;
pub mod authz;
pub mod biometric;
pub mod bootstrap;
pub mod business_systems;
pub mod card_writes;
pub mod clock;
mod context;
pub mod engine;
pub mod erasure;
pub mod feeds;
mod handler;
pub mod history;
pub mod ids;
pub mod imports;
mod internal_ids;
pub mod issuance_service;
pub mod jobs;
pub mod library;
pub mod municipalities;
pub mod oidc;
pub mod operator_migration;
pub mod operators;
pub mod passwords;
pub mod pki;
pub mod ports;
pub mod read_access;
pub mod registry;
pub mod registry_import;
pub mod residents;
pub mod status;
pub mod throttle;
pub mod views;
pub mod webhooks;

pub use authz::{Actor, AuthzError, Permission, authorize};
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::CommandContext;
pub use handler::{CommandError, CommandHandler, Executed, Loaded, Shown};
pub use views::Views;

/// What a use case's caller names or is answered with, from the event store: a command's and a correlation's id
/// (idempotency, tracing), a position in the log (read-your-writes), whether an append recorded something. The
/// edge takes them from here and needs no store of its own.
pub use cardap_store::{AppendOutcome, Checkpoint, CommandId, CorrelationId};

/// Why a query of a read model failed (the database, or a row it could not read).
pub use cardap_projections::ProjectionError as QueryError;
