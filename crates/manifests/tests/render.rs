//! The example shop rendered for a cluster: every kind of object as a YAML snapshot, every object read back
//! through its `k8s-openapi` type unchanged, and secret values only where they belong.

use std::collections::BTreeMap;

use k8s_openapi::api::{apps, batch, core, networking};
use preview_manifests::{
    Certificates, Object, RouteApi, Settings, TLS_CERTIFICATE, TLS_KEY, Target, Values, render,
    to_yaml,
};
use preview_plan::{Resource, desired_state};
use preview_secrets::Secret;

/// The example on Kubernetes (without its Redis cache), its database a server in the namespace, the storefront's
/// session key a secret.
fn kubernetes_example() -> String {
    preview_testing::example_on_kubernetes().replace("mode: managed ", "mode: container ")
}

fn resources(source: &str, environment: &str) -> Vec<Resource> {
    let spec = preview_spec::parse_spec("shop.yaml", source).unwrap_or_else(|e| panic!("{e}"));
    let context = preview_resolve::Context {
        source: Some(preview_resolve::SourceCommit {
            repository: "/srv/shop".into(),
            directory: ".".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
        }),
        ..Default::default()
    };
    let resolved =
        preview_resolve::resolve_environment(&spec, &spec.environments[environment], &context)
            .unwrap_or_else(|e| panic!("{e:?}"));
    let versions = BTreeMap::from([
        ("service:storefront/SESSION_KEY".to_owned(), "v1".to_owned()),
        ("database:db/password".to_owned(), "v1".to_owned()),
    ]);
    let mut resources = desired_state(&resolved, &versions);
    // In the order they are applied, as `preview render` prints them.
    resources.sort_by_key(|r| (r.kind.level(), r.id.clone()));
    resources
}

fn target() -> Target {
    Target {
        project: "shop".into(),
        environment: "staging".into(),
        namespace: "shop-staging-x7k2p".into(),
    }
}

fn render_all(resources: &[Resource], settings: &Settings, values: &Values<'_>) -> Vec<Object> {
    resources
        .iter()
        .flat_map(|r| render(r, &target(), settings, values).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn revealed() -> BTreeMap<String, Secret> {
    BTreeMap::from([
        (
            "service:storefront/SESSION_KEY".to_owned(),
            Secret::new("s3ssion-VALUE".into()),
        ),
        (
            "database:db/password".to_owned(),
            Secret::new("pg-PASSWORD-value".into()),
        ),
        (
            TLS_CERTIFICATE.to_owned(),
            Secret::new("-----BEGIN CERTIFICATE-----".into()),
        ),
        (
            TLS_KEY.to_owned(),
            Secret::new("-----BEGIN PRIVATE KEY----- key-VALUE".into()),
        ),
        (
            "project/PREVIEW_PASSWORD".to_owned(),
            Secret::new("basic-PASSWORD".into()),
        ),
        (
            "project/FORGE_WEBHOOK_SECRET".to_owned(),
            Secret::new("forge-VALUE".into()),
        ),
        (
            "project/MASKING_KEY".to_owned(),
            Secret::new("masking-VALUE".into()),
        ),
    ])
}

#[test]
fn the_example_renders_every_kind_of_object() {
    let objects = render_all(
        &resources(&kubernetes_example(), "staging"),
        &Settings::default(),
        &Values::Redacted,
    );
    let kinds: std::collections::BTreeSet<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
    for kind in [
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "ServiceAccount",
        "Secret",
        "Deployment",
        "Service",
        "Job",
        "StatefulSet",
        "Ingress",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    insta::assert_snapshot!("shop_staging", to_yaml(&objects));
}

#[test]
fn gateway_routes_and_cert_manager_certificates() {
    let settings = Settings {
        routes: RouteApi::Gateway {
            name: "public".into(),
            namespace: "gateways".into(),
        },
        certificates: Certificates::CertManager {
            issuer: "letsencrypt".into(),
            wildcard_issuer: None,
        },
        ..Settings::default()
    };
    let objects: Vec<Object> = render_all(
        &resources(&kubernetes_example(), "staging"),
        &settings,
        &Values::Redacted,
    )
    .into_iter()
    .filter(|o| o.kind == "HTTPRoute" || o.kind == "Certificate")
    .collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    insta::assert_snapshot!("gateway_and_cert_manager", to_yaml(&objects));
}

/// Each object read into its `k8s-openapi` type and written again is unchanged: no field is misspelt, misplaced
/// or of the wrong type, which the API server would reject or silently drop.
#[test]
fn every_object_round_trips_through_its_type() {
    fn same<K: serde::de::DeserializeOwned + serde::Serialize>(object: &Object) {
        let typed: K = serde_json::from_value(object.body.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", object.describe()));
        assert_eq!(
            serde_json::to_value(&typed).unwrap_or_default(),
            object.body,
            "{} changed",
            object.describe()
        );
    }
    let values = revealed();
    for objects in [
        render_all(
            &resources(&kubernetes_example(), "staging"),
            &Settings::default(),
            &Values::Revealed(&values),
        ),
        render_all(
            &resources(&kubernetes_example(), "staging"),
            &Settings::default(),
            &Values::Redacted,
        ),
    ] {
        for object in &objects {
            match object.kind.as_str() {
                "Namespace" => same::<core::v1::Namespace>(object),
                "NetworkPolicy" => same::<networking::v1::NetworkPolicy>(object),
                "ResourceQuota" => same::<core::v1::ResourceQuota>(object),
                "LimitRange" => same::<core::v1::LimitRange>(object),
                "ServiceAccount" => same::<core::v1::ServiceAccount>(object),
                "Secret" => same::<core::v1::Secret>(object),
                "Deployment" => same::<apps::v1::Deployment>(object),
                "StatefulSet" => same::<apps::v1::StatefulSet>(object),
                "Service" => same::<core::v1::Service>(object),
                "Job" => same::<batch::v1::Job>(object),
                "Ingress" => same::<networking::v1::Ingress>(object),
                other => panic!("no type checked for {other}"),
            }
        }
    }
}

#[test]
fn secret_values_go_into_secrets_only_and_are_never_printed() {
    let values = revealed();
    let objects = render_all(
        &resources(&kubernetes_example(), "staging"),
        &Settings::default(),
        &Values::Revealed(&values),
    );
    let secret = objects
        .iter()
        .find(|o| o.kind == "Secret" && o.name == "environment")
        .unwrap_or_else(|| panic!("no environment Secret"));
    let data: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(secret.body.clone()).unwrap_or_else(|e| panic!("{e}"));
    let data = data.data.unwrap_or_default();
    let text = |key: &str| {
        String::from_utf8(data.get(key).map(|b| b.0.clone()).unwrap_or_default())
            .unwrap_or_default()
    };
    assert_eq!(
        text("secret.service.storefront.SESSION_KEY"),
        "s3ssion-VALUE"
    );
    // A variable holding a secret is assembled whole in the Secret: the database URL with its password.
    let url = text("var.storefront.DATABASE_URL");
    assert!(
        url.starts_with("postgres://") && url.contains(":pg-PASSWORD-value@db:5432/"),
        "{url}"
    );
    // Pods read it from there; no pod spec holds a value.
    let storefront = objects
        .iter()
        .find(|o| o.kind == "Deployment" && o.name == "storefront")
        .unwrap_or_else(|| panic!("no storefront"));
    let env = &storefront.body["spec"]["template"]["spec"]["containers"][0]["env"];
    let database_url = env
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "DATABASE_URL")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        database_url["valueFrom"]["secretKeyRef"]["key"],
        "var.storefront.DATABASE_URL"
    );
    assert!(database_url.get("value").is_none());
    let printed = format!("{objects:?}{}", to_yaml(&objects));
    for value in [
        "s3ssion-VALUE",
        "pg-PASSWORD-value",
        "key-VALUE",
        "forge-VALUE",
    ] {
        assert!(!printed.contains(value), "{value} printed");
        let encoded = base64_of(value);
        assert!(
            !printed.contains(&encoded[..encoded.len() - 4]),
            "{value} printed in base64"
        );
    }
    let everything_else: String = objects
        .iter()
        .filter(|o| !o.is_secret())
        .map(|o| o.body.to_string())
        .collect();
    for value in ["s3ssion-VALUE", "pg-PASSWORD-value", "key-VALUE"] {
        assert!(
            !everything_else.contains(value) && !everything_else.contains(&base64_of(value)[..8])
        );
    }
}

fn base64_of(value: &str) -> String {
    serde_json::to_value(k8s_openapi::ByteString(value.as_bytes().to_vec()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn a_new_secret_value_rolls_the_pods_that_use_it() {
    let annotation = |versions: &str| {
        let source = kubernetes_example();
        let mut resources = resources(&source, "staging");
        for resource in &mut resources {
            if let Some(secrets) = resource
                .content
                .get_mut("secrets")
                .and_then(|s| s.as_object_mut())
            {
                for version in secrets.values_mut() {
                    *version = versions.into();
                }
            }
        }
        let app = resources
            .iter()
            .find(|r| r.id == "app/storefront")
            .cloned()
            .unwrap_or_else(|| panic!("no app"));
        let objects = render(&app, &target(), &Settings::default(), &Values::Redacted)
            .unwrap_or_else(|e| panic!("{e}"));
        objects[0].body["spec"]["template"]["metadata"]["annotations"]["preview.dev/secrets"]
            .clone()
    };
    assert_ne!(annotation("v1"), annotation("v2"));
    assert_eq!(annotation("v1"), annotation("v1"));
    // The text around a secret in a variable changed: the Secret's value changes, so the pods roll too.
    let source = kubernetes_example();
    let example = resources(&source, "staging");
    let app = example
        .iter()
        .find(|r| r.id == "app/storefront")
        .cloned()
        .unwrap_or_else(|| panic!("no app"));
    let mut moved = app.clone();
    moved.content["with_secrets"]["DATABASE_URL"][0]["text"] = "postgres://other-host/".into();
    let digest = |resource: &Resource| {
        render(resource, &target(), &Settings::default(), &Values::Redacted)
            .unwrap_or_else(|e| panic!("{e}"))[0]
            .body["spec"]["template"]["metadata"]["annotations"]["preview.dev/secrets"]
            .clone()
    };
    assert_ne!(digest(&app), digest(&moved));
}

#[test]
fn images_name_the_commit_and_plain_values_keep_their_dollars() {
    let source = kubernetes_example()
        .replace(
            "image: ghcr.io/example/shop-storefront",
            "image: ghcr.io/example/shop-storefront:{commit}",
        )
        .replace("LOG_LEVEL: info", "LOG_LEVEL: \"$(HOME)-$x\"");
    let objects = render_all(
        &resources(&source, "staging"),
        &Settings::default(),
        &Values::Redacted,
    );
    let storefront = objects
        .iter()
        .find(|o| o.kind == "Deployment" && o.name == "storefront")
        .unwrap_or_else(|| panic!("none"));
    let container = &storefront.body["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "ghcr.io/example/shop-storefront:0123456789abcdef0123456789abcdef01234567"
    );
    let mode = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "LOG_LEVEL")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        mode["value"], "$$(HOME)-$$x",
        "the kubelet would expand $(HOME)"
    );
}

#[test]
fn what_a_cluster_cannot_do_is_refused_by_name() {
    let source = kubernetes_example();
    let resources = resources(&source, "staging");
    let route = resources
        .iter()
        .find(|r| r.id == "route/storefront")
        .cloned()
        .unwrap_or_else(|| panic!("no route"));
    let certificate = resources
        .iter()
        .find(|r| r.id == "certificate")
        .cloned()
        .unwrap_or_else(|| panic!("none"));

    let mut token = route.clone();
    token.content["access"] =
        serde_json::json!({ "token": { "name": "project/T", "version": "v1" } });
    let error = render(&token, &target(), &Settings::default(), &Values::Redacted)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some(
            "route/storefront: access by token is not supported on Kubernetes; use `access: { basic_auth: … }` with ingress-nginx"
        )
    );

    let mut wildcard = certificate.clone();
    wildcard.content["hostnames"] = serde_json::json!(["*.pr-1.shop.example.com"]);
    let settings = Settings {
        certificates: Certificates::CertManager {
            issuer: "http".into(),
            wildcard_issuer: None,
        },
        ..Settings::default()
    };
    let error = render(&wildcard, &target(), &settings, &Values::Redacted)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some(
            "certificate: a wildcard hostname needs a DNS-01 issuer (the cluster's `wildcard_issuer`)"
        )
    );
    let settings = Settings {
        certificates: Certificates::CertManager {
            issuer: "http".into(),
            wildcard_issuer: Some("dns".into()),
        },
        ..Settings::default()
    };
    let objects = render(&wildcard, &target(), &settings, &Values::Redacted)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(objects[0].body["spec"]["issuerRef"]["name"], "dns");

    // Without the values it names, a Secret is not rendered half-empty.
    let empty = BTreeMap::new();
    let error = render(
        &certificate,
        &target(),
        &Settings::default(),
        &Values::Revealed(&empty),
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some("certificate: the certificate from the local CA is not at hand")
    );
}

#[test]
fn basic_auth_of_previews_is_a_salted_line_nginx_reads() {
    let source = kubernetes_example();
    let resources = resources(&source, "staging");
    let mut route = resources
        .iter()
        .find(|r| r.id == "route/storefront")
        .cloned()
        .unwrap_or_else(|| panic!("no route"));
    route.content["access"] = serde_json::json!({
        "basic_auth": { "user": "review", "password": { "name": "project/PREVIEW_PASSWORD", "version": "v1" } }
    });
    let values = revealed();
    let objects = render(
        &route,
        &target(),
        &Settings::default(),
        &Values::Revealed(&values),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        objects.iter().map(|o| o.kind.as_str()).collect::<Vec<_>>(),
        ["Secret", "Ingress"]
    );
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(objects[0].body.clone()).unwrap_or_else(|e| panic!("{e}"));
    let line =
        String::from_utf8(secret.data.unwrap_or_default()["auth"].0.clone()).unwrap_or_default();
    let (user, hash) = line
        .trim_end()
        .split_once(":{SSHA}")
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(user, "review");
    // SSHA: SHA-1 of password + salt, then the salt, in base64.
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(hash)
        .unwrap_or_default();
    let (digest, salt) = raw.split_at(20);
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(b"basic-PASSWORD");
    context.update(salt);
    assert_eq!(context.finish().as_ref(), digest);
    assert_eq!(
        objects[1].body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-secret"],
        "storefront-access"
    );
    let redacted = render(&route, &target(), &Settings::default(), &Values::Redacted)
        .unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!("protected_route", to_yaml(&redacted));
}

#[test]
fn namespace_names_stay_dns_labels_with_their_suffix() {
    assert_eq!(
        preview_manifests::namespace_name("shop", "pr-7", "x7k2p"),
        "shop-pr-7-x7k2p"
    );
    let long = preview_manifests::namespace_name(&"p".repeat(63), &"e".repeat(63), "abcde");
    assert_eq!(long.len(), 63);
    assert!(long.ends_with("-abcde"));
    let cut_at_dash = preview_manifests::namespace_name(&"a".repeat(56), "b", "abcde");
    assert!(!cut_at_dash.contains("--"), "{cut_at_dash}");
}

#[test]
fn a_managed_database_is_a_server_in_the_namespace_and_an_external_one_is_refused() {
    let database = |source: &str| {
        resources(source, "staging")
            .into_iter()
            .find(|r| r.id == "database/db")
            .unwrap_or_else(|| panic!("no database"))
    };
    let managed = render(
        &database(&preview_testing::example_on_kubernetes()),
        &target(),
        &Settings::default(),
        &Values::Redacted,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let container = render(
        &database(&kubernetes_example()),
        &target(),
        &Settings::default(),
        &Values::Redacted,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        managed
            .iter()
            .map(|o| o.body["spec"].clone())
            .collect::<Vec<_>>(),
        container
            .iter()
            .map(|o| o.body["spec"].clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        managed.iter().map(|o| o.kind.as_str()).collect::<Vec<_>>(),
        ["Secret", "StatefulSet", "Service"]
    );
    let mut external = database(&kubernetes_example());
    external.content["mode"] = "external".into();
    let error = render(
        &external,
        &target(),
        &Settings::default(),
        &Values::Redacted,
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some(
            "database/db: `mode: external` is not supported on Kubernetes yet; use `mode: container` (a server in the environment's namespace)"
        )
    );
}

#[test]
fn a_dns_cache_on_the_nodes_is_reached_on_port_53_only_when_named() {
    let space = resources(&kubernetes_example(), "staging")
        .into_iter()
        .find(|r| r.id == "space")
        .unwrap_or_else(|| panic!("no space"));
    let egress = |settings: &Settings| {
        render(&space, &target(), settings, &Values::Redacted)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .find(|o| o.name == "allow-environment")
            .map(|o| o.body["spec"]["egress"].clone())
            .unwrap_or_default()
    };
    let plain = egress(&Settings::default());
    let rules = plain.as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), 3);
    // Every rule names its peers: a rule without them would allow its ports everywhere.
    assert!(
        rules
            .iter()
            .all(|r| r["to"].as_array().is_some_and(|to| !to.is_empty())),
        "{plain}"
    );
    let cached = egress(&Settings {
        dns_addresses: vec!["169.254.20.10/32".to_owned()],
        ..Settings::default()
    });
    assert_eq!(
        cached[3],
        serde_json::json!({
            "to": [{ "ipBlock": { "cidr": "169.254.20.10/32" } }],
            "ports": [{ "port": 53, "protocol": "UDP" }, { "port": 53, "protocol": "TCP" }],
        })
    );
}
