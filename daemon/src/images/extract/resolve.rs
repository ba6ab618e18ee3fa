//! Resolving a path inside the root being unpacked, following symlinks
//! as the kernel would but never out of the root.

use super::*;

/// Why a name could not be resolved inside the root.
#[derive(Debug)]
pub enum ResolveError {
    /// More than [`MAX_SYMLINKS`] symlinks.
    Loop,
    /// A component that must be a directory is something else.
    NotADirectory(PathBuf),
    /// The file system failed.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Loop => write!(f, "too many levels of symbolic links"),
            ResolveError::NotADirectory(p) => write!(f, "/{} is not a directory", p.display()),
            ResolveError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

/// Resolves `path` inside `root` as if `root` were `/`: every symlink met
/// is followed with an absolute target re-rooted and `..` stopping at the
/// root. Gives the path relative to `root` of what it names, with no
/// symlink left in it, or `None` when something on the way is missing.
/// Missing directories are created (and added to `created`) when
/// `created` is given. The last component may be a non-directory only
/// when `last_may_be_file`; a final symlink is followed too.
pub fn resolve_in_root(
    root: &Path,
    path: &Path,
    mut created: Option<&mut HashSet<PathBuf>>,
    last_may_be_file: bool,
) -> Result<Option<PathBuf>, ResolveError> {
    // Components still to walk, last one on top.
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path);
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&part);
        let abs = root.join(&next);
        match fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => cur = next,
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(ResolveError::Loop);
                }
                let target = fs::read_link(&abs).map_err(|e| ResolveError::Io(next.clone(), e))?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                push_components(&mut todo, &target);
            }
            Ok(_) if todo.is_empty() && last_may_be_file => cur = next,
            Ok(_) => return Err(ResolveError::NotADirectory(next)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match created.as_deref_mut() {
                Some(created) => {
                    // Explicitly 0755 whatever the daemon's umask: the
                    // sandbox's users must be able to traverse it.
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&abs)
                        .and_then(|()| fs::set_permissions(&abs, fs::Permissions::from_mode(0o755)))
                        .map_err(|e| ResolveError::Io(next.clone(), e))?;
                    created.insert(next.clone());
                    cur = next;
                }
                None => return Ok(None),
            },
            Err(e) => return Err(ResolveError::Io(next, e)),
        }
    }
    Ok(Some(cur))
}

/// Pushes `path`'s components so that the first is popped first; `.` and
/// the root are dropped, `..` kept (the walk clamps it at the root).
pub(super) fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

/// The normal components of an entry name: leading `/` and `.` dropped
/// (neutralised), `..` refused.
pub(super) fn clean_name(name: &Path) -> Result<Vec<&OsStr>, String> {
    name.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(Ok(p)),
            Component::ParentDir => Some(Err("a name with '..' is refused".to_string())),
            _ => None,
        })
        .collect()
}
