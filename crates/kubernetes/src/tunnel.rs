//! A pod's port reached from the daemon's machine, as `kubectl port-forward` does: a listener on a free loopback
//! port whose every connection is carried to the pod through the API server's `portforward` subresource (a
//! WebSocket of its own per connection). The daemon's database code and `pg_dump` connect to it as to any server.
//! Dropping the tunnel closes the listener and every connection through it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub(crate) struct Tunnel {
    pub port: u16,
    /// Why the last connection could not be carried, for errors to quote.
    trouble: Arc<Mutex<Option<String>>>,
    accepting: JoinHandle<()>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// How long opening one connection to the pod may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

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
        let _ = tried.join().await;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("cannot listen on a loopback port for {name}: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on a loopback port for {name}: {e}"))?
            .port();
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
                                let _ = forwarder.join().await;
                            });
                        }
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                    }
                }
            }
        });
        Ok(Tunnel {
            port: local,
            trouble,
            accepting,
        })
    }

    /// `error`, with why the tunnel could not carry a connection when it could not.
    pub(crate) fn explain(&self, error: String) -> String {
        match self.trouble.lock().ok().and_then(|t| t.clone()) {
            Some(trouble) => format!("{error} (the connection to the pod failed: {trouble})"),
            None => error,
        }
    }
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
