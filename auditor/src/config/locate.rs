//! Where a field is written in a configuration file, and which field a span of
//! it belongs to, from toml_edit's spans.

use std::{fmt, ops::Range};

use toml_edit::{ImDocument, Item, Table, TableLike, Value};

/// A field of the configuration, written as `ports[1].role` or
/// `rules.severity.some-rule`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub fn of(key: &str) -> FieldPath {
        FieldPath::default().key(key)
    }

    pub fn key(&self, key: &str) -> FieldPath {
        self.with(Segment::Key(key.to_owned()))
    }

    pub fn index(&self, index: usize) -> FieldPath {
        self.with(Segment::Index(index))
    }

    fn with(&self, segment: Segment) -> FieldPath {
        let mut segments = self.0.clone();
        segments.push(segment);
        FieldPath(segments)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    match bare {
                        true => f.write_str(key)?,
                        false => write!(f, "{key:?}")?,
                    }
                }
            }
        }
        Ok(())
    }
}

/// A configuration file's text, and its document when it is valid TOML.
pub struct Source<'a> {
    text: &'a str,
    document: Option<ImDocument<&'a str>>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Source<'a> {
        Source {
            text,
            document: ImDocument::parse(text).ok(),
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The line where `path` is written; for a field the file leaves to its
    /// default, the line of the nearest enclosing table that is written.
    pub fn line_of(&self, path: &FieldPath) -> Option<usize> {
        let mut node = Node::Item(self.document.as_ref()?.as_item());
        let mut span = None;
        for segment in &path.0 {
            let Some((key_span, child)) = node.child(segment) else {
                break;
            };
            span = key_span.or_else(|| child.span()).or(span);
            node = child;
        }
        span.map(|span| self.line_at(span.start))
    }

    /// The innermost field whose key or value holds all of `span`; none
    /// for the span of the top-level table, which is no field. That span
    /// covers only the top-level keys: empty when there are none, it lies
    /// inside the first table written when the text starts with one.
    pub fn field_at(&self, span: Range<usize>) -> Option<FieldPath> {
        let root = Node::Item(self.document.as_ref()?.as_item());
        if root.span() == Some(span.clone()) {
            return None;
        }
        innermost(root, &span, FieldPath::default()).filter(|path| !path.0.is_empty())
    }
}

fn innermost(node: Node<'_>, span: &Range<usize>, path: FieldPath) -> Option<FieldPath> {
    let holds = |outer: Option<Range<usize>>| {
        outer.is_some_and(|outer| outer.start <= span.start && span.end <= outer.end)
    };
    for (segment, key_span, child) in node.children() {
        let child_path = path.with(segment);
        if let Some(deeper) = innermost(child, span, child_path.clone()) {
            return Some(deeper);
        }
        if holds(key_span) || holds(child.span()) {
            return Some(child_path);
        }
    }
    None
}

/// A place in the document: tables of arrays of tables are not `Item`s, and
/// elements of arrays are `Value`s.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Table(table) => table.span(),
            Node::Value(value) => value.span(),
        }
    }

    fn table(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Table(table) => Some(table),
            Node::Value(Value::InlineTable(table)) => Some(table),
            Node::Value(_) => None,
        }
    }

    fn element(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(Item::ArrayOfTables(tables)) => tables.get(index).map(Node::Table),
            Node::Item(Item::Value(Value::Array(values))) | Node::Value(Value::Array(values)) => {
                values.get(index).map(Node::Value)
            }
            _ => None,
        }
    }

    fn len(self) -> usize {
        match self {
            Node::Item(Item::ArrayOfTables(tables)) => tables.len(),
            Node::Item(Item::Value(Value::Array(values))) | Node::Value(Value::Array(values)) => {
                values.len()
            }
            _ => 0,
        }
    }

    /// The node under `segment`, with the span of its key when it has one.
    fn child(self, segment: &Segment) -> Option<(Option<Range<usize>>, Node<'a>)> {
        match segment {
            Segment::Key(name) => {
                let (key, item) = self.table()?.get_key_value(name)?;
                Some((key.span(), Node::Item(item)))
            }
            Segment::Index(index) => Some((None, self.element(*index)?)),
        }
    }

    fn children(self) -> Vec<(Segment, Option<Range<usize>>, Node<'a>)> {
        let segments: Vec<Segment> = match self.table() {
            Some(table) => table
                .iter()
                .map(|(name, _)| Segment::Key(name.to_owned()))
                .collect(),
            None => (0..self.len()).map(Segment::Index).collect(),
        };
        segments
            .into_iter()
            .filter_map(|segment| {
                let (key_span, child) = self.child(&segment)?;
                Some((segment, key_span, child))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "interfaces = [\n  \"eth0\",\n  \"eth1\",\n]\n\n[[ports]]\nport = 80\n\n[[ports]]\nport = 8080\nrole = \"backend\"\n\n[rules]\nseverity = { \"a-rule\" = \"info\" }\n";

    fn path(text: &str) -> FieldPath {
        let mut path = FieldPath::default();
        for part in text.split('.') {
            match part.split_once('[') {
                Some((key, index)) => {
                    path = path
                        .key(key)
                        .index(index.trim_end_matches(']').parse().unwrap())
                }
                None => path = path.key(part),
            }
        }
        path
    }

    #[test]
    fn paths_read_as_they_are_written_in_toml() {
        assert_eq!(path("ports[1].role").to_string(), "ports[1].role");
        assert_eq!(
            FieldPath::of("rules")
                .key("severity")
                .key("a b")
                .to_string(),
            "rules.severity.\"a b\""
        );
    }

    #[test]
    fn finds_the_line_of_each_field() {
        let source = Source::new(TEXT);
        let line = |field: &str| source.line_of(&path(field));
        assert_eq!(line("interfaces"), Some(1));
        assert_eq!(line("interfaces[1]"), Some(3));
        assert_eq!(line("ports[0].port"), Some(7));
        assert_eq!(line("ports[1]"), Some(9));
        assert_eq!(line("ports[1].role"), Some(11));
        assert_eq!(line("rules.severity.a-rule"), Some(14));
        assert_eq!(line("ports[1].unwritten"), Some(9), "the enclosing table");
        assert_eq!(line("reassembly.max_connections"), None);
    }

    #[test]
    fn finds_the_field_a_span_belongs_to() {
        let source = Source::new(TEXT);
        let field = |needle: &str| {
            let start = TEXT.find(needle).unwrap();
            source
                .field_at(start..start + needle.len())
                .map(|path| path.to_string())
        };
        assert_eq!(field("\"backend\"").as_deref(), Some("ports[1].role"));
        assert_eq!(field("\"eth1\"").as_deref(), Some("interfaces[1]"));
        assert_eq!(field("\"info\"").as_deref(), Some("rules.severity.a-rule"));
        assert_eq!(field("[[ports]]\nport = 8080").as_deref(), Some("ports[1]"));
        assert_eq!(field("interfaces = ["), None, "a span across fields");
    }

    #[test]
    fn the_span_of_the_top_level_table_is_no_field() {
        // As toml gives it for a field missing at the top: empty when only
        // tables are written, and then inside the first one.
        let tables_only = Source::new("[reassembly]\nmax_connections = 1\n");
        assert_eq!(tables_only.field_at(0..0), None);
        assert_eq!(
            tables_only.field_at(1..11).map(|path| path.to_string()),
            Some("reassembly".to_owned())
        );
        let keys_then_tables = Source::new("interfaces = []\n[reassembly]\n");
        assert_eq!(keys_then_tables.field_at(0..15), None);
    }

    #[test]
    fn text_that_is_not_toml_has_lines_but_no_fields() {
        let source = Source::new("a = 1\n[b\n");
        assert_eq!(source.line_at(7), 2);
        assert_eq!(source.line_of(&FieldPath::of("a")), None);
        assert_eq!(source.field_at(0..1), None);
    }
}
