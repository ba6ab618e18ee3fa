//! Capability names and the set a container ends up with (README, "securityContext").
//!
//! Names are checked against the `caps` crate's list, so that a typo is an
//! error instead of a capability silently missing from the sandbox.

use std::str::FromStr;

pub use caps::Capability;

use crate::types::SecurityContext;

/// What every container gets when its securityContext adds nothing: the
/// sandbox default set, in this order.
pub const DEFAULT_CAPABILITIES: [Capability; 3] = [
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_KILL,
    Capability::CAP_NET_BIND_SERVICE,
];

/// The word that, in `drop`, removes every capability (as in Kubernetes).
pub const DROP_ALL: &str = "ALL";

/// A capability entry that names no Linux capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The name is not in the caps crate's list.
    #[error("unknown capability {0:?}: expected a Linux capability name such as NET_ADMIN or CAP_NET_ADMIN")]
    Unknown(String),
    /// `ALL` is accepted in `drop` only.
    #[error("\"ALL\" may only be used in drop, not in add")]
    AllInAdd,
}

/// One entry of `add`/`drop` after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityEntry {
    /// Blank entries are skipped, as the control plane's own resolver does
    /// (a templated list may render an empty item).
    Blank,
    /// `ALL` (drop only).
    All,
    /// A real capability.
    Cap(Capability),
}

/// Normalises one entry: trims, upper-cases, adds the `CAP_` prefix, and
/// looks the result up in the caps crate.
pub fn parse_capability(entry: &str) -> Result<CapabilityEntry, CapabilityError> {
    let trimmed = entry.trim();
    if trimmed.is_empty() {
        return Ok(CapabilityEntry::Blank);
    }
    let upper = trimmed.to_ascii_uppercase();
    if upper == DROP_ALL {
        return Ok(CapabilityEntry::All);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    Capability::from_str(&full)
        .map(CapabilityEntry::Cap)
        .map_err(|_| CapabilityError::Unknown(entry.to_string()))
}

/// The capability set of a container: defaults, then the adds in the order
/// given (de-duplicated), minus the drops. The same set goes into bounding,
/// effective, permitted and inheritable.
pub fn resolve_capabilities(
    sc: Option<&SecurityContext>,
) -> Result<Vec<Capability>, CapabilityError> {
    let mut set: Vec<Capability> = DEFAULT_CAPABILITIES.to_vec();
    let Some(caps) = sc.and_then(|sc| sc.capabilities.as_ref()) else {
        return Ok(set);
    };
    for entry in &caps.add {
        match parse_capability(entry)? {
            CapabilityEntry::Blank => {}
            CapabilityEntry::All => return Err(CapabilityError::AllInAdd),
            CapabilityEntry::Cap(cap) => {
                if !set.contains(&cap) {
                    set.push(cap);
                }
            }
        }
    }
    for entry in &caps.drop {
        match parse_capability(entry)? {
            CapabilityEntry::Blank => {}
            CapabilityEntry::All => set.clear(),
            CapabilityEntry::Cap(cap) => set.retain(|c| *c != cap),
        }
    }
    Ok(set)
}

/// The bit mask of a set, as `/proc/<pid>/status` prints it in CapEff.
pub fn capability_mask(set: &[Capability]) -> u64 {
    set.iter().fold(0, |mask, cap| mask | cap.bitmask())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Capabilities;

    fn sc(add: &[&str], drop: &[&str]) -> SecurityContext {
        SecurityContext {
            capabilities: Some(Capabilities {
                add: add.iter().map(|s| s.to_string()).collect(),
                drop: drop.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    fn names(set: &[Capability]) -> Vec<String> {
        set.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn no_security_context_gives_the_defaults() {
        let set = resolve_capabilities(None).unwrap();
        assert_eq!(
            names(&set),
            ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        );
        assert_eq!(capability_mask(&set), 0x2000_0420);
    }

    #[test]
    fn empty_security_context_gives_the_defaults() {
        let empty = SecurityContext::default();
        assert_eq!(
            resolve_capabilities(Some(&empty)).unwrap(),
            DEFAULT_CAPABILITIES
        );
        assert_eq!(
            resolve_capabilities(Some(&sc(&[], &[]))).unwrap(),
            DEFAULT_CAPABILITIES
        );
    }

    #[test]
    fn names_without_prefix_and_in_lower_case_are_normalised() {
        let set =
            resolve_capabilities(Some(&sc(&["NET_ADMIN", "setuid", "cap_setgid"], &[]))).unwrap();
        assert_eq!(
            names(&set),
            [
                "CAP_AUDIT_WRITE",
                "CAP_KILL",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_ADMIN",
                "CAP_SETUID",
                "CAP_SETGID"
            ]
        );
    }

    #[test]
    fn the_motivating_set_has_the_documented_mask() {
        let set = resolve_capabilities(Some(&sc(&["NET_ADMIN", "setuid"], &[]))).unwrap();
        assert_eq!(capability_mask(&set), 0x2000_14a0);
    }

    #[test]
    fn duplicates_against_the_defaults_and_each_other_collapse() {
        let set = resolve_capabilities(Some(&sc(
            &["KILL", "CAP_KILL", "net_admin", "NET_ADMIN", "audit_write"],
            &[],
        )))
        .unwrap();
        assert_eq!(
            names(&set),
            [
                "CAP_AUDIT_WRITE",
                "CAP_KILL",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_ADMIN"
            ]
        );
    }

    #[test]
    fn blank_entries_are_skipped() {
        let set = resolve_capabilities(Some(&sc(&["", "  ", "SYS_PTRACE"], &[" "]))).unwrap();
        assert_eq!(
            names(&set),
            [
                "CAP_AUDIT_WRITE",
                "CAP_KILL",
                "CAP_NET_BIND_SERVICE",
                "CAP_SYS_PTRACE"
            ]
        );
    }

    #[test]
    fn drop_removes_a_default_and_an_add() {
        let set =
            resolve_capabilities(Some(&sc(&["NET_ADMIN", "SETUID"], &["kill", "CAP_SETUID"])))
                .unwrap();
        assert_eq!(
            names(&set),
            ["CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"]
        );
    }

    #[test]
    fn drop_all_empties_the_set() {
        let set = resolve_capabilities(Some(&sc(&["NET_ADMIN"], &["all"]))).unwrap();
        assert!(set.is_empty());
    }

    #[test]
    fn unknown_names_are_rejected_not_passed_through() {
        for bad in ["NET_ADMINN", "CAP_", "CAP_CAP_KILL", "foo", "NET ADMIN"] {
            let err = resolve_capabilities(Some(&sc(&[bad], &[]))).unwrap_err();
            assert_eq!(err, CapabilityError::Unknown(bad.to_string()), "{bad}");
        }
        let err = resolve_capabilities(Some(&sc(&[], &["NOPE"]))).unwrap_err();
        assert_eq!(err, CapabilityError::Unknown("NOPE".into()));
    }

    #[test]
    fn all_is_refused_in_add() {
        assert_eq!(
            resolve_capabilities(Some(&sc(&["ALL"], &[]))).unwrap_err(),
            CapabilityError::AllInAdd
        );
    }

    #[test]
    fn every_capability_of_the_caps_crate_is_accepted() {
        for cap in caps::all() {
            let name = cap.to_string();
            let short = name.trim_start_matches("CAP_").to_lowercase();
            assert_eq!(parse_capability(&name).unwrap(), CapabilityEntry::Cap(cap));
            assert_eq!(parse_capability(&short).unwrap(), CapabilityEntry::Cap(cap));
        }
    }
}
