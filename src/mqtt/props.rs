//! Properties of what devices and admins send about devices: broker
//! credentials, topics and filters, registration bodies. Whatever arrives,
//! the answer is a value or a refusal, never a panic, and the topic rules
//! let a device speak only for itself.

use proptest::prelude::*;

use super::broker::{matches, valid_filter};
use super::topics::{BAY_STATES_FILTER, bay_state, events, may_publish, may_subscribe, rejections};
use crate::domain::devices::{
    DeviceKind, Digest, Principal, check_name, digest_of, verify_password,
};
use crate::domain::ids::DeviceId;
use crate::domain::props::{config, text};
use crate::http::devices::{NewDevice, validate};

/// A device id by the contract's rule.
fn device_id() -> impl Strategy<Value = DeviceId> {
    "[A-Za-z0-9._-]{1,64}".prop_map(|s| DeviceId::parse(&s).expect("valid by construction"))
}

fn kind() -> impl Strategy<Value = DeviceKind> {
    prop::sample::select(
        &[
            DeviceKind::Sensor,
            DeviceKind::Handheld,
            DeviceKind::Observer,
        ][..],
    )
}

/// A topic or filter: levels from kerbside's own vocabulary, wildcards and
/// anything at all.
fn topic() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        3 => prop::sample::select(
            &["kerbside", "v1", "devices", "bays", "events", "rejections", "state", "+", "#",
              "", "$SYS", "$CONTROL", "QF-N-001", "s-1", "s-2"][..]
        ).prop_map(str::to_owned),
        1 => text(),
    ];
    prop::collection::vec(level, 1..7).prop_map(|l| l.join("/"))
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn a_device_publishes_nowhere_but_its_own_events_topic(
        id in device_id(), kind in kind(), t in topic()
    ) {
        let who = Principal::Device { id: id.clone(), kind };
        let allowed = may_publish(&who, &t);
        prop_assert_eq!(allowed, kind.sends_events() && t == events(id.as_str()));
        prop_assert!(may_publish(&who, &events(id.as_str())) == kind.sends_events());
    }

    #[test]
    fn a_device_subscribes_only_where_it_sees_bay_states_or_its_own_rejections(
        id in device_id(), kind in kind(), f in topic(), probe in topic()
    ) {
        let who = Principal::Device { id: id.clone(), kind };
        if may_subscribe(&who, &f) && valid_filter(&f) && matches(&f, &probe) {
            let own_rejections = kind.sends_events() && probe == rejections(id.as_str());
            prop_assert!(matches(BAY_STATES_FILTER, &probe) || own_rejections,
                "{f} lets {id} read {probe}");
        }
    }

    #[test]
    fn nobody_but_kerbside_speaks_for_a_bay(bay in "[A-Za-z0-9._-]{1,64}", id in device_id(), kind in kind()) {
        let t = bay_state(&bay);
        prop_assert!(!may_publish(&Principal::Guest, &t));
        let device = Principal::Device { id, kind };
        prop_assert!(!may_publish(&device, &t));
        prop_assert!(may_publish(&Principal::Service, &t));
    }

    #[test]
    fn filters_and_topics_never_panic_and_a_topic_matches_itself(f in topic(), t in topic()) {
        let _ = matches(&f, &t);
        let _ = valid_filter(&f);
        if !t.contains(['+', '#']) && !t.starts_with('$') {
            prop_assert!(matches(&t, &t));
            prop_assert!(matches("#", &t));
        }
    }

    #[test]
    fn any_password_or_digest_text_is_checked_never_a_panic(secret in text(), digest in text()) {
        prop_assert!(!verify_password(&secret, &digest) || Digest::parse(&digest).is_some());
        if let Some(d) = Digest::parse(&digest) {
            prop_assert_eq!(Digest::parse(&d.encode()), Some(d));
        }
    }

    #[test]
    fn any_registration_body_is_accepted_or_refused_with_a_reason(
        device_id in prop_oneof![text(), "[A-Za-z0-9._-]{1,64}"],
        kind in prop_oneof![text(), Just("sensor".to_owned()), Just("observer".to_owned())],
        name in text(),
    ) {
        let body = NewDevice { device_id: device_id.clone(), kind, name };
        match validate(&body) {
            Ok((id, _, name)) => {
                prop_assert_eq!(id.as_str(), device_id.as_str());
                prop_assert!(!name.is_empty() && name.chars().count() <= 200);
                prop_assert!(!name.chars().any(char::is_control));
            }
            Err(why) => prop_assert!(!why.is_empty()),
        }
        let _ = check_name(&body.name);
    }
}

proptest! {
    // PBKDF2 is deliberately slow-ish: fewer cases.
    #![proptest_config(config(300))]

    #[test]
    fn a_password_matches_its_digest_and_nothing_else(secret in text(), other in text()) {
        let d = digest_of(&secret);
        prop_assert!(verify_password(&secret, &d));
        prop_assert_eq!(verify_password(&other, &d), other == secret);
    }
}
