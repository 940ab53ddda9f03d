//! Diesel table definitions, kept by hand in step with `migrations/`.

diesel::table! {
    roads (road_id) {
        road_id -> Text,
        current_revision -> BigInt,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    layout_revisions (road_id, revision) {
        road_id -> Text,
        revision -> BigInt,
        created_at_ms -> BigInt,
        created_by -> Text,
        based_on -> Nullable<BigInt>,
        bays -> BigInt,
        barriers -> BigInt,
    }
}

diesel::table! {
    bays (bay_id) {
        bay_id -> Text,
        road_id -> Text,
        first_revision -> BigInt,
        retired_revision -> Nullable<BigInt>,
    }
}

diesel::table! {
    layout_features (road_id, revision, feature_id) {
        road_id -> Text,
        revision -> BigInt,
        ordinal -> BigInt,
        feature_id -> Text,
        feature_type -> Text,
        kind -> Nullable<Text>,
        max_stay_minutes -> Nullable<BigInt>,
        enforced_hours -> Nullable<Text>,
        feature -> Text,
        min_lon -> Double,
        min_lat -> Double,
        max_lon -> Double,
        max_lat -> Double,
    }
}

diesel::table! {
    devices (device_id) {
        device_id -> Text,
        first_seen_ms -> BigInt,
        last_seen_ms -> BigInt,
    }
}

diesel::table! {
    events (seq) {
        seq -> BigInt,
        device_id -> Text,
        event_id -> Text,
        event_type -> Text,
        observed_at_ms -> BigInt,
        received_at_ms -> BigInt,
        bay_id -> Nullable<Text>,
        road_id -> Nullable<Text>,
        lon -> Nullable<Double>,
        lat -> Nullable<Double>,
        plate -> Nullable<Text>,
        category -> Nullable<Text>,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    rejections (seq) {
        seq -> BigInt,
        device_id -> Text,
        event_id -> Nullable<Text>,
        reason -> Text,
        detail -> Text,
        payload -> Nullable<Text>,
        received_at_ms -> BigInt,
        once_key -> Nullable<Text>,
    }
}

diesel::table! {
    bay_states (bay_id) {
        bay_id -> Text,
        status -> Text,
        since_ms -> BigInt,
        status_event_ms -> Nullable<BigInt>,
        last_event_at_ms -> BigInt,
        updated_at_ms -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    parking_sessions (session_id) {
        session_id -> BigInt,
        bay_id -> Text,
        road_id -> Text,
        started_at_ms -> BigInt,
        ended_at_ms -> Nullable<BigInt>,
        source -> Text,
        plate -> Nullable<Text>,
    }
}

diesel::table! {
    violations (violation_id) {
        violation_id -> Text,
        kind -> Text,
        road_id -> Text,
        bay_id -> Nullable<Text>,
        lon -> Nullable<Double>,
        lat -> Nullable<Double>,
        plate -> Nullable<Text>,
        started_at_ms -> BigInt,
        detected_at_ms -> BigInt,
        ended_at_ms -> Nullable<BigInt>,
        source -> Nullable<Text>,
        last_seen_ms -> Nullable<BigInt>,
        note -> Nullable<Text>,
        status -> Text,
        evidence -> Text,
        updated_at_ms -> BigInt,
    }
}

diesel::table! {
    violation_history (seq) {
        seq -> BigInt,
        violation_id -> Text,
        status -> Text,
        at_ms -> BigInt,
        actor -> Nullable<Text>,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    api_tokens (token_id) {
        token_id -> BigInt,
        name -> Text,
        role -> Text,
        token_hash -> Text,
        created_at_ms -> BigInt,
        revoked_at_ms -> Nullable<BigInt>,
        expires_at_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    device_registry (device_id) {
        device_id -> Text,
        kind -> Text,
        name -> Text,
        password_digest -> Text,
        created_at_ms -> BigInt,
        revoked_at_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    broker_password_outbox (device_id) {
        device_id -> Text,
        password -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    violation_disputes (violation_id) {
        violation_id -> Text,
        since_ms -> BigInt,
    }
}

diesel::table! {
    plate_key (id) {
        id -> Integer,
        secret -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    quarantine (seq) {
        seq -> BigInt,
        device_id -> Text,
        topic -> Text,
        payload -> Binary,
        error -> Text,
        received_at_ms -> BigInt,
        quarantined_at_ms -> BigInt,
    }
}

diesel::table! {
    parties (party_id) {
        party_id -> Text,
        name -> Text,
        kind -> Text,
        area -> Nullable<Text>,
        webhook_url -> Text,
        webhook_format -> Text,
        webhook_secret -> Text,
        robot_secret -> Nullable<Text>,
        deadline_minutes -> Integer,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    complaints (complaint_id) {
        complaint_id -> Text,
        category -> Text,
        lon -> Double,
        lat -> Double,
        text -> Text,
        contact -> Nullable<Text>,
        status -> Text,
        response -> Nullable<Text>,
        case_id -> Nullable<Text>,
        created_at_ms -> BigInt,
        updated_at_ms -> BigInt,
    }
}

diesel::table! {
    cases (case_id) {
        case_id -> Text,
        kind -> Text,
        road_id -> Nullable<Text>,
        lon -> Nullable<Double>,
        lat -> Nullable<Double>,
        status -> Text,
        party_id -> Nullable<Text>,
        opened_at_ms -> BigInt,
        due_at_ms -> Nullable<BigInt>,
        resolved_at_ms -> Nullable<BigInt>,
        source -> Text,
        violation_id -> Nullable<Text>,
        complaint_id -> Nullable<Text>,
        note -> Nullable<Text>,
        updated_at_ms -> BigInt,
    }
}

diesel::table! {
    case_history (seq) {
        seq -> BigInt,
        case_id -> Text,
        at_ms -> BigInt,
        actor -> Nullable<Text>,
        action -> Text,
        status -> Text,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    notifications (notification_id) {
        notification_id -> BigInt,
        case_id -> Text,
        party_id -> Text,
        event -> Text,
        body -> Text,
        created_at_ms -> BigInt,
        next_attempt_at_ms -> Nullable<BigInt>,
        attempts -> Integer,
        delivered_at_ms -> Nullable<BigInt>,
        gave_up_at_ms -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    notification_attempts (seq) {
        seq -> BigInt,
        notification_id -> BigInt,
        at_ms -> BigInt,
        http_status -> Nullable<Integer>,
        error -> Nullable<Text>,
        duration_ms -> BigInt,
    }
}

diesel::table! {
    occupancy_hours (road_id, hour_ms, kind) {
        road_id -> Text,
        hour_ms -> BigInt,
        kind -> Text,
        bays -> BigInt,
        bay_ms -> BigInt,
        known_ms -> BigInt,
        occupied_ms -> BigInt,
        sessions -> BigInt,
        ended_sessions -> BigInt,
        dwell_ms -> BigInt,
    }
}

diesel::table! {
    history_rollup (road_id) {
        road_id -> Text,
        until_ms -> BigInt,
    }
}

diesel::table! {
    history_marks (road_id, hour_ms) {
        road_id -> Text,
        hour_ms -> BigInt,
        renewals -> BigInt,
    }
}

diesel::joinable!(notifications -> parties (party_id));

diesel::allow_tables_to_appear_in_same_query!(
    roads,
    layout_revisions,
    bays,
    layout_features,
    devices,
    events,
    rejections,
    bay_states,
    parking_sessions,
    violations,
    violation_history,
    api_tokens,
    device_registry,
    broker_password_outbox,
    violation_disputes,
    plate_key,
    quarantine,
    parties,
    complaints,
    cases,
    case_history,
    notifications,
    notification_attempts,
    occupancy_hours,
    history_rollup,
    history_marks,
);
