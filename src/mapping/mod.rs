//! Profiles: a profile is a table of rules, one per output field.
//!
//! The table is the single source of truth. The [`Normalizer`](crate::Normalizer)
//! runs it, [`catalogue`](crate::catalogue) prints it as the field catalogue and
//! the index template, and the README's field table is generated from it.

mod documented;

use std::fmt;

/// The Elasticsearch / ECS type a field is indexed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EcsType {
    /// `keyword`: a string.
    Keyword,
    /// `wildcard`: a string, indexed for wildcard search.
    Wildcard,
    /// `text` (ECS `match_only_text`): full text.
    Text,
    /// `long`: a JSON integer.
    Long,
    /// `date`: an RFC 3339 string.
    Date,
    /// `ip`: an IPv4 or IPv6 address string.
    Ip,
}

impl EcsType {
    /// The mapping type's name, as written in an index template.
    pub fn name(self) -> &'static str {
        match self {
            EcsType::Keyword => "keyword",
            EcsType::Wildcard => "wildcard",
            EcsType::Text => "text",
            EcsType::Long => "long",
            EcsType::Date => "date",
            EcsType::Ip => "ip",
        }
    }
}

impl fmt::Display for EcsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a row value becomes a field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Convert {
    /// The value's text (see [`crate::value::text`]).
    Text,
    /// An integer, or a string holding a base-10 integer; anything else leaves the
    /// field out and counts a warning.
    Integer,
    /// The text when it is a valid IPv4 or IPv6 address; otherwise the field is left
    /// out and a warning is counted.
    IpAddress,
    /// The text with its first two and last two characters cut (Python `s[2:-2]`);
    /// left out when that is empty.
    Strip2,
    /// A one-element list of the text, and `[""]` when the value is absent (the
    /// documented output does this for `registry.data.strings`).
    ListOrEmpty,
}

/// Where a field's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The row's original JSON text.
    Original,
    /// A fixed string.
    Constant(&'static str),
    /// One key of the row, converted.
    Key(&'static str, Convert),
    /// The first of these keys whose value parses as a time (see [`crate::time`]);
    /// the time of normalization, with a warning, when none does.
    FirstTime(&'static [&'static str]),
    /// A one-element list of another field's value, when that field is set.
    ListOf(&'static str),
}

/// One output field and the rule that fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The dotted ECS name, e.g. `source.geo.city_name`.
    pub name: &'static str,
    /// The indexed type.
    pub ecs_type: EcsType,
    /// True when the value is a JSON list (ECS `Normalization=array`).
    pub array: bool,
    /// What the field means.
    pub description: &'static str,
    /// The rule.
    pub source: Source,
}

impl Field {
    /// The row keys this field reads, in the order it tries them.
    pub fn row_keys(&self) -> Vec<&'static str> {
        match self.source {
            Source::Key(key, _) => vec![key],
            Source::FirstTime(keys) => keys.to_vec(),
            _ => Vec::new(),
        }
    }

    /// A short human description of where the value comes from, for the catalogue.
    pub fn origin(&self) -> String {
        match self.source {
            Source::Original => "the row's JSON text".to_string(),
            Source::Constant(c) => format!("always `{c}`"),
            Source::Key(key, _) => format!("`{key}`"),
            Source::FirstTime(keys) => {
                let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                format!("first that parses of {}", keys.join(", "))
            }
            Source::ListOf(field) => format!("`[{field}]`"),
        }
    }
}

/// A named table of fields. The order of the table is the key order of the output.
#[derive(Debug, Clone)]
pub struct Profile {
    name: &'static str,
    fields: &'static [Field],
}

impl Profile {
    /// The documented profile, the default: the contract of the integration page.
    pub fn documented() -> Profile {
        Profile {
            name: "documented",
            fields: documented::FIELDS,
        }
    }

    /// Looks a profile up by name.
    pub fn by_name(name: &str) -> Option<Profile> {
        match name {
            "documented" => Some(Profile::documented()),
            _ => None,
        }
    }

    /// The names accepted by [`Profile::by_name`].
    pub const NAMES: &'static [&'static str] = &["documented"];

    /// The profile's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The fields, in output order.
    pub fn fields(&self) -> &'static [Field] {
        self.fields
    }

    /// The field of that name.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}
