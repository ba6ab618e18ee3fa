//! Which TCP connections an actor holds that this runsc cannot checkpoint,
//! as the host's connection tracking sees them.
//!
//! runsc 0.0~20221219 refuses to save a sandbox whose netstack holds a TCP
//! endpoint in a connected state ("endpoint cannot be saved in connected
//! state"), and the refused save kills the sandbox. That includes TIME_WAIT,
//! which an endpoint enters for 60 s when the actor closed a connection
//! before its peer did (a server answering HTTP/1.0, say). Nothing inside
//! the sandbox can be asked; but every connection between an actor and
//! anything but another actor crosses the host, whose conntrack table
//! (`/proc/net/nf_conntrack`) shows it. A suspend checks it first and
//! refuses rather than lose the actor.
//!
//! conntrack does not say which side closed first, so a connection in
//! TIME_WAIT counts for the 60 s the actor might hold it whichever side it
//! was. The daemon's own connections (published-port proxy, probes) end
//! with a reset ([`close_with_reset`]) and never leave one. Connections
//! between two actors (`allow_actor_to_actor`) are bridged, not routed,
//! and conntrack does not see them.

use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use crate::reaper::Reaper;

/// How long gVisor's netstack keeps an endpoint in TIME_WAIT, plus a
/// second of margin.
const NETSTACK_TIME_WAIT_SECS: u64 = 61;

/// conntrack's own TIME_WAIT timeout when its sysctl cannot be read.
const CONNTRACK_TIME_WAIT_SECS: u64 = 120;

/// A connection that would make a checkpoint fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// `10.88.0.1:50658 → 10.88.0.2:8080`.
    pub connection: String,
    /// conntrack's state, e.g. `ESTABLISHED`, `TIME_WAIT`.
    pub state: String,
    /// Seconds until it is gone for sure, when that is known (TIME_WAIT).
    pub clears_in: Option<u64>,
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.connection, self.state)?;
        if let Some(s) = self.clears_in {
            write!(f, " (gone within {s} s)")?;
        }
        Ok(())
    }
}

/// The connections of `ip` that a checkpoint cannot save, from the host's
/// conntrack table; empty when the table cannot be read (nothing to go by).
pub(crate) fn held(ip: Ipv4Addr) -> Vec<Held> {
    let table = match std::fs::read_to_string("/proc/net/nf_conntrack") {
        Ok(t) => t,
        Err(e) => {
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot read /proc/net/nf_conntrack: suspends of bridged actors cannot check their connections, and one holding a connection this runsc cannot checkpoint would end FAILED");
            }
            return Vec::new();
        }
    };
    let time_wait =
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(CONNTRACK_TIME_WAIT_SECS);
    parse(&table, ip, time_wait)
}

/// [`held`] on the text of the table.
fn parse(table: &str, ip: Ipv4Addr, time_wait: u64) -> Vec<Held> {
    let ip = ip.to_string();
    let mut out = Vec::new();
    for line in table.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // ipv4 2 tcp 6 <timeout> <state> src= dst= sport= dport= [UNREPLIED]? …
        if words.len() < 10 || words[2] != "tcp" || words.contains(&"[UNREPLIED]") {
            continue;
        }
        let field = |key: &str| {
            words[6..10]
                .iter()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or("?")
        };
        let (src, dst) = (field("src="), field("dst="));
        if src != ip && dst != ip {
            continue;
        }
        let remaining: u64 = words[4].parse().unwrap_or(0);
        let state = words[5];
        let clears_in = match state {
            // A reset ended it: nothing is left in the actor.
            "CLOSE" => continue,
            "TIME_WAIT" => {
                let age = time_wait.saturating_sub(remaining);
                if age >= NETSTACK_TIME_WAIT_SECS {
                    continue;
                }
                Some(NETSTACK_TIME_WAIT_SECS - age)
            }
            _ => None,
        };
        out.push(Held {
            connection: format!("{src}:{} → {dst}:{}", field("sport="), field("dport=")),
            state: state.to_string(),
            clears_in,
        });
    }
    out
}

/// Drops the host's conntrack entries of `ip` (with the `conntrack` tool,
/// Debian's package of that name): for an address whose sandbox is about
/// to start, whatever is recorded belongs to the past. Failures are
/// logged, not fatal: at worst a later suspend is refused for nothing.
pub(crate) async fn forget(reaper: &Reaper, ip: Ipv4Addr) {
    let Some(tool) = super::sbin("conntrack") else {
        tracing::warn!(address = %ip, "conntrack was not found (install Debian's conntrack package; scripts/install-deps does): old connection records of this address may make its actor's suspends refused");
        return;
    };
    for side in ["--orig-src", "--orig-dst"] {
        let mut cmd = Command::new(&tool);
        cmd.args(["-D", "-p", "tcp", side])
            .arg(ip.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match reaper.spawn(&mut cmd) {
            // Exit status 1 means "nothing to delete".
            Ok((_child, exit)) => {
                let _ = exit.await;
            }
            Err(e) => tracing::warn!(address = %ip, error = %e, "running conntrack -D"),
        }
    }
}

/// Makes the close of `socket` send a reset instead of a FIN: the peer in
/// an actor then forgets the connection at once instead of keeping it in
/// TIME_WAIT, where it would make a checkpoint fail. For the daemon's own
/// connections to actors, once everything has been exchanged.
pub(crate) fn close_with_reset(socket: &impl AsFd) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    if let Err(e) = nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::Linger, &linger)
    {
        tracing::debug!(error = %e, "setting SO_LINGER 0 on a connection to an actor");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
ipv4     2 tcp      6 118 TIME_WAIT src=10.9.0.1 dst=10.9.0.3 sport=50658 dport=8080 src=10.9.0.3 dst=10.9.0.1 sport=8080 dport=50658 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 30 TIME_WAIT src=10.9.0.1 dst=10.9.0.3 sport=50660 dport=8080 src=10.9.0.3 dst=10.9.0.1 sport=8080 dport=50660 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=10.9.0.3 dst=198.51.100.2 sport=40000 dport=443 src=198.51.100.2 dst=192.0.2.2 sport=443 dport=40000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 8 CLOSE src=10.9.0.1 dst=10.9.0.3 sport=50662 dport=8080 src=10.9.0.3 dst=10.9.0.1 sport=8080 dport=50662 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 119 SYN_SENT src=10.9.0.1 dst=10.9.0.3 sport=50664 dport=9 [UNREPLIED] src=10.9.0.3 dst=10.9.0.1 sport=9 dport=50664 mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=10.9.0.1 dst=10.9.0.4 sport=50666 dport=8080 src=10.9.0.4 dst=10.9.0.1 sport=8080 dport=50666 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 20 src=10.9.0.3 dst=10.9.0.1 sport=5353 dport=53 src=10.9.0.1 dst=10.9.0.3 sport=53 dport=5353 mark=0 zone=0 use=2
";

    #[test]
    fn open_and_recent_connections_count_resets_and_old_ones_do_not() {
        let held = parse(TABLE, "10.9.0.3".parse().unwrap(), 120);
        assert_eq!(
            held,
            [
                Held {
                    connection: "10.9.0.1:50658 → 10.9.0.3:8080".into(),
                    state: "TIME_WAIT".into(),
                    clears_in: Some(59),
                },
                Held {
                    connection: "10.9.0.3:40000 → 198.51.100.2:443".into(),
                    state: "ESTABLISHED".into(),
                    clears_in: None,
                },
            ]
        );
        assert_eq!(
            held[0].to_string(),
            "10.9.0.1:50658 → 10.9.0.3:8080 TIME_WAIT (gone within 59 s)"
        );
        assert!(parse(TABLE, "10.9.0.9".parse().unwrap(), 120).is_empty());
        assert!(parse("garbage\n\n", "10.9.0.3".parse().unwrap(), 120).is_empty());
    }
}
