//! Downlink command rules that are neither I/O nor wiring: which topic each kind of
//! command is published on, whether a robot's answer proves the command was carried
//! out, and what the answer says about the robot's state.
//!
//! An emergency stop is the command these rules exist for. TonyPi robots stop only on
//! their emergency-stop topics (`tonypi/emergency_stop/{robot_id}` and `…/broadcast`);
//! on their command topic an `emergency_stop` is an unknown command that they answer
//! with a generic "executed". So the topic follows from the kind, never from the route
//! it came through, and an emergency stop counts as confirmed only by the robot's
//! emergency-stop answer (README, "Fleet: commands").

use crate::config::CommandTopics;
use crate::model::CommandReply;

/// The command name an emergency stop carries in `type` and `command`.
pub const EMERGENCY_STOP: &str = "emergency_stop";
/// The command name that clears an emergency stop.
pub const RESUME: &str = "resume";
/// The command name of a settings update (`PUT /api/v1/management/robots/{id}/config`).
pub const CONFIG: &str = "config";

/// What a command does, as far as its topic and its confirmation go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    EmergencyStop,
    Resume,
    /// Settings for the robot, on its config topic (`tonypi/config/{robot_id}`).
    Config,
    Other,
}

impl Kind {
    pub fn of(command: &str) -> Self {
        match command {
            EMERGENCY_STOP => Kind::EmergencyStop,
            RESUME => Kind::Resume,
            CONFIG => Kind::Config,
            _ => Kind::Other,
        }
    }
}

/// Whom a command is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Robot(&'a str),
    Broadcast,
}

/// The topic a command of `kind` for `target` is published on. A broadcast resume (or
/// config) goes to the command broadcast topic.
pub fn topic(topics: &CommandTopics, kind: Kind, target: Target<'_>) -> String {
    let template = match (kind, target) {
        (Kind::EmergencyStop, Target::Robot(_)) => &topics.emergency_stop,
        (Kind::EmergencyStop, Target::Broadcast) => &topics.emergency_stop_broadcast,
        (Kind::Resume, Target::Robot(_)) => &topics.resume,
        (Kind::Config, Target::Robot(_)) => &topics.config,
        (Kind::Other, Target::Robot(_)) => &topics.command,
        (_, Target::Broadcast) => &topics.broadcast,
    };
    match target {
        Target::Robot(id) => template.replace("{robot_id}", id),
        Target::Broadcast => template.clone(),
    }
}

/// What a robot's answer does to the command it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The robot says it carried the command out.
    Acknowledged,
    /// The robot says it did not (`success: false`, or a stop answer reporting it is
    /// not stopped).
    Failed,
    /// Not an answer to this command (another type, or no `success`): nothing changes.
    NotAnAnswer,
}

impl Verdict {
    /// The `commands.status` this verdict sets.
    pub fn status(self) -> Option<&'static str> {
        match self {
            Verdict::Acknowledged => Some("acknowledged"),
            Verdict::Failed => Some("failed"),
            Verdict::NotAnAnswer => None,
        }
    }
}

/// Judges `reply` as the answer to a command named `command`.
///
/// - An answer that names another type (`type: "move"` for a `stop`) answers something
///   else. A generic answer without a type is taken for the command it names by id,
///   except for an emergency stop, which only the robot's emergency-stop answer
///   (`type: "emergency_stop"`) confirms.
/// - `success: true` acknowledges (for an emergency stop only if `state.emergency_stopped`
///   is not `false`); `success: false` fails; no `success` proves nothing.
pub fn judge(command: &str, reply: &CommandReply) -> Verdict {
    let kind = Kind::of(command);
    match reply.kind.as_deref() {
        Some(k) if k != command => return Verdict::NotAnAnswer,
        None if kind == Kind::EmergencyStop => return Verdict::NotAnAnswer,
        _ => {}
    }
    match reply.success {
        Some(false) => Verdict::Failed,
        Some(true) if kind == Kind::EmergencyStop && reply.emergency_stopped == Some(false) => {
            Verdict::Failed
        }
        Some(true) => Verdict::Acknowledged,
        None => Verdict::NotAnAnswer,
    }
}

/// The robot status an answer proves, whatever command it answers: a successful
/// emergency-stop answer means the robot is `emergency_stopped`, a successful resume
/// answer that it is `online` again.
pub fn status_after(reply: &CommandReply) -> Option<&'static str> {
    if reply.success != Some(true) {
        return None;
    }
    match reply.kind.as_deref() {
        Some(EMERGENCY_STOP) if reply.emergency_stopped != Some(false) => Some("emergency_stopped"),
        Some(RESUME) if reply.emergency_stopped != Some(true) => Some("online"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reply(kind: Option<&str>, success: Option<bool>, stopped: Option<bool>) -> CommandReply {
        CommandReply {
            command_id: "c1".into(),
            kind: kind.map(str::to_string),
            success,
            emergency_stopped: stopped,
            payload: json!({}),
        }
    }

    #[test]
    fn each_kind_has_its_topic() {
        let t = CommandTopics::tonypi();
        let robot = Target::Robot("tonypi_1");
        assert_eq!(
            topic(&t, Kind::EmergencyStop, robot),
            "tonypi/emergency_stop/tonypi_1"
        );
        assert_eq!(
            topic(&t, Kind::EmergencyStop, Target::Broadcast),
            "tonypi/emergency_stop/broadcast"
        );
        assert_eq!(topic(&t, Kind::Resume, robot), "tonypi/commands/tonypi_1");
        assert_eq!(topic(&t, Kind::Other, robot), "tonypi/commands/tonypi_1");
        assert_eq!(topic(&t, Kind::Config, robot), "tonypi/config/tonypi_1");
        assert_eq!(
            topic(&t, Kind::Other, Target::Broadcast),
            "tonypi/commands/broadcast"
        );
        let d = CommandTopics::devices();
        assert_eq!(
            topic(&d, Kind::EmergencyStop, Target::Robot("gw-7")),
            "devices/gw-7/emergency_stop"
        );
    }

    #[test]
    fn only_the_stop_answer_confirms_an_emergency_stop() {
        let stop = EMERGENCY_STOP;
        // The robot's emergency-stop answer, with and without its state.
        assert_eq!(
            judge(stop, &reply(Some(stop), Some(true), Some(true))),
            Verdict::Acknowledged
        );
        assert_eq!(
            judge(stop, &reply(Some(stop), Some(true), None)),
            Verdict::Acknowledged
        );
        // The generic "Command emergency_stop executed" a robot gives on its command topic.
        assert_eq!(
            judge(stop, &reply(None, Some(true), None)),
            Verdict::NotAnAnswer
        );
        assert_eq!(
            judge(stop, &reply(Some("move"), Some(true), None)),
            Verdict::NotAnAnswer
        );
        assert_eq!(
            judge(stop, &reply(Some(stop), Some(false), None)),
            Verdict::Failed
        );
        assert_eq!(
            judge(stop, &reply(Some(stop), Some(true), Some(false))),
            Verdict::Failed,
            "a robot that says it is not stopped did not stop"
        );
        assert_eq!(
            judge(stop, &reply(Some(stop), None, None)),
            Verdict::NotAnAnswer
        );
    }

    #[test]
    fn other_commands_need_success_and_no_other_type() {
        assert_eq!(
            judge("move", &reply(None, Some(true), None)),
            Verdict::Acknowledged
        );
        assert_eq!(
            judge("move", &reply(Some("move"), Some(false), None)),
            Verdict::Failed
        );
        assert_eq!(
            judge(RESUME, &reply(Some("status_request"), Some(true), None)),
            Verdict::NotAnAnswer
        );
        assert_eq!(
            judge("move", &reply(None, None, None)),
            Verdict::NotAnAnswer
        );
        // A robot that is stopped refuses other commands with a generic failure.
        assert_eq!(
            judge("move", &reply(None, Some(false), None)),
            Verdict::Failed
        );
    }

    #[test]
    fn answers_prove_the_robot_state() {
        assert_eq!(
            status_after(&reply(Some(EMERGENCY_STOP), Some(true), Some(true))),
            Some("emergency_stopped")
        );
        assert_eq!(
            status_after(&reply(Some(EMERGENCY_STOP), Some(false), None)),
            None
        );
        assert_eq!(
            status_after(&reply(Some(RESUME), Some(true), Some(false))),
            Some("online")
        );
        assert_eq!(status_after(&reply(None, Some(true), None)), None);
    }
}
