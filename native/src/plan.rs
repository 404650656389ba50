//! A profile's plan run natively: the same steps, in the same order, as the plan
//! `connector/mapping_plan.py` writes in Python, for the cases it writes inline. Wherever the
//! Python plan would call out to a rule's own code (a walker, a coercion beyond the plain cases,
//! a rule's fallback that raises), this plan declines and the record is mapped in Python.

use std::borrow::Cow;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use rustc_hash::FxHashSet;
use sha2::{Digest, Sha256};

use crate::json::Json;
use crate::text::{
    ascii_digits, ascii_lower, ascii_upper, epoch_time, is_canonical_time, py_strip, truncate,
};

const MAX_TEXT: usize = 255;

/// Why a record is not mapped here: Python maps it, or a Python error to raise.
pub enum Stop {
    Decline,
    Python(PyErr),
}

impl From<PyErr> for Stop {
    fn from(error: PyErr) -> Self {
        Stop::Python(error)
    }
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
    key: Py<PyString>, // the identity field: the kind, as a Python str made once
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
    name: Py<PyString>,
    kind: Kind,
    source: Option<usize>,
    fixed: Option<PyObject>,
    required: bool,
}

pub struct Event {
    name: Py<PyString>,
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
type FieldTuple = (String, String, i64, bool, PyObject, bool);
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
        let py = ir.py();
        let identity = identity
            .into_iter()
            .map(|(kind, source, transforms, label)| {
                let transforms = transforms
                    .into_iter()
                    .map(transform_of)
                    .collect::<PyResult<_>>()?;
                Ok(IdentityRule {
                    key: PyString::new(py, &kind).unbind(),
                    kind,
                    source,
                    transforms,
                    label,
                })
            })
            .collect::<PyResult<_>>()?;
        let attributes = attributes
            .into_iter()
            .map(|f| field_of(py, f))
            .collect::<PyResult<_>>()?;
        let events = events
            .into_iter()
            .map(|(name, time, properties)| {
                let properties = properties
                    .into_iter()
                    .map(|f| field_of(py, f))
                    .collect::<PyResult<_>>()?;
                Ok(Event {
                    name: PyString::new(py, &name).unbind(),
                    time: field_of(py, time)?,
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

fn field_of(
    py: Python<'_>,
    (name, kind, source, has_fixed, fixed, required): FieldTuple,
) -> PyResult<Field> {
    let kind = match kind.as_str() {
        "string" => Kind::Text,
        "number" => Kind::Number,
        "integer" => Kind::Integer,
        "time" => Kind::Time,
        "python" => Kind::Python,
        _ => return Err(invalid("type")),
    };
    Ok(Field {
        name: PyString::new(py, &name).unbind(),
        kind,
        source: usize::try_from(source).ok(),
        fixed: has_fixed.then_some(fixed),
        required,
    })
}

// -- running it ------------------------------------------------------------------------------------

/// A value a rule gives: typed, or a constant of the mapping file, or nothing.
enum Value<'a> {
    Missing,
    Text(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Constant(&'a PyObject),
}

impl Value<'_> {
    fn to_python(&self, py: Python<'_>) -> PyObject {
        match self {
            Value::Missing => py.None(),
            Value::Text(text) => PyString::new(py, text).into_any().unbind(),
            Value::Int(n) => n.into_pyobject(py).unwrap().into_any().unbind(),
            Value::UInt(n) => n.into_pyobject(py).unwrap().into_any().unbind(),
            Value::Float(x) => x.into_pyobject(py).unwrap().into_any().unbind(),
            Value::Constant(object) => object.clone_ref(py),
        }
    }
}

/// What a plan gives for one record.
pub enum Outcome<'py> {
    Filtered(String),
    Update {
        user_key: String,
        identity: Bound<'py, PyDict>,
        attributes: Bound<'py, PyDict>,
        events: Vec<Bound<'py, PyDict>>,
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

    pub fn outcome<'py>(&mut self, py: Python<'py>) -> Step<Outcome<'py>> {
        let plan = self.plan;
        for (name, conditions) in &plan.filters {
            if self.all_hold(conditions)? {
                return Ok(Outcome::Filtered(name.clone()));
            }
        }
        let (user_key, identity) = self.identity(py)?;
        let attributes = self.values(py, &plan.attributes)?;
        if plan.pop_identity {
            for field in identity.keys() {
                if attributes.contains(&field)? {
                    attributes.del_item(field)?;
                }
            }
        }
        if plan.alias && identity.contains("user_alias")? {
            attributes.set_item(intern!(py, "_update_existing_only"), false)?;
        }
        let mut events = Vec::with_capacity(plan.events.len());
        for event in &plan.events {
            let time = self.value(&event.time)?;
            if let Value::Missing = time {
                return Err(Stop::Decline);
            }
            let object = PyDict::new(py);
            object.set_item(intern!(py, "name"), event.name.bind(py))?;
            object.set_item(intern!(py, "time"), time.to_python(py))?;
            let properties = self.values(py, &event.properties)?;
            if !properties.is_empty() {
                object.set_item(intern!(py, "properties"), properties)?;
            }
            events.push(object);
        }
        Ok(Outcome::Update {
            user_key,
            identity,
            attributes,
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

    fn identity<'py>(&mut self, py: Python<'py>) -> Step<(String, Bound<'py, PyDict>)> {
        let plan = self.plan;
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
            let fields = PyDict::new(py);
            if rule.kind == "alias" {
                let alias = PyDict::new(py);
                alias.set_item(intern!(py, "alias_name"), text.as_ref())?;
                alias.set_item(intern!(py, "alias_label"), rule.label.as_str())?;
                fields.set_item(intern!(py, "user_alias"), alias)?;
                return Ok((format!("alias:{}:{}", rule.label, text), fields));
            }
            fields.set_item(rule.key.bind(py), text.as_ref())?;
            return Ok((format!("{}:{}", rule.kind, text), fields));
        }
        Err(Stop::Decline) // no identity: the failure is Python's to raise
    }

    // -- attributes, event properties, event times ------------------------------------------------

    fn values<'py>(&mut self, py: Python<'py>, fields: &'a [Field]) -> Step<Bound<'py, PyDict>> {
        let values = PyDict::new(py);
        for field in fields {
            if field.source.is_none() && field.fixed.is_none() {
                continue;
            }
            let value = self.value(field)?;
            if !matches!(value, Value::Missing) {
                values.set_item(field.name.bind(py), value.to_python(py))?;
            }
        }
        Ok(values)
    }

    fn value(&mut self, field: &'a Field) -> Step<Value<'a>> {
        let Some(source) = field.source else {
            return field
                .fixed
                .as_ref()
                .map(Value::Constant)
                .ok_or(Stop::Decline);
        };
        let typed = match self.read(source)? {
            None => Value::Missing,
            Some(found) => typed(found, &field.kind)?,
        };
        match (typed, &field.fixed) {
            (Value::Missing, _) if field.required => Err(Stop::Decline),
            (Value::Missing, Some(fixed)) => Ok(Value::Constant(fixed)),
            (typed, _) => Ok(typed),
        }
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
