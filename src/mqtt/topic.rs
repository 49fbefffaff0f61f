//! MQTT topic filters: validation and matching (MQTT 3.1.1 §4.7).
//!
//! `+` matches exactly one level (an empty one too), `#` matches the rest and only as
//! the last level (`a/#` matches `a` itself), and topics starting with `$` are not
//! matched by a filter whose first level is a wildcard.

use std::fmt;

/// Why a topic filter is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicFilterError {
    #[error("empty topic filter")]
    Empty,
    #[error("'#' must be a whole level and the last one")]
    MisplacedHash,
    #[error("'+' must be a whole level")]
    MisplacedPlus,
    #[error("a topic filter must not contain a NUL character")]
    Nul,
}

/// A validated topic filter, split into levels once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    filter: String,
    levels: Vec<String>,
}

impl TopicFilter {
    pub fn parse(filter: &str) -> Result<TopicFilter, TopicFilterError> {
        if filter.is_empty() {
            return Err(TopicFilterError::Empty);
        }
        if filter.contains('\0') {
            return Err(TopicFilterError::Nul);
        }
        let levels: Vec<String> = filter.split('/').map(str::to_string).collect();
        for (i, level) in levels.iter().enumerate() {
            if level.contains('#') && (level != "#" || i != levels.len() - 1) {
                return Err(TopicFilterError::MisplacedHash);
            }
            if level.contains('+') && level != "+" {
                return Err(TopicFilterError::MisplacedPlus);
            }
        }
        Ok(TopicFilter {
            filter: filter.to_string(),
            levels,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.filter
    }

    /// The filter's levels (`tonypi/status/+` → `["tonypi", "status", "+"]`).
    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    /// Whether `topic` (a concrete topic name, no wildcards) matches this filter.
    pub fn matches(&self, topic: &str) -> bool {
        if topic.starts_with('$') && matches!(self.levels[0].as_str(), "+" | "#") {
            return false;
        }
        let mut topic_levels = topic.split('/');
        for (i, f) in self.levels.iter().enumerate() {
            if f == "#" {
                return i == self.levels.len() - 1;
            }
            match topic_levels.next() {
                Some(t) if f == "+" || f == t => {}
                _ => return false,
            }
        }
        topic_levels.next().is_none()
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(filter: &str, topic: &str) -> bool {
        TopicFilter::parse(filter).unwrap().matches(topic)
    }

    #[test]
    fn wildcard_matching() {
        assert!(m("tonypi/status/+", "tonypi/status/r1"));
        assert!(!m("tonypi/status/+", "tonypi/status/r1/x"));
        assert!(!m("tonypi/status/+", "tonypi/status"));
        assert!(
            m("tonypi/status/+", "tonypi/status/"),
            "+ matches an empty level"
        );
        assert!(m("a/#", "a"));
        assert!(m("a/#", "a/b/c"));
        assert!(m("#", "x/y"));
        assert!(!m("a/b", "a/c"));
        assert!(!m("#", "$SYS/broker/load"));
        assert!(!m("+/broker/load", "$SYS/broker/load"));
        assert!(m("$SYS/#", "$SYS/broker/load"));
    }

    #[test]
    fn invalid_filters() {
        assert_eq!(TopicFilter::parse(""), Err(TopicFilterError::Empty));
        assert_eq!(
            TopicFilter::parse("a/#/b"),
            Err(TopicFilterError::MisplacedHash)
        );
        assert_eq!(
            TopicFilter::parse("a/b#"),
            Err(TopicFilterError::MisplacedHash)
        );
        assert_eq!(
            TopicFilter::parse("a/b+/c"),
            Err(TopicFilterError::MisplacedPlus)
        );
    }

    proptest! {
        /// A filter without wildcards matches exactly the topic it spells.
        #[test]
        fn literal_filters_match_only_themselves(a in "[a-z]{0,4}(/[a-z]{0,4}){0,3}", b in "[a-z]{0,4}(/[a-z]{0,4}){0,3}") {
            prop_assume!(!a.is_empty());
            prop_assert_eq!(m(&a, &b), a == b);
        }

        /// Replacing any one level of a topic by `+`, or any suffix by `#`, still matches.
        #[test]
        fn wildcards_generalise(topic in "[a-z]{1,4}(/[a-z]{0,4}){0,4}", pick in 0usize..5) {
            let levels: Vec<&str> = topic.split('/').collect();
            let i = pick % levels.len();
            let mut plus = levels.clone();
            plus[i] = "+";
            prop_assert!(m(&plus.join("/"), &topic));
            let mut hash: Vec<&str> = levels[..i].to_vec();
            hash.push("#");
            prop_assert!(m(&hash.join("/"), &topic));
        }
    }
}
