//! Calico's selector language, as libcalico-go parses and Felix evaluates it:
//! `k == 'v'`, `k != 'v'` (true when `k` is absent), `k in {'a', 'b'}`, `k not in {...}` (true when
//! absent), `has(k)`, `!has(k)`, `all()`, `global()`, `k starts with 'p'`, `k ends with 's'`,
//! `k contains 'c'`, `&&` (binds tighter than `||`), `!`, parentheses. The empty selector is
//! `all()`. Strings are single- or double-quoted without escapes; whitespace is spaces and tabs.

use std::collections::BTreeSet;
use std::fmt;

/// Where a selector is evaluated: `all()` and `global()` mean different things for a
/// namespace selector (`all()`: any namespaced endpoint, `global()`: only non-namespaced ones,
/// so never a pod) than elsewhere (both select everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorContext {
    /// An endpoint selector (`selector`, `notSelector`, service account selectors).
    Endpoint,
    /// A `namespaceSelector`, evaluated for a pod's namespace.
    Namespace,
}

/// Something with labels a selector can look at.
pub trait LabelLookup {
    /// The value of label `key`, if set.
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelLookup for crate::policy::Labels {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A syntax error, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?} at offset {offset}: {message}")]
pub struct SelectorError {
    /// The selector text.
    pub selector: String,
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalicoSelector {
    root: Node,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    All,
    Global,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

impl CalicoSelector {
    /// Parses `text`; the empty (or blank) selector is `all()`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let tokens = tokenize(text)?;
        let root = if tokens[0].kind == Kind::Eof {
            Node::All
        } else {
            let mut parser = Parser { tokens: &tokens, pos: 0, text };
            let node = parser.or()?;
            if parser.peek().kind != Kind::Eof {
                return Err(parser.error("unexpected content at end of selector"));
            }
            node
        };
        Ok(Self { root, text: text.to_owned() })
    }

    /// `all()`.
    pub fn all() -> Self {
        Self { root: Node::All, text: "all()".to_owned() }
    }

    /// Whether `labels` satisfy the selector in `context`.
    pub fn matches(&self, labels: &dyn LabelLookup, context: SelectorContext) -> bool {
        self.root.eval(labels, context)
    }

    /// The selector as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the selector is `all()` (or empty).
    pub fn is_all(&self) -> bool {
        self.root == Node::All
    }
}

impl fmt::Display for CalicoSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.trim().is_empty() { f.write_str("all()") } else { f.write_str(&self.text) }
    }
}

impl Node {
    fn eval(&self, labels: &dyn LabelLookup, context: SelectorContext) -> bool {
        match self {
            Self::All => true,
            Self::Global => context == SelectorContext::Endpoint,
            Self::Has(key) => labels.label(key).is_some(),
            Self::Eq(key, value) => labels.label(key) == Some(value.as_str()),
            Self::Ne(key, value) => labels.label(key) != Some(value.as_str()),
            Self::In(key, set) => labels.label(key).is_some_and(|v| set.contains(v)),
            Self::NotIn(key, set) => !labels.label(key).is_some_and(|v| set.contains(v)),
            Self::Contains(key, part) => {
                labels.label(key).is_some_and(|v| v.contains(part.as_str()))
            }
            Self::StartsWith(key, prefix) => {
                labels.label(key).is_some_and(|v| v.starts_with(prefix.as_str()))
            }
            Self::EndsWith(key, suffix) => {
                labels.label(key).is_some_and(|v| v.ends_with(suffix.as_str()))
            }
            Self::Not(node) => !node.eval(labels, context),
            Self::And(nodes) => nodes.iter().all(|n| n.eval(labels, context)),
            Self::Or(nodes) => nodes.iter().any(|n| n.eval(labels, context)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Label,
    String,
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    In,
    Not,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    All,
    Has,
    LParen,
    RParen,
    And,
    Or,
    Global,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    value: String,
    offset: usize,
}

const WHITESPACE: [char; 2] = [' ', '\t'];

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// The label name at the start of `input` (empty when none).
fn identifier(input: &str) -> &str {
    let end = input.bytes().position(|b| !is_label_byte(b)).unwrap_or(input.len());
    &input[..end]
}

fn tokenize(text: &str) -> Result<Vec<Token>, SelectorError> {
    let mut tokens: Vec<Token> = Vec::new();
    let mut rest = text;
    let error = |rest: &str, message: &str| SelectorError {
        selector: text.to_owned(),
        offset: text.len() - rest.len(),
        message: message.to_owned(),
    };
    loop {
        rest = rest.trim_start_matches(WHITESPACE);
        let offset = text.len() - rest.len();
        let push = |tokens: &mut Vec<Token>, kind, value: &str| {
            tokens.push(Token { kind, value: value.to_owned(), offset })
        };
        let Some(first) = rest.chars().next() else {
            push(&mut tokens, Kind::Eof, "");
            return Ok(tokens);
        };
        let after_label = tokens.last().is_some_and(|t| t.kind == Kind::Label);
        match first {
            '(' => (push(&mut tokens, Kind::LParen, "("), rest = &rest[1..]).1,
            ')' => (push(&mut tokens, Kind::RParen, ")"), rest = &rest[1..]).1,
            '{' => (push(&mut tokens, Kind::LBrace, "{"), rest = &rest[1..]).1,
            '}' => (push(&mut tokens, Kind::RBrace, "}"), rest = &rest[1..]).1,
            ',' => (push(&mut tokens, Kind::Comma, ","), rest = &rest[1..]).1,
            '"' | '\'' => {
                let body = &rest[1..];
                let end = body.find(first).ok_or_else(|| error(rest, "unterminated string"))?;
                push(&mut tokens, Kind::String, &body[..end]);
                rest = &body[end + 1..];
            }
            '=' if rest.starts_with("==") => {
                (push(&mut tokens, Kind::Eq, "=="), rest = &rest[2..]).1
            }
            '=' => return Err(error(rest, "expected ==")),
            '!' if rest.starts_with("!=") => {
                (push(&mut tokens, Kind::Ne, "!="), rest = &rest[2..]).1
            }
            '!' => (push(&mut tokens, Kind::Not, "!"), rest = &rest[1..]).1,
            '&' if rest.starts_with("&&") => {
                (push(&mut tokens, Kind::And, "&&"), rest = &rest[2..]).1
            }
            '&' => return Err(error(rest, "expected &&")),
            '|' if rest.starts_with("||") => {
                (push(&mut tokens, Kind::Or, "||"), rest = &rest[2..]).1
            }
            '|' => return Err(error(rest, "expected ||")),
            _ if after_label => {
                let operator_error = || {
                    let label = &tokens[tokens.len() - 1].value;
                    error(
                        rest,
                        &format!(
                            "unexpected characters after label {label:?}, was expecting an operator"
                        ),
                    )
                };
                fn two_words<'r>(rest: &'r str, first: &str, second: &str) -> Option<&'r str> {
                    let tail = rest.strip_prefix(first)?.trim_start_matches(WHITESPACE);
                    tail.strip_prefix(second)
                }
                let (kind, tail) = if let Some(tail) = rest.strip_prefix("contains") {
                    (Kind::Contains, tail)
                } else if rest.starts_with("starts") {
                    (
                        Kind::StartsWith,
                        two_words(rest, "starts", "with").ok_or_else(operator_error)?,
                    )
                } else if rest.starts_with("ends") {
                    (Kind::EndsWith, two_words(rest, "ends", "with").ok_or_else(operator_error)?)
                } else if rest.starts_with("not") {
                    (Kind::NotIn, two_words(rest, "not", "in").ok_or_else(operator_error)?)
                } else if let Some(tail) = rest.strip_prefix("in") {
                    (Kind::In, tail)
                } else {
                    return Err(operator_error());
                };
                push(&mut tokens, kind, &rest[..rest.len() - tail.len()]);
                rest = tail;
            }
            _ => {
                if let Some(tail) = rest.strip_prefix("has(") {
                    let tail = tail.trim_start_matches(WHITESPACE);
                    let label = identifier(tail);
                    if label.is_empty() {
                        return Err(error(tail, "no label name in has( expression"));
                    }
                    let tail = tail[label.len()..].trim_start_matches(WHITESPACE);
                    let tail = tail
                        .strip_prefix(')')
                        .ok_or_else(|| error(tail, "no closing ')' after has("))?;
                    push(&mut tokens, Kind::Has, label);
                    rest = tail;
                } else if let Some((kind, name)) = [(Kind::All, "all("), (Kind::Global, "global(")]
                    .into_iter()
                    .find(|(_, p)| rest.starts_with(p))
                {
                    let tail = rest[name.len()..].trim_start_matches(WHITESPACE);
                    let tail = tail
                        .strip_prefix(')')
                        .ok_or_else(|| error(tail, &format!("no closing ')' after {name}")))?;
                    push(&mut tokens, kind, name);
                    rest = tail;
                } else {
                    let label = identifier(rest);
                    if label.is_empty() {
                        return Err(error(rest, "unexpected characters"));
                    }
                    push(&mut tokens, Kind::Label, label);
                    rest = &rest[label.len()..];
                }
            }
        }
    }
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != Kind::Eof {
            self.pos += 1;
        }
        token
    }

    fn error(&self, message: &str) -> SelectorError {
        SelectorError {
            selector: self.text.to_owned(),
            offset: self.peek().offset,
            message: message.to_owned(),
        }
    }

    fn or(&mut self) -> Result<Node, SelectorError> {
        let mut nodes = vec![self.and()?];
        while self.peek().kind == Kind::Or {
            self.next();
            nodes.push(self.and()?);
        }
        Ok(if nodes.len() == 1 { nodes.remove(0) } else { Node::Or(nodes) })
    }

    fn and(&mut self) -> Result<Node, SelectorError> {
        let mut nodes = vec![self.operation()?];
        while self.peek().kind == Kind::And {
            self.next();
            nodes.push(self.operation()?);
        }
        Ok(if nodes.len() == 1 { nodes.remove(0) } else { Node::And(nodes) })
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        if self.peek().kind == Kind::String {
            Ok(self.next().value)
        } else {
            Err(self.error("expected string"))
        }
    }

    fn operation(&mut self) -> Result<Node, SelectorError> {
        let mut negated = false;
        while self.peek().kind == Kind::Not {
            self.next();
            negated = !negated;
        }
        let token = self.next();
        let node = match token.kind {
            Kind::Has => Node::Has(token.value),
            Kind::All => Node::All,
            Kind::Global => Node::Global,
            Kind::Label => {
                let key = token.value;
                let operator = self.next();
                match operator.kind {
                    Kind::Eq => Node::Eq(key, self.string()?),
                    Kind::Ne => Node::Ne(key, self.string()?),
                    Kind::Contains => Node::Contains(key, self.string()?),
                    Kind::StartsWith => Node::StartsWith(key, self.string()?),
                    Kind::EndsWith => Node::EndsWith(key, self.string()?),
                    Kind::In | Kind::NotIn => {
                        if self.peek().kind != Kind::LBrace {
                            return Err(self.error("expected set literal"));
                        }
                        self.next();
                        let mut set = BTreeSet::new();
                        while self.peek().kind == Kind::String {
                            set.insert(self.next().value);
                            if self.peek().kind != Kind::Comma {
                                break;
                            }
                            self.next();
                        }
                        if self.peek().kind != Kind::RBrace {
                            return Err(self.error("expected }"));
                        }
                        self.next();
                        if operator.kind == Kind::In {
                            Node::In(key, set)
                        } else {
                            Node::NotIn(key, set)
                        }
                    }
                    Kind::Eof => {
                        return Err(self.error("unexpected end of string looking for op"));
                    }
                    _ => {
                        self.pos -= 1;
                        return Err(self.error("expected an operator (==, !=, in, not in, contains, starts with, ends with)"));
                    }
                }
            }
            Kind::LParen => {
                let node = self.or()?;
                if self.peek().kind != Kind::RParen {
                    return Err(self.error("expected )"));
                }
                self.next();
                node
            }
            Kind::Eof => return Err(self.error("unexpected end of selector")),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                return Err(self.error(&format!("unexpected token {:?}", token.value)));
            }
        };
        Ok(if negated { Node::Not(Box::new(node)) } else { node })
    }
}

#[cfg(test)]
mod tests;
