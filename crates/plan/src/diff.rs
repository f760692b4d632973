//! Desired against recorded → the steps of a deployment.
//!
//! Creates and updates come first, in dependency order; deletes come last, in reverse dependency order, so that
//! nothing still in use disappears before what replaces it is in place. Each step lists the steps it must wait
//! for; steps that do not wait for each other may run in parallel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resource::{Resource, ResourceKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Position in the plan, from 0.
    pub index: usize,
    pub action: Action,
    pub resource: String,
    pub kind: ResourceKind,
    /// The resource as recorded (update, delete).
    pub before: Option<Resource>,
    /// The resource as desired (create, update).
    pub after: Option<Resource>,
    /// Indices of the steps that must complete first.
    pub after_steps: Vec<usize>,
}

impl Step {
    /// Whether this step (or undoing it) cannot be undone exactly: removing a space takes its data and its
    /// ports (a new one gets others), removing a database its data, and a job runs when it is applied — also
    /// when undoing the removal of one would apply it again.
    pub fn is_irreversible(&self) -> bool {
        matches!(
            (self.action, self.kind),
            (Action::Delete, ResourceKind::Space | ResourceKind::Database) | (_, ResourceKind::Job)
        )
    }

    /// The step that undoes this one: delete what was created, restore what was updated or deleted.
    pub fn inverse(&self) -> Step {
        let action = match self.action {
            Action::Create => Action::Delete,
            Action::Update => Action::Update,
            Action::Delete => Action::Create,
        };
        Step {
            index: self.index,
            action,
            resource: self.resource.clone(),
            kind: self.kind,
            before: self.after.clone(),
            after: self.before.clone(),
            after_steps: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub environment: String,
    pub steps: Vec<Step>,
    /// The index of the first step that cannot be undone exactly, when there is one. Every step before it can be
    /// rolled back; it and every later step wait for all of those, and once one of them has begun the deployment
    /// rolls forward — retrying — instead of back.
    #[serde(default)]
    pub point_of_no_return: Option<usize>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The state once every step has been applied: `recorded` with the plan's changes.
    pub fn resulting_state(&self, recorded: &[Resource]) -> Vec<Resource> {
        let mut state: BTreeMap<&str, &Resource> =
            recorded.iter().map(|r| (r.id.as_str(), r)).collect();
        for step in &self.steps {
            match &step.after {
                Some(after) => state.insert(after.id.as_str(), after),
                None => state.remove(step.resource.as_str()),
            };
        }
        state.into_values().cloned().collect()
    }
}

/// The plan that turns `recorded` into `desired`. Unchanged resources give no step; equal states give an empty plan.
pub fn plan_deployment(environment: &str, desired: &[Resource], recorded: &[Resource]) -> Plan {
    let recorded_by_id: BTreeMap<&str, &Resource> =
        recorded.iter().map(|r| (r.id.as_str(), r)).collect();
    let desired_by_id: BTreeMap<&str, &Resource> =
        desired.iter().map(|r| (r.id.as_str(), r)).collect();

    let mut upserts: Vec<(Action, &Resource, Option<&Resource>)> = desired
        .iter()
        .filter_map(|want| match recorded_by_id.get(want.id.as_str()) {
            None => Some((Action::Create, want, None)),
            Some(have) if have.hash != want.hash || have.depends_on != want.depends_on => {
                Some((Action::Update, want, Some(*have)))
            }
            Some(_) => None,
        })
        .collect();
    upserts = dependency_order(
        upserts,
        |(_, r, _)| (r.kind.level(), r.id.clone()),
        |(_, first, _), (_, then, _)| then.depends_on.contains(&first.id),
    );
    let deletes: Vec<&Resource> = recorded
        .iter()
        .filter(|have| !desired_by_id.contains_key(have.id.as_str()))
        .collect();
    let deletes = dependency_order(
        deletes,
        |r| (u8::MAX - r.kind.level(), r.id.clone()),
        |first, then| first.depends_on.contains(&then.id),
    );

    let mut steps: Vec<Step> = Vec::new();
    let mut upsert_index: BTreeMap<&str, usize> = BTreeMap::new();
    for (action, want, have) in &upserts {
        let index = steps.len();
        let mut after_steps: Vec<usize> = want
            .depends_on
            .iter()
            .filter_map(|dependency| upsert_index.get(dependency.as_str()).copied())
            .collect();
        after_steps.sort_unstable();
        upsert_index.insert(want.id.as_str(), index);
        steps.push(Step {
            index,
            action: *action,
            resource: want.id.clone(),
            kind: want.kind,
            before: have.cloned(),
            after: Some((*want).clone()),
            after_steps,
        });
    }
    let all_upserts: Vec<usize> = (0..steps.len()).collect();
    let mut delete_index: BTreeMap<&str, usize> = BTreeMap::new();
    for have in deletes {
        let index = steps.len();
        // A resource goes after everything that depends on it, and after every create and update.
        let mut after_steps: Vec<usize> = recorded
            .iter()
            .filter(|other| other.depends_on.iter().any(|d| d == &have.id))
            .filter_map(|other| delete_index.get(other.id.as_str()).copied())
            .collect();
        after_steps.extend(&all_upserts);
        after_steps.sort_unstable();
        delete_index.insert(have.id.as_str(), index);
        steps.push(Step {
            index,
            action: Action::Delete,
            resource: have.id.clone(),
            kind: have.kind,
            before: Some(have.clone()),
            after: None,
            after_steps,
        });
    }
    with_point_of_no_return(Plan {
        environment: environment.to_owned(),
        steps,
        point_of_no_return: None,
    })
}

/// Moves every step that cannot be undone, and every step that waits for one, after all the others, each waiting
/// for all of those: a failure before the point rolls everything back, and nothing irreversible has happened yet.
///
/// A plan that makes the environment's space makes the whole environment: a job it runs acts only on what the
/// plan makes (its databases), which rolling back removes, so there its jobs are no point of no return — a failing
/// migration rolls the new environment back, its new database and role with it.
fn with_point_of_no_return(plan: Plan) -> Plan {
    let new_environment = plan
        .steps
        .iter()
        .any(|s| s.kind == ResourceKind::Space && s.action == Action::Create);
    let mut after_point = vec![false; plan.steps.len()];
    // Steps only wait for earlier ones, so one pass in order sees every dependency's mark first.
    for step in &plan.steps {
        let undone_with_the_environment = new_environment && step.kind == ResourceKind::Job;
        after_point[step.index] = (step.is_irreversible() && !undone_with_the_environment)
            || step.after_steps.iter().any(|&d| after_point[d]);
    }
    if !after_point.contains(&true) {
        return plan;
    }
    let (before, after): (Vec<Step>, Vec<Step>) = plan
        .steps
        .into_iter()
        .partition(|step| !after_point[step.index]);
    let point = before.len();
    let mut renumbered = vec![0; after_point.len()];
    for (index, step) in before.iter().chain(&after).enumerate() {
        renumbered[step.index] = index;
    }
    let steps = before
        .into_iter()
        .chain(after)
        .enumerate()
        .map(|(index, mut step)| {
            step.index = index;
            let mut waits: Vec<usize> = step.after_steps.iter().map(|&d| renumbered[d]).collect();
            if index >= point {
                waits.extend(0..point);
            }
            waits.sort_unstable();
            waits.dedup();
            step.after_steps = waits;
            step
        })
        .collect();
    Plan {
        environment: plan.environment,
        steps,
        point_of_no_return: Some(point),
    }
}

/// Orders `items` so that whenever `must_precede(a, b)`, `a` comes before `b`; among the items free to go next,
/// the smallest `key` goes first, so the order is deterministic. A cycle (which validation rules out) cannot hang
/// it: the remaining items are then placed by key.
fn dependency_order<T, K: Ord>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> K,
    must_precede: impl Fn(&T, &T) -> bool,
) -> Vec<T> {
    items.sort_by_key(|item| key(item));
    let mut ordered = Vec::with_capacity(items.len());
    while !items.is_empty() {
        let next = (0..items.len())
            .find(|&i| {
                !items
                    .iter()
                    .enumerate()
                    .any(|(j, other)| j != i && must_precede(other, &items[i]))
            })
            .unwrap_or(0);
        ordered.push(items.remove(next));
    }
    ordered
}
