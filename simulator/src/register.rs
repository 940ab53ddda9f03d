//! Registering the street's devices through the admin API (contract
//! 6.1), so that a service that admits only registered devices takes
//! their events.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

use crate::plan::Device;
use crate::publish::Login;

/// Where to register devices, and as whom.
#[derive(Debug, Clone)]
pub struct Registrar {
    /// The service's base URL, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    /// An admin's bearer token.
    pub token: String,
}

#[derive(Deserialize)]
struct Created {
    device_id: String,
    password: String,
}

impl Registrar {
    /// Registers each of `devices` (`POST /v1/devices`) and returns their
    /// logins, in order. Fails on the first refusal: an id registered
    /// before (the service never reuses one), or a token that is not an
    /// admin's.
    pub fn register(&self, devices: &[Device]) -> anyhow::Result<Vec<Login>> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let url = format!("{}/v1/devices", self.api.trim_end_matches('/'));
        let auth = format!("Bearer {}", self.token);
        devices
            .iter()
            .map(|d| {
                let body = json!({
                    "device_id": d.device_id,
                    "kind": d.kind.as_str(),
                    "name": d.name,
                });
                let mut resp = agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .send_json(&body)
                    .with_context(|| format!("POST {url}"))?;
                let status = resp.status().as_u16();
                let text = resp
                    .body_mut()
                    .read_to_string()
                    .with_context(|| format!("reading POST {url}"))?;
                match status {
                    201 => {}
                    401 | 403 => bail!(
                        "registering device {} needs an admin's token; {url} answered \
                         {status}: {text}",
                        d.device_id
                    ),
                    _ => bail!(
                        "registering device {}: {url} answered {status}: {text}",
                        d.device_id
                    ),
                }
                let created: Created = serde_json::from_str(&text)
                    .with_context(|| format!("POST {url} answered 201 with {text}"))?;
                Ok(Login {
                    device_id: created.device_id,
                    password: created.password,
                })
            })
            .collect()
    }
}
