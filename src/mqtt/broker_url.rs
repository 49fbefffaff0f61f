//! Broker URLs: `mqtt://[user[:password]@]host[:port]` and `mqtts://…` (TLS).
//!
//! Parsed with the `url` crate, so IPv6 literals (`mqtt://[::1]`), percent-encoded
//! credentials and default ports (1883, 8883) behave as in any other URL. The password
//! is held as a secret; `Display` shows the URL without it, so a log line can name the
//! broker without leaking the credential.

use std::fmt;

use secrecy::SecretString;
use url::{Host, Url};

/// Why a broker URL is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    #[error("not a URL ({0}); expected mqtt://host:1883 or mqtts://host:8883")]
    Syntax(url::ParseError),
    #[error("scheme {0:?} is not supported; use mqtt:// or mqtts://")]
    Scheme(String),
    #[error("the URL has no host; expected mqtt://host:1883")]
    NoHost,
    #[error("the URL must not have a path, query or fragment (found {0:?})")]
    Extra(String),
    #[error("the credentials are not valid UTF-8 after percent-decoding")]
    Credentials,
}

/// A parsed broker URL.
#[derive(Clone)]
pub struct BrokerUrl {
    /// The host name or IP address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

impl BrokerUrl {
    pub fn parse(text: &str) -> Result<BrokerUrl, BrokerUrlError> {
        let url = Url::parse(text.trim()).map_err(|e| match e {
            url::ParseError::EmptyHost => BrokerUrlError::NoHost,
            other => BrokerUrlError::Syntax(other),
        })?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => return Err(BrokerUrlError::Scheme(other.to_string())),
        };
        let host = match url.host() {
            None => return Err(BrokerUrlError::NoHost),
            Some(Host::Domain("")) => return Err(BrokerUrlError::NoHost),
            Some(Host::Domain(d)) => decode(d)?,
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
        };
        let path = url.path();
        if !(path.is_empty() || path == "/") || url.query().is_some() || url.fragment().is_some() {
            let mut extra = path.to_string();
            if let Some(q) = url.query() {
                extra.push('?');
                extra.push_str(q);
            }
            return Err(BrokerUrlError::Extra(extra));
        }
        let username = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url
            .password()
            .map(decode)
            .transpose()?
            .map(SecretString::from);
        Ok(BrokerUrl {
            host,
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            username,
            password,
        })
    }

    /// `host:port` as a socket address string (IPv6 hosts in brackets), which is what
    /// rumqttc resolves.
    pub fn socket_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

fn decode(s: &str) -> Result<String, BrokerUrlError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| BrokerUrlError::Credentials)
}

/// The URL without its password: safe for logs and `check-config`.
impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://")?;
        if let Some(u) = &self.username {
            write!(f, "{u}@")?;
        }
        write!(f, "{}:{}", self.socket_host(), self.port)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(s: &str) -> BrokerUrl {
        BrokerUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn hosts_and_ports() {
        let u = parse("mqtt://localhost:1884");
        assert_eq!((u.host.as_str(), u.port, u.tls), ("localhost", 1884, false));
        assert_eq!(parse("mqtts://b.example").port, 8883);
        assert_eq!(parse("mqtt://b.example/").port, 1883);
        let v6 = parse("mqtt://[::1]:1883");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1883));
        let v6 = parse("mqtt://[::1]");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1883));
        assert_eq!(v6.socket_host(), "[::1]");
        assert_eq!(parse("mqtt://10.0.0.7").host, "10.0.0.7");
    }

    #[test]
    fn credentials_come_out_of_the_host() {
        let u = parse("mqtt://fleet:s3cr%40t@broker.example:1883");
        assert_eq!(u.host, "broker.example");
        assert_eq!(u.username.as_deref(), Some("fleet"));
        assert_eq!(
            u.password.as_ref().map(|p| p.expose_secret().to_string()),
            Some("s3cr@t".to_string())
        );
        let u = parse("mqtt://onlyuser@[::1]:1999");
        assert_eq!(
            (u.host.as_str(), u.port, u.username.as_deref()),
            ("::1", 1999, Some("onlyuser"))
        );
        assert!(u.password.is_none());
    }

    #[test]
    fn display_and_debug_never_show_the_password() {
        let u = parse("mqtt://fleet:hunter2@broker:1883");
        assert_eq!(u.to_string(), "mqtt://fleet@broker:1883");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert_eq!(parse("mqtts://[::1]").to_string(), "mqtts://[::1]:8883");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(matches!(
            BrokerUrl::parse("http://x:1"),
            Err(BrokerUrlError::Scheme(s)) if s == "http"
        ));
        assert!(matches!(
            BrokerUrl::parse("mqtt://x:port"),
            Err(BrokerUrlError::Syntax(_))
        ));
        assert!(matches!(
            BrokerUrl::parse("mqtt://"),
            Err(BrokerUrlError::NoHost)
        ));
        assert!(matches!(
            BrokerUrl::parse("mqtt://x:1/topic"),
            Err(BrokerUrlError::Extra(_))
        ));
        assert!(matches!(
            BrokerUrl::parse("broker:1883"),
            Err(BrokerUrlError::Scheme(_)) | Err(BrokerUrlError::Syntax(_))
        ));
    }
}
