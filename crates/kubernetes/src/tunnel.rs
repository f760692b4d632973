//! A pod's port reached from the daemon's machine, as `kubectl port-forward` does, but private to the daemon: a Unix
//! socket in a directory only the daemon's user may enter (named `.s.PGSQL.<port>`, so that PostgreSQL clients and
//! `pg_dump` find it as a server's socket), whose every connection is carried to the pod through the API server's
//! `portforward` subresource (a WebSocket of its own per connection). No other user of the machine can use the
//! tunnel: a server in a pod may trust connections from its own loopback, which is where a forward arrives.
//! Dropping the tunnel closes the socket, every connection through it, and removes the directory.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use tokio::net::UnixListener;
use tokio::task::{JoinHandle, JoinSet};

pub(crate) struct Tunnel {
    dir: PathBuf,
    /// Why the last connection could not be carried, for errors to quote.
    trouble: Arc<Mutex<Option<String>>>,
    accepting: JoinHandle<()>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.accepting.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How long opening one connection to the pod may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection that ended may take to close its WebSocket (it is dropped after that).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Tunnel {
    /// A tunnel to `port` of the pod `namespace/pod`, tried once before it is returned, so that a pod that cannot
    /// be reached is an error naming it rather than connections that close.
    pub(crate) async fn open(
        client: &Client,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<Tunnel, String> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let name = format!("pod {namespace}/{pod}");
        let mut tried = forward(&pods, pod, port)
            .await
            .map_err(|e| format!("cannot reach port {port} of {name}: {e}"))?;
        drop(tried.take_stream(port));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, tried.join()).await;
        let dir = private_dir().map_err(|e| format!("cannot make a tunnel to {name}: {e}"))?;
        let listener = match UnixListener::bind(dir.join(format!(".s.PGSQL.{port}"))) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("cannot make a tunnel to {name}: {e}"));
            }
        };
        let trouble: Arc<Mutex<Option<String>>> = Arc::default();
        let accepting = tokio::spawn({
            let trouble = Arc::clone(&trouble);
            let pod = pod.to_owned();
            async move {
                // Dropped with this task: every connection ends with the tunnel.
                let mut connections = JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((mut near, _)) = accepted else {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            };
                            let (pods, pod, trouble) = (pods.clone(), pod.clone(), Arc::clone(&trouble));
                            connections.spawn(async move {
                                let mut forwarder = match forward(&pods, &pod, port).await {
                                    Ok(forwarder) => forwarder,
                                    Err(error) => {
                                        if let Ok(mut trouble) = trouble.lock() {
                                            *trouble = Some(error);
                                        }
                                        return;
                                    }
                                };
                                let refused = forwarder.take_error(port);
                                if let Some(mut far) = forwarder.take_stream(port) {
                                    let _ = tokio::io::copy_bidirectional(&mut near, &mut far).await;
                                }
                                // The kubelet says on the port's error channel why it could not connect.
                                if let Some(refused) = refused
                                    && let Ok(Some(error)) =
                                        tokio::time::timeout(Duration::from_millis(200), refused).await
                                    && let Ok(mut trouble) = trouble.lock()
                                {
                                    *trouble = Some(error);
                                }
                                let _ = tokio::time::timeout(CLOSE_TIMEOUT, forwarder.join()).await;
                            });
                        }
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                    }
                }
            }
        });
        Ok(Tunnel {
            dir,
            trouble,
            accepting,
        })
    }

    /// The directory of the tunnel's socket, as a PostgreSQL client's host.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// `error`, with why the tunnel could not carry a connection when it could not.
    pub(crate) fn explain(&self, error: String) -> String {
        match self.trouble.lock().ok().and_then(|t| t.clone()) {
            Some(trouble) => format!("{error} (the connection to the pod failed: {trouble})"),
            None => error,
        }
    }
}

/// A new directory only the daemon's user may enter, under the system's temporary directory (or `/tmp`, when that
/// one's path is too long for a socket's).
fn private_dir() -> std::io::Result<PathBuf> {
    let mut random = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| std::io::Error::other("no random bytes"))?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("preview-tunnel-{suffix}");
    // A socket's path holds at most 107 bytes; `/.s.PGSQL.NNNNN` takes 16 of them.
    let base = Some(std::env::temp_dir())
        .filter(|dir| dir.as_os_str().len() + name.len() + 18 <= 107)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let dir = base.join(name);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

async fn forward(
    pods: &Api<Pod>,
    pod: &str,
    port: u16,
) -> Result<kube::api::Portforwarder, String> {
    match tokio::time::timeout(OPEN_TIMEOUT, pods.portforward(pod, &[port])).await {
        Ok(Ok(forwarder)) => Ok(forwarder),
        Ok(Err(kube::Error::Api(status))) => Err(status.message.clone()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer in {} s", OPEN_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use kube::api::{Patch, PatchParams};
    use preview_testing::kubernetes::ApiServer;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_tunnel_is_a_socket_only_its_user_can_reach_and_goes_when_dropped() {
        let api = ApiServer::start().await;
        let postgres = api.serve_postgres_pods();
        let dir = preview_testing::TempDir::new("tunnel");
        let kubeconfig = dir.path().join("kubeconfig");
        api.kubeconfig(&kubeconfig).expect("kubeconfig");
        let (client, _) = crate::connect(&crate::ClusterConfig {
            kubeconfig: Some(kubeconfig),
            ..crate::ClusterConfig::default()
        })
        .await
        .expect("client");
        let apply = |plural: &str, object: serde_json::Value| {
            let client = client.clone();
            let plural = plural.to_owned();
            async move {
                let name = object["metadata"]["name"]
                    .as_str()
                    .expect("name")
                    .to_owned();
                let namespaced = plural != "namespaces";
                let resource = kube::api::ApiResource {
                    group: String::new(),
                    version: "v1".into(),
                    api_version: "v1".into(),
                    kind: object["kind"].as_str().expect("kind").to_owned(),
                    plural,
                };
                let api: Api<kube::api::DynamicObject> = if namespaced {
                    Api::namespaced_with(client, "shop", &resource)
                } else {
                    Api::all_with(client, &resource)
                };
                api.patch(&name, &PatchParams::apply("test"), &Patch::Apply(object))
                    .await
                    .expect("applied");
            }
        };
        apply(
            "namespaces",
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } }),
        )
        .await;
        apply(
            "pods",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "db-0", "namespace": "shop" },
                "spec": { "containers": [{ "name": "postgres", "image": "postgres:16", "env": [
                    { "name": "POSTGRES_USER", "value": "shop" },
                    { "name": "POSTGRES_PASSWORD", "value": "pw" },
                ] }] },
            }),
        )
        .await;
        for _ in 0..200 {
            if api
                .object("pods", Some("shop"), "db-0")
                .is_some_and(|p| p["status"]["phase"] == "Running")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let tunnel = Tunnel::open(&client, "shop", "db-0", 5432)
            .await
            .expect("a tunnel");
        let place = tunnel.dir().to_path_buf();
        let mode = std::fs::metadata(&place)
            .expect("its directory")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "only the daemon's user enters it");
        // Bytes through the socket reach the pod's server, which declines TLS as PostgreSQL does.
        let mut stream = tokio::net::UnixStream::connect(place.join(".s.PGSQL.5432"))
            .await
            .expect("connects");
        stream
            .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .expect("written");
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).await.expect("an answer");
        assert_eq!(&answer, b"N");
        assert_eq!(postgres.pods(), 1);
        drop(tunnel);
        assert!(!place.exists(), "its directory goes with it");
    }
}
