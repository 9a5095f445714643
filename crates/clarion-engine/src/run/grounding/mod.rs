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
//! `12 thousand`, `5%` (as 5 or 0.05), English number words (`five thousand`, `two
//! million`, `forty-five`, `a dozen`) and counts of people said as phrases (`just me`,
//! `alone` → 1; `the two of us`, `a couple` → 2) are recognised; a value the model worked out from them
//! (`$60,000 a year` passed as a monthly 5000) is not — except as the answer to the
//! question that asked for it (below). Strings must appear as whole words, case, spacing
//! and `_`/`-` aside; a date (`format = "date"`) must be mentioned in a form people write
//! (`2025-07-01`, `July 1`, `1st of July`, `7/1`) or relatively (`tomorrow`, `next Friday`,
//! `in 3 days`, which is taken on trust).
//!
//! **One mention grounds one parameter.** "How long to save $12,000 at $1,000 a month?"
//! says `1,000` once; a model that passes it as both the savings and the income has
//! invented one of them, and nothing says which. So the values of one call are matched
//! to distinct mentions (a bipartite matching over every parameter whose value the user's
//! words could support, grounded or not): where a group of parameters competes for fewer
//! mentions than it has members, every grounded parameter of the group is asked for. A
//! user who says a figure twice ("I earn $1,000 and save $1,000") grounds it twice.
//!
//! **An answer to a question may be derived.** When the user was just asked for a
//! parameter, their next message is the answer, and the model's reading of it ("sixty k a
//! year" → 5000 a month) is accepted for that parameter — but only while that message holds
//! a number no other value of the call already took, so an answer that gave one figure
//! cannot ground two.

mod dates;

use serde_json::Value;

use crate::thread::{Message, MessageKind};

/// What grounding compares a value with: the kind of words it is found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A number: digits, `12k`, `5%`, number words.
    Number,
    /// A date (`format = "date"`, `YYYY-MM-DD`).
    Date,
    /// Any other string: whole words.
    Text,
    /// Booleans, arrays, objects: grounding cannot judge them, so they count as stated.
    Other,
}

impl ValueKind {
    /// The kind of values a parameter with `schema` takes.
    #[must_use]
    pub fn of(schema: &Value) -> Self {
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let only = |names: &[&str]| {
            !types.is_empty()
                && types.iter().all(|t| names.contains(t) || *t == "null")
                && types.iter().any(|t| *t != "null")
        };
        if only(&["number", "integer"]) {
            Self::Number
        } else if only(&["string"]) {
            if schema.get("format").and_then(Value::as_str) == Some("date") {
                Self::Date
            } else {
                Self::Text
            }
        } else {
            Self::Other
        }
    }
}

/// One value of a call, as grounding sees it.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The parameter.
    pub param: &'a str,
    /// The value the model passed.
    pub value: &'a Value,
    /// What kind of words would state it.
    pub kind: ValueKind,
    /// Whether the value must be stated (a parameter that is not grounded still takes its
    /// mention, so a grounded one cannot share it).
    pub grounded: bool,
    /// Whether the user was just asked for this parameter (their last message answers).
    pub asked: bool,
}

/// A number the user wrote once, with every value it may mean (`12k` is 12 or 12,000).
#[derive(Debug, Clone, PartialEq)]
struct Mention {
    values: Vec<f64>,
}

/// What the user has said in a thread, indexed for [`Said::unstated`].
///
/// The index grows with the thread: [`Said::catch_up`] reads only the messages appended
/// since its last call, so a run on a long thread does not re-parse every user message
/// for each grounded call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Said {
    numbers: Vec<Mention>,
    /// Where the mentions of the user's latest message start in `numbers`.
    latest: usize,
    /// Every user message, normalized, one per line.
    text: String,
    /// How many messages of the history [`Said::catch_up`] has read, and the id of the
    /// last, so a history that is not the one it read is indexed again from the start.
    read: usize,
    last_id: Option<String>,
}

impl Said {
    /// Nothing said.
    pub const EMPTY: Self = Self {
        numbers: Vec::new(),
        latest: 0,
        text: String::new(),
        read: 0,
        last_id: None,
    };

    /// Indexes the user's messages among `messages`.
    #[must_use]
    pub fn from_messages(messages: &[Message]) -> Self {
        let mut said = Self::default();
        said.catch_up(messages);
        said
    }

    /// Indexes the user's messages that `messages` appended since the last call: the same
    /// history, grown. A history that does not continue the one read before (shorter, or
    /// another message where the last one read was) is indexed again from the start.
    pub fn catch_up(&mut self, messages: &[Message]) {
        let continues = match self.read.checked_sub(1) {
            None => true,
            Some(last) => messages
                .get(last)
                .is_some_and(|m| self.last_id.as_deref() == Some(m.id.as_str())),
        };
        if !continues {
            *self = Self::default();
        }
        for message in &messages[self.read..] {
            if let MessageKind::User { text } = &message.kind {
                self.add(text);
            }
        }
        self.read = messages.len();
        self.last_id = messages.last().map(|m| m.id.clone());
    }

    /// Indexes one more thing the user said (the latest, until the next one).
    pub fn add(&mut self, text: &str) {
        let normalized = normalize(text);
        self.latest = self.numbers.len();
        self.numbers.extend(
            numbers(text)
                .into_iter()
                .chain(number_words(&normalized).into_iter().map(|n| vec![n]))
                .map(|values| Mention { values }),
        );
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(&normalized);
    }

    /// Whether the user stated `value` somewhere, on its own (no other value competing
    /// for the mention).
    #[must_use]
    pub fn stated(&self, value: &Value, kind: ValueKind) -> bool {
        let claim = Claim {
            param: "",
            value,
            kind,
            grounded: true,
            asked: false,
        };
        self.unstated(&[claim]).is_empty()
    }

    /// The grounded parameters among `claims` (one call's values) whose values the user
    /// did not state, each mention grounding at most one value (see the module docs).
    #[must_use]
    pub fn unstated(&self, claims: &[Claim<'_>]) -> Vec<String> {
        // What each claim could be grounded by: mention ids (numbers by index, words by
        // their occurrence, offset past the numbers).
        let supports: Vec<Option<Vec<usize>>> = claims
            .iter()
            .map(|claim| self.support(claim.value, claim.kind))
            .collect();
        let mut unstated = vec![false; claims.len()];
        for (i, claim) in claims.iter().enumerate() {
            if claim.grounded && supports[i].as_ref().is_some_and(Vec::is_empty) {
                unstated[i] = true;
            }
        }
        // Claims that compete for mentions: a maximum matching, then every grounded claim
        // in a group that could not all be matched.
        let contenders: Vec<usize> = (0..claims.len())
            .filter(|&i| supports[i].as_ref().is_some_and(|s| !s.is_empty()))
            .collect();
        let mut owner: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
        for &i in &contenders {
            let mut seen = std::collections::HashSet::new();
            augment(i, &supports, &mut owner, &mut seen);
        }
        let matched: std::collections::HashSet<usize> = owner.values().copied().collect();
        let groups = groups(&contenders, &supports);
        for group in groups {
            if group.iter().all(|i| matched.contains(i)) {
                continue;
            }
            for i in group {
                if claims[i].grounded {
                    unstated[i] = true;
                }
            }
        }
        // Answers to a question: a number in the latest message that no value took
        // grounds one asked parameter's derived value.
        let used: std::collections::HashSet<usize> = owner.keys().copied().collect();
        let mut free = self
            .numbers
            .iter()
            .enumerate()
            .filter(|(id, _)| *id >= self.latest && !used.contains(id))
            .count();
        for (i, claim) in claims.iter().enumerate() {
            if unstated[i] && claim.asked && claim.kind == ValueKind::Number && free > 0 {
                unstated[i] = false;
                free -= 1;
            }
        }
        claims
            .iter()
            .zip(unstated)
            .filter(|(_, u)| *u)
            .map(|(c, _)| c.param.to_owned())
            .collect()
    }

    /// The mentions that could ground `value`: `None` when grounding does not judge it
    /// (it then takes no mention), an empty list when nothing the user said fits.
    fn support(&self, value: &Value, kind: ValueKind) -> Option<Vec<usize>> {
        match (kind, value) {
            (ValueKind::Number | ValueKind::Text | ValueKind::Date, Value::Number(n)) => {
                let n = n.as_f64()?;
                Some(
                    self.numbers
                        .iter()
                        .enumerate()
                        .filter(|(_, m)| {
                            m.values
                                .iter()
                                .any(|said| (said - n).abs() <= 1e-9 * n.abs().max(1.0))
                        })
                        .map(|(id, _)| id)
                        .collect(),
                )
            }
            // A date competes with nothing: one "June 5" may well be both days of a
            // day trip.
            (ValueKind::Date, Value::String(s)) => {
                if dates::mentioned(&self.text, s) {
                    None
                } else {
                    Some(Vec::new())
                }
            }
            (_, Value::String(s)) => {
                let wanted = normalize(s);
                if wanted.is_empty() {
                    return Some(Vec::new());
                }
                let base = self.numbers.len() + word_hash(&wanted);
                Some(
                    word_positions(&self.text, &wanted)
                        .enumerate()
                        .map(|(k, _)| base + k)
                        .collect(),
                )
            }
            _ => None,
        }
    }
}

/// An id range of its own for each distinct word, so occurrences of different words
/// never collide (ids past the number mentions; a word occurs fewer than 2^20 times).
fn word_hash(word: &str) -> usize {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    word.hash(&mut hasher);
    ((hasher.finish() as usize) & 0xFFFF_FFFF) << 20
}

/// Kuhn's augmenting path: tries to give claim `i` a mention, moving others along.
fn augment(
    i: usize,
    supports: &[Option<Vec<usize>>],
    owner: &mut std::collections::HashMap<usize, usize>,
    seen: &mut std::collections::HashSet<usize>,
) -> bool {
    for &mention in supports[i].iter().flatten() {
        if !seen.insert(mention) {
            continue;
        }
        let free = match owner.get(&mention) {
            None => true,
            Some(&other) => augment(other, supports, owner, seen),
        };
        if free {
            owner.insert(mention, i);
            return true;
        }
    }
    false
}

/// The claims grouped by shared mentions (connected components).
fn groups(claims: &[usize], supports: &[Option<Vec<usize>>]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(std::collections::HashSet<usize>, Vec<usize>)> = Vec::new();
    for &i in claims {
        let mentions: std::collections::HashSet<usize> =
            supports[i].iter().flatten().copied().collect();
        let (joined, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut groups)
            .into_iter()
            .partition(|(m, _)| !m.is_disjoint(&mentions));
        let mut merged = (mentions, vec![i]);
        for (m, members) in joined {
            merged.0.extend(m);
            merged.1.extend(members);
        }
        groups = rest;
        groups.push(merged);
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// Lowercase with runs of whitespace (and `_`) collapsed to one space.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| c.is_whitespace() || c == '_')
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        // Most words are ASCII: lowercased in place, without a string of their own.
        if word.is_ascii() {
            let start = out.len();
            out.push_str(word);
            out[start..].make_ascii_lowercase();
        } else {
            out.push_str(&word.to_lowercase());
        }
    }
    out
}

/// Where `needle` occurs in `haystack` with no letter or digit glued to either end.
fn word_positions<'a>(haystack: &'a str, needle: &'a str) -> impl Iterator<Item = usize> + 'a {
    haystack
        .match_indices(needle)
        .filter(move |(at, _)| {
            let before = haystack[..*at].chars().next_back();
            let after = haystack[at + needle.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
        .map(|(at, _)| at)
}

/// Every number in `text`, each with the forms a user means by it: `12,000` → 12000,
/// `12k` → 12 or 12000, `5%` → 5 or 0.05, `-3` → -3.
fn numbers(text: &str) -> Vec<Vec<f64>> {
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
        let mut forms = vec![value];
        if let Some(scale) = scale_after(&text[end..]) {
            forms.push(value * scale);
        }
        found.push(forms);
    }
    found
}

/// Numbers written in English words: "five thousand", "two million", "twelve hundred",
/// "one hundred and five", "forty-five". Each run of number words is one number. `text`
/// is [`normalize`]d.
fn number_words(text: &str) -> Vec<f64> {
    let mut found = Vec::new();
    let (mut total, mut current, mut any) = (0.0_f64, 0.0_f64, false);
    let words = text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty());
    let mut previous = "";
    for word in words {
        // "a thousand", "a hundred", "a dozen": the article is the number one.
        if !any
            && matches!(previous, "a" | "an")
            && word_value(word).is_some_and(|w| !matches!(w, Word::Unit(_)))
        {
            current = 1.0;
            any = true;
        }
        previous = word;
        match word_value(word) {
            Some(Word::Unit(n)) => {
                current += n;
                any = true;
            }
            Some(Word::Hundred) if any => current = current.max(1.0) * 100.0,
            Some(Word::Dozen) if any => current = current.max(1.0) * 12.0,
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
    found.extend(counts(text));
    found
}

/// How many people a phrase means: "just me" is one, "the two of us" two. `text` is
/// [`normalize`]d.
fn counts(text: &str) -> Vec<f64> {
    const PHRASES: [(&str, f64); 17] = [
        ("just me", 1.0),
        ("only me", 1.0),
        ("alone", 1.0),
        ("solo", 1.0),
        ("by myself", 1.0),
        ("on my own", 1.0),
        ("just myself", 1.0),
        ("single traveller", 1.0),
        ("both of us", 2.0),
        ("the two of us", 2.0),
        ("a couple", 2.0),
        ("my wife and i", 2.0),
        ("my husband and i", 2.0),
        ("my partner and i", 2.0),
        ("me and my wife", 2.0),
        ("me and my husband", 2.0),
        ("me and my partner", 2.0),
    ];
    // One pass over where words start, not a substring search per phrase (this runs on
    // every user message of a thread with a grounded parameter).
    let mut found: Vec<(usize, f64)> = Vec::new();
    let mut previous: Option<char> = None;
    for (at, c) in text.char_indices() {
        if !previous.is_some_and(char::is_alphanumeric) {
            let rest = &text[at..];
            for (i, (phrase, value)) in PHRASES.iter().enumerate() {
                if rest.as_bytes()[0] == phrase.as_bytes()[0]
                    && rest.starts_with(phrase)
                    && !rest[phrase.len()..]
                        .chars()
                        .next()
                        .is_some_and(char::is_alphanumeric)
                {
                    found.push((i, *value));
                }
            }
        }
        previous = Some(c);
    }
    // Phrase by phrase, each in the order it was said (the order mentions are numbered in).
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, value)| value).collect()
}

enum Word {
    Unit(f64),
    Hundred,
    Dozen,
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
        "dozen" => Some(Word::Dozen),
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

    #[allow(clippy::needless_pass_by_value)] // callers build the value inline
    fn says(said: &Said, value: Value) -> bool {
        let kind = match value {
            Value::Number(_) => ValueKind::Number,
            Value::String(_) => ValueKind::Text,
            _ => ValueKind::Other,
        };
        said.stated(&value, kind)
    }

    fn claim<'a>(param: &'a str, value: &'a Value, grounded: bool) -> Claim<'a> {
        Claim {
            param,
            value,
            kind: ValueKind::of(
                &json!({ "type": if value.is_string() { "string" } else { "number" } }),
            ),
            grounded,
            asked: false,
        }
    }

    #[test]
    fn one_mention_grounds_one_value() {
        // The README's example: `1,000` said once, passed as the savings and the income.
        let s = said("How long to save $12,000 at $1,000 a month?");
        let (goal, income, savings) = (json!(12000), json!(1000), json!(1000));
        let claims = [
            claim("goal_amount", &goal, false),
            claim("monthly_income", &income, true),
            claim("monthly_savings", &savings, true),
        ];
        assert_eq!(s.unstated(&claims), ["monthly_income", "monthly_savings"]);
        // Said twice, it grounds both.
        let s = said("I earn $1,000 and save $1,000 a month; the goal is 12000.");
        assert!(s.unstated(&claims).is_empty());
        // A value that is not grounded still takes its mention: the goal passed as the
        // income too is one figure for two parameters.
        let s = said("I want to save $12,000.");
        let income = json!(12000);
        let claims = [
            claim("goal_amount", &goal, false),
            claim("monthly_income", &income, true),
        ];
        assert_eq!(s.unstated(&claims), ["monthly_income"]);
    }

    #[test]
    fn the_same_word_twice_is_two_mentions_and_once_is_one() {
        let (lis, also_lis) = (json!("LIS"), json!("LIS"));
        let claims = [
            claim("origin", &lis, true),
            claim("destination", &also_lis, true),
        ];
        assert_eq!(
            said("fly from LIS").unstated(&claims),
            ["origin", "destination"]
        );
        assert!(
            said("LIS to LIS, a round trip")
                .unstated(&claims)
                .is_empty()
        );
    }

    #[test]
    fn a_derived_answer_to_the_question_is_accepted_once_per_number_said() {
        let mut s = said("How long to save $30,000?");
        s.add("I make sixty k a year.");
        let (income, savings) = (json!(5000), json!(500));
        let mut asked = [
            claim("monthly_income", &income, true),
            claim("monthly_savings", &savings, true),
        ];
        for c in &mut asked {
            c.asked = true;
        }
        // "sixty k" is one number: one derived value, the other is asked again.
        assert_eq!(s.unstated(&asked), ["monthly_savings"]);
        // Not asked for: a derived value is a guess.
        let plain = [claim("monthly_income", &income, true)];
        assert_eq!(s.unstated(&plain), ["monthly_income"]);
    }

    #[test]
    fn value_kinds_follow_the_schema() {
        assert_eq!(
            ValueKind::of(&json!({"type": "integer"})),
            ValueKind::Number
        );
        assert_eq!(
            ValueKind::of(&json!({"type": ["number", "null"]})),
            ValueKind::Number
        );
        assert_eq!(
            ValueKind::of(&json!({"type": "string", "format": "date"})),
            ValueKind::Date
        );
        assert_eq!(ValueKind::of(&json!({"type": "string"})), ValueKind::Text);
        assert_eq!(ValueKind::of(&json!({"type": "boolean"})), ValueKind::Other);
        assert_eq!(ValueKind::of(&json!({})), ValueKind::Other);
    }

    #[test]
    fn dates_are_grounded_by_their_mention() {
        let s = said("Lisbon to New York on July 1st, two adults");
        assert!(s.stated(&json!("2025-07-01"), ValueKind::Date));
        assert!(!s.stated(&json!("2025-07-02"), ValueKind::Date));
    }

    #[test]
    fn numbers_are_found_in_the_forms_people_write_them() {
        let s = said("I want $12,000 by June; I earn 4.5k, save 12 thousand and pay 5% tax.");
        for stated in [12000.0, 4.5, 4500.0, 12.0, 5.0, 0.05] {
            assert!(says(&s, json!(stated)), "{stated} was said");
        }
        for unsaid in [1000.0, 45.0, 120.0, 4000.0] {
            assert!(!says(&s, json!(unsaid)), "{unsaid} was not said");
        }
        assert!(says(&s, json!(12000)), "integers compare with floats");
    }

    #[test]
    fn numbers_written_as_words_are_found() {
        let s = said(
            "I make five thousand a month, want two million, spent twelve hundred, \
             am forty-five, and paid one hundred and five.",
        );
        for stated in [5000.0, 2_000_000.0, 1200.0, 45.0, 105.0] {
            assert!(says(&s, json!(stated)), "{stated} was said");
        }
        for unsaid in [5.0, 2.0, 1000.0, 100.0] {
            assert!(!says(&s, json!(unsaid)), "{unsaid} was not said as such");
        }
        assert!(says(
            &said("one hundred twenty three thousand four hundred fifty six"),
            json!(123_456)
        ));
        assert!(
            says(&said("a thousand a month"), json!(1000)),
            "the article is one"
        );
        assert!(says(&said("a dozen eggs"), json!(12)));
        assert!(says(&said("two dozen"), json!(24)));
        assert!(
            !says(&said("thousands of them"), json!(1000)),
            "a scale needs a number"
        );
    }

    #[test]
    fn counts_of_people_said_as_phrases() {
        assert!(says(&said("A flight to Rome, just me."), json!(1)));
        assert!(says(&said("I'm travelling alone"), json!(1)));
        assert!(says(&said("the two of us, in June"), json!(2)));
        assert!(!says(&said("me and the team"), json!(1)), "not a count");
    }

    #[test]
    fn a_comma_groups_digits_only_in_threes() {
        assert!(says(&said("1,234,567"), json!(1_234_567)));
        let list = said("options 1,23");
        assert!(says(&list, json!(1)) && says(&list, json!(23)));
        assert!(!says(&list, json!(123)));
    }

    #[test]
    fn negative_numbers_and_ranges() {
        let s = said("the balance is -250 and the years 2020-2024");
        assert!(says(&s, json!(-250)));
        assert!(says(&s, json!(2024)), "a hyphen after a number is a range");
        assert!(!says(&s, json!(-2024)));
    }

    #[test]
    fn digits_inside_words_are_not_numbers() {
        let s = said("model gpt4 and id a12");
        assert!(!says(&s, json!(4)));
        assert!(!says(&s, json!(12)));
    }

    #[test]
    fn strings_must_appear_as_whole_words() {
        let s = said("My risk tolerance is Low.\nSend it to  Jane   Doe please");
        assert!(says(&s, json!("low")));
        assert!(says(&s, json!("jane doe")));
        assert!(!says(&s, json!("lo")), "part of a word is not the word");
        assert!(!says(&s, json!("high")));
        assert!(!says(&s, json!("  ")), "an empty string is never stated");
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
        assert!(says(&s, json!(300)));
        assert!(
            !says(&s, json!(900)),
            "the assistant's words are not the user's"
        );
    }

    #[test]
    fn values_grounding_cannot_judge_pass() {
        let s = said("");
        assert!(says(&s, json!(true)));
        assert!(says(&s, json!([1, 2])));
    }

    /// The single-pass `normalize` and `counts` against their first, plainer definitions.
    mod same_as_before {
        use proptest::prelude::*;

        fn normalize(text: &str) -> String {
            text.split(|c: char| c.is_whitespace() || c == '_')
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(" ")
        }

        fn counts(text: &str) -> Vec<f64> {
            const ONE: [&str; 8] = [
                "just me",
                "only me",
                "alone",
                "solo",
                "by myself",
                "on my own",
                "just myself",
                "single traveller",
            ];
            const TWO: [&str; 9] = [
                "both of us",
                "the two of us",
                "a couple",
                "my wife and i",
                "my husband and i",
                "my partner and i",
                "me and my wife",
                "me and my husband",
                "me and my partner",
            ];
            let mut found = Vec::new();
            for (phrases, value) in [(&ONE[..], 1.0), (&TWO[..], 2.0)] {
                for phrase in phrases {
                    found.extend(super::super::word_positions(text, phrase).map(|_| value));
                }
            }
            found
        }

        /// Text made of the phrases' words, other words, digits, punctuation, spacing and
        /// letters that lowercase oddly (`Σ`, `İ`).
        fn text() -> impl Strategy<Value = String> {
            let piece = prop::sample::select(vec![
                "just",
                "me",
                "only",
                "alone",
                "solo",
                "by",
                "myself",
                "on",
                "my",
                "own",
                "single",
                "traveller",
                "both",
                "of",
                "us",
                "the",
                "two",
                "a",
                "couple",
                "wife",
                "husband",
                "partner",
                "and",
                "i",
                "I",
                "Just Me",
                "ALONE",
                "xme",
                "mex",
                "7",
                ",",
                ".",
                "(",
                ")",
                "-",
                "_",
                " ",
                "  ",
                "\t",
                "\n",
                "ΣΑΣ",
                "İ",
                "é",
            ]);
            prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
        }

        proptest! {
            #[test]
            fn normalize_is_unchanged(text in text()) {
                prop_assert_eq!(super::super::normalize(&text), normalize(&text));
            }

            /// `number_words` reads the normalized text, where it lowercased the raw one.
            #[test]
            fn number_words_read_the_same_words(text in text()) {
                let words = |s: &str| {
                    s.split(|c: char| !c.is_alphabetic())
                        .filter(|w| !w.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                };
                prop_assert_eq!(words(&super::super::normalize(&text)), words(&text.to_lowercase()));
            }

            #[test]
            fn counts_are_unchanged(text in text()) {
                let normalized = normalize(&text);
                prop_assert_eq!(super::super::counts(&normalized), counts(&normalized));
            }
        }
    }
}
