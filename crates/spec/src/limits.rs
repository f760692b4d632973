//! Resource amounts: an app's `resources` and an environment's totals (`limits`), layered key by key — the
//! project's, then the environment's own; for previews the project's, then `previews.limits`, then the built-in
//! preview defaults — and the check that no app alone asks for more than its environment's total.

use crate::diagnostic::Sink;
use crate::model::{Cpu, Memory, Resources};
use crate::previews::TEMPLATE_NAME;
use crate::quantities::{cpu_problem, memory_problem};
use crate::read::{Fields, integer, string};
use crate::yaml::Node;

const KEYS: &[&str] = &["cpu", "memory", "processes"];

/// The most process ids a 64-bit Linux kernel hands out (`PID_MAX_LIMIT`): more tasks can never exist at once.
const MAX_PROCESSES: i64 = 4_194_304;

/// Previews run code from pull requests, so they always have totals; these apply to keys nobody set.
const PREVIEW_CPU: &str = "2";
const PREVIEW_MEMORY: &str = "4Gi";
const PREVIEW_PROCESSES: u32 = 4096;

/// `cpu`, `memory` and `processes` of an app's `resources` or of a `limits` mapping (`what` names which).
pub(crate) fn read_resources(node: &Node, what: &str, sink: &mut Sink) -> Resources {
    let Some(fields) = Fields::open(node, what, KEYS, sink) else {
        return Resources::default();
    };
    let cpu = fields.get("cpu").and_then(|n| {
        let value = string(n, "a CPU amount", sink)?;
        Cpu::parse(&value)
            .map_err(|error| sink.push(n.position, &n.path, cpu_problem(&value, error)))
            .ok()
    });
    let memory = fields.get("memory").and_then(|n| {
        let value = string(n, "a memory amount", sink)?;
        Memory::parse(&value)
            .map_err(|error| sink.push(n.position, &n.path, memory_problem(&value, error)))
            .ok()
    });
    let processes = fields
        .get("processes")
        .and_then(|n| integer(n, "a number of processes", 1..=MAX_PROCESSES, sink))
        .map(|n| n as u32);
    Resources {
        cpu,
        memory,
        processes,
    }
}

/// Where one of an environment's totals comes from.
#[derive(Debug, Clone)]
enum Source {
    /// Written at this key path: `limits.memory`, `environments.staging.limits.memory`, `previews.limits.memory`.
    Written(String),
    /// The built-in default for previews.
    PreviewDefault,
}

#[derive(Debug, Clone)]
struct Total<T> {
    value: T,
    source: Source,
}

/// One `limits` mapping, or an environment's effective totals, with where each key was set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Totals {
    cpu: Option<Total<Cpu>>,
    memory: Option<Total<Memory>>,
    processes: Option<Total<u32>>,
}

impl Totals {
    /// The `limits` mapping at `node`, if there is one.
    pub(crate) fn read(node: Option<&Node>, sink: &mut Sink) -> Totals {
        let Some(node) = node else {
            return Totals::default();
        };
        let resources = read_resources(node, "limits", sink);
        let written =
            |key: &str| Source::Written(node.get(key).map(|n| n.path.clone()).unwrap_or_default());
        Totals {
            cpu: resources.cpu.map(|value| Total {
                value,
                source: written("cpu"),
            }),
            memory: resources.memory.map(|value| Total {
                value,
                source: written("memory"),
            }),
            processes: resources.processes.map(|value| Total {
                value,
                source: written("processes"),
            }),
        }
    }

    /// These totals with each key that `over` sets replaced by `over`'s.
    pub(crate) fn overlaid(&self, over: &Totals) -> Totals {
        Totals {
            cpu: over.cpu.clone().or_else(|| self.cpu.clone()),
            memory: over.memory.clone().or_else(|| self.memory.clone()),
            processes: over.processes.clone().or_else(|| self.processes.clone()),
        }
    }

    /// These totals with the built-in preview defaults for the keys still unset.
    pub(crate) fn with_preview_defaults(self) -> Totals {
        fn default<T>(value: T) -> Total<T> {
            Total {
                value,
                source: Source::PreviewDefault,
            }
        }
        Totals {
            cpu: self
                .cpu
                .or_else(|| Some(default(Cpu::parse(PREVIEW_CPU).ok()?))),
            memory: self
                .memory
                .or_else(|| Some(default(Memory::parse(PREVIEW_MEMORY).ok()?))),
            processes: self.processes.or(Some(default(PREVIEW_PROCESSES))),
        }
    }

    /// The totals as the model carries them.
    pub(crate) fn resources(&self) -> Resources {
        Resources {
            cpu: self.cpu.as_ref().map(|t| t.value.clone()),
            memory: self.memory.as_ref().map(|t| t.value.clone()),
            processes: self.processes.as_ref().map(|t| t.value),
        }
    }

    /// Reports each key of an app's `resources` (read from `node`) that asks for more than the total of
    /// `environment` alone.
    pub(crate) fn check_app(
        &self,
        environment: &str,
        node: &Node,
        resources: &Resources,
        sink: &mut Sink,
    ) {
        let holder = if environment == TEMPLATE_NAME {
            "previews".to_owned()
        } else {
            format!("environment `{environment}`")
        };
        let excesses = [
            ("cpu", excess(resources.cpu.as_ref(), self.cpu.as_ref())),
            (
                "memory",
                excess(resources.memory.as_ref(), self.memory.as_ref()),
            ),
            (
                "processes",
                excess(resources.processes.as_ref(), self.processes.as_ref()),
            ),
        ];
        for (key, excess) in excesses {
            let (Some((asked, total, source)), Some(at)) = (excess, node.get(key)) else {
                continue;
            };
            let from = match source {
                Source::Written(path) => format!("from {path}"),
                Source::PreviewDefault => {
                    format!("the default total for previews; raise it with previews.limits.{key}")
                }
            };
            sink.push(
                at.position,
                &at.path,
                format!("{asked} is more than the total of {holder} ({total}, {from})"),
            );
        }
    }
}

/// An amount of any kind, compared by its number and shown as written.
trait Amount {
    fn number(&self) -> u64;
    fn written(&self) -> String;
}

impl Amount for Cpu {
    fn number(&self) -> u64 {
        self.millicores
    }
    fn written(&self) -> String {
        self.quantity.clone()
    }
}

impl Amount for Memory {
    fn number(&self) -> u64 {
        self.bytes
    }
    fn written(&self) -> String {
        self.quantity.clone()
    }
}

impl Amount for u32 {
    fn number(&self) -> u64 {
        u64::from(*self)
    }
    fn written(&self) -> String {
        self.to_string()
    }
}

/// What was asked, the total it exceeds and where that total comes from, if `asked` is more than `total`.
fn excess<'t, T: Amount>(
    asked: Option<&T>,
    total: Option<&'t Total<T>>,
) -> Option<(String, String, &'t Source)> {
    let (asked, total) = (asked?, total?);
    (asked.number() > total.value.number())
        .then(|| (asked.written(), total.value.written(), &total.source))
}
