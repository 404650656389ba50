//! `connector._native`: the worker's mapping fast path (see `connector/mapping_native.py`).

mod json;
mod plan;
mod text;

use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::plan::{Facts, Outcome, Plan, Run, Stop};

/// One profile's plan; calling it maps a JSON body, or returns None for Python to map it.
#[pyclass(frozen, module = "connector._native")]
struct NativePlan {
    plan: Plan,
    update: PyObject,
    filtered: PyObject,
}

#[pymethods]
impl NativePlan {
    #[new]
    fn new(ir: &Bound<'_, PyAny>, update: PyObject, filtered: PyObject) -> PyResult<Self> {
        Ok(NativePlan {
            plan: Plan::from_python(ir)?,
            update,
            filtered,
        })
    }

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
        let Some(document) = json::parse_object(body, &self.plan.wanted) else {
            return Ok(py.None());
        };
        let source = source.to_str()?;
        let facts = Facts::new(&self.plan, source, received_at);
        let mut run = Run::new(&self.plan, &document, &facts);
        match run.outcome(py) {
            Ok(Outcome::Filtered(name)) => Ok(self.filtered.call1(py, (name,))?),
            Ok(Outcome::Update {
                user_key,
                identity,
                attributes,
                events,
            }) => Ok(self
                .update
                .call1(py, (user_key, identity, attributes, events))?),
            Err(Stop::Decline) => Ok(py.None()),
            Err(Stop::Python(error)) => Err(error),
        }
    }
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
