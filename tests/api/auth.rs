//! Access: 401 without a valid token, 403 for the wrong role, public
//! endpoints open to all.

use kerbside::domain::auth::{Role, generate_token};

use crate::helpers::{default_now, spawn_app};

const VIOLATIONS: &str = "/v1/roads/qingfeng-road/violations";

#[test]
fn protected_endpoints_need_a_token() {
    let app = spawn_app();
    let p = app.get(VIOLATIONS).problem(401);
    assert!(p["detail"].as_str().unwrap().contains("Bearer"));
    assert_eq!(
        app.get(VIOLATIONS).header("www-authenticate"),
        Some("Bearer realm=\"kerbside\"")
    );
}

#[test]
fn malformed_and_unknown_tokens_are_401() {
    let app = spawn_app();
    for header in [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "kbs_abc",
        "Bearer kbs_0000",
    ] {
        app.get_with(VIOLATIONS, header).problem(401);
    }
}

#[test]
fn wardens_planners_and_admins_read_violations() {
    let app = spawn_app();
    for role in [Role::Warden, Role::Planner, Role::Admin] {
        let r = app.get_as(VIOLATIONS, &app.token(role));
        assert_eq!(r.status, 200, "{role:?}: {}", r.body);
        assert!(r.json()["violations"].as_array().unwrap().is_empty());
        let r = app.get_as(&format!("{VIOLATIONS}?status=all"), &app.token(role));
        assert_eq!(r.status, 200);
    }
}

#[test]
fn violations_check_the_road_and_the_status_filter() {
    let app = spawn_app();
    let t = app.token(Role::Warden);
    app.get_as("/v1/roads/nowhere/violations", &t).problem(404);
    app.get_as(&format!("{VIOLATIONS}?status=maybe"), &t)
        .problem(400);
}

#[test]
fn a_bearer_scheme_is_case_insensitive() {
    let app = spawn_app();
    let t = app.token(Role::Warden);
    assert_eq!(app.get_with(VIOLATIONS, &format!("bearer {t}")).status, 200);
}

#[test]
fn public_endpoints_need_no_token() {
    let app = spawn_app();
    app.wait_for_broker();
    for path in [
        "/healthz",
        "/v1/roads",
        "/v1/roads/qingfeng-road/layout",
        "/v1/roads/qingfeng-road/layout/revisions",
        "/v1/roads/qingfeng-road/occupancy",
        "/v1/roads/qingfeng-road/bays",
        "/v1/bays/QF-N-040",
    ] {
        assert_eq!(app.get(path).status, 200, "{path}");
    }
}

#[test]
fn an_expired_token_is_401_saying_so() {
    let app = spawn_app();
    let t = generate_token();
    let until = default_now() + chrono::Duration::hours(1);
    app.store
        .create_token_expiring("temp", Role::Warden, &t.hash, default_now(), Some(until))
        .unwrap();
    assert_eq!(app.get_as(VIOLATIONS, &t.secret).status, 200);
    app.clock.advance(chrono::Duration::hours(1));
    let p = app.get_as(VIOLATIONS, &t.secret).problem(401);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("expired at 2026-11-27T03:00:00Z"),
        "{p}"
    );
}
