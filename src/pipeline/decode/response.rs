//! `response` routes (`tonypi/commands/response`, `tonypi/emergency_stop/response`): the
//! robot's answer to a command, as a log row (category `command` / `emergency`, level
//! ERROR when it failed), the reply matched to `commands` by id, and the robot status
//! the answer proves (`commands::status_after`: stopped, or resumed).

use serde_json::Value;

use super::Message;
use super::json::str_field;
use super::tree::Json;
use crate::commands;
use crate::model::{CommandReply, Decoded};

pub(super) fn decode(msg: &Message, out: &mut Decoded) {
    let category = msg
        .route
        .category
        .clone()
        .unwrap_or_else(|| "command".into());
    let success = msg.obj.get("success").and_then(Json::as_bool);
    let kind = str_field(msg.obj, &["type", "command"]).unwrap_or_else(|| category.clone());
    let message = str_field(msg.obj, &["message", "reason"]).unwrap_or_else(|| match success {
        Some(true) => format!("{kind} succeeded"),
        Some(false) => format!("{kind} failed"),
        None => format!("{kind} response"),
    });
    let level = if success == Some(false) {
        "ERROR"
    } else {
        "INFO"
    };
    let row = msg.log_row(out, level, category, kind, message);
    out.logs.push(row);
    let Some(command_id) = str_field(msg.obj, &["command_id", "id"]) else {
        return;
    };
    let reply = CommandReply {
        command_id,
        kind: str_field(msg.obj, &["type"]),
        success,
        emergency_stopped: msg
            .obj
            .get("state")
            .and_then(|s| s.get("emergency_stopped"))
            .and_then(Json::as_bool),
        payload: Value::Object(msg.obj.to_map(&[])),
    };
    // The answer proves the robot's state (an emergency stop carried out, a resume).
    if let Some(status) = commands::status_after(&reply) {
        let state = out.state.get_or_insert_with(Default::default);
        state.status = Some(status.to_string());
    }
    out.reply = Some(reply);
}

#[cfg(test)]
mod tests {
    use super::super::testing::run;

    #[test]
    fn responses_are_logged_by_outcome() {
        let d = run(
            "tonypi/emergency_stop/response",
            r#"{"robot_id":"tonypi_1","success":false,"message":"servo fault"}"#,
        )
        .unwrap();
        assert_eq!(
            (d.logs[0].category.as_str(), d.logs[0].level.as_str()),
            ("emergency", "ERROR")
        );
        let d = run(
            "tonypi/commands/response",
            r#"{"robot_id":"tonypi_1","success":true,"type":"move"}"#,
        )
        .unwrap();
        assert_eq!(d.logs[0].message, "move succeeded");
        assert_eq!(d.logs[0].category, "command");
        assert!(d.reply.is_none(), "no command_id: nothing to match");
        let d = run(
            "tonypi/commands/response",
            r#"{"robot_id":"tonypi_1","command_id":"cmd_7","success":false}"#,
        )
        .unwrap();
        let reply = d.reply.unwrap();
        assert_eq!(
            (reply.command_id.as_str(), reply.success),
            ("cmd_7", Some(false))
        );
    }

    #[test]
    fn a_stop_answer_sets_the_robot_stopped() {
        let d = run(
            "tonypi/emergency_stop/response",
            r#"{"robot_id":"tonypi_1","command_id":"c9","type":"emergency_stop","success":true,
                "state":{"emergency_stopped":true,"motors_stopped":true,"job_stopped":true}}"#,
        )
        .unwrap();
        let reply = d.reply.as_ref().unwrap();
        assert_eq!(
            (reply.kind.as_deref(), reply.emergency_stopped),
            (Some("emergency_stop"), Some(true))
        );
        assert_eq!(
            d.state.unwrap().status.as_deref(),
            Some("emergency_stopped")
        );
        let d = run(
            "tonypi/commands/response",
            r#"{"robot_id":"tonypi_1","command_id":"c9","success":true,"message":"Command emergency_stop executed"}"#,
        )
        .unwrap();
        assert!(d.state.is_none(), "a generic answer proves nothing");
    }
}
