//! The field catalogue and the index template, generated from a profile's table.

use serde_json::{Map, Value, json};

use crate::mapping::{EcsType, Profile};

/// The catalogue as a markdown table: field, type, where it comes from, meaning.
pub fn markdown(profile: &Profile) -> String {
    let mut out =
        String::from("| Field | Type | From the row | Description |\n|---|---|---|---|\n");
    for f in profile.fields() {
        let ty = if f.array {
            format!("{} (list)", f.ecs_type)
        } else {
            f.ecs_type.to_string()
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.name,
            ty,
            f.origin(),
            f.description.replace('|', "\\|")
        ));
    }
    out
}

/// The catalogue as JSON: a list of `{name, type, array, source_keys, source, description}`.
pub fn json(profile: &Profile) -> Value {
    let fields: Vec<Value> = profile
        .fields()
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "type": f.ecs_type.name(),
                "array": f.array,
                "source_keys": f.row_keys(),
                "source": f.origin().replace('`', ""),
                "description": f.description,
            })
        })
        .collect();
    json!({ "profile": profile.name(), "fields": fields })
}

/// Options of the generated index template.
#[derive(Debug, Clone)]
pub struct TemplateOptions {
    /// The index patterns the template applies to.
    pub index_patterns: Vec<String>,
    /// When true, matching indices are created as a data stream.
    pub data_stream: bool,
    /// The template's priority.
    pub priority: u32,
}

impl Default for TemplateOptions {
    fn default() -> Self {
        TemplateOptions {
            index_patterns: vec!["sophos-tac-*".to_string()],
            data_stream: false,
            priority: 200,
        }
    }
}

impl TemplateOptions {
    /// A template for exactly `index` (the one an output writes), made a data stream
    /// when asked.
    pub fn for_index(index: &str, data_stream: bool) -> TemplateOptions {
        TemplateOptions {
            index_patterns: vec![index.to_string()],
            data_stream,
            ..TemplateOptions::default()
        }
    }
}

/// The deliberate differences of the SIEM profiles from Elastic's `sophos_central`
/// output ([`siem::DIFFERENCES`](crate::mapping::siem::DIFFERENCES)) as markdown tables,
/// one per profile, for `docs/siem-differences.md`.
pub fn siem_differences() -> String {
    let mut out = String::new();
    for profile in ["siem-alert", "siem-event"] {
        out.push_str(&format!(
            "### `{profile}`\n\n| field | Elastic writes | sophos-tac writes |\n|---|---|---|\n"
        ));
        for d in crate::mapping::siem::DIFFERENCES
            .iter()
            .filter(|d| d.profile == profile)
        {
            let fields: Vec<String> = d.fields.iter().map(|f| format!("`{f}`")).collect();
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                fields.join(", "),
                d.elastic.replace('|', "\\|"),
                d.ours.replace('|', "\\|")
            ));
        }
        out.push('\n');
    }
    out
}

/// A composable index template (`PUT _index_template/<name>`) for Elasticsearch
/// and OpenSearch whose mappings give every field of the profile its type.
pub fn index_template(profile: &Profile, options: &TemplateOptions) -> Value {
    index_template_of(std::slice::from_ref(profile), options)
}

/// An index template for an index that takes the documents of several profiles (the
/// Data Lake's and the SIEM streams' in one `collect` output): every field of each, a
/// field that two profiles share typed by the first.
pub fn index_template_of(profiles: &[Profile], options: &TemplateOptions) -> Value {
    let mut properties = Map::new();
    for f in profiles.iter().flat_map(|p| p.fields()) {
        let mut node = &mut properties;
        let mut segments = f.name.split('.').peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_none() {
                node.entry(segment.to_string())
                    .or_insert_with(|| mapping_type(f.ecs_type));
            } else {
                let child = node
                    .entry(segment.to_string())
                    .or_insert_with(|| json!({ "properties": {} }));
                node = child["properties"]
                    .as_object_mut()
                    .expect("an object node has properties");
            }
        }
    }
    let names: Vec<&str> = profiles.iter().map(Profile::name).collect();
    let mut template = json!({
        "index_patterns": options.index_patterns,
        "priority": options.priority,
        "template": { "mappings": { "properties": properties } },
        "_meta": { "generator": concat!("sophos-tac ", env!("CARGO_PKG_VERSION")), "profile": names.join("+") },
    });
    if options.data_stream {
        template["data_stream"] = json!({});
    }
    template
}

fn mapping_type(t: EcsType) -> Value {
    match t {
        EcsType::Date => {
            json!({ "type": "date", "format": "strict_date_optional_time||epoch_millis" })
        }
        EcsType::Stored => json!({ "type": "keyword", "index": false, "doc_values": false }),
        other => json!({ "type": other.name() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_nests_and_types_fields() {
        let t = index_template(&Profile::documented(), &TemplateOptions::default());
        let p = &t["template"]["mappings"]["properties"];
        assert_eq!(p["message"]["type"], "text");
        assert_eq!(p["@timestamp"]["type"], "date");
        assert_eq!(p["event"]["properties"]["severity"]["type"], "long");
        assert_eq!(
            p["source"]["properties"]["geo"]["properties"]["city_name"]["type"],
            "keyword"
        );
        assert_eq!(
            p["registry"]["properties"]["data"]["properties"]["strings"]["type"],
            "wildcard"
        );
        assert_eq!(p["related"]["properties"]["ip"]["type"], "ip");
        assert!(t.get("data_stream").is_none());
        let ds = index_template(
            &Profile::documented(),
            &TemplateOptions {
                data_stream: true,
                ..Default::default()
            },
        );
        assert_eq!(ds["data_stream"], json!({}));
    }

    #[test]
    fn the_data_lake_and_siem_profiles_share_one_index_without_a_type_conflict() {
        for lake in [Profile::documented(), Profile::extended()] {
            let profiles = [lake.clone(), Profile::siem_alert(), Profile::siem_event()];
            for a in profiles.iter().flat_map(|p| p.fields()) {
                for b in profiles.iter().flat_map(|p| p.fields()) {
                    if a.name == b.name {
                        assert_eq!(a.ecs_type.name(), b.ecs_type.name(), "{}", a.name);
                    } else {
                        // no field is the parent of another's
                        assert!(
                            !b.name.starts_with(&format!("{}.", a.name)),
                            "{} / {}",
                            a.name,
                            b.name
                        );
                    }
                }
            }
            let t = index_template_of(&profiles, &TemplateOptions::default());
            let p = &t["template"]["mappings"]["properties"];
            assert_eq!(p["event"]["properties"]["original"]["index"], false);
            assert_eq!(
                p["sophos_central"]["properties"]["alert"]["properties"]["when"]["type"],
                "date"
            );
            assert_eq!(p["message"]["type"], "text");
            assert_eq!(
                t["_meta"]["profile"],
                format!("{}+siem-alert+siem-event", lake.name())
            );
        }
    }

    #[test]
    fn markdown_has_a_row_per_field() {
        let md = markdown(&Profile::documented());
        assert_eq!(md.lines().count(), 2 + Profile::documented().fields().len());
        assert!(md.contains("| `source.ip` | ip | `meta_public_ip` |"));
    }
}
