//! Parsing of string-valued settings (configuration keys, connector
//! options) into typed fields, for use with `#[serde(deserialize_with)]`.

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use std::fmt;
use std::time::Duration;

/// Parses a map of string options into `T` (a struct with
/// `deny_unknown_fields`), naming `what` in errors.
pub fn from_options<T: DeserializeOwned>(
    what: &str,
    options: &[(String, String)],
) -> Result<T, String> {
    let mut map = serde_json::Map::new();
    for (k, v) in options {
        if map
            .insert(k.clone(), serde_json::Value::String(v.clone()))
            .is_some()
        {
            return Err(format!("{what}: option '{k}' is given twice"));
        }
    }
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| format!("{what}: {e}"))
}

pub fn parsed<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    s.trim()
        .parse()
        .map_err(|e| serde::de::Error::custom(format!("'{s}': {e}")))
}

/// An optional option parsed from its text (with `#[serde(default)]`).
pub fn opt_parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    parsed(d).map(Some)
}

pub fn upper<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let s = String::deserialize(d)?;
    let norm = s.trim().to_ascii_uppercase().replace('-', "_");
    serde_json::from_value(serde_json::Value::String(norm))
        .map_err(|e| serde::de::Error::custom(format!("'{s}': {e}")))
}

pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    parse_bytes(&s).map_err(serde::de::Error::custom)
}

/// Parses sizes such as `512mb`, `1 gb`, `4096`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size such as 512mb or 1gb"))?;
    let mult = match unit.trim() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("'{s}' has an unknown unit; use b, kb, mb or gb")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// A duration as Flink writes some: a plain number of seconds, or a
/// duration such as `1h`.
pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(t).map_err(|e| {
        serde::de::Error::custom(format!(
            "'{s}' is not a number of seconds or a duration such as 1h: {e}"
        ))
    })
}

pub mod human {
    use super::*;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map_err(|e| {
            serde::de::Error::custom(format!("'{s}' is not a duration such as 10s or 5min: {e}"))
        })
    }
}

pub mod human_opt {
    use super::*;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        match s.as_deref().map(str::trim) {
            None | Some("") | Some("none") | Some("off") => Ok(None),
            Some(v) => humantime::parse_duration(v).map(Some).map_err(|e| {
                serde::de::Error::custom(format!("'{v}' is not a duration such as 10s: {e}"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("12 parsecs").is_err());
    }

    #[test]
    fn options_parse_into_structs() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct O {
            #[serde(deserialize_with = "parsed")]
            port: u16,
            #[serde(with = "human")]
            timeout: Duration,
        }
        let o: O = from_options(
            "socket",
            &[
                ("port".into(), "99".into()),
                ("timeout".into(), "2s".into()),
            ],
        )
        .unwrap();
        assert_eq!(o.port, 99);
        assert_eq!(o.timeout, Duration::from_secs(2));
        let e = from_options::<O>("socket", &[("prot".into(), "1".into())]).unwrap_err();
        assert!(e.contains("prot"), "{e}");
    }
}
