//! Dependency cycles between services: a cycle can never be deployed, so it is named in full.

use std::collections::BTreeMap;

use crate::diagnostic::Sink;
use crate::model::Service;

#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Unvisited,
    InProgress,
    Done,
}

pub(crate) fn check_cycles(services: &BTreeMap<String, Service>, sink: &mut Sink) {
    let mut marks: BTreeMap<&str, Mark> = services
        .keys()
        .map(|k| (k.as_str(), Mark::Unvisited))
        .collect();
    for name in services.keys() {
        let mut trail = Vec::new();
        visit(name, services, &mut marks, &mut trail, sink);
    }
}

/// Depth-first walk; an edge back into the current trail closes a cycle, reported at that edge.
fn visit<'a>(
    name: &'a str,
    services: &'a BTreeMap<String, Service>,
    marks: &mut BTreeMap<&'a str, Mark>,
    trail: &mut Vec<&'a str>,
    sink: &mut Sink,
) {
    if marks.get(name) != Some(&Mark::Unvisited) {
        return;
    }
    marks.insert(name, Mark::InProgress);
    trail.push(name);
    if let Some(service) = services.get(name) {
        for dependency in &service.depends_on {
            let target = dependency.service.as_str();
            match marks.get(target) {
                Some(Mark::InProgress) => {
                    let start = trail.iter().position(|n| *n == target).unwrap_or(0);
                    let mut cycle: Vec<&str> = trail[start..].to_vec();
                    cycle.push(target);
                    sink.push(
                        dependency.origin.position,
                        &dependency.origin.path,
                        format!(
                            "dependency cycle: {}; remove one of these dependencies",
                            cycle.join(" → ")
                        ),
                    );
                }
                Some(Mark::Unvisited) => visit(target, services, marks, trail, sink),
                _ => {}
            }
        }
    }
    trail.pop();
    marks.insert(name, Mark::Done);
}
