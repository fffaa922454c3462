//! Email over SMTP (docs/campaigns.md): server settings from `smtp://user:pass@host:port?tls=…`,
//! messages built with lettre (multipart text + HTML, RFC 8058 one-click unsubscribe headers,
//! optional DKIM), and [`SmtpLane`], one pooled connection that sends in two phases so that the
//! caller can record "this message may leave now" between them (the exactly-once protocol).

use std::time::Duration;

use lettre::{
    address::Envelope,
    message::{
        dkim::{DkimConfig, DkimSigningAlgorithm, DkimSigningKey},
        header::{HeaderName, HeaderValue},
        Mailbox, MultiPart,
    },
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::{AsyncSmtpConnection, Certificate, TlsParameters},
        commands::{Data, Ehlo, Mail, Rcpt},
        extension::{ClientId, Extension, MailBodyParameter, MailParameter},
    },
    Address, Message,
};

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a relay on loopback or a private network).
    None,
    /// Plain text upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

/// An SMTP server and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Connect, command and data timeouts (at most 30 s).
    pub timeout: Duration,
    /// A PEM file of certificate authorities trusted besides the usual roots (a relay with a
    /// certificate from an internal CA). Server configuration only: workspaces cannot name
    /// files on the server.
    pub ca_file: Option<String>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpSettings({})", self.redacted())
    }
}

impl SmtpSettings {
    /// Parses `smtp://user:pass@host:port?tls=none|starttls|tls&timeout=10` (`smtps://` means
    /// `tls=tls`). Without `tls`, port 465 means TLS, 587 STARTTLS, anything else none.
    pub fn parse(s: &str) -> Result<SmtpSettings, String> {
        let url = url::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
        let implicit = match url.scheme() {
            "smtp" => None,
            "smtps" => Some(SmtpTls::Tls),
            other => return Err(format!("scheme must be smtp or smtps, not {other}")),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("a host is required")?.to_string();
        let mut tls = implicit;
        let mut timeout = Duration::from_secs(30);
        let mut ca_file = None;
        for (k, v) in url.query_pairs() {
            match &*k {
                "tls" => {
                    tls = Some(match &*v {
                        "none" => SmtpTls::None,
                        "starttls" => SmtpTls::StartTls,
                        "tls" => SmtpTls::Tls,
                        _ => return Err("tls must be none, starttls or tls".into()),
                    })
                }
                "timeout" => {
                    let secs: u64 = v.parse().map_err(|_| "timeout must be whole seconds")?;
                    if !(1..=30).contains(&secs) {
                        return Err("timeout must be 1 to 30 seconds".into());
                    }
                    timeout = Duration::from_secs(secs);
                }
                "ca" => {
                    let pem = std::fs::read(&*v).map_err(|e| format!("ca: cannot read {v}: {e}"))?;
                    Certificate::from_pem(&pem).map_err(|e| format!("ca: {v} holds no PEM certificate: {e}"))?;
                    ca_file = Some(v.to_string());
                }
                _ => return Err(format!("unknown parameter {k}")),
            }
        }
        let port = url.port();
        let tls = tls.unwrap_or(match port {
            Some(465) => SmtpTls::Tls,
            Some(587) => SmtpTls::StartTls,
            _ => SmtpTls::None,
        });
        let port = port.unwrap_or(match tls {
            SmtpTls::Tls => 465,
            SmtpTls::StartTls => 587,
            SmtpTls::None => 25,
        });
        let decode = |s: &str| percent_decode(s);
        let username = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url.password().map(decode);
        Ok(SmtpSettings { host, port, tls, username, password, timeout, ca_file })
    }

    /// The URL without its password, for logs and API responses.
    pub fn redacted(&self) -> String {
        let tls = match self.tls {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
        };
        let user = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:********@"),
            (Some(u), None) => format!("{u}@"),
            _ => String::new(),
        };
        let ca = self.ca_file.as_ref().map(|c| format!("&ca={c}")).unwrap_or_default();
        format!("smtp://{user}{}:{}?tls={tls}{ca}", self.host, self.port)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// DKIM signing for a sending domain.
#[derive(Clone)]
pub struct Dkim {
    pub domain: String,
    pub selector: String,
    /// An RSA key in PKCS#1 PEM, or an Ed25519 key as base64 of its 32 bytes.
    pub private_key: String,
}

impl Dkim {
    fn config(&self) -> Result<DkimConfig, String> {
        let alg =
            if self.private_key.contains("BEGIN") { DkimSigningAlgorithm::Rsa } else { DkimSigningAlgorithm::Ed25519 };
        let key = DkimSigningKey::new(self.private_key.trim(), alg).map_err(|e| format!("DKIM key: {e}"))?;
        let headers = ["From", "Subject", "To", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"]
            .into_iter()
            .map(HeaderName::new_from_ascii_str)
            .collect();
        Ok(DkimConfig::new(
            self.selector.clone(),
            self.domain.clone(),
            key,
            headers,
            lettre::message::dkim::DkimCanonicalization {
                header: lettre::message::dkim::DkimCanonicalizationType::Relaxed,
                body: lettre::message::dkim::DkimCanonicalizationType::Relaxed,
            },
        ))
    }

    /// Checks the key can sign.
    pub fn check(&self) -> Result<(), String> {
        self.config().map(|_| ())
    }
}

/// One email, rendered.
#[derive(Debug, Clone)]
pub struct Email {
    pub from_name: Option<String>,
    pub from_email: String,
    pub reply_to: Option<String>,
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// Without angle brackets.
    pub message_id: String,
    /// The one-click unsubscribe URL (RFC 8058) and the mailto alternative.
    pub unsubscribe_url: Option<String>,
    pub unsubscribe_mailto: Option<String>,
}

/// A message ready for the wire.
pub struct Outgoing {
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
}

fn mailbox(name: Option<&str>, email: &str, field: &str) -> Result<Mailbox, String> {
    let address: Address = email.parse().map_err(|_| format!("{field} is not a valid address"))?;
    Ok(Mailbox::new(name.map(str::to_string), address))
}

impl Email {
    /// Builds the MIME message (multipart/alternative: the text part, then the HTML part).
    pub fn build(&self, dkim: Option<&Dkim>) -> Result<Outgoing, String> {
        let mut b = Message::builder()
            .from(mailbox(self.from_name.as_deref(), &self.from_email, "from_email")?)
            .to(mailbox(None, &self.to, "to")?)
            .subject(self.subject.clone())
            .message_id(Some(format!("<{}>", self.message_id)));
        if let Some(r) = &self.reply_to {
            b = b.reply_to(mailbox(None, r, "reply_to")?);
        }
        let mut list = vec![];
        if let Some(u) = &self.unsubscribe_url {
            list.push(format!("<{u}>"));
        }
        if let Some(m) = &self.unsubscribe_mailto {
            list.push(format!("<{m}>"));
        }
        if !list.is_empty() {
            b = b.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("List-Unsubscribe"), list.join(", ")));
        }
        if self.unsubscribe_url.is_some() {
            b = b.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ));
        }
        let mut m = b
            .multipart(MultiPart::alternative_plain_html(self.text.clone(), self.html.clone()))
            .map_err(|e| format!("message: {e}"))?;
        if let Some(d) = dkim {
            m.sign(&d.config()?);
        }
        Ok(Outgoing { envelope: m.envelope().clone(), bytes: m.formatted() })
    }
}

/// MAIL and RCPT commands followed by DATA, written at once; `command` then reads the first
/// reply (MAIL's).
struct PipelinedGroup<'a>(&'a str, Data);

impl std::fmt::Display for PipelinedGroup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.0, self.1)
    }
}

/// Why a message did not go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpFailure {
    /// 4xx, or the connection failed before the data was committed: try again later.
    Transient(String),
    /// 5xx at RCPT: the address does not exist (a hard bounce).
    Rejected(String),
    /// Any other 5xx: this message will never be accepted.
    Permanent(String),
}

impl SmtpFailure {
    fn from(e: lettre::transport::smtp::Error, rcpt: bool) -> SmtpFailure {
        let text = e.to_string();
        if e.is_permanent() {
            if rcpt {
                SmtpFailure::Rejected(text)
            } else {
                SmtpFailure::Permanent(text)
            }
        } else {
            SmtpFailure::Transient(text)
        }
    }

    pub fn message(&self) -> &str {
        match self {
            SmtpFailure::Transient(m) | SmtpFailure::Rejected(m) | SmtpFailure::Permanent(m) => m,
        }
    }
}

/// One SMTP connection of a sender's pool, (re)opened on demand.
pub struct SmtpLane {
    settings: SmtpSettings,
    conn: Option<AsyncSmtpConnection>,
    hello: ClientId,
    /// The server offers PIPELINING (RFC 2920): MAIL, RCPT and DATA go in one write.
    pipelining: bool,
}

impl SmtpLane {
    pub fn new(settings: SmtpSettings) -> SmtpLane {
        SmtpLane { settings, conn: None, hello: ClientId::Domain("cairn.localhost".into()), pipelining: false }
    }

    async fn open(&mut self) -> Result<&mut AsyncSmtpConnection, SmtpFailure> {
        if self.conn.as_ref().is_some_and(|c| c.has_broken()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let s = &self.settings;
            let transient = |e: lettre::transport::smtp::Error| SmtpFailure::Transient(format!("connect: {e}"));
            let tls = |host: &str| {
                let mut b = TlsParameters::builder(host.to_string());
                if let Some(path) = &s.ca_file {
                    let pem = std::fs::read(path).map_err(|e| SmtpFailure::Transient(format!("ca {path}: {e}")))?;
                    b = b.add_root_certificate(Certificate::from_pem(&pem).map_err(transient)?);
                }
                b.build().map_err(transient)
            };
            let mut c = match s.tls {
                // lettre's own connect for implicit TLS (it does not set TCP_NODELAY).
                SmtpTls::Tls => AsyncSmtpConnection::connect_tokio1(
                    (s.host.as_str(), s.port),
                    Some(s.timeout),
                    &self.hello,
                    Some(tls(&s.host)?),
                    None,
                )
                .await
                .map_err(transient)?,
                // Our own socket, with Nagle's algorithm off: the data and its final dot are two
                // writes, and with Nagle the second waits for the server's delayed ACK (40 ms a
                // message).
                _ => {
                    let tcp =
                        tokio::time::timeout(s.timeout, tokio::net::TcpStream::connect((s.host.as_str(), s.port)))
                            .await
                            .map_err(|_| SmtpFailure::Transient("connect: timed out".into()))?
                            .map_err(|e| SmtpFailure::Transient(format!("connect: {e}")))?;
                    tcp.set_nodelay(true).map_err(|e| SmtpFailure::Transient(format!("connect: {e}")))?;
                    tokio::time::timeout(
                        s.timeout,
                        AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
                    )
                    .await
                    .map_err(|_| SmtpFailure::Transient("greeting: timed out".into()))?
                    .map_err(transient)?
                }
            };
            if s.tls == SmtpTls::StartTls {
                if !c.can_starttls() {
                    return Err(SmtpFailure::Transient("the server does not offer STARTTLS".into()));
                }
                c.starttls(tls(&s.host)?, &self.hello).await.map_err(transient)?;
            }
            // lettre keeps only the EHLO keywords it knows, and PIPELINING is not one of them:
            // ask once more (before AUTH, which a second EHLO must not follow).
            self.pipelining = match c.command(Ehlo::new(self.hello.clone())).await {
                Ok(ehlo) => ehlo
                    .message()
                    .any(|line| line.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))),
                Err(e) if e.status().is_some() => false,
                Err(e) => return Err(transient(e)),
            };
            if let (Some(u), Some(p)) = (&s.username, &s.password) {
                c.auth(&[Mechanism::Plain, Mechanism::Login], &Credentials::new(u.clone(), p.clone()))
                    .await
                    .map_err(|e| SmtpFailure::Transient(format!("authentication: {e}")))?;
            }
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("just opened"))
    }

    /// Phase one: MAIL, RCPT and DATA. Nothing has been committed by the server when this
    /// returns: dropping the lane here (or a crash) discards the transaction.
    pub async fn prepare(&mut self, m: &Outgoing) -> Result<(), SmtpFailure> {
        let timeout = self.settings.timeout;
        let r = tokio::time::timeout(timeout, self.prepare_inner(m)).await;
        let r = r.unwrap_or_else(|_| Err(SmtpFailure::Transient("timed out".into())));
        if r.is_err() {
            self.reset().await;
        }
        r
    }

    async fn prepare_inner(&mut self, m: &Outgoing) -> Result<(), SmtpFailure> {
        self.open().await?;
        let pipelining = self.pipelining;
        let conn = self.conn.as_mut().expect("just opened");
        let mut params = vec![];
        if m.envelope.from().into_iter().chain(m.envelope.to()).any(|a: &Address| !AsRef::<str>::as_ref(a).is_ascii()) {
            params.push(MailParameter::SmtpUtfEight);
        }
        if !m.bytes.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mail = Mail::new(m.envelope.from().cloned(), params);
        let rcpts: Vec<Rcpt> = m.envelope.to().iter().map(|to| Rcpt::new(to.clone(), vec![])).collect();
        if !pipelining {
            conn.command(mail).await.map_err(|e| SmtpFailure::from(e, false))?;
            for rcpt in rcpts {
                conn.command(rcpt).await.map_err(|e| SmtpFailure::from(e, true))?;
            }
            conn.command(Data).await.map_err(|e| SmtpFailure::from(e, false))?;
            return Ok(());
        }
        // One write, then every reply in order (RFC 2920: DATA ends the group). A refusal
        // anywhere fails the message, but all replies are read so the connection stays in step.
        let mut group = format!("{mail}");
        for rcpt in &rcpts {
            group.push_str(&rcpt.to_string());
        }
        let mut first: Option<SmtpFailure> = None;
        let mut note = |r: Result<_, lettre::transport::smtp::Error>, rcpt: bool| {
            if let Err(e) = r {
                if e.status().is_none() {
                    return Err(SmtpFailure::Transient(e.to_string()));
                }
                first.get_or_insert(SmtpFailure::from(e, rcpt));
            }
            Ok(())
        };
        note(conn.command(PipelinedGroup(&group, Data)).await, false)?;
        for _ in &rcpts {
            note(conn.read_response().await, true)?;
        }
        let data = conn.read_response().await;
        let data_accepted = data.is_ok();
        note(data, false)?;
        match first {
            None => Ok(()),
            Some(f) => {
                if data_accepted {
                    // The server took DATA although a command before it failed: end the
                    // (empty) message so that the connection is usable again.
                    let _ = conn.message(b"").await;
                }
                Err(f)
            }
        }
    }

    /// Phase two: the data and its final dot; the server commits the message. An error after
    /// the data was written (a timeout, a lost connection) is returned as `Ok(false)`: the
    /// message may have been accepted, and must not be sent again.
    pub async fn commit(&mut self, m: &Outgoing) -> Result<bool, SmtpFailure> {
        let timeout = self.settings.timeout;
        let Some(conn) = self.conn.as_mut() else {
            return Err(SmtpFailure::Transient("not prepared".into()));
        };
        match tokio::time::timeout(timeout, conn.message(&m.bytes)).await {
            Ok(Ok(_)) => Ok(true),
            // A reply (4xx, 5xx) refusing the message: it was not accepted.
            Ok(Err(e)) if e.status().is_some() => {
                let f = SmtpFailure::from(e, false);
                self.reset().await;
                Err(f)
            }
            _ => {
                self.conn = None;
                Ok(false)
            }
        }
    }

    /// Abandons the current transaction (RSET), or the connection if that fails.
    pub async fn reset(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            let ok = tokio::time::timeout(Duration::from_secs(5), c.command(lettre::transport::smtp::commands::Rset))
                .await
                .is_ok_and(|r| r.is_ok());
            if !ok {
                self.conn = None;
            }
        }
    }

    /// Sends one message in both phases (test sends and one-off messages).
    pub async fn send(&mut self, m: &Outgoing) -> Result<(), SmtpFailure> {
        self.prepare(m).await?;
        match self.commit(m).await? {
            true => Ok(()),
            false => Err(SmtpFailure::Transient("the server did not confirm the message".into())),
        }
    }

    pub async fn quit(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.quit()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = SmtpSettings::parse("smtp://me%40x.io:p%3Ass@mail.example.com:2525?tls=starttls&timeout=10").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("mail.example.com", 2525, SmtpTls::StartTls));
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (Some("me@x.io"), Some("p:ss")));
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.redacted(), "smtp://me@x.io:********@mail.example.com:2525?tls=starttls");
        assert_eq!(SmtpSettings::parse("smtps://h").unwrap().port, 465);
        assert_eq!(SmtpSettings::parse("smtp://h:587").unwrap().tls, SmtpTls::StartTls);
        assert_eq!(SmtpSettings::parse("smtp://h").unwrap().tls, SmtpTls::None);
        assert!(SmtpSettings::parse("http://h").is_err());
        assert!(SmtpSettings::parse("smtp://h?tls=maybe").is_err());
        assert!(SmtpSettings::parse("smtp://h?timeout=60").is_err());
    }

    #[test]
    fn headers() {
        let e = Email {
            from_name: Some("Team".into()),
            from_email: "hello@shop.test".into(),
            reply_to: None,
            to: "ana@example.com".into(),
            subject: "Hi".into(),
            html: "<p>Hi</p>".into(),
            text: "Hi".into(),
            message_id: "c1.s2@shop.test".into(),
            unsubscribe_url: Some("https://cairn.test/u/abc".into()),
            unsubscribe_mailto: Some("mailto:unsubscribe@shop.test?subject=unsubscribe".into()),
        };
        // Unfolded (long header lines are folded with CRLF and a space).
        let out = String::from_utf8(e.build(None).unwrap().bytes).unwrap().replace("\r\n ", " ");
        assert!(out.contains("Message-ID: <c1.s2@shop.test>"), "{out}");
        assert!(out.contains(
            "List-Unsubscribe: <https://cairn.test/u/abc>, <mailto:unsubscribe@shop.test?subject=unsubscribe>"
        ));
        assert!(out.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(out.contains("multipart/alternative"));
    }
}
