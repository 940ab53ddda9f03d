//! The roles that make Mosquitto's dynamic-security plugin enforce
//! contract 6.1: who may publish and subscribe where.
//!
//! Mosquitto 2.0's plugin does not expand `%u`/`%c` in ACL topics, so each
//! device that sends events has a role of its own (its events and
//! rejections topics), and every device shares the bay-state reader role.

use serde::Serialize;
use serde_json::{Value, json};

use super::topics;
use crate::domain::devices::DeviceKind;
use crate::domain::ids::DeviceId;

/// The role of kerbside's own client: read device events, speak for bays
/// and rejections, administer the plugin.
pub const SERVICE_ROLE: &str = "kerbside-service";

/// The role every device holds: read bay states (all, or one bay's).
pub const BAY_STATES_ROLE: &str = "kerbside-bay-states";

/// One access rule of a role, as the plugin writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acl {
    /// `publishClientSend`, `publishClientReceive`, `subscribeLiteral`,
    /// `subscribePattern`, `unsubscribeLiteral` or `unsubscribePattern`.
    pub acltype: &'static str,
    pub topic: String,
    pub priority: i32,
    pub allow: bool,
}

fn allow(acltype: &'static str, topic: impl Into<String>) -> Acl {
    Acl {
        acltype,
        topic: topic.into(),
        priority: 0,
        allow: true,
    }
}

/// A role: a name and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub rolename: String,
    pub acls: Vec<Acl>,
}

/// kerbside's own role. Everything not allowed is denied (the
/// configuration's default access is deny for every kind of access).
pub fn service_role() -> Role {
    Role {
        rolename: SERVICE_ROLE.into(),
        acls: vec![
            allow("subscribeLiteral", topics::EVENTS_FILTER),
            allow("unsubscribeLiteral", topics::EVENTS_FILTER),
            allow("publishClientReceive", topics::EVENTS_FILTER),
            allow("publishClientSend", topics::BAY_STATES_FILTER),
            allow("publishClientSend", topics::REJECTIONS_FILTER),
            allow("publishClientSend", topics::DYNSEC_FILTER),
            allow("subscribeLiteral", topics::DYNSEC_RESPONSES),
            allow("unsubscribeLiteral", topics::DYNSEC_RESPONSES),
            allow("publishClientReceive", topics::DYNSEC_RESPONSES),
        ],
    }
}

/// The bay-state reader role: the wildcard filter (a literal rule: the
/// plugin matches a subscription's filter as a topic against pattern
/// rules, so a filter with a wildcard matches only a literal rule) or one
/// bay's state (a pattern rule); nothing else under `kerbside/`.
pub fn bay_states_role() -> Role {
    Role {
        rolename: BAY_STATES_ROLE.into(),
        acls: vec![
            allow("subscribeLiteral", topics::BAY_STATES_FILTER),
            allow("subscribePattern", topics::BAY_STATES_FILTER),
            allow("unsubscribeLiteral", topics::BAY_STATES_FILTER),
            allow("unsubscribePattern", topics::BAY_STATES_FILTER),
            allow("publishClientReceive", topics::BAY_STATES_FILTER),
        ],
    }
}

/// The name of a sending device's own role.
pub fn device_role_name(id: &DeviceId) -> String {
    format!("kerbside-device-{id}")
}

/// A device's own role, for kinds that send events: publish its events,
/// read its rejections. `None` for observers, who only read bay states.
pub fn device_role(id: &DeviceId, kind: DeviceKind) -> Option<Role> {
    kind.sends_events().then(|| Role {
        rolename: device_role_name(id),
        acls: vec![
            allow("publishClientSend", topics::events(id.as_str())),
            allow("subscribeLiteral", topics::rejections(id.as_str())),
            allow("unsubscribeLiteral", topics::rejections(id.as_str())),
            allow("publishClientReceive", topics::rejections(id.as_str())),
        ],
    })
}

/// The roles a device's client holds.
pub fn device_roles(id: &DeviceId, kind: DeviceKind) -> Vec<String> {
    let mut roles = vec![BAY_STATES_ROLE.to_owned()];
    roles.extend(device_role(id, kind).map(|r| r.rolename));
    roles
}

/// `[{"rolename": ...}]`, as clients list their roles.
pub fn role_refs(roles: &[String]) -> Value {
    Value::Array(roles.iter().map(|r| json!({"rolename": r})).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    #[test]
    fn a_sender_has_its_own_role_and_reads_bay_states() {
        let d = id("s-1");
        assert_eq!(
            device_roles(&d, DeviceKind::Sensor),
            vec![BAY_STATES_ROLE.to_owned(), "kerbside-device-s-1".to_owned()]
        );
        let role = device_role(&d, DeviceKind::Handheld).unwrap();
        let send: Vec<&str> = role
            .acls
            .iter()
            .filter(|a| a.acltype == "publishClientSend")
            .map(|a| a.topic.as_str())
            .collect();
        assert_eq!(send, vec!["kerbside/v1/devices/s-1/events"]);
        assert!(role.acls.iter().all(|a| a.allow));
    }

    #[test]
    fn an_observer_only_reads_bay_states() {
        let o = id("sign-1");
        assert!(device_role(&o, DeviceKind::Observer).is_none());
        assert_eq!(
            device_roles(&o, DeviceKind::Observer),
            vec![BAY_STATES_ROLE.to_owned()]
        );
        assert!(
            bay_states_role()
                .acls
                .iter()
                .all(|a| a.topic == topics::BAY_STATES_FILTER && a.acltype != "publishClientSend")
        );
    }

    #[test]
    fn only_kerbside_may_speak_for_bays_and_rejections() {
        let sends: Vec<String> = service_role()
            .acls
            .into_iter()
            .filter(|a| a.acltype == "publishClientSend")
            .map(|a| a.topic)
            .collect();
        assert!(sends.contains(&topics::BAY_STATES_FILTER.to_owned()));
        assert!(sends.contains(&topics::REJECTIONS_FILTER.to_owned()));
        assert!(sends.contains(&topics::DYNSEC_FILTER.to_owned()));
    }
}
