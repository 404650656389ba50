//! A profile's plan run natively: the same steps, in the same order, as the plan
//! `connector/mapping_plan.py` writes in Python, for the cases it writes inline. Wherever the
//! Python plan would call out to a rule's own code (a walker, a coercion beyond the plain cases,
//! a rule's fallback that raises), this plan declines and the record is mapped in Python.

use std::borrow::Cow;

use pyo3::prelude::*;
use rustc_hash::FxHashSet;
use sha2::{Digest, Sha256};

use crate::json::Json;
use crate::text::{
    ascii_digits, ascii_lower, ascii_upper, epoch_time, is_canonical_time, py_strip, truncate,
};

const MAX_TEXT: usize = 255;

/// Why a record is not mapped here: Python maps it.
pub enum Stop {
    Decline,
}

type Step<T> = Result<T, Stop>;

// -- the plan, from the tuples `connector/mapping_native.py` writes ------------------------------

pub enum PathIr {
    Source,
    ReceivedAt,
    Profile,
    Document(String, Vec<StepIr>),
}

pub enum StepIr {
    Key(String),
    Select { field: String, wanted: String },
    Walk,
}

#[derive(PartialEq)]
pub enum Test {
    Exists,
    Equals,
    StartsWith,
    EndsWith,
    Contains,
    Python,
}

pub struct Condition {
    source: usize,
    test: Test,
    operands: Vec<String>,
    exists: bool,
}

pub enum Transform {
    Trim,
    Lower,
    Upper,
    Sha256,
    Prefix(String),
    Suffix(String),
}

pub struct IdentityRule {
    kind: String,
    key: String,        // the identity field of the objects: the kind, or user_alias
    member: Vec<u8>,    // the field as JSON, up to its value: `"email":`
    label_json: String, // an alias's label as JSON
    source: usize,
    transforms: Vec<Transform>,
    label: String,
}

pub enum Kind {
    Text,
    Number,
    Integer,
    Time,
    Python,
}

pub struct Field {
    name: String,
    member: Vec<u8>, // the name as JSON, up to its value: `"outgrow_quiz_score":`
    kind: Kind,
    source: Option<usize>,
    fixed: Option<Fixed>,
    required: bool,
}

/// A constant of the mapping file as JSON, or Python's to write (orjson would not read it back
/// as the same value).
pub enum Fixed {
    Json(Vec<u8>),
    Python,
}

pub struct Event {
    name_json: String,
    time: Field,
    properties: Vec<Field>,
}

pub struct Plan {
    profile: String,
    pub wanted: FxHashSet<String>, // the document's members any path starts with
    sources: Vec<Option<Vec<PathIr>>>, // None: a source read the rule's own way
    filters: Vec<(String, Vec<Condition>)>,
    identity: Vec<IdentityRule>,
    attributes: Vec<Field>,
    pop_identity: bool,
    alias: bool,
    events: Vec<Event>,
}

type PathTuple = (String, Vec<(String, String, String)>);
type FieldTuple = (String, String, i64, bool, Option<Vec<u8>>, bool);
type PlanTuple = (
    String,
    Vec<Option<Vec<PathTuple>>>,
    Vec<(String, Vec<(usize, String, Vec<String>, bool)>)>,
    Vec<(String, usize, Vec<(String, String)>, String)>,
    Vec<FieldTuple>,
    bool,
    bool,
    Vec<(String, FieldTuple, Vec<FieldTuple>)>,
);

fn invalid(what: &str) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(format!("native plan: unknown {what}"))
}

impl Plan {
    pub fn from_python(ir: &Bound<'_, PyAny>) -> PyResult<Plan> {
        let (profile, sources, filters, identity, attributes, pop_identity, alias, events): PlanTuple =
            ir.extract()?;
        let sources: Vec<Option<Vec<PathIr>>> = sources
            .into_iter()
            .map(|paths| {
                paths
                    .map(|paths| paths.into_iter().map(path_of).collect())
                    .transpose()
            })
            .collect::<PyResult<_>>()?;
        let filters = filters
            .into_iter()
            .map(|(name, conditions)| {
                let conditions = conditions
                    .into_iter()
                    .map(condition_of)
                    .collect::<PyResult<_>>()?;
                Ok((name, conditions))
            })
            .collect::<PyResult<_>>()?;
        let identity = identity
            .into_iter()
            .map(|(kind, source, transforms, label)| {
                let transforms = transforms
                    .into_iter()
                    .map(transform_of)
                    .collect::<PyResult<_>>()?;
                let key = if kind == "alias" { "user_alias" } else { &kind }.to_owned();
                Ok(IdentityRule {
                    member: member_of(&key),
                    key,
                    kind,
                    source,
                    transforms,
                    label_json: json_text(&label),
                    label,
                })
            })
            .collect::<PyResult<_>>()?;
        let attributes = attributes
            .into_iter()
            .map(field_of)
            .collect::<PyResult<_>>()?;
        let events = events
            .into_iter()
            .map(|(name, time, properties)| {
                let properties = properties
                    .into_iter()
                    .map(field_of)
                    .collect::<PyResult<_>>()?;
                Ok(Event {
                    name_json: json_text(&name),
                    time: field_of(time)?,
                    properties,
                })
            })
            .collect::<PyResult<_>>()?;
        let plan = Plan {
            profile,
            wanted: first_keys(&sources),
            sources,
            filters,
            identity,
            attributes,
            pop_identity,
            alias,
            events,
        };
        plan.check_sources()?;
        Ok(plan)
    }

    fn check_sources(&self) -> PyResult<()> {
        let count = self.sources.len();
        let fields = self.attributes.iter().chain(
            self.events
                .iter()
                .flat_map(|e| std::iter::once(&e.time).chain(&e.properties)),
        );
        let bad = self
            .filters
            .iter()
            .flat_map(|(_, c)| c)
            .any(|c| c.source >= count)
            || self.identity.iter().any(|r| r.source >= count)
            || fields.filter_map(|f| f.source).any(|s| s >= count);
        if bad {
            return Err(invalid("source number"));
        }
        Ok(())
    }
}

fn first_keys(sources: &[Option<Vec<PathIr>>]) -> FxHashSet<String> {
    let paths = sources.iter().flatten().flatten();
    paths
        .filter_map(|path| match path {
            PathIr::Document(first, _) => Some(first.clone()),
            _ => None,
        })
        .collect()
}

fn path_of((kind, steps): PathTuple) -> PyResult<PathIr> {
    Ok(match kind.as_str() {
        "source" => PathIr::Source,
        "received_at" => PathIr::ReceivedAt,
        "profile" => PathIr::Profile,
        "document" => {
            let mut steps = steps.into_iter();
            let first = match steps.next() {
                Some((kind, name, _)) if kind == "key" => name,
                _ => return Err(invalid("path start")),
            };
            let rest = steps
                .map(|(kind, a, b)| match kind.as_str() {
                    "key" => Ok(StepIr::Key(a)),
                    "select" => Ok(StepIr::Select {
                        field: a,
                        wanted: b,
                    }),
                    "walk" => Ok(StepIr::Walk),
                    _ => Err(invalid("step")),
                })
                .collect::<PyResult<_>>()?;
            PathIr::Document(first, rest)
        }
        _ => return Err(invalid("path")),
    })
}

fn condition_of(
    (source, test, operands, exists): (usize, String, Vec<String>, bool),
) -> PyResult<Condition> {
    let test = match test.as_str() {
        "exists" => Test::Exists,
        "equals" => Test::Equals,
        "starts_with" => Test::StartsWith,
        "ends_with" => Test::EndsWith,
        "contains" => Test::Contains,
        "python" => Test::Python,
        _ => return Err(invalid("test")),
    };
    Ok(Condition {
        source,
        test,
        operands,
        exists,
    })
}

fn transform_of((name, argument): (String, String)) -> PyResult<Transform> {
    Ok(match name.as_str() {
        "trim" => Transform::Trim,
        "lower" => Transform::Lower,
        "upper" => Transform::Upper,
        "sha256" => Transform::Sha256,
        "prefix" => Transform::Prefix(argument),
        "suffix" => Transform::Suffix(argument),
        _ => return Err(invalid("transform")),
    })
}

fn field_of((name, kind, source, has_fixed, fixed, required): FieldTuple) -> PyResult<Field> {
    let kind = match kind.as_str() {
        "string" => Kind::Text,
        "number" => Kind::Number,
        "integer" => Kind::Integer,
        "time" => Kind::Time,
        "python" => Kind::Python,
        _ => return Err(invalid("type")),
    };
    Ok(Field {
        member: member_of(&name),
        name,
        kind,
        source: usize::try_from(source).ok(),
        fixed: has_fixed.then(|| fixed.map_or(Fixed::Python, Fixed::Json)),
        required,
    })
}

/// Text as a JSON string.
fn json_text(text: &str) -> String {
    serde_json::to_string(text).expect("a str is always written")
}

/// An object member's name as JSON, up to its value: `"name":`.
fn member_of(name: &str) -> Vec<u8> {
    let mut member = json_text(name).into_bytes();
    member.push(b':');
    member
}

// -- running it ------------------------------------------------------------------------------------

/// A value a rule gives: typed, or a constant of the mapping file (as JSON), or nothing.
enum Value<'a> {
    Missing,
    Text(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Constant(&'a [u8]),
}

impl Value<'_> {
    /// Append the value as JSON, as orjson writes it (floats in their shortest form that reads
    /// back the same; a float is finite, as serde_json reads only finite ones).
    fn write(&self, out: &mut Vec<u8>) {
        let written = match self {
            Value::Missing => Ok(out.extend_from_slice(b"null")),
            Value::Text(text) => serde_json::to_writer(&mut *out, text.as_ref()),
            Value::Int(n) => serde_json::to_writer(&mut *out, n),
            Value::UInt(n) => serde_json::to_writer(&mut *out, n),
            Value::Float(x) => serde_json::to_writer(&mut *out, x),
            Value::Constant(json) => Ok(out.extend_from_slice(json)),
        };
        written.expect("writing to a Vec does not fail");
    }
}

/// What a plan gives for one record: a filter's name, or the update's user key and its
/// /users/track objects as JSON, each with the identity first (as `{**identity, **x}` makes
/// them): the identity alone, the attributes object (None when there is nothing to set) and the
/// event objects.
pub enum Outcome {
    Filtered(String),
    Update {
        user_key: String,
        identity: Vec<u8>,
        attributes: Option<Vec<u8>>,
        events: Vec<Vec<u8>>,
    },
}

/// The record's facts, as paths starting with `$` read them.
pub struct Facts<'a> {
    source: Json<'a>,
    received_at: Json<'a>,
    profile: Json<'a>,
}

impl<'a> Facts<'a> {
    pub fn new(plan: &'a Plan, source: &'a str, received_at: Option<i64>) -> Self {
        Facts {
            source: Json::Str(Cow::Borrowed(source)),
            received_at: received_at.map_or(Json::Null, Json::Int),
            profile: Json::Str(Cow::Borrowed(plan.profile.as_str())),
        }
    }
}

pub struct Run<'a> {
    plan: &'a Plan,
    document: &'a Json<'a>,
    facts: &'a Facts<'a>,
    reads: Vec<Option<Option<&'a Json<'a>>>>, // per source, once read
}

impl<'a> Run<'a> {
    pub fn new(plan: &'a Plan, document: &'a Json<'a>, facts: &'a Facts<'a>) -> Self {
        Run {
            plan,
            document,
            facts,
            reads: vec![None; plan.sources.len()],
        }
    }

    pub fn outcome(&mut self) -> Step<Outcome> {
        let plan = self.plan;
        for (name, conditions) in &plan.filters {
            if self.all_hold(conditions)? {
                return Ok(Outcome::Filtered(name.clone()));
            }
        }
        let (user_key, rule, identity) = self.identity()?;
        // The attributes object: the identity, then every value found, but for one named like
        // the identity's field (popped), then an alias's `_update_existing_only`.
        let mut attributes = Vec::with_capacity(256);
        attributes.push(b'{');
        attributes.extend_from_slice(&identity);
        let popped = plan.pop_identity.then_some(rule.key.as_str());
        let alias = plan.alias && rule.kind == "alias";
        let mut any = self.members(&plan.attributes, &mut attributes, popped)?;
        if alias {
            attributes.extend_from_slice(b",\"_update_existing_only\":false");
            any = true;
        }
        attributes.push(b'}');
        let mut events = Vec::with_capacity(plan.events.len());
        for event in &plan.events {
            let time = self.value(&event.time)?;
            if let Value::Missing = time {
                return Err(Stop::Decline);
            }
            let mut object = Vec::with_capacity(256);
            object.push(b'{');
            object.extend_from_slice(&identity);
            object.extend_from_slice(b",\"name\":");
            object.extend_from_slice(event.name_json.as_bytes());
            object.extend_from_slice(b",\"time\":");
            time.write(&mut object);
            let bare = object.len();
            object.extend_from_slice(b",\"properties\":{");
            let opened = object.len();
            if self.members(&event.properties, &mut object, None)? {
                object.remove(opened); // the first member's comma
                object.push(b'}');
            } else {
                object.truncate(bare);
            }
            object.push(b'}');
            events.push(object);
        }
        let mut identity_object = Vec::with_capacity(identity.len() + 2);
        identity_object.push(b'{');
        identity_object.extend_from_slice(&identity);
        identity_object.push(b'}');
        Ok(Outcome::Update {
            user_key,
            identity: identity_object,
            attributes: any.then_some(attributes),
            events,
        })
    }

    // -- reading sources ----------------------------------------------------------------------

    fn read(&mut self, source: usize) -> Step<Option<&'a Json<'a>>> {
        if let Some(found) = self.reads[source] {
            return Ok(found);
        }
        let plan: &'a Plan = self.plan;
        let Some(paths) = &plan.sources[source] else {
            return Err(Stop::Decline);
        };
        let mut found = None;
        for path in paths {
            if let Some(value) = self.probe(path)? {
                found = Some(value);
                break;
            }
        }
        self.reads[source] = Some(found);
        Ok(found)
    }

    fn probe(&self, path: &'a PathIr) -> Step<Option<&'a Json<'a>>> {
        let facts = self.facts;
        let (start, steps): (&'a Json<'a>, &'a [StepIr]) = match path {
            PathIr::Source => (&facts.source, &[]),
            PathIr::ReceivedAt => (&facts.received_at, &[]),
            PathIr::Profile => (&facts.profile, &[]),
            PathIr::Document(first, steps) => match self.document.get(first) {
                Some(value) => (value, steps.as_slice()),
                None => return Ok(None),
            },
        };
        if let Json::Null = start {
            return Ok(None);
        }
        follow(start, steps)
    }

    // -- filters --------------------------------------------------------------------------------

    fn all_hold(&mut self, conditions: &'a [Condition]) -> Step<bool> {
        for condition in conditions {
            if !self.holds(condition)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn holds(&mut self, condition: &'a Condition) -> Step<bool> {
        let found = self.read(condition.source)?;
        if condition.test == Test::Exists {
            return Ok(found.is_some() == condition.exists);
        }
        let Some(found) = found else {
            return Ok(false);
        };
        let Json::Str(text) = found else {
            return Err(Stop::Decline);
        };
        let folded = ascii_lower(py_strip(text)).ok_or(Stop::Decline)?;
        let operands = condition.operands.iter();
        Ok(match condition.test {
            Test::Equals => operands.into_iter().any(|o| *o == folded),
            Test::StartsWith => operands.into_iter().any(|o| folded.starts_with(o.as_str())),
            Test::EndsWith => operands.into_iter().any(|o| folded.ends_with(o.as_str())),
            Test::Contains => operands.into_iter().any(|o| folded.contains(o.as_str())),
            Test::Exists | Test::Python => return Err(Stop::Decline),
        })
    }

    // -- identity -------------------------------------------------------------------------------

    /// The user key, the rule that found the identity, and the identity's member as JSON.
    fn identity(&mut self) -> Step<(String, &'a IdentityRule, Vec<u8>)> {
        let plan: &'a Plan = self.plan;
        for rule in &plan.identity {
            let Some(found) = self.read(rule.source)? else {
                continue;
            };
            let Json::Str(text) = found else {
                return Err(Stop::Decline); // a number: the rule's own way
            };
            let text = shaped(py_strip(text), &rule.transforms)?;
            if text.is_empty() {
                return Err(Stop::Decline);
            }
            let mut member = rule.member.clone();
            if rule.kind == "alias" {
                member.extend_from_slice(b"{\"alias_name\":");
                Value::Text(Cow::Borrowed(&text)).write(&mut member);
                member.extend_from_slice(b",\"alias_label\":");
                member.extend_from_slice(rule.label_json.as_bytes());
                member.push(b'}');
                return Ok((format!("alias:{}:{}", rule.label, text), rule, member));
            }
            Value::Text(Cow::Borrowed(&text)).write(&mut member);
            return Ok((format!("{}:{}", rule.kind, text), rule, member));
        }
        Err(Stop::Decline) // no identity: the failure is Python's to raise
    }

    // -- attributes, event properties, event times ------------------------------------------------

    /// Append `,"name":value` for each field's value found, in order, but for the field named
    /// `popped`, whose value is found (a failure to find it declines) and then left out; say
    /// whether any was. (No attribute is named `_update_existing_only`, which an alias's object
    /// ends with: the mapping file reserves the name.)
    fn members(
        &mut self,
        fields: &'a [Field],
        out: &mut Vec<u8>,
        popped: Option<&str>,
    ) -> Step<bool> {
        let mut any = false;
        for field in fields {
            if field.source.is_none() && field.fixed.is_none() {
                continue;
            }
            let value = self.value(field)?;
            if matches!(value, Value::Missing) || popped == Some(field.name.as_str()) {
                continue;
            }
            out.push(b',');
            out.extend_from_slice(&field.member);
            value.write(out);
            any = true;
        }
        Ok(any)
    }

    fn value(&mut self, field: &'a Field) -> Step<Value<'a>> {
        let Some(source) = field.source else {
            return match &field.fixed {
                Some(fixed) => constant(fixed),
                None => Err(Stop::Decline),
            };
        };
        let typed = match self.read(source)? {
            None => Value::Missing,
            Some(found) => typed(found, &field.kind)?,
        };
        match (typed, &field.fixed) {
            (Value::Missing, _) if field.required => Err(Stop::Decline),
            (Value::Missing, Some(fixed)) => constant(fixed),
            (typed, _) => Ok(typed),
        }
    }
}

fn constant(fixed: &Fixed) -> Step<Value<'_>> {
    match fixed {
        Fixed::Json(json) => Ok(Value::Constant(json)),
        Fixed::Python => Err(Stop::Decline),
    }
}

/// From a node (not null), take the steps; then the value if it counts as one.
fn follow<'a>(mut node: &'a Json<'a>, steps: &'a [StepIr]) -> Step<Option<&'a Json<'a>>> {
    for step in steps {
        match step {
            StepIr::Key(name) => {
                if !matches!(node, Json::Object(_)) {
                    return Err(Stop::Decline); // the walker's way
                }
                match node.get(name) {
                    None | Some(Json::Null) => return Ok(None),
                    Some(value) => node = value,
                }
            }
            StepIr::Select { field, wanted } => {
                let Json::List(items) = node else {
                    return Ok(None);
                };
                let mut hit = None;
                for item in items {
                    if matches!(item, Json::Object(_)) && selects(item.get(field), wanted)? {
                        hit = Some(item);
                        break;
                    }
                }
                match hit {
                    Some(item) => node = item,
                    None => return Ok(None),
                }
            }
            StepIr::Walk => return Err(Stop::Decline),
        }
    }
    Ok(match node {
        Json::Str(text) if py_strip(text).is_empty() => None,
        Json::List(items) if items.is_empty() => None,
        Json::Null => None,
        _ => Some(node),
    })
}

/// `matches(value, wanted)`: a selector's field compared, case and surrounding spaces ignored.
fn selects(value: Option<&Json<'_>>, wanted: &str) -> Step<bool> {
    Ok(match value {
        None | Some(Json::Null | Json::List(_) | Json::Object(_)) => false,
        Some(Json::Str(text)) => ascii_lower(py_strip(text)).ok_or(Stop::Decline)? == wanted,
        Some(Json::Bool(b)) => (if *b { "true" } else { "false" }) == wanted,
        Some(Json::Int(n)) => n.to_string() == wanted,
        Some(Json::UInt(n)) => n.to_string() == wanted,
        Some(Json::Float(_)) => return Err(Stop::Decline),
    })
}

/// An identity's text after its transforms, in order.
fn shaped<'t>(text: &'t str, transforms: &[Transform]) -> Step<Cow<'t, str>> {
    let mut text = Cow::Borrowed(text);
    for transform in transforms {
        text = match transform {
            Transform::Trim => match text {
                Cow::Borrowed(t) => Cow::Borrowed(py_strip(t)),
                Cow::Owned(t) => Cow::Owned(py_strip(&t).to_owned()),
            },
            Transform::Lower => Cow::Owned(ascii_lower(&text).ok_or(Stop::Decline)?.into_owned()),
            Transform::Upper => Cow::Owned(ascii_upper(&text).ok_or(Stop::Decline)?.into_owned()),
            Transform::Sha256 => {
                let digest = Sha256::digest(text.as_bytes());
                Cow::Owned(digest.iter().map(|b| format!("{b:02x}")).collect())
            }
            Transform::Prefix(prefix) => Cow::Owned(format!("{prefix}{text}")),
            Transform::Suffix(suffix) => Cow::Owned(format!("{text}{suffix}")),
        };
    }
    Ok(text)
}

/// A found value typed as the plan types it inline; a decline wherever Python would coerce
/// (`Kind::Python`, whatever the value).
fn typed<'a>(found: &'a Json<'a>, kind: &Kind) -> Step<Value<'a>> {
    Ok(match (kind, found) {
        (Kind::Text, Json::Str(text)) => Value::Text(Cow::Borrowed(truncate(text, MAX_TEXT))),
        (Kind::Text, Json::Int(n)) => Value::Text(Cow::Owned(n.to_string())),
        (Kind::Text, Json::UInt(n)) => Value::Text(Cow::Owned(n.to_string())),
        (Kind::Text, Json::Bool(b)) => {
            Value::Text(Cow::Borrowed(if *b { "true" } else { "false" }))
        }
        (Kind::Number | Kind::Integer, Json::Int(n)) => Value::Int(*n),
        (Kind::Number | Kind::Integer, Json::UInt(n)) => Value::UInt(*n),
        (Kind::Number | Kind::Integer, Json::Str(text)) => {
            Value::UInt(ascii_digits(text).ok_or(Stop::Decline)?)
        }
        // serde_json reads `-0` as -0.0, as it reads `-0.0`; orjson makes the first the int 0.
        (Kind::Number, Json::Float(x)) if *x == 0.0 && x.is_sign_negative() => {
            return Err(Stop::Decline)
        }
        (Kind::Number, Json::Float(x)) => Value::Float(*x),
        (Kind::Integer, Json::Float(x)) if x.fract() == 0.0 && x.abs() < 9.0e18 => {
            Value::Int(*x as i64)
        }
        (Kind::Time, Json::Str(text)) if is_canonical_time(text) => {
            Value::Text(Cow::Borrowed(text))
        }
        (Kind::Time, Json::Int(n)) => {
            Value::Text(Cow::Owned(epoch_time(i128::from(*n)).ok_or(Stop::Decline)?))
        }
        (Kind::Time, Json::UInt(n)) => {
            Value::Text(Cow::Owned(epoch_time(i128::from(*n)).ok_or(Stop::Decline)?))
        }
        _ => return Err(Stop::Decline),
    })
}
