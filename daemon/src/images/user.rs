//! The image config's `User` (`user`, `uid`, `user:group`, `uid:gid`, …)
//! turned into numeric ids, as container runtimes do: names are looked up
//! in the image's own `/etc/passwd` and `/etc/group`; a user given without
//! a group gets its passwd entry's primary group, or 0 when it has none.
//! The files are read through [`resolve_in_root`], so a symlinked
//! `/etc/passwd` in an image can never make the daemon read the host's.

use std::fs;
use std::io::Read;
use std::path::Path;

use super::extract::resolve_in_root;

/// Larger passwd or group files are refused.
const MAX_DB_FILE: u64 = 1024 * 1024;

/// Numeric `(uid, gid)` of `user` in the image at `rootfs`; `(None, None)`
/// for an empty `user` (the runtime's default, root).
pub(crate) fn resolve_user(
    rootfs: &Path,
    user: &str,
) -> Result<(Option<u32>, Option<u32>), String> {
    let user = user.trim();
    if user.is_empty() {
        return Ok((None, None));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = || read_db(rootfs, "etc/passwd");
    let (uid, primary_gid) = match u.parse::<u32>() {
        Ok(uid) => {
            let gid = passwd()?.and_then(|db| {
                entries(&db)
                    .find(|f| f.get(2).and_then(|s| s.parse::<u32>().ok()) == Some(uid))
                    .and_then(|f| f.get(3).and_then(|s| s.parse().ok()))
            });
            (uid, gid)
        }
        Err(_) => {
            let db =
                passwd()?.ok_or_else(|| format!("user {u:?}: the image has no /etc/passwd"))?;
            let f = entries(&db)
                .find(|f| f.first() == Some(&u))
                .ok_or_else(|| format!("user {u:?} is not in the image's /etc/passwd"))?;
            let num = |i: usize| f.get(i).and_then(|s| s.parse::<u32>().ok());
            let uid = num(2).ok_or_else(|| format!("user {u:?}: bad uid in /etc/passwd"))?;
            (uid, num(3))
        }
    };
    let gid = match g {
        None => primary_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let db = read_db(rootfs, "etc/group")?
                    .ok_or_else(|| format!("group {g:?}: the image has no /etc/group"))?;
                let gid = entries(&db)
                    .find(|f| f.first() == Some(&g))
                    .and_then(|f| f.get(2).and_then(|s| s.parse().ok()));
                gid.ok_or_else(|| format!("group {g:?} is not in the image's /etc/group"))?
            }
        },
    };
    Ok((Some(uid), Some(gid)))
}

/// Colon-separated records, comments and blank lines skipped.
fn entries(db: &str) -> impl Iterator<Item = Vec<&str>> {
    db.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn read_db(rootfs: &Path, name: &str) -> Result<Option<String>, String> {
    let Some(rel) = resolve_in_root(rootfs, Path::new(name), None, true)
        .map_err(|e| format!("reading /{name} of the image: {e}"))?
    else {
        return Ok(None);
    };
    let path = rootfs.join(rel);
    if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let mut text = String::new();
    fs::File::open(&path)
        .and_then(|f| f.take(MAX_DB_FILE).read_to_string(&mut text))
        .map_err(|e| format!("reading /{name} of the image: {e}"))?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        d
    }

    #[test]
    fn numbers_names_and_groups() {
        let r = rootfs();
        let p = r.path();
        assert_eq!(resolve_user(p, "").unwrap(), (None, None));
        assert_eq!(resolve_user(p, "1000").unwrap(), (Some(1000), Some(1001)));
        assert_eq!(resolve_user(p, "4242").unwrap(), (Some(4242), Some(0)));
        assert_eq!(resolve_user(p, "app").unwrap(), (Some(1000), Some(1001)));
        assert_eq!(
            resolve_user(p, "app:staff").unwrap(),
            (Some(1000), Some(50))
        );
        assert_eq!(resolve_user(p, "1000:7").unwrap(), (Some(1000), Some(7)));
        assert!(resolve_user(p, "nobody").unwrap_err().contains("nobody"));
        assert!(resolve_user(p, "app:wheel").unwrap_err().contains("wheel"));
    }

    #[test]
    fn a_symlinked_passwd_is_read_inside_the_image() {
        let r = rootfs();
        let p = r.path();
        fs::remove_file(p.join("etc/passwd")).unwrap();
        // Points at the host's /etc/passwd, which has a root entry: inside
        // the image it names /etc/passwd again, a loop, not the host file.
        std::os::unix::fs::symlink("/etc/passwd", p.join("etc/passwd")).unwrap();
        let err = resolve_user(p, "root").unwrap_err();
        assert!(err.contains("symbolic links"), "{err}");
    }
}
