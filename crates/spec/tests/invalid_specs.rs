//! Invalid specs and the exact diagnostics they produce: `line:column key.path: message`, one per line, sorted.

use preview_spec::parse_spec;

#[track_caller]
fn check(spec: &str, expected: &str) {
    let errors = match parse_spec("preview.yaml", spec) {
        Ok(_) => panic!("expected errors, but the spec is valid:\n{spec}"),
        Err(diagnostics) => diagnostics
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    assert_eq!(errors, expected.trim(), "\nspec:\n{spec}");
}

const ENVS: &str = "environments:\n  staging: {}\n";

fn with_envs(spec: &str) -> String {
    format!("{spec}{ENVS}")
}

// ---------------------------------------------------------------- malformed YAML

#[test]
fn empty_file() {
    check(
        "",
        "1:1: the file is empty; it must be a mapping that starts with `project: <name>` (run `preview init` for a starter)",
    );
}

#[test]
fn tab_indentation() {
    check(
        "project: p\nservices:\n\tweb: {}\n",
        "3:1: invalid YAML: a tab is used for indentation; YAML allows only spaces there",
    );
}

#[test]
fn bad_indentation() {
    check(
        "project: p\nservices:\n  web:\n    run: x\n   ports: []\n",
        "5:4: invalid YAML: bad indentation: this line is not aligned with the keys of the mapping above it",
    );
}

#[test]
fn duplicate_key() {
    check(
        "project: p\nproject: q\nenvironments: {staging: {}}\n",
        "2:1 project: duplicate key `project` (first defined at line 1); each key may appear once",
    );
}

#[test]
fn unclosed_quote() {
    check(
        "project: \"p\nenvironments: {}\n",
        "1:10: invalid YAML: a quoted string is not closed, or its continuation lines are not indented",
    );
}

#[test]
fn two_documents() {
    check(
        "project: p\n---\nproject: q\n",
        "2:1: a second YAML document (`---`); preview.yaml holds exactly one document",
    );
}

#[test]
fn top_level_is_a_list() {
    check(
        "- project: p\n",
        "1:1: expected a project spec (a mapping of `key: value`), found a list",
    );
}

#[test]
fn unknown_anchor() {
    check(
        "project: p\nvariables: *nothing\n",
        "2:12: invalid YAML: this alias refers to an anchor that is not defined before it",
    );
}

#[test]
fn custom_tag() {
    check(
        &with_envs("project: !Ref p\n"),
        "1:10 project: the YAML tag `!Ref` is not supported; remove it",
    );
}

// ---------------------------------------------------------------- wrong types and unknown keys

#[test]
fn unknown_top_level_key_suggests() {
    check(
        &with_envs("project: p\nservises: {}\n"),
        "2:1 servises: unknown key `servises` in a project spec; did you mean `services`?",
    );
}

#[test]
fn unknown_key_without_suggestion_lists_keys() {
    check(
        &with_envs("project: p\ndomain:\n  colour: blue\n"),
        "3:3 domain.colour: unknown key `colour` in domain settings; known keys: base, hostname",
    );
}

#[test]
fn unknown_app_key_suggests() {
    check(
        &with_envs("project: p\nservices:\n  web:\n    run: x\n    replica: 2\n"),
        "5:5 services.web.replica: unknown key `replica` in service `web` (an app; add `type: database` or `type: job` for other kinds); did you mean `replicas`?",
    );
}

#[test]
fn database_keys_without_type() {
    check(
        &with_envs("project: p\nservices:\n  db:\n    run: x\n    engine: postgres\n"),
        "5:5 services.db.engine: unknown key `engine` in service `db` (an app; add `type: database` or `type: job` for other kinds); known keys: type, build, run, image, ports, health, replicas, resources, public, domains, depends_on, variables, secrets",
    );
}

#[test]
fn port_is_a_string() {
    check(
        &with_envs("project: p\nservices:\n  web:\n    run: x\n    ports: [\"http\"]\n"),
        "5:13 services.web.ports[0]: expected a port (a whole number), found `http`",
    );
}

#[test]
fn port_out_of_range() {
    check(
        &with_envs("project: p\nservices:\n  web:\n    run: x\n    ports: [70000]\n"),
        "5:13 services.web.ports[0]: 70000 is not a port; use a number from 1 to 65535",
    );
}

#[test]
fn replicas_is_a_list() {
    check(
        &with_envs("project: p\nservices:\n  web:\n    run: x\n    replicas: [1]\n"),
        "5:15 services.web.replicas: expected a replica count (a whole number), found a list",
    );
}

#[test]
fn boolean_spelt_yes() {
    check(
        &with_envs("project: p\nservices:\n  web:\n    run: x\n    ports: [80]\n    public: yes\n"),
        "6:13 services.web.public: expected `true` or `false`, found `yes`",
    );
}

#[test]
fn isolation_typo() {
    check(
        &with_envs("project: p\nisolation: phisical\n"),
        "2:12 isolation: `phisical` is not an isolation; use `logical` or `physical`; did you mean `physical`?",
    );
}

#[test]
fn runtime_unknown() {
    check(
        &with_envs("project: p\nruntime: docker\n"),
        "2:10 runtime: `docker` is not a runtime; use `local` or `kubernetes`",
    );
}

#[test]
fn services_is_a_list() {
    check(
        &with_envs("project: p\nservices:\n  - web\n"),
        "3:3 services: expected services (a mapping of `name: …`), found a list",
    );
}

// ---------------------------------------------------------------- required keys

#[test]
fn missing_project() {
    check(
        ENVS,
        "1:1: missing required key `project` (the project's name, e.g. `project: shop`)",
    );
}

#[test]
fn missing_environments() {
    check(
        "project: p\n",
        "1:1: missing required key `environments` (at least one environment, e.g. `environments: { production: {}, staging: {} }`)",
    );
}

#[test]
fn empty_environments() {
    check(
        "project: p\nenvironments: {}\n",
        "2:15 environments: declare at least one environment, e.g. `production: {}`",
    );
}

#[test]
fn app_without_run_on_local_runtime() {
    check(
        &with_envs("project: p\nservices:\n  web:\n    image: x\n"),
        "4:5 services.web: missing required key `run` (the command that starts the app on the local runtime)",
    );
}

#[test]
fn app_without_image_on_kubernetes() {
    check(
        &with_envs("project: p\nruntime: kubernetes\nservices:\n  web:\n    run: x\n"),
        "5:5 services.web: missing required key `image` (the container image the Kubernetes runtime runs)",
    );
}

#[test]
fn database_without_version() {
    check(
        &with_envs("project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n"),
        "4:5 services.db: missing required key `version` (the major version, e.g. `16`)",
    );
}

#[test]
fn unsupported_postgres_version() {
    check(
        &with_envs(
            "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 9\n",
        ),
        "6:14 services.db.version: 9 is not a supported PostgreSQL version; use a number from 13 to 18",
    );
}

#[test]
fn external_database_without_its_admin_url() {
    check(
        &with_envs(
            "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    mode: external\n",
        ),
        "4:5 services.db: missing required key `admin_url` (the project secret holding the external server's admin URL (postgres://user:password@host:port/postgres))",
    );
}

#[test]
fn admin_url_without_an_external_server() {
    check(
        &with_envs(
            "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    admin_url: RDS\n",
        ),
        "7:16 services.db.admin_url: `admin_url` is only used with `mode: external`",
    );
}

#[test]
fn job_with_unknown_hook() {
    check(
        &with_envs(
            "project: p\nservices:\n  seed:\n    type: job\n    hook: on-merge\n    command: x\n",
        ),
        "5:11 services.seed.hook: `on-merge` is not a job hook; use `seed`, `migrate`, `on-create` or `on-delete`",
    );
}

// ---------------------------------------------------------------- names

#[test]
fn project_name_uppercase() {
    check(
        &with_envs("project: Shop\n"),
        "1:10 project: `Shop` is not a valid project name: it contains the uppercase letter `S`; use lowercase (names are used in hostnames, so they follow DNS label rules)",
    );
}

#[test]
fn service_name_with_underscore() {
    check(
        &with_envs("project: p\nservices:\n  my_web:\n    run: x\n"),
        "3:3 services.my_web: `my_web` is not a valid service name: it contains `_`; use only lowercase letters, digits and `-` (names are used in hostnames, so they follow DNS label rules)",
    );
}

#[test]
fn service_name_starting_with_digit() {
    check(
        &with_envs("project: p\nservices:\n  1web:\n    run: x\n"),
        "3:3 services.1web: `1web` is not a valid service name: it must start with a lowercase letter (names are used in hostnames, so they follow DNS label rules)",
    );
}

#[test]
fn environment_name_too_long() {
    let name = "e".repeat(64);
    check(
        &format!("project: p\nenvironments:\n  {name}: {{}}\n"),
        &format!(
            "3:3 environments.{name}: `{name}` is not a valid environment name: it is 64 characters long; the limit is 63 (names are used in hostnames, so they follow DNS label rules)"
        ),
    );
}

#[test]
fn environment_name_reserved_for_previews() {
    check(
        "project: p\nenvironments:\n  pr-12: {}\n",
        "3:3 environments.pr-12: `pr-12` is reserved: previews are named `pr-<number>`; choose another environment name",
    );
}

#[test]
fn variable_name_with_dash() {
    check(
        &with_envs("project: p\nvariables:\n  LOG-LEVEL: info\n"),
        "3:14 variables.LOG-LEVEL: `LOG-LEVEL` is not a variable name; use letters, digits and `_`, not starting with a digit",
    );
}

#[test]
fn variable_without_value() {
    check(
        &with_envs("project: p\nvariables:\n  LOG_LEVEL:\n"),
        "3:12 variables.LOG_LEVEL: `LOG_LEVEL` has no value; write `LOG_LEVEL: \"\"` for an empty value",
    );
}

// ---------------------------------------------------------------- secrets

#[test]
fn secret_value_in_mapping_is_refused_without_echo() {
    let spec = with_envs("project: p\nsecrets:\n  STRIPE_KEY: sk_live_very_secret\n");
    check(
        &spec,
        "3:3 secrets.STRIPE_KEY: a secret value is written in the spec; remove it, declare `STRIPE_KEY` under `secrets:` and set it with `preview secret set STRIPE_KEY --scope project` (the value is read from standard input)",
    );
    let printed = parse_spec("preview.yaml", &spec)
        .expect_err("the spec is invalid")
        .to_string();
    assert!(
        !printed.contains("sk_live_very_secret"),
        "the secret value leaked: {printed}"
    );
}

#[test]
fn secret_value_in_declaration_is_refused() {
    check(
        &with_envs(
            "project: p\nservices:\n  web:\n    run: x\n    secrets:\n      - name: API_KEY\n        value: hunter2\n",
        ),
        "6:9 services.web.secrets[0]: a secret value is written in the spec; remove it, declare `API_KEY` under `secrets:` and set it with `preview secret set API_KEY --scope service:web` (the value is read from standard input)",
    );
}

#[test]
fn secret_value_in_list_entry_is_refused_without_echo() {
    for (entry, column) in [
        ("- API_TOKEN=tok-8f3a9c2e", 9),
        ("- API_TOKEN: tok-8f3a9c2e", 9),
        ("- tok-8f3a9c2e", 9),
    ] {
        let spec = with_envs(&format!(
            "project: p\nservices:\n  web:\n    run: x\n    secrets:\n      {entry}\n"
        ));
        let printed = parse_spec("preview.yaml", &spec)
            .expect_err("the spec is invalid")
            .to_string();
        assert!(
            !printed.contains("8f3a9c2e"),
            "the secret value leaked for `{entry}`: {printed}"
        );
        assert!(
            printed.contains(&format!("6:{column} services.web.secrets[0]: ")),
            "the entry is named for `{entry}`: {printed}"
        );
        if entry.contains("API_TOKEN") {
            assert!(
                printed.contains("preview secret set API_TOKEN --scope service:web"),
                "names the command for `{entry}`: {printed}"
            );
        }
    }
}

#[test]
fn variable_marked_secret_is_refused() {
    check(
        &with_envs("project: p\nvariables:\n  TOKEN: { value: abc, secret: true }\n"),
        "3:10 variables.TOKEN: a secret value is written in the spec; remove it, declare `TOKEN` under `secrets:` and set it with `preview secret set TOKEN --scope project` (the value is read from standard input)",
    );
}

#[test]
fn secret_declared_twice() {
    check(
        &with_envs("project: p\nsecrets: [A, A]\n"),
        "2:14 secrets[1]: secret `A` is declared twice in this scope",
    );
}

#[test]
fn access_token_not_declared() {
    check(
        "project: p\nsecrets: [TOKEN]\nenvironments: {staging: {}}\npreviews:\n  blueprint: staging\n  access: { token: TOKN }\n",
        "6:20 previews.access.token: `TOKN` is not a declared project secret; did you mean `TOKEN`?; add it under the top-level `secrets:` and set it with `preview secret set TOKN --scope project`",
    );
}

#[test]
fn access_with_two_kinds_or_a_bad_user() {
    check(
        "project: p\nsecrets: [T]\nenvironments: {staging: {}}\npreviews:\n  blueprint: staging\n  access: { token: T, basic_auth: { user: r, password: T } }\n",
        "6:11 previews.access: give exactly one of `token: SECRET` or `basic_auth: { user, password: SECRET }`",
    );
    check(
        "project: p\nsecrets: [T]\nenvironments: {staging: {}}\npreviews:\n  blueprint: staging\n  access:\n    basic_auth: { user: \"a:b\", password: T }\n",
        "7:5 previews.access: basic_auth.user must be a non-empty name without `:`",
    );
}

#[test]
fn webhook_secret_not_declared() {
    check(
        "project: p\nsecrets: [HOOK_SECRET]\nenvironments: {staging: {}}\npreviews:\n  blueprint: staging\n  forge:\n    kind: github\n    repository: o/r\n    webhook_secret: HOOK_SECRT\n",
        "9:21 previews.forge.webhook_secret: `HOOK_SECRT` is not a declared project secret; did you mean `HOOK_SECRET`?; add it under the top-level `secrets:` and set it with `preview secret set HOOK_SECRT --scope project`",
    );
}

// ---------------------------------------------------------------- references

#[test]
fn depends_on_unknown_service() {
    check(
        &with_envs(
            "project: p\nservices:\n  web:\n    run: x\n    depends_on: [dbb]\n  db:\n    type: database\n    engine: postgres\n    version: 16\n",
        ),
        "5:18 services.web.depends_on[0]: unknown service `dbb`; did you mean `db`?",
    );
}

#[test]
fn depends_on_itself() {
    check(
        &with_envs("project: p\nservices:\n  web:\n    run: x\n    depends_on: [web]\n"),
        "5:18 services.web.depends_on[0]: `web` depends on itself; remove it from `depends_on`",
    );
}

#[test]
fn override_of_unknown_service() {
    check(
        "project: p\nservices:\n  web:\n    run: x\nenvironments:\n  staging:\n    services:\n      wbe: { replicas: 2 }\n",
        "8:7 environments.staging.services.wbe: unknown service `wbe`; did you mean `web`?",
    );
}

#[test]
fn override_of_fixed_key() {
    check(
        "project: p\nservices:\n  web:\n    run: x\nenvironments:\n  staging:\n    services:\n      web: { type: job }\n",
        "8:14 environments.staging.services.web.type: `type` cannot be overridden per environment: a service's type is the same in every environment",
    );
}

#[test]
fn override_with_wrong_value_points_at_the_override() {
    check(
        "project: p\nservices:\n  web:\n    run: x\nenvironments:\n  production:\n    services:\n      web:\n        replicas: 0\n",
        "9:19 environments.production.services.web.replicas: 0 is not a replica count; use a number from 1 to 100",
    );
}

#[test]
fn clone_from_unknown_environment() {
    check(
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: clone, from: prod }\nenvironments:\n  production: {}\n  staging: {}\n",
        "7:35 services.db.clone.from: unknown environment `prod`; did you mean `production`?",
    );
}

#[test]
fn clone_from_itself() {
    check(
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: clone, from: production }\nenvironments:\n  production: {}\n  staging: {}\n",
        "7:35 services.db.clone.from: environment `production` would clone its own database; override `clone` for `production` (for example `policy: empty` or `policy: seed`)",
    );
}

#[test]
fn seed_job_with_wrong_hook() {
    check(
        &with_envs(
            "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: seed, job: migrate }\n  migrate:\n    type: job\n    hook: migrate\n    command: x\n",
        ),
        "7:33 services.db.clone.job: job `migrate` has `hook: migrate`; a seed job needs `hook: seed`",
    );
}

#[test]
fn seed_without_source() {
    check(
        &with_envs(
            "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: seed }\n",
        ),
        "7:12 services.db.clone: `policy: seed` needs exactly one of `file: path/to/seed.sql` or `job: <seed job>`",
    );
}

#[test]
fn snapshot_keys_of_a_policy_without_snapshots() {
    check(
        &with_envs(
            "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: empty, warm_pool: 2 }\n",
        ),
        "7:40 services.db.clone.warm_pool: `warm_pool` is only used with `policy: clone` or `policy: masked`; this policy is `empty`",
    );
}

#[test]
fn warm_pool_too_large_and_refresh_not_a_duration() {
    check(
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\nenvironments:\n  production: {}\n  staging:\n    services:\n      db:\n        clone: { policy: clone, from: production, warm_pool: 50 }\n",
        "12:62 environments.staging.services.db.clone.warm_pool: 50 is not how many databases are kept ready; use a number from 0 to 8",
    );
    check(
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\nenvironments:\n  production: {}\n  staging:\n    services:\n      db:\n        clone: { policy: clone, from: production, refresh: daily }\n",
        "12:60 environments.staging.services.db.clone.refresh: `daily` is not a duration; write a number with a unit, such as `500ms`, `90s`, `30m`, `72h`, `7d` or `1h30m`",
    );
    check(
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\nenvironments:\n  production: {}\n  staging:\n    services:\n      db:\n        clone: { policy: clone, from: production, refresh: 500ms }\n",
        "12:60 environments.staging.services.db.clone.refresh: `refresh` under a second would build the golden snapshot again for every new database; use `1s` or more (e.g. `24h`)",
    );
    check(
        &with_envs(
            "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: seed, file: s.sql, refresh: 1h }\n",
        ),
        "7:50 services.db.clone.refresh: `refresh` is only used with `policy: clone` or `policy: masked`; this policy is `seed`",
    );
}

#[test]
fn from_with_seed_policy() {
    check(
        &with_envs(
            "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: seed, file: s.sql, from: staging }\n",
        ),
        "7:47 services.db.clone.from: `from` is only used with `policy: clone` or `policy: masked`; this policy is `seed`",
    );
}

#[test]
fn health_check_on_unknown_port() {
    check(
        &with_envs(
            "project: p\nservices:\n  web:\n    run: x\n    ports: [{ name: http, port: 80 }]\n    health: { http: /healthz, port: htp }\n",
        ),
        "6:37 services.web.health.port: unknown port `htp`; did you mean `http`?",
    );
}

#[test]
fn health_check_path_without_slash() {
    check(
        &with_envs(
            "project: p\nservices:\n  web:\n    run: x\n    ports: [80]\n    health: { http: healthz }\n",
        ),
        "6:21 services.web.health.http: `healthz` is not an HTTP path; start it with `/`",
    );
}

#[test]
fn blueprint_does_not_exist() {
    check(
        "project: p\nenvironments:\n  staging: {}\npreviews:\n  blueprint: stagin\n",
        "5:14 previews.blueprint: the blueprint `stagin` is not a declared environment; did you mean `staging`?",
    );
}

#[test]
fn reference_to_unknown_database() {
    check(
        &with_envs(
            "project: p\nservices:\n  web:\n    run: x\n    variables:\n      DATABASE_URL: ${{ services.dbb.url }}\n  db:\n    type: database\n    engine: postgres\n    version: 16\n",
        ),
        "6:21 services.web.variables.DATABASE_URL: `${{ services.dbb.url }}` refers to unknown service `dbb`; did you mean `db`?",
    );
}

#[test]
fn reference_in_environment_override_is_checked_too() {
    check(
        "project: p\nservices:\n  web:\n    run: x\nenvironments:\n  staging:\n    services:\n      web:\n        variables: { API: \"${{ services.api.url }}\" }\n",
        "9:27 environments.staging.services.web.variables.API: `${{ services.api.url }}` refers to unknown service `api`",
    );
}

#[test]
fn reference_not_closed() {
    check(
        &with_envs("project: p\nvariables:\n  URL: \"${{ services.web.url\"\n"),
        "3:8 variables.URL: `URL` has a `${{` without its closing `}}`",
    );
}

#[test]
fn reference_to_nothing_known() {
    check(
        &with_envs("project: p\nvariables:\n  URL: ${{ web.url }}\n"),
        "3:8 variables.URL: `${{ web.url }}` is not a reference; references start with `services.`, `variables.`, `secrets.`, `environment.`, `project.` or `preview.`",
    );
}

// ---------------------------------------------------------------- cycles and conflicts

#[test]
fn dependency_cycle_is_named() {
    check(
        &with_envs(
            "project: p\nservices:\n  a:\n    run: x\n    depends_on: [b]\n  b:\n    run: x\n    depends_on: [c]\n  c:\n    run: x\n    depends_on: [a]\n",
        ),
        "11:18 services.c.depends_on[0]: dependency cycle: a → b → c → a; remove one of these dependencies",
    );
}

#[test]
fn duplicate_port_number() {
    check(
        &with_envs(
            "project: p\nservices:\n  web:\n    run: x\n    ports:\n      - { name: http, port: 8080 }\n      - { name: admin, port: 8080 }\n",
        ),
        "7:9 services.web.ports[1]: port 8080 is already declared at services.web.ports[0]; each port may appear once",
    );
}

#[test]
fn duplicate_port_name() {
    check(
        &with_envs(
            "project: p\nservices:\n  web:\n    run: x\n    ports:\n      - { name: http, port: 8080 }\n      - { name: http, port: 9090 }\n",
        ),
        "7:9 services.web.ports[1]: port name `http` is already used at services.web.ports[0]; give each port its own name",
    );
}

#[test]
fn domain_claimed_by_two_environments() {
    check(
        "project: p\nservices:\n  web:\n    run: x\n    ports: [80]\n    public: true\n    domains: [shop.example.com]\nenvironments:\n  production: {}\n  staging: {}\n",
        "7:15 services.web.domains[0]: `shop.example.com` would route to `web` in `staging` and to `web` in `production` (declared at services.web.domains[0]); a domain belongs to one service of one environment: declare it in that environment's overrides, or put `{env}` in it",
    );
}

#[test]
fn preview_domain_without_env_placeholder() {
    check(
        "project: p\nservices:\n  web:\n    run: x\n    ports: [80]\n    public: true\nenvironments:\n  staging: {}\npreviews:\n  blueprint: staging\n  overrides:\n    services:\n      web:\n        domains: [preview.example.com]\n",
        "14:19 previews.overrides.services.web.domains[0]: every preview would claim `preview.example.com`; put `{env}` in it (e.g. `{env}.preview.example.com`) or set domains for previews in `previews.overrides`",
    );
}

#[test]
fn wildcard_not_leftmost() {
    check(
        &with_envs(
            "project: p\nservices:\n  web:\n    run: x\n    ports: [80]\n    public: true\n    domains: [\"shop.*.example.com\"]\n",
        ),
        "7:15 services.web.domains[0]: `shop.*.example.com` is not a domain: it has `*` beyond the first label; a wildcard may only be the leftmost label (`*.example.com`)",
    );
}

#[test]
fn domains_on_internal_app() {
    check(
        &with_envs(
            "project: p\nservices:\n  web:\n    run: x\n    ports: [80]\n    domains: [shop.example.com]\n",
        ),
        "6:14 services.web.domains: custom domains route to a public app; set `public: true` on this service or remove `domains`",
    );
}

// ---------------------------------------------------------------- hostnames

#[test]
fn hostname_template_without_env() {
    check(
        &with_envs("project: p\ndomain:\n  hostname: \"{service}\"\n"),
        "3:13 domain.hostname: `{service}` lacks `{env}`, so hostnames of different services or environments would collide; the default is `{service}-{env}`",
    );
}

#[test]
fn hostname_template_unknown_placeholder() {
    check(
        &with_envs("project: p\ndomain:\n  hostname: \"{service}-{branch}\"\n"),
        "3:13 domain.hostname: unknown placeholder `{branch}` in `{service}-{branch}`; use `{service}`, `{env}` and `{project}`",
    );
}

#[test]
fn base_domain_invalid() {
    check(
        &with_envs("project: p\ndomain:\n  base: shop_example.com\n"),
        "3:9 domain.base: `shop_example.com` is not a base domain: it has a label `shop_example` that contains `_`; use only lowercase letters, digits and `-`",
    );
}

// ---------------------------------------------------------------- masking

#[test]
fn masking_rules_never_used() {
    check(
        &with_envs(
            "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    masking:\n      tables:\n        users: { email: email }\n",
        ),
        "8:7 services.db.masking: masking rules on `db`, whose `clone.policy` is not `masked` in any environment or preview; set `clone: { policy: masked, from: <environment> }` where data is cloned, or remove `masking`",
    );
}

#[test]
fn masked_policy_without_rules() {
    check(
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\nenvironments:\n  production: {}\n  staging:\n    services:\n      db:\n        clone: { policy: masked, from: production }\n",
        "4:5 services.db: `clone.policy: masked` in `staging` needs `masking` rules (table → column → rule)",
    );
}

#[test]
fn masking_same_as_unknown_column() {
    check(
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: masked, from: production }\n    masking:\n      tables:\n        users: { email: email }\n        orders: { user_email: { same_as: users.emial } }\nenvironments:\n  production:\n    services:\n      db: { clone: { policy: empty } }\n  staging: {}\n",
        "11:31 services.db.masking.tables.orders.user_email: `users.emial` is not a masked column; did you mean `users.email`?",
    );
}

#[test]
fn masking_unknown_rule() {
    check(
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: masked, from: production }\n    masking:\n      tables:\n        users: { email: scramble }\nenvironments:\n  production:\n    services:\n      db: { clone: { policy: empty } }\n  staging: {}\n",
        "10:25 services.db.masking.tables.users.email: `scramble` is not a masking rule; use `hash`, `email`, `name`, `phone` or `null`",
    );
}

#[test]
fn masking_key_is_not_a_secret() {
    check(
        "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    clone: { policy: masked, from: production }\n    masking:\n      key: MASK_KEY\n      tables:\n        users: { email: email }\nenvironments:\n  production:\n    services:\n      db: { clone: { policy: empty } }\n  staging: {}\n",
        "9:7 services.db.masking.key: `MASK_KEY` is not a declared project secret; add it under the top-level `secrets:`",
    );
}

// ---------------------------------------------------------------- resources and limits

/// An app `web` with `resources`, then `rest` (environments and more).
fn app_with(resources: &str, rest: &str) -> String {
    format!("project: p\nservices:\n  web:\n    run: x\n    resources: {resources}\n{rest}")
}

#[test]
fn cpu_amounts_that_are_not_amounts() {
    check(
        &app_with("{ cpu: lots }", ENVS),
        "5:23 services.web.resources.cpu: `lots` is not a CPU amount; write cores (`1`, `0.5`) or millicores (`250m`)",
    );
    check(
        &app_with("{ cpu: 0 }", ENVS),
        "5:23 services.web.resources.cpu: `0` is not a CPU amount: zero would let nothing run; write cores (`1`, `0.5`) or millicores (`250m`)",
    );
    check(
        &app_with("{ cpu: 0.0005 }", ENVS),
        "5:23 services.web.resources.cpu: `0.0005` is not a CPU amount: it is finer than a millicore (`1m`, a thousandth of a core); round it to whole millicores",
    );
    check(
        &app_with("{ cpu: 2000000 }", ENVS),
        "5:23 services.web.resources.cpu: `2000000` is not a CPU amount: it is more than 1000000 cores",
    );
    check(
        &app_with("{ cpu: [1] }", ENVS),
        "5:23 services.web.resources.cpu: expected a CPU amount, found a list",
    );
}

#[test]
fn memory_amounts_that_are_not_amounts() {
    check(
        &app_with("{ memory: 256MB }", ENVS),
        "5:26 services.web.resources.memory: `256MB` is not a memory amount; write a number with a unit such as `256Mi` or `1Gi`",
    );
    check(
        &app_with("{ memory: 0Gi }", ENVS),
        "5:26 services.web.resources.memory: `0Gi` is not a memory amount: zero would let nothing run; write a number with a unit such as `256Mi` or `1Gi`",
    );
    check(
        &app_with("{ memory: 99999999T }", ENVS),
        "5:26 services.web.resources.memory: `99999999T` is not a memory amount: it is more bytes than a 64-bit count holds (16 EiB)",
    );
}

#[test]
fn process_counts_out_of_range() {
    check(
        &app_with("{ processes: 0 }", ENVS),
        "5:29 services.web.resources.processes: 0 is not a number of processes; use a number from 1 to 4194304",
    );
    check(
        &app_with("{ processes: 4194305 }", ENVS),
        "5:29 services.web.resources.processes: 4194305 is not a number of processes; use a number from 1 to 4194304",
    );
    check(
        &app_with("{ processes: many }", ENVS),
        "5:29 services.web.resources.processes: expected a number of processes (a whole number), found `many`",
    );
}

#[test]
fn misspelt_resource_and_limit_keys_are_suggested() {
    check(
        &app_with("{ cpus: 1 }", ENVS),
        "5:18 services.web.resources.cpus: unknown key `cpus` in resources; did you mean `cpu`?",
    );
    check(
        &with_envs(
            "project: p
limit: { cpu: 1 }
",
        ),
        "2:1 limit: unknown key `limit` in a project spec; did you mean `limits`?",
    );
    check(
        &with_envs(
            "project: p
limits: { memroy: 1Gi }
",
        ),
        "2:11 limits.memroy: unknown key `memroy` in limits; did you mean `memory`?",
    );
    check(
        "project: p
environments:
  staging:
    limts: { cpu: 1 }
",
        "4:5 environments.staging.limts: unknown key `limts` in environment `staging`; did you mean `limits`?",
    );
    check(
        "project: p
environments:
  staging: {}
previews:
  blueprint: staging
  limits: { threads: 10 }
",
        "6:13 previews.limits.threads: unknown key `threads` in limits; known keys: cpu, memory, processes",
    );
}

#[test]
fn limits_are_checked_where_they_are_written() {
    check(
        "project: p
limits: { cpu: -1 }
environments:
  staging:
    limits: { memory: 1.5Gi }
previews:
  blueprint: staging
  limits: { processes: 0 }
",
        "2:16 limits.cpu: `-1` is not a CPU amount; write cores (`1`, `0.5`) or millicores (`250m`)
\
         5:23 environments.staging.limits.memory: `1.5Gi` is not a memory amount; write a number with a unit such as `256Mi` or `1Gi`\n\
         8:24 previews.limits.processes: 0 is not a number of processes; use a number from 1 to 4194304",
    );
    check(
        &with_envs(
            "project: p
limits: 4Gi
",
        ),
        "2:9 limits: expected limits (a mapping of `key: value`), found a string",
    );
}

#[test]
fn an_app_above_the_project_total() {
    check(
        &app_with(
            "{ memory: 8Gi }",
            "limits: { memory: 4Gi }\nenvironments:\n  staging: {}\n",
        ),
        "5:26 services.web.resources.memory: 8Gi is more than the total of environment `staging` (4Gi, from limits.memory)",
    );
}

#[test]
fn an_app_above_its_environment_total_names_each_environment() {
    check(
        &app_with(
            "{ cpu: 1500m, processes: 200 }",
            "limits: { processes: 100 }\nenvironments:\n  production:\n    limits: { cpu: 2, processes: 500 }\n  staging:\n    limits: { cpu: 1 }\n",
        ),
        "5:23 services.web.resources.cpu: 1500m is more than the total of environment `staging` (1, from environments.staging.limits.cpu)\n\
         5:41 services.web.resources.processes: 200 is more than the total of environment `staging` (100, from limits.processes)",
    );
}

#[test]
fn an_override_above_the_environment_total_points_at_the_override() {
    check(
        "project: p
services:
  web:
    run: x
    resources: { memory: 1Gi }
environments:
  production:
    limits: { memory: 2Gi }
    services:
      web:
        resources: { memory: 3Gi }
",
        "11:30 environments.production.services.web.resources.memory: 3Gi is more than the total of environment `production` (2Gi, from environments.production.limits.memory)",
    );
}

#[test]
fn an_app_above_the_preview_totals() {
    let rest = "environments:\n  staging: {}\npreviews:\n  blueprint: staging\n";
    check(
        &app_with("{ cpu: 3, memory: 5Gi, processes: 5000 }", rest),
        "5:23 services.web.resources.cpu: 3 is more than the total of previews (2, the default total for previews; raise it with previews.limits.cpu)\n\
         5:34 services.web.resources.memory: 5Gi is more than the total of previews (4Gi, the default total for previews; raise it with previews.limits.memory)\n\
         5:50 services.web.resources.processes: 5000 is more than the total of previews (4096, the default total for previews; raise it with previews.limits.processes)",
    );
    check(
        &app_with(
            "{ memory: 2Gi }",
            &format!("{rest}  limits: {{ memory: 1Gi }}\n"),
        ),
        "5:26 services.web.resources.memory: 2Gi is more than the total of previews (1Gi, from previews.limits.memory)",
    );
    // The preview overrides can lower an app's share to fit.
    let fits = app_with(
        "{ memory: 8Gi }",
        &format!(
            "{rest}  overrides:\n    services:\n      web:\n        resources: {{ memory: 1Gi }}\n"
        ),
    );
    assert!(parse_spec("preview.yaml", &fits).is_ok(), "{fits}");
}

// ---------------------------------------------------------------- previews

#[test]
fn ttl_without_unit() {
    check(
        "project: p\nenvironments:\n  staging: {}\npreviews:\n  blueprint: staging\n  ttl: 72\n",
        "6:8 previews.ttl: `72` is not a duration; write a number with a unit, such as `500ms`, `90s`, `30m`, `72h`, `7d` or `1h30m`",
    );
}

#[test]
fn max_live_zero() {
    check(
        "project: p\nenvironments:\n  staging: {}\npreviews:\n  blueprint: staging\n  max_live: 0\n",
        "6:13 previews.max_live: 0 is not a number of previews; use a number from 1 to 10000",
    );
}

#[test]
fn forge_repository_malformed() {
    check(
        "project: p\nsecrets: [S]\nenvironments:\n  staging: {}\npreviews:\n  blueprint: staging\n  forge: { kind: gitlab, repository: shop, webhook_secret: S }\n",
        "7:38 previews.forge.repository: `shop` is not a repository; write `owner/name`",
    );
}

#[test]
fn forge_without_webhook_secret() {
    check(
        "project: p\nenvironments:\n  staging: {}\npreviews:\n  blueprint: staging\n  forge: { kind: github, repository: o/r }\n",
        "6:10 previews.forge: missing required key `webhook_secret` (the project secret that verifies webhook signatures)",
    );
}

#[test]
fn unknown_preview_override_key() {
    check(
        "project: p\nenvironments:\n  staging: {}\npreviews:\n  blueprint: staging\n  overrides:\n    secrets: [X]\n",
        "7:5 previews.overrides.secrets: unknown key `secrets` in preview overrides; known keys: variables, services",
    );
}

// ---------------------------------------------------------------- many problems at once

#[test]
fn all_errors_come_at_once_sorted_by_position() {
    check(
        "project: Bad_Name\nisolation: none\nservices:\n  web:\n    run: x\n    ports: [0]\nenvironments:\n  staging: {}\n",
        "1:10 project: `Bad_Name` is not a valid project name: it contains the uppercase letter `B`; use lowercase (names are used in hostnames, so they follow DNS label rules)\n\
         2:12 isolation: `none` is not an isolation; use `logical` or `physical`\n\
         6:13 services.web.ports[0]: 0 is not a port; use a number from 1 to 65535",
    );
}

#[test]
fn rendered_with_file_name() {
    let printed = parse_spec(
        "shop/preview.yaml",
        "project: p\nruntime: docker\nenvironments: {staging: {}}\n",
    )
    .expect_err("the spec is invalid")
    .to_string();
    assert_eq!(
        printed,
        "shop/preview.yaml:2:10 runtime: `docker` is not a runtime; use `local` or `kubernetes`"
    );
}

// ---------------------------------------------------------------- keys at the wrong level

#[test]
fn a_service_key_indented_too_little_is_not_taken_for_a_service() {
    check(
        &with_envs("project: p\nservices:\n  web:\n    run: x\n  variables:\n    A: \"1\"\n"),
        "5:3 services.variables: `variables` is a key of a service, not a service: it is indented too little — indent it under the service it belongs to",
    );
}

#[test]
fn a_top_level_key_indented_too_much_is_said_so() {
    check(
        &with_envs(
            "project: p\nservices:\n  web:\n    run: x\n    previews:\n      blueprint: staging\n",
        ),
        "5:5 services.web.previews: `previews` is a top-level key, not one of service `web` (an app; add `type: database` or `type: job` for other kinds): it is indented too much — move it to the start of its line",
    );
    check(
        "project: p\nservices:\n  web:\n    run: x\n  environments:\n    staging: {}\n",
        "1:1: missing required key `environments` (at least one environment, e.g. `environments: { production: {}, staging: {} }`)\n5:3 services.environments: `environments` is a top-level key, not a service: it is indented too much — move it to the start of its line",
    );
}

#[test]
fn an_environment_key_indented_too_little_is_not_taken_for_an_environment() {
    check(
        "project: p\nservices:\n  web:\n    run: x\nenvironments:\n  staging: {}\n  variables:\n    A: \"1\"\n",
        "7:3 environments.variables: `variables` is a key of an environment, not an environment: it is indented too little — indent it under the environment it belongs to",
    );
}

#[test]
fn a_service_key_in_an_environment_says_where_it_goes() {
    check(
        "project: p\nservices:\n  web:\n    run: x\nenvironments:\n  staging:\n    replicas: 2\n",
        "7:5 environments.staging.replicas: `replicas` is a key of a service, not of environment `staging`: put it under the environment's `services:`, in the service it changes",
    );
}

#[test]
fn a_service_named_like_a_key_is_still_a_service() {
    let spec = with_envs("project: p\nservices:\n  public:\n    run: ./serve\n");
    preview_spec::parse_spec("preview.yaml", &spec).expect("a service called `public` is fine");
}

#[test]
fn a_near_key_of_this_level_wins_over_a_key_of_another_level() {
    let errors = parse_spec(
        "preview.yaml",
        &with_envs("project: p\nservices:\n  web:\n    run: x\n    public: true\n    domain: [a.example.com]\n"),
    )
    .expect_err("invalid")
    .to_string();
    assert!(errors.contains("did you mean `domains`?"), "{errors}");
    assert!(!errors.contains("indented too much"), "{errors}");
}

#[test]
fn clusters_belong_to_kubernetes_and_physical_isolation_needs_them() {
    check(
        "project: p\nenvironments:\n  staging:\n    cluster: big\n",
        "4:5 environments.staging: environment `staging` names the cluster `big`, but the project's runtime is `local`: `cluster:` is for `runtime: kubernetes`",
    );
    check(
        "project: p\nruntime: kubernetes\nenvironments:\n  staging:\n    cluster: Big_One\n",
        "5:14 environments.staging.cluster: `Big_One` is not a cluster name: it contains the uppercase letter `B`; use lowercase",
    );
    check(
        "project: p\nruntime: kubernetes\nisolation: physical\nenvironments:\n  production:\n    cluster: prod\n  staging: {}\npreviews:\n  blueprint: production\n",
        "7:12 environments.staging: `isolation: physical` on Kubernetes puts environment `staging` on a cluster of its own: name a registered cluster with `cluster:` (`preview cluster add NAME --kubeconfig FILE`)
9:3 previews: `isolation: physical` on Kubernetes keeps previews off the clusters of environments, and previews would run on `prod`: name a cluster of their own with `previews.cluster:`",
    );
    // Previews named onto a cluster of their own are accepted.
    let spec = "project: p\nruntime: kubernetes\nisolation: physical\nenvironments:\n  production:\n    cluster: prod\npreviews:\n  blueprint: production\n  cluster: previews\n";
    let parsed = parse_spec("preview.yaml", spec).unwrap_or_else(|e| panic!("{e}"));
    let previews = parsed.previews.unwrap_or_else(|| panic!("previews"));
    assert_eq!(previews.template.cluster.as_deref(), Some("previews"));
    assert_eq!(
        parsed.environments["production"].cluster.as_deref(),
        Some("prod")
    );
}

fn redis(extra: &str) -> String {
    with_envs(&format!(
        "project: p\nservices:\n  cache:\n    type: database\n    engine: redis\n    version: 7\n{extra}"
    ))
}

#[test]
fn unsupported_redis_version() {
    check(
        &with_envs(
            "project: p\nservices:\n  cache:\n    type: database\n    engine: redis\n    version: 5\n",
        ),
        "6:14 services.cache.version: 5 is not a supported Redis version; use a number from 7 to 8",
    );
}

#[test]
fn redis_cannot_be_masked() {
    check(
        "project: p\nservices:\n  cache:\n    type: database\n    engine: redis\n    version: 7\nenvironments:\n  production: {}\n  staging:\n    services:\n      cache:\n        clone: { policy: masked, from: production }\n",
        "12:16 environments.staging.services.cache.clone: `policy: masked` is not available for Redis: its values are opaque to preview, so nothing in them could be masked; use `policy: clone` (the data as it is) or `policy: seed`",
    );
    check(
        &redis("    masking:\n      tables: { customers: { email: email } }\n"),
        "8:7 services.cache.masking: Redis values are opaque to preview, so they cannot be masked; copy the data as it is (`policy: clone`), or seed previews from a file",
    );
}

fn mysql(version: &str) -> String {
    with_envs(&format!(
        "project: p\nservices:\n  ledger:\n    type: database\n    engine: mysql\n    version: {version}\n"
    ))
}

#[test]
fn mysql_names_a_mariadb_release_series() {
    check(
        &mysql("8.0"),
        "6:14 services.ledger.version: `8.0` is a MySQL version; `engine: mysql` is served by MariaDB (MySQL-compatible), so name a MariaDB release series: `10.6`, `10.11`, `11.4`, `11.8`",
    );
    // YAML reads 10.10 as a number equal to 10.1; the series is read as written.
    check(
        &mysql("10.10"),
        "6:14 services.ledger.version: `10.10` is not a supported MariaDB release series: `10.6`, `10.11`, `11.4`, `11.8`",
    );
    check(
        &mysql("11"),
        "6:14 services.ledger.version: `11` is not a supported MariaDB release series: `10.6`, `10.11`, `11.4`, `11.8`",
    );
    let parsed = parse_spec("preview.yaml", &mysql("10.11")).unwrap_or_else(|e| panic!("{e}"));
    let ledger = &parsed.services["ledger"];
    let preview_spec::ServiceKind::Database(database) = &ledger.kind else {
        panic!("a database");
    };
    assert_eq!(database.engine, preview_spec::Engine::Mysql);
    assert_eq!(database.version.to_string(), "10.11");
    // Written as text in plans, where PostgreSQL's major version stays a number.
    assert_eq!(
        serde_json::to_value(database.version).unwrap_or_default(),
        "10.11"
    );
}

#[test]
fn redis_runs_on_a_server_of_its_own() {
    check(
        &redis("    mode: external\n"),
        "7:11 services.cache.mode: a Redis database always runs on a server of its own per environment, run by preview; `mode: external` is for PostgreSQL",
    );
}

#[test]
fn persistence_is_for_redis() {
    check(
        &redis("    persistence: always\n"),
        "7:18 services.cache.persistence: `always` is not a Redis persistence; use `rdb`, `aof` or `none`",
    );
    check(
        &with_envs(
            "project: p\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    persistence: aof\n",
        ),
        "7:18 services.db.persistence: `persistence` is only used with `engine: redis`",
    );
}
