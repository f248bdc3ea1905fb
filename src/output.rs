//! The ECS document writer.
//!
//! # Output format
//!
//! One JSON object per normalized row, on one line, followed by `\n` (NDJSON). The
//! dotted field names of the profile become nested objects (`source.geo.city_name`
//! → `{"source":{"geo":{"city_name":…}}}`). Keys appear in the order the profile's
//! table first names them, so output is stable byte for byte. A field without a
//! value is left out, and so is a parent object left with no children: the writer
//! never writes `{}`. Strings are JSON-escaped; `long` fields are JSON integers;
//! list fields are JSON arrays.

use std::borrow::Cow;

use crate::mapping::Field;
use crate::time::EventTime;

/// A field's value, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A string, written JSON-escaped.
    Str(Cow<'a, str>),
    /// A JSON string literal already escaped, quotes included, copied as is.
    Literal(&'a str),
    /// An integer.
    Long(i64),
    /// A time, written as the `@timestamp` text.
    Time(EventTime),
    /// A boolean.
    Bool(bool),
    /// Valid compact JSON text (a number, an object or a list), copied as is; a list
    /// fills an array field as it is.
    Raw(Cow<'a, str>),
    /// A list of values.
    List(Vec<Value<'a>>),
}

impl Value<'_> {
    /// The same value, owning its text.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Literal(l) => Value::Raw(Cow::Owned(l.to_owned())),
            Value::Long(n) => Value::Long(n),
            Value::Time(t) => Value::Time(t),
            Value::Bool(b) => Value::Bool(b),
            Value::Raw(r) => Value::Raw(Cow::Owned(r.into_owned())),
            Value::List(items) => Value::List(items.into_iter().map(Value::into_owned).collect()),
        }
    }

    /// The string this value holds, for string values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Raw(r) => out.extend_from_slice(r.as_bytes()),
            Value::List(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Value::Str(s) => write_str(out, s),
            Value::Literal(lit) => out.extend_from_slice(lit.as_bytes()),
            Value::Long(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
            Value::Time(t) => {
                out.push(b'"');
                t.write(out);
                out.push(b'"');
            }
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = sonic_rs::to_writer(&mut *out, s);
}

/// The nesting of a profile's fields, computed once.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Leaves in output order.
    leaves: Vec<Leaf>,
    /// `"segment":{` for each inner node.
    node_open: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Leaf {
    field: usize,
    /// The inner nodes from the root down to the leaf's parent.
    parents: Vec<usize>,
    /// `"name":` for the leaf's last segment.
    key: Vec<u8>,
    array: bool,
}

#[derive(Default)]
struct Node {
    name: String,
    id: Option<usize>,
    field: Option<usize>,
    children: Vec<Node>,
}

impl Layout {
    /// Builds the layout of a table of fields.
    ///
    /// # Panics
    /// When a name is both a field and the parent of another field (a profile bug,
    /// caught by the profile tests).
    pub fn new(fields: &[Field]) -> Layout {
        let mut root = Node::default();
        let mut node_open = Vec::new();
        for (i, field) in fields.iter().enumerate() {
            let mut node = &mut root;
            for segment in field.name.split('.') {
                let pos = match node.children.iter().position(|c| c.name == segment) {
                    Some(pos) => pos,
                    None => {
                        node.children.push(Node {
                            name: segment.to_string(),
                            ..Node::default()
                        });
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[pos];
            }
            assert!(
                node.field.is_none() && node.children.is_empty(),
                "field {} is defined twice or is a parent",
                field.name
            );
            node.field = Some(i);
        }
        let mut leaves = Vec::new();
        fn walk(
            node: &mut Node,
            parents: &mut Vec<usize>,
            node_open: &mut Vec<Vec<u8>>,
            leaves: &mut Vec<Leaf>,
            fields: &[Field],
        ) {
            for child in &mut node.children {
                let mut key = Vec::new();
                write_str(&mut key, &child.name);
                key.push(b':');
                if let Some(field) = child.field {
                    assert!(
                        child.children.is_empty(),
                        "field {} is also a parent",
                        fields[field].name
                    );
                    leaves.push(Leaf {
                        field,
                        parents: parents.clone(),
                        key,
                        array: fields[field].array,
                    });
                } else {
                    key.push(b'{');
                    let id = node_open.len();
                    node_open.push(key);
                    child.id = Some(id);
                    parents.push(id);
                    walk(child, parents, node_open, leaves, fields);
                    parents.pop();
                }
            }
        }
        walk(
            &mut root,
            &mut Vec::new(),
            &mut node_open,
            &mut leaves,
            fields,
        );
        Layout { leaves, node_open }
    }

    /// Appends one document (and a `\n`) for `values`, indexed like the fields.
    pub fn write(&self, values: &[Option<Value<'_>>], out: &mut Vec<u8>) {
        out.push(b'{');
        let mut open: Vec<usize> = Vec::with_capacity(4);
        // Whether the innermost open object (index 0: the document) has a member.
        let mut has_member: Vec<bool> = Vec::with_capacity(5);
        has_member.push(false);
        for leaf in &self.leaves {
            let Some(value) = &values[leaf.field] else {
                continue;
            };
            let common = open
                .iter()
                .zip(&leaf.parents)
                .take_while(|(a, b)| a == b)
                .count();
            while open.len() > common {
                open.pop();
                has_member.pop();
                out.push(b'}');
            }
            for &node in &leaf.parents[common..] {
                separate(&mut has_member, out);
                out.extend_from_slice(&self.node_open[node]);
                open.push(node);
                has_member.push(false);
            }
            separate(&mut has_member, out);
            out.extend_from_slice(&leaf.key);
            let is_list = match value {
                Value::List(_) => true,
                Value::Raw(json) => json.starts_with('['),
                _ => false,
            };
            if leaf.array && !is_list {
                out.push(b'[');
                value.write(out);
                out.push(b']');
            } else {
                value.write(out);
            }
        }
        for _ in open {
            out.push(b'}');
        }
        out.extend_from_slice(b"}\n");
    }
}

fn separate(has_member: &mut [bool], out: &mut Vec<u8>) {
    if let Some(last) = has_member.last_mut() {
        if *last {
            out.push(b',');
        }
        *last = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{Convert, EcsType, Source};

    const fn f(name: &'static str) -> Field {
        Field {
            name,
            ecs_type: EcsType::Keyword,
            array: false,
            description: "",
            source: Source::Key("k", Convert::Text),
        }
    }

    fn render(fields: &[Field], values: &[Option<&str>]) -> String {
        let layout = Layout::new(fields);
        let values: Vec<Option<Value>> = values
            .iter()
            .map(|v| v.map(|s| Value::Str(Cow::Borrowed(s))))
            .collect();
        let mut out = Vec::new();
        layout.write(&values, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nests_in_first_appearance_order() {
        let fields = [f("a.x"), f("b"), f("a.y.z"), f("a.y.w")];
        assert_eq!(
            render(&fields, &[Some("1"), Some("2"), Some("3"), Some("4")]),
            "{\"a\":{\"x\":\"1\",\"y\":{\"z\":\"3\",\"w\":\"4\"}},\"b\":\"2\"}\n"
        );
    }

    #[test]
    fn empty_parents_are_left_out() {
        let fields = [f("a.x"), f("a.y.z"), f("b"), f("c.d")];
        assert_eq!(
            render(&fields, &[None, None, Some("2"), None]),
            "{\"b\":\"2\"}\n"
        );
        assert_eq!(
            render(&fields, &[None, Some("3"), None, None]),
            "{\"a\":{\"y\":{\"z\":\"3\"}}}\n"
        );
        assert_eq!(render(&fields, &[None, None, None, None]), "{}\n");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            render(&[f("a")], &[Some("q\"\\\n\u{1}é")]),
            "{\"a\":\"q\\\"\\\\\\n\\u0001é\"}\n"
        );
    }
}
