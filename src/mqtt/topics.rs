//! Every MQTT topic string is made here (contract section 2).

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
