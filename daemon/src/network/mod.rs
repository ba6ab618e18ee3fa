//! Actor networks (README, "Networking"): each bridged actor gets a network
//! namespace of its own, a veth pair whose host end is a port of the node
//! bridge, an address of the node subnet that it keeps for its whole life
//! (the IPAM tree of the store), a default route via the bridge, and
//! `/etc/resolv.conf` and `/etc/hosts` of its own. The daemon's nftables
//! table NATs egress and keeps actors apart; published ports are served by
//! the daemon's own proxy ([`proxy`]); readiness probes ([`probe`]) decide
//! when a start or resume is done.
//!
//! Lifetimes: the namespace lives as long as the actor's sandbox (see
//! [`netns`]); while an actor has no sandbox (CREATED, SUSPENDED, STOPPED,
//! FAILED) it has no namespace and no veth, only its address, and each
//! launch (start, resume) builds them anew with that address. The bridge
//! and the table exist while at least one bridged actor does.

pub(crate) mod conntrack;
mod links;
mod netns;
mod nft;
pub(crate) mod probe;
pub(crate) mod proxy;
mod subnet;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use atelet_api::NetworkMode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub(crate) use netns::NetNs;
pub(crate) use subnet::Subnet;

use crate::reaper::Reaper;

/// `[network]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFileConfig {
    /// `bridge` or `none`: the mode of actors whose spec names none.
    pub default_mode: Option<String>,
    /// Name of the node bridge (at most 15 characters).
    pub bridge: Option<String>,
    /// IPv4 subnet of the actors; the bridge holds its `.1`.
    pub subnet: Option<String>,
    /// Name servers written into actors' `/etc/resolv.conf`; default: the
    /// host's, without loopback ones.
    pub dns: Option<Vec<String>>,
    /// Actors may open connections off the node (NAT).
    pub egress: Option<bool>,
    /// Actors may open connections to each other.
    pub allow_actor_to_actor: Option<bool>,
    /// Actors may open connections to the node's own addresses.
    pub allow_actor_to_host: Option<bool>,
    /// Where published ports listen.
    pub publish_address: Option<String>,
}

/// The resolved `[network]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Mode of actors whose spec names none.
    pub default_mode: NetworkMode,
    /// The node bridge.
    pub bridge: String,
    /// The actor subnet.
    pub subnet: Subnet,
    /// Name servers for actors.
    pub dns: Vec<IpAddr>,
    /// NAT off the node.
    pub egress: bool,
    /// Actors reach each other.
    pub allow_actor_to_actor: bool,
    /// Actors reach the node's addresses.
    pub allow_actor_to_host: bool,
    /// Where published ports listen.
    pub publish_address: IpAddr,
}

impl NetworkConfig {
    /// Defaults ← file; every value checked, so that a typo stops the start.
    pub fn from_file(f: &NetworkFileConfig) -> std::result::Result<NetworkConfig, String> {
        let default_mode = match &f.default_mode {
            Some(m) => m
                .parse()
                .map_err(|e| format!("network.default_mode: {e}"))?,
            None => NetworkMode::Bridge,
        };
        let bridge = f.bridge.clone().unwrap_or_else(|| "atelet0".to_string());
        if bridge.is_empty()
            || bridge.len() > 15
            || !bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "network.bridge {bridge:?} must be 1-15 characters of a-z, A-Z, 0-9, '_' and '-' (a Linux interface name)"
            ));
        }
        let subnet = f
            .subnet
            .as_deref()
            .unwrap_or("10.88.0.0/16")
            .parse()
            .map_err(|e| format!("network.subnet: {e}"))?;
        let dns = match &f.dns {
            Some(list) => list
                .iter()
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| format!("network.dns: {s:?} is not an IP address"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
            None => host_name_servers(Path::new("/etc/resolv.conf")),
        };
        let publish_address = f
            .publish_address
            .as_deref()
            .unwrap_or("127.0.0.1")
            .parse()
            .map_err(|_| {
                format!(
                    "network.publish_address {:?} is not an IP address",
                    f.publish_address.as_deref().unwrap_or_default()
                )
            })?;
        Ok(NetworkConfig {
            default_mode,
            bridge,
            subnet,
            dns,
            egress: f.egress.unwrap_or(true),
            allow_actor_to_actor: f.allow_actor_to_actor.unwrap_or(false),
            allow_actor_to_host: f.allow_actor_to_host.unwrap_or(false),
            publish_address,
        })
    }

    /// The daemon's nftables table: named after the bridge, so that two
    /// daemons on one host (two bridges) never touch each other's.
    fn table(&self) -> String {
        format!("atelet_{}", self.bridge.replace('-', "_"))
    }
}

/// The `nameserver` lines of a resolv.conf, without loopback addresses
/// (an actor's loopback is its own).
fn host_name_servers(path: &Path) -> Vec<IpAddr> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .filter(|a| !a.is_loopback())
        .collect()
}

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetworkError {
    /// The configured subnet is in use on this host.
    #[error("network.subnet {subnet} overlaps {what}: choose a subnet no interface or route of this host uses")]
    Overlap {
        /// The configured subnet.
        subnet: Subnet,
        /// What it overlaps.
        what: String,
    },
    /// Every address of the subnet is held.
    #[error("no free address in network.subnet {0}: every address is held by an actor")]
    Exhausted(Subnet),
    /// A netlink request failed.
    #[error("network: {0}")]
    Link(#[from] links::LinkError),
    /// nftables failed.
    #[error("network: {0}")]
    Nft(#[from] nft::NftError),
    /// A file or namespace operation failed.
    #[error("network: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let context = context.into();
    move |source| NetworkError::Io { context, source }
}

type Result<T> = std::result::Result<T, NetworkError>;

/// The network of one launch of an actor: holds its namespace until runsc
/// has joined it (then the sandbox holds it).
#[derive(Debug)]
pub(crate) struct Attachment {
    _netns: NetNs,
}

/// The node's networking for actors.
pub(crate) struct Network {
    config: NetworkConfig,
    /// This state dir's id: part of every link name, so that two daemons'
    /// links never collide.
    node: String,
    /// Per-actor files (`resolv.conf`, `hosts`) and namespace links.
    dir: PathBuf,
    reaper: Reaper,
    /// The bridge's index while it is set up; the lock orders setting up
    /// and tearing down the node's bridge and table.
    node_state: tokio::sync::Mutex<Option<u32>>,
    /// Published ports.
    pub(crate) ports: proxy::PortPublisher,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").finish_non_exhaustive()
    }
}

impl Network {
    /// Checks the subnet against this host's addresses and routes (other
    /// than the bridge's own) and prepares `<state>/network`.
    pub(crate) async fn new(
        config: NetworkConfig,
        state_dir: &Path,
        node: &str,
        reaper: Reaper,
    ) -> Result<Network> {
        let dir = state_dir.join("network");
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let net = Network {
            ports: proxy::PortPublisher::new(config.publish_address),
            config,
            node: node.to_string(),
            dir,
            reaper,
            node_state: tokio::sync::Mutex::new(None),
        };
        net.check_subnet().await?;
        Ok(net)
    }

    /// The settings.
    pub(crate) fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// The mode of an actor whose spec names `asked` (or none).
    pub(crate) fn mode_for(&self, asked: Option<&str>) -> NetworkMode {
        asked
            .and_then(|m| m.parse().ok())
            .unwrap_or(self.config.default_mode)
    }

    /// Refuses a subnet that overlaps an address or a route of this host
    /// on any link but the bridge: actors' traffic would be misrouted, or
    /// leave through the wrong interface.
    async fn check_subnet(&self) -> Result<()> {
        let h = links::connect().map_err(io("opening a netlink socket"))?;
        let bridge = links::index_of(&h, &self.config.bridge).await?;
        let names = links::links(&h).await?;
        let name_of = |i: u32| {
            names
                .iter()
                .find(|(idx, _, _)| *idx == i)
                .map(|(_, n, _)| n.clone())
                .unwrap_or_else(|| format!("link {i}"))
        };
        let subnet = self.config.subnet;
        for (idx, addr, prefix) in links::addresses(&h, None).await? {
            if Some(idx) == bridge || addr.is_loopback() {
                continue;
            }
            let theirs = Subnet::new(addr, prefix).unwrap_or(subnet);
            if subnet.overlaps(&theirs) {
                return Err(NetworkError::Overlap {
                    subnet,
                    what: format!("address {addr}/{prefix} of {}", name_of(idx)),
                });
            }
        }
        for (oif, net) in links::routes(&h).await? {
            if oif.is_some() && oif == bridge {
                continue;
            }
            if subnet.overlaps(&net) {
                let dev = oif.map(name_of).unwrap_or_else(|| "no device".into());
                return Err(NetworkError::Overlap {
                    subnet,
                    what: format!("route {net} via {dev}"),
                });
            }
        }
        Ok(())
    }

    /// Host end of an actor's veth: `ate` + 12 hex digits of a hash of the
    /// node and the actor (a Linux name has at most 15 characters).
    pub(crate) fn host_link(&self, actor: &str) -> String {
        format!("ate{}", self.link_hash(actor))
    }

    fn peer_link(&self, actor: &str) -> String {
        format!("atp{}", self.link_hash(actor))
    }

    fn link_hash(&self, actor: &str) -> String {
        let digest = Sha256::digest(format!("{}/{actor}", self.node).as_bytes());
        crate::fsutil::hex(&digest[..6])
    }

    /// The path a bridged actor's bundle names as its network namespace:
    /// a symbolic link pointed at each launch's namespace.
    pub(crate) fn netns_path(&self, actor: &str) -> PathBuf {
        self.dir.join(actor).join("netns")
    }

    /// Writes an actor's `/etc/resolv.conf` and `/etc/hosts` (its id and
    /// address), answering (path inside, host file) pairs for its bundle.
    pub(crate) fn write_files(&self, actor: &str, ip: Ipv4Addr) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.dir.join(actor);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut resolv = String::from("# written by atelet\n");
        for s in &self.config.dns {
            resolv.push_str(&format!("nameserver {s}\n"));
        }
        let hosts = format!(
            "# written by atelet\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{actor}\n"
        );
        let mut out = Vec::new();
        for (name, text) in [("resolv.conf", resolv), ("hosts", hosts)] {
            let path = dir.join(name);
            crate::fsutil::write_atomic(&path, text.as_bytes())
                .map_err(io(format!("writing {}", path.display())))?;
            out.push((format!("/etc/{name}"), path));
        }
        Ok(out)
    }

    /// Builds an actor's network for one launch: the node bridge and
    /// table (if not yet), a new namespace, the veth pair, the address
    /// `ip` and the default route inside; points [`Network::netns_path`]
    /// at the namespace. The answer must be kept until runsc has started
    /// the sandbox.
    pub(crate) async fn attach(&self, actor: &str, ip: Ipv4Addr) -> Result<Attachment> {
        let t0 = std::time::Instant::now();
        let bridge = self.ensure_node().await?;
        // What the host's conntrack remembers of this address belongs to an
        // earlier sandbox (or an earlier actor): it would make the new
        // sandbox's suspend look unsafe.
        if !conntrack::held(ip).is_empty() {
            conntrack::forget(&self.reaper, ip).await;
        }
        let t_conntrack = t0.elapsed();
        let h = links::connect().map_err(io("opening a netlink socket"))?;
        let ns = NetNs::create()
            .await
            .map_err(io("creating a network namespace"))?;
        let t_netns = t0.elapsed();
        let host = self.host_link(actor);
        let peer = self.peer_link(actor);
        links::create_veth(
            &h,
            &host,
            &peer,
            bridge,
            !self.config.allow_actor_to_actor,
            ns.raw_fd(),
        )
        .await?;
        let t_veth = t0.elapsed();
        let subnet = self.config.subnet;
        let mac = mac_of(ip);
        let inside = ns
            .run(move || async move {
                let h = links::connect()?;
                links::configure_inside(&h, &peer, mac, ip, subnet)
                    .await
                    .map_err(std::io::Error::other)
            })
            .await;
        if let Err(e) = inside {
            let _ = links::delete(&h, &host).await;
            return Err(io(format!("setting up {actor}'s namespace"))(e));
        }
        self.point_at(actor, &ns)?;
        // Each step's own time: where a slow launch spends it.
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let t_all = t0.elapsed();
        tracing::debug!(
            actor,
            conntrack_ms = ms(t_conntrack),
            netns_ms = ms(t_netns - t_conntrack),
            veth_ms = ms(t_veth - t_netns),
            inside_ms = ms(t_all - t_veth),
            duration_ms = ms(t_all),
            "network attached"
        );
        Ok(Attachment { _netns: ns })
    }

    /// Points [`Network::netns_path`] at `ns` (replacing the link atomically).
    fn point_at(&self, actor: &str, ns: &NetNs) -> Result<()> {
        let link = self.netns_path(actor);
        let tmp = link.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(ns.proc_path(), &tmp)
            .and_then(|()| std::fs::rename(&tmp, &link))
            .map_err(io(format!("linking {}", link.display())))
    }

    /// Removes an actor's veth now (the kernel would when its namespace
    /// ends with the sandbox, a moment later); nothing else is held.
    pub(crate) async fn detach(&self, actor: &str) -> Result<()> {
        let h = links::connect().map_err(io("opening a netlink socket"))?;
        links::delete(&h, &self.host_link(actor)).await?;
        Ok(())
    }

    /// Forgets an actor for good (delete): its files and published ports.
    pub(crate) async fn forget(&self, actor: &str) -> Result<()> {
        self.ports.unpublish(actor);
        self.detach(actor).await?;
        let dir = self.dir.join(actor);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing {}", dir.display()))(e)),
        }
    }

    /// Sets up the bridge (with the gateway address) and the nftables
    /// table if they are not, and turns IPv4 forwarding on when egress is;
    /// answers the bridge's index.
    async fn ensure_node(&self) -> Result<u32> {
        let mut state = self.node_state.lock().await;
        if let Some(idx) = *state {
            return Ok(idx);
        }
        self.check_subnet().await?;
        let h = links::connect().map_err(io("opening a netlink socket"))?;
        let idx = links::ensure_bridge(&h, &self.config.bridge, self.config.subnet).await?;
        nft::apply(&self.reaper, &self.rules()).await?;
        if self.config.egress {
            let path = "/proc/sys/net/ipv4/ip_forward";
            let on = std::fs::read_to_string(path)
                .map(|v| v.trim() == "1")
                .unwrap_or(false);
            if !on {
                std::fs::write(path, "1").map_err(io(format!("writing {path}")))?;
                tracing::warn!("net.ipv4.ip_forward set to 1: actors' egress is routed through this host (network.egress = true)");
            }
        }
        tracing::info!(bridge = %self.config.bridge, subnet = %self.config.subnet, table = %self.config.table(), "actor network set up");
        *state = Some(idx);
        Ok(idx)
    }

    fn rules(&self) -> nft::Rules {
        nft::Rules {
            table: self.config.table(),
            bridge: self.config.bridge.clone(),
            subnet: self.config.subnet,
            egress: self.config.egress,
            actor_to_actor: self.config.allow_actor_to_actor,
            actor_to_host: self.config.allow_actor_to_host,
        }
    }

    /// Removes the bridge and the table once no bridged actor is left
    /// (`bridged` counts them, read under the node lock so that a launch
    /// cannot set the node up in between). A node this process has not set
    /// up has nothing to remove: a delete on a node of `none` actors runs
    /// neither netlink nor `nft`.
    pub(crate) async fn release_node_if_unused(
        &self,
        bridged: impl FnOnce() -> usize,
    ) -> Result<()> {
        let mut state = self.node_state.lock().await;
        if state.is_none() || bridged() > 0 {
            return Ok(());
        }
        self.remove_node().await?;
        state.take();
        tracing::info!(bridge = %self.config.bridge, "actor network removed: no bridged actor left");
        Ok(())
    }

    /// Removes the bridge and the table, whoever made them (at a restart,
    /// an earlier process).
    async fn remove_node(&self) -> Result<()> {
        let h = links::connect().map_err(io("opening a netlink socket"))?;
        links::delete(&h, &self.config.bridge).await?;
        nft::remove(&self.reaper, &self.config.table()).await?;
        Ok(())
    }

    /// After a restart: sets the node up again if bridged actors exist,
    /// and removes the veths on the bridge that belong to no actor with a
    /// sandbox (`keep`: the actors whose sandbox runs). What a crash left
    /// between creating a veth and starting the sandbox goes here.
    pub(crate) async fn recover(&self, keep: &HashSet<String>, bridged: usize) -> Result<usize> {
        if bridged == 0 {
            let _state = self.node_state.lock().await;
            self.remove_node().await?;
            return Ok(0);
        }
        let bridge = self.ensure_node().await?;
        let wanted: HashSet<String> = keep.iter().map(|a| self.host_link(a)).collect();
        let h = links::connect().map_err(io("opening a netlink socket"))?;
        let mut removed = 0;
        for (_, name, controller) in links::links(&h).await? {
            if controller == Some(bridge) && !wanted.contains(&name) {
                links::delete(&h, &name).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The namespace of an adopted sandbox, linked at
    /// [`Network::netns_path`] for operators (`nsenter --net=…`).
    pub(crate) fn adopt(&self, actor: &str, pid: i32) -> Result<()> {
        let link = self.netns_path(actor);
        let tmp = link.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("/proc/{pid}/ns/net"), &tmp)
            .and_then(|()| std::fs::rename(&tmp, &link))
            .map_err(io(format!("linking {}", link.display())))
    }
}

/// Where a network tool is: on PATH, else in the sbin directories a
/// daemon's PATH may lack.
fn sbin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A locally administered MAC address derived from the IPv4 address, the
/// same at every launch (as Docker's `02:42:…`).
fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_refusals() {
        let c = NetworkConfig::from_file(&NetworkFileConfig {
            dns: Some(vec![]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.default_mode, NetworkMode::Bridge);
        assert_eq!(c.bridge, "atelet0");
        assert_eq!(c.subnet.to_string(), "10.88.0.0/16");
        assert!(c.egress && !c.allow_actor_to_actor && !c.allow_actor_to_host);
        assert_eq!(c.publish_address, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.table(), "atelet_atelet0");
        for bad in [
            NetworkFileConfig {
                default_mode: Some("host".into()),
                ..Default::default()
            },
            NetworkFileConfig {
                bridge: Some("a-very-long-bridge-name".into()),
                ..Default::default()
            },
            NetworkFileConfig {
                bridge: Some("br 0".into()),
                ..Default::default()
            },
            NetworkFileConfig {
                subnet: Some("10.88.0.1/16".into()),
                ..Default::default()
            },
            NetworkFileConfig {
                dns: Some(vec!["x".into()]),
                ..Default::default()
            },
            NetworkFileConfig {
                publish_address: Some("localhost".into()),
                ..Default::default()
            },
        ] {
            assert!(NetworkConfig::from_file(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn name_servers_skip_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(
            &p,
            "nameserver 127.0.0.53\nnameserver 192.0.2.53\n# x\nsearch lan\nnameserver ::1\n",
        )
        .unwrap();
        assert_eq!(host_name_servers(&p), vec![IpAddr::from([192, 0, 2, 53])]);
    }

    #[test]
    fn macs_follow_addresses() {
        assert_eq!(mac_of(Ipv4Addr::new(10, 88, 0, 2)), [2, 0x42, 10, 88, 0, 2]);
    }
}
