//! From a registered spec to the resources an environment should have.

use preview_plan::{Resource, desired_state};
use preview_store::ProjectRecord;

use crate::error::ApiError;

/// The desired resources of `environment`: a declared environment of the spec, or (with `based_on`) a clone of
/// one with the preview overrides applied.
pub(crate) fn desired_for(
    project: &ProjectRecord,
    environment: &str,
    based_on: Option<&str>,
) -> Result<Vec<Resource>, ApiError> {
    let invalid =
        |diagnostics: preview_spec::Diagnostics| ApiError::BadRequest(diagnostics.to_string());
    let (spec, env) = match based_on {
        Some(source) => {
            preview_spec::clone_environment(&project.file, &project.source, source, environment)
                .map_err(invalid)?
        }
        None => {
            let spec = preview_spec::parse_spec(&project.file, &project.source).map_err(invalid)?;
            let Some(env) = spec.environments.get(environment).cloned() else {
                let declared: Vec<&str> = spec.environments.keys().map(String::as_str).collect();
                return Err(ApiError::NotFound(format!(
                    "`{environment}` is not an environment of project `{}` (declared: {}); to make a new one from an existing one, use `preview env clone SOURCE {environment}`",
                    project.name,
                    declared.join(", ")
                )));
            };
            (spec, env)
        }
    };
    let context = preview_resolve::Context {
        based_on: based_on.map(str::to_owned),
        ..preview_resolve::Context::default()
    };
    let resolved =
        preview_resolve::resolve_environment(&spec, &env, &context).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            ApiError::BadRequest(format!(
                "`{environment}` cannot be resolved:\n{}",
                lines.join("\n")
            ))
        })?;
    Ok(desired_state(&resolved))
}
