//! The rules of the street, as pure functions over values.
//!
//! Nothing here performs I/O or reads the clock: time arrives as a `now`
//! argument, so every rule is exact under test.

pub mod auth;
pub mod cases;
pub mod cds;
pub mod crs;
pub mod datex;
pub mod devices;
pub mod enforcement;
pub mod events;
pub mod history;
pub mod ids;
pub mod layout;
pub mod occupancy;
pub mod privacy;
pub mod validate;
pub mod violations;

#[cfg(test)]
pub(crate) mod props;
