//! The kernel side of actor networks, through netlink (rtnetlink): the
//! node bridge, each actor's veth pair, and the address and routes inside
//! its namespace.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::subnet::Subnet;

/// Errors of netlink requests.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub(crate) struct LinkError {
    /// What was being done.
    pub what: String,
    /// The kernel's answer.
    #[source]
    pub source: rtnetlink::Error,
}

type Result<T> = std::result::Result<T, LinkError>;

fn err(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let what = what.into();
    move |source| LinkError { what, source }
}

/// Whether netlink said "no such device" (or "no such address"): the
/// thing to remove is already gone.
fn is_missing(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if m.code.map(|c| c.get()) == Some(-libc::ENODEV)
            || m.code.map(|c| c.get()) == Some(-libc::EADDRNOTAVAIL)
            || m.code.map(|c| c.get()) == Some(-libc::ENOENT))
}

/// A netlink connection in the current thread's namespace, its I/O task
/// spawned on the current runtime.
pub(crate) fn connect() -> std::io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The index of link `name`, if it exists.
pub(crate) async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(err(format!("looking up link {name}"))(e)),
    }
}

/// Deletes link `name` if it exists (a veth takes its peer with it).
pub(crate) async fn delete(h: &Handle, name: &str) -> Result<()> {
    if let Some(idx) = index_of(h, name).await? {
        match h.link().del(idx).execute().await {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(err(format!("deleting link {name}"))(e)),
        }
    }
    Ok(())
}

/// Makes sure bridge `name` exists, is up and holds the subnet's gateway
/// address; answers its index.
pub(crate) async fn ensure_bridge(h: &Handle, name: &str, subnet: Subnet) -> Result<u32> {
    let idx = match index_of(h, name).await? {
        Some(i) => i,
        None => {
            h.link()
                .add(LinkBridge::new(name).build())
                .execute()
                .await
                .map_err(err(format!("creating bridge {name}")))?;
            index_of(h, name).await?.ok_or_else(|| LinkError {
                what: format!("bridge {name} vanished after it was created"),
                source: rtnetlink::Error::RequestFailed,
            })?
        }
    };
    let gw = subnet.gateway();
    let has = addresses(h, Some(idx))
        .await?
        .iter()
        .any(|(_, a, p)| *a == gw && *p == subnet.prefix());
    if !has {
        h.address()
            .add(idx, IpAddr::V4(gw), subnet.prefix())
            .replace()
            .execute()
            .await
            .map_err(err(format!("adding {gw}/{} to {name}", subnet.prefix())))?;
    }
    h.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(err(format!("setting {name} up")))?;
    Ok(idx)
}

/// Creates the veth pair `host`–`peer` with `host` on the bridge (up, and
/// isolated from the other ports unless actors may talk to each other)
/// and `peer` made inside the namespace `netns_fd`, as `ip link add …
/// peer name P netns NS` does: moving a link into a namespace afterwards
/// waits for the kernel's `synchronize_net`, 13–31 ms here, most of a
/// resume's network setup. A leftover pair of the same name goes first.
pub(crate) async fn create_veth(
    h: &Handle,
    host: &str,
    peer: &str,
    bridge: u32,
    isolated: bool,
    netns_fd: std::os::fd::RawFd,
) -> Result<()> {
    delete(h, host).await?;
    delete(h, peer).await?;
    let mut veth = LinkVeth::new(host, peer).controller(bridge).build();
    peer_in_netns(&mut veth, netns_fd);
    h.link()
        .add(veth)
        .execute()
        .await
        .map_err(err(format!("creating veth {host}")))?;
    let host_idx = index_of(h, host).await?.ok_or_else(|| LinkError {
        what: format!("veth {host} vanished after it was created"),
        source: rtnetlink::Error::RequestFailed,
    })?;
    h.link()
        .set_port(LinkBridgePort::new(host_idx).isolated(isolated).build())
        .execute()
        .await
        .map_err(err(format!("setting bridge port flags of {host}")))?;
    h.link()
        .set(LinkUnspec::new_with_index(host_idx).up().build())
        .execute()
        .await
        .map_err(err(format!("setting {host} up")))?;
    Ok(())
}

/// Puts the namespace `fd` on the peer half of a veth request (rtnetlink's
/// builder names the peer but has no setter for its namespace).
fn peer_in_netns(veth: &mut LinkMessage, fd: std::os::fd::RawFd) {
    for attr in &mut veth.attributes {
        if let LinkAttribute::LinkInfo(infos) = attr {
            for info in infos {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = info {
                    p.attributes.push(LinkAttribute::NetNsFd(fd));
                }
            }
        }
    }
}

/// Inside the actor's namespace: `lo` up; `peer` renamed `eth0`, given
/// `mac` (the same at every launch, so that a restored network stack and
/// its neighbours agree) and `ip`, up; the default route via the gateway.
/// Also what a restore needs: runsc takes the address off when it starts.
pub(crate) async fn configure_inside(
    h: &Handle,
    peer: &str,
    mac: [u8; 6],
    ip: Ipv4Addr,
    subnet: Subnet,
) -> Result<()> {
    if let Some(lo) = index_of(h, "lo").await? {
        h.link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(err("setting lo up"))?;
    }
    let idx = match index_of(h, peer).await? {
        Some(i) => i,
        None => index_of(h, "eth0").await?.ok_or_else(|| LinkError {
            what: format!("no {peer} or eth0 in the actor's namespace"),
            source: rtnetlink::Error::RequestFailed,
        })?,
    };
    h.link()
        .set(
            LinkUnspec::new_with_index(idx)
                .name("eth0")
                .address(mac.to_vec())
                .build(),
        )
        .execute()
        .await
        .map_err(err("naming eth0"))?;
    h.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(err("setting eth0 up"))?;
    h.address()
        .add(idx, IpAddr::V4(ip), subnet.prefix())
        .replace()
        .execute()
        .await
        .map_err(err(format!("adding {ip}/{} to eth0", subnet.prefix())))?;
    h.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(subnet.gateway())
                .output_interface(idx)
                .build(),
        )
        .replace()
        .execute()
        .await
        .map_err(err(format!(
            "adding the default route via {}",
            subnet.gateway()
        )))?;
    Ok(())
}

/// IPv4 addresses (`link index`, address, prefix), of one link or all.
pub(crate) async fn addresses(h: &Handle, link: Option<u32>) -> Result<Vec<(u32, Ipv4Addr, u8)>> {
    let mut req = h.address().get();
    if let Some(i) = link {
        req = req.set_link_index_filter(i);
    }
    let mut stream = req.execute();
    let mut out = Vec::new();
    while let Some(m) = stream.try_next().await.map_err(err("listing addresses"))? {
        for a in &m.attributes {
            if let AddressAttribute::Address(IpAddr::V4(v4)) = a {
                out.push((m.header.index, *v4, m.header.prefix_len));
            }
        }
    }
    Ok(out)
}

/// IPv4 routes of the main table with a destination (not the default
/// route): (`output link index`, destination network).
pub(crate) async fn routes(h: &Handle) -> Result<Vec<(Option<u32>, Subnet)>> {
    let mut stream = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut out = Vec::new();
    while let Some(m) = stream.try_next().await.map_err(err("listing routes"))? {
        if m.header.table != RouteHeader::RT_TABLE_MAIN || m.header.destination_prefix_length == 0 {
            continue;
        }
        let mut dest = None;
        let mut oif = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => dest = Some(*d),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        if let Some(net) = dest.and_then(|d| Subnet::new(d, m.header.destination_prefix_length)) {
            out.push((oif, net));
        }
    }
    Ok(out)
}

/// Every link: (index, name, controller index).
pub(crate) async fn links(h: &Handle) -> Result<Vec<(u32, String, Option<u32>)>> {
    let mut stream = h.link().get().execute();
    let mut out = Vec::new();
    while let Some(m) = stream.try_next().await.map_err(err("listing links"))? {
        out.push(describe(&m));
    }
    Ok(out)
}

fn describe(m: &LinkMessage) -> (u32, String, Option<u32>) {
    let mut name = String::new();
    let mut controller = None;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Controller(c) => controller = Some(*c),
            _ => {}
        }
    }
    (m.header.index, name, controller)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The namespace goes on the peer's half of the request, never on the
    /// host end's (which would move the bridge port out of the host).
    #[test]
    fn the_peer_is_made_in_the_namespace_and_the_host_end_is_not() {
        let mut veth = LinkVeth::new("ath", "atp").controller(7).build();
        peer_in_netns(&mut veth, 42);
        let outer_fds = veth
            .attributes
            .iter()
            .filter(|a| matches!(a, LinkAttribute::NetNsFd(_)))
            .count();
        assert_eq!(outer_fds, 0);
        let peers: Vec<&LinkMessage> = veth
            .attributes
            .iter()
            .filter_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => Some(infos),
                _ => None,
            })
            .flatten()
            .filter_map(|i| match i {
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(peers.len(), 1);
        assert!(peers[0].attributes.contains(&LinkAttribute::NetNsFd(42)));
        assert!(peers[0]
            .attributes
            .contains(&LinkAttribute::IfName("atp".to_string())));
    }
}
