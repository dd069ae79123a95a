//! Values across the boundary: Python objects as query values and
//! settings (checked: nesting depth, integer range, key lists), and query
//! results as Python objects.

use super::*;

/// A Python value as a query value (bool before int: a bool is an int).
pub(crate) fn to_value(o: &Bound<'_, PyAny>) -> PyResult<QueryValue> {
    value_at(o, 0)
}

/// [`to_value`] at nesting depth `depth`: lists and dicts nest at most
/// [`quiver::QUERY_MAX_DEPTH`] deep, so a list that contains itself (or one
/// 100,000 levels deep) is an error, not a stack overflow.
pub(crate) fn value_at(o: &Bound<'_, PyAny>, depth: usize) -> PyResult<QueryValue> {
    let max = quiver::QUERY_MAX_DEPTH;
    if depth > max {
        return Err(PyValueError::new_err(format!(
            "a parameter nests lists and dicts more than {max} deep (or contains itself)"
        )));
    }
    let to_value = |x: &Bound<'_, PyAny>| value_at(x, depth + 1);
    if o.is_none() {
        return Ok(QueryValue::Null);
    }
    if let Ok(b) = o.cast::<PyBool>() {
        return Ok(QueryValue::Bool(b.is_true()));
    }
    if o.is_instance_of::<PyInt>() {
        return o.extract().map(QueryValue::Int).map_err(|_| {
            PyOverflowError::new_err(format!(
                "integer {o} does not fit in 64 bits (a query integer is an i64)"
            ))
        });
    }
    if o.is_instance_of::<PyFloat>() {
        return Ok(QueryValue::Float(o.extract()?));
    }
    if o.is_instance_of::<PyString>() {
        return Ok(QueryValue::Str(o.extract()?));
    }
    if let Ok(d) = o.cast::<PyDict>() {
        let mut m = BTreeMap::new();
        for (k, v) in d.iter() {
            let k: String = k
                .extract()
                .map_err(|_| PyTypeError::new_err("map keys in parameters must be strings"))?;
            m.insert(k, to_value(&v)?);
        }
        return Ok(QueryValue::Map(m.into()));
    }
    if o.is_instance_of::<PyList>() || o.is_instance_of::<PyTuple>() || o.hasattr("tolist")? {
        let items = if o.hasattr("tolist")? {
            o.call_method0("tolist")?
        } else {
            o.clone()
        };
        if !(items.is_instance_of::<PyList>() || items.is_instance_of::<PyTuple>()) {
            return value_at(&items, depth); // a numpy scalar's tolist() is a Python scalar
        }
        return Ok(QueryValue::List(
            items
                .try_iter()?
                .map(|x| to_value(&x?))
                .collect::<PyResult<_>>()?,
        ));
    }
    Err(PyTypeError::new_err(format!(
        "a parameter can be None, bool, int, float, str, a list or a dict, not {}",
        o.get_type().name()?
    )))
}

/// A query value as a Python value: nodes and edges as dicts, as in JSON.
pub(crate) fn to_py<'py>(
    py: Python<'py>,
    rows: &quiver::Rows,
    v: &QueryValue,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        QueryValue::Null => py.None().into_bound(py),
        QueryValue::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        QueryValue::Int(i) => i.into_pyobject(py)?.into_any(),
        QueryValue::Float(x) => x.into_pyobject(py)?.into_any(),
        QueryValue::Str(s) => PyString::new(py, s).into_any(),
        QueryValue::List(l) => PyList::new(
            py,
            l.iter()
                .map(|x| to_py(py, rows, x))
                .collect::<PyResult<Vec<_>>>()?,
        )?
        .into_any(),
        QueryValue::Map(m) => {
            let d = PyDict::new(py);
            for (k, x) in m.iter() {
                d.set_item(k, to_py(py, rows, x)?)?;
            }
            d.into_any()
        }
        other => json_to_py(py, &rows.json_value(other))?,
    })
}

pub(crate) fn json_to_py<'py>(py: Python<'py>, j: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value as J;
    Ok(match j {
        J::Null => py.None().into_bound(py),
        J::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        J::Number(n) => match n.as_i64() {
            Some(i) => i.into_pyobject(py)?.into_any(),
            None => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        J::String(s) => PyString::new(py, s).into_any(),
        J::Array(a) => PyList::new(
            py,
            a.iter()
                .map(|x| json_to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?,
        )?
        .into_any(),
        J::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// A dict of settings as a TOML table (None is not a setting's value).
pub(crate) fn py_to_toml(o: &Bound<'_, PyAny>) -> PyResult<toml::Table> {
    fn conv(key: &str, v: QueryValue) -> PyResult<toml::Value> {
        Ok(match v {
            QueryValue::Bool(b) => b.into(),
            QueryValue::Int(i) => i.into(),
            QueryValue::Float(x) => x.into(),
            QueryValue::Str(s) => s.into(),
            QueryValue::List(l) => {
                toml::Value::Array(l.iter().map(|x| conv(key, x.clone())).collect::<PyResult<_>>()?)
            }
            QueryValue::Map(m) => toml::Value::Table(
                m.iter()
                    .map(|(k, x)| Ok((k.clone(), conv(k, x.clone())?)))
                    .collect::<PyResult<_>>()?,
            ),
            _ => {
                return Err(ConfigError::new_err(format!(
                    "invalid configuration: `{key}` is None"
                )))
            }
        })
    }
    match to_value(o)? {
        QueryValue::Map(m) => m
            .iter()
            .map(|(k, x)| Ok((k.clone(), conv(k, x.clone())?)))
            .collect(),
        _ => Err(ConfigError::new_err("invalid configuration: expected a dict")),
    }
}

pub(crate) fn params(p: Option<&Bound<'_, PyDict>>) -> PyResult<Params> {
    let mut out = Params::new();
    if let Some(d) = p {
        for (k, v) in d.iter() {
            let k: String = k.extract()?;
            out.insert(k.trim_start_matches('$').to_string(), to_value(&v)?);
        }
    }
    Ok(out)
}

/// Keys from a list, tuple, numpy array or pandas column: each as text.
pub(crate) fn keys(o: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if o.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what}: a list of keys, not a str (write [{}] for one key)",
            o.repr()?
        )));
    }
    // A DataFrame (or a dict) iterates its column names (keys), not values.
    if o.hasattr("columns")? || o.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "{what}: a list, array or Series of keys, not a {} (pass one column, df[\"name\"])",
            o.get_type().name()?
        )));
    }
    let items = if o.hasattr("tolist")? {
        o.call_method0("tolist")?
    } else {
        o.clone()
    };
    items
        .try_iter()?
        .map(|x| {
            let x = x?;
            match () {
                _ if x.is_instance_of::<PyString>() => x.extract(),
                _ if x.is_instance_of::<PyInt>() => x.str()?.extract(),
                _ => Err(PyTypeError::new_err(format!(
                    "{what}: keys are str (or int), not {}",
                    x.get_type().name()?
                ))),
            }
        })
        .collect()
}

pub(crate) fn dict<'py>(py: Python<'py>, j: serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &j)
}

pub(crate) fn rows_out<'py>(
    py: Python<'py>,
    rows: quiver::Rows,
) -> PyResult<(Vec<String>, Bound<'py, PyList>)> {
    let out = PyList::empty(py);
    for r in &rows.rows {
        let vals = r
            .iter()
            .map(|v| to_py(py, &rows, v))
            .collect::<PyResult<Vec<_>>>()?;
        out.append(PyTuple::new(py, vals)?)?;
    }
    Ok((rows.columns.clone(), out))
}

/// Training settings: defaults, a dict of TrainConfig fields, or a TOML file.
pub(crate) fn train_config(config: Option<&Bound<'_, PyAny>>) -> PyResult<TrainConfig> {
    Ok(match config {
        None => TrainConfig::default(),
        // Through TOML, as a config file is read, so that an error names the setting.
        Some(c) if c.is_instance_of::<PyDict>() => {
            let text = toml::to_string(&py_to_toml(c)?)
                .map_err(|e| ConfigError::new_err(format!("invalid configuration: {e}")))?;
            toml::from_str(&text).map_err(|e| ConfigError::new_err(format!("invalid configuration: {e}")))?
        }
        Some(c) => {
            let path: PathBuf = c.extract()?;
            let text = quiver::read_text(&path, quiver::MAX_SETTINGS_FILE)
                .map_err(|e| ConfigError::new_err(format!("{}: {e}", path.display())))?;
            toml::from_str(&text).map_err(|e| ConfigError::new_err(format!("{}: {e}", path.display())))?
        }
    })
}
