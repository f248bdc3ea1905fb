//! Profiles: a profile is a table of rules, one per output field.
//!
//! The table is the single source of truth. The [`Normalizer`](crate::Normalizer)
//! runs it, [`catalogue`](crate::catalogue) prints it as the field catalogue and
//! the index template, and the README's field table is generated from it.

pub mod categorize;
mod documented;
mod extended;
pub mod siem;

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
    /// `boolean`: `true` or `false`.
    Boolean,
    /// `float`: a JSON number.
    Float,
    /// `object`: a JSON object parsed from a nested JSON string.
    Object,
    /// `keyword`, kept but neither indexed nor aggregated (ECS `event.original`):
    /// an index takes any length.
    Stored,
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
            EcsType::Boolean => "boolean",
            EcsType::Float => "float",
            EcsType::Object => "object",
            EcsType::Stored => "keyword",
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
    /// The value's text (a string as it is, a number or boolean as JSON writes it).
    Text,
    /// An integer, or a string holding a base-10 integer; anything else leaves the
    /// field out and counts a warning.
    Integer,
    /// A port: an [`Integer`](Convert::Integer) from 0 to 65535; anything else leaves
    /// the field out and counts a warning.
    Port,
    /// The text when it is a valid IPv4 or IPv6 address; otherwise the field is left
    /// out and a warning is counted.
    IpAddress,
    /// The text with its first two and last two characters cut (Python `s[2:-2]`);
    /// left out when that is empty.
    Strip2,
    /// A one-element list of the text, and `[""]` when the value is absent (the
    /// documented output does this for `registry.data.strings`).
    ListOrEmpty,
    /// A JSON number (or a string holding one), written as a number; anything else
    /// leaves the field out with a warning.
    Number,
    /// `true`/`false`, `1`/`0`, `"true"`/`"false"`, `"1"`/`"0"` (any case) as a
    /// boolean; anything else leaves the field out with a warning.
    Bool,
    /// A time in one of the accepted forms (RFC 3339, or epoch seconds or milliseconds, as the spec lists); anything else
    /// leaves the field out with a warning.
    Time,
    /// A time written `DD/MM/YYYY HH:MM:SS` (UTC), as Windows events give
    /// `password_last_set`; `"-"` is absent; anything else warns.
    DayFirstTime,
    /// A JSON object, or a string holding one, as an object. A string that does not
    /// parse as an object stays a string, with a warning (an index that maps the
    /// field as an object will refuse that document).
    Object,
    /// A JSON array of scalars, or a string holding one, as a list of strings; a
    /// plain string is a one-element list.
    StringList,
    /// The text, only when it looks like a file path (`C:\…`, `\\…` or `/…`).
    FilePath,
    /// The last component of a file path.
    FileName,
    /// A file path without its last component.
    Directory,
    /// A command line: a JSON array of arguments (or a string holding one) is joined
    /// with spaces; any other text is kept.
    CommandLine,
    /// A command line's arguments: a JSON array (or a string holding one) as is,
    /// otherwise the text split on white space, double quotes grouping.
    Args,
    /// A platform name (`windows`, `darwin`, `debian`, …) as an ECS `os.type`
    /// (`windows`, `macos`, `linux`); unknown platforms leave the field out.
    OsType,
    /// MITRE ATT&CK technique ids from the Sophos MITRE list (a JSON string).
    TechniqueIds,
    /// MITRE ATT&CK technique names.
    TechniqueNames,
    /// MITRE ATT&CK tactic ids.
    TacticIds,
    /// MITRE ATT&CK tactic names.
    TacticNames,
    /// The domain of a `DOMAIN\\user` name: the text before its first backslash;
    /// absent when there is none or it is empty.
    DomainOf,
    /// The user of a `DOMAIN\\user` name: the text after its first backslash, or the
    /// whole text when there is none.
    UserOf,
    /// A MAC address written with `-` between upper-case pairs (`:` and `.` become
    /// `-`), as ECS writes MACs.
    Mac,
    /// A JSON list of objects, each with its keys in snake_case and its empty
    /// values (`""`, `null`, `[]`, `{}`) left out.
    SnakeCaseObjects,
    /// A JSON object or list as it is; absent when it is empty (`[]`, `{}`); anything
    /// else leaves the field out with a warning.
    Json,
    /// A Sophos Central severity word as a number: `none` 0, `low` 21, `medium` 47,
    /// `high` 73, `very_high` and `critical` 99 (Elastic Security's risk scores for
    /// those words); another word leaves the field out with a warning.
    Severity,
}

/// A condition on the row, for [`Source::Either`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Gate {
    /// The value at the key, then the path of member names, is present: not absent,
    /// `null` or `""`, nor a list or object (however written) of only such values.
    Present(&'static str, &'static [&'static str]),
    /// The text of one of these keys contains the word, in any case.
    Contains(&'static [&'static str], &'static str),
}

impl Gate {
    /// The row keys the gate reads.
    pub fn row_keys(&self) -> Vec<&'static str> {
        match *self {
            Gate::Present(key, _) => vec![key],
            Gate::Contains(keys, _) => keys.to_vec(),
        }
    }

    fn describe(&self) -> String {
        match *self {
            Gate::Present(key, path) => format!("the row has {}", place(key, path)),
            Gate::Contains(keys, word) => {
                let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                format!("{} says \"{word}\"", keys.join(" or "))
            }
        }
    }
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
    /// The first of these keys whose value parses as a time (RFC 3339, or epoch seconds or milliseconds, as the spec lists);
    /// the time of normalization, with a warning, when none does.
    FirstTime(&'static [&'static str]),
    /// The first of these keys whose converted value is present.
    FirstKey(&'static [&'static str], Convert),
    /// One key of the row, converted, only when the row also has the second key
    /// (e.g. registry fields only for rows that carry a registry `key`).
    KeyWhen(&'static str, &'static str, Convert),
    /// A value inside a nested JSON object (a JSON string holding one, or an
    /// object): the key, then the path of member names.
    Nested(&'static str, &'static [&'static str], Convert),
    /// The distinct values of these earlier fields, as a list (the `related.*` rule).
    Related(&'static [&'static str]),
    /// A constant, when another (earlier) field is set.
    ConstantWhen(&'static str, &'static str),
    /// ECS categorization derived from the row (see [`categorize`]).
    Categorize(Categorization),
    /// A labelled line of a text inside a nested object (the key, then the path of
    /// member names; an empty path for the key's own text): the value after the
    /// label on the first line that starts with it, converted. The label `Message`
    /// also stands for the whole text when no line has a label (see
    /// [`siem::labelled`]).
    Labelled(&'static str, &'static [&'static str], &'static str, Convert),
    /// The first source when the gate holds, the second otherwise.
    Either(Gate, &'static Source, &'static Source),
}

/// Which categorization field a [`Source::Categorize`] rule fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Categorization {
    /// `event.category` (a list).
    Category,
    /// `event.type` (a list).
    Type,
    /// `event.outcome`.
    Outcome,
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

impl Source {
    /// The row keys this source reads, in the order it tries them.
    pub fn row_keys(&self) -> Vec<&'static str> {
        match *self {
            Source::Key(key, _) | Source::Nested(key, _, _) | Source::Labelled(key, ..) => {
                vec![key]
            }
            Source::KeyWhen(key, gate, _) => vec![key, gate],
            Source::FirstTime(keys) | Source::FirstKey(keys, _) => keys.to_vec(),
            Source::Categorize(_) => categorize::KEYS.to_vec(),
            Source::Either(gate, then, otherwise) => {
                let mut keys = gate.row_keys();
                for key in then.row_keys().into_iter().chain(otherwise.row_keys()) {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                keys
            }
            _ => Vec::new(),
        }
    }

    /// A short human description of where the value comes from, for the catalogue.
    pub fn origin(&self) -> String {
        match *self {
            Source::Original => "the row's JSON text".to_string(),
            Source::Constant(c) => format!("always `{c}`"),
            Source::Key(key, _) => format!("`{key}`"),
            Source::FirstTime(keys) => {
                let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                format!("first that parses of {}", keys.join(", "))
            }
            Source::FirstKey(keys, _) => {
                let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                format!("first present of {}", keys.join(", "))
            }
            Source::Nested(key, path, _) => place(key, path),
            Source::KeyWhen(key, gate, _) => format!("`{key}`, when the row has `{gate}`"),
            Source::Related(fields) => {
                let fields: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
                format!("distinct values of {}", fields.join(", "))
            }
            Source::ConstantWhen(field, c) => format!("`{c}` when `{field}` is set"),
            Source::Categorize(_) => {
                "derived from the query and detection (see `mapping::categorize`)".to_string()
            }
            Source::Labelled(key, path, label, _) => {
                format!("line `{label}` of {}", place(key, path))
            }
            Source::Either(gate, then, otherwise) => format!(
                "{} when {}, else {}",
                then.origin(),
                gate.describe(),
                otherwise.origin()
            ),
        }
    }
}

/// Where a value is, for the catalogue: `` `key` ``, or `` `key` → `a.b` `` inside it.
fn place(key: &str, path: &[&str]) -> String {
    if path.is_empty() {
        format!("`{key}`")
    } else {
        format!("`{key}` → `{}`", path.join("."))
    }
}

impl Field {
    /// The row keys this field reads, in the order it tries them.
    pub fn row_keys(&self) -> Vec<&'static str> {
        self.source.row_keys()
    }

    /// A short human description of where the value comes from, for the catalogue.
    pub fn origin(&self) -> String {
        self.source.origin()
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

    /// The extended profile: a superset of the documented one with every field the
    /// rows carry that ECS has a place for, and the rest under `sophos.threat_center.*`.
    pub fn extended() -> Profile {
        Profile {
            name: "extended",
            fields: extended::fields(),
        }
    }

    /// The profile of Sophos Central SIEM API alerts (`/siem/v1/alerts` items), with
    /// the field names of Elastic's `sophos_central.alert` data stream.
    pub fn siem_alert() -> Profile {
        Profile {
            name: "siem-alert",
            fields: siem::ALERT,
        }
    }

    /// The profile of Sophos Central SIEM API events (`/siem/v1/events` items), with
    /// the field names of Elastic's `sophos_central.event` data stream.
    pub fn siem_event() -> Profile {
        Profile {
            name: "siem-event",
            fields: siem::EVENT,
        }
    }

    /// Looks a profile up by name.
    pub fn by_name(name: &str) -> Option<Profile> {
        match name {
            "documented" => Some(Profile::documented()),
            "extended" => Some(Profile::extended()),
            "siem-alert" => Some(Profile::siem_alert()),
            "siem-event" => Some(Profile::siem_event()),
            _ => None,
        }
    }

    /// The names accepted by [`Profile::by_name`].
    pub const NAMES: &'static [&'static str] =
        &["documented", "extended", "siem-alert", "siem-event"];

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
