//! The objects, as etcd would hold them: one map keyed by resource, namespace and name, one resource-version counter
//! for the whole cluster, and the history of every change in order, which watches replay from any version and follow
//! as it grows.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::fields::{Manager, render};
use super::identity::Identities;

/// Where an object lives: `deployments.apps`, its namespace (empty when cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(resource: &str, namespace: Option<&str>, name: &str) -> Key {
        Key {
            resource: resource.to_owned(),
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name.to_owned(),
        }
    }
}

/// A stored object and its field managers.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub object: Value,
    pub managers: Vec<Manager>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub revision: u64,
    pub change: ChangeType,
    pub key: Key,
    pub object: Value,
    /// The object before a modification, so that a filtered watch can tell objects leaving its selection.
    pub previous: Option<Value>,
}

pub(crate) struct Store {
    objects: BTreeMap<Key, Entry>,
    revision: u64,
    history: Vec<Change>,
    changes: watch::Sender<u64>,
    pub ids: Identities,
}

impl Store {
    pub fn new() -> Store {
        Store {
            objects: BTreeMap::new(),
            revision: 1,
            history: Vec::new(),
            changes: watch::Sender::new(1),
            ids: Identities::new(),
        }
    }

    /// The latest resource version.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn get(&self, key: &Key) -> Option<&Entry> {
        self.objects.get(key)
    }

    pub fn object(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key).map(|e| &e.object)
    }

    /// The objects of `resource`, in one namespace or all, ordered by namespace and name.
    pub fn list<'a>(
        &'a self,
        resource: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Entry)> + 'a {
        let start = Key::new(resource, namespace, "");
        self.objects.range(start..).take_while(move |(k, _)| {
            k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns)
        })
    }

    /// The keys of `resource` objects (to change them one by one).
    pub fn keys(&self, resource: &str, namespace: Option<&str>) -> Vec<Key> {
        self.list(resource, namespace)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every object of a namespace, whatever its resource.
    pub fn in_namespace(&self, namespace: &str) -> Vec<(Key, Value)> {
        self.objects
            .iter()
            .filter(|(k, _)| k.namespace == namespace)
            .map(|(k, e)| (k.clone(), e.object.clone()))
            .collect()
    }

    /// Every object, for sweeps across resources (garbage collection).
    pub fn all(&self) -> impl Iterator<Item = (&Key, &Entry)> {
        self.objects.iter()
    }

    /// Stores the entry under a new resource version (with its `managedFields` written out) and returns the object
    /// as stored.
    pub fn put(&mut self, key: Key, mut entry: Entry) -> Value {
        self.revision += 1;
        let revision = self.revision;
        let managed = render(&entry.managers);
        if let Some(metadata) = entry.object["metadata"].as_object_mut() {
            metadata.insert("resourceVersion".to_owned(), json!(revision.to_string()));
            if managed.as_array().is_some_and(|m| m.is_empty()) {
                metadata.remove("managedFields");
            } else {
                metadata.insert("managedFields".to_owned(), managed);
            }
        }
        let object = entry.object.clone();
        let previous = self.objects.insert(key.clone(), entry).map(|e| e.object);
        self.record(Change {
            revision,
            change: if previous.is_some() {
                ChangeType::Modified
            } else {
                ChangeType::Added
            },
            key,
            object: object.clone(),
            previous,
        });
        object
    }

    /// Removes the object; the last state it had, under the resource version of its deletion.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut entry = self.objects.remove(key)?;
        self.revision += 1;
        let revision = self.revision;
        entry.object["metadata"]["resourceVersion"] = json!(revision.to_string());
        self.record(Change {
            revision,
            change: ChangeType::Deleted,
            key: key.clone(),
            object: entry.object.clone(),
            previous: None,
        });
        Some(entry.object)
    }

    fn record(&mut self, change: Change) {
        let revision = change.revision;
        self.history.push(change);
        self.changes.send_replace(revision);
    }

    /// The changes after `revision`, oldest first.
    pub fn changes_after(&self, revision: u64) -> &[Change] {
        let start = self.history.partition_point(|c| c.revision <= revision);
        &self.history[start..]
    }

    /// Wakes when a change is recorded.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry {
            object: json!({ "metadata": { "name": name } }),
            managers: Vec::new(),
        }
    }

    #[test]
    fn every_write_gets_the_next_resource_version_and_is_in_the_history() {
        let mut store = Store::new();
        let key = Key::new("configmaps", Some("a"), "one");
        let first = store.put(key.clone(), entry("one"));
        let second = store.put(key.clone(), entry("one"));
        let gone = store.remove(&key).expect("removed");
        assert_eq!(first["metadata"]["resourceVersion"], "2");
        assert_eq!(second["metadata"]["resourceVersion"], "3");
        assert_eq!(gone["metadata"]["resourceVersion"], "4");
        let kinds: Vec<ChangeType> = store.changes_after(2).iter().map(|c| c.change).collect();
        assert_eq!(kinds, [ChangeType::Modified, ChangeType::Deleted]);
    }

    #[test]
    fn lists_are_per_resource_and_namespace() {
        let mut store = Store::new();
        store.put(Key::new("configmaps", Some("a"), "x"), entry("x"));
        store.put(Key::new("configmaps", Some("b"), "y"), entry("y"));
        store.put(Key::new("secrets", Some("a"), "z"), entry("z"));
        assert_eq!(store.list("configmaps", Some("a")).count(), 1);
        assert_eq!(store.list("configmaps", None).count(), 2);
    }
}
