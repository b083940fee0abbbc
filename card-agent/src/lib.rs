//! The card agent (`cardap-agent`) at the counter: PC/SC (through the card AP access module), the resident's PIN,
//! cardap over mutual TLS, and the local area written as cardap authorizes (`card-agent/PROFILE.md`).
//!
//! - [`server`]: cardap's API over mutual TLS with the clerk's operator certificate (rustls on ring).
//! - [`flow`]: one card, step by step, and what each failure means at the counter.
//!
//! Must not read the My Number, keep or log a PIN, log the four facts or an APDU's data, or hold a card key: every
//! write carries cardap's MAC, which only cardap can compute.

pub mod flow;
pub mod server;

pub use flow::{Agent, AgentError, Outcome, PinPrompt, Request, Step};
pub use server::{Server, ServerConfig, ServerError};
