//! Rule schedules at evaluation time: whether a time falls in a rule's weekdays and UTC hours,
//! and the words reports use for a schedule.

use super::request::format_time;
use super::Miss;
use crate::policy::model::{Rule, Schedule};

/// Whether the rule has no schedule or its schedule includes `at`.
pub(super) fn schedule_contains_opt(rule: &Rule, at: i64) -> bool {
    rule.schedule
        .as_ref()
        .is_none_or(|s| schedule_contains(s, at))
}

/// Whether the rule's schedule includes `at`.
pub(super) fn schedule(rule: &Rule, at: i64) -> Result<(), Miss> {
    let Some(s) = &rule.schedule else {
        return Ok(());
    };
    if schedule_contains(s, at) {
        Ok(())
    } else {
        Err((
            "time_window",
            format!(
                "{} is outside the rule's schedule ({})",
                format_time(at),
                describe_schedule(s)
            ),
        ))
    }
}

/// Whether `at` (unix seconds) falls in the schedule (UTC; the day is the day of `at`).
pub fn schedule_contains(s: &Schedule, at: i64) -> bool {
    let days = at.div_euclid(86_400);
    let weekday = (days + 3).rem_euclid(7) as u8; // 1970-01-01 was a Thursday; 0 = Monday
    let minute = (at.rem_euclid(86_400) / 60) as u32;
    let in_hours = if s.from_minute < s.to_minute {
        minute >= s.from_minute && minute < s.to_minute
    } else {
        minute >= s.from_minute || minute < s.to_minute
    };
    s.days.contains(&weekday) && in_hours
}

/// "mon, tue 08:00-18:00 UTC".
pub fn describe_schedule(s: &Schedule) -> String {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let days = if s.days.len() == 7 {
        "every day".to_owned()
    } else {
        s.days
            .iter()
            .map(|d| NAMES[usize::from(*d)])
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
    format!("{days} {}-{} UTC", hm(s.from_minute), hm(s.to_minute))
}
