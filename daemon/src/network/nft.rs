//! The daemon's own nftables table: NAT for actors' egress and the
//! filters that keep actors from reaching each other, the node's own
//! services, or being reached from outside except through the daemon's
//! published-port proxy. Written whole by `nft -f -` in one transaction,
//! so that the table is always either the old or the new one.

use std::io::Write;
use std::process::{Command, Stdio};

use super::subnet::Subnet;
use crate::reaper::Reaper;

/// What the rules allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    /// The table's name (family `inet`).
    pub table: String,
    /// The node bridge.
    pub bridge: String,
    /// The actor subnet.
    pub subnet: Subnet,
    /// Actors may open connections off the node (masqueraded).
    pub egress: bool,
    /// Actors may open connections to each other's addresses.
    pub actor_to_actor: bool,
    /// Actors may open connections to the node's own addresses.
    pub actor_to_host: bool,
}

impl Rules {
    /// The nft script that (re)creates the table.
    pub(crate) fn script(&self) -> String {
        let Rules {
            table,
            bridge,
            subnet,
            ..
        } = self;
        let mut forward = vec![
            // Replies to what was allowed out, and to the host's own
            // connections into actors (proxy, probes: those are not
            // forwarded at all).
            format!("oifname \"{bridge}\" ct state established,related accept"),
        ];
        if self.actor_to_actor {
            forward.push(format!("iifname \"{bridge}\" oifname \"{bridge}\" accept"));
        }
        // Nothing from elsewhere opens a connection to an actor.
        forward.push(format!("oifname \"{bridge}\" drop"));
        forward.push(format!(
            "iifname \"{bridge}\" {}",
            if self.egress { "accept" } else { "drop" }
        ));
        let mut input = vec![format!(
            "iifname \"{bridge}\" ct state established,related accept"
        )];
        if !self.actor_to_host {
            input.push(format!("iifname \"{bridge}\" drop"));
        }
        let mut post = Vec::new();
        if self.egress {
            post.push(format!(
                "ip saddr {subnet} oifname != \"{bridge}\" masquerade"
            ));
        }
        let chain = |name: &str, hook: &str, prio: &str, rules: &[String]| {
            let mut s =
                format!("  chain {name} {{\n    type {hook} priority {prio}; policy accept;\n");
            for r in rules {
                s.push_str("    ");
                s.push_str(r);
                s.push('\n');
            }
            s.push_str("  }\n");
            s
        };
        format!(
            "table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n{}{}{}}}\n",
            chain("forward", "filter hook forward", "filter", &forward),
            chain("input", "filter hook input", "filter", &input),
            chain("postrouting", "nat hook postrouting", "srcnat", &post),
        )
    }
}

/// Errors of nft.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NftError {
    /// nft is not installed.
    #[error("nft was not found (install Debian's nftables package; scripts/install-deps does)")]
    Missing,
    /// nft could not be run or refused the script.
    #[error("nft: {0}")]
    Failed(String),
}

/// Runs `nft -f -` with `script` on stdin.
async fn run(reaper: &Reaper, script: &str) -> Result<(), NftError> {
    let nft = super::sbin("nft").ok_or(NftError::Missing)?;
    let mut cmd = Command::new(nft);
    cmd.args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (mut child, exit) = reaper
        .spawn(&mut cmd)
        .map_err(|e| NftError::Failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| NftError::Failed(format!("writing the ruleset: {e}")))?;
    }
    let stderr = child.stderr.take();
    let status = exit
        .await
        .map_err(|_| NftError::Failed("the reaper dropped nft's exit status".into()))?;
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    if let Some(mut e) = stderr {
        let _ = std::io::Read::read_to_string(&mut e, &mut text);
    }
    Err(NftError::Failed(format!("{status}: {}", text.trim())))
}

/// Creates or replaces the table.
pub(crate) async fn apply(reaper: &Reaper, rules: &Rules) -> Result<(), NftError> {
    run(reaper, &rules.script()).await
}

/// Removes table `table` if it exists.
pub(crate) async fn remove(reaper: &Reaper, table: &str) -> Result<(), NftError> {
    run(
        reaper,
        &format!("table inet {table}\ndelete table inet {table}\n"),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(egress: bool, a2a: bool, a2h: bool) -> Rules {
        Rules {
            table: "atelet_br0".into(),
            bridge: "br0".into(),
            subnet: "10.88.0.0/16".parse().unwrap(),
            egress,
            actor_to_actor: a2a,
            actor_to_host: a2h,
        }
    }

    #[test]
    fn the_default_rules_nat_egress_and_isolate_actors_and_host() {
        let s = rules(true, false, false).script();
        assert!(s.starts_with("table inet atelet_br0\ndelete table inet atelet_br0\n"));
        assert!(s.contains("ip saddr 10.88.0.0/16 oifname != \"br0\" masquerade"));
        assert!(s.contains("iifname \"br0\" accept"));
        assert!(s.contains("oifname \"br0\" drop"));
        assert!(s.contains("iifname \"br0\" drop"), "host input is closed");
        assert!(!s.contains("iifname \"br0\" oifname \"br0\" accept"));
    }

    #[test]
    fn switches_change_only_their_rules() {
        let s = rules(false, true, true).script();
        assert!(!s.contains("masquerade"));
        assert!(
            s.contains("iifname \"br0\" drop"),
            "forwarding out is closed"
        );
        assert!(s.contains("iifname \"br0\" oifname \"br0\" accept"));
        let input = s
            .split("chain input")
            .nth(1)
            .unwrap()
            .split("chain postrouting")
            .next()
            .unwrap();
        assert!(!input.contains("drop"), "{input}");
    }
}
