//! ACL topic patterns with mosquitto-go-auth's semantics: MQTT wildcards (`+` exactly
//! one level, an empty one too; `#` only as the last level, matching the parent too:
//! `a/#` matches `a`), `$`-topics not matched by a leading wildcard, and `%u` / `%c`
//! replaced by the username and client id.
//!
//! A substituted level is compared as a literal, and never matches when the username or
//! client id would bring a `+`, `#` or `/` into it (or is empty): an identity can never
//! widen a pattern. For a SUBSCRIBE check the topic is the client's filter: a pattern
//! allows it only if every topic the filter matches is matched by the pattern (`+` in a
//! pattern covers a filter's `+` but not its `#`).

use crate::mqtt::topic::{TopicFilter, TopicFilterError};

/// What a client wants to do with a topic (go-auth's `acc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// 1: receive messages published on the topic.
    Read = 1,
    /// 2: publish on the topic.
    Write = 2,
    /// 4: subscribe with the topic as a filter.
    Subscribe = 4,
}

impl Access {
    /// go-auth's `acc` value.
    pub fn from_acc(acc: i64) -> Option<Access> {
        match acc {
            1 => Some(Access::Read),
            2 => Some(Access::Write),
            4 => Some(Access::Subscribe),
            _ => None,
        }
    }

    pub fn bit(self) -> i32 {
        self as i32
    }
}

/// A validated ACL pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclPattern(TopicFilter);

impl AclPattern {
    pub fn parse(pattern: &str) -> Result<AclPattern, TopicFilterError> {
        TopicFilter::parse(pattern).map(AclPattern)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether this pattern allows `topic` for the client `username` / `client_id`;
    /// with `access` Subscribe, `topic` is a topic filter.
    pub fn allows(&self, topic: &str, username: &str, client_id: &str, access: Access) -> bool {
        let levels = self.0.levels();
        if topic.starts_with('$') && matches!(levels[0].as_str(), "+" | "#") {
            return false;
        }
        let subscribe = access == Access::Subscribe;
        let mut topic_levels = topic.split('/');
        for (i, p) in levels.iter().enumerate() {
            if p == "#" {
                return i == levels.len() - 1;
            }
            let Some(t) = topic_levels.next() else {
                return false;
            };
            let ok = if p == "+" {
                !(subscribe && t == "#")
            } else {
                match substitute(p, username, client_id) {
                    Some(literal) => literal == t && !(subscribe && (t == "+" || t == "#")),
                    None => false,
                }
            };
            if !ok {
                return false;
            }
        }
        topic_levels.next().is_none()
    }
}

/// `level` with `%u` and `%c` replaced in one pass; `None` when a replacement is empty or
/// holds `+`, `#` or `/` (it could only widen or shift the pattern).
fn substitute(level: &str, username: &str, client_id: &str) -> Option<String> {
    if !level.contains('%') {
        return Some(level.to_string());
    }
    let mut out = String::with_capacity(level.len() + username.len());
    let mut rest = level;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let value = match rest.as_bytes().get(at + 1) {
            Some(b'u') => Some(username),
            Some(b'c') => Some(client_id),
            _ => None,
        };
        match value {
            Some(v) => {
                if v.is_empty() || v.contains(['+', '#', '/']) {
                    return None;
                }
                out.push_str(v);
                rest = &rest[at + 2..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn allows(p: &str, topic: &str, access: Access) -> bool {
        AclPattern::parse(p)
            .unwrap()
            .allows(topic, "robot7", "client7", access)
    }

    #[test]
    fn wildcards_as_mqtt_defines_them() {
        use Access::*;
        assert!(allows("tonypi/+/robot7", "tonypi/status/robot7", Write));
        assert!(allows("a/+/c", "a//c", Write)); // an empty level
        assert!(!allows("a/+", "a/b/c", Write));
        assert!(allows("a/#", "a", Write)); // the parent
        assert!(allows("a/#", "a/b/c", Write));
        assert!(!allows("a/#", "ab", Write));
        assert!(allows("#", "anything/at/all", Write));
        assert!(!allows("#", "$SYS/broker", Write));
        assert!(!allows("+/broker", "$SYS/broker", Write));
        assert!(allows("$SYS/#", "$SYS/broker", Write));
    }

    #[test]
    fn identity_substitution() {
        use Access::*;
        assert!(allows("tonypi/+/%u", "tonypi/status/robot7", Write));
        assert!(!allows("tonypi/+/%u", "tonypi/status/robot8", Write));
        assert!(allows("c/%c/x", "c/client7/x", Write));
        assert!(allows("p/pre-%u-post", "p/pre-robot7-post", Write));
        assert!(allows("p/100%", "p/100%", Write)); // a lone % is literal
        let p = AclPattern::parse("tonypi/commands/%u").unwrap();
        for evil in ["+", "#", "a/b", "", "x+", "robot7/extra"] {
            for topic in [
                "tonypi/commands/+",
                "tonypi/commands/#",
                "tonypi/commands/a/b",
                "tonypi/commands/",
            ] {
                assert!(!p.allows(topic, evil, "c", Subscribe), "{evil:?} {topic:?}");
                assert!(!p.allows(topic, evil, "c", Write), "{evil:?} {topic:?}");
            }
        }
        // A username that looks like %c is not substituted again.
        assert!(
            !AclPattern::parse("a/%u")
                .unwrap()
                .allows("a/client7", "%c", "client7", Write)
        );
    }

    #[test]
    fn subscriptions_must_be_covered_by_the_pattern() {
        use Access::*;
        assert!(allows("tonypi/#", "tonypi/#", Subscribe));
        assert!(allows("tonypi/#", "tonypi/+/robot7", Subscribe));
        assert!(allows("tonypi/+/x", "tonypi/+/x", Subscribe));
        assert!(!allows("tonypi/+", "tonypi/#", Subscribe));
        assert!(!allows("tonypi/a", "tonypi/+", Subscribe));
        assert!(!allows(
            "tonypi/commands/robot7",
            "tonypi/commands/#",
            Subscribe
        ));
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just(String::new())
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 0..4),
            any::<bool>(),
        )
            .prop_filter_map("non-empty", |(mut l, hash)| {
                if hash {
                    l.push("#".into());
                }
                let f = l.join("/");
                (!f.is_empty()).then_some(f)
            })
    }

    proptest! {
        /// Without %u/%c, publish checks are exactly MQTT filter matching.
        #[test]
        fn publish_checks_are_filter_matching(p in filter(), t in topic()) {
            let f = TopicFilter::parse(&p).unwrap();
            let a = AclPattern::parse(&p).unwrap();
            prop_assert_eq!(a.allows(&t, "u", "c", Access::Write), f.matches(&t));
        }

        /// A subscription allowed by a pattern only reaches topics the pattern allows.
        #[test]
        fn allowed_subscriptions_are_covered(p in filter(), s in filter(), t in topic()) {
            let a = AclPattern::parse(&p).unwrap();
            let sub = TopicFilter::parse(&s).unwrap();
            if a.allows(&s, "u", "c", Access::Subscribe) && sub.matches(&t) {
                prop_assert!(a.allows(&t, "u", "c", Access::Write), "{} allows {} but not {}", p, s, t);
            }
        }

        /// A username with a wildcard or separator never gains a topic.
        #[test]
        fn usernames_never_widen(user in "[ab/+#]{0,4}", t in topic(), s in filter()) {
            let a = AclPattern::parse("a/%u").unwrap();
            if user.is_empty() || user.contains(['/', '+', '#']) {
                prop_assert!(!a.allows(&t, &user, "c", Access::Write));
                prop_assert!(!a.allows(&s, &user, "c", Access::Subscribe));
            }
        }
    }
}
