//! The cardap HTTP server: axum routes per area, authentication, problem+json errors, OpenAPI, start-up and
//! graceful shutdown. It turns requests into commands (`cardap-commands`) and answers queries from read models
//! (`cardap-projections`); it never writes events or read models itself.

pub mod app;
pub mod auth;
pub mod bootstrap;
pub mod error;
pub mod i18n;
pub mod import;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod routes;
pub mod serve;
pub mod settings;
pub mod state;
pub mod tls;
pub mod ui;
pub mod webhook_transport;

pub use app::{Application, StartError, app};
pub use settings::Settings;
