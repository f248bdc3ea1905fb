//! One reader for every URL the product takes (an index, a syslog server, Kafka brokers,
//! Sophos Central's hosts), and one redactor for showing them.
//!
//! The URLs are simple: `scheme://[user-info@]authority[/path][?query]`, where the
//! authority is `host[:port]`, `[v6]:port`, or (Kafka) a comma-separated list of them.
//! Nothing is percent-decoded: none of the parts we use may hold an escape.

/// A URL cut into its parts, borrowed from the text. Its `Debug` shows no user-info.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Url<'a> {
    /// Before `://`, as written (compare with [`str::eq_ignore_ascii_case`]).
    pub scheme: &'a str,
    /// `user:password` before an `@`, when there is one (see [`refuse_credentials`]).
    pub userinfo: Option<&'a str>,
    /// `host[:port]` (or several, comma-separated), without the user-info.
    pub authority: &'a str,
    /// After the authority's `/`, up to `?` or `#`, with trailing slashes cut.
    pub path: &'a str,
    /// After `?`, up to `#`.
    pub query: &'a str,
}

impl std::fmt::Debug for Url<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Url")
            .field("scheme", &self.scheme)
            .field("userinfo", &self.userinfo.map(|_| "***"))
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("query", &self.query)
            .finish()
    }
}

impl<'a> Url<'a> {
    /// Cuts `url` into its parts. Fails when it has no `scheme://`, a `#fragment` (none
    /// of the product's URLs takes one), or a host that is empty, has a port that is not
    /// a number, or has text after an IPv6 address's `]` other than `:port`.
    pub fn parse(url: &'a str) -> Result<Url<'a>, String> {
        let bad = |why: &str| format!("{}: {why}", redact(url));
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| !s.is_empty())
            .ok_or_else(|| bad("not a URL (scheme://host…)"))?;
        if rest.contains('#') {
            return Err(bad("a URL here takes no #fragment"));
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        // User-info ends at the last '@' before the query, wherever a '/' stands: what
        // a user typed as user:pass/word@host is credentials, never a path.
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((info, rest)) => (Some(info), rest),
            None => (None, rest),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        for host_port in authority.split(',') {
            let (host, port) = host_and_port(host_port).map_err(bad)?;
            if host.is_empty() {
                return Err(bad("the URL names no host"));
            }
            if port.is_some_and(|p| p.parse::<u16>().is_err()) {
                return Err(bad("the port is not a number from 0 to 65535"));
            }
        }
        Ok(Url {
            scheme,
            userinfo,
            authority,
            path: path.trim_end_matches('/'),
            query,
        })
    }

    /// The first (or only) host, without brackets or port.
    pub fn host(&self) -> &'a str {
        self.first().0
    }

    /// The port of the first host, as written, if any.
    pub fn port(&self) -> Option<&'a str> {
        self.first().1
    }

    /// The first host and its port ([`Url::parse`] checked that every one splits).
    fn first(&self) -> (&'a str, Option<&'a str>) {
        let first = self.authority.split(',').next().unwrap_or_default();
        host_and_port(first).unwrap_or((first, None))
    }

    /// `key=value` pairs of the query (`key` alone gives an empty value).
    pub fn query_pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
    }

    /// True when the first host is a loopback address (`127.0.0.0/8`, `[::1]`) or
    /// `localhost`.
    pub fn is_loopback(&self) -> bool {
        // With a '/' before its '@', an HTTP client that reads the URL by RFC 3986 ends
        // the host at that '/' (`http://evil.example/@127.0.0.1`): not the host seen here.
        if self.userinfo.is_some_and(|u| u.contains('/')) {
            return false;
        }
        let host = self.host();
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// `host[:port]` or `[v6][:port]` cut into the host (without brackets) and the port as
/// written; what is wrong with it, when it cannot be cut.
fn host_and_port(host_port: &str) -> Result<(&str, Option<&str>), &'static str> {
    let Some(v6) = host_port.strip_prefix('[') else {
        return Ok(match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        });
    };
    match v6.split_once(']') {
        Some((host, "")) => Ok((host, None)),
        Some((host, after)) => match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None => Err("only :port may follow an IPv6 address's ]"),
        },
        None => Err("an IPv6 address's [ has no ]"),
    }
}

/// `url` as it may be shown in a log line or an error: any user-info replaced by
/// `***@`. User-info is everything up to the last `@` before the query, so that a
/// password with a `/` in it is hidden too. Text that is not a URL is shown as it is.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let query = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = match rest[..query].rfind('@') {
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_string(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

/// Refuses a URL that holds credentials (`user:password@host`, or any `@` before the
/// query): they would show in process lists, shell histories and logs. The message (which shows the URL redacted)
/// names the environment variables and settings to use instead.
pub fn refuse_credentials(url: &str) -> Result<(), String> {
    if redact(url) == url {
        return Ok(());
    }
    Err(format!(
        "{}: the URL holds credentials (user:password@), which would show in process lists, \
         shell histories and logs; take them out and set SOPHOS_TAC_ES_USER and \
         SOPHOS_TAC_ES_PASSWORD or SOPHOS_TAC_ES_API_KEY (with collect: output.username and \
         output.password_env, or output.api_key_env)",
        redact(url)
    ))
}

/// True when `url`'s host is a loopback address (`127.0.0.0/8`, `[::1]`) or
/// `localhost`; false for anything that is not a URL.
pub fn is_loopback(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| u.is_loopback())
}

/// Refuses a plain `http://` URL whose host is not loopback, unless `allowed` (the
/// user said so: `--allow-http`, `allow_http = true`): credentials and detection data
/// would cross the network in clear. `what` names the setting in the message.
pub fn refuse_plain_http(url: &str, allowed: bool, what: &str) -> Result<(), String> {
    // Plain is what the scheme says, whether or not the rest parses (an unparsable URL
    // is not loopback, so it is refused).
    let plain = url
        .split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("http"));
    if !plain || allowed || is_loopback(url) {
        return Ok(());
    }
    Err(format!(
        "{}: {what} is plain http:// to a host that is not loopback: credentials and documents would cross the network in clear; use https://{}",
        redact(url),
        if what.contains("index") {
            " (or, on a network you trust, --allow-http / allow_http = true)"
        } else {
            ""
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_cut_into_its_parts() {
        let u = Url::parse("kafka+tls://u:p@b1:9092,b2:9093/topic/?group=g&sasl=plain").unwrap();
        assert_eq!(u.scheme, "kafka+tls");
        assert_eq!(u.userinfo, Some("u:p"));
        assert_eq!(u.authority, "b1:9092,b2:9093");
        assert_eq!(u.path, "topic");
        assert_eq!(
            u.query_pairs().collect::<Vec<_>>(),
            [("group", "g"), ("sasl", "plain")]
        );
        assert_eq!((u.host(), u.port()), ("b1", Some("9092")));
        let v6 = Url::parse("syslog+tls://[::1]:6514").unwrap();
        assert_eq!((v6.host(), v6.port(), v6.path), ("::1", Some("6514"), ""));
        let bare = Url::parse("https://es.example").unwrap();
        assert_eq!((bare.host(), bare.port()), ("es.example", None));
        for bad in [
            "es.example:9200/i",
            "://h/i",
            "https:///i",
            "https://u@/i",
            "https://:9200/i",
            "kafka://b1:9092,:9093/t",
            "https://h/idx#x",
            "syslog+tcp://[::1]junk:514",
            "syslog+tcp://[::1:514",
            "https://h:92a0/i",
            "https://h:70000/i",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        let err = Url::parse("https://u:hunter2@/i").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let slashed = Url::parse("https://u:pa/ss@h:9200/i").unwrap();
        assert_eq!(
            (slashed.userinfo, slashed.authority, slashed.path),
            (Some("u:pa/ss"), "h:9200", "i")
        );
        assert!(!format!("{slashed:?}").contains("pa/ss"), "{slashed:?}");
    }

    #[test]
    fn plain_http_is_refused_off_loopback_unless_allowed() {
        for ok in [
            "https://es.example:9200/i",
            "http://127.0.0.1:9200/i",
            "http://127.9.9.9/i",
            "http://[::1]:9200/i",
            "http://localhost:9200",
            "HTTP://LOCALHOST/x",
        ] {
            assert!(
                refuse_plain_http(ok, false, "the index URL").is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://es.example:9200/i",
            "http://10.0.0.1/i",
            "http://127.0.0.1.example.com/i",
            "http://user@evil/i",
            "http://[::2]/i",
            "HTTP://es.example/i",
            "http://evil.example@",
            "http:///evil.example",
            "http://evil.example/@127.0.0.1/token",
            "http://u:p/x@localhost/i",
        ] {
            let err = refuse_plain_http(bad, false, "the index URL").unwrap_err();
            assert!(err.contains("--allow-http"), "{err}");
            assert!(refuse_plain_http(bad, true, "the index URL").is_ok());
        }
        let err = refuse_plain_http("http://id.example/token", false, "auth_url").unwrap_err();
        assert!(!err.contains("allow"), "{err}");
    }

    #[test]
    fn urls_are_redacted_and_credentials_refused() {
        assert_eq!(
            redact("https://elastic:hunter2@es.example:9200/idx?x=a@b"),
            "https://***@es.example:9200/idx?x=a@b"
        );
        // Everything up to the last '@' before the query is user-info: a password with a
        // '/' is hidden, and a path with an '@' is refused as if it held credentials.
        assert_eq!(redact("https://u:pa/ss@h/i"), "https://***@h/i");
        assert_eq!(redact("http://es:9200/i@x"), "http://***@x");
        assert!(refuse_credentials("https://u:pa/ss@h/i").is_err());
        assert_eq!(redact("syslog+tls://u@h:6514"), "syslog+tls://***@h:6514");
        assert!(refuse_credentials("https://es.example:9200/idx").is_ok());
        let err = refuse_credentials("https://elastic:hunter2@es.example:9200/idx").unwrap_err();
        assert!(
            !err.contains("hunter2") && err.contains("SOPHOS_TAC_ES_PASSWORD"),
            "{err}"
        );
    }
}
