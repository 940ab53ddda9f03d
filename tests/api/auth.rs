//! Access: 401 without a valid token, 403 for the wrong role, public
//! endpoints open to all.

use kerbside::domain::auth::{Role, generate_token};

use crate::helpers::{TestApp, default_now, spawn_app};

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

#[test]
fn whoami_names_any_valid_token_and_refuses_the_rest() {
    let app = spawn_app();
    for role in [Role::Warden, Role::Planner, Role::Admin] {
        let r = app.get_as("/v1/auth/whoami", &app.token(role));
        assert_eq!(r.status, 200, "{role:?}: {}", r.body);
        assert_eq!(
            r.json(),
            serde_json::json!({"name": format!("test {}", role.as_str()),
                               "role": role.as_str(), "expires_at": null})
        );
    }
    let t = generate_token();
    let until = default_now() + chrono::Duration::minutes(30);
    app.store
        .create_token_expiring("王芳", Role::Warden, &t.hash, default_now(), Some(until))
        .unwrap();
    assert_eq!(
        app.get_as("/v1/auth/whoami", &t.secret).json(),
        serde_json::json!({"name": "王芳", "role": "warden",
                           "expires_at": "2026-11-27T02:30:00Z"})
    );

    // Without a token, with a bad one, and once expired: 401, saying why.
    let p = app.get("/v1/auth/whoami").problem(401);
    assert!(p["detail"].as_str().unwrap().contains("Bearer"), "{p}");
    let p = app
        .get_as("/v1/auth/whoami", "kbs_not-a-token")
        .problem(401);
    assert_eq!(p["detail"], "the token is not valid");
    app.get_with("/v1/auth/whoami", "Basic dXNlcjpwYXNz")
        .problem(401);
    app.clock.advance(chrono::Duration::minutes(30));
    let p = app.get_as("/v1/auth/whoami", &t.secret).problem(401);
    assert_eq!(p["detail"], "the token expired at 2026-11-27T02:30:00Z");
}

/// `method path` with `Authorization: auth` if given: the status and the
/// content type.
fn call(app: &TestApp, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{path}", app.base);
    let res = if method == "POST" {
        let mut r = agent.post(&url);
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.send_empty()
    } else {
        let mut r = if method == "GET" {
            agent.get(&url)
        } else {
            agent.delete(&url)
        };
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.call()
    }
    .expect(method);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (res.status().as_u16(), content_type)
}

#[test]
fn every_protected_endpoint_turns_away_strangers_and_the_wrong_roles() {
    let app = spawn_app();
    let tokens = [Role::Warden, Role::Planner, Role::Admin].map(|r| (r, app.token(r)));
    let v = "v-0123456789abcdef";
    let (warden, planner) = (Role::Warden, Role::Planner);
    let endpoints: [(&str, String, &[Role]); 8] = [
        (
            "GET",
            "/v1/roads/qingfeng-road/sessions".into(),
            &[warden, planner],
        ),
        ("GET", VIOLATIONS.into(), &[warden, planner]),
        ("GET", format!("/v1/violations/{v}"), &[warden, planner]),
        ("POST", format!("/v1/violations/{v}/ticket"), &[warden]),
        ("POST", format!("/v1/violations/{v}/dismiss"), &[warden]),
        ("GET", "/v1/devices".into(), &[]),
        ("POST", "/v1/devices".into(), &[]),
        ("DELETE", "/v1/devices/no-such-device".into(), &[]),
    ];
    let unknown = format!("Bearer kbs_{}", "0".repeat(64));
    for (method, path, allowed) in &endpoints {
        for auth in [None, Some(unknown.as_str())] {
            let (status, content_type) = call(&app, method, path, auth);
            assert_eq!(
                (status, content_type.as_str()),
                (401, "application/problem+json"),
                "{method} {path} with {auth:?}"
            );
        }
        for (role, token) in &tokens {
            let (status, _) = call(&app, method, path, Some(&format!("Bearer {token}")));
            if role.may(allowed) {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} as {role:?}: {status}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} as {role:?}");
            }
        }
    }
}
