//! Grounding: a parameter marked `grounded = true` takes only a value the user said.
//!
//! Models fill a missing number with a plausible guess — small local models almost always
//! do, large ones when the instructions are long — and a guessed income or amount turns a
//! clarification question into a confident wrong answer. Instructions ("never guess") do
//! not hold reliably, so the engine checks: a grounded value the model passes must appear
//! in the user's own messages in this thread, or it is treated as not given and filled from
//! the pending call or a slot, or asked for.
//!
//! The check is deliberately literal and errs towards asking: `$12,000`, `12000`, `12k`,
//! `12 thousand`, `5%` (as 5 or 0.05) and English number words (`five thousand`, `two
//! million`, `forty-five`) are recognised; a value the model worked out from them
//! (`$60,000 a year` passed as a monthly 5000) is not. Strings must appear as whole words,
//! case and spacing aside.

use serde_json::Value;

use crate::thread::{Message, MessageKind};

/// What the user has said in a thread, indexed for [`Said::stated`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Said {
    numbers: Vec<f64>,
    text: String,
}

impl Said {
    /// Indexes the user's messages among `messages`.
    #[must_use]
    pub fn from_messages(messages: &[Message]) -> Self {
        let mut said = Self::default();
        for message in messages {
            if let MessageKind::User { text } = &message.kind {
                said.add(text);
            }
        }
        said
    }

    /// Indexes one more thing the user said.
    pub fn add(&mut self, text: &str) {
        self.numbers.extend(numbers(text));
        self.numbers.extend(number_words(text));
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(&normalize(text));
    }

    /// Whether the user stated `value`. Values grounding cannot judge (booleans, arrays,
    /// objects) count as stated; the loader keeps `grounded` off such parameters.
    #[must_use]
    pub fn stated(&self, value: &Value) -> bool {
        match value {
            Value::Number(n) => n.as_f64().is_some_and(|n| {
                self.numbers
                    .iter()
                    .any(|said| (said - n).abs() <= 1e-9 * n.abs().max(1.0))
            }),
            Value::String(s) => {
                let wanted = normalize(s);
                !wanted.is_empty() && contains_word(&self.text, &wanted)
            }
            _ => true,
        }
    }
}

/// Lowercase with runs of whitespace collapsed to one space.
fn normalize(text: &str) -> String {
    text.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `needle` occurs in `haystack` with no letter or digit glued to either end.
fn contains_word(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Every number in `text`, with the forms a user means by it: `12,000` → 12000, `12k` →
/// 12 and 12000, `5%` → 5 and 0.05, `-3` → -3.
fn numbers(text: &str) -> Vec<f64> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && is_word_byte(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        let (digits, end) = scan_number(bytes, start);
        i = end;
        let Ok(mut value) = digits.parse::<f64>() else {
            continue;
        };
        // A minus sign, unless it joins two numbers ("2020-2024").
        if start > 0 && bytes[start - 1] == b'-' && (start < 2 || !is_word_byte(bytes[start - 2])) {
            value = -value;
        }
        found.push(value);
        if let Some(scale) = scale_after(&text[end..]) {
            found.push(value * scale);
        }
    }
    found
}

/// Numbers written in English words: "five thousand", "two million", "twelve hundred",
/// "one hundred and five", "forty-five". Each run of number words is one number.
fn number_words(text: &str) -> Vec<f64> {
    let mut found = Vec::new();
    let (mut total, mut current, mut any) = (0.0_f64, 0.0_f64, false);
    let lower = text.to_lowercase();
    let words = lower
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty());
    for word in words {
        match word_value(word) {
            Some(Word::Unit(n)) => {
                current += n;
                any = true;
            }
            Some(Word::Hundred) if any => current = current.max(1.0) * 100.0,
            Some(Word::Scale(scale)) if any => {
                total += current.max(1.0) * scale;
                current = 0.0;
            }
            // "one hundred and five": `and` joins number words, nothing else.
            None if any && word == "and" => {}
            _ => {
                if any {
                    found.push(total + current);
                }
                (total, current, any) = (0.0, 0.0, false);
            }
        }
    }
    if any {
        found.push(total + current);
    }
    found
}

enum Word {
    Unit(f64),
    Hundred,
    Scale(f64),
}

fn word_value(word: &str) -> Option<Word> {
    const UNITS: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if let Some(n) = UNITS.iter().position(|u| *u == word) {
        return Some(Word::Unit(f64::from(u8::try_from(n).unwrap_or(0))));
    }
    if let Some(n) = TENS.iter().position(|t| *t == word) {
        return Some(Word::Unit(
            f64::from(u8::try_from(n).unwrap_or(0) + 2) * 10.0,
        ));
    }
    match word {
        "hundred" => Some(Word::Hundred),
        "thousand" => Some(Word::Scale(1e3)),
        "million" => Some(Word::Scale(1e6)),
        "billion" => Some(Word::Scale(1e9)),
        _ => None,
    }
}

/// The digits of the number starting at `start` (group separators dropped) and where it
/// ends. A comma is a group separator only before exactly three digits.
fn scan_number(bytes: &[u8], start: usize) -> (String, usize) {
    let mut digits = String::new();
    let mut i = start;
    let mut seen_point = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() {
            digits.push(char::from(b));
            i += 1;
        } else if b == b','
            && !seen_point
            && bytes
                .get(i + 1..i + 4)
                .is_some_and(|g| g.iter().all(u8::is_ascii_digit))
            && !bytes.get(i + 4).is_some_and(u8::is_ascii_digit)
        {
            i += 1;
        } else if b == b'.' && !seen_point && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            seen_point = true;
            digits.push('.');
            i += 1;
        } else {
            break;
        }
    }
    (digits, i)
}

/// The multiplier a suffix right after a number gives it: `k`, `m`, `%`, or a word such as
/// "thousand".
fn scale_after(rest: &str) -> Option<f64> {
    let glued = |suffix: char| {
        let mut chars = rest.chars();
        chars
            .next()
            .is_some_and(|c| c.eq_ignore_ascii_case(&suffix))
            && !chars.next().is_some_and(char::is_alphanumeric)
    };
    if rest.starts_with('%') {
        return Some(0.01);
    }
    if glued('k') {
        return Some(1e3);
    }
    if glued('m') {
        return Some(1e6);
    }
    let word: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_lowercase();
    match word.as_str() {
        "k" | "thousand" => Some(1e3),
        "million" | "mn" => Some(1e6),
        "billion" | "bn" => Some(1e9),
        "percent" => Some(0.01),
        _ => None,
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_'
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn said(text: &str) -> Said {
        let mut said = Said::default();
        said.add(text);
        said
    }

    #[test]
    fn numbers_are_found_in_the_forms_people_write_them() {
        let s = said("I want $12,000 by June; I earn 4.5k, save 12 thousand and pay 5% tax.");
        for stated in [12000.0, 4.5, 4500.0, 12.0, 5.0, 0.05] {
            assert!(s.stated(&json!(stated)), "{stated} was said");
        }
        for unsaid in [1000.0, 45.0, 120.0, 4000.0] {
            assert!(!s.stated(&json!(unsaid)), "{unsaid} was not said");
        }
        assert!(s.stated(&json!(12000)), "integers compare with floats");
    }

    #[test]
    fn numbers_written_as_words_are_found() {
        let s = said(
            "I make five thousand a month, want two million, spent twelve hundred, \
             am forty-five, and paid one hundred and five.",
        );
        for stated in [5000.0, 2_000_000.0, 1200.0, 45.0, 105.0] {
            assert!(s.stated(&json!(stated)), "{stated} was said");
        }
        for unsaid in [5.0, 2.0, 1000.0, 100.0] {
            assert!(!s.stated(&json!(unsaid)), "{unsaid} was not said as such");
        }
        assert!(
            said("one hundred twenty three thousand four hundred fifty six")
                .stated(&json!(123_456))
        );
        assert!(
            !said("a thousand thanks").stated(&json!(1000)),
            "a scale needs a number"
        );
    }

    #[test]
    fn a_comma_groups_digits_only_in_threes() {
        assert!(said("1,234,567").stated(&json!(1_234_567)));
        let list = said("options 1,23");
        assert!(list.stated(&json!(1)) && list.stated(&json!(23)));
        assert!(!list.stated(&json!(123)));
    }

    #[test]
    fn negative_numbers_and_ranges() {
        let s = said("the balance is -250 and the years 2020-2024");
        assert!(s.stated(&json!(-250)));
        assert!(s.stated(&json!(2024)), "a hyphen after a number is a range");
        assert!(!s.stated(&json!(-2024)));
    }

    #[test]
    fn digits_inside_words_are_not_numbers() {
        let s = said("model gpt4 and id a12");
        assert!(!s.stated(&json!(4)));
        assert!(!s.stated(&json!(12)));
    }

    #[test]
    fn strings_must_appear_as_whole_words() {
        let s = said("My risk tolerance is Low.\nSend it to  Jane   Doe please");
        assert!(s.stated(&json!("low")));
        assert!(s.stated(&json!("jane doe")));
        assert!(!s.stated(&json!("lo")), "part of a word is not the word");
        assert!(!s.stated(&json!("high")));
        assert!(!s.stated(&json!("  ")), "an empty string is never stated");
    }

    #[test]
    fn only_the_users_messages_count() {
        let message = |kind| Message {
            id: "msg_1".into(),
            run_id: None,
            created_at: 0,
            kind,
            metadata: crate::thread::Metadata::default(),
        };
        let messages = vec![
            message(MessageKind::User {
                text: "save 300".into(),
            }),
            message(MessageKind::Assistant {
                text: "maybe 900?".into(),
            }),
        ];
        let s = Said::from_messages(&messages);
        assert!(s.stated(&json!(300)));
        assert!(
            !s.stated(&json!(900)),
            "the assistant's words are not the user's"
        );
    }

    #[test]
    fn values_grounding_cannot_judge_pass() {
        let s = said("");
        assert!(s.stated(&json!(true)));
        assert!(s.stated(&json!([1, 2])));
    }
}
