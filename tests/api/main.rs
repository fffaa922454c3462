//! The HTTP API suite. Every test runs against a real server on SQLite and on PostgreSQL,
//! each on a fresh database.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod automations;
mod campaigns;
mod conventions;
mod crm;
mod customers;
mod dashboard;
mod inbound;
mod isolation;
mod keys;
mod openapi;
mod scoring;
mod segment;
mod segments;
mod snippet;
mod team;
mod track;
mod webhooks;
