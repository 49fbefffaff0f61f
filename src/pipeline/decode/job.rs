//! `job` routes (`tonypi/job/{rid}`, `devices/{id}/jobs`): one job event (the state machine is `db::writes::jobs`).
//!
//! Status words from every robot version map onto five actions; percent is taken as
//! sent (`progress_percent` or `percent`), else from items done of total, else from
//! time elapsed of estimated. The sink applies the events per robot in receive order.

use super::Message;
use super::json::{num_field, str_field};
use super::time::timestamp;
use super::tree::Json;
use crate::model::{Decoded, JobAction, JobEvent, Reason, TsSource, Unusable};

pub(super) fn decode(msg: &Message, out: &mut Decoded) -> Result<(), Unusable> {
    let obj = msg.obj;
    let status = str_field(obj, &["status", "event"])
        .unwrap_or_default()
        .to_ascii_lowercase();
    let action = match status.as_str() {
        "started" | "start" => JobAction::Start,
        "in_progress" | "working" | "active" | "progress" => JobAction::Progress,
        "completed" | "done" | "complete" => JobAction::Complete,
        "cancelled" | "canceled" | "stopped" | "cancel" => JobAction::Cancel,
        "failed" | "fail" | "error" => JobAction::Fail,
        "" => {
            return Err(Unusable::new(
                Reason::InvalidValue,
                "job event without status",
            ));
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(Unusable::new(
                Reason::InvalidValue,
                format!("unknown job status {shown:?}"),
            ));
        }
    };
    let int = |keys: &[&str]| num_field(obj, keys).map(|x| x as i64);
    let items_done = int(&["items_done"]);
    let items_total = int(&["items_total"]);
    let elapsed = num_field(obj, &["elapsed_time"]);
    let estimated = num_field(obj, &["estimated_duration"]);
    let percent = num_field(obj, &["progress_percent", "percent"])
        .or_else(|| match (items_done, items_total) {
            (Some(d), Some(t)) if t > 0 => Some(d as f64 * 100.0 / t as f64),
            _ => None,
        })
        .or_else(|| match (elapsed, estimated) {
            (Some(e), Some(t)) if t > 0.0 => Some((e * 100.0 / t).min(100.0)),
            _ => None,
        })
        .or((action == JobAction::Complete).then_some(100.0));
    let start_time = match obj.get("start_time") {
        Some(v) => match timestamp(Some(v), msg.received_at, msg.settings) {
            (t, TsSource::Payload) => Some(t),
            _ => None,
        },
        None => None,
    };
    let success = obj.get("success").and_then(Json::as_bool).or(match action {
        JobAction::Complete => Some(true),
        JobAction::Fail => Some(false),
        _ => None,
    });
    out.job = Some(JobEvent {
        action,
        ts: out.ts,
        start_time,
        task_name: str_field(obj, &["task_name", "task", "job_name"]),
        phase: str_field(obj, &["phase"]),
        percent,
        items_done,
        items_total,
        elapsed,
        estimated,
        action_duration: num_field(obj, &["action_duration"]),
        success,
        reason: str_field(obj, &["reason", "cancel_reason"]),
        last_item: obj
            .get("last_item")
            .filter(|v| !v.is_null())
            .map(Json::to_value),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::run;
    use crate::model::{JobAction, Reason};

    #[test]
    fn job_field_drift_is_accepted() {
        let d = run(
            "tonypi/job/tonypi_1",
            r#"{"status":"working","percent":13.3,"items_done":2,"items_total":15,"history":[1,2]}"#,
        )
        .unwrap();
        let job = d.job.unwrap();
        assert_eq!(job.action, JobAction::Progress);
        assert_eq!(job.percent, Some(13.3));
        let d = run(
            "tonypi/job/tonypi_1",
            r#"{"status":"canceled","cancel_reason":"battery low"}"#,
        )
        .unwrap();
        assert_eq!(d.job.unwrap().reason.as_deref(), Some("battery low"));
        let e = run("tonypi/job/tonypi_1", r#"{"status":"teleporting"}"#).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidValue);
    }

    #[test]
    fn percent_falls_back_to_items_then_time() {
        let job = |p: &str| run("tonypi/job/r1", p).unwrap().job.unwrap();
        assert_eq!(
            job(r#"{"status":"working","items_done":3,"items_total":12}"#).percent,
            Some(25.0)
        );
        assert_eq!(
            job(r#"{"status":"working","elapsed_time":30,"estimated_duration":60}"#).percent,
            Some(50.0)
        );
        let done = job(r#"{"status":"done"}"#);
        assert_eq!((done.percent, done.success), (Some(100.0), Some(true)));
    }
}
