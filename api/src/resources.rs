//! Container `resources` checked and summed into what one sandbox gets:
//! an actor is one gVisor sandbox in one cgroup, so its limits are its
//! containers' limits added up, as a Kubernetes pod's cgroup is.

use crate::quantity::{format_bytes, parse_bytes, parse_millicores};
use crate::types::{ActorSpec, ResourceList, ResourceRequirements};
use crate::validate::ValidationError;

/// Smallest memory limit accepted: gVisor's own kernel (the sentry) holds
/// about 10 MiB of a sandbox's cgroup before the actor runs anything, so
/// a smaller limit could only OOM-kill the sandbox as it starts.
pub const MIN_MEMORY_LIMIT: u64 = 16 << 20;

/// Smallest CPU limit accepted, in millicores: the kernel's smallest CFS
/// quota is 1 ms per period, and the period is 100 ms.
pub const MIN_CPU_LIMIT_MILLIS: u64 = 10;

/// Largest memory amount: the OCI spec carries limits as `i64`.
const MAX_MEMORY: u64 = i64::MAX as u64;

/// Largest CPU amount in millicores: a million cores is not a machine.
const MAX_CPU_MILLIS: u64 = 1_000_000_000;

/// The resources of one container, parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    /// Millicores.
    pub cpu_millis: Option<u64>,
    /// Bytes.
    pub memory_bytes: Option<u64>,
}

/// What one sandbox gets: each container's amounts added up. A limit is
/// set only when every container sets it (one unlimited container makes
/// the sandbox unlimited); a request is the sum of the requests given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxResources {
    /// Limits.
    pub limits: Amounts,
    /// Requests.
    pub requests: Amounts,
}

impl SandboxResources {
    /// The sandbox's resources of a validated spec (quantities that do
    /// not parse count as absent: validation refuses them first).
    pub fn of(spec: &ActorSpec) -> SandboxResources {
        let per: Vec<(Amounts, Amounts)> = spec
            .containers
            .iter()
            .map(|c| {
                let r = c.resources.as_ref();
                (
                    amounts(r.and_then(|r| r.limits.as_ref())),
                    amounts(r.and_then(|r| r.requests.as_ref())),
                )
            })
            .collect();
        let all = |f: fn(&Amounts) -> Option<u64>| -> Option<u64> {
            per.iter()
                .map(|(l, _)| f(l))
                .try_fold(0u64, |sum, v| v.map(|v| sum.saturating_add(v)))
                .filter(|_| !per.is_empty())
        };
        let any = |f: fn(&Amounts) -> Option<u64>| -> Option<u64> {
            per.iter()
                .filter_map(|(_, r)| f(r))
                .reduce(|a, b| a.saturating_add(b))
        };
        SandboxResources {
            limits: Amounts {
                cpu_millis: all(|a| a.cpu_millis),
                memory_bytes: all(|a| a.memory_bytes),
            },
            requests: Amounts {
                cpu_millis: any(|a| a.cpu_millis),
                memory_bytes: any(|a| a.memory_bytes),
            },
        }
    }
}

fn amounts(list: Option<&ResourceList>) -> Amounts {
    Amounts {
        cpu_millis: list
            .and_then(|l| l.cpu.as_deref())
            .and_then(|t| parse_millicores(t).ok()),
        memory_bytes: list
            .and_then(|l| l.memory.as_deref())
            .and_then(|t| parse_bytes(t).ok()),
    }
}

/// Checks one container's `resources` (`field` is its JSON path, e.g.
/// `spec.containers[0].resources`): every quantity parses, limits are in
/// range, and no request exceeds its limit (Kubernetes' rule).
pub fn validate_resources(field: &str, r: &ResourceRequirements) -> Result<(), ValidationError> {
    let limits = check_list(&format!("{field}.limits"), r.limits.as_ref(), true)?;
    let requests = check_list(&format!("{field}.requests"), r.requests.as_ref(), false)?;
    if let (Some(req), Some(lim)) = (requests.cpu_millis, limits.cpu_millis) {
        if req > lim {
            return Err(ValidationError::new(
                format!("{field}.requests.cpu"),
                format!("{req}m is more than the limit, {lim}m"),
            ));
        }
    }
    if let (Some(req), Some(lim)) = (requests.memory_bytes, limits.memory_bytes) {
        if req > lim {
            return Err(ValidationError::new(
                format!("{field}.requests.memory"),
                format!(
                    "{} is more than the limit, {}",
                    format_bytes(req),
                    format_bytes(lim)
                ),
            ));
        }
    }
    Ok(())
}

fn check_list(
    field: &str,
    list: Option<&ResourceList>,
    is_limit: bool,
) -> Result<Amounts, ValidationError> {
    let Some(list) = list else {
        return Ok(Amounts::default());
    };
    let cpu_millis = match &list.cpu {
        None => None,
        Some(text) => {
            let f = format!("{field}.cpu");
            let m = parse_millicores(text).map_err(|e| ValidationError::new(&f, e.to_string()))?;
            if m == 0 {
                return Err(ValidationError::new(
                    f,
                    format!("{text:?} must be more than 0"),
                ));
            }
            if is_limit && m < MIN_CPU_LIMIT_MILLIS {
                return Err(ValidationError::new(
                    f,
                    format!("{text:?} is less than {MIN_CPU_LIMIT_MILLIS}m, the smallest CPU limit the kernel enforces"),
                ));
            }
            if m > MAX_CPU_MILLIS {
                return Err(ValidationError::new(f, format!("{text:?} is too large")));
            }
            Some(m)
        }
    };
    let memory_bytes = match &list.memory {
        None => None,
        Some(text) => {
            let f = format!("{field}.memory");
            let b = parse_bytes(text).map_err(|e| ValidationError::new(&f, e.to_string()))?;
            if b == 0 {
                return Err(ValidationError::new(
                    f,
                    format!("{text:?} must be more than 0"),
                ));
            }
            if is_limit && b < MIN_MEMORY_LIMIT {
                return Err(ValidationError::new(
                    f,
                    format!(
                        "{text:?} is less than {}, the smallest memory limit a sandbox starts with",
                        format_bytes(MIN_MEMORY_LIMIT)
                    ),
                ));
            }
            if b > MAX_MEMORY {
                return Err(ValidationError::new(f, format!("{text:?} is too large")));
            }
            Some(b)
        }
    };
    Ok(Amounts {
        cpu_millis,
        memory_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(resources: &[serde_json::Value]) -> ActorSpec {
        let containers: Vec<serde_json::Value> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut c =
                    json!({"name": format!("c{i}"), "image": "dir:/r", "command": ["/bin/sh"]});
                if !r.is_null() {
                    c["resources"] = r.clone();
                }
                c
            })
            .collect();
        serde_json::from_value(json!({ "containers": containers })).unwrap()
    }

    fn check(r: serde_json::Value) -> Result<(), ValidationError> {
        validate_resources("r", &serde_json::from_value(r).unwrap())
    }

    #[test]
    fn good_resources_pass() {
        check(json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "0.25", "memory": "128Mi"}})).unwrap();
        check(json!({"limits": {"memory": "1G"}})).unwrap();
        check(json!({"requests": {"cpu": "2"}})).unwrap();
        check(json!({})).unwrap();
    }

    #[test]
    fn bad_quantities_name_their_field() {
        for (r, field) in [
            (json!({"limits": {"cpu": "half"}}), "r.limits.cpu"),
            (
                json!({"limits": {"memory": "12 parsecs"}}),
                "r.limits.memory",
            ),
            (json!({"requests": {"memory": "-1Mi"}}), "r.requests.memory"),
            (json!({"requests": {"cpu": "0"}}), "r.requests.cpu"),
            (json!({"limits": {"cpu": "1m"}}), "r.limits.cpu"),
            (json!({"limits": {"memory": "1Mi"}}), "r.limits.memory"),
            (json!({"limits": {"memory": "9Ei"}}), "r.limits.memory"),
            (json!({"limits": {"cpu": "1e30"}}), "r.limits.cpu"),
            (
                json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}),
                "r.requests.cpu",
            ),
            (
                json!({"limits": {"memory": "64Mi"}, "requests": {"memory": "1Gi"}}),
                "r.requests.memory",
            ),
        ] {
            let e = check(r.clone()).unwrap_err();
            assert_eq!(e.field, field, "{r}: {e}");
        }
        let e = check(json!({"limits": {"memory": "64Mi"}, "requests": {"memory": "1Gi"}}))
            .unwrap_err();
        assert_eq!(e.message, "1Gi is more than the limit, 64Mi");
    }

    #[test]
    fn a_sandbox_gets_the_sum_of_its_containers() {
        let s = SandboxResources::of(&spec(&[
            json!({"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}),
            json!({"limits": {"cpu": "0.5", "memory": "64Mi"}, "requests": {"memory": "32Mi"}}),
        ]));
        assert_eq!(s.limits.cpu_millis, Some(1000));
        assert_eq!(s.limits.memory_bytes, Some(128 << 20));
        assert_eq!(s.requests.cpu_millis, Some(100));
        assert_eq!(s.requests.memory_bytes, Some(32 << 20));
    }

    #[test]
    fn one_unlimited_container_leaves_the_sandbox_unlimited() {
        let s = SandboxResources::of(&spec(&[
            json!({"limits": {"memory": "64Mi"}}),
            serde_json::Value::Null,
        ]));
        assert_eq!(s.limits, Amounts::default());
        let s = SandboxResources::of(&spec(&[serde_json::Value::Null]));
        assert_eq!(s, SandboxResources::default());
        let s = SandboxResources::of(&spec(&[json!({"limits": {"memory": "64Mi"}})]));
        assert_eq!(s.limits.memory_bytes, Some(64 << 20));
        assert_eq!(s.limits.cpu_millis, None);
    }
}
