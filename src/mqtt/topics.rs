//! Every MQTT topic string is made here (contract section 2), with the
//! rules of who may publish and subscribe where (section 6.1).

use crate::domain::devices::Principal;

/// The filter kerbside subscribes to: every device's events.
pub const EVENTS_FILTER: &str = "kerbside/v1/devices/+/events";

/// The device segment of an events topic, if `topic` is one.
pub fn device_of_events_topic(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("kerbside/v1/devices/")?
        .strip_suffix("/events")
        .filter(|d| !d.is_empty() && !d.contains('/'))
}

/// Where a device's events are published.
pub fn events(device: &str) -> String {
    format!("kerbside/v1/devices/{device}/events")
}

/// Where a device is told of its rejected events.
pub fn rejections(device: &str) -> String {
    format!("kerbside/v1/devices/{device}/rejections")
}

/// A bay's retained state.
pub fn bay_state(bay_id: &str) -> String {
    format!("kerbside/v1/bays/{bay_id}/state")
}

/// The filter for every bay's retained state.
pub const BAY_STATES_FILTER: &str = "kerbside/v1/bays/+/state";

/// Everything under this prefix is kerbside's to publish.
pub const BAYS_PREFIX: &str = "kerbside/v1/bays/";

/// The filter matching every device's rejections topic (kerbside publishes
/// there).
pub const REJECTIONS_FILTER: &str = "kerbside/v1/devices/+/rejections";

/// Where Mosquitto's dynamic-security plugin takes commands.
pub const DYNSEC_COMMANDS: &str = "$CONTROL/dynamic-security/v1";

/// Where Mosquitto's dynamic-security plugin answers them.
pub const DYNSEC_RESPONSES: &str = "$CONTROL/dynamic-security/v1/response";

/// The filter for everything the dynamic-security plugin listens on.
pub const DYNSEC_FILTER: &str = "$CONTROL/dynamic-security/#";

/// Whether `topic` is a rejections topic (kerbside's to publish).
fn is_rejections(topic: &str) -> bool {
    topic
        .strip_prefix("kerbside/v1/devices/")
        .and_then(|r| r.strip_suffix("/rejections"))
        .is_some_and(|d| !d.contains('/'))
}

/// Whether `filter` only ever matches bay state topics: the wildcard
/// filter, or one bay's state.
fn only_bay_states(filter: &str) -> bool {
    filter == BAY_STATES_FILTER
        || filter
            .strip_prefix(BAYS_PREFIX)
            .and_then(|r| r.strip_suffix("/state"))
            .is_some_and(|b| !b.is_empty() && !b.contains(['/', '+', '#']))
}

/// Whether `who` may publish to `topic` (contract 6.1): a device only to
/// its own events topic; a guest of an open broker anywhere except where
/// kerbside speaks (bay states, rejections); kerbside anywhere.
pub fn may_publish(who: &Principal, topic: &str) -> bool {
    match who {
        Principal::Service => true,
        Principal::Device { id, kind } => kind.sends_events() && topic == events(id.as_str()),
        Principal::Guest => !topic.starts_with(BAYS_PREFIX) && !is_rejections(topic),
    }
}

/// Whether `who` may subscribe to `filter` (contract 6.1): a sensor or
/// handheld to its own rejections and to bay states, an observer to bay
/// states only; guests and kerbside to anything.
pub fn may_subscribe(who: &Principal, filter: &str) -> bool {
    match who {
        Principal::Service | Principal::Guest => true,
        Principal::Device { id, kind } => {
            only_bay_states(filter) || (kind.sends_events() && filter == rejections(id.as_str()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::devices::DeviceKind;
    use crate::domain::ids::DeviceId;

    #[test]
    fn device_round_trips_through_its_topic() {
        assert_eq!(device_of_events_topic(&events("s-1")), Some("s-1"));
        assert_eq!(device_of_events_topic("kerbside/v1/devices//events"), None);
        assert_eq!(
            device_of_events_topic("kerbside/v1/devices/a/b/events"),
            None
        );
        assert_eq!(device_of_events_topic("kerbside/v1/bays/x/state"), None);
    }

    fn device(id: &str, kind: DeviceKind) -> Principal {
        Principal::Device {
            id: DeviceId::parse(id).unwrap(),
            kind,
        }
    }

    #[test]
    fn a_device_publishes_only_its_own_events() {
        let s = device("s-1", DeviceKind::Sensor);
        assert!(may_publish(&s, "kerbside/v1/devices/s-1/events"));
        assert!(!may_publish(&s, "kerbside/v1/devices/s-2/events"));
        assert!(!may_publish(&s, "kerbside/v1/devices/s-1/rejections"));
        assert!(!may_publish(&s, "kerbside/v1/bays/QF-N-001/state"));
        assert!(!may_publish(&s, "kerbside/v1/devices/+/events"));
        assert!(!may_publish(&s, "anything/else"));
        let o = device("sign-1", DeviceKind::Observer);
        assert!(!may_publish(&o, "kerbside/v1/devices/sign-1/events"));
    }

    #[test]
    fn a_device_reads_bay_states_and_its_own_rejections() {
        let h = device("h-1", DeviceKind::Handheld);
        assert!(may_subscribe(&h, BAY_STATES_FILTER));
        assert!(may_subscribe(&h, "kerbside/v1/bays/QF-N-001/state"));
        assert!(may_subscribe(&h, "kerbside/v1/devices/h-1/rejections"));
        for f in [
            "kerbside/v1/devices/h-2/rejections",
            "kerbside/v1/devices/+/rejections",
            "kerbside/v1/devices/+/events",
            "kerbside/#",
            "#",
            "kerbside/v1/bays/#",
            "kerbside/v1/bays/+/+",
        ] {
            assert!(!may_subscribe(&h, f), "{f}");
        }
        let o = device("sign-1", DeviceKind::Observer);
        assert!(may_subscribe(&o, BAY_STATES_FILTER));
        assert!(!may_subscribe(&o, "kerbside/v1/devices/sign-1/rejections"));
    }

    #[test]
    fn only_kerbside_speaks_for_bays_and_rejections() {
        for t in [
            "kerbside/v1/bays/QF-N-001/state",
            "kerbside/v1/devices/s-1/rejections",
        ] {
            assert!(!may_publish(&Principal::Guest, t), "{t}");
            assert!(may_publish(&Principal::Service, t), "{t}");
        }
        assert!(may_publish(
            &Principal::Guest,
            "kerbside/v1/devices/any/events"
        ));
        assert!(may_subscribe(&Principal::Guest, "#"));
    }
}
