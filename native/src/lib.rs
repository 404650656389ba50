//! `connector._native`: the worker's mapping fast path (see `connector/mapping_native.py`).

mod json;
mod plan;
mod text;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PySequence, PyString, PyTuple, PyType};

use crate::plan::{Facts, Outcome, Plan, Run, Stop};

/// One profile's plan; calling it maps a JSON body, or returns None for Python to map it.
#[pyclass(frozen, module = "connector._native")]
struct NativePlan {
    plan: Plan,
    update: Py<PyType>,
    filtered: PyObject,
    new_object: PyObject, // object.__new__: a BrazeUpdate is made here with its objects built
}

#[pymethods]
impl NativePlan {
    #[new]
    fn new(ir: &Bound<'_, PyAny>, update: Py<PyType>, filtered: PyObject) -> PyResult<Self> {
        let py = ir.py();
        let new_object = py
            .import("builtins")?
            .getattr("object")?
            .getattr("__new__")?
            .unbind();
        Ok(NativePlan {
            plan: Plan::from_python(ir)?,
            update,
            filtered,
            new_object,
        })
    }

    /// Map a JSON body with the record's facts; None when Python is to map it.
    #[pyo3(signature = (body, source, received_at_ms=None))]
    fn __call__(
        &self,
        py: Python<'_>,
        body: &[u8],
        source: &Bound<'_, PyString>,
        received_at_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let received_at = match received_at_ms {
            None => None,
            Some(value) => match value.extract::<i64>() {
                Ok(ms) => Some(ms),
                Err(_) => return Ok(py.None()),
            },
        };
        let Ok(source) = source.to_str() else {
            return Ok(py.None()); // not UTF-8 (a lone surrogate): Python's to map
        };
        Ok(self
            .map(py, body, source, received_at)?
            .unwrap_or_else(|| py.None()))
    }

    /// Map a consumed record from its headers and value, when the receiver wrote its headers
    /// (content-type, received-at, source first, in that order) and the content type is JSON:
    /// `(mapped, received_at_ms)`, or None when Python is to read the record and map it.
    #[pyo3(signature = (headers, value))]
    fn take(
        &self,
        py: Python<'_>,
        headers: &Bound<'_, PyAny>,
        value: Option<&[u8]>,
    ) -> PyResult<PyObject> {
        let Some(headers) = receiver_headers(headers)? else {
            return Ok(py.None());
        };
        let Some((source, received_at)) = receiver_facts(&headers) else {
            return Ok(py.None());
        };
        match self.map(py, value.unwrap_or(b""), source, received_at)? {
            None => Ok(py.None()),
            Some(mapped) => Ok((mapped, received_at).into_pyobject(py)?.into_any().unbind()),
        }
    }
}

impl NativePlan {
    fn map(
        &self,
        py: Python<'_>,
        body: &[u8],
        source: &str,
        received_at: Option<i64>,
    ) -> PyResult<Option<PyObject>> {
        let Some(document) = json::parse_object(body, &self.plan.wanted) else {
            return Ok(None);
        };
        let facts = Facts::new(&self.plan, source, received_at);
        let mut run = Run::new(&self.plan, &document, &facts);
        match run.outcome() {
            Ok(Outcome::Filtered(name)) => Ok(Some(self.filtered.call1(py, (name,))?)),
            Ok(Outcome::Update {
                user_key,
                identity,
                attributes,
                events,
            }) => Ok(Some(
                self.update(py, &user_key, &identity, attributes, &events)?,
            )),
            Err(Stop::Decline) => Ok(None),
        }
    }

    /// A `BrazeUpdate` made from its /users/track objects as JSON, without its __init__: the
    /// slots connector/mapping_results.py says a native update has.
    fn update(
        &self,
        py: Python<'_>,
        user_key: &str,
        identity: &[u8],
        attributes: Option<Vec<u8>>,
        events: &[Vec<u8>],
    ) -> PyResult<PyObject> {
        let update = self.new_object.bind(py).call1((self.update.bind(py),))?;
        let attribute_payload = match attributes {
            None => py.None(),
            Some(json) => PyBytes::new(py, &json).into_any().unbind(),
        };
        let event_payloads = PyTuple::new(py, events.iter().map(|json| PyBytes::new(py, json)))?;
        update.setattr(intern!(py, "user_key"), user_key)?;
        update.setattr(intern!(py, "attribute_payload"), attribute_payload)?;
        update.setattr(intern!(py, "event_payloads"), event_payloads)?;
        update.setattr(intern!(py, "_identity_json"), PyBytes::new(py, identity))?;
        Ok(update.unbind())
    }
}

/// The values of a record's first three headers when they are the receiver's: content-type,
/// received-at and source, in that order; None for any other record.
fn receiver_headers<'py>(
    headers: &Bound<'py, PyAny>,
) -> PyResult<Option<[Option<Bound<'py, PyBytes>>; 3]>> {
    let Ok(headers) = headers.downcast::<PySequence>() else {
        return Ok(None);
    };
    if headers.len()? < 3 {
        return Ok(None);
    }
    let mut values = [None, None, None];
    for (position, name) in ["content-type", "received-at", "source"].iter().enumerate() {
        let header = headers.get_item(position)?;
        let Ok((found, value)) =
            header.extract::<(Bound<'py, PyString>, Option<Bound<'py, PyBytes>>)>()
        else {
            return Ok(None);
        };
        if found.to_str().ok() != Some(*name) {
            return Ok(None);
        }
        values[position] = value;
    }
    Ok(Some(values))
}

/// The source label and received-at time the receiver's headers give, read as
/// `worker.record_facts` reads them and borrowed from the headers; None for a content type
/// other than JSON, a label that is not UTF-8 or a received-at beyond 64 bits (Python's to read).
fn receiver_facts<'h>(
    headers: &'h [Option<Bound<'_, PyBytes>>; 3],
) -> Option<(&'h str, Option<i64>)> {
    let [content_type, received_at, source] = headers
        .each_ref()
        .map(|value| value.as_ref().map(|bytes| bytes.as_bytes()));
    if !matches!(content_type, None | Some(b"" | b"application/json")) {
        return None;
    }
    let source = match source {
        None | Some(b"") => "default",
        Some(bytes) => std::str::from_utf8(bytes).ok()?,
    };
    let received_at = match received_at {
        Some(digits)
            if !digits.is_empty() && digits.len() < 20 && digits.iter().all(u8::is_ascii_digit) =>
        {
            Some(std::str::from_utf8(digits).ok()?.parse::<i64>().ok()?)
        }
        _ => None,
    };
    Some((source, received_at))
}

/// Every character `str.isspace()` takes for white space, as this module reads it (for tests).
#[pyfunction]
fn space_characters() -> String {
    (0..=0x10FFFF_u32)
        .filter_map(char::from_u32)
        .filter(|c| text::is_py_space(*c))
        .collect()
}

/// `transforms.is_canonical_time` as this module reads it (for tests).
#[pyfunction]
fn canonical_time(text: &str) -> bool {
    text::is_canonical_time(text)
}

/// `transforms.to_time` of an integer as this module writes it, or None (for tests).
#[pyfunction]
fn epoch_time(number: i128) -> Option<String> {
    text::epoch_time(number)
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NativePlan>()?;
    module.add_function(wrap_pyfunction!(space_characters, module)?)?;
    module.add_function(wrap_pyfunction!(canonical_time, module)?)?;
    module.add_function(wrap_pyfunction!(epoch_time, module)?)?;
    Ok(())
}
