//! Whether the user mentioned a date: the forms people write one in.
//!
//! A model that invents a date (usually today's) for a user who gave none is the failure
//! this catches, so the test is whether the user's words hold *this* date — `2025-07-01`,
//! `July 1`, `1st of July`, `7/1`, `1.7.` — or a relative one (`today`, `tomorrow`, `next
//! Friday`, `in 3 days`), which is taken on trust: resolving it needs a calendar and the
//! user's today, and a model that had them did the work.

/// Whether `text` (normalized: lowercase, single spaces) mentions the date `iso`
/// (`YYYY-MM-DD`).
pub(super) fn mentioned(text: &str, iso: &str) -> bool {
    let Some((month, day)) = parse(iso) else {
        return false;
    };
    if text.contains(iso) {
        return true;
    }
    let tokens: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '!' | '?' | '(' | ')' | '"'))
        .map(|t| t.trim_end_matches(['.', ':']))
        .filter(|t| !t.is_empty())
        .collect();
    tokens.iter().any(|t| relative(t))
        || tokens
            .windows(2)
            .any(|w| matches!(w, ["in", n] if n.chars().all(|c| c.is_ascii_digit()) || *n == "a"))
        || tokens.iter().enumerate().any(|(i, t)| {
            month_of(t) == Some(month) && {
                let from = i.saturating_sub(3);
                let to = (i + 4).min(tokens.len());
                tokens[from..to]
                    .iter()
                    .any(|near| day_of(near) == Some(day))
            }
        })
        || tokens.iter().any(|t| numeric(t, month, day))
}

/// Month and day of `YYYY-MM-DD`.
fn parse(iso: &str) -> Option<(u32, u32)> {
    let mut parts = iso.split('-');
    let (_year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    let month: u32 = month.parse().ok()?;
    let day: u32 = day.parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some((month, day))
}

fn relative(token: &str) -> bool {
    const WORDS: [&str; 24] = [
        "today",
        "tonight",
        "tomorrow",
        "weekend",
        "week",
        "month",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "mon",
        "tue",
        "tues",
        "wed",
        "thu",
        "thur",
        "thurs",
        "fri",
        "sat",
        "sun",
        "fortnight",
    ];
    WORDS.contains(&token)
}

fn month_of(token: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    MONTHS
        .iter()
        .position(|m| token == *m || token == &m[..3] || (token == "sept" && *m == "september"))
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// `5`, `05`, `5th`, `1st`, `fifth`.
fn day_of(token: &str) -> Option<u32> {
    const ORDINALS: [&str; 31] = [
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "eleventh",
        "twelfth",
        "thirteenth",
        "fourteenth",
        "fifteenth",
        "sixteenth",
        "seventeenth",
        "eighteenth",
        "nineteenth",
        "twentieth",
        "twenty-first",
        "twenty-second",
        "twenty-third",
        "twenty-fourth",
        "twenty-fifth",
        "twenty-sixth",
        "twenty-seventh",
        "twenty-eighth",
        "twenty-ninth",
        "thirtieth",
        "thirty-first",
    ];
    if let Some(i) = ORDINALS.iter().position(|o| *o == token) {
        return u32::try_from(i + 1).ok();
    }
    let digits = token
        .strip_suffix("st")
        .or_else(|| token.strip_suffix("nd"))
        .or_else(|| token.strip_suffix("rd"))
        .or_else(|| token.strip_suffix("th"))
        .unwrap_or(token);
    digits.parse::<u32>().ok().filter(|d| (1..=31).contains(d))
}

/// `7/1`, `1/7/2025`, `01.07.`: month and day either way round.
fn numeric(token: &str, month: u32, day: u32) -> bool {
    let Some(separator) = ['/', '.'].into_iter().find(|s| token.contains(*s)) else {
        return false;
    };
    let mut parts = token.split(separator).filter(|p| !p.is_empty());
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else {
        return false;
    };
    (a == month && b == day) || (a == day && b == month)
}

#[cfg(test)]
mod tests {
    use super::mentioned;

    #[test]
    fn a_date_is_found_in_the_forms_people_write() {
        for text in [
            "leaving 2025-07-01",
            "on july 1",
            "on the 1st of july",
            "jul 1st please",
            "1 july",
            "7/1",
            "1.7.",
            "01/07/2025",
        ] {
            assert!(mentioned(text, "2025-07-01"), "{text}");
        }
    }

    #[test]
    fn relative_dates_are_taken_on_trust() {
        for text in [
            "tomorrow",
            "next friday",
            "in 3 days",
            "this weekend",
            "in a week",
        ] {
            assert!(mentioned(text, "2025-07-01"), "{text}");
        }
    }

    #[test]
    fn an_invented_date_is_not_a_mention() {
        for text in [
            "flights from lisbon to new york for two",
            "sometime in july",
            "july 2",
            "i have 1 bag and 7 kids",
            "may i fly to march air reserve base",
        ] {
            assert!(!mentioned(text, "2025-07-01"), "{text}");
        }
        assert!(!mentioned("tomorrow", "not a date"));
    }
}
