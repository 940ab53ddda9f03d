DROP TABLE quarantine, plate_key, broker_password_outbox, device_registry, api_tokens,
    violation_disputes, violation_history, violations, parking_sessions, bay_states,
    rejections, events, event_keys, devices, layout_features, bays, layout_revisions, roads;
