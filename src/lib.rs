//! kerbside: a city's kerbside parking as a service.
//!
//! Parking bays and barriers are stored as geometry per road and revision;
//! occupancy events arrive over MQTT; a REST API reports occupancy and
//! violations per road. See `ARCHITECTURE.md` for the data flow.

pub mod app;
pub mod clock;
pub mod config;
pub mod devices;
pub mod domain;
pub mod geodata;
pub mod http;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod mqtt;
pub mod notify;
pub mod spatial;
pub mod store;
pub mod street;
pub mod sync;
