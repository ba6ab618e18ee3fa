//! Who may use the API socket. Each connection's peer credentials
//! (SO_PEERCRED) are classified once, before any request is read: root and
//! the configured users and groups get full access, viewers get the
//! read-only routes, anyone else gets 403.

use serde::Deserialize;

/// `[access]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Group that owns the socket file (name or number); its members are allowed.
    pub socket_group: Option<String>,
    /// Users (uids) allowed besides root.
    #[serde(default)]
    pub allowed_uids: Vec<u32>,
    /// Groups (names or numbers) whose members are allowed.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Users who may only read (GET routes).
    #[serde(default)]
    pub viewer_uids: Vec<u32>,
    /// Groups whose members may only read.
    #[serde(default)]
    pub viewer_groups: Vec<String>,
}

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    Full,
    /// Read-only routes.
    ReadOnly,
    /// Nothing: every request gets 403.
    Denied,
}

/// The resolved access rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// gid of the socket's group, if configured.
    pub socket_gid: Option<u32>,
    allowed_uids: Vec<u32>,
    allowed_gids: Vec<u32>,
    viewer_uids: Vec<u32>,
    viewer_gids: Vec<u32>,
}

impl AccessPolicy {
    /// Resolves group names to gids (an unknown group is an error).
    pub fn from_config(c: &AccessConfig) -> Result<AccessPolicy, String> {
        let socket_gid = c.socket_group.as_deref().map(resolve_group).transpose()?;
        let groups = |list: &[String]| {
            list.iter()
                .map(|g| resolve_group(g))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut allowed_gids = groups(&c.allowed_groups)?;
        allowed_gids.extend(socket_gid);
        Ok(AccessPolicy {
            socket_gid,
            allowed_uids: c.allowed_uids.clone(),
            allowed_gids,
            viewer_uids: c.viewer_uids.clone(),
            viewer_gids: groups(&c.viewer_groups)?,
        })
    }

    /// Classifies a peer by uid and its groups (primary and supplementary).
    pub fn classify(&self, uid: u32, gids: &[u32]) -> Access {
        let member = |list: &[u32]| gids.iter().any(|g| list.contains(g));
        if uid == 0 || self.allowed_uids.contains(&uid) || member(&self.allowed_gids) {
            Access::Full
        } else if self.viewer_uids.contains(&uid) || member(&self.viewer_gids) {
            Access::ReadOnly
        } else {
            Access::Denied
        }
    }
}

/// A group name or number → gid.
pub(crate) fn resolve_group(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("group {name:?} does not exist")),
        Err(e) => Err(format!("looking up group {name:?}: {e}")),
    }
}

/// The primary and supplementary groups of the peer process `pid`, from
/// `/proc/<pid>/status` (SO_PEERCRED carries only the primary one). The
/// supplementary groups count only if that process still has the peer's
/// uid and gid: a pid that exited and was reused by another process must
/// not lend it its groups.
pub(crate) fn process_groups(pid: i32, uid: u32, primary: u32) -> Vec<u32> {
    let mut gids = vec![primary];
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return gids;
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| {
                l[name.len()..]
                    .split_whitespace()
                    .filter_map(|v| v.parse::<u32>().ok())
                    .collect::<Vec<u32>>()
            })
            .unwrap_or_default()
    };
    // Real, effective, saved and filesystem ids: the peer's must be among them.
    if !field("Uid:").contains(&uid) || !field("Gid:").contains(&primary) {
        return gids;
    }
    gids.extend(field("Groups:"));
    gids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_configured_peers_are_allowed_others_refused() {
        let p = AccessPolicy::from_config(&AccessConfig {
            socket_group: Some("4242".into()),
            allowed_uids: vec![1000],
            allowed_groups: vec!["4343".into()],
            viewer_uids: vec![2000],
            viewer_groups: vec!["5000".into()],
        })
        .unwrap();
        assert_eq!(p.classify(0, &[0]), Access::Full);
        assert_eq!(p.classify(1000, &[1000]), Access::Full);
        assert_eq!(p.classify(1500, &[1500, 4242]), Access::Full);
        assert_eq!(p.classify(1500, &[4343]), Access::Full);
        assert_eq!(p.classify(2000, &[2000]), Access::ReadOnly);
        assert_eq!(p.classify(2500, &[2500, 5000]), Access::ReadOnly);
        assert_eq!(p.classify(65534, &[65534]), Access::Denied);
    }

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(resolve_group("0").unwrap(), 0);
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert!(resolve_group("no-such-group-here").is_err());
    }

    #[test]
    fn supplementary_groups_come_from_proc_only_for_the_right_process() {
        let pid = std::process::id() as i32;
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let groups: Vec<u32> = status.lines().find(|l| l.starts_with("Groups:")).unwrap()
            ["Groups:".len()..]
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        let mut want = vec![gid];
        want.extend(&groups);
        assert_eq!(process_groups(pid, uid, gid), want);
        // Credentials that do not match the process: the primary group only.
        assert_eq!(process_groups(pid, uid + 4242, gid), [gid]);
        assert_eq!(process_groups(pid, uid, gid + 4242), [gid + 4242]);
        // A process that is gone.
        assert_eq!(process_groups(i32::MAX, uid, gid), [gid]);
    }
}
