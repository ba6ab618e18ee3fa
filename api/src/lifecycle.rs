//! The lifecycle operations on an existing actor and the one table of the
//! statuses each is allowed from. The router parses requests into an
//! [`Op`], the daemon's actor service checks it against this table, and
//! the 409 a refused operation answers names what the table allows, so the
//! three can never disagree.

use std::fmt;

use crate::types::ActorStatus;

/// A lifecycle operation on an existing actor (creating one is not: it
/// applies to an id that has no record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `POST …/start`: boot from the image.
    Start,
    /// `POST …/suspend`: checkpoint to a snapshot, sandbox gone.
    Suspend,
    /// `POST …/resume`: restore the latest snapshot, or unfreeze a
    /// paused sandbox.
    Resume,
    /// `POST …/pause`: freeze the sandbox, memory kept.
    Pause,
    /// `POST …/stop`: end the sandbox, keep record and snapshots.
    Stop,
    /// `DELETE /v1/actors/{id}`: end everything and forget the actor.
    Delete,
}

/// One status an operation is allowed from, with the condition, if any,
/// that the daemon checks beyond the status (named in the 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// The status.
    pub status: ActorStatus,
    /// What else must hold, in words; `None` when the status is enough.
    pub condition: Option<&'static str>,
}

const fn from(status: ActorStatus) -> Allowed {
    Allowed {
        status,
        condition: None,
    }
}

/// The transition table: the statuses each operation is allowed from.
const TABLE: [(Op, &[Allowed]); 6] = {
    use ActorStatus::*;
    [
        (Op::Start, &[from(Created), from(Stopped), from(Failed)]),
        (Op::Suspend, &[from(Running), from(Paused)]),
        (Op::Pause, &[from(Running)]),
        (
            Op::Resume,
            &[
                from(Paused),
                from(Suspended),
                Allowed {
                    status: Failed,
                    condition: Some("with a committed snapshot and no sandbox"),
                },
            ],
        ),
        (
            Op::Stop,
            &[
                from(Running),
                from(Paused),
                from(Suspended),
                Allowed {
                    status: Failed,
                    condition: Some("with a sandbox still on record"),
                },
            ],
        ),
        (
            Op::Delete,
            &[
                from(Created),
                from(Starting),
                from(Running),
                from(Pausing),
                from(Paused),
                from(Unpausing),
                from(Suspending),
                from(Suspended),
                from(Resuming),
                from(Stopped),
                from(Failed),
            ],
        ),
    ]
};

impl Op {
    /// Every operation.
    pub const ALL: [Op; 6] = [
        Op::Start,
        Op::Suspend,
        Op::Resume,
        Op::Pause,
        Op::Stop,
        Op::Delete,
    ];

    /// The name in paths, logs and metrics, e.g. `suspend`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Suspend => "suspend",
            Op::Resume => "resume",
            Op::Pause => "pause",
            Op::Stop => "stop",
            Op::Delete => "delete",
        }
    }

    /// The operation a `POST /v1/actors/{id}/{action}` names (delete is
    /// the `DELETE` method, not an action).
    pub fn from_action(action: &str) -> Option<Op> {
        Op::ALL
            .into_iter()
            .find(|op| *op != Op::Delete && op.as_str() == action)
    }

    /// The statuses this operation is allowed from (its row of the table).
    pub fn allowed_from(self) -> &'static [Allowed] {
        TABLE
            .iter()
            .find(|(op, _)| *op == self)
            .map(|(_, allowed)| *allowed)
            .unwrap_or(&[])
    }

    /// True when the table allows this operation from `status` (the
    /// daemon still checks the conditions some rows carry).
    pub fn allows(self, status: ActorStatus) -> bool {
        self.allowed_from().iter().any(|a| a.status == status)
    }

    /// What the operation needs, for the 409: `CREATED, STOPPED or FAILED`.
    pub fn needs(self) -> String {
        let allowed = self.allowed_from();
        if allowed.len() == ActorStatus::ALL.len() {
            return "any status".to_string();
        }
        let words: Vec<String> = allowed
            .iter()
            .map(|a| match a.condition {
                Some(c) => format!("{} {c}", a.status),
                None => a.status.to_string(),
            })
            .collect();
        match words.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            Some((last, _)) => last.clone(),
            None => "nothing".to_string(),
        }
    }

    /// stop and delete end the sandbox whatever state it is in: they are
    /// the way out for an actor whose state runsc cannot tell yet.
    pub fn ends_any_sandbox(self) -> bool {
        matches!(self, Op::Stop | Op::Delete)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ActorStatus::*;

    /// Every status × operation, written out: a change to the table must
    /// change this test too.
    #[test]
    fn every_status_and_operation() {
        #[rustfmt::skip]
        let expected: [(ActorStatus, [bool; 6]); 11] = [
            //            start  suspend resume pause  stop   delete
            (Created,    [true,  false,  false, false, false, true]),
            (Starting,   [false, false,  false, false, false, true]),
            (Running,    [false, true,   false, true,  true,  true]),
            (Pausing,    [false, false,  false, false, false, true]),
            (Paused,     [false, true,   true,  false, true,  true]),
            (Unpausing,  [false, false,  false, false, false, true]),
            (Suspending, [false, false,  false, false, false, true]),
            (Suspended,  [false, false,  true,  false, true,  true]),
            (Resuming,   [false, false,  false, false, false, true]),
            (Stopped,    [true,  false,  false, false, false, true]),
            (Failed,     [true,  false,  true,  false, true,  true]),
        ];
        for (status, row) in expected {
            for (op, want) in Op::ALL.into_iter().zip(row) {
                assert_eq!(op.allows(status), want, "{op} from {status}");
            }
        }
    }

    #[test]
    fn the_409_names_what_the_table_allows() {
        assert_eq!(Op::Start.needs(), "CREATED, STOPPED or FAILED");
        assert_eq!(Op::Suspend.needs(), "RUNNING or PAUSED");
        assert_eq!(Op::Pause.needs(), "RUNNING");
        assert_eq!(
            Op::Resume.needs(),
            "PAUSED, SUSPENDED or FAILED with a committed snapshot and no sandbox"
        );
        assert_eq!(
            Op::Stop.needs(),
            "RUNNING, PAUSED, SUSPENDED or FAILED with a sandbox still on record"
        );
        assert_eq!(Op::Delete.needs(), "any status");
    }

    #[test]
    fn actions_are_parsed_from_their_names_but_delete_is_a_method() {
        for op in [Op::Start, Op::Suspend, Op::Resume, Op::Pause, Op::Stop] {
            assert_eq!(Op::from_action(op.as_str()), Some(op));
        }
        assert_eq!(Op::from_action("delete"), None);
        assert_eq!(Op::from_action("Start"), None);
    }

    #[test]
    fn only_stop_and_delete_end_any_sandbox() {
        let ends: Vec<Op> = Op::ALL
            .into_iter()
            .filter(|o| o.ends_any_sandbox())
            .collect();
        assert_eq!(ends, [Op::Stop, Op::Delete]);
    }
}
