//! What crash recovery does with one actor, decided from its record and
//! from what runsc and the disk show, without touching anything: the
//! recovery table of docs/failure-modes.md ("The daemon stops, crashes or
//! is killed"), one row per case. The executor in `recovery.rs` looks
//! ([`Observed`]) and carries the [`Recovery`] out; the tests below hold
//! the table, every row of the document's among them.

use std::path::PathBuf;

use atelet_api::ActorStatus;

use crate::store::{ActorRecord, PendingOp, SnapshotRecord};

/// Whether the sandbox the record names runs, as runsc showed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::service) enum Sandbox {
    /// Nothing runs for the actor: no container on record, or runsc shows
    /// it stopped or not at all.
    Gone,
    /// runsc shows it running, with this sandbox pid.
    Running(i32),
    /// Still running with this pid after recovery waited for a
    /// checkpointed sandbox to wind down ([`Recovery::WaitWindDown`]): the
    /// checkpoint did not stop it.
    StillRunning(i32),
    /// runsc shows it frozen (`runsc pause`), with this sandbox pid. A
    /// checkpoint leaves a frozen sandbox as it was.
    Paused(i32),
}

impl Sandbox {
    fn pid(self) -> Option<i32> {
        match self {
            Sandbox::Gone => None,
            Sandbox::Running(pid) | Sandbox::StillRunning(pid) | Sandbox::Paused(pid) => Some(pid),
        }
    }
}

/// What runsc and the disk showed of one actor: all [`plan`] needs beside
/// the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::service) struct Observed {
    /// The actor's sandbox.
    pub sandbox: Sandbox,
    /// The temporary directory of the pending snapshot, when it holds a
    /// checkpoint image (the checkpoint ran).
    pub pending_image: Option<PathBuf>,
    /// The pending snapshot's directory is renamed into place (the suspend
    /// committed it to disk; not yet verified): the checkpoint ran.
    pub pending_renamed: bool,
    /// The pending snapshot, renamed into place and verified but not
    /// recorded (the suspend committed it, then the daemon stopped).
    /// Verifying reads the whole image, so it is only looked for where it
    /// decides something: a SUSPENDING actor whose sandbox is gone, or
    /// still tearing down after the wind-down wait.
    pub committed: Option<SnapshotRecord>,
}

/// What recovery does with one actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::service) enum Recovery {
    /// The sandbox runs: watch it again and record RUNNING, with `message`
    /// when that changes the status (`None`: it was RUNNING already). The
    /// pending snapshot's temporary directory goes (a suspend that did not
    /// happen, a revive that did), and with it anything in flight.
    Adopt {
        /// The sandbox pid.
        pid: i32,
        /// The status message of the transition to RUNNING.
        message: Option<String>,
    },
    /// The sandbox is frozen: watch it again and record PAUSED, with
    /// `message` when that changes the status (`None`: it was PAUSED
    /// already). The pending snapshot's temporary directory goes (a
    /// suspend of the paused actor that did not commit).
    AdoptPaused {
        /// The sandbox pid.
        pid: i32,
        /// The status message of the transition to PAUSED.
        message: Option<String>,
    },
    /// A stop was in flight: finish it (STOPPED), ending the sandbox first
    /// when it still runs.
    FinishStop {
        /// `runsc delete --force` the sandbox.
        end_sandbox: bool,
    },
    /// FAILED, with nothing in flight any more.
    MarkFailed {
        /// The status message.
        message: String,
    },
    /// The suspend committed its snapshot but did not record it: record
    /// it, SUSPENDED.
    CommitSnapshot {
        /// The snapshot to record.
        snapshot: SnapshotRecord,
        /// The checkpointed sandbox was still tearing down after the
        /// wind-down wait: end it first (the snapshot proves the
        /// checkpoint completed; what is left is only its teardown).
        end_sandbox: bool,
    },
    /// A checkpoint stopped the sandbox but its image was never committed:
    /// restore the actor from that image (RUNNING, or FAILED if that fails).
    Revive {
        /// The temporary directory holding the image; removed afterwards.
        image: PathBuf,
    },
    /// A resume from a committed snapshot did not complete: SUSPENDED, the
    /// snapshot is intact.
    BackToSuspended,
    /// A checkpoint wrote its image and its sandbox may still be winding
    /// down: wait for it to end (up to `CHECKPOINT_WIND_DOWN`), then plan
    /// again with what that showed ([`Sandbox::Gone`] or
    /// [`Sandbox::StillRunning`]).
    WaitWindDown {
        /// The sandbox pid.
        pid: i32,
    },
    /// A sandbox runs for an actor that should have none: end it and
    /// forget its container.
    EndStraySandbox,
    /// The record names a container whose sandbox is gone, for an actor
    /// that should have none: forget it.
    ForgetContainer,
    /// Nothing to do.
    Nothing,
}

/// Why a suspend or revive interrupted by a restart leaves the actor FAILED.
const NO_SNAPSHOT_COMMITTED: &str = "the sandbox stopped during a suspend interrupted by a daemon restart; no snapshot was committed";

/// Decides what recovery does with the actor `rec` given what was
/// `observed`: the table of docs/failure-modes.md. Pure, so that the table
/// is tested case by case; [`Recovery::WaitWindDown`] is the one answer
/// that asks to look again.
pub(in crate::service) fn plan(rec: &ActorRecord, observed: &Observed) -> Recovery {
    use ActorStatus::*;
    let stopping = rec.pending == Some(PendingOp::Stop);
    let frozen = matches!(observed.sandbox, Sandbox::Paused(_));
    match (rec.status, observed.sandbox.pid()) {
        (Running | Pausing | Paused | Unpausing, Some(_)) if stopping => {
            Recovery::FinishStop { end_sandbox: true }
        }
        (Running | Pausing | Paused | Unpausing, None) if stopping => {
            Recovery::FinishStop { end_sandbox: false }
        }
        // A checkpoint leaves a frozen sandbox frozen: with its snapshot
        // committed the suspend is done, else the actor is still PAUSED.
        (Suspending, Some(pid)) if frozen => match &observed.committed {
            Some(snapshot) => Recovery::CommitSnapshot {
                snapshot: snapshot.clone(),
                end_sandbox: true,
            },
            None => Recovery::AdoptPaused {
                pid,
                message: Some(
                    "suspend interrupted by a daemon restart; the actor stays paused".to_string(),
                ),
            },
        },
        (Paused, Some(pid)) if frozen => Recovery::AdoptPaused { pid, message: None },
        (Pausing | Unpausing | Running, Some(pid)) if frozen => Recovery::AdoptPaused {
            pid,
            message: Some(format!(
                "found paused after a daemon restart (it was {})",
                rec.status
            )),
        },
        (Pausing | Paused | Unpausing, Some(pid)) => Recovery::Adopt {
            pid,
            message: Some(format!(
                "found running after a daemon restart (it was {})",
                rec.status
            )),
        },
        (Pausing | Paused | Unpausing, None) => Recovery::MarkFailed {
            message: "sandbox lost while the daemon was down".to_string(),
        },
        // A sandbox lives on for a while (≈ 1.2 s here, more with more
        // memory) after a checkpoint has written its image: a suspend cut
        // short there finds it running. Its image must not be taken for a
        // failed checkpoint's leftovers, or the actor is lost when the
        // sandbox ends a moment later.
        (Suspending, Some(pid))
            if observed.sandbox == Sandbox::Running(pid)
                && (observed.pending_image.is_some() || observed.pending_renamed) =>
        {
            Recovery::WaitWindDown { pid }
        }
        // Its snapshot was renamed into place and verifies: the checkpoint
        // completed and only the sandbox's teardown is slow. Adopting it
        // would sweep the snapshot as unrecorded and lose the actor when
        // the sandbox ends.
        (Suspending, Some(_)) if matches!(observed.sandbox, Sandbox::StillRunning(_)) => {
            match &observed.committed {
                Some(snapshot) => Recovery::CommitSnapshot {
                    snapshot: snapshot.clone(),
                    end_sandbox: true,
                },
                None => Recovery::Adopt {
                    pid: observed.sandbox.pid().unwrap_or_default(),
                    message: Some(
                        "suspend interrupted by a daemon restart; the actor kept running"
                            .to_string(),
                    ),
                },
            }
        }
        (Running, Some(pid)) => Recovery::Adopt { pid, message: None },
        (Starting | Resuming, Some(pid)) => Recovery::Adopt {
            pid,
            message: Some(format!(
                "{} completed while the daemon was down",
                rec.status.as_str().to_lowercase()
            )),
        },
        (Suspending, Some(pid)) => Recovery::Adopt {
            pid,
            message: Some(
                "suspend interrupted by a daemon restart; the actor kept running".to_string(),
            ),
        },
        (Running, None) => Recovery::MarkFailed {
            message: "sandbox lost while the daemon was down".to_string(),
        },
        (Starting, None) => Recovery::MarkFailed {
            message: "the daemon stopped while the actor was starting".to_string(),
        },
        // A revive from an uncommitted checkpoint was interrupted: tried
        // again from that image, never from an older snapshot.
        (Resuming, None) if rec.pending_snapshot.is_some() => match &observed.pending_image {
            Some(image) => Recovery::Revive {
                image: image.clone(),
            },
            None => Recovery::MarkFailed {
                message: NO_SNAPSHOT_COMMITTED.to_string(),
            },
        },
        (Resuming, None) if rec.snapshots.is_empty() => Recovery::MarkFailed {
            message:
                "the daemon stopped while the actor was being restored; no snapshot is committed"
                    .to_string(),
        },
        (Resuming, None) => Recovery::BackToSuspended,
        (Suspending, None) => match (&observed.committed, &observed.pending_image) {
            (Some(snapshot), _) => Recovery::CommitSnapshot {
                snapshot: snapshot.clone(),
                end_sandbox: false,
            },
            // The checkpoint ran (it stopped the sandbox) but was not
            // committed: bring the actor back from its image.
            (None, Some(image)) => Recovery::Revive {
                image: image.clone(),
            },
            (None, None) => Recovery::MarkFailed {
                message: NO_SNAPSHOT_COMMITTED.to_string(),
            },
        },
        (Created | Stopped | Failed | Suspended, Some(_)) => Recovery::EndStraySandbox,
        (Created | Stopped | Failed | Suspended, None) if rec.container.is_some() => {
            Recovery::ForgetContainer
        }
        (Created | Stopped | Failed | Suspended, None) => Recovery::Nothing,
    }
}

/// Whether the sweep of snapshot directories that are not on record keeps
/// the pending snapshot's (temporary or renamed into place): only while
/// the plan may still commit it or revive from it, i.e. for a SUSPENDING
/// or RESUMING actor whose sandbox is gone.
pub(in crate::service) fn keeps_pending_snapshot(rec: &ActorRecord, observed: &Observed) -> bool {
    matches!(rec.status, ActorStatus::Suspending | ActorStatus::Resuming)
        && (observed.sandbox == Sandbox::Gone || observed.committed.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ContainerRecord;
    use ActorStatus::*;

    const PID: i32 = 4242;

    /// The pending snapshot's temporary directory, with an image.
    fn image() -> PathBuf {
        PathBuf::from("/s/snapshots/a/.tmp-snap-000002")
    }

    fn committed() -> SnapshotRecord {
        SnapshotRecord {
            id: "snap-000002".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            size_bytes: 1 << 20,
            runsc_version: "0.0~20221219.0".into(),
            remote: None,
        }
    }

    /// An actor with `status` and a container on record.
    fn record(status: ActorStatus) -> ActorRecord {
        let req: atelet_api::CreateActorRequest = serde_json::from_value(serde_json::json!({
            "id": "a",
            "template": {"namespace": "default", "name": "t"},
            "spec": {"containers": [{"name": "app", "image": "dir:/r", "command": ["/bin/sh"]}]}
        }))
        .unwrap();
        let mut rec = ActorRecord::new(req.id, req.template, req.spec.unwrap(), String::new());
        rec.status = status;
        rec.incarnation = 1;
        rec.container = Some(ContainerRecord {
            id: "a_1.f00d".into(),
            pid: Some(PID),
            runsc_version: "0.0~20221219.0".into(),
        });
        rec
    }

    fn stopping(status: ActorStatus) -> ActorRecord {
        let mut rec = record(status);
        rec.pending = Some(PendingOp::Stop);
        rec
    }

    /// A suspend in flight (or a revive from its image).
    fn with_pending_snapshot(status: ActorStatus) -> ActorRecord {
        let mut rec = record(status);
        rec.snapshot_seq = 2;
        rec.pending_snapshot = Some("snap-000002".into());
        rec
    }

    fn with_a_snapshot(status: ActorStatus) -> ActorRecord {
        let mut rec = record(status);
        rec.snapshots.push(SnapshotRecord {
            id: "snap-000001".into(),
            ..committed()
        });
        rec
    }

    fn no_container(status: ActorStatus) -> ActorRecord {
        let mut rec = record(status);
        rec.container = None;
        rec
    }

    fn seen(sandbox: Sandbox) -> Observed {
        Observed {
            sandbox,
            pending_image: None,
            pending_renamed: false,
            committed: None,
        }
    }

    fn seen_with_image(sandbox: Sandbox) -> Observed {
        Observed {
            pending_image: Some(image()),
            ..seen(sandbox)
        }
    }

    fn adopt(message: Option<&str>) -> Recovery {
        Recovery::Adopt {
            pid: PID,
            message: message.map(str::to_string),
        }
    }

    fn adopt_paused(message: Option<&str>) -> Recovery {
        Recovery::AdoptPaused {
            pid: PID,
            message: message.map(str::to_string),
        }
    }

    fn failed(message: &str) -> Recovery {
        Recovery::MarkFailed {
            message: message.to_string(),
        }
    }

    /// One case: the row of docs/failure-modes.md it stands for (its
    /// "record says" and "sandbox" cells, word for word) when it is one.
    struct Case {
        doc: Option<(&'static str, &'static str)>,
        rec: ActorRecord,
        observed: Observed,
        expected: Recovery,
    }

    fn case(
        doc: Option<(&'static str, &'static str)>,
        rec: ActorRecord,
        observed: Observed,
        expected: Recovery,
    ) -> Case {
        Case {
            doc,
            rec,
            observed,
            expected,
        }
    }

    fn table() -> Vec<Case> {
        use Sandbox::{Gone, Paused as Frozen, Running as Up, StillRunning};
        let kept_running = "suspend interrupted by a daemon restart; the actor kept running";
        vec![
            case(
                Some(("`RUNNING`", "running")),
                record(Running),
                seen(Up(PID)),
                adopt(None),
            ),
            case(
                Some(("`RUNNING`", "gone")),
                record(Running),
                seen(Gone),
                failed("sandbox lost while the daemon was down"),
            ),
            case(
                Some(("`RUNNING`, a stop in flight", "either")),
                stopping(Running),
                seen(Up(PID)),
                Recovery::FinishStop { end_sandbox: true },
            ),
            case(
                Some(("`RUNNING`, a stop in flight", "either")),
                stopping(Running),
                seen(Gone),
                Recovery::FinishStop { end_sandbox: false },
            ),
            case(
                Some(("`STARTING`", "running")),
                record(Starting),
                seen(Up(PID)),
                adopt(Some("starting completed while the daemon was down")),
            ),
            case(
                Some(("`STARTING`", "gone")),
                record(Starting),
                seen(Gone),
                failed("the daemon stopped while the actor was starting"),
            ),
            case(
                Some(("`SUSPENDING`", "running, no checkpoint image")),
                with_pending_snapshot(Suspending),
                seen(Up(PID)),
                adopt(Some(kept_running)),
            ),
            // The checkpoint wrote its image: wait for the sandbox to wind
            // down, then decide on what that showed.
            case(
                Some(("`SUSPENDING`", "running, a checkpoint image written")),
                with_pending_snapshot(Suspending),
                seen_with_image(Up(PID)),
                Recovery::WaitWindDown { pid: PID },
            ),
            // It ended: the checkpoint completed; restored from the image.
            case(
                Some(("`SUSPENDING`", "running, a checkpoint image written")),
                with_pending_snapshot(Suspending),
                seen_with_image(Gone),
                Recovery::Revive { image: image() },
            ),
            // The suspend even renamed its snapshot into place before the
            // daemon stopped: the same wait, then the snapshot is recorded.
            case(
                Some(("`SUSPENDING`", "running, the snapshot renamed into place")),
                with_pending_snapshot(Suspending),
                Observed {
                    pending_renamed: true,
                    ..seen(Up(PID))
                },
                Recovery::WaitWindDown { pid: PID },
            ),
            // Still tearing down after the wait, but its snapshot is in
            // place and verifies: the checkpoint completed. Recorded, and
            // the sandbox ended.
            case(
                Some(("`SUSPENDING`", "running, the snapshot renamed into place")),
                with_pending_snapshot(Suspending),
                Observed {
                    pending_renamed: true,
                    committed: Some(committed()),
                    ..seen(StillRunning(PID))
                },
                Recovery::CommitSnapshot {
                    snapshot: committed(),
                    end_sandbox: true,
                },
            ),
            // It kept running: the checkpoint failed; RUNNING, the image goes.
            case(
                Some(("`SUSPENDING`", "running, a checkpoint image written")),
                with_pending_snapshot(Suspending),
                seen_with_image(StillRunning(PID)),
                adopt(Some(kept_running)),
            ),
            case(
                Some((
                    "`SUSPENDING`",
                    "gone, snapshot renamed into place and verified (sha256)",
                )),
                with_pending_snapshot(Suspending),
                Observed {
                    committed: Some(committed()),
                    ..seen(Gone)
                },
                Recovery::CommitSnapshot {
                    snapshot: committed(),
                    end_sandbox: false,
                },
            ),
            case(
                Some((
                    "`SUSPENDING`",
                    "gone, checkpoint image written but not committed",
                )),
                with_pending_snapshot(Suspending),
                seen_with_image(Gone),
                Recovery::Revive { image: image() },
            ),
            case(
                Some(("`SUSPENDING`", "gone, no image")),
                with_pending_snapshot(Suspending),
                seen(Gone),
                failed(NO_SNAPSHOT_COMMITTED),
            ),
            case(
                Some(("`RESUMING`", "running")),
                with_a_snapshot(Resuming),
                seen(Up(PID)),
                adopt(Some("resuming completed while the daemon was down")),
            ),
            case(
                Some(("`RESUMING`", "gone")),
                with_a_snapshot(Resuming),
                seen(Gone),
                Recovery::BackToSuspended,
            ),
            case(
                Some((
                    "`RESUMING` from an uncommitted image (a revive, below)",
                    "gone",
                )),
                with_pending_snapshot(Resuming),
                seen_with_image(Gone),
                Recovery::Revive { image: image() },
            ),
            case(
                Some((
                    "`RESUMING` from an uncommitted image (a revive, below)",
                    "gone",
                )),
                with_pending_snapshot(Resuming),
                seen(Gone),
                failed(NO_SNAPSHOT_COMMITTED),
            ),
            // Beyond the document's table.
            // A revive that completed.
            case(
                None,
                with_pending_snapshot(Resuming),
                seen_with_image(Up(PID)),
                adopt(Some("resuming completed while the daemon was down")),
            ),
            // A resume with no snapshot to go back to.
            case(
                None,
                record(Resuming),
                seen(Gone),
                failed("the daemon stopped while the actor was being restored; no snapshot is committed"),
            ),
            // A committed snapshot wins over an image beside it.
            case(
                None,
                with_pending_snapshot(Suspending),
                Observed {
                    committed: Some(committed()),
                    ..seen_with_image(Gone)
                },
                Recovery::CommitSnapshot {
                    snapshot: committed(),
                    end_sandbox: false,
                },
            ),
            // Statuses that have no sandbox: one that runs is ended, one
            // that is gone forgotten.
            case(None, record(Suspended), seen(Up(PID)), Recovery::EndStraySandbox),
            case(None, record(Failed), seen(Up(PID)), Recovery::EndStraySandbox),
            case(None, record(Stopped), seen(Up(PID)), Recovery::EndStraySandbox),
            case(None, record(Created), seen(Up(PID)), Recovery::EndStraySandbox),
            case(None, stopping(Suspended), seen(Up(PID)), Recovery::EndStraySandbox),
            case(None, record(Failed), seen(Gone), Recovery::ForgetContainer),
            case(None, record(Stopped), seen(Gone), Recovery::ForgetContainer),
            case(None, no_container(Stopped), seen(Gone), Recovery::Nothing),
            case(None, no_container(Suspended), seen(Gone), Recovery::Nothing),
            case(None, no_container(Created), seen(Gone), Recovery::Nothing),
            // A wind-down is waited for once: what it showed decides.
            case(
                None,
                with_pending_snapshot(Suspending),
                seen(StillRunning(PID)),
                adopt(Some(kept_running)),
            ),
            case(
                Some(("`PAUSED`", "paused")),
                record(Paused),
                seen(Frozen(PID)),
                adopt_paused(None),
            ),
            case(
                Some(("`PAUSING` or `UNPAUSING`", "paused")),
                record(Pausing),
                seen(Frozen(PID)),
                adopt_paused(Some("found paused after a daemon restart (it was PAUSING)")),
            ),
            case(
                None,
                record(Unpausing),
                seen(Frozen(PID)),
                adopt_paused(Some("found paused after a daemon restart (it was UNPAUSING)")),
            ),
            case(
                Some(("`PAUSING`, `PAUSED` or `UNPAUSING`", "running")),
                record(Paused),
                seen(Up(PID)),
                adopt(Some("found running after a daemon restart (it was PAUSED)")),
            ),
            case(
                None,
                record(Unpausing),
                seen(Up(PID)),
                adopt(Some("found running after a daemon restart (it was UNPAUSING)")),
            ),
            case(
                Some(("`PAUSING`, `PAUSED` or `UNPAUSING`", "gone")),
                record(Paused),
                seen(Gone),
                failed("sandbox lost while the daemon was down"),
            ),
            case(None, record(Pausing), seen(Gone), failed("sandbox lost while the daemon was down")),
            case(None, stopping(Paused), seen(Frozen(PID)), Recovery::FinishStop { end_sandbox: true }),
            case(None, stopping(Paused), seen(Gone), Recovery::FinishStop { end_sandbox: false }),
            case(
                Some((
                    "`SUSPENDING` from `PAUSED`",
                    "paused, the snapshot renamed into place and verified",
                )),
                with_pending_snapshot(Suspending),
                Observed {
                    committed: Some(committed()),
                    pending_renamed: true,
                    ..seen(Frozen(PID))
                },
                Recovery::CommitSnapshot {
                    snapshot: committed(),
                    end_sandbox: true,
                },
            ),
            case(
                Some(("`SUSPENDING` from `PAUSED`", "paused, no committed snapshot")),
                with_pending_snapshot(Suspending),
                seen_with_image(Frozen(PID)),
                adopt_paused(Some(
                    "suspend interrupted by a daemon restart; the actor stays paused",
                )),
            ),
        ]
    }

    #[test]
    fn the_plan_follows_the_recovery_table() {
        for (i, c) in table().into_iter().enumerate() {
            let got = plan(&c.rec, &c.observed);
            assert_eq!(
                got, c.expected,
                "case {i} ({:?}): {} with pending {:?}, {:?}",
                c.doc, c.rec.status, c.rec.pending, c.observed
            );
        }
    }

    #[test]
    fn a_wind_down_is_waited_for_once() {
        for c in table() {
            for sandbox in [Sandbox::Gone, Sandbox::StillRunning(PID)] {
                let observed = Observed {
                    sandbox,
                    ..c.observed.clone()
                };
                assert!(
                    !matches!(plan(&c.rec, &observed), Recovery::WaitWindDown { .. }),
                    "{:?}, {observed:?}",
                    c.doc
                );
            }
        }
    }

    #[test]
    fn the_pending_snapshot_is_kept_only_while_it_may_be_used() {
        for c in table() {
            let keeps = keeps_pending_snapshot(&c.rec, &c.observed);
            let uses = matches!(
                c.expected,
                Recovery::CommitSnapshot { .. } | Recovery::Revive { .. }
            );
            assert!(!uses || keeps, "{:?}: {:?}", c.doc, c.expected);
            if matches!(
                c.expected,
                Recovery::Adopt { .. }
                    | Recovery::AdoptPaused { .. }
                    | Recovery::WaitWindDown { .. }
            ) {
                assert!(!keeps, "{:?}: {:?}", c.doc, c.expected);
            }
        }
    }

    /// Every row of the recovery table in docs/failure-modes.md has a case
    /// above: a row added or reworded there must be planned (and tested)
    /// here too.
    #[test]
    fn every_row_of_the_documented_table_is_a_case() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/failure-modes.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let rows: Vec<(String, String)> = doc
            .lines()
            .skip_while(|l| !l.starts_with("| record says | sandbox |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].to_string(), cells[2].to_string())
            })
            .collect();
        assert!(
            rows.len() >= 13,
            "the recovery table was not found: {rows:?}"
        );
        let cases: Vec<(&str, &str)> = table().iter().filter_map(|c| c.doc).collect();
        for (record, sandbox) in &rows {
            assert!(
                cases.contains(&(record.as_str(), sandbox.as_str())),
                "docs/failure-modes.md: no planned case for the row {record} | {sandbox}"
            );
        }
    }
}
