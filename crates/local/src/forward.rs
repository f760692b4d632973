//! Service ports: a listener per service that forwards each connection to whichever version of the service
//! currently runs, so that other apps keep one address while versions are swapped behind it. In an environment
//! with a network namespace, the listener and its connections are made inside it: the port exists only there.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use preview_isolation::Netns;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How many connections the service ports of one environment forward at once: each holds two of the daemon's
/// descriptors, and an app that opens connections without end must not take the daemon's away from every other
/// environment. Connections beyond are closed at once.
pub(crate) const CONNECTIONS_PER_ENVIRONMENT: usize = 1024;

/// How long a connection to an app may take to be accepted.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct ServicePort {
    target: Arc<RwLock<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServicePort {
    /// Listens on `127.0.0.1:port` (of `network`); connections are closed at once while no version runs, and
    /// while the environment's connections hold every permit of `permits`.
    pub(crate) fn bind(
        port: u16,
        network: Option<Arc<Netns>>,
        permits: Arc<Semaphore>,
    ) -> std::io::Result<ServicePort> {
        ServicePort::bind_reaching(port, network.clone(), network, permits)
    }

    /// Like [`ServicePort::bind`], listening in `network` and connecting from `reach`: a database's service port
    /// is in its environment's network and its server on the host's loopback.
    pub(crate) fn bind_reaching(
        port: u16,
        network: Option<Arc<Netns>>,
        reach: Option<Arc<Netns>>,
        permits: Arc<Semaphore>,
    ) -> std::io::Result<ServicePort> {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = match &network {
            Some(network) => network.listen(address)?,
            None => std::net::TcpListener::bind(address)?,
        };
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let target = Arc::new(RwLock::new(None));
        let task = tokio::spawn(accept(listener, Arc::clone(&target), reach, permits));
        Ok(ServicePort { target, task })
    }

    /// New connections go to `target` from now on; open ones stay with the version they reached.
    pub(crate) fn set_target(&self, target: Option<SocketAddr>) {
        match self.target.write() {
            Ok(mut current) => *current = target,
            Err(poisoned) => *poisoned.into_inner() = target,
        }
    }
}

impl Drop for ServicePort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection to `address`, from a socket of `network` when given, within [`CONNECT_TIMEOUT`].
pub(crate) async fn connect(
    address: SocketAddr,
    network: Option<&Netns>,
) -> std::io::Result<TcpStream> {
    let connecting = async {
        match network {
            Some(network) => network.tcp_socket()?.connect(address).await,
            None => TcpStream::connect(address).await,
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "{address} did not accept within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            ))
        })
}

async fn accept(
    listener: TcpListener,
    target: Arc<RwLock<Option<SocketAddr>>>,
    network: Option<Arc<Netns>>,
    permits: Arc<Semaphore>,
) {
    loop {
        let mut inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            // Out of descriptors, most likely: wait instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let current = target.read().map(|t| *t).unwrap_or(None);
        let (Some(address), Ok(permit)) = (current, Arc::clone(&permits).try_acquire_owned())
        else {
            continue;
        };
        let network = network.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = inbound.set_nodelay(true);
            if let Ok(mut outbound) = connect(address, network.as_deref()).await {
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
