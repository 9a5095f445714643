//! Name resolution that enforces the network policy.
//!
//! reqwest asks this resolver for every host name it connects to — the first request and
//! every redirect — and connects only to the addresses it returns. Checking here, rather
//! than resolving once up front and then letting the client resolve again, leaves no window
//! for a DNS answer to change between the check and the connection (DNS rebinding). A name
//! with any refused address is refused whole: a public name that also points inside the
//! network is not one to trust.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::policy::NetworkPolicy;

/// The resolver of one HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    pub(crate) policy: Arc<NetworkPolicy>,
    pub(crate) allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let policy = Arc::clone(&self.policy);
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addresses: Vec<IpAddr> = match policy.fixed(&host) {
                Some(fixed) => fixed.to_vec(),
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .map(|address| address.ip())
                    .collect(),
            };
            if addresses.is_empty() {
                return Err(format!("`{host}` has no address").into());
            }
            for address in &addresses {
                policy.check(&host, *address, allow_private)?;
            }
            let addrs: Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|address| SocketAddr::new(address, 0)),
            );
            Ok(addrs)
        })
    }
}
