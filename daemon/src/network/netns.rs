//! Network namespaces of actors, held by a file descriptor rather than a
//! bind mount: the daemon holds it while it sets the namespace up and runsc
//! joins it, then the sandbox holds it. When the sandbox ends, the kernel
//! removes the namespace and with it the veth pair, so nothing is left
//! behind by a crash of the daemon or of the sandbox, and a restarted
//! daemon (in whatever mount namespace systemd gives it) has no mounts to
//! find.

use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sched::{setns, unshare, CloneFlags};

/// A network namespace, alive at least as long as this value.
#[derive(Debug)]
pub(crate) struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// A new, empty network namespace (only `lo`, down). Made on a thread
    /// of its own that ends right after, so that no thread of the daemon
    /// stays in it.
    pub(crate) async fn create() -> std::io::Result<NetNs> {
        on_thread(|| {
            unshare(CloneFlags::CLONE_NEWNET)?;
            let fd = std::fs::File::open("/proc/thread-self/ns/net")?;
            Ok(NetNs { fd: fd.into() })
        })
        .await
    }

    /// A path other processes can open to join it while this value lives:
    /// `/proc/<daemon pid>/fd/<n>`.
    pub(crate) fn proc_path(&self) -> std::path::PathBuf {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd()).into()
    }

    /// The raw descriptor, for netlink's "move this link there".
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Runs `work` (netlink requests) on a thread that has entered this
    /// namespace, with a runtime of its own, so that the sockets it opens
    /// are in the namespace and no other task of the daemon is.
    pub(crate) async fn run<F, Fut, T>(&self, work: F) -> std::io::Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::io::Result<T>>,
        T: Send + 'static,
    {
        let fd = self.fd.try_clone()?;
        on_thread(move || {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(work())
        })
        .await
    }
}

/// Runs `f` on a new OS thread (namespace changes must not touch the
/// runtime's workers) and awaits its result.
async fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("atelet-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })?;
    rx.await
        .map_err(|_| std::io::Error::other("netns thread ended without an answer"))?
}
