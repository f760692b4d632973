//! Every definition of every variable a service can see, in precedence order: built-ins, then per level the
//! spec's values, the stored ones, and the secrets.

use std::collections::BTreeMap;

use preview_spec::{
    Engine, Environment, SecretDeclaration, SecretInPreviews, Service, ServiceKind, Spec,
    VariableValue, Variables,
};

use crate::outputs::{env_name, output};
use crate::scope::{Level, Scope, Source};
use crate::value::{SecretRef, Value};
use crate::{Context, StoredSecret};

/// A definition before expansion.
#[derive(Debug, Clone)]
pub(crate) enum Raw {
    /// Text that may hold `${{ … }}` references.
    Text(String),
    /// Reads another variable.
    Alias(String),
    /// Already a value (built-ins, secrets).
    Value(Value),
}

#[derive(Debug, Clone)]
pub(crate) struct Definition {
    pub level: Level,
    pub source: Source,
    pub raw: Raw,
}

pub(crate) type Definitions = BTreeMap<String, Vec<Definition>>;

/// The scopes that apply to `service` in `environment`, each with its level, least specific first. A clone sees
/// its source environment's scopes before its own.
fn scopes(service: &str, environment: &str, based_on: Option<&str>) -> Vec<Scope> {
    let environments: Vec<&str> = based_on
        .into_iter()
        .chain(std::iter::once(environment))
        .collect();
    let mut scopes = vec![Scope::Project];
    scopes.extend(environments.iter().map(|e| Scope::Environment {
        environment: (*e).to_owned(),
    }));
    scopes.push(Scope::Service {
        service: service.to_owned(),
    });
    scopes.extend(environments.iter().map(|e| Scope::ServiceInEnvironment {
        service: service.to_owned(),
        environment: (*e).to_owned(),
    }));
    scopes
}

pub(crate) fn collect(
    spec: &Spec,
    environment: &Environment,
    service: &Service,
    context: &Context,
) -> Definitions {
    let mut definitions = Definitions::new();
    let mut add = |name: &str, level: Level, source: Source, raw: Raw| {
        definitions
            .entry(name.to_owned())
            .or_default()
            .push(Definition { level, source, raw });
    };
    for (name, value) in built_ins(spec, environment, service, context) {
        add(&name, Level::BuiltIn, Source::BuiltIn, Raw::Value(value));
    }
    let in_spec = spec_layers(spec, environment, service);
    let declared = declared_secrets(spec, environment, service);
    let withheld = spec.withheld_from_previews();
    for scope in scopes(
        &service.name,
        &environment.name,
        context.based_on.as_deref(),
    ) {
        let level = scope.level();
        // The spec's values belong to the environment being resolved; a clone's already include its source's.
        let own_scope = match &scope {
            Scope::Environment { environment: e }
            | Scope::ServiceInEnvironment { environment: e, .. } => *e == environment.name,
            _ => true,
        };
        if own_scope {
            for (name, variable) in in_spec
                .iter()
                .filter(|(l, _)| *l == level)
                .flat_map(|(_, v)| v.iter())
            {
                let raw = match &variable.value {
                    VariableValue::Text(text) => Raw::Text(text.clone()),
                    VariableValue::Alias(target) => Raw::Alias(target.clone()),
                };
                let source = Source::Spec {
                    path: variable.origin.path.clone(),
                    line: variable.origin.position.line,
                    column: variable.origin.position.column,
                };
                add(name, level, source, raw);
            }
        }
        for stored in context.stored.iter().filter(|v| v.scope == scope) {
            add(
                &stored.name,
                level,
                Source::Stored {
                    scope: scope.clone(),
                },
                Raw::Text(stored.value.clone()),
            );
        }
        for (name, previews) in secrets_at(&scope, own_scope, &declared, &context.secrets) {
            let raw = match (context.is_preview(), previews) {
                (true, _) if withheld.contains(&name) => continue,
                (true, SecretInPreviews::Withheld) => continue,
                (true, SecretInPreviews::Substitute(variable)) => Raw::Alias(variable),
                _ => Raw::Value(Value::secret(SecretRef::Stored {
                    name: name.clone(),
                    scope: scope.clone(),
                })),
            };
            add(
                &name,
                level,
                Source::Secret {
                    scope: scope.clone(),
                },
                raw,
            );
        }
    }
    definitions
}

/// The spec's variables by level.
fn spec_layers<'a>(
    spec: &'a Spec,
    environment: &'a Environment,
    service: &'a Service,
) -> Vec<(Level, &'a Variables)> {
    let mut layers = vec![
        (Level::Project, &spec.variables),
        (Level::Environment, &environment.variables),
        (Level::Service, &service.variables),
    ];
    if let Some(variables) = environment.service_variables.get(&service.name) {
        layers.push((Level::ServiceInEnvironment, variables));
    }
    layers
}

/// Secrets the spec declares for this service, by level.
fn declared_secrets<'a>(
    spec: &'a Spec,
    environment: &'a Environment,
    service: &'a Service,
) -> Vec<(Level, &'a SecretDeclaration)> {
    let at = |level: Level, declarations: &'a [SecretDeclaration]| {
        declarations.iter().map(move |d| (level, d))
    };
    at(Level::Project, &spec.secrets)
        .chain(at(Level::Environment, &environment.secrets))
        .chain(at(Level::Service, &service.secrets))
        .collect()
}

/// The secrets at `scope`: declared in the spec or set in the store, with how previews treat them (a stored
/// setting other than "share" wins over the spec's).
fn secrets_at(
    scope: &Scope,
    own_scope: bool,
    declared: &[(Level, &SecretDeclaration)],
    stored: &[StoredSecret],
) -> BTreeMap<String, SecretInPreviews> {
    let mut found: BTreeMap<String, SecretInPreviews> = BTreeMap::new();
    if own_scope {
        for (_, declaration) in declared.iter().filter(|(level, _)| *level == scope.level()) {
            found.insert(declaration.name.clone(), declaration.previews.clone());
        }
    }
    for secret in stored.iter().filter(|s| &s.scope == scope) {
        let entry = found
            .entry(secret.name.clone())
            .or_insert(SecretInPreviews::Shared);
        if secret.previews != SecretInPreviews::Shared {
            *entry = secret.previews.clone();
        }
    }
    found
}

/// Built-ins: who and where this environment is, every other service's addresses, database connections.
fn built_ins(
    spec: &Spec,
    environment: &Environment,
    service: &Service,
    context: &Context,
) -> Vec<(String, Value)> {
    let mut values = vec![
        ("PREVIEW_PROJECT".to_owned(), Value::text(&spec.project)),
        (
            "PREVIEW_ENVIRONMENT".to_owned(),
            Value::text(&environment.name),
        ),
    ];
    if let Some(preview) = &context.preview {
        values.extend([
            ("PREVIEW_FORGE".to_owned(), Value::text(&preview.forge)),
            (
                "PREVIEW_REPOSITORY".to_owned(),
                Value::text(&preview.repository),
            ),
            (
                "PREVIEW_PR_NUMBER".to_owned(),
                Value::text(preview.number.to_string()),
            ),
            ("PREVIEW_BRANCH".to_owned(), Value::text(&preview.branch)),
            ("PREVIEW_COMMIT".to_owned(), Value::text(&preview.commit)),
        ]);
    } else if let Some(source) = &context.source {
        values.push(("PREVIEW_COMMIT".to_owned(), Value::text(&source.commit)));
    }
    if let ServiceKind::App(_) = service.kind
        && let Ok(port) = output(spec, environment, context, service, "port")
    {
        values.push(("PORT".to_owned(), port));
    }
    let mut databases = Vec::new();
    for other in environment.services.values() {
        let prefix = env_name(&other.name);
        for (suffix, name) in [
            ("HOST", "host"),
            ("PORT", "port"),
            ("URL", "url"),
            ("PUBLIC_URL", "public_url"),
        ] {
            if let Ok(value) = output(spec, environment, context, other, name) {
                values.push((format!("{prefix}_{suffix}"), value));
            }
        }
        if let ServiceKind::Database(database) = &other.kind
            && service.depends_on.iter().any(|d| d.service == other.name)
        {
            databases.push((database.engine, other));
        }
    }
    // Like the platforms teams come from: the one SQL database (PostgreSQL or MySQL) a service depends on is its
    // DATABASE_URL, the one Redis its REDIS_URL.
    for (variable, engines) in [
        ("DATABASE_URL", &[Engine::Postgres, Engine::Mysql][..]),
        ("REDIS_URL", &[Engine::Redis][..]),
    ] {
        if let [(_, database)] = databases
            .iter()
            .filter(|(e, _)| engines.contains(e))
            .collect::<Vec<_>>()
            .as_slice()
            && let Ok(url) = output(spec, environment, context, database, "url")
        {
            values.push((variable.to_owned(), url));
        }
    }
    values
}
