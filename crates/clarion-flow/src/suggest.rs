//! "Did you mean …?" for misspelt keys and names.

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
#[must_use]
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| {
            let (word, candidate) = (word.to_lowercase(), c.to_lowercase());
            let score = strsim::jaro_winkler(&word, &candidate);
            // Jaro-Winkler misses one swap or slip in a short word (`aks`, `ulr`).
            if strsim::osa_distance(&word, &candidate) == 1 {
                (score.max(0.9), c)
            } else {
                (score, c)
            }
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Lists names as "`a`, `b` and `c`".
#[must_use]
pub fn list<S: AsRef<str>>(names: &[S]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{}`", n.as_ref())).collect();
    match quoted.as_slice() {
        [] => "nothing".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key_and_strangers_find_nothing() {
        let keys = ["minimum", "maximum", "description"];
        assert_eq!(closest("minimun", keys), Some("minimum"));
        assert_eq!(closest("descripton", keys), Some("description"));
        assert_eq!(closest("zzz", keys), None);
        assert_eq!(closest("aks", ["ask", "slot"]), Some("ask"));
    }

    #[test]
    fn lists_read_as_english() {
        assert_eq!(list::<&str>(&[]), "nothing");
        assert_eq!(list(&["a"]), "`a`");
        assert_eq!(list(&["a", "b", "c"]), "`a`, `b` and `c`");
    }
}
