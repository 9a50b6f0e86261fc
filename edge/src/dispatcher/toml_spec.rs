//! Destination sets in `edge.toml`: `[[dispatcher.destination]]` tables, the
//! same fields as a `dispatcher.list` line with the known attributes as keys.
//!
//! ```toml
//! [[dispatcher.destination]]
//! set = 1
//! uri = "sip:10.0.0.11:5060"
//! duid = "media-1"
//! weight = 50
//! maxload = 500
//! attrs = "site=fra"   # any other attributes, Kamailio syntax
//! ```

use serde::{Deserialize, Serialize};

use super::sets::{
    DestinationSets, DestinationSpec, LoadError, LoadErrorKind, Origin, SetLimits, SetsBuilder,
};

/// One destination in TOML.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TomlDestination {
    /// Set id.
    pub set: u32,
    /// Destination URI.
    pub uri: String,
    /// Flag bits (1 inactive, 2 trying, 4 disabled, 8 probing, 32 no-ping).
    #[serde(default)]
    pub flags: u32,
    /// Priority (algorithm 8: higher first).
    #[serde(default)]
    pub priority: i32,
    /// `duid` attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duid: Option<String>,
    /// `weight` attribute, 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    /// `rweight` attribute, 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rweight: Option<u8>,
    /// `maxload` attribute, 0 = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxload: Option<u32>,
    /// `socket` attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// `ping_from` attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_from: Option<String>,
    /// Further attributes in Kamailio syntax (`name=value;...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<String>,
}

impl TomlDestination {
    /// The attrs text: `attrs` first, then the keyed attributes.
    fn attrs_body(&self) -> String {
        let mut parts: Vec<String> = self
            .attrs
            .iter()
            .filter(|a| !a.is_empty())
            .cloned()
            .collect();
        let text = [
            ("duid", &self.duid),
            ("socket", &self.socket),
            ("ping_from", &self.ping_from),
        ];
        parts.extend(
            text.iter()
                .filter_map(|(k, v)| Some(format!("{k}={}", v.as_ref()?))),
        );
        let nums = [
            ("weight", self.weight.map(u32::from)),
            ("rweight", self.rweight.map(u32::from)),
            ("maxload", self.maxload),
        ];
        parts.extend(
            nums.iter()
                .filter_map(|(k, v)| Some(format!("{k}={}", (*v)?))),
        );
        parts.join(";")
    }
}

/// The `[dispatcher]` table's destination part.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TomlDispatcher {
    /// `[[dispatcher.destination]]` entries.
    #[serde(default)]
    pub destination: Vec<TomlDestination>,
}

impl DestinationSets {
    /// Sets from `[[dispatcher.destination]]` entries; the first bad entry
    /// fails all, named by `file` and its index.
    pub fn from_toml(
        entries: &[TomlDestination],
        file: &str,
        limits: &SetLimits,
    ) -> Result<Self, LoadError> {
        let mut builder = SetsBuilder::new(*limits);
        for (index, e) in entries.iter().enumerate() {
            let attrs = e.attrs_body();
            let spec = DestinationSpec {
                set: e.set,
                uri: &e.uri,
                flags: e.flags,
                priority: e.priority,
                attrs: &attrs,
            };
            builder
                .push(&spec)
                .map_err(|kind| entry_error(file, index, kind))?;
        }
        Ok(builder.finish())
    }

    /// Sets from a TOML value: the `[dispatcher]` table (its `destination`
    /// array is read, other keys are left to the config) or the array itself.
    pub fn from_toml_value(
        value: &toml::Value,
        file: &str,
        limits: &SetLimits,
    ) -> Result<Self, LoadError> {
        let empty = Vec::new();
        let array = match value {
            toml::Value::Array(a) => a,
            toml::Value::Table(t) => match t.get("destination") {
                Some(toml::Value::Array(a)) => a,
                None => &empty,
                Some(_) => {
                    return Err(file_error(
                        file,
                        "`dispatcher.destination` must be an array of tables",
                    ))
                }
            },
            _ => return Err(file_error(file, "`dispatcher` must be a table")),
        };
        let mut entries = Vec::with_capacity(array.len().min(limits.max_destinations));
        for (index, v) in array.iter().enumerate() {
            let e: TomlDestination = v.clone().try_into().map_err(|e: toml::de::Error| {
                entry_error(file, index, LoadErrorKind::BadToml(e.message().to_string()))
            })?;
            entries.push(e);
        }
        Self::from_toml(&entries, file, limits)
    }
}

fn entry_error(file: &str, index: usize, kind: LoadErrorKind) -> LoadError {
    LoadError {
        origin: Origin::Entry {
            file: file.to_string(),
            index,
        },
        kind,
    }
}

fn file_error(file: &str, text: &str) -> LoadError {
    LoadError {
        origin: Origin::File {
            file: file.to_string(),
        },
        kind: LoadErrorKind::BadToml(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_free_attrs_merge() {
        let e = TomlDestination {
            set: 1,
            uri: "sip:10.0.0.1".into(),
            duid: Some("m1".into()),
            weight: Some(50),
            attrs: Some("site=fra".into()),
            ..Default::default()
        };
        assert_eq!(e.attrs_body(), "site=fra;duid=m1;weight=50");
    }
}
