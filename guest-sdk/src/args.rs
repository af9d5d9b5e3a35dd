//! Job arguments, parsed like Flink's `ParameterTool.fromArgs`.

use crate::Error;
use std::collections::BTreeMap;
use std::str::FromStr;

/// The arguments after `--` on the `weir run` command line, as `--key value`
/// pairs (a `--flag` without a value is `"true"`).
///
/// ```
/// let args = weir_sdk::Args::parse(&["--input".into(), "in.txt".into(), "--verbose".into()]).unwrap();
/// assert_eq!(args.get("input"), Some("in.txt"));
/// assert!(args.has("verbose"));
/// assert_eq!(args.get_or("port", 9000u16).unwrap(), 9000);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    values: BTreeMap<String, String>,
    raw: Vec<String>,
}

impl Args {
    /// Parses `--key value` pairs.
    pub fn parse(raw: &[String]) -> Result<Args, Error> {
        let mut values = BTreeMap::new();
        let mut i = 0;
        while i < raw.len() {
            let arg = &raw[i];
            let Some(key) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(Error::new(format!(
                    "unexpected argument '{arg}': job arguments are --key value pairs"
                )));
            };
            if key.is_empty() {
                return Err(Error::new("empty argument name '--'"));
            }
            let value = match raw.get(i + 1) {
                Some(v) if !v.starts_with("--") => {
                    i += 1;
                    v.clone()
                }
                _ => "true".to_owned(),
            };
            values.insert(key.to_owned(), value);
            i += 1;
        }
        Ok(Args {
            values,
            raw: raw.to_vec(),
        })
    }

    /// The value of `--key`, if given.
    ///
    /// ```
    /// let args = weir_sdk::Args::parse(&["--port".into(), "9000".into()]).unwrap();
    /// assert_eq!(args.get("port"), Some("9000"));
    /// ```
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Whether `--key` was given.
    ///
    /// ```
    /// let args = weir_sdk::Args::parse(&["--fast".into()]).unwrap();
    /// assert!(args.has("fast"));
    /// ```
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The value of `--key`, or an error naming the missing argument.
    ///
    /// ```
    /// let args = weir_sdk::Args::parse(&[]).unwrap();
    /// assert!(args.required("input").unwrap_err().to_string().contains("--input"));
    /// ```
    pub fn required(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::new(format!("missing required argument --{key}")))
    }

    /// The value of `--key` parsed as `T`, or `default` when absent.
    ///
    /// ```
    /// let args = weir_sdk::Args::parse(&["--rate".into(), "10".into()]).unwrap();
    /// assert_eq!(args.get_or("rate", 1u32).unwrap(), 10);
    /// ```
    pub fn get_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| Error::new(format!("argument --{key} '{v}' is not valid: {e}"))),
        }
    }

    /// The value of `--key` parsed as `T`, or an error when absent.
    ///
    /// ```
    /// let args = weir_sdk::Args::parse(&["--port".into(), "x".into()]).unwrap();
    /// assert!(args.parse_required::<u16>("port").is_err());
    /// ```
    pub fn parse_required<T: FromStr>(&self, key: &str) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.required(key)?;
        v.parse()
            .map_err(|e| Error::new(format!("argument --{key} '{v}' is not valid: {e}")))
    }

    /// The arguments as given.
    ///
    /// ```
    /// let args = weir_sdk::Args::parse(&["--a".into(), "1".into()]).unwrap();
    /// assert_eq!(args.raw().len(), 2);
    /// ```
    pub fn raw(&self) -> &[String] {
        &self.raw
    }
}
