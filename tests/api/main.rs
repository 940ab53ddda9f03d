//! The black-box suite: the real service on free ports with a fresh store
//! per test, driven over HTTP (and the command line where the contract
//! names one). One test binary for all of it.

mod auth;
mod bounds;
mod brokers;
mod cases;
mod cli;
mod console;
mod devices;
mod docs;
mod evidence;
mod geodata;
mod gis;
mod helpers;
mod history;
mod ingest;
mod instances;
mod kill;
mod layout;
mod mosquitto;
mod mosquitto_auth;
mod planning;
mod process;
mod public;
mod roads;
mod simulator;
mod standards;
mod stream;
mod testdb;
mod violations;
