//! Validation of a rule's `schedule`: weekdays and a UTC hour range (which may wrap past
//! midnight).

use std::collections::BTreeSet;
use std::ops::Range;

use super::validate::Validator;
use crate::policy::file;
use crate::policy::model::Schedule;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Validator<'_> {
    pub(super) fn schedule(
        &mut self,
        raw: &file::ScheduleFile,
        at: Range<usize>,
    ) -> Option<Schedule> {
        let mut days = BTreeSet::new();
        match &raw.days {
            None => days.extend(0..7u8),
            Some(list) => {
                if list.is_empty() {
                    self.err(at, "schedule days = [] never applies");
                }
                for d in list {
                    let lower = d.get_ref().to_ascii_lowercase();
                    match DAYS.iter().position(|x| lower.starts_with(x) && (lower.len() == 3 || is_day_name(&lower))) {
                        Some(i) => {
                            days.insert(i as u8);
                        }
                        None => self.err(d.span(), format!("'{}' is not a weekday: expected mon, tue, wed, thu, fri, sat or sun", d.get_ref())),
                    }
                }
            }
        }
        let (from_minute, to_minute) = match &raw.hours {
            None => (0, 24 * 60),
            Some(h) => match parse_hours(h.get_ref()) {
                Ok(r) => r,
                Err(m) => {
                    self.err(h.span(), m);
                    return None;
                }
            },
        };
        Some(Schedule {
            days,
            from_minute,
            to_minute,
        })
    }
}

fn is_day_name(lower: &str) -> bool {
    matches!(
        lower,
        "monday" | "tuesday" | "wednesday" | "thursday" | "friday" | "saturday" | "sunday"
    )
}

/// "08:00-18:00" -> (480, 1080); "22:00-06:00" wraps past midnight; "00:00-24:00" is all day.
fn parse_hours(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("'{text}' is not an hour range such as \"08:00-18:00\" (UTC)");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let minute = |s: &str| -> Result<u32, String> {
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u32 = h.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (from, to) = (minute(a)?, minute(b)?);
    if from == to {
        return Err(format!("'{text}' is an empty hour range"));
    }
    if from == 24 * 60 {
        return Err(bad());
    }
    Ok((from, to))
}
