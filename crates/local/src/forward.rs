//! Service ports: a listener per service that forwards each connection to whichever version of the service
//! currently runs, so that other apps keep one address while versions are swapped behind it. In an environment
//! with a network namespace, the listener and its connections are made inside it: the port exists only there.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use preview_isolation::Netns;
use tokio::net::{TcpListener, TcpStream};

pub(crate) struct ServicePort {
    target: Arc<RwLock<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServicePort {
    /// Listens on `127.0.0.1:port` (of `network`); connections are closed at once while no version runs.
    pub(crate) fn bind(port: u16, network: Option<Arc<Netns>>) -> std::io::Result<ServicePort> {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = match &network {
            Some(network) => network.listen(address)?,
            None => std::net::TcpListener::bind(address)?,
        };
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let target = Arc::new(RwLock::new(None));
        let task = tokio::spawn(accept(listener, Arc::clone(&target), network));
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

/// A connection to `address`, from a socket of `network` when given.
pub(crate) async fn connect(
    address: SocketAddr,
    network: Option<&Netns>,
) -> std::io::Result<TcpStream> {
    match network {
        Some(network) => network.tcp_socket()?.connect(address).await,
        None => TcpStream::connect(address).await,
    }
}

async fn accept(
    listener: TcpListener,
    target: Arc<RwLock<Option<SocketAddr>>>,
    network: Option<Arc<Netns>>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let current = target.read().map(|t| *t).unwrap_or(None);
        let Some(address) = current else {
            continue;
        };
        let network = network.clone();
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            if let Ok(mut outbound) = connect(address, network.as_deref()).await {
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
