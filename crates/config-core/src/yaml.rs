//! YAML read into a tree that keeps the line of every node, so every value can say
//! `config/config.yaml:12`.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Scalar {
        text: String,
        quoted: bool,
        line: usize,
    },
    List {
        items: Vec<Node>,
        line: usize,
    },
    Map {
        entries: Vec<(String, usize, Node)>,
        line: usize,
    },
}

impl Node {
    pub fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. } | Node::List { line, .. } | Node::Map { line, .. } => *line,
        }
    }

    /// Plain `~`, `null` or nothing at all: YAML's null.
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { text, quoted: false, .. } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }
}

/// Why the file could not be read as YAML. Never contains file content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

enum Frame {
    List(Vec<Node>, usize),
    Map(Vec<(String, usize, Node)>, Option<(String, usize)>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    error: Option<YamlError>,
}

impl Builder {
    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::List(items, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _)) => match pending.take() {
                Some((key, line)) => entries.push((key, line, node)),
                None => match node {
                    Node::Scalar { text, line, .. } => *pending = Some((text, line)),
                    other => {
                        self.error.get_or_insert(YamlError {
                            line: other.line(),
                            message: "mapping keys must be plain names".into(),
                        });
                        *pending = Some((String::new(), other.line()));
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(text, style, _, _) => self.push_node(Node::Scalar {
                text,
                quoted: !matches!(style, TScalarStyle::Plain),
                line,
            }),
            Event::SequenceStart(..) => self.stack.push(Frame::List(Vec::new(), line)),
            Event::MappingStart(..) => self.stack.push(Frame::Map(Vec::new(), None, line)),
            Event::SequenceEnd => {
                if let Some(Frame::List(items, line)) = self.stack.pop() {
                    self.push_node(Node::List { items, line });
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, line)) = self.stack.pop() {
                    self.push_node(Node::Map { entries, line });
                }
            }
            Event::Alias(_) => {
                self.error.get_or_insert(YamlError {
                    line,
                    message: "YAML aliases (*name) are not supported here".into(),
                });
                self.push_node(Node::Scalar {
                    text: String::new(),
                    quoted: false,
                    line,
                });
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Parses one YAML document. An empty file is an empty map.
pub fn parse(content: &str) -> Result<Node, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(content);
    parser.load(&mut builder, false).map_err(|e| YamlError {
        line: e.marker().line(),
        message: e.info().to_owned(),
    })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(match builder.root {
        Some(node) if node.is_null() => Node::Map {
            entries: Vec::new(),
            line: 1,
        },
        Some(node) => node,
        None => Node::Map {
            entries: Vec::new(),
            line: 1,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_of_nested_values() {
        let node = parse("database:\n  pool:\n    max: 10\nlist: [a, \"b\"]\nempty:\n").unwrap();
        let Node::Map { entries, .. } = node else {
            panic!("root is a map")
        };
        assert_eq!(entries[0].0, "database");
        let Node::Map { entries: db, .. } = &entries[0].2 else {
            panic!()
        };
        let Node::Map { entries: pool, .. } = &db[0].2 else {
            panic!()
        };
        assert_eq!(
            pool[0].2,
            Node::Scalar {
                text: "10".into(),
                quoted: false,
                line: 3
            }
        );
        let Node::List { items, .. } = &entries[1].2 else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert!(entries[2].2.is_null());
    }

    #[test]
    fn errors_carry_a_line() {
        let err = parse("a: 1\nb: [unclosed\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        assert!(parse("").is_ok());
    }
}
