//! The settings as an operator sets them: environment variables read by the real binary.

fn check_config(env: &[(&str, &str)]) -> (bool, String) {
    let mut command = crate::helpers::gateway_command();
    command.arg("check-config");
    command.envs(env.iter().copied());
    let output = command.output().expect("the gateway binary runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

const PRODUCTION: [(&str, &str); 6] = [
    ("PARTNER_GATEWAY__MODE", "production"),
    // check-config does not open it.
    (
        "PARTNER_GATEWAY__STORE__PATH",
        "/nonexistent/partner-gateway.db",
    ),
    (
        "PARTNER_GATEWAY__PARTNER_TOKEN__TENANT_ID",
        "contoso-partner",
    ),
    ("PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_ID", "gateway-app"),
    (
        "PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_SECRET",
        "secret-never-printed",
    ),
    (
        "PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN",
        "refresh-never-printed",
    ),
];

#[test]
fn trusted_issuers_come_from_one_json_variable() {
    let issuers = r#"[
        {"issuer": "https://sts.windows.net/t/", "audiences": ["api://gw"],
         "discovery_url": "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration"},
        {"issuer": "https://login.microsoftonline.com/t/v2.0", "audiences": ["gw-id"],
         "jwks_url": "https://login.microsoftonline.com/t/discovery/v2.0/keys", "algorithms": ["RS256"]}
    ]"#;
    let mut env = PRODUCTION.to_vec();
    env.push(("PARTNER_GATEWAY__CALLER_AUTH__ISSUERS", issuers));
    env.push((
        "PARTNER_GATEWAY__CALLER_AUTH__ALLOWED_APP_IDS",
        "app-a,app-b",
    ));
    env.push(("PARTNER_GATEWAY__CALLER_AUTH__READ__SCOPES", "Custom.Read"));
    let (ok, text) = check_config(&env);
    assert!(ok, "{text}");
    for expected in [
        "https://sts.windows.net/t/",
        "https://login.microsoftonline.com/t/v2.0",
        "\"app-b\"",
        "\"Custom.Read\"",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    assert!(!text.contains("never-printed"), "{text}");
}

#[test]
fn production_without_a_trusted_issuer_does_not_start() {
    let (ok, text) = check_config(&PRODUCTION);
    assert!(!ok);
    assert!(
        text.contains("PARTNER_GATEWAY__CALLER_AUTH__ISSUERS"),
        "{text}"
    );
}

#[test]
fn a_malformed_issuer_list_is_named() {
    let mut env = PRODUCTION.to_vec();
    env.push((
        "PARTNER_GATEWAY__CALLER_AUTH__ISSUERS",
        r#"[{"issuer": "x"}"#,
    ));
    let (ok, text) = check_config(&env);
    assert!(!ok);
    assert!(text.contains("caller_auth.issuers"), "{text}");
}

#[test]
fn the_readme_entra_example_is_valid_configuration() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("# gateway.toml")
        .expect("README has the Entra example");
    let example = &readme[start..];
    let example = &example[..example.find("```").expect("the example's block ends")];
    let file = std::env::temp_dir().join(format!("gateway-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&file, example).unwrap();
    let mut env = PRODUCTION.to_vec();
    let path = file.to_str().unwrap().to_owned();
    env.push(("PARTNER_GATEWAY_CONFIG", &path));
    let (ok, text) = check_config(&env);
    std::fs::remove_file(&file).unwrap();
    assert!(ok, "{text}");
    assert!(
        text.contains("https://sts.windows.net/<tenant-id>/"),
        "{text}"
    );
}

#[test]
fn a_busy_metrics_port_stops_the_start_naming_the_setting_to_change() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = crate::helpers::gateway_command()
        .envs([
            ("PARTNER_GATEWAY__SERVER__LISTEN", "127.0.0.1:0"),
            ("PARTNER_GATEWAY__METRICS__LISTEN", address.as_str()),
        ])
        .output()
        .expect("the gateway binary runs");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        text.contains(&address)
            && text.contains("PARTNER_GATEWAY__METRICS__LISTEN")
            && text.contains("PARTNER_GATEWAY__METRICS__ENABLED=false"),
        "{text}"
    );
}

#[test]
fn the_watch_schedule_comes_from_one_variable_as_a_list_or_a_lone_number() {
    for (value, expected) in [
        (
            "120,600,3600",
            "[\n            120,\n            600,\n            3600,\n        ]",
        ),
        ("60", "[\n            60,\n        ]"),
    ] {
        let mut env = PRODUCTION.to_vec();
        env.push((
            "PARTNER_GATEWAY__CALLER_AUTH__ISSUERS",
            r#"[{"issuer": "https://i", "audiences": ["a"], "jwks_url": "https://i/keys"}]"#,
        ));
        env.push(("PARTNER_GATEWAY__WATCH__SCHEDULE_SECS", value));
        let (ok, text) = check_config(&env);
        assert!(ok, "{text}");
        assert!(
            text.contains(&format!("schedule_secs: {expected}")),
            "{value}: {text}"
        );
    }
    let mut env = PRODUCTION.to_vec();
    env.push(("PARTNER_GATEWAY__WATCH__SCHEDULE_SECS", "5,soon"));
    let (ok, text) = check_config(&env);
    assert!(!ok && text.contains("watch.schedule_secs"), "{text}");
}

#[test]
fn the_login_ports_are_a_range_or_one_port_and_a_public_client_needs_no_secret() {
    for (value, expected) in [
        ("8400-8409", "first: 8400,\n            last: 8409"),
        ("8400", "first: 8400,\n            last: 8400"),
        ("0", "first: 0,\n            last: 0"),
    ] {
        let mut env = PRODUCTION.to_vec();
        env.push((
            "PARTNER_GATEWAY__CALLER_AUTH__ISSUERS",
            r#"[{"issuer": "https://i", "audiences": ["a"], "jwks_url": "https://i/keys"}]"#,
        ));
        env.push((
            "PARTNER_GATEWAY__PARTNER_TOKEN__LOGIN_REDIRECT_PORTS",
            value,
        ));
        let (ok, text) = check_config(&env);
        assert!(ok && text.contains(expected), "{value}: {text}");
    }
    for bad in ["8409-8400", "84OO", "0-10"] {
        let (ok, text) =
            check_config(&[("PARTNER_GATEWAY__PARTNER_TOKEN__LOGIN_REDIRECT_PORTS", bad)]);
        assert!(
            !ok && text.contains("login_redirect_ports"),
            "{bad}: {text}"
        );
    }
    let mut env: Vec<_> = PRODUCTION
        .iter()
        .copied()
        .filter(|(name, _)| !name.ends_with("CLIENT_SECRET"))
        .collect();
    env.push((
        "PARTNER_GATEWAY__CALLER_AUTH__ISSUERS",
        r#"[{"issuer": "https://i", "audiences": ["a"], "jwks_url": "https://i/keys"}]"#,
    ));
    let (ok, text) = check_config(&env);
    assert!(
        !ok && text.contains("partner_token.client_secret"),
        "{text}"
    );
    env.push(("PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_TYPE", "public"));
    let (ok, text) = check_config(&env);
    assert!(ok, "{text}");
}
