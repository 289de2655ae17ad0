//! Access control of the console and the API, route by route, as anonymous, as
//! a signed-in developer of both projects and as an admin: private projects are invisible to
//! strangers everywhere (pages, API, badges, event streams, downloads), every
//! change needs a signed-in caller, and forms without their CSRF token fail.

mod common;
use common::*;
use http::{get, send, sign_in};

const FORM: &str = "application/x-www-form-urlencoded";

struct World {
    k: Kiln,
    pub_build: i64,
    priv_build: i64,
    priv_job: i64,
    priv_run: i64,
    /// alice's session cookie and its CSRF token; alice's API token.
    alice: (String, String),
    alice_token: String,
}

fn world() -> World {
    let mut k = Kiln::start();
    k.agent("a1", &[]);
    let r1 = k.repo("pubrepo", "jobs:\n  j:\n    steps: [echo public-output]\n");
    let r2 = k.repo("privrepo", "jobs:\n  j:\n    steps: [echo secret-output]\n");
    k.add_project("openproj", &r1, &["--public"]);
    k.add_project("hiddenproj", &r2, &[]);
    let pub_build = k.trigger("openproj");
    let priv_build = k.trigger("hiddenproj");
    k.wait_build(pub_build, 60);
    let b = k.wait_build(priv_build, 60);
    let priv_job = b["jobs"][0]["id"].as_i64().unwrap();
    // alice: a plain user made by the admin, who signs in with the form and makes a token.
    let out = k.kiln(&["user", "add", "alice", "--password-stdin"]);
    assert!(!out.status.success(), "user add without stdin must fail");
    k.add_user_with_password("alice", "alice-password-1");
    // alice works on both projects (what members without a role see is the access matrix's test).
    for p in ["openproj", "hiddenproj"] {
        let out = k.kiln(&["project", "grant", p, "alice", "developer"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let alice = sign_in(&k.url, "alice", "alice-password-1");
    let t = send(&k.url, "POST", "/api/v1/tokens", &[("Cookie", &alice.0), ("X-CSRF-Token", &alice.1), ("Content-Type", "application/json")], br#"{"label":"ci"}"#, false);
    assert_eq!(t.status, 200, "{}", t.text());
    let alice_token = serde_json::from_slice::<serde_json::Value>(&t.body).unwrap()["token"].as_str().unwrap().to_string();
    // A private uploaded run.
    let (ct, body) = http::multipart(&[("file", Some("t.sh"), b"echo run-output\n"), ("pipeline", Some(".kiln.yml"), b"jobs:\n  t:\n    steps: [sh t.sh]\n")]);
    let r = send(&k.url, "POST", "/api/v1/projects/hiddenproj/runs", &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", &ct)], &body, false);
    assert_eq!(r.status, 200, "{}", r.text());
    let priv_run = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"].as_i64().unwrap();
    k.wait_build(priv_run, 60);
    World { k, pub_build, priv_build, priv_job, priv_run, alice, alice_token }
}

#[test]
fn every_route_as_anonymous_user_and_admin() {
    let w = world();
    let base = &w.k.url;
    let admin = format!("Bearer {ADMIN}");
    let user = format!("Bearer {}", w.alice_token);
    let anon: &[(&str, &str)] = &[];
    let as_user: &[(&str, &str)] = &[("Authorization", &user)];
    let as_admin: &[(&str, &str)] = &[("Authorization", &admin)];
    let as_cookie: &[(&str, &str)] = &[("Cookie", &w.alice.0)];
    let (pb, sb, sj, sr) = (w.pub_build, w.priv_build, w.priv_job, w.priv_run);

    // (path, anonymous, user, admin): the status each must get.
    let reads: Vec<(String, u16, u16, u16)> = vec![
        ("/".into(), 200, 200, 200),
        ("/projects/openproj".into(), 200, 200, 200),
        ("/projects/hiddenproj".into(), 404, 200, 200),
        (format!("/builds/{pb}"), 200, 200, 200),
        (format!("/builds/{sb}"), 404, 200, 200),
        (format!("/builds/{sb}?partial=1"), 404, 200, 200),
        (format!("/builds/{pb}/tests"), 200, 200, 200),
        (format!("/builds/{sb}/tests"), 404, 200, 200),
        (format!("/api/v1/builds/{sb}/tests"), 404, 200, 200),
        ("/agents".into(), 200, 200, 200),
        ("/queue".into(), 200, 200, 200),
        ("/runs".into(), 200, 200, 200),
        ("/runs/new".into(), 303, 200, 200),
        ("/projects/new".into(), 303, 200, 200),
        ("/account".into(), 303, 200, 200),
        ("/login".into(), 200, 303, 303),
        ("/assets/console.css".into(), 200, 200, 200),
        ("/badge/openproj.svg".into(), 200, 200, 200),
        ("/badge/hiddenproj.svg".into(), 404, 200, 200),
        ("/api/v1/projects".into(), 200, 200, 200),
        ("/api/v1/projects/hiddenproj".into(), 404, 200, 200),
        ("/api/v1/projects/hiddenproj/builds".into(), 404, 200, 200),
        (format!("/api/v1/builds/{sb}"), 404, 200, 200),
        (format!("/api/v1/jobs/{sj}/log"), 404, 200, 200),
        (format!("/api/v1/jobs/{sj}/raw"), 404, 200, 200),
        (format!("/api/v1/builds/{sr}/package"), 404, 200, 200),
        ("/api/v1/agents".into(), 200, 200, 200),
        ("/api/v1/me".into(), 200, 200, 200),
        ("/api/v1/users".into(), 401, 403, 200),
        ("/api/v1/tokens".into(), 401, 200, 200),
        (format!("/api/v1/agent/packages/{sr}"), 401, 401, 401),
    ];
    for (path, a, u, ad) in &reads {
        for (who, h, want) in [("anonymous", anon, a), ("user", as_user, u), ("admin", as_admin, ad)] {
            let r = get(base, path, h);
            assert_eq!(r.status, *want, "GET {path} as {who}: {}", r.text().chars().take(300).collect::<String>());
        }
        // A session cookie sees what the user's token sees.
        assert_eq!(get(base, path, as_cookie).status, *u, "GET {path} with alice's session cookie");
    }
    // Event streams: a private build's stream is 404 to strangers.
    assert_eq!(send(base, "GET", &format!("/api/v1/events?build={sb}"), anon, b"", true).status, 404);
    let sse = send(base, "GET", &format!("/api/v1/events?build={sb}"), as_user, b"", true);
    assert_eq!(sse.status, 200);
    assert!(sse.header("content-type").unwrap_or("").starts_with("text/event-stream"));
    assert_eq!(send(base, "GET", "/api/v1/events", anon, b"", true).status, 200);

    // What anonymous pages and lists show: never the private project or its output.
    for path in ["/", "/runs", "/queue", "/agents", "/api/v1/projects"] {
        let body = get(base, path, anon).text();
        assert!(!body.contains("hiddenproj"), "anonymous {path} reveals the private project");
    }
    assert!(get(base, "/", as_user).text().contains("hiddenproj"), "a member sees the private project");
    assert!(get(base, "/runs", as_user).text().contains("hiddenproj"));
    assert!(get(base, &format!("/api/v1/jobs/{sj}/raw"), as_user).text().contains("secret-output"));
    assert!(get(base, "/badge/openproj.svg", anon).text().contains("<svg"));

    // Changes: anonymous callers are refused (401 on the API, sign-in redirect on pages), users may, admins only where it says so.
    let j = [("Content-Type", "application/json")];
    let post = |path: &str, h: &[(&str, &str)], body: &str| {
        let mut hs = h.to_vec();
        hs.extend_from_slice(&j);
        send(base, "POST", path, &hs, body.as_bytes(), false).status
    };
    let repo = w.k.path("pubrepo");
    let create = format!(r#"{{"name":"newproj","repo":"{}"}}"#, repo.display());
    assert_eq!(post("/api/v1/projects", anon, &create), 401);
    assert_eq!(post("/api/v1/projects", as_user, &create), 200);
    assert_eq!(post("/api/v1/projects/openproj/builds", anon, "{}"), 401);
    assert_eq!(post("/api/v1/projects/hiddenproj/builds", anon, "{}"), 404, "a private name is not confirmed to anonymous callers");
    assert_eq!(post(&format!("/api/v1/builds/{pb}/cancel"), anon, "{}"), 401);
    assert_eq!(post("/api/v1/agents/a1/drain", anon, "{}"), 401);
    assert_eq!(post("/api/v1/agents/a1/drain", as_user, "{}"), 403);
    assert_eq!(post("/api/v1/users", anon, r#"{"name":"bob"}"#), 401);
    assert_eq!(post("/api/v1/users", as_user, r#"{"name":"bob"}"#), 403);
    assert_eq!(post("/api/v1/users", as_admin, r#"{"name":"bob"}"#), 200);
    assert_eq!(post("/api/v1/tokens", anon, "{}"), 401);
    // A token alone cannot change its user's password: the current one is needed (K-23).
    assert_eq!(post("/api/v1/users/alice/password", as_user, r#"{"password":"alice-password-2"}"#), 400);
    assert_eq!(post("/api/v1/users/alice/password", as_user, r#"{"password":"alice-password-2","current":"wrong-password"}"#), 403);
    assert_eq!(post("/api/v1/users/alice/password", as_user, r#"{"password":"alice-password-2","current":"alice-password-1"}"#), 200);
    assert_eq!(post("/api/v1/users/bob/password", as_user, r#"{"password":"not-yours-123"}"#), 403);
    let (ct, body) = http::multipart(&[("file", Some("a.txt"), b"x")]);
    assert_eq!(send(base, "POST", "/api/v1/projects/openproj/runs", &[("Content-Type", &ct)], &body, false).status, 401);
    assert_eq!(send(base, "DELETE", "/api/v1/tokens/1", anon, b"", false).status, 401);
    for path in ["/projects/new", "/projects/openproj/trigger", &format!("/builds/{pb}/rebuild"), &format!("/builds/{pb}/cancel"), "/agents/a1/drain", "/account/tokens"] {
        let r = send(base, "POST", path, &[("Content-Type", FORM)], b"_csrf=x&name=p&repo=r", false);
        assert_eq!(r.status, 303, "anonymous POST {path}");
        assert!(r.header("location").unwrap_or("").starts_with("/login"), "anonymous POST {path} goes to sign-in");
    }
    let builds = w.k.json(&["builds", "openproj"]);
    assert_eq!(builds.as_array().unwrap().len(), 1, "no anonymous form started a build");
    // Admin drain through the API works.
    assert_eq!(post("/api/v1/agents/a1/drain", as_admin, "{}"), 200);
}

#[test]
fn forms_and_cookie_calls_without_their_csrf_token_are_refused() {
    let w = world();
    let base = &w.k.url;
    let (cookie, csrf) = &w.alice;
    let pb = w.pub_build;
    // API call with the session cookie but no X-CSRF-Token: refused.
    let r = send(base, "POST", "/api/v1/tokens", &[("Cookie", cookie), ("Content-Type", "application/json")], b"{}", false);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("CSRF"));
    let r = send(base, "POST", "/api/v1/projects/openproj/builds", &[("Cookie", cookie), ("Content-Type", "application/json"), ("X-CSRF-Token", "wrong")], b"{}", false);
    assert_eq!(r.status, 403);
    // Console forms with a wrong or missing token: refused, nothing happens.
    for body in ["".to_string(), "_csrf=forged".to_string()] {
        for path in [format!("/builds/{pb}/rebuild"), "/projects/openproj/trigger".into(), "/account/tokens".into(), "/logout".into()] {
            let r = send(base, "POST", &path, &[("Cookie", cookie), ("Content-Type", FORM)], body.as_bytes(), false);
            assert_eq!(r.status, 403, "POST {path} with body {body:?}");
        }
    }
    assert_eq!(w.k.json(&["builds", "openproj"]).as_array().unwrap().len(), 1, "no forged form started a build");
    // The upload form: the CSRF field must come first and match.
    let (ct, body) = http::multipart(&[("_csrf", None, b"forged"), ("project", None, b"openproj"), ("file", Some("a.sh"), b"echo x")]);
    assert_eq!(send(base, "POST", "/runs/new", &[("Cookie", cookie), ("Content-Type", &ct)], &body, false).status, 403);
    // Sign-in without the login form's cookie: refused.
    let r = send(base, "POST", "/login", &[("Content-Type", FORM)], b"_csrf=abc&name=alice&password=alice-password-1", false);
    assert_eq!(r.status, 403);
    // With the right token the same form works.
    let r = send(base, "POST", &format!("/builds/{pb}/rebuild"), &[("Cookie", cookie), ("Content-Type", FORM)], format!("_csrf={csrf}").as_bytes(), false);
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap().starts_with("/builds/"));
    let r = send(base, "POST", "/api/v1/projects/openproj/builds", &[("Cookie", cookie), ("Content-Type", "application/json"), ("X-CSRF-Token", csrf)], b"{}", false);
    assert_eq!(r.status, 200, "{}", r.text());
    // Signing out ends the session for good.
    let r = send(base, "POST", "/logout", &[("Cookie", cookie), ("Content-Type", FORM)], format!("_csrf={csrf}").as_bytes(), false);
    assert_eq!(r.status, 303);
    assert_eq!(get(base, "/projects/hiddenproj", &[("Cookie", cookie)]).status, 404);
}

#[test]
fn sign_in_cookie_is_http_only_and_wrong_passwords_fail() {
    let k = Kiln::start_with(&["--admin-password", "first-admin-pw"]);
    let form = get(&k.url, "/login", &[]);
    let pre = form.cookie("kiln_csrf").unwrap();
    let csrf = http::csrf_of(&form.text());
    let bad = send(&k.url, "POST", "/login", &[("Content-Type", FORM), ("Cookie", &format!("kiln_csrf={pre}"))], format!("_csrf={csrf}&name=admin&password=nope").as_bytes(), false);
    assert_eq!(bad.status, 401);
    assert!(bad.cookie("kiln_session").is_none());
    let ok = send(&k.url, "POST", "/login", &[("Content-Type", FORM), ("Cookie", &format!("kiln_csrf={pre}"))], format!("_csrf={csrf}&name=admin&password=first-admin-pw&next=//evil.example").as_bytes(), false);
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location"), Some("/"), "next must stay on this site");
    let set = ok.headers.iter().find(|(h, v)| h.eq_ignore_ascii_case("set-cookie") && v.starts_with("kiln_session=")).unwrap().1.clone();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
    assert!(!set.contains("Secure"), "plain http: no Secure flag ({set})");
    let https = send(&k.url, "GET", "/login", &[("X-Forwarded-Proto", "https")], b"", false);
    assert!(https.headers.iter().any(|(h, v)| h.eq_ignore_ascii_case("set-cookie") && v.contains("Secure")), "behind https the cookies are Secure");
    let me = get(&k.url, "/api/v1/me", &[("Cookie", &format!("kiln_session={}", ok.cookie("kiln_session").unwrap()))]);
    assert!(me.text().contains("\"admin\":true"), "{}", me.text());
}

#[test]
fn an_idle_session_ends_and_a_used_one_lives_on() {
    let k = Kiln::start_with(&["--admin-password", "first-admin-pw", "--session-idle", "3"]);
    let (cookie, _) = sign_in(&k.url, "admin", "first-admin-pw");
    let me = || get(&k.url, "/api/v1/me", &[("Cookie", &cookie)]).text();
    // Used every 1.5 s, the session outlives its 3 s idle period…
    for _ in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(me().contains("\"admin\":true"), "a session in use stays signed in: {}", me());
    }
    // …and ends once left alone for longer than that.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(!me().contains("\"admin\":true"), "an idle session ended: {}", me());
    assert_eq!(get(&k.url, "/account", &[("Cookie", &cookie)]).status, 303, "the console asks to sign in again");
}
