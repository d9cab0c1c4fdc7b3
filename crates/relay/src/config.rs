//! Settings: defaults, an optional TOML file, `TROTH_RELAY_*` environment
//! variables and flags (later ones win), validated at start-up with errors
//! that name the bad setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Limits applied to every route. All are configurable under `[limits]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body in bytes (an event of `MAX_EVENT` bytes in base64 JSON fits).
    pub max_body_bytes: usize,
    /// Most events one space may hold.
    pub max_events_per_space: u64,
    /// Longest a request may take, in seconds (more than a long poll's 25 s).
    pub request_timeout_secs: u64,
    /// Most requests handled at once; more wait their turn.
    pub max_concurrent_requests: usize,
    /// Most live (WebSocket) connections at once.
    pub max_live_connections: usize,
    /// How far a signed request's time may be from the relay's clock, in seconds.
    pub time_window_secs: u64,
    /// Requests per second per client address (sustained).
    pub per_ip_per_second: u32,
    /// Requests per client address in a burst.
    pub per_ip_burst: u32,
    /// Authenticated requests per second per device key (sustained).
    pub per_device_per_second: u32,
    /// Authenticated requests per device key in a burst.
    pub per_device_burst: u32,
    /// Rendezvous mailboxes opened or claimed per minute per client address.
    pub rendezvous_per_ip_per_minute: u32,
    /// Rendezvous opens or claims per client address in a burst.
    pub rendezvous_burst: u32,
    /// Take the client address from the last `X-Forwarded-For` entry (only
    /// behind a reverse proxy that sets it).
    pub trust_forwarded_for: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 128 * 1024,
            max_events_per_space: 1_000_000,
            request_timeout_secs: 30,
            max_concurrent_requests: 1024,
            max_live_connections: 20_000,
            time_window_secs: 300,
            per_ip_per_second: 100,
            per_ip_burst: 400,
            per_device_per_second: 50,
            per_device_burst: 200,
            rendezvous_per_ip_per_minute: 20,
            rendezvous_burst: 10,
            trust_forwarded_for: false,
        }
    }
}

impl Limits {
    /// Limits that do not get in a benchmark's way (still finite).
    pub fn generous() -> Self {
        Limits {
            per_ip_per_second: 1_000_000,
            per_ip_burst: 1_000_000,
            per_device_per_second: 1_000_000,
            per_device_burst: 1_000_000,
            rendezvous_per_ip_per_minute: 1_000_000,
            rendezvous_burst: 1_000_000,
            max_concurrent_requests: 4096,
            max_live_connections: 100_000,
            ..Self::default()
        }
    }

    /// Checks every limit, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let min_body = troth_core::event::MAX_EVENT.div_ceil(3) * 4 + 64;
        let checks: [(&str, bool, String); 10] = [
            (
                "limits.max_body_bytes",
                self.max_body_bytes >= min_body,
                format!("must be at least {min_body} so that one event fits"),
            ),
            (
                "limits.max_events_per_space",
                self.max_events_per_space >= 1,
                "must be at least 1".into(),
            ),
            (
                "limits.request_timeout_secs",
                (26..=3600).contains(&self.request_timeout_secs),
                "must be between 26 (long polls wait up to 25 s) and 3600".into(),
            ),
            (
                "limits.max_concurrent_requests",
                self.max_concurrent_requests >= 1,
                "must be at least 1".into(),
            ),
            (
                "limits.max_live_connections",
                self.max_live_connections >= 1,
                "must be at least 1".into(),
            ),
            (
                "limits.time_window_secs",
                (10..=86_400).contains(&self.time_window_secs),
                "must be between 10 and 86400".into(),
            ),
            (
                "limits.per_ip_per_second / per_ip_burst",
                self.per_ip_per_second >= 1 && self.per_ip_burst >= 1,
                "must be at least 1".into(),
            ),
            (
                "limits.per_device_per_second / per_device_burst",
                self.per_device_per_second >= 1 && self.per_device_burst >= 1,
                "must be at least 1".into(),
            ),
            (
                "limits.rendezvous_per_ip_per_minute / rendezvous_burst",
                self.rendezvous_per_ip_per_minute >= 1 && self.rendezvous_burst >= 1,
                "must be at least 1".into(),
            ),
            ("limits", true, String::new()),
        ];
        for (name, ok, why) in checks {
            if !ok {
                return Err(ConfigError::Invalid {
                    setting: name.into(),
                    why,
                });
            }
        }
        Ok(())
    }
}

/// The relay's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder of the sled database.
    pub data: PathBuf,
    /// sled's page cache, in MiB.
    pub cache_mb: u64,
    /// Where events are stored.
    pub store: StoreConfig,
    /// Limits.
    pub limits: Limits,
    /// Origins (`https://app.example.org`) whose pages may call this relay
    /// from a browser (CORS): copies of the web client served elsewhere,
    /// e.g. by `troth web serve`. Empty: only pages this relay served.
    pub web_origins: Vec<String>,
    /// Web Push (`[push]`; docs/RELAY.md "Notifications").
    pub push: crate::push::PushSettings,
    /// Help words and links per language for the private moment (`[[help]]`).
    pub help: Vec<crate::help::Help>,
}

/// Which store the relay uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded sled database in `data` (the default).
    Sled,
    /// A PostgreSQL database.
    Postgres {
        /// The connection settings (may hold a password: never printed).
        url: DatabaseUrl,
        /// Most connections in the pool.
        pool_size: usize,
    },
}

/// A PostgreSQL connection URL or key=value string, checked to parse; its
/// `Debug` does not show it (it may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The connection settings.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
        self.0.parse()
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(…)")
    }
}

/// The store settings given by flags or environment variables, each with
/// the name of where it came from (for error messages).
#[derive(Debug, Default)]
pub struct StoreArgs<'a> {
    /// `--store` / `TROTH_RELAY_STORE`.
    pub store: Option<(&'a str, String)>,
    /// `--database-url` / `TROTH_RELAY_DATABASE_URL`.
    pub database_url: Option<(&'a str, String)>,
    /// `--database-url-file` / `TROTH_RELAY_DATABASE_URL_FILE`.
    pub database_url_file: Option<(&'a str, PathBuf)>,
}

/// What a TOML file may say (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data: Option<PathBuf>,
    cache_mb: Option<u64>,
    store: Option<String>,
    database_url: Option<String>,
    database_url_file: Option<PathBuf>,
    database_pool_size: Option<usize>,
    web_origins: Option<Vec<String>>,
    limits: Limits,
    push: crate::push::PushSettings,
    help: Vec<crate::help::Help>,
}

fn store_config(fc: &FileConfig, args: StoreArgs<'_>) -> Result<StoreConfig, ConfigError> {
    let (store_name, kind) = match args.store {
        Some((n, v)) => (n.to_string(), v),
        None => match &fc.store {
            Some(v) => ("store (config file)".to_string(), v.clone()),
            None => ("store".to_string(), "sled".to_string()),
        },
    };
    match kind.trim() {
        "sled" => return Ok(StoreConfig::Sled),
        "postgres" | "postgresql" => {}
        other => {
            return Err(ConfigError::Invalid {
                setting: store_name,
                why: format!("is `{other}`, not `sled` or `postgres`"),
            });
        }
    }
    let read_file = |name: String, p: &Path| -> Result<(String, String), ConfigError> {
        let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Invalid {
            setting: name.clone(),
            why: format!("names {}, which cannot be read: {e}", p.display()),
        })?;
        Ok((name, text.trim().to_string()))
    };
    let (url_name, url) = if let Some((n, v)) = args.database_url {
        (n.to_string(), v)
    } else if let Some((n, p)) = args.database_url_file {
        read_file(n.to_string(), &p)?
    } else if let Some(v) = &fc.database_url {
        ("database_url (config file)".to_string(), v.clone())
    } else if let Some(p) = &fc.database_url_file {
        read_file("database_url_file (config file)".to_string(), p)?
    } else {
        return Err(ConfigError::Invalid {
            setting: "--database-url".into(),
            why: format!(
                "is missing: `{store_name}` is postgres, which needs a database URL \
                 (--database-url, TROTH_RELAY_DATABASE_URL, TROTH_RELAY_DATABASE_URL_FILE \
                 or database_url in the config file)"
            ),
        });
    };
    let url = DatabaseUrl(url.trim().to_string());
    if let Err(e) = url.pg_config() {
        // The value itself may hold a password: not repeated here.
        return Err(ConfigError::Invalid {
            setting: url_name,
            why: format!(
                "is not a PostgreSQL connection URL like postgres://user@host:5432/db ({e})"
            ),
        });
    }
    let pool_size = fc.database_pool_size.unwrap_or(16);
    if !(1..=1000).contains(&pool_size) {
        return Err(ConfigError::Invalid {
            setting: "database_pool_size".into(),
            why: "must be between 1 and 1000".into(),
        });
    }
    Ok(StoreConfig::Postgres { url, pool_size })
}

/// Checks a list of web origins (`scheme://host[:port]`, http or https, no
/// path, no trailing slash) and returns them as browsers send them
/// (lowercase), naming `setting` in the error.
pub fn check_web_origins(setting: &str, list: &[String]) -> Result<Vec<String>, ConfigError> {
    list.iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .map(|o| {
            let lower = o.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("https://")
                .or_else(|| lower.strip_prefix("http://"));
            let ok = rest.is_some_and(|r| {
                !r.is_empty()
                    && r.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
            });
            if ok {
                Ok(lower)
            } else {
                Err(ConfigError::Invalid {
                    setting: setting.into(),
                    why: format!(
                        "has `{o}`, not an origin like https://app.example.org or http://127.0.0.1:8090 (scheme, host and port only)"
                    ),
                })
            }
        })
        .collect()
}

/// A configuration problem, naming the setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value the relay cannot use.
    #[error("setting `{setting}` {why}")]
    Invalid {
        /// The setting (flag, variable or key).
        setting: String,
        /// What is wrong.
        why: String,
    },
    /// The config file cannot be read or parsed.
    #[error("config file {path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Where the relay keeps its data when told nothing:
/// `$XDG_DATA_HOME/troth-relay`, else `$HOME/.local/share/troth-relay`.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(x);
        if p.is_absolute() {
            return Some(p.join("troth-relay"));
        }
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/troth-relay"))
}

impl Config {
    /// Resolves the configuration: `file` (if any) under the values given by
    /// flags or environment (`listen`, `data`, as strings, with the name of
    /// where each came from for error messages).
    pub fn resolve(
        file: Option<&Path>,
        listen: Option<(&str, String)>,
        data: Option<(&str, PathBuf)>,
    ) -> Result<Config, ConfigError> {
        Self::resolve_with_store(file, listen, data, StoreArgs::default())
    }

    /// [`Config::resolve`], with the store settings given by flags or environment.
    pub fn resolve_with_store(
        file: Option<&Path>,
        listen: Option<(&str, String)>,
        data: Option<(&str, PathBuf)>,
        store: StoreArgs<'_>,
    ) -> Result<Config, ConfigError> {
        let fc: FileConfig = match file {
            None => FileConfig::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::File {
                    path: p.to_path_buf(),
                    why: e.to_string(),
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::File {
                    path: p.to_path_buf(),
                    why: e.to_string().trim().replace('\n', " "),
                })?
            }
        };
        let store = store_config(&fc, store)?;
        let (listen_name, listen) = match listen {
            Some((name, v)) => (name.to_string(), v),
            None => match fc.listen {
                Some(v) => ("listen (config file)".to_string(), v),
                None => ("listen".to_string(), "127.0.0.1:8080".to_string()),
            },
        };
        let listen: SocketAddr = listen.trim().parse().map_err(|_| ConfigError::Invalid {
            setting: listen_name,
            why: format!("is `{listen}`, not an address like 127.0.0.1:8080"),
        })?;
        let data = match data.map(|(_, p)| p).or(fc.data.clone()) {
            Some(p) if p.as_os_str().is_empty() => {
                return Err(ConfigError::Invalid {
                    setting: "data".into(),
                    why: "is empty".into(),
                });
            }
            Some(p) => p,
            None => default_data_dir().ok_or_else(|| ConfigError::Invalid {
                setting: "data".into(),
                why: "has no default here (neither XDG_DATA_HOME nor HOME is set): pass --data DIR"
                    .into(),
            })?,
        };
        let cache_mb = fc.cache_mb.unwrap_or(64);
        if !(1..=65_536).contains(&cache_mb) {
            return Err(ConfigError::Invalid {
                setting: "cache_mb".into(),
                why: "must be between 1 and 65536".into(),
            });
        }
        fc.limits.validate()?;
        let web_origins = match &fc.web_origins {
            Some(list) => check_web_origins("web_origins (config file)", list)?,
            None => Vec::new(),
        };
        fc.push.validate()?;
        let mut push = fc.push;
        push.test_origins = check_web_origins("push.test_origins", &push.test_origins)?;
        crate::help::check(&fc.help)?;
        Ok(Config {
            listen,
            data,
            cache_mb,
            store,
            limits: fc.limits,
            web_origins,
            push,
            help: fc.help,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_origins_are_checked() {
        let ok = check_web_origins(
            "--web-origin",
            &[
                "HTTPS://App.example.org".into(),
                " http://127.0.0.1:8090 ".into(),
            ],
        )
        .ok();
        assert_eq!(
            ok,
            Some(vec![
                "https://app.example.org".to_string(),
                "http://127.0.0.1:8090".to_string()
            ])
        );
        for bad in [
            "app.example.org",
            "https://a.example/",
            "https://a.example/x",
            "ftp://a",
            "*",
        ] {
            let e = check_web_origins("--web-origin", &[bad.into()])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("--web-origin") && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_validate() {
        assert!(Limits::default().validate().is_ok());
        assert!(Limits::generous().validate().is_ok());
    }

    #[test]
    fn bad_settings_are_named() {
        let e = Config::resolve(
            None,
            Some(("--listen", "nope".into())),
            Some(("--data", "/tmp/x".into())),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("--listen"), "{e}");
        let dir = std::env::temp_dir().join(format!("troth-relay-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let f = dir.join("relay.toml");
        std::fs::write(&f, "[limits]\ntime_window_secs = 1\n").ok();
        let e = Config::resolve(Some(&f), None, Some(("--data", "/tmp/x".into())))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("limits.time_window_secs"), "{e}");
        std::fs::write(&f, "listen = \"127.0.0.1:9\"\nbogus = 1\n").ok();
        let e = Config::resolve(Some(&f), None, Some(("--data", "/tmp/x".into())))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("bogus"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    fn store_err(args: StoreArgs<'_>) -> String {
        Config::resolve_with_store(None, None, Some(("--data", "/tmp/x".into())), args)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn store_settings_are_checked_and_named() {
        let ok = Config::resolve_with_store(
            None,
            None,
            Some(("--data", "/tmp/x".into())),
            StoreArgs::default(),
        )
        .map(|c| c.store);
        assert!(matches!(ok, Ok(StoreConfig::Sled)));
        let e = store_err(StoreArgs {
            store: Some(("--store", "mysql".into())),
            ..StoreArgs::default()
        });
        assert!(e.contains("`--store`") && e.contains("mysql"), "{e}");
        let e = store_err(StoreArgs {
            store: Some(("TROTH_RELAY_STORE", "postgres".into())),
            ..StoreArgs::default()
        });
        assert!(e.contains("--database-url") && e.contains("missing"), "{e}");
        let e = store_err(StoreArgs {
            store: Some(("--store", "postgres".into())),
            database_url: Some(("--database-url", "postgres://u:sekrit@h:notaport/db".into())),
            ..StoreArgs::default()
        });
        assert!(e.contains("`--database-url`"), "{e}");
        assert!(!e.contains("sekrit"), "the password is repeated: {e}");
        let e = store_err(StoreArgs {
            store: Some(("--store", "postgres".into())),
            database_url_file: Some((
                "TROTH_RELAY_DATABASE_URL_FILE",
                "/nonexistent/troth-url".into(),
            )),
            ..StoreArgs::default()
        });
        assert!(e.contains("TROTH_RELAY_DATABASE_URL_FILE"), "{e}");
        let dir = tempfile_dir();
        let f = dir.join("url");
        std::fs::write(&f, "postgres://relay@127.0.0.1:5432/troth\n").ok();
        let got = Config::resolve_with_store(
            None,
            None,
            Some(("--data", "/tmp/x".into())),
            StoreArgs {
                store: Some(("--store", "postgres".into())),
                database_url_file: Some(("--database-url-file", f.clone())),
                ..StoreArgs::default()
            },
        );
        match got.map(|c| c.store) {
            Ok(StoreConfig::Postgres { url, pool_size }) => {
                assert_eq!(pool_size, 16);
                assert!(url.pg_config().is_ok());
                assert_eq!(format!("{url:?}"), "DatabaseUrl(…)");
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("troth-relay-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        dir
    }
}
